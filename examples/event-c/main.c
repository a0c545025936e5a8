/*
 * event-c: a CloudEvents consumer (HTTP binary content mode). Writes one
 * line to stdout for the event, for the invocation logs (`zerofn logs`):
 *
 *   event id=<ce-id> type=<ce-type> source=<ce-source> spec=<ce-specversion>
 *         subject=<ce-subject> attempt=<ce-zerofnattempt> time=<ce-time>
 *         caller=<x-zerofn-caller> traceparent=<ce-traceparent>
 *         http-traceparent=<traceparent> content-type=<content-type> body=<body>
 *
 * (one line; a header that is absent prints as `-`), then answers by the
 * body: "fail" -> 500, "trap" -> a trap (no answer), anything else -> 200
 * "ok". So one guest serves the success, retry and dead-letter tests.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "zerofn_http.h"

static const char *NAMES[] = {"ce-id",      "ce-type",          "ce-source",
                              "ce-specversion", "ce-subject",   "ce-zerofnattempt",
                              "ce-time",    "x-zerofn-caller",  "ce-traceparent",
                              "traceparent", "content-type"};
static const char *LABELS[] = {"id", "type", "source", "spec", "subject",
                               "attempt", "time", "caller", "traceparent",
                               "http-traceparent", "content-type"};
#define FIELDS (sizeof NAMES / sizeof NAMES[0])

void exports_wasi_http_incoming_handler_handle(zf_request_t request,
                                               zf_response_out_t response_out) {
    wasi_http_types_borrow_incoming_request_t request_ref =
        wasi_http_types_borrow_incoming_request(request);

    zf_buf_t line = {0};
    zf_buf_puts(&line, "event");
    wasi_http_types_own_headers_t fields =
        wasi_http_types_method_incoming_request_headers(request_ref);
    wasi_http_types_list_tuple2_field_name_field_value_t entries;
    wasi_http_types_method_fields_entries(wasi_http_types_borrow_fields(fields), &entries);
    for (size_t f = 0; f < FIELDS; f++) {
        zf_buf_puts(&line, " ");
        zf_buf_puts(&line, LABELS[f]);
        zf_buf_puts(&line, "=");
        bool found = false;
        for (size_t i = 0; i < entries.len && !found; i++) {
            if (entries.ptr[i].f0.len == strlen(NAMES[f]) &&
                memcmp(entries.ptr[i].f0.ptr, NAMES[f], entries.ptr[i].f0.len) == 0) {
                zf_buf_append(&line, entries.ptr[i].f1.ptr, entries.ptr[i].f1.len);
                found = true;
            }
        }
        if (!found) {
            zf_buf_puts(&line, "-");
        }
    }
    wasi_http_types_list_tuple2_field_name_field_value_free(&entries);
    wasi_http_types_fields_drop_own(fields);

    zf_buf_t body = {0};
    bool body_ok = zf_read_body(request_ref, &body);
    wasi_http_types_incoming_request_drop_own(request);
    zf_buf_puts(&line, " body=");
    zf_buf_append(&line, body.data, body.len);

    printf("%.*s\n", (int)line.len, (const char *)line.data);
    fflush(stdout);

    bool fail = body.len == 4 && memcmp(body.data, "fail", 4) == 0;
    bool trap = body.len == 4 && memcmp(body.data, "trap", 4) == 0;
    zf_buf_free(&body);
    zf_buf_free(&line);
    if (trap) {
        __builtin_trap();
    }
    if (!body_ok) {
        zf_respond_error(response_out, "cannot read the request body");
    } else if (fail) {
        static const char answer[] = "failed on purpose\n";
        zf_respond(response_out, 500, "text/plain", (const uint8_t *)answer, sizeof answer - 1);
    } else {
        static const char answer[] = "ok\n";
        zf_respond(response_out, 200, "text/plain", (const uint8_t *)answer, sizeof answer - 1);
    }
}
