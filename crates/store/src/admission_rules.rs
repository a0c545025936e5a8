//! Each tenant's admission rules: the keyless signing identities it trusts
//! (with the trusted root their certificates must chain to) and its
//! admission settings (Cedar policy text, severity threshold, SBOM
//! requirement). Stored as given; the admission crate parses and validates
//! them before they are written.

use rusqlite::{params, OptionalExtension};
use zerofn_types::TenantName;

use crate::tenants::require_tenant;
use crate::{Store, StoreError};

/// A keyless signing identity trusted for a tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TenantIdentityRow {
    /// Short stable id (derived from the identity and issuer).
    pub id: String,
    /// `exact` or `regexp`.
    pub kind: String,
    /// The SAN, or the pattern for `regexp`.
    pub san: String,
    pub issuer: String,
    /// The Sigstore `trusted_root.json` text.
    #[serde(skip)]
    pub trusted_root: String,
    pub added_at: String,
}

/// A tenant's admission settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct AdmissionSettingsRow {
    /// Cedar policy text; `None` means the platform default.
    pub policy: Option<String>,
    /// `critical`, `high`, `medium`, `low` or `unknown`; `None` for no threshold.
    pub severity_threshold: Option<String>,
    pub require_sbom: bool,
    pub updated_at: Option<String>,
}

impl Store {
    /// Trust a keyless signing identity for a tenant.
    pub async fn add_tenant_identity(
        &self,
        tenant: &TenantName,
        row: TenantIdentityRow,
    ) -> Result<(), StoreError> {
        self.in_tenant(tenant, move |tx, tenant| {
            let n = tx.execute(
                "INSERT OR IGNORE INTO tenant_identities (tenant, id, kind, san, issuer, trusted_root, added_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![tenant, row.id, row.kind, row.san, row.issuer, row.trusted_root, row.added_at],
            )?;
            if n == 0 {
                return Err(StoreError::IdentityExists { tenant, id: row.id });
            }
            Ok(())
        })
        .await
    }

    /// Stop trusting a keyless signing identity.
    pub async fn remove_tenant_identity(
        &self,
        tenant: &TenantName,
        id: &str,
    ) -> Result<(), StoreError> {
        let id = id.to_owned();
        self.in_tenant(tenant, move |tx, tenant| {
            let n = tx.execute(
                "DELETE FROM tenant_identities WHERE tenant = ?1 AND id = ?2",
                params![tenant, id],
            )?;
            if n == 0 {
                return Err(StoreError::NoSuchIdentity { tenant, id });
            }
            Ok(())
        })
        .await
    }

    /// The keyless identities trusted for a tenant.
    pub async fn tenant_identities(
        &self,
        tenant: &TenantName,
    ) -> Result<Vec<TenantIdentityRow>, StoreError> {
        let tenant = tenant.to_string();
        self.with_conn(move |conn| identities_sync(conn, &tenant))
            .await
    }

    /// Blocking variant for start-up.
    pub fn tenant_identities_blocking(
        &self,
        tenant: &TenantName,
    ) -> Result<Vec<TenantIdentityRow>, StoreError> {
        self.with_conn_blocking(|conn| identities_sync(conn, tenant.as_str()))
    }

    /// Replace a tenant's admission settings.
    pub async fn set_admission_settings(
        &self,
        tenant: &TenantName,
        settings: AdmissionSettingsRow,
        now: &str,
    ) -> Result<(), StoreError> {
        let now = now.to_owned();
        self.in_tenant(tenant, move |tx, tenant| {
            tx.execute(
                "INSERT INTO tenant_admission (tenant, policy, severity_threshold, require_sbom, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(tenant) DO UPDATE SET policy = excluded.policy, severity_threshold = excluded.severity_threshold,
                 require_sbom = excluded.require_sbom, updated_at = excluded.updated_at",
                params![tenant, settings.policy, settings.severity_threshold, settings.require_sbom, now],
            )?;
            Ok(())
        })
        .await
    }

    /// A tenant's admission settings (defaults if never set).
    pub async fn admission_settings(
        &self,
        tenant: &TenantName,
    ) -> Result<AdmissionSettingsRow, StoreError> {
        let tenant = tenant.to_string();
        self.with_conn(move |conn| {
            require_tenant(conn, &tenant)?;
            let row = conn
                .query_row(
                    "SELECT policy, severity_threshold, require_sbom, updated_at FROM tenant_admission WHERE tenant = ?1",
                    [&tenant],
                    |r| {
                        Ok(AdmissionSettingsRow {
                            policy: r.get(0)?,
                            severity_threshold: r.get(1)?,
                            require_sbom: r.get(2)?,
                            updated_at: r.get(3)?,
                        })
                    },
                )
                .optional()?;
            Ok(row.unwrap_or_default())
        })
        .await
    }
}

fn identities_sync(
    conn: &rusqlite::Connection,
    tenant: &str,
) -> Result<Vec<TenantIdentityRow>, StoreError> {
    require_tenant(conn, tenant)?;
    let mut stmt = conn.prepare(
        "SELECT id, kind, san, issuer, trusted_root, added_at FROM tenant_identities WHERE tenant = ?1 ORDER BY added_at, id",
    )?;
    let rows = stmt.query_map([tenant], |r| {
        Ok(TenantIdentityRow {
            id: r.get(0)?,
            kind: r.get(1)?,
            san: r.get(2)?,
            issuer: r.get(3)?,
            trusted_root: r.get(4)?,
            added_at: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_names::t;

    #[tokio::test]
    async fn identities_and_settings_round_trip_and_need_the_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let row = TenantIdentityRow {
            id: "abc".into(),
            kind: "exact".into(),
            san: "https://github.com/acme/fn/.github/workflows/r.yml@refs/heads/main".into(),
            issuer: "https://token.actions.githubusercontent.com".into(),
            trusted_root: "{}".into(),
            added_at: "t0".into(),
        };
        assert!(matches!(
            store.add_tenant_identity(&t("acme"), row.clone()).await,
            Err(StoreError::NoSuchTenant(_))
        ));
        store.create_tenant(&t("acme"), "t0").await.unwrap();
        store
            .add_tenant_identity(&t("acme"), row.clone())
            .await
            .unwrap();
        assert!(matches!(
            store.add_tenant_identity(&t("acme"), row.clone()).await,
            Err(StoreError::IdentityExists { .. })
        ));
        assert_eq!(store.tenant_identities(&t("acme")).await.unwrap(), [row]);
        assert_eq!(
            store.admission_settings(&t("acme")).await.unwrap(),
            AdmissionSettingsRow::default()
        );
        let settings = AdmissionSettingsRow {
            policy: Some("permit (principal, action, resource);".into()),
            severity_threshold: Some("high".into()),
            require_sbom: true,
            updated_at: None,
        };
        store
            .set_admission_settings(&t("acme"), settings.clone(), "t1")
            .await
            .unwrap();
        let got = store.admission_settings(&t("acme")).await.unwrap();
        assert_eq!(got.policy, settings.policy);
        assert!(got.require_sbom);
        assert_eq!(got.updated_at.as_deref(), Some("t1"));
        store
            .remove_tenant_identity(&t("acme"), "abc")
            .await
            .unwrap();
        assert!(matches!(
            store.remove_tenant_identity(&t("acme"), "abc").await,
            Err(StoreError::NoSuchIdentity { .. })
        ));
    }
}
