/* engine_dag: custom ops on the dependency engine, using the public API only.
 *
 * Part 1 pushes two independent chains of ops, A and B.  Each op reads and
 * writes its own chain's var, so the ops of one chain run one after another,
 * while nothing orders A against B: with two or more workers the chains run
 * at the same time.  Each op spins for a few milliseconds of CPU work and
 * records which worker ran it and when; a last op reads both chains' vars and
 * writes a third, so it runs after both.  The program prints the schedule and
 * how long both chains were running at once.
 *
 * Part 2 shows an error travelling to the waiter: an op fails with a message,
 * the op that reads what it wrote is skipped, and the wait on the end of that
 * chain returns the failure's status with the message in td_last_error().
 *
 * Exits 0 when every result is what running the ops in push order gives and
 * the error arrived where it should; 1 otherwise.  Try it with
 * TIDE_CPU_WORKERS=1 or TIDE_ENGINE=naive: the results stay the same and the
 * chains no longer overlap.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* clock_gettime, when built outside the tree */
#endif
#include <tide/tide.h>

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

enum { CHAIN_LEN = 5, SPIN_US = 3000 };

static double clock_ms(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Wall-clock time, for when ops start and end. */
static double now_ms(void) { return clock_ms(CLOCK_MONOTONIC); }

/* Burns `ms` milliseconds of this thread's CPU time (not wall time, so an op
 * that is preempted still does the same work). */
static uint64_t spin_cpu(double ms, uint64_t seed)
{
    volatile uint64_t sink = seed;
    double until = clock_ms(CLOCK_THREAD_CPUTIME_ID) + ms;
    while (clock_ms(CLOCK_THREAD_CPUTIME_ID) < until) {
        for (int i = 0; i < 1000; i++) sink = sink * 6364136223846793005u + 1442695040888963407u;
    }
    return sink;
}

/* ---- part 1: two chains ---- */

typedef struct {
    uint64_t value; /* the chain's data, guarded by the chain's var */
} chain_data;

typedef struct {
    char chain;       /* 'A' or 'B' */
    int step;         /* position in the chain */
    chain_data *data; /* read and written by the op */
    int worker;       /* filled in by the op */
    double start_ms;  /* filled in by the op, since t0 */
    double end_ms;
} step_record;

static double t0_ms;
static atomic_int freed_args; /* arg_free calls, checked after td_shutdown */

/* A step of a chain: burns SPIN_US microseconds of CPU time, then folds its step
 * number into the chain's value, so the final value tells whether the steps
 * ran in push order. */
static td_status chain_step(void *arg, const td_exec *ex)
{
    step_record *r = arg;
    r->worker = td_exec_worker(ex);
    r->start_ms = now_ms() - t0_ms;
    (void)spin_cpu(SPIN_US / 1000.0, r->data->value);
    r->data->value = r->data->value * 31u + (uint64_t)(r->step + 1);
    r->end_ms = now_ms() - t0_ms;
    return TD_OK;
}

typedef struct {
    const chain_data *a, *b;
    uint64_t sum;
    int worker;
} join_record;

static td_status join_chains(void *arg, const td_exec *ex)
{
    join_record *j = arg;
    j->worker = td_exec_worker(ex);
    j->sum = j->a->value + j->b->value;
    return TD_OK;
}

static void count_free(void *arg)
{
    (void)arg;
    atomic_fetch_add(&freed_args, 1);
}

static int push_op(const char *name, td_fn fn, void *arg, td_var *const *reads, size_t n_reads,
                   td_var *const *writes, size_t n_writes)
{
    td_op op = {0};
    op.name = name;
    op.device = td_cpu(0);
    op.fn = fn;
    op.arg = arg;
    op.arg_free = count_free;
    op.reads = reads;
    op.n_reads = n_reads;
    op.writes = writes;
    op.n_writes = n_writes;
    td_status st = td_push(&op);
    if (st != TD_OK) {
        printf("td_push(%s) failed: %s: %s\n", name, td_status_name(st), td_last_error());
        return 1;
    }
    return 0;
}

static uint64_t expected_chain_value(void)
{
    uint64_t v = 0;
    for (int s = 0; s < CHAIN_LEN; s++) v = v * 31u + (uint64_t)(s + 1);
    return v;
}

static double interval_overlap(double s1, double e1, double s2, double e2)
{
    double s = s1 > s2 ? s1 : s2, e = e1 < e2 ? e1 : e2;
    return e > s ? e - s : 0.0;
}

static int two_chains(int *pushed)
{
    static chain_data data_a, data_b;
    static step_record rec[2][CHAIN_LEN];
    static join_record join;
    static char names[2][CHAIN_LEN][32];
    int failed = 0;

    td_var *va = td_var_new(), *vb = td_var_new(), *vsum = td_var_new();
    if (!va || !vb || !vsum) {
        printf("td_var_new failed: %s\n", td_last_error());
        return 1;
    }

    t0_ms = now_ms();
    /* Program order interleaves the chains: A0 B0 A1 B1 ...  The engine keeps
     * each chain's order and is free to run A and B side by side. */
    for (int s = 0; s < CHAIN_LEN; s++) {
        for (int c = 0; c < 2; c++) {
            step_record *r = &rec[c][s];
            r->chain = (char)('A' + c);
            r->step = s;
            r->data = c == 0 ? &data_a : &data_b;
            r->worker = -1;
            snprintf(names[c][s], sizeof names[c][s], "chain%c.step%d", r->chain, s);
            td_var *rw[] = {c == 0 ? va : vb};
            /* The same var read and written: it counts as a write. */
            if (push_op(names[c][s], chain_step, r, rw, 1, rw, 1)) return 1;
            (*pushed)++;
        }
    }
    join.a = &data_a;
    join.b = &data_b;
    join.worker = -1;
    td_var *reads[] = {va, vb}, *writes[] = {vsum};
    if (push_op("join", join_chains, &join, reads, 2, writes, 1)) return 1;
    (*pushed)++;
    double pushed_ms = now_ms() - t0_ms;

    td_status st = td_var_wait(vsum);
    double waited_ms = now_ms() - t0_ms;
    if (st != TD_OK) {
        printf("td_var_wait(sum) failed: %s: %s\n", td_status_name(st), td_last_error());
        return 1;
    }

    printf("pushed %d ops in %.3f ms; the last finished at %.3f ms\n\n", 2 * CHAIN_LEN + 1,
           pushed_ms, waited_ms);
    printf("  %-14s %6s %10s %10s\n", "op", "worker", "start ms", "end ms");
    for (int s = 0; s < CHAIN_LEN; s++) {
        for (int c = 0; c < 2; c++) {
            const step_record *r = &rec[c][s];
            printf("  %-14s %6d %10.3f %10.3f\n", names[c][s], r->worker, r->start_ms, r->end_ms);
        }
    }
    printf("  %-14s %6d\n\n", "join", join.worker);

    /* Per-chain order: each step starts after the previous one ended. */
    for (int c = 0; c < 2; c++) {
        for (int s = 1; s < CHAIN_LEN; s++) {
            if (rec[c][s].start_ms < rec[c][s - 1].end_ms) {
                printf("FAIL: chain %c step %d started before step %d ended\n", 'A' + c, s, s - 1);
                failed = 1;
            }
        }
    }
    uint64_t want = expected_chain_value();
    if (data_a.value != want || data_b.value != want || join.sum != 2 * want) {
        printf("FAIL: values A=%llu B=%llu sum=%llu, expected %llu, %llu, %llu\n",
               (unsigned long long)data_a.value, (unsigned long long)data_b.value,
               (unsigned long long)join.sum, (unsigned long long)want,
               (unsigned long long)want, (unsigned long long)(2 * want));
        failed = 1;
    } else {
        printf("results: A=%llu B=%llu sum=%llu (same as running the ops one by one)\n",
               (unsigned long long)data_a.value, (unsigned long long)data_b.value,
               (unsigned long long)join.sum);
    }

    /* How long both chains were running at once: the steps of one chain do
     * not overlap each other, so the pairwise overlaps of A's steps with B's
     * steps add up to exactly that time. */
    double both = 0.0, busy_a = 0.0, busy_b = 0.0;
    for (int i = 0; i < CHAIN_LEN; i++) {
        busy_a += rec[0][i].end_ms - rec[0][i].start_ms;
        busy_b += rec[1][i].end_ms - rec[1][i].start_ms;
        for (int j = 0; j < CHAIN_LEN; j++)
            both += interval_overlap(rec[0][i].start_ms, rec[0][i].end_ms, rec[1][j].start_ms,
                                     rec[1][j].end_ms);
    }
    double span_a0 = rec[0][0].start_ms, span_a1 = rec[0][CHAIN_LEN - 1].end_ms;
    double span_b0 = rec[1][0].start_ms, span_b1 = rec[1][CHAIN_LEN - 1].end_ms;
    int seen[64] = {0}, distinct = 0;
    for (int c = 0; c < 2; c++)
        for (int s = 0; s < CHAIN_LEN; s++) {
            int w = rec[c][s].worker;
            if (w >= 0 && w < 64 && !seen[w]) {
                seen[w] = 1;
                distinct++;
            }
        }
    printf("chain A ran from %.3f to %.3f ms (its ops ran for %.3f ms)\n", span_a0, span_a1, busy_a);
    printf("chain B ran from %.3f to %.3f ms (its ops ran for %.3f ms)\n", span_b0, span_b1, busy_b);
    printf("distinct workers used: %d\n", distinct);
    double shorter = busy_a < busy_b ? busy_a : busy_b;
    printf("overlap: both chains were running at once for %.3f ms (%.0f%% of the shorter chain)\n",
           both, shorter > 0 ? 100.0 * both / shorter : 0.0);
    if (both <= 0.0)
        printf("         (no overlap: one worker, the naive engine, or a busy machine)\n");

    td_var_free(va);
    td_var_free(vb);
    td_var_free(vsum);
    return failed;
}

/* ---- part 2: an error travels to the waiter ---- */

typedef struct {
    double reading;
    double scaled;
    int scale_ran;
} sensor_data;

static td_status sensor_read(void *arg, const td_exec *ex)
{
    (void)ex;
    sensor_data *d = arg;
    d->reading = 21.5;
    return TD_OK;
}

static td_status sensor_check(void *arg, const td_exec *ex)
{
    sensor_data *d = arg;
    td_exec_set_error(ex, "calibration of sensor 3 failed (reading %.1f out of range)", d->reading);
    return TD_EFAILED;
}

static td_status sensor_scale(void *arg, const td_exec *ex)
{
    (void)ex;
    sensor_data *d = arg;
    d->scale_ran = 1;
    d->scaled = d->reading * 2.0;
    return TD_OK;
}

static int error_travels(int *pushed)
{
    static sensor_data d;
    int failed = 0;
    td_var *raw = td_var_new(), *checked = td_var_new(), *scaled = td_var_new();
    if (!raw || !checked || !scaled) {
        printf("td_var_new failed: %s\n", td_last_error());
        return 1;
    }
    td_var *w_raw[] = {raw}, *w_checked[] = {checked}, *w_scaled[] = {scaled};
    /* read -> raw;  check: raw -> checked (fails);  scale: checked -> scaled
     * (skipped, since what it reads carries the error). */
    if (push_op("sensor.read", sensor_read, &d, NULL, 0, w_raw, 1)) return 1;
    if (push_op("sensor.check", sensor_check, &d, w_raw, 1, w_checked, 1)) return 1;
    if (push_op("sensor.scale", sensor_scale, &d, w_checked, 1, w_scaled, 1)) return 1;
    *pushed += 3;
    printf("pushed sensor.read -> sensor.check (fails) -> sensor.scale\n");

    td_status st = td_var_wait(scaled);
    printf("td_var_wait(scaled) = %s\n", td_status_name(st));
    printf("td_last_status()    = %s\n", td_status_name(td_last_status()));
    printf("td_last_error()     = \"%s\"\n", td_last_error());
    if (st != TD_EFAILED || td_last_status() != TD_EFAILED) {
        printf("FAIL: expected TD_EFAILED from the wait\n");
        failed = 1;
    }
    if (!strstr(td_last_error(), "calibration of sensor 3 failed")) {
        printf("FAIL: the op's message did not reach the waiter\n");
        failed = 1;
    }
    if (d.scale_ran) {
        printf("FAIL: sensor.scale ran although what it reads had failed\n");
        failed = 1;
    } else {
        printf("sensor.scale was skipped: its input carries the error\n");
    }

    /* A second wait returns the same status: the mark stays on the var. */
    st = td_var_wait(scaled);
    if (st != TD_EFAILED) {
        printf("FAIL: a second wait returned %s\n", td_status_name(st));
        failed = 1;
    }
    /* What the failure did not touch is fine. */
    td_clear_error();
    st = td_var_wait(raw);
    printf("td_var_wait(raw)    = %s (reading %.1f)\n", td_status_name(st), d.reading);
    if (st != TD_OK) failed = 1;
    /* The error was reported by the waits above, so td_wait_all has nothing
     * left to report. */
    st = td_wait_all();
    printf("td_wait_all()       = %s (the error was already reported)\n", td_status_name(st));
    if (st != TD_OK) failed = 1;

    td_var_free(raw);
    td_var_free(checked);
    td_var_free(scaled);
    return failed;
}

int main(void)
{
    int failed = 0, pushed = 0;
    td_config cfg = td_config_default();
    td_status st = td_init(&cfg);
    if (st != TD_OK) {
        printf("td_init failed: %s: %s\n", td_status_name(st), td_last_error());
        return 1;
    }
    char desc[256];
    if (td_device_describe(td_cpu(0), desc, sizeof desc) != TD_OK) snprintf(desc, sizeof desc, "cpu:0");
    printf("tide engine_dag: engine %s, device %s, %d worker(s)\n\n",
           cfg.engine == TD_ENGINE_NAIVE ? "naive" : "threaded", desc,
           td_device_workers(td_cpu(0)));

    printf("== two independent chains of %d ops, ~%d ms of CPU each ==\n", CHAIN_LEN,
           SPIN_US / 1000);
    failed |= two_chains(&pushed);

    printf("\n== an error travels to the waiter ==\n");
    failed |= error_travels(&pushed);

    st = td_shutdown();
    if (st != TD_OK) {
        printf("FAIL: td_shutdown returned %s: %s\n", td_status_name(st), td_last_error());
        failed = 1;
    }
    int freed = atomic_load(&freed_args);
    if (freed != pushed) {
        printf("FAIL: arg_free ran %d times for %d ops\n", freed, pushed);
        failed = 1;
    }
    printf("\n%s\n", failed ? "engine_dag: FAILED" : "engine_dag: OK");
    return failed ? 1 : 0;
}
