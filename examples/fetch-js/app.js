// fetch-js: sends the outbound request its caller names, the way a guest
// that normalises URLs first would: the request body is "METHOD URL", the URL
// is read with the WHATWG URL parser (`new URL`, as `fetch` does: userinfo
// left out of the host, default ports dropped, IPv4 numbers in any notation
// rewritten as dotted decimal, hosts lowercased and IDNA-mapped) and its
// scheme, host and path-with-query are handed to wasi:http. Answers with the
// upstream's status and body; 502 with the wasi:http error code's WIT name
// when the request fails ("HTTP-request-denied", "destination-IP-prohibited",
// ...); 400 "url-refused" when the URL parser refuses the text, or
// "authority-refused" / "scheme-refused" when wasi:http refuses the parts.
// Same contract as fetch-c, which splits the URL naively instead.
import {
  Fields,
  IncomingBody,
  OutgoingBody,
  OutgoingRequest,
  OutgoingResponse,
  ResponseOutparam,
  httpErrorCode,
} from "wasi:http/types@0.2.12";
import { handle as send } from "wasi:http/outgoing-handler@0.2.12";

// wasi:io output streams accept at most 4096 bytes per blocking write.
const MAX_WRITE = 4096;
const READ_CHUNK = 16384n;
const USAGE = "usage: POST with the body \"METHOD URL\"\n";
const METHODS = new Set(["get", "head", "post", "put", "delete", "connect", "options", "trace", "patch"]);
const dispose = Symbol.dispose ?? Symbol.for("dispose");
const encoder = new TextEncoder();

// The cases of wasi:http/types.error-code as the WIT names them, by their
// lowercase form (WIT names are case-insensitive; the bindings give the
// case name as the variant's tag).
const ERROR_CODE_NAMES = new Map(
  [
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
  ].map((name) => [name.toLowerCase(), name]),
);

// The outgoing request failed with a wasi:http error code.
class CallFailed extends Error {
  constructor(code) {
    super(errorCodeName(code));
  }
}

export const incomingHandler = {
  handle(request, responseOut) {
    let answer;
    try {
      answer = route(request);
    } catch (err) {
      if (!(err instanceof CallFailed)) throw err;
      answer = [502, "text/plain", encoder.encode(err.message)];
    }
    const [status, contentType, body] = answer;
    respond(responseOut, status, contentType, body);
  },
};

function text(status, message) {
  return [status, "text/plain", encoder.encode(message)];
}

function route(request) {
  if (request.method().tag !== "post") return text(405, "method not allowed\n");
  const line = new TextDecoder().decode(readBody(request)).trim();
  const space = line.indexOf(" ");
  if (space < 1) return text(400, USAGE);
  const method = line.slice(0, space);
  let url;
  try {
    url = new URL(line.slice(space + 1).trim());
  } catch {
    return text(400, "url-refused");
  }
  return call(method, url);
}

function call(method, url) {
  const outgoing = new OutgoingRequest(new Fields());
  const lower = method.toLowerCase();
  try {
    outgoing.setMethod(METHODS.has(lower) ? { tag: lower } : { tag: "other", val: method });
  } catch {
    return text(400, "method-refused");
  }
  const protocol = url.protocol.replace(/:$/, "");
  const scheme =
    protocol === "http" ? { tag: "HTTP" } : protocol === "https" ? { tag: "HTTPS" } : { tag: "other", val: protocol };
  try {
    outgoing.setScheme(scheme);
  } catch {
    return text(400, "scheme-refused");
  }
  try {
    outgoing.setAuthority(url.host);
    outgoing.setPathWithQuery(url.pathname + url.search);
  } catch {
    return text(400, "authority-refused");
  }
  let future;
  try {
    future = send(outgoing, undefined);
  } catch (err) {
    throw new CallFailed(err?.payload);
  }
  let outcome;
  try {
    const ready = future.subscribe();
    ready.block();
    ready[dispose]();
    outcome = future.get();
  } finally {
    future[dispose]();
  }
  if (outcome === undefined || outcome.tag !== "ok") return text(502, "internal-error");
  const inner = outcome.val;
  if (inner.tag !== "ok") throw new CallFailed(inner.val);
  const response = inner.val;
  try {
    const status = response.status();
    const headers = response.headers();
    const contentType = headers.get("content-type")[0];
    headers[dispose]();
    const body = readBody(response);
    return [status, contentType && new TextDecoder("latin1").decode(contentType), body];
  } finally {
    response[dispose]();
  }
}

// The whole body of an incoming request or response.
function readBody(message) {
  const incoming = message.consume();
  const stream = incoming.stream();
  const chunks = [];
  let length = 0;
  for (;;) {
    let chunk;
    try {
      chunk = stream.blockingRead(READ_CHUNK);
    } catch (err) {
      const failure = err?.payload;
      if (failure?.tag === "closed") break; // the normal end of the body
      if (failure?.tag === "last-operation-failed") throw new CallFailed(httpErrorCode(failure.val));
      throw err;
    }
    chunks.push(chunk);
    length += chunk.length;
  }
  // The stream is a child of the body: drop it before finish(), which
  // returns a future for the trailers, which we do not need.
  stream[dispose]();
  IncomingBody.finish(incoming)[dispose]();
  const body = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.length;
  }
  return body;
}

// The WIT name of a wasi:http error-code case ("internal-error" if unknown).
function errorCodeName(code) {
  const tag = typeof code?.tag === "string" ? code.tag.toLowerCase() : "";
  return ERROR_CODE_NAMES.get(tag) ?? "internal-error";
}

function respond(responseOut, status, contentType, body) {
  const headers = contentType ? [["content-type", encoder.encode(contentType)]] : [];
  const response = new OutgoingResponse(Fields.fromList(headers));
  response.setStatusCode(status);
  const outBody = response.body();
  ResponseOutparam.set(responseOut, { tag: "ok", val: response });
  const stream = outBody.write();
  for (let start = 0; start < body.length; start += MAX_WRITE) {
    stream.blockingWriteAndFlush(body.subarray(start, start + MAX_WRITE));
  }
  stream[dispose]();
  OutgoingBody.finish(outBody, undefined);
}
