/* Views: new handles on the same storage with another shape, strides or
 * offset.  They share the storage's var, so every access through any view is
 * ordered with every other access to the buffer. */
#include <inttypes.h>
#include <string.h>

#include "ndarray/internal.h"

static int norm_axis(const char *who, int axis, int ndim) {
    if (axis < -ndim || axis >= ndim) {
        td__fail(TD_EINVAL, "%s: axis %d is out of range for %d dimension(s)", who, axis, ndim);
        return -1;
    }
    return axis < 0 ? axis + ndim : axis;
}

/* A new view of a, given to the caller; recorded for autograd (kind, args:
 * how it was made) when a takes part in a graph. */
static td_array *view_of(td_array *a, int ndim, const int64_t *shape, const int64_t *strides, int64_t offset, int kind,
                         const int64_t *args, int nargs) {
    td_array *v = td__array_wrap(a->st, a->dtype, ndim, shape, strides, offset);
    if (v && td__array_in_graph(a)) v = td__array_view_hook(a, v, kind, args, nargs);
    return td__array_give(v);
}

td_array *td_slice(td_array *a, int axis, int64_t start, int64_t stop, int64_t step) {
    if (!a) return NULL;
    const int64_t args[4] = {axis, start, stop, step};
    int ax = norm_axis("td_slice", axis, a->ndim);
    if (ax < 0) return NULL;
    if (step == 0) {
        td__fail(TD_EINVAL, "td_slice: step must not be 0");
        return NULL;
    }
    int64_t n = a->shape[ax];
    /* Python's slice.indices(): clamp, with negatives counting from the end. */
    if (step > 0) {
        if (start < 0) start += n;
        if (stop < 0) stop += n;
        if (start < 0) start = 0;
        if (start > n) start = n;
        if (stop < 0) stop = 0;
        if (stop > n) stop = n;
    } else {
        if (start < 0) start += n;
        if (stop < 0) stop += n;
        if (start < -1) start = -1;
        if (start > n - 1) start = n - 1;
        if (stop < -1) stop = -1;
        if (stop > n - 1) stop = n - 1;
    }
    int64_t len = 0;
    if (step > 0 && stop > start) len = (stop - start + step - 1) / step;
    if (step < 0 && stop < start) len = (start - stop + (-step) - 1) / (-step);
    int64_t shape[TD_MAX_DIMS], strides[TD_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    memcpy(strides, a->strides, sizeof strides);
    int64_t offset = a->offset + (len > 0 ? start * a->strides[ax] : 0);
    shape[ax] = len;
    strides[ax] = a->strides[ax] * step;
    return view_of(a, a->ndim, shape, strides, offset, TD__VIEW_SLICE, args, 4);
}

td_array *td_transpose(td_array *a, const int *perm) {
    if (!a) return NULL;
    int p[TD_MAX_DIMS], seen[TD_MAX_DIMS] = {0};
    for (int i = 0; i < a->ndim; i++) {
        p[i] = perm ? perm[i] : a->ndim - 1 - i;
        if (p[i] < 0) p[i] += a->ndim;
        if (p[i] < 0 || p[i] >= a->ndim || seen[p[i]]++) {
            td__fail(TD_EINVAL, "td_transpose: perm is not a permutation of the %d axes", a->ndim);
            return NULL;
        }
    }
    int64_t shape[TD_MAX_DIMS], strides[TD_MAX_DIMS], args[TD_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++) {
        shape[i] = a->shape[p[i]];
        strides[i] = a->strides[p[i]];
        args[i] = p[i];
    }
    return view_of(a, a->ndim, shape, strides, a->offset, TD__VIEW_TRANSPOSE, args, a->ndim);
}

td_array *td_expand_dims(td_array *a, int axis) {
    if (!a) return NULL;
    if (a->ndim == TD_MAX_DIMS) {
        td__fail(TD_EINVAL, "td_expand_dims: the array already has %d dimensions", TD_MAX_DIMS);
        return NULL;
    }
    int ax = norm_axis("td_expand_dims", axis, a->ndim + 1);
    if (ax < 0) return NULL;
    int64_t shape[TD_MAX_DIMS], strides[TD_MAX_DIMS];
    for (int i = 0, j = 0; i <= a->ndim; i++) {
        if (i == ax) {
            shape[i] = 1;
            strides[i] = (j < a->ndim) ? a->strides[j] * a->shape[j] : 1;
        } else {
            shape[i] = a->shape[j];
            strides[i] = a->strides[j];
            j++;
        }
    }
    return view_of(a, a->ndim + 1, shape, strides, a->offset, TD__VIEW_RESHAPE, NULL, 0);
}

td_array *td_squeeze(td_array *a, int axis) {
    if (!a) return NULL;
    int ax = -1;
    if (axis != TD_ALL_AXES) {
        ax = norm_axis("td_squeeze", axis, a->ndim);
        if (ax < 0) return NULL;
        if (a->shape[ax] != 1) {
            td__fail(TD_ESHAPE, "td_squeeze: axis %d has size %" PRId64 ", not 1", axis, a->shape[ax]);
            return NULL;
        }
    }
    int64_t shape[TD_MAX_DIMS], strides[TD_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < a->ndim; i++) {
        if ((ax < 0 && a->shape[i] == 1) || i == ax) continue;
        shape[n] = a->shape[i];
        strides[n] = a->strides[i];
        n++;
    }
    return view_of(a, n, shape, strides, a->offset, TD__VIEW_RESHAPE, NULL, 0);
}

td_array *td_broadcast_to(td_array *a, int ndim, const int64_t *shape) {
    if (!a) return NULL;
    if (td__check_shape("td_broadcast_to", ndim, shape) != TD_OK) return NULL;
    char s1[128], s2[128];
    if (ndim < a->ndim) goto bad;
    int64_t strides[TD_MAX_DIMS];
    for (int i = ndim - 1, j = a->ndim - 1; i >= 0; i--, j--) {
        if (j < 0) {
            strides[i] = 0;
        } else if (a->shape[j] == shape[i]) {
            strides[i] = a->strides[j];
        } else if (a->shape[j] == 1) {
            strides[i] = 0;
        } else {
            goto bad;
        }
    }
    return view_of(a, ndim, shape, strides, a->offset, TD__VIEW_BROADCAST, NULL, 0);
bad:
    td__fail(TD_ESHAPE, "td_broadcast_to: cannot broadcast shape %s to %s",
             td__shape_str(a->ndim, a->shape, s1, sizeof s1), td__shape_str(ndim, shape, s2, sizeof s2));
    return NULL;
}

/* Strides for viewing a with newshape without copying, as numpy's
 * _attempt_nocopy_reshape: walk both shapes in groups of equal size; each
 * group of a's axes must be contiguous with itself.  0 when impossible. */
int td__reshape_strides(const td_array *a, int ndim, const int64_t *shape, int64_t *out) {
    if (td__shape_numel(a->ndim, a->shape) <= 1) { /* any strides address it */
        td__contiguous_strides(ndim, shape, out);
        return 1;
    }
    int64_t oshape[TD_MAX_DIMS], ostr[TD_MAX_DIMS];
    int on = 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != 1) {
            oshape[on] = a->shape[i];
            ostr[on] = a->strides[i];
            on++;
        }
    int oi = 0, oj = 1, ni = 0, nj = 1;
    while (ni < ndim && oi < on) {
        int64_t np = shape[ni], op = oshape[oi];
        while (np != op) {
            if (np < op) np *= shape[nj++];
            else op *= oshape[oj++];
        }
        for (int ok = oi; ok < oj - 1; ok++)
            if (ostr[ok] != oshape[ok + 1] * ostr[ok + 1]) return 0;
        out[nj - 1] = ostr[oj - 1];
        for (int nk = nj - 1; nk > ni; nk--) out[nk - 1] = out[nk] * shape[nk];
        ni = nj++;
        oi = oj++;
    }
    int64_t last = ni > 0 ? out[ni - 1] : 1;
    for (int nk = ni; nk < ndim; nk++) out[nk] = last; /* trailing size-1 axes */
    return 1;
}

/* Resolves a -1 in shape against numel; TD_OK and the full shape in out. */
td_status td__reshape_shape(const char *who, const td_array *a, int ndim, const int64_t *shape, int64_t *out) {
    if (ndim < 0 || ndim > TD_MAX_DIMS || (ndim > 0 && !shape))
        return td__fail(TD_EINVAL, "%s: ndim must be 0 to %d with a shape", who, TD_MAX_DIMS);
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] == -1) {
            if (infer >= 0) return td__fail(TD_EINVAL, "%s: only one dimension can be -1", who);
            infer = i;
        } else if (shape[i] < 0) {
            return td__fail(TD_EINVAL, "%s: dimension %d has negative size", who, i);
        } else {
            known *= shape[i];
        }
        out[i] = shape[i];
    }
    int64_t n = td__shape_numel(a->ndim, a->shape);
    char s1[128], s2[128];
    if (infer >= 0) {
        if (known == 0 || n % known != 0)
            return td__fail(TD_ESHAPE, "%s: cannot reshape an array of shape %s into %s", who,
                            td__shape_str(a->ndim, a->shape, s1, sizeof s1), td__shape_str(ndim, shape, s2, sizeof s2));
        out[infer] = n / known;
    } else if (known != n) {
        return td__fail(TD_ESHAPE, "%s: cannot reshape an array of shape %s (%" PRId64 " elements) into %s", who,
                        td__shape_str(a->ndim, a->shape, s1, sizeof s1), n, td__shape_str(ndim, shape, s2, sizeof s2));
    }
    return TD_OK;
}
