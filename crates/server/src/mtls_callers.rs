//! The control plane of mTLS callers: each tenant's certificate authorities
//! (`zerofn auth mtls add|list|remove`), stored and audited here, and the registry the
//! gateway verifies client certificates with (the tenants' CAs and the platform's trust
//! bundle for `mtls:spiffe`), rebuilt whole from the store after every change and at
//! start-up.
//!
//! # Trust
//! Trusts the API to have authorized the operator (`tenant.manage` to change, `tenant.read`
//! to list). Checks every CA with `zerofn-authn` before storing it (certificates only, CAs,
//! within validity, bounded); a file holding a private key is refused without echoing it.
//! Trusts the identity CA for the platform's SVID rules (SPIFFE ID, revocation).

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use time::OffsetDateTime;
use zerofn_audit::{Action, AuditLog, AuditRecord, Outcome};
use zerofn_authn::{
    CaCertificate, CertificateRefusal, MtlsAuthorities, MtlsRegistry, PlatformSvids, PlatformTrust,
    TrustedCa,
};
use zerofn_identity::{CertificateAuthority, IdentityError};
use zerofn_store::{MtlsCaRow, Store, StoreError};
use zerofn_types::{FunctionName, TenantName};

use crate::clock::now;
use crate::control::ControlError;

/// `POST /v1/tenants/{tenant}/auth/mtls`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AddMtlsCa {
    pub name: String,
    /// One or more PEM CA certificates.
    pub ca_pem: String,
}

/// A registered CA as listed: its certificates' subjects, validity and fingerprints.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct MtlsCaView {
    pub tenant: String,
    pub name: String,
    pub certificates: Vec<CaCertificate>,
    pub added_at: String,
}

/// The platform's X509-SVID rules, by the identity CA that owns them.
struct IdentitySvids(Arc<CertificateAuthority>);

impl PlatformSvids for IdentitySvids {
    fn verify(&self, leaf: &[u8]) -> Result<String, CertificateRefusal> {
        match self.0.verify_x509_svid_der(leaf, OffsetDateTime::now_utc()) {
            Ok((id, _serial)) => Ok(id.to_string()),
            Err(IdentityError::SvidRevoked { .. }) => Err(CertificateRefusal::Revoked),
            Err(IdentityError::CertificateNotValidNow { not_after, .. })
                if not_after < OffsetDateTime::now_utc() =>
            {
                Err(CertificateRefusal::Expired)
            }
            Err(IdentityError::CertificateNotValidNow { .. }) => {
                Err(CertificateRefusal::NotYetValid)
            }
            Err(_) => Err(CertificateRefusal::NotAnSvid),
        }
    }
}

pub(crate) struct MtlsCallers {
    store: Store,
    audit: AuditLog,
    authorities: MtlsAuthorities,
    ca: Arc<CertificateAuthority>,
}

fn bad(message: impl Into<String>) -> ControlError {
    ControlError::BadRequest(message.into())
}

fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

impl MtlsCallers {
    pub(crate) fn new(store: Store, audit: AuditLog, ca: Arc<CertificateAuthority>) -> MtlsCallers {
        MtlsCallers {
            store,
            audit,
            authorities: MtlsAuthorities::default(),
            ca,
        }
    }

    /// The registry in force, shared with the gateway.
    pub(crate) fn authorities(&self) -> &MtlsAuthorities {
        &self.authorities
    }

    /// Rebuilds the registry from the store. A stored CA that no longer loads (expired
    /// since it was registered) is left out, so its certificates are refused, and logged:
    /// fail closed. Without the platform bundle, `mtls:spiffe` verifies no one.
    pub(crate) async fn reload(&self) -> Result<(), ControlError> {
        let mut registry = MtlsRegistry::default();
        match platform_trust(&self.ca) {
            Ok(platform) => registry.set_platform(platform),
            Err(error) => {
                tracing::error!(%error, "the platform trust bundle is unusable for mTLS callers; `mtls:spiffe` verifies no one");
            }
        }
        let now = unix_now();
        for row in self.store.mtls_cas(None).await? {
            match TrustedCa::parse(&row.name, row.pem.as_bytes(), now) {
                Ok(ca) => registry.add_ca(&row.tenant, ca),
                Err(error) => {
                    tracing::error!(tenant = %row.tenant, ca = %row.name, %error, "stored mTLS CA does not load; its certificates are refused");
                }
            }
        }
        self.authorities.replace(registry);
        Ok(())
    }

    async fn refused<T>(
        &self,
        record: AuditRecord,
        error: ControlError,
    ) -> Result<T, ControlError> {
        crate::control::audit_refusal(&self.audit, record, error).await
    }

    pub(crate) async fn add(
        &self,
        actor: &str,
        tenant: &TenantName,
        req: AddMtlsCa,
    ) -> Result<MtlsCaView, ControlError> {
        let record = AuditRecord::new(actor, Action::AuthMtlsAdd, Outcome::Deny).tenant(tenant);
        let ca = match check(&req) {
            Ok(ca) => ca,
            Err(e) => return self.refused(record, e).await,
        };
        let record = record.reason(format!("mtls:{}", ca.name()));
        match self.store.mtls_cas(Some(tenant)).await {
            Ok(rows) if rows.iter().any(|r| r.name == ca.name()) => {
                let e = StoreError::MtlsCaExists {
                    tenant: tenant.to_string(),
                    name: ca.name().to_owned(),
                };
                return self.refused(record, e.into()).await;
            }
            Ok(_) => {}
            Err(e) => return self.refused(record, e.into()).await,
        }
        let row = MtlsCaRow {
            tenant: tenant.to_string(),
            name: ca.name().to_owned(),
            pem: ca.pem().to_owned(),
            added_at: now(),
        };
        let subjects: Vec<&str> = ca
            .certificates()
            .iter()
            .map(|c| c.subject.as_str())
            .collect();
        let fingerprints: Vec<&str> = ca
            .certificates()
            .iter()
            .map(|c| c.fingerprint.as_str())
            .collect();
        self.audit
            .append(
                AuditRecord::new(actor, Action::AuthMtlsAdd, Outcome::Allow)
                    .tenant(tenant)
                    .reason(format!("mtls:{} ({})", ca.name(), subjects.join("; ")))
                    .detail(serde_json::json!({ "fingerprints": fingerprints })),
            )
            .await?;
        self.store.add_mtls_ca(tenant, row.clone()).await?;
        self.reload().await?;
        Ok(MtlsCaView {
            tenant: row.tenant,
            name: row.name,
            certificates: ca.certificates().to_vec(),
            added_at: row.added_at,
        })
    }

    pub(crate) async fn remove(
        &self,
        actor: &str,
        tenant: &TenantName,
        name: &str,
    ) -> Result<(), ControlError> {
        let record = AuditRecord::new(actor, Action::AuthMtlsRemove, Outcome::Deny)
            .tenant(tenant)
            .reason(format!("mtls:{}", name.escape_debug()));
        match self.store.mtls_cas(Some(tenant)).await {
            Ok(rows) if rows.iter().any(|r| r.name == name) => {}
            Ok(_) => {
                let e = StoreError::NoSuchMtlsCa {
                    tenant: tenant.to_string(),
                    name: name.escape_debug().to_string(),
                };
                return self.refused(record, e.into()).await;
            }
            Err(e) => return self.refused(record, e.into()).await,
        }
        self.audit
            .append(
                AuditRecord::new(actor, Action::AuthMtlsRemove, Outcome::Allow)
                    .tenant(tenant)
                    .reason(format!("mtls:{name}")),
            )
            .await?;
        self.store.remove_mtls_ca(tenant, name).await?;
        self.reload().await
    }

    pub(crate) async fn list(&self, tenant: &TenantName) -> Result<Vec<MtlsCaView>, ControlError> {
        Ok(self
            .store
            .mtls_cas(Some(tenant))
            .await?
            .into_iter()
            .map(view)
            .collect())
    }
}

/// A stored row as listed; a CA that no longer loads (expired) is listed with what its
/// certificates still say, read without the registration checks.
fn view(row: MtlsCaRow) -> MtlsCaView {
    let certificates = TrustedCa::describe(row.pem.as_bytes()).unwrap_or_default();
    MtlsCaView {
        tenant: row.tenant,
        name: row.name,
        certificates,
        added_at: row.added_at,
    }
}

/// Checks a registration: the name (a DNS label, not `spiffe`) and the CA certificates.
pub(crate) fn check(req: &AddMtlsCa) -> Result<TrustedCa, ControlError> {
    FunctionName::parse(&req.name).map_err(|_| {
        bad(format!(
            "CA name `{}` is not 1 to 63 of a-z, 0-9 and `-`",
            req.name.escape_debug()
        ))
    })?;
    TrustedCa::parse(&req.name, req.ca_pem.as_bytes(), unix_now()).map_err(|e| bad(e.to_string()))
}

fn platform_trust(ca: &Arc<CertificateAuthority>) -> Result<PlatformTrust, String> {
    let bundle = CertificateDer::pem_slice_iter(ca.trust_bundle_pem().as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    PlatformTrust::new(bundle, Arc::new(IdentitySvids(ca.clone()))).map_err(|e| e.to_string())
}
