//! The hash chain: how a row's hash is computed, and how a whole chain is
//! checked.
//!
//! `hash = SHA-256(JSON array of every column in a fixed order, ending with
//! prev_hash)`, hex-encoded. A JSON array of strings, integers and nulls
//! has exactly one serde_json encoding, so the hash is canonical without a
//! bespoke format.

use sha2::{Digest as _, Sha256};
use zerofn_store::{AuditRow, PruneBoundary, Store};

use crate::{Action, AuditError, Outcome};

/// `prev_hash` of the first record.
pub const GENESIS_HASH: &str = zerofn_store::AUDIT_GENESIS_HASH;

const PAGE: u32 = 2048;

/// The newest record of a verified chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChainHead {
    pub records: i64,
    pub hash: String,
}

/// Acknowledged records still only in the audit journal (see
/// [`zerofn_store::AuditJournal`]), checked to continue the database's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRecords {
    pub first: i64,
    pub last: i64,
    pub count: usize,
}

/// Check the journal's records the database does not hold yet (a platform stopped
/// abnormally and not restarted) against the chain ending at `head`: each must link and
/// hash like a stored record. `None` when there are none.
pub fn verify_pending(
    store: &Store,
    head: (i64, &str),
) -> Result<Option<PendingRecords>, AuditError> {
    let rows = store.audit_journal_pending_blocking()?;
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(None);
    };
    let mut prev = (head.0, head.1.to_owned());
    for row in &rows {
        check_link((prev.0, &prev.1), row)?;
        prev = (row.seq, row.hash.clone());
    }
    Ok(Some(PendingRecords {
        first: first.seq,
        last: last.seq,
        count: rows.len(),
    }))
}

pub(crate) fn row_hash(r: &AuditRow) -> String {
    // A tuple serializes as a JSON array, with the same bytes as the
    // `json!([...])` of these fields but without building a `Value`.
    let mut hasher = Sha256::new();
    // Writing into a hasher cannot fail; serializing strings and integers
    // cannot either, so the error arm is unreachable in practice and still
    // yields a hash that will not verify rather than a panic.
    //
    // `detail` came later: a record without one hashes exactly as before
    // (13 elements), so older chains still verify; with one it is the
    // 13th element, before prev_hash.
    let written = serde_json::to_writer(HashWriter(&mut hasher), &HashedFields(r));
    if written.is_err() {
        return String::new();
    }
    hex::encode(hasher.finalize())
}

/// The hashed columns of a row as one JSON array: 13 elements without `detail` (so chains
/// written before `detail` existed still verify), 14 with it, `detail` before `prev_hash`.
/// Serialized as a tuple, which serde_json writes as the array `json!([...])` would.
struct HashedFields<'a>(&'a AuditRow);

impl serde::Serialize for HashedFields<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple as _;
        let r = self.0;
        let mut t = serializer.serialize_tuple(if r.detail.is_some() { 14 } else { 13 })?;
        t.serialize_element(&r.seq)?;
        t.serialize_element(&r.time)?;
        t.serialize_element(&r.actor)?;
        t.serialize_element(&r.action)?;
        t.serialize_element(&r.tenant)?;
        t.serialize_element(&r.function)?;
        t.serialize_element(&r.digest)?;
        t.serialize_element(&r.decision)?;
        t.serialize_element(&r.reason)?;
        t.serialize_element(&r.duration_us)?;
        t.serialize_element(&r.status)?;
        t.serialize_element(&r.invocation_id)?;
        if let Some(detail) = &r.detail {
            t.serialize_element(detail)?;
        }
        t.serialize_element(&r.prev_hash)?;
        t.end()
    }
}

/// Feeds serialized bytes straight into the hash.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Check one row against its predecessor's `(seq, hash)`.
pub(crate) fn check_link(prev: (i64, &str), r: &AuditRow) -> Result<(), AuditError> {
    check_link_hashed(prev, r, &row_hash(r))
}

/// [`check_link`] with the row's hash already computed (`hashed`, from
/// [`row_hash`]), so callers can hash many rows in parallel.
pub(crate) fn check_link_hashed(
    prev: (i64, &str),
    r: &AuditRow,
    hashed: &str,
) -> Result<(), AuditError> {
    let broken = |problem: String| AuditError::ChainBroken {
        seq: r.seq,
        problem,
    };
    if Some(r.seq) != prev.0.checked_add(1) {
        return Err(broken(format!(
            "expected sequence number {} (a record is missing or was inserted)",
            prev.0.saturating_add(1)
        )));
    }
    if r.prev_hash != prev.1 {
        return Err(broken(
            "its prev_hash does not match the previous record's hash".into(),
        ));
    }
    if hashed != r.hash {
        return Err(broken(
            "its contents do not match its hash (the record was modified)".into(),
        ));
    }
    Ok(())
}

/// Walk the whole chain from the first kept record (the genesis hash, or
/// the boundary of a pruning); the first broken link is an error naming its
/// sequence number.
pub fn verify_chain(store: &Store) -> Result<ChainHead, AuditError> {
    let mut walk = ChainWalk::start(store)?;
    loop {
        let page = store.audit_page_blocking(walk.prev.0, PAGE)?;
        if page.is_empty() {
            break;
        }
        for r in &page {
            walk.step(r)?;
        }
    }
    let (records, hash) = walk.finish()?;
    Ok(ChainHead { records, hash })
}

/// A walk along the chain from where the kept log starts: each record must
/// continue it, and a pruned prefix must be announced by the `audit.prune`
/// record the boundary names (so rows deleted behind the platform's back,
/// with a boundary row written to match, do not verify).
pub(crate) struct ChainWalk {
    pub(crate) prev: (i64, String),
    pub(crate) boundary: Option<PruneBoundary>,
    attested: bool,
}

impl ChainWalk {
    pub(crate) fn start(store: &Store) -> Result<ChainWalk, AuditError> {
        let boundary = store.audit_prune_boundary_blocking()?;
        let prev = match &boundary {
            Some(b) => (b.through, b.hash.clone()),
            None => (0, GENESIS_HASH.to_owned()),
        };
        Ok(ChainWalk {
            prev,
            boundary,
            attested: false,
        })
    }

    /// Check `r` continues the chain and move on to it.
    pub(crate) fn step(&mut self, r: &AuditRow) -> Result<(), AuditError> {
        self.step_hashed(r, &row_hash(r))
    }

    /// [`ChainWalk::step`] with the row's hash already computed.
    pub(crate) fn step_hashed(&mut self, r: &AuditRow, hashed: &str) -> Result<(), AuditError> {
        check_link_hashed((self.prev.0, &self.prev.1), r, hashed)?;
        if let Some(b) = &self.boundary {
            if r.seq == b.record {
                check_prune_record(r, b)?;
                self.attested = true;
            }
        }
        self.prev = (r.seq, r.hash.clone());
        Ok(())
    }

    /// The chain head, once every record was stepped over.
    pub(crate) fn finish(self) -> Result<(i64, String), AuditError> {
        if let Some(b) = &self.boundary {
            if !self.attested {
                return Err(AuditError::ChainBroken {
                    seq: b.through.saturating_add(1),
                    problem: format!(
                        "records 1..={} are gone and no `audit.prune` record in the log accounts for them (record {} should)",
                        b.through, b.record
                    ),
                });
            }
        }
        Ok(self.prev)
    }
}

/// The `audit.prune` record `r` must name the boundary `b`.
fn check_prune_record(r: &AuditRow, b: &PruneBoundary) -> Result<(), AuditError> {
    let detail: Option<serde_json::Value> = r
        .detail
        .as_deref()
        .and_then(|d| serde_json::from_str(d).ok());
    let names = |k: &str| detail.as_ref().and_then(|d| d.get(k)).cloned();
    let ok = r.action == Action::AuditPrune.as_str()
        && r.decision == Outcome::Allow.as_str()
        && names("through") == Some(serde_json::Value::from(b.through))
        && names("hash") == Some(serde_json::Value::from(b.hash.as_str()));
    if ok {
        Ok(())
    } else {
        Err(AuditError::ChainBroken {
            seq: r.seq,
            problem: format!(
                "the pruning boundary (records 1..={} removed) names this record, but it is not an `audit.prune` record for that boundary",
                b.through
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, prev: &str) -> AuditRow {
        let mut r = AuditRow {
            seq,
            time: "2026-01-01T00:00:00Z".into(),
            actor: "operator".into(),
            action: "deploy".into(),
            tenant: Some("acme".into()),
            function: None,
            digest: None,
            decision: "allow".into(),
            reason: None,
            duration_us: Some(5),
            status: None,
            invocation_id: None,
            detail: None,
            prev_hash: prev.into(),
            hash: String::new(),
        };
        r.hash = row_hash(&r);
        r
    }

    /// Records only in the journal (a writer killed before copying them) are checked to
    /// continue the database's chain and hash like stored ones; an edited one fails.
    #[test]
    fn journaled_records_the_database_lacks_are_checked_against_its_chain() {
        let mut rows = vec![row(1, GENESIS_HASH)];
        for seq in 2..=5 {
            let prev = rows.last().unwrap().hash.clone();
            rows.push(row(seq, &prev));
        }
        let pending = |journaled: &[AuditRow]| {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            store
                .open_audit_writer(zerofn_store::AuditDurability::Disk)
                .unwrap()
                .append_batch(&rows[..2])
                .unwrap();
            let head = verify_chain(&store).unwrap();
            let mut journal = store.open_audit_journal(1 << 20).unwrap();
            journal.append(journaled).unwrap();
            // Read beside the journal's holder, as `audit verify` reads a stopped platform.
            let reader = Store::open_read_only(dir.path()).unwrap();
            verify_pending(&reader, (2, &head.hash))
        };
        assert_eq!(
            pending(&rows[2..]).unwrap(),
            Some(PendingRecords {
                first: 3,
                last: 5,
                count: 3
            })
        );
        let mut edited = rows[2..].to_vec();
        edited[1].status = Some(500);
        let err = pending(&edited).unwrap_err();
        assert!(
            matches!(err, AuditError::ChainBroken { seq: 4, .. }),
            "{err}"
        );
    }

    #[test]
    fn every_field_is_covered_by_the_hash() {
        let base = row(1, GENESIS_HASH);
        type Edit = Box<dyn Fn(&mut AuditRow)>;
        let edits: Vec<Edit> = vec![
            Box::new(|r| r.time.push('1')),
            Box::new(|r| r.actor.push('x')),
            Box::new(|r| r.action = "invoke".into()),
            Box::new(|r| r.tenant = None),
            Box::new(|r| r.function = Some("f".into())),
            Box::new(|r| r.digest = Some("d".into())),
            Box::new(|r| r.decision = "deny".into()),
            Box::new(|r| r.reason = Some(String::new())),
            Box::new(|r| r.duration_us = Some(6)),
            Box::new(|r| r.status = Some(200)),
            Box::new(|r| r.invocation_id = Some("i".into())),
            Box::new(|r| r.detail = Some("{}".into())),
        ];
        for (i, edit) in edits.iter().enumerate() {
            let mut r = base.clone();
            edit(&mut r);
            assert!(
                check_link((0, GENESIS_HASH), &r).is_err(),
                "edit {i} went undetected"
            );
        }
        assert!(check_link((0, GENESIS_HASH), &base).is_ok());
    }

    #[test]
    fn a_detail_is_hashed_before_prev_hash_and_can_be_neither_dropped_nor_edited() {
        let mut r = row(1, GENESIS_HASH);
        r.detail = Some(r#"{"decisions":[]}"#.into());
        r.hash = row_hash(&r);
        let json = serde_json::json!([
            r.seq,
            r.time,
            r.actor,
            r.action,
            r.tenant,
            r.function,
            r.digest,
            r.decision,
            r.reason,
            r.duration_us,
            r.status,
            r.invocation_id,
            r.detail,
            r.prev_hash
        ])
        .to_string();
        assert_eq!(r.hash, hex::encode(Sha256::digest(json.as_bytes())));
        assert!(check_link((0, GENESIS_HASH), &r).is_ok());
        let mut dropped = r.clone();
        dropped.detail = None;
        assert!(check_link((0, GENESIS_HASH), &dropped).is_err());
        let mut edited = r.clone();
        edited.detail = Some(r#"{"decisions":[1]}"#.into());
        assert!(check_link((0, GENESIS_HASH), &edited).is_err());
    }

    #[test]
    fn hash_is_sha256_of_the_json_array_of_fields() {
        // Pins the documented encoding so a refactor cannot silently change
        // every hash (and break verification of existing logs).
        let r = row(1, GENESIS_HASH);
        let json = serde_json::json!([
            r.seq,
            r.time,
            r.actor,
            r.action,
            r.tenant,
            r.function,
            r.digest,
            r.decision,
            r.reason,
            r.duration_us,
            r.status,
            r.invocation_id,
            r.prev_hash
        ])
        .to_string();
        assert_eq!(r.hash, hex::encode(Sha256::digest(json.as_bytes())));
    }

    #[test]
    fn gaps_and_wrong_predecessors_are_detected() {
        let first = row(1, GENESIS_HASH);
        let third = row(3, &first.hash);
        assert!(matches!(
            check_link((1, &first.hash), &third),
            Err(AuditError::ChainBroken { seq: 3, .. })
        ));
        let second = row(2, GENESIS_HASH);
        assert!(check_link((1, &first.hash), &second).is_err());
    }
}
