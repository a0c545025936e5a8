//! The runtime policies in force: compiled from every served function's
//! manifest (`[permissions]`, `[invoke]`, `[config]`) plus each tenant's
//! hand-written Cedar (`zerofn policy set`). Rebuilt whole and swapped in
//! before a change becomes visible (a deployed function is invokable the
//! moment its route is), and validated before anything is stored: an
//! invalid set is refused whole and the old one stays in force.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use zerofn_admission::Manifest;
use zerofn_audit::{Action, AuditRecord, Outcome};
use zerofn_policy::permissions::compile;
use zerofn_policy::{PolicySet, RuntimePolicies, RuntimePoliciesBuilder};
use zerofn_store::StoreError;
use zerofn_types::{FunctionName, TenantName};

use crate::control::{ControlError, ControlPlane};

/// The hand-written sets of every tenant that has one.
#[derive(Default)]
pub(crate) struct TenantSets(Mutex<BTreeMap<String, PolicySet>>);

// The answers of `zerofn policy show TENANT NAME` and `zerofn policy set` are the API's own
// types, which the CLI reads.
use zerofn_api::{FunctionPolicy, TenantPolicySet};

/// A manifest's permissions as the API shows them: each grant in manifest form.
fn permissions_answer(p: &zerofn_policy::permissions::Permissions) -> zerofn_api::Permissions {
    zerofn_api::Permissions {
        kv: p.kv.iter().map(ToString::to_string).collect(),
        call: p.call.iter().cloned().collect(),
        config: p.config,
        invoke_from: p.invoke_from.iter().map(ToString::to_string).collect(),
        egress: p.egress.iter().map(ToString::to_string).collect(),
        publish: p.publish.iter().cloned().collect(),
    }
}

fn compile_function(m: &Manifest) -> Result<PolicySet, ControlError> {
    PolicySet::parse(&compile(m.tenant.as_str(), m.name.as_str(), &m.permissions))
        .map_err(ControlError::Policy)
}

impl ControlPlane {
    /// Builds the policies for the served functions, with `adding`
    /// replacing (or joining) them, `removing` left out, and `tenant_set`
    /// replacing that tenant's hand-written set.
    pub(crate) fn build_policies(
        &self,
        adding: Option<&Manifest>,
        removing: Option<(&str, &str)>,
        tenant_set: Option<(&str, Option<&PolicySet>)>,
    ) -> Result<RuntimePolicies, ControlError> {
        let zones = self.zones_in_force().current()?;
        self.build_policies_with_zones(adding, removing, tenant_set, &zones)
    }

    /// [`ControlPlane::build_policies`] with `zones` in force instead of the current ones
    /// (a zone change builds with the zones it would make): each zoned tenant's decisions
    /// include its zone's compiled `forbid` policies.
    pub(crate) fn build_policies_with_zones(
        &self,
        adding: Option<&Manifest>,
        removing: Option<(&str, &str)>,
        tenant_set: Option<(&str, Option<&PolicySet>)>,
        zones: &crate::zones::Zones,
    ) -> Result<RuntimePolicies, ControlError> {
        let mut b = RuntimePoliciesBuilder::new();
        for (tenant, set) in &zones.compiled {
            b.add(tenant, set.clone());
        }
        let table = self.routes().snapshot();
        for f in table.functions() {
            let m = f.artifact().manifest();
            let key = (m.tenant.as_str(), m.name.as_str());
            if Some(key) == removing
                || adding.is_some_and(|a| (a.tenant.as_str(), a.name.as_str()) == key)
            {
                continue;
            }
            b.add(m.tenant.as_str(), compile_function(m)?);
        }
        if let Some(m) = adding {
            b.add(m.tenant.as_str(), compile_function(m)?);
        }
        let sets = self
            .tenant_sets()
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (tenant, set) in sets.iter() {
            if tenant_set.is_some_and(|(t, _)| t == tenant) {
                continue;
            }
            b.add(tenant, set.clone());
        }
        if let Some((tenant, Some(set))) = tenant_set {
            b.add(tenant, set.clone());
        }
        b.build().map_err(ControlError::Policy)
    }

    /// Rebuild with `adding`/`removing` and swap the result in.
    pub(crate) fn refresh_policies(
        &self,
        adding: Option<&Manifest>,
        removing: Option<(&str, &str)>,
    ) -> Result<(), ControlError> {
        let built = self.build_policies(adding, removing, None)?;
        self.policies().replace(built);
        Ok(())
    }

    /// Load every tenant's hand-written policy (start-up). A stored set
    /// that no longer validates is skipped with a warning: that tenant's
    /// hand-written grants are then absent, which denies, never allows.
    pub(crate) async fn load_tenant_policies(&self) -> Result<(), ControlError> {
        let rows = self.store().tenant_policies().await?;
        let mut sets = BTreeMap::new();
        for row in rows {
            match PolicySet::parse(&row.policy) {
                Ok(set) => {
                    sets.insert(row.tenant, set);
                }
                Err(error) => {
                    tracing::warn!(tenant = %row.tenant, %error, "stored tenant policy is invalid; not loaded");
                }
            }
        }
        *self
            .tenant_sets()
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = sets;
        Ok(())
    }

    /// Replace (or with `None` remove) a tenant's hand-written policy.
    /// Validated against the schema and together with every compiled
    /// policy first; refused whole on any error, keeping the old one.
    pub async fn set_tenant_policy(
        &self,
        actor: &str,
        tenant: &TenantName,
        text: Option<&str>,
    ) -> Result<TenantPolicySet, ControlError> {
        let record = |outcome| AuditRecord::new(actor, Action::PolicySet, outcome).tenant(tenant);
        if !self
            .store()
            .list_tenants()
            .await?
            .iter()
            .any(|t| t.name == tenant.as_str())
        {
            return self
                .refused(
                    record(Outcome::Deny).reason("no such tenant"),
                    StoreError::NoSuchTenant(tenant.to_string()).into(),
                )
                .await;
        }
        let set = match text.map(PolicySet::parse).transpose() {
            Ok(set) => set,
            Err(e) => {
                return self
                    .refused(
                        record(Outcome::Deny).reason(format!("invalid policy: {e}")),
                        ControlError::Policy(e),
                    )
                    .await
            }
        };
        let _change = self.policy_change().lock().await;
        let built = match self.build_policies(None, None, Some((tenant.as_str(), set.as_ref()))) {
            Ok(b) => b,
            Err(e) => {
                return self
                    .refused(record(Outcome::Deny).reason(e.to_string()), e)
                    .await
            }
        };
        let ids: Vec<String> = set.as_ref().map(|s| s.ids().to_vec()).unwrap_or_default();
        self.audit()
            .append(record(Outcome::Allow).reason(if ids.is_empty() {
                "tenant policy removed".to_owned()
            } else {
                format!("policies: {}", ids.join(", "))
            }))
            .await?;
        self.store()
            .set_tenant_policy(tenant, text.map(str::to_owned), &crate::clock::now())
            .await?;
        {
            let mut sets = self
                .tenant_sets()
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match set {
                Some(set) => sets.insert(tenant.to_string(), set),
                None => sets.remove(tenant.as_str()),
            };
        }
        self.policies().replace(built);
        Ok(TenantPolicySet {
            tenant: tenant.to_string(),
            policies: ids,
        })
    }

    /// A tenant's hand-written policy text.
    pub async fn tenant_policy(&self, tenant: &TenantName) -> Result<Option<String>, ControlError> {
        Ok(self.store().tenant_policy(tenant).await?.map(|r| r.policy))
    }

    /// The policies that apply to one served function.
    pub async fn function_policy(
        &self,
        tenant: &TenantName,
        name: &FunctionName,
    ) -> Result<FunctionPolicy, ControlError> {
        let table = self.routes().snapshot();
        let function = table
            .function(tenant.as_str(), name.as_str())
            .ok_or_else(|| StoreError::NoSuchDeployment {
                tenant: tenant.to_string(),
                name: name.to_string(),
            })?;
        let m = function.artifact().manifest();
        Ok(FunctionPolicy {
            tenant: tenant.to_string(),
            name: name.to_string(),
            permissions: permissions_answer(&m.permissions),
            compiled: compile(tenant.as_str(), name.as_str(), &m.permissions),
            tenant_policy: self.tenant_policy(tenant).await?,
            zone_policy: self.zone_policy_text(tenant.as_str()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The permissions the API shows are the manifest's, as the manifest serializes them
    /// (the form `zerofn policy show --json` printed before the answer was typed).
    #[test]
    fn permissions_answer_is_the_manifests_own_form() {
        let m = Manifest::from_toml(
            "name = \"hello\"\ntenant = \"acme\"\ncomponent = \"hello.wasm\"\nroutes = [\"/hello\"]\n\
             [permissions]\nkv = [\"orders:read\", \"cache:read-write\"]\ncall = [\"billing\"]\n\n\
             [invoke]\nfrom = [\"checkout\", \"tenant:partner\", \"public\"]\n\n[config]\ngreeting = \"hi\"\n",
        )
        .unwrap();
        let answer = serde_json::to_value(permissions_answer(&m.permissions)).unwrap();
        let manifest = serde_json::to_value(&m).unwrap();
        assert_eq!(Some(&answer), manifest.get("permissions"));
        assert_eq!(answer["kv"].as_array().unwrap().len(), 2);
        assert_eq!(answer["config"], true);
    }
}
