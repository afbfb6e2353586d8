/* tide: automatic differentiation on a tape.
 *
 * Between td_record_begin() and td_record_end() (per thread, nestable), every
 * op whose input needs a gradient is recorded: its result carries a node that
 * remembers the op, its inputs and what its gradient reads.  The graph is
 * owned by the arrays: a recorded pass that is never differentiated (an
 * evaluation) frees itself when its arrays are released.
 *
 *     td_array *w = ...;                       // a parameter
 *     td_attach_grad(w, TD_GRAD_WRITE);        // a leaf: gets a gradient buffer
 *     td_record_begin();
 *     td_array *loss = td_mean(td_square(td_sub(td_matmul(x, w), y)), TD_ALL_AXES, TD_DROPDIMS);
 *     td_record_end();
 *     td_backward(loss, NULL);                 // pushes the gradient ops; returns at once
 *     td_sub_out(w, td_mul_scalar(td_grad(w), 0.1), w);  // SGD, outside recording
 *
 * td_backward pushes the gradient ops through the engine like any other op,
 * so it returns once they are queued, and independent branches of the
 * backward graph run in parallel; an op that fails during backward reaches
 * whoever waits on the gradient, as any op's failure does.
 *
 * Rules:
 *  - Gradients exist for float32 and float64 arrays; integer inputs (indices,
 *    masks) are constants.
 *  - Writes into existing arrays (td_assign, td_fill, td_scatter_add and every
 *    _out form) are never recorded: while recording, such a write whose input
 *    needs a gradient fails with TD_EINVAL (use the form that returns a new
 *    array).  A write into an array bumps its storage's version and cuts that
 *    handle from the op that made it.  If the graph saved the written storage
 *    for a gradient, a later backward that needs it fails with TD_EINVAL
 *    naming the op, instead of using the changed values (updating parameters
 *    after backward is therefore fine).  Writes made with td_data or a custom
 *    td_push op are not seen.
 *  - Views (td_slice, td_transpose, td_reshape, td_expand_dims, td_squeeze,
 *    td_broadcast_to, td_flip, td_split) of an array in a graph are recorded
 *    and pass gradients back to their base.
 *  - Backward never records (higher-order gradients are not supported) and
 *    the arrays it makes for itself join no user scope.  Two backward passes
 *    over graphs that share nodes must not run at the same time on two
 *    threads.
 */
#ifndef TIDE_AUTOGRAD_H
#define TIDE_AUTOGRAD_H

#include <stdint.h>
#include <stdio.h>
#include <tide/array.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { TD_GRAD_NULL = 0, TD_GRAD_WRITE, TD_GRAD_ADD } td_grad_req;

/* Makes x a leaf with a gradient buffer of its shape and dtype, zeroed (a
 * recorded array becomes a leaf: it forgets the op that made it).  req:
 * TD_GRAD_WRITE (backward overwrites the buffer), TD_GRAD_ADD (backward adds
 * to it) or TD_GRAD_NULL (x is a constant; the buffer is left untouched).
 * TD_EDTYPE for an integer array, TD_EINVAL for NULL or a bad req. */
td_status td_attach_grad(td_array *x, td_grad_req req);
/* Recording, per thread.  Begin/end nest; td_pause_begin/end (also nestable)
 * stop recording inside a recorded region.  An end without its begin does
 * nothing (and says so in td_last_error). */
void td_record_begin(void);
void td_record_end(void);
void td_pause_begin(void);
void td_pause_end(void);
int  td_is_recording(void);            /* recording on this thread, and not paused */
/* Training mode, per thread (0 at start); read by dropout and batch norm. */
void td_set_training(int training);
int  td_is_training(void);

/* Backward from head: head_grad (head's shape, a float dtype), or ones when
 * NULL.  Writes td_grad(x) of every leaf x the head depends on, as its
 * grad_req says.  Without keep_graph the graph lets go of what it saved, and
 * a second backward over it fails (TD_EINVAL).  Errors, each with a message:
 * TD_EINVAL for a head that was not recorded, a head with no gradient path to
 * a leaf, a path through an op that is not differentiable, or a saved array
 * written since; TD_ESHAPE for a head_grad of another shape; TD_EDTYPE for an
 * integer head. */
td_status td_backward(td_array *head, td_array *head_grad /* NULL: ones */);
/* Several heads at once (their gradients add up): head_grads may be NULL
 * (ones for each) or have NULL entries; keep_graph nonzero keeps the graph
 * for another backward. */
td_status td_backward_ex(int n, td_array *const *heads, td_array *const *head_grads, int keep_graph);
/* The gradient buffer of a leaf, borrowed: owned by x, valid while x lives.
 * NULL (TD_EINVAL) when x has none. */
td_array *td_grad(td_array *x);
/* A new array on a's storage with no graph and no gradient (owned as any new
 * array): what it computes is a constant to autograd. */
td_array *td_detach(td_array *a);

/* ---- custom functions ----
 * An op the user writes from other ops: forward makes n_out outputs from
 * n_in inputs; backward gets the inputs, the outputs and the gradient of
 * each output, and sets in_grads[i] for each input (NULL: zero; an array of
 * the input's shape).  forward runs on the caller's thread with recording
 * paused; backward runs during td_backward, not recorded.  Arrays either
 * makes belong to a scope tide opens around the call (no release needed);
 * returning one of the arrays it was given is fine.  Return TD_OK, or a
 * failure status with td_last_error set. */
typedef struct {
    const char *name; /* for messages: "softplus" */
    int n_in, n_out;  /* 1 to 16 each */
    td_status (*forward)(void *ctx, td_array *const *in, td_array **out);
    td_status (*backward)(void *ctx, td_array *const *in, td_array *const *out, td_array *const *out_grads,
                          td_array **in_grads);
    void *ctx; /* passed to both; must outlive every graph that records the function */
} td_custom_fn;
/* Runs fn on in (fn->n_in arrays) into out (fn->n_out new arrays, owned as any
 * new array), recording it like a built-in op when recording. */
td_status td_custom_call(const td_custom_fn *fn, td_array *const *in, td_array **out);

/* ---- gradient checker ----
 * Compares the gradient backward computes for f at inputs (float arrays) with
 * central finite differences, in float64: the inputs are copied to float64,
 * the analytic gradient is that of sum(f(x) * w) for fixed pseudo-random
 * weights w, and the numeric one perturbs each element by eps (1e-6 scaled
 * by the element's magnitude) in turn.  Passes when every element has
 * |analytic - numeric| <= atol + rtol * |numeric|.  f builds its result from
 * in with tide ops (it runs once recorded and twice per element unrecorded)
 * and returns a new array (or one owned by the scope it runs in).  report,
 * if not NULL, gets a line about the worst element.  TD_EFAILED (message
 * naming the input, the element and both values) when the check fails. */
typedef td_array *(*td_gradcheck_fn)(void *ctx, int n, td_array *const *in);
td_status td_gradcheck(td_gradcheck_fn f, void *ctx, int n, td_array *const *inputs, double rtol, double atol,
                       FILE *report);

#ifdef __cplusplus
}
#endif
#endif
