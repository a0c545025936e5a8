//! Deployed functions: the admitted component bytes, their bundle and the
//! manifest, keyed by tenant and function name.

use rusqlite::{params, OptionalExtension};
use zerofn_types::{FunctionName, TenantName};

use crate::{Store, StoreError};

/// A full deployment, including the component and its signature bundle,
/// so it can be admitted again after a restart.
#[derive(Clone, PartialEq, Eq)]
pub struct DeploymentRow {
    pub tenant: String,
    pub name: String,
    /// The sha256 of the component the deployer signed (its identity).
    pub digest: String,
    /// For a function with layers, the sha256 of the composed component
    /// that runs; `None` without layers.
    pub composed_digest: Option<String>,
    /// Layers pinned, `(import, layer digest)` sorted by import. The row
    /// keeps the function's own component; restore composes it again with
    /// these layers (which cannot be deleted while pinned).
    pub layers: Vec<(String, String)>,
    pub signer: String,
    /// The manifest as the deployer sent it (TOML text).
    pub manifest: String,
    pub routes: Vec<String>,
    pub component: Vec<u8>,
    pub bundle: Vec<u8>,
    pub deployed_at: String,
    /// The signed manifest's version (0 for a deployment stored before manifests were
    /// signed).
    pub version: u64,
    /// The file that carried the signed manifest statement (empty before manifests were
    /// signed), verified again at start-up.
    pub manifest_bundle: Vec<u8>,
    /// What the version stands for (see `zerofn_admission::SignedIntent`), also recorded
    /// with the function's highest version (empty before manifests were signed).
    pub content_digest: String,
}

impl std::fmt::Debug for DeploymentRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentRow")
            .field("tenant", &self.tenant)
            .field("name", &self.name)
            .field("digest", &self.digest)
            .field("layers", &self.layers)
            .field("version", &self.version)
            .field("component_len", &self.component.len())
            .finish_non_exhaustive()
    }
}

/// A deployment without its bytes, for listings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeploymentSummary {
    pub tenant: String,
    pub name: String,
    pub digest: String,
    pub signer: String,
    pub routes: Vec<String>,
    pub deployed_at: String,
    /// The signed manifest's version (0 before manifests were signed).
    pub version: u64,
}

/// The highest signed manifest version recorded for a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRecord {
    pub highest: u64,
    pub content_digest: String,
}

/// Decides whether two route patterns overlap; supplied by the caller,
/// which owns route semantics.
pub type RouteOverlap = Box<dyn Fn(&str, &str) -> bool + Send>;

impl Store {
    /// Insert or replace a deployment in one transaction, refusing it if
    /// any of its routes overlaps a route of another function of the same
    /// tenant. Other tenants' routes may overlap: each tenant's functions
    /// serve only the paths its route space owns.
    ///
    /// The deployment becomes the next numbered version of its function, in the same
    /// transaction (see `history.rs`); the new number is returned.
    pub async fn put_deployment(
        &self,
        row: DeploymentRow,
        overlaps: RouteOverlap,
        new_version: crate::NewVersion,
    ) -> Result<u64, StoreError> {
        self.with_conn(move |conn| {
            let tx = crate::write_tx(conn)?;
            let number = put_deployment_tx(&tx, &row, &*overlaps, &new_version)?;
            tx.commit()?;
            Ok(number)
        })
        .await
    }

    /// The highest signed manifest version ever deployed for `tenant/name` (kept after an
    /// undeploy), if any.
    pub async fn version_record(
        &self,
        tenant: &TenantName,
        name: &FunctionName,
    ) -> Result<Option<VersionRecord>, StoreError> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.with_conn(move |conn| {
            let found = conn
                .query_row(
                    "SELECT highest, content_digest FROM function_versions WHERE tenant = ?1 AND name = ?2",
                    params![tenant, name],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
                )
                .optional()?;
            Ok(found.map(|(highest, content_digest)| VersionRecord {
                highest: u64::try_from(highest).unwrap_or(0),
                content_digest,
            }))
        })
        .await
    }

    /// Remove a deployment.
    pub async fn delete_deployment(
        &self,
        tenant: &TenantName,
        name: &FunctionName,
    ) -> Result<(), StoreError> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.with_conn(move |conn| {
            let tx = crate::write_tx(conn)?;
            delete_deployment_tx(&tx, &tenant, &name)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Listing of all deployments, ordered by tenant and name.
    pub async fn list_deployments(&self) -> Result<Vec<DeploymentSummary>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT tenant, name, digest, signer, routes, deployed_at, version FROM deployments ORDER BY tenant, name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (tenant, name, digest, signer, routes, deployed_at, version) = row?;
                out.push(DeploymentSummary {
                    tenant,
                    name,
                    digest,
                    signer,
                    routes: decode_routes(&routes)?,
                    deployed_at,
                    version: u64::try_from(version).unwrap_or(0),
                });
            }
            Ok(out)
        })
        .await
    }

    /// Every deployment with its bytes and the recorded hash of its
    /// precompiled code, for start-up.
    pub fn load_deployments_blocking(
        &self,
    ) -> Result<Vec<(DeploymentRow, Option<String>)>, StoreError> {
        self.with_conn_blocking(|conn| {
            let mut stmt = conn.prepare(
                "SELECT tenant, name, digest, signer, manifest, routes, component, bundle, deployed_at, precompiled_sha256, composed_digest, version, manifest_bundle, content_digest \
                 FROM deployments ORDER BY tenant, name",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    DeploymentRow {
                        tenant: r.get(0)?,
                        name: r.get(1)?,
                        digest: r.get(2)?,
                        composed_digest: r.get(10)?,
                        layers: Vec::new(),
                        signer: r.get(3)?,
                        manifest: r.get(4)?,
                        routes: Vec::new(),
                        component: r.get(6)?,
                        bundle: r.get(7)?,
                        deployed_at: r.get(8)?,
                        version: u64::try_from(r.get::<_, i64>(11)?).unwrap_or(0),
                        manifest_bundle: r.get::<_, Option<Vec<u8>>>(12)?.unwrap_or_default(),
                        content_digest: r.get(13)?,
                    },
                    r.get::<_, String>(5)?,
                    r.get::<_, Option<String>>(9)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (mut row, routes, precompiled) = row?;
                row.routes = decode_routes(&routes)?;
                out.push((row, precompiled));
            }
            drop(stmt);
            for (row, _) in &mut out {
                row.layers = crate::layers::pinned_layers(conn, &row.tenant, &row.name)?;
            }
            Ok(out)
        })
    }

    /// Record the sha256 of the precompiled code produced for a deployment,
    /// so the code loaded from disk after a restart can be checked.
    pub async fn set_precompiled_hash(
        &self,
        tenant: &TenantName,
        name: &FunctionName,
        digest: &str,
        precompiled_sha256: &str,
    ) -> Result<(), StoreError> {
        let (tenant, name, digest, hash) = (
            tenant.to_string(),
            name.to_string(),
            digest.to_owned(),
            precompiled_sha256.to_owned(),
        );
        self.with_conn(move |conn| {
            let tx = crate::write_tx(conn)?;
            tx.execute(
                "UPDATE deployments SET precompiled_sha256 = ?4 WHERE tenant = ?1 AND name = ?2 AND digest = ?3",
                params![tenant, name, digest, hash],
            )?;
            // Kept versions vouch for their code too, so a rollback loads it instead of
            // compiling (a version whose request was dropped vouches for nothing).
            tx.execute(
                "UPDATE deployment_history SET precompiled_sha256 = ?4 \
                 WHERE tenant = ?1 AND name = ?2 AND digest = ?3 AND component IS NOT NULL",
                params![tenant, name, digest, hash],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The recorded hash of precompiled code for the digest of a component
    /// that runs (the composed one for a function with layers), from any
    /// deployment of it (the code cache is content-addressed).
    pub async fn precompiled_hash_for(&self, digest: &str) -> Result<Option<String>, StoreError> {
        let digest = digest.to_owned();
        self.with_conn(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT precompiled_sha256 FROM deployments \
                     WHERE COALESCE(composed_digest, digest) = ?1 AND precompiled_sha256 IS NOT NULL \
                     UNION ALL SELECT precompiled_sha256 FROM deployment_history \
                     WHERE COALESCE(composed_digest, digest) = ?1 AND precompiled_sha256 IS NOT NULL LIMIT 1",
                    [digest],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }

    /// The digest currently deployed under a name, if any.
    pub async fn deployed_digest(
        &self,
        tenant: &TenantName,
        name: &FunctionName,
    ) -> Result<Option<String>, StoreError> {
        self.deployment_column(tenant, name, "digest").await
    }

    /// The manifest (TOML text) `tenant/name` is deployed with, if it is deployed.
    pub async fn deployed_manifest(
        &self,
        tenant: &TenantName,
        name: &FunctionName,
    ) -> Result<Option<String>, StoreError> {
        self.deployment_column(tenant, name, "manifest").await
    }

    /// One text column of the deployment `tenant/name`; `column` is a constant of this
    /// module, never input, so formatting it into the statement is safe.
    async fn deployment_column(
        &self,
        tenant: &TenantName,
        name: &FunctionName,
        column: &'static str,
    ) -> Result<Option<String>, StoreError> {
        let (tenant, name) = (tenant.as_str().to_owned(), name.as_str().to_owned());
        self.with_conn(move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {column} FROM deployments WHERE tenant = ?1 AND name = ?2"),
                    params![tenant, name],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
    }
}

fn encode_routes(routes: &[String]) -> Result<String, StoreError> {
    // Routes never contain a newline (the manifest parser refuses them);
    // refuse here too rather than corrupt the encoding.
    if routes.iter().any(|r| r.contains('\n')) {
        return Err(StoreError::Corrupt("route contains a newline".into()));
    }
    Ok(routes.join("\n"))
}

pub(crate) fn decode_routes(text: &str) -> Result<Vec<String>, StoreError> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    Ok(text.split('\n').map(str::to_owned).collect())
}

/// [`Store::put_deployment`] inside a caller's transaction (also a step of
/// [`Store::apply_config`]).
pub(crate) fn put_deployment_tx(
    tx: &rusqlite::Transaction<'_>,
    row: &DeploymentRow,
    overlaps: &dyn Fn(&str, &str) -> bool,
    new_version: &crate::NewVersion,
) -> Result<u64, StoreError> {
    {
        let mut stmt = tx.prepare(
            "SELECT tenant, name, routes FROM deployments WHERE tenant = ?1 AND name != ?2",
        )?;
        let others = stmt.query_map(params![row.tenant, row.name], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for other in others {
            let (tenant, name, routes) = other?;
            for theirs in decode_routes(&routes)? {
                if let Some(ours) = row.routes.iter().find(|ours| overlaps(ours, &theirs)) {
                    return Err(StoreError::RouteTaken {
                        route: ours.clone(),
                        owner: format!("{tenant}/{name}"),
                    });
                }
            }
        }
    }
    let routes = encode_routes(&row.routes)?;
    crate::layers::pin_layers(tx, &row.tenant, &row.name, &row.layers)?;
    let version = i64::try_from(row.version).map_err(|_| {
        StoreError::Corrupt(format!("version {} does not fit the store", row.version))
    })?;
    // Rollback protection outlives the deployment: only ever raised (an allowed
    // rollback deploys a lower version without lowering the highest).
    tx.execute(
            "INSERT INTO function_versions (tenant, name, highest, content_digest, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (tenant, name) DO UPDATE SET \
               highest = excluded.highest, content_digest = excluded.content_digest, updated_at = excluded.updated_at \
             WHERE excluded.highest >= function_versions.highest",
            params![row.tenant, row.name, version, row.content_digest, row.deployed_at],
        )?;
    tx.execute(
            "INSERT OR REPLACE INTO deployments \
             (tenant, name, digest, signer, manifest, routes, component, bundle, precompiled_sha256, deployed_at, composed_digest, version, manifest_bundle, content_digest) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, ?9, ?10, ?11, ?12, ?13)",
            params![
                row.tenant,
                row.name,
                row.digest,
                row.signer,
                row.manifest,
                routes,
                row.component,
                row.bundle,
                row.deployed_at,
                row.composed_digest,
                version,
                row.manifest_bundle,
                row.content_digest
            ],
        )?;
    crate::history::record_version(tx, row, &routes, new_version)
}

/// [`Store::delete_deployment`] inside a caller's transaction (also a step of
/// [`Store::apply_config`]).
pub(crate) fn delete_deployment_tx(
    tx: &rusqlite::Transaction<'_>,
    tenant: &str,
    name: &str,
) -> Result<(), StoreError> {
    let n = tx.execute(
        "DELETE FROM deployments WHERE tenant = ?1 AND name = ?2",
        params![tenant, name],
    )?;
    if n == 0 {
        return Err(StoreError::NoSuchDeployment {
            tenant: tenant.to_owned(),
            name: name.to_owned(),
        });
    }
    tx.execute(
        "DELETE FROM deployment_layers WHERE tenant = ?1 AND name = ?2",
        params![tenant, name],
    )?;
    // A function deployed again later starts its schedules afresh: a `missed =
    // "run-once"` must not catch up on runs from before it was removed.
    tx.execute(
        "DELETE FROM schedule_runs WHERE tenant = ?1 AND function = ?2",
        params![tenant, name],
    )?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::test_names::{f, t};

    /// A version record for tests that are not about history.
    pub(crate) fn v() -> crate::NewVersion {
        crate::NewVersion {
            origin: crate::VersionOrigin::Deploy,
            actor: "test".into(),
            attestations: Vec::new(),
            keep: crate::DEFAULT_KEEP_VERSIONS,
        }
    }

    pub(crate) fn row(name: &str, routes: &[&str]) -> DeploymentRow {
        DeploymentRow {
            tenant: "acme".into(),
            name: name.into(),
            digest: format!("sha256:{name}"),
            composed_digest: None,
            layers: Vec::new(),
            signer: "k".into(),
            manifest: String::new(),
            routes: routes.iter().map(|r| r.to_string()).collect(),
            component: vec![1, 2, 3],
            bundle: vec![4],
            deployed_at: "t".into(),
            version: 1,
            manifest_bundle: vec![5],
            content_digest: "sha256:c1".into(),
        }
    }

    #[tokio::test]
    async fn route_owned_by_another_function_is_refused_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_tenant(&t("acme"), "t").await.unwrap();
        let eq: fn() -> RouteOverlap = || Box::new(|a: &str, b: &str| a == b);
        store
            .put_deployment(
                row("a", &["/a", "/x"]),
                eq(),
                crate::deployments::tests::v(),
            )
            .await
            .unwrap();
        let err = store
            .put_deployment(
                row("b", &["/b", "/x"]),
                eq(),
                crate::deployments::tests::v(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::RouteTaken { ref route, ref owner } if route == "/x" && owner == "acme/a")
        );
        assert_eq!(store.list_deployments().await.unwrap().len(), 1);
        // Another tenant's function may overlap (route spaces separate them).
        store.create_tenant(&t("other"), "t").await.unwrap();
        let mut theirs = row("b", &["/x"]);
        theirs.tenant = "other".into();
        store
            .put_deployment(theirs, eq(), crate::deployments::tests::v())
            .await
            .unwrap();
        store.delete_deployment(&t("other"), &f("b")).await.unwrap();
        // Redeploying the owner with the same route is fine.
        store
            .put_deployment(row("a", &["/x"]), eq(), crate::deployments::tests::v())
            .await
            .unwrap();
        let loaded = store.load_deployments_blocking().unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].0.routes, ["/x"]);
        assert_eq!(loaded[0].0.component, [1, 2, 3]);
        store
            .set_precompiled_hash(&t("acme"), &f("a"), "sha256:a", "h")
            .await
            .unwrap();
        assert_eq!(
            store.load_deployments_blocking().unwrap()[0].1.as_deref(),
            Some("h")
        );
        store.delete_deployment(&t("acme"), &f("a")).await.unwrap();
        assert!(matches!(
            store.delete_deployment(&t("acme"), &f("a")).await,
            Err(StoreError::NoSuchDeployment { .. })
        ));
    }

    #[tokio::test]
    async fn the_highest_version_outlives_the_deployment_and_only_rises() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_tenant(&t("acme"), "t").await.unwrap();
        let eq: fn() -> RouteOverlap = || Box::new(|a: &str, b: &str| a == b);
        assert_eq!(
            store.version_record(&t("acme"), &f("a")).await.unwrap(),
            None
        );
        let at = |version: u64, content: &str| {
            let mut r = row("a", &["/a"]);
            r.version = version;
            r.content_digest = content.to_owned();
            r
        };
        store
            .put_deployment(at(3, "sha256:c3"), eq(), crate::deployments::tests::v())
            .await
            .unwrap();
        // An allowed rollback deploys version 2 without lowering the highest.
        store
            .put_deployment(at(2, "sha256:c2"), eq(), crate::deployments::tests::v())
            .await
            .unwrap();
        let record = store
            .version_record(&t("acme"), &f("a"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (record.highest, record.content_digest.as_str()),
            (3, "sha256:c3")
        );
        assert_eq!(store.list_deployments().await.unwrap()[0].version, 2);
        let loaded = store.load_deployments_blocking().unwrap();
        assert_eq!(
            (loaded[0].0.version, loaded[0].0.manifest_bundle.as_slice()),
            (2, &[5u8][..])
        );
        store.delete_deployment(&t("acme"), &f("a")).await.unwrap();
        let record = store
            .version_record(&t("acme"), &f("a"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.highest, 3);
        store
            .put_deployment(at(4, "sha256:c4"), eq(), crate::deployments::tests::v())
            .await
            .unwrap();
        let record = store
            .version_record(&t("acme"), &f("a"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (record.highest, record.content_digest.as_str()),
            (4, "sha256:c4")
        );
    }
}
