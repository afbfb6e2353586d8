/* bench: timing and statistics shared by bench_* and peer_* programs.
 * Header-only, no tide dependency (the peers do not link tide). */
#ifndef TIDE_BENCH_TIMING_H
#define TIDE_BENCH_TIMING_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The three engine shapes of BENCHMARKS.md, in the order they are run. */
enum { SHAPE_INDEPENDENT = 0, SHAPE_CHAIN = 1, SHAPE_FANOUT = 2, NSHAPES = 3 };
static const char *const shape_names[NSHAPES] = {"independent", "chain", "fanout"};
enum { NVARS = 1000 }; /* independent and fan-out write var i mod NVARS */

static inline double bench_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (mean of the middle two when n is even); 0 when n == 0. */
static inline double bench_median(const double *v, int n) {
    if (n <= 0) return 0.0;
    double *c = malloc((size_t)n * sizeof *c);
    if (!c) return 0.0;
    memcpy(c, v, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, bench_cmp_double);
    double m = n % 2 ? c[n / 2] : 0.5 * (c[n / 2 - 1] + c[n / 2]);
    free(c);
    return m;
}

static inline double bench_min(const double *v, int n) {
    double m = n > 0 ? v[0] : 0.0;
    for (int i = 1; i < n; i++)
        if (v[i] < m) m = v[i];
    return m;
}

/* Parses a positive integer option value; exits with a message on garbage. */
static inline long bench_parse_count(const char *prog, const char *opt, const char *s) {
    char *end = NULL;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || *s == '\0' || *end != '\0' || v <= 0) {
        fprintf(stderr, "%s: %s needs a positive integer, not '%s'\n", prog, opt, s ? s : "");
        exit(2);
    }
    return v;
}

#endif
