/* Random numbers: a counter-based generator (Philox 4x32-10) per device.
 *
 * Philox 4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers:
 * as easy as 1, 2, 3", SC 2011) maps a 128-bit counter and a 64-bit key to
 * 128 random bits with ten rounds of two 32x32->64 multiplications (by
 * 0xD2511F53 and 0xCD9E8D57), the key bumped between rounds by the Weyl
 * constants 0x9E3779B9 and 0xBB67AE85.  Block k of a generator is
 * philox(counter = {lo32(k), hi32(k), 0, 0}, key = {lo32(seed), hi32(seed)}).
 *
 * A generator is (seed, counter): the counter is the number of 128-bit blocks
 * drawn so far.  Each random op, in its public function on the calling
 * thread and under the generators' lock, takes the next blocks it needs (the
 * count depends on the op, dtype and size only) and advances the counter
 * past them; its kernel then computes value i from block start + i / per_block
 * alone.  So results depend only on the generator's state at push time and on
 * program order of random ops on that device: not on the engine, the number
 * of workers, the order ops happen to run in, or other ops in between.  The
 * same state gives the same numbers on every device.
 *
 * Values per 128-bit block: float32 uniform 4 (24 bits each), float64 uniform
 * 2 (53 bits), integer uniform 2 (64 bits each, scaled by a 64x64->128
 * multiply; the bias is below range / 2^64), bernoulli 4 (32 bits compared
 * with p), normal 4 for float32 and 2 for float64 (Box-Muller on pairs of
 * uniforms, computed in double), permutation 2 (Fisher-Yates, one 64-bit draw
 * per position, on one worker).
 */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "ops/internal.h"

enum { PHILOX_ROUNDS = 10 };
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* Philox 4x32-10 of ctr under key into out (exported for the tests'
 * known-answer check). */
void td__philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);
void td__philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3], k0 = key[0], k1 = key[1];
    for (int r = 0; r < PHILOX_ROUNDS; r++) {
        if (r) k0 += PHILOX_W0, k1 += PHILOX_W1;
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1, n3 = (uint32_t)p0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

static inline void block_words(uint64_t seed, uint64_t blk, uint32_t w[4]) {
    const uint32_t ctr[4] = {(uint32_t)blk, (uint32_t)(blk >> 32), 0, 0};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    td__philox4x32_10(ctr, key, w);
}

/* The high 64 bits of a * b. */
static inline uint64_t mulhi64(uint64_t a, uint64_t b) {
    uint64_t al = (uint32_t)a, ah = a >> 32, bl = (uint32_t)b, bh = b >> 32;
    uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    uint64_t mid = (ll >> 32) + (uint32_t)lh + (uint32_t)hl;
    return hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
}

/* ---- generators ---- */
typedef struct {
    uint64_t seed, counter;
} generator;

/* One per device slot; GPU ids share the CPU bound (the device table checks
 * presence).  All protected by one lock: the critical sections are a few
 * loads and stores. */
static generator gens[2][TD__MAX_CPU_DEVICES];
static td__spin gens_lock;

static generator *gen_of(td_device dev) {
    if (dev.kind < 0 || dev.kind > 1 || dev.id < 0 || dev.id >= TD__MAX_CPU_DEVICES) return NULL;
    if (!td__device_find(dev)) return NULL;
    return &gens[dev.kind][dev.id];
}

static td_status no_device(const char *who, td_device dev) {
    return td__fail(TD_EDEVICE, "%s: device %s:%d is not present (td_device_count(%s) is %d)", who,
                    dev.kind == TD_GPU ? "gpu" : dev.kind == TD_CPU ? "cpu" : "unknown", dev.id,
                    dev.kind == TD_GPU ? "TD_GPU" : "TD_CPU", td_device_count(dev.kind == TD_GPU ? TD_GPU : TD_CPU));
}

void td_seed(uint64_t seed) {
    td__spin_lock(&gens_lock);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < TD__MAX_CPU_DEVICES; i++) gens[k][i].seed = seed, gens[k][i].counter = 0;
    td__spin_unlock(&gens_lock);
}

td_status td_rng_get_state(td_device dev, td_rng_state *out) {
    if (!out) return td__fail(TD_EINVAL, "td_rng_get_state: out is NULL");
    generator *g = gen_of(dev);
    if (!g) return no_device("td_rng_get_state", dev);
    td__spin_lock(&gens_lock);
    out->seed = g->seed;
    out->counter = g->counter;
    td__spin_unlock(&gens_lock);
    return TD_OK;
}

td_status td_rng_set_state(td_device dev, const td_rng_state *state) {
    if (!state) return td__fail(TD_EINVAL, "td_rng_set_state: state is NULL");
    generator *g = gen_of(dev);
    if (!g) return no_device("td_rng_set_state", dev);
    td__spin_lock(&gens_lock);
    g->seed = state->seed;
    g->counter = state->counter;
    td__spin_unlock(&gens_lock);
    return TD_OK;
}

/* Takes n blocks of dev's generator: the seed and the first block. */
static void reserve(generator *g, uint64_t n, uint64_t *seed, uint64_t *start) {
    td__spin_lock(&gens_lock);
    *seed = g->seed;
    *start = g->counter;
    g->counter += n;
    td__spin_unlock(&gens_lock);
}

/* ---- the op ---- */
enum { RND_UNIFORM_F, RND_UNIFORM_I, RND_NORMAL, RND_BERNOULLI, RND_PERMUTATION };

typedef struct {
    int kind;
    int dtype;
    uint64_t seed, start; /* the key, and the first block */
    double a, b;          /* uniform: lo, hi; normal: mean, std; bernoulli: p */
    int64_t ilo;          /* integer uniform: the lowest value */
    uint64_t irange;      /* integer uniform: the number of values (0: 2^64) */
    int64_t n;
} rnd_attrs;
_Static_assert(sizeof(rnd_attrs) <= TD__ATTR_BYTES, "rnd_attrs must fit a call's attributes");

static int per_block(int kind, int dtype) {
    switch (kind) {
    case RND_UNIFORM_F:
    case RND_NORMAL: return dtype == TD_F32 ? 4 : 2;
    case RND_BERNOULLI: return 4;
    default: return 2; /* 64-bit draws */
    }
}

typedef struct {
    const rnd_attrs *at;
    char *p;
    int vpb;
} rnd_job;

static void store_int(int dt, char *q, int64_t v) {
    switch (dt) {
    case TD_F32: *(float *)q = (float)v; break;
    case TD_F64: *(double *)q = (double)v; break;
    case TD_I32: *(int32_t *)q = (int32_t)v; break;
    case TD_I64: *(int64_t *)q = v; break;
    default: *(uint8_t *)q = (uint8_t)v; break;
    }
}

static const double TWO_PI = 6.283185307179586476925286766559;

static void rnd_chunk(void *arg, int64_t b, int64_t e) {
    const rnd_job *j = arg;
    const rnd_attrs *at = j->at;
    int64_t n = at->n;
    size_t es = td_dtype_size(at->dtype);
    for (int64_t blk = b; blk < e; blk++) {
        uint32_t w[4];
        block_words(at->seed, at->start + (uint64_t)blk, w);
        int64_t i0 = blk * j->vpb, m = n - i0 < j->vpb ? n - i0 : j->vpb;
        char *q = j->p + (size_t)i0 * es;
        uint64_t x64[2] = {w[0] | (uint64_t)w[1] << 32, w[2] | (uint64_t)w[3] << 32};
        switch (at->kind) {
        case RND_UNIFORM_F:
            if (at->dtype == TD_F32) {
                for (int64_t k = 0; k < m; k++) {
                    double u = (double)(w[k] >> 8) * 0x1p-24;
                    float v = (float)(at->a + (at->b - at->a) * u);
                    /* Rounding to float32 may reach hi or fall below lo: step
                     * back inside (the wrapper checked a float32 lies there). */
                    while ((double)v >= at->b) v = nextafterf(v, -INFINITY);
                    while ((double)v < at->a) v = nextafterf(v, INFINITY);
                    ((float *)q)[k] = v;
                }
            } else {
                for (int64_t k = 0; k < m; k++) {
                    double u = (double)(x64[k] >> 11) * 0x1p-53;
                    double v = at->a + (at->b - at->a) * u;
                    if (v >= at->b) v = nextafter(at->b, -INFINITY);
                    if (v < at->a) v = at->a;
                    ((double *)q)[k] = v;
                }
            }
            break;
        case RND_UNIFORM_I:
            for (int64_t k = 0; k < m; k++) {
                uint64_t off = at->irange ? mulhi64(x64[k], at->irange) : x64[k];
                store_int(at->dtype, q + (size_t)k * es, (int64_t)((uint64_t)at->ilo + off));
            }
            break;
        case RND_BERNOULLI:
            for (int64_t k = 0; k < m; k++)
                store_int(at->dtype, q + (size_t)k * es, (double)w[k] * 0x1p-32 < at->a ? 1 : 0);
            break;
        case RND_NORMAL:
            for (int64_t k = 0; k < m; k++) {
                double u1, u2;
                if (at->dtype == TD_F32) {
                    int pair = (int)(k / 2) * 2;
                    u1 = ((double)w[pair] + 1.0) * 0x1p-32; /* (0, 1]: log(u1) is finite */
                    u2 = (double)w[pair + 1] * 0x1p-32;
                } else {
                    u1 = ((double)(x64[0] >> 11) + 1.0) * 0x1p-53;
                    u2 = (double)(x64[1] >> 11) * 0x1p-53;
                }
                double r = sqrt(-2.0 * log(u1));
                double z = (k & 1) ? r * sin(TWO_PI * u2) : r * cos(TWO_PI * u2);
                double v = at->a + at->b * z;
                if (at->dtype == TD_F32) ((float *)q)[k] = (float)v;
                else ((double *)q)[k] = v;
            }
            break;
        default: break;
        }
    }
}

/* Fisher-Yates on one worker: position i (from n-1 down to 1) swaps with a
 * uniform j in [0, i], drawn from the 64 bits of value i of the stream. */
static void permute(const rnd_attrs *at, int64_t *p) {
    int64_t n = at->n;
    for (int64_t i = 0; i < n; i++) p[i] = i;
    uint32_t w[4];
    uint64_t cur = UINT64_MAX;
    for (int64_t i = n - 1; i >= 1; i--) {
        uint64_t blk = (uint64_t)i / 2;
        if (blk != cur) block_words(at->seed, at->start + blk, w), cur = blk;
        uint64_t x = (i & 1) ? (w[2] | (uint64_t)w[3] << 32) : (w[0] | (uint64_t)w[1] << 32);
        int64_t j = (int64_t)mulhi64(x, (uint64_t)i + 1);
        int64_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
}

static td_status rnd_kernel(const td__call *c, const td_exec *ex) {
    const rnd_attrs *at = (const rnd_attrs *)c->attrs;
    if (at->n == 0) return TD_OK;
    if (at->kind == RND_PERMUTATION) {
        permute(at, (int64_t *)td__array_ptr(c->out));
        return TD_OK;
    }
    rnd_job j = {at, td__array_ptr(c->out), per_block(at->kind, at->dtype)};
    int64_t nblocks = (at->n + j.vpb - 1) / j.vpb;
    return td_parallel_for(ex, nblocks, 4096, rnd_chunk, &j);
}

static td_status rnd_infer(const td__call *c, int *dtype, int *ndim, int64_t *shape) {
    *dtype = c->out->dtype;
    *ndim = c->out->ndim;
    memcpy(shape, c->out->shape, sizeof(int64_t) * (size_t)*ndim);
    return TD_OK;
}

static const td__opdesc desc_uniform = {.name = "random_uniform", .api = "td_random_uniform", .n_in = 0,
                                        .infer = rnd_infer, .kernel = {rnd_kernel, NULL}};
static const td__opdesc desc_normal = {.name = "random_normal", .api = "td_random_normal", .n_in = 0,
                                       .infer = rnd_infer, .kernel = {rnd_kernel, NULL}};
static const td__opdesc desc_bernoulli = {.name = "random_bernoulli", .api = "td_random_bernoulli", .n_in = 0,
                                          .infer = rnd_infer, .kernel = {rnd_kernel, NULL}};
static const td__opdesc desc_permutation = {.name = "random_permutation", .api = "td_random_permutation",
                                            .n_in = 0, .infer = rnd_infer, .kernel = {rnd_kernel, NULL}};

/* Allocates the result, takes its blocks and pushes the op; at must be
 * filled but for seed, start and n. */
static td_array *draw(const td__opdesc *d, rnd_attrs *at, int ndim, const int64_t *shape, td_device dev) {
    generator *g = gen_of(dev);
    if (!g) {
        no_device(d->api, dev);
        return NULL;
    }
    td_array *out = td__array_new(at->dtype, ndim, shape, dev, d->api);
    if (!out) return NULL;
    td__array_count_output(out); /* back-pressure: a new output of a pending op */
    at->n = td_numel(out);
    int vpb = per_block(at->kind, at->dtype);
    reserve(g, (uint64_t)((at->n + vpb - 1) / vpb), &at->seed, &at->start);
    if (td__invoke_out(d, NULL, 0, at, sizeof *at, out, 1) != TD_OK) {
        td__array_unref(out);
        return NULL;
    }
    return td__array_give(out);
}

static int is_float_dt(int dt) { return dt == TD_F32 || dt == TD_F64; }

td_array *td_random_uniform(int dtype, int ndim, const int64_t *shape, double lo, double hi, td_device dev) {
    const char *who = "td_random_uniform";
    if (td__check_dtype(who, dtype) != TD_OK || td__check_shape(who, ndim, shape) != TD_OK) return NULL;
    if (!(lo < hi) || !isfinite(lo) || !isfinite(hi) || !isfinite(hi - lo)) {
        td__fail(TD_EINVAL, "td_random_uniform: need finite lo < hi (got lo %g, hi %g)", lo, hi);
        return NULL;
    }
    rnd_attrs at = {.kind = RND_UNIFORM_F, .dtype = dtype, .a = lo, .b = hi};
    if (dtype == TD_F32) {
        float f = (float)lo; /* the least float32 >= lo must be below hi */
        if ((double)f < lo) f = nextafterf(f, INFINITY);
        if (!((double)f < hi)) {
            td__fail(TD_EINVAL, "td_random_uniform: no float32 lies in [%.17g, %.17g)", lo, hi);
            return NULL;
        }
    }
    if (!is_float_dt(dtype)) {
        /* The integers k with lo <= k < hi, which must fit the dtype. */
        double clo = ceil(lo), chi = ceil(hi);
        double dmin = dtype == TD_U8 ? 0.0 : dtype == TD_I32 ? -2147483648.0 : -9223372036854775808.0;
        double dmax = dtype == TD_U8 ? 256.0 : dtype == TD_I32 ? 2147483648.0 : 9223372036854775808.0;
        if (clo >= chi) {
            td__fail(TD_EINVAL, "td_random_uniform: no integer lies in [%g, %g)", lo, hi);
            return NULL;
        }
        if (clo < dmin || chi > dmax) {
            td__fail(TD_EINVAL, "td_random_uniform: [%g, %g) is outside the range of %s", lo, hi,
                     td_dtype_name(dtype));
            return NULL;
        }
        at.kind = RND_UNIFORM_I;
        at.ilo = (int64_t)clo;
        uint64_t uhi = chi >= 9223372036854775808.0 ? (uint64_t)1 << 63 : (uint64_t)(int64_t)chi;
        at.irange = uhi - (uint64_t)at.ilo; /* 0 means 2^64 values */
    }
    return draw(&desc_uniform, &at, ndim, shape, dev);
}

td_array *td_random_normal(int dtype, int ndim, const int64_t *shape, double mean, double std, td_device dev) {
    const char *who = "td_random_normal";
    if (td__check_dtype(who, dtype) != TD_OK || td__check_shape(who, ndim, shape) != TD_OK) return NULL;
    if (!is_float_dt(dtype)) {
        td__fail(TD_EDTYPE, "td_random_normal: dtype must be TD_F32 or TD_F64, not %s", td_dtype_name(dtype));
        return NULL;
    }
    if (!isfinite(mean) || !isfinite(std) || std < 0) {
        td__fail(TD_EINVAL, "td_random_normal: need a finite mean and a finite std >= 0 (got mean %g, std %g)", mean,
                 std);
        return NULL;
    }
    rnd_attrs at = {.kind = RND_NORMAL, .dtype = dtype, .a = mean, .b = std};
    return draw(&desc_normal, &at, ndim, shape, dev);
}

td_array *td_random_bernoulli(int dtype, int ndim, const int64_t *shape, double p, td_device dev) {
    const char *who = "td_random_bernoulli";
    if (td__check_dtype(who, dtype) != TD_OK || td__check_shape(who, ndim, shape) != TD_OK) return NULL;
    if (!(p >= 0.0 && p <= 1.0)) {
        td__fail(TD_EINVAL, "td_random_bernoulli: p must be in [0, 1], not %g", p);
        return NULL;
    }
    rnd_attrs at = {.kind = RND_BERNOULLI, .dtype = dtype, .a = p};
    return draw(&desc_bernoulli, &at, ndim, shape, dev);
}

td_array *td_random_permutation(int64_t n, td_device dev) {
    if (n < 0) {
        td__fail(TD_EINVAL, "td_random_permutation: n must be at least 0, not %" PRId64, n);
        return NULL;
    }
    rnd_attrs at = {.kind = RND_PERMUTATION, .dtype = TD_I64};
    return draw(&desc_permutation, &at, 1, &n, dev);
}
