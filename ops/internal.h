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

/* One call of an op: what the kernel gets (inputs and output retained until
 * the op ends). */
typedef struct {
    const td__opdesc *desc;
    int n_in;
    td_array *in[TD__MAX_IN];
    td_array *out;
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
};

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
