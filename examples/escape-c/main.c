/*
 * escape-c: tries to reach outside the sandbox through libc and reports
 * what happened as JSON, for example
 *
 *   {"etc_passwd":"denied","dotdot_passwd":"denied","root_dir":"denied",
 *    "cwd":"denied","write_tmp":"denied","home":"denied","path":"denied",
 *    "outgoing_http":"denied","env_count":0,
 *    "errors":{"etc_passwd":"Capabilities insufficient",...}}
 *
 * A file or directory probe reports "OPENED" if it succeeded, an
 * environment probe reports the variable's value, the outgoing HTTP probe
 * "CONNECTED (status N)" or "timeout"; "denied" means the attempt failed,
 * and "errors" says why for each failure.
 *
 * Raw sockets are not probed: this wasi-libc has no socket API, and the
 * proxy world has no wasi:sockets. The network path the proxy world does
 * have, wasi:http/outgoing-handler, is probed.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zerofn_http.h"

/* Not declared by wasi-libc's headers without _GNU_SOURCE; referencing it
 * makes wasi-libc initialise the environment. */
extern char **environ;

typedef struct {
    zf_buf_t result; /* the JSON object being answered */
    zf_buf_t errors; /* the nested "errors" object */
} report_t;

/* Appends "name":"value" to a JSON object under construction (one that
 * starts with "{" and is not yet closed). */
static void add_string(zf_buf_t *object, const char *name, const char *value) {
    if (object->len > 1) {
        zf_buf_puts(object, ",");
    }
    zf_buf_json_string(object, (const uint8_t *)name, strlen(name));
    zf_buf_puts(object, ":");
    zf_buf_json_string(object, (const uint8_t *)value, strlen(value));
}

static void denied(report_t *report, const char *field, int error) {
    add_string(&report->result, field, "denied");
    add_string(&report->errors, field, strerror(error));
}

static void probe_file(report_t *report, const char *field, const char *path, const char *mode) {
    errno = 0;
    FILE *file = fopen(path, mode);
    if (file == NULL) {
        denied(report, field, errno);
        return;
    }
    add_string(&report->result, field, "OPENED");
    fclose(file);
}

static void probe_dir(report_t *report, const char *field, const char *path) {
    errno = 0;
    DIR *dir = opendir(path);
    if (dir == NULL) {
        denied(report, field, errno);
        return;
    }
    add_string(&report->result, field, "OPENED");
    closedir(dir);
}

static void probe_env(report_t *report, const char *field, const char *name) {
    const char *value = getenv(name);
    if (value == NULL) {
        add_string(&report->result, field, "denied");
        add_string(&report->errors, field, "not set");
        return;
    }
    add_string(&report->result, field, value);
}

/* A readable name for the wasi:http error codes a refused or failed
 * outgoing request is likely to produce. */
static const char *error_code_name(const wasi_http_types_error_code_t *code) {
    switch (code->tag) {
    case WASI_HTTP_TYPES_ERROR_CODE_HTTP_REQUEST_DENIED: return "HTTP-request-denied";
    case WASI_HTTP_TYPES_ERROR_CODE_DESTINATION_IP_PROHIBITED: return "destination-IP-prohibited";
    case WASI_HTTP_TYPES_ERROR_CODE_DESTINATION_NOT_FOUND: return "destination-not-found";
    case WASI_HTTP_TYPES_ERROR_CODE_DESTINATION_UNAVAILABLE: return "destination-unavailable";
    case WASI_HTTP_TYPES_ERROR_CODE_DESTINATION_IP_UNROUTABLE: return "destination-IP-unroutable";
    case WASI_HTTP_TYPES_ERROR_CODE_CONNECTION_REFUSED: return "connection-refused";
    case WASI_HTTP_TYPES_ERROR_CODE_CONNECTION_TIMEOUT: return "connection-timeout";
    case WASI_HTTP_TYPES_ERROR_CODE_DNS_TIMEOUT: return "DNS-timeout";
    case WASI_HTTP_TYPES_ERROR_CODE_DNS_ERROR: return "DNS-error";
    case WASI_HTTP_TYPES_ERROR_CODE_INTERNAL_ERROR: return "internal-error";
    default: return "other wasi:http error-code";
    }
}

#define NS_PER_SECOND 1000000000ull

/* The one network path the proxy world offers: wasi:http/outgoing-handler.
 * Asks for the cloud metadata endpoint (the classic SSRF target) and waits
 * at most two seconds. "denied" means the host refused or the request
 * failed; "timeout" means the host let it out but nothing answered;
 * "CONNECTED" means a response came back. */
static void probe_outgoing_http(report_t *report, const char *field) {
    wasi_http_types_own_outgoing_request_t request =
        wasi_http_types_constructor_outgoing_request(wasi_http_types_constructor_fields());
    wasi_http_types_borrow_outgoing_request_t request_ref =
        wasi_http_types_borrow_outgoing_request(request);
    wasi_http_types_scheme_t scheme = {.tag = WASI_HTTP_TYPES_SCHEME_HTTP};
    proxy_string_t authority;
    proxy_string_t path;
    proxy_string_set(&authority, "169.254.169.254");
    proxy_string_set(&path, "/latest/meta-data/");
    /* These only fail for malformed values, which ours are not; a host that
     * objects anyway will refuse the request below. */
    (void)wasi_http_types_method_outgoing_request_set_scheme(request_ref, &scheme);
    (void)wasi_http_types_method_outgoing_request_set_authority(request_ref, &authority);
    (void)wasi_http_types_method_outgoing_request_set_path_with_query(request_ref, &path);

    wasi_http_types_own_request_options_t options = wasi_http_types_constructor_request_options();
    wasi_http_types_duration_t connect_timeout = NS_PER_SECOND;
    (void)wasi_http_types_method_request_options_set_connect_timeout(
        wasi_http_types_borrow_request_options(options), &connect_timeout);

    /* handle() takes ownership of the request and the options. */
    wasi_http_outgoing_handler_own_future_incoming_response_t future;
    wasi_http_types_error_code_t code;
    if (!wasi_http_outgoing_handler_handle(request, &options, &future, &code)) {
        add_string(&report->result, field, "denied");
        add_string(&report->errors, field, error_code_name(&code));
        wasi_http_types_error_code_free(&code);
        return;
    }
    wasi_http_types_borrow_future_incoming_response_t future_ref =
        wasi_http_types_borrow_future_incoming_response(future);

    /* Wait for whichever comes first: the response or the deadline. */
    wasi_io_poll_own_pollable_t ready =
        wasi_http_types_method_future_incoming_response_subscribe(future_ref);
    wasi_io_poll_own_pollable_t deadline =
        wasi_clocks_monotonic_clock_subscribe_duration(2 * NS_PER_SECOND);
    wasi_io_poll_borrow_pollable_t waiting[] = {
        wasi_io_poll_borrow_pollable(ready),
        wasi_io_poll_borrow_pollable(deadline),
    };
    wasi_io_poll_list_borrow_pollable_t waiting_list = {waiting, 2};
    proxy_list_u32_t woken;
    wasi_io_poll_poll(&waiting_list, &woken);
    proxy_list_u32_free(&woken);
    /* `ready` is a child of the future: drop it before the future. */
    wasi_io_poll_pollable_drop_own(deadline);
    wasi_io_poll_pollable_drop_own(ready);

    wasi_http_types_result_result_own_incoming_response_error_code_void_t outcome;
    if (!wasi_http_types_method_future_incoming_response_get(future_ref, &outcome)) {
        add_string(&report->result, field, "timeout");
        add_string(&report->errors, field, "no answer within 2 s");
    } else if (outcome.is_err) {
        /* Only happens if the result was already taken, which it was not. */
        add_string(&report->result, field, "denied");
        add_string(&report->errors, field, "response already consumed");
    } else if (outcome.val.ok.is_err) {
        add_string(&report->result, field, "denied");
        add_string(&report->errors, field, error_code_name(&outcome.val.ok.val.err));
        wasi_http_types_error_code_free(&outcome.val.ok.val.err);
    } else {
        wasi_http_types_own_incoming_response_t response = outcome.val.ok.val.ok;
        char status[40];
        snprintf(status, sizeof status, "CONNECTED (status %u)",
                 (unsigned)wasi_http_types_method_incoming_response_status(
                     wasi_http_types_borrow_incoming_response(response)));
        add_string(&report->result, field, status);
        wasi_http_types_incoming_response_drop_own(response);
    }
    wasi_http_types_future_incoming_response_drop_own(future);
}

void exports_wasi_http_incoming_handler_handle(zf_request_t request,
                                               zf_response_out_t response_out) {
    wasi_http_types_incoming_request_drop_own(request);

    report_t report = {{0}, {0}};
    zf_buf_puts(&report.result, "{");
    zf_buf_puts(&report.errors, "{");

    probe_file(&report, "etc_passwd", "/etc/passwd", "r");
    probe_file(&report, "dotdot_passwd", "../../../../etc/passwd", "r");
    probe_dir(&report, "root_dir", "/");
    probe_dir(&report, "cwd", ".");
    probe_file(&report, "write_tmp", "/tmp/zerofn-escape-c", "w");
    probe_env(&report, "home", "HOME");
    probe_env(&report, "path", "PATH");
    probe_outgoing_http(&report, "outgoing_http");

    size_t env_count = 0;
    for (char **entry = environ; entry != NULL && *entry != NULL; entry++) {
        env_count++;
    }
    char count[32];
    snprintf(count, sizeof count, ",\"env_count\":%zu", env_count);
    zf_buf_puts(&report.result, count);

    zf_buf_puts(&report.errors, "}");
    zf_buf_puts(&report.result, ",\"errors\":");
    zf_buf_append(&report.result, report.errors.data, report.errors.len);
    zf_buf_puts(&report.result, "}");

    if (report.result.failed || report.errors.failed) {
        zf_respond_error(response_out, "out of memory");
    } else {
        zf_respond(response_out, 200, "application/json", report.result.data, report.result.len);
    }
    zf_buf_free(&report.errors);
    zf_buf_free(&report.result);
}
