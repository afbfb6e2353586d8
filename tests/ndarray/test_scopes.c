/* Scopes and references, as array.h's ownership paragraph says: a new array
 * goes to the innermost scope open on this thread; td_scope_end releases what
 * the scope still holds; td_keep takes an array out (the caller owns it);
 * td_release of a scope-held array takes it out; arrays made inside an op or
 * on another thread belong to no scope of this thread. */
#include "nd.h"

static int64_t live_expect(int64_t want) { return nd_live_arrays(want); }

static td_array *small(double v) {
    td_array *a = td_full(TD_F32, 1, (int64_t[]){4}, v, td_cpu(0));
    cr_assert_not_null(a, "td_full: %s", td_last_error());
    return a;
}

static void expect_all(td_array *a, double v, const char *what) {
    nd_ref r = nd_read(a);
    for (int64_t k = 0; k < r.n; k++)
        cr_assert_eq(r.f[k], v, "%s: element %lld is %g, expected %g", what, (long long)k, r.f[k],
                     v);
    nd_ref_free(&r);
}

Test(scopes, scope_end_releases_every_array_created_since_begin, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_array *outside = small(1);
    td_scope_begin();
    td_array *a = small(2);
    td_array *b = td_add(a, outside);
    td_array *v = td_slice(b, 0, 1, 3, 1);
    (void)v;
    cr_assert_eq(live_expect(4), 4);
    td_scope_end();
    cr_assert_eq(live_expect(1), 1,
                 "after td_scope_end %lld arrays live, expected only the one made before the "
                 "scope",
                 (long long)live_expect(0));
    expect_all(outside, 1, "the array made before the scope");
    td_release(outside);
    nd_finish();
}

Test(scopes, keep_takes_an_array_out_of_its_scope_and_the_caller_releases_it, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    td_array *a = small(3);
    td_array *b = small(4);
    td_array *kept = td_keep(td_add(a, b));
    cr_assert_not_null(kept);
    td_scope_end();
    cr_assert_eq(live_expect(1), 1);
    expect_all(kept, 7, "the kept result");
    td_release(kept);
    cr_assert_eq(live_expect(0), 0);
    /* Outside a scope td_keep does nothing. */
    td_array *c = small(5);
    cr_assert(td_keep(c) == c);
    cr_assert_eq(live_expect(1), 1);
    td_release(c);
    cr_assert_eq(live_expect(0), 0, "td_keep outside a scope added a reference");
    cr_assert_null(td_keep(NULL));
    nd_finish();
}

Test(scopes, nested_scopes_release_their_own_arrays_and_keep_hands_ownership_to_the_caller,
     .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    td_array *outer = small(1);
    td_scope_begin();
    td_array *inner = small(2);
    td_array *kept = td_keep(td_mul(outer, inner));
    (void)inner;
    cr_assert_eq(live_expect(3), 3);
    td_scope_end();
    cr_assert_eq(live_expect(2), 2, "the inner scope left %lld arrays, expected outer and kept",
                 (long long)live_expect(0));
    expect_all(outer, 1, "the outer scope's array after the inner scope ended");
    td_scope_end();
    /* kept belongs to the caller, not to the outer scope. */
    cr_assert_eq(live_expect(1), 1);
    expect_all(kept, 2, "kept after both scopes");
    td_release(kept);
    /* Three levels, arrays at each, released level by level. */
    td_scope_begin();
    small(1);
    td_scope_begin();
    small(2);
    small(3);
    td_scope_begin();
    small(4);
    cr_assert_eq(live_expect(4), 4);
    td_scope_end();
    cr_assert_eq(live_expect(3), 3);
    td_scope_end();
    cr_assert_eq(live_expect(1), 1);
    td_scope_end();
    cr_assert_eq(live_expect(0), 0);
    nd_finish();
}

Test(scopes, releasing_a_scope_held_array_takes_it_out_of_the_scope, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    td_array *a = small(1);
    td_array *b = small(2);
    td_release(a);
    cr_assert_eq(live_expect(1), 1, "td_release of a scope-held array did not release it");
    /* The scope must not release a again (ASan would see it, and the count). */
    (void)b;
    td_scope_end();
    cr_assert_eq(live_expect(0), 0);
    /* A retained scope-held array: the scope drops one reference, the caller the other. */
    td_scope_begin();
    td_array *c = small(6);
    cr_assert(td_retain(c) == c);
    td_scope_end();
    cr_assert_eq(live_expect(1), 1, "the retained array did not survive the scope");
    expect_all(c, 6, "retained array after the scope");
    td_release(c);
    cr_assert_eq(live_expect(0), 0);
    /* Release it twice while in the scope: once from the scope's reference
     * (taking it out), once the caller's retain. */
    td_scope_begin();
    td_array *d = small(1);
    td_retain(d);
    td_release(d);
    td_release(d);
    cr_assert_eq(live_expect(0), 0);
    td_scope_end();
    cr_assert_eq(live_expect(0), 0);
    nd_finish();
}

Test(scopes, an_expression_inside_a_scope_leaks_nothing, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        td_array *a = small(1), *b = small(3);
        for (int i = 0; i < 100; i++) {
            td_scope_begin();
            td_array *c = td_add(a, td_mul_scalar(b, 2));
            td_array *d = td_sub(td_mul(c, c), td_div_scalar(td_add_scalar(c, 1), 2));
            if (i == 99) {
                d = td_keep(d);
                td_scope_end();
                expect_all(d, 49 - 4, "(a + 2b)^2 - (a + 2b + 1) / 2");
                td_release(d);
            } else {
                td_scope_end();
            }
            cr_assert_eq(live_expect(2), 2, "%s engine: iteration %d left %lld arrays",
                         tt_engine_name(engine), i, (long long)live_expect(2) - 2);
        }
        td_release(a);
        td_release(b);
        nd_finish();
    }
}

struct made_inside {
    int release;
    td_array *made;
};
static td_status make_inside_fn(void *arg, const td_exec *ex) {
    (void)ex;
    struct made_inside *m = arg;
    m->made = td_zeros(TD_F64, 1, (int64_t[]){1000}, td_cpu(0));
    if (m->release) {
        td_release(m->made);
        m->made = NULL;
    }
    return TD_OK;
}

Test(scopes, arrays_made_inside_an_op_belong_to_no_scope, .timeout = 30) {
    TT_FOR_EACH_ENGINE(engine) {
        nd_start(engine, 2);
        /* Made and kept inside the op: the user's scope must not take it (the
         * naive engine runs the op on this very thread, inside the scope). */
        static struct made_inside m;
        m.release = 0;
        m.made = NULL;
        td_scope_begin();
        td_op op = tt_op("makes_an_array", make_inside_fn, &m, NULL, 0, NULL, 0);
        tt_push(&op);
        cr_assert_eq(td_wait_all(), TD_OK);
        td_scope_end();
        cr_assert_not_null(m.made, "%s engine: td_zeros inside an op failed",
                           tt_engine_name(engine));
        cr_assert_eq(live_expect(1), 1,
                     "%s engine: the scope released the array made inside the op",
                     tt_engine_name(engine));
        expect_all(m.made, 0, "the array made inside an op");
        td_release(m.made);
        /* Made and released inside the op, while a scope is open: nothing
         * is released twice and nothing leaks. */
        m.release = 1;
        td_scope_begin();
        td_array *mine = small(1);
        (void)mine;
        tt_push(&op);
        cr_assert_eq(td_wait_all(), TD_OK);
        td_scope_end();
        cr_assert_eq(live_expect(0), 0, "%s engine: %lld arrays left", tt_engine_name(engine),
                     (long long)live_expect(0));
        nd_finish();
    }
}

static void *thread_makes(void *arg) {
    (void)arg;
    return td_ones(TD_I32, 1, (int64_t[]){5}, td_cpu(0));
}
static void *thread_scope(void *arg) {
    td_array *shared = arg;
    td_scope_begin();
    td_array *t = td_add_scalar(shared, 1);
    td_scope_end();
    return (void *)(uintptr_t)(t != NULL);
}

Test(scopes, scopes_are_per_thread, .timeout = 30) {
    nd_start(TD_ENGINE_THREADED, 2);
    td_scope_begin();
    pthread_t th;
    void *res;
    cr_assert_eq(pthread_create(&th, NULL, thread_makes, NULL), 0);
    pthread_join(th, &res);
    td_array *other = res;
    cr_assert_not_null(other);
    td_scope_end();
    cr_assert_eq(live_expect(1), 1, "this thread's scope released another thread's array");
    /* Another thread's scope releases its own arrays only. */
    td_array *shared = small(2);
    cr_assert_eq(pthread_create(&th, NULL, thread_scope, shared), 0);
    pthread_join(th, &res);
    cr_assert(res != NULL);
    cr_assert_eq(live_expect(2), 2);
    td_release(shared);
    td_release(other);
    nd_finish();
}
