/* Allocation failure: the pool's system allocator is made to fail after N
 * calls (td__pool_fail_after, an internal hook of ndarray/).  Creating arrays
 * then gives NULL with TD_ENOMEM and a message, the pool is trimmed before it
 * gives up, nothing leaks (array and pool statistics come back), nothing
 * crashes, and once injection is off everything works again. */
#include "nd.h"

/* ndarray/internal.h: the next n calls to the system allocator succeed,
 * every later one fails; n < 0 turns injection off. */
extern void td__pool_fail_after(long n);

/* A huge request must come back as NULL from the allocator under ASan too,
 * not abort the process. */
__attribute__((used)) const char *__asan_default_options(void);
__attribute__((used)) const char *__asan_default_options(void) {
    return "allocator_may_return_null=1";
}

static td_pool_stats pool(void) {
    td_pool_stats s;
    cr_assert_eq(td_pool_stats_get(td_cpu(0), &s), TD_OK);
    return s;
}

/* Waits for every op and for released storages to reach the pool, until at
 * most `keep` storages are live (those the test still holds). */
static void settle_to(int64_t keep) {
    td_wait_all();
    double end = tt_now() + 2.0;
    while (td_array_stats_get().live_storages > keep && tt_now() < end) tt_sleep_ms(1);
}
static void settle(void) { settle_to(0); }

/* Blocks taken from the system and not given back. */
static int64_t held(td_pool_stats s) { return s.system_allocs - s.system_frees; }

static void expect_enomem(td_array *a, const char *what) {
    cr_assert_null(a, "%s succeeded while the system allocator refuses", what);
    cr_assert_eq(td_last_status(), TD_ENOMEM, "%s: td_last_status() is %s (%s)", what,
                 td_status_name(td_last_status()), td_last_error());
    cr_assert(td_last_error()[0] != '\0', "%s: no message", what);
}

Test(alloc_fail, every_way_of_making_an_array_is_enomem_when_the_system_refuses,
     .timeout = 60) {
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        td_array *in = td_ones(TD_F32, 2, (int64_t[]){64, 48}, td_cpu(0));
        td_array *in2 = td_ones(TD_F32, 1, (int64_t[]){48}, td_cpu(0));
        td_array *t = td_transpose(in, NULL);
        cr_assert(in && in2 && t);
        settle_to(2);
        cr_assert_eq(td_pool_trim(td_cpu(0)), TD_OK);
        td_pool_stats p0 = pool();
        static float host[64 * 48];
        const int64_t shape[2] = {64, 48};
        td__pool_fail_after(0);
        static const char *const what[] = {
            "td_empty", "td_zeros", "td_ones", "td_full", "td_from_host",
            "td_arange", "td_linspace", "td_eye", "td_add", "td_mul_scalar",
            "td_eq", "td_astype", "td_contiguous", "td_reshape (a copy)",
        };
        td__pool_fail_after(0);
        for (size_t i = 0; i < sizeof what / sizeof what[0]; i++) {
            td_clear_error();
            td_array *a = NULL;
            switch (i) {
            case 0: a = td_empty(TD_F32, 2, shape, td_cpu(0)); break;
            case 1: a = td_zeros(TD_F64, 2, shape, td_cpu(0)); break;
            case 2: a = td_ones(TD_I32, 2, shape, td_cpu(0)); break;
            case 3: a = td_full(TD_U8, 2, shape, 3, td_cpu(0)); break;
            case 4: a = td_from_host(host, TD_F32, 2, shape, td_cpu(0)); break;
            case 5: a = td_arange(TD_I64, 0, 1000, 1, td_cpu(0)); break;
            case 6: a = td_linspace(TD_F64, 0, 1, 1000, td_cpu(0)); break;
            case 7: a = td_eye(TD_F32, 40, td_cpu(0)); break;
            case 8: a = td_add(in, in2); break;
            case 9: a = td_mul_scalar(in, 2); break;
            case 10: a = td_eq(in, in2); break;
            case 11: a = td_astype(in, TD_F64); break;
            case 12: a = td_contiguous(t); break;
            default: a = td_reshape(t, 1, (int64_t[]){-1}); break;
            }
            expect_enomem(a, what[i]);
        }
        td__pool_fail_after(-1);
        settle_to(2);
        td_pool_stats p1 = pool();
        cr_assert_eq(p1.bytes_in_use, p0.bytes_in_use, "%s engine: bytes_in_use %lld, was %lld",
                     tt_engine_name(engine), (long long)p1.bytes_in_use,
                     (long long)p0.bytes_in_use);
        cr_assert_eq(held(p1), held(p0), "%s engine: the failed calls kept system blocks",
                     tt_engine_name(engine));
        /* Everything works again. */
        td_array *ok = td_add(in, in2);
        cr_assert_not_null(ok, "after injection is off: %s", td_last_error());
        nd_ref r = nd_read(ok);
        for (int64_t k = 0; k < r.n; k++) cr_assert_eq(r.f[k], 2.0);
        nd_ref_free(&r);
        td_array *arr[] = {ok, in, in2, t};
        for (int i = 0; i < 4; i++) td_release(arr[i]);
        nd_finish();
    }
}

/* A chain of array calls; each result slot is NULL when the call failed.
 * Checks that a NULL result with non-NULL inputs is TD_ENOMEM with a message.
 * Returns how many calls failed for lack of memory. */
enum { CHAIN = 12 };
static int run_chain(td_array **x, const float *host, int check) {
    int failures = 0;
    const int64_t s2[2] = {300, 200};
/* Step i: x[i] = call, whose array inputs are x[ia] and x[ib] (-1: none). */
#define STEP(i, call, ia, ib)                                                                 \
    do {                                                                                      \
        int have_ = ((ia) < 0 || x[(ia) < 0 ? 0 : (ia)]) && ((ib) < 0 || x[(ib) < 0 ? 0 : (ib)]); \
        td_clear_error();                                                                     \
        x[i] = (call);                                                                        \
        if (!x[i] && have_) {                                                                 \
            failures++;                                                                       \
            if (check) expect_enomem(x[i], #call);                                            \
        }                                                                                     \
    } while (0)
    STEP(0, td_ones(TD_F32, 2, s2, td_cpu(0)), -1, -1);
    STEP(1, td_full(TD_F64, 1, (int64_t[]){200}, 2, td_cpu(0)), -1, -1);
    STEP(2, td_from_host(host, TD_F32, 2, s2, td_cpu(0)), -1, -1);
    STEP(3, td_add(x[0], x[1]), 0, 1);
    STEP(4, td_mul_scalar(x[3], 3), 3, -1);
    STEP(5, td_astype(x[4], TD_I32), 4, -1);
    STEP(6, td_transpose(x[5], NULL), 5, -1);
    STEP(7, td_contiguous(x[6]), 6, -1);
    STEP(8, td_reshape(x[6], 1, (int64_t[]){-1}), 6, -1);
    STEP(9, td_sub(x[2], x[0]), 2, 0);
    STEP(10, td_ge(x[9], x[4]), 9, 4);
    STEP(11, td_eye(TD_U8, 300, td_cpu(0)), -1, -1);
#undef STEP
    return failures;
}

/* Checks the chain's values when every step succeeded. */
static void check_chain(td_array **x, const float *host) {
    nd_ref r7 = nd_read(x[7]), r8 = nd_read(x[8]), r10 = nd_read(x[10]), r11 = nd_read(x[11]);
    for (int64_t k = 0; k < r7.n; k++) {
        cr_assert_eq(r7.i[k], 9, "(1 + 2) * 3 as i32, transposed");
        cr_assert_eq(r8.i[k], 9);
    }
    for (int64_t k = 0; k < r10.n; k++)
        cr_assert_eq(r10.i[k], (int64_t)((double)host[k] - 1.0 >= 9.0),
                     "host - 1 >= 9 at %lld", (long long)k);
    for (int64_t k = 0; k < r11.n; k++) cr_assert_eq(r11.i[k], (int64_t)(k / 300 == k % 300));
    nd_ref_free(&r7);
    nd_ref_free(&r8);
    nd_ref_free(&r10);
    nd_ref_free(&r11);
}

Test(alloc_fail, failing_after_n_allocations_leaks_nothing_and_recovers, .timeout = 120) {
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        static float host[300 * 200];
        for (int k = 0; k < 300 * 200; k++) host[k] = (float)(k % 23);
        int saw_failure = 0, saw_success = 0;
        for (long n = 0; n < 64 && !saw_success; n++) {
            settle();
            cr_assert_eq(td_pool_trim(td_cpu(0)), TD_OK);
            td_pool_stats p0 = pool();
            td_array *x[CHAIN];
            td_scope_begin();
            td__pool_fail_after(n);
            int failures = run_chain(x, host, 1);
            td__pool_fail_after(-1);
            if (failures == 0) {
                saw_success = 1;
                check_chain(x, host);
            } else {
                saw_failure = 1;
            }
            td_scope_end();
            td_status st = td_wait_all();
            cr_assert(st == TD_OK || st == TD_ENOMEM,
                      "%s engine, failing after %ld: td_wait_all gave %s (%s)",
                      tt_engine_name(engine), n, td_status_name(st), td_last_error());
            nd_check_no_leaks();
            td_pool_stats p1 = pool();
            cr_assert_eq(p1.bytes_in_use, p0.bytes_in_use,
                         "%s engine, failing after %ld: bytes_in_use %lld, was %lld",
                         tt_engine_name(engine), n, (long long)p1.bytes_in_use,
                         (long long)p0.bytes_in_use);
            cr_assert_eq(td_pool_trim(td_cpu(0)), TD_OK);
            cr_assert_eq(held(pool()), held(p0),
                         "%s engine, failing after %ld: system blocks not given back",
                         tt_engine_name(engine), n);
        }
        cr_assert(saw_failure, "injection never made a call fail");
        cr_assert(saw_success, "the chain never succeeded, even with 64 allocations allowed");
        /* And again with no injection at all. */
        td_array *x[CHAIN];
        td_scope_begin();
        cr_assert_eq(run_chain(x, host, 1), 0);
        check_chain(x, host);
        td_scope_end();
        nd_finish();
    }
}

Test(alloc_fail, the_pool_is_trimmed_before_it_gives_up, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    /* Fill the cache with blocks of one size, then ask for another. */
    for (int i = 0; i < 8; i++) {
        td_array *a = td_zeros(TD_F32, 1, (int64_t[]){1000 + 4096 * i}, td_cpu(0));
        cr_assert_not_null(a);
        td_release(a);
    }
    settle();
    td_pool_stats p0 = pool();
    cr_assert_gt(p0.bytes_cached, 0);
    td__pool_fail_after(0);
    td_clear_error();
    expect_enomem(td_zeros(TD_F32, 1, (int64_t[]){1 << 22}, td_cpu(0)), "td_zeros(16 MiB)");
    td__pool_fail_after(-1);
    td_pool_stats p1 = pool();
    cr_assert_eq(p1.bytes_cached, 0, "the pool kept %lld bytes cached instead of trimming",
                 (long long)p1.bytes_cached);
    cr_assert_gt(p1.system_frees, p0.system_frees, "nothing was given back before giving up");
    nd_finish();
}

Test(alloc_fail, a_request_larger_than_memory_is_enomem_not_a_crash, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_clear_error();
    td_array *a = td_empty(TD_F64, 1, (int64_t[]){(int64_t)1 << 42}, td_cpu(0)); /* 32 TiB */
    expect_enomem(a, "td_empty(2^42 f64)");
    td_clear_error();
    a = td_zeros(TD_F64, 2, (int64_t[]){(int64_t)1 << 40, (int64_t)1 << 30}, td_cpu(0));
    cr_assert_null(a, "2^70 elements");
    cr_assert(td_last_status() == TD_ENOMEM || td_last_status() == TD_EINVAL,
              "2^70 elements (the byte count overflows): %s", td_status_name(td_last_status()));
    /* Carries on. */
    a = td_ones(TD_F64, 1, (int64_t[]){10}, td_cpu(0));
    cr_assert_not_null(a);
    td_release(a);
    nd_finish();
}
