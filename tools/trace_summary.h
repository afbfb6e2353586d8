/* tide-trace's library: read a trace tide wrote, summarise it, report it.
 *
 * A trace is the Chrome Trace Event JSON that td_profiler_stop writes (see
 * engine/profiler.c): "X" events for ops (args: push number, status, pushed_us,
 * ready_us, queued_us), "M" events naming devices (processes) and workers
 * (threads), "C" counters, and "s"/"f" flow pairs whose args {from, to} are
 * the push numbers of an op and of an op that waited for it.
 *
 * The library is split by step so tests can call each one:
 *   td_trace_load / td_trace_parse   file or text -> td_trace (validated)
 *   td_trace_summarise               td_trace -> td_trace_summary (numbers)
 *   td_trace_print_text / _json      the summary for a person / for a script
 *   td_trace_write_svg               the timeline as an SVG picture
 * Every step is O(n log n) in the number of events.  Nothing here aborts on
 * bad input: loading fails with a status and a message, and inconsistent
 * flows (naming an unknown op, or not going from a lower push number to a
 * higher one) are left out of the graph with a warning kept in the trace.
 *
 * These names belong to the tool, not to libtide; the tool uses no tide API.
 * Times are in microseconds throughout, as in the trace.
 */
#ifndef TIDE_TOOLS_TRACE_SUMMARY_H
#define TIDE_TOOLS_TRACE_SUMMARY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    TD_TRACE_OK = 0,
    TD_TRACE_EIO,     /* the file cannot be read */
    TD_TRACE_EFORMAT, /* not JSON, or not a trace as tide writes it */
    TD_TRACE_ENOMEM
} td_trace_status;

/* What an op's "status" arg says. */
typedef enum { TD_TRACE_RAN_OK = 0, TD_TRACE_FAILED, TD_TRACE_SKIPPED } td_trace_outcome;

typedef struct {
    char *name;        /* as in the trace (any bytes but NUL); owned by the trace */
    uint64_t push;     /* push number, unique within a trace */
    size_t track;      /* index into td_trace.tracks */
    double ts, dur;    /* start and duration */
    double pushed_us;  /* push time; NAN when the event has none */
    double ready_us;   /* when its last dependency was resolved; NAN when absent */
    double queued_us;  /* ready -> start; NAN when absent */
    td_trace_outcome outcome;
} td_trace_op;

typedef struct {
    int64_t pid, tid;  /* the event's pid (device) and tid (worker) */
    size_t device;     /* index into td_trace.devices */
    char *name;        /* its thread_name ("worker 0"), or "tid N"; owned */
} td_trace_track;

typedef struct {
    int64_t pid;
    char *name;        /* its process_name ("cpu:0 (2 cores, ...)"), or "pid N"; owned */
    size_t n_tracks;
} td_trace_device;

/* A dependency the engine resolved: ops[to] waited for ops[from]; from < to. */
typedef struct {
    size_t from, to;
} td_trace_flow;

enum { TD_TRACE_MAX_WARNINGS = 16 };

typedef struct {
    td_trace_op *ops;          /* sorted by push number */
    size_t n_ops;
    td_trace_track *tracks;    /* sorted by (pid, tid); only tracks that ran an op */
    size_t n_tracks;
    td_trace_device *devices;  /* sorted by pid */
    size_t n_devices;
    td_trace_flow *flows;      /* the usable flows, in file order */
    size_t n_flows;
    size_t n_flows_ignored;    /* flows left out, each with a warning */
    double max_ready_depth;    /* largest "ready queue" counter; -1 when there is none */
    double max_bytes_in_flight; /* largest "bytes in flight" counter; -1 when there is none */
    char *warnings[TD_TRACE_MAX_WARNINGS]; /* the first warnings, owned */
    size_t n_warnings;         /* all of them, also those not kept */
} td_trace;

/* Reads and validates the trace at path ("-": standard input).  On success
 * *out owns a new trace (free it with td_trace_free).  On failure *out is
 * NULL and err (errlen bytes, may be NULL) holds a message naming the file
 * and, for a bad event, its index and the missing field. */
td_trace_status td_trace_load(const char *path, td_trace **out, char *err, size_t errlen);

/* The same from text in memory (len bytes, not necessarily NUL-terminated). */
td_trace_status td_trace_parse(const char *text, size_t len, td_trace **out, char *err, size_t errlen);

void td_trace_free(td_trace *t); /* NULL: nothing */

typedef struct {
    size_t n;                  /* values that went in (ops having the field) */
    double median, p90, max;   /* percentiles interpolate between ranks; 0 when n == 0 */
} td_trace_stat;

typedef struct {
    size_t n_ops;
    double busy;        /* time at least one op ran (overlaps counted once) */
    double utilisation; /* busy / span, per track; busy / (span * tracks) per device */
} td_trace_busy;

typedef struct {
    const char *name;   /* borrowed from the trace */
    size_t count;
    double total, mean, min, max;
} td_trace_name_row;

typedef struct {
    size_t n_ops;
    double t0, t1, span;        /* first op start, last op end, t1 - t0 */
    double op_time;             /* sum of op durations */
    double parallelism;         /* op_time / span (0 for an empty span) */
    double *time_running;       /* [k]: time within the span with exactly k ops running */
    size_t n_running;           /* entries of time_running: the most ops at once, plus one */
    td_trace_busy *track_busy;  /* per track of the trace */
    td_trace_busy *device_busy; /* per device of the trace */
    td_trace_stat queued;       /* ready -> start (queued_us) */
    td_trace_stat ready_delay;  /* push -> ready (ready_us - pushed_us) */
    size_t *path;               /* the critical path: op indices, first to last */
    size_t n_path;
    double path_time;           /* sum of the durations of its ops */
    td_trace_name_row *names;   /* per op name, by total time, largest first */
    size_t n_names;
    size_t n_failed, n_skipped;
} td_trace_summary;

/* Computes every figure of the summary.  The critical path is the chain of
 * flows (a DAG: every usable flow goes to a higher push number) with the
 * largest sum of op durations; ties go to the lower push numbers.  *out owns
 * a new summary that borrows names from t: free it before t. */
td_trace_status td_trace_summarise(const td_trace *t, td_trace_summary **out);

void td_trace_summary_free(td_trace_summary *s); /* NULL: nothing */

/* The summary as text for a person; top: rows of the op-name table and ops of
 * the critical path listed (0: all).  source names the trace in the heading
 * (may be NULL).  Returns 0, or -1 when writing failed. */
int td_trace_print_text(FILE *f, const char *source, const td_trace *t, const td_trace_summary *s,
                        size_t top);

/* The same as one JSON object (times in microseconds), with the trace's
 * warnings.  Returns 0, or -1 when writing failed or memory ran out. */
int td_trace_print_json(FILE *f, const char *source, const td_trace *t, const td_trace_summary *s,
                        size_t top);

typedef struct {
    int width;           /* of the whole picture, in pixels; at least 400 */
    size_t max_flows;    /* draw flow arrows when the trace has at most this many */
    size_t legend;       /* op names in the legend, largest total first */
} td_trace_svg_options;

td_trace_svg_options td_trace_svg_options_default(void); /* 1400 px, 2000 flows, 16 names */

/* The timeline: one row per track, one <rect> per op (and no other <rect>),
 * coloured by a hash of its name, with a <title> tooltip; a time axis;
 * flow arrows; the critical path outlined; a legend.  Text is escaped for
 * XML, and bytes that are not valid UTF-8 or not allowed in XML become '?'.
 * Returns 0, or -1 when writing failed. */
int td_trace_write_svg(FILE *f, const td_trace *t, const td_trace_summary *s,
                       const td_trace_svg_options *opt);

/* Human-friendly duration ("812 ns", "12.3 us", "4.56 ms", "1.23 s") into buf. */
const char *td_trace_fmt_time(char *buf, size_t n, double us);

#endif
