/* Helpers of the file tests (suite 'io'): a scratch folder per test, whole
 * files in and out, a python3 that imports numpy, and the check that a
 * failure is TD_EFORMAT (or another status) with a message naming the file.
 * The leak check and the reference arrays come from tests/ndarray/nd.h. */
#ifndef TIDE_TESTS_IO_IO_H
#define TIDE_TESTS_IO_IO_H

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ndarray/nd.h"

/* Internal hooks of ndarray/ (declared in ndarray/internal.h): the loaders
 * from memory, and the crash hook of the atomic saves. */
extern td_array *td__npy_load_mem(const void *data, size_t size, const char *name, td_device dev);
extern td_status td__ckpt_load_mem(const void *data, size_t size, const char *name, td_device dev, td_ckpt **out);
extern void td__io_crash_at(long step, size_t chunk);

/* A fresh folder under $TMPDIR (or /tmp); removed by io_rmdir. */
static inline void io_tmpdir(char *out, size_t cap) {
    const char *base = getenv("TMPDIR");
    snprintf(out, cap, "%s/tide-io-XXXXXX", base && *base ? base : "/tmp");
    cr_assert_not_null(mkdtemp(out), "mkdtemp: %s", strerror(errno));
}

/* Removes every entry of dir (files only) and dir itself. */
static inline void io_rmdir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* The number of entries of dir other than "." and "..". */
static inline int io_count_entries(const char *dir) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "opendir %s: %s", dir, strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
    closedir(d);
    return n;
}

static inline void io_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "fopen %s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(data, 1, n, f), n, "fwrite %s", path);
    cr_assert_eq(fclose(f), 0);
}

/* The whole file (malloc'd, *n its size); NULL if it cannot be read. */
static inline unsigned char *io_read_file(const char *path, size_t *n) {
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(len > 0 ? (size_t)len : 1);
    cr_assert_not_null(buf);
    size_t got = fread(buf, 1, (size_t)len, f);
    fclose(f);
    cr_assert_eq(got, (size_t)len, "short read of %s", path);
    *n = (size_t)len;
    return buf;
}

/* A failure with status want whose message names the file path. */
static inline void io_expect_fail(td_status got, td_status want, const char *path, const char *what) {
    cr_assert_eq(got, want, "%s: returned %s (%s), expected %s", what, td_status_name(got), td_last_error(),
                 td_status_name(want));
    cr_assert_eq(td_last_status(), want, "%s: td_last_status() is %s", what, td_status_name(td_last_status()));
    cr_assert(tt_has(td_last_error(), path), "%s: the message \"%s\" does not name the file %s", what,
              td_last_error(), path);
}

/* A python3 that imports numpy: $TIDE_TEST_PYTHON if set, else
 * /usr/bin/python3 (Debian's python3-numpy lives there), else python3 from
 * PATH.  NULL if none. */
static inline const char *io_python_numpy(void) {
    const char *cands[] = {getenv("TIDE_TEST_PYTHON"), "/usr/bin/python3", "python3"};
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++) {
        if (!cands[i] || !*cands[i]) continue;
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "'%s' -c 'import numpy' >/dev/null 2>&1", cands[i]);
        if (system(cmd) == 0) return cands[i];
    }
    return NULL;
}

/* Runs `python -c script arg` and returns its exit status (its output goes to
 * the test's output). */
static inline int io_run_python(const char *python, const char *script, const char *arg) {
    pid_t pid = fork();
    cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
    if (pid == 0) {
        execlp(python, python, "-c", script, arg, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Bytes of the array's elements in C order (malloc'd; *n set). */
static inline void *io_host(td_array *a, size_t *n) {
    *n = (size_t)td_numel(a) * td_dtype_size(td_dtype(a));
    void *buf = malloc(*n ? *n : 1);
    cr_assert_not_null(buf);
    td_status st = td_to_host(a, buf, *n);
    cr_assert_eq(st, TD_OK, "td_to_host: %s", td_last_error());
    return buf;
}

/* a and b have the same dtype, shape and bytes. */
static inline void io_expect_same(td_array *a, td_array *b, const char *what) {
    cr_assert_not_null(a, "%s: first array is NULL", what);
    cr_assert_not_null(b, "%s: NULL (%s)", what, td_last_error());
    cr_assert_eq(td_dtype(a), td_dtype(b), "%s: dtype", what);
    cr_assert_eq(td_ndim(a), td_ndim(b), "%s: ndim", what);
    for (int d = 0; d < td_ndim(a); d++) cr_assert_eq(td_shape(a)[d], td_shape(b)[d], "%s: dim %d", what, d);
    cr_assert(td_is_contiguous(b), "%s: a loaded array is C-contiguous", what);
    size_t na, nb;
    void *ha = io_host(a, &na), *hb = io_host(b, &nb);
    cr_assert_eq(na, nb);
    cr_assert(memcmp(ha, hb, na) == 0, "%s: the bytes differ", what);
    free(ha);
    free(hb);
}

#endif
