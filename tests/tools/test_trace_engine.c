/* tide-trace on a trace the engine really wrote.
 *
 * A known DAG of ops that spin for known times: a diamond A -> B, A -> C,
 * B -> D, C -> D (B 60 ms, C 20 ms, so A, B, D is the longest chain) beside
 * an independent chain E -> E -> E of 10 ms ops.  A waits until every op is
 * pushed, so every dependency is one the engine had to resolve (a flow in
 * the trace).  C is named a<b&"c" to check the SVG's escaping.
 */
#include <cjson/cJSON.h>
#include <stdatomic.h>

#include "engine/common.h"
#include "trace_common.h"

static atomic_int all_pushed;

typedef struct {
    double us;
    int wait_for_pushes;
} spin_arg;

static td_status spin(void *arg, const td_exec *ex) {
    (void)ex;
    const spin_arg *a = arg;
    if (a->wait_for_pushes) {
        double end = tt_now() + 30;
        while (!atomic_load(&all_pushed) && tt_now() < end) sched_yield();
    }
    tt_spin_us(a->us);
    return TD_OK;
}

static const char *const C_NAME = "a<b&\"c\"";

/* Runs the DAG under the profiler into path; returns the engine's worker count. */
static int make_trace(const char *path) {
    tt_start(TD_ENGINE_THREADED, 2);
    int workers = td_device_workers(td_cpu(0));
    td_var *x = tt_var(), *y = tt_var(), *z = tt_var(), *w = tt_var(), *e = tt_var();
    static spin_arg a = {20000, 1}, b = {60000, 0}, c = {20000, 0}, d = {20000, 0}, chain = {10000, 0};
    td_var *yz[] = {y, z};
    atomic_store(&all_pushed, 0);
    cr_assert_eq(td_profiler_start(path), TD_OK, "%s", td_last_error());
    td_op ops[] = {
        tt_op("A", spin, &a, NULL, 0, &x, 1),   tt_op("B", spin, &b, &x, 1, &y, 1),
        tt_op(C_NAME, spin, &c, &x, 1, &z, 1),  tt_op("D", spin, &d, yz, 2, &w, 1),
        tt_op("E", spin, &chain, NULL, 0, &e, 1), tt_op("E", spin, &chain, NULL, 0, &e, 1),
        tt_op("E", spin, &chain, NULL, 0, &e, 1),
    };
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) tt_push(&ops[i]);
    atomic_store(&all_pushed, 1);
    cr_assert_eq(td_profiler_stop(), TD_OK, "%s", td_last_error());
    td_var_free(x);
    td_var_free(y);
    td_var_free(z);
    td_var_free(w);
    td_var_free(e);
    tt_stop(TD_OK);
    return workers;
}

/* The middle of the longest chain: B spins 60 ms and C 20 ms, but on a
 * loaded machine a preempted op's wall time can be longer, so the answer is
 * whichever of the two the trace says took longer. */
static const char *longer_branch(const td_trace *t) {
    double b = -1, c = -1;
    for (size_t i = 0; i < t->n_ops; i++) {
        if (strcmp(t->ops[i].name, "B") == 0) b = t->ops[i].dur;
        if (strcmp(t->ops[i].name, C_NAME) == 0) c = t->ops[i].dur;
    }
    cr_assert(b >= 0 && c >= 0, "the trace lacks B or C");
    return b >= c ? "B" : C_NAME;
}

Test(trace_engine, the_summary_finds_the_longest_chain_and_the_parallelism, .timeout = 120) {
    char path[128];
    tr_tmp(path, sizeof path, "diamond", "json");
    int workers = make_trace(path);

    char err[512];
    td_trace *t = NULL;
    cr_assert_eq(td_trace_load(path, &t, err, sizeof err), TD_TRACE_OK, "%s", err);
    td_trace_summary *s = tr_summarise(t);
    cr_assert_eq(t->n_ops, 7);
    cr_assert_eq(t->n_warnings, 0, "a trace tide wrote gave warnings: %s", t->warnings[0]);
    cr_assert_geq(t->n_flows, 4, "A -> B, A -> C, B -> D and C -> D are all resolved dependencies");

    /* The critical path: exactly A, B, D (or A, C, D if C took longer), in push order. */
    const char *want[] = {"A", longer_branch(t), "D"};
    cr_assert_eq(s->n_path, 3, "the critical path has %zu ops", s->n_path);
    for (size_t k = 0; k < 3; k++)
        cr_assert_str_eq(t->ops[s->path[k]].name, want[k], "op %zu of the critical path", k);
    cr_assert(t->ops[s->path[0]].push < t->ops[s->path[1]].push && t->ops[s->path[1]].push < t->ops[s->path[2]].push);
    cr_assert_geq(s->path_time, 99000, "A + B + D spin at least 100 ms; the path says %g us", s->path_time);
    if (strcmp(want[1], "B") != 0) cr_log_info("C took longer than B here (a loaded machine)");
    cr_assert_leq(s->path_time, s->span * 1.0001, "a chain of waits cannot take longer than the span");

    for (size_t i = 0; i < t->n_tracks; i++)
        cr_assert(s->track_busy[i].utilisation >= 0 && s->track_busy[i].utilisation <= 1,
                  "track %zu utilisation %g", i, s->track_busy[i].utilisation);
    for (size_t d = 0; d < t->n_devices; d++)
        cr_assert(s->device_busy[d].utilisation >= 0 && s->device_busy[d].utilisation <= 1);
    double sum = 0;
    for (size_t k = 0; k < s->n_running; k++) sum += s->time_running[k];
    cr_assert_float_eq(sum, s->span, s->span * 1e-9 + 1e-6, "the running-at-once times add up to the span");

    if (workers >= 2) {
        cr_assert_gt(s->parallelism, 1.0, "B and C (and E beside A) ran at once on %d workers: parallelism %g",
                     workers, s->parallelism);
        cr_assert_geq(s->n_running, 3, "some time had two ops running");
    } else {
        cr_log_info("the engine has %d worker: parallelism above 1 is not checked", workers);
    }
    cr_assert_eq(s->queued.n, 7);
    cr_assert_eq(s->names[0].count + s->names[1].count + s->names[2].count + s->names[3].count +
                     s->names[4].count,
                 7);
    td_trace_summary_free(s);
    td_trace_free(t);
    remove(path);
}

Test(trace_engine, the_program_writes_text_json_and_an_svg_with_one_rect_per_op, .timeout = 120) {
    char path[128], svg[128];
    tr_tmp(path, sizeof path, "diamond2", "json");
    tr_tmp(svg, sizeof svg, "diamond2", "svg");
    make_trace(path);
    char err[512];
    td_trace *t = NULL;
    cr_assert_eq(td_trace_load(path, &t, err, sizeof err), TD_TRACE_OK, "%s", err);
    const char *middle = longer_branch(t);

    tr_run r = tr_exec((const char *[]){path, "--svg", svg, NULL});
    cr_assert_eq(r.status, 0, "tide-trace failed (%d):\n%s", r.status, r.err);
    cr_assert(strstr(r.out, "critical path") && strstr(r.out, "parallelism achieved") && strstr(r.out, "utilisation"),
              "the text summary lacks a part:\n%s", r.out);
    cr_assert(strstr(r.out, C_NAME), "the text names ops as they are:\n%s", r.out);
    tr_run_free(&r);

    char *text = tr_slurp(svg, NULL);
    cr_assert_not_null(text, "no SVG written");
    cr_assert(strncmp(text, "<svg", 4) == 0, "the SVG starts with: %.40s", text);
    cr_assert(strstr(text, "</svg>\n") && strstr(text, "</svg>\n")[7] == '\0', "the SVG does not end with </svg>");
    cr_assert_eq(tr_count(text, "<rect"), 7, "one <rect> per op");
    cr_assert_geq(tr_count(text, "<title>"), 7, "a tooltip per op");
    cr_assert(strstr(text, "a&lt;b&amp;&quot;c&quot;"), "the name a<b&\"c\" is escaped");
    cr_assert_null(strstr(text, C_NAME), "the raw name a<b&\"c\" is not in the SVG");
    cr_assert_eq(tr_count(text, "<"), tr_count(text, ">"), "tags balance");
    free(text);

    r = tr_exec((const char *[]){"--json", "--top", "0", path, NULL});
    cr_assert_eq(r.status, 0, "tide-trace --json failed:\n%s", r.err);
    cJSON *root = cJSON_Parse(r.out);
    cr_assert_not_null(root, "--json printed no JSON:\n%s", r.out);
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(root, "ops")->valuedouble, 7);
    const cJSON *path_ops =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "critical_path"), "ops");
    cr_assert_eq(cJSON_GetArraySize(path_ops), 3);
    cr_assert_str_eq(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(path_ops, 1), "name")->valuestring, middle);
    td_trace_free(t);
    cJSON_Delete(root);
    tr_run_free(&r);
    remove(svg);
    remove(path);
}
