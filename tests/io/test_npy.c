/* .npy files: td_npy_save / td_npy_load round trips for every dtype and
 * shape (0-d, empty, large) and every layout of view; files written by numpy
 * load with the same values and ours load in numpy; Fortran order and both
 * byte orders; hostile and truncated files are TD_EFORMAT naming the file,
 * without allocating what the header claims; I/O failures are TD_EIO; saves
 * are atomic, wait for pending writes, and are TD_EBUSY inside an op. */
#include "io.h"

static const int64_t shapes[][TD_MAX_DIMS] = {{0}, {0}, {3, 0, 2}, {7}, {3, 4, 5}, {1, 2, 1, 3, 1, 2, 1, 2}, {1}};
static const int ndims[] = {0, 1, 3, 1, 3, 8, 1};
enum { NSHAPES = sizeof ndims / sizeof ndims[0] };

Test(npy, round_trips_every_dtype_and_shape, .timeout = 60) {
    nd_start(TD_ENGINE_THREADED, 2);
    char dir[256], path[512];
    io_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/a.npy", dir);
    tt_rng g = {nd_seed("npy round trips", 3)};
    ND_FOR_EACH_DTYPE(dt) {
        for (int s = 0; s < NSHAPES; s++) {
            nd_ref r;
            td_array *a = nd_make_random(&r, dt, ndims[s], shapes[s], &g, ND_GEN_BIG);
            cr_assert_eq(td_npy_save(path, a), TD_OK, "save %s: %s", nd_dt(dt), td_last_error());
            td_array *b = td_npy_load(path, td_cpu(0));
            char what[128];
            snprintf(what, sizeof what, "%s ndim %d", nd_dt(dt), ndims[s]);
            io_expect_same(a, b, what);
            nd_expect_ref(b, &r, what);
            /* As numpy writes it: version 1.0, data aligned to 64 bytes. */
            size_t n;
            unsigned char *f = io_read_file(path, &n);
            cr_assert(n >= 64 && memcmp(f, "\x93NUMPY\x01\x00", 8) == 0, "%s: preamble", what);
            size_t hl = (size_t)f[8] | (size_t)f[9] << 8;
            cr_assert_eq((10 + hl) % 64, 0, "%s: the data starts at a multiple of 64", what);
            cr_assert_eq(f[10 + hl - 1], '\n');
            free(f);
            td_release(b);
            td_release(a);
            nd_ref_free(&r);
        }
    }
    cr_assert_eq(io_count_entries(dir), 1, "only the saved file is left in the folder");
    io_rmdir(dir);
    nd_finish();
}

Test(npy, round_trips_large_arrays, .timeout = 120) {
    nd_start(TD_ENGINE_THREADED, 2);
    char dir[256], path[512];
    io_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/big.npy", dir);
    tt_rng g = {nd_seed("npy large", 5)};
    const int64_t shape[2] = {1500, 1999}; /* 3M elements: 24 MB of f64 */
    int dts[2] = {TD_F64, TD_U8};
    for (int i = 0; i < 2; i++) {
        nd_ref r;
        td_array *a = nd_make_random(&r, dts[i], 2, shape, &g, ND_GEN_GENERAL);
        cr_assert_eq(td_npy_save(path, a), TD_OK, "%s", td_last_error());
        td_array *b = td_npy_load(path, td_cpu(0));
        io_expect_same(a, b, nd_dt(dts[i]));
        td_release(a);
        td_release(b);
        nd_ref_free(&r);
    }
    io_rmdir(dir);
    nd_finish();
}

Test(npy, saves_views_of_every_layout_as_their_elements_in_c_order, .timeout = 60) {
    nd_start(TD_ENGINE_THREADED, 2);
    char dir[256], path[512];
    io_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/view.npy", dir);
    tt_rng g = {nd_seed("npy views", 7)};
    const int64_t shape[3] = {3, 4, 5};
    ND_FOR_EACH_DTYPE(dt) {
        for (int layout = 0; layout < ND_NLAYOUTS; layout++) {
            nd_ref r;
            td_array *v = nd_make_input(dt, 3, shape, layout, &g, ND_GEN_BIG, &r);
            cr_assert_eq(td_npy_save(path, v), TD_OK, "%s", td_last_error());
            td_array *b = td_npy_load(path, td_cpu(0));
            char what[128];
            snprintf(what, sizeof what, "%s %s", nd_dt(dt), nd_layout_name(layout));
            cr_assert_not_null(b, "%s: %s", what, td_last_error());
            nd_expect_ref(b, &r, what);
            td_release(b);
            td_release(v);
            nd_ref_free(&r);
        }
    }
    io_rmdir(dir);
    nd_finish();
}

/* A .npy file made here byte by byte: the header text padded as numpy pads
 * it, then data. */
static size_t mk_npy(unsigned char *out, size_t cap, int major, const char *header, const void *data, size_t n) {
    size_t pre = major == 1 ? 10 : 12, hl = strlen(header);
    size_t total = pre + hl + 1, padded = (total + 63) / 64 * 64;
    cr_assert(padded + n <= cap);
    memcpy(out, "\x93NUMPY", 6);
    out[6] = (unsigned char)major;
    out[7] = 0;
    size_t len = padded - pre;
    for (size_t i = 0; i < pre - 8; i++) out[8 + i] = (unsigned char)(len >> (8 * i));
    memcpy(out + pre, header, hl);
    memset(out + pre + hl, ' ', padded - total);
    out[padded - 1] = '\n';
    if (n) memcpy(out + padded, data, n);
    return padded + n;
}

Test(npy, loads_fortran_order_and_both_byte_orders, .timeout = 30) {
    nd_start(TD_ENGINE_NAIVE, 1);
    char dir[256], path[512];
    io_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/f.npy", dir);
    /* A 2x3 int32 matrix [[0, 1, 2], [3, 4, 5]] written in Fortran order
     * (columns first) and big-endian. */
    const int32_t colmajor[6] = {0, 3, 1, 4, 2, 5};
    unsigned char be[24], le[24];
    for (int k = 0; k < 6; k++)
        for (int b = 0; b < 4; b++) {
            be[4 * k + b] = (unsigned char)((uint32_t)colmajor[k] >> (8 * (3 - b)));
            le[4 * k + b] = (unsigned char)((uint32_t)colmajor[k] >> (8 * b));
        }
    static unsigned char file[4096];
    const char *headers[] = {"{'descr': '>i4', 'fortran_order': True, 'shape': (2, 3), }",
                             "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }",
                             "{\"shape\": (2L, 3L), \"fortran_order\": True, \"descr\": \"<i4\"}"};
    for (int h = 0; h < 3; h++) {
        for (int major = 1; major <= 3; major++) {
            size_t n = mk_npy(file, sizeof file, major, headers[h], h == 0 ? be : le, 24);
            io_write_file(path, file, n);
            td_array *a = td_npy_load(path, td_cpu(0));
            cr_assert_not_null(a, "header %d v%d: %s", h, major, td_last_error());
            cr_assert_eq(td_dtype(a), TD_I32);
            cr_assert_eq(td_ndim(a), 2);
            cr_assert(td_shape(a)[0] == 2 && td_shape(a)[1] == 3);
            int32_t got[6];
            cr_assert_eq(td_to_host(a, got, sizeof got), TD_OK);
            for (int k = 0; k < 6; k++) cr_assert_eq(got[k], k, "header %d v%d: element %d is %d", h, major, k, got[k]);
            td_release(a);
        }
    }
    /* Big-endian float64, 0-d, and a 3-d Fortran array of doubles. */
    unsigned char d[8];
    double v = -2.75;
    uint64_t bits;
    memcpy(&bits, &v, 8);
    for (int b = 0; b < 8; b++) d[b] = (unsigned char)(bits >> (8 * (7 - b)));
    io_write_file(path, file, mk_npy(file, sizeof file, 1, "{'descr': '>f8', 'fortran_order': False, 'shape': (), }", d, 8));
    td_array *a = td_npy_load(path, td_cpu(0));
    cr_assert_not_null(a, "%s", td_last_error());
    double got = 0;
    cr_assert_eq(td_to_host(a, &got, 8), TD_OK);
    cr_assert_eq(got, -2.75);
    td_release(a);
    double f3[24];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++) f3[i + 2 * j + 6 * k] = 100 * i + 10 * j + k;
    io_write_file(path, file,
                  mk_npy(file, sizeof file, 1, "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3, 4), }", f3, sizeof f3));
    a = td_npy_load(path, td_cpu(0));
    cr_assert_not_null(a, "%s", td_last_error());
    double c3[24];
    cr_assert_eq(td_to_host(a, c3, sizeof c3), TD_OK);
    for (int k = 0; k < 24; k++) cr_assert_eq(c3[k], 100 * (k / 12) + 10 * (k / 4 % 3) + k % 4, "element %d", k);
    td_release(a);
    io_rmdir(dir);
    nd_finish();
}

/* ---- numpy ---- */

/* The values both sides agree on: element k (C order) of each file. */
static const char py_common[] =
    "import sys, numpy as np\n"
    "d = sys.argv[1]\n"
    "shapes = [(3, 4, 5), (6,), (), (0, 3), (1, 5, 1, 2)]\n"
    "def values(dt, shape):\n"
    "    k = np.arange(int(np.prod(shape)), dtype=np.int64)\n"
    "    v = (k * 7) % 256 if dt == 'u1' else k * 3 - 50\n"
    "    return v.reshape(shape).astype(dt)\n";

static int64_t expected_value(int dt, int64_t k) { return dt == TD_U8 ? (k * 7) % 256 : k * 3 - 50; }

static const int64_t py_shapes[][4] = {{3, 4, 5}, {6}, {0}, {0, 3}, {1, 5, 1, 2}};
static const int py_ndims[] = {3, 1, 0, 2, 4};
static const char *const py_codes[] = {"f4", "f8", "i4", "i8", "u1"};

static void expect_pattern(td_array *a, int dt, int s, const char *what) {
    cr_assert_not_null(a, "%s: %s", what, td_last_error());
    cr_assert_eq(td_dtype(a), dt, "%s: dtype", what);
    cr_assert_eq(td_ndim(a), py_ndims[s], "%s: ndim", what);
    nd_ref r = nd_read(a);
    for (int64_t k = 0; k < r.n; k++) {
        double want = (double)expected_value(dt, k);
        double got = nd_is_float(dt) ? r.f[k] : (double)r.i[k];
        cr_assert_eq(got, want, "%s: element %lld is %g, not %g", what, (long long)k, got, want);
    }
    nd_ref_free(&r);
}

Test(npy, files_written_by_numpy_load_with_the_same_values, .timeout = 120) {
    const char *py = io_python_numpy();
    if (!py) cr_skip_test("no python3 that imports numpy (Debian: apt-get install python3-numpy)");
    nd_start(TD_ENGINE_THREADED, 2);
    char dir[256];
    io_tmpdir(dir, sizeof dir);
    char script[2048];
    snprintf(script, sizeof script,
             "%s"
             "for dt in ['f4', 'f8', 'i4', 'i8', 'u1']:\n"
             "    for si, shape in enumerate(shapes):\n"
             "        for order in 'CF':\n"
             "            for bo in '<>':\n"
             "                a = values(dt, shape).astype(bo + dt)\n"
             "                a = np.array(a, order=order)\n"
             "                np.save('%%s/%%s_%%d_%%s_%%s.npy' %% (d, dt, si, order, 'le' if bo == '<' else 'be'), a)\n",
             py_common);
    cr_assert_eq(io_run_python(py, script, dir), 0, "the numpy script failed");
    int loaded = 0;
    ND_FOR_EACH_DTYPE(dt) {
        for (int s = 0; s < 5; s++)
            for (int o = 0; o < 2; o++)
                for (int bo = 0; bo < 2; bo++) {
                    char path[512];
                    snprintf(path, sizeof path, "%s/%s_%d_%c_%s.npy", dir, py_codes[dt], s, "CF"[o], bo ? "be" : "le");
                    td_array *a = td_npy_load(path, td_cpu(0));
                    expect_pattern(a, dt, s, path);
                    for (int d = 0; d < py_ndims[s]; d++)
                        cr_assert_eq(td_shape(a)[d], py_shapes[s][d], "%s: dim %d", path, d);
                    td_release(a);
                    loaded++;
                }
    }
    cr_assert_eq(loaded, 100);
    io_rmdir(dir);
    nd_finish();
}

Test(npy, our_files_load_in_numpy_with_the_same_values, .timeout = 120) {
    const char *py = io_python_numpy();
    if (!py) cr_skip_test("no python3 that imports numpy (Debian: apt-get install python3-numpy)");
    nd_start(TD_ENGINE_THREADED, 2);
    char dir[256];
    io_tmpdir(dir, sizeof dir);
    ND_FOR_EACH_DTYPE(dt) {
        for (int s = 0; s < 5; s++) {
            nd_ref r = nd_ref_new(dt, py_ndims[s], py_shapes[s]);
            for (int64_t k = 0; k < r.n; k++) nd_ref_put_i(&r, k, expected_value(dt, k));
            td_array *a = nd_make(&r);
            char path[512];
            snprintf(path, sizeof path, "%s/%s_%d.npy", dir, py_codes[dt], s);
            cr_assert_eq(td_npy_save(path, a), TD_OK, "%s", td_last_error());
            /* and a transposed view of it, saved in C order */
            td_array *t = td_transpose(a, NULL);
            snprintf(path, sizeof path, "%s/%s_%d_T.npy", dir, py_codes[dt], s);
            cr_assert_eq(td_npy_save(path, t), TD_OK, "%s", td_last_error());
            td_release(t);
            td_release(a);
            nd_ref_free(&r);
        }
    }
    char script[2048];
    snprintf(script, sizeof script,
             "%s"
             "bad = 0\n"
             "for dt in ['f4', 'f8', 'i4', 'i8', 'u1']:\n"
             "    for si, shape in enumerate(shapes):\n"
             "        for suffix, want in (('', values(dt, shape)), ('_T', values(dt, shape).T)):\n"
             "            p = '%%s/%%s_%%d%%s.npy' %% (d, dt, si, suffix)\n"
             "            a = np.load(p)\n"
             "            if a.dtype != np.dtype(dt) or a.shape != want.shape or not np.array_equal(a, want):\n"
             "                print('mismatch:', p, a.dtype, a.shape, want.shape)\n"
             "                bad += 1\n"
             "print('numpy checked our files,', bad, 'mismatches')\n"
             "sys.exit(1 if bad else 0)\n",
             py_common);
    cr_assert_eq(io_run_python(py, script, dir), 0, "numpy read our files differently (see the output)");
    io_rmdir(dir);
    nd_finish();
}

/* ---- hostile files ---- */

#define RAW(s) NULL, 0, s, sizeof(s) - 1
typedef struct {
    const char *what;
    int major;
    const char *header; /* NULL: raw bytes below */
    size_t data;        /* bytes of data after the header */
    const char *raw;
    size_t raw_len;
} bad_case;

Test(npy, hostile_and_corrupt_files_are_eformat_naming_the_file, .timeout = 60) {
    nd_start(TD_ENGINE_THREADED, 2);
    char dir[256], path[512];
    io_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/bad.npy", dir);
    const bad_case cases[] = {
        {"empty file", 0, RAW("")},
        {"bad magic", 0, RAW("\x93NUMPZ\x01\x00\x10\x00{}                \n")},
        {"not numpy at all", 0, RAW("hello, world, this is text\n")},
        {"version 4", 4, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 4, NULL, 0},
        {"version 0", 0, RAW("\x93NUMPY\x00\x00\x10\x00")},
        {"header length past the end", 0, RAW("\x93NUMPY\x01\x00\xff\xff{'descr'")},
        {"v2 header length of 4 GB", 0, RAW("\x93NUMPY\x02\x00\xff\xff\xff\xff{}\n")},
        {"header not a dict", 1, "['descr', '<f4']", 0, NULL, 0},
        {"no newline at the end", 0, RAW("\x93NUMPY\x01\x00\x02\x00{}")},
        {"unterminated dict", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)", 4, NULL, 0},
        {"missing shape", 1, "{'descr': '<f4', 'fortran_order': False}", 4, NULL, 0},
        {"missing descr", 1, "{'fortran_order': False, 'shape': (1,)}", 4, NULL, 0},
        {"unknown key", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", 4, NULL, 0},
        {"duplicate key", 1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 4, NULL, 0},
        {"float16", 1, "{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }", 4, NULL, 0},
        {"bool", 1, "{'descr': '|b1', 'fortran_order': False, 'shape': (4,), }", 4, NULL, 0},
        {"complex", 1, "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", 8, NULL, 0},
        {"int8", 1, "{'descr': '|i1', 'fortran_order': False, 'shape': (4,), }", 4, NULL, 0},
        {"object", 1, "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", 8, NULL, 0},
        {"structured", 1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", 4, NULL, 0},
        {"garbage dtype", 1, "{'descr': 'float32', 'fortran_order': False, 'shape': (1,), }", 4, NULL, 0},
        {"no byte order for f4", 1, "{'descr': '|f4', 'fortran_order': False, 'shape': (1,), }", 4, NULL, 0},
        {"fortran_order not a bool", 1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }", 4, NULL, 0},
        {"negative dimension", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", 4, NULL, 0},
        {"dimension overflows int64", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 4, NULL, 0},
        {"product overflows", 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }", 0, NULL, 0},
        {"huge dimensions before a zero (found by the fuzzer)", 1,
         "{'descr': '<f4', 'fortran_order': False, 'shape': (262144, 1, 154786, 62144, 1, 154786, 0), }", 0, NULL, 0},
        {"nine dimensions", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 1, 1), }", 4, NULL, 0},
        {"shape not a tuple", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': [1], }", 4, NULL, 0},
        {"bad tuple", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1 2), }", 8, NULL, 0},
        {"a terabyte claimed", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (262144, 1048576), }", 16, NULL, 0},
        {"data short by one element", 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", 16, NULL, 0},
        {"trailing bytes", 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", 25, NULL, 0},
        {"text after the dict", 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), } x", 4, NULL, 0},
        {"escape in a string", 1, "{'descr': '<f\\4', 'fortran_order': False, 'shape': (1,), }", 4, NULL, 0},
        {"NUL in the header", 0, RAW("\x93NUMPY\x01\x00\x06\x00{'\0'}\n")},
    };
    static unsigned char file[8192];
    static unsigned char zeros[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *c = &cases[i];
        size_t n;
        if (c->header) {
            n = mk_npy(file, sizeof file, c->major, c->header, zeros, c->data);
        } else {
            memcpy(file, c->raw, c->raw_len);
            n = c->raw_len;
        }
        io_write_file(path, file, n);
        td_clear_error();
        td_array *a = td_npy_load(path, td_cpu(0));
        cr_assert_null(a, "%s: loaded", c->what);
        io_expect_fail(td_last_status(), TD_EFORMAT, path, c->what);
        cr_log_info("%s: %s", c->what, td_last_error());
        /* and the same bytes from memory */
        td_clear_error();
        cr_assert_null(td__npy_load_mem(file, n, "mem.npy", td_cpu(0)), "%s (memory): loaded", c->what);
        io_expect_fail(td_last_status(), TD_EFORMAT, "mem.npy", c->what);
    }
    io_rmdir(dir);
    nd_finish();
}

Test(npy, every_truncation_of_a_valid_file_is_eformat, .timeout = 60) {
    nd_start(TD_ENGINE_NAIVE, 1);
    char dir[256], path[512], cut[512];
    io_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/whole.npy", dir);
    snprintf(cut, sizeof cut, "%s/cut.npy", dir);
    td_array *a = td_full(TD_F64, 2, (int64_t[]){3, 5}, 1.5, td_cpu(0));
    cr_assert_eq(td_npy_save(path, a), TD_OK);
    size_t n;
    unsigned char *whole = io_read_file(path, &n);
    for (size_t len = 0; len < n; len++) {
        io_write_file(cut, whole, len);
        td_clear_error();
        cr_assert_null(td_npy_load(cut, td_cpu(0)), "cut at %zu of %zu: loaded", len, n);
        char what[64];
        snprintf(what, sizeof what, "cut at %zu of %zu", len, n);
        io_expect_fail(td_last_status(), TD_EFORMAT, cut, what);
    }
    free(whole);
    td_array *b = td_npy_load(path, td_cpu(0));
    io_expect_same(a, b, "whole file");
    td_release(a);
    td_release(b);
    io_rmdir(dir);
    nd_finish();
}

Test(npy, a_header_claiming_terabytes_fails_without_allocating, .timeout = 30) {
    nd_start(TD_ENGINE_NAIVE, 1);
    char dir[256], path[512];
    io_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/tb.npy", dir);
    static unsigned char file[4096];
    size_t n = mk_npy(file, sizeof file, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776,), }",
                      "12345678", 8);
    io_write_file(path, file, n);
    td_pool_stats before, after;
    cr_assert_eq(td_pool_stats_get(td_cpu(0), &before), TD_OK);
    double t0 = tt_now();
    td_clear_error();
    cr_assert_null(td_npy_load(path, td_cpu(0)));
    io_expect_fail(td_last_status(), TD_EFORMAT, path, "1 TB claimed");
    cr_assert(tt_has(td_last_error(), "8796093022208"), "the message gives the size claimed: %s", td_last_error());
    cr_assert_lt(tt_now() - t0, 1.0, "it fails at once");
    cr_assert_eq(td_pool_stats_get(td_cpu(0), &after), TD_OK);
    cr_assert_eq(after.system_allocs, before.system_allocs, "the pool asked the system for memory");
    cr_assert_eq(after.peak_bytes, before.peak_bytes);
    io_rmdir(dir);
    nd_finish();
}

/* ---- arguments, I/O failures, blocking ---- */

Test(npy, null_arguments_are_einval_and_absent_devices_edevice, .timeout = 30) {
    nd_start(TD_ENGINE_NAIVE, 1);
    td_array *a = td_zeros(TD_F32, 1, (int64_t[]){2}, td_cpu(0));
    td_clear_error();
    nd_expect_status(td_npy_save(NULL, a), TD_EINVAL, "td_npy_save", "save(NULL path)");
    td_clear_error();
    nd_expect_status(td_npy_save("/tmp/x.npy", NULL), TD_EINVAL, "td_npy_save", "save(NULL array)");
    td_clear_error();
    nd_expect_null(td_npy_load(NULL, td_cpu(0)), TD_EINVAL, "td_npy_load", "load(NULL)");
    char dir[256], path[512];
    io_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/a.npy", dir);
    cr_assert_eq(td_npy_save(path, a), TD_OK);
    td_clear_error();
    nd_expect_null(td_npy_load(path, td_gpu(0)), TD_EDEVICE, NULL, "load onto an absent GPU");
    td_release(a);
    io_rmdir(dir);
    nd_finish();
}

Test(npy, unreadable_and_unwritable_paths_are_eio_with_the_reason, .timeout = 30) {
    nd_start(TD_ENGINE_NAIVE, 1);
    char dir[256], path[512];
    io_tmpdir(dir, sizeof dir);
    td_array *a = td_zeros(TD_F32, 1, (int64_t[]){2}, td_cpu(0));
    snprintf(path, sizeof path, "%s/no/such/folder/a.npy", dir);
    td_clear_error();
    io_expect_fail(td_npy_save(path, a), TD_EIO, path, "save into a missing folder");
    cr_assert(tt_has(td_last_error(), "No such file or directory"), "%s", td_last_error());
    td_clear_error();
    cr_assert_null(td_npy_load(path, td_cpu(0)));
    io_expect_fail(td_last_status(), TD_EIO, path, "load a missing file");
    cr_assert(tt_has(td_last_error(), "No such file or directory"), "%s", td_last_error());
    td_clear_error();
    cr_assert_null(td_npy_load(dir, td_cpu(0)));
    io_expect_fail(td_last_status(), TD_EIO, dir, "load a folder");
    snprintf(path, sizeof path, "%s/", dir);
    td_clear_error();
    cr_assert_neq(td_npy_save(path, a), TD_OK, "save to a folder's path");
    cr_assert_eq(io_count_entries(dir), 0, "a failed save leaves nothing behind");
    td_release(a);
    io_rmdir(dir);
    nd_finish();
}

static td_status save_inside_op(void *arg, const td_exec *ex) {
    (void)ex;
    void **p = arg;
    *(td_status *)p[2] = td_npy_save(p[0], p[1]);
    return TD_OK;
}

Test(npy, save_inside_an_op_is_ebusy, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        char dir[256], path[512];
        io_tmpdir(dir, sizeof dir);
        snprintf(path, sizeof path, "%s/a.npy", dir);
        td_array *a = td_zeros(TD_F32, 1, (int64_t[]){2}, td_cpu(0));
        td_status got = TD_OK;
        void *args[3] = {path, a, &got};
        td_op op = tt_op("saver", save_inside_op, args, NULL, 0, NULL, 0);
        tt_push(&op);
        cr_assert_eq(td_wait_all(), TD_OK);
        cr_assert_eq(got, TD_EBUSY, "%s engine: save inside an op returned %s", tt_engine_name(engine),
                     td_status_name(got));
        cr_assert_eq(io_count_entries(dir), 0);
        td_release(a);
        io_rmdir(dir);
        nd_finish();
    }
}

static td_status fail_fn(void *arg, const td_exec *ex) {
    (void)arg;
    td_exec_set_error(ex, "injected failure");
    return TD_EFAILED;
}

Test(npy, a_failed_array_is_not_saved_and_the_old_file_stays, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    char dir[256], path[512];
    io_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/a.npy", dir);
    td_array *old = td_full(TD_I32, 1, (int64_t[]){4}, 7, td_cpu(0));
    cr_assert_eq(td_npy_save(path, old), TD_OK);
    size_t n0, n1;
    unsigned char *before = io_read_file(path, &n0);
    td_array *a = td_zeros(TD_I32, 1, (int64_t[]){4}, td_cpu(0));
    td_var *v = td_array_var(a);
    td_op op = tt_op("fails", fail_fn, NULL, NULL, 0, &v, 1);
    tt_push(&op);
    td_clear_error();
    td_status st = td_npy_save(path, a);
    cr_assert_eq(st, TD_EFAILED, "save of a failed array returned %s", td_status_name(st));
    cr_assert(tt_has(td_last_error(), "injected failure"), "%s", td_last_error());
    unsigned char *after = io_read_file(path, &n1);
    cr_assert(n0 == n1 && memcmp(before, after, n0) == 0, "the old file changed");
    cr_assert_eq(io_count_entries(dir), 1, "the temporary file was left behind");
    free(before);
    free(after);
    td_wait_all();
    td_release(a);
    td_release(old);
    io_rmdir(dir);
    nd_finish();
}

Test(npy, save_waits_for_pending_writes_and_replaces_the_old_file, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    char dir[256], path[512];
    io_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/a.npy", dir);
    td_array *a = td_zeros(TD_F64, 1, (int64_t[]){3}, td_cpu(0));
    cr_assert_eq(td_npy_save(path, a), TD_OK);
    static const double vals[3] = {1.5, -2, 4};
    struct nd_slow slow;
    nd_push_slow_write(&slow, a, 100, vals);
    cr_assert_eq(td_npy_save(path, a), TD_OK);
    cr_assert_eq(atomic_load(&slow.ran), 1, "the save did not wait for the pending write");
    td_array *b = td_npy_load(path, td_cpu(0));
    double got[3];
    cr_assert_eq(td_to_host(b, got, sizeof got), TD_OK);
    for (int k = 0; k < 3; k++) cr_assert_eq(got[k], vals[k]);
    cr_assert_eq(io_count_entries(dir), 1);
    td_release(a);
    td_release(b);
    io_rmdir(dir);
    nd_finish();
}

Test(npy, loaded_arrays_belong_to_the_open_scope, .timeout = 30) {
    nd_start(TD_ENGINE_NAIVE, 1);
    char dir[256], path[512];
    io_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/a.npy", dir);
    td_array *a = td_ones(TD_U8, 2, (int64_t[]){2, 2}, td_cpu(0));
    cr_assert_eq(td_npy_save(path, a), TD_OK);
    td_release(a);
    td_scope_begin();
    cr_assert_not_null(td_npy_load(path, td_cpu(0)));
    cr_assert_eq(nd_live_arrays(1), 1);
    td_scope_end();
    cr_assert_eq(nd_live_arrays(0), 0, "the scope released the loaded array");
    io_rmdir(dir);
    nd_finish();
}

Test(npy, a_zero_dimension_does_not_excuse_huge_other_dimensions, .timeout = 30) {
    /* Found by the fuzzers: strides multiply every nonzero size, so an
     * empty array of shape (262144, 0, 15, 786, 62144, 1, 1547, 866)
     * overflowed them (undefined behaviour) in the array layer. */
    nd_start(TD_ENGINE_NAIVE, 1);
    const int64_t shape[8] = {262144, 0, 15, 786, 62144, 1, 1547, 866};
    td_clear_error();
    nd_expect_null(td_empty(TD_F32, 8, shape, td_cpu(0)), TD_EINVAL, "td_empty", "td_empty of it");
    static unsigned char file[4096];
    size_t n = mk_npy(file, sizeof file, 1,
                      "{'descr': '<f4', 'fortran_order': False, 'shape': (262144, 0, 15, 786, 62144, 1, 1547, 866), }",
                      NULL, 0);
    td_clear_error();
    cr_assert_null(td__npy_load_mem(file, n, "mem.npy", td_cpu(0)));
    io_expect_fail(td_last_status(), TD_EFORMAT, "mem.npy", "a .npy file of it");
    /* and an ordinary empty array still works */
    td_array *e = td_empty(TD_F32, 3, (int64_t[]){0, 1 << 20, 1 << 20}, td_cpu(0));
    cr_assert_not_null(e, "%s", td_last_error());
    td_release(e);
    nd_finish();
}
