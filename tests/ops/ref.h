/* A plain reference for the elementwise ops, written from numpy's rules:
 * dtype promotion, broadcasting, and each op on one element, computed in
 * double (int64, wrapping, for integer dtypes, so large i64 values are
 * exact).  The op tests compare what tide computes against it.
 *
 * Promotion (numpy): f64 wins; f32 with u8 gives f32, with i32 or i64 f64;
 * i64 wins among integers, then i32; u8 with u8 stays u8 (wrapping).  td_div
 * is true division (integer inputs give f64).  Comparisons compute in the
 * promoted dtype and give u8 0/1.  Scalars are python-style (see ops.h): an
 * integral value keeps the array's dtype; a non-integral one keeps a float
 * array's dtype and makes an integer array f64.
 */
#ifndef TIDE_TESTS_OPS_REF_H
#define TIDE_TESTS_OPS_REF_H

#include "ndarray/nd.h"

enum {
    R_ADD,
    R_SUB,
    R_MUL,
    R_DIV,
    R_POW,
    R_MAX,
    R_MIN,
    R_EQ,
    R_NE,
    R_LT,
    R_LE,
    R_GT,
    R_GE,
    R_NOPS
};

static inline const char *ref_op_name(int op) {
    switch (op) {
    case R_ADD: return "add";
    case R_SUB: return "sub";
    case R_MUL: return "mul";
    case R_DIV: return "div";
    case R_POW: return "pow";
    case R_MAX: return "maximum";
    case R_MIN: return "minimum";
    case R_EQ: return "eq";
    case R_NE: return "ne";
    case R_LT: return "lt";
    case R_LE: return "le";
    case R_GT: return "gt";
    case R_GE: return "ge";
    default: return "?";
    }
}

static inline int ref_is_cmp(int op) { return op >= R_EQ && op <= R_GE; }

typedef td_array *(*ref_bin_fn)(td_array *, td_array *);
typedef td_status (*ref_bin_out_fn)(td_array *, td_array *, td_array *);

static inline ref_bin_fn ref_bin(int op) {
    switch (op) {
    case R_ADD: return td_add;
    case R_SUB: return td_sub;
    case R_MUL: return td_mul;
    case R_DIV: return td_div;
    case R_POW: return td_pow;
    case R_MAX: return td_maximum;
    case R_MIN: return td_minimum;
    case R_EQ: return td_eq;
    case R_NE: return td_ne;
    case R_LT: return td_lt;
    case R_LE: return td_le;
    case R_GT: return td_gt;
    case R_GE: return td_ge;
    default: return NULL;
    }
}

static inline ref_bin_out_fn ref_bin_out(int op) {
    switch (op) {
    case R_ADD: return td_add_out;
    case R_SUB: return td_sub_out;
    case R_MUL: return td_mul_out;
    case R_DIV: return td_div_out;
    case R_POW: return td_pow_out;
    case R_MAX: return td_maximum_out;
    case R_MIN: return td_minimum_out;
    case R_EQ: return td_eq_out;
    case R_NE: return td_ne_out;
    case R_LT: return td_lt_out;
    case R_LE: return td_le_out;
    case R_GT: return td_gt_out;
    case R_GE: return td_ge_out;
    default: return NULL;
    }
}

/* ---- scalar forms ---- */
enum {
    S_ADD,  /* a + s */
    S_SUB,  /* a - s */
    S_RSUB, /* s - a */
    S_MUL,  /* a * s */
    S_DIV,  /* a / s */
    S_RDIV, /* s / a */
    S_POW,  /* a ** s */
    S_RPOW, /* s ** a */
    S_MAX,
    S_MIN,
    S_NOPS
};

typedef td_array *(*ref_sca_fn)(td_array *, double);
typedef td_array *(*ref_rsca_fn)(double, td_array *);
typedef td_status (*ref_sca_out_fn)(td_array *, double, td_array *);
typedef td_status (*ref_rsca_out_fn)(double, td_array *, td_array *);

static inline const char *ref_sop_name(int sop) {
    switch (sop) {
    case S_ADD: return "add_scalar";
    case S_SUB: return "sub_scalar";
    case S_RSUB: return "scalar_sub";
    case S_MUL: return "mul_scalar";
    case S_DIV: return "div_scalar";
    case S_RDIV: return "scalar_div";
    case S_POW: return "pow_scalar";
    case S_RPOW: return "scalar_pow";
    case S_MAX: return "maximum_scalar";
    case S_MIN: return "minimum_scalar";
    default: return "?";
    }
}
/* The binary op of a scalar form, and whether the scalar comes first. */
static inline int ref_sop_op(int sop) {
    static const int ops[S_NOPS] = {R_ADD, R_SUB, R_SUB, R_MUL, R_DIV, R_DIV, R_POW, R_POW, R_MAX,
                                    R_MIN};
    return ops[sop];
}
static inline int ref_sop_scalar_first(int sop) {
    return sop == S_RSUB || sop == S_RDIV || sop == S_RPOW;
}
/* Calls the scalar form. */
static inline td_array *ref_sop_call(int sop, td_array *a, double s) {
    switch (sop) {
    case S_ADD: return td_add_scalar(a, s);
    case S_SUB: return td_sub_scalar(a, s);
    case S_RSUB: return td_scalar_sub(s, a);
    case S_MUL: return td_mul_scalar(a, s);
    case S_DIV: return td_div_scalar(a, s);
    case S_RDIV: return td_scalar_div(s, a);
    case S_POW: return td_pow_scalar(a, s);
    case S_RPOW: return td_scalar_pow(s, a);
    case S_MAX: return td_maximum_scalar(a, s);
    case S_MIN: return td_minimum_scalar(a, s);
    default: return NULL;
    }
}
/* Calls the _out form; -1 when the scalar form has none in ops.h. */
static inline int ref_sop_has_out(int sop) { return sop != S_MAX && sop != S_MIN; }
static inline td_status ref_sop_out_call(int sop, td_array *a, double s, td_array *out) {
    switch (sop) {
    case S_ADD: return td_add_scalar_out(a, s, out);
    case S_SUB: return td_sub_scalar_out(a, s, out);
    case S_RSUB: return td_scalar_sub_out(s, a, out);
    case S_MUL: return td_mul_scalar_out(a, s, out);
    case S_DIV: return td_div_scalar_out(a, s, out);
    case S_RDIV: return td_scalar_div_out(s, a, out);
    case S_POW: return td_pow_scalar_out(a, s, out);
    case S_RPOW: return td_scalar_pow_out(s, a, out);
    default: return TD_EINVAL;
    }
}

/* ---- dtype rules ---- */

/* numpy's promotion of two array dtypes. */
static inline int ref_promote(int a, int b) {
    if (a == b) return a;
    if (a == TD_F64 || b == TD_F64) return TD_F64;
    if (a == TD_F32 || b == TD_F32) {
        int other = a == TD_F32 ? b : a;
        return other == TD_U8 ? TD_F32 : TD_F64;
    }
    if (a == TD_I64 || b == TD_I64) return TD_I64;
    if (a == TD_I32 || b == TD_I32) return TD_I32;
    return TD_U8;
}

/* The dtype an op computes in. */
static inline int ref_compute_dtype(int op, int a, int b) {
    int p = ref_promote(a, b);
    if (op == R_DIV && !nd_is_float(p)) return TD_F64;
    return p;
}

/* The dtype of an op's result. */
static inline int ref_result_dtype(int op, int a, int b) {
    return ref_is_cmp(op) ? TD_U8 : ref_compute_dtype(op, a, b);
}

static inline int ref_integral(double s) { return isfinite(s) && s == trunc(s); }

/* The dtype a scalar form computes in and gives. */
static inline int ref_scalar_dtype(int op, int adt, double s) {
    if (op == R_DIV) return nd_is_float(adt) ? adt : TD_F64;
    if (nd_is_float(adt)) return adt;
    return ref_integral(s) ? adt : TD_F64;
}

/* Whether out's dtype may receive a result of dtype r (numpy's same_kind,
 * as ops.h puts it).  Returns 1 allowed, 0 refused, -1 where ops.h leaves it
 * open (a signed integer result into u8). */
static inline int ref_out_allowed(int r, int out) {
    if (nd_is_float(out)) return 1;
    if (nd_is_float(r)) return 0;
    if (out == TD_U8 && r != TD_U8) return -1;
    return 1;
}

/* ---- one element ---- */

typedef struct {
    double f;
    int64_t i;
} ref_val;

static inline int64_t ref_ipow(int64_t x, int64_t y) {
    uint64_t r = 1, b = (uint64_t)x;
    while (y > 0) {
        if (y & 1) r *= b;
        b *= b;
        y >>= 1;
    }
    return (int64_t)r;
}

/* x op y computed in dtype cd (x, y already in cd); the result in the op's
 * result dtype.  *fail set for an integer power with a negative exponent
 * (numpy: "Integers to negative integer powers are not allowed"). */
static inline ref_val ref_elem(int op, int cd, ref_val x, ref_val y, int *fail) {
    ref_val r = {0, 0};
    if (nd_is_float(cd)) {
        double a = x.f, b = y.f, v = 0;
        switch (op) {
        case R_ADD: v = a + b; break;
        case R_SUB: v = a - b; break;
        case R_MUL: v = a * b; break;
        case R_DIV: v = a / b; break;
        case R_POW: v = pow(a, b); break;
        case R_MAX: v = (isnan(a) || isnan(b)) ? NAN : (a >= b ? a : b); break;
        case R_MIN: v = (isnan(a) || isnan(b)) ? NAN : (a <= b ? a : b); break;
        case R_EQ: r.i = a == b; break;
        case R_NE: r.i = a != b; break;
        case R_LT: r.i = a < b; break;
        case R_LE: r.i = a <= b; break;
        case R_GT: r.i = a > b; break;
        case R_GE: r.i = a >= b; break;
        default: break;
        }
        if (ref_is_cmp(op))
            r.f = (double)r.i;
        else
            r.f = nd_round_float(cd, v);
        return r;
    }
    int64_t a = x.i, b = y.i, v = 0;
    switch (op) {
    case R_ADD: v = (int64_t)((uint64_t)a + (uint64_t)b); break;
    case R_SUB: v = (int64_t)((uint64_t)a - (uint64_t)b); break;
    case R_MUL: v = (int64_t)((uint64_t)a * (uint64_t)b); break;
    case R_POW:
        if (b < 0) *fail = 1;
        else v = ref_ipow(a, b);
        break;
    case R_MAX: v = a >= b ? a : b; break;
    case R_MIN: v = a <= b ? a : b; break;
    case R_EQ: v = a == b; break;
    case R_NE: v = a != b; break;
    case R_LT: v = a < b; break;
    case R_LE: v = a <= b; break;
    case R_GT: v = a > b; break;
    case R_GE: v = a >= b; break;
    default: break;
    }
    r.i = ref_is_cmp(op) ? v : nd_wrap_int(cd, v);
    r.f = (double)r.i;
    return r;
}

/* Element k of a converted to dtype cd. */
static inline ref_val ref_get(const nd_ref *a, int64_t k, int cd) {
    ref_val v;
    if (nd_is_float(cd)) {
        double x = nd_is_float(a->dtype) ? a->f[k] : (double)a->i[k];
        v.f = nd_round_float(cd, x);
        v.i = 0;
    } else {
        v.i = nd_wrap_int(cd, a->i[k]);
        v.f = (double)v.i;
    }
    return v;
}

static inline void ref_put(nd_ref *r, int64_t k, ref_val v) {
    r->f[k] = v.f;
    r->i[k] = nd_is_float(r->dtype) ? 0 : v.i;
}

/* a op b with broadcasting; the caller checks that the shapes fit.
 * *fail (may be NULL) is set when numpy would raise (negative integer
 * exponent). */
static inline nd_ref ref_binary(int op, const nd_ref *a, const nd_ref *b, int *fail) {
    int n = 0;
    int64_t shape[TD_MAX_DIMS], idx[TD_MAX_DIMS];
    int ok = nd_broadcast_shapes(a->ndim, a->shape, b->ndim, b->shape, &n, shape);
    cr_assert(ok, "ref_binary: shapes do not broadcast");
    int cd = ref_compute_dtype(op, a->dtype, b->dtype);
    nd_ref r = nd_ref_new(ref_result_dtype(op, a->dtype, b->dtype), n, shape);
    int f = 0;
    for (int64_t k = 0; k < r.n; k++) {
        nd_unravel(k, n, shape, idx);
        ref_val x = ref_get(a, nd_ref_bindex(a, n, idx), cd);
        ref_val y = ref_get(b, nd_ref_bindex(b, n, idx), cd);
        ref_put(&r, k, ref_elem(op, cd, x, y, &f));
    }
    if (fail) *fail = f;
    return r;
}

/* A scalar form on a (python-style scalar). */
static inline nd_ref ref_scalar(int sop, const nd_ref *a, double s, int *fail) {
    int op = ref_sop_op(sop);
    int cd = ref_scalar_dtype(op, a->dtype, s);
    nd_ref r = nd_ref_new(cd, a->ndim, a->shape);
    ref_val sv;
    if (nd_is_float(cd)) {
        sv.f = nd_round_float(cd, s);
        sv.i = 0;
    } else {
        sv.i = nd_wrap_int(cd, (int64_t)s);
        sv.f = (double)sv.i;
    }
    int f = 0;
    for (int64_t k = 0; k < r.n; k++) {
        ref_val x = ref_get(a, k, cd);
        ref_val v = ref_sop_scalar_first(sop) ? ref_elem(op, cd, sv, x, &f)
                                               : ref_elem(op, cd, x, sv, &f);
        ref_put(&r, k, v);
    }
    if (fail) *fail = f;
    return r;
}

/* The input generators suited to an op: pow gets small bases and exponents
 * from 0 (no overflow, no negative integer exponent); products stay within
 * i32; additions and comparisons see i64 values around 2^53. */
static inline int ref_gen_a(int op) {
    if (op == R_POW) return ND_GEN_SMALL;
    if (op == R_MUL || op == R_DIV) return ND_GEN_GENERAL;
    return ND_GEN_BIG;
}
static inline int ref_gen_b(int op) {
    if (op == R_POW) return ND_GEN_EXP;
    if (op == R_MUL || op == R_DIV) return ND_GEN_GENERAL;
    return ND_GEN_BIG;
}

/* ---- broadcast cases ---- */

typedef struct {
    int na;
    int64_t a[TD_MAX_DIMS];
    int nb;
    int64_t b[TD_MAX_DIMS];
} ref_bcase;

/* Shapes that broadcast: equal, size-1 dims both ways, rank mismatch, 0-d,
 * 0-size dims, eight dims. */
static inline int ref_bcases(const ref_bcase **out) {
    static const ref_bcase cases[] = {
        {1, {5}, 1, {5}},
        {2, {3, 4}, 2, {3, 4}},
        {2, {3, 1}, 2, {1, 4}},
        {1, {4}, 2, {3, 4}},
        {2, {3, 4}, 1, {1}},
        {0, {0}, 2, {2, 3}},
        {2, {2, 3}, 0, {0}},
        {0, {0}, 0, {0}},
        {3, {2, 0, 3}, 1, {3}},
        {1, {0}, 1, {1}},
        {1, {1}, 2, {0, 1}},
        {4, {2, 1, 3, 1}, 3, {5, 1, 4}},
        {3, {1, 1, 1}, 0, {0}},
        {8, {2, 1, 2, 1, 2, 1, 2, 1}, 8, {1, 2, 1, 2, 1, 2, 1, 2}},
        {2, {7, 33}, 1, {33}},
    };
    *out = cases;
    return (int)(sizeof cases / sizeof cases[0]);
}

#endif
