//! The control plane's operations, independent of HTTP: tenants and keys,
//! deploy and undeploy, restore at start-up, audit queries. Each operation
//! appends its audit record before its effect becomes visible.

use std::collections::BTreeMap;
use std::sync::Arc;

use zerofn_admission::{
    readmit, AdmissionError, AdmissionReport, AdmittedArtifact, Digest, LayerError, Manifest,
    ManifestError, PolicyError, PublicKey, Route, SubmittedFile, TrustedSigners,
};
use zerofn_audit::{Action, AuditError, AuditLog, AuditRecord, Outcome, StoredRecord};
use zerofn_gateway::Routes;
use zerofn_sandbox::{LoadedFunction, Sandbox, SandboxError};
use zerofn_store::{
    DeploymentRow, DeploymentSummary, LayerRow, NewVersion, Store, StoreError, TenantRow,
    VersionOrigin, VersionSummary,
};
use zerofn_types::{FunctionName, TenantName};

use crate::admission::VulnDbCache;
use crate::clock::now;
use crate::identity::Identities;
use crate::layers::{compose_with_layers, describe_layers};

/// What a deploy is checked against when it is not the platform in force: the state a
/// configuration apply is about to make, so every function of an apply is admitted and
/// checked before anything of the apply is stored. `None` fields mean "as in force".
#[derive(Default)]
pub(crate) struct DeployBasis {
    /// The tenant's admission rules (signers, policy, thresholds).
    pub(crate) rules: Option<zerofn_admission::AdmissionRules>,
    /// The trust zones.
    pub(crate) zones: Option<Arc<crate::zones::Zones>>,
    /// Every tenant's route prefixes, `(prefix, tenant)`.
    pub(crate) route_space: Option<Vec<(String, String)>>,
    /// Every function, `(tenant, name, routes)`.
    pub(crate) functions: Option<Vec<(String, String, Vec<String>)>>,
}

/// A deploy that passed every check, compiled, with nothing stored: its audit record,
/// its row and version, and the function to put in force. Holds the function's lock,
/// so no other change of the function runs between the checks and the effect.
pub(crate) struct PreparedDeploy {
    _lock: tokio::sync::OwnedMutexGuard<()>,
    actor: String,
    action: Action,
    pub(crate) allowed: AuditRecord,
    pub(crate) row: DeploymentRow,
    pub(crate) version: NewVersion,
    pub(crate) loaded: LoadedFunction,
    response: DeployResponse,
}

/// What went wrong with a control-plane request. Mapped to HTTP statuses
/// in one place (`api::status_of`).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    BadRequest(String),
    /// The request as sent does not parse (body JSON, base64, query): refused
    /// by the API before the control plane sees it, and audited there.
    #[error("{0}")]
    InvalidRequest(String),
    #[error("invalid manifest: {0}")]
    Manifest(#[from] ManifestError),
    #[error("admission refused: {0}")]
    Admission(#[from] AdmissionError),
    /// A layer, or the composition with it, was refused (its signature is `Admission`).
    #[error("admission refused: {0}")]
    Layer(LayerError),
    #[error("invalid public key: {0}")]
    InvalidKey(AdmissionError),
    /// The admission pipeline refused: the first failed check, and every check.
    #[error("admission refused: {reason}")]
    Refused {
        reason: String,
        report: AdmissionReport,
    },
    #[error("route `{route}` is not in tenant `{tenant}`'s route space: {owner}; ask an operator to assign it (`zerofn tenant routes {tenant} --set ...`)")]
    RouteNotOwned {
        route: String,
        tenant: String,
        owner: String,
    },
    #[error("invalid policy, nothing changed: {0}")]
    Policy(PolicyError),
    #[error("admission refused: {0}")]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The operator may deploy, but not what this deploy also does (grant powers, roll back).
    #[error("deploying this needs `{action}` on tenant `{tenant}` as well as `deploy`: {what}")]
    NotAllowed {
        action: &'static str,
        tenant: String,
        what: String,
    },
    /// A path parameter that cannot be a tenant's or a function's name (not a DNS label):
    /// it names nothing, so the answer is the store's "no such" error. Refused by the API
    /// before the control plane sees it, and audited there.
    #[error(transparent)]
    NoSuchName(StoreError),
    /// A zone document, or the set of zones it would make, is invalid.
    #[error("invalid zone, nothing changed: {0}")]
    Zone(#[from] zerofn_manifest::zone::ZoneError),
    /// A zone change that the platform as it runs does not allow (a deployed function's
    /// egress outside the new ceiling, a zone still named by another, an unknown tenant).
    #[error("zone `{zone}` not changed: {problem}")]
    ZoneConflict { zone: String, problem: String },
    /// A deploy its tenant's zone refuses (egress outside the ceiling, a signer the zone
    /// does not list).
    #[error("zone `{zone}` refuses this deploy: {problem}")]
    ZoneRefused { zone: String, problem: String },
    #[error("internal error: {0}")]
    Internal(String),
    /// The platform runs with `--locked-config`: configuration changes only by `apply`.
    #[error("the platform's configuration is locked (`zerofn up --locked-config`): change the configuration directory and run `zerofn apply DIR`")]
    ConfigLocked,
    /// A queue operation refused or failed (`zerofn-events`).
    #[error(transparent)]
    Events(#[from] zerofn_events::EventsError),
    /// An object operation refused or failed (`zerofn-events`).
    #[error(transparent)]
    Objects(#[from] zerofn_events::ObjectsError),
}

impl From<LayerError> for ControlError {
    /// A layer's signature refusal is an admission refusal like a function's, with the same
    /// kind and status.
    fn from(e: LayerError) -> Self {
        match e {
            LayerError::Signature(e) => ControlError::Admission(e),
            other => ControlError::Layer(other),
        }
    }
}

impl ControlError {
    /// Machine-readable kind for API error bodies.
    pub fn kind(&self) -> &'static str {
        match self {
            ControlError::BadRequest(_) | ControlError::InvalidRequest(_) => "bad_request",
            ControlError::Manifest(_) => "invalid_manifest",
            ControlError::Admission(AdmissionError::BundleMalformed { .. }) => "invalid_bundle",
            ControlError::Admission(
                AdmissionError::KeylessNotSupported | AdmissionError::DsseNotSupported,
            ) => "unsupported_bundle",
            ControlError::Admission(_) | ControlError::Layer(_) => "admission_denied",
            ControlError::InvalidKey(_) => "invalid_key",
            ControlError::Refused { .. } => "admission_denied",
            ControlError::RouteNotOwned { .. } => "route_not_owned",
            ControlError::Policy(_) => "invalid_policy",
            ControlError::Sandbox(_) => "invalid_component",
            ControlError::Store(
                StoreError::TenantExists(_)
                | StoreError::KeyExists { .. }
                | StoreError::IdentityExists { .. }
                | StoreError::MtlsCaExists { .. }
                | StoreError::LayerExists { .. },
            ) => "already_exists",
            ControlError::Store(StoreError::LayerPinned { .. }) => "layer_pinned",
            ControlError::Store(StoreError::RouteTaken { .. }) => "route_taken",
            ControlError::Store(StoreError::PrefixTaken { .. }) => "prefix_taken",
            ControlError::Store(StoreError::VersionNotKept { .. }) => "version_not_kept",
            ControlError::Store(StoreError::PruneRaced) => "conflict",
            ControlError::Store(StoreError::StaleSerial { .. }) => "stale_plan",
            ControlError::ConfigLocked => "config_locked",
            ControlError::Store(e) if e.is_not_found() => "not_found",
            ControlError::NoSuchName(_) => "not_found",
            ControlError::Store(_) => "store_error",
            ControlError::Audit(_) => "audit_unavailable",
            ControlError::NotAllowed { .. } => "forbidden",
            ControlError::Zone(_) => "invalid_zone",
            ControlError::ZoneConflict { .. } => "zone_conflict",
            ControlError::ZoneRefused { .. } => "zone_denied",
            ControlError::Internal(_) => "internal",
            ControlError::Events(e) => e.kind(),
            ControlError::Objects(e) => e.kind(),
        }
    }
}

/// A deployment as sent to the API.
pub struct DeployRequest {
    /// `zerofn.toml` text.
    pub manifest: String,
    pub component: Vec<u8>,
    /// Sigstore bundle JSON.
    pub bundle: Vec<u8>,
    /// Attestation files submitted with the component (the signed manifest among them).
    pub attestations: Vec<SubmittedFile>,
    /// `--allow-rollback REASON`: deploy below the highest version, with this reason.
    pub allow_rollback: Option<String>,
}

/// What the deploying operator may do beyond `deploy`, decided by the control policy
/// (`permissions.grant`, `deploy.rollback` on the manifest's tenant) before the deploy runs.
/// The deploy decides, under the function's lock, whether it needs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeployAuthority {
    pub grant: bool,
    pub rollback: bool,
}

impl DeployAuthority {
    /// The platform's own deploys (the demo at start-up).
    pub const PLATFORM: DeployAuthority = DeployAuthority {
        grant: true,
        rollback: true,
    };
}

/// The result of a successful deployment: the API's own type, shared with the CLI.
pub use zerofn_api::Deployed as DeployResponse;

/// Tenants, deployments and the audit log behind the control API.
pub struct ControlPlane {
    store: Store,
    audit: AuditLog,
    sandbox: Arc<Sandbox>,
    routes: Routes,
    identities: Arc<Identities>,
    vulndb: VulnDbCache,
    policies: zerofn_gateway::Policies,
    /// Tenants' rate and concurrency limits (shared with the gateway).
    invoke_limits: zerofn_gateway::InvokeLimits,
    tenant_sets: crate::policies::TenantSets,
    /// The trust zones in force (`zerofn zone`).
    zones: crate::zones::ZonesInForce,
    /// Held while the policies in force are rebuilt and the change they
    /// belong to (a route installed or removed, a tenant set replaced) is
    /// made visible, so two concurrent changes cannot each build from a
    /// view missing the other.
    policy_change: tokio::sync::Mutex<()>,
    /// One lock per function (tenant, name), held by a deploy or undeploy
    /// across its store write, SVID issue or revocation and route change,
    /// so the served function, its row and its SVID always agree.
    function_locks: FunctionLocks,
    /// How many versions of a function keep their request for a rollback.
    keep_versions: u32,
}

/// One function's lock, by (tenant, name).
type FunctionLockMap = std::collections::HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>;

/// Per-function async locks, created on demand and dropped when unused.
#[derive(Default)]
struct FunctionLocks {
    locks: std::sync::Mutex<FunctionLockMap>,
}

impl FunctionLocks {
    /// Wait for, then hold, the lock of `tenant`/`name`.
    async fn lock(
        &self,
        tenant: &TenantName,
        name: &FunctionName,
    ) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self
                .locks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Forget locks no one holds or waits for (only the map's
            // reference is left), so the map stays as small as the number
            // of functions being changed right now.
            locks.retain(|_, l| Arc::strong_count(l) > 1);
            locks
                .entry((tenant.to_string(), name.to_string()))
                .or_default()
                .clone()
        };
        lock.lock_owned().await
    }
}

impl ControlPlane {
    pub(crate) fn new(
        store: Store,
        audit: AuditLog,
        sandbox: Arc<Sandbox>,
        routes: Routes,
        identities: Arc<Identities>,
        vulndb_dir: std::path::PathBuf,
        keep_versions: u32,
    ) -> Self {
        ControlPlane {
            store,
            audit,
            sandbox,
            routes,
            identities,
            vulndb: VulnDbCache::new(vulndb_dir),
            policies: zerofn_gateway::Policies::default(),
            invoke_limits: zerofn_gateway::InvokeLimits::default(),
            tenant_sets: crate::policies::TenantSets::default(),
            zones: crate::zones::ZonesInForce::default(),
            policy_change: tokio::sync::Mutex::new(()),
            function_locks: FunctionLocks::default(),
            keep_versions,
        }
    }

    pub(crate) fn vulndb(&self) -> &VulnDbCache {
        &self.vulndb
    }

    /// The runtime policies in force (shared with the gateway).
    pub fn policies(&self) -> &zerofn_gateway::Policies {
        &self.policies
    }

    /// Tenants' rate and concurrency limits in force (shared with the gateway).
    pub fn invoke_limits(&self) -> &zerofn_gateway::InvokeLimits {
        &self.invoke_limits
    }

    pub(crate) fn tenant_sets(&self) -> &crate::policies::TenantSets {
        &self.tenant_sets
    }

    pub(crate) fn zones_in_force(&self) -> &crate::zones::ZonesInForce {
        &self.zones
    }

    pub(crate) fn policy_change(&self) -> &tokio::sync::Mutex<()> {
        &self.policy_change
    }

    pub(crate) fn routes(&self) -> &Routes {
        &self.routes
    }

    /// Functions' workload identities (shared with the gateway).
    pub fn identities_arc(&self) -> Arc<Identities> {
        self.identities.clone()
    }

    /// Revoke a function's current SVID: refused at once wherever the
    /// platform verifies identities, and after a restart too.
    pub async fn revoke_svid(
        &self,
        actor: &str,
        tenant: &TenantName,
        name: &FunctionName,
    ) -> Result<String, ControlError> {
        let record = |outcome| {
            AuditRecord::new(actor, Action::SvidRevoke, outcome)
                .tenant(tenant)
                .function(name)
        };
        let _function = self.function_locks.lock(tenant, name).await;
        let Some(svid) = self.identities.current(tenant, name) else {
            let e = StoreError::NoSuchDeployment {
                tenant: tenant.to_string(),
                name: name.to_string(),
            };
            return self.refused(record(Outcome::Deny), e.into()).await;
        };
        self.audit
            .append(record(Outcome::Allow).reason(format!("serial {}", svid.serial_hex())))
            .await?;
        if let Some((serial, not_after)) = self.identities.revoke_current(tenant, name) {
            self.store
                .add_revoked_serial(&serial, not_after, &crate::clock::now())
                .await?;
            return Ok(serial);
        }
        Ok(svid.serial_hex().to_owned())
    }

    /// Functions' workload identities.
    pub fn identities(&self) -> &Identities {
        &self.identities
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Create a tenant trusting the given public keys (PEM), owning the
    /// given route prefixes (if none are given: `/...` for the platform's
    /// first tenant, `/<tenant>/...` for every later one).
    pub async fn create_tenant(
        &self,
        actor: &str,
        name: &str,
        keys_pem: &[String],
        route_prefixes: &[String],
    ) -> Result<TenantRow, ControlError> {
        let record = AuditRecord::new(actor, Action::TenantCreate, Outcome::Deny).tenant(name);
        let tenant = match TenantName::parse(name) {
            Ok(t) => t,
            Err(e) => return self.refused(record, ManifestError::from(e).into()).await,
        };
        let mut keys = Vec::new();
        for pem in keys_pem {
            match PublicKey::from_pem(pem) {
                Ok(k) => keys.push((k.key_id().to_string(), k.to_pem())),
                Err(e) => return self.refused(record, ControlError::InvalidKey(e)).await,
            }
        }
        let existing = self.store.list_tenants().await?;
        let prefixes = if route_prefixes.is_empty() {
            crate::route_space::default_prefixes(&tenant, existing.is_empty())
        } else {
            route_prefixes.to_vec()
        };
        let prefixes = match crate::route_space::parse_prefixes(&prefixes) {
            Ok(p) => p,
            Err(e) => return self.refused(record, e).await,
        };
        let key_ids: Vec<String> = keys.iter().map(|(id, _)| id.clone()).collect();
        if existing.iter().any(|t| t.name == tenant.as_str()) {
            return self
                .refused(record, StoreError::TenantExists(name.to_string()).into())
                .await;
        }
        if let Err(e) = self.check_prefixes_free(tenant.as_str(), &prefixes).await {
            return self.refused(record, e).await;
        }
        self.audit
            .append(
                AuditRecord::new(actor, Action::TenantCreate, Outcome::Allow)
                    .tenant(tenant.as_str())
                    .reason(format!(
                        "trusted keys: {}; route prefixes: {}",
                        key_ids.join(", "),
                        prefixes.join(" ")
                    )),
            )
            .await?;
        let created = now();
        {
            let _change = self.policy_change.lock().await;
            self.store
                .create_tenant_with_routes(&tenant, keys, prefixes, &created)
                .await?;
            self.reload_route_space_locked().await?;
        }
        Ok(TenantRow {
            name: tenant.as_str().to_owned(),
            created_at: created,
            key_ids,
        })
    }

    pub async fn list_tenants(&self) -> Result<Vec<TenantRow>, ControlError> {
        Ok(self.store.list_tenants().await?)
    }

    /// Trust one more signing key for a tenant; returns its key id.
    pub async fn add_key(
        &self,
        actor: &str,
        tenant: &TenantName,
        pem: &str,
    ) -> Result<String, ControlError> {
        let record = AuditRecord::new(actor, Action::TenantKeyAdd, Outcome::Deny).tenant(tenant);
        let key = match PublicKey::from_pem(pem) {
            Ok(k) => k,
            Err(e) => return self.refused(record, ControlError::InvalidKey(e)).await,
        };
        let key_id = key.key_id().to_string();
        let existing = match self.store.tenant_keys(tenant).await {
            Ok(keys) => keys,
            Err(e) => return self.refused(record.reason(key_id), e.into()).await,
        };
        if existing.iter().any(|k| k.key_id == key_id) {
            let e = StoreError::KeyExists {
                tenant: tenant.to_string(),
                key_id: key_id.clone(),
            };
            return self.refused(record, e.into()).await;
        }
        self.audit
            .append(
                AuditRecord::new(actor, Action::TenantKeyAdd, Outcome::Allow)
                    .tenant(tenant)
                    .reason(key_id.clone()),
            )
            .await?;
        self.store
            .add_tenant_key(tenant, &key_id, &key.to_pem(), &now())
            .await?;
        Ok(key_id)
    }

    /// Stop trusting a key. Functions it signed keep running until the next
    /// restart, when they are admitted again and refused.
    pub async fn remove_key(
        &self,
        actor: &str,
        tenant: &TenantName,
        key_id: &str,
    ) -> Result<(), ControlError> {
        let record = AuditRecord::new(actor, Action::TenantKeyRemove, Outcome::Deny)
            .tenant(tenant)
            .reason(key_id);
        let existing = match self.store.tenant_keys(tenant).await {
            Ok(keys) => keys,
            Err(e) => return self.refused(record, e.into()).await,
        };
        if !existing.iter().any(|k| k.key_id == key_id) {
            let e = StoreError::NoSuchKey {
                tenant: tenant.to_string(),
                key_id: key_id.to_owned(),
            };
            return self.refused(record, e.into()).await;
        }
        self.audit
            .append(
                AuditRecord::new(actor, Action::TenantKeyRemove, Outcome::Allow)
                    .tenant(tenant)
                    .reason(key_id),
            )
            .await?;
        self.store.remove_tenant_key(tenant, key_id).await?;
        Ok(())
    }

    /// Admit, compile, record and route a function. On any failure nothing
    /// but the audit record of the refusal is stored.
    pub async fn deploy(
        &self,
        actor: &str,
        req: DeployRequest,
        authority: DeployAuthority,
    ) -> Result<DeployResponse, ControlError> {
        self.deploy_as(actor, req, authority, VersionOrigin::Deploy)
            .await
    }

    /// The versions of `tenant/name`, newest first; an error naming the function when it
    /// was never deployed.
    pub async fn versions(
        &self,
        tenant: &TenantName,
        name: &FunctionName,
    ) -> Result<Vec<VersionSummary>, ControlError> {
        let versions = self.store.list_versions(tenant, name).await?;
        if versions.is_empty() {
            return Err(StoreError::NoSuchDeployment {
                tenant: tenant.to_string(),
                name: name.to_string(),
            }
            .into());
        }
        Ok(versions)
    }

    /// Deploy version `to` of `tenant/name` again: its kept request (component, bundle,
    /// manifest and attestations) goes through admission as a new deploy would, against
    /// today's signers, rules and vulnerability data, and becomes the function's next
    /// version. Needs `deploy.rollback` whatever the versions: going back is a decision of
    /// its own.
    pub async fn rollback(
        &self,
        actor: &str,
        tenant: &TenantName,
        name: &FunctionName,
        to: u64,
        reason: Option<String>,
        authority: DeployAuthority,
    ) -> Result<DeployResponse, ControlError> {
        let record = AuditRecord::new(actor, Action::Rollback, Outcome::Deny)
            .tenant(tenant)
            .function(name);
        if !authority.rollback {
            let e = ControlError::NotAllowed {
                action: "deploy.rollback",
                tenant: tenant.to_string(),
                what: format!("a rollback of `{tenant}/{name}` to version {to}"),
            };
            return self.refused(record, e).await;
        }
        let kept = match self.store.kept_version(tenant, name, to).await {
            Ok(kept) => kept,
            Err(e) => return self.refused(record, e.into()).await,
        };
        let why = match reason {
            Some(reason) => format!("rollback to version {to}: {reason}"),
            None => format!("rollback to version {to}"),
        };
        let req = DeployRequest {
            manifest: kept.manifest,
            component: kept.component,
            bundle: kept.bundle,
            attestations: kept
                .attestations
                .into_iter()
                .map(|(name, bytes)| SubmittedFile { name, bytes })
                .collect(),
            allow_rollback: Some(why),
        };
        self.deploy_as(actor, req, authority, VersionOrigin::Rollback { to })
            .await
    }

    /// A deploy, recorded as `origin`: every check, then the effect.
    async fn deploy_as(
        &self,
        actor: &str,
        req: DeployRequest,
        authority: DeployAuthority,
        origin: VersionOrigin,
    ) -> Result<DeployResponse, ControlError> {
        let prepared = self
            .prepare_deploy(actor, req, authority, origin, &DeployBasis::default())
            .await?;
        self.commit_deploy(prepared).await
    }

    /// Every check of a deploy and the compiled function, with nothing stored and nothing
    /// in force: admission, the zone, routes, policies, compilation. Refusals are audited
    /// here. Checked against the platform in force, or against `basis` (the state a
    /// configuration apply is about to make).
    pub(crate) async fn prepare_deploy(
        &self,
        actor: &str,
        req: DeployRequest,
        authority: DeployAuthority,
        origin: VersionOrigin,
        basis: &DeployBasis,
    ) -> Result<PreparedDeploy, ControlError> {
        let digest = Digest::of(&req.component);
        let action = match origin {
            VersionOrigin::Deploy => Action::Deploy,
            VersionOrigin::Rollback { .. } => Action::Rollback,
        };
        let record = AuditRecord::new(actor, action, Outcome::Deny).digest(digest.to_string());
        let manifest = match Manifest::from_toml(&req.manifest) {
            Ok(m) => m,
            Err(e) => return self.refused(record, e.into()).await,
        };
        let record = record
            .tenant(manifest.tenant.as_str())
            .function(manifest.name.as_str());
        // Held to the end: an undeploy of this function waits for the
        // deploy to be fully in place (row, SVID, route), or runs first.
        let function_lock = self
            .function_locks
            .lock(&manifest.tenant, &manifest.name)
            .await;
        let tenant_name = manifest.tenant.as_str().to_owned();
        if req.allow_rollback.is_some() && !authority.rollback {
            let e = ControlError::NotAllowed {
                action: "deploy.rollback",
                tenant: tenant_name,
                what: "`--allow-rollback` deploys below the function's highest version".to_owned(),
            };
            return self.refused(record, e).await;
        }
        // What this manifest grants that the deployed one does not (everything, for a new
        // function): widening a function's powers is a separate right (`permissions.grant`),
        // like `iam:PassRole` beside deploying.
        let deployed = self
            .store
            .deployed_manifest(&manifest.tenant, &manifest.name)
            .await?
            // A stored manifest that no longer parses grants nothing to compare against.
            .and_then(|text| Manifest::from_toml(&text).ok());
        let widening = manifest
            .permissions
            .widening(deployed.as_ref().map(|m| &m.permissions));
        if !widening.is_empty() && !authority.grant {
            let e = ControlError::NotAllowed {
                action: "permissions.grant",
                tenant: tenant_name,
                what: format!("the manifest grants {}", widening.join(", ")),
            };
            return self.refused(record, e).await;
        }
        // The tenant's zone is a ceiling over the manifest's grants: checked before the
        // (costlier) admission, so an entry outside it is named at once.
        let zones = match basis.zones.clone() {
            Some(zones) => zones,
            None => match self.zones_in_force().current() {
                Ok(zones) => zones,
                Err(e) => return self.refused(record, e).await,
            },
        };
        if let Err(e) = self.check_zone_deploy(&manifest, &zones) {
            return self.refused(record, e).await;
        }
        let floor = self.version_floor(&manifest).await?;
        let manifest_text = req.manifest.clone();
        let bundle_bytes = req.bundle.clone();
        // With layers the row keeps the signed component, not the composition.
        let own_component = (!manifest.layers.is_empty()).then(|| req.component.clone());
        let rollback = req.allow_rollback.clone();
        let attestations: Vec<(String, Vec<u8>)> = req
            .attestations
            .iter()
            .map(|a| (a.name.clone(), a.bytes.clone()))
            .collect();
        let admitted = match self
            .run_admission(manifest, req, floor.clone(), basis.rules.clone())
            .await
        {
            Ok(Ok(admitted)) => admitted,
            Ok(Err(refused)) => {
                let e = ControlError::Refused {
                    reason: refused.reason,
                    report: refused.report,
                };
                return self.refused(record, e).await;
            }
            Err(e) => return self.refused(record, e).await,
        };
        if let Err(e) = self.check_zone_signer(
            admitted.artifact.manifest().tenant.as_str(),
            admitted.artifact.signer_identity(),
            &zones,
        ) {
            return self.refused(record, e).await;
        }
        let admitted_by = admitted.permit.policies().to_vec();
        // Layers: composed only now that the function passed every check;
        // each pinned layer is verified again with the tenant's signers.
        let signers = basis.rules.as_ref().map(|r| r.signers.clone());
        let artifact = match self.compose_layers(admitted.artifact, signers).await {
            Ok(artifact) => artifact,
            Err(e) => return self.refused(record, e).await,
        };
        if let Err(e) = self.check_routes(artifact.manifest(), basis).await {
            return self.refused(record, e).await;
        }
        // The function's compiled policies must join its tenant's set (a
        // hand-written policy may not reuse a compiled id) before anything
        // is stored.
        if let Err(e) = self.build_policies(Some(artifact.manifest()), None, None) {
            return self.refused(record, e).await;
        }
        let sandbox = self.sandbox.clone();
        let to_load = artifact.clone();
        // Reuse precompiled code already produced for this digest, if its
        // recorded hash still matches the cache file.
        let known = self
            .store
            .precompiled_hash_for(&artifact.digest().to_string())
            .await?;
        let loaded = match tokio::task::spawn_blocking(move || {
            sandbox.load(to_load, known.as_deref())
        })
        .await
        {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(e)) => return self.refused(record, e.into()).await,
            Err(e) => {
                return self
                    .refused(record, ControlError::Internal(e.to_string()))
                    .await
            }
        };

        let m = artifact.manifest();
        let (tenant, name) = (m.tenant.clone(), m.name.clone());
        let signed_digest = artifact.signed_digest().to_string();
        let layers: BTreeMap<String, String> = artifact
            .layers()
            .iter()
            .map(|(import, digest)| (import.as_str().to_owned(), digest.to_string()))
            .collect();
        let composed_digest = (!layers.is_empty()).then(|| artifact.digest().to_string());
        let mut reason = format!(
            "signed by {}; {}",
            artifact.signer_identity(),
            admitted.permit.explain()
        );
        if let Some(composed) = &composed_digest {
            reason.push_str(&format!(
                "; layers {}; composed {composed}",
                describe_layers(&artifact)
            ));
        }
        let intent = &admitted.intent;
        reason.push_str(&format!("; manifest version {}", intent.version));
        if let (Some(floor), Some(why)) = (&floor, &rollback) {
            let below = intent.version < floor.version
                || (intent.version == floor.version
                    && intent.content_digest != floor.content_digest);
            if below {
                reason.push_str(&format!(
                    "; ROLLBACK below version {} allowed: {}",
                    floor.version,
                    why.escape_debug()
                ));
            }
        }
        if !widening.is_empty() {
            reason.push_str(&format!("; grants {}", widening.join(", ")));
        }
        if let VersionOrigin::Rollback { to } = origin {
            reason = format!("rollback to version {to}; {reason}");
        }
        let allowed = AuditRecord::new(actor, action, Outcome::Allow)
            .tenant(&tenant)
            .function(&name)
            .digest(signed_digest.clone())
            .reason(reason);
        let row = DeploymentRow {
            tenant: tenant.to_string(),
            name: name.to_string(),
            digest: signed_digest.clone(),
            composed_digest: composed_digest.clone(),
            layers: layers.iter().map(|(i, d)| (i.clone(), d.clone())).collect(),
            signer: signer_text(artifact.signer_identity()),
            manifest: manifest_text,
            routes: m.routes.iter().map(|r| r.as_str().to_owned()).collect(),
            component: own_component.unwrap_or_else(|| artifact.component().to_vec()),
            bundle: bundle_bytes,
            deployed_at: now(),
            version: intent.version,
            manifest_bundle: intent.bundle.clone(),
            content_digest: intent.content_digest.to_string(),
        };
        let version = NewVersion {
            origin,
            actor: actor.to_owned(),
            attestations,
            keep: self.keep_versions,
        };
        let response = DeployResponse {
            spiffe_id: String::new(),
            tenant: tenant.to_string(),
            name: name.to_string(),
            digest: signed_digest,
            signer: signer_text(artifact.signer_identity()),
            routes: row.routes.clone(),
            admitted_by,
            layers,
            composed_digest,
            version: intent.version,
            number: 0,
        };
        Ok(PreparedDeploy {
            _lock: function_lock,
            actor: actor.to_owned(),
            action,
            allowed,
            row,
            version,
            loaded,
            response,
        })
    }

    /// The effect of a prepared deploy: its audit record, the stored version, then the
    /// function in force (identity, policies, route).
    async fn commit_deploy(
        &self,
        prepared: PreparedDeploy,
    ) -> Result<DeployResponse, ControlError> {
        let PreparedDeploy {
            _lock,
            actor,
            action,
            allowed,
            row,
            version,
            loaded,
            mut response,
        } = prepared;
        self.audit.append(allowed).await?;
        let (tenant, name, digest) = (row.tenant.clone(), row.name.clone(), row.digest.clone());
        let number = match self
            .store
            .put_deployment(row, Box::new(routes_overlap), version)
            .await
        {
            Ok(number) => number,
            Err(e) => {
                let failed = AuditRecord::new(&actor, action, Outcome::Error)
                    .tenant(&tenant)
                    .function(&name)
                    .digest(digest)
                    .reason(e.to_string());
                self.audit.append(failed).await?;
                return Err(e.into());
            }
        };
        response.number = number;
        response.spiffe_id = self.put_function_in_force(loaded).await?;
        Ok(response)
    }

    /// A stored function's precompiled hash, identity, policies and route, in that order:
    /// the function is invokable the moment its route is, so its invoke policy must
    /// already be in force. Returns its SPIFFE ID.
    pub(crate) async fn put_function_in_force(
        &self,
        loaded: LoadedFunction,
    ) -> Result<String, ControlError> {
        let m = loaded.artifact().manifest();
        let (tenant, name) = (m.tenant.clone(), m.name.clone());
        let signed_digest = loaded.artifact().signed_digest().to_string();
        self.store
            .set_precompiled_hash(&tenant, &name, &signed_digest, loaded.precompiled_sha256())
            .await?;
        let spiffe_id = self
            .identities
            .ensure(&tenant, &name)
            .map_err(|e| ControlError::Internal(e.to_string()))?;
        let kv_buckets = crate::events::kv_subscriptions(loaded.artifact().manifest());
        {
            let _change = self.policy_change.lock().await;
            self.refresh_policies(Some(loaded.artifact().manifest()), None)?;
            self.routes.install(loaded);
        }
        // After the function is in force (the change-stream loop never removes a
        // subscription made after it looked at what is bound): from the deploy's
        // answer on, the function's kv buckets record their changes.
        crate::events::subscribe(&self.store, &kv_buckets).await;
        Ok(spiffe_id.to_string())
    }

    /// The highest signed manifest version recorded for the manifest's function.
    pub(crate) async fn version_floor(
        &self,
        manifest: &Manifest,
    ) -> Result<Option<zerofn_admission::VersionFloor>, ControlError> {
        let Some(record) = self
            .store
            .version_record(&manifest.tenant, &manifest.name)
            .await?
        else {
            return Ok(None);
        };
        // A record that does not read is not "no floor": refuse rather than forget it.
        let content_digest = Digest::parse(&record.content_digest).map_err(|e| {
            ControlError::Internal(format!("the recorded manifest version is corrupt: {e}"))
        })?;
        Ok(Some(zerofn_admission::VersionFloor {
            version: record.highest,
            content_digest,
        }))
    }

    /// Composes an admitted function with the layers its manifest pins,
    /// each verified again with the tenant's signers (on the blocking pool).
    /// `signers` are the tenant's stored ones unless given.
    pub(crate) async fn compose_layers(
        &self,
        artifact: AdmittedArtifact,
        signers: Option<TrustedSigners>,
    ) -> Result<AdmittedArtifact, ControlError> {
        if artifact.manifest().layers.is_empty() {
            return Ok(artifact);
        }
        let rows = self.pinned_layer_rows(&artifact).await?;
        let signers = match signers {
            Some(signers) => signers,
            None => self.signers(&artifact.manifest().tenant).await?,
        };
        tokio::task::spawn_blocking(move || compose_with_layers(artifact, rows, &signers))
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))?
            .map_err(ControlError::from)
    }

    /// Remove a deployment and its routes.
    pub async fn undeploy(
        &self,
        actor: &str,
        tenant: &TenantName,
        name: &FunctionName,
    ) -> Result<(), ControlError> {
        let record = AuditRecord::new(actor, Action::Undeploy, Outcome::Deny)
            .tenant(tenant)
            .function(name);
        let _function = self.function_locks.lock(tenant, name).await;
        let digest = match self.store.deployed_digest(tenant, name).await? {
            Some(d) => d,
            None => {
                let e = StoreError::NoSuchDeployment {
                    tenant: tenant.to_string(),
                    name: name.to_string(),
                };
                return self.refused(record, e.into()).await;
            }
        };
        self.audit
            .append(
                AuditRecord::new(actor, Action::Undeploy, Outcome::Allow)
                    .tenant(tenant)
                    .function(name)
                    .digest(digest),
            )
            .await?;
        self.take_function_out_of_force(tenant, name).await?;
        self.store.delete_deployment(tenant, name).await?;
        Ok(())
    }

    /// A function's route, policies and identity out of force (its certificate revoked).
    pub(crate) async fn take_function_out_of_force(
        &self,
        tenant: &TenantName,
        name: &FunctionName,
    ) -> Result<(), ControlError> {
        {
            let _change = self.policy_change.lock().await;
            self.routes.remove(tenant.as_str(), name.as_str());
            self.refresh_policies(None, Some((tenant.as_str(), name.as_str())))?;
        }
        if let Some((serial, not_after)) = self.identities.remove(tenant, name) {
            self.store
                .add_revoked_serial(&serial, not_after, &crate::clock::now())
                .await?;
        }
        Ok(())
    }

    /// Holds `tenant/name` against any other change of it (deploy, undeploy, rollback).
    pub(crate) async fn lock_function(
        &self,
        tenant: &TenantName,
        name: &FunctionName,
    ) -> tokio::sync::OwnedMutexGuard<()> {
        self.function_locks.lock(tenant, name).await
    }

    pub async fn list_functions(&self) -> Result<Vec<DeploymentSummary>, ControlError> {
        Ok(self.store.list_deployments().await?)
    }

    pub async fn audit_tail(&self, n: u32) -> Result<Vec<StoredRecord>, ControlError> {
        Ok(self.audit.tail(n).await?)
    }

    /// Walk the whole chain (on the blocking pool).
    pub async fn audit_verify(&self) -> Result<zerofn_audit::ChainHead, ControlError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || zerofn_audit::verify_chain(&store))
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))?
            .map_err(ControlError::Audit)
    }

    /// Admit every stored deployment again and serve those that pass.
    /// Returns how many are served.
    pub(crate) async fn restore(&self) -> Result<usize, ControlError> {
        let store = self.store.clone();
        let rows = tokio::task::spawn_blocking(move || store.load_deployments_blocking())
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))??;
        let mut loaded = Vec::new();
        let mut tasks = tokio::task::JoinSet::new();
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut rows = rows.into_iter();
        loop {
            while tasks.len() < parallel {
                let Some((row, precompiled)) = rows.next() else {
                    break;
                };
                // The stored name is text; one that is no tenant's name cannot have been
                // admitted, so the row is refused like any other that fails re-admission.
                let corrupt = |e: &zerofn_types::NameError| {
                    ControlError::Store(StoreError::Corrupt(format!("deployment row: {e}")))
                };
                let (keys, layers) = match &TenantName::parse(&row.tenant) {
                    Ok(tenant) => (
                        self.signers(tenant).await,
                        if row.layers.is_empty() {
                            Ok(Vec::new())
                        } else {
                            let digests = row.layers.iter().map(|(_, d)| d.clone()).collect();
                            self.store
                                .layers(tenant, digests)
                                .await
                                .map_err(ControlError::from)
                        },
                    ),
                    Err(e) => (Err(corrupt(e)), Err(corrupt(e))),
                };
                let sandbox = self.sandbox.clone();
                tasks.spawn_blocking(move || restore_one(&sandbox, row, precompiled, keys, layers));
            }
            let Some(done) = tasks.join_next().await else {
                break;
            };
            match done {
                Ok(Ok(f)) => loaded.push(f),
                Ok(Err((who, error))) => {
                    tracing::warn!(function = %who, %error, "stored deployment refused at start; not serving it");
                }
                Err(e) => tracing::error!(error = %e, "restore task failed"),
            }
        }
        self.load_route_space().await?;
        let n = loaded.len();
        for f in &loaded {
            let m = f.artifact().manifest();
            self.identities
                .ensure(&m.tenant, &m.name)
                .map_err(|e| ControlError::Internal(e.to_string()))?;
        }
        self.routes.install_all(loaded);
        self.load_zones().await?;
        self.load_tenant_policies().await?;
        if let Err(error) = self.refresh_policies(None, None) {
            // Fail closed without refusing to start: with no policies in
            // force every invocation and capability call is denied until an
            // operator fixes the tenant policy (`zerofn policy set`).
            tracing::error!(%error, "the stored policies do not build; every runtime request is denied");
            self.policies()
                .replace(zerofn_policy::RuntimePolicies::default());
        }
        Ok(n)
    }

    /// The routes must lie in the tenant's route space and not overlap
    /// another function of the same tenant (other tenants' routes may
    /// overlap: each serves only its own space).
    async fn check_routes(
        &self,
        manifest: &Manifest,
        basis: &DeployBasis,
    ) -> Result<(), ControlError> {
        self.check_route_ownership(manifest, basis.route_space.clone())
            .await?;
        let others: Vec<(String, String, Vec<String>)> = match &basis.functions {
            Some(functions) => functions.clone(),
            None => self
                .store
                .list_deployments()
                .await?
                .into_iter()
                .map(|d| (d.tenant, d.name, d.routes))
                .collect(),
        };
        for (tenant, name, routes) in others {
            if tenant != manifest.tenant.as_str() || name == manifest.name.as_str() {
                continue;
            }
            for theirs in &routes {
                if let Some(ours) = manifest
                    .routes
                    .iter()
                    .find(|ours| routes_overlap(ours.as_str(), theirs))
                {
                    return Err(StoreError::RouteTaken {
                        route: ours.as_str().to_owned(),
                        owner: format!("{tenant}/{name}"),
                    }
                    .into());
                }
            }
        }
        Ok(())
    }

    /// Append the refusal record, then return the error. If even the
    /// refusal cannot be recorded, that failure is what the caller sees.
    pub(crate) async fn refused<T>(
        &self,
        record: AuditRecord,
        error: ControlError,
    ) -> Result<T, ControlError> {
        crate::control::audit_refusal(&self.audit, record, error).await
    }

    /// Deploy without the API (demo start-up).
    pub(crate) async fn deploy_internal(
        &self,
        req: DeployRequest,
    ) -> Result<DeployResponse, ControlError> {
        self.deploy("demo", req, DeployAuthority::PLATFORM).await
    }
}

/// Append `record` with `error` as its reason, then return the error. If even the
/// refusal cannot be recorded, that failure is what the caller sees.
pub(crate) async fn audit_refusal<T>(
    audit: &AuditLog,
    record: AuditRecord,
    error: ControlError,
) -> Result<T, ControlError> {
    audit.append(record.reason(error.to_string())).await?;
    Err(error)
}

/// Admits a stored deployment again: the function's own signature, then,
/// for a function with layers, every pinned layer's signature and the
/// composition, exactly as at deploy.
fn restore_one(
    sandbox: &Sandbox,
    row: DeploymentRow,
    precompiled: Option<String>,
    keys: Result<TrustedSigners, ControlError>,
    layers: Result<Vec<LayerRow>, ControlError>,
) -> Result<LoadedFunction, (String, String)> {
    let who = format!("{}/{}", row.tenant, row.name);
    let fail = |e: String| (who.clone(), e);
    let keys = keys.map_err(|e| fail(e.to_string()))?;
    let layers = layers.map_err(|e| fail(e.to_string()))?;
    let manifest = Manifest::from_toml(&row.manifest).map_err(|e| fail(e.to_string()))?;
    let pinned: Vec<(String, String)> = manifest
        .layers
        .iter()
        .map(|(i, d)| (i.as_str().to_owned(), d.to_string()))
        .collect();
    if pinned != row.layers {
        return Err(fail(
            "stored layer pins do not match the stored manifest".to_owned(),
        ));
    }
    // The signed manifest too: a row written behind the platform's back (or before
    // manifests were signed) is not served.
    if row.manifest_bundle.is_empty() {
        return Err(fail(
            "no signed manifest is stored (deployed before manifests were signed); sign it with `zerofn sign DIR` and deploy it again".to_owned(),
        ));
    }
    let intent = zerofn_admission::reverify_intent(
        &Digest::of(&row.component),
        &manifest,
        &row.manifest_bundle,
        &keys,
    )
    .map_err(|e| fail(e.to_string()))?;
    if intent.version != row.version {
        return Err(fail(format!(
            "stored version {} does not match the signed manifest's {}",
            row.version, intent.version
        )));
    }
    let artifact: AdmittedArtifact =
        readmit(manifest, row.component, &row.bundle, &keys).map_err(|e| fail(e.to_string()))?;
    if artifact.digest().to_string() != row.digest {
        return Err(fail(format!(
            "stored digest `{}` does not match the component `{}`",
            row.digest,
            artifact.digest()
        )));
    }
    let artifact = compose_with_layers(artifact, layers, &keys).map_err(|e| fail(e.to_string()))?;
    if let Some(recorded) = &row.composed_digest {
        if artifact.digest().to_string() != *recorded {
            // Every input verified again; only the composition's encoding
            // changed (a newer wac-graph). Serve it, and say so.
            tracing::warn!(function = %who, %recorded, composed = %artifact.digest(), "composition differs from the one recorded at deploy");
        }
    }
    sandbox
        .load(artifact, precompiled.as_deref())
        .map_err(|e| fail(e.to_string()))
}

/// How a signer is shown in listings: the key id for a key (as before keyless
/// signing existed), the SAN and issuer for a certificate.
pub(crate) fn signer_text(identity: &zerofn_admission::SignerIdentity) -> String {
    match identity {
        zerofn_admission::SignerIdentity::Key(key) => key.to_string(),
        other => other.to_string(),
    }
}

/// Whether two route patterns can match the same path.
pub(crate) fn routes_overlap(a: &str, b: &str) -> bool {
    match (Route::parse(a), Route::parse(b)) {
        (Ok(a), Ok(b)) => {
            // A prefix route `P/...` covers `P` itself, so comparing each
            // route's base path against the other decides overlap.
            let base = |r: &Route| -> String {
                match r.as_str().strip_suffix("/...") {
                    Some("") => "/".to_owned(),
                    Some(p) => p.to_owned(),
                    None => r.as_str().to_owned(),
                }
            };
            a.as_str() == b.as_str() || a.matches(&base(&b)) || b.matches(&base(&a))
        }
        // Unparseable stored routes are treated as conflicting: refusing
        // a deploy is safe, shadowing a route is not.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::routes_overlap;

    #[test]
    fn route_overlap_follows_prefix_semantics() {
        for (a, b, expected) in [
            ("/a", "/a", true),
            ("/a", "/b", false),
            ("/api/...", "/api", true),
            ("/api/...", "/api/x", true),
            ("/api/...", "/apix", false),
            ("/api/...", "/api/v1/...", true),
            ("/api/v1/...", "/api/v2/...", false),
            ("/...", "/anything", true),
        ] {
            assert_eq!(routes_overlap(a, b), expected, "{a} vs {b}");
            assert_eq!(routes_overlap(b, a), expected, "{b} vs {a}");
        }
    }
}
