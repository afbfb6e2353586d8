/* bench_gemm: td_matmul on square f32 matrices against cblas_sgemm with the
 * same OpenBLAS core type and the same total threads, in the same run.
 *
 * BENCHMARKS.md, "GEMM": n = 256, 1024 and 2048.  tide runs OpenBLAS
 * single-threaded per call and tiles big products over its workers; the
 * competitor is one cblas_sgemm call with OpenBLAS's own pool of as many
 * threads as tide has workers.
 *
 * The core type.  OpenBLAS 0.3.21 picks generic kernels on this CPU unless
 * OPENBLAS_CORETYPE is set before it loads.  When the variable is not set,
 * bench_gemm sets it to the best core the CPU supports (SkylakeX with
 * AVX-512, Haswell with AVX2) and runs itself again, so that this process
 * (tide's side) and peer_cblas_gemm (a child, which inherits the
 * environment) load the same kernels.  A value already in the environment
 * is kept, for both sides.  Both sides print openblas_get_corename().
 *
 * The run is a series of rounds; each runs, one after the other:
 *   1. tide, threaded engine, default workers (in this process).  Per size:
 *      A and B of values in [-1, 1) (the peer's values); two warm-up calls;
 *      then trials, each one
 *        c = td_matmul(a, b)   inside td_scope_begin/end,
 *      timed from just before the push to the return of td_array_wait(c)
 *      (the scope ends after the clock stops and gives c back to the pool,
 *      so the next trial reuses it).  Three elements of the result are
 *      checked against a dot product in double.  tide is shut down (workers
 *      joined) before the peer runs.
 *   2. peer_cblas_gemm, a child process: the same sizes, warm-ups and trials
 *      of cblas_sgemm(RowMajor, NoTrans, NoTrans, n, n, n, 1, A, B, 0, C)
 *      with openblas_set_num_threads(tide's workers).
 * Min and median are over every trial of every round; ratios are of
 * medians, tide / cblas (below 1: tide is faster).
 *
 * Usage: bench_gemm [--quick] [--rounds N] [--trials-256 N] [--trials-1024 N]
 *                   [--trials-2048 N]
 * Human-readable lines first, then `figure <name> <value> <unit>` lines.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cblas.h>
#include <tide/tide.h>

#include "timing.h"

enum { NSIZES = 3, MAX_ROUNDS = 50, MAX_SAMPLES = 1 << 16 };
static const int64_t sizes[NSIZES] = {256, 1024, 2048};
enum { S_TIDE, S_CBLAS, NSIDES };
static const char *const side_names[NSIDES] = {"tide td_matmul", "cblas_sgemm"};
static const double targets[NSIZES] = {1.10, 1.05, 1.05};

static double samples[NSIDES][NSIZES][MAX_SAMPLES]; /* us */
static int nsamples[NSIDES][NSIZES];

static void add_sample(int side, int s, double us) {
    if (nsamples[side][s] < MAX_SAMPLES) samples[side][s][nsamples[side][s]++] = us;
}

static void die(const char *what, td_status st) {
    fprintf(stderr, "bench_gemm: %s failed: %s (%s)\n", what, td_strerror(st), td_last_error());
    exit(1);
}

static double loadavg(void) {
    double l = -1.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1.0;
        fclose(f);
    }
    return l;
}

/* ---- the core type, for both sides ---- */

static const char *best_core(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
    return NULL;
}

/* Sets OPENBLAS_CORETYPE and runs this program again when it was not set
 * (OpenBLAS read the environment when it loaded, before main).  Returns how
 * the variable came to be, for the report. */
static const char *settle_core(char **argv) {
    const char *set = getenv("OPENBLAS_CORETYPE");
    const char *mark = getenv("TIDE_BENCH_GEMM_CORE");
    if (set && *set) return mark && !strcmp(mark, "set") ? "set by bench_gemm" : "from the environment";
    const char *core = best_core();
    if (!core || (mark && *mark)) return "not set (OpenBLAS chose)";
    setenv("OPENBLAS_CORETYPE", core, 1);
    setenv("TIDE_BENCH_GEMM_CORE", "set", 1);
    fflush(stdout);
    execv("/proc/self/exe", argv);
    fprintf(stderr, "bench_gemm: could not run itself again with OPENBLAS_CORETYPE=%s (%s); OpenBLAS keeps its own choice\n",
            core, strerror(errno));
    setenv("TIDE_BENCH_GEMM_CORE", "failed", 1);
    unsetenv("OPENBLAS_CORETYPE"); /* the peer must load what this process loaded */
    return "not set (re-exec failed)";
}

/* ---- tide ---- */

/* The peer's values: a small xorshift, in [-1, 1). */
static void fill(float *x, int64_t n, uint64_t seed) {
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x[i] = (float)((double)(s >> 11) * 0x1p-52 - 1.0);
    }
}

static double tide_trial(td_array *a, td_array *b) {
    td_scope_begin();
    double t0 = bench_now_us();
    td_array *c = td_matmul(a, b);
    td_status st = c ? td_array_wait(c) : td_last_status();
    double t1 = bench_now_us();
    td_scope_end();
    if (st != TD_OK) die("td_matmul", st);
    return t1 - t0;
}

static void tide_check(td_array *a, td_array *b, const float *ha, const float *hb, int64_t n) {
    td_scope_begin();
    td_array *c = td_matmul(a, b);
    if (!c) die("td_matmul", td_last_status());
    int64_t idx[3][2] = {{0, 0}, {n / 2, n / 3}, {n - 1, n - 1}};
    for (int k = 0; k < 3; k++) {
        int64_t i = idx[k][0], j = idx[k][1];
        float v = 0.0f;
        td_status st = td_to_host_range(c, i * n + j, 1, &v, sizeof v);
        if (st != TD_OK) die("td_to_host_range", st);
        double s = 0, t = 0;
        for (int64_t p = 0; p < n; p++) {
            s += (double)ha[i * n + p] * hb[p * n + j];
            t += fabs((double)ha[i * n + p] * hb[p * n + j]);
        }
        if (fabs(v - s) > 1e-5 * t + 1e-6) {
            fprintf(stderr, "bench_gemm: tide's C[%lld, %lld] at n %lld is %g, expected %g\n", (long long)i, (long long)j,
                    (long long)n, (double)v, s);
            exit(1);
        }
    }
    td_scope_end();
}

static void tide_round(const long trials[NSIZES], long warmup) {
    td_config cfg = td_config_default();
    cfg.engine = TD_ENGINE_THREADED;
    cfg.profile_path = NULL;
    td_status st = td_init(&cfg);
    if (st != TD_OK) die("td_init", st);
    for (int s = 0; s < NSIZES; s++) {
        int64_t n = sizes[s], shape[2] = {n, n};
        float *ha = malloc(sizeof(float) * (size_t)(n * n)), *hb = malloc(sizeof(float) * (size_t)(n * n));
        if (!ha || !hb) die("malloc", TD_ENOMEM);
        fill(ha, n * n, 1);
        fill(hb, n * n, 2);
        td_array *a = td_from_host(ha, TD_F32, 2, shape, td_cpu(0));
        td_array *b = td_from_host(hb, TD_F32, 2, shape, td_cpu(0));
        if (!a || !b) die("td_from_host", td_last_status());
        for (long w = 0; w < warmup; w++) (void)tide_trial(a, b);
        tide_check(a, b, ha, hb, n);
        for (long t = 0; t < trials[s]; t++) add_sample(S_TIDE, s, tide_trial(a, b));
        td_release(a);
        td_release(b);
        free(ha);
        free(hb);
    }
    st = td_shutdown();
    if (st != TD_OK) die("td_shutdown", st);
}

/* ---- the peer: a child process printing info / trial lines ---- */

static char peer_path[PATH_MAX + 64];
static char peer_core[128], peer_threads[32], peer_config[256];
static int peer_usable;

static void exe_dir(char *dir, size_t size) {
    ssize_t k = readlink("/proc/self/exe", dir, size - 1);
    if (k <= 0) {
        snprintf(dir, size, ".");
        return;
    }
    dir[k] = '\0';
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
}

/* Runs argv with stdout captured into *out (malloc'd); stderr inherited.
 * Returns the wait status, or -1 when it could not start (*err) or was
 * killed after timeout_s seconds (*timed_out). */
static int run_child(char *const argv[], double timeout_s, char **out, int *err, int *timed_out) {
    *out = NULL;
    *err = 0;
    *timed_out = 0;
    int fds[2];
    if (pipe(fds) != 0) {
        *err = errno;
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    pid_t pid;
    extern char **environ;
    int e = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (e != 0) {
        close(fds[0]);
        *err = e;
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    double deadline = bench_now_us() + timeout_s * 1e6;
    while (buf) {
        double left_ms = (deadline - bench_now_us()) / 1000.0;
        if (left_ms <= 0) {
            *timed_out = 1;
            break;
        }
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        if (poll(&pfd, 1, (int)left_ms + 1) <= 0) continue;
        if (len + 4096 > cap) {
            char *g = realloc(buf, cap * 2);
            if (!g) break;
            buf = g;
            cap *= 2;
        }
        ssize_t k = read(fds[0], buf + len, cap - len - 1);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        len += (size_t)k;
    }
    close(fds[0]);
    if (*timed_out) kill(pid, SIGKILL);
    int wst = 0;
    while (waitpid(pid, &wst, 0) < 0 && errno == EINTR) {
    }
    if (buf) buf[len] = '\0';
    *out = buf;
    return *timed_out ? -1 : wst;
}

static void peer_round(const long trials[NSIZES], long warmup, int workers) {
    if (!peer_usable) return;
    char sizes_s[64], trials_s[64], warm_s[32], thr_s[32];
    snprintf(sizes_s, sizeof sizes_s, "%lld,%lld,%lld", (long long)sizes[0], (long long)sizes[1], (long long)sizes[2]);
    snprintf(trials_s, sizeof trials_s, "%ld,%ld,%ld", trials[0], trials[1], trials[2]);
    snprintf(warm_s, sizeof warm_s, "%ld", warmup);
    snprintf(thr_s, sizeof thr_s, "%d", workers);
    char *argv[] = {peer_path, "--sizes", sizes_s, "--trials", trials_s, "--warmup", warm_s, "--threads", thr_s, NULL};
    char *out;
    int err, timed_out;
    int wst = run_child(argv, 600.0, &out, &err, &timed_out);
    if (wst == -1 || !WIFEXITED(wst) || WEXITSTATUS(wst) != 0 || !out) {
        if (timed_out) printf("peer_cblas_gemm: no answer in 600 s, killed; skipping its ratios\n");
        else if (wst == -1) printf("peer_cblas_gemm: could not start (%s); skipping its ratios\n", strerror(err));
        else if (WIFSIGNALED(wst)) printf("peer_cblas_gemm: killed by signal %d; skipping its ratios\n", WTERMSIG(wst));
        else printf("peer_cblas_gemm: exited with status %d; skipping its ratios\n", WIFEXITED(wst) ? WEXITSTATUS(wst) : -1);
        peer_usable = 0;
        free(out);
        return;
    }
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        long long n;
        double us;
        if (!strncmp(line, "info core ", 10)) snprintf(peer_core, sizeof peer_core, "%s", line + 10);
        else if (!strncmp(line, "info threads ", 13)) snprintf(peer_threads, sizeof peer_threads, "%s", line + 13);
        else if (!strncmp(line, "info config ", 12)) snprintf(peer_config, sizeof peer_config, "%s", line + 12);
        else if (sscanf(line, "trial sgemm %lld %lf", &n, &us) == 2)
            for (int s = 0; s < NSIZES; s++)
                if (n == sizes[s]) add_sample(S_CBLAS, s, us);
    }
    free(out);
}

/* ---- output ---- */

static double med(int side, int s) { return bench_median(samples[side][s], nsamples[side][s]); }
static double gflops(int s, double us) { return 2.0 * (double)sizes[s] * (double)sizes[s] * (double)sizes[s] / (us * 1e3); }

static void figure(const char *name, double value, const char *unit) { printf("figure %s %.4g %s\n", name, value, unit); }

int main(int argc, char **argv) {
    const char *core_how = settle_core(argv);
    int quick = 0;
    long rounds = 0, trials[NSIZES] = {0, 0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quick")) quick = 1;
        else if (!strcmp(a, "--rounds")) rounds = bench_parse_count(argv[0], a, v), i++;
        else if (!strcmp(a, "--trials-256")) trials[0] = bench_parse_count(argv[0], a, v), i++;
        else if (!strcmp(a, "--trials-1024")) trials[1] = bench_parse_count(argv[0], a, v), i++;
        else if (!strcmp(a, "--trials-2048")) trials[2] = bench_parse_count(argv[0], a, v), i++;
        else {
            fprintf(stderr,
                    "usage: %s [--quick] [--rounds N] [--trials-256 N] [--trials-1024 N] [--trials-2048 N]\n"
                    "  --quick          3 rounds of 100 / 10 / 3 trials (default: 10 rounds of 1000 / 60 / 15)\n"
                    "  --rounds N       rounds (each: tide, then cblas_sgemm in a child process)\n"
                    "  --trials-<n> N   timed trials per round and side at size n\n",
                    argv[0]);
            return 2;
        }
    }
    if (!rounds) rounds = quick ? 3 : 10;
    if (!trials[0]) trials[0] = quick ? 100 : 1000;
    if (!trials[1]) trials[1] = quick ? 10 : 60;
    if (!trials[2]) trials[2] = quick ? 3 : 15;
    if (rounds > MAX_ROUNDS) rounds = MAX_ROUNDS;
    const long warmup = 2;

    int workers = td_device_workers(td_cpu(0));
    if (workers < 1) workers = 1;
    char desc[256] = "";
    td_device_describe(td_cpu(0), desc, sizeof desc);
    printf("bench_gemm: C = A B, f32, square %lld, %lld and %lld; %ld rounds of %ld / %ld / %ld trials, %s; load average "
           "%.2f\n",
           (long long)sizes[0], (long long)sizes[1], (long long)sizes[2], rounds, trials[0], trials[1], trials[2],
           quick ? "quick" : "full", loadavg());
    const char *env_core = getenv("OPENBLAS_CORETYPE");
    printf("OPENBLAS_CORETYPE=%s (%s)\n", env_core ? env_core : "", core_how);
    printf("tide: %d worker(s) on %s; OpenBLAS core %s, one thread per call\n", workers, desc, openblas_get_corename());
    char dir[PATH_MAX];
    exe_dir(dir, sizeof dir);
    snprintf(peer_path, sizeof peer_path, "%s/peer_cblas_gemm", dir);
    peer_usable = access(peer_path, X_OK) == 0;
    if (!peer_usable) printf("peer_cblas_gemm not found next to bench_gemm; skipping its ratios\n");
    fflush(stdout);

    double t_start = bench_now_us();
    for (long r = 0; r < rounds; r++) {
        int before[NSIDES][NSIZES];
        memcpy(before, nsamples, sizeof before);
        tide_round(trials, warmup);
        peer_round(trials, warmup, workers);
        printf("round %ld/%ld, median ms (256 | 1024 | 2048):", r + 1, rounds);
        for (int side = 0; side < NSIDES; side++) {
            if (nsamples[side][0] == before[side][0]) continue;
            printf(" %s", side == S_TIDE ? "tide" : "cblas");
            for (int s = 0; s < NSIZES; s++)
                printf(" %.3f%s", bench_median(samples[side][s] + before[side][s], nsamples[side][s] - before[side][s]) / 1e3,
                       s < NSIZES - 1 ? " |" : ";");
        }
        printf(" (%.1f s, load %.2f)\n", (bench_now_us() - t_start) / 1e6, loadavg());
        fflush(stdout);
    }

    printf("\nOpenBLAS core: tide %s, cblas peer %s; threads: tide %d workers x 1, cblas %s\n", openblas_get_corename(),
           peer_core[0] ? peer_core : "?", workers, peer_threads[0] ? peer_threads : "?");
    if (peer_config[0]) printf("peer OpenBLAS: %s\n", peer_config);
    if (peer_core[0] && strcmp(peer_core, openblas_get_corename()))
        printf("WARNING: the two sides run different OpenBLAS cores; the ratios compare unlike kernels\n");
    for (int s = 0; s < NSIZES; s++) {
        printf("n = %lld:\n", (long long)sizes[s]);
        for (int side = 0; side < NSIDES; side++) {
            int n = nsamples[side][s];
            if (!n) continue;
            double m = med(side, s);
            printf("  %-16s min %9.3f  median %9.3f ms  %7.1f GFLOP/s (median)  (%d trials)\n", side_names[side],
                   bench_min(samples[side][s], n) / 1e3, m / 1e3, gflops(s, m), n);
        }
        if (nsamples[S_CBLAS][s])
            printf("  tide / cblas, medians: %.3f (target <= %.2f)\n", med(S_TIDE, s) / med(S_CBLAS, s), targets[s]);
    }
    printf("total time %.1f s, load average %.2f (this benchmark included)\n\n", (bench_now_us() - t_start) / 1e6,
           loadavg());

    char name[96];
    for (int s = 0; s < NSIZES; s++)
        if (nsamples[S_CBLAS][s]) {
            snprintf(name, sizeof name, "gemm.%lld.ratio_vs_cblas", (long long)sizes[s]);
            figure(name, med(S_TIDE, s) / med(S_CBLAS, s), "ratio");
        }
    for (int s = 0; s < NSIZES; s++) {
        snprintf(name, sizeof name, "gemm.%lld.gflops", (long long)sizes[s]);
        figure(name, gflops(s, med(S_TIDE, s)), "GFLOP/s");
        if (nsamples[S_CBLAS][s]) {
            snprintf(name, sizeof name, "gemm.%lld.cblas.gflops", (long long)sizes[s]);
            figure(name, gflops(s, med(S_CBLAS, s)), "GFLOP/s");
        }
    }
    return 0;
}
