/* Async ops (TD_OP_ASYNC): the function starts the work and returns; the work
 * ends with td_op_complete, exactly once, from any thread, possibly before the
 * function returns.  Dependants wait for the completion, on both engines. */
#include "common.h"

struct async_arg {
    const char *fail_msg;      /* non-NULL: complete with TD_EFAILED and this message */
    int delay_ms;              /* how long the helper thread waits before completing */
    int value;                 /* the work: written before completion */
    atomic_int completed;      /* set just before td_op_complete */
    atomic_int returned;       /* set when the op's function returned */
    atomic_int freed;
    int freed_after_completion;
    double completed_at;
    pthread_t thread;
    int has_thread;
    const td_exec *ex;
};

static void async_free(void *arg) {
    struct async_arg *a = arg;
    a->freed_after_completion = atomic_load(&a->completed);
    atomic_fetch_add(&a->freed, 1);
}

static void async_finish(struct async_arg *a, const td_exec *ex) {
    td_status st = TD_OK;
    if (a->fail_msg) {
        td_exec_set_error(ex, "%s %d", a->fail_msg, 42);
        st = TD_EFAILED;
    } else {
        a->value = 99;
    }
    a->completed_at = tt_now();
    atomic_store(&a->completed, 1);
    td_op_complete(ex, st); /* ex may be gone from here on */
}

/* Completes on the caller's thread, before returning. */
static td_status complete_inline_fn(void *arg, const td_exec *ex) {
    struct async_arg *a = arg;
    async_finish(a, ex);
    tt_sleep_ms(20); /* dependants may run meanwhile */
    atomic_store(&a->returned, 1);
    return TD_OK;
}

static void *completer_main(void *arg) {
    struct async_arg *a = arg;
    tt_sleep_ms(a->delay_ms);
    async_finish(a, a->ex);
    return NULL;
}

/* Hands the completion to a new thread and returns at once. */
static td_status complete_later_fn(void *arg, const td_exec *ex) {
    struct async_arg *a = arg;
    a->ex = ex;
    if (pthread_create(&a->thread, NULL, completer_main, a) != 0) {
        td_exec_set_error(ex, "pthread_create failed");
        return TD_EFAILED; /* not started: no td_op_complete */
    }
    a->has_thread = 1;
    atomic_store(&a->returned, 1);
    return TD_OK;
}

/* A dependant: records what it saw of the async op. */
struct dep_arg {
    struct async_arg *a;
    int saw_completed;
    int saw_value;
    double started_at;
    atomic_int called;
};

static td_status dep_fn(void *arg, const td_exec *ex) {
    (void)ex;
    struct dep_arg *d = arg;
    d->started_at = tt_now();
    d->saw_completed = atomic_load(&d->a->completed);
    d->saw_value = d->a->value;
    atomic_fetch_add(&d->called, 1);
    return TD_OK;
}

static void push_async(const char *name, td_fn fn, struct async_arg *a, td_var *v) {
    td_op op = tt_op(name, fn, a, NULL, 0, &v, 1);
    op.flags = TD_OP_ASYNC;
    op.arg_free = async_free;
    tt_push(&op);
}

static void push_dep(struct dep_arg *d, td_var *v, td_var *out) {
    td_op op = tt_op("dependant", dep_fn, d, &v, 1, &out, 1);
    tt_push(&op);
}

static void join_helper(struct async_arg *a) {
    if (a->has_thread) pthread_join(a->thread, NULL);
    a->has_thread = 0;
}

Test(async, completion_before_the_function_returns, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        static struct async_arg a;
        static struct dep_arg d;
        memset(&a, 0, sizeof a);
        memset(&d, 0, sizeof d);
        d.a = &a;
        td_var *v = tt_var(), *out = tt_var();
        push_async("complete_inline", complete_inline_fn, &a, v);
        push_dep(&d, v, out);
        cr_assert_eq(td_var_wait(out), TD_OK);
        cr_assert_eq(td_var_wait(v), TD_OK);
        cr_assert(d.saw_completed && d.saw_value == 99,
                  "%s engine: the dependant ran before the completion (value %d)",
                  tt_engine_name(engine), d.saw_value);
        cr_assert_eq(td_wait_all(), TD_OK);
        td_var_free(v);
        td_var_free(out);
        tt_stop(TD_OK);
        cr_assert(atomic_load(&a.returned));
        cr_assert_eq(atomic_load(&a.freed), 1);
        cr_assert(a.freed_after_completion, "%s engine: arg_free ran before td_op_complete",
                  tt_engine_name(engine));
    }
}

Test(async, completion_after_the_function_returns_from_another_thread, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        static struct async_arg a;
        static struct dep_arg d;
        memset(&a, 0, sizeof a);
        memset(&d, 0, sizeof d);
        a.delay_ms = 60;
        d.a = &a;
        td_var *v = tt_var(), *out = tt_var();
        push_async("complete_later", complete_later_fn, &a, v);
        if (engine == TD_ENGINE_NAIVE)
            cr_assert(atomic_load(&a.completed),
                      "naive engine: td_push of an async op returned before its completion");
        push_dep(&d, v, out);
        cr_assert_eq(td_var_wait(v), TD_OK);
        cr_assert(atomic_load(&a.completed), "%s engine: td_var_wait returned before completion",
                  tt_engine_name(engine));
        cr_assert_eq(td_var_wait(out), TD_OK);
        cr_assert(d.saw_completed && d.saw_value == 99,
                  "%s engine: the dependant ran before the completion", tt_engine_name(engine));
        cr_assert_geq(d.started_at, a.completed_at);
        cr_assert_eq(td_wait_all(), TD_OK);
        join_helper(&a);
        td_var_free(v);
        td_var_free(out);
        tt_stop(TD_OK);
        cr_assert_eq(atomic_load(&a.freed), 1);
        cr_assert(a.freed_after_completion, "%s engine: arg_free ran before td_op_complete",
                  tt_engine_name(engine));
    }
}

Test(async, failure_through_complete_carries_the_message, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        static struct async_arg a;
        static struct dep_arg d;
        memset(&a, 0, sizeof a);
        memset(&d, 0, sizeof d);
        a.delay_ms = 30;
        a.fail_msg = "device melted";
        d.a = &a;
        td_var *v = tt_var(), *out = tt_var();
        push_async("async_fail", complete_later_fn, &a, v);
        push_dep(&d, v, out);
        td_clear_error();
        td_status st = td_var_wait(v);
        cr_assert_eq(st, TD_EFAILED, "%s engine: td_var_wait returned %s", tt_engine_name(engine),
                     td_status_name(st));
        cr_assert(tt_has(td_last_error(), "async_fail") &&
                      tt_has(td_last_error(), "device melted 42"),
                  "%s engine: message \"%s\"", tt_engine_name(engine), td_last_error());
        st = td_var_wait(out);
        cr_assert_eq(st, TD_EFAILED, "%s engine: the dependant's output is not marked",
                     tt_engine_name(engine));
        cr_assert_eq(atomic_load(&d.called), 0, "%s engine: the dependant of a failed async op ran",
                     tt_engine_name(engine));
        join_helper(&a);
        td_var_free(v);
        td_var_free(out);
        tt_stop(TD_OK); /* reported by the waits */
        cr_assert_eq(atomic_load(&a.freed), 1);
    }
}

static td_status refuse_fn(void *arg, const td_exec *ex) {
    (void)arg;
    td_exec_set_error(ex, "could not start");
    return TD_EIO; /* an async op that fails to start does not complete */
}

Test(async, function_failure_means_not_started_and_needs_no_completion, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        static struct async_arg a;
        memset(&a, 0, sizeof a);
        td_var *v = tt_var();
        push_async("refuser", refuse_fn, &a, v);
        td_status st = td_var_wait(v);
        cr_assert_eq(st, TD_EIO, "%s engine: td_var_wait returned %s", tt_engine_name(engine),
                     td_status_name(st));
        cr_assert(tt_has(td_last_error(), "refuser") && tt_has(td_last_error(), "could not start"),
                  "%s engine: message \"%s\"", tt_engine_name(engine), td_last_error());
        td_var_free(v);
        tt_stop(TD_OK);
        cr_assert_eq(atomic_load(&a.freed), 1);
    }
}

/* Many async ops in chains, all completed by one helper thread that takes
 * them from a queue: program order must hold and every op completes once. */
enum { CQ_OPS = 600, CQ_VARS = 6 };
struct cq_item {
    const td_exec *ex;
    int op;
};
struct cq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct cq_item items[CQ_OPS];
    int head, tail;
    int stop;
    uint64_t state[CQ_VARS];
    int reads[CQ_OPS], writes[CQ_OPS];
};
static struct cq cq = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static td_status cq_fn(void *arg, const td_exec *ex) {
    int k = (int)(intptr_t)arg;
    pthread_mutex_lock(&cq.mu);
    cq.items[cq.tail++] = (struct cq_item){ex, k};
    pthread_cond_signal(&cq.cv);
    pthread_mutex_unlock(&cq.mu);
    return TD_OK;
}

static void *cq_main(void *unused) {
    (void)unused;
    pthread_mutex_lock(&cq.mu);
    for (;;) {
        while (cq.head == cq.tail && !cq.stop) pthread_cond_wait(&cq.cv, &cq.mu);
        if (cq.head == cq.tail) break;
        struct cq_item it = cq.items[cq.head++];
        pthread_mutex_unlock(&cq.mu);
        uint64_t *w = &cq.state[cq.writes[it.op]];
        *w = tt_mix(*w ^ cq.state[cq.reads[it.op]] ^ (uint64_t)it.op);
        td_op_complete(it.ex, TD_OK);
        pthread_mutex_lock(&cq.mu);
    }
    pthread_mutex_unlock(&cq.mu);
    return NULL;
}

Test(async, many_ops_completed_by_another_thread_keep_program_order, .timeout = 60) {
    tt_rng rng = {77};
    for (int k = 0; k < CQ_OPS; k++) {
        cq.reads[k] = (int)tt_rng_below(&rng, CQ_VARS);
        cq.writes[k] = (int)tt_rng_below(&rng, CQ_VARS);
    }
    uint64_t want[CQ_VARS];
    for (int i = 0; i < CQ_VARS; i++) want[i] = (uint64_t)i;
    for (int k = 0; k < CQ_OPS; k++)
        want[cq.writes[k]] = tt_mix(want[cq.writes[k]] ^ want[cq.reads[k]] ^ (uint64_t)k);
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 3);
        pthread_mutex_lock(&cq.mu);
        cq.head = cq.tail = 0;
        cq.stop = 0;
        pthread_mutex_unlock(&cq.mu);
        for (int i = 0; i < CQ_VARS; i++) cq.state[i] = (uint64_t)i;
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, cq_main, NULL), 0);
        td_var *vars[CQ_VARS];
        for (int i = 0; i < CQ_VARS; i++) vars[i] = tt_var();
        for (int k = 0; k < CQ_OPS; k++) {
            td_op op = tt_op("queued_async", cq_fn, (void *)(intptr_t)k, &vars[cq.reads[k]], 1,
                             &vars[cq.writes[k]], 1);
            op.flags = TD_OP_ASYNC;
            tt_push(&op);
        }
        cr_assert_eq(td_wait_all(), TD_OK);
        pthread_mutex_lock(&cq.mu);
        int completed = cq.head;
        cq.stop = 1;
        pthread_cond_signal(&cq.cv);
        pthread_mutex_unlock(&cq.mu);
        pthread_join(th, NULL);
        cr_assert_eq(completed, CQ_OPS, "%s engine: %d of %d async ops completed",
                     tt_engine_name(engine), completed, CQ_OPS);
        for (int i = 0; i < CQ_VARS; i++)
            cr_assert_eq(cq.state[i], want[i], "%s engine: var %d differs from program order",
                         tt_engine_name(engine), i);
        for (int i = 0; i < CQ_VARS; i++) td_var_free(vars[i]);
        tt_stop(TD_OK);
    }
}
