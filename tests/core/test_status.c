/* Status codes, their texts, and the per-thread record of the last failure. */
#include <pthread.h>
#include <string.h>

#include <tide/tide.h>

#include "tt.h"

Test(status, codes_have_the_values_of_the_contract, .timeout = 10) {
    cr_assert_eq(TD_OK, 0);
    cr_assert_eq(TD_EINVAL, 1);
    cr_assert_eq(TD_ESHAPE, 2);
    cr_assert_eq(TD_EDTYPE, 3);
    cr_assert_eq(TD_ENOMEM, 4);
    cr_assert_eq(TD_EDEVICE, 5);
    cr_assert_eq(TD_EIO, 6);
    cr_assert_eq(TD_EFORMAT, 7);
    cr_assert_eq(TD_EFAILED, 8);
    cr_assert_eq(TD_EBUSY, 9);
    cr_assert_eq(td_shutdown(), TD_OK);
}

Test(status, strerror_gives_distinct_text_for_every_code_and_never_null, .timeout = 10) {
    for (int a = TD_OK; a <= TD_EBUSY; a++) {
        const char *s = td_strerror((td_status)a);
        cr_assert_not_null(s);
        cr_assert_gt(strlen(s), 0, "td_strerror(%d) is empty", a);
        for (int b = TD_OK; b < a; b++)
            cr_assert_neq(strcmp(s, td_strerror((td_status)b)), 0,
                          "td_strerror(%d) and td_strerror(%d) are both \"%s\"", a, b, s);
    }
    cr_assert_not_null(td_strerror((td_status)999));
    cr_assert_not_null(td_strerror((td_status)-1));
    cr_assert_str_eq(td_status_name(TD_EINVAL), "TD_EINVAL");
    cr_assert_str_eq(td_status_name(TD_EBUSY), "TD_EBUSY");
    cr_assert_str_eq(td_status_name(TD_OK), "TD_OK");
    cr_assert_not_null(td_status_name((td_status)999));
    cr_assert_eq(td_shutdown(), TD_OK);
}

Test(status, last_error_starts_empty_and_clears, .timeout = 10) {
    cr_assert_eq(td_last_status(), TD_OK);
    cr_assert_str_eq(td_last_error(), "");
    td_status st = td_push(NULL);
    cr_assert_eq(st, TD_EINVAL);
    cr_assert_eq(td_last_status(), TD_EINVAL);
    cr_assert_gt(strlen(td_last_error()), 0, "td_push(NULL) left no message");
    td_clear_error();
    cr_assert_eq(td_last_status(), TD_OK);
    cr_assert_str_eq(td_last_error(), "");
    cr_assert_eq(td_shutdown(), TD_OK);
}

struct other_thread {
    td_status before, after_own_failure;
    int before_empty;
    char own_message[256];
};

static void *fail_on_another_thread(void *p) {
    struct other_thread *o = p;
    o->before = td_last_status();
    o->before_empty = td_last_error()[0] == '\0';
    td_op op;
    memset(&op, 0, sizeof op);
    op.device = td_gpu(0);
    op.name = "gpu_op";
    (void)td_push(&op); /* fn NULL and an absent device: a failure of its own */
    o->after_own_failure = td_last_status();
    snprintf(o->own_message, sizeof o->own_message, "%s", td_last_error());
    return NULL;
}

Test(status, last_error_is_per_thread, .timeout = 10) {
    td_status st = td_push(NULL);
    cr_assert_eq(st, TD_EINVAL);
    char mine[256];
    snprintf(mine, sizeof mine, "%s", td_last_error());
    struct other_thread o;
    memset(&o, 0, sizeof o);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, fail_on_another_thread, &o), 0);
    pthread_join(th, NULL);
    cr_assert_eq(o.before, TD_OK, "a new thread sees another thread's failure");
    cr_assert(o.before_empty);
    cr_assert_neq(o.after_own_failure, TD_OK);
    cr_assert_gt(strlen(o.own_message), 0);
    /* This thread's record is untouched by the other thread's failure. */
    cr_assert_eq(td_last_status(), TD_EINVAL);
    cr_assert_str_eq(td_last_error(), mine);
    cr_assert_eq(td_shutdown(), TD_OK);
}
