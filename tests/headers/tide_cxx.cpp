// The public headers compile as C++11 (-std=c++11 -Wpedantic -Werror) and
// link from C++ through their extern "C" guards.
#include <tide/tide.h>

#include <cstdio>
#include <cstring>

int main()
{
    int failures = 0;
    if (TD_OK != 0) failures++;
    if (std::strcmp(td_status_name(TD_EBUSY), "TD_EBUSY") != 0) failures++;
    if (td_strerror(TD_EINVAL) == NULL) failures++;
    td_op op;
    std::memset(&op, 0, sizeof op);
    op.flags = TD_OP_ASYNC | TD_OP_OVERWRITE;
    op.device = td_cpu(0);
    if (op.device.kind != TD_CPU) failures++;
    td_config cfg = td_config_default();
    (void)cfg;
    std::printf("headers (C++11): %s\n", failures ? "FAILED" : "OK");
    return failures ? 1 : 0;
}
