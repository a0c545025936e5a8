//! The verifier against forged tokens (one table, one line per attack), valid tokens of
//! every supported algorithm, API keys, and the Wycheproof JWS vectors.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair};
use serde_json::{json, Value};

use crate::*;

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://idp.example.test";
const AUD: &str = "orders-api";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn pem_der(pem: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(pem.to_vec()).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

/// Test signers: an RSA key (the jsonwebtoken suite's), a fresh P-256 key, a fresh P-384
/// key and a fresh Ed25519 key, each with its public JWK.
struct Keys {
    rsa: signature::RsaKeyPair,
    ec: signature::EcdsaKeyPair,
    ec384: signature::EcdsaKeyPair,
    ed: signature::Ed25519KeyPair,
    rng: SystemRandom,
}

impl Keys {
    fn new() -> Keys {
        let rng = SystemRandom::new();
        let rsa = signature::RsaKeyPair::from_pkcs8(&pem_der(&zerofn_testkit::testdata::read(
            "jwt/jsonwebtoken-rs/rsa/private_rsa_key_pkcs8.pem",
        )))
        .unwrap();
        let ec_alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pk = signature::EcdsaKeyPair::generate_pkcs8(ec_alg, &rng).unwrap();
        let ec = signature::EcdsaKeyPair::from_pkcs8(ec_alg, pk.as_ref(), &rng).unwrap();
        let ec384_alg = &signature::ECDSA_P384_SHA384_FIXED_SIGNING;
        let pk = signature::EcdsaKeyPair::generate_pkcs8(ec384_alg, &rng).unwrap();
        let ec384 = signature::EcdsaKeyPair::from_pkcs8(ec384_alg, pk.as_ref(), &rng).unwrap();
        let pk = signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ed = signature::Ed25519KeyPair::from_pkcs8(pk.as_ref()).unwrap();
        Keys {
            rsa,
            ec,
            ec384,
            ed,
            rng,
        }
    }

    fn jwks(&self) -> Value {
        let rsa = signature::RsaPublicKeyComponents::<Vec<u8>>::from(self.rsa.public());
        let p = self.ec.public_key().as_ref();
        let p384 = self.ec384.public_key().as_ref();
        json!({"keys": [
            {"kty": "RSA", "kid": "rsa-1", "use": "sig", "n": b64(&rsa.n), "e": b64(&rsa.e)},
            {"kty": "EC", "kid": "ec-1", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..])},
            {"kty": "EC", "kid": "ec-384", "crv": "P-384", "x": b64(&p384[1..49]), "y": b64(&p384[49..])},
            {"kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "x": b64(self.ed.public_key().as_ref())},
            // An encryption key beside them is left out, not refused.
            {"kty": "RSA", "kid": "enc-1", "use": "enc", "n": b64(&rsa.n), "e": b64(&rsa.e)},
        ]})
    }

    fn sign(&self, alg: &str, input: &[u8]) -> Vec<u8> {
        match alg {
            "RS256" | "PS256" => {
                let mut sig = vec![0; self.rsa.public().modulus_len()];
                let padding: &dyn signature::RsaEncoding = if alg == "RS256" {
                    &signature::RSA_PKCS1_SHA256
                } else {
                    &signature::RSA_PSS_SHA256
                };
                self.rsa.sign(padding, &self.rng, input, &mut sig).unwrap();
                sig
            }
            "ES256" => self.ec.sign(&self.rng, input).unwrap().as_ref().to_vec(),
            "ES384" => self.ec384.sign(&self.rng, input).unwrap().as_ref().to_vec(),
            "EdDSA" => self.ed.sign(input).as_ref().to_vec(),
            other => panic!("no test signer for {other}"),
        }
    }

    /// A token with `header` and `claims` (as written), signed with `alg`'s test key.
    fn token_raw(&self, alg: &str, header: &str, claims: &str) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let sig = self.sign(alg, input.as_bytes());
        format!("{input}.{}", b64(&sig))
    }

    fn token(&self, header: Value, claims: Value) -> String {
        let alg = header["alg"].as_str().unwrap().to_owned();
        self.token_raw(&alg, &header.to_string(), &claims.to_string())
    }
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": AUD, "sub": "alice", "exp": NOW + 600, "iat": NOW - 10,
           "nbf": NOW - 10, "scope": "orders:read orders:write"})
}

fn issuer(keys: &Keys, algs: &[Algorithm]) -> Issuer {
    let jwks = Jwks::parse(keys.jwks().to_string().as_bytes()).unwrap();
    Issuer::new("idp", ISS, AUD, algs.to_vec(), 60, jwks).unwrap()
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().unwrap().remove(key);
    v
}

#[test]
fn valid_tokens_of_every_supported_algorithm_verify() {
    let keys = Keys::new();
    let iss = issuer(&keys, &Algorithm::ALL);
    for (alg, kid) in [
        ("RS256", "rsa-1"),
        ("PS256", "rsa-1"),
        ("ES256", "ec-1"),
        ("ES384", "ec-384"),
        ("EdDSA", "ed-1"),
    ] {
        let t = keys.token(json!({"alg": alg, "kid": kid, "typ": "JWT"}), claims());
        let v = iss.verify(&t, NOW).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(v.subject, "alice");
        assert_eq!(v.issuer_name, "idp");
        assert_eq!(v.claims["scope"], "orders:read orders:write");
    }
    // Without a kid: the one key that can verify the algorithm.
    let t = keys.token(json!({"alg": "ES256"}), claims());
    assert!(iss.verify(&t, NOW).is_ok());
    // An audience array that includes ours; fractional times.
    let c = with(claims(), "aud", json!(["other", AUD]));
    let c = with(c, "exp", json!((NOW + 60) as f64 + 0.5));
    let t = keys.token(json!({"alg": "ES256", "kid": "ec-1"}), c);
    assert!(iss.verify(&t, NOW).is_ok());
}

/// Every forged token is refused, for its own reason.
#[test]
fn forged_tokens_are_refused() {
    let keys = Keys::new();
    let iss = issuer(&keys, &[Algorithm::RS256, Algorithm::ES256]);
    let es = json!({"alg": "ES256", "kid": "ec-1"});
    let good = keys.token(es.clone(), claims());
    assert!(iss.verify(&good, NOW).is_ok());
    let (h, p, s) = {
        let mut it = good.split('.');
        (
            it.next().unwrap().to_owned(),
            it.next().unwrap().to_owned(),
            it.next().unwrap().to_owned(),
        )
    };
    let unsigned = |alg: &str| format!("{}.{p}.", b64(format!(r#"{{"alg":"{alg}"}}"#).as_bytes()));
    // HS256 keyed with the bytes of the issuer's RSA public key (CVE-2016-5431 style).
    let hs256 = {
        let header = b64(br#"{"alg":"HS256","kid":"rsa-1"}"#);
        let input = format!("{header}.{p}");
        let secret =
            zerofn_testkit::testdata::read("jwt/jsonwebtoken-rs/rsa/public_rsa_key_pkcs8.pem");
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&secret).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", b64(&mac.finalize().into_bytes()))
    };
    let mut flipped = URL_SAFE_NO_PAD.decode(&s).unwrap();
    flipped[10] ^= 1;
    let flipped = format!("{h}.{p}.{}", b64(&flipped));
    // The same signature with a non-canonical last character (trailing bits set).
    let noncanonical = {
        let mut sig = s.clone();
        let last = sig.pop().unwrap();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let i = alphabet.find(last).unwrap();
        sig.push(alphabet.as_bytes()[i + 1] as char);
        format!("{h}.{p}.{sig}")
    };
    let forged: Vec<(String, &str, &str)> = vec![
        (unsigned("none"), "alg_none", "alg none"),
        (unsigned("None"), "alg_none", "alg None"),
        (unsigned("NONE"), "alg_none", "alg NONE"),
        (unsigned("nOnE"), "alg_none", "alg nOnE"),
        (
            format!("{}.{p}.{s}", b64(br#"{"alg":"none"}"#)),
            "alg_none",
            "alg none, with a signature",
        ),
        (
            hs256,
            "alg_not_allowed",
            "HS256 keyed with the RSA public key",
        ),
        (
            keys.token(json!({"alg": "PS256", "kid": "rsa-1"}), claims()),
            "alg_not_allowed",
            "algorithm outside the allowlist",
        ),
        (
            keys.token(es.clone(), with(claims(), "exp", json!(NOW - 61))),
            "expired",
            "expired beyond the leeway",
        ),
        (
            keys.token(es.clone(), without(claims(), "exp")),
            "bad_claim",
            "no exp",
        ),
        (
            keys.token(es.clone(), with(claims(), "exp", json!("tomorrow"))),
            "bad_claim",
            "exp not a number",
        ),
        (
            keys.token(es.clone(), with(claims(), "nbf", json!(NOW + 61))),
            "not_yet_valid",
            "not yet valid",
        ),
        (
            keys.token(es.clone(), with(claims(), "iat", json!(NOW + 61))),
            "issued_in_future",
            "issued in the future",
        ),
        (
            keys.token(
                es.clone(),
                with(claims(), "iss", json!("https://evil.example.test")),
            ),
            "unknown_issuer",
            "wrong issuer",
        ),
        (
            keys.token(es.clone(), without(claims(), "iss")),
            "bad_claim",
            "no issuer",
        ),
        (
            keys.token(es.clone(), with(claims(), "aud", json!("other"))),
            "wrong_audience",
            "wrong audience",
        ),
        (
            keys.token(es.clone(), with(claims(), "aud", json!(["a", "b"]))),
            "wrong_audience",
            "audience array without ours",
        ),
        (
            keys.token(es.clone(), without(claims(), "aud")),
            "wrong_audience",
            "no audience",
        ),
        (
            keys.token(es.clone(), without(claims(), "sub")),
            "bad_claim",
            "no subject",
        ),
        (
            keys.token(json!({"alg": "ES256", "kid": "ec-9"}), claims()),
            "unknown_key",
            "unknown kid",
        ),
        (
            keys.token(json!({"alg": "ES256", "kid": "rsa-1"}), claims()),
            "key_mismatch",
            "kid of the other key type",
        ),
        (
            keys.token(json!({"alg": "ES256", "kid": "enc-1"}), claims()),
            "unknown_key",
            "kid of an encryption key",
        ),
        (flipped, "bad_signature", "bad signature"),
        (
            format!(
                "{h}.{p}.{}",
                b64(&URL_SAFE_NO_PAD.decode(&s).unwrap()[..60])
            ),
            "bad_signature",
            "truncated signature",
        ),
        (format!("{h}.{p}."), "bad_signature", "empty signature"),
        (format!("{h}.{p}"), "malformed", "two parts"),
        (format!("{h}.{p}.{s}.{s}"), "malformed", "extra segments"),
        (format!("{h}.{p}.{s}."), "malformed", "trailing dot"),
        (
            format!("{h}.{p}.{s}=="),
            "non_canonical_base64",
            "padded signature",
        ),
        (noncanonical, "non_canonical_base64", "non-canonical base64"),
        (
            format!("{h}.{p}.+{}", &s[1..]),
            "non_canonical_base64",
            "standard alphabet",
        ),
        (
            keys.token_raw(
                "ES256",
                r#"{"alg":"ES256","kid":"ec-1"}"#,
                &format!(
                    r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"alice","exp":{},"sub":"admin"}}"#,
                    NOW + 60
                ),
            ),
            "duplicate_member",
            "duplicate claims",
        ),
        (
            keys.token_raw(
                "ES256",
                r#"{"alg":"ES256","kid":"ec-1","alg":"none"}"#,
                &claims().to_string(),
            ),
            "duplicate_member",
            "duplicate header member",
        ),
        (
            keys.token(
                es.clone(),
                with(claims(), "pad", json!("x".repeat(MAX_TOKEN_BYTES))),
            ),
            "oversize",
            "oversize",
        ),
        (
            keys.token(
                json!({"alg": "ES256", "kid": "ec-1", "jku": "https://evil.example.test/jwks"}),
                claims(),
            ),
            "embedded_key",
            "jku header",
        ),
        (
            keys.token(
                json!({"alg": "ES256", "kid": "ec-1", "x5u": "https://evil.example.test/cert"}),
                claims(),
            ),
            "embedded_key",
            "x5u header",
        ),
        (
            keys.token(
                json!({"alg": "ES256", "jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}}),
                claims(),
            ),
            "embedded_key",
            "embedded jwk header",
        ),
        (
            keys.token(
                json!({"alg": "ES256", "kid": "ec-1", "crit": ["exp"]}),
                claims(),
            ),
            "crit_unsupported",
            "crit header",
        ),
        (
            keys.token_raw("ES256", "[1]", &claims().to_string()),
            "bad_json",
            "header not an object",
        ),
        (
            keys.token_raw("ES256", r#"{"alg":"ES256","kid":"ec-1"}"#, "[]"),
            "bad_json",
            "claims not an object",
        ),
    ];
    for (token, reason, why) in &forged {
        match iss.verify(token, NOW) {
            Ok(_) => panic!("{why}: accepted"),
            Err(e) => {
                assert_eq!(e.reason(), *reason, "{why}: {e}");
                // No message repeats the token or any part of it.
                let msg = e.to_string();
                assert!(!msg.contains(&p) && !msg.contains(&s), "{why}: {msg}");
            }
        }
    }
}

#[test]
fn leeway_is_bounded_and_applied() {
    let keys = Keys::new();
    let jwks = || Jwks::parse(keys.jwks().to_string().as_bytes()).unwrap();
    assert!(matches!(
        Issuer::new("idp", ISS, AUD, vec![Algorithm::ES256], 301, jwks()),
        Err(ConfigError::Leeway { .. })
    ));
    assert!(Issuer::new("idp", "http://idp", AUD, vec![Algorithm::ES256], 0, jwks()).is_err());
    assert!(Issuer::new("idp", ISS, AUD, vec![], 0, jwks()).is_err());
    let iss = issuer(&keys, &[Algorithm::ES256]);
    let es = json!({"alg": "ES256", "kid": "ec-1"});
    // Within the 60 s leeway: accepted.
    let t = keys.token(es.clone(), with(claims(), "exp", json!(NOW - 59)));
    assert!(iss.verify(&t, NOW).is_ok());
    let t = keys.token(es, with(claims(), "nbf", json!(NOW + 59)));
    assert!(iss.verify(&t, NOW).is_ok());
}

/// ES512 (P-521, verified with RustCrypto's `p521`): a token made here with a P-521 key
/// verifies; a changed signature, a signature of another length, the key under another
/// algorithm, and ES512 under a P-256 key are refused; a point off the curve is refused at
/// registration.
#[test]
fn es512_tokens_verify_with_a_p521_key_and_only_with_it() {
    use p521::ecdsa::signature::RandomizedSigner as _;
    // A scalar below the 521-bit group order: the top octet holds one bit.
    let mut scalar = [7u8; 66];
    scalar[0] = 1;
    let signing = p521::ecdsa::SigningKey::from_slice(&scalar).unwrap();
    let point = p521::ecdsa::VerifyingKey::from(&signing)
        .to_encoded_point(false)
        .as_bytes()
        .to_vec();
    let (x, y) = (&point[1..67], &point[67..]);
    let p521_jwk = json!({"kty": "EC", "crv": "P-521", "kid": "p521", "x": b64(x), "y": b64(y)});
    let keys = Keys::new();
    let mut doc = keys.jwks();
    doc["keys"].as_array_mut().unwrap().push(p521_jwk.clone());
    let jwks = Jwks::parse(doc.to_string().as_bytes()).unwrap();
    let iss = Issuer::new("idp", ISS, AUD, Algorithm::ALL.to_vec(), 60, jwks).unwrap();
    let sign = |header: Value| {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims().to_string().as_bytes())
        );
        // ES512 signs the SHA-512 of the signing input (RFC 7518 §3.4); p521 hashes.
        let sig: p521::ecdsa::Signature =
            signing.sign_with_rng(&mut rand_core::OsRng, input.as_bytes());
        (input, sig.to_bytes().to_vec())
    };
    let (input, sig) = sign(json!({"alg": "ES512", "kid": "p521"}));
    assert_eq!(sig.len(), 132);
    let token = iss.verify(&format!("{input}.{}", b64(&sig)), NOW).unwrap();
    assert_eq!(token.subject, "alice");
    let mut flipped = sig.clone();
    flipped[100] ^= 1;
    for (bad, why) in [
        (
            format!("{input}.{}", b64(&flipped)),
            AuthnError::BadSignature,
        ),
        (
            format!("{input}.{}", b64(&sig[..131])),
            AuthnError::BadSignature,
        ),
        (
            format!("{input}.{}", b64(&[0u8; 132])),
            AuthnError::BadSignature,
        ),
    ] {
        assert_eq!(iss.verify(&bad, NOW).unwrap_err(), why);
    }
    // The P-521 key under another algorithm, and ES512 under the P-256 key.
    let (input, sig) = sign(json!({"alg": "ES256", "kid": "p521"}));
    assert!(matches!(
        iss.verify(&format!("{input}.{}", b64(&sig)), NOW),
        Err(AuthnError::KeyMismatch { .. })
    ));
    let (input, sig) = sign(json!({"alg": "ES512", "kid": "ec-1"}));
    assert!(matches!(
        iss.verify(&format!("{input}.{}", b64(&sig)), NOW),
        Err(AuthnError::KeyMismatch { .. })
    ));
    // Not on the allowlist: refused before any signature check.
    let only_es256 = issuer(&keys, &[Algorithm::ES256]);
    let (input, sig) = sign(json!({"alg": "ES512", "kid": "p521"}));
    assert!(matches!(
        only_es256.verify(&format!("{input}.{}", b64(&sig)), NOW),
        Err(AuthnError::AlgNotAllowed { .. })
    ));
    // A P-521 key of the wrong width, and an `alg` that does not fit the curve.
    let mut short = p521_jwk.clone();
    short["x"] = json!(b64(&x[1..]));
    let mut wrong_alg = p521_jwk;
    wrong_alg["alg"] = json!("ES384");
    for bad in [short, wrong_alg] {
        assert!(Jwks::parse(json!({"keys": [bad]}).to_string().as_bytes()).is_err());
    }
}

#[test]
fn algorithm_names_are_exact_and_never_symmetric() {
    for bad in [
        "none", "HS256", "HS384", "HS512", "rs256", "es512", "ES521", "", "RS256 ",
    ] {
        assert!(Algorithm::parse(bad).is_err(), "{bad}");
    }
    for a in Algorithm::ALL {
        assert_eq!(Algorithm::parse(a.as_str()).unwrap(), a);
    }
}

#[test]
fn jwks_with_private_symmetric_weak_or_ambiguous_keys_is_refused() {
    let keys = Keys::new();
    let good = keys.jwks();
    let rsa = good["keys"][0].clone();
    for (jwks, why) in [
        (
            json!({"keys": [with(rsa.clone(), "d", json!("AAAA"))]}),
            "private RSA member",
        ),
        (
            json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}),
            "symmetric key",
        ),
        (
            json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "x"}, rsa.clone()]}),
            "symmetric key beside a good one",
        ),
        (json!({"keys": [rsa.clone(), rsa.clone()]}), "duplicate kid"),
        (
            json!({"keys": [with(rsa.clone(), "n", json!(b64(&[0xc5; 128])))]}),
            "1024-bit RSA",
        ),
        (
            json!({"keys": [with(rsa.clone(), "alg", json!("ES256"))]}),
            "alg that does not fit the key",
        ),
        (
            json!({"keys": [with(rsa.clone(), "alg", json!("HS256"))]}),
            "HMAC alg",
        ),
        (json!({"keys": []}), "no keys"),
        (
            json!({"keys": [with(rsa.clone(), "use", json!("enc"))]}),
            "only an encryption key",
        ),
        (
            json!({"keys": [with(rsa.clone(), "key_ops", json!(["encrypt"]))]}),
            "key_ops without verify",
        ),
        (json!({"nokeys": []}), "no keys member"),
        (
            json!({"keys": [with(good["keys"][1].clone(), "crv", json!("P-521"))]}),
            "unsupported curve",
        ),
    ] {
        assert!(Jwks::parse(jwks.to_string().as_bytes()).is_err(), "{why}");
    }
    let dup = format!(r#"{{"keys":[{rsa}],"keys":[]}}"#);
    assert!(Jwks::parse(dup.as_bytes()).is_err(), "duplicate member");
    // A key whose `alg` is pinned verifies only that algorithm.
    let pinned = json!({"keys": [with(rsa, "alg", json!("RS256"))]});
    let jwks = Jwks::parse(pinned.to_string().as_bytes()).unwrap();
    let iss = Issuer::new(
        "idp",
        ISS,
        AUD,
        vec![Algorithm::RS256, Algorithm::PS256],
        0,
        jwks,
    )
    .unwrap();
    let ps = keys.token(json!({"alg": "PS256", "kid": "rsa-1"}), claims());
    assert_eq!(iss.verify(&ps, NOW).unwrap_err().reason(), "key_mismatch");
    let rs = keys.token(json!({"alg": "RS256", "kid": "rsa-1"}), claims());
    assert!(iss.verify(&rs, NOW).is_ok());
}

fn registry(keys: &Keys) -> (Registry, NewApiKey, NewApiKey) {
    let mut reg = Registry::default();
    reg.add_issuer("acme", issuer(keys, &[Algorithm::ES256]));
    let key = NewApiKey::generate();
    let old = NewApiKey::generate();
    reg.add_api_key(
        "acme",
        ApiKeyEntry {
            name: "ci".into(),
            stored: key.stored.clone(),
            functions: vec!["orders".into()],
            expires_at: Some(NOW + 100),
        },
    );
    reg.add_api_key(
        "acme",
        ApiKeyEntry {
            name: "old".into(),
            stored: old.stored.clone(),
            functions: vec!["orders".into()],
            expires_at: Some(NOW - 1),
        },
    );
    (reg, key, old)
}

fn bearer(value: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {value}").parse().unwrap(),
    );
    h
}

#[test]
fn registry_authenticates_for_the_callee_tenant_and_function_only() {
    let keys = Keys::new();
    let (reg, key, old) = registry(&keys);
    let accepts = Accepts {
        jwt: vec!["idp".into()],
        api_key: true,
    };
    let auth = |tenant: &str, function: &str, accepts: &Accepts, value: &str| {
        let cred = Credential::from_headers(&bearer(value))?.unwrap();
        reg.authenticate(tenant, function, accepts, &cred, NOW)
    };
    let token = keys.token(json!({"alg": "ES256", "kid": "ec-1"}), claims());
    match auth("acme", "orders", &accepts, &token).unwrap() {
        VerifiedCaller::Jwt {
            issuer,
            subject,
            claims,
        } => {
            assert_eq!((issuer.as_str(), subject.as_str()), ("idp", "alice"));
            assert_eq!(claims["sub"], "alice");
        }
        other => panic!("{other:?}"),
    }
    // Another tenant's function does not know acme's issuer.
    assert_eq!(
        auth("evil", "orders", &accepts, &token).unwrap_err(),
        AuthnError::UnknownIssuer
    );
    // A function that does not accept the issuer.
    let keys_only = Accepts {
        jwt: vec![],
        api_key: true,
    };
    assert_eq!(
        auth("acme", "orders", &keys_only, &token).unwrap_err(),
        AuthnError::UnknownIssuer
    );
    // API keys.
    assert_eq!(
        auth("acme", "orders", &accepts, key.reveal()).unwrap(),
        VerifiedCaller::ApiKey {
            name: "ci".into(),
            id: key.stored.id.clone()
        }
    );
    let wrong = format!("zfk_{}_{}", key.stored.id, b64(&[1; 32]));
    for (value, tenant, function, err) in [
        (wrong.as_str(), "acme", "orders", AuthnError::WrongApiKey),
        (old.reveal(), "acme", "orders", AuthnError::ApiKeyExpired),
        (key.reveal(), "acme", "billing", AuthnError::WrongFunction),
        (key.reveal(), "evil", "orders", AuthnError::UnknownApiKey),
        (
            NewApiKey::generate().reveal(),
            "acme",
            "orders",
            AuthnError::UnknownApiKey,
        ),
    ] {
        assert_eq!(
            auth(tenant, function, &accepts, value).unwrap_err(),
            err,
            "{err:?}"
        );
    }
    let jwt_only = Accepts {
        jwt: vec!["idp".into()],
        api_key: false,
    };
    assert_eq!(
        auth("acme", "orders", &jwt_only, key.reveal()).unwrap_err(),
        AuthnError::WrongFunction
    );
}

#[test]
fn authorization_headers_are_parsed_strictly() {
    assert!(Credential::from_headers(&http::HeaderMap::new())
        .unwrap()
        .is_none());
    for bad in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer  x",
        "Bearer a b",
        "Token x",
    ] {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, bad.parse().unwrap());
        assert_eq!(
            Credential::from_headers(&h).unwrap_err(),
            AuthnError::BadAuthorizationHeader,
            "{bad}"
        );
    }
    let mut two = bearer("a.b.c");
    two.append(http::header::AUTHORIZATION, "Bearer d.e.f".parse().unwrap());
    assert_eq!(
        Credential::from_headers(&two).unwrap_err(),
        AuthnError::BadAuthorizationHeader
    );
    let mut lower = http::HeaderMap::new();
    lower.insert(http::header::AUTHORIZATION, "bearer a.b.c".parse().unwrap());
    let cred = Credential::from_headers(&lower).unwrap().unwrap();
    assert_eq!(cred.kind(), "jwt");
    assert_eq!(format!("{cred:?}"), "Credential::Bearer(..)");
    let key = NewApiKey::generate();
    let cred = Credential::from_headers(&bearer(key.reveal()))
        .unwrap()
        .unwrap();
    assert_eq!(cred.kind(), "apikey");
    assert!(!format!("{cred:?}").contains(key.reveal()));
}

#[test]
fn authenticators_swap_whole() {
    let a = Authenticators::default();
    let keys = Keys::new();
    let (reg, _, _) = registry(&keys);
    let before = a.current();
    a.replace(reg);
    assert!(!Arc::ptr_eq(&before, &a.current()));
}

/// The Wycheproof JWS vectors (C2SP/wycheproof `json_web_signature_test.json`) through the
/// JWS layer of the verifier, each group's public key as the issuer's JWKS and every
/// supported algorithm allowed. Expected: every `invalid` vector refused; every `valid`
/// vector accepted (ES512 included), except those this verifier refuses by design (HMAC
/// groups: no symmetric keys), which must be refused too.
#[test]
fn wycheproof_jws_vectors() {
    let doc: Value = serde_json::from_slice(&zerofn_testkit::testdata::read(
        "jwt/wycheproof/json_web_signature_test.json",
    ))
    .unwrap();
    let (mut accepted, mut refused, mut by_design, mut es512) = (0, 0, 0, 0);
    for group in doc["testGroups"].as_array().unwrap() {
        // RFC 7520 §4.3 (Figure 27), which Wycheproof copies, gives its P-521 key `"alg":
        // "ES521"`, a known erratum for ES512: with the misspelt `alg` the key is refused
        // (no such algorithm), so the key is used here without it.
        let public = group.get("public").map(|k| {
            let mut k = k.clone();
            if k["alg"] == "ES521" {
                k.as_object_mut().unwrap().remove("alg");
            }
            k
        });
        let jwks = public
            .as_ref()
            .and_then(|k| Jwks::parse(json!({"keys": [k]}).to_string().as_bytes()).ok());
        let issuer = jwks.map(|jwks| {
            Issuer::new("w", "https://w.test", "w", Algorithm::ALL.to_vec(), 0, jwks).unwrap()
        });
        let supported = public.is_some();
        for test in group["tests"].as_array().unwrap() {
            let id = &test["tcId"];
            let Some(jws) = test["jws"].as_str() else {
                // JSON serialisation: not a compact token, never accepted.
                refused += 1;
                continue;
            };
            let result = issuer.as_ref().map(|i| i.verify_jws(jws));
            let ok = matches!(result, Some(Ok(_)));
            // RFC 7520's Figure 20 signs PS384 with a key whose JWK says `alg: PS256`; a key's
            // `alg` binds it to that algorithm, so this verifier refuses it on purpose.
            let token_alg = jws
                .split('.')
                .next()
                .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
                .and_then(|h| serde_json::from_slice::<Value>(&h).ok())
                .map(|h| h["alg"].clone());
            let key_alg_differs = public
                .as_ref()
                .and_then(|k| k.get("alg"))
                .is_some_and(|a| Some(a) != token_alg.as_ref());
            match test["result"].as_str().unwrap() {
                "valid" if supported && issuer.is_some() && !key_alg_differs => {
                    assert!(ok, "tcId {id} ({}) refused: {result:?}", test["comment"]);
                    accepted += 1;
                    if token_alg.as_ref().is_some_and(|a| a == "ES512") {
                        es512 += 1;
                    }
                }
                "valid" => {
                    assert!(!ok, "tcId {id}: unsupported by design, yet accepted");
                    by_design += 1;
                }
                _ => {
                    assert!(!ok, "tcId {id} ({}) accepted", test["comment"]);
                    refused += 1;
                }
            }
        }
    }
    assert!(accepted >= 30, "{accepted} valid vectors accepted");
    // RFC 7520 Figure 27, with its key as a JWK with `use` and with `key_ops`.
    assert_eq!(es512, 2, "ES512 vectors accepted");
    assert!(refused >= 300, "{refused} invalid vectors refused");
    // 7 HMAC (no symmetric keys), 2 key `alg` mismatches, and the groups whose only key
    // is symmetric.
    assert!(
        by_design <= 12,
        "{by_design} valid vectors refused by design"
    );
    eprintln!("wycheproof: {accepted} valid accepted, {refused} invalid refused, {by_design} valid refused by design");
}

#[test]
fn an_issuer_that_requires_jti_accepts_each_token_once() {
    let keys = Keys::new();
    let authenticators = Authenticators::default();
    let build = |require: bool| {
        let mut reg = Registry::default();
        reg.add_issuer(
            "acme",
            issuer(&keys, &[Algorithm::ES256]).with_require_jti(require),
        );
        reg
    };
    authenticators.replace(build(true));
    let accepts = Accepts {
        jwt: vec!["idp".into()],
        api_key: false,
    };
    let auth = |token: &str, now: i64| {
        let cred = Credential::from_headers(&bearer(token))?.unwrap();
        authenticators
            .current()
            .authenticate("acme", "orders", &accepts, &cred, now)
    };
    let header = json!({"alg": "ES256", "kid": "ec-1"});
    let token = keys.token(header.clone(), with(claims(), "jti", json!("t-1")));
    auth(&token, NOW).unwrap();
    // The same token again: a replay, however soon or late before it expires.
    assert_eq!(auth(&token, NOW).unwrap_err().reason(), "replayed");
    assert_eq!(auth(&token, NOW + 599).unwrap_err().reason(), "replayed");
    // A registry swap (an issuer added or removed) keeps what was seen.
    authenticators.replace(build(true));
    assert_eq!(auth(&token, NOW + 1).unwrap_err().reason(), "replayed");
    // Another jti is another token.
    auth(
        &keys.token(header.clone(), with(claims(), "jti", json!("t-2"))),
        NOW,
    )
    .unwrap();
    // Without a jti, with an empty, oversized or non-string one: refused.
    for jti in [
        None,
        Some(json!("")),
        Some(json!("x".repeat(257))),
        Some(json!(7)),
    ] {
        let c = match jti {
            Some(j) => with(claims(), "jti", j),
            None => claims(),
        };
        assert_eq!(
            auth(&keys.token(header.clone(), c), NOW)
                .unwrap_err()
                .reason(),
            "bad_claim"
        );
    }
    // A token that would have to be remembered for more than a day: refused.
    let long = with(
        with(claims(), "jti", json!("t-3")),
        "exp",
        json!(NOW + MAX_JTI_LIFETIME_SECS + 1),
    );
    assert_eq!(
        auth(&keys.token(header.clone(), long), NOW)
            .unwrap_err()
            .reason(),
        "jti_lifetime"
    );
    // A forged token with a fresh jti takes no slot and is refused for its signature.
    let other = Keys::new();
    let forged = other.token(header.clone(), with(claims(), "jti", json!("t-4")));
    assert_eq!(auth(&forged, NOW).unwrap_err().reason(), "bad_signature");
    auth(
        &keys.token(header.clone(), with(claims(), "jti", json!("t-4"))),
        NOW,
    )
    .unwrap();
    // An issuer that does not require jti accepts a token twice, with or without one.
    authenticators.replace(build(false));
    auth(&token, NOW).unwrap();
    auth(&token, NOW).unwrap();
}
