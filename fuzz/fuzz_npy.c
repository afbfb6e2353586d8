/* libFuzzer harness of the .npy loader (td_npy_load's code, from memory). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    td_clear_error();
    td_array *a = td__npy_load_mem(data, size, "fuzz.npy", td_cpu(0));
    if (!a) {
        fuzz_check_failure("fuzz.npy");
        return 0;
    }
    if (fuzz_touch(a) > size) fuzz_fail("the array is larger than the file");
    td_release(a);
    return 0;
}
