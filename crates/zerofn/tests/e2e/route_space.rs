//! Tenants' route spaces (issue 11, item 9): an operator assigns route
//! prefixes to each tenant; a deploy outside its tenant's space is refused,
//! and at request time a function serves only the paths its tenant owns
//! (longest assigned prefix), so one tenant's `/...` never captures another
//! tenant's paths. Routes and request paths compare in percent-encoding
//! normal form. Also `audit verify` (item 8): read-only, and a dropped or
//! emptied log is broken, not intact.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::Digest as _;

use crate::harness::*;
use crate::Setup;

/// A tenant with its own key (`--route-prefix` flags appended).
fn create_tenant(s: &Setup, name: &str, prefixes: &[&str]) -> (Output, PathBuf) {
    let key = s.root().join(format!("{name}.key"));
    if !key.exists() {
        ok(s.platform.cli(&["keygen", "--out", key.to_str().unwrap()]));
    }
    let public = format!("{}.pub", key.display());
    let mut args = vec!["tenant", "create", name, "--signing-key", &public];
    for p in prefixes {
        args.extend(["--route-prefix", p]);
    }
    (s.platform.cli(&args), key)
}

/// Write and sign a function of `tenant`; returns `zerofn deploy`'s output.
fn deploy_as(
    s: &Setup,
    tenant: &str,
    key: &Path,
    name: &str,
    guest_name: &str,
    routes: &[&str],
) -> Output {
    let f = function_dir(s.root(), name, tenant, &guest(guest_name), routes, "");
    s.sign(&f.wasm, key);
    s.platform.cli(&["deploy", f.dir.to_str().unwrap()])
}

fn routes_of(s: &Setup, tenant: &str) -> Vec<String> {
    let out = ok(s.platform.cli(&["tenant", "routes", tenant, "--json"]));
    serde_json::from_str(&out).unwrap()
}

/// The path echo-c saw, or the status and body when it was not echo-c.
fn served_by_echo(s: &Setup, path: &str) -> Option<String> {
    let r = s.platform.get(path);
    (r.status == 200 && r.text().starts_with('{'))
        .then(|| r.json()["path"].as_str().unwrap().to_owned())
}

#[test]
fn a_tenant_cannot_deploy_or_serve_outside_its_route_space() {
    // acme owns `/...` (the harness); shop is nested inside it.
    let s = Setup::new();
    let (out, shop_key) = create_tenant(&s, "shop", &["/shop/..."]);
    let out = ok(out);
    assert!(out.contains("/shop/..."), "{out}");
    assert_eq!(routes_of(&s, "acme"), ["/..."]);
    assert_eq!(routes_of(&s, "shop"), ["/shop/..."]);
    // Two tenants may not be given one prefix, however it is spelled.
    let (out, _) = create_tenant(&s, "evil", &["/sh%6Fp/..."]);
    let err = fails(out);
    assert!(
        err.contains("HTTP 409") && err.contains("/shop/...") && err.contains("`shop`"),
        "{err}"
    );
    let tenants = ok(s.platform.cli(&["tenant", "list"]));
    assert!(!tenants.contains("evil"), "{tenants}");
    // Without --route-prefix a tenant gets `/<tenant>/...`.
    let (out, bee_key) = create_tenant(&s, "bee", &[]);
    ok(out);
    assert_eq!(routes_of(&s, "bee"), ["/bee/..."]);

    // acme serves everything it owns with one `/...` function. Before shop
    // deploys anything, shop's space is still not acme's: 404.
    ok(deploy_as(&s, "acme", &s.key, "all", "echo-c", &["/..."]));
    assert_eq!(
        served_by_echo(&s, "/anything").as_deref(),
        Some("/anything")
    );
    for path in [
        "/shop",
        "/shop/",
        "/shop/x",
        "/sh%6Fp/x",
        "/%73hop/x/y",
        "/bee/x",
    ] {
        let r = s.platform.get(path);
        assert_eq!(r.status, 404, "{path} was served: {}", r.text());
    }
    // `%2F` is not a separator: `/shop%2Fx` is one segment, acme's.
    assert_eq!(
        served_by_echo(&s, "/shop%2Fx").as_deref(),
        Some("/shop%2Fx")
    );

    // shop's deployer cannot squat on acme's space, nor take `/...`.
    for (name, route) in [("squat", "/..."), ("hello", "/hello"), ("hi", "/hell%6F")] {
        let err = fails(deploy_as(&s, "shop", &shop_key, name, "hello-c", &[route]));
        assert!(
            err.contains("HTTP 403")
                && err.contains("tenant `shop`'s route space")
                && err.contains("belongs to tenant `acme`"),
            "{route}: {err}"
        );
    }
    // bee (default `/bee/...`) cannot reach `/` either.
    let err = fails(deploy_as(&s, "bee", &bee_key, "all", "hello-c", &["/..."]));
    assert!(err.contains("belongs to tenant `acme`"), "{err}");
    // Nothing was stored for the refusals, and each was audited as a denial.
    let functions = ok(s.platform.cli(&["functions", "--json"]));
    let functions: serde_json::Value = serde_json::from_str(&functions).unwrap();
    let names: Vec<String> = functions
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{}/{}",
                f["tenant"].as_str().unwrap(),
                f["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(names, ["acme/all"]);
    let denied: Vec<_> = s
        .audit(200)
        .into_iter()
        .filter(|r| r["action"] == "deploy" && r["decision"] == "deny" && r["tenant"] == "shop")
        .collect();
    assert_eq!(denied.len(), 3, "{denied:?}");
    assert!(denied[0]["reason"]
        .as_str()
        .unwrap()
        .contains("belongs to tenant `acme`"));
    assert_eq!(s.platform.get("/hello").status, 200);
    assert!(
        served_by_echo(&s, "/hello").is_some(),
        "acme's `/...` serves /hello"
    );

    // In its own space shop deploys; exact routes compare in normal form.
    ok(deploy_as(
        &s,
        "shop",
        &shop_key,
        "hello",
        "hello-c",
        &["/shop/hello"],
    ));
    for path in [
        "/shop/hello",
        "/shop/hell%6F",
        "/%73hop/hello",
        "/shop/%68%65llo",
    ] {
        let r = s.platform.get(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.text(), "hello from zerofn\n", "{path}");
    }
    // Another spelling of the same route is the same route.
    let err = fails(deploy_as(
        &s,
        "shop",
        &shop_key,
        "hello2",
        "hello-c",
        &["/shop/hell%6F"],
    ));
    assert!(
        err.contains("HTTP 409") && err.contains("shop/hello"),
        "{err}"
    );
    // The rest of shop's space is still not acme's.
    assert_eq!(s.platform.get("/shop/other").status, 404);
    // Encoded traversal does not climb out of shop's space into acme's.
    for path in [
        "/shop/%2e%2e/anything",
        "/shop/%2E%2E/hello",
        "/shop/.%2e/x",
    ] {
        let r = s.platform.get(path);
        assert_ne!(r.status, 200, "{path}: {}", r.text());
    }

    // A function may share a route with another tenant's only where the
    // spaces separate them: bee's `/bee/...` is bee's.
    ok(deploy_as(
        &s,
        "bee",
        &bee_key,
        "all",
        "hello-c",
        &["/bee/..."],
    ));
    assert_eq!(s.platform.get("/bee/x").text(), "hello from zerofn\n");
    assert!(served_by_echo(&s, "/beex").is_some());
}

#[test]
fn assignment_changes_take_effect_at_once_and_survive_a_restart() {
    let s = Setup::new();
    let (out, shop_key) = create_tenant(&s, "shop", &["/shop/..."]);
    ok(out);
    ok(deploy_as(&s, "acme", &s.key, "all", "echo-c", &["/..."]));
    ok(deploy_as(
        &s,
        "shop",
        &shop_key,
        "cart",
        "hello-c",
        &["/shop/..."],
    ));
    assert_eq!(s.platform.get("/shop/cart").text(), "hello from zerofn\n");
    assert!(served_by_echo(&s, "/x").is_some());

    // The operator moves shop to `/store/...`: shop's deployed `/shop/...`
    // stops serving at once (it is acme's space again), and shop may deploy
    // into its new space.
    let out = ok(s.platform.cli(&[
        "tenant",
        "routes",
        "shop",
        "--set",
        "/store/...",
        "/st%6Fre2",
    ]));
    assert_eq!(out.lines().collect::<Vec<_>>(), ["/store/...", "/store2"]);
    assert_eq!(
        served_by_echo(&s, "/shop/cart").as_deref(),
        Some("/shop/cart")
    );
    assert_eq!(s.platform.get("/store/x").status, 404);
    ok(deploy_as(
        &s,
        "shop",
        &shop_key,
        "store",
        "hello-c",
        &["/store/...", "/store2"],
    ));
    assert_eq!(s.platform.get("/store/x").text(), "hello from zerofn\n");
    assert_eq!(s.platform.get("/store2").text(), "hello from zerofn\n");
    // An exact assignment owns that path only.
    assert!(served_by_echo(&s, "/store2/x").is_some());
    // Taking acme's prefix is refused, naming acme; nothing changes.
    let err = fails(
        s.platform
            .cli(&["tenant", "routes", "shop", "--set", "/..."]),
    );
    assert!(err.contains("HTTP 409") && err.contains("`acme`"), "{err}");
    assert_eq!(routes_of(&s, "shop"), ["/store/...", "/store2"]);
    // Unknown tenants and bad prefixes are named.
    let err = fails(s.platform.cli(&["tenant", "routes", "nobody"]));
    assert!(err.contains("HTTP 404") && err.contains("nobody"), "{err}");
    let err = fails(
        s.platform
            .cli(&["tenant", "routes", "shop", "--set", "/a/../b"]),
    );
    assert!(err.contains("HTTP 400") && err.contains("/a/../b"), "{err}");
    // Audited: the allowed change and the refusals.
    let sets: Vec<String> = s
        .audit(200)
        .into_iter()
        .filter(|r| r["action"] == "tenant.routes.set")
        .map(|r| r["decision"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sets, ["allow", "deny", "deny"]);

    // After a restart the assignments, and so the routing, are the same.
    let s = s.restart();
    assert_eq!(routes_of(&s, "shop"), ["/store/...", "/store2"]);
    assert_eq!(routes_of(&s, "acme"), ["/..."]);
    assert_eq!(s.platform.get("/store/x").text(), "hello from zerofn\n");
    assert_eq!(
        served_by_echo(&s, "/shop/cart").as_deref(),
        Some("/shop/cart")
    );
}

fn sha256_file(path: &Path) -> Vec<u8> {
    sha2::Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

fn tables(db: &Path) -> Vec<String> {
    // `immutable`: looking must not create `-wal`/`-shm` files either.
    let conn = rusqlite::Connection::open_with_flags(
        format!("file:{}?immutable=1", db.display()),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
    .unwrap();
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<Vec<String>, _>>()
        .unwrap()
}

/// A stopped platform's data directory whose audit table `tamper` changed.
fn stopped_with(tamper: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let platform = Platform::start(&data);
    platform.stop();
    if !tamper.is_empty() {
        open_db(&data).execute_batch(tamper).unwrap();
    }
    (tmp, data)
}

#[test]
fn offline_audit_verify_is_read_only_and_refuses_a_dropped_or_emptied_log() {
    for (tamper, problem) in [
        ("DROP TABLE audit", "has no `audit` table"),
        ("DELETE FROM audit", "has no audit records"),
    ] {
        let (_tmp, data) = stopped_with(tamper);
        let db = data.join("zerofn.db");
        let before = (sha256_file(&db), tables(&db));
        let listing = |dir: &Path| {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let files = listing(&data);
        let err = fails(cli(&data, &["audit", "verify"]));
        assert!(
            err.contains("audit log broken") && err.contains(problem),
            "{tamper}: {err}"
        );
        assert!(!err.contains("intact"), "{err}");
        // Byte for byte unchanged, no table (re)created, no file added.
        assert_eq!((sha256_file(&db), tables(&db)), before, "{tamper}");
        assert_eq!(listing(&data), files, "{tamper}");
    }
    // An intact log still verifies, offline too, and is left as it was.
    let (_tmp, data) = stopped_with("");
    let db = data.join("zerofn.db");
    let hash = sha256_file(&db);
    let out = ok(cli(&data, &["audit", "verify"]));
    assert!(out.contains("audit chain intact"), "{out}");
    assert_eq!(sha256_file(&db), hash);
    // No database at all is an error, and creates nothing.
    let empty = tempfile::tempdir().unwrap();
    let err = fails(cli(empty.path(), &["audit", "verify"]));
    assert!(err.contains("no zerofn database"), "{err}");
    assert!(!empty.path().join("zerofn.db").exists());
}

#[test]
fn audit_verify_reports_an_api_refusal_instead_of_reading_the_file() {
    let s = Setup::with_args(&["--control-tls"]);
    let p = &s.platform;
    // A wrong token: 401, reported (before, it fell back to the local file).
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(&p.data_dir)
        .args(["audit", "verify"])
        .env_remove("ZEROFN_API_URL")
        .env("ZEROFN_TOKEN", "not-the-token")
        .output()
        .unwrap();
    let err = fails(out);
    assert!(err.contains("HTTP 401") && !err.contains("intact"), "{err}");

    // An operator without grants: 403, reported.
    let certs = s.root().join("certs");
    ok(p.cli(&["operator", "add", "carol", "--out", certs.to_str().unwrap()]));
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(&p.data_dir)
        .arg("--client-cert")
        .arg(certs.join("carol.crt"))
        .arg("--client-key")
        .arg(certs.join("carol.key"))
        .arg("--ca-bundle")
        .arg(certs.join("ca.pem"))
        .args(["audit", "verify"])
        .env_remove("ZEROFN_API_URL")
        .env_remove("ZEROFN_TOKEN")
        .output()
        .unwrap();
    let err = fails(out);
    assert!(
        err.contains("HTTP 403") && err.contains("audit.read") && !err.contains("intact"),
        "{err}"
    );
    // The token still verifies through the API.
    assert!(ok(p.cli(&["audit", "verify"])).contains("intact"));
}
