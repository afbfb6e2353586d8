/* The unary ops and td_where against plain references computed here in
 * double (long double for sigmoid and gelu, int64 with wrapping for
 * integers): every dtype, every layout (strided, transposed, broadcast),
 * empty, 0-d and one-element shapes, special values, integer extremes, clip's
 * bounds, arrays large enough to be split across workers (bit-identical on
 * both engines and 1 to 4 workers), and bad input.  Every test ends with the
 * leak check of mref.h. */
#include "mref.h"

/* ---- the ops and their references ---------------------------------------- */

enum { K_KEEP, K_FLOAT, K_BOOL }; /* result dtype: the input's, float (f64 for ints), u8 */

enum {
    OP_NEG, OP_ABS, OP_SIGN, OP_SQUARE, OP_RELU, OP_CLIP, OP_ISFINITE, OP_EXP, OP_LOG, OP_LOG1P, OP_SQRT,
    OP_RSQRT, OP_SIN, OP_COS, OP_TANH, OP_SIGMOID, OP_GELU, NOPS
};

/* The clip bounds the tables use (integers: [-2, 3]; u8: [0, 3]). */
#define CLO (-2.5)
#define CHI 3.25
static td_array *clip_fixed(td_array *a) { return td_clip(a, CLO, CHI); }

static const struct {
    const char *name;
    td_array *(*fn)(td_array *);
    int kind;
} ops[NOPS] = {
    [OP_NEG] = {"neg", td_neg, K_KEEP},           [OP_ABS] = {"abs", td_abs, K_KEEP},
    [OP_SIGN] = {"sign", td_sign, K_KEEP},        [OP_SQUARE] = {"square", td_square, K_KEEP},
    [OP_RELU] = {"relu", td_relu, K_KEEP},        [OP_CLIP] = {"clip", clip_fixed, K_KEEP},
    [OP_ISFINITE] = {"isfinite", td_isfinite, K_BOOL}, [OP_EXP] = {"exp", td_exp, K_FLOAT},
    [OP_LOG] = {"log", td_log, K_FLOAT},          [OP_LOG1P] = {"log1p", td_log1p, K_FLOAT},
    [OP_SQRT] = {"sqrt", td_sqrt, K_FLOAT},       [OP_RSQRT] = {"rsqrt", td_rsqrt, K_FLOAT},
    [OP_SIN] = {"sin", td_sin, K_FLOAT},          [OP_COS] = {"cos", td_cos, K_FLOAT},
    [OP_TANH] = {"tanh", td_tanh, K_FLOAT},       [OP_SIGMOID] = {"sigmoid", td_sigmoid, K_FLOAT},
    [OP_GELU] = {"gelu", td_gelu, K_FLOAT},
};

static int out_dtype(int op, int dt) {
    switch (ops[op].kind) {
    case K_KEEP: return dt;
    case K_BOOL: return TD_U8;
    default: return mr_is_float(dt) ? dt : TD_F64;
    }
}

/* Relative tolerance of a result: the keep-dtype ops are exact; f32 math
 * within about 8 units in the last place; f64 math tight (gelu's steep tail
 * for x near -20 amplifies the rounding of its argument to about 2e-13). */
static double tol(int op, int odt) {
    if (ops[op].kind != K_FLOAT) return 0.0;
    return odt == TD_F32 ? 1e-6 : 1e-12;
}

/* numpy's rules, on one value in double. */
static double ref_float(int op, double x) {
    switch (op) {
    case OP_NEG: return -x;
    case OP_ABS: return fabs(x);
    case OP_SIGN: return x > 0 ? 1.0 : x < 0 ? -1.0 : x == 0 ? 0.0 : x;
    case OP_SQUARE: return x * x;
    case OP_RELU: return isnan(x) ? x : x > 0 ? x : 0.0;
    case OP_CLIP: { /* numpy.clip: minimum(maximum(x, lo), hi), NaN propagating */
        if (isnan(x)) return x;
        double r = x > CLO ? x : CLO;
        return r < CHI ? r : CHI;
    }
    case OP_ISFINITE: return isfinite(x) ? 1.0 : 0.0;
    case OP_EXP: return exp(x);
    case OP_LOG: return log(x);
    case OP_LOG1P: return log1p(x);
    case OP_SQRT: return sqrt(x);
    case OP_RSQRT: return 1.0 / sqrt(x);
    case OP_SIN: return sin(x);
    case OP_COS: return cos(x);
    case OP_TANH: return tanh(x);
    case OP_SIGMOID: return (double)(1.0L / (1.0L + expl(-(long double)x)));
    case OP_GELU: {
        /* 0.5 x (1 + tanh(u)) written as x / (1 + e^(-2u)) (the same value
         * without the cancellation of 1 + tanh(u) for negative x), in long
         * double; the test gelu_is_the_tanh_approximation checks the
         * formula as written. */
        if (isnan(x)) return x;
        if (x == -INFINITY) return -0.0;
        long double X = x, U = 0.79788456080286535588L * (X + 0.044715L * X * X * X);
        if (U >= 0) return (double)(X / (1.0L + expl(-2.0L * U)));
        long double e = expl(2.0L * U);
        return e == 0 ? -0.0 : (double)(X * e / (1.0L + e));
    }
    default: return NAN;
    }
}

/* The clip bounds of CLO, CHI for an integer dtype: ceil(lo), floor(hi),
 * saturated to the dtype. */
static int64_t clip_lo(int dt) { return dt == TD_U8 ? 0 : (int64_t)ceil(CLO); }
static int64_t clip_hi(int dt) { (void)dt; return (int64_t)floor(CHI); }

/* Integer results, wrapping as numpy (computed in uint64 and cut to the
 * dtype's width). */
static int64_t ref_int(int op, int dt, int64_t x) {
    uint64_t u = (uint64_t)x;
    switch (op) {
    case OP_NEG: return mr_wrap(dt, (int64_t)(0 - u));
    case OP_ABS: return x < 0 ? mr_wrap(dt, (int64_t)(0 - u)) : x;
    case OP_SIGN: return (x > 0) - (x < 0);
    case OP_SQUARE: return mr_wrap(dt, (int64_t)(u * u));
    case OP_RELU: return x > 0 ? x : 0;
    case OP_CLIP: return x < clip_lo(dt) ? clip_lo(dt) : x > clip_hi(dt) ? clip_hi(dt) : x;
    case OP_ISFINITE: return 1;
    default: return -999;
    }
}

static mr_arr ref_unary(int op, const mr_arr *x) {
    mr_arr r = mr_new(out_dtype(op, x->dtype), x->ndim, x->shape);
    for (int64_t k = 0; k < x->n; k++) {
        if (!mr_is_float(x->dtype) && ops[op].kind != K_FLOAT)
            mr_puti(&r, k, ref_int(op, x->dtype, x->i[k]));
        else
            mr_putf(&r, k, ref_float(op, x->f[k]));
    }
    return r;
}

/* Runs op on x (reference rx) and checks the result. */
static void check_op(int op, td_array *x, const mr_arr *rx, const char *what) {
    char w[512];
    snprintf(w, sizeof w, "td_%s on %s %s", ops[op].name, mr_dt(rx->dtype), what);
    td_array *r = ops[op].fn(x);
    mr_arr want = ref_unary(op, rx);
    mr_expect(r, &want, tol(op, want.dtype), rx, w);
    mr_free(&want);
    td_release(r);
}

/* ---- every op and dtype ---------------------------------------------------- */

Test(unary, every_op_and_dtype_matches_the_reference, .timeout = 60) {
    mr_start(TD_ENGINE_THREADED, 2);
    tt_rng g = {mr_seed("every_op_and_dtype", 11)};
    td_scope_begin();
    MR_FOR_EACH_DTYPE(dt) {
        for (int kind = MR_GENERAL; kind <= MR_WIDE; kind++) {
            mr_arr rx;
            td_array *x = mr_input(dt, 3, (int64_t[]){3, 5, 7}, MR_CONTIG, &g, kind, &rx);
            for (int op = 0; op < NOPS; op++)
                check_op(op, x, &rx, kind == MR_WIDE ? "(3, 5, 7), wide values" : "(3, 5, 7)");
            mr_free(&rx);
            td_release(x);
        }
    }
    td_scope_end();
    mr_finish();
}

Test(unary, strided_transposed_broadcast_empty_0d_and_one_element_inputs, .timeout = 120) {
    mr_start(TD_ENGINE_THREADED, 2);
    tt_rng g = {mr_seed("layouts", 12)};
    static const struct {
        int ndim;
        int64_t shape[4];
    } shapes[] = {{0, {0}},       {1, {0}},       {3, {2, 0, 3}}, {1, {1}},  {2, {1, 1}},
                  {1, {37}},      {2, {4, 9}},    {3, {3, 1, 5}}, {4, {2, 3, 4, 5}}};
    td_scope_begin();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (int layout = 0; layout < MR_NLAYOUTS; layout++) {
            MR_FOR_EACH_DTYPE(dt) {
                td_scope_begin();
                char what[256], sh[64];
                snprintf(what, sizeof what, "%s %s", mr_layout_name(layout),
                         mr_shape_str(sh, sizeof sh, shapes[s].ndim, shapes[s].shape));
                mr_arr rx;
                td_array *x = mr_input(dt, shapes[s].ndim, shapes[s].shape, layout, &g, MR_WIDE, &rx);
                for (int op = 0; op < NOPS; op++) check_op(op, x, &rx, what);
                mr_free(&rx);
                td_scope_end();
            }
        }
    }
    td_scope_end();
    mr_finish();
}

/* ---- special values -------------------------------------------------------- */

static const double specials[] = {NAN, -NAN, INFINITY, -INFINITY, 0.0, -0.0, 1.0, -1.0, 0.5, -0.5,
                                  1e-30, -1e-30, 1e-310, -1e-310, 1e30, -1e30, 88.0, 89.0, -104.0, -750.0,
                                  710.0, 3.0e38, -3.0e38, 1e-45, -1e-45, 0x1p-29, -0x1p-30, 0x1p-10, -0x1.fp-11,
                                  -25.0, -21.0, -19.5, -12.0, 20.0, 1e10, -1e10, 1e-12, -3e-9, 2e-7, 1e-5};
enum { NSPEC = sizeof specials / sizeof specials[0] };

Test(unary, special_values_behave_as_c_and_numpy, .timeout = 30) {
    mr_start(TD_ENGINE_NAIVE, 1);
    td_scope_begin();
    for (int dt = TD_F32; dt <= TD_F64; dt++) {
        mr_arr rx = mr_new(dt, 1, (int64_t[]){NSPEC});
        for (int k = 0; k < NSPEC; k++) mr_putf(&rx, k, specials[k]);
        td_array *x = mr_make(&rx);
        for (int op = 0; op < NOPS; op++) check_op(op, x, &rx, "special values");
        mr_free(&rx);
    }
    /* The cases people look for, spelled out (f32 and f64 alike). */
    for (int dt = TD_F32; dt <= TD_F64; dt++) {
        static const double in[] = {0.0, -0.0, -1.0, INFINITY, -INFINITY, NAN};
        mr_arr rx = mr_new(dt, 1, (int64_t[]){6});
        for (int k = 0; k < 6; k++) mr_putf(&rx, k, in[k]);
        td_array *x = mr_make(&rx);
        mr_arr lg = mr_read(td_log(x)), sq = mr_read(td_sqrt(x)), rs = mr_read(td_rsqrt(x)),
               sg = mr_read(td_sign(x)), re = mr_read(td_relu(x)), ge = mr_read(td_gelu(x)),
               si = mr_read(td_sigmoid(x)), fi = mr_read(td_isfinite(x)), th = mr_read(td_tanh(x)),
               l1 = mr_read(td_log1p(x)), ng = mr_read(td_neg(x)), ex = mr_read(td_exp(x));
        const char *d = mr_dt(dt);
        cr_assert(lg.f[0] == -INFINITY && lg.f[1] == -INFINITY, "%s: log(+-0) must be -inf", d);
        cr_assert(isnan(lg.f[2]) && lg.f[3] == INFINITY && isnan(lg.f[5]), "%s: log(-1) NaN, log(inf) inf", d);
        cr_assert(sq.f[1] == 0 && signbit(sq.f[1]) && isnan(sq.f[2]), "%s: sqrt(-0) = -0, sqrt(-1) NaN", d);
        cr_assert(rs.f[0] == INFINITY && rs.f[1] == -INFINITY && rs.f[3] == 0, "%s: rsqrt(+0) inf, (-0) -inf", d);
        cr_assert(sg.f[1] == 0 && !signbit(sg.f[1]) && sg.f[2] == -1 && isnan(sg.f[5]), "%s: sign", d);
        cr_assert(re.f[1] == 0 && !signbit(re.f[1]) && isnan(re.f[5]) && re.f[4] == 0, "%s: relu", d);
        cr_assert(ge.f[3] == INFINITY && ge.f[4] == 0 && signbit(ge.f[4]) && isnan(ge.f[5]), "%s: gelu", d);
        cr_assert(ge.f[1] == 0 && signbit(ge.f[1]), "%s: gelu(-0) = -0", d);
        cr_assert(si.f[3] == 1 && si.f[4] == 0 && si.f[0] == 0.5 && isnan(si.f[5]), "%s: sigmoid", d);
        cr_assert(fi.i[0] == 1 && fi.i[2] == 1 && fi.i[3] == 0 && fi.i[4] == 0 && fi.i[5] == 0, "%s: isfinite", d);
        cr_assert(th.f[1] == 0 && signbit(th.f[1]) && th.f[3] == 1 && th.f[4] == -1, "%s: tanh", d);
        cr_assert(l1.f[1] == 0 && signbit(l1.f[1]) && l1.f[2] == -INFINITY, "%s: log1p(-0) -0, log1p(-1) -inf", d);
        cr_assert(ng.f[0] == 0 && signbit(ng.f[0]), "%s: neg(0) = -0", d);
        cr_assert(ex.f[4] == 0 && ex.f[3] == INFINITY, "%s: exp(-inf) 0, exp(inf) inf", d);
        mr_arr *all[] = {&rx, &lg, &sq, &rs, &sg, &re, &ge, &si, &fi, &th, &l1, &ng, &ex};
        for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) mr_free(all[k]);
    }
    td_scope_end();
    mr_finish();
}

/* f32 values around the points where the f32 kernels change method (tanh at
 * 2^-10, log1p at 2^-29), and where exp and sigmoid overflow or go
 * subnormal, one float apart. */
Test(unary, f32_results_are_accurate_around_every_switch_point, .timeout = 30) {
    mr_start(TD_ENGINE_THREADED, 2);
    static const double points[] = {0x1p-10, 0x1p-29, 88.72, -87.33, -103.97, -88.0, 9.0, 0.5, 2.0, -0.99999994};
    enum { SPREAD = 40 };
    int64_t n = (int64_t)(sizeof points / sizeof points[0]) * 2 * (2 * SPREAD + 1);
    mr_arr rx = mr_new(TD_F32, 1, &n);
    int64_t k = 0;
    for (size_t p = 0; p < sizeof points / sizeof points[0]; p++)
        for (int s = -1; s <= 1; s += 2) {
            float v = (float)(s * points[p]);
            for (int i = 0; i < SPREAD; i++) v = nextafterf(v, -INFINITY);
            for (int i = 0; i <= 2 * SPREAD; i++, v = nextafterf(v, INFINITY)) mr_putf(&rx, k++, v);
        }
    td_scope_begin();
    td_array *x = mr_make(&rx);
    for (int op = OP_EXP; op < NOPS; op++) check_op(op, x, &rx, "near the switch points");
    td_scope_end();
    mr_free(&rx);
    mr_finish();
}

Test(unary, gelu_is_the_tanh_approximation, .timeout = 30) {
    mr_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    for (int dt = TD_F32; dt <= TD_F64; dt++) {
        int64_t n = 2401;
        mr_arr rx = mr_new(dt, 1, &n);
        for (int64_t k = 0; k < n; k++) mr_putf(&rx, k, -6.0 + 0.005 * (double)k);
        mr_arr got = mr_read(td_gelu(mr_make(&rx)));
        for (int64_t k = 0; k < n; k++) {
            double x = rx.f[k];
            double want = 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
            double tolerance = dt == TD_F32 ? 1e-6 * (1 + fabs(want)) : 1e-14 * (1 + fabs(want));
            cr_assert(fabs(got.f[k] - want) <= tolerance, "%s gelu(%.17g) = %.17g, 0.5x(1+tanh(u)) = %.17g",
                      mr_dt(dt), x, got.f[k], want);
        }
        mr_free(&rx);
        mr_free(&got);
    }
    td_scope_end();
    mr_finish();
}

/* ---- integers -------------------------------------------------------------- */

Test(unary, integer_results_wrap_as_numpy_without_undefined_behaviour, .timeout = 30) {
    mr_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    static const int64_t i32v[] = {INT32_MIN, INT32_MIN + 1, -46341, -46340, -1, 0, 1, 46340, 46341, INT32_MAX};
    static const int64_t i64v[] = {INT64_MIN, INT64_MIN + 1, -3037000500, -3037000499, -1, 0, 1, 3037000499,
                                   3037000500, INT64_MAX};
    static const int64_t u8v[] = {0, 1, 2, 15, 16, 127, 128, 200, 254, 255};
    const int64_t *vals[] = {NULL, NULL, i32v, i64v, u8v};
    for (int dt = TD_I32; dt <= TD_U8; dt++) {
        mr_arr rx = mr_new(dt, 1, (int64_t[]){10});
        for (int k = 0; k < 10; k++) mr_puti(&rx, k, vals[dt][k]);
        td_array *x = mr_make(&rx);
        for (int op = 0; op < NOPS; op++) check_op(op, x, &rx, "extreme values");
        mr_free(&rx);
    }
    /* Spelled out: numpy gives the most negative value back for abs and
     * neg, and squares wrap. */
    td_array *a = td_from_host((int32_t[]){INT32_MIN, 65536}, TD_I32, 1, (int64_t[]){2}, td_cpu(0));
    int32_t out[2];
    cr_assert_eq(td_to_host(td_abs(a), out, sizeof out), TD_OK);
    cr_assert(out[0] == INT32_MIN && out[1] == 65536);
    cr_assert_eq(td_to_host(td_neg(a), out, sizeof out), TD_OK);
    cr_assert(out[0] == INT32_MIN && out[1] == -65536);
    cr_assert_eq(td_to_host(td_square(a), out, sizeof out), TD_OK);
    cr_assert(out[0] == 0 && out[1] == 0, "65536^2 wraps to 0 in int32, got %d", out[1]);
    td_array *u = td_from_host((uint8_t[]){1, 16}, TD_U8, 1, (int64_t[]){2}, td_cpu(0));
    uint8_t ub[2];
    cr_assert_eq(td_to_host(td_neg(u), ub, sizeof ub), TD_OK);
    cr_assert(ub[0] == 255 && ub[1] == 240);
    cr_assert_eq(td_to_host(td_square(u), ub, sizeof ub), TD_OK);
    cr_assert(ub[0] == 1 && ub[1] == 0);
    td_scope_end();
    mr_finish();
}

/* ---- clip ------------------------------------------------------------------- */

/* clip of values (given as doubles) of dtype dt, read back as doubles. */
static void clip_case(int dt, const double *in, int n, double lo, double hi, const double *want, const char *what) {
    mr_arr rx = mr_new(dt, 1, (int64_t[]){n});
    for (int k = 0; k < n; k++) mr_putf(&rx, k, in[k]);
    mr_arr rw = mr_new(dt, 1, (int64_t[]){n});
    for (int k = 0; k < n; k++) mr_putf(&rw, k, want[k]);
    char w[256];
    snprintf(w, sizeof w, "td_clip(%s, %g, %g): %s", mr_dt(dt), lo, hi, what);
    mr_expect(td_clip(mr_make(&rx), lo, hi), &rw, 0.0, &rx, w);
    mr_free(&rx);
    mr_free(&rw);
}

Test(unary, clip_bounds_as_numpy_and_integer_bounds_rounded_inwards, .timeout = 30) {
    mr_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    for (int dt = TD_F32; dt <= TD_F64; dt++) {
        clip_case(dt, (double[]){-3, -0.0, 0.5, 2, NAN, INFINITY}, 6, 0.0, 1.0,
                  (double[]){0, 0.0, 0.5, 1, NAN, 1}, "ordinary, -0 ties to the bound (+0), NaN stays");
        clip_case(dt, (double[]){-3, 0.5, 2}, 3, NAN, 1.0, (double[]){NAN, NAN, NAN}, "NaN lo gives NaN");
        clip_case(dt, (double[]){-3, 0.5, 2}, 3, 0.0, NAN, (double[]){NAN, NAN, NAN}, "NaN hi gives NaN");
        clip_case(dt, (double[]){-3, 0.5, 2}, 3, 2.0, 1.0, (double[]){1, 1, 1}, "lo > hi gives hi");
        clip_case(dt, (double[]){-INFINITY, -1e300, 7, INFINITY}, 4, -INFINITY, INFINITY,
                  (double[]){-INFINITY, dt == TD_F32 ? -INFINITY : -1e300, 7, INFINITY}, "infinite bounds");
    }
    clip_case(TD_I32, (double[]){-5, -2, -1, 0, 3, 4}, 6, -1.5, 3.7, (double[]){-1, -1, -1, 0, 3, 3},
              "fractional bounds: ceil(lo), floor(hi)");
    clip_case(TD_I32, (double[]){INT32_MIN, 0, INT32_MAX}, 3, -1e300, 1e300, (double[]){INT32_MIN, 0, INT32_MAX},
              "bounds beyond the range are no bound");
    clip_case(TD_I32, (double[]){INT32_MIN, 0, INT32_MAX}, 3, -INFINITY, 5, (double[]){INT32_MIN, 0, 5}, "-inf lo");
    clip_case(TD_I64, (double[]){-9e18, 0, 9e18}, 3, -1e300, 1e300, (double[]){-9e18, 0, 9e18}, "i64 wide");
    clip_case(TD_I64, (double[]){-9e18, 0, 9e18}, 3, -4e18, 0x1p62, (double[]){-4e18, 0, 0x1p62}, "i64 large bounds");
    clip_case(TD_U8, (double[]){0, 7, 200, 255}, 4, -10, 300, (double[]){0, 7, 200, 255}, "u8 beyond the range");
    clip_case(TD_U8, (double[]){0, 7, 200, 255}, 4, 7.2, 199.9, (double[]){8, 8, 199, 199}, "u8 fractional");
    clip_case(TD_U8, (double[]){0, 7, 200}, 3, -5, -1, (double[]){0, 0, 0}, "u8 hi below 0");
    clip_case(TD_I32, (double[]){-3, 0, 3}, 3, 2, 1, (double[]){1, 1, 1}, "i32 lo > hi gives hi");
    /* NaN bounds have no integer meaning. */
    td_array *i = td_zeros(TD_I32, 1, (int64_t[]){3}, td_cpu(0));
    td_clear_error();
    mr_expect_fail(td_clip(i, NAN, 1), TD_EINVAL, "td_clip", "td_clip(i32, NaN, 1)");
    mr_expect_fail(td_clip(i, 0, NAN), TD_EINVAL, "td_clip", "td_clip(i32, 0, NaN)");
    td_scope_end();
    mr_finish();
}

/* ---- where ------------------------------------------------------------------- */

/* cond ? a : b with numpy's broadcasting, in the promoted dtype. */
static mr_arr ref_where(const mr_arr *c, const mr_arr *a, const mr_arr *b) {
    int nd = c->ndim;
    if (a->ndim > nd) nd = a->ndim;
    if (b->ndim > nd) nd = b->ndim;
    int64_t shape[TD_MAX_DIMS];
    const mr_arr *in[3] = {c, a, b};
    for (int d = 0; d < nd; d++) {
        shape[d] = 1;
        for (int k = 0; k < 3; k++) {
            int j = in[k]->ndim - nd + d;
            if (j >= 0 && in[k]->shape[j] != 1) shape[d] = in[k]->shape[j];
        }
    }
    mr_arr r = mr_new(td_promote_types(a->dtype, b->dtype), nd, shape);
    int64_t idx[TD_MAX_DIMS], sub[TD_MAX_DIMS];
    for (int64_t k = 0; k < r.n; k++) {
        mr_unravel(k, nd, shape, idx);
        int64_t pos[3];
        for (int q = 0; q < 3; q++) {
            for (int j = 0; j < in[q]->ndim; j++) {
                int d = nd - in[q]->ndim + j;
                sub[j] = in[q]->shape[j] == 1 ? 0 : idx[d];
            }
            pos[q] = mr_ravel(in[q]->ndim, in[q]->shape, sub);
        }
        int truth = mr_is_float(c->dtype) ? c->f[pos[0]] != 0 : c->i[pos[0]] != 0; /* NaN is true */
        const mr_arr *src = truth ? a : b;
        if (mr_is_float(r.dtype)) mr_putf(&r, k, src->f[pos[truth ? 1 : 2]]);
        else mr_puti(&r, k, src->i[pos[truth ? 1 : 2]]);
    }
    return r;
}

static void check_where(td_array *c, const mr_arr *rc, td_array *a, const mr_arr *ra, td_array *b, const mr_arr *rb,
                        const char *what) {
    char w[512];
    snprintf(w, sizeof w, "td_where(%s, %s, %s) %s", mr_dt(rc->dtype), mr_dt(ra->dtype), mr_dt(rb->dtype), what);
    td_array *r = td_where(c, a, b);
    mr_arr want = ref_where(rc, ra, rb);
    mr_expect(r, &want, 0.0, NULL, w);
    mr_free(&want);
    td_release(r);
}

Test(where, every_dtype_combination_with_three_way_broadcasting, .timeout = 60) {
    mr_start(TD_ENGINE_THREADED, 2);
    tt_rng g = {mr_seed("where_dtypes", 21)};
    td_scope_begin();
    MR_FOR_EACH_DTYPE(cd) {
        MR_FOR_EACH_DTYPE(ad) {
            MR_FOR_EACH_DTYPE(bd) {
                td_scope_begin();
                mr_arr rc, ra, rb;
                /* (4, 1, 5), (3, 1) and (5,) broadcast to (4, 3, 5). */
                td_array *c = mr_input(cd, 3, (int64_t[]){4, 1, 5}, MR_CONTIG, &g, MR_WIDE, &rc);
                td_array *a = mr_input(ad, 2, (int64_t[]){3, 1}, MR_CONTIG, &g, MR_WIDE, &ra);
                td_array *b = mr_input(bd, 1, (int64_t[]){5}, MR_CONTIG, &g, MR_WIDE, &rb);
                check_where(c, &rc, a, &ra, b, &rb, "(4, 1, 5), (3, 1), (5,)");
                /* The same shapes, all three. */
                td_array *c2 = mr_input(cd, 2, (int64_t[]){6, 7}, MR_CONTIG, &g, MR_GENERAL, &rc);
                mr_arr ra2, rb2;
                td_array *a2 = mr_input(ad, 2, (int64_t[]){6, 7}, MR_CONTIG, &g, MR_GENERAL, &ra2);
                td_array *b2 = mr_input(bd, 2, (int64_t[]){6, 7}, MR_CONTIG, &g, MR_GENERAL, &rb2);
                check_where(c2, &rc, a2, &ra2, b2, &rb2, "(6, 7) each");
                mr_arr *all[] = {&rc, &ra, &rb, &ra2, &rb2};
                for (int k = 0; k < 5; k++) mr_free(all[k]);
                td_scope_end();
            }
        }
    }
    td_scope_end();
    mr_finish();
}

Test(where, strided_transposed_broadcast_empty_and_0d_operands, .timeout = 60) {
    mr_start(TD_ENGINE_THREADED, 2);
    tt_rng g = {mr_seed("where_layouts", 22)};
    static const struct {
        int ndim;
        int64_t shape[4];
    } shapes[] = {{0, {0}}, {1, {0}}, {2, {3, 0}}, {1, {1}}, {2, {5, 6}}, {3, {3, 4, 5}}, {4, {2, 3, 2, 5}}};
    static const int dts[][3] = {{TD_U8, TD_F32, TD_F32}, {TD_F64, TD_I32, TD_I64}, {TD_I32, TD_U8, TD_F32},
                                 {TD_F32, TD_F64, TD_U8}};
    td_scope_begin();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int lc = 0; lc < MR_NLAYOUTS; lc++)
            for (int la = 0; la < MR_NLAYOUTS; la++)
                for (size_t t = 0; t < sizeof dts / sizeof dts[0]; t++) {
                    td_scope_begin();
                    int lb = (lc + la + (int)t) % MR_NLAYOUTS;
                    mr_arr rc, ra, rb;
                    const int64_t *sh = shapes[s].shape;
                    int nd = shapes[s].ndim;
                    td_array *c = mr_input(dts[t][0], nd, sh, lc, &g, MR_GENERAL, &rc);
                    td_array *a = mr_input(dts[t][1], nd, sh, la, &g, MR_WIDE, &ra);
                    td_array *b = mr_input(dts[t][2], nd, sh, lb, &g, MR_WIDE, &rb);
                    char what[256], ss[64];
                    snprintf(what, sizeof what, "%s: cond %s, a %s, b %s", mr_shape_str(ss, sizeof ss, nd, sh),
                             mr_layout_name(lc), mr_layout_name(la), mr_layout_name(lb));
                    check_where(c, &rc, a, &ra, b, &rb, what);
                    mr_free(&rc);
                    mr_free(&ra);
                    mr_free(&rb);
                    td_scope_end();
                }
    /* A 0-d cond with arrays, and arrays with a 0-d b. */
    mr_arr rc, ra, rb;
    td_array *c = mr_input(TD_U8, 0, NULL, MR_CONTIG, &g, MR_GENERAL, &rc);
    td_array *a = mr_input(TD_F32, 2, (int64_t[]){3, 4}, MR_TRANSPOSED, &g, MR_GENERAL, &ra);
    td_array *b = mr_input(TD_F32, 0, NULL, MR_CONTIG, &g, MR_GENERAL, &rb);
    check_where(c, &rc, a, &ra, b, &rb, "0-d cond and b");
    check_where(a, &ra, b, &rb, a, &ra, "0-d a");
    mr_free(&rc);
    mr_free(&ra);
    mr_free(&rb);
    td_scope_end();
    mr_finish();
}

Test(where, copies_values_bit_for_bit_and_nan_cond_is_true, .timeout = 30) {
    mr_start(TD_ENGINE_NAIVE, 1);
    td_scope_begin();
    float cv[6] = {NAN, -0.0f, 0.0f, 1.0f, -INFINITY, 1e-45f};
    float av[6] = {-0.0f, 1, 2, 3, 4, 5};
    float bv[6];
    uint32_t payload = 0x7fc12345u; /* a NaN with a payload */
    for (int k = 0; k < 6; k++) memcpy(&bv[k], &payload, 4);
    td_array *c = td_from_host(cv, TD_F32, 1, (int64_t[]){6}, td_cpu(0));
    td_array *a = td_from_host(av, TD_F32, 1, (int64_t[]){6}, td_cpu(0));
    td_array *b = td_from_host(bv, TD_F32, 1, (int64_t[]){6}, td_cpu(0));
    uint32_t out[6];
    cr_assert_eq(td_to_host(td_where(c, a, b), out, sizeof out), TD_OK, "%s", td_last_error());
    /* NaN, -inf and subnormal conds are true; -0 and 0 false. */
    uint32_t want[6];
    memcpy(&want[0], &av[0], 4);
    want[1] = payload;
    want[2] = payload;
    memcpy(&want[3], &av[3], 4);
    memcpy(&want[4], &av[4], 4);
    memcpy(&want[5], &av[5], 4);
    for (int k = 0; k < 6; k++)
        cr_assert_eq(out[k], want[k], "element %d: bits %08x, expected %08x", k, out[k], want[k]);
    td_scope_end();
    mr_finish();
}

/* ---- large arrays, engines and worker counts --------------------------------- */

enum { BR = 1100, BC = 1000, NBIG = NOPS + 8 };

struct big_inputs {
    mr_arr f, i, d, c; /* f: f32 (BR, BC); i: i32 (BR, BC); d: f64 (BC, BR), used transposed; c: u8 (BR, 1) */
};

struct big_run {
    void *bytes[NBIG];
    size_t nbytes[NBIG];
};

static void big_program(const struct big_inputs *in, int engine, int workers, struct big_run *out, int check) {
    mr_start(engine, workers);
    td_scope_begin();
    td_array *f = mr_make(&in->f), *i = mr_make(&in->i), *d0 = mr_make(&in->d), *c = mr_make(&in->c);
    td_array *d = td_transpose(d0, NULL);
    mr_arr dt = mr_new(TD_F64, 2, (int64_t[]){BR, BC});
    for (int64_t r = 0; r < BR; r++)
        for (int64_t q = 0; q < BC; q++) mr_copy_elem(&dt, r * BC + q, &in->d, q * BR + r);
    for (int k = 0; k < NBIG; k++) {
        td_scope_begin(); /* each result's temporaries go before the next */
        td_array *r;
        mr_arr want = {0};
        double rel = 0;
        const char *what;
        /* The references are computed only for the runs that check them. */
        if (k < NOPS) {
            r = ops[k].fn(f);
            if (check) want = ref_unary(k, &in->f);
            rel = tol(k, TD_F32);
            what = ops[k].name;
        } else {
            static const int iops[] = {OP_NEG, OP_SQUARE, OP_EXP, OP_CLIP};
            static const int dops[] = {OP_SIN, OP_GELU};
            int j = k - NOPS;
            if (j < 4) {
                r = ops[iops[j]].fn(i);
                if (check) want = ref_unary(iops[j], &in->i);
                rel = tol(iops[j], out_dtype(iops[j], TD_I32));
                what = "i32 op";
            } else if (j < 6) {
                r = ops[dops[j - 4]].fn(d);
                if (check) want = ref_unary(dops[j - 4], &dt);
                rel = tol(dops[j - 4], TD_F64);
                what = "transposed f64 op";
            } else if (j == 6) {
                r = td_where(c, f, i); /* u8 (BR, 1) broadcast; f32 with i32 gives f64 */
                if (check) want = ref_where(&in->c, &in->f, &in->i);
                what = "where(u8 (BR, 1), f32, i32)";
            } else {
                r = td_where(f, d, td_neg(f)); /* f32 cond, f64 transposed, f32 */
                if (check) {
                    mr_arr nf = ref_unary(OP_NEG, &in->f);
                    want = ref_where(&in->f, &dt, &nf);
                    mr_free(&nf);
                }
                what = "where(f32, transposed f64, f32)";
            }
        }
        cr_assert_not_null(r, "%s: %s", what, td_last_error());
        out->bytes[k] = mr_fetch(r, &out->nbytes[k]);
        if (check) {
            char w[256];
            snprintf(w, sizeof w, "%s engine, %d workers: result %d (%s)", tt_engine_name(engine), workers, k, what);
            mr_expect(r, &want, rel, NULL, w);
            mr_free(&want);
        }
        td_scope_end();
    }
    mr_free(&dt);
    td_scope_end();
    mr_finish();
}

Test(unary, large_arrays_give_bit_identical_results_on_both_engines_and_1_to_4_workers, .timeout = 120) {
    tt_rng g = {mr_seed("large", 31)};
    struct big_inputs in;
    in.f = mr_new(TD_F32, 2, (int64_t[]){BR, BC});
    in.i = mr_new(TD_I32, 2, (int64_t[]){BR, BC});
    in.d = mr_new(TD_F64, 2, (int64_t[]){BC, BR});
    in.c = mr_new(TD_U8, 2, (int64_t[]){BR, 1});
    mr_random(&in.f, &g, MR_WIDE);
    mr_random(&in.i, &g, MR_WIDE);
    mr_random(&in.d, &g, MR_GENERAL);
    mr_random(&in.c, &g, MR_GENERAL);
    const int cfg[][2] = {{TD_ENGINE_NAIVE, 1}, {TD_ENGINE_THREADED, 1}, {TD_ENGINE_THREADED, 2},
                          {TD_ENGINE_THREADED, 3}, {TD_ENGINE_THREADED, 4}};
    struct big_run first, other;
    for (int k = 0; k < 5; k++) {
        struct big_run *dst = k == 0 ? &first : &other;
        big_program(&in, cfg[k][0], cfg[k][1], dst, k == 0); /* the others must equal it */
        if (k == 0) continue;
        for (int r = 0; r < NBIG; r++) {
            cr_assert_eq(other.nbytes[r], first.nbytes[r]);
            cr_assert(memcmp(other.bytes[r], first.bytes[r], first.nbytes[r]) == 0,
                      "result %d differs between the naive engine and %d threaded workers", r, cfg[k][1]);
            free(other.bytes[r]);
        }
    }
    for (int r = 0; r < NBIG; r++) free(first.bytes[r]);
    mr_free(&in.f);
    mr_free(&in.i);
    mr_free(&in.d);
    mr_free(&in.c);
}

/* ---- bad input ---------------------------------------------------------------- */

Test(unary, null_inputs_give_null_and_keep_the_previous_error, .timeout = 30) {
    mr_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    /* A known failure first. */
    td_array *x = td_zeros(TD_F32, 1, (int64_t[]){2}, td_cpu(0));
    td_array *y = td_zeros(TD_F32, 1, (int64_t[]){3}, td_cpu(0));
    td_clear_error();
    cr_assert_null(td_where(x, x, y));
    cr_assert_eq(td_last_status(), TD_ESHAPE);
    char saved[512];
    snprintf(saved, sizeof saved, "%s", td_last_error());
    for (int op = 0; op < NOPS; op++) {
        cr_assert_null(ops[op].fn(NULL), "td_%s(NULL)", ops[op].name);
        cr_assert_eq(td_last_status(), TD_ESHAPE, "td_%s(NULL) changed the status", ops[op].name);
        cr_assert_str_eq(td_last_error(), saved, "td_%s(NULL) changed the message", ops[op].name);
    }
    cr_assert_null(td_clip(NULL, NAN, NAN));
    cr_assert_null(td_where(NULL, x, x));
    cr_assert_null(td_where(x, NULL, x));
    cr_assert_null(td_where(x, x, NULL));
    cr_assert_null(td_where(NULL, NULL, NULL));
    cr_assert_str_eq(td_last_error(), saved, "a NULL input changed the message");
    /* An expression with a failure inside gives NULL at the end, with the
     * first failure's message. */
    td_clear_error();
    cr_assert_null(td_sigmoid(td_exp(td_where(x, y, x))));
    cr_assert_eq(td_last_status(), TD_ESHAPE);
    cr_assert(tt_has(td_last_error(), "td_where"), "%s", td_last_error());
    td_scope_end();
    mr_finish();
}

Test(where, shapes_that_do_not_broadcast_are_eshape_naming_all_three_shapes, .timeout = 30) {
    mr_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    td_array *c = td_zeros(TD_U8, 2, (int64_t[]){2, 3}, td_cpu(0));
    td_array *a = td_zeros(TD_F32, 1, (int64_t[]){3}, td_cpu(0));
    td_array *b = td_zeros(TD_F32, 1, (int64_t[]){4}, td_cpu(0));
    td_array *d = td_zeros(TD_F32, 2, (int64_t[]){5, 1}, td_cpu(0));
    td_clear_error();
    mr_expect_fail(td_where(c, a, b), TD_ESHAPE, "td_where", "where((2, 3), (3,), (4,))");
    cr_assert(tt_has(td_last_error(), "(2, 3)") && tt_has(td_last_error(), "(3,)") && tt_has(td_last_error(), "(4,)"),
              "the message \"%s\" does not show the three shapes", td_last_error());
    td_clear_error();
    mr_expect_fail(td_where(d, c, a), TD_ESHAPE, "td_where", "where((5, 1), (2, 3), (3,))");
    cr_assert(tt_has(td_last_error(), "(5, 1)") && tt_has(td_last_error(), "(2, 3)"), "%s", td_last_error());
    /* After failures, the runtime carries on. */
    float out[6];
    cr_assert_eq(td_to_host(td_where(c, a, td_ones(TD_F32, 0, NULL, td_cpu(0))), out, sizeof out), TD_OK);
    for (int k = 0; k < 6; k++) cr_assert_eq(out[k], 1.0f);
    td_scope_end();
    mr_finish();
}

Test(unary, a_failure_upstream_reaches_the_waiter_through_unary_ops_and_where, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        mr_start(engine, 2);
        td_scope_begin();
        td_array *base = td_from_host((int32_t[]){2, 3}, TD_I32, 1, (int64_t[]){2}, td_cpu(0));
        td_array *neg = td_from_host((int32_t[]){-1, 1}, TD_I32, 1, (int64_t[]){2}, td_cpu(0));
        td_array *c = td_ones(TD_U8, 1, (int64_t[]){2}, td_cpu(0));
        /* An integer to a negative power fails while it runs. */
        td_array *r = td_sigmoid(td_where(c, td_exp(td_pow(base, neg)), td_neg(base)));
        cr_assert_not_null(r, "%s", td_last_error());
        double out[2];
        td_status st = td_to_host(r, out, sizeof out);
        cr_assert_eq(st, TD_EFAILED, "%s engine: td_to_host returned %s (%s)", tt_engine_name(engine),
                     td_status_name(st), td_last_error());
        cr_assert(td_last_error()[0] != '\0');
        /* The arrays that do not depend on the failure are fine. */
        int32_t nb[2];
        cr_assert_eq(td_to_host(td_abs(td_neg(base)), nb, sizeof nb), TD_OK);
        cr_assert(nb[0] == 2 && nb[1] == 3);
        td_scope_end();
        mr_finish();
    }
}
