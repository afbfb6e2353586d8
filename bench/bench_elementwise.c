/* bench_elementwise: tide's c = td_add(a, td_mul_scalar(b, 2)) on f32 against
 * the fused C loop, numpy and torch.
 *
 * BENCHMARKS.md, "Elementwise": f32 arrays of 1M (2^20) and 64M (2^26)
 * elements (64M arrays are far larger than the 260 MiB L3, so that size is
 * bound by DRAM; 1M runs from the caches), warm pool, default workers.
 *
 * The run is a series of rounds.  Each round runs, one after the other:
 *   1. tide, threaded engine (td_config_default, in this process).  Per
 *      size: a = full(1.5), b = full(0.25); a warm-up; then trials, each one
 *        c = td_add(a, td_mul_scalar(b, 2))   inside td_scope_begin/end,
 *      timed from just before the first push to the return of
 *      td_array_wait(c) (the scope ends after the clock stops and gives c and
 *      the temporary back to the pool, so the next trial reuses them: warm
 *      pool, no page faults), alternating with a trial of td_add(a, b) alone
 *      (one pass, for comparison with the fused loop's bytes).  tide is shut
 *      down (workers joined) before the peers run.
 *   2. peer_c_loop_elementwise, a child process: the plain loop
 *      c[i] = a[i] + 2*b[i] split over OpenMP threads, as many as tide's
 *      workers.
 *   3. peer_numpy_elementwise.py under python3: numpy's `A + 2*B`.
 *   4. peer_torch_elementwise.py under python3: torch's `A + 2*B` and
 *      `torch.add(A, B, alpha=2, out=C)`, torch.set_num_threads(workers).
 * Each peer allocates its arrays once per size, warms up, then prints one
 * `trial <case> <elements> <us>` line per timed trial.  Each size runs its
 * warm-up and trials before the next size, on every side, so 1M runs from a
 * warm cache.  Min and median are over every trial of every round; ratios
 * are of medians, tide / peer.
 *
 * Bandwidth counts the bytes each side really moves per element (f32):
 *   tide, two passes:  t = 2*b reads b, writes t (8); c = a + t reads a and
 *                      t, writes c (12): 20 bytes; fused (td_fusion_stats_get
 *                      says every timed expression was): 12 bytes
 *   tide add alone, fused C loop, torch out=: read a, b, write c: 12 bytes
 *   numpy and torch `A + 2*B`: a temporary as tide does: 20 bytes (plus
 *                      the page faults of their fresh buffers)
 * (write-allocate traffic is not counted on any side).
 *
 * The python peers run under the first interpreter that imports their module:
 * $TIDE_BENCH_PYTHON if set, else /usr/bin/python3 (where Debian's
 * python3-numpy and python3-torch live), else python3 from PATH.  A peer that
 * is missing, fails or prints no trials is reported and its ratios skipped.
 * In the last round tide also runs a few untimed iterations with the profiler
 * on and prints its per-op summary (how the time splits between the two ops).
 *
 * Usage: bench_elementwise [--quick] [--rounds N] [--trials-1m N] [--trials-64m N]
 * Human-readable lines first, then `figure <name> <value> <unit>` lines.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tide/tide.h>

#include "timing.h"

enum { NSIZES = 2, MAX_ROUNDS = 50, MAX_SAMPLES = 4096 };
static const int64_t sizes[NSIZES] = {INT64_C(1) << 20, INT64_C(1) << 26};
static const char *const size_names[NSIZES] = {"1m", "64m"};

/* The sides measured.  key: the figure-name part ("" for tide itself). */
enum { S_TIDE, S_TIDE_ADD, S_LOOP, S_NUMPY, S_TORCH_EXPR, S_TORCH_OUT, NSIDES };
typedef struct {
    const char *label;
    const char *key;
    double bytes; /* per element */
} side_info;
static side_info sides[NSIDES] = {
    [S_TIDE] = {"tide td_add(a, td_mul_scalar(b, 2))", "", 20.0},
    [S_TIDE_ADD] = {"tide td_add(a, b) alone", "add_only", 12.0},
    [S_LOOP] = {"fused C loop a[i] + 2*b[i]", "c_loop", 12.0},
    [S_NUMPY] = {"numpy A + 2*B", "numpy_expr", 20.0},
    [S_TORCH_EXPR] = {"torch A + 2*B", "torch_expr", 20.0},
    [S_TORCH_OUT] = {"torch.add(A, B, alpha=2, out=C)", "torch_out", 12.0},
};

static double samples[NSIDES][NSIZES][MAX_SAMPLES]; /* us */
static int nsamples[NSIDES][NSIZES];

static void add_sample(int side, int size, double us) {
    if (nsamples[side][size] < MAX_SAMPLES) samples[side][size][nsamples[side][size]++] = us;
}

static void die(const char *what, td_status st) {
    fprintf(stderr, "bench_elementwise: %s failed: %s (%s)\n", what, td_strerror(st), td_last_error());
    exit(1);
}

/* The 1-minute load average, to judge how noisy the run was (-1: unknown). */
static double loadavg(void) {
    double l = -1.0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1.0;
        fclose(f);
    }
    return l;
}

/* ---- tide ---- */

/* One trial of c = a + 2*b; returns us.  The scope gives c and the
 * temporary back (to the pool) after the clock stops. */
static double tide_expr(td_array *a, td_array *b) {
    td_scope_begin();
    double t0 = bench_now_us();
    td_array *c = td_add(a, td_mul_scalar(b, 2.0));
    td_status st = c ? td_array_wait(c) : td_last_status();
    double t1 = bench_now_us();
    td_scope_end();
    if (st != TD_OK) die("td_add(a, td_mul_scalar(b, 2))", st);
    return t1 - t0;
}

/* One trial of c = a + b (one pass); returns us. */
static double tide_add(td_array *a, td_array *b) {
    td_scope_begin();
    double t0 = bench_now_us();
    td_array *c = td_add(a, b);
    td_status st = c ? td_array_wait(c) : td_last_status();
    double t1 = bench_now_us();
    td_scope_end();
    if (st != TD_OK) die("td_add(a, b)", st);
    return t1 - t0;
}

/* Checks the first, middle and last elements of both results. */
static void tide_check(td_array *a, td_array *b, int64_t n) {
    td_scope_begin();
    td_array *c = td_add(a, td_mul_scalar(b, 2.0));
    td_array *d = td_add(a, b);
    if (!c || !d) die("td_add", td_last_status());
    int64_t idx[3] = {0, n / 2, n - 1};
    for (int k = 0; k < 3; k++) {
        float vc = 0.0f, vd = 0.0f;
        td_status st = td_to_host_range(c, idx[k], 1, &vc, sizeof vc);
        if (st == TD_OK) st = td_to_host_range(d, idx[k], 1, &vd, sizeof vd);
        if (st != TD_OK) die("td_to_host_range", st);
        if (vc != 2.0f || vd != 1.75f) {
            fprintf(stderr, "bench_elementwise: wrong result at %lld of %lld: a + 2b = %g (want 2), a + b = %g (want 1.75)\n",
                    (long long)idx[k], (long long)n, (double)vc, (double)vd);
            exit(1);
        }
    }
    td_scope_end();
}

/* A few untimed iterations with the profiler on; prints its summary. */
static void tide_profile(td_array *a, td_array *b, int64_t n, int iters) {
    td_status st = td_profiler_start(NULL);
    if (st != TD_OK) {
        printf("  (profiler: td_profiler_start failed: %s, %s)\n", td_strerror(st), td_last_error());
        return;
    }
    double total = 0.0;
    for (int i = 0; i < iters; i++) total += tide_expr(a, b);
    st = td_profiler_stop();
    if (st != TD_OK) {
        printf("  (profiler: td_profiler_stop failed: %s, %s)\n", td_strerror(st), td_last_error());
        return;
    }
    printf("profile, %lld elements: %d iterations of a + 2*b, %.1f us each (wall, profiler on); per op:\n",
           (long long)n, iters, total / iters);
    fflush(stdout);
    td_profiler_summary(stdout);
    fflush(stdout);
}

static void tide_round(const long trials[NSIZES], long warmup, int profile) {
    td_config cfg = td_config_default();
    cfg.engine = TD_ENGINE_THREADED;
    cfg.profile_path = NULL; /* TIDE_PROFILE would time the profiler */
    td_status st = td_init(&cfg);
    if (st != TD_OK) die("td_init", st);
    for (int s = 0; s < NSIZES; s++) {
        int64_t n = sizes[s];
        td_array *a = td_full(TD_F32, 1, &n, 1.5, td_cpu(0));
        td_array *b = td_full(TD_F32, 1, &n, 0.25, td_cpu(0));
        if (!a || !b) die("td_full", td_last_status());
        if ((st = td_array_wait(a)) != TD_OK || (st = td_array_wait(b)) != TD_OK) die("td_full", st);
        for (long w = 0; w < warmup; w++) {
            (void)tide_expr(a, b);
            (void)tide_add(a, b);
        }
        int64_t fused0 = td_fusion_stats_get().fused;
        for (long t = 0; t < trials[s]; t++) {
            add_sample(S_TIDE, s, tide_expr(a, b));
            add_sample(S_TIDE_ADD, s, tide_add(a, b));
        }
        /* Fused, the expression moves what the C loop moves (see the top). */
        int64_t fused = td_fusion_stats_get().fused - fused0;
        printf("tide: %lld of %ld expressions ran fused\n", (long long)fused, trials[s]);
        if (fused == trials[s]) sides[S_TIDE].bytes = 12.0;
        tide_check(a, b, n);
        if (profile) tide_profile(a, b, n, s == 0 ? 20 : 3);
        td_release(a);
        td_release(b);
    }
    st = td_shutdown();
    if (st != TD_OK) die("td_shutdown", st);
}

/* ---- peers: child processes printing info / trial lines ---- */

typedef struct {
    const char *label;  /* "C loop" */
    const char *file;   /* next to this executable */
    const char *module; /* python module to probe for; NULL: a native program */
    const char *cases[2];
    int case_side[2];
    char path[PATH_MAX + 64];
    char python[PATH_MAX];
    int usable;
    char version[200], threads[32];
} peer;

static peer peers[] = {
    {.label = "C loop", .file = "peer_c_loop_elementwise", .cases = {"loop"}, .case_side = {S_LOOP}},
    {.label = "numpy",
     .file = "peer_numpy_elementwise.py",
     .module = "numpy",
     .cases = {"expr"},
     .case_side = {S_NUMPY}},
    {.label = "torch",
     .file = "peer_torch_elementwise.py",
     .module = "torch",
     .cases = {"expr", "out"},
     .case_side = {S_TORCH_EXPR, S_TORCH_OUT}},
};
enum { NPEERS = sizeof peers / sizeof peers[0] };

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

/* Runs argv (PATH searched) with stdout captured into *out (malloc'd, NUL
 * terminated); stderr inherited, or /dev/null when quiet.  Returns the wait
 * status, or -1 when it could not start (why in *err) or was killed after
 * timeout_s seconds (*timed_out set). */
static int run_child(char *const argv[], int quiet, double timeout_s, char **out, int *err, int *timed_out) {
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
    if (quiet) posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    extern char **environ;
    int e = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (e != 0) {
        close(fds[0]);
        *err = e;
        return -1;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    double deadline = bench_now_us() + timeout_s * 1e6;
    for (;;) {
        double left_ms = (deadline - bench_now_us()) / 1000.0;
        if (left_ms <= 0) {
            *timed_out = 1;
            break;
        }
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        int pr = poll(&pfd, 1, left_ms > 1e6 ? 1000000 : (int)left_ms + 1);
        if (pr <= 0) continue; /* EINTR or time: the deadline check ends the loop */
        if (buf && len + 1024 > cap) {
            char *g = realloc(buf, cap * 2);
            if (!g) {
                free(buf);
                buf = NULL;
            } else {
                buf = g;
                cap *= 2;
            }
        }
        char sink[1024];
        ssize_t k = buf ? read(fds[0], buf + len, cap - len - 1) : read(fds[0], sink, sizeof sink);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        if (buf) len += (size_t)k;
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

/* Finds the peer's program (and, for a python peer, an interpreter that
 * imports its module); says why when it cannot. */
static void peer_find(peer *p, const char *dir) {
    snprintf(p->path, sizeof p->path, "%s/%s", dir, p->file);
    if (access(p->path, p->module ? R_OK : X_OK) != 0) {
        printf("%s: %s not found next to bench_elementwise; skipping its ratios\n", p->label, p->file);
        return;
    }
    if (!p->module) {
        p->usable = 1;
        return;
    }
    const char *env = getenv("TIDE_BENCH_PYTHON");
    const char *cands[3] = {"/usr/bin/python3", "python3", NULL};
    if (env && *env) cands[0] = env, cands[1] = NULL;
    char probe[64];
    snprintf(probe, sizeof probe, "import %s", p->module);
    for (int i = 0; cands[i]; i++) {
        char *argv[] = {(char *)cands[i], "-c", probe, NULL};
        char *out;
        int err, to;
        int wst = run_child(argv, 1, 120.0, &out, &err, &to);
        free(out);
        if (wst != -1 && WIFEXITED(wst) && WEXITSTATUS(wst) == 0) {
            snprintf(p->python, sizeof p->python, "%s", cands[i]);
            p->usable = 1;
            return;
        }
    }
    printf("%s: no python3 that imports %s (tried %s%s%s; Debian: apt-get install python3-%s); "
           "skipping its ratios\n",
           p->label, p->module, cands[0], cands[1] ? ", " : "", cands[1] ? cands[1] : "", p->module);
}

/* Runs one round of a peer; on failure marks it unusable (and says why). */
static void peer_round(peer *p, const long trials[NSIZES], long warmup, int workers) {
    if (!p->usable) return;
    char sizes_s[64], trials_s[64], warm_s[32], thr_s[32];
    snprintf(sizes_s, sizeof sizes_s, "%lld,%lld", (long long)sizes[0], (long long)sizes[1]);
    snprintf(trials_s, sizeof trials_s, "%ld,%ld", trials[0], trials[1]);
    snprintf(warm_s, sizeof warm_s, "%ld", warmup);
    snprintf(thr_s, sizeof thr_s, "%d", workers);
    char *argv[16];
    int k = 0;
    if (p->module) argv[k++] = p->python;
    argv[k++] = p->path;
    char *rest[] = {"--sizes", sizes_s, "--trials", trials_s, "--warmup", warm_s, "--threads", thr_s, NULL};
    for (int i = 0; rest[i]; i++) argv[k++] = rest[i];
    argv[k] = NULL;

    char *out;
    int err, timed_out;
    int wst = run_child(argv, 0, 300.0, &out, &err, &timed_out);
    if (wst == -1 || !WIFEXITED(wst) || WEXITSTATUS(wst) != 0 || !out) {
        if (timed_out) printf("%s: no answer in 300 s, killed; skipping its ratios\n", p->file);
        else if (wst == -1) printf("%s: could not start (%s); skipping its ratios\n", p->file, strerror(err));
        else if (WIFSIGNALED(wst)) printf("%s: killed by signal %d; skipping its ratios\n", p->file, WTERMSIG(wst));
        else if (WIFEXITED(wst) && WEXITSTATUS(wst) == 3)
            printf("%s: its module is missing (%.*s); skipping its ratios\n", p->file,
                   out ? (int)strcspn(out, "\n") : 0, out ? out : "");
        else printf("%s: exited with status %d; skipping its ratios\n", p->file, WIFEXITED(wst) ? WEXITSTATUS(wst) : -1);
        p->usable = 0;
        free(out);
        return;
    }
    int got[2][NSIZES] = {{0}};
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char kind[16], name[32];
        long long n;
        double us;
        if (!strncmp(line, "info version ", 13)) snprintf(p->version, sizeof p->version, "%s", line + 13);
        else if (!strncmp(line, "info threads ", 13)) snprintf(p->threads, sizeof p->threads, "%s", line + 13);
        else if (sscanf(line, "%15s %31s %lld %lf", kind, name, &n, &us) == 4 && !strcmp(kind, "trial")) {
            for (int c = 0; c < 2; c++) {
                if (!p->cases[c] || strcmp(name, p->cases[c])) continue;
                for (int s = 0; s < NSIZES; s++)
                    if (n == sizes[s]) {
                        add_sample(p->case_side[c], s, us);
                        got[c][s]++;
                    }
            }
        }
    }
    free(out);
    for (int c = 0; c < 2; c++)
        for (int s = 0; s < NSIZES; s++)
            if (p->cases[c] && got[c][s] == 0) {
                printf("%s: printed no '%s' trial at %s; skipping its ratios\n", p->file, p->cases[c], size_names[s]);
                p->usable = 0;
            }
}

/* ---- output ---- */

static int have(int side, int s) { return nsamples[side][s] > 0; }
static double med(int side, int s) { return bench_median(samples[side][s], nsamples[side][s]); }

static void print_side(int side, int s) {
    if (!have(side, s)) return;
    const double *v = samples[side][s];
    int n = nsamples[side][s];
    double m = bench_median(v, n);
    printf("  %-38s min %9.3f  median %9.3f ms  %6.1f GB/s  (%2.0f B/element, %d trials)\n", sides[side].label,
           bench_min(v, n) / 1e3, m / 1e3, sides[side].bytes * (double)sizes[s] / (m * 1e3), sides[side].bytes, n);
}

static void figure(const char *name, double value, const char *unit) {
    printf("figure %s %.4g %s\n", name, value, unit);
}

int main(int argc, char **argv) {
    int quick = 0;
    long rounds = 0, trials[NSIZES] = {0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quick")) quick = 1;
        else if (!strcmp(a, "--rounds")) rounds = bench_parse_count(argv[0], a, v), i++;
        else if (!strcmp(a, "--trials-1m")) trials[0] = bench_parse_count(argv[0], a, v), i++;
        else if (!strcmp(a, "--trials-64m")) trials[1] = bench_parse_count(argv[0], a, v), i++;
        else {
            fprintf(stderr,
                    "usage: %s [--quick] [--rounds N] [--trials-1m N] [--trials-64m N]\n"
                    "  --quick          2 rounds of 10 / 2 trials (default: 8 rounds of 30 / 5)\n"
                    "  --rounds N       rounds (each: tide, C loop, numpy, torch, one after the other)\n"
                    "  --trials-1m N    timed trials per round and side at 1M elements\n"
                    "  --trials-64m N   the same at 64M elements\n",
                    argv[0]);
            return 2;
        }
    }
    if (!rounds) rounds = quick ? 2 : 8;
    if (!trials[0]) trials[0] = quick ? 10 : 30;
    if (!trials[1]) trials[1] = quick ? 2 : 5;
    if (rounds > MAX_ROUNDS) rounds = MAX_ROUNDS;
    const long warmup = 2;

    /* The worker count the default config gives (does not start tide); the
     * peers get as many threads.  Set before any thread exists. */
    int workers = td_device_workers(td_cpu(0));
    if (workers < 1) workers = 1;
    char wbuf[32];
    snprintf(wbuf, sizeof wbuf, "%d", workers);
    setenv("OMP_NUM_THREADS", wbuf, 1);

    char desc[256] = "";
    td_device_describe(td_cpu(0), desc, sizeof desc);
    printf("bench_elementwise: c = a + 2*b, f32, %lld and %lld elements; %ld rounds of %ld / %ld trials, %s; "
           "load average %.2f\n",
           (long long)sizes[0], (long long)sizes[1], rounds, trials[0], trials[1], quick ? "quick" : "full",
           loadavg());
    printf("tide: %d worker(s) on %s (td_device_workers(td_cpu(0)))\n", workers, desc);
    char dir[PATH_MAX];
    exe_dir(dir, sizeof dir);
    for (int k = 0; k < NPEERS; k++) peer_find(&peers[k], dir);
    for (int k = 0; k < NPEERS; k++)
        if (peers[k].usable && peers[k].module) printf("%s: %s %s\n", peers[k].label, peers[k].python, peers[k].path);
    fflush(stdout);

    double t_start = bench_now_us();
    for (long r = 0; r < rounds; r++) {
        int before[NSIDES][NSIZES];
        memcpy(before, nsamples, sizeof before);
        tide_round(trials, warmup, r == rounds - 1);
        for (int k = 0; k < NPEERS; k++) peer_round(&peers[k], trials, warmup, workers);

        printf("round %ld/%ld, median ms (1m | 64m):", r + 1, rounds);
        for (int side = 0; side < NSIDES; side++) {
            if (nsamples[side][0] == before[side][0]) continue;
            printf(" %s %.3f | %.1f;", sides[side].key[0] ? sides[side].key : "tide",
                   bench_median(samples[side][0] + before[side][0], nsamples[side][0] - before[side][0]) / 1e3,
                   bench_median(samples[side][1] + before[side][1], nsamples[side][1] - before[side][1]) / 1e3);
        }
        printf(" (%.1f s, load %.2f)\n", (bench_now_us() - t_start) / 1e6, loadavg());
        fflush(stdout);
    }

    printf("\nthreads: tide %d workers", workers);
    for (int k = 0; k < NPEERS; k++)
        if (peers[k].version[0]) printf(", %s %s", peers[k].label, peers[k].threads[0] ? peers[k].threads : "?");
    printf("\n");
    for (int k = 0; k < NPEERS; k++)
        if (peers[k].version[0]) printf("%s: %s\n", peers[k].label, peers[k].version);
    for (int s = 0; s < NSIZES; s++) {
        printf("%s (%lld f32 elements, %.0f MiB per array):\n", size_names[s], (long long)sizes[s],
               (double)sizes[s] * 4.0 / (1 << 20));
        for (int side = 0; side < NSIDES; side++) print_side(side, s);
        printf("  tide / peer, medians:");
        for (int side = S_LOOP; side < NSIDES; side++)
            if (have(side, s)) printf(" %s %.3f;", sides[side].key, med(S_TIDE, s) / med(side, s));
        if (have(S_LOOP, s))
            printf(" add alone / C loop %.3f", med(S_TIDE_ADD, s) / med(S_LOOP, s));
        printf("\n");
    }
    printf("total time %.1f s, load average %.2f (this benchmark included)\n\n", (bench_now_us() - t_start) / 1e6,
           loadavg());

    /* The fixed figures first, then the extra ones. */
    char name[96];
    for (int s = 0; s < NSIZES; s++)
        if (have(S_LOOP, s)) {
            snprintf(name, sizeof name, "elementwise.%s.ratio_vs_c_loop", size_names[s]);
            figure(name, med(S_TIDE, s) / med(S_LOOP, s), "ratio");
        }
    const int fixed_64m[] = {S_NUMPY, S_TORCH_EXPR, S_TORCH_OUT};
    for (int i = 0; i < 3; i++)
        if (have(fixed_64m[i], 1)) {
            snprintf(name, sizeof name, "elementwise.64m.ratio_vs_%s", sides[fixed_64m[i]].key);
            figure(name, med(S_TIDE, 1) / med(fixed_64m[i], 1), "ratio");
        }
    for (int s = 0; s < NSIZES; s++) {
        snprintf(name, sizeof name, "elementwise.%s.us", size_names[s]);
        figure(name, med(S_TIDE, s), "us");
    }
    for (int i = 0; i < 3; i++)
        if (have(fixed_64m[i], 0)) {
            snprintf(name, sizeof name, "elementwise.1m.ratio_vs_%s", sides[fixed_64m[i]].key);
            figure(name, med(S_TIDE, 0) / med(fixed_64m[i], 0), "ratio");
        }
    for (int s = 0; s < NSIZES; s++)
        if (have(S_LOOP, s)) {
            snprintf(name, sizeof name, "elementwise.%s.add_only.ratio_vs_c_loop", size_names[s]);
            figure(name, med(S_TIDE_ADD, s) / med(S_LOOP, s), "ratio");
        }
    for (int s = 0; s < NSIZES; s++)
        for (int side = S_TIDE_ADD; side < NSIDES; side++)
            if (have(side, s)) {
                snprintf(name, sizeof name, "elementwise.%s.%s.us", size_names[s], sides[side].key);
                figure(name, med(side, s), "us");
            }
    for (int side = S_TIDE; side <= S_LOOP; side++)
        if (have(side, 1)) {
            snprintf(name, sizeof name, "elementwise.64m%s%s.gbps", sides[side].key[0] ? "." : "", sides[side].key);
            figure(name, sides[side].bytes * (double)sizes[1] / (med(side, 1) * 1e3), "GB/s");
        }
    return 0;
}
