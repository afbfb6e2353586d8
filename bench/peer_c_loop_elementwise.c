/* peer_c_loop_elementwise: the fused C loop c[i] = a[i] + 2*b[i] on f32, for
 * bench_elementwise (which launches it as a child process, one per trial
 * round).
 *
 * A plain loop split over OpenMP threads (`parallel for`, static schedule):
 * no intrinsics, no streaming stores; the compiler vectorises it as it
 * likes.  It reads a and b and writes c once: 12 bytes per element.  The
 * arrays are allocated once per size (64-byte aligned) and first touched by
 * the same static schedule, so the timed loops never page-fault.  Each size
 * runs its warm-up, then its trials, so a small size runs from a warm cache.
 *
 * libgomp's defaults are kept (wait policy, spin count), except the thread
 * count: --threads N calls omp_set_num_threads(N) (bench_elementwise also
 * sets OMP_NUM_THREADS=N in the environment).
 *
 * Usage: peer_c_loop_elementwise --sizes N[,N...] --trials N[,N...]
 *                                [--warmup N] [--threads N]
 *   --trials gives the timed trials of each size, in the order of --sizes
 *   (one value: the same for every size).
 * Output (stdout, one line each):
 *   info version <compiler and OpenMP>
 *   info threads <threads>
 *   trial loop <elements> <us>       (one per timed trial)
 * Exits 1 (after a message on stderr) when a result is wrong.
 */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timing.h"

enum { MAX_SIZES = 8 };

static void fill(float *x, long n, float v) {
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) x[i] = v;
}

/* The competitor: one plain loop. */
static void fused(float *restrict c, const float *restrict a, const float *restrict b, long n) {
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) c[i] = a[i] + 2.0f * b[i];
}

/* Parses "N,N,..." into v; returns the count (0 on garbage). */
static int parse_list(const char *s, long *v, int max) {
    int k = 0;
    while (s && *s && k < max) {
        char *end = NULL;
        long x = strtol(s, &end, 10);
        if (end == s || x <= 0) return 0;
        v[k++] = x;
        if (*end == ',') s = end + 1;
        else if (*end == '\0') break;
        else return 0;
    }
    return k;
}

int main(int argc, char **argv) {
    long sizes[MAX_SIZES], trials[MAX_SIZES], warmup = 2, threads = 0;
    int nsizes = 0, ntrials = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--sizes") && v) nsizes = parse_list(v, sizes, MAX_SIZES), i++;
        else if (!strcmp(a, "--trials") && v) ntrials = parse_list(v, trials, MAX_SIZES), i++;
        else if (!strcmp(a, "--warmup")) warmup = bench_parse_count(argv[0], a, v), i++;
        else if (!strcmp(a, "--threads")) threads = bench_parse_count(argv[0], a, v), i++;
        else {
            nsizes = 0;
            break;
        }
    }
    if (nsizes == 0 || ntrials == 0 || (ntrials != 1 && ntrials != nsizes)) {
        fprintf(stderr, "usage: %s --sizes N[,N...] --trials N[,N...] [--warmup N] [--threads N]\n", argv[0]);
        return 2;
    }
    for (int s = ntrials; s < nsizes; s++) trials[s] = trials[0];
    if (threads > 0) omp_set_num_threads((int)threads);
    printf("info version GCC %s, OpenMP %d (libgomp), plain loop\n", __VERSION__, _OPENMP);
    printf("info threads %d\n", omp_get_max_threads());
    fflush(stdout);

    float *a[MAX_SIZES], *b[MAX_SIZES], *c[MAX_SIZES];
    for (int s = 0; s < nsizes; s++) {
        size_t bytes = ((size_t)sizes[s] * sizeof(float) + 63) / 64 * 64;
        a[s] = aligned_alloc(64, bytes);
        b[s] = aligned_alloc(64, bytes);
        c[s] = aligned_alloc(64, bytes);
        if (!a[s] || !b[s] || !c[s]) {
            fprintf(stderr, "%s: out of memory for %ld elements\n", argv[0], sizes[s]);
            return 1;
        }
        fill(a[s], sizes[s], 1.5f);
        fill(b[s], sizes[s], 0.25f);
        fill(c[s], sizes[s], 0.0f);
    }
    /* One size after the other, so the small one runs from a warm cache. */
    for (int s = 0; s < nsizes; s++) {
        for (long w = 0; w < warmup; w++) fused(c[s], a[s], b[s], sizes[s]);
        for (long t = 0; t < trials[s]; t++) {
            double t0 = bench_now_us();
            fused(c[s], a[s], b[s], sizes[s]);
            double t1 = bench_now_us();
            printf("trial loop %ld %.3f\n", sizes[s], t1 - t0);
            fflush(stdout);
        }
    }

    int bad = 0;
    for (int s = 0; s < nsizes; s++) {
        long n = sizes[s];
        long idx[3] = {0, n / 2, n - 1};
        for (int k = 0; k < 3; k++)
            if (c[s][idx[k]] != 2.0f) {
                fprintf(stderr, "%s: c[%ld] = %g, expected 2\n", argv[0], idx[k], (double)c[s][idx[k]]);
                bad = 1;
            }
        free(a[s]);
        free(b[s]);
        free(c[s]);
    }
    return bad;
}
