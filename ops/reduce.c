/* Reductions (sum, mean, max, min, prod, argmax, argmin, logsumexp,
 * variance) along one axis or every axis, and softmax / log_softmax.
 *
 * The problem.  The input's dimensions are split into kept dims K (one output
 * per position) and reduced dims R (the elements each output combines).
 * Size-1 dims are dropped; K is sorted by the input's strides (outputs can be
 * visited in any order: each output's value depends only on its own
 * elements) and merged where contiguous.  R keeps C order, which argmax over
 * every axis needs for its flat index; the other reductions over every axis
 * visit R in memory order instead.  M outputs, L elements each.
 *
 * Numerics.  Elements are taken in blocks of 256 consecutive positions of R
 * (aligned to multiples of 256).  Inside a block, sums and products go into 8
 * lanes (element i into lane i % 8) combined as a balanced tree; the block
 * results are then combined pairwise by a binary-counter cascade (block 2k
 * with 2k+1, those pairs with each other, ...), the leftover levels folded
 * from the smallest up.  A float32 sum of n elements therefore has an error
 * bound of about (32 + log2(n / 256)) ulps per element rather than n ulps, as
 * numpy's pairwise summation.  Integer sums and products wrap (computed in
 * uint64); max and min give NaN (the quiet NaN of <math.h>, whatever the
 * input's payload) when any element is NaN, and use 8 lanes too (SSE2 max/min
 * on contiguous floats); argmax/argmin give the first index of the extreme
 * value, a NaN counting as the extreme (numpy).  Two-pass ops
 * subtract a per-output shift first: the mean for variance, the maximum for
 * logsumexp and softmax (a non-finite maximum counts as 0, as scipy).
 *
 * Strategies, results identical.  When the reduced axis has a larger stride
 * than the innermost kept dim (axis 0 of a C-contiguous matrix), outputs are
 * computed in tiles of up to 64 side by side ("columns": one reduced row at a
 * time updates 64 accumulators, which vectorises); otherwise each output
 * walks its own elements ("rows").  Both follow exactly the block, lane and
 * cascade rules above, so a result is the same bit for bit whichever is used,
 * and so whatever the layout of the input.
 *
 * Parallelism, results identical.  With many outputs, groups of them (sized
 * from M and L only) run as items of td_parallel_for.  With fewer than 64
 * outputs over a long axis, the axis is cut into chunks of 65536 elements (256
 * blocks): each item computes every output's partial over one chunk, and the
 * partials are then combined in chunk order by the same cascade, which gives
 * exactly the tree a single pass would have built.  Nothing depends on the
 * number of workers, on which worker ran what, or on the engine.
 */
#include <inttypes.h>
#include <math.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <stdlib.h>
#include <string.h>

#include "ops/internal.h"

enum {
    BLK = 256,               /* elements per block */
    LANES = 8,               /* accumulators inside a block */
    WMAX = 64,               /* outputs per column tile */
    CHUNK = 256 * BLK,       /* elements per chunk of a long axis (a power-of-two number of blocks) */
    GRAIN = 32768,           /* elements of work per parallel item, at least */
    FEW_OUTPUTS = 64,        /* below this many outputs a long axis is chunked */
    MAX_LEVELS = 64,         /* cascade levels: enough for 2^64 blocks */
};

/* Public ops. */
enum { RK_SUM, RK_MEAN, RK_MAX, RK_MIN, RK_PROD, RK_ARGMAX, RK_ARGMIN, RK_LSE, RK_VAR, RK_SOFTMAX, RK_LOGSOFTMAX };
/* What one pass accumulates (lane ops first). */
enum { OP_SUM, OP_PROD, OP_EXPSUM, OP_SQSUM, OP_MAX, OP_MIN, OP_ARGMAX, OP_ARGMIN };
/* Where a pass's per-output results go. */
enum { SINK_OUT, SINK_SHIFT_MEAN, SINK_SHIFT_MAX, SINK_SUM2, SINK_SUM2_LOG };

static int is_lane_op(int op) { return op <= OP_SQSUM; }

typedef struct {
    int rk;
    int axis; /* as given: TD_ALL_AXES or an axis, possibly negative */
    int keepdims;
} red_attrs;

/* ---- per compute type: the block, column, combine and softmax loops ----
 * Compute types are float (f32 inputs), double (f64 inputs, and integers for
 * mean, variance, logsumexp and softmax) and int64 (integers for sum, prod,
 * max, min, argmax, argmin).  Integer inputs are converted to their compute
 * type in blocks; float inputs are read in place. */
typedef struct {
    /* n (1..BLK) elements at p with stride s (elements) into one state *v, *ix
     * (the index relative to p[0]); sh: the shift of EXPSUM/SQSUM. */
    void (*blk)(int op, const void *p, int64_t s, int64_t n, const void *sh, void *v, int64_t *ix);
    /* Column form of blk: begin a block for w outputs; add row r (w elements
     * at x with stride s) at lane `lane` (first: the block's first row); end
     * the block into w states. */
    void (*col_begin)(int op, void *acc, int64_t w);
    void (*col_step)(int op, int first, int lane, void *acc, int64_t *aix, const void *x, int64_t s, int64_t w,
                     const void *sh, int64_t r);
    void (*col_end)(int op, const void *acc, const int64_t *aix, int64_t w, void *v, int64_t *ix);
    /* b[j] = a[j] (earlier elements) combined with b[j] (later ones). */
    void (*comb)(int op, const void *av, const int64_t *ai, void *bv, int64_t *bi, int64_t w);
    /* The result of no elements. */
    void (*ident)(int op, void *v, int64_t *ix, int64_t w);
    /* y = softmax (or log_softmax) of n elements: exp(x - sh) / sm, or
     * x - sh - sm (sm holds log(sum) then); strides in elements. */
    void (*softmax)(int lg, const void *x, int64_t xs, int64_t n, const void *sh, int64_t shs, const void *sm,
                    int64_t sms, void *y, int64_t ys);
} tfns;

#define FADD(a, b) ((a) + (b))
#define FMUL(a, b) ((a) * (b))
#define IADD(a, b) ((int64_t)((uint64_t)(a) + (uint64_t)(b)))
#define IMUL(a, b) ((int64_t)((uint64_t)(a) * (uint64_t)(b)))
/* Whether x replaces m in a max (min): larger (smaller), or NaN. */
#define GT_NAN(x, m) (((x) > (m)) | ((x) != (x)))
#define LT_NAN(x, m) (((x) < (m)) | ((x) != (x)))
/* Lanes of max and min: x replaces m when larger (smaller); NaNs are
 * tracked apart and give a NaN block (the same rule as SSE's maxps, so the
 * vector loops below and these scalar ones agree bit for bit). */
#define MAXL(m, x) ((x) > (m) ? (x) : (m))
#define MINL(m, x) ((x) < (m) ? (x) : (m))
#define TREE(C, l) C(C(C((l)[0], (l)[1]), C((l)[2], (l)[3])), C(C((l)[4], (l)[5]), C((l)[6], (l)[7])))

/* Lane accumulation over a block (row form); F is an expression in x. */
#define ROW_LANES(C, F)                                                                                       \
    do {                                                                                                      \
        int64_t i = 0;                                                                                        \
        if (s == 1) {                                                                                         \
            for (; i + LANES <= n; i += LANES)                                                                \
                for (int k = 0; k < LANES; k++) {                                                             \
                    elem x = p[i + k];                                                                        \
                    l[k] = C(l[k], F);                                                                        \
                }                                                                                             \
        } else {                                                                                              \
            for (; i + LANES <= n; i += LANES)                                                                \
                for (int k = 0; k < LANES; k++) {                                                             \
                    elem x = p[(i + k) * s];                                                                  \
                    l[k] = C(l[k], F);                                                                        \
                }                                                                                             \
        }                                                                                                     \
        for (; i < n; i++) {                                                                                  \
            elem x = p[i * s];                                                                                \
            l[i & (LANES - 1)] = C(l[i & (LANES - 1)], F);                                                    \
        }                                                                                                     \
    } while (0)

/* Column form: one row of w elements into lane l (a[j] for output j). */
#define COL_LANES(C, F)                                                                                       \
    do {                                                                                                      \
        if (s == 1)                                                                                           \
            for (int64_t j = 0; j < w; j++) {                                                                 \
                elem x = px[j], sh = psh ? psh[j] : 0;                                                        \
                (void)sh;                                                                                     \
                l[j] = C(l[j], F);                                                                            \
            }                                                                                                 \
        else                                                                                                  \
            for (int64_t j = 0; j < w; j++) {                                                                 \
                elem x = px[j * s], sh = psh ? psh[j] : 0;                                                    \
                (void)sh;                                                                                     \
                l[j] = C(l[j], F);                                                                            \
            }                                                                                                 \
    } while (0)

/* Max or min lanes over the first multiple of 8 of n contiguous values,
 * with SSE2 where there is SSE2: the same results as the scalar lanes
 * (maxps(x, m) is x > m ? x : m; NaNs are flagged apart).  Returns how many
 * values it took (0: none, the caller does them all). */
#if defined(__SSE2__)
static int64_t minmax_lanes_f32(int mx, const float *p, int64_t n, float *l, int *nan) {
    __m128 a = _mm_loadu_ps(l), b = _mm_loadu_ps(l + 4), fa = _mm_setzero_ps(), fb = fa;
    int64_t i = 0;
    if (mx)
        for (; i + LANES <= n; i += LANES) {
            __m128 x = _mm_loadu_ps(p + i), y = _mm_loadu_ps(p + i + 4);
            a = _mm_max_ps(x, a), b = _mm_max_ps(y, b);
            fa = _mm_or_ps(fa, _mm_cmpunord_ps(x, x)), fb = _mm_or_ps(fb, _mm_cmpunord_ps(y, y));
        }
    else
        for (; i + LANES <= n; i += LANES) {
            __m128 x = _mm_loadu_ps(p + i), y = _mm_loadu_ps(p + i + 4);
            a = _mm_min_ps(x, a), b = _mm_min_ps(y, b);
            fa = _mm_or_ps(fa, _mm_cmpunord_ps(x, x)), fb = _mm_or_ps(fb, _mm_cmpunord_ps(y, y));
        }
    _mm_storeu_ps(l, a), _mm_storeu_ps(l + 4, b);
    *nan |= _mm_movemask_ps(_mm_or_ps(fa, fb)) != 0;
    return i;
}
static int64_t minmax_lanes_f64(int mx, const double *p, int64_t n, double *l, int *nan) {
    __m128d a[4], f = _mm_setzero_pd();
    for (int k = 0; k < 4; k++) a[k] = _mm_loadu_pd(l + 2 * k);
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int k = 0; k < 4; k++) {
            __m128d x = _mm_loadu_pd(p + i + 2 * k);
            a[k] = mx ? _mm_max_pd(x, a[k]) : _mm_min_pd(x, a[k]);
            f = _mm_or_pd(f, _mm_cmpunord_pd(x, x));
        }
    for (int k = 0; k < 4; k++) _mm_storeu_pd(l + 2 * k, a[k]);
    *nan |= _mm_movemask_pd(f) != 0;
    return i;
}
#else
static int64_t minmax_lanes_f32(int mx, const float *p, int64_t n, float *l, int *nan) {
    (void)mx, (void)p, (void)n, (void)l, (void)nan;
    return 0;
}
static int64_t minmax_lanes_f64(int mx, const double *p, int64_t n, double *l, int *nan) {
    (void)mx, (void)p, (void)n, (void)l, (void)nan;
    return 0;
}
#endif
static int64_t minmax_lanes_i64(int mx, const int64_t *p, int64_t n, int64_t *l, int *nan) {
    (void)mx, (void)p, (void)n, (void)l, (void)nan;
    return 0;
}

#define TYPE_FNS(T, SUF, ADD, MUL, EXPF, LOGF, IS_FLOAT, NANV)                                                \
    static void blk_##SUF(int op, const void *vp, int64_t s, int64_t n, const void *shp, void *vo,            \
                          int64_t *io) {                                                                      \
        typedef T elem;                                                                                       \
        const elem *p = (const elem *)vp;                                                                     \
        elem *v = (elem *)vo;                                                                                 \
        if (!(IS_FLOAT) && (op == OP_EXPSUM || op == OP_SQSUM)) op = OP_SUM; /* not used for integers */      \
        *io = 0;                                                                                              \
        if (is_lane_op(op)) {                                                                                 \
            elem l[LANES];                                                                                    \
            for (int k = 0; k < LANES; k++) l[k] = op == OP_PROD ? (elem)1 : (elem)0;                         \
            const elem sh = shp ? *(const elem *)shp : (elem)0;                                               \
            switch (op) {                                                                                     \
            case OP_SUM: ROW_LANES(ADD, x); *v = TREE(ADD, l); break;                                         \
            case OP_PROD: ROW_LANES(MUL, x); *v = TREE(MUL, l); break;                                        \
            case OP_EXPSUM: ROW_LANES(ADD, EXPF(x - sh)); *v = TREE(ADD, l); break;                           \
            default: ROW_LANES(ADD, (x - sh) * (x - sh)); *v = TREE(ADD, l); break;                           \
            }                                                                                                 \
            return;                                                                                           \
        }                                                                                                     \
        if (op == OP_MAX || op == OP_MIN) {                                                                   \
            elem l[LANES];                                                                                    \
            for (int k = 0; k < LANES; k++) l[k] = p[0];                                                      \
            int nan = 0;                                                                                      \
            int64_t i = s == 1 ? minmax_lanes_##SUF(op == OP_MAX, p, n, l, &nan) : 0;                         \
            for (; i < n; i++) {                                                                              \
                elem x = p[i * s];                                                                            \
                int k = (int)(i & (LANES - 1));                                                               \
                l[k] = op == OP_MAX ? MAXL(l[k], x) : MINL(l[k], x);                                          \
                nan |= x != x;                                                                                \
            }                                                                                                 \
            elem m = l[0];                                                                                    \
            for (int k = 1; k < LANES; k++) m = op == OP_MAX ? MAXL(m, l[k]) : MINL(m, l[k]);                 \
            *v = nan ? (elem)(NANV) : m;                                                                      \
            return;                                                                                           \
        }                                                                                                     \
        elem m = p[0];                                                                                        \
        int64_t b = 0;                                                                                        \
        switch (op) {                                                                                         \
        case OP_ARGMAX:                                                                                       \
            for (int64_t i = 1; i < n && m == m; i++) {                                                       \
                elem x = p[i * s];                                                                            \
                if (GT_NAN(x, m)) m = x, b = i;                                                               \
            }                                                                                                 \
            break;                                                                                            \
        default:                                                                                              \
            for (int64_t i = 1; i < n && m == m; i++) {                                                       \
                elem x = p[i * s];                                                                            \
                if (LT_NAN(x, m)) m = x, b = i;                                                               \
            }                                                                                                 \
            break;                                                                                            \
        }                                                                                                     \
        *v = m;                                                                                               \
        *io = b;                                                                                              \
    }                                                                                                         \
    static void col_begin_##SUF(int op, void *acc, int64_t w) {                                               \
        typedef T elem;                                                                                       \
        if (!is_lane_op(op)) return;                                                                          \
        elem *a = (elem *)acc, init = op == OP_PROD ? (elem)1 : (elem)0;                                      \
        for (int k = 0; k < LANES; k++)                                                                       \
            for (int64_t j = 0; j < w; j++) a[k * WMAX + j] = init;                                           \
    }                                                                                                         \
    static void col_step_##SUF(int op, int first, int lane, void *acc, int64_t *aix, const void *xv, int64_t s, \
                               int64_t w, const void *shv, int64_t r) {                                       \
        typedef T elem;                                                                                       \
        const elem *px = (const elem *)xv, *psh = (const elem *)shv;                                          \
        elem *a = (elem *)acc;                                                                                \
        if (!(IS_FLOAT) && (op == OP_EXPSUM || op == OP_SQSUM)) op = OP_SUM;                                  \
        if (is_lane_op(op)) {                                                                                 \
            elem *l = a + lane * WMAX;                                                                        \
            switch (op) {                                                                                     \
            case OP_SUM: COL_LANES(ADD, x); break;                                                            \
            case OP_PROD: COL_LANES(MUL, x); break;                                                           \
            case OP_EXPSUM: COL_LANES(ADD, EXPF(x - sh)); break;                                              \
            default: COL_LANES(ADD, (x - sh) * (x - sh)); break;                                              \
            }                                                                                                 \
            return;                                                                                           \
        }                                                                                                     \
        if (op == OP_MAX || op == OP_MIN) { /* aix[j]: a NaN was seen */                                      \
            if (first)                                                                                        \
                for (int64_t j = 0; j < w; j++) {                                                             \
                    for (int k = 0; k < LANES; k++) a[k * WMAX + j] = px[j * s];                              \
                    aix[j] = 0;                                                                               \
                }                                                                                             \
            elem *l = a + lane * WMAX;                                                                        \
            for (int64_t j = 0; j < w; j++) {                                                                 \
                elem x = px[j * s];                                                                           \
                l[j] = op == OP_MAX ? MAXL(l[j], x) : MINL(l[j], x);                                          \
                aix[j] |= x != x;                                                                             \
            }                                                                                                 \
            return;                                                                                           \
        }                                                                                                     \
        if (first) {                                                                                          \
            for (int64_t j = 0; j < w; j++) a[j] = px[j * s], aix[j] = r;                                     \
            return;                                                                                           \
        }                                                                                                     \
        switch (op) {                                                                                         \
        case OP_ARGMAX:                                                                                       \
            for (int64_t j = 0; j < w; j++) {                                                                 \
                elem x = px[j * s];                                                                           \
                if (a[j] == a[j] && GT_NAN(x, a[j])) a[j] = x, aix[j] = r;                                    \
            }                                                                                                 \
            break;                                                                                            \
        default:                                                                                              \
            for (int64_t j = 0; j < w; j++) {                                                                 \
                elem x = px[j * s];                                                                           \
                if (a[j] == a[j] && LT_NAN(x, a[j])) a[j] = x, aix[j] = r;                                    \
            }                                                                                                 \
            break;                                                                                            \
        }                                                                                                     \
    }                                                                                                         \
    static void col_end_##SUF(int op, const void *acc, const int64_t *aix, int64_t w, void *vo, int64_t *io) { \
        typedef T elem;                                                                                       \
        const elem *a = (const elem *)acc;                                                                    \
        elem *v = (elem *)vo;                                                                                 \
        if (is_lane_op(op)) {                                                                                 \
            for (int64_t j = 0; j < w; j++) {                                                                 \
                elem l[LANES];                                                                                \
                for (int k = 0; k < LANES; k++) l[k] = a[k * WMAX + j];                                       \
                v[j] = op == OP_PROD ? TREE(MUL, l) : TREE(ADD, l);                                           \
                io[j] = 0;                                                                                    \
            }                                                                                                 \
            return;                                                                                           \
        }                                                                                                     \
        if (op == OP_MAX || op == OP_MIN) {                                                                   \
            for (int64_t j = 0; j < w; j++) {                                                                 \
                elem m = a[j];                                                                                \
                for (int k = 1; k < LANES; k++)                                                               \
                    m = op == OP_MAX ? MAXL(m, a[k * WMAX + j]) : MINL(m, a[k * WMAX + j]);                   \
                v[j] = aix[j] ? (elem)(NANV) : m, io[j] = 0;                                                  \
            }                                                                                                 \
            return;                                                                                           \
        }                                                                                                     \
        for (int64_t j = 0; j < w; j++) v[j] = a[j], io[j] = aix[j];                                          \
    }                                                                                                         \
    static void comb_##SUF(int op, const void *avp, const int64_t *ai, void *bvp, int64_t *bi, int64_t w) {   \
        typedef T elem;                                                                                       \
        const elem *a = (const elem *)avp;                                                                    \
        elem *b = (elem *)bvp;                                                                                \
        switch (op) {                                                                                         \
        case OP_PROD:                                                                                         \
            for (int64_t j = 0; j < w; j++) b[j] = MUL(a[j], b[j]);                                           \
            break;                                                                                            \
        case OP_MAX:                                                                                          \
            for (int64_t j = 0; j < w; j++) b[j] = GT_NAN(b[j], a[j]) ? b[j] : a[j];                          \
            break;                                                                                            \
        case OP_MIN:                                                                                          \
            for (int64_t j = 0; j < w; j++) b[j] = LT_NAN(b[j], a[j]) ? b[j] : a[j];                          \
            break;                                                                                            \
        case OP_ARGMAX:                                                                                       \
            for (int64_t j = 0; j < w; j++)                                                                   \
                if (a[j] != a[j] || !GT_NAN(b[j], a[j])) b[j] = a[j], bi[j] = ai[j];                          \
            break;                                                                                            \
        case OP_ARGMIN:                                                                                       \
            for (int64_t j = 0; j < w; j++)                                                                   \
                if (a[j] != a[j] || !LT_NAN(b[j], a[j])) b[j] = a[j], bi[j] = ai[j];                          \
            break;                                                                                            \
        default:                                                                                              \
            for (int64_t j = 0; j < w; j++) b[j] = ADD(a[j], b[j]);                                           \
            break;                                                                                            \
        }                                                                                                     \
    }                                                                                                         \
    static void ident_##SUF(int op, void *vo, int64_t *io, int64_t w) {                                       \
        typedef T elem;                                                                                       \
        elem *v = (elem *)vo;                                                                                 \
        for (int64_t j = 0; j < w; j++) v[j] = op == OP_PROD ? (elem)1 : (elem)0, io[j] = -1;                 \
    }                                                                                                         \
    static void softmax_##SUF(int lg, const void *xv, int64_t xs, int64_t n, const void *shv, int64_t shs,    \
                              const void *smv, int64_t sms, void *yv, int64_t ys) {                           \
        typedef T elem;                                                                                       \
        const elem *x = (const elem *)xv, *sh = (const elem *)shv, *sm = (const elem *)smv;                   \
        elem *y = (elem *)yv;                                                                                 \
        if (!(IS_FLOAT)) return; /* not used for integers */                                                  \
        if (lg)                                                                                               \
            for (int64_t i = 0; i < n; i++) y[i * ys] = (x[i * xs] - sh[i * shs]) - sm[i * sms];              \
        else                                                                                                  \
            for (int64_t i = 0; i < n; i++) y[i * ys] = EXPF(x[i * xs] - sh[i * shs]) / sm[i * sms];          \
    }                                                                                                         \
    static const tfns fns_##SUF = {blk_##SUF,  col_begin_##SUF, col_step_##SUF, col_end_##SUF,                \
                                   comb_##SUF, ident_##SUF,     softmax_##SUF};

static inline int64_t iexp(int64_t x) { return x; } /* placeholders: never called for integers */
TYPE_FNS(float, f32, FADD, FMUL, expf, logf, 1, NAN)
TYPE_FNS(double, f64, FADD, FMUL, exp, log, 1, NAN)
TYPE_FNS(int64_t, i64, IADD, IMUL, iexp, iexp, 0, 0)

/* ---- the plan ---- */
typedef struct {
    int rk, op, sink;
    int cdt, idt, odt;
    int64_t ces, ies; /* element sizes: compute, input */
    const tfns *f;
    const char *in;
    char *out;
    int kn, rn;
    int64_t ksh[TD_MAX_DIMS], kin[TD_MAX_DIMS], kout[TD_MAX_DIMS]; /* strides in bytes */
    int64_t rsh[TD_MAX_DIMS], rin[TD_MAX_DIMS], rout[TD_MAX_DIMS];
    int64_t M, L;
    int column;
    int64_t klast, tpr;    /* column: the innermost kept dim's size, tiles per run */
    int64_t nunits, upg;   /* units (outputs or tiles), units per group */
    int64_t ngroups, nrc;  /* parallel items: ngroups * nrc */
    int write_pass;        /* softmax's last pass: write y instead of reducing */
    char *shift, *sum2;    /* per output (K order), compute type */
    char *part_v;          /* [nrc][M] partial states when the axis is chunked */
    int64_t *part_i;
    atomic_int nomem;
} rplan;

/* Offsets (bytes) of output o (K order) in the input and the output. */
static void k_offsets(const rplan *p, int64_t o, int upto, int64_t *in_off, int64_t *out_off) {
    int64_t a = 0, b = 0;
    for (int d = upto - 1; d >= 0; d--) {
        int64_t i = o % p->ksh[d];
        o /= p->ksh[d];
        a += i * p->kin[d];
        b += i * p->kout[d];
    }
    *in_off = a;
    *out_off = b;
}

/* Byte offset of element r (C order over R) in the input. */
static int64_t r_offset(const rplan *p, int64_t r) {
    int64_t off = 0;
    for (int d = p->rn - 1; d >= 0; d--) {
        off += (r % p->rsh[d]) * p->rin[d];
        r /= p->rsh[d];
    }
    return off;
}

/* The n elements of R from position b on, of the output whose elements start
 * at base, as compute-typed values: in place when they are one strided run
 * of the compute type, else gathered and converted into buf.  Returns the
 * pointer; *s gets the stride in elements. */
static const void *block_ptr(const rplan *p, const char *base, int64_t b, int64_t n, void *buf, int64_t *s) {
    int64_t inner = p->rsh[p->rn - 1], rs = p->rin[p->rn - 1];
    int64_t pos = b % inner;
    if (pos + n <= inner) {
        const char *q = base + r_offset(p, b);
        if (p->idt == p->cdt && rs % p->ces == 0) {
            *s = rs / p->ces;
            return q;
        }
        td__convert(p->idt, q, rs, p->cdt, buf, n);
        *s = 1;
        return buf;
    }
    for (int64_t done = 0; done < n;) {
        int64_t m = inner - (b + done) % inner;
        if (m > n - done) m = n - done;
        td__convert(p->idt, base + r_offset(p, b + done), rs, p->cdt, (char *)buf + done * p->ces, m);
        done += m;
    }
    *s = 1;
    return buf;
}

/* ---- the cascade: block results combined pairwise in order ---- */
typedef struct {
    int64_t w;
    int64_t ces;
    const tfns *f;
    int op;
    uint64_t occ;    /* bit l: level l holds a partial */
    char *v;         /* [MAX_LEVELS][w] values */
    int64_t *ix;     /* [MAX_LEVELS][w] indices */
} cascade;

static void casc_push(cascade *c, void *bv, int64_t *bi) {
    int l = 0;
    for (; c->occ >> l & 1; l++) {
        c->f->comb(c->op, c->v + l * c->w * c->ces, c->ix + l * c->w, bv, bi, c->w);
        c->occ &= ~((uint64_t)1 << l);
    }
    memcpy(c->v + l * c->w * c->ces, bv, (size_t)(c->w * c->ces));
    memcpy(c->ix + l * c->w, bi, (size_t)c->w * sizeof(int64_t));
    c->occ |= (uint64_t)1 << l;
}

/* The combination of everything pushed, into v, ix (the identity if nothing
 * was). */
static void casc_fold(cascade *c, void *v, int64_t *ix) {
    int found = 0;
    for (int l = 0; l < MAX_LEVELS; l++) {
        if (!(c->occ >> l & 1)) continue;
        if (!found) {
            memcpy(v, c->v + l * c->w * c->ces, (size_t)(c->w * c->ces));
            memcpy(ix, c->ix + l * c->w, (size_t)c->w * sizeof(int64_t));
            found = 1;
        } else {
            c->f->comb(c->op, c->v + l * c->w * c->ces, c->ix + l * c->w, v, ix, c->w);
        }
    }
    if (!found) c->f->ident(c->op, v, ix, c->w);
}

/* Levels a cascade of n pushes can reach. */
static int casc_levels(int64_t n) {
    int l = 1;
    while (n > 1) n >>= 1, l++;
    return l;
}

/* ---- one output (rows) or one tile (columns) over R positions [r0, r1) ---- */
static void row_reduce(const rplan *p, const char *base, int64_t r0, int64_t r1, const void *sh, void *v,
                       int64_t *ix) {
    _Alignas(64) char buf[BLK * 8];
    _Alignas(64) char cv[MAX_LEVELS * 8], bv[8];
    int64_t ci[MAX_LEVELS], bi;
    cascade c = {.w = 1, .ces = p->ces, .f = p->f, .op = p->op, .v = cv, .ix = ci};
    for (int64_t b = r0; b < r1; b += BLK) {
        int64_t n = r1 - b < BLK ? r1 - b : BLK, s;
        const void *q = block_ptr(p, base, b, n, buf, &s);
        p->f->blk(p->op, q, s, n, sh, bv, &bi);
        bi += b;
        if (r1 - r0 <= BLK) { /* one block: the cascade would give it back as is */
            memcpy(v, bv, (size_t)p->ces);
            *ix = bi;
            return;
        }
        casc_push(&c, bv, &bi);
    }
    casc_fold(&c, v, ix);
}

/* Scratch of one column task: accumulators and the cascade's levels. */
typedef struct {
    _Alignas(64) char acc[LANES * WMAX * 8];
    int64_t aix[WMAX];
    _Alignas(64) char buf[WMAX * 8];
    _Alignas(64) char bv[WMAX * 8];
    int64_t bi[WMAX];
    char *cv;
    int64_t *ci;
} colscratch;

static void col_reduce(const rplan *p, colscratch *cs, const char *base, int64_t w, int64_t r0, int64_t r1,
                       const void *sh, void *v, int64_t *ix) {
    cascade c = {.w = w, .ces = p->ces, .f = p->f, .op = p->op, .v = cs->cv, .ix = cs->ci};
    int64_t ks = p->kin[p->kn - 1], rs = p->rin[0];
    int direct = p->idt == p->cdt && ks % p->ces == 0;
    for (int64_t b = r0; b < r1; b += BLK) {
        int64_t n = r1 - b < BLK ? r1 - b : BLK;
        p->f->col_begin(p->op, cs->acc, w);
        for (int64_t r = b; r < b + n; r++) {
            const char *q = base + r * rs;
            const void *x = q;
            int64_t s = direct ? ks / p->ces : 1;
            if (!direct) {
                td__convert(p->idt, q, ks, p->cdt, cs->buf, w);
                x = cs->buf;
            }
            p->f->col_step(p->op, r == b, (int)((r - b) & (LANES - 1)), cs->acc, cs->aix, x, s, w, sh, r);
        }
        p->f->col_end(p->op, cs->acc, cs->aix, w, cs->bv, cs->bi);
        if (r1 - r0 <= BLK) {
            memcpy(v, cs->bv, (size_t)(w * p->ces));
            memcpy(ix, cs->bi, (size_t)w * sizeof(int64_t));
            return;
        }
        casc_push(&c, cs->bv, cs->bi);
    }
    casc_fold(&c, v, ix);
}

/* ---- sinks: where the states of outputs [ob, ob + w) go ---- */
static void store_i64(int dt, char *q, int64_t x) {
    switch (dt) {
    case TD_F32: *(float *)q = (float)x; break;
    case TD_F64: *(double *)q = (double)x; break;
    case TD_I32: *(int32_t *)q = (int32_t)(uint32_t)(uint64_t)x; break;
    case TD_I64: *(int64_t *)q = x; break;
    default: *(uint8_t *)q = (uint8_t)(uint64_t)x; break;
    }
}

static void store_f64(int dt, char *q, double x) {
    if (dt == TD_F32) *(float *)q = (float)x;
    else if (dt == TD_F64) *(double *)q = x;
    else td__store_double(dt, q, x);
}

#define SINK_FN(T, SUF, LOGF, IS_FLOAT)                                                                       \
    static void sink_##SUF(const rplan *p, int64_t ob, int64_t w, const void *vv, const int64_t *ix, char *q, \
                           int64_t qs) {                                                                      \
        const T *v = (const T *)vv;                                                                           \
        T *shift = p->shift ? (T *)p->shift + ob : NULL, *sum2 = p->sum2 ? (T *)p->sum2 + ob : NULL;          \
        T len = (T)p->L;                                                                                      \
        switch (p->sink) {                                                                                    \
        case SINK_SHIFT_MEAN:                                                                                 \
            for (int64_t j = 0; j < w; j++) shift[j] = v[j] / len;                                            \
            return;                                                                                           \
        case SINK_SHIFT_MAX:                                                                                  \
            for (int64_t j = 0; j < w; j++) shift[j] = (IS_FLOAT) && !isfinite((double)v[j]) ? (T)0 : v[j];   \
            return;                                                                                           \
        case SINK_SUM2:                                                                                       \
            for (int64_t j = 0; j < w; j++) sum2[j] = v[j];                                                   \
            return;                                                                                           \
        case SINK_SUM2_LOG:                                                                                   \
            for (int64_t j = 0; j < w; j++) sum2[j] = LOGF(v[j]);                                             \
            return;                                                                                           \
        default: break;                                                                                       \
        }                                                                                                     \
        for (int64_t j = 0; j < w; j++, q += qs) {                                                            \
            T x = v[j];                                                                                       \
            switch (p->rk) {                                                                                  \
            case RK_ARGMAX:                                                                                   \
            case RK_ARGMIN: store_i64(p->odt, q, ix[j]); continue;                                            \
            case RK_MEAN:                                                                                     \
            case RK_VAR: x = x / len; break;                                                                  \
            case RK_LSE: x = shift[j] + LOGF(x); break;                                                       \
            default: break;                                                                                   \
            }                                                                                                 \
            if (IS_FLOAT) store_f64(p->odt, q, (double)x);                                                    \
            else store_i64(p->odt, q, (int64_t)x);                                                            \
        }                                                                                                     \
    }
SINK_FN(float, f32, logf, 1)
SINK_FN(double, f64, log, 1)
SINK_FN(int64_t, i64, iexp, 0)

static void sink(const rplan *p, int64_t ob, int64_t w, const void *v, const int64_t *ix, char *q, int64_t qs) {
    switch (p->cdt) {
    case TD_F32: sink_f32(p, ob, w, v, ix, q, qs); break;
    case TD_F64: sink_f64(p, ob, w, v, ix, q, qs); break;
    default: sink_i64(p, ob, w, v, ix, q, qs); break;
    }
}

/* ---- softmax's last pass over one output (row) or tile (column) ---- */
static void row_write(const rplan *p, const char *base, char *obase, int64_t o, int64_t r0, int64_t r1) {
    _Alignas(64) char buf[BLK * 8];
    int lg = p->rk == RK_LOGSOFTMAX;
    int64_t ys = p->rout[0] / p->ces;
    for (int64_t b = r0; b < r1; b += BLK) {
        int64_t n = r1 - b < BLK ? r1 - b : BLK, s;
        const void *x = block_ptr(p, base, b, n, buf, &s);
        p->f->softmax(lg, x, s, n, p->shift + o * p->ces, 0, p->sum2 + o * p->ces, 0, obase + b * p->rout[0], ys);
    }
}

static void col_write(const rplan *p, colscratch *cs, const char *base, char *obase, int64_t o, int64_t w,
                      int64_t r0, int64_t r1) {
    int lg = p->rk == RK_LOGSOFTMAX;
    int64_t ks = p->kin[p->kn - 1], rs = p->rin[0];
    int direct = p->idt == p->cdt && ks % p->ces == 0;
    for (int64_t r = r0; r < r1; r++) {
        const char *q = base + r * rs;
        const void *x = q;
        int64_t s = direct ? ks / p->ces : 1;
        if (!direct) {
            td__convert(p->idt, q, ks, p->cdt, cs->buf, w);
            x = cs->buf;
        }
        p->f->softmax(lg, x, s, w, p->shift + o * p->ces, 1, p->sum2 + o * p->ces, 1, obase + r * p->rout[0],
                      p->kout[p->kn - 1] / p->ces);
    }
}

/* ---- parallel items: a group of units over one chunk of R ---- */
static void run_items(void *arg, int64_t b, int64_t e) {
    rplan *p = arg;
    colscratch *cs = NULL;
    if (p->column) {
        cs = malloc(sizeof *cs);
        int levels = casc_levels((p->L + BLK - 1) / BLK);
        if (cs) {
            cs->cv = malloc((size_t)(levels * WMAX * 8));
            cs->ci = malloc((size_t)(levels * WMAX) * sizeof(int64_t));
        }
        if (!cs || !cs->cv || !cs->ci) {
            if (cs) free(cs->cv), free(cs->ci), free(cs);
            atomic_store(&p->nomem, 1);
            return;
        }
    }
    _Alignas(64) char v[WMAX * 8];
    int64_t ix[WMAX];
    for (int64_t item = b; item < e; item++) {
        int64_t g = item / p->nrc, c = item % p->nrc;
        int64_t r0 = c * CHUNK, r1 = p->nrc == 1 ? p->L : (r0 + CHUNK < p->L ? r0 + CHUNK : p->L);
        int64_t u1 = (g + 1) * p->upg < p->nunits ? (g + 1) * p->upg : p->nunits;
        for (int64_t u = g * p->upg; u < u1; u++) {
            int64_t ob, w, in_off, out_off;
            if (p->column) {
                int64_t q = u / p->tpr, t = u % p->tpr;
                k_offsets(p, q, p->kn - 1, &in_off, &out_off);
                in_off += t * WMAX * p->kin[p->kn - 1];
                out_off += t * WMAX * p->kout[p->kn - 1];
                ob = q * p->klast + t * WMAX;
                w = p->klast - t * WMAX < WMAX ? p->klast - t * WMAX : WMAX;
            } else {
                k_offsets(p, u, p->kn, &in_off, &out_off);
                ob = u;
                w = 1;
            }
            if (p->write_pass) {
                if (p->column) col_write(p, cs, p->in + in_off, p->out + out_off, ob, w, r0, r1);
                else row_write(p, p->in + in_off, p->out + out_off, ob, r0, r1);
                continue;
            }
            const char *sh = p->shift ? p->shift + ob * p->ces : NULL;
            if (p->op == OP_MAX || p->op == OP_SUM) sh = NULL; /* the shift pass itself */
            if (p->column) col_reduce(p, cs, p->in + in_off, w, r0, r1, sh, v, ix);
            else row_reduce(p, p->in + in_off, r0, r1, sh, v, ix);
            if (p->nrc == 1) {
                sink(p, ob, w, v, ix, p->out + out_off, p->kn ? p->kout[p->kn - 1] : 0);
            } else {
                memcpy(p->part_v + (c * p->M + ob) * p->ces, v, (size_t)(w * p->ces));
                memcpy(p->part_i + c * p->M + ob, ix, (size_t)w * sizeof(int64_t));
            }
        }
    }
    if (cs) free(cs->cv), free(cs->ci), free(cs);
}

/* Combines the chunk partials of every output in chunk order (few outputs). */
static void combine_partials(rplan *p) {
    _Alignas(64) char cv[MAX_LEVELS * 8], v[8], bv[8];
    int64_t ci[MAX_LEVELS], ix, bi;
    for (int64_t o = 0; o < p->M; o++) {
        cascade c = {.w = 1, .ces = p->ces, .f = p->f, .op = p->op, .v = cv, .ix = ci};
        for (int64_t k = 0; k < p->nrc; k++) {
            memcpy(bv, p->part_v + (k * p->M + o) * p->ces, (size_t)p->ces);
            bi = p->part_i[k * p->M + o];
            casc_push(&c, bv, &bi);
        }
        casc_fold(&c, v, &ix);
        int64_t in_off, out_off;
        k_offsets(p, o, p->kn, &in_off, &out_off);
        sink(p, o, 1, v, &ix, p->out + out_off, 0);
    }
}

/* Runs one pass (op into sink, or softmax's write pass). */
static td_status run_pass(rplan *p, const td_exec *ex, int op, int sink_kind, int write_pass) {
    p->op = op;
    p->sink = sink_kind;
    p->write_pass = write_pass;
    atomic_store(&p->nomem, 0);
    td_status st = td_parallel_for(ex, p->ngroups * p->nrc, 1, run_items, p);
    if (st != TD_OK) return st;
    if (atomic_load(&p->nomem)) {
        td_exec_set_error(ex, "out of memory for the scratch of a reduction");
        return TD_ENOMEM;
    }
    if (p->nrc > 1 && !write_pass) combine_partials(p);
    return TD_OK;
}

/* ---- dtypes and shapes ---- */
static int is_float(int dt) { return dt == TD_F32 || dt == TD_F64; }

/* The dtype a reduction computes in. */
static int compute_dtype(int rk, int dt) {
    if (is_float(dt)) return dt;
    switch (rk) {
    case RK_MEAN: case RK_VAR: case RK_LSE: case RK_SOFTMAX: case RK_LOGSOFTMAX: return TD_F64;
    default: return TD_I64;
    }
}

static int result_dtype(int rk, int dt) {
    switch (rk) {
    case RK_MAX: case RK_MIN: return dt;
    case RK_ARGMAX: case RK_ARGMIN: return TD_I64;
    default: return compute_dtype(rk, dt);
    }
}

static const char *rk_api(int rk) {
    static const char *names[] = {"td_sum", "td_mean", "td_max", "td_min", "td_prod", "td_argmax", "td_argmin",
                                  "td_logsumexp", "td_variance", "td_softmax", "td_log_softmax"};
    return names[rk];
}

static int is_softmax(int rk) { return rk == RK_SOFTMAX || rk == RK_LOGSOFTMAX; }

/* Sorts dims [0, n) by decreasing |stride| (stable). */
static void sort_dims(int n, int64_t *sh, int64_t *in, int64_t *out) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && llabs(in[j - 1]) < llabs(in[j]); j--) {
            int64_t t;
            t = sh[j], sh[j] = sh[j - 1], sh[j - 1] = t;
            t = in[j], in[j] = in[j - 1], in[j - 1] = t;
            t = out[j], out[j] = out[j - 1], out[j - 1] = t;
        }
}

/* Merges neighbours d, d+1 that are one run in both strides; returns the new count. */
static int merge_dims(int n, int64_t *sh, int64_t *in, int64_t *out) {
    int m = 0;
    for (int d = 0; d < n; d++) {
        if (m > 0 && in[m - 1] == in[d] * sh[d] && out[m - 1] == out[d] * sh[d]) {
            sh[m - 1] *= sh[d];
            in[m - 1] = in[d];
            out[m - 1] = out[d];
        } else {
            sh[m] = sh[d], in[m] = in[d], out[m] = out[d];
            m++;
        }
    }
    return m;
}

static td_status red_kernel(const td__call *c, const td_exec *ex) {
    const red_attrs *at = (const red_attrs *)c->attrs;
    const td_array *a = c->in[0], *out = c->out;
    rplan *p = calloc(1, sizeof *p);
    if (!p) {
        td_exec_set_error(ex, "out of memory for a reduction plan");
        return TD_ENOMEM;
    }
    int nd = a->ndim, all = at->axis == TD_ALL_AXES;
    int ax = all ? -1 : (at->axis < 0 ? at->axis + nd : at->axis);
    p->rk = at->rk;
    p->idt = a->dtype;
    p->cdt = compute_dtype(p->rk, a->dtype);
    p->odt = out->dtype;
    p->ies = (int64_t)td_dtype_size(p->idt);
    p->ces = (int64_t)td_dtype_size(p->cdt);
    p->f = p->cdt == TD_F32 ? &fns_f32 : p->cdt == TD_F64 ? &fns_f64 : &fns_i64;
    p->in = td__array_ptr(a);
    p->out = td__array_ptr(out);
    int64_t oes = (int64_t)td_dtype_size(out->dtype);
    p->M = 1;
    p->L = 1;
    for (int d = 0; d < nd; d++) {
        int reduced = all || d == ax;
        int od = (is_softmax(p->rk) || at->keepdims) ? d : (d > ax ? d - 1 : d);
        /* Output strides: of the kept dims, and of the reduced one for softmax. */
        int64_t os = (reduced && !is_softmax(p->rk)) ? 0 : out->strides[od] * oes;
        if (reduced) p->L *= a->shape[d];
        else p->M *= a->shape[d];
        if (a->shape[d] == 1) continue;
        if (reduced) {
            p->rsh[p->rn] = a->shape[d], p->rin[p->rn] = a->strides[d] * p->ies, p->rout[p->rn] = os;
            p->rn++;
        } else {
            p->ksh[p->kn] = a->shape[d], p->kin[p->kn] = a->strides[d] * p->ies, p->kout[p->kn] = os;
            p->kn++;
        }
    }
    td_status st = TD_OK;
    if (p->M == 0 || (p->L == 0 && is_softmax(p->rk))) goto done;
    if (p->rn == 0) p->rsh[0] = 1, p->rin[0] = 0, p->rout[0] = 0, p->rn = 1;
    sort_dims(p->kn, p->ksh, p->kin, p->kout);
    p->kn = merge_dims(p->kn, p->ksh, p->kin, p->kout);
    int ordered = p->rk == RK_ARGMAX || p->rk == RK_ARGMIN || is_softmax(p->rk);
    if (!ordered) sort_dims(p->rn, p->rsh, p->rin, p->rout);
    p->rn = merge_dims(p->rn, p->rsh, p->rin, p->rout);
    /* Columns when the reduced axis is farther apart in memory than
     * neighbouring outputs (only with one reduced dim). */
    p->column = p->kn > 0 && p->rn == 1 && p->L > 1 && llabs(p->kin[p->kn - 1]) < llabs(p->rin[0]);
    int64_t work_l = p->L > 0 ? p->L : 1;
    if (p->column) {
        p->klast = p->ksh[p->kn - 1];
        p->tpr = (p->klast + WMAX - 1) / WMAX;
        p->nunits = (p->M / p->klast) * p->tpr;
        int64_t tw = p->klast < WMAX ? p->klast : WMAX;
        p->upg = GRAIN / (tw * work_l);
    } else {
        p->nunits = p->M;
        p->upg = GRAIN / work_l;
    }
    if (p->upg < 1) p->upg = 1;
    if (p->M < FEW_OUTPUTS && p->L > CHUNK) {
        p->nrc = (p->L + CHUNK - 1) / CHUNK;
        p->upg = p->nunits;
    } else {
        p->nrc = 1;
    }
    p->ngroups = (p->nunits + p->upg - 1) / p->upg;
    int two_pass = p->rk == RK_VAR || p->rk == RK_LSE || is_softmax(p->rk);
    if (two_pass) p->shift = calloc((size_t)p->M, (size_t)p->ces);
    if (is_softmax(p->rk)) p->sum2 = calloc((size_t)p->M, (size_t)p->ces);
    if (p->nrc > 1) {
        p->part_v = malloc((size_t)(p->nrc * p->M * p->ces));
        p->part_i = malloc((size_t)(p->nrc * p->M) * sizeof(int64_t));
    }
    if ((two_pass && !p->shift) || (is_softmax(p->rk) && !p->sum2) || (p->nrc > 1 && (!p->part_v || !p->part_i))) {
        td_exec_set_error(ex, "out of memory for the scratch of a reduction");
        st = TD_ENOMEM;
        goto done;
    }
    switch (p->rk) {
    case RK_SUM: st = run_pass(p, ex, OP_SUM, SINK_OUT, 0); break;
    case RK_MEAN: st = run_pass(p, ex, OP_SUM, SINK_OUT, 0); break;
    case RK_PROD: st = run_pass(p, ex, OP_PROD, SINK_OUT, 0); break;
    case RK_MAX: st = run_pass(p, ex, OP_MAX, SINK_OUT, 0); break;
    case RK_MIN: st = run_pass(p, ex, OP_MIN, SINK_OUT, 0); break;
    case RK_ARGMAX: st = run_pass(p, ex, OP_ARGMAX, SINK_OUT, 0); break;
    case RK_ARGMIN: st = run_pass(p, ex, OP_ARGMIN, SINK_OUT, 0); break;
    case RK_VAR:
        st = run_pass(p, ex, OP_SUM, SINK_SHIFT_MEAN, 0);
        if (st == TD_OK) st = run_pass(p, ex, OP_SQSUM, SINK_OUT, 0);
        break;
    case RK_LSE:
        /* An empty axis: shift 0 and an empty sum, log(0) = -inf. */
        if (p->L > 0) st = run_pass(p, ex, OP_MAX, SINK_SHIFT_MAX, 0);
        if (st == TD_OK) st = run_pass(p, ex, OP_EXPSUM, SINK_OUT, 0);
        break;
    default: /* softmax, log_softmax */
        st = run_pass(p, ex, OP_MAX, SINK_SHIFT_MAX, 0);
        if (st == TD_OK) st = run_pass(p, ex, OP_EXPSUM, p->rk == RK_LOGSOFTMAX ? SINK_SUM2_LOG : SINK_SUM2, 0);
        if (st == TD_OK) st = run_pass(p, ex, OP_SUM, SINK_OUT, 1);
        break;
    }
done:
    free(p->shift);
    free(p->sum2);
    free(p->part_v);
    free(p->part_i);
    free(p);
    return st;
}

/* ---- inference and validation (at push time) ---- */
static td_status red_infer(const td__call *c, int *dtype, int *ndim, int64_t *shape) {
    const red_attrs *at = (const red_attrs *)c->attrs;
    const td_array *a = c->in[0];
    const char *api = rk_api(at->rk);
    char s1[128];
    int nd = a->ndim;
    if (at->keepdims != TD_KEEPDIMS && at->keepdims != TD_DROPDIMS)
        return td__fail(TD_EINVAL, "%s: keepdims must be TD_KEEPDIMS or TD_DROPDIMS, not %d", api, at->keepdims);
    int all = at->axis == TD_ALL_AXES;
    if (all && is_softmax(at->rk))
        return td__fail(TD_EINVAL, "%s: axis must name one axis of the array of shape %s (TD_ALL_AXES is not taken)",
                        api, td__shape_str(nd, a->shape, s1, sizeof s1));
    if (!all && (at->axis < -nd || at->axis >= nd))
        return td__fail(TD_EINVAL, "%s: axis %d is out of bounds for the array of shape %s (dimension %d)", api,
                        at->axis, td__shape_str(nd, a->shape, s1, sizeof s1), nd);
    int ax = all ? -1 : (at->axis < 0 ? at->axis + nd : at->axis);
    int64_t M = 1, L = 1;
    for (int d = 0; d < nd; d++) {
        if (all || d == ax) L *= a->shape[d];
        else M *= a->shape[d];
    }
    if (L == 0 && M > 0 && (at->rk == RK_MAX || at->rk == RK_MIN || at->rk == RK_ARGMAX || at->rk == RK_ARGMIN)) {
        static const char *uf[] = {[RK_MAX] = "maximum", [RK_MIN] = "minimum", [RK_ARGMAX] = "argmax",
                                   [RK_ARGMIN] = "argmin"};
        if (all)
            return td__fail(TD_EINVAL, "%s: zero-size array to reduction operation %s which has no identity (shape %s)",
                            api, uf[at->rk], td__shape_str(nd, a->shape, s1, sizeof s1));
        return td__fail(TD_EINVAL,
                        "%s: zero-size array to reduction operation %s which has no identity (shape %s, axis %d)", api,
                        uf[at->rk], td__shape_str(nd, a->shape, s1, sizeof s1), at->axis);
    }
    *dtype = result_dtype(at->rk, a->dtype);
    if (is_softmax(at->rk)) {
        *ndim = nd;
        memcpy(shape, a->shape, sizeof(int64_t) * (size_t)nd);
        return TD_OK;
    }
    int n = 0;
    for (int d = 0; d < nd; d++) {
        if (all || d == ax) {
            if (at->keepdims) shape[n++] = 1;
        } else {
            shape[n++] = a->shape[d];
        }
    }
    *ndim = n;
    return TD_OK;
}

/* ---- gradients (autograd) ----
 * The output gradient is broadcast back over the reduced axes
 * (td__expand_reduced).  max and min share a slice's gradient equally among
 * the elements equal to its extreme (ties split evenly); prod is exact with
 * zeros (the one zero of a slice gets the product of the others). */
#define RAT ((const red_attrs *)g->attrs)
static td_array *rexpand(td__gctx *g, td_array *x) {
    return td__expand_reduced(x, &g->in_meta[0], RAT->axis, RAT->keepdims);
}
static td_status rgrad(td__gctx *g, td_array *r) {
    g->gin[0] = r;
    return r ? TD_OK : td_last_status();
}
static int64_t reduced_count(const td__meta *m, int axis) {
    if (axis == TD_ALL_AXES) return td__shape_numel(m->ndim, m->shape);
    return m->shape[axis < 0 ? axis + m->ndim : axis];
}
static td_array *full0(const td_array *like, int dtype, double v) { return td_full(dtype, 0, NULL, v, like->dev); }

static td_status grad_sum(td__gctx *g) { return rgrad(g, rexpand(g, g->gout[0])); }
static td_status grad_mean(td__gctx *g) {
    return rgrad(g, td_div_scalar(rexpand(g, g->gout[0]), (double)reduced_count(&g->in_meta[0], RAT->axis)));
}
static td_status grad_extreme(td__gctx *g) {
    td_array *a = g->in[0];
    td_array *mask = td_eq(a, rexpand(g, g->out[0]));
    td_array *cnt = td_sum(mask, RAT->axis, TD_KEEPDIMS);
    return rgrad(g, td_mul(rexpand(g, g->gout[0]), td_div(mask, cnt)));
}
static td_status grad_prod(td__gctx *g) {
    td_array *a = g->in[0], *zero = full0(a, a->dtype, 0.0);
    td_array *isz = td_eq(a, zero);
    td_array *nz = td_sum(isz, RAT->axis, TD_KEEPDIMS);
    td_array *others = td_prod(td_where(isz, full0(a, a->dtype, 1.0), a), RAT->axis, TD_KEEPDIMS);
    td_array *at_zero = td_mul(others, td_eq(nz, full0(a, TD_I64, 1.0)));
    td_array *d = td_where(isz, at_zero, td_div(rexpand(g, g->out[0]), a));
    return rgrad(g, td_mul(rexpand(g, g->gout[0]), d));
}
static td_status grad_lse(td__gctx *g) {
    td_array *p = td_exp(td_sub(g->in[0], rexpand(g, g->out[0])));
    return rgrad(g, td_mul(rexpand(g, g->gout[0]), p));
}
static td_status grad_var(td__gctx *g) {
    td_array *a = g->in[0];
    double L = (double)reduced_count(&g->in_meta[0], RAT->axis);
    td_array *c = td_sub(a, td_mean(a, RAT->axis, TD_KEEPDIMS));
    return rgrad(g, td_mul(rexpand(g, g->gout[0]), td_mul_scalar(c, 2.0 / L)));
}
static td_status grad_softmax(td__gctx *g) {
    td_array *y = g->out[0], *gy = td_mul(g->gout[0], y);
    return rgrad(g, td_sub(gy, td_mul(y, td_sum(gy, RAT->axis, TD_KEEPDIMS))));
}
static td_status grad_log_softmax(td__gctx *g) {
    td_array *go = g->gout[0];
    return rgrad(g, td_sub(go, td_mul(td_exp(g->out[0]), td_sum(go, RAT->axis, TD_KEEPDIMS))));
}

#define RED_DESC(NAME, API, GRAD, SAVES)                                                                      \
    static const td__opdesc desc_##NAME = {.name = #NAME, .api = API, .n_in = 1, .infer = red_infer,          \
                                           .kernel = {red_kernel, NULL}, .grad = GRAD, .saves = SAVES};
RED_DESC(sum, "td_sum", grad_sum, 0)
RED_DESC(mean, "td_mean", grad_mean, 0)
RED_DESC(max, "td_max", grad_extreme, TD__SAVE_IN | TD__SAVE_OUT)
RED_DESC(min, "td_min", grad_extreme, TD__SAVE_IN | TD__SAVE_OUT)
RED_DESC(prod, "td_prod", grad_prod, TD__SAVE_IN | TD__SAVE_OUT)
RED_DESC(argmax, "td_argmax", NULL, 0)
RED_DESC(argmin, "td_argmin", NULL, 0)
RED_DESC(logsumexp, "td_logsumexp", grad_lse, TD__SAVE_IN | TD__SAVE_OUT)
RED_DESC(variance, "td_variance", grad_var, TD__SAVE_IN)
RED_DESC(softmax, "td_softmax", grad_softmax, TD__SAVE_OUT)
RED_DESC(log_softmax, "td_log_softmax", grad_log_softmax, TD__SAVE_OUT)

/* ---- public wrappers ---- */
#define REDUCE(NAME, RK)                                                                                      \
    td_array *td_##NAME(td_array *a, int axis, int keepdims) {                                                \
        if (!a) return NULL;                                                                                  \
        red_attrs at = {.rk = RK, .axis = axis, .keepdims = keepdims};                                        \
        return td__invoke(&desc_##NAME, &a, 1, &at, sizeof at);                                               \
    }
#define REDUCE_OUT(NAME, RK)                                                                                  \
    td_status td_##NAME##_out(td_array *a, int axis, int keepdims, td_array *out) {                           \
        if (!a || !out) return td__fail(TD_EINVAL, "td_" #NAME "_out: %s is NULL", a ? "out" : "a");          \
        red_attrs at = {.rk = RK, .axis = axis, .keepdims = keepdims};                                        \
        return td__invoke_out(&desc_##NAME, &a, 1, &at, sizeof at, out, 0);                                   \
    }
REDUCE(sum, RK_SUM)
REDUCE(mean, RK_MEAN)
REDUCE(max, RK_MAX)
REDUCE(min, RK_MIN)
REDUCE(prod, RK_PROD)
REDUCE(argmax, RK_ARGMAX)
REDUCE(argmin, RK_ARGMIN)
REDUCE(logsumexp, RK_LSE)
REDUCE(variance, RK_VAR)
REDUCE_OUT(sum, RK_SUM)
REDUCE_OUT(mean, RK_MEAN)
REDUCE_OUT(max, RK_MAX)
REDUCE_OUT(min, RK_MIN)

td_array *td_softmax(td_array *a, int axis) {
    if (!a) return NULL;
    red_attrs at = {.rk = RK_SOFTMAX, .axis = axis, .keepdims = TD_KEEPDIMS};
    return td__invoke(&desc_softmax, &a, 1, &at, sizeof at);
}

td_array *td_log_softmax(td_array *a, int axis) {
    if (!a) return NULL;
    red_attrs at = {.rk = RK_LOGSOFTMAX, .axis = axis, .keepdims = TD_KEEPDIMS};
    return td__invoke(&desc_log_softmax, &a, 1, &at, sizeof at);
}
