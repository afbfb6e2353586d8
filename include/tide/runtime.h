/* tide: starting, configuring and stopping the runtime. */
#ifndef TIDE_RUNTIME_H
#define TIDE_RUNTIME_H

#include <stddef.h>
#include <tide/status.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { TD_ENGINE_THREADED = 0, TD_ENGINE_NAIVE = 1 };

typedef struct {
    int engine;                /* TD_ENGINE_THREADED (default) or TD_ENGINE_NAIVE */
    int cpu_workers;           /* 0: one per physical core */
    size_t max_inflight_bytes; /* 0: default; pushes from the user's threads wait above it */
    const char *profile_path;  /* NULL: no trace */
} td_config;

/* Defaults, then the TIDE_* environment variables (TIDE_ENGINE=naive|threaded,
 * TIDE_CPU_WORKERS=n, TIDE_MAX_INFLIGHT_BYTES=n, TIDE_PROFILE=path).  Never
 * starts the engine. */
td_config td_config_default(void);

/* Starts the runtime with cfg (NULL: td_config_default()).  Optional: the
 * first call that needs the engine (push, var or array creation, a wait)
 * starts it from td_config_default(), and after td_shutdown the next such
 * call starts it again.  TD_EINVAL if already running or cfg is invalid. */
td_status td_init(const td_config *cfg);

/* Drains all pending work (including work pushed by that work), joins the
 * workers and returns the first error not yet reported.  Harmless when the
 * runtime is not running (TD_OK).  TD_EBUSY inside an op. */
td_status td_shutdown(void);

/* Waits for every op pushed before the call and every op those ops push,
 * even while other threads keep pushing; returns the first error not yet
 * reported among them, in push order, and marks all of them reported.
 * TD_EBUSY inside an op. */
td_status td_wait_all(void);

/* Nonzero while the runtime is started. Never starts it. */
int td_is_running(void);

/* Bytes declared by pending ops (td_op.out_bytes), for back-pressure.  Never
 * starts the runtime. */
size_t td_inflight_bytes(void);

/* The limit in force (td_config.max_inflight_bytes, or its default). */
size_t td_max_inflight_bytes(void);

#ifdef __cplusplus
}
#endif
#endif
