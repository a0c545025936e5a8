//! Admission decisions: may this signed component, with these verified
//! facts, run as this function of this tenant?

use serde_json::json;

use crate::{decide, uid, Decision, PolicyError, PolicySet};

/// The policy in force for a tenant that has not set one: anything whose
/// signature verified against the tenant's keys or signing identities is
/// admitted. Tenants narrow it by setting their own.
pub const DEFAULT_ADMISSION_POLICY: &str = r#"@id("zerofn-default-admit")
permit (principal, action == Zerofn::Action::"admit", resource);
"#;

/// One admission request. `context` is the `AdmissionContext` of the
/// schema, built by admission from verified facts only.
#[derive(Clone, Debug)]
pub struct AdmissionQuery {
    pub tenant: String,
    pub function: String,
    /// The signer's identity: key id or certificate SAN.
    pub signer: String,
    pub context: serde_json::Value,
}

impl PolicySet {
    /// The default admission policy set ([`DEFAULT_ADMISSION_POLICY`]).
    pub fn default_admission() -> Result<PolicySet, PolicyError> {
        PolicySet::parse(DEFAULT_ADMISSION_POLICY)
    }

    /// Decides `query` with this set.
    pub fn decide_admission(&self, query: &AdmissionQuery) -> Result<Decision, PolicyError> {
        let resource_id = format!("{}/{}", query.tenant, query.function);
        let entities = json!([
            {
                "uid": {"type": "Zerofn::Function", "id": resource_id},
                "attrs": {"tenant": query.tenant, "name": query.function},
                "parents": [{"type": "Zerofn::Tenant", "id": query.tenant}],
            },
            {"uid": {"type": "Zerofn::Tenant", "id": query.tenant}, "attrs": {}, "parents": []},
            {"uid": {"type": "Zerofn::Signer", "id": query.signer}, "attrs": {}, "parents": []},
        ]);
        decide(
            self,
            uid("Zerofn::Signer", &query.signer)?,
            uid("Zerofn::Action", "admit")?,
            uid("Zerofn::Function", &resource_id)?,
            query.context.clone(),
            entities,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(critical: i64, high: i64) -> serde_json::Value {
        json!({"critical": critical, "high": high, "medium": 0, "low": 0, "unknown": 0})
    }

    fn query(context: serde_json::Value) -> AdmissionQuery {
        AdmissionQuery {
            tenant: "acme".into(),
            function: "hello".into(),
            signer: "https://github.com/acme/fn/.github/workflows/release.yml@refs/heads/main"
                .into(),
            context,
        }
    }

    fn signed_manifest(kv: &[&str], call: &[&str], from: &[&str]) -> serde_json::Value {
        let buckets = |write: bool| -> Vec<&str> {
            kv.iter()
                .filter(|g| {
                    g.ends_with(":read-write")
                        || g.ends_with(if write { ":write" } else { ":read" })
                })
                .filter_map(|g| g.split(':').next())
                .collect()
        };
        json!({
            "version": 3,
            "name": "hello",
            "routes": ["/hello"],
            "limits": {"memory_mb": 64, "timeout_ms": 1000, "max_body_kb": 1024},
            "permissions": {"kv": kv, "kv_read": buckets(false), "kv_write": buckets(true), "call": call},
            "invoke": {"from": from},
            "config": [],
            "layers": [],
            "layer_digests": [],
        })
    }

    fn ci_built(repository: &str, critical: i64, tests_passed: bool) -> serde_json::Value {
        json!({
            "digest": "sha256:00",
            "manifest": signed_manifest(&[], &[], &["public"]),
            "signer": {
                "kind": "certificate",
                "identity": "https://github.com/acme/fn/.github/workflows/release.yml@refs/heads/main",
                "issuer": "https://token.actions.githubusercontent.com",
            },
            "attestations": 3,
            "provenance": {
                "builder": "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_generic_slsa3.yml@refs/tags/v1.9.0",
                "buildType": "https://github.com/slsa-framework/slsa-github-generator/generic@v1",
                "repository": repository,
                "ref": "refs/heads/main",
                "signer": "key sha256:ab",
            },
            "sbom": {"components": 500, "findings": counts(critical, 0), "signer": "key sha256:ab"},
            "tests": {"passed": tests_passed, "passedCount": 10, "failedCount": if tests_passed {0} else {1}, "signer": "key sha256:ab"},
        })
    }

    const CI_ONLY: &str = r#"
        @id("ci-built-clean-tested")
        permit (principal, action == Zerofn::Action::"admit", resource in Zerofn::Tenant::"acme")
        when {
            context.signer.issuer == "https://token.actions.githubusercontent.com" &&
            context.signer.identity like "https://github.com/acme/*@refs/heads/main" &&
            context has provenance &&
            context.provenance.repository == "https://github.com/acme/fn" &&
            context.provenance.ref == "refs/heads/main" &&
            context has tests && context.tests.passed
        };
        @id("no-critical-vulnerabilities")
        forbid (principal, action, resource)
        unless { context has sbom && context.sbom.findings.critical == 0 };
    "#;

    #[test]
    fn the_default_admits_anything_verified() {
        let set = PolicySet::default_admission().unwrap();
        let d = set
            .decide_admission(&query(ci_built("https://github.com/evil/fn", 3, false)))
            .unwrap();
        assert!(d.is_allowed());
        assert_eq!(d.determining(), ["zerofn-default-admit"]);
    }

    #[test]
    fn a_tenant_policy_decides_on_the_facts_and_names_its_rules() {
        let set = PolicySet::parse(CI_ONLY).unwrap();
        let ok = set
            .decide_admission(&query(ci_built("https://github.com/acme/fn", 0, true)))
            .unwrap();
        assert!(ok.is_allowed(), "{ok:?}");
        assert_eq!(ok.determining(), ["ci-built-clean-tested"]);
        assert_eq!(ok.explain(), "allowed by ci-built-clean-tested");

        let other_repo = set
            .decide_admission(&query(ci_built("https://github.com/evil/fn", 0, true)))
            .unwrap();
        assert!(!other_repo.is_allowed());
        assert!(other_repo.determining().is_empty());
        assert_eq!(other_repo.explain(), "denied: no permit policy matched");

        let failing_tests = set
            .decide_admission(&query(ci_built("https://github.com/acme/fn", 0, false)))
            .unwrap();
        assert!(!failing_tests.is_allowed());

        let vulnerable = set
            .decide_admission(&query(ci_built("https://github.com/acme/fn", 1, true)))
            .unwrap();
        assert!(!vulnerable.is_allowed());
        assert_eq!(vulnerable.determining(), ["no-critical-vulnerabilities"]);

        let mut no_sbom = ci_built("https://github.com/acme/fn", 0, true);
        no_sbom.as_object_mut().unwrap().remove("sbom");
        let d = set.decide_admission(&query(no_sbom)).unwrap();
        assert!(!d.is_allowed());
        assert_eq!(d.determining(), ["no-critical-vulnerabilities"]);

        let mut other_tenant = query(ci_built("https://github.com/acme/fn", 0, true));
        other_tenant.tenant = "globex".into();
        assert!(!set.decide_admission(&other_tenant).unwrap().is_allowed());
    }

    /// The issue's examples: nothing invocable by `public` may write the `payments`
    /// bucket, and only code with provenance from `main` may call `billing`.
    const MANIFEST_RULES: &str = r#"
        @id("admit-acme")
        permit (principal, action == Zerofn::Action::"admit", resource in Zerofn::Tenant::"acme");
        @id("no-public-payments-writers")
        forbid (principal, action == Zerofn::Action::"admit", resource)
        when {
            context.manifest.invoke.from.contains("public") &&
            context.manifest.permissions.kv_write.contains("payments")
        };
        @id("billing-callers-from-main")
        forbid (principal, action == Zerofn::Action::"admit", resource)
        when { context.manifest.permissions.call.contains("billing") }
        unless { context has provenance && context.provenance.ref == "refs/heads/main" };
    "#;

    #[test]
    fn a_tenant_policy_decides_on_the_signed_manifest() {
        let set = PolicySet::parse(MANIFEST_RULES).unwrap();
        let with = |manifest: serde_json::Value, provenance: bool| {
            let mut context = ci_built("https://github.com/acme/fn", 0, true);
            let object = context.as_object_mut().unwrap();
            object.insert("manifest".into(), manifest);
            if !provenance {
                object.remove("provenance");
            }
            set.decide_admission(&query(context)).unwrap()
        };
        let reader = with(signed_manifest(&["payments:read"], &[], &["public"]), false);
        assert!(reader.is_allowed(), "{reader:?}");
        let writer = with(
            signed_manifest(&["payments:read-write"], &[], &["public"]),
            true,
        );
        assert!(!writer.is_allowed());
        assert_eq!(writer.determining(), ["no-public-payments-writers"]);
        let internal_writer = with(
            signed_manifest(&["payments:write"], &[], &["checkout"]),
            true,
        );
        assert!(internal_writer.is_allowed(), "{internal_writer:?}");

        let caller_from_main = with(signed_manifest(&[], &["billing"], &["public"]), true);
        assert!(caller_from_main.is_allowed(), "{caller_from_main:?}");
        let caller_unproven = with(signed_manifest(&[], &["billing"], &["public"]), false);
        assert_eq!(caller_unproven.determining(), ["billing-callers-from-main"]);
    }

    #[test]
    fn a_context_that_does_not_match_the_schema_is_an_error_not_a_decision() {
        let set = PolicySet::default_admission().unwrap();
        let err = set
            .decide_admission(&query(json!({"digest": "sha256:00"})))
            .unwrap_err();
        assert!(matches!(err, PolicyError::Request(_)), "{err:?}");
    }
}
