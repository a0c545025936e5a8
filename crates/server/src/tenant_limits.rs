//! Tenants' invocation limits (`zerofn tenant limits`): a request rate with
//! its burst and a cap on invocations in flight across all of a tenant's
//! functions, stored, audited and handed to the gateway, which enforces
//! them (`zerofn_gateway::InvokeLimits`).
//!
//! # Trust
//! Trusts the caller to have authorized the operator: setting limits is a
//! platform-wide `tenant.manage` (a tenant's own grant must not let it lift
//! the limits that keep it from starving the others). Trusts nothing in
//! the submitted values until checked against the same ranges as a
//! manifest's `[limits]`.

use zerofn_admission::{MAX_CONCURRENCY, MAX_RATE};
use zerofn_api::{SetTenantLimits, TenantLimits};
use zerofn_audit::{Action, AuditRecord, Outcome};
use zerofn_gateway::LimitSpec;
use zerofn_store::TenantLimitsRow;
use zerofn_types::TenantName;

use crate::clock::now;
use crate::control::{ControlError, ControlPlane};

/// Refuses values out of the manifest's ranges, and a burst without a rate.
pub(crate) fn check(req: &SetTenantLimits) -> Result<(), ControlError> {
    let range = |key: &str, v: Option<u32>, max: u32| match v {
        Some(v) if v == 0 || v > max => Err(ControlError::BadRequest(format!(
            "`{key}` = {v} is out of range; use a value from 1 to {max}"
        ))),
        _ => Ok(()),
    };
    range("rate_per_second", req.rate_per_second, MAX_RATE)?;
    range("burst", req.burst, MAX_RATE)?;
    range("max_concurrency", req.max_concurrency, MAX_CONCURRENCY)?;
    if req.burst.is_some() && req.rate_per_second.is_none() {
        return Err(ControlError::BadRequest(
            "`burst` is set without `rate_per_second`; a burst is the depth of a rate limit, so set a rate too".into(),
        ));
    }
    Ok(())
}

fn answer(tenant: &TenantName, row: Option<TenantLimitsRow>) -> TenantLimits {
    let row = row.as_ref();
    TenantLimits {
        tenant: tenant.to_string(),
        rate_per_second: row.and_then(|r| r.rate_per_second),
        burst: row.and_then(|r| r.burst),
        max_concurrency: row.and_then(|r| r.max_concurrency),
    }
}

impl ControlPlane {
    /// A tenant's limits (all `None`: none set).
    pub async fn tenant_limits(&self, tenant: &TenantName) -> Result<TenantLimits, ControlError> {
        Ok(answer(tenant, self.store().tenant_limits(tenant).await?))
    }

    /// Replace a tenant's limits; in force for its next request.
    pub async fn set_tenant_limits(
        &self,
        actor: &str,
        tenant: &TenantName,
        req: &SetTenantLimits,
    ) -> Result<TenantLimits, ControlError> {
        let record =
            |outcome| AuditRecord::new(actor, Action::TenantLimitsSet, outcome).tenant(tenant);
        if let Err(e) = check(req) {
            return self.refused(record(Outcome::Deny), e).await;
        }
        if let Err(e) = self.store().tenant_limits(tenant).await {
            return self.refused(record(Outcome::Deny), e.into()).await;
        }
        let show = |v: Option<u32>| v.map_or("none".to_owned(), |v| v.to_string());
        self.audit()
            .append(record(Outcome::Allow).reason(format!(
                "limits: rate_per_second {} burst {} max_concurrency {}",
                show(req.rate_per_second),
                show(req.burst),
                show(req.max_concurrency)
            )))
            .await?;
        self.store()
            .set_tenant_limits(
                tenant,
                req.rate_per_second,
                req.burst,
                req.max_concurrency,
                &now(),
            )
            .await?;
        self.invoke_limits().set_tenant(
            tenant.as_str(),
            LimitSpec::new(req.rate_per_second, req.burst, req.max_concurrency),
        );
        self.tenant_limits(tenant).await
    }

    /// Hand every stored tenant limit to the gateway (start-up).
    pub(crate) async fn load_tenant_limits(&self) -> Result<usize, ControlError> {
        let rows = self.store().all_tenant_limits().await?;
        for row in &rows {
            self.invoke_limits().set_tenant(
                &row.tenant,
                LimitSpec::new(row.rate_per_second, row.burst, row.max_concurrency),
            );
        }
        Ok(rows.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_values_and_a_lone_burst_are_refused() {
        let ok = SetTenantLimits {
            rate_per_second: Some(5),
            burst: Some(10),
            max_concurrency: Some(2),
        };
        assert!(check(&ok).is_ok());
        assert!(check(&SetTenantLimits::default()).is_ok());
        for bad in [
            SetTenantLimits {
                rate_per_second: Some(0),
                ..ok.clone()
            },
            SetTenantLimits {
                max_concurrency: Some(MAX_CONCURRENCY + 1),
                ..ok.clone()
            },
            SetTenantLimits {
                rate_per_second: None,
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(check(&bad), Err(ControlError::BadRequest(_))),
                "{bad:?}"
            );
        }
    }
}
