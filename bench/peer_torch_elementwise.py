#!/usr/bin/env python3
"""peer_torch_elementwise: torch's `A + 2*B` and `torch.add(A, B, alpha=2,
out=C)` on float32 CPU tensors, for bench_elementwise (which runs it as a
child process, one per trial round, with the python3 that can import torch).

  expr: `A + 2*B` as a user writes it: a temporary for `2*B` and a fresh
        result, both allocated inside the timed part (torch's CPU allocator
        gives large blocks back to the system, so fresh buffers page-fault);
        the result is dropped after the clock stops.
  out:  `torch.add(A, B, alpha=2, out=C)` into a C allocated once: one fused
        pass, no allocation.
torch.set_num_threads(--threads) before anything runs (bench_elementwise
passes tide's worker count).  Each size runs a warm-up of both forms, then
its trials, the two forms alternating.

Usage: peer_torch_elementwise.py --sizes N[,N...] --trials N[,N...]
                                 [--warmup N] [--threads N]
Output (stdout, one line each):
  info version torch <version>
  info threads <torch.get_num_threads()>
  trial expr <elements> <us>       (one per timed trial)
  trial out <elements> <us>
Exits 3 when torch cannot be imported, 1 when a result is wrong.
"""
import argparse
import sys
import time

try:
    import torch
except ImportError as e:
    print("info missing torch (%s)" % e)
    sys.exit(3)


def counts(s):
    v = [int(x) for x in s.split(",")]
    if not v or min(v) <= 0:
        raise argparse.ArgumentTypeError("positive integers, comma-separated")
    return v


def check(R, n, what):
    if R.dtype != torch.float32 or R[0].item() != 2.0 or R[n // 2].item() != 2.0 or R[-1].item() != 2.0:
        print("peer_torch_elementwise: wrong %s result (%s %r)" % (what, R.dtype, R[0].item()), file=sys.stderr)
        return False
    return True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=counts, required=True)
    p.add_argument("--trials", type=counts, required=True)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    trials = a.trials if len(a.trials) == len(a.sizes) else [a.trials[0]] * len(a.sizes)

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    print("info version torch %s" % torch.__version__)
    print("info threads %d" % torch.get_num_threads())
    sys.stdout.flush()

    for n, nt in zip(a.sizes, trials):
        A = torch.full((n,), 1.5, dtype=torch.float32)
        B = torch.full((n,), 0.25, dtype=torch.float32)
        C = torch.empty((n,), dtype=torch.float32)
        for _ in range(a.warmup):
            R = A + 2 * B
            del R
            torch.add(A, B, alpha=2, out=C)
        for _ in range(nt):
            t0 = time.perf_counter_ns()
            R = A + 2 * B
            t1 = time.perf_counter_ns()
            if not check(R, n, "expr"):
                return 1
            del R
            print("trial expr %d %.3f" % (n, (t1 - t0) / 1e3))
            t0 = time.perf_counter_ns()
            torch.add(A, B, alpha=2, out=C)
            t1 = time.perf_counter_ns()
            if not check(C, n, "out"):
                return 1
            print("trial out %d %.3f" % (n, (t1 - t0) / 1e3))
            sys.stdout.flush()
        del A, B, C
    return 0


if __name__ == "__main__":
    sys.exit(main())
