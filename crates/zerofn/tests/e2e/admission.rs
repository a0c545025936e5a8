//! Admission policy end to end: attestations picked up from the function
//! directory, the SBOM matched against an imported OSV database, the
//! tenant's Cedar policy and severity threshold, `admission explain`, the
//! check table of a refused deploy, and an invalid policy refused whole.

use std::path::Path;

use crate::harness::*;
use crate::Setup;

const POLICY: &str = r#"
@id("acme-ci-built")
permit (principal, action == Zerofn::Action::"admit", resource in Zerofn::Tenant::"acme")
when {
    context has provenance &&
    context.provenance.repository == "https://git.example.com/acme/hello" &&
    context.provenance.ref == "refs/heads/main" &&
    context has tests && context.tests.passed
};
@id("no-critical")
forbid (principal, action, resource)
unless { context has sbom && context.sbom.findings.critical == 0 };
"#;

fn write_json(path: &Path, value: serde_json::Value) {
    std::fs::write(path, serde_json::to_vec_pretty(&value).unwrap()).unwrap();
}

fn attest(s: &Setup, wasm: &Path, kind: &str, predicate: &Path) {
    ok(s.platform.cli(&[
        "attest",
        wasm.to_str().unwrap(),
        "--key",
        s.key.to_str().unwrap(),
        "--type",
        kind,
        "--predicate",
        predicate.to_str().unwrap(),
    ]));
}

fn sbom(components: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": components})
}

#[test]
fn attestations_sbom_and_policy_decide_admission_and_refusals_show_every_check() {
    let s = Setup::new();
    let root = s.root().to_path_buf();
    // A vulnerability database with GitHub's real lodash advisory (CRITICAL,
    // fixed in 4.17.12).
    let osv = zerofn_testkit::testdata("osv/github-advisory-database/GHSA-jf85-cpcp-j695.json");
    ok(s.platform.cli(&["vulndb", "import", osv.to_str().unwrap()]));

    let policy = root.join("acme.cedar");
    std::fs::write(&policy, POLICY).unwrap();
    ok(s.platform.cli(&[
        "admission",
        "set",
        "acme",
        "--policy",
        policy.to_str().unwrap(),
        "--severity-threshold",
        "high",
    ]));
    let shown = ok(s.platform.cli(&["admission", "show", "acme", "--json"]));
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(
        shown["policy_ids"],
        serde_json::json!(["acme-ci-built", "no-critical"])
    );
    assert_eq!(shown["severity_threshold"], "high");

    // The function, signed, with provenance, passing tests and an SBOM
    // that has a known-vulnerable lodash.
    let f = function_dir(&root, "hello", "acme", &guest("hello-c"), &["/hello"], "");
    s.sign(&f.wasm, &s.key);
    let provenance = root.join("provenance.json");
    write_json(
        &provenance,
        serde_json::json!({
            "buildDefinition": {
                "buildType": "https://example.com/build/v1",
                "resolvedDependencies": [{"uri": "git+https://git.example.com/acme/hello@refs/heads/main", "digest": {"sha1": "abc"}}]
            },
            "runDetails": {"builder": {"id": "https://ci.example.com/builder"}}
        }),
    );
    attest(&s, &f.wasm, "slsa-provenance", &provenance);
    let tests = root.join("tests.json");
    write_json(
        &tests,
        serde_json::json!({"result": "PASSED", "passedTests": ["unit"], "failedTests": []}),
    );
    attest(&s, &f.wasm, "test-result", &tests);
    let vulnerable = root.join("sbom-vulnerable.json");
    write_json(
        &vulnerable,
        sbom(serde_json::json!([
            {"type": "library", "name": "lodash", "version": "4.17.11", "purl": "pkg:npm/lodash@4.17.11"}
        ])),
    );
    attest(&s, &f.wasm, "cyclonedx", &vulnerable);

    // explain: every check, nothing deployed, non-zero exit.
    let out = s
        .platform
        .cli(&["admission", "explain", f.dir.to_str().unwrap()]);
    let table = stdout(&out);
    assert!(!out.status.success(), "{table}");
    for expected in ["signature", "provenance", "tests", "sbom", "policy"] {
        assert!(table.contains(expected), "no `{expected}` row:\n{table}");
    }
    let vuln_row = table
        .lines()
        .find(|l| l.starts_with("vulnerabilities"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        vuln_row.contains("FAIL")
            && vuln_row.contains("lodash@4.17.11")
            && vuln_row.contains("GHSA-jf85-cpcp-j695"),
        "{vuln_row}"
    );
    assert!(
        table.contains("https://git.example.com/acme/hello@refs/heads/main"),
        "{table}"
    );
    assert_eq!(s.functions().as_array().unwrap().len(), 0);

    // deploy: refused with the same table on stdout and a one-line error, audited.
    let out = s.platform.cli(&["deploy", f.dir.to_str().unwrap()]);
    let table = stdout(&out);
    let err = fails(out);
    assert!(
        table.contains("CHECK") && table.contains("vulnerabilities") && table.contains("FAIL"),
        "{table}"
    );
    assert!(err.contains("admission refused: vulnerabilities:"), "{err}");
    let last = s.audit(1).pop().unwrap();
    assert_eq!(last["action"], "deploy");
    assert_eq!(last["decision"], "deny");
    assert_eq!(s.platform.get("/hello").status, 404);

    // A clean SBOM: admitted by the named policy, served.
    let clean = root.join("sbom-clean.json");
    write_json(
        &clean,
        sbom(serde_json::json!([
            {"type": "library", "name": "lodash", "version": "4.17.21", "purl": "pkg:npm/lodash@4.17.21"}
        ])),
    );
    attest(&s, &f.wasm, "cyclonedx", &clean);
    let out = ok(s
        .platform
        .cli(&["admission", "explain", f.dir.to_str().unwrap()]));
    assert!(out.contains("would be admitted"), "{out}");
    // `--json`: standard output is exactly one JSON object.
    let out = ok(s
        .platform
        .cli(&["admission", "explain", f.dir.to_str().unwrap(), "--json"]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["admitted"], true, "{v}");
    assert!(v["checks"].as_array().is_some_and(|c| !c.is_empty()), "{v}");
    ok(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    assert_eq!(s.platform.get("/hello").status, 200);
    let last = s
        .audit(5)
        .into_iter()
        .rev()
        .find(|r| r["action"] == "deploy")
        .unwrap();
    assert_eq!(last["decision"], "allow");
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .contains("allowed by acme-ci-built"),
        "{last}"
    );

    // Failing tests: the policy has no permit for it and says so.
    write_json(
        &tests,
        serde_json::json!({"result": "FAILED", "passedTests": [], "failedTests": ["unit"]}),
    );
    attest(&s, &f.wasm, "test-result", &tests);
    let err = fails(s.platform.cli(&["deploy", f.dir.to_str().unwrap()]));
    assert!(
        err.contains("policy: denied: no permit policy matched"),
        "{err}"
    );

    // An invalid policy is refused whole; the old one stays in force.
    let bad = root.join("bad.cedar");
    std::fs::write(
        &bad,
        "@id(\"ok\") permit (principal, action == Zerofn::Action::\"admit\", resource);\n\
         @id(\"typo\") permit (principal, action == Zerofn::Action::\"admit\", resource) when { context.nosuch };\n",
    )
    .unwrap();
    let err = fails(s.platform.cli(&[
        "admission",
        "set",
        "acme",
        "--policy",
        bad.to_str().unwrap(),
    ]));
    assert!(
        err.contains("invalid policy, nothing changed") && err.contains("typo"),
        "{err}"
    );
    let shown: serde_json::Value = serde_json::from_str(&ok(s.platform.cli(&[
        "admission",
        "show",
        "acme",
        "--json",
    ])))
    .unwrap();
    assert_eq!(
        shown["policy_ids"],
        serde_json::json!(["acme-ci-built", "no-critical"])
    );

    // A tenant that requires an SBOM refuses a function without one.
    ok(s.platform.cli(&[
        "admission",
        "set",
        "acme",
        "--default-policy",
        "--require-sbom",
        "true",
    ]));
    let g = function_dir(&root, "bare", "acme", &guest("hello-c"), &["/bare"], "");
    s.sign(&g.wasm, &s.key);
    let err = fails(s.platform.cli(&["deploy", g.dir.to_str().unwrap()]));
    assert!(
        err.contains("sbom: the tenant requires a signed CycloneDX SBOM"),
        "{err}"
    );
}
