/* The numbers of a trace: span, busy time per track and device, how many ops
 * ran at once, queueing delays, the critical path, and time per op name.
 *
 * Each figure takes one sort (O(n log n)) or less; nothing compares every op
 * with every other.  The critical path is a longest path over a DAG: every
 * usable flow goes from a lower push number to a higher one (td_trace_load
 * drops the others), so visiting ops in push order sees every predecessor of
 * an op before the op.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "trace_summary.h"

void td_trace_summary_free(td_trace_summary *s) {
    if (!s) return;
    free(s->time_running);
    free(s->track_busy);
    free(s->device_busy);
    free(s->path);
    free(s->names);
    free(s);
}

/* ---- queueing statistics ---- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of n sorted values, interpolating between ranks (numpy's
 * default): the median of {1, 2, 3, 4} is 2.5. */
static double quantile(const double *v, size_t n, double q) {
    double r = q * (double)(n - 1);
    size_t i = (size_t)floor(r);
    if (i + 1 >= n) return v[n - 1];
    return v[i] + (v[i + 1] - v[i]) * (r - (double)i);
}

static void stat_of(double *v, size_t n, td_trace_stat *s) {
    memset(s, 0, sizeof *s);
    s->n = n;
    if (n == 0) return;
    qsort(v, n, sizeof *v, cmp_double);
    s->median = quantile(v, n, 0.5);
    s->p90 = quantile(v, n, 0.9);
    s->max = v[n - 1];
}

static int queueing(const td_trace *t, td_trace_summary *s) {
    double *v = malloc((t->n_ops ? t->n_ops : 1) * sizeof *v);
    if (!v) return 0;
    size_t n = 0;
    for (size_t i = 0; i < t->n_ops; i++)
        if (!isnan(t->ops[i].queued_us)) v[n++] = t->ops[i].queued_us;
    stat_of(v, n, &s->queued);
    n = 0;
    for (size_t i = 0; i < t->n_ops; i++)
        if (!isnan(t->ops[i].ready_us) && !isnan(t->ops[i].pushed_us))
            v[n++] = t->ops[i].ready_us - t->ops[i].pushed_us;
    stat_of(v, n, &s->ready_delay);
    free(v);
    return 1;
}

/* ---- busy time per track and device ---- */

typedef struct {
    size_t track;
    double ts, end;
} interval;

static int cmp_interval(const void *a, const void *b) {
    const interval *x = a, *y = b;
    if (x->track != y->track) return x->track < y->track ? -1 : 1;
    if (x->ts != y->ts) return x->ts < y->ts ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* Busy time is the union of a track's op intervals: ops of one worker do not
 * overlap in a trace tide writes, but counting overlaps once keeps
 * utilisation within [0, 1] whatever the file says. */
static int busy(const td_trace *t, td_trace_summary *s) {
    s->track_busy = calloc(t->n_tracks ? t->n_tracks : 1, sizeof *s->track_busy);
    s->device_busy = calloc(t->n_devices ? t->n_devices : 1, sizeof *s->device_busy);
    interval *iv = malloc((t->n_ops ? t->n_ops : 1) * sizeof *iv);
    if (!s->track_busy || !s->device_busy || !iv) {
        free(iv);
        return 0;
    }
    for (size_t i = 0; i < t->n_ops; i++) iv[i] = (interval){t->ops[i].track, t->ops[i].ts, t->ops[i].ts + t->ops[i].dur};
    if (t->n_ops) qsort(iv, t->n_ops, sizeof *iv, cmp_interval);
    for (size_t k = 0; k < t->n_ops;) {
        size_t tr = iv[k].track;
        double lo = iv[k].ts, hi = lo, sum = 0;
        for (; k < t->n_ops && iv[k].track == tr; k++) {
            if (iv[k].ts > hi) { /* a gap: close the interval so far */
                sum += hi - lo;
                lo = iv[k].ts;
                hi = lo;
            }
            if (iv[k].end > hi) hi = iv[k].end;
            s->track_busy[tr].n_ops++;
        }
        s->track_busy[tr].busy = sum + (hi - lo);
    }
    free(iv);
    for (size_t i = 0; i < t->n_tracks; i++) {
        td_trace_busy *tb = &s->track_busy[i], *db = &s->device_busy[t->tracks[i].device];
        tb->utilisation = s->span > 0 ? tb->busy / s->span : 0;
        db->busy += tb->busy;
        db->n_ops += tb->n_ops;
    }
    for (size_t d = 0; d < t->n_devices; d++) {
        double cap = s->span * (double)t->devices[d].n_tracks;
        s->device_busy[d].utilisation = cap > 0 ? s->device_busy[d].busy / cap : 0;
    }
    return 1;
}

/* ---- how many ops ran at once ---- */

typedef struct {
    double t;
    int delta; /* +1 an op starts, -1 one ends */
} edge;

static int cmp_edge(const void *a, const void *b) {
    const edge *x = a, *y = b;
    if (x->t != y->t) return x->t < y->t ? -1 : 1;
    return (x->delta > y->delta) - (x->delta < y->delta); /* ends first: back to back is not at once */
}

/* A sweep over op starts and ends; time_running[k] collects the time with
 * exactly k ops running.  Ops of no duration take no time and are left out. */
static int concurrency(const td_trace *t, td_trace_summary *s) {
    edge *e = malloc((t->n_ops ? 2 * t->n_ops : 1) * sizeof *e);
    double *hist = calloc(t->n_ops + 1, sizeof *hist);
    if (!e || !hist) {
        free(e);
        free(hist);
        return 0;
    }
    size_t n = 0;
    for (size_t i = 0; i < t->n_ops; i++)
        if (t->ops[i].dur > 0) {
            e[n++] = (edge){t->ops[i].ts, +1};
            e[n++] = (edge){t->ops[i].ts + t->ops[i].dur, -1};
        }
    if (n) qsort(e, n, sizeof *e, cmp_edge);
    size_t running = 0, most = 0;
    double prev = s->t0;
    for (size_t i = 0; i < n; i++) {
        if (e[i].t > prev) {
            hist[running] += e[i].t - prev;
            prev = e[i].t;
        }
        running = e[i].delta > 0 ? running + 1 : running - 1;
        if (running > most) most = running;
    }
    free(e);
    s->time_running = hist;
    s->n_running = most + 1;
    return 1;
}

/* ---- the critical path ---- */

static int critical_path(const td_trace *t, td_trace_summary *s) {
    size_t n = t->n_ops, nf = t->n_flows;
    double *dist = malloc((n ? n : 1) * sizeof *dist);
    size_t *pred = malloc((n ? n : 1) * sizeof *pred);
    size_t *first = calloc(n + 1, sizeof *first); /* flows into op i: by_to[first[i] .. first[i + 1]) */
    size_t *by_to = malloc((nf ? nf : 1) * sizeof *by_to);
    int ok = 0;
    if (!dist || !pred || !first || !by_to) goto out;
    /* Counting sort of the flows by the op they lead to. */
    for (size_t k = 0; k < nf; k++) first[t->flows[k].to + 1]++;
    for (size_t i = 0; i < n; i++) first[i + 1] += first[i];
    {
        size_t *cursor = malloc((n ? n : 1) * sizeof *cursor);
        if (!cursor) goto out;
        if (n) memcpy(cursor, first, n * sizeof *cursor);
        for (size_t k = 0; k < nf; k++) by_to[cursor[t->flows[k].to]++] = t->flows[k].from;
        free(cursor);
    }
    /* Longest path ending at each op, in push order; ties keep the lower push number. */
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        double longest = 0;
        pred[i] = SIZE_MAX;
        for (size_t k = first[i]; k < first[i + 1]; k++) {
            size_t p = by_to[k];
            if (pred[i] == SIZE_MAX || dist[p] > longest || (dist[p] == longest && p < pred[i])) {
                longest = dist[p];
                pred[i] = p;
            }
        }
        dist[i] = longest + t->ops[i].dur;
        if (best == SIZE_MAX || dist[i] > dist[best]) best = i;
    }
    size_t len = 0;
    for (size_t i = best; i != SIZE_MAX; i = pred[i]) len++;
    s->path = malloc((len ? len : 1) * sizeof *s->path);
    if (!s->path) goto out;
    s->n_path = len;
    for (size_t i = best, k = len; i != SIZE_MAX; i = pred[i]) s->path[--k] = i;
    s->path_time = best == SIZE_MAX ? 0 : dist[best];
    ok = 1;
out:
    free(dist);
    free(pred);
    free(first);
    free(by_to);
    return ok;
}

/* ---- time per op name ---- */

static int cmp_name(const void *a, const void *b) {
    const td_trace_op *x = *(const td_trace_op *const *)a, *y = *(const td_trace_op *const *)b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x > y) - (x < y);
}

static int cmp_row(const void *a, const void *b) {
    const td_trace_name_row *x = a, *y = b;
    if (x->total != y->total) return x->total < y->total ? 1 : -1;
    return strcmp(x->name, y->name);
}

static int by_name(const td_trace *t, td_trace_summary *s) {
    size_t n = t->n_ops;
    const td_trace_op **order = malloc((n ? n : 1) * sizeof *order);
    s->names = calloc(n ? n : 1, sizeof *s->names);
    if (!order || !s->names) {
        free(order);
        return 0;
    }
    for (size_t i = 0; i < n; i++) order[i] = &t->ops[i];
    if (n) qsort(order, n, sizeof *order, cmp_name);
    for (size_t k = 0; k < n; k++) {
        const td_trace_op *op = order[k];
        td_trace_name_row *r = &s->names[s->n_names ? s->n_names - 1 : 0];
        if (s->n_names == 0 || strcmp(r->name, op->name) != 0) {
            r = &s->names[s->n_names++];
            r->name = op->name;
            r->min = op->dur;
            r->max = op->dur;
        }
        r->count++;
        r->total += op->dur;
        if (op->dur < r->min) r->min = op->dur;
        if (op->dur > r->max) r->max = op->dur;
    }
    for (size_t i = 0; i < s->n_names; i++) s->names[i].mean = s->names[i].total / (double)s->names[i].count;
    if (s->n_names) qsort(s->names, s->n_names, sizeof *s->names, cmp_row);
    free(order);
    return 1;
}

td_trace_status td_trace_summarise(const td_trace *t, td_trace_summary **out) {
    *out = NULL;
    td_trace_summary *s = calloc(1, sizeof *s);
    if (!s) return TD_TRACE_ENOMEM;
    s->n_ops = t->n_ops;
    for (size_t i = 0; i < t->n_ops; i++) {
        const td_trace_op *op = &t->ops[i];
        if (i == 0 || op->ts < s->t0) s->t0 = op->ts;
        if (i == 0 || op->ts + op->dur > s->t1) s->t1 = op->ts + op->dur;
        s->op_time += op->dur;
        s->n_failed += op->outcome == TD_TRACE_FAILED;
        s->n_skipped += op->outcome == TD_TRACE_SKIPPED;
    }
    s->span = s->t1 - s->t0;
    s->parallelism = s->span > 0 ? s->op_time / s->span : 0;
    if (!busy(t, s) || !concurrency(t, s) || !queueing(t, s) || !critical_path(t, s) || !by_name(t, s)) {
        td_trace_summary_free(s);
        return TD_TRACE_ENOMEM;
    }
    *out = s;
    return TD_TRACE_OK;
}
