/* a_plus_2b: tide's main demo, using the public API only.
 *
 * Every array op returns as soon as its work is queued; the engine runs each
 * op once its inputs are ready, so ops that do not depend on each other run
 * at the same time on the worker threads.  Part 1 computes C = A + 2*B on
 * 2048 x 2048 f32 arrays together with two independent expressions; part 2 is
 * MXNet's classic example (A = ones*2; C = A + 2; B = A + 1; D = B * C),
 * where C and B both depend on A only and can run side by side.  Both parts
 * check their results against plain C.  The whole run is recorded by the
 * profiler into a trace you can open in a browser.
 *
 * Usage: a_plus_2b [trace.json]     (default: a_plus_2b_trace.json here)
 * Exits 0 when every result is right, 1 otherwise.  Try TIDE_ENGINE=naive or
 * TIDE_CPU_WORKERS=1: the results stay the same; the trace shows the ops one
 * after another instead of side by side.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* realpath, when built outside the tree */
#endif
#include <tide/tide.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { ROWS = 2048, COLS = 2048, N = ROWS * COLS };

/* Reports a failed call with tide's message; returns 1 so callers can count. */
static int failed(const char *what)
{
    printf("%s failed: %s: %s\n", what, td_status_name(td_last_status()), td_last_error());
    return 1;
}

/* Copies x to the host (waiting for it) and compares it with want[i], or
 * with the constant want0 when want is NULL. */
static int check(const char *name, td_array *x, const float *want, float want0)
{
    float *got = malloc((size_t)td_numel(x) * sizeof *got);
    if (!got) {
        printf("out of memory\n");
        return 1;
    }
    int bad = 0;
    if (td_to_host(x, got, (size_t)td_numel(x) * sizeof *got) != TD_OK) {
        bad = failed(name);
    } else {
        for (int64_t i = 0; i < td_numel(x) && !bad; i++) {
            float w = want ? want[i] : want0;
            if (fabsf(got[i] - w) > 1e-6f * fabsf(w)) {
                printf("FAIL: %s[%lld] = %g, expected %g\n", name, (long long)i, got[i], w);
                bad = 1;
            }
        }
    }
    free(got);
    return bad;
}

/* Part 1: C = A + 2*B, with other ops that do not depend on it. */
static int a_plus_2b(void)
{
    int bad = 0;
    float *a_host = malloc(N * sizeof(float)), *b_host = malloc(N * sizeof(float));
    float *want_c = malloc(N * sizeof(float)), *want_m = malloc(N * sizeof(float));
    float *want_s = malloc(N * sizeof(float));
    if (!a_host || !b_host || !want_c || !want_m || !want_s) {
        printf("out of memory\n");
        return 1;
    }
    for (int i = 0; i < N; i++) {
        a_host[i] = (float)(i % 1000);
        b_host[i] = 0.25f * (float)(i % 7);
        want_c[i] = a_host[i] + 2.0f * b_host[i];
        want_m[i] = a_host[i] > b_host[i] ? a_host[i] : b_host[i];
        want_s[i] = b_host[i] * b_host[i] - 1.0f;
    }

    td_scope_begin(); /* every array made until td_scope_end is released there */
    int64_t shape[] = {ROWS, COLS};
    td_array *a = td_from_host(a_host, TD_F32, 2, shape, td_cpu(0)); /* copies */
    td_array *b = td_from_host(b_host, TD_F32, 2, shape, td_cpu(0));

    td_array *c = td_add(a, td_mul_scalar(b, 2.0)); /* two ops, queued: returns at once */
    td_array *m = td_maximum(a, b);                 /* independent of c: runs beside it */
    td_array *s = td_sub_scalar(td_mul(b, b), 1.0); /* likewise */
    /* A failed op gives NULL, and an op given NULL gives NULL: one check per
     * expression is enough. */
    if (!c || !m || !s) {
        bad = failed("an op");
    } else {
        printf("C = A + 2*B, %d x %d f32:\n", ROWS, COLS);
        td_print(c, stdout); /* waits for c only; large arrays are elided as numpy does */
        bad |= check("C", c, want_c, 0.0f);
        bad |= check("maximum(A, B)", m, want_m, 0.0f);
        bad |= check("B*B - 1", s, want_s, 0.0f);
        if (!bad) printf("C, maximum(A, B) and B*B - 1 match plain C\n");
    }
    td_scope_end();
    free(a_host);
    free(b_host);
    free(want_c);
    free(want_m);
    free(want_s);
    return bad;
}

/* Part 2: MXNet's example.  C and B both read A only, so they may run at
 * once; D waits for both. */
static int mxnet_example(void)
{
    int bad = 0;
    td_scope_begin();
    int64_t shape[] = {2, 3};
    td_array *A = td_mul_scalar(td_ones(TD_F32, 2, shape, td_cpu(0)), 2.0);
    td_array *C = td_add_scalar(A, 2.0);
    td_array *B = td_add_scalar(A, 1.0);
    td_array *D = td_mul(B, C);
    if (!D) {
        bad = failed("A = ones*2; C = A + 2; B = A + 1; D = B * C");
    } else {
        const char *names[] = {"A", "C", "B", "D"};
        td_array *arrays[] = {A, C, B, D};
        const float want[] = {2.0f, 4.0f, 3.0f, 12.0f};
        for (int i = 0; i < 4; i++) {
            printf("%s = ", names[i]);
            td_print(arrays[i], stdout);
            bad |= check(names[i], arrays[i], NULL, want[i]);
        }
    }
    td_scope_end();
    return bad;
}

int main(int argc, char **argv)
{
    const char *trace = argc > 1 ? argv[1] : "a_plus_2b_trace.json";
    if (td_profiler_start(trace) != TD_OK) return failed("td_profiler_start");
    printf("tide a_plus_2b: %d CPU worker(s)\n\n", td_device_workers(td_cpu(0)));

    int bad = a_plus_2b();
    printf("\nMXNet's example: A = ones*2; C = A + 2; B = A + 1; D = B * C\n");
    bad |= mxnet_example();

    if (td_profiler_stop() != TD_OK) { /* writes the trace */
        bad |= failed("td_profiler_stop");
    } else {
        char full[PATH_MAX];
        printf("\nper op, in microseconds (from the profiler):\n");
        td_profiler_summary(stdout);
        printf("\ntrace written to %s\n", realpath(trace, full) ? full : trace);
        printf("open it at https://ui.perfetto.dev (Open trace file) or in chrome://tracing (Load):\n"
               "one track per worker; arrows lead from each op to the ops that waited for it.\n"
               "or summarise it (utilisation, parallelism, critical path) and draw its timeline:\n"
               "  tide-trace %s --svg timeline.svg\n",
               realpath(trace, full) ? full : trace);
    }
    if (td_shutdown() != TD_OK) bad |= failed("td_shutdown");
    printf("\na_plus_2b: %s\n", bad ? "FAILED" : "OK");
    return bad ? 1 : 0;
}
