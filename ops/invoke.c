/* The single invoke path of every op: validate, infer, allocate, push. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "ops/internal.h"

td_status td__broadcast_shapes(const char *who, int na, const int64_t *sa, int nb, const int64_t *sb, int *nout,
                               int64_t *out) {
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int ia = na - n + i, ib = nb - n + i;
        int64_t x = ia >= 0 ? sa[ia] : 1, y = ib >= 0 ? sb[ib] : 1;
        if (x == y || y == 1) out[i] = x;
        else if (x == 1) out[i] = y;
        else {
            char s1[128], s2[128];
            return td__fail(TD_ESHAPE, "%s: shapes %s and %s do not broadcast (dimension %d: %" PRId64 " vs %" PRId64 ")",
                            who, td__shape_str(na, sa, s1, sizeof s1), td__shape_str(nb, sb, s2, sizeof s2), i, x, y);
        }
    }
    *nout = n;
    return TD_OK;
}

static int is_float(int dt) { return dt == TD_F32 || dt == TD_F64; }

int td__can_cast_same_kind(int from, int to) {
    if (from == to || from == TD_U8) return 1;
    if (is_float(to)) return 1;                 /* integers and floats into floats */
    if (is_float(from)) return 0;               /* floats into integers: no */
    return !(to == TD_U8);                      /* i32/i64 into i32/i64, not into u8 */
}

static td__objcache call_cache = TD__OBJCACHE_INIT(TD__CACHE_CALL, td__call);

static void call_free(void *p) {
    td__call *c = p;
    for (int i = 0; i < c->n_in; i++) {
        td__array_op_done(c->in[i]);
        td__array_drop(c->in[i]);
    }
    if (c->out) {
        td__array_op_done(c->out);
        td__array_drop(c->out);
    }
    td__cache_free(&call_cache, c);
}

static td_status call_run(void *p, const td_exec *ex) {
    td__call *c = p;
    int kind = td_exec_device(ex).kind;
    return c->desc->kernel[kind](c, ex);
}

/* An internal contiguous copy of a (belongs to no scope). */
static td_array *private_copy(td_array *a) {
    td_array *o = td__array_new(a->dtype, a->ndim, a->shape, a->dev, "copy");
    if (!o) return NULL;
    td__array_count_output(o);
    td__ew_attrs at = {.code = TD__EW_COPY, .cdt = a->dtype};
    if (td__invoke_out(&td__op_copy, &a, 1, &at, sizeof at, o, 1) != TD_OK) {
        td__array_unref(o);
        return NULL;
    }
    return o;
}

static int same_view(const td_array *x, const td_array *y) {
    if (x->st != y->st || x->offset != y->offset || x->dtype != y->dtype || x->ndim != y->ndim) return 0;
    for (int i = 0; i < x->ndim; i++)
        if (x->shape[i] != y->shape[i] || (x->shape[i] > 1 && x->strides[i] != y->strides[i])) return 0;
    return 1;
}

/* Pushes c (which owns its references) writing c->out. */
static td_status push_call(td__call *c) {
    td_var *reads[TD__MAX_IN];
    for (int i = 0; i < c->n_in; i++) reads[i] = c->in[i]->st->var;
    td_var *writes[1] = {c->out->st->var};
    td_op op = {.name = c->desc->name, .device = c->out->dev, .fn = call_run, .arg = c, .arg_free = call_free,
                .reads = reads, .n_reads = (size_t)c->n_in, .writes = writes, .n_writes = 1,
                .flags = td__array_covers_storage(c->out) ? TD_OP_OVERWRITE : 0};
    td_status st = td_push(&op);
    if (st != TD_OK) call_free(c);
    return st;
}

static td_status check_inputs(const td__opdesc *d, td_array *const *in, int n_in) {
    for (int i = 1; i < n_in; i++)
        if (in[i]->dev.kind != in[0]->dev.kind || in[i]->dev.id != in[0]->dev.id)
            return td__fail(TD_EDEVICE, "%s: inputs are on different devices (%s:%d and %s:%d); copy one first",
                            d->api, in[0]->dev.kind == TD_GPU ? "gpu" : "cpu", in[0]->dev.id,
                            in[i]->dev.kind == TD_GPU ? "gpu" : "cpu", in[i]->dev.id);
    td_device dev = n_in ? in[0]->dev : td_cpu(0);
    if (dev.kind < 0 || dev.kind > 1 || !d->kernel[dev.kind])
        return td__fail(TD_EDEVICE, "%s has no kernel for this device", d->api);
    return TD_OK;
}

static td__call *make_call(const td__opdesc *d, td_array *const *in, int n_in, const void *attrs, size_t attrs_size) {
    td__call *c = td__cache_alloc(&call_cache);
    if (!c) {
        td__fail(TD_ENOMEM, "%s: out of memory", d->api);
        return NULL;
    }
    c->desc = d;
    c->n_in = n_in;
    c->out = NULL;
    for (int i = 0; i < n_in; i++) c->in[i] = td__array_hold(in[i]);
    if (attrs_size) memcpy(c->attrs, attrs, attrs_size);
    return c;
}

td_array *td__invoke(const td__opdesc *d, td_array *const *in, int n_in, const void *attrs, size_t attrs_size) {
    for (int i = 0; i < n_in; i++)
        if (!in[i]) return NULL;
    if (check_inputs(d, in, n_in) != TD_OK) return NULL;
    td__call *c = make_call(d, in, n_in, attrs, attrs_size);
    if (!c) return NULL;
    int dtype, ndim;
    int64_t shape[TD_MAX_DIMS];
    if (d->infer(c, &dtype, &ndim, shape) != TD_OK) {
        call_free(c);
        return NULL;
    }
    c->out = td__array_new(dtype, ndim, shape, n_in ? in[0]->dev : td_cpu(0), d->api);
    if (!c->out) {
        call_free(c);
        return NULL;
    }
    atomic_store_explicit(&c->out->op_refs, 1, memory_order_relaxed); /* the call's reference */
    td__array_count_output(c->out);
    td_array *result = td_retain(c->out);
    if (push_call(c) != TD_OK) {
        td__array_unref(result);
        return NULL;
    }
    /* Recorded after the push, so saved versions are those of push time. */
    if (td__tape.active && td__any_requires_grad(in, n_in) &&
        td__record(d, in, n_in, attrs, attrs_size, result) != TD_OK) {
        td__array_unref(result);
        return NULL;
    }
    return td__array_give(result);
}

td_status td__invoke_out(const td__opdesc *d, td_array *const *in_, int n_in, const void *attrs, size_t attrs_size,
                         td_array *out, int any_cast) {
    for (int i = 0; i < n_in; i++)
        if (!in_[i]) return td__fail(TD_EINVAL, "%s: input %d is NULL", d->api, i);
    if (!out) return td__fail(TD_EINVAL, "%s: out is NULL", d->api);
    /* Writes into existing arrays are not recorded (autograd/ explains why);
     * a write that would need a gradient is refused rather than left out of
     * the graph. */
    if (td__tape.active && td__any_requires_grad(in_, n_in))
        return td__fail(TD_EINVAL,
                        "%s: writes into an existing array (out= forms, td_assign, in-place ops) are not recorded "
                        "for autograd, and an input needs a gradient; use the form that returns a new array, or "
                        "write between td_pause_begin and td_pause_end",
                        d->api);
    td_array *in[TD__MAX_IN + 1];
    for (int i = 0; i < n_in; i++) in[i] = in_[i];
    in[n_in] = out;
    if (check_inputs(d, in, n_in + 1) != TD_OK) return td_last_status();
    td__call *c = make_call(d, in, n_in, attrs, attrs_size);
    if (!c) return TD_ENOMEM;
    c->out = td__array_hold(out);
    int dtype, ndim;
    int64_t shape[TD_MAX_DIMS];
    if (d->infer(c, &dtype, &ndim, shape) != TD_OK) {
        call_free(c);
        return td_last_status();
    }
    int same = ndim == out->ndim;
    for (int i = 0; same && i < ndim; i++) same = shape[i] == out->shape[i];
    if (!same) {
        char s1[128], s2[128];
        call_free(c);
        return td__fail(TD_ESHAPE, "%s: out has shape %s but the result has shape %s", d->api,
                        td__shape_str(out->ndim, out->shape, s1, sizeof s1), td__shape_str(ndim, shape, s2, sizeof s2));
    }
    if (!any_cast && !td__can_cast_same_kind(dtype, out->dtype)) {
        call_free(c);
        return td__fail(TD_EDTYPE, "%s: the %s result cannot be stored in a %s out without losing its kind",
                        d->api, td_dtype_name(dtype), td_dtype_name(out->dtype));
    }
    /* An input that overlaps out in another layout is read from a copy, so
     * the result is as if every input were read before out is written. */
    for (int i = 0; i < n_in; i++) {
        if (c->in[i]->st == out->st && !same_view(c->in[i], out)) {
            td_array *cp = private_copy(c->in[i]);
            if (!cp) {
                call_free(c);
                return td_last_status();
            }
            td__array_drop(c->in[i]);
            atomic_fetch_add_explicit(&cp->op_refs, 1, memory_order_relaxed); /* now the call's */
            c->in[i] = cp;
        }
    }
    td_status st = push_call(c);
    if (st == TD_OK) {
        /* At push time, in program order: what autograd's saved-array check
         * compares.  The write also cuts out from the op that made it. */
        atomic_fetch_add_explicit(&out->st->version, 1, memory_order_relaxed);
        if (out->node) td__tape_cut(out);
    }
    return st;
}
