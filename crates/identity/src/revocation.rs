//! [`RevocationList`]: serials that both verifiers refuse from the moment they are added.

use std::collections::HashSet;
use std::sync::{PoisonError, RwLock};

use crate::serial::SerialNumber;

/// The set of revoked SVID serials (X.509 serial numbers and JWT-SVID `jti`s), in memory.
///
/// The [`CertificateAuthority`](crate::CertificateAuthority) holds one behind an `Arc` and
/// consults it in [`verify_x509_svid`](crate::CertificateAuthority::verify_x509_svid) and
/// [`verify_jwt_svid`](crate::CertificateAuthority::verify_jwt_svid), so a `revoke` takes
/// effect for the next verification, with no cache in between. Persisting it is the
/// caller's job (the server stores [`revoked_serials`](Self::revoked_serials) and feeds them
/// back through [`load_revoked`](Self::load_revoked) at start). An entry can be dropped once
/// the SVID it names has expired; this list does not know expiry times, so it keeps them.
///
/// Revocation here is local to this process: peers outside the platform that trust the
/// bundle directly see no CRL or OCSP, and rely on the short SVID lifetimes instead.
#[derive(Debug, Default)]
pub struct RevocationList {
    serials: RwLock<HashSet<SerialNumber>>,
}

impl RevocationList {
    /// An empty list.
    pub fn new() -> RevocationList {
        RevocationList::default()
    }

    /// Revoke `serial`. Returns `true` if it was not revoked before.
    pub fn revoke(&self, serial: SerialNumber) -> bool {
        // A poisoned lock still holds a consistent set: `insert` and `contains` cannot leave
        // it half-changed, so the guard is recovered rather than failing open or closed.
        let mut serials = self.serials.write().unwrap_or_else(PoisonError::into_inner);
        serials.insert(serial)
    }

    /// Whether `serial` is revoked.
    pub fn is_revoked(&self, serial: &SerialNumber) -> bool {
        let serials = self.serials.read().unwrap_or_else(PoisonError::into_inner);
        serials.contains(serial)
    }

    /// Every revoked serial, sorted, for the caller to persist.
    pub fn revoked_serials(&self) -> Vec<SerialNumber> {
        let serials = self.serials.read().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<SerialNumber> = serials.iter().cloned().collect();
        all.sort();
        all
    }

    /// Add serials persisted earlier (at start-up). Existing entries stay.
    pub fn load_revoked(&self, serials: impl IntoIterator<Item = SerialNumber>) {
        let mut set = self.serials.write().unwrap_or_else(PoisonError::into_inner);
        set.extend(serials);
    }

    /// How many serials are revoked.
    pub fn len(&self) -> usize {
        self.serials
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoke_load_and_list() {
        let list = RevocationList::new();
        assert!(list.is_empty());
        let a = SerialNumber::parse("0a").unwrap();
        let b = SerialNumber::parse("0b").unwrap();
        assert!(list.revoke(b.clone()));
        assert!(!list.revoke(b.clone()), "second revoke reports no change");
        assert!(list.is_revoked(&b));
        assert!(!list.is_revoked(&a));
        let restored = RevocationList::new();
        restored.load_revoked(list.revoked_serials());
        restored.load_revoked([a.clone()]);
        assert_eq!(restored.revoked_serials(), vec![a, b]);
        assert_eq!(restored.len(), 2);
    }
}
