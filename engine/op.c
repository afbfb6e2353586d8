/* Ops: push, execution with the error rules, completion.
 *
 * An op record (td__opr) is taken from a pool of slabs that are never given
 * back to the system while the process lives: the stall report may read the
 * name of an op a worker is running without racing its reuse into a fault,
 * and a training loop in steady state allocates nothing here.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/internal.h"

_Thread_local td__opr *td__tls_op;

/* ---- the op pool: an object cache (core/objcache.c) ---- */
static td__objcache op_cache = TD__OBJCACHE_INIT(TD__CACHE_OP, td__opr);

/* The record after this one is fetched for writing now, while this push
 * goes on: records are freed by the workers, so their lines sit in another
 * core's cache, and fetching them on first use stalled every push. */
static td__opr *op_alloc(void) {
    td__opr *op = td__cache_alloc(&op_cache);
    const char *next = td__cache_peek(&op_cache);
    if (next)
        for (size_t off = 0; off < offsetof(td__opr, park); off += TD__CACHELINE) td__prefetch_w(next + off);
    return op;
}

/* A free record has no errmsg and no done_ev (see td__opr): they are
 * cleared here only when set, so the line that holds them stays clean. */
void td__op_recycle(td__opr *op) {
    if (op->acc != op->inline_acc) free(op->acc);
    op->acc = NULL;
    if (TD__UNLIKELY(op->errmsg != NULL)) {
        free(op->errmsg);
        op->errmsg = NULL;
    }
    if (TD__UNLIKELY(op->done_ev != NULL)) op->done_ev = NULL;
    td__cache_free(&op_cache, op);
}

void td__op_cache_flush(void) { td__cache_flush_thread(&op_cache); }

/* ---- op names ----
 * td_push keeps a copy of the caller's name (the caller may reuse its
 * buffer).  The copy is interned: one immortal copy per distinct name (up
 * to INTERN_MAX of them; beyond, names go into the record's name_buf), found
 * through a small per-thread cache, so a push writes a pointer instead of
 * the name, and the profiler and error records keep that pointer. */
enum { INTERN_MAX = 4096, INTERN_SLOTS = 8192, ICACHE = 64 };
typedef struct {
    uint64_t h; /* 0: empty */
    const char *s;
} intern_slot;
static intern_slot intern_tab[INTERN_SLOTS];
static int intern_n;
static td__spin intern_lock;
static _Thread_local intern_slot icache[ICACHE];

static int same_name(const char *interned, const char *name, size_t len) {
    return strncmp(interned, name, len) == 0 && interned[len] == 0;
}

/* The interned copy of name's first TD__NAME_MAX - 1 characters, or NULL. */
static const char *name_intern(const char *name) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    size_t len = 0;
    while (len < TD__NAME_MAX - 1 && name[len]) {
        h = (h ^ (unsigned char)name[len]) * 1099511628211ull;
        len++;
    }
    h |= 1;
    intern_slot *c = &icache[(h >> 8) & (ICACHE - 1)];
    if (TD__LIKELY(c->h == h) && same_name(c->s, name, len)) return c->s;
    const char *s = NULL;
    td__spin_lock(&intern_lock);
    for (size_t i = h & (INTERN_SLOTS - 1);; i = (i + 1) & (INTERN_SLOTS - 1)) {
        intern_slot *t = &intern_tab[i];
        if (!t->h) {
            char *cp = intern_n < INTERN_MAX ? malloc(len + 1) : NULL;
            if (cp) {
                memcpy(cp, name, len);
                cp[len] = 0;
                t->h = h;
                t->s = cp;
                intern_n++;
                s = cp;
            }
            break;
        }
        if (t->h == h && same_name(t->s, name, len)) {
            s = t->s;
            break;
        }
    }
    td__spin_unlock(&intern_lock);
    if (s) {
        c->h = h;
        c->s = s;
    }
    return s;
}

/* ---- access lists ---- */
static int acc_cmp(const void *a, const void *b) {
    uintptr_t x = (uintptr_t)((const td__access *)a)->var, y = (uintptr_t)((const td__access *)b)->var;
    return x < y ? -1 : x > y;
}

/* Sorts by var address and merges duplicates (a var read and written counts
 * as written).  Returns the number of distinct vars. */
static int acc_normalise(td__access *acc, int n) {
    if (n <= 16) {
        for (int i = 1; i < n; i++) {
            td__access t = acc[i];
            int j = i - 1;
            while (j >= 0 && (uintptr_t)acc[j].var > (uintptr_t)t.var) {
                acc[j + 1] = acc[j];
                j--;
            }
            acc[j + 1] = t;
        }
    } else {
        qsort(acc, (size_t)n, sizeof *acc, acc_cmp);
    }
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m > 0 && acc[m - 1].var == acc[i].var) acc[m - 1].mode |= acc[i].mode;
        else acc[m++] = acc[i];
    }
    return m;
}

static td_status check_vars(const char *name, const char *which, td_var *const *vs, size_t n) {
    if (n && !vs) return td__fail(TD_EINVAL, "td_push(%s): n_%s is %zu but %s is NULL", name, which, n, which);
    for (size_t i = 0; i < n; i++) {
        if (!vs[i]) return td__fail(TD_EINVAL, "td_push(%s): %s[%zu] is NULL", name, which, i);
        if (vs[i]->magic != TD__VAR_MAGIC)
            return td__fail(TD_EINVAL, "td_push(%s): %s[%zu] is not a live var (freed?)", name, which, i);
    }
    return TD_OK;
}

enum { TD__ALL_FLAGS = TD_OP_ASYNC | TD_OP_PRIORITIZED | TD_OP_COPY | TD_OP_OVERWRITE | TD__OP_STATIC_NAME };
enum { TD__MAX_VARS_PER_OP = 1 << 20 };

td_status td_push(const td_op *o) { return td__push_ex(o, NULL); }

td_status td__push_ex(const td_op *o, td__push_x *x) {
    if (!o) return td__fail(TD_EINVAL, "td_push: op is NULL");
    const char *name = o->name ? o->name : "op";
    if (!o->fn) return td__fail(TD_EINVAL, "td_push(%s): fn is NULL", name);
    if (o->flags & ~TD__ALL_FLAGS)
        return td__fail(TD_EINVAL, "td_push(%s): unknown flags 0x%x (use TD_OP_*)", name,
                        (unsigned)(o->flags & ~TD__ALL_FLAGS));
    if (o->n_reads > TD__MAX_VARS_PER_OP || o->n_writes > TD__MAX_VARS_PER_OP)
        return td__fail(TD_EINVAL, "td_push(%s): too many vars (%zu reads, %zu writes)", name, o->n_reads,
                        o->n_writes);
    /* The vars' lines are fetched for writing first: the push locks them,
     * and reading them for the checks below would fetch them shared, then
     * again to write (they are usually in the cache of the worker that
     * released them last). */
    if (o->n_writes <= TD__INLINE_ACC && o->n_reads <= TD__INLINE_ACC) { /* (not yet checked) */
        for (size_t i = 0; o->writes && i < o->n_writes; i++)
            if (o->writes[i]) td__prefetch_w(o->writes[i]);
        for (size_t i = 0; o->reads && i < o->n_reads; i++)
            if (o->reads[i]) td__prefetch_w(o->reads[i]);
    }
    td_status st;
    if ((st = check_vars(name, "reads", o->reads, o->n_reads)) != TD_OK) return st;
    if ((st = check_vars(name, "writes", o->writes, o->n_writes)) != TD_OK) return st;

    int nested = td__tls_op != NULL;
    if (!nested && (st = td__ensure()) != TD_OK) return st;
    td__device *dev = td__device_get("td_push", o->device);
    if (!dev) return TD_EDEVICE; /* the lookup wrote the message */

    td__opr *op = op_alloc();
    if (!op) return td__fail(TD_ENOMEM, "td_push(%s): out of memory for the op record", name);
    int n = (int)(o->n_reads + o->n_writes);
    if (TD__LIKELY(n <= TD__INLINE_ACC)) {
        /* Sorted on the stack as (var, mode) pairs, then stored field by
         * field: the record's lines were last written by the worker that
         * ended its previous use, and reading back what was just stored
         * there (or copying whole structs built with overlapping stores)
         * waits for them to arrive. */
        td_var *lv[TD__INLINE_ACC];
        int lm[TD__INLINE_ACC];
        int m = 0;
        for (size_t i = 0; i < o->n_reads + o->n_writes; i++) {
            td_var *v = i < o->n_reads ? o->reads[i] : o->writes[i - o->n_reads];
            int mode = i < o->n_reads ? TD__ACC_READ : TD__ACC_WRITE;
            int j = m; /* insertion by address; a var seen before merges its mode */
            while (j > 0 && (uintptr_t)lv[j - 1] > (uintptr_t)v) j--;
            if (j > 0 && lv[j - 1] == v) {
                lm[j - 1] |= mode;
                continue;
            }
            for (int k = m; k > j; k--) {
                lv[k] = lv[k - 1];
                lm[k] = lm[k - 1];
            }
            lv[j] = v;
            lm[j] = mode;
            m++;
        }
        op->acc = op->inline_acc;
        for (int i = 0; i < m; i++) {
            op->inline_acc[i].var = lv[i];
            op->inline_acc[i].op = op;
            op->inline_acc[i].mode = lm[i];
        }
        op->n_acc = m;
    } else {
        op->acc = malloc((size_t)n * sizeof *op->acc);
        if (!op->acc) {
            op->acc = op->inline_acc;
            td__op_recycle(op);
            return td__fail(TD_ENOMEM, "td_push(%s): out of memory for %d var accesses", name, n);
        }
        for (size_t i = 0; i < o->n_reads; i++)
            op->acc[i] = (td__access){.var = o->reads[i], .op = op, .mode = TD__ACC_READ};
        for (size_t i = 0; i < o->n_writes; i++)
            op->acc[o->n_reads + i] = (td__access){.var = o->writes[i], .op = op, .mode = TD__ACC_WRITE};
        op->n_acc = acc_normalise(op->acc, n);
    }
    op->kind = TD__OPK_NORMAL;
    op->fn = o->fn;
    op->arg = o->arg;
    op->arg_free = o->arg_free;
    op->priority = o->priority;
    op->flags = o->flags | ((o->flags & TD_OP_PRIORITIZED) || o->priority ? TD__OP_RANKED : 0);
    /* The naive engine ends every op before td_push returns: nothing is ever
     * in flight, so it skips the back-pressure accounting. */
    op->out_bytes = td__g.naive ? 0 : o->out_bytes;
    op->ex.device = o->device;
    op->ex.worker = -1;
    op->parked = 0;
    op->prof = atomic_load_explicit(&td__prof_on, memory_order_acquire) ? TD__PROF_ON : TD__PROF_OFF;
    if (o->flags & TD__OP_STATIC_NAME) {
        op->name = name;
    } else if (!(op->name = name_intern(name))) {
        td__strlcpy(op->name_buf, name, sizeof op->name_buf);
        op->name = op->name_buf;
    }

    op->uncounted = 0;
    if (td__g.naive && !nested && !op->prof) {
        /* A user thread's op on the naive engine runs before td_push returns,
         * under the naive engine's lock: it stays out of the epoch counts
         * (td_wait_all waits for that lock instead), and takes its push
         * number under the lock, in the order ops run (naive.c). */
        op->uncounted = 1;
        while (TD__UNLIKELY(atomic_load(&td__g.state) != TD__RUNNING)) {
            if ((st = td__ensure_slow()) != TD_OK) {
                td__op_recycle(op);
                return st;
            }
        }
        op->epoch = (uint32_t)(atomic_load_explicit(&td__g.epoch_word, memory_order_relaxed) >> 32);
        op->exec = NULL;
        return td__naive_submit(op);
    }
    if (op->out_bytes && !nested) td__bp_reserve(op->out_bytes);
    /* The push time, read just before the locked steps of numbering the op:
     * the clock read's micro-ops then run while those wait for earlier
     * stores (measured with the workers held: a recorded push cost 24 ns
     * more than a plain one with the read at the top of td_push, 15 ns with
     * it here, 30 ns with it after them). */
    uint64_t t_push = TD__UNLIKELY(op->prof) ? td__prof_ticks() : 0;
    for (;;) {
        td__account_push(op);
        if (nested || TD__LIKELY(atomic_load(&td__g.state) == TD__RUNNING)) break;
        /* td_shutdown began after we checked: undo, wait for it, start again. */
        size_t b = op->out_bytes;
        op->out_bytes = 0; /* undo the count only; the reservation stays */
        td__account_done(op);
        op->out_bytes = b;
        if ((st = td__ensure_slow()) != TD_OK) {
            if (b) td__bp_unreserve(b);
            td__op_recycle(op);
            return st;
        }
    }
    if (TD__UNLIKELY(op->prof)) td__prof_push(op, t_push);
    op->exec = td__g.naive ? NULL : td__g.cpu[o->device.id];
    if (!op->exec) return td__naive_submit(op);

    atomic_init(&op->wait, op->n_acc + 1);
    if (TD__UNLIKELY(x != NULL) && x->defer) td__park_attach(x->defer, op);
    int granted = td__var_append_all(op, x);
    if (TD__UNLIKELY(granted < 0)) { /* the guard failed: undo the push */
        x->guard_failed = 1;
        if (op->out_bytes && !nested) td__bp_unreserve(op->out_bytes);
        op->out_bytes = 0;
        td__account_done(op);
        td__op_recycle(op);
        return TD_OK;
    }
    /* Every access granted: nothing was queued, so no other thread can
     * count this op down, and it is ready without an atomic step. */
    if (granted == op->n_acc || atomic_fetch_sub_explicit(&op->wait, granted + 1, memory_order_acq_rel) == granted + 1) {
        /* Ready at push: its ready time is its push time (one clock read). */
        if (TD__UNLIKELY(op->prof) && !op->parked) op->prof = TD__PROF_READY_AT_PUSH;
        td__op_ready(op);
    }
    return TD_OK;
}

/* ---- running ---- */
static void set_mark(td_var *v, td__err *e) {
    if (e) td__err_retain(e);
    td__spin_lock(&v->lock); /* the stall report reads marks under the lock */
    td__err *old = v->err;
    v->err = e;
    td__spin_unlock(&v->lock);
    if (old) td__err_release(old);
}

static void mark_writes(td__opr *op, td__err *e) {
    for (int i = 0; i < op->n_acc; i++)
        if (op->acc[i].mode & TD__ACC_WRITE) set_mark(op->acc[i].var, e);
}

/* arg_free, release of the vars, accounting, recycling: every op ends here.
 * status is the op's status, or -1 when it was skipped. */
static void op_end(td__opr *op, int status) {
    if (TD__UNLIKELY(op->prof)) td__prof_record(op, status, op->exec ? td__exec_depth(op->exec) : 0);
    if (op->arg_free) op->arg_free(op->arg);
    td__var_release_all(op);
    if (TD__UNLIKELY(op->parked) && op->park) td__park_op_end(op);
    td__event *ev = op->done_ev;
    td__account_done(op);
    td__op_recycle(op);
    if (ev) td__event_signal(ev);
}

void td__op_finish(td__opr *op, td_status st) {
    if (st != TD_OK) {
        if ((unsigned)st >= (unsigned)TD_STATUS_COUNT_) st = TD_EFAILED;
        td__err *e = td__err_new(op, st, op->errmsg);
        mark_writes(op, e);
        td__err_publish(e);
        td__err_release(e);
    } else if (op->flags & TD_OP_OVERWRITE) {
        for (int i = 0; i < op->n_acc; i++) {
            td__access *a = &op->acc[i];
            if ((a->mode & TD__ACC_WRITE) && a->var->err) set_mark(a->var, NULL);
        }
    }
    op_end(op, st);
}

void td__op_execute(td__opr *op, int w) {
    op->ex.worker = w;
    /* The skip rule: an op that reads a marked var does not run and passes
     * the mark on.  With several marked inputs the earliest failure wins, so
     * the outcome does not depend on var addresses. */
    td__err *src = NULL;
    for (int i = 0; i < op->n_acc; i++) {
        td__access *a = &op->acc[i];
        td__err *e = (a->mode & TD__ACC_READ) ? a->var->err : NULL;
        if (e && (!src || e->seq < src->seq)) src = e;
    }
    if (TD__UNLIKELY(src != NULL)) {
        if (TD__UNLIKELY(op->prof)) op->t_start = td__prof_ticks();
        mark_writes(op, src);
        op_end(op, -1);
        return;
    }
    if (TD__UNLIKELY(op->prof)) op->t_start = td__prof_ticks();
    td__opr *outer = td__tls_op;
    td__tls_op = op;
    int async = op->flags & TD_OP_ASYNC;
    td_status st = op->fn(op->arg, &op->ex);
    td__tls_op = outer;
    if (TD__UNLIKELY(atomic_load_explicit(&td__g.state, memory_order_relaxed) == TD__POISONED) &&
        td__tls_worker) {
        /* This is a child forked from inside the op, returning into a worker
         * loop whose pool did not survive the fork: nothing sane is left. */
        static const char msg[] =
            "tide: an op forked and returned in the child; the child's runtime is unusable, exiting\n";
        ssize_t r = write(2, msg, sizeof msg - 1);
        (void)r;
        _exit(1);
    }
    /* An async op that returns a failure has not started; otherwise its
     * work ends with td_op_complete (possibly already, from another thread:
     * op must not be touched here then). */
    if (!async || st != TD_OK) td__op_finish(op, st);
}

void td__op_ready(td__opr *op) {
    if (TD__UNLIKELY(op->parked) && op->park && td__park_on_ready(op)) return; /* parked until activated */
    td__op_dispatch(op);
}

void td__op_dispatch(td__opr *op) {
    if (TD__UNLIKELY(op->prof == TD__PROF_ON)) {
        op->t_ready = td__prof_ticks();
        op->prof = TD__PROF_READY_LATER;
    }
    if (op->kind == TD__OPK_WAITER) td__event_signal(op->done_ev);
    else if (op->exec) td__exec_submit(op->exec, op);
    else td__op_execute(op, 0); /* naive engine: whoever granted it runs it */
}

/* ---- what a running op may ask ---- */
void td_op_complete(const td_exec *ex, td_status st) {
    if (!ex) {
        td__fail(TD_EINVAL, "td_op_complete: ex is NULL");
        return;
    }
    td__opr *op = td__exec_op(ex);
    if (!(op->flags & TD_OP_ASYNC)) {
        td__fail(TD_EINVAL, "td_op_complete(%s): the op is not TD_OP_ASYNC; return its status instead", op->name);
        return;
    }
    td__op_finish(op, st);
}

td_device td_exec_device(const td_exec *ex) { return ex ? ex->device : (td_device){.kind = -1, .id = -1}; }
int td_exec_worker(const td_exec *ex) { return ex ? ex->worker : -1; }

void td_exec_set_error(const td_exec *ex, const char *fmt, ...) {
    if (!ex || !fmt) return;
    va_list ap;
    va_start(ap, fmt);
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char *m = strdup(buf);
    if (!m) return; /* the failure is still recorded, with the status's text */
    td__opr *op = td__exec_op(ex);
    free(op->errmsg);
    op->errmsg = m;
}
