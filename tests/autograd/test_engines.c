/* Backward through the engine: gradients bit-identical on the naive and
 * threaded engines with 1 and 4 workers; independent branches of a backward
 * graph run side by side (seen in a trace); and a logistic regression
 * trained with hand-written SGD. */
#include <cjson/cJSON.h>
#include <unistd.h>

#include "ag.h"

/* ---- engines ---- */
enum { R = 300, C = 200, H = 150 };

typedef struct {
    float *gw, *gb, *gx;
} grads;

static void run_program(int engine, int workers, grads *out) {
    mr_start(engine, workers);
    td_scope_begin();
    td_seed(7);
    td_array *x = td_random_normal(TD_F32, 2, (int64_t[]){R, C}, 0, 1, td_cpu(0));
    td_array *w = td_random_normal(TD_F32, 2, (int64_t[]){C, H}, 0, 0.1, td_cpu(0));
    td_array *b = td_random_uniform(TD_F32, 1, (int64_t[]){H}, -1, 1, td_cpu(0));
    cr_assert_eq(td_attach_grad(x, TD_GRAD_WRITE), TD_OK);
    cr_assert_eq(td_attach_grad(w, TD_GRAD_WRITE), TD_OK);
    cr_assert_eq(td_attach_grad(b, TD_GRAD_WRITE), TD_OK);
    td_record_begin();
    td_array *h = td_tanh(td_add(td_matmul(x, w), b));
    td_array *s = td_mul(td_softmax(h, 1), td_sigmoid(td_slice(x, 1, 0, H, 1)));
    td_array *l = td_add(td_sum(td_logsumexp(s, 0, TD_DROPDIMS), TD_ALL_AXES, TD_DROPDIMS),
                         td_mean(td_square(td_gelu(x)), TD_ALL_AXES, TD_DROPDIMS));
    td_record_end();
    cr_assert_not_null(l, "%s", td_last_error());
    cr_assert_eq(td_backward(l, NULL), TD_OK, "%s", td_last_error());
    out->gx = malloc(sizeof(float) * R * C);
    out->gw = malloc(sizeof(float) * C * H);
    out->gb = malloc(sizeof(float) * H);
    cr_assert_eq(td_to_host(td_grad(x), out->gx, sizeof(float) * R * C), TD_OK);
    cr_assert_eq(td_to_host(td_grad(w), out->gw, sizeof(float) * C * H), TD_OK);
    cr_assert_eq(td_to_host(td_grad(b), out->gb, sizeof(float) * H), TD_OK);
    td_scope_end();
    ag_finish();
}

Test(engines, gradients_are_identical_on_every_engine_and_worker_count, .timeout = 240) {
    grads ref, g;
    run_program(TD_ENGINE_NAIVE, 0, &ref);
    int nonzero = 0;
    for (int i = 0; i < C * H; i++) nonzero += ref.gw[i] != 0;
    cr_assert_gt(nonzero, C * H / 2);
    const int configs[3][2] = {{TD_ENGINE_THREADED, 1}, {TD_ENGINE_THREADED, 4}, {TD_ENGINE_THREADED, 2}};
    for (int k = 0; k < 3; k++) {
        run_program(configs[k][0], configs[k][1], &g);
        cr_assert(!memcmp(ref.gx, g.gx, sizeof(float) * R * C), "dx differs with %d workers", configs[k][1]);
        cr_assert(!memcmp(ref.gw, g.gw, sizeof(float) * C * H), "dw differs with %d workers", configs[k][1]);
        cr_assert(!memcmp(ref.gb, g.gb, sizeof(float) * H), "db differs with %d workers", configs[k][1]);
        free(g.gx), free(g.gw), free(g.gb);
    }
    free(ref.gx), free(ref.gw), free(ref.gb);
}

/* ---- parallel branches in a trace ---- */
static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* A custom function whose backward is one op that takes 50 ms on one
 * thread (no td_parallel_for): two of them in independent branches must run
 * at the same time on two workers.  (Big built-in ops split their loops over
 * every worker, so two of them may well run one after the other.) */
struct slow_args {
    td_array *g, *out;
};
static void slow_free(void *p) {
    struct slow_args *a = p;
    td_release(a->g);
    td_release(a->out);
    free(a);
}
static td_status slow_run(void *p, const td_exec *ex) {
    (void)ex;
    struct slow_args *a = p;
    double t0 = tt_now();
    while (tt_now() - t0 < 0.05) {
    }
    memcpy(td_data(a->out), td_data(a->g), (size_t)td_numel(a->g) * sizeof(float));
    return TD_OK;
}
static td_status slow_forward(void *ctx, td_array *const *in, td_array **out) {
    (void)ctx;
    out[0] = td_mul_scalar(in[0], 1.0);
    return out[0] ? TD_OK : td_last_status();
}
static td_status slow_backward(void *ctx, td_array *const *in, td_array *const *out, td_array *const *og,
                               td_array **ig) {
    (void)ctx;
    (void)in;
    (void)out;
    td_array *g = td_contiguous(og[0]);
    td_array *r = td_empty(TD_F32, td_ndim(g), td_shape(g), td_cpu(0));
    if (!g || !r) return td_last_status();
    struct slow_args *a = malloc(sizeof *a);
    a->g = td_retain(g);
    a->out = td_retain(r);
    td_var *rv[1] = {td_array_var(g)}, *wv[1] = {td_array_var(r)};
    td_op op = {.name = "slow_grad", .device = td_cpu(0), .fn = slow_run, .arg = a, .arg_free = slow_free,
                .reads = rv, .n_reads = 1, .writes = wv, .n_writes = 1};
    td_status st = td_push(&op);
    if (st != TD_OK) {
        slow_free(a);
        return st;
    }
    ig[0] = r;
    return TD_OK;
}
static const td_custom_fn slow_fn = {"slow", 1, 1, slow_forward, slow_backward, NULL};

Test(engines, independent_backward_branches_overlap_in_the_trace, .timeout = 120) {
    mr_start(TD_ENGINE_THREADED, 2);
    if (td_device_workers(td_cpu(0)) < 2) {
        ag_finish();
        cr_skip_test("needs 2 workers; the CPU device has %d", td_device_workers(td_cpu(0)));
    }
    td_scope_begin();
    int64_t shape[1] = {1024};
    td_array *w1 = td_random_uniform(TD_F32, 1, shape, -1, 1, td_cpu(0));
    td_array *w2 = td_random_uniform(TD_F32, 1, shape, -1, 1, td_cpu(0));
    cr_assert_eq(td_attach_grad(w1, TD_GRAD_WRITE), TD_OK);
    cr_assert_eq(td_attach_grad(w2, TD_GRAD_WRITE), TD_OK);
    td_record_begin();
    td_array *s1, *s2;
    cr_assert_eq(td_custom_call(&slow_fn, &w1, &s1), TD_OK, "%s", td_last_error());
    cr_assert_eq(td_custom_call(&slow_fn, &w2, &s2), TD_OK, "%s", td_last_error());
    td_array *l = td_add(td_sum(s1, TD_ALL_AXES, TD_DROPDIMS), td_sum(s2, TD_ALL_AXES, TD_DROPDIMS));
    td_record_end();
    cr_assert_eq(td_wait_all(), TD_OK);
    char path[128];
    snprintf(path, sizeof path, "/tmp/tide_ag_branches_%d.json", (int)getpid());
    cr_assert_eq(td_profiler_start(path), TD_OK, "%s", td_last_error());
    cr_assert_eq(td_backward(l, NULL), TD_OK, "%s", td_last_error());
    cr_assert_eq(td_wait_all(), TD_OK);
    cr_assert_eq(td_profiler_stop(), TD_OK, "%s", td_last_error());
    /* The gradients are those of the identity. */
    mr_arr g1 = mr_read(td_grad(w1)), g2 = mr_read(td_grad(w2));
    for (int64_t k = 0; k < 1024; k++) cr_assert(g1.f[k] == 1.0 && g2.f[k] == 1.0, "gradient element %lld", (long long)k);
    mr_free(&g1);
    mr_free(&g2);
    char *text = slurp(path);
    cJSON *root = cJSON_Parse(text);
    free(text);
    unlink(path);
    cr_assert_not_null(root, "the trace is not valid JSON");
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(root, "traceEvents"), *e;
    double span[2][2];
    int n = 0;
    cJSON_ArrayForEach(e, ev) {
        const cJSON *ph = cJSON_GetObjectItemCaseSensitive(e, "ph"), *name = cJSON_GetObjectItemCaseSensitive(e, "name");
        if (!cJSON_IsString(ph) || strcmp(ph->valuestring, "X") || !cJSON_IsString(name) ||
            strcmp(name->valuestring, "slow_grad"))
            continue;
        double ts = cJSON_GetObjectItemCaseSensitive(e, "ts")->valuedouble;
        double dur = cJSON_GetObjectItemCaseSensitive(e, "dur")->valuedouble;
        if (n < 2) span[n][0] = ts, span[n][1] = ts + dur;
        n++;
    }
    cJSON_Delete(root);
    cr_assert_eq(n, 2, "expected the two branches' slow_grad ops, found %d", n);
    double (*br)[2] = span;
    cr_log_info("branch A [%.0f, %.0f] us, branch B [%.0f, %.0f] us", br[0][0], br[0][1], br[1][0], br[1][1]);
    cr_assert(br[0][0] < br[1][1] && br[1][0] < br[0][1], "the branches ran one after the other: [%.0f, %.0f] and [%.0f, %.0f]",
              br[0][0], br[0][1], br[1][0], br[1][1]);
    td_scope_end();
    ag_finish();
}

/* ---- logistic regression ---- */
enum { N = 256, D = 4, STEPS = 300 };

Test(engines, logistic_regression_trained_with_sgd_reaches_a_low_loss, .timeout = 120) {
    ag_start();
    /* Separable data: label = (x . w_true + 0.3 > 0), with a margin. */
    static float xs[N * D], ys[N];
    const double wt[D] = {1.5, -2.0, 0.7, 1.0};
    double v[D];
    for (int i = 0, k = 0; i < N; k++) {
        ag_fill(v, D, -2, 2, (uint64_t)k + 100);
        double z = 0.3;
        for (int d = 0; d < D; d++) z += wt[d] * v[d];
        if (fabs(z) < 0.5) continue; /* keep a margin */
        for (int d = 0; d < D; d++) xs[i * D + d] = (float)v[d];
        ys[i] = z > 0 ? 1.0f : 0.0f;
        i++;
    }
    td_array *x = td_from_host(xs, TD_F32, 2, (int64_t[]){N, D}, td_cpu(0));
    td_array *y = td_from_host(ys, TD_F32, 1, (int64_t[]){N}, td_cpu(0));
    td_array *w = td_zeros(TD_F32, 1, (int64_t[]){D}, td_cpu(0));
    td_array *b = td_zeros(TD_F32, 0, NULL, td_cpu(0));
    cr_assert_eq(td_attach_grad(w, TD_GRAD_WRITE), TD_OK);
    cr_assert_eq(td_attach_grad(b, TD_GRAD_WRITE), TD_OK);
    float loss = 0, first = 0;
    for (int step = 0; step < STEPS; step++) {
        td_scope_begin();
        td_record_begin();
        /* z = x w + b; loss = mean(log(1 + exp(z)) - y z), stably:
         * log1p(exp(-|z|)) + relu(z) - y z */
        td_array *z = td_add(td_matmul(x, w), b);
        td_array *l = td_mean(td_sub(td_add(td_log1p(td_exp(td_neg(td_abs(z)))), td_relu(z)), td_mul(y, z)),
                              TD_ALL_AXES, TD_DROPDIMS);
        td_record_end();
        cr_assert_not_null(l, "%s", td_last_error());
        cr_assert_eq(td_backward(l, NULL), TD_OK, "%s", td_last_error());
        cr_assert_eq(td_sub_out(w, td_mul_scalar(td_grad(w), 1.0), w), TD_OK);
        cr_assert_eq(td_sub_out(b, td_mul_scalar(td_grad(b), 1.0), b), TD_OK);
        if (step == 0 || step == STEPS - 1) cr_assert_eq(td_to_host(l, &loss, sizeof loss), TD_OK);
        if (step == 0) first = loss;
        td_scope_end();
    }
    cr_log_info("logistic regression: loss %.4f after 1 step, %.4f after %d", first, loss, STEPS);
    cr_assert_float_eq(first, logf(2.0f), 1e-5);
    cr_assert_lt(loss, 0.1f, "loss %g after %d steps", loss, STEPS);
    /* Accuracy 100% on separable data. */
    float zs[N];
    td_scope_begin();
    cr_assert_eq(td_to_host(td_add(td_matmul(x, w), b), zs, sizeof zs), TD_OK);
    td_scope_end();
    for (int i = 0; i < N; i++) cr_assert_eq(zs[i] > 0, ys[i] > 0.5f, "sample %d misclassified", i);
    td_release(x), td_release(y), td_release(w), td_release(b);
    ag_finish();
}
