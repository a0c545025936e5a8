//! Versions and rollback: every deploy is a numbered version, `zerofn rollback --to N`
//! submits version N's kept request to admission again, is audited as a rollback, needs
//! its own grant, and survives a restart.

use crate::harness::*;
use crate::Setup;

fn versions(s: &Setup) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&ok(s
        .platform
        .cli(&["versions", "acme", "hello", "--json"])))
    .unwrap();
    v["versions"].as_array().unwrap().clone()
}

/// Replaces the function's component with `guest_name`'s and signs it (a higher manifest
/// version), as a new build of the same function would.
fn rebuild(s: &Setup, f: &FunctionDir, guest_name: &str) {
    std::fs::write(&f.wasm, guest(guest_name)).unwrap();
    s.sign(&f.wasm, &s.key);
}

#[test]
fn a_rollback_deploys_an_earlier_version_again_as_the_next_one_and_survives_a_restart() {
    let s = Setup::new();
    let f = s.deploy("hello", "hello-c", &["/hello"], "");
    let first = s.platform.get("/hello").text();
    rebuild(&s, &f, "echo-c");
    let out = ok(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    assert!(out.contains("as version 2"), "{out}");
    assert_ne!(s.platform.get("/hello").text(), first);

    let listed = versions(&s);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(
        (listed[0]["number"].as_u64(), listed[0]["current"].as_bool()),
        (Some(2), Some(true))
    );
    assert_eq!(listed[1]["current"], false);
    assert_eq!(listed[1]["kept"], true);
    assert_eq!(listed[0]["deployed_by"], "operator");
    assert!(listed[1]["manifest_version"].as_u64() < listed[0]["manifest_version"].as_u64());
    let table = ok(s.platform.cli(&["versions", "acme", "hello"]));
    assert!(
        table
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("2 (current)\tdeploy"),
        "{table}"
    );

    let out = ok(s.platform.cli(&[
        "rollback",
        "acme",
        "hello",
        "--to",
        "1",
        "--reason",
        "v2 breaks checkout",
    ]));
    assert!(out.contains("back to version 1: now version 3"), "{out}");
    assert_eq!(s.platform.get("/hello").text(), first);
    let listed = versions(&s);
    assert_eq!(listed[0]["kind"], "rollback");
    assert_eq!(listed[0]["rollback_to"], 1);
    assert_eq!(listed[0]["digest"], listed[2]["digest"]);
    assert_eq!(listed[0]["current"], true);
    let record = s
        .audit(10)
        .into_iter()
        .rev()
        .find(|r| r["action"] == "rollback")
        .expect("a rollback record");
    assert_eq!(record["decision"], "allow");
    let reason = record["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("rollback to version 1; signed by")
            && reason.contains("allowed: rollback to version 1: v2 breaks checkout"),
        "{reason}"
    );

    // Unknown versions name the problem and change nothing.
    let err = fails(s.platform.cli(&["rollback", "acme", "hello", "--to", "9"]));
    assert!(
        err.contains("HTTP 404") && err.contains("has no version 9"),
        "{err}"
    );
    let err = fails(s.platform.cli(&["versions", "acme", "nothing"]));
    assert!(err.contains("HTTP 404"), "{err}");
    let err = fails(
        s.platform
            .cli(&["rollback", "acme", "hello", "--to", "1", "--reason", " "]),
    );
    assert!(err.contains("needs a reason"), "{err}");
    assert_eq!(versions(&s).len(), 3);

    // What a restart serves is the rolled-back version, and the history is still there.
    let s = s.restart();
    assert_eq!(s.platform.get("/hello").text(), first);
    let listed = versions(&s);
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[0]["current"], true);
    // Forward again: back to version 2, whose request is kept too.
    let out = ok(s
        .platform
        .cli(&["rollback", "acme", "hello", "--to", "2", "--json"]));
    let deployed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(deployed["number"], 4);
    assert_ne!(s.platform.get("/hello").text(), first);
}

#[test]
fn only_the_newest_versions_keep_their_request() {
    let s = Setup::with_args(&["--keep-versions", "1"]);
    let f = s.deploy("hello", "hello-c", &["/hello"], "");
    rebuild(&s, &f, "echo-c");
    ok(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    let listed = versions(&s);
    assert_eq!(
        listed
            .iter()
            .map(|v| v["kept"].as_bool().unwrap())
            .collect::<Vec<_>>(),
        vec![true, false]
    );
    let err = fails(s.platform.cli(&["rollback", "acme", "hello", "--to", "1"]));
    assert!(
        err.contains("HTTP 409") && err.contains("version 1 of `acme/hello` is no longer kept"),
        "{err}"
    );
    // The refusal is audited and changed nothing.
    let refused = s
        .audit(5)
        .into_iter()
        .rev()
        .find(|r| r["action"] == "rollback")
        .expect("the refusal's record");
    assert_eq!(refused["decision"], "deny");
    assert_eq!(versions(&s).len(), 2);
}
