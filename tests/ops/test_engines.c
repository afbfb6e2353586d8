/* One program of array ops, on arrays large enough for td_parallel_for to
 * split (over a million elements), run on the naive engine and on the
 * threaded engine with 1, 2, 3 and 4 workers: every result is bit-identical
 * across the runs, and the first run matches the reference. */
#include "ref.h"

enum { ER = 1100, EC = 1000, NRES = 12 };

struct run {
    void *bytes[NRES];
    size_t nbytes[NRES];
};

/* Inputs, as references, made from a fixed seed. */
struct inputs {
    nd_ref a, b, c, d, e; /* e: (EC, ER), used transposed */
};

static void make_inputs(struct inputs *in, uint64_t seed) {
    tt_rng g = {seed};
    in->a = nd_ref_new(TD_F32, 2, (int64_t[]){ER, EC});
    in->b = nd_ref_new(TD_F32, 1, (int64_t[]){EC});
    in->c = nd_ref_new(TD_I32, 2, (int64_t[]){ER, EC});
    in->d = nd_ref_new(TD_U8, 2, (int64_t[]){ER, 1});
    in->e = nd_ref_new(TD_F64, 2, (int64_t[]){EC, ER});
    nd_ref_random(&in->a, &g, ND_GEN_GENERAL);
    nd_ref_random(&in->b, &g, ND_GEN_GENERAL);
    nd_ref_random(&in->c, &g, ND_GEN_GENERAL);
    nd_ref_random(&in->d, &g, ND_GEN_GENERAL);
    nd_ref_random(&in->e, &g, ND_GEN_GENERAL);
}

/* Runs the program; returns the results (and checks them against the
 * reference when `check`). */
static void run_program(struct inputs *in, int engine, int workers, struct run *out, int check) {
    nd_start(engine, workers);
    /* The temporaries of the expressions below belong to this scope. */
    td_scope_begin();
    td_array *a = nd_make(&in->a), *b = nd_make(&in->b), *c = nd_make(&in->c),
             *d = nd_make(&in->d), *e0 = nd_make(&in->e);
    td_array *e = td_transpose(e0, NULL);
    td_array *crev = td_slice(c, 0, -1, -ER - 1, -1);
    td_array *acopy = td_astype(a, TD_F32);
    td_array *r[NRES];
    r[0] = td_add(a, td_mul_scalar(b, 2));
    r[1] = td_div(c, d);
    r[2] = td_pow_scalar(e, 2);
    r[3] = td_maximum(a, c);
    r[4] = td_lt(a, e);
    r[5] = td_astype(r[0], TD_I64);
    r[6] = td_sub(c, crev);
    r[7] = td_contiguous(td_transpose(a, NULL));
    r[8] = td_linspace(TD_F32, -1, 1, 1500001, td_cpu(0));
    cr_assert_eq(td_add_out(acopy, b, acopy), TD_OK);
    r[9] = td_retain(acopy);
    r[10] = td_scalar_div(1, e);
    r[11] = td_pow(td_slice(d, 0, 0, 40, 1), td_ones(TD_I32, 1, (int64_t[]){EC}, td_cpu(0)));
    for (int i = 0; i < NRES; i++) {
        cr_assert_not_null(r[i], "result %d: %s", i, td_last_error());
        size_t nb = td_dtype_size(td_dtype(r[i])) * (size_t)td_numel(r[i]);
        out->bytes[i] = malloc(nb);
        out->nbytes[i] = nb;
        cr_assert_not_null(out->bytes[i]);
        cr_assert_eq(td_to_host(r[i], out->bytes[i], nb), TD_OK, "result %d: %s", i,
                     td_last_error());
    }
    if (check) {
        nd_ref tmp, et = nd_ref_transpose(&in->e, NULL);
        nd_ref crv = nd_ref_slice(&in->c, 0, -1, -ER - 1, -1);
        nd_ref w[NRES];
        tmp = ref_scalar(S_MUL, &in->b, 2, NULL);
        w[0] = ref_binary(R_ADD, &in->a, &tmp, NULL);
        nd_ref_free(&tmp);
        w[1] = ref_binary(R_DIV, &in->c, &in->d, NULL);
        w[2] = ref_scalar(S_POW, &et, 2, NULL);
        w[3] = ref_binary(R_MAX, &in->a, &in->c, NULL);
        w[4] = ref_binary(R_LT, &in->a, &et, NULL);
        w[5] = nd_ref_astype(&w[0], TD_I64);
        w[6] = ref_binary(R_SUB, &in->c, &crv, NULL);
        w[7] = nd_ref_transpose(&in->a, NULL);
        w[8] = nd_ref_new(TD_F32, 1, (int64_t[]){1500001});
        for (int64_t k = 0; k < w[8].n; k++)
            nd_ref_put_f(&w[8], k, k == w[8].n - 1 ? 1.0 : -1.0 + 2.0 * (double)k / 1500000.0);
        w[9] = ref_binary(R_ADD, &in->a, &in->b, NULL);
        w[10] = ref_scalar(S_RDIV, &et, 1, NULL);
        nd_ref ds = nd_ref_slice(&in->d, 0, 0, 40, 1);
        nd_ref ones = nd_ref_new(TD_I32, 1, (int64_t[]){EC});
        for (int64_t k = 0; k < EC; k++) nd_ref_put_i(&ones, k, 1);
        w[11] = ref_binary(R_POW, &ds, &ones, NULL);
        for (int i = 0; i < NRES; i++) {
            char what[512];
            snprintf(what, sizeof what, "%s engine, %d workers: result %d",
                     tt_engine_name(engine), workers, i);
            /* linspace's rounding error scales with its ends (-1, 1). */
            nd_expect_ref_tol(r[i], &w[i], i == 8 ? 4e-7 : 0.0, what);
            nd_ref_free(&w[i]);
        }
        nd_ref_free(&et);
        nd_ref_free(&crv);
        nd_ref_free(&ds);
        nd_ref_free(&ones);
    }
    td_array *arr[] = {a, b, c, d, e0, e, crev, acopy};
    for (int i = 0; i < 8; i++) td_release(arr[i]);
    for (int i = 0; i < NRES; i++) td_release(r[i]);
    td_scope_end();
    nd_finish();
}

Test(engines, naive_and_threaded_with_1_to_4_workers_give_bit_identical_results,
     .timeout = 180) {
    uint64_t seed = nd_seed("engines", 4242);
    struct inputs in;
    make_inputs(&in, seed);
    struct run first, other;
    const int cfg[][2] = {{TD_ENGINE_NAIVE, 1}, {TD_ENGINE_THREADED, 1}, {TD_ENGINE_THREADED, 2},
                          {TD_ENGINE_THREADED, 3}, {TD_ENGINE_THREADED, 4}};
    for (int c = 0; c < 5; c++) {
        struct run *dst = c == 0 ? &first : &other;
        run_program(&in, cfg[c][0], cfg[c][1], dst, c == 0 || c == 4);
        if (c == 0) continue;
        for (int i = 0; i < NRES; i++) {
            cr_assert_eq(other.nbytes[i], first.nbytes[i]);
            cr_assert(memcmp(other.bytes[i], first.bytes[i], first.nbytes[i]) == 0,
                      "result %d differs between the naive engine and the threaded engine with "
                      "%d workers",
                      i, cfg[c][1]);
            free(other.bytes[i]);
        }
    }
    for (int i = 0; i < NRES; i++) free(first.bytes[i]);
    nd_ref *refs[] = {&in.a, &in.b, &in.c, &in.d, &in.e};
    for (int i = 0; i < 5; i++) nd_ref_free(refs[i]);
}
