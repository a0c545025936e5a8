//! Host capabilities decided by Cedar: key-value access granted per bucket
//! and mode, tenant isolation of key-value data, function-to-function
//! calls decided by the caller's and the callee's policies and refused
//! once the caller's SVID is revoked, hand-written tenant policies (an
//! invalid one refused whole), and the access analyzer.
//!
//! Guests: `kv-c` (`/<route>/<bucket>/<key>`, 403 with the host's message
//! on "access denied") and `call-c` (`/<route>/<tenant>/<fn>/<path>`).

use crate::harness::*;
use crate::Setup;

const KV_GRANTS: &str =
    "[permissions]\nkv = [\"notes:read-write\", \"orders:read\"]\n\n[config]\ngreeting = \"hi from config\"\n";

fn req(s: &Setup, method: &str, path: &str, body: &[u8]) -> HttpResponse {
    http(&s.platform.gateway, method, path, &[], body)
}

/// Audit records of `action` for `function`, newest last.
fn records(s: &Setup, action: &str, function: &str) -> Vec<serde_json::Value> {
    s.audit(500)
        .into_iter()
        .filter(|r| r["action"] == action && r["function"] == function)
        .collect()
}

#[test]
fn kv_grants_are_enforced_per_bucket_and_mode_and_tenants_never_share_data() {
    let s = Setup::new();
    s.deploy("kv", "kv-c", &["/kv/..."], KV_GRANTS);

    let r = req(&s, "PUT", "/kv/notes/a", b"one");
    assert_eq!(r.status, 204, "{}", r.text());
    let r = req(&s, "GET", "/kv/notes/a", b"");
    assert_eq!((r.status, r.text().as_str()), (200, "one"));
    assert_eq!(req(&s, "POST", "/kv/notes/n", b"").text(), "1");
    assert_eq!(req(&s, "POST", "/kv/notes/n", b"").text(), "2");
    let keys = req(&s, "GET", "/kv/notes", b"").text();
    assert_eq!(keys.lines().collect::<Vec<_>>(), ["a", "n"], "{keys}");
    assert_eq!(
        req(&s, "GET", "/kv/_config/greeting", b"").text(),
        "hi from config"
    );

    // Read-only bucket: reads work, writes are denied inside the guest,
    // which answers normally with the host's message.
    assert_eq!(req(&s, "GET", "/kv/orders/x", b"").status, 404);
    let denied = req(&s, "PUT", "/kv/orders/x", b"no");
    assert_eq!(denied.status, 403, "{}", denied.text());
    let msg = denied.text();
    assert!(msg.starts_with("access denied"), "{msg}");
    assert!(msg.contains("kv.put"), "{msg}");
    assert!(msg.contains("no permit policy matched"), "{msg}");
    assert!(
        msg.contains("missing permission `kv:orders:write`"),
        "{msg}"
    );
    assert_eq!(req(&s, "DELETE", "/kv/orders/x", b"").status, 403);
    // A bucket never granted.
    assert_eq!(req(&s, "GET", "/kv/secrets/x", b"").status, 403);

    // Every use was decided and recorded: the allowed put names the
    // compiled grant, the denied one says what was missing.
    let caps = records(&s, "capability", "kv");
    let put = caps
        .iter()
        .find(|r| r["decision"] == "allow" && r["detail"]["action"] == "kv.put")
        .expect("allowed kv.put record");
    assert_eq!(put["detail"]["policies"][0], "acme/kv/kv/notes:read-write");
    assert_eq!(put["detail"]["permission"], "kv:notes:write");
    assert!(put["detail"]["principal"]
        .as_str()
        .unwrap()
        .ends_with("/tenant/acme/fn/kv"));
    let refused = caps
        .iter()
        .find(|r| r["decision"] == "deny" && r["detail"]["permission"] == "kv:orders:write")
        .expect("denied kv.put record");
    assert!(refused["reason"]
        .as_str()
        .unwrap()
        .contains("no permit policy matched"));
    // The invocation record lists its decisions with policy ids.
    let inv = records(&s, "invoke", "kv");
    let last = inv.last().unwrap();
    let decisions = last["detail"]["decisions"].as_array().unwrap();
    assert_eq!(decisions[0]["action"], "invoke");
    assert_eq!(decisions[0]["policies"][0], "acme/kv/invoke/public");

    // Tenant B, same function and grants, same bucket and key names: sees
    // nothing of A's, by any spelling of the key or bucket.
    let other_key = s.root().join("other.key");
    ok(s.platform
        .cli(&["keygen", "--out", other_key.to_str().unwrap()]));
    ok(s.platform.cli(&[
        "tenant",
        "create",
        "other",
        "--signing-key",
        &format!("{}.pub", other_key.display()),
        "--route-prefix",
        "/other-kv/...",
    ]));
    let f = function_dir(
        s.root(),
        "kv",
        "other",
        &guest("kv-c"),
        &["/other-kv/..."],
        KV_GRANTS,
    );
    s.sign(&f.wasm, &other_key);
    ok(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    for path in [
        "/other-kv/notes/a",
        "/other-kv/notes/acme/notes/a",
        "/other-kv/notes/..%2Facme%2Fnotes%2Fa",
        "/other-kv/notes/%61",
        "/other-kv/notes/a%00",
    ] {
        let r = req(&s, "GET", path, b"");
        assert_ne!(r.text(), "one", "{path} leaked tenant acme's value");
        assert_ne!(r.status, 200, "{path}: {}", r.text());
    }
    // A bucket name cannot carry a tenant either: it is refused.
    let r = req(&s, "GET", "/other-kv/acme%2Fnotes/a", b"");
    assert_ne!(r.status, 200, "{}", r.text());
    assert_eq!(req(&s, "GET", "/other-kv/notes", b"").text(), "");
    // And B's writes stay B's.
    assert_eq!(req(&s, "PUT", "/other-kv/notes/a", b"two").status, 204);
    assert_eq!(req(&s, "GET", "/kv/notes/a", b"").text(), "one");
    assert_eq!(req(&s, "GET", "/other-kv/notes/a", b"").text(), "two");

    // The analyzer: orders:read and config were granted; only config and
    // notes were used.
    let report: serde_json::Value = serde_json::from_str(&ok(s.platform.cli(&[
        "access-analyzer",
        "acme",
        "kv",
        "--since",
        "1h",
        "--json",
    ])))
    .unwrap();
    let f = &report["functions"][0];
    let strings = |k: &str| -> Vec<String> {
        f[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    assert!(strings("granted").contains(&"kv:orders:read".to_owned()));
    assert!(strings("used").contains(&"kv:notes:write".to_owned()));
    assert!(strings("used").contains(&"kv:orders:read".to_owned()));
    assert!(strings("used").contains(&"config".to_owned()));
    assert!(strings("denied").contains(&"kv:orders:write".to_owned()));
    assert!(strings("unused").is_empty(), "{f}");
    let text = ok(s
        .platform
        .cli(&["access-analyzer", "other", "--since", "1h"]));
    assert!(text.contains("unused:  config, kv:orders:read"), "{text}");
    assert!(text.contains("kv = [\"notes:read-write\"]"), "{text}");
}

#[test]
fn function_calls_need_the_callers_grant_the_callees_consent_and_a_valid_identity() {
    let s = Setup::new();
    s.deploy(
        "hello",
        "hello-c",
        &["/hello"],
        "[invoke]\nfrom = [\"caller\", \"uninvited\"]\n",
    );
    s.deploy(
        "caller",
        "call-c",
        &["/caller/..."],
        "[permissions]\ncall = [\"hello\"]\n",
    );
    s.deploy("rogue", "call-c", &["/rogue/..."], "");
    s.deploy(
        "stranger",
        "call-c",
        &["/stranger/..."],
        "[permissions]\ncall = [\"hello\"]\n",
    );

    // hello is not public any more.
    let r = s.platform.get("/hello");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["kind"], "invoke_denied");

    let ok_call = s.platform.get("/caller/acme/hello/");
    assert_eq!(ok_call.status, 200, "{}", ok_call.text());
    assert!(ok_call.text().contains("hello"), "{}", ok_call.text());
    // The callee's record says who called, by verified identity.
    let callee = records(&s, "invoke", "hello");
    let allowed = callee.iter().find(|r| r["decision"] == "allow").unwrap();
    assert!(allowed["detail"]["caller"]["spiffe_id"]
        .as_str()
        .unwrap()
        .ends_with("/tenant/acme/fn/caller"));
    assert_eq!(
        allowed["detail"]["decisions"][0]["policies"][0],
        "acme/hello/invoke/caller"
    );

    // No `call` grant: refused by the caller's own policies.
    let r = s.platform.get("/rogue/acme/hello/");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("call_denied"), "{}", r.text());
    // Granted to call, but hello does not accept it.
    let r = s.platform.get("/stranger/acme/hello/");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("invoke_denied"), "{}", r.text());
    // A function that does not exist.
    let r = s.platform.get("/caller/acme/nosuch/");
    assert_eq!(r.status, 403, "{}", r.text());

    // The caller obtains an audience-scoped JWT-SVID for its own identity
    // from the platform's identity endpoint, verifiable with the public
    // JWT bundle.
    let r = s
        .platform
        .get("/caller/-/identity/jwt-svid?audience=billing-api");
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let b64 = |p: &str| -> serde_json::Value {
        use base64::Engine as _;
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .unwrap(),
        )
        .unwrap()
    };
    let (header, claims) = (b64(parts[0]), b64(parts[1]));
    assert!(
        claims["sub"]
            .as_str()
            .unwrap()
            .ends_with("/tenant/acme/fn/caller"),
        "{claims}"
    );
    assert!(
        claims["aud"].to_string().contains("billing-api"),
        "{claims}"
    );
    let bundle = http(&s.platform.api, "GET", "/v1/identity/jwt-bundle", &[], b"").json();
    assert!(
        bundle["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == header["kid"]),
        "{bundle} {header}"
    );
    let r = s.platform.get("/caller/-/identity/jwt-svid");
    assert_eq!(r.status, 400, "{}", r.text());
    // A tenant may forbid it.
    let forbid = s.root().join("no-jwt.cedar");
    std::fs::write(
        &forbid,
        "@id(\"no-jwt\") forbid (principal, action == Zerofn::Action::\"svid.jwt\", resource);\n",
    )
    .unwrap();
    ok(s.platform
        .cli(&["policy", "set", "acme", forbid.to_str().unwrap()]));
    let r = s.platform.get("/caller/-/identity/jwt-svid?audience=x");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("denied by no-jwt"), "{}", r.text());
    ok(s.platform.cli(&["policy", "set", "acme", "--clear"]));

    // Revoke the caller's SVID: refused at once.
    let out = ok(s.platform.cli(&["svid", "revoke", "acme", "caller"]));
    assert!(out.contains("revoked serial"), "{out}");
    let r = s.platform.get("/caller/acme/hello/");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("identity is refused"), "{}", r.text());
    assert!(r.text().contains("revoked"), "{}", r.text());
}

#[test]
fn tenant_policies_are_validated_whole_and_the_old_set_stays_in_force() {
    let s = Setup::new();
    s.deploy("kv", "kv-c", &["/kv/..."], KV_GRANTS);
    assert_eq!(req(&s, "PUT", "/kv/notes/a", b"one").status, 204);

    let good = s.root().join("freeze.cedar");
    std::fs::write(
        &good,
        "@id(\"freeze-notes\")\nforbid (principal, action == Zerofn::Action::\"kv.put\", resource == Zerofn::Bucket::\"acme/notes\");\n",
    )
    .unwrap();
    let out = ok(s
        .platform
        .cli(&["policy", "set", "acme", good.to_str().unwrap()]));
    assert!(out.contains("freeze-notes"), "{out}");
    let r = req(&s, "PUT", "/kv/notes/a", b"two");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("denied by freeze-notes"), "{}", r.text());
    // Reads still allowed.
    assert_eq!(req(&s, "GET", "/kv/notes/a", b"").text(), "one");

    let bad = s.root().join("bad.cedar");
    std::fs::write(
        &bad,
        "@id(\"ok\") permit (principal, action == Zerofn::Action::\"kv.get\", resource);\n@id(\"broken\") permit (principal, action == Zerofn::Action::\"kv.get\", resource) when { context.nosuch == 1 };\n",
    )
    .unwrap();
    let err = fails(
        s.platform
            .cli(&["policy", "set", "acme", bad.to_str().unwrap()]),
    );
    assert!(err.contains("broken"), "{err}");
    // The old set is still in force.
    assert_eq!(req(&s, "PUT", "/kv/notes/a", b"two").status, 403);
    let shown = ok(s.platform.cli(&["policy", "show", "acme", "kv"]));
    assert!(shown.contains("acme/kv/kv/notes:read-write"), "{shown}");
    assert!(shown.contains("freeze-notes"), "{shown}");
    // An unknown tenant is named.
    let err = fails(
        s.platform
            .cli(&["policy", "set", "nosuch", good.to_str().unwrap()]),
    );
    assert!(err.contains("nosuch"), "{err}");

    // A hand-written id may not collide with a compiled one, whichever
    // comes first.
    let squat = s.root().join("squat.cedar");
    std::fs::write(
        &squat,
        "@id(\"acme/kv/kv/notes:read-write\") permit (principal, action == Zerofn::Action::\"kv.get\", resource);\n",
    )
    .unwrap();
    let err = fails(
        s.platform
            .cli(&["policy", "set", "acme", squat.to_str().unwrap()]),
    );
    assert!(err.contains("used twice"), "{err}");
    std::fs::write(
        &squat,
        "@id(\"acme/later/invoke/public\") permit (principal, action == Zerofn::Action::\"kv.get\", resource);\n",
    )
    .unwrap();
    ok(s.platform
        .cli(&["policy", "set", "acme", squat.to_str().unwrap()]));
    let f = function_dir(
        s.root(),
        "later",
        "acme",
        &guest("hello-c"),
        &["/later"],
        "",
    );
    s.sign(&f.wasm, &s.key);
    let err = fails(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    assert!(err.contains("used twice"), "{err}");
    assert_eq!(s.platform.get("/later").status, 404);
    ok(s.platform
        .cli(&["policy", "set", "acme", good.to_str().unwrap()]));

    // Removing it lifts the freeze.
    ok(s.platform.cli(&["policy", "set", "acme", "--clear"]));
    assert_eq!(req(&s, "PUT", "/kv/notes/a", b"two").status, 204);

    // Both kinds of policy survive a restart.
    ok(s.platform
        .cli(&["policy", "set", "acme", good.to_str().unwrap()]));
    let s = s.restart();
    assert_eq!(req(&s, "PUT", "/kv/notes/a", b"three").status, 403);
    assert_eq!(req(&s, "GET", "/kv/notes/a", b"").text(), "two");
}

#[test]
fn python_and_javascript_guests_use_kv_config_and_calls_through_the_platform() {
    let s = Setup::new();
    s.deploy(
        "kv-py",
        "kv-py",
        &["/kv-py/..."],
        &format!("[limits]\nmemory_mb = 256\ntimeout_ms = 5000\n{KV_GRANTS}"),
    );
    assert_eq!(req(&s, "PUT", "/kv-py/notes/a", b"from python").status, 204);
    assert_eq!(req(&s, "GET", "/kv-py/notes/a", b"").text(), "from python");
    assert_eq!(req(&s, "POST", "/kv-py/notes/n", b"").text(), "1");
    assert_eq!(
        req(&s, "GET", "/kv-py/_config/greeting", b"").text(),
        "hi from config"
    );
    let denied = req(&s, "PUT", "/kv-py/orders/a", b"x");
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert!(
        denied.text().starts_with("access denied"),
        "{}",
        denied.text()
    );

    s.deploy(
        "hello",
        "hello-c",
        &["/hello"],
        "[invoke]\nfrom = [\"call-js\"]\n",
    );
    s.deploy(
        "call-js",
        "call-js",
        &["/call-js/..."],
        "[limits]\nmemory_mb = 128\ntimeout_ms = 5000\n[permissions]\ncall = [\"hello\"]\n",
    );
    let r = s.platform.get("/call-js/acme/hello/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "hello from zerofn\n");
    // And the same JavaScript function, asked to call what it may not.
    let r = s.platform.get("/call-js/acme/kv-py/notes/a");
    assert_eq!(r.status, 403, "{}", r.text());
}

#[test]
fn concurrent_deploys_each_keep_their_invoke_policy() {
    let s = Setup::new();
    let dirs: Vec<_> = (0..6)
        .map(|i| {
            let name = format!("par{i}");
            let f = function_dir(
                s.root(),
                &name,
                "acme",
                &guest("hello-c"),
                &[&format!("/par{i}")],
                "",
            );
            s.sign(&f.wasm, &s.key);
            f.dir
        })
        .collect();
    std::thread::scope(|scope| {
        for dir in &dirs {
            let platform = &s.platform;
            scope.spawn(move || ok(platform.cli(&["deploy", dir.to_str().unwrap()])));
        }
    });
    for i in 0..6 {
        let r = s.platform.get(&format!("/par{i}"));
        assert_eq!(r.status, 200, "par{i}: {}", r.text());
    }
}
