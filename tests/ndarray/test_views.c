/* Views: td_slice, td_transpose, td_expand_dims, td_squeeze, td_broadcast_to,
 * td_reshape (a view when the layout allows, else a copy) and td_contiguous.
 * Shapes, strides and the data offset as numpy gives them, values against
 * the reference views of nd.h, storage shared (one var), and bad arguments. */
#include "nd.h"

/* A contiguous array of dtype dt whose element k (C order) is k + 1. */
static td_array *iota(int dt, int ndim, const int64_t *shape, nd_ref *ref) {
    *ref = nd_ref_new(dt, ndim, shape);
    for (int64_t k = 0; k < ref->n; k++) nd_ref_put_i(ref, k, k + 1);
    return nd_make(ref);
}

/* Checks the strides of v (in elements) for every axis longer than 1 (the
 * stride of a size-1 axis never matters, and numpy's choice there is
 * arbitrary). */
static void expect_strides(td_array *v, const int64_t *want, const char *what) {
    for (int d = 0; d < td_ndim(v); d++)
        if (td_shape(v)[d] > 1)
            cr_assert_eq(td_strides(v)[d], want[d], "%s: stride of axis %d is %lld, expected %lld",
                         what, d, (long long)td_strides(v)[d], (long long)want[d]);
}

/* Checks that v's first element sits `offset` elements after base's. */
static void expect_offset(td_array *base, td_array *v, int64_t offset, const char *what) {
    cr_assert_eq(td_array_wait(base), TD_OK);
    cr_assert_eq(td_array_wait(v), TD_OK);
    ptrdiff_t got = (char *)td_data(v) - (char *)td_data(base);
    cr_assert_eq(got, (ptrdiff_t)(offset * (int64_t)td_dtype_size(td_dtype(base))),
                 "%s: the view starts %td bytes into its base, expected %lld elements", what, got,
                 (long long)offset);
}

static void expect_shares(td_array *base, td_array *v, const char *what) {
    cr_assert_not_null(td_array_var(v));
    cr_assert(td_array_var(v) == td_array_var(base), "%s: the view does not share its base's var",
              what);
}

Test(views, slice_along_any_axis_with_steps_and_negative_indices_is_numpy_slicing,
     .timeout = 60) {
    nd_start(TD_ENGINE_THREADED, 2);
    const int64_t shape[3] = {5, 6, 7};
    int64_t cstr[3];
    nd_c_strides(3, shape, cstr);
    struct {
        int64_t start, stop, step;
    } sl[] = {
        {1, 4, 1},       {0, 6, 2},          {-1, -6, -2},      {4, -100, -1},
        {-100, 100, 1},  {2, 2, 1},          {3, 1, 1},         {1, 3, -1},
        {-2, 100, 3},    {0, INT64_MAX, 3},  {INT64_MAX, INT64_MIN, -2},
        {INT64_MIN, -1, 1}, {6, 0, -4},      {-3, -1, 1},
    };
    ND_FOR_EACH_DTYPE(dt) {
        nd_ref rb;
        td_array *base = iota(dt, 3, shape, &rb);
        for (int axis = 0; axis < 3; axis++) {
            for (size_t i = 0; i < sizeof sl / sizeof sl[0]; i++) {
                char what[512];
                snprintf(what, sizeof what,
                         "%s base (5, 6, 7): td_slice(axis %d, %lld, %lld, %lld)",
                         nd_dt(dt), axis, (long long)sl[i].start, (long long)sl[i].stop,
                         (long long)sl[i].step);
                td_array *v = td_slice(base, axis, sl[i].start, sl[i].stop, sl[i].step);
                cr_assert_not_null(v, "%s: %s", what, td_last_error());
                nd_ref want = nd_ref_slice(&rb, axis, sl[i].start, sl[i].stop, sl[i].step);
                nd_expect_ref(v, &want, what);
                expect_shares(base, v, what);
                int64_t ws[3] = {cstr[0], cstr[1], cstr[2]};
                ws[axis] *= sl[i].step;
                expect_strides(v, ws, what);
                int64_t first, len;
                nd_py_slice(shape[axis], sl[i].start, sl[i].stop, sl[i].step, &first, &len);
                if (len > 0) expect_offset(base, v, first * cstr[axis], what);
                /* C order without gaps: whole rows of the first axis in order,
                 * or every element of a later axis in order. */
                int contiguous = axis == 0 ? (sl[i].step == 1 || len == 1)
                                           : (sl[i].step == 1 && len == shape[axis]);
                if (len > 0 && contiguous)
                    cr_assert(td_is_contiguous(v), "%s: should be contiguous", what);
                else if (len > 1)
                    cr_assert_not(td_is_contiguous(v), "%s: cannot be contiguous", what);
                nd_ref_free(&want);
                td_release(v);
            }
        }
        nd_ref_free(&rb);
        td_release(base);
    }
    nd_finish();
}

Test(views, slices_of_slices_compose_and_keep_the_storage_alive_without_the_base,
     .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    nd_ref rb;
    td_array *base = iota(TD_F64, 2, (int64_t[]){9, 10}, &rb);
    td_array *a = td_slice(base, 1, -1, -11, -3); /* columns 9, 6, 3, 0 */
    td_array *b = td_slice(a, 0, 1, 9, 2);        /* rows 1, 3, 5, 7 */
    td_array *c = td_slice(b, 1, 1, 3, 1);        /* columns 6, 3 */
    td_array *d = td_slice(c, 0, -1, -5, -3);     /* rows 7, 1 */
    cr_assert(a && b && c && d, "td_slice: %s", td_last_error());
    td_release(base);
    td_release(a);
    td_release(b);
    cr_assert_eq(td_array_stats_get().live_storages, 1);
    nd_ref ra = nd_ref_slice(&rb, 1, -1, -11, -3);
    nd_ref rbb = nd_ref_slice(&ra, 0, 1, 9, 2);
    nd_ref rc = nd_ref_slice(&rbb, 1, 1, 3, 1);
    nd_ref rd = nd_ref_slice(&rc, 0, -1, -5, -3);
    nd_expect_ref(c, &rc, "slice of slice of slice");
    nd_expect_ref(d, &rd, "four slices");
    /* By hand: d is rows 7, 1 and columns 6, 3 of the base, whose element
     * (row, col) holds 10 * row + col + 1. */
    nd_ref g = nd_read(d);
    cr_assert(g.f[0] == 77 && g.f[1] == 74 && g.f[2] == 17 && g.f[3] == 14,
              "d = [[%g, %g], [%g, %g]], expected [[77, 74], [17, 14]]", g.f[0], g.f[1], g.f[2],
              g.f[3]);
    nd_ref_free(&g);
    expect_strides(d, (int64_t[]){-60, -3}, "d");
    td_release(c);
    td_release(d);
    nd_ref_free(&rb);
    nd_ref_free(&ra);
    nd_ref_free(&rbb);
    nd_ref_free(&rc);
    nd_ref_free(&rd);
    nd_finish();
}

Test(views, transpose_permutes_shape_and_strides_and_shares_storage, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    const int64_t shape[4] = {2, 3, 4, 5};
    int64_t cstr[4];
    nd_c_strides(4, shape, cstr);
    const int perms[][4] = {{3, 2, 1, 0}, {1, 0, 2, 3}, {2, 0, 3, 1}, {0, 1, 2, 3}};
    ND_FOR_EACH_DTYPE(dt) {
        nd_ref rb;
        td_array *base = iota(dt, 4, shape, &rb);
        for (int p = -1; p < 4; p++) {
            const int *perm = p < 0 ? NULL : perms[p];
            char what[512];
            snprintf(what, sizeof what, "%s td_transpose(perm #%d)", nd_dt(dt), p);
            td_array *t = td_transpose(base, perm);
            cr_assert_not_null(t, "%s: %s", what, td_last_error());
            nd_ref want = nd_ref_transpose(&rb, perm);
            nd_expect_ref(t, &want, what);
            expect_shares(base, t, what);
            int64_t ws[4];
            for (int d = 0; d < 4; d++) ws[d] = cstr[perm ? perm[d] : 3 - d];
            expect_strides(t, ws, what);
            expect_offset(base, t, 0, what);
            if (p == 3)
                cr_assert(td_is_contiguous(t), "%s: the identity permutation is contiguous", what);
            else
                cr_assert_not(td_is_contiguous(t), "%s: cannot be contiguous", what);
            nd_ref_free(&want);
            td_release(t);
        }
        nd_ref_free(&rb);
        td_release(base);
    }
    /* 0-d and 1-d arrays transpose to themselves; (1, 5) to a contiguous (5, 1). */
    nd_ref r0, r1, r2;
    td_array *z = iota(TD_I32, 0, NULL, &r0);
    td_array *o = iota(TD_I32, 1, (int64_t[]){6}, &r1);
    td_array *w = iota(TD_I32, 2, (int64_t[]){1, 5}, &r2);
    td_array *zt = td_transpose(z, NULL), *ot = td_transpose(o, NULL), *wt = td_transpose(w, NULL);
    nd_expect_ref(zt, &r0, "transpose of a 0-d array");
    nd_expect_ref(ot, &r1, "transpose of a 1-d array");
    nd_ref r2t = nd_ref_transpose(&r2, NULL);
    nd_expect_ref(wt, &r2t, "transpose of (1, 5)");
    cr_assert(td_is_contiguous(wt), "(1, 5) transposed is C-contiguous (numpy agrees)");
    td_array *arr[] = {z, o, w, zt, ot, wt};
    for (int i = 0; i < 6; i++) td_release(arr[i]);
    nd_ref_free(&r0);
    nd_ref_free(&r1);
    nd_ref_free(&r2);
    nd_ref_free(&r2t);
    nd_finish();
}

Test(views, expand_dims_and_squeeze_add_and_remove_size_one_axes, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    nd_ref rb;
    td_array *base = iota(TD_F32, 2, (int64_t[]){3, 4}, &rb);
    const int64_t want_shapes[3][3] = {{1, 3, 4}, {3, 1, 4}, {3, 4, 1}};
    for (int axis = 0; axis <= 2; axis++) {
        char what[512];
        snprintf(what, sizeof what, "td_expand_dims(axis %d)", axis);
        td_array *e = td_expand_dims(base, axis);
        cr_assert_not_null(e, "%s: %s", what, td_last_error());
        nd_ref want = nd_ref_reshape(&rb, 3, want_shapes[axis]);
        nd_expect_ref(e, &want, what);
        expect_shares(base, e, what);
        int64_t ws[3];
        for (int d = 0, s = 0; d < 3; d++) ws[d] = d == axis ? 0 : (s++ == 0 ? 4 : 1);
        expect_strides(e, ws, what);
        cr_assert(td_is_contiguous(e), "%s: still contiguous", what);
        /* And squeeze takes it back. */
        td_array *s = td_squeeze(e, axis);
        cr_assert_not_null(s, "td_squeeze(axis %d): %s", axis, td_last_error());
        nd_expect_ref(s, &rb, "squeeze of expand_dims");
        expect_shares(base, s, "squeeze");
        nd_ref_free(&want);
        td_release(e);
        td_release(s);
    }
    /* (1, 3, 1, 4): one axis at a time, or every size-1 axis. */
    nd_ref r4 = nd_ref_reshape(&rb, 4, (int64_t[]){1, 3, 1, 4});
    td_array *b4 = td_reshape(base, 4, r4.shape);
    cr_assert_not_null(b4);
    struct {
        int axis, ndim;
        int64_t shape[4];
    } sq[] = {{0, 3, {3, 1, 4}}, {2, 3, {1, 3, 4}}, {TD_ALL_AXES, 2, {3, 4}}};
    for (int i = 0; i < 3; i++) {
        td_array *s = td_squeeze(b4, sq[i].axis);
        cr_assert_not_null(s, "td_squeeze(#%d): %s", i, td_last_error());
        nd_ref want = nd_ref_reshape(&rb, sq[i].ndim, sq[i].shape);
        nd_expect_ref(s, &want, "squeeze of (1, 3, 1, 4)");
        expect_shares(base, s, "squeeze");
        nd_ref_free(&want);
        td_release(s);
    }
    /* Squeezing (1, 1) entirely gives a 0-d array; squeezing nothing is a no-op. */
    td_array *one = td_full(TD_I64, 2, (int64_t[]){1, 1}, 42, td_cpu(0));
    td_array *s0 = td_squeeze(one, TD_ALL_AXES);
    cr_assert_not_null(s0);
    cr_assert_eq(td_ndim(s0), 0);
    cr_assert_eq(td_numel(s0), 1);
    nd_ref g = nd_read(s0);
    cr_assert_eq(g.i[0], 42);
    nd_ref_free(&g);
    td_array *same = td_squeeze(base, TD_ALL_AXES);
    nd_expect_ref(same, &rb, "squeeze without size-1 axes");
    /* Expanding a 0-d array gives (1,). */
    td_array *e0 = td_expand_dims(s0, 0);
    cr_assert_not_null(e0);
    cr_assert(td_ndim(e0) == 1 && td_shape(e0)[0] == 1);
    td_array *arr[] = {b4, one, s0, same, e0, base};
    for (int i = 0; i < 6; i++) td_release(arr[i]);
    nd_ref_free(&r4);
    nd_ref_free(&rb);
    nd_finish();
}

Test(views, broadcast_to_gives_zero_strides_and_reads_repeated_values, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    nd_ref rb;
    td_array *base = iota(TD_I64, 2, (int64_t[]){3, 1}, &rb);
    const int64_t shape[3] = {2, 3, 4};
    td_array *v = td_broadcast_to(base, 3, shape);
    cr_assert_not_null(v, "td_broadcast_to: %s", td_last_error());
    nd_ref want = nd_ref_broadcast(&rb, 3, shape);
    nd_expect_ref(v, &want, "broadcast (3, 1) to (2, 3, 4)");
    expect_shares(base, v, "broadcast_to");
    expect_strides(v, (int64_t[]){0, 1, 0}, "broadcast (3, 1) to (2, 3, 4)");
    cr_assert_not(td_is_contiguous(v), "a broadcast view repeats elements: not contiguous");
    nd_ref_free(&want);
    td_release(v);
    /* Same shape: a view with the same strides; (1,) to (0,) and (0,) to (2, 0). */
    td_array *s = td_broadcast_to(base, 2, (int64_t[]){3, 1});
    nd_expect_ref(s, &rb, "broadcast to its own shape");
    td_release(s);
    td_array *u = td_ones(TD_U8, 1, (int64_t[]){1}, td_cpu(0));
    td_array *u0 = td_broadcast_to(u, 1, (int64_t[]){0});
    cr_assert(u0 && td_numel(u0) == 0, "broadcast (1,) to (0,): %s", td_last_error());
    td_array *z = td_zeros(TD_U8, 1, (int64_t[]){0}, td_cpu(0));
    td_array *z2 = td_broadcast_to(z, 2, (int64_t[]){2, 0});
    cr_assert(z2 && td_ndim(z2) == 2 && td_numel(z2) == 0, "broadcast (0,) to (2, 0): %s",
              td_last_error());
    /* Views of views: broadcast a transposed slice. */
    td_array *t = td_transpose(base, NULL); /* (1, 3) */
    td_array *ts = td_slice(t, 1, -1, -4, -1);  /* (1, 3) reversed */
    td_array *tb = td_broadcast_to(ts, 2, (int64_t[]){4, 3});
    nd_ref rt = nd_ref_transpose(&rb, NULL);
    nd_ref rts = nd_ref_slice(&rt, 1, -1, -4, -1);
    nd_ref rtb = nd_ref_broadcast(&rts, 2, (int64_t[]){4, 3});
    nd_expect_ref(tb, &rtb, "broadcast of a reversed transpose");
    td_array *arr[] = {u, u0, z, z2, t, ts, tb, base};
    for (int i = 0; i < 8; i++) td_release(arr[i]);
    nd_ref_free(&rt);
    nd_ref_free(&rts);
    nd_ref_free(&rtb);
    nd_ref_free(&rb);
    nd_finish();
}

/* Reshapes src to shape and checks values and whether it is a view. */
static void check_reshape(td_array *src, const nd_ref *rsrc, int ndim, const int64_t *shape,
                          int want_view, const int64_t *want_strides, const char *what) {
    td_array *r = td_reshape(src, ndim, shape);
    cr_assert_not_null(r, "%s: %s", what, td_last_error());
    /* The result's shape, with any -1 worked out. */
    int64_t full[TD_MAX_DIMS];
    int64_t known = 1;
    int infer = -1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == -1)
            infer = d;
        else
            known *= shape[d];
    }
    for (int d = 0; d < ndim; d++) full[d] = d == infer ? rsrc->n / known : shape[d];
    nd_ref want = nd_ref_reshape(rsrc, ndim, full);
    nd_expect_ref(r, &want, what);
    if (want_view) {
        cr_assert(td_array_var(r) == td_array_var(src),
                  "%s: the layout allows a view (numpy makes one) but a copy was made", what);
        if (want_strides) expect_strides(r, want_strides, what);
    } else {
        cr_assert(td_array_var(r) != td_array_var(src),
                  "%s: this layout needs a copy, but the result shares the storage", what);
        cr_assert(td_is_contiguous(r), "%s: the copy is not contiguous", what);
    }
    nd_ref_free(&want);
    td_release(r);
}

Test(views, reshape_is_a_view_when_the_layout_allows_and_a_copy_otherwise, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    nd_ref rb;
    td_array *base = iota(TD_F64, 3, (int64_t[]){2, 3, 4}, &rb);
    check_reshape(base, &rb, 2, (int64_t[]){6, 4}, 1, (int64_t[]){4, 1}, "(2,3,4) -> (6,4)");
    check_reshape(base, &rb, 1, (int64_t[]){24}, 1, (int64_t[]){1}, "(2,3,4) -> (24,)");
    check_reshape(base, &rb, 2, (int64_t[]){-1, 4}, 1, (int64_t[]){4, 1}, "(2,3,4) -> (-1,4)");
    check_reshape(base, &rb, 3, (int64_t[]){4, -1, 3}, 1, (int64_t[]){6, 3, 1},
                  "(2,3,4) -> (4,-1,3)");
    check_reshape(base, &rb, 5, (int64_t[]){1, 2, 1, 12, 1}, 1, NULL, "(2,3,4) -> (1,2,1,12,1)");

    /* A transposed (4, 3, 2): splitting its first axis keeps a view (numpy:
     * strides (2, 1, 4, 12) in elements); flattening needs a copy. */
    nd_ref rt = nd_ref_transpose(&rb, NULL);
    td_array *t = td_transpose(base, NULL);
    check_reshape(t, &rt, 4, (int64_t[]){2, 2, 3, 2}, 1, (int64_t[]){2, 1, 4, 12},
                  "transposed (4,3,2) -> (2,2,3,2)");
    check_reshape(t, &rt, 3, (int64_t[]){4, 3, 2}, 1, (int64_t[]){1, 4, 12},
                  "transposed -> its own shape");
    check_reshape(t, &rt, 4, (int64_t[]){4, 3, 1, 2}, 1, (int64_t[]){1, 4, 0, 12},
                  "transposed -> a size-1 axis added");
    check_reshape(t, &rt, 1, (int64_t[]){-1}, 0, NULL, "transposed -> (-1,)");
    check_reshape(t, &rt, 2, (int64_t[]){12, 2}, 0, NULL, "transposed (4,3,2) -> (12,2)");

    /* Every other column of a (3, 5): strides (5, 2), so rows cannot merge
     * with columns; of a (3, 4) they can (elements 0, 2, ..., 10: stride 2). */
    nd_ref r2;
    td_array *m = iota(TD_I32, 2, (int64_t[]){3, 5}, &r2);
    td_array *cols = td_slice(m, 1, 0, 5, 2);
    nd_ref rc = nd_ref_slice(&r2, 1, 0, 5, 2);
    check_reshape(cols, &rc, 1, (int64_t[]){9}, 0, NULL, "(3,5)[:, ::2] -> (9,)");
    check_reshape(cols, &rc, 3, (int64_t[]){3, 1, 3}, 1, (int64_t[]){5, 0, 2},
                  "(3,5)[:, ::2] -> (3,1,3)");
    nd_ref r34;
    td_array *m34 = iota(TD_I32, 2, (int64_t[]){3, 4}, &r34);
    td_array *c34 = td_slice(m34, 1, 0, 4, 2);
    nd_ref rc34 = nd_ref_slice(&r34, 1, 0, 4, 2);
    check_reshape(c34, &rc34, 1, (int64_t[]){6}, 1, (int64_t[]){2}, "(3,4)[:, ::2] -> (6,)");
    td_release(m34);
    td_release(c34);
    nd_ref_free(&r34);
    nd_ref_free(&rc34);
    /* A reversed 1-d slice splits into a view with negative strides. */
    nd_ref r1;
    td_array *v1 = iota(TD_U8, 1, (int64_t[]){12}, &r1);
    td_array *rev = td_slice(v1, 0, -1, -13, -1);
    nd_ref rrev = nd_ref_slice(&r1, 0, -1, -13, -1);
    check_reshape(rev, &rrev, 2, (int64_t[]){3, 4}, 1, (int64_t[]){-4, -1},
                  "reversed (12,) -> (3,4)");
    /* 0-size and 0-d. */
    nd_ref re;
    td_array *e = iota(TD_F32, 2, (int64_t[]){0, 5}, &re);
    check_reshape(e, &re, 3, (int64_t[]){5, 0, 2}, 1, NULL, "(0,5) -> (5,0,2)");
    check_reshape(e, &re, 2, (int64_t[]){-1, 5}, 1, NULL, "(0,5) -> (-1,5)");
    nd_ref r0;
    td_array *z = iota(TD_F32, 0, NULL, &r0);
    check_reshape(z, &r0, 3, (int64_t[]){1, 1, 1}, 1, NULL, "() -> (1,1,1)");
    td_array *zz = td_reshape(z, 2, (int64_t[]){1, 1});
    cr_assert_not_null(zz);
    check_reshape(zz, &r0, 0, (int64_t[]){0}, 1, NULL, "(1,1) -> ()");

    td_array *arr[] = {base, t, m, cols, v1, rev, e, z, zz};
    for (int i = 0; i < 9; i++) td_release(arr[i]);
    nd_ref *refs[] = {&rb, &rt, &r2, &rc, &r1, &rrev, &re, &r0};
    for (int i = 0; i < 8; i++) nd_ref_free(refs[i]);
    nd_finish();
}

Test(views, a_reshape_view_writes_through_and_a_reshape_copy_does_not, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        td_array *base = td_zeros(TD_F32, 2, (int64_t[]){4, 6}, td_cpu(0));
        td_array *view = td_reshape(base, 3, (int64_t[]){2, 2, 6});
        td_array *t = td_transpose(base, NULL);
        td_array *copy = td_reshape(t, 1, (int64_t[]){24});
        cr_assert(view && t && copy);
        /* Queued in this order: the copy was taken before the fill. */
        cr_assert_eq(td_fill(view, 5), TD_OK);
        cr_assert_eq(td_fill(copy, 7), TD_OK);
        nd_ref rb = nd_read(base), rc = nd_read(copy);
        for (int k = 0; k < 24; k++) {
            cr_assert_eq(rb.f[k], 5.0, "%s engine: base[%d] after a fill through the view",
                         tt_engine_name(engine), k);
            cr_assert_eq(rc.f[k], 7.0, "%s engine: copy[%d]", tt_engine_name(engine), k);
        }
        nd_ref_free(&rb);
        nd_ref_free(&rc);
        td_array *arr[] = {base, view, t, copy};
        for (int i = 0; i < 4; i++) td_release(arr[i]);
        nd_finish();
    }
}

Test(views, contiguous_returns_the_array_itself_or_a_contiguous_copy, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    nd_ref rb;
    td_array *base = iota(TD_I64, 2, (int64_t[]){3, 5}, &rb);
    int64_t live = td_array_stats_get().live_arrays;
    td_array *same = td_contiguous(base);
    cr_assert(same == base, "td_contiguous of a contiguous array must return it (retained)");
    cr_assert_eq(td_array_stats_get().live_arrays, live);
    td_release(same); /* the extra reference */
    nd_expect_ref(base, &rb, "the array after releasing td_contiguous's reference");

    td_array *t = td_transpose(base, NULL);
    td_array *c = td_contiguous(t);
    cr_assert(c && c != t, "td_contiguous of a transpose must copy: %s", td_last_error());
    cr_assert(td_is_contiguous(c));
    cr_assert(td_array_var(c) != td_array_var(base), "the copy shares the storage");
    expect_strides(c, (int64_t[]){3, 1}, "contiguous copy of (5, 3)");
    nd_ref rt = nd_ref_transpose(&rb, NULL);
    nd_expect_ref(c, &rt, "td_contiguous(transpose)");
    /* A broadcast view becomes a real array. */
    td_array *bv = td_broadcast_to(base, 3, (int64_t[]){2, 3, 5});
    td_array *bc = td_contiguous(bv);
    nd_ref rbv = nd_ref_broadcast(&rb, 3, (int64_t[]){2, 3, 5});
    nd_expect_ref(bc, &rbv, "td_contiguous(broadcast_to)");
    expect_strides(bc, (int64_t[]){15, 5, 1}, "contiguous copy of a broadcast");
    td_array *arr[] = {base, t, c, bv, bc};
    for (int i = 0; i < 5; i++) td_release(arr[i]);
    nd_ref_free(&rb);
    nd_ref_free(&rt);
    nd_ref_free(&rbv);
    nd_finish();
}

Test(views, bad_view_arguments_give_null_with_a_status_and_a_message_naming_the_function,
     .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_array *a = td_zeros(TD_F32, 3, (int64_t[]){2, 3, 4}, td_cpu(0));
    td_array *z = td_zeros(TD_F32, 0, (int64_t[]){0}, td_cpu(0));
    const int64_t ones9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    td_array *a8 = td_zeros(TD_F32, 8, ones9, td_cpu(0));
    cr_assert(a && z && a8);
#define EXPECT(call, st, fn)                                                                  \
    do {                                                                                      \
        td_clear_error();                                                                     \
        nd_expect_null(call, st, fn, #call);                                                  \
    } while (0)
#define EXPECT2(call, st1, st2, fn)                                                           \
    do {                                                                                      \
        td_clear_error();                                                                     \
        nd_expect_null2(call, st1, st2, fn, #call);                                           \
    } while (0)
    EXPECT(td_slice(a, 3, 0, 1, 1), TD_EINVAL, "slice");
    EXPECT(td_slice(a, 99, 0, 1, 1), TD_EINVAL, "slice");
    EXPECT(td_slice(a, 1, 0, 3, 0), TD_EINVAL, "slice");
    EXPECT(td_slice(z, 0, 0, 1, 1), TD_EINVAL, "slice");
    EXPECT(td_transpose(a, ((int[]){0, 0, 1})), TD_EINVAL, "transpose");
    EXPECT(td_transpose(a, ((int[]){0, 1, 3})), TD_EINVAL, "transpose");
    EXPECT(td_transpose(a, ((int[]){2, 1, -1})), TD_EINVAL, "transpose");
    EXPECT(td_expand_dims(a, 4), TD_EINVAL, "expand_dims");
    EXPECT(td_expand_dims(a, 99), TD_EINVAL, "expand_dims");
    EXPECT2(td_expand_dims(a8, 0), TD_EINVAL, TD_ESHAPE, "expand_dims");
    EXPECT2(td_squeeze(a, 1), TD_EINVAL, TD_ESHAPE, "squeeze");
    EXPECT(td_squeeze(a, 3), TD_EINVAL, "squeeze");
    EXPECT(td_broadcast_to(a, 3, ((int64_t[]){2, 3, 5})), TD_ESHAPE, "broadcast_to");
    EXPECT(td_broadcast_to(a, 2, ((int64_t[]){3, 4})), TD_ESHAPE, "broadcast_to");
    EXPECT2(td_broadcast_to(a, 9, ones9), TD_EINVAL, TD_ESHAPE, "broadcast_to");
    EXPECT2(td_broadcast_to(a, -1, ones9), TD_EINVAL, TD_ESHAPE, "broadcast_to");
    EXPECT(td_reshape(a, 2, ((int64_t[]){5, 5})), TD_ESHAPE, "reshape");
    EXPECT(td_reshape(a, 2, ((int64_t[]){-1, 5})), TD_ESHAPE, "reshape");
    EXPECT2(td_reshape(a, 2, ((int64_t[]){-1, -1})), TD_EINVAL, TD_ESHAPE, "reshape");
    EXPECT2(td_reshape(a, 2, ((int64_t[]){-2, -12})), TD_EINVAL, TD_ESHAPE, "reshape");
    EXPECT2(td_reshape(a, 9, ones9), TD_EINVAL, TD_ESHAPE, "reshape");
    EXPECT(td_reshape(a, 2, NULL), TD_EINVAL, "reshape");
    /* The shape messages give both shapes. */
    td_clear_error();
    td_array *bad = td_broadcast_to(a, 3, (int64_t[]){2, 3, 5});
    cr_assert_null(bad);
    cr_assert(nd_msg_has_shape(td_last_error(), 3, (int64_t[]){2, 3, 4}) &&
                  nd_msg_has_shape(td_last_error(), 3, (int64_t[]){2, 3, 5}),
              "td_broadcast_to's message \"%s\" does not give both shapes", td_last_error());
    td_clear_error();
    bad = td_reshape(a, 2, (int64_t[]){5, 5});
    cr_assert(nd_msg_has_shape(td_last_error(), 3, (int64_t[]){2, 3, 4}) &&
                  nd_msg_has_shape(td_last_error(), 2, (int64_t[]){5, 5}),
              "td_reshape's message \"%s\" does not give both shapes", td_last_error());
    /* NULL in, NULL out, and the last error stays as it was. */
    td_clear_error();
    cr_assert_null(td_slice(a, 1, 0, 1, 0));
    char saved[512];
    snprintf(saved, sizeof saved, "%s", td_last_error());
    td_status saved_st = td_last_status();
    td_array *n[] = {
        td_slice(NULL, 0, 0, 1, 1),     td_transpose(NULL, NULL),
        td_expand_dims(NULL, 0),        td_squeeze(NULL, TD_ALL_AXES),
        td_broadcast_to(NULL, 1, ones9), td_reshape(NULL, 1, ones9),
        td_contiguous(NULL),            td_retain(NULL),
    };
    for (size_t i = 0; i < sizeof n / sizeof n[0]; i++) {
        cr_assert_null(n[i], "view function #%zu of NULL is not NULL", i);
        cr_assert_eq(td_last_status(), saved_st, "view function #%zu of NULL changed the status",
                     i);
        cr_assert_str_eq(td_last_error(), saved);
    }
#undef EXPECT
#undef EXPECT2
    td_release(a);
    td_release(z);
    td_release(a8);
    nd_finish();
}
