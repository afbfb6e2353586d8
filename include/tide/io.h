/* tide: files.  Arrays in numpy's .npy format, and checkpoints of many named
 * arrays plus a small map of strings in the safetensors format.
 *
 * Saving waits for the arrays (a read in program order, like td_to_host: every
 * write pushed before the call is in the file) and returns once the file is
 * whole and on disk.  It is atomic: the data goes to a temporary file in the
 * same folder (".<name>.tmp.<pid>.<random>"), which is fsynced, renamed over
 * the target, and the folder fsynced; a crash at any moment leaves either the
 * old file or the new one, whole.  A failed save removes its temporary file
 * and leaves the old file as it was.  A crash may leave a temporary file
 * behind; loaders never look at them.  Like every blocking call, a saver
 * called from inside a running op returns TD_EBUSY.
 *
 * Loading checks everything the header says against the file's size before
 * it allocates anything, then reads straight into a fresh array from the
 * device's pool.  A truncated, corrupt or hostile file gives TD_EFORMAT (NULL
 * for calls that return an array) with a message naming the file and the
 * fault; it never crashes the process, and never allocates more than the file
 * can hold.  A file that cannot be opened or read gives TD_EIO with the
 * system's reason.
 *
 * Statuses: TD_EINVAL for NULL or bad arguments, TD_EIO, TD_EFORMAT,
 * TD_EDEVICE for an absent device, TD_ENOMEM, TD_EBUSY (savers inside an op),
 * or the error of an array that a save waited for.  td_last_error() has the
 * detail.
 */
#ifndef TIDE_IO_H
#define TIDE_IO_H

#include <stddef.h>
#include <tide/array.h>
#include <tide/device.h>
#include <tide/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- .npy (numpy's format, versions 1.0 to 3.0) ----
 *
 * td_npy_save writes a in C order, little-endian on little-endian hosts;
 * views of any layout are saved as their elements in C order.
 *
 * td_npy_load reads dtypes '<f4' '<f8' '<i4' '<i8' '|u1' (float32, float64,
 * int32, int64, uint8) in either byte order, C or Fortran order, and returns
 * a C-contiguous array on dev, owned like any new array (by the caller, or by
 * the innermost open scope).  Other dtypes are TD_EFORMAT ("dtype '<f2' is not
 * supported"). */
td_status td_npy_save(const char *path, td_array *a);
td_array *td_npy_load(const char *path, td_device dev);

/* ---- checkpoints (safetensors) ----
 *
 * A checkpoint is a file of named arrays (dtypes F32, F64, I32, I64, U8; other
 * safetensors dtypes are TD_EFORMAT on load) and a map of string keys to
 * string values (safetensors' "__metadata__"), where a training loop keeps
 * its step, its random state and its position in the data.  Files written by
 * the safetensors library load here and ours load there.
 *
 *     td_ckpt_entry arrays[] = {{"w", w}, {"b", b}};
 *     td_ckpt_meta meta[] = {{"step", "1200"}, {"rng", state_text}};
 *     td_status st = td_ckpt_save("model.safetensors", 2, arrays, 2, meta);
 *
 *     td_ckpt *ck = NULL;
 *     if (td_ckpt_load("model.safetensors", td_cpu(0), &ck) == TD_OK) {
 *         td_array *w2 = td_ckpt_get(ck, "w");        (a new reference)
 *         const char *step = td_ckpt_meta(ck, "step"); (borrowed from ck)
 *         ...
 *         td_ckpt_free(ck);
 *     }
 */
typedef struct {
    const char *name;  /* unique, not NULL, not "__metadata__" */
    td_array *array;   /* any layout; waited for */
} td_ckpt_entry;

typedef struct {
    const char *key;   /* unique, not NULL */
    const char *value; /* not NULL */
} td_ckpt_meta_entry;

/* Saves n arrays and n_meta strings (entries or meta may be NULL when their
 * count is 0).  TD_EINVAL for NULL names or arrays and duplicate names or
 * keys. */
td_status td_ckpt_save(const char *path, size_t n, const td_ckpt_entry *entries, size_t n_meta,
                       const td_ckpt_meta_entry *meta);

/* A loaded checkpoint: its arrays (already read into dev's pool) and its
 * strings.  Opaque; read it from one thread at a time, or from many once
 * loaded (nothing in it changes until td_ckpt_free). */
typedef struct td_ckpt td_ckpt;

/* Reads the whole file onto dev.  On success *out is a new checkpoint that
 * the caller frees with td_ckpt_free; on failure *out is NULL. */
td_status td_ckpt_load(const char *path, td_device dev, td_ckpt **out);
/* Frees ck (NULL: nothing).  Arrays taken with td_ckpt_get live on. */
void td_ckpt_free(td_ckpt *ck);

/* The number of arrays, and the name of array i (0 <= i < count) in the order
 * of the file's header; NULL for i out of range.  Names are borrowed from
 * ck. */
size_t td_ckpt_count(const td_ckpt *ck);
const char *td_ckpt_name(const td_ckpt *ck, size_t i);
/* A new reference to the array called name (owned like any new array:
 * release it, or let the scope do it); NULL with TD_EINVAL when there is
 * none. */
td_array *td_ckpt_get(const td_ckpt *ck, const char *name);

/* The number of metadata strings, the key of entry i (file order; NULL out of
 * range), and the value stored under key (NULL when absent, which is not a
 * failure).  Borrowed from ck. */
size_t td_ckpt_meta_count(const td_ckpt *ck);
const char *td_ckpt_meta_key(const td_ckpt *ck, size_t i);
const char *td_ckpt_meta(const td_ckpt *ck, const char *key);

#ifdef __cplusplus
}
#endif
#endif
