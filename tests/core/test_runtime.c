/* Runtime options: td_config_default and the TIDE_* variables, td_init's
 * checks, and what does not start the runtime. */
#include <stdlib.h>
#include <string.h>

#include <tide/tide.h>

#include "tt.h"

Test(runtime, config_default_reads_tide_variables, .timeout = 10) {
    unsetenv("TIDE_ENGINE");
    unsetenv("TIDE_CPU_WORKERS");
    unsetenv("TIDE_MAX_INFLIGHT_BYTES");
    unsetenv("TIDE_PROFILE");
    td_config c = td_config_default();
    cr_assert_eq(c.engine, TD_ENGINE_THREADED);
    cr_assert_eq(c.cpu_workers, 0);
    cr_assert_null(c.profile_path);
    setenv("TIDE_ENGINE", "naive", 1);
    setenv("TIDE_CPU_WORKERS", "3", 1);
    setenv("TIDE_MAX_INFLIGHT_BYTES", "123456", 1);
    c = td_config_default();
    cr_assert_eq(c.engine, TD_ENGINE_NAIVE);
    cr_assert_eq(c.cpu_workers, 3);
    cr_assert_eq(c.max_inflight_bytes, (size_t)123456);
    cr_assert_not(td_is_running(), "td_config_default started the runtime");
    cr_assert_eq(td_shutdown(), TD_OK);
}

Test(runtime, tide_cpu_workers_sets_the_worker_count, .timeout = 10) {
    unsetenv("TIDE_ENGINE");
    setenv("TIDE_CPU_WORKERS", "3", 1);
    cr_assert_eq(td_init(NULL), TD_OK, "%s", td_last_error());
    cr_assert_eq(td_device_workers(td_cpu(0)), 3);
    cr_assert_eq(td_shutdown(), TD_OK);
    setenv("TIDE_CPU_WORKERS", "1", 1);
    cr_assert_eq(td_init(NULL), TD_OK, "%s", td_last_error());
    cr_assert_eq(td_device_workers(td_cpu(0)), 1);
    cr_assert_eq(td_shutdown(), TD_OK);
}

Test(runtime, default_worker_count_is_at_least_one, .timeout = 10) {
    unsetenv("TIDE_ENGINE");
    unsetenv("TIDE_CPU_WORKERS");
    cr_assert_eq(td_init(NULL), TD_OK, "%s", td_last_error());
    cr_assert_geq(td_device_workers(td_cpu(0)), 1);
    cr_assert_gt(td_max_inflight_bytes(), (size_t)0, "max_inflight_bytes 0 means the default");
    cr_assert_eq(td_shutdown(), TD_OK);
}

Test(runtime, init_rejects_invalid_configs_with_a_message, .timeout = 10) {
    td_config c = td_config_default();
    c.engine = 7;
    td_clear_error();
    cr_assert_eq(td_init(&c), TD_EINVAL);
    cr_assert_gt(strlen(td_last_error()), 0);
    cr_assert_not(td_is_running());
    c = td_config_default();
    c.cpu_workers = -2;
    td_clear_error();
    cr_assert_eq(td_init(&c), TD_EINVAL);
    cr_assert_gt(strlen(td_last_error()), 0);
    cr_assert_not(td_is_running());
    c = td_config_default();
    cr_assert_eq(td_init(&c), TD_OK);
    cr_assert(td_is_running());
    cr_assert_eq(td_init(&c), TD_EINVAL, "td_init on a running runtime");
    cr_assert_eq(td_shutdown(), TD_OK);
}

Test(runtime, queries_do_not_start_the_runtime, .timeout = 10) {
    (void)td_strerror(TD_EINVAL);
    (void)td_last_error();
    (void)td_last_status();
    (void)td_cpu(0);
    (void)td_gpu(0);
    (void)td_device_count(TD_CPU);
    (void)td_inflight_bytes();
    (void)td_config_default();
    cr_assert_not(td_is_running());
    cr_assert_eq(td_inflight_bytes(), (size_t)0);
    cr_assert_eq(td_shutdown(), TD_OK);
}
