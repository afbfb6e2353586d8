/* Storage pools: one per device, size classes, reuse without the system.
 *
 * Sizes are rounded up to a class: 64 bytes, then four classes per power of
 * two (2^k, 1.25, 1.5 and 1.75 times 2^k), so at most a quarter is wasted.
 * A free block waits on its class's list (the list link lives in the free
 * block itself) until a request of that class reuses it, so a training loop
 * in steady state takes no memory from the system.  td_pool_trim gives the
 * cached blocks back; an allocation the system refuses trims and retries
 * once before it is TD_ENOMEM.
 */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "ndarray/internal.h"

enum { NCLASS = 4 * 64 };

typedef struct {
    uv_mutex_t mu;
    void *free_list[NCLASS];
    td_pool_stats stats;
} pool;

static uv_once_t pools_once = UV_ONCE_INIT;
static pool pools[TD__MAX_CPU_DEVICES];
static atomic_long fail_after = -1;

static void pools_init(void) {
    for (int i = 0; i < TD__MAX_CPU_DEVICES; i++)
        if (uv_mutex_init(&pools[i].mu) != 0) TD__PANIC("cannot create a pool lock");
}

static pool *pool_of(td__device *dev) {
    uv_once(&pools_once, pools_init);
    return &pools[dev->id.id];
}

/* The class of a size, and the class's size. */
static int class_of(size_t bytes, size_t *cap) {
    if (bytes <= 64) {
        *cap = 64;
        return 0;
    }
    int k = 63 - __builtin_clzll((unsigned long long)(bytes - 1)); /* 2^k < bytes <= 2^(k+1) */
    size_t base = (size_t)1 << k;
    size_t quarter = base / 4;
    int sub = (int)((bytes - base + quarter - 1) / quarter); /* 1..4 */
    size_t c = base + (size_t)sub * quarter;
    if (c < 64) c = 64;
    c = (c + 63) & ~(size_t)63;
    *cap = c;
    return 4 * k + sub;
}

void td__pool_fail_after(long n) { atomic_store(&fail_after, n); }

static void *system_alloc(td__device *dev, size_t cap) {
    long f = atomic_load(&fail_after);
    while (f >= 0) {
        if (f == 0) return NULL;
        if (atomic_compare_exchange_weak(&fail_after, &f, f - 1)) break;
    }
    return dev->vt->alloc(dev, cap, 64);
}

static void trim_locked(td__device *dev, pool *p) {
    for (int c = 0; c < NCLASS; c++) {
        while (p->free_list[c]) {
            void *b = p->free_list[c];
            p->free_list[c] = *(void **)b;
            dev->vt->free(dev, b, 0);
            p->stats.system_frees++;
        }
    }
    p->stats.bytes_cached = 0;
}

void *td__pool_alloc(td__device *dev, size_t bytes, size_t *cap_out) {
    size_t cap;
    int c = class_of(bytes, &cap);
    if (c >= NCLASS || bytes > (SIZE_MAX >> 2)) {
        td__fail(TD_ENOMEM, "cannot allocate %zu bytes: larger than any memory", bytes);
        return NULL;
    }
    pool *p = pool_of(dev);
    uv_mutex_lock(&p->mu);
    void *b = p->free_list[c];
    if (b) {
        p->free_list[c] = *(void **)b;
        p->stats.bytes_cached -= (int64_t)cap;
        p->stats.bytes_in_use += (int64_t)cap;
        uv_mutex_unlock(&p->mu);
        *cap_out = cap;
        return b;
    }
    uv_mutex_unlock(&p->mu);
    b = system_alloc(dev, cap);
    if (!b) {
        /* Cached blocks of other classes may be what the system lacks. */
        uv_mutex_lock(&p->mu);
        trim_locked(dev, p);
        uv_mutex_unlock(&p->mu);
        b = system_alloc(dev, cap);
        if (!b) {
            td__fail(TD_ENOMEM, "out of memory: %zu bytes on %s (the pool was trimmed and the allocation retried)",
                     cap, dev->name);
            return NULL;
        }
    }
    uv_mutex_lock(&p->mu);
    p->stats.system_allocs++;
    p->stats.bytes_in_use += (int64_t)cap;
    int64_t total = p->stats.bytes_in_use + p->stats.bytes_cached;
    if (total > p->stats.peak_bytes) p->stats.peak_bytes = total;
    uv_mutex_unlock(&p->mu);
    *cap_out = cap;
    return b;
}

void td__pool_free(td__device *dev, void *b, size_t cap) {
    size_t c2;
    int c = class_of(cap, &c2);
    pool *p = pool_of(dev);
    uv_mutex_lock(&p->mu);
    *(void **)b = p->free_list[c];
    p->free_list[c] = b;
    p->stats.bytes_in_use -= (int64_t)cap;
    p->stats.bytes_cached += (int64_t)cap;
    uv_mutex_unlock(&p->mu);
}

td_status td_pool_stats_get(td_device d, td_pool_stats *out) {
    if (!out) return td__fail(TD_EINVAL, "td_pool_stats_get: out is NULL");
    td__device *dev = td__device_lookup(d);
    if (!dev) return TD_EDEVICE;
    pool *p = pool_of(dev);
    uv_mutex_lock(&p->mu);
    *out = p->stats;
    uv_mutex_unlock(&p->mu);
    return TD_OK;
}

td_status td_pool_trim(td_device d) {
    td__device *dev = td__device_lookup(d);
    if (!dev) return TD_EDEVICE;
    pool *p = pool_of(dev);
    uv_mutex_lock(&p->mu);
    trim_locked(dev, p);
    uv_mutex_unlock(&p->mu);
    return TD_OK;
}
