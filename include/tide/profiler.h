/* tide: the profiler.
 *
 * Off by default, at the cost of a predictable branch per op.  When on,
 * every op records its push, ready, start and end times, its device and
 * worker, and the vars it reads and writes, into buffers of the thread that
 * ran it (no locks).  td_profiler_stop writes a Chrome Trace Event JSON file
 * (open it in https://ui.perfetto.dev or chrome://tracing): one process per
 * device, one track per worker, a flow arrow from each op to each op whose
 * wait it ended, and counters for the ready-queue depth and bytes in flight.
 * TIDE_PROFILE=path turns it on for any program from the start of the
 * runtime to td_shutdown (or exit).
 */
#ifndef TIDE_PROFILER_H
#define TIDE_PROFILER_H

#include <stdio.h>
#include <tide/status.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Starts recording.  trace_path: where td_profiler_stop writes the trace;
 * NULL records for td_profiler_summary only.  TD_EINVAL if already
 * recording. Starts the runtime if it is not running. */
td_status td_profiler_start(const char *trace_path);

/* Waits for the ops pushed so far (without reporting their errors: those
 * stay for td_wait_all), stops recording and writes the trace, replacing the
 * file whole (written to a temporary name, then renamed).  TD_EINVAL if not
 * recording, TD_EIO if the file cannot be written, TD_EBUSY inside an op. */
td_status td_profiler_stop(void);

/* Writes a table per op name (count, total, min, max, mean, in
 * microseconds) of the last recording (the current one, so far, while
 * recording).  TD_EINVAL for a NULL out or when nothing was recorded. */
td_status td_profiler_summary(FILE *out);

/* Nonzero while recording. */
int td_profiler_is_on(void);

#ifdef __cplusplus
}
#endif
#endif
