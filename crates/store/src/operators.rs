//! Operators' client certificates and the platform's control policy.
//!
//! One row per certificate issued to an operator (by serial, so that renewing a name adds a
//! row and removing it revokes every row), and at most one stored Cedar policy text for
//! the control API. Stored as given: the server issues the certificates and validates the
//! policy before either is written; this module only keeps them.

use rusqlite::{params, OptionalExtension};

use crate::{Store, StoreError};

/// The tables of this module, created with the rest of the schema.
pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS operators (
    serial      TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    not_after   TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS operators_by_name ON operators (name);
CREATE TABLE IF NOT EXISTS control_policy (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    policy      TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;
"#;

/// One certificate issued to an operator.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OperatorCertRow {
    pub name: String,
    /// Lowercase hex serial number.
    pub serial: String,
    /// RFC 3339.
    pub not_after: String,
    pub created_at: String,
    /// When it was revoked (`zerofn operator remove`); `None` while in force.
    pub revoked_at: Option<String>,
    /// The operator's public key (PEM) the certificate is for; empty for a certificate
    /// issued before keys were kept.
    #[serde(skip)]
    pub public_key_pem: String,
}

/// Columns added after the table was first created.
pub(crate) fn migrate(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    let has_key = conn
        .prepare("SELECT 1 FROM pragma_table_info('operators') WHERE name = 'public_key_pem'")?
        .exists([])?;
    if !has_key {
        conn.execute_batch(
            "ALTER TABLE operators ADD COLUMN public_key_pem TEXT NOT NULL DEFAULT ''",
        )?;
    }
    Ok(())
}

/// Record a certificate issued to an operator, inside a caller's transaction.
pub(crate) fn add_operator_cert_tx(
    conn: &rusqlite::Connection,
    row: &OperatorCertRow,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO operators (serial, name, not_after, created_at, revoked_at, public_key_pem) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![row.serial, row.name, row.not_after, row.created_at, row.revoked_at, row.public_key_pem],
    )?;
    Ok(())
}

/// Revoke every certificate of operator `name` not yet revoked, inside a caller's
/// transaction; returns their serials. An operator with no certificate at all is
/// [`StoreError::NoSuchOperator`].
pub(crate) fn revoke_operator_tx(
    tx: &rusqlite::Transaction<'_>,
    name: &str,
    now: &str,
) -> Result<Vec<String>, StoreError> {
    let known: bool = tx
        .prepare("SELECT 1 FROM operators WHERE name = ?1")?
        .exists([name])?;
    if !known {
        return Err(StoreError::NoSuchOperator(name.to_owned()));
    }
    let serials = {
        let mut stmt = tx.prepare(
            "SELECT serial FROM operators WHERE name = ?1 AND revoked_at IS NULL ORDER BY serial",
        )?;
        let rows = stmt
            .query_map([name], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        rows
    };
    tx.execute(
        "UPDATE operators SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
        params![name, now],
    )?;
    Ok(serials)
}

/// The stored control policy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ControlPolicyRow {
    pub policy: String,
    pub updated_at: String,
}

impl Store {
    /// Record a certificate issued to an operator.
    pub async fn add_operator_cert(&self, row: OperatorCertRow) -> Result<(), StoreError> {
        self.with_conn(move |conn| add_operator_cert_tx(conn, &row))
            .await
    }

    /// Every operator certificate, by name then issue time.
    pub async fn list_operator_certs(&self) -> Result<Vec<OperatorCertRow>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT name, serial, not_after, created_at, revoked_at, public_key_pem FROM operators ORDER BY name, created_at, serial",
            )?;
            let rows = stmt
                .query_map([], row_of)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    /// The certificate with this serial, if one was issued to an operator.
    pub async fn operator_cert(&self, serial: &str) -> Result<Option<OperatorCertRow>, StoreError> {
        let serial = serial.to_owned();
        self.with_conn(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT name, serial, not_after, created_at, revoked_at, public_key_pem FROM operators WHERE serial = ?1",
                    [&serial],
                    row_of,
                )
                .optional()?)
        })
        .await
    }

    /// Revoke every certificate of operator `name` not yet revoked; returns their serials.
    /// An operator with no certificate at all is [`StoreError::NoSuchOperator`].
    pub async fn revoke_operator(&self, name: &str, now: &str) -> Result<Vec<String>, StoreError> {
        let (name, now) = (name.to_owned(), now.to_owned());
        self.with_conn(move |conn| {
            let tx = crate::write_tx(conn)?;
            let serials = revoke_operator_tx(&tx, &name, &now)?;
            tx.commit()?;
            Ok(serials)
        })
        .await
    }

    /// Serials of every revoked operator certificate (loaded into the CA's revocation list
    /// at start-up).
    pub fn revoked_operator_serials_blocking(&self) -> Result<Vec<String>, StoreError> {
        self.with_conn_blocking(|conn| {
            let mut stmt = conn.prepare(
                "SELECT serial FROM operators WHERE revoked_at IS NOT NULL ORDER BY serial",
            )?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    /// The stored control policy, if one was set.
    pub fn control_policy_blocking(&self) -> Result<Option<ControlPolicyRow>, StoreError> {
        self.with_conn_blocking(|conn| {
            Ok(conn
                .query_row(
                    "SELECT policy, updated_at FROM control_policy WHERE id = 1",
                    [],
                    |r| {
                        Ok(ControlPolicyRow {
                            policy: r.get(0)?,
                            updated_at: r.get(1)?,
                        })
                    },
                )
                .optional()?)
        })
    }

    /// Replace the control policy text.
    pub async fn set_control_policy(&self, policy: &str, now: &str) -> Result<(), StoreError> {
        let (policy, now) = (policy.to_owned(), now.to_owned());
        self.with_conn(move |conn| {
            conn.execute(
                "INSERT INTO control_policy (id, policy, updated_at) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at",
                params![policy, now],
            )?;
            Ok(())
        })
        .await
    }
}

fn row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<OperatorCertRow> {
    Ok(OperatorCertRow {
        name: r.get(0)?,
        serial: r.get(1)?,
        not_after: r.get(2)?,
        created_at: r.get(3)?,
        revoked_at: r.get(4)?,
        public_key_pem: r.get(5)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(name: &str, serial: &str) -> OperatorCertRow {
        OperatorCertRow {
            name: name.into(),
            serial: serial.into(),
            not_after: "2030-01-01T00:00:00Z".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            revoked_at: None,
            public_key_pem: format!("key of {name}"),
        }
    }

    #[tokio::test]
    async fn operators_are_recorded_revoked_by_name_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.add_operator_cert(cert("alice", "0a")).await.unwrap();
            store.add_operator_cert(cert("alice", "0b")).await.unwrap();
            store.add_operator_cert(cert("bob", "0c")).await.unwrap();
            assert!(store.add_operator_cert(cert("eve", "0a")).await.is_err());
            let revoked = store.revoke_operator("alice", "t1").await.unwrap();
            assert_eq!(revoked, ["0a", "0b"]);
            assert!(store
                .revoke_operator("alice", "t2")
                .await
                .unwrap()
                .is_empty());
            assert!(matches!(
                store.revoke_operator("nobody", "t2").await,
                Err(StoreError::NoSuchOperator(_))
            ));
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.revoked_operator_serials_blocking().unwrap(),
            ["0a", "0b"]
        );
        let all = store.list_operator_certs().await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].revoked_at.as_deref(), Some("t1"));
        assert_eq!(
            store.operator_cert("0c").await.unwrap(),
            Some(cert("bob", "0c"))
        );
        assert_eq!(store.operator_cert("ff").await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_control_policy_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.control_policy_blocking().unwrap(), None);
        store.set_control_policy("a", "t1").await.unwrap();
        store.set_control_policy("b", "t2").await.unwrap();
        let row = store.control_policy_blocking().unwrap().unwrap();
        assert_eq!((row.policy.as_str(), row.updated_at.as_str()), ("b", "t2"));
    }
}
