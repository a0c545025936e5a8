//! Issue 19 (the configuration directory): `zerofn export`, `plan`, `apply`, `drift`,
//! `up --config-dir` and `--locked-config` on directories written by the tests, against
//! the running binary.

use std::path::Path;

use crate::harness::*;
use crate::Setup;

const RUNTIME: &str = r#"@id("acme-public") permit (principal == Zerofn::Caller::"public", action == Zerofn::Action::"invoke", resource);"#;
const CONTROL: &str =
    r#"@id("readers") permit (principal, action == Zerofn::Action::"tenant.read", resource);"#;

fn write(dir: &Path, path: &str, text: &str) {
    let p = dir.join(path);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn code(o: &std::process::Output) -> Option<i32> {
    o.status.code()
}

/// The platform's state serial, as `plan --json` reports it (against an empty directory,
/// which always loads).
fn serial(s: &Setup, _: &Path) -> u64 {
    let empty = s.root().join("empty-config");
    std::fs::create_dir_all(&empty).unwrap();
    let o = s.platform.cli(&["plan", empty.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o))
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&o), stderr(&o)));
    v["serial"].as_u64().unwrap()
}

#[test]
fn export_plan_apply_drift_and_a_stale_plan() {
    let s = Setup::new();
    s.deploy("hello", "hello-c", &["/hello"], "");
    let dir = s.root().join("config");
    let d = dir.to_str().unwrap();
    ok(s.platform.cli(&["export", d]));
    assert!(dir.join("tenants/acme/tenant.toml").is_file());
    assert!(dir
        .join("tenants/acme/functions/hello/zerofn.toml")
        .is_file());
    assert!(dir
        .join("tenants/acme/functions/hello/hello.wasm")
        .is_file());
    // Export then plan against the same platform: nothing to change.
    let o = s.platform.cli(&["plan", d]);
    assert_eq!(code(&o), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("no changes"), "{}", stdout(&o));

    // The directory changes: a runtime policy, limits, the control policy.
    write(&dir, "tenants/acme/policies/public.cedar", RUNTIME);
    write(&dir, "control.cedar", CONTROL);
    let toml = std::fs::read_to_string(dir.join("tenants/acme/tenant.toml")).unwrap();
    let toml = toml.replace("[limits]\n", "[limits]\nrate_per_second = 100\n");
    write(&dir, "tenants/acme/tenant.toml", &toml);
    // A Git checkout: the commit is recorded with the apply.
    let commit = "0123456789abcdef0123456789abcdef01234567";
    write(&dir, ".git/HEAD", "ref: refs/heads/main\n");
    write(&dir, ".git/refs/heads/main", &format!("{commit}\n"));
    let before = serial(&s, &dir);
    let plan = s.root().join("reviewed.plan");
    let o = s
        .platform
        .cli(&["plan", d, "--out", plan.to_str().unwrap()]);
    assert_eq!(code(&o), Some(2), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    for needle in [
        "+ tenant acme runtime policy",
        "`acme`'s runtime policy gains policy `acme-public`",
        "`acme`'s rate per second limit goes from none to 100",
        "the control policy gains policy `readers`",
    ] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
    // Nothing changed by planning.
    assert_eq!(serial(&s, &dir), before);
    ok(s.platform.cli(&["apply", plan.to_str().unwrap()]));
    assert!(serial(&s, &dir) > before);
    let o = s.platform.cli(&["drift", d]);
    assert_eq!(code(&o), Some(0), "{}{}", stdout(&o), stderr(&o));
    let policy = ok(s.platform.cli(&["policy", "show", "acme"]));
    assert!(policy.contains("acme-public"), "{policy}");
    // Each change audited with the operator, the directory digest and the commit.
    let records: Vec<_> = s
        .audit(200)
        .into_iter()
        .filter(|r| r["action"] == "config.apply")
        .collect();
    assert_eq!(records.len(), 3, "{records:?}");
    for r in &records {
        assert_eq!(r["actor"], "operator", "{r}");
        assert_eq!(r["decision"], "allow", "{r}");
        let reason = r["reason"].as_str().unwrap();
        assert!(reason.contains("directory sha256:"), "{reason}");
        assert!(reason.contains(&format!("git commit {commit}")), "{reason}");
    }

    // A change through the API shows as drift.
    ok(s.platform
        .cli(&["tenant", "limits", "acme", "--rate", "5000"]));
    let o = s.platform.cli(&["drift", d]);
    assert_eq!(code(&o), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("`acme`'s rate per second limit goes from 5000 to 100"),
        "{}",
        stdout(&o)
    );
    // A plan made now, then another change: the saved plan is stale and refused.
    let stale = s.root().join("stale.plan");
    let o = s
        .platform
        .cli(&["plan", d, "--out", stale.to_str().unwrap()]);
    assert_eq!(code(&o), Some(2));
    ok(s.platform
        .cli(&["tenant", "limits", "acme", "--rate", "6000"]));
    let err = fails(s.platform.cli(&["apply", stale.to_str().unwrap()]));
    assert!(err.contains("changed since the plan was made"), "{err}");
    let limits = ok(s.platform.cli(&["tenant", "limits", "acme", "--json"]));
    assert!(limits.contains("6000"), "{limits}");
    // The directory itself applies, and then nothing drifts.
    ok(s.platform.cli(&["apply", d]));
    let o = s.platform.cli(&["drift", d]);
    assert_eq!(code(&o), Some(0), "{}{}", stdout(&o), stderr(&o));

    // Functions: gone from the directory, apply undeploys; back, apply deploys it
    // through admission.
    assert_eq!(s.platform.get("/hello").status, 200);
    let fdir = dir.join("tenants/acme/functions/hello");
    let kept = s.root().join("hello-kept");
    std::fs::rename(&fdir, &kept).unwrap();
    let o = s.platform.cli(&["plan", d]);
    assert_eq!(code(&o), Some(2));
    assert!(
        stdout(&o).contains("- function acme/hello"),
        "{}",
        stdout(&o)
    );
    ok(s.platform.cli(&["apply", d]));
    assert_eq!(s.platform.get("/hello").status, 404);
    std::fs::rename(&kept, &fdir).unwrap();
    ok(s.platform.cli(&["apply", d]));
    assert_eq!(s.platform.get("/hello").status, 200);
    assert_eq!(code(&s.platform.cli(&["drift", d])), Some(0));
    let deploys = s
        .audit(300)
        .into_iter()
        .filter(|r| r["action"] == "deploy" && r["decision"] == "allow" && r["function"] == "hello")
        .count();
    assert_eq!(deploys, 2, "the first deploy and the apply's");
    // A component the tenant's keys did not sign refuses the whole apply, and nothing
    // else in it changes.
    let wasm = fdir.join("hello.wasm");
    let mut bytes = std::fs::read(&wasm).unwrap();
    bytes.extend_from_slice(b"\0tampered");
    std::fs::write(&wasm, bytes).unwrap();
    write(&dir, "tenants/acme/policies/public.cedar", "");
    let err = fails(s.platform.cli(&["apply", d]));
    assert!(
        err.contains("acme/hello") && err.contains("admission"),
        "{err}"
    );
    let policy = ok(s.platform.cli(&["policy", "show", "acme"]));
    assert!(policy.contains("acme-public"), "{policy}");
}

#[test]
fn one_invalid_file_changes_nothing_and_is_named_with_its_line() {
    let s = Setup::new();
    let dir = s.root().join("config");
    let d = dir.to_str().unwrap();
    ok(s.platform.cli(&["export", d]));
    let before = serial(&s, &dir);
    // A new tenant and policies that are fine, and one file that is not.
    write(&dir, "tenants/acme/policies/public.cedar", RUNTIME);
    write(&dir, "control.cedar", CONTROL);
    write(
        &dir,
        "tenants/shop/tenant.toml",
        "routes = [\"/shop/...\"]\n\n[limits]\nrate = 5\n",
    );
    let err = fails(s.platform.cli(&["apply", d]));
    assert!(err.contains("tenants/shop/tenant.toml"), "{err}");
    // The CLI checked the directory first: the line quoted, the key named, the keys listed.
    assert!(err.contains("tenants/shop/tenant.toml:4:1]"), "{err}");
    assert!(err.contains("unknown key `rate`"), "{err}");
    assert!(err.contains("rate_per_second"), "{err}");
    // Nothing changed.
    assert_eq!(serial(&s, &dir), before);
    let tenants = ok(s.platform.cli(&["tenant", "list"]));
    assert!(!tenants.contains("shop"), "{tenants}");
    let policy = ok(s.platform.cli(&["policy", "show", "acme"]));
    assert!(!policy.contains("acme-public"), "{policy}");
    // Hostile references: out of the directory, and a symbolic link.
    write(
        &dir,
        "tenants/shop/tenant.toml",
        "routes = [\"/shop/...\"]\nkeys = [\"../../../../etc/passwd\"]\n",
    );
    let err = fails(s.platform.cli(&["plan", d]));
    assert!(
        err.contains("tenants/shop/tenant.toml:2:") && err.contains("`..`"),
        "{err}"
    );
    write(
        &dir,
        "tenants/shop/tenant.toml",
        "routes = [\"/shop/...\"]\nkeys = [\"ci.pub\"]\n",
    );
    std::os::unix::fs::symlink(s.root().join("acme.key"), dir.join("tenants/shop/ci.pub")).unwrap();
    let err = fails(s.platform.cli(&["plan", d]));
    assert!(
        err.contains("tenants/shop/ci.pub") && err.contains("symbolic link"),
        "{err}"
    );
    std::fs::remove_file(dir.join("tenants/shop/ci.pub")).unwrap();
    std::fs::copy(
        s.root().join("acme.key.pub"),
        dir.join("tenants/shop/ci.pub"),
    )
    .unwrap();
    // Valid now: the new tenant and its key are planned and applied.
    let o = s.platform.cli(&["plan", d]);
    assert_eq!(code(&o), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("may publish code into `shop`"),
        "{}",
        stdout(&o)
    );
    ok(s.platform.cli(&["apply", d]));
    let tenants = ok(s.platform.cli(&["tenant", "list"]));
    assert!(tenants.contains("shop"), "{tenants}");
    assert_eq!(code(&s.platform.cli(&["drift", d])), Some(0));
}

#[test]
fn config_dir_at_start_and_locked_config_refuses_imperative_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("config");
    let key = tmp.path().join("ci.key");
    let data = tmp.path().join("data");
    ok(cli(&data, &["keygen", "--out", key.to_str().unwrap()]));
    let pem = std::fs::read_to_string(format!("{}.pub", key.display())).unwrap();
    write(&dir, "tenants/acme/keys/ci.pub", &pem);
    write(
        &dir,
        "tenants/acme/tenant.toml",
        "routes = [\"/...\"]\nkeys = [\"keys/ci.pub\"]\n",
    );
    let d = dir.to_str().unwrap();
    let platform = Platform::start_with(&data, &["--config-dir", d, "--locked-config"]);
    let tenants = ok(platform.cli(&["tenant", "list"]));
    assert!(tenants.contains("acme"), "{tenants}");
    assert_eq!(code(&platform.cli(&["drift", d])), Some(0));
    // Imperative changes are refused, pointing at apply; nothing changes.
    for args in [
        vec!["tenant", "limits", "acme", "--rate", "10"],
        vec![
            "tenant",
            "create",
            "other",
            "--signing-key",
            &format!("{}.pub", key.display()),
        ],
    ] {
        let err = fails(platform.cli(&args));
        assert!(err.contains("zerofn apply"), "{args:?}: {err}");
    }
    let certs = tmp.path().join("certs");
    let err = fails(platform.cli(&["operator", "add", "bob", "--out", certs.to_str().unwrap()]));
    assert!(err.contains("zerofn apply"), "{err}");
    // Revoking an operator is an emergency: never held up by the lock.
    let err = fails(platform.cli(&["operator", "remove", "nobody"]));
    assert!(
        !err.contains("config_locked") && err.contains("nobody"),
        "{err}"
    );
    assert_eq!(code(&platform.cli(&["drift", d])), Some(0));
    // The directory is the way in.
    write(&dir, "tenants/acme/policies/public.cedar", RUNTIME);
    ok(platform.cli(&["apply", d]));
    assert_eq!(code(&platform.cli(&["drift", d])), Some(0));
    let audit = ok(platform.cli(&["audit", "tail", "-n", "50", "--json"]));
    for refused in [
        "PUT `/v1/tenants/acme/limits`: 409 config_locked",
        "POST `/v1/tenants`: 409 config_locked",
    ] {
        assert!(audit.contains(refused), "{refused}: {audit}");
    }
}

#[test]
fn zones_in_the_directory_apply_drift_and_export() {
    let s = Setup::new();
    // A function whose egress the zone's ceiling must keep covering.
    s.deploy(
        "fetch",
        "hello-c",
        &["/fetch"],
        "[egress]\nallow = [\"https://api.stripe.com/v1/charges\"]\n",
    );
    let dir = s.root().join("config");
    let d = dir.to_str().unwrap();
    ok(s.platform.cli(&["export", d]));
    write(
        &dir,
        "zones/payments.toml",
        "# acme's payment functions\nname = \"payments\"\ntenants = [\"acme\"]\ncalls = [\"platform\"]\negress = [\"https://api.stripe.com\"]\n",
    );
    write(
        &dir,
        "zones/platform.toml",
        "name = \"platform\"\ncalled_from = [\"payments\"]\n",
    );
    let o = s.platform.cli(&["plan", d]);
    assert_eq!(code(&o), Some(2), "{}{}", stdout(&o), stderr(&o));
    for needle in [
        "+ zone payments",
        "+ zone platform",
        "tenant `acme` joins zone `payments`",
        "zone `payments` may now call zone `platform`",
        "zone `payments` egress ceiling gains https://api.stripe.com",
    ] {
        assert!(stdout(&o).contains(needle), "{needle}: {}", stdout(&o));
    }
    ok(s.platform.cli(&["apply", d]));
    let zones = ok(s.platform.cli(&["zone", "list"]));
    assert!(
        zones.contains("payments") && zones.contains("platform"),
        "{zones}"
    );
    let o = s.platform.cli(&["drift", d]);
    assert_eq!(code(&o), Some(0), "{}{}", stdout(&o), stderr(&o));

    // A zone edited through the API shows as drift, in words.
    let edited = s.root().join("payments.toml");
    std::fs::write(
        &edited,
        "name = \"payments\"\ntenants = [\"acme\"]\ncalls = [\"platform\"]\negress = [\"https://api.stripe.com\", \"https://api.example.com\"]\n",
    )
    .unwrap();
    ok(s.platform.cli(&["zone", "set", edited.to_str().unwrap()]));
    let o = s.platform.cli(&["drift", d]);
    assert_eq!(code(&o), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("zone `payments` egress ceiling loses https://api.example.com"),
        "{}",
        stdout(&o)
    );

    // Export, then plan against the export: no change.
    let again = s.root().join("exported");
    let a = again.to_str().unwrap();
    ok(s.platform.cli(&["export", a]));
    assert!(again.join("zones/payments.toml").is_file());
    let o = s.platform.cli(&["plan", a]);
    assert_eq!(code(&o), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("no changes"), "{}", stdout(&o));

    // A zone file with an unknown key: the apply is refused naming the file and line,
    // and nothing changes (the other change in the directory included).
    let before = serial(&s, &dir);
    write(&again, "tenants/acme/policies/public.cedar", RUNTIME);
    write(
        &again,
        "zones/platform.toml",
        "name = \"platform\"\ncalled_from = [\"payments\"]\ncolour = \"blue\"\n",
    );
    let err = fails(s.platform.cli(&["apply", a]));
    assert!(
        err.contains("zones/platform.toml:3:1]") && err.contains("unknown key `colour`"),
        "{err}"
    );
    assert_eq!(serial(&s, &dir), before);
    let shown = ok(s.platform.cli(&["zone", "show", "payments"]));
    assert!(shown.contains("api.example.com"), "{shown}");
    let policy = ok(s.platform.cli(&["policy", "show", "acme"]));
    assert!(!policy.contains("acme-public"), "{policy}");

    // A zone change the platform refuses (its ceiling would leave `fetch`'s egress
    // outside) fails the apply with the reason; nothing of the apply changes, the
    // runtime policy beside it included (one transaction).
    write(&again, "tenants/acme/policies/public.cedar", RUNTIME);
    write(
        &again,
        "zones/platform.toml",
        "name = \"platform\"\ncalled_from = [\"payments\"]\n",
    );
    write(
        &again,
        "zones/payments.toml",
        "name = \"payments\"\ntenants = [\"acme\"]\ncalls = [\"platform\"]\negress = [\"https://api.example.com\"]\n",
    );
    let err = fails(s.platform.cli(&["apply", a]));
    assert!(
        err.contains("zone") && err.contains("acme/fetch") && err.contains("nothing was changed"),
        "{err}"
    );
    let shown = ok(s.platform.cli(&["zone", "show", "payments"]));
    assert!(shown.contains("api.stripe.com"), "{shown}");
    let policy = ok(s.platform.cli(&["policy", "show", "acme"]));
    assert!(!policy.contains("acme-public"), "{policy}");

    // Removing a zone file removes the zone on apply.
    std::fs::remove_file(again.join("zones/platform.toml")).unwrap();
    std::fs::remove_file(again.join("tenants/acme/policies/public.cedar")).unwrap();
    write(
        &again,
        "zones/payments.toml",
        "name = \"payments\"\ntenants = [\"acme\"]\negress = [\"https://api.stripe.com\"]\n",
    );
    let o = s.platform.cli(&["plan", a]);
    assert!(stdout(&o).contains("- zone platform"), "{}", stdout(&o));
    ok(s.platform.cli(&["apply", a]));
    let zones = ok(s.platform.cli(&["zone", "list"]));
    assert!(!zones.contains("platform"), "{zones}");
    assert_eq!(code(&s.platform.cli(&["drift", a])), Some(0));
}

#[test]
fn a_function_and_the_zone_that_bounds_it_apply_together_or_not_at_all() {
    let s = Setup::new();
    s.deploy(
        "fetch",
        "hello-c",
        &["/fetch"],
        "[egress]\nallow = [\"https://api.stripe.com/v1/charges\"]\n",
    );
    let dir = s.root().join("config");
    let d = dir.to_str().unwrap();
    ok(s.platform.cli(&["export", d]));
    ok(s.platform.cli(&["undeploy", "acme", "fetch"]));
    assert_eq!(s.platform.get("/fetch").status, 404);
    // The directory brings the function back, a zone whose ceiling does not cover its
    // egress, and a runtime policy: refused whole, naming the function.
    write(
        &dir,
        "zones/payments.toml",
        "name = \"payments\"\ntenants = [\"acme\"]\negress = [\"https://api.example.com\"]\n",
    );
    write(&dir, "tenants/acme/policies/public.cedar", RUNTIME);
    let before = serial(&s, &dir);
    let err = fails(s.platform.cli(&["apply", d]));
    assert!(
        err.contains("acme/fetch") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(serial(&s, &dir), before);
    assert_eq!(s.platform.get("/fetch").status, 404);
    let zones = ok(s.platform.cli(&["zone", "list"]));
    assert!(!zones.contains("payments"), "{zones}");
    let policy = ok(s.platform.cli(&["policy", "show", "acme"]));
    assert!(!policy.contains("acme-public"), "{policy}");
    // With the ceiling covering it, the zone, the policy and the function land in one
    // transaction (one serial step per stored row, one apply), and nothing drifts.
    write(
        &dir,
        "zones/payments.toml",
        "name = \"payments\"\ntenants = [\"acme\"]\negress = [\"https://api.stripe.com\"]\n",
    );
    ok(s.platform.cli(&["apply", d]));
    assert_eq!(s.platform.get("/fetch").status, 200);
    let zones = ok(s.platform.cli(&["zone", "list"]));
    assert!(zones.contains("payments"), "{zones}");
    let policy = ok(s.platform.cli(&["policy", "show", "acme"]));
    assert!(policy.contains("acme-public"), "{policy}");
    assert_eq!(code(&s.platform.cli(&["drift", d])), Some(0));
    let applied: Vec<serde_json::Value> = s
        .audit(300)
        .into_iter()
        .filter(|r| r["action"] == "deploy" && r["decision"] == "allow" && r["function"] == "fetch")
        .collect();
    assert_eq!(
        applied.len(),
        2,
        "the first deploy and the apply's: {applied:?}"
    );
}

#[test]
fn operators_declared_with_keys_are_enrolled_and_revoked_by_apply() {
    let s = Setup::with_args(&["--control-tls"]);
    let dir = s.root().join("config");
    let d = dir.to_str().unwrap();
    ok(s.platform.cli(&["export", d]));
    // alice's key pair is hers: only the public key goes into the directory.
    let key = rcgen::KeyPair::generate().unwrap();
    let private = s.root().join("alice.key");
    std::fs::write(&private, key.serialize_pem()).unwrap();
    write(&dir, "operators/alice.pem", &key.public_key_pem());
    write(&dir, "operators/alice.toml", "public_key = \"alice.pem\"\n");
    write(
        &dir,
        "control.cedar",
        &format!(
            "{CONTROL}\n@id(\"alice-applies\") permit (principal == Zerofn::Operator::\"alice\", action == Zerofn::Action::\"config.apply\", resource);\n"
        ),
    );
    let o = s.platform.cli(&["plan", d]);
    assert_eq!(code(&o), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("operator `alice` is issued a control-API certificate"),
        "{}",
        stdout(&o)
    );
    let certs = s.root().join("certs");
    let out = ok(s
        .platform
        .cli(&["apply", d, "--certificates-out", certs.to_str().unwrap()]));
    assert!(
        out.contains("spiffe://zerofn.local/operator/alice"),
        "{out}"
    );
    let (cert, ca) = (certs.join("alice.crt"), certs.join("ca.pem"));
    let alice = |args: &[&str]| crate::operators::as_operator(&s, &cert, &private, &ca, args);
    // The certificate authenticates her, and the directory's control policy decides.
    assert!(ok(alice(&["tenant", "list"])).contains("acme"));
    assert_eq!(code(&s.platform.cli(&["drift", d])), Some(0));
    let listed = ok(s.platform.cli(&["operator", "list"]));
    assert!(listed.contains("alice"), "{listed}");
    // She cannot apply a directory that revokes her own certificate.
    std::fs::remove_file(dir.join("operators/alice.toml")).unwrap();
    std::fs::remove_file(dir.join("operators/alice.pem")).unwrap();
    let err = fails(alice(&["apply", d]));
    assert!(err.contains("revoke the certificate of `alice`"), "{err}");
    assert!(ok(alice(&["tenant", "list"])).contains("acme"));
    // Not declared any more: the operator token's apply revokes her certificate.
    let o = s.platform.cli(&["plan", d]);
    assert!(stdout(&o).contains("- operator alice"), "{}", stdout(&o));
    ok(s.platform.cli(&["apply", d]));
    let err = fails(alice(&["tenant", "list"]));
    assert!(err.contains("revoked"), "{err}");
    assert_eq!(code(&s.platform.cli(&["drift", d])), Some(0));
}
