/* Reading a trace: the file, its JSON (cJSON), and the checks that turn it
 * into a td_trace whose ops, tracks and flows the summary can trust.
 *
 * Required, or the trace is refused (TD_TRACE_EFORMAT, with the event's index
 * and the field): a top-level object with a "traceEvents" array of objects,
 * each with a string "ph"; on "X" events a string "name", numbers "pid",
 * "tid", "ts", "dur" (>= 0) and an "args" object with an integral "push" that
 * no other op has; on "s" flow events "args" with integral "from" and "to";
 * on "M" events naming a process or thread, "pid" (and "tid") and a string
 * args.name.  Optional: the op's other args, the counters.  Other kinds of
 * events (and "f", the other half of each flow) are skipped.
 *
 * A flow whose ends are not both ops of the trace, or that does not go from
 * a lower push number to a higher one, is left out with a warning: tide
 * never writes one, and leaving it in could make a cycle.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "trace_summary.h"

/* Integers beyond 2^53 do not survive a JSON number (a double). */
#define MAX_EXACT 9007199254740992.0

typedef struct {
    int64_t pid, tid;
    const char *name; /* borrowed from the JSON tree */
} meta_name;

typedef struct {
    double from, to;
    size_t event;
} raw_flow;

typedef struct {
    meta_name *procs, *threads;
    size_t n_procs, cap_procs, n_threads, cap_threads;
    raw_flow *flows;
    size_t n_flows, cap_flows;
    size_t cap_ops;
    size_t *op_event; /* event index of each op, for messages */
    size_t cap_op_event;
    int64_t *pids;    /* (pid, tid) of each op, in pairs */
    size_t cap_pids;
} parse_state;

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *np = realloc(*p, nc * elem);
    if (!np) return 0;
    *p = np;
    *cap = nc;
    return 1;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void warn(td_trace *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(td_trace *t, const char *fmt, ...) {
    if (t->n_warnings < TD_TRACE_MAX_WARNINGS) {
        char buf[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        t->warnings[t->n_warnings] = strdup(buf); /* NULL when out of memory: printed as nothing */
    }
    t->n_warnings++;
}

void td_trace_free(td_trace *t) {
    if (!t) return;
    for (size_t i = 0; i < t->n_ops; i++) free(t->ops[i].name);
    for (size_t i = 0; i < t->n_tracks; i++) free(t->tracks[i].name);
    for (size_t i = 0; i < t->n_devices; i++) free(t->devices[i].name);
    for (size_t i = 0; i < t->n_warnings && i < TD_TRACE_MAX_WARNINGS; i++) free(t->warnings[i]);
    free(t->ops);
    free(t->tracks);
    free(t->devices);
    free(t->flows);
    free(t);
}

/* ---- field access: each returns 1 when the field is there and right ---- */

static int get_number(const cJSON *o, const char *key, double *v) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble)) return 0;
    *v = x->valuedouble;
    return 1;
}

static int get_integer(const cJSON *o, const char *key, double lo, double *v) {
    return get_number(o, key, v) && *v == floor(*v) && *v >= lo && *v <= MAX_EXACT;
}

static const char *get_string(const cJSON *o, const char *key) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(x) && x->valuestring ? x->valuestring : NULL;
}

static double opt_number(const cJSON *o, const char *key) {
    double v;
    return get_number(o, key, &v) ? v : NAN;
}

/* ---- the events ---- */

static td_trace_status bad_event(char *err, size_t errlen, size_t i, const char *kind, const char *what) {
    set_err(err, errlen, "event %zu (%s) %s", i, kind, what);
    return TD_TRACE_EFORMAT;
}

/* Adds an "X" op event to t->ops; its track is resolved later, from the
 * (pid, tid) pair kept in ps->pids. */
static td_trace_status add_op(td_trace *t, parse_state *ps, const cJSON *e, size_t i, char *err, size_t errlen) {
    const char *kind = "an \"X\" op event";
    const char *name = get_string(e, "name");
    double pid, tid, ts, dur, push;
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(e, "args");
    if (!name) return bad_event(err, errlen, i, kind, "has no string \"name\"");
    if (!get_integer(e, "pid", -MAX_EXACT, &pid)) return bad_event(err, errlen, i, kind, "has no integer \"pid\"");
    if (!get_integer(e, "tid", -MAX_EXACT, &tid)) return bad_event(err, errlen, i, kind, "has no integer \"tid\"");
    if (!get_number(e, "ts", &ts)) return bad_event(err, errlen, i, kind, "has no number \"ts\"");
    if (!get_number(e, "dur", &dur) || dur < 0)
        return bad_event(err, errlen, i, kind, "has no number \"dur\" (>= 0)");
    if (!cJSON_IsObject(args)) return bad_event(err, errlen, i, kind, "has no \"args\" object");
    if (!get_integer(args, "push", 0, &push))
        return bad_event(err, errlen, i, kind, "has no integer \"args.push\" (the op's push number)");
    size_t n = t->n_ops;
    if (!grow((void **)&t->ops, &ps->cap_ops, n + 1, sizeof *t->ops) ||
        !grow((void **)&ps->op_event, &ps->cap_op_event, n + 1, sizeof *ps->op_event) ||
        !grow((void **)&ps->pids, &ps->cap_pids, 2 * (n + 1), sizeof *ps->pids))
        return TD_TRACE_ENOMEM;
    td_trace_op *op = &t->ops[n];
    memset(op, 0, sizeof *op);
    op->name = strdup(name);
    if (!op->name) return TD_TRACE_ENOMEM;
    t->n_ops++;
    op->push = (uint64_t)push;
    op->ts = ts;
    op->dur = dur;
    op->pushed_us = opt_number(args, "pushed_us");
    op->ready_us = opt_number(args, "ready_us");
    op->queued_us = opt_number(args, "queued_us");
    const char *st = get_string(args, "status");
    op->outcome = !st || strcmp(st, "TD_OK") == 0 ? TD_TRACE_RAN_OK
                  : strcmp(st, "skipped") == 0    ? TD_TRACE_SKIPPED
                                                  : TD_TRACE_FAILED;
    ps->op_event[n] = i;
    ps->pids[2 * n] = (int64_t)pid;
    ps->pids[2 * n + 1] = (int64_t)tid;
    return TD_TRACE_OK;
}

static td_trace_status add_meta(parse_state *ps, const cJSON *e, size_t i, char *err, size_t errlen) {
    const char *what = get_string(e, "name");
    int proc = what && strcmp(what, "process_name") == 0, thread = what && strcmp(what, "thread_name") == 0;
    if (!proc && !thread) return TD_TRACE_OK; /* other metadata: sort indices and the like */
    const char *kind = proc ? "a \"process_name\" event" : "a \"thread_name\" event";
    double pid, tid = 0;
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(e, "args");
    const char *name = cJSON_IsObject(args) ? get_string(args, "name") : NULL;
    if (!get_integer(e, "pid", -MAX_EXACT, &pid)) return bad_event(err, errlen, i, kind, "has no integer \"pid\"");
    if (thread && !get_integer(e, "tid", -MAX_EXACT, &tid))
        return bad_event(err, errlen, i, kind, "has no integer \"tid\"");
    if (!name) return bad_event(err, errlen, i, kind, "has no string \"args.name\"");
    meta_name m = {(int64_t)pid, (int64_t)tid, name};
    if (proc) {
        if (!grow((void **)&ps->procs, &ps->cap_procs, ps->n_procs + 1, sizeof m)) return TD_TRACE_ENOMEM;
        ps->procs[ps->n_procs++] = m;
    } else {
        if (!grow((void **)&ps->threads, &ps->cap_threads, ps->n_threads + 1, sizeof m)) return TD_TRACE_ENOMEM;
        ps->threads[ps->n_threads++] = m;
    }
    return TD_TRACE_OK;
}

static td_trace_status add_flow(parse_state *ps, const cJSON *e, size_t i, char *err, size_t errlen) {
    const char *kind = "an \"s\" flow event";
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(e, "args");
    raw_flow f = {0, 0, i};
    if (!cJSON_IsObject(args)) return bad_event(err, errlen, i, kind, "has no \"args\" object");
    if (!get_integer(args, "from", 0, &f.from))
        return bad_event(err, errlen, i, kind, "has no integer \"args.from\" (a push number)");
    if (!get_integer(args, "to", 0, &f.to))
        return bad_event(err, errlen, i, kind, "has no integer \"args.to\" (a push number)");
    if (!grow((void **)&ps->flows, &ps->cap_flows, ps->n_flows + 1, sizeof f)) return TD_TRACE_ENOMEM;
    ps->flows[ps->n_flows++] = f;
    return TD_TRACE_OK;
}

static void add_counter(td_trace *t, const cJSON *e) {
    const char *name = get_string(e, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(e, "args");
    double v;
    if (!name || !cJSON_IsObject(args)) return;
    if (strcmp(name, "ready queue") == 0 && get_number(args, "depth", &v) && v > t->max_ready_depth)
        t->max_ready_depth = v;
    if (strcmp(name, "bytes in flight") == 0 && get_number(args, "bytes", &v) && v > t->max_bytes_in_flight)
        t->max_bytes_in_flight = v;
}

/* ---- resolving tracks, names and flows ---- */

/* Sorting ops by push number: the number, and the op's place in the file. */
typedef struct {
    uint64_t push;
    size_t index;
} push_key;

static int cmp_push_key(const void *a, const void *b) {
    const push_key *x = a, *y = b;
    return x->push < y->push ? -1 : x->push > y->push ? 1 : (x->index > y->index) - (x->index < y->index);
}

static int cmp_meta(const void *a, const void *b) {
    const meta_name *x = a, *y = b;
    if (x->pid != y->pid) return x->pid < y->pid ? -1 : 1;
    return (x->tid > y->tid) - (x->tid < y->tid);
}

static int cmp_pair(const void *a, const void *b) {
    const int64_t *x = a, *y = b;
    if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
    return (x[1] > y[1]) - (x[1] < y[1]);
}

/* The first entry of a sorted metadata array with this pid and tid. */
static const char *find_meta(const meta_name *m, size_t n, int64_t pid, int64_t tid) {
    size_t lo = 0, hi = n;
    meta_name key = {pid, tid, NULL};
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_meta(&m[mid], &key) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && cmp_meta(&m[lo], &key) == 0 ? m[lo].name : NULL;
}

static size_t find_pair(const int64_t *pairs, size_t n, int64_t pid, int64_t tid) {
    size_t lo = 0, hi = n;
    int64_t key[2] = {pid, tid};
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_pair(&pairs[2 * mid], key) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Index of the op with this push number, or SIZE_MAX. */
static size_t find_op(const td_trace *t, double push) {
    size_t lo = 0, hi = t->n_ops;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((double)t->ops[mid].push < push) lo = mid + 1;
        else hi = mid;
    }
    return lo < t->n_ops && (double)t->ops[lo].push == push ? lo : SIZE_MAX;
}

/* Keeps the flows whose ends are both ops of the trace and that go from a
 * lower push number to a higher one; warns about the others.  Needs the ops
 * sorted by push number. */
static td_trace_status keep_flows(td_trace *t, const parse_state *ps) {
    t->flows = malloc((ps->n_flows ? ps->n_flows : 1) * sizeof *t->flows);
    if (!t->flows) return TD_TRACE_ENOMEM;
    for (size_t i = 0; i < ps->n_flows; i++) {
        const raw_flow *f = &ps->flows[i];
        size_t a = find_op(t, f->from), b = find_op(t, f->to);
        if (a == SIZE_MAX || b == SIZE_MAX) {
            warn(t, "event %zu: the flow %.0f -> %.0f names push number %.0f, which is no op of the trace; ignored",
                 f->event, f->from, f->to, a == SIZE_MAX ? f->from : f->to);
            t->n_flows_ignored++;
        } else if (a >= b) {
            warn(t, "event %zu: the flow %.0f -> %.0f does not go from a lower push number to a higher one "
                    "(a cycle or a backward edge); ignored",
                 f->event, f->from, f->to);
            t->n_flows_ignored++;
        } else {
            t->flows[t->n_flows++] = (td_trace_flow){a, b};
        }
    }
    return TD_TRACE_OK;
}

static char *name_or_number(const char *name, const char *prefix, int64_t v) {
    if (name) return strdup(name);
    char buf[48];
    snprintf(buf, sizeof buf, "%s %lld", prefix, (long long)v);
    return strdup(buf);
}

/* Sorts the ops by push number (refusing duplicates), builds the tracks and
 * devices from the ops' (pid, tid) pairs, and keeps the flows that make sense. */
static td_trace_status resolve(td_trace *t, parse_state *ps, char *err, size_t errlen) {
    const int64_t *pids = ps->pids;
    size_t n = t->n_ops;
    push_key *keys = malloc((n ? n : 1) * sizeof *keys);
    td_trace_op *sorted = malloc((n ? n : 1) * sizeof *sorted);
    int64_t *pairs = malloc((n ? n : 1) * 2 * sizeof *pairs);
    size_t *track_of = malloc((n ? n : 1) * sizeof *track_of);
    td_trace_status st = TD_TRACE_ENOMEM;
    if (!keys || !sorted || !pairs || !track_of) goto out;
    if (n == 0) { /* no op, so no track; and qsort and memcpy want real pointers */
        t->tracks = calloc(1, sizeof *t->tracks);
        t->devices = calloc(1, sizeof *t->devices);
        st = t->tracks && t->devices ? keep_flows(t, ps) : TD_TRACE_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) keys[i] = (push_key){t->ops[i].push, i};
    qsort(keys, n, sizeof *keys, cmp_push_key);
    for (size_t i = 1; i < n; i++)
        if (keys[i].push == keys[i - 1].push) {
            set_err(err, errlen, "events %zu and %zu are two ops with the same push number %llu",
                    ps->op_event[keys[i - 1].index], ps->op_event[keys[i].index],
                    (unsigned long long)keys[i].push);
            st = TD_TRACE_EFORMAT;
            goto out;
        }

    /* Tracks: the distinct (pid, tid) pairs, sorted. */
    memcpy(pairs, pids, n * 2 * sizeof *pairs);
    qsort(pairs, n, 2 * sizeof *pairs, cmp_pair);
    size_t nt = 0;
    for (size_t i = 0; i < n; i++)
        if (nt == 0 || cmp_pair(&pairs[2 * i], &pairs[2 * (nt - 1)]) != 0) {
            pairs[2 * nt] = pairs[2 * i];
            pairs[2 * nt + 1] = pairs[2 * i + 1];
            nt++;
        }
    size_t nd = 0;
    for (size_t i = 0; i < nt; i++)
        if (i == 0 || pairs[2 * i] != pairs[2 * (i - 1)]) nd++;
    t->tracks = calloc(nt ? nt : 1, sizeof *t->tracks);
    t->devices = calloc(nd ? nd : 1, sizeof *t->devices);
    if (!t->tracks || !t->devices) goto out;
    if (ps->n_procs) qsort(ps->procs, ps->n_procs, sizeof *ps->procs, cmp_meta);
    if (ps->n_threads) qsort(ps->threads, ps->n_threads, sizeof *ps->threads, cmp_meta);
    for (size_t i = 0; i < nt; i++) {
        int64_t pid = pairs[2 * i], tid = pairs[2 * i + 1];
        if (i == 0 || pid != pairs[2 * (i - 1)]) {
            td_trace_device *d = &t->devices[t->n_devices++];
            d->pid = pid;
            d->name = name_or_number(find_meta(ps->procs, ps->n_procs, pid, 0), "pid", pid);
            if (!d->name) goto out;
        }
        td_trace_track *tr = &t->tracks[t->n_tracks++];
        tr->pid = pid;
        tr->tid = tid;
        tr->device = t->n_devices - 1;
        t->devices[tr->device].n_tracks++;
        tr->name = name_or_number(find_meta(ps->threads, ps->n_threads, pid, tid), "tid", tid);
        if (!tr->name) goto out;
    }
    for (size_t i = 0; i < n; i++) track_of[i] = find_pair(pairs, nt, pids[2 * i], pids[2 * i + 1]);
    for (size_t i = 0; i < n; i++) {
        sorted[i] = t->ops[keys[i].index];
        sorted[i].track = track_of[keys[i].index];
    }
    memcpy(t->ops, sorted, n * sizeof *sorted);

    st = keep_flows(t, ps);
out:
    free(keys);
    free(sorted);
    free(pairs);
    free(track_of);
    return st;
}

static td_trace_status parse_events(td_trace *t, const cJSON *events, char *err, size_t errlen) {
    parse_state ps;
    memset(&ps, 0, sizeof ps);
    size_t i = 0;
    td_trace_status st = TD_TRACE_OK;
    const cJSON *e;
    cJSON_ArrayForEach(e, events) {
        const char *ph = cJSON_IsObject(e) ? get_string(e, "ph") : NULL;
        if (!cJSON_IsObject(e)) st = bad_event(err, errlen, i, "in traceEvents", "is not an object");
        else if (!ph) st = bad_event(err, errlen, i, "in traceEvents", "has no string \"ph\" (its kind)");
        else if (strcmp(ph, "X") == 0) st = add_op(t, &ps, e, i, err, errlen);
        else if (strcmp(ph, "M") == 0) st = add_meta(&ps, e, i, err, errlen);
        else if (strcmp(ph, "s") == 0) st = add_flow(&ps, e, i, err, errlen);
        else if (strcmp(ph, "C") == 0) add_counter(t, e);
        if (st != TD_TRACE_OK) break;
        i++;
    }
    if (st == TD_TRACE_OK) st = resolve(t, &ps, err, errlen);
    if (st == TD_TRACE_ENOMEM) set_err(err, errlen, "out of memory reading the trace");
    free(ps.pids);
    free(ps.procs);
    free(ps.threads);
    free(ps.flows);
    free(ps.op_event);
    return st;
}

td_trace_status td_trace_parse(const char *text, size_t len, td_trace **out, char *err, size_t errlen) {
    *out = NULL;
    set_err(err, errlen, "%s", "");
    if (len == 0) {
        set_err(err, errlen, "empty: not a trace");
        return TD_TRACE_EFORMAT;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= text && at <= text + len ? (size_t)(at - text) : 0;
        char near[33];
        size_t k = 0;
        for (size_t j = off; j < len && k < sizeof near - 1; j++)
            near[k++] = text[j] >= 0x20 && text[j] < 0x7f ? text[j] : '.';
        near[k] = '\0';
        set_err(err, errlen, "not JSON (a syntax error at byte %zu, near \"%s\")", off, near);
        return TD_TRACE_EFORMAT;
    }
    const cJSON *events = cJSON_GetObjectItemCaseSensitive(root, "traceEvents");
    if (!cJSON_IsArray(events)) {
        cJSON_Delete(root);
        set_err(err, errlen, "JSON without a \"traceEvents\" array: not a Chrome trace as tide writes it");
        return TD_TRACE_EFORMAT;
    }
    td_trace *t = calloc(1, sizeof *t);
    if (!t) {
        cJSON_Delete(root);
        set_err(err, errlen, "out of memory reading the trace");
        return TD_TRACE_ENOMEM;
    }
    t->max_ready_depth = -1;
    t->max_bytes_in_flight = -1;
    td_trace_status st = parse_events(t, events, err, errlen);
    cJSON_Delete(root);
    if (st != TD_TRACE_OK) {
        td_trace_free(t);
        return st;
    }
    *out = t;
    return TD_TRACE_OK;
}

/* Reads the whole stream; NULL (errno set) on failure. */
static char *slurp(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    for (;;) {
        if (n == cap) {
            char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                errno = ENOMEM;
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        int e = errno ? errno : EIO;
        free(buf);
        errno = e;
        return NULL;
    }
    *len = n;
    return buf;
}

td_trace_status td_trace_load(const char *path, td_trace **out, char *err, size_t errlen) {
    *out = NULL;
    int is_stdin = strcmp(path, "-") == 0;
    const char *shown = is_stdin ? "standard input" : path;
    errno = 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        set_err(err, errlen, "%s: cannot open: %s", shown, strerror(errno));
        return TD_TRACE_EIO;
    }
    size_t len = 0;
    errno = 0;
    char *text = slurp(f, &len);
    int e = errno;
    if (!is_stdin) fclose(f);
    if (!text) {
        set_err(err, errlen, "%s: cannot read: %s", shown, strerror(e ? e : EIO));
        return e == ENOMEM ? TD_TRACE_ENOMEM : TD_TRACE_EIO;
    }
    char msg[512];
    td_trace_status st = td_trace_parse(text, len, out, msg, sizeof msg);
    free(text);
    if (st != TD_TRACE_OK) set_err(err, errlen, "%s: %s", shown, msg);
    return st;
}
