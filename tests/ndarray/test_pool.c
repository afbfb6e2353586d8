/* Storage pools: statistics move as expected, a freed size is reused without
 * going back to the system, td_pool_trim gives cached blocks back, storage is
 * 64-byte aligned, and a released array's storage outlives it while an op
 * still uses it. */
#include "nd.h"

static td_pool_stats pool(void) {
    td_pool_stats s;
    memset(&s, 0, sizeof s);
    td_status st = td_pool_stats_get(td_cpu(0), &s);
    cr_assert_eq(st, TD_OK, "td_pool_stats_get: %s", td_last_error());
    cr_assert_geq(s.peak_bytes, s.bytes_in_use + s.bytes_cached,
                  "peak_bytes %lld below in use %lld + cached %lld", (long long)s.peak_bytes,
                  (long long)s.bytes_in_use, (long long)s.bytes_cached);
    return s;
}

/* Waits for every op and for released storages to reach the pool, until
 * at most `keep` storages are live (those the test still holds). */
static void settle_to(int64_t keep) {
    td_wait_all();
    double end = tt_now() + 2.0;
    while (td_array_stats_get().live_storages > keep && tt_now() < end) tt_sleep_ms(1);
}
static void settle(void) { settle_to(0); }

Test(pool, a_freed_size_is_reused_without_a_system_allocation_and_trim_gives_it_back,
     .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    const int64_t n = 1 << 18; /* 1 MiB of f32 */
    cr_assert_eq(td_pool_trim(td_cpu(0)), TD_OK);
    td_pool_stats s0 = pool();
    cr_assert_eq(s0.bytes_cached, 0, "bytes_cached after td_pool_trim");
    td_array *a = td_zeros(TD_F32, 1, &n, td_cpu(0));
    cr_assert_not_null(a);
    td_pool_stats s1 = pool();
    cr_assert_geq(s1.system_allocs, s0.system_allocs + 1, "a new 1 MiB array took no block");
    cr_assert_geq(s1.bytes_in_use, s0.bytes_in_use + n * 4, "bytes_in_use did not grow by 1 MiB");
    td_array_stats as = td_array_stats_get();
    cr_assert_eq(as.live_storages, 1);
    cr_assert_geq(as.storage_bytes, n * 4);
    td_release(a);
    settle();
    td_pool_stats s2 = pool();
    cr_assert_eq(s2.bytes_in_use, s0.bytes_in_use, "bytes_in_use did not come back");
    cr_assert_geq(s2.bytes_cached, n * 4, "the freed block is not cached");
    cr_assert_eq(s2.system_frees, s1.system_frees, "the freed block went back to the system");
    /* The same size again: from the cache. */
    td_array *b = td_ones(TD_F32, 1, &n, td_cpu(0));
    cr_assert_not_null(b);
    td_pool_stats s3 = pool();
    cr_assert_eq(s3.system_allocs, s2.system_allocs,
                 "reusing a freed size took memory from the system");
    cr_assert_lt(s3.bytes_cached, s2.bytes_cached, "bytes_cached did not drop on reuse");
    td_release(b);
    settle();
    cr_assert_eq(td_pool_trim(td_cpu(0)), TD_OK);
    td_pool_stats s4 = pool();
    cr_assert_eq(s4.bytes_cached, 0, "td_pool_trim left %lld bytes cached",
                 (long long)s4.bytes_cached);
    cr_assert_gt(s4.system_frees, s3.system_frees, "td_pool_trim freed nothing");
    cr_assert_eq(s4.bytes_in_use, s0.bytes_in_use);
    cr_assert_eq(s4.system_allocs - s4.system_frees, s0.system_allocs - s0.system_frees,
                 "blocks held from the system did not come back to where they were");
    nd_finish();
}

Test(pool, a_loop_in_steady_state_takes_no_memory_from_the_system, .timeout = 60) {
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        const int64_t shape[2] = {256, 1000};
        td_array *w = td_ones(TD_F32, 2, shape, td_cpu(0));
        td_array *x = td_full(TD_F32, 2, shape, 0.5, td_cpu(0));
        int64_t allocs_after_first = 0;
        for (int it = 0; it < 50; it++) {
            td_scope_begin();
            td_array *g = td_mul(td_add(w, x), td_sub_scalar(x, 1));
            td_array *nw = td_sub(w, td_mul_scalar(g, 0.001));
            cr_assert_not_null(nw);
            cr_assert_eq(td_assign(w, nw), TD_OK);
            td_scope_end();
            /* Each iteration ends drained, as a loop that reads its loss does,
             * so every iteration needs the same blocks. */
            settle_to(2);
            if (it == 9) allocs_after_first = pool().system_allocs;
        }
        settle_to(2);
        cr_assert_eq(pool().system_allocs, allocs_after_first,
                     "%s engine: the loop kept taking memory from the system (%lld blocks "
                     "after 10 iterations, %lld after 50)",
                     tt_engine_name(engine), (long long)allocs_after_first,
                     (long long)pool().system_allocs);
        td_release(w);
        td_release(x);
        nd_finish();
    }
}

Test(pool, storage_is_64_byte_aligned_for_every_size_and_dtype, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    const int64_t sizes[] = {1, 3, 7, 16, 63, 64, 65, 1000, 4097, 100003, 1 << 20};
    td_array *keep[5 * 11];
    int nk = 0;
    ND_FOR_EACH_DTYPE(dt) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            td_array *a = td_empty(dt, 1, &sizes[i], td_cpu(0));
            cr_assert_not_null(a);
            cr_assert_eq(td_array_wait(a), TD_OK);
            uintptr_t p = (uintptr_t)td_data(a);
            cr_assert_eq(p % 64, (uintptr_t)0, "%s array of %lld elements at %p: not 64-byte "
                                               "aligned",
                         nd_dt(dt), (long long)sizes[i], td_data(a));
            keep[nk++] = a; /* held, so that each gets its own block */
        }
    }
    for (int i = 0; i < nk; i++) td_release(keep[i]);
    nd_finish();
}

Test(pool, views_share_one_storage_and_the_stats_count_storages_not_handles, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_array *a = td_zeros(TD_F64, 2, (int64_t[]){100, 10}, td_cpu(0));
    td_array *v1 = td_slice(a, 0, 0, 50, 2);
    td_array *v2 = td_transpose(v1, NULL);
    td_array *v3 = td_reshape(a, 1, (int64_t[]){1000});
    cr_assert_eq(nd_live_arrays(4), 4); /* pending ops hold the handles they use */
    td_array_stats s = td_array_stats_get();
    cr_assert_eq(s.live_storages, 1);
    cr_assert_geq(s.storage_bytes, 8000);
    td_release(a);
    td_release(v1);
    td_release(v3);
    cr_assert_eq(nd_live_arrays(1), 1);
    s = td_array_stats_get();
    cr_assert_eq(s.live_storages, 1, "the last view lost its storage");
    td_release(v2);
    nd_finish();
}

Test(pool, a_released_arrays_storage_lives_until_the_last_op_using_it_ends, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        const int64_t n = 1 << 16;
        td_pool_stats before = pool();
        td_array *a = td_zeros(TD_F32, 1, &n, td_cpu(0));
        static struct nd_slow slow;
        cr_assert_eq(td_array_wait(a), TD_OK);
        if (engine == TD_ENGINE_THREADED) {
            nd_push_slow_write(&slow, a, 500, NULL);
            td_release(a); /* never blocks */
            td_array_stats s = td_array_stats_get();
            cr_assert_eq(s.live_arrays, 0);
            cr_assert_eq(s.live_storages, 1, "the storage went away while an op still used it");
            cr_assert_geq(pool().bytes_in_use, before.bytes_in_use + n * 4);
        } else {
            td_release(a);
        }
        settle();
        cr_assert_eq(td_array_stats_get().live_storages, 0);
        cr_assert_eq(pool().bytes_in_use, before.bytes_in_use,
                     "%s engine: the storage did not go back to the pool", tt_engine_name(engine));
        nd_finish();
    }
}

Test(pool, stats_with_a_null_out_are_refused, .timeout = 10) {
    nd_start(TD_ENGINE_THREADED, 1);
    cr_assert_neq(td_pool_stats_get(td_cpu(0), NULL), TD_OK);
    nd_finish();
}
