use std::net::SocketAddr;
use std::path::PathBuf;

/// Failures of the platform as a whole (start-up, data directory).
/// Request-level failures are `control::ControlError`.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on `{addr}`; is another process using it?")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The data directory or a file in it may not be used (in use, unsafe mode).
    #[error("{0}")]
    DataDir(String),
    #[error("no zerofn database at `{}`; is this a data directory?", .0.display())]
    NoDatabase(PathBuf),
    #[error("audit log broken: `{}` has no `audit` table; the log was dropped", .0.display())]
    AuditMissing(PathBuf),
    #[error("audit log broken: `{}` has no audit records, but a platform that started has at least its `platform.start` record; the log was emptied", .0.display())]
    AuditEmpty(PathBuf),
    #[error(transparent)]
    Store(#[from] zerofn_store::StoreError),
    #[error(transparent)]
    Audit(#[from] zerofn_audit::AuditError),
    #[error(transparent)]
    Sandbox(#[from] zerofn_sandbox::SandboxError),
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
    #[error(transparent)]
    Identity(#[from] zerofn_identity::IdentityError),
    #[error("cannot set up TLS for the control API: {0}")]
    Tls(String),
    #[error("cannot set up TLS for the gateway: {0}")]
    GatewayTls(#[from] zerofn_listener::TlsFileError),
    #[error("demo: {0}")]
    Demo(String),
    #[error(transparent)]
    Telemetry(#[from] zerofn_telemetry::TelemetryError),
}
