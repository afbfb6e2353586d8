/* Helpers of the math tests (suite 'math'): host reference arrays, inputs of
 * every layout, comparisons and the leak check.
 *
 * A reference (mr_arr) holds an array's logical values in C order: exact
 * int64 for integer dtypes, double for float dtypes (already rounded to f32
 * for TD_F32).  Inputs are built from a reference and then reached through a
 * view of the layout asked for (strided slice, transpose, broadcast), so a
 * test computes what to expect from the reference alone; nothing here calls
 * tide to compute a value.
 */
#ifndef TIDE_TESTS_MATH_MREF_H
#define TIDE_TESTS_MATH_MREF_H

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tide/tide.h>

#include "engine/common.h"

#define MR_FOR_EACH_DTYPE(d) for (int d = TD_F32; d <= TD_U8; d++)

static inline const char *mr_dt(int dt) {
    switch (dt) {
    case TD_F32: return "f32";
    case TD_F64: return "f64";
    case TD_I32: return "i32";
    case TD_I64: return "i64";
    case TD_U8: return "u8";
    default: return "bad-dtype";
    }
}
static inline int mr_is_float(int dt) { return dt == TD_F32 || dt == TD_F64; }

/* v converted to integer dtype dt the way C and numpy convert integers
 * (modulo the width). */
static inline int64_t mr_wrap(int dt, int64_t v) {
    switch (dt) {
    case TD_I32: return (int64_t)(int32_t)(uint32_t)(uint64_t)v;
    case TD_U8: return (int64_t)(uint8_t)(uint64_t)v;
    default: return v;
    }
}

/* ---- runtime and leak check ---------------------------------------------- */

static inline void mr_start(int engine, int workers) { tt_start(engine, workers); }

/* Every test ends here: no array, storage or storage byte is left after
 * td_wait_all() (storages of finished ops are dropped when the op retires,
 * which may trail the wait a little, so that part gets a bounded grace
 * period), then a clean shutdown. */
static inline void mr_finish(void) {
    cr_assert_eq(td_wait_all(), TD_OK, "td_wait_all: %s", td_last_error());
    td_array_stats s = td_array_stats_get();
    double end = tt_now() + 2.0;
    while ((s.live_storages || s.storage_bytes) && tt_now() < end) {
        tt_sleep_ms(1);
        s = td_array_stats_get();
    }
    cr_assert_eq(s.live_arrays, 0, "leak: %lld arrays live", (long long)s.live_arrays);
    cr_assert_eq(s.live_storages, 0, "leak: %lld storages live", (long long)s.live_storages);
    cr_assert_eq(s.storage_bytes, 0, "leak: %lld storage bytes", (long long)s.storage_bytes);
    tt_stop(TD_OK);
}

/* The seed of a randomised test: TIDE_TEST_SEED if set, else `fixed`;
 * printed so that a failure can be replayed. */
static inline uint64_t mr_seed(const char *test, uint64_t fixed) {
    const char *s = getenv("TIDE_TEST_SEED");
    uint64_t seed = (s && *s) ? strtoull(s, NULL, 0) : fixed;
    cr_log_info("%s: seed %" PRIu64 " (set TIDE_TEST_SEED to replay)", test, seed);
    return seed;
}

/* ---- references ----------------------------------------------------------- */

typedef struct {
    int dtype;
    int ndim;
    int64_t shape[TD_MAX_DIMS];
    int64_t n;
    double *f;  /* every dtype (for integers, (double)i[k]) */
    int64_t *i; /* integer dtypes */
} mr_arr;

static inline int64_t mr_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    return n;
}

static inline mr_arr mr_new(int dtype, int ndim, const int64_t *shape) {
    mr_arr r;
    memset(&r, 0, sizeof r);
    r.dtype = dtype;
    r.ndim = ndim;
    for (int d = 0; d < ndim; d++) r.shape[d] = shape[d];
    r.n = mr_numel(ndim, shape);
    size_t n = (size_t)(r.n > 0 ? r.n : 1);
    r.f = calloc(n, sizeof(double));
    r.i = calloc(n, sizeof(int64_t));
    cr_assert(r.f && r.i, "out of host memory");
    return r;
}

static inline void mr_free(mr_arr *r) {
    free(r->f);
    free(r->i);
    r->f = NULL;
    r->i = NULL;
}

/* Stores a value converted to the reference's dtype (floats to f32 round;
 * to integers the value must be integral and in range). */
static inline void mr_putf(mr_arr *r, int64_t k, double v) {
    if (mr_is_float(r->dtype)) {
        r->f[k] = r->dtype == TD_F32 ? (double)(float)v : v;
        r->i[k] = 0;
    } else {
        r->i[k] = mr_wrap(r->dtype, (int64_t)v);
        r->f[k] = (double)r->i[k];
    }
}
static inline void mr_puti(mr_arr *r, int64_t k, int64_t v) {
    if (mr_is_float(r->dtype)) {
        mr_putf(r, k, (double)v);
    } else {
        r->i[k] = mr_wrap(r->dtype, v);
        r->f[k] = (double)r->i[k];
    }
}

/* Kinds of random values. */
enum {
    MR_GENERAL = 0, /* floats uniform in [-8, 8] at full precision (and some exact zeros);
                       ints in [-40, 40] (u8: any) */
    MR_WIDE = 1,    /* as general, plus floats of magnitude 2^-63 .. 2^65 and ints near
                       their dtype's extremes */
};

static inline double mr_unit(tt_rng *g) { return (double)(tt_rng_next(g) >> 11) * 0x1p-53; }

static inline void mr_random(mr_arr *r, tt_rng *g, int kind) {
    for (int64_t k = 0; k < r->n; k++) {
        uint64_t u = tt_rng_next(g);
        if (mr_is_float(r->dtype)) {
            double v = mr_unit(g) * 16.0 - 8.0;
            if (u % 61 == 0) v = 0.0;
            if (kind == MR_WIDE && u % 5 == 1) v = ldexp(1.0 + mr_unit(g), (int)(u >> 8 & 127) - 63);
            if (kind == MR_WIDE && u % 10 == 1) v = -v;
            mr_putf(r, k, v);
        } else {
            int64_t v = r->dtype == TD_U8 ? (int64_t)(u % 256) : (int64_t)(u % 81) - 40;
            if (kind == MR_WIDE && u % 7 == 0) {
                int64_t off = (int64_t)(u >> 16 & 3);
                switch (r->dtype) {
                case TD_I32: v = (u >> 20 & 1) ? INT32_MAX - off : INT32_MIN + off; break;
                case TD_I64: v = (u >> 20 & 1) ? INT64_MAX - off : INT64_MIN + off; break;
                default: v = (u >> 20 & 1) ? 255 - off : off; break;
                }
            }
            mr_puti(r, k, v);
        }
    }
}

/* Host bytes of the values in the reference's dtype (malloc'ed). */
static inline void *mr_bytes(const mr_arr *r) {
    size_t es = td_dtype_size(r->dtype);
    char *buf = malloc(es * (size_t)(r->n > 0 ? r->n : 1));
    cr_assert_not_null(buf);
    for (int64_t k = 0; k < r->n; k++) {
        switch (r->dtype) {
        case TD_F32: ((float *)buf)[k] = (float)r->f[k]; break;
        case TD_F64: ((double *)buf)[k] = r->f[k]; break;
        case TD_I32: ((int32_t *)buf)[k] = (int32_t)r->i[k]; break;
        case TD_I64: ((int64_t *)buf)[k] = r->i[k]; break;
        default: ((uint8_t *)buf)[k] = (uint8_t)r->i[k]; break;
        }
    }
    return buf;
}

static inline void mr_load(mr_arr *r, const void *buf) {
    for (int64_t k = 0; k < r->n; k++) {
        switch (r->dtype) {
        case TD_F32: r->f[k] = ((const float *)buf)[k]; break;
        case TD_F64: r->f[k] = ((const double *)buf)[k]; break;
        case TD_I32: r->i[k] = ((const int32_t *)buf)[k]; break;
        case TD_I64: r->i[k] = ((const int64_t *)buf)[k]; break;
        default: r->i[k] = ((const uint8_t *)buf)[k]; break;
        }
        if (!mr_is_float(r->dtype)) r->f[k] = (double)r->i[k];
    }
}

/* A new contiguous tide array with the reference's values. */
static inline td_array *mr_make(const mr_arr *r) {
    void *buf = mr_bytes(r);
    td_array *a = td_from_host(buf, r->dtype, r->ndim, r->shape, td_cpu(0));
    free(buf);
    cr_assert_not_null(a, "td_from_host(%s): %s", mr_dt(r->dtype), td_last_error());
    return a;
}

/* The bytes of a tide array in C order (malloc'ed; *nbytes gets the size). */
static inline void *mr_fetch(td_array *a, size_t *nbytes) {
    size_t nb = td_dtype_size(td_dtype(a)) * (size_t)td_numel(a);
    void *buf = malloc(nb ? nb : 1);
    cr_assert_not_null(buf);
    td_status st = td_to_host(a, buf, nb);
    cr_assert_eq(st, TD_OK, "td_to_host: %s (%s)", td_status_name(st), td_last_error());
    *nbytes = nb;
    return buf;
}

/* A tide array's values as a reference. */
static inline mr_arr mr_read(td_array *a) {
    cr_assert_not_null(a);
    mr_arr r = mr_new(td_dtype(a), td_ndim(a), td_shape(a));
    size_t nb;
    void *buf = mr_fetch(a, &nb);
    mr_load(&r, buf);
    free(buf);
    return r;
}

static inline const char *mr_shape_str(char *buf, size_t size, int ndim, const int64_t *shape) {
    int n = snprintf(buf, size, "(");
    for (int i = 0; i < ndim && (size_t)n < size; i++)
        n += snprintf(buf + n, size - (size_t)n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (ndim == 1 && (size_t)n < size) n += snprintf(buf + n, size - (size_t)n, ",");
    if ((size_t)n < size) snprintf(buf + n, size - (size_t)n, ")");
    return buf;
}

/* Whether a float result g agrees with the reference w: NaN with NaN,
 * infinities and zeros exactly (with their sign), others within rel * |w|
 * plus a few of the dtype's smallest subnormals (results there have lost
 * relative precision in any implementation).  rel == 0: exactly. */
static inline int mr_close(int dt, double g, double w, double rel) {
    if (isnan(w) || isnan(g)) return isnan(w) && isnan(g);
    if (isinf(w) || w == 0 || rel == 0) return g == w && signbit(g) == signbit(w);
    double slack = dt == TD_F32 ? 4.0 * FLT_TRUE_MIN : 4.0 * DBL_TRUE_MIN;
    return fabs(g - w) <= rel * fabs(w) + slack;
}

/* Checks that `got` has want's dtype, shape and values (floats within rel, as
 * mr_close; integers exactly).  `in` (may be NULL): the input reference,
 * printed with a failing element. */
static inline void mr_expect(td_array *got, const mr_arr *want, double rel, const mr_arr *in, const char *what) {
    cr_assert_not_null(got, "%s: NULL (%s: %s)", what, td_status_name(td_last_status()), td_last_error());
    cr_assert_eq(td_dtype(got), want->dtype, "%s: dtype %s, expected %s", what, mr_dt(td_dtype(got)),
                 mr_dt(want->dtype));
    char s1[128], s2[128];
    int same = td_ndim(got) == want->ndim;
    for (int d = 0; same && d < want->ndim; d++) same = td_shape(got)[d] == want->shape[d];
    cr_assert(same, "%s: shape %s, expected %s", what, mr_shape_str(s1, sizeof s1, td_ndim(got), td_shape(got)),
              mr_shape_str(s2, sizeof s2, want->ndim, want->shape));
    mr_arr g = mr_read(got);
    for (int64_t k = 0; k < want->n; k++) {
        int ok = mr_is_float(want->dtype) ? mr_close(want->dtype, g.f[k], want->f[k], rel) : g.i[k] == want->i[k];
        if (ok) continue;
        double x = in && k < in->n ? in->f[k] : NAN;
        long long xi = in && k < in->n ? (long long)in->i[k] : 0;
        if (mr_is_float(want->dtype))
            cr_assert(0, "%s: element %lld of %s is %.17g (%a), expected %.17g (%a); input %.17g (%a) / %lld",
                      what, (long long)k, s2, g.f[k], g.f[k], want->f[k], want->f[k], x, x, xi);
        else
            cr_assert(0, "%s: element %lld of %s is %lld, expected %lld; input %.17g / %lld", what, (long long)k,
                      s2, (long long)g.i[k], (long long)want->i[k], x, xi);
    }
    mr_free(&g);
}

/* ---- inputs of every layout ---------------------------------------------- */

enum {
    MR_CONTIG = 0,     /* a fresh array */
    MR_STRIDED = 1,    /* step 2 from 1 on even axes, step -2 from the end on odd axes */
    MR_TRANSPOSED = 2, /* a transpose (axes rotated) of a contiguous array */
    MR_BROADCAST = 3,  /* broadcast_to from an array without the first axis and with odd axes
                          1 (1-d: from one element) */
    MR_NLAYOUTS = 4
};

static inline const char *mr_layout_name(int l) {
    switch (l) {
    case MR_CONTIG: return "contiguous";
    case MR_STRIDED: return "strided";
    case MR_TRANSPOSED: return "transposed";
    case MR_BROADCAST: return "broadcast";
    default: return "?";
    }
}

static inline void mr_unravel(int64_t k, int ndim, const int64_t *shape, int64_t *idx) {
    for (int d = ndim - 1; d >= 0; d--) {
        idx[d] = shape[d] ? k % shape[d] : 0;
        k = shape[d] ? k / shape[d] : 0;
    }
}
static inline int64_t mr_ravel(int ndim, const int64_t *shape, const int64_t *idx) {
    int64_t k = 0;
    for (int d = 0; d < ndim; d++) k = k * shape[d] + idx[d];
    return k;
}

static inline void mr_copy_elem(mr_arr *dst, int64_t kd, const mr_arr *src, int64_t ks) {
    dst->f[kd] = src->f[ks];
    dst->i[kd] = src->i[ks];
}

/* An input of this dtype and shape holding random values (kind), reached
 * through the layout; *ref gets its logical values.  The caller releases the
 * result (views keep their base's storage). */
static inline td_array *mr_input(int dtype, int ndim, const int64_t *shape, int layout, tt_rng *g, int kind,
                                 mr_arr *ref) {
    int64_t bshape[TD_MAX_DIMS], idx[TD_MAX_DIMS], bidx[TD_MAX_DIMS];
    if (layout == MR_BROADCAST && ndim > 0) {
        int lead = ndim > 1;
        int bn = ndim - lead;
        for (int d = 0; d < bn; d++) bshape[d] = ((d + lead) % 2 || ndim == 1) ? 1 : shape[d + lead];
        mr_arr small = mr_new(dtype, bn, bshape);
        mr_random(&small, g, kind);
        *ref = mr_new(dtype, ndim, shape);
        for (int64_t k = 0; k < ref->n; k++) {
            mr_unravel(k, ndim, shape, idx);
            for (int d = 0; d < bn; d++) bidx[d] = bshape[d] == 1 ? 0 : idx[d + lead];
            mr_copy_elem(ref, k, &small, mr_ravel(bn, bshape, bidx));
        }
        td_array *base = mr_make(&small);
        td_array *v = td_broadcast_to(base, ndim, shape);
        cr_assert_not_null(v, "td_broadcast_to: %s", td_last_error());
        td_release(base);
        mr_free(&small);
        return v;
    }
    *ref = mr_new(dtype, ndim, shape);
    mr_random(ref, g, kind);
    if (layout == MR_STRIDED && ndim > 0) {
        for (int d = 0; d < ndim; d++) bshape[d] = 2 * shape[d] + 1;
        mr_arr base = mr_new(dtype, ndim, bshape);
        for (int64_t k = 0; k < base.n; k++) mr_puti(&base, k, 99); /* never read */
        for (int64_t k = 0; k < ref->n; k++) {
            mr_unravel(k, ndim, shape, idx);
            for (int d = 0; d < ndim; d++) bidx[d] = d % 2 == 0 ? 1 + 2 * idx[d] : bshape[d] - 1 - 2 * idx[d];
            mr_copy_elem(&base, mr_ravel(ndim, bshape, bidx), ref, k);
        }
        td_array *v = mr_make(&base);
        for (int d = 0; d < ndim; d++) {
            td_array *s = d % 2 == 0 ? td_slice(v, d, 1, bshape[d], 2) : td_slice(v, d, -1, -bshape[d], -2);
            cr_assert_not_null(s, "td_slice: %s", td_last_error());
            td_release(v);
            v = s;
        }
        mr_free(&base);
        return v;
    }
    if (layout == MR_TRANSPOSED && ndim > 1) {
        /* perm rotates the axes: view.shape[d] = base.shape[perm[d]]. */
        int perm[TD_MAX_DIMS];
        for (int d = 0; d < ndim; d++) perm[d] = (d + 1) % ndim;
        for (int d = 0; d < ndim; d++) bshape[perm[d]] = shape[d];
        mr_arr base = mr_new(dtype, ndim, bshape);
        for (int64_t k = 0; k < ref->n; k++) {
            mr_unravel(k, ndim, shape, idx);
            for (int d = 0; d < ndim; d++) bidx[perm[d]] = idx[d];
            mr_copy_elem(&base, mr_ravel(ndim, bshape, bidx), ref, k);
        }
        td_array *b = mr_make(&base);
        td_array *v = td_transpose(b, perm);
        cr_assert_not_null(v, "td_transpose: %s", td_last_error());
        td_release(b);
        mr_free(&base);
        return v;
    }
    return mr_make(ref);
}

/* Expects a failure: a NULL result, td_last_status() == want and a message
 * naming fn. */
static inline void mr_expect_fail(td_array *r, td_status want, const char *fn, const char *what) {
    cr_assert_null(r, "%s: returned an array, expected %s", what, td_status_name(want));
    cr_assert_eq(td_last_status(), want, "%s: status %s (%s), expected %s", what, td_status_name(td_last_status()),
                 td_last_error(), td_status_name(want));
    cr_assert(tt_has(td_last_error(), fn), "%s: the message \"%s\" does not name %s", what, td_last_error(), fn);
}

#endif
