/* Shape ops: concat, stack, split, tile, flip, pad, each against the plain
 * references of sh.h over every dtype, inputs of every layout (contiguous,
 * strided with negative steps, transposed, broadcast, transposed slices),
 * negative axes, empty and one-element arrays; split and flip are views of
 * the input's storage, ordered with it; large results are bit-identical on
 * the naive engine and the threaded one with 1 to 4 workers; bad input gives
 * a status and a message naming the op (and the shapes). */
#include "sh.h"

/* numpy's promotion of two dtypes (written here, not asked of tide). */
static int sh_promote(int a, int b) {
    if (a == b) return a;
    if (a == TD_F64 || b == TD_F64) return TD_F64;
    if (a == TD_F32 || b == TD_F32) return (a == TD_U8 || b == TD_U8) ? TD_F32 : TD_F64;
    if (a == TD_I64 || b == TD_I64) return TD_I64;
    return TD_I32; /* i32 with u8 */
}

static void release_all(td_array **a, int n) {
    for (int i = 0; i < n; i++) td_release(a[i]);
}

/* ---- concat ---- */

Test(concat, joins_arrays_of_every_dtype_and_layout_along_any_axis, .timeout = 60) {
    uint64_t seed = nd_seed("concat", 11);
    tt_rng g = {seed};
    nd_start(TD_ENGINE_THREADED, 2);
    const int axes[] = {0, 1, 2, -1, -3};
    const int64_t sizes[3] = {2, 1, 3};
    ND_FOR_EACH_DTYPE(dt) {
        for (int ai = 0; ai < 5; ai++) {
            int ax = sh_axis(axes[ai], 3);
            for (int lay = 0; lay < ND_NLAYOUTS; lay++) {
                td_array *in[3];
                nd_ref r[3];
                const nd_ref *rp[3];
                for (int i = 0; i < 3; i++) {
                    int64_t shape[3] = {3, 4, 5};
                    shape[ax] = sizes[i];
                    in[i] = nd_make_input(dt, 3, shape, (lay + i) % ND_NLAYOUTS, &g, ND_GEN_BIG, &r[i]);
                    rp[i] = &r[i];
                }
                td_array *c = td_concat(in, 3, axes[ai]);
                char what[160];
                snprintf(what, sizeof what, "concat %s axis %d layouts from %s", nd_dt(dt), axes[ai],
                         nd_layout_name(lay));
                nd_ref want = sh_ref_concat(rp, 3, axes[ai], dt);
                nd_expect_ref(c, &want, what);
                nd_ref_free(&want);
                for (int i = 0; i < 3; i++) nd_ref_free(&r[i]);
                release_all(in, 3);
                td_release(c);
            }
        }
    }
    nd_finish();
}

Test(concat, mixed_dtypes_promote_as_numpy, .timeout = 60) {
    tt_rng g = {nd_seed("concat promotion", 12)};
    nd_start(TD_ENGINE_THREADED, 2);
    ND_FOR_EACH_DTYPE(da) {
        ND_FOR_EACH_DTYPE(db) {
            nd_ref ra, rb;
            td_array *a = nd_make_input(da, 2, (int64_t[]){2, 3}, ND_LAYOUT_TRANSPOSED, &g, ND_GEN_GENERAL, &ra);
            td_array *b = nd_make_input(db, 2, (int64_t[]){2, 5}, ND_LAYOUT_STRIDED, &g, ND_GEN_GENERAL, &rb);
            td_array *in[2] = {a, b};
            const nd_ref *rp[2] = {&ra, &rb};
            td_array *c = td_concat(in, 2, -1);
            char what[96];
            snprintf(what, sizeof what, "concat of %s and %s", nd_dt(da), nd_dt(db));
            nd_ref want = sh_ref_concat(rp, 2, -1, sh_promote(da, db));
            nd_expect_ref(c, &want, what);
            nd_ref_free(&want);
            nd_ref_free(&ra);
            nd_ref_free(&rb);
            td_release(a);
            td_release(b);
            td_release(c);
        }
    }
    /* Three dtypes: u8, i32 and f32 give f64. */
    nd_ref r[3];
    const nd_ref *rp[3] = {&r[0], &r[1], &r[2]};
    td_array *in[3];
    const int dts[3] = {TD_U8, TD_I32, TD_F32};
    for (int i = 0; i < 3; i++) in[i] = nd_make_random(&r[i], dts[i], 1, (int64_t[]){4 + i}, &g, ND_GEN_GENERAL);
    td_array *c = td_concat(in, 3, 0);
    nd_ref want = sh_ref_concat(rp, 3, 0, TD_F64);
    nd_expect_ref(c, &want, "concat of u8, i32 and f32");
    nd_ref_free(&want);
    for (int i = 0; i < 3; i++) nd_ref_free(&r[i]);
    release_all(in, 3);
    td_release(c);
    nd_finish();
}

Test(concat, empty_one_element_single_and_many_inputs, .timeout = 60) {
    tt_rng g = {nd_seed("concat edge cases", 13)};
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        td_scope_begin();
        /* Inputs empty along the axis, and results empty along another. */
        const struct {
            int n, axis;
            int64_t shapes[3][2];
        } cases[] = {
            {3, 1, {{2, 0}, {2, 4}, {2, 0}}},
            {2, 1, {{0, 3}, {0, 2}}},
            {2, 0, {{0, 3}, {0, 3}}},
            {3, 0, {{1, 1}, {1, 1}, {1, 1}}},
            {1, 0, {{3, 2}}},
        };
        for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
            td_array *in[3] = {NULL, NULL, NULL};
            nd_ref r[3];
            const nd_ref *rp[3] = {&r[0], &r[1], &r[2]};
            for (int i = 0; i < cases[ci].n; i++) {
                in[i] = nd_make_random(&r[i], TD_F32, 2, cases[ci].shapes[i], &g, ND_GEN_GENERAL);
                rp[i] = &r[i];
            }
            td_array *c = td_concat(in, cases[ci].n, cases[ci].axis);
            char what[64];
            snprintf(what, sizeof what, "concat case %zu", ci);
            nd_ref want = sh_ref_concat(rp, cases[ci].n, cases[ci].axis, TD_F32);
            nd_expect_ref(c, &want, what);
            nd_ref_free(&want);
            for (int i = 0; i < cases[ci].n; i++) nd_ref_free(&r[i]);
        }
        /* One input: a new array, not a view (a later write to the input
         * does not show). */
        nd_ref r0;
        td_array *a = nd_make_random(&r0, TD_I64, 1, (int64_t[]){5}, &g, ND_GEN_GENERAL);
        td_array *c1 = td_concat(&a, 1, 0);
        cr_assert_neq(td_array_var(c1), td_array_var(a), "concat of one array shares its storage");
        cr_assert_eq(td_fill(a, 7), TD_OK);
        nd_expect_ref(c1, &r0, "concat of one array after a write to it");
        nd_ref_free(&r0);
        /* Many small inputs of every layout, spread over the workers. */
        enum { MANY = 300 };
        td_array *many[MANY];
        nd_ref rm[MANY];
        const nd_ref *rmp[MANY];
        for (int i = 0; i < MANY; i++) {
            many[i] = nd_make_input(TD_I32, 2, (int64_t[]){3, i % 4}, i % ND_NLAYOUTS, &g, ND_GEN_GENERAL, &rm[i]);
            rmp[i] = &rm[i];
        }
        td_array *cm = td_concat(many, MANY, 1);
        nd_ref want = sh_ref_concat(rmp, MANY, 1, TD_I32);
        nd_expect_ref(cm, &want, "concat of 300 small arrays");
        nd_ref_free(&want);
        for (int i = 0; i < MANY; i++) nd_ref_free(&rm[i]);
        td_scope_end();
        nd_finish();
    }
}

/* ---- stack ---- */

Test(stack, joins_arrays_along_a_new_axis_at_every_position, .timeout = 60) {
    tt_rng g = {nd_seed("stack", 21)};
    nd_start(TD_ENGINE_THREADED, 2);
    const int axes[] = {0, 1, 2, -1, -3};
    ND_FOR_EACH_DTYPE(dt) {
        for (int ai = 0; ai < 5; ai++) {
            for (int lay = 0; lay < ND_NLAYOUTS; lay++) {
                td_array *in[4];
                nd_ref r[4];
                const nd_ref *rp[4];
                for (int i = 0; i < 4; i++) {
                    in[i] = nd_make_input(dt, 2, (int64_t[]){3, 4}, (lay + i) % ND_NLAYOUTS, &g, ND_GEN_BIG, &r[i]);
                    rp[i] = &r[i];
                }
                td_array *s = td_stack(in, 4, axes[ai]);
                char what[160];
                snprintf(what, sizeof what, "stack %s axis %d layouts from %s", nd_dt(dt), axes[ai],
                         nd_layout_name(lay));
                nd_ref want = sh_ref_stack(rp, 4, axes[ai], dt);
                nd_expect_ref(s, &want, what);
                nd_ref_free(&want);
                for (int i = 0; i < 4; i++) nd_ref_free(&r[i]);
                release_all(in, 4);
                td_release(s);
            }
        }
    }
    td_scope_begin();
    /* 0-d inputs make a 1-d array; empty inputs an empty one; mixed dtypes
     * promote. */
    nd_ref r[3];
    const nd_ref *rp[3] = {&r[0], &r[1], &r[2]};
    td_array *in[3];
    for (int i = 0; i < 3; i++) in[i] = nd_make_random(&r[i], i == 1 ? TD_U8 : TD_I32, 0, NULL, &g, ND_GEN_GENERAL);
    nd_ref want = sh_ref_stack(rp, 3, 0, TD_I32);
    nd_expect_ref(td_stack(in, 3, -1), &want, "stack of 0-d arrays");
    nd_ref_free(&want);
    for (int i = 0; i < 3; i++) nd_ref_free(&r[i]);
    for (int i = 0; i < 2; i++) in[i] = nd_make_random(&r[i], TD_F64, 2, (int64_t[]){0, 3}, &g, ND_GEN_GENERAL);
    want = sh_ref_stack(rp, 2, 1, TD_F64);
    nd_expect_ref(td_stack(in, 2, 1), &want, "stack of empty arrays");
    nd_ref_free(&want);
    for (int i = 0; i < 2; i++) nd_ref_free(&r[i]);
    td_scope_end();
    nd_finish();
}

/* ---- split ---- */

Test(split, gives_equal_views_that_share_the_input_storage, .timeout = 60) {
    tt_rng g = {nd_seed("split", 31)};
    nd_start(TD_ENGINE_THREADED, 2);
    const struct {
        int64_t shape[3];
        int sections, axis;
    } cases[] = {
        {{6, 4, 2}, 3, 0}, {{6, 4, 2}, 2, -2}, {{6, 4, 2}, 2, -1}, {{6, 4, 2}, 1, 1}, {{6, 0, 2}, 4, 1},
        {{6, 4, 2}, 6, 0},
    };
    ND_FOR_EACH_DTYPE(dt) {
        for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
            for (int lay = 0; lay < ND_NLAYOUTS; lay++) {
                td_scope_begin();
                nd_ref ra;
                td_array *a = nd_make_input(dt, 3, cases[ci].shape, lay, &g, ND_GEN_BIG, &ra);
                int k = cases[ci].sections, ax = sh_axis(cases[ci].axis, 3);
                td_array *parts[6];
                cr_assert_eq(td_split(a, k, cases[ci].axis, parts), TD_OK, "td_split: %s", td_last_error());
                int64_t len = cases[ci].shape[ax] / k;
                for (int i = 0; i < k; i++) {
                    char what[160];
                    snprintf(what, sizeof what, "split %s case %zu part %d of a %s input", nd_dt(dt), ci, i,
                             nd_layout_name(lay));
                    cr_assert_not_null(parts[i], "%s: NULL", what);
                    cr_assert_eq(td_array_var(parts[i]), td_array_var(a), "%s does not share a's var", what);
                    nd_ref want = nd_ref_slice(&ra, ax, i * len, (i + 1) * len, 1);
                    nd_expect_ref(parts[i], &want, what);
                    nd_ref_free(&want);
                }
                nd_ref_free(&ra);
                td_scope_end(); /* the parts belong to the scope, like any new array */
            }
        }
    }
    nd_finish();
}

Test(split, writes_through_the_views_are_ordered_with_reads_of_the_input, .timeout = 60) {
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 3);
        enum { R = 4, C = 5000 };
        double *v = malloc(sizeof(double) * R * C);
        cr_assert_not_null(v);
        for (int k = 0; k < R * C; k++) v[k] = k * 0.5;
        td_array *a = td_zeros(TD_F64, 2, (int64_t[]){R, C}, td_cpu(0));
        /* A slow write holds a's var while the rest is queued behind it. */
        struct nd_slow slow;
        nd_push_slow_write(&slow, a, 30, v);
        td_array *before = td_mul_scalar(a, 1); /* a read of the input */
        td_array *parts[2];
        cr_assert_eq(td_split(a, 2, 0, parts), TD_OK);
        cr_assert_eq(td_fill(parts[1], -1), TD_OK);     /* a write through a view */
        td_array *after = td_mul_scalar(a, 1);           /* sees it */
        td_array *part0 = td_mul_scalar(parts[0], 1);    /* a read through a view */
        cr_assert_eq(td_fill(a, 3), TD_OK);              /* then a write to the input */
        nd_ref want = nd_ref_new(TD_F64, 2, (int64_t[]){R, C});
        for (int k = 0; k < R * C; k++) want.f[k] = v[k];
        nd_expect_ref(before, &want, "a read queued before the write through the view");
        for (int k = R * C / 2; k < R * C; k++) want.f[k] = -1;
        nd_expect_ref(after, &want, "a read queued after the write through the view");
        nd_ref w0 = nd_ref_slice(&want, 0, 0, R / 2, 1);
        nd_expect_ref(part0, &w0, "a read through a view before a write to the input");
        for (int k = 0; k < R * C; k++) want.f[k] = 3;
        nd_expect_ref(a, &want, "the input after the last write");
        cr_assert_eq(atomic_load(&slow.ran), 1);
        nd_ref_free(&want);
        nd_ref_free(&w0);
        free(v);
        td_array *all[] = {a, before, parts[0], parts[1], after, part0};
        release_all(all, 6);
        nd_finish();
    }
}

/* ---- flip ---- */

Test(flip, is_a_view_with_negative_strides_along_one_or_every_axis, .timeout = 60) {
    tt_rng g = {nd_seed("flip", 41)};
    nd_start(TD_ENGINE_THREADED, 2);
    const int axes[] = {0, 1, 2, -1, -2, TD_ALL_AXES};
    ND_FOR_EACH_DTYPE(dt) {
        for (int lay = 0; lay < ND_NLAYOUTS; lay++) {
            for (int ai = 0; ai < 6; ai++) {
                td_scope_begin();
                nd_ref ra;
                td_array *a = nd_make_input(dt, 3, (int64_t[]){3, 4, 5}, lay, &g, ND_GEN_BIG, &ra);
                td_array *f = td_flip(a, axes[ai]);
                char what[160];
                snprintf(what, sizeof what, "flip %s axis %d of a %s input", nd_dt(dt), axes[ai], nd_layout_name(lay));
                cr_assert_not_null(f, "%s: %s", what, td_last_error());
                cr_assert_eq(td_array_var(f), td_array_var(a), "%s: not a view", what);
                for (int d = 0; d < 3; d++) {
                    int flipped = axes[ai] == TD_ALL_AXES || sh_axis(axes[ai], 3) == d;
                    cr_assert_eq(td_strides(f)[d], flipped ? -td_strides(a)[d] : td_strides(a)[d], "%s: stride %d",
                                 what, d);
                }
                nd_ref want = sh_ref_flip(&ra, axes[ai]);
                nd_expect_ref(f, &want, what);
                /* Flipping back gives the input. */
                nd_expect_ref(td_flip(f, axes[ai]), &ra, "flip of a flip");
                nd_ref_free(&want);
                nd_ref_free(&ra);
                td_scope_end();
            }
        }
    }
    td_scope_begin();
    /* Writes through a flipped view land reversed in the input. */
    td_array *a = td_zeros(TD_I32, 1, (int64_t[]){5}, td_cpu(0));
    td_array *src = td_from_host((int32_t[]){1, 2, 3, 4, 5}, TD_I32, 1, (int64_t[]){5}, td_cpu(0));
    cr_assert_eq(td_assign(td_flip(a, 0), src), TD_OK);
    int32_t got[5];
    cr_assert_eq(td_to_host(a, got, sizeof got), TD_OK);
    for (int i = 0; i < 5; i++) cr_assert_eq(got[i], 5 - i);
    /* Empty axes and 0-d arrays. */
    td_array *e = td_flip(td_zeros(TD_F32, 2, (int64_t[]){0, 3}, td_cpu(0)), 0);
    cr_assert_not_null(e);
    cr_assert_eq(td_numel(e), 0);
    td_array *z = td_flip(td_full(TD_F64, 0, NULL, 2.5, td_cpu(0)), TD_ALL_AXES);
    double zv = 0;
    cr_assert_eq(td_to_host(z, &zv, sizeof zv), TD_OK);
    cr_assert_eq(zv, 2.5);
    td_scope_end();
    nd_finish();
}

/* ---- tile ---- */

Test(tile, repeats_along_every_axis_as_numpy_tile, .timeout = 60) {
    tt_rng g = {nd_seed("tile", 51)};
    nd_start(TD_ENGINE_THREADED, 2);
    const struct {
        int nd;
        int64_t shape[3];
        int n;
        int64_t reps[4];
    } cases[] = {
        {2, {2, 3}, 1, {2}},          {2, {2, 3}, 2, {2, 3}},       {2, {2, 3}, 3, {3, 1, 2}},
        {3, {2, 3, 4}, 1, {2}},       {2, {2, 3}, 2, {0, 2}},       {0, {0}, 1, {3}},
        {2, {2, 3}, 0, {0}},          {2, {0, 3}, 2, {2, 2}},       {1, {1}, 4, {2, 1, 3, 2}},
        {3, {2, 1, 3}, 3, {1, 4, 1}},
    };
    ND_FOR_EACH_DTYPE(dt) {
        for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
            for (int lay = 0; lay < ND_NLAYOUTS; lay++) {
                nd_ref ra;
                td_array *a = nd_make_input(dt, cases[ci].nd, cases[ci].shape, lay, &g, ND_GEN_BIG, &ra);
                td_array *t = td_tile(a, cases[ci].n, cases[ci].reps);
                char what[160];
                snprintf(what, sizeof what, "tile %s case %zu of a %s input", nd_dt(dt), ci, nd_layout_name(lay));
                nd_ref want = sh_ref_tile(&ra, cases[ci].n, cases[ci].reps);
                nd_expect_ref(t, &want, what);
                cr_assert_neq(td_array_var(t), td_array_var(a), "%s: a view, not a new array", what);
                nd_ref_free(&want);
                nd_ref_free(&ra);
                td_release(a);
                td_release(t);
            }
        }
    }
    nd_finish();
}

/* ---- pad ---- */

Test(pad, surrounds_with_a_constant_as_numpy_pad, .timeout = 60) {
    tt_rng g = {nd_seed("pad", 61)};
    nd_start(TD_ENGINE_THREADED, 2);
    const struct {
        int nd;
        int64_t shape[3], before[3], after[3];
    } cases[] = {
        {2, {3, 4}, {1, 2}, {2, 0}},       {3, {2, 3, 4}, {1, 0, 2}, {0, 3, 1}}, {3, {2, 3, 4}, {0, 0, 0}, {0, 0, 0}},
        {1, {5}, {3}, {4}},                {0, {0}, {0}, {0}},                   {2, {0, 3}, {1, 0}, {1, 2}},
        {2, {1, 1}, {2, 2}, {2, 2}},       {3, {2, 0, 2}, {0, 1, 0}, {1, 0, 0}},
    };
    const double values[TD_DTYPE_COUNT] = {[TD_F32] = 2.5, [TD_F64] = -0.125, [TD_I32] = -3, [TD_I64] = 1e15,
                                           [TD_U8] = 7};
    ND_FOR_EACH_DTYPE(dt) {
        for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
            for (int lay = 0; lay < ND_NLAYOUTS; lay++) {
                nd_ref ra;
                td_array *a = nd_make_input(dt, cases[ci].nd, cases[ci].shape, lay, &g, ND_GEN_BIG, &ra);
                td_array *p = td_pad(a, cases[ci].before, cases[ci].after, values[dt]);
                char what[160];
                snprintf(what, sizeof what, "pad %s case %zu of a %s input", nd_dt(dt), ci, nd_layout_name(lay));
                nd_ref want = sh_ref_pad(&ra, cases[ci].before, cases[ci].after, values[dt]);
                nd_expect_ref(p, &want, what);
                nd_ref_free(&want);
                nd_ref_free(&ra);
                td_release(a);
                td_release(p);
            }
        }
    }
    /* The value is converted as td_full converts it: truncated for
     * integers. */
    td_scope_begin();
    td_array *a = td_zeros(TD_I32, 1, (int64_t[]){1}, td_cpu(0));
    int32_t got[3];
    cr_assert_eq(td_to_host(td_pad(a, (int64_t[]){1}, (int64_t[]){1}, -2.75), got, sizeof got), TD_OK);
    cr_assert(got[0] == -2 && got[1] == 0 && got[2] == -2, "pad value -2.75 in i32: %d %d %d", got[0], got[1], got[2]);
    td_scope_end();
    nd_finish();
}

/* ---- inputs whose source runs down the columns (copied in tiles) ---- */

Test(tiles, transposed_inputs_larger_than_a_tile_are_copied_exactly, .timeout = 60) {
    tt_rng g = {nd_seed("tiles", 65)};
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 3);
        ND_FOR_EACH_DTYPE(dt) {
            td_scope_begin();
            /* (3, 70, 50) views of (3, 50, 70) buffers with the last two axes
             * swapped, and a (130, 90) column-major view. */
            nd_ref rb[2], rt[2], rc;
            td_array *t[2];
            for (int i = 0; i < 2; i++) {
                td_array *b = nd_make_random(&rb[i], dt, 3, (int64_t[]){3, 50, 70}, &g, ND_GEN_BIG);
                t[i] = td_transpose(b, (int[]){0, 2, 1});
                rt[i] = nd_ref_transpose(&rb[i], (int[]){0, 2, 1});
            }
            td_array *cb = nd_make_random(&rc, dt, 2, (int64_t[]){90, 130}, &g, ND_GEN_BIG);
            td_array *c = td_transpose(cb, NULL);
            nd_ref rct = nd_ref_transpose(&rc, NULL);
            const nd_ref *rp[2] = {&rt[0], &rt[1]};
            char what[96];
            for (int ax = -3; ax < 3; ax++) {
                nd_ref want = sh_ref_concat(rp, 2, ax, dt);
                snprintf(what, sizeof what, "%s concat of transposed inputs along %d", nd_dt(dt), ax);
                nd_expect_ref(td_concat(t, 2, ax), &want, what);
                nd_ref_free(&want);
            }
            for (int ax = -4; ax < 4; ax++) {
                nd_ref want = sh_ref_stack(rp, 2, ax, dt);
                snprintf(what, sizeof what, "%s stack of transposed inputs along %d", nd_dt(dt), ax);
                nd_expect_ref(td_stack(t, 2, ax), &want, what);
                nd_ref_free(&want);
            }
            nd_ref want = sh_ref_tile(&rct, 3, (int64_t[]){2, 2, 1});
            nd_expect_ref(td_tile(c, 3, (int64_t[]){2, 2, 1}), &want, "tile of a column-major view");
            nd_ref_free(&want);
            want = sh_ref_pad(&rt[1], (int64_t[]){1, 2, 3}, (int64_t[]){3, 2, 1}, 1);
            nd_expect_ref(td_pad(t[1], (int64_t[]){1, 2, 3}, (int64_t[]){3, 2, 1}, 1), &want,
                          "pad of a transposed view");
            nd_ref_free(&want);
            /* A concat of a column-major and a row-major input, promoted. */
            nd_ref rr;
            td_array *r = nd_make_random(&rr, TD_F64, 2, (int64_t[]){130, 20}, &g, ND_GEN_GENERAL);
            const nd_ref *rq[2] = {&rct, &rr};
            want = sh_ref_concat(rq, 2, 1, sh_promote(dt, TD_F64));
            nd_expect_ref(td_concat((td_array *[]){c, r}, 2, 1), &want, "concat of a column-major and a f64 input");
            nd_ref_free(&want);
            nd_ref_free(&rr);
            for (int i = 0; i < 2; i++) {
                nd_ref_free(&rb[i]);
                nd_ref_free(&rt[i]);
            }
            nd_ref_free(&rc);
            nd_ref_free(&rct);
            td_scope_end();
        }
        nd_finish();
    }
}

/* ---- large results on every engine and worker count ---- */

enum { NBIG = 5 };

static void big_inputs(nd_ref *r, uint64_t seed) {
    tt_rng g = {seed};
    r[0] = nd_ref_new(TD_F32, 2, (int64_t[]){600, 1000});
    r[1] = nd_ref_new(TD_F32, 2, (int64_t[]){1000, 400}); /* used transposed */
    r[2] = nd_ref_new(TD_I32, 2, (int64_t[]){200, 1000});
    r[3] = nd_ref_new(TD_U8, 2, (int64_t[]){700, 800});
    r[4] = nd_ref_new(TD_I64, 2, (int64_t[]){300, 70});
    for (int i = 0; i < NBIG; i++) nd_ref_random(&r[i], &g, ND_GEN_BIG);
}

/* The program: concat (with a transposed input and promotion to f64),
 * stack, tile, pad of a strided view, a contiguous copy of a flipped
 * view; results' bytes in out. */
static void big_program(const nd_ref *r, void **out, size_t *nbytes, int check) {
    td_scope_begin();
    td_array *a = nd_make(&r[0]), *b0 = nd_make(&r[1]), *c = nd_make(&r[2]), *u = nd_make(&r[3]),
             *t = nd_make(&r[4]);
    td_array *b = td_transpose(b0, NULL);
    td_array *res[NBIG];
    res[0] = td_concat((td_array *[]){a, b, c}, 3, 0);
    res[1] = td_stack((td_array *[]){u, td_flip(u, 1)}, 2, 1);
    res[2] = td_tile(t, 2, (int64_t[]){4, 15});
    td_array *as = td_slice(td_slice(a, 0, 1, 600, 1), 1, -1, -1001, -1);
    res[3] = td_pad(as, (int64_t[]){300, 10}, (int64_t[]){200, 0}, 1.5);
    res[4] = td_contiguous(td_flip(a, TD_ALL_AXES));
    for (int i = 0; i < NBIG; i++) out[i] = sh_bytes(res[i], &nbytes[i]);
    if (check) {
        nd_ref bt = nd_ref_transpose(&r[1], NULL), uf = sh_ref_flip(&r[3], 1);
        const nd_ref *cin[3] = {&r[0], &bt, &r[2]}, *sin[2] = {&r[3], &uf};
        nd_ref want[NBIG];
        want[0] = sh_ref_concat(cin, 3, 0, TD_F64);
        want[1] = sh_ref_stack(sin, 2, 1, TD_U8);
        want[2] = sh_ref_tile(&r[4], 2, (int64_t[]){4, 15});
        nd_ref s0 = nd_ref_slice(&r[0], 0, 1, 600, 1), s1 = nd_ref_slice(&s0, 1, -1, -1001, -1);
        want[3] = sh_ref_pad(&s1, (int64_t[]){300, 10}, (int64_t[]){200, 0}, 1.5);
        want[4] = sh_ref_flip(&r[0], TD_ALL_AXES);
        for (int i = 0; i < NBIG; i++) {
            char what[64];
            snprintf(what, sizeof what, "large result %d", i);
            cr_assert_gt(want[i].n, i == 4 ? 500000 : 1000000, "%s is not large", what);
            nd_expect_ref(res[i], &want[i], what);
            nd_ref_free(&want[i]);
        }
        nd_ref *fr[] = {&bt, &uf, &s0, &s1};
        for (int i = 0; i < 4; i++) nd_ref_free(fr[i]);
    }
    td_scope_end();
}

Test(engines, large_results_are_bit_identical_on_every_engine_and_worker_count, .timeout = 120) {
    nd_ref r[NBIG];
    big_inputs(r, nd_seed("large shape ops", 71));
    void *first[NBIG];
    size_t nfirst[NBIG];
    for (int run = 0; run < SH_NRUNS; run++) {
        int engine, workers;
        sh_run_config(run, &engine, &workers);
        nd_start(engine, workers);
        void *out[NBIG];
        size_t nb[NBIG];
        big_program(r, run == 0 ? first : out, run == 0 ? nfirst : nb, run == 0);
        if (run > 0) {
            for (int i = 0; i < NBIG; i++) {
                size_t at;
                cr_assert(sh_same_bytes(first[i], nfirst[i], out[i], nb[i], &at),
                          "result %d differs between naive and %s with %d workers at byte %zu", i,
                          tt_engine_name(engine), workers, at);
                free(out[i]);
            }
        }
        nd_finish();
    }
    for (int i = 0; i < NBIG; i++) {
        free(first[i]);
        nd_ref_free(&r[i]);
    }
}

/* ---- bad input ---- */

static void known_failure(char *saved, size_t size) {
    td_clear_error();
    cr_assert_null(td_flip(td_zeros(TD_F32, 1, (int64_t[]){2}, td_cpu(0)), 3));
    cr_assert_eq(td_last_status(), TD_EINVAL);
    snprintf(saved, size, "%s", td_last_error());
}

static void expect_unchanged(td_array *r, const char *saved, const char *what) {
    cr_assert_null(r, "%s: not NULL", what);
    cr_assert_eq(td_last_status(), TD_EINVAL, "%s changed td_last_status()", what);
    cr_assert_str_eq(td_last_error(), saved, "%s changed td_last_error()", what);
}

Test(errors, null_inputs_give_null_and_leave_the_last_error_as_it_was, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    char saved[512];
    known_failure(saved, sizeof saved);
    td_array *a = td_ones(TD_F32, 1, (int64_t[]){3}, td_cpu(0));
    td_array *with_null[3] = {a, NULL, a};
    expect_unchanged(td_concat(with_null, 3, 0), saved, "td_concat with a NULL array");
    expect_unchanged(td_stack(with_null, 3, 0), saved, "td_stack with a NULL array");
    expect_unchanged(td_tile(NULL, 1, (int64_t[]){2}), saved, "td_tile(NULL)");
    expect_unchanged(td_flip(NULL, 0), saved, "td_flip(NULL)");
    expect_unchanged(td_pad(NULL, (int64_t[]){1}, (int64_t[]){1}, 0), saved, "td_pad(NULL)");
    /* One check at the end of an expression finds the first failure. */
    td_array *bad[2] = {a, td_zeros(TD_F32, 1, (int64_t[]){-1}, td_cpu(0))};
    cr_assert_null(td_flip(td_tile(td_concat(bad, 2, 0), 1, (int64_t[]){2}), 0));
    cr_assert(tt_has(td_last_error(), "td_zeros"), "the first failure was td_zeros: \"%s\"", td_last_error());
    td_scope_end();
    nd_finish();
}

Test(errors, bad_arguments_give_a_status_and_a_message_naming_the_op_and_the_shapes, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    td_array *a = td_zeros(TD_F32, 2, (int64_t[]){2, 3}, td_cpu(0));
    td_array *b = td_zeros(TD_F32, 2, (int64_t[]){4, 5}, td_cpu(0));
    td_array *v = td_zeros(TD_F32, 1, (int64_t[]){3}, td_cpu(0));
    td_array *s0 = td_zeros(TD_F32, 0, NULL, td_cpu(0));
    td_array *ab[2] = {a, b}, *av[2] = {a, v}, *aa[2] = {a, a}, *ss[2] = {s0, s0};
    /* concat */
    nd_expect_null(td_concat(ab, 2, 0), TD_ESHAPE, "td_concat", "concat of (2, 3) and (4, 5)");
    cr_assert(nd_msg_has_shape(td_last_error(), 2, (int64_t[]){2, 3}) &&
                  nd_msg_has_shape(td_last_error(), 2, (int64_t[]){4, 5}),
              "the message \"%s\" does not name both shapes", td_last_error());
    nd_expect_null(td_concat(av, 2, 0), TD_ESHAPE, "td_concat", "concat of 2-d and 1-d");
    nd_expect_null(td_concat(aa, 2, 2), TD_EINVAL, "td_concat", "concat along axis 2 of 2-d arrays");
    nd_expect_null(td_concat(aa, 2, -3), TD_EINVAL, "td_concat", "concat along axis -3 of 2-d arrays");
    nd_expect_null(td_concat(aa, 2, TD_ALL_AXES), TD_EINVAL, "td_concat", "concat along TD_ALL_AXES");
    nd_expect_null(td_concat(aa, 0, 0), TD_EINVAL, "td_concat", "concat of no arrays");
    nd_expect_null(td_concat(NULL, 2, 0), TD_EINVAL, "td_concat", "concat of a NULL list");
    nd_expect_null2(td_concat(ss, 2, 0), TD_ESHAPE, TD_EINVAL, "td_concat", "concat of 0-d arrays");
    /* stack */
    nd_expect_null(td_stack(ab, 2, 0), TD_ESHAPE, "td_stack", "stack of (2, 3) and (4, 5)");
    cr_assert(nd_msg_has_shape(td_last_error(), 2, (int64_t[]){4, 5}), "\"%s\" does not name (4, 5)",
              td_last_error());
    nd_expect_null(td_stack(aa, 2, 3), TD_EINVAL, "td_stack", "stack along axis 3 of 2-d arrays");
    nd_expect_null(td_stack(aa, 2, -4), TD_EINVAL, "td_stack", "stack along axis -4 of 2-d arrays");
    nd_expect_null(td_stack(aa, -1, 0), TD_EINVAL, "td_stack", "stack of -1 arrays");
    nd_expect_null(td_stack(NULL, 1, 0), TD_EINVAL, "td_stack", "stack of a NULL list");
    td_array *d8 = td_zeros(TD_F32, 8, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 2}, td_cpu(0));
    td_array *dd[2] = {d8, d8};
    nd_expect_null2(td_stack(dd, 2, 0), TD_ESHAPE, TD_EINVAL, "td_stack", "stack of 8-d arrays");
    /* split */
    td_array *parts[4] = {a, a, a, a};
    nd_expect_status(td_split(a, 4, 1, parts), TD_ESHAPE, "td_split", "split of 3 in 4");
    cr_assert(nd_msg_has_shape(td_last_error(), 2, (int64_t[]){2, 3}), "\"%s\" does not name (2, 3)",
              td_last_error());
    for (int i = 0; i < 4; i++) cr_assert_null(parts[i], "a failed split leaves out[%d] set", i);
    nd_expect_status(td_split(a, 0, 1, parts), TD_EINVAL, "td_split", "split in 0 sections");
    nd_expect_status(td_split(a, 1, 2, parts), TD_EINVAL, "td_split", "split along axis 2");
    nd_expect_status(td_split(NULL, 1, 0, parts), TD_EINVAL, "td_split", "split of NULL");
    nd_expect_status(td_split(a, 1, 0, NULL), TD_EINVAL, "td_split", "split into NULL");
    nd_expect_status(td_split(s0, 1, 0, parts), TD_EINVAL, "td_split", "split of a 0-d array");
    /* tile */
    nd_expect_null(td_tile(a, 1, (int64_t[]){-1}), TD_EINVAL, "td_tile", "tile with a negative repeat");
    nd_expect_null(td_tile(a, 2, NULL), TD_EINVAL, "td_tile", "tile with NULL reps");
    nd_expect_null(td_tile(a, -1, (int64_t[]){1}), TD_EINVAL, "td_tile", "tile with n -1");
    nd_expect_null(td_tile(a, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}), TD_EINVAL, "td_tile", "tile with 9 reps");
    nd_expect_null(td_tile(a, 2, (int64_t[]){INT64_MAX / 2, 3}), TD_EINVAL, "td_tile", "tile too large");
    /* flip */
    nd_expect_null(td_flip(a, 2), TD_EINVAL, "td_flip", "flip along axis 2");
    nd_expect_null(td_flip(a, -3), TD_EINVAL, "td_flip", "flip along axis -3");
    nd_expect_null(td_flip(s0, 0), TD_EINVAL, "td_flip", "flip of a 0-d array along axis 0");
    /* pad */
    nd_expect_null(td_pad(a, (int64_t[]){1, -1}, (int64_t[]){0, 0}, 0), TD_EINVAL, "td_pad", "negative before");
    nd_expect_null(td_pad(a, (int64_t[]){0, 0}, (int64_t[]){-2, 0}, 0), TD_EINVAL, "td_pad", "negative after");
    nd_expect_null(td_pad(a, NULL, (int64_t[]){0, 0}, 0), TD_EINVAL, "td_pad", "NULL before");
    nd_expect_null(td_pad(a, (int64_t[]){0, 0}, NULL, 0), TD_EINVAL, "td_pad", "NULL after");
    nd_expect_null(td_pad(a, (int64_t[]){INT64_MAX - 1, 0}, (int64_t[]){5, 0}, 0), TD_EINVAL, "td_pad",
                   "pad too large");
    /* Nothing went wrong at run time. */
    cr_assert_eq(td_wait_all(), TD_OK);
    td_scope_end();
    nd_finish();
}
