/* Storage pools: one per device, size classes, reuse without the system.
 *
 * Sizes are rounded up to a class: 64 bytes, then four classes per power of
 * two (2^k, 1.25, 1.5 and 1.75 times 2^k), so at most a quarter is wasted.
 * What waits on a class's free list is a whole storage: its buffer, its
 * record and its engine var (which the engine recycles instead of destroying
 * when the last array and the last pending op let go of it).  So a training
 * loop in steady state takes no memory from the system and creates no var.
 * td_pool_trim gives the cached storages back; an allocation the system
 * refuses trims and retries once before it is TD_ENOMEM.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "engine/internal.h"
#include "ndarray/internal.h"

enum { NCLASS = 4 * 64 };

typedef struct {
    td__spin mu; /* a few pointer moves under it: a spin lock is enough */
    td__storage *free_list[NCLASS];
    td_pool_stats stats;
} pool;

static pool pools[TD__MAX_CPU_DEVICES];

/* ---- per-thread caches (device 0, storages up to 64 KiB) ----
 * A program pushing a stream of small ops takes a storage per op and a
 * worker gives one back per op: through one shared lock, that lock's line
 * moved between the cores twice per op and the worker spun on it.  So each
 * thread keeps the small storages it frees in a cache of its own, and moves
 * them to and from the pool TC_MOVE at a time.  The pool's statistics count
 * what the caches hold (each cache keeps its own cached and in-use bytes;
 * the totals are sums), and td_pool_trim empties every cache.  A cache
 * outlives its thread: when the thread ends its storages go back to the
 * pool and the cache waits, empty, for the next new thread.
 * Locks: a cache's own lock (taken by its thread, and by trim), then the
 * pool's; the registry's mutex before a cache's lock. */
enum { TC_CLASSES = 4 * 16 + 1, TC_HIGH = 32, TC_MOVE = 16 };

typedef struct tcache {
    td__spin mu;
    int owned; /* a live thread uses it (under reg_mu) */
    struct tcache *next;
    td__storage *list[TC_CLASSES];
    int count[TC_CLASSES];
    _Atomic int64_t cached; /* bytes in the lists */
    _Atomic int64_t in_use; /* bytes this thread took from the pool minus those it gave back */
    /* Live storages (and their bytes) and live array handles: those this
     * thread made minus those it ended (either may be negative: one is often
     * made on one thread and ended on another).  Written by the owner alone,
     * with a load and a store, lock or not: an atomic add per object made and
     * ended cost each push ~25 ns on 2-core machines while a worker ran. */
    _Atomic int64_t live_n, live_bytes, live_arrays;
} tcache;

static uv_once_t tc_once = UV_ONCE_INIT;
static uv_mutex_t reg_mu;
static pthread_key_t tc_key;
static tcache *tc_head;
static _Thread_local tcache *tls_tc;
static atomic_llong peak0; /* pool 0's peak, kept outside its lock */

static void tc_thread_end(void *arg);
static void tc_init(void) {
    if (uv_mutex_init(&reg_mu) != 0 || pthread_key_create(&tc_key, tc_thread_end) != 0)
        TD__PANIC("cannot create the pool's thread-cache registry");
}

/* A cache's byte counts change only under its lock: a load and a store, no
 * atomic read-modify-write (readers sum them without the lock). */
static inline void tc_add(_Atomic int64_t *x, int64_t d) {
    atomic_store_explicit(x, atomic_load_explicit(x, memory_order_relaxed) + d, memory_order_relaxed);
}

static tcache *my_tcache(void) {
    if (TD__LIKELY(tls_tc != NULL)) return tls_tc;
    uv_once(&tc_once, tc_init);
    uv_mutex_lock(&reg_mu);
    tcache *tc = tc_head;
    while (tc && tc->owned) tc = tc->next;
    if (!tc) {
        /* Line-aligned: a neighbour's cache (another thread's, written on
         * every free) must not share a line with this one's lock. */
        size_t sz = (sizeof *tc + TD__CACHELINE - 1) & ~(size_t)(TD__CACHELINE - 1);
        tc = aligned_alloc(TD__CACHELINE, sz);
        if (tc) memset(tc, 0, sz);
        if (tc) {
            tc->next = tc_head;
            tc_head = tc;
        }
    }
    if (tc) tc->owned = 1;
    uv_mutex_unlock(&reg_mu);
    if (tc) pthread_setspecific(tc_key, tc);
    tls_tc = tc;
    return tc;
}
static atomic_long fail_after = -1;
/* Live storages, their bytes and live array handles, counted per thread in
 * its cache (see tcache); a thread without one (out of memory) counts here.
 * The totals are the sums. */
static struct {
    atomic_llong n, bytes, arrays;
} live_spare;

static inline void live_add(long long n, long long bytes) {
    tcache *tc = my_tcache();
    if (TD__LIKELY(tc != NULL)) {
        tc_add(&tc->live_n, n);
        tc_add(&tc->live_bytes, bytes);
    } else {
        atomic_fetch_add_explicit(&live_spare.n, n, memory_order_relaxed);
        atomic_fetch_add_explicit(&live_spare.bytes, bytes, memory_order_relaxed);
    }
}

void td__live_arrays_add(long long d) {
    tcache *tc = my_tcache();
    if (TD__LIKELY(tc != NULL)) tc_add(&tc->live_arrays, d);
    else atomic_fetch_add_explicit(&live_spare.arrays, d, memory_order_relaxed);
}

/* The sums: storages, bytes, arrays. */
static void live_totals(int64_t *n, int64_t *bytes, int64_t *arrays) {
    uv_once(&tc_once, tc_init);
    long long tn = atomic_load_explicit(&live_spare.n, memory_order_relaxed);
    long long tb = atomic_load_explicit(&live_spare.bytes, memory_order_relaxed);
    long long ta = atomic_load_explicit(&live_spare.arrays, memory_order_relaxed);
    uv_mutex_lock(&reg_mu);
    for (tcache *tc = tc_head; tc; tc = tc->next) {
        tn += atomic_load_explicit(&tc->live_n, memory_order_relaxed);
        tb += atomic_load_explicit(&tc->live_bytes, memory_order_relaxed);
        ta += atomic_load_explicit(&tc->live_arrays, memory_order_relaxed);
    }
    uv_mutex_unlock(&reg_mu);
    if (n) *n = tn;
    if (bytes) *bytes = tb;
    if (arrays) *arrays = ta;
}

long long td__live_arrays(void) {
    int64_t a;
    live_totals(NULL, NULL, &a);
    return a;
}

static pool *pool_of(td__device *dev) { return &pools[dev->id.id]; }

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

static void storage_destroy(td__storage *st) {
    td__var_destroy_now(st->var);
    st->dev->vt->free(st->dev, st->data, st->cap);
    free(st);
}

static void trim_locked(pool *p, td__storage **out) {
    for (int c = 0; c < NCLASS; c++) {
        while (p->free_list[c]) {
            td__storage *st = p->free_list[c];
            p->free_list[c] = st->pool_next;
            p->stats.bytes_cached -= (int64_t)st->cap;
            p->stats.system_frees++;
            st->pool_next = *out;
            *out = st;
        }
    }
}

static void trim(pool *p) {
    td__storage *dead = NULL;
    td__spin_lock(&p->mu);
    trim_locked(p, &dead);
    td__spin_unlock(&p->mu);
    while (dead) { /* destroyed outside the lock: var destruction takes others */
        td__storage *next = dead->pool_next;
        storage_destroy(dead);
        dead = next;
    }
}

/* Moves up to n storages of class c from tc to the pool (tc locked). */
static void tc_spill(tcache *tc, pool *p, int c, int n) {
    td__storage *head = NULL;
    int64_t bytes = 0;
    while (n-- > 0 && tc->list[c]) {
        td__storage *st = tc->list[c];
        tc->list[c] = st->pool_next;
        tc->count[c]--;
        bytes += (int64_t)st->cap;
        st->pool_next = head;
        head = st;
    }
    if (!head) return;
    tc_add(&tc->cached, -(bytes));
    td__spin_lock(&p->mu);
    while (head) {
        td__storage *next = head->pool_next;
        head->pool_next = p->free_list[c];
        p->free_list[c] = head;
        head = next;
    }
    p->stats.bytes_cached += bytes;
    td__spin_unlock(&p->mu);
}

/* Moves up to TC_MOVE storages of class c from the pool to tc (tc locked). */
static void tc_refill(tcache *tc, pool *p, int c) {
    int64_t bytes = 0;
    td__spin_lock(&p->mu);
    for (int k = 0; k < TC_MOVE && p->free_list[c]; k++) {
        td__storage *st = p->free_list[c];
        p->free_list[c] = st->pool_next;
        st->pool_next = tc->list[c];
        tc->list[c] = st;
        tc->count[c]++;
        bytes += (int64_t)st->cap;
    }
    p->stats.bytes_cached -= bytes;
    td__spin_unlock(&p->mu);
    tc_add(&tc->cached, bytes);
}

static void tc_flush_locked(tcache *tc) {
    for (int c = 0; c < TC_CLASSES; c++)
        if (tc->list[c]) tc_spill(tc, &pools[0], c, tc->count[c]);
}

static void tc_thread_end(void *arg) {
    tcache *tc = arg;
    tls_tc = NULL; /* (a later destructor that makes or ends an object takes a cache again) */
    td__spin_lock(&tc->mu);
    tc_flush_locked(tc);
    td__spin_unlock(&tc->mu);
    uv_mutex_lock(&reg_mu);
    tc->owned = 0;
    uv_mutex_unlock(&reg_mu);
}

/* Every cache's storages back to the pool (td_pool_trim). */
static void tc_flush_all(void) {
    uv_once(&tc_once, tc_init);
    uv_mutex_lock(&reg_mu);
    for (tcache *tc = tc_head; tc; tc = tc->next) {
        td__spin_lock(&tc->mu);
        tc_flush_locked(tc);
        td__spin_unlock(&tc->mu);
    }
    uv_mutex_unlock(&reg_mu);
}

/* Bytes the caches hold and hand out, summed (pool 0's statistics). */
static void tc_totals(int64_t *cached, int64_t *in_use) {
    uv_once(&tc_once, tc_init);
    int64_t c = 0, u = 0;
    uv_mutex_lock(&reg_mu);
    for (tcache *tc = tc_head; tc; tc = tc->next) {
        c += atomic_load_explicit(&tc->cached, memory_order_relaxed);
        u += atomic_load_explicit(&tc->in_use, memory_order_relaxed);
    }
    uv_mutex_unlock(&reg_mu);
    *cached = c;
    *in_use = u;
}

static int tc_class(td__device *dev, int c) { return dev->id.id == 0 && c < TC_CLASSES; }


/* The var's recycle callback: the storage is idle and unreferenced. */
static void storage_recycle(void *arg) {
    td__storage *st = arg;
    /* Nothing else can touch an idle, unreferenced storage's state: only a
     * counted one (large storages, array.c) needs the exchange. */
    int counted = 0;
    if (atomic_load_explicit(&st->gstate, memory_order_relaxed) != 0) counted = atomic_exchange(&st->gstate, 2) == 1;
    else atomic_store_explicit(&st->gstate, 2, memory_order_relaxed);
    live_add(-1, -(long long)st->bytes);
    size_t cap;
    int c = class_of(st->cap, &cap);
    pool *p = pool_of(st->dev);
    tcache *tc = tc_class(st->dev, c) ? my_tcache() : NULL;
    if (tc) {
        td__spin_lock(&tc->mu);
        st->pool_next = tc->list[c];
        tc->list[c] = st;
        tc->count[c]++;
        tc_add(&tc->cached, (int64_t)st->cap);
        tc_add(&tc->in_use, -((int64_t)st->cap));
        if (tc->count[c] > TC_HIGH) tc_spill(tc, p, c, TC_MOVE);
        td__spin_unlock(&tc->mu);
        if (counted) td__bp_sub(st->bytes);
        return;
    }
    td__spin_lock(&p->mu);
    st->pool_next = p->free_list[c];
    p->free_list[c] = st;
    p->stats.bytes_in_use -= (int64_t)st->cap;
    p->stats.bytes_cached += (int64_t)st->cap;
    td__spin_unlock(&p->mu);
    /* Only now, with the memory back in the pool, may a waiting pusher go on. */
    if (counted) td__bp_sub(st->bytes);
}

static void ready(td__storage *st, size_t bytes) {
    atomic_store_explicit(&st->refs, 1, memory_order_relaxed);
    atomic_store_explicit(&st->gstate, 0, memory_order_relaxed);
    atomic_store_explicit(&st->version, 0, memory_order_relaxed);
    st->bytes = bytes;
    live_add(1, (long long)bytes);
}

td__storage *td__pool_get(td__device *dev, size_t bytes) {
    size_t cap;
    int c = class_of(bytes, &cap);
    if (c >= NCLASS || bytes > (SIZE_MAX >> 2)) {
        td__fail(TD_ENOMEM, "cannot allocate %zu bytes: larger than any memory", bytes);
        return NULL;
    }
    pool *p = pool_of(dev);
    tcache *tc = tc_class(dev, c) ? my_tcache() : NULL;
    if (tc) {
        td__spin_lock(&tc->mu);
        if (!tc->list[c]) tc_refill(tc, p, c);
        td__storage *st = tc->list[c];
        if (st) {
            tc->list[c] = st->pool_next;
            tc->count[c]--;
            tc_add(&tc->cached, -((int64_t)st->cap));
            tc_add(&tc->in_use, (int64_t)st->cap);
            td__spin_unlock(&tc->mu);
            ready(st, bytes);
            return st;
        }
        td__spin_unlock(&tc->mu);
    }
    td__spin_lock(&p->mu);
    td__storage *st = p->free_list[c];
    if (st) {
        p->free_list[c] = st->pool_next;
        p->stats.bytes_cached -= (int64_t)cap;
        p->stats.bytes_in_use += (int64_t)cap;
        td__spin_unlock(&p->mu);
        ready(st, bytes);
        return st;
    }
    td__spin_unlock(&p->mu);
    void *b = system_alloc(dev, cap);
    if (!b) {
        if (p == &pools[0]) tc_flush_all();
        trim(p); /* cached blocks of other classes may be what the system lacks */
        b = system_alloc(dev, cap);
        if (!b) {
            td__fail(TD_ENOMEM, "out of memory: %zu bytes on %s (the pool was trimmed and the allocation retried)",
                     cap, dev->name);
            return NULL;
        }
    }
    st = malloc(sizeof *st);
    td_var *v = st ? td__var_create_recyclable(storage_recycle, st) : NULL;
    if (!v) {
        free(st);
        dev->vt->free(dev, b, cap);
        td__fail(TD_ENOMEM, "out of memory for a storage record");
        return NULL;
    }
    st->var = v;
    st->data = b;
    st->cap = cap;
    st->dev = dev;
    st->pool_next = NULL;
    td__spin_lock(&p->mu);
    p->stats.system_allocs++;
    p->stats.bytes_in_use += (int64_t)cap;
    int64_t total = p->stats.bytes_in_use + p->stats.bytes_cached;
    if (p != &pools[0] && total > p->stats.peak_bytes) p->stats.peak_bytes = total;
    td__spin_unlock(&p->mu);
    if (p == &pools[0]) { /* the caches' bytes count too; summed outside the pool's lock */
        int64_t tcached, tin;
        tc_totals(&tcached, &tin);
        total += tcached + tin;
        long long old = atomic_load(&peak0);
        while (total > old && !atomic_compare_exchange_weak(&peak0, &old, total)) {
        }
    }
    ready(st, bytes);
    return st;
}

void td__pool_live(int64_t *storages, int64_t *bytes) { live_totals(storages, bytes, NULL); }

td_status td_pool_stats_get(td_device d, td_pool_stats *out) {
    if (!out) return td__fail(TD_EINVAL, "td_pool_stats_get: out is NULL");
    td__device *dev = td__device_lookup("td_pool_stats_get", d);
    if (!dev) return TD_EDEVICE;
    pool *p = pool_of(dev);
    td__spin_lock(&p->mu);
    *out = p->stats;
    td__spin_unlock(&p->mu);
    if (p == &pools[0]) {
        int64_t tcached, tin;
        tc_totals(&tcached, &tin);
        out->bytes_cached += tcached;
        out->bytes_in_use += tin;
        out->peak_bytes = atomic_load(&peak0);
    }
    return TD_OK;
}

td_status td_pool_trim(td_device d) {
    td__device *dev = td__device_lookup("td_pool_trim", d);
    if (!dev) return TD_EDEVICE;
    if (dev->id.id == 0) tc_flush_all();
    trim(pool_of(dev));
    return TD_OK;
}
