//! Tenants' admission rules on the control plane: keyless signing
//! identities, admission settings (Cedar policy, severity threshold, SBOM
//! requirement), the vulnerability database admission scans against, and
//! `explain` (every check, nothing deployed).
//!
//! Rules are validated before they are stored (a policy set that does not
//! validate is refused whole and the previous one stays in force), and
//! parsed again from the store at each admission, so what is enforced is
//! always what `admission show` prints.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};
use zerofn_admission::{
    admit_submission, parse_severity, severity_name, AdmissionRules, Identity, KeylessSigner,
    Manifest, PolicySet, PublicKey, Submission, TrustedRoot, TrustedSigners, VulnDb, DB_FILE_NAME,
};
use zerofn_audit::{Action, AuditRecord, Outcome};
use zerofn_store::{AdmissionSettingsRow, TenantIdentityRow};
use zerofn_types::TenantName;

use crate::clock::now;
use crate::control::{ControlError, ControlPlane, DeployRequest};

/// The OSV database admission uses, reloaded when `zerofn vulndb import`
/// replaces its file.
pub(crate) struct VulnDbCache {
    dir: PathBuf,
    loaded: Mutex<Option<(SystemTime, Arc<VulnDb>)>>,
}

impl VulnDbCache {
    pub(crate) fn new(dir: PathBuf) -> VulnDbCache {
        VulnDbCache {
            dir,
            loaded: Mutex::new(None),
        }
    }

    /// The current database, or `None` if none was imported. A database
    /// that exists but cannot be read is an error (admission fails closed).
    fn current(&self) -> Result<Option<Arc<VulnDb>>, ControlError> {
        let path = self.dir.join(DB_FILE_NAME);
        let modified = match std::fs::metadata(&path).and_then(|m| m.modified()) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(ControlError::Internal(format!(
                    "cannot read the vulnerability database: {e}"
                )))
            }
        };
        let mut loaded = self
            .loaded
            .lock()
            .map_err(|_| ControlError::Internal("vulnerability database lock poisoned".into()))?;
        if let Some((at, db)) = loaded.as_ref() {
            if *at == modified {
                return Ok(Some(db.clone()));
            }
        }
        let db = Arc::new(VulnDb::load(&self.dir).map_err(|e| {
            ControlError::Internal(format!("cannot load the vulnerability database: {e}"))
        })?);
        *loaded = Some((modified, db.clone()));
        Ok(Some(db))
    }
}

// The request bodies are the API's own types, shared with the CLI.
pub use zerofn_api::{AddIdentity, AttestationFile as SubmittedAttestation, SetAdmission};

// What `admission show` and `admission explain` print: the API's own types.
pub use zerofn_api::{AdmissionView, Explained as ExplainResult};

fn identity_id(kind: &str, san: &str, issuer: &str) -> String {
    let mut h = Sha256::new();
    for part in [kind, san, issuer] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize()).chars().take(16).collect()
}

/// Signers from their stored (or, for an apply, their desired) form.
pub(crate) fn signers_of(
    keys: &[String],
    identities: &[TenantIdentityRow],
) -> Result<TrustedSigners, ControlError> {
    let keys = keys
        .iter()
        .map(|pem| PublicKey::from_pem(pem).map_err(ControlError::InvalidKey))
        .collect::<Result<Vec<_>, _>>()?;
    let mut keyless = Vec::new();
    for row in identities {
        let trusted_root = TrustedRoot::from_json(row.trusted_root.as_bytes())
            .map_err(|e| ControlError::Internal(format!("stored trusted root: {e}")))?;
        keyless.push(KeylessSigner {
            identity: identity_of(row),
            trusted_root: Arc::new(trusted_root),
        });
    }
    Ok(TrustedSigners { keys, keyless })
}

/// Admission rules from their stored (or desired) parts.
pub(crate) fn rules_of(
    signers: TrustedSigners,
    policy: Option<&str>,
    severity_threshold: Option<&str>,
    require_sbom: bool,
) -> Result<AdmissionRules, ControlError> {
    let policy = match policy {
        Some(text) => PolicySet::parse(text),
        None => PolicySet::default_admission(),
    }
    .map_err(|e| ControlError::Internal(format!("stored admission policy: {e}")))?;
    let severity_threshold = match severity_threshold {
        Some(name) => Some(parse_severity(name).ok_or_else(|| {
            ControlError::Internal(format!("stored severity threshold `{name}`"))
        })?),
        None => None,
    };
    Ok(AdmissionRules {
        signers,
        policy,
        severity_threshold,
        require_sbom,
    })
}

fn identity_of(row: &TenantIdentityRow) -> Identity {
    if row.kind == "regexp" {
        Identity::Regex {
            san_regex: row.san.clone(),
            issuer: row.issuer.clone(),
        }
    } else {
        Identity::Exact {
            san: row.san.clone(),
            issuer: row.issuer.clone(),
        }
    }
}

impl ControlPlane {
    /// Everyone the tenant trusts to sign: keys and keyless identities.
    pub(crate) async fn signers(
        &self,
        tenant: &TenantName,
    ) -> Result<TrustedSigners, ControlError> {
        let keys: Vec<String> = self
            .store()
            .tenant_keys(tenant)
            .await?
            .into_iter()
            .map(|k| k.public_key_pem)
            .collect();
        let identities = self.store().tenant_identities(tenant).await?;
        signers_of(&keys, &identities)
    }

    /// The tenant's complete admission rules, parsed from the store.
    pub(crate) async fn rules(&self, tenant: &TenantName) -> Result<AdmissionRules, ControlError> {
        let signers = self.signers(tenant).await?;
        let settings = self.store().admission_settings(tenant).await?;
        rules_of(
            signers,
            settings.policy.as_deref(),
            settings.severity_threshold.as_deref(),
            settings.require_sbom,
        )
    }

    /// Runs the whole admission pipeline for `req` under its tenant's
    /// rules. `Ok(Ok)` admitted, `Ok(Err)` refused with the report.
    pub(crate) async fn run_admission(
        &self,
        manifest: Manifest,
        req: DeployRequest,
        floor: Option<zerofn_admission::VersionFloor>,
        rules: Option<AdmissionRules>,
    ) -> Result<Result<zerofn_admission::Admitted, zerofn_admission::Refused>, ControlError> {
        // A bundle that is not a bundle is a bad request, not a refusal.
        zerofn_admission::Bundle::from_json(&req.bundle)?;
        let rules = match rules {
            Some(rules) => rules,
            None => self.rules(&manifest.tenant).await?,
        };
        let vulndb = self.vulndb().current()?;
        let submission = Submission {
            manifest,
            component: req.component,
            bundle: req.bundle,
            attestations: req.attestations,
            floor,
            rollback: match req.allow_rollback {
                Some(reason) => zerofn_admission::Rollback::Allow { reason },
                None => zerofn_admission::Rollback::Refuse,
            },
        };
        tokio::task::spawn_blocking(move || admit_submission(submission, &rules, vulndb.as_deref()))
            .await
            .map_err(|e| ControlError::Internal(e.to_string()))
    }

    /// Every admission check for `req`, without deploying anything.
    pub async fn explain(&self, req: DeployRequest) -> Result<ExplainResult, ControlError> {
        let manifest = Manifest::from_toml(&req.manifest)?;
        let (tenant, name) = (
            manifest.tenant.as_str().to_owned(),
            manifest.name.as_str().to_owned(),
        );
        let floor = self.version_floor(&manifest).await?;
        let (admitted, report) = match self.run_admission(manifest, req, floor, None).await? {
            Ok(admitted) if admitted.artifact.manifest().layers.is_empty() => {
                (true, admitted.report)
            }
            Ok(admitted) => {
                // Layers are composed, as at deploy, only once the function
                // passed every other check.
                let mut report = admitted.report;
                let (passed, check) = match self.compose_layers(admitted.artifact, None).await {
                    Ok(composed) => (
                        true,
                        zerofn_admission::Check {
                            check: "layers".to_owned(),
                            result: zerofn_admission::CheckResult::Pass,
                            detail: format!(
                                "{}; composed {}",
                                crate::layers::describe_layers(&composed),
                                composed.digest()
                            ),
                        },
                    ),
                    Err(e) => (
                        false,
                        zerofn_admission::Check {
                            check: "layers".to_owned(),
                            result: zerofn_admission::CheckResult::Fail,
                            detail: e.to_string(),
                        },
                    ),
                };
                report.checks.push(check);
                (passed, report)
            }
            Err(refused) => (false, refused.report),
        };
        Ok(ExplainResult {
            tenant,
            name,
            admitted,
            checks: crate::answers::checks(report),
        })
    }

    /// Trust a keyless signing identity for a tenant; returns its id.
    pub async fn add_identity(
        &self,
        actor: &str,
        tenant: &TenantName,
        req: AddIdentity,
    ) -> Result<TenantIdentityRow, ControlError> {
        let record =
            AuditRecord::new(actor, Action::TenantIdentityAdd, Outcome::Deny).tenant(tenant);
        let (kind, san) = match (req.certificate_identity, req.certificate_identity_regexp) {
            (Some(san), None) if !san.is_empty() => ("exact", san),
            (None, Some(re)) if !re.is_empty() => ("regexp", re),
            _ => {
                let e = ControlError::BadRequest(
                    "give exactly one of `certificate_identity` and `certificate_identity_regexp`"
                        .into(),
                );
                return self.refused(record, e).await;
            }
        };
        if req.certificate_oidc_issuer.is_empty() {
            let e = ControlError::BadRequest("`certificate_oidc_issuer` is empty".into());
            return self.refused(record, e).await;
        }
        if let Err(e) = TrustedRoot::from_json(req.trusted_root.as_bytes()) {
            return self
                .refused(
                    record,
                    ControlError::BadRequest(format!("invalid trusted root: {e}")),
                )
                .await;
        }
        let row = TenantIdentityRow {
            id: identity_id(kind, &san, &req.certificate_oidc_issuer),
            kind: kind.to_owned(),
            san,
            issuer: req.certificate_oidc_issuer,
            trusted_root: req.trusted_root,
            added_at: now(),
        };
        if let Err(e) = identity_of(&row).validate() {
            return self.refused(record, e.into()).await;
        }
        let existing = match self.store().tenant_identities(tenant).await {
            Ok(rows) => rows,
            Err(e) => return self.refused(record, e.into()).await,
        };
        if existing.iter().any(|r| r.id == row.id) {
            let e = zerofn_store::StoreError::IdentityExists {
                tenant: tenant.to_string(),
                id: row.id.clone(),
            };
            return self.refused(record, e.into()).await;
        }
        self.audit()
            .append(
                AuditRecord::new(actor, Action::TenantIdentityAdd, Outcome::Allow)
                    .tenant(tenant)
                    .reason(format!(
                        "{} {} `{}` from `{}`",
                        row.id, row.kind, row.san, row.issuer
                    )),
            )
            .await?;
        self.store()
            .add_tenant_identity(tenant, row.clone())
            .await?;
        Ok(row)
    }

    /// Stop trusting a keyless signing identity.
    pub async fn remove_identity(
        &self,
        actor: &str,
        tenant: &TenantName,
        id: &str,
    ) -> Result<(), ControlError> {
        let record = AuditRecord::new(actor, Action::TenantIdentityRemove, Outcome::Deny)
            .tenant(tenant)
            .reason(id);
        let existing = match self.store().tenant_identities(tenant).await {
            Ok(rows) => rows,
            Err(e) => return self.refused(record, e.into()).await,
        };
        if !existing.iter().any(|r| r.id == id) {
            let e = zerofn_store::StoreError::NoSuchIdentity {
                tenant: tenant.to_string(),
                id: id.to_owned(),
            };
            return self.refused(record, e.into()).await;
        }
        self.audit()
            .append(
                AuditRecord::new(actor, Action::TenantIdentityRemove, Outcome::Allow)
                    .tenant(tenant)
                    .reason(id),
            )
            .await?;
        self.store().remove_tenant_identity(tenant, id).await?;
        Ok(())
    }

    /// Change a tenant's admission settings. Everything is validated first;
    /// on any error nothing changes.
    pub async fn set_admission(
        &self,
        actor: &str,
        tenant: &TenantName,
        req: SetAdmission,
    ) -> Result<AdmissionView, ControlError> {
        let record = AuditRecord::new(actor, Action::AdmissionSet, Outcome::Deny).tenant(tenant);
        let mut settings = match self.store().admission_settings(tenant).await {
            Ok(s) => s,
            Err(e) => return self.refused(record, e.into()).await,
        };
        let mut changes = Vec::new();
        if let Some(text) = req.policy {
            if text.trim().is_empty() {
                settings.policy = None;
                changes.push("policy: platform default".to_owned());
            } else {
                match PolicySet::parse(&text) {
                    Ok(set) => {
                        changes.push(format!("policy: {}", set.ids().join(", ")));
                        settings.policy = Some(text);
                    }
                    Err(e) => return self.refused(record, ControlError::Policy(e)).await,
                }
            }
        }
        if let Some(name) = req.severity_threshold {
            if name == "none" {
                settings.severity_threshold = None;
            } else {
                match parse_severity(&name) {
                    Some(s) => settings.severity_threshold = Some(severity_name(s).to_owned()),
                    None => {
                        let e = ControlError::BadRequest(format!(
                            "unknown severity `{}`; use critical, high, medium, low, unknown or none",
                            name.escape_debug()
                        ));
                        return self.refused(record, e).await;
                    }
                }
            }
            changes.push(format!(
                "severity threshold: {}",
                settings.severity_threshold.as_deref().unwrap_or("none")
            ));
        }
        if let Some(require) = req.require_sbom {
            settings.require_sbom = require;
            changes.push(format!("require sbom: {require}"));
        }
        self.audit()
            .append(
                AuditRecord::new(actor, Action::AdmissionSet, Outcome::Allow)
                    .tenant(tenant)
                    .reason(changes.join("; ")),
            )
            .await?;
        self.store()
            .set_admission_settings(tenant, settings, &now())
            .await?;
        self.admission_view(tenant).await
    }

    /// A tenant's admission rules as stored.
    pub async fn admission_view(&self, tenant: &TenantName) -> Result<AdmissionView, ControlError> {
        let settings: AdmissionSettingsRow = self.store().admission_settings(tenant).await?;
        let key_ids = self
            .store()
            .tenant_keys(tenant)
            .await?
            .into_iter()
            .map(|k| k.key_id)
            .collect();
        let identities = self.store().tenant_identities(tenant).await?;
        let default_policy = settings.policy.is_none();
        let set = match settings.policy.as_deref() {
            Some(text) => PolicySet::parse(text),
            None => PolicySet::default_admission(),
        }
        .map_err(ControlError::Policy)?;
        Ok(AdmissionView {
            tenant: tenant.to_string(),
            key_ids,
            identities: identities
                .iter()
                .map(crate::answers::keyless_identity)
                .collect(),
            policy: set.source().to_owned(),
            policy_ids: set.ids().to_vec(),
            default_policy,
            severity_threshold: settings.severity_threshold,
            require_sbom: settings.require_sbom,
            updated_at: settings.updated_at,
        })
    }
}
