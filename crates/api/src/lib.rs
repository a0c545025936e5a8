#![forbid(unsafe_code)]
//! The control API's request and response bodies (`docs/openapi.yaml`), one definition
//! for the server that parses and answers them and the CLI that sends and reads them, so
//! that the two agree at compile time.
//!
//! Requests refuse unknown fields (`deny_unknown_fields`): a misspelt field is a 400 that
//! names it, never a silently ignored setting. Responses accept fields they do not name, so
//! that a newer server can add some without breaking an older CLI.
//!
//! # Trust
//! Nothing: these are plain data. Every value in them is checked by whoever acts on it
//! (names by the store, keys and bundles by admission, policies by the policy crate).

use std::collections::BTreeMap;

mod objects;
pub use objects::{
    BucketDeleted, BucketInfo, BucketList, ObjectData, ObjectInfo, ObjectList, PutObject,
};

use serde::{Deserialize, Serialize};

/// `POST /v1/tenants`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub name: String,
    /// Trusted signing keys, PEM `PUBLIC KEY`.
    #[serde(default)]
    pub signing_keys: Vec<String>,
    /// The tenant's route space; `/<name>/...` when absent or empty.
    #[serde(default)]
    pub route_prefixes: Vec<String>,
}

/// A tenant, as `POST /v1/tenants` answers it (with its route space) and
/// `GET /v1/tenants` lists it (without).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub name: String,
    pub created_at: String,
    pub key_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_prefixes: Option<Vec<String>>,
}

/// `GET /v1/tenants`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantList {
    pub tenants: Vec<Tenant>,
}

/// `PUT /v1/tenants/{tenant}/routes`: the tenant's whole new route space.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRoutes {
    pub route_prefixes: Vec<String>,
}

/// `GET` and `PUT /v1/tenants/{tenant}/routes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRoutes {
    pub tenant: String,
    pub route_prefixes: Vec<String>,
}

/// `PUT /v1/tenants/{tenant}/limits`: the tenant's whole new limits, across all its
/// functions; an absent key is no limit of that kind, all absent removes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetTenantLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
}

/// `GET` and `PUT /v1/tenants/{tenant}/limits`: `null` is no limit of that kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantLimits {
    pub tenant: String,
    pub rate_per_second: Option<u32>,
    pub burst: Option<u32>,
    pub max_concurrency: Option<u32>,
}

/// `POST /v1/tenants/{tenant}/keys`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddKey {
    /// PEM `PUBLIC KEY`.
    pub public_key: String,
}

/// The answer to `POST /v1/tenants/{tenant}/keys`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAdded {
    pub tenant: String,
    pub key_id: String,
}

/// The answer to removing a key or an identity: what was removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    pub removed: String,
}

/// An attestation file submitted with a deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationFile {
    /// The file name, shown in the check table.
    pub name: String,
    /// The file's text (a Sigstore bundle's JSON or `.intoto.jsonl`).
    pub content: String,
}

/// `POST /v1/deployments` and `POST /v1/admission/explain`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    /// The manifest, TOML.
    pub manifest: String,
    /// base64 (standard alphabet) of the component bytes.
    pub component: String,
    /// The Sigstore bundle JSON, as text.
    pub bundle: String,
    /// Attestation files (bundles or `.intoto.jsonl`) submitted with it.
    #[serde(default)]
    pub attestations: Vec<AttestationFile>,
    /// Deploy a manifest version below the highest deployed for the function, for this
    /// reason (audited; needs `deploy.rollback` on the tenant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_rollback: Option<String>,
}

/// The manifest of a deploy or explain body, read only to find its tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ManifestOnly {
    pub manifest: String,
}

/// The answer to `POST /v1/deployments`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployed {
    pub tenant: String,
    pub name: String,
    pub digest: String,
    pub signer: String,
    pub routes: Vec<String>,
    /// The function's SPIFFE ID.
    pub spiffe_id: String,
    /// The policies that admitted it.
    #[serde(default)]
    pub admitted_by: Vec<String>,
    /// Layers composed in: import -> layer digest (absent without layers).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub layers: BTreeMap<String, String>,
    /// The digest of the composed component that runs, when it differs from `digest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composed_digest: Option<String>,
    /// The signed manifest's version.
    #[serde(default)]
    pub version: u64,
    /// The function's deploy number (`zerofn versions`): one more per deploy or rollback.
    #[serde(default)]
    pub number: u64,
}

/// `POST /v1/functions/{tenant}/{name}/rollback`: deploy version `to` again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The deploy number to go back to (`zerofn versions`).
    pub to: u64,
    /// Why, for the audit log (one line).
    #[serde(default)]
    pub reason: Option<String>,
}

/// One version of a function (`GET /v1/functions/{tenant}/{name}/versions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionVersion {
    /// The deploy number: 1 for the first deploy, one more per deploy or rollback.
    pub number: u64,
    /// `deploy` or `rollback`.
    pub kind: String,
    /// For a rollback, the version it deployed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<u64>,
    pub digest: String,
    pub signer: String,
    /// The signed manifest's version (the signer's counter).
    pub manifest_version: u64,
    pub routes: Vec<String>,
    pub deployed_at: String,
    /// The operator (audit actor) who deployed it.
    pub deployed_by: String,
    /// Whether its request is kept, so that `zerofn rollback --to` it is possible.
    pub kept: bool,
    /// Whether it is what serves now.
    pub current: bool,
}

/// One admission check, as an explanation or a refused deployment lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// What was checked (`digest`, `signature`, `policy`, ...).
    pub check: String,
    /// `pass`, `fail`, `info` or `skip`.
    pub result: String,
    pub detail: String,
}

/// The answer to `POST /v1/admission/explain`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explained {
    pub tenant: String,
    pub name: String,
    pub admitted: bool,
    pub checks: Vec<Check>,
}

/// `POST /v1/tenants/{tenant}/identities`: a keyless signing identity to trust, by exact
/// SAN or by pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddIdentity {
    /// Exact certificate identity (SAN).
    pub certificate_identity: Option<String>,
    /// Or a pattern the SAN must match (whole SAN, Rust regex syntax).
    pub certificate_identity_regexp: Option<String>,
    pub certificate_oidc_issuer: String,
    /// The Sigstore `trusted_root.json` text.
    pub trusted_root: String,
}

/// A keyless signing identity a tenant trusts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeylessIdentity {
    /// Short stable id (derived from the identity and issuer).
    pub id: String,
    /// `exact` or `regexp`.
    pub kind: String,
    /// The SAN, or the pattern for `regexp`.
    pub san: String,
    pub issuer: String,
    pub added_at: String,
}

/// `PUT /v1/tenants/{tenant}/admission`: absent fields keep their current value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetAdmission {
    /// Cedar policy text; an empty string restores the platform default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// A severity name, or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity_threshold: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_sbom: Option<bool>,
}

/// `GET` and `PUT /v1/tenants/{tenant}/admission`: a tenant's admission settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionView {
    pub tenant: String,
    pub key_ids: Vec<String>,
    pub identities: Vec<KeylessIdentity>,
    /// The policy text in force (the default when none was set).
    pub policy: String,
    pub policy_ids: Vec<String>,
    pub default_policy: bool,
    pub severity_threshold: Option<String>,
    pub require_sbom: bool,
    pub updated_at: Option<String>,
}

/// `GET /v1/tenants/{tenant}/functions/{name}/policy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionPolicy {
    pub tenant: String,
    pub name: String,
    /// The manifest's declarations, in manifest form.
    #[serde(default)]
    pub permissions: Permissions,
    /// The Cedar compiled from the manifest's declarations.
    pub compiled: String,
    /// The tenant's hand-written policy, if any.
    pub tenant_policy: Option<String>,
    /// The `forbid` policies compiled from the tenant's trust zone, if it is in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_policy: Option<String>,
}

/// What a function's manifest grants and allows (`[permissions]`, `[invoke]`), each grant
/// in manifest form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permissions {
    /// Key-value grants (`orders:read`).
    pub kv: Vec<String>,
    /// Functions of the same tenant it may call.
    pub call: Vec<String>,
    /// Whether it may read its own `[config]` values.
    pub config: bool,
    /// Who may invoke it (`public`, a function name, `tenant:<name>`, `event:<source>`,
    /// `jwt:<issuer>`, `apikey`).
    pub invoke_from: Vec<String>,
    /// Outbound HTTP destinations it may reach (`[egress] allow`, normalised URLs).
    #[serde(default)]
    pub egress: Vec<String>,
    /// Queues of its tenant it may publish to (`[permissions] publish`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
}

/// One function in an access analysis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionAccess {
    pub tenant: String,
    pub name: String,
    pub granted: Vec<String>,
    pub used: Vec<String>,
    pub unused: Vec<String>,
    /// Permissions the function tried to use and was denied.
    pub denied: Vec<String>,
    /// The least-privilege declaration, as manifest TOML.
    pub suggested: String,
}

/// `GET /v1/access-analyzer`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessReport {
    /// RFC 3339.
    pub since: String,
    pub records: u64,
    pub truncated: bool,
    pub functions: Vec<FunctionAccess>,
}

/// `POST /v1/tenants/{tenant}/layers`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishLayer {
    /// base64 (standard alphabet) of the layer component.
    pub component: String,
    /// The Sigstore bundle JSON, as text.
    pub bundle: String,
}

/// A published layer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub tenant: String,
    pub digest: String,
    pub signer: String,
    pub exports: Vec<String>,
    /// Bytes of the layer component.
    pub size: u64,
    pub published_at: String,
    /// Functions (names within the tenant) whose deployment pins it.
    pub pinned_by: Vec<String>,
}

/// `GET /v1/tenants/{tenant}/layers`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerList {
    pub layers: Vec<Layer>,
}

/// The answer to `DELETE /v1/tenants/{tenant}/layers/{digest}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerDeleted {
    pub deleted: String,
}

/// `PUT /v1/tenants/{tenant}/policy`: the Cedar text, or null to remove it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPolicy {
    pub policy: Option<String>,
}

/// `GET /v1/tenants/{tenant}/policy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantPolicy {
    pub tenant: String,
    pub policy: Option<String>,
    /// The `forbid` policies compiled from the tenant's trust zone, if it is in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_policy: Option<String>,
}

/// The answer to `PUT /v1/tenants/{tenant}/policy`: the ids of the policies in force
/// (none once the hand-written policy is removed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantPolicySet {
    pub tenant: String,
    pub policies: Vec<String>,
}

/// A deployed function, as `GET /v1/functions` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    pub tenant: String,
    pub name: String,
    pub digest: String,
    pub signer: String,
    pub routes: Vec<String>,
    pub deployed_at: String,
    /// The signed manifest's version (0 for a deployment stored before manifests were
    /// signed).
    #[serde(default)]
    pub version: u64,
}

/// `GET /v1/functions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionList {
    pub functions: Vec<Function>,
}

/// The answer to `DELETE /v1/functions/{tenant}/{name}`: `tenant/name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undeployed {
    pub undeployed: String,
}

/// `GET /v1/functions/{tenant}/{name}/svid`: the function's current X.509-SVID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Svid {
    pub spiffe_id: String,
    /// Lowercase hex.
    pub serial: String,
    /// RFC 3339.
    pub not_after: String,
    /// PEM.
    pub certificate: String,
}

/// The answer to `POST /v1/functions/{tenant}/{name}/svid/revoke`: the revoked serial.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    pub revoked: String,
}

/// `GET /v1/audit/verify`: 200 with `ok: true`, or 409 with `ok: false`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AuditVerify {
    Intact {
        /// Always `true`.
        ok: bool,
        records: i64,
        head: String,
        /// Size of the signed checkpoint the tree was checked against.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checkpoint_size: Option<u64>,
        /// Its root hash, base64.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        root: Option<String>,
    },
    Broken {
        /// Always `false`.
        ok: bool,
        broken_at: i64,
        problem: String,
    },
}

impl AuditVerify {
    pub fn intact(records: i64, head: String) -> AuditVerify {
        AuditVerify::Intact {
            ok: true,
            records,
            head,
            checkpoint_size: None,
            root: None,
        }
    }

    /// Intact, and the Merkle tree matches the signed checkpoint of
    /// `checkpoint_size` records with root `root`.
    pub fn intact_with_checkpoint(
        records: i64,
        head: String,
        checkpoint_size: u64,
        root: String,
    ) -> AuditVerify {
        AuditVerify::Intact {
            ok: true,
            records,
            head,
            checkpoint_size: Some(checkpoint_size),
            root: Some(root),
        }
    }

    pub fn broken(broken_at: i64, problem: String) -> AuditVerify {
        AuditVerify::Broken {
            ok: false,
            broken_at,
            problem,
        }
    }
}

/// `GET /v1/audit?n=N`: the newest records, oldest first. The record type is the audit
/// log's own (`zerofn_audit::StoredRecord`), which this crate does not depend on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditTail<R> {
    pub records: Vec<R>,
}

/// `GET /v1/audit/query`: one page of the records matching the query, newest first. The
/// record type is the audit log's own (`zerofn_audit::StoredRecord`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQueryPage<R> {
    pub records: Vec<R>,
    /// The `before` of the next page; absent when every matching record was returned. A
    /// page may hold fewer records than its limit and still have one (the server reads a
    /// bounded number of records per page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
}

/// One line a function wrote to stdout or stderr, one record it logged through
/// `wasi:logging` (stream `log`), or a `platform` marker, as stored: the text is the
/// guest's, with invalid UTF-8 replaced; it is not escaped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Position in the log; later lines have larger ids.
    pub id: i64,
    pub tenant: String,
    pub function: String,
    pub invocation_id: String,
    /// RFC 3339 UTC time the output was captured.
    pub time: String,
    /// `stdout`, `stderr`, `log` or `platform`.
    pub stream: String,
    /// The text; for a `log` record, its message.
    pub line: String,
    /// A `log` record's level (`trace`, `debug`, `info`, `warn`, `error`, `critical`);
    /// `null` for other streams.
    #[serde(default)]
    pub level: Option<String>,
    /// A `log` record's context (the guest's, unescaped); `null` for other streams.
    #[serde(default)]
    pub context: Option<String>,
}

/// `GET /v1/tenants/{tenant}/logs`: lines, oldest first, and the `after` of the next read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPage {
    pub lines: Vec<LogLine>,
    pub next: i64,
}

/// `POST /v1/operators`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddOperator {
    pub name: String,
    /// The operator's ECDSA P-256 public key, PEM `PUBLIC KEY`.
    pub public_key: String,
    /// How long the certificate is valid; the server's default when absent.
    #[serde(default)]
    pub ttl_hours: Option<u64>,
}

/// The answer to `POST /v1/operators`: the certificate just issued.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedOperator {
    pub name: String,
    pub spiffe_id: String,
    pub serial: String,
    pub not_after: String,
    /// The certificate, PEM.
    pub certificate: String,
    /// The trust bundle (platform CA, PEM) that the server certificate chains to.
    pub ca: String,
}

/// An operator certificate, as `GET /v1/operators` lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorCertificate {
    pub name: String,
    /// Lowercase hex.
    pub serial: String,
    /// RFC 3339.
    pub not_after: String,
    pub created_at: String,
    /// When it was revoked; `None` while in force.
    pub revoked_at: Option<String>,
}

/// `GET /v1/operators`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorList {
    pub operators: Vec<OperatorCertificate>,
}

/// The answer to `DELETE /v1/operators/{name}`: the name and the revoked serials.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorRemoved {
    pub removed: String,
    pub revoked: Vec<String>,
}

/// `POST /v1/audit/prune`: remove the records stamped before `before`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditPrune {
    /// A duration back from now (`90d`, `24h`) or an RFC 3339 time.
    pub before: String,
}

/// `PUT /v1/control-policy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetControlPolicy {
    /// Cedar text.
    pub policy: String,
}

/// The answer to `PUT /v1/control-policy`: the ids of the policies now in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPolicyIds {
    pub ids: Vec<String>,
}

/// `GET /v1/control-policy`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlPolicy {
    /// The platform's policy text.
    pub policy: String,
    pub ids: Vec<String>,
    /// The built-in root permit, always in force.
    pub builtin: String,
}

/// `POST /v1/tenants/{tenant}/queues`: a new durable queue; unset settings take the
/// defaults (visibility timeout `30s`, 5 attempts, retention `4d`, no dead-letter queue).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateQueue {
    pub name: String,
    /// A duration: `500ms`, `30s`, `5m`, `2h`, `4d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<String>,
    #[serde(default)]
    pub fifo: bool,
}

/// A queue and its counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queue {
    pub tenant: String,
    pub name: String,
    pub visibility_timeout_ms: u64,
    pub max_attempts: u32,
    pub retention_ms: u64,
    pub dead_letter: Option<String>,
    pub fifo: bool,
    pub created_at: String,
    /// Messages ready for delivery now.
    pub visible: u64,
    /// Messages being delivered or waiting out a retry delay.
    pub in_flight: u64,
    pub oldest_age_ms: u64,
}

/// `GET /v1/tenants/{tenant}/schedules`: the schedules of the tenant's functions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleList {
    pub schedules: Vec<ScheduleView>,
}

/// One `[[triggers]] schedule` of a deployed function.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleView {
    pub function: String,
    /// The trigger's `name`.
    pub name: String,
    /// The cron expression.
    pub schedule: String,
    pub timezone: String,
    /// `skip` or `run-once`.
    pub missed: String,
    /// The scheduled time of the last handled fire (RFC 3339, UTC).
    pub last_run: Option<String>,
    /// The next fire time (RFC 3339, UTC); absent when it never fires again.
    pub next_run: Option<String>,
    /// Fire times skipped since the platform started because a run was still going.
    pub skipped: u64,
    /// Whether a run is going now.
    pub running: bool,
}

/// `GET /v1/tenants/{tenant}/queues`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueList {
    pub queues: Vec<Queue>,
}

/// One message of `POST /v1/tenants/{tenant}/queues/{queue}/messages`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutgoingMessage {
    /// The message data, base64 (standard alphabet, padded).
    pub data: String,
    /// The CloudEvents `id`; a UUID when absent. A queue keeps one message per id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The CloudEvents `type` (default `dev.zerofn.queue.message`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The message group (FIFO queues only, required there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The producer's W3C trace context (the CloudEvents distributed-tracing
    /// extension attributes; default: the request's `traceparent` header). The
    /// delivery continues that trace; an invalid value is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

/// `POST /v1/tenants/{tenant}/queues/{queue}/messages`: published together or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishMessages {
    pub messages: Vec<OutgoingMessage>,
}

/// One published message: its id, and whether the queue had it already.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedMessage {
    pub id: String,
    pub duplicate: bool,
}

/// The answer to a publish: durable once returned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedMessages {
    pub queue: String,
    pub published: Vec<PublishedMessage>,
}

/// A stored message (`GET .../messages`, a peek that changes nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub content_type: String,
    pub group: Option<String>,
    /// base64
    pub data: String,
    pub published_at_ms: u64,
    pub visible_at_ms: u64,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// For a message in a dead-letter queue: the queue it came from.
    pub source_queue: Option<String>,
}

/// `GET /v1/tenants/{tenant}/queues/{queue}/messages`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessages {
    pub queue: String,
    pub messages: Vec<QueuedMessage>,
}

/// How many messages a redrive, purge or delete moved or removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueChanged {
    pub queue: String,
    pub messages: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_refuse_unknown_fields() {
        let e = serde_json::from_str::<AddKey>(r#"{"public_key":"k","extra":1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `extra`"), "{e}");
        let e =
            serde_json::from_str::<CreateTenant>(r#"{"name":"a","signing_key":[]}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `signing_key`"), "{e}");
    }

    #[test]
    fn responses_accept_fields_they_do_not_name() {
        let f: Function = serde_json::from_str(
            r#"{"tenant":"a","name":"b","digest":"d","signer":"s","routes":["/a"],"deployed_at":"t","new":true}"#,
        )
        .unwrap();
        assert_eq!(f.routes, ["/a"]);
    }

    #[test]
    fn audit_verify_keeps_its_two_shapes() {
        let intact = AuditVerify::intact(3, "h".to_owned());
        assert_eq!(
            serde_json::to_string(&intact).unwrap(),
            r#"{"ok":true,"records":3,"head":"h"}"#
        );
        let broken = AuditVerify::broken(2, "p".to_owned());
        assert_eq!(
            serde_json::to_string(&broken).unwrap(),
            r#"{"ok":false,"broken_at":2,"problem":"p"}"#
        );
        let back: AuditVerify =
            serde_json::from_str(r#"{"ok":false,"broken_at":2,"problem":"p"}"#).unwrap();
        assert_eq!(back, broken);
    }

    #[test]
    fn tenant_route_prefixes_are_absent_when_not_known() {
        let t = Tenant {
            name: "a".to_owned(),
            created_at: "t".to_owned(),
            key_ids: Vec::new(),
            route_prefixes: None,
        };
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"name":"a","created_at":"t","key_ids":[]}"#
        );
    }
}
