/* Threads: many threads pushing at once, the number of threads that actually
 * run ops (never more than cpu_workers), k workers really running k ops at
 * once, td_exec_worker in range, and shutdown joining the workers. */
#include <dirent.h>

#include "common.h"

/* ---- 8 threads pushing at once ---- */

enum { PT_THREADS = 8, PT_OPS = 400 };
struct pt_shared {
    uint64_t s_value;                     /* the shared var's data */
    uint64_t own[PT_THREADS];             /* each thread's var's data */
    uint64_t seen_s[PT_THREADS][PT_OPS];  /* what read-only ops saw of s */
    pthread_barrier_t start;
    td_var *s_var;
};
static struct pt_shared pt;

struct pt_op {
    int t, i;
};
static struct pt_op pt_ops[PT_THREADS][PT_OPS];

static td_status pt_init_s(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    tt_sleep_ms(5);
    pt.s_value = 12345;
    return TD_OK;
}

static td_status pt_update(void *arg, const td_exec *ex) {
    (void)ex;
    const struct pt_op *o = arg;
    pt.own[o->t] = tt_mix(pt.own[o->t] ^ pt.s_value ^ (uint64_t)o->i);
    return TD_OK;
}

static td_status pt_read_s(void *arg, const td_exec *ex) {
    (void)ex;
    const struct pt_op *o = arg;
    pt.seen_s[o->t][o->i] = pt.s_value;
    return TD_OK;
}

struct pt_thread_arg {
    int t;
    td_var *own;
    int failures;
};

static void *pt_pusher(void *p) {
    struct pt_thread_arg *a = p;
    pthread_barrier_wait(&pt.start);
    td_var *reads[2] = {pt.s_var, a->own};
    for (int i = 0; i < PT_OPS; i++) {
        pt_ops[a->t][i] = (struct pt_op){a->t, i};
        td_op op;
        if (i % 4 == 3)
            op = tt_op("read_shared", pt_read_s, &pt_ops[a->t][i], &pt.s_var, 1, NULL, 0);
        else
            op = tt_op("update_own", pt_update, &pt_ops[a->t][i], reads, 2, &a->own, 1);
        if (td_push(&op) != TD_OK) a->failures++;
    }
    return NULL;
}

Test(threads, eight_threads_pushing_at_once_give_correct_results, .timeout = 60) {
    uint64_t want[PT_THREADS];
    for (int t = 0; t < PT_THREADS; t++) {
        want[t] = (uint64_t)t;
        for (int i = 0; i < PT_OPS; i++)
            if (i % 4 != 3) want[t] = tt_mix(want[t] ^ 12345u ^ (uint64_t)i);
    }
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 4);
        memset(pt.seen_s, 0, sizeof pt.seen_s);
        for (int t = 0; t < PT_THREADS; t++) pt.own[t] = (uint64_t)t;
        pt.s_value = 0;
        pt.s_var = tt_var();
        td_op init = tt_op("init_shared", pt_init_s, NULL, NULL, 0, &pt.s_var, 1);
        tt_push(&init);
        pthread_barrier_init(&pt.start, NULL, PT_THREADS);
        pthread_t th[PT_THREADS];
        struct pt_thread_arg args[PT_THREADS];
        for (int t = 0; t < PT_THREADS; t++) {
            args[t] = (struct pt_thread_arg){t, tt_var(), 0};
            cr_assert_eq(pthread_create(&th[t], NULL, pt_pusher, &args[t]), 0);
        }
        for (int t = 0; t < PT_THREADS; t++) pthread_join(th[t], NULL);
        pthread_barrier_destroy(&pt.start);
        cr_assert_eq(td_wait_all(), TD_OK);
        for (int t = 0; t < PT_THREADS; t++) {
            cr_assert_eq(args[t].failures, 0);
            cr_assert_eq(pt.own[t], want[t], "%s engine: thread %d's chain gave %016llx, not %016llx",
                         tt_engine_name(engine), t, (unsigned long long)pt.own[t],
                         (unsigned long long)want[t]);
            for (int i = 3; i < PT_OPS; i += 4)
                cr_assert_eq(pt.seen_s[t][i], (uint64_t)12345,
                             "%s engine: thread %d op %d read the shared var as %llu",
                             tt_engine_name(engine), t, i, (unsigned long long)pt.seen_s[t][i]);
            td_var_free(args[t].own);
        }
        td_var_free(pt.s_var);
        tt_stop(TD_OK);
    }
}

/* ---- counting the threads that run ops ---- */

enum { TC_MAX_IDS = 64 };
struct tc_state {
    pthread_mutex_t mu;
    uintptr_t ids[TC_MAX_IDS];
    int n_ids;
    atomic_int active;     /* ops or chunks running right now */
    atomic_int max_active;
    atomic_int bad_worker; /* td_exec_worker out of range */
    atomic_int ran;
    int k;
};
static struct tc_state tc = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void tc_note_thread(void) {
    uintptr_t me = tt_thread_id();
    pthread_mutex_lock(&tc.mu);
    int found = 0;
    for (int i = 0; i < tc.n_ids; i++) found |= tc.ids[i] == me;
    if (!found && tc.n_ids < TC_MAX_IDS) tc.ids[tc.n_ids++] = me;
    pthread_mutex_unlock(&tc.mu);
}

static void tc_enter(void) {
    int now = atomic_fetch_add(&tc.active, 1) + 1;
    int m = atomic_load(&tc.max_active);
    while (now > m && !atomic_compare_exchange_weak(&tc.max_active, &m, now)) {
    }
}

static void tc_chunk(void *arg, int64_t begin, int64_t end) {
    (void)arg;
    (void)begin;
    (void)end;
    tc_note_thread();
    tc_enter();
    tt_spin_us(30);
    atomic_fetch_sub(&tc.active, 1);
}

static td_status tc_op(void *arg, const td_exec *ex) {
    int with_loop = (int)(intptr_t)arg;
    int w = td_exec_worker(ex);
    if (w < 0 || w >= tc.k) atomic_fetch_add(&tc.bad_worker, 1);
    tc_note_thread();
    tc_enter();
    tt_spin_us(150);
    atomic_fetch_sub(&tc.active, 1);
    /* The op's own count is released while its loop runs: the caller runs
     * chunks too, and each chunk counts itself. */
    if (with_loop && td_parallel_for(ex, 64, 1, tc_chunk, NULL) != TD_OK)
        atomic_fetch_add(&tc.bad_worker, 1000);
    atomic_fetch_add(&tc.ran, 1);
    return TD_OK;
}

Test(threads, never_more_threads_than_cpu_workers_run_ops, .timeout = 60) {
    for (int k = 1; k <= 3; k++) {
        tt_start(TD_ENGINE_THREADED, k);
        cr_assert_eq(td_device_workers(td_cpu(0)), k);
        tc.k = k;
        tc.n_ids = 0;
        atomic_store(&tc.active, 0);
        atomic_store(&tc.max_active, 0);
        atomic_store(&tc.bad_worker, 0);
        atomic_store(&tc.ran, 0);
        td_var *vars[8];
        for (int i = 0; i < 8; i++) vars[i] = tt_var();
        for (int i = 0; i < 240; i++) {
            td_op op = tt_op("count_threads", tc_op, (void *)(intptr_t)(i % 5 == 0), NULL, 0,
                             &vars[i % 8], 1);
            tt_push(&op);
        }
        cr_assert_eq(td_wait_all(), TD_OK);
        cr_assert_eq(atomic_load(&tc.ran), 240);
        cr_assert_eq(atomic_load(&tc.bad_worker), 0,
                     "%d workers: td_exec_worker out of [0, %d) or td_parallel_for failed", k, k);
        cr_assert_leq(tc.n_ids, k, "%d workers: %d distinct threads ran ops or chunks", k,
                      tc.n_ids);
        cr_assert_leq(atomic_load(&tc.max_active), k, "%d workers: %d ops or chunks ran at once",
                      k, atomic_load(&tc.max_active));
        uintptr_t me = tt_thread_id();
        for (int i = 0; i < tc.n_ids; i++)
            cr_assert_neq(tc.ids[i], me, "the pushing thread ran an op on the threaded engine");
        cr_log_info("%d workers: %d threads ran ops, at most %d at once", k, tc.n_ids,
                    atomic_load(&tc.max_active));
        for (int i = 0; i < 8; i++) td_var_free(vars[i]);
        tt_stop(TD_OK);
    }
}

/* ---- k workers run k ops at once ---- */

struct rv_state {
    atomic_int arrived;
    int k;
    int ok[8];
    int worker[8];
};
struct rv_op {
    struct rv_state *s;
    int idx;
};

static td_status rv_fn(void *arg, const td_exec *ex) {
    struct rv_op *o = arg;
    o->s->worker[o->idx] = td_exec_worker(ex);
    atomic_fetch_add(&o->s->arrived, 1);
    o->s->ok[o->idx] = tt_wait_at_least(&o->s->arrived, o->s->k, 10.0);
    return TD_OK;
}

static int count_tasks(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static void *nothing(void *arg) { return arg; }

Test(threads, k_workers_run_k_waiting_ops_at_once_and_shutdown_joins_them, .timeout = 90) {
    /* A first thread made and joined, so helper threads that a sanitizer
     * runtime starts with the first pthread_create are counted in base. */
    pthread_t warm;
    cr_assert_eq(pthread_create(&warm, NULL, nothing, NULL), 0);
    pthread_join(warm, NULL);
    int base = count_tasks();
    cr_assert_gt(base, 0, "cannot read /proc/self/task");
    for (int k = 1; k <= 3; k++) {
        tt_start(TD_ENGINE_THREADED, k);
        static struct rv_state s;
        static struct rv_op ops[8];
        memset(&s, 0, sizeof s);
        s.k = k;
        td_var *vars[8];
        for (int i = 0; i < k; i++) {
            vars[i] = tt_var();
            ops[i] = (struct rv_op){&s, i};
            td_op op = tt_op("rendezvous", rv_fn, &ops[i], NULL, 0, &vars[i], 1);
            tt_push(&op);
        }
        cr_assert_eq(td_wait_all(), TD_OK);
        int during = count_tasks();
        for (int i = 0; i < k; i++) {
            cr_assert(s.ok[i], "%d workers: op %d waited 10 s and only %d of %d ops were running",
                      k, i, atomic_load(&s.arrived), k);
            cr_assert(s.worker[i] >= 0 && s.worker[i] < k, "%d workers: td_exec_worker gave %d",
                      k, s.worker[i]);
            for (int j = 0; j < i; j++)
                cr_assert_neq(s.worker[i], s.worker[j],
                              "%d workers: two ops running at once report worker %d", k,
                              s.worker[i]);
            td_var_free(vars[i]);
        }
        cr_assert_geq(during, base + k, "%d workers: only %d threads besides the %d before", k,
                      during - base, base);
        tt_stop(TD_OK);
        int after = count_tasks();
        double end = tt_now() + 5.0;
        while (after > base && tt_now() < end) {
            tt_sleep_ms(10);
            after = count_tasks();
        }
        cr_assert_eq(after, base, "%d workers: %d threads left after td_shutdown (%d before)", k,
                     after, base);
    }
}

/* ---- td_wait_all while another thread keeps pushing ----
 * td_wait_all waits for the ops pushed before it, not for the runtime to be
 * idle: with another thread keeping ops pending all the time, it must still
 * return soon. */

struct kp_state {
    atomic_int stop;
    atomic_int pushed;
    atomic_int done;
    atomic_int marker_ran;
    int failures;
};
static struct kp_state kp;

static td_status kp_work(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    tt_spin_us(1000);
    atomic_fetch_add(&kp.done, 1);
    return TD_OK;
}

static td_status kp_marker(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    tt_sleep_ms(20);
    atomic_store(&kp.marker_ran, 1);
    return TD_OK;
}

static void *kp_pusher(void *arg) {
    td_var *v = arg;
    double end = tt_now() + 20.0; /* bounded, in case td_wait_all never returns */
    while (!atomic_load(&kp.stop) && tt_now() < end) {
        /* Keep about 8 ops pending: never idle, never a growing backlog. */
        if (atomic_load(&kp.pushed) - atomic_load(&kp.done) >= 8) {
            sched_yield();
            continue;
        }
        td_op op = tt_op("endless", kp_work, NULL, &v, 1, &v, 1);
        if (td_push(&op) != TD_OK) kp.failures++;
        atomic_fetch_add(&kp.pushed, 1);
    }
    return NULL;
}

Test(threads, wait_all_returns_while_another_thread_keeps_pushing, .timeout = 60) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        memset(&kp, 0, sizeof kp);
        td_var *v = tt_var(), *m = tt_var();
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, kp_pusher, v), 0);
        cr_assert(tt_wait_at_least(&kp.pushed, 20, 10.0), "the pushing thread did not start");
        td_op marker = tt_op("marker", kp_marker, NULL, NULL, 0, &m, 1);
        tt_push(&marker);
        double t0 = tt_now();
        td_status st = td_wait_all();
        double waited = tt_now() - t0;
        int pushed_during = atomic_load(&kp.pushed);
        atomic_store(&kp.stop, 1);
        pthread_join(th, NULL);
        cr_assert_eq(st, TD_OK);
        cr_assert(atomic_load(&kp.marker_ran), "%s engine: td_wait_all returned before an op "
                  "pushed before it ran", tt_engine_name(engine));
        cr_assert_lt(waited, 5.0, "%s engine: td_wait_all took %.2f s while another thread "
                     "kept pushing", tt_engine_name(engine), waited);
        cr_assert_eq(kp.failures, 0);
        cr_log_info("%s engine: td_wait_all took %.3f s; %d ops pushed meanwhile",
                    tt_engine_name(engine), waited, pushed_during);
        cr_assert_eq(td_wait_all(), TD_OK);
        td_var_free(v);
        td_var_free(m);
        tt_stop(TD_OK);
    }
}

/* A queued op gets a sleeping worker even when the thread that pushed it
 * never calls tide again: the pusher may not rely on a later wait to wake
 * one.  The workers are left to fall asleep first; then a long op takes one
 * worker, and the second op must start while the first still runs. */
static atomic_int second_ran;
static td_status long_until_second(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    tt_wait_at_least(&second_ran, 1, 5.0);
    return TD_OK;
}
static td_status mark_second(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    atomic_store(&second_ran, 1);
    return TD_OK;
}

Test(threads, an_op_queued_behind_a_long_op_wakes_a_sleeping_worker_without_a_wait, .timeout = 60) {
    for (int round = 0; round < 5; round++) {
        tt_start(TD_ENGINE_THREADED, 2);
        td_var *a = tt_var(), *b = tt_var();
        tt_sleep_ms(30); /* both workers go to sleep */
        atomic_store(&second_ran, 0);
        td_op la = tt_op("long", long_until_second, NULL, NULL, 0, &a, 1);
        td_op mb = tt_op("second", mark_second, NULL, NULL, 0, &b, 1);
        tt_push(&la);
        tt_sleep_ms(5); /* the long op is running */
        tt_push(&mb);
        /* No tide call from here until the second op has run. */
        double t0 = tt_now();
        int ok = tt_wait_at_least(&second_ran, 1, 3.0);
        cr_assert(ok, "round %d: the second op did not start within 3 s while a worker slept", round);
        cr_log_info("round %d: second op ran %.1f us after its push", round, (tt_now() - t0) * 1e6);
        cr_assert_eq(td_wait_all(), TD_OK);
        td_var_free(a);
        td_var_free(b);
        tt_stop(TD_OK);
    }
}

/* Batches (cpu_exec.c): while ops are short, a worker takes the whole ready
 * queue at once.  Ops that arrive in one batch must still run on different
 * workers when one of them turns out long: two ops that each wait for the
 * other to start (a rendezvous, 5 s at most) are pushed right behind a
 * stream of short ops, so they land in one worker's batch.  The other
 * worker must take the second while the first waits. */
static atomic_int met[2];
/* Op (int)arg of a pair: marks itself started, then waits (5 s at most) for
 * the other to start. */
static td_status meet(void *arg, const td_exec *ex) {
    (void)ex;
    int me = (int)(intptr_t)arg;
    atomic_store(&met[me], 1);
    tt_wait_at_least(&met[1 - me], 1, 5.0);
    return TD_OK;
}
Test(threads, two_waiting_ops_in_one_batch_run_on_two_workers, .timeout = 120) {
    tt_start(TD_ENGINE_THREADED, 2);
    enum { NV = 1024, NSHORT = 20000, AROUND = 256 };
    td_var **v = malloc(NV * sizeof *v);
    cr_assert(v);
    for (int i = 0; i < NV; i++) v[i] = tt_var();
    td_var *r[2] = {tt_var(), tt_var()};
    for (int round = 0; round < 6; round++) {
        atomic_store(&met[0], 0);
        atomic_store(&met[1], 0);
        /* A stream of short ops (so the workers take whole batches), then
         * the pair between two bursts of ops on distinct vars, all ready at
         * once: the pair is taken with them, in one batch. */
        for (int i = 0; i < NSHORT; i++) {
            td_op op = tt_op("short", tt_noop, NULL, NULL, 0, &v[i % 64], 1);
            tt_push(&op);
        }
        cr_assert_eq(td_wait_all(), TD_OK);
        double t0 = tt_now();
        for (int i = 0; i < 2 * AROUND + 2; i++) {
            td_op op = i == AROUND || i == AROUND + 1
                           ? tt_op("rendezvous", meet, (void *)(intptr_t)(i - AROUND), NULL, 0,
                                   &r[i - AROUND], 1)
                           : tt_op("short", tt_noop, NULL, NULL, 0, &v[64 + i], 1);
            tt_push(&op);
        }
        cr_assert_eq(td_wait_all(), TD_OK);
        double t = tt_now() - t0;
        cr_log_info("round %d: the pair met after %.2f ms", round, t * 1e3);
        cr_assert_lt(t, 4.0, "round %d: the two ops did not run at once (%.2f s): one waited behind the "
                     "other in a batch while a worker was free", round, t);
    }
    for (int i = 0; i < NV; i++) td_var_free(v[i]);
    free(v);
    td_var_free(r[0]);
    td_var_free(r[1]);
    tt_stop(TD_OK);
}

/* Two chains pushed alternately right after a stream of short ops (the
 * two-chains benchmark), each starting with an op that waits for the other
 * chain's first op to start (5 s at most): the chains' heads must run at
 * once on the two workers, whether the queue hands them out one by one or
 * in one batch, and the rest of each chain follows on its worker. */
static atomic_int ch_done;
static td_status chain_op(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    tt_spin_us(500);
    atomic_fetch_add(&ch_done, 1);
    return TD_OK;
}

Test(threads, two_chains_after_short_ops_start_together, .timeout = 120) {
    tt_start(TD_ENGINE_THREADED, 2);
    enum { NV = 64, NSHORT = 20000, LEN = 5 };
    td_var *v[NV];
    for (int i = 0; i < NV; i++) v[i] = tt_var();
    td_var *c[2] = {tt_var(), tt_var()};
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < NSHORT; i++) {
            td_op op = tt_op("short", tt_noop, NULL, NULL, 0, &v[i % NV], 1);
            tt_push(&op);
        }
        if (round % 2 == 0) cr_assert_eq(td_wait_all(), TD_OK);
        atomic_store(&met[0], 0);
        atomic_store(&met[1], 0);
        atomic_store(&ch_done, 0);
        double t0 = tt_now();
        for (int i = 0; i < 2 * LEN; i++) {
            int k = i & 1;
            td_op op = i < 2 ? tt_op("head", meet, (void *)(intptr_t)k, NULL, 0, &c[k], 1)
                             : tt_op("chain", chain_op, NULL, NULL, 0, &c[k], 1);
            tt_push(&op);
        }
        cr_assert_eq(td_wait_all(), TD_OK);
        double t = tt_now() - t0;
        cr_log_info("round %d: the two chains took %.2f ms", round, t * 1e3);
        cr_assert_eq(atomic_load(&ch_done), 2 * (LEN - 1));
        cr_assert_lt(t, 4.0, "round %d: the chains' heads did not run at once (%.2f s)", round, t);
    }
    for (int i = 0; i < NV; i++) td_var_free(v[i]);
    td_var_free(c[0]);
    td_var_free(c[1]);
    tt_stop(TD_OK);
}

/* Streams of short ops in the engine benchmark's shapes (200k ops over
 * 1000 vars, each alone or also reading one shared var), with a few longer
 * ops and pauses among them, round after round: batches are taken, given
 * back and taken over (steal) all the time, and workers run chains of ops
 * released by their batches.  Every op runs exactly once and every round's
 * td_wait_all returns.  (A batch taken over while its new owner waited for
 * a batch of its own was once overwritten by that batch: the ops in it
 * never ran and td_wait_all waited for ever.) */
static atomic_long mix_ran;
static td_status mix_op(void *arg, const td_exec *ex) {
    (void)ex;
    if (arg) tt_spin_us(30);
    atomic_fetch_add(&mix_ran, 1);
    return TD_OK;
}

Test(threads, streams_of_short_ops_with_a_few_long_ones_all_run_exactly_once, .timeout = 240) {
    tt_start(TD_ENGINE_THREADED, 2);
    enum { NV = 1000, ROUNDS = 40 };
    long ops = tt_quick() ? 50000 : 200000;
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
    ops /= 10; /* sanitizers look for races and bad accesses, not for the rare loss */
#endif
    static td_var *v[NV + 1];
    for (int i = 0; i <= NV; i++) v[i] = tt_var();
    uint64_t seed = (uint64_t)time(NULL);
    cr_log_info("seed %llu", (unsigned long long)seed);
    tt_rng rng = {seed | 1};
    long pushed = 0;
    atomic_store(&mix_ran, 0);
    for (int round = 0; round < ROUNDS; round++) {
        int fanout = round & 1;
        for (long i = 0; i < ops; i++) {
            int slow = tt_rng_below(&rng, 20000) == 0;
            td_op op = tt_op(slow ? "slow" : "short", mix_op, slow ? (void *)1 : NULL, fanout ? &v[NV] : NULL,
                             fanout ? 1 : 0, &v[i % NV], 1);
            tt_push(&op);
            pushed++;
            if (tt_rng_below(&rng, 50000) == 0) tt_spin_us(50); /* a pause in the stream */
        }
        cr_assert_eq(td_wait_all(), TD_OK);
        cr_assert_eq(atomic_load(&mix_ran), pushed, "round %d: %ld ops ran, %ld pushed (seed %llu)", round,
                     atomic_load(&mix_ran), pushed, (unsigned long long)seed);
    }
    for (int i = 0; i <= NV; i++) td_var_free(v[i]);
    tt_stop(TD_OK);
}
