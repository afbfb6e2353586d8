/* Object caches: free lists per thread, exchanged in chains.
 *
 * Objects of the hot path (op records, calls, array handles, storages) are
 * made on the pushing thread and freed on the worker that ends them.  Each
 * thread keeps a free list per cache; a list that grows past CACHE_MAX hands
 * a chain of CACHE_BATCH objects to the cache's global stack of chains, and
 * an empty list takes a whole chain back, so the shared lock is taken once
 * per CACHE_BATCH objects, never per object.  Objects come from slabs that
 * are never given back to the system (type-stable memory: a stale pointer
 * reads a recycled object, never unmapped memory, which the stall report
 * relies on), linked in a list so leak checkers see them as reachable.
 *
 * A free object's first three words hold the links: next in its chain, and
 * in a chain's first object, the next chain and the chain's length.
 */
#include <stdlib.h>

#include "core/internal.h"

enum { SLAB_OBJS = 64, CACHE_MAX = 512, CACHE_BATCH = 256 };

typedef struct free_obj {
    struct free_obj *next;
    struct free_obj *next_chain;
    intptr_t len;
} free_obj;

typedef struct slab {
    struct slab *next;
} slab;

static _Thread_local struct {
    free_obj *head;
    intptr_t n;
} tls[TD__NCACHES];

void *td__cache_alloc_slow(td__objcache *c) {
    td__spin_lock(&c->lock);
    free_obj *chain = c->chains;
    if (chain) c->chains = chain->next_chain;
    td__spin_unlock(&c->lock);
    if (!chain) {
        size_t sz = (c->size + 15) & ~(size_t)15;
        slab *sl = calloc(1, sizeof(slab) + 16 + SLAB_OBJS * sz);
        if (!sl) return NULL;
        td__spin_lock(&c->lock);
        sl->next = c->slabs;
        c->slabs = sl;
        td__spin_unlock(&c->lock);
        char *base = (char *)sl + ((sizeof(slab) + 15) & ~(size_t)15);
        for (int i = 0; i < SLAB_OBJS; i++) ((free_obj *)(base + (size_t)i * sz))->next =
            i + 1 < SLAB_OBJS ? (free_obj *)(base + (size_t)(i + 1) * sz) : NULL;
        chain = (free_obj *)base;
        chain->len = SLAB_OBJS;
    }
    tls[c->id].head = chain->next;
    tls[c->id].n = chain->len - 1;
    return chain;
}

void td__cache_spill(td__objcache *c) {
    free_obj *chain = tls[c->id].head, *last = chain;
    for (int i = 1; i < CACHE_BATCH; i++) last = last->next;
    tls[c->id].head = last->next;
    tls[c->id].n -= CACHE_BATCH;
    last->next = NULL;
    chain->len = CACHE_BATCH;
    td__spin_lock(&c->lock);
    chain->next_chain = c->chains;
    c->chains = chain;
    td__spin_unlock(&c->lock);
}

void *td__cache_alloc(td__objcache *c) {
    free_obj *o = tls[c->id].head;
    if (TD__LIKELY(o != NULL)) {
        tls[c->id].head = o->next;
        tls[c->id].n--;
        return o;
    }
    return td__cache_alloc_slow(c);
}

void td__cache_free(td__objcache *c, void *p) {
    free_obj *o = p;
    o->next = tls[c->id].head;
    tls[c->id].head = o;
    if (TD__UNLIKELY(++tls[c->id].n > CACHE_MAX)) td__cache_spill(c);
}

void td__cache_flush_thread(td__objcache *c) {
    while (tls[c->id].head) {
        free_obj *chain = tls[c->id].head, *last = chain;
        intptr_t k = 1;
        while (k < CACHE_BATCH && last->next) last = last->next, k++;
        tls[c->id].head = last->next;
        last->next = NULL;
        chain->len = k;
        td__spin_lock(&c->lock);
        chain->next_chain = c->chains;
        c->chains = chain;
        td__spin_unlock(&c->lock);
    }
    tls[c->id].n = 0;
}
