/* The single invoke path of every op: validate, infer, allocate, push. */
#include <inttypes.h>
#include <sched.h>
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
    if (c->borrowed) { /* td__invoke frees it once it sees this */
        atomic_store_explicit(&c->done, 1, memory_order_release);
        return;
    }
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

static int output_unobservable(const td__call *c);
static atomic_llong n_skipped;

static td_status call_run(void *p, const td_exec *ex) {
    td__call *c = p;
    int kind = td_exec_device(ex).kind;
    /* A deferred op whose output nobody can see any more has nothing to do. */
    if (TD__UNLIKELY(c->out && c->out->lazy) && output_unobservable(c)) {
        atomic_fetch_add_explicit(&n_skipped, 1, memory_order_relaxed);
        return TD_OK;
    }
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

/* Pushes c (which owns its references) writing c->out, with the engine
 * options x (NULL: none).  A push refused by x's guard leaves c with the
 * caller (x->guard_failed). */
static td_status push_call_x(td__call *c, td__push_x *x) {
    td_var *reads[TD__MAX_IN];
    for (int i = 0; i < c->n_in; i++) reads[i] = c->in[i]->st->var;
    td_var *writes[1] = {c->out->st->var};
    td_op op = {.name = c->desc->name, .device = c->out->dev, .fn = call_run, .arg = c, .arg_free = call_free,
                .reads = reads, .n_reads = (size_t)c->n_in, .writes = writes, .n_writes = 1,
                .flags = TD__OP_STATIC_NAME | (td__array_covers_storage(c->out) ? TD_OP_OVERWRITE : 0)};
    td_status st = td__push_ex(&op, x);
    if (st != TD_OK) call_free(c);
    return st;
}

static td_status push_call(td__call *c) { return push_call_x(c, NULL); }

/* ---- Fusion ----
 * An elementwise op with a large output, called from a user thread on the
 * threaded engine, is pushed *deferred* (engine/park.c): queued on its vars,
 * but not run until something needs it.  If the next op takes that output
 * as an elementwise operand, it is pushed as one fused op that computes the
 * deferred op's values block by block in the cache (td__op_fused), reading
 * the deferred op's inputs instead of its output: `td_add(a,
 * td_mul_scalar(b, 2))` then reads a and b and writes c once, like the
 * plain C loop, instead of making and re-reading a temporary.
 *
 * The deferred op still runs when anything asks for its output (a read, a
 * wait, td_wait_all), or when anything is pushed that writes one of its
 * inputs, so every result stays what running the ops one by one gives.  It
 * runs *without doing its work* when, by then, nothing can observe its
 * output: only the op itself holds the array (the program released it, no
 * view shares its storage).  The fused op is pushed only if the deferred
 * op is still deferred, checked under the locks of both ops' vars (the
 * push's guard), so no conflicting push from another thread slips in.
 *
 * TIDE_FUSE=0 turns this off; TIDE_FUSE_MIN_BYTES sets the smallest output
 * that is deferred (default 256 KiB: below that, the op is cheap to run and
 * deferring it costs more than it saves). */
typedef struct {
    td__lazy base;
    td__call *call; /* the deferred op's; read only while it is still deferred */
} lazy_ew;

static atomic_llong n_fused, n_deferred;
static atomic_int fuse_mode = -1; /* -1 unknown, 0 off, 1 on */
static _Atomic size_t fuse_min = 256 << 10;

static int fusion_on(void) {
    int m = atomic_load_explicit(&fuse_mode, memory_order_acquire);
    if (TD__LIKELY(m >= 0)) return m;
    long long mb = td__env_int("TIDE_FUSE_MIN_BYTES", 256 << 10, NULL);
    atomic_store(&fuse_min, mb < 0 ? 0 : (size_t)mb);
    m = td__env_int("TIDE_FUSE", 1, NULL) != 0;
    atomic_store_explicit(&fuse_mode, m, memory_order_release);
    return m;
}

td_fusion_stats td_fusion_stats_get(void) {
    td_fusion_stats s = {atomic_load(&n_deferred), atomic_load(&n_fused), atomic_load(&n_skipped)};
    return s;
}

void td__fusion_set(int on, size_t min_bytes) {
    fusion_on();
    atomic_store(&fuse_min, min_bytes);
    atomic_store(&fuse_mode, on != 0);
}

static void lazy_release(td__lazy *l) {
    td__park_release(l->park);
    free(l);
}

/* Whether the output of c may not be seen by anyone when c runs: only the
 * call holds the array, and no other array shares its storage. */
static int output_unobservable(const td__call *c) {
    uint64_t rc = atomic_load(&c->out->rc);
    return td__rc_refs(rc) == 1 && atomic_load(&c->out->st->refs) == 1;
}

static int should_defer(const td__opdesc *d, const td__call *c) {
    return d->fusable && !td__g.naive && !td__tls_op && fusion_on() &&
           (size_t)td_numel(c->out) * td_dtype_size(c->out->dtype) >= atomic_load_explicit(&fuse_min, memory_order_relaxed) &&
           !atomic_load_explicit(&td__prof_on, memory_order_relaxed);
}

/* Pushes c deferred, leaving what a consumer needs to fuse with it on its
 * output.  Falls back to a plain push when memory is short. */
static td_status push_deferred(td__call *c) {
    lazy_ew *z = malloc(sizeof *z);
    td__park *t = z ? td__park_new() : NULL;
    if (!t) {
        free(z);
        return push_call(c);
    }
    z->base.park = t;
    z->base.release = lazy_release;
    z->call = c;
    td_array *out = c->out;
    out->lazy = &z->base; /* before the push: the op may run at once */
    td__push_x x = {.defer = t};
    td_status st = push_call_x(c, &x);
    if (st != TD_OK) {
        out->lazy = NULL;
        lazy_release(&z->base);
        return st;
    }
    atomic_fetch_add_explicit(&n_deferred, 1, memory_order_relaxed);
    return TD_OK;
}

/* While the producer is deferred: its call is alive; plan the fusion and
 * hold the producer's inputs for the fused call. */
typedef struct {
    const td__call *c, *prod;
    int xi, ok, n;
    _Alignas(8) unsigned char attrs[TD__ATTR_BYTES];
    td_array *in[TD__MAX_IN];
} fuse_job;

static void plan_fusion(void *arg) {
    fuse_job *j = arg;
    j->ok = td__ew_fuse_plan(j->c, j->xi, (const td__ew_attrs *)j->prod->attrs, j->prod->in, j->prod->n_in,
                             j->attrs, j->in, &j->n);
    if (j->ok)
        for (int i = 0; i < j->n; i++) td__array_hold(j->in[i]);
}

/* Pushes c fused with the deferred producer of one of its inputs when it
 * can; returns 1 if it did (*st: the push's status), 0 to push c as is. */
static int push_fused(td__call *c, td_status *st) {
    for (int xi = 0; xi < c->n_in; xi++) {
        td_array *tmp = c->in[xi];
        lazy_ew *z = (lazy_ew *)tmp->lazy;
        if (!z || !td__park_deferred(z->base.park)) continue;
        fuse_job j = {.c = c, .prod = z->call, .xi = xi};
        if (!td__park_while_deferred(z->base.park, plan_fusion, &j) || !j.ok) continue;
        td__call *f = td__cache_alloc(&call_cache);
        if (!f) {
            for (int i = 0; i < j.n; i++) td__array_drop(j.in[i]);
            return 0;
        }
        f->desc = &td__op_fused;
        f->n_in = j.n;
        for (int i = 0; i < j.n; i++) f->in[i] = j.in[i]; /* the holds taken above */
        memcpy(f->attrs, j.attrs, sizeof f->attrs);
        f->out = c->out; /* the output and its op reference move to f */
        td__push_x x = {.guard = z->base.park, .guard_var = tmp->st->var};
        *st = push_call_x(f, &x);
        if (*st == TD_OK && x.guard_failed) {
            f->out = NULL;
            call_free(f);
            return 0;
        }
        c->out = NULL; /* f owns it now (or freed it, when the push failed) */
        call_free(c);
        if (*st == TD_OK) atomic_fetch_add_explicit(&n_fused, 1, memory_order_relaxed);
        return 1;
    }
    return 0;
}

/* Pushes a call made by td__invoke. */
static td_status push_new_call(td__call *c) {
    if (TD__UNLIKELY(c->desc->fusable) && !td__g.naive && fusion_on()) {
        td_status st;
        if (!td__tls_op && push_fused(c, &st)) return st;
        if (should_defer(c->desc, c)) return push_deferred(c);
    }
    return push_call(c);
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

/* A call of d on in; hold: it holds its inputs (else the caller's
 * references stand for them until it takes its own, see td__invoke). */
static td__call *new_call(const td__opdesc *d, td_array *const *in, int n_in, const void *attrs, size_t attrs_size,
                          int hold) {
    td__call *c = td__cache_alloc(&call_cache);
    if (!c) {
        td__fail(TD_ENOMEM, "%s: out of memory", d->api);
        return NULL;
    }
    c->desc = d;
    c->n_in = n_in;
    c->out = NULL;
    c->borrowed = 0;
    for (int i = 0; i < n_in; i++) c->in[i] = hold ? td__array_hold(in[i]) : in[i];
    if (attrs_size) memcpy(c->attrs, attrs, attrs_size);
    return c;
}

static td__call *make_call(const td__opdesc *d, td_array *const *in, int n_in, const void *attrs, size_t attrs_size) {
    return new_call(d, in, n_in, attrs, attrs_size, 1);
}

/* The naive engine runs a user thread's op inside td_push, while the caller
 * still holds every array it passed: the call borrows the caller's
 * references instead of taking its own (which costs seven atomic operations
 * per op), and td__invoke frees it.  If the op had to queue behind a wait on
 * another thread, whoever ends that wait runs it, and td__invoke waits for
 * that before it returns. */
static td_array *invoke_naive(td__call *c, td_array *const *in, int n_in) {
    c->borrowed = 1;
    atomic_init(&c->done, 0);
    td_status st = push_call(c);
    while (!atomic_load_explicit(&c->done, memory_order_acquire)) sched_yield();
    td_array *out = c->out;
    td__cache_free(&call_cache, c);
    if (st != TD_OK) {
        td__array_unref(out);
        return NULL;
    }
    (void)in;
    (void)n_in;
    return out;
}

td_array *td__invoke(const td__opdesc *d, td_array *const *in, int n_in, const void *attrs, size_t attrs_size) {
    for (int i = 0; i < n_in; i++)
        if (!in[i]) return NULL;
    if (check_inputs(d, in, n_in) != TD_OK) return NULL;
    td__call *c = new_call(d, in, n_in, attrs, attrs_size, 0); /* held below, unless borrowed */
    if (!c) return NULL;
    int dtype, ndim;
    int64_t shape[TD_MAX_DIMS];
    if (d->infer(c, &dtype, &ndim, shape) != TD_OK) {
        td__cache_free(&call_cache, c);
        return NULL;
    }
    c->out = td__array_new(dtype, ndim, shape, n_in ? in[0]->dev : td_cpu(0), d->api);
    if (!c->out) {
        td__cache_free(&call_cache, c);
        return NULL;
    }
    td_array *result;
    if (td__g.naive && !td__tls_op) {
        result = invoke_naive(c, in, n_in);
        if (!result) return NULL;
    } else {
        for (int i = 0; i < n_in; i++) td__array_hold(in[i]);
        td__array_give_to_op(c->out); /* its one reference is the call's */
        td__array_count_output(c->out);
        result = td_retain(c->out);
        if (push_new_call(c) != TD_OK) {
            td__array_unref(result);
            return NULL;
        }
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
            td__array_give_to_op(cp); /* now the call's */
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
