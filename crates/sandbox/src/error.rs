use std::path::PathBuf;
use std::time::Duration;

/// Errors while building the sandbox or loading a function.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid sandbox configuration: {0}")]
    Config(String),
    #[error("cannot use the code cache directory `{path}`")]
    CacheDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("component `{digest}` does not compile: {reason}")]
    Compile { digest: String, reason: String },
    #[error("component `{digest}` is not a `wasi:http/proxy` component: {reason}")]
    NotProxyWorld { digest: String, reason: String },
    #[error("`memory_mb` {memory_mb} exceeds the platform maximum of {max_mb} MiB")]
    MemoryTooLarge { memory_mb: u32, max_mb: u32 },
}

/// Why an invocation produced no (valid) response. Guest-controlled text is
/// never part of these messages; it goes to operator logs, escaped.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("function exceeded its time limit of {}ms", after.as_millis())]
    Timeout { after: Duration },
    #[error("function exceeded its memory limit of {limit_mb} MiB")]
    MemoryLimit { limit_mb: u32 },
    #[error("function trapped")]
    Trap { detail: String },
    #[error("function returned without sending a response")]
    NoResponse,
    #[error("function responded with error `{0}`")]
    GuestError(String),
    #[error("function response exceeds the limit of {limit} bytes")]
    ResponseTooLarge { limit: usize },
    #[error("no sandbox slot free within {}ms; retry later", after.as_millis())]
    Busy { after: Duration },
    #[error("internal sandbox error")]
    Internal { detail: String },
}

impl InvokeError {
    /// Short machine-readable kind, used in API errors and audit reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            InvokeError::Timeout { .. } => "timeout",
            InvokeError::MemoryLimit { .. } => "memory_limit",
            InvokeError::Trap { .. } => "trap",
            InvokeError::NoResponse => "no_response",
            InvokeError::GuestError(_) => "guest_error",
            InvokeError::ResponseTooLarge { .. } => "response_too_large",
            InvokeError::Busy { .. } => "busy",
            InvokeError::Internal { .. } => "internal",
        }
    }
}
