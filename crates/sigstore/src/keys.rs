//! ECDSA P-256 keys: [`SigningKey`] (secret, for `zerofn sign`), [`PublicKey`] (a tenant's
//! trusted key) and [`KeyId`] (the sha256 of a public key's DER SubjectPublicKeyInfo, the
//! value cosign puts in a bundle's `publicKey.hint`).
//!
//! Only P-256 is accepted: it is what `cosign generate-key-pair` makes and what Sigstore's
//! key-based bundles use (`PKIX_ECDSA_P256_SHA_256` in `sigstore_common.proto`). Other key
//! types are refused with [`AdmissionError::KeyAlgorithmUnsupported`] naming the algorithm.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use p256::ecdsa::signature::hazmat::{PrehashSigner as _, PrehashVerifier as _};
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::der::pem;
use p256::pkcs8::der::SecretDocument;
use p256::pkcs8::{
    AlgorithmIdentifierRef, AssociatedOid as _, DecodePrivateKey as _, EncodePrivateKey as _,
    ObjectIdentifier, PrivateKeyInfo, SubjectPublicKeyInfoRef,
};

use crate::error::AdmissionError;
use zerofn_types::excerpt;
use zerofn_types::{parse_sha256_hex, Digest};

/// id-ecPublicKey, RFC 5480 §2.1.1.
const ID_EC_PUBLIC_KEY: ObjectIdentifier = p256::elliptic_curve::ALGORITHM_OID;
/// secp256r1 (prime256v1, P-256), RFC 5480 §2.1.1.1.
const SECP256R1: ObjectIdentifier = p256::NistP256::OID;

/// The DER SubjectPublicKeyInfo header of every P-256 key with an uncompressed point
/// (RFC 5480 §2): `SEQUENCE { SEQUENCE { id-ecPublicKey, secp256r1 }, BIT STRING (66 bytes) }`.
/// Followed by the 65-byte SEC1 point it is the exact DER that Go's
/// `x509.MarshalPKIXPublicKey` (cosign) and OpenSSL write, so key ids match theirs. A test
/// checks it against the `spki` encoder. Kept as a constant so building a [`PublicKey`] from
/// a valid point cannot fail.
const P256_SPKI_HEADER: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

const PUBLIC_KEY_LABEL: &str = "PUBLIC KEY";
const PKCS8_LABEL: &str = "PRIVATE KEY";
const SEC1_LABEL: &str = "EC PRIVATE KEY";

/// An ECDSA P-256 private key. `Debug` prints `SigningKey(..)`; there is no `Display`,
/// `Serialize` or `Clone`, and the scalar is zeroed on drop (by `p256`).
pub struct SigningKey {
    inner: p256::ecdsa::SigningKey,
}

impl SigningKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> SigningKey {
        SigningKey {
            inner: p256::ecdsa::SigningKey::random(&mut rand_core::OsRng),
        }
    }

    /// Reads an unencrypted private key: PKCS#8 (`-----BEGIN PRIVATE KEY-----`, what
    /// `openssl genpkey` and [`SigningKey::to_pkcs8_pem`] write) or SEC1
    /// (`-----BEGIN EC PRIVATE KEY-----`, what `openssl ecparam -genkey` writes). The curve
    /// must be P-256. Errors never quote the key.
    pub fn from_pem(pem: &str) -> Result<SigningKey, AdmissionError> {
        let invalid = |reason: String| AdmissionError::SigningKeyInvalid { reason };
        let label = pem::decode_label(pem.as_bytes())
            .map_err(|e| invalid(format!("it is not a PEM block ({e})")))?;
        match label {
            PKCS8_LABEL => Self::from_pkcs8_pem(pem),
            SEC1_LABEL => Self::from_sec1_pem(pem),
            label if label.contains("ENCRYPTED") => Err(invalid(format!(
                "the `{}` PEM block is encrypted; decrypt it first",
                excerpt(label)
            ))),
            label => Err(invalid(format!(
                "the PEM block is `{}`, not a private key",
                excerpt(label)
            ))),
        }
    }

    fn from_pkcs8_pem(pem: &str) -> Result<SigningKey, AdmissionError> {
        let invalid = |reason: String| AdmissionError::SigningKeyInvalid { reason };
        // SecretDocument zeroes the decoded DER when dropped.
        let (_, document) = SecretDocument::from_pem(pem)
            .map_err(|e| invalid(format!("the PEM block does not decode ({e})")))?;
        let info = PrivateKeyInfo::try_from(document.as_bytes())
            .map_err(|e| invalid(format!("it is not a PKCS#8 PrivateKeyInfo ({e})")))?;
        require_p256(info.algorithm)?;
        let inner = p256::ecdsa::SigningKey::from_pkcs8_der(document.as_bytes())
            .map_err(|e| invalid(format!("it is not a valid P-256 private key ({e})")))?;
        Ok(SigningKey { inner })
    }

    fn from_sec1_pem(pem: &str) -> Result<SigningKey, AdmissionError> {
        let invalid = |reason: String| AdmissionError::SigningKeyInvalid { reason };
        let (_, document) = SecretDocument::from_pem(pem)
            .map_err(|e| invalid(format!("the PEM block does not decode ({e})")))?;
        let key = sec1::EcPrivateKey::try_from(document.as_bytes())
            .map_err(|e| invalid(format!("it is not a SEC1 ECPrivateKey ({e})")))?;
        // RFC 5915 §3 lets `parameters` be omitted "if known by other means"; when present it
        // must name P-256 (p256 itself does not check it, only the public key if present).
        if let Some(curve) = key.parameters.and_then(|p| p.named_curve()) {
            if curve != SECP256R1 {
                return Err(AdmissionError::KeyAlgorithmUnsupported {
                    algorithm: format!("ECDSA {}", curve_name(curve)),
                });
            }
        }
        let secret = p256::SecretKey::try_from(key)
            .map_err(|e| invalid(format!("it is not a valid P-256 private key ({e})")))?;
        Ok(SigningKey {
            inner: p256::ecdsa::SigningKey::from(secret),
        })
    }

    /// The key as PKCS#8 `PRIVATE KEY` PEM with LF line endings, zeroed when dropped.
    pub fn to_pkcs8_pem(&self) -> Result<zeroize::Zeroizing<String>, AdmissionError> {
        self.inner
            .to_pkcs8_pem(pem::LineEnding::LF)
            .map_err(|_| AdmissionError::KeyEncodingFailed)
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_verifying_key(*self.inner.verifying_key())
    }

    /// ECDSA P-256 over a sha256 digest (RFC 6979 deterministic nonce), the signature
    /// `cosign sign-blob` makes over the same artifact.
    pub(crate) fn sign_digest(&self, digest: &Digest) -> Result<Signature, AdmissionError> {
        self.inner
            .sign_prehash(digest.as_bytes())
            .map_err(|e| AdmissionError::SigningFailed {
                reason: e.to_string(),
            })
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// An ECDSA P-256 public key, with its [`KeyId`] computed once.
#[derive(Clone)]
pub struct PublicKey {
    key: VerifyingKey,
    // INVARIANT: `spki_sha256` is the sha256 of `P256_SPKI_HEADER ++ key (uncompressed)` and
    // `key_id` is its `sha256:<hex>` spelling.
    spki_sha256: Digest,
    key_id: KeyId,
}

impl PublicKey {
    /// Reads a `-----BEGIN PUBLIC KEY-----` (SubjectPublicKeyInfo, RFC 5280 §4.1.2.7) PEM
    /// block, as written by `cosign generate-key-pair` (`cosign.pub`) and
    /// `openssl pkey -pubout`. Keys that are not P-256 are refused naming their algorithm.
    pub fn from_pem(pem: &str) -> Result<PublicKey, AdmissionError> {
        let invalid = |reason: String| AdmissionError::PublicKeyInvalid { reason };
        let label = pem::decode_label(pem.as_bytes())
            .map_err(|e| invalid(format!("it is not a PEM block ({e})")))?;
        if label != PUBLIC_KEY_LABEL {
            return Err(invalid(format!(
                "the PEM block is `{}`, not `{PUBLIC_KEY_LABEL}`",
                excerpt(label)
            )));
        }
        let (_, der) = pem::decode_vec(pem.as_bytes())
            .map_err(|e| invalid(format!("the PEM block does not decode ({e})")))?;
        let spki = SubjectPublicKeyInfoRef::try_from(der.as_slice())
            .map_err(|e| invalid(format!("it is not a SubjectPublicKeyInfo ({e})")))?;
        require_p256(spki.algorithm)?;
        let point = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| invalid("the key bit string has unused bits".to_owned()))?;
        let key = VerifyingKey::from_sec1_bytes(point)
            .map_err(|_| invalid("the key is not a point on the P-256 curve".to_owned()))?;
        Ok(PublicKey::from_verifying_key(key))
    }

    /// The key as `PUBLIC KEY` PEM with LF line endings (the same bytes as
    /// `openssl pkey -pubout` for this key).
    pub fn to_pem(&self) -> String {
        let base64 = base64::engine::general_purpose::STANDARD.encode(self.spki_der());
        let mut pem = format!("-----BEGIN {PUBLIC_KEY_LABEL}-----\n");
        // RFC 7468 §2: base64 lines of 64 characters. Base64 text is ASCII, so each chunk is
        // valid UTF-8 and `from_utf8_lossy` never replaces anything.
        for line in base64.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str(&format!("-----END {PUBLIC_KEY_LABEL}-----\n"));
        pem
    }

    /// `sha256:<hex>` of the DER SubjectPublicKeyInfo.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    fn from_verifying_key(key: VerifyingKey) -> PublicKey {
        let der = spki_der_of(&key);
        let spki_sha256 = Digest::of(&der);
        PublicKey {
            key,
            spki_sha256,
            key_id: KeyId(spki_sha256.to_string()),
        }
    }

    fn spki_der(&self) -> Vec<u8> {
        spki_der_of(&self.key)
    }

    /// Whether a bundle's `publicKey.hint` names this key. cosign writes the standard base64
    /// of the sha256 of the DER SubjectPublicKeyInfo; the hint is unauthenticated, so it only
    /// chooses which key to try.
    pub(crate) fn matches_hint(&self, hint: &str) -> bool {
        crate::encoding::decode_base64(hint)
            .is_ok_and(|bytes| bytes.as_slice() == self.spki_sha256.as_bytes().as_slice())
    }

    /// The hint cosign writes for this key.
    pub(crate) fn hint(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.spki_sha256.as_bytes())
    }

    /// Whether `signature` (ECDSA P-256) verifies over the sha256 `digest` of a message.
    pub(crate) fn verifies(&self, digest: &Digest, signature: &Signature) -> bool {
        self.key
            .verify_prehash(digest.as_bytes(), signature)
            .is_ok()
    }
}

fn spki_der_of(key: &VerifyingKey) -> Vec<u8> {
    let point = key.to_encoded_point(false);
    let mut der = Vec::with_capacity(P256_SPKI_HEADER.len() + point.len());
    der.extend_from_slice(&P256_SPKI_HEADER);
    der.extend_from_slice(point.as_bytes());
    der
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id)
    }
}

/// Two keys are equal when their key ids (hence their SubjectPublicKeyInfo) are.
impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.key_id == other.key_id
    }
}

impl Eq for PublicKey {}

/// Refuses every algorithm identifier except id-ecPublicKey with the named curve P-256.
fn require_p256(algorithm: AlgorithmIdentifierRef<'_>) -> Result<(), AdmissionError> {
    if algorithm.oid != ID_EC_PUBLIC_KEY {
        return Err(AdmissionError::KeyAlgorithmUnsupported {
            algorithm: algorithm_name(algorithm.oid),
        });
    }
    let curve =
        algorithm
            .parameters_oid()
            .map_err(|_| AdmissionError::KeyAlgorithmUnsupported {
                algorithm: "ECDSA with explicit (unnamed) curve parameters".to_owned(),
            })?;
    if curve != SECP256R1 {
        return Err(AdmissionError::KeyAlgorithmUnsupported {
            algorithm: format!("ECDSA {}", curve_name(curve)),
        });
    }
    Ok(())
}

fn algorithm_name(oid: ObjectIdentifier) -> String {
    match oid.to_string().as_str() {
        "1.2.840.113549.1.1.1" => "RSA".to_owned(),
        "1.2.840.113549.1.1.10" => "RSA-PSS".to_owned(),
        "1.2.840.10040.4.1" => "DSA".to_owned(),
        "1.3.101.110" => "X25519".to_owned(),
        "1.3.101.111" => "X448".to_owned(),
        "1.3.101.112" => "Ed25519".to_owned(),
        "1.3.101.113" => "Ed448".to_owned(),
        other => format!("OID {other}"),
    }
}

fn curve_name(oid: ObjectIdentifier) -> String {
    match oid.to_string().as_str() {
        "1.2.840.10045.3.1.7" => "P-256".to_owned(),
        "1.3.132.0.34" => "P-384".to_owned(),
        "1.3.132.0.35" => "P-521".to_owned(),
        "1.3.132.0.10" => "secp256k1".to_owned(),
        other => format!("curve {other}"),
    }
}

/// The id of a public key: `sha256:<hex>` of its DER SubjectPublicKeyInfo (uncompressed
/// point). The same 32 bytes, base64-encoded, are the `publicKey.hint` cosign writes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct KeyId(String);

impl KeyId {
    /// The id of any public key, from its DER SubjectPublicKeyInfo.
    pub(crate) fn of_spki_der(der: &[u8]) -> KeyId {
        KeyId(Digest::of(der).to_string())
    }

    /// The `sha256:<hex>` text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses exactly `sha256:` followed by 64 lowercase hex digits.
    pub fn parse(s: &str) -> Result<KeyId, AdmissionError> {
        match parse_sha256_hex(s) {
            Some(_) => Ok(KeyId(s.to_owned())),
            None => Err(AdmissionError::KeyIdInvalid { input: excerpt(s) }),
        }
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for KeyId {
    type Err = AdmissionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyId::parse(s)
    }
}

impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        KeyId::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::pkcs8::EncodePublicKey as _;

    fn testdata(path: &str) -> String {
        let full = zerofn_testkit::testdata(path).display().to_string();
        std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {full}: {e}"))
    }

    #[test]
    fn spki_header_matches_the_spki_encoder() {
        let key = SigningKey::generate();
        let public = key.public_key();
        let encoded = key.inner.verifying_key().to_public_key_der().unwrap();
        assert_eq!(public.spki_der(), encoded.as_bytes());
        let pem = key
            .inner
            .verifying_key()
            .to_public_key_pem(pem::LineEnding::LF)
            .unwrap();
        assert_eq!(public.to_pem(), pem);
    }

    #[test]
    fn public_key_pem_round_trips() {
        let public = SigningKey::generate().public_key();
        let back = PublicKey::from_pem(&public.to_pem()).unwrap();
        assert_eq!(back, public);
        assert_eq!(back.key_id(), public.key_id());
        assert!(KeyId::parse(public.key_id().as_str()).is_ok());
        assert_eq!(
            format!("{public:?}"),
            format!("PublicKey({})", public.key_id())
        );
    }

    #[test]
    fn signing_key_pkcs8_round_trips_and_debug_redacts() {
        let key = SigningKey::generate();
        let pem = key.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let back = SigningKey::from_pem(&pem).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        assert_eq!(format!("{key:?}"), "SigningKey(..)");
    }

    #[test]
    fn signing_key_reads_sec1() {
        // The SEC1 form of a generated key, as `openssl ec` writes it.
        use p256::elliptic_curve::SecretKey;
        let key = SigningKey::generate();
        let secret: SecretKey<p256::NistP256> = key.inner.clone().into();
        let sec1 = secret.to_sec1_pem(pem::LineEnding::LF).unwrap();
        assert!(sec1.starts_with("-----BEGIN EC PRIVATE KEY-----"));
        let back = SigningKey::from_pem(&sec1).unwrap();
        assert_eq!(back.public_key(), key.public_key());
    }

    #[test]
    fn signing_key_reads_sec1_with_a_named_curve() {
        // `openssl ecparam -name prime256v1 -genkey` writes `parameters` (the curve OID); a
        // P-256 key with it is read, and the same scalar labelled secp256k1 is refused.
        use p256::pkcs8::der::Encode as _;
        let key = SigningKey::generate();
        let scalar = key.inner.to_bytes();
        let point = key.inner.verifying_key().to_encoded_point(false);
        for (curve, expected) in [
            (SECP256R1, None),
            (
                ObjectIdentifier::new_unwrap("1.3.132.0.10"),
                Some("ECDSA secp256k1"),
            ),
        ] {
            let der = sec1::EcPrivateKey {
                private_key: &scalar,
                parameters: Some(sec1::EcParameters::NamedCurve(curve)),
                public_key: Some(point.as_bytes()),
            }
            .to_der()
            .unwrap();
            let pem = pem::encode_string(SEC1_LABEL, pem::LineEnding::LF, &der).unwrap();
            match (SigningKey::from_pem(&pem), expected) {
                (Ok(back), None) => assert_eq!(back.public_key(), key.public_key()),
                (Err(AdmissionError::KeyAlgorithmUnsupported { algorithm }), Some(name)) => {
                    assert_eq!(algorithm, name)
                }
                (other, _) => panic!("{curve}: {other:?}"),
            }
        }
    }

    #[test]
    fn conformance_key_id_matches_the_cosign_hint() {
        let public = PublicKey::from_pem(&testdata(
            "sigstore/conformance/bundle-verify/managed-key-happy-path/key.pub",
        ))
        .unwrap();
        // `verificationMaterial.publicKey.hint` of that case's bundle, written by cosign.
        let hint = "TLMsSDfG3ajPsWge+z/vX5T/zluXnmvbkTkwLIV68Tk=";
        assert_eq!(public.hint(), hint);
        assert!(public.matches_hint(hint));
        assert_eq!(
            public.key_id().as_str(),
            "sha256:4cb32c4837c6dda8cfb1681efb3fef5f94ffce5b979e6bdb9139302c857af139"
        );
        // Our PEM is byte-identical to the one cosign wrote.
        assert_eq!(
            public.to_pem(),
            testdata("sigstore/conformance/bundle-verify/managed-key-happy-path/key.pub")
        );
    }

    #[test]
    fn non_p256_public_keys_are_refused_naming_the_algorithm() {
        for (path, algorithm) in [
            ("jwt/jsonwebtoken-rs/ecdsa/public_jwtio.pem", "ECDSA P-384"),
            ("jwt/jsonwebtoken-rs/rsa/public_rsa_key_pkcs8.pem", "RSA"),
            (
                "jwt/jsonwebtoken-rs/eddsa/public_ed25519_key.pem",
                "Ed25519",
            ),
        ] {
            let err = PublicKey::from_pem(&testdata(path)).unwrap_err();
            assert!(
                matches!(&err, AdmissionError::KeyAlgorithmUnsupported { algorithm: a } if a == algorithm),
                "{path}: {err:?}"
            );
            assert_eq!(
                err.to_string(),
                format!("key algorithm `{algorithm}` is not supported; use an ECDSA P-256 (prime256v1) key")
            );
        }
    }

    #[test]
    fn malformed_public_keys_are_refused_with_a_reason() {
        let wrong =
            testdata("sigstore/conformance/bundle-verify/managed-key-wrong-key_fail/key.pub");
        let private = SigningKey::generate().to_pkcs8_pem().unwrap();
        let rsa_pkcs1 = testdata("jwt/jsonwebtoken-rs/rsa/public_rsa_key_pkcs1.pem");
        // A P-256 SubjectPublicKeyInfo whose point (x = y = 1) is not on the curve.
        let mut point = vec![0x04];
        point.extend_from_slice(&[0u8; 31]);
        point.push(1);
        point.extend_from_slice(&[0u8; 31]);
        point.push(1);
        let not_on_curve = pem::encode_string(
            PUBLIC_KEY_LABEL,
            pem::LineEnding::LF,
            &[P256_SPKI_HEADER.as_slice(), &point].concat(),
        )
        .unwrap();
        for (pem, reason) in [
            (
                wrong.as_str(),
                "the PEM block does not decode (PEM Base64 error: invalid Base64 encoding)",
            ),
            (
                not_on_curve.as_str(),
                "the key is not a point on the P-256 curve",
            ),
            (
                private.as_str(),
                "the PEM block is `PRIVATE KEY`, not `PUBLIC KEY`",
            ),
            (
                rsa_pkcs1.as_str(),
                "the PEM block is `RSA PUBLIC KEY`, not `PUBLIC KEY`",
            ),
            ("not pem", "it is not a PEM block"),
            ("", "it is not a PEM block"),
        ] {
            let err = PublicKey::from_pem(pem).unwrap_err();
            assert!(
                matches!(err, AdmissionError::PublicKeyInvalid { .. }),
                "{err:?}"
            );
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("public key is not usable: {reason}")),
                "{message}"
            );
            // A private key handed over by mistake is never echoed back.
            assert!(!message.contains("MI"), "{message}");
        }
    }

    #[test]
    fn non_p256_private_keys_are_refused_naming_the_algorithm() {
        for (path, algorithm) in [
            ("jwt/jsonwebtoken-rs/ecdsa/private_jwtio.pem", "ECDSA P-384"),
            ("jwt/jsonwebtoken-rs/rsa/private_rsa_key_pkcs8.pem", "RSA"),
            (
                "jwt/jsonwebtoken-rs/eddsa/private_ed25519_key.pem",
                "Ed25519",
            ),
        ] {
            let err = SigningKey::from_pem(&testdata(path)).unwrap_err();
            assert!(
                matches!(&err, AdmissionError::KeyAlgorithmUnsupported { algorithm: a } if a == algorithm),
                "{path}: {err:?}"
            );
        }
    }

    #[test]
    fn unreadable_private_keys_are_refused_without_echoing_them() {
        let rsa = testdata("jwt/jsonwebtoken-rs/rsa/private_jwtio.pem");
        let public = SigningKey::generate().public_key().to_pem();
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n";
        for (pem, reason) in [
            (
                rsa.as_str(),
                "the PEM block is `RSA PRIVATE KEY`, not a private key",
            ),
            (
                public.as_str(),
                "the PEM block is `PUBLIC KEY`, not a private key",
            ),
            (
                encrypted,
                "the `ENCRYPTED PRIVATE KEY` PEM block is encrypted; decrypt it first",
            ),
            ("garbage", "it is not a PEM block"),
        ] {
            let err = SigningKey::from_pem(pem).unwrap_err();
            assert!(
                matches!(err, AdmissionError::SigningKeyInvalid { .. }),
                "{err:?}"
            );
            let message = err.to_string();
            assert!(
                message.starts_with(&format!("signing key is not usable: {reason}")),
                "{message}"
            );
            assert!(!message.contains("MII"), "{message}");
        }
    }

    #[test]
    fn key_id_parse_refuses_other_spellings() {
        for input in [
            "sha256:ABC",
            "4cb32c4837c6dda8cfb1681efb3fef5f94ffce5b979e6bdb9139302c857af139",
            "",
        ] {
            let err = KeyId::parse(input).unwrap_err();
            assert!(
                matches!(err, AdmissionError::KeyIdInvalid { .. }),
                "{err:?}"
            );
        }
        let id: KeyId = serde_json::from_str(
            "\"sha256:4cb32c4837c6dda8cfb1681efb3fef5f94ffce5b979e6bdb9139302c857af139\"",
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"sha256:4cb32c4837c6dda8cfb1681efb3fef5f94ffce5b979e6bdb9139302c857af139\""
        );
    }
}
