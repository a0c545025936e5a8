// kv-js: key-value storage and runtime configuration over HTTP.
//
//     GET    /<prefix>/<bucket>/<key>   200 with the stored value, 404 if absent
//     PUT    /<prefix>/<bucket>/<key>   stores the request body, 204
//     DELETE /<prefix>/<bucket>/<key>   deletes the key, 204
//     POST   /<prefix>/<bucket>/<key>   atomic increment by 1, 200 with the new value (decimal)
//     GET    /<prefix>/<bucket>         200 with the bucket's keys, one per line
//     GET    /<prefix>/_config/<key>    200 with the configuration value, 404 if absent
//
// <prefix> is whatever the route is deployed under (its first path segment);
// the key is the rest of the path after the bucket. A key-value or
// configuration error whose text starts with "access denied" answers 403
// with the text, any other error 500. Same contract as kv-c and kv-py.
import { Fields, IncomingBody, OutgoingBody, OutgoingResponse, ResponseOutparam } from "wasi:http/types@0.2.12";
import { open } from "wasi:keyvalue/store@0.2.0-draft";
import { increment } from "wasi:keyvalue/atomics@0.2.0-draft";
import { get as configGet } from "wasi:config/store@0.2.0-rc.1";

// wasi:io output streams accept at most 4096 bytes per blocking write.
const MAX_WRITE = 4096;
const READ_CHUNK = 16384n;
const CONFIG_BUCKET = "_config";
const USAGE = "usage: /<prefix>/<bucket>[/<key>] or /<prefix>/_config/<key>\n";
const dispose = Symbol.dispose ?? Symbol.for("dispose");
const encoder = new TextEncoder();

export const incomingHandler = {
  handle(request, responseOut) {
    let answer;
    try {
      answer = route(request);
    } catch (err) {
      const text = errorText(err);
      answer = [text.startsWith("access denied") ? 403 : 500, "text/plain", encoder.encode(text)];
    }
    const [status, contentType, body] = answer;
    respond(responseOut, status, contentType, body);
  },
};

function text(status, message) {
  return [status, "text/plain", encoder.encode(message)];
}

function route(request) {
  const path = (request.pathWithQuery() ?? "/").split("?", 1)[0];
  // ["", prefix, bucket, key...]
  const segments = path.split("/").slice(2);
  if (segments.length === 0 || segments[0] === "") return text(400, USAGE);
  const bucket = segments[0];
  const key = segments.slice(1).join("/");
  const method = request.method().tag;

  if (bucket === CONFIG_BUCKET) {
    if (key === "") return text(400, USAGE);
    if (method !== "get") return text(405, "method not allowed\n");
    const value = configGet(key);
    if (value === undefined || value === null) return text(404, "not found\n");
    return text(200, value);
  }

  if (key === "") {
    if (method !== "get") return text(405, "method not allowed\n");
    const keys = withBucket(bucket, listKeys);
    return text(200, keys.map((k) => `${k}\n`).join(""));
  }

  switch (method) {
    case "put": {
      const value = readBody(request);
      withBucket(bucket, (store) => store.set(key, value));
      return [204, null, new Uint8Array(0)];
    }
    case "get": {
      const value = withBucket(bucket, (store) => store.get(key));
      if (value === undefined || value === null) return text(404, "not found\n");
      return [200, "application/octet-stream", value];
    }
    case "delete":
      withBucket(bucket, (store) => store.delete(key));
      return [204, null, new Uint8Array(0)];
    case "post": {
      const count = withBucket(bucket, (store) => increment(store, key, 1n));
      return text(200, count.toString());
    }
    default:
      return text(405, "method not allowed\n");
  }
}

// Opens `name`, runs `body` on the bucket and drops the bucket again.
function withBucket(name, body) {
  const store = open(name);
  try {
    return body(store);
  } finally {
    store[dispose]?.();
  }
}

function listKeys(store) {
  const keys = [];
  let cursor;
  for (;;) {
    const page = store.listKeys(cursor);
    keys.push(...page.keys);
    if (page.cursor === undefined || page.cursor === null) return keys;
    cursor = page.cursor;
  }
}

// The text of a wasi:keyvalue or wasi:config error (thrown with the WIT
// error variant as `payload`), or of any other exception.
function errorText(err) {
  const payload = err?.payload;
  if (payload && typeof payload.tag === "string") {
    switch (payload.tag) {
      case "access-denied":
        return "access denied";
      case "no-such-store":
        return "no such store";
      default:
        // wasi:keyvalue `other`, wasi:config `upstream` and `io`.
        if (typeof payload.val === "string") return payload.val;
        return payload.tag;
    }
  }
  return String(err?.message ?? err);
}

function readBody(request) {
  const incoming = request.consume();
  const stream = incoming.stream();
  const chunks = [];
  let length = 0;
  for (;;) {
    let chunk;
    try {
      chunk = stream.blockingRead(READ_CHUNK);
    } catch (err) {
      if (err?.payload?.tag === "closed") break; // the normal end of the body
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
