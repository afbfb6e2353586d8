/* A user-written op: softplus(x) = log(1 + exp(x)) as a custom function
 * (forward and backward written with tide ops), recorded and differentiated
 * like a built-in op, checked against finite differences with the public
 * gradient checker, then used in a small expression.
 *
 * Exit status 0 when the gradient checks out. */
#include <stdio.h>
#include <tide/tide.h>

/* forward: log1p(exp(x)).  Arrays made here belong to the scope tide opens
 * around the call. */
static td_status softplus_forward(void *ctx, td_array *const *in, td_array **out) {
    (void)ctx;
    out[0] = td_log1p(td_exp(in[0]));
    return out[0] ? TD_OK : td_last_status();
}

/* backward: d softplus / dx = sigmoid(x). */
static td_status softplus_backward(void *ctx, td_array *const *in, td_array *const *out, td_array *const *out_grad,
                                   td_array **in_grad) {
    (void)ctx, (void)out;
    in_grad[0] = td_mul(out_grad[0], td_sigmoid(in[0]));
    return in_grad[0] ? TD_OK : td_last_status();
}

static const td_custom_fn softplus = {
    .name = "softplus", .n_in = 1, .n_out = 1, .forward = softplus_forward, .backward = softplus_backward};

/* What the checker differentiates: softplus(x) * x. */
static td_array *f(void *ctx, int n, td_array *const *in) {
    (void)ctx, (void)n;
    td_array *y = NULL;
    if (td_custom_call(&softplus, in, &y) != TD_OK) return NULL;
    return td_mul(y, in[0]);
}

int main(void) {
    td_scope_begin();
    double xs[6] = {-3, -1, -0.25, 0.5, 2, 4};
    td_array *x = td_from_host(xs, TD_F64, 2, (int64_t[]){2, 3}, td_cpu(0));
    printf("checking the gradient of softplus(x) * x against finite differences:\n");
    td_status st = td_gradcheck(f, NULL, 1, &x, 1e-6, 1e-9, stdout);
    if (st == TD_OK) {
        /* The same op in a recorded expression: d/dx sum(softplus(x)) = sigmoid(x). */
        st = td_attach_grad(x, TD_GRAD_WRITE);
        td_array *y = NULL;
        td_record_begin();
        if (st == TD_OK) st = td_custom_call(&softplus, &x, &y);
        td_array *loss = st == TD_OK ? td_sum(y, TD_ALL_AXES, TD_DROPDIMS) : NULL;
        td_record_end();
        if (st == TD_OK) st = loss ? td_backward(loss, NULL) : td_last_status();
        if (st == TD_OK) {
            printf("softplus(x) =\n");
            st = td_print(y, stdout);
        }
        if (st == TD_OK) {
            printf("d sum(softplus(x)) / dx = sigmoid(x) =\n");
            st = td_print(td_grad(x), stdout);
        }
    }
    if (st != TD_OK) printf("failed: %s: %s\n", td_status_name(st), td_last_error());
    td_scope_end();
    td_status down = td_shutdown();
    return st == TD_OK && down == TD_OK ? 0 : 1;
}
