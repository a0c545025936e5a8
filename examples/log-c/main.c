/*
 * log-c: writes to stdout and stderr, for the invocation logs
 * (`zerofn logs`), then answers 200 text/plain "logged\n".
 *
 *   stdout: "request <METHOD> <path with query>"
 *           "second line"
 *   stderr: "warning for <path>: " ESC "[31mred" ESC "[0m \xff end"
 *           (a terminal escape sequence and a byte that is not UTF-8:
 *           the platform must store and print both harmlessly)
 *
 * With "trap" anywhere in the path it traps after writing, without
 * answering: the output of a failed invocation is kept too.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "zerofn_http.h"

void exports_wasi_http_incoming_handler_handle(zf_request_t request,
                                               zf_response_out_t response_out) {
    wasi_http_types_borrow_incoming_request_t request_ref =
        wasi_http_types_borrow_incoming_request(request);
    zf_buf_t method = {0};
    zf_buf_t path = {0};
    zf_method_name(request_ref, &method);
    zf_path_with_query(request_ref, &path);
    wasi_http_types_incoming_request_drop_own(request);

    int method_len = (int)method.len;
    int path_len = (int)path.len;
    printf("request %.*s %.*s\n", method_len, (const char *)method.data, path_len,
           (const char *)path.data);
    printf("second line\n");
    fprintf(stderr, "warning for %.*s: \x1b[31mred\x1b[0m \xff end\n", path_len,
            (const char *)path.data);
    /* Not a terminal: stdio buffers; the handler returns without exit(). */
    fflush(stdout);
    fflush(stderr);

    bool trap = false;
    for (size_t i = 0; path.data != NULL && i + 4 <= path.len; i++) {
        if (memcmp(path.data + i, "trap", 4) == 0) {
            trap = true;
        }
    }
    zf_buf_free(&path);
    zf_buf_free(&method);
    if (trap) {
        __builtin_trap();
    }
    static const char answer[] = "logged\n";
    zf_respond(response_out, 200, "text/plain", (const uint8_t *)answer, sizeof answer - 1);
}
