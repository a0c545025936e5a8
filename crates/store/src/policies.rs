//! Each tenant's hand-written runtime Cedar policy (`zerofn policy set`)
//! and the revoked SVID serials. Stored as given: the policy crate
//! validates policy text before it is written, and the identity crate owns
//! what a serial means.

use rusqlite::{params, OptionalExtension};
use zerofn_types::TenantName;

use crate::tenants::require_tenant;
use crate::{Store, StoreError};

/// A tenant's runtime policy text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TenantPolicyRow {
    pub tenant: String,
    pub policy: String,
    pub updated_at: String,
}

impl Store {
    /// Replaces (or with `None` removes) a tenant's runtime policy.
    pub async fn set_tenant_policy(
        &self,
        tenant: &TenantName,
        policy: Option<String>,
        now: &str,
    ) -> Result<(), StoreError> {
        let now = now.to_owned();
        self.in_tenant(tenant, move |tx, tenant| {
            match policy {
                Some(policy) => tx.execute(
                    "INSERT INTO tenant_policies (tenant, policy, updated_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (tenant) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
                    params![tenant, policy, now],
                )?,
                None => tx.execute("DELETE FROM tenant_policies WHERE tenant = ?1", params![tenant])?,
            };
            Ok(())
        })
        .await
    }

    /// A tenant's runtime policy, if it set one.
    pub async fn tenant_policy(
        &self,
        tenant: &TenantName,
    ) -> Result<Option<TenantPolicyRow>, StoreError> {
        let tenant = tenant.to_string();
        self.with_conn(move |conn| {
            require_tenant(conn, &tenant)?;
            Ok(conn
                .query_row(
                    "SELECT tenant, policy, updated_at FROM tenant_policies WHERE tenant = ?1",
                    params![tenant],
                    |r| {
                        Ok(TenantPolicyRow {
                            tenant: r.get(0)?,
                            policy: r.get(1)?,
                            updated_at: r.get(2)?,
                        })
                    },
                )
                .optional()?)
        })
        .await
    }

    /// Every tenant's runtime policy.
    pub async fn tenant_policies(&self) -> Result<Vec<TenantPolicyRow>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT tenant, policy, updated_at FROM tenant_policies ORDER BY tenant",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(TenantPolicyRow {
                        tenant: r.get(0)?,
                        policy: r.get(1)?,
                        updated_at: r.get(2)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Records a revoked certificate serial (hex) with the time it would
    /// have expired, after which it can be forgotten.
    pub async fn add_revoked_serial(
        &self,
        serial: &str,
        not_after_unix: i64,
        now: &str,
    ) -> Result<(), StoreError> {
        let (serial, now) = (serial.to_owned(), now.to_owned());
        self.with_conn(move |conn| {
            conn.execute(
                "INSERT OR IGNORE INTO revoked_serials (serial, not_after, revoked_at) VALUES (?1, ?2, ?3)",
                params![serial, not_after_unix, now],
            )?;
            Ok(())
        })
        .await
    }

    /// Revoked serials that have not yet expired at `now_unix`; expired
    /// ones are deleted, since a certificate past its expiry is refused
    /// anyway.
    pub async fn revoked_serials(&self, now_unix: i64) -> Result<Vec<(String, i64)>, StoreError> {
        self.with_conn(move |conn| {
            let tx = crate::write_tx(conn)?;
            tx.execute(
                "DELETE FROM revoked_serials WHERE not_after < ?1",
                params![now_unix],
            )?;
            let rows = {
                let mut stmt =
                    tx.prepare("SELECT serial, not_after FROM revoked_serials ORDER BY serial")?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                rows
            };
            tx.commit()?;
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::test_names::t;
    use crate::Store;

    #[tokio::test]
    async fn policies_and_revocations_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store
            .set_tenant_policy(&t("nosuch"), Some("x".into()), "t")
            .await
            .is_err());
        store.create_tenant(&t("acme"), "t0").await.unwrap();
        assert_eq!(store.tenant_policy(&t("acme")).await.unwrap(), None);
        store
            .set_tenant_policy(&t("acme"), Some("p1".into()), "t1")
            .await
            .unwrap();
        store
            .set_tenant_policy(&t("acme"), Some("p2".into()), "t2")
            .await
            .unwrap();
        let row = store.tenant_policy(&t("acme")).await.unwrap().unwrap();
        assert_eq!((row.policy.as_str(), row.updated_at.as_str()), ("p2", "t2"));
        assert_eq!(store.tenant_policies().await.unwrap().len(), 1);
        store
            .set_tenant_policy(&t("acme"), None, "t3")
            .await
            .unwrap();
        assert_eq!(store.tenant_policy(&t("acme")).await.unwrap(), None);

        store.add_revoked_serial("0a", 100, "t").await.unwrap();
        store.add_revoked_serial("0b", 300, "t").await.unwrap();
        store.add_revoked_serial("0b", 300, "t").await.unwrap();
        assert_eq!(
            store.revoked_serials(200).await.unwrap(),
            [("0b".to_owned(), 300)]
        );
    }
}
