/* Linear algebra: matmul (numpy's rules), matmul_out, dot, outer, on
 * OpenBLAS.
 *
 * Shapes.  a (..., M, K) @ b (..., K, N) -> (..., M, N): the leading (batch)
 * dimensions broadcast as numpy's; a 1-D a is a (1, K) matrix and a 1-D b a
 * (K, 1) matrix, and that added dimension is dropped from the result.  Only
 * float32 and float64 are taken; a float32 operand meeting a float64 one is
 * converted (into a temporary) first.
 *
 * Layouts.  An operand whose last two dimensions are a row-major matrix
 * (unit column stride, row stride >= columns) goes to BLAS as is; one whose
 * last two dimensions are a column-major matrix (a transposed view, as
 * td_transpose makes) goes as CblasTrans with its own leading dimension: no
 * copy either way.  Batch dimensions may have any strides (0 where
 * broadcast).  Any other operand (sliced with a step along the columns,
 * negative strides, broadcast inside the matrix) is copied to a contiguous
 * temporary by a copy op pushed before the matmul.  The result must be
 * row-major; an out= array that is not (or that shares memory with an
 * operand) gets the result through a temporary and a copy.
 *
 * Threads.  One place decides threads: tide's workers are the threads.
 * OpenBLAS is set to one thread (once, before the first GEMM, below), so each
 * BLAS call runs on the worker that makes it, and a big GEMM is split into
 * tiles of C, each one cblas call, spread over td_parallel_for; batched
 * matmuls run their matrices in parallel.  Tiles are chosen from the sizes
 * only, and every element of C is computed by exactly one BLAS call over the
 * whole K, so results are bit-identical for any worker count and on the
 * naive engine.
 *
 * Tiles.  A cblas call packs the part of A and the part of B it reads; a
 * tile therefore repeats the packing of the B columns (for a split of M) or
 * the A rows (for a split of N) that other tiles pack too.  Packing one
 * element costs about PACK_COST multiply-adds, so tm x tn tiles of an
 * M x N x K product cost PACK_COST * ((tm - 1) / M + (tn - 1) / N) of the
 * work on top.  A product worth splitting gets two tiles along its larger
 * dimension (the smallest split that uses two workers); it gets more only
 * while that extra stays within SPLIT_BUDGET of the work, always splitting
 * the dimension whose tiles are longer (near-square tiles repeat the least
 * packing for their number).  So on SkylakeX, 256 to 2048 square products
 * get two tiles and 4096 gets six.
 */
#include <cblas.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#include "ops/internal.h"

/* ---- OpenBLAS: threads and the core type, decided once ---- */

static uv_once_t blas_once = UV_ONCE_INIT;

static int core_is(const char *core, const char *const *names) {
    for (int i = 0; names[i]; i++)
        if (!strcasecmp(core, names[i])) return 1;
    return 0;
}

/* OpenBLAS 0.3.21 does not recognise some recent CPUs and falls back to
 * generic kernels several times slower (../shared/BENCHMARKS.md); it reads
 * OPENBLAS_CORETYPE only when it loads, so tide cannot fix it, only say so. */
static void check_core(void) {
#if defined(__x86_64__) || defined(__i386__)
    const char *core = openblas_get_corename();
    if (!core) return;
    /* The cores with AVX2 kernels; anything else on an AVX2 CPU is a fallback. */
    static const char *const avx2_cores[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids", NULL};
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || core_is(core, avx2_cores)) return;
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    const char *want = avx512 ? "SkylakeX" : "Haswell", *feature = avx512 ? "AVX-512" : "AVX2";
    const char *set = getenv("OPENBLAS_CORETYPE");
    fprintf(stderr,
            "tide: OpenBLAS runs its generic '%s' kernels on this CPU, which has %s, so matmul is several times "
            "slower than it could be%s%s%s; set OPENBLAS_CORETYPE=%s in the environment before starting the "
            "program (OpenBLAS reads it only when it loads)\n",
            core, feature, set ? " (OPENBLAS_CORETYPE=" : "", set ? set : "", set ? " did not take)" : "", want);
#endif
}

static void blas_setup(void) {
    /* One place decides threads: tide's workers are the threads.  OpenBLAS's
     * own pool would run beside them and oversubscribe the cores; big GEMMs
     * are tiled over td_parallel_for instead. */
    openblas_set_num_threads(1);
    check_core();
}

/* ---- shapes ---- */

/* The matmul shapes of two operands: M, N, K, the broadcast batch shape and
 * each operand's batch strides (elements, 0 where broadcast), and the
 * result's shape. */
typedef struct {
    int64_t M, N, K;
    int a1, b1; /* the operand was 1-D */
    int nbd;    /* batch dims */
    int64_t bshape[TD_MAX_DIMS], bsa[TD_MAX_DIMS], bsb[TD_MAX_DIMS];
    int ndim;   /* result */
    int64_t shape[TD_MAX_DIMS];
} mm_dims;

static int is_float(int dt) { return dt == TD_F32 || dt == TD_F64; }

static td_status mm_shapes(const char *who, const td_array *a, const td_array *b, mm_dims *d) {
    char s1[160], s2[160];
    memset(d, 0, sizeof *d);
    if (a->ndim == 0 || b->ndim == 0)
        return td__fail(TD_ESHAPE, "%s: shapes %s and %s: %s is 0-d, and matmul needs at least one dimension "
                        "(use td_mul to scale by a 0-d array)", who, td__shape_str(a->ndim, a->shape, s1, sizeof s1),
                        td__shape_str(b->ndim, b->shape, s2, sizeof s2), a->ndim == 0 ? "a" : "b");
    d->a1 = a->ndim == 1;
    d->b1 = b->ndim == 1;
    d->M = d->a1 ? 1 : a->shape[a->ndim - 2];
    d->K = a->shape[a->ndim - 1];
    int64_t kb = d->b1 ? b->shape[0] : b->shape[b->ndim - 2];
    d->N = d->b1 ? 1 : b->shape[b->ndim - 1];
    if (kb != d->K)
        return td__fail(TD_ESHAPE, "%s: shapes %s and %s do not fit: a has %" PRId64 " columns but b has %" PRId64 " rows",
                        who, td__shape_str(a->ndim, a->shape, s1, sizeof s1),
                        td__shape_str(b->ndim, b->shape, s2, sizeof s2), d->K, kb);
    if (d->M > INT_MAX || d->N > INT_MAX || d->K > INT_MAX)
        return td__fail(TD_EINVAL, "%s: shapes %s and %s: a matrix dimension above %d is too large for BLAS", who,
                        td__shape_str(a->ndim, a->shape, s1, sizeof s1),
                        td__shape_str(b->ndim, b->shape, s2, sizeof s2), INT_MAX);
    int na = a->ndim > 2 ? a->ndim - 2 : 0, nb = b->ndim > 2 ? b->ndim - 2 : 0;
    d->nbd = na > nb ? na : nb;
    for (int i = 0; i < d->nbd; i++) {
        int ia = na - d->nbd + i, ib = nb - d->nbd + i;
        int64_t x = ia >= 0 ? a->shape[ia] : 1, y = ib >= 0 ? b->shape[ib] : 1;
        if (x != y && x != 1 && y != 1)
            return td__fail(TD_ESHAPE, "%s: shapes %s and %s: the batch dimensions do not broadcast (%" PRId64 " vs %" PRId64 ")",
                            who, td__shape_str(a->ndim, a->shape, s1, sizeof s1),
                            td__shape_str(b->ndim, b->shape, s2, sizeof s2), x, y);
        d->bshape[i] = x == 1 ? y : x;
        d->bsa[i] = (ia >= 0 && x == d->bshape[i] && x != 1) ? a->strides[ia] : 0;
        d->bsb[i] = (ib >= 0 && y == d->bshape[i] && y != 1) ? b->strides[ib] : 0;
    }
    d->ndim = 0;
    for (int i = 0; i < d->nbd; i++) d->shape[d->ndim++] = d->bshape[i];
    if (!d->a1) d->shape[d->ndim++] = d->M;
    if (!d->b1) d->shape[d->ndim++] = d->N;
    return TD_OK;
}

/* The strides (elements) of an operand's matrix: rows and columns.  A 1-D a
 * is one row, a 1-D b one column. */
static void mat_strides(const td_array *x, int as_row, int64_t *sr, int64_t *sc) {
    if (x->ndim == 1) {
        *sr = as_row ? 0 : x->strides[0];
        *sc = as_row ? x->strides[0] : 0;
    } else {
        *sr = x->strides[x->ndim - 2];
        *sc = x->strides[x->ndim - 1];
    }
}

/* How a rows x cols matrix with element strides (sr, sc) goes to BLAS:
 * 0 row-major (CblasNoTrans), 1 column-major (CblasTrans), -1 neither (it
 * must be copied first); *ld gets the leading dimension.  Sizes of 0 or 1
 * make the matching stride irrelevant. */
static int blas_layout(int64_t rows, int64_t cols, int64_t sr, int64_t sc, int64_t *ld) {
    int64_t mc = cols > 1 ? cols : 1, mr = rows > 1 ? rows : 1;
    if ((cols <= 1 || sc == 1) && (rows <= 1 || sr >= mc)) {
        *ld = rows <= 1 ? mc : sr;
        return *ld <= INT_MAX ? 0 : -1;
    }
    if ((rows <= 1 || sr == 1) && (cols <= 1 || sc >= mr)) {
        *ld = cols <= 1 ? mr : sc;
        return *ld <= INT_MAX ? 1 : -1;
    }
    return -1;
}

static int operand_layout(const td_array *x, int is_a, const mm_dims *d, int64_t *ld) {
    int64_t sr, sc;
    mat_strides(x, is_a, &sr, &sc);
    return is_a ? blas_layout(d->M, d->K, sr, sc, ld) : blas_layout(d->K, d->N, sr, sc, ld);
}

/* Whether the result can be written straight into out: row-major matrices
 * that do not overlap (a broadcast view, with a batch stride of 0, would
 * have tiles of different matrices write the same elements at once). */
static int out_direct(const td_array *out, const mm_dims *d) {
    int64_t sr = 0, sc = 0, ld;
    for (int i = 0; i < d->nbd; i++)
        if (out->shape[i] > 1 && out->strides[i] == 0) return 0;
    int k = out->ndim;
    if (!d->b1) sc = out->strides[--k];
    if (!d->a1) sr = out->strides[--k];
    return blas_layout(d->M, d->N, sr, sc, &ld) == 0;
}

/* ---- the kernel ---- */

enum { KIND_ZERO, KIND_GEMM, KIND_GEMV_N, KIND_GEMV_M, KIND_DOT };
enum { ALIGN = 16 };                      /* tile rows and columns are multiples of this */
#define PACK_COST 25.0                    /* multiply-adds per packed element (measured, SkylakeX sgemm) */
#define SPLIT_BUDGET 0.02                 /* repeated packing allowed beyond the first split */
#define TILE_MIN_MACS 4194304.0           /* 2^22 multiply-adds: tens of microseconds on one core */
#define GEMV_TILE_MACS 262144.0           /* 2^18: a memory-bound tile of about 1 MiB of f32 */

typedef struct {
    int dt, kind;
    size_t es;
    int64_t M, N, K;
    char *a, *b, *c;
    int ta, tb;                           /* CblasTrans for a, b */
    int64_t lda, ldb, ldc;
    int64_t inca, incb, incc;             /* vector strides for gemv and dot */
    int nbd;
    int64_t bshape[TD_MAX_DIMS], bsa[TD_MAX_DIMS], bsb[TD_MAX_DIMS], bsc[TD_MAX_DIMS];
    int64_t nbatch;
    int64_t tm, tn, mb, nbk;              /* tiles: tm x tn of mb x nbk (gemv, zero: tm of mb) */
    int64_t ntiles;
} plan;

static int64_t ceil_div(int64_t x, int64_t y) { return (x + y - 1) / y; }
static int64_t round_up(int64_t x, int64_t m) { return ceil_div(x, m) * m; }

/* Tiles of a rows x 1 output that each hold about `per_tile` units of work
 * (unit_work per row), rows in multiples of ALIGN. */
static int64_t row_tiles(int64_t rows, double unit_work, double per_tile, int64_t *tile_rows) {
    double want = rows * unit_work / per_tile;
    int64_t t = want < 1.0 ? 1 : (want > (double)rows ? rows : (int64_t)want);
    int64_t r = round_up(ceil_div(rows, t), ALIGN);
    if (r > rows) r = rows;
    if (r < 1) r = 1;
    *tile_rows = r;
    return ceil_div(rows, r);
}

/* The GEMM tiles (see "Tiles" at the top). */
static void gemm_tiles(plan *p) {
    double M = (double)p->M, N = (double)p->N, macs = M * N * (double)p->K;
    int64_t tm = 1, tn = 1;
    if (p->nbatch == 1 && macs >= 2.0 * TILE_MIN_MACS) {
        if (p->M >= p->N && p->M >= 2 * ALIGN) tm = 2;
        else if (p->N >= 2 * ALIGN) tn = 2;
    }
    for (;;) {
        /* Split the dimension whose tiles are longer: square tiles repeat
         * the least packing for their number. */
        int split_m = p->M * tn >= p->N * tm;
        int64_t ntm = tm + split_m, ntn = tn + !split_m;
        double extra = PACK_COST * ((double)(ntm - 1) / M + (double)(ntn - 1) / N);
        if (extra > SPLIT_BUDGET || macs / (double)(ntm * ntn) < TILE_MIN_MACS) break;
        if ((split_m ? p->M / ntm : p->N / ntn) < ALIGN) break;
        tm = ntm;
        tn = ntn;
    }
    p->mb = round_up(ceil_div(p->M, tm), ALIGN);
    if (p->mb > p->M) p->mb = p->M;
    p->nbk = round_up(ceil_div(p->N, tn), ALIGN);
    if (p->nbk > p->N) p->nbk = p->N;
    p->tm = ceil_div(p->M, p->mb);
    p->tn = ceil_div(p->N, p->nbk);
    p->ntiles = p->tm * p->tn;
}

/* Folds trailing batch dimensions along which b is broadcast into the rows
 * of a and c, when a and c are row-major and their batch strides continue
 * their rows: (B, S, K) @ (K, N) becomes one (B*S, K) @ (K, N) product. */
static void fold_batch(plan *p, int64_t *asr, int64_t *csr) {
    while (p->nbd > 0 && p->ta == 0) {
        int d = p->nbd - 1;
        if (p->bsb[d] != 0) break;
        int64_t n = p->bshape[d], ra, rc;
        if (p->M == 1) {
            ra = p->bsa[d];
            rc = p->bsc[d];
        } else {
            if (p->bsa[d] != p->M * *asr || p->bsc[d] != p->M * *csr) break;
            ra = *asr;
            rc = *csr;
        }
        if (p->M * n > INT_MAX) break;
        int64_t lda, ldc;
        if (blas_layout(p->M * n, p->K, ra, 1, &lda) != 0 || blas_layout(p->M * n, p->N, rc, 1, &ldc) != 0) break;
        p->M *= n;
        *asr = ra;
        *csr = rc;
        p->lda = lda;
        p->ldc = ldc;
        p->nbd--;
    }
}

/* The plan of a call whose operands the wrapper made BLAS-ready; TD_EFAILED
 * if they are not (a bug). */
static td_status make_plan(const td__call *c, plan *p) {
    const td_array *a = c->in[0], *b = c->in[1], *out = c->out;
    mm_dims d;
    if (mm_shapes("matmul", a, b, &d) != TD_OK) return TD_EFAILED;
    memset(p, 0, sizeof *p);
    p->dt = out->dtype;
    p->es = td_dtype_size(p->dt);
    p->M = d.M;
    p->N = d.N;
    p->K = d.K;
    p->a = td__array_ptr(a);
    p->b = td__array_ptr(b);
    p->c = td__array_ptr(out);
    int64_t asr, asc, bsr, bsc, csr = 0, csc = 0;
    mat_strides(a, 1, &asr, &asc);
    mat_strides(b, 0, &bsr, &bsc);
    int k = out->ndim;
    if (!d.b1) csc = out->strides[--k];
    if (!d.a1) csr = out->strides[--k];
    p->ta = blas_layout(p->M, p->K, asr, asc, &p->lda);
    p->tb = blas_layout(p->K, p->N, bsr, bsc, &p->ldb);
    if (p->ta < 0 || p->tb < 0 || blas_layout(p->M, p->N, csr, csc, &p->ldc) != 0) return TD_EFAILED;
    /* Batch dims of size 1 say nothing; drop them. */
    p->nbatch = 1;
    for (int i = 0; i < d.nbd; i++) {
        if (d.bshape[i] == 1) continue;
        p->bshape[p->nbd] = d.bshape[i];
        p->bsa[p->nbd] = d.bsa[i];
        p->bsb[p->nbd] = d.bsb[i];
        p->bsc[p->nbd] = out->strides[i];
        p->nbd++;
        p->nbatch *= d.bshape[i];
    }
    if (p->nbatch == 0 || p->M == 0 || p->N == 0) return TD_OK; /* nothing to compute */
    if (p->K > 0 && p->N > 1) {
        fold_batch(p, &asr, &csr);
        p->nbatch = 1;
        for (int i = 0; i < p->nbd; i++) p->nbatch *= p->bshape[i];
    }
    /* Vector strides, for gemv and dot. */
    p->inca = p->ta ? p->lda : 1;                 /* along a's row (a is 1 x K) */
    if (p->K <= 1) p->inca = 1;
    p->incb = p->tb ? 1 : p->ldb;                 /* along b's column (b is K x 1) */
    if (p->K <= 1) p->incb = 1;
    p->incc = p->N == 1 ? (p->M > 1 ? p->ldc : 1) : 1;
    if (p->K == 0) {
        p->kind = KIND_ZERO;
        p->tm = row_tiles(p->M, (double)p->N, GEMV_TILE_MACS, &p->mb);
        p->ntiles = p->tm;
    } else if (p->M > 1 && p->N > 1) {
        p->kind = KIND_GEMM;
        gemm_tiles(p);
    } else if (p->M > 1) {
        p->kind = KIND_GEMV_N;
        p->tm = row_tiles(p->M, (double)p->K, GEMV_TILE_MACS, &p->mb);
        p->ntiles = p->tm;
    } else if (p->N > 1) {
        p->kind = KIND_GEMV_M;
        p->tm = row_tiles(p->N, (double)p->K, GEMV_TILE_MACS, &p->mb);
        p->ntiles = p->tm;
    } else {
        p->kind = KIND_DOT;
        p->ntiles = 1;
    }
    return TD_OK;
}

#define TR(t) ((t) ? CblasTrans : CblasNoTrans)

/* C[tile] = A B for one tile of one matrix. */
static void run_tile(const plan *p, const char *A, const char *B, char *C, int64_t tile) {
    size_t es = p->es;
    int f32 = p->dt == TD_F32;
    switch (p->kind) {
    case KIND_ZERO: {
        int64_t m0 = tile * p->mb, m1 = m0 + p->mb < p->M ? m0 + p->mb : p->M;
        for (int64_t m = m0; m < m1; m++) memset(C + (size_t)(m * p->ldc) * es, 0, (size_t)p->N * es);
        break;
    }
    case KIND_GEMM: {
        int64_t i = tile / p->tn, j = tile % p->tn;
        int64_t m0 = i * p->mb, n0 = j * p->nbk;
        int m = (int)((m0 + p->mb < p->M ? p->mb : p->M - m0));
        int n = (int)((n0 + p->nbk < p->N ? p->nbk : p->N - n0));
        const char *Ap = A + (size_t)(p->ta ? m0 : m0 * p->lda) * es;
        const char *Bp = B + (size_t)(p->tb ? n0 * p->ldb : n0) * es;
        char *Cp = C + (size_t)(m0 * p->ldc + n0) * es;
        if (f32)
            cblas_sgemm(CblasRowMajor, TR(p->ta), TR(p->tb), m, n, (int)p->K, 1.0f, (const float *)Ap, (int)p->lda,
                        (const float *)Bp, (int)p->ldb, 0.0f, (float *)Cp, (int)p->ldc);
        else
            cblas_dgemm(CblasRowMajor, TR(p->ta), TR(p->tb), m, n, (int)p->K, 1.0, (const double *)Ap, (int)p->lda,
                        (const double *)Bp, (int)p->ldb, 0.0, (double *)Cp, (int)p->ldc);
        break;
    }
    case KIND_GEMV_N: { /* c (M) = A (M x K) b (K) */
        int64_t m0 = tile * p->mb;
        int m = (int)(m0 + p->mb < p->M ? p->mb : p->M - m0), K = (int)p->K;
        const char *Ap = A + (size_t)(p->ta ? m0 : m0 * p->lda) * es;
        char *Cp = C + (size_t)(m0 * p->incc) * es;
        /* A stored column-major is A^T stored row-major: (K x M) with lda. */
        int rows = p->ta ? K : m, cols = p->ta ? m : K;
        if (f32)
            cblas_sgemv(CblasRowMajor, TR(p->ta), rows, cols, 1.0f, (const float *)Ap, (int)p->lda, (const float *)B,
                        (int)p->incb, 0.0f, (float *)Cp, (int)p->incc);
        else
            cblas_dgemv(CblasRowMajor, TR(p->ta), rows, cols, 1.0, (const double *)Ap, (int)p->lda, (const double *)B,
                        (int)p->incb, 0.0, (double *)Cp, (int)p->incc);
        break;
    }
    case KIND_GEMV_M: { /* c (N) = B^T (N x K) a (K) */
        int64_t n0 = tile * p->mb;
        int n = (int)(n0 + p->mb < p->N ? p->mb : p->N - n0), K = (int)p->K;
        const char *Bp = B + (size_t)(p->tb ? n0 * p->ldb : n0) * es;
        char *Cp = C + (size_t)n0 * es;
        /* B row-major (K x N): y = B^T a; B column-major is (N x K) row-major: y = B a. */
        int rows = p->tb ? n : K, cols = p->tb ? K : n;
        if (f32)
            cblas_sgemv(CblasRowMajor, TR(!p->tb), rows, cols, 1.0f, (const float *)Bp, (int)p->ldb, (const float *)A,
                        (int)p->inca, 0.0f, (float *)Cp, 1);
        else
            cblas_dgemv(CblasRowMajor, TR(!p->tb), rows, cols, 1.0, (const double *)Bp, (int)p->ldb,
                        (const double *)A, (int)p->inca, 0.0, (double *)Cp, 1);
        break;
    }
    default: /* KIND_DOT */
        if (f32) *(float *)C = cblas_sdot((int)p->K, (const float *)A, (int)p->inca, (const float *)B, (int)p->incb);
        else *(double *)C = cblas_ddot((int)p->K, (const double *)A, (int)p->inca, (const double *)B, (int)p->incb);
        break;
    }
}

/* Tasks [t0, t1): task t is tile t % ntiles of matrix t / ntiles. */
static void run_tasks(void *arg, int64_t t0, int64_t t1) {
    const plan *p = arg;
    for (int64_t t = t0; t < t1; t++) {
        int64_t bi = t / p->ntiles, oa = 0, ob = 0, oc = 0;
        for (int d = p->nbd - 1; d >= 0; d--) {
            int64_t i = bi % p->bshape[d];
            bi /= p->bshape[d];
            oa += i * p->bsa[d];
            ob += i * p->bsb[d];
            oc += i * p->bsc[d];
        }
        int64_t es = (int64_t)p->es;
        run_tile(p, p->a + oa * es, p->b + ob * es, p->c + oc * es, t % p->ntiles);
    }
}

static td_status matmul_kernel(const td__call *c, const td_exec *ex) {
    uv_once(&blas_once, blas_setup);
    plan p;
    if (make_plan(c, &p) != TD_OK) {
        td_exec_set_error(ex, "%s: an operand reached the kernel in a layout BLAS cannot take", c->desc->api);
        return TD_EFAILED;
    }
    if (p.M == 0 || p.N == 0 || p.nbatch == 0) return TD_OK;
    int64_t ntasks = p.nbatch * p.ntiles;
    /* Work per task, to group small tasks into chunks of a useful size. */
    double work = p.kind == KIND_ZERO ? (double)p.M * (double)p.N : (double)p.M * (double)p.N * (double)p.K;
    double per_task = work / (double)p.ntiles, min_chunk = p.kind == KIND_GEMM ? TILE_MIN_MACS : GEMV_TILE_MACS;
    int64_t grain = per_task >= min_chunk ? 1 : (int64_t)(min_chunk / (per_task > 1.0 ? per_task : 1.0));
    if (grain < 1) grain = 1;
    return td_parallel_for(ex, ntasks, grain, run_tasks, &p);
}

static td_status matmul_infer(const td__call *c, int *dtype, int *ndim, int64_t *shape) {
    mm_dims d;
    if (mm_shapes(c->desc->api, c->in[0], c->in[1], &d) != TD_OK) return td_last_status();
    *dtype = c->in[0]->dtype;
    *ndim = d.ndim;
    memcpy(shape, d.shape, sizeof(int64_t) * (size_t)d.ndim);
    return TD_OK;
}

/* ---- gradients (autograd) ----
 * C = A @ B: dA = dC @ B^T, dB = A^T @ dC, with 1-D operands made matrices
 * as the forward does; gradients over broadcast batch dimensions come back
 * with the batch shape and backward sums them to the operand's shape. */
static td_array *swap_last(td_array *x) {
    int perm[TD_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) perm[i] = i;
    perm[x->ndim - 1] = x->ndim - 2;
    perm[x->ndim - 2] = x->ndim - 1;
    return td_transpose(x, perm);
}

static td_status grad_matmul(td__gctx *g) {
    td_array *a = g->in[0], *b = g->in[1], *go = g->gout[0];
    int a1 = a->ndim == 1, b1 = b->ndim == 1;
    td_array *A = a1 ? td_expand_dims(a, 0) : a, *B = b1 ? td_expand_dims(b, 1) : b, *G = go;
    if (a1 && b1) G = td_reshape(go, 2, (int64_t[]){1, 1});
    else if (a1) G = td_expand_dims(go, -2);
    else if (b1) G = td_expand_dims(go, -1);
    if (!A || !B || !G) return td_last_status();
    if (g->need[0]) {
        td_array *ga = td_matmul(G, swap_last(B));
        if (ga && a1) ga = td_squeeze(ga, -2);
        if (!(g->gin[0] = ga)) return td_last_status();
    }
    if (g->need[1]) {
        td_array *gb = td_matmul(swap_last(A), G);
        if (gb && b1) gb = td_squeeze(gb, -1);
        if (!(g->gin[1] = gb)) return td_last_status();
    }
    return TD_OK;
}

/* out = flat(a) (n) outer flat(b) (m): da = dout @ flat(b), db = flat(a) @ dout. */
static td_status grad_outer(td__gctx *g) {
    td_array *a = g->in[0], *b = g->in[1], *go = g->gout[0];
    int64_t na = td_numel(a), nb = td_numel(b);
    const td__meta *ma = &g->in_meta[0], *mb = &g->in_meta[1];
    if (g->need[0] && !(g->gin[0] = td_reshape(td_matmul(go, td_reshape(b, 1, &nb)), ma->ndim, ma->shape)))
        return td_last_status();
    if (g->need[1] && !(g->gin[1] = td_reshape(td_matmul(td_reshape(a, 1, &na), go), mb->ndim, mb->shape)))
        return td_last_status();
    return TD_OK;
}

static const td__opdesc desc_matmul = {.name = "matmul", .api = "td_matmul", .n_in = 2, .infer = matmul_infer,
                                       .kernel = {matmul_kernel, NULL}, .grad = grad_matmul, .saves = TD__SAVE_IN};
static const td__opdesc desc_matmul_out = {.name = "matmul", .api = "td_matmul_out", .n_in = 2,
                                           .infer = matmul_infer, .kernel = {matmul_kernel, NULL}};
static const td__opdesc desc_dot = {.name = "dot", .api = "td_dot", .n_in = 2, .infer = matmul_infer,
                                    .kernel = {matmul_kernel, NULL}, .grad = grad_matmul, .saves = TD__SAVE_IN};
static const td__opdesc desc_outer = {.name = "outer", .api = "td_outer", .n_in = 2, .infer = matmul_infer,
                                      .kernel = {matmul_kernel, NULL}, .grad = grad_outer, .saves = TD__SAVE_IN};

/* ---- public wrappers ---- */

/* A private contiguous copy of x in dtype dt (in no scope), or NULL. */
static td_array *private_copy(td_array *x, int dt, const char *who) {
    td_array *o = td__array_new(dt, x->ndim, x->shape, x->dev, who);
    if (!o) return NULL;
    td__ew_attrs at = {.code = TD__EW_COPY, .cdt = dt};
    if (td__invoke_out(&td__op_copy, &x, 1, &at, sizeof at, o, 1) != TD_OK) {
        td__array_unref(o);
        return NULL;
    }
    return o;
}

/* Checks the operands and makes them BLAS-ready: in[i] is the operand
 * itself (retained) or a private copy, converted to the common float dtype
 * *dt.  The caller unrefs in[0..1]. */
static td_status prepare(const char *who, td_array *a, td_array *b, mm_dims *d, int *dt, td_array *in[2]) {
    in[0] = in[1] = NULL;
    if (!is_float(a->dtype) || !is_float(b->dtype)) {
        const td_array *bad = is_float(a->dtype) ? b : a;
        return td__fail(TD_EDTYPE, "%s: %s is %s; matmul takes float32 and float64 only (convert with td_astype)", who,
                        bad == a ? "a" : "b", td_dtype_name(bad->dtype));
    }
    if (mm_shapes(who, a, b, d) != TD_OK) return td_last_status();
    *dt = td_promote_types(a->dtype, b->dtype);
    td_array *ops[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        int64_t ld;
        if (ops[i]->dtype == *dt && operand_layout(ops[i], i == 0, d, &ld) >= 0) in[i] = td_retain(ops[i]);
        else in[i] = private_copy(ops[i], *dt, who);
        if (!in[i]) {
            td__array_unref(in[0]);
            in[0] = NULL;
            return td_last_status();
        }
    }
    return TD_OK;
}

static td_array *matmul_new(const td__opdesc *desc, td_array *a, td_array *b) {
    mm_dims d;
    int dt = TD_F32;
    td_array *in[2];
    if (prepare(desc->api, a, b, &d, &dt, in) != TD_OK) return NULL;
    td_array *r = td__invoke(desc, in, 2, NULL, 0);
    td__array_unref(in[0]);
    td__array_unref(in[1]);
    return r;
}

/* matmul, dot and outer record with their own operands (the copies made
 * for BLAS are not part of the graph). */
td_array *td_matmul(td_array *a, td_array *b) {
    if (!a || !b) return NULL;
    td_array *in[2] = {a, b};
    int rec = td__rec_begin(in, 2);
    return td__rec_end(rec, &desc_matmul, in, 2, NULL, 0, matmul_new(&desc_matmul, a, b));
}

td_array *td_dot(td_array *a, td_array *b) {
    if (!a || !b) return NULL;
    td_array *in[2] = {a, b};
    int rec = td__rec_begin(in, 2);
    return td__rec_end(rec, &desc_dot, in, 2, NULL, 0, matmul_new(&desc_dot, a, b));
}

td_status td_matmul_out(td_array *a, td_array *b, td_array *out) {
    const char *who = "td_matmul_out";
    if (!a || !b || !out) return td__fail(TD_EINVAL, "%s: %s is NULL", who, !a ? "a" : !b ? "b" : "out");
    mm_dims d;
    int dt = TD_F32;
    td_array *in[2];
    td_status st = prepare(who, a, b, &d, &dt, in);
    if (st != TD_OK) return st;
    int same = out->ndim == d.ndim;
    for (int i = 0; same && i < d.ndim; i++) same = out->shape[i] == d.shape[i];
    if (!same || out->dtype != dt) {
        char s1[160], s2[160];
        td__array_unref(in[0]);
        td__array_unref(in[1]);
        if (!same)
            return td__fail(TD_ESHAPE, "%s: out has shape %s but a @ b has shape %s", who,
                            td__shape_str(out->ndim, out->shape, s1, sizeof s1), td__shape_str(d.ndim, d.shape, s2, sizeof s2));
        return td__fail(TD_EDTYPE, "%s: out is %s but a @ b is %s (out must have the result's dtype)", who,
                        td_dtype_name(out->dtype), td_dtype_name(dt));
    }
    /* BLAS writes C in place while it reads A and B: an out that is not a
     * row-major matrix, or that shares memory with an operand, gets the
     * result through a temporary. */
    if (out_direct(out, &d) && out->st != a->st && out->st != b->st) {
        st = td__invoke_out(&desc_matmul_out, in, 2, NULL, 0, out, 0);
    } else {
        td_array *tmp = td__array_new(dt, out->ndim, out->shape, out->dev, who);
        st = tmp ? td__invoke_out(&desc_matmul_out, in, 2, NULL, 0, tmp, 0) : td_last_status();
        if (st == TD_OK) {
            td__ew_attrs at = {.code = TD__EW_COPY, .cdt = dt};
            st = td__invoke_out(&td__op_copy, &tmp, 1, &at, sizeof at, out, 1);
        }
        td__array_unref(tmp);
    }
    td__array_unref(in[0]);
    td__array_unref(in[1]);
    return st;
}

/* x flattened to n elements, as an internal (n, 1) or (1, n) view (a copy
 * when x's layout has no flat view). */
static td_array *flat_matrix(td_array *x, int as_column, const char *who) {
    int64_t n = td_numel(x), st1;
    td_array *base = NULL;
    int64_t s[1];
    if (x->ndim == 0) st1 = 1;
    else if (td__reshape_strides(x, 1, &n, s)) st1 = s[0];
    else {
        base = private_copy(x, x->dtype, who);
        if (!base) return NULL;
        st1 = 1;
    }
    const td_array *src = base ? base : x;
    int64_t shape[2] = {as_column ? n : 1, as_column ? 1 : n};
    int64_t strides[2] = {as_column ? st1 : n, as_column ? 1 : st1};
    td_array *v = td__array_wrap(src->st, src->dtype, 2, shape, strides, src->offset);
    td__array_unref(base);
    return v;
}

static td_array *outer_impl(td_array *a, td_array *b) {
    if (!is_float(a->dtype) || !is_float(b->dtype)) {
        const td_array *bad = is_float(a->dtype) ? b : a;
        td__fail(TD_EDTYPE, "td_outer: %s is %s; outer takes float32 and float64 only (convert with td_astype)",
                 bad == a ? "a" : "b", td_dtype_name(bad->dtype));
        return NULL;
    }
    if (td_numel(a) > INT_MAX || td_numel(b) > INT_MAX) {
        td__fail(TD_EINVAL, "td_outer: %" PRId64 " x %" PRId64 " elements: a dimension above %d is too large for BLAS",
                 td_numel(a), td_numel(b), INT_MAX);
        return NULL;
    }
    td_array *x = flat_matrix(a, 1, "td_outer");
    td_array *y = x ? flat_matrix(b, 0, "td_outer") : NULL;
    td_array *r = y ? matmul_new(&desc_outer, x, y) : NULL;
    td__array_unref(x);
    td__array_unref(y);
    return r;
}

td_array *td_outer(td_array *a, td_array *b) {
    if (!a || !b) return NULL;
    td_array *in[2] = {a, b};
    int rec = td__rec_begin(in, 2);
    return td__rec_end(rec, &desc_outer, in, 2, NULL, 0, outer_impl(a, b));
}
