/* Helpers shared by the array and op tests (suites 'ndarray' and 'ops').
 *
 * - The leak check every test ends with: after td_wait_all(), no live array,
 *   no live storage, no storage bytes (nd_finish).
 * - Expected failures: the status, td_last_status() and a message that names
 *   the function (nd_expect_status, nd_expect_null).
 * - nd_ref, a plain host array of values (exact int64 for integer dtypes,
 *   double for float dtypes) in C order, with the view functions written
 *   here from numpy's rules (Python slices, transposes, broadcasting).  Every
 *   test compares what tide computes with what these give; nothing in here
 *   calls tide to compute a value.
 *
 * Every test starts its own runtime (each Criterion test is its own process)
 * and ends with nd_finish().
 */
#ifndef TIDE_TESTS_NDARRAY_ND_H
#define TIDE_TESTS_NDARRAY_ND_H

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tide/tide.h>

#include "engine/common.h"

/* ---- dtypes --------------------------------------------------------------- */

enum { ND_NDTYPES = 5 };
#define ND_FOR_EACH_DTYPE(d) for (int d = TD_F32; d <= TD_U8; d++)

static inline const char *nd_dt(int dt) {
    switch (dt) {
    case TD_F32: return "f32";
    case TD_F64: return "f64";
    case TD_I32: return "i32";
    case TD_I64: return "i64";
    case TD_U8: return "u8";
    default: return "bad-dtype";
    }
}
static inline int nd_is_float(int dt) { return dt == TD_F32 || dt == TD_F64; }
static inline size_t nd_size(int dt) {
    switch (dt) {
    case TD_F32: return 4;
    case TD_F64: return 8;
    case TD_I32: return 4;
    case TD_I64: return 8;
    case TD_U8: return 1;
    default: return 0;
    }
}

/* A value converted to dtype dt the way C and numpy convert (floats to
 * integers truncate toward zero; integers wrap).  The caller keeps float to
 * integer conversions in range. */
static inline int64_t nd_wrap_int(int dt, int64_t v) {
    switch (dt) {
    case TD_I32: return (int64_t)(int32_t)(uint32_t)(uint64_t)v;
    case TD_U8: return (int64_t)(uint8_t)(uint64_t)v;
    default: return v;
    }
}
static inline double nd_round_float(int dt, double v) {
    return dt == TD_F32 ? (double)(float)v : v;
}

/* ---- clocks and seeds ----------------------------------------------------- */

/* The seed of a randomised test: TIDE_TEST_SEED if set, else `fixed`; printed
 * so that a failure can be replayed. */
static inline uint64_t nd_seed(const char *test, uint64_t fixed) {
    const char *s = getenv("TIDE_TEST_SEED");
    uint64_t seed = (s && *s) ? strtoull(s, NULL, 0) : fixed;
    cr_log_info("%s: seed %" PRIu64 " (set TIDE_TEST_SEED to replay)", test, seed);
    return seed;
}

/* ---- runtime and leak check ---------------------------------------------- */

/* Starts the runtime with this engine and worker count. */
static inline void nd_start(int engine, int workers) { tt_start(engine, workers); }

/* Asserts that no array, storage or storage byte is left.  Waits for every op
 * first; the storages of finished ops are dropped when the op retires, which
 * may trail td_wait_all by a moment, so the storage counts get a bounded
 * grace period (a real leak never reaches zero). */
static inline void nd_check_no_leaks(void) {
    td_wait_all();
    td_array_stats s = td_array_stats_get();
    double end = tt_now() + 2.0;
    while ((s.live_storages != 0 || s.storage_bytes != 0) && tt_now() < end) {
        tt_sleep_ms(1);
        s = td_array_stats_get();
    }
    cr_assert_eq(s.live_arrays, 0, "leak check: %lld arrays still live", (long long)s.live_arrays);
    cr_assert_eq(s.live_storages, 0, "leak check: %lld storages still live",
                 (long long)s.live_storages);
    cr_assert_eq(s.storage_bytes, 0, "leak check: %lld storage bytes still held",
                 (long long)s.storage_bytes);
}

/* Live array handles once pending ops are done.  A pending op holds the
 * handles it uses, so the count is read after td_wait_all, with a bounded
 * moment for finished ops to retire (from there it only goes down). */
static inline int64_t nd_live_arrays(int64_t want) {
    td_wait_all();
    double end = tt_now() + 2.0;
    int64_t n = td_array_stats_get().live_arrays;
    while (n > want && tt_now() < end) {
        tt_sleep_ms(1);
        n = td_array_stats_get().live_arrays;
    }
    return n;
}

/* The end of every test: the leak check, then a clean shutdown. */
static inline void nd_finish(void) {
    nd_check_no_leaks();
    tt_stop(TD_OK);
}

/* ---- expected failures ---------------------------------------------------- */

/* Checks a failure: status `got` is `want`, td_last_status() agrees and
 * td_last_error() names `fn` (a short name such as "zeros" or "add"; NULL: no
 * check of the name).  Call td_clear_error() before the failing call. */
static inline void nd_expect_status(td_status got, td_status want, const char *fn,
                                    const char *what) {
    cr_assert_eq(got, want, "%s: returned %s (%s), expected %s", what, td_status_name(got),
                 td_last_error(), td_status_name(want));
    if (want == TD_OK) return;
    cr_assert_eq(td_last_status(), want, "%s: td_last_status() is %s, expected %s", what,
                 td_status_name(td_last_status()), td_status_name(want));
    cr_assert(td_last_error()[0] != '\0', "%s: no message", what);
    if (fn)
        cr_assert(tt_has(td_last_error(), fn), "%s: the message \"%s\" does not name \"%s\"",
                  what, td_last_error(), fn);
}

/* The same for one of two acceptable statuses (where the contract leaves the
 * choice between TD_EINVAL and TD_ESHAPE open). */
static inline void nd_expect_status2(td_status got, td_status want1, td_status want2,
                                     const char *fn, const char *what) {
    cr_assert(got == want1 || got == want2, "%s: returned %s (%s), expected %s or %s", what,
              td_status_name(got), td_last_error(), td_status_name(want1),
              td_status_name(want2));
    nd_expect_status(got, got, fn, what);
}

/* A call that returns an array and must fail with `want`. */
static inline void nd_expect_null(td_array *a, td_status want, const char *fn, const char *what) {
    cr_assert_null(a, "%s: returned an array, expected NULL with %s", what, td_status_name(want));
    nd_expect_status(td_last_status(), want, fn, what);
}
static inline void nd_expect_null2(td_array *a, td_status want1, td_status want2, const char *fn,
                                   const char *what) {
    cr_assert_null(a, "%s: returned an array, expected NULL with %s or %s", what,
                   td_status_name(want1), td_status_name(want2));
    nd_expect_status2(td_last_status(), want1, want2, fn, what);
}

/* Whether msg shows the shape in one of the usual notations: numpy's
 * "(3, 4)" / "(3,)" / "()", or "[3, 4]", "(3,4)", "[3,4]", "3x4". */
static inline int nd_msg_has_shape(const char *msg, int ndim, const int64_t *shape) {
    char forms[6][256];
    for (int f = 0; f < 6; f++) {
        const char *open = (f == 1 || f == 3) ? "[" : (f == 5 ? "" : "(");
        const char *close = (f == 1 || f == 3) ? "]" : (f == 5 ? "" : ")");
        const char *sep = f < 2 ? ", " : (f == 5 ? "x" : ",");
        char *p = forms[f];
        size_t room = sizeof forms[f];
        int n = snprintf(p, room, "%s", open);
        for (int i = 0; i < ndim; i++)
            n += snprintf(p + n, room - (size_t)n, "%s%lld", i ? sep : "", (long long)shape[i]);
        if (f == 0 && ndim == 1) n += snprintf(p + n, room - (size_t)n, ",");
        snprintf(p + n, room - (size_t)n, "%s", close);
    }
    for (int f = 0; f < 6; f++) {
        if (f == 5 && ndim < 2) continue; /* "3" alone says nothing */
        if (tt_has(msg, forms[f])) return 1;
    }
    /* "(3)" for a 1-d shape is fine too. */
    if (ndim == 1) {
        char b[64];
        snprintf(b, sizeof b, "(%lld)", (long long)shape[0]);
        if (tt_has(msg, b)) return 1;
    }
    return 0;
}

/* ---- reference arrays ----------------------------------------------------- */

/* Values in C order: i[k] exact for integer dtypes, f[k] for every dtype (for
 * integers, (double)i[k]). */
typedef struct {
    int dtype;
    int ndim;
    int64_t shape[TD_MAX_DIMS];
    int64_t n;
    double *f;
    int64_t *i;
} nd_ref;

static inline int64_t nd_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    return n;
}

static inline nd_ref nd_ref_new(int dtype, int ndim, const int64_t *shape) {
    nd_ref r;
    memset(&r, 0, sizeof r);
    r.dtype = dtype;
    r.ndim = ndim;
    for (int d = 0; d < ndim; d++) r.shape[d] = shape[d];
    r.n = nd_numel(ndim, shape);
    size_t n = (size_t)(r.n > 0 ? r.n : 1);
    r.f = calloc(n, sizeof(double));
    r.i = calloc(n, sizeof(int64_t));
    cr_assert(r.f && r.i, "out of host memory for a reference array");
    return r;
}

static inline void nd_ref_free(nd_ref *r) {
    free(r->f);
    free(r->i);
    r->f = NULL;
    r->i = NULL;
}

/* Stores a value, converted to the array's dtype. */
static inline void nd_ref_put_i(nd_ref *r, int64_t k, int64_t v) {
    if (nd_is_float(r->dtype)) {
        r->f[k] = nd_round_float(r->dtype, (double)v);
        r->i[k] = 0;
    } else {
        r->i[k] = nd_wrap_int(r->dtype, v);
        r->f[k] = (double)r->i[k];
    }
}
static inline void nd_ref_put_f(nd_ref *r, int64_t k, double v) {
    if (nd_is_float(r->dtype)) {
        r->f[k] = nd_round_float(r->dtype, v);
        r->i[k] = 0;
    } else {
        r->i[k] = nd_wrap_int(r->dtype, (int64_t)v);
        r->f[k] = (double)r->i[k];
    }
}

/* Kinds of random data. */
enum {
    ND_GEN_GENERAL = 0, /* floats in [-8, 8] in 1/64 steps, ints in [-40, 40], u8 any */
    ND_GEN_BIG = 1,     /* as general, and i64 around +-2^53 where doubles lose ones */
    ND_GEN_SMALL = 2,   /* floats in [-4, 4], ints in [-6, 6] (u8 [0, 6]): pow bases */
    ND_GEN_EXP = 3,     /* floats in [-3, 3], ints in [0, 6]: pow exponents */
    ND_GEN_NONNEG = 4,  /* floats in [0, 100), ints in [0, 100]: casts to any dtype */
};

static inline void nd_ref_random(nd_ref *r, tt_rng *g, int gen) {
    for (int64_t k = 0; k < r->n; k++) {
        uint64_t u = tt_rng_next(g);
        if (nd_is_float(r->dtype)) {
            double v;
            switch (gen) {
            case ND_GEN_SMALL: v = (double)((int64_t)(u % 513) - 256) / 64.0; break;
            case ND_GEN_EXP: v = (double)((int64_t)(u % 385) - 192) / 64.0; break;
            case ND_GEN_NONNEG: v = (double)(u % 6400) / 64.0; break;
            default: v = (double)((int64_t)(u % 1025) - 512) / 64.0; break;
            }
            nd_ref_put_f(r, k, v);
        } else {
            int64_t v;
            int u8 = r->dtype == TD_U8;
            switch (gen) {
            case ND_GEN_SMALL: v = u8 ? (int64_t)(u % 7) : (int64_t)(u % 13) - 6; break;
            case ND_GEN_EXP: v = (int64_t)(u % 7); break;
            case ND_GEN_NONNEG: v = (int64_t)(u % 101); break;
            default:
                v = u8 ? (int64_t)(u % 256) : (int64_t)(u % 81) - 40;
                if (gen == ND_GEN_BIG && r->dtype == TD_I64 && (u >> 40) % 3 == 0) {
                    int64_t big = ((int64_t)1 << 53) + (int64_t)((u >> 20) % 5);
                    v = ((u >> 50) & 1) ? big : -big;
                }
                break;
            }
            nd_ref_put_i(r, k, v);
        }
    }
}

/* Host bytes of the reference in its dtype (malloc'ed). */
static inline void *nd_ref_bytes(const nd_ref *r) {
    size_t es = nd_size(r->dtype);
    void *buf = malloc(es * (size_t)(r->n > 0 ? r->n : 1));
    cr_assert_not_null(buf);
    for (int64_t k = 0; k < r->n; k++) {
        switch (r->dtype) {
        case TD_F32: ((float *)buf)[k] = (float)r->f[k]; break;
        case TD_F64: ((double *)buf)[k] = r->f[k]; break;
        case TD_I32: ((int32_t *)buf)[k] = (int32_t)r->i[k]; break;
        case TD_I64: ((int64_t *)buf)[k] = r->i[k]; break;
        case TD_U8: ((uint8_t *)buf)[k] = (uint8_t)r->i[k]; break;
        default: break;
        }
    }
    return buf;
}

/* Reads element k of a host buffer of dtype dt into r (same dtype). */
static inline void nd_ref_load(nd_ref *r, const void *buf) {
    for (int64_t k = 0; k < r->n; k++) {
        switch (r->dtype) {
        case TD_F32: r->f[k] = ((const float *)buf)[k]; break;
        case TD_F64: r->f[k] = ((const double *)buf)[k]; break;
        case TD_I32: r->i[k] = ((const int32_t *)buf)[k]; r->f[k] = (double)r->i[k]; break;
        case TD_I64: r->i[k] = ((const int64_t *)buf)[k]; r->f[k] = (double)r->i[k]; break;
        case TD_U8: r->i[k] = ((const uint8_t *)buf)[k]; r->f[k] = (double)r->i[k]; break;
        default: break;
        }
    }
}

/* A new tide array holding the reference's values (td_from_host). */
static inline td_array *nd_make(const nd_ref *r) {
    void *buf = nd_ref_bytes(r);
    td_array *a = td_from_host(buf, r->dtype, r->ndim, r->shape, td_cpu(0));
    cr_assert_not_null(a, "td_from_host(%s, ndim %d) failed: %s", nd_dt(r->dtype), r->ndim,
                       td_last_error());
    free(buf);
    return a;
}

/* A random array and its reference. */
static inline td_array *nd_make_random(nd_ref *r, int dtype, int ndim, const int64_t *shape,
                                       tt_rng *g, int gen) {
    *r = nd_ref_new(dtype, ndim, shape);
    nd_ref_random(r, g, gen);
    return nd_make(r);
}

/* Reads a tide array (any layout) through td_to_host into a new reference. */
static inline nd_ref nd_read(td_array *a) {
    cr_assert_not_null(a);
    int dt = td_dtype(a);
    nd_ref r = nd_ref_new(dt, td_ndim(a), td_shape(a));
    cr_assert_eq(r.n, td_numel(a), "td_numel %lld disagrees with the shape (%lld)",
                 (long long)td_numel(a), (long long)r.n);
    size_t nbytes = nd_size(dt) * (size_t)r.n;
    void *buf = malloc(nbytes ? nbytes : 1);
    cr_assert_not_null(buf);
    td_status st = td_to_host(a, buf, nbytes);
    cr_assert_eq(st, TD_OK, "td_to_host failed: %s (%s)", td_status_name(st), td_last_error());
    nd_ref_load(&r, buf);
    free(buf);
    return r;
}

/* Formats a shape as numpy does, for messages. */
static inline const char *nd_shape_str(char *buf, size_t size, int ndim, const int64_t *shape) {
    int n = snprintf(buf, size, "(");
    for (int i = 0; i < ndim && (size_t)n < size; i++)
        n += snprintf(buf + n, size - (size_t)n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (ndim == 1 && (size_t)n < size) n += snprintf(buf + n, size - (size_t)n, ",");
    if ((size_t)n < size) snprintf(buf + n, size - (size_t)n, ")");
    return buf;
}

/* Relative tolerance for a float result of dtype dt. */
static inline double nd_tol(int dt) { return dt == TD_F32 ? 4e-6 : 1e-12; }

/* Whether two values of dtype dt agree (floats within tolerance, NaN with
 * NaN, infinities exactly; integers exactly). */
static inline int nd_same(int dt, double gf, int64_t gi, double wf, int64_t wi) {
    if (!nd_is_float(dt)) return gi == wi;
    if (isnan(wf)) return isnan(gf);
    if (isinf(wf) || isinf(gf)) return gf == wf;
    return fabs(gf - wf) <= nd_tol(dt) * fabs(wf) + 1e-300;
}

/* Checks that tide array `got` has want's dtype, shape and values; float
 * values may also differ by abs_tol (for results such as linspace's, whose
 * rounding error scales with the endpoints rather than with the value). */
static inline void nd_expect_ref_full(td_array *got, const nd_ref *want, int tol_dtype,
                                      double abs_tol, const char *what);
static inline void nd_expect_ref_tol(td_array *got, const nd_ref *want, double abs_tol,
                                     const char *what) {
    nd_expect_ref_full(got, want, want->dtype, abs_tol, what);
}
/* The same, with the relative tolerance of tol_dtype (the dtype a result was
 * computed in, when it was then converted to want's dtype). */
static inline void nd_expect_ref_full(td_array *got, const nd_ref *want, int tol_dtype,
                                      double abs_tol, const char *what) {
    cr_assert_not_null(got, "%s: NULL result (%s: %s)", what, td_status_name(td_last_status()),
                       td_last_error());
    char s1[128], s2[128];
    nd_shape_str(s1, sizeof s1, td_ndim(got), td_shape(got));
    nd_shape_str(s2, sizeof s2, want->ndim, want->shape);
    cr_assert_eq(td_dtype(got), want->dtype, "%s: dtype %s, expected %s", what,
                 nd_dt(td_dtype(got)), nd_dt(want->dtype));
    int same_shape = td_ndim(got) == want->ndim;
    for (int d = 0; same_shape && d < want->ndim; d++)
        same_shape = td_shape(got)[d] == want->shape[d];
    cr_assert(same_shape, "%s: shape %s, expected %s", what, s1, s2);
    nd_ref g = nd_read(got);
    for (int64_t k = 0; k < want->n; k++) {
        int same = nd_same(want->dtype, g.f[k], g.i[k], want->f[k], want->i[k]) ||
                   (nd_is_float(want->dtype) &&
                    (fabs(g.f[k] - want->f[k]) <= abs_tol ||
                     (nd_is_float(tol_dtype) &&
                      nd_same(tol_dtype, g.f[k], g.i[k], want->f[k], want->i[k]))));
        if (!same) {
            if (nd_is_float(want->dtype))
                cr_assert(0, "%s: element %lld (C order) of shape %s is %.17g, expected %.17g",
                          what, (long long)k, s2, g.f[k], want->f[k]);
            else
                cr_assert(0, "%s: element %lld (C order) of shape %s is %lld, expected %lld",
                          what, (long long)k, s2, (long long)g.i[k], (long long)want->i[k]);
        }
    }
    nd_ref_free(&g);
}

static inline void nd_expect_ref(td_array *got, const nd_ref *want, const char *what) {
    nd_expect_ref_tol(got, want, 0.0, what);
}

/* C-order strides (in elements) of a shape. */
static inline void nd_c_strides(int ndim, const int64_t *shape, int64_t *strides) {
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        strides[d] = s;
        s *= shape[d];
    }
}

/* Unravels a C-order index. */
static inline void nd_unravel(int64_t k, int ndim, const int64_t *shape, int64_t *idx) {
    for (int d = ndim - 1; d >= 0; d--) {
        idx[d] = shape[d] ? k % shape[d] : 0;
        k = shape[d] ? k / shape[d] : 0;
    }
}

static inline void nd_ref_copy_elem(nd_ref *dst, int64_t kd, const nd_ref *src, int64_t ks) {
    dst->f[kd] = src->f[ks];
    dst->i[kd] = src->i[ks];
}

/* Python's slice.indices(n): the first index and the length. */
static inline void nd_py_slice(int64_t n, int64_t start, int64_t stop, int64_t step,
                               int64_t *first, int64_t *len) {
    if (start < 0) {
        start = start < -n ? (step < 0 ? -1 : 0) : start + n;
    } else if (start >= n) {
        start = step < 0 ? n - 1 : n;
    }
    if (stop < 0) {
        stop = stop < -n ? (step < 0 ? -1 : 0) : stop + n;
    } else if (stop >= n) {
        stop = step < 0 ? n - 1 : n;
    }
    *first = start;
    if (step < 0)
        *len = stop < start ? (start - stop - 1) / (-step) + 1 : 0;
    else
        *len = start < stop ? (stop - start - 1) / step + 1 : 0;
}

/* numpy's a[..., start:stop:step, ...] along axis. */
static inline nd_ref nd_ref_slice(const nd_ref *a, int axis, int64_t start, int64_t stop,
                                  int64_t step) {
    int64_t first, len;
    nd_py_slice(a->shape[axis], start, stop, step, &first, &len);
    int64_t shape[TD_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[axis] = len;
    nd_ref r = nd_ref_new(a->dtype, a->ndim, shape);
    int64_t astr[TD_MAX_DIMS], idx[TD_MAX_DIMS];
    nd_c_strides(a->ndim, a->shape, astr);
    for (int64_t k = 0; k < r.n; k++) {
        nd_unravel(k, r.ndim, r.shape, idx);
        int64_t src = 0;
        for (int d = 0; d < a->ndim; d++)
            src += (d == axis ? first + idx[d] * step : idx[d]) * astr[d];
        nd_ref_copy_elem(&r, k, a, src);
    }
    return r;
}

/* numpy's a.transpose(perm) (perm NULL: reversed axes). */
static inline nd_ref nd_ref_transpose(const nd_ref *a, const int *perm) {
    int p[TD_MAX_DIMS];
    for (int d = 0; d < a->ndim; d++) p[d] = perm ? perm[d] : a->ndim - 1 - d;
    int64_t shape[TD_MAX_DIMS] = {0}; /* all set below; gcc -O3 cannot tell through constprop */
    for (int d = 0; d < a->ndim; d++) shape[d] = a->shape[p[d]];
    nd_ref r = nd_ref_new(a->dtype, a->ndim, shape);
    int64_t astr[TD_MAX_DIMS], idx[TD_MAX_DIMS];
    nd_c_strides(a->ndim, a->shape, astr);
    for (int64_t k = 0; k < r.n; k++) {
        nd_unravel(k, r.ndim, r.shape, idx);
        int64_t src = 0;
        for (int d = 0; d < a->ndim; d++) src += idx[d] * astr[p[d]];
        nd_ref_copy_elem(&r, k, a, src);
    }
    return r;
}

/* numpy's broadcast of shapes a and b into out; 0 when they do not fit. */
static inline int nd_broadcast_shapes(int na, const int64_t *a, int nb, const int64_t *b, int *nout,
                                      int64_t *out) {
    int n = na > nb ? na : nb;
    for (int d = 0; d < n; d++) {
        int da = d - (n - na), db = d - (n - nb);
        int64_t x = da >= 0 ? a[da] : 1, y = db >= 0 ? b[db] : 1;
        if (x == y || y == 1)
            out[d] = x;
        else if (x == 1)
            out[d] = y;
        else
            return 0;
    }
    *nout = n;
    return 1;
}

/* Index into a of C-order element idx of a broadcast shape of rank n. */
static inline int64_t nd_ref_bindex(const nd_ref *a, int n, const int64_t *idx) {
    int64_t astr[TD_MAX_DIMS];
    nd_c_strides(a->ndim, a->shape, astr);
    int64_t src = 0;
    for (int d = 0; d < a->ndim; d++) {
        int64_t i = idx[d + n - a->ndim];
        src += (a->shape[d] == 1 ? 0 : i) * astr[d];
    }
    return src;
}

/* numpy's np.broadcast_to(a, shape) (the caller checks that it fits). */
static inline nd_ref nd_ref_broadcast(const nd_ref *a, int ndim, const int64_t *shape) {
    nd_ref r = nd_ref_new(a->dtype, ndim, shape);
    int64_t idx[TD_MAX_DIMS];
    for (int64_t k = 0; k < r.n; k++) {
        nd_unravel(k, ndim, shape, idx);
        nd_ref_copy_elem(&r, k, a, nd_ref_bindex(a, ndim, idx));
    }
    return r;
}

/* The same values with another shape of the same size (C order). */
static inline nd_ref nd_ref_reshape(const nd_ref *a, int ndim, const int64_t *shape) {
    nd_ref r = nd_ref_new(a->dtype, ndim, shape);
    cr_assert_eq(r.n, a->n);
    for (int64_t k = 0; k < r.n; k++) nd_ref_copy_elem(&r, k, a, k);
    return r;
}

/* A deep copy. */
static inline nd_ref nd_ref_clone(const nd_ref *a) { return nd_ref_reshape(a, a->ndim, a->shape); }

/* a converted to dtype, element by element (astype). */
static inline nd_ref nd_ref_astype(const nd_ref *a, int dtype) {
    nd_ref r = nd_ref_new(dtype, a->ndim, a->shape);
    for (int64_t k = 0; k < r.n; k++) {
        if (nd_is_float(a->dtype))
            nd_ref_put_f(&r, k, a->f[k]);
        else
            nd_ref_put_i(&r, k, a->i[k]);
    }
    return r;
}

/* ---- inputs of every layout ---------------------------------------------- */

/* How a test input is laid out in tide: the same logical values, reached
 * through different views. */
enum {
    ND_LAYOUT_CONTIG = 0,     /* a fresh array */
    ND_LAYOUT_STRIDED = 1,    /* step 2 on even axes, step -2 (negative indices) on odd */
    ND_LAYOUT_TRANSPOSED = 2, /* a transposed (random permutation) array */
    ND_LAYOUT_BROADCAST = 3,  /* broadcast_to from a smaller, lower-rank array */
    ND_LAYOUT_MIXED = 4,      /* a reversed-axes transpose of a strided slice */
    ND_NLAYOUTS = 5
};

static inline const char *nd_layout_name(int layout) {
    switch (layout) {
    case ND_LAYOUT_CONTIG: return "contiguous";
    case ND_LAYOUT_STRIDED: return "strided slice";
    case ND_LAYOUT_TRANSPOSED: return "transposed";
    case ND_LAYOUT_BROADCAST: return "broadcast_to";
    case ND_LAYOUT_MIXED: return "transposed slice";
    default: return "?";
    }
}

/* Replaces *a by v (the view), releasing the old handle. */
static inline void nd_swap_view(td_array **a, td_array *v, const char *what) {
    cr_assert_not_null(v, "%s failed: %s", what, td_last_error());
    td_release(*a);
    *a = v;
}

/* Strided view of *base along every axis (as ND_LAYOUT_STRIDED); the base
 * shape must be 2 * shape + 1. */
static inline td_array *nd_strided_view(td_array *base, nd_ref *rbase, nd_ref *out) {
    td_array *v = td_retain(base);
    nd_ref r = nd_ref_clone(rbase);
    for (int d = 0; d < rbase->ndim; d++) {
        int64_t n = rbase->shape[d];
        td_array *s;
        nd_ref rs;
        if (d % 2 == 0) {
            s = td_slice(v, d, 1, n, 2);
            rs = nd_ref_slice(&r, d, 1, n, 2);
        } else {
            s = td_slice(v, d, -1, -n, -2);
            rs = nd_ref_slice(&r, d, -1, -n, -2);
        }
        nd_swap_view(&v, s, "td_slice");
        nd_ref_free(&r);
        r = rs;
    }
    *out = r;
    return v;
}

/* An input of dtype/shape with random values (kind gen) laid out as layout.
 * *ref receives its logical values. */
static inline td_array *nd_make_input(int dtype, int ndim, const int64_t *shape, int layout,
                                      tt_rng *g, int gen, nd_ref *ref) {
    int64_t bshape[TD_MAX_DIMS];
    switch (layout) {
    case ND_LAYOUT_STRIDED: {
        for (int d = 0; d < ndim; d++) bshape[d] = 2 * shape[d] + 1;
        nd_ref rb;
        td_array *base = nd_make_random(&rb, dtype, ndim, bshape, g, gen);
        td_array *v = nd_strided_view(base, &rb, ref);
        td_release(base); /* the view keeps the storage */
        nd_ref_free(&rb);
        return v;
    }
    case ND_LAYOUT_TRANSPOSED: {
        int perm[TD_MAX_DIMS];
        for (int d = 0; d < ndim; d++) perm[d] = d;
        for (int d = ndim - 1; d > 0; d--) { /* Fisher-Yates */
            int j = (int)tt_rng_below(g, (unsigned)d + 1);
            int t = perm[d];
            perm[d] = perm[j];
            perm[j] = t;
        }
        /* transpose(base, perm).shape[d] = base.shape[perm[d]] */
        for (int d = 0; d < ndim; d++) bshape[perm[d]] = shape[d];
        nd_ref rb;
        td_array *base = nd_make_random(&rb, dtype, ndim, bshape, g, gen);
        td_array *v = td_transpose(base, perm);
        cr_assert_not_null(v, "td_transpose failed: %s", td_last_error());
        td_release(base);
        *ref = nd_ref_transpose(&rb, perm);
        nd_ref_free(&rb);
        return v;
    }
    case ND_LAYOUT_BROADCAST: {
        /* Drop the leading axis (rank mismatch) and make odd axes size 1. */
        int lead = ndim > 1 ? 1 : 0;
        int bn = ndim - lead;
        for (int d = 0; d < bn; d++)
            bshape[d] = ((d + lead) % 2 || ndim == 1) ? 1 : shape[d + lead];
        nd_ref rb;
        td_array *base = nd_make_random(&rb, dtype, bn, bshape, g, gen);
        td_array *v = td_broadcast_to(base, ndim, shape);
        cr_assert_not_null(v, "td_broadcast_to failed: %s", td_last_error());
        td_release(base);
        *ref = nd_ref_broadcast(&rb, ndim, shape);
        nd_ref_free(&rb);
        return v;
    }
    case ND_LAYOUT_MIXED: {
        /* transpose(slice(base)) with reversed axes: the slice has the
         * reversed shape. */
        for (int d = 0; d < ndim; d++) bshape[d] = 2 * shape[ndim - 1 - d] + 1;
        nd_ref rb, rs;
        td_array *base = nd_make_random(&rb, dtype, ndim, bshape, g, gen);
        td_array *s = nd_strided_view(base, &rb, &rs);
        td_release(base);
        td_array *v = td_transpose(s, NULL);
        cr_assert_not_null(v, "td_transpose failed: %s", td_last_error());
        td_release(s);
        *ref = nd_ref_transpose(&rs, NULL);
        nd_ref_free(&rs);
        nd_ref_free(&rb);
        return v;
    }
    default:
        return nd_make_random(ref, dtype, ndim, shape, g, gen);
    }
}

/* ---- a slow op, to hold an array's var while the test queues more ------- */

struct nd_slow {
    double ms;        /* sleep this long */
    td_array *arr;    /* then, if set, write values[k] (as double) to it */
    const double *values;
    atomic_int ran;
};

static inline td_status nd_slow_fn(void *arg, const td_exec *ex) {
    (void)ex;
    struct nd_slow *s = arg;
    tt_sleep_ms(s->ms);
    if (s->arr && s->values) {
        /* contiguous arrays only */
        void *p = td_data(s->arr);
        int64_t n = td_numel(s->arr);
        for (int64_t k = 0; k < n; k++) {
            switch (td_dtype(s->arr)) {
            case TD_F32: ((float *)p)[k] = (float)s->values[k]; break;
            case TD_F64: ((double *)p)[k] = s->values[k]; break;
            case TD_I32: ((int32_t *)p)[k] = (int32_t)s->values[k]; break;
            case TD_I64: ((int64_t *)p)[k] = (int64_t)s->values[k]; break;
            case TD_U8: ((uint8_t *)p)[k] = (uint8_t)s->values[k]; break;
            default: break;
            }
        }
    }
    atomic_fetch_add(&s->ran, 1);
    return TD_OK;
}

/* Pushes an op that sleeps `ms` and then writes `values` into the contiguous
 * array a (values NULL: writes nothing, but still holds a's var for write). */
static inline void nd_push_slow_write(struct nd_slow *s, td_array *a, double ms,
                                      const double *values) {
    s->ms = ms;
    s->arr = a;
    s->values = values;
    atomic_store(&s->ran, 0);
    td_var *v = td_array_var(a);
    cr_assert_not_null(v, "td_array_var returned NULL");
    td_op op = tt_op("slow_write", nd_slow_fn, s, NULL, 0, &v, 1);
    tt_push(&op);
}

#endif
