/* tide: ops on arrays.
 *
 * Every op returns at once: it checks its inputs, works out the shape and
 * dtype of the result, allocates it, and pushes the work to the engine.  A
 * bad input gives NULL (or a status) with td_last_status() and
 * td_last_error() naming the op and the shapes; a NULL input gives NULL and
 * leaves them as they were (so one check at the end of an expression finds
 * the first failure).  Results are owned as described in <tide/array.h>.
 *
 * Elementwise ops broadcast as numpy does and promote mixed dtypes as numpy
 * does.  Scalars are "python-style": an integral value keeps the array's
 * dtype; a non-integral value keeps a float array's dtype and makes an
 * integer array float64.  Comparisons give TD_U8 arrays of 0 and 1.  td_div
 * is true division (integer inputs give float64).
 */
#ifndef TIDE_OPS_H
#define TIDE_OPS_H

#include <stdint.h>
#include <tide/array.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { TD_DROPDIMS = 0, TD_KEEPDIMS = 1 };

/* ---- creation ---- */
/* start, start+step, ... below stop (above, for a negative step). */
td_array *td_arange(int dtype, double start, double stop, double step, td_device dev);
/* num values from start to stop inclusive, evenly spaced. */
td_array *td_linspace(int dtype, double start, double stop, int64_t num, td_device dev);
/* The n x n identity. */
td_array *td_eye(int dtype, int64_t n, td_device dev);
/* A copy of a converted to dtype (floats to integers truncate toward zero,
 * as C and numpy do; out-of-range values are unspecified, as in numpy). */
td_array *td_astype(td_array *a, int dtype);

/* ---- elementwise, two arrays (broadcasting) ---- */
td_array *td_add(td_array *a, td_array *b);
td_array *td_sub(td_array *a, td_array *b);
td_array *td_mul(td_array *a, td_array *b);
td_array *td_div(td_array *a, td_array *b);
td_array *td_pow(td_array *a, td_array *b);
td_array *td_maximum(td_array *a, td_array *b);
td_array *td_minimum(td_array *a, td_array *b);
td_array *td_eq(td_array *a, td_array *b);
td_array *td_ne(td_array *a, td_array *b);
td_array *td_lt(td_array *a, td_array *b);
td_array *td_le(td_array *a, td_array *b);
td_array *td_gt(td_array *a, td_array *b);
td_array *td_ge(td_array *a, td_array *b);

/* ---- elementwise, array and scalar ---- */
td_array *td_add_scalar(td_array *a, double s);  /* a + s */
td_array *td_sub_scalar(td_array *a, double s);  /* a - s */
td_array *td_scalar_sub(double s, td_array *a);  /* s - a */
td_array *td_mul_scalar(td_array *a, double s);  /* a * s */
td_array *td_div_scalar(td_array *a, double s);  /* a / s */
td_array *td_scalar_div(double s, td_array *a);  /* s / a */
td_array *td_pow_scalar(td_array *a, double s);  /* a ** s */
td_array *td_scalar_pow(double s, td_array *a);  /* s ** a */
td_array *td_maximum_scalar(td_array *a, double s);
td_array *td_minimum_scalar(td_array *a, double s);

/* ---- in place and into an existing array ----
 * out must have exactly the broadcast shape of the inputs; the result is
 * converted to out's dtype when that loses no kind (integer to float, and
 * anything to the same kind), else TD_EDTYPE.  out may be one of the inputs
 * (a = a + b is td_add_out(a, b, a)). */
td_status td_assign(td_array *dst, td_array *src); /* dst[...] = src, broadcasting, any cast */
td_status td_fill(td_array *dst, double value);    /* dst[...] = value */
td_status td_add_out(td_array *a, td_array *b, td_array *out);
td_status td_sub_out(td_array *a, td_array *b, td_array *out);
td_status td_mul_out(td_array *a, td_array *b, td_array *out);
td_status td_div_out(td_array *a, td_array *b, td_array *out);
td_status td_pow_out(td_array *a, td_array *b, td_array *out);
td_status td_maximum_out(td_array *a, td_array *b, td_array *out);
td_status td_minimum_out(td_array *a, td_array *b, td_array *out);
td_status td_eq_out(td_array *a, td_array *b, td_array *out);
td_status td_ne_out(td_array *a, td_array *b, td_array *out);
td_status td_lt_out(td_array *a, td_array *b, td_array *out);
td_status td_le_out(td_array *a, td_array *b, td_array *out);
td_status td_gt_out(td_array *a, td_array *b, td_array *out);
td_status td_ge_out(td_array *a, td_array *b, td_array *out);
td_status td_add_scalar_out(td_array *a, double s, td_array *out);
td_status td_sub_scalar_out(td_array *a, double s, td_array *out);
td_status td_scalar_sub_out(double s, td_array *a, td_array *out);
td_status td_mul_scalar_out(td_array *a, double s, td_array *out);
td_status td_div_scalar_out(td_array *a, double s, td_array *out);
td_status td_scalar_div_out(double s, td_array *a, td_array *out);
td_status td_pow_scalar_out(td_array *a, double s, td_array *out);
td_status td_scalar_pow_out(double s, td_array *a, td_array *out);

/* ---- unary (floats keep their dtype; integer inputs of the transcendental
 * functions give float64, as numpy) ---- */
td_array *td_neg(td_array *a);
td_array *td_abs(td_array *a);
td_array *td_sign(td_array *a);
td_array *td_exp(td_array *a);
td_array *td_log(td_array *a);
td_array *td_log1p(td_array *a);
td_array *td_sqrt(td_array *a);
td_array *td_rsqrt(td_array *a);
td_array *td_square(td_array *a);
td_array *td_sin(td_array *a);
td_array *td_cos(td_array *a);
td_array *td_tanh(td_array *a);
td_array *td_sigmoid(td_array *a);
td_array *td_relu(td_array *a);
td_array *td_gelu(td_array *a);                 /* the tanh approximation */
td_array *td_clip(td_array *a, double lo, double hi);
td_array *td_isfinite(td_array *a);             /* TD_U8 */
/* cond ? a : b elementwise, broadcasting all three; cond is any dtype
 * (nonzero is true); the result has a and b's promoted dtype. */
td_array *td_where(td_array *cond, td_array *a, td_array *b);

/* ---- reductions along one axis, or every axis with TD_ALL_AXES (a 0-d
 * result); keepdims is TD_KEEPDIMS or TD_DROPDIMS.  Results do not depend
 * on the number of workers, bit for bit.  Sums of integers are int64; means
 * and variances of integers are float64; argmax/argmin give int64 (the
 * first index of the extreme value; TD_ALL_AXES gives the flat index). ---- */
td_array *td_sum(td_array *a, int axis, int keepdims);
td_array *td_mean(td_array *a, int axis, int keepdims);
td_array *td_max(td_array *a, int axis, int keepdims);
td_array *td_min(td_array *a, int axis, int keepdims);
td_array *td_prod(td_array *a, int axis, int keepdims);
td_array *td_argmax(td_array *a, int axis, int keepdims);
td_array *td_argmin(td_array *a, int axis, int keepdims);
td_array *td_logsumexp(td_array *a, int axis, int keepdims);
td_array *td_variance(td_array *a, int axis, int keepdims); /* population variance (ddof 0); td_var is the engine's var type */
td_status td_sum_out(td_array *a, int axis, int keepdims, td_array *out);
td_status td_mean_out(td_array *a, int axis, int keepdims, td_array *out);
td_status td_max_out(td_array *a, int axis, int keepdims, td_array *out);
td_status td_min_out(td_array *a, int axis, int keepdims, td_array *out);
/* Numerically stable (the maximum is subtracted first). */
td_array *td_softmax(td_array *a, int axis);
td_array *td_log_softmax(td_array *a, int axis);

/* ---- linear algebra (float32 and float64) ----
 * td_matmul as numpy's matmul: 1-D operands are promoted to matrices and the
 * added dimension removed from the result; leading (batch) dimensions
 * broadcast.  Transposed views go to GEMM as transposes, not copies. */
td_array *td_matmul(td_array *a, td_array *b);
td_status td_matmul_out(td_array *a, td_array *b, td_array *out);
td_array *td_dot(td_array *a, td_array *b);     /* 1-D . 1-D: a 0-d array; otherwise td_matmul */
td_array *td_outer(td_array *a, td_array *b);   /* a (flattened) times b (flattened) */

/* ---- shape ---- */
/* Arrays of one dtype and device, equal except along axis. */
td_array *td_concat(td_array *const *arrays, int n, int axis);
/* Arrays of one shape, joined along a new axis. */
td_array *td_stack(td_array *const *arrays, int n, int axis);
/* sections equal views of a along axis (its size must divide); out gets
 * sections new arrays, owned as any new array.  TD_ESHAPE when it does not
 * divide. */
td_status td_split(td_array *a, int sections, int axis, td_array **out);
/* a repeated reps[i] times along each axis (reps has n entries; a is
 * treated as having max(n, ndim) dims, as numpy.tile). */
td_array *td_tile(td_array *a, int n, const int64_t *reps);
td_array *td_flip(td_array *a, int axis);       /* a view; TD_ALL_AXES flips every axis */
/* before[i] and after[i] elements of value around axis i (constant pad). */
td_array *td_pad(td_array *a, const int64_t *before, const int64_t *after, double value);

/* ---- indexing (indices: TD_I32 or TD_I64; negative indices count from
 * the end; out-of-range indices make the op fail when it runs) ---- */
/* Gathers along axis: the result's shape is a's with axis replaced by
 * indices' shape. */
td_array *td_take(td_array *a, td_array *indices, int axis);
/* An array of indices' shape + (depth,): 1 at each index, 0 elsewhere. */
td_array *td_one_hot(td_array *indices, int64_t depth, int dtype);
/* One element per position along axis: indices has a's shape without axis. */
td_array *td_pick(td_array *a, td_array *indices, int axis);
/* In place: dst's slices at indices along axis += src (the gradient of
 * td_take); src has dst's shape with axis replaced by indices' shape. */
td_status td_scatter_add(td_array *dst, td_array *indices, td_array *src, int axis);

/* ---- random numbers: a counter-based generator (Philox 4x32-10) per
 * device.  Each random op takes its values' counters at push time, so
 * results are the same whatever the engine, the worker count or the order
 * ops run in. ---- */
typedef struct {
    uint64_t seed;
    uint64_t counter; /* 128-bit blocks drawn so far */
} td_rng_state;
void td_seed(uint64_t seed); /* the default generator of every device */
td_status td_rng_get_state(td_device dev, td_rng_state *out);
td_status td_rng_set_state(td_device dev, const td_rng_state *state);
td_array *td_random_uniform(int dtype, int ndim, const int64_t *shape, double lo, double hi, td_device dev);
td_array *td_random_normal(int dtype, int ndim, const int64_t *shape, double mean, double std, td_device dev);
/* 1 with probability p, else 0, in dtype. */
td_array *td_random_bernoulli(int dtype, int ndim, const int64_t *shape, double p, td_device dev);
/* A random permutation of 0 .. n-1 (int64). */
td_array *td_random_permutation(int64_t n, td_device dev);

/* ---- fusion ----
 * On the threaded engine, an elementwise op with a large output (256 KiB
 * and up) called from a program's thread waits, queued, for the next op:
 * when that op takes the result as an elementwise operand, the two run as
 * one pass that never writes the intermediate to memory, so
 * td_add(a, td_mul_scalar(b, 2)) moves the bytes of the plain C loop.  The
 * intermediate is still there for whoever reads it later (it is then
 * computed), and results are always those of running the ops one by one.
 * TIDE_FUSE=0 turns it off; TIDE_FUSE_MIN_BYTES changes the size. */
typedef struct {
    int64_t deferred; /* ops that waited for a consumer to fuse with */
    int64_t fused;    /* ops pushed fused with the op that made an input */
    int64_t skipped;  /* waiting ops that, by the time they ran, nobody could
                         read the output of (a released temporary): no work */
} td_fusion_stats;
td_fusion_stats td_fusion_stats_get(void); /* counts since the process started */

#ifdef __cplusplus
}
#endif
#endif
