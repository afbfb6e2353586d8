/* Reading files for the loaders: a source that is an open file or bytes in
 * memory, exact reads at an offset, and elements read into a C-contiguous
 * array with byte swapping and Fortran order undone on the way.  Writing an
 * array's elements to an atomic file (for the savers) is here too.
 *
 * Every size a caller passes has already been checked against the file's
 * size; the checks here only catch a file that changes under us.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ndarray/internal.h"

td_status td__src_open(td__src *s, const char *who, const char *path) {
    *s = (td__src){.who = who, .name = path, .fd = -1};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return td__fail(TD_EIO, "%s: %s: cannot open: %s", who, path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return td__fail(TD_EIO, "%s: %s: cannot stat: %s", who, path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return td__fail(TD_EIO, "%s: %s: not a regular file", who, path);
    }
    s->fd = fd;
    s->size = (uint64_t)sb.st_size;
    return TD_OK;
}

void td__src_mem(td__src *s, const char *who, const char *name, const void *data, size_t size) {
    *s = (td__src){.who = who, .name = name, .fd = -1, .mem = data, .size = size};
}

void td__src_close(td__src *s) {
    if (s->fd >= 0) close(s->fd);
    s->fd = -1;
}

td_status td__src_bad(const td__src *s, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return td__fail(TD_EFORMAT, "%s: %s: %s", s->who, s->name, msg);
}

td_status td__src_read(const td__src *s, uint64_t off, void *dst, size_t n) {
    if (off > s->size || n > s->size - off)
        return td__src_bad(s, "%zu bytes at offset %" PRIu64 " are past the end of the file (%" PRIu64 " bytes)", n,
                           off, s->size);
    if (s->fd < 0) {
        if (n) memcpy(dst, s->mem + off, n);
        return TD_OK;
    }
    char *p = dst;
    while (n > 0) {
        size_t step = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t got = pread(s->fd, p, step, (off_t)off);
        if (got < 0) {
            if (errno == EINTR) continue;
            return td__fail(TD_EIO, "%s: %s: read failed at offset %" PRIu64 ": %s", s->who, s->name, off,
                            strerror(errno));
        }
        if (got == 0) return td__src_bad(s, "the file ended at offset %" PRIu64 " while it was read", off);
        p += got;
        off += (uint64_t)got;
        n -= (size_t)got;
    }
    return TD_OK;
}

void td__swap_bytes(void *p, size_t n, size_t es) {
    unsigned char *b = p;
    for (size_t k = 0; k < n; k++, b += es)
        for (size_t i = 0, j = es - 1; i < j; i++, j--) {
            unsigned char t = b[i];
            b[i] = b[j];
            b[j] = t;
        }
}

enum { BOUNCE = 64 << 10 };

td_status td__src_read_elems(const td__src *s, uint64_t off, void *dst, int dtype, int ndim, const int64_t *shape,
                             int swap, int fortran) {
    size_t es = td_dtype_size(dtype);
    int64_t n = td__shape_numel(ndim, shape);
    if (es == 1) swap = 0;
    /* Fortran order differs from C order only with two or more axes longer
     * than 1. */
    int long_axes = 0;
    for (int d = 0; d < ndim; d++) long_axes += shape[d] > 1;
    if (long_axes < 2) fortran = 0;
    if (!swap && !fortran) return td__src_read(s, off, dst, (size_t)n * es);

    /* Chunks of the file through a bounce buffer: swapped there, then copied
     * to their place.  In Fortran order the file's k-th element has index
     * (i0, i1, ...) with i0 varying fastest; idx follows it. */
    unsigned char *buf = malloc(BOUNCE);
    if (!buf) return td__fail(TD_ENOMEM, "%s: %s: out of memory for a read buffer", s->who, s->name);
    int64_t cstride[TD_MAX_DIMS], idx[TD_MAX_DIMS] = {0};
    td__contiguous_strides(ndim, shape, cstride);
    size_t per = BOUNCE / es;
    char *out = dst;
    td_status st = TD_OK;
    for (int64_t done = 0; done < n && st == TD_OK;) {
        size_t k = (size_t)(n - done) < per ? (size_t)(n - done) : per;
        st = td__src_read(s, off + (uint64_t)done * es, buf, k * es);
        if (st != TD_OK) break;
        if (swap) td__swap_bytes(buf, k, es);
        if (!fortran) {
            memcpy(out + done * (int64_t)es, buf, k * es);
        } else {
            for (size_t e = 0; e < k; e++) {
                int64_t o = 0;
                for (int d = 0; d < ndim; d++) o += idx[d] * cstride[d];
                memcpy(out + o * (int64_t)es, buf + e * es, es);
                for (int d = 0; d < ndim; d++) {
                    if (++idx[d] < shape[d]) break;
                    idx[d] = 0;
                }
            }
        }
        done += (int64_t)k;
    }
    free(buf);
    return st;
}

/* Arrays are copied to the host whole (one read op in program order, so the
 * file holds one consistent version of each array), then written. */
td_status td__afile_write_array(td__afile *f, td_array *a, int le) {
    int64_t n = td_numel(a);
    size_t es = td_dtype_size(td_dtype(a));
    size_t bytes = (size_t)n * es;
    void *host = malloc(bytes ? bytes : 1);
    if (!host) return td__fail(TD_ENOMEM, "%s: %s: out of memory for a host copy of %zu bytes", f->who, f->path, bytes);
    td_status st = td_to_host(a, host, bytes);
    if (st == TD_OK) {
        if (le != td__host_le()) td__swap_bytes(host, (size_t)n, es);
        st = td__afile_write(f, host, bytes);
    }
    free(host);
    return st;
}
