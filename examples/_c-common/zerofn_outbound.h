/*
 * Outbound requests for the example guests that make them (call-c, fetch-c,
 * relay-c): send a request through wasi:http/outgoing-handler, read the
 * answer, relay it, and name a failure by the WIT name of its error code.
 *
 * Header-only on purpose: every C guest compiles the `.c` files of this
 * directory, and a guest that makes no outbound request must not import
 * wasi:http/outgoing-handler; these `static inline` functions reach only the
 * guests that include this header.
 */
#ifndef ZEROFN_OUTBOUND_H
#define ZEROFN_OUTBOUND_H

#include "zerofn_http.h"

#include <string.h>

#define ZF_OUTBOUND_READ_CHUNK 16384

/* WIT names of wasi:http error-code cases, by WASI_HTTP_TYPES_ERROR_CODE_* tag. */
static const char *const zf_error_names[] = {
    "DNS-timeout",
    "DNS-error",
    "destination-not-found",
    "destination-unavailable",
    "destination-IP-prohibited",
    "destination-IP-unroutable",
    "connection-refused",
    "connection-terminated",
    "connection-timeout",
    "connection-read-timeout",
    "connection-write-timeout",
    "connection-limit-reached",
    "TLS-protocol-error",
    "TLS-certificate-error",
    "TLS-alert-received",
    "HTTP-request-denied",
    "HTTP-request-length-required",
    "HTTP-request-body-size",
    "HTTP-request-method-invalid",
    "HTTP-request-URI-invalid",
    "HTTP-request-URI-too-long",
    "HTTP-request-header-section-size",
    "HTTP-request-header-size",
    "HTTP-request-trailer-section-size",
    "HTTP-request-trailer-size",
    "HTTP-response-incomplete",
    "HTTP-response-header-section-size",
    "HTTP-response-header-size",
    "HTTP-response-body-size",
    "HTTP-response-trailer-section-size",
    "HTTP-response-trailer-size",
    "HTTP-response-transfer-coding",
    "HTTP-response-content-coding",
    "HTTP-response-timeout",
    "HTTP-upgrade-failed",
    "HTTP-protocol-error",
    "loop-detected",
    "configuration-error",
    "internal-error",
};

/* Answers 502 naming `code`, and frees it. */
static inline void zf_respond_error_code(zf_response_out_t out, wasi_http_types_error_code_t *code) {
    const char *name = code->tag < sizeof zf_error_names / sizeof zf_error_names[0]
                           ? zf_error_names[code->tag]
                           : "unknown-error";
    wasi_http_types_error_code_free(code);
    zf_respond(out, 502, "text/plain", (const uint8_t *)name, strlen(name));
}

static inline void zf_respond_text(zf_response_out_t out, uint16_t status, const char *text) {
    zf_respond(out, status, "text/plain", (const uint8_t *)text, strlen(text));
}

/* Reads the whole body of `response` into `body`; false if it broke off. */
static inline bool zf_read_response_body(wasi_http_types_borrow_incoming_response_t response,
                               zf_buf_t *body) {
    wasi_http_types_own_incoming_body_t incoming;
    if (!wasi_http_types_method_incoming_response_consume(response, &incoming)) {
        return false;
    }
    wasi_http_types_own_input_stream_t stream;
    if (!wasi_http_types_method_incoming_body_stream(
            wasi_http_types_borrow_incoming_body(incoming), &stream)) {
        wasi_http_types_incoming_body_drop_own(incoming);
        return false;
    }
    bool ok = true;
    for (;;) {
        proxy_list_u8_t chunk;
        wasi_io_streams_stream_error_t err;
        if (!wasi_io_streams_method_input_stream_blocking_read(
                wasi_io_streams_borrow_input_stream(stream), ZF_OUTBOUND_READ_CHUNK, &chunk, &err)) {
            ok = err.tag == WASI_IO_STREAMS_STREAM_ERROR_CLOSED;
            if (err.tag == WASI_IO_STREAMS_STREAM_ERROR_LAST_OPERATION_FAILED) {
                wasi_io_error_error_drop_own(err.val.last_operation_failed);
            }
            break;
        }
        zf_buf_append(body, chunk.ptr, chunk.len);
        proxy_list_u8_free(&chunk);
    }
    wasi_io_streams_input_stream_drop_own(stream);
    wasi_http_types_future_trailers_drop_own(wasi_http_types_static_incoming_body_finish(incoming));
    return ok && !body->failed;
}

/* Sends the request and relays the answer (status and body), consuming
 * `request`; 502 naming the error code when it fails. */
static inline void zf_send_and_relay(zf_response_out_t out, wasi_http_types_own_outgoing_request_t request) {
    wasi_http_types_own_future_incoming_response_t future;
    wasi_http_types_error_code_t code;
    if (!wasi_http_outgoing_handler_handle(request, NULL, &future, &code)) {
        zf_respond_error_code(out, &code);
        return;
    }
    wasi_http_types_borrow_future_incoming_response_t future_ref =
        wasi_http_types_borrow_future_incoming_response(future);
    wasi_http_types_own_pollable_t ready =
        wasi_http_types_method_future_incoming_response_subscribe(future_ref);
    wasi_io_poll_method_pollable_block(wasi_io_poll_borrow_pollable(ready));
    wasi_io_poll_pollable_drop_own(ready);

    wasi_http_types_result_result_own_incoming_response_error_code_void_t result;
    bool got = wasi_http_types_method_future_incoming_response_get(future_ref, &result);
    wasi_http_types_future_incoming_response_drop_own(future);
    if (!got || result.is_err) {
        zf_respond_text(out, 500, "the response future was not ready");
        return;
    }
    if (result.val.ok.is_err) {
        zf_respond_error_code(out, &result.val.ok.val.err);
        return;
    }
    wasi_http_types_own_incoming_response_t response = result.val.ok.val.ok;
    wasi_http_types_borrow_incoming_response_t response_ref =
        wasi_http_types_borrow_incoming_response(response);
    uint16_t status = wasi_http_types_method_incoming_response_status(response_ref);
    zf_buf_t body = {0};
    bool body_ok = zf_read_response_body(response_ref, &body);
    wasi_http_types_incoming_response_drop_own(response);
    if (!body_ok) {
        zf_respond_text(out, 502, "HTTP-response-incomplete");
    } else {
        zf_respond(out, status, "text/plain", body.data, body.len);
    }
    zf_buf_free(&body);
}

#endif
