/* Helpers shared by the engine tests: clocks, bounded waits, starting the
 * runtime with a given engine and worker count, and small op builders.
 *
 * Waits in tests are always bounded (a broken engine makes a test fail, not
 * hang), and generous, because CI machines are small and noisy.
 */
#ifndef TIDE_TESTS_ENGINE_COMMON_H
#define TIDE_TESTS_ENGINE_COMMON_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tide/tide.h>

#include "tt.h"

/* The two engines, for tests that check a rule on both. */
#define TT_FOR_EACH_ENGINE(e) for (int e = TD_ENGINE_THREADED; e <= TD_ENGINE_NAIVE; e++)

static inline const char *tt_engine_name(int engine) {
    return engine == TD_ENGINE_NAIVE ? "naive" : "threaded";
}

static inline double tt_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void tt_sleep_ms(double ms) {
    struct timespec ts;
    ts.tv_sec = (time_t)(ms / 1000.0);
    ts.tv_nsec = (long)((ms - (double)ts.tv_sec * 1000.0) * 1e6);
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Busy work that the compiler cannot drop, for about `us` microseconds. */
static inline void tt_spin_us(double us) {
    double end = tt_now() + us * 1e-6;
    while (tt_now() < end) {
    }
}

/* Waits until *v >= target or timeout_s passes; returns 1 if reached. */
static inline int tt_wait_at_least(atomic_int *v, int target, double timeout_s) {
    double end = tt_now() + timeout_s;
    for (unsigned n = 0;; n++) {
        if (atomic_load(v) >= target) return 1;
        if (tt_now() > end) return 0;
        if (n < 100)
            sched_yield();
        else
            tt_sleep_ms(0.05);
    }
}

/* Whether the test should run a shorter version (TIDE_TEST_QUICK set and not
 * "0"), for slow sanitizer runs. */
static inline int tt_quick(void) {
    const char *s = getenv("TIDE_TEST_QUICK");
    return s && *s && strcmp(s, "0") != 0;
}

/* Starts the runtime with this engine and worker count (0: default). */
static inline void tt_start(int engine, int workers) {
    td_config cfg = td_config_default();
    cfg.engine = engine;
    cfg.cpu_workers = workers;
    td_status st = td_init(&cfg);
    cr_assert_eq(st, TD_OK, "td_init(engine %s, %d workers) failed: %s", tt_engine_name(engine),
                 workers, td_last_error());
}

/* Shuts the runtime down and checks the status it returns. */
static inline void tt_stop(td_status expected) {
    td_status st = td_shutdown();
    cr_assert_eq(st, expected, "td_shutdown returned %s (%s), expected %s", td_status_name(st),
                 td_last_error(), td_status_name(expected));
    cr_assert_not(td_is_running(), "the runtime still runs after td_shutdown");
}

static inline td_var *tt_var(void) {
    td_var *v = td_var_new();
    cr_assert_not_null(v, "td_var_new failed: %s", td_last_error());
    return v;
}

/* An op on the CPU with the given function, argument, reads and writes. */
static inline td_op tt_op(const char *name, td_fn fn, void *arg, td_var *const *reads,
                          size_t n_reads, td_var *const *writes, size_t n_writes) {
    td_op op;
    memset(&op, 0, sizeof op);
    op.name = name;
    op.device = td_cpu(0);
    op.fn = fn;
    op.arg = arg;
    op.reads = reads;
    op.n_reads = n_reads;
    op.writes = writes;
    op.n_writes = n_writes;
    return op;
}

/* Pushes op and asserts the push succeeded. */
static inline void tt_push(const td_op *op) {
    td_status st = td_push(op);
    cr_assert_eq(st, TD_OK, "td_push(%s) failed: %s", op->name ? op->name : "(null)",
                 td_last_error());
}

/* An op that does nothing. */
static inline td_status tt_noop(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    return TD_OK;
}

/* Whether s contains sub (a NULL s counts as empty). */
static inline int tt_has(const char *s, const char *sub) { return s && strstr(s, sub) != NULL; }

/* A small, fast, well-mixed 64-bit hash step (splitmix64's finaliser). */
static inline uint64_t tt_mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* A tiny deterministic generator for the randomised tests. */
typedef struct {
    uint64_t s;
} tt_rng;
static inline uint64_t tt_rng_next(tt_rng *r) {
    r->s += 0x9e3779b97f4a7c15ull;
    return tt_mix(r->s);
}
static inline unsigned tt_rng_below(tt_rng *r, unsigned n) {
    return (unsigned)(tt_rng_next(r) % n);
}

/* The stable identity of the calling thread, for counting threads. */
static inline uintptr_t tt_thread_id(void) { return (uintptr_t)pthread_self(); }

#endif
