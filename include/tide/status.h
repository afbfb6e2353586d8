/* tide: status codes and the per-thread detail of the last failure.
 *
 * Every fallible call returns a td_status (or NULL for calls that return an
 * object); the detail message of the failure is kept per thread and read with
 * td_last_error().  The list of codes, their names and their default messages
 * are generated from one X-macro list (TD_STATUS_LIST) so they cannot drift.
 */
#ifndef TIDE_STATUS_H
#define TIDE_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

/* X(code, name, message) */
#define TD_STATUS_LIST(X)                                                            \
    X(TD_OK, "TD_OK", "success")                                                     \
    X(TD_EINVAL, "TD_EINVAL", "invalid argument")                                    \
    X(TD_ESHAPE, "TD_ESHAPE", "shapes do not fit together")                          \
    X(TD_EDTYPE, "TD_EDTYPE", "dtype not supported by this operation")               \
    X(TD_ENOMEM, "TD_ENOMEM", "out of memory")                                       \
    X(TD_EDEVICE, "TD_EDEVICE", "device not present or device failure")              \
    X(TD_EIO, "TD_EIO", "input/output error")                                        \
    X(TD_EFORMAT, "TD_EFORMAT", "file is not in the expected format")                \
    X(TD_EFAILED, "TD_EFAILED", "operation failed while running")                    \
    X(TD_EBUSY, "TD_EBUSY", "blocking call made inside a running op (would deadlock)")

#define TD__STATUS_ENUM(code, name, msg) code,
typedef enum { TD_STATUS_LIST(TD__STATUS_ENUM) TD_STATUS_COUNT_ } td_status;
#undef TD__STATUS_ENUM

/* Static text describing s, never NULL (unknown values get a generic text). */
const char *td_strerror(td_status s);

/* The symbolic name of s ("TD_EINVAL"), never NULL. */
const char *td_status_name(td_status s);

/* This thread's message for its last failure; "" if none.  The pointer stays
 * valid until the next failing tide call on this thread. */
const char *td_last_error(void);

/* This thread's status for its last failure; TD_OK if none. */
td_status td_last_status(void);

/* Forgets this thread's last failure (td_last_status() becomes TD_OK). */
void td_clear_error(void);

#ifdef __cplusplus
}
#endif
#endif
