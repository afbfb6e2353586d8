/* peer_openmp_engine: the engine shapes of BENCHMARKS.md as OpenMP tasks with
 * depend clauses (libgomp), for bench_engine (which launches it as a child
 * process, one per trial round).
 *
 * One thread of a `parallel` region creates every task inside `single`; the
 * others run them.  Each task calls an empty out-of-line function:
 *   independent: depend(inout: x[i mod 1000])
 *   chain:       depend(inout: x[0])
 *   fanout:      depend(in: x[1000]) depend(inout: x[i mod 1000])
 * Time per task: from just before the first task is created to the end of
 * the `taskwait` that follows the last one, divided by the task count.
 *
 * libgomp's defaults are kept (wait policy, spin count), except the thread
 * count: --workers N calls omp_set_num_threads(N) (bench_engine also sets
 * OMP_NUM_THREADS=N in the environment).
 *
 * Usage: peer_openmp_engine [--ops N] [--trials N] [--workers N] [--warmup N]
 * Output: as peer_starpu_engine (info / trial / result lines).
 */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timing.h"

static int64_t x[NVARS + 1]; /* x[NVARS] is the shared one */

__attribute__((noinline)) static void noop(int64_t *p) { __asm__ volatile("" : : "r"(p) : "memory"); }

static double run_shape(int shape, long n) {
    double t0 = 0.0, t1 = 0.0;
#pragma omp parallel
#pragma omp single
    {
        t0 = bench_now_us();
        switch (shape) {
        case SHAPE_INDEPENDENT:
            for (long i = 0; i < n; i++) {
                long k = i % NVARS;
#pragma omp task firstprivate(k) depend(inout : x[k])
                noop(&x[k]);
            }
            break;
        case SHAPE_CHAIN:
            for (long i = 0; i < n; i++) {
#pragma omp task depend(inout : x[0])
                noop(&x[0]);
            }
            break;
        default:
            for (long i = 0; i < n; i++) {
                long k = i % NVARS;
#pragma omp task firstprivate(k) depend(in : x[NVARS]) depend(inout : x[k])
                noop(&x[k]);
            }
            break;
        }
#pragma omp taskwait
        t1 = bench_now_us();
    }
    return (t1 - t0) / (double)n;
}

int main(int argc, char **argv) {
    long ops = 200000, trials = 5, workers = 0, warmup = 20000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--ops")) ops = bench_parse_count(argv[0], a, v), i++;
        else if (!strcmp(a, "--trials")) trials = bench_parse_count(argv[0], a, v), i++;
        else if (!strcmp(a, "--workers")) workers = bench_parse_count(argv[0], a, v), i++;
        else if (!strcmp(a, "--warmup")) warmup = bench_parse_count(argv[0], a, v), i++;
        else {
            fprintf(stderr, "usage: %s [--ops N] [--trials N] [--workers N] [--warmup N]\n", argv[0]);
            return 2;
        }
    }
    if (workers > 0) omp_set_num_threads((int)workers);
    printf("info version OpenMP %d (libgomp, GCC %s)\n", _OPENMP, __VERSION__);
    printf("info workers %d\n", omp_get_max_threads());
    const char *wp = getenv("OMP_WAIT_POLICY");
    printf("info wait_policy %s\n", wp ? wp : "default");
    fflush(stdout);

    double *samples[NSHAPES];
    for (int s = 0; s < NSHAPES; s++) {
        samples[s] = calloc((size_t)trials, sizeof(double));
        if (!samples[s]) return 1;
    }
    for (int s = 0; s < NSHAPES; s++) (void)run_shape(s, warmup < ops ? warmup : ops);
    for (long t = 0; t < trials; t++)
        for (int s = 0; s < NSHAPES; s++) {
            double us = run_shape(s, ops);
            samples[s][t] = us;
            printf("trial %s %.6f\n", shape_names[s], us);
            fflush(stdout);
        }
    for (int s = 0; s < NSHAPES; s++)
        printf("result %s %.6f %.6f\n", shape_names[s], bench_min(samples[s], (int)trials),
               bench_median(samples[s], (int)trials));
    for (int s = 0; s < NSHAPES; s++) free(samples[s]);
    return 0;
}
