/* Devices: naming, counting, and using a device that is not present. */
#include <stdatomic.h>
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
