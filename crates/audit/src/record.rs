//! The audit record: what happened, to what, decided how.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use zerofn_store::AuditRow;

/// Longest text field kept (reason, names, ids, and every string inside
/// `detail`); longer text is cut at a char boundary and ends in
/// [`TRUNCATED`]. Much of this text comes from requests (paths, keys,
/// reasons naming them), so it is what bounds the log's growth per record.
pub const MAX_TEXT: usize = 512;
/// Largest `detail` kept, as an estimate of its JSON size; a larger one is
/// replaced by a marker saying how large it was.
pub const MAX_DETAIL: usize = 64 * 1024;
/// Most elements kept of any array inside `detail`.
const MAX_DETAIL_ITEMS: usize = 256;
/// What a cut text field ends with.
pub const TRUNCATED: &str = "…[truncated]";

/// What was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Deploy,
    Undeploy,
    Invoke,
    TenantCreate,
    TenantKeyAdd,
    TenantKeyRemove,
    /// An operator replaced a tenant's route prefixes.
    TenantRoutesSet,
    /// An operator replaced a tenant's rate and concurrency limits.
    TenantLimitsSet,
    TenantIdentityAdd,
    TenantIdentityRemove,
    AdmissionSet,
    LayerPublish,
    LayerDelete,
    ApiAuthenticate,
    ApiAuthorize,
    OperatorAdd,
    OperatorRemove,
    ControlPolicySet,
    PlatformStart,
    /// A guest's use of a host capability (key-value, call, config,
    /// outbound HTTP), decided by policy.
    Capability,
    PolicySet,
    SvidRevoke,
    /// A connection refused or broken off before any request could be
    /// routed (connection limits, malformed or oversized request heads).
    Connection,
    /// A function deployed again at an earlier version (`zerofn rollback`).
    Rollback,
    /// A tenant's JWT issuer registered or removed (`zerofn auth jwt`).
    AuthIssuerAdd,
    AuthIssuerRemove,
    /// The platform's refresh of a JWKS URL issuer's keys: a changed key set (`allow`) or a
    /// failed fetch whose keys in force were kept (`error`).
    AuthJwksRefresh,
    /// A tenant's API key created or revoked (`zerofn apikey`); named, never shown.
    ApiKeyCreate,
    ApiKeyRevoke,
    /// Old records' bodies removed from the log (`zerofn audit prune`); the
    /// record names the new boundary.
    AuditPrune,
    /// A configuration directory applied (`zerofn apply`), or refused.
    ConfigApply,
    /// A trust zone created or replaced (`zerofn zone set`), or deleted.
    ZoneSet,
    ZoneDelete,
    /// A tenant's durable queue created or deleted (`zerofn queue`).
    QueueCreate,
    QueueDelete,
    /// Messages published to a queue (one record per publish request).
    QueuePublish,
    /// A dead-letter queue's messages moved back to their queues.
    QueueRedrive,
    /// Every message of a queue deleted.
    QueuePurge,
    /// A message moved to its dead-letter queue after its last attempt.
    QueueDeadLetter,
    /// A key-value change parked after its last delivery attempt, with its error.
    KvChangeParked,
    /// Key-value changes removed undelivered: parked past their retention, or
    /// pending for a subscription whose function is no longer deployed.
    KvChangesDropped,
    /// A tenant's CA for mTLS callers registered or removed (`zerofn auth mtls`).
    AuthMtlsAdd,
    AuthMtlsRemove,
    /// An object stored (`zerofn object put`, or a function): with its digest and size,
    /// never its bytes.
    ObjectPut,
    /// An object (or an empty bucket) deleted: with the digest and size it had.
    ObjectDelete,
}

impl Action {
    /// Every action, in the order they are declared.
    pub const ALL: [Action; 45] = [
        Action::Deploy,
        Action::Undeploy,
        Action::Invoke,
        Action::TenantCreate,
        Action::TenantKeyAdd,
        Action::TenantKeyRemove,
        Action::TenantRoutesSet,
        Action::TenantLimitsSet,
        Action::TenantIdentityAdd,
        Action::TenantIdentityRemove,
        Action::AdmissionSet,
        Action::LayerPublish,
        Action::LayerDelete,
        Action::ApiAuthenticate,
        Action::ApiAuthorize,
        Action::OperatorAdd,
        Action::OperatorRemove,
        Action::ControlPolicySet,
        Action::PlatformStart,
        Action::Capability,
        Action::PolicySet,
        Action::SvidRevoke,
        Action::Connection,
        Action::Rollback,
        Action::AuthIssuerAdd,
        Action::AuthIssuerRemove,
        Action::AuthJwksRefresh,
        Action::ApiKeyCreate,
        Action::ApiKeyRevoke,
        Action::AuditPrune,
        Action::ConfigApply,
        Action::ZoneSet,
        Action::ZoneDelete,
        Action::QueueCreate,
        Action::QueueDelete,
        Action::QueuePublish,
        Action::QueueRedrive,
        Action::QueuePurge,
        Action::QueueDeadLetter,
        Action::KvChangeParked,
        Action::KvChangesDropped,
        Action::AuthMtlsAdd,
        Action::AuthMtlsRemove,
        Action::ObjectPut,
        Action::ObjectDelete,
    ];

    /// The action named `name` as records spell it (`tenant.create`), if any.
    pub fn parse(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deploy => "deploy",
            Action::Undeploy => "undeploy",
            Action::Invoke => "invoke",
            Action::TenantCreate => "tenant.create",
            Action::TenantKeyAdd => "tenant.key.add",
            Action::TenantKeyRemove => "tenant.key.remove",
            Action::TenantRoutesSet => "tenant.routes.set",
            Action::TenantLimitsSet => "tenant.limits.set",
            Action::TenantIdentityAdd => "tenant.identity.add",
            Action::TenantIdentityRemove => "tenant.identity.remove",
            Action::AdmissionSet => "admission.set",
            Action::LayerPublish => "layer.publish",
            Action::LayerDelete => "layer.delete",
            Action::ApiAuthenticate => "api.authenticate",
            Action::ApiAuthorize => "api.authorize",
            Action::OperatorAdd => "operator.add",
            Action::OperatorRemove => "operator.remove",
            Action::ControlPolicySet => "control_policy.set",
            Action::PlatformStart => "platform.start",
            Action::Capability => "capability",
            Action::PolicySet => "policy.set",
            Action::SvidRevoke => "svid.revoke",
            Action::Connection => "connection",
            Action::Rollback => "rollback",
            Action::AuthIssuerAdd => "auth.issuer.add",
            Action::AuthIssuerRemove => "auth.issuer.remove",
            Action::AuthJwksRefresh => "auth.jwks.refresh",
            Action::ApiKeyCreate => "apikey.create",
            Action::ApiKeyRevoke => "apikey.revoke",
            Action::AuditPrune => "audit.prune",
            Action::ConfigApply => "config.apply",
            Action::ZoneSet => "zone.set",
            Action::ZoneDelete => "zone.delete",
            Action::QueueCreate => "queue.create",
            Action::QueueDelete => "queue.delete",
            Action::QueuePublish => "queue.publish",
            Action::QueueRedrive => "queue.redrive",
            Action::QueuePurge => "queue.purge",
            Action::QueueDeadLetter => "queue.dead_letter",
            Action::KvChangeParked => "kv.change_parked",
            Action::KvChangesDropped => "kv.changes_dropped",
            Action::AuthMtlsAdd => "auth.mtls.add",
            Action::AuthMtlsRemove => "auth.mtls.remove",
            Action::ObjectPut => "object.put",
            Action::ObjectDelete => "object.delete",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How it was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Allowed and done.
    Allow,
    /// Refused by a check or policy.
    Deny,
    /// Allowed, but failed while running (trap, timeout, store error).
    Error,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 3] = [Outcome::Allow, Outcome::Deny, Outcome::Error];

    /// The outcome named `name` (`allow`, `deny`, `error`), if any.
    pub fn parse(name: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Error => "error",
        }
    }
}

/// A record to append. The log assigns time, sequence number and hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub(crate) actor: String,
    pub(crate) action: Action,
    pub(crate) outcome: Outcome,
    pub(crate) tenant: Option<String>,
    pub(crate) function: Option<String>,
    pub(crate) digest: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) duration: Option<Duration>,
    pub(crate) status: Option<u16>,
    pub(crate) invocation_id: Option<String>,
    pub(crate) detail: Option<serde_json::Value>,
}

impl AuditRecord {
    pub fn new(actor: impl Into<String>, action: Action, outcome: Outcome) -> AuditRecord {
        AuditRecord {
            actor: limit(actor.into()),
            action,
            outcome,
            tenant: None,
            function: None,
            digest: None,
            reason: None,
            duration: None,
            status: None,
            invocation_id: None,
            detail: None,
        }
    }
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(limit(tenant.into()));
        self
    }
    pub fn function(mut self, function: impl Into<String>) -> Self {
        self.function = Some(limit(function.into()));
        self
    }
    pub fn digest(mut self, digest: impl Into<String>) -> Self {
        self.digest = Some(limit(digest.into()));
        self
    }
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(limit(reason.into()));
        self
    }
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = Some(duration);
        self
    }
    pub fn status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }
    pub fn invocation_id(mut self, id: impl Into<String>) -> Self {
        self.invocation_id = Some(limit(id.into()));
        self
    }
    /// Structured detail: policy decisions and what they were about.
    /// Serialized as JSON and hashed as stored. Bounded here: every string
    /// in it is cut like the text fields, arrays keep their first
    /// elements, and a detail still larger than [`MAX_DETAIL`] is replaced
    /// by `{"truncated": true, "approx_bytes": n}`.
    pub fn detail(mut self, mut detail: serde_json::Value) -> Self {
        let size = bound_value(&mut detail, 0);
        if size > MAX_DETAIL {
            detail = serde_json::json!({ "truncated": true, "approx_bytes": size });
        }
        self.detail = Some(detail);
        self
    }

    /// Add one field to the detail object (making one if there is none),
    /// for what a record learns after its detail was built (the trace id of
    /// a traced invocation). A detail that is not an object, or was
    /// truncated, is left as it is. The value is bounded like the rest.
    pub fn detail_field(mut self, key: &str, mut value: serde_json::Value) -> Self {
        bound_value(&mut value, 1);
        match &mut self.detail {
            None => {
                let mut map = serde_json::Map::new();
                map.insert(key.to_owned(), value);
                self.detail = Some(serde_json::Value::Object(map));
            }
            Some(serde_json::Value::Object(map)) if !map.contains_key("truncated") => {
                map.insert(key.to_owned(), value);
            }
            Some(_) => {}
        }
        self
    }

    /// The action recorded.
    pub fn action(&self) -> Action {
        self.action
    }

    /// The outcome recorded.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// The reason recorded, if any.
    pub fn reason_text(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The status recorded, if any.
    pub fn status_code(&self) -> Option<u16> {
        self.status
    }

    /// The detail recorded, if any.
    pub fn detail_value(&self) -> Option<&serde_json::Value> {
        self.detail.as_ref()
    }

    /// The tenant recorded, if any.
    pub fn tenant_text(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// The function recorded, if any.
    pub fn function_text(&self) -> Option<&str> {
        self.function.as_deref()
    }

    /// The duration recorded, if any.
    pub fn duration_value(&self) -> Option<Duration> {
        self.duration
    }
}

/// Deepest nesting of `detail` kept; deeper values become `null`.
const MAX_DETAIL_DEPTH: usize = 16;

/// Cut every string in `value` to [`MAX_TEXT`] and every array to
/// [`MAX_DETAIL_ITEMS`]; returns an estimate of its JSON size (without
/// serializing it, which would cost more than the record itself).
fn bound_value(value: &mut serde_json::Value, depth: usize) -> usize {
    use serde_json::Value;
    if depth > MAX_DETAIL_DEPTH {
        *value = Value::Null;
        return 4;
    }
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 20,
        Value::String(s) => {
            if s.len() > MAX_TEXT {
                *s = limit(std::mem::take(s));
            }
            s.len() + 2
        }
        Value::Array(items) => {
            items.truncate(MAX_DETAIL_ITEMS);
            items
                .iter_mut()
                .map(|v| bound_value(v, depth + 1) + 1)
                .sum::<usize>()
                + 2
        }
        Value::Object(map) => {
            if map.keys().any(|k| k.len() > MAX_TEXT) {
                let long: Vec<String> =
                    map.keys().filter(|k| k.len() > MAX_TEXT).cloned().collect();
                for key in long {
                    if let Some(v) = map.remove(&key) {
                        map.insert(limit(key), v);
                    }
                }
            }
            map.iter_mut()
                .map(|(k, v)| k.len() + 4 + bound_value(v, depth + 1))
                .sum::<usize>()
                + 2
        }
    }
}

/// `s` cut to at most [`MAX_TEXT`] bytes on a char boundary, ending in
/// [`TRUNCATED`] when it was cut.
fn limit(mut s: String) -> String {
    if s.len() > MAX_TEXT {
        let mut cut = MAX_TEXT.saturating_sub(TRUNCATED.len());
        while !s.is_char_boundary(cut) {
            cut = cut.saturating_sub(1);
        }
        s.truncate(cut);
        s.push_str(TRUNCATED);
    }
    s
}

/// A record as read back, for listings (`zerofn audit tail --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StoredRecord {
    pub seq: i64,
    pub time: String,
    pub actor: String,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub function: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub digest: Option<String>,
    pub decision: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub duration_us: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub invocation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<serde_json::Value>,
    pub prev_hash: String,
    pub hash: String,
}

impl From<AuditRow> for StoredRecord {
    fn from(r: AuditRow) -> Self {
        StoredRecord {
            seq: r.seq,
            time: r.time,
            actor: r.actor,
            action: r.action,
            tenant: r.tenant,
            function: r.function,
            digest: r.digest,
            decision: r.decision,
            reason: r.reason,
            duration_us: r.duration_us,
            status: r.status,
            invocation_id: r.invocation_id,
            detail: r.detail.and_then(|d| serde_json::from_str(&d).ok()),
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detail_field_is_added_to_the_object_or_makes_one() {
        let r = AuditRecord::new("gateway", Action::Invoke, Outcome::Allow)
            .detail(serde_json::json!({"caller": "x"}))
            .detail_field("trace_id", "abc".into());
        assert_eq!(
            r.detail_value(),
            Some(&serde_json::json!({"caller": "x", "trace_id": "abc"}))
        );
        let bare = AuditRecord::new("gateway", Action::Invoke, Outcome::Allow)
            .detail_field("trace_id", "abc".into());
        assert_eq!(
            bare.detail_value(),
            Some(&serde_json::json!({"trace_id": "abc"}))
        );
        let list = AuditRecord::new("gateway", Action::Invoke, Outcome::Allow)
            .detail(serde_json::json!([1]))
            .detail_field("trace_id", "abc".into());
        assert_eq!(list.detail_value(), Some(&serde_json::json!([1])));
    }

    #[test]
    fn every_action_and_outcome_parses_from_its_name_and_nothing_else_does() {
        let names: std::collections::BTreeSet<&str> =
            Action::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(names.len(), Action::ALL.len(), "two actions share a name");
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(o));
        }
        for bad in ["", "Invoke", "invoke ", "maybe", "ALLOW"] {
            assert_eq!(Action::parse(bad), None, "{bad}");
            assert_eq!(Outcome::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary_and_marked() {
        let s = "é".repeat(MAX_TEXT);
        let r = AuditRecord::new("a", Action::Invoke, Outcome::Allow).reason(s);
        let reason = r.reason.unwrap();
        assert!(reason.len() <= MAX_TEXT);
        let kept = reason.strip_suffix(TRUNCATED).expect("marked as truncated");
        assert!(!kept.is_empty() && kept.chars().all(|c| c == 'é'));
        // Short text is kept as it is.
        let r = AuditRecord::new("a", Action::Invoke, Outcome::Allow).reason("short");
        assert_eq!(r.reason.as_deref(), Some("short"));
    }

    #[test]
    fn a_15_kb_path_is_stored_in_at_most_max_text_bytes_everywhere() {
        let path = format!("/{}", "a".repeat(15 * 1024));
        let r = AuditRecord::new(path.clone(), Action::Invoke, Outcome::Deny)
            .tenant(path.clone())
            .function(path.clone())
            .digest(path.clone())
            .invocation_id(path.clone())
            .reason(format!("no route for {path}"))
            .detail(serde_json::json!({ "path": path, "nested": [{ path.clone(): path }] }));
        for text in [
            &r.actor,
            r.tenant.as_ref().unwrap(),
            r.function.as_ref().unwrap(),
            r.digest.as_ref().unwrap(),
            r.invocation_id.as_ref().unwrap(),
            r.reason.as_ref().unwrap(),
        ] {
            assert!(text.len() <= MAX_TEXT && text.ends_with(TRUNCATED));
        }
        let detail = r.detail.unwrap().to_string();
        // Three strings of at most MAX_TEXT each, plus the JSON around them.
        assert!(detail.len() < 4 * MAX_TEXT, "{}", detail.len());
        assert!(detail.contains(TRUNCATED));
    }

    #[test]
    fn a_huge_detail_is_replaced_by_a_marker_and_small_ones_are_kept() {
        let big: Vec<_> = (0..200)
            .map(|i| serde_json::json!({ "n": i, "s": "x".repeat(500) }))
            .collect();
        let r = AuditRecord::new("a", Action::Invoke, Outcome::Allow)
            .detail(serde_json::json!({ "decisions": big }));
        let d = r.detail.unwrap();
        assert_eq!(d["truncated"], true, "{d}");
        assert!(d["approx_bytes"].as_u64().unwrap() > MAX_DETAIL as u64);
        let small = serde_json::json!({ "decisions": [{ "action": "invoke", "allowed": true }] });
        let r = AuditRecord::new("a", Action::Invoke, Outcome::Allow).detail(small.clone());
        assert_eq!(r.detail, Some(small));
        // Arrays are cut, deep nesting is bounded.
        let mut deep = serde_json::json!(1);
        for _ in 0..100 {
            deep = serde_json::json!([deep]);
        }
        let r = AuditRecord::new("a", Action::Invoke, Outcome::Allow)
            .detail(serde_json::json!({ "items": vec![1; 10_000], "deep": deep }));
        let d = r.detail.unwrap();
        assert_eq!(d["items"].as_array().unwrap().len(), MAX_DETAIL_ITEMS);
        assert!(d.to_string().len() < 4 * 1024);
    }
}
