/* The threaded CPU executor: a pool of workers over one ready queue, and
 * td_parallel_for on the same workers.
 *
 * Ready queue: ops of normal priority (0, not TD_OP_PRIORITIZED) go to a
 * FIFO under the spin lock `clock`, whose lock word, count and sleep-protocol
 * fields share one cache line, so handing an op to a worker moves one line
 * between cores.  (A lock-free multi-producer queue was tried and measured
 * slower here: when the queue is mostly empty, its consumer re-links a
 * placeholder node on every pop and the tail line moves twice per op.)
 * Other ops go to a pairing heap ordered by (prioritized, priority, order of
 * becoming ready) under `qlock`; a worker takes the heap's top first when it
 * outranks normal ops.  Both structures are intrusive (links live in the
 * op), so queueing never allocates.
 *
 * A worker that ends an op and thereby makes a normal op ready keeps it in
 * its `next` slot and runs it straight after, without the queue: a chain of
 * dependent ops stays on one core.
 *
 * Batches: while ops are short, a worker lets a few dozen queue up and takes
 * the whole FIFO at once (see batch_delay and take_fifo), so that a program
 * pushing a stream of small ops and the worker running them do not pass
 * every shared cache line back and forth once per op.  A worker's batch
 * lives in its `worker` record under its own lock, so that an idle worker
 * can take it over when its owner is held by a long op (steal).  Idle
 * workers poll a separate "bell" line that pushes ring only when the queue
 * stops being empty or reaches BATCH_MIN.
 *
 * Sleeping: a worker with nothing to do spins, then yields, for a short
 * while (waking a sleeping thread costs 10-25 us on the machines we
 * measure), then sleeps on a condition variable.  A worker about to sleep
 * counts itself in `sleepers`, then looks at the FIFO under its lock; a
 * submitter reads `sleepers` under the same lock after queueing, so either
 * the sleeper sees the op or the submitter sees the sleeper (and signals):
 * no wake-up is lost, and a push needs no fence of its own.  `nheap` and
 * `sleepers` are accessed with sequentially consistent operations for the
 * heap's ops.
 *
 * Locking: clock guards the FIFO; qlock guards the heap, qseq and the job
 * list.  Neither is held while taking the other.  A worker going to sleep
 * takes clock while it holds sleep_mu; nothing takes sleep_mu under clock.
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

_Thread_local int td__tls_worker; /* declared in internal.h */

typedef struct pjob {
    td_range_fn fn;
    void *arg;
    int64_t n, chunk, nchunks;
    atomic_llong next;     /* next chunk to claim */
    atomic_int helpers;    /* workers inside run_chunks for this job */
    td__opr *op;           /* the op that called td_parallel_for */
    struct pjob *next_job; /* in the executor's job list */
} pjob;

typedef struct {
    td__executor *ex;
    int index;
    uv_thread_t thread;
    _Atomic(td__opr *) running;
    /* The ops this worker took from the queue together and has not run
     * yet (see take_fifo): its own line, locked by the worker for each op
     * it takes (uncontended) and by an idle worker stealing them (steal). */
    _Alignas(TD__CACHELINE) td__spin blk;
    td__opr *bhead, *btail;
    atomic_int bleft;  /* ops in the batch */
    atomic_uint bprog; /* ops taken from it so far: a thief sees whether the owner moves */
    /* What this worker, idle, last saw of each other worker's batch. */
    unsigned *seen_prog;
    uint64_t *seen_t;
} worker;

struct td__executor {
    td__device *dev;
    int n;
    int n_alloc; /* workers allocated (n of them started) */
    worker *workers;
    /* The queue line: what a submitter touches on every push. */
    _Alignas(TD__CACHELINE) td__spin clock; /* the FIFO of normal ops */
    atomic_int nfifo;                       /* ops in it (changed under clock) */
    atomic_int sleepers;
    td__opr *q_head, *q_last;
    /* The bell line: what an idle worker polls.  A submitter rings the bell
     * when the FIFO stops being empty and when it reaches BATCH_MIN ops, so
     * a polling worker does not pull the queue line away from the pushing
     * core on every look (each look cost the next push a cache miss). */
    _Alignas(TD__CACHELINE) atomic_uint bell;
    atomic_int nheap;
    atomic_int njobs;
    atomic_int spinning; /* the spinning worker's index + 1; 0: none */
    atomic_int nshort;   /* workers taking whole batches of short ops (see take_fifo) */
    atomic_int stop;
    _Alignas(TD__CACHELINE) td__spin qlock; /* the heap and the job list */
    td__opr *heap;
    uint64_t qseq;
    pjob *jobs;
    uv_mutex_t sleep_mu;
    uv_cond_t sleep_cv;
    uint64_t spin_ns, yield_ns; /* an idle worker spins, then yields, then sleeps */
    int spin_beside;            /* see idle_wait */
    int widen;                  /* queued ops that make a busy worker wake another */
    uint64_t batch_ns;          /* see batch_delay */
    uint64_t short_ticks;       /* SHORT_NS in ticks() */
};

static _Thread_local td__executor *tls_exec; /* the executor this worker serves */
static _Thread_local td__opr *tls_next;      /* op to run next, bypassing the queue */
static _Thread_local worker *tls_w;          /* this worker */
static _Thread_local int tls_depth;          /* see td__exec_depth */
enum { BATCH_MIN = 64 };

/* ---- the ready queue ---- */
static inline int is_plain(const td__opr *op) { return !(op->flags & TD__OP_RANKED); }

static inline int runs_before(const td__opr *a, const td__opr *b) {
    int pa = (a->flags & TD_OP_PRIORITIZED) != 0, pb = (b->flags & TD_OP_PRIORITIZED) != 0;
    if (pa != pb) return pa > pb;
    if (a->priority != b->priority) return a->priority > b->priority;
    return a->qseq < b->qseq;
}

static td__opr *meld(td__opr *a, td__opr *b) {
    if (!a) return b;
    if (!b) return a;
    if (runs_before(b, a)) {
        td__opr *t = a;
        a = b;
        b = t;
    }
    b->qnext = a->qchild;
    a->qchild = b;
    return a;
}

static td__opr *heap_pop(td__opr *root) {
    td__opr *c = root->qchild, *pairs = NULL;
    while (c) { /* first pass: meld pairs left to right */
        td__opr *a = c, *b = c->qnext;
        c = b ? b->qnext : NULL;
        a->qnext = NULL;
        if (b) b->qnext = NULL;
        td__opr *m = meld(a, b);
        m->qnext = pairs;
        pairs = m;
    }
    td__opr *r = NULL;
    while (pairs) { /* second pass: meld right to left */
        td__opr *next = pairs->qnext;
        pairs->qnext = NULL;
        r = meld(r, pairs);
        pairs = next;
    }
    root->qchild = NULL;
    return r;
}

/* Queues op; returns the queue's length when a worker sleeps and none
 * spins, else 0 (read under the lock: see sleep_until_work for the other
 * half of the protocol). */
static int fifo_push(td__executor *ex, td__opr *op) {
    op->qnext = NULL;
    td__spin_lock(&ex->clock);
    if (ex->q_last) ex->q_last->qnext = op;
    else ex->q_head = op;
    ex->q_last = op;
    int n = atomic_load_explicit(&ex->nfifo, memory_order_relaxed) + 1;
    atomic_store_explicit(&ex->nfifo, n, memory_order_relaxed);
    if (n == 1 || n == BATCH_MIN) atomic_fetch_add_explicit(&ex->bell, 1, memory_order_release);
    int sleepy = atomic_load_explicit(&ex->sleepers, memory_order_relaxed) > 0 &&
                 !atomic_load_explicit(&ex->spinning, memory_order_relaxed);
    td__spin_unlock(&ex->clock);
    return sleepy ? n : 0;
}

/* Whether the FIFO holds ops, read under its lock: a worker about to sleep
 * has counted itself in `sleepers` first, so either it sees an op queued
 * before it looked, or the submitter, locking after it, sees it asleep. */
static int fifo_nonempty_locked(td__executor *ex) {
    td__spin_lock(&ex->clock);
    int n = atomic_load_explicit(&ex->nfifo, memory_order_relaxed);
    td__spin_unlock(&ex->clock);
    return n > 0;
}

/* Takes the FIFO's first op, or (all) every op in it at once, linked by
 * qnext in order, without walking them: the ops' lines were written by the
 * pushing thread, and walking them under the lock would fetch them one by
 * one while the pusher waits for the lock.  *k gets the count, *last the
 * last op. */
static td__opr *fifo_take(td__executor *ex, int all, int *k, td__opr **last) {
    td__spin_lock(&ex->clock);
    td__opr *head = ex->q_head;
    if (head) {
        int n = atomic_load_explicit(&ex->nfifo, memory_order_relaxed);
        if (all) {
            *k = n;
            *last = ex->q_last;
            ex->q_head = ex->q_last = NULL;
            n = 0;
        } else {
            *k = 1;
            *last = head;
            ex->q_head = head->qnext;
            if (!ex->q_head) ex->q_last = NULL;
            head->qnext = NULL;
            n--;
        }
        atomic_store_explicit(&ex->nfifo, n, memory_order_relaxed);
    }
    td__spin_unlock(&ex->clock);
    return head;
}

static inline int queue_nonempty(td__executor *ex) {
    return atomic_load(&ex->nfifo) > 0 || atomic_load(&ex->nheap) > 0;
}

static void wake(td__executor *ex, int all) {
    uv_mutex_lock(&ex->sleep_mu);
    if (all) uv_cond_broadcast(&ex->sleep_cv);
    else uv_cond_signal(&ex->sleep_cv);
    uv_mutex_unlock(&ex->sleep_mu);
}

/* Whether to wake a sleeping worker for an op just queued.  Nothing to do
 * when one spins (it takes the op) or none sleeps.  When an op is made ready
 * by a worker (the release path) or every worker sleeps, wake at once.  When
 * a user thread queues it while the awake workers are busy, the usual case
 * is a worker inside a short op that will take the new one within a
 * microsecond, and a wake costs the pushing thread a system call and the
 * machine two context switches: so the pusher watches the queue for up to
 * WAKE_DELAY_NS, and wakes a sleeper only if the queue has not drained (nor
 * a worker started spinning) by then.  A queued op therefore never waits
 * more than that (plus the wake itself) for a sleeping worker, whatever the
 * pushing thread does next. */
enum { WAKE_DELAY_NS = 2000 };

static void maybe_wake(td__executor *ex, int queued) {
    int sleepers = atomic_load(&ex->sleepers);
    if (sleepers == 0 || atomic_load(&ex->spinning)) return;
    if (td__tls_worker || sleepers >= ex->n) {
        wake(ex, 0);
        return;
    }
    /* An awake worker takes whole batches of short ops: it will be back for
     * these within a batch, and a second worker would only take turns with
     * it (and take a core from this thread).  Wake one only if the queue
     * outgrows what it takes. */
    if (atomic_load_explicit(&ex->nshort, memory_order_relaxed) > 0) {
        if (queued % (4 * BATCH_MIN) == 0) wake(ex, 0);
        return;
    }
    uint64_t t0 = uv_hrtime();
    for (;;) {
        td__cpu_relax_n(TD__POLL_PAUSES);
        if (atomic_load(&ex->spinning) || !queue_nonempty(ex)) return;
        if (uv_hrtime() - t0 > WAKE_DELAY_NS) break;
    }
    wake(ex, 0);
}

/* A worker holds a batch (another worker should be awake to take it over
 * should the holder be stuck in a long op). */
static int some_batch(td__executor *ex) {
    for (int i = 0; i < ex->n_alloc; i++) /* (n grows while the workers start) */
        if (atomic_load_explicit(&ex->workers[i].bleft, memory_order_relaxed) > 0) return 1;
    return 0;
}

void td__exec_kick(td__executor *ex) {
    if (!ex || atomic_load(&ex->sleepers) == 0) return;
    /* A spinning worker takes one of the queued ops; a sleeper is woken for
     * the others. */
    int queued = atomic_load(&ex->nfifo) + atomic_load(&ex->nheap) - (atomic_load(&ex->spinning) ? 1 : 0);
    /* Ops in a worker's batch count too when none spins: a worker awake
     * can take them over (steal) if that worker is held by a long op. */
    if (queued <= 0 && !atomic_load(&ex->spinning) && some_batch(ex)) queued = 1;
    if (queued > 0) wake(ex, queued > 1);
}

void td__exec_kick_all(void) {
    if (atomic_load(&td__g.state) != TD__RUNNING && atomic_load(&td__g.state) != TD__STOPPING) return;
    for (int i = 0; i < td__g.n_cpu; i++) td__exec_kick(td__g.cpu[i]);
}

void td__exec_submit(td__executor *ex, td__opr *op) {
    if (TD__LIKELY(is_plain(op))) {
        /* Ends its predecessor's worker: run it there next, unless that
         * worker is inside an op's function (the op could be long) or a
         * prioritised op waits. */
        if (tls_exec == ex && !tls_next && !td__tls_op && !atomic_load_explicit(&ex->nheap, memory_order_relaxed)) {
            tls_next = op;
            return;
        }
        int queued = fifo_push(ex, op);
        if (queued) maybe_wake(ex, queued);
        return;
    } else {
        td__spin_lock(&ex->qlock);
        op->qseq = ++ex->qseq;
        op->qnext = op->qchild = NULL;
        ex->heap = meld(ex->heap, op);
        td__spin_unlock(&ex->qlock);
        atomic_fetch_add(&ex->nheap, 1);
    }
    maybe_wake(ex, 1);
}

static td__opr *heap_take(td__executor *ex, int only_urgent) {
    td__spin_lock(&ex->qlock);
    td__opr *h = ex->heap;
    if (h && only_urgent && !(h->flags & TD_OP_PRIORITIZED) && h->priority <= 0) h = NULL;
    if (h) {
        ex->heap = heap_pop(h);
        h->qnext = NULL;
    }
    td__spin_unlock(&ex->qlock);
    if (h) atomic_fetch_sub(&ex->nheap, 1);
    return h;
}

/* ---- td_parallel_for ---- */
static void run_chunks(pjob *j) {
    for (;;) {
        int64_t i = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (i >= j->nchunks) return;
        int64_t b = i * j->chunk, e = b + j->chunk;
        if (e > j->n) e = j->n;
        j->fn(j->arg, b, e);
    }
}

static int help_jobs(td__executor *ex) {
    if (atomic_load_explicit(&ex->njobs, memory_order_relaxed) == 0) return 0;
    pjob *j;
    td__spin_lock(&ex->qlock);
    for (j = ex->jobs; j; j = j->next_job)
        if (atomic_load_explicit(&j->next, memory_order_relaxed) < j->nchunks) break;
    if (j) atomic_fetch_add(&j->helpers, 1);
    td__spin_unlock(&ex->qlock);
    if (!j) return 0;
    td__opr *outer = td__tls_op;
    td__tls_op = j->op; /* chunks run on behalf of that op: no blocking there */
    run_chunks(j);
    td__tls_op = outer;
    atomic_fetch_sub_explicit(&j->helpers, 1, memory_order_release);
    return 1;
}

/* Chunks are at least `grain` long and at most 256 of them cover [0, n):
 * a function of n and grain alone, never of the worker count. */
static int64_t chunk_size(int64_t n, int64_t grain) {
    int64_t c = (n + 255) / 256;
    return c > grain ? c : grain;
}

int64_t td_parallel_chunks(int64_t n, int64_t grain) {
    if (n <= 0) return 0;
    if (grain < 1) grain = 1;
    int64_t c = chunk_size(n, grain);
    return (n + c - 1) / c;
}

td_status td_parallel_for(const td_exec *ctx, int64_t n, int64_t grain, td_range_fn fn, void *arg) {
    if (!ctx) return td__fail(TD_EINVAL, "td_parallel_for: ex is NULL (call it from inside an op)");
    if (!fn) return td__fail(TD_EINVAL, "td_parallel_for: fn is NULL");
    if (n < 0) return td__fail(TD_EINVAL, "td_parallel_for: n is negative (%lld)", (long long)n);
    if (grain < 1) return td__fail(TD_EINVAL, "td_parallel_for: grain must be at least 1, not %lld", (long long)grain);
    if (n == 0) return TD_OK;
    if (n <= grain) { /* one chunk: [0, n) itself */
        fn(arg, 0, n);
        return TD_OK;
    }
    td__opr *op = td__exec_op(ctx);
    td__executor *ex = op->exec;
    pjob j = {.fn = fn, .arg = arg, .n = n, .chunk = chunk_size(n, grain), .op = op};
    j.nchunks = (n + j.chunk - 1) / j.chunk;
    atomic_init(&j.next, 0);
    atomic_init(&j.helpers, 0);
    if (!ex || ex->n == 1 || j.nchunks == 1) {
        run_chunks(&j);
        return TD_OK;
    }
    td__spin_lock(&ex->qlock);
    j.next_job = ex->jobs;
    ex->jobs = &j;
    td__spin_unlock(&ex->qlock);
    atomic_fetch_add(&ex->njobs, 1);
    if (atomic_load(&ex->sleepers) > 0) wake(ex, 1);
    run_chunks(&j);
    td__spin_lock(&ex->qlock);
    for (pjob **p = &ex->jobs; *p; p = &(*p)->next_job)
        if (*p == &j) {
            *p = j.next_job;
            break;
        }
    td__spin_unlock(&ex->qlock);
    atomic_fetch_sub(&ex->njobs, 1);
    /* Every chunk is claimed; wait for helpers still running theirs. */
    for (unsigned i = 0; atomic_load_explicit(&j.helpers, memory_order_acquire) > 0; i++) {
        if (i < 32) td__cpu_relax_n(TD__POLL_PAUSES);
        else uv_sleep(0);
    }
    return TD_OK;
}

/* ---- workers ----
 * At most one worker spins at a time (the others sleep), and a submitter
 * wakes a sleeper only when no worker spins: a spinner will take the op.  A
 * spinner that finds work wakes a sleeper if more work is queued, so the
 * pool widens as the queue grows, one wake at a time.  This keeps the number
 * of busy threads near the work available: on two cores, two spinning
 * workers and the pushing thread would fight over the CPUs. */
static int has_work(td__executor *ex) {
    return queue_nonempty(ex) || atomic_load(&ex->njobs) > 0 || atomic_load(&ex->stop);
}

/* has_work for a poll loop: looks at the bell line only.  b0 is the bell
 * read before the loop's first has_work (a push that queued after that look
 * rang the bell since, or was seen by it). */
static int bell_rang(td__executor *ex, unsigned b0) {
    return atomic_load_explicit(&ex->bell, memory_order_acquire) != b0 ||
           atomic_load_explicit(&ex->nheap, memory_order_relaxed) > 0 ||
           atomic_load_explicit(&ex->njobs, memory_order_relaxed) > 0 ||
           atomic_load_explicit(&ex->stop, memory_order_relaxed);
}

void td__user_wait_begin(void) {
    atomic_fetch_add(&td__g.user_waiting, 1);
    td__exec_kick_all();
}

void td__user_wait_end(void) {
    atomic_store_explicit(&td__g.user_wait_end_ns, td__now_ns(), memory_order_relaxed);
    atomic_fetch_sub(&td__g.user_waiting, 1);
}

/* Whether a user thread waits, or stopped waiting less than spin_ns ago (it
 * is likely to push the next op, or to wait again, at once). */
static int user_waits(const td__executor *ex, uint64_t now) {
    if (atomic_load_explicit(&td__g.user_waiting, memory_order_relaxed) > 0) return 1;
    return now - atomic_load_explicit(&td__g.user_wait_end_ns, memory_order_relaxed) < ex->spin_ns;
}

/* An idle worker waits here for work before it sleeps; returns whether work
 * came.  The spinner (at most one, `primary`) spins for spin_ns, then yields
 * until yield_ns.  While a user thread is blocked in a wait (or has just
 * left one), its core is free, so every idle worker stays awake: the next
 * op, or the second chunk of a loop, then finds a worker at once instead of
 * waiting 10-25 us for a wake.  But then the threads that want a core
 * outnumber the cores (the user thread spins in its wait too), so everyone
 * yields instead of spinning on the pause instruction: a thread that has
 * work (a worker with a chunk, the user thread whose op has ended) gets a
 * core within a yield, not at the end of a 50 us spin. */
static int steal(td__executor *ex, worker *me);
static int idle_wait(td__executor *ex, int primary, int me) {
    uint64_t t0 = td__now_ns();
    int yielding = 0;
    unsigned b0 = atomic_load_explicit(&ex->bell, memory_order_acquire);
    if (has_work(ex)) return 1;
    for (unsigned i = 1;; i++) {
        if (bell_rang(ex, b0)) return 1;
        {
            /* (Every 4 looks, about 2 us: each look takes the owner's line.) */
            if ((yielding || (i & 3) == 0) && ex->n_alloc > 1 && steal(ex, tls_w)) return 1;
            uint64_t t = td__now_ns();
            if (atomic_load_explicit(&td__g.user_waiting, memory_order_relaxed) > 0) td__account_flush();
            /* Deferred ops wait for a later op that may fuse them, but not
             * on an idle machine. */
            /* (Not while a pusher waits under back-pressure: it activates
             * them itself when nothing else is pending, see runtime.c.) */
            if (TD__UNLIKELY(atomic_load_explicit(&td__nparked, memory_order_relaxed) > 0) &&
                atomic_load_explicit(&td__g.bp_waiters, memory_order_relaxed) == 0) {
                /* Those waiting for idle_ns already: what was ready may now
                 * be in tls_next. */
                uint64_t age = atomic_load_explicit(&td__park_idle_ns, memory_order_relaxed);
                if (t - t0 > age) {
                    td__park_activate_older(t, age);
                    if (tls_next || has_work(ex)) return 1;
                }
            }
            int uw = ex->spin_beside && user_waits(ex, t);
            /* A worker that went idle after us took over the spinning: it
             * has the program's recent lines in its cache. */
            if (primary && atomic_load_explicit(&ex->spinning, memory_order_relaxed) != me) primary = 0;
            if (!primary && !uw) return 0;
            if (t - t0 > ex->yield_ns) return 0;
            yielding = uw || t - t0 > ex->spin_ns;
        }
        if (yielding) sched_yield();
        else td__cpu_relax_n(TD__POLL_PAUSES);
    }
}

/* Whether a worker about to sleep must stay up: the pool stops, a loop
 * wants helpers, or ops are queued and no other worker spins.  (A spinning
 * worker takes queued ops itself; when it stops spinning it looks at the
 * queue again before it sleeps, so nothing is left behind.  Without this a
 * worker that had just handed the spinning over would take the next op, and
 * the two would trade every burst of a stream of pushes, and its lines.) */
static int must_wake(td__executor *ex) {
    return atomic_load(&ex->stop) || atomic_load(&ex->njobs) > 0 ||
           ((atomic_load(&ex->nheap) > 0 || fifo_nonempty_locked(ex) || some_batch(ex)) &&
            atomic_load(&ex->spinning) == 0);
}

static void sleep_until_work(td__executor *ex) {
    td__account_flush(); /* nothing may be held back while asleep */
    uv_mutex_lock(&ex->sleep_mu);
    atomic_fetch_add(&ex->sleepers, 1);
    while (!must_wake(ex)) uv_cond_wait(&ex->sleep_cv, &ex->sleep_mu);
    atomic_fetch_sub(&ex->sleepers, 1);
    uv_mutex_unlock(&ex->sleep_mu);
}

/* Before a worker takes normal ops from the FIFO: while fewer than
 * BATCH_MIN are queued, no user thread waits and nothing outranks them, it
 * lets more come, for up to batch_ns, then takes the whole queue at once.
 * A program pushing a stream of small ops then writes its lines (the queue,
 * the vars, the op records) while the worker keeps off them, and the worker
 * runs what it finds in a burst; taking each op the moment it was queued
 * moved every line the two share between the cores once or twice per op,
 * and a push cost 0.2-0.45 us instead of 0.1.  It polls the bell line (rung
 * when the queue reaches BATCH_MIN), not the queue line: each look at that
 * took it from the pushing core.  Meanwhile it may take over the batch of a
 * worker held by a long op (steal).
 * Returns 1 when the time ran out (the stream is slow or has stopped), 0
 * when the wait ended early: enough ops queued, or something that wants
 * them now (a waiting user thread, prioritised ops, a loop, a stop, a
 * batch taken over). */
static int batch_delay(td__executor *ex) {
    uint64_t t0 = td__now_ns();
    unsigned b0 = atomic_load_explicit(&ex->bell, memory_order_acquire);
    if (atomic_load_explicit(&ex->nfifo, memory_order_relaxed) >= BATCH_MIN) return 0;
    for (unsigned i = 1;; i++) {
        if (bell_rang(ex, b0) || atomic_load_explicit(&td__g.user_waiting, memory_order_relaxed) > 0) return 0;
        if (td__now_ns() - t0 > ex->batch_ns) return 1;
        if ((i & 3) == 0 && ex->n_alloc > 1 && steal(ex, tls_w)) return 0;
        td__cpu_relax_n(TD__POLL_PAUSES);
    }
}

/* Batches are taken only while ops are short: a worker takes the whole
 * queue while its last batch ran under SHORT_NS per op (the ops its batch
 * released, run through `next`, included), and one op at a time otherwise.
 * Within a batch, an op that ran longer than SHORT_NS, or a chain of ops
 * that its ops release, sends the rest of the batch back to the queue's
 * head for the other workers; and an idle worker takes over the batch of a
 * worker that has not moved on for SHORT_NS (steal).  A batch of long ops,
 * or two chains whose first ops came in one batch, must not be held by one
 * worker while another has nothing to do. */
enum { SHORT_NS = 2000 };

/* Batch times are in ticks: the time-stamp counter where there is one
 * (read once per op here), converted with a rate measured when the
 * executor starts. */
static inline uint64_t ticks(void) {
#ifdef TD__HAVE_TSC
    return td__tsc();
#else
    return td__now_ns();
#endif
}

/* SHORT_NS in ticks (100 us of measuring, once per executor). */
static uint64_t short_ticks_measure(void) {
#ifdef TD__HAVE_TSC
    uint64_t n0 = td__now_ns(), t0 = ticks(), n1, t1;
    while ((n1 = td__now_ns()) - n0 < 100000) td__cpu_relax();
    t1 = ticks();
    double per_ns = (double)(t1 - t0) / (double)(n1 - n0);
    if (!(per_ns > 0.01 && per_ns < 100.0)) per_ns = 3.0; /* a counter that does not tick steadily */
    return (uint64_t)(SHORT_NS * per_ns);
#else
    return SHORT_NS;
#endif
}

static _Thread_local struct {
    uint64_t t0;      /* when the current batch was taken; 0: no batch */
    uint64_t last;    /* when its latest op started */
    int k;            /* its size */
    int all;          /* take the whole queue next time (ops are short) */
} tls_bat = {0, 0, 0, 0};

static void set_short(td__executor *ex, int all) {
    if (all != tls_bat.all) {
        atomic_fetch_add_explicit(&ex->nshort, all ? 1 : -1, memory_order_relaxed);
        tls_bat.all = all;
    }
}

/* Puts this worker's batch back at the head of the FIFO. */
/* w's batch becomes first..last (k ops). */
static void batch_set(worker *w, td__opr *first, td__opr *last, int k) {
    td__spin_lock(&w->blk);
    w->bhead = first;
    w->btail = last;
    atomic_store_explicit(&w->bleft, k, memory_order_relaxed);
    td__spin_unlock(&w->blk);
}

/* Takes w's whole batch (only if w has taken nothing from it since its
 * progress count read `prog`, unless prog is -1): returns its first op,
 * *last and *k; NULL when there is none. */
static td__opr *batch_detach(worker *w, long long prog, td__opr **last, int *k) {
    td__opr *first = NULL;
    td__spin_lock(&w->blk);
    if (prog < 0 || atomic_load_explicit(&w->bprog, memory_order_relaxed) == (unsigned)prog) {
        first = w->bhead;
        *last = w->btail;
        *k = atomic_load_explicit(&w->bleft, memory_order_relaxed);
        w->bhead = w->btail = NULL;
        atomic_store_explicit(&w->bleft, 0, memory_order_relaxed);
    }
    td__spin_unlock(&w->blk);
    return first;
}

static void give_back(td__executor *ex) {
    td__opr *last = NULL;
    int k = 0;
    td__opr *first = batch_detach(tls_w, -1, &last, &k);
    if (!first) return; /* stolen meanwhile */
    tls_bat.t0 = 0;
    set_short(ex, 0);
    td__spin_lock(&ex->clock);
    last->qnext = ex->q_head;
    if (!ex->q_head) ex->q_last = last;
    ex->q_head = first;
    atomic_store_explicit(&ex->nfifo, atomic_load_explicit(&ex->nfifo, memory_order_relaxed) + k,
                          memory_order_relaxed);
    atomic_fetch_add_explicit(&ex->bell, 1, memory_order_release);
    int sleepy = atomic_load_explicit(&ex->sleepers, memory_order_relaxed) > 0 &&
                 !atomic_load_explicit(&ex->spinning, memory_order_relaxed);
    td__spin_unlock(&ex->clock);
    if (sleepy) wake(ex, 0);
}

static td__opr *batch_pop(td__executor *ex);
static td__opr *take_fifo(td__executor *ex) {
    uint64_t now = 0;
    if (tls_bat.t0) {
        now = ticks();
        set_short(ex, now - tls_bat.t0 < (uint64_t)tls_bat.k * ex->short_ticks);
        tls_bat.t0 = 0;
    }
    /* The whole queue while ops are short, unless the wait for a batch was
     * cut short with few ops queued: someone wants them now (a user thread
     * waits, say), and they may be the heads of chains, or long: taken one
     * at a time, the next goes to another worker. */
    int all = tls_bat.all;
    if (all && ex->batch_ns && atomic_load_explicit(&ex->nfifo, memory_order_relaxed) < BATCH_MIN) {
        if (!batch_delay(ex) && atomic_load_explicit(&ex->nfifo, memory_order_relaxed) < BATCH_MIN) all = 0;
        now = 0;
        /* It took over another worker's batch while it waited (steal):
         * that batch first (a take below would replace it). */
        if (atomic_load_explicit(&tls_w->bleft, memory_order_relaxed) > 0) return batch_pop(ex);
    }
    int k = 0;
    td__opr *last = NULL;
    td__opr *op = fifo_take(ex, all, &k, &last);
    /* Ops left behind while this worker runs one of unknown length (when it
     * takes batches of short ops, any; else a backlog of ex->widen): wake a
     * sleeping worker for them, unless one spins. */
    if (op && k == 1 && atomic_load_explicit(&ex->nfifo, memory_order_relaxed) >= (tls_bat.all ? 1 : ex->widen) &&
        atomic_load(&ex->sleepers) > 0 && !atomic_load(&ex->spinning))
        wake(ex, 0);
    /* A batch: a worker must be awake to take it over should this one's
     * first op be long (steal). */
    if (op && k > 1 && atomic_load_explicit(&ex->sleepers, memory_order_relaxed) > 0 &&
        !atomic_load_explicit(&ex->spinning, memory_order_relaxed))
        wake(ex, 0);
    if (op) {
        td__opr *rest = op->qnext;
        op->qnext = NULL;
        tls_bat.k = k;
        if (rest) {
            batch_set(tls_w, rest, last, k - 1);
            td__prefetch_w(rest);
        }
        tls_depth = k - 1 + atomic_load_explicit(&ex->nfifo, memory_order_relaxed);
        tls_bat.t0 = tls_bat.last = now ? now : ticks();
    }
    return op;
}

/* The next op of this worker's batch (NULL: none left, or stolen). */
static td__opr *batch_pop(td__executor *ex) {
    worker *w = tls_w;
    uint64_t now = ticks();
    if (now - tls_bat.last > ex->short_ticks) { /* the last op was long: the rest to the others */
        give_back(ex);
        return NULL;
    }
    tls_bat.last = now;
    td__spin_lock(&w->blk);
    td__opr *op = w->bhead;
    if (op) {
        w->bhead = op->qnext;
        if (!w->bhead) w->btail = NULL;
        atomic_store_explicit(&w->bleft, atomic_load_explicit(&w->bleft, memory_order_relaxed) - 1,
                              memory_order_relaxed);
        atomic_store_explicit(&w->bprog, atomic_load_explicit(&w->bprog, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    }
    td__opr *next = w->bhead;
    td__spin_unlock(&w->blk);
    if (!op) return NULL;
    op->qnext = NULL;
    tls_depth--;
    /* The next op's first lines, fetched while this one runs. */
    if (next) {
        td__prefetch_w(next);
        td__prefetch_w((char *)next + TD__CACHELINE);
    }
    return op;
}

/* An idle worker takes over the batch of a worker that has been inside one
 * op for longer than a short op takes (its progress count has not moved
 * since this worker last looked, at least short_ticks ago): ops must not
 * wait behind a long one while a worker has nothing to do.  Returns whether
 * it took some (now this worker's batch). */
static int steal(td__executor *ex, worker *me) {
    if (atomic_load_explicit(&me->bleft, memory_order_relaxed) > 0) return 0; /* (has one) */
    uint64_t now = ticks();
    for (int i = 0; i < ex->n_alloc; i++) { /* (workers not started have no batch) */
        worker *v = &ex->workers[i];
        if (v == me || atomic_load_explicit(&v->bleft, memory_order_relaxed) == 0) {
            me->seen_t[i] = 0;
            continue;
        }
        unsigned p = atomic_load_explicit(&v->bprog, memory_order_relaxed);
        if (!me->seen_t[i] || me->seen_prog[i] != p) {
            me->seen_prog[i] = p;
            me->seen_t[i] = now;
            continue;
        }
        if (now - me->seen_t[i] < ex->short_ticks) continue;
        td__opr *last = NULL;
        int k = 0;
        td__opr *first = batch_detach(v, p, &last, &k);
        me->seen_t[i] = 0;
        if (!first) continue;
        /* They are short ops, most likely: this worker's batch now, in order. */
        batch_set(me, first, last, k);
        tls_bat.t0 = tls_bat.last = now;
        tls_bat.k = k;
        tls_depth = k;
        return 1;
    }
    return 0;
}

/* The next op for this worker: its `next` slot, the heap's ops that
 * outrank normal ones, its batch, a batch from the FIFO, then the heap's
 * other ops. */
static td__opr *next_op(td__executor *ex) {
    td__opr *op = tls_next;
    if (op) {
        tls_next = NULL;
        /* Counted with the batch it follows: the batch's time per op is
         * what says whether ops are short. */
        if (tls_bat.t0) tls_bat.k++;
        if (TD__UNLIKELY(atomic_load_explicit(&tls_w->bleft, memory_order_relaxed) > 0) &&
            ticks() - tls_bat.last > ex->short_ticks)
            give_back(ex);
    } else {
        int heaped = atomic_load(&ex->nheap) > 0;
        if (TD__UNLIKELY(heaped)) op = heap_take(ex, 1);
        if (!op && atomic_load_explicit(&tls_w->bleft, memory_order_relaxed) > 0) op = batch_pop(ex);
        if (!op && atomic_load_explicit(&ex->nfifo, memory_order_relaxed) > 0) op = take_fifo(ex);
        if (!op && heaped) op = heap_take(ex, 0);
    }
    return op;
}

static void worker_main(void *p) {
    worker *w = p;
    td__executor *ex = w->ex;
    td__tls_worker = 1;
    tls_exec = ex;
    tls_w = w;
    if (ex->dev->vt->bind_worker) ex->dev->vt->bind_worker(ex->dev, w->index);
    for (;;) {
        td__opr *op = next_op(ex);
        if (op) {
            td__account_before_run(op);
            atomic_store_explicit(&w->running, op, memory_order_relaxed);
            td__op_execute(op, w->index);
            atomic_store_explicit(&w->running, NULL, memory_order_relaxed);
            continue;
        }
        if (help_jobs(ex)) continue;
        /* Ends held back (runtime.c) matter only to a td_wait_all: flushed
         * now if one waits, else by idle_wait when one starts, or before
         * sleeping.  (Flushing whenever the queue runs dry moved the count's
         * line between the pusher and the workers once per op.) */
        if (atomic_load_explicit(&td__g.user_waiting, memory_order_relaxed) > 0) td__account_flush();
        if (atomic_load(&ex->stop)) {
            td__account_flush();
            break;
        }
        /* The spinner is the worker that went idle last (see idle_wait). */
        int me = w->index + 1;
        if (ex->spin_ns) {
            atomic_store(&ex->spinning, me);
            int got = idle_wait(ex, 1, me);
            int expect = me;
            atomic_compare_exchange_strong(&ex->spinning, &expect, 0);
            if (got) {
                /* More than this worker can take at once: widen the pool. */
                if (atomic_load(&ex->nfifo) + atomic_load(&ex->nheap) > 1 && atomic_load(&ex->sleepers) > 0)
                    wake(ex, 0);
                continue;
            }
        }
        /* Deferred ops are activated by the spinner after td__park_idle_ns
         * (idle_wait); with no spinning at all, before sleeping. */
        if (!ex->spin_ns && atomic_load(&td__nparked) > 0) {
            td__park_activate_all();
            continue;
        }
        set_short(ex, 0); /* asleep, it takes nothing: pushes must wake someone */
        sleep_until_work(ex);
    }
    td__op_cache_flush();
    tls_exec = NULL;
}

td__executor *td__cpu_exec_start(td__device *dev, int nworkers, td_status *st) {
    /* On a line boundary, so that its lines are the cache's lines: calloc
     * gives 16 bytes, and with the executor at 48 past a line the pushing
     * core's queue fields and the idle workers' bell shared a line (a stream
     * of pushes ran at 0.15 us/op instead of 0.09 in such a process).  Two
     * lines, as the cache fetches lines in pairs. */
    size_t xbytes = (sizeof(td__executor) + 2 * TD__CACHELINE - 1) & ~(size_t)(2 * TD__CACHELINE - 1);
    td__executor *ex = aligned_alloc(2 * TD__CACHELINE, xbytes);
    if (ex) memset(ex, 0, xbytes);
    size_t wbytes = (size_t)nworkers * sizeof(worker); /* a multiple of the line */
    wbytes = (wbytes + 2 * TD__CACHELINE - 1) & ~(size_t)(2 * TD__CACHELINE - 1);
    worker *ws = aligned_alloc(2 * TD__CACHELINE, wbytes);
    if (ws) memset(ws, 0, wbytes);
    int seen_ok = ws != NULL;
    for (int i = 0; seen_ok && i < nworkers; i++) {
        ws[i].seen_prog = calloc((size_t)nworkers, sizeof *ws[i].seen_prog);
        ws[i].seen_t = calloc((size_t)nworkers, sizeof *ws[i].seen_t);
        seen_ok = ws[i].seen_prog && ws[i].seen_t;
    }
    if (!ex || !ws || !seen_ok) {
        for (int i = 0; ws && i < nworkers; i++) {
            free(ws[i].seen_prog);
            free(ws[i].seen_t);
        }
        free(ex);
        free(ws);
        *st = td__fail(TD_ENOMEM, "td_init: out of memory for %d workers", nworkers);
        return NULL;
    }
    ex->dev = dev;
    ex->workers = ws;
    ex->n_alloc = nworkers;

    long long spin_us = td__env_int("TIDE_SPIN_US", 50, NULL);
    ex->spin_ns = (uint64_t)(spin_us < 0 ? 0 : spin_us) * 1000u;
    long long yield_us = td__env_int("TIDE_YIELD_US", 500, NULL);
    ex->yield_ns = ex->spin_ns + (uint64_t)(yield_us < 0 ? 0 : yield_us) * 1000u;
    ex->widen = (int)td__env_int("TIDE_WIDEN", 2, NULL);
    long long batch_us = td__env_int("TIDE_BATCH_US", 10, NULL);
    ex->batch_ns = (uint64_t)(batch_us < 0 ? 0 : batch_us) * 1000u;
    ex->spin_beside = td__env_int("TIDE_SPIN_BESIDE", 1, NULL) != 0;
    ex->short_ticks = short_ticks_measure();
    if (uv_mutex_init(&ex->sleep_mu) || uv_cond_init(&ex->sleep_cv)) TD__PANIC("cannot create executor locks");
    for (int i = 0; i < nworkers; i++) {
        ws[i].ex = ex;
        ws[i].index = i;
        if (uv_thread_create(&ws[i].thread, worker_main, &ws[i]) != 0) {
            ex->n = i;
            td__exec_stop(ex);
            *st = td__fail(TD_EDEVICE, "td_init: could not start worker thread %d of %d", i, nworkers);
            return NULL;
        }
        ex->n = i + 1;
    }
    return ex;
}

void td__exec_stop(td__executor *ex) {
    atomic_store(&ex->stop, 1);
    wake(ex, 1);
    for (int i = 0; i < ex->n; i++) uv_thread_join(&ex->workers[i].thread);
    uv_cond_destroy(&ex->sleep_cv);
    uv_mutex_destroy(&ex->sleep_mu);
    for (int i = 0; i < ex->n_alloc; i++) {
        free(ex->workers[i].seen_prog);
        free(ex->workers[i].seen_t);
    }
    free(ex->workers);
    free(ex);
}

int td__exec_nworkers(const td__executor *ex) { return ex ? ex->n : 0; }
/* The ready ops a worker saw when it last took from the queue (those left
 * there and those in its batch): read from the line it had just locked, so
 * the profiler's depth counter costs no cache line per op.  Other threads
 * read the queue's counts. */
int td__exec_depth(const td__executor *ex) {
    if (tls_exec == ex) return tls_depth;
    return atomic_load_explicit(&ex->nfifo, memory_order_relaxed) + atomic_load_explicit(&ex->nheap, memory_order_relaxed);
}

int td_device_workers(td_device dev) {
    td__device *d = td__device_find(dev);
    if (!d) return 0;
    if (atomic_load(&td__g.state) == TD__RUNNING) {
        if (td__g.naive) return 1;
        return dev.kind == TD_CPU && dev.id < td__g.n_cpu ? td__g.cpu[dev.id]->n : 0;
    }
    td_config c = td_config_default();
    return c.cpu_workers > 0 ? c.cpu_workers : d->n_cores;
}

void td__exec_report(td__executor *ex, FILE *out) {
    fprintf(out, "  %s: %d worker(s)\n", ex->dev->name, ex->n);
    for (int i = 0; i < ex->n; i++) {
        td__opr *op = atomic_load_explicit(&ex->workers[i].running, memory_order_relaxed);
        if (op) fprintf(out, "    worker %d: running '%s' (push #%llu)", i, op->name, (unsigned long long)op->seq);
        else fprintf(out, "    worker %d: idle", i);
        int left = atomic_load_explicit(&ex->workers[i].bleft, memory_order_relaxed);
        if (left > 0) fprintf(out, "; %d ready op(s) taken in its batch, not started", left);
        fputc('\n', out);
    }
    td__spin_lock(&ex->clock);
    int k = 0;
    for (td__opr *op = ex->q_head; op && k < 20; op = op->qnext) {
        fprintf(out, "    ready: '%s' (push #%llu)\n", op->name, (unsigned long long)op->seq);
        k++;
    }
    td__spin_unlock(&ex->clock);
    td__spin_lock(&ex->qlock);
    if (ex->heap) fprintf(out, "    ready (prioritised): '%s' and maybe more\n", ex->heap->name);
    td__spin_unlock(&ex->qlock);
}
