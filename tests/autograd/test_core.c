/* The tape and backward: gradients by hand, leaves and grad_req, several
 * heads, keep_graph, saved-array versions, the errors, views, detach, custom
 * functions, and no growth over many recorded evaluations. */
#include "ag.h"

static td_array *x3(double a, double b, double c) { return ag_arr(1, (int64_t[]){3}, (double[]){a, b, c}); }

static void expect3(td_array *g, double a, double b, double c) {
    double v[3];
    ag_read(g, v, 3);
    cr_assert_float_eq(v[0], a, 1e-12, "got %g want %g", v[0], a);
    cr_assert_float_eq(v[1], b, 1e-12, "got %g want %g", v[1], b);
    cr_assert_float_eq(v[2], c, 1e-12, "got %g want %g", v[2], c);
}

Test(autograd, gradients_of_a_small_expression_by_hand, .timeout = 60) {
    ag_start();
    td_scope_begin();
    td_array *x = x3(1, 2, 3), *y = x3(4, 5, 6);
    cr_assert_eq(td_attach_grad(x, TD_GRAD_WRITE), TD_OK);
    cr_assert_eq(td_attach_grad(y, TD_GRAD_WRITE), TD_OK);
    td_record_begin();
    cr_assert(td_is_recording());
    /* z = sum(x * y + x * x): dz/dx = y + 2x, dz/dy = x */
    td_array *z = td_sum(td_add(td_mul(x, y), td_mul(x, x)), TD_ALL_AXES, TD_DROPDIMS);
    td_record_end();
    cr_assert_not(td_is_recording());
    cr_assert_eq(td_backward(z, NULL), TD_OK, "%s", td_last_error());
    expect3(td_grad(x), 6, 9, 12);
    expect3(td_grad(y), 1, 2, 3);
    td_scope_end();
    ag_finish();
}

Test(autograd, grad_req_add_accumulates_and_null_leaves_the_buffer_alone, .timeout = 60) {
    ag_start();
    td_scope_begin();
    td_array *x = x3(1, 2, 3), *y = x3(4, 5, 6);
    cr_assert_eq(td_attach_grad(x, TD_GRAD_ADD), TD_OK);
    cr_assert_eq(td_attach_grad(y, TD_GRAD_WRITE), TD_OK);
    cr_assert_eq(td_fill(td_grad(y), 7.0), TD_OK);
    cr_assert_eq(td_attach_grad(y, TD_GRAD_NULL), TD_OK); /* zeroed again, then left alone */
    cr_assert_eq(td_fill(td_grad(y), 7.0), TD_OK);
    for (int pass = 0; pass < 2; pass++) {
        td_record_begin();
        td_array *z = td_sum(td_mul(x, y), TD_ALL_AXES, TD_DROPDIMS);
        td_record_end();
        cr_assert_eq(td_backward(z, NULL), TD_OK, "%s", td_last_error());
    }
    expect3(td_grad(x), 8, 10, 12);
    expect3(td_grad(y), 7, 7, 7);
    td_scope_end();
    ag_finish();
}

Test(autograd, several_heads_with_their_gradients_and_keep_graph, .timeout = 60) {
    ag_start();
    td_scope_begin();
    td_array *x = x3(1, 2, 3);
    cr_assert_eq(td_attach_grad(x, TD_GRAD_ADD), TD_OK);
    td_record_begin();
    td_array *h[2] = {td_mul(x, x), td_sum(td_mul_scalar(x, 3.0), TD_ALL_AXES, TD_DROPDIMS)};
    td_record_end();
    td_array *hg[2] = {x3(1, 10, 100), NULL};
    /* d/dx: 2x * hg0 + 3 */
    cr_assert_eq(td_backward_ex(2, h, hg, 1), TD_OK, "%s", td_last_error());
    expect3(td_grad(x), 5, 43, 603);
    cr_assert_eq(td_backward_ex(2, h, hg, 0), TD_OK, "%s", td_last_error());
    expect3(td_grad(x), 10, 86, 1206);
    /* Without keep_graph, a third backward is an error. */
    cr_assert_eq(td_backward_ex(2, h, hg, 0), TD_EINVAL);
    cr_assert(strstr(td_last_error(), "keep_graph"), "%s", td_last_error());
    cr_assert_eq(td_backward(h[0], hg[0]), TD_EINVAL);
    td_scope_end();
    ag_finish();
}

Test(autograd, errors_each_have_a_status_and_a_message, .timeout = 60) {
    ag_start();
    td_scope_begin();
    td_array *x = x3(1, 2, 3), *c = x3(1, 1, 1);
    td_array *ix = td_arange(TD_I32, 0, 3, 1, td_cpu(0));
    cr_assert_eq(td_attach_grad(NULL, TD_GRAD_WRITE), TD_EINVAL);
    cr_assert_eq(td_attach_grad(x, (td_grad_req)7), TD_EINVAL);
    cr_assert_eq(td_attach_grad(ix, TD_GRAD_WRITE), TD_EDTYPE);
    cr_assert(strstr(td_last_error(), "int32"), "%s", td_last_error());
    cr_assert_null(td_grad(x));
    cr_assert_eq(td_last_status(), TD_EINVAL);
    cr_assert_eq(td_backward(NULL, NULL), TD_EINVAL);
    /* Not recorded. */
    td_array *u = td_mul(x, c);
    cr_assert_eq(td_backward(u, NULL), TD_EINVAL);
    cr_assert(strstr(td_last_error(), "not recorded"), "%s", td_last_error());
    cr_assert_eq(td_attach_grad(x, TD_GRAD_WRITE), TD_OK);
    td_record_begin();
    td_array *y = td_mul(x, c), *am = td_argmax(x, 0, TD_DROPDIMS);
    /* Writes that would need a gradient are refused while recording. */
    td_array *o = td_empty(TD_F64, 1, (int64_t[]){3}, td_cpu(0));
    cr_assert_eq(td_add_out(x, c, o), TD_EINVAL);
    cr_assert(strstr(td_last_error(), "not recorded"), "%s", td_last_error());
    cr_assert_eq(td_add_out(c, c, o), TD_OK); /* nothing needs a gradient */
    td_record_end();
    /* A head gradient of another shape. */
    cr_assert_eq(td_backward(y, ag_arr(1, (int64_t[]){2}, (double[]){1, 2})), TD_ESHAPE);
    cr_assert(strstr(td_last_error(), "(2,)") && strstr(td_last_error(), "(3,)"), "%s", td_last_error());
    /* A non-differentiable op. */
    cr_assert_eq(td_backward(am, NULL), TD_EINVAL);
    cr_assert(strstr(td_last_error(), "td_argmax") && strstr(td_last_error(), "not differentiable"), "%s", td_last_error());
    /* No path to a leaf: x's gradient was switched off after recording. */
    cr_assert_eq(td_attach_grad(x, TD_GRAD_NULL), TD_OK);
    cr_assert_eq(td_backward(y, NULL), TD_EINVAL);
    cr_assert(strstr(td_last_error(), "no gradient path"), "%s", td_last_error());
    cr_assert_eq(td_backward_ex(0, &y, NULL, 0), TD_EINVAL);
    /* Unbalanced ends say so and change nothing. */
    td_record_end();
    cr_assert_eq(td_last_status(), TD_EINVAL);
    td_pause_end();
    cr_assert_eq(td_last_status(), TD_EINVAL);
    cr_assert_not(td_is_recording());
    td_set_training(1);
    cr_assert(td_is_training());
    td_set_training(0);
    cr_assert_not(td_is_training());
    td_scope_end();
    ag_finish();
}

Test(autograd, a_write_to_a_saved_array_fails_backward_naming_the_op, .timeout = 60) {
    ag_start();
    td_scope_begin();
    td_array *x = x3(1, 2, 3), *w = x3(4, 5, 6);
    cr_assert_eq(td_attach_grad(w, TD_GRAD_WRITE), TD_OK);
    td_record_begin();
    td_array *y = td_sum(td_mul(x, w), TD_ALL_AXES, TD_DROPDIMS);     /* mul saves x */
    td_array *e = td_sum(td_exp(w), TD_ALL_AXES, TD_DROPDIMS);        /* exp saves its result */
    td_array *s = td_sum(td_add_scalar(w, 1.0), TD_ALL_AXES, TD_DROPDIMS); /* saves nothing */
    td_record_end();
    cr_assert_eq(td_assign(x, x3(0, 0, 0)), TD_OK); /* allowed */
    cr_assert_eq(td_backward(y, NULL), TD_EINVAL);
    cr_assert(strstr(td_last_error(), "td_mul"), "%s", td_last_error());
    /* Parameters updated after backward: fine; the graph is gone anyway. */
    cr_assert_eq(td_backward(s, NULL), TD_OK, "%s", td_last_error());
    expect3(td_grad(w), 1, 1, 1);
    cr_assert_eq(td_sub_out(w, td_mul_scalar(td_grad(w), 0.5), w), TD_OK);
    /* ... but exp's saved result was w's exp, not w: its storage is its own,
     * so the update does not disturb it. */
    cr_assert_eq(td_backward(e, NULL), TD_OK, "%s", td_last_error());
    expect3(td_grad(w), exp(4), exp(5), exp(6));
    /* A write into a saved result (through a view of its storage). */
    td_record_begin();
    td_array *ew = td_exp(w);
    td_array *e2 = td_sum(ew, TD_ALL_AXES, TD_DROPDIMS);
    td_record_end();
    cr_assert_eq(td_fill(td_detach(ew), 1.0), TD_OK);
    cr_assert_eq(td_backward(e2, NULL), TD_EINVAL);
    cr_assert(strstr(td_last_error(), "td_exp"), "%s", td_last_error());
    td_scope_end();
    ag_finish();
}

Test(autograd, views_split_flip_and_broadcast_pass_gradients_to_their_base, .timeout = 60) {
    ag_start();
    td_scope_begin();
    double v[6] = {1, 2, 3, 4, 5, 6};
    td_array *x = ag_arr(2, (int64_t[]){2, 3}, v);
    cr_assert_eq(td_attach_grad(x, TD_GRAD_WRITE), TD_OK);
    td_record_begin();
    td_array *parts[3];
    cr_assert_eq(td_split(x, 3, 1, parts), TD_OK);
    /* z = sum(part0 * 1) + sum(flip(part2) * [10, 20]^T) + sum(transpose(x)[1] * 100)
     *   + sum(broadcast_to(row 0, (4, 3))) */
    td_array *k = ag_arr(2, (int64_t[]){2, 1}, (double[]){10, 20});
    td_array *t = td_slice(td_transpose(x, NULL), 0, 1, 2, 1);
    td_array *row = td_squeeze(td_slice(x, 0, 0, 1, 1), 0);
    td_array *terms[4] = {
        td_sum(parts[0], TD_ALL_AXES, TD_DROPDIMS),
        td_sum(td_mul(td_flip(parts[2], 0), k), TD_ALL_AXES, TD_DROPDIMS),
        td_sum(td_mul_scalar(t, 100.0), TD_ALL_AXES, TD_DROPDIMS),
        td_sum(td_broadcast_to(row, 2, (int64_t[]){4, 3}), TD_ALL_AXES, TD_DROPDIMS)};
    td_array *z = td_add(td_add(terms[0], terms[1]), td_add(terms[2], terms[3]));
    td_record_end();
    cr_assert_eq(td_backward(z, NULL), TD_OK, "%s", td_last_error());
    double g[6];
    ag_read(td_grad(x), g, 6);
    /* col 0: 1; col 2 flipped: row 0 gets 20, row 1 gets 10; col 1: 100;
     * row 0: +4 */
    double want[6] = {1 + 4, 100 + 4, 20 + 4, 1, 100, 10};
    for (int i = 0; i < 6; i++) cr_assert_float_eq(g[i], want[i], 1e-12, "element %d: %g vs %g", i, g[i], want[i]);
    td_scope_end();
    ag_finish();
}

Test(autograd, detach_and_pause_make_constants, .timeout = 60) {
    ag_start();
    td_scope_begin();
    td_array *x = x3(1, 2, 3);
    cr_assert_eq(td_attach_grad(x, TD_GRAD_WRITE), TD_OK);
    td_record_begin();
    td_pause_begin();
    td_array *p = td_mul_scalar(x, 5.0); /* not recorded */
    td_pause_end();
    td_array *z = td_sum(td_add(td_mul(td_detach(x), x), p), TD_ALL_AXES, TD_DROPDIMS);
    td_record_end();
    cr_assert_eq(td_backward(z, NULL), TD_OK, "%s", td_last_error());
    expect3(td_grad(x), 1, 2, 3);
    cr_assert_null(td_detach(NULL));
    td_scope_end();
    ag_finish();
}

Test(autograd, attach_grad_on_a_result_makes_it_a_leaf, .timeout = 60) {
    ag_start();
    td_scope_begin();
    td_array *x = x3(1, 2, 3);
    cr_assert_eq(td_attach_grad(x, TD_GRAD_WRITE), TD_OK);
    td_record_begin();
    td_array *y = td_mul_scalar(x, 2.0);
    cr_assert_eq(td_attach_grad(y, TD_GRAD_WRITE), TD_OK);
    td_array *z = td_sum(td_mul(y, y), TD_ALL_AXES, TD_DROPDIMS);
    td_record_end();
    cr_assert_eq(td_fill(td_grad(x), 9.0), TD_OK);
    cr_assert_eq(td_backward(z, NULL), TD_OK, "%s", td_last_error());
    expect3(td_grad(y), 4, 8, 12);
    expect3(td_grad(x), 9, 9, 9); /* no path through y any more */
    td_scope_end();
    ag_finish();
}

/* softplus as a custom function: forward log1p(exp(x)), backward g * sigmoid(x). */
static td_status sp_forward(void *ctx, td_array *const *in, td_array **out) {
    (void)ctx;
    out[0] = td_log1p(td_exp(in[0]));
    return out[0] ? TD_OK : td_last_status();
}
static td_status sp_backward(void *ctx, td_array *const *in, td_array *const *out, td_array *const *gout,
                             td_array **gin) {
    (void)ctx, (void)out;
    gin[0] = td_mul(gout[0], td_sigmoid(in[0]));
    return gin[0] ? TD_OK : td_last_status();
}
static const td_custom_fn softplus = {.name = "softplus", .n_in = 1, .n_out = 1, .forward = sp_forward,
                                      .backward = sp_backward};
static td_array *softplus_sum(void *ctx, int n, td_array *const *in) {
    (void)ctx, (void)n;
    td_array *y = NULL;
    if (td_custom_call(&softplus, in, &y) != TD_OK) return NULL;
    return td_mul(y, in[0]); /* a built-in op after it */
}

Test(autograd, custom_functions_record_and_differentiate_like_built_in_ops, .timeout = 120) {
    ag_start();
    td_scope_begin();
    td_array *x = ag_rand(2, (int64_t[]){3, 4}, -2, 2, 1);
    cr_assert_eq(td_gradcheck(softplus_sum, NULL, 1, &x, 1e-6, 1e-8, NULL), TD_OK, "%s", td_last_error());
    /* Outside recording it is just a call. */
    td_array *y = NULL;
    cr_assert_eq(td_custom_call(&softplus, &x, &y), TD_OK);
    cr_assert_not_null(y);
    /* Bad descriptions. */
    td_custom_fn bad = softplus;
    bad.backward = NULL;
    cr_assert_eq(td_custom_call(&bad, &x, &y), TD_EINVAL);
    cr_assert_null(y);
    cr_assert_eq(td_custom_call(NULL, &x, &y), TD_EINVAL);
    td_array *nul = NULL;
    cr_assert_eq(td_custom_call(&softplus, &nul, &y), TD_EINVAL);
    td_scope_end();
    ag_finish();
}

Test(autograd, gradcheck_checks_its_arguments, .timeout = 60) {
    ag_start();
    td_scope_begin();
    td_array *x = ag_rand(1, (int64_t[]){5}, -2, 2, 2);
    cr_assert_eq(td_gradcheck(softplus_sum, NULL, 1, &x, 1e-6, 1e-8, NULL), TD_OK, "%s", td_last_error());
    cr_assert_eq(td_gradcheck(softplus_sum, NULL, 1, &x, -1, 1e-8, NULL), TD_EINVAL);
    cr_assert_eq(td_gradcheck(NULL, NULL, 1, &x, 1e-6, 1e-8, NULL), TD_EINVAL);
    cr_assert_eq(td_gradcheck(softplus_sum, NULL, 0, &x, 1e-6, 1e-8, NULL), TD_EINVAL);
    td_array *ix = td_arange(TD_I64, 0, 3, 1, td_cpu(0));
    cr_assert_eq(td_gradcheck(softplus_sum, NULL, 1, &ix, 1e-6, 1e-8, NULL), TD_EDTYPE);
    td_scope_end();
    ag_finish();
}

static td_status lie_backward(void *ctx, td_array *const *in, td_array *const *out, td_array *const *gout,
                              td_array **gin) {
    (void)ctx, (void)out, (void)in;
    gin[0] = gout[0];
    return TD_OK;
}
static const td_custom_fn liar = {.name = "liar", .n_in = 1, .n_out = 1, .forward = sp_forward,
                                  .backward = lie_backward};
static td_array *liar_fn(void *ctx, int n, td_array *const *in) {
    (void)ctx, (void)n;
    td_array *y = NULL;
    return td_custom_call(&liar, in, &y) == TD_OK ? y : NULL;
}

Test(autograd, gradcheck_fails_a_wrong_gradient_with_the_element, .timeout = 60) {
    ag_start();
    td_scope_begin();
    td_array *x = ag_rand(1, (int64_t[]){5}, -2, 2, 3);
    cr_assert_eq(td_gradcheck(liar_fn, NULL, 1, &x, 1e-6, 1e-8, NULL), TD_EFAILED);
    cr_assert(strstr(td_last_error(), "input 0 element"), "%s", td_last_error());
    td_scope_end();
    ag_finish();
}

/* An evaluation recorded 10,000 times and never differentiated frees its
 * graph with its arrays: nothing grows. */
Test(autograd, recorded_evaluations_free_their_graphs, .timeout = 120) {
    ag_start();
    td_scope_begin();
    td_array *x = ag_rand(2, (int64_t[]){4, 8}, -1, 1, 4), *w = ag_rand(2, (int64_t[]){8, 3}, -1, 1, 5);
    td_array *b = ag_rand(1, (int64_t[]){3}, -1, 1, 6);
    cr_assert_eq(td_attach_grad(w, TD_GRAD_WRITE), TD_OK);
    cr_assert_eq(td_attach_grad(b, TD_GRAD_WRITE), TD_OK);
    td_array_stats base = {0, 0, 0};
    for (int i = 0; i < 10000; i++) {
        td_scope_begin();
        td_record_begin();
        td_array *h = td_relu(td_add(td_matmul(x, w), b));
        td_array *l = td_mean(td_log_softmax(td_slice(h, 1, 0, 3, 1), 1), TD_ALL_AXES, TD_DROPDIMS);
        td_record_end();
        cr_assert_not_null(l, "%s", td_last_error());
        td_scope_end();
        if (i == 99) {
            cr_assert_eq(td_wait_all(), TD_OK);
            base = td_array_stats_get();
        }
    }
    cr_assert_eq(td_wait_all(), TD_OK);
    td_array_stats now = td_array_stats_get();
    cr_assert_leq(now.live_arrays, base.live_arrays, "arrays grew: %lld to %lld", (long long)base.live_arrays,
                  (long long)now.live_arrays);
    cr_assert_leq(now.storage_bytes, base.storage_bytes + 4096, "storage grew: %lld to %lld",
                  (long long)base.storage_bytes, (long long)now.storage_bytes);
    td_scope_end();
    ag_finish();
}
