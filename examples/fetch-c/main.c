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
#include "zerofn_outbound.h"

#include <string.h>


void exports_wasi_http_incoming_handler_handle(zf_request_t request, zf_response_out_t out) {
    wasi_http_types_borrow_incoming_request_t request_ref =
        wasi_http_types_borrow_incoming_request(request);
    zf_buf_t body = {0};
    bool read = zf_read_body(request_ref, &body);
    wasi_http_types_incoming_request_drop_own(request);
    if (!read || body.failed) {
        zf_respond_text(out, 400, "unreadable body");
        zf_buf_free(&body);
        return;
    }
    const uint8_t *end = body.data + body.len;
    const uint8_t *space = memchr(body.data, ' ', body.len);
    if (space == NULL) {
        zf_respond_text(out, 400, "send \"METHOD URL\"");
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
        zf_respond_text(out, 400, "no ://");
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
        zf_respond_text(out, 400, "scheme-refused");
    } else if (!wasi_http_types_method_outgoing_request_set_authority(outgoing_ref,
                                                                       &authority_str)) {
        wasi_http_types_outgoing_request_drop_own(outgoing);
        zf_respond_text(out, 400, "authority-refused");
    } else if (path.failed ||
               !wasi_http_types_method_outgoing_request_set_path_with_query(outgoing_ref,
                                                                             &path_str)) {
        wasi_http_types_outgoing_request_drop_own(outgoing);
        zf_respond_text(out, 400, "path-refused");
    } else {
        zf_send_and_relay(out, outgoing);
    }
    (void)url_len;
    zf_buf_free(&path);
    zf_buf_free(&body);
}
