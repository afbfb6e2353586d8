/* Host I/O: td_to_host (a read in program order; the size must match),
 * td_to_host_range, td_array_wait and td_print (numpy's str(), elided when
 * large; waits for pending writes).  Blocking calls inside an op are
 * TD_EBUSY. */
#include "nd.h"

/* What td_print writes for a (asserts it returns TD_OK); free() the result. */
static char *print_to_string(td_array *a) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_not_null(f);
    td_status st = td_print(a, f);
    fclose(f);
    cr_assert_eq(st, TD_OK, "td_print: %s (%s)", td_status_name(st), td_last_error());
    cr_assert_not_null(buf);
    return buf;
}

Test(hostio, to_host_copies_any_view_in_c_order, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    uint64_t seed = nd_seed("to_host of views", 11);
    tt_rng g = {seed};
    const int64_t shape[3] = {3, 4, 5};
    ND_FOR_EACH_DTYPE(dt) {
        for (int layout = 0; layout < ND_NLAYOUTS; layout++) {
            nd_ref r;
            td_array *a = nd_make_input(dt, 3, shape, layout, &g, ND_GEN_BIG, &r);
            char what[512];
            snprintf(what, sizeof what, "%s %s", nd_dt(dt), nd_layout_name(layout));
            nd_expect_ref(a, &r, what);
            nd_ref_free(&r);
            td_release(a);
        }
    }
    nd_finish();
}

Test(hostio, to_host_with_the_wrong_size_is_einval_and_writes_nothing, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_array *a = td_full(TD_I32, 2, (int64_t[]){3, 4}, 9, td_cpu(0));
    cr_assert_not_null(a);
    unsigned char buf[64];
    const size_t right = 12 * sizeof(int32_t);
    const size_t wrong[] = {0, right - 1, right + 1, right - 4, right * 2};
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        memset(buf, 0xA5, sizeof buf);
        td_clear_error();
        td_status st = td_to_host(a, buf, wrong[i]);
        char what[512];
        snprintf(what, sizeof what, "td_to_host(nbytes %zu of %zu)", wrong[i], right);
        nd_expect_status(st, TD_EINVAL, "to_host", what);
        for (size_t k = 0; k < sizeof buf; k++)
            cr_assert_eq(buf[k], 0xA5, "%s wrote byte %zu", what, k);
    }
    td_clear_error();
    nd_expect_status(td_to_host(a, NULL, right), TD_EINVAL, "to_host", "td_to_host(dst NULL)");
    td_clear_error();
    cr_assert_neq(td_to_host(NULL, buf, right), TD_OK, "td_to_host(NULL array)");
    cr_assert_neq(td_array_wait(NULL), TD_OK, "td_array_wait(NULL)");
    /* And the array is intact. */
    int32_t back[12];
    cr_assert_eq(td_to_host(a, back, sizeof back), TD_OK);
    for (int k = 0; k < 12; k++) cr_assert_eq(back[k], 9);
    /* An empty array reads with nbytes 0. */
    td_array *e = td_zeros(TD_F64, 2, (int64_t[]){3, 0}, td_cpu(0));
    cr_assert_eq(td_to_host(e, buf, 0), TD_OK, "td_to_host of an empty array: %s",
                 td_last_error());
    td_release(e);
    td_release(a);
    nd_finish();
}

Test(hostio, to_host_range_reads_elements_start_to_start_plus_count_in_c_order, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    uint64_t seed = nd_seed("to_host_range", 5);
    tt_rng g = {seed};
    ND_FOR_EACH_DTYPE(dt) {
        for (int layout = 0; layout < ND_NLAYOUTS; layout++) {
            nd_ref r;
            td_array *a = nd_make_input(dt, 2, (int64_t[]){5, 4}, layout, &g, ND_GEN_BIG, &r);
            const int64_t ranges[][2] = {{0, 20}, {3, 7}, {19, 1}, {5, 0}, {0, 1}, {4, 16}};
            for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
                int64_t start = ranges[i][0], count = ranges[i][1];
                size_t es = nd_size(dt);
                unsigned char buf[20 * 8 + 16];
                memset(buf, 0xA5, sizeof buf);
                td_status st = td_to_host_range(a, start, count, buf, (size_t)count * es);
                cr_assert_eq(st, TD_OK, "%s %s: td_to_host_range(%lld, %lld): %s", nd_dt(dt),
                             nd_layout_name(layout), (long long)start, (long long)count,
                             td_last_error());
                nd_ref got = nd_ref_new(dt, 1, (int64_t[]){count});
                nd_ref_load(&got, buf);
                for (int64_t k = 0; k < count; k++)
                    cr_assert(nd_same(dt, got.f[k], got.i[k], r.f[start + k], r.i[start + k]),
                              "%s %s: td_to_host_range(%lld, %lld) element %lld is %g, expected "
                              "%g",
                              nd_dt(dt), nd_layout_name(layout), (long long)start,
                              (long long)count, (long long)k, got.f[k], r.f[start + k]);
                cr_assert_eq(buf[(size_t)count * es], 0xA5, "td_to_host_range wrote too much");
                nd_ref_free(&got);
            }
            nd_ref_free(&r);
            td_release(a);
        }
    }
    /* Out of range, negative, or nbytes that disagree: TD_EINVAL, nothing written. */
    td_array *a = td_ones(TD_F64, 1, (int64_t[]){10}, td_cpu(0));
    double buf[16];
    const int64_t bad[][3] = {{-1, 2, 16}, {9, 2, 16}, {0, 11, 88}, {0, -1, 0},
                              {2, 3, 16}, {2, 3, 32}, {11, 0, 0}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(buf, 0xA5, sizeof buf);
        td_clear_error();
        char what[512];
        snprintf(what, sizeof what, "td_to_host_range(start %lld, count %lld, nbytes %lld)",
                 (long long)bad[i][0], (long long)bad[i][1], (long long)bad[i][2]);
        td_status st = td_to_host_range(a, bad[i][0], bad[i][1], buf, (size_t)bad[i][2]);
        nd_expect_status(st, TD_EINVAL, "to_host_range", what);
        const unsigned char *p = (const unsigned char *)buf;
        for (size_t k = 0; k < sizeof buf; k++) cr_assert_eq(p[k], 0xA5, "%s wrote", what);
    }
    td_release(a);
    nd_finish();
}

Test(hostio, to_host_and_array_wait_come_after_every_write_pushed_before_them, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        enum { N = 1000 };
        td_array *a = td_zeros(TD_F32, 1, (int64_t[]){N}, td_cpu(0));
        static double vals[N];
        for (int k = 0; k < N; k++) vals[k] = k + 0.5;
        static struct nd_slow slow;
        nd_push_slow_write(&slow, a, 100, vals);
        float back[N];
        cr_assert_eq(td_to_host(a, back, sizeof back), TD_OK);
        cr_assert_eq(atomic_load(&slow.ran), 1, "td_to_host returned before the write ran");
        for (int k = 0; k < N; k++) cr_assert_eq(back[k], (float)(k + 0.5));
        /* The same with td_array_wait, then td_data. */
        for (int k = 0; k < N; k++) vals[k] = -k;
        nd_push_slow_write(&slow, a, 100, vals);
        cr_assert_eq(td_array_wait(a), TD_OK);
        cr_assert_eq(atomic_load(&slow.ran), 1, "td_array_wait returned before the write ran");
        const float *p = td_data(a);
        for (int k = 0; k < N; k++) cr_assert_eq(p[k], (float)-k);
        /* A view waits for a write to its base. */
        td_array *v = td_slice(a, 0, 10, 20, 3);
        for (int k = 0; k < N; k++) vals[k] = 2 * k;
        nd_push_slow_write(&slow, a, 100, vals);
        float vb[4];
        cr_assert_eq(td_to_host(v, vb, sizeof vb), TD_OK);
        for (int k = 0; k < 4; k++) cr_assert_eq(vb[k], (float)(2 * (10 + 3 * k)));
        td_release(v);
        td_release(a);
        nd_finish();
    }
}

struct failing {
    td_status st;
};
static td_status failing_fn(void *arg, const td_exec *ex) {
    struct failing *f = arg;
    td_exec_set_error(ex, "the sky fell on element 3");
    return f->st;
}

Test(hostio, waits_on_an_array_written_by_a_failed_op_return_its_error, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        td_array *a = td_zeros(TD_F64, 1, (int64_t[]){8}, td_cpu(0));
        td_array *b = td_zeros(TD_F64, 1, (int64_t[]){8}, td_cpu(0));
        static struct failing f = {TD_EFAILED};
        td_var *v = td_array_var(a);
        td_op op = tt_op("faulty_writer", failing_fn, &f, NULL, 0, &v, 1);
        tt_push(&op);
        td_array *c = td_add(a, b); /* skipped, marked with the same error */
        double buf[8];
        for (int round = 0; round < 2; round++) {
            td_clear_error();
            nd_expect_status(td_array_wait(a), TD_EFAILED, "faulty_writer", "td_array_wait(a)");
            cr_assert(tt_has(td_last_error(), "the sky fell"), "message: %s", td_last_error());
            td_clear_error();
            nd_expect_status(td_to_host(a, buf, sizeof buf), TD_EFAILED, "faulty_writer",
                             "td_to_host(a)");
            td_clear_error();
            nd_expect_status(td_array_wait(c), TD_EFAILED, "faulty_writer",
                             "td_array_wait(a + b)");
        }
        cr_assert_eq(td_array_wait(b), TD_OK, "an array the op did not write");
        td_array *arr[] = {a, b, c};
        for (int i = 0; i < 3; i++) td_release(arr[i]);
        nd_finish();
    }
}

struct inside {
    td_array *a;
    td_status wait_st, to_host_st, print_st;
};
static td_status inside_fn(void *arg, const td_exec *ex) {
    (void)ex;
    struct inside *s = arg;
    float buf[4];
    s->wait_st = td_array_wait(s->a);
    s->to_host_st = td_to_host(s->a, buf, sizeof buf);
    FILE *f = fopen("/dev/null", "w");
    s->print_st = f ? td_print(s->a, f) : TD_EIO;
    if (f) fclose(f);
    return TD_OK;
}

Test(hostio, blocking_calls_inside_an_op_are_ebusy, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        td_array *a = td_ones(TD_F32, 1, (int64_t[]){4}, td_cpu(0));
        cr_assert_eq(td_array_wait(a), TD_OK);
        static struct inside s;
        s.a = a;
        td_var *v = td_array_var(a);
        td_op op = tt_op("waits_inside", inside_fn, &s, &v, 1, NULL, 0);
        tt_push(&op);
        cr_assert_eq(td_wait_all(), TD_OK);
        cr_assert_eq(s.wait_st, TD_EBUSY, "%s engine: td_array_wait inside an op gave %s",
                     tt_engine_name(engine), td_status_name(s.wait_st));
        cr_assert_eq(s.to_host_st, TD_EBUSY, "%s engine: td_to_host inside an op gave %s",
                     tt_engine_name(engine), td_status_name(s.to_host_st));
        cr_assert_eq(s.print_st, TD_EBUSY, "%s engine: td_print inside an op gave %s",
                     tt_engine_name(engine), td_status_name(s.print_st));
        td_release(a);
        nd_finish();
    }
}

Test(hostio, print_shows_small_arrays_as_numpy_str_does, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    /* np.array([[1., 2.], [3., 4.]]) prints "[[1. 2.]\n [3. 4.]]". */
    td_array *f = td_from_host((double[]){1, 2, 3, 4}, TD_F64, 2, (int64_t[]){2, 2}, td_cpu(0));
    char *s = print_to_string(f);
    cr_assert(tt_has(s, "[[1. 2.]") && tt_has(s, " [3. 4.]]"),
              "td_print of [[1., 2.], [3., 4.]] (f64) wrote \"%s\"", s);
    cr_assert(s[strlen(s) - 1] == '\n', "td_print ends with a newline");
    free(s);
    /* np.array([1, 2, 3], dtype=np.int32) prints "[1 2 3]". */
    td_array *i = td_from_host((int32_t[]){1, 2, 3}, TD_I32, 1, (int64_t[]){3}, td_cpu(0));
    s = print_to_string(i);
    cr_assert(tt_has(s, "[1 2 3]"), "td_print of [1, 2, 3] (i32) wrote \"%s\"", s);
    free(s);
    /* Negative integers are right-aligned: "[-10   2   3]". */
    td_array *n = td_from_host((int64_t[]){-10, 2, 3}, TD_I64, 1, (int64_t[]){3}, td_cpu(0));
    s = print_to_string(n);
    cr_assert(tt_has(s, "[-10   2   3]"), "td_print of [-10, 2, 3] (i64) wrote \"%s\"", s);
    free(s);
    /* u8: "[  0 255   7]". */
    td_array *u = td_from_host((uint8_t[]){0, 255, 7}, TD_U8, 1, (int64_t[]){3}, td_cpu(0));
    s = print_to_string(u);
    cr_assert(tt_has(s, "[  0 255   7]"), "td_print of [0, 255, 7] (u8) wrote \"%s\"", s);
    free(s);
    /* Special values: "[ nan  inf -inf   1.]". */
    td_array *h = td_from_host((double[]){NAN, INFINITY, -INFINITY, 1}, TD_F64, 1, (int64_t[]){4},
                               td_cpu(0));
    s = print_to_string(h);
    cr_assert(tt_has(s, "[ nan  inf -inf   1.]"), "td_print of [nan, inf, -inf, 1] wrote \"%s\"",
              s);
    free(s);
    /* 3-d: blank line between blocks, as numpy. */
    td_array *t = td_zeros(TD_I32, 3, (int64_t[]){2, 1, 2}, td_cpu(0));
    s = print_to_string(t);
    cr_assert(tt_has(s, "[[[0 0]]\n\n [[0 0]]]"), "td_print of zeros (2, 1, 2) wrote \"%s\"", s);
    free(s);
    /* A view prints its own elements. */
    td_array *ft = td_transpose(f, NULL);
    s = print_to_string(ft);
    cr_assert(tt_has(s, "[[1. 3.]") && tt_has(s, " [2. 4.]]"),
              "td_print of the transpose wrote \"%s\"", s);
    free(s);
    /* Empty arrays print "[]". */
    td_array *e = td_zeros(TD_F32, 1, (int64_t[]){0}, td_cpu(0));
    s = print_to_string(e);
    cr_assert(tt_has(s, "[]"), "td_print of an empty array wrote \"%s\"", s);
    free(s);
    td_array *arr[] = {f, i, n, u, h, t, ft, e};
    for (int k = 0; k < 8; k++) td_release(arr[k]);
    nd_finish();
}

Test(hostio, print_elides_large_arrays_with_an_ellipsis, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_array *a = td_arange(TD_I32, 0, 5000, 1, td_cpu(0));
    char *s = print_to_string(a);
    /* numpy: "[   0    1    2 ... 4997 4998 4999]" */
    cr_assert(tt_has(s, "..."), "no ellipsis in td_print of 5000 elements: \"%s\"", s);
    cr_assert(tt_has(s, "[   0    1    2 ...") && tt_has(s, "4997 4998 4999]"),
              "td_print of arange(5000) wrote \"%s\"", s);
    cr_assert_lt(strlen(s), (size_t)200, "td_print of arange(5000) is %zu bytes", strlen(s));
    free(s);
    td_array *m = td_zeros(TD_F64, 2, (int64_t[]){300, 400}, td_cpu(0));
    s = print_to_string(m);
    cr_assert(tt_has(s, "..."), "no ellipsis in td_print of (300, 400)");
    int lines = 0;
    for (const char *p = s; *p; p++) lines += *p == '\n';
    cr_assert_leq(lines, 10, "td_print of (300, 400) wrote %d lines", lines);
    free(s);
    /* 1000 elements is numpy's threshold: printed whole. */
    td_array *k = td_arange(TD_I64, 0, 1000, 1, td_cpu(0));
    s = print_to_string(k);
    cr_assert_not(tt_has(s, "..."), "td_print elided 1000 elements (numpy prints them all)");
    cr_assert(tt_has(s, "[  0   1   2") && tt_has(s, "500") && tt_has(s, "998 999]"),
              "td_print of arange(1000)");
    free(s);
    td_release(a);
    td_release(m);
    td_release(k);
    nd_finish();
}

Test(hostio, print_waits_for_pending_writes_and_refuses_null, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        td_array *a = td_zeros(TD_I32, 1, (int64_t[]){3}, td_cpu(0));
        static const double vals[3] = {7, 8, 9};
        static struct nd_slow slow;
        nd_push_slow_write(&slow, a, 100, vals);
        char *s = print_to_string(a);
        cr_assert(tt_has(s, "[7 8 9]"), "%s engine: td_print did not wait for the write: \"%s\"",
                  tt_engine_name(engine), s);
        free(s);
        td_clear_error();
        nd_expect_status(td_print(NULL, stdout), TD_EINVAL, NULL, "td_print(NULL, stdout)");
        td_clear_error();
        nd_expect_status(td_print(a, NULL), TD_EINVAL, NULL, "td_print(a, NULL)");
        td_release(a);
        nd_finish();
    }
}

/* The finer points of numpy's str(), where a reader would notice. */
Test(hostio, print_follows_numpy_str_in_the_finer_points, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    /* Fractions are padded on the right: str(np.array([0.5, 1.25], np.float32)). */
    td_array *h = td_from_host((float[]){0.5f, 1.25f}, TD_F32, 1, (int64_t[]){2}, td_cpu(0));
    char *s = print_to_string(h);
    cr_assert(tt_has(s, "[0.5  1.25]"), "numpy prints \"[0.5  1.25]\"; td_print wrote \"%s\"", s);
    free(s);
    /* A 0-d array prints like a Python float: str(np.array(5.0)) is "5.0". */
    td_array *z = td_full(TD_F64, 0, (int64_t[]){0}, 5, td_cpu(0));
    s = print_to_string(z);
    cr_assert_str_eq(s, "5.0\n", "numpy prints \"5.0\"; td_print wrote \"%s\"", s);
    free(s);
    /* Values 1e8 and over switch to scientific notation: "[1.e+10 1.e+00]". */
    td_array *e = td_from_host((double[]){1e10, 1}, TD_F64, 1, (int64_t[]){2}, td_cpu(0));
    s = print_to_string(e);
    cr_assert(tt_has(s, "[1.e+10 1.e+00]"), "numpy prints \"[1.e+10 1.e+00]\"; td_print wrote "
                                            "\"%s\"",
              s);
    free(s);
    /* Lines wrap at 75 characters. */
    td_array *k = td_arange(TD_I64, 0, 1000, 1, td_cpu(0));
    s = print_to_string(k);
    size_t longest = 0, cur = 0;
    for (const char *p = s; *p; p++) {
        cur = *p == '\n' ? 0 : cur + 1;
        if (cur > longest) longest = cur;
    }
    cr_assert_leq(longest, (size_t)75, "numpy wraps lines at 75 characters; td_print wrote a line "
                                       "of %zu",
                  longest);
    free(s);
    /* str() elides rows with " ..." (repr's separator adds the comma). */
    td_array *m = td_zeros(TD_F64, 2, (int64_t[]){300, 400}, td_cpu(0));
    s = print_to_string(m);
    cr_assert(tt_has(s, "\n ...\n"), "numpy's str() elides rows with \" ...\"; td_print wrote "
                                      "\"%s\"",
              s);
    free(s);
    td_array *arr[] = {h, z, e, k, m};
    for (int i = 0; i < 5; i++) td_release(arr[i]);
    nd_finish();
}
