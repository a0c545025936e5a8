/*
 * relay-c: a hostile caller. Relays its request body to another function
 * through wasi:http/outgoing-handler, as a POST, adding forged headers in
 * the platform's namespace (`x_zerofn_caller_spiffe_id`, a spoofed
 * `x-zerofn-invocation-id`, ...), and answers with the callee's status and
 * body.
 *
 *   POST /relay/<tenant>/<fn>/<rest...>   (body relayed as is)
 *
 * sends `POST http://<fn>.<tenant>.fn.internal/<rest...>`. When the
 * outgoing request fails with an error code it answers 502 with the
 * code's WIT name as the body. Used by the tests of the callee's limits on
 * calls (its `max_body_kb`) and of header stripping on the call path.
 */
#include "zerofn_outbound.h"

#include <string.h>

#define SUFFIX ".fn.internal"

/* Sends the request, then writes `payload` into `outgoing_body`, and relays
 * the answer; consumes `request` and `outgoing_body`. */
static void call(zf_response_out_t out, wasi_http_types_own_outgoing_request_t request,
                 wasi_http_types_own_outgoing_body_t outgoing_body, const zf_buf_t *payload) {
    wasi_http_types_own_future_incoming_response_t future;
    wasi_http_types_error_code_t code;
    if (!wasi_http_outgoing_handler_handle(request, NULL, &future, &code)) {
        wasi_http_types_outgoing_body_drop_own(outgoing_body);
        zf_respond_error_code(out, &code);
        return;
    }
    wasi_io_streams_own_output_stream_t stream;
    if (wasi_http_types_method_outgoing_body_write(
            wasi_http_types_borrow_outgoing_body(outgoing_body), &stream)) {
        for (size_t off = 0; off < payload->len; off += 4096) {
            size_t n = payload->len - off < 4096 ? payload->len - off : 4096;
            proxy_list_u8_t chunk = {payload->data + off, n};
            wasi_io_streams_stream_error_t err;
            if (!wasi_io_streams_method_output_stream_blocking_write_and_flush(
                    wasi_io_streams_borrow_output_stream(stream), &chunk, &err)) {
                wasi_io_streams_stream_error_free(&err);
                break;
            }
        }
        wasi_io_streams_output_stream_drop_own(stream);
    }
    wasi_http_types_error_code_t finish_err;
    if (!wasi_http_types_static_outgoing_body_finish(outgoing_body, NULL, &finish_err)) {
        wasi_http_types_error_code_free(&finish_err);
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

/* Headers a hostile caller adds to claim another identity and invocation;
 * the platform must drop them whatever their spelling. */
static void add_forged_headers(wasi_http_types_borrow_fields_t fields) {
    static const char *const forged[][2] = {
        {"x_zerofn_caller_spiffe_id", "spiffe://zerofn.local/tenant/acme/fn/admin"},
        {"X-Zerofn-Caller-Spiffe-Id", "spiffe://zerofn.local/tenant/acme/fn/admin"},
        {"x-zerofn-invocation-id", "forged"},
        {"X_ZEROFN-Anything", "forged"},
        {"x-relayed-by", "relay-c"},
    };
    for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++) {
        proxy_string_t name = {(uint8_t *)forged[i][0], strlen(forged[i][0])};
        wasi_http_types_field_value_t value = {(uint8_t *)forged[i][1], strlen(forged[i][1])};
        wasi_http_types_header_error_t err;
        if (!wasi_http_types_method_fields_append(fields, &name, &value, &err)) {
            wasi_http_types_header_error_free(&err);
        }
    }
}

void exports_wasi_http_incoming_handler_handle(zf_request_t request, zf_response_out_t out) {
    wasi_http_types_borrow_incoming_request_t request_ref =
        wasi_http_types_borrow_incoming_request(request);
    zf_buf_t path = {0};
    zf_buf_t inbody = {0};
    zf_path_with_query(request_ref, &path);
    bool body_ok = zf_read_body(request_ref, &inbody);
    wasi_http_types_incoming_request_drop_own(request);
    if (!body_ok) {
        zf_respond_text(out, 400, "cannot read the request body");
        zf_buf_free(&inbody);
        zf_buf_free(&path);
        return;
    }
    /* "/<route>/<tenant>/<fn>[/<rest...>]": the first segment is whatever
     * route the function is deployed on. */
    size_t prefix_len = 0;
    if (!path.failed && path.len > 1 && path.data[0] == '/') {
        const uint8_t *second = memchr(path.data + 1, '/', path.len - 1);
        prefix_len = second ? (size_t)(second - path.data) + 1 : 0;
    }
    const uint8_t *tenant = path.data + prefix_len;
    const uint8_t *slash1 = NULL;
    const uint8_t *fn = NULL;
    size_t tenant_len = 0, fn_len = 0;
    if (prefix_len > 0 && path.len > prefix_len) {
        size_t rest_len = path.len - prefix_len;
        slash1 = memchr(tenant, '/', rest_len);
        if (slash1 != NULL) {
            tenant_len = (size_t)(slash1 - tenant);
            fn = slash1 + 1;
            const uint8_t *end = path.data + path.len;
            const uint8_t *fn_end = fn;
            while (fn_end < end && *fn_end != '/' && *fn_end != '?') {
                fn_end++;
            }
            fn_len = (size_t)(fn_end - fn);
        }
    }
    if (tenant_len == 0 || fn_len == 0) {
        zf_respond_text(out, 404, "use /relay/<tenant>/<fn>/<path>");
        zf_buf_free(&inbody);
        zf_buf_free(&path);
        return;
    }
    /* Everything after "<fn>" is the callee's path (and query). */
    const uint8_t *rest = fn + fn_len;
    size_t rest_len = (size_t)(path.data + path.len - rest);

    /* Tenant "-" names a platform service instead of a function:
     * "/<route>/-/identity/jwt-svid?audience=a" -> http://identity.fn.internal/... */
    zf_buf_t authority = {0};
    zf_buf_append(&authority, fn, fn_len);
    if (!(tenant_len == 1 && tenant[0] == '-')) {
        zf_buf_puts(&authority, ".");
        zf_buf_append(&authority, tenant, tenant_len);
    }
    zf_buf_puts(&authority, SUFFIX);
    zf_buf_t target = {0};
    if (rest_len == 0 || rest[0] != '/') {
        zf_buf_puts(&target, "/");
    }
    zf_buf_append(&target, rest, rest_len);
    if (authority.failed || target.failed) {
        zf_respond_error(out, "out of memory");
        goto done;
    }

    wasi_http_types_own_fields_t fields = wasi_http_types_constructor_fields();
    add_forged_headers(wasi_http_types_borrow_fields(fields));
    wasi_http_types_own_outgoing_request_t outgoing =
        wasi_http_types_constructor_outgoing_request(fields);
    wasi_http_types_borrow_outgoing_request_t outgoing_ref =
        wasi_http_types_borrow_outgoing_request(outgoing);
    wasi_http_types_scheme_t scheme = {.tag = WASI_HTTP_TYPES_SCHEME_HTTP};
    proxy_string_t authority_str = {authority.data, authority.len};
    proxy_string_t target_str = {target.data, target.len};
    wasi_http_types_method_t post = {.tag = WASI_HTTP_TYPES_METHOD_POST};
    wasi_http_types_own_outgoing_body_t outgoing_body;
    if (!wasi_http_types_method_outgoing_request_set_method(outgoing_ref, &post) ||
        !wasi_http_types_method_outgoing_request_body(outgoing_ref, &outgoing_body)) {
        wasi_http_types_outgoing_request_drop_own(outgoing);
        zf_respond_text(out, 500, "cannot build the outgoing request");
        goto done;
    }
    if (!wasi_http_types_method_outgoing_request_set_scheme(outgoing_ref, &scheme) ||
        !wasi_http_types_method_outgoing_request_set_authority(outgoing_ref, &authority_str) ||
        !wasi_http_types_method_outgoing_request_set_path_with_query(outgoing_ref, &target_str)) {
        wasi_http_types_outgoing_body_drop_own(outgoing_body);
        wasi_http_types_outgoing_request_drop_own(outgoing);
        zf_respond_text(out, 400, "invalid tenant, function or path");
        goto done;
    }
    call(out, outgoing, outgoing_body, &inbody);

done:
    zf_buf_free(&inbody);
    zf_buf_free(&target);
    zf_buf_free(&authority);
    zf_buf_free(&path);
}
