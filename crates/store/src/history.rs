//! The numbered versions of each function: every deploy (and every rollback, which is a
//! deploy of an earlier version's request) gets the next number of its function, with what
//! was deployed, who deployed it and when. The last few versions of a function keep the
//! whole request (component, bundle, manifest and attestations) so a rollback can submit it
//! to admission again; older ones keep only what listings show.
//!
//! History outlives an undeploy, like the rollback floor in `function_versions`: a function
//! deployed again continues its numbering, and an undeployed function can be rolled back.

use rusqlite::{params, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use zerofn_types::{FunctionName, TenantName};

use crate::deployments::{decode_routes, DeploymentRow};
use crate::{Store, StoreError};

/// Versions whose request is kept when the platform is not told otherwise
/// (`zerofn up --keep-versions`).
pub const DEFAULT_KEEP_VERSIONS: u32 = 5;

/// Most versions a listing returns (the newest): a function deployed without end
/// keeps a row per deploy, and one answer must stay bounded.
pub const MAX_LISTED_VERSIONS: u32 = 1000;

/// How a version came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VersionOrigin {
    /// A deploy of a submitted request.
    Deploy,
    /// `zerofn rollback --to N`: version N's request, admitted again.
    Rollback { to: u64 },
}

/// What a new version records beside the deployment row.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub origin: VersionOrigin,
    /// The audit actor who deployed it.
    pub actor: String,
    /// The attestation files submitted with the request, `(name, bytes)`.
    pub attestations: Vec<(String, Vec<u8>)>,
    /// How many versions of the function keep their request (at least 1: the new one).
    pub keep: u32,
}

/// One version of a function, without its bytes, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionSummary {
    /// The function's deploy number: 1 for its first deploy, then one more per deploy.
    pub number: u64,
    #[serde(flatten)]
    pub origin: VersionOrigin,
    pub digest: String,
    pub signer: String,
    /// The signed manifest's version (the signer's counter, which rollback protection
    /// compares), not to be confused with `number`.
    pub manifest_version: u64,
    pub routes: Vec<String>,
    pub deployed_at: String,
    pub deployed_by: String,
    /// Whether the request is still kept, so a rollback to this version is possible.
    pub kept: bool,
    /// Whether this version is what serves now.
    pub current: bool,
}

/// A kept version's request, as a rollback submits it again.
#[derive(Clone)]
pub struct KeptVersion {
    pub number: u64,
    pub digest: String,
    pub manifest: String,
    pub component: Vec<u8>,
    pub bundle: Vec<u8>,
    pub attestations: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for KeptVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptVersion")
            .field("number", &self.number)
            .field("digest", &self.digest)
            .field("component_len", &self.component.len())
            .finish_non_exhaustive()
    }
}

/// Attestations as stored: a JSON array of names and base64 bytes (a column of its own per
/// file would need a table of its own for a list that is only ever read whole).
#[derive(Serialize, Deserialize)]
struct StoredAttestation {
    name: String,
    bytes: String,
}

fn encode_attestations(files: &[(String, Vec<u8>)]) -> Result<String, StoreError> {
    use base64::Engine as _;
    let stored: Vec<StoredAttestation> = files
        .iter()
        .map(|(name, bytes)| StoredAttestation {
            name: name.clone(),
            bytes: base64::engine::general_purpose::STANDARD.encode(bytes),
        })
        .collect();
    serde_json::to_string(&stored).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode_attestations(text: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    use base64::Engine as _;
    let stored: Vec<StoredAttestation> = serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("stored attestations: {e}")))?;
    stored
        .into_iter()
        .map(|a| {
            base64::engine::general_purpose::STANDARD
                .decode(a.bytes.as_bytes())
                .map(|bytes| (a.name, bytes))
                .map_err(|e| StoreError::Corrupt(format!("stored attestation: {e}")))
        })
        .collect()
}

fn to_i64(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{n} does not fit the store")))
}

/// Records `row` as the next version of its function, inside the deploy's transaction, and
/// drops the requests of versions beyond the newest `keep`. Returns the new number.
pub(crate) fn record_version(
    tx: &Transaction<'_>,
    row: &DeploymentRow,
    routes: &str,
    version: &NewVersion,
) -> Result<u64, StoreError> {
    let last: Option<i64> = tx.query_row(
        "SELECT MAX(number) FROM deployment_history WHERE tenant = ?1 AND name = ?2",
        params![row.tenant, row.name],
        |r| r.get(0),
    )?;
    let number = last.unwrap_or(0).saturating_add(1);
    let (kind, to) = match version.origin {
        VersionOrigin::Deploy => ("deploy", None),
        VersionOrigin::Rollback { to } => ("rollback", Some(to_i64(to)?)),
    };
    tx.execute(
        "INSERT INTO deployment_history \
         (tenant, name, number, kind, rollback_to, digest, composed_digest, signer, manifest_version, routes, deployed_at, deployed_by, manifest, component, bundle, attestations) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        params![
            row.tenant,
            row.name,
            number,
            kind,
            to,
            row.digest,
            row.composed_digest,
            row.signer,
            to_i64(row.version)?,
            routes,
            row.deployed_at,
            version.actor,
            row.manifest,
            row.component,
            row.bundle,
            encode_attestations(&version.attestations)?,
        ],
    )?;
    let keep = i64::from(version.keep.max(1));
    tx.execute(
        "UPDATE deployment_history SET manifest = NULL, component = NULL, bundle = NULL, attestations = NULL, precompiled_sha256 = NULL \
         WHERE tenant = ?1 AND name = ?2 AND number <= ?3 AND component IS NOT NULL",
        params![row.tenant, row.name, number.saturating_sub(keep)],
    )?;
    u64::try_from(number).map_err(|_| StoreError::Corrupt(format!("version number {number}")))
}

/// Versions written before history existed: each deployment becomes version 1 of its
/// function, with its request (so it can be rolled back to) but no attestations, which were
/// not stored then.
pub(crate) fn migrate(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO deployment_history \
         (tenant, name, number, kind, rollback_to, digest, composed_digest, precompiled_sha256, signer, manifest_version, routes, deployed_at, deployed_by, manifest, component, bundle, attestations) \
         SELECT d.tenant, d.name, 1, 'deploy', NULL, d.digest, d.composed_digest, d.precompiled_sha256, d.signer, d.version, d.routes, d.deployed_at, '', d.manifest, d.component, d.bundle, '[]' \
         FROM deployments d WHERE NOT EXISTS \
           (SELECT 1 FROM deployment_history h WHERE h.tenant = d.tenant AND h.name = d.name)",
        [],
    )?;
    Ok(())
}

impl Store {
    /// The versions of `tenant/name`, newest first, at most [`MAX_LISTED_VERSIONS`].
    /// Empty when the function was never deployed.
    pub async fn list_versions(
        &self,
        tenant: &TenantName,
        name: &FunctionName,
    ) -> Result<Vec<VersionSummary>, StoreError> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.with_conn(move |conn| {
            // The current version is the newest one whose digest is deployed: a deploy
            // replaces the row, so only the last version can be it, unless the function was
            // undeployed since.
            let deployed: Option<String> = conn
                .query_row(
                    "SELECT digest FROM deployments WHERE tenant = ?1 AND name = ?2",
                    params![tenant, name],
                    |r| r.get(0),
                )
                .optional()?;
            let mut stmt = conn.prepare(
                "SELECT number, kind, rollback_to, digest, signer, manifest_version, routes, deployed_at, deployed_by, component IS NOT NULL \
                 FROM deployment_history WHERE tenant = ?1 AND name = ?2 ORDER BY number DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![tenant, name, MAX_LISTED_VERSIONS], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, String>(8)?,
                    r.get::<_, bool>(9)?,
                ))
            })?;
            let mut out: Vec<VersionSummary> = Vec::new();
            for row in rows {
                let (number, kind, to, digest, signer, manifest_version, routes, at, by, kept) =
                    row?;
                let origin = match (kind.as_str(), to) {
                    ("deploy", None) => VersionOrigin::Deploy,
                    ("rollback", Some(to)) => VersionOrigin::Rollback {
                        to: u64::try_from(to).unwrap_or(0),
                    },
                    _ => {
                        return Err(StoreError::Corrupt(format!(
                            "version {number} of {tenant}/{name} has kind `{kind}`"
                        )))
                    }
                };
                let current = out.is_empty() && deployed.as_deref() == Some(digest.as_str());
                out.push(VersionSummary {
                    number: u64::try_from(number).unwrap_or(0),
                    origin,
                    digest,
                    signer,
                    manifest_version: u64::try_from(manifest_version).unwrap_or(0),
                    routes: decode_routes(&routes)?,
                    deployed_at: at,
                    deployed_by: by,
                    kept,
                    current,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Version `number` of `tenant/name` with its request, for a rollback.
    pub async fn kept_version(
        &self,
        tenant: &TenantName,
        name: &FunctionName,
        number: u64,
    ) -> Result<KeptVersion, StoreError> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.with_conn(move |conn| {
            let found = conn
                .query_row(
                    "SELECT digest, manifest, component, bundle, attestations FROM deployment_history \
                     WHERE tenant = ?1 AND name = ?2 AND number = ?3",
                    params![tenant, name, to_i64(number)?],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, Option<String>>(1)?,
                            r.get::<_, Option<Vec<u8>>>(2)?,
                            r.get::<_, Option<Vec<u8>>>(3)?,
                            r.get::<_, Option<String>>(4)?,
                        ))
                    },
                )
                .optional()?;
            let Some((digest, manifest, component, bundle, attestations)) = found else {
                return Err(StoreError::NoSuchVersion {
                    tenant,
                    name,
                    number,
                });
            };
            match (manifest, component, bundle, attestations) {
                (Some(manifest), Some(component), Some(bundle), Some(attestations)) => {
                    Ok(KeptVersion {
                        number,
                        digest,
                        manifest,
                        component,
                        bundle,
                        attestations: decode_attestations(&attestations)?,
                    })
                }
                _ => Err(StoreError::VersionNotKept {
                    tenant,
                    name,
                    number,
                }),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployments::tests::row;
    use crate::deployments::RouteOverlap;
    use crate::test_names::{f, t};

    fn eq() -> RouteOverlap {
        Box::new(|a: &str, b: &str| a == b)
    }

    fn new_version(origin: VersionOrigin, keep: u32) -> NewVersion {
        NewVersion {
            origin,
            actor: "alice".into(),
            attestations: vec![("intent.json".into(), b"{\"a\":1}".to_vec())],
            keep,
        }
    }

    #[tokio::test]
    async fn every_deploy_is_numbered_and_only_the_newest_keep_their_request() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_tenant(&t("acme"), "t").await.unwrap();
        for i in 1..=4u8 {
            let mut r = row("a", &["/a"]);
            r.digest = format!("sha256:v{i}");
            r.component = vec![i; 3];
            let n = store
                .put_deployment(r, eq(), new_version(VersionOrigin::Deploy, 2))
                .await
                .unwrap();
            assert_eq!(n, u64::from(i));
        }
        let versions = store.list_versions(&t("acme"), &f("a")).await.unwrap();
        let numbers: Vec<(u64, bool, bool)> = versions
            .iter()
            .map(|v| (v.number, v.kept, v.current))
            .collect();
        assert_eq!(
            numbers,
            vec![
                (4, true, true),
                (3, true, false),
                (2, false, false),
                (1, false, false)
            ]
        );
        assert_eq!(versions[0].deployed_by, "alice");
        let kept = store.kept_version(&t("acme"), &f("a"), 3).await.unwrap();
        assert_eq!(
            (kept.digest.as_str(), kept.component.as_slice()),
            ("sha256:v3", &[3u8, 3, 3][..])
        );
        assert_eq!(
            kept.attestations,
            vec![("intent.json".to_owned(), b"{\"a\":1}".to_vec())]
        );
        assert!(matches!(
            store.kept_version(&t("acme"), &f("a"), 2).await,
            Err(StoreError::VersionNotKept { number: 2, .. })
        ));
        assert!(matches!(
            store.kept_version(&t("acme"), &f("a"), 9).await,
            Err(StoreError::NoSuchVersion { number: 9, .. })
        ));
    }

    #[tokio::test]
    async fn history_outlives_an_undeploy_and_a_refused_deploy_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_tenant(&t("acme"), "t").await.unwrap();
        store
            .put_deployment(
                row("a", &["/a"]),
                eq(),
                new_version(VersionOrigin::Deploy, 5),
            )
            .await
            .unwrap();
        // A route taken by `a` refuses `b`'s deploy: no version of `b` exists.
        assert!(store
            .put_deployment(
                row("b", &["/a"]),
                eq(),
                new_version(VersionOrigin::Deploy, 5)
            )
            .await
            .is_err());
        assert!(store
            .list_versions(&t("acme"), &f("b"))
            .await
            .unwrap()
            .is_empty());
        store.delete_deployment(&t("acme"), &f("a")).await.unwrap();
        let after = store.list_versions(&t("acme"), &f("a")).await.unwrap();
        assert_eq!(after.len(), 1);
        assert!(
            !after[0].current,
            "an undeployed function has no current version"
        );
        let n = store
            .put_deployment(
                row("a", &["/a"]),
                eq(),
                new_version(VersionOrigin::Rollback { to: 1 }, 5),
            )
            .await
            .unwrap();
        assert_eq!(n, 2);
        let v = store.list_versions(&t("acme"), &f("a")).await.unwrap();
        assert_eq!(v[0].origin, VersionOrigin::Rollback { to: 1 });
        assert!(v[0].current);
    }

    #[tokio::test]
    async fn a_listing_returns_at_most_the_newest_versions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_tenant(&t("acme"), "t").await.unwrap();
        let extra = 3u64;
        for _ in 0..u64::from(MAX_LISTED_VERSIONS) + extra {
            store
                .put_deployment(
                    row("a", &["/a"]),
                    eq(),
                    new_version(VersionOrigin::Deploy, 1),
                )
                .await
                .unwrap();
        }
        let listed = store.list_versions(&t("acme"), &f("a")).await.unwrap();
        assert_eq!(listed.len(), MAX_LISTED_VERSIONS as usize);
        assert_eq!(listed[0].number, u64::from(MAX_LISTED_VERSIONS) + extra);
        assert_eq!(listed.last().unwrap().number, extra + 1);
    }

    #[tokio::test]
    async fn deployments_from_before_history_become_version_one_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.create_tenant(&t("acme"), "t").await.unwrap();
            store
                .put_deployment(row("a", &["/a"]), eq(), crate::deployments::tests::v())
                .await
                .unwrap();
            // As an older platform left it: the deployment without any history.
            store
                .with_conn(|c| Ok(c.execute("DELETE FROM deployment_history", [])?))
                .await
                .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let v = store.list_versions(&t("acme"), &f("a")).await.unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!((v[0].number, v[0].kept, v[0].current), (1, true, true));
        let kept = store.kept_version(&t("acme"), &f("a"), 1).await.unwrap();
        assert!(kept.attestations.is_empty());
    }
}
