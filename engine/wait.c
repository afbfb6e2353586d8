/* Blocking waits: events, td_var_wait, and the stall report. */
#include <stdio.h>

#include "engine/internal.h"

void td__event_init(td__event *ev) {
    atomic_init(&ev->set, 0);
    atomic_init(&ev->sleeping, 0);
    if (uv_mutex_init(&ev->mu) || uv_cond_init(&ev->cv)) TD__PANIC("cannot create an event");
}

void td__event_destroy(td__event *ev) {
    uv_cond_destroy(&ev->cv);
    uv_mutex_destroy(&ev->mu);
}

/* The flag is set under the mutex, and a waiter that saw it set takes the
 * mutex once before returning: the signaller has then left the event for
 * good, so the waiter may destroy it (events live on waiters' stacks). */
void td__event_signal(td__event *ev) {
    uv_mutex_lock(&ev->mu);
    atomic_store(&ev->set, 1);
    if (atomic_load(&ev->sleeping)) uv_cond_signal(&ev->cv);
    uv_mutex_unlock(&ev->mu);
}

static int event_is_set(const void *ev) { return atomic_load(&((const td__event *)ev)->set); }

void td__event_wait(td__event *ev, const char *what) {
    uint64_t t0 = uv_hrtime();
    td__spin_until(event_is_set, ev, td__g.wait_spin_ns, td__g.wait_yield_ns);
    int reported = 0;
    uv_mutex_lock(&ev->mu);
    atomic_store(&ev->sleeping, 1);
    while (!atomic_load(&ev->set)) {
        if (td__g.stall_seconds > 0) {
            uv_cond_timedwait(&ev->cv, &ev->mu, 1000000000ull);
            if (!reported && !atomic_load(&ev->set) && (double)(uv_hrtime() - t0) / 1e9 > td__g.stall_seconds) {
                reported = 1;
                uv_mutex_unlock(&ev->mu);
                fprintf(stderr, "tide: waiting for %s for over %.0f s (TIDE_STALL_SECONDS)\n", what,
                        td__g.stall_seconds);
                td_stall_report(stderr);
                uv_mutex_lock(&ev->mu);
            }
        } else {
            uv_cond_wait(&ev->cv, &ev->mu);
        }
    }
    uv_mutex_unlock(&ev->mu);
}

td_status td_var_wait(td_var *v) {
    if (atomic_load_explicit(&td__g.state, memory_order_relaxed) == TD__POISONED)
        return td__fail(TD_EINVAL, "td_var_wait: tide is unusable in this process: it was forked from inside a "
                                   "running op");
    td_status st;
    if ((st = td__busy_check("td_var_wait")) != TD_OK) return st;
    if (!v) return td__fail(TD_EINVAL, "td_var_wait: var is NULL");
    if (v->magic != TD__VAR_MAGIC) return td__fail(TD_EINVAL, "td_var_wait: not a live var (freed?)");
    if ((st = td__ensure()) != TD_OK) return st;

    td__err *e;
    td__spin_lock(&v->lock);
    if (!v->head && !v->writer) {
        /* No write is pending: the current state is what a read would see. */
        e = v->err;
        if (e) td__err_retain(e);
        td__spin_unlock(&v->lock);
    } else {
        td__opr w;
        td__event ev;
        td__event_init(&ev);
        w.kind = TD__OPK_WAITER;
        w.prof = 0;
        w.park = NULL;
        w.done_ev = &ev;
        w.seq = 0;
        w.n_acc = 1;
        w.acc = w.inline_acc;
        w.name = "td_var_wait";
        w.acc[0] = (td__access){.next = NULL, .op = &w, .var = v, .mode = TD__ACC_READ};
        atomic_init(&w.wait, 1);
        if (v->tail) v->tail->next = &w.acc[0];
        else v->head = &w.acc[0];
        v->tail = &w.acc[0];
        /* A deferred op writes v: the wait needs it now. */
        td__opr *parked = v->defer_w ? td__park_claim(v->defer_w) : NULL;
        td__spin_unlock(&v->lock);
        if (parked) td__op_dispatch(parked);
        td__user_wait_begin();
        td__event_wait(&ev, "td_var_wait");
        td__user_wait_end();
        td__event_destroy(&ev);
        e = v->err; /* we hold a granted read: no writer can change it */
        if (e) td__err_retain(e);
        td__var_release(&w.acc[0]);
    }
    if (!e) return TD_OK;
    st = td__err_report(e);
    td__err_release(e);
    return st;
}

void td_stall_report(FILE *out) {
    if (!out) out = stderr;
    fprintf(out, "tide stall report: %s engine\n",
            atomic_load(&td__g.state) == TD__RUNNING ? (td__g.naive ? "naive" : "threaded") : "stopped");
    if (atomic_load(&td__g.state) == TD__RUNNING || atomic_load(&td__g.state) == TD__STOPPING)
        for (int i = 0; i < td__g.n_cpu; i++)
            if (td__g.cpu[i]) td__exec_report(td__g.cpu[i], out);
    td__var_report(out);
    fflush(out);
}
