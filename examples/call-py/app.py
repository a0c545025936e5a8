"""call-py: calls another function through outbound wasi:http.

    GET /<prefix>/<tenant>/<fn>/<rest...>

makes an outbound GET to http://<fn>.<tenant>.fn.internal/<rest...> (with
the query string, if any) through wasi:http/outgoing-handler and answers
with the callee's status, content-type and body. If the outgoing request
fails with a wasi:http error code, it answers 502 with the code's name as
the WIT spells it (e.g. "HTTP-request-denied"). <prefix> is whatever the
route is deployed under (its first path segment). Same contract as call-c
and call-js.
"""

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import outgoing_handler, types
from wit_world.imports.streams import StreamError_Closed, StreamError_LastOperationFailed
from wit_world.imports.types import (
    Fields,
    IncomingBody,
    IncomingRequest,
    IncomingResponse,
    Method_Get,
    OutgoingBody,
    OutgoingRequest,
    OutgoingResponse,
    ResponseOutparam,
    Scheme_Http,
)

# wasi:io output streams accept at most 4096 bytes per blocking write.
MAX_WRITE = 4096
READ_CHUNK = 16384
CALLEE_DOMAIN = "fn.internal"
USAGE = b"usage: GET /<prefix>/<tenant>/<fn>/<path...>\n"

# The cases of wasi:http/types.error-code as the WIT names them. The
# bindings name them ErrorCode_<UpperCamel> (HTTP-request-URI-invalid ->
# ErrorCode_HttpRequestUriInvalid); this maps back.
ERROR_CODE_NAMES = (
    "DNS-timeout",
    "DNS-error",
    "destination-not-found",
    "destination-unavailable",
    "destination-IP-prohibited",
    "destination-IP-unroutable",
    "connection-refused",
    "connection-terminated",
    "connection-timeout",
    "connection-read-timeout",
    "connection-write-timeout",
    "connection-limit-reached",
    "TLS-protocol-error",
    "TLS-certificate-error",
    "TLS-alert-received",
    "HTTP-request-denied",
    "HTTP-request-length-required",
    "HTTP-request-body-size",
    "HTTP-request-method-invalid",
    "HTTP-request-URI-invalid",
    "HTTP-request-URI-too-long",
    "HTTP-request-header-section-size",
    "HTTP-request-header-size",
    "HTTP-request-trailer-section-size",
    "HTTP-request-trailer-size",
    "HTTP-response-incomplete",
    "HTTP-response-header-section-size",
    "HTTP-response-header-size",
    "HTTP-response-body-size",
    "HTTP-response-trailer-section-size",
    "HTTP-response-trailer-size",
    "HTTP-response-transfer-coding",
    "HTTP-response-content-coding",
    "HTTP-response-timeout",
    "HTTP-upgrade-failed",
    "HTTP-protocol-error",
    "loop-detected",
    "configuration-error",
    "internal-error",
)
ERROR_CODE_BY_CLASS = {
    "ErrorCode_" + "".join(part.capitalize() for part in name.split("-")): name
    for name in ERROR_CODE_NAMES
}


class CallFailed(Exception):
    """The outgoing request failed with a wasi:http error code."""

    def __init__(self, code: object) -> None:
        self.name = error_code_name(code)
        super().__init__(self.name)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        try:
            status, content_type, body = route(request)
        except CallFailed as failed:
            status, content_type, body = 502, "text/plain", failed.name.encode()
        respond(response_out, status, content_type, body)


def route(request: IncomingRequest) -> tuple[int, str | None, bytes]:
    if not isinstance(request.method(), Method_Get):
        return 405, "text/plain", b"method not allowed\n"
    path, sep, query = (request.path_with_query() or "/").partition("?")
    # ["", prefix, tenant, fn, rest...]
    segments = path.split("/")[2:]
    if len(segments) < 2 or not segments[0] or not segments[1]:
        return 400, "text/plain", USAGE
    tenant, function = segments[0], segments[1]
    target = "/" + "/".join(segments[2:]) + sep + query
    return call(f"{function}.{tenant}.{CALLEE_DOMAIN}", target)


def call(authority: str, path_with_query: str) -> tuple[int, str | None, bytes]:
    outgoing = OutgoingRequest(Fields())
    try:
        outgoing.set_method(Method_Get())
        outgoing.set_scheme(Scheme_Http())
        outgoing.set_authority(authority)
        outgoing.set_path_with_query(path_with_query)
    except Err:
        return 400, "text/plain", b"invalid tenant, function or path\n"
    try:
        future = outgoing_handler.handle(outgoing, None)
    except Err as err:
        raise CallFailed(err.value) from None
    with future:
        with future.subscribe() as ready:
            ready.block()
        outcome = future.get()
    # option<result<result<incoming-response, error-code>>>: after block()
    # the option is set and the outer result is ok (first get).
    if outcome is None or isinstance(outcome, Err):
        return 502, "text/plain", b"internal-error"
    inner = outcome.value
    if isinstance(inner, Err):
        raise CallFailed(inner.value)
    with inner.value as response:
        status = response.status()
        content_type = header(response, "content-type")
        body = read_body(response)
    return status, content_type, body


def header(response: IncomingResponse, name: str) -> str | None:
    with response.headers() as fields:
        values = fields.get(name)
    return values[0].decode("latin-1") if values else None


def read_body(response: IncomingResponse) -> bytes:
    incoming = response.consume()
    chunks = []
    with incoming.stream() as stream:
        while True:
            try:
                chunks.append(stream.blocking_read(READ_CHUNK))
            except Err as err:
                if isinstance(err.value, StreamError_Closed):
                    break  # the normal end of the body
                if isinstance(err.value, StreamError_LastOperationFailed):
                    with err.value.value as io_error:
                        code = types.http_error_code(io_error)
                    raise CallFailed(code) from None
                raise
    with IncomingBody.finish(incoming):
        pass
    return b"".join(chunks)


def error_code_name(code: object) -> str:
    """The WIT name of a wasi:http error-code case ("internal-error" if unknown)."""
    return ERROR_CODE_BY_CLASS.get(type(code).__name__, "internal-error")


def respond(response_out: ResponseOutparam, status: int, content_type: str | None, body: bytes) -> None:
    headers = [("content-type", content_type.encode())] if content_type else []
    response = OutgoingResponse(Fields.from_list(headers))
    response.set_status_code(status)
    out_body = response.body()
    # Hand over status and headers first: the host drains the body only
    # once it has the response.
    ResponseOutparam.set(response_out, Ok(response))
    with out_body.write() as stream:
        for start in range(0, len(body), MAX_WRITE):
            stream.blocking_write_and_flush(body[start : start + MAX_WRITE])
    OutgoingBody.finish(out_body, None)
