/* tide-trace's numbers on hand-written traces whose answers are known, and
 * on a large generated one (time bounded: no quadratic step).
 *
 * The small trace: three ops on two workers of one device, microseconds
 *   worker 0:  first  [100, 110)          third [117, 120)   (third failed)
 *   worker 1:         second [105, 117)
 * with flows first -> third and second -> third.  Span 20, busy 13 and 12,
 * op time 25, two ops at once during [105, 110), and the critical path is
 * second, third (12 + 3 = 15 against 10 + 3).
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <time.h>

#include "trace_common.h"

static const char *const SMALL =
    "{\"traceEvents\":[\n"
    "{\"ph\":\"M\",\"pid\":0,\"name\":\"process_name\",\"args\":{\"name\":\"cpu:0 (a test device)\"}},\n"
    "{\"ph\":\"M\",\"pid\":0,\"tid\":1,\"name\":\"thread_name\",\"args\":{\"name\":\"worker 1\"}},\n"
    "{\"ph\":\"M\",\"pid\":0,\"tid\":0,\"name\":\"thread_name\",\"args\":{\"name\":\"worker 0\"}},\n"
    "{\"ph\":\"X\",\"cat\":\"op\",\"name\":\"third\",\"pid\":0,\"tid\":0,\"ts\":117,\"dur\":3,\"args\":{\"push\":3,"
    "\"status\":\"TD_EFAILED\",\"pushed_us\":92,\"ready_us\":117,\"queued_us\":0,\"reads\":[],\"writes\":[]}},\n"
    "{\"ph\":\"X\",\"cat\":\"op\",\"name\":\"first\",\"pid\":0,\"tid\":0,\"ts\":100,\"dur\":10,\"args\":{\"push\":1,"
    "\"status\":\"TD_OK\",\"pushed_us\":90,\"ready_us\":95,\"queued_us\":5,\"reads\":[],\"writes\":[1]}},\n"
    "{\"ph\":\"X\",\"cat\":\"op\",\"name\":\"second\",\"pid\":0,\"tid\":1,\"ts\":105,\"dur\":12,\"args\":{\"push\":2,"
    "\"status\":\"TD_OK\",\"pushed_us\":91,\"ready_us\":93,\"queued_us\":12,\"reads\":[],\"writes\":[2]}},\n"
    "{\"ph\":\"C\",\"name\":\"ready queue\",\"pid\":0,\"ts\":100,\"args\":{\"depth\":4}},\n"
    "{\"ph\":\"C\",\"name\":\"bytes in flight\",\"pid\":0,\"ts\":110,\"args\":{\"bytes\":1048576}},\n"
    "{\"ph\":\"s\",\"cat\":\"dep\",\"name\":\"dep\",\"id\":1,\"pid\":0,\"tid\":0,\"ts\":110,\"args\":{\"from\":1,\"to\":3}},\n"
    "{\"ph\":\"f\",\"bp\":\"e\",\"cat\":\"dep\",\"name\":\"dep\",\"id\":1,\"pid\":0,\"tid\":0,\"ts\":117,"
    "\"args\":{\"from\":1,\"to\":3}},\n"
    "{\"ph\":\"s\",\"cat\":\"dep\",\"name\":\"dep\",\"id\":2,\"pid\":0,\"tid\":1,\"ts\":117,\"args\":{\"from\":2,\"to\":3}},\n"
    "{\"ph\":\"f\",\"bp\":\"e\",\"cat\":\"dep\",\"name\":\"dep\",\"id\":2,\"pid\":0,\"tid\":0,\"ts\":117,"
    "\"args\":{\"from\":2,\"to\":3}}\n"
    "]}\n";

#define EPS 1e-9

Test(trace_exact, three_ops_on_two_workers_give_exact_figures) {
    td_trace *t = tr_parse_ok(SMALL);
    td_trace_summary *s = tr_summarise(t);
    cr_assert_eq(t->n_ops, 3);
    cr_assert_eq(t->n_flows, 2);
    cr_assert_eq(t->n_warnings, 0);
    for (size_t i = 0; i < 3; i++) cr_assert_eq(t->ops[i].push, i + 1, "ops are sorted by push number");
    cr_assert_eq(t->n_devices, 1);
    cr_assert_str_eq(t->devices[0].name, "cpu:0 (a test device)");
    cr_assert_eq(t->n_tracks, 2);
    cr_assert_str_eq(t->tracks[0].name, "worker 0");
    cr_assert_str_eq(t->tracks[1].name, "worker 1");

    cr_assert_float_eq(s->t0, 100, EPS);
    cr_assert_float_eq(s->span, 20, EPS);
    cr_assert_float_eq(s->op_time, 25, EPS);
    cr_assert_float_eq(s->parallelism, 1.25, EPS);
    cr_assert_float_eq(s->track_busy[0].busy, 13, EPS);
    cr_assert_float_eq(s->track_busy[0].utilisation, 0.65, EPS);
    cr_assert_float_eq(s->track_busy[1].utilisation, 0.60, EPS);
    cr_assert_eq(s->track_busy[0].n_ops, 2);
    cr_assert_float_eq(s->device_busy[0].utilisation, 25.0 / 40.0, EPS);

    cr_assert_eq(s->n_running, 3, "at most two ops at once");
    cr_assert_float_eq(s->time_running[0], 0, EPS);
    cr_assert_float_eq(s->time_running[1], 15, EPS);
    cr_assert_float_eq(s->time_running[2], 5, EPS);

    /* queued {0, 5, 12}; push -> ready {5, 2, 25} */
    cr_assert_eq(s->queued.n, 3);
    cr_assert_float_eq(s->queued.median, 5, EPS);
    cr_assert_float_eq(s->queued.p90, 10.6, EPS);
    cr_assert_float_eq(s->queued.max, 12, EPS);
    cr_assert_float_eq(s->ready_delay.median, 5, EPS);
    cr_assert_float_eq(s->ready_delay.p90, 21, EPS);
    cr_assert_float_eq(s->ready_delay.max, 25, EPS);

    cr_assert_eq(s->n_path, 2);
    cr_assert_eq(t->ops[s->path[0]].push, 2);
    cr_assert_eq(t->ops[s->path[1]].push, 3);
    cr_assert_float_eq(s->path_time, 15, EPS);

    cr_assert_eq(s->n_names, 3);
    cr_assert_str_eq(s->names[0].name, "second");
    cr_assert_str_eq(s->names[1].name, "first");
    cr_assert_str_eq(s->names[2].name, "third");
    cr_assert_eq(s->n_failed, 1);
    cr_assert_eq(s->n_skipped, 0);
    cr_assert_float_eq(t->max_ready_depth, 4, EPS);
    cr_assert_float_eq(t->max_bytes_in_flight, 1048576, EPS);
    td_trace_summary_free(s);
    td_trace_free(t);
}

Test(trace_exact, the_text_and_json_say_the_same_figures) {
    td_trace *t = tr_parse_ok(SMALL);
    td_trace_summary *s = tr_summarise(t);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_eq(td_trace_print_text(f, "small", t, s, 10), 0);
    fclose(f);
    cr_assert(strstr(text, "parallelism achieved: 1.25"), "%s", text);
    cr_assert(strstr(text, "critical path: 15.0 us, 75.0% of the span, 2 ops"), "%s", text);
    cr_assert(strstr(text, "span 20.0 us"), "%s", text);
    cr_assert(strstr(text, "65.0%") && strstr(text, "60.0%") && strstr(text, "62.5%"), "%s", text);
    cr_assert(strstr(text, "1 op failed"), "%s", text);
    free(text);

    f = open_memstream(&text, &len);
    cr_assert_eq(td_trace_print_json(f, "small", t, s, 1), 0);
    fclose(f);
    cJSON *root = cJSON_Parse(text);
    cr_assert_not_null(root, "%s", text);
    cr_assert_float_eq(cJSON_GetObjectItemCaseSensitive(root, "parallelism")->valuedouble, 1.25, EPS);
    cr_assert_float_eq(cJSON_GetObjectItemCaseSensitive(root, "span_us")->valuedouble, 20, EPS);
    const cJSON *cp = cJSON_GetObjectItemCaseSensitive(root, "critical_path");
    cr_assert_float_eq(cJSON_GetObjectItemCaseSensitive(cp, "share_of_span")->valuedouble, 0.75, EPS);
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(cp, "n_ops")->valuedouble, 2);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(cp, "ops")), 1, "--top 1 lists one op");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(root, "names")), 1);
    const cJSON *run = cJSON_GetObjectItemCaseSensitive(root, "running");
    cr_assert_float_eq(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(run, 2), "share")->valuedouble, 0.25,
                       EPS);
    cJSON_Delete(root);
    free(text);
    td_trace_summary_free(s);
    td_trace_free(t);
}

Test(trace_exact, the_program_prints_the_same_and_exits_zero) {
    char path[128];
    tr_tmp(path, sizeof path, "small", "json");
    tr_write(path, SMALL);
    tr_run r = tr_exec((const char *[]){path, NULL});
    cr_assert_eq(r.status, 0, "%s", r.err);
    cr_assert_str_eq(r.err, "", "nothing on standard error for a sound trace");
    cr_assert(strstr(r.out, "critical path: 15.0 us, 75.0% of the span, 2 ops"), "%s", r.out);
    tr_run_free(&r);
    remove(path);
}

/* Equal chains: the path keeps the lower push numbers. */
Test(trace_exact, ties_go_to_the_lower_push_number) {
    td_trace *t = tr_parse_ok(
        "{\"traceEvents\":["
        "{\"ph\":\"X\",\"name\":\"a\",\"pid\":0,\"tid\":0,\"ts\":0,\"dur\":5,\"args\":{\"push\":10}},"
        "{\"ph\":\"X\",\"name\":\"b\",\"pid\":0,\"tid\":1,\"ts\":0,\"dur\":5,\"args\":{\"push\":11}},"
        "{\"ph\":\"X\",\"name\":\"c\",\"pid\":0,\"tid\":0,\"ts\":5,\"dur\":5,\"args\":{\"push\":12}},"
        "{\"ph\":\"s\",\"args\":{\"from\":11,\"to\":12}},{\"ph\":\"s\",\"args\":{\"from\":10,\"to\":12}}]}");
    td_trace_summary *s = tr_summarise(t);
    cr_assert_eq(s->n_path, 2);
    cr_assert_eq(t->ops[s->path[0]].push, 10);
    cr_assert_eq(t->ops[s->path[1]].push, 12);
    /* Without metadata, tracks and devices are named by number. */
    cr_assert_str_eq(t->devices[0].name, "pid 0");
    cr_assert_str_eq(t->tracks[1].name, "tid 1");
    cr_assert(isnan(t->ops[0].queued_us), "absent args are NAN");
    cr_assert_eq(s->queued.n, 0);
    td_trace_summary_free(s);
    td_trace_free(t);
}

Test(trace_exact, no_ops_is_an_empty_summary_not_an_error) {
    td_trace *t = tr_parse_ok("{\"traceEvents\":[]}");
    td_trace_summary *s = tr_summarise(t);
    cr_assert_eq(s->n_ops, 0);
    cr_assert_eq(s->n_path, 0);
    cr_assert_float_eq(s->span, 0, EPS);
    cr_assert_float_eq(s->parallelism, 0, EPS);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_eq(td_trace_print_text(f, NULL, t, s, 0), 0);
    cr_assert_eq(td_trace_print_json(f, NULL, t, s, 0), 0);
    cr_assert_eq(td_trace_write_svg(f, t, s, NULL), 0);
    fclose(f);
    cr_assert(strstr(text, "0 ops"), "%s", text);
    free(text);
    td_trace_summary_free(s);
    td_trace_free(t);
}

Test(trace_exact, svg_text_is_escaped_and_what_xml_cannot_hold_becomes_a_question_mark) {
    /* A control character (escaped in JSON), a byte that is not UTF-8, and a
     * valid two-byte character that must survive. */
    td_trace *t = tr_parse_ok("{\"traceEvents\":["
                              "{\"ph\":\"X\",\"name\":\"x\\u0001y\",\"pid\":0,\"tid\":0,\"ts\":0,\"dur\":5,"
                              "\"args\":{\"push\":1}},"
                              "{\"ph\":\"X\",\"name\":\"bad\xff<'>\",\"pid\":0,\"tid\":0,\"ts\":5,\"dur\":5,"
                              "\"args\":{\"push\":2}},"
                              "{\"ph\":\"X\",\"name\":\"\xc3\xa9t\xc3\xa9\",\"pid\":0,\"tid\":0,\"ts\":10,\"dur\":0,"
                              "\"args\":{\"push\":3}}]}");
    td_trace_summary *s = tr_summarise(t);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_eq(td_trace_write_svg(f, t, s, NULL), 0);
    fclose(f);
    cr_assert_eq(tr_count(text, "<rect"), 3, "an op of no duration still gets its <rect>");
    cr_assert(strstr(text, ">x?y (push 1)"), "the control character became '?'");
    cr_assert(strstr(text, ">bad?&lt;&apos;&gt; (push 2)"), "the stray byte became '?', the rest escaped");
    cr_assert(strstr(text, "\xc3\xa9t\xc3\xa9"), "UTF-8 passes through");
    cr_assert_null(memchr(text, 0x01, len));
    cr_assert_null(memchr(text, 0xff, len));
    free(text);
    td_trace_summary_free(s);
    td_trace_free(t);
}

Test(trace_exact, time_formats_pick_a_unit) {
    char b[32];
    cr_assert_str_eq(td_trace_fmt_time(b, sizeof b, 0.5), "500 ns");
    cr_assert_str_eq(td_trace_fmt_time(b, sizeof b, 12.34), "12.3 us");
    cr_assert_str_eq(td_trace_fmt_time(b, sizeof b, 4560), "4.56 ms");
    cr_assert_str_eq(td_trace_fmt_time(b, sizeof b, 1234567), "1.235 s");
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* n ops of 1 us, back to back on 4 tracks, each depending on the one before
 * (a chain through all of them) and on op 0 (a star), plus backward flows
 * that must be ignored: every step must stay near linear. */
Test(trace_exact, a_large_trace_is_summarised_in_near_linear_time, .timeout = 240) {
    const char *q = getenv("TIDE_TEST_QUICK");
    size_t n = q && *q && strcmp(q, "0") != 0 ? 10000 : 40000;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    fputs("{\"traceEvents\":[\n", f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "{\"ph\":\"X\",\"name\":\"op%zu\",\"pid\":0,\"tid\":%zu,\"ts\":%zu,\"dur\":1,\"args\":{\"push\":%zu,"
                   "\"queued_us\":%zu}},\n",
                i % 7, i % 4, i, i, i % 13);
    for (size_t i = 1; i < n; i++) fprintf(f, "{\"ph\":\"s\",\"args\":{\"from\":%zu,\"to\":%zu}},\n", i - 1, i);
    for (size_t i = 2; i < n; i++) fprintf(f, "{\"ph\":\"s\",\"args\":{\"from\":0,\"to\":%zu}},\n", i);
    for (size_t i = 1; i < 100; i++) fprintf(f, "{\"ph\":\"s\",\"args\":{\"from\":%zu,\"to\":%zu}},\n", i, i - 1);
    fputs("{\"ph\":\"C\",\"name\":\"ready queue\",\"pid\":0,\"ts\":0,\"args\":{\"depth\":1}}]}\n", f);
    fclose(f);

    double t0 = now_s();
    char err[512];
    td_trace *t = NULL;
    cr_assert_eq(td_trace_parse(text, len, &t, err, sizeof err), TD_TRACE_OK, "%s", err);
    double t1 = now_s();
    td_trace_summary *s = tr_summarise(t);
    double t2 = now_s();
    FILE *null = fopen("/dev/null", "w");
    cr_assert_eq(td_trace_write_svg(null, t, s, NULL), 0);
    cr_assert_eq(td_trace_print_text(null, "large", t, s, 0), 0);
    fclose(null);
    double t3 = now_s();
    cr_log_info("%zu ops: parse %.3f s, summary %.3f s, svg and text %.3f s", n, t1 - t0, t2 - t1, t3 - t2);

    cr_assert_eq(t->n_ops, n);
    cr_assert_eq(t->n_flows, 2 * n - 3);
    cr_assert_eq(t->n_flows_ignored, 99);
    cr_assert_eq(t->n_warnings, 99, "one warning per ignored flow (the first few kept)");
    cr_assert_eq(s->n_path, n, "the chain through every op is the critical path");
    cr_assert_float_eq(s->path_time, (double)n, EPS);
    cr_assert_float_eq(s->parallelism, 1.0, 1e-9);
    cr_assert_eq(s->n_names, 7);
    cr_assert_lt(t2 - t1, 5.0, "the summary took %.3f s for %zu ops", t2 - t1, n);
    td_trace_summary_free(s);
    td_trace_free(t);
    free(text);
}
