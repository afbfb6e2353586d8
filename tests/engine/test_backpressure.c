/* Back-pressure: a push from a user thread waits while the bytes declared by
 * pending ops are above max_inflight_bytes; pushes from inside ops never wait;
 * ops that declare no bytes are not counted. */
#include "common.h"

enum { BP_MAX = 1 << 20, BP_OP_BYTES = 256 << 10, BP_OPS = 64 };

static atomic_llong bp_finished_bytes;

static td_status bp_slow(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    tt_sleep_ms(1);
    atomic_fetch_add(&bp_finished_bytes, BP_OP_BYTES);
    return TD_OK;
}

static void bp_start(int workers) {
    td_config cfg = td_config_default();
    cfg.engine = TD_ENGINE_THREADED;
    cfg.cpu_workers = workers;
    cfg.max_inflight_bytes = BP_MAX;
    td_status st = td_init(&cfg);
    cr_assert_eq(st, TD_OK, "td_init: %s", td_last_error());
    cr_assert_eq(td_max_inflight_bytes(), (size_t)BP_MAX);
}

Test(backpressure, memory_stays_under_the_bound_while_a_fast_pusher_outruns_slow_ops,
     .timeout = 60) {
    bp_start(2);
    atomic_store(&bp_finished_bytes, 0);
    td_var *vars[4];
    for (int i = 0; i < 4; i++) vars[i] = tt_var();
    long long pushed = 0, max_test_side = 0;
    size_t max_engine = 0;
    const size_t bound = (size_t)BP_MAX + BP_OP_BYTES;
    double t0 = tt_now();
    for (int i = 0; i < BP_OPS; i++) {
        td_op op = tt_op("bytes_256k", bp_slow, NULL, NULL, 0, &vars[i % 4], 1);
        op.out_bytes = BP_OP_BYTES;
        tt_push(&op);
        pushed += BP_OP_BYTES;
        size_t engine_side = td_inflight_bytes();
        long long test_side = pushed - atomic_load(&bp_finished_bytes);
        if (engine_side > max_engine) max_engine = engine_side;
        if (test_side > max_test_side) max_test_side = test_side;
        cr_assert_leq(engine_side, bound,
                      "after push %d: td_inflight_bytes() = %zu, above the bound %zu", i,
                      engine_side, bound);
        cr_assert_leq(test_side, (long long)bound,
                      "after push %d: %lld bytes pushed and not finished, above the bound %zu",
                      i, test_side, bound);
    }
    double dt = tt_now() - t0;
    cr_assert_eq(td_wait_all(), TD_OK);
    cr_assert_eq(td_inflight_bytes(), (size_t)0, "bytes still counted after td_wait_all");
    cr_log_info("back-pressure: at most %zu bytes in flight (engine), %lld (test), pushes took "
                "%.3f s",
                max_engine, max_test_side, dt);
    /* The pusher did outrun the ops, so the bound was what held it back. */
    cr_assert_geq(max_engine, (size_t)BP_MAX / 2, "the pusher never got ahead of the ops");
    for (int i = 0; i < 4; i++) td_var_free(vars[i]);
    tt_stop(TD_OK);
}

struct bp_outer {
    size_t inflight_after_pushes;
    double push_seconds;
    int push_failed;
    atomic_int inner_ran;
};

static td_status bp_inner(void *arg, const td_exec *ex) {
    (void)ex;
    struct bp_outer *o = arg;
    atomic_fetch_add(&o->inner_ran, 1);
    return TD_OK;
}

/* Pushes 16 ops of 256 KiB (4 MiB, four times the bound) from inside an op.
 * With one worker, none of them can run before this op returns: a push that
 * waited for the bytes to drain would never return. */
static td_status bp_outer_fn(void *arg, const td_exec *ex) {
    (void)ex;
    struct bp_outer *o = arg;
    double t0 = tt_now();
    for (int i = 0; i < 16; i++) {
        td_op op = tt_op("inner_256k", bp_inner, o, NULL, 0, NULL, 0);
        op.out_bytes = BP_OP_BYTES;
        if (td_push(&op) != TD_OK) o->push_failed = 1;
    }
    o->push_seconds = tt_now() - t0;
    o->inflight_after_pushes = td_inflight_bytes();
    return TD_OK;
}

Test(backpressure, pushes_from_inside_ops_never_wait, .timeout = 30) {
    bp_start(1);
    static struct bp_outer o;
    td_op op = tt_op("outer_pusher", bp_outer_fn, &o, NULL, 0, NULL, 0);
    tt_push(&op);
    cr_assert_eq(td_wait_all(), TD_OK);
    cr_assert_not(o.push_failed);
    cr_assert_eq(atomic_load(&o.inner_ran), 16, "td_wait_all returned before the inner ops ran");
    cr_assert_geq(o.inflight_after_pushes, (size_t)16 * BP_OP_BYTES,
                  "inside the op, td_inflight_bytes() was %zu after pushing 4 MiB",
                  o.inflight_after_pushes);
    cr_assert_lt(o.push_seconds, 2.0, "pushes inside an op took %.3f s", o.push_seconds);
    cr_assert_eq(td_inflight_bytes(), (size_t)0);
    tt_stop(TD_OK);
}

Test(backpressure, ops_without_declared_bytes_are_not_counted, .timeout = 30) {
    bp_start(1);
    td_var *v = tt_var();
    /* A slow op holds the only worker, so everything below stays pending. */
    struct bp_outer dummy;
    memset(&dummy, 0, sizeof dummy);
    td_op slow = tt_op("bytes_256k", bp_slow, NULL, NULL, 0, &v, 1);
    slow.out_bytes = BP_OP_BYTES;
    tt_push(&slow);
    for (int i = 0; i < 100; i++) {
        td_op op = tt_op("no_bytes", bp_inner, &dummy, &v, 1, NULL, 0);
        tt_push(&op);
        size_t now = td_inflight_bytes();
        cr_assert_leq(now, (size_t)BP_OP_BYTES, "ops without bytes counted: %zu in flight", now);
    }
    cr_assert_eq(td_wait_all(), TD_OK);
    cr_assert_eq(atomic_load(&dummy.inner_ran), 100);
    cr_assert_eq(td_inflight_bytes(), (size_t)0);
    td_var_free(v);
    tt_stop(TD_OK);
}
