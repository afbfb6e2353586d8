/* Bad input to the ops: NULL inputs give NULL and leave the last error as it
 * was (one check at the end of an expression finds the first failure);
 * shapes that do not broadcast are TD_ESHAPE with a message naming the op
 * and both shapes; an integer power with a negative exponent fails while
 * running (TD_EFAILED with a message at the wait) and the process carries
 * on; nothing leaks in any case. */
#include "ref.h"

/* Makes a failure with a known status and message, and returns a copy of
 * the message. */
static void known_failure(char *saved, size_t size) {
    td_array *a = td_zeros(TD_F32, 1, (int64_t[]){2}, td_cpu(0));
    td_array *b = td_zeros(TD_F32, 1, (int64_t[]){3}, td_cpu(0));
    td_clear_error();
    td_array *c = td_sub(a, b);
    cr_assert_null(c);
    cr_assert_eq(td_last_status(), TD_ESHAPE);
    snprintf(saved, size, "%s", td_last_error());
    cr_assert(saved[0] != '\0');
    td_release(a);
    td_release(b);
}

static void expect_unchanged(td_array *r, const char *saved, const char *what) {
    cr_assert_null(r, "%s: not NULL", what);
    cr_assert_eq(td_last_status(), TD_ESHAPE, "%s: td_last_status() became %s", what,
                 td_status_name(td_last_status()));
    cr_assert_str_eq(td_last_error(), saved, "%s changed td_last_error()", what);
}

Test(errors, null_inputs_give_null_and_leave_the_last_error_as_it_was, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    char saved[512];
    known_failure(saved, sizeof saved);
    td_array *a = td_ones(TD_F32, 1, (int64_t[]){3}, td_cpu(0));
    for (int op = 0; op < R_NOPS; op++) {
        char what[512];
        snprintf(what, sizeof what, "td_%s(NULL, a)", ref_op_name(op));
        expect_unchanged(ref_bin(op)(NULL, a), saved, what);
        snprintf(what, sizeof what, "td_%s(a, NULL)", ref_op_name(op));
        expect_unchanged(ref_bin(op)(a, NULL), saved, what);
        snprintf(what, sizeof what, "td_%s(NULL, NULL)", ref_op_name(op));
        expect_unchanged(ref_bin(op)(NULL, NULL), saved, what);
    }
    for (int sop = 0; sop < S_NOPS; sop++) {
        char what[512];
        snprintf(what, sizeof what, "td_%s(NULL)", ref_sop_name(sop));
        expect_unchanged(ref_sop_call(sop, NULL, 2), saved, what);
    }
    expect_unchanged(td_astype(NULL, TD_F64), saved, "td_astype(NULL)");
    expect_unchanged(td_contiguous(NULL), saved, "td_contiguous(NULL)");
    expect_unchanged(td_reshape(NULL, 1, (int64_t[]){3}), saved, "td_reshape(NULL)");
    td_release(a);
    nd_finish();
}

Test(errors, one_check_at_the_end_of_an_expression_finds_the_first_failure, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        td_array *a = td_ones(TD_F32, 2, (int64_t[]){2, 3}, td_cpu(0));
        td_array *b = td_ones(TD_F64, 1, (int64_t[]){4}, td_cpu(0));
        td_scope_begin();
        td_clear_error();
        /* The first failure is the mul: (2, 3) with (4,). */
        td_array *r = td_add(td_sub_scalar(td_mul(a, b), 1), td_div(a, td_maximum(a, b)));
        cr_assert_null(r);
        cr_assert_eq(td_last_status(), TD_ESHAPE);
        cr_assert(tt_has(td_last_error(), "mul"), "the message \"%s\" does not name the first "
                                                  "failing op (mul)",
                  td_last_error());
        td_scope_end();
        td_release(a);
        td_release(b);
        nd_finish();
    }
}

Test(errors, shapes_that_do_not_broadcast_are_eshape_naming_the_op_and_both_shapes,
     .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    const int64_t sa[][3] = {{3, 4}, {2}, {0}, {2, 3, 4}, {5, 3}};
    const int na[] = {2, 1, 1, 3, 2};
    const int64_t sb[][3] = {{4, 3}, {3}, {2}, {3, 2, 4}, {1, 5, 2}};
    const int nb[] = {2, 1, 1, 3, 3};
    for (int i = 0; i < 5; i++) {
        ND_FOR_EACH_DTYPE(dt) {
            td_array *a = td_zeros(dt, na[i], sa[i], td_cpu(0));
            td_array *b = td_zeros(TD_F32, nb[i], sb[i], td_cpu(0));
            for (int op = 0; op < R_NOPS; op++) {
                char what[512], s1[64], s2[64];
                snprintf(what, sizeof what, "td_%s(%s %s, f32 %s)", ref_op_name(op), nd_dt(dt),
                         nd_shape_str(s1, sizeof s1, na[i], sa[i]),
                         nd_shape_str(s2, sizeof s2, nb[i], sb[i]));
                td_clear_error();
                nd_expect_null(ref_bin(op)(a, b), TD_ESHAPE, ref_op_name(op), what);
                cr_assert(nd_msg_has_shape(td_last_error(), na[i], sa[i]) &&
                              nd_msg_has_shape(td_last_error(), nb[i], sb[i]),
                          "%s: the message \"%s\" does not give both shapes", what,
                          td_last_error());
            }
            td_release(a);
            td_release(b);
        }
    }
    /* And the process carries on. */
    td_array *x = td_ones(TD_F32, 1, (int64_t[]){3}, td_cpu(0));
    td_array *y = td_add(x, x);
    cr_assert_not_null(y);
    td_release(x);
    td_release(y);
    nd_finish();
}

/* Waits on r and expects the failure of a pow op. */
static void expect_pow_failed(td_array *r, const char *what) {
    cr_assert_not_null(r, "%s: %s", what, td_last_error());
    td_clear_error();
    td_status st = td_array_wait(r);
    cr_assert_eq(st, TD_EFAILED, "%s: td_array_wait gave %s (%s)", what, td_status_name(st),
                 td_last_error());
    cr_assert_eq(td_last_status(), TD_EFAILED);
    cr_assert(tt_has(td_last_error(), "pow"), "%s: the message \"%s\" does not name pow", what,
              td_last_error());
}

Test(errors, integer_pow_with_a_negative_exponent_fails_while_running_and_the_process_carries_on,
     .timeout = 60) {
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        const int pairs[][2] = {{TD_I32, TD_I32}, {TD_I64, TD_I64}, {TD_U8, TD_I32},
                                {TD_I32, TD_I64}, {TD_U8, TD_I64}};
        for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
            int da = pairs[p][0], db = pairs[p][1];
            nd_ref ra = nd_ref_new(da, 1, (int64_t[]){4}), rb = nd_ref_new(db, 1, (int64_t[]){4});
            for (int k = 0; k < 4; k++) {
                nd_ref_put_i(&ra, k, k + 2);
                nd_ref_put_i(&rb, k, k == 2 ? -1 : k);
            }
            td_array *a = nd_make(&ra), *b = nd_make(&rb);
            char what[512];
            snprintf(what, sizeof what, "%s engine: td_pow(%s, %s with -1)",
                     tt_engine_name(engine), nd_dt(da), nd_dt(db));
            td_array *r = td_pow(a, b);
            expect_pow_failed(r, what);
            /* Every wait reports it; reads of the result are skipped. */
            int64_t buf[4];
            cr_assert_eq(td_to_host(r, buf, td_dtype_size(td_dtype(r)) * 4), TD_EFAILED);
            td_array *s = td_add(r, r);
            expect_pow_failed(s, "an op reading the failed result");
            /* Into an out. */
            td_array *out = td_zeros(ref_promote(da, db), 1, (int64_t[]){4}, td_cpu(0));
            cr_assert_eq(td_pow_out(a, b, out), TD_OK, "td_pow_out pushes fine");
            expect_pow_failed(out, "td_pow_out's out");
            cr_assert_eq(td_wait_all(), TD_OK, "every failure was reported by a wait");
            /* The process carries on: the same inputs with a good exponent. */
            td_array *bpos = td_maximum_scalar(b, 0);
            td_array *good = td_pow(a, bpos);
            nd_ref rbg = nd_ref_new(db, 1, (int64_t[]){4});
            for (int k = 0; k < 4; k++) nd_ref_put_i(&rbg, k, rb.i[k] < 0 ? 0 : rb.i[k]);
            nd_ref want = ref_binary(R_POW, &ra, &rbg, NULL);
            nd_expect_ref(good, &want, "pow after the failure");
            nd_ref_free(&want);
            nd_ref_free(&rbg);
            nd_ref_free(&ra);
            nd_ref_free(&rb);
            td_array *arr[] = {a, b, r, s, out, bpos, good};
            for (int i = 0; i < 7; i++) td_release(arr[i]);
        }
        /* s ** a with a negative element in a. */
        td_array *ai = td_from_host((int32_t[]){1, -2, 3}, TD_I32, 1, (int64_t[]){3}, td_cpu(0));
        td_array *r = td_scalar_pow(2, ai);
        expect_pow_failed(r, "td_scalar_pow(2, i32 with -2)");
        td_array *o = td_zeros(TD_I32, 1, (int64_t[]){3}, td_cpu(0));
        cr_assert_eq(td_scalar_pow_out(2, ai, o), TD_OK);
        expect_pow_failed(o, "td_scalar_pow_out(2, i32 with -2)");
        /* a ** -1 for an integer array: refused at once or failing when it runs. */
        td_clear_error();
        td_array *q = td_pow_scalar(ai, -1);
        if (q) {
            expect_pow_failed(q, "td_pow_scalar(i32, -1)");
        } else {
            cr_assert_neq(td_last_status(), TD_OK);
            cr_assert(tt_has(td_last_error(), "pow"), "td_pow_scalar(i32, -1): \"%s\"",
                      td_last_error());
        }
        /* Float pow with negative exponents is fine. */
        td_array *af = td_astype(ai, TD_F64);
        td_array *f = td_pow_scalar(af, -1);
        cr_assert_eq(td_array_wait(f), TD_OK);
        double fb[3];
        cr_assert_eq(td_to_host(f, fb, sizeof fb), TD_OK);
        cr_assert(fb[0] == 1.0 && fb[1] == -0.5 && fabs(fb[2] - 1.0 / 3.0) < 1e-15);
        cr_assert_eq(td_wait_all(), TD_OK);
        td_array *arr[] = {ai, r, o, q, af, f};
        for (int i = 0; i < 6; i++) td_release(arr[i]);
        nd_finish();
    }
}
