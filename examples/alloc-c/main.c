/*
 * alloc-c: allocates 1 MiB chunks forever, touching every byte so the
 * memory is really committed, until memory.grow fails. Then it traps: it
 * must never answer 200. The host's memory limit is what ends it.
 */
#include <stdlib.h>
#include <string.h>

#include "zerofn_http.h"

#define CHUNK_SIZE (1024 * 1024)

/* Each chunk starts with a pointer to the previous one, and the newest is
 * published through this volatile global. The chunks therefore escape and
 * the compiler may not elide the allocations (it is allowed to remove
 * malloc calls whose results are never observed). */
static void *volatile newest_chunk;

void exports_wasi_http_incoming_handler_handle(zf_request_t request,
                                               zf_response_out_t response_out) {
    (void)request;
    (void)response_out;
    for (;;) {
        void **chunk = malloc(CHUNK_SIZE);
        if (chunk == NULL) {
            /* Linear memory could not grow any further. Trap instead of
             * answering, so the host sees a failed invocation. */
            __builtin_trap();
        }
        memset(chunk, 0xA5, CHUNK_SIZE);
        *chunk = newest_chunk;
        newest_chunk = chunk;
    }
}
