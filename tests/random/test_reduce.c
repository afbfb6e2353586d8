/* Reductions and softmax (suite 'reduce').
 *
 * Every result is checked against a plain reference written here in double
 * precision (int64, wrapping, for integer sums and products), with a
 * tolerance derived from the op's error bound: for float sums about 50 ulps
 * of the sum of magnitudes (the lanes, block tree and cascade of
 * ops/reduce.c), exact for max, min, argmax, argmin and integers.  Inputs
 * come in every layout of tests/ndarray/nd.h (contiguous, strided with
 * negative steps, transposed, broadcast, transposed slice), every axis and
 * TD_ALL_AXES, both keepdims, every dtype.  Reductions along one axis must
 * also be bit-identical to the same reduction of a contiguous copy, and
 * large reductions bit-identical on the naive engine and on 1 to 4 workers.
 */
#include "ndarray/nd.h"

enum { Q_SUM, Q_MEAN, Q_MAX, Q_MIN, Q_PROD, Q_ARGMAX, Q_ARGMIN, Q_LSE, Q_VAR, Q_N };
static const char *q_name[Q_N] = {"sum", "mean", "max", "min", "prod", "argmax", "argmin", "logsumexp", "variance"};

static td_array *q_call(int q, td_array *a, int axis, int keep) {
    switch (q) {
    case Q_SUM: return td_sum(a, axis, keep);
    case Q_MEAN: return td_mean(a, axis, keep);
    case Q_MAX: return td_max(a, axis, keep);
    case Q_MIN: return td_min(a, axis, keep);
    case Q_PROD: return td_prod(a, axis, keep);
    case Q_ARGMAX: return td_argmax(a, axis, keep);
    case Q_ARGMIN: return td_argmin(a, axis, keep);
    case Q_LSE: return td_logsumexp(a, axis, keep);
    default: return td_variance(a, axis, keep);
    }
}

/* numpy's result dtype. */
static int q_dtype(int q, int dt) {
    switch (q) {
    case Q_MAX: case Q_MIN: return dt;
    case Q_ARGMAX: case Q_ARGMIN: return TD_I64;
    case Q_SUM: case Q_PROD: return nd_is_float(dt) ? dt : TD_I64;
    default: return nd_is_float(dt) ? dt : TD_F64;
    }
}

static double eps_of(int dt) { return dt == TD_F32 ? 0x1p-24 : 0x1p-53; }

/* A reference reduction and the tolerance of each output. */
typedef struct {
    nd_ref r;
    double *tol;
} qref;

/* Output shape of a reduction of a (axis normalised, or TD_ALL_AXES). */
static int out_shape(const nd_ref *a, int axis, int keep, int64_t *shape) {
    int n = 0;
    for (int d = 0; d < a->ndim; d++) {
        if (axis == TD_ALL_AXES || d == axis) {
            if (keep) shape[n++] = 1;
        } else {
            shape[n++] = a->shape[d];
        }
    }
    return n;
}

static qref q_ref(int q, const nd_ref *a, int axis_in, int keep) {
    int nd = a->ndim;
    int axis = axis_in == TD_ALL_AXES ? TD_ALL_AXES : (axis_in < 0 ? axis_in + nd : axis_in);
    int64_t oshape[TD_MAX_DIMS];
    int on = out_shape(a, axis, keep, oshape);
    qref R;
    R.r = nd_ref_new(q_dtype(q, a->dtype), on, oshape);
    R.tol = calloc((size_t)(R.r.n > 0 ? R.r.n : 1), sizeof(double));
    int64_t kshape[TD_MAX_DIMS], rshape[TD_MAX_DIMS];
    int kdims[TD_MAX_DIMS], rdims[TD_MAX_DIMS], kn = 0, rn = 0;
    for (int d = 0; d < nd; d++) {
        if (axis == TD_ALL_AXES || d == axis) rdims[rn] = d, rshape[rn++] = a->shape[d];
        else kdims[kn] = d, kshape[kn++] = a->shape[d];
    }
    int64_t M = nd_numel(kn, kshape), L = nd_numel(rn, rshape);
    int64_t astr[TD_MAX_DIMS], kidx[TD_MAX_DIMS], ridx[TD_MAX_DIMS];
    nd_c_strides(nd, a->shape, astr);
    int fl = nd_is_float(a->dtype), cdt = nd_is_float(a->dtype) ? a->dtype : TD_F64;
    double *xs = malloc(sizeof(double) * (size_t)(L > 0 ? L : 1));
    int64_t *is = malloc(sizeof(int64_t) * (size_t)(L > 0 ? L : 1));
    int64_t *roff = malloc(sizeof(int64_t) * (size_t)(L > 0 ? L : 1));
    for (int64_t r = 0; r < L; r++) {
        nd_unravel(r, rn, rshape, ridx);
        roff[r] = 0;
        for (int j = 0; j < rn; j++) roff[r] += ridx[j] * astr[rdims[j]];
    }
    for (int64_t k = 0; k < M; k++) {
        nd_unravel(k, kn, kshape, kidx);
        int64_t base = 0;
        for (int j = 0; j < kn; j++) base += kidx[j] * astr[kdims[j]];
        for (int64_t r = 0; r < L; r++) {
            xs[r] = a->f[base + roff[r]];
            is[r] = a->i[base + roff[r]];
        }
        double v = 0, tol = 0, s1 = 0;
        int64_t iv = 0;
        for (int64_t r = 0; r < L; r++) s1 += fabs(xs[r]);
        switch (q) {
        case Q_SUM:
        case Q_MEAN:
            if (!fl && q == Q_SUM) {
                uint64_t u = 0;
                for (int64_t r = 0; r < L; r++) u += (uint64_t)is[r];
                iv = (int64_t)u;
                break;
            }
            long double acc = 0;
            for (int64_t r = 0; r < L; r++) acc += xs[r];
            v = (double)acc;
            tol = 64 * eps_of(cdt) * s1;
            if (q == Q_MEAN) v /= (double)L, tol = tol / (double)L + 2 * eps_of(cdt) * fabs(v);
            break;
        case Q_PROD:
            if (!fl) {
                uint64_t u = 1;
                for (int64_t r = 0; r < L; r++) u *= (uint64_t)is[r];
                iv = (int64_t)u;
                break;
            }
            long double pr = 1;
            for (int64_t r = 0; r < L; r++) pr *= xs[r];
            v = (double)pr;
            tol = 2.0 * (double)(L + 2) * eps_of(cdt) * fabs(v);
            break;
        case Q_MAX:
        case Q_MIN:
        case Q_ARGMAX:
        case Q_ARGMIN: {
            int mx = q == Q_MAX || q == Q_ARGMAX;
            int64_t b = 0;
            for (int64_t r = 1; r < L; r++) {
                if (fl && isnan(xs[b])) break;
                if (fl && isnan(xs[r])) {
                    b = r;
                    break;
                }
                int better = fl ? (mx ? xs[r] > xs[b] : xs[r] < xs[b]) : (mx ? is[r] > is[b] : is[r] < is[b]);
                if (better) b = r;
            }
            if (q == Q_ARGMAX || q == Q_ARGMIN) iv = b;
            else if (fl) v = xs[b];
            else iv = is[b];
            break;
        }
        case Q_LSE: {
            double m = -INFINITY;
            int nan = 0;
            for (int64_t r = 0; r < L; r++) {
                if (isnan(xs[r])) nan = 1;
                else if (xs[r] > m) m = xs[r];
            }
            if (nan) {
                v = NAN;
                break;
            }
            double sh = isfinite(m) ? m : 0;
            long double s = 0;
            for (int64_t r = 0; r < L; r++) s += exp(xs[r] - sh);
            v = (double)(sh + logl(s));
            tol = 64 * eps_of(cdt) * (1 + fabs(v));
            break;
        }
        default: { /* variance */
            long double mean = 0, s2 = 0, acc = 0;
            for (int64_t r = 0; r < L; r++) mean += xs[r], s2 += (long double)xs[r] * xs[r];
            mean /= (long double)L;
            for (int64_t r = 0; r < L; r++) acc += (xs[r] - mean) * (xs[r] - mean);
            v = (double)(acc / (long double)L);
            tol = 64 * eps_of(cdt) * ((double)s2 / (double)L + s1 * s1 / ((double)L * (double)L));
            break;
        }
        }
        /* C-order position of output k: the kept dims keep their order. */
        if (nd_is_float(R.r.dtype)) nd_ref_put_f(&R.r, k, v);
        else nd_ref_put_i(&R.r, k, iv);
        if (nd_is_float(R.r.dtype)) R.tol[k] = tol + eps_of(R.r.dtype) * fabs(v) + 1e-300;
    }
    free(xs);
    free(is);
    free(roff);
    return R;
}

static void qref_free(qref *R) {
    nd_ref_free(&R->r);
    free(R->tol);
}

/* got against the reference, within each output's tolerance. */
static void expect_q(td_array *got, const qref *want, const char *what) {
    cr_assert_not_null(got, "%s: NULL result (%s: %s)", what, td_status_name(td_last_status()), td_last_error());
    cr_assert_eq(td_dtype(got), want->r.dtype, "%s: dtype %s, expected %s", what, nd_dt(td_dtype(got)),
                 nd_dt(want->r.dtype));
    char s1[128], s2[128];
    int same = td_ndim(got) == want->r.ndim;
    for (int d = 0; same && d < want->r.ndim; d++) same = td_shape(got)[d] == want->r.shape[d];
    cr_assert(same, "%s: shape %s, expected %s", what, nd_shape_str(s1, sizeof s1, td_ndim(got), td_shape(got)),
              nd_shape_str(s2, sizeof s2, want->r.ndim, want->r.shape));
    nd_ref g = nd_read(got);
    for (int64_t k = 0; k < want->r.n; k++) {
        if (!nd_is_float(want->r.dtype)) {
            cr_assert_eq(g.i[k], want->r.i[k], "%s: output %lld is %lld, expected %lld", what, (long long)k,
                         (long long)g.i[k], (long long)want->r.i[k]);
            continue;
        }
        double x = g.f[k], w = want->r.f[k];
        int ok = isnan(w) ? isnan(x) : (isinf(w) || isinf(x)) ? x == w : fabs(x - w) <= want->tol[k];
        cr_assert(ok, "%s: output %lld is %.17g, expected %.17g (tolerance %.3g)", what, (long long)k, x, w,
                  want->tol[k]);
    }
    nd_ref_free(&g);
}

/* Whether two arrays hold the same bytes (same dtype and shape). */
static void expect_same_bits(td_array *x, td_array *y, const char *what) {
    cr_assert_not_null(x, "%s: %s", what, td_last_error());
    cr_assert_not_null(y, "%s: %s", what, td_last_error());
    cr_assert_eq(td_dtype(x), td_dtype(y), "%s: dtypes differ", what);
    cr_assert_eq(td_numel(x), td_numel(y), "%s: sizes differ", what);
    size_t nb = td_dtype_size(td_dtype(x)) * (size_t)td_numel(x);
    char *bx = malloc(nb + 1), *by = malloc(nb + 1);
    cr_assert_eq(td_to_host(x, bx, nb), TD_OK, "%s: %s", what, td_last_error());
    cr_assert_eq(td_to_host(y, by, nb), TD_OK, "%s: %s", what, td_last_error());
    cr_assert(memcmp(bx, by, nb) == 0, "%s: results differ in their bits", what);
    free(bx);
    free(by);
}

/* Values near 1 (floats) or small (integers), for products of many terms. */
static void fill_for_prod(nd_ref *r, tt_rng *g) {
    for (int64_t k = 0; k < r->n; k++) {
        uint64_t u = tt_rng_next(g);
        if (nd_is_float(r->dtype)) nd_ref_put_f(r, k, 1.0 + (double)((int64_t)(u % 33) - 16) / 64.0);
        else nd_ref_put_i(r, k, (int64_t)(u % 7) - 3);
    }
}

static const int axes[] = {0, 1, 2, -1, -2, -3, TD_ALL_AXES};

/* Every op, axis, keepdims, dtype and layout of a 3-D shape. */
static void sweep(const int64_t *shape, int nlayouts, const int *layouts, int both_keep, uint64_t seed) {
    tt_rng g = {seed};
    char what[256];
    ND_FOR_EACH_DTYPE(dt) {
        for (int li = 0; li < nlayouts; li++) {
            int layout = layouts[li];
            td_scope_begin();
            nd_ref ref;
            td_array *a = nd_make_input(dt, 3, shape, layout, &g, ND_GEN_GENERAL, &ref);
            td_array *ac = nd_make(&ref); /* a contiguous copy of the same values */
            for (size_t ai = 0; ai < sizeof axes / sizeof axes[0]; ai++) {
                for (int keep = 0; keep <= both_keep; keep++) {
                    for (int q = 0; q < Q_N; q++) {
                        /* Long float products overflow to inf * 0 = NaN in an order-dependent
                         * way: products_of_many_terms covers them with values near 1. */
                        int64_t len = axes[ai] == TD_ALL_AXES ? ref.n : ref.shape[(axes[ai] + 3) % 3];
                        if (q == Q_PROD && nd_is_float(dt) && len > 100) continue;
                        snprintf(what, sizeof what, "%s(%s %s (%lld, %lld, %lld), axis %d, keepdims %d)", q_name[q],
                                 nd_dt(dt), nd_layout_name(layout), (long long)shape[0], (long long)shape[1],
                                 (long long)shape[2], axes[ai] == TD_ALL_AXES ? 99 : axes[ai], keep);
                        td_array *r = q_call(q, a, axes[ai], keep);
                        qref want = q_ref(q, &ref, axes[ai], keep);
                        expect_q(r, &want, what);
                        qref_free(&want);
                        if (axes[ai] != TD_ALL_AXES) expect_same_bits(r, q_call(q, ac, axes[ai], keep), what);
                        td_release(r);
                    }
                }
            }
            nd_ref_free(&ref);
            td_scope_end();
        }
    }
}

Test(reduce, every_op_axis_dtype_and_layout_of_small_3d_arrays, .timeout = 120) {
    nd_start(TD_ENGINE_THREADED, 2);
    uint64_t seed = nd_seed("reduce sweep", 501);
    static const int all_layouts[] = {ND_LAYOUT_CONTIG, ND_LAYOUT_STRIDED, ND_LAYOUT_TRANSPOSED, ND_LAYOUT_BROADCAST,
                                      ND_LAYOUT_MIXED};
    sweep((int64_t[]){5, 3, 70}, 5, all_layouts, 1, seed);
    sweep((int64_t[]){2, 9, 1}, 5, all_layouts, 1, seed + 1);
    nd_finish();
}

/* Axes longer than a block (256) and many column tiles: the cascade. */
Test(reduce, every_op_axis_and_dtype_of_larger_3d_arrays, .timeout = 120) {
    nd_start(TD_ENGINE_THREADED, 2);
    uint64_t seed = nd_seed("reduce larger sweep", 502);
    static const int layouts[] = {ND_LAYOUT_CONTIG, ND_LAYOUT_TRANSPOSED, ND_LAYOUT_MIXED};
    sweep((int64_t[]){3, 300, 70}, 3, layouts, 0, seed);
    nd_finish();
}

/* Six dims (one of size 1) in every layout: the kept dims are sorted and
 * merged, the reduced ones gathered across rows. */
Test(reduce, every_axis_of_six_dimensional_arrays, .timeout = 60) {
    nd_start(TD_ENGINE_THREADED, 2);
    tt_rng g = {nd_seed("six dims", 507)};
    const int64_t shape[6] = {2, 3, 1, 4, 2, 3};
    char what[160];
    for (int dt = TD_F32; dt <= TD_U8; dt += 2) { /* f32, i32, u8 */
        for (int layout = 0; layout < ND_NLAYOUTS; layout++) {
            td_scope_begin();
            nd_ref ref;
            td_array *a = nd_make_input(dt, 6, shape, layout, &g, ND_GEN_GENERAL, &ref);
            for (int axis = -6; axis <= 6; axis++) {
                int ax = axis == 6 ? TD_ALL_AXES : axis;
                for (int q = 0; q < Q_N; q++) {
                    if (q == Q_PROD && nd_is_float(dt) && ax == TD_ALL_AXES) continue;
                    snprintf(what, sizeof what, "%s(%s %s 6-d, axis %d)", q_name[q], nd_dt(dt),
                             nd_layout_name(layout), axis);
                    qref w = q_ref(q, &ref, ax, axis % 2 == 0);
                    expect_q(q_call(q, a, ax, axis % 2 == 0), &w, what);
                    qref_free(&w);
                }
            }
            nd_ref_free(&ref);
            td_scope_end();
        }
    }
    nd_finish();
}

Test(reduce, products_of_many_terms, .timeout = 60) {
    nd_start(TD_ENGINE_THREADED, 2);
    tt_rng g = {nd_seed("products", 503)};
    ND_FOR_EACH_DTYPE(dt) {
        td_scope_begin();
        int64_t shape[2] = {40, 900};
        nd_ref ref = nd_ref_new(dt, 2, shape);
        fill_for_prod(&ref, &g);
        td_array *a = nd_make(&ref);
        td_array *at = td_transpose(a, NULL);
        nd_ref reft = nd_ref_transpose(&ref, NULL);
        for (int axis = 0; axis < 2; axis++) {
            qref w = q_ref(Q_PROD, &ref, axis, 0);
            expect_q(td_prod(a, axis, TD_DROPDIMS), &w, "prod along an axis");
            qref_free(&w);
            w = q_ref(Q_PROD, &reft, axis, 0);
            expect_q(td_prod(at, axis, TD_DROPDIMS), &w, "prod of a transpose along an axis");
            qref_free(&w);
        }
        td_array *small = td_slice(a, 1, 0, 5, 1);
        nd_ref rs = nd_ref_slice(&ref, 1, 0, 5, 1);
        qref w = q_ref(Q_PROD, &rs, TD_ALL_AXES, 1);
        expect_q(td_prod(small, TD_ALL_AXES, TD_KEEPDIMS), &w, "prod of every axis");
        qref_free(&w);
        nd_ref_free(&rs);
        nd_ref_free(&ref);
        nd_ref_free(&reft);
        td_scope_end();
    }
    nd_finish();
}

Test(reduce, result_dtypes_follow_numpy, .timeout = 30) {
    nd_start(TD_ENGINE_NAIVE, 1);
    td_scope_begin();
    ND_FOR_EACH_DTYPE(dt) {
        td_array *a = td_ones(dt, 2, (int64_t[]){2, 3}, td_cpu(0));
        for (int q = 0; q < Q_N; q++) {
            td_array *r = q_call(q, a, 1, TD_DROPDIMS);
            cr_assert_not_null(r, "%s(%s): %s", q_name[q], nd_dt(dt), td_last_error());
            cr_assert_eq(td_dtype(r), q_dtype(q, dt), "%s(%s) gives %s", q_name[q], nd_dt(dt), nd_dt(td_dtype(r)));
        }
        int sdt = nd_is_float(dt) ? dt : TD_F64;
        cr_assert_eq(td_dtype(td_softmax(a, 0)), sdt);
        cr_assert_eq(td_dtype(td_log_softmax(a, 1)), sdt);
    }
    td_scope_end();
    nd_finish();
}

Test(reduce, integer_sums_and_products_wrap_without_overflow, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    int64_t big[4] = {INT64_MAX, INT64_MAX, 5, INT64_MIN};
    td_array *a = td_from_host(big, TD_I64, 1, (int64_t[]){4}, td_cpu(0));
    nd_ref r = nd_read(td_sum(a, 0, TD_DROPDIMS));
    cr_assert_eq(r.i[0], (int64_t)((uint64_t)INT64_MAX * 2 + 5 + (uint64_t)INT64_MIN));
    nd_ref_free(&r);
    r = nd_read(td_prod(a, 0, TD_DROPDIMS));
    cr_assert_eq(r.i[0], (int64_t)((uint64_t)INT64_MAX * (uint64_t)INT64_MAX * 5 * (uint64_t)INT64_MIN));
    nd_ref_free(&r);
    /* u8 and i32 sums are int64: no wrap at 256 or 2^31. */
    td_array *u = td_full(TD_U8, 1, (int64_t[]){1000}, 255, td_cpu(0));
    r = nd_read(td_sum(u, TD_ALL_AXES, TD_DROPDIMS));
    cr_assert_eq(r.i[0], 255000);
    nd_ref_free(&r);
    td_array *i = td_full(TD_I32, 1, (int64_t[]){3}, 2147483647.0, td_cpu(0));
    r = nd_read(td_sum(i, 0, TD_DROPDIMS));
    cr_assert_eq(r.i[0], 3 * (int64_t)2147483647);
    nd_ref_free(&r);
    r = nd_read(td_mean(i, 0, TD_DROPDIMS));
    cr_assert_eq(r.f[0], 2147483647.0);
    nd_ref_free(&r);
    /* max/min of u8 and i32 keep the dtype and every value. */
    uint8_t uv[5] = {3, 250, 7, 250, 0};
    td_array *ua = td_from_host(uv, TD_U8, 1, (int64_t[]){5}, td_cpu(0));
    r = nd_read(td_max(ua, 0, TD_DROPDIMS));
    cr_assert_eq(r.dtype, TD_U8);
    cr_assert_eq(r.i[0], 250);
    nd_ref_free(&r);
    r = nd_read(td_argmax(ua, 0, TD_DROPDIMS));
    cr_assert_eq(r.i[0], 1, "argmax is the first index of the maximum");
    nd_ref_free(&r);
    r = nd_read(td_argmin(ua, 0, TD_DROPDIMS));
    cr_assert_eq(r.i[0], 4);
    nd_ref_free(&r);
    td_scope_end();
    nd_finish();
}

/* Empty reductions: sum 0, prod 1, mean and variance NaN, logsumexp -inf; max,
 * min, argmax and argmin of an empty axis fail at push time. */
Test(reduce, empty_axes_and_single_elements, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    ND_FOR_EACH_DTYPE(dt) {
        td_array *e = td_zeros(dt, 2, (int64_t[]){3, 0}, td_cpu(0));
        nd_ref r = nd_read(td_sum(e, 1, TD_DROPDIMS));
        cr_assert_eq(r.n, 3);
        for (int k = 0; k < 3; k++) cr_assert_eq(r.f[k], 0.0);
        nd_ref_free(&r);
        r = nd_read(td_prod(e, 1, TD_KEEPDIMS));
        cr_assert_eq(r.ndim, 2);
        cr_assert_eq(r.shape[1], 1);
        for (int k = 0; k < 3; k++) cr_assert_eq(r.f[k], 1.0);
        nd_ref_free(&r);
        r = nd_read(td_mean(e, TD_ALL_AXES, TD_DROPDIMS));
        cr_assert_eq(r.ndim, 0);
        cr_assert(isnan(r.f[0]), "mean of nothing is NaN");
        nd_ref_free(&r);
        r = nd_read(td_variance(e, 1, TD_DROPDIMS));
        for (int k = 0; k < 3; k++) cr_assert(isnan(r.f[k]), "variance of nothing is NaN");
        nd_ref_free(&r);
        r = nd_read(td_logsumexp(e, 1, TD_DROPDIMS));
        for (int k = 0; k < 3; k++) cr_assert(isinf(r.f[k]) && r.f[k] < 0, "logsumexp of nothing is -inf");
        nd_ref_free(&r);
        /* Reducing a non-empty axis of an empty array: an empty result. */
        r = nd_read(td_max(e, 0, TD_DROPDIMS));
        cr_assert_eq(r.n, 0);
        cr_assert_eq(r.shape[0], 0);
        nd_ref_free(&r);
        r = nd_read(td_argmin(td_zeros(dt, 2, (int64_t[]){0, 0}, td_cpu(0)), 1, TD_DROPDIMS));
        cr_assert_eq(r.n, 0);
        nd_ref_free(&r);
        r = nd_read(td_softmax(e, 1));
        cr_assert_eq(r.n, 0);
        nd_ref_free(&r);
        /* Max and friends of an empty axis have no identity. */
        td_array *(*fns[4])(td_array *, int, int) = {td_max, td_min, td_argmax, td_argmin};
        const char *names[4] = {"maximum", "minimum", "argmax", "argmin"};
        for (int f = 0; f < 4; f++) {
            td_clear_error();
            nd_expect_null(fns[f](e, 1, TD_DROPDIMS), TD_EINVAL, "zero-size array", names[f]);
            cr_assert(tt_has(td_last_error(), names[f]), "message: %s", td_last_error());
            cr_assert(nd_msg_has_shape(td_last_error(), 2, (int64_t[]){3, 0}), "message: %s", td_last_error());
            td_clear_error();
            nd_expect_null(fns[f](e, TD_ALL_AXES, TD_KEEPDIMS), TD_EINVAL, "no identity", names[f]);
        }
        td_array *out = td_zeros(dt, 1, (int64_t[]){3}, td_cpu(0));
        td_clear_error();
        nd_expect_status(td_max_out(e, 1, TD_DROPDIMS, out), TD_EINVAL, "zero-size array", "td_max_out");
        /* One element, 0-d, and size-1 axes. */
        double one = 2.5;
        td_array *s = td_astype(td_from_host(&one, TD_F64, 0, NULL, td_cpu(0)), dt);
        for (int q = 0; q < Q_N; q++) {
            nd_ref rs = nd_read(s);
            qref w = q_ref(q, &rs, TD_ALL_AXES, TD_KEEPDIMS);
            expect_q(q_call(q, s, TD_ALL_AXES, TD_KEEPDIMS), &w, q_name[q]);
            qref_free(&w);
            nd_ref_free(&rs);
        }
        td_array *col = td_full(dt, 2, (int64_t[]){4, 1}, 3, td_cpu(0));
        for (int q = 0; q < Q_N; q++) {
            nd_ref rc = nd_read(col);
            qref w = q_ref(q, &rc, 1, TD_DROPDIMS);
            expect_q(q_call(q, col, 1, TD_DROPDIMS), &w, q_name[q]);
            qref_free(&w);
            nd_ref_free(&rc);
        }
    }
    td_scope_end();
    nd_finish();
}

/* NaN propagates through max, min, sum and logsumexp; argmax and argmin give
 * the first NaN, as numpy.  Also in long axes (chunked) and columns. */
Test(reduce, nan_propagates_and_argmax_finds_the_first_nan, .timeout = 60) {
    nd_start(TD_ENGINE_THREADED, 2);
    for (int dt = TD_F32; dt <= TD_F64; dt++) {
        td_scope_begin();
        static const int64_t lens[] = {5, 300, 140000};
        for (int li = 0; li < 3; li++) {
            int64_t n = lens[li];
            nd_ref ref = nd_ref_new(dt, 2, (int64_t[]){3, n});
            for (int64_t k = 0; k < ref.n; k++) nd_ref_put_f(&ref, k, (double)((k * 7919) % 1001) / 8.0 - 60);
            /* Row 0: NaNs at n/2 and n-1; row 1: a NaN at 0 and a maximum; row 2: none. */
            ref.f[n / 2] = NAN;
            ref.f[n - 1] = NAN;
            ref.f[n] = NAN;
            ref.f[2 * n + 1] = 1e6;
            td_array *a = nd_make(&ref);
            td_array *at = td_contiguous(td_transpose(a, NULL)); /* (n, 3): reduced by columns */
            td_array *t = td_transpose(at, NULL);               /* the same values, another layout */
            for (int q = 0; q < Q_N; q++) {
                if (q == Q_PROD) continue;
                qref w = q_ref(q, &ref, 1, TD_DROPDIMS);
                char what[128];
                snprintf(what, sizeof what, "%s of %s rows of %lld with NaN", q_name[q], nd_dt(dt), (long long)n);
                expect_q(q_call(q, a, 1, TD_DROPDIMS), &w, what);
                expect_q(q_call(q, t, 1, TD_DROPDIMS), &w, what);
                qref_free(&w);
                w = q_ref(q, &ref, TD_ALL_AXES, TD_DROPDIMS);
                expect_q(q_call(q, a, TD_ALL_AXES, TD_DROPDIMS), &w, what);
                qref_free(&w);
            }
            nd_ref r = nd_read(td_argmax(a, 1, TD_DROPDIMS));
            cr_assert_eq(r.i[0], n / 2);
            cr_assert_eq(r.i[1], 0);
            cr_assert_eq(r.i[2], 1);
            nd_ref_free(&r);
            r = nd_read(td_argmin(a, TD_ALL_AXES, TD_DROPDIMS));
            cr_assert_eq(r.i[0], n / 2, "the flat index of the first NaN");
            nd_ref_free(&r);
            nd_ref_free(&ref);
        }
        td_scope_end();
    }
    nd_finish();
}

/* Infinities: logsumexp of -inf rows is -inf, of a +inf row +inf; softmax of
 * huge values stays finite. */
Test(reduce, infinities_and_huge_values_are_stable, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    for (int dt = TD_F32; dt <= TD_F64; dt++) {
        double v[3][4] = {{-INFINITY, -INFINITY, -INFINITY, -INFINITY}, {1, INFINITY, 2, 3}, {1000, 1001, 999, 1000}};
        td_array *a = td_astype(td_from_host(v, TD_F64, 2, (int64_t[]){3, 4}, td_cpu(0)), dt);
        nd_ref r = nd_read(td_logsumexp(a, 1, TD_DROPDIMS));
        cr_assert(isinf(r.f[0]) && r.f[0] < 0);
        cr_assert(isinf(r.f[1]) && r.f[1] > 0);
        double want = 1001 + log(exp(-1.0) * 2 + 1 + exp(-2.0));
        cr_assert_float_eq(r.f[2], want, 1e-3);
        nd_ref_free(&r);
        r = nd_read(td_softmax(td_slice(a, 0, 2, 3, 1), 1));
        double s = 0;
        for (int k = 0; k < 4; k++) {
            cr_assert(isfinite(r.f[k]), "softmax of large values is finite");
            s += r.f[k];
        }
        cr_assert_float_eq(s, 1.0, 1e-6);
        nd_ref_free(&r);
        r = nd_read(td_log_softmax(td_slice(a, 0, 2, 3, 1), 1));
        cr_assert_float_eq(r.f[1], -log(exp(-1.0) * 2 + 1 + exp(-2.0)), 1e-5);
        nd_ref_free(&r);
    }
    td_scope_end();
    nd_finish();
}

/* ---- softmax and log_softmax ---- */
static nd_ref softmax_ref(const nd_ref *a, int axis_in, int lg, double *tol) {
    int nd = a->ndim, axis = axis_in < 0 ? axis_in + nd : axis_in;
    int dt = nd_is_float(a->dtype) ? a->dtype : TD_F64;
    nd_ref r = nd_ref_new(dt, nd, a->shape);
    int64_t str[TD_MAX_DIMS];
    nd_c_strides(nd, a->shape, str);
    int64_t n = a->shape[axis], s = str[axis];
    *tol = 0;
    for (int64_t k = 0; k < a->n; k++) {
        if ((k / s) % n != 0) continue; /* k: the first element of a line along axis */
        double m = -INFINITY, sum = 0;
        for (int64_t j = 0; j < n; j++) m = fmax(m, a->f[k + j * s]);
        if (!isfinite(m)) m = 0;
        for (int64_t j = 0; j < n; j++) sum += exp(a->f[k + j * s] - m);
        for (int64_t j = 0; j < n; j++) {
            double x = a->f[k + j * s] - m;
            nd_ref_put_f(&r, k + j * s, lg ? x - log(sum) : exp(x) / sum);
            double t = 64 * eps_of(dt) * (1 + fabs(x) + fabs(log(sum)));
            if (t > *tol) *tol = t;
        }
    }
    return r;
}

Test(reduce, softmax_and_log_softmax_every_axis_dtype_and_layout, .timeout = 60) {
    nd_start(TD_ENGINE_THREADED, 2);
    tt_rng g = {nd_seed("softmax sweep", 504)};
    static const int64_t shapes[2][3] = {{4, 5, 70}, {3, 300, 2}};
    for (int si = 0; si < 2; si++) {
        ND_FOR_EACH_DTYPE(dt) {
            for (int layout = 0; layout < ND_NLAYOUTS; layout++) {
                td_scope_begin();
                nd_ref ref;
                td_array *a = nd_make_input(dt, 3, shapes[si], layout, &g, ND_GEN_GENERAL, &ref);
                td_array *ac = nd_make(&ref);
                for (int axis = -3; axis < 3; axis++) {
                    for (int lg = 0; lg < 2; lg++) {
                        char what[160];
                        snprintf(what, sizeof what, "%s(%s %s, axis %d)", lg ? "log_softmax" : "softmax", nd_dt(dt),
                                 nd_layout_name(layout), axis);
                        double tol;
                        nd_ref want = softmax_ref(&ref, axis, lg, &tol);
                        td_array *r = lg ? td_log_softmax(a, axis) : td_softmax(a, axis);
                        nd_expect_ref_tol(r, &want, tol, what);
                        expect_same_bits(r, lg ? td_log_softmax(ac, axis) : td_softmax(ac, axis), what);
                        nd_ref_free(&want);
                    }
                }
                nd_ref_free(&ref);
                td_scope_end();
            }
        }
    }
    nd_finish();
}

/* ---- out forms ---- */
Test(reduce, out_forms_write_into_existing_arrays, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    tt_rng g = {nd_seed("out forms", 505)};
    td_scope_begin();
    nd_ref ref;
    td_array *a = nd_make_random(&ref, TD_F32, 2, (int64_t[]){6, 7}, &g, ND_GEN_GENERAL);
    /* Into float64 (a safe cast), strided out, keepdims. */
    td_array *base = td_zeros(TD_F64, 2, (int64_t[]){3, 14}, td_cpu(0));
    td_array *out = td_slice(td_slice(base, 0, 1, 2, 1), 1, 0, 14, 2); /* (1, 7), stride 2 */
    cr_assert_eq(td_sum_out(a, 0, TD_KEEPDIMS, out), TD_OK, "%s", td_last_error());
    qref w = q_ref(Q_SUM, &ref, 0, 1);
    nd_ref got = nd_read(out);
    for (int k = 0; k < 7; k++) cr_assert_float_eq(got.f[k], w.r.f[k], w.tol[k]);
    nd_ref_free(&got);
    qref_free(&w);
    nd_ref b = nd_read(base);
    for (int64_t k = 0; k < b.n; k++)
        if (!(k / 14 == 1 && k % 2 == 0))
            cr_assert_eq(b.f[k], 0.0, "element %lld outside out was written", (long long)k);
    nd_ref_free(&b);
    /* mean, max and min into f32 outs; max of i32 into i64. */
    td_array *o6 = td_zeros(TD_F32, 1, (int64_t[]){6}, td_cpu(0));
    int qs[3] = {Q_MEAN, Q_MAX, Q_MIN};
    for (int i = 0; i < 3; i++) {
        td_status st = qs[i] == Q_MEAN ? td_mean_out(a, -1, TD_DROPDIMS, o6)
                       : qs[i] == Q_MAX ? td_max_out(a, -1, TD_DROPDIMS, o6)
                                        : td_min_out(a, -1, TD_DROPDIMS, o6);
        cr_assert_eq(st, TD_OK, "%s", td_last_error());
        qref wq = q_ref(qs[i], &ref, 1, 0);
        expect_q(o6, &wq, q_name[qs[i]]);
        qref_free(&wq);
    }
    nd_ref ri;
    td_array *ai = nd_make_random(&ri, TD_I32, 2, (int64_t[]){6, 7}, &g, ND_GEN_GENERAL);
    td_array *o64 = td_zeros(TD_I64, 0, NULL, td_cpu(0));
    cr_assert_eq(td_max_out(ai, TD_ALL_AXES, TD_DROPDIMS, o64), TD_OK, "%s", td_last_error());
    qref wi = q_ref(Q_MAX, &ri, TD_ALL_AXES, 0);
    nd_ref gi = nd_read(o64);
    cr_assert_eq(gi.i[0], wi.r.i[0]);
    nd_ref_free(&gi);
    qref_free(&wi);
    /* The int64 sum of i32 into an i32 out (same kind, wraps as numpy's cast). */
    td_array *o32 = td_zeros(TD_I32, 1, (int64_t[]){7}, td_cpu(0));
    cr_assert_eq(td_sum_out(ai, 0, TD_DROPDIMS, o32), TD_OK, "%s", td_last_error());
    wi = q_ref(Q_SUM, &ri, 0, 0);
    gi = nd_read(o32);
    for (int k = 0; k < 7; k++) cr_assert_eq(gi.i[k], wi.r.i[k]);
    nd_ref_free(&gi);
    qref_free(&wi);
    /* out overlapping the input: the result is as if a were read first. */
    nd_ref rc;
    td_array *c = nd_make_random(&rc, TD_F64, 2, (int64_t[]){4, 3}, &g, ND_GEN_GENERAL);
    td_array *row0 = td_slice(c, 0, 0, 1, 1);
    cr_assert_eq(td_sum_out(c, 0, TD_KEEPDIMS, row0), TD_OK, "%s", td_last_error());
    qref wc = q_ref(Q_SUM, &rc, 0, 1);
    expect_q(row0, &wc, "sum into the input's first row");
    qref_free(&wc);
    /* Bad outs: shape, dtype, NULL. */
    td_clear_error();
    nd_expect_status(td_sum_out(a, 0, TD_DROPDIMS, o6), TD_ESHAPE, "td_sum", "out of the wrong shape");
    cr_assert(nd_msg_has_shape(td_last_error(), 1, (int64_t[]){6}) &&
                  nd_msg_has_shape(td_last_error(), 1, (int64_t[]){7}),
              "the message names both shapes: %s", td_last_error());
    td_array *oi = td_zeros(TD_I32, 1, (int64_t[]){7}, td_cpu(0));
    td_clear_error();
    nd_expect_status(td_sum_out(a, 0, TD_DROPDIMS, oi), TD_EDTYPE, "td_sum", "float sum into an int out");
    td_clear_error();
    nd_expect_status(td_mean_out(ai, 0, TD_DROPDIMS, oi), TD_EDTYPE, "td_mean", "float mean into an int out");
    td_clear_error();
    nd_expect_status(td_min_out(a, 0, TD_DROPDIMS, NULL), TD_EINVAL, "td_min_out", "NULL out");
    td_clear_error();
    nd_expect_status(td_max_out(NULL, 0, TD_DROPDIMS, oi), TD_EINVAL, "td_max_out", "NULL input");
    nd_ref_free(&ref);
    nd_ref_free(&ri);
    nd_ref_free(&rc);
    td_scope_end();
    nd_finish();
}

/* ---- bad input ---- */
Test(reduce, bad_arguments_fail_with_a_message, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    td_array *a = td_zeros(TD_F32, 3, (int64_t[]){2, 3, 4}, td_cpu(0));
    for (int q = 0; q < Q_N; q++) {
        char fn[32];
        snprintf(fn, sizeof fn, "td_%s", q_name[q]);
        td_clear_error();
        nd_expect_null(q_call(q, a, 3, TD_DROPDIMS), TD_EINVAL, fn, "axis 3 of a 3-d array");
        cr_assert(nd_msg_has_shape(td_last_error(), 3, (int64_t[]){2, 3, 4}), "%s", td_last_error());
        td_clear_error();
        nd_expect_null(q_call(q, a, -4, TD_DROPDIMS), TD_EINVAL, fn, "axis -4 of a 3-d array");
        td_clear_error();
        nd_expect_null(q_call(q, a, 0, 2), TD_EINVAL, fn, "keepdims 2");
        /* NULL in: NULL out, the previous error kept. */
        td_array *r = q_call(q, NULL, 0, TD_DROPDIMS);
        cr_assert_null(r);
        cr_assert_eq(td_last_status(), TD_EINVAL, "a NULL input keeps the previous error");
        cr_assert(tt_has(td_last_error(), "keepdims"), "%s", td_last_error());
    }
    td_array *z = td_zeros(TD_F64, 0, NULL, td_cpu(0));
    td_clear_error();
    nd_expect_null(td_sum(z, 0, TD_DROPDIMS), TD_EINVAL, "td_sum", "axis 0 of a 0-d array");
    td_clear_error();
    nd_expect_null(td_softmax(a, 3), TD_EINVAL, "td_softmax", "softmax axis 3");
    td_clear_error();
    nd_expect_null(td_log_softmax(a, TD_ALL_AXES), TD_EINVAL, "td_log_softmax", "log_softmax of every axis");
    td_clear_error();
    nd_expect_null(td_softmax(z, 0), TD_EINVAL, "td_softmax", "softmax of a 0-d array");
    cr_assert_null(td_softmax(NULL, 0));
    cr_assert_null(td_log_softmax(NULL, 0));
    cr_assert_eq(td_last_status(), TD_EINVAL);
    cr_assert(tt_has(td_last_error(), "td_softmax"), "the previous error is kept: %s", td_last_error());
    /* One check at the end of an expression finds the first failure. */
    td_clear_error();
    td_array *chain = td_mul_scalar(td_sum(td_max(a, 7, TD_DROPDIMS), 0, TD_DROPDIMS), 2.0);
    cr_assert_null(chain);
    cr_assert(tt_has(td_last_error(), "td_max"), "%s", td_last_error());
    td_scope_end();
    nd_finish();
}

/* ---- large inputs: the same bits on every engine and worker count ---- */
enum { BIG = 3000000, NRUN_RES = 20 };

typedef struct {
    void *bytes[NRUN_RES];
    size_t nbytes[NRUN_RES];
    int n;
} runres;

static void keep_result(runres *rr, td_array *r, const char *what) {
    cr_assert_not_null(r, "%s: %s", what, td_last_error());
    size_t nb = td_dtype_size(td_dtype(r)) * (size_t)td_numel(r);
    rr->bytes[rr->n] = malloc(nb);
    rr->nbytes[rr->n] = nb;
    cr_assert_eq(td_to_host(r, rr->bytes[rr->n], nb), TD_OK, "%s: %s", what, td_last_error());
    rr->n++;
}

/* x is a (BIG,) f32 vector and xi an i32 one (as references). */
static void big_program(const nd_ref *x, const nd_ref *xi, int engine, int workers, runres *rr, int check) {
    nd_start(engine, workers);
    td_scope_begin();
    td_array *v = nd_make(x), *vi = nd_make(xi);
    td_array *m3 = td_reshape(v, 2, (int64_t[]){3, BIG / 3});     /* 3 long rows */
    td_array *c3 = td_reshape(v, 2, (int64_t[]){BIG / 3, 3});     /* 3 long columns */
    td_array *sq = td_reshape(v, 2, (int64_t[]){1500, BIG / 1500}); /* many outputs */
    td_array *t = td_transpose(td_reshape(vi, 2, (int64_t[]){BIG / 3, 3}), NULL);
    rr->n = 0;
    keep_result(rr, td_sum(v, TD_ALL_AXES, TD_DROPDIMS), "sum of 3M");
    keep_result(rr, td_mean(v, 0, TD_DROPDIMS), "mean of 3M");
    keep_result(rr, td_variance(v, TD_ALL_AXES, TD_DROPDIMS), "variance of 3M");
    keep_result(rr, td_logsumexp(v, 0, TD_KEEPDIMS), "logsumexp of 3M");
    keep_result(rr, td_argmax(v, 0, TD_DROPDIMS), "argmax of 3M");
    keep_result(rr, td_max(v, TD_ALL_AXES, TD_DROPDIMS), "max of 3M");
    keep_result(rr, td_sum(m3, 1, TD_DROPDIMS), "sum of 3 rows");
    keep_result(rr, td_sum(c3, 0, TD_DROPDIMS), "sum of 3 columns");
    keep_result(rr, td_variance(c3, 0, TD_DROPDIMS), "variance of 3 columns");
    keep_result(rr, td_argmin(c3, 0, TD_DROPDIMS), "argmin of 3 columns");
    keep_result(rr, td_sum(sq, 0, TD_DROPDIMS), "sum of a matrix by columns");
    keep_result(rr, td_mean(sq, 1, TD_DROPDIMS), "mean of a matrix by rows");
    keep_result(rr, td_sum(t, 1, TD_DROPDIMS), "int sum of a transposed (3, 1M)");
    keep_result(rr, td_mean(t, -1, TD_DROPDIMS), "int mean of a transposed (3, 1M)");
    keep_result(rr, td_softmax(c3, 0), "softmax of 3 columns");
    keep_result(rr, td_log_softmax(sq, 1), "log_softmax of a matrix by rows");
    if (check) {
        nd_ref rx = nd_ref_reshape(x, 2, (int64_t[]){3, BIG / 3});
        nd_ref cx = nd_ref_reshape(x, 2, (int64_t[]){BIG / 3, 3});
        nd_ref ix = nd_ref_reshape(xi, 2, (int64_t[]){BIG / 3, 3});
        nd_ref it = nd_ref_transpose(&ix, NULL);
        struct {
            int q;
            const nd_ref *a;
            int axis, keep;
            td_array *r;
        } checks[] = {
            {Q_SUM, x, TD_ALL_AXES, 0, td_sum(v, TD_ALL_AXES, 0)},  {Q_VAR, x, 0, 0, td_variance(v, 0, 0)},
            {Q_LSE, x, 0, 1, td_logsumexp(v, 0, 1)},                 {Q_ARGMAX, x, 0, 0, td_argmax(v, 0, 0)},
            {Q_SUM, &rx, 1, 0, td_sum(m3, 1, 0)},                    {Q_SUM, &cx, 0, 0, td_sum(c3, 0, 0)},
            {Q_VAR, &cx, 0, 0, td_variance(c3, 0, 0)},               {Q_ARGMIN, &cx, 0, 0, td_argmin(c3, 0, 0)},
            {Q_SUM, &it, 1, 0, td_sum(t, 1, 0)},                     {Q_MEAN, &it, 1, 0, td_mean(t, 1, 0)},
        };
        for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
            qref w = q_ref(checks[i].q, checks[i].a, checks[i].axis, checks[i].keep);
            expect_q(checks[i].r, &w, q_name[checks[i].q]);
            qref_free(&w);
        }
        nd_ref_free(&rx);
        nd_ref_free(&cx);
        nd_ref_free(&ix);
        nd_ref_free(&it);
    }
    td_scope_end();
    nd_finish();
}

Test(reduce, large_reductions_are_bit_identical_on_every_engine_and_worker_count, .timeout = 240) {
    tt_rng g = {nd_seed("large reductions", 506)};
    nd_ref x = nd_ref_new(TD_F32, 1, (int64_t[]){BIG});
    nd_ref xi = nd_ref_new(TD_I32, 1, (int64_t[]){BIG});
    for (int64_t k = 0; k < BIG; k++) {
        uint64_t u = tt_rng_next(&g);
        nd_ref_put_f(&x, k, (double)(u % 100000) / 7919.0 - 5.0); /* not exact in f32: rounding shows */
        nd_ref_put_i(&xi, k, (int64_t)((u >> 20) % 2000001) - 1000000);
    }
    runres first, other;
    big_program(&x, &xi, TD_ENGINE_NAIVE, 1, &first, 1);
    for (int workers = 1; workers <= 4; workers++) {
        big_program(&x, &xi, TD_ENGINE_THREADED, workers, &other, 0);
        cr_assert_eq(other.n, first.n);
        for (int i = 0; i < first.n; i++) {
            cr_assert_eq(other.nbytes[i], first.nbytes[i]);
            cr_assert(memcmp(other.bytes[i], first.bytes[i], first.nbytes[i]) == 0,
                      "result %d differs between the naive engine and %d threaded worker(s)", i, workers);
            free(other.bytes[i]);
        }
    }
    for (int i = 0; i < first.n; i++) free(first.bytes[i]);
    nd_ref_free(&x);
    nd_ref_free(&xi);
}

/* A float32 sum of 3M equal terms keeps its accuracy (a plain running sum
 * would be off by about 10%). */
Test(reduce, float32_sums_of_millions_of_terms_stay_accurate, .timeout = 60) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    td_array *a = td_full(TD_F32, 1, (int64_t[]){BIG}, 0.1, td_cpu(0));
    double exact = (double)BIG * (double)0.1f;
    nd_ref r = nd_read(td_sum(a, 0, TD_DROPDIMS));
    cr_assert(fabs(r.f[0] - exact) <= 1e-6 * exact, "sum %.9g, exact %.9g", r.f[0], exact);
    nd_ref_free(&r);
    r = nd_read(td_sum(td_reshape(a, 2, (int64_t[]){BIG / 3, 3}), 0, TD_DROPDIMS));
    for (int k = 0; k < 3; k++)
        cr_assert(fabs(r.f[k] - exact / 3) <= 1e-6 * exact / 3, "column sum %.9g, exact %.9g", r.f[k], exact / 3);
    nd_ref_free(&r);
    r = nd_read(td_mean(a, 0, TD_DROPDIMS));
    cr_assert(fabs(r.f[0] - (double)0.1f) <= 1e-6, "mean %.9g", r.f[0]);
    nd_ref_free(&r);
    r = nd_read(td_variance(a, 0, TD_DROPDIMS));
    cr_assert(fabs(r.f[0]) <= 1e-9, "variance of equal values %.9g", r.f[0]);
    nd_ref_free(&r);
    td_scope_end();
    nd_finish();
}
