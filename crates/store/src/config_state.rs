//! The configuration serial, and applying a whole configuration change in one transaction.
//!
//! The serial counts configuration changes: triggers on every configuration table bump it
//! in the same transaction as the change, whichever code path made it (the control API, a
//! `zerofn apply`, a future one), so a saved plan can tell whether the platform changed
//! since it was made. Invocation data (key-value, logs, audit rows) and derived columns
//! (a deployment's precompiled hash) do not bump it.
//!
//! [`Store::apply_config`] checks the serial a plan was made at and makes every change of
//! the plan inside one `BEGIN IMMEDIATE` transaction: the check and the writes see the same
//! state, and any failing step rolls back all of them.

use rusqlite::{params, OptionalExtension};

use crate::{JwtIssuerRow, Store, StoreError, TenantIdentityRow};

/// Configuration tables and the columns whose change is a configuration change (`None`:
/// every update).
const WATCHED: [(&str, Option<&str>); 15] = [
    ("tenants", None),
    ("tenant_keys", None),
    ("tenant_identities", None),
    ("tenant_admission", None),
    ("tenant_policies", None),
    ("tenant_limits", None),
    ("tenant_routes", None),
    ("jwt_issuers", None),
    ("api_keys", None),
    ("mtls_cas", None),
    ("operators", None),
    ("control_policy", None),
    ("zones", None),
    ("zone_tenants", None),
    ("deployments", Some("digest, manifest, routes, version")),
];

/// The serial's table and its triggers (run after every other schema part).
pub(crate) static SCHEMA: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut sql = String::from(
        "CREATE TABLE IF NOT EXISTS config_serial (\n    id INTEGER PRIMARY KEY CHECK (id = 1),\n    serial INTEGER NOT NULL\n) STRICT;\nINSERT OR IGNORE INTO config_serial (id, serial) VALUES (1, 0);\n",
    );
    for (table, columns) in WATCHED {
        for (event, on) in [
            ("INSERT", "INSERT".to_owned()),
            ("DELETE", "DELETE".to_owned()),
            (
                "UPDATE",
                columns.map_or("UPDATE".to_owned(), |c| format!("UPDATE OF {c}")),
            ),
        ] {
            sql.push_str(&format!(
                "CREATE TRIGGER IF NOT EXISTS config_serial_{table}_{} AFTER {on} ON {table} \
                 BEGIN UPDATE config_serial SET serial = serial + 1 WHERE id = 1; END;\n",
                event.to_ascii_lowercase()
            ));
        }
    }
    sql
});

/// One configuration change, as `apply` makes it. The server validated every value (keys
/// parsed, policies validated, route space checked) before building these.
#[derive(Debug, Clone)]
pub enum ConfigOp {
    CreateTenant {
        tenant: String,
        routes: Vec<String>,
    },
    SetRoutes {
        tenant: String,
        routes: Vec<String>,
    },
    AddKey {
        tenant: String,
        key_id: String,
        pem: String,
    },
    RemoveKey {
        tenant: String,
        key_id: String,
    },
    SetLimits {
        tenant: String,
        rate_per_second: Option<u32>,
        burst: Option<u32>,
        max_concurrency: Option<u32>,
    },
    SetAdmission {
        tenant: String,
        policy: Option<String>,
        severity_threshold: Option<String>,
        require_sbom: bool,
    },
    AddIdentity {
        tenant: String,
        row: TenantIdentityRow,
    },
    RemoveIdentity {
        tenant: String,
        id: String,
    },
    PutJwtIssuer {
        row: JwtIssuerRow,
    },
    RemoveJwtIssuer {
        tenant: String,
        name: String,
    },
    PutMtlsCa {
        row: crate::MtlsCaRow,
    },
    RemoveMtlsCa {
        tenant: String,
        name: String,
    },
    SetTenantPolicy {
        tenant: String,
        policy: Option<String>,
    },
    SetControlPolicy {
        policy: Option<String>,
    },
    /// Zones `(name, document, tenants)` created or replaced, and zones deleted.
    SetZones {
        zones: Vec<(String, String, Vec<String>)>,
        delete: Vec<String>,
    },
    /// A function admitted, compiled and checked by the server, as its next version.
    PutDeployment {
        row: Box<crate::DeploymentRow>,
        version: crate::NewVersion,
        /// Route overlap, as the server defines it (see [`crate::RouteOverlap`]).
        overlaps: fn(&str, &str) -> bool,
    },
    DeleteDeployment {
        tenant: String,
        name: String,
    },
    /// A certificate the server issued to an operator.
    AddOperatorCert {
        row: crate::OperatorCertRow,
    },
    /// Every certificate of the operator revoked.
    RevokeOperator {
        name: String,
    },
}

fn serial_of(conn: &rusqlite::Connection) -> Result<u64, StoreError> {
    let serial: Option<i64> = conn
        .query_row("SELECT serial FROM config_serial WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(u64::try_from(serial.unwrap_or(0)).unwrap_or(0))
}

impl Store {
    /// The configuration serial now.
    pub async fn config_serial(&self) -> Result<u64, StoreError> {
        self.with_conn(|conn| serial_of(conn)).await
    }

    /// Make every change in `ops`, in order, in one transaction, if the serial is still
    /// `planned` (when given); returns the serial after. Any error rolls back everything.
    pub async fn apply_config(
        &self,
        planned: Option<u64>,
        ops: Vec<ConfigOp>,
        now: &str,
    ) -> Result<u64, StoreError> {
        let now = now.to_owned();
        self.with_conn(move |conn| {
            let tx = crate::write_tx(conn)?;
            let current = serial_of(&tx)?;
            if let Some(planned) = planned {
                if planned != current {
                    return Err(StoreError::StaleSerial { planned, current });
                }
            }
            for op in ops {
                apply_op(&tx, op, &now)?;
            }
            let after = serial_of(&tx)?;
            tx.commit()?;
            Ok(after)
        })
        .await
    }
}

fn apply_op(tx: &rusqlite::Transaction<'_>, op: ConfigOp, now: &str) -> Result<(), StoreError> {
    use crate::tenants::require_tenant;
    match op {
        ConfigOp::CreateTenant { tenant, routes } => {
            let n = tx.execute(
                "INSERT OR IGNORE INTO tenants (name, created_at) VALUES (?1, ?2)",
                params![tenant, now],
            )?;
            if n == 0 {
                return Err(StoreError::TenantExists(tenant));
            }
            crate::route_prefixes::check_free(tx, &tenant, &routes)?;
            crate::route_prefixes::insert(tx, &tenant, &routes, now)?;
        }
        ConfigOp::SetRoutes { tenant, routes } => {
            require_tenant(tx, &tenant)?;
            tx.execute("DELETE FROM tenant_routes WHERE tenant = ?1", [&tenant])?;
            crate::route_prefixes::check_free(tx, &tenant, &routes)?;
            crate::route_prefixes::insert(tx, &tenant, &routes, now)?;
        }
        ConfigOp::AddKey {
            tenant,
            key_id,
            pem,
        } => {
            require_tenant(tx, &tenant)?;
            let n = tx.execute(
                "INSERT OR IGNORE INTO tenant_keys (tenant, key_id, public_key_pem, added_at) VALUES (?1, ?2, ?3, ?4)",
                params![tenant, key_id, pem, now],
            )?;
            if n == 0 {
                return Err(StoreError::KeyExists { tenant, key_id });
            }
        }
        ConfigOp::RemoveKey { tenant, key_id } => {
            let n = tx.execute(
                "DELETE FROM tenant_keys WHERE tenant = ?1 AND key_id = ?2",
                params![tenant, key_id],
            )?;
            if n == 0 {
                return Err(StoreError::NoSuchKey { tenant, key_id });
            }
        }
        ConfigOp::SetLimits {
            tenant,
            rate_per_second,
            burst,
            max_concurrency,
        } => {
            require_tenant(tx, &tenant)?;
            tx.execute("DELETE FROM tenant_limits WHERE tenant = ?1", [&tenant])?;
            if rate_per_second.is_some() || burst.is_some() || max_concurrency.is_some() {
                tx.execute(
                    "INSERT INTO tenant_limits (tenant, rate_per_second, burst, max_concurrency, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![tenant, rate_per_second, burst, max_concurrency, now],
                )?;
            }
        }
        ConfigOp::SetAdmission {
            tenant,
            policy,
            severity_threshold,
            require_sbom,
        } => {
            require_tenant(tx, &tenant)?;
            tx.execute(
                "INSERT INTO tenant_admission (tenant, policy, severity_threshold, require_sbom, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(tenant) DO UPDATE SET policy = excluded.policy, severity_threshold = excluded.severity_threshold,
                 require_sbom = excluded.require_sbom, updated_at = excluded.updated_at",
                params![tenant, policy, severity_threshold, require_sbom, now],
            )?;
        }
        ConfigOp::AddIdentity { tenant, row } => {
            require_tenant(tx, &tenant)?;
            let n = tx.execute(
                "INSERT OR IGNORE INTO tenant_identities (tenant, id, kind, san, issuer, trusted_root, added_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![tenant, row.id, row.kind, row.san, row.issuer, row.trusted_root, now],
            )?;
            if n == 0 {
                return Err(StoreError::IdentityExists { tenant, id: row.id });
            }
        }
        ConfigOp::RemoveIdentity { tenant, id } => {
            let n = tx.execute(
                "DELETE FROM tenant_identities WHERE tenant = ?1 AND id = ?2",
                params![tenant, id],
            )?;
            if n == 0 {
                return Err(StoreError::NoSuchIdentity { tenant, id });
            }
        }
        ConfigOp::PutJwtIssuer { row } => {
            require_tenant(tx, &row.tenant)?;
            tx.execute(
                "DELETE FROM jwt_issuers WHERE tenant = ?1 AND name = ?2",
                params![row.tenant, row.name],
            )?;
            tx.execute(
                "INSERT INTO jwt_issuers (tenant, name, issuer, audience, algorithms, leeway_secs, jwks, added_at, require_jti, jwks_url, jwks_fetched_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    row.tenant,
                    row.name,
                    row.issuer,
                    row.audience,
                    row.algorithms,
                    i64::try_from(row.leeway_secs).unwrap_or(i64::MAX),
                    row.jwks,
                    now,
                    i64::from(row.require_jti),
                    row.jwks_url,
                    row.jwks_fetched_at
                ],
            )?;
        }
        ConfigOp::RemoveJwtIssuer { tenant, name } => {
            tx.execute(
                "DELETE FROM jwt_issuers WHERE tenant = ?1 AND name = ?2",
                params![tenant, name],
            )?;
        }
        ConfigOp::PutMtlsCa { row } => {
            require_tenant(tx, &row.tenant)?;
            tx.execute(
                "DELETE FROM mtls_cas WHERE tenant = ?1 AND name = ?2",
                params![row.tenant, row.name],
            )?;
            tx.execute(
                "INSERT INTO mtls_cas (tenant, name, pem, added_at) VALUES (?1, ?2, ?3, ?4)",
                params![row.tenant, row.name, row.pem, now],
            )?;
        }
        ConfigOp::RemoveMtlsCa { tenant, name } => {
            tx.execute(
                "DELETE FROM mtls_cas WHERE tenant = ?1 AND name = ?2",
                params![tenant, name],
            )?;
        }
        ConfigOp::SetTenantPolicy { tenant, policy } => {
            require_tenant(tx, &tenant)?;
            match policy {
                Some(policy) => tx.execute(
                    "INSERT INTO tenant_policies (tenant, policy, updated_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (tenant) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
                    params![tenant, policy, now],
                )?,
                None => tx.execute("DELETE FROM tenant_policies WHERE tenant = ?1", [&tenant])?,
            };
        }
        ConfigOp::SetZones { zones, delete } => {
            crate::zones::set_zones_tx(tx, zones, &delete, now)?;
        }
        ConfigOp::PutDeployment {
            row,
            version,
            overlaps,
        } => {
            require_tenant(tx, &row.tenant)?;
            crate::deployments::put_deployment_tx(tx, &row, &overlaps, &version)?;
        }
        ConfigOp::DeleteDeployment { tenant, name } => {
            crate::deployments::delete_deployment_tx(tx, &tenant, &name)?;
        }
        ConfigOp::AddOperatorCert { row } => {
            crate::operators::add_operator_cert_tx(tx, &row)?;
        }
        ConfigOp::RevokeOperator { name } => {
            crate::operators::revoke_operator_tx(tx, &name, now)?;
        }
        ConfigOp::SetControlPolicy { policy } => {
            match policy {
                Some(policy) => tx.execute(
                    "INSERT INTO control_policy (id, policy, updated_at) VALUES (1, ?1, ?2)
                     ON CONFLICT (id) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
                    params![policy, now],
                )?,
                None => tx.execute("DELETE FROM control_policy", [])?,
            };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_names::t;

    #[tokio::test]
    async fn every_configuration_change_bumps_the_serial_and_others_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let s0 = store.config_serial().await.unwrap();
        store.create_tenant(&t("acme"), "t0").await.unwrap();
        let s1 = store.config_serial().await.unwrap();
        assert!(s1 > s0);
        store
            .set_tenant_limits(&t("acme"), Some(5), None, None, "t1")
            .await
            .unwrap();
        let s2 = store.config_serial().await.unwrap();
        assert!(s2 > s1);
        store
            .set_control_policy("permit (principal, action, resource);", "t2")
            .await
            .unwrap();
        let s3 = store.config_serial().await.unwrap();
        assert!(s3 > s2);
        // Key-value data is not configuration.
        store
            .kv_set(&t("acme"), "b", "k", b"v".to_vec(), "function:f")
            .await
            .unwrap();
        assert_eq!(store.config_serial().await.unwrap(), s3);
        // Reopening keeps it.
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.config_serial().await.unwrap(), s3);
    }

    #[tokio::test]
    async fn an_apply_is_all_or_nothing_and_refuses_a_stale_serial() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_tenant(&t("acme"), "t0").await.unwrap();
        let s = store.config_serial().await.unwrap();
        // The second op fails (no such key): the first must not stay.
        let e = store
            .apply_config(
                Some(s),
                vec![
                    ConfigOp::SetTenantPolicy {
                        tenant: "acme".into(),
                        policy: Some("x".into()),
                    },
                    ConfigOp::RemoveKey {
                        tenant: "acme".into(),
                        key_id: "nosuch".into(),
                    },
                ],
                "t1",
            )
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::NoSuchKey { .. }), "{e}");
        assert_eq!(store.tenant_policy(&t("acme")).await.unwrap(), None);
        assert_eq!(store.config_serial().await.unwrap(), s);
        // A plan made at another serial is refused before anything changes.
        let e = store
            .apply_config(
                Some(s + 1),
                vec![ConfigOp::SetControlPolicy {
                    policy: Some("p".into()),
                }],
                "t2",
            )
            .await
            .unwrap_err();
        assert!(
            matches!(e, StoreError::StaleSerial { planned, current } if planned == s + 1 && current == s)
        );
        assert!(store.control_policy_blocking().unwrap().is_none());
        // The same change at the right serial lands, and moves the serial.
        let after = store
            .apply_config(
                Some(s),
                vec![ConfigOp::SetControlPolicy {
                    policy: Some("p".into()),
                }],
                "t3",
            )
            .await
            .unwrap();
        assert!(after > s);
        assert_eq!(
            store.control_policy_blocking().unwrap().unwrap().policy,
            "p"
        );
    }

    #[tokio::test]
    async fn zones_and_deployments_join_the_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_tenant(&t("acme"), "t0").await.unwrap();
        let s = store.config_serial().await.unwrap();
        let eq: fn(&str, &str) -> bool = |a, b| a == b;
        let put = |name: &str, route: &str| ConfigOp::PutDeployment {
            row: Box::new(crate::deployments::tests::row(name, &[route])),
            version: crate::deployments::tests::v(),
            overlaps: eq,
        };
        let zone = ConfigOp::SetZones {
            zones: vec![("pay".into(), "name = \"pay\"".into(), vec!["acme".into()])],
            delete: Vec::new(),
        };
        let jwt = ConfigOp::PutJwtIssuer {
            row: JwtIssuerRow {
                tenant: "acme".into(),
                name: "idp".into(),
                issuer: "https://idp.example".into(),
                audience: "api".into(),
                algorithms: "ES256".into(),
                leeway_secs: 30,
                jwks: "{}".into(),
                added_at: String::new(),
                require_jti: true,
                jwks_url: None,
                jwks_fetched_at: None,
                jwks_error: None,
            },
        };
        // The last function's route is the first's: the whole change rolls back,
        // the zone, the issuer and the first function with it.
        let e = store
            .apply_config(
                Some(s),
                vec![zone.clone(), jwt.clone(), put("a", "/x"), put("b", "/x")],
                "t1",
            )
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::RouteTaken { .. }), "{e}");
        assert!(store.zones().await.unwrap().is_empty());
        assert!(store.jwt_issuers(None).await.unwrap().is_empty());
        assert!(store.list_deployments().await.unwrap().is_empty());
        assert_eq!(store.config_serial().await.unwrap(), s);
        // Without the clash everything lands together, `require_jti` included.
        let after = store
            .apply_config(
                Some(s),
                vec![zone, jwt, put("a", "/x"), put("b", "/y")],
                "t2",
            )
            .await
            .unwrap();
        assert!(after > s);
        assert_eq!(store.zones().await.unwrap().len(), 1);
        let issuers = store.jwt_issuers(None).await.unwrap();
        assert!(issuers.len() == 1 && issuers[0].require_jti);
        assert_eq!(store.list_deployments().await.unwrap().len(), 2);
        // And a removal in one transaction with a failing step stays.
        let s = store.config_serial().await.unwrap();
        let e = store
            .apply_config(
                Some(s),
                vec![
                    ConfigOp::DeleteDeployment {
                        tenant: "acme".into(),
                        name: "a".into(),
                    },
                    ConfigOp::DeleteDeployment {
                        tenant: "acme".into(),
                        name: "nosuch".into(),
                    },
                ],
                "t3",
            )
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::NoSuchDeployment { .. }), "{e}");
        assert_eq!(store.list_deployments().await.unwrap().len(), 2);
    }
}
