/* The stall report names the pending ops. */
#include "common.h"

static atomic_int st_started, st_release;

static td_status st_stuck(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    atomic_store(&st_started, 1);
    tt_wait_at_least(&st_release, 1, 20.0);
    return TD_OK;
}

Test(stall, the_report_names_a_stuck_op_and_the_op_waiting_for_it, .timeout = 30) {
    tt_start(TD_ENGINE_THREADED, 2);
    td_var *v = tt_var(), *w = tt_var();
    td_op stuck = tt_op("stuck_op_xyz", st_stuck, NULL, NULL, 0, &v, 1);
    tt_push(&stuck);
    td_op waiting = tt_op("waiting_op_abc", tt_noop, NULL, &v, 1, &w, 1);
    tt_push(&waiting);
    cr_assert(tt_wait_at_least(&st_started, 1, 10.0), "the stuck op never started");
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    td_stall_report(f);
    fclose(f);
    atomic_store(&st_release, 1);
    cr_assert_eq(td_wait_all(), TD_OK);
    cr_log_info("stall report:\n%s", buf);
    int named_stuck = tt_has(buf, "stuck_op_xyz"), named_waiting = tt_has(buf, "waiting_op_abc");
    free(buf);
    cr_assert(named_stuck, "the stall report does not name the running, stuck op");
    cr_assert(named_waiting, "the stall report does not name the op waiting for it");
    td_var_free(v);
    td_var_free(w);
    tt_stop(TD_OK);
}

Test(stall, the_report_of_an_idle_runtime_names_no_op, .timeout = 30) {
    tt_start(TD_ENGINE_THREADED, 1);
    td_op op = tt_op("finished_op_qrs", tt_noop, NULL, NULL, 0, NULL, 0);
    tt_push(&op);
    cr_assert_eq(td_wait_all(), TD_OK);
    /* A worker may still be leaving the op it just finished when td_wait_all
     * returns, so look again for a while before calling the op pending. */
    int named = 1;
    for (int tries = 0; named && tries < 100; tries++) {
        if (tries) tt_sleep_ms(20);
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        cr_assert_not_null(f);
        td_stall_report(f);
        fclose(f);
        named = tt_has(buf, "finished_op_qrs");
        free(buf);
    }
    cr_assert_not(named, "the stall report names an op that already finished");
    tt_stop(TD_OK);
}
