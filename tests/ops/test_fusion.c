/* Fusion: an elementwise op waits for its consumer and the two run as one
 * pass (ops/invoke.c, "Fusion").  Every test checks values against a plain
 * double-precision reference, and that fusion did (or did not) happen, from
 * td_fusion_stats_get(): results must be those of running the ops one by one
 * whatever is fused, written or read in between. */
#include <pthread.h>

#include <criterion/criterion.h>

#include "ndarray/nd.h"
#include "engine/internal.h"
#include "ops/internal.h"

enum { N = 65536 }; /* 256 KiB of f32: at the default size threshold */

static td_fusion_stats st0;
static int64_t fused_since(void) { return td_fusion_stats_get().fused - st0.fused; }
static int64_t skipped_since(void) { return td_fusion_stats_get().skipped - st0.skipped; }

static void start(int min_bytes) {
    nd_start(TD_ENGINE_THREADED, 2);
    td__fusion_set(1, (size_t)min_bytes);
    /* An idle worker runs a waiting op after 20 us; on a loaded machine that
     * can come between a test's two pushes, and the test would then check
     * nothing fused.  One test sets it back. */
    td__park_set_idle_ns(UINT64_C(10000000000));
    st0 = td_fusion_stats_get();
}

static td_array *vec(int dt, int64_t n, double (*f)(int64_t)) {
    nd_ref r = nd_ref_new(dt, 1, &n);
    for (int64_t k = 0; k < n; k++) nd_ref_put_f(&r, k, f(k));
    td_array *a = nd_make(&r);
    nd_ref_free(&r);
    return a;
}
static double fa(int64_t k) { return (double)(k % 97) * 0.25 - 7.0; }
static double fb(int64_t k) { return (double)(k % 31) * 0.5 + 1.0; }

/* Each element of got against want(k) within the dtype's tolerance. */
static void expect_vec(td_array *got, double (*want)(int64_t), const char *what) {
    cr_assert_not_null(got, "%s: %s", what, td_last_error());
    nd_ref g = nd_read(got);
    for (int64_t k = 0; k < g.n; k++) {
        double w = want(k), v = g.f[k];
        double tol = nd_tol(g.dtype) * (1 + fabs(w)) * 4;
        cr_assert(fabs(v - w) <= tol, "%s: element %lld is %.9g, want %.9g", what, (long long)k, v, w);
    }
    nd_ref_free(&g);
}

static double w_a2b(int64_t k) { return fa(k) + 2 * fb(k); }
static double w_2b(int64_t k) { return 2 * fb(k); }

Test(fusion, a_plus_2b_is_one_fused_op_with_the_right_values, .timeout = 60) {
    start(256 << 10);
    ND_FOR_EACH_DTYPE(dt) {
        if (!nd_is_float(dt)) continue;
        int64_t before = fused_since();
        td_array *a = vec(dt, N, fa), *b = vec(dt, N, fb);
        td_scope_begin();
        td_array *c = td_keep(td_add(a, td_mul_scalar(b, 2)));
        td_scope_end();
        expect_vec(c, w_a2b, nd_dt(dt));
        cr_assert_eq(fused_since(), before + 1, "%s: td_add(a, td_mul_scalar(b, 2)) was not fused", nd_dt(dt));
        td_release(a);
        td_release(b);
        td_release(c);
    }
    cr_assert_eq(td_wait_all(), TD_OK);
    cr_assert_geq(skipped_since(), 1, "the released temporaries still did their work");
    nd_finish();
}

/* Every outer op, both sides, scalar and array operands, against the
 * reference; the other operand broadcast, transposed or a slice. */
static double ref_op(int code, double x, double y) {
    switch (code) {
    case 0: return x + y;
    case 1: return x - y;
    case 2: return x * y;
    case 3: return x / y;
    case 4: return x > y ? x : y;
    case 5: return x < y ? x : y;
    default: return pow(x, y);
    }
}
static td_array *op_scalar(int code, td_array *x, double y) {
    switch (code) {
    case 0: return td_add_scalar(x, y);
    case 1: return td_sub_scalar(x, y);
    case 2: return td_mul_scalar(x, y);
    case 3: return td_div_scalar(x, y);
    case 4: return td_maximum_scalar(x, y);
    case 5: return td_minimum_scalar(x, y);
    default: return td_pow_scalar(x, y);
    }
}
static td_array *op_arrays(int code, td_array *x, td_array *y) {
    switch (code) {
    case 0: return td_add(x, y);
    case 1: return td_sub(x, y);
    case 2: return td_mul(x, y);
    case 3: return td_div(x, y);
    case 4: return td_maximum(x, y);
    case 5: return td_minimum(x, y);
    default: return td_pow(x, y);
    }
}

Test(fusion, every_op_pair_and_layout_matches_the_reference, .timeout = 120) {
    start(0); /* fuse whatever the size */
    const int64_t R = 48, C = 40;
    const int64_t shape[2] = {R, C};
    uint64_t seed = nd_seed("fusion.every_op_pair", 7);
    tt_rng g = {seed};
    int64_t expected = 0;
    for (int dt = TD_F32; dt <= TD_F64; dt++)
        for (int outer = 0; outer < 7; outer++)
            for (int inner = 0; inner < 7; inner++)
                for (int form = 0; form < 4; form++) {
                    nd_ref rx = nd_ref_new(dt, 2, shape), ry = nd_ref_new(dt, 2, shape), rz = nd_ref_new(dt, 1, &C);
                    for (int64_t k = 0; k < R * C; k++) {
                        nd_ref_put_f(&rx, k, 0.5 + (double)tt_rng_below(&g, 1000) / 500.0);
                        nd_ref_put_f(&ry, k, 0.5 + (double)tt_rng_below(&g, 1000) / 500.0);
                    }
                    for (int64_t k = 0; k < C; k++) nd_ref_put_f(&rz, k, 0.5 + (double)tt_rng_below(&g, 1000) / 500.0);
                    td_array *x = nd_make(&rx), *y = nd_make(&ry), *z = nd_make(&rz);
                    td_scope_begin();
                    /* tmp = inner(x, y) or inner(x, 1.5) or inner(1.5, x) */
                    td_array *tmp;
                    int inner_form = form % 2;
                    if (inner_form == 0) tmp = op_arrays(inner, x, y);
                    else tmp = op_scalar(inner, x, 1.5);
                    /* out = outer(tmp, other) or outer(other, tmp); other: z
                     * broadcast along rows, or y transposed twice (a view) */
                    td_array *other = form < 2 ? z : td_transpose(td_transpose(y, (int[]){1, 0}), (int[]){1, 0});
                    int tmp_left = (outer + inner + form) % 2 == 0;
                    int64_t f0 = fused_since();
                    td_array *out = tmp_left ? op_arrays(outer, tmp, other) : op_arrays(outer, other, tmp);
                    int was_fused = fused_since() == f0 + 1;
                    nd_ref got = nd_read(out);
                    for (int64_t k = 0; k < R * C; k++) {
                        double xv = rx.f[k], yv = inner_form == 0 ? ry.f[k] : 1.5;
                        double t = ref_op(inner, xv, yv);
                        if (dt == TD_F32) t = (double)(float)t;
                        double o = form < 2 ? rz.f[k % C] : ry.f[k];
                        double w = tmp_left ? ref_op(outer, t, o) : ref_op(outer, o, t);
                        double tol = (dt == TD_F32 ? 2e-5 : 1e-12) * (1 + fabs(w));
                        cr_assert(got.f[k] == w || (isnan(w) && isnan(got.f[k])) || fabs(got.f[k] - w) <= tol,
                                  "seed %llu, %s, outer %d inner %d form %d: element %lld is %.9g, want %.9g",
                                  (unsigned long long)seed, nd_dt(dt), outer, inner, form, (long long)k, got.f[k], w);
                    }
                    cr_assert(was_fused, "%s outer %d inner %d form %d was not fused", nd_dt(dt), outer, inner, form);
                    expected++;
                    nd_ref_free(&got);
                    td_scope_end();
                    td_release(x);
                    td_release(y);
                    td_release(z);
                    nd_ref_free(&rx);
                    nd_ref_free(&ry);
                    nd_ref_free(&rz);
                }
    cr_log_info("seed %llu: %lld fused expressions checked", (unsigned long long)seed, (long long)expected);
    cr_assert_eq(td_wait_all(), TD_OK);
    nd_finish();
}

Test(fusion, the_temporary_is_still_there_for_whoever_reads_it, .timeout = 60) {
    start(256 << 10);
    td_array *a = vec(TD_F32, N, fa), *b = vec(TD_F32, N, fb);
    td_array *tmp = td_mul_scalar(b, 2);
    td_array *c = td_add(a, tmp);
    cr_assert_eq(fused_since(), 1);
    expect_vec(c, w_a2b, "c");
    expect_vec(tmp, w_2b, "the fused temporary, read after its consumer");
    cr_assert_eq(skipped_since(), 0, "a temporary the program holds skipped its work");
    td_release(a);
    td_release(b);
    td_release(c);
    td_release(tmp);
    nd_finish();
}

static double seven(int64_t k) { (void)k; return 7.0; }
static double w_a14(int64_t k) { return fa(k) + 14.0; }
static double w_a5(int64_t k) { return fa(k) + 5.0; }

Test(fusion, writing_an_input_after_the_fused_op_changes_neither_result, .timeout = 60) {
    start(256 << 10);
    td_array *a = vec(TD_F32, N, fa), *b = vec(TD_F32, N, fb);
    td_array *tmp = td_mul_scalar(b, 2);
    td_array *c = td_add(a, tmp);
    cr_assert_eq(fused_since(), 1);
    cr_assert_eq(td_fill(b, 7), TD_OK); /* after both: neither may see it */
    expect_vec(c, w_a2b, "c");
    expect_vec(tmp, w_2b, "tmp");
    expect_vec(b, seven, "b");
    td_release(a);
    td_release(b);
    td_release(c);
    td_release(tmp);
    nd_finish();
}

Test(fusion, writing_an_input_between_the_two_ops_prevents_fusion, .timeout = 60) {
    start(256 << 10);
    td_array *a = vec(TD_F32, N, fa), *b = vec(TD_F32, N, fb);
    td_array *tmp = td_mul_scalar(b, 2);
    cr_assert_eq(td_fill(b, 7), TD_OK); /* tmp must hold 2 * the old b */
    td_array *c = td_add(a, tmp);
    cr_assert_eq(fused_since(), 0, "fused although an input was written in between");
    expect_vec(c, w_a2b, "c");
    expect_vec(tmp, w_2b, "tmp");
    /* And the other way round: the new b is what a later op reads. */
    td_array *t2 = td_mul_scalar(b, 2);
    td_array *d = td_add(a, t2);
    expect_vec(d, w_a14, "a + 2 * the new b");
    td_release(t2);
    td_release(a);
    td_release(b);
    td_release(c);
    td_release(d);
    td_release(tmp);
    cr_assert_eq(td_wait_all(), TD_OK);
    nd_finish();
}

Test(fusion, writing_the_temporary_before_its_consumer_prevents_fusion, .timeout = 60) {
    start(256 << 10);
    td_array *a = vec(TD_F32, N, fa), *b = vec(TD_F32, N, fb);
    td_array *tmp = td_mul_scalar(b, 2);
    cr_assert_eq(td_fill(tmp, 5), TD_OK);
    td_array *c = td_add(a, tmp);
    cr_assert_eq(fused_since(), 0);
    expect_vec(c, w_a5, "a + the overwritten temporary");
    td_release(a);
    td_release(b);
    td_release(c);
    td_release(tmp);
    nd_finish();
}

Test(fusion, a_view_of_the_temporary_keeps_its_values, .timeout = 60) {
    start(256 << 10);
    td_array *a = vec(TD_F32, N, fa), *b = vec(TD_F32, N, fb);
    td_array *tmp = td_mul_scalar(b, 2);
    td_array *v = td_reshape(tmp, 2, (int64_t[]){N / 2, 2});
    td_array *c = td_add(a, tmp);
    td_release(tmp); /* the view still shares its storage: not unobservable */
    expect_vec(c, w_a2b, "c");
    td_array *flat = td_reshape(v, 1, (int64_t[]){N});
    expect_vec(flat, w_2b, "a view of the released temporary");
    cr_assert_eq(skipped_since(), 0, "the temporary skipped its work while a view held its storage");
    td_release(a);
    td_release(b);
    td_release(c);
    td_release(v);
    td_release(flat);
    nd_finish();
}

Test(fusion, waits_and_shutdown_run_a_deferred_op, .timeout = 60) {
    start(256 << 10);
    td_array *b = vec(TD_F64, N, fb);
    td_array *t1 = td_mul_scalar(b, 2);
    cr_assert_eq(td_wait_all(), TD_OK);
    const double *p = td_data(t1); /* valid after td_wait_all */
    for (int64_t k = 0; k < N; k++) cr_assert_eq(p[k], 2 * fb(k), "td_wait_all left element %lld unwritten", (long long)k);
    td_array *t2 = td_mul_scalar(b, 2);
    cr_assert_eq(td_array_wait(t2), TD_OK);
    p = td_data(t2);
    for (int64_t k = 0; k < N; k++) cr_assert_eq(p[k], 2 * fb(k), "td_array_wait left element %lld unwritten", (long long)k);
    td_array *t3 = td_mul_scalar(b, 2);
    (void)t3;
    cr_assert_eq(td_shutdown(), TD_OK); /* drains the deferred op; must not hang */
    p = td_data(t3);
    for (int64_t k = 0; k < N; k++) cr_assert_eq(p[k], 2 * fb(k), "td_shutdown left element %lld unwritten", (long long)k);
    td_release(b);
    td_release(t1);
    td_release(t2);
    td_release(t3);
    nd_finish();
}

Test(fusion, a_deferred_op_runs_when_released_or_left_alone, .timeout = 60) {
    start(256 << 10);
    td__park_set_idle_ns(20000);
    td_array *b = vec(TD_F32, N, fb);
    cr_assert_eq(td_wait_all(), TD_OK);
    int64_t live0 = td_array_stats_get().live_storages;
    /* Released at once: once it runs (skipping its work) its storage goes back. */
    td_array *t = td_mul_scalar(b, 2);
    td_release(t);
    double end = tt_now() + 5.0;
    while (td_array_stats_get().live_storages > live0 && tt_now() < end) tt_sleep_ms(1);
    cr_assert_eq(td_array_stats_get().live_storages, live0, "a released temporary's deferred op never ran");
    cr_assert_eq(skipped_since(), 1);
    /* Kept: an idle worker runs it within a short while. */
    td_array *k = td_mul_scalar(b, 2);
    tt_sleep_ms(50);
    cr_assert_eq(td_fusion_stats_get().deferred - st0.deferred, 2);
    expect_vec(k, w_2b, "a deferred op left alone");
    td_release(k);
    td_release(b);
    nd_finish();
}

struct reader {
    td_array *tmp;
    int ok;
};
static void *read_tmp(void *p) {
    struct reader *r = p;
    nd_ref g = nd_read(r->tmp);
    r->ok = 1;
    for (int64_t k = 0; k < g.n; k++) r->ok &= g.f[k] == 2 * fb(k);
    nd_ref_free(&g);
    return NULL;
}

Test(fusion, another_thread_reading_the_temporary_sees_its_values, .timeout = 60) {
    start(256 << 10);
    td_array *a = vec(TD_F32, N, fa), *b = vec(TD_F32, N, fb);
    for (int it = 0; it < 20; it++) {
        td_array *tmp = td_mul_scalar(b, 2);
        struct reader r = {tmp, 0};
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, read_tmp, &r), 0);
        td_array *c = td_add(a, tmp);
        pthread_join(th, NULL);
        cr_assert(r.ok, "iteration %d: the other thread read wrong values of the temporary", it);
        expect_vec(c, w_a2b, "c");
        td_release(c);
        td_release(tmp);
    }
    td_release(a);
    td_release(b);
    nd_finish();
}

Test(fusion, off_small_or_naive_nothing_fuses_and_values_agree, .timeout = 60) {
    for (int mode = 0; mode < 3; mode++) {
        if (mode == 2) {
            nd_start(TD_ENGINE_NAIVE, 1);
            st0 = td_fusion_stats_get();
        } else {
            start(mode == 0 ? 256 << 10 : 1 << 30);
            if (mode == 0) td__fusion_set(0, 0);
        }
        td_array *a = vec(TD_F32, N, fa), *b = vec(TD_F32, N, fb);
        td_scope_begin();
        td_array *c = td_keep(td_add(a, td_mul_scalar(b, 2)));
        td_scope_end();
        expect_vec(c, w_a2b, "c");
        cr_assert_eq(fused_since(), 0, "mode %d fused", mode);
        cr_assert_eq(td_fusion_stats_get().deferred, st0.deferred, "mode %d deferred an op", mode);
        td_release(a);
        td_release(b);
        td_release(c);
        nd_finish();
    }
}

/* The scalar on the left of either op (s - x, s / x, s ** x). */
Test(fusion, scalars_on_the_left_fuse_too, .timeout = 60) {
    start(0);
    td_array *a = vec(TD_F64, 1000, fa), *b = vec(TD_F64, 1000, fb);
    td_array *t = td_scalar_div(3.0, b);           /* 3 / b */
    td_array *m = td_mul(a, t);                   /* fuses 3 / b */
    td_array *c = td_scalar_sub(1.0, m);           /* a fused op's output does not fuse again */
    cr_assert_eq(fused_since(), 1);
    nd_ref g = nd_read(c);
    for (int64_t k = 0; k < 1000; k++) {
        double w = 1.0 - fa(k) * (3.0 / fb(k));
        cr_assert(fabs(g.f[k] - w) <= 1e-12 * (1 + fabs(w)), "element %lld is %.17g, want %.17g", (long long)k, g.f[k], w);
    }
    nd_ref_free(&g);
    td_release(a);
    td_release(b);
    td_release(t);
    td_release(m);
    td_release(c);
    cr_assert_eq(td_wait_all(), TD_OK);
    nd_finish();
}
