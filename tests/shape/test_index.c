/* Indexing ops: take, one_hot, pick, scatter_add, each against the plain
 * references of sh.h over every dtype, inputs of every layout, int32 and
 * int64 indices of any shape and layout (negative ones counting from the
 * end), negative axes and empty arrays; scatter_add accumulates repeated
 * indices in index order, bit-identically on every engine and worker count;
 * take and scatter_add are adjoint (scatter_add of ones counts occurrences);
 * out-of-range indices fail when the op runs (TD_EFAILED at the wait, a
 * message naming the index and the axis size) and the process carries on;
 * bad input gives a status and a message naming the op. */
#include "sh.h"

/* Indices of this shape for an axis of size n (negative ones included), as
 * an array of the given dtype and layout; *ref gets the values. */
static td_array *make_indices(int dtype, int ndim, const int64_t *shape, int64_t n, int layout, tt_rng *g,
                              nd_ref *ref) {
    *ref = sh_ref_indices(dtype, ndim, shape, n, g);
    td_array *c = nd_make(ref);
    td_array *v = sh_relayout(c, layout, g);
    td_release(c);
    return v;
}

static const int index_layouts[4] = {ND_LAYOUT_CONTIG, ND_LAYOUT_STRIDED, ND_LAYOUT_TRANSPOSED, ND_LAYOUT_MIXED};

/* ---- take ---- */

Test(take, gathers_along_any_axis_for_every_dtype_layout_and_index_shape, .timeout = 90) {
    tt_rng g = {nd_seed("take", 101)};
    nd_start(TD_ENGINE_THREADED, 2);
    const int axes[] = {0, 1, 2, -1};
    const struct {
        int nd;
        int64_t shape[2];
    } ishapes[] = {{0, {0}}, {1, {4}}, {2, {2, 3}}, {1, {0}}};
    int count = 0;
    ND_FOR_EACH_DTYPE(dt) {
        for (int lay = 0; lay < ND_NLAYOUTS; lay++) {
            for (int ai = 0; ai < 4; ai++) {
                for (int si = 0; si < 4; si++, count++) {
                    nd_ref ra, ri;
                    td_array *a = nd_make_input(dt, 3, (int64_t[]){3, 4, 5}, lay, &g, ND_GEN_BIG, &ra);
                    int64_t n = ra.shape[sh_axis(axes[ai], 3)];
                    int idt = count % 2 ? TD_I64 : TD_I32, ilay = index_layouts[count % 4];
                    td_array *ind = make_indices(idt, ishapes[si].nd, ishapes[si].shape, n, ilay, &g, &ri);
                    td_array *t = td_take(a, ind, axes[ai]);
                    char what[200];
                    snprintf(what, sizeof what, "take %s from a %s input along axis %d with %s %s indices of %d dims",
                             nd_dt(dt), nd_layout_name(lay), axes[ai], nd_dt(idt), nd_layout_name(ilay),
                             ishapes[si].nd);
                    nd_ref want = sh_ref_take(&ra, &ri, axes[ai]);
                    nd_expect_ref(t, &want, what);
                    nd_ref_free(&want);
                    nd_ref_free(&ra);
                    nd_ref_free(&ri);
                    td_release(a);
                    td_release(ind);
                    td_release(t);
                }
            }
        }
    }
    nd_finish();
}

Test(take, all_axes_takes_from_the_flattened_array_and_permuted_4d_inputs_work, .timeout = 60) {
    tt_rng g = {nd_seed("take all axes", 102)};
    nd_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    ND_FOR_EACH_DTYPE(dt) {
        for (int lay = 0; lay < ND_NLAYOUTS; lay++) {
            nd_ref ra, ri;
            td_array *a = nd_make_input(dt, 2, (int64_t[]){3, 4}, lay, &g, ND_GEN_BIG, &ra);
            td_array *ind = make_indices(TD_I64, 2, (int64_t[]){2, 5}, 12, ND_LAYOUT_CONTIG, &g, &ri);
            nd_ref flat = nd_ref_reshape(&ra, 1, (int64_t[]){12});
            nd_ref want = sh_ref_take(&flat, &ri, 0);
            nd_expect_ref(td_take(a, ind, TD_ALL_AXES), &want, "take with TD_ALL_AXES");
            nd_ref_free(&want);
            nd_ref_free(&flat);
            nd_ref_free(&ri);
            nd_ref_free(&ra);
        }
    }
    /* A 4-d input whose axes before and after the axis do not merge (read
     * from a contiguous copy). */
    nd_ref rb;
    td_array *b = nd_make_random(&rb, TD_F64, 4, (int64_t[]){2, 3, 4, 5}, &g, ND_GEN_GENERAL);
    td_array *bp = td_transpose(b, (int[]){2, 0, 3, 1});
    nd_ref rbp = nd_ref_transpose(&rb, (int[]){2, 0, 3, 1});
    for (int ax = 0; ax < 4; ax++) {
        nd_ref ri;
        td_array *ind = make_indices(TD_I32, 1, (int64_t[]){3}, rbp.shape[ax], ND_LAYOUT_STRIDED, &g, &ri);
        nd_ref want = sh_ref_take(&rbp, &ri, ax);
        nd_expect_ref(td_take(bp, ind, ax), &want, "take from a permuted 4-d view");
        nd_ref_free(&want);
        nd_ref_free(&ri);
    }
    nd_ref_free(&rb);
    nd_ref_free(&rbp);
    /* An empty axis with no indices, and 0-d indices. */
    td_array *e = td_zeros(TD_F32, 2, (int64_t[]){0, 3}, td_cpu(0));
    td_array *none = td_zeros(TD_I64, 1, (int64_t[]){0}, td_cpu(0));
    td_array *t = td_take(e, none, 0);
    cr_assert_eq(td_array_wait(t), TD_OK, "%s", td_last_error());
    cr_assert(td_ndim(t) == 2 && td_shape(t)[0] == 0 && td_shape(t)[1] == 3);
    td_scope_end();
    nd_finish();
}

/* ---- one_hot ---- */

Test(one_hot, puts_a_one_at_each_index_for_every_dtype_and_index_layout, .timeout = 60) {
    tt_rng g = {nd_seed("one_hot", 111)};
    nd_start(TD_ENGINE_THREADED, 2);
    const struct {
        int nd;
        int64_t shape[2];
        int64_t depth;
    } cases[] = {{1, {6}, 4}, {2, {2, 3}, 5}, {0, {0}, 3}, {1, {0}, 4}, {2, {3, 2}, 1}, {1, {0}, 0}};
    int count = 0;
    ND_FOR_EACH_DTYPE(dt) {
        for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
            for (int li = 0; li < 4; li++, count++) {
                nd_ref ri;
                int idt = count % 2 ? TD_I32 : TD_I64;
                td_array *ind;
                if (cases[ci].depth > 0) {
                    ind = make_indices(idt, cases[ci].nd, cases[ci].shape, cases[ci].depth, index_layouts[li], &g,
                                       &ri);
                } else {
                    ri = nd_ref_new(idt, cases[ci].nd, cases[ci].shape);
                    ind = nd_make(&ri);
                }
                td_array *h = td_one_hot(ind, cases[ci].depth, dt);
                char what[160];
                snprintf(what, sizeof what, "one_hot %s case %zu with %s %s indices", nd_dt(dt), ci, nd_dt(idt),
                         nd_layout_name(index_layouts[li]));
                nd_ref want = sh_ref_one_hot(&ri, cases[ci].depth, dt);
                nd_expect_ref(h, &want, what);
                nd_ref_free(&want);
                nd_ref_free(&ri);
                td_release(ind);
                td_release(h);
            }
        }
    }
    nd_finish();
}

/* ---- pick ---- */

Test(pick, takes_one_element_per_position_along_any_axis, .timeout = 60) {
    tt_rng g = {nd_seed("pick", 121)};
    nd_start(TD_ENGINE_THREADED, 2);
    const int axes[] = {0, 1, 2, -1, -3};
    int count = 0;
    ND_FOR_EACH_DTYPE(dt) {
        for (int lay = 0; lay < ND_NLAYOUTS; lay++) {
            for (int ai = 0; ai < 5; ai++, count++) {
                nd_ref ra, ri;
                td_array *a = nd_make_input(dt, 3, (int64_t[]){3, 4, 5}, lay, &g, ND_GEN_BIG, &ra);
                int ax = sh_axis(axes[ai], 3);
                int64_t ishape[2];
                for (int d = 0, k = 0; d < 3; d++)
                    if (d != ax) ishape[k++] = ra.shape[d];
                int idt = count % 2 ? TD_I64 : TD_I32, ilay = index_layouts[count % 4];
                td_array *ind = make_indices(idt, 2, ishape, ra.shape[ax], ilay, &g, &ri);
                td_array *p = td_pick(a, ind, axes[ai]);
                char what[200];
                snprintf(what, sizeof what, "pick %s from a %s input along axis %d with %s %s indices", nd_dt(dt),
                         nd_layout_name(lay), axes[ai], nd_dt(idt), nd_layout_name(ilay));
                nd_ref want = sh_ref_pick(&ra, &ri, axes[ai]);
                nd_expect_ref(p, &want, what);
                nd_ref_free(&want);
                nd_ref_free(&ra);
                nd_ref_free(&ri);
                td_release(a);
                td_release(ind);
                td_release(p);
            }
        }
    }
    td_scope_begin();
    /* A 1-d input gives a 0-d result; empty positions an empty one. */
    nd_ref ra, ri;
    td_array *a = nd_make_random(&ra, TD_F32, 1, (int64_t[]){5}, &g, ND_GEN_GENERAL);
    td_array *ind = make_indices(TD_I64, 0, NULL, 5, ND_LAYOUT_CONTIG, &g, &ri);
    nd_ref want = sh_ref_pick(&ra, &ri, 0);
    nd_expect_ref(td_pick(a, ind, -1), &want, "pick from a 1-d array");
    nd_ref_free(&want);
    nd_ref_free(&ra);
    nd_ref_free(&ri);
    td_array *e = td_pick(td_zeros(TD_I32, 2, (int64_t[]){0, 4}, td_cpu(0)),
                          td_zeros(TD_I32, 1, (int64_t[]){0}, td_cpu(0)), 1);
    cr_assert_eq(td_array_wait(e), TD_OK, "%s", td_last_error());
    cr_assert_eq(td_numel(e), 0);
    td_scope_end();
    nd_finish();
}

/* ---- scatter_add ---- */

static const int dst_layouts[4] = {ND_LAYOUT_CONTIG, ND_LAYOUT_STRIDED, ND_LAYOUT_TRANSPOSED, ND_LAYOUT_MIXED};

Test(scatter_add, adds_slices_at_indices_accumulating_repeats_for_every_dtype_and_layout, .timeout = 90) {
    tt_rng g = {nd_seed("scatter_add", 131)};
    nd_start(TD_ENGINE_THREADED, 2);
    const int axes[] = {0, 1, 2, -1};
    const struct {
        int nd;
        int64_t shape[2];
    } ishapes[] = {{1, {7}}, {2, {2, 3}}, {0, {0}}, {1, {0}}};
    int count = 0;
    ND_FOR_EACH_DTYPE(dt) {
        for (int dl = 0; dl < 4; dl++) {
            for (int ai = 0; ai < 4; ai++) {
                for (int si = 0; si < 4; si++, count++) {
                    nd_ref rd, ri, rs;
                    td_array *dst = nd_make_input(dt, 3, (int64_t[]){3, 4, 5}, dst_layouts[dl], &g, ND_GEN_GENERAL,
                                                  &rd);
                    int ax = sh_axis(axes[ai], 3);
                    int idt = count % 2 ? TD_I32 : TD_I64, ilay = index_layouts[count % 4];
                    int slay = count % ND_NLAYOUTS;
                    /* 7 indices into 3 to 5 positions: repeats are certain. */
                    td_array *ind = make_indices(idt, ishapes[si].nd, ishapes[si].shape, rd.shape[ax], ilay, &g, &ri);
                    int64_t sshape[TD_MAX_DIMS];
                    int sn = 0;
                    for (int d = 0; d < ax; d++) sshape[sn++] = rd.shape[d];
                    for (int d = 0; d < ishapes[si].nd; d++) sshape[sn++] = ishapes[si].shape[d];
                    for (int d = ax + 1; d < 3; d++) sshape[sn++] = rd.shape[d];
                    td_array *src = nd_make_input(dt, sn, sshape, slay, &g, ND_GEN_GENERAL, &rs);
                    char what[240];
                    snprintf(what, sizeof what,
                             "scatter_add %s into a %s dst along axis %d, %s %s indices of %d dims, a %s src",
                             nd_dt(dt), nd_layout_name(dst_layouts[dl]), axes[ai], nd_dt(idt), nd_layout_name(ilay),
                             ishapes[si].nd, nd_layout_name(slay));
                    cr_assert_eq(td_scatter_add(dst, ind, src, axes[ai]), TD_OK, "%s: %s", what, td_last_error());
                    sh_ref_scatter_add(&rd, &ri, &rs, axes[ai]);
                    nd_expect_ref(dst, &rd, what);
                    nd_ref_free(&rd);
                    nd_ref_free(&ri);
                    nd_ref_free(&rs);
                    td_release(dst);
                    td_release(ind);
                    td_release(src);
                }
            }
        }
    }
    nd_finish();
}

Test(scatter_add, writes_only_the_view_and_reads_src_as_it_was_before_the_op, .timeout = 60) {
    tt_rng g = {nd_seed("scatter_add views", 132)};
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        td_scope_begin();
        /* dst a strided view: the elements between stay as they were. */
        nd_ref rb;
        td_array *base = nd_make_random(&rb, TD_I64, 2, (int64_t[]){5, 6}, &g, ND_GEN_GENERAL);
        td_array *view = td_slice(td_slice(base, 0, 0, 5, 2), 1, 5, -7, -2); /* (3, 3) */
        nd_ref rv0 = nd_ref_slice(&rb, 0, 0, 5, 2), rv = nd_ref_slice(&rv0, 1, 5, -7, -2);
        nd_ref ri, rs;
        td_array *ind = make_indices(TD_I32, 1, (int64_t[]){4}, 3, ND_LAYOUT_CONTIG, &g, &ri);
        td_array *src = nd_make_random(&rs, TD_I64, 2, (int64_t[]){3, 4}, &g, ND_GEN_GENERAL);
        cr_assert_eq(td_scatter_add(view, ind, src, 1), TD_OK, "%s", td_last_error());
        sh_ref_scatter_add(&rv, &ri, &rs, 1);
        for (int64_t r = 0; r < 3; r++)
            for (int64_t c = 0; c < 3; c++) rb.i[(2 * r) * 6 + (5 - 2 * c)] = rv.i[r * 3 + c];
        nd_expect_ref(base, &rb, "the base of a strided dst");
        nd_ref_free(&rv0);
        nd_ref_free(&rv);
        nd_ref_free(&ri);
        nd_ref_free(&rs);
        nd_ref_free(&rb);
        /* src is dst itself, and src is the transpose of dst: read as before. */
        nd_ref rd;
        td_array *dst = nd_make_random(&rd, TD_F64, 2, (int64_t[]){4, 4}, &g, ND_GEN_GENERAL);
        td_array *perm = make_indices(TD_I64, 1, (int64_t[]){4}, 4, ND_LAYOUT_CONTIG, &g, &ri);
        nd_ref before = nd_ref_clone(&rd);
        cr_assert_eq(td_scatter_add(dst, perm, dst, 0), TD_OK);
        sh_ref_scatter_add(&rd, &ri, &before, 0);
        nd_expect_ref(dst, &rd, "scatter_add of dst into itself");
        nd_ref_free(&before);
        before = nd_ref_clone(&rd);
        nd_ref bt = nd_ref_transpose(&before, NULL);
        cr_assert_eq(td_scatter_add(dst, perm, td_transpose(dst, NULL), 1), TD_OK);
        sh_ref_scatter_add(&rd, &ri, &bt, 1);
        nd_expect_ref(dst, &rd, "scatter_add of dst's transpose into dst");
        nd_ref_free(&before);
        nd_ref_free(&bt);
        nd_ref_free(&ri);
        nd_ref_free(&rd);
        /* src of another dtype is converted to dst's when no kind is lost. */
        const int pairs[][2] = {{TD_I32, TD_F64}, {TD_U8, TD_I32}, {TD_F32, TD_F64}, {TD_I64, TD_F32}};
        for (int p = 0; p < 4; p++) {
            nd_ref rd2, rs2, ri2;
            td_array *d2 = nd_make_random(&rd2, pairs[p][1], 1, (int64_t[]){5}, &g, ND_GEN_GENERAL);
            td_array *s2 = nd_make_random(&rs2, pairs[p][0], 1, (int64_t[]){6}, &g, ND_GEN_GENERAL);
            td_array *i2 = make_indices(TD_I32, 1, (int64_t[]){6}, 5, ND_LAYOUT_CONTIG, &g, &ri2);
            cr_assert_eq(td_scatter_add(d2, i2, s2, 0), TD_OK, "%s into %s: %s", nd_dt(pairs[p][0]),
                         nd_dt(pairs[p][1]), td_last_error());
            sh_ref_scatter_add(&rd2, &ri2, &rs2, 0);
            nd_expect_ref(d2, &rd2, "scatter_add of another dtype");
            nd_ref_free(&rd2);
            nd_ref_free(&rs2);
            nd_ref_free(&ri2);
        }
        /* A permuted 4-d dst whose axes do not merge. */
        nd_ref r4;
        td_array *b4 = nd_make_random(&r4, TD_F32, 4, (int64_t[]){2, 3, 4, 5}, &g, ND_GEN_GENERAL);
        td_array *d4 = td_transpose(b4, (int[]){2, 0, 3, 1}); /* (4, 2, 5, 3) */
        nd_ref rd4 = nd_ref_transpose(&r4, (int[]){2, 0, 3, 1});
        td_array *i4 = make_indices(TD_I64, 1, (int64_t[]){6}, 5, ND_LAYOUT_CONTIG, &g, &ri);
        td_array *s4 = nd_make_random(&rs, TD_F32, 4, (int64_t[]){4, 2, 6, 3}, &g, ND_GEN_GENERAL);
        cr_assert_eq(td_scatter_add(d4, i4, s4, 2), TD_OK, "%s", td_last_error());
        sh_ref_scatter_add(&rd4, &ri, &rs, 2);
        nd_expect_ref(d4, &rd4, "scatter_add into a permuted 4-d view");
        nd_ref_free(&r4);
        nd_ref_free(&rd4);
        nd_ref_free(&ri);
        nd_ref_free(&rs);
        td_scope_end();
        nd_finish();
    }
}

Test(scatter_add, is_the_adjoint_of_take_and_counts_occurrences_of_ones, .timeout = 60) {
    tt_rng g = {nd_seed("take and scatter_add", 141)};
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        td_scope_begin();
        /* Counting: scatter_add of ones into zeros. */
        enum { N = 37, M = 5000 };
        nd_ref ri;
        td_array *ind = make_indices(TD_I64, 2, (int64_t[]){50, M / 50}, N, ND_LAYOUT_TRANSPOSED, &g, &ri);
        td_array *counts = td_zeros(TD_I64, 1, (int64_t[]){N}, td_cpu(0));
        cr_assert_eq(td_scatter_add(counts, ind, td_ones(TD_I64, 2, (int64_t[]){50, M / 50}, td_cpu(0)), 0), TD_OK);
        int64_t got[N], want[N] = {0};
        for (int64_t k = 0; k < M; k++) want[sh_wrap(ri.i[k], N)]++;
        cr_assert_eq(td_to_host(counts, got, sizeof got), TD_OK);
        for (int k = 0; k < N; k++) cr_assert_eq(got[k], want[k], "count of %d: %lld, expected %lld", k,
                                                (long long)got[k], (long long)want[k]);
        nd_ref_free(&ri);
        /* Adjoint, exactly in int64: sum(take(a, i) * y) = sum(a * scatter_add(0, i, y)). */
        for (int ax = 0; ax < 2; ax++) {
            nd_ref ra, ry, rj;
            td_array *a = nd_make_random(&ra, TD_I64, 2, (int64_t[]){6, 7}, &g, ND_GEN_GENERAL);
            td_array *j = make_indices(TD_I32, 1, (int64_t[]){20}, ra.shape[ax], ND_LAYOUT_STRIDED, &g, &rj);
            int64_t yshape[2] = {6, 7};
            yshape[ax] = 20;
            td_array *y = nd_make_random(&ry, TD_I64, 2, yshape, &g, ND_GEN_GENERAL);
            nd_ref t = nd_read(td_take(a, j, ax));
            td_array *s = td_zeros(TD_I64, 2, (int64_t[]){6, 7}, td_cpu(0));
            cr_assert_eq(td_scatter_add(s, j, y, ax), TD_OK);
            nd_ref rs = nd_read(s);
            int64_t lhs = 0, rhs = 0;
            for (int64_t k = 0; k < t.n; k++) lhs += t.i[k] * ry.i[k];
            for (int64_t k = 0; k < ra.n; k++) rhs += ra.i[k] * rs.i[k];
            cr_assert_eq(lhs, rhs, "axis %d: <take(a), y> = %lld but <a, scatter_add(y)> = %lld", ax, (long long)lhs,
                         (long long)rhs);
            nd_ref *fr[] = {&ra, &ry, &rj, &t, &rs};
            for (int k = 0; k < 5; k++) nd_ref_free(fr[k]);
        }
        td_scope_end();
        nd_finish();
    }
}

/* ---- large inputs on every engine and worker count ---- */

enum { NBIG = 6 };

/* f32 values with 24 significant bits (multiples of 2^-20 up to 8): sums of
 * a few hundred round in float, so the order of additions shows. */
static void fine_floats(nd_ref *r, tt_rng *g) {
    for (int64_t k = 0; k < r->n; k++)
        nd_ref_put_f(r, k, (double)((int64_t)(tt_rng_next(g) % (1u << 24)) - (1 << 23)) / (double)(1 << 20));
}

typedef struct {
    nd_ref a, i0, s0, d0, i1, s1, d1, p, ip, oh;
} big_in;

static void big_inputs(big_in *b, uint64_t seed) {
    tt_rng g = {seed};
    b->a = nd_ref_new(TD_F32, 2, (int64_t[]){2000, 600});
    fine_floats(&b->a, &g);
    b->i0 = sh_ref_indices(TD_I64, 1, (int64_t[]){2000}, 2000, &g);
    /* scatter along axis 0 (rows of 600) and along axis 1 (one element
     * per position), 2000 updates into 50 places: ~40 per element */
    b->d0 = nd_ref_new(TD_F32, 2, (int64_t[]){50, 600});
    fine_floats(&b->d0, &g);
    b->s0 = nd_ref_new(TD_F32, 2, (int64_t[]){2000, 600});
    fine_floats(&b->s0, &g);
    b->i1 = sh_ref_indices(TD_I32, 1, (int64_t[]){2000}, 50, &g);
    b->d1 = nd_ref_new(TD_F64, 2, (int64_t[]){600, 50});
    nd_ref_random(&b->d1, &g, ND_GEN_GENERAL);
    b->s1 = nd_ref_new(TD_F64, 2, (int64_t[]){600, 2000});
    for (int64_t k = 0; k < b->s1.n; k++) b->s1.f[k] = (double)(tt_rng_next(&g) >> 11) * 0x1p-53 * 1e3;
    b->p = nd_ref_new(TD_I64, 2, (int64_t[]){3, 400000});
    nd_ref_random(&b->p, &g, ND_GEN_BIG);
    b->ip = sh_ref_indices(TD_I32, 1, (int64_t[]){400000}, 3, &g);
    b->oh = sh_ref_indices(TD_I64, 1, (int64_t[]){12000}, 100, &g);
}

static void big_free(big_in *b) {
    nd_ref *r[] = {&b->a, &b->i0, &b->s0, &b->d0, &b->i1, &b->s1, &b->d1, &b->p, &b->ip, &b->oh};
    for (int i = 0; i < 10; i++) nd_ref_free(r[i]);
}

static void big_program(big_in *b, void **out, size_t *nb, int check) {
    td_scope_begin();
    td_array *res[NBIG];
    res[0] = td_take(nd_make(&b->a), nd_make(&b->i0), 0);
    td_array *d0 = nd_make(&b->d0);
    cr_assert_eq(td_scatter_add(d0, nd_make(&b->i1), nd_make(&b->s0), 0), TD_OK, "%s", td_last_error());
    res[1] = d0;
    td_array *d1 = nd_make(&b->d1);
    cr_assert_eq(td_scatter_add(d1, nd_make(&b->i1), nd_make(&b->s1), -1), TD_OK, "%s", td_last_error());
    res[2] = d1;
    res[3] = td_pick(nd_make(&b->p), td_reshape(nd_make(&b->ip), 1, (int64_t[]){400000}), 0);
    res[4] = td_one_hot(nd_make(&b->oh), 100, TD_F32);
    res[5] = td_take(td_transpose(nd_make(&b->a), NULL), nd_make(&b->i1), 1);
    for (int i = 0; i < NBIG; i++) out[i] = sh_bytes(res[i], &nb[i]);
    if (check) {
        nd_ref want[NBIG];
        want[0] = sh_ref_take(&b->a, &b->i0, 0);
        want[1] = nd_ref_clone(&b->d0);
        sh_ref_scatter_add(&want[1], &b->i1, &b->s0, 0);
        want[2] = nd_ref_clone(&b->d1);
        sh_ref_scatter_add(&want[2], &b->i1, &b->s1, -1);
        want[3] = sh_ref_pick(&b->p, &b->ip, 0);
        want[4] = sh_ref_one_hot(&b->oh, 100, TD_F32);
        nd_ref at = nd_ref_transpose(&b->a, NULL);
        want[5] = sh_ref_take(&at, &b->i1, 1);
        nd_ref_free(&at);
        for (int i = 0; i < NBIG; i++) {
            /* Bit for bit: scatter_add adds in index order, as the reference. */
            void *wb = nd_ref_bytes(&want[i]);
            size_t wn = nd_size(want[i].dtype) * (size_t)want[i].n, pos;
            cr_assert(sh_same_bytes(out[i], nb[i], wb, wn, &pos),
                      "large result %d differs from the reference at byte %zu", i, pos);
            /* scatter_add's results are small; their 1.2M updates are not */
            int64_t big = i == 1 ? b->s0.n : i == 2 ? b->s1.n : want[i].n;
            cr_assert(big >= 400000, "large case %d has only %lld elements", i, (long long)big);
            free(wb);
            nd_ref_free(&want[i]);
        }
    }
    td_scope_end();
}

Test(engines, large_results_are_bit_identical_on_every_engine_and_worker_count, .timeout = 150) {
    big_in b;
    big_inputs(&b, nd_seed("large indexing ops", 151));
    void *first[NBIG];
    size_t nfirst[NBIG];
    for (int run = 0; run < SH_NRUNS; run++) {
        int engine, workers;
        sh_run_config(run, &engine, &workers);
        nd_start(engine, workers);
        void *out[NBIG];
        size_t nb[NBIG];
        big_program(&b, run == 0 ? first : out, run == 0 ? nfirst : nb, run == 0);
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
    for (int i = 0; i < NBIG; i++) free(first[i]);
    big_free(&b);
}

/* ---- indices out of range ---- */

/* r's op failed when it ran: the wait says TD_EFAILED with a message
 * naming the op, the index and the axis size; so does every later wait and
 * an op that reads r. */
static void expect_index_failure(td_array *r, const char *op, const char *index, const char *size,
                                 const char *what) {
    cr_assert_not_null(r, "%s: refused at push time: %s", what, td_last_error());
    cr_assert_eq(td_array_wait(r), TD_EFAILED, "%s: the wait did not fail", what);
    cr_assert_eq(td_last_status(), TD_EFAILED);
    const char *m = td_last_error();
    cr_assert(tt_has(m, op) && tt_has(m, index) && tt_has(m, size),
              "%s: the message \"%s\" does not name %s, \"%s\" and \"%s\"", what, m, op, index, size);
    cr_assert_eq(td_array_wait(r), TD_EFAILED, "%s: a second wait did not fail", what);
    td_array *after = td_add_scalar(r, 1);
    cr_assert_eq(td_array_wait(after), TD_EFAILED, "%s: an op reading the failed result ran", what);
    td_release(after);
}

Test(errors, out_of_range_indices_fail_when_the_op_runs_and_the_process_carries_on, .timeout = 60) {
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        td_scope_begin();
        td_array *a = td_arange(TD_F32, 0, 15, 1, td_cpu(0));
        td_array *a2 = td_reshape(a, 2, (int64_t[]){3, 5});
        td_array *bad_hi = td_from_host((int64_t[]){0, 4, 5, 1}, TD_I64, 1, (int64_t[]){4}, td_cpu(0));
        td_array *bad_lo = td_from_host((int32_t[]){0, -6, 1, 2}, TD_I32, 1, (int64_t[]){4}, td_cpu(0));
        td_array *bad3 = td_from_host((int32_t[]){0, 1, 3}, TD_I32, 1, (int64_t[]){3}, td_cpu(0));
        expect_index_failure(td_take(a2, bad_hi, 1), "take", "index 5", "size 5", "take with index 5 of 5");
        expect_index_failure(td_take(a2, bad_lo, -1), "take", "index -6", "size 5", "take with index -6 of 5");
        expect_index_failure(td_take(a2, bad3, 0), "take", "index 3", "size 3", "take with index 3 of 3");
        /* Indices checked even when the result has no elements. */
        td_array *e = td_zeros(TD_F32, 2, (int64_t[]){3, 0}, td_cpu(0));
        expect_index_failure(td_take(e, bad3, 0), "take", "index 3", "size 3", "take into an empty result");
        expect_index_failure(td_one_hot(bad_hi, 5, TD_F32), "one_hot", "index 5", "5", "one_hot depth 5");
        td_array *bad_pick = td_from_host((int64_t[]){0, 7, 1}, TD_I64, 1, (int64_t[]){3}, td_cpu(0));
        expect_index_failure(td_pick(a2, bad_pick, 1), "pick", "index 7", "size 5", "pick with index 7 of 5");
        /* scatter_add checks before it adds: dst carries the failure until
         * it is overwritten. */
        td_array *dst = td_zeros(TD_F32, 2, (int64_t[]){3, 5}, td_cpu(0));
        cr_assert_eq(td_scatter_add(dst, bad_hi, td_ones(TD_F32, 2, (int64_t[]){3, 4}, td_cpu(0)), 1), TD_OK,
                     "scatter_add pushes fine: %s", td_last_error());
        cr_assert_eq(td_array_wait(dst), TD_EFAILED, "scatter_add with index 5 of 5 did not fail");
        cr_assert(tt_has(td_last_error(), "scatter_add") && tt_has(td_last_error(), "index 5") &&
                      tt_has(td_last_error(), "size 5"),
                  "the message \"%s\"", td_last_error());
        cr_assert_eq(td_fill(dst, 1), TD_OK);
        cr_assert_eq(td_array_wait(dst), TD_OK, "a fill after the failure did not clear it: %s", td_last_error());
        /* Every failure was reported by a wait. */
        cr_assert_eq(td_wait_all(), TD_OK, "%s", td_last_error());
        /* The process carries on: the same ops with good indices. */
        td_array *good = td_from_host((int64_t[]){0, 4, -5, 1}, TD_I64, 1, (int64_t[]){4}, td_cpu(0));
        cr_assert_eq(td_scatter_add(dst, good, td_ones(TD_F32, 2, (int64_t[]){3, 4}, td_cpu(0)), 1), TD_OK);
        float got[15];
        cr_assert_eq(td_to_host(dst, got, sizeof got), TD_OK, "%s", td_last_error());
        /* after the fill (1): column 0 gets two ones (indices 0 and -5), columns 4 and 1 one each */
        for (int k = 0; k < 15; k++)
            cr_assert_eq(got[k], k % 5 == 0 ? 3.0f : (k % 5 == 1 || k % 5 == 4) ? 2.0f : 1.0f, "element %d", k);
        float t[12];
        cr_assert_eq(td_to_host(td_take(a2, good, 1), t, sizeof t), TD_OK, "%s", td_last_error());
        for (int r = 0; r < 3; r++) {
            const int cols[4] = {0, 4, 0, 1};
            for (int c = 0; c < 4; c++) cr_assert_eq(t[r * 4 + c], (float)(r * 5 + cols[c]));
        }
        td_scope_end();
        nd_finish();
    }
}

/* ---- bad input ---- */

Test(errors, null_inputs_give_null_and_leave_the_last_error_as_it_was, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    td_clear_error();
    cr_assert_null(td_take(td_zeros(TD_F32, 1, (int64_t[]){-2}, td_cpu(0)), NULL, 0));
    cr_assert_eq(td_last_status(), TD_EINVAL);
    char saved[512];
    snprintf(saved, sizeof saved, "%s", td_last_error());
    cr_assert(tt_has(saved, "td_zeros"), "\"%s\"", saved);
    td_array *a = td_zeros(TD_F32, 2, (int64_t[]){2, 3}, td_cpu(0));
    td_array *i = td_zeros(TD_I64, 1, (int64_t[]){2}, td_cpu(0));
    td_array *r[] = {td_take(NULL, i, 0),      td_take(a, NULL, 0),   td_one_hot(NULL, 3, TD_F32),
                     td_pick(NULL, i, 1),      td_pick(a, NULL, 0)};
    for (int k = 0; k < 5; k++) {
        cr_assert_null(r[k], "call %d with a NULL input gave an array", k);
        cr_assert_eq(td_last_status(), TD_EINVAL, "call %d changed td_last_status()", k);
        cr_assert_str_eq(td_last_error(), saved, "call %d changed td_last_error()", k);
    }
    /* td_scatter_add returns a status: NULL is TD_EINVAL with a message. */
    nd_expect_status(td_scatter_add(NULL, i, a, 0), TD_EINVAL, "td_scatter_add", "scatter_add into NULL");
    nd_expect_status(td_scatter_add(a, NULL, a, 0), TD_EINVAL, "td_scatter_add", "scatter_add with NULL indices");
    nd_expect_status(td_scatter_add(a, i, NULL, 0), TD_EINVAL, "td_scatter_add", "scatter_add of NULL");
    td_scope_end();
    nd_finish();
}

Test(errors, bad_arguments_give_a_status_and_a_message_naming_the_op_and_the_shapes, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    td_array *a = td_zeros(TD_F32, 2, (int64_t[]){2, 3}, td_cpu(0));
    td_array *i = td_zeros(TD_I64, 1, (int64_t[]){2}, td_cpu(0));
    td_array *i4 = td_zeros(TD_I32, 1, (int64_t[]){4}, td_cpu(0));
    td_array *fi = td_zeros(TD_F32, 1, (int64_t[]){2}, td_cpu(0));
    td_array *ui = td_zeros(TD_U8, 1, (int64_t[]){2}, td_cpu(0));
    /* take */
    nd_expect_null(td_take(a, fi, 0), TD_EDTYPE, "td_take", "take with float32 indices");
    nd_expect_null(td_take(a, ui, 0), TD_EDTYPE, "td_take", "take with uint8 indices");
    nd_expect_null(td_take(a, i, 2), TD_EINVAL, "td_take", "take along axis 2 of a 2-d array");
    nd_expect_null(td_take(a, i, -3), TD_EINVAL, "td_take", "take along axis -3");
    td_array *i8 = td_zeros(TD_I64, 8, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 2}, td_cpu(0));
    nd_expect_null2(td_take(a, i8, 0), TD_ESHAPE, TD_EINVAL, "td_take", "take giving 9 dimensions");
    /* one_hot */
    nd_expect_null(td_one_hot(fi, 3, TD_F32), TD_EDTYPE, "td_one_hot", "one_hot of float32 indices");
    nd_expect_null(td_one_hot(i, -1, TD_F32), TD_EINVAL, "td_one_hot", "one_hot with depth -1");
    nd_expect_null(td_one_hot(i, 3, 99), TD_EDTYPE, "td_one_hot", "one_hot with dtype 99");
    nd_expect_null2(td_one_hot(i8, 3, TD_F32), TD_ESHAPE, TD_EINVAL, "td_one_hot", "one_hot giving 9 dimensions");
    /* pick */
    nd_expect_null(td_pick(a, fi, 1), TD_EDTYPE, "td_pick", "pick with float32 indices");
    nd_expect_null(td_pick(a, i4, 1), TD_ESHAPE, "td_pick", "pick with (4,) indices from (2, 3) along 1");
    cr_assert(nd_msg_has_shape(td_last_error(), 1, (int64_t[]){4}) &&
                  nd_msg_has_shape(td_last_error(), 2, (int64_t[]){2, 3}),
              "the message \"%s\" does not name both shapes", td_last_error());
    nd_expect_null(td_pick(a, i, 0), TD_ESHAPE, "td_pick", "pick with (2,) indices from (2, 3) along 0");
    nd_expect_null(td_pick(a, i, 2), TD_EINVAL, "td_pick", "pick along axis 2");
    /* scatter_add */
    td_array *src = td_zeros(TD_F32, 2, (int64_t[]){2, 4}, td_cpu(0));
    nd_expect_status(td_scatter_add(a, i, src, 1), TD_ESHAPE, "td_scatter_add", "src (2, 4) for indices (2,)");
    cr_assert(nd_msg_has_shape(td_last_error(), 2, (int64_t[]){2, 4}) &&
                  nd_msg_has_shape(td_last_error(), 2, (int64_t[]){2, 3}),
              "the message \"%s\" does not name both shapes", td_last_error());
    nd_expect_status(td_scatter_add(a, i4, src, 0), TD_ESHAPE, "td_scatter_add", "src (2, 4) along axis 0");
    nd_expect_status(td_scatter_add(a, fi, src, 1), TD_EDTYPE, "td_scatter_add", "float32 indices");
    nd_expect_status(td_scatter_add(a, i, src, 2), TD_EINVAL, "td_scatter_add", "axis 2");
    td_array *ia = td_zeros(TD_I32, 2, (int64_t[]){2, 3}, td_cpu(0));
    td_array *fsrc = td_zeros(TD_F64, 2, (int64_t[]){2, 2}, td_cpu(0));
    nd_expect_status(td_scatter_add(ia, i, fsrc, 1), TD_EDTYPE, "td_scatter_add", "float64 updates into int32");
    td_array *bc = td_broadcast_to(td_zeros(TD_F32, 1, (int64_t[]){3}, td_cpu(0)), 2, (int64_t[]){2, 3});
    nd_expect_status(td_scatter_add(bc, i, td_zeros(TD_F32, 2, (int64_t[]){2, 2}, td_cpu(0)), 1), TD_EINVAL,
                     "td_scatter_add", "scatter_add into a broadcast view");
    cr_assert_eq(td_wait_all(), TD_OK);
    td_scope_end();
    nd_finish();
}
