/* bench_engine: the tide engine against StarPU and OpenMP tasks.
 *
 * Shapes (BENCHMARKS.md, "Engine"): N no-op ops pushed from the main thread
 * with the default workers,
 *   independent: read-write var i mod 1000
 *   chain:       read-write one var
 *   fanout:      read one shared var, read-write var i mod 1000
 * timed from the first push to the end of td_wait_all, per op.
 *
 * The run is a series of rounds.  Each round runs, one after the other:
 *   1. tide, threaded engine (td_config_default, in this process): one trial
 *      of each shape, the two-chains run and, when tide has a profiler, a
 *      pair of independent trials, one with the profiler on and one with it
 *      off (in turn the first of the pair);
 *   2. tide, naive engine (TD_ENGINE_NAIVE): one trial of each shape and the
 *      two-chains run;
 *   3. peer_starpu_engine, a child process: warm-up, then one trial of each;
 *   4. peer_openmp_engine, a child process: likewise.
 * tide is shut down (workers joined) while the peers run, and each peer runs
 * in its own process, so no runtime's threads disturb another's.  Min and
 * median are over the rounds; ratios are of medians, tide / peer.
 *
 * Other figures:
 *   engine.push.us: time spent in td_push on the calling thread, per op: in
 *     each threaded independent trial, (return of the last td_push - first
 *     push) / N, the workers running the ops meanwhile; median of trials.
 *   engine.context_switches_per_op: getrusage(RUSAGE_SELF) ru_nvcsw +
 *     ru_nivcsw (every thread of this process), summed over the timed
 *     threaded trials of the three shapes, divided by their ops.
 *   engine.two_chains.ratio_vs_naive: two independent chains of CPU-bound
 *     ~1 ms ops (a calibrated xorshift loop), pushed alternately; threaded
 *     time / naive time (ideal on 2 workers: 0.5).
 *   engine.profiler_on.ratio_vs_off: independent shape, threaded, with
 *     td_profiler_start(path) before the timed part and td_profiler_stop()
 *     after it (the dump is not timed) / the same with the profiler off, in
 *     the trial next to it: median of the on trials / median of those off
 *     trials.  The pairs run at the same point of each round, so both sides
 *     see the same machine state (the round's other trials run right after
 *     warm-up, these after the two-chains run).  Measured only when tide has
 *     td_profiler_start.
 *
 * Usage: bench_engine [--quick] [--ops N] [--trials N] [--chain-ops N]
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
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <tide/tide.h>

#include "timing.h"

/* ---- the profiler, when tide has one ----
 * With <tide/profiler.h> present the calls are direct; without it, weak
 * references stay NULL unless something in the link defines them. */
#if defined(__has_include)
#if __has_include(<tide/profiler.h>)
#include <tide/profiler.h>
#define BENCH_HAVE_PROFILER_H 1
#endif
#endif
#ifndef BENCH_HAVE_PROFILER_H
td_status td_profiler_start(const char *trace_path) __attribute__((weak));
td_status td_profiler_stop(void) __attribute__((weak));
#endif

static int profiler_available(void) {
#ifdef BENCH_HAVE_PROFILER_H
    return 1;
#else
    return td_profiler_start != NULL && td_profiler_stop != NULL;
#endif
}

#define MAX_ROUNDS 100

static void die(const char *what, td_status st) {
    fprintf(stderr, "bench_engine: %s failed: %s (%s)\n", what, td_strerror(st), td_last_error());
    exit(1);
}

/* ---- tide ops ---- */
static td_status noop(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    return TD_OK;
}

typedef struct {
    uint64_t x;
    uint64_t iters;
    char pad[48]; /* the two chains' states on their own cache lines */
} spin_state;

__attribute__((noinline)) static uint64_t spin(uint64_t x, uint64_t iters) {
    for (uint64_t i = 0; i < iters; i++) { /* xorshift64: no closed form */
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

static td_status spin_op(void *arg, const td_exec *ex) {
    (void)ex;
    spin_state *s = arg;
    s->x = spin(s->x, s->iters);
    return TD_OK;
}

/* Iterations of spin() per millisecond: best of a few runs. */
static uint64_t calibrate_spin(void) {
    const uint64_t probe = 1u << 21;
    double best = 0.0;
    uint64_t x = 88172645463325252ull;
    for (int r = 0; r < 7; r++) {
        double t0 = bench_now_us();
        x = spin(x, probe);
        double dt = bench_now_us() - t0;
        double rate = (double)probe / (dt / 1000.0);
        if (rate > best) best = rate;
    }
    if (x == 42) fprintf(stderr, "(unlikely)\n"); /* keeps x alive */
    return (uint64_t)best;
}

typedef struct {
    td_var *vars[NVARS + 1]; /* [NVARS] is the shared one */
} var_set;

static void vars_new(var_set *vs) {
    for (int i = 0; i <= NVARS; i++) {
        vs->vars[i] = td_var_new();
        if (!vs->vars[i]) die("td_var_new", td_last_status());
    }
}

static void vars_free(var_set *vs) {
    for (int i = 0; i <= NVARS; i++) td_var_free(vs->vars[i]);
}

/* One trial of a shape: returns us per op; *push_us gets the push phase per op. */
static double run_shape(const var_set *vs, int shape, long n, double *push_us) {
    td_op op;
    memset(&op, 0, sizeof op);
    op.name = "noop";
    op.device = td_cpu(0);
    op.fn = noop;
    td_var *w, *r = vs->vars[NVARS];
    op.writes = &w;
    op.n_writes = 1;
    if (shape == SHAPE_FANOUT) {
        op.reads = &r;
        op.n_reads = 1;
    }
    double t0 = bench_now_us();
    for (long i = 0; i < n; i++) {
        w = shape == SHAPE_CHAIN ? vs->vars[0] : vs->vars[i % NVARS];
        td_status st = td_push(&op);
        if (st != TD_OK) die("td_push", st);
    }
    double t1 = bench_now_us();
    td_status st = td_wait_all();
    double t2 = bench_now_us();
    if (st != TD_OK) die("td_wait_all", st);
    if (push_us) *push_us = (t1 - t0) / (double)n;
    return (t2 - t0) / (double)n;
}

/* Two chains of len spin ops each, pushed alternately; returns ms. */
static double run_two_chains(const var_set *vs, int len, uint64_t iters) {
    static spin_state state[2];
    td_var *w;
    td_op op;
    memset(&op, 0, sizeof op);
    op.name = "spin";
    op.device = td_cpu(0);
    op.fn = spin_op;
    op.writes = &w;
    op.n_writes = 1;
    for (int c = 0; c < 2; c++) {
        state[c].x = 0x9E3779B97F4A7C15ull + (uint64_t)c;
        state[c].iters = iters;
    }
    double t0 = bench_now_us();
    for (int i = 0; i < 2 * len; i++) {
        int c = i & 1;
        w = vs->vars[c];
        op.arg = &state[c];
        td_status st = td_push(&op);
        if (st != TD_OK) die("td_push", st);
    }
    td_status st = td_wait_all();
    double t1 = bench_now_us();
    if (st != TD_OK) die("td_wait_all", st);
    return (t1 - t0) / 1000.0;
}

static void start_tide(int engine) {
    td_config c = td_config_default();
    c.engine = engine;
    c.profile_path = NULL; /* TIDE_PROFILE would time the profiler everywhere */
    td_status st = td_init(&c);
    if (st != TD_OK) die("td_init", st);
}

static void stop_tide(void) {
    td_status st = td_shutdown();
    if (st != TD_OK) die("td_shutdown", st);
}

/* Context switches (voluntary, involuntary) and CPU time (us) of every thread
 * of this process so far. */
typedef struct {
    long vol, invol;
    double cpu_us;
} usage;

static usage usage_now(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    usage u = {ru.ru_nvcsw, ru.ru_nivcsw,
               (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
                   (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec)};
    return u;
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

/* ---- peers: child processes that print info / trial / result lines ---- */
typedef struct {
    const char *label; /* "StarPU" */
    const char *key;   /* "starpu", for figure names */
    const char *exe;   /* "peer_starpu_engine" */
    char path[PATH_MAX + 64];
    int present, failed;
    char version[200], workers[32], extra[200];
    double samples[NSHAPES][MAX_ROUNDS];
    int n[NSHAPES];
} peer;

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

static void copy_rest(char *dst, size_t size, const char *src) {
    snprintf(dst, size, "%s", src);
}

static void parse_peer_line(peer *p, char *line) {
    char *sp = strchr(line, ' ');
    if (!sp) return;
    *sp = '\0';
    char *rest = sp + 1;
    if (!strcmp(line, "trial")) {
        char name[32];
        double v;
        if (sscanf(rest, "%31s %lf", name, &v) != 2) return;
        for (int s = 0; s < NSHAPES; s++)
            if (!strcmp(name, shape_names[s]) && p->n[s] < MAX_ROUNDS) p->samples[s][p->n[s]++] = v;
    } else if (!strcmp(line, "info")) {
        if (!strncmp(rest, "version ", 8)) copy_rest(p->version, sizeof p->version, rest + 8);
        else if (!strncmp(rest, "workers ", 8)) copy_rest(p->workers, sizeof p->workers, rest + 8);
        else if (!p->extra[0]) copy_rest(p->extra, sizeof p->extra, rest);
    }
}

/* Runs one round of a peer; on failure marks it failed (and says why). */
static void run_peer(peer *p, long ops, int workers, long warmup, double timeout_s) {
    if (!p->present || p->failed) return;
    char ops_s[32], w_s[32], warm_s[32];
    snprintf(ops_s, sizeof ops_s, "%ld", ops);
    snprintf(w_s, sizeof w_s, "%d", workers);
    snprintf(warm_s, sizeof warm_s, "%ld", warmup);
    char *argv[] = {p->path, "--ops", ops_s, "--trials", "1", "--workers", w_s, "--warmup", warm_s, NULL};
    int fds[2];
    if (pipe(fds) != 0) {
        fprintf(stdout, "%s: pipe failed (%s); skipping it\n", p->exe, strerror(errno));
        p->failed = 1;
        return;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    pid_t pid;
    extern char **environ;
    int err = posix_spawn(&pid, p->path, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (err != 0) {
        close(fds[0]);
        printf("%s: could not start (%s); skipping its ratios\n", p->exe, strerror(err));
        p->failed = 1;
        return;
    }
    size_t cap = 4096, len = 0;
    char *out = malloc(cap);
    int timed_out = 0;
    double deadline = bench_now_us() + timeout_s * 1e6;
    for (;;) {
        double left_ms = (deadline - bench_now_us()) / 1000.0;
        if (left_ms <= 0) {
            timed_out = 1;
            break;
        }
        struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
        int pr = poll(&pfd, 1, left_ms > 1e6 ? 1000000 : (int)left_ms + 1);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) continue; /* the deadline check ends the loop */
        if (len + 1024 > cap) {
            cap *= 2;
            char *g = realloc(out, cap);
            if (!g) break;
            out = g;
        }
        ssize_t k = read(fds[0], out + len, cap - len - 1);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        len += (size_t)k;
    }
    close(fds[0]);
    if (timed_out) kill(pid, SIGKILL);
    int wst = 0;
    while (waitpid(pid, &wst, 0) < 0 && errno == EINTR) {
    }
    out[len] = '\0';
    if (timed_out || !WIFEXITED(wst) || WEXITSTATUS(wst) != 0) {
        if (timed_out) printf("%s: no answer in %.0f s, killed; skipping its ratios\n", p->exe, timeout_s);
        else if (WIFSIGNALED(wst)) printf("%s: killed by signal %d; skipping its ratios\n", p->exe, WTERMSIG(wst));
        else printf("%s: exited with status %d; skipping its ratios\n", p->exe, WEXITSTATUS(wst));
        p->failed = 1;
        free(out);
        return;
    }
    int before[NSHAPES];
    for (int s = 0; s < NSHAPES; s++) before[s] = p->n[s];
    for (char *save = NULL, *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        parse_peer_line(p, line);
    for (int s = 0; s < NSHAPES; s++)
        if (p->n[s] == before[s]) {
            printf("%s: printed no trial for %s; skipping its ratios\n", p->exe, shape_names[s]);
            p->failed = 1;
        }
    free(out);
}

/* ---- output ---- */
static void print_pair(const char *label, const double *v, int n) {
    printf("  %-22s min %9.4f  median %9.4f us/op  (%d trials)\n", label, bench_min(v, n), bench_median(v, n), n);
}

static void figure(const char *name, double value, const char *unit) {
    printf("figure %s %.4g %s\n", name, value, unit);
}

int main(int argc, char **argv) {
    int quick = 0;
    long ops = 0, rounds = 0, chain_ops = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quick")) quick = 1;
        else if (!strcmp(a, "--ops")) ops = bench_parse_count(argv[0], a, v), i++;
        else if (!strcmp(a, "--trials")) rounds = bench_parse_count(argv[0], a, v), i++;
        else if (!strcmp(a, "--chain-ops")) chain_ops = bench_parse_count(argv[0], a, v), i++;
        else {
            fprintf(stderr,
                    "usage: %s [--quick] [--ops N] [--trials N] [--chain-ops N]\n"
                    "  --quick       3 trials of 50k ops (default: 7 trials of 200k ops)\n"
                    "  --ops N       ops per trial of each shape\n"
                    "  --trials N    trial rounds (each: tide threaded, tide naive, StarPU, OpenMP)\n"
                    "  --chain-ops N ops per chain in the two-chains run (default 50, quick 25)\n",
                    argv[0]);
            return 2;
        }
    }
    if (!ops) ops = quick ? 50000 : 200000;
    if (!rounds) rounds = quick ? 3 : 7;
    if (!chain_ops) chain_ops = quick ? 25 : 50;
    if (rounds > MAX_ROUNDS) rounds = MAX_ROUNDS;
    long warmup = ops < 20000 ? ops : 20000;

    /* The worker count the default config gives (does not start tide). */
    int workers = td_device_workers(td_cpu(0));
    if (workers < 1) workers = 1;
    /* Peers get the same count; set before any thread exists. */
    char wbuf[32];
    snprintf(wbuf, sizeof wbuf, "%d", workers);
    setenv("STARPU_NCPU", wbuf, 1);
    setenv("STARPU_NCUDA", "0", 1);
    setenv("STARPU_NOPENCL", "0", 1);
    setenv("OMP_NUM_THREADS", wbuf, 1);

    char dir[PATH_MAX];
    exe_dir(dir, sizeof dir);
    static peer peers[2] = {
        {.label = "StarPU", .key = "starpu", .exe = "peer_starpu_engine"},
        {.label = "OpenMP", .key = "openmp", .exe = "peer_openmp_engine"},
    };
    for (int k = 0; k < 2; k++) {
        snprintf(peers[k].path, sizeof peers[k].path, "%s/%s", dir, peers[k].exe);
        peers[k].present = access(peers[k].path, X_OK) == 0;
        if (!peers[k].present)
            printf("%s: not built (not found next to bench_engine); skipping its ratios\n", peers[k].exe);
    }

    uint64_t iters_per_ms = calibrate_spin();
    int prof = profiler_available();
    char trace_path[PATH_MAX];
    const char *tmp = getenv("TMPDIR");
    snprintf(trace_path, sizeof trace_path, "%s/tide-bench-engine-%d.json", tmp && *tmp ? tmp : "/tmp",
             (int)getpid());

    char desc[256] = "";
    td_device_describe(td_cpu(0), desc, sizeof desc);
    printf("bench_engine: %ld ops per trial, %ld trial rounds, %s; load average %.2f\n", ops, rounds,
           quick ? "quick" : "full", loadavg());
    printf("tide: %d worker(s) on %s (td_device_workers(td_cpu(0)))\n", workers, desc);
    printf("two chains: 2 x %ld ops of ~1 ms (spin calibrated to %llu iterations per ms)\n", chain_ops,
           (unsigned long long)iters_per_ms);
    fflush(stdout);

    double thr[NSHAPES][MAX_ROUNDS], nai[NSHAPES][MAX_ROUNDS], push[NSHAPES][MAX_ROUNDS];
    double chains_thr[MAX_ROUNDS], chains_nai[MAX_ROUNDS], prof_on[MAX_ROUNDS], prof_off[MAX_ROUNDS];
    int nprof = 0, prof_failed = 0;
    long csw_vol = 0, csw_invol = 0, csw_ops = 0, csw_shape[NSHAPES] = {0};
    double chains_cpu_ms[MAX_ROUNDS];
    var_set vs;

    double t_start = bench_now_us();
    for (long r = 0; r < rounds; r++) {
        /* 1. tide, threaded */
        start_tide(TD_ENGINE_THREADED);
        int running_workers = td_device_workers(td_cpu(0));
        if (running_workers != workers)
            printf("note: tide runs %d workers, the default config said %d\n", running_workers, workers);
        vars_new(&vs);
        for (int s = 0; s < NSHAPES; s++) (void)run_shape(&vs, s, warmup, NULL);
        for (int s = 0; s < NSHAPES; s++) {
            usage u0 = usage_now();
            thr[s][r] = run_shape(&vs, s, ops, &push[s][r]);
            usage u1 = usage_now();
            csw_vol += u1.vol - u0.vol;
            csw_invol += u1.invol - u0.invol;
            csw_shape[s] += (u1.vol - u0.vol) + (u1.invol - u0.invol);
            csw_ops += ops;
        }
        usage u0 = usage_now();
        chains_thr[r] = run_two_chains(&vs, (int)chain_ops, iters_per_ms);
        chains_cpu_ms[r] = (usage_now().cpu_us - u0.cpu_us) / 1000.0;
        if (prof && !prof_failed) {
            /* The off trial of the pair: before the on trial in even rounds,
             * after it in odd ones. */
            if (r % 2 == 0) prof_off[nprof] = run_shape(&vs, SHAPE_INDEPENDENT, ops, NULL);
            td_status st = td_profiler_start(trace_path);
            if (st != TD_OK) {
                printf("td_profiler_start failed: %s (%s); profiler figure skipped\n", td_strerror(st),
                       td_last_error());
                prof_failed = 1;
            } else {
                prof_on[nprof] = run_shape(&vs, SHAPE_INDEPENDENT, ops, NULL);
                st = td_profiler_stop();
                if (st != TD_OK) {
                    printf("td_profiler_stop failed: %s (%s); profiler figure skipped\n", td_strerror(st),
                           td_last_error());
                    prof_failed = 1;
                }
                remove(trace_path);
                if (r % 2 == 1) prof_off[nprof] = run_shape(&vs, SHAPE_INDEPENDENT, ops, NULL);
                if (!prof_failed) nprof++;
            }
        }
        vars_free(&vs);
        stop_tide();

        /* 2. tide, naive */
        start_tide(TD_ENGINE_NAIVE);
        vars_new(&vs);
        for (int s = 0; s < NSHAPES; s++) (void)run_shape(&vs, s, warmup, NULL);
        for (int s = 0; s < NSHAPES; s++) nai[s][r] = run_shape(&vs, s, ops, NULL);
        chains_nai[r] = run_two_chains(&vs, (int)chain_ops, iters_per_ms);
        vars_free(&vs);
        stop_tide();

        /* 3, 4. the peers, each in its own process */
        for (int k = 0; k < 2; k++) run_peer(&peers[k], ops, workers, warmup, 120.0);

        printf("round %ld/%ld: tide threaded %.3f %.3f %.3f, naive %.3f %.3f %.3f us/op", r + 1, rounds,
               thr[0][r], thr[1][r], thr[2][r], nai[0][r], nai[1][r], nai[2][r]);
        for (int k = 0; k < 2; k++)
            if (peers[k].present && !peers[k].failed)
                printf("; %s %.3f %.3f %.3f", peers[k].label, peers[k].samples[0][peers[k].n[0] - 1],
                       peers[k].samples[1][peers[k].n[1] - 1], peers[k].samples[2][peers[k].n[2] - 1]);
        printf("; two chains %.1f / %.1f ms (%.1fs, load %.2f)\n", chains_thr[r], chains_nai[r],
               (bench_now_us() - t_start) / 1e6, loadavg());
        fflush(stdout);
    }

    int n = (int)rounds;
    printf("\nworkers: tide %d", workers);
    for (int k = 0; k < 2; k++)
        if (peers[k].present && peers[k].version[0])
            printf(", %s %s", peers[k].label, peers[k].workers[0] ? peers[k].workers : "?");
    printf("\n");
    for (int k = 0; k < 2; k++)
        if (peers[k].present && peers[k].version[0])
            printf("%s: %s (%s)\n", peers[k].label, peers[k].version, peers[k].extra[0] ? peers[k].extra : "");
    double med_thr[NSHAPES], med_nai[NSHAPES];
    for (int s = 0; s < NSHAPES; s++) {
        med_thr[s] = bench_median(thr[s], n);
        med_nai[s] = bench_median(nai[s], n);
        printf("%s (%ld ops):\n", shape_names[s], ops);
        print_pair("tide threaded", thr[s], n);
        print_pair("tide naive", nai[s], n);
        for (int k = 0; k < 2; k++) {
            peer *p = &peers[k];
            if (!p->present || p->failed) continue;
            print_pair(p->label, p->samples[s], p->n[s]);
            printf("  %-22s %.3f (threaded), %.3f (naive)\n", k == 0 ? "ratio vs StarPU" : "ratio vs OpenMP",
                   med_thr[s] / bench_median(p->samples[s], p->n[s]),
                   med_nai[s] / bench_median(p->samples[s], p->n[s]));
        }
        printf("  %-22s median %.4f us/op (td_push on the main thread, workers running)\n", "push phase",
               bench_median(push[s], n));
        printf("  %-22s %.4f per op (threaded, all trials)\n", "context switches", (double)csw_shape[s] / ((double)ops * n));
    }
    printf("context switches: %ld voluntary + %ld involuntary over %ld timed threaded ops\n", csw_vol, csw_invol,
           csw_ops);
    printf("two chains: threaded min %.1f median %.1f ms (process CPU time median %.1f ms), naive min %.1f median "
           "%.1f ms\n",
           bench_min(chains_thr, n), bench_median(chains_thr, n), bench_median(chains_cpu_ms, n),
           bench_min(chains_nai, n), bench_median(chains_nai, n));
    double prof_ratio = 0.0;
    if (prof && !prof_failed && nprof > 0) {
        printf("profiler on, independent: min %.4f median %.4f us/op (%d trials)\n", bench_min(prof_on, nprof),
               bench_median(prof_on, nprof), nprof);
        printf("profiler off, the trials paired with those: min %.4f median %.4f us/op\n", bench_min(prof_off, nprof),
               bench_median(prof_off, nprof));
        prof_ratio = bench_median(prof_on, nprof) / bench_median(prof_off, nprof);
        printf("profiler on / off: %.3f (medians of the pairs), %.3f (their mins), %.3f (on / the independent figure)\n",
               prof_ratio, bench_min(prof_on, nprof) / bench_min(prof_off, nprof),
               bench_median(prof_on, nprof) / med_thr[SHAPE_INDEPENDENT]);
    } else if (!prof) {
        printf("engine.profiler_on.ratio_vs_off: not measured yet (this tide has no td_profiler_start)\n");
    }
    printf("total time %.1f s, load average %.2f (this benchmark included)\n\n",
           (bench_now_us() - t_start) / 1e6, loadavg());

    char name[96];
    for (int s = 0; s < NSHAPES; s++) {
        snprintf(name, sizeof name, "engine.%s.us_per_op", shape_names[s]);
        figure(name, med_thr[s], "us");
    }
    for (int k = 0; k < 2; k++) {
        peer *p = &peers[k];
        if (!p->present || p->failed) continue;
        for (int s = 0; s < NSHAPES; s++) {
            snprintf(name, sizeof name, "engine.%s.ratio_vs_%s", shape_names[s], p->key);
            figure(name, med_thr[s] / bench_median(p->samples[s], p->n[s]), "ratio");
        }
    }
    figure("engine.push.us", bench_median(push[SHAPE_INDEPENDENT], n), "us");
    figure("engine.context_switches_per_op", csw_ops ? (double)(csw_vol + csw_invol) / (double)csw_ops : 0.0,
           "count");
    figure("engine.two_chains.ratio_vs_naive", bench_median(chains_thr, n) / bench_median(chains_nai, n), "ratio");
    if (prof && !prof_failed && nprof > 0) figure("engine.profiler_on.ratio_vs_off", prof_ratio, "ratio");
    for (int s = 0; s < NSHAPES; s++) {
        snprintf(name, sizeof name, "engine.%s.naive.us_per_op", shape_names[s]);
        figure(name, med_nai[s], "us");
    }
    for (int k = 0; k < 2; k++) {
        peer *p = &peers[k];
        if (!p->present || p->failed) continue;
        for (int s = 0; s < NSHAPES; s++) {
            snprintf(name, sizeof name, "engine.%s.%s.us_per_op", shape_names[s], p->key);
            figure(name, bench_median(p->samples[s], p->n[s]), "us");
        }
    }
    return 0;
}
