//! The data directory: database, code cache, operator token and the file
//! telling clients where the API listens; and the lock that keeps a second
//! platform off a directory in use.
//!
//! # Trust
//! Trusts the directory only when no one but its owner can write to it: an
//! existing directory writable by group or others is refused (never
//! chmodded: it may be `/tmp` or a home directory), a new one is created
//! 0700. The operator token is used only when no one but the owner can read
//! it.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
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
/// The lock file a running platform holds (`flock`), with its pid.
pub const LOCK_FILE: &str = "lock";

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

/// The exclusive lock on a data directory: held (and the directory kept
/// from any other `zerofn up`) until dropped. The kernel releases it when
/// the process ends, however it ends.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDir {
    /// Create the directory (mode 0700) if needed; refuse an existing one
    /// that group or others may write to. An existing directory's mode is
    /// never changed.
    pub fn prepare(root: &Path) -> Result<DataDir, ServerError> {
        match fs::metadata(root) {
            Ok(meta) => {
                if !meta.is_dir() {
                    return Err(ServerError::DataDir(format!(
                        "data directory `{}` is not a directory",
                        root.display()
                    )));
                }
                let mode = meta.permissions().mode() & 0o7777;
                if mode & 0o022 != 0 {
                    return Err(ServerError::DataDir(format!(
                        "data directory `{}` is writable by group or others (mode {mode:04o}); \
                         use a directory only you can write to (a new one is created with mode 0700), \
                         or `chmod go-w` it if it is yours alone",
                        root.display()
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                    fs::create_dir_all(parent)
                        .map_err(io(format!("creating `{}`", parent.display())))?;
                }
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(root)
                    .map_err(io(format!("creating `{}`", root.display())))?;
            }
            Err(e) => return Err(io(format!("reading `{}`", root.display()))(e)),
        }
        Ok(DataDir {
            root: root.to_path_buf(),
        })
    }

    /// Take the directory's exclusive lock, without waiting, and write this
    /// process's id into the lock file. Refused, naming the holder, while
    /// another `zerofn up` runs on it.
    pub fn lock(&self) -> Result<DataDirLock, ServerError> {
        let path = self.root.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io(format!("opening `{}`", path.display())))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut text = String::new();
                let _ = (&file).take(32).read_to_string(&mut text);
                let holder = match text.trim().parse::<u32>() {
                    Ok(pid) => format!("pid {pid}"),
                    Err(_) => "pid unknown".to_owned(),
                };
                return Err(ServerError::DataDir(format!(
                    "data directory `{}` is in use by another zerofn ({holder})",
                    self.root.display()
                )));
            }
            Err(e) => {
                return Err(io(format!("locking `{}`", path.display()))(e.into()));
            }
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.sync_all())
            .map_err(io(format!("writing `{}`", path.display())))?;
        Ok(DataDirLock { _file: file })
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
        match read_private(&path)? {
            Some(text) => Ok(OperatorToken::new(text.trim().to_owned())),
            None => {
                let token = OperatorToken::generate();
                write_private(&path, token.expose().as_bytes())?;
                Ok(token)
            }
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

/// Read a secret file (`None` if it does not exist), refusing it if group
/// or others have any access: a token others could read is no longer the
/// operator's alone.
fn read_private(path: &Path) -> Result<Option<String>, ServerError> {
    read_private_as(path, "operator token")
}

/// [`read_private`] for any secret file, named `what` in errors.
pub(crate) fn read_private_as(path: &Path, what: &str) -> Result<Option<String>, ServerError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(format!("reading `{}`", path.display()))(e)),
    };
    let mode = file
        .metadata()
        .map_err(io(format!("reading `{}`", path.display())))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(ServerError::DataDir(format!(
            "{what} `{}` is accessible to group or others (mode {mode:04o}); \
             run `chmod 600 {}` and consider replacing the {}",
            path.display(),
            path.display(),
            what.rsplit(' ').next().unwrap_or(what)
        )));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(io(format!("reading `{}`", path.display())))?;
    Ok(Some(text))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_new_directory_is_created_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a/b/data");
        DataDir::prepare(&root).unwrap();
        assert_eq!(mode(&root), 0o700);
    }

    /// `/tmp`, or a directory shared with a group: refused, and left as it was.
    #[test]
    fn an_existing_directory_others_can_write_is_refused_and_not_changed() {
        let tmp = tempfile::tempdir().unwrap();
        for bad in [0o1777, 0o777, 0o775, 0o757] {
            let root = tmp.path().join(format!("d{bad:o}"));
            fs::create_dir(&root).unwrap();
            fs::set_permissions(&root, fs::Permissions::from_mode(bad)).unwrap();
            let err = DataDir::prepare(&root).unwrap_err().to_string();
            assert!(err.contains("writable by group or others"), "{err}");
            assert!(err.contains(&format!("mode {bad:04o}")), "{err}");
            assert_eq!(mode(&root), bad, "the mode was changed");
        }
    }

    /// A home directory (0755) is used as it is: never chmodded.
    #[test]
    fn an_existing_private_enough_directory_keeps_its_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("home");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        DataDir::prepare(&root).unwrap();
        assert_eq!(mode(&root), 0o755);
    }

    #[test]
    fn a_file_in_place_of_the_directory_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("file");
        fs::write(&root, b"").unwrap();
        let err = DataDir::prepare(&root).unwrap_err().to_string();
        assert!(err.contains("is not a directory"), "{err}");
    }

    /// The lock is exclusive while held (another open of the lock file, as
    /// another process makes, is refused naming the holder) and free once
    /// dropped.
    #[test]
    fn the_lock_is_exclusive_and_names_its_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::prepare(&tmp.path().join("data")).unwrap();
        let held = data.lock().unwrap();
        assert_eq!(mode(&data.root().join(LOCK_FILE)), 0o600);
        let err = data.lock().unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "data directory `{}` is in use by another zerofn (pid {})",
                data.root().display(),
                std::process::id()
            )
        );
        drop(held);
        let again = data.lock().unwrap();
        drop(again);
    }

    #[test]
    fn an_operator_token_others_can_read_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::prepare(&tmp.path().join("data")).unwrap();
        let first = data.operator_token().unwrap();
        let path = data.root().join(TOKEN_FILE);
        assert_eq!(mode(&path), 0o600);
        for bad in [0o644, 0o640, 0o604, 0o660] {
            fs::set_permissions(&path, fs::Permissions::from_mode(bad)).unwrap();
            let err = data.operator_token().unwrap_err().to_string();
            assert!(
                err.contains(&format!("chmod 600 {}", path.display())),
                "{err}"
            );
            assert!(err.contains(&format!("mode {bad:04o}")), "{err}");
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let again = data.operator_token().unwrap();
        assert_eq!(again.expose(), first.expose());
    }
}
