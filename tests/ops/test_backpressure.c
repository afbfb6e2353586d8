/* Back-pressure for real: array ops declare the bytes of the outputs they
 * allocate, so a user loop that pushes far faster than ops finish never holds
 * more pool memory than max_inflight_bytes plus one op's outputs (besides the
 * arrays the loop keeps).  A sampler thread watches the pool while the loop
 * runs; the loop checks after every push too. */
#include "ref.h"

enum { BP_MAX = 8 << 20 };

struct sampler {
    pthread_t th;
    atomic_int stop;
    atomic_llong max_in_use;
    atomic_llong max_inflight;
    atomic_llong samples;
};

static void *sampler_main(void *arg) {
    struct sampler *s = arg;
    while (!atomic_load(&s->stop)) {
        td_pool_stats p;
        if (td_pool_stats_get(td_cpu(0), &p) == TD_OK &&
            p.bytes_in_use > atomic_load(&s->max_in_use))
            atomic_store(&s->max_in_use, p.bytes_in_use);
        long long inflight = (long long)td_inflight_bytes();
        if (inflight > atomic_load(&s->max_inflight)) atomic_store(&s->max_inflight, inflight);
        atomic_fetch_add(&s->samples, 1);
        tt_sleep_ms(0.05);
    }
    return NULL;
}

static void sampler_start(struct sampler *s) {
    atomic_store(&s->stop, 0);
    atomic_store(&s->max_in_use, 0);
    atomic_store(&s->max_inflight, 0);
    atomic_store(&s->samples, 0);
    cr_assert_eq(pthread_create(&s->th, NULL, sampler_main, s), 0);
}

static void sampler_stop(struct sampler *s) {
    atomic_store(&s->stop, 1);
    pthread_join(s->th, NULL);
}

static void bp_start(int workers) {
    td_config cfg = td_config_default();
    cfg.engine = TD_ENGINE_THREADED;
    cfg.cpu_workers = workers;
    cfg.max_inflight_bytes = BP_MAX;
    cr_assert_eq(td_init(&cfg), TD_OK, "td_init: %s", td_last_error());
    cr_assert_eq(td_max_inflight_bytes(), (size_t)BP_MAX);
}

static int64_t in_use(void) {
    td_pool_stats p;
    cr_assert_eq(td_pool_stats_get(td_cpu(0), &p), TD_OK);
    return p.bytes_in_use;
}

/* Pushes n ops of `out_bytes` each through push_one, checking after each
 * push; `kept` is the pool memory of arrays the loop holds throughout. */
static void loop_and_check(int n, int64_t out_bytes, int64_t kept, td_array *(*push_one)(void *),
                           void *arg, const char *what) {
    struct sampler s;
    sampler_start(&s);
    const int64_t bound = (int64_t)BP_MAX + out_bytes;
    int64_t max_loop = 0;
    size_t max_engine = 0;
    double t0 = tt_now();
    for (int i = 0; i < n; i++) {
        td_array *r = push_one(arg);
        cr_assert_not_null(r, "%s: push %d: %s", what, i, td_last_error());
        td_release(r); /* at once: only the pending op holds it now */
        size_t inflight = td_inflight_bytes();
        int64_t mem = in_use() - kept;
        if ((int64_t)inflight > (int64_t)max_engine) max_engine = inflight;
        if (mem > max_loop) max_loop = mem;
        cr_assert_leq((int64_t)inflight, bound,
                      "%s: after push %d td_inflight_bytes() is %zu, above %lld (limit + one op)",
                      what, i, inflight, (long long)bound);
        cr_assert_leq(mem, bound,
                      "%s: after push %d the pool holds %lld bytes for pending ops, above %lld "
                      "(limit + one op's outputs)",
                      what, i, (long long)mem, (long long)bound);
    }
    double dt = tt_now() - t0;
    cr_assert_eq(td_wait_all(), TD_OK);
    sampler_stop(&s);
    long long sampled = atomic_load(&s.max_in_use) - kept;
    cr_log_info("%s: %d ops of %lld bytes in %.3f s; at most %zu bytes in flight, %lld bytes of "
                "pool memory (after pushes), %lld (sampled %lld times)",
                what, n, (long long)out_bytes, dt, max_engine, (long long)max_loop, sampled,
                (long long)atomic_load(&s.samples));
    cr_assert_leq(atomic_load(&s.max_inflight), (long long)bound,
                  "%s: the sampler saw %lld bytes in flight", what,
                  (long long)atomic_load(&s.max_inflight));
    cr_assert_leq(sampled, (long long)bound,
                  "%s: the sampler saw %lld bytes of pool memory for pending ops, above %lld",
                  what, sampled, (long long)bound);
    /* The loop did outrun the ops, so the limit was what held it back. */
    cr_assert_geq(max_engine, (size_t)BP_MAX / 2, "%s: the pusher never got ahead of the ops",
                  what);
    cr_assert_eq(td_inflight_bytes(), (size_t)0);
}

struct held_arg {
    td_array *x;
};
static td_array *push_add(void *arg) {
    struct held_arg *h = arg;
    return td_add(h->x, h->x);
}

Test(backpressure, adds_queued_behind_a_slow_op_stay_under_the_limit, .timeout = 60) {
    bp_start(2);
    const int64_t n = (1 << 20) / 4; /* 1 MiB of f32 */
    td_array *x = td_ones(TD_F32, 1, &n, td_cpu(0));
    cr_assert_eq(td_array_wait(x), TD_OK);
    int64_t kept = in_use();
    /* Every add reads x, which this op holds for writing for 300 ms. */
    static struct nd_slow slow;
    nd_push_slow_write(&slow, x, 300, NULL);
    struct held_arg h = {x};
    loop_and_check(64, n * 4, kept, push_add, &h, "64 adds of 1 MiB behind a 300 ms op");
    cr_assert_eq(atomic_load(&slow.ran), 1);
    td_release(x);
    nd_finish();
}

struct big_arg {
    td_array *a, *b;
};
static td_array *push_big(void *arg) {
    struct big_arg *g = arg;
    return td_add(g->a, g->b);
}

Test(backpressure, many_big_adds_released_at_once_stay_under_the_limit, .timeout = 120) {
    bp_start(2);
    const int64_t n = (4 << 20) / 4; /* 4 MiB of f32 */
    struct big_arg g;
    g.a = td_ones(TD_F32, 1, &n, td_cpu(0));
    g.b = td_full(TD_F32, 1, &n, 2, td_cpu(0));
    cr_assert_eq(td_wait_all(), TD_OK);
    int64_t kept = in_use();
    loop_and_check(tt_quick() ? 40 : 120, n * 4, kept, push_big, &g,
                   "4 MiB adds released at once");
    /* The results were right all along: one more, read back. */
    td_array *c = td_add(g.a, g.b);
    nd_ref r = nd_read(c);
    for (int64_t k = 0; k < r.n; k++)
        if (r.f[k] != 3.0) cr_assert(0, "a + b [%lld] = %g", (long long)k, r.f[k]);
    nd_ref_free(&r);
    td_release(c);
    td_release(g.a);
    td_release(g.b);
    nd_finish();
}

struct expr_arg {
    td_array *a, *b;
};
static td_array *push_expr(void *arg) {
    struct expr_arg *e = arg;
    td_scope_begin();
    td_array *r = td_keep(td_add(e->a, td_mul_scalar(e->b, 2)));
    td_scope_end();
    return r;
}

Test(backpressure, a_plus_2b_in_a_loop_stays_under_the_limit, .timeout = 120) {
    bp_start(2);
    const int64_t n = (2 << 20) / 4; /* 2 MiB of f32 per array */
    struct expr_arg e;
    e.a = td_ones(TD_F32, 1, &n, td_cpu(0));
    e.b = td_ones(TD_F32, 1, &n, td_cpu(0));
    cr_assert_eq(td_wait_all(), TD_OK);
    int64_t kept = in_use();
    static struct nd_slow slow;
    nd_push_slow_write(&slow, e.b, 200, NULL);
    /* One expression pushes two ops of 2 MiB each. */
    loop_and_check(64, n * 4, kept, push_expr, &e, "A + 2*B, 2 MiB each, behind a 200 ms op");
    td_release(e.a);
    td_release(e.b);
    nd_finish();
}
