//! `zerofn audit` commands over the log's Merkle tree: the verifier key,
//! checkpoints, inclusion and consistency proofs, export with leaf bytes,
//! and full verification.
//!
//! Like `audit verify` always did, each asks the running platform's control
//! API and reads the data directory itself only when no platform answers
//! (no endpoint file, or nothing listening at it). A platform that answers
//! with an error is reported, never bypassed by reading its files.

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use http::Method;
use zerofn_api as api_types;
use zerofn_audit::{ConsistencyProof, ExportedRecord, InclusionProof, NoteVerifier};
use zerofn_server::tlog::{offline, MAX_EXPORT};

use crate::client::{self, ApiClient};

#[derive(Subcommand)]
pub enum TreeCommand {
    /// Print the note verifier key of the log's signed checkpoints
    /// (`<name>+<key hash>+<base64 key>`).
    PublicKey,
    /// Print the latest signed checkpoint (C2SP tlog-checkpoint, signed note).
    Checkpoint {
        /// Sign a checkpoint over every committed record first (platform running).
        #[arg(long)]
        now: bool,
    },
    /// Print the inclusion proof of record ID (its sequence number) against
    /// the latest signed checkpoint, or the one of --size.
    Prove {
        id: i64,
        #[arg(long)]
        size: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Print the consistency proof from tree size OLD_SIZE to NEW_SIZE (a
    /// signed checkpoint's size; the latest when omitted).
    Consistency {
        old_size: u64,
        new_size: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Print records FROM..=TO with their canonical leaf bytes, one JSON
    /// object a line: {"index", "record", "leaf"}.
    Export {
        #[arg(long, default_value_t = 1)]
        from: i64,
        #[arg(long)]
        to: i64,
        /// One JSON object a line (the only format).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct VerifyArgs {
    /// Check the checkpoint's signature with this verifier key instead of
    /// the data directory's (pin the key `audit public-key` printed
    /// earlier; offline only).
    #[arg(long)]
    public_key: Option<String>,
}

/// The JSON answer of `path` from the running platform, or `None` when no
/// platform answers.
async fn online(data_dir: &Path, method: Method, path: &str) -> Result<Option<serde_json::Value>> {
    let explicit = std::env::var_os("ZEROFN_API_URL").is_some_and(|u| !u.is_empty());
    let endpoint_file = data_dir.join(zerofn_server::API_ENDPOINT_FILE);
    if !explicit && !endpoint_file.exists() {
        return Ok(None);
    }
    let api = ApiClient::discover(data_dir)?;
    match api.call(method, path, None).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if !explicit && e.is::<client::Unreachable>() => Ok(None),
        Err(e) => Err(e),
    }
}

fn b64_hashes(list: &[String]) -> String {
    list.join("\n")
}

pub async fn run(data_dir: &Path, cmd: TreeCommand) -> Result<()> {
    match cmd {
        TreeCommand::PublicKey => {
            let key = match online(data_dir, Method::GET, "/v1/audit/public-key").await? {
                Some(v) => string_field(&v, "key", "/v1/audit/public-key")?,
                None => zerofn_server::audit_log_verifier(data_dir)?.to_string(),
            };
            println!("{key}");
        }
        TreeCommand::Checkpoint { now } => {
            let method = if now { Method::POST } else { Method::GET };
            let note = match online(data_dir, method, "/v1/audit/checkpoint").await? {
                Some(v) => string_field(&v, "checkpoint", "/v1/audit/checkpoint")?,
                None if now => bail!("--now needs a running platform to sign; none answers"),
                None => offline::checkpoint(data_dir)?.note,
            };
            print!("{note}");
        }
        TreeCommand::Prove { id, size, json } => {
            let path = match size {
                Some(s) => format!("/v1/audit/proof?seq={id}&size={s}"),
                None => format!("/v1/audit/proof?seq={id}"),
            };
            let proof: InclusionProof = match online(data_dir, Method::GET, &path).await? {
                Some(v) => client::typed("/v1/audit/proof", v)?,
                None => offline::prove(data_dir, id, size)?,
            };
            if json {
                println!("{}", inclusion_json(&proof));
            } else {
                println!(
                    "record {id}: leaf {} of a tree of {}",
                    proof.index, proof.tree_size
                );
                println!("leaf (base64): {}", proof.leaf);
                println!("proof (base64 hashes, leaf to root):");
                if !proof.proof.is_empty() {
                    println!("{}", b64_hashes(&proof.proof));
                }
                println!("checkpoint:");
                print!("{}", proof.checkpoint);
            }
        }
        TreeCommand::Consistency {
            old_size,
            new_size,
            json,
        } => {
            let path = match new_size {
                Some(n) => format!("/v1/audit/consistency?old={old_size}&new={n}"),
                None => format!("/v1/audit/consistency?old={old_size}"),
            };
            let proof: ConsistencyProof = match online(data_dir, Method::GET, &path).await? {
                Some(v) => client::typed("/v1/audit/consistency", v)?,
                None => offline::consistency(data_dir, old_size, new_size)?,
            };
            if json {
                println!("{}", serde_json::to_string(&proof)?);
            } else {
                println!(
                    "tree {} (root {}) is a prefix of tree {} (root {})",
                    proof.old_size, proof.old_root, proof.new_size, proof.new_root
                );
                println!("proof (base64 hashes):");
                if !proof.proof.is_empty() {
                    println!("{}", b64_hashes(&proof.proof));
                }
                println!("checkpoint:");
                print!("{}", proof.checkpoint);
            }
        }
        TreeCommand::Export { from, to, json: _ } => {
            if from < 1 || to < from {
                bail!("export range {from}..={to} is empty or starts before record 1");
            }
            let mut next = from;
            while next <= to {
                let end = to.min(next.saturating_add(MAX_EXPORT - 1));
                let path = format!("/v1/audit/export?from={next}&to={end}");
                let records: Vec<ExportedRecord> =
                    match online(data_dir, Method::GET, &path).await? {
                        Some(v) => client::typed(
                            "/v1/audit/export",
                            v.get("records").cloned().unwrap_or_default(),
                        )?,
                        None => offline::export(data_dir, next, end)?,
                    };
                for r in &records {
                    println!("{}", serde_json::to_string(r)?);
                }
                if records.is_empty() {
                    break;
                }
                next = end.saturating_add(1);
            }
        }
    }
    Ok(())
}

/// The documented `--json` form, keys in this order.
fn inclusion_json(p: &InclusionProof) -> String {
    let proof: Vec<String> = p
        .proof
        .iter()
        .map(|h| serde_json::Value::from(h.as_str()).to_string())
        .collect();
    format!(
        "{{\"index\": {}, \"tree_size\": {}, \"leaf\": {}, \"proof\": [{}], \"checkpoint\": {}}}",
        p.index,
        p.tree_size,
        serde_json::Value::from(p.leaf.as_str()),
        proof.join(", "),
        serde_json::Value::from(p.checkpoint.as_str())
    )
}

fn string_field(v: &serde_json::Value, field: &str, path: &str) -> Result<String> {
    v.get(field)
        .and_then(|s| s.as_str())
        .map(str::to_owned)
        .with_context(|| format!("`{path}` answered without `{field}`"))
}

/// `zerofn audit verify`: the chain, and the whole tree against the latest
/// signed checkpoint.
pub async fn verify(data_dir: &Path, args: VerifyArgs) -> Result<()> {
    let pinned = args
        .public_key
        .as_deref()
        .map(NoteVerifier::parse)
        .transpose()
        .context("--public-key")?;
    let answer = if pinned.is_some() {
        None
    } else {
        online(data_dir, Method::GET, "/v1/audit/verify").await?
    };
    let verified = match answer {
        Some(v) => client::typed::<api_types::AuditVerify>("/v1/audit/verify", v)?,
        // No platform running (or a pinned key): verify the data directory.
        None => match offline::verify(data_dir, pinned.as_ref()) {
            Ok(r) => api_types::AuditVerify::intact_with_checkpoint(
                r.records,
                r.head,
                r.checkpoint_size,
                r.root,
            ),
            Err(zerofn_server::ServerError::Audit(e)) if e.record().is_some() => {
                let (at, problem) = match e {
                    zerofn_audit::AuditError::ChainBroken { seq, problem } => (seq, problem),
                    other => (other.record().unwrap_or(0), other.to_string()),
                };
                api_types::AuditVerify::broken(at, problem)
            }
            Err(e) => return Err(e.into()),
        },
    };
    match verified {
        api_types::AuditVerify::Intact {
            ok: true,
            records,
            head,
            checkpoint_size,
            root,
        } => {
            println!("audit chain intact: {records} records, head {head}");
            if let (Some(size), Some(root)) = (checkpoint_size, root) {
                println!("audit tree intact: records 1..={size} hash to the signed checkpoint's root {root}");
            }
            Ok(())
        }
        api_types::AuditVerify::Intact { .. } => bail!("audit log does not verify"),
        api_types::AuditVerify::Broken {
            broken_at: 0,
            problem,
            ..
        } => bail!("audit log does not verify: {problem}"),
        api_types::AuditVerify::Broken {
            broken_at, problem, ..
        } => bail!("audit chain broken at record {broken_at}: {problem}"),
    }
}
