/* Every error rule of DESIGN.md ("Errors never kill the process"), one test
 * each, each checked on both engines. */
#include "common.h"

/* An op that counts its calls and its arg_free calls, and returns `status`
 * with `msg` (NULL: no td_exec_set_error). */
struct counted {
    td_status status;
    const char *msg;
    atomic_int called;
    atomic_int freed;
};

static td_status counted_fn(void *arg, const td_exec *ex) {
    struct counted *c = arg;
    atomic_fetch_add(&c->called, 1);
    if (c->msg) td_exec_set_error(ex, "%s", c->msg);
    return c->status;
}

static void counted_free(void *arg) {
    struct counted *c = arg;
    atomic_fetch_add(&c->freed, 1);
}

static void counted_reset(struct counted *c, td_status status, const char *msg) {
    c->status = status;
    c->msg = msg;
    atomic_store(&c->called, 0);
    atomic_store(&c->freed, 0);
}

static void push_counted(const char *name, struct counted *c, td_var *const *reads,
                         size_t n_reads, td_var *const *writes, size_t n_writes, int flags) {
    td_op op = tt_op(name, counted_fn, c, reads, n_reads, writes, n_writes);
    op.arg_free = counted_free;
    op.flags = flags;
    tt_push(&op);
}

/* Waits on v and checks the status, td_last_status() and that td_last_error()
 * names the op and carries its message.  Clears the thread's error first so a
 * stale message cannot satisfy the check. */
static void expect_wait(td_var *v, td_status want, const char *op_name, const char *msg,
                        int engine, const char *what) {
    td_clear_error();
    td_status st = td_var_wait(v);
    cr_assert_eq(st, want, "%s engine, %s: td_var_wait returned %s, expected %s (%s)",
                 tt_engine_name(engine), what, td_status_name(st), td_status_name(want),
                 td_last_error());
    if (want == TD_OK) return;
    cr_assert_eq(td_last_status(), want, "%s engine, %s: td_last_status() is %s",
                 tt_engine_name(engine), what, td_status_name(td_last_status()));
    cr_assert(tt_has(td_last_error(), op_name),
              "%s engine, %s: td_last_error() \"%s\" does not name the op \"%s\"",
              tt_engine_name(engine), what, td_last_error(), op_name);
    if (msg)
        cr_assert(tt_has(td_last_error(), msg),
                  "%s engine, %s: td_last_error() \"%s\" lacks the message \"%s\"",
                  tt_engine_name(engine), what, td_last_error(), msg);
}

/* td_wait_all (or td_shutdown) returned st: check it and the thread's error. */
static void expect_reported(const char *call, td_status st, td_status want, const char *op_name,
                            const char *msg, int engine) {
    cr_assert_eq(st, want, "%s engine: %s returned %s, expected %s (%s)", tt_engine_name(engine),
                 call, td_status_name(st), td_status_name(want), td_last_error());
    if (want == TD_OK) return;
    cr_assert_eq(td_last_status(), want, "%s engine: td_last_status() after %s is %s",
                 tt_engine_name(engine), call, td_status_name(td_last_status()));
    cr_assert(tt_has(td_last_error(), op_name) && tt_has(td_last_error(), msg),
              "%s engine: td_last_error() after %s is \"%s\", expected \"%s\" and \"%s\"",
              tt_engine_name(engine), call, td_last_error(), op_name, msg);
}

Test(errors, failing_op_status_and_message_reach_every_wait_on_each_written_var,
     .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        static struct counted f;
        counted_reset(&f, TD_EIO, "disk on fire 42");
        td_var *a = tt_var(), *b = tt_var(), *c = tt_var();
        push_counted("exploder", &f, NULL, 0, (td_var *[]){a, b}, 2, 0);
        for (int round = 0; round < 3; round++) {
            expect_wait(a, TD_EIO, "exploder", "disk on fire 42", engine, "first written var");
            expect_wait(b, TD_EIO, "exploder", "disk on fire 42", engine, "second written var");
        }
        expect_wait(c, TD_OK, NULL, NULL, engine, "a var the op did not write");
        cr_assert_eq(atomic_load(&f.called), 1);
        td_var_free(a);
        td_var_free(b);
        td_var_free(c);
        /* Reported by the waits: shutdown has nothing left to report. */
        tt_stop(TD_OK);
        cr_assert_eq(atomic_load(&f.freed), 1);
    }
}

Test(errors, failure_without_a_message_gets_the_status_text, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        static struct counted f;
        counted_reset(&f, TD_EFORMAT, NULL);
        td_var *a = tt_var();
        push_counted("quiet_failure", &f, NULL, 0, &a, 1, 0);
        expect_wait(a, TD_EFORMAT, "quiet_failure", td_strerror(TD_EFORMAT), engine,
                    "failure without td_exec_set_error");
        td_var_free(a);
        tt_stop(TD_OK);
    }
}

Test(errors, the_message_names_the_op_as_pushed_even_if_the_name_buffer_changes,
     .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        static struct counted f, g;
        counted_reset(&f, TD_EFAILED, "renamed?");
        counted_reset(&g, TD_EFAILED, "anonymous");
        td_var *a = tt_var(), *b = tt_var();
        char name[32];
        snprintf(name, sizeof name, "original_name");
        push_counted(name, &f, NULL, 0, &a, 1, 0);
        snprintf(name, sizeof name, "changed_name"); /* td_push copied the name */
        push_counted(NULL, &g, NULL, 0, &b, 1, 0);
        expect_wait(a, TD_EFAILED, "original_name", "renamed?", engine, "op with a copied name");
        cr_assert_not(tt_has(td_last_error(), "changed_name"));
        expect_wait(b, TD_EFAILED, "op", "anonymous", engine, "op without a name");
        td_var_free(a);
        td_var_free(b);
        tt_stop(TD_OK);
    }
}

/* td_push keeps names interned (4096 distinct ones at most; later names go
 * into the op record): every op's error names it as pushed, however many
 * names the program makes up, and a name longer than 47 characters is kept
 * as its first 47. */
Test(errors, every_op_keeps_its_own_name_past_the_interned_ones, .timeout = 60) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        enum { N = 5000 };
        static struct counted f;
        counted_reset(&f, TD_EFAILED, "named");
        td_var **v = malloc(N * sizeof *v);
        cr_assert(v);
        char name[64];
        for (int i = 0; i < N; i++) {
            v[i] = tt_var();
            snprintf(name, sizeof name, "distinct_name_%d_%s", i, engine ? "n" : "t");
            push_counted(name, &f, NULL, 0, &v[i], 1, 0);
        }
        for (int i = 0; i < N; i += 97) {
            snprintf(name, sizeof name, "distinct_name_%d_%s", i, engine ? "n" : "t");
            cr_assert_eq(td_var_wait(v[i]), TD_EFAILED);
            /* The name is followed by ": " in the error's text. */
            char want[80];
            snprintf(want, sizeof want, "%s: ", name);
            cr_assert(tt_has(td_last_error(), want), "%s engine: op %d's error is \"%s\", not about %s",
                      tt_engine_name(engine), i, td_last_error(), name);
        }
        char longname[61];
        memset(longname, 'x', 60);
        longname[60] = 0;
        longname[0] = 'L';
        td_var *w = tt_var();
        push_counted(longname, &f, NULL, 0, &w, 1, 0);
        cr_assert_eq(td_var_wait(w), TD_EFAILED);
        char want[64];
        memcpy(want, longname, 47);
        memcpy(want + 47, ": ", 3);
        cr_assert(tt_has(td_last_error(), want), "%s engine: \"%s\" does not start with the name's first 47 "
                  "characters", tt_engine_name(engine), td_last_error());
        td_wait_all(); /* the rest are reported here */
        for (int i = 0; i < N; i++) td_var_free(v[i]);
        td_var_free(w);
        free(v);
        tt_stop(TD_OK);
    }
}

Test(errors, reader_of_a_marked_var_is_skipped_and_propagates_the_mark, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        static struct counted f, r1, r2, other;
        counted_reset(&f, TD_EFAILED, "first failure");
        counted_reset(&r1, TD_OK, NULL);
        counted_reset(&r2, TD_OK, NULL);
        counted_reset(&other, TD_OK, NULL);
        td_var *a = tt_var(), *b = tt_var(), *c = tt_var(), *d = tt_var(), *e = tt_var();
        push_counted("first_fail", &f, NULL, 0, &a, 1, 0);
        /* r1 reads a marked var (and a clean one): skipped, marks b. */
        push_counted("reader_of_a", &r1, (td_var *[]){d, a}, 2, &b, 1, 0);
        /* r2 reads b, marked by propagation: skipped too, marks c. */
        push_counted("reader_of_b", &r2, &b, 1, &c, 1, TD_OP_OVERWRITE);
        /* Unrelated work still runs. */
        push_counted("bystander", &other, &d, 1, &e, 1, 0);
        expect_wait(b, TD_EFAILED, "first_fail", "first failure", engine, "skipped op's output");
        expect_wait(c, TD_EFAILED, "first_fail", "first failure", engine,
                    "output two steps down");
        expect_wait(e, TD_OK, NULL, NULL, engine, "unrelated output");
        cr_assert_eq(td_wait_all(), TD_OK);
        cr_assert_eq(atomic_load(&r1.called), 0, "%s engine: a reader of a marked var ran",
                     tt_engine_name(engine));
        cr_assert_eq(atomic_load(&r2.called), 0, "%s engine: a reader of a propagated mark ran",
                     tt_engine_name(engine));
        cr_assert_eq(atomic_load(&other.called), 1);
        td_var *vars[] = {a, b, c, d, e};
        for (int i = 0; i < 5; i++) td_var_free(vars[i]);
        tt_stop(TD_OK);
        cr_assert_eq(atomic_load(&r1.freed), 1, "%s engine: skipped op's arg_free called %d times",
                     tt_engine_name(engine), atomic_load(&r1.freed));
        cr_assert_eq(atomic_load(&r2.freed), 1);
        cr_assert_eq(atomic_load(&other.freed), 1);
    }
}

Test(errors, var_both_read_and_written_counts_as_read, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        static struct counted f, upd, upd2;
        counted_reset(&f, TD_EFAILED, "weights broke");
        counted_reset(&upd, TD_OK, NULL);
        counted_reset(&upd2, TD_OK, NULL);
        td_var *w = tt_var(), *g = tt_var();
        push_counted("make_w", &f, NULL, 0, &w, 1, 0);
        /* w -= lr * g: reads g and w, writes w.  Even with TD_OP_OVERWRITE it
         * reads the marked var, so it is skipped and the mark stays. */
        push_counted("sgd_update", &upd, (td_var *[]){g, w}, 2, &w, 1, TD_OP_OVERWRITE);
        /* w in reads and in writes, with a second output g: skipped too, and
         * g gets the mark. */
        push_counted("sgd_update2", &upd2, &w, 1, (td_var *[]){w, g}, 2, 0);
        expect_wait(w, TD_EFAILED, "make_w", "weights broke", engine, "read-and-written var");
        expect_wait(g, TD_EFAILED, "make_w", "weights broke", engine,
                    "var written by a skipped op");
        cr_assert_eq(atomic_load(&upd.called), 0,
                     "%s engine: an op reading and writing a marked var ran",
                     tt_engine_name(engine));
        cr_assert_eq(atomic_load(&upd2.called), 0);
        td_var_free(w);
        td_var_free(g);
        tt_stop(TD_OK);
        cr_assert_eq(atomic_load(&upd.freed), 1);
        cr_assert_eq(atomic_load(&upd2.freed), 1);
    }
}

Test(errors, writer_of_a_marked_var_without_overwrite_runs_and_keeps_the_mark,
     .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        static struct counted f, wr;
        counted_reset(&f, TD_EFAILED, "half written");
        counted_reset(&wr, TD_OK, NULL);
        td_var *a = tt_var(), *clean = tt_var();
        push_counted("first_writer", &f, NULL, 0, &a, 1, 0);
        /* Writes the marked var (a partial write: no TD_OP_OVERWRITE) and
         * reads only a clean var. */
        push_counted("partial_writer", &wr, &clean, 1, &a, 1, 0);
        expect_wait(a, TD_EFAILED, "first_writer", "half written", engine,
                    "var after a partial write");
        cr_assert_eq(atomic_load(&wr.called), 1,
                     "%s engine: a writer that reads nothing marked did not run",
                     tt_engine_name(engine));
        td_var_free(a);
        td_var_free(clean);
        tt_stop(TD_OK);
        cr_assert_eq(atomic_load(&wr.freed), 1);
    }
}

Test(errors, successful_overwrite_clears_the_mark, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        static struct counted f, ow, rd;
        counted_reset(&f, TD_EIO, "stale data");
        counted_reset(&ow, TD_OK, NULL);
        counted_reset(&rd, TD_OK, NULL);
        td_var *a = tt_var(), *b = tt_var();
        push_counted("stale_writer", &f, NULL, 0, &a, 1, 0);
        push_counted("full_overwrite", &ow, NULL, 0, &a, 1, TD_OP_OVERWRITE);
        push_counted("later_reader", &rd, &a, 1, &b, 1, 0);
        expect_wait(a, TD_OK, NULL, NULL, engine, "var after a successful overwrite");
        expect_wait(b, TD_OK, NULL, NULL, engine, "output of a reader after the overwrite");
        cr_assert_eq(atomic_load(&ow.called), 1);
        cr_assert_eq(atomic_load(&rd.called), 1,
                     "%s engine: a reader after a clearing overwrite was skipped",
                     tt_engine_name(engine));
        /* The record itself was never reported by a wait, so td_wait_all
         * still returns it: records live apart from vars. */
        td_status st = td_wait_all();
        expect_reported("td_wait_all", st, TD_EIO, "stale_writer", "stale data", engine);
        td_var_free(a);
        td_var_free(b);
        tt_stop(TD_OK);
    }
}

Test(errors, failing_overwrite_replaces_the_mark, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        static struct counted f1, f2;
        counted_reset(&f1, TD_EIO, "first problem");
        counted_reset(&f2, TD_EFAILED, "second problem");
        td_var *a = tt_var();
        push_counted("first_fail", &f1, NULL, 0, &a, 1, 0);
        push_counted("second_fail", &f2, NULL, 0, &a, 1, TD_OP_OVERWRITE);
        expect_wait(a, TD_EFAILED, "second_fail", "second problem", engine,
                    "var after a failing overwrite");
        cr_assert_not(tt_has(td_last_error(), "first_fail"),
                      "%s engine: the replaced mark still shows: \"%s\"", tt_engine_name(engine),
                      td_last_error());
        cr_assert_eq(atomic_load(&f2.called), 1);
        /* The first record was never reported. */
        td_status st = td_wait_all();
        expect_reported("td_wait_all", st, TD_EIO, "first_fail", "first problem", engine);
        td_var_free(a);
        tt_stop(TD_OK);
    }
}

Test(errors, wait_all_returns_the_earliest_unreported_error_then_forgets_them,
     .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        static struct counted ok1, f1, ok2, f2, f3, f4;
        counted_reset(&ok1, TD_OK, NULL);
        counted_reset(&f1, TD_EIO, "earliest");
        counted_reset(&ok2, TD_OK, NULL);
        counted_reset(&f2, TD_EFAILED, "middle");
        counted_reset(&f3, TD_ENOMEM, "latest");
        counted_reset(&f4, TD_EDTYPE, "after the first wait_all");
        td_var *v[5];
        for (int i = 0; i < 5; i++) v[i] = tt_var();
        push_counted("ok_one", &ok1, NULL, 0, &v[0], 1, 0);
        push_counted("fail_one", &f1, NULL, 0, &v[1], 1, 0);
        push_counted("ok_two", &ok2, &v[0], 1, &v[0], 1, 0);
        push_counted("fail_two", &f2, NULL, 0, &v[2], 1, 0);
        push_counted("fail_three", &f3, &v[0], 1, &v[3], 1, 0);
        td_status st = td_wait_all();
        expect_reported("td_wait_all", st, TD_EIO, "fail_one", "earliest", engine);
        st = td_wait_all();
        cr_assert_eq(st, TD_OK, "%s engine: a second td_wait_all returned %s",
                     tt_engine_name(engine), td_status_name(st));
        /* Forgetting records leaves the marks on the vars. */
        expect_wait(v[2], TD_EFAILED, "fail_two", "middle", engine, "var of a forgotten record");
        expect_wait(v[3], TD_ENOMEM, "fail_three", "latest", engine, "var of a forgotten record");
        /* A new failure is reported by the next td_wait_all. */
        push_counted("fail_four", &f4, NULL, 0, &v[4], 1, 0);
        st = td_wait_all();
        expect_reported("td_wait_all", st, TD_EDTYPE, "fail_four", "after the first wait_all",
                        engine);
        for (int i = 0; i < 5; i++) td_var_free(v[i]);
        tt_stop(TD_OK);
    }
}

Test(errors, errors_of_ops_whose_vars_were_freed_still_reach_wait_all, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        static struct counted slow, f, skipped;
        counted_reset(&slow, TD_OK, NULL);
        counted_reset(&f, TD_EFAILED, "temporary broke");
        counted_reset(&skipped, TD_OK, NULL);
        td_var *t = tt_var(), *t2 = tt_var();
        push_counted("temp_fail", &f, NULL, 0, &t, 1, 0);
        push_counted("temp_reader", &skipped, &t, 1, &t2, 1, 0);
        /* Released before anyone waited (and, on the threaded engine, most
         * likely before the op ran). */
        td_var_free(t);
        td_var_free(t2);
        td_status st = td_wait_all();
        expect_reported("td_wait_all", st, TD_EFAILED, "temp_fail", "temporary broke", engine);
        cr_assert_eq(atomic_load(&f.called), 1);
        cr_assert_eq(atomic_load(&skipped.called), 0);
        tt_stop(TD_OK);
        cr_assert_eq(atomic_load(&skipped.freed), 1);
    }
}

Test(errors, error_reported_by_a_var_wait_is_not_returned_by_wait_all, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        static struct counted f1, f2;
        counted_reset(&f1, TD_EIO, "seen by a wait");
        counted_reset(&f2, TD_EFAILED, "never waited");
        td_var *a = tt_var(), *b = tt_var();
        push_counted("waited_fail", &f1, NULL, 0, &a, 1, 0);
        expect_wait(a, TD_EIO, "waited_fail", "seen by a wait", engine, "the first failure");
        td_status st = td_wait_all();
        cr_assert_eq(st, TD_OK, "%s engine: td_wait_all returned %s for an error already reported",
                     tt_engine_name(engine), td_status_name(st));
        /* With a later unreported error, that one is returned, not the first. */
        push_counted("unwaited_fail", &f2, NULL, 0, &b, 1, 0);
        st = td_wait_all();
        expect_reported("td_wait_all", st, TD_EFAILED, "unwaited_fail", "never waited", engine);
        td_var_free(a);
        td_var_free(b);
        tt_stop(TD_OK);
    }
}

enum { MANY_FAILS = 100 };
static struct counted many[2][MANY_FAILS];

static void push_many_failures(int batch, td_var **vars) {
    static char names[2][MANY_FAILS][16];
    for (int i = 0; i < MANY_FAILS; i++) {
        vars[i] = tt_var();
        snprintf(names[batch][i], sizeof names[batch][i], "fail_%d_%03d", batch, i);
        counted_reset(&many[batch][i], TD_EFAILED, "one of many");
        push_counted(names[batch][i], &many[batch][i], NULL, 0, &vars[i], 1, 0);
    }
}

Test(errors, at_most_64_unreported_records_are_kept_the_earliest, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        td_var *vars[MANY_FAILS];
        push_many_failures(0, vars);
        td_status st = td_wait_all();
        expect_reported("td_wait_all", st, TD_EFAILED, "fail_0_000", "one of many", engine);
        cr_assert_eq(td_wait_all(), TD_OK, "%s engine: records survived td_wait_all",
                     tt_engine_name(engine));
        /* Marks on vars are not limited: the last op's var still fails. */
        expect_wait(vars[MANY_FAILS - 1], TD_EFAILED, "fail_0_099", "one of many", engine,
                    "var of the 100th failure");
        for (int i = 0; i < MANY_FAILS; i++) td_var_free(vars[i]);

        /* Again, with the earliest reported by a wait: the next is returned. */
        push_many_failures(1, vars);
        expect_wait(vars[0], TD_EFAILED, "fail_1_000", "one of many", engine,
                    "var of the first failure");
        st = td_wait_all();
        expect_reported("td_wait_all", st, TD_EFAILED, "fail_1_001", "one of many", engine);
        for (int i = 0; i < MANY_FAILS; i++) td_var_free(vars[i]);
        tt_stop(TD_OK);
    }
}

Test(errors, shutdown_returns_the_first_unreported_error, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        static struct counted f1, f2, f3;
        counted_reset(&f1, TD_EIO, "reported early");
        counted_reset(&f2, TD_EDEVICE, "first unreported");
        counted_reset(&f3, TD_EFAILED, "second unreported");
        td_var *a = tt_var(), *b = tt_var(), *c = tt_var();
        push_counted("shut_fail_1", &f1, NULL, 0, &a, 1, 0);
        expect_wait(a, TD_EIO, "shut_fail_1", "reported early", engine, "first failure");
        push_counted("shut_fail_2", &f2, NULL, 0, &b, 1, 0);
        push_counted("shut_fail_3", &f3, NULL, 0, &c, 1, 0);
        td_var_free(a);
        td_var_free(b);
        td_var_free(c);
        td_status st = td_shutdown();
        expect_reported("td_shutdown", st, TD_EDEVICE, "shut_fail_2", "first unreported", engine);
        cr_assert_not(td_is_running());
        st = td_shutdown();
        cr_assert_eq(st, TD_OK, "%s engine: a second td_shutdown returned %s",
                     tt_engine_name(engine), td_status_name(st));
    }
}

/* ---- push-time failures ---- */

static void expect_push_fails(const td_op *op, td_status want, int engine, const char *what) {
    td_clear_error();
    td_status st = td_push(op);
    if (want == TD_EDEVICE)
        cr_assert(st == TD_EDEVICE || st == TD_EINVAL,
                  "%s engine, %s: td_push returned %s, expected TD_EDEVICE",
                  tt_engine_name(engine), what, td_status_name(st));
    else
        cr_assert_eq(st, want, "%s engine, %s: td_push returned %s, expected %s",
                     tt_engine_name(engine), what, td_status_name(st), td_status_name(want));
    cr_assert_eq(td_last_status(), st, "%s engine, %s: td_last_status() not set",
                 tt_engine_name(engine), what);
    cr_assert(td_last_error()[0] != '\0', "%s engine, %s: no message", tt_engine_name(engine),
              what);
}

Test(errors, push_rejects_bad_arguments_without_queueing_or_freeing, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        static struct counted c, good;
        counted_reset(&c, TD_OK, NULL);
        counted_reset(&good, TD_OK, NULL);
        td_var *v = tt_var(), *u = tt_var();
        td_op base = tt_op("bad_op", counted_fn, &c, &u, 1, &v, 1);
        base.arg_free = counted_free;
        td_op op;

        expect_push_fails(NULL, TD_EINVAL, engine, "NULL op");
        op = base;
        op.fn = NULL;
        expect_push_fails(&op, TD_EINVAL, engine, "NULL fn");
        op = base;
        op.reads = (td_var *[]){u, NULL};
        op.n_reads = 2;
        expect_push_fails(&op, TD_EINVAL, engine, "NULL var in reads");
        op = base;
        op.writes = (td_var *[]){NULL, v};
        op.n_writes = 2;
        expect_push_fails(&op, TD_EINVAL, engine, "NULL var in writes");
        op = base;
        op.reads = NULL;
        op.n_reads = 1;
        expect_push_fails(&op, TD_EINVAL, engine, "n_reads > 0 with NULL reads");
        op = base;
        op.writes = NULL;
        op.n_writes = 1;
        expect_push_fails(&op, TD_EINVAL, engine, "n_writes > 0 with NULL writes");
        op = base;
        op.flags = 1 << 12;
        expect_push_fails(&op, TD_EINVAL, engine, "unknown flags");
        op = base;
        op.flags = TD_OP_OVERWRITE | (1 << 20);
        expect_push_fails(&op, TD_EINVAL, engine, "a known and an unknown flag");
        op = base;
        op.device = td_gpu(0);
        expect_push_fails(&op, TD_EDEVICE, engine, "absent GPU");
        op = base;
        op.device = td_cpu(1000);
        expect_push_fails(&op, TD_EDEVICE, engine, "absent CPU device");

        /* Nothing was queued: the vars are free, a valid op on them runs and
         * the engine has no error to report. */
        push_counted("good_op", &good, &u, 1, &v, 1, 0);
        expect_wait(v, TD_OK, NULL, NULL, engine, "var named by rejected ops");
        cr_assert_eq(td_wait_all(), TD_OK, "%s engine: push-time failures reached td_wait_all",
                     tt_engine_name(engine));
        cr_assert_eq(atomic_load(&good.called), 1);
        cr_assert_eq(atomic_load(&c.called), 0, "%s engine: a rejected op ran",
                     tt_engine_name(engine));
        td_var_free(v);
        td_var_free(u);
        tt_stop(TD_OK);
        cr_assert_eq(atomic_load(&c.freed), 0, "%s engine: arg_free called for a rejected op",
                     tt_engine_name(engine));
        cr_assert_eq(atomic_load(&good.freed), 1);
    }
}

/* ---- TD_EBUSY for every blocking call inside an op ---- */

enum { CALL_VAR_WAIT_READ, CALL_VAR_WAIT_IDLE, CALL_WAIT_ALL, CALL_SHUTDOWN };
struct busy_arg {
    int call;
    td_var *target;
    td_status got;
    td_status last_status;
    int has_message;
    double seconds;
    int ran;
};

static td_status busy_fn(void *arg, const td_exec *ex) {
    (void)ex;
    struct busy_arg *b = arg;
    td_clear_error();
    double t0 = tt_now();
    switch (b->call) {
    case CALL_VAR_WAIT_READ:
    case CALL_VAR_WAIT_IDLE: b->got = td_var_wait(b->target); break;
    case CALL_WAIT_ALL: b->got = td_wait_all(); break;
    case CALL_SHUTDOWN: b->got = td_shutdown(); break;
    }
    b->seconds = tt_now() - t0;
    b->last_status = td_last_status();
    b->has_message = td_last_error()[0] != '\0';
    b->ran = 1;
    return TD_OK;
}

/* Pushes an op that makes `call` and checks that it returned TD_EBUSY at once,
 * then that the same call works again from the user's thread. */
static void check_busy(int engine, int call, const char *what) {
    static struct counted prep, earlier_fail;
    counted_reset(&prep, TD_OK, NULL);
    counted_reset(&earlier_fail, TD_EIO, "pending report");
    td_var *ready = tt_var(), *idle = tt_var(), *out = tt_var(), *bad = tt_var();
    push_counted("prepare", &prep, NULL, 0, &ready, 1, 0);
    cr_assert_eq(td_var_wait(ready), TD_OK);
    /* An unreported failure, which a td_wait_all made inside the op must not
     * consume. */
    push_counted("earlier_fail", &earlier_fail, NULL, 0, &bad, 1, 0);
    if (call == CALL_WAIT_ALL || call == CALL_SHUTDOWN) {
        /* Let it finish, so the call inside the op would have nothing to wait
         * for. */
        double end = tt_now() + 10.0;
        while (atomic_load(&earlier_fail.called) == 0 && tt_now() < end) tt_sleep_ms(1);
        tt_sleep_ms(5);
    }
    struct busy_arg b = {.call = call, .target = call == CALL_VAR_WAIT_IDLE ? idle : ready};
    td_op op = tt_op("busy_caller", busy_fn, &b, &ready, 1, &out, 1);
    tt_push(&op);
    cr_assert_eq(td_var_wait(out), TD_OK);
    cr_assert(b.ran);
    cr_assert_eq(b.got, TD_EBUSY, "%s engine: %s inside an op returned %s, expected TD_EBUSY",
                 tt_engine_name(engine), what, td_status_name(b.got));
    cr_assert_eq(b.last_status, TD_EBUSY, "%s engine: %s inside an op: td_last_status() is %s",
                 tt_engine_name(engine), what, td_status_name(b.last_status));
    cr_assert(b.has_message, "%s engine: %s inside an op: no message", tt_engine_name(engine),
              what);
    cr_assert_lt(b.seconds, 1.0, "%s engine: %s inside an op took %.3f s, not at once",
                 tt_engine_name(engine), what, b.seconds);
    /* The runtime is untouched and the user's thread may block again. */
    cr_assert(td_is_running(), "%s engine: %s inside an op stopped the runtime",
              tt_engine_name(engine), what);
    cr_assert_eq(td_var_wait(ready), TD_OK);
    td_status st = td_wait_all();
    expect_reported("td_wait_all", st, TD_EIO, "earlier_fail", "pending report", engine);
    td_var_free(ready);
    td_var_free(idle);
    td_var_free(out);
    td_var_free(bad);
}

Test(errors, var_wait_inside_an_op_is_busy_even_when_ready, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        check_busy(engine, CALL_VAR_WAIT_READ, "td_var_wait on a var the op reads");
        check_busy(engine, CALL_VAR_WAIT_IDLE, "td_var_wait on a var with nothing pending");
        tt_stop(TD_OK);
    }
}

Test(errors, wait_all_inside_an_op_is_busy_even_when_idle, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        check_busy(engine, CALL_WAIT_ALL, "td_wait_all");
        tt_stop(TD_OK);
    }
}

Test(errors, shutdown_inside_an_op_is_busy_and_stops_nothing, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        check_busy(engine, CALL_SHUTDOWN, "td_shutdown");
        tt_stop(TD_OK);
    }
}
