//! Verification of the platform's own X.509-SVIDs on a hot path (every
//! capability call of a function), remembering which certificates already
//! passed the chain and signature checks.
//!
//! A certificate's chain and signature cannot change, so they are checked
//! once per serial; expiry and revocation can, so they are checked on every
//! call. A revoked serial is therefore refused at once, as with a full
//! verification.
//!
//! The result is a [`VerifiedSpiffeId`], which only this module makes: code
//! that needs the identity of a running workload (the gateway's capability
//! decisions, the caller header of a function call) takes one, so it cannot
//! be handed an ID that was merely parsed or made up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use time::OffsetDateTime;

use crate::{CertificateAuthority, IdentityError, SpiffeId, X509Svid};

/// A SPIFFE ID read from an X.509-SVID that verified (issued by this trust
/// domain's CA, unexpired, not revoked) when it was made. Only
/// [`SvidVerifier::verify`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedSpiffeId(SpiffeId);

impl VerifiedSpiffeId {
    /// The SPIFFE ID.
    pub fn id(&self) -> &SpiffeId {
        &self.0
    }
}

impl std::fmt::Display for VerifiedSpiffeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a workload's identity is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SvidRefusal {
    /// The workload holds no SVID (it is not served, or was never issued one).
    #[error("{workload} holds no SVID")]
    NotServed {
        /// `tenant/name` of the workload.
        workload: String,
    },
    /// The SVID's serial was revoked.
    #[error("the X.509-SVID serial {serial} is revoked")]
    Revoked {
        /// Hex serial.
        serial: String,
    },
    /// A remembered SVID has expired.
    #[error("the X.509-SVID serial {serial} has expired")]
    Expired {
        /// Hex serial.
        serial: String,
    },
    /// The SVID did not verify, or a token could not be issued for it.
    #[error(transparent)]
    Invalid(#[from] IdentityError),
}

/// Most verified certificates remembered (about two per function around a
/// rotation); the memory is cleared when full.
const CAPACITY: usize = 16_384;

/// Verifies X.509-SVIDs of one CA, remembering signature checks.
pub struct SvidVerifier {
    ca: Arc<CertificateAuthority>,
    verified: Mutex<HashMap<String, (SpiffeId, OffsetDateTime)>>,
}

impl SvidVerifier {
    pub fn new(ca: Arc<CertificateAuthority>) -> SvidVerifier {
        SvidVerifier {
            ca,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// The SPIFFE ID of `svid` if it is valid at `now`: issued by this CA
    /// (checked once per serial), unexpired and not revoked (checked every
    /// time). Otherwise why not.
    pub fn verify(
        &self,
        svid: &X509Svid,
        now: OffsetDateTime,
    ) -> Result<VerifiedSpiffeId, SvidRefusal> {
        let serial = svid.serial_hex();
        if self.ca.revocations().is_revoked(svid.serial()) {
            return Err(SvidRefusal::Revoked {
                serial: serial.to_owned(),
            });
        }
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(serial)
            .cloned();
        if let Some((id, not_after)) = cached {
            if now >= not_after {
                return Err(SvidRefusal::Expired {
                    serial: serial.to_owned(),
                });
            }
            return Ok(VerifiedSpiffeId(id));
        }
        let id = self.ca.verify_x509_svid(svid.cert_pem(), now)?;
        let mut cache = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CAPACITY {
            cache.clear();
        }
        cache.insert(serial.to_owned(), (id.clone(), svid.not_after()));
        Ok(VerifiedSpiffeId(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TrustDomain;
    use std::time::Duration;

    #[test]
    fn revocation_and_expiry_apply_to_remembered_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let td = TrustDomain::default();
        let ca = Arc::new(CertificateAuthority::load_or_create(dir.path(), &td).unwrap());
        let id = SpiffeId::for_function(&td, "acme", "f").unwrap();
        let svid = ca.issue_x509_svid(&id, Duration::from_secs(60)).unwrap();
        let v = SvidVerifier::new(ca.clone());
        let now = OffsetDateTime::now_utc();
        assert_eq!(v.verify(&svid, now).unwrap().to_string(), id.to_string());
        // Remembered: still checked for expiry...
        let later = svid.not_after() + time::Duration::seconds(1);
        assert!(v
            .verify(&svid, later)
            .unwrap_err()
            .to_string()
            .contains("expired"));
        // ...and for revocation.
        ca.revocations().revoke(svid.serial().clone());
        assert!(v
            .verify(&svid, now)
            .unwrap_err()
            .to_string()
            .contains("revoked"));
        // A certificate of another CA never passes.
        let other_dir = tempfile::tempdir().unwrap();
        let other = CertificateAuthority::load_or_create(other_dir.path(), &td).unwrap();
        let foreign = other.issue_x509_svid(&id, Duration::from_secs(60)).unwrap();
        assert!(v.verify(&foreign, now).is_err());
    }
}
