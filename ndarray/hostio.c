/* Host I/O: reading arrays back (a read op in program order), waiting, and
 * printing as numpy does. */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "ndarray/internal.h"

typedef struct {
    td_array *a; /* retained until the op ends */
    int64_t start, count;
    char *dst;
} read_args;

static void read_free(void *p) {
    read_args *r = p;
    td__array_unref(r->a);
    free(r);
}

/* Copies elements [start, start+count) of a, in C order, to dst. */
static td_status read_fn(void *p, const td_exec *ex) {
    (void)ex;
    read_args *r = p;
    const td_array *a = r->a;
    size_t es = td_dtype_size(a->dtype);
    const char *base = td__array_ptr(a);
    if (td_is_contiguous(a)) {
        memcpy(r->dst, base + r->start * (int64_t)es, (size_t)r->count * es);
        return TD_OK;
    }
    int nd = a->ndim;
    int64_t idx[TD_MAX_DIMS];
    int64_t rem = r->start;
    for (int d = nd - 1; d >= 0; d--) {
        idx[d] = a->shape[d] ? rem % a->shape[d] : 0;
        rem = a->shape[d] ? rem / a->shape[d] : 0;
    }
    char *out = r->dst;
    for (int64_t k = 0; k < r->count; k++) {
        int64_t off = 0;
        for (int d = 0; d < nd; d++) off += idx[d] * a->strides[d];
        memcpy(out, base + off * (int64_t)es, es);
        out += es;
        for (int d = nd - 1; d >= 0; d--) {
            if (++idx[d] < a->shape[d]) break;
            idx[d] = 0;
        }
    }
    return TD_OK;
}

td_status td_to_host_range(td_array *a, int64_t start, int64_t count, void *dst, size_t nbytes) {
    if (!a) return td__fail(TD_EINVAL, "td_to_host: array is NULL");
    td_status st = td__busy_check("td_to_host");
    if (st != TD_OK) return st;
    if (!dst && nbytes) return td__fail(TD_EINVAL, "td_to_host: dst is NULL");
    int64_t n = td_numel(a);
    size_t es = td_dtype_size(a->dtype);
    if (start < 0 || count < 0 || start > n || count > n - start)
        return td__fail(TD_EINVAL, "td_to_host: range [%" PRId64 ", %" PRId64 ") is outside the array's %" PRId64
                                   " elements",
                        start, start + count, n);
    if ((size_t)count * es != nbytes)
        return td__fail(TD_EINVAL, "td_to_host: nbytes is %zu but the %" PRId64 " %s elements take %zu bytes", nbytes,
                        count, td_dtype_name(a->dtype), (size_t)count * es);
    td_var *done = td_var_new();
    if (!done) return td_last_status();
    read_args *r = malloc(sizeof *r);
    if (!r) {
        td_var_free(done);
        return td__fail(TD_ENOMEM, "td_to_host: out of memory");
    }
    *r = (read_args){td_retain(a), start, count, dst};
    td_var *reads[1] = {a->st->var};
    td_op op = {.name = "to_host", .device = a->dev, .fn = read_fn, .arg = r, .arg_free = read_free,
                .reads = reads, .n_reads = 1, .writes = &done, .n_writes = 1, .flags = TD_OP_COPY};
    st = td_push(&op);
    if (st != TD_OK) {
        read_free(r);
        td_var_free(done);
        return st;
    }
    /* If a's storage is marked failed, the read is skipped and `done` takes
     * the mark, so the wait reports the failure. */
    st = td_var_wait(done);
    td_var_free(done);
    return st;
}

td_status td_to_host(td_array *a, void *dst, size_t nbytes) {
    if (!a) return td__fail(TD_EINVAL, "td_to_host: array is NULL");
    return td_to_host_range(a, 0, td_numel(a), dst, nbytes);
}

td_status td_array_wait(td_array *a) {
    if (!a) return td__fail(TD_EINVAL, "td_array_wait: array is NULL");
    td_status st = td__busy_check("td_array_wait");
    if (st != TD_OK) return st;
    return td_var_wait(a->st->var);
}

/* ---- printing ---- */
enum { PRINT_THRESHOLD = 1000, EDGE = 3 };

static double get_f(const char *p, int dt) {
    switch (dt) {
    case TD_F32: return *(const float *)p;
    case TD_F64: return *(const double *)p;
    case TD_I32: return *(const int32_t *)p;
    case TD_I64: return (double)*(const int64_t *)p;
    default: return *(const uint8_t *)p;
    }
}

static int fmt_elem(char *buf, size_t n, const char *p, int dt, int integral_floats) {
    if (dt == TD_I64) return snprintf(buf, n, "%" PRId64, *(const int64_t *)p);
    if (dt == TD_I32) return snprintf(buf, n, "%" PRId32, *(const int32_t *)p);
    if (dt == TD_U8) return snprintf(buf, n, "%u", (unsigned)*(const uint8_t *)p);
    double v = get_f(p, dt);
    if (isnan(v)) return snprintf(buf, n, "nan");
    if (isinf(v)) return snprintf(buf, n, v < 0 ? "-inf" : "inf");
    if (integral_floats) return snprintf(buf, n, "%.0f.", v);
    return snprintf(buf, n, "%.*g", dt == TD_F32 ? 8 : 8, v);
}

typedef struct {
    FILE *out;
    const char *data; /* C-order host copy */
    const td_array *a;
    int64_t cstride[TD_MAX_DIMS]; /* element strides of the host copy */
    int width, elide, integral;
    int pass;                     /* 0: are all shown floats integral; 1: widths; 2: print */
} printer;

static void visit_elem(printer *pr, const char *p) {
    int dt = pr->a->dtype;
    if (pr->pass == 0) {
        if (dt == TD_F32 || dt == TD_F64) {
            double v = get_f(p, dt);
            if (isfinite(v) && (v != floor(v) || fabs(v) >= 1e16)) pr->integral = 0;
        }
        return;
    }
    char buf[64];
    int w = fmt_elem(buf, sizeof buf, p, dt, pr->integral);
    if (pr->pass == 1) {
        if (w > pr->width) pr->width = w;
    } else {
        fprintf(pr->out, "%*s", pr->width, buf);
    }
}

/* Walks the elements that are shown (all, or the EDGE first and last along
 * every axis when eliding), printing the brackets and separators in the
 * printing pass only. */
static void visit(printer *pr, int d, int64_t off) {
    const td_array *a = pr->a;
    size_t es = td_dtype_size(a->dtype);
    int64_t n = a->shape[d];
    int print = pr->pass == 2;
    if (print) fputc('[', pr->out);
    for (int64_t i = 0; i < n; i++) {
        if (pr->elide && n > 2 * EDGE && i == EDGE) {
            if (print) {
                if (d == a->ndim - 1) fputs(" ...", pr->out);
                else {
                    fputs("\n", pr->out);
                    for (int k = 0; k <= d; k++) fputc(' ', pr->out);
                    fputs("...,", pr->out);
                }
            }
            i = n - EDGE - 1;
            continue;
        }
        if (i > 0 && print) {
            if (d == a->ndim - 1) fputc(' ', pr->out);
            else {
                for (int k = d + 1; k < a->ndim; k++) fputc('\n', pr->out);
                for (int k = 0; k <= d; k++) fputc(' ', pr->out);
            }
        }
        int64_t o = off + i * pr->cstride[d];
        if (d == a->ndim - 1) visit_elem(pr, pr->data + o * (int64_t)es);
        else visit(pr, d + 1, o);
    }
    if (print) fputc(']', pr->out);
}

td_status td_print(td_array *a, FILE *out) {
    if (!a || !out) return td__fail(TD_EINVAL, "td_print: %s is NULL", a ? "out" : "array");
    int64_t n = td_numel(a);
    size_t es = td_dtype_size(a->dtype);
    char *host = malloc(n ? (size_t)n * es : 1);
    if (!host) return td__fail(TD_ENOMEM, "td_print: out of memory for a host copy of %" PRId64 " elements", n);
    td_status st = td_to_host(a, host, (size_t)n * es);
    if (st != TD_OK) {
        free(host);
        return st;
    }
    printer pr = {.out = out, .data = host, .a = a, .elide = n > PRINT_THRESHOLD, .integral = 1};
    td__contiguous_strides(a->ndim, a->shape, pr.cstride);
    if (a->ndim == 0) {
        pr.pass = 0;
        visit_elem(&pr, host);
        char buf[64];
        fmt_elem(buf, sizeof buf, host, a->dtype, pr.integral);
        fputs(buf, out);
    } else if (n == 0) {
        for (int d = 0; d < a->ndim; d++) fputc('[', out);
        for (int d = 0; d < a->ndim; d++) fputc(']', out);
    } else {
        /* One float style and one width for every element shown, as numpy. */
        for (pr.pass = 0; pr.pass < 3; pr.pass++) visit(&pr, 0, 0);
    }
    fputc('\n', out);
    free(host);
    return TD_OK;
}
