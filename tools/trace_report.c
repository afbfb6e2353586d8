/* The summary written out: as text for a person, as JSON for a script. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "trace_summary.h"

const char *td_trace_fmt_time(char *buf, size_t n, double us) {
    double a = fabs(us);
    if (a < 1.0) snprintf(buf, n, "%.0f ns", us * 1e3);
    else if (a < 1e3) snprintf(buf, n, "%.1f us", us);
    else if (a < 1e6) snprintf(buf, n, "%.2f ms", us / 1e3);
    else snprintf(buf, n, "%.3f s", us / 1e6);
    return buf;
}

/* A name as one printable line: control characters become '?'. */
static void put_name(FILE *f, const char *s, int width) {
    int n = 0;
    for (; *s; s++, n++) fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, f);
    for (; n < width; n++) fputc(' ', f);
}

/* The part of a device name before its details: "cpu:0" of "cpu:0 (2 cores, ...)". */
static int short_len(const char *name) {
    const char *p = strstr(name, " (");
    return p ? (int)(p - name) : (int)strlen(name);
}

static double share(double part, double whole) { return whole > 0 ? 100.0 * part / whole : 0; }

static void print_busy(FILE *f, const td_trace *t, const td_trace_summary *s) {
    char b[32];
    fprintf(f, "\nutilisation (busy time / span)\n");
    fprintf(f, "  %-30s %8s %12s %12s\n", "device / worker", "ops", "busy", "utilisation");
    for (size_t d = 0; d < t->n_devices; d++) {
        const td_trace_device *dev = &t->devices[d];
        const td_trace_busy *db = &s->device_busy[d];
        fputs("  ", f);
        fprintf(f, "%-30.*s %8zu %12s %11.1f%%  %zu track%s\n", short_len(dev->name), dev->name, db->n_ops,
                td_trace_fmt_time(b, sizeof b, db->busy), 100.0 * db->utilisation, dev->n_tracks,
                dev->n_tracks == 1 ? "" : "s");
        for (size_t i = 0; i < t->n_tracks; i++) {
            if (t->tracks[i].device != d) continue;
            const td_trace_busy *tb = &s->track_busy[i];
            fputs("    ", f);
            put_name(f, t->tracks[i].name, 28);
            fprintf(f, " %8zu %12s %11.1f%%\n", tb->n_ops, td_trace_fmt_time(b, sizeof b, tb->busy),
                    100.0 * tb->utilisation);
        }
    }
}

static void print_parallelism(FILE *f, const td_trace_summary *s) {
    char b[32], c[32];
    fprintf(f, "\nparallelism achieved: %.2f (sum of op time %s / span %s)\n", s->parallelism,
            td_trace_fmt_time(b, sizeof b, s->op_time), td_trace_fmt_time(c, sizeof c, s->span));
    if (s->span <= 0) return;
    fprintf(f, "  %-12s %12s %8s\n", "ops at once", "time", "of span");
    /* At most 16 rows: with more levels, each row sums a range of them. */
    size_t per = (s->n_running + 15) / 16;
    for (size_t k = 0; k < s->n_running; k += per) {
        double time = 0;
        size_t hi = k + per < s->n_running ? k + per - 1 : s->n_running - 1;
        for (size_t j = k; j <= hi; j++) time += s->time_running[j];
        char label[48];
        if (hi == k) snprintf(label, sizeof label, "%zu", k);
        else snprintf(label, sizeof label, "%zu-%zu", k, hi);
        double pct = share(time, s->span);
        fprintf(f, "  %12s %12s %7.1f%%  ", label, td_trace_fmt_time(b, sizeof b, time), pct);
        for (int i = 0; i < (int)lround(pct * 0.4); i++) fputc('#', f);
        fputc('\n', f);
    }
}

static void print_stat(FILE *f, const char *what, const td_trace_stat *st) {
    char a[32], b[32], c[32];
    if (!st->n) {
        fprintf(f, "  %-24s %8s   (no op has these times)\n", what, "0");
        return;
    }
    fprintf(f, "  %-24s %8zu %12s %12s %12s\n", what, st->n, td_trace_fmt_time(a, sizeof a, st->median),
            td_trace_fmt_time(b, sizeof b, st->p90), td_trace_fmt_time(c, sizeof c, st->max));
}

static void print_queueing(FILE *f, const td_trace *t, const td_trace_summary *s) {
    fprintf(f, "\nqueueing\n  %-24s %8s %12s %12s %12s\n", "delay", "ops", "median", "p90", "max");
    print_stat(f, "ready -> start (queued)", &s->queued);
    print_stat(f, "push -> ready", &s->ready_delay);
    if (t->max_ready_depth >= 0) fprintf(f, "  longest ready queue: %.0f ops\n", t->max_ready_depth);
    if (t->max_bytes_in_flight >= 0)
        fprintf(f, "  most bytes in flight: %.0f (%.1f MiB)\n", t->max_bytes_in_flight,
                t->max_bytes_in_flight / 1048576.0);
}

static void print_path(FILE *f, const td_trace *t, const td_trace_summary *s, size_t top) {
    char a[32], b[32];
    fprintf(f, "\ncritical path: %s, %.1f%% of the span, %zu op%s (the longest chain of dependencies, by op time)\n",
            td_trace_fmt_time(a, sizeof a, s->path_time), share(s->path_time, s->span), s->n_path,
            s->n_path == 1 ? "" : "s");
    size_t n = top && top < s->n_path ? top : s->n_path;
    if (!n) return;
    fprintf(f, "  %5s %10s  %-32s %12s %12s\n", "#", "push", "op", "start", "duration");
    for (size_t k = 0; k < n; k++) {
        const td_trace_op *op = &t->ops[s->path[k]];
        fprintf(f, "  %5zu %10llu  ", k + 1, (unsigned long long)op->push);
        put_name(f, op->name, 32);
        fprintf(f, " %12s %12s\n", td_trace_fmt_time(a, sizeof a, op->ts - s->t0),
                td_trace_fmt_time(b, sizeof b, op->dur));
    }
    if (n < s->n_path) fprintf(f, "  ... and %zu more (--top 0 lists them all)\n", s->n_path - n);
}

static void print_names(FILE *f, const td_trace_summary *s, size_t top) {
    char a[32], b[32], c[32];
    size_t n = top && top < s->n_names ? top : s->n_names;
    fprintf(f, "\nop names by total time (%zu of %zu)\n", n, s->n_names);
    if (!n) return;
    fprintf(f, "  %-32s %8s %12s %12s %12s %8s\n", "op", "count", "total", "mean", "max", "of time");
    for (size_t i = 0; i < n; i++) {
        const td_trace_name_row *r = &s->names[i];
        fputs("  ", f);
        put_name(f, r->name, 32);
        fprintf(f, " %8zu %12s %12s %12s %7.1f%%\n", r->count, td_trace_fmt_time(a, sizeof a, r->total),
                td_trace_fmt_time(b, sizeof b, r->mean), td_trace_fmt_time(c, sizeof c, r->max),
                share(r->total, s->op_time));
    }
}

int td_trace_print_text(FILE *f, const char *source, const td_trace *t, const td_trace_summary *s, size_t top) {
    char a[32];
    fprintf(f, "tide trace%s%s\n", source ? ": " : "", source ? source : "");
    fprintf(f, "  %zu op%s on %zu device%s and %zu track%s; %zu dependency flow%s", s->n_ops, s->n_ops == 1 ? "" : "s",
            t->n_devices, t->n_devices == 1 ? "" : "s", t->n_tracks, t->n_tracks == 1 ? "" : "s", t->n_flows,
            t->n_flows == 1 ? "" : "s");
    if (t->n_flows_ignored) fprintf(f, " (%zu more ignored: see the warnings)", t->n_flows_ignored);
    fprintf(f, "\n  span %s (first op start to last op end)\n", td_trace_fmt_time(a, sizeof a, s->span));
    for (size_t d = 0; d < t->n_devices; d++) {
        fputs("  device ", f);
        put_name(f, t->devices[d].name, 0);
        fputc('\n', f);
    }
    if (s->n_failed || s->n_skipped)
        fprintf(f, "  %zu op%s failed, %zu skipped after a failure\n", s->n_failed, s->n_failed == 1 ? "" : "s",
                s->n_skipped);
    if (s->n_ops) {
        print_busy(f, t, s);
        print_parallelism(f, s);
        print_queueing(f, t, s);
        print_path(f, t, s, top);
        print_names(f, s, top);
    }
    return ferror(f) ? -1 : 0;
}

/* ---- JSON ---- */

/* Builders that remember a failed allocation, so one check at the end finds it. */
typedef struct {
    int failed;
} jctx;

static cJSON *jcheck(jctx *c, cJSON *x) {
    if (!x) c->failed = 1;
    return x;
}
static void jnum(jctx *c, cJSON *o, const char *k, double v) { jcheck(c, cJSON_AddNumberToObject(o, k, v)); }
static void jstr(jctx *c, cJSON *o, const char *k, const char *v) { jcheck(c, cJSON_AddStringToObject(o, k, v)); }
static cJSON *jobj(jctx *c, cJSON *parent, const char *k) { return jcheck(c, cJSON_AddObjectToObject(parent, k)); }
static cJSON *jarr(jctx *c, cJSON *parent, const char *k) { return jcheck(c, cJSON_AddArrayToObject(parent, k)); }
static cJSON *jitem(jctx *c, cJSON *arr) {
    cJSON *o = jcheck(c, cJSON_CreateObject());
    if (o && !cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        c->failed = 1;
        return NULL;
    }
    return o;
}

static void jstat(jctx *c, cJSON *o, const char *k, const td_trace_stat *st) {
    cJSON *x = jobj(c, o, k);
    jnum(c, x, "n", (double)st->n);
    jnum(c, x, "median", st->median);
    jnum(c, x, "p90", st->p90);
    jnum(c, x, "max", st->max);
}

static void json_devices(jctx *c, cJSON *root, const td_trace *t, const td_trace_summary *s) {
    cJSON *devs = jarr(c, root, "devices");
    for (size_t d = 0; d < t->n_devices; d++) {
        cJSON *o = jitem(c, devs);
        jnum(c, o, "pid", (double)t->devices[d].pid);
        jstr(c, o, "name", t->devices[d].name);
        jnum(c, o, "ops", (double)s->device_busy[d].n_ops);
        jnum(c, o, "busy_us", s->device_busy[d].busy);
        jnum(c, o, "utilisation", s->device_busy[d].utilisation);
        cJSON *tracks = jarr(c, o, "tracks");
        for (size_t i = 0; i < t->n_tracks; i++) {
            if (t->tracks[i].device != d) continue;
            cJSON *w = jitem(c, tracks);
            jnum(c, w, "tid", (double)t->tracks[i].tid);
            jstr(c, w, "name", t->tracks[i].name);
            jnum(c, w, "ops", (double)s->track_busy[i].n_ops);
            jnum(c, w, "busy_us", s->track_busy[i].busy);
            jnum(c, w, "utilisation", s->track_busy[i].utilisation);
        }
    }
}

static void json_path(jctx *c, cJSON *root, const td_trace *t, const td_trace_summary *s, size_t top) {
    cJSON *p = jobj(c, root, "critical_path");
    jnum(c, p, "time_us", s->path_time);
    jnum(c, p, "share_of_span", s->span > 0 ? s->path_time / s->span : 0);
    jnum(c, p, "n_ops", (double)s->n_path);
    cJSON *ops = jarr(c, p, "ops");
    size_t n = top && top < s->n_path ? top : s->n_path;
    for (size_t k = 0; k < n; k++) {
        const td_trace_op *op = &t->ops[s->path[k]];
        cJSON *o = jitem(c, ops);
        jnum(c, o, "push", (double)op->push);
        jstr(c, o, "name", op->name);
        jnum(c, o, "ts_us", op->ts);
        jnum(c, o, "dur_us", op->dur);
    }
}

int td_trace_print_json(FILE *f, const char *source, const td_trace *t, const td_trace_summary *s, size_t top) {
    jctx c = {0};
    cJSON *root = jcheck(&c, cJSON_CreateObject());
    if (source) jstr(&c, root, "source", source);
    jnum(&c, root, "ops", (double)s->n_ops);
    jnum(&c, root, "flows", (double)t->n_flows);
    jnum(&c, root, "flows_ignored", (double)t->n_flows_ignored);
    jnum(&c, root, "failed", (double)s->n_failed);
    jnum(&c, root, "skipped", (double)s->n_skipped);
    jnum(&c, root, "t0_us", s->t0);
    jnum(&c, root, "t1_us", s->t1);
    jnum(&c, root, "span_us", s->span);
    jnum(&c, root, "op_time_us", s->op_time);
    jnum(&c, root, "parallelism", s->parallelism);
    json_devices(&c, root, t, s);
    cJSON *run = jarr(&c, root, "running");
    for (size_t k = 0; k < s->n_running && s->span > 0; k++) {
        cJSON *o = jitem(&c, run);
        jnum(&c, o, "ops", (double)k);
        jnum(&c, o, "time_us", s->time_running[k]);
        jnum(&c, o, "share", s->time_running[k] / s->span);
    }
    jstat(&c, root, "queued_us", &s->queued);
    jstat(&c, root, "ready_delay_us", &s->ready_delay);
    if (t->max_ready_depth >= 0) jnum(&c, root, "max_ready_queue", t->max_ready_depth);
    if (t->max_bytes_in_flight >= 0) jnum(&c, root, "max_bytes_in_flight", t->max_bytes_in_flight);
    json_path(&c, root, t, s, top);
    cJSON *names = jarr(&c, root, "names");
    size_t n = top && top < s->n_names ? top : s->n_names;
    for (size_t i = 0; i < n; i++) {
        cJSON *o = jitem(&c, names);
        jstr(&c, o, "name", s->names[i].name);
        jnum(&c, o, "count", (double)s->names[i].count);
        jnum(&c, o, "total_us", s->names[i].total);
        jnum(&c, o, "mean_us", s->names[i].mean);
        jnum(&c, o, "min_us", s->names[i].min);
        jnum(&c, o, "max_us", s->names[i].max);
    }
    cJSON *w = jarr(&c, root, "warnings");
    for (size_t i = 0; i < t->n_warnings && i < TD_TRACE_MAX_WARNINGS; i++) {
        cJSON *ws = t->warnings[i] ? jcheck(&c, cJSON_CreateString(t->warnings[i])) : NULL;
        if (ws && !cJSON_AddItemToArray(w, ws)) {
            cJSON_Delete(ws);
            c.failed = 1;
        }
    }
    jnum(&c, root, "warnings_total", (double)t->n_warnings);
    char *text = c.failed ? NULL : cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return -1;
    fputs(text, f);
    fputc('\n', f);
    free(text);
    return ferror(f) ? -1 : 0;
}
