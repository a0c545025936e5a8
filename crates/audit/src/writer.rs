//! The single writer: sequence numbers, hashes and group commit.

use std::thread;

use time::format_description::well_known::Rfc3339;
use tokio::sync::{mpsc, oneshot};
use zerofn_store::{AuditRow, AuditWriter, Store};

use crate::chain::{row_hash, GENESIS_HASH};
use crate::{AuditError, AuditRecord, StoredRecord};

/// Records waiting for the writer; appenders wait (backpressure) beyond it.
const QUEUE: usize = 16 * 1024;
/// Most records committed in one transaction.
const MAX_BATCH: usize = 4096;

struct Job {
    record: AuditRecord,
    ack: oneshot::Sender<Result<i64, ()>>,
}

/// Handle to the audit log. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    jobs: mpsc::Sender<Job>,
    store: Store,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditLog(..)")
    }
}

impl AuditLog {
    /// Start the writer thread, continuing the chain already in `store`.
    pub fn open(store: &Store) -> Result<AuditLog, AuditError> {
        let writer = store.open_audit_writer()?;
        let head = writer.last()?.unwrap_or((0, GENESIS_HASH.to_owned()));
        let (jobs, rx) = mpsc::channel(QUEUE);
        thread::Builder::new()
            .name("zerofn-audit".into())
            .spawn(move || run_writer(writer, head, rx))
            .map_err(|_| AuditError::WriterStopped)?;
        Ok(AuditLog {
            jobs,
            store: store.clone(),
        })
    }

    /// Append one record durably; returns its sequence number. An error
    /// means the record is not in the log and the caller must not perform
    /// the action.
    pub async fn append(&self, record: AuditRecord) -> Result<i64, AuditError> {
        let (ack, done) = oneshot::channel();
        self.jobs
            .send(Job { record, ack })
            .await
            .map_err(|_| AuditError::WriterStopped)?;
        match done.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(())) => Err(AuditError::AppendFailed),
            Err(_) => Err(AuditError::WriterStopped),
        }
    }

    /// The newest `n` records, oldest first.
    pub async fn tail(&self, n: u32) -> Result<Vec<StoredRecord>, AuditError> {
        Ok(self
            .store
            .audit_tail(n)
            .await?
            .into_iter()
            .map(StoredRecord::from)
            .collect())
    }

    /// Records of one invocation.
    pub async fn by_invocation(&self, id: &str) -> Result<Vec<StoredRecord>, AuditError> {
        Ok(self
            .store
            .audit_by_invocation(id)
            .await?
            .into_iter()
            .map(StoredRecord::from)
            .collect())
    }
}

fn run_writer(mut writer: AuditWriter, mut head: (i64, String), mut rx: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut rows: Vec<AuditRow> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let now = time::OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"));
        rows.clear();
        let (mut seq, mut prev) = head.clone();
        for job in &batch {
            seq = seq.saturating_add(1);
            let r = &job.record;
            let mut row = AuditRow {
                seq,
                time: now.clone(),
                actor: r.actor.clone(),
                action: r.action.as_str().to_owned(),
                tenant: r.tenant.clone(),
                function: r.function.clone(),
                digest: r.digest.clone(),
                decision: r.outcome.as_str().to_owned(),
                reason: r.reason.clone(),
                duration_us: r
                    .duration
                    .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
                status: r.status.map(i64::from),
                invocation_id: r.invocation_id.clone(),
                prev_hash: prev,
                hash: String::new(),
            };
            row.hash = row_hash(&row);
            prev = row.hash.clone();
            rows.push(row);
        }
        match writer.append_batch(&rows) {
            Ok(()) => {
                head = (seq, prev);
                for (job, row) in batch.drain(..).zip(rows.iter()) {
                    let _ = job.ack.send(Ok(row.seq));
                }
            }
            Err(error) => {
                tracing::error!(%error, records = batch.len(), "audit append failed; refusing the actions");
                for job in batch.drain(..) {
                    let _ = job.ack.send(Err(()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{verify_chain, Action, Outcome};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_form_one_valid_chain_that_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log = AuditLog::open(&store).unwrap();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                log.append(
                    AuditRecord::new("t", Action::Invoke, Outcome::Allow)
                        .invocation_id(format!("inv-{i}"))
                        .status(200),
                )
                .await
                .unwrap()
            }));
        }
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap());
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=200).collect::<Vec<i64>>());
        let head = verify_chain(&store).unwrap();
        assert_eq!(head.records, 200);
        drop(log);

        let log = AuditLog::open(&store).unwrap();
        let seq = log
            .append(AuditRecord::new("t", Action::PlatformStart, Outcome::Allow))
            .await
            .unwrap();
        assert_eq!(seq, 201);
        let tail = log.tail(2).await.unwrap();
        assert_eq!(tail[1].prev_hash, head.hash);
        assert_eq!(verify_chain(&store).unwrap().records, 201);
        let by = log.by_invocation("inv-7").await.unwrap();
        assert_eq!(by.len(), 1);
        assert_eq!(by[0].status, Some(200));
    }
}
