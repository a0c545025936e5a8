//! Each tenant's invocation limits (`zerofn tenant limits`): a request
//! rate with its burst and a cap on invocations in flight, across all the
//! tenant's functions. Stored as given: the control plane checks the
//! ranges before writing, the gateway enforces them.

use rusqlite::params;
use zerofn_types::TenantName;

use crate::tenants::require_tenant;
use crate::{Store, StoreError};

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tenant_limits (
    tenant           TEXT PRIMARY KEY REFERENCES tenants(name) ON DELETE CASCADE,
    rate_per_second  INTEGER,
    burst            INTEGER,
    max_concurrency  INTEGER,
    updated_at       TEXT NOT NULL
) STRICT;
"#;

/// A tenant's limits as stored; `None` is "no limit of this kind".
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TenantLimitsRow {
    pub tenant: String,
    pub rate_per_second: Option<u32>,
    pub burst: Option<u32>,
    pub max_concurrency: Option<u32>,
    pub updated_at: String,
}

impl Store {
    /// Replaces a tenant's limits; all `None` removes them.
    pub async fn set_tenant_limits(
        &self,
        tenant: &TenantName,
        rate_per_second: Option<u32>,
        burst: Option<u32>,
        max_concurrency: Option<u32>,
        now: &str,
    ) -> Result<(), StoreError> {
        let now = now.to_owned();
        self.in_tenant(tenant, move |tx, tenant| {
            if rate_per_second.is_none() && burst.is_none() && max_concurrency.is_none() {
                tx.execute("DELETE FROM tenant_limits WHERE tenant = ?1", params![tenant])?;
            } else {
                tx.execute(
                    "INSERT INTO tenant_limits (tenant, rate_per_second, burst, max_concurrency, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (tenant) DO UPDATE SET \
                     rate_per_second = excluded.rate_per_second, burst = excluded.burst, \
                     max_concurrency = excluded.max_concurrency, updated_at = excluded.updated_at",
                    params![tenant, rate_per_second, burst, max_concurrency, now],
                )?;
            }
            Ok(())
        })
        .await
    }

    /// A tenant's limits, if it has any (an unknown tenant is an error).
    pub async fn tenant_limits(
        &self,
        tenant: &TenantName,
    ) -> Result<Option<TenantLimitsRow>, StoreError> {
        let tenant = tenant.to_string();
        self.with_conn(move |conn| {
            require_tenant(conn, &tenant)?;
            let mut stmt = conn.prepare(
                "SELECT tenant, rate_per_second, burst, max_concurrency, updated_at \
                 FROM tenant_limits WHERE tenant = ?1",
            )?;
            let mut rows = stmt.query_map(params![tenant], row)?;
            Ok(rows.next().transpose()?)
        })
        .await
    }

    /// Every tenant's limits (start-up).
    pub async fn all_tenant_limits(&self) -> Result<Vec<TenantLimitsRow>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT tenant, rate_per_second, burst, max_concurrency, updated_at \
                 FROM tenant_limits ORDER BY tenant",
            )?;
            let rows = stmt.query_map([], row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TenantLimitsRow> {
    Ok(TenantLimitsRow {
        tenant: r.get(0)?,
        rate_per_second: r.get(1)?,
        burst: r.get(2)?,
        max_concurrency: r.get(3)?,
        updated_at: r.get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn limits_are_set_replaced_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let acme = TenantName::parse("acme").unwrap();
        let ghost = TenantName::parse("ghost").unwrap();
        store.create_tenant(&acme, "t0").await.unwrap();
        assert_eq!(store.tenant_limits(&acme).await.unwrap(), None);
        store
            .set_tenant_limits(&acme, Some(5), Some(10), None, "t1")
            .await
            .unwrap();
        let row = store.tenant_limits(&acme).await.unwrap().unwrap();
        assert_eq!(
            (row.rate_per_second, row.burst, row.max_concurrency),
            (Some(5), Some(10), None)
        );
        store
            .set_tenant_limits(&acme, None, None, Some(3), "t2")
            .await
            .unwrap();
        let all = store.all_tenant_limits().await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].max_concurrency, Some(3));
        assert_eq!(all[0].rate_per_second, None);
        store
            .set_tenant_limits(&acme, None, None, None, "t3")
            .await
            .unwrap();
        assert!(store.all_tenant_limits().await.unwrap().is_empty());
        assert!(matches!(
            store
                .set_tenant_limits(&ghost, Some(1), None, None, "t4")
                .await,
            Err(StoreError::NoSuchTenant(_))
        ));
    }
}
