/* hello-c: answers every request with 200, text/plain, "hello from zerofn\n". */
#include "zerofn_http.h"

void exports_wasi_http_incoming_handler_handle(zf_request_t request,
                                               zf_response_out_t response_out) {
    static const char greeting[] = "hello from zerofn\n";

    /* Nothing in the request matters here; release it straight away. */
    wasi_http_types_incoming_request_drop_own(request);
    zf_respond(response_out, 200, "text/plain", (const uint8_t *)greeting, sizeof greeting - 1);
}
