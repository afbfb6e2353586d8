/* tide: arrays.
 *
 * A td_array is a refcounted handle on a strided view of a storage buffer:
 * dtype, shape and strides (up to TD_MAX_DIMS dims), device, and a reference
 * to the storage (which owns one engine var) plus an offset.  Views share the
 * storage and therefore the var, so every access through any view is ordered
 * in program order with every other access to the same buffer.
 *
 * Ownership: a function that returns a new td_array * gives the caller one
 * reference, or, while a scope is open on this thread, gives it to the
 * innermost scope.  td_keep takes it out of the scope (the caller then owns
 * it and must td_release it); outside a scope td_keep does nothing;
 * td_keep(NULL) is NULL.  td_release of an array a scope still holds takes it
 * out of the scope.  Arrays made on a worker thread (inside an op) belong to
 * no scope, and arrays tide makes for itself never join a user scope.  A
 * function that takes a td_array * and returns one returns NULL when given
 * NULL and leaves td_last_status() and td_last_error() as they were, so one
 * check at the end of an expression finds the first failure.
 */
#ifndef TIDE_ARRAY_H
#define TIDE_ARRAY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <tide/device.h>
#include <tide/status.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { TD_F32 = 0, TD_F64, TD_I32, TD_I64, TD_U8 };
enum { TD_DTYPE_COUNT = 5 };
enum { TD_MAX_DIMS = 8 };
enum { TD_ALL_AXES = 1 << 30 }; /* axis argument meaning "every axis" */
typedef struct td_array td_array;

/* Bytes of one element (0 for an unknown dtype), and its name ("float32"). */
size_t td_dtype_size(int dtype);
const char *td_dtype_name(int dtype);
/* The dtype numpy's promotion gives for a op b (-1 for unknown dtypes). */
int td_promote_types(int a, int b);

/* ---- creation ---- */
td_array *td_empty(int dtype, int ndim, const int64_t *shape, td_device dev);
td_array *td_zeros(int dtype, int ndim, const int64_t *shape, td_device dev);
td_array *td_ones(int dtype, int ndim, const int64_t *shape, td_device dev);
td_array *td_full(int dtype, int ndim, const int64_t *shape, double value, td_device dev);
/* Copies data (numel * dtype size bytes, C order) before it returns. */
td_array *td_from_host(const void *data, int dtype, int ndim, const int64_t *shape, td_device dev);

/* ---- host I/O ---- */
/* A read ordered after every write pushed before it; copies the whole array
 * (C order) into dst.  TD_EINVAL when nbytes is not the array's size.  Waits;
 * returns the array's error, if any.  TD_EBUSY inside an op. */
td_status td_to_host(td_array *a, void *dst, size_t nbytes);
/* The same for the elements [start, start + count) of the array in C order
 * (count * dtype size must equal nbytes). */
td_status td_to_host_range(td_array *a, int64_t start, int64_t count, void *dst, size_t nbytes);
/* Until a can be read; returns a's error, if any.  TD_EBUSY inside an op. */
td_status td_array_wait(td_array *a);
/* Prints a as numpy prints it (large arrays elided with ...), followed by a
 * newline.  Waits for a.  TD_EINVAL for NULL arguments. */
td_status td_print(td_array *a, FILE *out);

/* ---- references and scopes ---- */
td_array *td_retain(td_array *a);
/* NULL: nothing; never blocks; storage returns to its pool when the last
 * pending op that touches it has finished. */
void td_release(td_array *a);
void td_scope_begin(void);
void td_scope_end(void);
td_array *td_keep(td_array *a);

/* ---- accessors (never start the runtime; NULL gives 0 / NULL) ---- */
int td_ndim(const td_array *a);
const int64_t *td_shape(const td_array *a);
int td_dtype(const td_array *a);
int64_t td_numel(const td_array *a);
td_device td_array_device(const td_array *a);
const int64_t *td_strides(const td_array *a); /* in elements */
/* First element; valid inside an op that declared the array's var, or after
 * a wait on it. */
void *td_data(const td_array *a);
/* Nonzero when the elements are laid out in C order with no gaps. */
int td_is_contiguous(const td_array *a);

/* ---- views (share the storage; NULL on bad arguments) ---- */
/* Elements start, start+step, ... below stop (above, for a negative step)
 * along axis; negative start/stop count from the end, as in Python.  step
 * must not be 0. */
td_array *td_slice(td_array *a, int axis, int64_t start, int64_t stop, int64_t step);
/* perm: a permutation of the axes; NULL reverses them. */
td_array *td_transpose(td_array *a, const int *perm);
td_array *td_expand_dims(td_array *a, int axis);
/* Removes axis (which must have size 1), or every size-1 axis with TD_ALL_AXES. */
td_array *td_squeeze(td_array *a, int axis);
td_array *td_broadcast_to(td_array *a, int ndim, const int64_t *shape);
/* A view when the layout allows, as numpy; otherwise a copy.  One entry of
 * shape may be -1 (inferred). */
td_array *td_reshape(td_array *a, int ndim, const int64_t *shape);
/* A C-contiguous array with a's elements: a itself (retained) if it already
 * is one, else a copy. */
td_array *td_contiguous(td_array *a);

/* ---- memory ---- */
typedef struct {
    int64_t live_arrays;       /* td_array handles not yet released, all threads */
    int64_t live_storages;     /* storage buffers still referenced (by arrays or pending ops) */
    int64_t storage_bytes;     /* bytes of those buffers */
} td_array_stats;
td_array_stats td_array_stats_get(void);

typedef struct {
    int64_t bytes_in_use;      /* handed out to storages */
    int64_t bytes_cached;      /* free in the pool, kept for reuse */
    int64_t system_allocs;     /* allocations from the system so far */
    int64_t system_frees;      /* blocks given back to the system so far */
    int64_t peak_bytes;        /* highest bytes_in_use + bytes_cached */
} td_pool_stats;
/* Statistics of the pool of a device; TD_EDEVICE for an absent device. */
td_status td_pool_stats_get(td_device dev, td_pool_stats *out);
/* Gives every cached block of the device's pool back to the system. */
td_status td_pool_trim(td_device dev);

#ifdef __cplusplus
}
#endif
#endif
