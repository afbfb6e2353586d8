/* Shutdown: drains pending work, is harmless twice, the next push starts the
 * engine again, td_init refuses a running runtime, and a process that exits
 * without td_shutdown neither hangs nor crashes. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

struct sd_counts {
    atomic_int ran;
    atomic_int nested_ran;
    int chain; /* incremented by a chain of ops on one var */
};
static struct sd_counts sd;

static td_status sd_slow(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    tt_sleep_ms(2);
    sd.chain++;
    atomic_fetch_add(&sd.ran, 1);
    return TD_OK;
}

static td_status sd_nested_leaf(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    tt_sleep_ms(1);
    atomic_fetch_add(&sd.nested_ran, 1);
    return TD_OK;
}

/* Pushes two more ops from inside an op: shutdown must wait for them too. */
static td_status sd_pusher(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    tt_sleep_ms(5);
    for (int i = 0; i < 2; i++) {
        td_op op = tt_op("nested_leaf", sd_nested_leaf, NULL, NULL, 0, NULL, 0);
        if (td_push(&op) != TD_OK) return TD_EFAILED;
    }
    atomic_fetch_add(&sd.ran, 1);
    return TD_OK;
}

/* An async op completed 200 ms later by a helper thread: shutdown must wait
 * for the completion and for the ops that depend on it. */
struct sd_async {
    const td_exec *ex;
    pthread_t thread;
    int started;
    atomic_int completed;
    atomic_int dependant_saw;
};
static struct sd_async sda;

static void *sd_async_main(void *arg) {
    (void)arg;
    tt_sleep_ms(200); /* after the rest of the pending work is done */
    atomic_store(&sda.completed, 1);
    td_op_complete(sda.ex, TD_OK);
    return NULL;
}

static td_status sd_async_fn(void *arg, const td_exec *ex) {
    (void)arg;
    sda.ex = ex;
    if (pthread_create(&sda.thread, NULL, sd_async_main, NULL) != 0) return TD_EFAILED;
    sda.started = 1;
    return TD_OK;
}

static td_status sd_after_async(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    atomic_store(&sda.dependant_saw, atomic_load(&sda.completed) ? 1 : -1);
    return TD_OK;
}

Test(shutdown, drains_pending_work_including_work_pushed_by_ops, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        memset(&sd, 0, sizeof sd);
        tt_start(engine, 2);
        td_var *v = tt_var();
        for (int i = 0; i < 40; i++) {
            td_op op = tt_op("slow_chain", sd_slow, NULL, &v, 1, &v, 1);
            tt_push(&op);
        }
        for (int i = 0; i < 10; i++) {
            td_op op = tt_op("pusher", sd_pusher, NULL, NULL, 0, NULL, 0);
            tt_push(&op);
        }
        memset(&sda, 0, sizeof sda);
        td_var *av = tt_var();
        td_op async_op = tt_op("late_async", sd_async_fn, NULL, NULL, 0, &av, 1);
        async_op.flags = TD_OP_ASYNC;
        tt_push(&async_op);
        td_op after = tt_op("after_async", sd_after_async, NULL, &av, 1, NULL, 0);
        tt_push(&after);
        td_var_free(av);
        td_var_free(v);
        tt_stop(TD_OK);
        cr_assert(sda.started);
        pthread_join(sda.thread, NULL);
        cr_assert_eq(atomic_load(&sda.dependant_saw), 1,
                     "%s engine: td_shutdown returned before the async op and its dependant "
                     "finished (%d)",
                     tt_engine_name(engine), atomic_load(&sda.dependant_saw));
        cr_assert_eq(sd.chain, 40, "%s engine: %d of 40 chained ops ran before shutdown returned",
                     tt_engine_name(engine), sd.chain);
        cr_assert_eq(atomic_load(&sd.ran), 50);
        cr_assert_eq(atomic_load(&sd.nested_ran), 20,
                     "%s engine: %d of 20 ops pushed by ops ran before shutdown returned",
                     tt_engine_name(engine), atomic_load(&sd.nested_ran));
    }
}

Test(shutdown, a_second_shutdown_returns_ok_and_is_harmless, .timeout = 30) {
    cr_assert_eq(td_shutdown(), TD_OK, "td_shutdown before anything started");
    cr_assert_not(td_is_running(), "td_shutdown started the runtime");
    TT_FOR_EACH_ENGINE(engine) {
        memset(&sd, 0, sizeof sd);
        tt_start(engine, 2);
        td_var *v = tt_var();
        td_op op = tt_op("slow_chain", sd_slow, NULL, &v, 1, &v, 1);
        tt_push(&op);
        td_var_free(v);
        tt_stop(TD_OK);
        tt_stop(TD_OK);
        tt_stop(TD_OK);
        cr_assert_eq(sd.chain, 1);
    }
}

static td_status sd_count(void *arg, const td_exec *ex) {
    (void)ex;
    atomic_fetch_add((atomic_int *)arg, 1);
    return TD_OK;
}

Test(shutdown, the_next_push_after_shutdown_starts_the_engine_again, .timeout = 30) {
    static atomic_int count;
    tt_start(TD_ENGINE_THREADED, 2);
    tt_stop(TD_OK);
    cr_assert_not(td_is_running());
    /* A push needs the engine: it starts it from td_config_default(). */
    td_op op = tt_op("after_restart", sd_count, &count, NULL, 0, NULL, 0);
    tt_push(&op);
    cr_assert(td_is_running(), "td_push after td_shutdown did not start the runtime");
    cr_assert_eq(td_wait_all(), TD_OK);
    cr_assert_eq(atomic_load(&count), 1);
    cr_assert_geq(td_device_workers(td_cpu(0)), 1);
    tt_stop(TD_OK);
    /* So does creating a var. */
    td_var *v = td_var_new();
    cr_assert_not_null(v, "td_var_new after td_shutdown: %s", td_last_error());
    cr_assert(td_is_running(), "td_var_new after td_shutdown did not start the runtime");
    td_op op2 = tt_op("after_restart_2", sd_count, &count, NULL, 0, &v, 1);
    tt_push(&op2);
    cr_assert_eq(td_var_wait(v), TD_OK);
    cr_assert_eq(atomic_load(&count), 2);
    td_var_free(v);
    tt_stop(TD_OK);
}

Test(shutdown, init_refuses_a_running_runtime_and_cycles_work, .timeout = 60) {
    static atomic_int count;
    for (int cycle = 0; cycle < 24; cycle++) {
        int engine = cycle % 3 == 2 ? TD_ENGINE_NAIVE : TD_ENGINE_THREADED;
        int workers = 1 + cycle % 4;
        tt_start(engine, workers);
        cr_assert(td_is_running());
        if (engine == TD_ENGINE_THREADED)
            cr_assert_eq(td_device_workers(td_cpu(0)), workers, "cycle %d", cycle);
        td_config cfg = td_config_default();
        td_clear_error();
        td_status st = td_init(&cfg);
        cr_assert_eq(st, TD_EINVAL, "cycle %d: td_init on a running runtime returned %s", cycle,
                     td_status_name(st));
        cr_assert(td_last_error()[0] != '\0', "td_init on a running runtime gave no message");
        st = td_init(NULL);
        cr_assert_eq(st, TD_EINVAL, "cycle %d: td_init(NULL) on a running runtime returned %s",
                     cycle, td_status_name(st));
        td_var *v = tt_var();
        for (int i = 0; i < 20; i++) {
            td_op op = tt_op("cycle_op", sd_count, &count, &v, 1, i % 3 ? NULL : &v, i % 3 ? 0 : 1);
            tt_push(&op);
        }
        td_var_free(v);
        tt_stop(TD_OK);
        cr_assert_eq(atomic_load(&count), 20 * (cycle + 1), "cycle %d", cycle);
    }
}

/* ---- exit without td_shutdown ---- */

static td_status exit_slow_op(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    tt_sleep_ms(5);
    return TD_OK;
}

/* Pushes slow work and returns from a function that calls exit(0), with the
 * runtime still running and ops still pending. */
static void exit_without_shutdown(int engine) {
    td_config cfg = td_config_default();
    cfg.engine = engine;
    cfg.cpu_workers = 2;
    if (td_init(&cfg) != TD_OK) _exit(3);
    td_var *v = td_var_new();
    if (!v) _exit(4);
    for (int i = 0; i < 200; i++) {
        td_op op = tt_op("slow_at_exit", exit_slow_op, NULL, i % 2 ? &v : NULL, i % 2,
                         i % 2 ? NULL : &v, i % 2 ? 0 : 1);
        if (td_push(&op) != TD_OK) _exit(5);
        if (engine == TD_ENGINE_NAIVE && i == 3) break; /* runs at push: keep it short */
    }
    fflush(NULL);
    exit(0);
}

static void expect_child_exits_zero(pid_t pid, double timeout_s, const char *what) {
    int st = 0;
    double end = tt_now() + timeout_s;
    pid_t r;
    while ((r = waitpid(pid, &st, WNOHANG)) == 0 && tt_now() < end) tt_sleep_ms(10);
    if (r == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        cr_assert(0, "%s: the child hung (killed after %.0f s)", what, timeout_s);
    }
    cr_assert_eq(r, pid);
    cr_assert(WIFEXITED(st), "%s: the child died of signal %d", what,
              WIFSIGNALED(st) ? WTERMSIG(st) : -1);
    cr_assert_eq(WEXITSTATUS(st), 0, "%s: the child exited with %d", what, WEXITSTATUS(st));
}

Test(shutdown, exit_without_shutdown_neither_hangs_nor_crashes, .timeout = 60) {
    TT_FOR_EACH_ENGINE(engine) {
        fflush(NULL);
        pid_t pid = fork();
        cr_assert_geq(pid, 0, "fork failed");
        if (pid == 0) exit_without_shutdown(engine);
        expect_child_exits_zero(pid, 30.0, tt_engine_name(engine));
    }
    /* The parent never started the runtime and still can. */
    cr_assert_not(td_is_running());
    tt_start(TD_ENGINE_THREADED, 2);
    tt_stop(TD_OK);
}
