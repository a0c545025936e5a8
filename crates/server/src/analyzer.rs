//! The access analyzer: for each served function, the permissions its
//! manifest grants against those its invocations used in a window (read
//! from the audit log's allowed decisions), the unused ones, and the
//! least-privilege set that would have sufficed, in manifest form.
//!
//! Permissions are compared in units: a `cache:read-write` grant is the
//! two units `kv:cache:read` and `kv:cache:write`, so a function that only
//! reads is told to drop the write half. What "used" means comes from the
//! `permission` field the gateway writes into every decision.
//!
//! Egress destinations are units too (`egress:<scheme>://<host>:<port>[path]`,
//! as the manifest's `[egress] allow` entry reads): used when a request was
//! allowed by the entry, denied when the policy refused it or when its flow
//! was refused after the decision (a name resolving into a forbidden range,
//! an unreadable URL), from the flow records the egress gateway writes.

use std::collections::{BTreeMap, BTreeSet};

use zerofn_policy::{KvMode, Permissions};

use crate::control::{ControlError, ControlPlane};

/// Most audit records one analysis reads.
const MAX_RECORDS: u32 = 1_000_000;

// The report is the API's own type, shared with the CLI.
pub use zerofn_api::{AccessReport, FunctionAccess};

/// The units a manifest grants.
pub(crate) fn granted_units(p: &Permissions) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for g in &p.kv {
        if g.mode.covers(false) {
            out.insert(format!("kv:{}:read", g.bucket));
        }
        if g.mode.covers(true) {
            out.insert(format!("kv:{}:write", g.bucket));
        }
    }
    for c in &p.call {
        out.insert(format!("call:{c}"));
    }
    if p.config {
        out.insert("config".to_owned());
    }
    for s in &p.invoke_from {
        out.insert(format!("invoke:{s}"));
    }
    for r in &p.egress {
        out.insert(format!("egress:{}", r.url()));
    }
    for q in &p.publish {
        out.insert(format!("publish:{q}"));
    }
    for g in &p.buckets {
        if g.mode.covers(false) {
            out.insert(format!("buckets:{}:read", g.bucket));
        }
        if g.mode.covers(true) {
            out.insert(format!("buckets:{}:write", g.bucket));
        }
    }
    out
}

/// The manifest tables that grant exactly `units`; `granted_egress` says
/// whether the manifest has an `[egress]` allowlist to narrow.
pub(crate) fn suggest(
    units: &BTreeSet<String>,
    granted_config: bool,
    granted_egress: bool,
) -> String {
    let mut kv: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
    let mut buckets: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
    let mut call = Vec::new();
    let mut publish = Vec::new();
    let mut egress = Vec::new();
    let mut from = Vec::new();
    let mut config = false;
    for u in units {
        if let Some(rest) = u.strip_prefix("kv:") {
            if let Some((bucket, mode)) = rest.rsplit_once(':') {
                let e = kv.entry(bucket).or_default();
                match mode {
                    "read" => e.0 = true,
                    _ => e.1 = true,
                }
            }
        } else if let Some(rest) = u.strip_prefix("buckets:") {
            if let Some((bucket, mode)) = rest.rsplit_once(':') {
                let e = buckets.entry(bucket).or_default();
                match mode {
                    "read" => e.0 = true,
                    _ => e.1 = true,
                }
            }
        } else if let Some(c) = u.strip_prefix("call:") {
            call.push(c.to_owned());
        } else if let Some(q) = u.strip_prefix("publish:") {
            publish.push(q.to_owned());
        } else if let Some(f) = u.strip_prefix("invoke:") {
            from.push(f.to_owned());
        } else if let Some(e) = u.strip_prefix("egress:") {
            egress.push(e.to_owned());
        } else if u == "config" {
            config = true;
        }
    }
    let quote = |items: Vec<String>| {
        items
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let grants = |m: BTreeMap<&str, (bool, bool)>| -> Vec<String> {
        m.into_iter()
            .map(|(bucket, (r, w))| {
                let mode = match (r, w) {
                    (true, true) => KvMode::ReadWrite,
                    (false, true) => KvMode::Write,
                    _ => KvMode::Read,
                };
                format!("{bucket}:{}", mode.as_str())
            })
            .collect()
    };
    let kv = grants(kv);
    let buckets = grants(buckets);
    let mut out = String::from("[permissions]\n");
    out.push_str(&format!("kv = [{}]\n", quote(kv)));
    out.push_str(&format!("call = [{}]\n", quote(call)));
    if !publish.is_empty() {
        out.push_str(&format!("publish = [{}]\n", quote(publish)));
    }
    if !buckets.is_empty() {
        out.push_str(&format!("buckets = [{}]\n", quote(buckets)));
    }
    out.push_str(&format!("\n[invoke]\nfrom = [{}]\n", quote(from)));
    if !egress.is_empty() {
        out.push_str(&format!("\n[egress]\nallow = [{}]\n", quote(egress)));
    } else if granted_egress {
        out.push_str("\n# [egress] is never used: drop it\n");
    }
    if config {
        out.push_str("\n# [config] is read: keep it\n");
    } else if granted_config {
        out.push_str("\n# [config] is never read: drop it\n");
    }
    out
}

impl ControlPlane {
    /// Analyze the served functions of `tenant` (or all), or one function,
    /// over the records since `since` (RFC 3339).
    pub async fn analyze_access(
        &self,
        tenant: Option<&str>,
        name: Option<&str>,
        since: &str,
    ) -> Result<AccessReport, ControlError> {
        let rows = self
            .store()
            .audit_since(since, &["capability", "invoke"], tenant, MAX_RECORDS)
            .await?;
        let truncated = rows.len() >= MAX_RECORDS as usize;
        let mut used: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        let mut denied: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for row in &rows {
            let (Some(t), Some(f), Some(detail)) = (&row.tenant, &row.function, &row.detail) else {
                continue;
            };
            let Ok(detail) = serde_json::from_str::<serde_json::Value>(detail) else {
                continue;
            };
            // An egress flow record: its allowed flows have a decision record
            // of their own; a refused one may not (refused before or after the
            // decision), so it is a denied destination here.
            if detail.get("kind").and_then(|k| k.as_str()) == Some("egress") {
                if detail.get("allowed").and_then(|a| a.as_bool()) == Some(false) {
                    if let Some(unit) = refused_destination(&detail) {
                        denied
                            .entry((t.clone(), f.clone()))
                            .or_default()
                            .insert(unit);
                    }
                }
                continue;
            }
            // A capability record is one decision; an invocation record
            // lists its decisions, the first being the invoke decision
            // (the capability decisions have records of their own).
            let decision = if row.action == "invoke" {
                detail.get("decisions").and_then(|d| d.get(0)).cloned()
            } else {
                Some(detail)
            };
            let Some(decision) = decision else { continue };
            let Some(permission) = decision.get("permission").and_then(|p| p.as_str()) else {
                continue;
            };
            let key = (t.clone(), f.clone());
            if decision.get("allowed").and_then(|a| a.as_bool()) == Some(true) {
                used.entry(key).or_default().insert(permission.to_owned());
            } else {
                denied.entry(key).or_default().insert(permission.to_owned());
            }
        }
        let table = self.routes().snapshot();
        let mut functions = Vec::new();
        for f in table.functions() {
            let m = f.artifact().manifest();
            if tenant.is_some_and(|t| t != m.tenant.as_str())
                || name.is_some_and(|n| n != m.name.as_str())
            {
                continue;
            }
            let key = (m.tenant.as_str().to_owned(), m.name.as_str().to_owned());
            let granted = granted_units(&m.permissions);
            let used_units: BTreeSet<String> = used
                .get(&key)
                .map(|u| u.intersection(&granted).cloned().collect())
                .unwrap_or_default();
            let unused = granted.difference(&used_units).cloned().collect();
            functions.push(FunctionAccess {
                tenant: key.0.clone(),
                name: key.1.clone(),
                granted: granted.iter().cloned().collect(),
                used: used_units.iter().cloned().collect(),
                unused,
                denied: denied
                    .remove(&key)
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
                suggested: suggest(
                    &used_units,
                    m.permissions.config,
                    !m.permissions.egress.is_empty(),
                ),
            });
        }
        functions.sort_by(|a, b| (&a.tenant, &a.name).cmp(&(&b.tenant, &b.name)));
        if let (Some(t), Some(n)) = (tenant, name) {
            if functions.is_empty() {
                return Err(zerofn_store::StoreError::NoSuchDeployment {
                    tenant: t.to_owned(),
                    name: n.to_owned(),
                }
                .into());
            }
        }
        Ok(AccessReport {
            since: since.to_owned(),
            records: u64::try_from(rows.len()).unwrap_or(u64::MAX),
            truncated,
            functions,
        })
    }
}

/// The destination of a refused egress flow, as its decision would name it:
/// `egress:<scheme>://<host>:<port>` when the URL was read, else the URL as
/// recorded (userinfo replaced, query reduced to its length) with the reason.
fn refused_destination(flow: &serde_json::Value) -> Option<String> {
    let text = |key: &str| flow.get(key).and_then(|v| v.as_str());
    match (
        text("scheme"),
        text("host"),
        flow.get("port").and_then(|p| p.as_u64()),
    ) {
        (Some(scheme), Some(host), Some(port)) => Some(format!("egress:{scheme}://{host}:{port}")),
        _ => Some(format!(
            "egress:{} ({})",
            text("url")?,
            text("reason").unwrap_or("refused")
        )),
    }
}

/// A `since` that is not a duration (the text is escaped).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a duration such as 90s, 30m, 24h or 7d")]
pub struct DurationError(String);

/// Parses `30m`, `24h`, `7d`, `90s` into seconds. Hand-written rather than `humantime`:
/// weeks and longer units are refused on purpose (the analyzer reads a bounded window).
pub fn parse_duration(text: &str) -> Result<u64, DurationError> {
    let bad = || DurationError(text.escape_debug().to_string());
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerofn_policy::{InvokeSource, KvGrant};

    #[test]
    fn read_write_splits_into_units_and_the_suggestion_narrows() {
        let p = Permissions {
            kv: [
                KvGrant::parse("orders:read").unwrap(),
                KvGrant::parse("cache:read-write").unwrap(),
            ]
            .into(),
            call: ["billing".to_owned()].into(),
            config: false,
            invoke_from: [InvokeSource::Public].into(),
            pass_authorization: false,
            egress: Vec::new(),
            publish: Default::default(),
            buckets: Default::default(),
        };
        let granted = granted_units(&p);
        assert_eq!(
            granted.iter().map(String::as_str).collect::<Vec<_>>(),
            [
                "call:billing",
                "invoke:public",
                "kv:cache:read",
                "kv:cache:write",
                "kv:orders:read"
            ]
        );
        let used: BTreeSet<String> = ["kv:cache:read", "invoke:public"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let s = suggest(&used, true, false);
        assert!(s.contains("kv = [\"cache:read\"]"), "{s}");
        assert!(s.contains("call = []"), "{s}");
        assert!(s.contains("from = [\"public\"]"), "{s}");
        assert!(s.contains("[config] is never read"), "{s}");
        assert!(!suggest(&used, false, false).contains("[config]"));
        assert!(!s.contains("[egress]"), "{s}");
        // Egress: the destinations used, or a note to drop an unused allowlist.
        assert!(suggest(&used, false, true).contains("# [egress] is never used: drop it"));
        let mut with_egress = used.clone();
        with_egress.insert("egress:https://api.stripe.com:443".to_owned());
        let s = suggest(&with_egress, false, true);
        assert!(
            s.contains("[egress]\nallow = [\"https://api.stripe.com:443\"]"),
            "{s}"
        );
        // Publishing: a unit per queue, kept in the suggestion only when used.
        let publishing = Permissions {
            publish: ["orders".to_owned(), "audit".to_owned()].into(),
            ..Permissions::default()
        };
        assert!(granted_units(&publishing).contains("publish:audit"));
        let mut published = used.clone();
        published.insert("publish:orders".to_owned());
        let s = suggest(&published, false, false);
        assert!(s.contains("publish = [\"orders\"]"), "{s}");
        assert!(!suggest(&used, false, false).contains("publish"));
        // Object buckets: granted read-write, used for reading only.
        let objects = Permissions {
            buckets: [zerofn_policy::KvGrant::parse("uploads:read-write").unwrap()].into(),
            ..Permissions::default()
        };
        let granted = granted_units(&objects);
        assert!(
            granted.contains("buckets:uploads:read") && granted.contains("buckets:uploads:write")
        );
        let mut read_only = used.clone();
        read_only.insert("buckets:uploads:read".to_owned());
        let s = suggest(&read_only, false, false);
        assert!(s.contains("buckets = [\"uploads:read\"]"), "{s}");
        assert!(!suggest(&used, false, false).contains("buckets"));
    }

    #[test]
    fn refused_flows_name_their_destination() {
        let read = serde_json::json!({
            "kind": "egress", "allowed": false, "scheme": "http", "host": "meta.test",
            "port": 8000, "url": "http://meta.test:8000/x", "reason": "forbidden_range 169.254.169.254",
        });
        assert_eq!(
            refused_destination(&read).as_deref(),
            Some("egress:http://meta.test:8000")
        );
        let unread = serde_json::json!({
            "kind": "egress", "allowed": false, "host": null, "scheme": null, "port": null,
            "url": "http://<userinfo>@x.test/", "reason": "userinfo",
        });
        assert_eq!(
            refused_destination(&unread).as_deref(),
            Some("egress:http://<userinfo>@x.test/ (userinfo)")
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert!(parse_duration("7w").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("").is_err());
    }
}
