/* numpy's .npy format.
 *
 * A file is the magic "\x93NUMPY", a major and a minor version byte, the
 * header's length (2 bytes little-endian in version 1, 4 bytes in versions 2
 * and 3), the header, and the data.  The header is the text of a Python dict
 * with exactly three keys, e.g.
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 * padded with spaces and ending in a newline; the data follows it: every
 * element, in C order or (fortran_order) Fortran order, in descr's byte
 * order.  Nothing else may follow the data.
 *
 * The header is parsed by hand (a literal dict is all numpy writes) with a
 * cursor that never reads past the header's end, and everything is checked
 * before the array is allocated: the data must be exactly what the shape and
 * dtype say, so a header claiming terabytes in a small file fails at once.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "ndarray/internal.h"

#include <tide/io.h>

/* numpy itself refuses headers over 10000 bytes unless told otherwise; ours
 * are under 200.  A megabyte leaves room and still bounds what a hostile
 * preamble can make us read. */
enum { NPY_MAX_HEADER = 1 << 20, NPY_ALIGN = 64 };
static const char npy_magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

typedef struct {
    int dtype;
    int swap;    /* the data's byte order is not the host's */
    int fortran;
    int ndim;
    int64_t shape[TD_MAX_DIMS];
    uint64_t data_off;
} npy_header;

/* ---- the header's dict ---- */

typedef struct {
    const td__src *s;
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int peek(const cursor *c) { return c->p < c->end ? (unsigned char)*c->p : -1; }

static td_status expect(cursor *c, char ch, const char *where) {
    skip_ws(c);
    if (peek(c) != (unsigned char)ch) return td__src_bad(c->s, "header: expected '%c' %s", ch, where);
    c->p++;
    return TD_OK;
}

/* A quoted string without escapes, into buf (cap bytes with the NUL). */
static td_status parse_str(cursor *c, char *buf, size_t cap, const char *what) {
    skip_ws(c);
    int q = peek(c);
    if (q != '\'' && q != '"') return td__src_bad(c->s, "header: expected a quoted %s", what);
    c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '\\' || ch < 0x20 || ch >= 0x7f)
            return td__src_bad(c->s, "header: unexpected character 0x%02x in a %s", ch, what);
        if (n + 1 >= cap) return td__src_bad(c->s, "header: %s longer than %zu characters", what, cap - 1);
        buf[n++] = (char)ch;
        c->p++;
    }
    if (c->p >= c->end) return td__src_bad(c->s, "header: unterminated %s", what);
    c->p++;
    buf[n] = '\0';
    return TD_OK;
}

/* descr: a byte order ('<' little, '>' big, '|' not applicable, '=' native)
 * and a type code. */
static td_status parse_descr(cursor *c, npy_header *h) {
    skip_ws(c);
    if (peek(c) == '[') return td__src_bad(c->s, "structured dtypes (a list as descr) are not supported");
    char d[32];
    td_status st = parse_str(c, d, sizeof d, "descr");
    if (st != TD_OK) return st;
    static const struct {
        const char *code;
        int dtype;
    } codes[] = {{"f4", TD_F32}, {"f8", TD_F64}, {"i4", TD_I32}, {"i8", TD_I64}, {"u1", TD_U8}};
    char order = d[0];
    const char *code = d + 1;
    if (order != '<' && order != '>' && order != '|' && order != '=') {
        order = '|';
        code = d;
    }
    h->dtype = -1;
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(code, codes[i].code) == 0) h->dtype = codes[i].dtype;
    if (h->dtype < 0)
        return td__src_bad(c->s, "dtype '%s' is not supported (tide reads f4, f8, i4, i8 and u1, either byte order)", d);
    size_t es = td_dtype_size(h->dtype);
    if (es > 1 && order == '|') return td__src_bad(c->s, "dtype '%s' has no byte order", d);
    int file_le = order == '<' || (order != '>' && td__host_le());
    h->swap = es > 1 && file_le != td__host_le();
    return TD_OK;
}

static td_status parse_bool(cursor *c, int *out) {
    skip_ws(c);
    size_t left = (size_t)(c->end - c->p);
    if (left >= 4 && memcmp(c->p, "True", 4) == 0) {
        *out = 1;
        c->p += 4;
    } else if (left >= 5 && memcmp(c->p, "False", 5) == 0) {
        *out = 0;
        c->p += 5;
    } else {
        return td__src_bad(c->s, "header: fortran_order must be True or False");
    }
    return TD_OK;
}

/* shape: a tuple of non-negative integers, "()", "(5,)", "(3, 4)"; Python 2
 * files may write "3L". */
static td_status parse_shape(cursor *c, npy_header *h) {
    td_status st = expect(c, '(', "to open the shape");
    if (st != TD_OK) return st;
    h->ndim = 0;
    for (;;) {
        skip_ws(c);
        if (peek(c) == ')') {
            c->p++;
            break;
        }
        if (peek(c) == '-') return td__src_bad(c->s, "header: the shape has a negative dimension");
        if (peek(c) < '0' || peek(c) > '9') return td__src_bad(c->s, "header: expected a dimension in the shape");
        if (h->ndim == TD_MAX_DIMS) return td__src_bad(c->s, "the shape has more than %d dimensions", TD_MAX_DIMS);
        int64_t v = 0;
        while (peek(c) >= '0' && peek(c) <= '9') {
            int digit = *c->p++ - '0';
            if (v > (INT64_MAX - digit) / 10) return td__src_bad(c->s, "header: a dimension of the shape overflows");
            v = v * 10 + digit;
        }
        if (peek(c) == 'L' || peek(c) == 'l') c->p++;
        h->shape[h->ndim++] = v;
        skip_ws(c);
        if (peek(c) == ',') {
            c->p++;
            continue;
        }
        if (peek(c) != ')') return td__src_bad(c->s, "header: expected ',' or ')' in the shape");
    }
    return TD_OK;
}

static td_status parse_dict(cursor *c, npy_header *h) {
    td_status st = expect(c, '{', "at the start of the header");
    if (st != TD_OK) return st;
    int seen_descr = 0, seen_order = 0, seen_shape = 0;
    for (;;) {
        skip_ws(c);
        if (peek(c) == '}') {
            c->p++;
            break;
        }
        char key[32];
        if ((st = parse_str(c, key, sizeof key, "key")) != TD_OK) return st;
        if ((st = expect(c, ':', "after a key")) != TD_OK) return st;
        int *seen;
        if (strcmp(key, "descr") == 0) {
            seen = &seen_descr;
            st = parse_descr(c, h);
        } else if (strcmp(key, "fortran_order") == 0) {
            seen = &seen_order;
            st = parse_bool(c, &h->fortran);
        } else if (strcmp(key, "shape") == 0) {
            seen = &seen_shape;
            st = parse_shape(c, h);
        } else {
            return td__src_bad(c->s, "header: unexpected key '%s'", key);
        }
        if (st != TD_OK) return st;
        if (*seen) return td__src_bad(c->s, "header: key '%s' appears twice", key);
        *seen = 1;
        skip_ws(c);
        if (peek(c) == ',') c->p++;
        else if (peek(c) != '}') return td__src_bad(c->s, "header: expected ',' or '}' after the value of '%s'", key);
    }
    skip_ws(c);
    if (c->p != c->end) return td__src_bad(c->s, "header: unexpected text after the dict");
    if (!seen_descr || !seen_order || !seen_shape)
        return td__src_bad(c->s, "header: no '%s'", !seen_descr ? "descr" : !seen_order ? "fortran_order" : "shape");
    return TD_OK;
}

/* Reads and checks the preamble and header against the file's size. */
static td_status read_header(const td__src *s, npy_header *h) {
    unsigned char pre[12];
    if (s->size < 10) return td__src_bad(s, "%" PRIu64 " bytes is too short for a .npy file", s->size);
    td_status st = td__src_read(s, 0, pre, 10);
    if (st != TD_OK) return st;
    if (memcmp(pre, npy_magic, sizeof npy_magic) != 0) return td__src_bad(s, "not a .npy file (no \\x93NUMPY magic)");
    int major = pre[6], minor = pre[7];
    uint64_t hlen, start;
    if (major == 1) {
        hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8;
        start = 10;
    } else if (major == 2 || major == 3) {
        if (s->size < 12) return td__src_bad(s, "%" PRIu64 " bytes is too short for a version %d file", s->size, major);
        if ((st = td__src_read(s, 10, pre + 10, 2)) != TD_OK) return st;
        hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 | (uint64_t)pre[11] << 24;
        start = 12;
    } else {
        return td__src_bad(s, "unsupported .npy version %d.%d", major, minor);
    }
    if (hlen > s->size - start)
        return td__src_bad(s, "the header claims %" PRIu64 " bytes but only %" PRIu64 " follow the preamble", hlen,
                           s->size - start);
    if (hlen > NPY_MAX_HEADER)
        return td__src_bad(s, "a header of %" PRIu64 " bytes is over the %d tide accepts", hlen, NPY_MAX_HEADER);
    char *text = malloc(hlen ? hlen : 1);
    if (!text) return td__fail(TD_ENOMEM, "%s: %s: out of memory for the header", s->who, s->name);
    st = td__src_read(s, start, text, hlen);
    if (st == TD_OK) {
        if (hlen == 0 || text[hlen - 1] != '\n') {
            st = td__src_bad(s, "header: does not end with a newline");
        } else {
            cursor c = {s, text, text + hlen};
            st = parse_dict(&c, h);
        }
    }
    free(text);
    if (st != TD_OK) return st;
    h->data_off = start + hlen;

    uint64_t bytes = td_dtype_size(h->dtype);
    for (int d = 0; d < h->ndim; d++)
        if (__builtin_mul_overflow(bytes, (uint64_t)h->shape[d], &bytes)) bytes = UINT64_MAX;
    uint64_t have = s->size - h->data_off;
    char sh[256];
    td__shape_str(h->ndim, h->shape, sh, sizeof sh);
    /* Sizes before a zero dimension count too: arrays keep them (the fuzzer
     * found "(262144, 1, 154786, 62144, 0)", no data, which no array can
     * address). */
    if (td__check_shape(s->who, h->ndim, h->shape) != TD_OK)
        return td__src_bad(s, "shape %s is too large to address", sh);
    if (bytes != have) {
        if (bytes == UINT64_MAX)
            return td__src_bad(s, "shape %s of %s is larger than any file", sh, td_dtype_name(h->dtype));
        return td__src_bad(s, "shape %s of %s needs %" PRIu64 " bytes of data but the file holds %" PRIu64, sh,
                           td_dtype_name(h->dtype), bytes, have);
    }
    return TD_OK;
}

static td_array *load(const td__src *s, td_device dev) {
    npy_header h;
    memset(&h, 0, sizeof h);
    if (read_header(s, &h) != TD_OK) return NULL;
    td_array *a = td__array_new(h.dtype, h.ndim, h.shape, dev, s->who);
    if (!a) return NULL;
    /* A fresh array: nothing else can touch its storage yet, so the data is
     * read straight into it (as td_from_host copies). */
    if (td__src_read_elems(s, h.data_off, td__array_ptr(a), h.dtype, h.ndim, h.shape, h.swap, h.fortran) != TD_OK) {
        td__array_unref(a);
        return NULL;
    }
    return a;
}

td_array *td__npy_load_mem(const void *data, size_t size, const char *name, td_device dev) {
    td__src s;
    td__src_mem(&s, "td_npy_load", name ? name : "(memory)", data, size);
    if (!td__device_lookup("td_npy_load", dev)) return NULL;
    return load(&s, dev);
}

td_array *td_npy_load(const char *path, td_device dev) {
    if (!path) {
        td__fail(TD_EINVAL, "td_npy_load: path is NULL");
        return NULL;
    }
    if (!td__device_lookup("td_npy_load", dev)) return NULL;
    td__src s;
    if (td__src_open(&s, "td_npy_load", path) != TD_OK) return NULL;
    td_array *a = load(&s, dev);
    td__src_close(&s);
    return td__array_give(a);
}

/* ---- saving ---- */

td_status td_npy_save(const char *path, td_array *a) {
    static const char *const codes[TD_DTYPE_COUNT] = {"f4", "f8", "i4", "i8", "u1"};
    if (!path || !a) return td__fail(TD_EINVAL, "td_npy_save: %s is NULL", path ? "array" : "path");
    td_status st = td__busy_check("td_npy_save");
    if (st != TD_OK) return st;
    int dt = td_dtype(a);
    char order = td_dtype_size(dt) == 1 ? '|' : td__host_le() ? '<' : '>';
    char shape[TD_MAX_DIMS * 24 + 8];
    td__shape_str(td_ndim(a), td_shape(a), shape, sizeof shape);
    /* The preamble and header, padded with spaces so the data starts at a
     * multiple of 64 bytes, as numpy writes it. */
    char buf[512];
    int n = snprintf(buf + 10, sizeof buf - 10, "{'descr': '%c%s', 'fortran_order': False, 'shape': %s, }", order,
                     codes[dt], shape);
    size_t total = 10 + (size_t)n + 1;
    size_t padded = (total + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
    memset(buf + 10 + n, ' ', padded - total);
    buf[padded - 1] = '\n';
    memcpy(buf, npy_magic, sizeof npy_magic);
    buf[6] = 1;
    buf[7] = 0;
    buf[8] = (char)((padded - 10) & 0xff);
    buf[9] = (char)((padded - 10) >> 8);

    td__afile f;
    if ((st = td__afile_open(&f, "td_npy_save", path)) != TD_OK) return st;
    st = td__afile_write(&f, buf, padded);
    if (st == TD_OK) st = td__afile_write_array(&f, a, td__host_le());
    if (st == TD_OK) st = td__afile_commit(&f);
    td__afile_abort(&f);
    return st;
}
