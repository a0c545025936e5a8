//! Files of the CA directory: created atomically, never overwritten, private keys `0600`.
//!
//! A new file is written to a temporary name in the same directory, flushed to disk, then
//! hard-linked to its final name. `link(2)` fails if the name exists, unlike `rename(2)`,
//! so an existing key is never replaced, not even by a concurrent process; a reader never
//! sees a half-written file. Unix only (permission bits, `link`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::error::IdentityError;

/// Mode of private key files.
pub(crate) const PRIVATE_MODE: u32 = 0o600;
/// Mode of public files (the CA certificate).
pub(crate) const PUBLIC_MODE: u32 = 0o644;
/// Mode of a CA directory this crate creates.
const DIR_MODE: u32 = 0o700;
/// Largest file read from the CA directory; keys and a certificate are a few hundred bytes.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Create `dir` (and parents, mode `0700`) if it is missing.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), IdentityError> {
    let error = |source| IdentityError::CaDirectory {
        path: dir.to_path_buf(),
        source,
    };
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(error(io::Error::new(
            io::ErrorKind::NotADirectory,
            "not a directory",
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(error),
        Err(e) => Err(error(e)),
    }
}

/// Whether `path` exists (a dangling symlink counts as existing, so it is not replaced).
pub(crate) fn exists(path: &Path) -> Result<bool, IdentityError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(IdentityError::CaFileRead {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Read a private key file, refusing one that group or others may read or write.
pub(crate) fn read_private(path: &Path) -> Result<Zeroizing<String>, IdentityError> {
    let file = open(path)?;
    let mode = file
        .metadata()
        .map_err(|source| read_error(path, source))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(IdentityError::CaKeyPermissions {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    let mut text = Zeroizing::new(String::new());
    read_limited(file, path, &mut text)?;
    Ok(text)
}

/// Read a public file.
pub(crate) fn read_public(path: &Path) -> Result<String, IdentityError> {
    let mut text = String::new();
    read_limited(open(path)?, path, &mut text)?;
    Ok(text)
}

/// Write `contents` to the new file `path` with permission bits `mode`; fails with
/// [`IdentityError::CaFileExists`] if `path` exists.
pub(crate) fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), IdentityError> {
    let write_error = |source| IdentityError::CaFileWrite {
        path: path.to_path_buf(),
        source,
    };
    let tmp = temp_path(path);
    let result = write_temp(&tmp, contents, mode).and_then(|()| fs::hard_link(&tmp, path));
    // The temporary name goes whether or not the link worked; a failure to remove it
    // leaves a stray file that holds a key only the owner can read.
    let _ = fs::remove_file(&tmp);
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(IdentityError::CaFileExists {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(write_error(e)),
    }
    // Make the new directory entry durable too.
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(write_error)?;
    }
    Ok(())
}

fn write_temp(tmp: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(tmp)?;
    // The umask may have cleared bits of `mode`; set exactly `mode`.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(contents)?;
    file.sync_all()
}

fn temp_path(path: &Path) -> PathBuf {
    let mut nonce = [0u8; 8];
    OsRng.fill_bytes(&mut nonce);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", hex::encode(nonce)))
}

fn open(path: &Path) -> Result<File, IdentityError> {
    File::open(path).map_err(|source| read_error(path, source))
}

fn read_limited(file: File, path: &Path, into: &mut String) -> Result<(), IdentityError> {
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(into)
        .map_err(|source| read_error(path, source))?;
    if into.len() as u64 > MAX_FILE_BYTES {
        return Err(read_error(
            path,
            io::Error::new(io::ErrorKind::InvalidData, "file is larger than 64 KiB"),
        ));
    }
    Ok(())
}

fn read_error(path: &Path, source: io::Error) -> IdentityError {
    IdentityError::CaFileRead {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_new_sets_mode_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        write_new(&path, b"first", PRIVATE_MODE).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let err = write_new(&path, b"second", PRIVATE_MODE).unwrap_err();
        assert!(matches!(err, IdentityError::CaFileExists { .. }), "{err}");
        assert_eq!(&*read_private(&path).unwrap(), "first");
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("k.pem")]);
    }

    #[test]
    fn read_private_refuses_group_readable_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        write_new(&path, b"key", PUBLIC_MODE).unwrap();
        let err = read_private(&path).unwrap_err();
        assert!(
            matches!(err, IdentityError::CaKeyPermissions { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn ensure_dir_creates_private_directories() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("a/b");
        ensure_dir(&ca).unwrap();
        assert_eq!(
            fs::metadata(&ca).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let file = dir.path().join("f");
        fs::write(&file, b"").unwrap();
        assert!(matches!(
            ensure_dir(&file),
            Err(IdentityError::CaDirectory { .. })
        ));
    }
}
