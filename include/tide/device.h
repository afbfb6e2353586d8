/* tide: devices.
 *
 * A td_device names a device by kind and index.  Naming a device never fails;
 * using one that is not present (td_gpu(0) on a machine without a GPU) makes
 * the call that uses it fail with TD_EDEVICE and a message.
 */
#ifndef TIDE_DEVICE_H
#define TIDE_DEVICE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { TD_CPU = 0, TD_GPU = 1 };
typedef struct {
    int kind; /* TD_CPU or TD_GPU */
    int id;   /* index among the devices of that kind */
} td_device;

td_device td_cpu(int id);
td_device td_gpu(int id);

/* Number of devices of a kind present on this machine: CPU devices are one
 * per NUMA node (at least one); GPUs are 0 until the CUDA plugin finds one.
 * Unknown kinds count 0. Never starts the engine. */
int td_device_count(int kind);

/* A short human-readable description of a device ("cpu:0 (2 cores, ...)"),
 * written into buf (always NUL-terminated when size > 0).  Returns
 * TD_EDEVICE for a device that is not present. */
int td_device_describe(td_device dev, char *buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif
