/* tide engine: private structures shared by the engine's files.
 *
 * Files: var.c (vars and their access queues), op.c (op records, push,
 * completion, error marks), errors.c (error records and the unreported
 * list), runtime.c (start, stop, configuration, wait_all, fork), cpu_exec.c
 * (threaded executor and td_parallel_for), naive.c (the naive engine),
 * wait.c (blocking waits and the stall report).
 *
 * Locking rules, in the order they may nest (outer first):
 *   life_mu (runtime start/stop)  >  wait_mu (td_wait_all, serialises closers)
 *   var spin locks (several at once only in push, in ascending address order)
 *   executor queue lock, error list mutex, registry mutex, event mutexes:
 *   leaves; nothing else is taken while one is held.
 */
#ifndef TIDE_ENGINE_INTERNAL_H
#define TIDE_ENGINE_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include <tide/engine.h>
#include <tide/runtime.h>

#include "core/internal.h"
#include "devices/internal.h"

typedef struct td__opr td__opr;
typedef struct td__executor td__executor;
typedef struct td__err td__err;

/* ---- error records (errors.c) ---- */
struct td__err {
    atomic_int refs;
    td_status status;
    uint64_t seq;   /* push number of the failing op */
    uint32_t epoch; /* wait_all epoch of the failing op */
    int listed;     /* in the unreported list (guarded by the list mutex) */
    char *text;     /* "<op name>: <message>" */
};
td__err *td__err_new(const td__opr *op, td_status st, const char *msg);
void td__err_retain(td__err *e);
void td__err_release(td__err *e);
/* Records e as unreported (keeps the 64 earliest). */
void td__err_publish(td__err *e);
/* Sets the thread's last error from e and marks e reported. */
td_status td__err_report(td__err *e);
/* The earliest unreported record of an epoch up to `epoch` (mod 2^32,
 * counted back from cur_epoch), which is then reported, and every other such
 * record is marked reported.  NULL if none. Caller releases the result. */
td__err *td__err_take_until(uint32_t epoch, int all);
void td__errs_reset(void);

/* ---- vars (var.c) ---- */
enum { TD__ACC_READ = 1, TD__ACC_WRITE = 2 };
#define TD__VAR_MAGIC 0x74645652u /* "tdVR" */

typedef struct td__access {
    struct td__access *next; /* in the var's queue of waiting accesses */
    td__opr *op;
    td_var *var;
    int mode; /* TD__ACC_READ, TD__ACC_WRITE or both (counts as a write) */
} td__access;

struct td_var {
    td__spin lock;
    uint32_t magic;
    int32_t readers;          /* granted reads not yet released */
    int32_t writer;           /* a granted write not yet released */
    int32_t freed;            /* the owner gave it up: destroy when idle */
    td__access *head, *tail;  /* waiting accesses, FIFO */
    td__err *err;             /* the mark; touched only by holders of a granted access */
    uint64_t id;              /* for the stall report */
    void (*dtor)(void *);     /* called when the var is destroyed (storage) */
    void *dtor_arg;
    int recycle;              /* when freed and idle: reset and call dtor, but keep the var */
    td_var *reg_prev, *reg_next; /* registry of live vars (stall report) */
    struct td__park *defer_w;  /* a deferred op writes it (park.c) */
    int32_t defer_readers;     /* deferred ops read it */
};

td_var *td__var_create(void (*dtor)(void *), void *dtor_arg);
/* A var for a pooled storage: when its owner frees it and it is idle, it is
 * reset (no mark, not freed) and handed back through recycle(arg) instead of
 * destroyed, so the storage and its var are reused together. */
td_var *td__var_create_recyclable(void (*recycle)(void *), void *arg);
/* Destroys an idle var that is not freed (a pooled storage being trimmed). */
void td__var_destroy_now(td_var *v);
/* Takes the granted/queued decision for every access of op: locks all its
 * vars in ascending address order (op->acc is sorted), then appends.
 * Returns how many accesses were granted at once. */
struct td__push_x;
int td__var_append_all(td__opr *op, struct td__push_x *x); /* -1: x's guard failed, nothing appended */
/* Releases op's accesses; ops that become ready are handed to
 * td__op_ready(). */
void td__var_release_all(td__opr *op);
/* Releases one access (used by waits). */
void td__var_release(td__access *a);
void td__var_report(FILE *out); /* stall report part: vars with waiters */

/* ---- ops (op.c) ---- */
enum { TD__OPK_NORMAL = 0, TD__OPK_WAITER = 1 };
enum { TD__INLINE_ACC = 4, TD__NAME_MAX = 48 };
/* An internal td_op flag: the name is a static string (an op descriptor's),
 * so td_push keeps the pointer instead of copying it. */
enum { TD__OP_STATIC_NAME = 1 << 16 };
/* Set by td_push when the op is TD_OP_PRIORITIZED or has a priority: it goes
 * to the executor's heap (the priority itself sits in a cold line). */
enum { TD__OP_RANKED = 1 << 17 };

typedef struct td__event td__event;

struct td_exec {
    td_device device;
    int worker;
}; /* inside its op record: td__exec_op finds the record */

/* Laid out by use, in 64-byte lines (op records are line-aligned).  A push
 * writes, and the worker that runs the op reads, lines 0 and 1 (with the
 * first access) and line 2 for a second and third access: each of those
 * lines moves from the pushing core to a worker's and back once per op, so
 * an op with one var costs two.  Line 3 holds what a push writes but a
 * worker reads only for errors or the stall report (name, priority), so it
 * stays in the pushing core's
 * cache; the rest is touched only by errors, deferral, the priority heap,
 * the naive engine's waits or the worker's own profiler time.  park, done_ev and errmsg are NULL in a free record
 * (whoever sets them clears them), so a push does not write them. */
struct td__opr {
    /* line 0 */
    int flags;
    int n_acc;
    uint32_t epoch;           /* td_wait_all epoch */
    uint8_t kind;             /* TD__OPK_* */
    uint8_t prof;             /* TD__PROF_*: recorded by the profiler (decided at push) */
    uint8_t uncounted;        /* naive engine, user thread: not in the epoch counts (naive.c) */
    uint8_t parked;           /* pushed deferred: park is (or was) set */
    size_t out_bytes;
    td_fn fn;
    void *arg;
    td__executor *exec;       /* where it runs (NULL on the naive engine) */
    td__opr *qnext;           /* ready queue link (cpu_exec.c) */
    td__access *acc;          /* inline_acc or malloc'd; sorted by var address, duplicates merged */
    /* line 1: what a grant touches (the first access and the count) */
    atomic_int wait;          /* accesses not yet granted (+1 while pushing) */
    td_exec ex;               /* handed to fn; valid until completion */
    uint64_t seq;             /* push number */
    void (*arg_free)(void *);
    /* lines 1-3 */
    td__access inline_acc[TD__INLINE_ACC];
    /* line 3 */
    int priority;             /* read only when flags has TD__OP_RANKED */
    const char *name;         /* static (TD__OP_STATIC_NAME), interned, or name_buf */
    /* line 4 */
    _Alignas(TD__CACHELINE) struct td__park *park; /* deferred (park.c), or NULL */
    td__event *done_ev;       /* naive engine: signalled when an async op ends */
    char *errmsg;             /* td_exec_set_error (malloc'd) */
    td__opr *qchild;          /* priority heap link (cpu_exec.c) */
    uint64_t qseq;
    /* Profiler times (td__prof_ticks), by the thread that makes it ready /
     * runs it.  Once its end record is written, t_ready holds its end time,
     * which the op it makes ready takes as its ready time (var.c). */
    uint64_t t_ready, t_start;
    uint64_t prof_by; /* TD__PROF_READY_BY: the push number of the op whose end made it ready */
    /* line 5 */
    char name_buf[TD__NAME_MAX]; /* a name that could not be interned */
};
static inline td__opr *td__exec_op(const td_exec *ex) {
    return (td__opr *)((char *)(uintptr_t)ex - offsetof(td__opr, ex));
}
/* A name that is neither static nor interned lives in the record. */
static inline int td__op_name_in_record(const td__opr *op) { return op->name == op->name_buf; }

/* ---- deferred ops (park.c) ---- */
enum { TD__PARK_DEFER = 1, TD__PARK_GO = 2, TD__PARK_PARKED = 3, TD__PARK_CLAIMED = 4, TD__PARK_DONE = 5 };
typedef struct td__park {
    atomic_int state;
    atomic_int refs;
    td__opr *op; /* valid while deferred */
    struct td__park *prev, *next;
    uint64_t t_park; /* when it was pushed */
} td__park;
extern atomic_int td__nparked; /* tickets still deferred */
/* An idle worker activates every deferred op after this long (100 us). */
extern _Atomic uint64_t td__park_idle_ns;
void td__park_set_idle_ns(uint64_t ns); /* a test hook */
td__park *td__park_new(void);  /* one reference, the caller's; NULL when out of memory */
void td__park_retain(td__park *t);
void td__park_release(td__park *t);
int td__park_deferred(const td__park *t);
void td__park_attach(td__park *t, td__opr *op); /* at push */
int td__park_on_ready(td__opr *op);             /* 1: parked, do not dispatch */
/* Activation in two steps, so the first can run under var locks: claim
 * returns the op to dispatch (it was parked ready) or NULL; claim_all a
 * chain of such ops linked by qnext. */
td__opr *td__park_claim(td__park *t);
/* Runs fn(arg) if t is still deferred, such that it stays deferred (its op
 * not dispatched, its arg not freed) until fn returns; returns whether it ran. */
int td__park_while_deferred(td__park *t, void (*fn)(void *arg), void *arg);
td__opr *td__park_claim_all(void);
void td__park_dispatch(td__opr *chain);
void td__park_activate(td__park *t);
void td__park_activate_all(void);
/* Activates the deferred ops pushed at least age ns before now. */
void td__park_activate_older(uint64_t now, uint64_t age);
void td__park_op_end(td__opr *op);

/* td_push with the ops layer's options (NULL: plain td_push). */
typedef struct td__push_x {
    td__park *defer;     /* push deferred under this ticket (td__park_new) */
    td__park *guard;     /* push only while this ticket is deferred ... */
    td_var *guard_var;   /* ... checked under this var's lock too */
    int guard_failed;    /* out: nothing was pushed because of the guard */
} td__push_x;
td_status td__push_ex(const td_op *o, td__push_x *x);

/* Called when op's last dependency is granted: dispatch it (or park it). */
void td__op_ready(td__opr *op);
void td__op_dispatch(td__opr *op); /* to its executor, the waiter, or run (naive) */
/* Runs op on this thread (the skip rule, fn, and for synchronous ops the
 * completion). w is the worker index reported by td_exec_worker. */
void td__op_execute(td__opr *op, int w);
/* Ends op: marks, arg_free, release of its vars, accounting, recycling. */
void td__op_finish(td__opr *op, td_status st);
void td__op_recycle(td__opr *op);
void td__op_cache_flush(void);

/* The op this thread is running (NULL: none): blocking calls return
 * TD_EBUSY while it is set. */
extern _Thread_local td__opr *td__tls_op;

/* How long a blocked user thread spins, then yields, before it sleeps (see
 * td__spin_until), by default; TIDE_WAIT_SPIN_US and TIDE_WAIT_YIELD_US
 * change it (td__g.wait_spin_ns, td__g.wait_yield_ns). */
enum { TD__WAIT_SPIN_NS = 0, TD__WAIT_YIELD_NS = 1000000 };
/* A user thread blocks in a wait (td_var_wait, td_wait_all) between these:
 * while one does, its core is free, so idle workers may all spin (see
 * cpu_exec.c) instead of one. */
void td__user_wait_begin(void);
void td__user_wait_end(void);

/* ---- events (wait.c) ---- */
struct td__event {
    atomic_int set;
    uv_mutex_t mu;
    uv_cond_t cv;
    atomic_int sleeping;
};
void td__event_init(td__event *ev);
void td__event_destroy(td__event *ev);
void td__event_signal(td__event *ev);
/* Spins briefly, then sleeps; prints the stall report once if it lasts
 * longer than the configured stall time (what names what is waited for). */
void td__event_wait(td__event *ev, const char *what);

/* ---- executors (cpu_exec.c) ---- */
td__executor *td__cpu_exec_start(td__device *dev, int nworkers, td_status *st);
void td__exec_stop(td__executor *ex); /* joins; the queue must be empty */
void td__exec_submit(td__executor *ex, td__opr *op);
/* A user thread is about to block: wake a worker for queued ops if none is awake to take them. */
void td__exec_kick(td__executor *ex);
void td__exec_kick_all(void);
int td__exec_nworkers(const td__executor *ex);
void td__exec_report(td__executor *ex, FILE *out);

int td__exec_depth(const td__executor *ex); /* ops in the ready queue */

/* ---- profiler (profiler.c) ---- */
extern atomic_int td__prof_on;
/* op->prof: not recorded, recorded, recorded and ready at push, recorded
 * and made ready later (t_ready set), recorded and made ready by the end of
 * op prof_by (t_ready set: its end time; the flow arrow goes in this op's
 * end record instead of a flow record). */
enum { TD__PROF_OFF = 0, TD__PROF_ON = 1, TD__PROF_READY_AT_PUSH = 2, TD__PROF_READY_LATER = 3, TD__PROF_READY_BY = 4 };
/* The push record of a recorded op (on the pushing thread), after its push
 * number is taken. */
void td__prof_push(const td__opr *op, uint64_t t_push);
/* Profiler timestamps are ticks: the time-stamp counter where it runs at a
 * constant rate (td__prof_tsc, decided once), else uv_hrtime's ns.  Reading
 * the counter costs a few ns against 26 for the clock here, and an op is
 * timed three times; the writer turns ticks into ns with a rate measured
 * against the clock over the whole recording. */
extern int td__prof_tsc;
static inline uint64_t td__prof_ticks(void) {
#ifdef TD__HAVE_TSC
    if (TD__LIKELY(td__prof_tsc)) return td__tsc();
#endif
    return uv_hrtime();
}
void td__prof_record(td__opr *op, int status, int depth);
void td__prof_flow(uint64_t from_seq, uint64_t to_seq);
td_status td__profiler_stop_internal(int drain);

/* ---- naive engine (naive.c) ---- */
td_status td__naive_submit(td__opr *op);
/* Returns once no naive op runs on another thread (those not counted in the
 * epochs: td_wait_all and drains call it first). */
void td__naive_barrier(void);
void td__naive_reset(void);

/* ---- runtime (runtime.c) ---- */
enum { TD__STOPPED = 0, TD__RUNNING = 1, TD__STOPPING = 2, TD__POISONED = 3 };

typedef struct {
    atomic_int state;
    int naive;
    td_config cfg;
    size_t max_inflight;
    double stall_seconds;
    td__executor *cpu[TD__MAX_CPU_DEVICES];
    int n_cpu;
    /* pending-op accounting for td_wait_all (see runtime.c) */
    _Alignas(TD__CACHELINE) _Atomic uint64_t epoch_word; /* epoch << 32 | pending */
    _Alignas(TD__CACHELINE) atomic_llong retired[2];
    _Alignas(TD__CACHELINE) _Atomic uint64_t seq;
    _Alignas(TD__CACHELINE) _Atomic size_t inflight;
    atomic_int bp_waiters;
    _Alignas(TD__CACHELINE) atomic_int user_waiting; /* user threads blocked in a wait */
    _Atomic uint64_t user_wait_end_ns;               /* when the last such wait ended */
    uint64_t wait_spin_ns, wait_yield_ns;
    uv_mutex_t bp_mu;
    uv_cond_t bp_cv;
    uv_mutex_t drain_mu;
    uv_cond_t drain_cv;
} td__engine;
extern td__engine td__g;

/* Starts the runtime if it is not running.  TD_OK when it runs. */
td_status td__ensure_slow(void);
static inline td_status td__ensure(void) {
    if (TD__LIKELY(atomic_load_explicit(&td__g.state, memory_order_acquire) == TD__RUNNING))
        return TD_OK;
    return td__ensure_slow();
}
/* TD_EBUSY with a message naming the call, when inside an op. */
td_status td__busy_check(const char *call);
/* Accounting of one op leaving: pending count and bytes in flight. */
void td__account_push(td__opr *op);
void td__account_done(td__opr *op);
void td__bp_reserve(size_t bytes);
void td__bp_unreserve(size_t bytes);
/* Before a user thread allocates an op's output: waits while the bytes in
 * flight are above the limit, so memory held for pending ops stays within
 * the limit plus one op (the output would otherwise be allocated before the
 * push's own wait). */
void td__bp_admit(void);
/* Bytes that pending ops keep alive without declaring them (a released
 * array's storage that a pending op still reads): counted as in flight
 * until they are freed. */
void td__bp_add(size_t bytes);
void td__bp_sub(size_t bytes);
/* Workers only: publish held-back completions (see runtime.c). */
void td__account_flush(void);
void td__account_before_run(const td__opr *op);
/* Set on the engine's worker threads. */
extern _Thread_local int td__tls_worker;
/* Waits until every op pushed so far (and what they push) has ended,
 * without reporting errors. */
void td__drain(void);

#endif
