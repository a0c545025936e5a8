// {{name}}: answers every request with 200, text/plain, "hello from {{name}}\n".
//
// componentize-js generates the `wasi:http/types` bindings from the WIT;
// this module exports the `wasi:http/incoming-handler` interface itself.
import { Fields, OutgoingBody, OutgoingResponse, ResponseOutparam } from "wasi:http/types@0.2.12";

const GREETING = new TextEncoder().encode("hello from {{name}}\n");
const dispose = Symbol.dispose ?? Symbol.for("dispose");

export const incomingHandler = {
  handle(_request, responseOut) {
    const response = new OutgoingResponse(
      Fields.fromList([["content-type", new TextEncoder().encode("text/plain")]]),
    );
    response.setStatusCode(200);
    const body = response.body();
    // Hand over status and headers first: the host drains the body only
    // once it has the response.
    ResponseOutparam.set(responseOut, { tag: "ok", val: response });
    const stream = body.write();
    stream.blockingWriteAndFlush(GREETING);
    // The stream is a child of the body: drop it before finish().
    stream[dispose]();
    OutgoingBody.finish(body, undefined);
  },
};
