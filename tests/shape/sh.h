/* Helpers of the shape and indexing tests (suite 'shape').
 *
 * Plain references for concat, stack, tile, flip, pad, take, one_hot, pick
 * and scatter_add, written here from numpy's definitions on nd_ref (values
 * in C order: exact int64 for integer dtypes, double for floats); nothing in
 * here calls tide to compute a value.  Also: the same values of a tide array
 * laid out another way (for index arrays, whose values the test chooses), and
 * the runs on every engine and worker count for the bit-identity checks.
 *
 * Builds on tests/ndarray/nd.h (reference arrays, inputs of every layout,
 * expected failures, the leak check every test ends with).
 */
#ifndef TIDE_TESTS_SHAPE_SH_H
#define TIDE_TESTS_SHAPE_SH_H

#include "ndarray/nd.h"

/* ---- element access ---- */

/* dst[kd] = src[ks], converted to dst's dtype as numpy's astype (integers
 * wrap, floats to integers truncate). */
static inline void sh_put_from(nd_ref *dst, int64_t kd, const nd_ref *src, int64_t ks) {
    if (nd_is_float(src->dtype))
        nd_ref_put_f(dst, kd, src->f[ks]);
    else
        nd_ref_put_i(dst, kd, src->i[ks]);
}

/* The C-order index of multi-index idx in a reference of this shape. */
static inline int64_t sh_ravel(int ndim, const int64_t *shape, const int64_t *idx) {
    int64_t k = 0;
    for (int d = 0; d < ndim; d++) k = k * shape[d] + idx[d];
    return k;
}

static inline int sh_axis(int axis, int ndim) { return axis < 0 ? axis + ndim : axis; }

/* ---- shape ops ---- */

/* numpy.concatenate(refs, axis).astype(dtype); shapes must fit. */
static inline nd_ref sh_ref_concat(const nd_ref *const *refs, int n, int axis, int dtype) {
    int nd = refs[0]->ndim, ax = sh_axis(axis, nd);
    int64_t shape[TD_MAX_DIMS], idx[TD_MAX_DIMS];
    memcpy(shape, refs[0]->shape, sizeof shape);
    shape[ax] = 0;
    for (int i = 0; i < n; i++) shape[ax] += refs[i]->shape[ax];
    nd_ref r = nd_ref_new(dtype, nd, shape);
    for (int64_t k = 0; k < r.n; k++) {
        nd_unravel(k, nd, shape, idx);
        int i = 0;
        while (idx[ax] >= refs[i]->shape[ax]) idx[ax] -= refs[i++]->shape[ax];
        sh_put_from(&r, k, refs[i], sh_ravel(nd, refs[i]->shape, idx));
    }
    return r;
}

/* numpy.stack(refs, axis).astype(dtype). */
static inline nd_ref sh_ref_stack(const nd_ref *const *refs, int n, int axis, int dtype) {
    int nd = refs[0]->ndim + 1, ax = sh_axis(axis, nd);
    int64_t shape[TD_MAX_DIMS], idx[TD_MAX_DIMS], sidx[TD_MAX_DIMS];
    for (int d = 0, k = 0; d < nd; d++) shape[d] = d == ax ? n : refs[0]->shape[k++];
    nd_ref r = nd_ref_new(dtype, nd, shape);
    for (int64_t k = 0; k < r.n; k++) {
        nd_unravel(k, nd, shape, idx);
        for (int d = 0, m = 0; d < nd; d++)
            if (d != ax) sidx[m++] = idx[d];
        const nd_ref *s = refs[idx[ax]];
        sh_put_from(&r, k, s, sh_ravel(s->ndim, s->shape, sidx));
    }
    return r;
}

/* numpy.tile(a, reps[:n]). */
static inline nd_ref sh_ref_tile(const nd_ref *a, int n, const int64_t *reps) {
    int nd = n > a->ndim ? n : a->ndim;
    int64_t ashape[TD_MAX_DIMS], shape[TD_MAX_DIMS], idx[TD_MAX_DIMS], sidx[TD_MAX_DIMS];
    for (int d = 0; d < nd; d++) {
        int da = d - (nd - a->ndim), dr = d - (nd - n);
        ashape[d] = da >= 0 ? a->shape[da] : 1;
        shape[d] = ashape[d] * (dr >= 0 ? reps[dr] : 1);
    }
    nd_ref r = nd_ref_new(a->dtype, nd, shape);
    for (int64_t k = 0; k < r.n; k++) {
        nd_unravel(k, nd, shape, idx);
        for (int d = 0; d < nd; d++) sidx[d] = idx[d] % ashape[d];
        nd_ref_copy_elem(&r, k, a, sh_ravel(nd, ashape, sidx));
    }
    return r;
}

/* numpy.flip(a, axis) (TD_ALL_AXES: every axis). */
static inline nd_ref sh_ref_flip(const nd_ref *a, int axis) {
    nd_ref r = nd_ref_new(a->dtype, a->ndim, a->shape);
    int64_t idx[TD_MAX_DIMS];
    int ax = axis == TD_ALL_AXES ? -1 : sh_axis(axis, a->ndim);
    for (int64_t k = 0; k < r.n; k++) {
        nd_unravel(k, a->ndim, a->shape, idx);
        for (int d = 0; d < a->ndim; d++)
            if (ax < 0 || d == ax) idx[d] = a->shape[d] - 1 - idx[d];
        nd_ref_copy_elem(&r, k, a, sh_ravel(a->ndim, a->shape, idx));
    }
    return r;
}

/* numpy.pad(a, list(zip(before, after)), constant_values=value); value is
 * stored as numpy's astype stores it (tests keep it in range). */
static inline nd_ref sh_ref_pad(const nd_ref *a, const int64_t *before, const int64_t *after, double value) {
    int64_t shape[TD_MAX_DIMS], idx[TD_MAX_DIMS];
    for (int d = 0; d < a->ndim; d++) shape[d] = before[d] + a->shape[d] + after[d];
    nd_ref r = nd_ref_new(a->dtype, a->ndim, shape);
    for (int64_t k = 0; k < r.n; k++) {
        nd_unravel(k, a->ndim, shape, idx);
        int inside = 1;
        for (int d = 0; d < a->ndim; d++) {
            idx[d] -= before[d];
            inside &= idx[d] >= 0 && idx[d] < a->shape[d];
        }
        if (inside)
            nd_ref_copy_elem(&r, k, a, sh_ravel(a->ndim, a->shape, idx));
        else
            nd_ref_put_f(&r, k, value);
    }
    return r;
}

/* ---- indexing ops (index values in idx->i; the caller keeps them in range) ---- */

static inline int64_t sh_wrap(int64_t k, int64_t n) { return k < 0 ? k + n : k; }

/* numpy.take(a, idx, axis). */
static inline nd_ref sh_ref_take(const nd_ref *a, const nd_ref *idx, int axis) {
    int ax = sh_axis(axis, a->ndim);
    int64_t shape[TD_MAX_DIMS], oi[TD_MAX_DIMS], ai[TD_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < ax; d++) shape[nd++] = a->shape[d];
    for (int d = 0; d < idx->ndim; d++) shape[nd++] = idx->shape[d];
    for (int d = ax + 1; d < a->ndim; d++) shape[nd++] = a->shape[d];
    nd_ref r = nd_ref_new(a->dtype, nd, shape);
    for (int64_t k = 0; k < r.n; k++) {
        nd_unravel(k, nd, shape, oi);
        for (int d = 0; d < ax; d++) ai[d] = oi[d];
        int64_t j = sh_ravel(idx->ndim, idx->shape, oi + ax);
        ai[ax] = sh_wrap(idx->i[j], a->shape[ax]);
        for (int d = ax + 1; d < a->ndim; d++) ai[d] = oi[d - 1 + idx->ndim];
        nd_ref_copy_elem(&r, k, a, sh_ravel(a->ndim, a->shape, ai));
    }
    return r;
}

/* numpy.eye(depth, dtype=dtype)[idx]. */
static inline nd_ref sh_ref_one_hot(const nd_ref *idx, int64_t depth, int dtype) {
    int64_t shape[TD_MAX_DIMS];
    memcpy(shape, idx->shape, sizeof(int64_t) * (size_t)idx->ndim);
    shape[idx->ndim] = depth;
    nd_ref r = nd_ref_new(dtype, idx->ndim + 1, shape);
    for (int64_t q = 0; q < idx->n; q++)
        for (int64_t c = 0; c < depth; c++) nd_ref_put_i(&r, q * depth + c, c == sh_wrap(idx->i[q], depth));
    return r;
}

/* numpy.take_along_axis(a, expand_dims(idx, axis), axis).squeeze(axis). */
static inline nd_ref sh_ref_pick(const nd_ref *a, const nd_ref *idx, int axis) {
    int ax = sh_axis(axis, a->ndim);
    nd_ref r = nd_ref_new(a->dtype, idx->ndim, idx->shape);
    int64_t oi[TD_MAX_DIMS], ai[TD_MAX_DIMS];
    for (int64_t k = 0; k < r.n; k++) {
        nd_unravel(k, idx->ndim, idx->shape, oi);
        for (int d = 0, m = 0; d < a->ndim; d++) ai[d] = d == ax ? sh_wrap(idx->i[k], a->shape[ax]) : oi[m++];
        nd_ref_copy_elem(&r, k, a, sh_ravel(a->ndim, a->shape, ai));
    }
    return r;
}

/* numpy.add.at(dst, (slice(None),) * axis + (idx,), src) in dst's dtype: the
 * updates of one element added one by one in index order (floats rounded to
 * dst's dtype after each addition, integers wrapping); src converted to
 * dst's dtype first. */
static inline void sh_ref_scatter_add(nd_ref *dst, const nd_ref *idx, const nd_ref *src, int axis) {
    int ax = sh_axis(axis, dst->ndim);
    int64_t si[TD_MAX_DIMS], di[TD_MAX_DIMS];
    nd_ref one = nd_ref_new(dst->dtype, 0, NULL);
    for (int64_t k = 0; k < src->n; k++) { /* C order: for each dst element, index order */
        nd_unravel(k, src->ndim, src->shape, si);
        for (int d = 0; d < ax; d++) di[d] = si[d];
        int64_t j = sh_ravel(idx->ndim, idx->shape, si + ax);
        di[ax] = sh_wrap(idx->i[j], dst->shape[ax]);
        for (int d = ax + 1; d < dst->ndim; d++) di[d] = si[d - 1 + idx->ndim];
        int64_t kd = sh_ravel(dst->ndim, dst->shape, di);
        sh_put_from(&one, 0, src, k);
        if (nd_is_float(dst->dtype))
            nd_ref_put_f(dst, kd, dst->f[kd] + one.f[0]);
        else
            nd_ref_put_i(dst, kd, (int64_t)((uint64_t)dst->i[kd] + (uint64_t)one.i[0]));
    }
    nd_ref_free(&one);
}

/* Index values: m values in [-n, n) (negative ones too when n > 0). */
static inline nd_ref sh_ref_indices(int dtype, int ndim, const int64_t *shape, int64_t n, tt_rng *g) {
    nd_ref r = nd_ref_new(dtype, ndim, shape);
    for (int64_t k = 0; k < r.n; k++) nd_ref_put_i(&r, k, (int64_t)(tt_rng_next(g) % (uint64_t)(2 * n)) - n);
    return r;
}

/* ---- layouts of chosen values ---- */

/* A tide array with x's values laid out as layout (ND_LAYOUT_CONTIG,
 * _STRIDED, _TRANSPOSED or _MIXED; others give a contiguous copy): a view of
 * a larger or permuted buffer, filled with td_assign.  The caller releases it. */
static inline td_array *sh_relayout(td_array *x, int layout, tt_rng *g) {
    int nd = td_ndim(x), dt = td_dtype(x);
    const int64_t *shape = td_shape(x);
    int64_t bshape[TD_MAX_DIMS];
    td_array *v = NULL;
    if (layout == ND_LAYOUT_STRIDED || layout == ND_LAYOUT_MIXED) {
        /* step 2 on even axes, step -2 from the end on odd ones; MIXED then
         * reverses the axes of a buffer laid out reversed */
        int rev = layout == ND_LAYOUT_MIXED;
        for (int d = 0; d < nd; d++) bshape[d] = 2 * shape[rev ? nd - 1 - d : d] + 1;
        td_array *base = td_full(dt, nd, bshape, 99, td_cpu(0));
        cr_assert_not_null(base, "td_full: %s", td_last_error());
        v = td_retain(base);
        for (int d = 0; d < nd; d++) {
            td_array *s = d % 2 == 0 ? td_slice(v, d, 1, bshape[d], 2) : td_slice(v, d, -1, -bshape[d], -2);
            nd_swap_view(&v, s, "td_slice");
        }
        if (rev) nd_swap_view(&v, td_transpose(v, NULL), "td_transpose");
        td_release(base);
    } else if (layout == ND_LAYOUT_TRANSPOSED) {
        int perm[TD_MAX_DIMS];
        for (int d = 0; d < nd; d++) perm[d] = d;
        for (int d = nd - 1; d > 0; d--) {
            int j = (int)tt_rng_below(g, (unsigned)d + 1), t = perm[d];
            perm[d] = perm[j];
            perm[j] = t;
        }
        for (int d = 0; d < nd; d++) bshape[perm[d]] = shape[d];
        td_array *base = td_full(dt, nd, bshape, 99, td_cpu(0));
        cr_assert_not_null(base, "td_full: %s", td_last_error());
        v = td_transpose(base, perm);
        cr_assert_not_null(v, "td_transpose: %s", td_last_error());
        td_release(base);
    } else {
        v = td_empty(dt, nd, shape, td_cpu(0));
        cr_assert_not_null(v, "td_empty: %s", td_last_error());
    }
    cr_assert_eq(td_assign(v, x), TD_OK, "td_assign into a %s view: %s", nd_layout_name(layout), td_last_error());
    return v;
}

/* ---- engines and worker counts ---- */

/* The runs of a bit-identity check: the naive engine, then the threaded one
 * with 1 to 4 workers. */
enum { SH_NRUNS = 5 };
static inline void sh_run_config(int run, int *engine, int *workers) {
    *engine = run == 0 ? TD_ENGINE_NAIVE : TD_ENGINE_THREADED;
    *workers = run == 0 ? 1 : run;
}

/* Host bytes of a result (malloc'ed; *nbytes gets the size). */
static inline void *sh_bytes(td_array *a, size_t *nbytes) {
    cr_assert_not_null(a, "NULL result: %s", td_last_error());
    size_t nb = td_dtype_size(td_dtype(a)) * (size_t)td_numel(a);
    void *buf = malloc(nb ? nb : 1);
    cr_assert_not_null(buf);
    td_status st = td_to_host(a, buf, nb);
    cr_assert_eq(st, TD_OK, "td_to_host: %s (%s)", td_status_name(st), td_last_error());
    *nbytes = nb;
    return buf;
}

/* Whether two runs' bytes are the same; the first differing byte in *at. */
static inline int sh_same_bytes(const void *x, size_t nx, const void *y, size_t ny, size_t *at) {
    if (nx != ny) {
        *at = 0;
        return 0;
    }
    const unsigned char *p = x, *q = y;
    for (size_t i = 0; i < nx; i++)
        if (p[i] != q[i]) {
            *at = i;
            return 0;
        }
    return 1;
}

#endif
