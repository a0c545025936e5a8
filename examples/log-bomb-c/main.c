/*
 * log-bomb-c (hostile): logs far more through wasi:logging than the host
 * keeps for one invocation, then answers; the host must hold at most its
 * limits and the invocation must still finish.
 *
 *   GET /log-bomb/huge    one message of 8 MiB with a context of 1 MiB
 *   GET /log-bomb/lines   1,000,000 records "line <n>" (context "bomb")
 *
 * Then writes "done" to stdout and answers 200 text/plain "done <n>\n",
 * <n> being the number of log calls made; 500 "out of memory" if the
 * message cannot be allocated.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zerofn_http.h"

#define HUGE_MESSAGE (8 * 1024 * 1024)
#define HUGE_CONTEXT (1024 * 1024)
#define LINES 1000000

static bool contains(const zf_buf_t *path, const char *needle) {
    size_t n = strlen(needle);
    for (size_t i = 0; path->data != NULL && i + n <= path->len; i++) {
        if (memcmp(path->data + i, needle, n) == 0) {
            return true;
        }
    }
    return false;
}

static void respond_text(zf_response_out_t out, uint16_t status, const char *text) {
    zf_respond(out, status, "text/plain", (const uint8_t *)text, strlen(text));
}

void exports_wasi_http_incoming_handler_handle(zf_request_t request,
                                               zf_response_out_t response_out) {
    wasi_http_types_borrow_incoming_request_t request_ref =
        wasi_http_types_borrow_incoming_request(request);
    zf_buf_t path = {0};
    zf_path_with_query(request_ref, &path);
    wasi_http_types_incoming_request_drop_own(request);

    long calls = 0;
    if (contains(&path, "huge")) {
        uint8_t *message = malloc(HUGE_MESSAGE);
        uint8_t *context = malloc(HUGE_CONTEXT);
        if (message == NULL || context == NULL) {
            zf_buf_free(&path);
            respond_text(response_out, 500, "out of memory\n");
            return;
        }
        memset(message, 'm', HUGE_MESSAGE);
        memset(context, 'c', HUGE_CONTEXT);
        proxy_string_t c = {context, HUGE_CONTEXT};
        proxy_string_t m = {message, HUGE_MESSAGE};
        wasi_logging_logging_log(WASI_LOGGING_LOGGING_LEVEL_CRITICAL, &c, &m);
        calls = 1;
        free(message);
        free(context);
    } else {
        char text[32];
        proxy_string_t c = {(uint8_t *)"bomb", 4};
        for (long i = 0; i < LINES; i++) {
            int n = snprintf(text, sizeof text, "line %ld", i);
            proxy_string_t m = {(uint8_t *)text, (size_t)n};
            wasi_logging_logging_log(WASI_LOGGING_LOGGING_LEVEL_INFO, &c, &m);
        }
        calls = LINES;
    }
    zf_buf_free(&path);
    printf("done\n");
    fflush(stdout);
    char answer[32];
    snprintf(answer, sizeof answer, "done %ld\n", calls);
    respond_text(response_out, 200, answer);
}
