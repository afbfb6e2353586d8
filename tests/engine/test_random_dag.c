/* Random DAGs: the threaded engine gives results bit-identical to the naive
 * engine (which runs ops one by one in push order) for many seeds and worker
 * counts.
 *
 * Each seed makes thousands of ops over hundreds of vars with random read and
 * write sets, including duplicates and vars both read and written.  The test
 * owns one uint64 per var; each op folds a hash of what it reads into what it
 * writes, so any op that runs out of order, twice, or not at all changes the
 * final state.
 *
 * TIDE_TEST_QUICK=1 runs fewer seeds (for slow sanitizer runs); TIDE_TEST_SEED=n
 * runs the one seed n (to reproduce a failure).
 */
#include "common.h"

enum { DAG_VARS = 200, DAG_OPS = 2000, DAG_MAX_R = 5, DAG_MAX_W = 3 };
enum { DAG_SEEDS = 50, DAG_QUICK_SEEDS = 6, DAG_MAX_WORKERS = 4 };

struct dag_op {
    uint64_t *state;
    uint32_t id;
    uint16_t reads[DAG_MAX_R], writes[DAG_MAX_W];
    uint8_t n_reads, n_writes;
};

struct dag {
    uint64_t state[DAG_VARS];
    struct dag_op ops[DAG_OPS];
};

static td_status dag_fn(void *arg, const td_exec *ex) {
    (void)ex;
    const struct dag_op *o = arg;
    uint64_t h = tt_mix(o->id);
    for (int i = 0; i < o->n_reads; i++) h = tt_mix(h ^ o->state[o->reads[i]]);
    /* Every read happens before any write, as the op's read set is one
     * version; a var listed twice in writes is folded twice, deterministically. */
    for (int i = 0; i < o->n_writes; i++) {
        uint64_t *w = &o->state[o->writes[i]];
        *w = tt_mix(*w * 31 + h + (uint64_t)i);
    }
    return TD_OK;
}

static void dag_make(struct dag *d, uint64_t seed) {
    tt_rng rng = {seed};
    for (int v = 0; v < DAG_VARS; v++) d->state[v] = tt_rng_next(&rng);
    /* Some vars are hot, so chains and fans of readers form. */
    for (int k = 0; k < DAG_OPS; k++) {
        struct dag_op *o = &d->ops[k];
        o->id = (uint32_t)k;
        o->n_reads = (uint8_t)tt_rng_below(&rng, DAG_MAX_R + 1);
        o->n_writes = (uint8_t)(1 + tt_rng_below(&rng, DAG_MAX_W));
        for (int i = 0; i < o->n_reads; i++) {
            unsigned pick = tt_rng_below(&rng, 10);
            if (pick == 0 && i > 0)
                o->reads[i] = o->reads[i - 1]; /* a duplicate read */
            else
                o->reads[i] = (uint16_t)tt_rng_below(&rng, pick < 4 ? 16 : DAG_VARS);
        }
        for (int i = 0; i < o->n_writes; i++) {
            unsigned pick = tt_rng_below(&rng, 10);
            if (pick == 0 && o->n_reads > 0)
                o->writes[i] = o->reads[tt_rng_below(&rng, o->n_reads)]; /* read and written */
            else if (pick == 1 && i > 0)
                o->writes[i] = o->writes[i - 1]; /* a duplicate write */
            else
                o->writes[i] = (uint16_t)tt_rng_below(&rng, pick < 5 ? 16 : DAG_VARS);
        }
    }
}

/* Runs the ops of d on a fresh runtime; leaves the final state in out. */
static void dag_run(const struct dag *d, int engine, int workers, uint64_t seed,
                    uint64_t *out) {
    static struct dag_op ops[DAG_OPS];
    tt_start(engine, workers);
    memcpy(out, d->state, sizeof d->state);
    td_var *vars[DAG_VARS];
    for (int v = 0; v < DAG_VARS; v++) vars[v] = tt_var();
    for (int k = 0; k < DAG_OPS; k++) {
        ops[k] = d->ops[k];
        ops[k].state = out;
        td_var *r[DAG_MAX_R], *w[DAG_MAX_W];
        for (int i = 0; i < ops[k].n_reads; i++) r[i] = vars[ops[k].reads[i]];
        for (int i = 0; i < ops[k].n_writes; i++) w[i] = vars[ops[k].writes[i]];
        td_op op = tt_op("dag", dag_fn, &ops[k], r, ops[k].n_reads, w, ops[k].n_writes);
        td_status st = td_push(&op);
        cr_assert_eq(st, TD_OK, "seed %llu, %s engine, %d workers: push %d failed: %s",
                     (unsigned long long)seed, tt_engine_name(engine), workers, k,
                     td_last_error());
    }
    /* Release the vars while work is pending: their lifetime is the engine's
     * business from here on. */
    for (int v = 0; v < DAG_VARS; v++) td_var_free(vars[v]);
    td_status st = td_wait_all();
    cr_assert_eq(st, TD_OK, "seed %llu: td_wait_all: %s", (unsigned long long)seed,
                 td_last_error());
    tt_stop(TD_OK);
}

Test(random_dag, threaded_results_match_naive_for_many_seeds_and_workers, .timeout = 120) {
    static struct dag d;
    static uint64_t want[DAG_VARS], got[DAG_VARS];
    int n_seeds = tt_quick() ? DAG_QUICK_SEEDS : DAG_SEEDS;
    uint64_t first_seed = 1;
    const char *one = getenv("TIDE_TEST_SEED");
    if (one && *one) {
        first_seed = strtoull(one, NULL, 0);
        n_seeds = 1;
    }
    double t0 = tt_now();
    for (uint64_t seed = first_seed; seed < first_seed + (uint64_t)n_seeds; seed++) {
        dag_make(&d, seed);
        dag_run(&d, TD_ENGINE_NAIVE, 0, seed, want);
        /* The reference must actually have changed state, or the comparison
         * below would prove nothing. */
        cr_assert(memcmp(want, d.state, sizeof want) != 0, "seed %llu: the ops changed nothing",
                  (unsigned long long)seed);
        for (int workers = 1; workers <= DAG_MAX_WORKERS; workers++) {
            dag_run(&d, TD_ENGINE_THREADED, workers, seed, got);
            for (int v = 0; v < DAG_VARS; v++)
                cr_assert_eq(got[v], want[v],
                             "seed %llu, %d workers: var %d is %016llx, the naive engine gave "
                             "%016llx (rerun with TIDE_TEST_SEED=%llu)",
                             (unsigned long long)seed, workers, v, (unsigned long long)got[v],
                             (unsigned long long)want[v], (unsigned long long)seed);
        }
    }
    cr_log_info("random DAGs: %d seeds from %llu, %d ops over %d vars, 1..%d workers: %.2f s",
                n_seeds, (unsigned long long)first_seed, DAG_OPS, DAG_VARS, DAG_MAX_WORKERS,
                tt_now() - t0);
}
