/* peer_starpu_engine: the engine shapes of BENCHMARKS.md on StarPU 1.3, for
 * bench_engine (which launches it as a child process, one per trial round).
 *
 * Each task is an empty CPU codelet (where = STARPU_CPU) on registered
 * variable handles; StarPU infers the dependencies from the access modes
 * (sequential consistency, on by default):
 *   independent: STARPU_RW on handle i mod 1000
 *   chain:       STARPU_RW on one handle
 *   fanout:      STARPU_R on one shared handle, STARPU_RW on handle i mod 1000
 * Time per task: from the first starpu_task_create to the return of
 * starpu_task_wait_for_all, divided by the task count.
 *
 * StarPU's defaults are kept (scheduler and all), except the worker count:
 * --workers N sets starpu_conf.ncpus (bench_engine also sets STARPU_NCPU=N,
 * STARPU_NCUDA=0, STARPU_NOPENCL=0 in the environment, which StarPU prefers).
 *
 * Usage: peer_starpu_engine [--ops N] [--trials N] [--workers N] [--warmup N]
 * Output (stdout, one line each):
 *   info version StarPU <major>.<minor>.<release>
 *   info workers <cpu workers>
 *   info sched <policy name>
 *   trial <shape> <us per task>            (one per timed trial)
 *   result <shape> <min us> <median us>    (one per shape, at the end)
 */
#include <starpu.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timing.h"

static void noop_cpu(void *buffers[], void *cl_arg) {
    (void)buffers;
    (void)cl_arg;
}

static struct starpu_codelet cl_rw = {
    .where = STARPU_CPU,
    .cpu_funcs = {noop_cpu},
    .nbuffers = 1,
    .modes = {STARPU_RW},
    .name = "noop_rw",
};

static struct starpu_codelet cl_r_rw = {
    .where = STARPU_CPU,
    .cpu_funcs = {noop_cpu},
    .nbuffers = 2,
    .modes = {STARPU_R, STARPU_RW},
    .name = "noop_r_rw",
};

static int64_t buf[NVARS + 1];
static starpu_data_handle_t handles[NVARS + 1]; /* [NVARS] is the shared one */

/* One trial: n tasks of a shape; returns microseconds per task, or a
 * negative value if a submission failed. */
static double run_shape(int shape, long n) {
    double t0 = bench_now_us();
    for (long i = 0; i < n; i++) {
        struct starpu_task *t = starpu_task_create();
        switch (shape) {
        case SHAPE_INDEPENDENT:
            t->cl = &cl_rw;
            t->handles[0] = handles[i % NVARS];
            break;
        case SHAPE_CHAIN:
            t->cl = &cl_rw;
            t->handles[0] = handles[0];
            break;
        default:
            t->cl = &cl_r_rw;
            t->handles[0] = handles[NVARS];
            t->handles[1] = handles[i % NVARS];
            break;
        }
        int ret = starpu_task_submit(t);
        if (ret != 0) {
            fprintf(stderr, "peer_starpu_engine: starpu_task_submit failed (%d)\n", ret);
            starpu_task_wait_for_all();
            return -1.0;
        }
    }
    starpu_task_wait_for_all();
    double t1 = bench_now_us();
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

    struct starpu_conf conf;
    starpu_conf_init(&conf);
    if (workers > 0) conf.ncpus = (int)workers;
    conf.ncuda = 0;
    conf.nopencl = 0;
    int ret = starpu_init(&conf);
    if (ret != 0) {
        fprintf(stderr, "peer_starpu_engine: starpu_init failed (%d)\n", ret);
        return 1;
    }
    int maj, min, rel;
    starpu_get_version(&maj, &min, &rel);
    printf("info version StarPU %d.%d.%d\n", maj, min, rel);
    printf("info workers %u\n", starpu_cpu_worker_get_count());
    struct starpu_sched_policy *pol = starpu_sched_ctx_get_sched_policy(0 /* the global context */);
    printf("info sched %s\n", pol && pol->policy_name ? pol->policy_name : "?");
    fflush(stdout);

    for (int i = 0; i <= NVARS; i++)
        starpu_variable_data_register(&handles[i], STARPU_MAIN_RAM, (uintptr_t)&buf[i], sizeof buf[i]);

    int status = 0;
    double *samples[NSHAPES];
    for (int s = 0; s < NSHAPES; s++) {
        samples[s] = calloc((size_t)trials, sizeof(double));
        if (!samples[s]) return 1;
    }
    /* Warm-up, untimed: first submissions allocate StarPU's internal lists. */
    for (int s = 0; s < NSHAPES && status == 0; s++)
        if (run_shape(s, warmup < ops ? warmup : ops) < 0) status = 1;
    for (long t = 0; t < trials && status == 0; t++)
        for (int s = 0; s < NSHAPES && status == 0; s++) {
            double us = run_shape(s, ops);
            if (us < 0) {
                status = 1;
                break;
            }
            samples[s][t] = us;
            printf("trial %s %.6f\n", shape_names[s], us);
            fflush(stdout);
        }
    if (status == 0)
        for (int s = 0; s < NSHAPES; s++)
            printf("result %s %.6f %.6f\n", shape_names[s], bench_min(samples[s], (int)trials),
                   bench_median(samples[s], (int)trials));

    for (int i = 0; i <= NVARS; i++) starpu_data_unregister(handles[i]);
    starpu_shutdown();
    for (int s = 0; s < NSHAPES; s++) free(samples[s]);
    return status;
}
