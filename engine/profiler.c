/* The profiler: per-thread event buffers and the Chrome trace writer.
 *
 * Each thread that ends an op while recording appends a record to its own
 * buffer (owner-only writes, no lock); the buffer is registered once in a
 * global list.  A recording is a *session*: a buffer whose session number is
 * stale is emptied by its owner on its next record, so starting again never
 * touches other threads' buffers.  td_profiler_stop first drains the ops
 * pushed so far, so every record of the session is written (and visible to
 * the stopping thread through the drain's synchronisation) before it reads
 * the buffers.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tide/profiler.h>

#include "engine/internal.h"

enum { PROF_VARS = 8 };
/* How far ahead of the record being written its buffer is fetched (bytes;
 * a prefetch past the end of a buffer is harmless). */
enum { PREFETCH_AHEAD = 4 * 64 };

/* What the writer reads: one op, merged from its push and end records. */
typedef struct {
    uint64_t seq, t_push, t_ready, t_start, t_end;
    uint64_t inflight;
    uint64_t by; /* a flow arrow from op `by` (0: none; other arrows are flow records) */
    int32_t dev_kind, dev_id, worker, status; /* status: td_status, or -1 for skipped */
    int32_t depth;                           /* ready-queue depth when it started */
    uint16_t n_reads, n_writes;              /* how many vars (only PROF_VARS ids kept) */
    uint64_t vars[PROF_VARS];                /* ids: reads first, then writes */
    const char *name_ptr; /* the op's name when it outlives the op (static or interned) ... */
    char name[TD__NAME_MAX]; /* ... else a copy */
} prof_rec;

static const char *rec_name(const prof_rec *r) { return r->name_ptr ? r->name_ptr : r->name; }

/* Written by the pushing thread: what it knows at push.  The worker that
 * ends the op writes an end record, and the two meet (by push number) only
 * when the trace is written, so the op's name, vars and push time never
 * travel to the worker's core. */
typedef struct {
    uint64_t seq, t_push;
    const char *name_ptr;
    int32_t dev_kind, dev_id;
    uint16_t n_reads, n_writes;
    uint64_t vars[PROF_VARS];
    char name[TD__NAME_MAX];
} push_rec;

/* Written by the worker that ends the op: one line per record (64 bytes,
 * in a buffer that starts on a line: grow_ends). */
typedef struct {
    uint64_t seq;
    uint64_t t_ready, t_start, t_end; /* t_ready 0: ready at push */
    uint64_t inflight;
    uint64_t by; /* the op whose end made it ready (a flow arrow), or 0 */
    int32_t worker, status, depth;
    int32_t pad_;
} end_rec;
_Static_assert(sizeof(end_rec) == 64, "an end record is one cache line");

typedef struct {
    uint64_t from, to;
} prof_flow;

/* Push records are stored packed, as 8-byte words: seq, t_push, the name
 * pointer (0: a 48-byte copy of the name ends the record), device kind and
 * id and the read and write counts in one word, then the var ids kept.  A
 * one-var op takes 40 bytes: the pushing thread writes a fresh line of
 * memory per op or less, and outstanding misses on those lines were what
 * slowed pushes while recording. */
enum { PUSH_WORDS_MAX = 4 + PROF_VARS + TD__NAME_MAX / 8 };

typedef struct prof_buf {
    uint64_t *pushes; /* packed push records */
    size_t np, capp;  /* in words */
    size_t npush;     /* records */
    end_rec *ends;
    size_t ne, cape;
    prof_flow *flows;
    size_t nf, capf;
    size_t dropped;
    uint32_t session;
    struct prof_buf *next;      /* every buffer ever made (collect reads them all) */
    struct prof_buf *next_free; /* buffers of threads that exited */
} prof_buf;

/* A buffer's counts are written on every record by its thread: buffers on
 * lines of their own (calloc put two threads' buffers on one line, and the
 * pushing thread and a worker wrote it in turn on every op). */
enum { PROF_BUF_ALIGN = 128, PROF_BUF_BYTES = (sizeof(prof_buf) + PROF_BUF_ALIGN - 1) / PROF_BUF_ALIGN * PROF_BUF_ALIGN };

atomic_int td__prof_on;
int td__prof_tsc;

/* ---- ticks to ns ----
 * The rate of td__prof_ticks is measured against uv_hrtime from the first
 * td_profiler_start to each collection (at least a millisecond apart), so
 * the longer the program has profiled, the finer the rate. */
static uint64_t cal_tick0, cal_ns0;
static double tick_ns = 1.0; /* ns per tick, for the collection being written */

/* Whether the time-stamp counter runs at a constant rate through sleep
 * states and frequency changes (CPUID 0x80000007, EDX bit 8). */
static int tsc_invariant(void) {
#if defined(__x86_64__)
    if (td__env_int("TIDE_PROFILE_TSC", 1, NULL) == 0) return 0;
    uint32_t a, b, c, d;
    __asm__ __volatile__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x80000000u), "c"(0));
    if (a < 0x80000007u) return 0;
    __asm__ __volatile__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x80000007u), "c"(0));
    return (d >> 8) & 1;
#else
    return 0;
#endif
}

static void calibrate_start(void) { /* prof_mu held, first start only */
    td__prof_tsc = tsc_invariant();
    cal_ns0 = uv_hrtime();
    cal_tick0 = td__prof_ticks();
}

static void calibrate(void) { /* prof_mu held */
    if (!td__prof_tsc) {
        tick_ns = 1.0;
        return;
    }
    uint64_t ns1;
    while ((ns1 = uv_hrtime()) - cal_ns0 < 1000000) td__cpu_relax();
    uint64_t tick1 = td__prof_ticks();
    tick_ns = tick1 > cal_tick0 ? (double)(ns1 - cal_ns0) / (double)(tick1 - cal_tick0) : 1.0;
}
static atomic_uint prof_session;
static uv_once_t prof_once = UV_ONCE_INIT;
static uv_mutex_t prof_mu; /* buffer list, start/stop, summary */
static prof_buf *bufs;
static char prof_path[4096];
static int prof_has_path;
static _Thread_local prof_buf *my_buf;

typedef struct {
    char name[TD__NAME_MAX];
    uint64_t count;
    double total, min, max;
} agg_row;
static agg_row *agg;
static size_t agg_n;

static void buf_release(void *p);
static pthread_key_t buf_key;
static int buf_key_ok;
static void prof_init(void) {
    if (uv_mutex_init(&prof_mu) != 0) TD__PANIC("cannot create the profiler lock");
    buf_key_ok = pthread_key_create(&buf_key, buf_release) == 0;
}

/* A thread's buffer outlives it: when it exits (a key's destructor), the
 * buffer, with its records and its grown capacity, goes to a free list and
 * the next thread that records takes it over.  Programs that start and stop
 * the runtime (new workers each time) then record into memory already
 * faulted in instead of growing fresh buffers page by page. */
static prof_buf *free_bufs;

static void buf_release(void *p) {
    prof_buf *b = p;
    uv_mutex_lock(&prof_mu);
    b->next_free = free_bufs;
    free_bufs = b;
    uv_mutex_unlock(&prof_mu);
}

static prof_buf *buf_get(void) {
    prof_buf *b = my_buf;
    unsigned s = atomic_load_explicit(&prof_session, memory_order_acquire);
    if (TD__UNLIKELY(!b)) {
        uv_once(&prof_once, prof_init);
        uv_mutex_lock(&prof_mu);
        if ((b = free_bufs) != NULL) {
            free_bufs = b->next_free;
        } else if ((b = aligned_alloc(PROF_BUF_ALIGN, PROF_BUF_BYTES)) != NULL) {
            memset(b, 0, PROF_BUF_BYTES);
            b->next = bufs;
            bufs = b;
            b->session = s;
        }
        uv_mutex_unlock(&prof_mu);
        if (!b) return NULL;
        if (buf_key_ok) pthread_setspecific(buf_key, b);
        my_buf = b;
    }
    if (b->session != s) {
        b->np = b->npush = b->ne = b->nf = b->dropped = 0;
        b->session = s;
    }
    return b;
}

/* End records stay line-aligned (realloc keeps only malloc's alignment). */
static int grow_ends(prof_buf *b) {
    size_t nc = b->cape ? b->cape * 2 : 1024;
    end_rec *ne = aligned_alloc(64, nc * sizeof *ne);
    if (!ne) return 0;
    if (b->ne) memcpy(ne, b->ends, b->ne * sizeof *ne);
    free(b->ends);
    b->ends = ne;
    b->cape = nc;
    return 1;
}

static int grow(void **p, size_t *cap, size_t elem) {
    size_t nc = *cap ? *cap * 2 : 1024;
    void *np = realloc(*p, nc * elem);
    if (!np) return 0;
    *p = np;
    *cap = nc;
    return 1;
}

void td__prof_flow(uint64_t from_seq, uint64_t to_seq) {
    prof_buf *b = buf_get();
    if (!b) return;
    if (b->nf == b->capf && !grow((void **)&b->flows, &b->capf, sizeof *b->flows)) {
        b->dropped++;
        return;
    }
    b->flows[b->nf++] = (prof_flow){from_seq, to_seq};
    td__prefetch_w((char *)(b->flows + b->nf) + PREFETCH_AHEAD);
}

void td__prof_push(const td__opr *op, uint64_t t_push) {
    prof_buf *b = buf_get();
    if (!b) return;
    if (b->capp - b->np < PUSH_WORDS_MAX && !grow((void **)&b->pushes, &b->capp, sizeof *b->pushes)) {
        b->dropped++;
        return;
    }
    uint64_t *w = b->pushes + b->np;
    int n = op->n_acc, nr = 0, nw = 0, k = 4;
    const td__access *acc = op->acc;
    if (n == 1) { /* the usual case: one var */
        w[k++] = acc[0].var->id;
        if (acc[0].mode & TD__ACC_WRITE) nw = 1;
        else nr = 1;
    } else { /* reads first, then writes */
        for (int i = 0; i < n; i++) {
            if (acc[i].mode & TD__ACC_WRITE) nw++;
            else {
                nr++;
                if (k < 4 + PROF_VARS) w[k++] = acc[i].var->id;
            }
        }
        for (int i = 0; i < n && k < 4 + PROF_VARS; i++)
            if (acc[i].mode & TD__ACC_WRITE) w[k++] = acc[i].var->id;
    }
    w[0] = op->seq;
    w[1] = t_push;
    w[3] = (uint64_t)(uint16_t)op->ex.device.kind | (uint64_t)(uint16_t)op->ex.device.id << 16 |
           (uint64_t)(nr > 65535 ? 65535 : nr) << 32 | (uint64_t)(nw > 65535 ? 65535 : nw) << 48;
    if (td__op_name_in_record(op)) {
        w[2] = 0;
        td__strlcpy((char *)(w + k), op->name, TD__NAME_MAX);
        k += TD__NAME_MAX / 8;
    } else {
        w[2] = (uint64_t)(uintptr_t)op->name;
    }
    b->np += (size_t)k;
    /* Records fill fresh memory in order: fetch the lines a few records
     * ahead for writing, so that the push's next atomic step does not wait
     * for the line this record was written into. */
    td__prefetch_w(b->pushes + b->np + PREFETCH_AHEAD / sizeof *b->pushes);
    b->npush++;
}

/* Unpacks the push record at w into r; returns its length in words. */
static size_t push_unpack(const uint64_t *w, push_rec *r) {
    r->seq = w[0];
    r->t_push = w[1];
    r->name_ptr = (const char *)(uintptr_t)w[2];
    r->dev_kind = (int16_t)(w[3] & 0xffff);
    r->dev_id = (int16_t)(w[3] >> 16 & 0xffff);
    r->n_reads = (uint16_t)(w[3] >> 32);
    r->n_writes = (uint16_t)(w[3] >> 48);
    size_t k = (size_t)r->n_reads + r->n_writes;
    if (k > PROF_VARS) k = PROF_VARS;
    memcpy(r->vars, w + 4, k * sizeof *w);
    size_t len = 4 + k;
    if (!r->name_ptr) {
        memcpy(r->name, w + len, TD__NAME_MAX);
        r->name[TD__NAME_MAX - 1] = 0;
        len += TD__NAME_MAX / 8;
    }
    return len;
}

void td__prof_record(td__opr *op, int status, int depth) {
    uint64_t t_end = td__prof_ticks();
    prof_buf *b = buf_get();
    if (b && b->ne == b->cape && !grow_ends(b)) {
        b->dropped++;
        b = NULL;
    }
    if (b) {
        end_rec *r = &b->ends[b->ne++];
        td__prefetch_w((char *)r + PREFETCH_AHEAD);
        int p = op->prof;
        r->seq = op->seq;
        r->t_ready = p == TD__PROF_READY_LATER || p == TD__PROF_READY_BY ? op->t_ready
                     : p == TD__PROF_READY_AT_PUSH                         ? 0
                                                                           : op->t_start;
        r->t_start = op->t_start;
        r->t_end = t_end;
        r->inflight = atomic_load_explicit(&td__g.inflight, memory_order_relaxed);
        r->by = p == TD__PROF_READY_BY ? op->prof_by : 0;
        r->worker = op->ex.worker;
        r->status = status;
        r->depth = depth;
    }
    op->t_ready = t_end; /* the ready time of the op it makes ready (var.c) */
}

/* ---- the trace ---- */
static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}


static prof_rec *find_rec(prof_rec **sorted, size_t n, uint64_t seq) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (sorted[mid]->seq < seq) lo = mid + 1;
        else hi = mid;
    }
    return (lo < n && sorted[lo]->seq == seq) ? sorted[lo] : NULL;
}

static int pid_of(const prof_rec *r) { return r->dev_kind * 1000 + r->dev_id; }
/* t - t0 in us; signed, as counters of different cores may disagree by a
 * few ticks. */
static double us(uint64_t t, uint64_t t0) { return (double)(int64_t)(t - t0) * tick_ns / 1000.0; }

static const char *status_text(int st) { return st < 0 ? "skipped" : td_status_name((td_status)st); }

/* One flow arrow (a start and a finish event) from op a to op c, times
 * from t0; nothing when either has no record. */
static void flow_event(FILE *f, int *first, uint64_t t0, uint64_t *id, const prof_rec *a, const prof_rec *c) {
    if (!a || !c) return;
    ++*id;
    double ts_a = us(a->t_end, t0) - 0.001;
    if (ts_a < us(a->t_start, t0)) ts_a = us(a->t_start, t0);
    fprintf(f, "%s{\"ph\":\"s\",\"cat\":\"dep\",\"name\":\"dep\",\"id\":%llu,\"pid\":%d,\"tid\":%d,\"ts\":%.3f,"
               "\"args\":{\"from\":%llu,\"to\":%llu}}",
            *first ? "" : ",\n", (unsigned long long)*id, pid_of(a), a->worker < 0 ? 0 : a->worker, ts_a,
            (unsigned long long)a->seq, (unsigned long long)c->seq);
    fprintf(f, ",\n{\"ph\":\"f\",\"bp\":\"e\",\"cat\":\"dep\",\"name\":\"dep\",\"id\":%llu,\"pid\":%d,\"tid\":%d,"
               "\"ts\":%.3f,\"args\":{\"from\":%llu,\"to\":%llu}}",
            (unsigned long long)*id, pid_of(c), c->worker < 0 ? 0 : c->worker, us(c->t_start, t0),
            (unsigned long long)a->seq, (unsigned long long)c->seq);
    *first = 0;
}

static td_status write_trace(const char *path, prof_rec **sorted, size_t n, unsigned session) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return td__fail(TD_EIO, "td_profiler_stop: cannot write the trace to '%s'", tmp);
    uint64_t t0 = UINT64_MAX;
    for (size_t i = 0; i < n; i++)
        if (sorted[i]->t_push && sorted[i]->t_push < t0) t0 = sorted[i]->t_push;
    if (t0 == UINT64_MAX) t0 = 0;
    fputs("{\"displayTimeUnit\":\"ns\",\"otherData\":{\"producer\":\"tide\"},\"traceEvents\":[\n", f);
    int first = 1;
#define SEP() (first ? (first = 0, "") : ",\n")
    /* Names for processes (devices) and tracks (workers): one metadata
     * event per distinct device and per distinct worker of a device. */
    enum { NPROC = 2 * TD__MAX_CPU_DEVICES, NTRACK = 256 };
    unsigned char *seen = calloc(NPROC * (NTRACK + 1), 1);
    for (size_t i = 0; seen && i < n; i++) {
        prof_rec *r = sorted[i];
        int p = r->dev_kind * TD__MAX_CPU_DEVICES + r->dev_id;
        int w = r->worker < 0 ? 0 : r->worker;
        if (p < 0 || p >= NPROC) continue;
        unsigned char *ps = seen + (size_t)p * (NTRACK + 1);
        if (!ps[NTRACK]) {
            ps[NTRACK] = 1;
            td__device *d = td__device_find((td_device){r->dev_kind, r->dev_id});
            fprintf(f, "%s{\"ph\":\"M\",\"pid\":%d,\"name\":\"process_name\",\"args\":{\"name\":", SEP(), pid_of(r));
            json_str(f, d ? d->name : "device");
            fputs("}}", f);
        }
        if (w < NTRACK && !ps[w]) {
            ps[w] = 1;
            fprintf(f, "%s{\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"name\":\"thread_name\",\"args\":{\"name\":\"%s %d\"}}",
                    SEP(), pid_of(r), w, td__g.naive ? "caller thread (naive engine)" : "worker", w);
        }
    }
    free(seen);
    for (size_t i = 0; i < n; i++) {
        prof_rec *r = sorted[i];
        int w = r->worker < 0 ? 0 : r->worker;
        fprintf(f, "%s{\"ph\":\"X\",\"cat\":\"op\",\"name\":", SEP());
        json_str(f, rec_name(r));
        fprintf(f, ",\"pid\":%d,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,\"args\":{\"push\":%llu,\"status\":\"%s\","
                   "\"pushed_us\":%.3f,\"ready_us\":%.3f,\"queued_us\":%.3f,\"reads\":[",
                pid_of(r), w, us(r->t_start, t0), us(r->t_end, r->t_start), (unsigned long long)r->seq,
                status_text(r->status), us(r->t_push, t0), us(r->t_ready, t0), us(r->t_start, r->t_ready));
        int k = 0;
        for (int j = 0; j < r->n_reads && k < PROF_VARS; j++, k++) fprintf(f, "%s%llu", j ? "," : "", (unsigned long long)r->vars[k]);
        fputs("],\"writes\":[", f);
        for (int j = 0; j < r->n_writes && k < PROF_VARS; j++, k++) fprintf(f, "%s%llu", j ? "," : "", (unsigned long long)r->vars[k]);
        fprintf(f, "]%s}}", (r->n_reads + r->n_writes > PROF_VARS) ? ",\"vars_truncated\":true" : "");
        fprintf(f, "%s{\"ph\":\"C\",\"name\":\"ready queue\",\"pid\":%d,\"ts\":%.3f,\"args\":{\"depth\":%d}}", SEP(),
                pid_of(r), us(r->t_start, t0), r->depth);
        fprintf(f, "%s{\"ph\":\"C\",\"name\":\"bytes in flight\",\"pid\":%d,\"ts\":%.3f,\"args\":{\"bytes\":%llu}}",
                SEP(), pid_of(r), us(r->t_end, t0), (unsigned long long)r->inflight);
    }
    /* Flows: from the end of the op that released a dependency to the start
     * of the op that was waiting for it.  The last release of an op is in
     * its own record (by); others are flow records. */
    uint64_t id = 0;
    for (size_t i = 0; i < n; i++)
        if (sorted[i]->by) flow_event(f, &first, t0, &id, find_rec(sorted, n, sorted[i]->by), sorted[i]);
    for (prof_buf *b = bufs; b; b = b->next) {
        if (b->session != session) continue;
        for (size_t i = 0; i < b->nf; i++)
            flow_event(f, &first, t0, &id, find_rec(sorted, n, b->flows[i].from), find_rec(sorted, n, b->flows[i].to));
    }
#undef SEP
    fputs("\n]}\n", f);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        remove(tmp);
        return td__fail(TD_EIO, "td_profiler_stop: error writing the trace to '%s'", tmp);
    }
    if (rename(tmp, path) != 0) {
        remove(tmp);
        return td__fail(TD_EIO, "td_profiler_stop: cannot move the trace to '%s'", path);
    }
    return TD_OK;
}

static int agg_cmp(const void *a, const void *b) {
    const agg_row *x = a, *y = b;
    return x->total < y->total ? 1 : x->total > y->total ? -1 : strcmp(x->name, y->name);
}

static int push_by_seq(const void *a, const void *b) {
    uint64_t x = ((const push_rec *)a)->seq, y = ((const push_rec *)b)->seq;
    return x < y ? -1 : x > y;
}
static int end_by_seq(const void *a, const void *b) {
    uint64_t x = ((const end_rec *)a)->seq, y = ((const end_rec *)b)->seq;
    return x < y ? -1 : x > y;
}

/* The merged records of the last collection (freed by the next). */
static prof_rec *merged;

/* Collects the session's records: each op's push and end records, joined
 * by push number, sorted by it.  Ops with only one of the two (a push
 * undone, an op that has not ended) are left out.  prof_mu held. */
static prof_rec **collect(unsigned session, size_t *n_out) {
    calibrate();
    size_t np = 0, ne = 0;
    for (prof_buf *b = bufs; b; b = b->next)
        if (b->session == session) {
            np += b->npush;
            ne += b->ne;
        }
    push_rec *P = malloc((np ? np : 1) * sizeof *P);
    end_rec *E = malloc((ne ? ne : 1) * sizeof *E);
    free(merged);
    merged = malloc((ne ? ne : 1) * sizeof *merged);
    prof_rec **sorted = malloc((ne ? ne : 1) * sizeof *sorted);
    if (!P || !E || !merged || !sorted) {
        free(P);
        free(E);
        free(sorted);
        free(merged);
        merged = NULL;
        return NULL;
    }
    size_t kp = 0, ke = 0;
    for (prof_buf *b = bufs; b; b = b->next)
        if (b->session == session) {
            for (size_t w = 0, i = 0; i < b->npush; i++) w += push_unpack(b->pushes + w, &P[kp++]);
            if (b->ne) memcpy(E + ke, b->ends, b->ne * sizeof *E);
            ke += b->ne;
        }
    qsort(P, np, sizeof *P, push_by_seq);
    qsort(E, ne, sizeof *E, end_by_seq);
    size_t n = 0;
    for (size_t i = 0, j = 0; i < ne && j < np;) {
        if (E[i].seq < P[j].seq) i++;
        else if (P[j].seq < E[i].seq) j++;
        else {
            const push_rec *p = &P[j++];
            const end_rec *e = &E[i++];
            prof_rec *r = &merged[n];
            r->seq = p->seq;
            r->t_push = p->t_push;
            /* Made ready by another op's end: that end may have been read
             * just before this op's push time (the push read its clock, then
             * queued on the var; the ending op read its clock, then released
             * the var), and an op is never ready before its push. */
            r->t_ready = e->t_ready && e->t_ready > p->t_push ? e->t_ready : p->t_push;
            r->t_start = e->t_start;
            r->t_end = e->t_end;
            r->inflight = e->inflight;
            r->by = e->by;
            r->dev_kind = p->dev_kind;
            r->dev_id = p->dev_id;
            r->worker = e->worker;
            r->status = e->status;
            r->depth = e->depth;
            r->n_reads = p->n_reads;
            r->n_writes = p->n_writes;
            memcpy(r->vars, p->vars, sizeof r->vars);
            r->name_ptr = p->name_ptr;
            if (!p->name_ptr) memcpy(r->name, p->name, sizeof r->name);
            sorted[n] = r;
            n++;
        }
    }
    free(P);
    free(E);
    *n_out = n;
    return sorted;
}

static void aggregate(prof_rec **sorted, size_t n) {
    free(agg);
    agg = NULL;
    agg_n = 0;
    if (!n) return;
    agg = calloc(n, sizeof *agg);
    if (!agg) return;
    for (size_t i = 0; i < n; i++) {
        prof_rec *r = sorted[i];
        double d = us(r->t_end, r->t_start);
        size_t j;
        for (j = 0; j < agg_n; j++)
            if (strncmp(agg[j].name, rec_name(r), sizeof agg[j].name - 1) == 0) break;
        if (j == agg_n) {
            td__strlcpy(agg[j].name, rec_name(r), sizeof agg[j].name);
            agg[j].min = d;
            agg_n++;
        }
        agg[j].count++;
        agg[j].total += d;
        if (d < agg[j].min) agg[j].min = d;
        if (d > agg[j].max) agg[j].max = d;
    }
    qsort(agg, agg_n, sizeof *agg, agg_cmp);
}

td_status td_profiler_start(const char *trace_path) {
    td_status st;
    if ((st = td__busy_check("td_profiler_start")) != TD_OK) return st;
    if ((st = td__ensure()) != TD_OK) return st;
    uv_once(&prof_once, prof_init);
    uv_mutex_lock(&prof_mu);
    if (atomic_load(&td__prof_on)) {
        uv_mutex_unlock(&prof_mu);
        return td__fail(TD_EINVAL, "td_profiler_start: the profiler is already recording (call td_profiler_stop)");
    }
    static int calibrated;
    if (!calibrated) {
        calibrate_start();
        calibrated = 1;
    }
    prof_has_path = trace_path != NULL;
    if (trace_path) td__strlcpy(prof_path, trace_path, sizeof prof_path);
    atomic_fetch_add(&prof_session, 1);
    atomic_store(&td__prof_on, 1);
    uv_mutex_unlock(&prof_mu);
    return TD_OK;
}

td_status td__profiler_stop_internal(int drain) {
    uv_once(&prof_once, prof_init);
    if (drain) td__drain();
    uv_mutex_lock(&prof_mu);
    if (!atomic_load(&td__prof_on)) {
        uv_mutex_unlock(&prof_mu);
        return td__fail(TD_EINVAL, "td_profiler_stop: the profiler is not recording");
    }
    atomic_store(&td__prof_on, 0);
    unsigned session = atomic_load(&prof_session);
    size_t n = 0;
    prof_rec **sorted = collect(session, &n);
    td_status st = TD_OK;
    if (!sorted) st = td__fail(TD_ENOMEM, "td_profiler_stop: out of memory while writing the trace");
    else {
        aggregate(sorted, n);
        if (prof_has_path) st = write_trace(prof_path, sorted, n, session);
    }
    free(sorted);
    uv_mutex_unlock(&prof_mu);
    return st;
}

td_status td_profiler_stop(void) {
    td_status st;
    if ((st = td__busy_check("td_profiler_stop")) != TD_OK) return st;
    return td__profiler_stop_internal(td_is_running());
}

int td_profiler_is_on(void) { return atomic_load(&td__prof_on); }

td_status td_profiler_summary(FILE *out) {
    if (!out) return td__fail(TD_EINVAL, "td_profiler_summary: out is NULL");
    uv_once(&prof_once, prof_init);
    uv_mutex_lock(&prof_mu);
    if (atomic_load(&td__prof_on)) {
        /* While recording: a summary of what is recorded so far. */
        size_t n = 0;
        prof_rec **sorted = NULL;
        uv_mutex_unlock(&prof_mu);
        if (td__busy_check("td_profiler_summary") == TD_OK && td_is_running()) td__drain();
        uv_mutex_lock(&prof_mu);
        sorted = collect(atomic_load(&prof_session), &n);
        if (sorted) aggregate(sorted, n);
        free(sorted);
    }
    if (!agg_n) {
        uv_mutex_unlock(&prof_mu);
        return td__fail(TD_EINVAL, "td_profiler_summary: nothing recorded (call td_profiler_start first)");
    }
    fprintf(out, "%-32s %10s %12s %10s %10s %10s\n", "op", "count", "total_us", "min_us", "max_us", "mean_us");
    for (size_t i = 0; i < agg_n; i++)
        fprintf(out, "%-32s %10llu %12.1f %10.2f %10.2f %10.2f\n", agg[i].name, (unsigned long long)agg[i].count,
                agg[i].total, agg[i].min, agg[i].max, agg[i].total / (double)agg[i].count);
    uv_mutex_unlock(&prof_mu);
    return TD_OK;
}
