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
    td__array_drop(r->a);
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

static td_status to_host(const char *who, td_array *a, int64_t start, int64_t count, void *dst, size_t nbytes) {
    if (!a) return td__fail(TD_EINVAL, "%s: array is NULL", who);
    td_status st = td__busy_check(who);
    if (st != TD_OK) return st;
    if (!dst && nbytes) return td__fail(TD_EINVAL, "%s: dst is NULL", who);
    int64_t n = td_numel(a);
    size_t es = td_dtype_size(a->dtype);
    if (start < 0 || count < 0 || start > n || count > n - start)
        return td__fail(TD_EINVAL, "%s: range [%" PRId64 ", %" PRId64 ") is outside the array's %" PRId64 " elements",
                        who, start, start + count, n);
    if ((size_t)count * es != nbytes)
        return td__fail(TD_EINVAL, "%s: nbytes is %zu but the %" PRId64 " %s elements take %zu bytes", who, nbytes,
                        count, td_dtype_name(a->dtype), (size_t)count * es);
    td_var *done = td_var_new();
    if (!done) return td_last_status();
    read_args *r = malloc(sizeof *r);
    if (!r) {
        td_var_free(done);
        return td__fail(TD_ENOMEM, "%s: out of memory", who);
    }
    *r = (read_args){td__array_hold(a), start, count, dst};
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

td_status td_to_host_range(td_array *a, int64_t start, int64_t count, void *dst, size_t nbytes) {
    return to_host("td_to_host_range", a, start, count, dst, nbytes);
}

td_status td_to_host(td_array *a, void *dst, size_t nbytes) {
    if (!a) return td__fail(TD_EINVAL, "td_to_host: array is NULL");
    return to_host("td_to_host", a, 0, td_numel(a), dst, nbytes);
}

td_status td_array_wait(td_array *a) {
    if (!a) return td__fail(TD_EINVAL, "td_array_wait: array is NULL");
    td_status st = td__busy_check("td_array_wait");
    if (st != TD_OK) return st;
    return td_var_wait(a->st->var);
}

/* ---- printing ----
 * As numpy's str(): integers right-aligned to one width; floats either
 * positional, aligned at the decimal point with trailing zeros dropped
 * ("[0.5  1.25]", "[1. 2.]"), or, when the magnitudes call for it (a value
 * of 1e8 or more, a nonzero value under 1e-4, or a ratio over 1000 between
 * them), scientific with one mantissa precision ("[1.0e+08 1.5e+00]"); at
 * most 8 digits after the point.  Arrays over 1000 elements show the first
 * and last 3 along each axis around "...". */
enum { PRINT_THRESHOLD = 1000, EDGE = 3, PREC = 8 };

static double get_f(const char *p, int dt) {
    switch (dt) {
    case TD_F32: return *(const float *)p;
    case TD_F64: return *(const double *)p;
    case TD_I32: return *(const int32_t *)p;
    case TD_I64: return (double)*(const int64_t *)p;
    default: return *(const uint8_t *)p;
    }
}

static int is_float_dt(int dt) { return dt == TD_F32 || dt == TD_F64; }

typedef struct {
    FILE *out;
    const char *data; /* C-order host copy */
    const td_array *a;
    int64_t cstride[TD_MAX_DIMS]; /* element strides of the host copy */
    int elide;
    int pass; /* 0: measure the shown elements; 1: print; 2: measure widths in the chosen style */
    int col;  /* characters on the current output line */
    /* integers */
    int width;
    /* floats */
    double maxabs, minabs; /* over finite nonzero values shown */
    int any_finite, exp_mode;
    int int_w, frac_w;     /* positional: widths around the point */
    int mant_prec;         /* scientific: digits after the mantissa's point */
    int total_w;
} printer;

/* Positional digits of v: integer part (with sign) and fraction, trailing
 * zeros dropped. */
static void split_pos(double v, char *ip, size_t ipn, char *fp, size_t fpn) {
    char buf[400];
    snprintf(buf, sizeof buf, "%.*f", PREC, v);
    char *dot = strchr(buf, '.');
    if (!dot) {
        snprintf(ip, ipn, "%s", buf);
        fp[0] = '\0';
        return;
    }
    *dot = '\0';
    char *f = dot + 1;
    size_t n = strlen(f);
    while (n > 0 && f[n - 1] == '0') f[--n] = '\0';
    snprintf(ip, ipn, "%s", buf);
    snprintf(fp, fpn, "%s", f);
}

static int mant_digits(double v) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.*e", PREC, v);
    char *dot = strchr(buf, '.'), *e = strchr(buf, 'e');
    if (!dot || !e) return 0;
    int n = (int)(e - dot - 1);
    while (n > 0 && dot[n] == '0') n--;
    return n;
}

static int fmt_float(printer *pr, double v, char *buf, size_t n) {
    if (isnan(v)) return snprintf(buf, n, "nan");
    if (isinf(v)) return snprintf(buf, n, v < 0 ? "-inf" : "inf");
    if (pr->exp_mode) {
        if (pr->mant_prec > 0) return snprintf(buf, n, "%.*e", pr->mant_prec, v);
        char t[64];
        snprintf(t, sizeof t, "%.0e", v); /* "1e+08" -> "1.e+08", as numpy */
        char *e = strchr(t, 'e');
        return snprintf(buf, n, "%.*s.%s", (int)(e - t), t, e);
    }
    char ip[400], fp[64];
    split_pos(v, ip, sizeof ip, fp, sizeof fp);
    return snprintf(buf, n, "%*s.%-*s", pr->int_w, ip, pr->frac_w, fp);
}

enum { LINE_WIDTH = 75 };

static void emit(printer *pr, const char *t) {
    for (; *t; t++) {
        fputc(*t, pr->out);
        pr->col = *t == '\n' ? 0 : pr->col + 1;
    }
}

static void emit_padded(printer *pr, const char *buf, int width) {
    char t[600];
    snprintf(t, sizeof t, "%*s", width, buf);
    emit(pr, t);
}

static void visit_elem(printer *pr, const char *p) {
    int dt = pr->a->dtype;
    char buf[512];
    if (!is_float_dt(dt)) {
        int w;
        if (dt == TD_I64) w = snprintf(buf, sizeof buf, "%" PRId64, *(const int64_t *)p);
        else if (dt == TD_I32) w = snprintf(buf, sizeof buf, "%" PRId32, *(const int32_t *)p);
        else w = snprintf(buf, sizeof buf, "%u", (unsigned)*(const uint8_t *)p);
        if (pr->pass == 0) {
            if (w > pr->width) pr->width = w;
        } else {
            emit_padded(pr, buf, pr->width);
        }
        return;
    }
    double v = get_f(p, dt);
    if (pr->pass == 2) {
        int w = fmt_float(pr, v, buf, sizeof buf);
        if (w > pr->total_w) pr->total_w = w;
        return;
    }
    if (pr->pass == 0) {
        if (isfinite(v)) {
            double m = fabs(v);
            if (m > pr->maxabs) pr->maxabs = m;
            if (m > 0 && (m < pr->minabs || pr->minabs == 0)) pr->minabs = m;
            pr->any_finite = 1;
            char ip[400], fp[64];
            split_pos(v, ip, sizeof ip, fp, sizeof fp);
            int il = (int)strlen(ip), fl = (int)strlen(fp);
            if (il > pr->int_w) pr->int_w = il;
            if (fl > pr->frac_w) pr->frac_w = fl;
            int md = mant_digits(v);
            if (md > pr->mant_prec) pr->mant_prec = md;
        }
        int w = (int)strlen(isnan(v) ? "nan" : (v < 0 ? "-inf" : "inf"));
        if (!isfinite(v) && w > pr->total_w) pr->total_w = w;
        return;
    }
    fmt_float(pr, v, buf, sizeof buf);
    emit_padded(pr, buf, pr->total_w);
}

static int elem_width(const printer *pr) { return is_float_dt(pr->a->dtype) ? pr->total_w : pr->width; }

/* Walks the elements that are shown (all, or the EDGE first and last along
 * every axis when eliding), printing the brackets and separators in the
 * printing pass only. */
static void visit(printer *pr, int d, int64_t off) {
    const td_array *a = pr->a;
    size_t es = td_dtype_size(a->dtype);
    int64_t n = a->shape[d];
    int print = pr->pass == 1, last_axis = d == a->ndim - 1;
    if (print) emit(pr, "[");
    for (int64_t i = 0; i < n; i++) {
        if (pr->elide && n > 2 * EDGE && i == EDGE) {
            if (print) {
                if (last_axis) emit(pr, " ...");
                else {
                    emit(pr, "\n");
                    for (int k = 0; k <= d; k++) emit(pr, " ");
                    emit(pr, "...");
                }
            }
            i = n - EDGE - 1;
            continue;
        }
        if (i > 0 && print) {
            if (last_axis) {
                /* numpy wraps a row where the next element would pass the
                 * line width less the closing brackets still to come. */
                int limit = LINE_WIDTH - a->ndim - (i == n - 1 ? 1 : 0);
                if (pr->col + 1 + elem_width(pr) > limit) {
                    emit(pr, "\n");
                    for (int k = 0; k < a->ndim; k++) emit(pr, " ");
                } else {
                    emit(pr, " ");
                }
            } else {
                for (int k = d + 1; k < a->ndim; k++) emit(pr, "\n");
                for (int k = 0; k <= d; k++) emit(pr, " ");
            }
        }
        int64_t o = off + i * pr->cstride[d];
        if (last_axis) visit_elem(pr, pr->data + o * (int64_t)es);
        else visit(pr, d + 1, o);
    }
    if (print) emit(pr, "]");
}

/* After measuring: pick the float style and the common width. */
static void settle(printer *pr) {
    if (!is_float_dt(pr->a->dtype)) return;
    pr->exp_mode = pr->any_finite && (pr->maxabs >= 1e8 || (pr->minabs > 0 && pr->minabs < 1e-4) ||
                                      (pr->minabs > 0 && pr->maxabs / pr->minabs > 1000.0));
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
    printer pr = {.out = out, .data = host, .a = a, .elide = n > PRINT_THRESHOLD};
    td__contiguous_strides(a->ndim, a->shape, pr.cstride);
    if (a->ndim == 0) {
        pr.pass = 0;
        visit_elem(&pr, host);
        settle(&pr);
        double v = get_f(host, a->dtype);
        if (is_float_dt(a->dtype) && !pr.exp_mode && isfinite(v)) {
            /* a 0-d float prints as a Python float: "1.0", "0.5" */
            char ip[400], fp[64];
            split_pos(v, ip, sizeof ip, fp, sizeof fp);
            fprintf(out, "%s.%s", ip, fp[0] ? fp : "0");
        } else {
            pr.pass = 2;
            visit_elem(&pr, host);
            pr.pass = 1;
            visit_elem(&pr, host);
        }
    } else if (n == 0) {
        for (int d = 0; d < a->ndim; d++) fputc('[', out);
        for (int d = 0; d < a->ndim; d++) fputc(']', out);
    } else {
        pr.pass = 0;
        visit(&pr, 0, 0);
        settle(&pr);
        if (is_float_dt(a->dtype)) {
            pr.pass = 2;
            visit(&pr, 0, 0);
        }
        pr.pass = 1;
        visit(&pr, 0, 0);
    }
    fputc('\n', out);
    free(host);
    return TD_OK;
}
