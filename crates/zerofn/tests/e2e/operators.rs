//! Operators: client certificates issued by the platform CA authenticate to
//! the control API over TLS (`zerofn up --control-tls`), and the control
//! policy (Cedar) decides what each operator may do.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::*;
use crate::Setup;

/// Alice may read tenants and functions, and deploy to (and read) acme.
const ALICE_POLICY: &str = r#"
@id("alice-acme")
permit (principal == Zerofn::Operator::"alice",
        action in [Zerofn::Action::"deploy", Zerofn::Action::"tenant.read"],
        resource == Zerofn::Tenant::"acme");
@id("alice-lists")
permit (principal == Zerofn::Operator::"alice",
        action == Zerofn::Action::"tenant.read",
        resource == Zerofn::Platform::"platform");
"#;

/// Whether acme's compiled policies are free of the grants alice tried to add.
fn err_free_policy(p: &Platform) -> bool {
    let shown = ok(p.cli(&["policy", "show", "acme", "hello"]));
    !shown.contains("secrets") && !shown.contains("demo")
}

/// Run the CLI as the operator whose certificate and key are `cert`/`key`.
pub(crate) fn as_operator(s: &Setup, cert: &Path, key: &Path, ca: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(&s.platform.data_dir)
        .arg("--client-cert")
        .arg(cert)
        .arg("--client-key")
        .arg(key)
        .arg("--ca-bundle")
        .arg(ca)
        .args(args)
        .env_remove("ZEROFN_API_URL")
        .env_remove("ZEROFN_TOKEN")
        .output()
        .expect("run zerofn")
}

fn write(root: &Path, name: &str, text: &str) -> PathBuf {
    let path = root.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A certificate for `spiffe://zerofn.local/operator/alice` from a CA that is
/// not the platform's.
fn foreign_alice(root: &Path) -> (PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.subject_alt_names = vec![SanType::URI(
        "spiffe://zerofn.local/operator/alice".try_into().unwrap(),
    )];
    leaf.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    (
        write(root, "foreign.crt", &cert.pem()),
        write(root, "foreign.key", &key.serialize_pem()),
    )
}

#[test]
fn operators_authenticate_with_certificates_and_are_authorized_by_the_control_policy() {
    // The token works over TLS: the setup creates tenant acme with it.
    let s = Setup::with_args(&["--control-tls"]);
    let p = &s.platform;
    let api_json = std::fs::read_to_string(p.data_dir.join("api.json")).unwrap();
    assert!(api_json.contains("https://"), "{api_json}");
    ok(p.cli(&[
        "tenant",
        "create",
        "demo",
        "--signing-key",
        &format!("{}.pub", s.key.display()),
    ]));

    // Issue alice's certificate; the key is made by the CLI and kept private.
    let certs = s.root().join("certs");
    let out = ok(p.cli(&[
        "operator",
        "add",
        "alice",
        "--out",
        certs.to_str().unwrap(),
        "--ttl-hours",
        "2",
    ]));
    assert!(
        out.contains("spiffe://zerofn.local/operator/alice"),
        "{out}"
    );
    let (cert, key, ca) = (
        certs.join("alice.crt"),
        certs.join("alice.key"),
        certs.join("ca.pem"),
    );
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!out.contains("PRIVATE KEY"));
    let alice = |args: &[&str]| as_operator(&s, &cert, &key, &ca, args);
    let bad_names = fails(p.cli(&[
        "operator",
        "add",
        "Alice!",
        "--out",
        certs.to_str().unwrap(),
    ]));
    assert!(bad_names.contains("not an operator name"), "{bad_names}");
    let root = fails(p.cli(&["operator", "add", "root", "--out", certs.to_str().unwrap()]));
    assert!(root.contains("operator token's name"), "{root}");

    // Authenticated, but no policy grants alice anything yet.
    let err = fails(alice(&["tenant", "list"]));
    assert!(
        err.contains("HTTP 403") && err.contains("no permit policy matched"),
        "{err}"
    );

    let policy = write(s.root(), "control.cedar", ALICE_POLICY);
    let set = ok(p.cli(&["operator", "policy", "set", policy.to_str().unwrap()]));
    assert!(set.contains("alice-acme"), "{set}");
    let shown = ok(p.cli(&["operator", "policy", "show"]));
    assert!(
        shown.contains("zerofn-root") && shown.contains("alice-lists"),
        "{shown}"
    );

    // What the policy permits.
    assert!(ok(alice(&["tenant", "list"])).contains("acme"));
    ok(alice(&["functions"]));
    let f = function_dir(
        s.root(),
        "hello",
        "acme",
        &guest("hello-c"),
        &["/hello"],
        "",
    );
    s.sign(&f.wasm, &s.key);
    ok(alice(&["deploy", f.dir.to_str().unwrap()]));
    assert_eq!(p.get("/hello").text(), "hello from zerofn\n");

    // `deploy` alone does not widen a function's powers: a manifest that grants a bucket
    // or another tenant's callers needs `permissions.grant` too (like iam:PassRole).
    for grants in [
        "[permissions]\nkv = [\"secrets:read-write\"]\n",
        "[invoke]\nfrom = [\"public\", \"tenant:demo\"]\n",
    ] {
        std::fs::write(
            f.dir.join("zerofn.toml"),
            format!("name = \"hello\"\ntenant = \"acme\"\ncomponent = \"hello.wasm\"\nroutes = [\"/hello\"]\n{grants}"),
        )
        .unwrap();
        s.sign(&f.wasm, &s.key);
        let err = fails(alice(&["deploy", f.dir.to_str().unwrap()]));
        assert!(
            err.contains("HTTP 403")
                && err.contains("needs `permissions.grant` on tenant `acme` as well as `deploy`"),
            "{err}"
        );
    }
    assert!(
        err_free_policy(p),
        "the forged grants reached the policy set"
    );
    // Nor may alice roll back.
    let err = fails(alice(&[
        "deploy",
        f.dir.to_str().unwrap(),
        "--allow-rollback",
        "because",
    ]));
    assert!(err.contains("needs `deploy.rollback`"), "{err}");
    // Not with `zerofn rollback` either: going back is `deploy.rollback`, not `deploy`.
    let err = fails(alice(&["rollback", "acme", "hello", "--to", "1"]));
    assert!(
        err.contains("HTTP 403") && err.contains("deploy.rollback"),
        "{err}"
    );
    // Granted, the same deploy goes through and the audit record lists what it granted.
    let granting = write(
        s.root(),
        "granting.cedar",
        &format!("{ALICE_POLICY}\n@id(\"alice-grants\") permit (principal == Zerofn::Operator::\"alice\", action == Zerofn::Action::\"permissions.grant\", resource == Zerofn::Tenant::\"acme\");\n"),
    );
    ok(p.cli(&["operator", "policy", "set", granting.to_str().unwrap()]));
    ok(alice(&["deploy", f.dir.to_str().unwrap()]));
    let granted = s
        .audit(10)
        .into_iter()
        .rev()
        .find(|r| r["action"] == "deploy" && r["decision"] == "allow")
        .unwrap();
    assert!(
        granted["reason"]
            .as_str()
            .unwrap()
            .contains("grants invoke from tenant:demo"),
        "{granted}"
    );

    // And nothing else: another tenant, the audit log, operators.
    let other = function_dir(s.root(), "hello", "demo", &guest("hello-c"), &["/demo"], "");
    s.sign(&other.wasm, &s.key);
    let err = fails(alice(&["deploy", other.dir.to_str().unwrap()]));
    assert!(
        err.contains("HTTP 403") && err.contains(r#"Zerofn::Tenant::"demo""#),
        "{err}"
    );
    assert_eq!(p.get("/demo").status, 404);
    let err = fails(alice(&["audit", "tail"]));
    assert!(
        err.contains("HTTP 403") && err.contains("audit.read"),
        "{err}"
    );
    let err = fails(alice(&["operator", "list"]));
    assert!(err.contains("HTTP 403"), "{err}");

    // The token still does everything; the audit log names alice and the denials.
    let records = s.audit(100);
    let deploy = records
        .iter()
        .find(|r| r["action"] == "deploy" && r["decision"] == "allow")
        .expect("deploy record");
    assert_eq!(deploy["actor"], "operator:alice");
    let denied: Vec<_> = records
        .iter()
        .filter(|r| r["action"] == "api.authorize" && r["decision"] == "deny")
        .collect();
    assert!(denied.iter().any(|r| r["tenant"] == "demo"
        && r["reason"]
            .as_str()
            .unwrap()
            .contains("no permit policy matched")));

    // A forbid is named in the refusal and the audit record.
    let with_forbid = format!(
        "{ALICE_POLICY}\n@id(\"no-acme-deploys\") forbid (principal == Zerofn::Operator::\"alice\", action == Zerofn::Action::\"deploy\", resource);\n"
    );
    let forbid = write(s.root(), "forbid.cedar", &with_forbid);
    ok(p.cli(&["operator", "policy", "set", forbid.to_str().unwrap()]));
    let err = fails(alice(&["undeploy", "acme", "hello"]));
    assert!(err.contains("forbidden by no-acme-deploys"), "{err}");
    ok(p.cli(&["operator", "policy", "set", policy.to_str().unwrap()]));

    // An invalid control policy is refused whole; the old one stays in force.
    let bad = write(
        s.root(),
        "bad.cedar",
        "@id(\"ok\") permit (principal, action == Zerofn::Action::\"audit.read\", resource);\n@id(\"bad\") permit (principal, action == Zerofn::Action::\"deploy\", resource) when { context.nosuch == 1 };\n",
    );
    let err = fails(p.cli(&["operator", "policy", "set", bad.to_str().unwrap()]));
    assert!(
        err.contains("HTTP 400") && err.contains("policy `bad`"),
        "{err}"
    );
    ok(alice(&["tenant", "list"]));
    assert!(fails(alice(&["audit", "tail"])).contains("HTTP 403"));

    // A certificate from another CA for the same SPIFFE ID is refused.
    let (foreign_cert, foreign_key) = foreign_alice(s.root());
    let err = fails(as_operator(
        &s,
        &foreign_cert,
        &foreign_key,
        &ca,
        &["tenant", "list"],
    ));
    // TLS 1.3 finishes the client's side of the handshake before the server
    // checks the certificate, so the client sees the refusal as an alert or a
    // closed connection, never as an answer.
    assert!(!err.contains("HTTP "), "{err}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let refused = s.audit(5);
        if refused.iter().any(|r| {
            r["action"] == "api.authenticate"
                && r["reason"]
                    .as_str()
                    .unwrap()
                    .contains("TLS handshake refused the client certificate")
        }) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "handshake refusal not audited: {refused:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Without a certificate or the token nothing works.
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(s.root().join("empty"))
        .args(["--ca-bundle", ca.to_str().unwrap(), "tenant", "list"])
        .env("ZEROFN_API_URL", format!("https://{}", p.api))
        .env("ZEROFN_TOKEN", "not-the-token")
        .output()
        .unwrap();
    assert!(fails(out).contains("HTTP 401"));

    // Removing alice revokes her certificate at once.
    let removed = ok(p.cli(&["operator", "remove", "alice"]));
    assert!(removed.contains("removed operator alice"), "{removed}");
    let err = fails(alice(&["tenant", "list"]));
    assert!(err.contains("HTTP 401") && err.contains("revoked"), "{err}");
    let list = ok(p.cli(&["operator", "list"]));
    assert!(list.contains("alice") && list.contains("revoked"), "{list}");
    let records = s.audit(20);
    assert!(records
        .iter()
        .any(|r| r["action"] == "api.authenticate" && r["decision"] == "deny"));

    // The revocation survives a restart.
    let data = p.data_dir.clone();
    let Setup {
        tmp,
        platform,
        key: _,
    } = s;
    assert!(platform.stop().success());
    let p = Platform::start_with(&data, &["--control-tls"]);
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args(["--client-cert", cert.to_str().unwrap()])
        .args(["--client-key", key.to_str().unwrap()])
        .args(["tenant", "list"])
        .env_remove("ZEROFN_API_URL")
        .env_remove("ZEROFN_TOKEN")
        .output()
        .unwrap();
    assert!(fails(out).contains("HTTP 401"));
    ok(p.cli(&["tenant", "list"]));
    drop(tmp);
}
