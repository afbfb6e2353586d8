/* tide ops: the registry and the single invoke path (private to tide).
 *
 * Each op is one descriptor (a name, its number of inputs, shape/dtype
 * inference, a kernel per device kind), defined next to its kernels in the
 * file of its family.  The public functions (td_add, ...) are thin wrappers
 * over td__invoke: validate, infer, allocate the output, push.
 */
#ifndef TIDE_OPS_INTERNAL_H
#define TIDE_OPS_INTERNAL_H

#include <tide/ops.h>

#include "ndarray/internal.h"

enum { TD__MAX_IN = 4, TD__ATTR_BYTES = 64 };

typedef struct td__opdesc td__opdesc;
typedef struct td__gctx td__gctx;

/* An op's gradient: from g->gout (one per output), set g->gin[i] for every
 * input with g->need[i], as arrays made by other ops (they belong to the
 * scope backward opens around the call, so temporaries need no release; a
 * gin may also be one of g's arrays).  A gin may have any shape that the
 * input's shape broadcasts to (backward sums it back, so elementwise ops
 * need not unbroadcast) and any float dtype (backward casts it); NULL means
 * zero.  Returns TD_OK, or the status of the op that failed (message set).
 * Runs on the thread that called td_backward, with recording paused. */
typedef td_status (*td__grad_fn)(td__gctx *g);

/* What a recorded op keeps for its gradient (td__opdesc.saves). */
enum { TD__SAVE_IN = 1, TD__SAVE_OUT = 2 };

/* One call of an op: what the kernel gets (inputs and output retained until
 * the op ends). */
typedef struct {
    const td__opdesc *desc;
    int n_in;
    td_array *in[TD__MAX_IN];
    td_array *out;
    /* borrowed: the caller's references, not the call's (the naive engine
     * runs the op before td__invoke returns); done: the op has ended. */
    int borrowed;
    atomic_int done;
    _Alignas(8) unsigned char attrs[TD__ATTR_BYTES];
} td__call;

struct td__opdesc {
    const char *name; /* "add": the op's name in traces and reports */
    const char *api;  /* "td_add": the public function, for messages */
    const char *code_error; /* message when an inner loop reports an error */
    int n_in;
    /* The output's dtype and shape for these inputs and attrs; on failure a
     * status with a message naming the op and the shapes. */
    td_status (*infer)(const td__call *c, int *dtype, int *ndim, int64_t *shape);
    /* Per device kind (TD_CPU, TD_GPU); NULL when the kind has none. */
    td_status (*kernel[2])(const td__call *c, const td_exec *ex);
    /* An elementwise op (td__ew_attrs) that may be deferred and fused into
     * its consumer (see "Fusion" in invoke.c). */
    int fusable;
    /* The gradient, written next to the kernels; NULL: the op is not
     * differentiable (backward says so if a gradient path needs it). */
    td__grad_fn grad;
    int saves; /* TD__SAVE_* the gradient reads */
};

/* ---- autograd: the tape (tape.c) ----
 * Recording happens here, below autograd/, because the invoke path and the
 * view functions record; autograd/ walks the graph backward. */

/* An array's dtype and shape, as recorded. */
typedef struct {
    int dtype, ndim;
    int64_t shape[TD_MAX_DIMS];
} td__meta;

/* Where an input's gradient goes: the node that made it (output idx), or a
 * leaf (an array with a gradient buffer), or nowhere (both NULL: a
 * constant, an integer array). */
typedef struct {
    struct td__node *node;
    int idx;
    td_array *leaf;
} td__edge;

/* A recorded op.  Owned by references: one per output handle that names it
 * and one per later node's edge to it, so a graph lives while an array made
 * from it does.  A node never refers to its own outputs: it saves detached
 * handles on their storage instead (no cycle). */
typedef struct td__node {
    atomic_int refs;
    int64_t seq;          /* recording order: inputs' nodes have smaller ones */
    const char *api;      /* "td_mul", for messages */
    td__grad_fn grad;
    int n_in, n_out;
    td__edge *edges;      /* n_in */
    td__meta *in_meta;    /* n_in */
    td__meta *out_meta;   /* n_out */
    td_array **saved_in;  /* n_in, detached; entries NULL when not saved */
    uint64_t *saved_in_ver;
    td_array **saved_out; /* n_out, detached; entries NULL when not saved */
    uint64_t *saved_out_ver;
    void *extra;          /* custom functions: their description */
    void (*extra_free)(void *);
    int released;         /* backward without keep_graph let go of the saved arrays */
    /* backward's scratch (one backward over a node at a time) */
    uint64_t bw_epoch;
    int bw_useful;
    td_array **gacc;      /* n_out accumulated output gradients */
    _Alignas(8) unsigned char attrs[TD__ATTR_BYTES];
} td__node;

/* What a gradient function gets. */
struct td__gctx {
    const char *api;
    const void *attrs;
    void *extra;
    int n_in, n_out;
    td_array *const *in;       /* saved inputs (detached), or NULL entries */
    td_array *const *out;      /* saved outputs (detached), or NULL entries */
    td_array *const *gout;     /* one per output, never NULL (zeros when none flowed) */
    const td__meta *in_meta;
    const td__meta *out_meta;
    const int *need;
    td_array **gin;
};

/* This thread's recording state.  active = depth > 0 && pause == 0: the one
 * thread-local read the invoke path pays when not recording. */
typedef struct {
    int depth, pause, training, active;
} td__tape_state;
extern _Thread_local td__tape_state td__tape;
static inline void td__tape_update(void) { td__tape.active = td__tape.depth > 0 && td__tape.pause == 0; }
static inline void td__tape_pause(void) {
    td__tape.pause++;
    td__tape.active = 0;
}
static inline void td__tape_resume(void) {
    td__tape.pause--;
    td__tape_update();
}
/* Installs the ndarray hooks (idempotent, cheap). */
void td__tape_install(void);

/* Whether a takes part in differentiation: a float array with a live node,
 * or a leaf whose grad_req is not null. */
static inline int td__requires_grad(const td_array *a) {
    return (a->dtype == TD_F32 || a->dtype == TD_F64) &&
           (a->node || (a->grad && a->grad_req != 0));
}
static inline int td__any_requires_grad(td_array *const *in, int n) {
    for (int i = 0; i < n; i++)
        if (in[i] && td__requires_grad(in[i])) return 1;
    return 0;
}

/* A full record: any number of inputs and outputs. */
typedef struct {
    const char *api;
    td__grad_fn grad;
    int saves;
    int n_in;
    td_array *const *in;
    int n_out;
    td_array *const *out;
    const void *attrs;
    size_t attrs_size;
    void *extra;               /* owned by the node from here on, even on failure */
    void (*extra_free)(void *);
} td__rec;
/* Records a node for r and sets it on every output; TD_ENOMEM (message
 * set) when it could not. */
td_status td__record_ex(const td__rec *r);
/* Records out = d(in) (one output) with d's name, gradient and saves. */
td_status td__record(const td__opdesc *d, td_array *const *in, int n_in, const void *attrs, size_t attrs_size,
                     td_array *out);
/* For wrappers whose internal steps must not record (they substitute copies
 * for their inputs): td__rec_begin pauses if the call will be recorded and
 * says so; td__rec_end resumes and records r (a result already given to
 * the caller) with the logical inputs, releasing it on failure. */
static inline int td__rec_begin(td_array *const *in, int n) {
    if (!td__tape.active || !td__any_requires_grad(in, n)) return 0;
    td__tape_pause();
    return 1;
}
td_array *td__rec_end(int rec, const td__opdesc *d, td_array *const *in, int n, const void *attrs, size_t attrs_size,
                      td_array *r);
/* Drops a's node (a write made its values no longer those of its op). */
void td__tape_cut(td_array *a);
void td__node_unref(td__node *n);
/* A new handle on a's storage with a's layout, without node or gradient; in
 * no scope.  NULL with TD_ENOMEM. */
td_array *td__array_detached(const td_array *a);
/* Nodes alive (tests). */
int64_t td__tape_live_nodes(void);

/* Gradient helpers (arrays in the current scope). */
/* g summed over the dimensions that shape was broadcast along to reach g's
 * shape; TD_ESHAPE when shape does not broadcast to it. */
td_array *td__unbroadcast(td_array *g, int ndim, const int64_t *shape);
/* g, the result of reducing an array of meta m along axis (TD_ALL_AXES or
 * one, keepdims as given), broadcast back to m's shape (a view). */
td_array *td__expand_reduced(td_array *g, const td__meta *m, int axis, int keepdims);
/* How a view was made, as its node keeps it: slice: s = axis, start, stop,
 * step (as given); transpose: perm; flip: s[0] = axis. */
typedef struct {
    int kind, n;
    int64_t s[4];
    int8_t perm[TD_MAX_DIMS];
} td__view_attrs;
/* The descriptor views of kind TD__VIEW_* record (ops/shape.c). */
const td__opdesc *td__view_desc(int kind);
extern const td__opdesc td__rec_reshape; /* td_reshape, td_contiguous (shape.c) */
extern const td__opdesc td__rec_astype;  /* td_astype (creation.c) */


/* Runs d on the inputs: a new output array given to the caller (or scope),
 * or NULL.  A NULL input gives NULL and leaves the thread's error alone. */
td_array *td__invoke(const td__opdesc *d, td_array *const *in, int n_in, const void *attrs, size_t attrs_size);
/* The same into an existing out (shape must match exactly; dtype must be a
 * safe cast of the result unless any_cast). */
td_status td__invoke_out(const td__opdesc *d, td_array *const *in, int n_in, const void *attrs, size_t attrs_size,
                         td_array *out, int any_cast);

/* Broadcasts two shapes as numpy; message names who. */
td_status td__broadcast_shapes(const char *who, int na, const int64_t *sa, int nb, const int64_t *sb, int *nout,
                               int64_t *out);
/* Whether a result of dtype from may be stored in dtype to by an out= form:
 * the same kind, integer to float, or u8 to anything (numpy's same_kind). */
int td__can_cast_same_kind(int from, int to);

/* ---- the elementwise engine (elementwise.c) ---- */
enum {
    TD__EW_COPY = 0, /* out = a (converted): assign, astype, fill, contiguous */
    TD__EW_ADD, TD__EW_SUB, TD__EW_MUL, TD__EW_DIV, TD__EW_POW, TD__EW_MAX, TD__EW_MIN,
    TD__EW_EQ, TD__EW_NE, TD__EW_LT, TD__EW_LE, TD__EW_GT, TD__EW_GE,
    TD__EW_COUNT
};
/* Attributes of an elementwise call. */
typedef struct {
    int code;
    int cdt;          /* dtype the computation is done in */
    int scalar_pos;   /* 0: two arrays (or one, for COPY); 1: the scalar is the left operand; 2: the right */
    double scalar;    /* as given */
    _Alignas(8) unsigned char sbuf[8]; /* the scalar converted to cdt */
} td__ew_attrs;

/* An inner loop: n elements, byte strides; b is ignored by one-operand loops. */
typedef void (*td__loop_fn)(int64_t n, char *o, int64_t so, const char *a, int64_t sa, const char *b, int64_t sb);
/* Runs fn over c->out's shape with operands c->in[0] (and c->in[1], or a
 * scalar at scalar_pos 1 (left) or 2 (right), stored as cdt at `scalar`),
 * broadcasting, converting operands to cdt and the loop's output (of dtype
 * ldt) to out's dtype in blocks, chunked with td_parallel_for, and streaming
 * large outputs.  nops: 1 or 2.  A loop reports an error by setting
 * *td__loop_error() (the op then fails with TD_EFAILED). */
td_status td__ew_run(const td__call *c, const td_exec *ex, td__loop_fn fn, int cdt, int ldt, int nops,
                     int scalar_pos, const void *scalar);
int *td__loop_error(void);

/* Walks elements [b, e) of a row-major iteration space of nd dims over
 * nops (at most TD__WALK_MAX) operands at base with byte strides str,
 * calling seg with the operands' addresses for each run along the last dim
 * (the chunk function of every strided elementwise kernel). */
enum { TD__WALK_MAX = 4 };
typedef void (*td__seg_fn)(void *arg, int64_t n, char **ptr);
void td__nd_walk(int nd, const int64_t *shape, int nops, char *const *base, const int64_t (*str)[TD_MAX_DIMS],
                 int64_t b, int64_t e, td__seg_fn seg, void *arg);

extern const td__opdesc td__op_copy;
/* Fusion (elementwise.c): whether consumer c, whose input xi is the output
 * of the deferred elementwise op (iat, iin[0..in_n)), fuses with it; if so,
 * the fused call's attrs and inputs (*n_out of them) for td__op_fused. */
int td__ew_fuse_plan(const td__call *c, int xi, const td__ew_attrs *iat, td_array *const *iin, int in_n,
                     void *attrs_out, td_array **in_out, int *n_out);
extern const td__opdesc td__op_fused;
/* Test hook: fusion on or off, and the smallest output deferred (invoke.c,
 * "Fusion"). */
void td__fusion_set(int on, size_t min_bytes);
td_status td__ew_kernel(const td__call *c, const td_exec *ex);
/* Converts n elements from (src, dtype sd, byte stride ss) to contiguous dst of dtype dd. */
void td__convert(int sd, const char *src, int64_t ss, int dd, char *dst, int64_t n);
/* Stores v as dtype dt at p (floats to integers truncate; NaN gives 0;
 * out-of-range values saturate). */
void td__store_double(int dt, void *p, double v);

#endif
