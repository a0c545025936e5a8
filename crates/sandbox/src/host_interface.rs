//! The host capabilities a guest may ask for, as the sandbox sees them:
//! key-value storage (`wasi:keyvalue`), runtime configuration
//! (`wasi:config`) and outbound HTTP (`wasi:http/outgoing-handler`).
//!
//! The sandbox only translates between the WIT interfaces and
//! [`HostCapabilities`]; it decides nothing. The platform passes one
//! implementation per invocation, which knows who the caller is and does
//! *decide, audit, then act* for every call. A call the implementation
//! refuses fails inside the guest with the error it gives (the invocation
//! goes on); the sandbox never acts on its own.
//!
//! # Trust
//! Every argument here comes from the guest and is untrusted: bucket
//! names, keys, values, URLs, headers. The sandbox bounds their sizes
//! before they reach the implementation ([`limits`]) and checks nothing
//! else: which bucket, key, configuration value or destination a function
//! may use is for the implementation to decide.
//!
//! Guests see errors as text: a [`CapabilityError`] reaches a
//! `wasi:keyvalue` caller as `error::other(<Display>)` (so a denial reads
//! `access denied: <reason>`), except [`CapabilityError::NoSuchStore`],
//! which is `error::no-such-store`; a `wasi:config` caller gets
//! `error::upstream(<Display>)`. Do not put secrets in these messages.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;

/// A boxed future, so the trait stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Size bounds on what a guest may pass to a capability.
pub mod limits {
    /// Longest bucket name, in bytes.
    pub const MAX_BUCKET_NAME: usize = 128;
    /// Longest key, in bytes.
    pub const MAX_KEY: usize = 1024;
    /// Largest value, in bytes.
    pub const MAX_VALUE: usize = 1024 * 1024;
    /// Most keys one batch call may name.
    pub const MAX_BATCH: usize = 1000;
    /// Most bytes of values one batch call may return (`get-many`) or pass
    /// (`set-many`) in all; the invocation's host budget may allow less.
    pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
    /// Keys returned per `list-keys` page.
    pub const LIST_PAGE: usize = 1000;
    /// Largest outbound request or response body, in bytes.
    pub const MAX_OUTBOUND_BODY: usize = 10 * 1024 * 1024;
    /// Outbound requests one invocation may send in all; later ones fail
    /// with `connection-limit-reached`. With [`MAX_OUTBOUND_BODY`] this
    /// bounds the host memory a guest's requests and unread responses hold.
    pub const MAX_OUTBOUND_REQUESTS: usize = 64;
    /// Outbound requests of one invocation being read or answered at once;
    /// more wait (their bodies stay in the guest until then).
    pub const MAX_OUTBOUND_IN_FLIGHT: usize = 8;
    /// Buckets one instance may hold open at once (each is an entry in
    /// its resource table); more `open` calls fail until one is dropped.
    pub const MAX_OPEN_BUCKETS: usize = 64;
}

/// One key-value operation on a bucket the guest opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOp {
    Get {
        key: String,
    },
    Exists {
        key: String,
    },
    Set {
        key: String,
        value: Bytes,
    },
    Delete {
        key: String,
    },
    /// Keys in order, starting after position `cursor` (0 = first page).
    ListKeys {
        cursor: u64,
    },
    /// Atomic add to a little-endian u64 value (absent = 0).
    Increment {
        key: String,
        delta: u64,
    },
}

/// What a key-value operation returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvOutcome {
    Value(Option<Bytes>),
    Exists(bool),
    Done,
    Keys {
        keys: Vec<String>,
        cursor: Option<u64>,
    },
    Counter(u64),
}

/// Why a capability call failed; shown to the guest.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    /// Policy refused the call (or could not decide, or could not audit).
    /// The message says which permission was missing.
    #[error("access denied: {0}")]
    Denied(String),
    /// The named bucket does not exist or its name is not valid.
    #[error("no such store: {0}")]
    NoSuchStore(String),
    /// The call was allowed but failed.
    #[error("{0}")]
    Failed(String),
}

/// Why an outbound HTTP request was not answered. The guest sees a
/// `wasi:http` error code: `HTTP-request-denied`, `destination-not-found`,
/// or `internal-error(<message>)` for [`OutboundError::Failed`] (whose
/// message it reads).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// The destination is not one the platform lets functions reach.
    #[error("outbound request to {0} denied: no egress is granted")]
    Denied(String),
    /// The destination names no deployed function.
    #[error("no function answers at {0}")]
    NotFound(String),
    /// The request was allowed but could not be completed.
    #[error("{0}")]
    Failed(String),
    /// The request failed on the network (egress), with the wasi:http
    /// error code the guest gets.
    #[error("{message}")]
    Transport {
        /// Which wasi:http error code.
        code: TransportError,
        /// For the host's logs.
        message: String,
    },
}

/// The wasi:http error codes an egress failure maps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// `destination-ip-prohibited`: a special-purpose address.
    DestinationIpProhibited,
    /// `DNS-error`.
    DnsError,
    /// `DNS-timeout`.
    DnsTimeout,
    /// `connection-refused`.
    ConnectionRefused,
    /// `connection-timeout`.
    ConnectionTimeout,
    /// `connection-limit-reached`: the function's concurrent connections.
    ConnectionLimitReached,
    /// `TLS-certificate-error`.
    TlsCertificateError,
    /// `TLS-protocol-error`.
    TlsProtocolError,
    /// `HTTP-response-timeout`: first byte or total time.
    HttpResponseTimeout,
    /// `HTTP-response-body-size`.
    HttpResponseBodySize,
    /// `HTTP-protocol-error`.
    HttpProtocolError,
}

/// A guest call the sandbox refused on its own, before the platform saw
/// it: a size, count or memory bound of the invocation was reached. The
/// call has already failed inside the guest; the platform is told so that
/// the refusal is recorded like every other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxRefusal {
    /// The interface refused (`wasi:http/outgoing-handler`, `wasi:keyvalue`, ...).
    pub capability: &'static str,
    /// Which bound was reached, for the record; holds no guest data
    /// beyond sizes and counts.
    pub reason: String,
}

/// The platform side of the capabilities, one value per invocation.
///
/// The sandbox calls these while the guest waits; each call should
/// decide, audit, then act. When a method is called, the sandbox has
/// already checked that the bucket name, key and value are within
/// [`limits`] and that a batch names at most [`limits::MAX_BATCH`] keys
/// (a batch arrives as one call per key). The guest's deadline still
/// runs, so a slow answer makes the invocation time out.
pub trait HostCapabilities: Send + Sync + 'static {
    /// Open a bucket by the name the guest gave. Later operations on it
    /// come to [`HostCapabilities::kv`] with the same name and are to be
    /// decided again; opening grants nothing by itself.
    fn kv_open<'a>(&'a self, bucket: &'a str) -> BoxFuture<'a, Result<(), CapabilityError>>;

    /// One operation on an opened bucket.
    fn kv<'a>(
        &'a self,
        bucket: &'a str,
        op: KvOp,
    ) -> BoxFuture<'a, Result<KvOutcome, CapabilityError>>;

    /// One runtime configuration value.
    fn config_get<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, CapabilityError>>;

    /// Every runtime configuration value the function may read.
    fn config_get_all(&self) -> BoxFuture<'_, Result<Vec<(String, String)>, CapabilityError>>;

    /// An outbound HTTP request with its body read in full. A policy
    /// refusal of a function-to-function call is an HTTP response (403),
    /// like any server refusing a client; [`OutboundError`] is for
    /// requests that never reach a server.
    ///
    /// The URI is absolute (scheme, authority, path and query as the guest
    /// set them) and the `host` header equals the authority. Every other
    /// header is the guest's own: strip or overwrite any header the
    /// callee would trust (caller identity, tenant) before forwarding. The
    /// body is at most [`limits::MAX_OUTBOUND_BODY`] bytes; a response
    /// body over that limit reaches the guest as `HTTP-response-body-size`.
    fn outbound(
        &self,
        request: http::Request<Bytes>,
    ) -> BoxFuture<'_, Result<http::Response<Bytes>, OutboundError>>;

    /// The sandbox refused a call itself ([`SandboxRefusal`]); record it.
    /// Called once per refusal, after the guest has its error.
    fn refused(&self, refusal: SandboxRefusal) -> BoxFuture<'_, ()>;
}

/// No capabilities at all: every key-value and configuration call is
/// denied and every outbound request refused. For instances that run
/// without a platform behind them (benchmarks, `instantiate_only`).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoCapabilities;

/// The refusal of every key-value call without a platform behind it.
fn no_kv_access(bucket: &str) -> CapabilityError {
    CapabilityError::Denied(format!(
        "no key-value access is granted (bucket `{}`)",
        bucket.escape_debug()
    ))
}

impl HostCapabilities for NoCapabilities {
    fn kv_open<'a>(&'a self, bucket: &'a str) -> BoxFuture<'a, Result<(), CapabilityError>> {
        Box::pin(async move { Err(no_kv_access(bucket)) })
    }

    fn kv<'a>(
        &'a self,
        bucket: &'a str,
        _op: KvOp,
    ) -> BoxFuture<'a, Result<KvOutcome, CapabilityError>> {
        Box::pin(async move { Err(no_kv_access(bucket)) })
    }

    fn config_get<'a>(
        &'a self,
        _key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, CapabilityError>> {
        Box::pin(async {
            Err(CapabilityError::Denied(
                "no configuration is granted".into(),
            ))
        })
    }

    fn config_get_all(&self) -> BoxFuture<'_, Result<Vec<(String, String)>, CapabilityError>> {
        Box::pin(async {
            Err(CapabilityError::Denied(
                "no configuration is granted".into(),
            ))
        })
    }

    fn outbound(
        &self,
        request: http::Request<Bytes>,
    ) -> BoxFuture<'_, Result<http::Response<Bytes>, OutboundError>> {
        let host = request
            .uri()
            .authority()
            .map(|a| a.as_str().escape_debug().to_string())
            .unwrap_or_default();
        Box::pin(async move { Err(OutboundError::Denied(host)) })
    }

    fn refused(&self, refusal: SandboxRefusal) -> BoxFuture<'_, ()> {
        // Nothing to record to: no platform stands behind these instances.
        tracing::debug!(capability = refusal.capability, reason = %refusal.reason, "sandbox refused a call");
        Box::pin(async {})
    }
}
