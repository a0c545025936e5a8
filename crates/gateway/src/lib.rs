#![forbid(unsafe_code)]
//! Public ingress: accepts HTTP requests from anyone, enforces size and
//! time limits, routes to the deployed function, runs it in the sandbox and
//! records one audit record per invocation before the response leaves.
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
//! - Every invocation is recorded, including one whose caller went away
//!   (`client_gone`); refusals of unauthenticated callers are aggregated.

pub mod capabilities;
mod errors;
mod limits;
mod routes;
mod serve;

pub use capabilities::{Policies, WorkloadIdentity, CALLER_HEADER};
pub use errors::error_response;
pub use limits::{
    is_platform_header, strip_platform_headers, ConnectionLimits, ConnectionPermit,
    ConnectionRefusal, MAX_TREE_INVOCATIONS, PLATFORM_HEADER_PREFIX,
};
pub use routes::{PrefixTaken, RouteSpace, RouteTable, Routes};
pub use serve::{
    drain, http1_builder, serve_http, serve_http_with, Caller, Gateway, GatewayConfig,
    GatewayServices, PeerAddr, CLIENT_GONE, CLIENT_GONE_STATUS, INVOCATION_HEADER,
};
