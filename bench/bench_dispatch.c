/* bench_dispatch: what one small op costs, against libtorch.
 *
 * Shape (BENCHMARKS.md, "Dispatch"): a chain of N = 100k dependent
 * `a = td_add(a, b)` on 1-element f32 arrays, each result replacing a (the
 * old one released), timed from the first push to td_to_host of the last
 * result, per op; on the threaded and on the naive engine.  Push cost: the
 * time spent pushing alone (threaded), per op.
 *
 * Peer: peer_libtorch_dispatch, libtorch's C++ `a = at::add(a, b)` chain of
 * the same length, in its own process, alternating with tide's rounds.
 * Ratios are of medians, tide / libtorch: below 1 means tide is faster.
 *
 * Usage: bench_dispatch [--quick] [--ops N] [--rounds N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <tide/tide.h>

#include "timing.h"

enum { MAX_ROUNDS = 64 };

static double chain(int engine, long n, double *push_us) {
    td_config cfg = td_config_default();
    cfg.engine = engine;
    cfg.profile_path = NULL;
    if (td_init(&cfg) != TD_OK) {
        fprintf(stderr, "bench_dispatch: td_init: %s\n", td_last_error());
        exit(1);
    }
    int64_t one = 1;
    td_array *b = td_ones(TD_F32, 1, &one, td_cpu(0));
    double best = 1e30;
    for (int warm = 0; warm < 2; warm++) { /* the second pass is timed, on a warm pool */
        td_array *a = td_zeros(TD_F32, 1, &one, td_cpu(0));
        td_wait_all();
        double t0 = bench_now_us();
        for (long i = 0; i < n; i++) {
            td_array *c = td_add(a, b);
            td_release(a);
            a = c;
        }
        double t1 = bench_now_us();
        float v = 0;
        if (!a || td_to_host(a, &v, sizeof v) != TD_OK || v != (float)n) {
            fprintf(stderr, "bench_dispatch: wrong result %g (%s)\n", v, td_last_error());
            exit(1);
        }
        double t2 = bench_now_us();
        td_release(a);
        best = (t2 - t0) / (double)n;
        if (push_us) *push_us = (t1 - t0) / (double)n;
    }
    td_release(b);
    td_shutdown();
    return best;
}

/* Runs the peer once: `trials` trial lines, whose median is returned; <0 on failure. */
static double run_peer(const char *path, long n, int trials) {
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "'%s' %ld %d", path, n, trials);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    double v[MAX_ROUNDS];
    int k = 0;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (k < MAX_ROUNDS && sscanf(line, "trial %lf", &v[k]) == 1) k++;
    int rc = pclose(f);
    if (rc != 0 || k == 0) return -1;
    return bench_median(v, k);
}

int main(int argc, char **argv) {
    long n = 100000;
    int rounds = 7;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) n = 30000, rounds = 3;
        else if (strcmp(argv[i], "--ops") == 0 && i + 1 < argc) n = bench_parse_count(argv[0], "--ops", argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = (int)bench_parse_count(argv[0], "--rounds", argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--quick] [--ops N] [--rounds N]\n", argv[0]);
            return 2;
        }
    }
    if (rounds > MAX_ROUNDS) rounds = MAX_ROUNDS;
    char self[4096], peer[4200];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    self[len > 0 ? len : 0] = '\0';
    char *slash = strrchr(self, '/');
    if (slash) *slash = '\0';
    snprintf(peer, sizeof peer, "%s/peer_libtorch_dispatch", self);
    int have_peer = access(peer, X_OK) == 0;

    printf("bench_dispatch: chain of %ld dependent td_add on 1-element f32 arrays, %d rounds, %d workers\n", n,
           rounds, td_device_workers(td_cpu(0)));
    if (!have_peer) printf("peer_libtorch_dispatch not built (libtorch-dev missing): no ratios\n");
    double thr[MAX_ROUNDS], nai[MAX_ROUNDS], push[MAX_ROUNDS], tor[MAX_ROUNDS];
    int ntor = 0;
    for (int r = 0; r < rounds; r++) {
        thr[r] = chain(TD_ENGINE_THREADED, n, &push[r]);
        nai[r] = chain(TD_ENGINE_NAIVE, n, NULL);
        if (have_peer) {
            double t = run_peer(peer, n, 1);
            if (t > 0) tor[ntor++] = t;
            else printf("round %d: the libtorch peer failed\n", r);
        }
        printf("round %d: threaded %.3f us/op (push %.3f), naive %.3f us/op%s", r, thr[r], push[r], nai[r],
               have_peer && ntor ? "" : "\n");
        if (have_peer && ntor) printf(", libtorch %.3f us/op\n", tor[ntor - 1]);
    }
    double mt = bench_median(thr, rounds), mn = bench_median(nai, rounds), mp = bench_median(push, rounds);
    printf("tide threaded: min %.3f median %.3f us/op; push alone median %.3f us/op\n", bench_min(thr, rounds), mt, mp);
    printf("tide naive:    min %.3f median %.3f us/op\n", bench_min(nai, rounds), mn);
    if (ntor) printf("libtorch:      min %.3f median %.3f us/op\n", bench_min(tor, ntor), bench_median(tor, ntor));
    printf("\n");
    printf("figure dispatch.threaded.us_per_op %.4g us\n", mt);
    printf("figure dispatch.naive.us_per_op %.4g us\n", mn);
    printf("figure dispatch.push.us %.4g us\n", mp);
    if (ntor) {
        double ml = bench_median(tor, ntor);
        printf("figure dispatch.libtorch.us_per_op %.4g us\n", ml);
        printf("figure dispatch.threaded.ratio_vs_libtorch %.4g ratio\n", mt / ml);
        printf("figure dispatch.naive.ratio_vs_libtorch %.4g ratio\n", mn / ml);
    }
    return 0;
}
