/* Creating arrays: td_empty, td_zeros, td_ones, td_full, td_from_host; the
 * accessors; the dtype helpers; and every way these calls can be misused. */
#include "nd.h"

/* Shapes every creation test goes through: 0-d, 1-d, 3-d, 0-size, 8-d. */
static int create_shapes(const int64_t **shapes, const int **ndims) {
    static const int64_t s[][TD_MAX_DIMS] = {
        {0}, {5}, {2, 3, 4}, {3, 0, 2}, {2, 1, 2, 1, 2, 1, 2, 3}, {1}, {1, 7},
    };
    static const int n[] = {0, 1, 3, 3, 8, 1, 2};
    *shapes = &s[0][0];
    *ndims = n;
    return (int)(sizeof n / sizeof n[0]);
}

/* Checks dtype, shape, C-order strides, size, device and contiguity. */
static void expect_geometry(td_array *a, int dtype, int ndim, const int64_t *shape,
                            const char *what) {
    char s1[128], s2[128];
    cr_assert_not_null(a, "%s: NULL (%s)", what, td_last_error());
    cr_assert_eq(td_dtype(a), dtype, "%s: dtype %s", what, nd_dt(td_dtype(a)));
    cr_assert_eq(td_ndim(a), ndim, "%s: ndim %d, expected %d", what, td_ndim(a), ndim);
    int same = 1;
    for (int d = 0; d < ndim; d++) same = same && td_shape(a)[d] == shape[d];
    cr_assert(same, "%s: shape %s, expected %s", what,
              nd_shape_str(s1, sizeof s1, td_ndim(a), td_shape(a)),
              nd_shape_str(s2, sizeof s2, ndim, shape));
    cr_assert_eq(td_numel(a), nd_numel(ndim, shape), "%s: numel %lld", what,
                 (long long)td_numel(a));
    int64_t st[TD_MAX_DIMS];
    nd_c_strides(ndim, shape, st);
    /* numpy's strides; a size-1 or size-0 axis's stride never matters. */
    if (nd_numel(ndim, shape) > 0)
        for (int d = 0; d < ndim; d++)
            if (shape[d] > 1)
                cr_assert_eq(td_strides(a)[d], st[d], "%s: stride %d is %lld, expected %lld",
                             what, d, (long long)td_strides(a)[d], (long long)st[d]);
    cr_assert(td_is_contiguous(a), "%s: a new array is not contiguous", what);
    td_device dev = td_array_device(a);
    cr_assert(dev.kind == TD_CPU && dev.id == 0, "%s: device %d:%d", what, dev.kind, dev.id);
}

/* What each creation function fills with, per dtype. */
static double full_value(int dt) {
    switch (dt) {
    case TD_F32: return -2.5;
    case TD_F64: return 0.1;
    case TD_I32: return -7;
    case TD_I64: return 9007199254740992.0; /* 2^53 */
    default: return 200;
    }
}

Test(create, zeros_ones_full_give_the_shape_dtype_strides_and_values_asked_for, .timeout = 60) {
    nd_start(TD_ENGINE_THREADED, 2);
    const int64_t *shapes;
    const int *ndims;
    int ns = create_shapes(&shapes, &ndims);
    ND_FOR_EACH_DTYPE(dt) {
        for (int si = 0; si < ns; si++) {
            const int64_t *shape = shapes + si * TD_MAX_DIMS;
            int nd = ndims[si];
            char what[512], sh[96];
            nd_shape_str(sh, sizeof sh, nd, shape);
            for (int kind = 0; kind < 3; kind++) {
                td_array *a;
                double v;
                const char *name;
                if (kind == 0) {
                    a = td_zeros(dt, nd, shape, td_cpu(0));
                    v = 0;
                    name = "zeros";
                } else if (kind == 1) {
                    a = td_ones(dt, nd, shape, td_cpu(0));
                    v = 1;
                    name = "ones";
                } else {
                    v = full_value(dt);
                    a = td_full(dt, nd, shape, v, td_cpu(0));
                    name = "full";
                }
                snprintf(what, sizeof what, "td_%s(%s, %s)", name, nd_dt(dt), sh);
                expect_geometry(a, dt, nd, shape, what);
                nd_ref want = nd_ref_new(dt, nd, shape);
                for (int64_t k = 0; k < want.n; k++) nd_ref_put_f(&want, k, v);
                nd_expect_ref(a, &want, what);
                nd_ref_free(&want);
                td_release(a);
            }
        }
    }
    nd_finish();
}

Test(create, empty_has_the_geometry_asked_for_and_can_be_read_and_written, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    const int64_t *shapes;
    const int *ndims;
    int ns = create_shapes(&shapes, &ndims);
    ND_FOR_EACH_DTYPE(dt) {
        for (int si = 0; si < ns; si++) {
            const int64_t *shape = shapes + si * TD_MAX_DIMS;
            char what[512];
            snprintf(what, sizeof what, "td_empty(%s, shape #%d)", nd_dt(dt), si);
            td_array *a = td_empty(dt, ndims[si], shape, td_cpu(0));
            expect_geometry(a, dt, ndims[si], shape, what);
            /* Whatever it holds, it can be read; after a write it holds that. */
            nd_ref junk = nd_read(a);
            nd_ref_free(&junk);
            cr_assert_eq(td_fill(a, 3), TD_OK, "%s: td_fill: %s", what, td_last_error());
            nd_ref want = nd_ref_new(dt, ndims[si], shape);
            for (int64_t k = 0; k < want.n; k++) nd_ref_put_i(&want, k, 3);
            nd_expect_ref(a, &want, what);
            nd_ref_free(&want);
            td_release(a);
        }
    }
    nd_finish();
}

Test(create, from_host_round_trips_every_dtype_exactly, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    const int64_t shape[2] = {2, 3};
    float f32[6] = {1.5f, -0.0f, INFINITY, -INFINITY, NAN, 3.0e38f};
    double f64[6] = {0.1, -1e-300, INFINITY, 1e300, NAN, -0.0};
    int32_t i32[6] = {INT32_MIN, INT32_MAX, 0, -1, 1, 123456789};
    int64_t i64[6] = {INT64_MIN, INT64_MAX, ((int64_t)1 << 53) + 1, -(((int64_t)1 << 62) + 3), 0,
                      -1};
    uint8_t u8[6] = {0, 255, 1, 128, 127, 42};
    const void *bufs[5] = {f32, f64, i32, i64, u8};
    ND_FOR_EACH_DTYPE(dt) {
        td_array *a = td_from_host(bufs[dt], dt, 2, shape, td_cpu(0));
        expect_geometry(a, dt, 2, shape, "td_from_host");
        unsigned char back[64];
        memset(back, 0xA5, sizeof back);
        size_t nb = nd_size(dt) * 6;
        cr_assert_eq(td_to_host(a, back, nb), TD_OK, "%s: td_to_host: %s", nd_dt(dt),
                     td_last_error());
        /* Bit for bit, NaN and -0.0 included. */
        cr_assert(memcmp(back, bufs[dt], nb) == 0, "%s: values changed on the round trip",
                  nd_dt(dt));
        cr_assert_eq(back[nb], 0xA5, "%s: td_to_host wrote past nbytes", nd_dt(dt));
        td_release(a);
    }
    nd_finish();
}

Test(create, from_host_copies_so_later_changes_to_the_buffer_do_not_show, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        enum { N = 100000 };
        double *buf = malloc(sizeof(double) * N);
        cr_assert_not_null(buf);
        for (int k = 0; k < N; k++) buf[k] = k * 0.5;
        td_array *a = td_from_host(buf, TD_F64, 1, (int64_t[]){N}, td_cpu(0));
        cr_assert_not_null(a, "td_from_host: %s", td_last_error());
        /* Change and free the buffer at once: the array holds its own copy. */
        for (int k = 0; k < N; k++) buf[k] = -1;
        free(buf);
        td_array *b = td_mul_scalar(a, 2); /* reads it later, on a worker */
        cr_assert_not_null(b);
        nd_ref ra = nd_read(a), rb = nd_read(b);
        for (int k = 0; k < N; k++) {
            cr_assert_eq(ra.f[k], k * 0.5, "%s engine: element %d of the copy changed",
                         tt_engine_name(engine), k);
            cr_assert_eq(rb.f[k], (double)k, "%s engine: element %d of a*2",
                         tt_engine_name(engine), k);
        }
        nd_ref_free(&ra);
        nd_ref_free(&rb);
        td_release(a);
        td_release(b);
        nd_finish();
    }
}

Test(create, dtype_helpers_give_sizes_numpy_names_and_numpy_promotion, .timeout = 10) {
    static const size_t sizes[5] = {4, 8, 4, 8, 1};
    static const char *const names[5] = {"float32", "float64", "int32", "int64", "uint8"};
    ND_FOR_EACH_DTYPE(dt) {
        cr_assert_eq(td_dtype_size(dt), sizes[dt], "td_dtype_size(%s)", nd_dt(dt));
        cr_assert_str_eq(td_dtype_name(dt), names[dt]);
    }
    cr_assert_eq(td_dtype_size(-1), (size_t)0);
    cr_assert_eq(td_dtype_size(TD_DTYPE_COUNT), (size_t)0);
    cr_assert_not_null(td_dtype_name(99), "td_dtype_name of an unknown dtype must not be NULL");
    /* numpy's table, written out (rows a, columns b: f32 f64 i32 i64 u8). */
    static const int table[5][5] = {
        /* f32 */ {TD_F32, TD_F64, TD_F64, TD_F64, TD_F32},
        /* f64 */ {TD_F64, TD_F64, TD_F64, TD_F64, TD_F64},
        /* i32 */ {TD_F64, TD_F64, TD_I32, TD_I64, TD_I32},
        /* i64 */ {TD_F64, TD_F64, TD_I64, TD_I64, TD_I64},
        /* u8  */ {TD_F32, TD_F64, TD_I32, TD_I64, TD_U8},
    };
    ND_FOR_EACH_DTYPE(a) {
        ND_FOR_EACH_DTYPE(b) {
            cr_assert_eq(td_promote_types(a, b), table[a][b], "td_promote_types(%s, %s) = %s",
                         nd_dt(a), nd_dt(b), nd_dt(td_promote_types(a, b)));
        }
    }
    cr_assert_eq(td_promote_types(TD_F32, 7), -1);
    cr_assert_eq(td_promote_types(-1, TD_F32), -1);
    cr_assert_not(td_is_running(), "the dtype helpers started the runtime");
    td_array_stats st = td_array_stats_get();
    cr_assert(st.live_arrays == 0 && st.live_storages == 0 && st.storage_bytes == 0);
}

Test(create, accessors_of_null_give_zero_or_null_and_never_start_the_runtime, .timeout = 10) {
    cr_assert_eq(td_ndim(NULL), 0);
    cr_assert_null(td_shape(NULL));
    cr_assert_eq(td_dtype(NULL), 0);
    cr_assert_eq(td_numel(NULL), 0);
    cr_assert_null(td_strides(NULL));
    cr_assert_null(td_data(NULL));
    cr_assert_eq(td_is_contiguous(NULL), 0);
    cr_assert_null(td_retain(NULL));
    cr_assert_null(td_keep(NULL));
    td_release(NULL);
    td_scope_begin();
    cr_assert_null(td_keep(NULL));
    td_scope_end();
    cr_assert_not(td_is_running(), "accessors or scopes started the runtime");
    td_array_stats st = td_array_stats_get();
    cr_assert(st.live_arrays == 0 && st.live_storages == 0 && st.storage_bytes == 0);
}

Test(create, the_first_array_starts_the_runtime_and_td_init_is_optional, .timeout = 30) {
    cr_assert_not(td_is_running());
    td_array *a = td_ones(TD_F32, 1, (int64_t[]){3}, td_cpu(0));
    cr_assert_not_null(a, "td_ones without td_init: %s", td_last_error());
    cr_assert(td_is_running(), "creating an array did not start the runtime");
    nd_ref r = nd_read(a);
    for (int k = 0; k < 3; k++) cr_assert_eq(r.f[k], 1.0);
    nd_ref_free(&r);
    td_release(a);
    nd_finish();
}

/* Every creation function with one bad argument; fn is the name the message
 * must carry. */
typedef td_array *(*create_fn)(int dtype, int ndim, const int64_t *shape, td_device dev);
static td_array *call_create(int which, int dtype, int ndim, const int64_t *shape, td_device dev) {
    static const double host[64] = {0};
    switch (which) {
    case 0: return td_empty(dtype, ndim, shape, dev);
    case 1: return td_zeros(dtype, ndim, shape, dev);
    case 2: return td_ones(dtype, ndim, shape, dev);
    case 3: return td_full(dtype, ndim, shape, 4.0, dev);
    default: return td_from_host(host, dtype, ndim, shape, dev);
    }
}
static const char *create_name(int which) {
    static const char *const n[] = {"empty", "zeros", "ones", "full", "from_host"};
    return n[which];
}

Test(create, a_bad_dtype_is_edtype_and_names_the_function, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    const int bad[] = {-1, TD_DTYPE_COUNT, 99, 1 << 20};
    for (int w = 0; w < 5; w++) {
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            char what[512];
            snprintf(what, sizeof what, "td_%s(dtype %d)", create_name(w), bad[i]);
            td_clear_error();
            td_array *a = call_create(w, bad[i], 1, (int64_t[]){4}, td_cpu(0));
            nd_expect_null(a, TD_EDTYPE, create_name(w), what);
        }
    }
    /* The process carries on. */
    td_array *ok = td_zeros(TD_F32, 1, (int64_t[]){4}, td_cpu(0));
    cr_assert_not_null(ok);
    td_release(ok);
    nd_finish();
}

Test(create, bad_ndim_or_dims_are_refused_with_a_message, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    const int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    for (int w = 0; w < 5; w++) {
        char what[512];
        const char *fn = create_name(w);
        snprintf(what, sizeof what, "td_%s(ndim -1)", fn);
        td_clear_error();
        nd_expect_null(call_create(w, TD_F32, -1, nine, td_cpu(0)), TD_EINVAL, fn, what);

        snprintf(what, sizeof what, "td_%s(ndim 9)", fn);
        td_clear_error();
        nd_expect_null2(call_create(w, TD_F32, 9, nine, td_cpu(0)), TD_EINVAL, TD_ESHAPE, fn,
                        what);

        snprintf(what, sizeof what, "td_%s(shape (2, -3))", fn);
        td_clear_error();
        nd_expect_null2(call_create(w, TD_F32, 2, (int64_t[]){2, -3}, td_cpu(0)), TD_EINVAL,
                        TD_ESHAPE, fn, what);

        snprintf(what, sizeof what, "td_%s(ndim 2, shape NULL)", fn);
        td_clear_error();
        nd_expect_null(call_create(w, TD_F32, 2, NULL, td_cpu(0)), TD_EINVAL, fn, what);
    }
    td_clear_error();
    nd_expect_null(td_from_host(NULL, TD_F32, 1, (int64_t[]){3}, td_cpu(0)), TD_EINVAL,
                   "from_host", "td_from_host(NULL data)");
    /* Eight dims is fine. */
    td_array *a = td_zeros(TD_U8, 8, nine, td_cpu(0));
    cr_assert_not_null(a, "td_zeros with 8 dims: %s", td_last_error());
    td_release(a);
    nd_finish();
}

Test(create, an_absent_device_is_edevice_and_the_process_carries_on, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    const td_device absent[] = {td_gpu(0), td_gpu(7), td_cpu(td_device_count(TD_CPU)),
                                td_cpu(-1), {.kind = 5, .id = 0}};
    if (td_device_count(TD_GPU) > 0) cr_log_info("a GPU is present: td_gpu(0) is not absent");
    for (size_t i = td_device_count(TD_GPU) > 0 ? 2 : 0; i < sizeof absent / sizeof absent[0];
         i++) {
        for (int w = 0; w < 5; w++) {
            char what[512];
            snprintf(what, sizeof what, "td_%s on device %d:%d", create_name(w), absent[i].kind,
                     absent[i].id);
            td_clear_error();
            nd_expect_null(call_create(w, TD_F32, 1, (int64_t[]){4}, absent[i]), TD_EDEVICE,
                           create_name(w), what);
        }
    }
    td_pool_stats ps;
    td_device nodev = td_cpu(td_device_count(TD_CPU));
    td_clear_error();
    nd_expect_status(td_pool_stats_get(nodev, &ps), TD_EDEVICE, NULL, "td_pool_stats_get(absent)");
    td_clear_error();
    nd_expect_status(td_pool_trim(nodev), TD_EDEVICE, NULL, "td_pool_trim(absent)");
    if (td_device_count(TD_GPU) == 0) {
        td_clear_error();
        nd_expect_status(td_pool_stats_get(td_gpu(0), &ps), TD_EDEVICE, NULL,
                         "td_pool_stats_get(gpu)");
        td_clear_error();
        nd_expect_status(td_pool_trim(td_gpu(0)), TD_EDEVICE, NULL, "td_pool_trim(gpu)");
    }
    td_array *a = td_ones(TD_F32, 1, (int64_t[]){4}, td_cpu(0));
    cr_assert_not_null(a);
    td_release(a);
    nd_finish();
}
