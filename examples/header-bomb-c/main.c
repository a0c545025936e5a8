/*
 * header-bomb-c (hostile): loops `fields.new` + `fields.append` of a
 * 120 KiB value, keeping every fields resource, so the host holds more and
 * more header bytes on its behalf while its own memory stays at one
 * buffer. Needs no permission at all.
 *
 * The host must stop it (trap the instance) once the invocation's host
 * memory budget is spent. If an append ever fails with an error value
 * instead, it answers 200 with how many rounds it got through; it never
 * answers otherwise.
 */
#include "zerofn_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VALUE_BYTES (120 * 1024)

void exports_wasi_http_incoming_handler_handle(zf_request_t request,
                                               zf_response_out_t response_out) {
    wasi_http_types_incoming_request_drop_own(request);
    static const char name[] = "x-bomb";
    uint8_t *value = malloc(VALUE_BYTES);
    if (value == NULL) {
        zf_respond_error(response_out, "out of memory");
        return;
    }
    memset(value, 'a', VALUE_BYTES);
    wasi_http_types_field_name_t header_name = {(uint8_t *)name, strlen(name)};
    wasi_http_types_field_value_t header_value = {value, VALUE_BYTES};
    unsigned long rounds = 0;
    for (;;) {
        wasi_http_types_own_fields_t fields = wasi_http_types_constructor_fields();
        wasi_http_types_header_error_t err;
        if (!wasi_http_types_method_fields_append(wasi_http_types_borrow_fields(fields),
                                                  &header_name, &header_value, &err)) {
            break;
        }
        rounds++;
    }
    char text[64];
    int n = snprintf(text, sizeof text, "append failed after %lu rounds", rounds);
    zf_respond(response_out, 200, "text/plain", (const uint8_t *)text, (size_t)n);
    free(value);
}
