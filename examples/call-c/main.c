/*
 * call-c: calls another function through wasi:http/outgoing-handler and
 * relays its answer.
 *
 *   GET /call-c/<tenant>/<fn>/<rest...>
 *
 * sends `GET http://<fn>.<tenant>.fn.internal/<rest...>` and answers with
 * the callee's status and body. `/call-c/-/<service>/<rest...>` reaches a
 * platform service instead, such as `identity` (`http://identity.fn.internal/
 * jwt-svid?audience=<aud>`, a JWT-SVID for this function). When the outgoing request fails with an
 * error code, it answers 502 with the code's WIT name as the body (for
 * example "HTTP-request-denied").
 */
#include "zerofn_outbound.h"

#include <string.h>

#define SUFFIX ".fn.internal"

void exports_wasi_http_incoming_handler_handle(zf_request_t request, zf_response_out_t out) {
    wasi_http_types_borrow_incoming_request_t request_ref =
        wasi_http_types_borrow_incoming_request(request);
    zf_buf_t path = {0};
    zf_path_with_query(request_ref, &path);
    wasi_http_types_incoming_request_drop_own(request);

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
        zf_respond_text(out, 404, "use /call-c/<tenant>/<fn>/<path>");
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

    wasi_http_types_own_outgoing_request_t outgoing =
        wasi_http_types_constructor_outgoing_request(wasi_http_types_constructor_fields());
    wasi_http_types_borrow_outgoing_request_t outgoing_ref =
        wasi_http_types_borrow_outgoing_request(outgoing);
    wasi_http_types_scheme_t scheme = {.tag = WASI_HTTP_TYPES_SCHEME_HTTP};
    proxy_string_t authority_str = {authority.data, authority.len};
    proxy_string_t target_str = {target.data, target.len};
    if (!wasi_http_types_method_outgoing_request_set_scheme(outgoing_ref, &scheme) ||
        !wasi_http_types_method_outgoing_request_set_authority(outgoing_ref, &authority_str) ||
        !wasi_http_types_method_outgoing_request_set_path_with_query(outgoing_ref, &target_str)) {
        wasi_http_types_outgoing_request_drop_own(outgoing);
        zf_respond_text(out, 400, "invalid tenant, function or path");
        goto done;
    }
    zf_send_and_relay(out, outgoing);

done:
    zf_buf_free(&target);
    zf_buf_free(&authority);
    zf_buf_free(&path);
}
