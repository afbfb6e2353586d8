/* An outside program: built against an installed tide with
 *   cc consumer.c $(pkg-config --cflags --libs tide)
 * by scripts/check.sh, and in-tree against the shared library as a test.
 * It uses only <tide/tide.h>: makes a var, pushes an op that writes it,
 * waits, and prints OK. */
#include <tide/tide.h>

#include <stdio.h>

static int value;

static td_status set_value(void *arg, const td_exec *ex)
{
    (void)ex;
    *(int *)arg = 42;
    return TD_OK;
}

int main(void)
{
    td_var *v = td_var_new();
    if (!v) {
        fprintf(stderr, "consumer: td_var_new: %s\n", td_last_error());
        return 1;
    }
    td_var *writes[] = {v};
    td_op op = {0};
    op.name = "consumer.set";
    op.device = td_cpu(0);
    op.fn = set_value;
    op.arg = &value;
    op.writes = writes;
    op.n_writes = 1;
    td_status st = td_push(&op);
    if (st != TD_OK) {
        fprintf(stderr, "consumer: td_push: %s: %s\n", td_strerror(st), td_last_error());
        return 1;
    }
    st = td_var_wait(v);
    if (st != TD_OK || value != 42) {
        fprintf(stderr, "consumer: td_var_wait: %s (value %d)\n", td_strerror(st), value);
        return 1;
    }
    td_var_free(v);
    st = td_shutdown();
    if (st != TD_OK) {
        fprintf(stderr, "consumer: td_shutdown: %s\n", td_strerror(st));
        return 1;
    }
    printf("OK\n");
    return 0;
}
