/* peer_cblas_gemm: cblas_sgemm on square f32 matrices, for bench_gemm (which
 * launches it as a child process, once per trial round).
 *
 * A child process because tide sets OpenBLAS to one thread per call in its
 * own process (its workers are the threads); here OpenBLAS runs its own pool
 * of --threads threads, as a program calling OpenBLAS directly would.  The
 * core type is whatever OpenBLAS picked when it loaded (bench_gemm sets
 * OPENBLAS_CORETYPE for both sides alike); it is printed.
 *
 * C = A B, row-major, no transposes, alpha 1, beta 0.  The matrices are
 * allocated once per size (64-byte aligned) and filled with values in
 * [-1, 1); each size runs its warm-up, then its trials.
 *
 * Usage: peer_cblas_gemm --sizes N[,N...] --trials N[,N...] [--warmup N]
 *                        [--threads N]
 *   --trials gives the timed trials of each size, in the order of --sizes
 *   (one value: the same for every size).
 * Output (stdout, one line each):
 *   info core <openblas_get_corename()>
 *   info threads <openblas_get_num_threads()>
 *   info config <openblas_get_config()>
 *   trial sgemm <n> <us>       (one per timed trial)
 * Exits 1 (after a message on stderr) when a result is wrong.
 */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timing.h"

enum { MAX_SIZES = 8 };

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

/* The same values bench_gemm gives tide: a small xorshift, in [-1, 1). */
static void fill(float *x, long n, uint64_t seed) {
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (long i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = (float)((double)(s >> 11) * 0x1p-52 - 1.0);
    }
}

static int check(const float *a, const float *b, const float *c, long n) {
    long idx[3][2] = {{0, 0}, {n / 2, n / 3}, {n - 1, n - 1}};
    for (int k = 0; k < 3; k++) {
        long i = idx[k][0], j = idx[k][1];
        double s = 0, t = 0;
        for (long p = 0; p < n; p++) {
            s += (double)a[i * n + p] * b[p * n + j];
            t += fabs((double)a[i * n + p] * b[p * n + j]);
        }
        if (fabs(c[i * n + j] - s) > 1e-5 * t + 1e-6) {
            fprintf(stderr, "peer_cblas_gemm: n %ld: C[%ld, %ld] = %g, expected %g\n", n, i, j, (double)c[i * n + j], s);
            return 0;
        }
    }
    return 1;
}

int main(int argc, char **argv) {
    long sizes[MAX_SIZES], trials[MAX_SIZES];
    int nsizes = 0, ntrials = 0;
    long warmup = 2, threads = 1;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--sizes")) nsizes = parse_list(v, sizes, MAX_SIZES), i++;
        else if (!strcmp(argv[i], "--trials")) ntrials = parse_list(v, trials, MAX_SIZES), i++;
        else if (!strcmp(argv[i], "--warmup")) warmup = bench_parse_count(argv[0], argv[i], v), i++;
        else if (!strcmp(argv[i], "--threads")) threads = bench_parse_count(argv[0], argv[i], v), i++;
        else {
            fprintf(stderr, "usage: %s --sizes N[,N...] --trials N[,N...] [--warmup N] [--threads N]\n", argv[0]);
            return 2;
        }
    }
    if (nsizes == 0 || (ntrials != 1 && ntrials != nsizes)) {
        fprintf(stderr, "%s: --sizes and --trials (one value, or one per size) are required\n", argv[0]);
        return 2;
    }
    openblas_set_num_threads((int)threads);
    printf("info core %s\n", openblas_get_corename());
    printf("info threads %d\n", openblas_get_num_threads());
    printf("info config %s\n", openblas_get_config());
    fflush(stdout);
    for (int s = 0; s < nsizes; s++) {
        long n = sizes[s], nt = trials[ntrials == 1 ? 0 : s];
        size_t bytes = ((size_t)(n * n) * sizeof(float) + 63) / 64 * 64;
        float *a = aligned_alloc(64, bytes), *b = aligned_alloc(64, bytes), *c = aligned_alloc(64, bytes);
        if (!a || !b || !c) {
            fprintf(stderr, "peer_cblas_gemm: out of memory at n %ld\n", n);
            return 1;
        }
        fill(a, n * n, 1);
        fill(b, n * n, 2);
        memset(c, 0, bytes);
        for (long w = 0; w < warmup; w++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0f, a, (int)n, b, (int)n,
                        0.0f, c, (int)n);
        if (!check(a, b, c, n)) return 1;
        for (long t = 0; t < nt; t++) {
            double t0 = bench_now_us();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0f, a, (int)n, b, (int)n,
                        0.0f, c, (int)n);
            double t1 = bench_now_us();
            printf("trial sgemm %ld %.3f\n", n, t1 - t0);
        }
        fflush(stdout);
        free(a);
        free(b);
        free(c);
    }
    return 0;
}
