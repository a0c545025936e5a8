//! Issue 15 (part): mTLS callers end to end, against the running binary with the gateway
//! over TLS. A platform SVID reaches an `mtls:spiffe` function, which sees who called; a
//! tenant's registered CA authenticates `mtls:<name>` callers; a certificate from a
//! foreign CA is refused at the policy (403), an expired one from the registered CA is
//! refused (401), and one tenant's CA never satisfies another tenant's `mtls:` caller.
//! Every refusal is audited with its reason. `auth mtls add` refuses what is not a CA.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::Value;

use super::*;

/// A CA made for the test (not the platform's).
struct TestCa {
    cert: CertificateDer<'static>,
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new(cn: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The platform's own CA, from the data directory (the test runs as its owner).
    fn platform(data: &Path) -> TestCa {
        let pem = std::fs::read_to_string(data.join("identity/ca.pem")).unwrap();
        let key =
            KeyPair::from_pem(&std::fs::read_to_string(data.join("identity/ca.key.pem")).unwrap())
                .unwrap();
        let cert = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).unwrap();
        TestCa {
            cert,
            issuer: Issuer::from_ca_cert_pem(&pem, key).unwrap(),
            pem,
        }
    }

    /// A client certificate: `cn`, an optional SPIFFE ID, valid from `from` to `to`
    /// (years), and its key.
    fn client(&self, cn: &str, spiffe: Option<&str>, years: (i32, i32)) -> Identity {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        if !cn.is_empty() {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if let Some(id) = spiffe {
            params.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
        }
        params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
        params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Identity {
            chain: vec![cert.der().clone()],
            key: key.serialize_der(),
        }
    }

    /// A server certificate for 127.0.0.1, written to `dir`; (cert, key) paths.
    fn server(&self, dir: &Path) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (dir.join("gw.crt"), dir.join("gw.key"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c.display().to_string(), k.display().to_string())
    }
}

struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

/// One `GET path` over TLS, presenting `identity` when given: status and body.
fn get(addr: &str, server_ca: &TestCa, identity: Option<&Identity>, path: &str) -> (u16, String) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_ca.cert.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots);
    let config = match identity {
        Some(id) => builder
            .with_client_auth_cert(
                id.chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key.clone())),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\nx-zerofn-caller: mtls:spiffe/forged\r\n\r\n"
    )
    .unwrap();
    tls.flush().unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    (status, body.to_owned())
}

/// The headers echo-c saw, lowercased names.
fn seen_headers(body: &str) -> Vec<(String, String)> {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h[0].as_str().unwrap().to_ascii_lowercase(),
                h[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The record of a refused request (its error body names the invocation): by id, or, as
/// identical refusals from one address are counted into the first record of their kind,
/// the refusal record with the same reason.
fn refusal_record(s: &Setup, body: &str, reason: &str) -> Value {
    let error: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let id = error["error"]["invocation_id"].as_str().unwrap().to_owned();
    let records = s.audit(60);
    records
        .iter()
        .find(|r| r["invocation_id"] == id.as_str())
        .or_else(|| {
            records.iter().rev().find(|r| {
                r["action"] == "invoke"
                    && r["decision"] == "deny"
                    && r["reason"].as_str().is_some_and(|t| t.contains(reason))
            })
        })
        .cloned()
        .unwrap_or_else(|| panic!("no record of {id} ({reason})"))
}

/// The latest invoke record of `function`.
fn last_invoke(s: &Setup, function: &str) -> Value {
    s.audit(40)
        .into_iter()
        .rev()
        .find(|r| r["action"] == "invoke" && r["function"] == function)
        .unwrap_or_else(|| panic!("no invoke record of {function}"))
}

#[test]
fn mtls_callers_are_verified_per_tenant_and_refused_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = TestCa::new("gateway test CA");
    let (cert, key) = server_ca.server(dir.path());
    let s = Setup::with_args(&["--gateway-tls-cert", &cert, "--gateway-tls-key", &key]);
    let addr = s.platform.gateway.clone();

    // Registration: a partner CA for acme; what is not a CA is refused and changes nothing.
    let partners = TestCa::new("Partners CA");
    let partners_pem = dir.path().join("partners.pem");
    std::fs::write(&partners_pem, &partners.pem).unwrap();
    let added = ok(s.platform.cli(&[
        "auth",
        "mtls",
        "add",
        "acme",
        "partners",
        "--ca",
        partners_pem.to_str().unwrap(),
        "--json",
    ]));
    let added: Value = serde_json::from_str(&added).unwrap();
    assert_eq!(added["name"], "partners");
    assert_eq!(added["certificates"][0]["subject"], "CN=Partners CA");
    let not_ca = dir.path().join("leaf.pem");
    let leaf = partners.client("leaf", None, (2020, 2090));
    std::fs::write(
        &not_ca,
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &leaf.chain[0])
        ),
    )
    .unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n").unwrap();
    let with_key = dir.path().join("with-key.pem");
    std::fs::write(
        &with_key,
        format!(
            "{}{}",
            partners.pem,
            KeyPair::generate().unwrap().serialize_pem()
        ),
    )
    .unwrap();
    for (name, file, expected) in [
        ("suppliers", &not_ca, "is not a CA"),
        ("suppliers", &garbage, "no PEM certificate"),
        ("suppliers", &with_key, "private key"),
        ("spiffe", &partners_pem, "platform's own trust bundle"),
        ("partners", &partners_pem, "already registered"),
    ] {
        let err = fails(s.platform.cli(&[
            "auth",
            "mtls",
            "add",
            "acme",
            name,
            "--ca",
            file.to_str().unwrap(),
        ]));
        assert!(err.contains(expected), "{name} {}: {err}", file.display());
        assert!(!err.contains("PRIVATE KEY"), "{err}");
    }
    let listed: Value = serde_json::from_str(&ok(s
        .platform
        .cli(&["auth", "mtls", "list", "acme", "--json"])))
    .unwrap();
    let names: Vec<&str> = listed["cas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["partners"],
        "a refused registration changed the list"
    );
    let refusals = s
        .audit(30)
        .into_iter()
        .filter(|r| r["action"] == "auth.mtls.add" && r["decision"] == "deny")
        .count();
    assert_eq!(refusals, 5, "every refused registration is audited");

    s.deploy(
        "svc",
        "echo-c",
        &["/svc"],
        "[invoke]\nfrom = [\"mtls:spiffe\"]\n",
    );
    s.deploy(
        "orders",
        "echo-c",
        &["/orders"],
        "[invoke]\nfrom = [\"mtls:partners\"]\n",
    );

    // (1) A platform SVID reaches the `mtls:spiffe` function, which sees who called and
    // not the forged header the client sent.
    let platform = TestCa::platform(&s.platform.data_dir);
    let id = "spiffe://zerofn.local/tenant/acme/fn/client";
    let svid = platform.client("", Some(id), (2020, 2090));
    let (status, body) = get(&addr, &server_ca, Some(&svid), "/svc");
    assert_eq!(status, 200, "{body}");
    let headers = seen_headers(&body);
    assert_eq!(
        header(&headers, "x-zerofn-caller"),
        [format!("mtls:spiffe/{id}")]
    );
    let claims: Value = serde_json::from_str(header(&headers, "x-zerofn-claims")[0]).unwrap();
    assert_eq!(claims["spiffe_id"], id);
    assert_eq!(claims["ca"], "spiffe");
    assert!(claims["not_after"].as_i64().unwrap() > 0);
    let record = last_invoke(&s, "svc");
    assert_eq!(record["decision"], "allow");
    assert_eq!(record["detail"]["caller"]["kind"], "mtls");
    assert_eq!(record["detail"]["caller"]["spiffe_id"], id);
    // The partner's certificate is not the platform's: `mtls:spiffe` refuses it.
    let partner = partners.client("billing", None, (2020, 2090));
    assert_eq!(get(&addr, &server_ca, Some(&partner), "/svc").0, 403);

    // The registered CA's certificate reaches `mtls:partners`, named by its subject.
    let (status, body) = get(&addr, &server_ca, Some(&partner), "/orders");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        header(&seen_headers(&body), "x-zerofn-caller"),
        ["mtls:partners/CN=billing"]
    );

    // (2) A foreign CA (even one with the same name) is refused at the policy, audited.
    let foreign = TestCa::new("Partners CA").client("billing", None, (2020, 2090));
    let (status, body) = get(&addr, &server_ca, Some(&foreign), "/orders");
    assert_eq!(status, 403, "{body}");
    let record = refusal_record(&s, &body, "authn: certificate_untrusted");
    assert_eq!(record["decision"], "deny");
    assert_eq!(record["status"], 403);
    let reason = record["reason"].as_str().unwrap();
    assert!(reason.contains("authn: certificate_untrusted"), "{reason}");
    assert_eq!(
        record["detail"]["caller"]["certificate"],
        "certificate_untrusted"
    );
    // No certificate at all: decided as public, refused the same way.
    assert_eq!(get(&addr, &server_ca, None, "/orders").0, 403);

    // (3) An expired certificate of the registered CA: refused, audited as expired.
    let expired = partners.client("billing", None, (2020, 2021));
    let (status, body) = get(&addr, &server_ca, Some(&expired), "/orders");
    assert_eq!(status, 401, "{body}");
    let record = refusal_record(&s, &body, "authn: certificate_expired");
    assert_eq!(record["reason"], "authn: certificate_expired");
    assert_eq!(record["status"], 401);

    // (4) Tenant beta registers its own `partners`: acme's partner certificate does not
    // satisfy beta's `mtls:partners`, and beta's does not satisfy acme's.
    let beta_key = s.root().join("beta.key");
    ok(s.platform
        .cli(&["keygen", "--out", beta_key.to_str().unwrap()]));
    ok(s.platform.cli(&[
        "tenant",
        "create",
        "beta",
        "--signing-key",
        &format!("{}.pub", beta_key.display()),
        "--route-prefix",
        "/beta/...",
    ]));
    let beta_ca = TestCa::new("Beta partners CA");
    let beta_pem = dir.path().join("beta.pem");
    std::fs::write(&beta_pem, &beta_ca.pem).unwrap();
    ok(s.platform.cli(&[
        "auth",
        "mtls",
        "add",
        "beta",
        "partners",
        "--ca",
        beta_pem.to_str().unwrap(),
    ]));
    let f = function_dir(
        s.root(),
        "orders",
        "beta",
        &guest("echo-c"),
        &["/beta/orders"],
        "[invoke]\nfrom = [\"mtls:partners\"]\n",
    );
    s.sign(&f.wasm, &beta_key);
    ok(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    let (status, body) = get(&addr, &server_ca, Some(&partner), "/beta/orders");
    assert_eq!(status, 403, "acme's CA satisfied beta's caller: {body}");
    let beta_partner = beta_ca.client("beta-billing", None, (2020, 2090));
    assert_eq!(
        get(&addr, &server_ca, Some(&beta_partner), "/beta/orders").0,
        200
    );
    assert_eq!(
        get(&addr, &server_ca, Some(&beta_partner), "/orders").0,
        403
    );

    // The configuration directory carries the CA: exported beside tenant.toml, no drift.
    let config = dir.path().join("config");
    let c = config.to_str().unwrap();
    ok(s.platform.cli(&["export", c]));
    assert_eq!(
        std::fs::read_to_string(config.join("tenants/acme/cas/partners.pem")).unwrap(),
        partners.pem
    );
    let toml = std::fs::read_to_string(config.join("tenants/acme/tenant.toml")).unwrap();
    assert!(toml.contains("[[mtls_cas]]"), "{toml}");
    let o = s.platform.cli(&["drift", c]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    // Removing the CA takes effect at once, and is drift.
    ok(s.platform
        .cli(&["auth", "mtls", "remove", "acme", "partners"]));
    assert_eq!(get(&addr, &server_ca, Some(&partner), "/orders").0, 403);
    let o = s.platform.cli(&["drift", c]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stdout(&o).contains("mtls:partners"), "{}", stdout(&o));
    // Applying the directory puts it back in force.
    ok(s.platform.cli(&["apply", c]));
    assert_eq!(get(&addr, &server_ca, Some(&partner), "/orders").0, 200);
    // No record holds key material.
    let all = ok(s.platform.cli(&["audit", "tail", "-n", "200", "--json"]));
    assert!(!all.contains("PRIVATE KEY"));
}

#[test]
fn over_plain_http_an_mtls_function_deploys_and_no_request_matches_it() {
    let s = Setup::new();
    s.deploy(
        "orders",
        "echo-c",
        &["/orders"],
        "[invoke]\nfrom = [\"mtls:spiffe\"]\n",
    );
    s.deploy(
        "open",
        "echo-c",
        &["/open"],
        "[invoke]\nfrom = [\"mtls:spiffe\", \"public\"]\n",
    );
    // A forged caller header is no certificate.
    let r = http(
        &s.platform.gateway,
        "GET",
        "/orders",
        &[(
            "x-zerofn-caller",
            "mtls:spiffe/spiffe://zerofn.local/tenant/acme/fn/x",
        )],
        b"",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = http(&s.platform.gateway, "GET", "/open", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        !seen_headers(&r.text())
            .iter()
            .any(|(n, _)| n == "x-zerofn-caller"),
        "a public caller was named"
    );
}
