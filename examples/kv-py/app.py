"""kv-py: key-value storage and runtime configuration over HTTP.

    GET    /<prefix>/<bucket>/<key>   200 with the stored value, 404 if absent
    PUT    /<prefix>/<bucket>/<key>   stores the request body, 204
    DELETE /<prefix>/<bucket>/<key>   deletes the key, 204
    POST   /<prefix>/<bucket>/<key>   atomic increment by 1, 200 with the new value (decimal)
    GET    /<prefix>/<bucket>         200 with the bucket's keys, one per line
    GET    /<prefix>/_config/<key>    200 with the configuration value, 404 if absent

<prefix> is whatever the route is deployed under (its first path segment);
the key is the rest of the path after the bucket. A key-value or
configuration error whose text starts with "access denied" answers 403 with
the text, any other error 500. Same contract as kv-c and kv-js.
"""

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import atomics, wasi_config_store, wasi_keyvalue_store
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.types import (
    Fields,
    IncomingBody,
    IncomingRequest,
    Method_Delete,
    Method_Get,
    Method_Post,
    Method_Put,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

# wasi:io output streams accept at most 4096 bytes per blocking write.
MAX_WRITE = 4096
READ_CHUNK = 16384
CONFIG_BUCKET = "_config"
USAGE = b"usage: /<prefix>/<bucket>[/<key>] or /<prefix>/_config/<key>\n"


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        try:
            status, content_type, body = route(request)
        except Err as err:
            text = error_text(err.value)
            status = 403 if text.startswith("access denied") else 500
            content_type, body = "text/plain", text.encode()
        respond(response_out, status, content_type, body)


def route(request: IncomingRequest) -> tuple[int, str | None, bytes]:
    path = (request.path_with_query() or "/").split("?", 1)[0]
    # ["", prefix, bucket, key...]
    segments = path.split("/")[2:]
    if not segments or not segments[0]:
        return 400, "text/plain", USAGE
    bucket, key = segments[0], "/".join(segments[1:])
    method = request.method()

    if bucket == CONFIG_BUCKET:
        if not key:
            return 400, "text/plain", USAGE
        if not isinstance(method, Method_Get):
            return 405, "text/plain", b"method not allowed\n"
        value = wasi_config_store.get(key)
        if value is None:
            return 404, "text/plain", b"not found\n"
        return 200, "text/plain", value.encode()

    if not key:
        if not isinstance(method, Method_Get):
            return 405, "text/plain", b"method not allowed\n"
        with wasi_keyvalue_store.open(bucket) as store:
            keys = list_keys(store)
        return 200, "text/plain", "".join(f"{k}\n" for k in keys).encode()

    if isinstance(method, Method_Put):
        value = read_body(request)
        with wasi_keyvalue_store.open(bucket) as store:
            store.set(key, value)
        return 204, None, b""
    if isinstance(method, Method_Get):
        with wasi_keyvalue_store.open(bucket) as store:
            found = store.get(key)
        if found is None:
            return 404, "text/plain", b"not found\n"
        return 200, "application/octet-stream", found
    if isinstance(method, Method_Delete):
        with wasi_keyvalue_store.open(bucket) as store:
            store.delete(key)
        return 204, None, b""
    if isinstance(method, Method_Post):
        with wasi_keyvalue_store.open(bucket) as store:
            count = atomics.increment(store, key, 1)
        return 200, "text/plain", str(count).encode()
    return 405, "text/plain", b"method not allowed\n"


def list_keys(store: wasi_keyvalue_store.Bucket) -> list[str]:
    keys: list[str] = []
    cursor = None
    while True:
        page = store.list_keys(cursor)
        keys.extend(page.keys)
        if page.cursor is None:
            return keys
        cursor = page.cursor


def error_text(error: object) -> str:
    """The text of a wasi:keyvalue or wasi:config error."""
    if isinstance(error, wasi_keyvalue_store.Error_AccessDenied):
        return "access denied"
    if isinstance(error, wasi_keyvalue_store.Error_NoSuchStore):
        return "no such store"
    # wasi:keyvalue `other`, wasi:config `upstream` and `io` carry a string.
    value = getattr(error, "value", None)
    return value if isinstance(value, str) else repr(error)


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
