/* The device table: naming devices and looking them up. */
#include <stdio.h>

#include "core/internal.h"
#include "devices/internal.h"

/* Filled by cpu.c (the only kind present until the CUDA plugin exists). */
extern int td__cpu_device_count(void);
extern td__device *td__cpu_device(int id);

td_device td_cpu(int id) { return (td_device){.kind = TD_CPU, .id = id}; }
td_device td_gpu(int id) { return (td_device){.kind = TD_GPU, .id = id}; }

int td_device_count(int kind) {
    if (kind == TD_CPU) {
        td__devices_init();
        return td__cpu_device_count();
    }
    return 0; /* TD_GPU: no CUDA plugin yet; unknown kinds: none */
}

td__device *td__device_find(td_device dev) {
    if (dev.kind != TD_CPU) return NULL;
    td__devices_init();
    if (dev.id < 0 || dev.id >= td__cpu_device_count()) return NULL;
    return td__cpu_device(dev.id);
}

td__device *td__device_lookup(const char *who, td_device dev) {
    td__device *d = td__device_find(dev);
    if (d) return d;
    if (dev.kind == TD_GPU)
        td__fail(TD_EDEVICE,
                 "%s: device gpu:%d is not present: this build has found no GPU "
                 "(td_device_count(TD_GPU) is 0); use td_cpu(0)",
                 who, dev.id);
    else if (dev.kind == TD_CPU)
        td__fail(TD_EDEVICE, "%s: device cpu:%d is not present: this machine has %d CPU device(s)", who,
                 dev.id, td_device_count(TD_CPU));
    else
        td__fail(TD_EDEVICE, "%s: unknown device kind %d (use TD_CPU or TD_GPU)", who, dev.kind);
    return NULL;
}

int td_device_describe(td_device dev, char *buf, size_t size) {
    td__device *d = td__device_lookup("td_device_describe", dev);
    if (!d) {
        if (buf && size) buf[0] = '\0';
        return TD_EDEVICE;
    }
    if (!buf || size == 0) return TD_OK;
    snprintf(buf, size, "%s", d->name);
    return TD_OK;
}
