//! Verification of the platform's own X.509-SVIDs on a hot path (every
//! capability call of a function), remembering which certificates already
//! passed the chain and signature checks.
//!
//! A certificate's chain and signature cannot change, so they are checked
//! once per serial; expiry and revocation can, so they are checked on every
//! call. A revoked serial is therefore refused at once, as with a full
//! verification.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use time::OffsetDateTime;

use crate::{CertificateAuthority, X509Svid};

/// Most verified certificates remembered (about two per function around a
/// rotation); the memory is cleared when full.
const CAPACITY: usize = 16_384;

/// Verifies X.509-SVIDs of one CA, remembering signature checks.
pub struct SvidVerifier {
    ca: Arc<CertificateAuthority>,
    verified: Mutex<HashMap<String, (String, OffsetDateTime)>>,
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
    pub fn verify(&self, svid: &X509Svid, now: OffsetDateTime) -> Result<String, String> {
        let serial = svid.serial_hex();
        if self.ca.revocations().is_revoked(svid.serial()) {
            return Err(format!("the X.509-SVID serial {serial} is revoked"));
        }
        let cached = self
            .verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(serial)
            .cloned();
        if let Some((id, not_after)) = cached {
            if now >= not_after {
                return Err(format!("the X.509-SVID serial {serial} has expired"));
            }
            return Ok(id);
        }
        let id = self
            .ca
            .verify_x509_svid(svid.cert_pem(), now)
            .map(|id| id.to_string())
            .map_err(|e| e.to_string())?;
        let mut cache = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CAPACITY {
            cache.clear();
        }
        cache.insert(serial.to_owned(), (id.clone(), svid.not_after()));
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SpiffeId, TrustDomain};
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
        assert_eq!(v.verify(&svid, now).unwrap(), id.to_string());
        // Remembered: still checked for expiry...
        let later = svid.not_after() + time::Duration::seconds(1);
        assert!(v.verify(&svid, later).unwrap_err().contains("expired"));
        // ...and for revocation.
        ca.revocations().revoke(svid.serial().clone());
        assert!(v.verify(&svid, now).unwrap_err().contains("revoked"));
        // A certificate of another CA never passes.
        let other_dir = tempfile::tempdir().unwrap();
        let other = CertificateAuthority::load_or_create(other_dir.path(), &td).unwrap();
        let foreign = other.issue_x509_svid(&id, Duration::from_secs(60)).unwrap();
        assert!(v.verify(&foreign, now).is_err());
    }
}
