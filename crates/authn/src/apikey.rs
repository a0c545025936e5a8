//! API keys: `zfk_<id>_<secret>`, where `id` is 8 random bytes in hex (public: it names the
//! key in lists and audit records) and `secret` is 32 random bytes in base64url.
//!
//! Only `SHA-256("zerofn-apikey-v1" || salt || secret)` is stored, with a random 16-byte
//! salt per key. A fast hash is enough here, unlike for passwords: the secret is 256 bits
//! from the OS's random source, so no dictionary or brute force over the hash can find it;
//! the salt makes equal hashes impossible across keys and platforms anyway. A slow hash
//! (argon2) would only make every invocation slower. The presented secret's hash is
//! compared in constant time (`subtle`).
//!
//! # Trust
//! Trusts the OS random source for new keys and the stored hashes for presented ones.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand_core::{OsRng, RngCore};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::AuthnError;

/// Prefix of every API key.
pub const PREFIX: &str = "zfk_";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;
const SALT_BYTES: usize = 16;

/// What is stored about a key: never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// 16 hex digits.
    pub id: String,
    /// 32 hex digits.
    pub salt: String,
    /// 64 hex digits.
    pub hash: String,
}

/// A newly created key: shown once, then only its [`StoredKey`] remains.
pub struct NewApiKey {
    key: Zeroizing<String>,
    pub stored: StoredKey,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey")
            .field("id", &self.stored.id)
            .finish_non_exhaustive()
    }
}

impl NewApiKey {
    /// Creates a key from the OS's random source.
    pub fn generate() -> NewApiKey {
        let mut id = [0u8; ID_BYTES];
        let mut secret = Zeroizing::new([0u8; SECRET_BYTES]);
        let mut salt = [0u8; SALT_BYTES];
        OsRng.fill_bytes(&mut id);
        OsRng.fill_bytes(secret.as_mut());
        OsRng.fill_bytes(&mut salt);
        let id = hex::encode(id);
        let key = Zeroizing::new(format!(
            "{PREFIX}{id}_{}",
            URL_SAFE_NO_PAD.encode(secret.as_ref())
        ));
        let stored = StoredKey {
            hash: hex::encode(hash(&salt, secret.as_ref())),
            salt: hex::encode(salt),
            id,
        };
        NewApiKey { key, stored }
    }

    /// The key itself, to show the tenant once.
    pub fn reveal(&self) -> &str {
        &self.key
    }
}

fn hash(salt: &[u8], secret: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"zerofn-apikey-v1");
    h.update(salt);
    h.update(secret);
    h.finalize().into()
}

/// A key as presented, split; its secret never leaves this module's checks.
pub struct PresentedKey {
    /// The public id.
    pub id: String,
    secret: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl PresentedKey {
    /// Parses `zfk_<16 hex>_<43 base64url>`.
    pub fn parse(text: &str) -> Result<PresentedKey, AuthnError> {
        let rest = text
            .strip_prefix(PREFIX)
            .ok_or(AuthnError::MalformedApiKey)?;
        let (id, secret) = rest.split_once('_').ok_or(AuthnError::MalformedApiKey)?;
        if id.len() != 2 * ID_BYTES
            || !id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(AuthnError::MalformedApiKey);
        }
        let secret = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(secret)
                .map_err(|_| AuthnError::MalformedApiKey)?,
        );
        if secret.len() != SECRET_BYTES {
            return Err(AuthnError::MalformedApiKey);
        }
        Ok(PresentedKey {
            id: id.to_owned(),
            secret,
        })
    }

    /// Whether this is the key `stored` describes, in time independent of where the two
    /// hashes differ. A corrupt stored row never matches.
    pub fn matches(&self, stored: &StoredKey) -> bool {
        let (Ok(salt), Ok(expected)) = (hex::decode(&stored.salt), hex::decode(&stored.hash))
        else {
            return false;
        };
        if stored.id != self.id || expected.len() != 32 {
            return false;
        }
        bool::from(hash(&salt, &self.secret).ct_eq(expected.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_matches_only_itself() {
        let a = NewApiKey::generate();
        let b = NewApiKey::generate();
        assert_ne!(a.reveal(), b.reveal());
        assert!(a.reveal().starts_with("zfk_"));
        assert_eq!(a.reveal().len(), 4 + 16 + 1 + 43);
        let pa = PresentedKey::parse(a.reveal()).unwrap();
        assert!(pa.matches(&a.stored));
        assert!(!pa.matches(&b.stored));
        // Same id, other secret: the hash decides.
        let forged = format!("zfk_{}_{}", a.stored.id, URL_SAFE_NO_PAD.encode([7u8; 32]));
        assert!(!PresentedKey::parse(&forged).unwrap().matches(&a.stored));
        // The stored form holds neither the key nor its secret.
        let secret_part = a.reveal().rsplit('_').next().unwrap();
        let stored = format!("{:?}", a.stored);
        assert!(!stored.contains(secret_part));
        assert!(!format!("{a:?}").contains(secret_part));
        assert!(!format!("{pa:?}").contains(secret_part));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let ok = NewApiKey::generate();
        let id = &ok.stored.id;
        for bad in [
            String::new(),
            "zfk_".into(),
            format!("zfk_{id}"),
            format!("zfk_{}_{}", &id[..15], "A".repeat(43)),
            format!("zfk_ABCDEF0123456789_{}", "A".repeat(43)),
            format!("zfk_{id}_{}", "A".repeat(42)),
            format!("zfk_{id}_{}=", "A".repeat(43)),
            format!("ZFK_{id}_{}", "A".repeat(43)),
        ] {
            assert_eq!(
                PresentedKey::parse(&bad).unwrap_err(),
                AuthnError::MalformedApiKey,
                "{bad}"
            );
        }
    }
}
