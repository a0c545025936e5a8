"""escape-py: tries to reach outside the sandbox and reports what happened.

Answers 200 with a flat JSON object, one field per probe:

    {"etc_passwd":"denied: FileNotFoundError: [Errno 44] No such file ...",
     "root_dir":"denied: FileNotFoundError: ...", ..., "env_count":0}

A probe that raised reports "denied: <ExceptionClass>: <message>"; one that
got through reports what it reached: "OPENED", "CONNECTED ...", a directory
listing, an environment value ("timeout" for an outgoing request the host
let out but nobody answered). Every probe is wrapped, so a denied operation
can never crash the handler.

Note: the Python runtime componentize-py embeds ships without the `socket`
module, so the socket probes report ModuleNotFoundError rather than
exercising the host's wasi:sockets policy. The network path the proxy world
does offer, wasi:http/outgoing-handler, is probed as "outgoing_http".
"""

import json
import os

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import monotonic_clock, outgoing_handler, poll
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingRequest,
    OutgoingResponse,
    RequestOptions,
    ResponseOutparam,
    Scheme_Http,
)

# wasi:io output streams accept at most 4096 bytes per blocking write.
MAX_WRITE = 4096
NS_PER_SECOND = 1_000_000_000


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        report = {}

        def probe(field, attempt):
            try:
                report[field] = attempt()
            except Exception as exc:  # any failure counts as denied
                report[field] = f"denied: {describe(exc)}"

        probe("etc_passwd", lambda: read_file("/etc/passwd"))
        probe("dotdot_passwd", lambda: read_file("../../../../etc/passwd"))
        probe("root_dir", lambda: os.listdir("/"))
        probe("cwd", lambda: os.listdir("."))
        probe("write_tmp", write_tmp)
        probe("home", lambda: env_var("HOME"))
        probe("path", lambda: env_var("PATH"))
        probe("socket_connect", connect_localhost)
        probe("metadata_connect", connect_metadata)
        probe("outgoing_http", outgoing_http)
        # Not a probe that can fail: how many variables the guest can see.
        report["env_count"] = len(os.environ)

        text = json.dumps(report, ensure_ascii=False, separators=(",", ":"))
        respond(response_out, 200, "application/json", text.encode())


def describe(exc: Exception) -> str:
    if isinstance(exc, Err):
        # A wasi error result: the payload names the error variant.
        return f"Err: {exc.value!r}"
    return f"{type(exc).__name__}: {exc}"


def read_file(path: str) -> str:
    with open(path, "rb") as file:
        file.read(1)
    return "OPENED"


def write_tmp() -> str:
    with open("/tmp/zerofn-escape-py", "w") as file:
        file.write("escaped\n")
    return "OPENED"


def env_var(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise KeyError(name)
    return value


def connect_localhost() -> str:
    import socket  # inside the probe: the import itself may fail

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        sock.connect(("127.0.0.1", 80))
    return "CONNECTED"


def connect_metadata() -> str:
    import socket

    with socket.create_connection(("169.254.169.254", 80), timeout=1):
        pass
    return "CONNECTED"


def outgoing_http() -> str:
    """Asks wasi:http/outgoing-handler for the cloud metadata endpoint and
    waits at most two seconds. Raises if the host refuses or the request
    fails; returns "timeout" if the host let it out but nothing answered."""
    request = OutgoingRequest(Fields())
    request.set_scheme(Scheme_Http())
    request.set_authority("169.254.169.254")
    request.set_path_with_query("/latest/meta-data/")
    options = RequestOptions()
    options.set_connect_timeout(NS_PER_SECOND)

    with outgoing_handler.handle(request, options) as future:
        # The pollables must be dropped before the future: `with`.
        with future.subscribe() as ready, monotonic_clock.subscribe_duration(
            2 * NS_PER_SECOND
        ) as deadline:
            poll.poll([ready, deadline])
        outcome = future.get()
        if outcome is None:
            return "timeout"
        # outcome: Ok(Ok(response)) / Ok(Err(error-code)) / Err(()).
        inner = outcome.value
        if isinstance(outcome, Err) or isinstance(inner, Err):
            raise Err(inner.value if isinstance(inner, Err) else inner)
        with inner.value as response:
            return f"CONNECTED (status {response.status()})"


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
