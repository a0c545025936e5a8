//! The platform process and its control API as an attacker meets them: a
//! second `zerofn up` on a data directory in use, unsafe directory and token
//! modes, request bodies with fields no request type has, refusals that must
//! leave a record, an operator without grants sending a large body, and
//! deploy racing undeploy of one function.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::harness::*;
use crate::Setup;

/// Run `zerofn up` on `data_dir` expecting it to fail at start; returns its
/// stderr. Bounded: a platform that starts anyway is killed and the test fails.
fn up_fails(data_dir: &Path) -> String {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "up",
            "--gateway-addr",
            "127.0.0.1:0",
            "--api-addr",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`zerofn up` on `{}` did not fail", data_dir.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(!status.success(), "`zerofn up` succeeded: {err}");
    err
}

fn token(s: &Setup) -> String {
    std::fs::read_to_string(s.platform.data_dir.join("operator-token"))
        .unwrap()
        .trim()
        .to_owned()
}

/// A control-API request with the operator token.
fn api(s: &Setup, method: &str, path: &str, body: &[u8]) -> HttpResponse {
    let auth = format!("Bearer {}", token(s));
    http(
        &s.platform.api,
        method,
        path,
        &[("Authorization", &auth)],
        body,
    )
}

fn count(records: &[serde_json::Value], action: &str) -> usize {
    records.iter().filter(|r| r["action"] == action).count()
}

#[test]
fn a_second_up_on_a_data_directory_in_use_is_refused_and_the_first_keeps_serving() {
    let s = Setup::new();
    s.deploy("hello", "hello-c", &["/hello"], "");
    let data = s.platform.data_dir.clone();
    let pid = std::fs::read_to_string(data.join("lock")).unwrap();
    let pid = pid.trim();
    assert!(pid.parse::<u32>().is_ok(), "lock file holds `{pid}`");

    let err = up_fails(&data);
    assert!(
        err.contains(&format!(
            "data directory `{}` is in use by another zerofn (pid {pid})",
            data.display()
        )),
        "{err}"
    );
    // The second process changed nothing: one start in the log.
    assert_eq!(count(&s.audit(100), "platform.start"), 1);

    // The first still serves and audits: a deploy, an invocation, an intact chain.
    s.deploy("echo", "echo-c", &["/echo"], "");
    let r = s.platform.get("/hello");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s.platform.post("/echo", b"still here");
    assert_eq!(r.status, 200, "{}", r.text());
    let verify = ok(s.platform.cli(&["audit", "verify"]));
    assert!(verify.contains("intact"), "{verify}");
    let records = s.audit(100);
    assert_eq!(count(&records, "platform.start"), 1);
    assert!(records
        .iter()
        .any(|r| r["action"] == "invoke" && r["function"] == "echo" && r["status"] == 200));

    // Once the first has stopped, the directory is free again.
    let s = s.restart();
    assert_eq!(s.platform.get("/hello").status, 200);
}

#[test]
fn a_data_directory_others_can_write_or_a_readable_token_is_refused_and_left_as_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    // A shared directory (as `/tmp` is): refused, its mode untouched, nothing written.
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let err = up_fails(&shared);
    assert!(err.contains("is writable by group or others"), "{err}");
    assert!(err.contains(&format!("`{}`", shared.display())), "{err}");
    let mode = std::fs::metadata(&shared).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o1777);
    assert_eq!(std::fs::read_dir(&shared).unwrap().count(), 0);

    // A new directory is made 0700; an existing 0755 one is used as it is.
    let data = tmp.path().join("new/data");
    let p = Platform::start(&data);
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    for file in ["zerofn.db", "operator-token", "lock"] {
        let mode = std::fs::metadata(data.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    assert!(p.stop().success());
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = Platform::start(&data);
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755, "an existing directory's mode was changed");
    assert!(p.stop().success());

    // An operator token others can read is not used.
    let token = data.join("operator-token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = up_fails(&data);
    assert!(err.contains("chmod 600"), "{err}");
    assert!(err.contains(&format!("`{}`", token.display())), "{err}");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let p = Platform::start(&data);
    assert!(p.stop().success());
}

/// The routes of the control API that read a body, from its route table
/// (`api/routes.rs`) and the handlers in `api.rs` themselves: a route added
/// there is walked here without anyone listing it.
fn body_routes() -> Vec<(String, String)> {
    let table = include_str!("../../../server/src/api/routes.rs");
    let handlers = [
        include_str!("../../../server/src/api.rs"),
        include_str!("../../../server/src/api/callers.rs"),
        include_str!("../../../server/src/api/config.rs"),
        include_str!("../../../server/src/api/zones.rs"),
        include_str!("../../../server/src/api/queues.rs"),
        include_str!("../../../server/src/api/objects.rs"),
        include_str!("../../../server/src/api/mtls.rs"),
    ]
    .concat();
    let mut routes: Vec<(String, String, String)> = Vec::new();
    for line in table.lines() {
        // `operator!(METHOD "/path", ACTION on RESOURCE, refusal ACTION, handler),`
        let Some(entry) = line.trim().strip_prefix("operator!(") else {
            continue;
        };
        let (method, rest) = entry.split_once(" \"").unwrap();
        let (path, rest) = rest.split_once('"').unwrap();
        let handler = rest.trim_end_matches("),").rsplit(", ").next().unwrap();
        routes.push((
            method.to_owned(),
            path.to_owned(),
            handler.trim().to_owned(),
        ));
    }
    assert!(
        routes.len() >= 20,
        "found only {} routes in api/routes.rs",
        routes.len()
    );
    routes
        .into_iter()
        .filter(|(_, _, handler)| {
            let start = handlers
                .find(&format!("async fn {handler}("))
                .unwrap_or_else(|| panic!("no handler `{handler}` in api.rs"));
            let end = start + handlers[start..].find("\n    }\n").unwrap();
            handlers[start..end].contains("body")
        })
        .map(|(method, path, _)| {
            let path: Vec<String> = path
                .split('/')
                .map(|seg| match seg.strip_prefix('{') {
                    Some("tenant}") => "acme".to_owned(),
                    Some(_) => "x".to_owned(),
                    None => seg.to_owned(),
                })
                .collect();
            (method, path.join("/"))
        })
        .collect()
}

const MANIFEST: &str =
    "name = \"hello\"\ntenant = \"acme\"\ncomponent = \"hello.wasm\"\nroutes = [\"/hello\"]\n";

#[test]
fn every_request_type_refuses_an_unknown_field_naming_it_and_the_refusal_is_audited() {
    let s = Setup::new();
    let routes = body_routes();
    assert!(routes.len() >= 10, "{routes:?}");
    // The unknown field comes first, so the refusal names it whatever else
    // the type requires; the manifest lets deploy and explain find their tenant.
    let body = format!(
        "{{\"zz_unknown_field\": 1, \"manifest\": {}}}",
        serde_json::to_string(MANIFEST).unwrap()
    );
    for (method, path) in &routes {
        let r = api(&s, method, path, body.as_bytes());
        assert_eq!(r.status, 400, "{method} {path}: {}", r.text());
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains("unknown field `zz_unknown_field`"),
            "{method} {path}: {message}"
        );
    }
    // Nested types too: an attestation of a deploy, and the field from the report.
    let nested = serde_json::json!({
        "manifest": MANIFEST,
        "component": "AGFzbQ==",
        "bundle": "{}",
        "attestations": [{"name": "a.intoto.jsonl", "content": "", "zz_nested": 1}],
    });
    let r = api(&s, "POST", "/v1/deployments", nested.to_string().as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("zz_nested"), "{}", r.text());
    let r = api(
        &s,
        "PUT",
        "/v1/tenants/acme/admission",
        br#"{"requireSbom": true}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("requireSbom"), "{}", r.text());
    let shown = ok(s.platform.cli(&["admission", "show", "acme", "--json"]));
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["require_sbom"], false);

    // Every refusal left its record.
    let records = s.audit(200);
    for (method, path) in &routes {
        assert!(
            records.iter().any(|r| r["decision"] == "deny"
                && r["status"] == 400
                && r["reason"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(&format!("{method} `{path}`"))
                        && t.contains("zz_unknown_field"))),
            "no record of the refusal of {method} {path}"
        );
    }
}

/// Path parameters are percent-decoded (any escape, not only `%3A`); one that
/// decodes to no name (an escaped `/` or NUL, bytes that are not UTF-8) is an
/// audited 400 naming the problem.
#[test]
fn path_parameters_are_percent_decoded_and_those_holding_no_name_are_refused() {
    let s = Setup::new();
    let r = api(&s, "DELETE", "/v1/tenants/acme/keys/sha256%3Ano%73uch", b"");
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("key `sha256:nosuch`"), "{}", r.text());
    let r = api(&s, "GET", "/v1/tenants/ac%6De/routes", b"");
    assert_eq!(r.status, 200, "{}", r.text());
    for (path, problem) in [
        ("/v1/tenants/acme/keys/a%2Fb", "escaped `/`"),
        ("/v1/tenants/ac%00me/routes", "escaped NUL"),
        ("/v1/operators/%FF", "UTF-8"),
    ] {
        let method = if path.ends_with("routes") {
            "GET"
        } else {
            "DELETE"
        };
        let r = api(&s, method, path, b"");
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains(problem), "{path}: {message}");
        let records = s.audit(20);
        assert!(
            records.iter().any(|r| r["decision"] == "deny"
                && r["status"] == 400
                && r["reason"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(&format!("{method} `{path}`")))),
            "no record of the refusal of {method} {path}"
        );
    }
}

/// A path segment that no tenant or function can be named (not a DNS label) names nothing:
/// the answer is the 404 of an unknown tenant or function, and the refusal is audited, as
/// for a name that is valid but unknown.
#[test]
fn path_names_that_are_no_names_are_unknown_and_the_refusal_is_audited() {
    let s = Setup::new();
    for (method, path, what) in [
        ("GET", "/v1/tenants/Acme/routes", "tenant `Acme`"),
        ("GET", "/v1/tenants/acme_co/policy", "tenant `acme_co`"),
        ("DELETE", "/v1/functions/acme/-x", "`acme/-x`"),
        (
            "GET",
            "/v1/tenants/ACME/functions/hello/policy",
            "`ACME/hello`",
        ),
    ] {
        let r = api(&s, method, path, b"");
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
        let body = r.json();
        assert_eq!(body["error"]["kind"], "not_found", "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains(what), "{path}: {message}");
        let records = s.audit(20);
        assert!(
            records.iter().any(|r| r["decision"] == "deny"
                && r["status"] == 404
                && r["reason"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(&format!("{method} `{path}`")))),
            "no record of the refusal of {method} {path}: {records:?}"
        );
    }
    // A valid name that is unknown answers the same way.
    let r = api(&s, "GET", "/v1/tenants/nosuch/routes", b"");
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error"]["kind"], "not_found");
}

#[test]
fn control_api_refusals_are_audited_with_short_records() {
    let s = Setup::new();
    let before = s.audit(1)[0]["seq"].as_i64().unwrap();
    // Not JSON.
    let r = api(&s, "PUT", "/v1/control-policy", b"{not json");
    assert_eq!(r.status, 400, "{}", r.text());
    // A declared body over the cap: refused without reading it.
    let auth = format!("Bearer {}", token(&s));
    let r = head_only(
        &s.platform.api,
        &format!(
            "POST /v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: 1073741824\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    // No such endpoint, with a long path.
    let long = format!("/v1/{}", "a".repeat(5_000));
    let r = api(&s, "GET", &long, b"");
    assert_eq!(r.status, 404, "{}", r.text());
    let r = api(&s, "GET", "/v1/tenants/acme", b"");
    assert_eq!(r.status, 404, "{}", r.text());

    let records: Vec<_> = s
        .audit(50)
        .into_iter()
        .filter(|r| r["seq"].as_i64().unwrap() > before)
        .collect();
    let refused = |status: u16, start: &str| {
        records.iter().find(|r| {
            r["decision"] == "deny"
                && r["status"] == status
                && r["actor"] == "operator"
                && r["reason"].as_str().unwrap().starts_with(start)
        })
    };
    let bad = refused(400, "PUT `/v1/control-policy`").expect("400 record");
    assert_eq!(bad["action"], "control_policy.set");
    let big = refused(413, "POST `/v1/tenants`").expect("413 record");
    assert_eq!(big["action"], "tenant.create");
    let none = refused(404, "GET `/v1/aaaa").expect("404 record");
    assert_eq!(none["action"], "api.authorize");
    assert!(
        none["reason"].as_str().unwrap().len() < 1024,
        "{}",
        none["reason"]
    );
    refused(404, "GET `/v1/tenants/acme`").expect("404 record");
}

/// Send `head` (and no body) over plain TCP; the response as text.
fn head_only(addr: &str, head: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    read_what_comes(&mut s)
}

/// Read until the peer closes, an error, or the read timeout.
fn read_what_comes(s: &mut impl Read) -> String {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&raw).into_owned()
}

/// Over TLS as the operator of `cert`/`key`: send `head` and no body.
fn tls_head_only(addr: &str, ca: &Path, cert: &Path, key: &Path, head: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    let ip: std::net::SocketAddr = addr.parse().unwrap();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::IpAddress(ip.ip().into()))
            .unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(head.as_bytes()).unwrap();
    tls.flush().unwrap();
    read_what_comes(&mut tls)
}

#[test]
fn an_operator_without_grants_is_refused_before_the_body_is_read() {
    let s = Setup::with_args(&["--control-tls"]);
    let certs = s.root().join("certs");
    ok(s.platform
        .cli(&["operator", "add", "bob", "--out", certs.to_str().unwrap()]));
    let (cert, key, ca) = (
        certs.join("bob.crt"),
        certs.join("bob.key"),
        certs.join("ca.pem"),
    );
    // Bob declares 100 MiB and sends none of it: the answer comes from the
    // head alone (before, the server waited for the body to read and parse it).
    for (method, path) in [
        ("POST", "/v1/deployments"),
        ("POST", "/v1/admission/explain"),
        ("PUT", "/v1/tenants/acme/admission"),
        ("POST", "/v1/tenants"),
    ] {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\nConnection: close\r\n\r\n"
        );
        let r = tls_head_only(&s.platform.api, &ca, &cert, &key, &head);
        assert!(r.starts_with("HTTP/1.1 403"), "{method} {path}: {r:?}");
        assert!(r.contains("\"forbidden\""), "{method} {path}: {r}");
    }
    let denied: Vec<_> = s
        .audit(50)
        .into_iter()
        .filter(|r| {
            r["action"] == "api.authorize"
                && r["decision"] == "deny"
                && r["actor"] == "operator:bob"
        })
        .collect();
    assert_eq!(denied.len(), 4, "{denied:?}");
    assert!(
        denied.iter().any(|r| {
            let reason = r["reason"].as_str().unwrap();
            reason.contains("deploy") && reason.contains("on any tenant")
        }),
        "{denied:?}"
    );
}

#[test]
fn concurrent_deploys_and_undeploys_of_one_function_leave_row_route_and_svid_in_agreement() {
    let s = Setup::new();
    let f = function_dir(
        s.root(),
        "hello",
        "acme",
        &guest("hello-c"),
        &["/hello"],
        "",
    );
    s.sign(&f.wasm, &s.key);
    let body = serde_json::json!({
        "manifest": std::fs::read_to_string(f.dir.join("zerofn.toml")).unwrap(),
        "component": base64::engine::general_purpose::STANDARD.encode(std::fs::read(&f.wasm).unwrap()),
        "bundle": std::fs::read_to_string(f.dir.join("hello.wasm.sigstore.json")).unwrap(),
        "attestations": [{
            "name": "zerofn.manifest.sigstore.json",
            "content": std::fs::read_to_string(f.dir.join("zerofn.manifest.sigstore.json")).unwrap(),
        }],
    })
    .to_string();
    let (api_addr, auth) = (s.platform.api.clone(), format!("Bearer {}", token(&s)));
    for round in 0..4 {
        std::thread::scope(|scope| {
            for worker in 0..4 {
                let (api_addr, auth, body) = (&api_addr, &auth, &body);
                scope.spawn(move || {
                    for i in 0..5 {
                        let headers = [("Authorization", auth.as_str())];
                        let r = if (worker + i + round) % 2 == 0 {
                            http(
                                api_addr,
                                "POST",
                                "/v1/deployments",
                                &headers,
                                body.as_bytes(),
                            )
                        } else {
                            http(
                                api_addr,
                                "DELETE",
                                "/v1/functions/acme/hello",
                                &headers,
                                b"",
                            )
                        };
                        assert!(
                            [200, 201, 404].contains(&r.status),
                            "unexpected {}: {}",
                            r.status,
                            r.text()
                        );
                    }
                });
            }
        });
        let row = s
            .functions()
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "hello");
        let served = s.platform.get("/hello").status;
        let svid = api(&s, "GET", "/v1/functions/acme/hello/svid", b"").status;
        assert_eq!(
            (served, svid),
            if row { (200, 200) } else { (404, 404) },
            "round {round}: row {row}, gateway {served}, svid {svid}"
        );
    }
    let verify = ok(s.platform.cli(&["audit", "verify"]));
    assert!(verify.contains("intact"), "{verify}");
}
