/* Helpers of the autograd tests (suite 'autograd'): arrays from host values,
 * reading values back, and the runtime with the leak check of math/mref.h
 * (which also checks that no node of a graph is left). */
#ifndef TIDE_TESTS_AUTOGRAD_AG_H
#define TIDE_TESTS_AUTOGRAD_AG_H

#include <math.h>
#include <stdint.h>

#include "math/mref.h"

/* Nodes alive (ops/tape.c; the tests link the static library). */
int64_t td__tape_live_nodes(void);

static inline void ag_start(void) { mr_start(TD_ENGINE_THREADED, 0); }

/* Nodes go with the last handle of their outputs, which a finishing op may
 * drop a little after td_wait_all returns. */
static inline void ag_finish(void) {
    cr_assert_eq(td_wait_all(), TD_OK, "td_wait_all: %s", td_last_error());
    double end = tt_now() + 2.0;
    while (td__tape_live_nodes() && tt_now() < end) tt_sleep_ms(1);
    cr_assert_eq(td__tape_live_nodes(), 0, "leak: %lld graph nodes live", (long long)td__tape_live_nodes());
    mr_finish();
}

/* An f64 array of shape with values v (n = product of shape). */
static inline td_array *ag_arr(int ndim, const int64_t *shape, const double *v) {
    td_array *a = td_from_host(v, TD_F64, ndim, shape, td_cpu(0));
    cr_assert_not_null(a, "td_from_host: %s", td_last_error());
    return a;
}

/* Deterministic values in [lo, hi) for input k. */
static inline void ag_fill(double *v, int64_t n, double lo, double hi, uint64_t k) {
    uint64_t s = 0x2545f4914f6cdd1dull ^ (k * 0x9e3779b97f4a7c15ull);
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        v[i] = lo + (hi - lo) * ((double)(s >> 11) * 0x1p-53);
    }
}

/* A random f64 array of shape in [lo, hi). */
static inline td_array *ag_rand(int ndim, const int64_t *shape, double lo, double hi, uint64_t k) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    ag_fill(v, n, lo, hi, k);
    td_array *a = ag_arr(ndim, shape, v);
    free(v);
    return a;
}

/* Values of a as doubles (at most cap). */
static inline void ag_read(td_array *a, double *out, int64_t cap) {
    cr_assert_not_null(a, "%s", td_last_error());
    int64_t n = td_numel(a);
    cr_assert_leq(n, cap);
    td_array *d = td_astype(a, TD_F64);
    cr_assert_eq(td_to_host(d, out, (size_t)n * sizeof(double)), TD_OK, "%s", td_last_error());
    td_release(d);
}

#endif
