//! Operators: issuing their client certificates, listing and removing them, and
//! authenticating a client certificate presented to the control API.
//!
//! # Trust
//! A certificate authenticates an operator only if the identity CA verifies it (chain,
//! signature, validity now, X509-SVID leaf rules, not revoked), its SPIFFE ID is
//! `spiffe://<trust domain>/operator/<name>`, and the store knows its serial as issued to
//! that name and not revoked. The TLS layer has checked the chain already; this check runs
//! again on every request, so a removal takes effect at the next request, on open
//! connections too. Operators' private keys never reach the platform: `add` takes a public
//! key.

use std::sync::Arc;
use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use zerofn_api::IssuedOperator;
use zerofn_audit::{Action, AuditLog, AuditRecord, Outcome};
use zerofn_identity::{CertificateAuthority, OperatorName, SerialNumber, MAX_SVID_TTL};
use zerofn_policy::ROOT_OPERATOR;
use zerofn_store::{OperatorCertRow, Store};

use crate::clock::now;
use crate::control::ControlError;

/// Default lifetime of an operator certificate.
pub(crate) const DEFAULT_OPERATOR_TTL: Duration = Duration::from_secs(24 * 60 * 60);

pub(crate) struct Operators {
    ca: Arc<CertificateAuthority>,
    store: Store,
    audit: AuditLog,
}

impl Operators {
    /// Load the revoked operator serials into the CA's revocation list.
    pub(crate) fn open(
        ca: Arc<CertificateAuthority>,
        store: Store,
        audit: AuditLog,
    ) -> Result<Operators, ControlError> {
        let revoked = store.revoked_operator_serials_blocking()?;
        let serials = revoked
            .iter()
            .filter_map(|s| SerialNumber::parse(s).ok())
            .collect::<Vec<_>>();
        if serials.len() != revoked.len() {
            return Err(ControlError::Internal(
                "a stored operator serial is not hex".to_owned(),
            ));
        }
        ca.revocations().load_revoked(serials);
        Ok(Operators { ca, store, audit })
    }

    /// Issue a certificate for operator `name` over `public_key_pem`, valid for `ttl`.
    pub(crate) async fn add(
        &self,
        actor: &str,
        name: &str,
        public_key_pem: &str,
        ttl: Duration,
    ) -> Result<IssuedOperator, ControlError> {
        let (issued, row) = self.issue(name, public_key_pem, ttl)?;
        self.audit
            .append(Self::added_record(actor, &issued))
            .await?;
        self.store.add_operator_cert(row).await?;
        Ok(issued)
    }

    /// A certificate for operator `name` and the row that records it, with nothing stored
    /// (a configuration apply stores the row in its own transaction).
    pub(crate) fn issue(
        &self,
        name: &str,
        public_key_pem: &str,
        ttl: Duration,
    ) -> Result<(IssuedOperator, OperatorCertRow), ControlError> {
        let name =
            OperatorName::parse(name).map_err(|e| ControlError::BadRequest(e.to_string()))?;
        // `root` is the token's principal: a certificate must never pass for it.
        if name.as_str() == ROOT_OPERATOR {
            return Err(ControlError::BadRequest(format!(
                "`{ROOT_OPERATOR}` is the operator token's name; choose another operator name"
            )));
        }
        if ttl.is_zero() || ttl > MAX_SVID_TTL {
            return Err(ControlError::BadRequest(format!(
                "`ttl_hours` must be from 1 to {}",
                MAX_SVID_TTL.as_secs() / 3600
            )));
        }
        let cert = self
            .ca
            .issue_operator_certificate(&name, public_key_pem, ttl)
            .map_err(|e| ControlError::BadRequest(e.to_string()))?;
        let not_after = cert
            .not_after()
            .format(&Rfc3339)
            .map_err(|e| ControlError::Internal(e.to_string()))?;
        let row = OperatorCertRow {
            name: name.to_string(),
            serial: cert.serial().to_string(),
            not_after: not_after.clone(),
            created_at: now(),
            revoked_at: None,
            public_key_pem: public_key_pem.to_owned(),
        };
        let issued = IssuedOperator {
            name: name.to_string(),
            spiffe_id: cert.spiffe_id().to_string(),
            serial: cert.serial().to_string(),
            not_after,
            certificate: cert.cert_pem().to_owned(),
            ca: self.ca.trust_bundle_pem().to_owned(),
        };
        Ok((issued, row))
    }

    /// The audit record of a certificate issued.
    pub(crate) fn added_record(actor: &str, issued: &IssuedOperator) -> AuditRecord {
        AuditRecord::new(actor, Action::OperatorAdd, Outcome::Allow).reason(format!(
            "operator `{}` certificate {} until {}",
            issued.name, issued.serial, issued.not_after
        ))
    }

    /// The audit record of an operator removed.
    pub(crate) fn removed_record(actor: &str, name: &str) -> AuditRecord {
        AuditRecord::new(actor, Action::OperatorRemove, Outcome::Allow).reason(format!(
            "operator `{name}` removed; its certificates revoked"
        ))
    }

    /// Put revocations stored by a configuration apply in force (the next request with
    /// one of these certificates is refused, on open connections too).
    pub(crate) fn revoked(&self, serials: &[String]) -> Result<(), ControlError> {
        for serial in serials {
            let s = SerialNumber::parse(serial).map_err(|_| {
                ControlError::Internal("a stored operator serial is not hex".to_owned())
            })?;
            self.ca.revocations().revoke(s);
        }
        Ok(())
    }

    pub(crate) async fn list(&self) -> Result<Vec<OperatorCertRow>, ControlError> {
        Ok(self.store.list_operator_certs().await?)
    }

    /// Revoke every certificate of operator `name`; returns the serials revoked now.
    pub(crate) async fn remove(
        &self,
        actor: &str,
        name: &str,
    ) -> Result<Vec<String>, ControlError> {
        let name =
            OperatorName::parse(name).map_err(|e| ControlError::BadRequest(e.to_string()))?;
        self.audit
            .append(Self::removed_record(actor, name.as_str()))
            .await?;
        let serials = self.store.revoke_operator(name.as_str(), &now()).await?;
        self.revoked(&serials)?;
        Ok(serials)
    }

    /// The operator a client certificate (DER) authenticates, or why it does not.
    pub(crate) async fn authenticate(
        &self,
        cert_der: &[u8],
    ) -> Result<OperatorName, OperatorRefusal> {
        let (id, serial) = self
            .ca
            .verify_x509_svid_der(cert_der, OffsetDateTime::now_utc())?;
        let Some(name) = OperatorName::from_spiffe_id(&id, self.ca.trust_domain())
            .filter(|n| n.as_str() != ROOT_OPERATOR)
        else {
            return Err(OperatorRefusal::NotAnOperator { id: id.to_string() });
        };
        match self.store.operator_cert(serial.as_str()).await {
            Ok(Some(row)) if row.name == name.as_str() && row.revoked_at.is_none() => Ok(name),
            Ok(Some(row)) if row.revoked_at.is_some() => {
                Err(OperatorRefusal::Revoked { serial, name })
            }
            Ok(_) => Err(OperatorRefusal::NotIssuedTo { serial, name }),
            Err(source) => Err(OperatorRefusal::Lookup { serial, source }),
        }
    }
}

/// Why a client certificate does not authenticate an operator. The message is the audited
/// refusal reason, after `client certificate refused: `.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OperatorRefusal {
    /// The certificate is not an X509-SVID of this trust domain (malformed, untrusted,
    /// expired or revoked by the CA).
    #[error(transparent)]
    Certificate(#[from] zerofn_identity::IdentityError),
    /// The SPIFFE ID is not an operator's (or is root's, which only the token names).
    #[error("`{id}` is not an operator identity")]
    NotAnOperator {
        /// The certificate's SPIFFE ID.
        id: String,
    },
    /// The operator's certificate has been revoked on the platform.
    #[error("certificate `{serial}` of operator `{name}` has been revoked")]
    Revoked {
        /// The certificate's serial.
        serial: SerialNumber,
        /// The operator it names.
        name: OperatorName,
    },
    /// The platform did not issue this certificate to this operator.
    #[error("certificate `{serial}` was not issued to operator `{name}` by this platform")]
    NotIssuedTo {
        /// The certificate's serial.
        serial: SerialNumber,
        /// The operator it names.
        name: OperatorName,
    },
    /// The certificate row could not be read.
    #[error("cannot look up certificate `{serial}`: {source}")]
    Lookup {
        /// The certificate's serial.
        serial: SerialNumber,
        /// The store's error.
        source: zerofn_store::StoreError,
    },
}
