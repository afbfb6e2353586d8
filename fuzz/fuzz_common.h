/* What both fuzz harnesses share: the runtime on the naive engine (no worker
 * threads), and the rules every input must keep.  A broken rule ends the
 * process with a message (abort), which libFuzzer reports as a crash and
 * saves the input.
 *
 * The rules: a loader given any bytes returns either a result or TD_EFORMAT
 * with a message naming the file, never another status; what it loads fits
 * in the bytes it was given; and, through ASan and UBSan, no bad access, no
 * undefined behaviour and no leak. */
#ifndef TIDE_FUZZ_COMMON_H
#define TIDE_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tide/tide.h>

#include "ndarray/internal.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    td_config cfg = td_config_default();
    cfg.engine = TD_ENGINE_NAIVE;
    if (td_init(&cfg) != TD_OK) {
        fprintf(stderr, "fuzz: td_init failed: %s\n", td_last_error());
        abort();
    }
    return 0;
}

static void fuzz_fail(const char *what) {
    fprintf(stderr, "fuzz: %s (status %s, message \"%s\")\n", what, td_status_name(td_last_status()),
            td_last_error());
    abort();
}

/* A failed load must be TD_EFORMAT naming the input. */
static void fuzz_check_failure(const char *name) {
    if (td_last_status() != TD_EFORMAT) fuzz_fail("a loader failed with a status other than TD_EFORMAT");
    if (!strstr(td_last_error(), name)) fuzz_fail("the message does not name the file");
}

/* Reads every element of a loaded array back (ASan sees each access) and
 * returns its size in bytes. */
static size_t fuzz_touch(td_array *a) {
    if (!td_is_contiguous(a)) fuzz_fail("a loaded array is not C-contiguous");
    size_t bytes = (size_t)td_numel(a) * td_dtype_size(td_dtype(a));
    if (td_array_wait(a) != TD_OK) fuzz_fail("a loaded array cannot be read");
    const volatile unsigned char *p = td_data(a);
    unsigned sum = 0;
    for (size_t i = 0; i < bytes; i++) sum += p[i];
    (void)sum;
    return bytes;
}

#endif
