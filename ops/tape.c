/* The tape: recording state per thread, nodes, and their lifetimes.
 *
 * A recorded op becomes a node (ops/internal.h): its inputs' edges (the node
 * that made each input, or the leaf itself), their shapes and dtypes, the
 * arrays its gradient reads (detached handles on their storage, with the
 * storage's version when saved), and its attributes.  Each output handle
 * holds a reference to its node, and each later node's edge holds one too;
 * nothing else does, so a recorded pass that is never differentiated is
 * freed with its arrays.  A node never holds its own outputs (a saved output
 * is a separate handle on the storage), so there is no cycle.
 *
 * Freeing is iterative (a worklist), so a chain of a million recorded ops
 * does not recurse a million deep; it may happen on any thread (a worker that
 * drops the last reference of an op's output).
 */
#include <stdlib.h>
#include <string.h>

#include "ops/internal.h"

_Thread_local td__tape_state td__tape;

static atomic_llong next_seq;
static atomic_llong live_nodes;

int64_t td__tape_live_nodes(void) { return atomic_load(&live_nodes); }

td_array *td__array_detached(const td_array *a) {
    return td__array_wrap(a->st, a->dtype, a->ndim, a->shape, a->strides, a->offset);
}

/* ---- freeing ---- */

/* A worklist of nodes whose reference is to be dropped: on the C stack, then
 * on the heap if it grows. */
typedef struct {
    td__node **v;
    int n, cap;
    td__node *local[32];
} worklist;

static void work_push(worklist *w, td__node *x) {
    if (w->n == w->cap) {
        int nc = w->cap * 2;
        td__node **nv = malloc((size_t)nc * sizeof *nv);
        if (!nv) { /* cannot defer: drop it right here (recursion, rarely) */
            td__node_unref(x);
            return;
        }
        memcpy(nv, w->v, (size_t)w->n * sizeof *nv);
        if (w->v != w->local) free(w->v);
        w->v = nv;
        w->cap = nc;
    }
    w->v[w->n++] = x;
}

/* Frees n (whose last reference went), deferring its input nodes to w. */
static void node_free_one(td__node *n, worklist *w) {
    for (int i = 0; i < n->n_in; i++) {
        td__edge *e = &n->edges[i];
        if (e->leaf) td__array_unref(e->leaf);
        if (e->node) work_push(w, e->node);
    }
    for (int i = 0; i < n->n_in; i++) td__array_unref(n->saved_in[i]);
    for (int i = 0; i < n->n_out; i++) {
        td__array_unref(n->saved_out[i]);
        td__array_unref(n->gacc[i]);
    }
    if (n->extra_free) n->extra_free(n->extra);
    atomic_fetch_sub_explicit(&live_nodes, 1, memory_order_relaxed);
    free(n);
}

void td__node_unref(td__node *n) {
    if (!n || atomic_fetch_sub_explicit(&n->refs, 1, memory_order_acq_rel) != 1) return;
    worklist w;
    w.v = w.local;
    w.n = 0;
    w.cap = 32;
    node_free_one(n, &w);
    while (w.n > 0) {
        td__node *x = w.v[--w.n];
        if (atomic_fetch_sub_explicit(&x->refs, 1, memory_order_acq_rel) == 1) node_free_one(x, &w);
    }
    if (w.v != w.local) free(w.v);
}

static void array_ag_free(td_array *a) {
    if (a->node) td__node_unref(a->node);
    a->node = NULL;
    if (a->grad) td__array_unref(a->grad);
    a->grad = NULL;
}

void td__tape_cut(td_array *a) {
    td__node *n = a->node;
    a->node = NULL;
    td__node_unref(n);
}

/* ---- recording ---- */

static void set_meta(td__meta *m, const td_array *a) {
    m->dtype = a->dtype;
    m->ndim = a->ndim;
    memcpy(m->shape, a->shape, sizeof(int64_t) * (size_t)a->ndim);
}

static int is_float(int dt) { return dt == TD_F32 || dt == TD_F64; }

td_status td__record_ex(const td__rec *r) {
    td__tape_install();
    int ni = r->n_in, no = r->n_out;
    size_t sz = sizeof(td__node) + (size_t)ni * (sizeof(td__edge) + sizeof(td__meta) + sizeof(td_array *) + 8) +
                (size_t)no * (sizeof(td__meta) + 2 * sizeof(td_array *) + 8);
    td__node *n = calloc(1, sz);
    if (!n) {
        if (r->extra_free) r->extra_free(r->extra);
        return td__fail(TD_ENOMEM, "%s: out of memory recording the op for autograd", r->api);
    }
    char *p = (char *)(n + 1);
    n->edges = (td__edge *)p, p += (size_t)ni * sizeof(td__edge);
    n->in_meta = (td__meta *)p, p += (size_t)ni * sizeof(td__meta);
    n->out_meta = (td__meta *)p, p += (size_t)no * sizeof(td__meta);
    n->saved_in = (td_array **)p, p += (size_t)ni * sizeof(td_array *);
    n->saved_in_ver = (uint64_t *)p, p += (size_t)ni * 8;
    n->saved_out = (td_array **)p, p += (size_t)no * sizeof(td_array *);
    n->saved_out_ver = (uint64_t *)p, p += (size_t)no * 8;
    n->gacc = (td_array **)p;
    atomic_init(&n->refs, 1); /* dropped below once the outputs hold it */
    atomic_fetch_add_explicit(&live_nodes, 1, memory_order_relaxed);
    n->seq = atomic_fetch_add_explicit(&next_seq, 1, memory_order_relaxed);
    n->api = r->api;
    n->grad = r->grad;
    n->n_in = ni;
    n->n_out = no;
    n->extra = r->extra;
    n->extra_free = r->extra_free;
    if (r->attrs_size) memcpy(n->attrs, r->attrs, r->attrs_size);
    td_status st = TD_OK;
    for (int i = 0; i < ni; i++) {
        td_array *a = r->in[i];
        set_meta(&n->in_meta[i], a);
        if (is_float(a->dtype)) {
            if (a->node) {
                atomic_fetch_add_explicit(&a->node->refs, 1, memory_order_relaxed);
                n->edges[i].node = a->node;
                n->edges[i].idx = a->out_idx;
            } else if (a->grad && a->grad_req != 0) {
                n->edges[i].leaf = td_retain(a);
            }
        }
        if ((r->saves & TD__SAVE_IN) && st == TD_OK) {
            n->saved_in_ver[i] = atomic_load_explicit(&a->st->version, memory_order_relaxed);
            if (!(n->saved_in[i] = td__array_detached(a))) st = TD_ENOMEM;
        }
    }
    for (int k = 0; k < no; k++) {
        td_array *o = r->out[k];
        set_meta(&n->out_meta[k], o);
        if ((r->saves & TD__SAVE_OUT) && st == TD_OK) {
            n->saved_out_ver[k] = atomic_load_explicit(&o->st->version, memory_order_relaxed);
            if (!(n->saved_out[k] = td__array_detached(o))) st = TD_ENOMEM;
        }
    }
    if (st != TD_OK) {
        td__node_unref(n);
        return td__fail(TD_ENOMEM, "%s: out of memory recording the op for autograd", r->api);
    }
    for (int k = 0; k < no; k++) {
        td_array *o = r->out[k];
        atomic_fetch_add_explicit(&n->refs, 1, memory_order_relaxed);
        if (o->node) td__node_unref(o->node);
        o->node = n;
        o->out_idx = k;
    }
    td__node_unref(n); /* the outputs hold it now */
    return TD_OK;
}

td_status td__record(const td__opdesc *d, td_array *const *in, int n_in, const void *attrs, size_t attrs_size,
                     td_array *out) {
    td__rec r = {.api = d->api, .grad = d->grad, .saves = d->saves, .n_in = n_in, .in = in, .n_out = 1,
                 .out = &out, .attrs = attrs, .attrs_size = attrs_size};
    return td__record_ex(&r);
}

td_array *td__rec_end(int rec, const td__opdesc *d, td_array *const *in, int n, const void *attrs, size_t attrs_size,
                      td_array *r) {
    if (!rec) return r;
    td__tape_resume();
    if (r && td__record(d, in, n, attrs, attrs_size, r) != TD_OK) {
        td_release(r);
        return NULL;
    }
    return r;
}

/* ---- views ---- */


static td_array *view_hook(td_array *base, td_array *view, int kind, const int64_t *args, int nargs) {
    if (!td__tape.active || !td__requires_grad(base)) return view;
    td__view_attrs at = {.kind = kind, .n = nargs};
    for (int i = 0; i < nargs; i++) {
        if (kind == TD__VIEW_TRANSPOSE) at.perm[i] = (int8_t)args[i];
        else if (i < 4) at.s[i] = args[i];
    }
    _Static_assert(sizeof at <= TD__ATTR_BYTES, "view attributes fit a node");
    if (td__record(td__view_desc(kind), &base, 1, &at, sizeof at, view) != TD_OK) {
        td__array_unref(view);
        return NULL;
    }
    return view;
}

/* Written once, before any array has a node or a gradient buffer; workers
 * read the hooks only for such arrays, which reach them through a push (so
 * after the write).  Later calls only read. */
void td__tape_install(void) {
    if (td__array_ag_free) return;
    td__array_view_hook = view_hook;
    td__array_ag_free = array_ag_free;
}

/* ---- gradient helpers ---- */

td_array *td__unbroadcast(td_array *g, int ndim, const int64_t *shape) {
    if (!g) return NULL;
    char s1[128], s2[128];
    if (g->ndim < ndim) goto bad;
    while (g && g->ndim > ndim) g = td_sum(g, 0, TD_DROPDIMS);
    for (int d = 0; g && d < ndim; d++) {
        if (g->shape[d] == shape[d]) continue;
        if (shape[d] != 1) goto bad;
        g = td_sum(g, d, TD_KEEPDIMS);
    }
    return g;
bad:
    td__fail(TD_ESHAPE, "autograd: a gradient of shape %s does not reduce to shape %s",
             td__shape_str(g->ndim, g->shape, s1, sizeof s1), td__shape_str(ndim, shape, s2, sizeof s2));
    return NULL;
}

td_array *td__expand_reduced(td_array *g, const td__meta *m, int axis, int keepdims) {
    if (!g) return NULL;
    int64_t kshape[TD_MAX_DIMS];
    int all = axis == TD_ALL_AXES;
    int ax = all ? -1 : (axis < 0 ? axis + m->ndim : axis);
    for (int d = 0; d < m->ndim; d++) kshape[d] = (all || d == ax) ? 1 : m->shape[d];
    if (!keepdims) g = td_reshape(g, m->ndim, kshape);
    return td_broadcast_to(g, m->ndim, m->shape);
}
