/* td_parallel_for: chunks cover [0, n) exactly once, their number is
 * td_parallel_chunks(n, grain), results are bit-identical for any number of
 * workers (and on the naive engine), no deadlock when every worker calls it,
 * and bad arguments are TD_EINVAL. */
#include "common.h"

struct pf_chunk {
    int64_t begin, end;
    float sum;
};

struct pf_run {
    int64_t n, grain;
    const float *data;             /* NULL: no sums */
    atomic_uchar *hits;            /* per index, NULL: not counted */
    struct pf_chunk *chunks;       /* room for max_chunks */
    int64_t max_chunks;
    atomic_int n_chunks;
    atomic_int bad;                /* chunk outside [0, n) or empty */
    td_status status;
};

static void pf_body(void *arg, int64_t begin, int64_t end) {
    struct pf_run *r = arg;
    if (begin < 0 || end > r->n || begin >= end) {
        atomic_fetch_add(&r->bad, 1);
        return;
    }
    float s = 0.0f;
    if (r->data)
        for (int64_t i = begin; i < end; i++) s += r->data[i] * 0.5f + 1.0f / (float)(i + 1);
    if (r->hits)
        for (int64_t i = begin; i < end; i++) atomic_fetch_add(&r->hits[i], 1);
    int slot = atomic_fetch_add(&r->n_chunks, 1);
    if (slot < r->max_chunks) r->chunks[slot] = (struct pf_chunk){begin, end, s};
}

static td_status pf_op(void *arg, const td_exec *ex) {
    struct pf_run *r = arg;
    r->status = td_parallel_for(ex, r->n, r->grain, pf_body, r);
    return TD_OK;
}

static int pf_cmp(const void *pa, const void *pb) {
    const struct pf_chunk *a = pa, *b = pb;
    return (a->begin > b->begin) - (a->begin < b->begin);
}

/* Room for the chunks of a loop, with some to spare so that too many chunks
 * are counted rather than written out of bounds. */
static struct pf_chunk *pf_alloc_chunks(struct pf_run *r) {
    r->max_chunks = td_parallel_chunks(r->n, r->grain) + 16;
    r->chunks = malloc(sizeof(struct pf_chunk) * (size_t)r->max_chunks);
    cr_assert_not_null(r->chunks);
    return r->chunks;
}

/* Runs one td_parallel_for inside an op and returns its chunks sorted. */
static int pf_run_once(struct pf_run *r) {
    atomic_store(&r->n_chunks, 0);
    atomic_store(&r->bad, 0);
    r->status = TD_EFAILED;
    td_var *v = tt_var();
    td_op op = tt_op("parallel_loop", pf_op, r, NULL, 0, &v, 1);
    tt_push(&op);
    cr_assert_eq(td_var_wait(v), TD_OK);
    td_var_free(v);
    int n = atomic_load(&r->n_chunks);
    cr_assert_leq(n, r->max_chunks, "n %lld grain %lld: %d chunks, more than td_parallel_chunks",
                  (long long)r->n, (long long)r->grain, n);
    qsort(r->chunks, (size_t)n, sizeof r->chunks[0], pf_cmp);
    return n;
}

Test(parallel_for, chunks_cover_the_range_exactly_once, .timeout = 60) {
    static const int64_t cases[][2] = {
        {0, 1}, {1, 1}, {7, 1}, {7, 3}, {1000, 1}, {1000, 7}, {1000, 1000}, {1000, 5000},
        {100003, 64}, {100003, 4096}, {1 << 20, 1},
    };
    atomic_uchar *hits = calloc((size_t)1 << 20, sizeof *hits);
    cr_assert_not_null(hits);
    for (int workers = 1; workers <= 4; workers += 3) {
        tt_start(TD_ENGINE_THREADED, workers);
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            int64_t n = cases[c][0], grain = cases[c][1];
            static struct pf_run r;
            memset(hits, 0, (size_t)n);
            r = (struct pf_run){.n = n, .grain = grain, .hits = hits};
            struct pf_chunk *chunks = pf_alloc_chunks(&r);
            int got = pf_run_once(&r);
            cr_assert_eq(r.status, TD_OK, "n %lld grain %lld: td_parallel_for returned %s",
                         (long long)n, (long long)grain, td_status_name(r.status));
            cr_assert_eq(atomic_load(&r.bad), 0, "n %lld grain %lld: an empty or outside chunk",
                         (long long)n, (long long)grain);
            int64_t want = td_parallel_chunks(n, grain);
            cr_assert_eq((int64_t)got, want,
                         "n %lld grain %lld, %d workers: %d chunks, td_parallel_chunks says %lld",
                         (long long)n, (long long)grain, workers, got, (long long)want);
            int64_t next = 0;
            for (int i = 0; i < got; i++) {
                cr_assert_eq(chunks[i].begin, next, "n %lld grain %lld: gap or overlap at %lld",
                             (long long)n, (long long)grain, (long long)next);
                next = chunks[i].end;
            }
            cr_assert_eq(next, n, "n %lld grain %lld: chunks end at %lld", (long long)n,
                         (long long)grain, (long long)next);
            for (int64_t i = 0; i < n; i++)
                if (atomic_load(&hits[i]) != 1)
                    cr_assert(0, "n %lld grain %lld: index %lld ran %d times", (long long)n,
                              (long long)grain, (long long)i, (int)atomic_load(&hits[i]));
            free(chunks);
        }
        tt_stop(TD_OK);
    }
    free(hits);
}

Test(parallel_for, results_are_identical_for_one_to_four_workers_and_naive, .timeout = 60) {
    enum { N = (1 << 20) + 12345, GRAIN = 3000 };
    float *data = malloc(sizeof(float) * N);
    cr_assert_not_null(data);
    tt_rng rng = {4242};
    for (int i = 0; i < N; i++) data[i] = (float)(tt_rng_next(&rng) % 2000001) / 1000.0f - 1000.0f;
    struct pf_chunk *ref = NULL, *got = NULL;
    int n_ref = -1;
    /* configuration 0 is the naive engine, then 1..4 workers */
    for (int cfg = 0; cfg <= 4; cfg++) {
        tt_start(cfg == 0 ? TD_ENGINE_NAIVE : TD_ENGINE_THREADED, cfg);
        static struct pf_run r;
        r = (struct pf_run){.n = N, .grain = GRAIN, .data = data};
        if (cfg == 0)
            ref = pf_alloc_chunks(&r);
        else if (cfg == 1)
            got = pf_alloc_chunks(&r);
        else
            r.chunks = got, r.max_chunks = td_parallel_chunks(N, GRAIN) + 16;
        int n = pf_run_once(&r);
        cr_assert_eq(r.status, TD_OK);
        cr_assert_eq((int64_t)n, td_parallel_chunks(N, GRAIN));
        cr_assert_gt(n, 1, "a loop of %d with grain %d made one chunk", N, GRAIN);
        if (cfg == 0) {
            n_ref = n;
        } else {
            cr_assert_eq(n, n_ref, "%d workers: %d chunks, the naive engine made %d", cfg, n,
                         n_ref);
            for (int i = 0; i < n; i++) {
                cr_assert(got[i].begin == ref[i].begin && got[i].end == ref[i].end,
                          "%d workers: chunk %d is [%lld, %lld), naive made [%lld, %lld)", cfg,
                          i, (long long)got[i].begin, (long long)got[i].end,
                          (long long)ref[i].begin, (long long)ref[i].end);
                cr_assert(memcmp(&got[i].sum, &ref[i].sum, sizeof(float)) == 0,
                          "%d workers: chunk %d sums to %.9g, naive gave %.9g", cfg, i,
                          (double)got[i].sum, (double)ref[i].sum);
            }
        }
        tt_stop(TD_OK);
    }
    free(ref);
    free(got);
    free(data);
}

/* ---- every worker calls td_parallel_for at once ---- */

struct all_op {
    atomic_int *arrived;
    int workers;
    struct pf_run run;
    int64_t want_chunks;
};

static td_status all_fn(void *arg, const td_exec *ex) {
    struct all_op *o = arg;
    atomic_fetch_add(o->arrived, 1);
    /* Bounded: enter the loop together if the pool lets us. */
    tt_wait_at_least(o->arrived, o->workers, 5.0);
    o->run.status = td_parallel_for(ex, o->run.n, o->run.grain, pf_body, &o->run);
    return TD_OK;
}

Test(parallel_for, no_deadlock_when_every_worker_calls_it, .timeout = 90) {
    for (int workers = 2; workers <= 4; workers++) {
        tt_start(TD_ENGINE_THREADED, workers);
        for (int round = 0; round < 5; round++) {
            static atomic_int arrived;
            atomic_store(&arrived, 0);
            static struct all_op ops[4];
            td_var *vars[4];
            for (int i = 0; i < workers; i++) {
                ops[i] = (struct all_op){.arrived = &arrived, .workers = workers};
                ops[i].run = (struct pf_run){.n = 1 << 20, .grain = 256};
                pf_alloc_chunks(&ops[i].run);
                vars[i] = tt_var();
                td_op op = tt_op("loop_everywhere", all_fn, &ops[i], NULL, 0, &vars[i], 1);
                tt_push(&op);
            }
            cr_assert_eq(td_wait_all(), TD_OK);
            for (int i = 0; i < workers; i++) {
                cr_assert_eq(ops[i].run.status, TD_OK);
                cr_assert_eq((int64_t)atomic_load(&ops[i].run.n_chunks),
                             td_parallel_chunks(1 << 20, 256),
                             "%d workers, op %d: not every chunk ran", workers, i);
                cr_assert_eq(atomic_load(&ops[i].run.bad), 0);
                free(ops[i].run.chunks);
                td_var_free(vars[i]);
            }
        }
        tt_stop(TD_OK);
    }
}

/* ---- bad arguments ---- */

struct bad_args {
    td_status null_ex, null_fn, neg_n, zero_grain, neg_grain, empty;
    int messages;
    atomic_int calls;
};

static void count_calls(void *arg, int64_t b, int64_t e) {
    (void)b;
    (void)e;
    atomic_fetch_add(&((struct bad_args *)arg)->calls, 1);
}

static td_status bad_fn(void *arg, const td_exec *ex) {
    struct bad_args *b = arg;
    td_clear_error();
    b->null_ex = td_parallel_for(NULL, 10, 1, count_calls, b);
    b->messages += td_last_error()[0] != '\0';
    b->null_fn = td_parallel_for(ex, 10, 1, NULL, b);
    b->messages += td_last_error()[0] != '\0';
    b->neg_n = td_parallel_for(ex, -1, 1, count_calls, b);
    b->zero_grain = td_parallel_for(ex, 10, 0, count_calls, b);
    b->neg_grain = td_parallel_for(ex, 10, -5, count_calls, b);
    b->empty = td_parallel_for(ex, 0, 1, count_calls, b);
    return TD_OK;
}

Test(parallel_for, bad_arguments_return_einval, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        static struct bad_args b;
        memset(&b, 0, sizeof b);
        td_op op = tt_op("bad_loops", bad_fn, &b, NULL, 0, NULL, 0);
        tt_push(&op);
        cr_assert_eq(td_wait_all(), TD_OK);
        cr_assert_eq(b.null_ex, TD_EINVAL, "%s engine: NULL ex", tt_engine_name(engine));
        cr_assert_eq(b.null_fn, TD_EINVAL, "%s engine: NULL fn", tt_engine_name(engine));
        cr_assert_eq(b.neg_n, TD_EINVAL, "%s engine: n < 0", tt_engine_name(engine));
        cr_assert_eq(b.zero_grain, TD_EINVAL, "%s engine: grain 0", tt_engine_name(engine));
        cr_assert_eq(b.neg_grain, TD_EINVAL, "%s engine: grain < 0", tt_engine_name(engine));
        cr_assert_eq(b.empty, TD_OK, "%s engine: n == 0", tt_engine_name(engine));
        cr_assert_eq(b.messages, 2, "%s engine: rejected calls gave no message",
                     tt_engine_name(engine));
        cr_assert_eq(atomic_load(&b.calls), 0, "%s engine: a rejected or empty loop called fn",
                     tt_engine_name(engine));
        /* Outside any op there is no exec. */
        td_status st = td_parallel_for(NULL, 10, 1, count_calls, &b);
        cr_assert_eq(st, TD_EINVAL);
        tt_stop(TD_OK);
    }
}
