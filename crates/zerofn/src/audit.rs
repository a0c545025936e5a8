//! `zerofn audit` commands over the log's Merkle tree: the verifier key,
//! checkpoints, inclusion and consistency proofs, export with leaf bytes,
//! full verification, and pruning old records.
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
use zerofn_audit::prune::PruneReport;
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
    /// Remove the records stamped before TIME (a duration back from now such
    /// as 90d, or an RFC 3339 time); their leaf hashes stay in the tree, so
    /// checkpoints, other records' proofs and `audit verify` still hold. The
    /// pruning is itself recorded. Needs a running platform and `audit.manage`.
    Prune {
        #[arg(long, value_name = "TIME")]
        before: String,
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
        TreeCommand::Prune { before, json } => {
            // A write: only through the platform, which decides and records it.
            let api = ApiClient::discover(data_dir)?;
            let report: PruneReport = api
                .send(
                    Method::POST,
                    "/v1/audit/prune",
                    &api_types::AuditPrune { before },
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else if report.removed == 0 {
                println!(
                    "nothing to prune before {} (recorded as audit record {})",
                    report.before, report.record
                );
            } else {
                println!(
                    "pruned {} records before {}; records up to {} are gone, their leaf hashes stay in the tree (audit record {})",
                    report.removed,
                    report.before,
                    report.through.unwrap_or_default(),
                    report.record
                );
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
    let spinner = crate::progress::Spinner::start("verifying the audit log");
    let answer = if pinned.is_some() {
        None
    } else {
        online(data_dir, Method::GET, "/v1/audit/verify").await?
    };
    let verified = match answer {
        Some(v) => client::typed::<api_types::AuditVerify>("/v1/audit/verify", v)?,
        // No platform running (or a pinned key): verify the data directory.
        None => match offline::verify(data_dir, pinned.as_ref()).and_then(|r| {
            let pending = offline::pending(data_dir, &r)?;
            Ok((r, pending))
        }) {
            Ok((r, pending)) => {
                if let Some(p) = pending {
                    println!(
                        "audit journal: {} acknowledged records ({}..={}) continue the chain; the platform copies them into the database when it starts",
                        p.count, p.first, p.last
                    );
                }
                api_types::AuditVerify::intact_with_checkpoint(
                    r.records,
                    r.head,
                    r.checkpoint_size,
                    r.root,
                )
            }
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
    drop(spinner);
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

/// Records per request of `audit query` (the API's largest page).
const QUERY_PAGE: u32 = 1000;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DecisionArg {
    Allow,
    Deny,
    Error,
}

impl DecisionArg {
    fn as_str(self) -> &'static str {
        match self {
            DecisionArg::Allow => "allow",
            DecisionArg::Deny => "deny",
            DecisionArg::Error => "error",
        }
    }
}

/// `zerofn audit query`: records across functions matching every filter given, newest
/// first.
#[derive(Args)]
pub struct QueryArgs {
    /// Only records about this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Only records about this function (give --tenant too on a large log: a function
    /// name alone is not indexed).
    #[arg(long)]
    function: Option<String>,
    /// Who acted (`operator:alice`, `gateway`, ...) or called: another function's SPIFFE
    /// ID, a public client's address, or `public` for every public client.
    #[arg(long)]
    caller: Option<String>,
    /// The audit action (`invoke`, `deploy`, `capability`, `tenant.create`, ...).
    #[arg(long)]
    action: Option<String>,
    /// How it was decided: allowed, refused, or allowed and then failed.
    #[arg(long, value_enum)]
    decision: Option<DecisionArg>,
    /// The HTTP status recorded.
    #[arg(long, value_parser = clap::value_parser!(u16).range(100..=599))]
    status: Option<u16>,
    /// Records since then: a duration back from now (90s, 30m, 24h, 7d) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Records until then (same forms as --since).
    #[arg(long, value_name = "WHEN")]
    until: Option<String>,
    /// Only records below this sequence number (to continue an earlier query).
    #[arg(long, value_name = "SEQ")]
    before: Option<u64>,
    /// Most records to print.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    limit: u32,
    /// One record a line, as JSON (the form `audit tail --json` prints).
    #[arg(long)]
    json: bool,
}

impl QueryArgs {
    fn path(&self, before: Option<i64>, limit: u32) -> String {
        let enc = |t: &str| {
            percent_encoding::utf8_percent_encode(t, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let mut query = vec![format!("limit={limit}")];
        for (name, value) in [
            ("tenant", self.tenant.as_deref()),
            ("function", self.function.as_deref()),
            ("caller", self.caller.as_deref()),
            ("action", self.action.as_deref()),
            ("decision", self.decision.map(DecisionArg::as_str)),
            ("since", self.since.as_deref()),
            ("until", self.until.as_deref()),
        ] {
            if let Some(v) = value {
                query.push(format!("{name}={}", enc(v)));
            }
        }
        if let Some(s) = self.status {
            query.push(format!("status={s}"));
        }
        if let Some(b) = before {
            query.push(format!("before={b}"));
        }
        format!("/v1/audit/query?{}", query.join("&"))
    }
}

/// Print the newest `--limit` matching records, following the API's pages.
pub async fn query(data_dir: &Path, args: QueryArgs) -> Result<()> {
    let api = ApiClient::discover(data_dir)?;
    let mut before = match args.before {
        Some(b) => Some(i64::try_from(b).context("`--before` is too large")?),
        None => None,
    };
    let mut left = args.limit;
    while left > 0 {
        let path = args.path(before, left.min(QUERY_PAGE));
        let v = api.call(Method::GET, &path, None).await?;
        let page: api_types::AuditQueryPage<serde_json::Value> = client::typed(&path, v)?;
        for record in &page.records {
            if args.json {
                // Each record as it came, not as this CLI's types know it.
                println!("{record}");
            } else {
                let r: zerofn_audit::StoredRecord = client::typed(&path, record.clone())?;
                print_record(&r);
            }
        }
        left = left.saturating_sub(u32::try_from(page.records.len()).unwrap_or(u32::MAX));
        match page.next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    Ok(())
}

/// One record on one line, tab-separated; every field escaped for the terminal.
pub fn print_record(r: &zerofn_audit::StoredRecord) {
    use zerofn_types::printable;
    let subject = [r.tenant.as_deref(), r.function.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("/");
    println!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        r.seq,
        printable(&r.time),
        printable(&r.actor),
        printable(&r.action),
        printable(&subject),
        printable(&r.decision),
        r.status.map(|s| s.to_string()).unwrap_or_default(),
        printable(r.reason.as_deref().unwrap_or_default())
    );
}
