/*
 * escape-c: tries to reach outside the sandbox through libc and reports
 * what happened as JSON, for example
 *
 *   {"etc_passwd":"denied","dotdot_passwd":"denied","root_dir":"denied",
 *    "cwd":"denied","write_tmp":"denied","home":"denied","path":"denied",
 *    "env_count":0,"errors":{"etc_passwd":"No such file or directory",...}}
 *
 * A file or directory probe reports "OPENED" if it succeeded, an
 * environment probe reports the variable's value; "denied" means the
 * attempt failed, and "errors" holds the errno text for each failure.
 *
 * (Sockets are not probed: wasi-libc has no socket API. escape-py covers
 * them.)
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
