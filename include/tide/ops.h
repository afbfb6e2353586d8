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

#ifdef __cplusplus
}
#endif
#endif
