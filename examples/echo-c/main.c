/*
 * echo-c: answers 200 with a JSON description of the request:
 *
 *   {"method":"POST","path":"/echo?x=1","body":"<request body>",
 *    "headers":[["name","value"],...]}
 *
 * `headers` lists every request header the guest received, in order, so
 * tests can see what the platform let through and what it set.
 *
 * The body is embedded as a JSON string. Arbitrary bytes are fine: quotes,
 * backslashes and control characters are escaped, and bytes that are not
 * UTF-8 become U+FFFD, so the response is always valid JSON.
 */
#include "zerofn_http.h"

void exports_wasi_http_incoming_handler_handle(zf_request_t request,
                                               zf_response_out_t response_out) {
    wasi_http_types_borrow_incoming_request_t request_ref =
        wasi_http_types_borrow_incoming_request(request);

    zf_buf_t method = {0};
    zf_buf_t path = {0};
    zf_buf_t body = {0};
    zf_method_name(request_ref, &method);
    zf_path_with_query(request_ref, &path);

    /* Headers, as [["name","value"],...]; read before the body consumes
     * the request. */
    zf_buf_t headers = {0};
    wasi_http_types_own_headers_t fields =
        wasi_http_types_method_incoming_request_headers(request_ref);
    wasi_http_types_list_tuple2_field_name_field_value_t entries;
    wasi_http_types_method_fields_entries(wasi_http_types_borrow_fields(fields), &entries);
    zf_buf_puts(&headers, "[");
    for (size_t i = 0; i < entries.len; i++) {
        if (i > 0) {
            zf_buf_puts(&headers, ",");
        }
        zf_buf_puts(&headers, "[");
        zf_buf_json_string(&headers, entries.ptr[i].f0.ptr, entries.ptr[i].f0.len);
        zf_buf_puts(&headers, ",");
        zf_buf_json_string(&headers, entries.ptr[i].f1.ptr, entries.ptr[i].f1.len);
        zf_buf_puts(&headers, "]");
    }
    zf_buf_puts(&headers, "]");
    wasi_http_types_list_tuple2_field_name_field_value_free(&entries);
    wasi_http_types_fields_drop_own(fields);

    bool body_ok = zf_read_body(request_ref, &body);
    /* The body (a child of the request) is already dropped. */
    wasi_http_types_incoming_request_drop_own(request);

    zf_buf_t json = {0};
    zf_buf_puts(&json, "{\"method\":");
    zf_buf_json_string(&json, method.data, method.len);
    zf_buf_puts(&json, ",\"path\":");
    zf_buf_json_string(&json, path.data, path.len);
    zf_buf_puts(&json, ",\"body\":");
    zf_buf_json_string(&json, body.data, body.len);
    zf_buf_puts(&json, ",\"headers\":");
    zf_buf_append(&json, headers.data, headers.len);
    zf_buf_puts(&json, "}");

    if (!body_ok) {
        zf_respond_error(response_out, "cannot read the request body");
    } else if (method.failed || path.failed || headers.failed || json.failed) {
        zf_respond_error(response_out, "out of memory");
    } else {
        zf_respond(response_out, 200, "application/json", json.data, json.len);
    }

    zf_buf_free(&json);
    zf_buf_free(&headers);
    zf_buf_free(&body);
    zf_buf_free(&path);
    zf_buf_free(&method);
}
