//! Control-API authorization: which Cedar control action each route is, on which
//! resource, and the control policy in force.
//!
//! [`required`] is the one table from a route to its `(action, resource)`. A route it does
//! not know is refused before any handler runs (fail closed); a unit test checks that every
//! route `api.rs` dispatches is in it. [`ControlAuthz`] holds the control policy (the
//! built-in root permit plus the platform's stored set) and replaces it only with a set
//! that validated whole.
//!
//! # Trust
//! Trusts the caller to have authenticated the operator (token or verified client
//! certificate) and the route segments to be the request's own. Trusts nothing in stored
//! or submitted policy text until it validates against the schema.

use std::sync::{Arc, PoisonError, RwLock};

use http::Method;
use zerofn_audit::{Action, AuditLog, AuditRecord, Outcome};
use zerofn_policy::{ControlAction, ControlPolicy, ControlQuery, Decision};
use zerofn_store::Store;

use crate::clock::now;
use crate::control::ControlError;

/// What a route acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// The platform as a whole.
    Platform,
    /// The tenant named in the path.
    Tenant(String),
    /// The tenant named in the submitted manifest (deploy, explain): known only once the
    /// body is read.
    ManifestTenant,
}

/// The control action a route needs, and on what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Required {
    pub(crate) action: ControlAction,
    pub(crate) target: Target,
}

fn on(action: ControlAction, target: Target) -> Option<Required> {
    Some(Required { action, target })
}

fn tenant(t: &str) -> Target {
    Target::Tenant(t.to_owned())
}

/// The action and resource of the control-API route `method` + `segments` (the path split
/// at `/`, without the leading empty one). `None` for a route that is not mapped: the
/// caller refuses it.
pub(crate) fn required(method: &Method, segments: &[&str]) -> Option<Required> {
    use ControlAction::*;
    let (get, post, put, delete) = (
        method == Method::GET,
        method == Method::POST,
        method == Method::PUT,
        method == Method::DELETE,
    );
    match segments {
        ["v1", "tenants"] if get => on(TenantRead, Target::Platform),
        ["v1", "tenants"] if post => on(TenantManage, Target::Platform),
        ["v1", "tenants", t, "keys"] if post => on(TenantManage, tenant(t)),
        // Assigning route space is the platform's: a grant on one tenant must not let
        // it take another's paths.
        ["v1", "tenants", t, "routes"] if get => on(TenantRead, tenant(t)),
        ["v1", "tenants", _, "routes"] if put => on(TenantManage, Target::Platform),
        ["v1", "tenants", t, "keys", _] if delete => on(TenantManage, tenant(t)),
        ["v1", "tenants", t, "identities"] if post => on(TenantManage, tenant(t)),
        ["v1", "tenants", t, "identities", _] if delete => on(TenantManage, tenant(t)),
        ["v1", "tenants", t, "layers"] if get => on(TenantRead, tenant(t)),
        ["v1", "tenants", t, "layers"] if post => on(TenantManage, tenant(t)),
        ["v1", "tenants", t, "layers", _] if delete => on(TenantManage, tenant(t)),
        ["v1", "tenants", t, "admission"] if get => on(TenantRead, tenant(t)),
        ["v1", "tenants", t, "admission"] if put => on(PolicyManage, tenant(t)),
        // Runtime policies of a tenant and of one of its functions.
        ["v1", "tenants", t, "policy"] | ["v1", "tenants", t, "functions", _, "policy"] if get => {
            on(TenantRead, tenant(t))
        }
        ["v1", "tenants", t, "policy"] | ["v1", "tenants", t, "functions", _, "policy"]
            if put || post || delete =>
        {
            on(PolicyManage, tenant(t))
        }
        ["v1", "tenants", t, "access-analyzer", ..] if get || post => on(AuditRead, tenant(t)),
        // Platform-wide analysis: the platform-wide grant, whatever follows.
        ["v1", "access-analyzer", ..] if get || post => on(AuditRead, Target::Platform),
        ["v1", "deployments"] if post => on(Deploy, Target::ManifestTenant),
        ["v1", "admission", "explain"] if post => on(Deploy, Target::ManifestTenant),
        ["v1", "functions"] if get => on(TenantRead, Target::Platform),
        ["v1", "functions", t, _] if delete => on(Deploy, tenant(t)),
        ["v1", "functions", t, _, "svid"] if get => on(TenantRead, tenant(t)),
        ["v1", "functions", t, _, "svid", "revoke"] if post => on(TenantManage, tenant(t)),
        ["v1", "audit"] | ["v1", "audit", "verify"] if get => on(AuditRead, Target::Platform),
        ["v1", "operators"] if get || post => on(OperatorManage, Target::Platform),
        ["v1", "operators", _] if delete => on(OperatorManage, Target::Platform),
        // The control policy decides every other grant, so changing it (or reading it)
        // is as strong as every action at once.
        ["v1", "control-policy"] if get || put => on(PolicyManage, Target::Platform),
        _ => None,
    }
}

/// The control policy in force, replaced only whole.
pub(crate) struct ControlAuthz {
    policy: RwLock<Arc<ControlPolicy>>,
    store: Store,
    audit: AuditLog,
}

impl ControlAuthz {
    /// Load the stored control policy. A stored set that no longer validates (the schema
    /// changed under it) is not used: only the built-in root permit is in force until an
    /// operator sets a valid one, which is logged.
    pub(crate) fn load(store: Store, audit: AuditLog) -> Result<ControlAuthz, ControlError> {
        let builtin = || ControlPolicy::builtin().map_err(ControlError::Policy);
        let policy = match store.control_policy_blocking()? {
            None => builtin()?,
            Some(row) => match ControlPolicy::parse(&row.policy) {
                Ok(p) => p,
                Err(error) => {
                    tracing::error!(%error, "the stored control policy does not validate; only the operator token may act until `zerofn operator policy set` replaces it");
                    builtin()?
                }
            },
        };
        Ok(ControlAuthz {
            policy: RwLock::new(Arc::new(policy)),
            store,
            audit,
        })
    }

    fn current(&self) -> Arc<ControlPolicy> {
        self.policy
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Decide one control request with the policy in force.
    pub(crate) fn decide(&self, query: &ControlQuery) -> Decision {
        self.current().decide(query)
    }

    /// The platform control policy text and its policy ids.
    pub(crate) fn show(&self) -> serde_json::Value {
        let policy = self.current();
        serde_json::json!({
            "policy": policy.platform().source(),
            "ids": policy.platform().ids(),
            "builtin": zerofn_policy::ROOT_CONTROL_POLICY,
        })
    }

    /// Replace the platform control policy. An invalid set is refused whole (and the
    /// refusal audited); the policy in force does not change.
    pub(crate) async fn set(&self, actor: &str, text: &str) -> Result<Vec<String>, ControlError> {
        let policy = match ControlPolicy::parse(text) {
            Ok(p) => p,
            Err(e) => {
                self.audit
                    .append(
                        AuditRecord::new(actor, Action::ControlPolicySet, Outcome::Deny)
                            .reason(format!("invalid control policy: {e}")),
                    )
                    .await?;
                return Err(ControlError::Policy(e));
            }
        };
        let ids = policy.platform().ids().to_vec();
        self.audit
            .append(
                AuditRecord::new(actor, Action::ControlPolicySet, Outcome::Allow)
                    .reason(format!("control policy set: {}", ids.join(", "))),
            )
            .await?;
        self.store.set_control_policy(text, &now()).await?;
        *self.policy.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(policy);
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ControlAction::*;

    fn req(method: &str, path: &str) -> Option<Required> {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        required(&method, &segments)
    }

    fn t(name: &str) -> Target {
        Target::Tenant(name.into())
    }

    #[test]
    fn each_route_has_its_action_and_resource() {
        let table = [
            ("GET", "/v1/tenants", TenantRead, Target::Platform),
            ("POST", "/v1/tenants", TenantManage, Target::Platform),
            ("POST", "/v1/tenants/acme/keys", TenantManage, t("acme")),
            ("GET", "/v1/tenants/acme/routes", TenantRead, t("acme")),
            (
                "PUT",
                "/v1/tenants/acme/routes",
                TenantManage,
                Target::Platform,
            ),
            (
                "DELETE",
                "/v1/tenants/acme/keys/sha256:ab",
                TenantManage,
                t("acme"),
            ),
            (
                "POST",
                "/v1/tenants/acme/identities",
                TenantManage,
                t("acme"),
            ),
            (
                "DELETE",
                "/v1/tenants/acme/identities/x",
                TenantManage,
                t("acme"),
            ),
            ("GET", "/v1/tenants/acme/layers", TenantRead, t("acme")),
            ("POST", "/v1/tenants/acme/layers", TenantManage, t("acme")),
            (
                "DELETE",
                "/v1/tenants/acme/layers/sha256:ab",
                TenantManage,
                t("acme"),
            ),
            ("GET", "/v1/tenants/acme/admission", TenantRead, t("acme")),
            ("PUT", "/v1/tenants/acme/admission", PolicyManage, t("acme")),
            ("GET", "/v1/tenants/acme/policy", TenantRead, t("acme")),
            ("PUT", "/v1/tenants/acme/policy", PolicyManage, t("acme")),
            ("DELETE", "/v1/tenants/acme/policy", PolicyManage, t("acme")),
            (
                "GET",
                "/v1/tenants/acme/functions/hello/policy",
                TenantRead,
                t("acme"),
            ),
            (
                "PUT",
                "/v1/tenants/acme/functions/hello/policy",
                PolicyManage,
                t("acme"),
            ),
            (
                "GET",
                "/v1/tenants/acme/access-analyzer",
                AuditRead,
                t("acme"),
            ),
            ("GET", "/v1/access-analyzer", AuditRead, Target::Platform),
            (
                "POST",
                "/v1/access-analyzer/acme",
                AuditRead,
                Target::Platform,
            ),
            ("POST", "/v1/deployments", Deploy, Target::ManifestTenant),
            (
                "POST",
                "/v1/admission/explain",
                Deploy,
                Target::ManifestTenant,
            ),
            ("GET", "/v1/functions", TenantRead, Target::Platform),
            ("DELETE", "/v1/functions/acme/hello", Deploy, t("acme")),
            (
                "GET",
                "/v1/functions/acme/hello/svid",
                TenantRead,
                t("acme"),
            ),
            (
                "POST",
                "/v1/functions/acme/hello/svid/revoke",
                TenantManage,
                t("acme"),
            ),
            ("GET", "/v1/audit", AuditRead, Target::Platform),
            ("GET", "/v1/audit/verify", AuditRead, Target::Platform),
            ("GET", "/v1/operators", OperatorManage, Target::Platform),
            ("POST", "/v1/operators", OperatorManage, Target::Platform),
            (
                "DELETE",
                "/v1/operators/alice",
                OperatorManage,
                Target::Platform,
            ),
            ("GET", "/v1/control-policy", PolicyManage, Target::Platform),
            ("PUT", "/v1/control-policy", PolicyManage, Target::Platform),
        ];
        for (method, path, action, target) in table {
            assert_eq!(
                req(method, path),
                Some(Required { action, target }),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn unknown_routes_and_methods_are_not_mapped() {
        for (method, path) in [
            ("GET", "/v1/nosuch"),
            ("DELETE", "/v1/tenants"),
            ("PUT", "/v1/tenants/acme/keys"),
            ("GET", "/v1/tenants/acme"),
            ("GET", "/v1/tenants/acme/keys/x/y"),
            ("POST", "/v1/functions"),
            ("DELETE", "/v1/audit"),
            ("PATCH", "/v1/control-policy"),
            ("GET", "/v2/tenants"),
            ("GET", ""),
            ("DELETE", "/v1/operators"),
        ] {
            assert_eq!(req(method, path), None, "{method} {path}");
        }
    }

    /// Every `(&Method::X, ["v1", ...])` arm of `Api::handle` is mapped. Reads `api.rs`
    /// itself, so a route added there without a mapping fails here (it would also be
    /// refused at run time).
    #[test]
    fn every_route_in_api_rs_is_mapped() {
        let source = include_str!("api.rs");
        let mut routes = 0;
        for line in source.lines() {
            let line = line.trim();
            let Some(rest) = line.strip_prefix("(&Method::") else {
                continue;
            };
            let Some((method, rest)) = rest.split_once(", [") else {
                continue;
            };
            let Some((patterns, _)) = rest.split_once("])") else {
                continue;
            };
            // `[...] | [...]` names several paths.
            for pattern in patterns.split("] | [") {
                let segments: Vec<String> = pattern
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && *s != "..")
                    .map(|s| s.trim_matches('"').to_owned())
                    .collect();
                let refs: Vec<&str> = segments.iter().map(String::as_str).collect();
                // `(&Method::GET | &Method::HEAD, [...])` names several methods.
                for method in method.split(" | &Method::") {
                    let method = Method::from_bytes(method.trim().as_bytes()).unwrap();
                    assert!(
                    required(&method, &refs).is_some(),
                    "route {method} {pattern} of api.rs has no control action in authz::required"
                );
                    routes += 1;
                }
            }
        }
        assert!(routes >= 20, "found only {routes} routes in api.rs");
    }
}
