/* td_assign, td_fill and every *_out form: the result lands in out (a fresh
 * array or a strided view whose neighbours stay untouched), converted to
 * out's dtype when that loses no kind; an unsafe out dtype is TD_EDTYPE, an
 * out whose shape is not exactly the broadcast shape TD_ESHAPE, and in both
 * cases out is left as it was. */
#include "ref.h"

/* An out of dtype dt and shape (s0, s1, s2), either a fresh array
 * (strided == 0) or the view base[2*s0-1::-2, :, 2:2+s2] of a base of shape
 * (2*s0, s1, s2+3) full of `sentinel`.  *base is the base (a new reference;
 * for a fresh array, the array itself). */
static td_array *make_out(int dt, const int64_t *s, int strided, double sentinel,
                          td_array **base) {
    if (!strided) {
        td_array *o = td_full(dt, 3, s, sentinel, td_cpu(0));
        cr_assert_not_null(o);
        *base = td_retain(o);
        return o;
    }
    const int64_t bs[3] = {2 * s[0], s[1], s[2] + 3};
    *base = td_full(dt, 3, bs, sentinel, td_cpu(0));
    cr_assert_not_null(*base);
    td_array *v1 = td_slice(*base, 0, 2 * s[0] - 1, -2 * s[0] - 1, -2);
    td_array *v2 = td_slice(v1, 2, 2, 2 + s[2], 1);
    cr_assert(v1 && v2, "td_slice: %s", td_last_error());
    td_release(v1);
    cr_assert(td_shape(v2)[0] == s[0] && td_shape(v2)[1] == s[1] && td_shape(v2)[2] == s[2]);
    return v2;
}

/* What the base of make_out should hold once `want` (shape s) was written
 * into the out. */
static nd_ref expected_base(int dt, const int64_t *s, int strided, double sentinel,
                            const nd_ref *want) {
    if (!strided) return nd_ref_clone(want);
    const int64_t bs[3] = {2 * s[0], s[1], s[2] + 3};
    nd_ref b = nd_ref_new(dt, 3, bs);
    for (int64_t k = 0; k < b.n; k++) nd_ref_put_f(&b, k, sentinel);
    for (int64_t i = 0; i < s[0]; i++)
        for (int64_t j = 0; j < s[1]; j++)
            for (int64_t k = 0; k < s[2]; k++) {
                int64_t src = (i * s[1] + j) * s[2] + k;
                int64_t dst = ((2 * s[0] - 1 - 2 * i) * bs[1] + j) * bs[2] + 2 + k;
                nd_ref_copy_elem(&b, dst, want, src);
            }
    return b;
}

/* The sentinel value of out dtype dt: one no result here takes. */
static double sentinel_for(int dt) { return dt == TD_U8 ? 77 : -12345; }

Test(out, every_binary_out_form_writes_the_result_converted_to_outs_dtype, .timeout = 180) {
    uint64_t seed = nd_seed("binary *_out", 3001);
    const int64_t sa[3] = {3, 1, 4}, sb[2] = {5, 1}, so[3] = {3, 5, 4};
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        tt_rng g = {seed};
        for (int op = 0; op < R_NOPS; op++) {
            ND_FOR_EACH_DTYPE(da) {
                ND_FOR_EACH_DTYPE(db) {
                    int rd = ref_result_dtype(op, da, db);
                    ND_FOR_EACH_DTYPE(od) {
                        if (ref_out_allowed(rd, od) != 1) continue;
                        int strided = (op + da + db + od) % 2;
                        nd_ref ra, rb;
                        td_array *a = nd_make_input(da, 3, sa, (op + da) % ND_NLAYOUTS, &g,
                                                    ref_gen_a(op), &ra);
                        td_array *b = nd_make_input(db, 2, sb, (op + db + 1) % ND_NLAYOUTS, &g,
                                                    ref_gen_b(op), &rb);
                        td_array *base;
                        double sen = sentinel_for(od);
                        td_array *out = make_out(od, so, strided, sen, &base);
                        char what[512];
                        snprintf(what, sizeof what, "%s engine: td_%s_out(%s, %s, out %s%s)",
                                 tt_engine_name(engine), ref_op_name(op), nd_dt(da), nd_dt(db),
                                 nd_dt(od), strided ? " strided view" : "");
                        td_status st = ref_bin_out(op)(a, b, out);
                        cr_assert_eq(st, TD_OK, "%s: %s (%s)", what, td_status_name(st),
                                     td_last_error());
                        nd_ref r = ref_binary(op, &ra, &rb, NULL);
                        nd_ref want = nd_ref_astype(&r, od);
                        /* Computed in rd, so rd's rounding applies. */
                        nd_expect_ref_full(out, &want, rd, 0.0, what);
                        nd_ref wb = expected_base(od, so, strided, sen, &want);
                        nd_expect_ref_full(base, &wb, rd, 0.0,
                                           "the base of out (outside the view untouched)");
                        nd_ref *refs[] = {&ra, &rb, &r, &want, &wb};
                        for (int i = 0; i < 5; i++) nd_ref_free(refs[i]);
                        td_array *arr[] = {a, b, out, base};
                        for (int i = 0; i < 4; i++) td_release(arr[i]);
                    }
                }
            }
        }
        nd_finish();
    }
}

Test(out, every_scalar_out_form_writes_the_result_converted_to_outs_dtype, .timeout = 120) {
    uint64_t seed = nd_seed("scalar *_out", 3002);
    const int64_t so[3] = {4, 3, 5};
    const double scalars[] = {3, 0.5};
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        tt_rng g = {seed};
        for (int sop = 0; sop < S_NOPS; sop++) {
            if (!ref_sop_has_out(sop)) continue;
            ND_FOR_EACH_DTYPE(da) {
                for (int si = 0; si < 2; si++) {
                    double s = scalars[si];
                    int rd = ref_scalar_dtype(ref_sop_op(sop), da, s);
                    ND_FOR_EACH_DTYPE(od) {
                        if (ref_out_allowed(rd, od) != 1) continue;
                        int strided = (sop + da + od + si) % 2;
                        int gen = sop == S_POW ? ND_GEN_SMALL
                                               : sop == S_RPOW ? ND_GEN_EXP : ND_GEN_GENERAL;
                        nd_ref ra;
                        td_array *a = nd_make_input(da, 3, so, (sop + da + si) % ND_NLAYOUTS, &g,
                                                    gen, &ra);
                        td_array *base;
                        double sen = sentinel_for(od);
                        td_array *out = make_out(od, so, strided, sen, &base);
                        char what[512];
                        snprintf(what, sizeof what, "%s engine: td_%s_out(%s, %g, out %s%s)",
                                 tt_engine_name(engine), ref_sop_name(sop), nd_dt(da), s,
                                 nd_dt(od), strided ? " strided view" : "");
                        td_status st = ref_sop_out_call(sop, a, s, out);
                        cr_assert_eq(st, TD_OK, "%s: %s (%s)", what, td_status_name(st),
                                     td_last_error());
                        nd_ref r = ref_scalar(sop, &ra, s, NULL);
                        nd_ref want = nd_ref_astype(&r, od);
                        nd_expect_ref_full(out, &want, rd, 0.0, what);
                        nd_ref wb = expected_base(od, so, strided, sen, &want);
                        nd_expect_ref_full(base, &wb, rd, 0.0,
                                           "the base of out (outside the view untouched)");
                        nd_ref *refs[] = {&ra, &r, &want, &wb};
                        for (int i = 0; i < 4; i++) nd_ref_free(refs[i]);
                        td_release(a);
                        td_release(out);
                        td_release(base);
                    }
                }
            }
        }
        nd_finish();
    }
}

Test(out, the_result_is_computed_in_its_own_dtype_then_converted, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_array *u = td_from_host((uint8_t[]){200, 3}, TD_U8, 1, (int64_t[]){2}, td_cpu(0));
    td_array *v = td_from_host((uint8_t[]){100, 5}, TD_U8, 1, (int64_t[]){2}, td_cpu(0));
    td_array *of = td_zeros(TD_F32, 1, (int64_t[]){2}, td_cpu(0));
    /* np.add(u8 200, u8 100, out=f32) is 44: the u8 loop runs, then the cast. */
    cr_assert_eq(td_add_out(u, v, of), TD_OK, "%s", td_last_error());
    float f[2];
    cr_assert_eq(td_to_host(of, f, sizeof f), TD_OK);
    cr_assert(f[0] == 44.0f && f[1] == 8.0f, "u8 200 + 100 into f32 gave %g, numpy gives 44", f[0]);
    /* Comparisons into a float out give 1.0 and 0.0. */
    cr_assert_eq(td_lt_out(u, v, of), TD_OK);
    cr_assert_eq(td_to_host(of, f, sizeof f), TD_OK);
    cr_assert(f[0] == 0.0f && f[1] == 1.0f);
    /* f64 into f32 rounds; i64 into i32 keeps in-range values. */
    td_array *d = td_from_host((double[]){0.1, 1e-3}, TD_F64, 1, (int64_t[]){2}, td_cpu(0));
    cr_assert_eq(td_add_scalar_out(d, 0, of), TD_OK);
    cr_assert_eq(td_to_host(of, f, sizeof f), TD_OK);
    cr_assert(f[0] == 0.1f && f[1] == 1e-3f, "f64 into f32: %.9g %.9g", f[0], f[1]);
    td_array *l =
        td_from_host((int64_t[]){-70000, 123456789}, TD_I64, 1, (int64_t[]){2}, td_cpu(0));
    td_array *oi = td_zeros(TD_I32, 1, (int64_t[]){2}, td_cpu(0));
    cr_assert_eq(td_mul_scalar_out(l, 1, oi), TD_OK, "%s", td_last_error());
    int32_t i[2];
    cr_assert_eq(td_to_host(oi, i, sizeof i), TD_OK);
    cr_assert(i[0] == -70000 && i[1] == 123456789);
    td_array *arr[] = {u, v, of, d, l, oi};
    for (int k = 0; k < 6; k++) td_release(arr[k]);
    nd_finish();
}

/* Reads out (and its whole base) before and after a refused call. */
static void expect_untouched(td_array *out, const nd_ref *before, const char *what) {
    nd_ref now = nd_read(out);
    for (int64_t k = 0; k < now.n; k++)
        cr_assert(nd_same(now.dtype, now.f[k], now.i[k], before->f[k], before->i[k]),
                  "%s: the refused call changed element %lld", what, (long long)k);
    nd_ref_free(&now);
}

Test(out, an_unsafe_out_dtype_is_edtype_and_out_is_left_alone, .timeout = 60) {
    nd_start(TD_ENGINE_THREADED, 2);
    const int64_t s[2] = {3, 4};
    ND_FOR_EACH_DTYPE(da) {
        ND_FOR_EACH_DTYPE(db) {
            td_array *a = td_full(da, 2, s, 2, td_cpu(0));
            td_array *b = td_full(db, 1, (int64_t[]){4}, 3, td_cpu(0));
            for (int op = 0; op < R_NOPS; op++) {
                int rd = ref_result_dtype(op, da, db);
                ND_FOR_EACH_DTYPE(od) {
                    if (ref_out_allowed(rd, od) != 0) continue;
                    td_array *out = td_full(od, 2, s, 9, td_cpu(0));
                    nd_ref before = nd_read(out);
                    char what[512];
                    snprintf(what, sizeof what, "td_%s_out(%s, %s, out %s)", ref_op_name(op),
                             nd_dt(da), nd_dt(db), nd_dt(od));
                    td_clear_error();
                    nd_expect_status(ref_bin_out(op)(a, b, out), TD_EDTYPE, ref_op_name(op),
                                     what);
                    expect_untouched(out, &before, what);
                    nd_ref_free(&before);
                    td_release(out);
                }
            }
            for (int sop = 0; sop < S_NOPS; sop++) {
                if (!ref_sop_has_out(sop)) continue;
                int rd = ref_scalar_dtype(ref_sop_op(sop), da, 0.5);
                ND_FOR_EACH_DTYPE(od) {
                    if (ref_out_allowed(rd, od) != 0) continue;
                    td_array *out = td_full(od, 2, s, 9, td_cpu(0));
                    char what[512];
                    snprintf(what, sizeof what, "td_%s_out(%s, 0.5, out %s)", ref_sop_name(sop),
                             nd_dt(da), nd_dt(od));
                    td_clear_error();
                    nd_expect_status(ref_sop_out_call(sop, a, 0.5, out), TD_EDTYPE,
                                     ref_op_name(ref_sop_op(sop)), what);
                    td_release(out);
                }
            }
            td_release(a);
            td_release(b);
        }
    }
    nd_finish();
}

Test(out, an_out_whose_shape_is_not_the_broadcast_shape_is_eshape, .timeout = 60) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_array *a = td_ones(TD_F32, 2, (int64_t[]){3, 1}, td_cpu(0));
    td_array *b = td_ones(TD_F32, 2, (int64_t[]){1, 4}, td_cpu(0));
    const int64_t bad[][3] = {{3, 1}, {1, 4}, {4, 3}, {3, 5}, {2, 3, 4}, {12}};
    const int nbad[] = {2, 2, 2, 2, 3, 1};
    for (int i = 0; i < 6; i++) {
        td_array *out = td_full(TD_F32, nbad[i], bad[i], 9, td_cpu(0));
        nd_ref before = nd_read(out);
        for (int op = 0; op < R_NOPS; op++) {
            char what[512], sh[64];
            snprintf(what, sizeof what, "td_%s_out((3, 1), (1, 4), out %s)", ref_op_name(op),
                     nd_shape_str(sh, sizeof sh, nbad[i], bad[i]));
            td_clear_error();
            nd_expect_status(ref_bin_out(op)(a, b, out), TD_ESHAPE, ref_op_name(op), what);
            cr_assert(nd_msg_has_shape(td_last_error(), nbad[i], bad[i]),
                      "%s: the message \"%s\" does not give out's shape", what, td_last_error());
        }
        /* In place into a smaller input: a = a + b cannot hold (3, 4). */
        for (int sop = 0; sop < S_NOPS; sop++) {
            if (!ref_sop_has_out(sop) || i == 0) continue;
            /* a (3, 1) into out of another shape */
            char what[512];
            snprintf(what, sizeof what, "td_%s_out((3, 1), 2, out #%d)", ref_sop_name(sop), i);
            td_clear_error();
            nd_expect_status(ref_sop_out_call(sop, a, 2, out), TD_ESHAPE,
                             ref_op_name(ref_sop_op(sop)), what);
        }
        expect_untouched(out, &before, "out of the wrong shape");
        nd_ref_free(&before);
        td_release(out);
    }
    td_clear_error();
    nd_expect_status(td_add_out(a, b, a), TD_ESHAPE, "add", "td_add_out(a (3, 1), b (1, 4), a)");
    /* NULL anywhere: a failure, no crash. */
    td_array *out = td_zeros(TD_F32, 2, (int64_t[]){3, 4}, td_cpu(0));
    for (int op = 0; op < R_NOPS; op++) {
        cr_assert_neq(ref_bin_out(op)(NULL, b, out), TD_OK);
        cr_assert_neq(ref_bin_out(op)(a, NULL, out), TD_OK);
        cr_assert_neq(ref_bin_out(op)(a, b, NULL), TD_OK);
    }
    for (int sop = 0; sop < S_NOPS; sop++) {
        if (!ref_sop_has_out(sop)) continue;
        cr_assert_neq(ref_sop_out_call(sop, NULL, 1, out), TD_OK);
        cr_assert_neq(ref_sop_out_call(sop, a, 1, NULL), TD_OK);
    }
    td_release(out);
    td_release(a);
    td_release(b);
    nd_finish();
}

Test(out, assign_broadcasts_and_casts_between_every_pair_of_dtypes_into_any_view,
     .timeout = 120) {
    uint64_t seed = nd_seed("td_assign", 3003);
    const int64_t sd[3] = {4, 3, 5};
    const int64_t ss[][3] = {{4, 3, 5}, {3, 1}, {5}, {0}, {1, 1, 1}, {4, 1, 5}};
    const int ns[] = {3, 2, 1, 0, 3, 3};
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        tt_rng g = {seed};
        ND_FOR_EACH_DTYPE(dd) {
            ND_FOR_EACH_DTYPE(ds) {
                for (int si = 0; si < 6; si++) {
                    int strided = (dd + ds + si) % 2;
                    int layout = (dd + 2 * ds + si) % ND_NLAYOUTS;
                    int gen = (dd == TD_U8 && ds != TD_U8) ? ND_GEN_NONNEG : ND_GEN_GENERAL;
                    nd_ref rs;
                    td_array *src = nd_make_input(ds, ns[si], ss[si], layout, &g, gen, &rs);
                    td_array *base;
                    double sen = sentinel_for(dd);
                    td_array *dst = make_out(dd, sd, strided, sen, &base);
                    char what[512], sh[64];
                    snprintf(what, sizeof what, "%s engine: td_assign(%s%s, %s %s %s)",
                             tt_engine_name(engine), nd_dt(dd), strided ? " strided view" : "",
                             nd_dt(ds), nd_shape_str(sh, sizeof sh, ns[si], ss[si]),
                             nd_layout_name(layout));
                    td_status st = td_assign(dst, src);
                    cr_assert_eq(st, TD_OK, "%s: %s", what, td_last_error());
                    nd_ref bc = nd_ref_broadcast(&rs, 3, sd);
                    nd_ref want = nd_ref_astype(&bc, dd);
                    nd_expect_ref(dst, &want, what);
                    nd_ref wb = expected_base(dd, sd, strided, sen, &want);
                    nd_expect_ref(base, &wb, "the base of dst (outside the view untouched)");
                    nd_ref *refs[] = {&rs, &bc, &want, &wb};
                    for (int i = 0; i < 4; i++) nd_ref_free(refs[i]);
                    td_release(src);
                    td_release(dst);
                    td_release(base);
                }
            }
        }
        /* Sources that do not broadcast to dst: TD_ESHAPE, dst untouched. */
        td_array *dst = td_full(TD_F64, 3, sd, 1, td_cpu(0));
        const int64_t bad[][4] = {{3, 4}, {2, 4, 3, 5}, {4, 3, 2}, {6}};
        const int nbad[] = {2, 4, 3, 1};
        for (int i = 0; i < 4; i++) {
            td_array *src = td_zeros(TD_F64, nbad[i], bad[i], td_cpu(0));
            char what[512], sh[64];
            snprintf(what, sizeof what, "td_assign(dst (4, 3, 5), src %s)",
                     nd_shape_str(sh, sizeof sh, nbad[i], bad[i]));
            td_clear_error();
            nd_expect_status(td_assign(dst, src), TD_ESHAPE, "assign", what);
            cr_assert(nd_msg_has_shape(td_last_error(), nbad[i], bad[i]) &&
                          nd_msg_has_shape(td_last_error(), 3, sd),
                      "%s: the message \"%s\" lacks a shape", what, td_last_error());
            td_release(src);
        }
        nd_ref now = nd_read(dst);
        for (int64_t k = 0; k < now.n; k++) cr_assert_eq(now.f[k], 1.0);
        nd_ref_free(&now);
        cr_assert_neq(td_assign(NULL, dst), TD_OK);
        cr_assert_neq(td_assign(dst, NULL), TD_OK);
        td_release(dst);
        nd_finish();
    }
}

Test(out, fill_writes_every_element_of_any_view_and_nothing_else, .timeout = 60) {
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        const int64_t s[3] = {3, 4, 2};
        ND_FOR_EACH_DTYPE(dt) {
            const double vals[] = {0, 1, 255, -3, 2.5, 1e30};
            for (size_t vi = 0; vi < sizeof vals / sizeof vals[0]; vi++) {
                double v = vals[vi];
                if (!nd_is_float(dt) && (v != trunc(v) || fabs(v) > 1e9)) continue;
                if (dt == TD_U8 && v < 0) continue;
                for (int strided = 0; strided < 2; strided++) {
                    td_array *base;
                    double sen = sentinel_for(dt);
                    td_array *dst = make_out(dt, s, strided, sen, &base);
                    char what[512];
                    snprintf(what, sizeof what, "%s engine: td_fill(%s%s, %g)",
                             tt_engine_name(engine), nd_dt(dt), strided ? " strided view" : "",
                             v);
                    cr_assert_eq(td_fill(dst, v), TD_OK, "%s: %s", what, td_last_error());
                    nd_ref want = nd_ref_new(dt, 3, s);
                    for (int64_t k = 0; k < want.n; k++) nd_ref_put_f(&want, k, v);
                    nd_expect_ref(dst, &want, what);
                    nd_ref wb = expected_base(dt, s, strided, sen, &want);
                    nd_expect_ref(base, &wb, "the base of the filled view");
                    nd_ref_free(&want);
                    nd_ref_free(&wb);
                    td_release(dst);
                    td_release(base);
                }
            }
            /* 0-d and 0-size. */
            td_array *z = td_zeros(dt, 0, s, td_cpu(0));
            td_array *e = td_zeros(dt, 2, (int64_t[]){0, 3}, td_cpu(0));
            cr_assert_eq(td_fill(z, 5), TD_OK);
            cr_assert_eq(td_fill(e, 5), TD_OK);
            nd_ref rz = nd_read(z);
            cr_assert_eq(rz.f[0], 5.0);
            nd_ref_free(&rz);
            td_release(z);
            td_release(e);
        }
        cr_assert_neq(td_fill(NULL, 1), TD_OK);
        nd_finish();
    }
}
