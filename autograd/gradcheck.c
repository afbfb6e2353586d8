/* The gradient checker: backward against central finite differences.
 *
 * Everything is in float64.  The analytic gradient is backward of f(x) with
 * head gradient w (fixed pseudo-random weights in [-1, 1]), which is the
 * gradient of sum(f(x) * w): one backward checks every output at once.  The
 * numeric one evaluates sum(f(x) * w) on the host with each input element
 * moved by +h and -h in turn, h = 1e-6 max(1, |x|): the truncation error is
 * about h^2 and the rounding error about 1e-16 / h, both near 1e-10.
 *
 * The checker runs with recording state of its own (the caller's is put
 * back at the end), so it can be called while the caller records.
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/internal.h"

enum { MAX_INPUTS = 16 };

typedef struct {
    td_gradcheck_fn f;
    void *ctx;
    int n;
    td_array *const *inputs;
    double *x[MAX_INPUTS];  /* the inputs' values */
    const double *w;        /* weights, over f's output */
    int64_t ny;
} check;

/* sum(f(x) * w) on the host, unrecorded. */
static td_status eval(check *c, double *out) {
    td_scope_begin();
    td_array *xs[MAX_INPUTS];
    td_status st = TD_OK;
    for (int i = 0; i < c->n && st == TD_OK; i++) {
        const td_array *a = c->inputs[i];
        if (!(xs[i] = td_from_host(c->x[i], TD_F64, a->ndim, a->shape, a->dev))) st = td_last_status();
    }
    td_array *y = st == TD_OK ? c->f(c->ctx, c->n, xs) : NULL;
    double *v = NULL;
    if (st == TD_OK && !y) st = td_last_status() != TD_OK ? td_last_status() : TD_EFAILED;
    if (st == TD_OK && td_numel(y) != c->ny)
        st = td__fail(TD_EFAILED, "td_gradcheck: f gave %" PRId64 " elements, then %" PRId64, c->ny, td_numel(y));
    if (st == TD_OK && !(v = malloc((size_t)(c->ny ? c->ny : 1) * sizeof *v)))
        st = td__fail(TD_ENOMEM, "td_gradcheck: out of memory");
    if (st == TD_OK) st = td_to_host(td_astype(y, TD_F64), v, (size_t)c->ny * sizeof *v);
    if (st == TD_OK) {
        double s = 0;
        for (int64_t k = 0; k < c->ny; k++) s += v[k] * c->w[k];
        *out = s;
    }
    free(v);
    td_scope_end();
    return st;
}

static td_status run(check *c, double rtol, double atol, FILE *report) {
    td_status st = TD_OK;
    double *w = NULL, *ga = NULL;
    td_scope_begin();
    td_array *xs[MAX_INPUTS];
    for (int i = 0; i < c->n && st == TD_OK; i++) {
        const td_array *a = c->inputs[i];
        xs[i] = td_from_host(c->x[i], TD_F64, a->ndim, a->shape, a->dev);
        st = xs[i] ? td_attach_grad(xs[i], TD_GRAD_WRITE) : td_last_status();
    }
    td_array *y = NULL;
    if (st == TD_OK) {
        td_record_begin();
        y = c->f(c->ctx, c->n, xs);
        td_record_end();
        if (!y) st = td_last_status() != TD_OK ? td_last_status() : td__fail(TD_EFAILED, "td_gradcheck: f gave NULL");
    }
    if (st == TD_OK && td_dtype(y) != TD_F32 && td_dtype(y) != TD_F64)
        st = td__fail(TD_EDTYPE, "td_gradcheck: f gave a %s array; it must give a float one", td_dtype_name(td_dtype(y)));
    if (st == TD_OK) {
        c->ny = td_numel(y);
        if (!(w = malloc((size_t)(c->ny ? c->ny : 1) * sizeof *w))) st = td__fail(TD_ENOMEM, "td_gradcheck: out of memory");
    }
    if (st == TD_OK) {
        uint64_t s = 0x9e3779b97f4a7c15ull;
        for (int64_t k = 0; k < c->ny; k++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            w[k] = (double)(s >> 11) * 0x1p-52 - 1.0;
        }
        c->w = w;
        td_array *wa = td_from_host(w, TD_F64, td_ndim(y), td_shape(y), td_array_device(y));
        st = wa ? td_backward(y, wa) : td_last_status();
    }
    /* Worst element: the largest |diff| / (atol + rtol |numeric|). */
    double worst = -1, wa_v = 0, wn_v = 0;
    int wi = -1;
    int64_t wj = -1;
    for (int i = 0; i < c->n && st == TD_OK; i++) {
        int64_t m = td_numel(c->inputs[i]);
        free(ga);
        if (!(ga = malloc((size_t)(m ? m : 1) * sizeof *ga))) {
            st = td__fail(TD_ENOMEM, "td_gradcheck: out of memory");
            break;
        }
        if ((st = td_to_host(td_grad(xs[i]), ga, (size_t)m * sizeof *ga)) != TD_OK) break;
        for (int64_t j = 0; j < m && st == TD_OK; j++) {
            double x0 = c->x[i][j], h = 1e-6 * (fabs(x0) > 1 ? fabs(x0) : 1), fp = 0, fm = 0;
            c->x[i][j] = x0 + h;
            st = eval(c, &fp);
            c->x[i][j] = x0 - h;
            if (st == TD_OK) st = eval(c, &fm);
            c->x[i][j] = x0;
            double num = (fp - fm) / (2 * h), diff = fabs(ga[j] - num);
            double ratio = diff / (atol + rtol * fabs(num));
            if (!(ratio <= worst) || diff != diff) {
                worst = diff != diff ? INFINITY : ratio;
                wi = i, wj = j, wa_v = ga[j], wn_v = num;
            }
        }
    }
    if (st == TD_OK && wi >= 0) {
        if (report)
            fprintf(report,
                    "td_gradcheck: worst element: input %d [%" PRId64 "]: analytic %.12g, numeric %.12g "
                    "(|diff| %.3g, allowed %.3g)\n",
                    wi, wj, wa_v, wn_v, fabs(wa_v - wn_v), atol + rtol * fabs(wn_v));
        if (worst > 1)
            st = td__fail(TD_EFAILED,
                          "td_gradcheck: input %d element %" PRId64 ": analytic gradient %.12g but finite "
                          "differences give %.12g (|diff| %.3g above atol %g + rtol %g * |numeric|)",
                          wi, wj, wa_v, wn_v, fabs(wa_v - wn_v), atol, rtol);
    }
    free(w);
    free(ga);
    td_scope_end();
    return st;
}

td_status td_gradcheck(td_gradcheck_fn f, void *ctx, int n, td_array *const *inputs, double rtol, double atol,
                       FILE *report) {
    if (!f) return td__fail(TD_EINVAL, "td_gradcheck: f is NULL");
    if (n < 1 || n > MAX_INPUTS) return td__fail(TD_EINVAL, "td_gradcheck: n must be 1 to %d, not %d", MAX_INPUTS, n);
    if (!inputs) return td__fail(TD_EINVAL, "td_gradcheck: inputs is NULL");
    if (!(rtol >= 0) || !(atol >= 0) || rtol + atol <= 0)
        return td__fail(TD_EINVAL, "td_gradcheck: rtol and atol must not be negative, and not both 0");
    for (int i = 0; i < n; i++) {
        if (!inputs[i]) return td__fail(TD_EINVAL, "td_gradcheck: input %d is NULL", i);
        if (inputs[i]->dtype != TD_F32 && inputs[i]->dtype != TD_F64)
            return td__fail(TD_EDTYPE, "td_gradcheck: input %d is %s; gradients exist for float arrays only", i,
                            td_dtype_name(inputs[i]->dtype));
    }
    check c;
    memset(&c, 0, sizeof c);
    c.f = f, c.ctx = ctx, c.n = n, c.inputs = inputs;
    td__tape_state saved = td__tape;
    td__tape = (td__tape_state){.training = saved.training};
    td_status st = TD_OK;
    for (int i = 0; i < n && st == TD_OK; i++) {
        int64_t m = td_numel(inputs[i]);
        if (!(c.x[i] = malloc((size_t)(m ? m : 1) * sizeof(double)))) {
            st = td__fail(TD_ENOMEM, "td_gradcheck: out of memory");
            break;
        }
        td_scope_begin();
        st = td_to_host(td_astype(inputs[i], TD_F64), c.x[i], (size_t)m * sizeof(double));
        td_scope_end();
    }
    if (st == TD_OK) st = run(&c, rtol, atol, report);
    for (int i = 0; i < n; i++) free(c.x[i]);
    td__tape = saved;
    return st;
}
