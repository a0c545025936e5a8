//! The fetch state of JWT issuers registered with a JWKS URL: the last good document (so
//! the keys survive a restart), when it was fetched, and why the last fetch failed.
//! Written by the server's JWKS refresher; the document was validated before it gets here.

use rusqlite::params;
use zerofn_types::TenantName;

use crate::{Store, StoreError};

/// Columns added to `jwt_issuers` for `--jwks-url` issuers.
pub(crate) fn migrate(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    for (column, ty) in [
        ("jwks_url", "TEXT"),
        ("jwks_fetched_at", "INTEGER"),
        ("jwks_error", "TEXT"),
    ] {
        let exists = conn
            .prepare("SELECT 1 FROM pragma_table_info('jwt_issuers') WHERE name = ?1")?
            .exists([column])?;
        if !exists {
            conn.execute_batch(&format!("ALTER TABLE jwt_issuers ADD COLUMN {column} {ty}"))?;
        }
    }
    Ok(())
}

impl Store {
    /// Records a good fetch of the issuer's JWKS URL: `document` becomes the last good
    /// one, fetched at `at` (seconds since the Unix epoch), and the last error is cleared.
    /// An issuer removed meanwhile is `NoSuchIssuer`.
    pub async fn set_jwks_fetched(
        &self,
        tenant: &TenantName,
        name: &str,
        document: String,
        at: i64,
    ) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.in_tenant(tenant, move |tx, tenant| {
            let n = tx.execute(
                "UPDATE jwt_issuers SET jwks = ?3, jwks_fetched_at = ?4, jwks_error = NULL \
                 WHERE tenant = ?1 AND name = ?2 AND jwks_url IS NOT NULL",
                params![tenant, name, document, at],
            )?;
            if n == 0 {
                return Err(StoreError::NoSuchIssuer { tenant, name });
            }
            Ok(())
        })
        .await
    }

    /// Records a failed fetch of the issuer's JWKS URL; the last good document stays.
    pub async fn set_jwks_error(
        &self,
        tenant: &TenantName,
        name: &str,
        error: String,
    ) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.in_tenant(tenant, move |tx, tenant| {
            let n = tx.execute(
                "UPDATE jwt_issuers SET jwks_error = ?3 \
                 WHERE tenant = ?1 AND name = ?2 AND jwks_url IS NOT NULL",
                params![tenant, name, error],
            )?;
            if n == 0 {
                return Err(StoreError::NoSuchIssuer { tenant, name });
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JwtIssuerRow;

    #[tokio::test]
    async fn a_fetch_updates_the_document_and_a_failure_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let acme = TenantName::parse("acme").unwrap();
        store
            .create_tenant_with_keys(&acme, Vec::new(), "now")
            .await
            .unwrap();
        let mut row = JwtIssuerRow {
            tenant: "acme".into(),
            name: "corp".into(),
            issuer: "https://idp".into(),
            audience: "a".into(),
            algorithms: "ES256".into(),
            leeway_secs: 60,
            jwks: "{\"keys\":[1]}".into(),
            added_at: "now".into(),
            require_jti: false,
            jwks_url: Some("https://idp/jwks".into()),
            jwks_fetched_at: Some(100),
            jwks_error: None,
        };
        store.add_jwt_issuer(&acme, row.clone()).await.unwrap();
        assert_eq!(store.jwt_issuers(None).await.unwrap(), vec![row.clone()]);

        store
            .set_jwks_error(&acme, "corp", "connection refused".into())
            .await
            .unwrap();
        row.jwks_error = Some("connection refused".into());
        assert_eq!(store.jwt_issuers(None).await.unwrap(), vec![row.clone()]);

        store
            .set_jwks_fetched(&acme, "corp", "{\"keys\":[2]}".into(), 200)
            .await
            .unwrap();
        row.jwks = "{\"keys\":[2]}".into();
        row.jwks_fetched_at = Some(200);
        row.jwks_error = None;
        assert_eq!(store.jwt_issuers(None).await.unwrap(), vec![row.clone()]);

        // An issuer registered from a file, or gone, has no fetch state to set.
        let mut file = row.clone();
        file.name = "file".into();
        file.jwks_url = None;
        store.add_jwt_issuer(&acme, file.clone()).await.unwrap();
        for name in ["file", "gone"] {
            assert!(matches!(
                store.set_jwks_fetched(&acme, name, "{}".into(), 300).await,
                Err(StoreError::NoSuchIssuer { .. })
            ));
            assert!(matches!(
                store.set_jwks_error(&acme, name, "x".into()).await,
                Err(StoreError::NoSuchIssuer { .. })
            ));
        }
        assert_eq!(store.jwt_issuers(None).await.unwrap(), vec![row, file]);
    }
}
