#![forbid(unsafe_code)]
//! Public ingress: accepts HTTP requests from anyone, enforces size and
//! time limits, routes to the deployed function, runs it in the sandbox and
//! records one audit record per invocation before the response leaves.
//!
//! Modules: `gateway.rs` (configuration, services, the listener),
//! `invoke.rs` (the invoke path, public and nested), `authn.rs` (external
//! callers proved from the request head), `caller.rs` (who an invocation is for), `host/` (what a running function may ask of the
//! platform, one file per capability), `routes.rs` (the route table and
//! route spaces), `limits.rs` (bounds across requests), `output.rs`
//! (guests' stdout and stderr into the log store, off the invoke path),
//! `policies.rs` (the runtime policies in force), `ratelimit.rs` (request
//! rate and concurrency limits per function and per tenant), `validation.rs` (requests
//! against the function's `[schema]`, before it runs), `trace.rs` (the
//! invocation's OpenTelemetry spans and the `traceparent` it passes on). The accept loop itself is
//! `zerofn-listener`'s, shared with the control API.
//!
//! # Trust
//! Trusts nothing about a request: header and body sizes are bounded
//! before anything is buffered, slow senders time out, and the path is the
//! only thing used to route. Trusts the sandbox to contain the guest and
//! the audit log to say whether a record is durable.
//!
//! # Guarantees
//! - A response is released only after its audit record is durable; if
//!   the append fails the caller gets 500 and the guest's response is
//!   dropped (audit before effect, fail closed).
//! - Route switches are atomic: a request sees the old or the new table,
//!   never a mix.
//! - The invoke decision is made from the request head; an unauthorised
//!   caller's body is never read. Bodies in flight are bounded across the
//!   gateway, connections in total and per client address.
//! - A function runs only with an invoke permit, and a capability acts only
//!   with a capability permit and the function's verified identity
//!   (`zerofn_policy::Permit`, `zerofn_identity::VerifiedSpiffeId`).
//! - Every invocation is recorded, including one whose caller went away
//!   (`client_gone`); refusals of unauthenticated callers are aggregated.
//! - A guest's output is stored (bounded, best effort) without the request
//!   ever waiting for it: a full queue drops it and says so in the log.

mod authn;
mod caller;
mod errors;
mod gateway;
mod host;
mod invoke;
mod limits;
mod output;
mod policies;
mod ratelimit;
mod routes;
mod trace;
mod validation;

pub use authn::{CLAIMS_HEADER, EXTERNAL_CALLER_HEADER};
pub use caller::Caller;
pub use errors::error_response;
pub use gateway::{Gateway, GatewayConfig, GatewayServices, INVOCATION_HEADER};
pub use host::{
    FunctionObject, ObjectHost, ObjectRefused, MAX_FUNCTION_OBJECT_BYTES, OBJECTS_HOST,
};
pub use host::{
    InvocationHost, OutgoingEvent, PublishRefused, QueuePublisher, WorkloadIdentity, CALLER_HEADER,
    IDENTITY_HOST, INTERNAL_SUFFIX, MAX_PUBLISH_BODY, QUEUES_HOST,
};
pub use invoke::{CLIENT_GONE, CLIENT_GONE_STATUS};
pub use limits::{
    is_platform_header, strip_platform_headers, MAX_TREE_INVOCATIONS, PLATFORM_HEADER_PREFIX,
};
pub use output::{InvocationLogs, LogRetention, QUEUE_BYTES, QUEUE_INVOCATIONS};
pub use policies::Policies;
pub use ratelimit::{InvokeLimits, LimitSpec, Rate};
pub use routes::{PrefixTaken, RouteSpace, RouteTable, Routes};
pub use trace::TRACE_ID_FIELD;
pub use validation::EventRefused;
pub use zerofn_egress::{EgressClient, EgressConfig, EgressLimits};
pub use zerofn_listener::PeerAddr;
pub use zerofn_telemetry::Tracer;
