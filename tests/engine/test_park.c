/* Deferred ops and fusion under concurrency (engine/park.c, ops/invoke.c
 * "Fusion").  Part of the engine tests so that the ThreadSanitizer driver
 * runs it: a deferred op is activated from other threads (a reader's push,
 * an idle worker, the release of its output) while its pusher fuses it. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include <tide/tide.h>

#include "engine/common.h"
#include "ops/internal.h"

enum { PN = 4096, ITERS = 60 };

static int fill_wait(td_array *a, double v) { return td_fill(a, v) == TD_OK && td_array_wait(a) == TD_OK; }

/* Every element of a equals want; on the test's thread only. */
static int all_equal(td_array *a, float want) {
    static float buf[PN];
    if (td_to_host(a, buf, sizeof buf) != TD_OK) return 0;
    for (int k = 0; k < PN; k++)
        if (buf[k] != want) return 0;
    return 1;
}

struct reader {
    td_array *tmp;
    float want;
    atomic_int ok;
};

static void *read_tmp(void *p) {
    struct reader *r = p;
    float *buf = malloc(sizeof(float) * PN);
    int ok = buf && td_to_host(r->tmp, buf, sizeof(float) * PN) == TD_OK;
    for (int k = 0; ok && k < PN; k++) ok = buf[k] == r->want;
    free(buf);
    atomic_store(&r->ok, ok);
    return NULL;
}

Test(park, a_fused_expression_with_readers_and_writers_on_other_threads, .timeout = 300) {
    tt_start(TD_ENGINE_THREADED, 2);
    td__fusion_set(1, 0); /* fuse these small arrays too */
    const int64_t n = PN;
    td_array *a = td_full(TD_F32, 1, &n, 1.0, td_cpu(0));
    td_array *b = td_zeros(TD_F32, 1, &n, td_cpu(0));
    cr_assert(a && b);
    int64_t fused0 = td_fusion_stats_get().fused;
    for (int it = 0; it < ITERS; it++) {
        cr_assert(fill_wait(b, it), "iteration %d: td_fill", it);
        td_array *tmp = td_mul_scalar(b, 2);
        struct reader r = {tmp, 2.0f * (float)it, 0};
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, read_tmp, &r), 0);
        td_array *c = td_add(a, tmp);
        /* A write to b after both: neither may see it. */
        cr_assert_eq(td_fill(b, -1), TD_OK);
        pthread_join(th, NULL);
        cr_assert(atomic_load(&r.ok), "iteration %d: the other thread read a wrong temporary", it);
        cr_assert(all_equal(c, 1.0f + 2.0f * (float)it), "iteration %d: c", it);
        cr_assert(all_equal(tmp, 2.0f * (float)it), "iteration %d: tmp", it);
        td_release(c);
        td_release(tmp);
    }
    cr_log_info("%lld of %d expressions fused", (long long)(td_fusion_stats_get().fused - fused0), ITERS);
    td_release(a);
    td_release(b);
    cr_assert_eq(td_wait_all(), TD_OK);
    tt_stop(TD_OK);
}

struct pusher {
    int id;
    atomic_int ok;
};

/* Temporaries released unread, fused and unfused, from two threads at once. */
static void *push_loop(void *p) {
    struct pusher *ps = p;
    const int64_t n = PN;
    int ok = 1;
    td_array *a = td_full(TD_F32, 1, &n, ps->id, td_cpu(0));
    td_array *b = td_full(TD_F32, 1, &n, 3.0, td_cpu(0));
    float *buf = malloc(sizeof(float) * PN);
    for (int it = 0; ok && buf && it < ITERS; it++) {
        td_scope_begin();
        td_array *c = td_keep(td_add(a, td_mul_scalar(b, 2))); /* a + 6 */
        (void)td_mul_scalar(b, 5);                            /* released unread at the scope's end */
        td_scope_end();
        ok = td_to_host(c, buf, sizeof(float) * PN) == TD_OK;
        for (int k = 0; ok && k < PN; k++) ok = buf[k] == (float)ps->id + 6.0f;
        td_release(c);
    }
    free(buf);
    td_release(a);
    td_release(b);
    atomic_store(&ps->ok, ok && buf);
    return NULL;
}

Test(park, two_threads_fusing_and_dropping_temporaries, .timeout = 300) {
    tt_start(TD_ENGINE_THREADED, 2);
    td__fusion_set(1, 0);
    int64_t fused0 = td_fusion_stats_get().fused, skipped0 = td_fusion_stats_get().skipped;
    struct pusher p[2] = {{1, 0}, {2, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) cr_assert_eq(pthread_create(&th[i], NULL, push_loop, &p[i]), 0);
    for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) cr_assert(atomic_load(&p[i].ok), "thread %d computed a wrong result", i);
    cr_log_info("%lld fused, %lld skipped of %d expressions", (long long)(td_fusion_stats_get().fused - fused0),
                (long long)(td_fusion_stats_get().skipped - skipped0), 2 * ITERS);
    cr_assert_eq(td_wait_all(), TD_OK);
    td_array_stats s = td_array_stats_get();
    double end = tt_now() + 2.0;
    while (s.live_storages != 0 && tt_now() < end) {
        tt_sleep_ms(1);
        s = td_array_stats_get();
    }
    cr_assert_eq(s.live_arrays, 0, "%lld arrays left", (long long)s.live_arrays);
    cr_assert_eq(s.live_storages, 0, "%lld storages left", (long long)s.live_storages);
    tt_stop(TD_OK);
}
