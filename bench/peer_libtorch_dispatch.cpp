// peer_libtorch_dispatch: libtorch's C++ API on the dispatch shape: a chain
// of N dependent `a = at::add(a, b)` on 1-element float tensors, timed from
// the first add to reading the result, per op.  Prints one line per trial:
//   trial <us_per_op>
// Usage: peer_libtorch_dispatch N TRIALS
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>

int main(int argc, char **argv) {
    long n = argc > 1 ? std::atol(argv[1]) : 100000;
    int trials = argc > 2 ? std::atoi(argv[2]) : 5;
    at::set_num_threads(1);
    at::Tensor b = at::ones({1}, at::kFloat);
    for (int t = -1; t < trials; t++) { // trial -1 warms up
        at::Tensor a = at::zeros({1}, at::kFloat);
        auto t0 = std::chrono::steady_clock::now();
        for (long i = 0; i < n; i++) a = at::add(a, b);
        float v = a.item<float>();
        auto t1 = std::chrono::steady_clock::now();
        if (v != (float)n) {
            std::fprintf(stderr, "peer_libtorch_dispatch: wrong result %g\n", v);
            return 1;
        }
        double us = std::chrono::duration<double, std::micro>(t1 - t0).count() / (double)n;
        if (t >= 0) std::printf("trial %.6f\n", us);
        std::fflush(stdout);
    }
    return 0;
}
