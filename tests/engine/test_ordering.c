/* Orderings: reads of one version overlap, writes are exclusive, per-var
 * program order holds, and priorities order ready ops. */
#include "common.h"

/* ---- reads of one version overlap in time ---- */

struct overlap_state {
    int value;            /* written by the writer, read by both readers */
    double writer_end;
    atomic_int started;   /* readers that have started */
    double start[2], end[2];
    int seen[2];
    int saw_partner[2];
};
struct overlap_reader {
    struct overlap_state *s;
    int idx;
};

static td_status overlap_write(void *arg, const td_exec *ex) {
    (void)ex;
    struct overlap_state *s = arg;
    tt_sleep_ms(10);
    s->value = 7;
    s->writer_end = tt_now();
    return TD_OK;
}

static td_status overlap_read(void *arg, const td_exec *ex) {
    (void)ex;
    struct overlap_reader *r = arg;
    struct overlap_state *s = r->s;
    r->s->start[r->idx] = tt_now();
    atomic_fetch_add(&s->started, 1);
    /* Wait (bounded) for the other reader, then hold the read a while: if
     * the engine ran the two reads one after the other, the first one times
     * out here and their intervals do not overlap. */
    s->saw_partner[r->idx] = tt_wait_at_least(&s->started, 2, 3.0);
    tt_sleep_ms(40);
    s->seen[r->idx] = s->value;
    s->end[r->idx] = tt_now();
    return TD_OK;
}

Test(ordering, reads_of_one_version_overlap_in_time, .timeout = 30) {
    tt_start(TD_ENGINE_THREADED, 2);
    static struct overlap_state s;
    struct overlap_reader r[2] = {{&s, 0}, {&s, 1}};
    td_var *v = tt_var();
    td_op w = tt_op("writer", overlap_write, &s, NULL, 0, &v, 1);
    tt_push(&w);
    for (int i = 0; i < 2; i++) {
        td_op op = tt_op(i ? "reader1" : "reader0", overlap_read, &r[i], &v, 1, NULL, 0);
        tt_push(&op);
    }
    cr_assert_eq(td_wait_all(), TD_OK);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(s.seen[i], 7, "reader %d ran before the write it depends on", i);
        cr_assert_geq(s.start[i], s.writer_end, "reader %d started before the writer ended", i);
    }
    cr_assert(s.saw_partner[0] && s.saw_partner[1],
              "the two readers of one version never ran at the same time");
    cr_assert(s.start[0] < s.end[1] && s.start[1] < s.end[0],
              "read intervals do not overlap: [%.4f, %.4f] and [%.4f, %.4f]", s.start[0],
              s.end[0], s.start[1], s.end[1]);
    td_var_free(v);
    tt_stop(TD_OK);
}

/* ---- writes are exclusive ---- */

enum { EX_VARS = 4, EX_OPS = 3000 };
struct excl_state {
    atomic_int writers[EX_VARS];
    atomic_int readers[EX_VARS];
    atomic_int violations;
    atomic_int max_readers;
    atomic_int ran;
};
struct excl_op {
    struct excl_state *s;
    int reads[2], n_reads;
    int writes[2], n_writes;
};

static void excl_check(struct excl_state *s, const struct excl_op *o) {
    for (int i = 0; i < o->n_writes; i++) {
        int w = o->writes[i];
        if (atomic_load(&s->writers[w]) != 1 || atomic_load(&s->readers[w]) != 0)
            atomic_fetch_add(&s->violations, 1);
    }
    for (int i = 0; i < o->n_reads; i++)
        if (atomic_load(&s->writers[o->reads[i]]) != 0) atomic_fetch_add(&s->violations, 1);
}

static td_status excl_fn(void *arg, const td_exec *ex) {
    (void)ex;
    struct excl_op *o = arg;
    struct excl_state *s = o->s;
    for (int i = 0; i < o->n_writes; i++) atomic_fetch_add(&s->writers[o->writes[i]], 1);
    for (int i = 0; i < o->n_reads; i++) {
        int now = atomic_fetch_add(&s->readers[o->reads[i]], 1) + 1;
        int m = atomic_load(&s->max_readers);
        while (now > m && !atomic_compare_exchange_weak(&s->max_readers, &m, now)) {
        }
    }
    excl_check(s, o);
    tt_spin_us(20);
    excl_check(s, o);
    for (int i = 0; i < o->n_reads; i++) atomic_fetch_sub(&s->readers[o->reads[i]], 1);
    for (int i = 0; i < o->n_writes; i++) atomic_fetch_sub(&s->writers[o->writes[i]], 1);
    atomic_fetch_add(&s->ran, 1);
    return TD_OK;
}

Test(ordering, writes_are_exclusive, .timeout = 60) {
    tt_start(TD_ENGINE_THREADED, 4);
    static struct excl_state s;
    static struct excl_op ops[EX_OPS];
    td_var *vars[EX_VARS];
    for (int i = 0; i < EX_VARS; i++) vars[i] = tt_var();
    uint64_t seed = 0x5eed0001;
    tt_rng rng = {seed};
    for (int k = 0; k < EX_OPS; k++) {
        struct excl_op *o = &ops[k];
        o->s = &s;
        /* Mostly reads, so readers pile up and a writer has to wait for them. */
        int a = (int)tt_rng_below(&rng, EX_VARS), b = (int)tt_rng_below(&rng, EX_VARS);
        unsigned kind = tt_rng_below(&rng, 8);
        o->n_reads = o->n_writes = 0;
        if (kind < 5) {
            o->reads[o->n_reads++] = a;
        } else if (kind < 7) {
            o->writes[o->n_writes++] = a;
        } else if (a != b) {
            o->reads[o->n_reads++] = a;
            o->writes[o->n_writes++] = b;
        } else {
            o->writes[o->n_writes++] = a;
        }
        td_var *r[2], *w[2];
        for (int i = 0; i < o->n_reads; i++) r[i] = vars[o->reads[i]];
        for (int i = 0; i < o->n_writes; i++) w[i] = vars[o->writes[i]];
        td_op op = tt_op(o->n_writes ? "excl_write" : "excl_read", excl_fn, o, r,
                         (size_t)o->n_reads, w, (size_t)o->n_writes);
        tt_push(&op);
        /* Pauses now and then let queues drain, so later pushes find vars in
         * every state: idle, held by readers with nothing queued, queued. */
        if (tt_rng_below(&rng, 4) == 0) tt_spin_us((double)tt_rng_below(&rng, 60));
    }
    cr_assert_eq(td_wait_all(), TD_OK);
    cr_assert_eq(atomic_load(&s.ran), EX_OPS);
    cr_assert_eq(atomic_load(&s.violations), 0,
                 "%d times a writer ran beside another access of its var (seed %llx)",
                 atomic_load(&s.violations), (unsigned long long)seed);
    cr_log_info("most readers of one var at once: %d", atomic_load(&s.max_readers));
    for (int i = 0; i < EX_VARS; i++) td_var_free(vars[i]);
    tt_stop(TD_OK);
}

/* ---- per-var program order ---- */

enum { PO_VARS = 16, PO_OPS = 4000 };
struct po_state {
    int64_t value[PO_VARS];       /* id of the last op that wrote the var; 0 initially */
    int64_t log[PO_VARS][PO_OPS]; /* ids of the writers, in the order they ran */
    int log_len[PO_VARS];
    int64_t seen[PO_OPS][2];      /* what each op read */
};
struct po_op {
    struct po_state *s;
    int64_t id;
    int reads[2], n_reads;
    int writes[2], n_writes;
};

static td_status po_fn(void *arg, const td_exec *ex) {
    (void)ex;
    struct po_op *o = arg;
    struct po_state *s = o->s;
    for (int i = 0; i < o->n_reads; i++) s->seen[o->id][i] = s->value[o->reads[i]];
    for (int i = 0; i < o->n_writes; i++) {
        int w = o->writes[i];
        s->log[w][s->log_len[w]++] = o->id;
        s->value[w] = o->id;
    }
    return TD_OK;
}

Test(ordering, per_var_program_order_holds, .timeout = 60) {
    tt_start(TD_ENGINE_THREADED, 4);
    static struct po_state s;
    static struct po_op ops[PO_OPS];
    static int64_t want_log[PO_VARS][PO_OPS];
    static int want_len[PO_VARS];
    static int64_t want_seen[PO_OPS][2];
    int64_t last_write[PO_VARS] = {0};
    td_var *vars[PO_VARS];
    for (int i = 0; i < PO_VARS; i++) vars[i] = tt_var();
    uint64_t seed = 0x5eed0002;
    tt_rng rng = {seed};
    for (int k = 1; k < PO_OPS; k++) {
        struct po_op *o = &ops[k];
        o->s = &s;
        o->id = k;
        o->n_reads = (int)tt_rng_below(&rng, 3);
        o->n_writes = (int)tt_rng_below(&rng, 3);
        if (o->n_reads + o->n_writes == 0) o->n_writes = 1;
        /* Distinct vars within an op, so the log of a var has each writer once. */
        int used[PO_VARS] = {0};
        td_var *r[2], *w[2];
        for (int i = 0; i < o->n_reads + o->n_writes; i++) {
            int v;
            do v = (int)tt_rng_below(&rng, PO_VARS);
            while (used[v]);
            used[v] = 1;
            if (i < o->n_reads) {
                o->reads[i] = v;
                r[i] = vars[v];
                want_seen[k][i] = last_write[v];
            } else {
                o->writes[i - o->n_reads] = v;
                w[i - o->n_reads] = vars[v];
            }
        }
        for (int i = 0; i < o->n_writes; i++) {
            int v = o->writes[i];
            want_log[v][want_len[v]++] = k;
            last_write[v] = k;
        }
        td_op op = tt_op("program_order", po_fn, o, r, (size_t)o->n_reads, w,
                         (size_t)o->n_writes);
        tt_push(&op);
    }
    cr_assert_eq(td_wait_all(), TD_OK);
    for (int v = 0; v < PO_VARS; v++) {
        cr_assert_eq(s.log_len[v], want_len[v], "var %d: %d writes ran, %d pushed (seed %llx)",
                     v, s.log_len[v], want_len[v], (unsigned long long)seed);
        for (int i = 0; i < want_len[v]; i++)
            cr_assert_eq(s.log[v][i], want_log[v][i],
                         "var %d: write #%d was op %lld, expected op %lld (seed %llx)", v, i,
                         (long long)s.log[v][i], (long long)want_log[v][i],
                         (unsigned long long)seed);
    }
    for (int k = 1; k < PO_OPS; k++)
        for (int i = 0; i < ops[k].n_reads; i++)
            cr_assert_eq(s.seen[k][i], want_seen[k][i],
                         "op %d read var %d written by op %lld, expected op %lld (seed %llx)", k,
                         ops[k].reads[i], (long long)s.seen[k][i], (long long)want_seen[k][i],
                         (unsigned long long)seed);
    for (int i = 0; i < PO_VARS; i++) td_var_free(vars[i]);
    tt_stop(TD_OK);
}

/* ---- priorities order ready ops ---- */

struct prio_state {
    atomic_int blocker_started;
    atomic_int release;
    atomic_int n_run;
    int order[32];
    int blocker_timed_out;
};
struct prio_op {
    struct prio_state *s;
    int id;
};

static td_status prio_blocker(void *arg, const td_exec *ex) {
    (void)ex;
    struct prio_state *s = arg;
    atomic_store(&s->blocker_started, 1);
    s->blocker_timed_out = !tt_wait_at_least(&s->release, 1, 10.0);
    return TD_OK;
}

static td_status prio_fn(void *arg, const td_exec *ex) {
    (void)ex;
    struct prio_op *o = arg;
    int slot = atomic_fetch_add(&o->s->n_run, 1);
    if (slot < 32) o->s->order[slot] = o->id;
    return TD_OK;
}

Test(ordering, priorities_order_ready_ops, .timeout = 30) {
    tt_start(TD_ENGINE_THREADED, 1);
    static struct prio_state s;
    static const struct {
        int priority, flags;
    } spec[] = {
        {0, 0},  {5, 0},  {0, TD_OP_PRIORITIZED},  {-3, 0}, {5, 0},
        {2, TD_OP_PRIORITIZED}, {5, TD_OP_PRIORITIZED}, {0, 0}, {10, 0}, {-1, TD_OP_PRIORITIZED},
        {5, TD_OP_PRIORITIZED},
    };
    enum { N = sizeof spec / sizeof spec[0] };
    /* All TD_OP_PRIORITIZED ops first, then the rest; within each group higher
     * priority first, ties in push order. */
    static const int expected[N] = {6, 10, 5, 2, 9, 8, 1, 4, 0, 7, 3};
    static struct prio_op ops[N];
    td_var *block_var = tt_var();
    td_var *vars[N];
    td_op b = tt_op("blocker", prio_blocker, &s, NULL, 0, &block_var, 1);
    tt_push(&b);
    cr_assert(tt_wait_at_least(&s.blocker_started, 1, 10.0), "the blocker op never started");
    for (int i = 0; i < N; i++) {
        vars[i] = tt_var();
        ops[i] = (struct prio_op){&s, i};
        td_op op = tt_op("prio", prio_fn, &ops[i], NULL, 0, &vars[i], 1);
        op.priority = spec[i].priority;
        op.flags = spec[i].flags;
        tt_push(&op);
    }
    atomic_store(&s.release, 1);
    cr_assert_eq(td_wait_all(), TD_OK);
    cr_assert_not(s.blocker_timed_out, "the blocker was never released");
    cr_assert_eq(atomic_load(&s.n_run), N);
    char got[128] = "", want[128] = "";
    for (int i = 0; i < N; i++) {
        snprintf(got + strlen(got), sizeof got - strlen(got), " %d", s.order[i]);
        snprintf(want + strlen(want), sizeof want - strlen(want), " %d", expected[i]);
    }
    cr_assert_str_eq(got, want, "ready ops ran in the order%s, expected%s", got, want);
    td_var_free(block_var);
    for (int i = 0; i < N; i++) td_var_free(vars[i]);
    tt_stop(TD_OK);
}

Test(ordering, ops_made_ready_by_a_release_still_go_by_priority, .timeout = 30) {
    tt_start(TD_ENGINE_THREADED, 1);
    static struct prio_state s;
    enum { N = 6 };
    static struct prio_op ops[N];
    td_var *gate = tt_var();
    td_var *vars[N];
    td_op b = tt_op("blocker", prio_blocker, &s, NULL, 0, &gate, 1);
    tt_push(&b);
    cr_assert(tt_wait_at_least(&s.blocker_started, 1, 10.0), "the blocker op never started");
    /* 0..3: normal ops, ready at once and queued behind the blocker;
     * 4: TD_OP_PRIORITIZED and 5: priority 3, both waiting for the blocker's
     * var, so they become ready only when the blocker ends. */
    for (int i = 0; i < N; i++) {
        vars[i] = tt_var();
        ops[i] = (struct prio_op){&s, i};
        td_op op = i < 4 ? tt_op("queued", prio_fn, &ops[i], NULL, 0, &vars[i], 1)
                         : tt_op("released", prio_fn, &ops[i], &gate, 1, &vars[i], 1);
        if (i == 4) op.flags = TD_OP_PRIORITIZED;
        if (i == 5) op.priority = 3;
        tt_push(&op);
    }
    atomic_store(&s.release, 1);
    cr_assert_eq(td_wait_all(), TD_OK);
    cr_assert_not(s.blocker_timed_out);
    cr_assert_eq(atomic_load(&s.n_run), N);
    static const int expected[N] = {4, 5, 0, 1, 2, 3};
    char got[64] = "", want[64] = "";
    for (int i = 0; i < N; i++) {
        snprintf(got + strlen(got), sizeof got - strlen(got), " %d", s.order[i]);
        snprintf(want + strlen(want), sizeof want - strlen(want), " %d", expected[i]);
    }
    cr_assert_str_eq(got, want, "ops ran in the order%s, expected%s", got, want);
    td_var_free(gate);
    for (int i = 0; i < N; i++) td_var_free(vars[i]);
    tt_stop(TD_OK);
}
