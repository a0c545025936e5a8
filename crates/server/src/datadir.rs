//! The data directory: database, code cache, operator token and the file
//! telling clients where the API listens.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::auth::OperatorToken;
use crate::ServerError;

/// File with the API and gateway URLs of the running platform.
pub const API_ENDPOINT_FILE: &str = "api.json";
/// The platform CA certificate (PEM), relative to the data directory: the
/// trust bundle clients of `https://` control API URLs verify the server with.
pub const CA_BUNDLE_FILE: &str = "identity/ca.pem";
/// File with the operator token (mode 0600).
pub const TOKEN_FILE: &str = "operator-token";

/// Where the running platform can be reached; written at start.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ApiEndpoint {
    pub url: String,
    pub gateway_url: String,
}

/// The per-user default: `$XDG_DATA_HOME/zerofn` or `~/.local/share/zerofn`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("zerofn");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/zerofn"),
        None => PathBuf::from(".zerofn"),
    }
}

/// A prepared data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let what = what.into();
    move |source| ServerError::Io { what, source }
}

impl DataDir {
    /// Create the directory (mode 0700) if needed.
    pub fn prepare(root: &Path) -> Result<DataDir, ServerError> {
        fs::create_dir_all(root).map_err(io(format!("creating `{}`", root.display())))?;
        fs::set_permissions(root, fs::Permissions::from_mode(0o700))
            .map_err(io(format!("restricting `{}`", root.display())))?;
        Ok(DataDir {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// The operator token, created on first start.
    pub(crate) fn operator_token(&self) -> Result<OperatorToken, ServerError> {
        let path = self.root.join(TOKEN_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(OperatorToken::new(text.trim().to_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let token = OperatorToken::generate();
                write_private(&path, token.expose().as_bytes())?;
                Ok(token)
            }
            Err(e) => Err(io(format!("reading `{}`", path.display()))(e)),
        }
    }

    pub(crate) fn write_api_endpoint(&self, endpoint: &ApiEndpoint) -> Result<(), ServerError> {
        let path = self.root.join(API_ENDPOINT_FILE);
        let tmp = self.root.join(format!("{API_ENDPOINT_FILE}.tmp"));
        let text = serde_json::to_string_pretty(endpoint).unwrap_or_default();
        fs::write(&tmp, text).map_err(io(format!("writing `{}`", tmp.display())))?;
        fs::rename(&tmp, &path).map_err(io(format!("writing `{}`", path.display())))
    }
}

/// Create `path` with mode 0600 and write `bytes`; refuses to overwrite.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ServerError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(format!("creating `{}`", path.display())))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io(format!("writing `{}`", path.display())))
}
