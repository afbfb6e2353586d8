/* Recording switches, gradient buffers and the backward pass.
 *
 * Backward, given heads:
 *  1. collects every node reachable from the heads (holding a reference on
 *     each while it works, so releasing the graph midway frees nothing under
 *     its feet) and sorts them by recording order;
 *  2. marks, in recording order, the nodes with a path to a leaf that wants
 *     a gradient ("useful"); a head without one is an error;
 *  3. seeds each head's output gradient (head_grad, or ones) and visits the
 *     useful nodes newest first: it checks the arrays the node saved still
 *     have their versions, calls the op's gradient (which pushes ops, so
 *     nothing here waits), fits each input's gradient to the input's shape
 *     and dtype, and adds it to what that input's node or leaf has so far;
 *  4. writes or adds each leaf's total into its gradient buffer;
 *  5. without keep_graph, lets go of what the nodes saved and of their
 *     edges, and marks them released.
 * Every gradient function runs inside a scope this file opens, so the
 * temporaries it makes are released when it returns and never join the
 * user's scope; what backward keeps, it retains.  Recording is paused
 * throughout.
 */
#include <stdlib.h>
#include <string.h>

#include "autograd/internal.h"

/* ---- recording switches ---- */

void td_record_begin(void) {
    td__tape_install();
    td__tape.depth++;
    td__tape_update();
}

void td_record_end(void) {
    if (td__tape.depth == 0) {
        td__fail(TD_EINVAL, "td_record_end: no td_record_begin on this thread to end");
        return;
    }
    td__tape.depth--;
    td__tape_update();
}

void td_pause_begin(void) { td__tape_pause(); }

void td_pause_end(void) {
    if (td__tape.pause == 0) {
        td__fail(TD_EINVAL, "td_pause_end: no td_pause_begin on this thread to end");
        return;
    }
    td__tape_resume();
}

int td_is_recording(void) { return td__tape.active; }
void td_set_training(int training) { td__tape.training = training != 0; }
int td_is_training(void) { return td__tape.training; }

/* ---- leaves ---- */

static int is_float(int dt) { return dt == TD_F32 || dt == TD_F64; }

td_status td_attach_grad(td_array *x, td_grad_req req) {
    if (!x) return td__fail(TD_EINVAL, "td_attach_grad: x is NULL");
    if (req != TD_GRAD_NULL && req != TD_GRAD_WRITE && req != TD_GRAD_ADD)
        return td__fail(TD_EINVAL, "td_attach_grad: req must be TD_GRAD_WRITE, TD_GRAD_ADD or TD_GRAD_NULL, not %d",
                        (int)req);
    if (!is_float(x->dtype))
        return td__fail(TD_EDTYPE,
                        "td_attach_grad: x is %s; gradients exist for float32 and float64 arrays only (convert with "
                        "td_astype first)",
                        td_dtype_name(x->dtype));
    td__tape_install();
    if (x->node) td__tape_cut(x); /* a recorded result becomes a leaf */
    td_status st;
    if (x->grad) {
        st = td_fill(x->grad, 0.0);
    } else {
        td_array *g = td__array_new(x->dtype, x->ndim, x->shape, x->dev, "td_attach_grad");
        if (!g) return td_last_status();
        td__array_count_output(g);
        st = td_fill(g, 0.0);
        if (st != TD_OK) {
            td__array_unref(g);
            return st;
        }
        x->grad = g;
    }
    if (st == TD_OK) x->grad_req = (int)req;
    return st;
}

td_array *td_grad(td_array *x) {
    if (!x) return NULL;
    if (!x->grad) {
        td__fail(TD_EINVAL, "td_grad: the array has no gradient buffer; call td_attach_grad on it first");
        return NULL;
    }
    return x->grad;
}

td_array *td_detach(td_array *a) {
    if (!a) return NULL;
    return td__array_give(td__array_detached(a));
}

/* ---- backward ---- */

typedef struct {
    td_array *leaf; /* retained */
    td_array *acc;  /* retained */
} leaf_acc;

typedef struct {
    td__node **nodes; /* each retained */
    int n, cap;
    leaf_acc *leaves;
    int nl, capl;
    uint64_t epoch;
    /* scratch for one gradient call */
    int *need;
    td_array **gin, **gout;
    int scap;
} bw;

static atomic_ullong epochs;

static int grow(void **v, int *cap, int need, size_t elem) {
    if (need <= *cap) return 1;
    int nc = *cap ? *cap : 16;
    while (nc < need) nc *= 2;
    void *nv = realloc(*v, (size_t)nc * elem);
    if (!nv) return 0;
    *v = nv;
    *cap = nc;
    return 1;
}

static td_status add_node(bw *b, td__node *x) {
    if (!grow((void **)&b->nodes, &b->cap, b->n + 1, sizeof *b->nodes))
        return td__fail(TD_ENOMEM, "td_backward: out of memory");
    atomic_fetch_add_explicit(&x->refs, 1, memory_order_relaxed);
    x->bw_epoch = b->epoch;
    for (int k = 0; k < x->n_out; k++) {
        td__array_unref(x->gacc[k]); /* left by a backward that failed */
        x->gacc[k] = NULL;
    }
    b->nodes[b->n++] = x;
    return TD_OK;
}

static const char *freed_msg =
    "td_backward: the graph of this head was freed by an earlier td_backward (its saved arrays are gone); pass "
    "keep_graph to td_backward_ex to run backward over a graph more than once, or record the forward pass again";

/* Every node reachable from x, breadth first (b->nodes is the queue). */
static td_status collect(bw *b, td__node *x) {
    if (x->bw_epoch == b->epoch) return TD_OK;
    int first = b->n;
    td_status st = add_node(b, x);
    for (int i = first; st == TD_OK && i < b->n; i++) {
        td__node *y = b->nodes[i];
        if (y->released) return td__fail(TD_EINVAL, "%s", freed_msg);
        for (int e = 0; st == TD_OK && e < y->n_in; e++) {
            td__node *z = y->edges[e].node;
            if (z && z->bw_epoch != b->epoch) st = add_node(b, z);
        }
    }
    return st;
}

static int by_seq(const void *p, const void *q) {
    const td__node *x = *(td__node *const *)p, *y = *(td__node *const *)q;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static int leaf_wants(const td_array *x) { return x && x->grad && x->grad_req != TD_GRAD_NULL; }

static int edge_needed(const td__edge *e) {
    if (e->leaf) return leaf_wants(e->leaf);
    return e->node && e->node->bw_useful;
}

/* Adds g to *slot (a new array: accumulators are never written in place,
 * so one array may sit in several slots).  A scope is open. */
static td_status accumulate(td_array **slot, td_array *g) {
    if (!*slot) {
        *slot = td_retain(g);
        return TD_OK;
    }
    td_array *s = td_add(*slot, g);
    if (!s) return td_last_status();
    td__array_unref(*slot);
    *slot = td_retain(s);
    return TD_OK;
}

static td_status leaf_accumulate(bw *b, td_array *x, td_array *g) {
    for (int i = 0; i < b->nl; i++)
        if (b->leaves[i].leaf == x) return accumulate(&b->leaves[i].acc, g);
    if (!grow((void **)&b->leaves, &b->capl, b->nl + 1, sizeof *b->leaves))
        return td__fail(TD_ENOMEM, "td_backward: out of memory");
    leaf_acc *l = &b->leaves[b->nl++];
    l->leaf = td_retain(x);
    l->acc = NULL;
    return accumulate(&l->acc, g);
}

/* g reshaped to an input's shape (summed over broadcast dims) and dtype. */
static td_array *fit(td_array *g, const td__meta *m, const char *api, int i) {
    int same = g->ndim == m->ndim;
    for (int d = 0; same && d < m->ndim; d++) same = g->shape[d] == m->shape[d];
    if (!same) {
        td_array *u = td__unbroadcast(g, m->ndim, m->shape);
        if (!u) {
            char s1[128], s2[128];
            td__fail(TD_ESHAPE, "td_backward: the gradient of %s for input %d has shape %s, which does not fit the "
                     "input's shape %s", api, i, td__shape_str(g->ndim, g->shape, s1, sizeof s1),
                     td__shape_str(m->ndim, m->shape, s2, sizeof s2));
            return NULL;
        }
        g = u;
    }
    if (g->dtype != m->dtype) g = td_astype(g, m->dtype);
    return g;
}

static td_status check_versions(const td__node *x) {
    for (int i = 0; i < x->n_in; i++) {
        const td_array *s = x->saved_in[i];
        if (s && atomic_load_explicit(&s->st->version, memory_order_relaxed) != x->saved_in_ver[i])
            return td__fail(TD_EINVAL,
                            "td_backward: input %d of %s, which its gradient needs, was written (td_assign, an _out "
                            "form or another in-place op) after %s was recorded; the gradient would use the changed "
                            "values. Write into a copy instead, or record the forward pass again",
                            i, x->api, x->api);
    }
    for (int k = 0; k < x->n_out; k++) {
        const td_array *s = x->saved_out[k];
        if (s && atomic_load_explicit(&s->st->version, memory_order_relaxed) != x->saved_out_ver[k])
            return td__fail(TD_EINVAL,
                            "td_backward: the result of %s, which its gradient needs, was written (td_assign, an "
                            "_out form or another in-place op) after %s was recorded; the gradient would use the "
                            "changed values. Write into a copy instead, or record the forward pass again",
                            x->api, x->api);
    }
    return TD_OK;
}

/* Calls x's gradient and passes the results on.  A scope is open. */
static td_status run_node(bw *b, td__node *x) {
    if (!x->grad)
        return td__fail(TD_EINVAL,
                        "td_backward: %s is not differentiable, and the head's gradient reaches a leaf only through "
                        "it",
                        x->api);
    td_status st = check_versions(x);
    if (st != TD_OK) return st;
    int nmax = x->n_in > x->n_out ? x->n_in : x->n_out;
    if (nmax > b->scap) {
        int cap = b->scap;
        int *need = realloc(b->need, (size_t)nmax * sizeof *need);
        if (need) b->need = need;
        td_array **gin = need ? realloc(b->gin, (size_t)nmax * sizeof *gin) : NULL;
        if (gin) b->gin = gin;
        td_array **gout = gin ? realloc(b->gout, (size_t)nmax * sizeof *gout) : NULL;
        if (gout) b->gout = gout;
        if (!gout) return td__fail(TD_ENOMEM, "td_backward: out of memory");
        (void)cap;
        b->scap = nmax;
    }
    for (int k = 0; k < x->n_out; k++) {
        const td__meta *m = &x->out_meta[k];
        b->gout[k] = x->gacc[k];
        if (!b->gout[k]) {
            td_device dev = x->saved_in[0] ? x->saved_in[0]->dev : td_cpu(0);
            for (int j = 0; j < x->n_out; j++)
                if (x->gacc[j]) dev = x->gacc[j]->dev;
            if (!(b->gout[k] = td_zeros(m->dtype, m->ndim, m->shape, dev))) return td_last_status();
        }
    }
    int any = 0;
    for (int i = 0; i < x->n_in; i++) {
        b->need[i] = edge_needed(&x->edges[i]);
        any |= b->need[i];
        b->gin[i] = NULL;
    }
    if (!any) return TD_OK;
    td__gctx g = {.api = x->api, .attrs = x->attrs, .extra = x->extra, .n_in = x->n_in, .n_out = x->n_out,
                  .in = x->saved_in, .out = x->saved_out, .gout = b->gout, .in_meta = x->in_meta,
                  .out_meta = x->out_meta, .need = b->need, .gin = b->gin};
    st = x->grad(&g);
    if (st != TD_OK) return st;
    for (int i = 0; i < x->n_in && st == TD_OK; i++) {
        if (!b->need[i] || !b->gin[i]) continue;
        td_array *gi = fit(b->gin[i], &x->in_meta[i], x->api, i);
        if (!gi) return td_last_status();
        const td__edge *e = &x->edges[i];
        if (e->leaf) st = leaf_accumulate(b, e->leaf, gi);
        else st = accumulate(&e->node->gacc[e->idx], gi);
    }
    return st;
}

static td_status check_head(int i, td_array *h, td_array *hg) {
    if (!h) return td__fail(TD_EINVAL, "td_backward: head %d is NULL", i);
    if (h->node && !h->node->grad)
        return td__fail(TD_EINVAL, "td_backward: head %d comes from %s, which is not differentiable", i,
                        h->node->api);
    if (!is_float(h->dtype))
        return td__fail(TD_EDTYPE, "td_backward: head %d is %s; gradients exist for float32 and float64 arrays only",
                        i, td_dtype_name(h->dtype));
    if (!h->node && !h->grad)
        return td__fail(TD_EINVAL,
                        "td_backward: head %d was not recorded: no op made it between td_record_begin and "
                        "td_record_end from an input that needs a gradient (td_attach_grad)",
                        i);
    if (h->node && h->node->released) return td__fail(TD_EINVAL, "%s", freed_msg);
    if (hg) {
        int same = hg->ndim == h->ndim;
        for (int d = 0; same && d < h->ndim; d++) same = hg->shape[d] == h->shape[d];
        char s1[128], s2[128];
        if (!same)
            return td__fail(TD_ESHAPE, "td_backward: head_grad %d has shape %s but its head has shape %s", i,
                            td__shape_str(hg->ndim, hg->shape, s1, sizeof s1),
                            td__shape_str(h->ndim, h->shape, s2, sizeof s2));
        if (!is_float(hg->dtype))
            return td__fail(TD_EDTYPE, "td_backward: head_grad %d is %s; it must be float32 or float64", i,
                            td_dtype_name(hg->dtype));
    }
    return TD_OK;
}

/* Lets go of what the visited nodes saved and of their edges. */
static void release_graph(bw *b) {
    for (int i = 0; i < b->n; i++) {
        td__node *x = b->nodes[i];
        for (int e = 0; e < x->n_in; e++) {
            td__array_unref(x->edges[e].leaf);
            x->edges[e].leaf = NULL;
            td__node_unref(x->edges[e].node); /* never the last reference: b holds one */
            x->edges[e].node = NULL;
            td__array_unref(x->saved_in[e]);
            x->saved_in[e] = NULL;
        }
        for (int k = 0; k < x->n_out; k++) {
            td__array_unref(x->saved_out[k]);
            x->saved_out[k] = NULL;
        }
        x->released = 1;
    }
}

static td_status backward(bw *b, int n, td_array *const *heads, td_array *const *head_grads, int keep_graph) {
    td_status st = TD_OK;
    for (int i = 0; i < n; i++)
        if ((st = check_head(i, heads[i], head_grads ? head_grads[i] : NULL)) != TD_OK) return st;
    for (int i = 0; i < n && st == TD_OK; i++)
        if (heads[i]->node) st = collect(b, heads[i]->node);
    if (st != TD_OK) return st;
    qsort(b->nodes, (size_t)b->n, sizeof *b->nodes, by_seq);
    for (int i = 0; i < b->n; i++) {
        td__node *x = b->nodes[i];
        x->bw_useful = 0;
        for (int e = 0; e < x->n_in && !x->bw_useful; e++) x->bw_useful = edge_needed(&x->edges[e]);
    }
    int useful = 0;
    for (int i = 0; i < n; i++) useful |= heads[i]->node ? heads[i]->node->bw_useful : leaf_wants(heads[i]);
    if (!useful)
        return td__fail(TD_EINVAL,
                        "td_backward: no gradient path from the head%s to an array with a gradient (td_attach_grad "
                        "with TD_GRAD_WRITE or TD_GRAD_ADD, used while recording)",
                        n > 1 ? "s" : "");
    td_scope_begin();
    for (int i = 0; i < n && st == TD_OK; i++) {
        td_array *h = heads[i], *g = head_grads ? head_grads[i] : NULL;
        if (!g) g = td_ones(h->dtype, h->ndim, h->shape, h->dev);
        if (!g) st = td_last_status();
        else if (h->node) st = accumulate(&h->node->gacc[h->out_idx], g);
        else st = leaf_accumulate(b, h, g);
    }
    td_scope_end();
    for (int i = b->n - 1; i >= 0 && st == TD_OK; i--) {
        td__node *x = b->nodes[i];
        int reached = 0;
        for (int k = 0; k < x->n_out; k++) reached |= x->gacc[k] != NULL;
        if (!x->bw_useful || !reached) continue;
        td_scope_begin();
        st = run_node(b, x);
        td_scope_end();
        for (int k = 0; k < x->n_out; k++) {
            td__array_unref(x->gacc[k]);
            x->gacc[k] = NULL;
        }
    }
    if (st != TD_OK) return st;
    for (int i = 0; i < b->nl && st == TD_OK; i++) {
        td_array *x = b->leaves[i].leaf, *acc = b->leaves[i].acc;
        if (!leaf_wants(x)) continue;
        if (x->grad_req == TD_GRAD_WRITE) st = acc ? td_assign(x->grad, acc) : td_fill(x->grad, 0.0);
        else if (acc) st = td_add_out(x->grad, acc, x->grad);
    }
    if (st == TD_OK && !keep_graph) release_graph(b);
    return st;
}

td_status td_backward_ex(int n, td_array *const *heads, td_array *const *head_grads, int keep_graph) {
    if (n < 1) return td__fail(TD_EINVAL, "td_backward_ex: n must be at least 1, not %d", n);
    if (!heads) return td__fail(TD_EINVAL, "td_backward_ex: heads is NULL");
    bw b;
    memset(&b, 0, sizeof b);
    b.epoch = atomic_fetch_add(&epochs, 1) + 1;
    td__tape_pause();
    td_status st = backward(&b, n, heads, head_grads, keep_graph);
    td__tape_resume();
    for (int i = 0; i < b.n; i++) {
        td__node *x = b.nodes[i];
        for (int k = 0; k < x->n_out; k++) {
            td__array_unref(x->gacc[k]);
            x->gacc[k] = NULL;
        }
    }
    for (int i = 0; i < b.n; i++) td__node_unref(b.nodes[i]);
    for (int i = 0; i < b.nl; i++) {
        td__array_unref(b.leaves[i].leaf);
        td__array_unref(b.leaves[i].acc);
    }
    free(b.nodes);
    free(b.leaves);
    free(b.need);
    free(b.gin);
    free(b.gout);
    return st;
}

td_status td_backward(td_array *head, td_array *head_grad) {
    return td_backward_ex(1, &head, head_grad ? &head_grad : NULL, 0);
}
