/* Aliasing: views share their base's storage and var, so writes through a
 * view are ordered with reads of the base and of other views in program
 * order; an op may write into one of its inputs (a = a + b); and an out that
 * overlaps an input in a shifted, reversed or transposed way still gives
 * numpy's result (numpy computes as if the inputs were copied first). */
#include "ref.h"

enum { AR = 8, AC = 10 };

/* Reads a (AR, AC) f32 array. */
static void read_grid(td_array *a, double *out, int n) {
    nd_ref r = nd_read(a);
    cr_assert_eq(r.n, (int64_t)n);
    for (int k = 0; k < n; k++) out[k] = r.f[k];
    nd_ref_free(&r);
}

static void run_view_ordering(int engine, int workers) {
    nd_start(engine, workers);
    td_array *x = td_zeros(TD_F32, 2, (int64_t[]){AR, AC}, td_cpu(0));
    /* A slow first write, so that everything below is queued behind it. */
    static double init[AR * AC];
    for (int k = 0; k < AR * AC; k++) init[k] = k;
    static struct nd_slow slow;
    nd_push_slow_write(&slow, x, 50, init);

    td_array *rows = td_slice(x, 0, 2, 5, 1);        /* rows 2..4 */
    td_array *cols = td_slice(x, 1, 0, AC, 3);       /* columns 0, 3, 6, 9 */
    td_array *top = td_slice(x, 0, 0, AR / 2, 1);
    td_array *bottom = td_slice(x, 0, -1, AR / 2 - 1, -1); /* rows 7..4 */
    td_array *sevens = td_full(TD_F64, 1, (int64_t[]){4}, 7, td_cpu(0));
    cr_assert(rows && cols && top && bottom && sevens);
    cr_assert_eq(td_fill(rows, 5), TD_OK);
    td_array *y = td_add(x, x);
    cr_assert_eq(td_assign(cols, sevens), TD_OK);
    td_array *z = td_mul_scalar(x, 1);
    td_array *xt = td_transpose(x, NULL);
    td_array *w = td_add(xt, xt);
    cr_assert_eq(td_fill(rows, -1), TD_OK);
    td_array *q = td_sub(top, bottom);
    cr_assert_eq(td_add_scalar_out(bottom, 100, bottom), TD_OK);
    cr_assert(y && z && xt && w && q);

    /* The same program on plain doubles. */
    double g[AR][AC], wy[AR][AC], wz[AR][AC], ww[AC][AR], wq[AR / 2][AC];
    for (int i = 0; i < AR; i++)
        for (int j = 0; j < AC; j++) g[i][j] = i * AC + j;
    for (int i = 2; i < 5; i++)
        for (int j = 0; j < AC; j++) g[i][j] = 5;
    for (int i = 0; i < AR; i++)
        for (int j = 0; j < AC; j++) wy[i][j] = 2 * g[i][j];
    for (int i = 0; i < AR; i++)
        for (int j = 0; j < AC; j += 3) g[i][j] = 7;
    for (int i = 0; i < AR; i++)
        for (int j = 0; j < AC; j++) {
            wz[i][j] = g[i][j];
            ww[j][i] = 2 * g[i][j];
        }
    for (int i = 2; i < 5; i++)
        for (int j = 0; j < AC; j++) g[i][j] = -1;
    for (int i = 0; i < AR / 2; i++)
        for (int j = 0; j < AC; j++) wq[i][j] = g[i][j] - g[AR - 1 - i][j];
    for (int i = AR / 2; i < AR; i++)
        for (int j = 0; j < AC; j++) g[i][j] += 100;

    double got[AR * AC];
    const char *e = tt_engine_name(engine);
    read_grid(y, got, AR * AC);
    for (int k = 0; k < AR * AC; k++)
        cr_assert_eq(got[k], wy[k / AC][k % AC], "%s engine, %d workers: x + x [%d]", e, workers,
                     k);
    read_grid(z, got, AR * AC);
    for (int k = 0; k < AR * AC; k++)
        cr_assert_eq(got[k], wz[k / AC][k % AC], "%s engine, %d workers: x * 1 [%d]", e, workers,
                     k);
    read_grid(w, got, AR * AC);
    for (int k = 0; k < AR * AC; k++)
        cr_assert_eq(got[k], ww[k / AR][k % AR], "%s engine, %d workers: x.T + x.T [%d]", e,
                     workers, k);
    read_grid(q, got, AR * AC / 2);
    for (int k = 0; k < AR * AC / 2; k++)
        cr_assert_eq(got[k], wq[k / AC][k % AC], "%s engine, %d workers: top - bottom [%d]", e,
                     workers, k);
    read_grid(x, got, AR * AC);
    for (int k = 0; k < AR * AC; k++)
        cr_assert_eq(got[k], g[k / AC][k % AC], "%s engine, %d workers: final x [%d]", e, workers,
                     k);
    td_array *arr[] = {x, rows, cols, top, bottom, sevens, y, z, xt, w, q};
    for (int i = 0; i < 11; i++) td_release(arr[i]);
    nd_finish();
}

Test(aliasing, writes_through_views_are_ordered_with_reads_of_the_base_and_other_views,
     .timeout = 60) {
    run_view_ordering(TD_ENGINE_NAIVE, 1);
    for (int workers = 1; workers <= 4; workers++)
        for (int rep = 0; rep < 5; rep++) run_view_ordering(TD_ENGINE_THREADED, workers);
}

Test(aliasing, out_may_be_an_input_so_a_equals_a_plus_b_accumulates, .timeout = 60) {
    const int64_t sizes[] = {1000, 2000003};
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 4);
        for (int si = 0; si < 2; si++) {
            int64_t n = sizes[si];
            td_array *a = td_zeros(TD_F64, 1, &n, td_cpu(0));
            td_array *b = td_arange(TD_F64, 0, (double)n, 1, td_cpu(0));
            for (int it = 0; it < 20; it++) cr_assert_eq(td_add_out(a, b, a), TD_OK);
            cr_assert_eq(td_mul_out(a, a, a), TD_OK);          /* (20 b)^2 */
            cr_assert_eq(td_sub_scalar_out(a, 1, a), TD_OK);   /* - 1 */
            cr_assert_eq(td_div_out(a, a, b), TD_OK);          /* b = a / a: 1 (0/0 at 0 -> nan) */
            cr_assert_eq(td_assign(a, a), TD_OK);
            nd_ref ra = nd_read(a), rb = nd_read(b);
            for (int64_t k = 0; k < n; k++) {
                double want = 400.0 * (double)k * (double)k - 1.0;
                if (ra.f[k] != want)
                    cr_assert(0, "%s engine, n %lld: a[%lld] = %.17g, expected %.17g",
                              tt_engine_name(engine), (long long)n, (long long)k, ra.f[k], want);
                if (rb.f[k] != 1.0)
                    cr_assert(0, "%s engine: b[%lld] = a / a = %g", tt_engine_name(engine),
                              (long long)k, rb.f[k]);
            }
            nd_ref_free(&ra);
            nd_ref_free(&rb);
            td_release(a);
            td_release(b);
        }
        nd_finish();
    }
}

/* x = arange(n) as f64, then one overlapping op; checks x against `want`
 * computed by the caller from the old values. */
typedef void (*overlap_fn)(td_array *x, int64_t n);
typedef double (*overlap_want)(const double *old, int64_t n, int64_t k);

static void shift_up(td_array *x, int64_t n) { /* x[1:] = x[:-1] + x[:-1] */
    td_array *lo = td_slice(x, 0, 0, n - 1, 1), *hi = td_slice(x, 0, 1, n, 1);
    cr_assert_eq(td_add_out(lo, lo, hi), TD_OK, "%s", td_last_error());
    td_release(lo);
    td_release(hi);
}
static double shift_up_want(const double *old, int64_t n, int64_t k) {
    (void)n;
    return k == 0 ? old[0] : 2 * old[k - 1];
}
static void shift_down(td_array *x, int64_t n) { /* x[:-1] = x[1:] * 3 */
    td_array *lo = td_slice(x, 0, 0, n - 1, 1), *hi = td_slice(x, 0, 1, n, 1);
    cr_assert_eq(td_mul_scalar_out(hi, 3, lo), TD_OK, "%s", td_last_error());
    td_release(lo);
    td_release(hi);
}
static double shift_down_want(const double *old, int64_t n, int64_t k) {
    return k == n - 1 ? old[k] : 3 * old[k + 1];
}
static void assign_shift(td_array *x, int64_t n) { /* x[2:] = x[:-2] */
    td_array *lo = td_slice(x, 0, 0, n - 2, 1), *hi = td_slice(x, 0, 2, n, 1);
    cr_assert_eq(td_assign(hi, lo), TD_OK, "%s", td_last_error());
    td_release(lo);
    td_release(hi);
}
static double assign_shift_want(const double *old, int64_t n, int64_t k) {
    (void)n;
    return k < 2 ? old[k] : old[k - 2];
}
static void reverse(td_array *x, int64_t n) { /* x[:] = x[::-1] */
    td_array *r = td_slice(x, 0, -1, -n - 1, -1);
    cr_assert_eq(td_assign(x, r), TD_OK, "%s", td_last_error());
    td_release(r);
}
static double reverse_want(const double *old, int64_t n, int64_t k) { return old[n - 1 - k]; }
static void evens_minus_odds(td_array *x, int64_t n) { /* x[:n/2] = x[::2] - x[1::2] */
    td_array *ev = td_slice(x, 0, 0, n, 2), *od = td_slice(x, 0, 1, n, 2);
    td_array *lo = td_slice(x, 0, 0, n / 2, 1);
    cr_assert_eq(td_sub_out(ev, od, lo), TD_OK, "%s", td_last_error());
    td_release(ev);
    td_release(od);
    td_release(lo);
}
static double evens_minus_odds_want(const double *old, int64_t n, int64_t k) {
    return k < n / 2 ? old[2 * k] - old[2 * k + 1] : old[k];
}

Test(aliasing, an_out_overlapping_an_input_shifted_or_reversed_gives_numpys_result,
     .timeout = 120) {
    struct {
        const char *name;
        overlap_fn fn;
        overlap_want want;
    } c[] = {
        {"x[1:] = x[:-1] + x[:-1]", shift_up, shift_up_want},
        {"x[:-1] = x[1:] * 3", shift_down, shift_down_want},
        {"x[2:] = x[:-2]", assign_shift, assign_shift_want},
        {"x[:] = x[::-1]", reverse, reverse_want},
        {"x[:n/2] = x[::2] - x[1::2]", evens_minus_odds, evens_minus_odds_want},
    };
    const int64_t sizes[] = {1000, 2000000};
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 4);
        for (int si = 0; si < 2; si++) {
            int64_t n = sizes[si];
            double *old = malloc(sizeof(double) * (size_t)n);
            cr_assert_not_null(old);
            for (int64_t k = 0; k < n; k++) old[k] = (double)k;
            for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
                td_array *x = td_arange(TD_F64, 0, (double)n, 1, td_cpu(0));
                c[i].fn(x, n);
                nd_ref r = nd_read(x);
                for (int64_t k = 0; k < n; k++) {
                    double want = c[i].want(old, n, k);
                    if (r.f[k] != want)
                        cr_assert(0, "%s engine, n %lld, %s: x[%lld] = %.17g, numpy gives %.17g",
                                  tt_engine_name(engine), (long long)n, c[i].name, (long long)k,
                                  r.f[k], want);
                }
                nd_ref_free(&r);
                td_release(x);
            }
            free(old);
        }
        nd_finish();
    }
}

Test(aliasing, an_out_that_is_the_transpose_of_its_input_gives_numpys_result, .timeout = 120) {
    const int64_t sizes[] = {7, 1100};
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 4);
        for (int si = 0; si < 2; si++) {
            int64_t n = sizes[si];
            nd_ref r;
            tt_rng g = {(uint64_t)n};
            td_array *x = nd_make_random(&r, TD_F32, 2, (int64_t[]){n, n}, &g, ND_GEN_GENERAL);
            td_array *xt = td_transpose(x, NULL);
            td_array *zero = td_zeros(TD_F32, 0, (int64_t[]){0}, td_cpu(0));
            /* x[...] = x.T + 0, then x[...] = x.T (assign): back to the start. */
            cr_assert_eq(td_add_out(xt, zero, x), TD_OK, "%s", td_last_error());
            nd_ref rt = nd_ref_transpose(&r, NULL);
            nd_expect_ref(x, &rt, "x = x.T + 0");
            cr_assert_eq(td_assign(x, xt), TD_OK);
            nd_expect_ref(x, &r, "x = x.T again");
            /* x = x + x.T is symmetric. */
            cr_assert_eq(td_add_out(x, xt, x), TD_OK);
            nd_ref sym = ref_binary(R_ADD, &r, &rt, NULL);
            nd_expect_ref(x, &sym, "x = x + x.T");
            nd_ref_free(&r);
            nd_ref_free(&rt);
            nd_ref_free(&sym);
            td_release(x);
            td_release(xt);
            td_release(zero);
        }
        nd_finish();
    }
}

Test(aliasing, disjoint_slices_of_one_buffer_written_by_consecutive_ops_keep_program_order,
     .timeout = 60) {
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 4);
        enum { N = 1 << 20 };
        td_array *x = td_zeros(TD_I32, 1, (int64_t[]){N}, td_cpu(0));
        td_array *h1 = td_slice(x, 0, 0, N / 2, 1), *h2 = td_slice(x, 0, N / 2, N, 1);
        for (int it = 1; it <= 10; it++) {
            /* h1 += 1; h2 = h1 * it: each reads what the previous wrote. */
            cr_assert_eq(td_add_scalar_out(h1, 1, h1), TD_OK);
            cr_assert_eq(td_mul_scalar_out(h1, it, h2), TD_OK);
        }
        nd_ref r = nd_read(x);
        for (int64_t k = 0; k < N; k++) {
            int64_t want = k < N / 2 ? 10 : 100;
            if (r.i[k] != want)
                cr_assert(0, "%s engine: x[%lld] = %lld, expected %lld", tt_engine_name(engine),
                          (long long)k, (long long)r.i[k], (long long)want);
        }
        nd_ref_free(&r);
        td_release(h1);
        td_release(h2);
        td_release(x);
        nd_finish();
    }
}
