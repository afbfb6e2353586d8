/* Devices: naming, counting, and using a device that is not present. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tide/tide.h>

#include "tt.h"

Test(device, cpu_and_gpu_name_devices_without_starting_anything, .timeout = 10) {
    td_device c = td_cpu(0), g = td_gpu(3);
    cr_assert_eq(c.kind, TD_CPU);
    cr_assert_eq(c.id, 0);
    cr_assert_eq(g.kind, TD_GPU);
    cr_assert_eq(g.id, 3);
    cr_assert_geq(td_device_count(TD_CPU), 1);
    cr_assert_eq(td_device_count(TD_GPU), 0, "this machine has no GPU");
    cr_assert_eq(td_device_count(42), 0);
    cr_assert_eq(td_device_count(-1), 0);
    cr_assert_not(td_is_running(), "naming or counting devices started the runtime");
    cr_assert_eq(td_shutdown(), TD_OK);
}

Test(device, describe_names_the_cpu_and_rejects_an_absent_gpu, .timeout = 10) {
    char buf[256];
    memset(buf, 'x', sizeof buf);
    cr_assert_eq(td_device_describe(td_cpu(0), buf, sizeof buf), TD_OK);
    cr_assert_gt(strlen(buf), 0);
    cr_assert_lt(strlen(buf), sizeof buf);
    cr_assert_eq(td_device_describe(td_gpu(0), buf, sizeof buf), TD_EDEVICE);
    cr_assert_eq(td_device_describe(td_cpu(td_device_count(TD_CPU)), buf, sizeof buf),
                 TD_EDEVICE);
    char tiny[4];
    cr_assert_eq(td_device_describe(td_cpu(0), tiny, sizeof tiny), TD_OK);
    cr_assert_lt(strlen(tiny), sizeof tiny, "td_device_describe overran a small buffer");
    cr_assert_eq(td_shutdown(), TD_OK);
}

static atomic_int gpu_called, gpu_freed;
static td_status gpu_fn(void *arg, const td_exec *ex) {
    (void)arg;
    (void)ex;
    atomic_fetch_add(&gpu_called, 1);
    return TD_OK;
}
static void gpu_free(void *arg) {
    (void)arg;
    atomic_fetch_add(&gpu_freed, 1);
}

Test(device, pushing_on_an_absent_gpu_is_edevice_with_a_message, .timeout = 10) {
    for (int engine = TD_ENGINE_THREADED; engine <= TD_ENGINE_NAIVE; engine++) {
        td_config cfg = td_config_default();
        cfg.engine = engine;
        cr_assert_eq(td_init(&cfg), TD_OK, "%s", td_last_error());
        td_var *v = td_var_new();
        cr_assert_not_null(v);
        td_op op;
        memset(&op, 0, sizeof op);
        op.name = "on_gpu";
        op.device = td_gpu(0);
        op.fn = gpu_fn;
        op.arg_free = gpu_free;
        op.writes = &v;
        op.n_writes = 1;
        td_clear_error();
        td_status st = td_push(&op);
        cr_assert_eq(st, TD_EDEVICE, "engine %d: td_push on td_gpu(0) returned %s", engine,
                     td_status_name(st));
        cr_assert_eq(td_last_status(), TD_EDEVICE);
        cr_assert_gt(strlen(td_last_error()), 0, "no message for an absent GPU");
        cr_assert_eq(td_device_workers(td_gpu(0)), 0);
        cr_assert_eq(td_var_wait(v), TD_OK, "the rejected op left something on its var");
        cr_assert_eq(td_wait_all(), TD_OK);
        td_var_free(v);
        cr_assert_eq(td_shutdown(), TD_OK);
        cr_assert_eq(atomic_load(&gpu_called), 0);
        cr_assert_eq(atomic_load(&gpu_freed), 0);
    }
}

/* hwloc can describe another machine (HWLOC_SYNTHETIC): here two NUMA nodes
 * of three cores each.  tide then makes one CPU device per node, each with
 * its own pool of workers, and orders ops across them by their vars.  (The
 * described processors are not this machine's, so nothing is pinned.)  The
 * topology is read once per process: Criterion runs this test in a fresh
 * one, and nothing touched tide before the setenv. */
struct seen {
    atomic_int kind, id, worker_max, ran;
    int order[2];
    atomic_int next;
};

static td_status note_device(void *arg, const td_exec *ex) {
    struct seen *s = arg;
    td_device d = td_exec_device(ex);
    atomic_store(&s->kind, d.kind);
    atomic_store(&s->id, d.id);
    int w = td_exec_worker(ex);
    if (w > atomic_load(&s->worker_max)) atomic_store(&s->worker_max, w);
    atomic_fetch_add(&s->ran, 1);
    return TD_OK;
}

static int order_log[4];
static atomic_int order_n;
static td_status log_step(void *arg, const td_exec *ex) {
    (void)ex;
    order_log[atomic_fetch_add(&order_n, 1)] = (int)(intptr_t)arg;
    return TD_OK;
}

Test(device, a_synthetic_two_node_machine_gives_two_cpu_devices_with_their_own_workers, .timeout = 30) {
    setenv("HWLOC_SYNTHETIC", "pack:2 numa:1 core:3 pu:1", 1);
    cr_assert_eq(td_device_count(TD_CPU), 2, "two NUMA nodes should make two CPU devices");
    cr_assert_eq(td_device_workers(td_cpu(0)), 3, "three cores per node, one worker each");
    cr_assert_eq(td_device_workers(td_cpu(1)), 3);
    char buf[256];
    cr_assert_eq(td_device_describe(td_cpu(1), buf, sizeof buf), TD_OK);
    cr_assert(strstr(buf, "NUMA node 1") != NULL, "describe: %s", buf);
    cr_assert_eq(td_device_describe(td_cpu(2), buf, sizeof buf), TD_EDEVICE);

    td_var *v = td_var_new();
    cr_assert_not_null(v, "%s", td_last_error());
    struct seen s1 = {0};
    td_op op = {0};
    op.name = "on-node-1";
    op.device = td_cpu(1);
    op.fn = note_device;
    op.arg = &s1;
    op.writes = &v;
    op.n_writes = 1;
    for (int i = 0; i < 50; i++) cr_assert_eq(td_push(&op), TD_OK, "%s", td_last_error());
    cr_assert_eq(td_var_wait(v), TD_OK);
    cr_assert_eq(atomic_load(&s1.ran), 50);
    cr_assert_eq(atomic_load(&s1.kind), TD_CPU);
    cr_assert_eq(atomic_load(&s1.id), 1, "the op ran with the device it was pushed to");
    cr_assert_lt(atomic_load(&s1.worker_max), 3);

    /* Program order across devices: write on node 0, then on node 1, then
     * read back on node 0. */
    atomic_store(&order_n, 0);
    for (int k = 0; k < 3; k++) {
        td_op o = {0};
        o.name = "step";
        o.device = td_cpu(k == 1 ? 1 : 0);
        o.fn = log_step;
        o.arg = (void *)(intptr_t)k;
        if (k < 2) {
            o.writes = &v;
            o.n_writes = 1;
        } else {
            o.reads = &v;
            o.n_reads = 1;
        }
        cr_assert_eq(td_push(&o), TD_OK, "%s", td_last_error());
    }
    cr_assert_eq(td_wait_all(), TD_OK);
    cr_assert_eq(atomic_load(&order_n), 3);
    for (int k = 0; k < 3; k++) cr_assert_eq(order_log[k], k, "step %d ran out of order", k);

    op.device = td_cpu(2);
    cr_assert_eq(td_push(&op), TD_EDEVICE, "cpu:2 is not present");
    td_var_free(v);
    cr_assert_eq(td_shutdown(), TD_OK);
}
