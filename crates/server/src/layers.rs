//! Layers on the control plane: publish (verify, then store), list, delete
//! (refused while a deployment pins the layer), and composing a function
//! with the layers its manifest pins at deploy and at restart.
//!
//! A layer is verified exactly like a function, with the tenant's trusted
//! signers, when it is published and again every time a function is
//! composed with it; its bytes never change (the digest is its name).

use zerofn_admission::{
    compose, verify_layer, AdmittedArtifact, Digest, LayerError, TrustedSigners, VerifiedLayer,
};
use zerofn_audit::{Action, AuditRecord, Outcome};
use zerofn_store::{LayerRow, LayerSummary, StoreError};
use zerofn_types::TenantName;

use crate::clock::now;
use crate::control::{signer_text, ControlError, ControlPlane};

/// The audit record of a layer operation. The audit log has no layer
/// actions yet, so publishing is recorded as a `deploy` and deleting as an
/// `undeploy`, with no function, the layer's digest, and a reason starting
/// with `layer publish` / `layer delete`.
fn layer_record(actor: &str, publish: bool, outcome: Outcome, tenant: &TenantName) -> AuditRecord {
    let action = if publish {
        Action::LayerPublish
    } else {
        Action::LayerDelete
    };
    AuditRecord::new(actor, action, outcome).tenant(tenant)
}

fn with_reason(record: AuditRecord, publish: bool, reason: &str) -> AuditRecord {
    let what = if publish {
        "layer publish"
    } else {
        "layer delete"
    };
    record.reason(format!("{what}: {reason}"))
}

impl ControlPlane {
    /// Verify a layer with the tenant's trusted signers and store it.
    pub async fn publish_layer(
        &self,
        actor: &str,
        tenant: &TenantName,
        component: Vec<u8>,
        bundle: Vec<u8>,
    ) -> Result<LayerSummary, ControlError> {
        let digest = Digest::of(&component);
        let record = layer_record(actor, true, Outcome::Deny, tenant).digest(digest.to_string());
        let signers = match self.signers(tenant).await {
            Ok(s) => s,
            Err(e) => return self.refused_layer(record, true, e).await,
        };
        let tenant_owned = tenant.to_string();
        let bundle_bytes = bundle.clone();
        let verified = tokio::task::spawn_blocking(move || {
            verify_layer(component, &bundle, &signers, &tenant_owned)
        })
        .await
        .map_err(|e| ControlError::Internal(e.to_string()))?;
        let layer = match verified {
            Ok(layer) => layer,
            Err(e) => return self.refused_layer(record, true, e.into()).await,
        };
        let existing = self
            .store()
            .layers(tenant, vec![digest.to_string()])
            .await?;
        if !existing.is_empty() {
            let e = StoreError::LayerExists {
                tenant: tenant.to_string(),
                digest: digest.to_string(),
            };
            return self.refused_layer(record, true, e.into()).await;
        }
        let signer = signer_text(layer.signer_identity());
        let exports = layer.exports().to_vec();
        self.audit()
            .append(with_reason(
                layer_record(actor, true, Outcome::Allow, tenant).digest(digest.to_string()),
                true,
                &format!("signed by {signer}; exports {}", exports.join(", ")),
            ))
            .await?;
        let row = LayerRow {
            tenant: tenant.to_string(),
            digest: digest.to_string(),
            signer,
            exports,
            component: layer.component().to_vec(),
            bundle: bundle_bytes,
            published_at: now(),
        };
        let summary = LayerSummary {
            tenant: row.tenant.clone(),
            digest: row.digest.clone(),
            signer: row.signer.clone(),
            exports: row.exports.clone(),
            size: u64::try_from(row.component.len()).unwrap_or(u64::MAX),
            published_at: row.published_at.clone(),
            pinned_by: Vec::new(),
        };
        if let Err(e) = self.store().put_layer(row).await {
            let failed = with_reason(
                layer_record(actor, true, Outcome::Error, tenant).digest(digest.to_string()),
                true,
                &e.to_string(),
            );
            self.audit().append(failed).await?;
            return Err(e.into());
        }
        Ok(summary)
    }

    /// A tenant's layers, with the functions pinning each.
    pub async fn list_layers(
        &self,
        tenant: &TenantName,
    ) -> Result<Vec<LayerSummary>, ControlError> {
        // Distinguish "no such tenant" from "no layers".
        self.store().tenant_keys(tenant).await?;
        Ok(self.store().list_layers(tenant).await?)
    }

    /// Delete a layer no deployment pins.
    pub async fn delete_layer(
        &self,
        actor: &str,
        tenant: &TenantName,
        digest: &str,
    ) -> Result<(), ControlError> {
        let record = layer_record(actor, false, Outcome::Deny, tenant);
        let digest = match Digest::parse(digest) {
            Ok(d) => d.to_string(),
            Err(e) => {
                return self
                    .refused_layer(record, false, ControlError::BadRequest(e.to_string()))
                    .await
            }
        };
        let record = record.digest(digest.clone());
        let layers = match self.store().list_layers(tenant).await {
            Ok(l) => l,
            Err(e) => return self.refused_layer(record, false, e.into()).await,
        };
        let refusal = match layers.iter().find(|l| l.digest == digest) {
            None => Some(StoreError::NoSuchLayer {
                tenant: tenant.to_string(),
                digest: digest.clone(),
            }),
            Some(l) if !l.pinned_by.is_empty() => Some(StoreError::LayerPinned {
                tenant: tenant.to_string(),
                digest: digest.clone(),
                functions: l.pinned_by.join(", "),
            }),
            Some(_) => None,
        };
        if let Some(e) = refusal {
            return self.refused_layer(record, false, e.into()).await;
        }
        self.audit()
            .append(with_reason(
                layer_record(actor, false, Outcome::Allow, tenant).digest(digest.clone()),
                false,
                "not pinned by any deployment",
            ))
            .await?;
        if let Err(e) = self.store().delete_layer(tenant, &digest).await {
            // A deploy pinned it between the check and the delete.
            let failed = with_reason(
                layer_record(actor, false, Outcome::Error, tenant).digest(digest.clone()),
                false,
                &e.to_string(),
            );
            self.audit().append(failed).await?;
            return Err(e.into());
        }
        Ok(())
    }

    /// The stored layers a function pins (those that exist; `compose`
    /// refuses a missing one naming its digest).
    pub(crate) async fn pinned_layer_rows(
        &self,
        artifact: &AdmittedArtifact,
    ) -> Result<Vec<LayerRow>, ControlError> {
        let m = artifact.manifest();
        if m.layers.is_empty() {
            return Ok(Vec::new());
        }
        let digests = m.layers.values().map(Digest::to_string).collect();
        Ok(self.store().layers(&m.tenant, digests).await?)
    }

    async fn refused_layer<T>(
        &self,
        record: AuditRecord,
        publish: bool,
        error: ControlError,
    ) -> Result<T, ControlError> {
        self.audit()
            .append(with_reason(record, publish, &error.to_string()))
            .await?;
        Err(error)
    }
}

/// Verifies every pinned layer with the tenant's signers and composes the
/// function with them (CPU-bound: run on a blocking thread). A function
/// without layers is returned as it is.
pub(crate) fn compose_with_layers(
    function: AdmittedArtifact,
    rows: Vec<LayerRow>,
    signers: &TrustedSigners,
) -> Result<AdmittedArtifact, LayerError> {
    if function.manifest().layers.is_empty() {
        return Ok(function);
    }
    let tenant = function.manifest().tenant.as_str().to_owned();
    let mut verified: Vec<VerifiedLayer> = Vec::with_capacity(rows.len());
    for row in rows {
        verified.push(verify_layer(row.component, &row.bundle, signers, &tenant)?);
    }
    compose(function, &verified)
}

/// `import=digest` pairs for the audit record and the response.
pub(crate) fn describe_layers(artifact: &AdmittedArtifact) -> String {
    artifact
        .layers()
        .iter()
        .map(|(import, digest)| format!("{import}={digest}"))
        .collect::<Vec<_>>()
        .join(", ")
}
