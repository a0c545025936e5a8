/*
 * Small helpers shared by the C example guests (compiled into each of them
 * by tools/guest-build).
 *
 * They wrap the wit-bindgen-c bindings for `wasi:http/proxy` (proxy.h,
 * generated at build time) so each guest's handler only says *what* to
 * answer: read the request body, send a complete response, build JSON.
 *
 * Ownership rules followed throughout: every `own` handle we receive or
 * create is either passed on to a function that takes ownership or dropped
 * with the matching `*_drop_own`; child resources (streams) are dropped
 * before their parents (bodies), as wasi:http requires.
 */
#ifndef ZEROFN_HTTP_H
#define ZEROFN_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy.h"

/* Shorter names for the two handle types every handler receives. */
typedef exports_wasi_http_incoming_handler_own_incoming_request_t zf_request_t;
typedef exports_wasi_http_incoming_handler_own_response_outparam_t zf_response_out_t;

/* A growable byte buffer. Allocation failure is sticky: after it, appends
 * are ignored and `failed` stays true, so callers check once at the end. */
typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
    bool failed;
} zf_buf_t;

void zf_buf_append(zf_buf_t *buf, const void *bytes, size_t n);
void zf_buf_puts(zf_buf_t *buf, const char *text);
/* Appends `bytes` as a JSON string literal (with the quotes). Quotes,
 * backslashes and control characters are escaped; byte sequences that are
 * not valid UTF-8 become U+FFFD, so the output is always valid JSON. */
void zf_buf_json_string(zf_buf_t *buf, const uint8_t *bytes, size_t n);
void zf_buf_free(zf_buf_t *buf);

/* Reads the request's whole body into `body` (which the caller frees with
 * zf_buf_free). Borrows the request; returns false if the body could not be
 * read completely. */
bool zf_read_body(wasi_http_types_borrow_incoming_request_t request, zf_buf_t *body);

/* The request method as text ("GET", "POST", or the raw extension method),
 * copied into `out`. */
void zf_method_name(wasi_http_types_borrow_incoming_request_t request, zf_buf_t *out);

/* The request path with query ("/echo?x=1"), copied into `out`; empty if the
 * request has none. */
void zf_path_with_query(wasi_http_types_borrow_incoming_request_t request, zf_buf_t *out);

/* Sends a complete response with one `content-type` header and `body`,
 * consuming `response_out`. Returns false if anything failed; the host then
 * sees either an error response or a truncated body. */
bool zf_respond(zf_response_out_t response_out, uint16_t status, const char *content_type,
                const uint8_t *body, size_t body_len);

/* Answers with a wasi:http `internal-error` instead of a response (the host
 * turns it into a 5xx), consuming `response_out`. */
void zf_respond_error(zf_response_out_t response_out, const char *message);

#endif /* ZEROFN_HTTP_H */
