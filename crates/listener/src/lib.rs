#![forbid(unsafe_code)]
//! The one accept loop of every HTTP listener of the platform: the public
//! gateway and the control API, in plain HTTP/1.1 or over TLS 1.3.
//!
//! [`serve`] accepts connections, holds each to the connection caps (in
//! total and per client address, [`ConnectionLimits`]), completes the TLS
//! handshake when the listener has a TLS configuration, serves HTTP/1.1
//! with the platform's header size and time limits ([`http1_builder`]),
//! and puts the canonical client address ([`PeerAddr`]) and, over TLS, the
//! client certificate presented ([`PeerCertificate`]) in every request's
//! extensions for the handler. On shutdown it stops accepting and drains
//! in-flight requests for up to the grace period.
//!
//! # Trust
//! Trusts nothing a peer sends: request heads are bounded in size and
//! time by hyper, handshakes in time; connections over the caps are closed
//! before anything is read. Trusts rustls for the handshake and for
//! checking a client certificate against the roots its configuration
//! holds: a [`PeerCertificate`] is only a first check, which the handler
//! verifies again. Refusals of a peer (connection caps, heads hyper
//! refused, client certificates the handshake refused) go to the
//! [`RefusalAggregator`] of the listener, when it has one, as refusals of
//! an unauthenticated client.

mod limits;
mod serve;

pub use limits::{ConnectionLimits, ConnectionPermit, ConnectionRefusal};
pub use serve::{drain, http1_builder, serve, ListenerConfig, PeerAddr, PeerCertificate, Tls};
pub use zerofn_audit::RefusalAggregator;
