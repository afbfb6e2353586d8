/* The public headers compile as plain C11: this file is built with -std=c11
 * -Wpedantic -Wall -Wextra -Werror and without _GNU_SOURCE or any other
 * feature-test macro (see meson.build beside it).  It also checks, at run
 * time, that every status code has a name and a message. */
#include <tide/tide.h>

#include <stdio.h>
#include <string.h>

#define CHECK_STATUS(code, name, msg)                                                     \
    if (strcmp(td_status_name(code), name) != 0 || td_strerror(code) == NULL ||           \
        td_strerror(code)[0] == '\0') {                                                   \
        fprintf(stderr, "status %d: name %s, message %s\n", (int)(code),                  \
                td_status_name(code), td_strerror(code) ? td_strerror(code) : "(null)"); \
        failures++;                                                                       \
    }

int main(void)
{
    int failures = 0;
    TD_STATUS_LIST(CHECK_STATUS)
    if (TD_OK != 0) failures++;
    if (td_strerror((td_status)12345) == NULL) failures++;
    if (td_last_status() != TD_OK || strcmp(td_last_error(), "") != 0) failures++;
    printf("headers (C11): %s\n", failures ? "FAILED" : "OK");
    return failures ? 1 : 0;
}
