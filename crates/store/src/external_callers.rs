//! Each tenant's external-caller credentials: the JWT issuers it registered (with their
//! public JWKS) and its API keys, of which only the public id and a salted hash are kept.
//! Stored as given; the `authn` crate parses and checks them before they are written.

use rusqlite::params;
use zerofn_types::TenantName;

use crate::{Store, StoreError};

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS jwt_issuers (
    tenant       TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    issuer       TEXT NOT NULL,
    audience     TEXT NOT NULL,
    algorithms   TEXT NOT NULL,
    leeway_secs  INTEGER NOT NULL,
    jwks         TEXT NOT NULL,
    added_at     TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
) STRICT;
CREATE TABLE IF NOT EXISTS api_keys (
    tenant      TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    key_id      TEXT NOT NULL UNIQUE,
    salt        TEXT NOT NULL,
    hash        TEXT NOT NULL,
    functions   TEXT NOT NULL,
    expires_at  INTEGER,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
) STRICT;
"#;

/// Columns added after the tables were first created.
pub(crate) fn migrate(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    let has_jti = conn
        .prepare("SELECT 1 FROM pragma_table_info('jwt_issuers') WHERE name = 'require_jti'")?
        .exists([])?;
    if !has_jti {
        conn.execute_batch(
            "ALTER TABLE jwt_issuers ADD COLUMN require_jti INTEGER NOT NULL DEFAULT 0",
        )?;
    }
    crate::jwks_fetches::migrate(conn)?;
    Ok(())
}

/// A registered JWT issuer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JwtIssuerRow {
    pub tenant: String,
    pub name: String,
    pub issuer: String,
    pub audience: String,
    /// Comma-separated JOSE algorithm names.
    pub algorithms: String,
    pub leeway_secs: u64,
    /// Whether tokens must carry a `jti`, each accepted once.
    #[serde(default)]
    pub require_jti: bool,
    /// The JWKS document (public keys only): as registered, or for an issuer with a
    /// `jwks_url`, the last good one fetched.
    #[serde(skip)]
    pub jwks: String,
    pub added_at: String,
    /// Where the keys are fetched from (`--jwks-url`); `None`: registered as a document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Seconds since the Unix epoch of the last good fetch of `jwks_url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_fetched_at: Option<i64>,
    /// Why the last fetch of `jwks_url` failed (cleared by a good one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_error: Option<String>,
}

/// A stored API key: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKeyRow {
    pub tenant: String,
    pub name: String,
    pub key_id: String,
    #[serde(skip)]
    pub salt: String,
    #[serde(skip)]
    pub hash: String,
    pub functions: Vec<String>,
    /// Seconds since the Unix epoch.
    pub expires_at: Option<i64>,
    pub created_at: String,
}

fn issuer_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JwtIssuerRow> {
    Ok(JwtIssuerRow {
        tenant: r.get(0)?,
        name: r.get(1)?,
        issuer: r.get(2)?,
        audience: r.get(3)?,
        algorithms: r.get(4)?,
        leeway_secs: u64::try_from(r.get::<_, i64>(5)?).unwrap_or(0),
        jwks: r.get(6)?,
        added_at: r.get(7)?,
        require_jti: r.get::<_, i64>(8)? != 0,
        jwks_url: r.get(9)?,
        jwks_fetched_at: r.get(10)?,
        jwks_error: r.get(11)?,
    })
}

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(ApiKeyRow, String)> {
    Ok((
        ApiKeyRow {
            tenant: r.get(0)?,
            name: r.get(1)?,
            key_id: r.get(2)?,
            salt: r.get(3)?,
            hash: r.get(4)?,
            functions: Vec::new(),
            expires_at: r.get(6)?,
            created_at: r.get(7)?,
        },
        r.get(5)?,
    ))
}

const ISSUER_COLUMNS: &str =
    "tenant, name, issuer, audience, algorithms, leeway_secs, jwks, added_at, require_jti, \
     jwks_url, jwks_fetched_at, jwks_error";
const KEY_COLUMNS: &str = "tenant, name, key_id, salt, hash, functions, expires_at, created_at";

impl Store {
    /// Registers a JWT issuer for a tenant under a name not yet used.
    pub async fn add_jwt_issuer(
        &self,
        tenant: &TenantName,
        row: JwtIssuerRow,
    ) -> Result<(), StoreError> {
        self.in_tenant(tenant, move |tx, tenant| {
            let n = tx.execute(
                &format!("INSERT OR IGNORE INTO jwt_issuers ({ISSUER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
                params![
                    tenant,
                    row.name,
                    row.issuer,
                    row.audience,
                    row.algorithms,
                    i64::try_from(row.leeway_secs).unwrap_or(0),
                    row.jwks,
                    row.added_at,
                    i64::from(row.require_jti),
                    row.jwks_url,
                    row.jwks_fetched_at,
                    row.jwks_error
                ],
            )?;
            if n == 0 {
                return Err(StoreError::IssuerExists { tenant, name: row.name });
            }
            Ok(())
        })
        .await
    }

    /// Removes a tenant's JWT issuer.
    pub async fn remove_jwt_issuer(
        &self,
        tenant: &TenantName,
        name: &str,
    ) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.in_tenant(tenant, move |tx, tenant| {
            let n = tx.execute(
                "DELETE FROM jwt_issuers WHERE tenant = ?1 AND name = ?2",
                params![tenant, name],
            )?;
            if n == 0 {
                return Err(StoreError::NoSuchIssuer { tenant, name });
            }
            Ok(())
        })
        .await
    }

    /// JWT issuers of one tenant, or of all tenants (`None`), by tenant and name.
    pub async fn jwt_issuers(
        &self,
        tenant: Option<&TenantName>,
    ) -> Result<Vec<JwtIssuerRow>, StoreError> {
        let tenant = tenant.map(|t| t.as_str().to_owned());
        self.with_conn(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {ISSUER_COLUMNS} FROM jwt_issuers WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, name"
            ))?;
            let rows = stmt
                .query_map(params![tenant], issuer_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Stores a new API key under a name not yet used in its tenant.
    pub async fn add_api_key(&self, tenant: &TenantName, row: ApiKeyRow) -> Result<(), StoreError> {
        // Function names are DNS labels: a comma never occurs in one.
        let functions = row.functions.join(",");
        self.in_tenant(tenant, move |tx, tenant| {
            let n = tx.execute(
                &format!("INSERT OR IGNORE INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![
                    tenant,
                    row.name,
                    row.key_id,
                    row.salt,
                    row.hash,
                    functions,
                    row.expires_at,
                    row.created_at
                ],
            )?;
            if n == 0 {
                return Err(StoreError::ApiKeyExists { tenant, name: row.name });
            }
            Ok(())
        })
        .await
    }

    /// Deletes a tenant's API key: it stops working at once.
    pub async fn revoke_api_key(
        &self,
        tenant: &TenantName,
        name: &str,
    ) -> Result<String, StoreError> {
        let name = name.to_owned();
        self.in_tenant(tenant, move |tx, tenant| {
            let id: Option<String> = tx
                .query_row(
                    "DELETE FROM api_keys WHERE tenant = ?1 AND name = ?2 RETURNING key_id",
                    params![tenant, name],
                    |r| r.get(0),
                )
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })?;
            id.ok_or(StoreError::NoSuchApiKey { tenant, name })
        })
        .await
    }

    /// API keys of one tenant, or of all tenants (`None`), by tenant and name.
    pub async fn api_keys(
        &self,
        tenant: Option<&TenantName>,
    ) -> Result<Vec<ApiKeyRow>, StoreError> {
        let tenant = tenant.map(|t| t.as_str().to_owned());
        self.with_conn(move |conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {KEY_COLUMNS} FROM api_keys WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, name"
            ))?;
            let rows = stmt
                .query_map(params![tenant], key_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows
                .into_iter()
                .map(|(mut row, functions)| {
                    row.functions = functions
                        .split(',')
                        .filter(|f| !f.is_empty())
                        .map(str::to_owned)
                        .collect();
                    row
                })
                .collect())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn issuers_and_keys_round_trip_and_refuse_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let acme = TenantName::parse("acme").unwrap();
        store
            .create_tenant_with_keys(&acme, Vec::new(), "now")
            .await
            .unwrap();
        let issuer = JwtIssuerRow {
            tenant: "acme".into(),
            name: "corp".into(),
            issuer: "https://idp".into(),
            audience: "a".into(),
            algorithms: "ES256".into(),
            leeway_secs: 60,
            jwks: "{}".into(),
            added_at: "now".into(),
            require_jti: true,
            jwks_url: None,
            jwks_fetched_at: None,
            jwks_error: None,
        };
        store.add_jwt_issuer(&acme, issuer.clone()).await.unwrap();
        assert!(matches!(
            store.add_jwt_issuer(&acme, issuer.clone()).await,
            Err(StoreError::IssuerExists { .. })
        ));
        assert_eq!(store.jwt_issuers(None).await.unwrap(), vec![issuer]);
        let key = ApiKeyRow {
            tenant: "acme".into(),
            name: "ci".into(),
            key_id: "00ff".into(),
            salt: "aa".into(),
            hash: "bb".into(),
            functions: vec!["orders".into()],
            expires_at: Some(5),
            created_at: "now".into(),
        };
        store.add_api_key(&acme, key.clone()).await.unwrap();
        assert_eq!(store.api_keys(Some(&acme)).await.unwrap(), vec![key]);
        assert_eq!(store.revoke_api_key(&acme, "ci").await.unwrap(), "00ff");
        assert!(store.api_keys(None).await.unwrap().is_empty());
        assert!(store
            .revoke_api_key(&acme, "ci")
            .await
            .unwrap_err()
            .is_not_found());
        store.remove_jwt_issuer(&acme, "corp").await.unwrap();
        assert!(store
            .remove_jwt_issuer(&acme, "corp")
            .await
            .unwrap_err()
            .is_not_found());
    }
}
