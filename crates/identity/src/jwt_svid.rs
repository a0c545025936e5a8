//! JWT-SVIDs (<https://github.com/spiffe/spiffe/blob/main/standards/JWT-SVID.md>): ES256
//! JWS compact tokens, signed with `p256` (RFC 6979 deterministic nonces), verified with
//! `ring`, encoded with `serde_json` and `base64`.
//!
//! Why not the `jsonwebtoken` crate: since version 10 it needs a crypto backend chosen by
//! feature, and its `rust_crypto` backend brings the `rsa` crate (RUSTSEC-2023-0071, no
//! fixed release) and HMAC paths this verifier must refuse anyway; the other backend is
//! aws-lc. JWT-SVID §2 narrows JOSE to a protected header of `alg`, `kid` and `typ`, and
//! this platform signs with ES256 only, so the whole JWS layer is: split on `.`, strict
//! base64url, typed JSON, and one ECDSA signature check. There is no algorithm
//! negotiation to get wrong: the only code path that accepts a token is ES256 with a key
//! from this trust domain's bundle, looked up by `kid`. The Wycheproof JWS vectors and the
//! PayloadsAllTheThings tokens in `shared/testdata/jwt` are run against it in the tests.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::error::{excerpt, IdentityError};
use crate::revocation::RevocationList;
use crate::serial::SerialNumber;
use crate::spiffe_id::{SpiffeId, TrustDomain};

/// Longest token accepted for verification.
pub(crate) const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Most audience values in a token this CA issues (JWT-SVID §6.2 recommends one).
pub(crate) const MAX_AUDIENCES: usize = 16;
/// Longest audience value this CA issues.
const MAX_AUDIENCE_BYTES: usize = 256;
/// How far in the future `iat` may be before a token is refused (clock skew between nodes).
const IAT_LEEWAY_SECS: i64 = 30;
/// The only `alg` issued and accepted.
const ALG: &str = "ES256";

/// A JWT-SVID: a signed bearer token naming a SPIFFE ID, for the audiences it lists.
///
/// The token is a credential: it is held in a zeroizing buffer and `Debug` does not print
/// it. [`token`](Self::token) is for an `Authorization: Bearer` header and nothing else.
pub struct JwtSvid {
    token: Zeroizing<String>,
    spiffe_id: SpiffeId,
    audience: Vec<String>,
    serial: SerialNumber,
    issued_at: OffsetDateTime,
    expires_at: OffsetDateTime,
}

impl JwtSvid {
    /// The JWS compact serialization. Secret.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The `sub` claim.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.spiffe_id
    }

    /// The `aud` claim.
    pub fn audience(&self) -> &[String] {
        &self.audience
    }

    /// The `jti` claim, the id to revoke it by.
    pub fn serial(&self) -> &SerialNumber {
        &self.serial
    }

    /// The `jti` claim as lowercase hex.
    pub fn serial_hex(&self) -> &str {
        self.serial.as_str()
    }

    /// The `iat` claim.
    pub fn issued_at(&self) -> OffsetDateTime {
        self.issued_at
    }

    /// The `exp` claim.
    pub fn expires_at(&self) -> OffsetDateTime {
        self.expires_at
    }
}

impl fmt::Debug for JwtSvid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSvid")
            .field("spiffe_id", &self.spiffe_id)
            .field("audience", &self.audience)
            .field("serial", &self.serial)
            .field("expires_at", &self.expires_at)
            .field("token", &"(redacted)")
            .finish()
    }
}

/// A public key of the JWT bundle.
#[derive(Clone)]
pub(crate) struct JwtPublicKey {
    pub(crate) kid: String,
    pub(crate) key: VerifyingKey,
}

impl JwtPublicKey {
    pub(crate) fn new(key: VerifyingKey) -> JwtPublicKey {
        JwtPublicKey {
            kid: thumbprint(&key),
            key,
        }
    }

    /// The JWK of this key (RFC 7517/7518 §6.2), as the SPIFFE bundle format wants it:
    /// `use` is `jwt-svid` and `kid` is set.
    pub(crate) fn jwk(&self) -> serde_json::Value {
        let (x, y) = coordinates(&self.key);
        serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": x,
            "y": y,
            "kid": self.kid,
            "use": "jwt-svid",
            "alg": ALG,
        })
    }
}

/// The CA's JWT signing key and the keys it verifies with.
pub(crate) struct JwtKeys {
    signing: SigningKey,
    kid: String,
    public: Vec<JwtPublicKey>,
}

impl JwtKeys {
    pub(crate) fn new(signing: SigningKey) -> JwtKeys {
        let public = JwtPublicKey::new(*signing.verifying_key());
        JwtKeys {
            signing,
            kid: public.kid.clone(),
            public: vec![public],
        }
    }

    /// The key id tokens are signed under.
    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWKS of the verification keys.
    pub(crate) fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.public.iter().map(JwtPublicKey::jwk).collect::<Vec<_>>() })
    }

    pub(crate) fn public(&self) -> &[JwtPublicKey] {
        &self.public
    }

    /// Sign arbitrary bytes, for tests that forge tokens with this CA's real key.
    #[cfg(test)]
    pub(crate) fn sign_for_test(&self, input: &[u8]) -> Signature {
        self.signing.sign(input)
    }
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKeys")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url) of a P-256 key: a `kid` that anyone can
/// recompute from the key.
fn thumbprint(key: &VerifyingKey) -> String {
    let (x, y) = coordinates(key);
    // RFC 7638 §3.2: required members only, lexicographic order, no whitespace.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

fn coordinates(key: &VerifyingKey) -> (String, String) {
    let point = key.to_encoded_point(false);
    let encode =
        |c: Option<&p256::FieldBytes>| c.map(|c| URL_SAFE_NO_PAD.encode(c)).unwrap_or_default();
    (encode(point.x()), encode(point.y()))
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    kid: &'a str,
    typ: &'a str,
}

#[derive(Serialize)]
struct IssuedClaims<'a> {
    sub: &'a str,
    aud: &'a [String],
    exp: i64,
    iat: i64,
    jti: &'a str,
}

/// Issue a token for `id`, the caller having checked `id` and `ttl`.
pub(crate) fn issue(
    keys: &JwtKeys,
    id: &SpiffeId,
    audience: &[&str],
    ttl: Duration,
    now: OffsetDateTime,
) -> Result<JwtSvid, IdentityError> {
    let audience = check_audience(audience)?;
    let (serial, _) = SerialNumber::random();
    let iat = now.unix_timestamp();
    let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
    let exp = iat.saturating_add(ttl_secs);
    let encode_error = |e: serde_json::Error| IdentityError::KeyGeneration {
        reason: format!("could not encode the token: {e}"),
    };
    let header = serde_json::to_vec(&Header {
        alg: ALG,
        kid: keys.kid(),
        typ: "JWT",
    })
    .map_err(encode_error)?;
    let claims = serde_json::to_vec(&IssuedClaims {
        sub: id.as_str(),
        aud: &audience,
        exp,
        iat,
        jti: serial.as_str(),
    })
    .map_err(encode_error)?;
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature: Signature = keys.signing.sign(signing_input.as_bytes());
    let token = Zeroizing::new(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    ));
    let time_error = |_| IdentityError::TtlInvalid {
        requested_secs: ttl.as_secs(),
        max_secs: crate::ca::MAX_SVID_TTL.as_secs(),
    };
    Ok(JwtSvid {
        token,
        spiffe_id: id.clone(),
        audience,
        serial,
        issued_at: OffsetDateTime::from_unix_timestamp(iat).map_err(time_error)?,
        expires_at: OffsetDateTime::from_unix_timestamp(exp).map_err(time_error)?,
    })
}

fn check_audience(audience: &[&str]) -> Result<Vec<String>, IdentityError> {
    let invalid = |reason: String| IdentityError::AudienceInvalid { reason };
    if audience.is_empty() {
        return Err(invalid(
            "it is empty; name the service the token is for (JWT-SVID §3.2)".to_owned(),
        ));
    }
    if audience.len() > MAX_AUDIENCES {
        return Err(invalid(format!(
            "it has {} values, more than {MAX_AUDIENCES}; use one audience per token (JWT-SVID §6.2)",
            audience.len()
        )));
    }
    audience
        .iter()
        .map(|value| {
            if value.is_empty() || value.len() > MAX_AUDIENCE_BYTES || value.chars().any(char::is_control) {
                Err(invalid(format!(
                    "`{}` is not an audience; use 1 to {MAX_AUDIENCE_BYTES} bytes without control characters",
                    excerpt(value)
                )))
            } else {
                Ok((*value).to_owned())
            }
        })
        .collect()
}

/// The JOSE header as received. JWT-SVID §2: "Any header not described here, registered or
/// private, MUST NOT be included", so every other member lands in `other` and is refused.
/// Serde's derive refuses a repeated `alg`, `kid` or `typ`.
#[derive(Deserialize)]
struct ReceivedHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The claims as received; other claims are allowed (JWT-SVID §3) and ignored.
#[derive(Deserialize)]
struct ReceivedClaims {
    sub: String,
    aud: Audience,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
    jti: String,
}

fn malformed(reason: &str) -> IdentityError {
    IdentityError::JwtMalformed {
        reason: reason.to_owned(),
    }
}

/// Check the JWS layer of `token`: compact form, ES256 only, header members allowed by
/// JWT-SVID §2, a `kid` of `keys`, and a signature that verifies (RFC 7515 §5.2). Returns
/// the payload bytes.
pub(crate) fn verify_compact(token: &str, keys: &[JwtPublicKey]) -> Result<Vec<u8>, IdentityError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(malformed("it is longer than 8 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(
            "it is not a JWS compact serialization (three base64url parts separated by `.`)",
        ));
    };
    let header_json = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| malformed("its header is not unpadded base64url"))?;
    let header: ReceivedHeader = serde_json::from_slice(&header_json).map_err(|_| {
        malformed("its header is not a JSON object with a string `alg`, or repeats a member")
    })?;

    // The algorithm comes first: `none`, `HS256` and every other value stop here, before any
    // key is looked at, so no key can be used with an algorithm it was not made for.
    if header.alg != ALG {
        return Err(IdentityError::JwtAlgorithmRefused {
            alg: excerpt(&header.alg),
        });
    }
    if let Some(param) = header.other.keys().next() {
        return Err(IdentityError::JwtHeaderRefused {
            param: excerpt(param),
        });
    }
    if let Some(typ) = &header.typ {
        // JWT-SVID §2.3.
        if typ != "JWT" && typ != "JOSE" {
            return Err(IdentityError::JwtHeaderRefused {
                param: format!("typ={}", excerpt(typ)),
            });
        }
    }
    // JWT-SVID §2.2 makes `kid` optional; this CA always sets it, and requiring it means a
    // token is checked against exactly one key.
    let kid = header
        .kid
        .as_deref()
        .ok_or_else(|| IdentityError::JwtUnknownKey {
            kid: "(none)".to_owned(),
        })?;
    let key = keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or_else(|| IdentityError::JwtUnknownKey { kid: excerpt(kid) })?;

    let invalid_signature = || IdentityError::JwtSignatureInvalid {
        kid: key.kid.clone(),
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| invalid_signature())?;
    let signing_input_len = header_b64.len() + 1 + payload_b64.len();
    let signing_input = token
        .get(..signing_input_len)
        .ok_or_else(|| malformed("it is truncated"))?;
    // RFC 7518 §3.4: R and S as two 32-byte big-endian integers, nothing else; `ring`'s
    // FIXED format refuses any other length and r or s outside [1, n-1]. `ring` verifies
    // (about four times faster than `p256` here; tokens are checked per request).
    let point = key.key.to_encoded_point(false);
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_FIXED,
        point.as_bytes(),
    )
    .verify(signing_input.as_bytes(), &signature)
    .map_err(|_| invalid_signature())?;

    URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| malformed("its payload is not unpadded base64url"))
}

/// What verification needs besides the token.
pub(crate) struct JwtAnchor<'a> {
    pub(crate) trust_domain: &'a TrustDomain,
    pub(crate) keys: &'a [JwtPublicKey],
    pub(crate) revocations: &'a RevocationList,
}

/// Verify a JWT-SVID for `expected_audience` at `now` (JWT-SVID §4 and Appendix A).
pub(crate) fn verify(
    anchor: &JwtAnchor<'_>,
    token: &str,
    expected_audience: &str,
    now: OffsetDateTime,
) -> Result<SpiffeId, IdentityError> {
    let payload = verify_compact(token, anchor.keys)?;
    let claims: ReceivedClaims = serde_json::from_slice(&payload).map_err(|_| {
        malformed("its claims are not a JSON object with string `sub` and `jti`, `aud` and an integer `exp`")
    })?;
    let id = SpiffeId::parse(&claims.sub)?;
    if !id.is_member_of(anchor.trust_domain) {
        return Err(IdentityError::ForeignTrustDomain {
            id,
            trust_domain: anchor.trust_domain.clone(),
        });
    }
    if !id.is_workload() {
        return Err(IdentityError::NotAWorkloadId { id });
    }
    // RFC 7519 §4.1.4: the current time must be before `exp`. No leeway: the verifier and the
    // issuer are the same platform.
    let now_secs = now.unix_timestamp();
    if now_secs >= claims.exp {
        return Err(IdentityError::JwtExpired {
            id,
            exp: claims.exp,
        });
    }
    if let Some(iat) = claims.iat {
        if iat > now_secs.saturating_add(IAT_LEEWAY_SECS) {
            return Err(IdentityError::JwtIssuedInFuture { id, iat });
        }
    }
    // JWT-SVID §3.2: refuse unless the validator's audience is one of the values.
    let audience_matches = match &claims.aud {
        Audience::One(value) => value == expected_audience,
        Audience::Many(values) => values.iter().any(|value| value == expected_audience),
    };
    if expected_audience.is_empty() || !audience_matches {
        return Err(IdentityError::JwtAudienceMismatch {
            id,
            expected: excerpt(expected_audience),
        });
    }
    let serial = SerialNumber::parse(&claims.jti)
        .map_err(|_| malformed("its `jti` is not a serial number"))?;
    if anchor.revocations.is_revoked(&serial) {
        return Err(IdentityError::SvidRevoked { serial, id });
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn load_json(path: &std::path::Path) -> Value {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap()
    }

    fn b64(field: &Value) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(field.as_str().unwrap()).unwrap()
    }

    /// What a JWKS consumer would import from a Wycheproof JWK as an ES256 verification
    /// key: EC P-256, `alg` absent or ES256, `use` absent or `sig`, `key_ops` absent or
    /// with `verify`. The verifier itself never imports JWKs (its keys are its own), so
    /// this policy lives in the test; it is what the `rejectWrongUse` and
    /// `rejectWrongKeyOps` vectors exercise.
    fn import_es256(jwk: &Value) -> Option<JwtPublicKey> {
        let str_of = |name: &str| jwk.get(name).and_then(Value::as_str);
        if str_of("kty") != Some("EC") || str_of("crv") != Some("P-256") {
            return None;
        }
        if !matches!(str_of("alg"), None | Some("ES256"))
            || !matches!(str_of("use"), None | Some("sig"))
        {
            return None;
        }
        if let Some(ops) = jwk.get("key_ops").and_then(Value::as_array) {
            if !ops.iter().any(|op| op == "verify") {
                return None;
            }
        }
        let coordinate = |name: &str| -> Option<p256::FieldBytes> {
            let bytes: [u8; 32] = b64(&jwk[name]).try_into().ok()?;
            Some(bytes.into())
        };
        let point = p256::EncodedPoint::from_affine_coordinates(
            &coordinate("x")?,
            &coordinate("y")?,
            false,
        );
        Some(JwtPublicKey {
            kid: str_of("kid")?.to_owned(),
            key: VerifyingKey::from_encoded_point(&point).ok()?,
        })
    }

    #[test]
    fn wycheproof_jws_vectors() {
        let mut checked = 0;
        let mut accepted = Vec::new();
        for file in ["json_web_signature_test.json", "json_web_crypto_test.json"] {
            let suite = load_json(&zerofn_testkit::testdata(&format!("jwt/wycheproof/{file}")));
            for group in suite["testGroups"].as_array().unwrap() {
                let keys: Vec<JwtPublicKey> = group
                    .get("public")
                    .or_else(|| group.get("private"))
                    .and_then(import_es256)
                    .into_iter()
                    .collect();
                for test in group["tests"].as_array().unwrap() {
                    let id = test["tcId"].as_u64().unwrap();
                    // A JSON-serialised JWS comes as an object: present its JSON text.
                    let token = match test.get("jws") {
                        Some(Value::String(compact)) => compact.clone(),
                        Some(json) => json.to_string(),
                        None => continue, // JWE vectors: not a signature
                    };
                    let valid = test["result"] == "valid";
                    let outcome = verify_compact(&token, &keys);
                    // Only ES256 with an imported P-256 signing key may pass; a vector that
                    // is valid for HS256, RS256, PS256 or ES512 must be refused here.
                    let expect_ok = valid && !keys.is_empty();
                    assert_eq!(
                        outcome.is_ok(),
                        expect_ok,
                        "{file} tcId {id} ({}): {:?}",
                        test["comment"],
                        outcome.as_ref().err().map(ToString::to_string)
                    );
                    if let Ok(payload) = outcome {
                        assert_eq!(payload, b"foo");
                        accepted.push(id);
                    }
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 401 + 49, "every JWS vector of both files ran");
        assert_eq!(
            accepted,
            vec![18, 378, 18],
            "the ES256 valid vectors, including high-S 378"
        );
    }

    #[test]
    fn wycheproof_attacks_fail_for_the_right_reason() {
        let suite = load_json(&zerofn_testkit::testdata(
            "jwt/wycheproof/json_web_signature_test.json",
        ));
        let es256 = suite["testGroups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["comment"] == "es256")
            .unwrap();
        let keys: Vec<JwtPublicKey> = import_es256(&es256["public"]).into_iter().collect();
        let token = |id: u64| {
            es256["tests"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["tcId"] == id)
                .unwrap()["jws"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let err = verify_compact(&token(31), &keys).unwrap_err();
        assert!(
            matches!(&err, IdentityError::JwtAlgorithmRefused { alg } if alg == "HS256"),
            "{err}"
        );
        let err = verify_compact(&token(32), &keys).unwrap_err();
        assert!(
            matches!(&err, IdentityError::JwtHeaderRefused { param } if param == "jwk"),
            "{err}"
        );
        let err = verify_compact(&token(19), &keys).unwrap_err();
        assert!(
            matches!(err, IdentityError::JwtSignatureInvalid { .. }),
            "{err}"
        );
    }

    /// Every token quoted in PayloadsAllTheThings' JWT write-up (none, null signature,
    /// RS256-to-HS256 confusion, weak secrets, kid injection) is refused, whatever key
    /// set the verifier holds.
    #[test]
    fn payloadsallthethings_tokens_are_refused() {
        let text = zerofn_testkit::testdata::read_to_string(
            "jwt/payloadsallthethings/JSON-Web-Token-README.md",
        );
        let keys = vec![JwtPublicKey::new(
            *SigningKey::random(&mut rand_core::OsRng).verifying_key(),
        )];
        let mut tokens = 0;
        for (start, _) in text.match_indices("eyJ") {
            let candidate: String = text[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '='))
                .collect();
            if candidate.matches('.').count() < 1 {
                continue;
            }
            assert!(
                verify_compact(&candidate, &keys).is_err(),
                "accepted {candidate}"
            );
            tokens += 1;
        }
        assert!(tokens >= 10, "only {tokens} tokens found");
    }

    #[test]
    fn header_rules() {
        let signing = SigningKey::random(&mut rand_core::OsRng);
        let keys = JwtKeys::new(signing);
        let kid = keys.kid().to_owned();
        let sign = |header: &str| {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode("{}")
            );
            let sig = keys.sign_for_test(input.as_bytes());
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
        };
        let ok = sign(&format!(r#"{{"alg":"ES256","kid":"{kid}","typ":"JOSE"}}"#));
        assert_eq!(verify_compact(&ok, keys.public()).unwrap(), b"{}");

        for (header, why) in [
            (format!(r#"{{"alg":"none","kid":"{kid}"}}"#), "alg none"),
            (format!(r#"{{"alg":"None","kid":"{kid}"}}"#), "alg None"),
            (format!(r#"{{"alg":"NONE","kid":"{kid}"}}"#), "alg NONE"),
            (format!(r#"{{"alg":"nOnE","kid":"{kid}"}}"#), "alg nOnE"),
            (
                format!(r#"{{"alg":"es256","kid":"{kid}"}}"#),
                "lowercase alg",
            ),
            (format!(r#"{{"alg":"ES384","kid":"{kid}"}}"#), "ES384"),
            (format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#), "HS256"),
            (
                format!(r#"{{"alg":"ES256","alg":"none","kid":"{kid}"}}"#),
                "repeated alg",
            ),
            (
                format!(r#"{{"alg":"none","alg":"ES256","kid":"{kid}"}}"#),
                "repeated alg, ES256 last",
            ),
            (
                format!(r#"{{"alg":"ES256","kid":"{kid}","kid":"x"}}"#),
                "repeated kid",
            ),
            (
                format!(r#"{{"alg":"ES256","kid":"{kid}","jku":"https://evil.example/jwks"}}"#),
                "jku",
            ),
            (
                format!(r#"{{"alg":"ES256","kid":"{kid}","x5u":"https://evil.example/c.pem"}}"#),
                "x5u",
            ),
            (
                format!(r#"{{"alg":"ES256","kid":"{kid}","x5c":["MII="]}}"#),
                "x5c",
            ),
            (
                format!(r#"{{"alg":"ES256","kid":"{kid}","crit":["exp"]}}"#),
                "crit",
            ),
            (
                format!(r#"{{"alg":"ES256","kid":"{kid}","b64":false}}"#),
                "b64 (RFC 7797)",
            ),
            (
                format!(r#"{{"alg":"ES256","kid":"{kid}","typ":"at+jwt"}}"#),
                "typ",
            ),
            (r#"{"alg":"ES256"}"#.to_owned(), "no kid"),
            (
                r#"{"alg":"ES256","kid":"../../dev/null"}"#.to_owned(),
                "kid path traversal",
            ),
            (
                r#"{"alg":"ES256","kid":"x' UNION SELECT 'key"}"#.to_owned(),
                "kid SQL injection",
            ),
            (format!(r#"{{"kid":"{kid}"}}"#), "no alg"),
            (
                format!(r#"{{"alg":256,"kid":"{kid}"}}"#),
                "alg not a string",
            ),
            (format!(r#"["ES256","{kid}"]"#), "header not an object"),
        ] {
            assert!(
                verify_compact(&sign(&header), keys.public()).is_err(),
                "{why} accepted"
            );
        }
    }

    #[test]
    fn signature_encoding_rules() {
        let keys = JwtKeys::new(SigningKey::random(&mut rand_core::OsRng));
        let header = format!(r#"{{"alg":"ES256","kid":"{}"}}"#, keys.kid());
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode("{}")
        );
        let sig = keys.sign_for_test(input.as_bytes());
        let der = sig.to_der();
        for (signature, why) in [
            (
                URL_SAFE_NO_PAD.encode(der.as_bytes()),
                "DER instead of R||S",
            ),
            (
                base64::engine::general_purpose::URL_SAFE.encode(sig.to_bytes()),
                "padded base64url",
            ),
            (
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(sig.to_bytes()),
                "standard base64 alphabet",
            ),
            (
                URL_SAFE_NO_PAD.encode([&sig.to_bytes()[..], &[0u8]].concat()),
                "trailing zero byte",
            ),
            (URL_SAFE_NO_PAD.encode([0u8; 64]), "r = s = 0"),
            (String::new(), "empty signature"),
        ] {
            let token = format!("{input}.{signature}");
            if signature == URL_SAFE_NO_PAD.encode(sig.to_bytes()) {
                continue; // the alphabets agree for this signature: not a negative case
            }
            assert!(
                verify_compact(&token, keys.public()).is_err(),
                "{why} accepted"
            );
        }
        let long = format!("{input}.{}", "A".repeat(MAX_TOKEN_BYTES));
        assert!(matches!(
            verify_compact(&long, keys.public()),
            Err(IdentityError::JwtMalformed { .. })
        ));
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // RFC 7638 defines the input; recompute it independently from the JWK members.
        let keys = JwtKeys::new(SigningKey::random(&mut rand_core::OsRng));
        let jwks = keys.jwks();
        let jwk = &jwks["keys"][0];
        let canonical = serde_json::to_string(&serde_json::json!({
            "crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"],
        }))
        .unwrap();
        assert_eq!(
            jwk["kid"],
            URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
        );
        assert_eq!(jwk["use"], "jwt-svid");
        assert_eq!(b64(&jwk["x"]).len(), 32);
        assert!(jwk.get("d").is_none(), "private scalar in the bundle");
    }

    proptest::proptest! {
        #[test]
        fn verify_compact_never_panics(token in "[A-Za-z0-9_.=+/-]{0,300}") {
            let keys = JwtKeys::new(SigningKey::from_slice(&[7u8; 32]).unwrap());
            let _ = verify_compact(&token, keys.public());
        }
    }
}
