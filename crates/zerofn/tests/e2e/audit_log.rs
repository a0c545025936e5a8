//! The audit log as a Merkle tree with signed checkpoints: proofs checked by
//! a verifier written here from docs/audit-log.md alone (RFC 6962 and C2SP
//! signed-note with sha2, ed25519-dalek and base64 directly; none of the
//! platform's tree or note code), and `audit verify` against a database
//! tampered with behind the platform's back.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::harness::*;
use crate::Setup;

/// An independent verifier, from the documented formats only.
pub(crate) mod reference {
    use super::*;

    pub type Hash = [u8; 32];

    pub fn leaf_hash(leaf: &[u8]) -> Hash {
        let mut h = Sha256::new();
        h.update([0]);
        h.update(leaf);
        h.finalize().into()
    }

    pub fn node(l: &Hash, r: &Hash) -> Hash {
        let mut h = Sha256::new();
        h.update([1]);
        h.update(l);
        h.update(r);
        h.finalize().into()
    }

    /// RFC 9162 §2.1.3.2.
    pub fn inclusion_ok(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
        if index >= size {
            return false;
        }
        let (mut f, mut s, mut r) = (index, size - 1, *leaf);
        for p in proof {
            if s == 0 {
                return false;
            }
            if f % 2 == 1 || f == s {
                r = node(p, &r);
                while f % 2 == 0 && f != 0 {
                    f /= 2;
                    s /= 2;
                }
            } else {
                r = node(&r, p);
            }
            f /= 2;
            s /= 2;
        }
        s == 0 && &r == root
    }

    /// RFC 9162 §2.1.4.2 (0 < old < new).
    pub fn consistency_ok(old: u64, new: u64, r1: &Hash, r2: &Hash, proof: &[Hash]) -> bool {
        if old == 0 || old >= new {
            return false;
        }
        let mut path = Vec::new();
        if old.is_power_of_two() {
            path.push(*r1);
        }
        path.extend_from_slice(proof);
        let Some((first, rest)) = path.split_first() else {
            return false;
        };
        let (mut f, mut s) = (old - 1, new - 1);
        while f % 2 == 1 {
            f /= 2;
            s /= 2;
        }
        let (mut fr, mut sr) = (*first, *first);
        for c in rest {
            if s == 0 {
                return false;
            }
            if f % 2 == 1 || f == s {
                fr = node(c, &fr);
                sr = node(c, &sr);
                while f % 2 == 0 && f != 0 {
                    f /= 2;
                    s /= 2;
                }
            } else {
                sr = node(&sr, c);
            }
            f /= 2;
            s /= 2;
        }
        s == 0 && &fr == r1 && &sr == r2
    }

    /// Open a C2SP signed note with a `<name>+<hash>+<base64(0x01||key)>`
    /// verifier key; returns (origin, size, root) of the checkpoint in it.
    pub fn open_checkpoint(note: &str, vkey: &str) -> Option<(String, u64, Hash)> {
        let mut parts = vkey.trim().splitn(3, '+');
        let (name, hash, key) = (parts.next()?, parts.next()?, parts.next()?);
        let raw = B64.decode(key).ok()?;
        let (&1, public) = raw.split_first()? else {
            return None;
        };
        let public: [u8; 32] = public.try_into().ok()?;
        let mut kh = Sha256::new();
        kh.update(name.as_bytes());
        kh.update(b"\n\x01");
        kh.update(public);
        let key_hash: [u8; 4] = kh.finalize()[..4].try_into().ok()?;
        if hex::encode(key_hash) != hash {
            return None;
        }
        let at = note.rfind("\n\n")?;
        let (text, sigs) = (&note[..=at], &note[at + 2..]);
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&public).ok()?;
        let mut verified = false;
        for line in sigs.strip_suffix('\n')?.split('\n') {
            let rest = line.strip_prefix("\u{2014} ")?;
            let (n, blob) = rest.split_once(' ')?;
            let blob = B64.decode(blob).ok()?;
            if n != name || blob.len() != 68 || blob[..4] != key_hash {
                continue;
            }
            let sig = ed25519_dalek::Signature::from_bytes(&blob[4..].try_into().ok()?);
            verified = vk.verify_strict(text.as_bytes(), &sig).is_ok();
            break;
        }
        if !verified {
            return None;
        }
        let mut lines = text.lines();
        let origin = lines.next()?.to_owned();
        let size = lines.next()?.parse().ok()?;
        let root: Hash = B64.decode(lines.next()?).ok()?.try_into().ok()?;
        (origin == name).then_some((origin, size, root))
    }

    pub fn hashes(v: &serde_json::Value) -> Vec<Hash> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|h| B64.decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
            .collect()
    }

    /// Check `audit prove --json` output completely.
    pub fn proof_ok(p: &serde_json::Value, vkey: &str) -> bool {
        let Some((_, size, root)) = open_checkpoint(p["checkpoint"].as_str().unwrap(), vkey) else {
            return false;
        };
        let Ok(leaf) = B64.decode(p["leaf"].as_str().unwrap()) else {
            return false;
        };
        size == p["tree_size"].as_u64().unwrap()
            && inclusion_ok(
                &leaf_hash(&leaf),
                p["index"].as_u64().unwrap(),
                size,
                &hashes(&p["proof"]),
                &root,
            )
    }
}

/// Compact JSON with object keys sorted: RFC 8785 for values holding only
/// ASCII text, integers, booleans and nulls.
fn sorted(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let members: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", serde_json::Value::from(k.as_str()), sorted(&m[k])))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        serde_json::Value::Array(a) => {
            format!("[{}]", a.iter().map(sorted).collect::<Vec<_>>().join(","))
        }
        other => other.to_string(),
    }
}

/// A platform with a dozen records, all covered by a checkpoint.
fn with_records() -> Setup {
    let s = Setup::new();
    for i in 0..10 {
        let key = s.root().join(format!("k{i}.key"));
        ok(s.platform.cli(&["keygen", "--out", key.to_str().unwrap()]));
        ok(s.platform.cli(&[
            "tenant",
            "create",
            &format!("t{i}"),
            "--signing-key",
            &format!("{}.pub", key.display()),
        ]));
    }
    ok(s.platform.cli(&["audit", "checkpoint", "--now"]));
    s
}

#[test]
fn proofs_and_checkpoints_verify_with_an_independent_verifier_and_any_altered_byte_fails() {
    let s = with_records();
    let vkey = ok(s.platform.cli(&["audit", "public-key"]));
    let vkey = vkey.trim();
    assert!(vkey.starts_with("zerofn.local/audit/"), "{vkey}");
    let records = s.audit(100);
    let n = records.len() as u64;
    assert!(n >= 12, "{n}");
    for (i, record) in records.iter().enumerate() {
        let seq = record["seq"].as_u64().unwrap();
        assert_eq!(seq, i as u64 + 1);
        let out = ok(s
            .platform
            .cli(&["audit", "prove", &seq.to_string(), "--json"]));
        assert!(out.starts_with("{\"index\": "), "{out}");
        let p: serde_json::Value = serde_json::from_str(&out).unwrap();
        let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["index", "tree_size", "leaf", "proof", "checkpoint"]);
        assert_eq!(p["index"], seq - 1);
        assert!(reference::proof_ok(&p, vkey), "record {seq}: {out}");
        // The leaf is the record as `audit tail --json` prints it, in
        // canonical form (sorted keys, no whitespace: these records hold
        // ASCII text and integers only).
        let leaf = B64.decode(p["leaf"].as_str().unwrap()).unwrap();
        assert_eq!(String::from_utf8(leaf).unwrap(), sorted(record));
        if seq == 5 {
            // Any altered byte of the leaf, a proof hash or the checkpoint fails.
            let leaf = p["leaf"].as_str().unwrap();
            let raw = B64.decode(leaf).unwrap();
            for i in 0..raw.len() {
                let mut bad = raw.clone();
                bad[i] ^= 0x20;
                let mut q = p.clone();
                q["leaf"] = B64.encode(&bad).into();
                assert!(!reference::proof_ok(&q, vkey), "leaf byte {i}");
            }
            for j in 0..p["proof"].as_array().unwrap().len() {
                for i in 0..32 {
                    let mut h = reference::hashes(&p["proof"]);
                    h[j][i] ^= 1;
                    let mut q = p.clone();
                    q["proof"] = h.iter().map(|x| B64.encode(x)).collect::<Vec<_>>().into();
                    assert!(!reference::proof_ok(&q, vkey), "proof {j} byte {i}");
                }
            }
            let cp = p["checkpoint"].as_str().unwrap().as_bytes().to_vec();
            for i in 0..cp.len() {
                let mut bad = cp.clone();
                bad[i] ^= 0x01;
                let Ok(text) = String::from_utf8(bad) else {
                    continue;
                };
                let mut q = p.clone();
                q["checkpoint"] = text.into();
                assert!(!reference::proof_ok(&q, vkey), "checkpoint byte {i}");
            }
        }
    }
    // `audit checkpoint` prints the same signed note the proofs carry.
    let note = ok(s.platform.cli(&["audit", "checkpoint"]));
    let (origin, size, _) = reference::open_checkpoint(&note, vkey).unwrap();
    assert_eq!(Some(origin.as_str()), vkey.split('+').next());
    assert!(size >= n);

    // Consistency from every earlier size to the latest checkpoint.
    for old in 1..size {
        let out = ok(s
            .platform
            .cli(&["audit", "consistency", &old.to_string(), "--json"]));
        let c: serde_json::Value = serde_json::from_str(&out).unwrap();
        let (_, new, root) =
            reference::open_checkpoint(c["checkpoint"].as_str().unwrap(), vkey).unwrap();
        assert_eq!(c["new_size"], new);
        let old_root: reference::Hash = B64
            .decode(c["old_root"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let proof = reference::hashes(&c["proof"]);
        assert!(
            reference::consistency_ok(old, new, &old_root, &root, &proof),
            "{old}->{new}"
        );
        let mut wrong = old_root;
        wrong[0] ^= 1;
        assert!(!reference::consistency_ok(old, new, &wrong, &root, &proof));
    }
    // After one more record and checkpoint, a proof against the earlier
    // checkpoint's size carries that checkpoint, and the consistency proof
    // from it starts at its root.
    let key = s.root().join("more.key");
    ok(s.platform.cli(&["keygen", "--out", key.to_str().unwrap()]));
    ok(s.platform.cli(&[
        "tenant",
        "create",
        "more",
        "--signing-key",
        &format!("{}.pub", key.display()),
    ]));
    let newer = ok(s.platform.cli(&["audit", "checkpoint", "--now"]));
    assert!(reference::open_checkpoint(&newer, vkey).unwrap().1 > size);
    let old = ok(s
        .platform
        .cli(&["audit", "prove", "2", "--size", &size.to_string(), "--json"]));
    let p: serde_json::Value = serde_json::from_str(&old).unwrap();
    assert!(reference::proof_ok(&p, vkey), "{old}");
    let (_, at, old_root) =
        reference::open_checkpoint(p["checkpoint"].as_str().unwrap(), vkey).unwrap();
    assert_eq!(at, size);
    let c: serde_json::Value = serde_json::from_str(&ok(s.platform.cli(&[
        "audit",
        "consistency",
        &size.to_string(),
        "--json",
    ])))
    .unwrap();
    assert_eq!(c["old_root"], B64.encode(old_root));
    let err = fails(
        s.platform
            .cli(&["audit", "prove", "2", "--size", &(size + 100).to_string()]),
    );
    assert!(err.contains("no signed checkpoint of tree size"), "{err}");

    // Export: the records with the same leaf bytes.
    let exported = ok(s
        .platform
        .cli(&["audit", "export", "--from", "2", "--to", "4", "--json"]));
    let lines: Vec<serde_json::Value> = exported
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["index"], 1);
    assert_eq!(lines[0]["record"], records[1]);
    let prove2: serde_json::Value =
        serde_json::from_str(&ok(s.platform.cli(&["audit", "prove", "2", "--json"]))).unwrap();
    assert_eq!(lines[0]["leaf"], prove2["leaf"]);

    // Bad requests are refused naming the problem.
    let err = fails(s.platform.cli(&["audit", "prove", "100000"]));
    assert!(err.contains("no audit record 100000"), "{err}");
    let err = fails(s.platform.cli(&["audit", "consistency", "100000"]));
    assert!(err.contains("100000"), "{err}");

    // With the platform stopped, the same answers come from the data directory.
    let data = s.platform.data_dir.clone();
    let Setup {
        platform,
        tmp: _keep,
        ..
    } = s;
    assert!(platform.stop().success());
    let offline = ok(cli(&data, &["audit", "prove", "2", "--json"]));
    assert!(reference::proof_ok(
        &serde_json::from_str(&offline).unwrap(),
        vkey
    ));
    assert_eq!(ok(cli(&data, &["audit", "public-key"])).trim(), vkey);
    let out = ok(cli(&data, &["audit", "verify", "--public-key", vkey]));
    assert!(out.contains("audit tree intact"), "{out}");
    let other = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    let err = fails(cli(&data, &["audit", "verify", "--public-key", other]));
    assert!(err.contains("no signature by key"), "{err}");
}

/// Copy the top-level files of a stopped platform's data directory.
fn copy_data(from: &Path, to: &Path) -> PathBuf {
    let dir = to.join("copy");
    std::fs::create_dir(&dir).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() && entry.file_name() != "api.json" {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    dir
}

/// `hash` of a row as docs/audit-log.md defines the chain.
fn chain_hash(db: &rusqlite::Connection, seq: i64, prev: &str) -> String {
    let v: serde_json::Value = db
        .query_row(
            "SELECT time, actor, action, tenant, function, digest, decision, reason, duration_us, status, invocation_id, detail FROM audit WHERE seq = ?1",
            [seq],
            |r| {
                let mut fields = vec![serde_json::json!(seq)];
                fields.extend(serde_json::json!([

                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, Option<i64>>(8)?,
                    r.get::<_, Option<i64>>(9)?,
                    r.get::<_, Option<String>>(10)?,
                ])
                .as_array()
                .unwrap()
                .iter()
                .cloned());
                // `detail`, when present, is the 13th element (JSON text as stored).
                if let Some(d) = r.get::<_, Option<String>>(11)? {
                    fields.push(d.into());
                }
                fields.push(prev.into());
                Ok(serde_json::Value::Array(fields))
            },
        )
        .unwrap();
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

#[test]
fn records_edited_deleted_appended_or_cut_behind_the_platforms_back_fail_verify() {
    let s = with_records();
    let data = s.platform.data_dir.clone();
    let Setup { platform, tmp, .. } = s;
    assert!(platform.stop().success());
    let out = ok(cli(&data, &["audit", "verify"]));
    assert!(out.contains("audit tree intact"), "{out}");
    let last: i64 = open_db(&data)
        .query_row("SELECT MAX(seq) FROM audit", [], |r| r.get(0))
        .unwrap();

    type Tamper = Box<dyn Fn(&rusqlite::Connection)>;
    let cases: Vec<(&str, Tamper, String)> = vec![
        (
            "edit",
            Box::new(|db| {
                db.execute(
                    "UPDATE audit SET reason = 'nothing happened' WHERE seq = 4",
                    [],
                )
                .unwrap();
            }),
            "record 4".into(),
        ),
        (
            "edit and re-chain every later record",
            Box::new(move |db| {
                db.execute("UPDATE audit SET actor = 'someone-else' WHERE seq = 4", [])
                    .unwrap();
                let mut prev: String = db
                    .query_row("SELECT hash FROM audit WHERE seq = 3", [], |r| r.get(0))
                    .unwrap();
                for seq in 4..=last {
                    let h = chain_hash(db, seq, &prev);
                    db.execute(
                        "UPDATE audit SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
                        rusqlite::params![prev, h, seq],
                    )
                    .unwrap();
                    prev = h;
                }
            }),
            "audit chain broken at record 4: it does not match the leaf hash".into(),
        ),
        (
            "delete",
            Box::new(|db| {
                db.execute("DELETE FROM audit WHERE seq = 6", []).unwrap();
            }),
            "record 7".into(),
        ),
        (
            "append",
            Box::new(move |db| {
                let prev: String = db
                    .query_row("SELECT hash FROM audit WHERE seq = ?1", [last], |r| {
                        r.get(0)
                    })
                    .unwrap();
                db.execute(
                    "INSERT INTO audit (seq, time, actor, action, decision, prev_hash, hash) \
                     SELECT seq + 1, time, 'mallory', action, decision, ?1, '' FROM audit WHERE seq = ?2",
                    rusqlite::params![prev, last],
                )
                .unwrap();
                let h = chain_hash(db, last + 1, &prev);
                db.execute(
                    "UPDATE audit SET hash = ?1 WHERE seq = ?2",
                    rusqlite::params![h, last + 1],
                )
                .unwrap();
            }),
            format!(
                "records {}..={} are not covered by any signed checkpoint",
                last + 1,
                last + 1
            ),
        ),
        (
            "truncate",
            Box::new(move |db| {
                db.execute("DELETE FROM audit WHERE seq >= ?1", [last - 1])
                    .unwrap();
            }),
            format!(
                "the log has {} records but its signed checkpoint covers {last}",
                last - 2
            ),
        ),
        (
            "forged checkpoint",
            Box::new(|db| {
                db.execute(
                    "UPDATE audit_checkpoints SET note = replace(note, char(10) || size || char(10), char(10) || (size + 1) || char(10)) \
                     WHERE size = (SELECT MAX(size) FROM audit_checkpoints)",
                    [],
                )
                .unwrap();
            }),
            "does not verify".into(),
        ),
    ];
    for (name, tamper, expect) in cases {
        let work = tempfile::tempdir_in(tmp.path()).unwrap();
        let copy = copy_data(&data, work.path());
        ok(cli(&copy, &["audit", "verify"]));
        tamper(&open_db(&copy));
        let err = fails(cli(&copy, &["audit", "verify"]));
        assert!(err.contains(&expect), "{name}: {err}");
        assert!(!err.contains("intact"), "{name}: {err}");
    }
}

/// A record changed while the platform runs is named by the online verify,
/// which signs a checkpoint first; records appended by the platform after
/// that are signed within the interval.
#[test]
fn a_running_platform_signs_new_records_within_its_interval() {
    let s = with_records();
    let vkey = ok(s.platform.cli(&["audit", "public-key"]));
    let before = reference::open_checkpoint(&ok(s.platform.cli(&["audit", "checkpoint"])), &vkey)
        .unwrap()
        .1;
    let key = s.root().join("late.key");
    ok(s.platform.cli(&["keygen", "--out", key.to_str().unwrap()]));
    ok(s.platform.cli(&[
        "tenant",
        "create",
        "late",
        "--signing-key",
        &format!("{}.pub", key.display()),
    ]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let size = reference::open_checkpoint(&ok(s.platform.cli(&["audit", "checkpoint"])), &vkey)
            .unwrap()
            .1;
        if size > before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no new checkpoint after {before}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = ok(s.platform.cli(&["audit", "verify"]));
    assert!(out.contains("audit tree intact"), "{out}");
    open_db(&s.platform.data_dir)
        .execute("UPDATE audit SET decision = 'deny' WHERE seq = 2", [])
        .unwrap();
    let err = fails(s.platform.cli(&["audit", "verify"]));
    assert!(err.contains("record 2"), "{err}");
}

/// `audit prune` removes old records' bodies, records itself, and leaves a log that still
/// verifies (online, offline after a stop, and after a restart), with proofs of kept
/// records that the independent verifier accepts; a pruned record is named as such.
#[test]
fn pruning_removes_old_records_and_the_log_still_verifies() {
    let s = with_records();
    let vkey = ok(s.platform.cli(&["audit", "public-key"]));
    let vkey = vkey.trim().to_owned();
    // Bad input changes nothing: the first record is still there.
    let err = fails(s.platform.cli(&["audit", "prune", "--before", "yesterday"]));
    assert!(err.contains("`before` `yesterday`"), "{err}");
    ok(s.platform.cli(&["audit", "prove", "1"]));

    let out = ok(s.platform.cli(&[
        "audit",
        "prune",
        "--before",
        "2099-01-01T00:00:00Z",
        "--json",
    ]));
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let through = report["through"].as_i64().unwrap();
    let record = report["record"].as_i64().unwrap();
    assert!(through >= 10, "{report}");
    assert_eq!(report["removed"].as_i64().unwrap(), through, "{report}");
    assert!(record > through + 1, "{report}");

    // The pruning is a record of its own, naming the boundary.
    let prune = s
        .audit(20)
        .into_iter()
        .find(|r| r["seq"] == record)
        .expect("the prune record");
    assert_eq!(prune["action"], "audit.prune");
    assert_eq!(prune["decision"], "allow");
    assert_eq!(prune["detail"]["through"], through);

    let err = fails(s.platform.cli(&["audit", "prove", "1"]));
    assert!(err.contains("was pruned"), "{err}");
    let err = fails(
        s.platform
            .cli(&["audit", "export", "--from", "1", "--to", "3", "--json"]),
    );
    assert!(err.contains("was pruned"), "{err}");
    let out = ok(s
        .platform
        .cli(&["audit", "prove", &record.to_string(), "--json"]));
    let p: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(reference::proof_ok(&p, &vkey), "{out}");
    let out = ok(s.platform.cli(&["audit", "verify"]));
    assert!(out.contains("audit tree intact"), "{out}");

    // A restart opens the pruned log; a stopped platform's log verifies offline.
    let s = s.restart();
    let out = ok(s.platform.cli(&["audit", "verify"]));
    assert!(out.contains("audit tree intact"), "{out}");
    let data = s.platform.data_dir.clone();
    assert!(s.platform.stop().success());
    let out = ok(cli(&data, &["audit", "verify"]));
    assert!(out.contains("audit tree intact"), "{out}");
    // Rows deleted behind the platform's back past the boundary are not a pruning.
    open_db(&data)
        .execute("DELETE FROM audit WHERE seq = ?1", [through + 1])
        .unwrap();
    let err = fails(cli(&data, &["audit", "verify"]));
    assert!(err.contains(&format!("record {}", through + 2)), "{err}");
}
