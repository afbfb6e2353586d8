/* Bad input and bad usage: tide-trace says what is wrong on standard error
 * and exits 1 (bad input) or 2 (bad usage), never crashing or hanging.
 *
 * Each case runs through the library (status and message) and through the
 * program (exit status, message, and in ASan builds no sanitizer report,
 * which tr_exec checks).
 */
#include "trace_common.h"

typedef struct {
    const char *what;   /* the case */
    const char *text;   /* the file's content */
    td_trace_status st; /* what td_trace_load returns */
    const char *says;   /* a part of the message */
} bad_case;

#define OP(fields) "{\"ph\":\"X\",\"name\":\"op\",\"pid\":0,\"tid\":0," fields "}"

static const bad_case cases[] = {
    {"an empty file", "", TD_TRACE_EFORMAT, "empty"},
    {"text that is not JSON", "hello, world", TD_TRACE_EFORMAT, "not JSON"},
    {"a truncated trace", "{\"traceEvents\":[{\"ph\":\"X\",\"name\":\"o", TD_TRACE_EFORMAT, "not JSON"},
    {"JSON without traceEvents", "{\"events\":[]}", TD_TRACE_EFORMAT, "traceEvents"},
    {"traceEvents that is not an array", "{\"traceEvents\":{}}", TD_TRACE_EFORMAT, "traceEvents"},
    {"a top-level array", "[]", TD_TRACE_EFORMAT, "traceEvents"},
    {"an event that is not an object", "{\"traceEvents\":[1]}", TD_TRACE_EFORMAT, "event 0"},
    {"an event without ph", "{\"traceEvents\":[{\"name\":\"x\"}]}", TD_TRACE_EFORMAT, "\"ph\""},
    {"an op without dur", "{\"traceEvents\":[" OP("\"ts\":0,\"args\":{\"push\":1}") "]}", TD_TRACE_EFORMAT,
     "\"dur\""},
    {"an op with a negative dur", "{\"traceEvents\":[" OP("\"ts\":0,\"dur\":-1,\"args\":{\"push\":1}") "]}",
     TD_TRACE_EFORMAT, "\"dur\""},
    {"an op without ts", "{\"traceEvents\":[" OP("\"dur\":1,\"args\":{\"push\":1}") "]}", TD_TRACE_EFORMAT,
     "\"ts\""},
    {"an op without args", "{\"traceEvents\":[" OP("\"ts\":0,\"dur\":1") "]}", TD_TRACE_EFORMAT, "\"args\""},
    {"an op without a push number", "{\"traceEvents\":[" OP("\"ts\":0,\"dur\":1,\"args\":{}") "]}",
     TD_TRACE_EFORMAT, "push"},
    {"a push number that is not a whole number",
     "{\"traceEvents\":[" OP("\"ts\":0,\"dur\":1,\"args\":{\"push\":1.5}") "]}", TD_TRACE_EFORMAT, "push"},
    {"a name that is not a string",
     "{\"traceEvents\":[{\"ph\":\"X\",\"name\":7,\"pid\":0,\"tid\":0,\"ts\":0,\"dur\":1,\"args\":{\"push\":1}}]}",
     TD_TRACE_EFORMAT, "\"name\""},
    {"two ops with one push number",
     "{\"traceEvents\":[" OP("\"ts\":0,\"dur\":1,\"args\":{\"push\":4}") "," OP("\"ts\":1,\"dur\":1,\"args\":{\"push\":4}") "]}",
     TD_TRACE_EFORMAT, "same push number 4"},
    {"a flow without to", "{\"traceEvents\":[{\"ph\":\"s\",\"args\":{\"from\":1}}]}", TD_TRACE_EFORMAT,
     "args.to"},
    {"a thread name without its name",
     "{\"traceEvents\":[{\"ph\":\"M\",\"pid\":0,\"tid\":0,\"name\":\"thread_name\",\"args\":{}}]}",
     TD_TRACE_EFORMAT, "args.name"},
};

Test(trace_bad, each_bad_trace_is_refused_with_a_message) {
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const bad_case *c = &cases[i];
        char err[512];
        static td_trace dummy;
        td_trace *t = &dummy; /* must be reset to NULL */
        td_trace_status st = td_trace_parse(c->text, strlen(c->text), &t, err, sizeof err);
        cr_assert_eq(st, c->st, "%s: status %d, message: %s", c->what, (int)st, err);
        cr_assert_null(t, "%s: no trace on failure", c->what);
        cr_assert(strstr(err, c->says), "%s: the message does not say '%s': %s", c->what, c->says, err);
    }
}

Test(trace_bad, the_program_exits_1_with_a_message_for_each_bad_trace, .timeout = 120) {
    char path[128];
    tr_tmp(path, sizeof path, "bad", "json");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const bad_case *c = &cases[i];
        tr_write(path, c->text);
        tr_run r = tr_exec((const char *[]){path, NULL});
        cr_assert_eq(r.status, 1, "%s: exit status %d\n%s", c->what, r.status, r.err);
        cr_assert(strstr(r.err, "tide-trace: ") && strstr(r.err, path) && strstr(r.err, c->says),
                  "%s: the message names the program, the file and the fault: %s", c->what, r.err);
        cr_assert_str_eq(r.out, "", "%s: nothing on standard output", c->what);
        tr_run_free(&r);
    }
    remove(path);
}

Test(trace_bad, a_missing_file_or_a_folder_is_an_io_error) {
    char err[512];
    td_trace *t = NULL;
    cr_assert_eq(td_trace_load("/nonexistent/trace.json", &t, err, sizeof err), TD_TRACE_EIO);
    cr_assert(strstr(err, "/nonexistent/trace.json") && strstr(err, "cannot open"), "%s", err);
    cr_assert_eq(td_trace_load("/tmp", &t, err, sizeof err), TD_TRACE_EIO);
    cr_assert(strstr(err, "/tmp") && strstr(err, "cannot read"), "%s", err);
    cr_assert_null(t);
    tr_run r = tr_exec((const char *[]){"/nonexistent/trace.json", NULL});
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "cannot open"), "%s", r.err);
    tr_run_free(&r);
}

Test(trace_bad, nesting_deeper_than_the_parser_takes_is_refused_not_a_stack_overflow) {
    enum { DEPTH = 100000 };
    char *text = malloc(2 * DEPTH + 1);
    cr_assert_not_null(text);
    memset(text, '[', DEPTH);
    memset(text + DEPTH, ']', DEPTH);
    text[2 * DEPTH] = '\0';
    char err[512];
    td_trace *t = NULL;
    cr_assert_eq(td_trace_parse(text, 2 * DEPTH, &t, err, sizeof err), TD_TRACE_EFORMAT);
    free(text);
}

/* Flows that make no sense are left out with a warning; the summary is
 * still printed, and the exit status says the input was bad. */
static const char *const CYCLE =
    "{\"traceEvents\":["
    "{\"ph\":\"X\",\"name\":\"a\",\"pid\":0,\"tid\":0,\"ts\":0,\"dur\":1,\"args\":{\"push\":1}},"
    "{\"ph\":\"X\",\"name\":\"b\",\"pid\":0,\"tid\":0,\"ts\":1,\"dur\":1,\"args\":{\"push\":2}},"
    "{\"ph\":\"X\",\"name\":\"c\",\"pid\":0,\"tid\":0,\"ts\":2,\"dur\":1,\"args\":{\"push\":3}},"
    "{\"ph\":\"s\",\"args\":{\"from\":1,\"to\":2}},"
    "{\"ph\":\"s\",\"args\":{\"from\":2,\"to\":3}},"
    "{\"ph\":\"s\",\"args\":{\"from\":3,\"to\":1}},"  /* closes a cycle */
    "{\"ph\":\"s\",\"args\":{\"from\":2,\"to\":2}},"  /* a loop */
    "{\"ph\":\"s\",\"args\":{\"from\":1,\"to\":99}}" /* an unknown op */
    "]}";

Test(trace_bad, cycles_loops_and_unknown_ops_in_flows_are_ignored_with_warnings) {
    td_trace *t = tr_parse_ok(CYCLE);
    cr_assert_eq(t->n_flows, 2);
    cr_assert_eq(t->n_flows_ignored, 3);
    cr_assert_eq(t->n_warnings, 3);
    cr_assert(strstr(t->warnings[0], "3 -> 1") && strstr(t->warnings[0], "ignored"), "%s", t->warnings[0]);
    cr_assert(strstr(t->warnings[1], "2 -> 2"), "%s", t->warnings[1]);
    cr_assert(strstr(t->warnings[2], "99") && strstr(t->warnings[2], "no op"), "%s", t->warnings[2]);
    td_trace_summary *s = tr_summarise(t);
    cr_assert_eq(s->n_path, 3, "the path follows the flows that are left: a, b, c");
    td_trace_summary_free(s);
    td_trace_free(t);

    char path[128];
    tr_tmp(path, sizeof path, "cycle", "json");
    tr_write(path, CYCLE);
    tr_run r = tr_exec((const char *[]){path, NULL});
    cr_assert_eq(r.status, 1, "ignored flows make the exit status 1");
    cr_assert_eq(tr_count(r.err, "warning"), 3, "%s", r.err);
    cr_assert(strstr(r.out, "critical path: 3.0 us"), "the summary is still printed:\n%s", r.out);
    cr_assert(strstr(r.out, "3 more ignored"), "%s", r.out);
    tr_run_free(&r);
    remove(path);
}

Test(trace_bad, wrong_usage_exits_2_and_help_exits_0) {
    char path[128];
    tr_tmp(path, sizeof path, "usage", "json");
    tr_write(path, "{\"traceEvents\":[]}");
    struct {
        const char *args[6];
        int status;
        const char *says; /* on stderr, or on stdout for --help */
    } runs[] = {
        {{NULL}, 2, "usage: tide-trace"},
        {{"--bogus", path, NULL}, 2, "unknown option '--bogus'"},
        {{"--top", "ten", path, NULL}, 2, "--top wants"},
        {{"--top", "-1", path, NULL}, 2, "--top wants"},
        {{path, "--top", NULL}, 2, "--top needs a value"},
        {{"--width", "10", path, NULL}, 2, "--width wants"},
        {{path, path, NULL}, 2, "one trace at a time"},
        {{"--help", NULL}, 0, "usage: tide-trace"},
        {{"-h", NULL}, 0, "exit status"},
        {{path, "--svg", "/nonexistent/dir/t.svg", NULL}, 1, "cannot write the SVG"},
    };
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
        tr_run r = tr_exec(runs[i].args);
        cr_assert_eq(r.status, runs[i].status, "run %zu: exit status %d, wanted %d\n%s%s", i, r.status, runs[i].status,
                     r.out, r.err);
        cr_assert(strstr(runs[i].status == 0 ? r.out : r.err, runs[i].says), "run %zu does not say '%s':\n%s%s", i,
                  runs[i].says, r.out, r.err);
        tr_run_free(&r);
    }
    remove(path);
}
