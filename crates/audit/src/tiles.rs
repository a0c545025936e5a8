//! The tree served as a C2SP `tlog-tiles` log (<https://c2sp.org/tlog-tiles>): hash tiles
//! and entry bundles of the tree of the latest signed checkpoint, so that existing tlog
//! clients (mirrors, witnesses, monitors) can fetch and verify the log.
//!
//! - A tile at level `L`, index `N`, holds the tree hashes at height `8 L` with indices
//!   `256 N .. 256 N + 256`: `MTH(D[(256 N + i) 256^L : (256 N + i + 1) 256^L])`.
//!   Level 0 holds leaf hashes, level 1 the roots of full 256-leaf tiles (both stored);
//!   higher levels are computed from the level-1 hashes (each a perfect subtree).
//! - A full tile is 256 hashes; a partial tile (`.p/W`) the first `W` (1..=255). A tile is
//!   served only if the tree of the latest checkpoint holds all of its hashes: partial
//!   tiles of every earlier tree size are therefore served too (they are prefixes).
//! - An entry bundle holds the leaf bytes of the tile's records, each prefixed with its
//!   length as a big-endian uint16.
//!
//! # Trust
//! Trusts nothing in the request path: [`TilePath::parse`] accepts only the canonical
//! encoding (no leading zeros, `x`-prefixed elements but the last, widths 1..=255), so no
//! two paths name one resource. Reads at most one tile's worth of rows per request
//! (level 2 and up read the level-1 hashes below them: 256 per hash at level 2).

use zerofn_store::Store;

use crate::merkle::{self, Hash};
use crate::tree::{leaf_bytes, TILE_HEIGHT};
use crate::AuditError;

const WIDTH: u64 = 1 << TILE_HEIGHT;
/// Highest level the spec allows.
const MAX_LEVEL: u8 = 63;
/// Largest entry an entry bundle can carry (a uint16 length).
pub const MAX_ENTRY: usize = u16::MAX as usize;

/// What a `tile/...` path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileKind {
    /// Hashes at level `L`.
    Hashes(u8),
    /// Entry bundle (`tile/entries/...`).
    Entries,
}

/// A parsed, canonical tile path: `<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TilePath {
    pub kind: TileKind,
    pub index: u64,
    /// `None`: the full tile; `Some(w)`: the partial tile of width `w` (1..=255).
    pub width: Option<u8>,
}

/// Why a tile path was refused, or a tile cannot be served.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TileError {
    #[error("`{0}` is not a tlog-tiles path (`<L>/<N>[.p/<W>]` or `entries/<N>[.p/<W>]`, N as `x001/x234/067`)")]
    Malformed(String),
    #[error("the tree of the latest checkpoint (size {size}) has no tile `{path}`")]
    NotInTree { path: String, size: u64 },
    #[error("entry bundle `{path}` holds records pruned from the log (records 1..={through}); its hash tiles still serve")]
    Pruned { path: String, through: i64 },
}

impl TilePath {
    /// Parse the part of a URL path after `tile/`.
    pub fn parse(path: &str) -> Result<TilePath, TileError> {
        let bad = || TileError::Malformed(path.escape_debug().to_string());
        let mut segments: Vec<&str> = path.split('/').collect();
        if segments.len() < 2 || segments.len() > 10 {
            return Err(bad());
        }
        let first = segments.remove(0);
        let kind = if first == "entries" {
            TileKind::Entries
        } else {
            let level = decimal(first).ok_or_else(bad)?;
            TileKind::Hashes(
                u8::try_from(level)
                    .ok()
                    .filter(|l| *l <= MAX_LEVEL)
                    .ok_or_else(bad)?,
            )
        };
        // `.p/<W>`: the last index element ends in `.p`, and one more segment is the width.
        let mut width = None;
        let partial = segments
            .len()
            .checked_sub(2)
            .and_then(|i| segments.get(i))
            .is_some_and(|s| s.ends_with(".p"));
        if partial {
            let w = segments.pop().ok_or_else(bad)?;
            let w = decimal(w)
                .and_then(|w| u8::try_from(w).ok())
                .filter(|w| *w >= 1)
                .ok_or_else(bad)?;
            width = Some(w);
            let last = segments.pop().ok_or_else(bad)?;
            segments.push(last.strip_suffix(".p").ok_or_else(bad)?);
        }
        let Some((last, upper)) = segments.split_last() else {
            return Err(bad());
        };
        let mut index: u64 = 0;
        for (i, element) in upper.iter().enumerate() {
            let digits = element.strip_prefix('x').ok_or_else(bad)?;
            let value = three_digits(digits).ok_or_else(bad)?;
            // Canonical: no leading `x000`.
            if i == 0 && value == 0 {
                return Err(bad());
            }
            index = index
                .checked_mul(1000)
                .and_then(|n| n.checked_add(value))
                .ok_or_else(bad)?;
        }
        let value = three_digits(last).ok_or_else(bad)?;
        index = index
            .checked_mul(1000)
            .and_then(|n| n.checked_add(value))
            .ok_or_else(bad)?;
        Ok(TilePath { kind, index, width })
    }
}

/// A decimal number with no leading zeros (and at most 19 digits).
fn decimal(s: &str) -> Option<u64> {
    let canonical = !s.is_empty()
        && s.len() <= 19
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

/// Exactly three ASCII digits.
fn three_digits(s: &str) -> Option<u64> {
    (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// How many hashes the tree of `size` leaves has at tile level `level` (height `8 level`).
fn hashes_at(size: u64, level: u8) -> u64 {
    size.checked_shr(u32::from(level) * TILE_HEIGHT)
        .unwrap_or(0)
}

/// The range of hash indices a tile path covers, if the tree of `size` holds it.
fn covered(tile: &TilePath, size: u64) -> Result<(u64, u64), TileError> {
    let level = match tile.kind {
        TileKind::Hashes(l) => l,
        TileKind::Entries => 0,
    };
    let width = tile.width.map_or(WIDTH, u64::from);
    let not_in_tree = || TileError::NotInTree {
        path: format!(
            "{}/{}{}",
            match tile.kind {
                TileKind::Hashes(l) => l.to_string(),
                TileKind::Entries => "entries".into(),
            },
            tile.index,
            tile.width.map(|w| format!(".p/{w}")).unwrap_or_default()
        ),
        size,
    };
    let start = tile.index.checked_mul(WIDTH).ok_or_else(not_in_tree)?;
    let end = start.checked_add(width).ok_or_else(not_in_tree)?;
    if end > hashes_at(size, level) {
        return Err(not_in_tree());
    }
    Ok((start, end))
}

/// The bytes of hash tile `tile` of the tree of `size` leaves (the latest checkpoint's).
pub fn hash_tile(store: &Store, size: u64, tile: &TilePath) -> Result<Vec<u8>, TileOrAudit> {
    let TileKind::Hashes(level) = tile.kind else {
        return entry_bundle(store, size, tile);
    };
    let (start, end) = covered(tile, size)?;
    let hashes: Vec<Hash> = match level {
        0 => crate::tree::stored_level(store, 0, start, end)?,
        1 => crate::tree::stored_level(store, TILE_HEIGHT, start, end)?,
        _ => {
            // Each hash is the root of 256^(level-1) level-1 hashes (a perfect subtree).
            let per = WIDTH.pow(u32::from(level) - 1);
            let mut out = Vec::new();
            for i in start..end {
                let from = i * per;
                let mut below = crate::tree::stored_level(store, TILE_HEIGHT, from, from + per)?;
                out.push(merkle::root(below.as_mut_slice(), per)?);
            }
            out
        }
    };
    Ok(hashes.concat())
}

/// The entry bundle `tile` of the tree of `size` leaves: each record's leaf bytes, with a
/// big-endian uint16 length before it.
pub fn entry_bundle(store: &Store, size: u64, tile: &TilePath) -> Result<Vec<u8>, TileOrAudit> {
    let (start, end) = covered(tile, size)?;
    match crate::tree::refuse_pruned(store, i64::try_from(start + 1).unwrap_or(i64::MAX)) {
        Err(AuditError::Pruned { through, .. }) => {
            return Err(TileError::Pruned {
                path: format!("entries/{}", tile.index),
                through,
            }
            .into())
        }
        other => other?,
    }
    let rows = store
        .audit_page_blocking(
            i64::try_from(start).unwrap_or(i64::MAX),
            u32::try_from(end - start).unwrap_or(0),
        )
        .map_err(AuditError::from)?;
    let mut out = Vec::new();
    let mut expect = start + 1;
    for r in rows {
        if u64::try_from(r.seq).ok() != Some(expect) {
            return Err(AuditError::NoRecord(i64::try_from(expect).unwrap_or(i64::MAX)).into());
        }
        let leaf = leaf_bytes(&r)?;
        let len = u16::try_from(leaf.len()).map_err(|_| AuditError::EntryTooLarge {
            seq: r.seq,
            bytes: leaf.len(),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&leaf);
        expect += 1;
    }
    if expect != end + 1 {
        return Err(AuditError::NoRecord(i64::try_from(expect).unwrap_or(i64::MAX)).into());
    }
    Ok(out)
}

/// A tile that is not there, or a log that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TileOrAudit {
    #[error(transparent)]
    Tile(#[from] TileError),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_parse() {
        for (path, kind, index, width) in [
            ("0/000", TileKind::Hashes(0), 0, None),
            ("0/067", TileKind::Hashes(0), 67, None),
            ("1/x001/x234/067", TileKind::Hashes(1), 1_234_067, None),
            ("0/000.p/17", TileKind::Hashes(0), 0, Some(17)),
            ("63/x001/000.p/255", TileKind::Hashes(63), 1000, Some(255)),
            ("entries/001", TileKind::Entries, 1, None),
            ("entries/x002/003.p/1", TileKind::Entries, 2003, Some(1)),
        ] {
            assert_eq!(
                TilePath::parse(path),
                Ok(TilePath { kind, index, width }),
                "{path}"
            );
        }
    }

    #[test]
    fn non_canonical_and_hostile_paths_are_refused() {
        for (path, why) in [
            ("", "empty"),
            ("0", "no index"),
            ("00/000", "leading zero level"),
            ("64/000", "level above 63"),
            ("0/0", "index element not three digits"),
            ("0/1234", "index element of four digits"),
            ("0/x000/001", "leading x000"),
            ("0/001/002", "upper element without x"),
            ("0/x001", "last element with x"),
            ("0/000.p/0", "width 0"),
            ("0/000.p/256", "width above 255"),
            ("0/000.p/017", "width with a leading zero"),
            ("0/000.p", "partial without width"),
            ("0/000/", "trailing slash"),
            ("0/../000", "dot segment"),
            (
                "0/x999/x999/x999/x999/x999/x999/x999/999",
                "index overflows u64",
            ),
            ("entries", "entries without index"),
            ("-1/000", "negative level"),
            ("0/+12", "sign"),
        ] {
            assert!(
                matches!(TilePath::parse(path), Err(TileError::Malformed(_))),
                "{why}: `{path}` was accepted"
            );
        }
    }

    #[test]
    fn coverage_follows_the_spec_example() {
        // "a tree of size 70,000 will be represented by 273 full level 0 tiles, one partial
        // level 0 tile of width 112, one full level 1 tile, one partial level 1 tile of
        // width 17, and one partial level 2 tile of width 1."
        let size = 70_000;
        let t = |kind, index, width| TilePath { kind, index, width };
        assert!(covered(&t(TileKind::Hashes(0), 272, None), size).is_ok());
        assert!(covered(&t(TileKind::Hashes(0), 273, None), size).is_err());
        assert!(covered(&t(TileKind::Hashes(0), 273, Some(112)), size).is_ok());
        assert!(covered(&t(TileKind::Hashes(0), 273, Some(113)), size).is_err());
        assert!(covered(&t(TileKind::Hashes(1), 0, None), size).is_ok());
        assert!(covered(&t(TileKind::Hashes(1), 1, Some(17)), size).is_ok());
        assert!(covered(&t(TileKind::Hashes(1), 1, Some(18)), size).is_err());
        assert!(covered(&t(TileKind::Hashes(2), 0, Some(1)), size).is_ok());
        assert!(covered(&t(TileKind::Hashes(2), 0, Some(2)), size).is_err());
        assert!(covered(&t(TileKind::Hashes(3), 0, Some(1)), size).is_err());
        assert!(covered(&t(TileKind::Hashes(63), u64::MAX, None), size).is_err());
    }
}
