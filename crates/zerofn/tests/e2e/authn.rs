//! Authenticated ingress end to end: a JWT issuer registered from a JWKS file, a function
//! invokable by `jwt:corp` and `apikey` callers only, forged tokens refused with 401 and
//! audited, a tenant policy deciding on `context.claims`, API keys created, scoped,
//! revoked, and spoofed platform headers never reaching the function.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{json, Value};

use super::*;

const ISS: &str = "https://login.example.test";

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

struct Idp {
    key: SigningKey,
}

impl Idp {
    fn new(seed: u8) -> Idp {
        Idp {
            key: SigningKey::from_bytes(&[seed; 32].into()).unwrap(),
        }
    }

    fn jwks(&self) -> Value {
        let p = self.key.verifying_key().to_encoded_point(false);
        json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig",
            "x": b64(p.x().unwrap()), "y": b64(p.y().unwrap())}]})
    }

    fn token(&self, header: Value, claims: Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig: Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", b64(&sig.to_bytes()))
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn claims(scope: &str) -> Value {
    json!({"iss": ISS, "aud": "orders-api", "sub": "alice", "iat": now() - 5,
           "exp": now() + 300, "scope": scope})
}

fn get(s: &Setup, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    http(&s.platform.gateway, "GET", path, headers, b"")
}

#[test]
fn jwt_and_api_key_callers_are_verified_and_become_the_principal() {
    let s = Setup::new();
    let idp = Idp::new(7);
    let jwks = s.root().join("jwks.json");
    std::fs::write(&jwks, idp.jwks().to_string()).unwrap();
    // `auth jwt add acme corp ...` with these algorithms and flags.
    let register = |algorithms: &str, extra: &[&str]| {
        let jwks = jwks.to_str().unwrap();
        let mut args = vec![
            "auth",
            "jwt",
            "add",
            "acme",
            "corp",
            "--issuer",
            ISS,
            "--audience",
            "orders-api",
            "--jwks",
            jwks,
            "--algorithms",
            algorithms,
        ];
        args.extend_from_slice(extra);
        s.platform.cli(&args)
    };
    // Registration refuses what must never be configured.
    let refused = fails(register("HS256", &[]));
    assert!(refused.contains("HS256"), "{refused}");
    ok(register("ES256", &["--leeway-secs", "30"]));
    let listed = ok(s.platform.cli(&["auth", "jwt", "list", "acme"]));
    assert!(listed.contains("corp") && listed.contains(ISS), "{listed}");
    // The same name again is a conflict that names the issuer, not an internal error.
    let again = fails(register("ES256", &[]));
    assert!(
        again.contains("already registered") && again.contains("409"),
        "{again}"
    );

    s.deploy(
        "orders",
        "echo-c",
        &["/orders/..."],
        "[invoke]\nfrom = [\"jwt:corp\", \"apikey\"]\n",
    );
    s.deploy(
        "billing",
        "echo-c",
        &["/billing"],
        "[invoke]\nfrom = [\"apikey\"]\n",
    );

    // A valid token: 200, and the function sees who called, not the credential, and
    // none of the platform headers the client sent.
    let token = idp.token(json!({"alg": "ES256", "kid": "k1"}), claims("orders:read"));
    let bearer = format!("Bearer {token}");
    let r = get(
        &s,
        "/orders/1",
        &[
            ("Authorization", &bearer),
            ("X-Zerofn-Caller", "jwt:corp/admin"),
            ("x-zerofn-claims", "{\"sub\":\"admin\"}"),
            ("x-zerofn-caller", "apikey:root"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen: Vec<(String, String)> = r.json()["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h[0].as_str().unwrap().to_ascii_lowercase(),
                h[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let callers: Vec<&str> = seen
        .iter()
        .filter(|(n, _)| n == "x-zerofn-caller")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(callers, ["jwt:corp/alice"], "{seen:?}");
    let claims_seen: Vec<&str> = seen
        .iter()
        .filter(|(n, _)| n == "x-zerofn-claims")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(claims_seen.len(), 1, "{seen:?}");
    assert_eq!(
        serde_json::from_str::<Value>(claims_seen[0]).unwrap()["sub"],
        "alice"
    );
    assert!(!seen.iter().any(|(n, _)| n == "authorization"), "{seen:?}");
    let id = r.header("x-zerofn-invocation-id").unwrap().to_owned();
    let records = s.audit(20);
    let inv = records
        .iter()
        .find(|r| r["invocation_id"] == id.as_str())
        .unwrap();
    assert_eq!(inv["detail"]["caller"]["kind"], "jwt", "{inv}");
    assert_eq!(inv["detail"]["caller"]["subject"], "alice");
    assert!(!inv.to_string().contains(&token[token.len() - 20..]));

    // Forged tokens: each 401 with a challenge and audited with its reason.
    let other = Idp::new(9);
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(claims("x").to_string().as_bytes())
    );
    let mut exp = claims("x");
    exp["exp"] = json!(now() - 120);
    let mut aud = claims("x");
    aud["aud"] = json!(["other"]);
    for (forged, reason) in [
        (unsigned, "alg_none"),
        (
            other.token(json!({"alg": "ES256", "kid": "k1"}), claims("x")),
            "bad_signature",
        ),
        (
            idp.token(json!({"alg": "ES256", "kid": "k1"}), exp),
            "expired",
        ),
        (
            idp.token(json!({"alg": "ES256", "kid": "k1"}), aud),
            "wrong_audience",
        ),
        (
            idp.token(json!({"alg": "ES256", "kid": "k2"}), claims("x")),
            "unknown_key",
        ),
        (format!("{token}.{}", b64(b"x")), "malformed"),
    ] {
        let auth = format!("Bearer {forged}");
        let r = get(&s, "/orders/1", &[("Authorization", &auth)]);
        assert_eq!(r.status, 401, "{reason}: {}", r.text());
        assert_eq!(r.json()["error"]["kind"], "unauthenticated");
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
        let id = r.header("x-zerofn-invocation-id").unwrap().to_owned();
        let rec = s.audit(10);
        let rec = rec
            .iter()
            .find(|r| {
                r["invocation_id"] == id.as_str()
                    || r["reason"] == format!("authn: {reason}").as_str()
            })
            .unwrap_or_else(|| panic!("{reason}: no record"));
        assert_eq!(rec["status"], 401);
        assert!(!rec
            .to_string()
            .contains(&forged[forged.len().saturating_sub(20)..]));
    }
    // No credential at all: 401 (the function is not public).
    assert_eq!(get(&s, "/orders/1", &[]).status, 401);

    // A tenant policy on the claims decides.
    let policy = s.root().join("writers.cedar");
    std::fs::write(
        &policy,
        r#"@id("writers-only")
forbid (principal, action == Zerofn::Action::"invoke", resource == Zerofn::Function::"acme/orders")
unless { context.claims.scope like "*orders:write*" };"#,
    )
    .unwrap();
    ok(s.platform
        .cli(&["policy", "set", "acme", policy.to_str().unwrap()]));
    assert_eq!(
        get(&s, "/orders/1", &[("Authorization", &bearer)]).status,
        403
    );
    let writer = idp.token(
        json!({"alg": "ES256", "kid": "k1"}),
        claims("orders:read orders:write"),
    );
    let r = get(
        &s,
        "/orders/1",
        &[("Authorization", &format!("Bearer {writer}"))],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    ok(s.platform.cli(&["policy", "set", "acme", "--clear"]));

    // API keys: shown once, scoped, revocable.
    let out = s.platform.cli(&[
        "apikey",
        "create",
        "acme",
        "ci",
        "--functions",
        "orders",
        "--expires-in",
        "1d",
    ]);
    let key = ok(out).trim().to_owned();
    assert!(key.starts_with("zfk_"), "{key}");
    let again = fails(
        s.platform
            .cli(&["apikey", "create", "acme", "ci", "--functions", "orders"]),
    );
    assert!(
        again.contains("already exists") && again.contains("409"),
        "{again}"
    );
    let auth = format!("Bearer {key}");
    let r = get(&s, "/orders/2", &[("Authorization", &auth)]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("apikey:ci"), "{}", r.text());
    // Another function's key scope: refused.
    assert_eq!(get(&s, "/billing", &[("Authorization", &auth)]).status, 401);
    // A wrong secret under the right id.
    let wrong = format!(
        "{}{}",
        &key[..key.len() - 4],
        if key.ends_with("AAAA") {
            "BBBB"
        } else {
            "AAAA"
        }
    );
    assert_eq!(
        get(
            &s,
            "/orders/2",
            &[("Authorization", &format!("Bearer {wrong}"))]
        )
        .status,
        401
    );
    let listed = ok(s.platform.cli(&["apikey", "list", "acme"]));
    assert!(
        listed.contains("ci") && !listed.contains(&key[21..]),
        "{listed}"
    );
    ok(s.platform.cli(&["apikey", "revoke", "acme", "ci"]));
    assert_eq!(
        get(&s, "/orders/2", &[("Authorization", &auth)]).status,
        401
    );
    // The key value appears in no audit record.
    let all = ok(s.platform.cli(&["audit", "tail", "-n", "200", "--json"]));
    assert!(!all.contains(&key[21..]));
    assert!(all.contains("authn: wrong_api_key") || all.contains("authn: unknown_api_key"));
    ok(s.platform.cli(&["audit", "verify"]));
}

#[test]
fn repeated_authentication_failures_are_rate_limited() {
    let s = Setup::new();
    s.deploy(
        "locked",
        "hello-c",
        &["/locked"],
        "[invoke]\nfrom = [\"apikey\"]\n",
    );
    let bogus = format!("Bearer zfk_0123456789abcdef_{}", "A".repeat(43));
    let mut statuses = Vec::new();
    for _ in 0..15 {
        let r = get(&s, "/locked", &[("Authorization", &bogus)]);
        statuses.push(r.status);
        if r.status == 429 {
            assert!(r.header("retry-after").is_some());
            break;
        }
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}

#[test]
fn an_issuer_with_require_jti_refuses_a_replayed_token() {
    let s = Setup::new();
    let idp = Idp::new(11);
    let jwks = s.root().join("jwks.json");
    std::fs::write(&jwks, idp.jwks().to_string()).unwrap();
    ok(s.platform.cli(&[
        "auth",
        "jwt",
        "add",
        "acme",
        "once",
        "--issuer",
        ISS,
        "--audience",
        "orders-api",
        "--jwks",
        jwks.to_str().unwrap(),
        "--algorithms",
        "ES256",
        "--require-jti",
    ]));
    let listed = ok(s.platform.cli(&["auth", "jwt", "list", "acme", "--json"]));
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["issuers"][0]["require_jti"], true, "{listed}");
    s.deploy(
        "orders",
        "echo-c",
        &["/orders"],
        "[invoke]\nfrom = [\"jwt:once\"]\n",
    );
    let mut c = claims("orders:read");
    c["jti"] = json!("8f14e45f-ceea-467f-a0e6-bd7a1b2c3d4e");
    let bearer = format!(
        "Bearer {}",
        idp.token(json!({"alg": "ES256", "kid": "k1"}), c.clone())
    );
    let r = get(&s, "/orders", &[("Authorization", &bearer)]);
    assert_eq!(r.status, 200, "{}", r.text());
    // The same token again: 401, audited as a replay.
    let r = get(&s, "/orders", &[("Authorization", &bearer)]);
    assert_eq!(r.status, 401, "{}", r.text());
    let id = r.header("x-zerofn-invocation-id").unwrap().to_owned();
    let rec = s.audit(10);
    assert!(
        rec.iter().any(|r| r["reason"] == "authn: replayed"
            || (r["invocation_id"] == id.as_str() && r["status"] == 401)),
        "{rec:?}"
    );
    // A token without a jti is refused by this issuer.
    let bearer = format!(
        "Bearer {}",
        idp.token(json!({"alg": "ES256", "kid": "k1"}), claims("x"))
    );
    assert_eq!(
        get(&s, "/orders", &[("Authorization", &bearer)]).status,
        401
    );
}
