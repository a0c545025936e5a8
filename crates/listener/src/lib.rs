#![forbid(unsafe_code)]
//! The one accept loop of every HTTP listener of the platform: the public
//! gateway and the control API, in plain HTTP/1.1 or over TLS (HTTP/1.1,
//! or HTTP/2 when ALPN chose `h2`).
//!
//! Modules: `serve.rs` (the accept loop and the HTTP settings), `limits.rs`
//! (connection caps), `head_timeout.rs` (the 408 for a late request head),
//! `tls_reload.rs` (a certificate from files, reloaded when they change),
//! `client_auth.rs` (client certificates requested, proved by possession).
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

mod client_auth;
mod head_timeout;
mod limits;
mod serve;
mod tls_reload;

pub use client_auth::{PossessionVerifier, MAX_CHAIN_LEN};
pub use limits::{ConnectionLimits, ConnectionPermit, ConnectionRefusal};
pub use serve::{
    drain, http1_builder, http2_builder, serve, ListenerConfig, PeerAddr, PeerCertificate,
    PeerCertificateChain, RefusalStreak, Tls, H2_MAX_CONCURRENT_STREAMS, MAX_HEADERS,
};
pub use tls_reload::{
    load_certified_key, server_config, CertificateFiles, TlsFileError, ALPN_H2, ALPN_HTTP11,
};
pub use zerofn_audit::RefusalAggregator;
