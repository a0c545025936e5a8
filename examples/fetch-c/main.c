/*
 * fetch-c: sends the outbound request its caller names, the way a naive
 * guest would: the request body is "METHOD URL", and the URL is split at
 * "://" and at the first '/', '?' or '#' after it into the scheme,
 * authority and path-with-query that wasi:http takes, without checking
 * any of them. The platform's egress gateway has to read what it gets.
 * It also sets a forged caller-identity header, which must never leave.
 *
 * Answers with the upstream's status and body, 502 with the wasi:http
 * error code's WIT name when the request fails ("HTTP-request-denied",
 * "destination-IP-prohibited", ...), or 400 "authority-refused" /
 * "scheme-refused" when wasi:http itself refuses the parts.
 */
#include "zerofn_http.h"

#include <string.h>

#define READ_CHUNK 16384

/* WIT names of wasi:http error-code cases, by WASI_HTTP_TYPES_ERROR_CODE_* tag. */
static const char *const error_names[] = {
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
static void respond_error_code(zf_response_out_t out, wasi_http_types_error_code_t *code) {
    const char *name = code->tag < sizeof error_names / sizeof error_names[0]
                           ? error_names[code->tag]
                           : "unknown-error";
    wasi_http_types_error_code_free(code);
    zf_respond(out, 502, "text/plain", (const uint8_t *)name, strlen(name));
}

static void respond_text(zf_response_out_t out, uint16_t status, const char *text) {
    zf_respond(out, status, "text/plain", (const uint8_t *)text, strlen(text));
}

/* Reads the whole body of `response` into `body`; false if it broke off. */
static bool read_response_body(wasi_http_types_borrow_incoming_response_t response,
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
                wasi_io_streams_borrow_input_stream(stream), READ_CHUNK, &chunk, &err)) {
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

/* Sends the request and relays the answer, consuming `request`. */
static void call(zf_response_out_t out, wasi_http_types_own_outgoing_request_t request) {
    wasi_http_types_own_future_incoming_response_t future;
    wasi_http_types_error_code_t code;
    if (!wasi_http_outgoing_handler_handle(request, NULL, &future, &code)) {
        respond_error_code(out, &code);
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
        respond_text(out, 500, "the response future was not ready");
        return;
    }
    if (result.val.ok.is_err) {
        respond_error_code(out, &result.val.ok.val.err);
        return;
    }
    wasi_http_types_own_incoming_response_t response = result.val.ok.val.ok;
    wasi_http_types_borrow_incoming_response_t response_ref =
        wasi_http_types_borrow_incoming_response(response);
    uint16_t status = wasi_http_types_method_incoming_response_status(response_ref);
    zf_buf_t body = {0};
    bool body_ok = read_response_body(response_ref, &body);
    wasi_http_types_incoming_response_drop_own(response);
    if (!body_ok) {
        respond_text(out, 502, "HTTP-response-incomplete");
    } else {
        zf_respond(out, status, "text/plain", body.data, body.len);
    }
    zf_buf_free(&body);
}

void exports_wasi_http_incoming_handler_handle(zf_request_t request, zf_response_out_t out) {
    wasi_http_types_borrow_incoming_request_t request_ref =
        wasi_http_types_borrow_incoming_request(request);
    zf_buf_t body = {0};
    bool read = zf_read_body(request_ref, &body);
    wasi_http_types_incoming_request_drop_own(request);
    if (!read || body.failed) {
        respond_text(out, 400, "unreadable body");
        zf_buf_free(&body);
        return;
    }
    const uint8_t *end = body.data + body.len;
    const uint8_t *space = memchr(body.data, ' ', body.len);
    if (space == NULL) {
        respond_text(out, 400, "send \"METHOD URL\"");
        zf_buf_free(&body);
        return;
    }
    const uint8_t *url = space + 1;
    size_t url_len = (size_t)(end - url);
    const uint8_t *sep = NULL;
    for (const uint8_t *p = url; p + 3 <= end; p++) {
        if (p[0] == ':' && p[1] == '/' && p[2] == '/') {
            sep = p;
            break;
        }
    }
    if (sep == NULL) {
        respond_text(out, 400, "no ://");
        zf_buf_free(&body);
        return;
    }
    const uint8_t *auth = sep + 3;
    const uint8_t *auth_end = auth;
    while (auth_end < end && *auth_end != '/' && *auth_end != '?' && *auth_end != '#') {
        auth_end++;
    }
    zf_buf_t path = {0};
    if (auth_end == end || *auth_end != '/') {
        zf_buf_puts(&path, "/");
    }
    zf_buf_append(&path, auth_end, (size_t)(end - auth_end));

    wasi_http_types_own_fields_t headers = wasi_http_types_constructor_fields();
    {
        wasi_http_types_field_name_t name = {(uint8_t *)"x-zerofn-caller-spiffe-id", 25};
        wasi_http_types_field_value_t value = {(uint8_t *)"spiffe://forged/fn", 18};
        wasi_http_types_header_error_t err;
        (void)wasi_http_types_method_fields_append(wasi_http_types_borrow_fields(headers), &name,
                                                   &value, &err);
    }
    wasi_http_types_own_outgoing_request_t outgoing =
        wasi_http_types_constructor_outgoing_request(headers);
    wasi_http_types_borrow_outgoing_request_t outgoing_ref =
        wasi_http_types_borrow_outgoing_request(outgoing);

    wasi_http_types_method_t method;
    size_t method_len = (size_t)(space - body.data);
    if (method_len == 4 && memcmp(body.data, "POST", 4) == 0) {
        method.tag = WASI_HTTP_TYPES_METHOD_POST;
    } else if (method_len == 6 && memcmp(body.data, "DELETE", 6) == 0) {
        method.tag = WASI_HTTP_TYPES_METHOD_DELETE;
    } else {
        method.tag = WASI_HTTP_TYPES_METHOD_GET;
    }
    wasi_http_types_scheme_t scheme;
    size_t scheme_len = (size_t)(sep - url);
    if (scheme_len == 4 && memcmp(url, "http", 4) == 0) {
        scheme.tag = WASI_HTTP_TYPES_SCHEME_HTTP;
    } else if (scheme_len == 5 && memcmp(url, "https", 5) == 0) {
        scheme.tag = WASI_HTTP_TYPES_SCHEME_HTTPS;
    } else {
        scheme.tag = WASI_HTTP_TYPES_SCHEME_OTHER;
        scheme.val.other.ptr = (uint8_t *)url;
        scheme.val.other.len = scheme_len;
    }
    proxy_string_t authority_str = {(uint8_t *)auth, (size_t)(auth_end - auth)};
    proxy_string_t path_str = {path.data, path.len};
    if (!wasi_http_types_method_outgoing_request_set_method(outgoing_ref, &method) ||
        !wasi_http_types_method_outgoing_request_set_scheme(outgoing_ref, &scheme)) {
        wasi_http_types_outgoing_request_drop_own(outgoing);
        respond_text(out, 400, "scheme-refused");
    } else if (!wasi_http_types_method_outgoing_request_set_authority(outgoing_ref,
                                                                       &authority_str)) {
        wasi_http_types_outgoing_request_drop_own(outgoing);
        respond_text(out, 400, "authority-refused");
    } else if (path.failed ||
               !wasi_http_types_method_outgoing_request_set_path_with_query(outgoing_ref,
                                                                             &path_str)) {
        wasi_http_types_outgoing_request_drop_own(outgoing);
        respond_text(out, 400, "path-refused");
    } else {
        call(out, outgoing);
    }
    (void)url_len;
    zf_buf_free(&path);
    zf_buf_free(&body);
}
