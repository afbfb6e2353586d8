/* Object caches: per-thread magazines, exchanged whole.
 *
 * Objects of the hot path (op records, calls, array handles, storages) are
 * made on the pushing thread and freed on the worker that ends them.  Each
 * thread keeps, per cache, two magazines: arrays of up to MAG free object
 * pointers (Bonwick's scheme).  Allocation pops a pointer and freeing pushes
 * one, without reading or writing the object: an object freed by a worker
 * is still in that worker's cache, and taking it from an intrusive free list
 * (reading its link) cost the pushing thread a cache miss per object.  When
 * both magazines are empty (full), the thread swaps one for a full (empty)
 * one at the cache's depot under its lock: the lock is taken once per MAG
 * objects.  Objects come from slabs that are never given back to the system
 * (type-stable memory: a stale pointer reads a recycled object, never
 * unmapped memory, which the stall report relies on), linked in a list so
 * leak checkers see them as reachable.
 *
 * Freeing never fails: when no empty magazine can be had (out of memory),
 * the object goes onto the depot's intrusive list of loose objects, which
 * allocation takes from before it carves a new slab.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>

#include "core/internal.h"

enum { SLAB_OBJS = 64, MAG = TD__MAG };

/* A magazine: td__mag_view (core/internal.h, where the inline fast paths
 * read it) with room for MAG pointers. */
typedef td__mag_view mag;
#define MAG_BYTES (offsetof(mag, obj) + MAG * sizeof(void *))

typedef struct loose {
    struct loose *next;
} loose;

typedef struct slab {
    struct slab *next;
} slab;

/* The depot's lists live in the td__objcache fields: `chains` holds the full
 * magazines, `empties` the empty ones, `loose` the loose objects. */

_Thread_local struct td__mag_tls td__mag_tls[TD__NCACHES];
/* cur and prev as magazines */
#define CUR(c) (&td__mag_tls[(c)->id].cur)
#define PREV(c) (&td__mag_tls[(c)->id].prev)

/* A thread's magazines go back to the depots when it exits (a key's
 * destructor), so threads that come and go strand no objects. */
static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static int exit_key_ok;
static _Atomic(td__objcache *) registry[TD__NCACHES];

static void thread_exit(void *arg) {
    (void)arg;
    for (int i = 0; i < TD__NCACHES; i++) {
        td__objcache *c = atomic_load_explicit(&registry[i], memory_order_acquire);
        if (c) td__cache_flush_thread(c);
    }
}

static void exit_key_init(void) { exit_key_ok = pthread_key_create(&exit_key, thread_exit) == 0; }

/* The calling thread starts using c. */
static void note_thread(td__objcache *c) {
    atomic_store_explicit(&registry[c->id], c, memory_order_release);
    pthread_once(&exit_once, exit_key_init);
    if (exit_key_ok && !pthread_getspecific(exit_key)) pthread_setspecific(exit_key, (void *)1);
}

static mag *mag_pop(void **list) {
    mag *m = *list;
    if (m) *list = m->next;
    return m;
}


static void mag_push(void **list, mag *m) {
    m->next = *list;
    *list = m;
}

/* A new slab's objects, into magazine m (empty, with room for SLAB_OBJS). */
/* Objects are cache-line aligned and padded to whole lines: no object
 * shares a line with another (made and freed on other threads), and an
 * object's layout can group its fields by line (see td__opr). */
static int carve(td__objcache *c, mag *m) {
    size_t sz = (c->size + TD__CACHELINE - 1) & ~(size_t)(TD__CACHELINE - 1);
    slab *sl = calloc(1, sizeof(slab) + TD__CACHELINE + SLAB_OBJS * sz);
    if (!sl) return 0;
    char *base = (char *)(((uintptr_t)(sl + 1) + TD__CACHELINE - 1) & ~(uintptr_t)(TD__CACHELINE - 1));
    for (int i = SLAB_OBJS - 1; i >= 0; i--) m->obj[m->n++] = base + (size_t)i * sz;
    td__spin_lock(&c->lock);
    sl->next = c->slabs;
    c->slabs = sl;
    td__spin_unlock(&c->lock);
    return 1;
}

static mag *mag_new(void) {
    mag *m = malloc(MAG_BYTES);
    if (m) m->n = 0;
    return m;
}

void *td__cache_alloc_slow(td__objcache *c) {
    mag **cur = CUR(c), **prev = PREV(c);
    if (*prev && (*prev)->n > 0) { /* swap: the previous magazine has objects */
        mag *t = *cur;
        *cur = *prev;
        *prev = t;
        return (*cur)->obj[--(*cur)->n];
    }
    if (!*cur) note_thread(c);
    if (!*cur && !(*cur = mag_new())) {
        /* No magazine at all: a loose object or a fresh slab's first. */
        td__spin_lock(&c->lock);
        loose *l = c->loose;
        if (l) c->loose = l->next;
        td__spin_unlock(&c->lock);
        return l;
    }
    /* cur is empty: trade it for a full one, or fill it. */
    td__spin_lock(&c->lock);
    mag *full = mag_pop(&c->chains);
    if (full) {
        mag_push(&c->empties, *cur);
        *cur = full;
    } else {
        mag *m = *cur;
        while (m->n < MAG && c->loose) {
            loose *l = c->loose;
            c->loose = l->next;
            m->obj[m->n++] = l;
        }
    }
    td__spin_unlock(&c->lock);
    if ((*cur)->n == 0 && !carve(c, *cur)) return NULL;
    return (*cur)->obj[--(*cur)->n];
}

void td__cache_free_slow(td__objcache *c, void *p) {
    mag **cur = CUR(c), **prev = PREV(c);
    if (*cur && *prev && (*prev)->n < MAG) { /* swap: the previous magazine has room */
        mag *t = *cur;
        *cur = *prev;
        *prev = t;
        (*cur)->obj[(*cur)->n++] = p;
        return;
    }
    if (!*cur) note_thread(c);
    /* cur is full (or missing): hand the full one in, take an empty one. */
    td__spin_lock(&c->lock);
    mag *e = mag_pop(&c->empties);
    td__spin_unlock(&c->lock);
    if (!e) e = mag_new();
    if (!e) {
        loose *l = p;
        td__spin_lock(&c->lock);
        l->next = c->loose;
        c->loose = l;
        td__spin_unlock(&c->lock);
        return;
    }
    if (*cur) {
        mag *full = *cur;
        if (!*prev) {
            *prev = full; /* the thread's second magazine */
        } else {
            td__spin_lock(&c->lock);
            mag_push(&c->chains, full);
            td__spin_unlock(&c->lock);
        }
    }
    *cur = e;
    e->obj[e->n++] = p;
}

void td__cache_flush_thread(td__objcache *c) {
    mag *ms[2] = {*CUR(c), *PREV(c)};
    *CUR(c) = *PREV(c) = NULL;
    td__spin_lock(&c->lock);
    for (int i = 0; i < 2; i++) {
        mag *m = ms[i];
        if (!m) continue;
        /* A partly full magazine would hand out fewer objects than a full
         * one; its objects go loose instead. */
        if (m->n < MAG) {
            while (m->n > 0) {
                loose *l = m->obj[--m->n];
                l->next = c->loose;
                c->loose = l;
            }
            mag_push(&c->empties, m);
        } else {
            mag_push(&c->chains, m);
        }
    }
    td__spin_unlock(&c->lock);
}
