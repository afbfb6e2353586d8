/* The thirteen elementwise ops of two arrays (add, sub, mul, div, pow,
 * maximum, minimum, eq, ne, lt, le, gt, ge), each against ref.h for every
 * pair of dtypes, over every broadcast case of ref_bcases (size-1 dims, 0-size
 * dims, rank mismatch, 0-d, eight dims), with inputs laid out every way
 * (contiguous, strided with negative steps, transposed, broadcast_to views,
 * transposed slices), on both engines.  Then special values and hand-checked
 * results for the rules that matter most (wrapping u8, exact i64, true
 * division, numpy's NaN handling). */
#include "ref.h"

static void check_op(int op, int engine, tt_rng *g, int gen_a, int gen_b) {
    const ref_bcase *cases;
    int nc = ref_bcases(&cases);
    ref_bin_fn fn = ref_bin(op);
    ND_FOR_EACH_DTYPE(da) {
        ND_FOR_EACH_DTYPE(db) {
            for (int ci = 0; ci < nc; ci++) {
                const ref_bcase *c = &cases[ci];
                int la = (ci + da) % ND_NLAYOUTS, lb = (ci + 2 * db + 1) % ND_NLAYOUTS;
                nd_ref ra, rb;
                td_array *a = nd_make_input(da, c->na, c->a, la, g, gen_a, &ra);
                td_array *b = nd_make_input(db, c->nb, c->b, lb, g, gen_b, &rb);
                char sa[96], sb[96], what[320];
                snprintf(what, sizeof what, "%s engine: td_%s(%s %s %s, %s %s %s)",
                         tt_engine_name(engine), ref_op_name(op), nd_dt(da),
                         nd_shape_str(sa, sizeof sa, c->na, c->a), nd_layout_name(la), nd_dt(db),
                         nd_shape_str(sb, sizeof sb, c->nb, c->b), nd_layout_name(lb));
                td_array *r = fn(a, b);
                int fail = 0;
                nd_ref want = ref_binary(op, &ra, &rb, &fail);
                cr_assert_not(fail, "%s: the test made a negative integer exponent", what);
                nd_expect_ref(r, &want, what);
                /* The inputs are untouched. */
                nd_expect_ref(a, &ra, "first input after the op");
                nd_expect_ref(b, &rb, "second input after the op");
                nd_ref_free(&want);
                nd_ref_free(&ra);
                nd_ref_free(&rb);
                td_release(a);
                td_release(b);
                td_release(r);
            }
        }
    }
}

static void run_op(int op) {
    char name[64];
    snprintf(name, sizeof name, "td_%s", ref_op_name(op));
    uint64_t seed = nd_seed(name, 1000 + (uint64_t)op);
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        tt_rng g = {seed};
        check_op(op, engine, &g, ref_gen_a(op), ref_gen_b(op));
        /* Comparisons again with few distinct values, so that many are equal. */
        if (ref_is_cmp(op)) check_op(op, engine, &g, ND_GEN_SMALL, ND_GEN_SMALL);
        nd_finish();
    }
}

#define OP_TEST(name, op)                                                                     \
    Test(binary, name##_matches_the_reference_for_every_dtype_pair_layout_and_broadcast,      \
         .timeout = 180) {                                                                    \
        run_op(op);                                                                           \
    }
OP_TEST(add, R_ADD)
OP_TEST(sub, R_SUB)
OP_TEST(mul, R_MUL)
OP_TEST(div, R_DIV)
OP_TEST(pow, R_POW)
OP_TEST(maximum, R_MAX)
OP_TEST(minimum, R_MIN)
OP_TEST(eq, R_EQ)
OP_TEST(ne, R_NE)
OP_TEST(lt, R_LT)
OP_TEST(le, R_LE)
OP_TEST(gt, R_GT)
OP_TEST(ge, R_GE)

Test(binary, result_dtypes_follow_numpy_promotion_true_division_and_u8_comparisons,
     .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    /* Written out, not taken from ref.h: (a, b) -> arithmetic, div. */
    static const int arith[5][5] = {
        {TD_F32, TD_F64, TD_F64, TD_F64, TD_F32}, {TD_F64, TD_F64, TD_F64, TD_F64, TD_F64},
        {TD_F64, TD_F64, TD_I32, TD_I64, TD_I32}, {TD_F64, TD_F64, TD_I64, TD_I64, TD_I64},
        {TD_F32, TD_F64, TD_I32, TD_I64, TD_U8},
    };
    static const int divd[5][5] = {
        {TD_F32, TD_F64, TD_F64, TD_F64, TD_F32}, {TD_F64, TD_F64, TD_F64, TD_F64, TD_F64},
        {TD_F64, TD_F64, TD_F64, TD_F64, TD_F64}, {TD_F64, TD_F64, TD_F64, TD_F64, TD_F64},
        {TD_F32, TD_F64, TD_F64, TD_F64, TD_F64},
    };
    ND_FOR_EACH_DTYPE(da) {
        ND_FOR_EACH_DTYPE(db) {
            td_array *a = td_ones(da, 1, (int64_t[]){2}, td_cpu(0));
            td_array *b = td_ones(db, 1, (int64_t[]){2}, td_cpu(0));
            for (int op = 0; op < R_NOPS; op++) {
                td_array *r = ref_bin(op)(a, b);
                cr_assert_not_null(r, "td_%s(%s, %s): %s", ref_op_name(op), nd_dt(da), nd_dt(db),
                                   td_last_error());
                int want = ref_is_cmp(op) ? TD_U8 : op == R_DIV ? divd[da][db] : arith[da][db];
                cr_assert_eq(td_dtype(r), want, "td_%s(%s, %s) gave %s, numpy gives %s",
                             ref_op_name(op), nd_dt(da), nd_dt(db), nd_dt(td_dtype(r)),
                             nd_dt(want));
                cr_assert_eq(want, ref_result_dtype(op, da, db), "ref.h disagrees with the table");
                td_release(r);
            }
            td_release(a);
            td_release(b);
        }
    }
    nd_finish();
}

Test(binary, special_float_values_follow_ieee_and_numpy, .timeout = 60) {
    nd_start(TD_ENGINE_THREADED, 2);
    const double v[] = {NAN, INFINITY, -INFINITY, 0.0, -0.0, 1.0, -2.5, 0.5, 3.0};
    const int nv = (int)(sizeof v / sizeof v[0]);
    const int pairs[][2] = {{TD_F32, TD_F32}, {TD_F64, TD_F64}, {TD_F32, TD_F64}, {TD_F64, TD_I32},
                            {TD_I64, TD_F32}, {TD_F32, TD_U8}};
    for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
        int da = pairs[p][0], db = pairs[p][1];
        nd_ref ra = nd_ref_new(da, 2, (int64_t[]){nv, 1});
        nd_ref rb = nd_ref_new(db, 1, (int64_t[]){nv});
        for (int k = 0; k < nv; k++) {
            /* Integer operands take the finite values that fit. */
            double x = v[k], y = v[k];
            if (!nd_is_float(da)) x = isfinite(x) && x >= 0 ? trunc(x) : 2;
            if (!nd_is_float(db)) y = isfinite(y) && y >= 0 ? trunc(y) : 3;
            nd_ref_put_f(&ra, k, x);
            nd_ref_put_f(&rb, k, y);
        }
        td_array *a = nd_make(&ra), *b = nd_make(&rb);
        for (int op = 0; op < R_NOPS; op++) {
            char what[512];
            snprintf(what, sizeof what, "td_%s(%s specials, %s specials)", ref_op_name(op),
                     nd_dt(da), nd_dt(db));
            td_array *r = ref_bin(op)(a, b);
            nd_ref want = ref_binary(op, &ra, &rb, NULL);
            nd_expect_ref(r, &want, what);
            nd_ref_free(&want);
            td_release(r);
        }
        td_release(a);
        td_release(b);
        nd_ref_free(&ra);
        nd_ref_free(&rb);
    }
    nd_finish();
}

/* Reads a 1-d result into doubles / int64s. */
static void get_f(td_array *a, double *out, int n) {
    nd_ref r = nd_read(a);
    cr_assert_eq(r.n, (int64_t)n);
    for (int k = 0; k < n; k++) out[k] = r.f[k];
    nd_ref_free(&r);
}
static void get_i(td_array *a, int64_t *out, int n) {
    nd_ref r = nd_read(a);
    cr_assert_eq(r.n, (int64_t)n);
    for (int k = 0; k < n; k++) out[k] = r.i[k];
    nd_ref_free(&r);
}

Test(binary, u8_arithmetic_wraps_and_stays_u8, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_array *a = td_from_host((uint8_t[]){250, 3, 16, 3, 0}, TD_U8, 1, (int64_t[]){5}, td_cpu(0));
    td_array *b = td_from_host((uint8_t[]){10, 5, 17, 6, 0}, TD_U8, 1, (int64_t[]){5}, td_cpu(0));
    int64_t r[5];
    td_array *s = td_add(a, b), *d = td_sub(a, b), *m = td_mul(a, b), *p = td_pow(a, b);
    cr_assert_eq(td_dtype(s), TD_U8);
    get_i(s, r, 5);
    cr_assert(r[0] == 4 && r[1] == 8 && r[2] == 33 && r[3] == 9 && r[4] == 0, "u8 add wraps");
    get_i(d, r, 5);
    cr_assert(r[0] == 240 && r[1] == 254 && r[2] == 255 && r[3] == 253 && r[4] == 0,
              "u8 sub wraps: %lld %lld %lld %lld", (long long)r[0], (long long)r[1],
              (long long)r[2], (long long)r[3]);
    get_i(m, r, 5);
    cr_assert(r[0] == (250 * 10) % 256 && r[1] == 15 && r[2] == (16 * 17) % 256 && r[3] == 18,
              "u8 mul wraps");
    get_i(p, r, 5);
    /* 250^10 mod 256 = 0 (2^10 divides it); 3^5 = 243; 16^17 mod 256 = 0; 3^6 = 729 mod 256
     * = 217; 0^0 = 1. */
    cr_assert(r[0] == 0 && r[1] == 243 && r[2] == 0 && r[3] == 217 && r[4] == 1,
              "u8 pow wraps: %lld %lld %lld %lld %lld", (long long)r[0], (long long)r[1],
              (long long)r[2], (long long)r[3], (long long)r[4]);
    td_array *arr[] = {a, b, s, d, m, p};
    for (int i = 0; i < 6; i++) td_release(arr[i]);
    nd_finish();
}

Test(binary, int64_results_are_exact_beyond_two_to_the_53, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    const int64_t big = (int64_t)1 << 53;
    td_array *a = td_from_host((int64_t[]){big + 1, big + 1, -big - 3, INT64_MAX - 1}, TD_I64, 1,
                               (int64_t[]){4}, td_cpu(0));
    td_array *b = td_from_host((int64_t[]){1, big, -big - 2, 1}, TD_I64, 1, (int64_t[]){4},
                               td_cpu(0));
    int64_t r[4];
    td_array *s = td_add(a, b);
    get_i(s, r, 4);
    cr_assert(r[0] == big + 2 && r[1] == 2 * big + 1 && r[2] == -2 * big - 5 && r[3] == INT64_MAX,
              "i64 add is not exact");
    td_array *d = td_sub(a, b);
    get_i(d, r, 4);
    cr_assert(r[0] == big && r[1] == 1 && r[2] == -1 && r[3] == INT64_MAX - 2);
    td_array *e = td_eq(a, b), *gt = td_gt(a, b), *mx = td_maximum(a, b), *mn = td_minimum(a, b);
    get_i(e, r, 4);
    cr_assert(r[0] == 0 && r[1] == 0 && r[2] == 0 && r[3] == 0, "i64 eq compares as doubles");
    get_i(gt, r, 4);
    cr_assert(r[0] == 1 && r[1] == 1 && r[2] == 0 && r[3] == 1);
    get_i(mx, r, 4);
    cr_assert(r[0] == big + 1 && r[1] == big + 1 && r[2] == -big - 2 && r[3] == INT64_MAX - 1,
              "i64 maximum is not exact");
    get_i(mn, r, 4);
    cr_assert(r[0] == 1 && r[1] == big && r[2] == -big - 3 && r[3] == 1);
    td_array *arr[] = {a, b, s, d, e, gt, mx, mn};
    for (int i = 0; i < 8; i++) td_release(arr[i]);
    nd_finish();
}

Test(binary, integer_division_is_true_division_with_infinities_for_zero, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_array *a = td_from_host((int32_t[]){7, -7, 1, -1, 0, 6}, TD_I32, 1, (int64_t[]){6},
                               td_cpu(0));
    td_array *b = td_from_host((int32_t[]){2, 2, 0, 0, 0, 3}, TD_I32, 1, (int64_t[]){6},
                               td_cpu(0));
    td_array *q = td_div(a, b);
    cr_assert_eq(td_dtype(q), TD_F64);
    double r[6];
    get_f(q, r, 6);
    cr_assert(r[0] == 3.5 && r[1] == -3.5 && r[2] == INFINITY && r[3] == -INFINITY &&
                  isnan(r[4]) && r[5] == 2.0,
              "i32 / i32 gave %g %g %g %g %g %g", r[0], r[1], r[2], r[3], r[4], r[5]);
    td_array *u = td_from_host((uint8_t[]){1, 2}, TD_U8, 1, (int64_t[]){2}, td_cpu(0));
    td_array *uq = td_div(u, u);
    cr_assert_eq(td_dtype(uq), TD_F64, "u8 / u8 must be f64 (numpy)");
    td_array *arr[] = {a, b, q, u, uq};
    for (int i = 0; i < 5; i++) td_release(arr[i]);
    nd_finish();
}

Test(binary, maximum_and_minimum_propagate_nan_as_numpy, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_array *a = td_from_host((double[]){NAN, 1, NAN}, TD_F64, 1, (int64_t[]){3}, td_cpu(0));
    td_array *b = td_from_host((float[]){1, NAN, NAN}, TD_F32, 1, (int64_t[]){3}, td_cpu(0));
    double r[3];
    td_array *mx = td_maximum(a, b), *mn = td_minimum(b, a);
    get_f(mx, r, 3);
    cr_assert(isnan(r[0]) && isnan(r[1]) && isnan(r[2]),
              "np.maximum propagates NaN (np.fmax is the one that does not): %g %g %g", r[0],
              r[1], r[2]);
    get_f(mn, r, 3);
    cr_assert(isnan(r[0]) && isnan(r[1]) && isnan(r[2]), "np.minimum propagates NaN");
    td_array *arr[] = {a, b, mx, mn};
    for (int i = 0; i < 4; i++) td_release(arr[i]);
    nd_finish();
}

Test(binary, an_input_used_twice_and_views_of_one_buffer_as_both_inputs, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    nd_ref r;
    td_array *a = nd_make_random(&r, TD_F64, 2, (int64_t[]){6, 6}, &(tt_rng){3}, ND_GEN_GENERAL);
    td_array *t = td_transpose(a, NULL);
    td_array *top = td_slice(a, 0, 0, 3, 1), *bot = td_slice(a, 0, -1, -4, -1);
    nd_ref rt = nd_ref_transpose(&r, NULL);
    nd_ref rtop = nd_ref_slice(&r, 0, 0, 3, 1), rbot = nd_ref_slice(&r, 0, -1, -4, -1);
    td_array *sq = td_mul(a, a), *sym = td_add(a, t), *mix = td_sub(top, bot);
    nd_ref w1 = ref_binary(R_MUL, &r, &r, NULL), w2 = ref_binary(R_ADD, &r, &rt, NULL),
           w3 = ref_binary(R_SUB, &rtop, &rbot, NULL);
    nd_expect_ref(sq, &w1, "a * a");
    nd_expect_ref(sym, &w2, "a + a.T");
    nd_expect_ref(mix, &w3, "a[:3] - a[:-4:-1]");
    td_array *arr[] = {a, t, top, bot, sq, sym, mix};
    for (int i = 0; i < 7; i++) td_release(arr[i]);
    nd_ref *refs[] = {&r, &rt, &rtop, &rbot, &w1, &w2, &w3};
    for (int i = 0; i < 7; i++) nd_ref_free(refs[i]);
    nd_finish();
}
