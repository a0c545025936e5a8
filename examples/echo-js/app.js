// echo-js: answers 200 with a JSON description of the request.
//
//     {"method":"POST","path":"/echo?x=1","body":"<request body>"}
//
// Same contract as echo-c and echo-py: the body is embedded as a JSON
// string, bytes that are not UTF-8 become U+FFFD (one per maximal
// ill-formed subsequence, as TextDecoder does), and the output is always
// valid JSON.
import { Fields, IncomingBody, OutgoingBody, OutgoingResponse, ResponseOutparam } from "wasi:http/types@0.2.12";

// wasi:io output streams accept at most 4096 bytes per blocking write.
const MAX_WRITE = 4096;
const READ_CHUNK = 16384n;
const dispose = Symbol.dispose ?? Symbol.for("dispose");

export const incomingHandler = {
  handle(request, responseOut) {
    const method = request.method();
    const echo = {
      method: method.tag === "other" ? method.val : method.tag.toUpperCase(),
      path: request.pathWithQuery() ?? "",
      body: new TextDecoder("utf-8").decode(readBody(request)),
    };
    respond(responseOut, 200, "application/json", new TextEncoder().encode(JSON.stringify(echo)));
  },
};

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
  const response = new OutgoingResponse(
    Fields.fromList([["content-type", new TextEncoder().encode(contentType)]]),
  );
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
