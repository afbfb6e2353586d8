/* Checkpoints in the safetensors format.
 *
 * A file is an 8-byte little-endian header length N, N bytes of JSON (padded
 * with spaces), and the data.  The JSON is an object: each key names an
 * array, {"dtype": "F32", "shape": [3, 4], "data_offsets": [begin, end]},
 * with [begin, end) in bytes from the start of the data; the optional key
 * "__metadata__" holds an object of strings.  Data is little-endian, C order.
 * As the safetensors library requires, the arrays' bytes tile the data
 * exactly: no overlap, no hole, nothing after the last one.
 *
 * The JSON is parsed with cJSON.  Everything (types, integers, dtype, shape
 * against offsets, offsets against the file, duplicate names) is checked
 * before the first array is allocated, so a bad file costs at most its
 * header's worth of memory.
 */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "ndarray/internal.h"

#include <tide/io.h>

/* The safetensors library refuses headers over 100 MB; so do we. */
#define MAX_HEADER ((uint64_t)100 << 20)
#define METADATA_KEY "__metadata__"

struct td_ckpt {
    char *path;
    size_t n;
    char **names;      /* file order */
    td_array **arrays; /* tide's own references */
    size_t *by_name;   /* indices sorted by name, for lookups */
    size_t n_meta;
    char **keys, **values;
};

static const struct {
    const char *name;
    int dtype; /* -1: a safetensors dtype tide does not have */
} st_dtypes[] = {
    {"F32", TD_F32}, {"F64", TD_F64}, {"I32", TD_I32}, {"I64", TD_I64}, {"U8", TD_U8},  {"F16", -1},
    {"BF16", -1},    {"BOOL", -1},    {"I8", -1},      {"I16", -1},     {"U16", -1},    {"U32", -1},
    {"U64", -1},     {"F8_E4M3", -1}, {"F8_E5M2", -1}, {"C64", -1},     {"F8_E8M0", -1}, {"F4", -1},
};

static const char *dtype_code(int dtype) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (st_dtypes[i].dtype == dtype) return st_dtypes[i].name;
    return NULL;
}

/* ---- freeing ---- */

void td_ckpt_free(td_ckpt *ck) {
    if (!ck) return;
    for (size_t i = 0; i < ck->n; i++) {
        if (ck->arrays) td__array_unref(ck->arrays[i]);
        if (ck->names) free(ck->names[i]);
    }
    for (size_t i = 0; i < ck->n_meta; i++) {
        free(ck->keys[i]);
        free(ck->values[i]);
    }
    free(ck->names);
    free(ck->arrays);
    free(ck->by_name);
    free(ck->keys);
    free(ck->values);
    free(ck->path);
    free(ck);
}

/* ---- checking the header ---- */

typedef struct {
    const char *name;
    int dtype;
    int ndim;
    int64_t shape[TD_MAX_DIMS];
    uint64_t begin, end;
} entry;

/* The one child of obj called key; NULL (no failure) when absent, and a
 * failure when there are two. */
static td_status child(const td__src *s, const cJSON *obj, const char *owner, const char *key, cJSON **out) {
    *out = NULL;
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        if (!it->string || strcmp(it->string, key) != 0) continue;
        if (*out) return td__src_bad(s, "'%s' has '%s' twice", owner, key);
        *out = (cJSON *)it;
    }
    return TD_OK;
}

/* A JSON number that is an integer in [0, 2^53]. */
static int json_uint(const cJSON *it, uint64_t *out) {
    if (!cJSON_IsNumber(it)) return 0;
    double v = it->valuedouble;
    if (!isfinite(v) || v < 0 || v > 9007199254740992.0 || floor(v) != v) return 0;
    *out = (uint64_t)v;
    return 1;
}

static td_status check_entry(const td__src *s, const cJSON *it, uint64_t data_size, entry *e) {
    const char *nm = it->string;
    e->name = nm;
    if (!cJSON_IsObject(it)) return td__src_bad(s, "array '%s' is not a JSON object", nm);
    cJSON *dt, *shape, *offs;
    td_status st;
    if ((st = child(s, it, nm, "dtype", &dt)) != TD_OK || (st = child(s, it, nm, "shape", &shape)) != TD_OK ||
        (st = child(s, it, nm, "data_offsets", &offs)) != TD_OK)
        return st;
    if (!dt || !shape || !offs)
        return td__src_bad(s, "array '%s' has no '%s'", nm, !dt ? "dtype" : !shape ? "shape" : "data_offsets");
    if (!cJSON_IsString(dt)) return td__src_bad(s, "array '%s': dtype is not a string", nm);
    e->dtype = -2;
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(dt->valuestring, st_dtypes[i].name) == 0) e->dtype = st_dtypes[i].dtype;
    if (e->dtype == -2) return td__src_bad(s, "array '%s': unknown dtype \"%.32s\"", nm, dt->valuestring);
    if (e->dtype == -1)
        return td__src_bad(s, "array '%s': dtype %s is not supported (tide reads F32, F64, I32, I64 and U8)", nm,
                           dt->valuestring);
    if (!cJSON_IsArray(shape)) return td__src_bad(s, "array '%s': shape is not a list", nm);
    int nd = cJSON_GetArraySize(shape);
    if (nd > TD_MAX_DIMS) return td__src_bad(s, "array '%s' has more than %d dimensions", nm, TD_MAX_DIMS);
    e->ndim = 0;
    uint64_t bytes = td_dtype_size(e->dtype);
    const cJSON *d;
    cJSON_ArrayForEach(d, shape) {
        uint64_t v;
        if (!json_uint(d, &v)) return td__src_bad(s, "array '%s': the shape holds something other than a size", nm);
        e->shape[e->ndim++] = (int64_t)v;
        if (__builtin_mul_overflow(bytes, v, &bytes)) bytes = UINT64_MAX;
    }
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_uint(offs->child, &e->begin) ||
        !json_uint(offs->child->next, &e->end))
        return td__src_bad(s, "array '%s': data_offsets is not a list of two offsets", nm);
    if (e->begin > e->end || e->end > data_size)
        return td__src_bad(s,
                           "array '%s': data_offsets [%" PRIu64 ", %" PRIu64 ") are outside the %" PRIu64
                           " bytes of data",
                           nm, e->begin, e->end, data_size);
    char sh[256];
    td__shape_str(e->ndim, e->shape, sh, sizeof sh);
    if (td__check_shape(s->who, e->ndim, e->shape) != TD_OK)
        return td__src_bad(s, "array '%s': shape %s is too large to address", nm, sh);
    if (bytes != e->end - e->begin)
        return td__src_bad(s, "array '%s': shape %s of %s does not take the %" PRIu64 " bytes of its data_offsets", nm,
                           sh, dt->valuestring, e->end - e->begin);
    return TD_OK;
}

static int by_offset(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

static int by_string(const void *a, const void *b, void *strs) {
    const char *const *s = strs;
    return strcmp(s[*(const size_t *)a], s[*(const size_t *)b]);
}

/* idx: 0..n-1 sorted by strs[idx]; returns the first duplicate or NULL. */
static const char *sort_names(const char *const *strs, size_t n, size_t *idx) {
    for (size_t i = 0; i < n; i++) idx[i] = i;
    qsort_r(idx, n, sizeof *idx, by_string, (void *)strs);
    for (size_t i = 1; i < n; i++)
        if (strcmp(strs[idx[i - 1]], strs[idx[i]]) == 0) return strs[idx[i]];
    return NULL;
}

/* The data's tiling: sorted by offset, each array starts where the previous
 * one ended, the first at 0, the last at the end of the file. */
static td_status check_tiling(const td__src *s, entry *es, size_t n, uint64_t data_size) {
    entry *sorted = malloc((n ? n : 1) * sizeof *sorted);
    if (!sorted) return td__fail(TD_ENOMEM, "%s: %s: out of memory", s->who, s->name);
    memcpy(sorted, es, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, by_offset);
    uint64_t at = 0;
    td_status st = TD_OK;
    for (size_t i = 0; i < n && st == TD_OK; i++) {
        if (sorted[i].begin > at)
            st = td__src_bad(s, "bytes [%" PRIu64 ", %" PRIu64 ") of the data belong to no array", at, sorted[i].begin);
        else if (sorted[i].begin < at)
            st = td__src_bad(s, "arrays '%s' and '%s' overlap", sorted[i - 1].name, sorted[i].name);
        at = sorted[i].end;
    }
    if (st == TD_OK && at != data_size)
        st = td__src_bad(s, "%" PRIu64 " bytes after the last array's data belong to no array", data_size - at);
    free(sorted);
    return st;
}

/* ---- loading ---- */

static td_status alloc_ckpt(const td__src *s, size_t n, size_t n_meta, td_ckpt **out) {
    td_ckpt *ck = calloc(1, sizeof *ck);
    if (ck) {
        ck->path = strdup(s->name);
        ck->names = calloc(n ? n : 1, sizeof *ck->names);
        ck->arrays = calloc(n ? n : 1, sizeof *ck->arrays);
        ck->by_name = calloc(n ? n : 1, sizeof *ck->by_name);
        ck->keys = calloc(n_meta ? n_meta : 1, sizeof *ck->keys);
        ck->values = calloc(n_meta ? n_meta : 1, sizeof *ck->values);
    }
    if (!ck || !ck->path || !ck->names || !ck->arrays || !ck->by_name || !ck->keys || !ck->values) {
        td_ckpt_free(ck);
        return td__fail(TD_ENOMEM, "%s: %s: out of memory", s->who, s->name);
    }
    *out = ck;
    return TD_OK;
}

/* Checks the parsed header and, if it is sound, reads every array. */
static td_status load_parsed(const td__src *s, const cJSON *root, uint64_t data_off, td_device dev, td_ckpt **out) {
    if (!cJSON_IsObject(root)) return td__src_bad(s, "the header is not a JSON object");
    uint64_t data_size = s->size - data_off;
    size_t n = 0, n_meta = 0;
    const cJSON *it, *meta = NULL;
    cJSON_ArrayForEach(it, root) {
        if (strcmp(it->string, METADATA_KEY) != 0) {
            n++;
            continue;
        }
        if (meta) return td__src_bad(s, "'%s' appears twice", METADATA_KEY);
        meta = it;
        if (!cJSON_IsObject(meta)) return td__src_bad(s, "'%s' is not a JSON object", METADATA_KEY);
        const cJSON *m;
        cJSON_ArrayForEach(m, meta) {
            if (!cJSON_IsString(m)) return td__src_bad(s, "metadata '%s' is not a string", m->string);
            n_meta++;
        }
    }
    entry *es = malloc((n ? n : 1) * sizeof *es);
    if (!es) return td__fail(TD_ENOMEM, "%s: %s: out of memory", s->who, s->name);
    td_ckpt *ck = NULL;
    td_status st = alloc_ckpt(s, n, n_meta, &ck);
    size_t k = 0;
    if (st == TD_OK) {
        cJSON_ArrayForEach(it, root) {
            if (strcmp(it->string, METADATA_KEY) == 0) continue;
            if ((st = check_entry(s, it, data_size, &es[k])) != TD_OK) break;
            k++;
        }
    }
    if (st == TD_OK) st = check_tiling(s, es, n, data_size);
    if (st == TD_OK) {
        const char **names = malloc((n ? n : 1) * sizeof *names);
        if (!names) st = td__fail(TD_ENOMEM, "%s: %s: out of memory", s->who, s->name);
        for (size_t i = 0; st == TD_OK && i < n; i++) names[i] = es[i].name;
        const char *dup = st == TD_OK ? sort_names(names, n, ck->by_name) : NULL;
        if (dup) st = td__src_bad(s, "two arrays are called '%s'", dup);
        free(names);
    }
    if (st == TD_OK && meta) {
        const char **keys = malloc((n_meta ? n_meta : 1) * sizeof *keys);
        size_t *idx = malloc((n_meta ? n_meta : 1) * sizeof *idx);
        size_t i = 0;
        const cJSON *m;
        if (!keys || !idx) {
            st = td__fail(TD_ENOMEM, "%s: %s: out of memory", s->who, s->name);
        } else {
            cJSON_ArrayForEach(m, meta) keys[i++] = m->string;
            const char *dup = sort_names(keys, n_meta, idx);
            if (dup) st = td__src_bad(s, "metadata key '%s' appears twice", dup);
        }
        free(keys);
        free(idx);
        i = 0;
        cJSON_ArrayForEach(m, meta) {
            if (st != TD_OK) break;
            ck->keys[i] = strdup(m->string);
            ck->values[i] = strdup(m->valuestring);
            ck->n_meta = ++i;
            if (!ck->keys[i - 1] || !ck->values[i - 1])
                st = td__fail(TD_ENOMEM, "%s: %s: out of memory", s->who, s->name);
        }
    }
    /* Sound: now allocate and read. */
    int swap = !td__host_le();
    for (size_t i = 0; st == TD_OK && i < n; i++) {
        ck->names[i] = strdup(es[i].name);
        if (!ck->names[i]) {
            st = td__fail(TD_ENOMEM, "%s: %s: out of memory", s->who, s->name);
            break;
        }
        ck->n = i + 1;
        ck->arrays[i] = td__array_new(es[i].dtype, es[i].ndim, es[i].shape, dev, s->who);
        if (!ck->arrays[i]) {
            st = td_last_status();
            break;
        }
        st = td__src_read_elems(s, data_off + es[i].begin, td__array_ptr(ck->arrays[i]), es[i].dtype, es[i].ndim,
                                es[i].shape, swap, 0);
    }
    free(es);
    if (st != TD_OK) {
        td_ckpt_free(ck);
        return st;
    }
    *out = ck;
    return TD_OK;
}

static td_status load(const td__src *s, td_device dev, td_ckpt **out) {
    unsigned char pre[8];
    if (s->size < 8) return td__src_bad(s, "%" PRIu64 " bytes is too short for a safetensors file", s->size);
    td_status st = td__src_read(s, 0, pre, 8);
    if (st != TD_OK) return st;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | pre[i];
    if (hlen > s->size - 8)
        return td__src_bad(s, "the header claims %" PRIu64 " bytes but only %" PRIu64 " follow its length", hlen,
                           s->size - 8);
    if (hlen > MAX_HEADER)
        return td__src_bad(s, "a header of %" PRIu64 " bytes is over the %" PRIu64 " tide accepts", hlen, MAX_HEADER);
    char *text = malloc(hlen + 1);
    if (!text) return td__fail(TD_ENOMEM, "%s: %s: out of memory for the header", s->who, s->name);
    if ((st = td__src_read(s, 8, text, hlen)) != TD_OK) {
        free(text);
        return st;
    }
    text[hlen] = '\0'; /* cJSON stops at hlen; the NUL is a second fence */
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, hlen, &end, 0);
    if (!root) {
        size_t at = end && end >= text && end <= text + hlen ? (size_t)(end - text) : 0;
        st = td__src_bad(s, "the header is not valid JSON (at byte %zu of %" PRIu64 ")", at, hlen);
    } else {
        for (const char *p = end; p < text + hlen && st == TD_OK; p++)
            if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
                st = td__src_bad(s, "the header has text after its JSON object");
        if (st == TD_OK) st = load_parsed(s, root, 8 + hlen, dev, out);
        cJSON_Delete(root);
    }
    free(text);
    return st;
}

td_status td__ckpt_load_mem(const void *data, size_t size, const char *name, td_device dev, td_ckpt **out) {
    if (!out) return td__fail(TD_EINVAL, "td_ckpt_load: out is NULL");
    *out = NULL;
    td__src s;
    td__src_mem(&s, "td_ckpt_load", name ? name : "(memory)", data, size);
    if (!td__device_lookup("td_ckpt_load", dev)) return td_last_status();
    return load(&s, dev, out);
}

td_status td_ckpt_load(const char *path, td_device dev, td_ckpt **out) {
    if (out) *out = NULL;
    if (!path || !out) return td__fail(TD_EINVAL, "td_ckpt_load: %s is NULL", path ? "out" : "path");
    if (!td__device_lookup("td_ckpt_load", dev)) return td_last_status();
    td__src s;
    td_status st = td__src_open(&s, "td_ckpt_load", path);
    if (st != TD_OK) return st;
    st = load(&s, dev, out);
    td__src_close(&s);
    return st;
}

/* ---- reading a loaded checkpoint ---- */

size_t td_ckpt_count(const td_ckpt *ck) { return ck ? ck->n : 0; }

const char *td_ckpt_name(const td_ckpt *ck, size_t i) { return ck && i < ck->n ? ck->names[i] : NULL; }

td_array *td_ckpt_get(const td_ckpt *ck, const char *name) {
    if (!ck || !name) {
        td__fail(TD_EINVAL, "td_ckpt_get: %s is NULL", ck ? "name" : "checkpoint");
        return NULL;
    }
    size_t lo = 0, hi = ck->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ck->names[ck->by_name[mid]], name);
        if (c == 0) {
            /* A handle of its own (scopes track handles), on the same storage. */
            const td_array *a = ck->arrays[ck->by_name[mid]];
            return td__array_give(td__array_wrap(a->st, a->dtype, a->ndim, a->shape, a->strides, a->offset));
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    td__fail(TD_EINVAL, "td_ckpt_get: %s has no array called '%s'", ck->path, name);
    return NULL;
}

size_t td_ckpt_meta_count(const td_ckpt *ck) { return ck ? ck->n_meta : 0; }

const char *td_ckpt_meta_key(const td_ckpt *ck, size_t i) { return ck && i < ck->n_meta ? ck->keys[i] : NULL; }

const char *td_ckpt_meta(const td_ckpt *ck, const char *key) {
    if (!ck || !key) return NULL;
    for (size_t i = 0; i < ck->n_meta; i++)
        if (strcmp(ck->keys[i], key) == 0) return ck->values[i];
    return NULL;
}

/* ---- saving ---- */

static td_status check_save_args(size_t n, const td_ckpt_entry *entries, size_t n_meta,
                                 const td_ckpt_meta_entry *meta) {
    const char *who = "td_ckpt_save";
    if (n && !entries) return td__fail(TD_EINVAL, "%s: entries is NULL with %zu arrays", who, n);
    if (n_meta && !meta) return td__fail(TD_EINVAL, "%s: meta is NULL with %zu entries", who, n_meta);
    for (size_t i = 0; i < n; i++) {
        if (!entries[i].name || !entries[i].array)
            return td__fail(TD_EINVAL, "%s: entry %zu has a NULL %s", who, i, entries[i].name ? "array" : "name");
        if (strcmp(entries[i].name, METADATA_KEY) == 0)
            return td__fail(TD_EINVAL, "%s: an array cannot be called '%s'", who, METADATA_KEY);
    }
    for (size_t i = 0; i < n_meta; i++)
        if (!meta[i].key || !meta[i].value)
            return td__fail(TD_EINVAL, "%s: metadata entry %zu has a NULL %s", who, i, meta[i].key ? "value" : "key");
    size_t most = n > n_meta ? n : n_meta;
    const char **strs = calloc(most ? most : 1, sizeof *strs);
    size_t *idx = calloc(most ? most : 1, sizeof *idx);
    td_status st = TD_OK;
    if (!strs || !idx) st = td__fail(TD_ENOMEM, "%s: out of memory", who);
    const char *dup;
    if (st == TD_OK) {
        for (size_t i = 0; i < n; i++) strs[i] = entries[i].name;
        if ((dup = sort_names(strs, n, idx)) != NULL) st = td__fail(TD_EINVAL, "%s: two arrays are called '%s'", who, dup);
    }
    if (st == TD_OK) {
        for (size_t i = 0; i < n_meta; i++) strs[i] = meta[i].key;
        if ((dup = sort_names(strs, n_meta, idx)) != NULL)
            st = td__fail(TD_EINVAL, "%s: metadata key '%s' appears twice", who, dup);
    }
    free(strs);
    free(idx);
    return st;
}

/* The header's JSON, unformatted (malloc'd), or NULL when out of memory. */
static char *header_json(size_t n, const td_ckpt_entry *entries, size_t n_meta, const td_ckpt_meta_entry *meta) {
    cJSON *root = cJSON_CreateObject();
    int ok = root != NULL;
    if (ok && n_meta) {
        cJSON *m = cJSON_AddObjectToObject(root, METADATA_KEY);
        ok = m != NULL;
        for (size_t i = 0; ok && i < n_meta; i++) ok = cJSON_AddStringToObject(m, meta[i].key, meta[i].value) != NULL;
    }
    uint64_t at = 0;
    for (size_t i = 0; ok && i < n; i++) {
        const td_array *a = entries[i].array;
        uint64_t bytes = (uint64_t)td_numel(a) * td_dtype_size(td_dtype(a));
        cJSON *e = cJSON_AddObjectToObject(root, entries[i].name);
        cJSON *shape = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
        cJSON *offs = e ? cJSON_AddArrayToObject(e, "data_offsets") : NULL;
        ok = e && shape && offs && cJSON_AddStringToObject(e, "dtype", dtype_code(td_dtype(a)));
        for (int d = 0; ok && d < td_ndim(a); d++) {
            cJSON *v = cJSON_CreateNumber((double)td_shape(a)[d]);
            ok = v && cJSON_AddItemToArray(shape, v);
        }
        for (int k = 0; ok && k < 2; k++) {
            cJSON *v = cJSON_CreateNumber((double)(k ? at + bytes : at));
            ok = v && cJSON_AddItemToArray(offs, v);
        }
        at += bytes;
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}

td_status td_ckpt_save(const char *path, size_t n, const td_ckpt_entry *entries, size_t n_meta,
                       const td_ckpt_meta_entry *meta) {
    if (!path) return td__fail(TD_EINVAL, "td_ckpt_save: path is NULL");
    td_status st = check_save_args(n, entries, n_meta, meta);
    if (st != TD_OK) return st;
    if ((st = td__busy_check("td_ckpt_save")) != TD_OK) return st;
    char *json = header_json(n, entries, n_meta, meta);
    if (!json) return td__fail(TD_ENOMEM, "td_ckpt_save: %s: out of memory for the header", path);
    /* Padded with spaces to a multiple of 8, so the data is aligned. */
    size_t len = strlen(json), padded = (len + 7) & ~(size_t)7;
    unsigned char pre[8];
    for (int i = 0; i < 8; i++) pre[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    static const char spaces[8] = "        ";

    td__afile f;
    st = td__afile_open(&f, "td_ckpt_save", path);
    if (st == TD_OK) st = td__afile_write(&f, pre, sizeof pre);
    if (st == TD_OK) st = td__afile_write(&f, json, len);
    if (st == TD_OK) st = td__afile_write(&f, spaces, padded - len);
    for (size_t i = 0; st == TD_OK && i < n; i++) st = td__afile_write_array(&f, entries[i].array, 1);
    if (st == TD_OK) st = td__afile_commit(&f);
    td__afile_abort(&f);
    free(json);
    return st;
}
