//! Trust zones (docs/zones.md) through the real binary: a zone that may not call another
//! refuses a function-to-function call across it although both functions' own policies
//! allow it (403 and an audited deny naming the zone policy), until both zones list each
//! other; a function whose `[egress]` exceeds its zone's ceiling is refused at deploy with
//! the entry named; a zone change that would leave a deployed function outside its new
//! ceiling is refused naming it; hostile documents change nothing and are named.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::Setup;

/// Writes a zone document beside the test's files.
fn zone_file(s: &Setup, file: &str, text: &str) -> PathBuf {
    let path = s.root().join(file);
    std::fs::write(&path, text).unwrap();
    path
}

fn set_zone(s: &Setup, file: &str, text: &str) -> std::process::Output {
    let path = zone_file(s, file, text);
    s.platform.cli(&["zone", "set", path.to_str().unwrap()])
}

fn zones(s: &Setup) -> serde_json::Value {
    serde_json::from_str(&ok(s.platform.cli(&["zone", "list", "--json"]))).unwrap()
}

/// A tenant with its own key and route prefix.
fn tenant(s: &Setup, name: &str, prefix: &str) -> PathBuf {
    let key = s.root().join(format!("{name}.key"));
    ok(s.platform.cli(&["keygen", "--out", key.to_str().unwrap()]));
    let public = format!("{}.pub", key.display());
    ok(s.platform.cli(&[
        "tenant",
        "create",
        name,
        "--signing-key",
        &public,
        "--route-prefix",
        prefix,
    ]));
    key
}

fn deploy_as(
    s: &Setup,
    tenant: &str,
    key: &std::path::Path,
    name: &str,
    guest_name: &str,
    route: &str,
    extra: &str,
) -> std::process::Output {
    let f = function_dir(s.root(), name, tenant, &guest(guest_name), &[route], extra);
    s.sign(&f.wasm, key);
    s.platform.cli(&["deploy", f.dir.to_str().unwrap()])
}

/// The newest audit record `pred` picks, waiting a bounded time for it.
fn find_record(
    s: &Setup,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(r) = s.audit(300).into_iter().rev().find(|r| pred(r)) {
            return r;
        }
        assert!(Instant::now() < deadline, "no audit record: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn zones_refuse_calls_across_them_until_both_sides_list_each_other() {
    let s = Setup::new();
    let alpha = tenant(&s, "alpha", "/caller/...");
    let beta = tenant(&s, "beta", "/hello");
    ok(deploy_as(
        &s,
        "alpha",
        &alpha,
        "caller",
        "call-c",
        "/caller/...",
        "",
    ));
    ok(deploy_as(
        &s,
        "beta",
        &beta,
        "hello",
        "hello-c",
        "/hello",
        "[invoke]\nfrom = [\"tenant:alpha\"]\n",
    ));
    // alpha's own policy grants the cross-tenant call; beta's manifest accepts alpha.
    let grant = s.root().join("alpha.cedar");
    std::fs::write(
        &grant,
        "@id(\"call-beta\") permit (principal == Zerofn::Function::\"alpha/caller\", action == Zerofn::Action::\"call\", resource == Zerofn::Function::\"beta/hello\");\n",
    )
    .unwrap();
    ok(s.platform
        .cli(&["policy", "set", "alpha", grant.to_str().unwrap()]));
    let r = s.platform.get("/caller/beta/hello/");
    assert_eq!(r.status, 200, "no zones yet: {}", r.text());

    // Two zones that do not list each other: the caller's zone refuses the call.
    ok(set_zone(
        &s,
        "back.toml",
        "name = \"back\"\ntenants = [\"beta\"]\n",
    ));
    ok(set_zone(
        &s,
        "front.toml",
        "name = \"front\"\ntenants = [\"alpha\"]\n",
    ));
    let r = s.platform.get("/caller/beta/hello/");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("call_denied"), "{}", r.text());
    assert!(r.text().contains("zone:front/calls"), "{}", r.text());
    let denied = find_record(&s, "the refused call", |r| {
        r["decision"] == "deny" && r.to_string().contains("zone:front/calls")
    });
    assert_eq!(denied["tenant"], "alpha", "{denied}");
    // `policy show` prints the zone's policies among the tenant's.
    let shown = ok(s.platform.cli(&["policy", "show", "alpha", "caller"]));
    assert!(shown.contains("trust zone of tenant alpha"), "{shown}");
    assert!(shown.contains("@id(\"zone:front/calls\")"), "{shown}");
    let shown = ok(s.platform.cli(&["zone", "show", "back"]));
    assert!(shown.contains("zone:back/called-from"), "{shown}");

    // The caller's zone lists back, but back does not accept front: the callee's side
    // refuses (its invoke decision).
    ok(set_zone(
        &s,
        "front.toml",
        "name = \"front\"\ntenants = [\"alpha\"]\ncalls = [\"back\"]\n",
    ));
    let r = s.platform.get("/caller/beta/hello/");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("zone:back/called-from"), "{}", r.text());
    find_record(&s, "the refused invoke", |r| {
        r["decision"] == "deny"
            && r["function"] == "hello"
            && r.to_string().contains("zone:back/called-from")
    });

    // Both sides agree: allowed, with the functions' own grants still deciding.
    ok(set_zone(
        &s,
        "back.toml",
        "name = \"back\"\ntenants = [\"beta\"]\ncalled_from = [\"front\"]\n",
    ));
    let r = s.platform.get("/caller/beta/hello/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("hello"), "{}", r.text());
    ok(s.platform.cli(&["policy", "set", "alpha", "--clear"]));
    let r = s.platform.get("/caller/beta/hello/");
    assert_eq!(
        r.status,
        403,
        "the zone is a ceiling, not a grant: {}",
        r.text()
    );
    ok(s.platform
        .cli(&["policy", "set", "alpha", grant.to_str().unwrap()]));

    // Hostile documents: each refused, named, audited, and nothing changes.
    let before = zones(&s);
    for (file, text, expected) in [
        (
            "unknown.toml",
            "name = \"front\"\ntenants = [\"alpha\"]\nnosuch = 1\n",
            "unknown key `nosuch`",
        ),
        (
            "two.toml",
            "name = \"other\"\ntenants = [\"alpha\"]\n",
            "tenant `alpha` is in zone",
        ),
        (
            "ghost.toml",
            "name = \"other\"\ncalls = [\"ghost\"]\n",
            "`calls` names zone `ghost`, which does not exist",
        ),
        (
            "nobody.toml",
            "name = \"other\"\ntenants = [\"nosuch\"]\n",
            "tenant `nosuch`, which does not exist",
        ),
        (
            "bad-egress.toml",
            "name = \"other\"\negress = [\"https://*.com\"]\n",
            "`egress`",
        ),
    ] {
        let err = fails(set_zone(&s, file, text));
        assert!(err.contains(expected), "{file}: {err}");
        assert!(err.contains(file), "{file}: the file is named: {err}");
    }
    let big = zone_file(
        &s,
        "big.toml",
        &format!("name = \"big\"\n#{}\n", "x".repeat(70_000)),
    );
    let err = fails(s.platform.cli(&["zone", "set", big.to_str().unwrap()]));
    assert!(err.contains("at most 65536 bytes"), "{err}");
    // The platform checks what the CLI checks: documents sent to the API directly.
    let token = std::fs::read_to_string(s.platform.data_dir.join("operator-token")).unwrap();
    let auth = format!("Bearer {}", token.trim());
    let put = |zone: &str, body: serde_json::Value| {
        http(
            &s.platform.api,
            "PUT",
            &format!("/v1/zones/{zone}"),
            &[("Authorization", &auth)],
            body.to_string().as_bytes(),
        )
    };
    for (zone, body, status, expected) in [
        (
            "other",
            serde_json::json!({ "document": "name = \"other\"\ntenants = [\"alpha\"]\n" }),
            400,
            "tenant `alpha` is in zone",
        ),
        (
            "big",
            serde_json::json!({ "document": format!("name = \"big\"\n#{}\n", "x".repeat(70_000)) }),
            400,
            "over the limit of 65536 bytes",
        ),
        (
            "front",
            serde_json::json!({ "document": "name = \"back\"\n" }),
            400,
            "the document's `name` is `back`",
        ),
        (
            "front",
            serde_json::json!({ "document": "name = \"front\"\n", "extra": 1 }),
            400,
            "extra",
        ),
    ] {
        let r = put(zone, body);
        assert_eq!(r.status, status, "{zone}: {}", r.text());
        assert!(r.text().contains(expected), "{zone}: {}", r.text());
    }
    assert_eq!(zones(&s), before);
    find_record(&s, "a refused zone.set", |r| {
        r["action"] == "zone.set"
            && r["decision"] == "deny"
            && r["reason"].as_str().unwrap_or("").contains("ghost")
    });
    // A zone another names cannot go.
    let err = fails(s.platform.cli(&["zone", "delete", "back"]));
    assert!(err.contains("remove it there first"), "{err}");
    let err = fails(s.platform.cli(&["zone", "show", "nosuch"]));
    assert!(err.contains("zone `nosuch` does not exist"), "{err}");

    // Zones survive a restart and still decide.
    let s = s.restart();
    let r = s.platform.get("/caller/beta/hello/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(zones(&s).as_array().unwrap().len(), 2);
    ok(set_zone(
        &s,
        "back.toml",
        "name = \"back\"\ntenants = [\"beta\"]\n",
    ));
    let r = s.platform.get("/caller/beta/hello/");
    assert_eq!(r.status, 403, "{}", r.text());
    ok(set_zone(
        &s,
        "front.toml",
        "name = \"front\"\ntenants = [\"alpha\"]\n",
    ));
    ok(s.platform.cli(&["zone", "delete", "back"]));
    ok(s.platform.cli(&["zone", "delete", "front"]));
    let r = s.platform.get("/caller/beta/hello/");
    assert_eq!(r.status, 200, "no zones, as before: {}", r.text());
    assert!(s
        .audit(50)
        .iter()
        .any(|r| r["action"] == "zone.delete" && r["decision"] == "allow"));

    // Two zones that name each other, set together in one step.
    let a = zone_file(
        &s,
        "ab-a.toml",
        "name = \"front\"\ntenants = [\"alpha\"]\ncalls = [\"back\"]\ncalled_from = [\"back\"]\n",
    );
    let b = zone_file(
        &s,
        "ab-b.toml",
        "name = \"back\"\ntenants = [\"beta\"]\ncalls = [\"front\"]\ncalled_from = [\"front\"]\n",
    );
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    ok(s.platform.cli(&["zone", "set", a, b]));
    assert_eq!(zones(&s).as_array().unwrap().len(), 2);
    let r = s.platform.get("/caller/beta/hello/");
    assert_eq!(r.status, 200, "{}", r.text());
    // All or nothing: one document the platform refuses, and none is set.
    let before = zones(&s);
    let bad = zone_file(
        &s,
        "ab-bad.toml",
        "name = \"side\"\ntenants = [\"alpha\"]\n",
    );
    let b2 = zone_file(
        &s,
        "ab-b2.toml",
        "name = \"back\"\ntenants = [\"beta\"]\ncalls = [\"front\"]\n",
    );
    let err = fails(
        s.platform
            .cli(&["zone", "set", b2.to_str().unwrap(), bad.to_str().unwrap()]),
    );
    assert!(err.contains("tenant `alpha` is in zone"), "{err}");
    assert_eq!(zones(&s), before);
    // `--all`: the files are every zone; the others are deleted (and audited).
    let solo = zone_file(&s, "solo.toml", "name = \"front\"\ntenants = [\"alpha\"]\n");
    ok(s.platform
        .cli(&["zone", "set", "--all", solo.to_str().unwrap()]));
    let now = zones(&s);
    assert_eq!(now.as_array().unwrap().len(), 1, "{now}");
    assert_eq!(now[0]["name"], "front");
    let r = s.platform.get("/caller/beta/hello/");
    assert_eq!(
        r.status,
        403,
        "a zone is closed to tenants in none: {}",
        r.text()
    );
    find_record(&s, "back deleted by --all", |r| {
        r["action"] == "zone.delete"
            && r["decision"] == "allow"
            && r["reason"]
                .as_str()
                .unwrap_or("")
                .contains("zone back deleted")
    });
    ok(s.platform.cli(&["audit", "verify"]));

    // A stored zone that no longer loads (edited behind the platform's back) fails
    // closed at start: every runtime request is denied, until `zone set --all` replaces
    // the whole set.
    let data = s.platform.data_dir.clone();
    let Setup { tmp, platform, key } = s;
    assert!(platform.stop().success());
    open_db(&data)
        .execute("UPDATE zones SET document = 'name = 1'", [])
        .unwrap();
    let s = Setup {
        tmp,
        platform: Platform::start(&data),
        key,
    };
    let r = s.platform.get("/caller/beta/hello/");
    assert_eq!(r.status, 403, "{}", r.text());
    let err = fails(s.platform.cli(&["zone", "set", solo.to_str().unwrap()]));
    assert!(err.contains("the stored zones do not load"), "{err}");
    ok(s.platform.cli(&["zone", "set", "--all", a, b]));
    let r = s.platform.get("/caller/beta/hello/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(zones(&s).as_array().unwrap().len(), 2);
}

#[test]
fn a_zone_egress_ceiling_refuses_deploys_and_changes_that_exceed_it() {
    let s = Setup::new();
    ok(set_zone(
        &s,
        "sandbox.toml",
        "name = \"sandbox\"\ntenants = [\"acme\"]\negress = [\"https://api.example.com/v1/\", { url = \"https://*.cdn.example.com\", methods = [\"GET\"] }]\n",
    ));
    let err = fails(deploy_as(
        &s,
        "acme",
        &s.key,
        "fetch",
        "hello-c",
        "/fetch",
        "[egress]\nallow = [\"https://api.example.com/v1/orders\", \"https://evil.example.net\"]\n",
    ));
    assert!(err.contains("zone `sandbox` refuses this deploy"), "{err}");
    assert!(err.contains("`https://evil.example.net:443`"), "{err}");
    assert!(
        !err.contains("api.example.com"),
        "only the entry outside is named: {err}"
    );
    let refused = find_record(&s, "the refused deploy", |r| {
        r["action"] == "deploy" && r["decision"] == "deny"
    });
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("evil.example.net"),
        "{refused}"
    );
    // A method the ceiling does not grant is outside it too.
    let err = fails(deploy_as(
        &s,
        "acme",
        &s.key,
        "fetch",
        "hello-c",
        "/fetch",
        "[egress]\nallow = [{ url = \"https://img.cdn.example.com\", methods = [\"POST\"] }]\n",
    ));
    assert!(err.contains("`https://img.cdn.example.com:443`"), "{err}");
    assert_eq!(s.platform.get("/fetch").status, 404, "nothing was deployed");

    ok(deploy_as(
        &s,
        "acme",
        &s.key,
        "fetch",
        "hello-c",
        "/fetch",
        "[egress]\nallow = [\"https://api.example.com/v1/orders\", { url = \"https://img.cdn.example.com\", methods = [\"GET\"] }]\n",
    ));
    assert_eq!(s.platform.get("/fetch").status, 200);

    // Narrowing the ceiling under a deployed function is refused, naming it.
    let before = zones(&s);
    let err = fails(set_zone(
        &s,
        "sandbox.toml",
        "name = \"sandbox\"\ntenants = [\"acme\"]\negress = [\"https://api.example.com/v1/\"]\n",
    ));
    assert!(
        err.contains("acme/fetch (`https://img.cdn.example.com:443`)"),
        "{err}"
    );
    assert_eq!(zones(&s), before);
    // Signers: with a zone listing another key, acme's own key no longer publishes into it.
    let signer = s.functions()[0]["signer"].as_str().unwrap().to_owned();
    let other = format!("sha256:{}", "ab".repeat(32));
    let with_signers = |list: &str| {
        format!("name = \"sandbox\"\ntenants = [\"acme\"]\negress = [\"https://api.example.com/v1/\", {{ url = \"https://*.cdn.example.com\", methods = [\"GET\"] }}]\nsigners = [{list}]\n")
    };
    ok(set_zone(
        &s,
        "sandbox.toml",
        &with_signers(&format!("\"{other}\"")),
    ));
    let err = fails(deploy_as(
        &s, "acme", &s.key, "other", "hello-c", "/other", "",
    ));
    assert!(
        err.contains(&format!(
            "signer `{signer}` is not one of the zone's `signers`"
        )),
        "{err}"
    );
    ok(set_zone(
        &s,
        "sandbox.toml",
        &with_signers(&format!("\"{other}\", \"{signer}\"")),
    ));
    ok(deploy_as(
        &s, "acme", &s.key, "other", "hello-c", "/other", "",
    ));
    // Without the zone the tenant is back to its functions' own grants.
    ok(s.platform.cli(&["zone", "delete", "sandbox"]));
    ok(deploy_as(
        &s,
        "acme",
        &s.key,
        "fetch",
        "hello-c",
        "/fetch",
        "[egress]\nallow = [\"https://evil.example.net\"]\n",
    ));
    assert_eq!(zones(&s), serde_json::json!([]));
}
