/* Random numbers (suite 'random').
 *
 * - Philox 4x32-10 against the published known-answer vectors of Random123,
 *   and the documented mapping of blocks to values.
 * - Reproducibility: the same seed gives the same bits on the naive engine and
 *   on 1 to 4 workers, whatever non-random ops are pushed in between and in
 *   what order; td_rng_get_state / td_rng_set_state replay a draw; each op
 *   advances the counter, at push time, by the documented number of blocks.
 * - Statistics on millions of values, with bounds of 6 standard errors (a
 *   false failure about once in 10^8 runs per bound; the seeds are fixed, so
 *   a run is reproducible): uniform mean, variance and a chi-square over
 *   bins; normal mean, standard deviation, skewness, kurtosis and quantiles;
 *   bernoulli frequencies; integer uniform covering its range; permutations.
 * - Bad arguments: status and message, and the counter left alone.
 */
#include "ndarray/nd.h"

/* ops/random.c's block function, exported for this check. */
extern void td__philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

static td_rng_state state_of(td_device dev) {
    td_rng_state s;
    td_status st = td_rng_get_state(dev, &s);
    cr_assert_eq(st, TD_OK, "td_rng_get_state: %s", td_last_error());
    return s;
}

/* The host values of a (as doubles). */
static double *host_values(td_array *a) {
    nd_ref r = nd_read(a);
    double *v = malloc(sizeof(double) * (size_t)(r.n > 0 ? r.n : 1));
    memcpy(v, r.f, sizeof(double) * (size_t)r.n);
    nd_ref_free(&r);
    return v;
}

/* Host bytes of a (malloc'ed). */
static void *host_bytes(td_array *a, size_t *nb) {
    cr_assert_not_null(a, "%s", td_last_error());
    *nb = td_dtype_size(td_dtype(a)) * (size_t)td_numel(a);
    void *p = malloc(*nb + 1);
    cr_assert_eq(td_to_host(a, p, *nb), TD_OK, "%s", td_last_error());
    return p;
}

Test(random, philox_matches_the_published_known_answers, .timeout = 10) {
    /* Random123's kat_vectors for philox4x32 with 10 rounds. */
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e, 0xa20bc7c6,
         0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb, 0x5001e420,
         0x24126ea1},
    };
    for (int i = 0; i < 3; i++) {
        uint32_t out[4];
        td__philox4x32_10(kat[i], kat[i] + 4, out);
        for (int k = 0; k < 4; k++)
            cr_assert_eq(out[k], kat[i][6 + k], "vector %d word %d: %08x, expected %08x", i, k, out[k], kat[i][6 + k]);
    }
}

/* Block k of seed s is philox({lo(k), hi(k), 0, 0}, {lo(s), hi(s)}); float32
 * uniforms take the top 24 bits of each word, float64 ones 53 bits of each
 * pair, bernoulli compares word / 2^32 with p. */
Test(random, values_follow_the_documented_mapping_of_blocks, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    uint64_t seed = 0x0123456789abcdefull;
    td_seed(seed);
    td_rng_state st = {seed, 1000};
    cr_assert_eq(td_rng_set_state(td_cpu(0), &st), TD_OK);
    td_array *u = td_random_uniform(TD_F32, 1, (int64_t[]){6}, 0, 1, td_cpu(0));  /* blocks 1000, 1001 */
    td_array *d = td_random_uniform(TD_F64, 1, (int64_t[]){3}, 0, 1, td_cpu(0));  /* blocks 1002, 1003 */
    td_array *b = td_random_bernoulli(TD_U8, 1, (int64_t[]){4}, 0.5, td_cpu(0)); /* block 1004 */
    cr_assert_eq(state_of(td_cpu(0)).counter, 1005);
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t w[5][4];
    for (int k = 0; k < 5; k++) {
        const uint32_t ctr[4] = {1000u + (uint32_t)k, 0, 0, 0};
        td__philox4x32_10(ctr, key, w[k]);
    }
    float uf[6];
    cr_assert_eq(td_to_host(u, uf, sizeof uf), TD_OK);
    for (int i = 0; i < 6; i++) cr_assert_eq(uf[i], (float)((double)(w[i / 4][i % 4] >> 8) * 0x1p-24), "value %d", i);
    double df[3];
    cr_assert_eq(td_to_host(d, df, sizeof df), TD_OK);
    for (int i = 0; i < 3; i++) {
        const uint32_t *ww = w[2 + i / 2] + 2 * (i % 2);
        uint64_t x = ww[0] | (uint64_t)ww[1] << 32;
        cr_assert_eq(df[i], (double)(x >> 11) * 0x1p-53, "value %d", i);
    }
    uint8_t bf[4];
    cr_assert_eq(td_to_host(b, bf, sizeof bf), TD_OK);
    for (int i = 0; i < 4; i++) cr_assert_eq(bf[i], (double)w[4][i] * 0x1p-32 < 0.5 ? 1 : 0, "value %d", i);
    td_scope_end();
    nd_finish();
}

/* ---- reproducibility ---- */
enum { NDRAW = 7 };
typedef struct {
    void *bytes[NDRAW];
    size_t nb[NDRAW];
} draws;

/* Random ops in a fixed order, with non-random ops around them in an order
 * chosen by `variant`. */
static void random_program(int engine, int workers, int variant, draws *out) {
    nd_start(engine, workers);
    td_scope_begin();
    td_seed(20240611);
    td_array *x = td_ones(TD_F32, 2, (int64_t[]){1000, 1000}, td_cpu(0));
    td_array *r[NDRAW];
    if (variant == 1) td_sum(td_add(x, x), 0, TD_DROPDIMS);
    r[0] = td_random_uniform(TD_F32, 2, (int64_t[]){1001, 1003}, -1, 1, td_cpu(0));
    if (variant == 0) td_mul(x, r[0]);
    r[1] = td_random_normal(TD_F64, 1, (int64_t[]){500001}, 2, 3, td_cpu(0));
    if (variant == 1) {
        td_mean(r[1], 0, TD_DROPDIMS);
        td_add_scalar(td_mul_scalar(x, 0.5), 1);
    }
    r[2] = td_random_bernoulli(TD_U8, 1, (int64_t[]){300007}, 0.25, td_cpu(0));
    r[3] = td_random_uniform(TD_I64, 2, (int64_t[]){777, 513}, -1e12, 1e12, td_cpu(0));
    if (variant == 0) td_max(td_astype(r[2], TD_F32), TD_ALL_AXES, TD_DROPDIMS);
    r[4] = td_random_permutation(100003, td_cpu(0));
    r[5] = td_random_normal(TD_F32, 3, (int64_t[]){3, 100, 1001}, -1, 0.5, td_cpu(0));
    if (variant == 1) td_sub(x, x);
    r[6] = td_random_uniform(TD_F64, 1, (int64_t[]){400001}, 10, 20, td_cpu(0));
    for (int i = 0; i < NDRAW; i++) out->bytes[i] = host_bytes(r[i], &out->nb[i]);
    td_scope_end();
    nd_finish();
}

Test(random, same_seed_same_bits_on_every_engine_worker_count_and_op_order, .timeout = 120) {
    draws first, other;
    random_program(TD_ENGINE_NAIVE, 1, 0, &first);
    int runs[][3] = {{TD_ENGINE_NAIVE, 1, 1},    {TD_ENGINE_THREADED, 1, 0}, {TD_ENGINE_THREADED, 2, 1},
                     {TD_ENGINE_THREADED, 3, 0}, {TD_ENGINE_THREADED, 4, 1}};
    for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
        random_program(runs[k][0], runs[k][1], runs[k][2], &other);
        for (int i = 0; i < NDRAW; i++) {
            cr_assert_eq(other.nb[i], first.nb[i]);
            cr_assert(memcmp(other.bytes[i], first.bytes[i], first.nb[i]) == 0,
                      "draw %d differs on the %s engine with %d worker(s), variant %d", i,
                      tt_engine_name(runs[k][0]), runs[k][1], runs[k][2]);
            free(other.bytes[i]);
        }
    }
    for (int i = 0; i < NDRAW; i++) free(first.bytes[i]);
}

Test(random, get_and_set_state_replay_a_draw, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    td_seed(7);
    td_rng_state s0 = state_of(td_cpu(0));
    cr_assert_eq(s0.seed, 7);
    cr_assert_eq(s0.counter, 0);
    td_array *a = td_random_uniform(TD_F32, 1, (int64_t[]){1001}, 0, 1, td_cpu(0)); /* 251 blocks */
    td_rng_state s1 = state_of(td_cpu(0));
    cr_assert_eq(s1.counter, 251, "a float32 uniform of 1001 values takes 251 blocks");
    td_array *b = td_random_normal(TD_F64, 2, (int64_t[]){10, 11}, 0, 1, td_cpu(0)); /* 55 blocks */
    cr_assert_eq(state_of(td_cpu(0)).counter, 251 + 55);
    /* Replay b, then a. */
    cr_assert_eq(td_rng_set_state(td_cpu(0), &s1), TD_OK);
    td_array *b2 = td_random_normal(TD_F64, 2, (int64_t[]){10, 11}, 0, 1, td_cpu(0));
    cr_assert_eq(td_rng_set_state(td_cpu(0), &s0), TD_OK);
    td_array *a2 = td_random_uniform(TD_F32, 1, (int64_t[]){1001}, 0, 1, td_cpu(0));
    size_t n1, n2;
    void *pa = host_bytes(a, &n1), *pa2 = host_bytes(a2, &n2);
    cr_assert(n1 == n2 && memcmp(pa, pa2, n1) == 0, "replaying the state replays the draw");
    free(pa), free(pa2);
    void *pb = host_bytes(b, &n1), *pb2 = host_bytes(b2, &n2);
    cr_assert(n1 == n2 && memcmp(pb, pb2, n1) == 0, "replaying the state replays the draw");
    free(pb), free(pb2);
    /* The same state with another shape of the same size: the same values. */
    cr_assert_eq(td_rng_set_state(td_cpu(0), &s0), TD_OK);
    td_array *a3 = td_random_uniform(TD_F32, 2, (int64_t[]){7, 143}, 0, 1, td_cpu(0));
    pa = host_bytes(a, &n1), pa2 = host_bytes(a3, &n2);
    cr_assert(n1 == n2 && memcmp(pa, pa2, n1) == 0);
    free(pa), free(pa2);
    /* td_seed resets the counter; a different seed gives different values. */
    td_seed(7);
    cr_assert_eq(state_of(td_cpu(0)).counter, 0);
    td_array *a4 = td_random_uniform(TD_F32, 1, (int64_t[]){1001}, 0, 1, td_cpu(0));
    td_seed(8);
    td_array *c = td_random_uniform(TD_F32, 1, (int64_t[]){1001}, 0, 1, td_cpu(0));
    td_array *c2 = td_random_uniform(TD_F32, 1, (int64_t[]){1001}, 0, 1, td_cpu(0));
    double *va = host_values(a), *va4 = host_values(a4), *vc = host_values(c), *vc2 = host_values(c2);
    int same_a4 = 0, same_c = 0, same_c2 = 0;
    for (int i = 0; i < 1001; i++) same_a4 += va[i] == va4[i], same_c += va[i] == vc[i], same_c2 += vc[i] == vc2[i];
    cr_assert_eq(same_a4, 1001, "the same seed gives the same values");
    cr_assert_lt(same_c, 5, "another seed gives other values (%d equal)", same_c);
    cr_assert_lt(same_c2, 5, "consecutive draws differ (%d equal)", same_c2);
    free(va), free(va4), free(vc), free(vc2);
    td_scope_end();
    nd_finish();
}

/* Each op takes its blocks when it is pushed: ceil(n / values per block). */
Test(random, counters_advance_at_push_time_by_the_blocks_drawn, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    td_seed(1);
    uint64_t c = 0;
#define STEP(EXPR, BLOCKS)                                                                                    \
    do {                                                                                                      \
        cr_assert_not_null(EXPR, "%s", td_last_error());                                                      \
        c += (BLOCKS);                                                                                        \
        cr_assert_eq(state_of(td_cpu(0)).counter, c, "after " #EXPR);                                         \
    } while (0)
    STEP(td_random_uniform(TD_F32, 1, (int64_t[]){10}, 0, 1, td_cpu(0)), 3);
    STEP(td_random_uniform(TD_F64, 1, (int64_t[]){10}, 0, 1, td_cpu(0)), 5);
    STEP(td_random_uniform(TD_I32, 1, (int64_t[]){9}, 0, 10, td_cpu(0)), 5);
    STEP(td_random_uniform(TD_U8, 2, (int64_t[]){0, 5}, 0, 10, td_cpu(0)), 0);
    STEP(td_random_normal(TD_F32, 1, (int64_t[]){10}, 0, 1, td_cpu(0)), 3);
    STEP(td_random_normal(TD_F64, 0, NULL, 0, 1, td_cpu(0)), 1);
    STEP(td_random_bernoulli(TD_F64, 1, (int64_t[]){9}, 0.5, td_cpu(0)), 3);
    STEP(td_random_permutation(7, td_cpu(0)), 4);
    STEP(td_random_permutation(0, td_cpu(0)), 0);
#undef STEP
    /* A slow op holds the runtime's workers busy: the counter still moves at push. */
    td_array *big = td_random_normal(TD_F64, 1, (int64_t[]){4000000}, 0, 1, td_cpu(0));
    cr_assert_eq(state_of(td_cpu(0)).counter, c + 2000000, "taken at push time, not when the op runs");
    td_release(big);
    td_scope_end();
    nd_finish();
}

/* Threads drawing at once take disjoint ranges of blocks. */
struct drawer {
    int n;
    int ok;
};

static void *drawer_main(void *p) {
    struct drawer *d = p;
    d->ok = 1;
    for (int i = 0; i < d->n; i++) {
        td_array *a = td_random_uniform(TD_F32, 1, (int64_t[]){40}, 0, 1, td_cpu(0)); /* 10 blocks */
        if (!a) d->ok = 0;
        td_release(a);
    }
    return NULL;
}

Test(random, concurrent_draws_from_several_threads_take_disjoint_blocks, .timeout = 60) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_seed(3);
    pthread_t th[4];
    struct drawer d[4];
    for (int i = 0; i < 4; i++) {
        d[i].n = 200;
        cr_assert_eq(pthread_create(&th[i], NULL, drawer_main, &d[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_assert(d[i].ok);
    }
    cr_assert_eq(state_of(td_cpu(0)).counter, 4 * 200 * 10);
    nd_finish();
}

/* ---- statistics ---- */
static void check_uniform(const double *v, int64_t n, double lo, double hi, const char *what) {
    double mean = 0, m2 = 0, mn = INFINITY, mx = -INFINITY;
    enum { BINS = 16 };
    int64_t bins[BINS] = {0};
    for (int64_t i = 0; i < n; i++) {
        mean += v[i];
        mn = fmin(mn, v[i]);
        mx = fmax(mx, v[i]);
        int b = (int)((v[i] - lo) / (hi - lo) * BINS);
        bins[b < 0 ? 0 : b >= BINS ? BINS - 1 : b]++;
    }
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++) {
        double d = v[i] - mean;
        m2 += d * d;
    }
    m2 /= (double)n;
    double w = hi - lo, var = w * w / 12, mu4 = w * w * w * w / 80;
    cr_assert(mn >= lo && mx < hi, "%s: values in [%g, %g), found min %.17g max %.17g", what, lo, hi, mn, mx);
    cr_assert(fabs(mean - (lo + hi) / 2) <= 6 * sqrt(var / (double)n), "%s: mean %.9g, expected %.9g", what, mean,
              (lo + hi) / 2);
    cr_assert(fabs(m2 - var) <= 6 * sqrt((mu4 - var * var) / (double)n), "%s: variance %.9g, expected %.9g", what, m2,
              var);
    double chi2 = 0, e = (double)n / BINS;
    for (int b = 0; b < BINS; b++) chi2 += ((double)bins[b] - e) * ((double)bins[b] - e) / e;
    /* 15 degrees of freedom: P(chi2 > 60) is about 1e-7. */
    cr_assert_lt(chi2, 60.0, "%s: chi-square over %d bins is %.1f", what, BINS, chi2);
}

Test(random, uniform_moments_and_bins_are_within_bounds, .timeout = 60) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_seed(nd_seed("uniform moments", 11));
    td_scope_begin();
    const int64_t n = 2000000;
    for (int dt = TD_F32; dt <= TD_F64; dt++) {
        double *v = host_values(td_random_uniform(dt, 1, &n, -2, 3, td_cpu(0)));
        check_uniform(v, n, -2, 3, nd_dt(dt));
        free(v);
    }
    /* A narrow interval: rounding never reaches hi. */
    double *v = host_values(td_random_uniform(TD_F32, 1, &n, 1, 1 + 0x1p-20, td_cpu(0)));
    for (int64_t i = 0; i < n; i++) cr_assert(v[i] >= 1 && v[i] < 1 + 0x1p-20, "value %.17g", v[i]);
    free(v);
    v = host_values(td_random_uniform(TD_F32, 1, &n, 0.1, 0.3, td_cpu(0)));
    for (int64_t i = 0; i < n; i++) cr_assert(v[i] >= 0.1 && v[i] < 0.3, "value %.17g outside [0.1, 0.3)", v[i]);
    free(v);
    td_scope_end();
    nd_finish();
}

/* The standard normal distribution function. */
static double phi(double x) { return 0.5 * erfc(-x / sqrt(2.0)); }

Test(random, normal_moments_and_quantiles_are_within_bounds, .timeout = 60) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_seed(nd_seed("normal moments", 12));
    td_scope_begin();
    const int64_t n = 2000000;
    const double mu = 1.5, sigma = 2;
    for (int dt = TD_F32; dt <= TD_F64; dt++) {
        double *v = host_values(td_random_normal(dt, 2, (int64_t[]){1000, 2000}, mu, sigma, td_cpu(0)));
        double mean = 0, m2 = 0, m3 = 0, m4 = 0;
        for (int64_t i = 0; i < n; i++) mean += v[i];
        mean /= (double)n;
        for (int64_t i = 0; i < n; i++) {
            double z = (v[i] - mean) / sigma;
            m2 += z * z, m3 += z * z * z, m4 += z * z * z * z;
        }
        double sd = sigma * sqrt(m2 / (double)n), skew = m3 / (double)n, kurt = m4 / (double)n;
        const char *w = nd_dt(dt);
        cr_assert(fabs(mean - mu) <= 6 * sigma / sqrt((double)n), "%s: mean %.9g", w, mean);
        cr_assert(fabs(sd - sigma) <= 6 * sigma / sqrt(2.0 * (double)n), "%s: std %.9g", w, sd);
        cr_assert(fabs(skew) <= 6 * sqrt(6.0 / (double)n), "%s: skewness %.9g", w, skew);
        cr_assert(fabs(kurt - 3) <= 6 * sqrt(24.0 / (double)n), "%s: kurtosis %.9g", w, kurt);
        static const double zs[] = {-3, -2, -1, -0.5, 0, 0.5, 1, 2, 3};
        for (size_t q = 0; q < sizeof zs / sizeof zs[0]; q++) {
            int64_t below = 0;
            for (int64_t i = 0; i < n; i++) below += v[i] < mu + zs[q] * sigma;
            double p = phi(zs[q]), f = (double)below / (double)n;
            cr_assert(fabs(f - p) <= 6 * sqrt(p * (1 - p) / (double)n), "%s: P(z < %g) is %.6f, expected %.6f", w,
                      zs[q], f, p);
        }
        for (int64_t i = 0; i < n; i++) cr_assert(isfinite(v[i]));
        free(v);
    }
    /* std 0: every value is the mean. */
    double *v = host_values(td_random_normal(TD_F64, 1, (int64_t[]){1000}, 4, 0, td_cpu(0)));
    for (int i = 0; i < 1000; i++) cr_assert_eq(v[i], 4.0);
    free(v);
    td_scope_end();
    nd_finish();
}

Test(random, bernoulli_frequencies_match_p, .timeout = 60) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_seed(nd_seed("bernoulli", 13));
    td_scope_begin();
    const int64_t n = 1000003;
    static const double ps[] = {0.3, 0.5, 0.999};
    ND_FOR_EACH_DTYPE(dt) {
        for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
            double *v = host_values(td_random_bernoulli(dt, 1, &n, ps[k], td_cpu(0)));
            int64_t ones = 0;
            for (int64_t i = 0; i < n; i++) {
                cr_assert(v[i] == 0 || v[i] == 1, "%s: value %g", nd_dt(dt), v[i]);
                ones += v[i] == 1;
            }
            double f = (double)ones / (double)n, p = ps[k];
            cr_assert(fabs(f - p) <= 6 * sqrt(p * (1 - p) / (double)n), "%s p=%g: frequency %.6f", nd_dt(dt), p, f);
            free(v);
        }
        double *z = host_values(td_random_bernoulli(dt, 1, (int64_t[]){10000}, 0, td_cpu(0)));
        double *o = host_values(td_random_bernoulli(dt, 1, (int64_t[]){10000}, 1, td_cpu(0)));
        for (int i = 0; i < 10000; i++) cr_assert(z[i] == 0 && o[i] == 1, "p = 0 gives 0, p = 1 gives 1");
        free(z), free(o);
    }
    td_scope_end();
    nd_finish();
}

Test(random, integer_uniform_covers_its_range_evenly, .timeout = 60) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_seed(nd_seed("integer uniform", 14));
    td_scope_begin();
    const int64_t n = 700000;
    for (int dt = TD_I32; dt <= TD_U8; dt++) {
        double lo = dt == TD_U8 ? 3 : -3;
        nd_ref r = nd_read(td_random_uniform(dt, 1, &n, lo, lo + 7, td_cpu(0)));
        cr_assert_eq(r.dtype, dt);
        int64_t count[7] = {0};
        for (int64_t i = 0; i < n; i++) {
            cr_assert(r.i[i] >= (int64_t)lo && r.i[i] < (int64_t)lo + 7, "%s: value %lld", nd_dt(dt),
                      (long long)r.i[i]);
            count[r.i[i] - (int64_t)lo]++;
        }
        for (int k = 0; k < 7; k++)
            cr_assert(fabs((double)count[k] - (double)n / 7) <= 6 * sqrt((double)n * (1.0 / 7) * (6.0 / 7)),
                      "%s: value %d drawn %lld times of %lld", nd_dt(dt), k, (long long)count[k], (long long)n);
        nd_ref_free(&r);
    }
    /* Every u8 value; non-integral bounds; float dtypes hold integers too. */
    nd_ref r = nd_read(td_random_uniform(TD_U8, 1, (int64_t[]){100000}, 0, 256, td_cpu(0)));
    int seen[256] = {0};
    for (int64_t i = 0; i < r.n; i++) seen[r.i[i]] = 1;
    for (int k = 0; k < 256; k++) cr_assert(seen[k], "u8 value %d never drawn", k);
    nd_ref_free(&r);
    r = nd_read(td_random_uniform(TD_I32, 1, (int64_t[]){10000}, 0.5, 3.5, td_cpu(0)));
    for (int64_t i = 0; i < r.n; i++)
        cr_assert(r.i[i] >= 1 && r.i[i] <= 3, "value %lld in {1, 2, 3}", (long long)r.i[i]);
    nd_ref_free(&r);
    /* int64 over wide ranges, and the whole int64 range. */
    r = nd_read(td_random_uniform(TD_I64, 1, (int64_t[]){200000}, -0x1p62, 0x1p62, td_cpu(0)));
    double mean = 0;
    for (int64_t i = 0; i < r.n; i++) {
        cr_assert(r.i[i] >= -((int64_t)1 << 62) && r.i[i] < ((int64_t)1 << 62));
        mean += (double)r.i[i] / 0x1p62;
    }
    mean /= (double)r.n;
    cr_assert(fabs(mean) <= 6 * sqrt(1.0 / 3 / (double)r.n), "int64 mean / 2^62 is %g", mean);
    nd_ref_free(&r);
    r = nd_read(td_random_uniform(TD_I64, 1, (int64_t[]){100000}, -0x1p63, 0x1p63, td_cpu(0)));
    int64_t neg = 0;
    for (int64_t i = 0; i < r.n; i++) neg += r.i[i] < 0;
    cr_assert(fabs((double)neg - 50000) <= 6 * sqrt(25000.0), "%lld negative values of 100000", (long long)neg);
    nd_ref_free(&r);
    td_scope_end();
    nd_finish();
}

Test(random, permutations_are_permutations_and_uniform, .timeout = 60) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_seed(nd_seed("permutations", 15));
    td_scope_begin();
    static const int64_t ns[] = {0, 1, 2, 1000, 100003};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        td_array *p = td_random_permutation(ns[k], td_cpu(0));
        cr_assert_not_null(p, "%s", td_last_error());
        cr_assert_eq(td_dtype(p), TD_I64);
        cr_assert_eq(td_ndim(p), 1);
        nd_ref r = nd_read(p);
        cr_assert_eq(r.n, ns[k]);
        char *seen = calloc((size_t)ns[k] + 1, 1);
        int64_t fixed = 0;
        for (int64_t i = 0; i < r.n; i++) {
            cr_assert(r.i[i] >= 0 && r.i[i] < ns[k] && !seen[r.i[i]], "not a permutation at %lld", (long long)i);
            seen[r.i[i]] = 1;
            fixed += r.i[i] == i;
        }
        if (ns[k] >= 1000) cr_assert_lt(fixed, 20, "%lld fixed points: not shuffled", (long long)fixed);
        free(seen);
        nd_ref_free(&r);
    }
    /* Each of the 6 orders of 3 elements equally often. */
    enum { DRAWS = 6000 };
    int64_t count[6] = {0};
    for (int i = 0; i < DRAWS; i++) {
        td_array *p = td_random_permutation(3, td_cpu(0));
        int64_t v[3];
        cr_assert_eq(td_to_host(p, v, sizeof v), TD_OK);
        td_release(p);
        int code = (int)(v[0] * 2 + (v[1] > v[2]));
        count[code]++;
    }
    for (int c = 0; c < 6; c++)
        cr_assert(fabs((double)count[c] - DRAWS / 6.0) <= 6 * sqrt(DRAWS * (1.0 / 6) * (5.0 / 6)),
                  "order %d drawn %lld times of %d", c, (long long)count[c], DRAWS);
    td_scope_end();
    nd_finish();
}

/* ---- bad arguments ---- */
Test(random, bad_arguments_fail_and_leave_the_generator_alone, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    td_seed(5);
    td_device cpu = td_cpu(0);
    const int64_t shape[1] = {10};
    td_clear_error();
    nd_expect_null(td_random_normal(TD_I32, 1, shape, 0, 1, cpu), TD_EDTYPE, "td_random_normal", "normal of int32");
    td_clear_error();
    nd_expect_null(td_random_normal(TD_F32, 1, shape, 0, -1, cpu), TD_EINVAL, "td_random_normal", "negative std");
    td_clear_error();
    nd_expect_null(td_random_normal(TD_F32, 1, shape, NAN, 1, cpu), TD_EINVAL, "td_random_normal", "NaN mean");
    td_clear_error();
    nd_expect_null(td_random_uniform(TD_I32, 1, shape, 5, 5, cpu), TD_EINVAL, "td_random_uniform", "int hi == lo");
    td_clear_error();
    nd_expect_null(td_random_uniform(TD_I64, 1, shape, 5, 2, cpu), TD_EINVAL, "td_random_uniform", "int hi < lo");
    td_clear_error();
    nd_expect_null(td_random_uniform(TD_I32, 1, shape, 0.2, 0.9, cpu), TD_EINVAL, "td_random_uniform",
                   "no integer in [0.2, 0.9)");
    td_clear_error();
    nd_expect_null(td_random_uniform(TD_U8, 1, shape, 0, 300, cpu), TD_EINVAL, "td_random_uniform", "u8 up to 300");
    td_clear_error();
    nd_expect_null(td_random_uniform(TD_I32, 1, shape, -3e9, 0, cpu), TD_EINVAL, "td_random_uniform", "i32 from -3e9");
    td_clear_error();
    nd_expect_null(td_random_uniform(TD_F32, 1, shape, 1, 0, cpu), TD_EINVAL, "td_random_uniform", "float hi < lo");
    td_clear_error();
    nd_expect_null(td_random_uniform(TD_F64, 1, shape, 0, INFINITY, cpu), TD_EINVAL, "td_random_uniform",
                   "infinite hi");
    td_clear_error();
    nd_expect_null(td_random_uniform(TD_F32, 1, shape, 1 + 1e-12, 1 + 2e-12, cpu), TD_EINVAL, "td_random_uniform",
                   "no float32 in the interval");
    td_clear_error();
    nd_expect_null(td_random_bernoulli(TD_F32, 1, shape, 1.5, cpu), TD_EINVAL, "td_random_bernoulli", "p = 1.5");
    td_clear_error();
    nd_expect_null(td_random_bernoulli(TD_F32, 1, shape, -0.1, cpu), TD_EINVAL, "td_random_bernoulli", "p = -0.1");
    td_clear_error();
    nd_expect_null(td_random_bernoulli(TD_F32, 1, shape, NAN, cpu), TD_EINVAL, "td_random_bernoulli", "p = NaN");
    td_clear_error();
    nd_expect_null(td_random_permutation(-1, cpu), TD_EINVAL, "td_random_permutation", "n = -1");
    td_clear_error();
    nd_expect_null(td_random_uniform(7, 1, shape, 0, 1, cpu), TD_EDTYPE, "td_random_uniform", "dtype 7");
    td_clear_error();
    nd_expect_null(td_random_bernoulli(TD_F32, 1, (int64_t[]){-2}, 0.5, cpu), TD_EINVAL, "td_random_bernoulli",
                   "negative size");
    td_clear_error();
    nd_expect_null(td_random_normal(TD_F32, 9, shape, 0, 1, cpu), TD_EINVAL, "td_random_normal", "9 dims");
    td_clear_error();
    nd_expect_null(td_random_uniform(TD_F32, 1, NULL, 0, 1, cpu), TD_EINVAL, "td_random_uniform", "NULL shape");
    int ncpu = td_device_count(TD_CPU);
    td_clear_error();
    nd_expect_null(td_random_uniform(TD_F32, 1, shape, 0, 1, td_cpu(ncpu)), TD_EDEVICE, "td_random_uniform",
                   "absent cpu");
    td_clear_error();
    nd_expect_null(td_random_permutation(4, td_gpu(0)), TD_EDEVICE, "td_random_permutation", "absent gpu");
    /* The generator did not move. */
    cr_assert_eq(state_of(cpu).counter, 0, "failed calls take no blocks");
    cr_assert_eq(state_of(cpu).seed, 5);
    /* State accessors. */
    td_rng_state s = {1, 2};
    td_clear_error();
    nd_expect_status(td_rng_get_state(cpu, NULL), TD_EINVAL, "td_rng_get_state", "NULL out");
    td_clear_error();
    nd_expect_status(td_rng_set_state(cpu, NULL), TD_EINVAL, "td_rng_set_state", "NULL state");
    td_clear_error();
    nd_expect_status(td_rng_get_state(td_cpu(ncpu), &s), TD_EDEVICE, "td_rng_get_state", "absent cpu");
    td_clear_error();
    nd_expect_status(td_rng_set_state(td_gpu(0), &s), TD_EDEVICE, "td_rng_set_state", "absent gpu");
    td_clear_error();
    nd_expect_status(td_rng_get_state(td_cpu(-1), &s), TD_EDEVICE, "td_rng_get_state", "negative id");
    cr_assert_eq(s.seed, 1, "a failed get leaves out alone");
    td_scope_end();
    nd_finish();
}
