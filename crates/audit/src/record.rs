//! The audit record: what happened, to what, decided how.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use zerofn_store::AuditRow;

/// Longest free-text field kept; longer text is cut at a char boundary.
const MAX_TEXT: usize = 1024;

/// What was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Deploy,
    Undeploy,
    Invoke,
    TenantCreate,
    TenantKeyAdd,
    TenantKeyRemove,
    /// An operator replaced a tenant's route prefixes.
    TenantRoutesSet,
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
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deploy => "deploy",
            Action::Undeploy => "undeploy",
            Action::Invoke => "invoke",
            Action::TenantCreate => "tenant.create",
            Action::TenantKeyAdd => "tenant.key.add",
            Action::TenantKeyRemove => "tenant.key.remove",
            Action::TenantRoutesSet => "tenant.routes.set",
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
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How it was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed and done.
    Allow,
    /// Refused by a check or policy.
    Deny,
    /// Allowed, but failed while running (trap, timeout, store error).
    Error,
}

impl Outcome {
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
    /// Serialized as JSON; callers keep it small (it is hashed and stored
    /// with every record).
    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }
}

fn limit(mut s: String) -> String {
    if s.len() > MAX_TEXT {
        let mut cut = MAX_TEXT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
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
    fn long_text_is_cut_on_a_char_boundary() {
        let s = "é".repeat(MAX_TEXT);
        let r = AuditRecord::new("a", Action::Invoke, Outcome::Allow).reason(s);
        let reason = r.reason.unwrap();
        assert!(reason.len() <= MAX_TEXT);
        assert!(reason.chars().all(|c| c == 'é'));
    }
}
