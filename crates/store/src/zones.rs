//! Trust zones: each zone's document as submitted (`zerofn zone set`), and which zone
//! each zoned tenant is in. Stored as given: the server parses and checks the whole set
//! of zones (`zerofn-manifest`'s `ZoneSet`) before anything is written; the
//! `zone_tenants` primary key keeps a tenant in at most one zone even so.

use rusqlite::params;

use crate::{Store, StoreError};

/// The tables of this module, created with the rest of the schema (new tables: an older
/// database gains them at open, which is all the migration zones need).
pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS zones (
    name        TEXT PRIMARY KEY,
    document    TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS zone_tenants (
    tenant      TEXT PRIMARY KEY,
    zone        TEXT NOT NULL REFERENCES zones(name) ON DELETE CASCADE
) STRICT;
"#;

/// One stored zone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ZoneRow {
    pub name: String,
    /// The TOML document as submitted.
    pub document: String,
    pub updated_at: String,
}

impl Store {
    /// Every zone, by name.
    pub async fn zones(&self) -> Result<Vec<ZoneRow>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt =
                conn.prepare("SELECT name, document, updated_at FROM zones ORDER BY name")?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(ZoneRow {
                        name: r.get(0)?,
                        document: r.get(1)?,
                        updated_at: r.get(2)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// Creates or replaces zone `name` with `document` grouping `tenants`, in one
    /// transaction.
    pub async fn set_zone(
        &self,
        name: &str,
        document: &str,
        tenants: Vec<String>,
        now: &str,
    ) -> Result<(), StoreError> {
        self.set_zones(
            vec![(name.to_owned(), document.to_owned(), tenants)],
            Vec::new(),
            now,
        )
        .await
    }

    /// Creates or replaces each zone of `zones` (name, document, tenants) and deletes the
    /// zones named in `delete`, in one transaction: all or nothing.
    pub async fn set_zones(
        &self,
        zones: Vec<(String, String, Vec<String>)>,
        delete: Vec<String>,
        now: &str,
    ) -> Result<(), StoreError> {
        let now = now.to_owned();
        self.with_conn(move |conn| {
            let tx = crate::write_tx(conn)?;
            set_zones_tx(&tx, zones, &delete, &now)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Deletes zone `name` (its tenants are then in no zone).
    pub async fn delete_zone(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.with_conn(move |conn| {
            let tx = crate::write_tx(conn)?;
            tx.execute("DELETE FROM zone_tenants WHERE zone = ?1", params![name])?;
            let n = tx.execute("DELETE FROM zones WHERE name = ?1", params![name])?;
            if n == 0 {
                return Err(StoreError::NoSuchZone(name));
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

/// [`Store::set_zones`] inside a caller's transaction (also a step of
/// [`Store::apply_config`]).
pub(crate) fn set_zones_tx(
    tx: &rusqlite::Transaction<'_>,
    zones: Vec<(String, String, Vec<String>)>,
    delete: &[String],
    now: &str,
) -> Result<(), StoreError> {
    // Deletions and the tenants of replaced zones go first, so a tenant moving
    // between zones in one change does not meet its old row.
    for name in delete.iter().chain(zones.iter().map(|(n, _, _)| n)) {
        tx.execute("DELETE FROM zone_tenants WHERE zone = ?1", params![name])?;
    }
    for name in delete {
        tx.execute("DELETE FROM zones WHERE name = ?1", params![name])?;
    }
    for (name, document, tenants) in zones {
        tx.execute(
            "INSERT INTO zones (name, document, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at",
            params![name, document, now],
        )?;
        for tenant in tenants {
            tx.execute(
                "INSERT INTO zone_tenants (tenant, zone) VALUES (?1, ?2)",
                params![tenant, name],
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn zones_are_replaced_whole_and_a_tenant_is_in_one_zone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .set_zone("a", "name = \"a\"", vec!["shop".into()], "t1")
            .await
            .unwrap();
        store
            .set_zone("b", "name = \"b\"", vec!["pay".into()], "t1")
            .await
            .unwrap();
        // The key refuses a tenant in a second zone, and the failed write changes nothing.
        assert!(store
            .set_zone("b", "name = \"b\" # 2", vec!["shop".into()], "t2")
            .await
            .is_err());
        let rows = store.zones().await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].document, "name = \"b\"");
        store
            .set_zone("a", "name = \"a\" # 2", vec![], "t3")
            .await
            .unwrap();
        store
            .set_zone("b", "name = \"b\" # 2", vec!["shop".into()], "t3")
            .await
            .unwrap();
        // A tenant moves from one zone to another in one change, and a zone goes.
        store
            .set_zones(
                vec![
                    ("a".into(), "name = \"a\" # 3".into(), vec!["shop".into()]),
                    ("b".into(), "name = \"b\" # 3".into(), vec![]),
                ],
                Vec::new(),
                "t3",
            )
            .await
            .unwrap();
        store
            .set_zones(
                vec![("b".into(), "name = \"b\" # 4".into(), vec!["shop".into()])],
                vec!["a".into()],
                "t3",
            )
            .await
            .unwrap();
        assert_eq!(store.zones().await.unwrap().len(), 1);
        store
            .set_zone("a", "name = \"a\" # 5", vec![], "t3")
            .await
            .unwrap();
        store.delete_zone("a").await.unwrap();
        assert!(matches!(
            store.delete_zone("a").await,
            Err(StoreError::NoSuchZone(_))
        ));
        let rows = store.zones().await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].updated_at, "t3");
    }
}
