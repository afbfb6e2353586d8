/* Creation ops: td_arange, td_linspace, td_eye and td_astype (between every
 * pair of dtypes, from every layout), against numpy's definitions computed
 * here; and their bad arguments. */
#include <float.h>

#include "ref.h"

/* numpy's arange: ceil((stop - start) / step) values start + i * step. */
static nd_ref ref_arange(int dt, double start, double stop, double step) {
    double len = ceil((stop - start) / step);
    int64_t n = len > 0 ? (int64_t)len : 0;
    nd_ref r = nd_ref_new(dt, 1, &n);
    for (int64_t i = 0; i < n; i++) nd_ref_put_f(&r, i, start + (double)i * step);
    return r;
}

Test(creation, arange_matches_numpy_for_every_dtype_and_direction, .timeout = 60) {
    nd_start(TD_ENGINE_THREADED, 2);
    struct {
        int dt;
        double start, stop, step;
    } c[] = {
        {TD_F64, 0, 1, 0.1},     {TD_F32, -2.5, 2.5, 0.5}, {TD_I32, 0, 10, 3},
        {TD_I64, 10, 0, -3},     {TD_U8, 250, 256, 1},     {TD_F64, 5, 5, 1},
        {TD_F64, 5, 0, 1},       {TD_I32, 0, 5, -1},       {TD_I64, -5, 5, 1},
        {TD_F32, 0, 1500000, 1}, {TD_F64, 1, -1, -0.25},   {TD_U8, 0, 200, 7},
        {TD_I32, -7, 8, 5},      {TD_F64, 0, 3e9, 1e9},    {TD_I64, 0, 1, 1},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char what[512];
        snprintf(what, sizeof what, "td_arange(%s, %g, %g, %g)", nd_dt(c[i].dt), c[i].start,
                 c[i].stop, c[i].step);
        td_array *a = td_arange(c[i].dt, c[i].start, c[i].stop, c[i].step, td_cpu(0));
        cr_assert_not_null(a, "%s: %s", what, td_last_error());
        nd_ref want = ref_arange(c[i].dt, c[i].start, c[i].stop, c[i].step);
        nd_expect_ref(a, &want, what);
        cr_assert(td_is_contiguous(a), "%s: not contiguous", what);
        nd_ref_free(&want);
        td_release(a);
    }
    nd_finish();
}

/* numpy's linspace: num values, the first exactly start and the last exactly
 * stop. */
static nd_ref ref_linspace(int dt, double start, double stop, int64_t num) {
    nd_ref r = nd_ref_new(dt, 1, &num);
    for (int64_t i = 0; i < num; i++) {
        double v = num == 1 ? start : start + (stop - start) * (double)i / (double)(num - 1);
        if (i == num - 1 && num > 1) v = stop;
        nd_ref_put_f(&r, i, v);
    }
    return r;
}

Test(creation, linspace_gives_num_values_from_start_to_stop_inclusive, .timeout = 60) {
    nd_start(TD_ENGINE_THREADED, 2);
    struct {
        int dt;
        double start, stop;
        int64_t num;
    } c[] = {
        {TD_F64, 0, 1, 11},  {TD_F32, -1, 1, 5},       {TD_F64, 2, 2, 4},
        {TD_I32, 0, 10, 11}, {TD_I64, 10, -10, 5},     {TD_U8, 0, 255, 256},
        {TD_F64, 1, 0, 1},   {TD_F64, 0, 1, 0},        {TD_F64, 0.1, 0.7, 3},
        {TD_F32, 0, 1, 2000001}, {TD_F64, -1e6, 1e6, 7}, {TD_F64, 0, 1, 2},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        char what[512];
        snprintf(what, sizeof what, "td_linspace(%s, %g, %g, %lld)", nd_dt(c[i].dt), c[i].start,
                 c[i].stop, (long long)c[i].num);
        td_array *a = td_linspace(c[i].dt, c[i].start, c[i].stop, c[i].num, td_cpu(0));
        cr_assert_not_null(a, "%s: %s", what, td_last_error());
        nd_ref want = ref_linspace(c[i].dt, c[i].start, c[i].stop, c[i].num);
        /* numpy computes start + i * step: the error scales with the ends. */
        double ends = fmax(fabs(c[i].start), fabs(c[i].stop));
        nd_expect_ref_tol(a, &want, 4 * (c[i].dt == TD_F32 ? FLT_EPSILON : DBL_EPSILON) * ends,
                          what);
        if (c[i].num > 1 && nd_is_float(c[i].dt)) {
            nd_ref got = nd_read(a);
            cr_assert_eq(got.f[0], nd_round_float(c[i].dt, c[i].start), "%s: first value",
                         what);
            cr_assert_eq(got.f[c[i].num - 1], nd_round_float(c[i].dt, c[i].stop),
                         "%s: last value %.17g is not stop", what, got.f[c[i].num - 1]);
            nd_ref_free(&got);
        }
        nd_ref_free(&want);
        td_release(a);
    }
    nd_finish();
}

Test(creation, eye_is_the_identity_for_every_dtype_and_size, .timeout = 60) {
    nd_start(TD_ENGINE_THREADED, 2);
    const int64_t sizes[] = {0, 1, 5, 64, 1500};
    ND_FOR_EACH_DTYPE(dt) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            int64_t n = sizes[i];
            if (n == 1500 && dt != TD_F32) continue;
            char what[512];
            snprintf(what, sizeof what, "td_eye(%s, %lld)", nd_dt(dt), (long long)n);
            td_array *a = td_eye(dt, n, td_cpu(0));
            cr_assert_not_null(a, "%s: %s", what, td_last_error());
            nd_ref want = nd_ref_new(dt, 2, (int64_t[]){n, n});
            for (int64_t k = 0; k < n * n; k++) nd_ref_put_i(&want, k, k / n == k % n);
            nd_expect_ref(a, &want, what);
            nd_ref_free(&want);
            td_release(a);
        }
    }
    nd_finish();
}

Test(creation, astype_converts_between_every_pair_of_dtypes_from_every_layout, .timeout = 120) {
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        uint64_t seed = nd_seed("astype", 21);
        tt_rng g = {seed};
        const int64_t shape[3] = {3, 5, 4};
        ND_FOR_EACH_DTYPE(from) {
            ND_FOR_EACH_DTYPE(to) {
                for (int layout = 0; layout < ND_NLAYOUTS; layout++) {
                    /* Values every target holds: [0, 100); negatives too
                     * where the target is signed or the source is u8. */
                    int gen = (to == TD_U8 && from != TD_U8) ? ND_GEN_NONNEG : ND_GEN_GENERAL;
                    nd_ref r;
                    td_array *a = nd_make_input(from, 3, shape, layout, &g, gen, &r);
                    char what[512];
                    snprintf(what, sizeof what, "%s engine: td_astype(%s %s -> %s)",
                             tt_engine_name(engine), nd_dt(from), nd_layout_name(layout),
                             nd_dt(to));
                    td_array *b = td_astype(a, to);
                    nd_ref want = nd_ref_astype(&r, to);
                    nd_expect_ref(b, &want, what);
                    cr_assert(td_array_var(b) != td_array_var(a), "%s: not a copy", what);
                    cr_assert(td_is_contiguous(b), "%s: not contiguous", what);
                    nd_ref_free(&want);
                    nd_ref_free(&r);
                    td_release(a);
                    td_release(b);
                }
            }
        }
        /* Truncation toward zero, by hand. */
        td_array *f = td_from_host((double[]){-2.75, -0.5, 0.5, 2.75, 99.99}, TD_F64, 1,
                                   (int64_t[]){5}, td_cpu(0));
        td_array *i = td_astype(f, TD_I32);
        int32_t back[5];
        cr_assert_eq(td_to_host(i, back, sizeof back), TD_OK);
        cr_assert(back[0] == -2 && back[1] == 0 && back[2] == 0 && back[3] == 2 && back[4] == 99,
                  "astype f64 -> i32 gave %d %d %d %d %d", back[0], back[1], back[2], back[3],
                  back[4]);
        /* A later write to the source does not reach the copy. */
        cr_assert_eq(td_fill(f, 1), TD_OK);
        cr_assert_eq(td_to_host(i, back, sizeof back), TD_OK);
        cr_assert_eq(back[0], -2);
        td_release(f);
        td_release(i);
        nd_finish();
    }
}

Test(creation, bad_arguments_are_refused_with_a_status_and_a_message, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
#define EXPECT(call, st, fn)                                                                  \
    do {                                                                                      \
        td_clear_error();                                                                     \
        nd_expect_null(call, st, fn, #call);                                                  \
    } while (0)
    EXPECT(td_arange(TD_F32, 0, 10, 0, td_cpu(0)), TD_EINVAL, "arange");
    EXPECT(td_arange(7, 0, 10, 1, td_cpu(0)), TD_EDTYPE, "arange");
    EXPECT(td_arange(-1, 0, 10, 1, td_cpu(0)), TD_EDTYPE, "arange");
    EXPECT(td_linspace(TD_F64, 0, 1, -1, td_cpu(0)), TD_EINVAL, "linspace");
    EXPECT(td_linspace(99, 0, 1, 5, td_cpu(0)), TD_EDTYPE, "linspace");
    EXPECT(td_eye(TD_F32, -1, td_cpu(0)), TD_EINVAL, "eye");
    EXPECT(td_eye(TD_DTYPE_COUNT, 3, td_cpu(0)), TD_EDTYPE, "eye");
    if (td_device_count(TD_GPU) == 0) {
        EXPECT(td_arange(TD_F32, 0, 10, 1, td_gpu(0)), TD_EDEVICE, "arange");
        EXPECT(td_linspace(TD_F32, 0, 1, 5, td_gpu(0)), TD_EDEVICE, "linspace");
        EXPECT(td_eye(TD_F32, 3, td_gpu(0)), TD_EDEVICE, "eye");
    }
    EXPECT(td_arange(TD_F32, 0, 10, 1, td_cpu(99)), TD_EDEVICE, "arange");
    EXPECT(td_linspace(TD_F32, 0, 1, 5, td_cpu(99)), TD_EDEVICE, "linspace");
    EXPECT(td_eye(TD_F32, 3, td_cpu(99)), TD_EDEVICE, "eye");
    td_array *a = td_ones(TD_F32, 1, (int64_t[]){3}, td_cpu(0));
    EXPECT(td_astype(a, 5), TD_EDTYPE, "astype");
    EXPECT(td_astype(a, -1), TD_EDTYPE, "astype");
    /* NULL in: NULL out, the last error untouched. */
    char saved[512];
    snprintf(saved, sizeof saved, "%s", td_last_error());
    cr_assert_null(td_astype(NULL, TD_F64));
    cr_assert_eq(td_last_status(), TD_EDTYPE);
    cr_assert_str_eq(td_last_error(), saved);
#undef EXPECT
    td_release(a);
    nd_finish();
}
