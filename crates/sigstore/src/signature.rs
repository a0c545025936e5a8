//! [`VerifierKey`]: a public key from a certificate or a trusted root (ECDSA P-256/P-384,
//! Ed25519, RSA), and signature verification with it.
//!
//! Every check here delegates to RustCrypto (`p256`, `p384`, `ecdsa`, `ed25519-dalek`, `rsa`,
//! `sha2`); this module only picks the algorithm a key or an X.509 `AlgorithmIdentifier`
//! names, and refuses the rest.

use const_oid::db::{rfc5912, rfc8410};
use const_oid::ObjectIdentifier;
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use sha2::{Digest as _, Sha256, Sha384, Sha512};
use spki::SubjectPublicKeyInfoRef;

/// A hash function Sigstore uses (`dev.sigstore.common.v1.HashAlgorithm`, the SHA-2 ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HashAlgorithm {
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlgorithm {
    pub(crate) fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashAlgorithm::Sha256 => Sha256::digest(data).to_vec(),
            HashAlgorithm::Sha384 => Sha384::digest(data).to_vec(),
            HashAlgorithm::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// The hash named by a digest `AlgorithmIdentifier` OID (RFC 5758 §2, NIST).
    pub(crate) fn from_digest_oid(oid: &ObjectIdentifier) -> Option<HashAlgorithm> {
        match *oid {
            rfc5912::ID_SHA_256 => Some(HashAlgorithm::Sha256),
            rfc5912::ID_SHA_384 => Some(HashAlgorithm::Sha384),
            rfc5912::ID_SHA_512 => Some(HashAlgorithm::Sha512),
            _ => None,
        }
    }
}

/// A signature algorithm named in X.509 or CMS: the hash and the key type it implies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SignatureAlgorithm {
    Ecdsa(HashAlgorithm),
    RsaPkcs1(HashAlgorithm),
    Ed25519,
}

impl SignatureAlgorithm {
    /// The algorithm of an X.509 / CMS signature `AlgorithmIdentifier` (RFC 5758 §3.2,
    /// RFC 4055 §5, RFC 8410 §3). `digest` is the CMS `digestAlgorithm`, used when the OID
    /// names only the key type (`id-ecPublicKey`, `rsaEncryption`), as some TSAs write.
    pub(crate) fn from_oid(
        oid: &ObjectIdentifier,
        digest: Option<HashAlgorithm>,
    ) -> Option<SignatureAlgorithm> {
        match *oid {
            rfc5912::ECDSA_WITH_SHA_256 => Some(SignatureAlgorithm::Ecdsa(HashAlgorithm::Sha256)),
            rfc5912::ECDSA_WITH_SHA_384 => Some(SignatureAlgorithm::Ecdsa(HashAlgorithm::Sha384)),
            rfc5912::ECDSA_WITH_SHA_512 => Some(SignatureAlgorithm::Ecdsa(HashAlgorithm::Sha512)),
            rfc5912::SHA_256_WITH_RSA_ENCRYPTION => {
                Some(SignatureAlgorithm::RsaPkcs1(HashAlgorithm::Sha256))
            }
            rfc5912::SHA_384_WITH_RSA_ENCRYPTION => {
                Some(SignatureAlgorithm::RsaPkcs1(HashAlgorithm::Sha384))
            }
            rfc5912::SHA_512_WITH_RSA_ENCRYPTION => {
                Some(SignatureAlgorithm::RsaPkcs1(HashAlgorithm::Sha512))
            }
            rfc8410::ID_ED_25519 => Some(SignatureAlgorithm::Ed25519),
            rfc5912::ID_EC_PUBLIC_KEY => digest.map(SignatureAlgorithm::Ecdsa),
            rfc5912::RSA_ENCRYPTION => digest.map(SignatureAlgorithm::RsaPkcs1),
            _ => None,
        }
    }
}

/// Why a public key (a certificate's, a log's) is not usable for verification.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum KeyError {
    /// The DER is not a SubjectPublicKeyInfo (the decoder's message).
    #[error("it is not a SubjectPublicKeyInfo ({0})")]
    NotSpki(String),
    /// The key's BIT STRING has unused bits.
    #[error("the key bit string has unused bits")]
    UnusedBits,
    /// An EC key without a named curve.
    #[error("the EC key has no named curve")]
    NoNamedCurve,
    /// The bytes are not a point of the named curve.
    #[error("the key is not a {0} point")]
    NotOnCurve(&'static str),
    /// An EC curve other than P-256 and P-384.
    #[error("EC curve `{0}` is not supported")]
    CurveUnsupported(ObjectIdentifier),
    /// An Ed25519 key of the wrong length.
    #[error("the Ed25519 key is not 32 bytes")]
    Ed25519Length,
    /// An Ed25519 key that is not a valid point.
    #[error("the Ed25519 key is invalid")]
    Ed25519Invalid,
    /// An RSA key that does not decode (the decoder's message).
    #[error("the RSA key is invalid ({0})")]
    RsaInvalid(String),
    /// Any other key algorithm.
    #[error("key algorithm `{0}` is not supported")]
    AlgorithmUnsupported(ObjectIdentifier),
    /// A log key in the deprecated raw PKCS#1 form (`PKCS1_RSA_PKCS1V5`).
    #[error("its key is a PKCS#1 RSAPublicKey, which is not supported")]
    Pkcs1Unsupported,
}

/// A public key that verifies signatures. Built only from a DER SubjectPublicKeyInfo.
#[derive(Clone, Debug)]
pub(crate) enum VerifierKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
    Rsa(rsa::RsaPublicKey),
}

impl VerifierKey {
    /// Reads a DER SubjectPublicKeyInfo (RFC 5280 §4.1.2.7). Refuses, naming it, any key
    /// that is not ECDSA P-256/P-384, Ed25519 or RSA.
    pub(crate) fn from_spki_der(der: &[u8]) -> Result<VerifierKey, KeyError> {
        let spki =
            SubjectPublicKeyInfoRef::try_from(der).map_err(|e| KeyError::NotSpki(e.to_string()))?;
        let bits = || {
            spki.subject_public_key
                .as_bytes()
                .ok_or(KeyError::UnusedBits)
        };
        match spki.algorithm.oid {
            rfc5912::ID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters_oid()
                    .map_err(|_| KeyError::NoNamedCurve)?;
                match curve {
                    rfc5912::SECP_256_R_1 => p256::ecdsa::VerifyingKey::from_sec1_bytes(bits()?)
                        .map(VerifierKey::P256)
                        .map_err(|_| KeyError::NotOnCurve("P-256")),
                    rfc5912::SECP_384_R_1 => p384::ecdsa::VerifyingKey::from_sec1_bytes(bits()?)
                        .map(VerifierKey::P384)
                        .map_err(|_| KeyError::NotOnCurve("P-384")),
                    other => Err(KeyError::CurveUnsupported(other)),
                }
            }
            rfc8410::ID_ED_25519 => {
                let bytes: [u8; 32] = bits()?.try_into().map_err(|_| KeyError::Ed25519Length)?;
                ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                    .map(VerifierKey::Ed25519)
                    .map_err(|_| KeyError::Ed25519Invalid)
            }
            rfc5912::RSA_ENCRYPTION => rsa::RsaPublicKey::try_from(spki)
                .map(VerifierKey::Rsa)
                .map_err(|e| KeyError::RsaInvalid(e.to_string())),
            other => Err(KeyError::AlgorithmUnsupported(other)),
        }
    }

    /// The hash Sigstore pairs with this key for messages and DSSE (`PKIX_ECDSA_P256_SHA_256`,
    /// `PKIX_ECDSA_P384_SHA_384`, `PKIX_RSA_PKCS1V15_*_SHA256`); `None` for Ed25519, which
    /// signs the message itself.
    pub(crate) fn default_hash(&self) -> Option<HashAlgorithm> {
        match self {
            VerifierKey::P256(_) | VerifierKey::Rsa(_) => Some(HashAlgorithm::Sha256),
            VerifierKey::P384(_) => Some(HashAlgorithm::Sha384),
            VerifierKey::Ed25519(_) => None,
        }
    }

    /// Whether `signature` verifies over `message` with this key's default algorithm: ECDSA
    /// (ASN.1 DER signature) or RSA PKCS#1 v1.5 over the key's default hash, or Ed25519.
    pub(crate) fn verifies_message(&self, message: &[u8], signature: &[u8]) -> bool {
        match self.default_hash() {
            Some(hash) => self.verifies_prehash(&hash.digest(message), hash, signature),
            None => self.verifies_with(SignatureAlgorithm::Ed25519, message, signature),
        }
    }

    /// Whether `signature` verifies with `algorithm` over `message`.
    pub(crate) fn verifies_with(
        &self,
        algorithm: SignatureAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> bool {
        match (algorithm, self) {
            (SignatureAlgorithm::Ed25519, VerifierKey::Ed25519(key)) => {
                ed25519_dalek::Signature::from_slice(signature)
                    .is_ok_and(|sig| key.verify_strict(message, &sig).is_ok())
            }
            (SignatureAlgorithm::Ecdsa(hash), VerifierKey::P256(_) | VerifierKey::P384(_))
            | (SignatureAlgorithm::RsaPkcs1(hash), VerifierKey::Rsa(_)) => {
                self.verifies_prehash(&hash.digest(message), hash, signature)
            }
            _ => false,
        }
    }

    /// Whether `signature` verifies over the already-hashed `digest` (made with `hash`):
    /// ECDSA with an ASN.1 DER signature, or RSA PKCS#1 v1.5. Ed25519 signs messages, not
    /// digests, so it never verifies here.
    pub(crate) fn verifies_prehash(
        &self,
        digest: &[u8],
        hash: HashAlgorithm,
        signature: &[u8],
    ) -> bool {
        match self {
            VerifierKey::P256(key) => p256::ecdsa::Signature::from_der(signature)
                .is_ok_and(|sig| key.verify_prehash(digest, &sig).is_ok()),
            VerifierKey::P384(key) => p384::ecdsa::Signature::from_der(signature)
                .is_ok_and(|sig| key.verify_prehash(digest, &sig).is_ok()),
            VerifierKey::Rsa(key) => {
                let scheme = match hash {
                    HashAlgorithm::Sha256 => rsa::Pkcs1v15Sign::new::<Sha256>(),
                    HashAlgorithm::Sha384 => rsa::Pkcs1v15Sign::new::<Sha384>(),
                    HashAlgorithm::Sha512 => rsa::Pkcs1v15Sign::new::<Sha512>(),
                };
                key.verify(scheme, digest, signature).is_ok()
            }
            VerifierKey::Ed25519(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer as _;
    use p256::pkcs8::EncodePublicKey as _;

    #[test]
    fn p256_message_signature_verifies_and_tampering_fails() {
        let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let spki = key.verifying_key().to_public_key_der().unwrap();
        let verifier = VerifierKey::from_spki_der(spki.as_bytes()).unwrap();
        let signature: p256::ecdsa::Signature = key.sign(b"message");
        let der = signature.to_der();
        assert!(verifier.verifies_message(b"message", der.as_bytes()));
        assert!(!verifier.verifies_message(b"massage", der.as_bytes()));
        assert!(!verifier.verifies_with(SignatureAlgorithm::Ed25519, b"message", der.as_bytes()));
    }

    #[test]
    fn unsupported_keys_are_named() {
        assert!(VerifierKey::from_spki_der(b"garbage")
            .unwrap_err()
            .to_string()
            .starts_with("it is not a SubjectPublicKeyInfo"));
    }
}
