//! The last run of each schedule (`[[triggers]] schedule = "..."`): per
//! tenant, function and trigger name, the scheduled time (Unix ms) of the
//! fire the scheduler last handled. The scheduler (`zerofn-events`) reads
//! it at start to find runs missed while the platform was down, and writes
//! it before each fire (at most once per fire time). Stored as given: the
//! names come from admitted manifests.

use rusqlite::{params, OptionalExtension};

use crate::{Store, StoreError};

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS schedule_runs (
    tenant       TEXT NOT NULL,
    function     TEXT NOT NULL,
    trigger      TEXT NOT NULL,
    last_run_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant, function, trigger)
) STRICT;
"#;

impl Store {
    /// The scheduled time of the schedule's last handled fire, if any.
    pub async fn schedule_last_run(
        &self,
        tenant: &str,
        function: &str,
        trigger: &str,
    ) -> Result<Option<u64>, StoreError> {
        let (tenant, function, trigger) =
            (tenant.to_owned(), function.to_owned(), trigger.to_owned());
        self.with_conn(move |conn| {
            let ms: Option<i64> = conn
                .query_row(
                    "SELECT last_run_ms FROM schedule_runs \
                     WHERE tenant = ?1 AND function = ?2 AND trigger = ?3",
                    params![tenant, function, trigger],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(ms.and_then(|ms| u64::try_from(ms).ok()))
        })
        .await
    }

    /// Records `last_run_ms` as the schedule's last handled fire; an earlier
    /// time than the one stored changes nothing (the record only moves forward).
    pub async fn record_schedule_run(
        &self,
        tenant: &str,
        function: &str,
        trigger: &str,
        last_run_ms: u64,
    ) -> Result<(), StoreError> {
        let (tenant, function, trigger) =
            (tenant.to_owned(), function.to_owned(), trigger.to_owned());
        let ms = i64::try_from(last_run_ms).unwrap_or(i64::MAX);
        self.with_conn(move |conn| {
            let tx = crate::write_tx(conn)?;
            tx.execute(
                "INSERT INTO schedule_runs (tenant, function, trigger, last_run_ms) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (tenant, function, trigger) DO UPDATE SET \
                 last_run_ms = max(last_run_ms, excluded.last_run_ms)",
                params![tenant, function, trigger, ms],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;

    #[tokio::test]
    async fn last_runs_persist_per_trigger_and_only_move_forward() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.schedule_last_run("acme", "f", "tick").await.unwrap(),
            None
        );
        store
            .record_schedule_run("acme", "f", "tick", 5_000)
            .await
            .unwrap();
        store
            .record_schedule_run("acme", "f", "tock", 7_000)
            .await
            .unwrap();
        store
            .record_schedule_run("acme", "f", "tick", 4_000)
            .await
            .unwrap();
        assert_eq!(
            store.schedule_last_run("acme", "f", "tick").await.unwrap(),
            Some(5_000)
        );
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.schedule_last_run("acme", "f", "tock").await.unwrap(),
            Some(7_000)
        );
        assert_eq!(
            store.schedule_last_run("acme", "g", "tick").await.unwrap(),
            None
        );
    }
}
