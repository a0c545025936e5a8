//! Control-plane decisions: may this operator take this control action on this tenant or
//! on the platform?
//!
//! The policy in force is the built-in [`ROOT_CONTROL_POLICY`] (the operator token,
//! `Zerofn::Operator::"root"`, may do everything) together with the platform's control
//! policy set, which operators replace with `zerofn operator policy set`. The two are
//! decided as one Cedar policy set: any matching `forbid` denies (root included), otherwise
//! any matching `permit` allows, otherwise the request is denied.
//!
//! # Trust
//! The operator's name and how it authenticated come from the server, which verified the
//! token or the client certificate; the action and resource come from the server's route
//! table. Policy text is untrusted until [`PolicySet::parse`] has validated it. A decision
//! that cannot be made (a request the schema refuses, an evaluation error) is a denial.

use std::fmt;

use serde_json::json;

use crate::{decide, uid, Decision, Permit, PolicyError, PolicySet, Reason};

/// The operator the operator token authenticates as.
pub const ROOT_OPERATOR: &str = "root";

/// The id of the built-in root permit; no stored control policy may use it.
pub const ROOT_POLICY_ID: &str = "zerofn-root";

/// The built-in control policy: the operator token may take every control action.
pub const ROOT_CONTROL_POLICY: &str = r#"@id("zerofn-root")
permit (principal == Zerofn::Operator::"root", action, resource);
"#;

/// The id of the one `Zerofn::Platform` entity.
pub const PLATFORM_ENTITY_ID: &str = "platform";

/// A control action of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlAction {
    TenantRead,
    TenantManage,
    Deploy,
    /// Deploying a manifest that widens a function's grants.
    PermissionsGrant,
    /// Deploying a manifest version below the highest deployed.
    DeployRollback,
    PolicyManage,
    AuditRead,
    /// Removing old audit records (`zerofn audit prune`).
    AuditManage,
    OperatorManage,
    /// Applying a configuration directory (`zerofn apply`), platform-wide.
    ConfigApply,
}

impl ControlAction {
    /// Every control action.
    pub const ALL: [ControlAction; 10] = [
        ControlAction::TenantRead,
        ControlAction::TenantManage,
        ControlAction::Deploy,
        ControlAction::PermissionsGrant,
        ControlAction::DeployRollback,
        ControlAction::PolicyManage,
        ControlAction::AuditRead,
        ControlAction::AuditManage,
        ControlAction::OperatorManage,
        ControlAction::ConfigApply,
    ];

    /// The action's id in the schema (`Zerofn::Action::"<id>"`).
    pub fn as_str(self) -> &'static str {
        match self {
            ControlAction::TenantRead => "tenant.read",
            ControlAction::TenantManage => "tenant.manage",
            ControlAction::Deploy => "deploy",
            ControlAction::PermissionsGrant => "permissions.grant",
            ControlAction::DeployRollback => "deploy.rollback",
            ControlAction::PolicyManage => "policy.manage",
            ControlAction::AuditRead => "audit.read",
            ControlAction::AuditManage => "audit.manage",
            ControlAction::OperatorManage => "operator.manage",
            ControlAction::ConfigApply => "config.apply",
        }
    }
}

impl fmt::Display for ControlAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Zerofn::Action::\"{}\"", self.as_str())
    }
}

/// What a control action acts on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ControlResource {
    /// The platform as a whole (`Zerofn::Platform::"platform"`).
    Platform,
    /// One tenant (`Zerofn::Tenant::"<name>"`).
    Tenant(String),
}

impl fmt::Display for ControlResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlResource::Platform => write!(f, "Zerofn::Platform::\"{PLATFORM_ENTITY_ID}\""),
            ControlResource::Tenant(t) => write!(f, "Zerofn::Tenant::\"{}\"", t.escape_debug()),
        }
    }
}

impl ControlResource {
    fn entity(&self) -> (&'static str, &str) {
        match self {
            ControlResource::Platform => ("Zerofn::Platform", PLATFORM_ENTITY_ID),
            ControlResource::Tenant(t) => ("Zerofn::Tenant", t),
        }
    }
}

/// How the operator proved who it is (`context.authentication`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    /// The operator token (always `Zerofn::Operator::"root"`).
    Token,
    /// A client certificate issued by the platform CA.
    Mtls,
}

impl Authentication {
    pub fn as_str(self) -> &'static str {
        match self {
            Authentication::Token => "token",
            Authentication::Mtls => "mtls",
        }
    }
}

/// One control request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlQuery {
    /// The operator's name (`root` for the token).
    pub operator: String,
    pub authentication: Authentication,
    pub action: ControlAction,
    pub resource: ControlResource,
}

/// The control policy in force: the built-in root permit and the platform's set.
#[derive(Debug, Clone)]
pub struct ControlPolicy {
    root: PolicySet,
    platform: PolicySet,
}

impl ControlPolicy {
    /// The built-in root permit alone (no platform control policy set yet).
    pub fn builtin() -> Result<ControlPolicy, PolicyError> {
        ControlPolicy::with_platform(PolicySet::parse("")?)
    }

    /// Parse and validate platform control policy text; on any error nothing is returned,
    /// so the caller keeps the policy it had.
    pub fn parse(platform_text: &str) -> Result<ControlPolicy, PolicyError> {
        ControlPolicy::with_platform(PolicySet::parse(platform_text)?)
    }

    fn with_platform(platform: PolicySet) -> Result<ControlPolicy, PolicyError> {
        if platform.ids().iter().any(|id| id == ROOT_POLICY_ID) {
            return Err(PolicyError::DuplicateId {
                id: ROOT_POLICY_ID.to_owned(),
            });
        }
        Ok(ControlPolicy {
            root: PolicySet::parse(ROOT_CONTROL_POLICY)?,
            platform,
        })
    }

    /// The platform's control policy set (without the built-in root permit).
    pub fn platform(&self) -> &PolicySet {
        &self.platform
    }

    /// Decide `query`. Never fails: a request that cannot be decided is denied, with the
    /// reason in [`Decision::errors`].
    pub fn decide(&self, query: &ControlQuery) -> Decision {
        let root = self.decide_with(&self.root, query);
        let platform = self.decide_with(&self.platform, query);
        match (root, platform) {
            (Ok(a), Ok(b)) => combine(a, b),
            (Err(e), _) | (_, Err(e)) => Decision::error(e.to_string()),
        }
    }

    fn decide_with(&self, set: &PolicySet, query: &ControlQuery) -> Result<Decision, PolicyError> {
        let (resource_type, resource_id) = query.resource.entity();
        let entities = json!([
            {"uid": {"type": "Zerofn::Operator", "id": query.operator}, "attrs": {}, "parents": []},
            {"uid": {"type": resource_type, "id": resource_id}, "attrs": {}, "parents": []},
        ]);
        decide(
            set,
            uid("Zerofn::Operator", &query.operator)?,
            uid("Zerofn::Action", query.action.as_str())?,
            uid(resource_type, resource_id)?,
            json!({"authentication": query.authentication.as_str()}),
            entities,
        )
    }
}

/// The decision of the union of two policy sets, from each set's decision. Cedar denies
/// when any forbid matches and otherwise allows when any permit matches; a set's decision
/// says which: allowed (its permits matched, no forbid did), denied naming forbids (a
/// forbid matched), or denied naming nothing (nothing matched).
fn combine(a: Decision, b: Decision) -> Decision {
    let mut errors: Vec<String> = Vec::new();
    let mut forbids: Vec<String> = Vec::new();
    let mut permits: Vec<String> = Vec::new();
    for d in [&a, &b] {
        errors.extend(d.errors().iter().cloned());
        if d.is_allowed() {
            permits.extend(d.determining().iter().cloned());
        } else {
            forbids.extend(d.determining().iter().cloned());
        }
    }
    forbids.sort();
    permits.sort();
    if !errors.is_empty() || !forbids.is_empty() || permits.is_empty() {
        return Decision::Deny(Reason::new(forbids, errors));
    }
    Decision::Allow(Permit::new(permits))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(
        operator: &str,
        auth: Authentication,
        action: ControlAction,
        r: ControlResource,
    ) -> ControlQuery {
        ControlQuery {
            operator: operator.into(),
            authentication: auth,
            action,
            resource: r,
        }
    }

    fn acme() -> ControlResource {
        ControlResource::Tenant("acme".into())
    }

    const ALICE: &str = r#"
        @id("alice-acme")
        permit (principal == Zerofn::Operator::"alice",
                action in [Zerofn::Action::"deploy", Zerofn::Action::"tenant.read"],
                resource == Zerofn::Tenant::"acme");
        @id("alice-list")
        permit (principal == Zerofn::Operator::"alice",
                action == Zerofn::Action::"tenant.read",
                resource == Zerofn::Platform::"platform");
        @id("mtls-only-for-deploys")
        forbid (principal, action == Zerofn::Action::"deploy", resource)
        unless { context.authentication == "mtls" || principal == Zerofn::Operator::"root" };
    "#;

    #[test]
    fn root_may_do_everything_and_nobody_else_by_default() {
        let policy = ControlPolicy::builtin().unwrap();
        for action in ControlAction::ALL {
            for r in [ControlResource::Platform, acme()] {
                // The schema's combinations only: deploy is on tenants, operator.manage
                // audit.manage and config.apply on the platform.
                if (matches!(
                    action,
                    ControlAction::OperatorManage
                        | ControlAction::AuditManage
                        | ControlAction::ConfigApply
                ) && r != ControlResource::Platform)
                    || (matches!(
                        action,
                        ControlAction::Deploy
                            | ControlAction::PermissionsGrant
                            | ControlAction::DeployRollback
                    ) && r == ControlResource::Platform)
                {
                    continue;
                }
                let d = policy.decide(&q(ROOT_OPERATOR, Authentication::Token, action, r.clone()));
                assert!(d.is_allowed(), "{action} {r}: {d:?}");
                assert_eq!(d.determining(), [ROOT_POLICY_ID]);
                let d = policy.decide(&q("alice", Authentication::Mtls, action, r.clone()));
                assert!(!d.is_allowed(), "{action} {r}");
                assert_eq!(d.explain(), "denied: no permit policy matched");
            }
        }
    }

    #[test]
    fn a_platform_policy_grants_exactly_what_it_says() {
        let policy = ControlPolicy::parse(ALICE).unwrap();
        let alice = |action, r| policy.decide(&q("alice", Authentication::Mtls, action, r));
        let d = alice(ControlAction::Deploy, acme());
        assert!(d.is_allowed(), "{d:?}");
        assert_eq!(d.determining(), ["alice-acme"]);
        assert!(alice(ControlAction::TenantRead, acme()).is_allowed());
        assert!(alice(ControlAction::TenantRead, ControlResource::Platform).is_allowed());
        assert!(!alice(
            ControlAction::Deploy,
            ControlResource::Tenant("demo".into())
        )
        .is_allowed());
        assert!(!alice(ControlAction::TenantManage, acme()).is_allowed());
        assert!(!alice(ControlAction::AuditRead, ControlResource::Platform).is_allowed());
        assert!(!alice(ControlAction::OperatorManage, ControlResource::Platform).is_allowed());
        assert!(!policy
            .decide(&q(
                "bob",
                Authentication::Mtls,
                ControlAction::TenantRead,
                acme()
            ))
            .is_allowed());
        // Root keeps everything the forbid does not take away.
        let root = policy.decide(&q(
            ROOT_OPERATOR,
            Authentication::Token,
            ControlAction::Deploy,
            acme(),
        ));
        assert!(root.is_allowed(), "{root:?}");
    }

    #[test]
    fn a_forbid_overrides_every_permit_and_is_named() {
        let policy = ControlPolicy::parse(
            r#"
            @id("anyone-reads") permit (principal, action == Zerofn::Action::"audit.read", resource);
            @id("no-token-audit") forbid (principal, action == Zerofn::Action::"audit.read", resource)
            when { context.authentication == "token" };
            "#,
        )
        .unwrap();
        let d = policy.decide(&q(
            ROOT_OPERATOR,
            Authentication::Token,
            ControlAction::AuditRead,
            ControlResource::Platform,
        ));
        assert!(!d.is_allowed());
        assert_eq!(d.determining(), ["no-token-audit"]);
        assert_eq!(d.explain(), "denied by no-token-audit");
        let d = policy.decide(&q(
            "carol",
            Authentication::Mtls,
            ControlAction::AuditRead,
            ControlResource::Platform,
        ));
        assert!(d.is_allowed());
        assert_eq!(d.determining(), ["anyone-reads"]);
    }

    #[test]
    fn invalid_or_reserved_policies_are_refused() {
        assert!(matches!(
            ControlPolicy::parse(r#"@id("zerofn-root") permit (principal, action, resource);"#),
            Err(PolicyError::DuplicateId { .. })
        ));
        let err = ControlPolicy::parse(
            r#"@id("bad") permit (principal, action == Zerofn::Action::"deploy", resource) when { context.nosuch == 1 };"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("policy `bad`"), "{err}");
    }

    #[test]
    fn an_undecidable_request_is_a_denial() {
        let policy = ControlPolicy::builtin().unwrap();
        // `operator.manage` does not apply to tenants: the schema refuses the request.
        let d = policy.decide(&q(
            ROOT_OPERATOR,
            Authentication::Token,
            ControlAction::OperatorManage,
            acme(),
        ));
        assert!(!d.is_allowed());
        assert!(!d.errors().is_empty());
    }
}
