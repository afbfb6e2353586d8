/* A plain-main driver for the engine tests, without Criterion.
 *
 * Criterion 2.4.1 aborts under ThreadSanitizer (its inheritable arena,
 * Criterion issue 274), so CI runs the engine test bodies from this driver:
 * the test files are compiled a second time with -DTD_PLAIN_DRIVER, where
 * tests/tt.h registers each Test() here through a constructor.
 *
 * Each test runs in a forked child, as under Criterion, so each gets a fresh
 * runtime; the child sets alarm() to its timeout.  A child that returns from
 * its test ends with exit(0), so ThreadSanitizer's report at exit (exit code
 * 66) counts as a failure.  Usage: engine_plain [filter], where the filter is
 * a substring of "suite/name".  TIDE_TEST_TIMEOUT_SCALE multiplies every
 * timeout (sanitizer builds scale them by themselves).
 *
 * Output: one line per test, then "N passed, N failed" (", N skipped" when
 * some were skipped).  Exit code 1 when a test failed, else 0.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tt.h"

enum { TT_MAX_TESTS = 512, TT_SKIP_CODE = 77 };
static const double tt_default_timeout = 60.0;

struct tt_entry {
    const char *suite, *name;
    tt_test_fn fn;
    const struct tt_params *params;
};

/* Filled by constructors, before main; zero-initialised storage only. */
static struct tt_entry tt_tests[TT_MAX_TESTS];
static int tt_ntests;

void tt_register(const char *suite, const char *name, tt_test_fn fn, const struct tt_params *p) {
    if (tt_ntests >= TT_MAX_TESTS) {
        fprintf(stderr, "plain driver: more than %d tests; raise TT_MAX_TESTS\n", TT_MAX_TESTS);
        abort();
    }
    tt_tests[tt_ntests++] = (struct tt_entry){suite, name, fn, p};
}

static void tt_vreport(const char *file, int line, const char *kind, const char *fmt, va_list ap) {
    fprintf(stderr, "  %s:%d: %s", file, line, kind);
    /* fmt always starts with the single space tt.h adds. */
    if (fmt[0] && fmt[1]) {
        fputs(":", stderr);
        vfprintf(stderr, fmt, ap);
    }
    fputc('\n', stderr);
}

/* A failed assertion ends the child at once: _exit, so no atexit handler can
 * wait on work the failed test left pending. */
_Noreturn void tt_fail(const char *file, int line, const char *what, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "  %s:%d: assertion failed: %s\n", file, line, what);
    va_start(ap, fmt);
    tt_vreport(file, line, "message", fmt, ap);
    va_end(ap);
    fflush(NULL);
    _exit(1);
}

_Noreturn void tt_fail_cmp(const char *file, int line, const char *what, const char *lhs,
                           const char *rhs, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "  %s:%d: assertion failed: %s (left: %s, right: %s)\n", file, line, what,
            lhs, rhs);
    va_start(ap, fmt);
    tt_vreport(file, line, "message", fmt, ap);
    va_end(ap);
    fflush(NULL);
    _exit(1);
}

_Noreturn void tt_skip(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    tt_vreport(file, line, "skipped", fmt, ap);
    va_end(ap);
    fflush(NULL);
    exit(TT_SKIP_CODE);
}

void tt_log(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("  [info] ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int tt_cmp_entry(const void *pa, const void *pb) {
    const struct tt_entry *a = pa, *b = pb;
    int c = strcmp(a->suite, b->suite);
    return c ? c : strcmp(a->name, b->name);
}

static double tt_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double tt_timeout_scale(void) {
    double scale = 1.0;
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
    scale = 5.0;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
    scale = 5.0;
#endif
#endif
    const char *s = getenv("TIDE_TEST_TIMEOUT_SCALE");
    if (s && *s) {
        double v = strtod(s, NULL);
        if (v > 0) scale = v;
    }
    return scale;
}

/* Runs one test in a child; returns 0 pass, 1 fail, 2 skip. */
static int tt_run(const struct tt_entry *t, double scale) {
    double timeout = t->params->timeout > 0 ? t->params->timeout : tt_default_timeout;
    unsigned secs = (unsigned)(timeout * scale + 0.999);
    if (secs == 0) secs = 1;
    fflush(NULL);
    double t0 = tt_now();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "plain driver: fork: %s\n", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        alarm(secs);
        t->fn();
        fflush(NULL);
        exit(0);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) {
            fprintf(stderr, "plain driver: waitpid: %s\n", strerror(errno));
            return 1;
        }
    }
    double dt = tt_now() - t0;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        printf("PASS %s/%s (%.2f s)\n", t->suite, t->name, dt);
        return 0;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == TT_SKIP_CODE) {
        printf("SKIP %s/%s\n", t->suite, t->name);
        return 2;
    }
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)
        printf("FAIL %s/%s: timed out after %u s\n", t->suite, t->name, secs);
    else if (WIFSIGNALED(st))
        printf("FAIL %s/%s: killed by signal %d (%s) after %.2f s\n", t->suite, t->name,
               WTERMSIG(st), strsignal(WTERMSIG(st)), dt);
    else
        printf("FAIL %s/%s: exit code %d after %.2f s\n", t->suite, t->name, WEXITSTATUS(st),
               dt);
    return 1;
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    if (argc > 2 || (filter && (!strcmp(filter, "-h") || !strcmp(filter, "--help")))) {
        fprintf(stderr, "usage: %s [filter]   (filter: a substring of suite/name)\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    qsort(tt_tests, (size_t)tt_ntests, sizeof tt_tests[0], tt_cmp_entry);
    double scale = tt_timeout_scale();
    int passed = 0, failed = 0, skipped = 0;
    for (int i = 0; i < tt_ntests; i++) {
        const struct tt_entry *t = &tt_tests[i];
        char full[256];
        snprintf(full, sizeof full, "%s/%s", t->suite, t->name);
        if (filter && !strstr(full, filter)) continue;
        if (t->params->disabled) {
            printf("SKIP %s (disabled)\n", full);
            skipped++;
            continue;
        }
        switch (tt_run(t, scale)) {
        case 0: passed++; break;
        case 2: skipped++; break;
        default: failed++; break;
        }
    }
    if (skipped)
        printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    else
        printf("%d passed, %d failed\n", passed, failed);
    if (passed + failed + skipped == 0) {
        fprintf(stderr, "plain driver: no test matches \"%s\"\n", filter ? filter : "");
        return 1;
    }
    return failed ? 1 : 0;
}
