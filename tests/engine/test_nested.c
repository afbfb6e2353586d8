/* Pushes from inside running ops, on both engines: program order holds,
 * td_wait_all waits for ops pushed by ops, and on the naive engine an op
 * pushed from inside an op runs when the outer op returns. */
#include "common.h"

/* ---- naive: nested pushes are queued in program order ---- */

enum { EV_OUTER_BEGIN = 1, EV_OUTER_END, EV_A_BEGIN, EV_A_END, EV_B, EV_A1 };
static int ev_log[16];
static atomic_int ev_n;
static atomic_int ev_push_failed;

static void ev(int code) {
    int i = atomic_fetch_add(&ev_n, 1);
    if (i < 16) ev_log[i] = code;
}

static td_status ev_a1(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    ev(EV_A1);
    return TD_OK;
}

static td_status ev_b(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    ev(EV_B);
    return TD_OK;
}

static td_status ev_a(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    ev(EV_A_BEGIN);
    td_op a1 = tt_op("A1", ev_a1, NULL, NULL, 0, NULL, 0);
    if (td_push(&a1) != TD_OK) atomic_fetch_add(&ev_push_failed, 1);
    ev(EV_A_END);
    return TD_OK;
}

static td_status ev_outer(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    ev(EV_OUTER_BEGIN);
    td_op a = tt_op("A", ev_a, NULL, NULL, 0, NULL, 0);
    td_op b = tt_op("B", ev_b, NULL, NULL, 0, NULL, 0);
    if (td_push(&a) != TD_OK) atomic_fetch_add(&ev_push_failed, 1);
    if (td_push(&b) != TD_OK) atomic_fetch_add(&ev_push_failed, 1);
    ev(EV_OUTER_END);
    return TD_OK;
}

Test(nested, naive_op_pushed_inside_an_op_runs_after_the_outer_op_returns, .timeout = 30) {
    tt_start(TD_ENGINE_NAIVE, 0);
    td_op outer = tt_op("outer", ev_outer, NULL, NULL, 0, NULL, 0);
    tt_push(&outer);
    cr_assert_eq(td_wait_all(), TD_OK);
    cr_assert_eq(atomic_load(&ev_push_failed), 0, "a push from inside an op failed");
    static const int want[] = {EV_OUTER_BEGIN, EV_OUTER_END, EV_A_BEGIN, EV_A_END, EV_B, EV_A1};
    char got_s[64] = "", want_s[64] = "";
    int n = atomic_load(&ev_n);
    for (int i = 0; i < n && i < 16; i++)
        snprintf(got_s + strlen(got_s), sizeof got_s - strlen(got_s), " %d", ev_log[i]);
    for (int i = 0; i < 6; i++)
        snprintf(want_s + strlen(want_s), sizeof want_s - strlen(want_s), " %d", want[i]);
    /* 1 outer begins, 2 outer ends, 3 A begins, 4 A ends, 5 B, 6 A1 (A1 was
     * pushed after B, so it runs after B). */
    cr_assert_str_eq(got_s, want_s, "naive engine ran events%s, expected%s", got_s, want_s);
    tt_stop(TD_OK);
}

/* ---- td_wait_all waits for ops pushed by ops ---- */

static atomic_int deep_done;

static td_status deep_fn(void *arg, const td_exec *ex) {
    (void)ex;
    int depth = (int)(intptr_t)arg;
    tt_sleep_ms(10);
    if (depth < 4) {
        for (int i = 0; i < 2; i++) {
            td_op op = tt_op("deeper", deep_fn, (void *)(intptr_t)(depth + 1), NULL, 0, NULL, 0);
            if (td_push(&op) != TD_OK) return TD_EFAILED;
        }
    }
    atomic_fetch_add(&deep_done, 1);
    return TD_OK;
}

Test(nested, wait_all_waits_for_ops_pushed_by_ops, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 3);
        atomic_store(&deep_done, 0);
        td_op op = tt_op("root", deep_fn, (void *)(intptr_t)0, NULL, 0, NULL, 0);
        tt_push(&op);
        cr_assert_eq(td_wait_all(), TD_OK);
        /* A binary tree of depth 4 below the root: 1 + 2 + 4 + 8 + 16 ops. */
        cr_assert_eq(atomic_load(&deep_done), 31,
                     "%s engine: td_wait_all returned with %d of 31 ops done",
                     tt_engine_name(engine), atomic_load(&deep_done));
        tt_stop(TD_OK);
    }
}

/* ---- program order with pushes from inside ops ---- */

struct po_nested {
    td_var *v;
    int64_t value;
    int push_failed;
};
static struct po_nested pn;

static td_status pn_init(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    tt_sleep_ms(5);
    pn.value = 1;
    return TD_OK;
}

static td_status pn_digit(void *arg, const td_exec *ex) {
    (void)ex;
    pn.value = pn.value * 10 + (int)(intptr_t)arg;
    return TD_OK;
}

/* Holds the write on v while pushing two more writes of v, then writes v once
 * more: the pushed ops must wait for this op, and see its last write. */
static td_status pn_outer(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    pn.value = pn.value * 10 + 2;
    for (int d = 3; d <= 4; d++) {
        td_op op = tt_op("inner_digit", pn_digit, (void *)(intptr_t)d, &pn.v, 1, &pn.v, 1);
        if (td_push(&op) != TD_OK) pn.push_failed = 1;
    }
    tt_sleep_ms(20);
    pn.value = pn.value * 10 + 5;
    return TD_OK;
}

Test(nested, pushes_from_inside_ops_keep_program_order, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 3);
        memset(&pn, 0, sizeof pn);
        pn.v = tt_var();
        td_op init = tt_op("init", pn_init, NULL, NULL, 0, &pn.v, 1);
        tt_push(&init);
        td_op outer = tt_op("outer", pn_outer, NULL, &pn.v, 1, &pn.v, 1);
        tt_push(&outer);
        cr_assert_eq(td_wait_all(), TD_OK);
        cr_assert_not(pn.push_failed);
        cr_assert_eq(td_var_wait(pn.v), TD_OK);
        cr_assert_eq(pn.value, 12534, "%s engine: digits %lld, expected 12534",
                     tt_engine_name(engine), (long long)pn.value);
        td_var_free(pn.v);
        tt_stop(TD_OK);
    }
}
