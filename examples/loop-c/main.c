/*
 * loop-c: spins forever without ever answering. The host must stop it with
 * its CPU deadline (wasmtime epoch interruption); nothing else will.
 */
#include "zerofn_http.h"

/* Volatile so the compiler cannot prove the loop does nothing. (A loop with
 * a constant condition may not be assumed to terminate in C11 anyway, but
 * this keeps it a genuine busy loop rather than an idle one.) */
static volatile uint64_t spins;

void exports_wasi_http_incoming_handler_handle(zf_request_t request,
                                               zf_response_out_t response_out) {
    /* Never used: the handler never gets as far as answering. */
    (void)request;
    (void)response_out;
    for (;;) {
        spins++;
    }
}
