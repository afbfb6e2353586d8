/* The naive engine (TIDE_ENGINE=naive, or td_config.engine = TD_ENGINE_NAIVE)
 * runs every op at push time on the caller's thread. */
#include "common.h"

struct nv_record {
    atomic_int ran;
    uintptr_t thread;
    int worker;
};

static td_status nv_fn(void *arg, const td_exec *ex) {
    struct nv_record *r = arg;
    r->thread = tt_thread_id();
    r->worker = td_exec_worker(ex);
    atomic_fetch_add(&r->ran, 1);
    return TD_OK;
}

/* Pushes a few ops (a chain, reads, independent ones) and checks each one ran
 * before its td_push returned, on this thread. */
static void check_runs_at_push(const char *how) {
    static struct nv_record rec[12];
    memset(rec, 0, sizeof rec);
    td_var *v = tt_var(), *w = tt_var();
    uintptr_t me = tt_thread_id();
    for (int i = 0; i < 12; i++) {
        td_op op = i % 3 == 0   ? tt_op("naive_write", nv_fn, &rec[i], NULL, 0, &v, 1)
                   : i % 3 == 1 ? tt_op("naive_read", nv_fn, &rec[i], &v, 1, &w, 1)
                                : tt_op("naive_free", nv_fn, &rec[i], NULL, 0, NULL, 0);
        tt_push(&op);
        cr_assert_eq(atomic_load(&rec[i].ran), 1, "%s: op %d had not run when td_push returned",
                     how, i);
        cr_assert(rec[i].thread == me, "%s: op %d ran on another thread", how, i);
    }
    cr_assert_eq(td_var_wait(w), TD_OK);
    cr_assert_eq(td_wait_all(), TD_OK);
    td_var_free(v);
    td_var_free(w);
}

Test(naive, ops_run_at_push_time_on_the_callers_thread, .timeout = 30) {
    td_config cfg = td_config_default();
    cfg.engine = TD_ENGINE_NAIVE;
    cr_assert_eq(td_init(&cfg), TD_OK, "%s", td_last_error());
    check_runs_at_push("cfg.engine = TD_ENGINE_NAIVE");
    tt_stop(TD_OK);
}

Test(naive, tide_engine_variable_selects_the_naive_engine, .timeout = 30) {
    /* Each test runs in its own process, so the variable stays here. */
    cr_assert_eq(setenv("TIDE_ENGINE", "naive", 1), 0);
    td_config cfg = td_config_default();
    cr_assert_eq(cfg.engine, TD_ENGINE_NAIVE, "TIDE_ENGINE=naive: td_config_default().engine is %d",
                 cfg.engine);
    /* Started implicitly by the first call that needs it. */
    cr_assert_not(td_is_running());
    check_runs_at_push("TIDE_ENGINE=naive, implicit start");
    tt_stop(TD_OK);
    /* And through td_init(NULL). */
    cr_assert_eq(td_init(NULL), TD_OK, "%s", td_last_error());
    check_runs_at_push("TIDE_ENGINE=naive, td_init(NULL)");
    tt_stop(TD_OK);
    cr_assert_eq(setenv("TIDE_ENGINE", "threaded", 1), 0);
    cr_assert_eq(td_config_default().engine, TD_ENGINE_THREADED);
    unsetenv("TIDE_ENGINE");
}

Test(naive, the_threaded_engine_runs_ops_on_workers, .timeout = 30) {
    /* The counterpart, so the naive checks above cannot pass by accident. */
    tt_start(TD_ENGINE_THREADED, 2);
    static struct nv_record rec;
    td_op op = tt_op("threaded", nv_fn, &rec, NULL, 0, NULL, 0);
    tt_push(&op);
    cr_assert_eq(td_wait_all(), TD_OK);
    cr_assert_eq(atomic_load(&rec.ran), 1);
    cr_assert(rec.thread != tt_thread_id(), "the threaded engine ran an op on the pusher");
    cr_assert(rec.worker >= 0 && rec.worker < 2);
    tt_stop(TD_OK);
}
