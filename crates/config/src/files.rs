//! Reading a configuration directory into memory, bounded, before anything parses it.
//!
//! Every file the loader may read is read here, once, into a [`ConfigFiles`] map keyed by
//! its path relative to the directory's root (`/`-separated). Later stages resolve every
//! reference (`keys = ["keys/ci.pub"]`) inside that map only, so a reference can never
//! reach a file outside the directory: `..` and absolute paths are refused when a reference
//! is resolved, and symbolic links are refused when the directory is read (a link is
//! neither followed nor copied, wherever it points).
//!
//! # Trust
//! Trusts nothing in the directory: names, sizes and counts are bounded here. The `.git`
//! directory is not read, except its `HEAD` (and the ref `HEAD` names) to record which
//! commit was applied.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::ConfigError;

/// Largest text file (TOML, Cedar, PEM, JSON) the loader reads.
pub const MAX_TEXT_FILE: u64 = 1024 * 1024;
/// Largest component (`*.wasm`) the loader reads: the control API's deploy limit is 128 MiB
/// of base64, so no bigger component could be deployed anyway.
pub const MAX_COMPONENT_FILE: u64 = 64 * 1024 * 1024;
/// Largest directory, all files together.
pub const MAX_TOTAL: u64 = 256 * 1024 * 1024;
/// Most files in a directory.
pub const MAX_FILES: usize = 10_000;
/// Deepest nesting below the root.
pub const MAX_DEPTH: usize = 8;

/// The files of a configuration directory, by relative path, and where it came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigFiles {
    files: BTreeMap<String, Vec<u8>>,
    /// The Git commit checked out, when the directory is a Git checkout.
    pub git_commit: Option<String>,
}

impl ConfigFiles {
    /// An in-memory directory (tests, and the server, which receives the files).
    pub fn from_map(files: BTreeMap<String, Vec<u8>>) -> Result<ConfigFiles, ConfigError> {
        if files.len() > MAX_FILES {
            return Err(ConfigError::TooManyFiles { max: MAX_FILES });
        }
        let mut total = 0u64;
        for (path, bytes) in &files {
            check_relative(path)?;
            let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
            check_size(path, size)?;
            total = total.saturating_add(size);
        }
        if total > MAX_TOTAL {
            return Err(ConfigError::TooLarge {
                file: ".".into(),
                max: MAX_TOTAL,
            });
        }
        Ok(ConfigFiles {
            files,
            git_commit: None,
        })
    }

    /// Read `root` recursively. Symbolic links anywhere in it are refused.
    pub fn read(root: &Path) -> Result<ConfigFiles, ConfigError> {
        let meta = std::fs::symlink_metadata(root).map_err(|e| io(root, e))?;
        if !meta.is_dir() {
            return Err(ConfigError::NotADirectory(root.display().to_string()));
        }
        let mut files = BTreeMap::new();
        let mut total = 0u64;
        walk(root, "", 0, &mut files, &mut total)?;
        let mut out = ConfigFiles::from_map(files)?;
        out.git_commit = git_head(root);
        Ok(out)
    }

    /// The bytes of `path`, if the directory holds it.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }

    /// Every path, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// The files as a map (to send them to the server).
    pub fn into_map(self) -> BTreeMap<String, Vec<u8>> {
        self.files
    }

    /// The directory's content digest: SHA-256 over every path and the SHA-256 of its
    /// bytes, in path order (`sha256:<hex>`). Renaming, adding, removing or changing any
    /// file changes it; the order files were read in does not.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (path, bytes) in &self.files {
            h.update(path.as_bytes());
            h.update([0]);
            h.update(Sha256::digest(bytes));
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    }

    /// Text of a file, as UTF-8.
    pub(crate) fn text(&self, path: &str) -> Result<&str, ConfigError> {
        let bytes = self.get(path).ok_or_else(|| ConfigError::Missing {
            file: path.to_owned(),
            referenced_from: None,
        })?;
        std::str::from_utf8(bytes).map_err(|_| ConfigError::Invalid {
            file: path.to_owned(),
            line: None,
            span: None,
            problem: "is not UTF-8 text".into(),
        })
    }
}

/// Resolve a reference made in file `from` (relative to `from`'s directory) to a path of
/// the map. Absolute paths, `..`, empty segments and backslashes are refused: a reference
/// stays inside the directory of the file that makes it.
pub(crate) fn resolve(from: &str, reference: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| ConfigError::Invalid {
        file: from.to_owned(),
        line: None,
        span: None,
        problem: format!("reference `{}` {why}", reference.escape_debug()),
    };
    if reference.starts_with('/') {
        return Err(bad("is absolute; name a file inside the directory"));
    }
    let mut parts: Vec<&str> = from.split('/').collect();
    parts.pop();
    for seg in reference.split('/') {
        match seg {
            "." => {}
            ".." => return Err(bad("leaves its directory (`..`)")),
            "" => return Err(bad("has an empty path segment")),
            s if s.contains('\\') || s.contains('\0') => {
                return Err(bad("holds a backslash or NUL"))
            }
            s => parts.push(s),
        }
    }
    Ok(parts.join("/"))
}

fn check_relative(path: &str) -> Result<(), ConfigError> {
    let ok = !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains(['\\', '\0']));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            file: path.escape_debug().to_string(),
            line: None,
            span: None,
            problem: "is not a plain relative path".into(),
        })
    }
}

fn check_size(path: &str, size: u64) -> Result<(), ConfigError> {
    let max = if path.ends_with(".wasm") {
        MAX_COMPONENT_FILE
    } else {
        MAX_TEXT_FILE
    };
    if size > max {
        return Err(ConfigError::TooLarge {
            file: path.to_owned(),
            max,
        });
    }
    Ok(())
}

fn io(path: &Path, e: std::io::Error) -> ConfigError {
    ConfigError::Io {
        path: path.display().to_string(),
        problem: e.to_string(),
    }
}

fn walk(
    dir: &Path,
    prefix: &str,
    depth: usize,
    files: &mut BTreeMap<String, Vec<u8>>,
    total: &mut u64,
) -> Result<(), ConfigError> {
    if depth > MAX_DEPTH {
        return Err(ConfigError::TooDeep {
            dir: prefix.to_owned(),
            max: MAX_DEPTH,
        });
    }
    let mut entries = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io(dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry
            .file_name()
            .into_string()
            .map_err(|n| ConfigError::Invalid {
                file: format!("{prefix}{}", n.to_string_lossy()),
                line: None,
                span: None,
                problem: "has a name that is not UTF-8".into(),
            })?;
        let rel = format!("{prefix}{name}");
        if depth == 0 && name == ".git" {
            continue;
        }
        // `symlink_metadata`: the entry itself, never what a link points to.
        let meta = std::fs::symlink_metadata(entry.path()).map_err(|e| io(&entry.path(), e))?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            return Err(ConfigError::Symlink(rel));
        }
        if kind.is_dir() {
            walk(&entry.path(), &format!("{rel}/"), depth + 1, files, total)?;
        } else if kind.is_file() {
            check_size(&rel, meta.len())?;
            if files.len() >= MAX_FILES {
                return Err(ConfigError::TooManyFiles { max: MAX_FILES });
            }
            *total = total.saturating_add(meta.len());
            if *total > MAX_TOTAL {
                return Err(ConfigError::TooLarge {
                    file: ".".into(),
                    max: MAX_TOTAL,
                });
            }
            let bytes = read_bounded(&entry.path(), &rel)?;
            files.insert(rel, bytes);
        } else {
            return Err(ConfigError::Invalid {
                file: rel,
                line: None,
                span: None,
                problem: "is neither a file nor a directory".into(),
            });
        }
    }
    Ok(())
}

/// Read at most the file's size limit, whatever its metadata said (it may grow meanwhile).
fn read_bounded(path: &Path, rel: &str) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read as _;
    let max = if rel.ends_with(".wasm") {
        MAX_COMPONENT_FILE
    } else {
        MAX_TEXT_FILE
    };
    let file = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| io(path, e))?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > max {
        return Err(ConfigError::TooLarge {
            file: rel.to_owned(),
            max,
        });
    }
    Ok(bytes)
}

/// The commit `.git/HEAD` names (directly, or through one ref), read as files: no Git
/// library, no `git` process. `None` when the directory is no checkout or the ref is
/// packed or unreadable (then nothing is recorded rather than something wrong).
fn git_head(root: &Path) -> Option<String> {
    let git = root.join(".git");
    let read = |p: &Path| -> Option<String> {
        let meta = std::fs::symlink_metadata(p).ok()?;
        if !meta.is_file() || meta.len() > 4096 {
            return None;
        }
        Some(std::fs::read_to_string(p).ok()?.trim().to_owned())
    };
    let head = read(&git.join("HEAD"))?;
    let commit = match head.strip_prefix("ref: ") {
        Some(r) if r.starts_with("refs/") && !r.split('/').any(|s| s == ".." || s.is_empty()) => {
            match read(&git.join(r)) {
                Some(c) => c,
                None => packed_ref(&read(&git.join("packed-refs"))?, r)?,
            }
        }
        Some(_) => return None,
        None => head,
    };
    let is_hex =
        |c: &String| (c.len() == 40 || c.len() == 64) && c.bytes().all(|b| b.is_ascii_hexdigit());
    is_hex(&commit).then_some(commit)
}

fn packed_ref(packed: &str, name: &str) -> Option<String> {
    packed.lines().find_map(|line| {
        let (hash, r) = line.split_once(' ')?;
        (r == name).then(|| hash.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_stay_inside_the_directory() {
        assert_eq!(
            resolve("tenants/acme/tenant.toml", "keys/ci.pub").unwrap(),
            "tenants/acme/keys/ci.pub"
        );
        assert_eq!(
            resolve("tenants/acme/tenant.toml", "./ci.pub").unwrap(),
            "tenants/acme/ci.pub"
        );
        for (reference, why) in [
            ("../other/keys/ci.pub", "`..`"),
            ("keys/../../x", "`..`"),
            ("/etc/passwd", "absolute"),
            ("keys//ci.pub", "empty"),
            ("keys\\..\\x", "backslash"),
        ] {
            let e = resolve("tenants/acme/tenant.toml", reference).unwrap_err();
            let text = e.to_string();
            assert!(text.contains("tenants/acme/tenant.toml"), "{text}");
            assert!(text.contains(why), "{reference}: {text}");
        }
    }

    #[test]
    fn symlinks_are_refused_wherever_they_point() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "x").unwrap();
        std::fs::create_dir_all(dir.path().join("tenants/acme")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret"),
            dir.path().join("tenants/acme/ci.pub"),
        )
        .unwrap();
        let e = ConfigFiles::read(dir.path()).unwrap_err();
        assert!(
            matches!(&e, ConfigError::Symlink(p) if p == "tenants/acme/ci.pub"),
            "{e}"
        );
        // A link to a directory too.
        std::fs::remove_file(dir.path().join("tenants/acme/ci.pub")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("tenants/other")).unwrap();
        assert!(matches!(
            ConfigFiles::read(dir.path()),
            Err(ConfigError::Symlink(_))
        ));
    }

    #[test]
    fn huge_files_are_refused_before_they_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(dir.path().join("control.cedar")).unwrap();
        f.set_len(MAX_TEXT_FILE + 1).unwrap();
        let e = ConfigFiles::read(dir.path()).unwrap_err();
        assert!(
            matches!(&e, ConfigError::TooLarge { file, .. } if file == "control.cedar"),
            "{e}"
        );
        let mut map = BTreeMap::new();
        map.insert("a.toml".to_owned(), vec![b' '; 2 * 1024 * 1024]);
        assert!(matches!(
            ConfigFiles::from_map(map),
            Err(ConfigError::TooLarge { .. })
        ));
    }

    #[test]
    fn sent_paths_must_be_plain_and_relative() {
        for path in ["../x", "/etc/passwd", "a//b", "a/./b", ""] {
            let mut map = BTreeMap::new();
            map.insert(path.to_owned(), b"x".to_vec());
            assert!(ConfigFiles::from_map(map).is_err(), "{path}");
        }
    }

    #[test]
    fn digest_depends_on_names_and_contents_and_git_head_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("control.cedar"), "a").unwrap();
        let one = ConfigFiles::read(dir.path()).unwrap();
        assert_eq!(one.git_commit, None);
        std::fs::write(dir.path().join("control.cedar"), "b").unwrap();
        let two = ConfigFiles::read(dir.path()).unwrap();
        assert_ne!(one.digest(), two.digest());
        std::fs::create_dir_all(dir.path().join(".git/refs/heads")).unwrap();
        std::fs::write(dir.path().join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        let commit = "0123456789abcdef0123456789abcdef01234567";
        std::fs::write(
            dir.path().join(".git/refs/heads/main"),
            format!("{commit}\n"),
        )
        .unwrap();
        let three = ConfigFiles::read(dir.path()).unwrap();
        assert_eq!(three.git_commit.as_deref(), Some(commit));
        // `.git` is not part of the content.
        assert_eq!(three.digest(), two.digest());
    }
}
