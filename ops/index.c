/* Indexing ops: take, one_hot, pick, scatter_add.
 *
 * Indices are TD_I32 or TD_I64 of any shape; a negative index counts from the
 * end.  Index values are known only when the op runs, so each kernel first
 * checks every index (a pass split over the workers that finds the first bad
 * one in C order, whatever the worker count) and fails with TD_EFAILED and a
 * message naming the index, its position and the axis size; the failure then
 * travels with the output to whoever waits on it.  scatter_add checks before
 * it adds anything, so a failed call leaves dst's values as they were (dst
 * still carries the error).
 *
 * Layout: an array is seen along the op's axis as (outer, n, inner): the axes
 * before the axis merged into one, the axis, the axes after it merged into
 * one (lay3).  Any 2-d or 3-d view merges so; an array whose outer or inner
 * axes do not merge (a permuted 4-d view, say) is read from a contiguous copy
 * made by an op pushed first, as are non-contiguous indices.  Outputs are
 * new C-contiguous arrays, except scatter_add's dst, which may be any view
 * that does not repeat elements; a dst whose axes do not merge is updated
 * through a contiguous copy assigned back.
 *
 * scatter_add is deterministic: it is split over the positions not along the
 * axis, so each chunk owns distinct dst elements and adds every update for an
 * element itself, in index order; results are bit-identical for any worker
 * count and engine.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <string.h>

#include "ops/internal.h"

enum { GRAIN = 32768, CHECK_GRAIN = 65536 };

static int64_t idx_at(const char *ip, int dt, int64_t j) {
    if (dt == TD_I32) {
        int32_t v;
        memcpy(&v, ip + 4 * j, 4);
        return v;
    }
    int64_t v;
    memcpy(&v, ip + 8 * j, 8);
    return v;
}

/* ---- layouts ---- */

/* An array along an axis: (outer, n, inner) with byte strides. */
typedef struct {
    int64_t outer, n, inner;
    int64_t so, sa, si;
} lay3;

/* Merges a's axes [lo, hi) into one (size, element stride); 0 when they do
 * not merge.  Empty ranges and size-1 axes merge trivially. */
static int merge_axes(const td_array *a, int lo, int hi, int64_t *size, int64_t *stride) {
    int64_t n = 1;
    for (int i = lo; i < hi; i++) n *= a->shape[i];
    *size = n;
    *stride = 0;
    if (n == 0) return 1; /* nothing is addressed */
    int m = 0;
    int64_t st = 0;
    for (int i = lo; i < hi; i++) {
        if (a->shape[i] == 1) continue;
        if (m && st != a->strides[i] * a->shape[i]) return 0;
        st = a->strides[i];
        m = 1;
    }
    *stride = st;
    return 1;
}

/* a along axis as (outer, n, inner); 0 when the outer or inner axes do not
 * merge. */
static int lay3_of(const td_array *a, int axis, lay3 *l) {
    int64_t so, si;
    if (!merge_axes(a, 0, axis, &l->outer, &so) || !merge_axes(a, axis + 1, a->ndim, &l->inner, &si)) return 0;
    int64_t es = (int64_t)td_dtype_size(a->dtype);
    l->n = a->shape[axis];
    l->so = so * es;
    l->sa = a->strides[axis] * es;
    l->si = si * es;
    return 1;
}

/* A private copy of a as a C-contiguous array of dtype (in no scope), made
 * by an op pushed now; NULL on failure. */
static td_array *private_copy(td_array *a, int dtype, const char *api) {
    td_array *o = td__array_new(dtype, a->ndim, a->shape, a->dev, api);
    if (!o) return NULL;
    td__ew_attrs at = {.code = TD__EW_COPY, .cdt = dtype};
    if (td__invoke_out(&td__op_copy, &a, 1, &at, sizeof at, o, 1) != TD_OK) {
        td__array_unref(o);
        return NULL;
    }
    return o;
}

/* a itself (retained) when it is C-contiguous, else a private copy. */
static td_array *contiguous_ref(td_array *a, const char *api) {
    if (td_is_contiguous(a)) return td_retain(a);
    return private_copy(a, a->dtype, api);
}

/* a itself (retained) when it merges along axis, else a private copy. */
static td_array *lay3_ref(td_array *a, int axis, const char *api) {
    lay3 l;
    if (lay3_of(a, axis, &l)) return td_retain(a);
    return private_copy(a, a->dtype, api);
}

/* ---- checks at push time ---- */

static int norm_axis(const char *api, int axis, int ndim) {
    if (axis < -ndim || axis >= ndim) {
        td__fail(TD_EINVAL, "%s: axis %d is out of range for %d dimension(s)", api, axis, ndim);
        return -1;
    }
    return axis < 0 ? axis + ndim : axis;
}

static td_status check_indices_dtype(const char *api, const td_array *ind) {
    if (ind->dtype != TD_I32 && ind->dtype != TD_I64)
        return td__fail(TD_EDTYPE, "%s: indices must be int32 or int64, not %s", api, td_dtype_name(ind->dtype));
    return TD_OK;
}

static td_status check_cpu(const char *api, const td_array *a, const td_array *b) {
    if (a->dev.kind != b->dev.kind || a->dev.id != b->dev.id)
        return td__fail(TD_EDEVICE, "%s: the arrays are on different devices; copy one first", api);
    if (a->dev.kind != TD_CPU) return td__fail(TD_EDEVICE, "%s has no kernel for this device", api);
    return TD_OK;
}

/* ---- the index check, when the op runs ---- */

typedef struct {
    const char *ip;
    int dt;
    int64_t n;      /* valid: [-n, n) */
    atomic_llong bad; /* the first bad position, or INT64_MAX */
} check_job;

static void check_chunk(void *arg, int64_t b, int64_t e) {
    check_job *c = arg;
    int64_t n = c->n;
    int any = 0;
    if (c->dt == TD_I32) {
        const int32_t *p = (const int32_t *)c->ip;
        for (int64_t j = b; j < e; j++) any |= (p[j] < -n) | (p[j] >= n);
    } else {
        const int64_t *p = (const int64_t *)c->ip;
        for (int64_t j = b; j < e; j++) any |= (p[j] < -n) | (p[j] >= n);
    }
    if (!any) return;
    int64_t j = b;
    for (;; j++) {
        int64_t k = idx_at(c->ip, c->dt, j);
        if (k < -n || k >= n) break;
    }
    long long cur = atomic_load(&c->bad);
    while (j < cur && !atomic_compare_exchange_weak(&c->bad, &cur, j)) {
    }
}

/* Checks the m indices at ip against an axis of size n; on a bad one, sets
 * the op's message (what: "axis 1 of size 5") and returns TD_EFAILED. */
static td_status check_indices(const td_exec *ex, const char *api, const td_array *ind, int64_t n,
                               const char *what) {
    int64_t m = td_numel(ind);
    check_job c = {.ip = td__array_ptr(ind), .dt = ind->dtype, .n = n};
    atomic_init(&c.bad, INT64_MAX);
    td_status st = td_parallel_for(ex, m, CHECK_GRAIN, check_chunk, &c);
    if (st != TD_OK) return st;
    int64_t j = atomic_load(&c.bad);
    if (j == INT64_MAX) return TD_OK;
    td_exec_set_error(ex, "%s: index %" PRId64 " (at flat position %" PRId64 " of the indices) is out of range for %s",
                      api, idx_at(c.ip, c.dt, j), j, what);
    return TD_EFAILED;
}

static inline int64_t wrap_index(int64_t k, int64_t n) { return k < 0 ? k + n : k; }

/* n elements of es bytes from s (byte stride ss) to contiguous d. */
static void gather_seg(size_t es, const char *s, int64_t ss, char *d, int64_t n) {
    if (ss == (int64_t)es) {
        memcpy(d, s, (size_t)n * es);
        return;
    }
#define GATHER(ES)                                                                                            \
    for (int64_t i = 0; i < n; i++) memcpy(d + i * (ES), s + i * ss, ES);                                     \
    return;
    switch (es) {
    case 1: GATHER(1)
    case 4: GATHER(4)
    default: GATHER(8)
    }
#undef GATHER
}

/* ---- take ---- */

typedef struct {
    int axis;
} axis_attrs;

typedef struct {
    lay3 a;
    const char *ap, *ip;
    char *op;
    int idt;
    int64_t m;   /* indices */
    size_t es;
} take_job;

/* out (outer, m, inner), C order: element (o, j, r) = a[o, idx[j], r]. */
static void take_chunk(void *arg, int64_t b, int64_t e) {
    const take_job *t = arg;
    int64_t inner = t->a.inner;
    int64_t row = b / inner, r = b % inner;
    while (b < e) {
        int64_t len = inner - r < e - b ? inner - r : e - b;
        int64_t o = row / t->m, j = row % t->m;
        int64_t k = wrap_index(idx_at(t->ip, t->idt, j), t->a.n);
        const char *src = t->ap + o * t->a.so + k * t->a.sa + r * t->a.si;
        gather_seg(t->es, src, t->a.si, t->op + (size_t)b * t->es, len);
        b += len;
        row++;
        r = 0;
    }
}

/* The same for inner 1 (a gather along the last axis): one element per
 * index, the loop specialised by element size and index type. */
#define TAKE1(NAME, ES, IT)                                                                                   \
    static void NAME(void *arg, int64_t b, int64_t e) {                                                       \
        const take_job *t = arg;                                                                              \
        const IT *ip = (const IT *)t->ip;                                                                     \
        int64_t m = t->m, n = t->a.n, sa = t->a.sa, j = b % m;                                               \
        const char *row = t->ap + (b / m) * t->a.so;                                                          \
        char *op = t->op + (size_t)b * (ES);                                                                  \
        for (int64_t q = b; q < e; q++, op += (ES)) {                                                         \
            int64_t k = ip[j];                                                                                \
            k += k < 0 ? n : 0;                                                                               \
            memcpy(op, row + k * sa, ES);                                                                     \
            if (++j == m) {                                                                                   \
                j = 0;                                                                                        \
                row += t->a.so;                                                                               \
            }                                                                                                 \
        }                                                                                                     \
    }
TAKE1(take1_1_i32, 1, int32_t)
TAKE1(take1_4_i32, 4, int32_t)
TAKE1(take1_8_i32, 8, int32_t)
TAKE1(take1_1_i64, 1, int64_t)
TAKE1(take1_4_i64, 4, int64_t)
TAKE1(take1_8_i64, 8, int64_t)
#undef TAKE1

static td_range_fn take1_fn(size_t es, int idt) {
    static const td_range_fn fns[2][3] = {{take1_1_i32, take1_4_i32, take1_8_i32},
                                          {take1_1_i64, take1_4_i64, take1_8_i64}};
    return fns[idt == TD_I64][es == 1 ? 0 : es == 4 ? 1 : 2];
}

static td_status take_kernel(const td__call *c, const td_exec *ex) {
    const axis_attrs *at = (const axis_attrs *)c->attrs;
    const td_array *a = c->in[0], *ind = c->in[1];
    take_job t = {.ap = td__array_ptr(a), .ip = td__array_ptr(ind), .op = td__array_ptr(c->out), .idt = ind->dtype,
                  .m = td_numel(ind), .es = td_dtype_size(a->dtype)};
    if (!lay3_of(a, at->axis, &t.a)) {
        td_exec_set_error(ex, "td_take: internal error: the input's layout does not merge");
        return TD_EFAILED;
    }
    char what[64];
    snprintf(what, sizeof what, "axis %d of size %" PRId64, at->axis, t.a.n);
    td_status st = check_indices(ex, "td_take", ind, t.a.n, what);
    if (st != TD_OK) return st;
    int64_t total = td_numel(c->out);
    return td_parallel_for(ex, total, GRAIN, t.a.inner == 1 ? take1_fn(t.es, t.idt) : take_chunk, &t);
}

static td_status take_infer(const td__call *c, int *dtype, int *ndim, int64_t *shape) {
    const axis_attrs *at = (const axis_attrs *)c->attrs;
    const td_array *a = c->in[0], *ind = c->in[1];
    int n = 0;
    for (int d = 0; d < at->axis; d++) shape[n++] = a->shape[d];
    for (int d = 0; d < ind->ndim; d++) shape[n++] = ind->shape[d];
    for (int d = at->axis + 1; d < a->ndim; d++) shape[n++] = a->shape[d];
    *ndim = n;
    *dtype = a->dtype;
    return TD_OK;
}

/* take's gradient scatters the output gradient back (td_scatter_add adds
 * repeated indices up). */
static td_status grad_take(td__gctx *g) {
    int axis = ((const axis_attrs *)g->attrs)->axis;
    const td__meta *m = &g->in_meta[0];
    td_array *go = g->gout[0], *ind = g->in[1];
    td_status st;
    if (axis == TD_ALL_AXES) {
        int64_t n = td__shape_numel(m->ndim, m->shape);
        td_array *z = td_zeros(go->dtype, 1, &n, go->dev);
        if (!z) return td_last_status();
        if ((st = td_scatter_add(z, ind, go, 0)) != TD_OK) return st;
        g->gin[0] = td_reshape(z, m->ndim, m->shape);
    } else {
        td_array *z = td_zeros(go->dtype, m->ndim, m->shape, go->dev);
        if (!z) return td_last_status();
        if ((st = td_scatter_add(z, ind, go, axis)) != TD_OK) return st;
        g->gin[0] = z;
    }
    return g->gin[0] ? TD_OK : td_last_status();
}

static const td__opdesc desc_take = {.name = "take", .api = "td_take", .n_in = 2, .infer = take_infer,
                                     .kernel = {take_kernel, NULL}, .grad = grad_take, .saves = TD__SAVE_IN};

static td_array *take_impl(td_array *a, td_array *indices, int axis);

/* take and pick record with their own operands and the axis as given. */
td_array *td_take(td_array *a, td_array *indices, int axis) {
    if (!a || !indices) return NULL;
    td_array *in[2] = {a, indices};
    axis_attrs at = {axis};
    int rec = td__rec_begin(in, 2);
    return td__rec_end(rec, &desc_take, in, 2, &at, sizeof at, take_impl(a, indices, axis));
}

static td_array *take_impl(td_array *a, td_array *indices, int axis) {
    if (check_indices_dtype("td_take", indices) != TD_OK || check_cpu("td_take", a, indices) != TD_OK) return NULL;
    char s1[128], s2[128];
    td_array *src;
    int ax;
    if (axis == TD_ALL_AXES) {
        /* numpy's take with axis=None: a flattened (a view, or a copy). */
        int64_t n = td_numel(a), one = 1;
        td_array *c = contiguous_ref(a, "td_take");
        if (!c) return NULL;
        src = td__array_wrap(c->st, c->dtype, 1, &n, &one, c->offset);
        td__array_unref(c);
        if (!src) return NULL;
        ax = 0;
    } else {
        ax = norm_axis("td_take", axis, a->ndim);
        if (ax < 0) return NULL;
        if (a->ndim - 1 + indices->ndim > TD_MAX_DIMS) {
            td__fail(TD_ESHAPE, "td_take: a of shape %s with indices of shape %s gives more than %d dimensions",
                     td__shape_str(a->ndim, a->shape, s1, sizeof s1),
                     td__shape_str(indices->ndim, indices->shape, s2, sizeof s2), TD_MAX_DIMS);
            return NULL;
        }
        src = lay3_ref(a, ax, "td_take");
        if (!src) return NULL;
    }
    td_array *ind = contiguous_ref(indices, "td_take");
    if (!ind) {
        td__array_unref(src);
        return NULL;
    }
    axis_attrs at = {ax};
    td_array *in[2] = {src, ind};
    td_array *r = td__invoke(&desc_take, in, 2, &at, sizeof at);
    td__array_unref(src);
    td__array_unref(ind);
    return r;
}

/* ---- pick ---- */

typedef struct {
    lay3 a;
    const char *ap, *ip;
    char *op;
    int idt;
    size_t es;
} pick_job;

/* out (outer, inner), C order: element (o, r) = a[o, idx[o, r], r]. */
#define PICK(NAME, ES, IT)                                                                                    \
    static void NAME(void *arg, int64_t b, int64_t e) {                                                       \
        const pick_job *p = arg;                                                                              \
        const IT *ip = (const IT *)p->ip;                                                                     \
        int64_t inner = p->a.inner, n = p->a.n, sa = p->a.sa, r = b % inner;                                 \
        const char *row = p->ap + (b / inner) * p->a.so, *at = row + r * p->a.si;                            \
        char *op = p->op + (size_t)b * (ES);                                                                  \
        for (int64_t q = b; q < e; q++, op += (ES)) {                                                         \
            int64_t k = ip[q];                                                                                \
            k += k < 0 ? n : 0;                                                                               \
            memcpy(op, at + k * sa, ES);                                                                      \
            at += p->a.si;                                                                                    \
            if (++r == inner) {                                                                               \
                r = 0;                                                                                        \
                row += p->a.so;                                                                               \
                at = row;                                                                                     \
            }                                                                                                 \
        }                                                                                                     \
    }
PICK(pick_1_i32, 1, int32_t)
PICK(pick_4_i32, 4, int32_t)
PICK(pick_8_i32, 8, int32_t)
PICK(pick_1_i64, 1, int64_t)
PICK(pick_4_i64, 4, int64_t)
PICK(pick_8_i64, 8, int64_t)
#undef PICK

static td_range_fn pick_fn(size_t es, int idt) {
    static const td_range_fn fns[2][3] = {{pick_1_i32, pick_4_i32, pick_8_i32}, {pick_1_i64, pick_4_i64, pick_8_i64}};
    return fns[idt == TD_I64][es == 1 ? 0 : es == 4 ? 1 : 2];
}

static td_status pick_kernel(const td__call *c, const td_exec *ex) {
    const axis_attrs *at = (const axis_attrs *)c->attrs;
    const td_array *a = c->in[0], *ind = c->in[1];
    pick_job p = {.ap = td__array_ptr(a), .ip = td__array_ptr(ind), .op = td__array_ptr(c->out), .idt = ind->dtype,
                  .es = td_dtype_size(a->dtype)};
    if (!lay3_of(a, at->axis, &p.a)) {
        td_exec_set_error(ex, "td_pick: internal error: the input's layout does not merge");
        return TD_EFAILED;
    }
    char what[64];
    snprintf(what, sizeof what, "axis %d of size %" PRId64, at->axis, p.a.n);
    td_status st = check_indices(ex, "td_pick", ind, p.a.n, what);
    if (st != TD_OK) return st;
    return td_parallel_for(ex, td_numel(c->out), GRAIN, pick_fn(p.es, p.idt), &p);
}

static td_status pick_infer(const td__call *c, int *dtype, int *ndim, int64_t *shape) {
    const td_array *ind = c->in[1];
    *ndim = ind->ndim;
    memcpy(shape, ind->shape, sizeof(int64_t) * (size_t)ind->ndim);
    *dtype = c->in[0]->dtype;
    return TD_OK;
}

/* pick's gradient: the output gradient at the picked positions, zeros
 * elsewhere: one_hot(indices) moved to the axis, times the gradient. */
static td_status grad_pick(td__gctx *g) {
    int ax = ((const axis_attrs *)g->attrs)->axis;
    const td__meta *m = &g->in_meta[0];
    td_array *go = g->gout[0];
    td_array *oh = td_one_hot(g->in[1], m->shape[ax], go->dtype);
    int perm[TD_MAX_DIMS];
    for (int d = 0; d < m->ndim; d++) perm[d] = d < ax ? d : d == ax ? m->ndim - 1 : d - 1;
    g->gin[0] = td_mul(td_expand_dims(go, ax), td_transpose(oh, perm));
    return g->gin[0] ? TD_OK : td_last_status();
}

static const td__opdesc desc_pick = {.name = "pick", .api = "td_pick", .n_in = 2, .infer = pick_infer,
                                     .kernel = {pick_kernel, NULL}, .grad = grad_pick, .saves = TD__SAVE_IN};

/* Whether ind has a's shape without axis ax (want gets that shape). */
static int shape_without(const td_array *a, int ax, const td_array *ind, int64_t *want) {
    for (int d = 0, k = 0; d < a->ndim; d++)
        if (d != ax) want[k++] = a->shape[d];
    if (ind->ndim != a->ndim - 1) return 0;
    for (int d = 0; d < ind->ndim; d++)
        if (ind->shape[d] != want[d]) return 0;
    return 1;
}

static td_array *pick_impl(td_array *a, td_array *indices, int axis);

td_array *td_pick(td_array *a, td_array *indices, int axis) {
    if (!a || !indices) return NULL;
    td_array *in[2] = {a, indices};
    int rec = td__rec_begin(in, 2);
    /* The axis is normalised for the gradient (an out-of-range axis fails
     * in pick_impl before anything is recorded). */
    axis_attrs at = {axis < 0 ? axis + a->ndim : axis};
    return td__rec_end(rec, &desc_pick, in, 2, &at, sizeof at, pick_impl(a, indices, axis));
}

static td_array *pick_impl(td_array *a, td_array *indices, int axis) {
    if (check_indices_dtype("td_pick", indices) != TD_OK || check_cpu("td_pick", a, indices) != TD_OK) return NULL;
    int ax = norm_axis("td_pick", axis, a->ndim);
    if (ax < 0) return NULL;
    int64_t want[TD_MAX_DIMS];
    char s1[128], s2[128], s3[128];
    if (!shape_without(a, ax, indices, want)) {
        td__fail(TD_ESHAPE, "td_pick: indices of shape %s do not fit a of shape %s along axis %d (expected %s)",
                 td__shape_str(indices->ndim, indices->shape, s1, sizeof s1),
                 td__shape_str(a->ndim, a->shape, s2, sizeof s2), axis,
                 td__shape_str(a->ndim - 1, want, s3, sizeof s3));
        return NULL;
    }
    td_array *src = lay3_ref(a, ax, "td_pick");
    if (!src) return NULL;
    td_array *ind = contiguous_ref(indices, "td_pick");
    if (!ind) {
        td__array_unref(src);
        return NULL;
    }
    axis_attrs at = {ax};
    td_array *in[2] = {src, ind};
    td_array *r = td__invoke(&desc_pick, in, 2, &at, sizeof at);
    td__array_unref(src);
    td__array_unref(ind);
    return r;
}

/* ---- one_hot ---- */

typedef struct {
    int64_t depth;
    int dtype;
} one_hot_attrs;

typedef struct {
    const char *ip;
    int idt;
    char *op;
    int64_t depth;
    size_t es;
    _Alignas(8) unsigned char one[8];
} one_hot_job;

/* out (rows, depth), C order: 1 at (q, idx[q]), 0 elsewhere. */
static void one_hot_chunk(void *arg, int64_t b, int64_t e) {
    const one_hot_job *h = arg;
    int64_t depth = h->depth;
    memset(h->op + (size_t)b * h->es, 0, (size_t)(e - b) * h->es); /* 0 is all-zero bits in every dtype */
    for (int64_t q = b / depth; q * depth < e; q++) {
        int64_t k = q * depth + wrap_index(idx_at(h->ip, h->idt, q), depth);
        if (k >= b && k < e) memcpy(h->op + (size_t)k * h->es, h->one, h->es);
    }
}

static td_status one_hot_kernel(const td__call *c, const td_exec *ex) {
    const one_hot_attrs *at = (const one_hot_attrs *)c->attrs;
    const td_array *ind = c->in[0];
    one_hot_job h = {.ip = td__array_ptr(ind), .idt = ind->dtype, .op = td__array_ptr(c->out), .depth = at->depth,
                     .es = td_dtype_size(at->dtype)};
    td__store_double(at->dtype, h.one, 1.0);
    char what[64];
    snprintf(what, sizeof what, "depth %" PRId64, at->depth);
    td_status st = check_indices(ex, "td_one_hot", ind, at->depth, what);
    if (st != TD_OK) return st;
    return td_parallel_for(ex, td_numel(c->out), GRAIN, one_hot_chunk, &h);
}

static td_status one_hot_infer(const td__call *c, int *dtype, int *ndim, int64_t *shape) {
    const one_hot_attrs *at = (const one_hot_attrs *)c->attrs;
    const td_array *ind = c->in[0];
    memcpy(shape, ind->shape, sizeof(int64_t) * (size_t)ind->ndim);
    shape[ind->ndim] = at->depth;
    *ndim = ind->ndim + 1;
    *dtype = at->dtype;
    return TD_OK;
}

static const td__opdesc desc_one_hot = {.name = "one_hot", .api = "td_one_hot", .n_in = 1, .infer = one_hot_infer,
                                        .kernel = {one_hot_kernel, NULL}};

td_array *td_one_hot(td_array *indices, int64_t depth, int dtype) {
    if (!indices) return NULL;
    if (check_indices_dtype("td_one_hot", indices) != TD_OK || check_cpu("td_one_hot", indices, indices) != TD_OK ||
        td__check_dtype("td_one_hot", dtype) != TD_OK)
        return NULL;
    char s1[128];
    if (depth < 0) {
        td__fail(TD_EINVAL, "td_one_hot: depth must not be negative, not %" PRId64, depth);
        return NULL;
    }
    if (indices->ndim >= TD_MAX_DIMS) {
        td__fail(TD_ESHAPE, "td_one_hot: indices of shape %s give more than %d dimensions",
                 td__shape_str(indices->ndim, indices->shape, s1, sizeof s1), TD_MAX_DIMS);
        return NULL;
    }
    int64_t shape[TD_MAX_DIMS];
    memcpy(shape, indices->shape, sizeof(int64_t) * (size_t)indices->ndim);
    shape[indices->ndim] = depth;
    if (td__check_shape("td_one_hot", indices->ndim + 1, shape) != TD_OK) return NULL;
    td_array *ind = contiguous_ref(indices, "td_one_hot");
    if (!ind) return NULL;
    one_hot_attrs at = {depth, dtype};
    td_array *r = td__invoke(&desc_one_hot, &ind, 1, &at, sizeof at);
    td__array_unref(ind);
    return r;
}

/* ---- scatter_add ---- */

typedef struct {
    lay3 d, s;
    char *dp;
    const char *sp, *ip;
    int idt, dt;
    int64_t m;
} scatter_job;

/* d[i * ds] += s[i * ss] for i < n, in dtype dt (integers wrap). */
static void add_seg(int dt, char *d, int64_t ds, const char *s, int64_t ss, int64_t n) {
#define ADD(T, UT)                                                                                            \
    if (ds == (int64_t)sizeof(T) && ss == (int64_t)sizeof(T)) {                                               \
        T *pd = (T *)d;                                                                                       \
        const T *ps = (const T *)s;                                                                           \
        for (int64_t i = 0; i < n; i++) pd[i] = (T)(UT)((UT)pd[i] + (UT)ps[i]);                               \
    } else {                                                                                                  \
        for (int64_t i = 0; i < n; i++) {                                                                     \
            T *pd = (T *)(d + i * ds);                                                                        \
            *pd = (T)(UT)((UT)*pd + (UT) * (const T *)(s + i * ss));                                          \
        }                                                                                                     \
    }                                                                                                         \
    return;
    switch (dt) {
    case TD_F32: ADD(float, float)
    case TD_F64: ADD(double, double)
    case TD_I32: ADD(int32_t, uint32_t)
    case TD_I64: ADD(int64_t, uint64_t)
    default: ADD(uint8_t, uint8_t)
    }
#undef ADD
}

/* Positions [b, e) of (outer, inner): each gets every update, in index
 * order. */
static void scatter_chunk(void *arg, int64_t b, int64_t e) {
    const scatter_job *sj = arg;
    int64_t inner = sj->d.inner, n = sj->d.n;
    while (b < e) {
        int64_t o = b / inner, r = b % inner;
        int64_t len = inner - r < e - b ? inner - r : e - b;
        char *dbase = sj->dp + o * sj->d.so + r * sj->d.si;
        const char *sbase = sj->sp + o * sj->s.so + r * sj->s.si;
        for (int64_t j = 0; j < sj->m; j++) {
            int64_t k = wrap_index(idx_at(sj->ip, sj->idt, j), n);
            add_seg(sj->dt, dbase + k * sj->d.sa, sj->d.si, sbase + j * sj->s.sa, sj->s.si, len);
        }
        b += len;
    }
}

/* The same for inner 1 (a scatter along the last axis): one element per
 * update, the loop specialised by dtype and index type. */
#define SCATTER1(NAME, T, UT, IT)                                                                             \
    static void NAME(void *arg, int64_t b, int64_t e) {                                                       \
        const scatter_job *sj = arg;                                                                          \
        const IT *ip = (const IT *)sj->ip;                                                                    \
        int64_t n = sj->d.n, m = sj->m;                                                                       \
        for (int64_t o = b; o < e; o++) {                                                                     \
            char *dbase = sj->dp + o * sj->d.so;                                                              \
            const char *sbase = sj->sp + o * sj->s.so;                                                        \
            for (int64_t j = 0; j < m; j++) {                                                                 \
                int64_t k = ip[j];                                                                            \
                k += k < 0 ? n : 0;                                                                           \
                T *pd = (T *)(dbase + k * sj->d.sa);                                                          \
                *pd = (T)(UT)((UT)*pd + (UT) * (const T *)(sbase + j * sj->s.sa));                            \
            }                                                                                                 \
        }                                                                                                     \
    }
#define SCATTER1_DT(SUF, T, UT)                                                                               \
    SCATTER1(scatter1_##SUF##_i32, T, UT, int32_t)                                                            \
    SCATTER1(scatter1_##SUF##_i64, T, UT, int64_t)
SCATTER1_DT(f32, float, float)
SCATTER1_DT(f64, double, double)
SCATTER1_DT(i32, int32_t, uint32_t)
SCATTER1_DT(i64, int64_t, uint64_t)
SCATTER1_DT(u8, uint8_t, uint8_t)
#undef SCATTER1_DT
#undef SCATTER1

static td_range_fn scatter1_fn(int dt, int idt) {
    static const td_range_fn fns[TD_DTYPE_COUNT][2] = {
        [TD_F32] = {scatter1_f32_i32, scatter1_f32_i64}, [TD_F64] = {scatter1_f64_i32, scatter1_f64_i64},
        [TD_I32] = {scatter1_i32_i32, scatter1_i32_i64}, [TD_I64] = {scatter1_i64_i32, scatter1_i64_i64},
        [TD_U8] = {scatter1_u8_i32, scatter1_u8_i64}};
    return fns[dt][idt == TD_I64];
}

static td_status scatter_kernel(const td__call *c, const td_exec *ex) {
    const axis_attrs *at = (const axis_attrs *)c->attrs;
    const td_array *dst = c->out, *ind = c->in[1], *src = c->in[2];
    scatter_job sj = {.dp = td__array_ptr(dst), .sp = td__array_ptr(src), .ip = td__array_ptr(ind),
                      .idt = ind->dtype, .dt = dst->dtype, .m = td_numel(ind)};
    if (!lay3_of(dst, at->axis, &sj.d) || !lay3_of(src, at->axis, &sj.s)) {
        td_exec_set_error(ex, "td_scatter_add: internal error: a layout does not merge");
        return TD_EFAILED;
    }
    char what[64];
    snprintf(what, sizeof what, "axis %d of size %" PRId64, at->axis, sj.d.n);
    td_status st = check_indices(ex, "td_scatter_add", ind, sj.d.n, what);
    if (st != TD_OK) return st;
    int64_t positions = sj.d.outer * sj.d.inner;
    if (sj.m == 0 || positions == 0) return TD_OK;
    /* About GRAIN additions per chunk, and row pieces of at least 64
     * elements where the rows are that long (each chunk walks every update). */
    int64_t grain = GRAIN / sj.m;
    int64_t minrow = sj.d.inner < 64 ? sj.d.inner : 64;
    if (grain < minrow) grain = minrow;
    if (grain < 1) grain = 1;
    return td_parallel_for(ex, positions, grain, sj.d.inner == 1 ? scatter1_fn(sj.dt, sj.idt) : scatter_chunk, &sj);
}

static td_status scatter_infer(const td__call *c, int *dtype, int *ndim, int64_t *shape) {
    const td_array *dst = c->in[0];
    *ndim = dst->ndim;
    memcpy(shape, dst->shape, sizeof(int64_t) * (size_t)dst->ndim);
    *dtype = dst->dtype;
    return TD_OK;
}

static const td__opdesc desc_scatter_add = {.name = "scatter_add", .api = "td_scatter_add", .n_in = 3,
                                            .infer = scatter_infer, .kernel = {scatter_kernel, NULL}};

td_status td_scatter_add(td_array *dst, td_array *indices, td_array *src, int axis) {
    if (!dst || !indices || !src)
        return td__fail(TD_EINVAL, "td_scatter_add: %s is NULL", !dst ? "dst" : !indices ? "indices" : "src");
    if (check_indices_dtype("td_scatter_add", indices) != TD_OK || check_cpu("td_scatter_add", dst, indices) != TD_OK ||
        check_cpu("td_scatter_add", dst, src) != TD_OK)
        return td_last_status();
    int ax = norm_axis("td_scatter_add", axis, dst->ndim);
    if (ax < 0) return TD_EINVAL;
    char s1[128], s2[128], s3[128], s4[128];
    /* src: dst's shape with axis replaced by indices' shape. */
    int64_t want[TD_MAX_DIMS];
    int nw = 0;
    for (int d = 0; d < ax; d++) want[nw++] = dst->shape[d];
    for (int d = 0; d < indices->ndim && nw < TD_MAX_DIMS; d++) want[nw++] = indices->shape[d];
    for (int d = ax + 1; d < dst->ndim && nw < TD_MAX_DIMS; d++) want[nw++] = dst->shape[d];
    int fits = dst->ndim - 1 + indices->ndim <= TD_MAX_DIMS && src->ndim == nw;
    for (int d = 0; fits && d < nw; d++) fits = src->shape[d] == want[d];
    if (!fits)
        return td__fail(TD_ESHAPE,
                        "td_scatter_add: src of shape %s does not fit dst of shape %s with indices of shape %s along "
                        "axis %d (expected %s)",
                        td__shape_str(src->ndim, src->shape, s1, sizeof s1),
                        td__shape_str(dst->ndim, dst->shape, s2, sizeof s2),
                        td__shape_str(indices->ndim, indices->shape, s3, sizeof s3), axis,
                        td__shape_str(nw, want, s4, sizeof s4));
    if (!td__can_cast_same_kind(src->dtype, dst->dtype))
        return td__fail(TD_EDTYPE, "td_scatter_add: %s updates cannot be added to a %s dst without losing their kind",
                        td_dtype_name(src->dtype), td_dtype_name(dst->dtype));
    for (int d = 0; d < dst->ndim; d++)
        if (dst->strides[d] == 0 && dst->shape[d] > 1)
            return td__fail(TD_EINVAL,
                            "td_scatter_add: dst of shape %s is a broadcast view (axis %d repeats its elements); "
                            "add into a copy",
                            td__shape_str(dst->ndim, dst->shape, s1, sizeof s1), d);
    /* src as the op reads it: the axis of indices flattened (a view when
     * the layout allows), dst's dtype, a layout that merges, and never
     * dst's own storage (the op writes it while reading). */
    int64_t sshape[TD_MAX_DIMS], sstr[TD_MAX_DIMS], m = td_numel(indices);
    int sn = 0;
    for (int d = 0; d < ax; d++) sshape[sn++] = dst->shape[d];
    sshape[sn++] = m;
    for (int d = ax + 1; d < dst->ndim; d++) sshape[sn++] = dst->shape[d];
    td_array *s = NULL, *ind = NULL, *work = NULL;
    td_status st = TD_OK;
    if (src->dtype != dst->dtype || src->st == dst->st) s = private_copy(src, dst->dtype, "td_scatter_add");
    else s = td_retain(src);
    if (!s) return td_last_status();
    if (!td__reshape_strides(s, sn, sshape, sstr)) {
        td_array *c = private_copy(s, s->dtype, "td_scatter_add");
        td__array_unref(s);
        if (!(s = c)) return td_last_status();
        td__contiguous_strides(sn, sshape, sstr); /* contiguous: any shape of its size is a view */
    }
    td_array *sv = td__array_wrap(s->st, s->dtype, sn, sshape, sstr, s->offset);
    td__array_unref(s);
    if (!sv) return td_last_status();
    s = lay3_ref(sv, ax, "td_scatter_add");
    td__array_unref(sv);
    if (!s) return td_last_status();
    ind = indices->st == dst->st ? private_copy(indices, indices->dtype, "td_scatter_add")
                                 : contiguous_ref(indices, "td_scatter_add");
    if (!ind) {
        td__array_unref(s);
        return td_last_status();
    }
    lay3 l;
    work = lay3_of(dst, ax, &l) ? td_retain(dst) : private_copy(dst, dst->dtype, "td_scatter_add");
    if (!work) {
        st = td_last_status();
        goto done;
    }
    axis_attrs at = {ax};
    td_array *in[3] = {work, ind, s};
    st = td__invoke_out(&desc_scatter_add, in, 3, &at, sizeof at, work, 0);
    if (st == TD_OK && work != dst) st = td_assign(dst, work);
done:
    td__array_unref(work);
    td__array_unref(ind);
    td__array_unref(s);
    return st;
}
