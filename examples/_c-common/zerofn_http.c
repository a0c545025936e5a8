/* Helpers shared by the C example guests; see zerofn_http.h. */
#include "zerofn_http.h"

#include <stdlib.h>
#include <string.h>

/* wasi:io output streams accept at most 4096 bytes per
 * blocking-write-and-flush call. */
#define ZF_MAX_WRITE 4096

/* How much to ask for per blocking-read of the request body. */
#define ZF_READ_CHUNK 16384

/* ---------------------------------------------------------------- buffers */

void zf_buf_append(zf_buf_t *buf, const void *bytes, size_t n) {
    if (buf->failed || n == 0) {
        return;
    }
    if (n > SIZE_MAX - buf->len) {
        buf->failed = true;
        return;
    }
    size_t needed = buf->len + n;
    if (needed > buf->cap) {
        /* Grow geometrically so appending byte by byte stays linear. */
        size_t cap = buf->cap ? buf->cap : 256;
        while (cap < needed) {
            cap = cap > SIZE_MAX / 2 ? needed : cap * 2;
        }
        uint8_t *grown = realloc(buf->data, cap);
        if (grown == NULL) {
            buf->failed = true;
            return;
        }
        buf->data = grown;
        buf->cap = cap;
    }
    memcpy(buf->data + buf->len, bytes, n);
    buf->len = needed;
}

void zf_buf_puts(zf_buf_t *buf, const char *text) {
    zf_buf_append(buf, text, strlen(text));
}

void zf_buf_free(zf_buf_t *buf) {
    free(buf->data);
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
    buf->failed = false;
}

/* Examines the UTF-8 sequence starting at `s` (`available` >= 1 bytes).
 *
 * Returns its length (1 to 4) if it is well-formed per Unicode table 3-7:
 * no overlong forms, no UTF-16 surrogates, nothing above U+10FFFF.
 * Otherwise returns 0 and sets *bad_len to the length of the "maximal
 * subpart" (at least 1): the bytes that get replaced by one U+FFFD. That is
 * the Unicode-recommended practice, and also what Python's
 * bytes.decode(errors="replace") does, so echo-c and echo-py agree. */
static size_t utf8_sequence_length(const uint8_t *s, size_t available, size_t *bad_len) {
    uint8_t lead = s[0];
    size_t len;
    /* Range allowed for the second byte; later bytes are always 80..BF. */
    uint8_t second_min = 0x80;
    uint8_t second_max = 0xBF;
    if (lead < 0x80) {
        return 1;
    } else if (lead >= 0xC2 && lead <= 0xDF) {
        len = 2;
    } else if (lead == 0xE0) {
        len = 3;
        second_min = 0xA0; /* below: overlong */
    } else if (lead >= 0xE1 && lead <= 0xEF) {
        len = 3;
        if (lead == 0xED) {
            second_max = 0x9F; /* above: surrogates */
        }
    } else if (lead == 0xF0) {
        len = 4;
        second_min = 0x90; /* below: overlong */
    } else if (lead >= 0xF1 && lead <= 0xF3) {
        len = 4;
    } else if (lead == 0xF4) {
        len = 4;
        second_max = 0x8F; /* above: beyond U+10FFFF */
    } else {
        /* A stray continuation byte, or C0, C1, F5..FF (never valid). */
        *bad_len = 1;
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        uint8_t min = i == 1 ? second_min : 0x80;
        uint8_t max = i == 1 ? second_max : 0xBF;
        if (i >= available || s[i] < min || s[i] > max) {
            *bad_len = i;
            return 0;
        }
    }
    return len;
}

void zf_buf_json_string(zf_buf_t *buf, const uint8_t *bytes, size_t n) {
    static const char hex[] = "0123456789abcdef";
    zf_buf_puts(buf, "\"");
    size_t i = 0;
    while (i < n) {
        uint8_t c = bytes[i];
        if (c == '"') {
            zf_buf_puts(buf, "\\\"");
        } else if (c == '\\') {
            zf_buf_puts(buf, "\\\\");
        } else if (c < 0x20) {
            /* JSON forbids raw control characters inside strings. */
            switch (c) {
            case '\b': zf_buf_puts(buf, "\\b"); break;
            case '\f': zf_buf_puts(buf, "\\f"); break;
            case '\n': zf_buf_puts(buf, "\\n"); break;
            case '\r': zf_buf_puts(buf, "\\r"); break;
            case '\t': zf_buf_puts(buf, "\\t"); break;
            default: {
                char escaped[] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xF]};
                zf_buf_append(buf, escaped, sizeof escaped);
            }
            }
        } else if (c < 0x80) {
            zf_buf_append(buf, &c, 1);
        } else {
            size_t bad_len = 0;
            size_t len = utf8_sequence_length(bytes + i, n - i, &bad_len);
            if (len == 0) {
                /* Not UTF-8: one replacement character, then resynchronise. */
                zf_buf_puts(buf, "\\ufffd");
                i += bad_len;
            } else {
                zf_buf_append(buf, bytes + i, len);
                i += len;
            }
            continue;
        }
        i++;
    }
    zf_buf_puts(buf, "\"");
}

/* ---------------------------------------------------------------- requests */

/* Releases the error resource a failed stream operation may carry. */
static void drop_stream_error(wasi_io_streams_stream_error_t *err) {
    if (err->tag == WASI_IO_STREAMS_STREAM_ERROR_LAST_OPERATION_FAILED) {
        wasi_io_error_error_drop_own(err->val.last_operation_failed);
    }
}

bool zf_read_body(wasi_http_types_borrow_incoming_request_t request, zf_buf_t *body) {
    /* consume() hands out the body exactly once. */
    wasi_http_types_own_incoming_body_t incoming;
    if (!wasi_http_types_method_incoming_request_consume(request, &incoming)) {
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
                wasi_io_streams_borrow_input_stream(stream), ZF_READ_CHUNK, &chunk, &err)) {
            /* `closed` is the normal end of the body; anything else means
             * the client went away or the host gave up mid-body. */
            ok = err.tag == WASI_IO_STREAMS_STREAM_ERROR_CLOSED;
            drop_stream_error(&err);
            break;
        }
        zf_buf_append(body, chunk.ptr, chunk.len);
        proxy_list_u8_free(&chunk);
    }

    /* The stream is a child of the body: drop it first. Finishing the body
     * yields a future for the trailers, which we do not need. */
    wasi_io_streams_input_stream_drop_own(stream);
    wasi_http_types_future_trailers_drop_own(wasi_http_types_static_incoming_body_finish(incoming));
    return ok && !body->failed;
}

void zf_method_name(wasi_http_types_borrow_incoming_request_t request, zf_buf_t *out) {
    /* Indexed by the WASI_HTTP_TYPES_METHOD_* tags. */
    static const char *const names[] = {
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    };
    wasi_http_types_method_t method;
    wasi_http_types_method_incoming_request_method(request, &method);
    if (method.tag == WASI_HTTP_TYPES_METHOD_OTHER) {
        zf_buf_append(out, method.val.other.ptr, method.val.other.len);
    } else if (method.tag < sizeof names / sizeof names[0]) {
        zf_buf_puts(out, names[method.tag]);
    }
    wasi_http_types_method_free(&method);
}

void zf_path_with_query(wasi_http_types_borrow_incoming_request_t request, zf_buf_t *out) {
    proxy_string_t path;
    if (wasi_http_types_method_incoming_request_path_with_query(request, &path)) {
        zf_buf_append(out, path.ptr, path.len);
        proxy_string_free(&path);
    }
}

/* --------------------------------------------------------------- responses */

void zf_respond_error(zf_response_out_t response_out, const char *message) {
    wasi_http_types_result_own_outgoing_response_error_code_t result;
    result.is_err = true;
    result.val.err.tag = WASI_HTTP_TYPES_ERROR_CODE_INTERNAL_ERROR;
    result.val.err.val.internal_error.is_some = true;
    /* Borrows `message`: the host copies it during the call. */
    proxy_string_set(&result.val.err.val.internal_error.val, message);
    wasi_http_types_static_response_outparam_set(response_out, &result);
}

/* Writes all of `data`, in pieces the stream accepts. */
static bool write_all(wasi_http_types_own_output_stream_t stream, const uint8_t *data,
                      size_t len) {
    while (len > 0) {
        size_t n = len < ZF_MAX_WRITE ? len : ZF_MAX_WRITE;
        /* The bindings take a non-const list but only read from it. */
        proxy_list_u8_t piece = {(uint8_t *)data, n};
        wasi_io_streams_stream_error_t err;
        if (!wasi_io_streams_method_output_stream_blocking_write_and_flush(
                wasi_io_streams_borrow_output_stream(stream), &piece, &err)) {
            drop_stream_error(&err);
            return false;
        }
        data += n;
        len -= n;
    }
    return true;
}

bool zf_respond(zf_response_out_t response_out, uint16_t status, const char *content_type,
                const uint8_t *body, size_t body_len) {
    /* Headers. The list only borrows our strings; the host copies them. */
    wasi_http_types_tuple2_field_name_field_value_t content_type_header;
    proxy_string_set(&content_type_header.f0, "content-type");
    content_type_header.f1.ptr = (uint8_t *)content_type;
    content_type_header.f1.len = strlen(content_type);
    wasi_http_types_list_tuple2_field_name_field_value_t header_list = {&content_type_header, 1};
    wasi_http_types_own_fields_t headers;
    wasi_http_types_header_error_t header_err;
    if (!wasi_http_types_static_fields_from_list(&header_list, &headers, &header_err)) {
        zf_respond_error(response_out, "invalid response header");
        return false;
    }

    /* The response takes ownership of the headers. */
    wasi_http_types_own_outgoing_response_t response =
        wasi_http_types_constructor_outgoing_response(headers);
    wasi_http_types_borrow_outgoing_response_t response_ref =
        wasi_http_types_borrow_outgoing_response(response);
    wasi_http_types_own_outgoing_body_t out_body;
    if (!wasi_http_types_method_outgoing_response_set_status_code(response_ref, status) ||
        !wasi_http_types_method_outgoing_response_body(response_ref, &out_body)) {
        wasi_http_types_outgoing_response_drop_own(response);
        zf_respond_error(response_out, "cannot build the response");
        return false;
    }
    wasi_http_types_own_output_stream_t stream;
    if (!wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(out_body),
                                                    &stream)) {
        wasi_http_types_outgoing_body_drop_own(out_body);
        wasi_http_types_outgoing_response_drop_own(response);
        zf_respond_error(response_out, "cannot open the response body");
        return false;
    }

    /* Hand status and headers to the host *before* writing the body: the
     * body is a bounded pipe the host only drains once it has the response,
     * so writing a large body first could block forever. */
    wasi_http_types_result_own_outgoing_response_error_code_t result;
    result.is_err = false;
    result.val.ok = response;
    wasi_http_types_static_response_outparam_set(response_out, &result);

    bool written = write_all(stream, body, body_len);
    /* The stream is a child of the body: drop it before finishing. */
    wasi_io_streams_output_stream_drop_own(stream);
    if (!written) {
        /* Dropping a body without finishing it tells the host the response
         * is incomplete, rather than passing off a truncated body as whole. */
        wasi_http_types_outgoing_body_drop_own(out_body);
        return false;
    }
    wasi_http_types_error_code_t finish_err;
    if (!wasi_http_types_static_outgoing_body_finish(out_body, NULL, &finish_err)) {
        wasi_http_types_error_code_free(&finish_err);
        return false;
    }
    return true;
}
