//! Control-API authorization: the control policy in force.
//!
//! Which Cedar control action each route is, and on which resource, is in the route table
//! (`api/routes.rs`). [`ControlAuthz`] holds the control policy (the built-in root permit
//! plus the platform's stored set) and replaces it only with a set that validated whole.
//!
//! # Trust
//! Trusts the caller to have authenticated the operator (token or verified client
//! certificate) and to ask about the request's own action and resource. Trusts nothing in
//! stored or submitted policy text until it validates against the schema.

use std::sync::{Arc, PoisonError, RwLock};

use zerofn_audit::{Action, AuditLog, AuditRecord, Outcome};
use zerofn_policy::{ControlPolicy, ControlQuery, Decision};
use zerofn_store::Store;

use crate::clock::now;
use crate::control::ControlError;

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

    /// Put the stored control policy (or, with none stored, the built-in one) in force,
    /// after `apply` changed it in the store; the caller validated it before.
    pub(crate) async fn reload(&self) -> Result<(), ControlError> {
        let store = self.store.clone();
        let row = tokio::task::spawn_blocking(move || store.control_policy_blocking())
            .await
            .map_err(|_| ControlError::Internal("control policy reload failed".into()))??;
        let policy = match row {
            Some(row) => ControlPolicy::parse(&row.policy),
            None => ControlPolicy::builtin(),
        }
        .map_err(ControlError::Policy)?;
        *self.policy.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(policy);
        Ok(())
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
