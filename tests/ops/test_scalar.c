/* The scalar forms, in both operand orders (add_scalar, sub_scalar,
 * scalar_sub, mul_scalar, div_scalar, scalar_div, pow_scalar, scalar_pow,
 * maximum_scalar, minimum_scalar), with python-style scalars: an integral
 * value keeps the array's dtype, a non-integral one keeps a float array's
 * dtype and makes an integer array f64; division is true division. */
#include "ref.h"

/* Scalars to try with an array of dtype dt for scalar form sop. */
static int scalars_for(int sop, int dt, double *out) {
    int n = 0;
    int u8 = dt == TD_U8;
    switch (ref_sop_op(sop)) {
    case R_POW:
        if (sop == S_POW) {
            /* a ** s: integer arrays need s >= 0 when s is integral. */
            const double s[] = {0, 1, 2, 3, 0.5, -1.5, 2.5};
            for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) out[n++] = s[i];
            if (nd_is_float(dt)) out[n++] = -2;
        } else {
            const double s[] = {2, 3, 0.5, 1.5, 0, 1};
            for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) out[n++] = s[i];
            if (!u8) out[n++] = -2;
        }
        break;
    default: {
        /* Integral scalars a u8 array can hold, and non-integral ones. */
        const double s[] = {0, 1, 3, 200, 0.5, -2.25, 1e-3, 7.75};
        for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) out[n++] = s[i];
        if (!u8) {
            out[n++] = -2;
            out[n++] = -100;
        }
        if (nd_is_float(dt)) out[n++] = 1e10;
        break;
    }
    }
    return n;
}

/* Inputs suited to the form: pow bases small; s ** a with integral s needs
 * a >= 0 for integer arrays. */
static int gen_for(int sop) {
    if (sop == S_POW) return ND_GEN_SMALL;
    if (sop == S_RPOW) return ND_GEN_EXP;
    return ND_GEN_GENERAL;
}

static void run_scalar(int sop) {
    char name[64];
    snprintf(name, sizeof name, "td_%s", ref_sop_name(sop));
    uint64_t seed = nd_seed(name, 2000 + (uint64_t)sop);
    const int64_t shapes[][3] = {{4, 5, 3}, {0, 0, 0}, {7, 0, 2}, {1, 1, 1}};
    const int ndims[] = {3, 0, 3, 1};
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        tt_rng g = {seed};
        ND_FOR_EACH_DTYPE(dt) {
            double sc[16];
            int ns = scalars_for(sop, dt, sc);
            for (int si = 0; si < ns; si++) {
                for (int sh = 0; sh < 4; sh++) {
                    int layout = (si + sh + dt) % ND_NLAYOUTS;
                    nd_ref ra;
                    td_array *a = nd_make_input(dt, ndims[sh], shapes[sh], layout, &g,
                                                gen_for(sop), &ra);
                    char what[512];
                    snprintf(what, sizeof what, "%s engine: td_%s(%s %s shape #%d, %g)",
                             tt_engine_name(engine), ref_sop_name(sop), nd_dt(dt),
                             nd_layout_name(layout), sh, sc[si]);
                    td_array *r = ref_sop_call(sop, a, sc[si]);
                    int fail = 0;
                    nd_ref want = ref_scalar(sop, &ra, sc[si], &fail);
                    cr_assert_not(fail, "%s: the test made a negative integer exponent", what);
                    nd_expect_ref(r, &want, what);
                    nd_ref_free(&want);
                    nd_ref_free(&ra);
                    td_release(a);
                    td_release(r);
                }
            }
        }
        nd_finish();
    }
}

#define SCALAR_TEST(name, sop)                                                                \
    Test(scalar, name##_matches_the_reference_for_every_dtype_scalar_and_layout,              \
         .timeout = 120) {                                                                    \
        run_scalar(sop);                                                                      \
    }
SCALAR_TEST(add_scalar, S_ADD)
SCALAR_TEST(sub_scalar, S_SUB)
SCALAR_TEST(scalar_sub, S_RSUB)
SCALAR_TEST(mul_scalar, S_MUL)
SCALAR_TEST(div_scalar, S_DIV)
SCALAR_TEST(scalar_div, S_RDIV)
SCALAR_TEST(pow_scalar, S_POW)
SCALAR_TEST(scalar_pow, S_RPOW)
SCALAR_TEST(maximum_scalar, S_MAX)
SCALAR_TEST(minimum_scalar, S_MIN)

Test(scalar, the_result_dtype_follows_python_scalar_rules, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    /* Written out: (form, array dtype, scalar) -> result dtype. */
    struct {
        int sop, dt;
        double s;
        int want;
    } c[] = {
        {S_ADD, TD_I32, 2.0, TD_I32},   {S_ADD, TD_I32, 2.5, TD_F64},
        {S_ADD, TD_F32, 2.5, TD_F32},   {S_ADD, TD_F32, 1e10, TD_F32},
        {S_ADD, TD_U8, 3, TD_U8},       {S_ADD, TD_U8, 0.5, TD_F64},
        {S_MUL, TD_I64, 3, TD_I64},     {S_MUL, TD_I64, -0.5, TD_F64},
        {S_MUL, TD_F64, 3, TD_F64},     {S_RSUB, TD_U8, 1, TD_U8},
        {S_SUB, TD_F32, 0.1, TD_F32},   {S_DIV, TD_I32, 2, TD_F64},
        {S_DIV, TD_F32, 2, TD_F32},     {S_RDIV, TD_U8, 1, TD_F64},
        {S_RDIV, TD_F32, 1, TD_F32},    {S_POW, TD_I32, 2, TD_I32},
        {S_POW, TD_I32, 0.5, TD_F64},   {S_RPOW, TD_I64, 2, TD_I64},
        {S_RPOW, TD_U8, 2.5, TD_F64},   {S_MAX, TD_U8, 7, TD_U8},
        {S_MIN, TD_I32, 7.5, TD_F64},   {S_MAX, TD_F32, 7.5, TD_F32},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        td_array *a = td_ones(c[i].dt, 1, (int64_t[]){3}, td_cpu(0));
        td_array *r = ref_sop_call(c[i].sop, a, c[i].s);
        cr_assert_not_null(r, "td_%s(%s, %g): %s", ref_sop_name(c[i].sop), nd_dt(c[i].dt), c[i].s,
                           td_last_error());
        cr_assert_eq(td_dtype(r), c[i].want, "td_%s(%s, %g) gave %s, expected %s",
                     ref_sop_name(c[i].sop), nd_dt(c[i].dt), c[i].s, nd_dt(td_dtype(r)),
                     nd_dt(c[i].want));
        cr_assert_eq(c[i].want, ref_scalar_dtype(ref_sop_op(c[i].sop), c[i].dt, c[i].s),
                     "ref.h disagrees with the table");
        td_release(a);
        td_release(r);
    }
    nd_finish();
}

static int64_t as_int(double v) { return isfinite(v) ? (int64_t)v : 0; }

Test(scalar, hand_checked_values_in_both_operand_orders, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_array *u = td_from_host((uint8_t[]){1, 5, 250}, TD_U8, 1, (int64_t[]){3}, td_cpu(0));
    td_array *i = td_from_host((int32_t[]){-3, 0, 4}, TD_I32, 1, (int64_t[]){3}, td_cpu(0));
    td_array *f = td_from_host((float[]){0.5f, 2.0f, -4.0f}, TD_F32, 1, (int64_t[]){3}, td_cpu(0));
    nd_ref r;
#define CHECK(call, v0, v1, v2)                                                               \
    do {                                                                                      \
        td_array *x_ = (call);                                                                \
        cr_assert_not_null(x_, #call ": %s", td_last_error());                                \
        r = nd_read(x_);                                                                      \
        cr_assert(nd_same(r.dtype, r.f[0], r.i[0], v0, as_int(v0)) &&                         \
                      nd_same(r.dtype, r.f[1], r.i[1], v1, as_int(v1)) &&                     \
                      nd_same(r.dtype, r.f[2], r.i[2], v2, as_int(v2)),                       \
                  #call " gave %.17g %.17g %.17g", r.f[0], r.f[1], r.f[2]);                   \
        nd_ref_free(&r);                                                                      \
        td_release(x_);                                                                       \
    } while (0)
    CHECK(td_add_scalar(u, 10), 11, 15, 4);        /* u8 wraps */
    CHECK(td_sub_scalar(u, 2), 255, 3, 248);
    CHECK(td_scalar_sub(2, u), 1, 253, 8);
    CHECK(td_mul_scalar(u, 2), 2, 10, 244);
    CHECK(td_mul_scalar(u, 0.5), 0.5, 2.5, 125);   /* f64 */
    CHECK(td_div_scalar(i, 2), -1.5, 0, 2);
    CHECK(td_scalar_div(1, i), -1.0 / 3.0, INFINITY, 0.25);
    CHECK(td_scalar_sub(1, i), 4, 1, -3);
    CHECK(td_pow_scalar(i, 2), 9, 0, 16);
    CHECK(td_pow_scalar(i, 3), -27, 0, 64);
    CHECK(td_scalar_pow(2, u), 2, 32, 0);          /* 2^250 mod 256 */
    CHECK(td_scalar_pow(2, f), 1.4142135623730951, 4, 0.0625);
    CHECK(td_pow_scalar(f, 0.5), 0.70710678118654757, 1.4142135623730951, NAN);
    CHECK(td_scalar_div(1, f), 2, 0.5, -0.25);
    CHECK(td_maximum_scalar(i, 0), 0, 0, 4);
    CHECK(td_minimum_scalar(i, 0.5), -3, 0, 0.5);  /* f64 */
    CHECK(td_maximum_scalar(f, NAN), NAN, NAN, NAN);
#undef CHECK
    td_release(u);
    td_release(i);
    td_release(f);
    nd_finish();
}
