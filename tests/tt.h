/* tide tests: Criterion, or a minimal stand-in for the plain-main driver.
 *
 * Every engine test file includes this header instead of
 * <criterion/criterion.h>.  Normally it is Criterion.  Compiled with
 * -DTD_PLAIN_DRIVER it provides the small subset of Criterion the tests use
 * (Test with .timeout, cr_assert and the comparison forms, cr_log_info,
 * cr_skip_test), so the same test bodies run from tests/engine/plain_main.c.
 * That driver exists because Criterion 2.4.1 aborts under ThreadSanitizer (its
 * inheritable arena, Criterion issue 274), and CI runs the engine tests under
 * ThreadSanitizer.
 *
 * Rules for test code, so both builds behave the same:
 *  - assert only on the test's own thread (never inside an op or a helper
 *    thread): record what an op saw and assert after waiting;
 *  - every message argument starts with a string literal format;
 *  - a child process made by fork() ends with exit() (or _exit() where the
 *    test requires it), never by returning into the test framework.
 */
#ifndef TIDE_TESTS_TT_H
#define TIDE_TESTS_TT_H

#ifndef TD_PLAIN_DRIVER

#include <criterion/criterion.h>
#include <criterion/logging.h>

/* Criterion 2.4.1's runner leaks a small block (48 bytes, from its own
 * calloc) in the parent process when timed tests run for a while, which fails
 * LeakSanitizer builds at exit.  The leak is Criterion's, not the code under
 * test: suppress leaks whose stack is inside libcriterion only.  Weak, so a
 * test program made of several files still links. */
__attribute__((weak, used)) const char *__lsan_default_suppressions(void);
__attribute__((weak, used)) const char *__lsan_default_suppressions(void) {
    return "leak:libcriterion.so\n";
}

#else /* TD_PLAIN_DRIVER */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tt_params {
    int tt_unused; /* lets Test() take no extra arguments */
    double timeout; /* seconds; 0: the driver's default */
    const char *description;
    int disabled;
};

typedef void (*tt_test_fn)(void);

/* Implemented by tests/engine/plain_main.c. */
void tt_register(const char *suite, const char *name, tt_test_fn fn, const struct tt_params *p);
_Noreturn void tt_fail(const char *file, int line, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
_Noreturn void tt_fail_cmp(const char *file, int line, const char *what, const char *lhs,
                           const char *rhs, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
_Noreturn void tt_skip(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void tt_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

enum { TT_VALBUF = 48 };
static inline const char *tt_fmt_i(char *b, long long v) {
    snprintf(b, TT_VALBUF, "%lld", v);
    return b;
}
static inline const char *tt_fmt_u(char *b, unsigned long long v) {
    snprintf(b, TT_VALBUF, "%llu", v);
    return b;
}
static inline const char *tt_fmt_f(char *b, double v) {
    snprintf(b, TT_VALBUF, "%.17g", v);
    return b;
}
static inline const char *tt_fmt_p(char *b, const void *v) {
    snprintf(b, TT_VALBUF, "%p", v);
    return b;
}
/* Formats a scalar of any arithmetic or pointer type for a failure message. */
#define TT_FMTVAL(buf, x)                                                                 \
    _Generic((x),                                                                         \
        _Bool: tt_fmt_u, char: tt_fmt_i, signed char: tt_fmt_i, short: tt_fmt_i,          \
        int: tt_fmt_i, long: tt_fmt_i, long long: tt_fmt_i, unsigned char: tt_fmt_u,      \
        unsigned short: tt_fmt_u, unsigned: tt_fmt_u, unsigned long: tt_fmt_u,            \
        unsigned long long: tt_fmt_u, float: tt_fmt_f, double: tt_fmt_f,                  \
        long double: tt_fmt_f, default: tt_fmt_p)(buf, x)

#define Test(suite, name, ...)                                                            \
    static void tt_fn_##suite##_##name(void);                                             \
    __attribute__((constructor)) static void tt_reg_##suite##_##name(void) {              \
        static const struct tt_params tt_p_ = {.tt_unused = 0, __VA_ARGS__};              \
        tt_register(#suite, #name, tt_fn_##suite##_##name, &tt_p_);                       \
    }                                                                                     \
    static void tt_fn_##suite##_##name(void)

/* The messages are optional printf-style formats; " " makes the empty case a
 * valid (non-empty) format. */
#define cr_assert(cond, ...)                                                              \
    do {                                                                                  \
        if (!(cond)) tt_fail(__FILE__, __LINE__, #cond, " " __VA_ARGS__);                 \
    } while (0)
#define cr_assert_not(cond, ...)                                                          \
    do {                                                                                  \
        if (cond) tt_fail(__FILE__, __LINE__, "!(" #cond ")", " " __VA_ARGS__);           \
    } while (0)
#define cr_assert_null(p, ...)                                                            \
    do {                                                                                  \
        if ((p) != NULL) tt_fail(__FILE__, __LINE__, #p " == NULL", " " __VA_ARGS__);    \
    } while (0)
#define cr_assert_not_null(p, ...)                                                        \
    do {                                                                                  \
        if ((p) == NULL) tt_fail(__FILE__, __LINE__, #p " != NULL", " " __VA_ARGS__);    \
    } while (0)

/* Compares like Criterion, (a) op (b) as written (so the usual conversions
 * and warnings apply); on failure the operands are evaluated again to print
 * them, so they must have no side effects. */
#define TT_CMP_(a, op, b, ...)                                                            \
    do {                                                                                  \
        if (!((a) op (b))) {                                                              \
            char tt_sa_[TT_VALBUF], tt_sb_[TT_VALBUF];                                    \
            tt_fail_cmp(__FILE__, __LINE__, #a " " #op " " #b, TT_FMTVAL(tt_sa_, (a)),    \
                        TT_FMTVAL(tt_sb_, (b)), " " __VA_ARGS__);                         \
        }                                                                                 \
    } while (0)
#define cr_assert_eq(a, b, ...) TT_CMP_(a, ==, b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) TT_CMP_(a, !=, b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) TT_CMP_(a, <, b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) TT_CMP_(a, <=, b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...) TT_CMP_(a, >, b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) TT_CMP_(a, >=, b, __VA_ARGS__)

#define cr_assert_str_eq(a, b, ...)                                                       \
    do {                                                                                  \
        const char *tt_a_ = (a), *tt_b_ = (b);                                            \
        if (strcmp(tt_a_, tt_b_) != 0)                                                    \
            tt_fail_cmp(__FILE__, __LINE__, #a " equals " #b, tt_a_, tt_b_,               \
                        " " __VA_ARGS__);                                                 \
    } while (0)

#define cr_assert_float_eq(a, b, eps, ...)                                                \
    do {                                                                                  \
        double tt_a_ = (a), tt_b_ = (b), tt_e_ = (eps);                                   \
        if (!(tt_a_ - tt_b_ <= tt_e_ && tt_b_ - tt_a_ <= tt_e_)) {                        \
            char tt_sa_[TT_VALBUF], tt_sb_[TT_VALBUF];                                    \
            tt_fail_cmp(__FILE__, __LINE__, #a " ~= " #b " within " #eps,                 \
                        tt_fmt_f(tt_sa_, tt_a_), tt_fmt_f(tt_sb_, tt_b_),                 \
                        " " __VA_ARGS__);                                                 \
        }                                                                                 \
    } while (0)

#define cr_log_info(...) tt_log(__VA_ARGS__)
#define cr_skip_test(...) tt_skip(__FILE__, __LINE__, " " __VA_ARGS__)

#endif /* TD_PLAIN_DRIVER */

#endif
