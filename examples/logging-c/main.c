/*
 * logging-c: logs through wasi:logging at every level and writes to stdout
 * and stderr, for the invocation logs (`zerofn logs`), then answers 200
 * text/plain "logged 6\n".
 *
 *   stdout:  "before logging", then "after logging"
 *   log:     trace    logging-c  "trace message"
 *            debug    logging-c  "debug message"
 *            info     request    "<METHOD> <path with query>"
 *            warn     logging-c  "colour " ESC "[31mred" ESC "[0m" "\nsecond line"
 *                                (a terminal escape and a newline inside one
 *                                record: stored as is, printed escaped)
 *            error    (empty)    "error without context"
 *            critical logging-c  "critical message"
 *   stderr:  "stderr line"
 */
#include <stdio.h>
#include <string.h>

#include "zerofn_http.h"

static void log_text(wasi_logging_logging_level_t level, const char *context,
                     const uint8_t *message, size_t message_len) {
    proxy_string_t c = {(uint8_t *)context, strlen(context)};
    proxy_string_t m = {(uint8_t *)message, message_len};
    wasi_logging_logging_log(level, &c, &m);
}

static void log_str(wasi_logging_logging_level_t level, const char *context,
                    const char *message) {
    log_text(level, context, (const uint8_t *)message, strlen(message));
}

void exports_wasi_http_incoming_handler_handle(zf_request_t request,
                                               zf_response_out_t response_out) {
    wasi_http_types_borrow_incoming_request_t request_ref =
        wasi_http_types_borrow_incoming_request(request);
    zf_buf_t line = {0};
    zf_buf_t path = {0};
    zf_method_name(request_ref, &line);
    zf_path_with_query(request_ref, &path);
    wasi_http_types_incoming_request_drop_own(request);
    zf_buf_puts(&line, " ");
    zf_buf_append(&line, path.data, path.len);

    /* Not a terminal: stdio buffers; flush so the order of the writes is
     * the order of the calls. */
    printf("before logging\n");
    fflush(stdout);
    log_str(WASI_LOGGING_LOGGING_LEVEL_TRACE, "logging-c", "trace message");
    log_str(WASI_LOGGING_LOGGING_LEVEL_DEBUG, "logging-c", "debug message");
    log_text(WASI_LOGGING_LOGGING_LEVEL_INFO, "request", line.data, line.len);
    log_str(WASI_LOGGING_LOGGING_LEVEL_WARN, "logging-c",
            "colour \x1b[31mred\x1b[0m\nsecond line");
    log_str(WASI_LOGGING_LOGGING_LEVEL_ERROR, "", "error without context");
    log_str(WASI_LOGGING_LOGGING_LEVEL_CRITICAL, "logging-c", "critical message");
    printf("after logging\n");
    fflush(stdout);
    fprintf(stderr, "stderr line\n");
    fflush(stderr);

    zf_buf_free(&path);
    zf_buf_free(&line);
    static const char answer[] = "logged 6\n";
    zf_respond(response_out, 200, "text/plain", (const uint8_t *)answer, sizeof answer - 1);
}
