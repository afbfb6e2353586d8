/* The profiler: traces are valid JSON (parsed with cJSON), their flow arrows
 * are the dependencies the engine resolved, the summary counts every op, and
 * results do not change when it is on.
 *
 * Exact flows are checked where the engine's choices are forced (one worker,
 * everything queued behind a gate op); on random DAGs every flow must join an
 * op to one of its immediate predecessors on a shared var, and end before the
 * op it points to starts.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open the trace %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static cJSON *load_trace(const char *path) {
    char *text = slurp(path);
    cJSON *root = cJSON_Parse(text);
    cr_assert_not_null(root, "the trace %s is not valid JSON near: %.60s", path,
                       cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "?");
    free(text);
    cJSON *ev = cJSON_GetObjectItemCaseSensitive(root, "traceEvents");
    cr_assert(cJSON_IsArray(ev), "the trace has no traceEvents array");
    return root;
}

static void tmp_path(char *buf, size_t n, const char *tag) {
    snprintf(buf, n, "/tmp/tide_prof_%s_%d.json", tag, (int)getpid());
}

static const char *ph_of(const cJSON *e) {
    const cJSON *ph = cJSON_GetObjectItemCaseSensitive(e, "ph");
    return cJSON_IsString(ph) ? ph->valuestring : "";
}

static double num(const cJSON *o, const char *k) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    cr_assert(cJSON_IsNumber(x), "field %s missing or not a number", k);
    return x->valuedouble;
}

/* Flow pairs (from push number, to push number) of a trace, from its 's'
 * events; each must have a matching 'f' event with the same id. */
static int flows_of(const cJSON *root, uint64_t (*pairs)[2], int max) {
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(root, "traceEvents");
    int n = 0, nf = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, ev) {
        const char *ph = ph_of(e);
        if (strcmp(ph, "s") == 0) {
            const cJSON *args = cJSON_GetObjectItemCaseSensitive(e, "args");
            cr_assert_lt(n, max, "more flows than expected");
            pairs[n][0] = (uint64_t)num(args, "from");
            pairs[n][1] = (uint64_t)num(args, "to");
            n++;
        } else if (strcmp(ph, "f") == 0) {
            nf++;
        }
    }
    cr_assert_eq(n, nf, "flow starts (%d) and ends (%d) do not pair up", n, nf);
    return n;
}

static atomic_int gate_open;
static td_status gate(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    double end = tt_now() + 30;
    while (!atomic_load(&gate_open) && tt_now() < end) sched_yield();
    return TD_OK;
}

/* Starts recording to path, then pushes a gate op writing x (held until
 * gate_open) and k ops writing x behind it: a chain whose links are all
 * queued before the first can run. */
static void record_gated_chain(const char *path, td_var *x, int k) {
    cr_assert_eq(td_profiler_start(path), TD_OK, "%s", td_last_error());
    atomic_store(&gate_open, 0);
    td_op g = tt_op("gate", gate, NULL, NULL, 0, &x, 1);
    tt_push(&g);
    for (int i = 0; i < k; i++) {
        td_op o = tt_op("link", tt_noop, NULL, NULL, 0, &x, 1);
        tt_push(&o);
    }
}

Test(profiler, a_chain_queued_behind_a_gate_has_exactly_one_flow_per_link, .timeout = 60) {
    char path[128];
    tmp_path(path, sizeof path, "chain");
    tt_start(TD_ENGINE_THREADED, 1);
    td_var *x = tt_var();
    enum { K = 20 };
    record_gated_chain(path, x, K);
    atomic_store(&gate_open, 1);
    cr_assert_eq(td_profiler_stop(), TD_OK, "%s", td_last_error());
    cJSON *root = load_trace(path);
    uint64_t pairs[64][2];
    int n = flows_of(root, pairs, 64);
    cr_assert_eq(n, K, "expected %d flows (gate -> link 1 -> ... -> link %d), got %d", K, K, n);
    /* Push numbers are consecutive here: the gate, then the links. */
    uint64_t first = UINT64_MAX;
    for (int i = 0; i < n; i++)
        if (pairs[i][0] < first) first = pairs[i][0];
    for (int i = 0; i < n; i++) cr_assert_eq(pairs[i][1], pairs[i][0] + 1, "flow %llu -> %llu skips a link",
                                             (unsigned long long)pairs[i][0], (unsigned long long)pairs[i][1]);
    cJSON_Delete(root);
    remove(path);
    td_var_free(x);
    tt_stop(TD_OK);
}

/* An op's times from its 'X' event: start, end, push and ready (us). */
typedef struct {
    double ts, end, pushed, ready;
    int found;
} op_times;

static op_times times_of(const cJSON *root, uint64_t push) {
    op_times t = {0};
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(root, "traceEvents")) {
        if (strcmp(ph_of(e), "X") != 0) continue;
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(e, "args");
        if ((uint64_t)num(args, "push") != push) continue;
        t.ts = num(e, "ts");
        t.end = t.ts + num(e, "dur");
        t.pushed = num(args, "pushed_us");
        t.ready = num(args, "ready_us");
        t.found = 1;
    }
    cr_assert(t.found, "no op event for push #%llu", (unsigned long long)push);
    return t;
}

/* Times are printed to 1 ns; an end is start + duration, each rounded. */
#define NEAR(a, b) (fabs((a) - (b)) <= 0.0025)

Test(profiler, ready_times_are_the_push_or_the_end_that_released_the_op, .timeout = 60) {
    char path[128];
    tmp_path(path, sizeof path, "ready");
    tt_start(TD_ENGINE_THREADED, 1);
    td_var *x = tt_var(), *y = tt_var();
    enum { K = 10 };
    record_gated_chain(path, x, K);
    td_op free_op = tt_op("free", tt_noop, NULL, NULL, 0, &y, 1); /* y is free: ready at push */
    tt_push(&free_op);
    atomic_store(&gate_open, 1);
    cr_assert_eq(td_profiler_stop(), TD_OK, "%s", td_last_error());
    cJSON *root = load_trace(path);
    uint64_t pairs[64][2];
    int n = flows_of(root, pairs, 64);
    cr_assert_eq(n, K);
    uint64_t gate_push = UINT64_MAX;
    for (int i = 0; i < n; i++)
        if (pairs[i][0] < gate_push) gate_push = pairs[i][0];
    op_times prev = times_of(root, gate_push);
    cr_assert(NEAR(prev.ready, prev.pushed), "the gate was ready at push: ready %.3f, pushed %.3f", prev.ready,
              prev.pushed);
    for (uint64_t p = gate_push + 1; p <= gate_push + K; p++) {
        op_times t = times_of(root, p);
        cr_assert(NEAR(t.ready, prev.end), "push #%llu: ready at %.3f, but the op before it ended at %.3f",
                  (unsigned long long)p, t.ready, prev.end);
        cr_assert_geq(t.ready, t.pushed, "push #%llu ready (%.3f) before its push (%.3f)", (unsigned long long)p,
                      t.ready, t.pushed);
        cr_assert_geq(t.ts, t.ready - 0.0025, "push #%llu started (%.3f) before it was ready (%.3f)",
                      (unsigned long long)p, t.ts, t.ready);
        prev = t;
    }
    op_times f = times_of(root, gate_push + K + 1);
    cr_assert(NEAR(f.ready, f.pushed), "an op on a free var: ready %.3f, pushed %.3f", f.ready, f.pushed);
    cJSON_Delete(root);
    remove(path);
    td_var_free(x);
    td_var_free(y);
    tt_stop(TD_OK);
}

Test(profiler, readers_after_a_write_each_get_a_flow_and_the_next_write_one, .timeout = 60) {
    char path[128];
    tmp_path(path, sizeof path, "fan");
    tt_start(TD_ENGINE_THREADED, 1);
    td_var *x = tt_var();
    cr_assert_eq(td_profiler_start(path), TD_OK, "%s", td_last_error());
    atomic_store(&gate_open, 0);
    td_op g = tt_op("gate-write", gate, NULL, NULL, 0, &x, 1);
    tt_push(&g);
    td_op r1 = tt_op("reader", tt_noop, NULL, &x, 1, NULL, 0);
    td_op r2 = tt_op("reader", tt_noop, NULL, &x, 1, NULL, 0);
    td_op w2 = tt_op("write-after", tt_noop, NULL, NULL, 0, &x, 1);
    tt_push(&r1);
    tt_push(&r2);
    tt_push(&w2);
    atomic_store(&gate_open, 1);
    cr_assert_eq(td_profiler_stop(), TD_OK, "%s", td_last_error());
    cJSON *root = load_trace(path);
    uint64_t pairs[16][2];
    int n = flows_of(root, pairs, 16);
    cr_assert_eq(n, 3, "expected 3 flows (gate->r1, gate->r2, last reader->w2), got %d", n);
    uint64_t gseq = UINT64_MAX;
    for (int i = 0; i < n; i++)
        if (pairs[i][0] < gseq) gseq = pairs[i][0];
    int from_gate = 0, to_w2 = 0;
    for (int i = 0; i < n; i++) {
        if (pairs[i][0] == gseq) {
            from_gate++;
            cr_assert(pairs[i][1] == gseq + 1 || pairs[i][1] == gseq + 2, "gate flows to a reader");
        } else {
            cr_assert(pairs[i][0] == gseq + 1 || pairs[i][0] == gseq + 2, "the write's flow comes from a reader");
            cr_assert_eq(pairs[i][1], gseq + 3);
            to_w2++;
        }
    }
    cr_assert_eq(from_gate, 2);
    cr_assert_eq(to_w2, 1);
    cJSON_Delete(root);
    remove(path);
    td_var_free(x);
    tt_stop(TD_OK);
}

/* ---- random DAGs ---- */
enum { RV = 40, RO = 1500, RMAX = 3 };
typedef struct {
    uint64_t *state;
    int id, nr, nw;
    int r[RMAX], w[RMAX];
} rop;
static rop rops[RO];

static td_status rop_fn(void *arg, const td_exec *ex) {
    (void)ex;
    const rop *o = arg;
    uint64_t h = tt_mix((uint64_t)o->id);
    for (int i = 0; i < o->nr; i++) h = tt_mix(h ^ o->state[o->r[i]]);
    for (int i = 0; i < o->nw; i++) o->state[o->w[i]] = tt_mix(o->state[o->w[i]] + h + (uint64_t)i);
    return TD_OK;
}

static void make_rops(uint64_t seed) {
    tt_rng rng = {seed};
    for (int k = 0; k < RO; k++) {
        rop *o = &rops[k];
        o->id = k;
        o->nr = (int)tt_rng_below(&rng, RMAX + 1);
        o->nw = 1 + (int)tt_rng_below(&rng, RMAX);
        for (int i = 0; i < o->nr; i++) o->r[i] = (int)tt_rng_below(&rng, RV);
        for (int i = 0; i < o->nw; i++) o->w[i] = (int)tt_rng_below(&rng, RV);
    }
}

/* Runs rops (profiled into path when path is not NULL); returns the push
 * number of op 0. */
static uint64_t run_rops(uint64_t *state, const char *path) {
    td_var *vars[RV];
    for (int v = 0; v < RV; v++) vars[v] = tt_var();
    if (path) cr_assert_eq(td_profiler_start(path), TD_OK, "%s", td_last_error());
    for (int k = 0; k < RO; k++) {
        rop *o = &rops[k];
        o->state = state;
        td_var *r[RMAX], *w[RMAX];
        for (int i = 0; i < o->nr; i++) r[i] = vars[o->r[i]];
        for (int i = 0; i < o->nw; i++) w[i] = vars[o->w[i]];
        td_op op = tt_op("rop", rop_fn, o, r, (size_t)o->nr, w, (size_t)o->nw);
        tt_push(&op);
    }
    if (path) cr_assert_eq(td_profiler_stop(), TD_OK, "%s", td_last_error());
    cr_assert_eq(td_wait_all(), TD_OK);
    for (int v = 0; v < RV; v++) td_var_free(vars[v]);
    return 0;
}

static int reads_var(const rop *o, int v) {
    for (int i = 0; i < o->nr; i++)
        if (o->r[i] == v) return 1;
    return 0;
}
static int writes_var(const rop *o, int v) {
    for (int i = 0; i < o->nw; i++)
        if (o->w[i] == v) return 1;
    return 0;
}

/* Whether a (op index) is an immediate predecessor of b on some var: on a
 * var b writes, every access since the last write before b (or that write,
 * if nothing came after it); on a var b only reads, the last write. */
static int immediate_pred(int a, int b) {
    for (int v = 0; v < RV; v++) {
        int bw = writes_var(&rops[b], v), br = reads_var(&rops[b], v);
        if (!bw && !br) continue;
        if (!writes_var(&rops[a], v) && !reads_var(&rops[a], v)) continue;
        int last_w = -1;
        for (int k = b - 1; k >= 0; k--)
            if (writes_var(&rops[k], v)) {
                last_w = k;
                break;
            }
        if (bw) {
            int any_after = 0;
            for (int k = last_w + 1; k < b; k++)
                if (reads_var(&rops[k], v)) {
                    any_after = 1;
                    if (k == a) return 1;
                }
            if (!any_after && a == last_w) return 1;
        } else if (a == last_w) {
            return 1;
        }
    }
    return 0;
}

Test(profiler, random_dag_flows_are_resolved_dependencies_and_results_match, .timeout = 120) {
    uint64_t seed = 0x70f11e5ull + (uint64_t)(tt_quick() ? 1 : 7);
    cr_log_info("profiler random DAG seed %llu", (unsigned long long)seed);
    make_rops(seed);
    char path[128];
    tmp_path(path, sizeof path, "dag");
    uint64_t plain[RV], prof[RV];
    for (int v = 0; v < RV; v++) plain[v] = prof[v] = tt_mix((uint64_t)v + seed);
    tt_start(TD_ENGINE_THREADED, 2);
    run_rops(plain, NULL);
    run_rops(prof, path);
    tt_stop(TD_OK);
    cr_assert(memcmp(plain, prof, sizeof plain) == 0, "results differ with the profiler on (seed %llu)",
              (unsigned long long)seed);

    cJSON *root = load_trace(path);
    /* Op events: push number -> start/end; the smallest push number is op 0. */
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(root, "traceEvents");
    static double start[RO], end[RO];
    uint64_t base = UINT64_MAX;
    int nops = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, ev) if (strcmp(ph_of(e), "X") == 0) {
        uint64_t p = (uint64_t)num(cJSON_GetObjectItemCaseSensitive(e, "args"), "push");
        if (p < base) base = p;
    }
    cJSON_ArrayForEach(e, ev) if (strcmp(ph_of(e), "X") == 0) {
        uint64_t p = (uint64_t)num(cJSON_GetObjectItemCaseSensitive(e, "args"), "push") - base;
        cr_assert_lt(p, (uint64_t)RO, "push number out of range");
        start[p] = num(e, "ts");
        end[p] = start[p] + num(e, "dur");
        nops++;
    }
    cr_assert_eq(nops, RO, "the trace holds %d ops, %d were pushed", nops, RO);
    static uint64_t pairs[RO * 2 * RMAX][2];
    int n = flows_of(root, pairs, RO * 2 * RMAX);
    cr_assert_gt(n, 0, "a DAG this dense must have made some op wait");
    for (int i = 0; i < n; i++) {
        int a = (int)(pairs[i][0] - base), b = (int)(pairs[i][1] - base);
        cr_assert(a >= 0 && a < b && b < RO, "flow %d -> %d goes backwards (seed %llu)", a, b,
                  (unsigned long long)seed);
        cr_assert(immediate_pred(a, b), "flow %d -> %d is not a dependency the engine had to resolve (seed %llu)",
                  a, b, (unsigned long long)seed);
        cr_assert_leq(end[a], start[b] + 0.002, "op %d starts before op %d, which it waited for, ends", b, a);
    }
    cJSON_Delete(root);
    remove(path);
}

/* td_profiler_summary's text (caller frees). */
static char *summary_text(void) {
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    cr_assert_not_null(mem);
    cr_assert_eq(td_profiler_summary(mem), TD_OK, "%s", td_last_error());
    fclose(mem);
    return text;
}

/* The count in the summary's row for name (which must be there). */
static unsigned long long summary_count(const char *text, const char *name, int engine) {
    const char *line = strstr(text, name);
    cr_assert_not_null(line, "%s engine: the summary has no row for %s:\n%s", tt_engine_name(engine), name, text);
    unsigned long long c = 0;
    cr_assert_eq(sscanf(line + strlen(name), "%llu", &c), 1);
    return c;
}

Test(profiler, summary_counts_equal_the_ops_pushed, .timeout = 60) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        td_var *v[3] = {tt_var(), tt_var(), tt_var()};
        cr_assert_eq(td_profiler_start(NULL), TD_OK, "%s", td_last_error());
        int counts[3] = {700, 123, 1};
        const char *names[3] = {"alpha", "beta", "gamma"};
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < counts[k]; i++) {
                td_op o = tt_op(names[k], tt_noop, NULL, NULL, 0, &v[(i + k) % 3], 1);
                tt_push(&o);
            }
        cr_assert_eq(td_profiler_stop(), TD_OK, "%s", td_last_error());
        char *text = summary_text();
        for (int k = 0; k < 3; k++) {
            unsigned long long c = summary_count(text, names[k], engine);
            cr_assert_eq(c, (unsigned long long)counts[k], "%s engine: %s counted %llu, pushed %d",
                         tt_engine_name(engine), names[k], c, counts[k]);
        }
        free(text);
        for (int i = 0; i < 3; i++) td_var_free(v[i]);
        tt_stop(TD_OK);
    }
}

/* Past the interned names (4096), an op's name travels in its records: the
 * summary still counts each name as pushed. */
Test(profiler, summary_names_past_the_interned_ones, .timeout = 60) {
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 2);
        td_var *v = tt_var();
        char name[48];
        for (int i = 0; i < 4200; i++) { /* fill the intern table (not recorded) */
            snprintf(name, sizeof name, "filler_%d", i);
            td_op o = tt_op(name, tt_noop, NULL, NULL, 0, &v, 1);
            tt_push(&o);
        }
        cr_assert_eq(td_profiler_start(NULL), TD_OK, "%s", td_last_error());
        for (int i = 0; i < 30; i++) {
            snprintf(name, sizeof name, "late_%s_%d", engine ? "n" : "t", i % 3);
            td_op o = tt_op(name, tt_noop, NULL, NULL, 0, &v, 1);
            tt_push(&o);
            snprintf(name, sizeof name, "overwritten"); /* td_push kept its copy */
        }
        cr_assert_eq(td_profiler_stop(), TD_OK, "%s", td_last_error());
        char *text = summary_text();
        for (int k = 0; k < 3; k++) {
            snprintf(name, sizeof name, "late_%s_%d ", engine ? "n" : "t", k);
            unsigned long long c = summary_count(text, name, engine);
            cr_assert_eq(c, 10ull, "%s engine: %s counted %llu, pushed 10", tt_engine_name(engine), name, c);
        }
        cr_assert_null(strstr(text, "overwritten"));
        free(text);
        td_var_free(v);
        tt_stop(TD_OK);
    }
}

static td_status failing(void *arg, const td_exec *ex) {
    (void)arg;
    td_exec_set_error(ex, "a \"quoted\" message");
    return TD_EFAILED;
}

Test(profiler, every_dump_is_valid_json_after_restarts_and_with_odd_names, .timeout = 60) {
    tt_start(TD_ENGINE_THREADED, 2);
    td_var *x = tt_var();
    const char *odd[] = {"quote\"d", "back\\slash", "new\nline\ttab", "ctl\x01", "utf8 \xc3\xa9t\xc3\xa9", ""};
    for (int round = 0; round < 3; round++) {
        char path[128];
        char tag[16];
        snprintf(tag, sizeof tag, "odd%d", round);
        tmp_path(path, sizeof path, tag);
        cr_assert_eq(td_profiler_start(path), TD_OK, "%s", td_last_error());
        cr_assert_eq(td_profiler_start(path), TD_EINVAL, "a second start while recording is refused");
        for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) {
            td_op o = tt_op(odd[i], tt_noop, NULL, NULL, 0, &x, 1);
            tt_push(&o);
        }
        td_op f = tt_op("fails", failing, NULL, NULL, 0, &x, 1);
        tt_push(&f);
        cr_assert_eq(td_profiler_stop(), TD_OK, "%s", td_last_error());
        cr_assert_eq(td_profiler_stop(), TD_EINVAL, "stopping twice is refused");
        cJSON *root = load_trace(path);
        int found = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(root, "traceEvents")) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
            if (strcmp(ph_of(e), "X") == 0 && cJSON_IsString(nm))
                for (size_t i = 0; i < sizeof odd / sizeof *odd; i++)
                    if (strcmp(nm->valuestring, odd[i][0] ? odd[i] : "op") == 0 ||
                        strcmp(nm->valuestring, odd[i]) == 0)
                        found++;
        }
        cr_assert_geq(found, (int)(sizeof odd / sizeof *odd), "round %d: names did not survive escaping", round);
        cJSON_Delete(root);
        remove(path);
    }
    /* The failure was not consumed by the profiler's drain. */
    cr_assert_eq(td_wait_all(), TD_EFAILED);
    td_var_free(x);
    tt_stop(TD_OK);
}

Test(profiler, tide_profile_variable_writes_a_trace_at_shutdown, .timeout = 60) {
    char path[128];
    tmp_path(path, sizeof path, "env");
    remove(path);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        setenv("TIDE_PROFILE", path, 1);
        td_var *x = td_var_new(); /* starts the runtime from td_config_default */
        if (!x || !td_profiler_is_on()) _exit(3);
        for (int i = 0; i < 50; i++) {
            td_op o = tt_op("from-env", tt_noop, NULL, NULL, 0, &x, 1);
            if (td_push(&o) != TD_OK) _exit(4);
        }
        td_var_free(x);
        _exit(td_shutdown() == TD_OK ? 0 : 5);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed (status %d)", status);
    cJSON *root = load_trace(path);
    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(root, "traceEvents")) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
        if (strcmp(ph_of(e), "X") == 0 && cJSON_IsString(nm) && strcmp(nm->valuestring, "from-env") == 0) n++;
    }
    cr_assert_eq(n, 50, "the trace from TIDE_PROFILE holds %d of 50 ops", n);
    cJSON_Delete(root);
    remove(path);
}

static atomic_int in_op_status = -1;
static td_status stops_profiler(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    atomic_store(&in_op_status, (int)td_profiler_stop());
    return TD_OK;
}

Test(profiler, stop_inside_an_op_is_busy_and_misuse_is_einval, .timeout = 30) {
    cr_assert_eq(td_profiler_summary(NULL), TD_EINVAL);
    TT_FOR_EACH_ENGINE(engine) {
        tt_start(engine, 1);
        cr_assert_eq(td_profiler_stop(), TD_EINVAL, "stop without start");
        cr_assert_eq(td_profiler_start(NULL), TD_OK, "%s", td_last_error());
        td_var *x = tt_var();
        atomic_store(&in_op_status, -1);
        td_op o = tt_op("stopper", stops_profiler, NULL, NULL, 0, &x, 1);
        tt_push(&o);
        cr_assert_eq(td_var_wait(x), TD_OK);
        cr_assert_eq(atomic_load(&in_op_status), (int)TD_EBUSY, "%s engine: td_profiler_stop inside an op",
                     tt_engine_name(engine));
        cr_assert(td_profiler_is_on(), "the refused stop left the profiler on");
        cr_assert_eq(td_profiler_stop(), TD_OK, "%s", td_last_error());
        td_var_free(x);
        tt_stop(TD_OK);
    }
}
