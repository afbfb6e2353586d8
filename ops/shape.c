/* Shape ops: concat, stack, split, tile, flip, pad.
 *
 * td_split and td_flip are views: new handles on the input's storage, so
 * they share its var and every access through them is ordered with every
 * other access to the buffer.
 *
 * td_concat, td_stack, td_tile and td_pad make a new array with one op that
 * reads every input and writes the whole output.  The op is a list of
 * pieces: each piece copies a strided box of an input (or the pad value,
 * with stride 0) into a box of the output, and the pieces together cover the
 * output exactly once.  Within a piece, dimensions that are contiguous for
 * both sides are merged, so most pieces are a few long rows (memcpy when both
 * sides are dense and of one dtype); a piece whose source runs down its
 * columns (a transposed input) is copied in tiles, so that each source line
 * is read once rather than once per element.
 *
 * The op's flat index space is split by td_parallel_for by its size only, so
 * the result never depends on the worker count, and a hundred small inputs
 * are spread over the workers as well as one big input is.  For tile and pad
 * it is the pieces' elements one after the other.  For concat and stack it is
 * the output in C order: the output is (rows, row) with each input owning one
 * run of every row, so a chunk writes one region of the output with every
 * input's part of it while that region is in cache (stacking along the last
 * axis interleaves the inputs element by element).
 *
 * Why not td__invoke: these ops take any number of inputs (td__call holds
 * TD__MAX_IN) and more attributes than td__call has room for (pad's widths,
 * tile's repeats), so they push their own call (job_push) by the rules of
 * td__invoke: every input read, the new output written whole
 * (TD_OP_OVERWRITE) and its bytes declared for back-pressure.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ops/internal.h"

enum {
    MAXD = 2 * TD_MAX_DIMS, /* tile views each axis as (repeat, element) */
    GRAIN = 32768,          /* elements per td_parallel_for chunk, at least */
    BLOCK = 256,            /* elements converted at a time */
    TILE_R = 64,            /* rows of a tile (along which the source is contiguous) */
    TILE_C = 32             /* columns of a tile */
};

/* ---- pieces and jobs ---- */

typedef struct {
    int src;                        /* input index, or -1: the job's fill value */
    int nd;                         /* merged dims, at least 1 */
    int64_t shape[MAXD];
    int64_t sstr[MAXD], dstr[MAXD]; /* byte strides (0 along a fill or a repeat) */
    int64_t soff, doff;             /* byte offsets from the input's first element and the output's */
    int64_t start, n;               /* the piece's elements in the job's flat index space */
    int64_t run_start, run_len;     /* concat/stack: the run of each out row it fills */
    int tiled;                      /* copy rows in tiles (the source runs down the columns) */
} piece;

typedef struct {
    const char *name; /* in traces */
    int n_in;
    td_array **in;    /* held */
    td_array *out;    /* held; new and C-contiguous */
    int np, cap;
    piece *p;
    int64_t total;    /* elements of all pieces: out's size */
    int64_t rowlen;   /* concat/stack: elements of an out row (0: walk the pieces in turn) */
    int64_t grain;    /* td_parallel_for's grain */
    _Alignas(8) unsigned char value[8]; /* pad's value in out's dtype */
} job;

/* The job's references to its arrays are a pending op's (td__array_hold),
 * so back-pressure counts a storage only the op still keeps as in flight. */
static void job_free(void *arg) {
    job *j = arg;
    if (!j) return;
    for (int i = 0; i < j->n_in; i++) td__array_drop(j->in[i]);
    free(j->in);
    if (j->out) td__array_drop(j->out);
    free(j->p);
    free(j);
}

/* A job reading in[0..n_in) (retained here); NULL with TD_ENOMEM. */
static job *job_new(const char *name, const char *api, td_array *const *in, int n_in) {
    job *j = calloc(1, sizeof *j);
    if (j) j->in = calloc((size_t)(n_in > 0 ? n_in : 1), sizeof *j->in);
    if (!j || !j->in) {
        free(j);
        td__fail(TD_ENOMEM, "%s: out of memory", api);
        return NULL;
    }
    j->name = name;
    j->n_in = n_in;
    for (int i = 0; i < n_in; i++) j->in[i] = td__array_hold(in[i]);
    return j;
}

/* Gives the job the new output's only reference (from td__array_new). */
static void job_set_out(job *j, td_array *out) {
    td__array_give_to_op(out);
    j->out = out;
}

/* Adds a piece copying a box of shape (nd dims) from input src (or the fill
 * value, src -1) to out.  Size-1 dims are dropped and dims contiguous for
 * both sides merged; empty boxes add nothing. */
static td_status job_add(job *j, const char *api, int src, int nd, const int64_t *shape, const int64_t *sstr,
                         const int64_t *dstr, int64_t soff, int64_t doff) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    if (n == 0) return TD_OK;
    if (j->np == j->cap) {
        int nc = j->cap ? 2 * j->cap : 4;
        piece *np = realloc(j->p, (size_t)nc * sizeof *np);
        if (!np) return td__fail(TD_ENOMEM, "%s: out of memory", api);
        j->p = np;
        j->cap = nc;
    }
    piece *p = &j->p[j->np++];
    int m = 0;
    for (int i = 0; i < nd; i++) {
        if (shape[i] == 1) continue;
        if (m > 0 && p->sstr[m - 1] == sstr[i] * shape[i] && p->dstr[m - 1] == dstr[i] * shape[i]) {
            p->shape[m - 1] *= shape[i];
            p->sstr[m - 1] = sstr[i];
            p->dstr[m - 1] = dstr[i];
        } else {
            p->shape[m] = shape[i];
            p->sstr[m] = sstr[i];
            p->dstr[m] = dstr[i];
            m++;
        }
    }
    if (m == 0) {
        p->shape[0] = 1;
        p->sstr[0] = p->dstr[0] = 0;
        m = 1;
    }
    p->nd = m;
    /* Tiled: the source is contiguous down the columns and far apart along
     * the rows, and there are enough of both for tiles to pay. */
    int64_t ses = src >= 0 ? (int64_t)td_dtype_size(j->in[src]->dtype) : 0;
    p->tiled = src >= 0 && m >= 2 && j->in[src]->dtype == j->out->dtype &&
               (p->sstr[m - 2] == ses || p->sstr[m - 2] == -ses) && (p->sstr[m - 1] > 64 || p->sstr[m - 1] < -64) &&
               p->shape[m - 1] >= 8 && p->shape[m - 2] >= 8;
    p->run_start = p->run_len = 0;
    p->src = src;
    p->soff = soff;
    p->doff = doff;
    p->start = j->total;
    p->n = n;
    j->total += n;
    return TD_OK;
}

/* n elements from s (dtype sd, byte stride ss; 0 repeats one value) to d
 * (dtype dd, byte stride ds). */
static void seg_copy(int sd, const char *s, int64_t ss, int dd, char *d, int64_t ds, int64_t n) {
    int64_t es = (int64_t)td_dtype_size(dd);
    if (sd == dd) {
        if (ss == es && ds == es) {
            memcpy(d, s, (size_t)(n * es));
            return;
        }
#define SEG(ES)                                                                                               \
    if (ss == 0) {                                                                                            \
        for (int64_t i = 0; i < n; i++) memcpy(d + i * ds, s, ES);                                            \
    } else {                                                                                                  \
        for (int64_t i = 0; i < n; i++) memcpy(d + i * ds, s + i * ss, ES);                                   \
    }                                                                                                         \
    return;
        switch (es) {
        case 1: SEG(1)
        case 4: SEG(4)
        default: SEG(8)
        }
#undef SEG
    }
    if (ds == es && ss != 0) {
        td__convert(sd, s, ss, dd, d, n);
        return;
    }
    /* A strided destination (or a repeated source): convert a block, then
     * scatter it. */
    _Alignas(8) char buf[BLOCK * 8];
    for (int64_t done = 0; done < n;) {
        int64_t m = n - done < BLOCK ? n - done : BLOCK;
        td__convert(sd, s + done * ss, ss, dd, buf, ss ? m : 1);
        seg_copy(dd, buf, ss ? es : 0, dd, d + done * ds, ds, m);
        done += m;
    }
}

/* R rows of W elements of es bytes, row r column c at s + r*sr + c*sc, to
 * d + r*dr + c*dc, tile by tile: the source is contiguous down a column
 * (|sr| == es), so a tile reads TILE_C short runs of R elements, each source
 * line once, while its destination rows stay in cache.  Writing along the
 * rows (the inner loop) measured twice as fast as reading down the columns. */
static void tile_copy(size_t es, const char *s, int64_t sr, int64_t sc, char *d, int64_t dr, int64_t dc, int64_t R,
                      int64_t W) {
#define TILE(ES)                                                                                              \
    for (int64_t c0 = 0; c0 < W; c0 += TILE_C) {                                                              \
        int64_t c1 = c0 + TILE_C < W ? c0 + TILE_C : W;                                                       \
        for (int64_t r = 0; r < R; r++)                                                                       \
            for (int64_t c = c0; c < c1; c++) memcpy(d + r * dr + c * dc, s + r * sr + c * sc, ES);          \
    }                                                                                                         \
    return;
    switch (es) {
    case 1: TILE(1)
    case 4: TILE(4)
    default: TILE(8)
    }
#undef TILE
}

/* Elements [b, e) of piece p (C order over its shape). */
static void piece_range(const job *j, const piece *p, int64_t b, int64_t e) {
    const char *sbase;
    int sd, dd = j->out->dtype;
    if (p->src >= 0) {
        sbase = td__array_ptr(j->in[p->src]) + p->soff;
        sd = j->in[p->src]->dtype;
    } else {
        sbase = (const char *)j->value;
        sd = dd;
    }
    char *dbase = td__array_ptr(j->out) + p->doff;
    int nd = p->nd;
    int64_t idx[MAXD], rem = b;
    for (int d = nd - 1; d >= 0; d--) {
        idx[d] = rem % p->shape[d];
        rem /= p->shape[d];
    }
    int64_t W = p->shape[nd - 1];
    while (b < e) {
        int64_t so = 0, dof = 0;
        for (int d = 0; d < nd; d++) {
            so += idx[d] * p->sstr[d];
            dof += idx[d] * p->dstr[d];
        }
        int64_t take = W - idx[nd - 1];
        if (take > e - b) take = e - b;
        int64_t R = 0;
        if (p->tiled && idx[nd - 1] == 0) { /* whole rows from here: as many as a tile takes */
            R = (e - b) / W;
            if (R > p->shape[nd - 2] - idx[nd - 2]) R = p->shape[nd - 2] - idx[nd - 2];
            if (R > TILE_R) R = TILE_R;
        }
        if (R >= 2) {
            tile_copy(td_dtype_size(dd), sbase + so, p->sstr[nd - 2], p->sstr[nd - 1], dbase + dof, p->dstr[nd - 2],
                      p->dstr[nd - 1], R, W);
            take = R * W;
            idx[nd - 2] += R;
        } else {
            seg_copy(sd, sbase + so, p->sstr[nd - 1], dd, dbase + dof, p->dstr[nd - 1], take);
            idx[nd - 1] += take;
        }
        b += take;
        for (int d = nd - 1; d > 0; d--) /* a tile ends with idx[nd - 2] overflowing, a row with idx[nd - 1] */
            if (idx[d] >= p->shape[d]) {
                idx[d] = 0;
                idx[d - 1]++;
            }
    }
}

/* tile and pad: elements [b, e) of the pieces one after the other. */
static void job_chunk(void *arg, int64_t b, int64_t e) {
    const job *j = arg;
    int lo = 0, hi = j->np - 1;
    while (lo < hi) { /* the first piece that ends after b */
        int mid = lo + (hi - lo) / 2;
        if (j->p[mid].start + j->p[mid].n <= b) lo = mid + 1;
        else hi = mid;
    }
    for (int k = lo; k < j->np && j->p[k].start < e; k++) {
        const piece *p = &j->p[k];
        int64_t pb = b > p->start ? b - p->start : 0;
        int64_t pe = e < p->start + p->n ? e - p->start : p->n;
        piece_range(j, p, pb, pe);
    }
}

/* concat and stack: elements [x, y) of out row o, from the inputs whose runs
 * they cross (piece k's element (o, c) is its flat element o * run_len + c). */
static void concat_row_part(const job *j, int64_t o, int64_t x, int64_t y) {
    for (int k = 0; k < j->np; k++) {
        const piece *p = &j->p[k];
        int64_t lo = x > p->run_start ? x : p->run_start;
        int64_t hi = y < p->run_start + p->run_len ? y : p->run_start + p->run_len;
        if (lo < hi) piece_range(j, p, o * p->run_len + lo - p->run_start, o * p->run_len + hi - p->run_start);
    }
}

/* concat and stack: elements [b, e) of out in C order: the part of a row it
 * starts in, its whole rows (input by input), the part of a row it ends in. */
static void concat_chunk(void *arg, int64_t b, int64_t e) {
    const job *j = arg;
    int64_t L = j->rowlen, o = b / L, x = b % L;
    if (x) {
        int64_t y = e - b < L - x ? x + (e - b) : L;
        concat_row_part(j, o, x, y);
        b += y - x;
        o++;
    }
    int64_t rows = (e - b) / L;
    if (rows > 0) {
        for (int k = 0; k < j->np; k++)
            piece_range(j, &j->p[k], o * j->p[k].run_len, (o + rows) * j->p[k].run_len);
        b += rows * L;
        o += rows;
    }
    if (b < e) concat_row_part(j, o, 0, e - b);
}

static td_status job_run(void *arg, const td_exec *ex) {
    job *j = arg;
    return td_parallel_for(ex, j->total, j->grain, j->rowlen ? concat_chunk : job_chunk, j);
}

/* The grain: GRAIN elements, or enough for the chunks of a tiled piece to
 * hold whole tiles (a piece gets run_len / rowlen of a concat chunk). */
static void job_set_grain(job *j) {
    j->grain = GRAIN;
    for (int k = 0; k < j->np; k++) {
        const piece *p = &j->p[k];
        if (!p->tiled) continue;
        int64_t g = TILE_R * p->shape[p->nd - 1];
        if (j->rowlen) g = g / p->run_len * j->rowlen + j->rowlen; /* ~ g * rowlen / run_len, rounded up */
        if (g > (int64_t)1 << 20) g = (int64_t)1 << 20;
        if (g > j->grain) j->grain = g;
    }
}

/* Pushes j, which writes the new j->out (taken over) and owns its
 * references; gives the output to the caller (or scope), or NULL. */
static td_array *job_push(job *j, const char *api) {
    if (j->out->dev.kind != TD_CPU) {
        td__fail(TD_EDEVICE, "%s has no kernel for this device", api);
        job_free(j);
        return NULL;
    }
    td_var **reads = malloc((size_t)(j->n_in > 0 ? j->n_in : 1) * sizeof *reads);
    if (!reads) {
        td__fail(TD_ENOMEM, "%s: out of memory", api);
        job_free(j);
        return NULL;
    }
    for (int i = 0; i < j->n_in; i++) reads[i] = j->in[i]->st->var;
    job_set_grain(j);
    td_var *writes[1] = {j->out->st->var};
    td_op op = {.name = j->name, .device = j->out->dev, .fn = job_run, .arg = j, .arg_free = job_free,
                .reads = reads, .n_reads = (size_t)j->n_in, .writes = writes, .n_writes = 1,
                .out_bytes = j->out->st->bytes, .flags = TD_OP_OVERWRITE};
    td_array *result = td_retain(j->out);
    td_status st = td_push(&op);
    free(reads);
    if (st != TD_OK) {
        job_free(j);
        td__array_unref(result);
        return NULL;
    }
    return td__array_give(result);
}

/* ---- gradients (autograd) ----
 * Views: a slice's gradient is zeros with the output gradient assigned into
 * the same slice; transpose's is the inverse transpose; reshape-like views
 * (td_reshape, td_expand_dims, td_squeeze) reshape back; broadcast_to's is
 * summed back by backward itself; flip's is the same flip.  concat, stack
 * and split are slices; pad's is the interior slice; tile's sums the
 * repeats. */
static td_status sgrad(td__gctx *g, int i, td_array *r) {
    g->gin[i] = r;
    return r ? TD_OK : td_last_status();
}

static td_status grad_view_slice(td__gctx *g) {
    const td__view_attrs *at = (const td__view_attrs *)g->attrs;
    const td__meta *m = &g->in_meta[0];
    td_array *go = g->gout[0], *z = td_zeros(go->dtype, m->ndim, m->shape, go->dev);
    td_array *zv = td_slice(z, (int)at->s[0], at->s[1], at->s[2], at->s[3]);
    if (!zv) return td_last_status();
    td_status st = td_assign(zv, go);
    return st != TD_OK ? st : sgrad(g, 0, z);
}

static td_status grad_view_transpose(td__gctx *g) {
    const td__view_attrs *at = (const td__view_attrs *)g->attrs;
    int inv[TD_MAX_DIMS];
    for (int i = 0; i < at->n; i++) inv[at->perm[i]] = i;
    return sgrad(g, 0, td_transpose(g->gout[0], inv));
}

static td_status grad_reshape(td__gctx *g) {
    const td__meta *m = &g->in_meta[0];
    return sgrad(g, 0, td_reshape(g->gout[0], m->ndim, m->shape));
}

static td_status grad_view_broadcast(td__gctx *g) { return sgrad(g, 0, g->gout[0]); }

static td_status grad_view_flip(td__gctx *g) {
    const td__view_attrs *at = (const td__view_attrs *)g->attrs;
    return sgrad(g, 0, td_flip(g->gout[0], (int)at->s[0]));
}

static const td__opdesc view_descs[] = {
    [TD__VIEW_SLICE] = {.name = "slice", .api = "td_slice", .n_in = 1, .grad = grad_view_slice},
    [TD__VIEW_TRANSPOSE] = {.name = "transpose", .api = "td_transpose", .n_in = 1, .grad = grad_view_transpose},
    [TD__VIEW_RESHAPE] = {.name = "reshape", .api = "td_reshape", .n_in = 1, .grad = grad_reshape},
    [TD__VIEW_BROADCAST] = {.name = "broadcast_to", .api = "td_broadcast_to", .n_in = 1,
                            .grad = grad_view_broadcast},
    [TD__VIEW_FLIP] = {.name = "flip", .api = "td_flip", .n_in = 1, .grad = grad_view_flip},
};

const td__opdesc *td__view_desc(int kind) { return &view_descs[kind]; }

const td__opdesc td__rec_reshape = {.name = "reshape", .api = "td_reshape", .n_in = 1, .grad = grad_reshape};

/* The attributes concat, stack, tile and pad record. */
typedef struct {
    int64_t v[TD_MAX_DIMS]; /* concat/stack: v[0] the axis (normalised); tile: repeats; pad: before */
} shape_attrs;

static td_status grad_concat(td__gctx *g) {
    int ax = (int)((const shape_attrs *)g->attrs)->v[0];
    int64_t off = 0;
    for (int i = 0; i < g->n_in; i++) {
        int64_t len = g->in_meta[i].shape[ax];
        if (g->need[i] && sgrad(g, i, td_slice(g->gout[0], ax, off, off + len, 1)) != TD_OK) return td_last_status();
        off += len;
    }
    return TD_OK;
}

static td_status grad_stack(td__gctx *g) {
    int ax = (int)((const shape_attrs *)g->attrs)->v[0];
    for (int i = 0; i < g->n_in; i++) {
        const td__meta *m = &g->in_meta[i];
        if (g->need[i] && sgrad(g, i, td_reshape(td_slice(g->gout[0], ax, i, i + 1, 1), m->ndim, m->shape)) != TD_OK)
            return td_last_status();
    }
    return TD_OK;
}

/* out axis d is (r[d] repeats) x (s[d] elements): viewed as (P, r, s, Q),
 * the repeats are summed, one axis at a time (4 dimensions whatever ndim). */
static td_status grad_tile(td__gctx *g) {
    const int64_t *r = ((const shape_attrs *)g->attrs)->v;
    const td__meta *mo = &g->out_meta[0], *mi = &g->in_meta[0];
    int nd = mo->ndim;
    int64_t cur[TD_MAX_DIMS];
    memcpy(cur, mo->shape, sizeof cur);
    td_array *x = g->gout[0];
    for (int d = 0; d < nd && x; d++) {
        if (r[d] == 1) continue;
        int64_t P = 1, Q = 1, sd = r[d] ? cur[d] / r[d] : 0;
        for (int k = 0; k < d; k++) P *= cur[k];
        for (int k = d + 1; k < nd; k++) Q *= cur[k];
        x = td_sum(td_reshape(x, 4, (int64_t[]){P, r[d], sd, Q}), 1, TD_DROPDIMS);
        cur[d] = sd;
        if (x) x = td_reshape(x, nd, cur);
    }
    return sgrad(g, 0, x ? td_reshape(x, mi->ndim, mi->shape) : NULL);
}

static td_status grad_pad(td__gctx *g) {
    const int64_t *before = ((const shape_attrs *)g->attrs)->v;
    const td__meta *m = &g->in_meta[0];
    td_array *x = g->gout[0];
    for (int d = 0; d < m->ndim && x; d++) x = td_slice(x, d, before[d], before[d] + m->shape[d], 1);
    return sgrad(g, 0, x);
}

static const td__opdesc rec_concat = {.name = "concat", .api = "td_concat", .grad = grad_concat};
static const td__opdesc rec_stack = {.name = "stack", .api = "td_stack", .grad = grad_stack};
static const td__opdesc rec_tile = {.name = "tile", .api = "td_tile", .grad = grad_tile};
static const td__opdesc rec_pad = {.name = "pad", .api = "td_pad", .grad = grad_pad};

/* ---- checks shared by the ops ---- */

static int norm_axis(const char *api, int axis, int ndim) {
    if (axis < -ndim || axis >= ndim) {
        td__fail(TD_EINVAL, "%s: axis %d is out of range for %d dimension(s)", api, axis, ndim);
        return -1;
    }
    return axis < 0 ? axis + ndim : axis;
}

static int same_device(td_device x, td_device y) { return x.kind == y.kind && x.id == y.id; }

static const char *dev_kind(td_device d) { return d.kind == TD_GPU ? "gpu" : "cpu"; }

/* These ops have a CPU kernel only. */
static td_status cpu_only(const char *api, td_device dev) {
    if (dev.kind != TD_CPU) return td__fail(TD_EDEVICE, "%s has no kernel for this device", api);
    return TD_OK;
}

/* The list of a concat or stack: not NULL, at least one array, one device;
 * *dtype gets the dtype numpy's promotion gives for all of them.  A NULL
 * array fails without touching the thread's error (NULL propagation). */
static td_status check_list(const char *api, td_array *const *arrays, int n, int *dtype) {
    if (!arrays) return td__fail(TD_EINVAL, "%s: arrays is NULL", api);
    if (n < 1) return td__fail(TD_EINVAL, "%s: needs at least one array, not %d", api, n);
    for (int i = 0; i < n; i++)
        if (!arrays[i]) return TD_EINVAL;
    int dt = arrays[0]->dtype;
    for (int i = 1; i < n; i++) {
        if (!same_device(arrays[i]->dev, arrays[0]->dev))
            return td__fail(TD_EDEVICE, "%s: array %d is on %s:%d but array 0 is on %s:%d; copy it first", api, i,
                            dev_kind(arrays[i]->dev), arrays[i]->dev.id, dev_kind(arrays[0]->dev),
                            arrays[0]->dev.id);
        dt = td_promote_types(dt, arrays[i]->dtype);
    }
    *dtype = dt;
    return cpu_only(api, arrays[0]->dev);
}

/* *out = a * b, unless that overflows int64 (0). */
static int mul_ok(int64_t a, int64_t b, int64_t *out) { return !__builtin_mul_overflow(a, b, out); }

/* ---- concat and stack ---- */

static td_array *concat_impl(const char *api, const char *name, td_array *const *arrays, int n, int axis,
                             int stack) {
    int dtype = 0;
    if (check_list(api, arrays, n, &dtype) != TD_OK) return NULL;
    const td_array *a0 = arrays[0];
    char s1[128], s2[128];
    int ndim = a0->ndim + (stack ? 1 : 0);
    if (!stack && a0->ndim == 0) {
        td__fail(TD_ESHAPE, "%s: 0-d arrays cannot be concatenated (use td_stack)", api);
        return NULL;
    }
    if (ndim > TD_MAX_DIMS) {
        td__fail(TD_ESHAPE, "%s: stacking arrays of shape %s would give more than %d dimensions", api,
                 td__shape_str(a0->ndim, a0->shape, s1, sizeof s1), TD_MAX_DIMS);
        return NULL;
    }
    int ax = norm_axis(api, axis, ndim);
    if (ax < 0) return NULL;
    int64_t shape[TD_MAX_DIMS];
    int64_t along = 0;
    for (int i = 0; i < n; i++) {
        const td_array *a = arrays[i];
        int fits = a->ndim == a0->ndim;
        for (int d = 0; fits && d < a->ndim; d++) fits = a->shape[d] == a0->shape[d] || (!stack && d == ax);
        if (!fits) {
            if (stack)
                td__fail(TD_ESHAPE, "%s: arrays must have one shape; array 0 has shape %s but array %d has %s", api,
                         td__shape_str(a0->ndim, a0->shape, s1, sizeof s1), i,
                         td__shape_str(a->ndim, a->shape, s2, sizeof s2));
            else
                td__fail(TD_ESHAPE,
                         "%s: arrays must have equal shapes except along axis %d; array 0 has shape %s but array %d "
                         "has %s",
                         api, axis, td__shape_str(a0->ndim, a0->shape, s1, sizeof s1), i,
                         td__shape_str(a->ndim, a->shape, s2, sizeof s2));
            return NULL;
        }
        if (!stack && __builtin_add_overflow(along, a->shape[ax], &along)) {
            td__fail(TD_EINVAL, "%s: the result is too large to address", api);
            return NULL;
        }
    }
    if (stack) {
        for (int d = 0, k = 0; d < ndim; d++) shape[d] = d == ax ? n : a0->shape[k++];
    } else {
        memcpy(shape, a0->shape, sizeof(int64_t) * (size_t)ndim);
        shape[ax] = along;
    }
    td_array *out = td__array_new(dtype, ndim, shape, a0->dev, api);
    if (!out) return NULL;
    job *j = job_new(name, api, arrays, n);
    if (!j) {
        td__array_unref(out);
        return NULL;
    }
    job_set_out(j, out);
    int64_t oes = (int64_t)td_dtype_size(dtype), dstr[TD_MAX_DIMS];
    for (int d = 0; d < ndim; d++) dstr[d] = out->strides[d] * oes;
    /* out as (rows, row): the axes before ax, then the rest; input i fills
     * a run of each row, off * inner long. */
    int64_t inner = 1, off = 0;
    for (int d = ax + 1; d < ndim; d++) inner *= shape[d];
    j->rowlen = shape[ax] * inner;
    for (int i = 0; i < n; i++) {
        const td_array *a = arrays[i];
        int64_t es = (int64_t)td_dtype_size(a->dtype), sstr[TD_MAX_DIMS], pd[TD_MAX_DIMS];
        int np = j->np, len = stack ? 1 : a->shape[ax];
        for (int d = 0; d < a->ndim; d++) sstr[d] = a->strides[d] * es;
        td_status st;
        if (stack) {
            /* input i is out[..., i, ...]: out's strides without axis ax */
            for (int d = 0, k = 0; d < ndim; d++)
                if (d != ax) pd[k++] = dstr[d];
            st = job_add(j, api, i, a->ndim, a->shape, sstr, pd, 0, (int64_t)i * dstr[ax]);
        } else {
            st = job_add(j, api, i, a->ndim, a->shape, sstr, dstr, 0, off * dstr[ax]);
        }
        if (st != TD_OK) {
            job_free(j);
            return NULL;
        }
        if (j->np > np) {
            j->p[np].run_start = (stack ? i : off) * inner;
            j->p[np].run_len = len * inner;
        }
        off += len;
    }
    return job_push(j, api);
}

/* concat and stack record with the axis normalised (their job pushes
 * itself, so recording happens here rather than in td__invoke). */
static td_array *concat_rec(td_array *const *arrays, int n, int axis, int stack) {
    td_array *r = concat_impl(stack ? "td_stack" : "td_concat", stack ? "stack" : "concat", arrays, n, axis, stack);
    if (!r || !td__tape.active || !td__any_requires_grad(arrays, n)) return r;
    shape_attrs at = {{axis < 0 ? axis + r->ndim : axis}};
    if (td__record(stack ? &rec_stack : &rec_concat, arrays, n, &at, sizeof at, r) != TD_OK) {
        td_release(r);
        return NULL;
    }
    return r;
}

td_array *td_concat(td_array *const *arrays, int n, int axis) { return concat_rec(arrays, n, axis, 0); }

td_array *td_stack(td_array *const *arrays, int n, int axis) { return concat_rec(arrays, n, axis, 1); }

/* ---- split and flip (views) ---- */

td_status td_split(td_array *a, int sections, int axis, td_array **out) {
    if (out && sections > 0)
        for (int i = 0; i < sections; i++) out[i] = NULL;
    if (!a) return td__fail(TD_EINVAL, "td_split: a is NULL");
    if (!out) return td__fail(TD_EINVAL, "td_split: out is NULL");
    if (sections < 1) return td__fail(TD_EINVAL, "td_split: sections must be at least 1, not %d", sections);
    int ax = norm_axis("td_split", axis, a->ndim);
    if (ax < 0) return TD_EINVAL;
    char s1[128];
    if (a->shape[ax] % sections != 0)
        return td__fail(TD_ESHAPE,
                        "td_split: axis %d of shape %s has size %" PRId64 ", which %d sections do not divide", axis,
                        td__shape_str(a->ndim, a->shape, s1, sizeof s1), a->shape[ax], sections);
    int64_t len = a->shape[ax] / sections;
    int64_t shape[TD_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[ax] = len;
    for (int i = 0; i < sections; i++) {
        int64_t offset = a->offset + (len > 0 ? (int64_t)i * len * a->strides[ax] : 0);
        td_array *v = td__array_wrap(a->st, a->dtype, a->ndim, shape, a->strides, offset);
        if (v && td__array_in_graph(a)) {
            const int64_t args[4] = {ax, (int64_t)i * len, (int64_t)(i + 1) * len, 1};
            v = td__array_view_hook(a, v, TD__VIEW_SLICE, args, 4);
        }
        out[i] = td__array_give(v);
        if (!out[i]) {
            td_status st = td_last_status();
            for (int k = 0; k < i; k++) {
                td_release(out[k]);
                out[k] = NULL;
            }
            return st;
        }
    }
    return TD_OK;
}

td_array *td_flip(td_array *a, int axis) {
    if (!a) return NULL;
    int ax = -1;
    if (axis != TD_ALL_AXES) {
        ax = norm_axis("td_flip", axis, a->ndim);
        if (ax < 0) return NULL;
    }
    int64_t strides[TD_MAX_DIMS], offset = a->offset;
    for (int d = 0; d < a->ndim; d++) {
        strides[d] = a->strides[d];
        if (ax >= 0 && d != ax) continue;
        if (a->shape[d] > 0) offset += (a->shape[d] - 1) * a->strides[d];
        strides[d] = -a->strides[d];
    }
    td_array *v = td__array_wrap(a->st, a->dtype, a->ndim, a->shape, strides, offset);
    if (v && td__array_in_graph(a)) {
        const int64_t args[1] = {axis};
        v = td__array_view_hook(a, v, TD__VIEW_FLIP, args, 1);
    }
    return td__array_give(v);
}

/* ---- tile ---- */

static td_array *tile_impl(td_array *a, int n, const int64_t *reps, shape_attrs *rec);

/* tile records its repeats over max(n, ndim) axes. */
td_array *td_tile(td_array *a, int n, const int64_t *reps) {
    if (!a) return NULL;
    shape_attrs at;
    td_array *r = tile_impl(a, n, reps, &at);
    if (!r || !td__tape.active || !td__requires_grad(a)) return r;
    if (td__record(&rec_tile, &a, 1, &at, sizeof at, r) != TD_OK) {
        td_release(r);
        return NULL;
    }
    return r;
}

static td_array *tile_impl(td_array *a, int n, const int64_t *reps, shape_attrs *rec) {
    if (n < 0 || n > TD_MAX_DIMS) {
        td__fail(TD_EINVAL, "td_tile: n must be 0 to %d, not %d", TD_MAX_DIMS, n);
        return NULL;
    }
    if (n > 0 && !reps) {
        td__fail(TD_EINVAL, "td_tile: reps is NULL");
        return NULL;
    }
    if (cpu_only("td_tile", a->dev) != TD_OK) return NULL;
    for (int i = 0; i < n; i++)
        if (reps[i] < 0) {
            td__fail(TD_EINVAL, "td_tile: reps[%d] is %" PRId64 "; repeats must not be negative", i, reps[i]);
            return NULL;
        }
    /* numpy.tile: the shorter of a's shape and reps gets leading 1s. */
    int nd = n > a->ndim ? n : a->ndim;
    int64_t ashape[TD_MAX_DIMS], astr[TD_MAX_DIMS], r[TD_MAX_DIMS], shape[TD_MAX_DIMS];
    char s1[128];
    for (int d = 0; d < nd; d++) {
        int da = d - (nd - a->ndim), dr = d - (nd - n);
        ashape[d] = da >= 0 ? a->shape[da] : 1;
        astr[d] = da >= 0 ? a->strides[da] : 0;
        r[d] = dr >= 0 ? reps[dr] : 1;
        rec->v[d] = r[d];
        if (!mul_ok(ashape[d], r[d], &shape[d])) {
            td__fail(TD_EINVAL, "td_tile: tiling shape %s is too large to address",
                     td__shape_str(a->ndim, a->shape, s1, sizeof s1));
            return NULL;
        }
    }
    td_array *out = td__array_new(a->dtype, nd, shape, a->dev, "td_tile");
    if (!out) return NULL;
    job *j = job_new("tile", "td_tile", &a, 1);
    if (!j) {
        td__array_unref(out);
        return NULL;
    }
    job_set_out(j, out);
    /* out[d] = rep * ashape[d] + i: the box (r0, s0, r1, s1, ...) reads a
     * with stride 0 along each repeat. */
    int64_t es = (int64_t)td_dtype_size(a->dtype), bshape[MAXD], sstr[MAXD], dstr[MAXD];
    for (int d = 0; d < nd; d++) {
        bshape[2 * d] = r[d];
        bshape[2 * d + 1] = ashape[d];
        sstr[2 * d] = 0;
        sstr[2 * d + 1] = astr[d] * es;
        dstr[2 * d] = ashape[d] * out->strides[d] * es;
        dstr[2 * d + 1] = out->strides[d] * es;
    }
    if (job_add(j, "td_tile", 0, 2 * nd, bshape, sstr, dstr, 0, 0) != TD_OK) {
        job_free(j);
        return NULL;
    }
    return job_push(j, "td_tile");
}

/* ---- pad ---- */

static td_array *pad_impl(td_array *a, const int64_t *before, const int64_t *after, double value);

td_array *td_pad(td_array *a, const int64_t *before, const int64_t *after, double value) {
    if (!a) return NULL;
    td_array *r = pad_impl(a, before, after, value);
    if (!r || !td__tape.active || !td__requires_grad(a)) return r;
    shape_attrs at = {{0}};
    for (int d = 0; d < a->ndim; d++) at.v[d] = before[d];
    if (td__record(&rec_pad, &a, 1, &at, sizeof at, r) != TD_OK) {
        td_release(r);
        return NULL;
    }
    return r;
}

static td_array *pad_impl(td_array *a, const int64_t *before, const int64_t *after, double value) {
    int nd = a->ndim;
    if (nd > 0 && (!before || !after)) {
        td__fail(TD_EINVAL, "td_pad: %s is NULL (it needs one entry per dimension of a)", before ? "after" : "before");
        return NULL;
    }
    if (cpu_only("td_pad", a->dev) != TD_OK) return NULL;
    int64_t shape[TD_MAX_DIMS];
    char s1[128];
    for (int d = 0; d < nd; d++) {
        if (before[d] < 0 || after[d] < 0) {
            td__fail(TD_EINVAL, "td_pad: before[%d] = %" PRId64 " and after[%d] = %" PRId64 " must not be negative", d,
                     before[d], d, after[d]);
            return NULL;
        }
        if (__builtin_add_overflow(a->shape[d], before[d], &shape[d]) ||
            __builtin_add_overflow(shape[d], after[d], &shape[d])) {
            td__fail(TD_EINVAL, "td_pad: padding shape %s gives a shape too large to address",
                     td__shape_str(nd, a->shape, s1, sizeof s1));
            return NULL;
        }
    }
    td_array *out = td__array_new(a->dtype, nd, shape, a->dev, "td_pad");
    if (!out) return NULL;
    job *j = job_new("pad", "td_pad", &a, 1);
    if (!j) {
        td__array_unref(out);
        return NULL;
    }
    job_set_out(j, out);
    td__store_double(a->dtype, j->value, value);
    int64_t es = (int64_t)td_dtype_size(a->dtype), sstr[TD_MAX_DIMS] = {0}, dstr[TD_MAX_DIMS] = {0},
            zero[TD_MAX_DIMS] = {0};
    int64_t inner_off = 0;
    for (int d = 0; d < nd; d++) {
        sstr[d] = a->strides[d] * es;
        dstr[d] = out->strides[d] * es;
        inner_off += before[d] * dstr[d];
    }
    /* The interior, then for each axis d the two slabs before and after it
     * (interior along the axes before d, whole along the axes after d):
     * together they cover out once. */
    td_status st = job_add(j, "td_pad", 0, nd, a->shape, sstr, dstr, 0, inner_off);
    for (int d = 0; d < nd && st == TD_OK; d++) {
        int64_t box[TD_MAX_DIMS], off = 0;
        for (int k = 0; k < nd; k++) {
            if (k < d) {
                box[k] = a->shape[k];
                off += before[k] * dstr[k];
            } else {
                box[k] = shape[k];
            }
        }
        box[d] = before[d];
        st = job_add(j, "td_pad", -1, nd, box, zero, dstr, 0, off);
        box[d] = after[d];
        if (st == TD_OK)
            st = job_add(j, "td_pad", -1, nd, box, zero, dstr, 0, off + (before[d] + a->shape[d]) * dstr[d]);
    }
    if (st != TD_OK) {
        job_free(j);
        return NULL;
    }
    return job_push(j, "td_pad");
}
