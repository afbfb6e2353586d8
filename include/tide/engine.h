/* tide: the dependency engine, for custom ops.
 *
 * A var is a dependency token.  An op is a function plus the vars it reads
 * and the vars it writes.  The engine runs each op once every earlier write
 * of what it reads, and every earlier access of what it writes, has finished;
 * the result is always the same as running the ops one by one in push order.
 *
 * Errors never kill the process: a failing op marks the vars it writes with
 * an error record, ops that read a marked var are skipped (and propagate the
 * mark), and waits return the record's status.  See DESIGN.md, "Engine".
 */
#ifndef TIDE_ENGINE_H
#define TIDE_ENGINE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <tide/device.h>
#include <tide/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct td_var td_var;
/* What a running op may ask: its device, its worker or stream,
 * td_parallel_for, and its completion token (for TD_OP_ASYNC ops). */
typedef struct td_exec td_exec;

/* An op's function.  A synchronous op returns its status (TD_OK, or a failure
 * after td_exec_set_error).  A TD_OP_ASYNC op starts its work and returns
 * TD_OK; the work then ends with exactly one td_op_complete().  An async op
 * that returns a failure has not started and must not call td_op_complete. */
typedef td_status (*td_fn)(void *arg, const td_exec *ex);

enum {
    TD_OP_NORMAL = 0,
    TD_OP_ASYNC = 1,       /* ends with td_op_complete, from any thread */
    TD_OP_PRIORITIZED = 2, /* goes ahead of normal ready ops on its device */
    TD_OP_COPY = 4,        /* runs on the device's copy lane */
    TD_OP_OVERWRITE = 8    /* writes every byte of each var it writes */
};

typedef struct {
    const char *name;            /* copied by td_push (NULL: "op") */
    td_device device;
    td_fn fn;
    void *arg;
    void (*arg_free)(void *arg); /* called once after the op finished or was skipped */
    td_var *const *reads;        /* the arrays are copied by td_push; duplicates merged */
    size_t n_reads;
    td_var *const *writes;       /* a var both read and written counts as written */
    size_t n_writes;
    int priority;                /* higher runs first among ready ops; 0 by default */
    int flags;                   /* TD_OP_*; zero is a normal synchronous op */
    size_t out_bytes;            /* bytes this op's outputs hold, for back-pressure; 0: none */
} td_op;                         /* zero-initialise, then set what you need */

/* A new var, owned by the caller until td_var_free.  NULL (TD_ENOMEM or the
 * runtime could not start) on failure. */
td_var *td_var_new(void);

/* Gives up the caller's var; the var itself lives on until every pending
 * access to it is done.  NULL: nothing.  Never blocks. */
void td_var_free(td_var *v);

/* Queues op.  Returns at once; fails only on bad arguments (NULL function,
 * NULL var, a device not present, unknown flags: TD_EINVAL or TD_EDEVICE),
 * in which case nothing is queued and arg_free is not called.  From a user
 * thread it may wait for back-pressure (see td_config.max_inflight_bytes);
 * from inside an op it never waits. */
td_status td_push(const td_op *op);

/* Waits until v can be read (every write pushed before is done); returns the
 * status of v's error mark (TD_OK if none).  TD_EBUSY inside an op. */
td_status td_var_wait(td_var *v);

/* Ends a TD_OP_ASYNC op, exactly once, from any thread, possibly before the
 * op's function returns.  ex stays valid until this call returns. */
void td_op_complete(const td_exec *ex, td_status st);

td_device td_exec_device(const td_exec *ex);
int td_exec_worker(const td_exec *ex);  /* index of the worker (or stream) running the op */
/* Message for the failure the op is about to return (or complete with). */
void td_exec_set_error(const td_exec *ex, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

typedef void (*td_range_fn)(void *arg, int64_t begin, int64_t end);
/* Calls fn over [0, n) in chunks on the op's worker pool.  The chunk
 * boundaries depend on n and grain only (never on the worker count), so
 * results are reproducible; the calling worker may run every chunk itself,
 * so it never deadlocks when the pool is busy.  Returns after every chunk
 * ran.  TD_EINVAL for a NULL ex or fn, n < 0 or grain < 1. */
td_status td_parallel_for(const td_exec *ex, int64_t n, int64_t grain, td_range_fn fn, void *arg);

/* The number of chunks td_parallel_for makes of [0, n) with this grain. */
int64_t td_parallel_chunks(int64_t n, int64_t grain);

/* Prints the pending ops and the vars they wait on (the stall report).  Also
 * printed to stderr when a wait lasts longer than TIDE_STALL_SECONDS
 * (default 60; 0 turns it off). */
void td_stall_report(FILE *out);

/* The var of an array's storage (shared by its views); borrowed: valid while
 * a lives.  A var that belongs to an array's storage keeps that storage
 * alive while an op holds it. */
typedef struct td_array td_array;
td_var *td_array_var(const td_array *a);

/* Number of workers of the executor of a device (0 if not present). */
int td_device_workers(td_device dev);

#ifdef __cplusplus
}
#endif
#endif
