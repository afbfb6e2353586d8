/* tide ndarray: storage, pools and array handles (private to tide).
 *
 * A storage is one buffer from a device pool plus the engine var that orders
 * every access to it.  Arrays (handles) hold references to a storage; when
 * the last one goes, the var is freed, which the engine defers until every
 * pending access is done; the var's destructor then gives the buffer back to
 * the pool.  So pending ops keep the buffer alive with no extra op, and a
 * released array's memory is reused as soon as nothing touches it.
 */
#ifndef TIDE_NDARRAY_INTERNAL_H
#define TIDE_NDARRAY_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>
#include <tide/array.h>
#include <tide/engine.h>

#include "core/internal.h"
#include "devices/internal.h"

typedef struct td__storage {
    atomic_int refs;      /* arrays (views) referencing it */
    td_var *var;          /* orders every access; owns this storage */
    void *data;           /* 64-byte aligned on CPUs */
    size_t bytes;         /* requested size */
    size_t cap;           /* the pool class size actually held */
    td__device *dev;
    atomic_ullong version; /* bumped by writes, for autograd's saved inputs */
    struct td__storage *pool_next; /* on its pool's free list */
    atomic_int gstate;             /* back-pressure: 0, 1 counted as garbage, 2 back in the pool */
} td__storage;

/* An array's references in one word, so that an op's hold and drop are one
 * atomic step each: the low 32 bits count every reference, the high 32 bits
 * how many of them pending ops hold (td__array_hold). */
#define TD__REF_ONE 1ull
#define TD__REF_OP ((1ull << 32) | 1ull)
static inline uint32_t td__rc_refs(uint64_t rc) { return (uint32_t)rc; }
static inline uint32_t td__rc_ops(uint64_t rc) { return (uint32_t)(rc >> 32); }

/* What the ops layer keeps with the output of a deferred op (ops/invoke.c,
 * "Fusion"): the engine's ticket, and how to let go of it all. */
typedef struct td__lazy {
    struct td__park *park;
    void (*release)(struct td__lazy *l);
} td__lazy;

struct td_array {
    _Atomic uint64_t rc; /* see TD__REF_OP */
    td__lazy *lazy;      /* the output of a deferred op, or NULL */
    int dtype;
    int ndim;
    int64_t shape[TD_MAX_DIMS];
    int64_t strides[TD_MAX_DIMS]; /* in elements */
    int64_t offset;               /* in elements, from st->data */
    td_device dev;
    td__storage *st;
    /* scope membership: touched only by the thread that owns the scope */
    void *scope;
    int scope_idx;
    /* Autograd (set by ops/tape.c, NULL otherwise).  node: the recorded op
     * that made this handle (a reference; output out_idx of it), so the
     * graph lives as long as the arrays made from it.  grad: the gradient
     * buffer of a leaf (td_attach_grad; owned by this handle) and its
     * td_grad_req.  Freed with the handle through td__array_ag_free. */
    struct td__node *node;
    struct td_array *grad;
    int out_idx;
    int grad_req;
};

/* td_dtype_size, inline inside tide (the invoke path asks it a dozen times
 * per op); the public function stays for programs. */
static inline size_t td__dtype_size(int dtype) {
    return (unsigned)dtype < (unsigned)TD_DTYPE_COUNT ? (size_t)(0x18484u >> (4 * dtype) & 0xf) : 0;
}
#define td_dtype_size(dt) td__dtype_size(dt)
/* ---- autograd hooks (filled in by ops/tape.c before any array gets a node
 * or a gradient; ndarray/ never looks inside a node) ---- */
/* Called when a handle with a node or a gradient buffer is freed. */
extern void (*td__array_ag_free)(td_array *a);
/* The kinds of views, as the view functions report them. */
enum { TD__VIEW_SLICE, TD__VIEW_TRANSPOSE, TD__VIEW_RESHAPE, TD__VIEW_BROADCAST, TD__VIEW_FLIP };
/* Called by every view function whose base takes part in autograd (has a
 * node or a gradient buffer) with the new view and the arguments it was made
 * with (slice: axis, start, stop, step; transpose: the permutation; flip:
 * the axis); records the view when recording is on.  Returns view, or NULL
 * (view released, message set) when recording failed. */
extern td_array *(*td__array_view_hook)(td_array *base, td_array *view, int kind, const int64_t *args, int nargs);
static inline int td__array_in_graph(const td_array *a) { return a->node != NULL || a->grad != NULL; }

/* ---- pools (pool.c) ---- */
/* A storage of at least bytes (64-byte aligned) with one reference, from the
 * device's pool, its var ready.  NULL with TD_ENOMEM (message set) after the
 * pool was trimmed and the system asked once more.  It goes back to the pool
 * by itself when the last reference and the last pending op let go. */
td__storage *td__pool_get(td__device *dev, size_t bytes);
/* Storages handed out and not yet back, and their bytes. */
void td__pool_live(int64_t *storages, int64_t *bytes);
/* Live array handles (array.c counts them; per thread, in pool.c). */
void td__live_arrays_add(long long d);
long long td__live_arrays(void);
/* Test hook: the system allocator fails once n more allocations have been
 * made (n < 0: never). */
void td__pool_fail_after(long n);

/* ---- storage and arrays (array.c) ---- */
/* A new storage of bytes on dev, with one reference.  Starts the runtime. */
td__storage *td__storage_new(td__device *dev, size_t bytes);
void td__storage_release(td__storage *st);

/* A new handle on st (retained) with the given layout; not in any scope.
 * NULL with TD_ENOMEM. */
td_array *td__array_wrap(td__storage *st, int dtype, int ndim, const int64_t *shape, const int64_t *strides,
                         int64_t offset);
/* A new C-contiguous array (uninitialised) on dev; not in any scope. */
td_array *td__array_new(int dtype, int ndim, const int64_t *shape, td_device dev, const char *who);
/* A reference held by a pending op (its inputs and output), and its end.
 * Telling these apart from the program's own references lets back-pressure
 * count a storage that only pending ops still keep (a released temporary
 * whose consumers have not run) as in flight until it is freed. */
td_array *td__array_hold(td_array *a);
void td__array_drop(td_array *a);
/* Counts one of a's existing references as an op's (a fresh output, or a
 * private copy, handed to the op that will write it). */
static inline void td__array_give_to_op(td_array *a) {
    atomic_fetch_add_explicit(&a->rc, 1ull << 32, memory_order_relaxed);
}
/* A fresh array that an op is about to write counts as in flight (see
 * array.c, "back-pressure"); td__array_op_done, called by an ending op for
 * each array it holds, ends that when it is the last op holding the array
 * and the program holds it. */
void td__array_count_output(td_array *a);
void td__array_op_done(td_array *a);
/* Drops a reference tide holds for itself (an op's input, a temporary).
 * Unlike td_release it never touches scopes: a user's array that a scope
 * holds stays there while tide's own references come and go. */
void td__array_unref(td_array *a);
/* Gives a fresh array to the caller: into the innermost scope of this thread
 * when one is open (and not inside an op), else as the caller's reference.
 * Returns a, or NULL (a released, TD_ENOMEM) if the scope could not grow. */
td_array *td__array_give(td_array *a);

/* Checks a shape: ndim in [0, TD_MAX_DIMS], no negative size, total size
 * representable; sets a message naming who. */
td_status td__check_shape(const char *who, int ndim, const int64_t *shape);
td_status td__check_dtype(const char *who, int dtype);
int64_t td__shape_numel(int ndim, const int64_t *shape);
void td__contiguous_strides(int ndim, const int64_t *shape, int64_t *strides);
/* "(2, 3)" into buf. */
const char *td__shape_str(int ndim, const int64_t *shape, char *buf, size_t size);
/* Whether a covers every byte of its storage (so a write through it may be
 * TD_OP_OVERWRITE). */
int td__array_covers_storage(const td_array *a);
/* Byte address of a's first element. */
static inline char *td__array_ptr(const td_array *a) {
    return (char *)a->st->data + a->offset * (int64_t)td_dtype_size(a->dtype);
}

/* ---- views (view.c) ---- */
/* Strides viewing a as shape without a copy; 0 when the layout does not allow it. */
int td__reshape_strides(const td_array *a, int ndim, const int64_t *shape, int64_t *out);
/* shape with a -1 resolved against a's size; TD_ESHAPE when they differ. */
td_status td__reshape_shape(const char *who, const td_array *a, int ndim, const int64_t *shape, int64_t *out);

/* ---- files (fileio.c, atomic_file.c, npy.c, safetensors.c) ----
 * Loaders read through a td__src: an open file or, for the fuzz harnesses
 * and tests, bytes in memory, so both take exactly the same path. */
typedef struct {
    const char *who;          /* the public function, for messages */
    const char *name;         /* the path, for messages */
    int fd;                   /* -1: read from mem */
    const unsigned char *mem;
    uint64_t size;            /* bytes in the file */
} td__src;

/* Opens path for reading (TD_EIO with the system's reason, or for anything
 * but a regular file). */
td_status td__src_open(td__src *s, const char *who, const char *path);
void td__src_mem(td__src *s, const char *who, const char *name, const void *data, size_t size);
void td__src_close(td__src *s);
/* TD_EFORMAT with "<who>: <name>: <message>". */
td_status td__src_bad(const td__src *s, const char *fmt, ...) TD__PRINTF(2, 3);
/* Exactly n bytes at off (the caller has checked off + n <= size; a file that
 * shrank meanwhile is TD_EFORMAT, a read error TD_EIO). */
td_status td__src_read(const td__src *s, uint64_t off, void *dst, size_t n);
/* Reads the numel(shape) elements of dtype stored at off into the
 * C-contiguous dst: byte-swapped when swap, and from Fortran order when
 * fortran.  Goes through a small bounce buffer only when it has to. */
td_status td__src_read_elems(const td__src *s, uint64_t off, void *dst, int dtype, int ndim, const int64_t *shape,
                             int swap, int fortran);
/* Whether this host stores numbers little-endian. */
static inline int td__host_le(void) {
    const union {
        uint16_t u;
        unsigned char c[2];
    } probe = {.u = 1};
    return probe.c[0] == 1;
}
/* Reverses the bytes of each of n elements of es bytes, in place. */
void td__swap_bytes(void *p, size_t n, size_t es);

/* An atomic file write: td__afile_open creates a temporary file beside path,
 * td__afile_write appends, td__afile_commit fsyncs it, renames it over path
 * and fsyncs the folder; td__afile_abort (after any failure, or instead of
 * committing) closes and removes the temporary file.  Every failure is
 * TD_EIO naming the file and the system's reason; after a failed write or
 * commit the caller still calls td__afile_abort. */
typedef struct {
    int fd;
    const char *who;
    const char *path;
    char *tmp; /* malloc'd; NULL once renamed or removed */
} td__afile;
td_status td__afile_open(td__afile *f, const char *who, const char *path);
td_status td__afile_write(td__afile *f, const void *p, size_t n);
td_status td__afile_commit(td__afile *f);
void td__afile_abort(td__afile *f);
/* Writes a's elements in C order, little-endian when le (else the host's
 * order), after a read in program order (td_to_host); returns a's error if
 * it has one. */
td_status td__afile_write_array(td__afile *f, td_array *a, int le);
/* Test hook: the process raises SIGKILL on itself at the step-th step of the
 * next saves (open, each write of at most chunk bytes, fsync, rename, folder
 * fsync, counted across saves); step <= 0 turns it off.  chunk 0 keeps the
 * default (1 MiB). */
void td__io_crash_at(long step, size_t chunk);

/* Loaders from memory, for the fuzz harnesses and the corpus test: the same
 * code as td_npy_load and td_ckpt_load, with name standing for the path. */
td_array *td__npy_load_mem(const void *data, size_t size, const char *name, td_device dev);
struct td_ckpt;
td_status td__ckpt_load_mem(const void *data, size_t size, const char *name, td_device dev, struct td_ckpt **out);

#endif
