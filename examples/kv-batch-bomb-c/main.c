/*
 * kv-batch-bomb-c (hostile): makes the host assemble a `wasi:keyvalue/batch`
 * answer far larger than the guest's own memory.
 *
 *   GET /kv-batch-bomb/repeat    stores one 1 MiB value under `big` and
 *                                asks `get-many` for `big` 1,000 times
 *   GET /kv-batch-bomb/distinct  stores 20 values of 1 MiB under distinct
 *                                keys and asks `get-many` for all of them
 *
 * Answers 200 `error: <message>` when `get-many` fails with an error value,
 * 200 `got <n> values, <bytes> bytes` when it succeeds, and 500 with the
 * message when storing fails. Uses bucket `blob`.
 */
#include "zerofn_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VALUE_BYTES (1024 * 1024)
#define REPEATS 1000
#define DISTINCT 20
#define KEY_MAX 16

static void respond_text(zf_response_out_t out, uint16_t status, const char *prefix,
                         const uint8_t *message, size_t len) {
    zf_buf_t text = {0};
    zf_buf_puts(&text, prefix);
    zf_buf_append(&text, message, len);
    zf_respond(out, status, "text/plain", text.data, text.len);
    zf_buf_free(&text);
}

static void respond_error(zf_response_out_t out, uint16_t status, const char *prefix,
                          wasi_keyvalue_store_error_t *err) {
    if (err->tag == WASI_KEYVALUE_STORE_ERROR_OTHER) {
        respond_text(out, status, prefix, err->val.other.ptr, err->val.other.len);
    } else {
        respond_text(out, status, prefix, (const uint8_t *)"error", 5);
    }
    wasi_keyvalue_store_error_free(err);
}

void exports_wasi_http_incoming_handler_handle(zf_request_t request,
                                               zf_response_out_t response_out) {
    zf_buf_t path = {0};
    zf_path_with_query(wasi_http_types_borrow_incoming_request(request), &path);
    bool distinct = path.len >= 8 && memcmp(path.data + path.len - 8, "distinct", 8) == 0;
    zf_buf_free(&path);
    wasi_http_types_incoming_request_drop_own(request);

    static const char bucket_name[] = "blob";
    proxy_string_t name = {(uint8_t *)bucket_name, strlen(bucket_name)};
    wasi_keyvalue_store_own_bucket_t bucket;
    wasi_keyvalue_store_error_t err;
    if (!wasi_keyvalue_store_open(&name, &bucket, &err)) {
        respond_error(response_out, 500, "open: ", &err);
        return;
    }
    wasi_keyvalue_store_borrow_bucket_t b = wasi_keyvalue_store_borrow_bucket(bucket);

    static char key_text[DISTINCT][KEY_MAX];
    size_t stored = distinct ? DISTINCT : 1;
    uint8_t *value = malloc(VALUE_BYTES);
    if (value == NULL) {
        zf_respond_error(response_out, "out of memory");
        return;
    }
    memset(value, 'v', VALUE_BYTES);
    for (size_t i = 0; i < stored; i++) {
        snprintf(key_text[i], KEY_MAX, distinct ? "big-%zu" : "big", i);
        proxy_string_t key = {(uint8_t *)key_text[i], strlen(key_text[i])};
        proxy_list_u8_t v = {value, VALUE_BYTES};
        if (!wasi_keyvalue_store_method_bucket_set(b, &key, &v, &err)) {
            free(value);
            respond_error(response_out, 500, "set: ", &err);
            return;
        }
    }
    free(value);

    size_t count = distinct ? DISTINCT : REPEATS;
    proxy_string_t *keys = calloc(count, sizeof *keys);
    if (keys == NULL) {
        zf_respond_error(response_out, "out of memory");
        return;
    }
    for (size_t i = 0; i < count; i++) {
        const char *k = key_text[distinct ? i : 0];
        keys[i].ptr = (uint8_t *)k;
        keys[i].len = strlen(k);
    }
    proxy_list_string_t key_list = {keys, count};
    proxy_list_option_tuple2_string_list_u8_t found;
    if (!wasi_keyvalue_batch_get_many(b, &key_list, &found, &err)) {
        free(keys);
        respond_error(response_out, 200, "error: ", &err);
        return;
    }
    size_t values = 0, bytes = 0;
    for (size_t i = 0; i < found.len; i++) {
        if (found.ptr[i].is_some) {
            values++;
            bytes += found.ptr[i].val.f1.len;
        }
    }
    proxy_list_option_tuple2_string_list_u8_free(&found);
    free(keys);
    char text[64];
    int n = snprintf(text, sizeof text, "got %zu values, %zu bytes", values, bytes);
    zf_respond(response_out, 200, "text/plain", (const uint8_t *)text, (size_t)n);
}
