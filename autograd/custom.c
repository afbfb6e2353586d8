/* Custom functions: a user's forward and backward over arrays, recorded like
 * a built-in op.
 *
 * The forward runs on the caller's thread with recording paused, inside a
 * scope opened here (its temporaries go when it returns).  Each output the
 * caller gets is a fresh handle on the storage the forward's output has, so
 * the node can be set on it whatever the forward returned (a new array, a
 * view, one of its inputs).  The node saves the inputs and the outputs; its
 * gradient calls the user's backward with them and the output gradients.
 */
#include <stdlib.h>
#include <string.h>

#include "autograd/internal.h"

enum { MAX_ARGS = 16 };

static const char *fn_name(const td_custom_fn *fn) { return fn->name ? fn->name : "td_custom_call"; }

static td_status custom_grad(td__gctx *g) {
    const td_custom_fn *fn = g->extra;
    td_array *ig[MAX_ARGS] = {NULL};
    td_status st = fn->backward(fn->ctx, g->in, g->out, g->gout, ig);
    if (st != TD_OK) {
        if (td_last_status() == TD_OK) td__fail(st, "%s: its backward returned %s", fn_name(fn), td_status_name(st));
        return st;
    }
    for (int i = 0; i < g->n_in; i++) g->gin[i] = ig[i];
    return TD_OK;
}

td_status td_custom_call(const td_custom_fn *fn, td_array *const *in, td_array **out) {
    if (!fn) return td__fail(TD_EINVAL, "td_custom_call: fn is NULL");
    const char *name = fn_name(fn);
    if (!out) return td__fail(TD_EINVAL, "%s: out is NULL", name);
    if (fn->n_out < 1 || fn->n_out > MAX_ARGS || fn->n_in < 0 || fn->n_in > MAX_ARGS)
        return td__fail(TD_EINVAL, "%s: n_in must be 0 to %d and n_out 1 to %d (got %d and %d)", name, MAX_ARGS,
                        MAX_ARGS, fn->n_in, fn->n_out);
    for (int k = 0; k < fn->n_out; k++) out[k] = NULL;
    if (!fn->forward || !fn->backward)
        return td__fail(TD_EINVAL, "%s: the function needs both forward and backward", name);
    if (fn->n_in > 0 && !in) return td__fail(TD_EINVAL, "%s: in is NULL", name);
    for (int i = 0; i < fn->n_in; i++)
        if (!in[i]) return td__fail(TD_EINVAL, "%s: input %d is NULL", name, i);
    int rec = td__tape.active && td__any_requires_grad(in, fn->n_in);
    td_array *res[MAX_ARGS] = {NULL}, *outs[MAX_ARGS] = {NULL};
    td__tape_pause();
    td_scope_begin();
    td_status st = fn->forward(fn->ctx, in, res);
    if (st != TD_OK && td_last_status() == TD_OK)
        td__fail(st, "%s: its forward returned %s", name, td_status_name(st));
    for (int k = 0; k < fn->n_out && st == TD_OK; k++) {
        if (!res[k]) st = td__fail(TD_EINVAL, "%s: its forward left output %d NULL", name, k);
        else if (!(outs[k] = td__array_detached(res[k]))) st = td_last_status();
    }
    td_scope_end();
    td__tape_resume();
    if (st == TD_OK && rec) {
        td_custom_fn *copy = malloc(sizeof *copy);
        if (!copy) {
            st = td__fail(TD_ENOMEM, "%s: out of memory", name);
        } else {
            *copy = *fn;
            td__rec r = {.api = name, .grad = custom_grad, .saves = TD__SAVE_IN | TD__SAVE_OUT, .n_in = fn->n_in,
                         .in = in, .n_out = fn->n_out, .out = outs, .extra = copy, .extra_free = free};
            st = td__record_ex(&r);
        }
    }
    if (st != TD_OK) {
        for (int k = 0; k < fn->n_out; k++) td__array_unref(outs[k]);
        return st;
    }
    for (int k = 0; k < fn->n_out; k++) {
        out[k] = td__array_give(outs[k]);
        if (!out[k]) {
            for (int j = 0; j < fn->n_out; j++) {
                if (j < k) td_release(out[j]);
                else if (j > k) td__array_unref(outs[j]);
                out[j] = NULL;
            }
            return td_last_status();
        }
    }
    return TD_OK;
}
