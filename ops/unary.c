/* Unary ops (neg, abs, sign, square, relu, clip, isfinite and the
 * transcendental functions) and where(cond, a, b).
 *
 * Dtypes follow numpy: neg, abs, sign, square, relu and clip keep the input's
 * dtype (integers wrap, as numpy: abs and neg of the most negative value give
 * it back); exp, log, log1p, sqrt, rsqrt, sin, cos, tanh, sigmoid and gelu
 * keep f32 and f64 and give f64 for integer inputs; isfinite gives u8 (1 for
 * every integer).  where gives the promotion of a and b.
 *
 * The unary ops run on the elementwise runner (td__ew_run: broadcasting,
 * conversion to the compute dtype in blocks, chunks, streaming), with one
 * inner loop per (op, compute dtype) below.  Each loop has a contiguous path
 * the compiler vectorises where the math allows (neg, abs, sign, square, relu,
 * clip, sqrt, rsqrt, isfinite) and a broadcast path that computes the value
 * once.  f32 loops use float math, except where float math is slow or loses
 * accuracy and double math costs less (see the f32 helpers).
 *
 * Special values are C's and numpy's: log(0) = -inf, log of a negative is
 * NaN, sqrt(-0) = -0, rsqrt(-0) = -inf, sign(NaN) = NaN and sign(-0) = 0,
 * relu(NaN) = NaN and relu(-0) = 0, NaN in clip's input or bounds gives NaN
 * (as numpy.clip).  gelu (the tanh approximation) is computed as
 * x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3), which equals
 * 0.5 x (1 + tanh(u)) but keeps its relative accuracy for negative x; its
 * limit at -inf is -0.
 *
 * where has three operands, so it has its own small kernel: byte strides per
 * operand (0 where broadcast), dims merged where every operand is contiguous,
 * td_parallel_for over the flat index, and per row segment blocks of a truth
 * mask of cond, a and b converted to the result's dtype when they differ, and
 * a select loop per element size.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "ops/internal.h"

/* ops/meson.build builds the kernels with -fno-math-errno: nothing here
 * reads errno, and setting it keeps GCC from vectorising sqrt. */

enum { BLOCK = 256, GRAIN = 32768 };

enum {
    U_NEG, U_ABS, U_SIGN, U_SQUARE, U_RELU, U_CLIP, U_ISFINITE, /* keep the dtype (isfinite: u8) */
    U_EXP, U_LOG, U_LOG1P, U_SQRT, U_RSQRT, U_SIN, U_COS, U_TANH, U_SIGMOID, U_GELU, /* float results */
    U_COUNT
};

/* Attributes of a unary call. */
typedef struct {
    int code;
    int cdt; /* dtype the loop reads (the input is converted to it) */
    int ldt; /* dtype the loop writes: the result's */
    /* clip: lo and hi as cdt, side by side; the loop gets their address as
     * its second operand (a scalar of the compute dtype, which the runner
     * passes through unconverted with stride 0). */
    _Alignas(8) unsigned char bounds[16];
} unary_attrs;

/* ---- element functions ---- */
#define SQRT_2_OVER_PI 0.79788456080286535588
#define GELU_C 0.044715

/* x * sigmoid(2u) = 0.5 x (1 + tanh(u)), with the sigmoid as below: for
 * very negative x the result is a tiny x e^(2u), down to the subnormals, and
 * -0 once e^(2u) underflows.  -inf is taken as -DBL_MAX (whose u is -inf), so
 * that its result is that limit, -0, and not -inf * 0. */
static inline double egelu_f64(double x) {
    x = x < -DBL_MAX ? -DBL_MAX : x; /* NaN stays NaN */
    double u = SQRT_2_OVER_PI * (x + GELU_C * x * x * x);
    double e = exp(-2.0 * fabs(u)), h = (double)(u >= 0);
    return x * ((e > h ? e : h) / (1.0 + e)); /* max(e, 1) = 1 for u >= 0, max(e, 0) = e below */
}
/* In double: u's rounding error is amplified by the steep tail of gelu for
 * negative x, so float math would lose several digits there; double exp also
 * costs less than tanhf. */
static inline float egelu_f32(float x) { return (float)egelu_f64((double)x); }

/* sigmoid without overflow: with e = exp(-|x|), 1 / (1 + e) for x >= 0 and
 * e / (1 + e) below.  The numerator is max(e, x >= 0), which is 1 or e, so
 * that the loop has no branch on the sign of x (as good as random in real
 * data; GCC makes a branch of a plain select between the two). */
static inline double esigmoid_f64(double x) {
    double e = exp(-fabs(x)), h = (double)(x >= 0);
    return (e > h ? e : h) / (1.0 + e);
}
static inline float esigmoid_f32(float x) {
    float e = expf(-fabsf(x)), h = (float)(x >= 0);
    return (e > h ? e : h) / (1.0f + e);
}

/* tanh of a float, in double: glibc's tanhf costs three times as much.
 * (1 - e) / (1 + e) with e = exp(-2|x|) loses about 1.1e-16 / (2|x|) of
 * relative accuracy to the subtraction, nothing at float precision for
 * |x| >= 2^-10; below, x (1 - x^2/3) is exact to 1e-13 (and keeps -0). */
static inline float etanh_f32(float xf) {
    double x = xf, ax = fabs(x);
    if (ax < 0x1p-10) return (float)(x * (1.0 - x * x * (1.0 / 3.0)));
    double e = exp(-2.0 * ax);
    return (float)copysign((1.0 - e) / (1.0 + e), x);
}

/* log1p of a float, in double: 1 + x is exact in double for |x| >= 2^-29
 * (a float has 24 significant bits), so log(1 + x) is as accurate as log,
 * and costs less than half of log1pf; below, log1p(x) rounds to x. */
static inline float elog1p_f32(float x) {
    return fabsf(x) < 0x1p-29f ? x : (float)log(1.0 + (double)x);
}

#define FSIGN(x, ONE) ((x) > 0 ? (ONE) : (x) < 0 ? -(ONE) : (x) == 0 ? 0 * (ONE) : (x))
/* NaN-propagating max and min as numpy.clip: a NaN in x or the bound wins. */
#define FCLIP(x, lo, hi, r) (r = ((x) > (lo) || (x) != (x)) ? (x) : (lo), (r < (hi) || r != r) ? r : (hi))

/* ---- inner loops ----
 * One operand of dtype T (byte stride sa; 0 when broadcast) to one of dtype
 * OT.  PRE runs once (clip reads its bounds from b there). */
#define LOOP1(NAME, T, OT, PRE, EXPR)                                                                                 \
    static void NAME(int64_t n, char *o, int64_t so, const char *a, int64_t sa, const char *b, int64_t sb) {          \
        (void)b;                                                                                                      \
        (void)sb;                                                                                                     \
        PRE;                                                                                                          \
        if (so == (int64_t)sizeof(OT) && sa == (int64_t)sizeof(T)) {                                                  \
            OT *po = (OT *)o;                                                                                         \
            const T *pa = (const T *)a;                                                                               \
            for (int64_t i = 0; i < n; i++) {                                                                         \
                T x = pa[i];                                                                                          \
                po[i] = (EXPR);                                                                                       \
            }                                                                                                         \
        } else if (sa == 0) {                                                                                         \
            const T x = *(const T *)a;                                                                                \
            const OT v = (EXPR);                                                                                      \
            for (int64_t i = 0; i < n; i++) *(OT *)(o + i * so) = v;                                                  \
        } else {                                                                                                      \
            for (int64_t i = 0; i < n; i++) {                                                                         \
                T x = *(const T *)(a + i * sa);                                                                       \
                *(OT *)(o + i * so) = (EXPR);                                                                         \
            }                                                                                                         \
        }                                                                                                             \
    }

#define NOPRE (void)0
#define BOUNDS(T) const T lo = ((const T *)b)[0]; const T hi = ((const T *)b)[1]; T r
/* Wrapping integer negation and absolute value (in the unsigned type). */
#define INEG(T, UT, x) ((T)(UT)((UT)0 - (UT)(x)))
#define IABS(T, UT, x) ((x) < 0 ? INEG(T, UT, x) : (x))
#define ISQUARE(T, UT, x) ((T)(UT)((UT)(x) * (UT)(x)))

#define FLOAT_LOOPS(T, SUF, ONE, FABS, EXP, LOG, SQRT, SIN, COS)                                                      \
    LOOP1(neg_##SUF, T, T, NOPRE, -x)                                                                                 \
    LOOP1(abs_##SUF, T, T, NOPRE, FABS(x))                                                                            \
    LOOP1(sign_##SUF, T, T, NOPRE, FSIGN(x, ONE))                                                                     \
    LOOP1(square_##SUF, T, T, NOPRE, x * x)                                                                           \
    LOOP1(relu_##SUF, T, T, NOPRE, (x > 0 || x != x) ? x : 0)                                                         \
    LOOP1(clip_##SUF, T, T, BOUNDS(T), FCLIP(x, lo, hi, r))                                                           \
    LOOP1(isfinite_##SUF, T, uint8_t, NOPRE, (uint8_t)(isfinite(x) != 0))                                             \
    LOOP1(exp_##SUF, T, T, NOPRE, EXP(x))                                                                             \
    LOOP1(log_##SUF, T, T, NOPRE, LOG(x))                                                                             \
    LOOP1(log1p_##SUF, T, T, NOPRE, elog1p_##SUF(x))                                                                  \
    LOOP1(sqrt_##SUF, T, T, NOPRE, SQRT(x))                                                                           \
    LOOP1(rsqrt_##SUF, T, T, NOPRE, ONE / SQRT(x))                                                                    \
    LOOP1(sin_##SUF, T, T, NOPRE, SIN(x))                                                                             \
    LOOP1(cos_##SUF, T, T, NOPRE, COS(x))                                                                             \
    LOOP1(tanh_##SUF, T, T, NOPRE, etanh_##SUF(x))                                                                    \
    LOOP1(sigmoid_##SUF, T, T, NOPRE, esigmoid_##SUF(x))                                                              \
    LOOP1(gelu_##SUF, T, T, NOPRE, egelu_##SUF(x))

static inline double elog1p_f64(double x) { return log1p(x); }
static inline double etanh_f64(double x) { return tanh(x); }

FLOAT_LOOPS(float, f32, 1.0f, fabsf, expf, logf, sqrtf, sinf, cosf)
FLOAT_LOOPS(double, f64, 1.0, fabs, exp, log, sqrt, sin, cos)

/* ABS, SIGN and RELU differ for u8 (where x < 0 never holds). */
#define INT_LOOPS(T, UT, SUF, ABS, SIGN, RELU)                                                                        \
    LOOP1(neg_##SUF, T, T, NOPRE, INEG(T, UT, x))                                                                     \
    LOOP1(abs_##SUF, T, T, NOPRE, ABS)                                                                                \
    LOOP1(sign_##SUF, T, T, NOPRE, SIGN)                                                                              \
    LOOP1(square_##SUF, T, T, NOPRE, ISQUARE(T, UT, x))                                                               \
    LOOP1(relu_##SUF, T, T, NOPRE, RELU)                                                                              \
    LOOP1(clip_##SUF, T, T, BOUNDS(T), (r = x < lo ? lo : x, r > hi ? hi : r))                                        \
    LOOP1(isfinite_##SUF, T, uint8_t, NOPRE, ((void)x, (uint8_t)1))

INT_LOOPS(int32_t, uint32_t, i32, IABS(int32_t, uint32_t, x), (int32_t)((x > 0) - (x < 0)), x > 0 ? x : 0)
INT_LOOPS(int64_t, uint64_t, i64, IABS(int64_t, uint64_t, x), (int64_t)((x > 0) - (x < 0)), x > 0 ? x : 0)
INT_LOOPS(uint8_t, uint8_t, u8, x, (uint8_t)(x != 0), x)

#define ALL(op) {op##_f32, op##_f64, op##_i32, op##_i64, op##_u8}
#define FLT(op) {op##_f32, op##_f64, NULL, NULL, NULL}
static const td__loop_fn loops[U_COUNT][TD_DTYPE_COUNT] = {
    [U_NEG] = ALL(neg),     [U_ABS] = ALL(abs),           [U_SIGN] = ALL(sign),         [U_SQUARE] = ALL(square),
    [U_RELU] = ALL(relu),   [U_CLIP] = ALL(clip),         [U_ISFINITE] = ALL(isfinite), [U_EXP] = FLT(exp),
    [U_LOG] = FLT(log),     [U_LOG1P] = FLT(log1p),       [U_SQRT] = FLT(sqrt),         [U_RSQRT] = FLT(rsqrt),
    [U_SIN] = FLT(sin),     [U_COS] = FLT(cos),           [U_TANH] = FLT(tanh),         [U_SIGMOID] = FLT(sigmoid),
    [U_GELU] = FLT(gelu)};

/* ---- descriptors ---- */
static td_status unary_infer(const td__call *c, int *dtype, int *ndim, int64_t *shape) {
    const unary_attrs *at = (const unary_attrs *)c->attrs;
    *ndim = c->in[0]->ndim;
    memcpy(shape, c->in[0]->shape, sizeof(int64_t) * (size_t)*ndim);
    *dtype = at->ldt;
    return TD_OK;
}

static td_status unary_kernel(const td__call *c, const td_exec *ex) {
    const unary_attrs *at = (const unary_attrs *)c->attrs;
    td__loop_fn fn = loops[at->code][at->cdt];
    if (!fn) { /* the wrappers choose cdt so that this cannot happen */
        td_exec_set_error(ex, "%s: no loop for %s", c->desc->api, td_dtype_name(at->cdt));
        return TD_EDTYPE;
    }
    if (at->code == U_CLIP) return td__ew_run(c, ex, fn, at->cdt, at->ldt, 2, 2, at->bounds);
    return td__ew_run(c, ex, fn, at->cdt, at->ldt, 1, 0, NULL);
}

/* ---- gradients (autograd) ----
 * In terms of other ops, on the saved input x and/or output y.  Kinks take
 * one side: abs'(0) = 0 (sign), relu'(0) = 0, clip passes the gradient at
 * its bounds; sign's derivative is 0 everywhere (it is recorded as
 * differentiable with a zero gradient). */
#define UX (g->in[0])
#define UY (g->out[0])
#define UG (g->gout[0])
static td_status ugrad(td__gctx *g, td_array *r) {
    g->gin[0] = r;
    return r ? TD_OK : td_last_status();
}
static td_array *full_like(const td_array *x, double v) { return td_full(x->dtype, 0, NULL, v, x->dev); }

static td_status grad_neg(td__gctx *g) { return ugrad(g, td_neg(UG)); }
static td_status grad_abs(td__gctx *g) { return ugrad(g, td_mul(UG, td_sign(UX))); }
static td_status grad_sign(td__gctx *g) { return ugrad(g, td_mul_scalar(UG, 0.0)); }
static td_status grad_square(td__gctx *g) { return ugrad(g, td_mul(UG, td_mul_scalar(UX, 2.0))); }
static td_status grad_relu(td__gctx *g) { return ugrad(g, td_mul(UG, td_gt(UX, full_like(UX, 0.0)))); }
static td_status grad_exp(td__gctx *g) { return ugrad(g, td_mul(UG, UY)); }
static td_status grad_log(td__gctx *g) { return ugrad(g, td_div(UG, UX)); }
static td_status grad_log1p(td__gctx *g) { return ugrad(g, td_div(UG, td_add_scalar(UX, 1.0))); }
static td_status grad_sqrt(td__gctx *g) { return ugrad(g, td_div(td_mul_scalar(UG, 0.5), UY)); }
/* y = x^-1/2: dy/dx = -y / (2x). */
static td_status grad_rsqrt(td__gctx *g) { return ugrad(g, td_mul(UG, td_div(td_mul_scalar(UY, -0.5), UX))); }
static td_status grad_sin(td__gctx *g) { return ugrad(g, td_mul(UG, td_cos(UX))); }
static td_status grad_cos(td__gctx *g) { return ugrad(g, td_neg(td_mul(UG, td_sin(UX)))); }
static td_status grad_tanh(td__gctx *g) { return ugrad(g, td_mul(UG, td_scalar_sub(1.0, td_square(UY)))); }
static td_status grad_sigmoid(td__gctx *g) { return ugrad(g, td_mul(UG, td_mul(UY, td_scalar_sub(1.0, UY)))); }
/* gelu(x) = x s, s = sigmoid(2u), u = c (x + k x^3):
 * gelu'(x) = s + x s (1 - s) 2c (1 + 3k x^2). */
static td_status grad_gelu(td__gctx *g) {
    td_array *x = UX, *x2 = td_square(x);
    td_array *u = td_mul_scalar(td_add(x, td_mul_scalar(td_mul(x2, x), GELU_C)), SQRT_2_OVER_PI);
    td_array *sg = td_sigmoid(td_mul_scalar(u, 2.0));
    td_array *du = td_mul_scalar(td_add_scalar(td_mul_scalar(x2, 3.0 * GELU_C), 1.0), 2.0 * SQRT_2_OVER_PI);
    td_array *d = td_add(sg, td_mul(td_mul(x, td_mul(sg, td_scalar_sub(1.0, sg))), du));
    return ugrad(g, td_mul(UG, d));
}
static td_status grad_clip(td__gctx *g) {
    const unary_attrs *at = (const unary_attrs *)g->attrs;
    double lo, hi;
    if (at->cdt == TD_F32) {
        float b[2];
        memcpy(b, at->bounds, sizeof b);
        lo = b[0], hi = b[1];
    } else {
        double b[2];
        memcpy(b, at->bounds, sizeof b);
        lo = b[0], hi = b[1];
    }
    td_array *x = UX;
    td_array *inside = td_mul(td_ge(x, full_like(x, lo)), td_le(x, full_like(x, hi)));
    return ugrad(g, td_mul(UG, inside));
}

#define UNARY_DESC(NAME, GRAD, SAVES)                                                                                 \
    static const td__opdesc desc_##NAME = {.name = #NAME, .api = "td_" #NAME, .n_in = 1, .infer = unary_infer,      \
                                           .kernel = {unary_kernel, NULL}, .grad = GRAD, .saves = SAVES};
UNARY_DESC(neg, grad_neg, 0)
UNARY_DESC(abs, grad_abs, TD__SAVE_IN)
UNARY_DESC(sign, grad_sign, 0)
UNARY_DESC(square, grad_square, TD__SAVE_IN)
UNARY_DESC(relu, grad_relu, TD__SAVE_IN)
UNARY_DESC(clip, grad_clip, TD__SAVE_IN)
UNARY_DESC(isfinite, NULL, 0)
UNARY_DESC(exp, grad_exp, TD__SAVE_OUT)
UNARY_DESC(log, grad_log, TD__SAVE_IN)
UNARY_DESC(log1p, grad_log1p, TD__SAVE_IN)
UNARY_DESC(sqrt, grad_sqrt, TD__SAVE_OUT)
UNARY_DESC(rsqrt, grad_rsqrt, TD__SAVE_IN | TD__SAVE_OUT)
UNARY_DESC(sin, grad_sin, TD__SAVE_IN)
UNARY_DESC(cos, grad_cos, TD__SAVE_IN)
UNARY_DESC(tanh, grad_tanh, TD__SAVE_OUT)
UNARY_DESC(sigmoid, grad_sigmoid, TD__SAVE_OUT)
UNARY_DESC(gelu, grad_gelu, TD__SAVE_IN)

/* ---- public wrappers ---- */
static int is_float(int dt) { return dt == TD_F32 || dt == TD_F64; }

static td_array *unary(const td__opdesc *d, int code, td_array *a) {
    if (!a) return NULL;
    unary_attrs at = {.code = code, .cdt = a->dtype, .ldt = a->dtype};
    if (code >= U_EXP && !is_float(a->dtype)) at.cdt = at.ldt = TD_F64;
    if (code == U_ISFINITE) at.ldt = TD_U8;
    return td__invoke(d, &a, 1, &at, sizeof at);
}

#define UNARY_API(NAME, CODE)                                                                                         \
    td_array *td_##NAME(td_array *a) { return unary(&desc_##NAME, CODE, a); }
UNARY_API(neg, U_NEG)
UNARY_API(abs, U_ABS)
UNARY_API(sign, U_SIGN)
UNARY_API(square, U_SQUARE)
UNARY_API(relu, U_RELU)
UNARY_API(isfinite, U_ISFINITE)
UNARY_API(exp, U_EXP)
UNARY_API(log, U_LOG)
UNARY_API(log1p, U_LOG1P)
UNARY_API(sqrt, U_SQRT)
UNARY_API(rsqrt, U_RSQRT)
UNARY_API(sin, U_SIN)
UNARY_API(cos, U_COS)
UNARY_API(tanh, U_TANH)
UNARY_API(sigmoid, U_SIGMOID)
UNARY_API(gelu, U_GELU)

/* A clip bound for an integer dtype: the integers in [lo, hi] are those in
 * [ceil(lo), floor(hi)]; bounds beyond the dtype's range saturate (so -inf
 * and inf mean no bound). */
static int64_t int_bound(int dt, double v, int upper) {
    double mn = dt == TD_I32 ? (double)INT32_MIN : dt == TD_I64 ? -0x1p63 : 0.0;
    double mx = dt == TD_I32 ? (double)INT32_MAX : dt == TD_I64 ? 0x1p63 : 255.0;
    v = upper ? floor(v) : ceil(v);
    if (v <= mn) return dt == TD_I64 ? INT64_MIN : (int64_t)mn;
    if (v >= mx) return dt == TD_I64 ? INT64_MAX : (int64_t)mx;
    return (int64_t)v;
}

/* numpy.clip(a, lo, hi) = minimum(maximum(a, lo), hi), in a's dtype: lo > hi
 * gives hi everywhere.  Float bounds are rounded to a's dtype and may be NaN
 * (the result is then NaN, as numpy); integer arrays need bounds that are not
 * NaN. */
td_array *td_clip(td_array *a, double lo, double hi) {
    if (!a) return NULL;
    unary_attrs at = {.code = U_CLIP, .cdt = a->dtype, .ldt = a->dtype};
    switch (a->dtype) {
    case TD_F32: {
        float b[2] = {(float)lo, (float)hi};
        memcpy(at.bounds, b, sizeof b);
        break;
    }
    case TD_F64: {
        double b[2] = {lo, hi};
        memcpy(at.bounds, b, sizeof b);
        break;
    }
    default: {
        if (isnan(lo) || isnan(hi)) {
            td__fail(TD_EINVAL, "td_clip: the bounds of an integer (%s) array must not be NaN (got %g, %g)",
                     td_dtype_name(a->dtype), lo, hi);
            return NULL;
        }
        int64_t l = int_bound(a->dtype, lo, 0), h = int_bound(a->dtype, hi, 1);
        if (a->dtype == TD_I64) {
            int64_t b[2] = {l, h};
            memcpy(at.bounds, b, sizeof b);
        } else if (a->dtype == TD_I32) {
            int32_t b[2] = {(int32_t)l, (int32_t)h};
            memcpy(at.bounds, b, sizeof b);
        } else {
            uint8_t b[2] = {(uint8_t)l, (uint8_t)h};
            memcpy(at.bounds, b, sizeof b);
        }
        break;
    }
    }
    return td__invoke(&desc_clip, &a, 1, &at, sizeof at);
}

/* ---- where(cond, a, b) ---- */
enum { W_OUT, W_COND, W_A, W_B, W_N };

typedef struct {
    int nd;
    int64_t shape[TD_MAX_DIMS];
    char *ptr[W_N];
    int64_t str[W_N][TD_MAX_DIMS]; /* byte strides; 0 where broadcast */
    int dt[W_N];
} where_plan;

/* mask[i] = (x[i] != 0) for n elements of dtype dt at byte stride s (NaN is
 * true, -0 false, as numpy's bool()). */
#define TRUTH(T, SUF)                                                                                                 \
    static void truth_##SUF(const char *x, int64_t s, uint8_t *mask, int64_t n) {                                     \
        if (s == (int64_t)sizeof(T)) {                                                                                \
            const T *p = (const T *)x;                                                                                \
            for (int64_t i = 0; i < n; i++) mask[i] = p[i] != 0;                                                      \
        } else {                                                                                                      \
            for (int64_t i = 0; i < n; i++) mask[i] = *(const T *)(x + i * s) != 0;                                   \
        }                                                                                                             \
    }
TRUTH(float, f32)
TRUTH(double, f64)
TRUTH(int32_t, i32)
TRUTH(int64_t, i64)
TRUTH(uint8_t, u8)
typedef void (*truth_fn)(const char *, int64_t, uint8_t *, int64_t);
static const truth_fn truths[TD_DTYPE_COUNT] = {truth_f32, truth_f64, truth_i32, truth_i64, truth_u8};

/* o[i] = m[i] ? a[i] : b[i] on elements of one size (bits copied as they
 * are); sm is 1, or 0 when one mask value holds for the whole block. */
#define SELECT(T, BYTES)                                                                                              \
    static void select_##BYTES(int64_t n, char *o, int64_t so, const uint8_t *m, int64_t sm, const char *a,           \
                               int64_t sa, const char *b, int64_t sb) {                                               \
        if (so == BYTES && sm == 1 && sa == BYTES && sb == BYTES) {                                                   \
            T *po = (T *)o;                                                                                           \
            const T *pa = (const T *)a, *pb = (const T *)b;                                                           \
            for (int64_t i = 0; i < n; i++) {                                                                         \
                T k = (T)0 - (T)m[i]; /* all ones or zero: no branch, no conditional load */                          \
                po[i] = (pa[i] & k) | (pb[i] & (T)~k);                                                                \
            }                                                                                                         \
        } else {                                                                                                      \
            for (int64_t i = 0; i < n; i++)                                                                           \
                *(T *)(o + i * so) = m[i * sm] ? *(const T *)(a + i * sa) : *(const T *)(b + i * sb);                 \
        }                                                                                                             \
    }
SELECT(uint8_t, 1)
SELECT(uint32_t, 4)
SELECT(uint64_t, 8)

/* One row segment of n elements. */
static void where_segment(const where_plan *p, int64_t n, char *po, const char *pc, const char *pa,
                          const char *pb) {
    int last = p->nd - 1, odt = p->dt[W_OUT];
    int64_t so = p->str[W_OUT][last], sc = p->str[W_COND][last], sa = p->str[W_A][last], sb = p->str[W_B][last];
    int64_t es = (int64_t)td_dtype_size(odt);
    int conv_a = p->dt[W_A] != odt, conv_b = p->dt[W_B] != odt;
    _Alignas(64) uint8_t mask[BLOCK];
    _Alignas(64) char ta[BLOCK * 8], tb[BLOCK * 8];
    for (int64_t done = 0; done < n;) {
        int64_t m = n - done < BLOCK ? n - done : BLOCK;
        /* Broadcast operands (stride 0) are read and converted once. */
        truths[p->dt[W_COND]](pc, sc, mask, sc ? m : 1);
        const char *xa = pa, *xb = pb;
        int64_t xsa = sa, xsb = sb;
        if (conv_a) {
            td__convert(p->dt[W_A], pa, sa, odt, ta, sa ? m : 1);
            xa = ta;
            xsa = sa ? es : 0;
        }
        if (conv_b) {
            td__convert(p->dt[W_B], pb, sb, odt, tb, sb ? m : 1);
            xb = tb;
            xsb = sb ? es : 0;
        }
        int64_t sm = sc ? 1 : 0;
        switch (es) {
        case 1: select_1(m, po, so, mask, sm, xa, xsa, xb, xsb); break;
        case 4: select_4(m, po, so, mask, sm, xa, xsa, xb, xsb); break;
        default: select_8(m, po, so, mask, sm, xa, xsa, xb, xsb); break;
        }
        done += m;
        po += m * so;
        pc += m * sc;
        pa += m * sa;
        pb += m * sb;
    }
}

static void where_seg(void *arg, int64_t n, char **ptr) {
    where_segment(arg, n, ptr[W_OUT], ptr[W_COND], ptr[W_A], ptr[W_B]);
}

static void where_chunk(void *arg, int64_t b, int64_t e) {
    const where_plan *p = arg;
    td__nd_walk(p->nd, p->shape, W_N, p->ptr, (const int64_t (*)[TD_MAX_DIMS])p->str, b, e, where_seg, (void *)p);
}

/* out: the result's shape (the broadcast of all three), C-contiguous or not;
 * cond, a, b: any layout and dtype. */
static td_status where_kernel(const td__call *c, const td_exec *ex) {
    const td_array *out = c->out;
    int64_t n = td_numel(out);
    if (n == 0) return TD_OK;
    const td_array *ops[W_N] = {out, c->in[0], c->in[1], c->in[2]};
    int nd = out->ndim;
    int64_t str[W_N][TD_MAX_DIMS];
    where_plan p;
    memset(&p, 0, sizeof p);
    for (int k = 0; k < W_N; k++) {
        const td_array *x = ops[k];
        int64_t es = (int64_t)td_dtype_size(x->dtype);
        p.ptr[k] = td__array_ptr(x);
        p.dt[k] = x->dtype;
        for (int i = nd - 1, j = x->ndim - 1; i >= 0; i--, j--)
            str[k][i] = (j >= 0 && x->shape[j] == out->shape[i] && out->shape[i] != 1) ? x->strides[j] * es : 0;
    }
    /* Merge dims that are contiguous for every operand; drop size-1 dims. */
    int m = 0;
    for (int i = 0; i < nd; i++) {
        int64_t len = out->shape[i];
        if (len == 1) continue;
        int merge = m > 0;
        for (int k = 0; merge && k < W_N; k++) merge = p.str[k][m - 1] == str[k][i] * len;
        if (merge) {
            p.shape[m - 1] *= len;
            for (int k = 0; k < W_N; k++) p.str[k][m - 1] = str[k][i];
        } else {
            p.shape[m] = len;
            for (int k = 0; k < W_N; k++) p.str[k][m] = str[k][i];
            m++;
        }
    }
    if (m == 0) {
        p.shape[0] = 1;
        for (int k = 0; k < W_N; k++) p.str[k][0] = 0;
        m = 1;
    }
    p.nd = m;
    return td_parallel_for(ex, n, GRAIN, where_chunk, &p);
}

static td_status where_infer(const td__call *c, int *dtype, int *ndim, int64_t *shape) {
    const td_array *cond = c->in[0], *a = c->in[1], *b = c->in[2];
    int n1;
    int64_t s1[TD_MAX_DIMS];
    if (td__broadcast_shapes("td_where", cond->ndim, cond->shape, a->ndim, a->shape, &n1, s1) != TD_OK ||
        td__broadcast_shapes("td_where", n1, s1, b->ndim, b->shape, ndim, shape) != TD_OK) {
        char sc[128], sa[128], sb[128];
        return td__fail(TD_ESHAPE, "td_where: shapes %s (cond), %s (a) and %s (b) do not broadcast together",
                        td__shape_str(cond->ndim, cond->shape, sc, sizeof sc),
                        td__shape_str(a->ndim, a->shape, sa, sizeof sa),
                        td__shape_str(b->ndim, b->shape, sb, sizeof sb));
    }
    *dtype = td_promote_types(a->dtype, b->dtype);
    return TD_OK;
}

/* where: the gradient goes to a where cond holds and to b elsewhere; cond
 * gets none. */
static td_status grad_where(td__gctx *g) {
    td_array *cond = g->in[0], *go = g->gout[0];
    td_array *zero = td_zeros(go->dtype, 0, NULL, go->dev);
    if (g->need[1] && !(g->gin[1] = td_where(cond, go, zero))) return td_last_status();
    if (g->need[2] && !(g->gin[2] = td_where(cond, zero, go))) return td_last_status();
    return TD_OK;
}

static const td__opdesc desc_where = {.name = "where", .api = "td_where", .n_in = 3, .infer = where_infer,
                                      .kernel = {where_kernel, NULL}, .grad = grad_where, .saves = TD__SAVE_IN};

td_array *td_where(td_array *cond, td_array *a, td_array *b) {
    if (!cond || !a || !b) return NULL;
    td_array *in[3] = {cond, a, b};
    return td__invoke(&desc_where, in, 3, NULL, 0);
}
