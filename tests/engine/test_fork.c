/* Fork (pthread_atfork): before fork the parent drains and joins its workers,
 * after it restarts them; the child keeps its vars and starts workers on
 * first use.  A fork from inside an op leaves the child's runtime unusable:
 * every call there returns TD_EINVAL with a message. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

static uint64_t fk_value[3]; /* data of the vars a, b and c */

static td_status fk_step(void *arg, const td_exec *ex) {
    (void)ex;
    int which = (int)(intptr_t)arg;
    tt_spin_us(100);
    fk_value[which] = fk_value[which] * 3 + 1;
    return TD_OK;
}

static td_status fk_copy(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    fk_value[1] = fk_value[0];
    return TD_OK;
}

/* An async op that a helper thread completes 50 ms later: a fork must wait
 * for it too (the child would have no thread to complete it). */
struct fk_async {
    const td_exec *ex;
    pthread_t thread;
    int started;
};
static struct fk_async fk_late;

static void *fk_late_main(void *arg) {
    (void)arg;
    tt_sleep_ms(50);
    fk_value[2] = 777;
    td_op_complete(fk_late.ex, TD_OK);
    return NULL;
}

static td_status fk_late_fn(void *arg, const td_exec *ex) {
    (void)arg;
    fk_late.ex = ex;
    /* Detached: the fork happens while it is still alive, and the child
     * (which has no copy of it) could never join it. */
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&fk_late.thread, &attr, fk_late_main, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        td_exec_set_error(ex, "pthread_create failed");
        return TD_EFAILED;
    }
    fk_late.started = 1;
    return TD_OK;
}

static uint64_t fk_steps(uint64_t x, int n) {
    while (n-- > 0) x = x * 3 + 1;
    return x;
}

static void fk_push_steps(td_var *v, int which, int n) {
    for (int i = 0; i < n; i++) {
        td_op op = tt_op("fork_step", fk_step, (void *)(intptr_t)which, &v, 1, &v, 1);
        tt_push(&op);
    }
}

/* Waits for a child with a timeout; returns its exit code, or -1 (killed by a
 * signal or hung: then it says so). */
static int fk_wait_child(pid_t pid, double timeout_s) {
    int st = 0;
    double end = tt_now() + timeout_s;
    pid_t r;
    while ((r = waitpid(pid, &st, WNOHANG)) == 0 && tt_now() < end) tt_sleep_ms(5);
    if (r == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        cr_log_info("the child hung; killed after %.0f s", timeout_s);
        return -1;
    }
    if (WIFSIGNALED(st)) {
        cr_log_info("the child died of signal %d", WTERMSIG(st));
        return -1;
    }
    return WEXITSTATUS(st);
}

/* The child's half of the fork test: exit codes name the first failed check. */
static void fk_child(td_var *a, td_var *b, td_var *c) {
    /* The parent drained before the fork: the child sees finished work. */
    if (fk_value[0] != fk_steps(1, 40)) exit(10);
    if (td_var_wait(a) != TD_OK) exit(11);
    if (td_var_wait(c) != TD_OK) exit(23);
    /* Keep using the vars: workers start on first use. */
    for (int i = 0; i < 25; i++) {
        td_op op = tt_op("child_step", fk_step, (void *)(intptr_t)0, &a, 1, &a, 1);
        if (td_push(&op) != TD_OK) exit(12);
    }
    td_op cp = tt_op("child_copy", fk_copy, NULL, &a, 1, &b, 1);
    if (td_push(&cp) != TD_OK) exit(13);
    if (td_var_wait(b) != TD_OK) exit(14);
    if (fk_value[1] != fk_steps(1, 65)) exit(15);
    td_var *d = td_var_new();
    if (!d) exit(16);
    td_op cc = tt_op("child_new_var", fk_step, (void *)(intptr_t)1, &d, 1, &d, 1);
    if (td_push(&cc) != TD_OK) exit(17);
    if (td_wait_all() != TD_OK) exit(18);
    if (fk_value[1] != fk_steps(1, 65) * 3 + 1) exit(19);
    if (!td_is_running()) exit(20);
    if (td_device_workers(td_cpu(0)) != 2) exit(24); /* restarted with the same config */
    td_var_free(a);
    td_var_free(b);
    td_var_free(c);
    td_var_free(d);
    if (td_shutdown() != TD_OK) exit(21);
    fflush(NULL);
    exit(0);
}

Test(fork, the_child_uses_its_vars_after_fork_and_the_parent_keeps_working, .timeout = 60) {
    tt_start(TD_ENGINE_THREADED, 2);
    fk_value[0] = 1;
    fk_value[1] = 0;
    fk_value[2] = 0;
    td_var *a = tt_var(), *b = tt_var(), *c = tt_var();
    fk_push_steps(a, 0, 40); /* most of it still pending when fork is called */
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork failed");
    if (pid == 0) fk_child(a, b, c);
    /* The parent: its runtime runs on, with the same vars. */
    cr_assert_eq(fk_value[0], fk_steps(1, 40), "the parent's pending work was not drained at fork");
    fk_push_steps(a, 0, 10);
    td_op cp = tt_op("parent_copy", fk_copy, NULL, &a, 1, &b, 1);
    tt_push(&cp);
    cr_assert_eq(td_var_wait(b), TD_OK);
    cr_assert_eq(fk_value[1], fk_steps(1, 50));
    cr_assert(td_is_running());
    cr_assert_eq(td_device_workers(td_cpu(0)), 2, "the parent restarted with another config");
    int code = fk_wait_child(pid, 30.0);
    cr_assert_eq(code, 0, "the child failed (exit code %d; see fk_child)", code);
    /* And forks again, from a parent with running workers. */
    fk_push_steps(a, 0, 5);
    fflush(NULL);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        td_op op = tt_op("second_child", fk_step, (void *)(intptr_t)0, &a, 1, &a, 1);
        int ok = td_push(&op) == TD_OK && td_var_wait(a) == TD_OK &&
                 fk_value[0] == fk_steps(1, 56) && td_shutdown() == TD_OK;
        fflush(NULL);
        exit(ok ? 0 : 30);
    }
    code = fk_wait_child(pid, 30.0);
    cr_assert_eq(code, 0, "the second child failed (exit code %d)", code);
    cr_assert_eq(td_var_wait(a), TD_OK);
    cr_assert_eq(fk_value[0], fk_steps(1, 55));
    td_var_free(a);
    td_var_free(b);
    td_var_free(c);
    tt_stop(TD_OK);
}

Test(fork, fork_waits_for_async_ops_in_flight, .timeout = 60) {
    tt_start(TD_ENGINE_THREADED, 2);
    fk_value[2] = 0;
    td_var *c = tt_var();
    td_op late = tt_op("late_async", fk_late_fn, NULL, NULL, 0, &c, 1);
    late.flags = TD_OP_ASYNC;
    tt_push(&late);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork failed");
    if (pid == 0) {
        /* No engine call here: the helper thread that completed the op was
         * still alive at the fork, and some tools (ThreadSanitizer) refuse
         * new threads after a fork of a multi-threaded process. */
        fflush(NULL);
        exit(fk_value[2] == 777 ? 0 : 40);
    }
    int code = fk_wait_child(pid, 30.0);
    cr_assert_eq(code, 0, "in the child, the async op pending at fork had not completed (%d)",
                 code);
    cr_assert_eq(fk_value[2], 777, "a pending async op was not waited for at fork");
    cr_assert(fk_late.started);
    cr_assert_eq(td_var_wait(c), TD_OK);
    td_var_free(c);
    tt_stop(TD_OK);
}

/* ---- fork from inside an op ---- */

struct fk_inner {
    td_var *v;
    int child_code; /* exit code of the child, -1 if it died or hung */
};

/* In the child: every call returns TD_EINVAL with a message.  Exit code 0 if
 * so, else the number of the first call that did not. */
static int fk_child_checks(td_var *v) {
    int n = 0;
#define FK_EXPECT_EINVAL(call)                                                            \
    do {                                                                                  \
        n++;                                                                              \
        td_clear_error();                                                                 \
        if ((call) != TD_EINVAL || td_last_error()[0] == '\0') return n;                  \
    } while (0)
    td_op op = tt_op("child_op", fk_step, (void *)(intptr_t)0, NULL, 0, NULL, 0);
    FK_EXPECT_EINVAL(td_push(&op));
    FK_EXPECT_EINVAL(td_var_wait(v));
    FK_EXPECT_EINVAL(td_wait_all());
    FK_EXPECT_EINVAL(td_init(NULL));
    FK_EXPECT_EINVAL(td_shutdown());
    n++;
    td_clear_error();
    if (td_var_new() != NULL || td_last_status() != TD_EINVAL || td_last_error()[0] == '\0')
        return n;
#undef FK_EXPECT_EINVAL
    return 0;
}

static td_status fk_forking_op(void *arg, const td_exec *ex) {
    (void)ex;
    struct fk_inner *f = arg;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        f->child_code = -2;
        return TD_OK;
    }
    if (pid == 0) {
        int code = fk_child_checks(f->v);
        fflush(NULL);
        _exit(code); /* the child of a fork inside an op must not run exit handlers */
    }
    int st = 0;
    double end = tt_now() + 20.0;
    pid_t r;
    while ((r = waitpid(pid, &st, WNOHANG)) == 0 && tt_now() < end) tt_sleep_ms(5);
    if (r == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        f->child_code = -1;
    } else {
        f->child_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    }
    return TD_OK;
}

Test(fork, a_fork_inside_an_op_leaves_the_child_unusable, .timeout = 60) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        static struct fk_inner f;
        td_var *v = tt_var(), *other = tt_var();
        f = (struct fk_inner){.v = other, .child_code = -3};
        td_op op = tt_op("forking_op", fk_forking_op, &f, NULL, 0, &v, 1);
        tt_push(&op);
        cr_assert_eq(td_var_wait(v), TD_OK);
        cr_assert_eq(f.child_code, 0,
                     "%s engine: in the child of a fork inside an op, call #%d did not return "
                     "TD_EINVAL with a message (-1: the child died or hung)",
                     tt_engine_name(engine), f.child_code);
        /* The parent is unaffected. */
        fk_value[0] = 1;
        fk_push_steps(v, 0, 3);
        cr_assert_eq(td_var_wait(v), TD_OK);
        cr_assert_eq(fk_value[0], fk_steps(1, 3));
        td_var_free(v);
        td_var_free(other);
        tt_stop(TD_OK);
    }
}
