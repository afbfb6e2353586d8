/* tide devices: the device table (private to tide).
 *
 * A device is a table of functions plus private state.  Kernels live with
 * their ops, not here.  The engine asks a device for its topology (how many
 * workers to run, where to pin them) and memory; later the CUDA plugin fills
 * the same table for GPUs.
 */
#ifndef TIDE_DEVICES_INTERNAL_H
#define TIDE_DEVICES_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <tide/device.h>
#include <tide/status.h>

#include "core/internal.h"

enum { TD__MAX_CPU_DEVICES = 64 };

typedef struct td__device td__device;

typedef struct {
    /* Memory of the device; alloc returns NULL on failure (no message). */
    void *(*alloc)(td__device *d, size_t bytes, size_t align);
    void (*free)(td__device *d, void *p, size_t bytes);
    /* Binds the calling thread to the device's cores (worker index w); may be
     * NULL.  Failure is not an error: the worker runs unbound. */
    void (*bind_worker)(td__device *d, int w);
} td__device_vtable;

struct td__device {
    td_device id;
    const td__device_vtable *vt;
    char name[192];
    int n_cores;         /* physical cores belonging to this device */
    int n_pus;           /* hardware threads */
    int numa_node;       /* OS index of its NUMA node, -1 if unknown */
    size_t l2_bytes;     /* per-core L2 (0 if unknown) */
    size_t l3_bytes;     /* shared L3 (0 if unknown) */
    void *priv;
};

/* Discovers the topology once (thread-safe, cheap after the first call).
 * Never fails: without hwloc information, one CPU device with the number of
 * online processors is assumed. */
void td__devices_init(void);

/* The device, or NULL with a TD_EDEVICE message (naming who) when it is
 * not present. */
td__device *td__device_lookup(const char *who, td_device dev);

/* The device if present, without touching the thread's error. */
td__device *td__device_find(td_device dev);

/* CPU devices once the topology is loaded (0 before): the fast path of the
 * two lookups above, inline because every op asks. */
extern atomic_int td__cpu_ready;
extern td__device td__cpu_devs[];
static inline td__device *td__device_get(const char *who, td_device dev) {
    if (TD__LIKELY(dev.kind == 0 /* TD_CPU */ &&
                   (unsigned)dev.id < (unsigned)atomic_load_explicit(&td__cpu_ready, memory_order_acquire)))
        return &td__cpu_devs[dev.id];
    return td__device_lookup(who, dev);
}

/* Whether TIDE_PIN=1 asked for pinned workers. */
int td__devices_pin_requested(void);

#endif
