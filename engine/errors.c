/* Error records: what a failing op leaves behind.
 *
 * A record lives apart from vars (refcounted): the vars an op marks hold it,
 * and so does the list of unreported records that td_wait_all and
 * td_shutdown read.  That list keeps the 64 earliest records by push number,
 * so a flood of failures cannot grow memory without bound, and the one
 * td_wait_all returns is always the earliest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

enum { TD__MAX_UNREPORTED = 64 };

static uv_once_t list_once = UV_ONCE_INIT;
static uv_mutex_t list_mu;
static td__err *list[TD__MAX_UNREPORTED]; /* sorted by seq */
static int list_n;

static void list_init(void) {
    if (uv_mutex_init(&list_mu) != 0) TD__PANIC("cannot create the error list mutex");
}

/* When memory is too short to describe a failure, this record stands in
 * for it (same status semantics, fixed text); it is never freed. */
static td__err oom_err = {.refs = 1 << 30, .status = TD_ENOMEM,
                          .text = "op failed and its error could not be recorded: out of memory"};

td__err *td__err_new(const td__opr *op, td_status st, const char *msg) {
    td__err *e = calloc(1, sizeof *e);
    if (!msg || !*msg) msg = td_strerror(st);
    size_t len = strlen(op->name) + 2 + strlen(msg) + 1;
    char *text = e ? malloc(len) : NULL;
    if (!e || !text) {
        free(e);
        free(text);
        return &oom_err;
    }
    snprintf(text, len, "%s: %s", op->name, msg);
    atomic_init(&e->refs, 1);
    e->status = st;
    e->seq = op->seq;
    e->epoch = op->epoch;
    e->text = text;
    return e;
}

void td__err_retain(td__err *e) { atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed); }

void td__err_release(td__err *e) {
    if (e == &oom_err) return;
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) {
        free(e->text);
        free(e);
    }
}

void td__err_publish(td__err *e) {
    uv_once(&list_once, list_init);
    if (e == &oom_err) return;
    uv_mutex_lock(&list_mu);
    int pos = list_n;
    while (pos > 0 && list[pos - 1]->seq > e->seq) pos--;
    if (pos < TD__MAX_UNREPORTED) {
        td__err *dropped = NULL;
        if (list_n == TD__MAX_UNREPORTED) {
            dropped = list[--list_n];
            dropped->listed = 0;
        }
        memmove(&list[pos + 1], &list[pos], (size_t)(list_n - pos) * sizeof list[0]);
        list[pos] = e;
        list_n++;
        e->listed = 1;
        td__err_retain(e);
        uv_mutex_unlock(&list_mu);
        if (dropped) td__err_release(dropped);
        return;
    }
    uv_mutex_unlock(&list_mu);
}

static void unlist_locked(int i) {
    list[i]->listed = 0;
    memmove(&list[i], &list[i + 1], (size_t)(list_n - i - 1) * sizeof list[0]);
    list_n--;
}

td_status td__err_report(td__err *e) {
    td__set_error(e->status, e->text);
    if (e == &oom_err) return e->status;
    uv_once(&list_once, list_init);
    td__err *drop = NULL;
    uv_mutex_lock(&list_mu);
    if (e->listed) {
        for (int i = 0; i < list_n; i++)
            if (list[i] == e) {
                unlist_locked(i);
                drop = e;
                break;
            }
    }
    uv_mutex_unlock(&list_mu);
    if (drop) td__err_release(drop);
    return e->status;
}

td__err *td__err_take_until(uint32_t epoch, int all) {
    uv_once(&list_once, list_init);
    td__err *first = NULL;
    td__err *drop[TD__MAX_UNREPORTED];
    int ndrop = 0;
    uv_mutex_lock(&list_mu);
    for (int i = 0; i < list_n;) {
        /* Epochs only grow (mod 2^32); "up to epoch" is a signed distance. */
        if (all || (int32_t)(list[i]->epoch - epoch) <= 0) {
            td__err *e = list[i];
            unlist_locked(i);
            if (!first) first = e; /* the list is sorted: this is the earliest */
            else drop[ndrop++] = e;
        } else {
            i++;
        }
    }
    uv_mutex_unlock(&list_mu);
    for (int i = 0; i < ndrop; i++) td__err_release(drop[i]);
    return first;
}

void td__errs_reset(void) {
    uv_once(&list_once, list_init);
    uv_mutex_lock(&list_mu);
    int n = list_n;
    td__err *drop[TD__MAX_UNREPORTED];
    memcpy(drop, list, (size_t)n * sizeof list[0]);
    for (int i = 0; i < n; i++) drop[i]->listed = 0;
    list_n = 0;
    uv_mutex_unlock(&list_mu);
    for (int i = 0; i < n; i++) td__err_release(drop[i]);
}
