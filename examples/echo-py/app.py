"""echo-py: answers 200 with a JSON description of the request.

    {"method":"POST","path":"/echo?x=1","body":"<request body>"}

Same contract as echo-c: the body is embedded as a JSON string, bytes that
are not UTF-8 become U+FFFD (one per maximal ill-formed subsequence, as
bytes.decode(errors="replace") does), and the output is always valid JSON.
"""

import json

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.types import (
    Fields,
    IncomingBody,
    IncomingRequest,
    Method_Other,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

# wasi:io output streams accept at most 4096 bytes per blocking write.
MAX_WRITE = 4096
READ_CHUNK = 16384


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        echo = {
            "method": method_name(request),
            "path": request.path_with_query() or "",
            "body": read_body(request).decode("utf-8", errors="replace"),
        }
        # Compact separators and raw UTF-8, like echo-c.
        text = json.dumps(echo, ensure_ascii=False, separators=(",", ":"))
        respond(response_out, 200, "application/json", text.encode())


def method_name(request: IncomingRequest) -> str:
    method = request.method()
    if isinstance(method, Method_Other):
        return method.value
    # The other variants are classes named Method_Get, Method_Post, ...
    return type(method).__name__.removeprefix("Method_").upper()


def read_body(request: IncomingRequest) -> bytes:
    incoming = request.consume()
    chunks = []
    # `with` drops the stream (a child of the body) before finish().
    with incoming.stream() as stream:
        while True:
            try:
                chunks.append(stream.blocking_read(READ_CHUNK))
            except Err as err:
                if isinstance(err.value, StreamError_Closed):
                    break  # the normal end of the body
                raise
    # finish() returns a future for the trailers, which we do not need.
    with IncomingBody.finish(incoming):
        pass
    return b"".join(chunks)


def respond(response_out: ResponseOutparam, status: int, content_type: str, body: bytes) -> None:
    response = OutgoingResponse(Fields.from_list([("content-type", content_type.encode())]))
    response.set_status_code(status)
    out_body = response.body()
    # Hand over status and headers first: the host drains the body only
    # once it has the response.
    ResponseOutparam.set(response_out, Ok(response))
    with out_body.write() as stream:
        for start in range(0, len(body), MAX_WRITE):
            stream.blocking_write_and_flush(body[start : start + MAX_WRITE])
    OutgoingBody.finish(out_body, None)
