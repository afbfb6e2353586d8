/* Deferred ops: ops the ops layer may still fuse into a later op.
 *
 * An op pushed with a park ticket (td__push_ex, `defer`) is queued on its
 * vars like any other, so everything pushed after it is ordered against it,
 * but when it becomes ready it is not run: it waits, parked, until something
 * needs it.  Then it is *activated*: dispatched if it was ready, or marked
 * to be dispatched when it becomes ready.  What activates a deferred op:
 *   - a later access that conflicts with one of its accesses (any access to
 *     the var it writes; a write to a var it reads), at the moment it is
 *     appended, under that var's lock (var.c);
 *   - a wait on the var it writes (td_var_wait), td_wait_all, a shutdown or
 *     fork drain, a back-pressure wait, a worker idle for PARK_IDLE_NS;
 *   - its ticket's holder (the ops layer: the output array) letting go.
 * While a ticket is still deferred, nothing that would change what the op
 * reads or could observe what it writes has been pushed after it; the ops
 * layer relies on this to compute the op's result inside a later op instead
 * (a fused consumer, pushed with the ticket as its guard: the check is made
 * under the locks of the consumer's vars and of the guard's var, so no
 * conflicting push can slip in between).  An op whose output nobody can
 * observe any more when it runs may then skip its work (ops/invoke.c).
 *
 * Tickets are refcounted (the op holds one until it ends, the ops layer one)
 * so a state can be read after the op record is recycled.  States move only
 * forward: DEFER -> GO, or DEFER -> PARKED -> CLAIMED; then DONE.  The list
 * of deferred tickets (DEFER or PARKED) is guarded by park_lock, which nests
 * inside var locks and takes no other lock.
 */
#include <stdlib.h>

#include "engine/internal.h"

static td__spin park_lock;
static td__park *park_head;
atomic_int td__nparked;
_Atomic uint64_t td__park_idle_ns = 100000;

void td__park_set_idle_ns(uint64_t ns) { atomic_store(&td__park_idle_ns, ns); }

td__park *td__park_new(void) {
    td__park *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    atomic_init(&t->state, TD__PARK_DEFER);
    atomic_init(&t->refs, 1);
    return t;
}

void td__park_retain(td__park *t) { atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed); }

void td__park_release(td__park *t) {
    if (t && atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) == 1) free(t);
}

int td__park_deferred(const td__park *t) {
    int s = atomic_load(&t->state);
    return s == TD__PARK_DEFER || s == TD__PARK_PARKED;
}

static void list_add(td__park *t) {
    td__spin_lock(&park_lock);
    t->prev = NULL;
    t->next = park_head;
    if (park_head) park_head->prev = t;
    park_head = t;
    atomic_fetch_add(&td__nparked, 1);
    td__spin_unlock(&park_lock);
}

/* Under park_lock. */
static void list_remove(td__park *t) {
    if (t->prev) t->prev->next = t->next;
    else park_head = t->next;
    if (t->next) t->next->prev = t->prev;
    t->prev = t->next = NULL;
    atomic_fetch_sub(&td__nparked, 1);
}

void td__park_attach(td__park *t, td__opr *op) {
    t->op = op;
    t->t_park = td__now_ns();
    op->park = t;
    op->parked = 1;
    td__park_retain(t); /* the op's */
    list_add(t);
}

int td__park_on_ready(td__opr *op) {
    int expect = TD__PARK_DEFER;
    return atomic_compare_exchange_strong(&op->park->state, &expect, TD__PARK_PARKED);
}

/* Moves t out of the deferred states; under park_lock.  Returns the op when
 * it was parked ready: the caller dispatches it (after dropping any lock). */
static td__opr *claim_locked(td__park *t) {
    for (;;) {
        int s = atomic_load(&t->state);
        if (s != TD__PARK_DEFER && s != TD__PARK_PARKED) return NULL;
        int to = s == TD__PARK_DEFER ? TD__PARK_GO : TD__PARK_CLAIMED;
        if (atomic_compare_exchange_strong(&t->state, &s, to)) {
            list_remove(t);
            return to == TD__PARK_CLAIMED ? t->op : NULL;
        }
    }
}

int td__park_while_deferred(td__park *t, void (*fn)(void *arg), void *arg) {
    td__spin_lock(&park_lock);
    int deferred = td__park_deferred(t);
    if (deferred) fn(arg);
    td__spin_unlock(&park_lock);
    return deferred;
}

td__opr *td__park_claim(td__park *t) {
    if (!t || !td__park_deferred(t)) return NULL;
    td__spin_lock(&park_lock);
    td__opr *op = claim_locked(t);
    td__spin_unlock(&park_lock);
    return op;
}

td__opr *td__park_claim_all(void) {
    if (atomic_load(&td__nparked) == 0) return NULL;
    td__opr *ready = NULL;
    td__spin_lock(&park_lock);
    while (park_head) {
        td__opr *op = claim_locked(park_head);
        if (op) {
            op->qnext = ready;
            ready = op;
        }
    }
    td__spin_unlock(&park_lock);
    return ready;
}

void td__park_activate_older(uint64_t now, uint64_t age) {
    if (atomic_load(&td__nparked) == 0) return;
    td__opr *ready = NULL;
    td__spin_lock(&park_lock);
    for (td__park *t = park_head, *next; t; t = next) {
        next = t->next;
        if (now - t->t_park < age) continue;
        td__opr *op = claim_locked(t);
        if (op) {
            op->qnext = ready;
            ready = op;
        }
    }
    td__spin_unlock(&park_lock);
    td__park_dispatch(ready);
}

void td__park_dispatch(td__opr *ops) {
    while (ops) {
        td__opr *next = ops->qnext;
        ops->qnext = NULL;
        td__op_dispatch(ops);
        ops = next;
    }
}

void td__park_activate(td__park *t) {
    td__opr *op = td__park_claim(t);
    if (op) td__op_dispatch(op);
}

void td__park_activate_all(void) { td__park_dispatch(td__park_claim_all()); }

void td__park_op_end(td__opr *op) {
    td__park *t = op->park;
    op->park = NULL;
    atomic_store(&t->state, TD__PARK_DONE);
    td__park_release(t);
}
