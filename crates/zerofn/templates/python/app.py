"""{{name}}: answers every request with 200, text/plain, "hello from {{name}}\\n"."""

from componentize_py_types import Ok
from wit_world import exports
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

# wasi:io output streams accept at most 4096 bytes per blocking write.
MAX_WRITE = 4096


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        respond(response_out, 200, "text/plain", b"hello from {{name}}\n")


def respond(response_out: ResponseOutparam, status: int, content_type: str, body: bytes) -> None:
    response = OutgoingResponse(Fields.from_list([("content-type", content_type.encode())]))
    response.set_status_code(status)
    out_body = response.body()
    # Hand over status and headers first: the host drains the body only
    # once it has the response.
    ResponseOutparam.set(response_out, Ok(response))
    # `with` drops the stream (a child of the body) before finish().
    with out_body.write() as stream:
        for start in range(0, len(body), MAX_WRITE):
            stream.blocking_write_and_flush(body[start : start + MAX_WRITE])
    OutgoingBody.finish(out_body, None)
