/* Lifetimes: arg_free exactly once (run, skip, pending at shutdown), and
 * td_var_free deferred while ops that use the var are pending. */
#include "common.h"

enum { LT_OPS = 300 };
struct lt_slot {
    atomic_int ran;
    atomic_int freed;
    atomic_int freed_before_run;
    td_status status;
    int sleep_us;
};
static struct lt_slot slots[LT_OPS];

static td_status lt_fn(void *arg, const td_exec *ex) {
    struct lt_slot *s = arg;
    if (s->sleep_us) tt_spin_us(s->sleep_us);
    atomic_fetch_add(&s->ran, 1);
    if (s->status != TD_OK) td_exec_set_error(ex, "slot failed on purpose");
    return s->status;
}

static void lt_free(void *arg) {
    struct lt_slot *s = arg;
    if (atomic_load(&s->ran) == 0) atomic_fetch_add(&s->freed_before_run, 1);
    atomic_fetch_add(&s->freed, 1);
}

static void lt_reset(void) {
    for (int i = 0; i < LT_OPS; i++) {
        atomic_store(&slots[i].ran, 0);
        atomic_store(&slots[i].freed, 0);
        atomic_store(&slots[i].freed_before_run, 0);
        slots[i].status = TD_OK;
        slots[i].sleep_us = 0;
    }
}

static void lt_push(int i, const char *name, td_var *const *r, size_t nr, td_var *const *w,
                    size_t nw) {
    td_op op = tt_op(name, lt_fn, &slots[i], r, nr, w, nw);
    op.arg_free = lt_free;
    tt_push(&op);
}

Test(lifetimes, arg_free_is_called_exactly_once_after_the_op_ran, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 3);
        lt_reset();
        td_var *vars[8], *marked = tt_var(), *sink = tt_var();
        for (int i = 0; i < 8; i++) vars[i] = tt_var();
        for (int i = 0; i < LT_OPS; i++) {
            slots[i].sleep_us = i % 7 == 0 ? 200 : 0;
            if (i % 50 == 49) { /* failing ops, and readers of what they write */
                slots[i].status = TD_EFAILED;
                lt_push(i, "failing", NULL, 0, &marked, 1);
            } else if (i % 50 == 0 && i > 0) {
                lt_push(i, "skipped", &marked, 1, &sink, 1);
            } else {
                lt_push(i, "counted", &vars[i % 8], 1, &vars[(i * 3 + 1) % 8], 1);
            }
        }
        td_status st = td_wait_all();
        cr_assert_eq(st, TD_EFAILED, "%s engine: td_wait_all returned %s", tt_engine_name(engine),
                     td_status_name(st));
        for (int i = 0; i < 8; i++) td_var_free(vars[i]);
        td_var_free(marked);
        td_var_free(sink);
        tt_stop(TD_OK);
        int ran = 0;
        for (int i = 0; i < LT_OPS; i++) {
            cr_assert_eq(atomic_load(&slots[i].freed), 1,
                         "%s engine: arg_free of op %d called %d times", tt_engine_name(engine),
                         i, atomic_load(&slots[i].freed));
            ran += atomic_load(&slots[i].ran);
        }
        /* Some ops read a var a failed op marked, and were skipped; those
         * must have been freed without running, the others after running. */
        for (int i = 0; i < LT_OPS; i++)
            cr_assert_eq(atomic_load(&slots[i].freed_before_run), atomic_load(&slots[i].ran) == 0,
                         "%s engine: op %d: arg_free before the op ran", tt_engine_name(engine),
                         i);
        cr_assert_eq(ran, LT_OPS - (LT_OPS / 50 - 1), "%s engine: %d ops ran",
                     tt_engine_name(engine), ran);
    }
}

Test(lifetimes, arg_free_is_called_exactly_once_for_a_skipped_op, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        lt_reset();
        td_var *a = tt_var(), *b = tt_var(), *c = tt_var();
        slots[0].status = TD_EFAILED;
        lt_push(0, "failing", NULL, 0, &a, 1);
        lt_push(1, "skipped_reader", &a, 1, &b, 1);
        lt_push(2, "skipped_updater", (td_var *[]){b, c}, 2, &c, 1);
        td_status st = td_wait_all();
        cr_assert_eq(st, TD_EFAILED);
        td_var_free(a);
        td_var_free(b);
        td_var_free(c);
        tt_stop(TD_OK);
        for (int i = 0; i < 3; i++)
            cr_assert_eq(atomic_load(&slots[i].freed), 1, "%s engine: op %d freed %d times",
                         tt_engine_name(engine), i, atomic_load(&slots[i].freed));
        cr_assert_eq(atomic_load(&slots[0].ran), 1);
        cr_assert_eq(atomic_load(&slots[1].ran), 0);
        cr_assert_eq(atomic_load(&slots[2].ran), 0);
    }
}

static td_status lt_sleep_fn(void *arg, const td_exec *ex) {
    (void)ex;
    tt_sleep_ms(*(int *)arg);
    return TD_OK;
}

Test(lifetimes, ops_pending_at_shutdown_run_and_are_freed_once, .timeout = 30) {
    tt_start(TD_ENGINE_THREADED, 1);
    lt_reset();
    static int blocker_ms = 100;
    td_var *gate = tt_var(), *chain = tt_var();
    td_var *free_vars[LT_OPS];
    td_op b = tt_op("slow_blocker", lt_sleep_fn, &blocker_ms, NULL, 0, &gate, 1);
    tt_push(&b);
    /* Half wait behind the blocker on its var, half only for a worker. */
    for (int i = 0; i < LT_OPS; i++) {
        free_vars[i] = tt_var();
        if (i % 2)
            lt_push(i, "behind_gate", &gate, 1, &chain, 1);
        else
            lt_push(i, "independent", NULL, 0, &free_vars[i], 1);
        td_var_free(free_vars[i]);
    }
    td_var_free(gate);
    td_var_free(chain);
    tt_stop(TD_OK); /* drains everything still pending */
    for (int i = 0; i < LT_OPS; i++) {
        cr_assert_eq(atomic_load(&slots[i].ran), 1, "op %d pending at shutdown ran %d times", i,
                     atomic_load(&slots[i].ran));
        cr_assert_eq(atomic_load(&slots[i].freed), 1, "op %d pending at shutdown freed %d times",
                     i, atomic_load(&slots[i].freed));
        cr_assert_eq(atomic_load(&slots[i].freed_before_run), 0);
    }
}

/* ---- td_var_free while ops are pending ---- */

struct vf_state {
    int value;
    int seen[4];
};
struct vf_op {
    struct vf_state *s;
    int kind; /* 0..3 */
};

static td_status vf_fn(void *arg, const td_exec *ex) {
    (void)ex;
    struct vf_op *o = arg;
    switch (o->kind) {
    case 0: tt_sleep_ms(30); o->s->value = 1; break; /* slow first write */
    case 1: o->s->seen[1] = o->s->value; break;       /* read */
    case 2: o->s->value = o->s->value * 10 + 2; break; /* read-modify-write */
    case 3: o->s->seen[3] = o->s->value; break;       /* read */
    }
    return TD_OK;
}

Test(lifetimes, var_free_with_pending_ops_is_deferred, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        static struct vf_state s;
        static struct vf_op ops[4];
        memset(&s, 0, sizeof s);
        td_var *v = tt_var();
        for (int k = 0; k < 4; k++) {
            ops[k] = (struct vf_op){&s, k};
            td_op op = k == 0   ? tt_op("vf_write", vf_fn, &ops[k], NULL, 0, &v, 1)
                       : k == 2 ? tt_op("vf_update", vf_fn, &ops[k], &v, 1, &v, 1)
                                : tt_op("vf_read", vf_fn, &ops[k], &v, 1, NULL, 0);
            tt_push(&op);
        }
        td_var_free(v); /* while the slow write is most likely still pending */
        cr_assert_eq(td_wait_all(), TD_OK);
        cr_assert_eq(s.seen[1], 1, "%s engine: a read after the first write saw %d",
                     tt_engine_name(engine), s.seen[1]);
        cr_assert_eq(s.value, 12);
        cr_assert_eq(s.seen[3], 12);

        /* Many short-lived vars, each freed right after its ops are pushed. */
        static int64_t results[500];
        memset(results, 0, sizeof results);
        static struct vf_state tmp[500];
        static struct vf_op tops[500][2];
        for (int i = 0; i < 500; i++) {
            memset(&tmp[i], 0, sizeof tmp[i]);
            td_var *t = tt_var();
            tops[i][0] = (struct vf_op){&tmp[i], 2};
            tops[i][1] = (struct vf_op){&tmp[i], 3};
            td_op w = tt_op("tmp_update", vf_fn, &tops[i][0], &t, 1, &t, 1);
            td_op r = tt_op("tmp_read", vf_fn, &tops[i][1], &t, 1, NULL, 0);
            tt_push(&w);
            tt_push(&r);
            td_var_free(t);
        }
        cr_assert_eq(td_wait_all(), TD_OK);
        for (int i = 0; i < 500; i++)
            cr_assert_eq(tmp[i].seen[3], 2, "%s engine: temp var %d: read saw %d",
                         tt_engine_name(engine), i, tmp[i].seen[3]);
        td_var_free(NULL); /* nothing */
        tt_stop(TD_OK);
    }
}
