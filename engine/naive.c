/* The naive engine: every op runs at push time on the caller's thread.
 *
 * It is the reference the threaded engine is tested against, and a way to
 * debug a program one op at a time (TIDE_ENGINE=naive).  Ops pushed from
 * inside a running op are queued on this thread and run, in push order, when
 * the outer op has returned, so program order holds there too.  Ops from
 * several user threads are serialised by one lock.  Vars, marks, waits and
 * accounting are the threaded engine's own, so every rule holds the same.
 */
#include <stdlib.h>

#include "engine/internal.h"

/* Held while an op runs; other user threads pushing meanwhile spin, then
 * yield (td__spin_lock_slow), until it is done. */
static td__spin naive_mu;
static _Thread_local td__opr *defer_head, *defer_tail;

static void run_one(td__opr *op) {
    td__event ev;
    int async = op->flags & TD_OP_ASYNC;
    if (async) {
        td__event_init(&ev);
        op->done_ev = &ev;
    }
    atomic_init(&op->wait, op->n_acc + 1);
    int granted = td__var_append_all(op, NULL);
    /* Everything pushed before has finished, so every access is granted;
     * should one not be, whoever releases it runs the op (td__op_ready). */
    if (atomic_fetch_sub_explicit(&op->wait, granted + 1, memory_order_acq_rel) == granted + 1)
        td__op_execute(op, 0);
    if (async) {
        td__event_wait(&ev, "an async op (naive engine)");
        td__event_destroy(&ev);
    }
}

td_status td__naive_submit(td__opr *op) {
    op->qnext = NULL;
    if (td__tls_op) {
        if (defer_tail) defer_tail->qnext = op;
        else defer_head = op;
        defer_tail = op;
        return TD_OK;
    }
    td__spin_lock(&naive_mu);
    run_one(op);
    while ((op = defer_head) != NULL) {
        defer_head = op->qnext;
        if (!defer_head) defer_tail = NULL;
        run_one(op);
    }
    td__spin_unlock(&naive_mu);
    return TD_OK;
}

void td__naive_reset(void) {}
