//! Tenants and the public keys allowed to sign code for them.

use rusqlite::{params, OptionalExtension};

use zerofn_types::TenantName;

use crate::{Store, StoreError};

/// A tenant as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TenantRow {
    pub name: String,
    pub created_at: String,
    pub key_ids: Vec<String>,
}

/// One trusted signing key of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TenantKeyRow {
    pub key_id: String,
    pub public_key_pem: String,
    pub added_at: String,
}

impl Store {
    /// Create a tenant, optionally with its first trusted keys, atomically.
    /// It is assigned no route prefixes (see [`Store::create_tenant_with_routes`]).
    pub async fn create_tenant_with_keys(
        &self,
        name: &TenantName,
        keys: Vec<(String, String)>,
        now: &str,
    ) -> Result<(), StoreError> {
        self.create_tenant_with_routes(name, keys, Vec::new(), now)
            .await
    }

    /// Create a tenant with its first trusted keys and its route prefixes,
    /// atomically: a prefix another tenant holds refuses the whole creation.
    pub async fn create_tenant_with_routes(
        &self,
        name: &TenantName,
        keys: Vec<(String, String)>,
        prefixes: Vec<String>,
        now: &str,
    ) -> Result<(), StoreError> {
        let (name, now) = (name.as_str().to_owned(), now.to_owned());
        self.with_conn(move |conn| {
            let tx = crate::write_tx(conn)?;
            let exists: Option<String> = tx
                .query_row("SELECT name FROM tenants WHERE name = ?1", [&name], |r| {
                    r.get(0)
                })
                .optional()?;
            if exists.is_some() {
                return Err(StoreError::TenantExists(name));
            }
            tx.execute(
                "INSERT INTO tenants (name, created_at) VALUES (?1, ?2)",
                params![name, now],
            )?;
            for (key_id, pem) in keys {
                tx.execute(
                    "INSERT OR IGNORE INTO tenant_keys (tenant, key_id, public_key_pem, added_at) VALUES (?1, ?2, ?3, ?4)",
                    params![name, key_id, pem, now],
                )?;
            }
            crate::route_prefixes::check_free(&tx, &name, &prefixes)?;
            crate::route_prefixes::insert(&tx, &name, &prefixes, &now)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Create a tenant with no keys.
    pub async fn create_tenant(&self, name: &TenantName, now: &str) -> Result<(), StoreError> {
        self.create_tenant_with_keys(name, Vec::new(), now).await
    }

    /// All tenants with the ids of their keys.
    pub async fn list_tenants(&self) -> Result<Vec<TenantRow>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT t.name, t.created_at, group_concat(k.key_id, ',') FROM tenants t \
                 LEFT JOIN tenant_keys k ON k.tenant = t.name GROUP BY t.name ORDER BY t.name",
            )?;
            let rows = stmt.query_map([], |r| {
                let keys: Option<String> = r.get(2)?;
                Ok(TenantRow {
                    name: r.get(0)?,
                    created_at: r.get(1)?,
                    key_ids: keys
                        .map(|k| k.split(',').map(str::to_owned).collect())
                        .unwrap_or_default(),
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Trust one more key for a tenant.
    pub async fn add_tenant_key(
        &self,
        tenant: &TenantName,
        key_id: &str,
        pem: &str,
        now: &str,
    ) -> Result<(), StoreError> {
        let (key_id, pem, now) = (key_id.to_owned(), pem.to_owned(), now.to_owned());
        self.in_tenant(tenant, move |tx, tenant| {
            let n = tx.execute(
                "INSERT OR IGNORE INTO tenant_keys (tenant, key_id, public_key_pem, added_at) VALUES (?1, ?2, ?3, ?4)",
                params![tenant, key_id, pem, now],
            )?;
            if n == 0 {
                return Err(StoreError::KeyExists { tenant, key_id });
            }
            Ok(())
        })
        .await
    }

    /// Stop trusting a key for a tenant.
    pub async fn remove_tenant_key(
        &self,
        tenant: &TenantName,
        key_id: &str,
    ) -> Result<(), StoreError> {
        let key_id = key_id.to_owned();
        self.in_tenant(tenant, move |tx, tenant| {
            let n = tx.execute(
                "DELETE FROM tenant_keys WHERE tenant = ?1 AND key_id = ?2",
                params![tenant, key_id],
            )?;
            if n == 0 {
                return Err(StoreError::NoSuchKey { tenant, key_id });
            }
            Ok(())
        })
        .await
    }

    /// The keys trusted for a tenant; `NoSuchTenant` if it does not exist.
    pub async fn tenant_keys(&self, tenant: &TenantName) -> Result<Vec<TenantKeyRow>, StoreError> {
        let tenant = tenant.as_str().to_owned();
        self.with_conn(move |conn| tenant_keys_sync(conn, &tenant))
            .await
    }

    /// Blocking variant for start-up.
    pub fn tenant_keys_blocking(
        &self,
        tenant: &TenantName,
    ) -> Result<Vec<TenantKeyRow>, StoreError> {
        self.with_conn_blocking(|conn| tenant_keys_sync(conn, tenant.as_str()))
    }
}

fn tenant_keys_sync(
    conn: &rusqlite::Connection,
    tenant: &str,
) -> Result<Vec<TenantKeyRow>, StoreError> {
    require_tenant(conn, tenant)?;
    let mut stmt = conn.prepare(
        "SELECT key_id, public_key_pem, added_at FROM tenant_keys WHERE tenant = ?1 ORDER BY added_at, key_id",
    )?;
    let rows = stmt.query_map([tenant], |r| {
        Ok(TenantKeyRow {
            key_id: r.get(0)?,
            public_key_pem: r.get(1)?,
            added_at: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(crate) fn require_tenant(conn: &rusqlite::Connection, tenant: &str) -> Result<(), StoreError> {
    let exists: Option<String> = conn
        .query_row("SELECT name FROM tenants WHERE name = ?1", [tenant], |r| {
            r.get(0)
        })
        .optional()?;
    match exists {
        Some(_) => Ok(()),
        None => Err(StoreError::NoSuchTenant(tenant.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use crate::test_names::t;
    use crate::Store;

    #[tokio::test]
    async fn keys_are_added_listed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .create_tenant_with_keys(&t("acme"), vec![("k1".into(), "pem1".into())], "t0")
            .await
            .unwrap();
        assert!(matches!(
            store.create_tenant(&t("acme"), "t1").await,
            Err(crate::StoreError::TenantExists(_))
        ));
        store
            .add_tenant_key(&t("acme"), "k2", "pem2", "t1")
            .await
            .unwrap();
        assert!(matches!(
            store.add_tenant_key(&t("acme"), "k2", "pem2", "t1").await,
            Err(crate::StoreError::KeyExists { .. })
        ));
        let keys = store.tenant_keys(&t("acme")).await.unwrap();
        assert_eq!(
            keys.iter().map(|k| k.key_id.as_str()).collect::<Vec<_>>(),
            ["k1", "k2"]
        );
        store.remove_tenant_key(&t("acme"), "k1").await.unwrap();
        assert!(matches!(
            store.remove_tenant_key(&t("acme"), "k1").await,
            Err(crate::StoreError::NoSuchKey { .. })
        ));
        assert!(matches!(
            store.tenant_keys(&t("other")).await,
            Err(crate::StoreError::NoSuchTenant(_))
        ));
        let tenants = store.list_tenants().await.unwrap();
        assert_eq!(tenants[0].key_ids, ["k2"]);
    }
}
