//! Published layers: shared library components, immutable and addressed by
//! digest within their tenant, and which deployments pin which layer.
//!
//! A layer row is never updated: publishing the same digest again is
//! refused ([`StoreError::LayerExists`]), and deleting a layer a deployment
//! pins is refused ([`StoreError::LayerPinned`]) in the same transaction
//! that would delete it. [`Store::put_deployment`] checks, in its
//! transaction, that every layer it pins is still published.

use rusqlite::{params, OptionalExtension, Transaction};
use zerofn_types::TenantName;

use crate::{Store, StoreError};

/// A published layer with its bytes and signature bundle, so it can be
/// verified again whenever a deployment is composed with it.
#[derive(Clone, PartialEq, Eq)]
pub struct LayerRow {
    pub tenant: String,
    /// `sha256:<hex>` of `component`.
    pub digest: String,
    /// Who signed it, as verified at publication.
    pub signer: String,
    /// The names it exports (for listings).
    pub exports: Vec<String>,
    pub component: Vec<u8>,
    pub bundle: Vec<u8>,
    pub published_at: String,
}

impl std::fmt::Debug for LayerRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerRow")
            .field("tenant", &self.tenant)
            .field("digest", &self.digest)
            .field("component_len", &self.component.len())
            .finish_non_exhaustive()
    }
}

/// A layer without its bytes, with the deployments that pin it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerSummary {
    pub tenant: String,
    pub digest: String,
    pub signer: String,
    pub exports: Vec<String>,
    pub size: u64,
    pub published_at: String,
    /// Functions (names within the tenant) whose deployment pins it.
    pub pinned_by: Vec<String>,
}

impl Store {
    /// Store a newly published layer. Refused if the tenant does not exist
    /// or already has this digest (layers are immutable).
    pub async fn put_layer(&self, row: LayerRow) -> Result<(), StoreError> {
        self.with_conn(move |conn| {
            let tx = crate::write_tx(conn)?;
            let tenant_exists = tx
                .query_row("SELECT 1 FROM tenants WHERE name = ?1", [&row.tenant], |_| {
                    Ok(())
                })
                .optional()?
                .is_some();
            if !tenant_exists {
                return Err(StoreError::NoSuchTenant(row.tenant));
            }
            if layer_exists(&tx, &row.tenant, &row.digest)? {
                return Err(StoreError::LayerExists {
                    tenant: row.tenant,
                    digest: row.digest,
                });
            }
            tx.execute(
                "INSERT INTO layers (tenant, digest, signer, exports, component, bundle, published_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    row.tenant,
                    row.digest,
                    row.signer,
                    encode_lines(&row.exports)?,
                    row.component,
                    row.bundle,
                    row.published_at
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// A tenant's layers, oldest first, with the functions pinning each.
    pub async fn list_layers(&self, tenant: &TenantName) -> Result<Vec<LayerSummary>, StoreError> {
        let tenant = tenant.to_string();
        self.with_conn(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT digest, signer, exports, length(component), published_at FROM layers \
                 WHERE tenant = ?1 ORDER BY published_at, digest",
            )?;
            let rows = stmt.query_map([&tenant], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (digest, signer, exports, size, published_at) = row?;
                let pinned_by = pinned_by(conn, &tenant, &digest)?;
                out.push(LayerSummary {
                    tenant: tenant.clone(),
                    digest,
                    signer,
                    exports: decode_lines(&exports),
                    size: u64::try_from(size).unwrap_or_default(),
                    published_at,
                    pinned_by,
                });
            }
            Ok(out)
        })
        .await
    }

    /// The tenant's layers with these digests (those that exist).
    pub async fn layers(
        &self,
        tenant: &TenantName,
        digests: Vec<String>,
    ) -> Result<Vec<LayerRow>, StoreError> {
        let tenant = tenant.to_string();
        self.with_conn(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT signer, exports, component, bundle, published_at FROM layers \
                 WHERE tenant = ?1 AND digest = ?2",
            )?;
            let mut out = Vec::new();
            for digest in digests {
                let row = stmt
                    .query_row(params![tenant, digest], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, Vec<u8>>(2)?,
                            r.get::<_, Vec<u8>>(3)?,
                            r.get::<_, String>(4)?,
                        ))
                    })
                    .optional()?;
                if let Some((signer, exports, component, bundle, published_at)) = row {
                    out.push(LayerRow {
                        tenant: tenant.clone(),
                        digest,
                        signer,
                        exports: decode_lines(&exports),
                        component,
                        bundle,
                        published_at,
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    /// Delete a layer no deployment pins. Refused with
    /// [`StoreError::LayerPinned`] (naming the functions) otherwise.
    pub async fn delete_layer(&self, tenant: &TenantName, digest: &str) -> Result<(), StoreError> {
        let (tenant, digest) = (tenant.to_string(), digest.to_owned());
        self.with_conn(move |conn| {
            let tx = crate::write_tx(conn)?;
            if !layer_exists(&tx, &tenant, &digest)? {
                return Err(StoreError::NoSuchLayer { tenant, digest });
            }
            let functions = pinned_by(&tx, &tenant, &digest)?;
            if !functions.is_empty() {
                return Err(StoreError::LayerPinned {
                    tenant,
                    digest,
                    functions: functions.join(", "),
                });
            }
            tx.execute(
                "DELETE FROM layers WHERE tenant = ?1 AND digest = ?2",
                params![tenant, digest],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

fn layer_exists(tx: &Transaction<'_>, tenant: &str, digest: &str) -> Result<bool, StoreError> {
    Ok(tx
        .query_row(
            "SELECT 1 FROM layers WHERE tenant = ?1 AND digest = ?2",
            params![tenant, digest],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Names of the tenant's functions whose deployment pins `digest`.
fn pinned_by(
    conn: &rusqlite::Connection,
    tenant: &str,
    digest: &str,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT DISTINCT name FROM deployment_layers WHERE tenant = ?1 AND digest = ?2 ORDER BY name",
    )?;
    let names = stmt.query_map(params![tenant, digest], |r| r.get::<_, String>(0))?;
    Ok(names.collect::<Result<Vec<_>, _>>()?)
}

/// In `put_deployment`'s transaction: replace the deployment's pins,
/// refusing any digest that is not (or no longer) published.
pub(crate) fn pin_layers(
    tx: &Transaction<'_>,
    tenant: &str,
    name: &str,
    layers: &[(String, String)],
) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM deployment_layers WHERE tenant = ?1 AND name = ?2",
        params![tenant, name],
    )?;
    for (import, digest) in layers {
        if !layer_exists(tx, tenant, digest)? {
            return Err(StoreError::NoSuchLayer {
                tenant: tenant.to_string(),
                digest: digest.clone(),
            });
        }
        tx.execute(
            "INSERT INTO deployment_layers (tenant, name, import, digest) VALUES (?1, ?2, ?3, ?4)",
            params![tenant, name, import, digest],
        )?;
    }
    Ok(())
}

/// A deployment's pins, `(import, digest)` sorted by import.
pub(crate) fn pinned_layers(
    conn: &rusqlite::Connection,
    tenant: &str,
    name: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT import, digest FROM deployment_layers WHERE tenant = ?1 AND name = ?2 ORDER BY import",
    )?;
    let rows = stmt.query_map(params![tenant, name], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn encode_lines(items: &[String]) -> Result<String, StoreError> {
    if items.iter().any(|i| i.contains('\n')) {
        return Err(StoreError::Corrupt("export name contains a newline".into()));
    }
    Ok(items.join("\n"))
}

fn decode_lines(text: &str) -> Vec<String> {
    if text.is_empty() {
        return Vec::new();
    }
    text.split('\n').map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployments::{DeploymentRow, RouteOverlap};
    use crate::test_names::{f, t};

    fn layer(digest: &str) -> LayerRow {
        LayerRow {
            tenant: "acme".into(),
            digest: digest.into(),
            signer: "key sha256:k".into(),
            exports: vec!["zerofn:greet/greeter".into()],
            component: vec![0, 1, 2, 3],
            bundle: b"{}".to_vec(),
            published_at: format!("t-{digest}"),
        }
    }

    fn deployment(name: &str, layers: &[(&str, &str)]) -> DeploymentRow {
        DeploymentRow {
            tenant: "acme".into(),
            name: name.into(),
            digest: format!("sha256:{name}"),
            composed_digest: Some(format!("sha256:{name}-composed")),
            layers: layers
                .iter()
                .map(|(i, d)| ((*i).to_owned(), (*d).to_owned()))
                .collect(),
            signer: "k".into(),
            manifest: String::new(),
            routes: vec![format!("/{name}")],
            component: vec![1],
            bundle: vec![2],
            deployed_at: "t".into(),
            version: 1,
            manifest_bundle: vec![5],
            content_digest: "sha256:c1".into(),
        }
    }

    fn never() -> RouteOverlap {
        Box::new(|_: &str, _: &str| false)
    }

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_tenant(&t("acme"), "t").await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn published_layer_is_listed_and_immutable() {
        let (_dir, store) = store().await;
        store.put_layer(layer("sha256:a")).await.unwrap();
        let mut changed = layer("sha256:a");
        changed.component = vec![9, 9];
        let err = store.put_layer(changed).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::LayerExists { digest, .. } if digest == "sha256:a"),
            "{err:?}"
        );
        let rows = store
            .layers(&t("acme"), vec!["sha256:a".into(), "sha256:nope".into()])
            .await
            .unwrap();
        assert_eq!(rows, [layer("sha256:a")]);
        let listed = store.list_layers(&t("acme")).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].size, 4);
        assert_eq!(listed[0].exports, ["zerofn:greet/greeter"]);
        assert!(listed[0].pinned_by.is_empty());
        assert!(store.list_layers(&t("globex")).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn layer_of_unknown_tenant_is_refused() {
        let (_dir, store) = store().await;
        let mut row = layer("sha256:a");
        row.tenant = "globex".into();
        let err = store.put_layer(row).await.unwrap_err();
        assert!(matches!(err, StoreError::NoSuchTenant(_)), "{err:?}");
    }

    #[tokio::test]
    async fn pinned_layer_cannot_be_deleted_until_unpinned() {
        let (_dir, store) = store().await;
        store.put_layer(layer("sha256:a")).await.unwrap();
        store.put_layer(layer("sha256:b")).await.unwrap();
        store
            .put_deployment(
                deployment("hello", &[("zerofn:greet/greeter", "sha256:a")]),
                never(),
                crate::deployments::tests::v(),
            )
            .await
            .unwrap();
        let err = store
            .delete_layer(&t("acme"), "sha256:a")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::LayerPinned { functions, .. } if functions == "hello"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "layer `sha256:a` of tenant `acme` is pinned by hello; deploy those functions pinning another digest (or undeploy them) first"
        );
        assert_eq!(
            store.list_layers(&t("acme")).await.unwrap()[0].pinned_by,
            ["hello"]
        );
        // The unpinned one goes.
        store.delete_layer(&t("acme"), "sha256:b").await.unwrap();
        // Redeploying with another pin releases the old one.
        store.put_layer(layer("sha256:b")).await.unwrap();
        store
            .put_deployment(
                deployment("hello", &[("zerofn:greet/greeter", "sha256:b")]),
                never(),
                crate::deployments::tests::v(),
            )
            .await
            .unwrap();
        store.delete_layer(&t("acme"), "sha256:a").await.unwrap();
        let err = store
            .delete_layer(&t("acme"), "sha256:a")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NoSuchLayer { .. }), "{err:?}");
        // Undeploying releases the pin too.
        store
            .delete_deployment(&t("acme"), &f("hello"))
            .await
            .unwrap();
        store.delete_layer(&t("acme"), "sha256:b").await.unwrap();
    }

    #[tokio::test]
    async fn deployment_pinning_an_unpublished_layer_is_refused_and_nothing_stored() {
        let (_dir, store) = store().await;
        let err = store
            .put_deployment(
                deployment("hello", &[("zerofn:greet/greeter", "sha256:gone")]),
                never(),
                crate::deployments::tests::v(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::NoSuchLayer { digest, .. } if digest == "sha256:gone"),
            "{err:?}"
        );
        assert!(store.list_deployments().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn pins_and_composed_digest_survive_a_reload() {
        let (_dir, store) = store().await;
        store.put_layer(layer("sha256:a")).await.unwrap();
        let row = deployment("hello", &[("zerofn:greet/greeter", "sha256:a")]);
        store
            .put_deployment(row.clone(), never(), crate::deployments::tests::v())
            .await
            .unwrap();
        store
            .set_precompiled_hash(&t("acme"), &f("hello"), "sha256:hello", "cafe")
            .await
            .unwrap();
        let loaded = store.load_deployments_blocking().unwrap();
        assert_eq!(loaded, [(row, Some("cafe".to_owned()))]);
        // The code cache is keyed by the digest of what runs: the composed one.
        assert_eq!(
            store
                .precompiled_hash_for("sha256:hello-composed")
                .await
                .unwrap(),
            Some("cafe".to_owned())
        );
    }
}
