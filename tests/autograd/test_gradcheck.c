/* Every differentiable op against finite differences (td_gradcheck, float64),
 * several shapes each: broadcasting, views as operands, reductions over each
 * axis with and without keepdims, batched matmul. */
#include "ag.h"

typedef td_array *(*fn1)(td_array *const *in, int p);

typedef struct {
    const char *name;
    fn1 f;
    int p;                       /* a parameter (axis, ...) */
    int n;                       /* inputs */
    int ndim[3];
    int64_t shape[3][4];
    double lo, hi;               /* input values; a negative lo with "away" keeps |x| >= away */
    double away;
} gcase;

static td_array *call(void *ctx, int n, td_array *const *in) {
    (void)n;
    const gcase *c = ctx;
    return c->f(in, c->p);
}

/* Inputs in [lo, hi), pushed away from 0 by `away` (kinks and poles). */
static td_array *make_input(const gcase *c, int i) {
    int64_t n = 1;
    for (int d = 0; d < c->ndim[i]; d++) n *= c->shape[i][d];
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    ag_fill(v, n, c->lo, c->hi, (uint64_t)(i + 1) * 7919u + (uint64_t)strlen(c->name));
    for (int64_t k = 0; k < n; k++)
        if (fabs(v[k]) < c->away) v[k] = v[k] < 0 ? v[k] - c->away : v[k] + c->away;
    td_array *a = ag_arr(c->ndim[i], c->shape[i], v);
    free(v);
    return a;
}

static void run_cases(const gcase *cases, int ncases) {
    ag_start();
    for (int k = 0; k < ncases; k++) {
        const gcase *c = &cases[k];
        td_scope_begin();
        td_array *in[3];
        for (int i = 0; i < c->n; i++) in[i] = make_input(c, i);
        td_status st = td_gradcheck(call, (void *)c, c->n, in, 1e-5, 1e-7, NULL);
        cr_assert_eq(st, TD_OK, "%s: %s", c->name, td_last_error());
        td_scope_end();
    }
    ag_finish();
}

#define S1(a) 1, {a}
#define SH(...) {__VA_ARGS__}

/* ---- elementwise ---- */
static td_array *f_add(td_array *const *x, int p) { (void)p; return td_add(x[0], x[1]); }
static td_array *f_sub(td_array *const *x, int p) { (void)p; return td_sub(x[0], x[1]); }
static td_array *f_mul(td_array *const *x, int p) { (void)p; return td_mul(x[0], x[1]); }
static td_array *f_div(td_array *const *x, int p) { (void)p; return td_div(x[0], x[1]); }
static td_array *f_pow(td_array *const *x, int p) { (void)p; return td_pow(td_abs(x[0]), x[1]); }
static td_array *f_maximum(td_array *const *x, int p) { (void)p; return td_maximum(x[0], x[1]); }
static td_array *f_minimum(td_array *const *x, int p) { (void)p; return td_minimum(x[0], x[1]); }
/* A transposed view as an operand. */
static td_array *f_mul_t(td_array *const *x, int p) { (void)p; return td_mul(td_transpose(x[0], NULL), x[1]); }
static td_array *f_scalars(td_array *const *x, int p) {
    td_array *a = x[0];
    switch (p) {
    case 0: return td_add_scalar(a, 1.5);
    case 1: return td_sub_scalar(a, 1.5);
    case 2: return td_scalar_sub(1.5, a);
    case 3: return td_mul_scalar(a, -2.5);
    case 4: return td_div_scalar(a, 0.7);
    case 5: return td_scalar_div(1.5, a);
    case 6: return td_pow_scalar(td_abs(a), 2.5);
    case 7: return td_scalar_pow(1.7, a);
    case 8: return td_maximum_scalar(a, 0.1);
    default: return td_minimum_scalar(a, 0.1);
    }
}

Test(gradcheck, elementwise_with_broadcasting_and_scalars, .timeout = 240) {
    static const gcase cases[] = {
        {"add", f_add, 0, 2, {2, 1}, {SH(2, 3), SH(3)}, -2, 2, 0},
        {"add b", f_add, 0, 2, {3, 2}, {SH(2, 1, 3), SH(4, 1)}, -2, 2, 0},
        {"sub", f_sub, 0, 2, {2, 2}, {SH(2, 3), SH(2, 1)}, -2, 2, 0},
        {"mul", f_mul, 0, 2, {2, 1}, {SH(2, 3), SH(3)}, -2, 2, 0},
        {"mul 0-d", f_mul, 0, 2, {2, 0}, {SH(2, 3), SH(0)}, -2, 2, 0},
        {"mul view", f_mul_t, 0, 2, {2, 2}, {SH(3, 2), SH(2, 3)}, -2, 2, 0},
        {"div", f_div, 0, 2, {2, 1}, {SH(2, 3), SH(3)}, -2, 2, 0.5},
        {"pow", f_pow, 0, 2, {2, 2}, {SH(2, 3), SH(2, 3)}, -2, 2, 0.3},
        {"maximum", f_maximum, 0, 2, {2, 1}, {SH(2, 3), SH(3)}, -2, 2, 0},
        {"minimum", f_minimum, 0, 2, {2, 2}, {SH(2, 3), SH(1, 3)}, -2, 2, 0},
    };
    run_cases(cases, (int)(sizeof cases / sizeof cases[0]));
}

Test(gradcheck, scalar_forms, .timeout = 240) {
    gcase cases[10];
    for (int i = 0; i < 10; i++)
        cases[i] = (gcase){"scalar form", f_scalars, i, 1, {2}, {SH(3, 4)}, -2, 2, 0.3};
    run_cases(cases, 10);
}

/* ---- unary ---- */
static td_array *f_unary(td_array *const *x, int p) {
    td_array *a = x[0];
    switch (p) {
    case 0: return td_neg(a);
    case 1: return td_abs(a);
    case 2: return td_sign(a);
    case 3: return td_exp(a);
    case 4: return td_log(td_abs(a));
    case 5: return td_log1p(td_abs(a));
    case 6: return td_sqrt(td_abs(a));
    case 7: return td_rsqrt(td_abs(a));
    case 8: return td_square(a);
    case 9: return td_sin(a);
    case 10: return td_cos(a);
    case 11: return td_tanh(a);
    case 12: return td_sigmoid(a);
    case 13: return td_relu(a);
    case 14: return td_gelu(a);
    case 15: return td_clip(a, -0.25, 0.25); /* |a| >= 0.3: every element outside */
    case 16: return td_clip(a, -5, 5);       /* every element inside */
    case 17: return td_astype(a, TD_F64);
    default: return td_contiguous(td_transpose(a, NULL));
    }
}
static td_array *f_where(td_array *const *x, int p) {
    (void)p;
    td_array *cond = td_gt(x[2], td_zeros(TD_F64, 0, NULL, td_cpu(0)));
    return td_where(cond, x[0], x[1]);
}

Test(gradcheck, unary_where_and_astype, .timeout = 240) {
    gcase cases[21];
    int n = 0;
    for (int i = 0; i <= 18; i++) cases[n++] = (gcase){"unary", f_unary, i, 1, {2}, {SH(3, 4)}, -2, 2, 0.3};
    cases[n++] = (gcase){"unary 3-d", f_unary, 14, 1, {3}, {SH(2, 1, 3)}, -3, 3, 0.1};
    cases[n++] = (gcase){"where", f_where, 0, 3, {2, 1, 2}, {SH(2, 3), SH(3), SH(2, 1)}, -2, 2, 0.1};
    run_cases(cases, n);
}

/* ---- reductions and softmax ---- */
enum { AX_ALL = 9 };
static int axis_of(int p) { return (p % 10) == AX_ALL ? TD_ALL_AXES : (p % 10) - 3; } /* p % 10: 0..5 -> -3..2 */
static td_array *f_reduce(td_array *const *x, int p) {
    int ax = axis_of(p), keep = (p / 10) % 2, op = p / 100;
    td_array *a = x[0];
    switch (op) {
    case 0: return td_sum(a, ax, keep);
    case 1: return td_mean(a, ax, keep);
    case 2: return td_max(a, ax, keep);
    case 3: return td_min(a, ax, keep);
    case 4: return td_prod(a, ax, keep);
    case 5: return td_logsumexp(a, ax, keep);
    case 6: return td_variance(a, ax, keep);
    case 7: return td_softmax(a, ax);
    default: return td_log_softmax(a, ax);
    }
}

Test(gradcheck, reductions_over_each_axis, .timeout = 300) {
    static gcase cases[9 * 8 * 2];
    int n = 0;
    for (int op = 0; op <= 8; op++) {
        int axes[] = {3, 4, 5, 2, 0, AX_ALL}; /* 0, 1, 2, -1, -3, all */
        for (int ai = 0; ai < 6; ai++) {
            if (op >= 7 && axes[ai] == AX_ALL) continue;
            for (int keep = 0; keep < 2; keep++) {
                if (op >= 7 && keep) continue;
                cases[n++] = (gcase){"reduction", f_reduce, op * 100 + keep * 10 + axes[ai], 1, {3},
                                     {SH(2, 3, 4)}, op == 4 ? 0.5 : -2, 2, 0};
            }
        }
    }
    /* prod with a zero and with two zeros in a slice */
    run_cases(cases, n);
}

static td_array *f_prod_zeros(td_array *const *x, int p) {
    /* x with some elements set to zero by a mask: a slice with one zero
     * and one with two */
    double m[8] = {1, 0, 1, 1, 0, 1, 0, 1};
    td_array *mask = td_from_host(m, TD_F64, 2, (int64_t[]){2, 4}, td_cpu(0));
    return td_prod(td_mul(x[0], mask), p, TD_DROPDIMS);
}

Test(gradcheck, prod_with_zeros, .timeout = 60) {
    gcase cases[] = {{"prod zeros", f_prod_zeros, 1, 1, {2}, {SH(2, 4)}, 0.5, 2, 0},
                     {"prod zeros axis 0", f_prod_zeros, 0, 1, {2}, {SH(2, 4)}, 0.5, 2, 0}};
    run_cases(cases, 2);
}

/* ---- linear algebra ---- */
static td_array *f_matmul(td_array *const *x, int p) {
    switch (p) {
    case 1: return td_matmul(td_transpose(x[0], NULL), x[1]);
    case 2: return td_dot(x[0], x[1]);
    case 3: return td_outer(x[0], x[1]);
    default: return td_matmul(x[0], x[1]);
    }
}

Test(gradcheck, matmul_dot_outer, .timeout = 240) {
    static const gcase cases[] = {
        {"matmul 2x2", f_matmul, 0, 2, {2, 2}, {SH(3, 4), SH(4, 5)}, -1, 1, 0},
        {"matmul 1x2", f_matmul, 0, 2, {1, 2}, {SH(4), SH(4, 5)}, -1, 1, 0},
        {"matmul 2x1", f_matmul, 0, 2, {2, 1}, {SH(3, 4), SH(4)}, -1, 1, 0},
        {"matmul 1x1", f_matmul, 0, 2, {1, 1}, {SH(4), SH(4)}, -1, 1, 0},
        {"matmul batched", f_matmul, 0, 2, {3, 2}, {SH(2, 3, 4), SH(4, 2)}, -1, 1, 0},
        {"matmul broadcast batch", f_matmul, 0, 2, {4, 3}, {SH(2, 1, 3, 4), SH(3, 4, 2)}, -1, 1, 0},
        {"matmul 1 x batched", f_matmul, 0, 2, {1, 3}, {SH(4), SH(2, 4, 3)}, -1, 1, 0},
        {"matmul transposed view", f_matmul, 1, 2, {2, 2}, {SH(4, 3), SH(4, 2)}, -1, 1, 0},
        {"dot", f_matmul, 2, 2, {1, 1}, {SH(5), SH(5)}, -1, 1, 0},
        {"dot 2-d", f_matmul, 2, 2, {2, 2}, {SH(2, 3), SH(3, 2)}, -1, 1, 0},
        {"outer", f_matmul, 3, 2, {2, 1}, {SH(2, 2), SH(3)}, -1, 1, 0},
    };
    run_cases(cases, (int)(sizeof cases / sizeof cases[0]));
}

/* ---- shape ops and views ---- */
static td_array *f_shape(td_array *const *x, int p) {
    td_array *a = x[0];
    switch (p) {
    case 0: return td_reshape(a, 2, (int64_t[]){4, -1});
    case 1: return td_reshape(td_transpose(a, NULL), 1, (int64_t[]){-1}); /* the copy path */
    case 2: return td_transpose(a, (int[]){1, 2, 0});
    case 3: return td_slice(a, 2, 0, 4, 2);
    case 4: return td_slice(a, 1, -1, -4, -2);
    case 5: return td_expand_dims(a, 1);
    case 6: return td_squeeze(td_slice(a, 1, 1, 2, 1), 1);
    case 7: return td_broadcast_to(td_slice(a, 0, 0, 1, 1), 4, (int64_t[]){2, 2, 3, 4});
    case 8: return td_flip(a, 1);
    case 9: return td_flip(a, TD_ALL_AXES);
    case 10: {
        td_array *parts[2];
        if (td_split(a, 2, 2, parts) != TD_OK) return NULL;
        return td_sub(parts[0], td_mul_scalar(parts[1], 3.0));
    }
    case 11: return td_tile(a, 2, (int64_t[]){2, 1});
    case 12: return td_tile(a, 4, (int64_t[]){2, 1, 2, 1});
    case 13: return td_pad(a, (int64_t[]){1, 0, 2}, (int64_t[]){0, 2, 1}, 7.0);
    default: return td_mul(td_slice(td_transpose(a, NULL), 0, 1, 4, 2), td_flip(td_slice(a, 2, 0, 2, 1), 0)) ;
    }
}
static td_array *f_join(td_array *const *x, int p) {
    switch (p) {
    case 0: return td_concat(x, 3, 1);
    case 1: return td_concat(x, 2, -1);
    case 2: return td_stack(x, 3, 0);
    default: return td_stack(x, 3, -1);
    }
}

Test(gradcheck, shape_ops_and_views, .timeout = 300) {
    gcase cases[24];
    int n = 0;
    for (int i = 0; i <= 14; i++) {
        if (i == 14) continue;
        cases[n++] = (gcase){"shape", f_shape, i, 1, {3}, {SH(2, 3, 4)}, -2, 2, 0};
    }
    cases[n++] = (gcase){"concat", f_join, 0, 3, {2, 2, 2}, {SH(2, 1), SH(2, 3), SH(2, 2)}, -2, 2, 0};
    cases[n++] = (gcase){"concat last", f_join, 1, 2, {3, 3}, {SH(2, 2, 1), SH(2, 2, 3)}, -2, 2, 0};
    cases[n++] = (gcase){"stack", f_join, 2, 3, {2, 2, 2}, {SH(2, 3), SH(2, 3), SH(2, 3)}, -2, 2, 0};
    cases[n++] = (gcase){"stack last", f_join, 3, 3, {1, 1, 1}, {SH(4), SH(4), SH(4)}, -2, 2, 0};
    run_cases(cases, n);
}

/* ---- indexing ---- */
static td_array *f_index(td_array *const *x, int p) {
    int64_t iv[5] = {2, 0, 2, -1, 1};
    td_array *ind = td_from_host(iv, TD_I64, 1, (int64_t[]){5}, td_cpu(0));
    switch (p) {
    case 0: return td_take(x[0], ind, 0);
    case 1: return td_take(x[0], ind, -1);
    case 2: return td_take(x[0], ind, TD_ALL_AXES);
    case 3: {
        int32_t pv[4] = {0, 2, 1, 2};
        return td_pick(x[0], td_from_host(pv, TD_I32, 1, (int64_t[]){4}, td_cpu(0)), 1);
    }
    default: {
        int32_t pv[3] = {3, 0, 1};
        return td_pick(x[0], td_from_host(pv, TD_I32, 1, (int64_t[]){3}, td_cpu(0)), 0);
    }
    }
}

Test(gradcheck, take_and_pick, .timeout = 120) {
    gcase cases[] = {{"take 0", f_index, 0, 1, {2}, {SH(3, 4)}, -2, 2, 0},
                     {"take -1", f_index, 1, 1, {2}, {SH(2, 3)}, -2, 2, 0},
                     {"take all", f_index, 2, 1, {2}, {SH(2, 2)}, -2, 2, 0},
                     {"pick 1", f_index, 3, 1, {2}, {SH(4, 3)}, -2, 2, 0},
                     {"pick 0", f_index, 4, 1, {2}, {SH(4, 3)}, -2, 2, 0}};
    run_cases(cases, 5);
}

/* A small network: everything together, both engines' worth of ops. */
static td_array *f_net(td_array *const *x, int p) {
    (void)p;
    td_array *h = td_tanh(td_add(td_matmul(x[0], x[1]), x[2]));
    td_array *l = td_log_softmax(h, 1);
    int64_t lab[3] = {0, 2, 1};
    return td_mean(td_pick(l, td_from_host(lab, TD_I64, 1, (int64_t[]){3}, td_cpu(0)), 1), TD_ALL_AXES,
                   TD_DROPDIMS);
}

Test(gradcheck, a_small_network, .timeout = 120) {
    gcase cases[] = {{"net", f_net, 0, 3, {2, 2, 1}, {SH(3, 4), SH(4, 3), SH(3)}, -1, 1, 0}};
    run_cases(cases, 1);
}
