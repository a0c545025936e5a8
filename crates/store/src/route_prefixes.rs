//! Tenants' route prefixes: which part of the URL path space an operator
//! assigned to each tenant. The store keeps the assignment text as given
//! (the caller normalises it) and guarantees that one prefix has at most
//! one tenant (the primary key).

use rusqlite::{params, Connection, OptionalExtension};
use zerofn_types::TenantName;

use crate::tenants::require_tenant;
use crate::{Store, StoreError};

/// The table, created by the migration in `lib.rs`.
pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tenant_routes (
    prefix       TEXT PRIMARY KEY,
    tenant       TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    assigned_at  TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS tenant_routes_by_tenant ON tenant_routes (tenant);
"#;

/// Creates the table. A database from before route spaces existed gets,
/// for each tenant, the routes its deployments serve (so every function
/// keeps serving exactly what it served) and `/<tenant>/...`, each only
/// where no other tenant has it already.
pub(crate) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let exists = conn
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tenant_routes'")?
        .exists([])?;
    if exists {
        return Ok(());
    }
    // One transaction: a migration cut short leaves no table, and runs again.
    let tx = conn.unchecked_transaction()?;
    fill(&tx)?;
    tx.commit()?;
    Ok(())
}

fn fill(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(SCHEMA)?;
    let now = "migrated";
    let mut deployed =
        conn.prepare("SELECT tenant, routes FROM deployments ORDER BY tenant, name")?;
    let rows = deployed.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    for row in rows {
        let (tenant, routes) = row?;
        for route in crate::deployments::decode_routes(&routes)? {
            conn.execute(
                "INSERT OR IGNORE INTO tenant_routes (prefix, tenant, assigned_at) VALUES (?1, ?2, ?3)",
                params![route, tenant, now],
            )?;
        }
    }
    let mut tenants = conn.prepare("SELECT name FROM tenants ORDER BY name")?;
    let names = tenants.query_map([], |r| r.get::<_, String>(0))?;
    for name in names {
        let name = name?;
        conn.execute(
            "INSERT OR IGNORE INTO tenant_routes (prefix, tenant, assigned_at) VALUES (?1, ?2, ?3)",
            params![format!("/{name}/..."), name, now],
        )?;
    }
    Ok(())
}

/// Refuses `prefixes` if another tenant than `tenant` holds one of them.
pub(crate) fn check_free(
    conn: &Connection,
    tenant: &str,
    prefixes: &[String],
) -> Result<(), StoreError> {
    for prefix in prefixes {
        let owner: Option<String> = conn
            .query_row(
                "SELECT tenant FROM tenant_routes WHERE prefix = ?1",
                [prefix],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(owner) = owner.filter(|o| o != tenant) {
            return Err(StoreError::PrefixTaken {
                prefix: prefix.clone(),
                owner,
            });
        }
    }
    Ok(())
}

/// Inserts `prefixes` for `tenant` (already checked free).
pub(crate) fn insert(
    conn: &Connection,
    tenant: &str,
    prefixes: &[String],
    now: &str,
) -> Result<(), StoreError> {
    for prefix in prefixes {
        conn.execute(
            "INSERT OR IGNORE INTO tenant_routes (prefix, tenant, assigned_at) VALUES (?1, ?2, ?3)",
            params![prefix, tenant, now],
        )?;
    }
    Ok(())
}

impl Store {
    /// The route prefixes assigned to a tenant, sorted; `NoSuchTenant` if
    /// it does not exist.
    pub async fn tenant_routes(&self, tenant: &TenantName) -> Result<Vec<String>, StoreError> {
        let tenant = tenant.to_string();
        self.with_conn(move |conn| {
            require_tenant(conn, &tenant)?;
            let mut stmt =
                conn.prepare("SELECT prefix FROM tenant_routes WHERE tenant = ?1 ORDER BY prefix")?;
            let rows = stmt.query_map([&tenant], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Replace a tenant's route prefixes in one transaction, refusing a
    /// prefix another tenant holds (nothing changes then).
    pub async fn set_tenant_routes(
        &self,
        tenant: &TenantName,
        prefixes: Vec<String>,
        now: &str,
    ) -> Result<(), StoreError> {
        let now = now.to_owned();
        self.in_tenant(tenant, move |tx, tenant| {
            check_free(tx, &tenant, &prefixes)?;
            tx.execute("DELETE FROM tenant_routes WHERE tenant = ?1", [&tenant])?;
            insert(tx, &tenant, &prefixes, &now)?;
            Ok(())
        })
        .await
    }

    /// Every assignment as `(prefix, tenant)`, sorted by prefix.
    pub async fn all_tenant_routes(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.with_conn(|conn| all_sync(conn)).await
    }

    /// Blocking variant for start-up.
    pub fn all_tenant_routes_blocking(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.with_conn_blocking(|conn| all_sync(conn))
    }
}

fn all_sync(conn: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare("SELECT prefix, tenant FROM tenant_routes ORDER BY prefix")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

#[cfg(test)]
mod tests {
    use crate::test_names::t;
    use crate::{Store, StoreError};

    #[tokio::test]
    async fn prefixes_are_assigned_replaced_and_kept_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .create_tenant_with_routes(&t("demo"), Vec::new(), vec!["/...".into()], "t0")
                .await
                .unwrap();
            store
                .create_tenant_with_routes(&t("shop"), Vec::new(), vec!["/shop/...".into()], "t0")
                .await
                .unwrap();
            // The same prefix for another tenant is refused, naming the owner, at
            // creation (nothing is created) and on replace (nothing changes).
            let e = store
                .create_tenant_with_routes(&t("evil"), Vec::new(), vec!["/shop/...".into()], "t1")
                .await
                .unwrap_err();
            assert!(
                matches!(&e, StoreError::PrefixTaken { prefix, owner } if prefix == "/shop/..." && owner == "shop"),
                "{e:?}"
            );
            assert!(e.to_string().contains("`shop`"), "{e}");
            assert!(!store
                .list_tenants()
                .await
                .unwrap()
                .iter()
                .any(|t| t.name == "evil"));
            let e = store
                .set_tenant_routes(&t("demo"), vec!["/a/...".into(), "/shop/...".into()], "t1")
                .await
                .unwrap_err();
            assert!(matches!(e, StoreError::PrefixTaken { .. }), "{e:?}");
            assert_eq!(store.tenant_routes(&t("demo")).await.unwrap(), ["/..."]);
            store
                .set_tenant_routes(&t("demo"), vec!["/b".into(), "/a/...".into()], "t2")
                .await
                .unwrap();
            assert!(matches!(
                store.tenant_routes(&t("nobody")).await,
                Err(StoreError::NoSuchTenant(_))
            ));
            assert!(matches!(
                store.set_tenant_routes(&t("nobody"), vec![], "t2").await,
                Err(StoreError::NoSuchTenant(_))
            ));
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.tenant_routes(&t("demo")).await.unwrap(),
            ["/a/...", "/b"]
        );
        assert_eq!(
            store.all_tenant_routes_blocking().unwrap(),
            [
                ("/a/...".to_owned(), "demo".to_owned()),
                ("/b".to_owned(), "demo".to_owned()),
                ("/shop/...".to_owned(), "shop".to_owned())
            ]
        );
        // An emptied tenant owns nothing.
        store
            .set_tenant_routes(&t("shop"), vec![], "t3")
            .await
            .unwrap();
        assert!(store.tenant_routes(&t("shop")).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_database_from_before_route_spaces_keeps_serving_its_routes() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.create_tenant(&t("acme"), "t0").await.unwrap();
            store.create_tenant(&t("other"), "t0").await.unwrap();
            let row = crate::deployments::tests::row("a", &["/hello", "/other/..."]);
            store
                .put_deployment(row, Box::new(|a, b| a == b), crate::deployments::tests::v())
                .await
                .unwrap();
            // As an older version left it: no table.
            let conn = rusqlite::Connection::open(store.path()).unwrap();
            conn.execute_batch("DROP TABLE tenant_routes").unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.all_tenant_routes().await.unwrap(),
            [
                ("/acme/...".to_owned(), "acme".to_owned()),
                ("/hello".to_owned(), "acme".to_owned()),
                // acme's deployment served it first: `other` does not get it.
                ("/other/...".to_owned(), "acme".to_owned()),
            ]
        );
    }
}
