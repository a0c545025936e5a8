/* hello-layered-c: answers every request with 200, text/plain, and the
 * greeting of the `zerofn:greet/greeter` layer for "zerofn". The function
 * only imports the interface; the layer pinned in zerofn.toml provides it
 * when the platform composes the two at admission. */
#include "zerofn_http.h"

void exports_wasi_http_incoming_handler_handle(zf_request_t request,
                                               zf_response_out_t response_out) {
    proxy_string_t name;
    proxy_string_t greeting;

    wasi_http_types_incoming_request_drop_own(request);
    proxy_string_set(&name, "zerofn");
    zerofn_greet_greeter_greet(&name, &greeting);
    zf_respond(response_out, 200, "text/plain", greeting.ptr, greeting.len);
    proxy_string_free(&greeting);
}
