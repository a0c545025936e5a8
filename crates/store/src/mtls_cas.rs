//! The certificate authorities each tenant registered for mTLS callers of its functions
//! (`zerofn auth mtls add`): CA certificates only, as PEM, under a name. Stored as given;
//! the `authn` crate parses and checks them before they are written.

use rusqlite::params;
use zerofn_types::TenantName;

use crate::{Store, StoreError};

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS mtls_cas (
    tenant    TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    name      TEXT NOT NULL,
    pem       TEXT NOT NULL,
    added_at  TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
) STRICT;
"#;

/// A registered CA: certificates only, never a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtlsCaRow {
    pub tenant: String,
    pub name: String,
    /// One or more PEM certificates.
    pub pem: String,
    pub added_at: String,
}

const COLUMNS: &str = "tenant, name, pem, added_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MtlsCaRow> {
    Ok(MtlsCaRow {
        tenant: r.get(0)?,
        name: r.get(1)?,
        pem: r.get(2)?,
        added_at: r.get(3)?,
    })
}

impl Store {
    /// Registers a CA for a tenant under a name not yet used.
    pub async fn add_mtls_ca(&self, tenant: &TenantName, row: MtlsCaRow) -> Result<(), StoreError> {
        self.in_tenant(tenant, move |tx, tenant| {
            let n = tx.execute(
                &format!("INSERT OR IGNORE INTO mtls_cas ({COLUMNS}) VALUES (?1, ?2, ?3, ?4)"),
                params![tenant, row.name, row.pem, row.added_at],
            )?;
            if n == 0 {
                return Err(StoreError::MtlsCaExists {
                    tenant,
                    name: row.name,
                });
            }
            Ok(())
        })
        .await
    }

    /// Removes a tenant's CA.
    pub async fn remove_mtls_ca(&self, tenant: &TenantName, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.in_tenant(tenant, move |tx, tenant| {
            let n = tx.execute(
                "DELETE FROM mtls_cas WHERE tenant = ?1 AND name = ?2",
                params![tenant, name],
            )?;
            if n == 0 {
                return Err(StoreError::NoSuchMtlsCa { tenant, name });
            }
            Ok(())
        })
        .await
    }

    /// CAs of one tenant, or of all tenants (`None`), by tenant and name.
    pub async fn mtls_cas(
        &self,
        tenant: Option<&TenantName>,
    ) -> Result<Vec<MtlsCaRow>, StoreError> {
        let tenant = tenant.map(|t| t.as_str().to_owned());
        self.with_conn(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM mtls_cas WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, name"
            ))?;
            let rows = stmt
                .query_map(params![tenant], row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cas_round_trip_per_tenant_refuse_duplicates_and_move_the_serial() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let acme = TenantName::parse("acme").unwrap();
        let beta = TenantName::parse("beta").unwrap();
        for t in [&acme, &beta] {
            store
                .create_tenant_with_keys(t, Vec::new(), "now")
                .await
                .unwrap();
        }
        let ca = MtlsCaRow {
            tenant: "acme".into(),
            name: "partners".into(),
            pem: "-----BEGIN CERTIFICATE-----\n".into(),
            added_at: "now".into(),
        };
        let before = store.config_serial().await.unwrap();
        store.add_mtls_ca(&acme, ca.clone()).await.unwrap();
        assert!(store.config_serial().await.unwrap() > before);
        assert!(matches!(
            store.add_mtls_ca(&acme, ca.clone()).await,
            Err(StoreError::MtlsCaExists { .. })
        ));
        // The same name in another tenant is another CA.
        store
            .add_mtls_ca(
                &beta,
                MtlsCaRow {
                    tenant: "beta".into(),
                    ..ca.clone()
                },
            )
            .await
            .unwrap();
        assert_eq!(store.mtls_cas(Some(&acme)).await.unwrap(), vec![ca.clone()]);
        assert_eq!(store.mtls_cas(None).await.unwrap().len(), 2);
        store.remove_mtls_ca(&acme, "partners").await.unwrap();
        assert!(store
            .remove_mtls_ca(&acme, "partners")
            .await
            .unwrap_err()
            .is_not_found());
        assert_eq!(store.mtls_cas(None).await.unwrap().len(), 1);
    }
}
