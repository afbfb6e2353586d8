/* libFuzzer harness of the checkpoint (safetensors) loader (td_ckpt_load's
 * code, from memory), and of the loaded checkpoint's accessors. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    td_clear_error();
    td_ckpt *ck = NULL;
    td_status st = td__ckpt_load_mem(data, size, "fuzz.safetensors", td_cpu(0), &ck);
    if (st != TD_OK) {
        if (ck) fuzz_fail("a failed load returned a checkpoint");
        fuzz_check_failure("fuzz.safetensors");
        return 0;
    }
    size_t total = 0;
    for (size_t i = 0; i < td_ckpt_count(ck); i++) {
        const char *name = td_ckpt_name(ck, i);
        td_array *a = name ? td_ckpt_get(ck, name) : NULL;
        if (!a) fuzz_fail("a listed array cannot be taken");
        total += fuzz_touch(a);
        td_release(a);
    }
    if (total > size) fuzz_fail("the arrays are larger than the file");
    for (size_t i = 0; i < td_ckpt_meta_count(ck); i++) {
        const char *key = td_ckpt_meta_key(ck, i);
        if (!key || !td_ckpt_meta(ck, key)) fuzz_fail("a listed metadata key has no value");
    }
    td_ckpt_free(ck);
    return 0;
}
