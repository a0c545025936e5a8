//! Signature algorithms and the public keys of an issuer (a JWKS, RFC 7517), and the one
//! place a JWS signature is checked.
//!
//! Only asymmetric algorithms exist here: an HMAC algorithm cannot be named, so no token
//! can make an issuer's public key into an HMAC secret (the RS256→HS256 key confusion), and
//! `none` is not an algorithm at all. A key verifies only the algorithms its type, curve,
//! `alg`, `use` and `key_ops` fit (RFC 7517 §4.2-4.4, RFC 7518 §3). RSA keys are at least
//! 2048 bits (ring's `RSA_*_2048_8192_*` refuse smaller moduli and odd exponents checks).
//!
//! # Trust
//! Trusts the JWKS the tenant registered, after checking that it holds only public keys.
//! A JWKS with private or symmetric key material is refused whole: a tenant who pasted a
//! private key must learn it, not have it stored.

use std::collections::HashSet;

use ring::signature::{self, UnparsedPublicKey};
use serde_json::{Map, Value};

use crate::jose::b64;
use crate::{AuthnError, ConfigError};

/// Most keys in one JWKS.
pub const MAX_KEYS: usize = 64;

/// A JWS signature algorithm this platform verifies (RFC 7518 §3.1, RFC 8037 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
    EdDSA,
}

impl Algorithm {
    pub const ALL: [Algorithm; 10] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::ES512,
        Algorithm::EdDSA,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::ES512 => "ES512",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The algorithm named exactly `name` (JOSE names are case-sensitive, RFC 7515 §4.1.1).
    pub fn parse(name: &str) -> Result<Algorithm, ConfigError> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == name)
            .ok_or_else(|| ConfigError::UnsupportedAlgorithm {
                alg: name.escape_debug().to_string(),
            })
    }

    fn fits(self, key: &KeyMaterial) -> bool {
        match (self, key) {
            (
                Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512,
                KeyMaterial::Rsa { .. },
            ) => true,
            (Algorithm::ES256, KeyMaterial::Ec { curve, .. }) => *curve == Curve::P256,
            (Algorithm::ES384, KeyMaterial::Ec { curve, .. }) => *curve == Curve::P384,
            (Algorithm::ES512, KeyMaterial::Ec { curve, .. }) => *curve == Curve::P521,
            (Algorithm::EdDSA, KeyMaterial::Ed25519(_)) => true,
            _ => false,
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
    P521,
}

#[derive(Clone, PartialEq, Eq)]
enum KeyMaterial {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// The uncompressed point `04 || x || y` (SEC 1 §2.3.3).
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
    Ed25519(Vec<u8>),
}

/// One public verification key of an issuer.
#[derive(Clone, PartialEq, Eq)]
pub struct Jwk {
    kid: Option<String>,
    alg: Option<Algorithm>,
    key: KeyMaterial,
}

impl std::fmt::Debug for Jwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kty = match self.key {
            KeyMaterial::Rsa { .. } => "RSA",
            KeyMaterial::Ec { .. } => "EC",
            KeyMaterial::Ed25519(_) => "OKP",
        };
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .field("kty", &kty)
            .field("alg", &self.alg)
            .finish()
    }
}

/// Members that only private or symmetric keys have (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC
/// 8037 §2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

impl Jwk {
    /// Parses one JWK. `Ok(None)`: a public key not meant for verifying signatures
    /// (`use` other than `sig`, or `key_ops` without `verify`), which a JWKS may carry
    /// beside its signing keys and which is left out.
    fn parse(v: &Value) -> Result<Option<Jwk>, String> {
        let Value::Object(m) = v else {
            return Err("not a JSON object".into());
        };
        if let Some(private) = PRIVATE_MEMBERS.iter().find(|k| m.contains_key(**k)) {
            return Err(format!(
                "has the private or symmetric member `{private}`; register public keys only"
            ));
        }
        let text = |name: &str| -> Result<Option<&str>, String> {
            match m.get(name) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(format!("`{name}` is not a string")),
            }
        };
        let bytes = |name: &str| -> Result<Vec<u8>, String> {
            let s = text(name)?.ok_or_else(|| format!("has no `{name}`"))?;
            b64(s).map_err(|_| format!("`{name}` is not canonical base64url"))
        };
        if let Some(u) = text("use")? {
            if u != "sig" {
                return Ok(None);
            }
        }
        if let Some(ops) = m.get("key_ops") {
            let Value::Array(ops) = ops else {
                return Err("`key_ops` is not an array".into());
            };
            if !ops.iter().any(|o| o == "verify") {
                return Ok(None);
            }
        }
        let alg = match text("alg")? {
            None => None,
            Some(a) => Some(Algorithm::parse(a).map_err(|e| e.to_string())?),
        };
        let key = match text("kty")? {
            Some("RSA") => {
                let n = bytes("n")?;
                let e = bytes("e")?;
                // Minimal big-endian (RFC 7518 §6.3.1.1): no leading zero octet.
                if n.first() == Some(&0) || e.first() == Some(&0) {
                    return Err("`n` or `e` has a leading zero octet".into());
                }
                if n.len() < 256 {
                    return Err(format!(
                        "RSA modulus of {} bits; at least 2048 are required",
                        n.len() * 8
                    ));
                }
                KeyMaterial::Rsa { n, e }
            }
            Some("EC") => {
                let (curve, len) = match text("crv")? {
                    Some("P-256") => (Curve::P256, 32),
                    Some("P-384") => (Curve::P384, 48),
                    // 521 bits in 66 octets (RFC 7518 §6.2.1.2: the full field width).
                    Some("P-521") => (Curve::P521, 66),
                    Some(other) => {
                        return Err(format!(
                            "curve `{}` is not supported (P-256, P-384, P-521)",
                            other.escape_debug()
                        ))
                    }
                    None => return Err("has no `crv`".into()),
                };
                let (x, y) = (bytes("x")?, bytes("y")?);
                if x.len() != len || y.len() != len {
                    return Err("`x` or `y` has the wrong length for its curve".into());
                }
                let mut point = Vec::with_capacity(1 + 2 * len);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                KeyMaterial::Ec { curve, point }
            }
            Some("OKP") => {
                if text("crv")? != Some("Ed25519") {
                    return Err("only the OKP curve `Ed25519` is supported".into());
                }
                let x = bytes("x")?;
                if x.len() != 32 {
                    return Err("`x` is not 32 bytes".into());
                }
                KeyMaterial::Ed25519(x)
            }
            Some("oct") => {
                return Err("symmetric (`oct`) keys are never accepted for verification".into())
            }
            Some(other) => {
                return Err(format!(
                    "key type `{}` is not supported (RSA, EC, OKP)",
                    other.escape_debug()
                ))
            }
            None => return Err("has no `kty`".into()),
        };
        let jwk = Jwk {
            kid: text("kid")?.map(str::to_owned),
            alg,
            key,
        };
        if let Some(alg) = alg {
            if !alg.fits(&jwk.key) {
                return Err(format!("`alg` {alg} does not fit the key's type or curve"));
            }
        }
        Ok(Some(jwk))
    }

    /// Whether this key may verify a signature made with `alg`.
    fn verifies(&self, alg: Algorithm) -> bool {
        alg.fits(&self.key) && self.alg.is_none_or(|a| a == alg)
    }

    /// Checks `signature` over `message` with this key and `alg`.
    fn check(&self, alg: Algorithm, message: &[u8], sig: &[u8]) -> Result<(), AuthnError> {
        let ok = match &self.key {
            KeyMaterial::Rsa { n, e } => {
                let params = match alg {
                    Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => {
                        return Err(AuthnError::KeyMismatch {
                            alg: alg.to_string(),
                        })
                    }
                };
                signature::RsaPublicKeyComponents { n, e }
                    .verify(params, message, sig)
                    .is_ok()
            }
            KeyMaterial::Ec {
                curve: Curve::P521,
                point,
            } => {
                if alg != Algorithm::ES512 {
                    return Err(AuthnError::KeyMismatch {
                        alg: alg.to_string(),
                    });
                }
                verify_es512(point, message, sig)
            }
            KeyMaterial::Ec { point, .. } => {
                // JWS ECDSA signatures are the fixed-width `r || s` (RFC 7518 §3.4).
                let params = match alg {
                    Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
                    Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
                    _ => {
                        return Err(AuthnError::KeyMismatch {
                            alg: alg.to_string(),
                        })
                    }
                };
                UnparsedPublicKey::new(params, point)
                    .verify(message, sig)
                    .is_ok()
            }
            KeyMaterial::Ed25519(x) => UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(message, sig)
                .is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(AuthnError::BadSignature)
        }
    }
}

/// ES512: ECDSA on P-521 with SHA-512 (RFC 7518 §3.4), `sig` the fixed-width `r || s` of
/// 2 × 66 octets. The one algorithm not verified with ring, which has no P-521: RustCrypto's
/// `p521` does it. `from_sec1_bytes` refuses a point not on the curve; `from_slice` refuses
/// a signature of another length and `r` or `s` of zero or not below the group order.
fn verify_es512(point: &[u8], message: &[u8], sig: &[u8]) -> bool {
    use p521::ecdsa::signature::Verifier as _;
    let Ok(key) = p521::ecdsa::VerifyingKey::from_sec1_bytes(point) else {
        return false;
    };
    let Ok(sig) = p521::ecdsa::Signature::from_slice(sig) else {
        return false;
    };
    key.verify(message, &sig).is_ok()
}

/// An issuer's verification keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwks {
    keys: Vec<Jwk>,
}

impl Jwks {
    /// Parses a JWKS document (`{"keys": [...]}`): public signing keys only, unique `kid`s,
    /// at least one usable key.
    pub fn parse(text: &[u8]) -> Result<Jwks, ConfigError> {
        let doc: Map<String, Value> =
            crate::jose::object(text).map_err(|e| ConfigError::JwksShape {
                problem: e.reason().to_owned(),
            })?;
        let Some(Value::Array(raw)) = doc.get("keys") else {
            return Err(ConfigError::JwksShape {
                problem: "no `keys` array".into(),
            });
        };
        if raw.len() > MAX_KEYS {
            return Err(ConfigError::TooManyKeys {
                count: raw.len(),
                max: MAX_KEYS,
            });
        }
        let mut keys = Vec::new();
        let mut kids = HashSet::new();
        for (index, v) in raw.iter().enumerate() {
            // A kid is unique among all keys, signing or not: two keys under one name
            // make "the key for this kid" ambiguous.
            if let Some(Value::String(kid)) = v.get("kid") {
                if !kids.insert(kid.clone()) {
                    return Err(ConfigError::DuplicateKid {
                        kid: kid.escape_debug().to_string(),
                    });
                }
            }
            if let Some(key) =
                Jwk::parse(v).map_err(|problem| ConfigError::Key { index, problem })?
            {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err(ConfigError::NoUsableKey);
        }
        Ok(Jwks { keys })
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether the set holds a key with `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// Verifies `sig` over `message` made with `alg`, by the key `kid` names; without a
    /// `kid`, by the set's only key that can verify `alg` (several: ambiguous, refused).
    pub(crate) fn verify(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        message: &[u8],
        sig: &[u8],
    ) -> Result<(), AuthnError> {
        let key = match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .ok_or(AuthnError::UnknownKey)?,
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.verifies(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(k), None) => k,
                    _ => return Err(AuthnError::UnknownKey),
                }
            }
        };
        if !key.verifies(alg) {
            return Err(AuthnError::KeyMismatch {
                alg: alg.to_string(),
            });
        }
        key.check(alg, message, sig)
    }
}
