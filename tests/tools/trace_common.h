/* Helpers of the tide-trace tests: temporary files, running the program and
 * capturing what it prints, and parsing traces written as text.
 *
 * The program runs in a child process (fork + execv) with its output in
 * files, so a crash shows as a signal, and a sanitizer report (ASan builds
 * the program too) as text on its standard error that the tests look for.
 */
#ifndef TIDE_TESTS_TOOLS_TRACE_COMMON_H
#define TIDE_TESTS_TOOLS_TRACE_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tt.h"
#include "trace_summary.h"

/* A path in /tmp unique to this process and tag. */
static inline void tr_tmp(char *buf, size_t n, const char *tag, const char *ext) {
    snprintf(buf, n, "/tmp/tide_trace_test_%d_%s.%s", (int)getpid(), tag, ext);
}

/* The whole file as a NUL-terminated string (NULL if it cannot be read). */
static inline char *tr_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - 1 - n, f)) > 0) {
        n += got;
        if (n == cap - 1) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) free(buf);
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

static inline void tr_write(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot write %s", path);
    cr_assert_eq(fwrite(text, 1, strlen(text), f), strlen(text));
    cr_assert_eq(fclose(f), 0);
}

/* What one run of tide-trace did. */
typedef struct {
    int status; /* exit status, or 128 + signal */
    char *out, *err;
} tr_run;

/* Runs tide-trace with the given arguments (NULL-terminated). */
static inline tr_run tr_exec(const char *const *args) {
    const char *exe = getenv("TIDE_TRACE_EXE");
    cr_assert(exe && *exe, "TIDE_TRACE_EXE is not set (meson test sets it to the built tide-trace)");
    char out_path[128], err_path[128];
    tr_tmp(out_path, sizeof out_path, "stdout", "txt");
    tr_tmp(err_path, sizeof err_path, "stderr", "txt");
    const char *argv[32];
    int n = 0;
    argv[n++] = exe;
    for (int i = 0; args[i] && n < 31; i++) argv[n++] = args[i];
    argv[n] = NULL;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        if (!freopen(out_path, "w", stdout) || !freopen(err_path, "w", stderr)) _exit(99);
        execv(exe, (char *const *)argv);
        _exit(98);
    }
    int ws = 0;
    cr_assert_eq(waitpid(pid, &ws, 0), pid);
    tr_run r;
    r.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + (WIFSIGNALED(ws) ? WTERMSIG(ws) : 0);
    r.out = tr_slurp(out_path, NULL);
    r.err = tr_slurp(err_path, NULL);
    cr_assert(r.out && r.err, "cannot read what tide-trace printed");
    remove(out_path);
    remove(err_path);
    cr_assert_neq(r.status, 98, "cannot run %s", exe);
    cr_assert(!strstr(r.err, "Sanitizer") && !strstr(r.err, "runtime error"),
              "tide-trace made a sanitizer report:\n%s", r.err);
    return r;
}

static inline void tr_run_free(tr_run *r) {
    free(r->out);
    free(r->err);
}

/* Parses a trace given as text; asserts it loads. */
static inline td_trace *tr_parse_ok(const char *text) {
    char err[512];
    td_trace *t = NULL;
    td_trace_status st = td_trace_parse(text, strlen(text), &t, err, sizeof err);
    cr_assert_eq(st, TD_TRACE_OK, "the trace was refused: %s\n%s", err, text);
    return t;
}

static inline td_trace_summary *tr_summarise(const td_trace *t) {
    td_trace_summary *s = NULL;
    cr_assert_eq(td_trace_summarise(t, &s), TD_TRACE_OK);
    return s;
}

/* How many times sub occurs in s. */
static inline size_t tr_count(const char *s, const char *sub) {
    size_t n = 0;
    for (const char *p = s; (p = strstr(p, sub)) != NULL; p += strlen(sub)) n++;
    return n;
}

#endif
