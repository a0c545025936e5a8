/*
 * kv-c: key-value storage and configuration through wasi:keyvalue and
 * wasi:config. Every call is decided by the platform; a refused one fails
 * here with an error whose message starts with "access denied".
 *
 *   GET    /kv-c/<bucket>/<key>   200 with the value, 404 if absent
 *   PUT    /kv-c/<bucket>/<key>   stores the request body, 204
 *   DELETE /kv-c/<bucket>/<key>   204
 *   POST   /kv-c/<bucket>/<key>   increments the key by 1, 200 with the
 *                                 new value as decimal text
 *   GET    /kv-c/<bucket>         200 with the keys, one per line
 *   GET    /kv-c/_config/<key>    200 with the configuration value, 404 if
 *                                 absent
 *
 * An error whose message starts with "access denied" answers 403 with the
 * message as the body; any other error 500 with the message. Paths are
 * used as they come (no percent-decoding); the query is ignored.
 */
#include "zerofn_http.h"

#include <stdio.h>
#include <string.h>

#define CONFIG_BUCKET "_config"
#define DENIED "access denied"

/* An error as text; `text` is owned by the caller (zf_buf_free). */
static void kv_error_text(const wasi_keyvalue_store_error_t *err, zf_buf_t *text) {
    switch (err->tag) {
    case WASI_KEYVALUE_STORE_ERROR_NO_SUCH_STORE:
        zf_buf_puts(text, "no such store");
        break;
    case WASI_KEYVALUE_STORE_ERROR_ACCESS_DENIED:
        zf_buf_puts(text, DENIED);
        break;
    default:
        zf_buf_append(text, err->val.other.ptr, err->val.other.len);
        break;
    }
}

/* Answers 403 for a denial, 500 for anything else, with `message`. */
static void respond_failure(zf_response_out_t out, const zf_buf_t *message) {
    size_t n = strlen(DENIED);
    bool denied = message->len >= n && memcmp(message->data, DENIED, n) == 0;
    zf_respond(out, denied ? 403 : 500, "text/plain", message->data, message->len);
}

static void respond_kv_error(zf_response_out_t out, wasi_keyvalue_store_error_t *err) {
    zf_buf_t text = {0};
    kv_error_text(err, &text);
    wasi_keyvalue_store_error_free(err);
    respond_failure(out, &text);
    zf_buf_free(&text);
}

static void respond_text(zf_response_out_t out, uint16_t status, const char *text) {
    zf_respond(out, status, "text/plain", (const uint8_t *)text, strlen(text));
}

static void handle_config(zf_response_out_t out, const uint8_t *key, size_t key_len) {
    proxy_string_t name = {(uint8_t *)key, key_len};
    proxy_option_string_t value;
    wasi_config_store_error_t err;
    if (!wasi_config_store_get(&name, &value, &err)) {
        zf_buf_t text = {0};
        proxy_string_t *message =
            err.tag == WASI_CONFIG_STORE_ERROR_UPSTREAM ? &err.val.upstream : &err.val.io;
        zf_buf_append(&text, message->ptr, message->len);
        wasi_config_store_error_free(&err);
        respond_failure(out, &text);
        zf_buf_free(&text);
        return;
    }
    if (!value.is_some) {
        respond_text(out, 404, "no such configuration value");
        return;
    }
    zf_respond(out, 200, "text/plain", value.val.ptr, value.val.len);
    proxy_option_string_free(&value);
}

static void handle_list(zf_response_out_t out, wasi_keyvalue_store_borrow_bucket_t bucket) {
    zf_buf_t body = {0};
    uint64_t cursor = 0;
    bool has_cursor = false;
    for (;;) {
        wasi_keyvalue_store_key_response_t page;
        wasi_keyvalue_store_error_t err;
        if (!wasi_keyvalue_store_method_bucket_list_keys(bucket, has_cursor ? &cursor : NULL,
                                                         &page, &err)) {
            zf_buf_free(&body);
            respond_kv_error(out, &err);
            return;
        }
        for (size_t i = 0; i < page.keys.len; i++) {
            zf_buf_append(&body, page.keys.ptr[i].ptr, page.keys.ptr[i].len);
            zf_buf_puts(&body, "\n");
        }
        has_cursor = page.cursor.is_some;
        cursor = page.cursor.val;
        wasi_keyvalue_store_key_response_free(&page);
        if (!has_cursor) {
            break;
        }
    }
    if (body.failed) {
        zf_respond_error(out, "out of memory");
    } else {
        zf_respond(out, 200, "text/plain", body.data, body.len);
    }
    zf_buf_free(&body);
}

static void handle_key(zf_response_out_t out, wasi_http_types_borrow_incoming_request_t request,
                       const zf_buf_t *method, wasi_keyvalue_store_borrow_bucket_t bucket,
                       const uint8_t *key_bytes, size_t key_len) {
    proxy_string_t key = {(uint8_t *)key_bytes, key_len};
    wasi_keyvalue_store_error_t err;
    const char *m = (const char *)method->data;
    size_t mlen = method->len;
#define IS(name) (mlen == strlen(name) && memcmp(m, name, mlen) == 0)
    if (IS("GET")) {
        proxy_option_list_u8_t value;
        if (!wasi_keyvalue_store_method_bucket_get(bucket, &key, &value, &err)) {
            respond_kv_error(out, &err);
        } else if (!value.is_some) {
            respond_text(out, 404, "no such key");
        } else {
            zf_respond(out, 200, "application/octet-stream", value.val.ptr, value.val.len);
            proxy_option_list_u8_free(&value);
        }
    } else if (IS("PUT")) {
        zf_buf_t body = {0};
        if (!zf_read_body(request, &body)) {
            zf_buf_free(&body);
            respond_text(out, 400, "cannot read the request body");
            return;
        }
        proxy_list_u8_t value = {body.data, body.len};
        if (!wasi_keyvalue_store_method_bucket_set(bucket, &key, &value, &err)) {
            respond_kv_error(out, &err);
        } else {
            zf_respond(out, 204, "text/plain", NULL, 0);
        }
        zf_buf_free(&body);
    } else if (IS("DELETE")) {
        if (!wasi_keyvalue_store_method_bucket_delete(bucket, &key, &err)) {
            respond_kv_error(out, &err);
        } else {
            zf_respond(out, 204, "text/plain", NULL, 0);
        }
    } else if (IS("POST")) {
        uint64_t value;
        if (!wasi_keyvalue_atomics_increment(bucket, &key, 1, &value, &err)) {
            respond_kv_error(out, &err);
        } else {
            char text[24];
            int n = snprintf(text, sizeof text, "%llu", (unsigned long long)value);
            zf_respond(out, 200, "text/plain", (const uint8_t *)text, n > 0 ? (size_t)n : 0);
        }
    } else {
        respond_text(out, 405, "use GET, PUT, DELETE or POST");
    }
#undef IS
}

void exports_wasi_http_incoming_handler_handle(zf_request_t request, zf_response_out_t out) {
    wasi_http_types_borrow_incoming_request_t request_ref =
        wasi_http_types_borrow_incoming_request(request);
    zf_buf_t method = {0};
    zf_buf_t path = {0};
    zf_method_name(request_ref, &method);
    zf_path_with_query(request_ref, &path);

    /* "/<route>/<bucket>[/<key>]", query dropped. The first segment is
     * whatever route the function is deployed on. */
    size_t len = path.len;
    const uint8_t *query = path.data ? memchr(path.data, '?', path.len) : NULL;
    if (query != NULL) {
        len = (size_t)(query - path.data);
    }
    size_t prefix_len = 0;
    if (!path.failed && len > 1 && path.data[0] == '/') {
        const uint8_t *second = memchr(path.data + 1, '/', len - 1);
        prefix_len = second ? (size_t)(second - path.data) + 1 : 0;
    }
    if (method.failed || path.failed || prefix_len == 0 || len <= prefix_len) {
        respond_text(out, 404, "use /kv-c/<bucket>/<key>, /kv-c/<bucket> or /kv-c/_config/<key>");
        goto done;
    }
    const uint8_t *rest = path.data + prefix_len;
    size_t rest_len = len - prefix_len;
    const uint8_t *slash = memchr(rest, '/', rest_len);
    size_t bucket_len = slash ? (size_t)(slash - rest) : rest_len;
    const uint8_t *key = slash ? slash + 1 : NULL;
    size_t key_len = slash ? rest_len - bucket_len - 1 : 0;
    bool is_get = method.len == 3 && memcmp(method.data, "GET", 3) == 0;

    if (bucket_len == strlen(CONFIG_BUCKET) && memcmp(rest, CONFIG_BUCKET, bucket_len) == 0) {
        if (!is_get || key_len == 0) {
            respond_text(out, 404, "use GET /kv-c/_config/<key>");
        } else {
            handle_config(out, key, key_len);
        }
        goto done;
    }
    if (key_len == 0 && !is_get) {
        respond_text(out, 405, "a bucket without a key only answers GET");
        goto done;
    }

    proxy_string_t name = {(uint8_t *)rest, bucket_len};
    wasi_keyvalue_store_own_bucket_t bucket;
    wasi_keyvalue_store_error_t err;
    if (!wasi_keyvalue_store_open(&name, &bucket, &err)) {
        respond_kv_error(out, &err);
        goto done;
    }
    wasi_keyvalue_store_borrow_bucket_t bucket_ref = wasi_keyvalue_store_borrow_bucket(bucket);
    if (key_len == 0) {
        handle_list(out, bucket_ref);
    } else {
        handle_key(out, request_ref, &method, bucket_ref, key, key_len);
    }
    wasi_keyvalue_store_bucket_drop_own(bucket);

done:
    /* The body, if read, is already dropped; the request goes last. */
    wasi_http_types_incoming_request_drop_own(request);
    zf_buf_free(&path);
    zf_buf_free(&method);
}
