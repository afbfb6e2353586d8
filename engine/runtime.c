/* The runtime's life: start, configuration, td_wait_all, shutdown, exit and
 * fork.
 *
 * Pending ops are counted per *epoch* so that td_wait_all waits for the ops
 * pushed before it was called (and the ops those push), never for ops other
 * threads keep pushing after.  epoch_word holds the current epoch in its high
 * 32 bits and the ops of that epoch still pending in its low 32 bits: a push
 * from a user thread adds one to it and learns its epoch in the same atomic
 * step.  td_wait_all closes the epoch (moves the word to the next epoch with
 * a count of zero), adds the closed epoch's count to retired[epoch & 1], and
 * waits for that to reach zero; ops of a closed epoch, and ops they push
 * (which inherit their parent's epoch), count down there instead.  Closers
 * are serialised by wait_mu, so at most one closed epoch is draining at a
 * time and two retired slots suffice.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include <tide/profiler.h>

#include "engine/internal.h"

td__engine td__g;

static uv_once_t g_once = UV_ONCE_INIT;
static uv_mutex_t life_mu;
static uv_mutex_t wait_mu;
static int resume_saved_cfg; /* after a fork: start again with td__g.cfg */
static int fork_stopped, fork_in_op;
static char profile_path_buf[4096];

#define EPOCH_COUNT_MASK 0xffffffffull

static void at_exit(void);
static void fork_prepare(void);
static void fork_parent(void);
static void fork_child(void);

static void once_init(void) {
    if (uv_mutex_init(&life_mu) || uv_mutex_init(&wait_mu) || uv_mutex_init(&td__g.bp_mu) ||
        uv_cond_init(&td__g.bp_cv) || uv_mutex_init(&td__g.drain_mu) || uv_cond_init(&td__g.drain_cv))
        TD__PANIC("cannot create the runtime's locks");
    atexit(at_exit);
    pthread_atfork(fork_prepare, fork_parent, fork_child);
}

static size_t default_max_inflight(void) {
    uint64_t total = uv_get_total_memory();
    uint64_t limit = uv_get_constrained_memory();
    if (limit && limit < total) total = limit;
    uint64_t v = total / 4;
    if (v < (256ull << 20)) v = 256ull << 20;
    return (size_t)v;
}

td_config td_config_default(void) {
    td_config c = {.engine = TD_ENGINE_THREADED, .cpu_workers = 0, .max_inflight_bytes = 0, .profile_path = NULL};
    const char *e = td__env_str("TIDE_ENGINE");
    if (e && strcmp(e, "naive") == 0) c.engine = TD_ENGINE_NAIVE;
    long long w = td__env_int("TIDE_CPU_WORKERS", 0, NULL);
    if (w > 0 && w <= 4096) c.cpu_workers = (int)w;
    long long b = td__env_int("TIDE_MAX_INFLIGHT_BYTES", 0, NULL);
    if (b > 0) c.max_inflight_bytes = (size_t)b;
    c.profile_path = td__env_str("TIDE_PROFILE");
    return c;
}

static void stop_executors(void) {
    for (int i = 0; i < td__g.n_cpu; i++) {
        if (td__g.cpu[i]) td__exec_stop(td__g.cpu[i]);
        td__g.cpu[i] = NULL;
    }
    td__g.n_cpu = 0;
}

/* Called with life_mu held and the runtime stopped. */
static td_status start_locked(const td_config *cfg) {
    if (cfg->engine != TD_ENGINE_THREADED && cfg->engine != TD_ENGINE_NAIVE)
        return td__fail(TD_EINVAL, "td_init: engine must be TD_ENGINE_THREADED or TD_ENGINE_NAIVE, not %d",
                        cfg->engine);
    if (cfg->cpu_workers < 0 || cfg->cpu_workers > 4096)
        return td__fail(TD_EINVAL, "td_init: cpu_workers must be 0 (one per core) to 4096, not %d",
                        cfg->cpu_workers);
    td__devices_init();
    td__g.cfg = *cfg;
    if (cfg->profile_path && cfg->profile_path != profile_path_buf) {
        td__strlcpy(profile_path_buf, cfg->profile_path, sizeof profile_path_buf);
        td__g.cfg.profile_path = profile_path_buf;
    }
    td__g.naive = cfg->engine == TD_ENGINE_NAIVE;
    td__g.max_inflight = cfg->max_inflight_bytes ? cfg->max_inflight_bytes : default_max_inflight();
    long long stall = td__env_int("TIDE_STALL_SECONDS", 60, NULL);
    td__g.stall_seconds = stall > 0 ? (double)stall : 0.0;
    long long ws = td__env_int("TIDE_WAIT_SPIN_US", TD__WAIT_SPIN_NS / 1000, NULL);
    long long wy = td__env_int("TIDE_WAIT_YIELD_US", (TD__WAIT_YIELD_NS - TD__WAIT_SPIN_NS) / 1000, NULL);
    td__g.wait_spin_ns = (uint64_t)(ws < 0 ? 0 : ws) * 1000u;
    td__g.wait_yield_ns = td__g.wait_spin_ns + (uint64_t)(wy < 0 ? 0 : wy) * 1000u;
    td__g.n_cpu = 0;
    if (!td__g.naive) {
        int ndev = td_device_count(TD_CPU);
        for (int i = 0; i < ndev; i++) {
            td__device *d = td__device_find(td_cpu(i));
            int nw = cfg->cpu_workers > 0 ? cfg->cpu_workers : (d->n_cores > 0 ? d->n_cores : 1);
            td_status st = TD_OK;
            td__g.cpu[i] = td__cpu_exec_start(d, nw, &st);
            if (!td__g.cpu[i]) {
                stop_executors();
                return st;
            }
            td__g.n_cpu = i + 1;
        }
    }
    atomic_store(&td__g.state, TD__RUNNING);
    if (td__g.cfg.profile_path && !atomic_load(&td__prof_on)) {
        td_status pst = td_profiler_start(td__g.cfg.profile_path);
        if (pst != TD_OK) fprintf(stderr, "tide: TIDE_PROFILE: %s\n", td_last_error());
    }
    return TD_OK;
}

td_status td__ensure_slow(void) {
    uv_once(&g_once, once_init);
    int s = atomic_load(&td__g.state);
    if (s == TD__POISONED)
        return td__fail(TD_EINVAL, "tide is unusable in this process: it was forked from inside a running op "
                                   "(fork from the program's own threads instead)");
    /* Inside an op while td_shutdown drains: the runtime still runs for it. */
    if (s == TD__STOPPING && td__tls_op) return TD_OK;
    uv_mutex_lock(&life_mu);
    td_status st = TD_OK;
    if (atomic_load(&td__g.state) == TD__STOPPED) {
        if (resume_saved_cfg) {
            td_config c = td__g.cfg;
            st = start_locked(&c);
            if (st == TD_OK) resume_saved_cfg = 0;
        } else {
            td_config c = td_config_default();
            st = start_locked(&c);
        }
    }
    uv_mutex_unlock(&life_mu);
    return st;
}

td_status td__busy_check(const char *call) {
    td__opr *op = td__tls_op;
    if (TD__LIKELY(!op)) return TD_OK;
    return td__fail(TD_EBUSY,
                    "%s called inside the running op '%s': a blocking call there could wait for "
                    "work that needs this very worker; inside an op, use only the vars it declared",
                    call, op->name);
}

static td_status poisoned_check(const char *call) {
    if (TD__UNLIKELY(atomic_load_explicit(&td__g.state, memory_order_relaxed) == TD__POISONED))
        return td__fail(TD_EINVAL, "%s: tide is unusable in this process: it was forked from inside a running op",
                        call);
    return TD_OK;
}

td_status td_init(const td_config *cfg) {
    td_status st;
    if ((st = poisoned_check("td_init")) != TD_OK) return st;
    if ((st = td__busy_check("td_init")) != TD_OK) return st;
    uv_once(&g_once, once_init);
    td_config c = cfg ? *cfg : td_config_default();
    uv_mutex_lock(&life_mu);
    if (atomic_load(&td__g.state) != TD__STOPPED) {
        uv_mutex_unlock(&life_mu);
        return td__fail(TD_EINVAL, "td_init: tide is already running (call td_shutdown first, or call "
                                   "td_init before anything else)");
    }
    resume_saved_cfg = 0;
    st = start_locked(&c);
    uv_mutex_unlock(&life_mu);
    return st;
}

int td_is_running(void) { return atomic_load(&td__g.state) == TD__RUNNING; }
size_t td_inflight_bytes(void) { return atomic_load(&td__g.inflight); }
size_t td_max_inflight_bytes(void) {
    return td_is_running() ? td__g.max_inflight
                           : (td_config_default().max_inflight_bytes ? td_config_default().max_inflight_bytes
                                                                     : default_max_inflight());
}

/* ---- accounting ---- */
void td__account_push(td__opr *op) {
    op->seq = atomic_fetch_add_explicit(&td__g.seq, 1, memory_order_relaxed) + 1;
    td__opr *parent = td__tls_op;
    if (!parent) {
        uint64_t w = atomic_fetch_add(&td__g.epoch_word, 1);
        op->epoch = (uint32_t)(w >> 32);
    } else {
        uint32_t e = parent->epoch;
        op->epoch = e;
        uint64_t w = atomic_load(&td__g.epoch_word);
        for (;;) {
            if ((uint32_t)(w >> 32) != e) {
                atomic_fetch_add(&td__g.retired[e & 1], 1);
                break;
            }
            if (atomic_compare_exchange_weak(&td__g.epoch_word, &w, w + 1)) break;
        }
    }
    if (op->out_bytes && parent) atomic_fetch_add(&td__g.inflight, op->out_bytes);
}

/* k ops of epoch e have ended. */
static void account_sub(uint32_t e, uint32_t k) {
    uint64_t w = atomic_load(&td__g.epoch_word);
    for (;;) {
        if ((uint32_t)(w >> 32) != e) {
            if (atomic_fetch_sub(&td__g.retired[e & 1], (long long)k) == (long long)k) {
                uv_mutex_lock(&td__g.drain_mu);
                uv_cond_broadcast(&td__g.drain_cv);
                uv_mutex_unlock(&td__g.drain_mu);
            }
            return;
        }
        if (atomic_compare_exchange_weak(&td__g.epoch_word, &w, w - k)) return;
    }
}

/* Workers count the ops they end in a batch of one epoch and publish it in
 * one atomic step: before running an op of another epoch, every
 * ACCOUNT_BATCH ops, and before going idle.  So a count a worker holds back
 * always belongs to the epoch of the op it is running (which a wait on that
 * epoch waits for anyway), and nothing is held back while it idles: no wait
 * can hang on it, and the shared word moves between cores once per batch
 * instead of once per op. */
enum { ACCOUNT_BATCH = 64 };
static _Thread_local uint32_t batch_epoch, batch_n;

void td__account_flush(void) {
    if (batch_n) {
        uint32_t k = batch_n;
        batch_n = 0;
        account_sub(batch_epoch, k);
    }
}

void td__account_before_run(const td__opr *op) {
    if (batch_n && batch_epoch != op->epoch) td__account_flush();
}

void td__account_done(td__opr *op) {
    if (op->uncounted) return;
    size_t bytes = op->out_bytes;
    if (td__tls_worker && !td__tls_op) { /* the worker loop itself, not an op's fn */
        if (batch_n && batch_epoch != op->epoch) td__account_flush();
        batch_epoch = op->epoch;
        if (++batch_n >= ACCOUNT_BATCH) td__account_flush();
    } else {
        account_sub(op->epoch, 1);
    }
    if (bytes) td__bp_sub(bytes);
}

/* A user thread's op of `bytes`: waits while the total is above the limit,
 * then adds its bytes in the same atomic step as the check, so that however
 * many threads push at once the total stays within the limit plus one op.
 * Every byte counted belongs to a pending op, so a total above the limit
 * means some op is pending and will bring it down. */
/* Waits while the bytes in flight are above the limit.  Deferred ops
 * (park.c) are activated only when nothing else is pending: a deferred op
 * whose output the program still holds gives its bytes back when it ends
 * (see ndarray/array.c), and if it ran now, before the program released that
 * output to the op that fuses it, the output would be counted again then,
 * past the limit.  Every other pending op brings the total down by itself;
 * and a worker idle for td__park_idle_ns activates deferred ops anyway. */
static void bp_wait(void) {
    td__user_wait_begin();
    uv_mutex_lock(&td__g.bp_mu);
    atomic_fetch_add(&td__g.bp_waiters, 1);
    while (atomic_load(&td__g.inflight) > td__g.max_inflight) {
        uint64_t w = atomic_load(&td__g.epoch_word);
        long long pending = (long long)(w & EPOCH_COUNT_MASK) + atomic_load(&td__g.retired[0]) +
                            atomic_load(&td__g.retired[1]);
        if (atomic_load(&td__nparked) > 0 && pending <= atomic_load(&td__nparked)) {
            uv_mutex_unlock(&td__g.bp_mu);
            td__park_activate_all();
            uv_mutex_lock(&td__g.bp_mu);
            continue;
        }
        uv_cond_timedwait(&td__g.bp_cv, &td__g.bp_mu, 1000000ull);
    }
    atomic_fetch_sub(&td__g.bp_waiters, 1);
    uv_mutex_unlock(&td__g.bp_mu);
    td__user_wait_end();
}

void td__bp_reserve(size_t bytes) {
    size_t cur = atomic_load(&td__g.inflight);
    for (;;) {
        while (cur > td__g.max_inflight) {
            td__exec_kick_all();
            bp_wait();
            cur = atomic_load(&td__g.inflight);
        }
        if (atomic_compare_exchange_weak(&td__g.inflight, &cur, cur + bytes)) return;
    }
}

void td__bp_unreserve(size_t bytes) { atomic_fetch_sub(&td__g.inflight, bytes); }

void td__bp_add(size_t bytes) { atomic_fetch_add(&td__g.inflight, bytes); }

void td__bp_sub(size_t bytes) {
    size_t now = atomic_fetch_sub(&td__g.inflight, bytes) - bytes;
    if (atomic_load(&td__g.bp_waiters) > 0 && now <= td__g.max_inflight) {
        uv_mutex_lock(&td__g.bp_mu);
        uv_cond_broadcast(&td__g.bp_cv);
        uv_mutex_unlock(&td__g.bp_mu);
    }
}

void td__bp_admit(void) {
    if (td__tls_op || td__g.naive) return;
    if (TD__LIKELY(atomic_load_explicit(&td__g.inflight, memory_order_relaxed) <= td__g.max_inflight)) return;
    td__exec_kick_all();
    bp_wait();
}

static int slot_is_zero(const void *slot) { return atomic_load((atomic_llong *)slot) == 0; }

/* Closes the current epoch and waits until its ops (and theirs) are done.
 * Returns the closed epoch; *count gets how many ops it held when closed. */
static uint32_t close_and_drain(uint64_t *count) {
    if (td__g.naive) td__naive_barrier(); /* ops not counted in the epochs */
    uv_mutex_lock(&wait_mu);
    uint64_t w = atomic_load(&td__g.epoch_word);
    uint64_t nw;
    do {
        nw = (uint64_t)((uint32_t)(w >> 32) + 1u) << 32;
    } while (!atomic_compare_exchange_weak(&td__g.epoch_word, &w, nw));
    uint32_t e = (uint32_t)(w >> 32);
    long long c = (long long)(w & EPOCH_COUNT_MASK);
    atomic_llong *slot = &td__g.retired[e & 1];
    long long left = atomic_fetch_add(slot, c) + c;
    if (count) *count = (uint64_t)c;
    if (left != 0) {
        td__park_activate_all(); /* deferred ops are pending ops too */
        td__user_wait_begin();
        uint64_t t0 = uv_hrtime();
        td__spin_until(slot_is_zero, slot, td__g.wait_spin_ns, td__g.wait_yield_ns);
        int reported = 0;
        uv_mutex_lock(&td__g.drain_mu);
        while (atomic_load(slot) != 0) {
            if (td__g.stall_seconds > 0) {
                uv_cond_timedwait(&td__g.drain_cv, &td__g.drain_mu, 1000000000ull);
                if (!reported && atomic_load(slot) != 0 &&
                    (double)(uv_hrtime() - t0) / 1e9 > td__g.stall_seconds) {
                    reported = 1;
                    uv_mutex_unlock(&td__g.drain_mu);
                    fprintf(stderr, "tide: td_wait_all has waited over %.0f s (TIDE_STALL_SECONDS)\n",
                            td__g.stall_seconds);
                    td_stall_report(stderr);
                    uv_mutex_lock(&td__g.drain_mu);
                }
            } else {
                uv_cond_wait(&td__g.drain_cv, &td__g.drain_mu);
            }
        }
        uv_mutex_unlock(&td__g.drain_mu);
        td__user_wait_end();
    }
    uv_mutex_unlock(&wait_mu);
    return e;
}

td_status td_wait_all(void) {
    td_status st;
    if ((st = poisoned_check("td_wait_all")) != TD_OK) return st;
    if ((st = td__busy_check("td_wait_all")) != TD_OK) return st;
    if ((st = td__ensure()) != TD_OK) return st;
    uint32_t e = close_and_drain(NULL);
    td__err *first = td__err_take_until(e, 0);
    if (!first) return TD_OK;
    st = td__err_report(first);
    td__err_release(first);
    return st;
}

/* Drains until nothing is pending (ops pushed while draining included). */
static void drain_all(void) {
    uint64_t n;
    do close_and_drain(&n);
    while (n != 0 || (atomic_load(&td__g.epoch_word) & EPOCH_COUNT_MASK) != 0);
}

void td__drain(void) { (void)close_and_drain(NULL); }

td_status td_shutdown(void) {
    td_status st;
    if ((st = poisoned_check("td_shutdown")) != TD_OK) return st;
    if ((st = td__busy_check("td_shutdown")) != TD_OK) return st;
    uv_once(&g_once, once_init);
    uv_mutex_lock(&life_mu);
    if (atomic_load(&td__g.state) != TD__RUNNING) {
        uv_mutex_unlock(&life_mu);
        return TD_OK;
    }
    atomic_store(&td__g.state, TD__STOPPING);
    drain_all();
    td_status pst = atomic_load(&td__prof_on) ? td__profiler_stop_internal(0) : TD_OK;
    stop_executors();
    td__naive_reset();
    atomic_store(&td__g.state, TD__STOPPED);
    resume_saved_cfg = 0;
    uv_mutex_unlock(&life_mu);
    td__err *first = td__err_take_until(0, 1);
    if (!first) return pst;
    st = td__err_report(first);
    td__err_release(first);
    return st;
}

static void at_exit(void) {
    /* Leaving without td_shutdown: finish the work and join the workers, so
     * no thread runs on while the process tears down.  Inside an op (exit
     * called from an op) that would deadlock: leave things as they are. */
    if (td__tls_op || atomic_load(&td__g.state) != TD__RUNNING) return;
    (void)td_shutdown();
}

/* ---- fork ---- */
static void fork_prepare(void) {
    if (td__tls_op) {
        fork_in_op = 1;
        return;
    }
    uv_mutex_lock(&life_mu);
    if (atomic_load(&td__g.state) == TD__RUNNING && !td__g.naive) {
        atomic_store(&td__g.state, TD__STOPPING);
        drain_all();
        stop_executors();
        atomic_store(&td__g.state, TD__STOPPED);
        fork_stopped = 1;
    }
}

static void fork_parent(void) {
    if (fork_in_op) {
        fork_in_op = 0;
        return;
    }
    if (fork_stopped) {
        fork_stopped = 0;
        td_config c = td__g.cfg;
        if (start_locked(&c) != TD_OK) resume_saved_cfg = 1; /* try again on first use */
    }
    uv_mutex_unlock(&life_mu);
}

static void fork_child(void) {
    if (fork_in_op) {
        fork_in_op = 0;
        atomic_store(&td__g.state, TD__POISONED);
        td__tls_op = NULL;
        return;
    }
    if (fork_stopped) {
        fork_stopped = 0;
        resume_saved_cfg = 1;
    }
    /* The child has one thread; the lock was taken by this same thread in the
     * parent, but a fresh lock is the portable way to end up unlocked. */
    uv_mutex_init(&life_mu);
}
