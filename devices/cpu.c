/* The CPU devices: topology from hwloc, one device per NUMA node.
 *
 * The topology is loaded once, on first use, and kept for the life of the
 * process (it is read-only after loading, so every thread may read it).
 * HWLOC_SYNTHETIC / HWLOC_XMLFILE make hwloc describe another machine; then
 * (hwloc_topology_is_thissystem() is false) nothing is bound, since the
 * described processors are not ours.
 */
#include <hwloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "core/internal.h"
#include "devices/internal.h"

typedef struct {
    hwloc_cpuset_t cpuset;   /* processors of this device (NULL: unknown) */
    hwloc_nodeset_t nodeset; /* its NUMA node(s) */
    int n_cores;
    hwloc_obj_t *cores;      /* the cores, in logical order */
} cpu_priv;

static uv_once_t g_once = UV_ONCE_INIT;
static hwloc_topology_t g_topo;
static int g_topo_ok;
static int g_thissystem;
static int g_pin;
static int g_ndev;
td__device td__cpu_devs[TD__MAX_CPU_DEVICES];
#define g_dev td__cpu_devs
atomic_int td__cpu_ready; /* g_ndev once loaded */
static cpu_priv g_priv[TD__MAX_CPU_DEVICES];

static void *cpu_alloc(td__device *d, size_t bytes, size_t align) {
    (void)d;
    void *p = NULL;
    if (align < sizeof(void *)) align = sizeof(void *);
    if (bytes == 0) bytes = 1;
    if (posix_memalign(&p, align, bytes) != 0) return NULL;
    return p;
}

static void cpu_free(td__device *d, void *p, size_t bytes) {
    (void)d;
    (void)bytes;
    free(p);
}

static void cpu_bind_worker(td__device *d, int w) {
    cpu_priv *p = d->priv;
    if (!g_topo_ok || !g_thissystem || !p->cpuset) return;
    hwloc_const_cpuset_t set = p->cpuset;
    if (g_pin && p->n_cores > 0) set = p->cores[w % p->n_cores]->cpuset;
    else if (g_ndev < 2) return; /* one node and no pinning: let the OS place threads */
    (void)hwloc_set_cpubind(g_topo, set, HWLOC_CPUBIND_THREAD);
}

static const td__device_vtable cpu_vtable = {
    .alloc = cpu_alloc,
    .free = cpu_free,
    .bind_worker = cpu_bind_worker,
};

static size_t cache_size(hwloc_obj_type_t type, hwloc_const_cpuset_t within) {
    hwloc_obj_t o = hwloc_get_next_obj_covering_cpuset_by_type(g_topo, within, type, NULL);
    if (!o) o = hwloc_get_obj_by_type(g_topo, type, 0);
    return (o && o->attr) ? (size_t)o->attr->cache.size : 0;
}

static void fill_device(int i, hwloc_obj_t node) {
    td__device *d = &g_dev[i];
    cpu_priv *p = &g_priv[i];
    d->id = td_cpu(i);
    d->vt = &cpu_vtable;
    d->priv = p;
    d->numa_node = node ? (int)node->os_index : -1;
    hwloc_const_cpuset_t set = node ? node->cpuset : hwloc_topology_get_topology_cpuset(g_topo);
    p->cpuset = hwloc_bitmap_dup(set);
    p->nodeset = node ? hwloc_bitmap_dup(node->nodeset) : NULL;
    int ncores = hwloc_get_nbobjs_inside_cpuset_by_type(g_topo, set, HWLOC_OBJ_CORE);
    if (ncores <= 0) { /* no core objects: count processing units instead */
        ncores = hwloc_get_nbobjs_inside_cpuset_by_type(g_topo, set, HWLOC_OBJ_PU);
        p->cores = calloc((size_t)(ncores > 0 ? ncores : 1), sizeof *p->cores);
        for (int c = 0; p->cores && c < ncores; c++)
            p->cores[c] = hwloc_get_obj_inside_cpuset_by_type(g_topo, set, HWLOC_OBJ_PU, (unsigned)c);
    } else {
        p->cores = calloc((size_t)ncores, sizeof *p->cores);
        for (int c = 0; p->cores && c < ncores; c++)
            p->cores[c] = hwloc_get_obj_inside_cpuset_by_type(g_topo, set, HWLOC_OBJ_CORE, (unsigned)c);
    }
    if (!p->cores || ncores <= 0) ncores = 1, p->cores = NULL;
    p->n_cores = p->cores ? ncores : 0;
    d->n_cores = ncores;
    d->n_pus = hwloc_get_nbobjs_inside_cpuset_by_type(g_topo, set, HWLOC_OBJ_PU);
    if (d->n_pus <= 0) d->n_pus = ncores;
    d->l2_bytes = cache_size(HWLOC_OBJ_L2CACHE, set);
    d->l3_bytes = cache_size(HWLOC_OBJ_L3CACHE, set);
    snprintf(d->name, sizeof d->name, "cpu:%d (%d cores, %d threads, NUMA node %d, L2 %zu KiB, L3 %zu KiB%s)",
             i, d->n_cores, d->n_pus, d->numa_node, d->l2_bytes >> 10, d->l3_bytes >> 10,
             g_thissystem ? "" : ", described by hwloc, not this machine");
}

static void fallback_device(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    td__device *d = &g_dev[0];
    d->id = td_cpu(0);
    d->vt = &cpu_vtable;
    d->priv = &g_priv[0];
    d->n_cores = (int)n;
    d->n_pus = (int)n;
    d->numa_node = -1;
    snprintf(d->name, sizeof d->name, "cpu:0 (%ld processors; topology unknown)", n);
    g_ndev = 1;
}

static void load_topology(void) {
    g_pin = td__env_int("TIDE_PIN", 1, NULL) != 0;
    if (hwloc_topology_init(&g_topo) != 0) {
        fallback_device();
        return;
    }
    if (hwloc_topology_load(g_topo) != 0) {
        hwloc_topology_destroy(g_topo);
        fallback_device();
        return;
    }
    g_topo_ok = 1;
    g_thissystem = hwloc_topology_is_thissystem(g_topo);
    int nnodes = hwloc_get_nbobjs_by_type(g_topo, HWLOC_OBJ_NUMANODE);
    if (nnodes > TD__MAX_CPU_DEVICES) nnodes = TD__MAX_CPU_DEVICES;
    if (nnodes <= 1) {
        fill_device(0, nnodes == 1 ? hwloc_get_obj_by_type(g_topo, HWLOC_OBJ_NUMANODE, 0) : NULL);
        g_ndev = 1;
        return;
    }
    for (int i = 0; i < nnodes; i++) fill_device(i, hwloc_get_obj_by_type(g_topo, HWLOC_OBJ_NUMANODE, (unsigned)i));
    g_ndev = nnodes;
}

static atomic_int g_loaded;
void td__devices_init(void) {
    if (TD__LIKELY(atomic_load_explicit(&g_loaded, memory_order_acquire))) return;
    uv_once(&g_once, load_topology);
    atomic_store_explicit(&td__cpu_ready, g_ndev, memory_order_release);
    atomic_store_explicit(&g_loaded, 1, memory_order_release);
}

int td__devices_pin_requested(void) {
    td__devices_init();
    return g_pin;
}

int td__cpu_device_count(void) { return g_ndev; }
td__device *td__cpu_device(int id) { return &g_dev[id]; }
