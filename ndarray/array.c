/* Array handles and their storage: creation, references, scopes, accessors.
 *
 * Thread safety: handles and storages are refcounted with atomics, so any
 * thread may retain and release them.  Scopes are per thread: an array a
 * scope holds is released by td_scope_end on that thread, and td_keep or
 * td_release of it must happen on that thread too (elsewhere they fail with
 * TD_EINVAL rather than race the scope).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "ndarray/internal.h"

/* Live array handles: counted per thread (pool.c), so that a handle made on
 * one thread and freed on another moves no shared line and takes no atomic
 * step; the total is the sum. */
static inline void live_add(long long d) { td__live_arrays_add(d); }

void (*td__array_ag_free)(td_array *a);
td_array *(*td__array_view_hook)(td_array *base, td_array *view, int kind, const int64_t *args, int nargs);

/* ---- dtypes ---- */
static const size_t dtype_sizes[TD_DTYPE_COUNT] = {4, 8, 4, 8, 1};
static const char *const dtype_names[TD_DTYPE_COUNT] = {"float32", "float64", "int32", "int64", "uint8"};

size_t(td_dtype_size)(int dtype) { return (dtype >= 0 && dtype < TD_DTYPE_COUNT) ? dtype_sizes[dtype] : 0; }
const char *td_dtype_name(int dtype) {
    return (dtype >= 0 && dtype < TD_DTYPE_COUNT) ? dtype_names[dtype] : "unknown dtype";
}

int td_promote_types(int a, int b) {
    if (a < 0 || a >= TD_DTYPE_COUNT || b < 0 || b >= TD_DTYPE_COUNT) return -1;
    if (a == b) return a;
    if (a == TD_F64 || b == TD_F64) return TD_F64;
    if (a == TD_F32 || b == TD_F32) {
        int other = a == TD_F32 ? b : a;
        return other == TD_U8 ? TD_F32 : TD_F64; /* f32 with i32/i64 needs f64, as numpy */
    }
    if (a == TD_I64 || b == TD_I64) return TD_I64;
    if (a == TD_I32 || b == TD_I32) return TD_I32;
    return TD_U8;
}

td_status td__check_dtype(const char *who, int dtype) {
    if (dtype < 0 || dtype >= TD_DTYPE_COUNT)
        return td__fail(TD_EDTYPE, "%s: unknown dtype %d (use TD_F32, TD_F64, TD_I32, TD_I64 or TD_U8)", who, dtype);
    return TD_OK;
}

/* ---- shapes ---- */
const char *td__shape_str(int ndim, const int64_t *shape, char *buf, size_t size) {
    size_t n = 0;
    n += (size_t)snprintf(buf + n, size - n, "(");
    for (int i = 0; i < ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (n < size) n += (size_t)snprintf(buf + n, size - n, ndim == 1 ? ",)" : ")");
    return buf;
}

int64_t td__shape_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

td_status td__check_shape(const char *who, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > TD_MAX_DIMS)
        return td__fail(TD_EINVAL, "%s: ndim must be 0 to %d, not %d", who, TD_MAX_DIMS, ndim);
    if (ndim > 0 && !shape) return td__fail(TD_EINVAL, "%s: shape is NULL", who);
    /* The product of the nonzero sizes: an empty array's strides still
     * multiply them (td__contiguous_strides), so (0, 2^40, 2^40) is as
     * unaddressable as (2^40, 2^40), as in numpy. */
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return td__fail(TD_EINVAL, "%s: dimension %d has negative size %" PRId64, who, i, shape[i]);
        if (shape[i] > 0 && n > (INT64_MAX / 16) / shape[i])
            return td__fail(TD_EINVAL, "%s: the shape is too large to address", who);
        if (shape[i] > 0) n *= shape[i];
    }
    return TD_OK;
}

void td__contiguous_strides(int ndim, const int64_t *shape, int64_t *strides) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shape[i] > 0 ? shape[i] : 1;
    }
}

/* ---- storage ---- */
td__storage *td__storage_new(td__device *dev, size_t bytes) {
    if (td__ensure() != TD_OK) return NULL;
    return td__pool_get(dev, bytes);
}

void td__storage_release(td__storage *st) {
    if (atomic_fetch_sub_explicit(&st->refs, 1, memory_order_acq_rel) == 1)
        td_var_free(st->var); /* when no pending op holds it, the storage goes back to its pool */
}

/* ---- back-pressure for array ops ----
 * A storage counts as in flight (td_inflight_bytes) from its allocation as
 * an op's output for as long as pending ops hold it: until the last op that
 * holds it ends if the program still holds it then, or else until the pool
 * has it back; and so does a storage the program lets go of while pending
 * ops still hold it (a temporary whose consumers have not run).  So the pool memory that pending ops keep alive stays within
 * max_inflight_bytes plus one op's output.  The storage's gstate (0 not
 * counted, 1 counted, 2 back in the pool) makes every count end exactly
 * once; bytes are added before a state is claimed, so the total never dips
 * below the truth, and a count never outlives the storage's return to the
 * pool, so a pusher waiting on it never waits for the program itself.
 * Storages under BP_MIN_BYTES are not counted: bounding their memory means
 * nothing next to the op records themselves, and counting costs the small-op
 * path atomics on a counter every thread shares. */
enum { BP_MIN_BYTES = 64 << 10 };

void td__array_count_output(td_array *a) {
    if (td__g.naive || a->st->bytes < BP_MIN_BYTES) return;
    td__bp_add(a->st->bytes);
    atomic_store(&a->st->gstate, 1);
}

static int held_by_program(const td_array *a) {
    uint64_t rc = atomic_load(&a->rc);
    return td__rc_refs(rc) > td__rc_ops(rc) || atomic_load(&a->st->refs) > 1;
}

void td__array_op_done(td_array *a) {
    int expect = 1;
    if (atomic_load_explicit(&a->st->gstate, memory_order_relaxed) == 1 && td__rc_ops(atomic_load(&a->rc)) == 1 &&
        held_by_program(a) &&
        atomic_compare_exchange_strong(&a->st->gstate, &expect, 0))
        td__bp_sub(a->st->bytes);
}

/* The program let go of the last reference to an array on st while pending
 * ops still hold it. */
static void mark_garbage(td__storage *st) {
    if (td__g.naive || st->bytes < BP_MIN_BYTES || atomic_load(&st->refs) != 1 || atomic_load(&st->gstate) != 0)
        return;
    td__bp_add(st->bytes);
    int expect = 0;
    if (!atomic_compare_exchange_strong(&st->gstate, &expect, 1)) td__bp_sub(st->bytes);
}

/* ---- arrays ---- */
static td__objcache array_cache = TD__OBJCACHE_INIT(TD__CACHE_ARRAY, td_array);

/* A handle on st; adopt: it takes over the caller's reference to st
 * instead of adding one. */
static td_array *wrap(td__storage *st, int dtype, int ndim, const int64_t *shape, const int64_t *strides,
                      int64_t offset, int adopt) {
    td_array *a = td__cache_alloc(&array_cache);
    if (!a) {
        td__fail(TD_ENOMEM, "out of memory for an array handle");
        return NULL;
    }
    atomic_init(&a->rc, TD__REF_ONE);
    a->dtype = dtype;
    a->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        a->shape[i] = shape[i];
        a->strides[i] = strides[i];
    }
    a->offset = offset;
    a->dev = st->dev->id;
    a->st = st;
    a->scope = NULL;
    a->scope_idx = -1;
    a->lazy = NULL;
    a->node = NULL;
    a->grad = NULL;
    a->out_idx = 0;
    a->grad_req = 0;
    if (!adopt) atomic_fetch_add_explicit(&st->refs, 1, memory_order_relaxed);
    live_add(1);
    return a;
}

td_array *td__array_wrap(td__storage *st, int dtype, int ndim, const int64_t *shape, const int64_t *strides,
                         int64_t offset) {
    return wrap(st, dtype, ndim, shape, strides, offset, 0);
}

td_array *td__array_new(int dtype, int ndim, const int64_t *shape, td_device dev, const char *who) {
    if (td__check_dtype(who, dtype) != TD_OK || td__check_shape(who, ndim, shape) != TD_OK) return NULL;
    td__device *d = td__device_get(who, dev);
    if (!d) return NULL;
    int64_t n = td__shape_numel(ndim, shape);
    if (td__ensure() != TD_OK) return NULL;
    td__bp_admit();
    td__storage *st = td__storage_new(d, (size_t)n * td_dtype_size(dtype));
    if (!st) return NULL;
    int64_t strides[TD_MAX_DIMS];
    td__contiguous_strides(ndim, shape, strides);
    td_array *a = wrap(st, dtype, ndim, shape, strides, 0, 1); /* the array holds st's reference now */
    if (!a) td__storage_release(st);
    return a;
}

static void array_free(td_array *a) {
    if (a->lazy) a->lazy->release(a->lazy);
    if (a->node || a->grad) td__array_ag_free(a);
    td__storage_release(a->st);
    live_add(-1);
    td__cache_free(&array_cache, a);
}

/* The program's own unref (td_release, scope ends). */
static void array_unref(td_array *a) {
    /* Read before letting go: once the count drops, the ops still holding
     * the array may free it at any moment. */
    td__storage *st = a->st;
    td__park *t = a->lazy ? a->lazy->park : NULL;
    if (TD__UNLIKELY(t != NULL)) td__park_retain(t);
    uint64_t rc = atomic_fetch_sub_explicit(&a->rc, TD__REF_ONE, memory_order_acq_rel) - TD__REF_ONE;
    if (td__rc_refs(rc) == 0) {
        array_free(a);
    } else if (td__rc_refs(rc) == td__rc_ops(rc)) {
        /* Only pending ops hold it now.  A deferred op making it need not
         * wait any longer: it will find its output unobservable and skip. */
        if (t) td__park_activate(t);
        mark_garbage(st);
    }
    if (t) td__park_release(t);
}

void td__array_unref(td_array *a) {
    if (a && td__rc_refs(atomic_fetch_sub_explicit(&a->rc, TD__REF_ONE, memory_order_acq_rel)) == 1) array_free(a);
}

td_array *td__array_hold(td_array *a) {
    atomic_fetch_add_explicit(&a->rc, TD__REF_OP, memory_order_relaxed);
    return a;
}

void td__array_drop(td_array *a) {
    if (td__rc_refs(atomic_fetch_sub_explicit(&a->rc, TD__REF_OP, memory_order_acq_rel)) == 1) array_free(a);
}

int td__array_covers_storage(const td_array *a) {
    if (a->offset != 0) return 0;
    int64_t n = td__shape_numel(a->ndim, a->shape);
    if ((size_t)n * td_dtype_size(a->dtype) != a->st->bytes) return 0;
    return td_is_contiguous(a);
}

/* ---- scopes ---- */
typedef struct scope {
    td_array **items;
    int n, cap;
    struct scope *outer;
    pthread_t owner;
} scope;

static _Thread_local scope *tls_scope;

void td_scope_begin(void) {
    scope *s = calloc(1, sizeof *s);
    if (!s) {
        /* A scope that cannot be opened: arrays go to the caller (and leak
         * unless released); a later td_scope_end closes nothing extra. */
        td__fail(TD_ENOMEM, "td_scope_begin: out of memory");
        return;
    }
    s->outer = tls_scope;
    s->owner = pthread_self();
    tls_scope = s;
}

static void scope_remove(td_array *a) {
    scope *s = a->scope;
    int i = a->scope_idx;
    td_array *last = s->items[--s->n];
    s->items[i] = last;
    last->scope_idx = i;
    a->scope = NULL;
    a->scope_idx = -1;
}

void td_scope_end(void) {
    scope *s = tls_scope;
    if (!s) return;
    tls_scope = s->outer;
    /* Newest first, so results are released before the inputs they came from. */
    for (int i = s->n - 1; i >= 0; i--) {
        td_array *a = s->items[i];
        a->scope = NULL;
        array_unref(a);
    }
    free(s->items);
    free(s);
}

td_array *td__array_give(td_array *a) {
    if (!a) return NULL;
    scope *s = tls_scope;
    if (!s || td__tls_op) return a; /* arrays made inside an op belong to no scope */
    if (s->n == s->cap) {
        int nc = s->cap ? 2 * s->cap : 16;
        td_array **ni = realloc(s->items, (size_t)nc * sizeof *ni);
        if (!ni) {
            array_unref(a);
            td__fail(TD_ENOMEM, "out of memory growing the current scope");
            return NULL;
        }
        s->items = ni;
        s->cap = nc;
    }
    a->scope = s;
    a->scope_idx = s->n;
    s->items[s->n++] = a;
    return a;
}

static int foreign_scope(const td_array *a, const char *who) {
    if (a->scope && !pthread_equal(((scope *)a->scope)->owner, pthread_self())) {
        td__fail(TD_EINVAL, "%s: the array belongs to a scope of another thread; release or keep it there", who);
        return 1;
    }
    return 0;
}

td_array *td_keep(td_array *a) {
    if (!a) return NULL;
    if (a->scope && !foreign_scope(a, "td_keep")) scope_remove(a);
    return a;
}

td_array *td_retain(td_array *a) {
    if (a) atomic_fetch_add_explicit(&a->rc, TD__REF_ONE, memory_order_relaxed);
    return a;
}

void td_release(td_array *a) {
    if (!a) return;
    if (a->scope) {
        if (foreign_scope(a, "td_release")) return;
        scope_remove(a);
    }
    array_unref(a);
}

/* ---- accessors ---- */
int td_ndim(const td_array *a) { return a ? a->ndim : 0; }
const int64_t *td_shape(const td_array *a) { return a ? a->shape : NULL; }
const int64_t *td_strides(const td_array *a) { return a ? a->strides : NULL; }
int td_dtype(const td_array *a) { return a ? a->dtype : 0; }
int64_t td_numel(const td_array *a) { return a ? td__shape_numel(a->ndim, a->shape) : 0; }
td_device td_array_device(const td_array *a) { return a ? a->dev : (td_device){.kind = -1, .id = -1}; }
void *td_data(const td_array *a) { return a ? td__array_ptr(a) : NULL; }
td_var *td_array_var(const td_array *a) { return a ? a->st->var : NULL; }

int td_is_contiguous(const td_array *a) {
    if (!a) return 0;
    int64_t s = 1;
    for (int i = a->ndim - 1; i >= 0; i--) {
        if (a->shape[i] == 1) continue;
        if (a->shape[i] == 0) return 1;
        if (a->strides[i] != s) return 0;
        s *= a->shape[i];
    }
    return 1;
}

td_array_stats td_array_stats_get(void) {
    td_array_stats s = {td__live_arrays(), 0, 0};
    td__pool_live(&s.live_storages, &s.storage_bytes);
    return s;
}

/* ---- creation without ops ---- */
td_array *td_empty(int dtype, int ndim, const int64_t *shape, td_device dev) {
    return td__array_give(td__array_new(dtype, ndim, shape, dev, "td_empty"));
}

td_array *td_from_host(const void *data, int dtype, int ndim, const int64_t *shape, td_device dev) {
    if (!data) {
        td__fail(TD_EINVAL, "td_from_host: data is NULL");
        return NULL;
    }
    td_array *a = td__array_new(dtype, ndim, shape, dev, "td_from_host");
    if (!a) return NULL;
    /* A fresh storage: no op can touch it yet, so copy right here. */
    memcpy(td__array_ptr(a), data, (size_t)td_numel(a) * td_dtype_size(dtype));
    return td__array_give(a);
}
