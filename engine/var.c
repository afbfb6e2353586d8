/* Vars and their queues of pending accesses (MXNet's versioned-var scheme).
 *
 * Each var keeps the number of granted reads and whether a write is granted,
 * and a FIFO of accesses not yet granted.  A read is granted when no write is
 * granted and nothing waits before it; a write when nothing at all is
 * granted or waiting before it.  Releasing grants from the head: either one
 * write, or every read up to the next write.  An op becomes ready when all
 * of its accesses are granted (its atomic `wait` count reaches zero).
 *
 * A push locks all of its vars at once, in ascending address order, before
 * appending: two threads pushing ops over the same two vars could otherwise
 * interleave their appends (A first on x, B first on y) and wait for each
 * other for ever.  Releases lock one var at a time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

static uv_once_t reg_once = UV_ONCE_INIT;
static uv_mutex_t reg_mu;
static td_var *reg_head;
static uint64_t reg_next_id;

static void reg_init(void) {
    if (uv_mutex_init(&reg_mu) != 0) TD__PANIC("cannot create the var registry mutex");
}

td_var *td__var_create(void (*dtor)(void *), void *dtor_arg) {
    /* Each var on lines of its own: a push and a release write it, and a
     * neighbour's var sharing a line would pass it between cores. */
    size_t sz = (sizeof(td_var) + 2 * TD__CACHELINE - 1) & ~(size_t)(2 * TD__CACHELINE - 1);
    td_var *v = aligned_alloc(2 * TD__CACHELINE, sz);
    if (v) memset(v, 0, sizeof *v);
    if (!v) {
        td__fail(TD_ENOMEM, "td_var_new: out of memory");
        return NULL;
    }
    v->magic = TD__VAR_MAGIC;
    v->dtor = dtor;
    v->dtor_arg = dtor_arg;
    uv_once(&reg_once, reg_init);
    uv_mutex_lock(&reg_mu);
    v->id = ++reg_next_id;
    v->reg_next = reg_head;
    if (reg_head) reg_head->reg_prev = v;
    reg_head = v;
    uv_mutex_unlock(&reg_mu);
    return v;
}

static void var_destroy(td_var *v);

td_var *td__var_create_recyclable(void (*recycle)(void *), void *arg) {
    td_var *v = td__var_create(recycle, arg);
    if (v) v->recycle = 1;
    return v;
}

void td__var_destroy_now(td_var *v) {
    v->recycle = 0;
    v->dtor = NULL;
    var_destroy(v);
}

/* The var is freed and idle: only the stall report can still look at it
 * (under the lock), so reset it under the lock before its owner takes it
 * back. */
static void var_recycle(td_var *v) {
    td__spin_lock(&v->lock);
    td__err *e = v->err;
    v->err = NULL;
    v->freed = 0;
    td__spin_unlock(&v->lock);
    if (e) td__err_release(e);
    v->dtor(v->dtor_arg);
}

static void var_destroy(td_var *v) {
    if (v->recycle) {
        var_recycle(v);
        return;
    }
    uv_mutex_lock(&reg_mu);
    if (v->reg_prev) v->reg_prev->reg_next = v->reg_next;
    else reg_head = v->reg_next;
    if (v->reg_next) v->reg_next->reg_prev = v->reg_prev;
    uv_mutex_unlock(&reg_mu);
    if (v->err) td__err_release(v->err);
    v->magic = 0;
    if (v->dtor) v->dtor(v->dtor_arg);
    free(v);
}

static inline int var_idle(const td_var *v) { return !v->readers && !v->writer && !v->head; }

td_var *td_var_new(void) {
    if (td__ensure() != TD_OK) return NULL;
    return td__var_create(NULL, NULL);
}

void td_var_free(td_var *v) {
    if (!v) return;
    if (atomic_load_explicit(&td__g.state, memory_order_relaxed) == TD__POISONED) return;
    if (v->magic != TD__VAR_MAGIC) {
        td__fail(TD_EINVAL, "td_var_free: not a live var (freed twice?)");
        return;
    }
    td__spin_lock(&v->lock);
    v->freed = 1;
    int now = var_idle(v);
    td__spin_unlock(&v->lock);
    if (now) var_destroy(v);
}

/* The deferred ops an access to v in `mode` must activate (park.c): the
 * deferred writer of v, and for a write every deferred reader (found by
 * claiming every deferred op: rare).  Under v's lock. */
static td__opr *conflicts(td_var *v, int mode, const td__opr *op, td__opr *ready) {
    if (v->defer_w && v->defer_w != op->park) {
        td__opr *r = td__park_claim(v->defer_w);
        if (r) {
            r->qnext = ready;
            ready = r;
        }
    }
    if ((mode & TD__ACC_WRITE) && v->defer_readers > 0) {
        td__opr *r = td__park_claim_all();
        while (r) {
            td__opr *next = r->qnext;
            r->qnext = ready;
            ready = r;
            r = next;
        }
    }
    return ready;
}

int td__var_append_all(td__opr *op, td__push_x *x) {
    int granted = 0;
    int n = op->n_acc;
    td__access *acc = op->acc;
    /* The guard's var is locked with the op's own, in the same address
     * order, unless it is one of them. */
    td_var *gv = x && x->guard ? x->guard_var : NULL;
    for (int i = 0; i < n && gv; i++)
        if (acc[i].var == gv) gv = NULL;
    int gi = n; /* gv is locked just before acc[gi] */
    for (int i = 0; gv && i < n; i++)
        if ((uintptr_t)acc[i].var > (uintptr_t)gv) {
            gi = i;
            break;
        }
    for (int i = 0; i < n; i++) {
        if (gv && i == gi) td__spin_lock(&gv->lock);
        td__spin_lock(&acc[i].var->lock);
    }
    if (gv && gi == n) td__spin_lock(&gv->lock);
    if (x && x->guard && !td__park_deferred(x->guard)) {
        if (gv) td__spin_unlock(&gv->lock);
        for (int i = n - 1; i >= 0; i--) td__spin_unlock(&acc[i].var->lock);
        return -1;
    }
    td__opr *ready = NULL;
    for (int i = 0; i < n; i++) {
        td__access *a = &acc[i];
        td_var *v = a->var;
        if (TD__UNLIKELY(v->defer_w || v->defer_readers)) ready = conflicts(v, a->mode, op, ready);
        if (TD__UNLIKELY(op->parked)) {
            if (a->mode & TD__ACC_WRITE) v->defer_w = op->park;
            else v->defer_readers++;
        }
        if (!v->head) {
            if (a->mode & TD__ACC_WRITE) {
                if (!v->readers && !v->writer) {
                    v->writer = 1;
                    granted++;
                    continue;
                }
            } else if (!v->writer) {
                v->readers++;
                granted++;
                continue;
            }
        }
        a->next = NULL;
        if (v->tail) v->tail->next = a;
        else v->head = a;
        v->tail = a;
    }
    if (gv) td__spin_unlock(&gv->lock);
    for (int i = n - 1; i >= 0; i--) td__spin_unlock(&acc[i].var->lock);
    if (TD__UNLIKELY(ready != NULL)) td__park_dispatch(ready);
    return granted;
}

/* Releases a under its var's lock and grants what can now run; the newly
 * granted accesses are chained onto *granted (through their next links). */
static int release_locked(td__access *a, td__access **granted) {
    td_var *v = a->var;
    if (a->mode & TD__ACC_WRITE) v->writer = 0;
    else v->readers--;
    if (TD__UNLIKELY(a->op->parked) && a->op->park) {
        if (!(a->mode & TD__ACC_WRITE)) v->defer_readers--;
        else if (v->defer_w == a->op->park) v->defer_w = NULL;
    }
    td__access *h;
    while ((h = v->head) != NULL) {
        if (h->mode & TD__ACC_WRITE) {
            if (v->readers || v->writer) break;
            v->writer = 1;
        } else {
            if (v->writer) break;
            v->readers++;
        }
        v->head = h->next;
        if (!v->head) v->tail = NULL;
        h->next = *granted;
        *granted = h;
        if (h->mode & TD__ACC_WRITE) break;
    }
    /* The next waiter is likely granted by the next release of v, soon
     * (the op just granted here runs next on this worker and releases v):
     * fetch its access line and the line before it (its record's first line
     * when it is the record's first access) meanwhile.  Records of a long
     * queue were written by the pushing thread, often long ago, and are
     * reached only through these links, which no prefetcher follows. */
    if ((h = v->head) != NULL) {
        __builtin_prefetch(h, 1);
        __builtin_prefetch((char *)h - TD__CACHELINE, 1);
    }
    return v->freed && var_idle(v);
}

/* Hands the granted accesses to their ops; `by` is the op whose release
 * granted them (for the profiler's flow arrows). */
static void grant_recorded(const td__opr *by, td__opr *op);

static void grant_all(const td__opr *by, td__access *g) {
    while (g) {
        td__access *next = g->next;
        td__opr *op = g->op;
        if (TD__UNLIKELY(by->prof) && op->kind == TD__OPK_NORMAL) grant_recorded(by, op);
        else if (atomic_fetch_sub_explicit(&op->wait, 1, memory_order_acq_rel) == 1) td__op_ready(op);
        g = next;
    }
}

/* A grant by a recorded op (whose end record is written: by->t_ready holds
 * its end time).  The grant that makes a recorded op ready puts the flow
 * arrow and the ready time (by's end) in that op's record, for its own end
 * record: no flow record and no clock read.  Other grants write a flow
 * record. */
static void grant_recorded(const td__opr *by, td__opr *op) {
    uint64_t seq = op->seq; /* after the count-down, op may run and end */
    uint8_t prof = op->prof;
    if (atomic_fetch_sub_explicit(&op->wait, 1, memory_order_acq_rel) != 1) {
        td__prof_flow(by->seq, seq);
        return;
    }
    if (prof == TD__PROF_ON && !op->parked) {
        op->t_ready = by->t_ready;
        op->prof_by = by->seq;
        op->prof = TD__PROF_READY_BY;
    } else {
        td__prof_flow(by->seq, seq);
    }
    td__op_ready(op);
}

void td__var_release(td__access *a) {
    td__access *granted = NULL;
    td_var *v = a->var;
    td__spin_lock(&v->lock);
    int destroy = release_locked(a, &granted);
    td__spin_unlock(&v->lock);
    if (destroy) var_destroy(v);
    grant_all(a->op, granted);
}

void td__var_release_all(td__opr *op) {
    /* Grants are collected first and handed out after every var is
     * released, so an op that becomes ready never sees this op's vars held. */
    td__access *granted = NULL;
    int n = op->n_acc;
    for (int i = 0; i < n; i++) {
        td__access *a = &op->acc[i];
        td_var *v = a->var;
        td__spin_lock(&v->lock);
        int destroy = release_locked(a, &granted);
        td__spin_unlock(&v->lock);
        if (destroy) var_destroy(v);
    }
    grant_all(op, granted);
}

void td__var_report(FILE *out) {
    uv_once(&reg_once, reg_init);
    uv_mutex_lock(&reg_mu);
    int nvars = 0, shown = 0;
    for (td_var *v = reg_head; v; v = v->reg_next) {
        nvars++;
        td__spin_lock(&v->lock);
        if (v->head || v->writer || v->readers) {
            if (shown++ < 200) {
                fprintf(out, "  var #%llu: %s", (unsigned long long)v->id,
                        v->writer ? "held by a running write"
                                  : (v->readers ? "held by running read(s)" : "free"));
                if (v->readers) fprintf(out, " (%d)", v->readers);
                if (v->err) fprintf(out, "; marked failed by '%s'", v->err->text);
                fputc('\n', out);
                int k = 0;
                for (td__access *a = v->head; a; a = a->next) {
                    if (k++ == 20) {
                        fputs("      ...\n", out);
                        break;
                    }
                    fprintf(out, "      waiting: %s '%s' (push #%llu, %s)\n",
                            a->op->kind == TD__OPK_WAITER ? "wait" : "op", a->op->name,
                            (unsigned long long)a->op->seq,
                            (a->mode & TD__ACC_WRITE) ? ((a->mode & TD__ACC_READ) ? "read-write" : "write")
                                                      : "read");
                }
            }
        }
        td__spin_unlock(&v->lock);
    }
    uv_mutex_unlock(&reg_mu);
    fprintf(out, "  %d live var(s), %d busy%s\n", nvars, shown, shown > 200 ? " (first 200 shown)" : "");
}
