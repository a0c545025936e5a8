//! Signed intent: the manifest is signed with the code (`zerofn sign DIR`), admission
//! refuses any other manifest naming the field that differs, an admission policy decides on
//! the signed manifest, and versions only go up unless a rollback is allowed and audited.

use std::path::{Path, PathBuf};

use crate::harness::*;
use crate::Setup;

fn sign_dir(s: &Setup, dir: &Path, key: &Path, version: u64) {
    ok(s.platform.cli(&[
        "sign",
        dir.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--version",
        &version.to_string(),
    ]));
}

/// A copy of a signed function directory (component, bundles, manifest) at `to`, with
/// its zerofn.toml replaced by `manifest`: what a deployer without the signing key can do.
fn resubmit(from: &Path, to: &Path, manifest: &str) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    std::fs::write(to.join("zerofn.toml"), manifest).unwrap();
    to.to_path_buf()
}

fn deploy(s: &Setup, dir: &Path) -> std::process::Output {
    s.platform.cli(&["deploy", dir.to_str().unwrap()])
}

#[test]
fn a_signed_function_cannot_be_deployed_with_another_manifest() {
    let s = Setup::new();
    let root = s.root().to_path_buf();
    let f = function_dir(&root, "hello", "acme", &guest("hello-c"), &["/hello"], "");
    sign_dir(&s, &f.dir, &s.key, 1);
    let out = ok(deploy(&s, &f.dir));
    assert!(out.contains("version 1"), "{out}");

    // The issue's reproduction: the same component and bundles, a new manifest.
    let base = "tenant = \"acme\"\ncomponent = \"hello.wasm\"\nroutes = [\"/hello\"]\n";
    let cases = [
        (
            format!("name = \"payments\"\n{base}"),
            "`name` differs from the signed manifest: signed \"hello\", submitted \"payments\"",
        ),
        (
            format!("name = \"hello\"\n{base}[permissions]\nkv = [\"secrets:read-write\"]\n"),
            "`permissions.kv` differs from the signed manifest: signed [], submitted [\"secrets:read-write\"]",
        ),
        (
            format!("name = \"hello\"\n{base}[invoke]\nfrom = [\"tenant:mallory\"]\n"),
            "`invoke.from` differs from the signed manifest: signed [\"public\"], submitted [\"tenant:mallory\"]",
        ),
        (
            format!("name = \"hello\"\n{base}[config]\nupstream = \"https://evil.example\"\n"),
            "`config.upstream` differs from the signed manifest: signed (absent), submitted (not shown)",
        ),
        (
            format!("name = \"hello\"\n{base}[limits]\nmemory_mb = 512\n"),
            "`limits.memory_mb` differs from the signed manifest: signed 64, submitted 512",
        ),
        (
            format!("version = 2\nname = \"hello\"\n{base}"),
            "`version` differs from the signed manifest: signed 1, submitted 2",
        ),
    ];
    for (i, (manifest, expected)) in cases.iter().enumerate() {
        let dir = resubmit(&f.dir, &root.join(format!("forged-{i}")), manifest);
        let err = fails(deploy(&s, &dir));
        assert!(err.contains("HTTP 403"), "{err}");
        assert!(err.contains(expected), "expected `{expected}` in\n{err}");
        assert!(
            !err.contains("evil.example"),
            "config values are not quoted: {err}"
        );
    }
    // Nothing changed: one function, its compiled policy without the forged grants.
    let fns = s.functions();
    assert_eq!(fns.as_array().unwrap().len(), 1, "{fns}");
    let policy = ok(s.platform.cli(&["policy", "show", "acme", "hello"]));
    assert!(!policy.contains("secrets"), "{policy}");
    assert!(!policy.contains("mallory"), "{policy}");
    let refusals = s
        .audit(50)
        .into_iter()
        .filter(|r| r["action"] == "deploy" && r["decision"] == "deny")
        .count();
    assert_eq!(refusals, cases.len());

    // Without any signed manifest, a deploy is refused and says how to sign one.
    std::fs::remove_file(f.dir.join("zerofn.manifest.sigstore.json")).unwrap();
    let err = fails(deploy(&s, &f.dir));
    assert!(
        err.contains("no signed manifest was submitted") && err.contains("zerofn sign DIR"),
        "{err}"
    );
}

#[test]
fn a_manifest_signed_by_another_tenants_key_or_for_another_component_is_refused() {
    let s = Setup::new();
    let root = s.root().to_path_buf();
    let other_key = root.join("other.key");
    ok(s.platform
        .cli(&["keygen", "--out", other_key.to_str().unwrap()]));
    ok(s.platform.cli(&[
        "tenant",
        "create",
        "other",
        "--signing-key",
        &format!("{}.pub", other_key.display()),
    ]));
    let f = function_dir(&root, "hello", "acme", &guest("hello-c"), &["/hello"], "");
    // The other tenant's signer signs acme's manifest; acme's key signs the component.
    sign_dir(&s, &f.dir, &other_key, 1);
    let foreign = std::fs::read(f.dir.join("zerofn.manifest.sigstore.json")).unwrap();
    sign_dir(&s, &f.dir, &s.key, 1);
    std::fs::write(f.dir.join("zerofn.manifest.sigstore.json"), &foreign).unwrap();
    let err = fails(deploy(&s, &f.dir));
    assert!(
        err.contains("HTTP 403") && err.contains("attestation zerofn.manifest.sigstore.json"),
        "{err}"
    );
    let table = stdout(
        &s.platform
            .cli(&["admission", "explain", f.dir.to_str().unwrap()]),
    );
    assert!(
        table.lines().any(|l| l.starts_with("manifest")
            && l.contains("FAIL")
            && l.contains("no signed manifest was submitted")),
        "{table}"
    );

    // A manifest signed (by acme) about another component, beside this one.
    let echo = function_dir(&root, "echo", "acme", &guest("echo-c"), &["/echo"], "");
    sign_dir(&s, &echo.dir, &s.key, 1);
    let hello = function_dir(&root, "hello2", "acme", &guest("hello-c"), &["/hello2"], "");
    sign_dir(&s, &hello.dir, &s.key, 1);
    // Echo's statement names echo's component: as hello2's manifest it is about the wrong
    // digest even if it had the right content.
    let echo_text = std::fs::read_to_string(echo.dir.join("zerofn.toml")).unwrap();
    std::fs::write(
        hello.dir.join("zerofn.toml"),
        echo_text.replace("echo", "hello2"),
    )
    .unwrap();
    std::fs::copy(
        echo.dir.join("zerofn.manifest.sigstore.json"),
        hello.dir.join("zerofn.manifest.sigstore.json"),
    )
    .unwrap();
    let err = fails(deploy(&s, &hello.dir));
    assert!(
        err.contains("HTTP 403") && err.contains("attestation zerofn.manifest.sigstore.json"),
        "{err}"
    );
    let table = stdout(
        &s.platform
            .cli(&["admission", "explain", hello.dir.to_str().unwrap()]),
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("attestation zerofn.manifest.sigstore.json"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("FAIL"), "{row}");
    assert_eq!(s.functions().as_array().unwrap().len(), 0);
}

#[test]
fn versions_only_rise_unless_a_rollback_is_allowed_and_audited() {
    let s = Setup::new();
    let root = s.root().to_path_buf();
    let f = function_dir(&root, "hello", "acme", &guest("hello-c"), &["/hello"], "");
    sign_dir(&s, &f.dir, &s.key, 5);
    ok(deploy(&s, &f.dir));
    // The same signed version again is a redeploy.
    ok(deploy(&s, &f.dir));

    sign_dir(&s, &f.dir, &s.key, 3);
    let err = fails(deploy(&s, &f.dir));
    assert!(
        err.contains("version 3 is below version 5, the highest deployed for this function")
            && err.contains("--allow-rollback"),
        "{err}"
    );
    // Version 5 again, but with another manifest: a version stands for one content.
    let changed = resubmit(
        &f.dir,
        &root.join("changed"),
        "name = \"hello\"\ntenant = \"acme\"\ncomponent = \"hello.wasm\"\nroutes = [\"/hello\"]\n[limits]\nmemory_mb = 32\n",
    );
    sign_dir(&s, &changed, &s.key, 5);
    let err = fails(deploy(&s, &changed));
    assert!(
        err.contains("version 5 was already deployed with different content"),
        "{err}"
    );

    // An empty reason is refused before anything is decided.
    let err = fails(
        s.platform
            .cli(&["deploy", f.dir.to_str().unwrap(), "--allow-rollback", " "]),
    );
    assert!(err.contains("needs a reason"), "{err}");
    let out = ok(s.platform.cli(&[
        "deploy",
        f.dir.to_str().unwrap(),
        "--allow-rollback",
        "version 5 breaks checkout (INC-42)",
    ]));
    assert!(out.contains("version 3"), "{out}");
    let fns = s.functions();
    assert_eq!(fns[0]["version"], 3, "{fns}");
    let table = ok(s.platform.cli(&["functions"]));
    assert!(table.lines().next().unwrap().contains("VERSION"), "{table}");
    let rollback = s
        .audit(20)
        .into_iter()
        .rev()
        .find(|r| r["action"] == "deploy" && r["decision"] == "allow")
        .unwrap();
    let reason = rollback["reason"].as_str().unwrap();
    assert!(
        reason.contains("manifest version 3")
            && reason
                .contains("ROLLBACK below version 5 allowed: version 5 breaks checkout (INC-42)"),
        "{reason}"
    );

    // The highest version outlives an undeploy and a restart.
    ok(s.platform.cli(&["undeploy", "acme", "hello"]));
    let s = s.restart();
    sign_dir(&s, &f.dir, &s.key, 4);
    let err = fails(deploy(&s, &f.dir));
    assert!(err.contains("below version 5"), "{err}");
    sign_dir(&s, &f.dir, &s.key, 6);
    ok(deploy(&s, &f.dir));
    // A restart verifies the stored signed manifest again and serves the function.
    let s = s.restart();
    assert_eq!(s.platform.get("/hello").status, 200);
    assert_eq!(s.functions()[0]["version"], 6);
}

/// The issue's example: nothing invocable by `public` may write the `payments` bucket.
const NO_PUBLIC_PAYMENT_WRITERS: &str = r#"
@id("admit-acme")
permit (principal, action == Zerofn::Action::"admit", resource in Zerofn::Tenant::"acme");
@id("no-public-payment-writers")
forbid (principal, action == Zerofn::Action::"admit", resource)
when {
    context.manifest.invoke.from.contains("public") &&
    context.manifest.permissions.kv_write.contains("payments")
};
"#;

#[test]
fn an_admission_policy_decides_on_the_signed_manifest() {
    let s = Setup::new();
    let root = s.root().to_path_buf();
    let policy = root.join("acme.cedar");
    std::fs::write(&policy, NO_PUBLIC_PAYMENT_WRITERS).unwrap();
    ok(s.platform.cli(&[
        "admission",
        "set",
        "acme",
        "--policy",
        policy.to_str().unwrap(),
    ]));
    let writer = function_dir(
        &root,
        "writer",
        "acme",
        &guest("hello-c"),
        &["/writer"],
        "[permissions]\nkv = [\"payments:read-write\"]\n",
    );
    sign_dir(&s, &writer.dir, &s.key, 1);
    let err = fails(deploy(&s, &writer.dir));
    assert!(err.contains("no-public-payment-writers"), "{err}");
    let table = stdout(
        &s.platform
            .cli(&["admission", "explain", writer.dir.to_str().unwrap()]),
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("manifest") && l.contains("pass")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("version") && l.contains("1 (first deploy")),
        "{table}"
    );

    let internal = function_dir(
        &root,
        "settle",
        "acme",
        &guest("hello-c"),
        &["/settle"],
        "[permissions]\nkv = [\"payments:read-write\"]\n[invoke]\nfrom = [\"checkout\"]\n",
    );
    sign_dir(&s, &internal.dir, &s.key, 1);
    ok(deploy(&s, &internal.dir));
    let reader = function_dir(
        &root,
        "reader",
        "acme",
        &guest("hello-c"),
        &["/reader"],
        "[permissions]\nkv = [\"payments:read\"]\n",
    );
    sign_dir(&s, &reader.dir, &s.key, 1);
    ok(deploy(&s, &reader.dir));
}
