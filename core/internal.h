/* tide core: what every module below the public API shares.
 *
 * Status and per-thread error detail, environment parsing, and the small
 * synchronisation primitives the engine's hot path uses.  Nothing here
 * depends on libuv, hwloc or any other module.
 */
#ifndef TIDE_CORE_INTERNAL_H
#define TIDE_CORE_INTERNAL_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <tide/status.h>

#if defined(__GNUC__)
#define TD__PRINTF(a, b) __attribute__((format(printf, a, b)))
#define TD__LIKELY(x) __builtin_expect(!!(x), 1)
#define TD__UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define TD__PRINTF(a, b)
#define TD__LIKELY(x) (x)
#define TD__UNLIKELY(x) (x)
#endif

#define TD__CACHELINE 64

/* Records a failure on this thread (status and formatted message) and
 * returns st, so callers can write `return td__fail(TD_EINVAL, "...")`. */
td_status td__fail(td_status st, const char *fmt, ...) TD__PRINTF(2, 3);
td_status td__vfail(td_status st, const char *fmt, va_list ap);

/* Records a failure whose message is already formatted. */
void td__set_error(td_status st, const char *msg);

/* An impossible state: prints where and why, then aborts.  Only for broken
 * invariants inside tide, never for anything a caller can cause. */
_Noreturn void td__panic(const char *file, int line, const char *fmt, ...) TD__PRINTF(3, 4);
#define TD__PANIC(...) td__panic(__FILE__, __LINE__, __VA_ARGS__)
#define TD__CHECK(cond)                                                                   \
    do {                                                                                  \
        if (TD__UNLIKELY(!(cond))) TD__PANIC("internal invariant failed: %s", #cond);     \
    } while (0)

/* Environment: an integer (returns dflt when unset or unparsable; *bad is
 * set to 1 when set but unparsable, if bad is not NULL). */
long long td__env_int(const char *name, long long dflt, int *bad);
/* Environment: a string, or NULL when unset or empty. */
const char *td__env_str(const char *name);

/* A test-and-test-and-set spin lock for short critical sections on the hot
 * path (a handful of pointer updates).  Spins with a pause, then yields. */
typedef struct {
    atomic_int locked;
} td__spin;
void td__spin_lock_slow(td__spin *s);
static inline void td__spin_lock(td__spin *s) {
    if (TD__LIKELY(!atomic_exchange_explicit(&s->locked, 1, memory_order_acquire))) return;
    td__spin_lock_slow(s);
}
static inline void td__spin_unlock(td__spin *s) {
    atomic_store_explicit(&s->locked, 0, memory_order_release);
}
/* Starts fetching p's line for writing (PREFETCHW; a no-op on x86 CPUs
 * without it, and a read prefetch elsewhere). */
static inline void td__prefetch_w(const void *p) {
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("prefetchw %0" : : "m"(*(const char *)p));
#else
    __builtin_prefetch(p, 1, 3);
#endif
}
#if defined(__x86_64__)
/* The time-stamp counter (x86-64 only): a few ns to read, against 20-26 for
 * the clock; callers convert it with a rate they measure. */
#define TD__HAVE_TSC 1
static inline uint64_t td__tsc(void) {
    uint32_t lo, hi;
    __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t)hi << 32 | lo;
}
#endif
static inline void td__cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}
/* A wait between two looks at shared memory in a poll loop: n pause
 * instructions in a row, with no load between them.  A thread that polls
 * memory every pause (or faster) made every locked instruction on the other
 * core of our 2-core machines cost 27-30 ns instead of 6 (its loads
 * interleaved with pauses do it, not the pauses: a pause-only loop costs the
 * other core nothing); with 32 pauses between looks (0.5 us here) it costs
 * 7 ns.  A push makes five locked steps, so a worker waiting for work that
 * looked at the queue every pause doubled the cost of a push. */
enum { TD__POLL_PAUSES = 32 };
static inline void td__cpu_relax_n(unsigned n) {
    for (unsigned i = 0; i < n; i++) td__cpu_relax();
}

/* Waits for done(arg) without sleeping: first spinning with a pause
 * instruction for spin_ns, then yielding the processor (sched_yield) until
 * yield_ns have passed in all, so a thread that waits keeps its core only
 * while nothing else wants it.  Returns 1 when done, 0 when the time ran out
 * (the caller then sleeps).  Waking a sleeping thread costs 10-25 us on the
 * machines we measure; this keeps short waits from paying it. */
int td__spin_until(int (*done)(const void *arg), const void *arg, uint64_t spin_ns, uint64_t yield_ns);
uint64_t td__now_ns(void);

/* Object caches for the hot path (objcache.c): per-thread magazines of
 * free object pointers, exchanged whole at a depot, slabs never returned.
 * One cache per kind of object, each with its own index into the
 * per-thread table.  Allocating and freeing neither read nor write the
 * object. */
enum { TD__CACHE_OP, TD__CACHE_CALL, TD__CACHE_ARRAY, TD__CACHE_STORAGE, TD__NCACHES };
typedef struct {
    int id;       /* TD__CACHE_* */
    size_t size;  /* object size, at least 1 pointer */
    td__spin lock;
    void *chains; /* the depot: full magazines */
    void *empties; /* the depot: empty magazines */
    void *loose;  /* objects freed when no magazine could be had */
    void *slabs;
} td__objcache;
#define TD__OBJCACHE_INIT(ID, TYPE) {.id = (ID), .size = sizeof(TYPE)}
typedef struct td__mag_view {
    void *next;
    int n;
    void *obj[];
} td__mag_view;
extern _Thread_local struct td__mag_tls {
    td__mag_view *cur, *prev;
} td__mag_tls[TD__NCACHES];
enum { TD__MAG = 128 };
void *td__cache_alloc_slow(td__objcache *c);
void td__cache_free_slow(td__objcache *c, void *p);
/* NULL only when the system refuses memory. */
static inline void *td__cache_alloc(td__objcache *c) {
    td__mag_view *m = td__mag_tls[c->id].cur;
    if (TD__LIKELY(m != NULL && m->n > 0)) return m->obj[--m->n];
    return td__cache_alloc_slow(c);
}
static inline void td__cache_free(td__objcache *c, void *p) {
    td__mag_view *m = td__mag_tls[c->id].cur;
    if (TD__LIKELY(m != NULL && m->n < TD__MAG)) {
        m->obj[m->n++] = p;
        return;
    }
    td__cache_free_slow(c, p);
}
/* The object td__cache_alloc will return next on this thread, or NULL: a
 * thread that will write it soon can start fetching its lines now. */
static inline void *td__cache_peek(const td__objcache *c) {
    td__mag_view *m = td__mag_tls[c->id].cur;
    return m && m->n > 0 ? m->obj[m->n - 1] : NULL;
}
/* A thread that stops using a cache (a worker leaving) hands its magazines back. */
void td__cache_flush_thread(td__objcache *c);

/* strncpy that always terminates; returns dst. */
char *td__strlcpy(char *dst, const char *src, size_t size);

#endif
