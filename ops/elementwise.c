/* Elementwise ops: the kernel engine shared by arithmetic, comparisons and
 * copies, their descriptors and the public wrappers.
 *
 * A call is planned as an N-d loop over the output's shape (broadcast inputs
 * have stride 0), with dimensions that are contiguous for every operand
 * merged.  The flat index space is split into chunks by td_parallel_for
 * (boundaries from the size only, so results never depend on the number of
 * workers); each chunk walks row segments and calls an inner loop per (op,
 * compute dtype).  Operands whose dtype differs from the compute dtype are
 * converted in blocks of BLOCK elements on the stack, so there is one inner
 * loop per op and dtype, not per combination of dtypes.  Inner loops have
 * contiguous and scalar-broadcast fast paths that the compiler vectorises.
 *
 * Integer arithmetic wraps (computed in unsigned types, as numpy's results
 * and without C's undefined behaviour); float to integer conversion
 * truncates, NaN gives 0 and out-of-range values saturate.
 */
#include <inttypes.h>
#include <math.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

#include "ops/internal.h"

enum { BLOCK = 256, GRAIN = 32768 };

typedef td__loop_fn loop_fn;

/* Set by an inner loop that met an error (integer pow with a negative
 * exponent); read by the chunk that called it. */
static _Thread_local int tls_loop_error;
int *td__loop_error(void) { return &tls_loop_error; }

/* ---- conversions ---- */
#define SAT_INT(T, MIN, MAX)                                                                                  \
    static inline T sat_##T(double v) {                                                                       \
        if (v != v) return 0;                                                                                 \
        if (v <= (double)(MIN)) return (T)(MIN);                                                              \
        if (v >= (double)(MAX)) return (T)(MAX);                                                              \
        return (T)v;                                                                                          \
    }
SAT_INT(int32_t, INT32_MIN, INT32_MAX)
SAT_INT(int64_t, INT64_MIN, INT64_MAX)
static inline uint8_t sat_uint8_t(double v) { return (uint8_t)(uint64_t)sat_int64_t(v); } /* wraps, as int to u8 */

void td__store_double(int dt, void *p, double v) {
    switch (dt) {
    case TD_F32: *(float *)p = (float)v; break;
    case TD_F64: *(double *)p = v; break;
    case TD_I32: *(int32_t *)p = sat_int32_t(v); break;
    case TD_I64: *(int64_t *)p = sat_int64_t(v); break;
    default: *(uint8_t *)p = sat_uint8_t(v); break;
    }
}

/* One conversion loop per (source, destination) pair; integers convert to
 * integers exactly (modulo the destination's width, as numpy's casts). */
#define CONV(ST, DT, EXPR)                                                                                    \
    static void conv_##ST##_##DT(const char *s, int64_t ss, char *d, int64_t ds, int64_t n) {                 \
        for (int64_t i = 0; i < n; i++) {                                                                     \
            ST x = *(const ST *)(s + i * ss);                                                                 \
            *(DT *)(d + i * ds) = (EXPR);                                                                     \
        }                                                                                                     \
    }
#define CONV_FROM_INT(ST)                                                                                     \
    CONV(ST, float, (float)x)                                                                                 \
    CONV(ST, double, (double)x)                                                                               \
    CONV(ST, int32_t, (int32_t)(uint32_t)(uint64_t)(int64_t)x)                                                \
    CONV(ST, int64_t, (int64_t)x)                                                                             \
    CONV(ST, uint8_t, (uint8_t)(uint64_t)(int64_t)x)
#define CONV_FROM_FLOAT(ST)                                                                                   \
    CONV(ST, float, (float)x)                                                                                 \
    CONV(ST, double, (double)x)                                                                               \
    CONV(ST, int32_t, sat_int32_t((double)x))                                                                 \
    CONV(ST, int64_t, sat_int64_t((double)x))                                                                 \
    CONV(ST, uint8_t, sat_uint8_t((double)x))
CONV_FROM_FLOAT(float)
CONV_FROM_FLOAT(double)
CONV_FROM_INT(int32_t)
CONV_FROM_INT(int64_t)
CONV_FROM_INT(uint8_t)

typedef void (*conv_fn)(const char *, int64_t, char *, int64_t, int64_t);
#define CONV_ROW(ST) {conv_##ST##_float, conv_##ST##_double, conv_##ST##_int32_t, conv_##ST##_int64_t, conv_##ST##_uint8_t}
static const conv_fn convs[TD_DTYPE_COUNT][TD_DTYPE_COUNT] = {
    CONV_ROW(float), CONV_ROW(double), CONV_ROW(int32_t), CONV_ROW(int64_t), CONV_ROW(uint8_t)};

static void convert(int sd, const char *s, int64_t ss, int dd, char *d, int64_t ds, int64_t n) {
    convs[sd][dd](s, ss, d, ds, n);
}

void td__convert(int sd, const char *src, int64_t ss, int dd, char *dst, int64_t n) {
    convert(sd, src, ss, dd, dst, (int64_t)td_dtype_size(dd), n);
}

/* ---- inner loops ---- */
#define LOOP2(NAME, T, OT, EXPR)                                                                              \
    static void NAME(int64_t n, char *o, int64_t so, const char *a, int64_t sa, const char *b, int64_t sb) {  \
        if (so == (int64_t)sizeof(OT) && sa == (int64_t)sizeof(T) && sb == (int64_t)sizeof(T)) {              \
            OT *po = (OT *)o;                                                                                 \
            const T *pa = (const T *)a, *pb = (const T *)b;                                                   \
            for (int64_t i = 0; i < n; i++) {                                                                 \
                T x = pa[i], y = pb[i];                                                                       \
                po[i] = (EXPR);                                                                               \
            }                                                                                                 \
        } else if (so == (int64_t)sizeof(OT) && sa == (int64_t)sizeof(T) && sb == 0) {                        \
            OT *po = (OT *)o;                                                                                 \
            const T *pa = (const T *)a;                                                                       \
            const T y = *(const T *)b;                                                                        \
            for (int64_t i = 0; i < n; i++) {                                                                 \
                T x = pa[i];                                                                                  \
                po[i] = (EXPR);                                                                               \
            }                                                                                                 \
        } else if (so == (int64_t)sizeof(OT) && sa == 0 && sb == (int64_t)sizeof(T)) {                        \
            OT *po = (OT *)o;                                                                                 \
            const T x = *(const T *)a;                                                                        \
            const T *pb = (const T *)b;                                                                       \
            for (int64_t i = 0; i < n; i++) {                                                                 \
                T y = pb[i];                                                                                  \
                po[i] = (EXPR);                                                                               \
            }                                                                                                 \
        } else {                                                                                              \
            for (int64_t i = 0; i < n; i++) {                                                                 \
                T x = *(const T *)(a + i * sa), y = *(const T *)(b + i * sb);                                 \
                *(OT *)(o + i * so) = (EXPR);                                                                 \
            }                                                                                                 \
        }                                                                                                     \
    }

static inline int64_t ipow64(int64_t x, int64_t e) {
    if (e < 0) {
        tls_loop_error = 1;
        return 0;
    }
    uint64_t r = 1, b = (uint64_t)x;
    while (e) {
        if (e & 1) r *= b;
        b *= b;
        e >>= 1;
    }
    return (int64_t)r;
}

#define WRAP(T, UT, OP) ((T)(UT)((UT)x OP (UT)y))
#define FMAX(x, y) (((x) != (x) || (x) > (y)) ? (x) : (y))
#define FMIN(x, y) (((x) != (x) || (x) < (y)) ? (x) : (y))
#define IMAX(x, y) ((x) > (y) ? (x) : (y))
#define IMIN(x, y) ((x) < (y) ? (x) : (y))

#define FLOAT_LOOPS(T, SUF, POWF)                                                                             \
    LOOP2(add_##SUF, T, T, x + y)                                                                             \
    LOOP2(sub_##SUF, T, T, x - y)                                                                             \
    LOOP2(mul_##SUF, T, T, x * y)                                                                             \
    LOOP2(div_##SUF, T, T, x / y)                                                                             \
    LOOP2(pow_##SUF, T, T, POWF(x, y))                                                                        \
    LOOP2(max_##SUF, T, T, FMAX(x, y))                                                                        \
    LOOP2(min_##SUF, T, T, FMIN(x, y))
#define INT_LOOPS(T, UT, SUF)                                                                                 \
    LOOP2(add_##SUF, T, T, WRAP(T, UT, +))                                                                    \
    LOOP2(sub_##SUF, T, T, WRAP(T, UT, -))                                                                    \
    LOOP2(mul_##SUF, T, T, WRAP(T, UT, *))                                                                    \
    LOOP2(pow_##SUF, T, T, (T)ipow64((int64_t)x, (int64_t)y))                                                 \
    LOOP2(max_##SUF, T, T, IMAX(x, y))                                                                        \
    LOOP2(min_##SUF, T, T, IMIN(x, y))
#define CMP_LOOPS(T, SUF)                                                                                     \
    LOOP2(eq_##SUF, T, uint8_t, x == y)                                                                       \
    LOOP2(ne_##SUF, T, uint8_t, x != y)                                                                       \
    LOOP2(lt_##SUF, T, uint8_t, x < y)                                                                        \
    LOOP2(le_##SUF, T, uint8_t, x <= y)                                                                       \
    LOOP2(gt_##SUF, T, uint8_t, x > y)                                                                        \
    LOOP2(ge_##SUF, T, uint8_t, x >= y)

FLOAT_LOOPS(float, f32, powf)
FLOAT_LOOPS(double, f64, pow)
INT_LOOPS(int32_t, uint32_t, i32)
INT_LOOPS(int64_t, uint64_t, i64)
INT_LOOPS(uint8_t, uint8_t, u8)
CMP_LOOPS(float, f32)
CMP_LOOPS(double, f64)
CMP_LOOPS(int32_t, i32)
CMP_LOOPS(int64_t, i64)
CMP_LOOPS(uint8_t, u8)

#define COPY_LOOP(T, SUF)                                                                                     \
    static void copy_##SUF(int64_t n, char *o, int64_t so, const char *a, int64_t sa, const char *b, int64_t sb) { \
        (void)b;                                                                                              \
        (void)sb;                                                                                             \
        if (so == (int64_t)sizeof(T) && sa == (int64_t)sizeof(T)) {                                          \
            memmove(o, a, (size_t)n * sizeof(T));                                                             \
        } else if (so == (int64_t)sizeof(T) && sa == 0) {                                                     \
            T *po = (T *)o;                                                                                   \
            const T v = *(const T *)a;                                                                        \
            for (int64_t i = 0; i < n; i++) po[i] = v;                                                        \
        } else {                                                                                              \
            for (int64_t i = 0; i < n; i++) *(T *)(o + i * so) = *(const T *)(a + i * sa);                    \
        }                                                                                                     \
    }
COPY_LOOP(float, f32)
COPY_LOOP(double, f64)
COPY_LOOP(int32_t, i32)
COPY_LOOP(int64_t, i64)
COPY_LOOP(uint8_t, u8)

#define ROW(op) {op##_f32, op##_f64, op##_i32, op##_i64, op##_u8}
#define FROW(op) {op##_f32, op##_f64, NULL, NULL, NULL}
static const loop_fn loops[TD__EW_COUNT][TD_DTYPE_COUNT] = {
    [TD__EW_COPY] = ROW(copy), [TD__EW_ADD] = ROW(add), [TD__EW_SUB] = ROW(sub), [TD__EW_MUL] = ROW(mul),
    [TD__EW_DIV] = FROW(div),  [TD__EW_POW] = ROW(pow), [TD__EW_MAX] = ROW(max), [TD__EW_MIN] = ROW(min),
    [TD__EW_EQ] = ROW(eq),     [TD__EW_NE] = ROW(ne),   [TD__EW_LT] = ROW(lt),   [TD__EW_LE] = ROW(le),
    [TD__EW_GT] = ROW(gt),     [TD__EW_GE] = ROW(ge)};

static int is_compare(int code) { return code >= TD__EW_EQ; }

/* ---- the plan and its chunks ---- */
typedef struct {
    int nd;
    int64_t shape[TD_MAX_DIMS];
    int nops;                     /* operands besides out: 1 or 2 */
    char *ptr[3];                 /* out, a, b */
    int64_t str[3][TD_MAX_DIMS];  /* byte strides */
    int dt[3];
    int cdt, ldt;                 /* compute dtype; dtype the loop writes */
    int stream;                   /* write the output with non-temporal stores */
    loop_fn fn;
    atomic_int err;
} plan;

/* Copies bytes from a cache-resident block to dst with non-temporal stores,
 * which write whole lines without reading them first: for outputs far larger
 * than the cache that saves a third of the memory traffic of a write. */
static void stream_copy(char *dst, const char *src, size_t bytes) {
#if defined(__SSE2__)
    size_t head = (16 - ((uintptr_t)dst & 15)) & 15;
    if (head > bytes) head = bytes;
    memcpy(dst, src, head);
    dst += head, src += head, bytes -= head;
    for (; bytes >= 16; bytes -= 16, dst += 16, src += 16)
        _mm_stream_si128((__m128i *)dst, _mm_loadu_si128((const __m128i *)src));
#endif
    memcpy(dst, src, bytes);
}

static void run_segment(plan *p, int64_t n, char *po, char *pa, char *pb);

/* The output side of a segment when streaming: compute BLOCK elements at a
 * time into a buffer, then stream them out. */
static void run_segment_streamed(plan *p, int64_t n, char *po, char *pa, char *pb) {
    int64_t sa = p->str[1][p->nd - 1], sb = p->nops > 1 ? p->str[2][p->nd - 1] : 0;
    int64_t oe = (int64_t)td_dtype_size(p->dt[0]);
    _Alignas(64) char buf[BLOCK * 8];
    plan q = *p; /* the same plan, writing a contiguous block */
    q.stream = 0;
    q.str[0][q.nd - 1] = oe;
    for (int64_t done = 0; done < n;) {
        int64_t m = n - done < BLOCK ? n - done : BLOCK;
        run_segment(&q, m, buf, pa, pb);
        stream_copy(po, buf, (size_t)(m * oe));
        done += m;
        po += m * oe;
        pa += m * sa;
        pb += m * sb;
    }
}

static void run_segment(plan *p, int64_t n, char *po, char *pa, char *pb) {
    if (p->stream && p->str[0][p->nd - 1] == (int64_t)td_dtype_size(p->dt[0])) {
        run_segment_streamed(p, n, po, pa, pb);
        return;
    }
    int64_t so = p->str[0][p->nd - 1], sa = p->str[1][p->nd - 1], sb = p->nops > 1 ? p->str[2][p->nd - 1] : 0;
    int conv_a = p->dt[1] != p->cdt, conv_b = p->nops > 1 && p->dt[2] != p->cdt, conv_o = p->dt[0] != p->ldt;
    if (!conv_a && !conv_b && !conv_o) {
        p->fn(n, po, so, pa, sa, pb, sb);
        return;
    }
    _Alignas(64) char ta[BLOCK * 8], tb[BLOCK * 8], to[BLOCK * 8];
    int64_t ce = (int64_t)td_dtype_size(p->cdt), le = (int64_t)td_dtype_size(p->ldt);
    for (int64_t done = 0; done < n;) {
        int64_t m = n - done < BLOCK ? n - done : BLOCK;
        const char *xa = pa, *xb = pb;
        int64_t xsa = sa, xsb = sb;
        if (conv_a) {
            /* A broadcast operand (stride 0) needs converting once. */
            convert(p->dt[1], pa, sa, p->cdt, ta, ce, sa ? m : 1);
            xa = ta;
            xsa = sa ? ce : 0;
        }
        if (conv_b) {
            convert(p->dt[2], pb, sb, p->cdt, tb, ce, sb ? m : 1);
            xb = tb;
            xsb = sb ? ce : 0;
        }
        if (conv_o) {
            p->fn(m, to, le, xa, xsa, xb, xsb);
            convert(p->ldt, to, le, p->dt[0], po, so, m);
        } else {
            p->fn(m, po, so, xa, xsa, xb, xsb);
        }
        done += m;
        po += m * so;
        pa += m * sa;
        if (p->nops > 1) pb += m * sb;
    }
}

void td__nd_walk(int nd, const int64_t *shape, int nops, char *const *base, const int64_t (*str)[TD_MAX_DIMS],
                 int64_t b, int64_t e, td__seg_fn seg, void *arg) {
    int64_t idx[TD_MAX_DIMS], rem = b;
    for (int d = nd - 1; d >= 0; d--) {
        idx[d] = rem % shape[d];
        rem /= shape[d];
    }
    while (b < e) {
        int64_t take = shape[nd - 1] - idx[nd - 1];
        if (take > e - b) take = e - b;
        char *ptr[TD__WALK_MAX];
        for (int k = 0; k < nops; k++) {
            int64_t off = 0;
            for (int d = 0; d < nd; d++) off += idx[d] * str[k][d];
            ptr[k] = base[k] + off;
        }
        seg(arg, take, ptr);
        b += take;
        idx[nd - 1] += take;
        for (int d = nd - 1; d > 0 && idx[d] >= shape[d]; d--) {
            idx[d] = 0;
            idx[d - 1]++;
        }
    }
}

static void ew_segment(void *arg, int64_t n, char **ptr) {
    plan *p = arg;
    run_segment(p, n, ptr[0], ptr[1], p->nops > 1 ? ptr[2] : ptr[1]);
}

static void run_chunk(void *arg, int64_t b, int64_t e) {
    plan *p = arg;
    tls_loop_error = 0;
    td__nd_walk(p->nd, p->shape, p->nops + 1, p->ptr, (const int64_t (*)[TD_MAX_DIMS])p->str, b, e, ew_segment, p);
    if (tls_loop_error) atomic_store(&p->err, 1);
#if defined(__SSE2__)
    if (p->stream) _mm_sfence(); /* streamed stores are visible before the op ends */
#endif
}

/* Byte strides of operand x along the output's dims (0 where broadcast). */
static void operand_strides(const td_array *x, int nd, const int64_t *shape, int64_t *out) {
    int64_t es = (int64_t)td_dtype_size(x->dtype);
    for (int i = nd - 1, j = x->ndim - 1; i >= 0; i--, j--)
        out[i] = (j >= 0 && x->shape[j] == shape[i] && shape[i] != 1) ? x->strides[j] * es : 0;
}

td_status td__ew_kernel(const td__call *c, const td_exec *ex) {
    const td__ew_attrs *at = (const td__ew_attrs *)c->attrs;
    loop_fn fn = loops[at->code][at->cdt];
    if (!fn) {
        td_exec_set_error(ex, "no %s loop for %s", c->desc->name, td_dtype_name(at->cdt));
        return TD_EDTYPE;
    }
    return td__ew_run(c, ex, fn, at->cdt, is_compare(at->code) ? TD_U8 : at->cdt,
                      at->code == TD__EW_COPY ? 1 : 2, at->scalar_pos, at->sbuf);
}

/* The element stride of x (in bytes) when it holds its n elements densely
 * in C order (or is a single element: stride 0), else -1. */
static int64_t dense_stride(const td_array *x, int64_t n) {
    int64_t es = (int64_t)td_dtype_size(x->dtype), want = 1;
    if (n == 1) return 0;
    for (int i = x->ndim - 1; i >= 0; i--) {
        if (x->shape[i] == 1) continue;
        if (x->strides[i] != want) return -1;
        want *= x->shape[i];
    }
    return want == n ? es : -1;
}

/* Small ops over dense operands of the loop's own dtypes: one call of the
 * loop, no plan.  Returns 0 when the op does not qualify. */
static int run_small(const td__call *c, td__loop_fn fn, int cdt, int ldt, int nops, int scalar_pos,
                     const void *scalar, int64_t n) {
    const td_array *out = c->out;
    if (n > GRAIN || out->dtype != ldt) return 0;
    int64_t so = dense_stride(out, n), st[2] = {0, 0};
    const char *ptr[2] = {scalar, scalar};
    if (so < 0) return 0;
    for (int k = 0, ai = 0; k < nops; k++) {
        if (scalar_pos == k + 1) continue;
        const td_array *x = c->in[ai++];
        if (x->dtype != cdt) return 0;
        st[k] = td_numel(x) == 1 ? 0 : dense_stride(x, n); /* one element broadcasts with stride 0 */
        if (st[k] < 0) return 0;
        ptr[k] = td__array_ptr(x);
    }
    tls_loop_error = 0;
    fn(n, td__array_ptr(out), so, ptr[0], st[0], ptr[1], st[1]);
    return 1;
}

td_status td__ew_run(const td__call *c, const td_exec *ex, td__loop_fn fn, int cdt, int ldt, int nops,
                     int scalar_pos, const void *scalar) {
    const td_array *out = c->out;
    plan p; /* every field read below is set below */
    int64_t n = td_numel(out);
    if (n == 0) return TD_OK;
    if (run_small(c, fn, cdt, ldt, nops, scalar_pos, scalar, n)) {
        if (!tls_loop_error) return TD_OK;
        td_exec_set_error(ex, "%s", c->desc->code_error ? c->desc->code_error : "invalid input value");
        return TD_EFAILED;
    }
    p.cdt = cdt;
    p.ldt = ldt;
    p.fn = fn;
    p.nops = nops;
    struct {
        int scalar_pos;
        const unsigned char *sbuf;
        int cdt;
    } sc = {scalar_pos, scalar, cdt}, *at = &sc;
    /* Operands in order: out, left, right; the scalar (if any) takes its
     * side with stride 0 and is already of the compute dtype. */
    const td_array *ops[2] = {NULL, NULL};
    int ai = 0;
    for (int k = 0; k < p.nops; k++) {
        if (at->scalar_pos == k + 1) continue;
        ops[k] = c->in[ai++];
    }
    int nd = out->ndim;
    int64_t shape[TD_MAX_DIMS];
    memcpy(shape, out->shape, sizeof shape);
    p.ptr[0] = td__array_ptr(out);
    p.dt[0] = out->dtype;
    for (int i = 0; i < nd; i++) p.str[0][i] = out->strides[i] * (int64_t)td_dtype_size(out->dtype);
    for (int k = 0; k < p.nops; k++) {
        if (ops[k]) {
            p.ptr[k + 1] = td__array_ptr(ops[k]);
            p.dt[k + 1] = ops[k]->dtype;
            operand_strides(ops[k], nd, shape, p.str[k + 1]);
        } else {
            p.ptr[k + 1] = (char *)at->sbuf; /* the scalar, already of the compute dtype */
            p.dt[k + 1] = at->cdt;
            for (int i = 0; i < nd; i++) p.str[k + 1][i] = 0;
        }
    }
    /* Merge dims that are contiguous for every operand; drop size-1 dims. */
    int m = 0;
    int64_t mshape[TD_MAX_DIMS], mstr[3][TD_MAX_DIMS];
    for (int i = 0; i < nd; i++) {
        if (shape[i] == 1) continue;
        int merge = m > 0;
        for (int k = 0; merge && k <= p.nops; k++) merge = mstr[k][m - 1] == p.str[k][i] * shape[i];
        if (merge) {
            mshape[m - 1] *= shape[i];
            for (int k = 0; k <= p.nops; k++) mstr[k][m - 1] = p.str[k][i];
        } else {
            mshape[m] = shape[i];
            for (int k = 0; k <= p.nops; k++) mstr[k][m] = p.str[k][i];
            m++;
        }
    }
    if (m == 0) {
        mshape[0] = 1;
        for (int k = 0; k <= p.nops; k++) mstr[k][0] = 0;
        m = 1;
    }
    p.nd = m;
    /* Stream outputs larger than half the last-level cache: they would only
     * evict the inputs, and the next op will not find them there anyway. */
    size_t llc = out->st->dev->l3_bytes ? out->st->dev->l3_bytes : ((size_t)32 << 20);
    p.stream = (size_t)n * td_dtype_size(out->dtype) > llc / 2;
    memcpy(p.shape, mshape, sizeof mshape);
    memcpy(p.str, mstr, sizeof mstr);
    atomic_init(&p.err, 0);
    td_status st = td_parallel_for(ex, n, GRAIN, run_chunk, &p);
    if (st != TD_OK) return st;
    if (atomic_load(&p.err)) {
        td_exec_set_error(ex, "%s", c->desc->code_error ? c->desc->code_error : "invalid input value");
        return TD_EFAILED;
    }
    return TD_OK;
}

/* ---- fusion: out = outer(x, inner(y, z)) in one pass ----
 * A consumer whose input is the output of a still-deferred elementwise op
 * (see "Fusion" in ops/invoke.c) computes that input block by block into a
 * buffer that stays in the cache and reads it from there, so the
 * intermediate array never goes through memory.  Only float ops without
 * conversions fuse: every array and both ops in one float dtype, no
 * comparison, the intermediate of the output's shape. */
typedef struct {
    int ocode, icode, cdt;
    int tmp_side;            /* 1: the intermediate is outer's left operand; 2: its right */
    int o_scalar;            /* outer's other operand is the scalar osbuf */
    int i_pos;               /* inner's scalar position (0: none; 1 left; 2 right) */
    int n_o;                 /* arrays of outer's other operand in c->in (0 or 1, first) */
    _Alignas(8) unsigned char osbuf[8], isbuf[8];
} fused_attrs;

static int fusable_at(const td__ew_attrs *at) {
    return (at->cdt == TD_F32 || at->cdt == TD_F64) && !is_compare(at->code) && at->code != TD__EW_COPY &&
           loops[at->code][at->cdt] != NULL;
}

int td__ew_fuse_plan(const td__call *c, int xi, const td__ew_attrs *iat, td_array *const *iin, int in_n,
                     void *attrs_out, td_array **in_out, int *n_out) {
    const td__ew_attrs *oat = (const td__ew_attrs *)c->attrs;
    const td_array *tmp = c->in[xi], *out = c->out;
    _Static_assert(sizeof(fused_attrs) <= TD__ATTR_BYTES, "fused attrs fit a call");
    if (c->desc->kernel[0] != td__ew_kernel || !fusable_at(oat) || !fusable_at(iat) || iat->cdt != oat->cdt) return 0;
    int cdt = oat->cdt;
    if (out->dtype != cdt || tmp->dtype != cdt || tmp->ndim != out->ndim) return 0;
    for (int i = 0; i < out->ndim; i++)
        if (tmp->shape[i] != out->shape[i]) return 0;
    for (int i = 0; i < c->n_in; i++)
        if (c->in[i]->dtype != cdt) return 0;
    for (int i = 0; i < in_n; i++)
        if (iin[i]->dtype != cdt) return 0;
    fused_attrs fa = {.ocode = oat->code, .icode = iat->code, .cdt = cdt, .i_pos = iat->scalar_pos};
    memcpy(fa.isbuf, iat->sbuf, sizeof fa.isbuf);
    int n = 0;
    if (oat->scalar_pos) {
        fa.tmp_side = oat->scalar_pos == 1 ? 2 : 1;
        fa.o_scalar = 1;
        memcpy(fa.osbuf, oat->sbuf, sizeof fa.osbuf);
    } else {
        fa.tmp_side = xi + 1;
        in_out[n++] = c->in[1 - xi];
        fa.n_o = 1;
    }
    for (int i = 0; i < in_n; i++) in_out[n++] = iin[i];
    *n_out = n;
    memcpy(attrs_out, &fa, sizeof fa);
    return 1;
}

typedef struct {
    int nd, stream;
    int64_t shape[TD_MAX_DIMS];
    char *ptr[4];                /* out, outer's other, inner's left, inner's right */
    int64_t str[4][TD_MAX_DIMS]; /* byte strides (0: a scalar or broadcast) */
    int64_t es;
    loop_fn fo, fi;
    int tmp_side;
} fplan;

static void fused_segment(const fplan *p, int64_t n, char **ptr) {
    int nd = p->nd;
    int64_t s[4];
    for (int k = 0; k < 4; k++) s[k] = p->str[k][nd - 1];
    _Alignas(64) char tmp[BLOCK * 8], res[BLOCK * 8];
    char *po = ptr[0], *px = ptr[1], *pa = ptr[2], *pb = ptr[3];
    int stream = p->stream && s[0] == p->es;
    for (int64_t done = 0; done < n;) {
        int64_t m = n - done < BLOCK ? n - done : BLOCK;
        p->fi(m, tmp, p->es, pa, s[2], pb, s[3]);
        char *dst = stream ? res : po;
        int64_t sd = stream ? p->es : s[0];
        if (p->tmp_side == 1) p->fo(m, dst, sd, tmp, p->es, px, s[1]);
        else p->fo(m, dst, sd, px, s[1], tmp, p->es);
        if (stream) stream_copy(po, res, (size_t)(m * p->es));
        done += m;
        po += m * s[0];
        px += m * s[1];
        pa += m * s[2];
        pb += m * s[3];
    }
}

static void fused_seg(void *arg, int64_t n, char **ptr) { fused_segment(arg, n, ptr); }

static void fused_chunk(void *arg, int64_t b, int64_t e) {
    const fplan *p = arg;
    td__nd_walk(p->nd, p->shape, 4, p->ptr, (const int64_t (*)[TD_MAX_DIMS])p->str, b, e, fused_seg, (void *)p);
#if defined(__SSE2__)
    if (p->stream) _mm_sfence();
#endif
}

static td_status fused_kernel(const td__call *c, const td_exec *ex) {
    const fused_attrs *fa = (const fused_attrs *)c->attrs;
    const td_array *out = c->out;
    int64_t n = td_numel(out);
    if (n == 0) return TD_OK;
    fplan p;
    p.fo = loops[fa->ocode][fa->cdt];
    p.fi = loops[fa->icode][fa->cdt];
    p.tmp_side = fa->tmp_side;
    p.es = (int64_t)td_dtype_size(fa->cdt);
    int nd = out->ndim;
    int64_t str[4][TD_MAX_DIMS];
    char *ptr[4];
    ptr[0] = td__array_ptr(out);
    for (int i = 0; i < nd; i++) str[0][i] = out->strides[i] * p.es;
    int ai = 0;
    /* outer's other operand */
    if (fa->o_scalar) {
        ptr[1] = (char *)fa->osbuf;
        for (int i = 0; i < nd; i++) str[1][i] = 0;
    } else {
        ptr[1] = td__array_ptr(c->in[ai]);
        operand_strides(c->in[ai], nd, out->shape, str[1]);
        ai++;
    }
    /* inner's operands, left and right */
    for (int k = 2; k < 4; k++) {
        if (fa->i_pos == k - 1) {
            ptr[k] = (char *)fa->isbuf;
            for (int i = 0; i < nd; i++) str[k][i] = 0;
        } else {
            ptr[k] = td__array_ptr(c->in[ai]);
            operand_strides(c->in[ai], nd, out->shape, str[k]);
            ai++;
        }
    }
    /* Merge dims contiguous for every operand; drop size-1 dims. */
    int m = 0;
    for (int i = 0; i < nd; i++) {
        if (out->shape[i] == 1) continue;
        int merge = m > 0;
        for (int k = 0; merge && k < 4; k++) merge = p.str[k][m - 1] == str[k][i] * out->shape[i];
        if (merge) {
            p.shape[m - 1] *= out->shape[i];
            for (int k = 0; k < 4; k++) p.str[k][m - 1] = str[k][i];
        } else {
            p.shape[m] = out->shape[i];
            for (int k = 0; k < 4; k++) p.str[k][m] = str[k][i];
            m++;
        }
    }
    if (m == 0) {
        p.shape[0] = 1;
        for (int k = 0; k < 4; k++) p.str[k][0] = 0;
        m = 1;
    }
    p.nd = m;
    for (int k = 0; k < 4; k++) p.ptr[k] = ptr[k];
    size_t llc = out->st->dev->l3_bytes ? out->st->dev->l3_bytes : ((size_t)32 << 20);
    p.stream = (size_t)n * (size_t)p.es > llc / 2;
    return td_parallel_for(ex, n, GRAIN, fused_chunk, &p);
}

static td_status infer_fused(const td__call *c, int *dtype, int *ndim, int64_t *shape) {
    /* Only pushed with the consumer's output already made (td__invoke). */
    *dtype = c->out->dtype;
    *ndim = c->out->ndim;
    memcpy(shape, c->out->shape, sizeof(int64_t) * (size_t)*ndim);
    return TD_OK;
}

const td__opdesc td__op_fused = {.name = "fused", .api = "td_fused", .n_in = 3, .infer = infer_fused,
                                 .kernel = {fused_kernel, NULL}};

/* ---- descriptors ---- */
static td_status infer_binary(const td__call *c, int *dtype, int *ndim, int64_t *shape) {
    const td__ew_attrs *at = (const td__ew_attrs *)c->attrs;
    if (at->scalar_pos) {
        *ndim = c->in[0]->ndim;
        memcpy(shape, c->in[0]->shape, sizeof(int64_t) * (size_t)*ndim);
    } else if (td__broadcast_shapes(c->desc->api, c->in[0]->ndim, c->in[0]->shape, c->in[1]->ndim, c->in[1]->shape, ndim,
                                    shape) != TD_OK) {
        return TD_ESHAPE;
    }
    *dtype = is_compare(at->code) ? TD_U8 : at->cdt;
    return TD_OK;
}

static td_status infer_copy(const td__call *c, int *dtype, int *ndim, int64_t *shape) {
    const td__ew_attrs *at = (const td__ew_attrs *)c->attrs;
    const td_array *src = c->n_in ? c->in[0] : c->out;
    *ndim = src->ndim;
    memcpy(shape, src->shape, sizeof(int64_t) * (size_t)*ndim);
    *dtype = at->cdt;
    return TD_OK;
}

/* ---- gradients (autograd; arrays of the scope backward opens) ----
 * Each returns the gradient in the output's shape: backward sums it back to
 * a broadcast input's shape.  The scalar forms have one input and the scalar
 * at scalar_pos (1: left, 2: right).  maximum and minimum send the gradient
 * of a tie to the left operand a. */
#define GA (g->gin[0])
#define GB (g->gin[1])
#define EW_AT ((const td__ew_attrs *)g->attrs)

static td_status ew_done(td__gctx *g) {
    for (int i = 0; i < g->n_in; i++)
        if (g->need[i] && !g->gin[i]) return td_last_status();
    return TD_OK;
}

/* The scalar of a scalar form as a 0-d array of x's dtype. */
static td_array *scalar_like(const td_array *x, double v) { return td_full(x->dtype, 0, NULL, v, x->dev); }

static td_status grad_add(td__gctx *g) {
    for (int i = 0; i < g->n_in; i++) g->gin[i] = g->gout[0];
    return TD_OK;
}

static td_status grad_sub(td__gctx *g) {
    td_array *go = g->gout[0];
    if (EW_AT->scalar_pos == 1) GA = td_neg(go); /* s - a */
    else GA = go;
    if (g->n_in == 2 && g->need[1]) GB = td_neg(go);
    return ew_done(g);
}

static td_status grad_mul(td__gctx *g) {
    td_array *go = g->gout[0], *a = g->in[0];
    if (EW_AT->scalar_pos) {
        GA = td_mul_scalar(go, EW_AT->scalar);
        return ew_done(g);
    }
    td_array *b = g->in[1];
    if (g->need[0]) GA = td_mul(go, b);
    if (g->need[1]) GB = td_mul(go, a);
    return ew_done(g);
}

static td_status grad_div(td__gctx *g) {
    td_array *go = g->gout[0], *a = g->in[0], *out = g->out[0];
    switch (EW_AT->scalar_pos) {
    case 2: GA = td_div_scalar(go, EW_AT->scalar); break;          /* a / s */
    case 1: GA = td_neg(td_div(td_mul(go, out), a)); break;        /* s / a: -s / a^2 = -out / a */
    default:
        if (g->need[0]) GA = td_div(go, g->in[1]);
        if (g->need[1]) GB = td_neg(td_div(td_mul(go, out), g->in[1]));
    }
    return ew_done(g);
}

/* d(a^b)/db = a^b log(a), taken as 0 where a is 0 (the limit from above
 * for b > 0, as other frameworks do). */
static td_array *pow_exp_grad(td_array *go, td_array *a, td_array *out, double log_s, int scalar_base) {
    if (scalar_base) return td_mul_scalar(td_mul(go, out), log_s);
    td_array *zero = scalar_like(a, 0.0);
    return td_where(td_eq(a, zero), zero, td_mul(td_mul(go, out), td_log(a)));
}

static td_status grad_pow(td__gctx *g) {
    td_array *go = g->gout[0], *a = g->in[0], *out = g->out[0];
    double s = EW_AT->scalar;
    switch (EW_AT->scalar_pos) {
    case 2: GA = td_mul(go, td_mul_scalar(td_pow_scalar(a, s - 1.0), s)); break; /* a ** s */
    case 1: GA = pow_exp_grad(go, a, out, log(s), 1); break;                     /* s ** a */
    default: {
        td_array *b = g->in[1];
        if (g->need[0]) GA = td_mul(go, td_mul(b, td_pow(a, td_sub_scalar(b, 1.0))));
        if (g->need[1]) GB = pow_exp_grad(go, a, out, 0.0, 0);
    }
    }
    return ew_done(g);
}

/* maximum (mx) or minimum: the gradient goes to the operand that won, to a
 * on a tie. */
static td_status grad_extreme(td__gctx *g, int mx) {
    td_array *go = g->gout[0], *a = g->in[0];
    td_array *b = EW_AT->scalar_pos ? scalar_like(a, EW_AT->scalar) : g->in[1];
    if (g->need[0]) GA = td_mul(go, mx ? td_ge(a, b) : td_le(a, b));
    if (g->n_in == 2 && g->need[1]) GB = td_mul(go, mx ? td_lt(a, b) : td_gt(a, b));
    return ew_done(g);
}
static td_status grad_maximum(td__gctx *g) { return grad_extreme(g, 1); }
static td_status grad_minimum(td__gctx *g) { return grad_extreme(g, 0); }

#define EW_DESC(NAME, GRAD, SAVES)                                                                            \
    static const td__opdesc desc_##NAME = {.name = #NAME, .api = "td_" #NAME, .n_in = 2, .infer = infer_binary, \
                                           .kernel = {td__ew_kernel, NULL}, .grad = GRAD, .saves = SAVES,     \
                                           .fusable = 1,                                                      \
                                           .code_error = "integers to negative integer powers are not allowed"};
EW_DESC(add, grad_add, 0)
EW_DESC(sub, grad_sub, 0)
EW_DESC(mul, grad_mul, TD__SAVE_IN)
EW_DESC(div, grad_div, TD__SAVE_IN | TD__SAVE_OUT)
EW_DESC(pow, grad_pow, TD__SAVE_IN | TD__SAVE_OUT)
EW_DESC(maximum, grad_maximum, TD__SAVE_IN)
EW_DESC(minimum, grad_minimum, TD__SAVE_IN)
/* Comparisons give 0/1 arrays: not differentiable. */
EW_DESC(eq, NULL, 0)
EW_DESC(ne, NULL, 0)
EW_DESC(lt, NULL, 0)
EW_DESC(le, NULL, 0)
EW_DESC(gt, NULL, 0)
EW_DESC(ge, NULL, 0)
const td__opdesc td__op_copy = {.name = "copy", .api = "td_assign", .n_in = 1, .infer = infer_copy, .kernel = {td__ew_kernel, NULL}};

/* ---- public wrappers ---- */
static int int_dtype(int dt) { return dt == TD_I32 || dt == TD_I64 || dt == TD_U8; }

static td__ew_attrs binary_attrs(int code, const td_array *a, const td_array *b) {
    td__ew_attrs at = {.code = code, .cdt = td_promote_types(a->dtype, b->dtype)};
    if (code == TD__EW_DIV && int_dtype(at.cdt)) at.cdt = TD_F64; /* true division */
    return at;
}

/* A python-style scalar: integral values keep the array's dtype; others keep
 * a float array's dtype and make an integer array float64. */
static td__ew_attrs scalar_attrs(int code, const td_array *a, double s, int pos) {
    td__ew_attrs at = {.code = code, .cdt = a->dtype, .scalar_pos = pos, .scalar = s};
    int integral = isfinite(s) && s == floor(s);
    if (int_dtype(a->dtype) && !integral) at.cdt = TD_F64;
    if (code == TD__EW_DIV && int_dtype(at.cdt)) at.cdt = TD_F64;
    td__store_double(at.cdt, at.sbuf, s);
    return at;
}

#define BINARY(NAME, CODE)                                                                                    \
    td_array *td_##NAME(td_array *a, td_array *b) {                                                           \
        if (!a || !b) return NULL;                                                                            \
        td__ew_attrs at = binary_attrs(CODE, a, b);                                                           \
        td_array *in[2] = {a, b};                                                                             \
        return td__invoke(&desc_##NAME, in, 2, &at, sizeof at);                                              \
    }                                                                                                         \
    td_status td_##NAME##_out(td_array *a, td_array *b, td_array *out) {                                      \
        if (!a || !b) return td__fail(TD_EINVAL, "td_" #NAME "_out: input is NULL");                          \
        td__ew_attrs at = binary_attrs(CODE, a, b);                                                           \
        td_array *in[2] = {a, b};                                                                             \
        return td__invoke_out(&desc_##NAME, in, 2, &at, sizeof at, out, 0);                                   \
    }
BINARY(add, TD__EW_ADD)
BINARY(sub, TD__EW_SUB)
BINARY(mul, TD__EW_MUL)
BINARY(div, TD__EW_DIV)
BINARY(pow, TD__EW_POW)
BINARY(maximum, TD__EW_MAX)
BINARY(minimum, TD__EW_MIN)
BINARY(eq, TD__EW_EQ)
BINARY(ne, TD__EW_NE)
BINARY(lt, TD__EW_LT)
BINARY(le, TD__EW_LE)
BINARY(gt, TD__EW_GT)
BINARY(ge, TD__EW_GE)

#define SCALAR(FN, DESC, CODE, POS)                                                                           \
    td_array *FN(td_array *a, double s) {                                                                     \
        if (!a) return NULL;                                                                                  \
        td__ew_attrs at = scalar_attrs(CODE, a, s, POS);                                                      \
        return td__invoke(&desc_##DESC, &a, 1, &at, sizeof at);                                               \
    }                                                                                                         \
    td_status FN##_out(td_array *a, double s, td_array *out) {                                                \
        if (!a) return td__fail(TD_EINVAL, #FN "_out: input is NULL");                                        \
        td__ew_attrs at = scalar_attrs(CODE, a, s, POS);                                                      \
        return td__invoke_out(&desc_##DESC, &a, 1, &at, sizeof at, out, 0);                                   \
    }
#define RSCALAR(FN, DESC, CODE)                                                                               \
    td_array *FN(double s, td_array *a) {                                                                     \
        if (!a) return NULL;                                                                                  \
        td__ew_attrs at = scalar_attrs(CODE, a, s, 1);                                                        \
        return td__invoke(&desc_##DESC, &a, 1, &at, sizeof at);                                               \
    }                                                                                                         \
    td_status FN##_out(double s, td_array *a, td_array *out) {                                                \
        if (!a) return td__fail(TD_EINVAL, #FN "_out: input is NULL");                                        \
        td__ew_attrs at = scalar_attrs(CODE, a, s, 1);                                                        \
        return td__invoke_out(&desc_##DESC, &a, 1, &at, sizeof at, out, 0);                                   \
    }
SCALAR(td_add_scalar, add, TD__EW_ADD, 2)
SCALAR(td_sub_scalar, sub, TD__EW_SUB, 2)
SCALAR(td_mul_scalar, mul, TD__EW_MUL, 2)
SCALAR(td_div_scalar, div, TD__EW_DIV, 2)
SCALAR(td_pow_scalar, pow, TD__EW_POW, 2)
RSCALAR(td_scalar_sub, sub, TD__EW_SUB)
RSCALAR(td_scalar_div, div, TD__EW_DIV)
RSCALAR(td_scalar_pow, pow, TD__EW_POW)

td_array *td_maximum_scalar(td_array *a, double s) {
    if (!a) return NULL;
    td__ew_attrs at = scalar_attrs(TD__EW_MAX, a, s, 2);
    return td__invoke(&desc_maximum, &a, 1, &at, sizeof at);
}
td_array *td_minimum_scalar(td_array *a, double s) {
    if (!a) return NULL;
    td__ew_attrs at = scalar_attrs(TD__EW_MIN, a, s, 2);
    return td__invoke(&desc_minimum, &a, 1, &at, sizeof at);
}
