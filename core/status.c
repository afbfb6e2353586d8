/* Status codes, their texts, and the per-thread record of the last failure. */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"

enum { TD__ERRMSG_MAX = 1024 };

static _Thread_local td_status tls_status = TD_OK;
static _Thread_local char tls_msg[TD__ERRMSG_MAX];

#define TD__STATUS_MSG(code, name, msg) [code] = msg,
static const char *const status_msgs[] = {TD_STATUS_LIST(TD__STATUS_MSG)};
#undef TD__STATUS_MSG
#define TD__STATUS_NAME(code, name, msg) [code] = name,
static const char *const status_names[] = {TD_STATUS_LIST(TD__STATUS_NAME)};
#undef TD__STATUS_NAME

const char *td_strerror(td_status s) {
    if ((unsigned)s >= (unsigned)TD_STATUS_COUNT_) return "unknown status";
    return status_msgs[s];
}

const char *td_status_name(td_status s) {
    if ((unsigned)s >= (unsigned)TD_STATUS_COUNT_) return "TD_UNKNOWN";
    return status_names[s];
}

const char *td_last_error(void) { return tls_status == TD_OK ? "" : tls_msg; }
td_status td_last_status(void) { return tls_status; }

void td_clear_error(void) {
    tls_status = TD_OK;
    tls_msg[0] = '\0';
}

void td__set_error(td_status st, const char *msg) {
    tls_status = st;
    td__strlcpy(tls_msg, msg ? msg : "", sizeof tls_msg);
}

td_status td__vfail(td_status st, const char *fmt, va_list ap) {
    tls_status = st;
    if (fmt)
        vsnprintf(tls_msg, sizeof tls_msg, fmt, ap);
    else
        td__strlcpy(tls_msg, td_strerror(st), sizeof tls_msg);
    return st;
}

td_status td__fail(td_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    td__vfail(st, fmt, ap);
    va_end(ap);
    return st;
}

_Noreturn void td__panic(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "tide: fatal internal error at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(this is a bug in tide, not in your program; please report it)\n", stderr);
    abort();
}

long long td__env_int(const char *name, long long dflt, int *bad) {
    const char *s = getenv(name);
    if (bad) *bad = 0;
    if (!s || !*s) return dflt;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0') {
        if (bad) *bad = 1;
        return dflt;
    }
    return v;
}

const char *td__env_str(const char *name) {
    const char *s = getenv(name);
    return (s && *s) ? s : NULL;
}

void td__spin_lock_slow(td__spin *s) {
    for (unsigned n = 0;; n++) {
        if (!atomic_load_explicit(&s->locked, memory_order_relaxed) &&
            !atomic_exchange_explicit(&s->locked, 1, memory_order_acquire))
            return;
        if (n < 64)
            td__cpu_relax();
        else
            sched_yield(); /* the holder may have been preempted */
    }
}

uint64_t td__now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int td__spin_until(int (*done)(const void *arg), const void *arg, uint64_t spin_ns, uint64_t yield_ns) {
    uint64_t t0 = td__now_ns();
    int yielding = spin_ns == 0;
    for (;;) {
        if (done(arg)) return 1;
        uint64_t t = td__now_ns() - t0;
        if (t > yield_ns) return 0;
        yielding = t > spin_ns;
        if (yielding) sched_yield();
        else td__cpu_relax_n(TD__POLL_PAUSES);
    }
}

char *td__strlcpy(char *dst, const char *src, size_t size) {
    if (size == 0) return dst;
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
    return dst;
}
