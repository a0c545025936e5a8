//! JWT issuers registered with `--jwks-url`, end to end, inside a network namespace the
//! test makes (`unshare -rn`, as `egress.rs` does, with its DNS server): an HTTPS JWKS
//! server on a "public" address (93.184.216.34) with a certificate from a test CA given to
//! the platform by `--egress-ca-bundle`, and the same server on the forbidden addresses
//! the refused URLs resolve to, which must see no connection.
//!
//! What it shows: a URL that is not https, resolves into a special-purpose range, redirects
//! or serves an invalid JWKS is refused at `auth jwt add` with the reason, and nothing is
//! stored; a registered URL's keys verify tokens; a rotated key is picked up by the
//! refresh a token with its unknown `kid` asks for (that token itself is refused: requests
//! never wait on a fetch); with the server down, the keys in force still verify, across a
//! restart, and the failed fetch is shown by `auth jwt list` and audited.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};

use super::egress::{dns_answering, sh};
use super::*;

const NETNS_ENV: &str = "ZEROFN_JWKS_NETNS";
const TEST_NAME: &str =
    "jwks_url::issuer_keys_come_from_a_checked_https_url_follow_rotation_and_survive_the_server_going_down";
const ISS: &str = "https://login.public.test";
const URL: &str = "https://idp.public.test:8443/jwks";

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A P-256 signing key published under `kid`.
struct Key {
    kid: &'static str,
    key: SigningKey,
}

impl Key {
    fn new(kid: &'static str, seed: u8) -> Key {
        Key {
            kid,
            key: SigningKey::from_bytes(&[seed; 32].into()).unwrap(),
        }
    }

    fn jwk(&self) -> Value {
        let p = self.key.verifying_key().to_encoded_point(false);
        json!({"kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig",
               "x": b64(p.x().unwrap()), "y": b64(p.y().unwrap())})
    }

    fn token_with_kid(&self, kid: &str) -> String {
        let header = json!({"alg": "ES256", "kid": kid});
        let claims = json!({"iss": ISS, "aud": "orders-api", "sub": "alice",
                            "iat": now() - 5, "exp": now() + 600});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig: Signature = self.key.sign(input.as_bytes());
        format!("Bearer {input}.{}", b64(&sig.to_bytes()))
    }

    fn token(&self) -> String {
        self.token_with_kid(self.kid)
    }
}

fn jwks(keys: &[&Key]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}).to_string()
}

/// An HTTPS server answering `/jwks` with the current document (as `text/plain`: the
/// platform must not care), `/redirect` with a 302 to `/jwks` and `/private` with a JWKS
/// holding a private key; counting requests. `down` closes its port.
struct JwksServer {
    document: Arc<Mutex<String>>,
    requests: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl JwksServer {
    fn start(addr: SocketAddr, tls: Arc<rustls::ServerConfig>, document: &str) -> JwksServer {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let server = JwksServer {
            document: Arc::new(Mutex::new(document.to_owned())),
            requests: Arc::new(AtomicUsize::new(0)),
            down: Arc::new(AtomicBool::new(false)),
        };
        let (doc, count, down) = (
            server.document.clone(),
            server.requests.clone(),
            server.down.clone(),
        );
        std::thread::spawn(move || {
            // Dropping the listener when `down` closes the port: connections are refused.
            while !down.load(Ordering::SeqCst) {
                let Ok((tcp, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = tcp.set_nonblocking(false);
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                let conn = rustls::ServerConnection::new(tls.clone()).unwrap();
                let mut s = rustls::StreamOwned::new(conn, tcp);
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16384 {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                if head.is_empty() {
                    continue;
                }
                count.fetch_add(1, Ordering::SeqCst);
                let private = {
                    let mut k = Key::new("p", 9).jwk();
                    k["d"] = json!(b64(&[9; 32]));
                    json!({"keys": [k]}).to_string()
                };
                let (status, extra, body) = if head.starts_with("GET /jwks ") {
                    (
                        "200 OK",
                        "cache-control: max-age=600\r\n",
                        doc.lock().unwrap().clone(),
                    )
                } else if head.starts_with("GET /redirect ") {
                    ("302 Found", "location: /jwks\r\n", String::new())
                } else if head.starts_with("GET /private ") {
                    ("200 OK", "", private)
                } else {
                    ("404 Not Found", "", String::new())
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(response.as_bytes());
                s.conn.send_close_notify();
                let _ = s.flush();
            }
        });
        server
    }

    fn serve(&self, document: &str) {
        *self.document.lock().unwrap() = document.to_owned();
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// A test CA and a server certificate it signs for every name the test's DNS answers.
fn tls_setup(dir: &Path) -> (PathBuf, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let names = [
        "idp.public.test",
        "loop.public.test",
        "meta.public.test",
        "127.0.0.1",
    ];
    let leaf = CertificateParams::new(names.map(str::to_owned).to_vec())
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let ca_path = dir.join("egress-ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(leaf.der().to_vec())],
        PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
    .unwrap();
    (ca_path, Arc::new(config))
}

fn get_orders(s: &Setup, bearer: &str) -> HttpResponse {
    http(
        &s.platform.gateway,
        "GET",
        "/orders",
        &[("Authorization", bearer)],
        b"",
    )
}

fn issuers(s: &Setup) -> Value {
    serde_json::from_str::<Value>(&ok(s
        .platform
        .cli(&["auth", "jwt", "list", "acme", "--json"])))
    .unwrap()["issuers"]
        .clone()
}

/// Polls `check` up to 200 times, 50 ms apart; whether it held.
fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn issuer_keys_come_from_a_checked_https_url_follow_rotation_and_survive_the_server_going_down() {
    if std::env::var_os(NETNS_ENV).is_none() {
        // Run this very test again, alone, inside its own user and network namespace.
        let exe = std::env::current_exe().unwrap();
        let status = Command::new("unshare")
            .arg("-rn")
            .arg(exe)
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(NETNS_ENV, "1")
            .status()
            .expect("unshare (util-linux) runs the test in a network namespace");
        assert!(status.success(), "the test failed inside its namespace");
        return;
    }
    sh("ip link set lo up");
    for a in ["93.184.216.34", "169.254.169.254"] {
        sh(&format!("ip addr add {a}/32 dev lo"));
    }
    let stop = Arc::new(AtomicBool::new(false));
    dns_answering("127.0.0.1:53".parse().unwrap(), stop.clone(), |name, _| {
        let ip = |s: &str| -> Vec<IpAddr> { vec![s.parse().unwrap()] };
        match name {
            "idp.public.test" => ip("93.184.216.34"),
            "loop.public.test" => ip("127.0.0.1"),
            "meta.public.test" => ip("169.254.169.254"),
            _ => Vec::new(),
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let (ca, tls) = tls_setup(tmp.path());
    let (k1, k2) = (Key::new("k1", 1), Key::new("k2", 2));
    let idp = JwksServer::start(
        "93.184.216.34:8443".parse().unwrap(),
        tls.clone(),
        &jwks(&[&k1]),
    );
    // The same valid JWKS on the forbidden addresses: only the range check keeps the
    // platform from registering it.
    let forbidden: Vec<(&str, JwksServer)> = ["127.0.0.1:8443", "169.254.169.254:8443"]
        .into_iter()
        .map(|a| {
            let server = JwksServer::start(a.parse().unwrap(), tls.clone(), &jwks(&[&k1]));
            (a, server)
        })
        .collect();

    let up_args = [
        "--egress-dns",
        "127.0.0.1:53",
        "--egress-ca-bundle",
        ca.to_str().unwrap(),
    ];
    let s = Setup::with_args(&up_args);
    let add = |url: &str| {
        s.platform.cli(&[
            "auth",
            "jwt",
            "add",
            "acme",
            "idp",
            "--issuer",
            ISS,
            "--audience",
            "orders-api",
            "--jwks-url",
            url,
            "--algorithms",
            "ES256",
        ])
    };

    // Refused at registration, each with its reason; nothing stored.
    for (url, why) in [
        (
            "http://idp.public.test:8443/jwks",
            "must be an `https://` URL",
        ),
        (
            "https://loop.public.test:8443/jwks",
            "`127.0.0.1` is in the special-purpose range",
        ),
        (
            "https://meta.public.test:8443/jwks",
            "`169.254.169.254` is in the special-purpose range",
        ),
        (
            "https://127.0.0.1:8443/jwks",
            "`127.0.0.1` is in the special-purpose range",
        ),
        (
            "https://0x7f.1:8443/jwks",
            "`127.0.0.1` is in the special-purpose range",
        ),
        ("https://user@idp.public.test:8443/jwks", "userinfo"),
        ("https://idp.public.test:8443/redirect", "answered 302"),
        (
            "https://idp.public.test:8443/private",
            "private or symmetric member `d`",
        ),
        (
            "https://nowhere.public.test:8443/jwks",
            "resolving the host failed",
        ),
    ] {
        let e = fails(add(url));
        assert!(e.contains(why), "{url}: {e}");
    }
    assert_eq!(issuers(&s), json!([]));
    for (addr, server) in &forbidden {
        assert_eq!(server.requests(), 0, "a request reached {addr}");
    }
    let refusals: Vec<Value> = s
        .audit(50)
        .into_iter()
        .filter(|r| r["action"] == "auth.issuer.add")
        .collect();
    assert_eq!(refusals.len(), 9, "{refusals:?}");
    assert!(refusals.iter().all(|r| r["decision"] == "deny"));
    assert!(refusals
        .iter()
        .any(|r| r["reason"].as_str().unwrap().contains("169.254.169.254")));
    // The redirect and the private document were fetched (and refused); no other request.
    assert_eq!(idp.requests(), 2);
    // A registration refused for its name or algorithms makes no request at all.
    for (name, algorithms, why) in [
        ("Bad_Name", "ES256", "issuer name `Bad_Name`"),
        ("idp", "HS256", "`HS256` is not supported"),
    ] {
        let e = fails(s.platform.cli(&[
            "auth",
            "jwt",
            "add",
            "acme",
            name,
            "--issuer",
            ISS,
            "--audience",
            "orders-api",
            "--jwks-url",
            URL,
            "--algorithms",
            algorithms,
        ]));
        assert!(e.contains(why), "{e}");
    }
    assert_eq!(idp.requests(), 2);

    // Registered: fetched once, and listed with the URL and the time of the fetch.
    ok(add(URL));
    assert_eq!(idp.requests(), 3);
    let added = s
        .audit(5)
        .into_iter()
        .find(|r| r["action"] == "auth.issuer.add" && r["decision"] == "allow")
        .expect("the registration is audited");
    assert!(
        added["reason"]
            .as_str()
            .unwrap()
            .ends_with(&format!("keys from {URL}")),
        "{added}"
    );
    let listed = issuers(&s);
    assert_eq!(listed[0]["jwks_url"], URL);
    assert!(listed[0]["jwks_fetched_at"].as_i64().unwrap() > now() - 600);
    assert!(listed[0].get("jwks_error").is_none(), "{listed}");
    let text = ok(s.platform.cli(&["auth", "jwt", "list", "acme"]));
    assert!(
        text.contains(&format!("jwks_url={URL}\tfetched=")) && !text.contains("last_error"),
        "{text}"
    );

    s.deploy(
        "orders",
        "echo-c",
        &["/orders"],
        "[invoke]\nfrom = [\"jwt:idp\"]\n",
    );
    let r = get_orders(&s, &k1.token());
    assert_eq!(r.status, 200, "{}", r.text());

    // Rotation: the server now publishes k2 only. The token naming k2 is refused while
    // the refresh it asked for runs, then accepted; k1 has left the set.
    idp.serve(&jwks(&[&k2]));
    let first = get_orders(&s, &k2.token());
    assert_eq!(first.status, 401, "{}", first.text());
    assert!(eventually(|| get_orders(&s, &k2.token()).status == 200));
    assert_eq!(get_orders(&s, &k1.token()).status, 401);
    // One fetch for the rotation: k1's unknown kid just after asked for none (at most
    // one refresh a minute per issuer).
    assert_eq!(idp.requests(), 4);
    // The refresh's record is queued beside the key swap, not before it:
    // wait (bounded) for it rather than read the tail once.
    let refresh = || {
        s.audit(200)
            .into_iter()
            .find(|r| r["action"] == "auth.jwks.refresh")
    };
    assert!(
        eventually(|| refresh().is_some()),
        "the key change is audited"
    );
    let changed = refresh().expect("the key change is audited");
    assert_eq!(changed["decision"], "allow");
    assert_eq!(changed["tenant"], "acme");
    assert!(changed["reason"].as_str().unwrap().contains("jwt:idp"));

    // The configuration directory: exported as the URL (no document file), planned as no
    // change; a URL resolving to a forbidden address refuses the plan; another issuer with
    // a URL applies, and nothing drifts after.
    let dir = s.root().join("config");
    let d = dir.to_str().unwrap();
    ok(s.platform.cli(&["export", d]));
    let tenant_toml = dir.join("tenants/acme/tenant.toml");
    let toml = std::fs::read_to_string(&tenant_toml).unwrap();
    assert!(toml.contains(&format!("jwks_url = \"{URL}\"")), "{toml}");
    assert!(!dir.join("tenants/acme/jwks/idp.json").exists());
    let o = s.platform.cli(&["plan", d]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    std::fs::write(
        &tenant_toml,
        toml.replace(URL, "https://meta.public.test:8443/jwks"),
    )
    .unwrap();
    // Planned as a change (plans compare, they do not fetch); the apply fetches, and is
    // refused with the reason, changing nothing.
    let o = s.platform.cli(&["plan", d]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("jwt issuer idp"), "{}", stdout(&o));
    let e = fails(s.platform.cli(&["apply", d]));
    assert!(
        e.contains("`169.254.169.254` is in the special-purpose range"),
        "{e}"
    );
    assert_eq!(issuers(&s)[0]["jwks_url"], URL);
    let second = format!(
        "{toml}\n[[jwt_issuers]]\nname = \"idp2\"\nissuer = \"{ISS}\"\naudience = \"other\"\n\
         algorithms = [\"ES256\"]\nleeway_secs = 0\njwks_url = \"{URL}\"\n"
    );
    std::fs::write(&tenant_toml, &second).unwrap();
    ok(s.platform.cli(&["apply", d]));
    let listed = issuers(&s);
    assert_eq!(listed[1]["name"], "idp2");
    assert_eq!(listed[1]["jwks_url"], URL);
    assert!(listed[1]["jwks_fetched_at"].as_i64().is_some());
    let o = s.platform.cli(&["drift", d]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    for (addr, server) in &forbidden {
        assert_eq!(server.requests(), 0, "a request reached {addr}");
    }

    // The server goes down: the keys in force still verify, and after a restart too (the
    // last good document is stored).
    idp.down.store(true, Ordering::SeqCst);
    assert_eq!(get_orders(&s, &k2.token()).status, 200);
    let data = s.platform.data_dir.clone();
    let Setup {
        tmp: setup_tmp,
        platform,
        key,
    } = s;
    assert!(platform.stop().success());
    let s = Setup {
        tmp: setup_tmp,
        platform: Platform::start_with(&data, &up_args),
        key,
    };
    let r = get_orders(&s, &k2.token());
    assert_eq!(r.status, 200, "{}", r.text());
    // An unknown kid asks for a refresh, which fails: shown by `list`, audited, and the
    // keys in force are kept.
    assert_eq!(get_orders(&s, &k2.token_with_kid("k3")).status, 401);
    assert!(eventually(|| issuers(&s)[0].get("jwks_error").is_some()));
    let listed = issuers(&s);
    let error = listed[0]["jwks_error"].as_str().unwrap();
    assert!(error.contains("connection was refused"), "{error}");
    assert!(listed[0]["jwks_fetched_at"].as_i64().is_some());
    let text = ok(s.platform.cli(&["auth", "jwt", "list", "acme"]));
    assert!(text.contains("last_error="), "{text}");
    // The record follows the stored error (the refresher stores, then audits).
    let failed_record = || {
        s.audit(30)
            .into_iter()
            .find(|r| r["action"] == "auth.jwks.refresh" && r["decision"] == "error")
    };
    assert!(eventually(|| failed_record().is_some()));
    let failed = failed_record().unwrap();
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("jwt:idp") && reason.contains("kept"),
        "{reason}"
    );
    assert_eq!(get_orders(&s, &k2.token()).status, 200);
    for (addr, server) in &forbidden {
        assert_eq!(server.requests(), 0, "a request reached {addr}");
    }
    stop.store(true, Ordering::SeqCst);
}
