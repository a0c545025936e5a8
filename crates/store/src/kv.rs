//! Key-value data of functions (`wasi:keyvalue`), namespaced by tenant and
//! bucket.
//!
//! Every method takes the tenant and bucket as separate arguments and
//! every statement binds them as parameters next to the key: a key is
//! opaque data, so no key (whatever its bytes or encoding) can reach a row
//! of another bucket or tenant. The caller supplies the tenant from the
//! function's verified identity, never from the guest.
//!
//! Every write to a bucket a function subscribes to records its change in
//! the same transaction (`kv_changes.rs`); the writer is named by the
//! caller (`function:<name>`), with the trace context of the request that
//! made the write when it was traced ([`KvWriter`]).

use std::sync::Arc;

use rusqlite::{params, OptionalExtension};
use zerofn_types::TenantName;

use crate::kv_changes::{self, Change, KvOp, KvWriter};
use crate::{Store, StoreError, MAX_KV_STREAM_BACKLOG};

/// The value of `key`, read inside the caller's transaction.
fn get(
    conn: &rusqlite::Connection,
    tenant: &str,
    bucket: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT value FROM kv WHERE tenant = ?1 AND bucket = ?2 AND key = ?3")?
        .query_row(params![tenant, bucket, key], |r| r.get(0))
        .optional()?)
}

impl Store {
    /// Wakes the change-stream loop after a write that recorded a change.
    fn changed(&self, recorded: bool) {
        if recorded {
            self.kv_changed.notify_one();
        }
    }

    /// Notified after each committed write that recorded a change (the
    /// change-stream loop delivers at once instead of at its next poll).
    pub fn kv_changes_notify(&self) -> Arc<tokio::sync::Notify> {
        self.kv_changed.clone()
    }
}

/// Why an increment failed, besides storage errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncrementError {
    /// The stored value is not a decimal u64.
    NotANumber,
    /// The sum does not fit in a u64.
    Overflow,
}

impl Store {
    /// The value of `key`, if any.
    pub async fn kv_get(
        &self,
        tenant: &TenantName,
        bucket: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let (tenant, bucket, key) = (tenant.to_string(), bucket.to_owned(), key.to_owned());
        self.with_conn(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT value FROM kv WHERE tenant = ?1 AND bucket = ?2 AND key = ?3",
                )?
                .query_row(params![tenant, bucket, key], |r| r.get(0))
                .optional()?)
        })
        .await
    }

    /// Stores `value` under `key`, as `writer` (`function:<name>`, a plain
    /// name converts, and its trace context if traced): when the
    /// bucket is watched, the change is recorded in the same transaction
    /// (`kv_changes.rs`), or the write is refused whole.
    pub async fn kv_set(
        &self,
        tenant: &TenantName,
        bucket: &str,
        key: &str,
        value: Vec<u8>,
        writer: impl Into<KvWriter>,
    ) -> Result<(), StoreError> {
        let (tenant, bucket, key) = (tenant.to_string(), bucket.to_owned(), key.to_owned());
        let writer = writer.into();
        let watched = self
            .with_conn(move |conn| {
                let tx = crate::write_tx(conn)?;
                let subs = kv_changes::subscribers(&tx, &tenant, &bucket)?;
                let old = if subs.is_empty() {
                    None
                } else {
                    get(&tx, &tenant, &bucket, &key)?
                };
                let change = Change {
                    op: KvOp::Set,
                    old: old.as_deref(),
                    new: Some(&value),
                    writer: &writer,
                };
                put_recorded(&tx, &tenant, &bucket, &key, &subs, &change)?;
                tx.commit()?;
                Ok(!subs.is_empty())
            })
            .await?;
        self.changed(watched);
        Ok(())
    }

    /// Deletes `key`; deleting an absent key is not an error (and, changing
    /// nothing, records no change).
    pub async fn kv_delete(
        &self,
        tenant: &TenantName,
        bucket: &str,
        key: &str,
        writer: impl Into<KvWriter>,
    ) -> Result<(), StoreError> {
        let (tenant, bucket, key) = (tenant.to_string(), bucket.to_owned(), key.to_owned());
        let writer = writer.into();
        let watched = self
            .with_conn(move |conn| {
                let tx = crate::write_tx(conn)?;
                let subs = kv_changes::subscribers(&tx, &tenant, &bucket)?;
                let old = if subs.is_empty() {
                    None
                } else {
                    get(&tx, &tenant, &bucket, &key)?
                };
                tx.prepare_cached("DELETE FROM kv WHERE tenant = ?1 AND bucket = ?2 AND key = ?3")?
                    .execute(params![tenant, bucket, key])?;
                let recorded = match &old {
                    Some(old) if !subs.is_empty() => {
                        let change = Change {
                            op: KvOp::Delete,
                            old: Some(old),
                            new: None,
                            writer: &writer,
                        };
                        kv_changes::record(
                            &tx,
                            &tenant,
                            &bucket,
                            &key,
                            &subs,
                            &change,
                            MAX_KV_STREAM_BACKLOG,
                        )?;
                        true
                    }
                    _ => false,
                };
                tx.commit()?;
                Ok(recorded)
            })
            .await?;
        self.changed(watched);
        Ok(())
    }

    /// Whether `key` exists.
    pub async fn kv_exists(
        &self,
        tenant: &TenantName,
        bucket: &str,
        key: &str,
    ) -> Result<bool, StoreError> {
        let (tenant, bucket, key) = (tenant.to_string(), bucket.to_owned(), key.to_owned());
        self.with_conn(move |conn| {
            Ok(conn
                .prepare_cached("SELECT 1 FROM kv WHERE tenant = ?1 AND bucket = ?2 AND key = ?3")?
                .query_row(params![tenant, bucket, key], |_| Ok(()))
                .optional()?
                .is_some())
        })
        .await
    }

    /// Up to `page` keys in key order, skipping the first `cursor`; the
    /// next cursor when more remain.
    pub async fn kv_list(
        &self,
        tenant: &TenantName,
        bucket: &str,
        cursor: u64,
        page: usize,
    ) -> Result<(Vec<String>, Option<u64>), StoreError> {
        let (tenant, bucket) = (tenant.to_string(), bucket.to_owned());
        let offset = i64::try_from(cursor).unwrap_or(i64::MAX);
        // One extra row tells whether another page exists.
        let limit = i64::try_from(page.saturating_add(1)).unwrap_or(i64::MAX);
        self.with_conn(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT key FROM kv WHERE tenant = ?1 AND bucket = ?2 ORDER BY key LIMIT ?3 OFFSET ?4",
            )?;
            let mut keys = stmt
                .query_map(params![tenant, bucket, limit, offset], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            let next = if keys.len() > page {
                keys.truncate(page);
                Some(cursor.saturating_add(page as u64))
            } else {
                None
            };
            Ok((keys, next))
        })
        .await
    }

    /// Adds `delta` to the decimal u64 stored under `key` (absent = 0) in
    /// one transaction (with its change record, when the bucket is watched)
    /// and returns the new value.
    pub async fn kv_increment(
        &self,
        tenant: &TenantName,
        bucket: &str,
        key: &str,
        delta: u64,
        writer: impl Into<KvWriter>,
    ) -> Result<Result<u64, IncrementError>, StoreError> {
        let (tenant, bucket, key) = (tenant.to_string(), bucket.to_owned(), key.to_owned());
        let writer = writer.into();
        let out = self
            .with_conn(move |conn| {
                let tx = crate::write_tx(conn)?;
                let old = get(&tx, &tenant, &bucket, &key)?;
                let current = match &old {
                    None => 0,
                    Some(bytes) => match std::str::from_utf8(bytes)
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                    {
                        Some(n) => n,
                        None => return Ok((Err(IncrementError::NotANumber), false)),
                    },
                };
                let Some(next) = current.checked_add(delta) else {
                    return Ok((Err(IncrementError::Overflow), false));
                };
                let new = next.to_string().into_bytes();
                let subs = kv_changes::subscribers(&tx, &tenant, &bucket)?;
                let change = Change {
                    op: KvOp::Increment,
                    old: old.as_deref(),
                    new: Some(&new),
                    writer: &writer,
                };
                put_recorded(&tx, &tenant, &bucket, &key, &subs, &change)?;
                tx.commit()?;
                Ok((Ok(next), !subs.is_empty()))
            })
            .await;
        match out? {
            (Ok(n), watched) => {
                self.changed(watched);
                Ok(Ok(n))
            }
            (Err(e), _) => Ok(Err(e)),
        }
    }
}

/// Stores the change's new value under the key and, when the bucket has
/// subscribers, records the change for each in the same transaction (or
/// refuses the whole write at a subscriber's bound).
fn put_recorded(
    tx: &rusqlite::Transaction<'_>,
    tenant: &str,
    bucket: &str,
    key: &str,
    subs: &[(String, u64)],
    change: &Change<'_>,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO kv (tenant, bucket, key, value) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (tenant, bucket, key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![tenant, bucket, key, change.new])?;
    if !subs.is_empty() {
        kv_changes::record(tx, tenant, bucket, key, subs, change, MAX_KV_STREAM_BACKLOG)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::test_names::t;
    use crate::Store;

    #[tokio::test]
    async fn tenants_and_buckets_never_share_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .kv_set(&t("a"), "b", "k", b"a-value".to_vec(), "function:f")
            .await
            .unwrap();
        // Same key in another bucket and another tenant, and keys that try
        // to smuggle a separator or SQL.
        for (tenant, bucket, key) in [
            ("b", "b", "k"),
            ("a", "c", "k"),
            ("b", "b", "a/b/k"),
            ("b", "b", "k' OR '1'='1"),
            ("b", "b", "../a/b/k"),
            ("b", "b", "a\u{0}b\u{0}k"),
        ] {
            assert_eq!(
                store.kv_get(&t(tenant), bucket, key).await.unwrap(),
                None,
                "{tenant}/{bucket}/{key:?}"
            );
            assert!(!store.kv_exists(&t(tenant), bucket, key).await.unwrap());
        }
        assert_eq!(
            store.kv_list(&t("b"), "b", 0, 10).await.unwrap(),
            (vec![], None)
        );
        store
            .kv_delete(&t("b"), "b", "k", "function:f")
            .await
            .unwrap();
        assert_eq!(
            store.kv_get(&t("a"), "b", "k").await.unwrap(),
            Some(b"a-value".to_vec())
        );
    }

    #[tokio::test]
    async fn list_pages_and_increment() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for k in ["c", "a", "b"] {
            store
                .kv_set(&t("t"), "b", k, vec![], "function:f")
                .await
                .unwrap();
        }
        let (first, next) = store.kv_list(&t("t"), "b", 0, 2).await.unwrap();
        assert_eq!(first, ["a", "b"]);
        assert_eq!(next, Some(2));
        assert_eq!(
            store.kv_list(&t("t"), "b", 2, 2).await.unwrap(),
            (vec!["c".to_owned()], None)
        );
        assert_eq!(
            store
                .kv_increment(&t("t"), "n", "c", 5, "function:f")
                .await
                .unwrap(),
            Ok(5)
        );
        assert_eq!(
            store
                .kv_increment(&t("t"), "n", "c", 2, "function:f")
                .await
                .unwrap(),
            Ok(7)
        );
        assert_eq!(
            store.kv_get(&t("t"), "n", "c").await.unwrap(),
            Some(b"7".to_vec())
        );
        assert_eq!(
            store
                .kv_increment(&t("t"), "b", "a", 1, "function:f")
                .await
                .unwrap(),
            Err(super::IncrementError::NotANumber)
        );
        store
            .kv_set(
                &t("t"),
                "n",
                "max",
                u64::MAX.to_string().into_bytes(),
                "function:f",
            )
            .await
            .unwrap();
        assert_eq!(
            store
                .kv_increment(&t("t"), "n", "max", 1, "function:f")
                .await
                .unwrap(),
            Err(super::IncrementError::Overflow)
        );
    }
}
