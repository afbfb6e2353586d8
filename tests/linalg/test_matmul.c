/* td_matmul, td_matmul_out, td_dot and td_outer against a triple loop in
 * double precision written here.
 *
 * Operands are built from random logical values in a chosen layout (plain,
 * a transposed view, rows or columns taken with a step, negative strides,
 * batch dimensions taken with a step), so the same values reach tide through
 * every path the kernel has: straight to BLAS, as CblasTrans, or through a
 * contiguous copy.  float32 results may differ from the reference by
 * 1e-6 * K * sum |a_ik b_kj| (rounding grows with K); float64 ones by 1e-13
 * times that.  Every test ends with no array or storage left.
 */
#include <cblas.h>
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/common.h"

/* ---- runtime and leak check ---- */

static void finish(void) {
    cr_assert_eq(td_wait_all(), TD_OK, "td_wait_all: %s", td_last_error());
    td_array_stats s = td_array_stats_get();
    double end = tt_now() + 2.0;
    while ((s.live_storages || s.storage_bytes) && tt_now() < end) {
        tt_sleep_ms(1);
        s = td_array_stats_get();
    }
    cr_assert_eq(s.live_arrays, 0, "leak: %lld arrays live", (long long)s.live_arrays);
    cr_assert_eq(s.live_storages, 0, "leak: %lld storages live", (long long)s.live_storages);
    cr_assert_eq(s.storage_bytes, 0, "leak: %lld storage bytes", (long long)s.storage_bytes);
    tt_stop(TD_OK);
}

static uint64_t seed_of(const char *test, uint64_t fixed) {
    const char *s = getenv("TIDE_TEST_SEED");
    uint64_t seed = (s && *s) ? strtoull(s, NULL, 0) : fixed;
    cr_log_info("%s: seed %" PRIu64 " (set TIDE_TEST_SEED to replay)", test, seed);
    return seed;
}

static const char *dtn(int dt) { return dt == TD_F32 ? "f32" : "f64"; }

static const char *shape_s(char *buf, size_t n, int nd, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < nd && k < n; i++) k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, nd == 1 ? ",)" : ")");
    return buf;
}

/* ---- host arrays of logical values (C order) ---- */

typedef struct {
    int nd;
    int64_t shape[TD_MAX_DIMS];
    int64_t n;
    double *v;
} harr;

static int64_t numel(int nd, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    return n;
}

static harr h_new(int nd, const int64_t *shape) {
    harr h;
    memset(&h, 0, sizeof h);
    h.nd = nd;
    if (nd) memcpy(h.shape, shape, sizeof(int64_t) * (size_t)nd);
    h.n = numel(nd, shape);
    h.v = calloc((size_t)(h.n > 0 ? h.n : 1), sizeof(double));
    cr_assert_not_null(h.v);
    return h;
}

/* Random values in [-1, 1), rounded to dt so the reference uses the values
 * tide holds. */
static harr h_rand(tt_rng *g, int dt, int nd, const int64_t *shape) {
    harr h = h_new(nd, shape);
    for (int64_t i = 0; i < h.n; i++) {
        double x = (double)(tt_rng_next(g) >> 11) * 0x1p-52 - 1.0;
        h.v[i] = dt == TD_F32 ? (double)(float)x : x;
    }
    return h;
}

static void h_free(harr *h) {
    free(h->v);
    h->v = NULL;
}

/* ---- operands in a layout ---- */

enum {
    L_PLAIN,         /* C-contiguous */
    L_TRANS,         /* a transposed view of a contiguous array: CblasTrans */
    L_ROWSTEP,       /* every other row, from an offset: row-major with a larger ld */
    L_TRANS_ROWSTEP, /* a transposed view of that: CblasTrans with a larger ld */
    L_COLSTEP,       /* every third column: copied */
    L_NEG,           /* rows in reverse (negative stride): copied */
    L_BATCHSTEP,     /* every other batch entry (3-D and more) */
    L_NLAYOUTS
};
static const char *const lay_names[L_NLAYOUTS] = {"plain",   "transposed", "row-stepped", "transposed row-stepped",
                                                  "col-stepped", "reversed", "batch-stepped"};

/* The storage position (r, c) of logical (i, j) in a layout's base matrix
 * of SR x SC. */
static void lay_base(int lay, int64_t R, int64_t C, int64_t *SR, int64_t *SC) {
    switch (lay) {
    case L_TRANS: *SR = C, *SC = R; break;
    case L_ROWSTEP: *SR = 2 * R, *SC = C + 3; break;
    case L_TRANS_ROWSTEP: *SR = 2 * C, *SC = R + 2; break;
    case L_COLSTEP: *SR = R + 1, *SC = 3 * C; break;
    default: *SR = R, *SC = C; break;
    }
}
static void lay_pos(int lay, int64_t R, int64_t i, int64_t j, int64_t *r, int64_t *c) {
    switch (lay) {
    case L_TRANS: *r = j, *c = i; break;
    case L_ROWSTEP: *r = 2 * i, *c = j + 1; break;
    case L_TRANS_ROWSTEP: *r = 2 * j, *c = i + 1; break;
    case L_COLSTEP: *r = i + 1, *c = 3 * j; break;
    case L_NEG: *r = R - 1 - i, *c = j; break;
    default: *r = i, *c = j; break;
    }
}

static td_array *from_host(const double *v, int dt, int nd, const int64_t *shape) {
    int64_t n = numel(nd, shape);
    size_t es = dt == TD_F32 ? 4 : 8;
    char *buf = malloc(es * (size_t)(n > 0 ? n : 1));
    cr_assert_not_null(buf);
    for (int64_t i = 0; i < n; i++) {
        if (dt == TD_F32) ((float *)buf)[i] = (float)v[i];
        else ((double *)buf)[i] = v[i];
    }
    td_array *a = td_from_host(buf, dt, nd, shape, td_cpu(0));
    free(buf);
    cr_assert_not_null(a, "td_from_host: %s", td_last_error());
    return a;
}

/* A tide array (in the current scope) with h's logical values in layout
 * lay.  1-D operands know plain, col-stepped (stride 3) and reversed. */
static td_array *make_op(const harr *h, int dt, int lay) {
    if (h->nd == 1) {
        int64_t n = h->shape[0];
        if (lay == L_COLSTEP || lay == L_NEG) {
            int64_t bn = lay == L_COLSTEP ? 3 * n : n;
            double *base = malloc(sizeof(double) * (size_t)(bn > 0 ? bn : 1));
            cr_assert_not_null(base);
            for (int64_t i = 0; i < bn; i++) base[i] = 1000.5;
            for (int64_t i = 0; i < n; i++) base[lay == L_COLSTEP ? 3 * i : n - 1 - i] = h->v[i];
            td_array *b = from_host(base, dt, 1, &bn);
            free(base);
            td_array *v = lay == L_COLSTEP ? td_slice(b, 0, 0, bn, 3) : td_slice(b, 0, n - 1, -n - 1, -1);
            cr_assert_not_null(v, "td_slice: %s", td_last_error());
            return v;
        }
        return from_host(h->v, dt, 1, h->shape);
    }
    int nd = h->nd;
    int64_t R = h->shape[nd - 2], C = h->shape[nd - 1], SR, SC;
    int bstep = lay == L_BATCHSTEP && nd >= 3;
    if (lay == L_BATCHSTEP) lay = L_PLAIN;
    lay_base(lay, R, C, &SR, &SC);
    int64_t bshape[TD_MAX_DIMS];
    memcpy(bshape, h->shape, sizeof bshape);
    if (bstep) bshape[0] = 2 * h->shape[0];
    bshape[nd - 2] = SR;
    bshape[nd - 1] = SC;
    int64_t nb = numel(nd - 2, h->shape), bn = numel(nd, bshape);
    double *base = malloc(sizeof(double) * (size_t)(bn > 0 ? bn : 1));
    cr_assert_not_null(base);
    for (int64_t i = 0; i < bn; i++) base[i] = 1000.5; /* shows up in a result that reads outside the view */
    for (int64_t bi = 0; bi < nb; bi++) {
        /* batch entry bi of the view is entry bi of the base, or 2*bi0 + rest when stepped */
        int64_t inner = nb / (nd >= 3 ? h->shape[0] : 1);
        int64_t bb = bstep ? (bi / inner) * 2 * inner + bi % inner : bi;
        for (int64_t i = 0; i < R; i++)
            for (int64_t j = 0; j < C; j++) {
                int64_t r, c;
                lay_pos(lay, R, i, j, &r, &c);
                base[(bb * SR + r) * SC + c] = h->v[(bi * R + i) * C + j];
            }
    }
    td_array *b = from_host(base, dt, nd, bshape);
    free(base);
    td_array *v = b;
    if (bstep) v = td_slice(v, 0, 0, bshape[0], 2);
    int swap[TD_MAX_DIMS];
    for (int i = 0; i < nd; i++) swap[i] = i;
    swap[nd - 2] = nd - 1;
    swap[nd - 1] = nd - 2;
    switch (lay) {
    case L_TRANS: v = td_transpose(v, swap); break;
    case L_ROWSTEP: v = td_slice(td_slice(v, nd - 2, 0, SR, 2), nd - 1, 1, C + 1, 1); break;
    case L_TRANS_ROWSTEP: v = td_transpose(td_slice(td_slice(v, nd - 2, 0, SR, 2), nd - 1, 1, R + 1, 1), swap); break;
    case L_COLSTEP: v = td_slice(td_slice(v, nd - 2, 1, R + 1, 1), nd - 1, 0, SC, 3); break;
    case L_NEG: v = td_slice(v, nd - 2, R - 1, -R - 1, -1); break;
    default: break;
    }
    cr_assert_not_null(v, "making a %s view: %s", lay_names[lay], td_last_error());
    for (int i = 0; i < nd; i++) cr_assert_eq(td_shape(v)[i], h->shape[i], "layout %s: wrong view shape", lay_names[lay]);
    return v;
}

/* ---- the reference ---- */

/* numpy's matmul of the logical values, in double; *absum gets
 * sum |a_ik b_kj| per element (for the tolerance). */
static harr ref_matmul(const harr *a, const harr *b, double **absum) {
    int a1 = a->nd == 1, b1 = b->nd == 1;
    int64_t M = a1 ? 1 : a->shape[a->nd - 2], K = a->shape[a->nd - 1], N = b1 ? 1 : b->shape[b->nd - 1];
    int na = a->nd > 2 ? a->nd - 2 : 0, nbb = b->nd > 2 ? b->nd - 2 : 0, nbd = na > nbb ? na : nbb;
    int64_t bs[TD_MAX_DIMS], oshape[TD_MAX_DIMS];
    int ond = 0;
    for (int i = 0; i < nbd; i++) {
        int ia = na - nbd + i, ib = nbb - nbd + i;
        int64_t x = ia >= 0 ? a->shape[ia] : 1, y = ib >= 0 ? b->shape[ib] : 1;
        bs[i] = x == 1 ? y : x;
        oshape[ond++] = bs[i];
    }
    if (!a1) oshape[ond++] = M;
    if (!b1) oshape[ond++] = N;
    harr o = h_new(ond, oshape);
    *absum = calloc((size_t)(o.n > 0 ? o.n : 1), sizeof(double));
    int64_t nbatch = numel(nbd, bs);
    for (int64_t bi = 0; bi < nbatch; bi++) {
        int64_t ia = 0, ib = 0, r = bi, mula = 1, mulb = 1;
        for (int d = nbd - 1; d >= 0; d--) {
            int64_t i = r % bs[d];
            r /= bs[d];
            int da = na - nbd + d, db = nbb - nbd + d;
            if (da >= 0) {
                if (a->shape[da] != 1) ia += i * mula;
                mula *= a->shape[da];
            }
            if (db >= 0) {
                if (b->shape[db] != 1) ib += i * mulb;
                mulb *= b->shape[db];
            }
        }
        const double *A = a->v + ia * M * K, *B = b->v + ib * K * N;
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double s = 0, t = 0;
                for (int64_t k = 0; k < K; k++) {
                    s += A[m * K + k] * B[k * N + n];
                    t += fabs(A[m * K + k] * B[k * N + n]);
                }
                o.v[(bi * M + m) * N + n] = s;
                (*absum)[(bi * M + m) * N + n] = t;
            }
    }
    return o;
}

/* The values of a (C order, as doubles), after checking dtype and shape. */
static double *read_vals(td_array *a, int dt, int nd, const int64_t *shape, const char *what) {
    char s1[128], s2[128];
    cr_assert_not_null(a, "%s: NULL (%s: %s)", what, td_status_name(td_last_status()), td_last_error());
    cr_assert_eq(td_dtype(a), dt, "%s: dtype %s, expected %s", what, td_dtype_name(td_dtype(a)), td_dtype_name(dt));
    int same = td_ndim(a) == nd;
    for (int i = 0; same && i < nd; i++) same = td_shape(a)[i] == shape[i];
    cr_assert(same, "%s: shape %s, expected %s", what, shape_s(s1, sizeof s1, td_ndim(a), td_shape(a)),
              shape_s(s2, sizeof s2, nd, shape));
    int64_t n = td_numel(a);
    size_t es = dt == TD_F32 ? 4 : 8;
    char *buf = malloc(es * (size_t)(n > 0 ? n : 1));
    double *v = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    cr_assert(buf && v);
    td_status st = td_to_host(a, buf, es * (size_t)n);
    cr_assert_eq(st, TD_OK, "%s: td_to_host: %s (%s)", what, td_status_name(st), td_last_error());
    for (int64_t i = 0; i < n; i++) v[i] = dt == TD_F32 ? (double)((float *)buf)[i] : ((double *)buf)[i];
    free(buf);
    return v;
}

static double tol_of(int dt, int64_t K) { return (dt == TD_F32 ? 1e-6 : 1e-13) * (double)(K > 1 ? K : 1); }

static void expect_close(td_array *got, int dt, const harr *ref, const double *absum, int64_t K, const char *what) {
    double *v = read_vals(got, dt, ref->nd, ref->shape, what);
    double tol = tol_of(dt, K);
    for (int64_t i = 0; i < ref->n; i++) {
        double err = fabs(v[i] - ref->v[i]);
        cr_assert(err <= tol * absum[i] + 1e-300,
                  "%s: element %lld is %.17g, expected %.17g (error %.3g, allowed %.3g)", what, (long long)i, v[i],
                  ref->v[i], err, tol * absum[i]);
    }
    free(v);
}

/* Computes td_matmul of a and b in layouts la, lb and checks it. */
static void check_matmul(tt_rng *g, int dt, int nda, const int64_t *sa, int ndb, const int64_t *sb, int la, int lb) {
    char s1[128], s2[128], what[400];
    harr a = h_rand(g, dt, nda, sa), b = h_rand(g, dt, ndb, sb);
    double *absum;
    harr r = ref_matmul(&a, &b, &absum);
    snprintf(what, sizeof what, "%s %s (%s) @ %s (%s)", dtn(dt), shape_s(s1, sizeof s1, nda, sa), lay_names[la],
             shape_s(s2, sizeof s2, ndb, sb), lay_names[lb]);
    td_scope_begin();
    td_array *x = make_op(&a, dt, la), *y = make_op(&b, dt, lb);
    td_array *c = td_matmul(x, y);
    expect_close(c, dt, &r, absum, a.shape[a.nd - 1], what);
    td_scope_end();
    h_free(&a);
    h_free(&b);
    h_free(&r);
    free(absum);
}

/* ---- 2-D: every layout pair ---- */

Test(matmul, two_d_matches_the_triple_loop_for_every_pair_of_layouts, .timeout = 120) {
    tt_start(TD_ENGINE_THREADED, 2);
    tt_rng g = {seed_of("matmul layouts", 11)};
    static const int64_t dims[][3] = {{7, 5, 9}, {1, 6, 4}, {5, 1, 3}, {65, 33, 47}};
    for (int dt = TD_F32; dt <= TD_F64; dt++)
        for (size_t s = 0; s < sizeof dims / sizeof dims[0]; s++)
            for (int la = 0; la < L_BATCHSTEP; la++)
                for (int lb = 0; lb < L_BATCHSTEP; lb++) {
                    int64_t sa[2] = {dims[s][0], dims[s][1]}, sb[2] = {dims[s][1], dims[s][2]};
                    check_matmul(&g, dt, 2, sa, 2, sb, la, lb);
                }
    finish();
}

/* The op names the profiler saw while running fn (matmul calls only). */
static char *ops_run(td_array *a, td_array *b, int out_form) {
    cr_assert_eq(td_profiler_start(NULL), TD_OK, "td_profiler_start: %s", td_last_error());
    td_scope_begin();
    if (out_form) {
        td_array *c = td_empty(td_dtype(a), 2, (int64_t[]){td_shape(a)[0], td_shape(b)[1]}, td_cpu(0));
        cr_assert_eq(td_matmul_out(a, b, c), TD_OK, "td_matmul_out: %s", td_last_error());
    } else {
        cr_assert_not_null(td_matmul(a, b), "td_matmul: %s", td_last_error());
    }
    cr_assert_eq(td_wait_all(), TD_OK);
    td_scope_end();
    cr_assert_eq(td_profiler_stop(), TD_OK, "td_profiler_stop: %s", td_last_error());
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_not_null(f);
    cr_assert_eq(td_profiler_summary(f), TD_OK, "td_profiler_summary: %s", td_last_error());
    fclose(f);
    return text;
}

static int has_op(const char *summary, const char *name) {
    size_t n = strlen(name);
    for (const char *l = summary; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (!strncmp(l, name, n) && l[n] == ' ') return 1;
    return 0;
}

Test(matmul, transposed_views_go_to_blas_without_a_copy_and_other_strides_are_copied, .timeout = 60) {
    tt_start(TD_ENGINE_THREADED, 2);
    tt_rng g = {seed_of("no copy", 5)};
    int64_t sa[2] = {40, 30}, sb[2] = {30, 20};
    harr a = h_rand(&g, TD_F32, 2, sa), b = h_rand(&g, TD_F32, 2, sb);
    for (int la = 0; la < L_BATCHSTEP; la++)
        for (int lb = 0; lb < L_BATCHSTEP; lb++) {
            td_scope_begin();
            td_array *x = make_op(&a, TD_F32, la), *y = make_op(&b, TD_F32, lb);
            cr_assert_eq(td_wait_all(), TD_OK);
            for (int out_form = 0; out_form < 2; out_form++) {
                char *s = ops_run(x, y, out_form);
                int copied = has_op(s, "copy");
                int must_copy = la == L_COLSTEP || la == L_NEG || lb == L_COLSTEP || lb == L_NEG;
                cr_assert(has_op(s, "matmul"), "no matmul op in the profile:\n%s", s);
                cr_assert_eq(copied, must_copy, "a %s @ b %s (%s): copy op %s; profile:\n%s", lay_names[la], lay_names[lb],
                             out_form ? "td_matmul_out" : "td_matmul", copied ? "present" : "absent", s);
                free(s);
            }
            td_scope_end();
        }
    h_free(&a);
    h_free(&b);
    finish();
}

/* ---- batches ---- */

Test(matmul, batch_dims_broadcast_as_numpy, .timeout = 120) {
    tt_start(TD_ENGINE_THREADED, 2);
    tt_rng g = {seed_of("batches", 7)};
    static const struct {
        int na, nb;
        int64_t sa[5], sb[5];
    } cases[] = {
        {4, 3, {2, 1, 3, 4}, {5, 4, 2}},
        {3, 3, {4, 5, 6}, {4, 6, 7}},
        {3, 2, {6, 5, 4}, {4, 3}},          /* b has no batch: folded into one product */
        {2, 3, {5, 4}, {6, 4, 3}},
        {4, 4, {3, 1, 8, 9}, {1, 4, 9, 5}},
        {3, 1, {4, 3, 5}, {5}},
        {1, 4, {5}, {2, 3, 5, 4}},
        {3, 3, {1, 6, 7}, {3, 7, 1}},
        {5, 3, {2, 2, 2, 3, 4}, {2, 4, 3}},
        {3, 2, {64, 30, 40}, {40, 20}},     /* folded into one (1920, 40) @ (40, 20) */
        {3, 3, {8, 50, 60}, {8, 60, 70}},   /* the batch runs in parallel */
    };
    for (int dt = TD_F32; dt <= TD_F64; dt++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
            for (int la = 0; la < L_NLAYOUTS; la++) {
                int lb = (la * 3 + (int)c) % L_NLAYOUTS;
                check_matmul(&g, dt, cases[c].na, cases[c].sa, cases[c].nb, cases[c].sb, la, lb);
            }
    finish();
}

Test(matmul, broadcast_views_and_batch_strides_of_zero, .timeout = 60) {
    tt_start(TD_ENGINE_THREADED, 2);
    tt_rng g = {seed_of("broadcast views", 9)};
    int64_t s2[2] = {6, 5}, sb[3] = {4, 5, 3}, s3[3] = {4, 6, 5};
    harr a = h_rand(&g, TD_F32, 2, s2), b = h_rand(&g, TD_F32, 3, sb);
    harr a3 = h_new(3, s3); /* a repeated 4 times */
    for (int64_t i = 0; i < a3.n; i++) a3.v[i] = a.v[i % a.n];
    double *absum;
    harr r = ref_matmul(&a3, &b, &absum);
    td_scope_begin();
    td_array *x = td_broadcast_to(from_host(a.v, TD_F32, 2, s2), 3, s3);
    cr_assert_not_null(x, "td_broadcast_to: %s", td_last_error());
    td_array *c = td_matmul(x, from_host(b.v, TD_F32, 3, sb));
    expect_close(c, TD_F32, &r, absum, 5, "broadcast_to (4, 6, 5) @ (4, 5, 3)");
    /* b broadcast inside the matrix (stride 0 along the rows): copied */
    int64_t row[2] = {1, 3}, full[2] = {5, 3};
    harr br = h_new(2, full);
    for (int64_t i = 0; i < br.n; i++) br.v[i] = b.v[i % 3];
    double *absum2;
    harr r2 = ref_matmul(&a, &br, &absum2);
    td_array *y = td_broadcast_to(from_host(b.v, TD_F32, 2, row), 2, full);
    expect_close(td_matmul(from_host(a.v, TD_F32, 2, s2), y), TD_F32, &r2, absum2, 5, "(6, 5) @ broadcast (5, 3)");
    td_scope_end();
    h_free(&a), h_free(&b), h_free(&a3), h_free(&r), h_free(&br), h_free(&r2);
    free(absum), free(absum2);
    finish();
}

/* ---- 1-D operands ---- */

Test(matmul, one_d_operands_are_promoted_and_the_added_dim_removed, .timeout = 60) {
    tt_start(TD_ENGINE_THREADED, 2);
    tt_rng g = {seed_of("1-D", 3)};
    static const int layouts1[] = {L_PLAIN, L_COLSTEP, L_NEG};
    for (int dt = TD_F32; dt <= TD_F64; dt++)
        for (int i = 0; i < 3; i++)
            for (int l2 = 0; l2 < L_BATCHSTEP; l2++) {
                int l1 = layouts1[i];
                check_matmul(&g, dt, 1, (int64_t[]){7}, 2, (int64_t[]){7, 5}, l1, l2);   /* vector @ matrix */
                check_matmul(&g, dt, 2, (int64_t[]){6, 7}, 1, (int64_t[]){7}, l2, l1);   /* matrix @ vector */
                check_matmul(&g, dt, 1, (int64_t[]){9}, 1, (int64_t[]){9}, l1, layouts1[(i + l2) % 3]); /* 0-d */
                check_matmul(&g, dt, 1, (int64_t[]){1}, 2, (int64_t[]){1, 4}, l1, l2);
                check_matmul(&g, dt, 2, (int64_t[]){4, 1}, 1, (int64_t[]){1}, l2, l1);
            }
    /* large enough to be split: matrix-vector products run as tiled gemv */
    check_matmul(&g, TD_F32, 2, (int64_t[]){3000, 700}, 1, (int64_t[]){700}, L_PLAIN, L_PLAIN);
    check_matmul(&g, TD_F64, 2, (int64_t[]){3000, 700}, 1, (int64_t[]){700}, L_TRANS, L_COLSTEP);
    check_matmul(&g, TD_F32, 1, (int64_t[]){700}, 2, (int64_t[]){700, 3000}, L_COLSTEP, L_PLAIN);
    check_matmul(&g, TD_F64, 1, (int64_t[]){700}, 2, (int64_t[]){700, 3000}, L_PLAIN, L_TRANS);
    check_matmul(&g, TD_F32, 1, (int64_t[]){100000}, 1, (int64_t[]){100000}, L_PLAIN, L_COLSTEP);
    finish();
}

/* ---- empty dimensions ---- */

Test(matmul, empty_dims_give_empty_results_and_k_zero_gives_zeros, .timeout = 60) {
    tt_start(TD_ENGINE_THREADED, 2);
    tt_rng g = {seed_of("empty", 1)};
    static const struct {
        int na, nb;
        int64_t sa[3], sb[3];
    } cases[] = {
        {2, 2, {4, 0}, {0, 5}},   /* K = 0: zeros */
        {2, 2, {0, 3}, {3, 5}},   /* M = 0 */
        {2, 2, {4, 3}, {3, 0}},   /* N = 0 */
        {3, 3, {0, 2, 3}, {1, 3, 4}}, /* no batch entries */
        {1, 1, {0}, {0}},         /* 0-d zero */
        {1, 2, {0}, {0, 6}},
        {3, 2, {2, 300, 0}, {0, 400}}, /* big zero fill */
    };
    for (int dt = TD_F32; dt <= TD_F64; dt++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
            for (int l = 0; l < 2; l++) check_matmul(&g, dt, cases[c].na, cases[c].sa, cases[c].nb, cases[c].sb, l, l);
    /* K = 0 into an out full of NaN: every element becomes 0 */
    td_scope_begin();
    td_array *a = td_zeros(TD_F32, 2, (int64_t[]){4, 0}, td_cpu(0)), *b = td_zeros(TD_F32, 2, (int64_t[]){0, 5}, td_cpu(0));
    td_array *out = td_full(TD_F32, 2, (int64_t[]){4, 5}, NAN, td_cpu(0));
    cr_assert_eq(td_matmul_out(a, b, out), TD_OK, "td_matmul_out: %s", td_last_error());
    float v[20];
    cr_assert_eq(td_to_host(out, v, sizeof v), TD_OK);
    for (int i = 0; i < 20; i++) cr_assert(v[i] == 0.0f, "element %d is %g after a K = 0 product", i, (double)v[i]);
    td_scope_end();
    finish();
}

/* ---- tiles: bit-identical for any worker count and both engines ---- */

typedef struct {
    int dt, na, nb;
    int64_t sa[3], sb[3];
    int la, lb;
} big_case;

static const big_case big_cases[] = {
    {TD_F32, 2, 2, {300, 200}, {200, 250}, L_PLAIN, L_PLAIN},
    {TD_F64, 2, 2, {300, 200}, {200, 250}, L_TRANS, L_PLAIN},
    {TD_F32, 2, 2, {300, 200}, {200, 250}, L_PLAIN, L_TRANS},
    {TD_F32, 2, 2, {300, 200}, {200, 250}, L_TRANS_ROWSTEP, L_TRANS},
    {TD_F32, 2, 2, {2600, 32}, {32, 2600}, L_PLAIN, L_PLAIN}, /* 2 x 2 tiles */
    {TD_F32, 2, 2, {40, 300}, {300, 1500}, L_ROWSTEP, L_PLAIN}, /* split along N */
    {TD_F64, 3, 3, {6, 100, 120}, {6, 120, 90}, L_PLAIN, L_TRANS},
    {TD_F32, 3, 2, {16, 100, 120}, {120, 90}, L_PLAIN, L_PLAIN},
    {TD_F32, 2, 1, {3000, 700}, {700}, L_TRANS, L_PLAIN},
    {TD_F32, 1, 2, {700}, {700, 3000}, L_PLAIN, L_PLAIN},
};
enum { NBIG = sizeof big_cases / sizeof big_cases[0] };

Test(matmul, large_products_are_tiled_and_bit_identical_for_1_to_4_workers_and_both_engines, .timeout = 240) {
    uint64_t seed = seed_of("tiles", 2024);
    static const struct {
        int engine, workers;
    } cfgs[] = {{TD_ENGINE_THREADED, 1}, {TD_ENGINE_THREADED, 2}, {TD_ENGINE_THREADED, 3},
                {TD_ENGINE_THREADED, 4}, {TD_ENGINE_NAIVE, 0}};
    double *first[NBIG] = {0};
    for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
        tt_start(cfgs[k].engine, cfgs[k].workers);
        tt_rng g = {seed};
        for (int c = 0; c < NBIG; c++) {
            const big_case *bc = &big_cases[c];
            char s1[64], s2[64], what[256];
            snprintf(what, sizeof what, "%s %s (%s) @ %s (%s), %s engine, %d workers", dtn(bc->dt),
                     shape_s(s1, sizeof s1, bc->na, bc->sa), lay_names[bc->la], shape_s(s2, sizeof s2, bc->nb, bc->sb),
                     lay_names[bc->lb], tt_engine_name(cfgs[k].engine), cfgs[k].workers);
            harr a = h_rand(&g, bc->dt, bc->na, bc->sa), b = h_rand(&g, bc->dt, bc->nb, bc->sb);
            td_scope_begin();
            td_array *r = td_matmul(make_op(&a, bc->dt, bc->la), make_op(&b, bc->dt, bc->lb));
            cr_assert_not_null(r, "%s: %s", what, td_last_error());
            if (k == 0) {
                double *absum;
                harr ref = ref_matmul(&a, &b, &absum);
                expect_close(r, bc->dt, &ref, absum, a.shape[a.nd - 1], what);
                first[c] = read_vals(r, bc->dt, ref.nd, ref.shape, what);
                h_free(&ref);
                free(absum);
            } else {
                double *v = read_vals(r, bc->dt, td_ndim(r), td_shape(r), what);
                int64_t n = td_numel(r);
                for (int64_t i = 0; i < n; i++)
                    cr_assert(memcmp(&v[i], &first[c][i], sizeof(double)) == 0,
                              "%s: element %lld is %.17g, but %.17g with 1 worker", what, (long long)i, v[i], first[c][i]);
                free(v);
            }
            td_scope_end();
            h_free(&a);
            h_free(&b);
        }
        finish();
    }
    for (int c = 0; c < NBIG; c++) free(first[c]);
}

/* ---- dtypes ---- */

Test(matmul, float32_with_float64_computes_in_float64, .timeout = 60) {
    tt_start(TD_ENGINE_THREADED, 2);
    tt_rng g = {seed_of("mixed", 4)};
    int64_t sa[2] = {9, 8}, sb[2] = {8, 7};
    harr a = h_rand(&g, TD_F32, 2, sa), b = h_rand(&g, TD_F64, 2, sb);
    double *absum;
    harr r = ref_matmul(&a, &b, &absum);
    td_scope_begin();
    td_array *x = from_host(a.v, TD_F32, 2, sa), *y = from_host(b.v, TD_F64, 2, sb);
    td_array *xs = make_op(&a, TD_F32, L_COLSTEP);
    expect_close(td_matmul(x, y), TD_F64, &r, absum, 8, "f32 @ f64");
    expect_close(td_matmul(xs, y), TD_F64, &r, absum, 8, "f32 (col-stepped) @ f64");
    td_array *out = td_empty(TD_F64, 2, (int64_t[]){9, 7}, td_cpu(0));
    cr_assert_eq(td_matmul_out(x, y, out), TD_OK, "td_matmul_out: %s", td_last_error());
    expect_close(out, TD_F64, &r, absum, 8, "td_matmul_out f32 @ f64 into f64");
    td_scope_end();
    h_free(&a), h_free(&b), h_free(&r);
    free(absum);
    finish();
}

/* ---- td_matmul_out ---- */

Test(matmul_out, writes_into_plain_strided_and_transposed_outs_and_in_place, .timeout = 60) {
    tt_start(TD_ENGINE_THREADED, 2);
    tt_rng g = {seed_of("matmul_out", 6)};
    for (int dt = TD_F32; dt <= TD_F64; dt++) {
        int64_t sa[2] = {12, 10}, sb[2] = {10, 14}, sc[2] = {12, 14};
        harr a = h_rand(&g, dt, 2, sa), b = h_rand(&g, dt, 2, sb);
        double *absum;
        harr r = ref_matmul(&a, &b, &absum);
        td_scope_begin();
        td_array *x = make_op(&a, dt, L_PLAIN), *y = make_op(&b, dt, L_TRANS);
        /* a plain out, full of NaN first (beta = 0 must not read it) */
        td_array *o1 = td_full(dt, 2, sc, NAN, td_cpu(0));
        cr_assert_eq(td_matmul_out(x, y, o1), TD_OK, "%s", td_last_error());
        expect_close(o1, dt, &r, absum, 10, "out plain");
        /* every other row of a bigger array, the rest untouched */
        td_array *big = td_full(dt, 2, (int64_t[]){24, 15}, -7.0, td_cpu(0));
        td_array *o2 = td_slice(td_slice(big, 0, 0, 24, 2), 1, 1, 15, 1);
        cr_assert_eq(td_matmul_out(x, y, o2), TD_OK, "%s", td_last_error());
        expect_close(o2, dt, &r, absum, 10, "out row-stepped");
        double *bv = read_vals(big, dt, 2, (int64_t[]){24, 15}, "the array around out");
        for (int64_t i = 0; i < 24; i++)
            for (int64_t j = 0; j < 15; j++)
                if (i % 2 || j == 0) cr_assert(bv[i * 15 + j] == -7.0, "element (%lld, %lld) outside out changed", (long long)i, (long long)j);
        free(bv);
        /* a transposed view: through a temporary */
        td_array *o3 = td_transpose(td_full(dt, 2, (int64_t[]){14, 12}, NAN, td_cpu(0)), NULL);
        cr_assert_eq(td_matmul_out(x, y, o3), TD_OK, "%s", td_last_error());
        expect_close(o3, dt, &r, absum, 10, "out transposed");
        /* batched out */
        int64_t s3[3] = {3, 12, 10};
        harr a3 = h_rand(&g, dt, 3, s3);
        double *absum3;
        harr r3 = ref_matmul(&a3, &b, &absum3);
        td_array *o4 = td_full(dt, 3, (int64_t[]){3, 12, 14}, NAN, td_cpu(0));
        cr_assert_eq(td_matmul_out(make_op(&a3, dt, L_BATCHSTEP), y, o4), TD_OK, "%s", td_last_error());
        expect_close(o4, dt, &r3, absum3, 10, "out batched");
        /* a broadcast out (batch stride 0), with every batch entry equal */
        harr a1 = h_new(3, s3);
        for (int64_t i = 0; i < a1.n; i++) a1.v[i] = a.v[i % a.n];
        td_array *o5 = td_broadcast_to(td_full(dt, 3, (int64_t[]){1, 12, 14}, NAN, td_cpu(0)), 3, (int64_t[]){3, 12, 14});
        cr_assert_eq(td_matmul_out(make_op(&a1, dt, L_PLAIN), y, o5), TD_OK, "broadcast out: %s", td_last_error());
        cr_assert_eq(td_wait_all(), TD_OK);
        td_array *o5b = td_squeeze(td_slice(o5, 0, 0, 1, 1), 0);
        expect_close(o5b, dt, &r, absum, 10, "out broadcast along the batch");
        h_free(&a1);
        /* matrix @ vector, vector @ matrix and vector @ vector (gemv and dot)
         * into outs full of NaN */
        int64_t sv[1] = {10}, sw[1] = {12};
        harr v = h_rand(&g, dt, 1, sv), w = h_rand(&g, dt, 1, sw);
        double *av, *aw, *avv;
        harr rv = ref_matmul(&a, &v, &av), rw = ref_matmul(&w, &a, &aw), rvv = ref_matmul(&v, &v, &avv);
        td_array *tv = make_op(&v, dt, L_PLAIN), *tw = make_op(&w, dt, L_COLSTEP);
        td_array *o6 = td_full(dt, 1, sw, NAN, td_cpu(0)), *o7 = td_full(dt, 1, sv, NAN, td_cpu(0));
        td_array *o8 = td_full(dt, 0, NULL, NAN, td_cpu(0));
        cr_assert_eq(td_matmul_out(x, tv, o6), TD_OK, "%s", td_last_error());
        cr_assert_eq(td_matmul_out(tw, x, o7), TD_OK, "%s", td_last_error());
        cr_assert_eq(td_matmul_out(tv, tv, o8), TD_OK, "%s", td_last_error());
        expect_close(o6, dt, &rv, av, 10, "out of matrix @ vector");
        expect_close(o7, dt, &rw, aw, 12, "out of vector @ matrix");
        expect_close(o8, dt, &rvv, avv, 10, "out of vector @ vector");
        h_free(&v), h_free(&w), h_free(&rv), h_free(&rw), h_free(&rvv);
        free(av), free(aw), free(avv);
        td_scope_end();
        h_free(&a), h_free(&b), h_free(&r), h_free(&a3), h_free(&r3);
        free(absum), free(absum3);
    }
    /* in place: a = a @ b with square matrices reads the old a */
    int64_t s[2] = {33, 33};
    harr a = h_rand(&g, TD_F32, 2, s), b = h_rand(&g, TD_F32, 2, s);
    double *absum;
    harr r2 = ref_matmul(&a, &a, &absum);
    td_scope_begin();
    td_array *x = from_host(a.v, TD_F32, 2, s), *y = from_host(b.v, TD_F32, 2, s);
    cr_assert_eq(td_matmul_out(x, y, x), TD_OK, "in place: %s", td_last_error());
    double *absum1;
    harr r1 = ref_matmul(&a, &b, &absum1);
    expect_close(x, TD_F32, &r1, absum1, 33, "a = a @ b");
    td_array *z = from_host(a.v, TD_F32, 2, s);
    cr_assert_eq(td_matmul_out(z, td_transpose(td_transpose(z, NULL), NULL), z), TD_OK, "%s", td_last_error());
    expect_close(z, TD_F32, &r2, absum, 33, "a = a @ a");
    td_scope_end();
    h_free(&a), h_free(&b), h_free(&r1), h_free(&r2);
    free(absum), free(absum1);
    finish();
}

/* ---- dot and outer ---- */

Test(dot, vectors_give_a_0d_result_and_matrices_a_matmul, .timeout = 60) {
    tt_start(TD_ENGINE_THREADED, 2);
    tt_rng g = {seed_of("dot", 8)};
    for (int dt = TD_F32; dt <= TD_F64; dt++) {
        int64_t n[1] = {50}, sa[2] = {4, 50}, sb[3] = {2, 50, 3};
        harr u = h_rand(&g, dt, 1, n), v = h_rand(&g, dt, 1, n), m = h_rand(&g, dt, 2, sa), w = h_rand(&g, dt, 3, sb);
        double *s1, *s2, *s3;
        harr r1 = ref_matmul(&u, &v, &s1), r2 = ref_matmul(&m, &v, &s2), r3 = ref_matmul(&m, &w, &s3);
        td_scope_begin();
        td_array *d = td_dot(make_op(&u, dt, L_PLAIN), make_op(&v, dt, L_COLSTEP));
        cr_assert_not_null(d, "td_dot: %s", td_last_error());
        cr_assert_eq(td_ndim(d), 0, "td_dot of two vectors has %d dims", td_ndim(d));
        expect_close(d, dt, &r1, s1, 50, "dot(u, v)");
        expect_close(td_dot(make_op(&m, dt, L_TRANS), make_op(&v, dt, L_NEG)), dt, &r2, s2, 50, "dot(m, v)");
        expect_close(td_dot(make_op(&m, dt, L_PLAIN), make_op(&w, dt, L_TRANS)), dt, &r3, s3, 50, "dot(m, w)");
        td_scope_end();
        h_free(&u), h_free(&v), h_free(&m), h_free(&w), h_free(&r1), h_free(&r2), h_free(&r3);
        free(s1), free(s2), free(s3);
    }
    finish();
}

static void check_outer(tt_rng *g, int dt_a, int dt_b, int nda, const int64_t *sa, int ndb, const int64_t *sb, int la,
                        int lb) {
    harr a = h_rand(g, dt_a, nda, sa), b = h_rand(g, dt_b, ndb, sb);
    int64_t so[2] = {a.n, b.n};
    harr r = h_new(2, so);
    for (int64_t i = 0; i < a.n; i++)
        for (int64_t j = 0; j < b.n; j++) r.v[i * b.n + j] = a.v[i] * b.v[j];
    double *absum = malloc(sizeof(double) * (size_t)(r.n > 0 ? r.n : 1));
    for (int64_t i = 0; i < r.n; i++) absum[i] = fabs(r.v[i]);
    char s1[64], s2[64], what[200];
    snprintf(what, sizeof what, "outer %s %s (%s) and %s %s (%s)", dtn(dt_a), shape_s(s1, sizeof s1, nda, sa),
             lay_names[la], dtn(dt_b), shape_s(s2, sizeof s2, ndb, sb), lay_names[lb]);
    td_scope_begin();
    td_array *o = td_outer(nda ? make_op(&a, dt_a, la) : from_host(a.v, dt_a, 0, sa),
                           ndb ? make_op(&b, dt_b, lb) : from_host(b.v, dt_b, 0, sb));
    expect_close(o, td_promote_types(dt_a, dt_b), &r, absum, 1, what);
    td_scope_end();
    h_free(&a), h_free(&b), h_free(&r);
    free(absum);
}

Test(outer, flattens_both_operands, .timeout = 60) {
    tt_start(TD_ENGINE_THREADED, 2);
    tt_rng g = {seed_of("outer", 10)};
    for (int dt = TD_F32; dt <= TD_F64; dt++) {
        check_outer(&g, dt, dt, 1, (int64_t[]){5}, 1, (int64_t[]){7}, L_PLAIN, L_PLAIN);
        check_outer(&g, dt, dt, 1, (int64_t[]){5}, 1, (int64_t[]){7}, L_COLSTEP, L_NEG);
        check_outer(&g, dt, dt, 2, (int64_t[]){3, 4}, 3, (int64_t[]){2, 2, 3}, L_TRANS, L_BATCHSTEP); /* copied to flatten */
        check_outer(&g, dt, dt, 2, (int64_t[]){3, 4}, 2, (int64_t[]){2, 3}, L_ROWSTEP, L_PLAIN);
        check_outer(&g, dt, dt, 0, NULL, 1, (int64_t[]){4}, L_PLAIN, L_PLAIN);
        check_outer(&g, dt, dt, 1, (int64_t[]){0}, 1, (int64_t[]){4}, L_PLAIN, L_PLAIN);
        check_outer(&g, dt, dt, 1, (int64_t[]){1500}, 1, (int64_t[]){2000}, L_PLAIN, L_COLSTEP);
    }
    check_outer(&g, TD_F32, TD_F64, 1, (int64_t[]){6}, 1, (int64_t[]){3}, L_PLAIN, L_PLAIN);
    finish();
}

/* ---- bad input ---- */

static void expect_fail(td_status got, td_status want, const char *fn, const char *what) {
    cr_assert_eq(got, want, "%s: %s (%s), expected %s", what, td_status_name(got), td_last_error(), td_status_name(want));
    cr_assert_eq(td_last_status(), want, "%s: td_last_status() is %s", what, td_status_name(td_last_status()));
    cr_assert(tt_has(td_last_error(), fn), "%s: message \"%s\" does not name %s", what, td_last_error(), fn);
}

Test(matmul, bad_input_fails_with_a_status_and_a_message, .timeout = 60) {
    tt_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    td_array *f = td_ones(TD_F32, 2, (int64_t[]){2, 3}, td_cpu(0));
    td_array *g = td_ones(TD_F32, 2, (int64_t[]){4, 5}, td_cpu(0));
    td_array *s = td_ones(TD_F32, 0, NULL, td_cpu(0));
    for (int dt = TD_I32; dt <= TD_U8; dt++) {
        td_array *i = td_ones(dt, 2, (int64_t[]){3, 2}, td_cpu(0));
        td_clear_error();
        cr_assert_null(td_matmul(f, i));
        expect_fail(td_last_status(), TD_EDTYPE, "td_matmul", "f32 @ int");
        cr_assert(tt_has(td_last_error(), td_dtype_name(dt)), "message \"%s\" does not name %s", td_last_error(), td_dtype_name(dt));
        cr_assert_null(td_matmul(i, f));
        expect_fail(td_last_status(), TD_EDTYPE, "td_matmul", "int @ f32");
        cr_assert_null(td_dot(i, i));
        expect_fail(td_last_status(), TD_EDTYPE, "td_dot", "dot of ints");
        cr_assert_null(td_outer(i, f));
        expect_fail(td_last_status(), TD_EDTYPE, "td_outer", "outer of ints");
        td_array *o = td_empty(TD_F32, 2, (int64_t[]){2, 2}, td_cpu(0));
        expect_fail(td_matmul_out(f, i, o), TD_EDTYPE, "td_matmul_out", "matmul_out of ints");
    }
    /* inner dimensions that differ: both shapes named */
    cr_assert_null(td_matmul(f, g));
    expect_fail(td_last_status(), TD_ESHAPE, "td_matmul", "(2, 3) @ (4, 5)");
    cr_assert(tt_has(td_last_error(), "(2, 3)") && tt_has(td_last_error(), "(4, 5)"), "message \"%s\" does not name both shapes",
              td_last_error());
    td_array *v4 = td_ones(TD_F32, 1, (int64_t[]){4}, td_cpu(0));
    cr_assert_null(td_matmul(f, v4));
    expect_fail(td_last_status(), TD_ESHAPE, "td_matmul", "(2, 3) @ (4,)");
    cr_assert(tt_has(td_last_error(), "(2, 3)") && tt_has(td_last_error(), "(4,)"), "message \"%s\"", td_last_error());
    cr_assert_null(td_dot(v4, td_ones(TD_F32, 1, (int64_t[]){5}, td_cpu(0))));
    expect_fail(td_last_status(), TD_ESHAPE, "td_dot", "dot (4,) (5,)");
    /* batch dimensions that do not broadcast */
    cr_assert_null(td_matmul(td_ones(TD_F32, 3, (int64_t[]){2, 2, 3}, td_cpu(0)), td_ones(TD_F32, 3, (int64_t[]){3, 3, 2}, td_cpu(0))));
    expect_fail(td_last_status(), TD_ESHAPE, "td_matmul", "batch 2 vs 3");
    /* 0-d operands */
    cr_assert_null(td_matmul(s, f));
    expect_fail(td_last_status(), TD_ESHAPE, "td_matmul", "0-d @ matrix");
    cr_assert_null(td_matmul(f, s));
    expect_fail(td_last_status(), TD_ESHAPE, "td_matmul", "matrix @ 0-d");
    cr_assert_null(td_dot(s, s));
    expect_fail(td_last_status(), TD_ESHAPE, "td_dot", "dot of 0-d");
    /* td_matmul_out: wrong shape, wrong dtype, NULLs */
    td_array *b = td_ones(TD_F32, 2, (int64_t[]){3, 4}, td_cpu(0));
    expect_fail(td_matmul_out(f, b, td_empty(TD_F32, 2, (int64_t[]){4, 2}, td_cpu(0))), TD_ESHAPE, "td_matmul_out", "out (4, 2)");
    cr_assert(tt_has(td_last_error(), "(4, 2)") && tt_has(td_last_error(), "(2, 4)"), "message \"%s\"", td_last_error());
    expect_fail(td_matmul_out(f, b, td_empty(TD_F32, 3, (int64_t[]){1, 2, 4}, td_cpu(0))), TD_ESHAPE, "td_matmul_out", "out (1, 2, 4)");
    expect_fail(td_matmul_out(f, b, td_empty(TD_F64, 2, (int64_t[]){2, 4}, td_cpu(0))), TD_EDTYPE, "td_matmul_out", "f64 out");
    expect_fail(td_matmul_out(NULL, b, f), TD_EINVAL, "td_matmul_out", "NULL a");
    expect_fail(td_matmul_out(f, NULL, f), TD_EINVAL, "td_matmul_out", "NULL b");
    expect_fail(td_matmul_out(f, b, NULL), TD_EINVAL, "td_matmul_out", "NULL out");
    /* NULL in: NULL out, the previous error kept */
    cr_assert_null(td_matmul(f, g));
    char before[512];
    snprintf(before, sizeof before, "%s", td_last_error());
    cr_assert_null(td_matmul(NULL, f));
    cr_assert_null(td_matmul(f, NULL));
    cr_assert_null(td_dot(NULL, NULL));
    cr_assert_null(td_outer(NULL, f));
    cr_assert_null(td_outer(f, NULL));
    cr_assert_eq(td_last_status(), TD_ESHAPE, "NULL input changed td_last_status() to %s", td_status_name(td_last_status()));
    cr_assert_str_eq(td_last_error(), before, "a NULL input changed the message");
    /* failures pushed nothing: the arrays above are still fine */
    cr_assert_not_null(td_matmul(f, b));
    td_scope_end();
    finish();
}

/* ---- threads ---- */

/* CPU time (clock ticks, user + system) of each thread of this process. */
static int thread_times(long *tid, unsigned long long *ticks, int max) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max) {
        if (e->d_name[0] == '.') continue;
        char path[300], buf[1024];
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t k = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[k] = '\0';
        /* after the ")" that ends the name: field 3 (state) ... 14 (utime), 15 (stime) */
        char *q = strrchr(buf, ')');
        if (!q) continue;
        q += 2;
        for (int field = 3; field < 14 && q; field++) q = strchr(q, ' ') ? strchr(q, ' ') + 1 : NULL;
        unsigned long long ut, st;
        if (!q || sscanf(q, "%llu %llu", &ut, &st) != 2) continue;
        tid[n] = atol(e->d_name);
        ticks[n] = ut + st;
        n++;
    }
    closedir(d);
    return n;
}

Test(matmul, openblas_runs_one_thread_and_only_tide_workers_compute, .timeout = 120) {
    tt_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    int64_t n = tt_quick() ? 512 : 1024;
    td_array *a = td_ones(TD_F32, 2, (int64_t[]){n, n}, td_cpu(0));
    cr_assert_not_null(td_matmul(a, a));
    cr_assert_eq(td_wait_all(), TD_OK);
    cr_assert_eq(openblas_get_num_threads(), 1, "OpenBLAS runs %d threads per call after the first matmul",
                 openblas_get_num_threads());
    long tid0[256], tid1[256];
    unsigned long long t0[256], t1[256];
    int n0 = thread_times(tid0, t0, 256);
    cr_assert_gt(n0, 0, "cannot read /proc/self/task");
    double start = tt_now();
    while (tt_now() - start < 1.0) {
        td_scope_begin();
        for (int i = 0; i < 4; i++) td_matmul(a, a);
        td_scope_end();
        cr_assert_eq(td_wait_all(), TD_OK);
    }
    int n1 = thread_times(tid1, t1, 256);
    int busy = 0;
    for (int i = 0; i < n1; i++) {
        unsigned long long before = 0;
        for (int j = 0; j < n0; j++)
            if (tid0[j] == tid1[i]) before = t0[j];
        if (t1[i] - before >= 10) busy++; /* 0.1 s or more of CPU */
    }
    cr_log_info("%d of %d threads used 0.1 s of CPU or more during 1 s of matmuls", busy, n1);
    cr_assert_leq(busy, 3, "%d threads computed (2 workers and the waiting thread at most)", busy);
    cr_assert_geq(busy, 1);
    td_scope_end();
    finish();
}

/* ---- the core-type message ---- */

static int generic_core_on_avx2(void) {
    const char *core = openblas_get_corename();
    static const char *const good[] = {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids", NULL};
    for (int i = 0; good[i]; i++)
        if (!strcasecmp(core, good[i])) return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

Test(matmul, a_generic_openblas_core_is_reported_once_on_the_first_gemm, .timeout = 60) {
    char path[] = "/tmp/tide-linalg-stderr-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(fd, 2);
        td_config cfg = td_config_default();
        cfg.cpu_workers = 2;
        if (td_init(&cfg) != TD_OK) _exit(3);
        td_scope_begin();
        td_array *a = td_ones(TD_F32, 2, (int64_t[]){8, 8}, td_cpu(0));
        for (int i = 0; i < 5; i++) td_matmul(a, a);
        td_scope_end();
        _exit(td_shutdown() == TD_OK ? 0 : 4);
    }
    int ws;
    cr_assert_eq(waitpid(pid, &ws, 0), pid);
    cr_assert(WIFEXITED(ws) && WEXITSTATUS(ws) == 0, "child failed (status %d)", ws);
    FILE *f = fdopen(fd, "r");
    cr_assert_not_null(f);
    rewind(f);
    char line[1024];
    int lines = 0, named = 0;
    while (fgets(line, sizeof line, f)) {
        if (tt_has(line, "OPENBLAS_CORETYPE")) {
            lines++;
            named = tt_has(line, openblas_get_corename());
        }
    }
    fclose(f);
    unlink(path);
    int want = generic_core_on_avx2();
    cr_log_info("OpenBLAS core %s; %d message line(s)", openblas_get_corename(), lines);
    cr_assert_eq(lines, want, "%d lines about OPENBLAS_CORETYPE, expected %d (core %s)", lines, want,
                 openblas_get_corename());
    if (want) cr_assert(named, "the message does not name the core %s", openblas_get_corename());
}
