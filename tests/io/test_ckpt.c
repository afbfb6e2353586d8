/* Checkpoints (safetensors): round trips of many named arrays of every dtype
 * and shape with a metadata map; the loaded checkpoint's accessors; a reader
 * and a writer written from the format's description (python's json and
 * numpy, and the safetensors package too when it is installed) agree with
 * ours; hostile and truncated files are TD_EFORMAT naming the file, without
 * allocating what they claim; bad arguments, EBUSY and failed arrays leave
 * the old file alone. */
#include <fcntl.h>

#include "io.h"

static const int64_t shapes[][TD_MAX_DIMS] = {{0}, {0}, {3, 0, 2}, {7}, {3, 4, 5}, {1, 2, 1, 3, 1, 2, 1, 2}};
static const int ndims[] = {0, 1, 3, 1, 3, 8};
enum { NSHAPES = sizeof ndims / sizeof ndims[0], NARR = ND_NDTYPES * NSHAPES };

Test(ckpt, round_trips_arrays_of_every_dtype_and_shape_with_metadata, .timeout = 60) {
    nd_start(TD_ENGINE_THREADED, 2);
    char dir[256], path[512];
    io_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    tt_rng g = {nd_seed("ckpt round trips", 9)};
    td_ckpt_entry e[NARR + ND_NLAYOUTS];
    nd_ref refs[NARR + ND_NLAYOUTS];
    char names[NARR + ND_NLAYOUTS][32];
    int k = 0;
    ND_FOR_EACH_DTYPE(dt) {
        for (int s = 0; s < NSHAPES; s++, k++) {
            /* names in an order that is not sorted, one with non-ASCII and quotes */
            snprintf(names[k], sizeof names[k], "%s/%d\xc3\xa9\"", nd_dt(dt), NSHAPES - s);
            e[k] = (td_ckpt_entry){names[k], nd_make_random(&refs[k], dt, ndims[s], shapes[s], &g, ND_GEN_BIG)};
        }
    }
    /* and views of every layout */
    for (int layout = 0; layout < ND_NLAYOUTS; layout++, k++) {
        int dt = layout % ND_NDTYPES;
        snprintf(names[k], sizeof names[k], "view %s", nd_layout_name(layout));
        e[k].name = names[k];
        e[k].array = nd_make_input(dt, 3, shapes[4], layout, &g, ND_GEN_GENERAL, &refs[k]);
    }
    const td_ckpt_meta_entry meta[] = {
        {"step", "1200"}, {"rng", "philox:0123456789abcdef:42"}, {"data position", "epoch 3, batch 17"}, {"empty", ""}};
    cr_assert_eq(td_ckpt_save(path, (size_t)k, e, 4, meta), TD_OK, "%s", td_last_error());
    cr_assert_eq(io_count_entries(dir), 1);

    td_ckpt *ck = NULL;
    cr_assert_eq(td_ckpt_load(path, td_cpu(0), &ck), TD_OK, "%s", td_last_error());
    cr_assert_eq(td_ckpt_count(ck), (size_t)k);
    for (int i = 0; i < k; i++) {
        cr_assert_str_eq(td_ckpt_name(ck, (size_t)i), names[i], "names keep the order they were saved in");
        td_array *a = td_ckpt_get(ck, names[i]);
        cr_assert_not_null(a, "%s: %s", names[i], td_last_error());
        cr_assert(td_array_device(a).kind == TD_CPU);
        nd_expect_ref(a, &refs[i], names[i]);
        td_release(a);
    }
    cr_assert_null(td_ckpt_name(ck, (size_t)k));
    cr_assert_eq(td_ckpt_meta_count(ck), 4);
    for (int i = 0; i < 4; i++) {
        cr_assert_str_eq(td_ckpt_meta_key(ck, (size_t)i), meta[i].key);
        cr_assert_str_eq(td_ckpt_meta(ck, meta[i].key), meta[i].value);
    }
    cr_assert_null(td_ckpt_meta_key(ck, 4));
    cr_assert_null(td_ckpt_meta(ck, "absent"));
    td_ckpt_free(ck);
    for (int i = 0; i < k; i++) {
        td_release(e[i].array);
        nd_ref_free(&refs[i]);
    }
    /* The header is padded to a multiple of 8 bytes. */
    size_t n;
    unsigned char *f = io_read_file(path, &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | f[i];
    cr_assert_eq(hl % 8, 0);
    free(f);
    io_rmdir(dir);
    nd_finish();
}

Test(ckpt, empty_checkpoints_and_metadata_alone_round_trip, .timeout = 30) {
    nd_start(TD_ENGINE_NAIVE, 1);
    char dir[256], path[512];
    io_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/c.safetensors", dir);
    cr_assert_eq(td_ckpt_save(path, 0, NULL, 0, NULL), TD_OK, "%s", td_last_error());
    td_ckpt *ck = NULL;
    cr_assert_eq(td_ckpt_load(path, td_cpu(0), &ck), TD_OK, "%s", td_last_error());
    cr_assert_eq(td_ckpt_count(ck), 0);
    cr_assert_eq(td_ckpt_meta_count(ck), 0);
    td_ckpt_free(ck);
    const td_ckpt_meta_entry m[] = {{"step", "7"}};
    cr_assert_eq(td_ckpt_save(path, 0, NULL, 1, m), TD_OK, "%s", td_last_error());
    cr_assert_eq(td_ckpt_load(path, td_cpu(0), &ck), TD_OK, "%s", td_last_error());
    cr_assert_str_eq(td_ckpt_meta(ck, "step"), "7");
    td_ckpt_free(ck);
    td_ckpt_free(NULL);
    cr_assert_eq(td_ckpt_count(NULL), 0);
    cr_assert_null(td_ckpt_name(NULL, 0));
    cr_assert_null(td_ckpt_meta(NULL, "x"));
    io_rmdir(dir);
    nd_finish();
}

Test(ckpt, arrays_taken_from_a_checkpoint_outlive_it_and_join_scopes, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    char dir[256], path[512];
    io_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/c.safetensors", dir);
    td_array *w = td_full(TD_F32, 2, (int64_t[]){2, 3}, 0.5, td_cpu(0));
    td_ckpt_entry e[] = {{"w", w}};
    cr_assert_eq(td_ckpt_save(path, 1, e, 0, NULL), TD_OK, "%s", td_last_error());
    td_release(w);
    td_ckpt *ck = NULL;
    cr_assert_eq(td_ckpt_load(path, td_cpu(0), &ck), TD_OK, "%s", td_last_error());
    td_array *kept = td_ckpt_get(ck, "w");
    td_scope_begin();
    /* the same name twice in one scope: two handles */
    cr_assert_not_null(td_ckpt_get(ck, "w"));
    cr_assert_not_null(td_ckpt_get(ck, "w"));
    td_scope_end();
    td_clear_error();
    cr_assert_null(td_ckpt_get(ck, "b"));
    io_expect_fail(td_last_status(), TD_EINVAL, path, "get of a missing name");
    cr_assert(tt_has(td_last_error(), "'b'"), "%s", td_last_error());
    td_clear_error();
    nd_expect_null(td_ckpt_get(ck, NULL), TD_EINVAL, "td_ckpt_get", "get(NULL name)");
    td_ckpt_free(ck);
    td_array *twice = td_mul_scalar(kept, 2.0);
    float got[6];
    cr_assert_eq(td_to_host(twice, got, sizeof got), TD_OK);
    for (int i = 0; i < 6; i++) cr_assert_eq(got[i], 1.0f);
    td_release(twice);
    td_release(kept);
    io_rmdir(dir);
    nd_finish();
}

Test(ckpt, bad_arguments_are_einval_and_write_nothing, .timeout = 30) {
    nd_start(TD_ENGINE_NAIVE, 1);
    char dir[256], path[512];
    io_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/c.safetensors", dir);
    td_array *a = td_zeros(TD_F32, 1, (int64_t[]){2}, td_cpu(0));
    const td_ckpt_meta_entry m1[] = {{"k", "v"}}, m2[] = {{"k", "v"}, {"k", "w"}}, m3[] = {{"k", NULL}},
                             m4[] = {{NULL, "v"}};
    struct {
        const char *what;
        const char *path;
        size_t n;
        td_ckpt_entry e[2];
        size_t nm;
        const td_ckpt_meta_entry *m;
    } cases[] = {
        {"NULL path", NULL, 1, {{"a", a}}, 0, NULL},
        {"NULL entries", path, 1, {{0}}, 0, NULL},
        {"NULL name", path, 1, {{NULL, a}}, 0, NULL},
        {"NULL array", path, 1, {{"a", NULL}}, 0, NULL},
        {"duplicate names", path, 2, {{"a", a}, {"a", a}}, 0, NULL},
        {"__metadata__ as a name", path, 1, {{"__metadata__", a}}, 0, NULL},
        {"NULL meta", path, 1, {{"a", a}}, 1, NULL},
        {"duplicate keys", path, 1, {{"a", a}}, 2, m2},
        {"NULL value", path, 1, {{"a", a}}, 1, m3},
        {"NULL key", path, 1, {{"a", a}}, 1, m4},
    };
    (void)m1;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        td_clear_error();
        const td_ckpt_entry *e = strcmp(cases[i].what, "NULL entries") == 0 ? NULL : cases[i].e;
        td_status st = td_ckpt_save(cases[i].path, cases[i].n, e, cases[i].nm, cases[i].m);
        nd_expect_status(st, TD_EINVAL, "td_ckpt_save", cases[i].what);
        cr_assert_eq(io_count_entries(dir), 0, "%s: wrote a file", cases[i].what);
    }
    td_ckpt *ck = (td_ckpt *)1;
    td_clear_error();
    nd_expect_status(td_ckpt_load(NULL, td_cpu(0), &ck), TD_EINVAL, "td_ckpt_load", "load(NULL path)");
    cr_assert_null(ck, "*out is NULL after a failure");
    nd_expect_status(td_ckpt_load(path, td_cpu(0), NULL), TD_EINVAL, "td_ckpt_load", "load(NULL out)");
    td_clear_error();
    io_expect_fail(td_ckpt_load(path, td_cpu(0), &ck), TD_EIO, path, "load of a missing file");
    td_ckpt_entry e[] = {{"a", a}};
    cr_assert_eq(td_ckpt_save(path, 1, e, 0, NULL), TD_OK);
    td_clear_error();
    nd_expect_status(td_ckpt_load(path, td_gpu(0), &ck), TD_EDEVICE, NULL, "load onto an absent GPU");
    td_release(a);
    io_rmdir(dir);
    nd_finish();
}

/* ---- hostile files ---- */

/* A safetensors file made here: the 8-byte length, json as is, data zeros. */
static size_t mk_st(unsigned char *out, size_t cap, const char *json, size_t data) {
    size_t hl = strlen(json);
    cr_assert(8 + hl + data <= cap);
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(out + 8, json, hl);
    memset(out + 8 + hl, 0, data);
    return 8 + hl + data;
}

#define E(name, dt, shape, offs) "\"" name "\": {\"dtype\": \"" dt "\", \"shape\": " shape ", \"data_offsets\": " offs "}"

Test(ckpt, hostile_and_corrupt_files_are_eformat_naming_the_file, .timeout = 60) {
    nd_start(TD_ENGINE_NAIVE, 1);
    char dir[256], path[512];
    io_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    /* "[[[...]]]" 2000 levels deep: past cJSON's nesting limit */
    static char deep[4001];
    memset(deep, '[', 2000);
    memset(deep + 2000, ']', 2000);
    const struct {
        const char *what;
        const char *json;
        size_t data;
    } cases[] = {
        {"not JSON", "{not json}", 0},
        {"a JSON list", "[]", 0},
        {"a JSON string", "\"a\"", 0},
        {"nested past the limit", deep, 0},
        {"an array that is a number", "{\"a\": 1}", 0},
        {"no dtype", "{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4},
        {"no shape", "{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4},
        {"no data_offsets", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4},
        {"dtype F16", "{" E("a", "F16", "[2]", "[0, 4]") "}", 4},
        {"dtype BF16", "{" E("a", "BF16", "[2]", "[0, 4]") "}", 4},
        {"dtype BOOL", "{" E("a", "BOOL", "[4]", "[0, 4]") "}", 4},
        {"unknown dtype", "{" E("a", "float32", "[1]", "[0, 4]") "}", 4},
        {"dtype not a string", "{\"a\": {\"dtype\": 5, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4},
        {"dtype twice", "{\"a\": {\"dtype\": \"F32\", \"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4},
        {"negative dimension", "{" E("a", "F32", "[-1]", "[0, 4]") "}", 4},
        {"fractional dimension", "{" E("a", "F32", "[1.5]", "[0, 4]") "}", 4},
        {"dimension 1e300", "{" E("a", "F32", "[1e300]", "[0, 4]") "}", 4},
        {"dimension past 2^53", "{" E("a", "U8", "[9007199254740994]", "[0, 4]") "}", 4},
        {"shape not a list", "{" E("a", "F32", "\"1\"", "[0, 4]") "}", 4},
        {"huge dimensions before a zero", "{" E("a", "F32", "[262144, 1, 154786, 62144, 1, 154786, 0]", "[0, 0]") "}", 0},
        {"nine dimensions", "{" E("a", "U8", "[1,1,1,1,1,1,1,1,1]", "[0, 1]") "}", 1},
        {"shape product overflows", "{" E("a", "F64", "[4294967296, 4294967296, 16]", "[0, 8]") "}", 8},
        {"a terabyte claimed", "{" E("a", "F32", "[262144, 1048576]", "[0, 1099511627776]") "}", 8},
        {"shape and offsets disagree", "{" E("a", "F32", "[3]", "[0, 8]") "}", 8},
        {"offsets reversed", "{" E("a", "F32", "[0]", "[8, 0]") "}", 8},
        {"offsets past the data", "{" E("a", "F32", "[2]", "[4, 12]") "}", 8},
        {"one offset", "{" E("a", "F32", "[2]", "[0]") "}", 8},
        {"three offsets", "{" E("a", "F32", "[2]", "[0, 8, 8]") "}", 8},
        {"offsets as strings", "{" E("a", "F32", "[2]", "[\"0\", \"8\"]") "}", 8},
        {"overlapping arrays", "{" E("a", "F32", "[2]", "[0, 8]") ", " E("b", "F32", "[2]", "[4, 12]") "}", 12},
        {"a hole between arrays", "{" E("a", "F32", "[1]", "[0, 4]") ", " E("b", "F32", "[1]", "[8, 12]") "}", 12},
        {"bytes after the last array", "{" E("a", "F32", "[1]", "[0, 4]") "}", 8},
        {"data but no arrays", "{}", 4},
        {"duplicate names", "{" E("a", "F32", "[1]", "[0, 4]") ", " E("a", "F32", "[1]", "[4, 8]") "}", 8},
        {"metadata not an object", "{\"__metadata__\": [\"a\"]}", 0},
        {"metadata value a number", "{\"__metadata__\": {\"step\": 12}}", 0},
        {"metadata key twice", "{\"__metadata__\": {\"step\": \"1\", \"step\": \"2\"}}", 0},
        {"metadata twice", "{\"__metadata__\": {}, \"__metadata__\": {}}", 0},
        {"text after the JSON", "{} x", 0},
        {"a NUL after the JSON", "{}\0", 0},
    };
    static unsigned char file[16384];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = mk_st(file, sizeof file, cases[i].json, cases[i].data);
        if (strcmp(cases[i].what, "a NUL after the JSON") == 0) {
            /* strlen stops at the NUL: make the header 3 bytes, "{}\0" */
            n = mk_st(file, sizeof file, "{}", 0);
            file[0] = 3;
            file[n++] = '\0';
        }
        io_write_file(path, file, n);
        td_ckpt *ck = (td_ckpt *)1;
        td_clear_error();
        td_status st = td_ckpt_load(path, td_cpu(0), &ck);
        io_expect_fail(st, TD_EFORMAT, path, cases[i].what);
        cr_assert_null(ck, "%s: *out is NULL after a failure", cases[i].what);
        cr_log_info("%s: %s", cases[i].what, td_last_error());
        td_clear_error();
        st = td__ckpt_load_mem(file, n, "mem.safetensors", td_cpu(0), &ck);
        io_expect_fail(st, TD_EFORMAT, "mem.safetensors", cases[i].what);
    }
    /* Header lengths: past the end, and absurd in a file that big (sparse). */
    memset(file, 0xff, 8);
    io_write_file(path, file, 10);
    td_ckpt *ck = NULL;
    io_expect_fail(td_ckpt_load(path, td_cpu(0), &ck), TD_EFORMAT, path, "header length 2^64-1");
    uint64_t big = (uint64_t)200 << 20;
    for (int i = 0; i < 8; i++) file[i] = (unsigned char)(big >> (8 * i));
    io_write_file(path, file, 8);
    int fd = open(path, O_WRONLY);
    cr_assert(fd >= 0 && ftruncate(fd, (off_t)(big + 8)) == 0 && close(fd) == 0);
    td_pool_stats before, after;
    td_pool_stats_get(td_cpu(0), &before);
    io_expect_fail(td_ckpt_load(path, td_cpu(0), &ck), TD_EFORMAT, path, "a 200 MB header");
    cr_log_info("a 200 MB header: %s", td_last_error());
    td_pool_stats_get(td_cpu(0), &after);
    cr_assert_eq(after.system_allocs, before.system_allocs);
    io_rmdir(dir);
    nd_finish();
}

Test(ckpt, every_truncation_of_a_valid_file_is_eformat, .timeout = 120) {
    nd_start(TD_ENGINE_NAIVE, 1);
    char dir[256], path[512], cut[512];
    io_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/whole.safetensors", dir);
    snprintf(cut, sizeof cut, "%s/cut.safetensors", dir);
    td_array *a = td_full(TD_I64, 2, (int64_t[]){2, 3}, -3, td_cpu(0));
    td_array *b = td_full(TD_U8, 1, (int64_t[]){5}, 200, td_cpu(0));
    td_ckpt_entry e[] = {{"a", a}, {"b", b}};
    td_ckpt_meta_entry m[] = {{"step", "10"}};
    cr_assert_eq(td_ckpt_save(path, 2, e, 1, m), TD_OK);
    size_t n;
    unsigned char *whole = io_read_file(path, &n);
    for (size_t len = 0; len < n; len++) {
        io_write_file(cut, whole, len);
        td_ckpt *ck = NULL;
        td_clear_error();
        char what[64];
        snprintf(what, sizeof what, "cut at %zu of %zu", len, n);
        io_expect_fail(td_ckpt_load(cut, td_cpu(0), &ck), TD_EFORMAT, cut, what);
    }
    free(whole);
    td_ckpt *ck = NULL;
    cr_assert_eq(td_ckpt_load(path, td_cpu(0), &ck), TD_OK);
    td_array *a2 = td_ckpt_get(ck, "a"), *b2 = td_ckpt_get(ck, "b");
    io_expect_same(a, a2, "a");
    io_expect_same(b, b2, "b");
    td_release(a2);
    td_release(b2);
    td_ckpt_free(ck);
    td_release(a);
    td_release(b);
    io_rmdir(dir);
    nd_finish();
}

/* ---- other readers and writers ---- */

static const char py_ckpt[] =
    "import sys, json, struct, numpy as np\n"
    "d = sys.argv[1]\n"
    "codes = {'F32': '<f4', 'F64': '<f8', 'I32': '<i4', 'I64': '<i8', 'U8': 'u1'}\n"
    "def want():\n"
    "    out = {}\n"
    "    for i, (code, dt) in enumerate(sorted(codes.items())):\n"
    "        k = np.arange(12, dtype=np.int64)\n"
    "        v = (k * 7 + i) % 256 if dt == 'u1' else k * 3 - 50 + i\n"
    "        out[code.lower()] = v.reshape(3, 4).astype(dt)\n"
    "    out['scalar'] = np.array(2.5)\n"
    "    out['empty'] = np.zeros((0, 3), '<i4')\n"
    "    return out\n"
    "meta = {'step': '1200', 'rng': 'philox:42'}\n"
    "bad = 0\n"
    "# ours, read from the format's description\n"
    "b = open(d + '/ours.safetensors', 'rb').read()\n"
    "n = struct.unpack('<Q', b[:8])[0]\n"
    "h = json.loads(b[8:8 + n])\n"
    "data = b[8 + n:]\n"
    "if h.pop('__metadata__', None) != meta: print('metadata differs'); bad += 1\n"
    "w = want()\n"
    "if sorted(h) != sorted(w): print('names differ', sorted(h)); bad += 1\n"
    "end = 0\n"
    "for name, e in h.items():\n"
    "    lo, hi = e['data_offsets']\n"
    "    end = max(end, hi)\n"
    "    a = np.frombuffer(data[lo:hi], dtype=codes[e['dtype']]).reshape(e['shape'])\n"
    "    if a.dtype != w[name].dtype or not np.array_equal(a, w[name]): print('differs:', name); bad += 1\n"
    "if end != len(data): print('data length', end, len(data)); bad += 1\n"
    "# theirs: sorted names, data in reverse order, unpadded header\n"
    "w = want()\n"
    "names = sorted(w, reverse=True)\n"
    "hdr = {'__metadata__': meta}\n"
    "blob = b''\n"
    "rev = {v: k for k, v in codes.items()}\n"
    "for name in names:\n"
    "    a = w[name]\n"
    "    hdr[name] = {'dtype': rev[a.dtype.str if a.dtype.str != '|u1' else 'u1'], 'shape': list(a.shape),\n"
    "                 'data_offsets': [len(blob), len(blob) + a.nbytes]}\n"
    "    blob += a.tobytes()\n"
    "j = json.dumps(dict(sorted(hdr.items()))).encode()\n"
    "open(d + '/theirs.safetensors', 'wb').write(struct.pack('<Q', len(j)) + j + blob)\n"
    "try:\n"
    "    from safetensors.numpy import load_file, save_file\n"
    "except ImportError:\n"
    "    print('the safetensors package is not installed: checked against the format description only')\n"
    "else:\n"
    "    got = load_file(d + '/ours.safetensors')\n"
    "    for name, a in want().items():\n"
    "        if not np.array_equal(got[name], a) or got[name].dtype != a.dtype: print('safetensors differs:', name); bad += 1\n"
    "    save_file(want(), d + '/lib.safetensors', metadata=meta)\n"
    "    print('checked with the safetensors package')\n"
    "print('python checked the checkpoint,', bad, 'problems')\n"
    "sys.exit(1 if bad else 0)\n";

static const char *const st_names[] = {"f32", "f64", "i32", "i64", "u8"};
static const int st_dtypes[] = {TD_F32, TD_F64, TD_I32, TD_I64, TD_U8};

static void expect_wanted(td_ckpt *ck, const char *what) {
    cr_assert_eq(td_ckpt_count(ck), 7, "%s: count", what);
    cr_assert_str_eq(td_ckpt_meta(ck, "step"), "1200", "%s", what);
    cr_assert_str_eq(td_ckpt_meta(ck, "rng"), "philox:42", "%s", what);
    for (int i = 0; i < 5; i++) {
        td_array *a = td_ckpt_get(ck, st_names[i]);
        cr_assert_not_null(a, "%s: %s", what, td_last_error());
        cr_assert_eq(td_dtype(a), st_dtypes[i]);
        nd_ref r = nd_read(a);
        cr_assert_eq(r.n, 12);
        for (int64_t k = 0; k < 12; k++) {
            double want = st_dtypes[i] == TD_U8 ? (double)((k * 7 + i) % 256) : (double)(k * 3 - 50 + i);
            cr_assert_eq(r.f[k], want, "%s: %s[%lld]", what, st_names[i], (long long)k);
        }
        nd_ref_free(&r);
        td_release(a);
    }
    td_array *s = td_ckpt_get(ck, "scalar");
    cr_assert(s && td_ndim(s) == 0 && td_dtype(s) == TD_F64, "%s: scalar: %s", what, s ? td_dtype_name(td_dtype(s)) : td_last_error());
    double v = 0;
    cr_assert_eq(td_to_host(s, &v, 8), TD_OK);
    cr_assert_eq(v, 2.5);
    td_release(s);
    td_array *e = td_ckpt_get(ck, "empty");
    cr_assert(e && td_ndim(e) == 2 && td_shape(e)[0] == 0 && td_shape(e)[1] == 3 && td_dtype(e) == TD_I32);
    td_release(e);
}

Test(ckpt, other_readers_and_writers_of_the_format_agree_with_ours, .timeout = 120) {
    const char *py = io_python_numpy();
    if (!py) cr_skip_test("no python3 that imports numpy (Debian: apt-get install python3-numpy)");
    nd_start(TD_ENGINE_THREADED, 2);
    char dir[256], path[512];
    io_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/ours.safetensors", dir);
    td_ckpt_entry e[7];
    nd_ref refs[5];
    for (int i = 0; i < 5; i++) {
        refs[i] = nd_ref_new(st_dtypes[i], 2, (int64_t[]){3, 4});
        for (int64_t k = 0; k < 12; k++)
            nd_ref_put_i(&refs[i], k, st_dtypes[i] == TD_U8 ? (k * 7 + i) % 256 : k * 3 - 50 + i);
        e[i] = (td_ckpt_entry){st_names[i], nd_make(&refs[i])};
        nd_ref_free(&refs[i]);
    }
    e[5] = (td_ckpt_entry){"scalar", td_full(TD_F64, 0, NULL, 2.5, td_cpu(0))};
    e[6] = (td_ckpt_entry){"empty", td_zeros(TD_I32, 2, (int64_t[]){0, 3}, td_cpu(0))};
    td_ckpt_meta_entry m[] = {{"step", "1200"}, {"rng", "philox:42"}};
    cr_assert_eq(td_ckpt_save(path, 7, e, 2, m), TD_OK, "%s", td_last_error());
    for (int i = 0; i < 7; i++) td_release(e[i].array);
    cr_assert_eq(io_run_python(py, py_ckpt, dir), 0, "python read our checkpoint differently (see the output)");
    td_ckpt *ck = NULL;
    snprintf(path, sizeof path, "%s/theirs.safetensors", dir);
    cr_assert_eq(td_ckpt_load(path, td_cpu(0), &ck), TD_OK, "%s", td_last_error());
    expect_wanted(ck, "theirs");
    td_ckpt_free(ck);
    snprintf(path, sizeof path, "%s/lib.safetensors", dir);
    if (access(path, F_OK) == 0) {
        cr_assert_eq(td_ckpt_load(path, td_cpu(0), &ck), TD_OK, "%s", td_last_error());
        expect_wanted(ck, "written by the safetensors package");
        td_ckpt_free(ck);
    }
    io_rmdir(dir);
    nd_finish();
}

/* ---- blocking and failures ---- */

static td_status save_inside_op(void *arg, const td_exec *ex) {
    (void)ex;
    void **p = arg;
    td_ckpt_entry e[] = {{"a", p[1]}};
    *(td_status *)p[2] = td_ckpt_save(p[0], 1, e, 0, NULL);
    return TD_OK;
}

static td_status fail_fn(void *arg, const td_exec *ex) {
    (void)arg;
    td_exec_set_error(ex, "injected failure");
    return TD_EFAILED;
}

Test(ckpt, save_inside_an_op_is_ebusy_and_a_failed_array_keeps_the_old_file, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    char dir[256], path[512];
    io_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/c.safetensors", dir);
    td_array *a = td_ones(TD_F32, 1, (int64_t[]){4}, td_cpu(0));
    td_status got = TD_OK;
    void *args[3] = {path, a, &got};
    td_op op = tt_op("saver", save_inside_op, args, NULL, 0, NULL, 0);
    tt_push(&op);
    cr_assert_eq(td_wait_all(), TD_OK);
    cr_assert_eq(got, TD_EBUSY, "save inside an op returned %s", td_status_name(got));
    cr_assert_eq(io_count_entries(dir), 0);

    td_ckpt_entry e[] = {{"a", a}};
    cr_assert_eq(td_ckpt_save(path, 1, e, 0, NULL), TD_OK);
    size_t n0, n1;
    unsigned char *before = io_read_file(path, &n0);
    td_array *bad = td_zeros(TD_F32, 1, (int64_t[]){4}, td_cpu(0));
    td_var *v = td_array_var(bad);
    td_op fop = tt_op("fails", fail_fn, NULL, NULL, 0, &v, 1);
    tt_push(&fop);
    td_ckpt_entry e2[] = {{"a", a}, {"bad", bad}};
    td_clear_error();
    cr_assert_eq(td_ckpt_save(path, 2, e2, 0, NULL), TD_EFAILED);
    cr_assert(tt_has(td_last_error(), "injected failure"), "%s", td_last_error());
    unsigned char *after = io_read_file(path, &n1);
    cr_assert(n0 == n1 && memcmp(before, after, n0) == 0, "the old file changed");
    cr_assert_eq(io_count_entries(dir), 1, "the temporary file was left behind");
    free(before);
    free(after);
    td_wait_all();
    td_release(bad);
    td_release(a);
    io_rmdir(dir);
    nd_finish();
}
