#!/usr/bin/env python3
"""peer_numpy_elementwise: numpy's `A + 2*B` on float32, for bench_elementwise
(which runs it as a child process, one per trial round, with the python3 that
can import numpy).

The expression is timed as a user writes it: `2*B` makes a temporary, `A + T`
a fresh result (numpy allocates both, and frees the temporary, inside the
timed part); the result is dropped after the clock stops.  numpy runs it on
one thread.  Each size runs its warm-up, then its trials.

Usage: peer_numpy_elementwise.py --sizes N[,N...] --trials N[,N...]
                                 [--warmup N] [--threads N]
  (--threads is accepted for a uniform command line and ignored: numpy's
  elementwise loops are single-threaded)
Output (stdout, one line each):
  info version numpy <version>
  info threads 1
  trial expr <elements> <us>       (one per timed trial)
Exits 3 when numpy cannot be imported, 1 when a result is wrong.
"""
import argparse
import sys
import time

try:
    import numpy as np
except ImportError as e:
    print("info missing numpy (%s)" % e)
    sys.exit(3)


def counts(s):
    v = [int(x) for x in s.split(",")]
    if not v or min(v) <= 0:
        raise argparse.ArgumentTypeError("positive integers, comma-separated")
    return v


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", type=counts, required=True)
    p.add_argument("--trials", type=counts, required=True)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    trials = a.trials if len(a.trials) == len(a.sizes) else [a.trials[0]] * len(a.sizes)

    print("info version numpy %s" % np.__version__)
    print("info threads 1")
    sys.stdout.flush()

    for n, nt in zip(a.sizes, trials):
        A = np.full(n, 1.5, dtype=np.float32)
        B = np.full(n, 0.25, dtype=np.float32)
        for _ in range(a.warmup):
            R = A + 2 * B
            del R
        for _ in range(nt):
            t0 = time.perf_counter_ns()
            R = A + 2 * B
            t1 = time.perf_counter_ns()
            if R.dtype != np.float32 or R[0] != 2.0 or R[n // 2] != 2.0 or R[-1] != 2.0:
                print("peer_numpy_elementwise: wrong result (%s %r)" % (R.dtype, R[0]), file=sys.stderr)
                return 1
            del R
            print("trial expr %d %.3f" % (n, (t1 - t0) / 1e3))
            sys.stdout.flush()
        del A, B
    return 0


if __name__ == "__main__":
    sys.exit(main())
