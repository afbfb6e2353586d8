/* Atomic file replacement: write a temporary file in the target's folder,
 * fsync it, rename it over the target, fsync the folder.
 *
 * rename() within one file system replaces the target in one step, so a
 * reader (or a crash) sees the old file or the new one, never a mix; the
 * fsync before it makes sure the new name never points at data still in the
 * page cache, and the one after it makes the rename itself durable.  The
 * temporary file is in the same folder because rename() does not cross file
 * systems.  Its name starts with a dot and carries the pid and a random
 * part, so concurrent saves of the same target never share one.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "ndarray/internal.h"

enum { DEFAULT_CHUNK = 1 << 20 };

/* The crash hook (tests only): countdown of steps, and the write size. */
static atomic_long crash_step;
static atomic_size_t write_chunk = DEFAULT_CHUNK;

void td__io_crash_at(long step, size_t chunk) {
    atomic_store(&crash_step, step > 0 ? step : 0);
    atomic_store(&write_chunk, chunk ? chunk : (size_t)DEFAULT_CHUNK);
}

static void crash_point(void) {
    long s = atomic_load(&crash_step);
    while (s > 0) {
        if (atomic_compare_exchange_weak(&crash_step, &s, s - 1)) {
            if (s == 1) raise(SIGKILL);
            return;
        }
    }
}

/* The folder of path ("." when it has none). */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

td_status td__afile_open(td__afile *f, const char *who, const char *path) {
    *f = (td__afile){.fd = -1, .who = who, .path = path};
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (!*base) return td__fail(TD_EINVAL, "%s: %s: the path names a folder, not a file", who, path);
    size_t dirlen = (size_t)(base - path);
    size_t cap = strlen(path) + 64;
    f->tmp = malloc(cap);
    if (!f->tmp) return td__fail(TD_ENOMEM, "%s: %s: out of memory", who, path);
    for (int attempt = 0;; attempt++) {
        uint64_t r = 0;
        if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
            r = td__now_ns() * 0x9E3779B97F4A7C15ull + (uint64_t)attempt;
        snprintf(f->tmp, cap, "%.*s.%s.tmp.%ld.%016llx", (int)dirlen, path, base, (long)getpid(),
                 (unsigned long long)r);
        f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (f->fd >= 0) break;
        if (errno != EEXIST || attempt == 8) {
            int e = errno;
            free(f->tmp);
            f->tmp = NULL;
            return td__fail(TD_EIO, "%s: %s: cannot create a temporary file in its folder: %s", who, path,
                            strerror(e));
        }
    }
    crash_point();
    return TD_OK;
}

td_status td__afile_write(td__afile *f, const void *p, size_t n) {
    const char *c = p;
    size_t chunk = atomic_load(&write_chunk);
    while (n > 0) {
        size_t step = n < chunk ? n : chunk;
        ssize_t w = write(f->fd, c, step);
        if (w < 0) {
            if (errno == EINTR) continue;
            return td__fail(TD_EIO, "%s: %s: write failed: %s", f->who, f->path, strerror(errno));
        }
        c += w;
        n -= (size_t)w;
        crash_point();
    }
    return TD_OK;
}

td_status td__afile_commit(td__afile *f) {
    if (fsync(f->fd) != 0)
        return td__fail(TD_EIO, "%s: %s: fsync failed: %s", f->who, f->path, strerror(errno));
    crash_point();
    int rc = close(f->fd);
    f->fd = -1;
    if (rc != 0) return td__fail(TD_EIO, "%s: %s: close failed: %s", f->who, f->path, strerror(errno));
    if (rename(f->tmp, f->path) != 0)
        return td__fail(TD_EIO, "%s: %s: cannot rename the temporary file over it: %s", f->who, f->path,
                        strerror(errno));
    free(f->tmp);
    f->tmp = NULL;
    crash_point();
    /* The new name is in place; make it durable.  File systems that cannot
     * fsync a folder say EINVAL (or EBADF): nothing more can be done there. */
    char *dir = dir_of(f->path);
    if (!dir) return td__fail(TD_ENOMEM, "%s: %s: out of memory", f->who, f->path);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    td_status st = TD_OK;
    if (dfd < 0) {
        st = td__fail(TD_EIO, "%s: %s: saved, but its folder cannot be opened to sync it: %s", f->who, f->path,
                      strerror(errno));
    } else {
        if (fsync(dfd) != 0 && errno != EINVAL && errno != EBADF)
            st = td__fail(TD_EIO, "%s: %s: saved, but syncing its folder failed: %s", f->who, f->path,
                          strerror(errno));
        close(dfd);
    }
    free(dir);
    crash_point();
    return st;
}

void td__afile_abort(td__afile *f) {
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    if (f->tmp) {
        unlink(f->tmp);
        free(f->tmp);
        f->tmp = NULL;
    }
}
