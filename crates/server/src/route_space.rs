//! Tenants' route spaces: the route prefixes an operator assigns to each
//! tenant, the deploy-time check that a function's routes lie in its
//! tenant's space, and loading the space the gateway routes by.
//!
//! # Trust
//! Trusts the caller to have authorized the operator (assigning prefixes is
//! a platform-wide `tenant.manage`; a tenant's deployer cannot assign its
//! own). Trusts nothing in a submitted prefix until [`Route::parse`] has put
//! it in normal form. The request-time guarantee (a function serves only
//! paths its tenant owns) is the gateway's (`zerofn_gateway::RouteSpace`);
//! the deploy-time check here makes a squatting deploy fail loudly instead
//! of being stored and never served.

use std::collections::BTreeSet;

use zerofn_admission::{Manifest, Route};
use zerofn_audit::{Action, AuditRecord, Outcome};
use zerofn_gateway::RouteSpace;
use zerofn_store::StoreError;
use zerofn_types::TenantName;

use crate::clock::now;
use crate::control::{ControlError, ControlPlane};

/// At most this many prefixes per tenant (a bounded request, a bounded record).
const MAX_PREFIXES: usize = 64;

/// The route prefixes of a tenant created without any. The platform's
/// first tenant owns the whole space (`/...`), so a single-tenant install
/// serves its routes as written; every later tenant owns `/<tenant>/...`,
/// carved out of it by the longest-prefix rule, until an operator assigns
/// otherwise. No tenant can widen its own space: assigning is the
/// operator's platform-wide `tenant.manage`.
pub(crate) fn default_prefixes(tenant: &TenantName, first_tenant: bool) -> Vec<String> {
    if first_tenant {
        vec!["/...".to_owned()]
    } else {
        vec![format!("/{tenant}/...")]
    }
}

/// Parses submitted prefixes into normal form, sorted and without repeats.
pub(crate) fn parse_prefixes(texts: &[String]) -> Result<Vec<String>, ControlError> {
    if texts.len() > MAX_PREFIXES {
        return Err(ControlError::BadRequest(format!(
            "{} route prefixes, more than the {MAX_PREFIXES} allowed per tenant",
            texts.len()
        )));
    }
    let mut out = BTreeSet::new();
    for text in texts {
        let route = Route::parse(text)
            .map_err(|e| ControlError::BadRequest(format!("invalid route prefix: {e}")))?;
        out.insert(route.as_str().to_owned());
    }
    Ok(out.into_iter().collect())
}

/// The space from stored `(prefix, tenant)` rows. A row that does not
/// parse, or whose normal form another tenant already holds (only possible
/// in rows migrated from before normalisation), is left out and logged:
/// leaving a prefix unowned serves less, never someone else's function.
fn space_of(rows: Vec<(String, String)>) -> RouteSpace {
    let mut space = RouteSpace::default();
    for (prefix, tenant) in rows {
        let Ok(route) = Route::parse(&prefix) else {
            tracing::warn!(%prefix, %tenant, "stored route prefix does not parse; not assigned");
            continue;
        };
        if let Err(e) = space.assign(&route, tenant.clone()) {
            tracing::warn!(%prefix, %tenant, error = %e, "stored route prefix conflicts; not assigned");
        }
    }
    space
}

impl ControlPlane {
    /// The route prefixes assigned to a tenant.
    pub async fn tenant_routes(&self, tenant: &TenantName) -> Result<Vec<String>, ControlError> {
        Ok(self.store().tenant_routes(tenant).await?)
    }

    /// Replace a tenant's route prefixes. Functions already deployed keep
    /// their rows, but from now on serve only what their tenant owns.
    pub async fn set_tenant_routes(
        &self,
        actor: &str,
        tenant: &TenantName,
        prefixes: &[String],
    ) -> Result<Vec<String>, ControlError> {
        let record =
            |outcome| AuditRecord::new(actor, Action::TenantRoutesSet, outcome).tenant(tenant);
        let prefixes = match parse_prefixes(prefixes) {
            Ok(p) => p,
            Err(e) => return self.refused(record(Outcome::Deny), e).await,
        };
        if let Err(e) = self.store().tenant_routes(tenant).await {
            return self.refused(record(Outcome::Deny), e.into()).await;
        }
        if let Err(e) = self.check_prefixes_free(tenant.as_str(), &prefixes).await {
            return self.refused(record(Outcome::Deny), e).await;
        }
        self.audit()
            .append(
                record(Outcome::Allow).reason(format!("route prefixes: {}", prefixes.join(" "))),
            )
            .await?;
        let _change = self.policy_change().lock().await;
        if let Err(e) = self
            .store()
            .set_tenant_routes(tenant, prefixes.clone(), &now())
            .await
        {
            // Taken between the check and the write: say so in the log.
            self.audit()
                .append(record(Outcome::Error).reason(e.to_string()))
                .await?;
            return Err(e.into());
        }
        self.reload_route_space_locked().await?;
        Ok(prefixes)
    }

    /// Refuses prefixes another tenant holds, naming it.
    pub(crate) async fn check_prefixes_free(
        &self,
        tenant: &str,
        prefixes: &[String],
    ) -> Result<(), ControlError> {
        let assigned = self.store().all_tenant_routes().await?;
        for prefix in prefixes {
            if let Some((_, owner)) = assigned
                .iter()
                .find(|(p, owner)| p == prefix && owner != tenant)
            {
                return Err(StoreError::PrefixTaken {
                    prefix: prefix.clone(),
                    owner: owner.clone(),
                }
                .into());
            }
        }
        Ok(())
    }

    /// Load the stored assignments into the gateway's route table (start-up).
    pub(crate) async fn load_route_space(&self) -> Result<(), ControlError> {
        let _change = self.policy_change().lock().await;
        self.reload_route_space_locked().await
    }

    /// The caller holds `policy_change`, so two changes cannot install
    /// their reads in the opposite order of their writes.
    pub(crate) async fn reload_route_space_locked(&self) -> Result<(), ControlError> {
        let rows = self.store().all_tenant_routes().await?;
        self.routes().set_space(space_of(rows));
        Ok(())
    }

    /// Every route of the manifest must lie in its tenant's space: an exact
    /// route's path, a prefix route's base, owned by the tenant (longest
    /// assigned prefix).
    /// `rows` are the stored prefixes `(prefix, tenant)` unless given.
    pub(crate) async fn check_route_ownership(
        &self,
        manifest: &Manifest,
        rows: Option<Vec<(String, String)>>,
    ) -> Result<(), ControlError> {
        let rows = match rows {
            Some(rows) => rows,
            None => self.store().all_tenant_routes().await?,
        };
        let space = space_of(rows);
        let tenant = manifest.tenant.as_str();
        for route in &manifest.routes {
            let owner = space.owner_of_route(route);
            if owner != Some(tenant) {
                return Err(ControlError::RouteNotOwned {
                    route: route.as_str().to_owned(),
                    tenant: tenant.to_string(),
                    owner: owner.map_or_else(
                        || "no tenant owns it".to_owned(),
                        |o| format!("it belongs to tenant `{o}`"),
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_tenant_owns_the_root_and_later_ones_their_own_name() {
        assert_eq!(
            default_prefixes(&TenantName::parse("acme").unwrap(), true),
            ["/..."]
        );
        assert_eq!(
            default_prefixes(&TenantName::parse("shop").unwrap(), false),
            ["/shop/..."]
        );
        // Both defaults are valid prefixes in normal form.
        for first in [true, false] {
            let d = default_prefixes(&TenantName::parse("shop").unwrap(), first);
            assert_eq!(parse_prefixes(&d).unwrap(), d);
        }
    }

    #[test]
    fn prefixes_are_normalised_sorted_and_deduplicated() {
        let got = parse_prefixes(&["/shop/...".into(), "/sh%6Fp/...".into(), "/b".into()]).unwrap();
        assert_eq!(got, ["/b", "/shop/..."]);
        for bad in ["shop", "/a/../b", "/a/%2e%2e/...", "/a//b", "/a%zz"] {
            let e = parse_prefixes(&[bad.to_owned()]).unwrap_err();
            assert!(e.to_string().contains("invalid route prefix"), "{bad}: {e}");
        }
        let many: Vec<String> = (0..=MAX_PREFIXES).map(|i| format!("/p{i}")).collect();
        assert!(parse_prefixes(&many).is_err());
    }

    #[test]
    fn stored_conflicts_keep_one_owner() {
        let space = space_of(vec![
            ("/shop/...".into(), "shop".into()),
            ("/sh%6Fp/...".into(), "evil".into()),
            ("not a route".into(), "evil".into()),
            ("/...".into(), "demo".into()),
        ]);
        assert_eq!(space.owner("/shop/x"), Some("shop"));
        assert_eq!(space.owner("/x"), Some("demo"));
    }
}
