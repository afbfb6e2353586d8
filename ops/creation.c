/* Creation and copies: zeros, ones, full, fill, assign, astype, contiguous,
 * reshape, arange, linspace, eye. */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "ops/internal.h"

/* out[...] = value, converted to out's dtype. */
static td_status fill_into(td_array *out, double value, const char *who) {
    (void)who;
    td__ew_attrs at = {.code = TD__EW_COPY, .cdt = out->dtype, .scalar_pos = 1, .scalar = value};
    td__store_double(out->dtype, at.sbuf, value);
    return td__invoke_out(&td__op_copy, NULL, 0, &at, sizeof at, out, 1);
}

static td_array *filled(int dtype, int ndim, const int64_t *shape, double value, td_device dev, const char *who) {
    td_array *a = td__array_new(dtype, ndim, shape, dev, who);
    if (!a) return NULL;
    td__array_count_output(a);
    if (fill_into(a, value, who) != TD_OK) {
        td__array_unref(a);
        return NULL;
    }
    return td__array_give(a);
}

td_array *td_zeros(int dtype, int ndim, const int64_t *shape, td_device dev) {
    return filled(dtype, ndim, shape, 0.0, dev, "td_zeros");
}
td_array *td_ones(int dtype, int ndim, const int64_t *shape, td_device dev) {
    return filled(dtype, ndim, shape, 1.0, dev, "td_ones");
}
td_array *td_full(int dtype, int ndim, const int64_t *shape, double value, td_device dev) {
    return filled(dtype, ndim, shape, value, dev, "td_full");
}

td_status td_fill(td_array *dst, double value) {
    if (!dst) return td__fail(TD_EINVAL, "td_fill: dst is NULL");
    return fill_into(dst, value, "td_fill");
}

td_status td_assign(td_array *dst, td_array *src) {
    if (!dst || !src) return td__fail(TD_EINVAL, "td_assign: %s is NULL", dst ? "src" : "dst");
    /* src broadcast to dst's shape, as an internal view (in no scope). */
    int64_t strides[TD_MAX_DIMS];
    if (src->ndim > dst->ndim) goto bad;
    for (int i = dst->ndim - 1, j = src->ndim - 1; i >= 0; i--, j--) {
        if (j < 0) strides[i] = 0;
        else if (src->shape[j] == dst->shape[i]) strides[i] = src->strides[j];
        else if (src->shape[j] == 1) strides[i] = 0;
        else goto bad;
    }
    td_array *view = td__array_wrap(src->st, src->dtype, dst->ndim, dst->shape, strides, src->offset);
    if (!view) return td_last_status();
    td__ew_attrs at = {.code = TD__EW_COPY, .cdt = dst->dtype};
    td_status st = td__invoke_out(&td__op_copy, &view, 1, &at, sizeof at, dst, 1);
    td__array_unref(view);
    return st;
bad:;
    char s1[128], s2[128];
    return td__fail(TD_ESHAPE, "td_assign: cannot broadcast src of shape %s to dst of shape %s",
                    td__shape_str(src->ndim, src->shape, s1, sizeof s1),
                    td__shape_str(dst->ndim, dst->shape, s2, sizeof s2));
}

static td_array *copy_as(td_array *a, int dtype, const char *who) {
    td_array *o = td__array_new(dtype, a->ndim, a->shape, a->dev, who);
    if (!o) return NULL;
    td__array_count_output(o);
    td__ew_attrs at = {.code = TD__EW_COPY, .cdt = dtype};
    if (td__invoke_out(&td__op_copy, &a, 1, &at, sizeof at, o, 1) != TD_OK) {
        td__array_unref(o);
        return NULL;
    }
    return o;
}

/* astype's gradient is the output gradient (backward casts it back to the
 * input's dtype). */
static td_status grad_astype(td__gctx *g) {
    g->gin[0] = g->gout[0];
    return TD_OK;
}
const td__opdesc td__rec_astype = {.name = "astype", .api = "td_astype", .n_in = 1, .grad = grad_astype};

td_array *td_astype(td_array *a, int dtype) {
    if (!a) return NULL;
    if (td__check_dtype("td_astype", dtype) != TD_OK) return NULL;
    int rec = td__rec_begin(&a, 1);
    return td__rec_end(rec, &td__rec_astype, &a, 1, NULL, 0, td__array_give(copy_as(a, dtype, "td_astype")));
}

/* A copy is recorded as a reshape to the same shape (gradient: itself). */
td_array *td_contiguous(td_array *a) {
    if (!a) return NULL;
    if (td_is_contiguous(a)) return td__array_give(td_retain(a));
    int rec = td__rec_begin(&a, 1);
    return td__rec_end(rec, &td__rec_reshape, &a, 1, NULL, 0, td__array_give(copy_as(a, a->dtype, "td_contiguous")));
}

static td_array *reshape_impl(td_array *a, int ndim, const int64_t *shape);

/* View or copy, td_reshape records one reshape node. */
td_array *td_reshape(td_array *a, int ndim, const int64_t *shape) {
    if (!a) return NULL;
    int rec = td__rec_begin(&a, 1);
    return td__rec_end(rec, &td__rec_reshape, &a, 1, NULL, 0, reshape_impl(a, ndim, shape));
}

static td_array *reshape_impl(td_array *a, int ndim, const int64_t *shape) {
    int64_t full[TD_MAX_DIMS], strides[TD_MAX_DIMS];
    if (td__reshape_shape("td_reshape", a, ndim, shape, full) != TD_OK) return NULL;
    if (td__reshape_strides(a, ndim, full, strides))
        return td__array_give(td__array_wrap(a->st, a->dtype, ndim, full, strides, a->offset));
    td_array *c = copy_as(a, a->dtype, "td_reshape");
    if (!c) return NULL;
    td__contiguous_strides(ndim, full, strides);
    td_array *r = td__array_wrap(c->st, c->dtype, ndim, full, strides, 0);
    td__array_unref(c);
    return td__array_give(r);
}

/* ---- generated sequences ---- */
enum { GEN_ARANGE, GEN_LINSPACE, GEN_EYE };
typedef struct {
    int kind;
    double start, step; /* arange: start + i*step; linspace: start + i*step, last = stop */
    double stop;
    int64_t n;
} gen_attrs;

typedef struct {
    const gen_attrs *g;
    char *p;
    int dt;
    size_t es;
} gen_job;

static void gen_chunk(void *arg, int64_t b, int64_t e) {
    gen_job *j = arg;
    const gen_attrs *g = j->g;
    for (int64_t i = b; i < e; i++) {
        double v;
        if (g->kind == GEN_EYE) v = (i / g->n) == (i % g->n) ? 1.0 : 0.0;
        else if (g->kind == GEN_LINSPACE && i == g->n - 1 && g->n > 1) v = g->stop;
        else v = g->start + (double)i * g->step;
        td__store_double(j->dt, j->p + (size_t)i * j->es, v);
    }
}

static td_status gen_kernel(const td__call *c, const td_exec *ex) {
    gen_job j = {(const gen_attrs *)c->attrs, td__array_ptr(c->out), c->out->dtype, td_dtype_size(c->out->dtype)};
    return td_parallel_for(ex, td_numel(c->out), 16384, gen_chunk, &j);
}

static td_status gen_infer(const td__call *c, int *dtype, int *ndim, int64_t *shape) {
    *dtype = c->out->dtype;
    *ndim = c->out->ndim;
    memcpy(shape, c->out->shape, sizeof(int64_t) * (size_t)*ndim);
    return TD_OK;
}

static const td__opdesc desc_gen = {.name = "generate", .api = "td_arange", .n_in = 0, .infer = gen_infer, .kernel = {gen_kernel, NULL}};

static td_array *generate(int dtype, int ndim, const int64_t *shape, const gen_attrs *g, td_device dev,
                          const char *who) {
    td_array *a = td__array_new(dtype, ndim, shape, dev, who);
    if (!a) return NULL;
    td__array_count_output(a);
    if (td__invoke_out(&desc_gen, NULL, 0, g, sizeof *g, a, 1) != TD_OK) {
        td__array_unref(a);
        return NULL;
    }
    return td__array_give(a);
}

td_array *td_arange(int dtype, double start, double stop, double step, td_device dev) {
    if (td__check_dtype("td_arange", dtype) != TD_OK) return NULL;
    if (step == 0 || !isfinite(start) || !isfinite(stop) || !isfinite(step)) {
        td__fail(TD_EINVAL, "td_arange: start, stop and step must be finite and step nonzero");
        return NULL;
    }
    double len = ceil((stop - start) / step);
    if (len < 0) len = 0;
    if (len > 1e15) {
        td__fail(TD_EINVAL, "td_arange: %.0f elements is too many", len);
        return NULL;
    }
    int64_t n = (int64_t)len;
    gen_attrs g = {.kind = GEN_ARANGE, .start = start, .step = step, .stop = stop, .n = n};
    return generate(dtype, 1, &n, &g, dev, "td_arange");
}

td_array *td_linspace(int dtype, double start, double stop, int64_t num, td_device dev) {
    if (td__check_dtype("td_linspace", dtype) != TD_OK) return NULL;
    if (num < 0 || !isfinite(start) || !isfinite(stop)) {
        td__fail(TD_EINVAL, "td_linspace: num must be at least 0 (got %" PRId64 ") and the ends finite", num);
        return NULL;
    }
    gen_attrs g = {.kind = GEN_LINSPACE, .start = start, .stop = stop, .n = num,
                   .step = num > 1 ? (stop - start) / (double)(num - 1) : 0.0};
    return generate(dtype, 1, &num, &g, dev, "td_linspace");
}

td_array *td_eye(int dtype, int64_t n, td_device dev) {
    if (td__check_dtype("td_eye", dtype) != TD_OK) return NULL;
    if (n < 0) {
        td__fail(TD_EINVAL, "td_eye: n must be at least 0, not %" PRId64, n);
        return NULL;
    }
    int64_t shape[2] = {n, n};
    gen_attrs g = {.kind = GEN_EYE, .n = n};
    return generate(dtype, 2, shape, &g, dev, "td_eye");
}
