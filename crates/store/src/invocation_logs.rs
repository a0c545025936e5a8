//! Output of invocations: the lines a guest wrote to stdout and stderr and
//! the records it logged through `wasi:logging` (stream `log`, with their
//! level and context), keyed by invocation id, tenant, function, time and
//! stream, and bounded per function by total bytes and by age.
//!
//! Lines are written by one [`LogWriter`] (its own connection, owned by the
//! gateway's log thread, off the invoke path) and read through [`Store`].
//! They are not audit records: nothing chains or signs them, a crash may
//! lose the last batch (the writer commits with `synchronous=NORMAL`), and
//! retention deletes them.
//!
//! Retention: the writer keeps each function's stored bytes (the sum of its
//! lines' and contexts' UTF-8 lengths) in `invocation_log_usage`, updated in the
//! transaction that adds or deletes lines, and after each batch deletes the
//! oldest lines of every function over its budget. [`LogWriter::prune_older_than`]
//! deletes lines older than the age limit, oldest first.
//!
//! Ids come from `AUTOINCREMENT`, so they only grow and are never reused,
//! even after every line was pruned: a reader following with `after = id`
//! never misses a line.
//!
//! # Trust
//! The lines are a guest's output: untrusted text, already valid UTF-8 when
//! it arrives (the gateway replaced what was not). They are stored and
//! returned as they are (a `log` record's level and context too), bound as
//! SQL parameters, compared only with `instr`
//! (no pattern syntax) and never interpreted; escaping for a terminal is the
//! printer's job. Queries name their tenant: a read never returns another
//! tenant's lines. Every write is one transaction with the usage it changes.

use std::collections::BTreeMap;

use rusqlite::{params, Connection};

use crate::{Store, StoreError};

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS invocation_logs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant         TEXT NOT NULL,
    function       TEXT NOT NULL,
    invocation_id  TEXT NOT NULL,
    time           TEXT NOT NULL,
    stream         TEXT NOT NULL,
    line           TEXT NOT NULL,
    bytes          INTEGER NOT NULL,
    level          TEXT,
    context        TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS invocation_logs_by_tenant ON invocation_logs (tenant, id);
CREATE INDEX IF NOT EXISTS invocation_logs_by_function ON invocation_logs (tenant, function, id);
CREATE INDEX IF NOT EXISTS invocation_logs_by_invocation ON invocation_logs (invocation_id, id);
CREATE TABLE IF NOT EXISTS invocation_log_usage (
    tenant    TEXT NOT NULL,
    function  TEXT NOT NULL,
    bytes     INTEGER NOT NULL,
    PRIMARY KEY (tenant, function)
) STRICT, WITHOUT ROWID;
"#;

/// Adds the `wasi:logging` columns to a table created before them; lines
/// stored earlier have neither (they are stdout, stderr or platform lines).
pub(crate) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    for column in ["level", "context"] {
        let present = conn
            .prepare("SELECT 1 FROM pragma_table_info('invocation_logs') WHERE name = ?1")?
            .exists([column])?;
        if !present {
            conn.execute_batch(&format!(
                "ALTER TABLE invocation_logs ADD COLUMN {column} TEXT"
            ))?;
        }
    }
    Ok(())
}

/// Most lines one age-pruning transaction deletes; the writer repeats until
/// nothing old is left.
const PRUNE_CHUNK: u32 = 10_000;

/// How log lines are stamped: RFC 3339 UTC with exactly six fractional
/// digits, so that text order is time order (the `since` filter and age
/// pruning compare the text).
pub fn log_timestamp(at: time::OffsetDateTime) -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    at.to_offset(time::UtcOffset::UTC)
        .format(FORMAT)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".to_owned())
}

/// A line to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLogLine {
    pub tenant: String,
    pub function: String,
    pub invocation_id: String,
    /// RFC 3339 UTC time the output was captured.
    pub time: String,
    /// `stdout`, `stderr`, `log` (a `wasi:logging` record) or `platform`
    /// (a marker the platform wrote).
    pub stream: String,
    /// The text, without its line end (already valid UTF-8); for a `log`
    /// record, its message.
    pub line: String,
    /// A `log` record's level (`trace` ... `critical`); `None` otherwise.
    pub level: Option<String>,
    /// A `log` record's context; `None` otherwise.
    pub context: Option<String>,
}

/// A stored line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLineRow {
    /// Position in the log; later lines have larger ids.
    pub id: i64,
    pub tenant: String,
    pub function: String,
    pub invocation_id: String,
    pub time: String,
    pub stream: String,
    pub line: String,
    /// A `log` record's level; `None` for other streams.
    pub level: Option<String>,
    /// A `log` record's context; `None` for other streams.
    pub context: Option<String>,
}

/// Which lines to read, all conditions together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogQuery {
    pub tenant: String,
    pub function: Option<String>,
    pub invocation_id: Option<String>,
    /// RFC 3339 UTC; lines captured at or after it.
    pub since: Option<String>,
    /// Lines whose text, or whose context for a `log` record, contains this
    /// text (exact, case-sensitive).
    pub grep: Option<String>,
    /// `Some(id)`: the lines after `id`, oldest first (paging forward,
    /// following). `None`: the newest `limit` lines, oldest first.
    pub after: Option<i64>,
    pub limit: u32,
}

/// Lines read, oldest first, and where to continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPage {
    pub lines: Vec<LogLineRow>,
    /// The `after` of the next read: every matching line up to it has been
    /// returned (or skipped by a tail read); lines written later have larger
    /// ids.
    pub next: i64,
}

/// What one [`LogWriter::append`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogAppend {
    pub lines: usize,
    /// Lines deleted because their function was over its byte budget.
    pub pruned: u64,
}

/// The one connection that writes log lines. Owned by the log writer
/// thread; not shared.
pub struct LogWriter {
    conn: Connection,
}

impl Store {
    /// A connection dedicated to writing invocation output. It commits
    /// without syncing (`synchronous=NORMAL`): output is not audit, and a
    /// crash may cost the last batch.
    pub fn open_log_writer(&self) -> Result<LogWriter, StoreError> {
        let conn = crate::open_connection(&self.path)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(LogWriter { conn })
    }

    /// Lines matching `query` (see [`LogQuery::after`] for the order).
    pub async fn invocation_logs(&self, query: LogQuery) -> Result<LogPage, StoreError> {
        self.with_conn(move |conn| read_logs(conn, &query)).await
    }
}

impl LogWriter {
    /// Store `lines` in one transaction, then delete the oldest lines of
    /// every function now over `max_bytes_per_function`.
    pub fn append(
        &mut self,
        lines: &[NewLogLine],
        max_bytes_per_function: u64,
    ) -> Result<LogAppend, StoreError> {
        let tx = crate::write_tx(&mut self.conn)?;
        let mut added: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO invocation_logs (tenant, function, invocation_id, time, stream, line, bytes, level, context) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for l in lines {
                // A context counts against the budget like the text: a
                // guest chooses both.
                let size = l
                    .line
                    .len()
                    .saturating_add(l.context.as_ref().map_or(0, String::len));
                let bytes = i64::try_from(size).unwrap_or(i64::MAX);
                insert.execute(params![
                    l.tenant,
                    l.function,
                    l.invocation_id,
                    l.time,
                    l.stream,
                    l.line,
                    bytes,
                    l.level,
                    l.context
                ])?;
                let total = added
                    .entry((l.tenant.as_str(), l.function.as_str()))
                    .or_default();
                *total = total.saturating_add(bytes);
            }
        }
        let budget = i64::try_from(max_bytes_per_function).unwrap_or(i64::MAX);
        let mut pruned = 0u64;
        for ((tenant, function), bytes) in added {
            let usage: i64 = tx
                .prepare_cached(
                    "INSERT INTO invocation_log_usage (tenant, function, bytes) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (tenant, function) DO UPDATE SET bytes = bytes + excluded.bytes \
                     RETURNING bytes",
                )?
                .query_row(params![tenant, function, bytes], |r| r.get(0))?;
            if usage > budget {
                pruned = pruned.saturating_add(trim_function(
                    &tx,
                    tenant,
                    function,
                    usage.saturating_sub(budget),
                )?);
            }
        }
        tx.commit()?;
        Ok(LogAppend {
            lines: lines.len(),
            pruned,
        })
    }

    /// Delete every line captured before `cutoff` (RFC 3339 UTC), oldest
    /// first, in transactions of at most 10,000 lines; returns how many.
    ///
    /// Lines are found in id order and the walk stops at the first line at
    /// or after `cutoff`: ids follow capture order up to the few
    /// milliseconds lines wait in the writer's queue, so a line left behind
    /// that way is deleted at the next pruning.
    pub fn prune_older_than(&mut self, cutoff: &str) -> Result<u64, StoreError> {
        let mut deleted = 0u64;
        loop {
            let tx = crate::write_tx(&mut self.conn)?;
            let old: Vec<(i64, String, String, i64)> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT id, tenant, function, bytes, time FROM invocation_logs ORDER BY id LIMIT ?1",
                )?;
                let rows = stmt.query_map([PRUNE_CHUNK], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })?;
                let mut old = Vec::new();
                for row in rows {
                    let (id, tenant, function, bytes, time) = row?;
                    if time.as_str() >= cutoff {
                        break;
                    }
                    old.push((id, tenant, function, bytes));
                }
                old
            };
            let Some(&(last, ..)) = old.last() else {
                return Ok(deleted);
            };
            let mut freed: BTreeMap<(String, String), i64> = BTreeMap::new();
            for (_, tenant, function, bytes) in &old {
                let f = freed.entry((tenant.clone(), function.clone())).or_default();
                *f = f.saturating_add(*bytes);
            }
            tx.prepare_cached("DELETE FROM invocation_logs WHERE id <= ?1")?
                .execute([last])?;
            for ((tenant, function), bytes) in freed {
                release(&tx, &tenant, &function, bytes)?;
            }
            tx.commit()?;
            deleted = deleted.saturating_add(old.len() as u64);
            if (old.len() as u64) < u64::from(PRUNE_CHUNK) {
                return Ok(deleted);
            }
        }
    }
}

/// Delete the oldest lines of one function until at least `excess` bytes
/// are freed; returns how many lines.
fn trim_function(
    tx: &rusqlite::Transaction<'_>,
    tenant: &str,
    function: &str,
    excess: i64,
) -> Result<u64, StoreError> {
    let mut freed = 0i64;
    let mut cut: Option<i64> = None;
    let mut count = 0u64;
    {
        let mut stmt = tx.prepare_cached(
            "SELECT id, bytes FROM invocation_logs WHERE tenant = ?1 AND function = ?2 ORDER BY id",
        )?;
        let mut rows = stmt.query(params![tenant, function])?;
        while freed < excess {
            let Some(row) = rows.next()? else { break };
            cut = Some(row.get(0)?);
            freed = freed.saturating_add(row.get::<_, i64>(1)?);
            count += 1;
        }
    }
    if let Some(cut) = cut {
        tx.prepare_cached(
            "DELETE FROM invocation_logs WHERE tenant = ?1 AND function = ?2 AND id <= ?3",
        )?
        .execute(params![tenant, function, cut])?;
        release(tx, tenant, function, freed)?;
    }
    Ok(count)
}

/// Take `bytes` off a function's usage; a function without lines loses its row.
fn release(
    tx: &rusqlite::Transaction<'_>,
    tenant: &str,
    function: &str,
    bytes: i64,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE invocation_log_usage SET bytes = max(bytes - ?3, 0) WHERE tenant = ?1 AND function = ?2",
    )?
    .execute(params![tenant, function, bytes])?;
    tx.prepare_cached(
        "DELETE FROM invocation_log_usage WHERE tenant = ?1 AND function = ?2 \
         AND NOT EXISTS (SELECT 1 FROM invocation_logs WHERE tenant = ?1 AND function = ?2)",
    )?
    .execute(params![tenant, function])?;
    Ok(())
}

const LINE_COLUMNS: &str =
    "id, tenant, function, invocation_id, time, stream, line, level, context";

fn read_line(r: &rusqlite::Row<'_>) -> rusqlite::Result<LogLineRow> {
    Ok(LogLineRow {
        id: r.get(0)?,
        tenant: r.get(1)?,
        function: r.get(2)?,
        invocation_id: r.get(3)?,
        time: r.get(4)?,
        stream: r.get(5)?,
        line: r.get(6)?,
        level: r.get(7)?,
        context: r.get(8)?,
    })
}

fn read_logs(conn: &mut Connection, q: &LogQuery) -> Result<LogPage, StoreError> {
    // One read transaction: the lines and the high-water mark come from the
    // same snapshot, so `next` never skips a line committed in between.
    let tx = conn.transaction()?;
    let newest: i64 = tx.query_row(
        "SELECT COALESCE(MAX(id), 0) FROM invocation_logs",
        [],
        |r| r.get(0),
    )?;
    // The index that narrows most: an invocation's lines, a function's, a
    // tenant's. Every condition is a bound parameter.
    let index = if q.invocation_id.is_some() {
        "invocation_logs_by_invocation"
    } else if q.function.is_some() {
        "invocation_logs_by_function"
    } else {
        "invocation_logs_by_tenant"
    };
    let order = if q.after.is_some() { "ASC" } else { "DESC" };
    let sql = format!(
        "SELECT {LINE_COLUMNS} FROM invocation_logs INDEXED BY {index} \
         WHERE tenant = ?1 AND (?2 IS NULL OR function = ?2) AND (?3 IS NULL OR invocation_id = ?3) \
         AND (?4 IS NULL OR time >= ?4) \
         AND (?5 IS NULL OR instr(line, ?5) > 0 OR instr(coalesce(context, ''), ?5) > 0) AND id > ?6 \
         ORDER BY id {order} LIMIT ?7"
    );
    let mut lines = {
        let mut stmt = tx.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            params![
                q.tenant,
                q.function,
                q.invocation_id,
                q.since,
                q.grep,
                q.after.unwrap_or(0),
                q.limit
            ],
            read_line,
        )?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    let next = match q.after {
        None => {
            lines.reverse();
            newest
        }
        // A full page: continue after its last line. A short one: nothing
        // else matched up to the newest line of this snapshot.
        Some(after) => match lines.last() {
            Some(last) if lines.len() >= q.limit as usize => last.id,
            _ => newest.max(after),
        },
    };
    tx.finish()?;
    Ok(LogPage { lines, next })
}

#[cfg(test)]
impl LogWriter {
    /// A function's recorded byte usage.
    fn usage(&self, tenant: &str, function: &str) -> Result<Option<i64>, StoreError> {
        use rusqlite::OptionalExtension as _;
        Ok(self
            .conn
            .query_row(
                "SELECT bytes FROM invocation_log_usage WHERE tenant = ?1 AND function = ?2",
                params![tenant, function],
                |r| r.get(0),
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(function: &str, inv: &str, time: &str, stream: &str, text: &str) -> NewLogLine {
        NewLogLine {
            tenant: "acme".into(),
            function: function.into(),
            invocation_id: inv.into(),
            time: time.into(),
            stream: stream.into(),
            line: text.into(),
            level: None,
            context: None,
        }
    }

    fn record(inv: &str, level: &str, context: &str, message: &str) -> NewLogLine {
        NewLogLine {
            level: Some(level.into()),
            context: Some(context.into()),
            ..line("a", inv, "2026-01-01T00:00:05Z", "log", message)
        }
    }

    #[tokio::test]
    async fn log_records_keep_level_and_context_and_grep_reads_the_context() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.open_log_writer().unwrap();
        w.append(
            &[
                line("a", "i1", "2026-01-01T00:00:05Z", "stdout", "plain"),
                record("i1", "warn", "db", "slow query"),
                record("i1", "error", "http", "upstream failed"),
            ],
            1 << 20,
        )
        .unwrap();
        let all = store.invocation_logs(query(Some(0), 100)).await.unwrap();
        let shown: Vec<(&str, Option<&str>, Option<&str>, &str)> = all
            .lines
            .iter()
            .map(|l| {
                (
                    l.stream.as_str(),
                    l.level.as_deref(),
                    l.context.as_deref(),
                    l.line.as_str(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("stdout", None, None, "plain"),
                ("log", Some("warn"), Some("db"), "slow query"),
                ("log", Some("error"), Some("http"), "upstream failed"),
            ]
        );
        // The message and the context are searched; the level is not text.
        for (grep, expect) in [
            ("slow", vec!["slow query"]),
            ("http", vec!["upstream failed"]),
            ("error", vec![]),
        ] {
            let page = store
                .invocation_logs(LogQuery {
                    grep: Some(grep.into()),
                    ..query(Some(0), 100)
                })
                .await
                .unwrap();
            assert_eq!(texts(&page), expect, "grep {grep}");
        }
        // The context counts against the function's byte budget.
        assert_eq!(w.usage("acme", "a").unwrap(), Some(5 + 2 + 10 + 4 + 15));
    }

    /// A database made before `wasi:logging` gains the columns at the next
    /// open and keeps its lines.
    #[tokio::test]
    async fn an_older_table_gains_the_log_columns() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = crate::open_connection(&dir.path().join(crate::DATABASE_FILE)).unwrap();
            conn.execute_batch(
                "CREATE TABLE invocation_logs (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL,
                    function TEXT NOT NULL, invocation_id TEXT NOT NULL, time TEXT NOT NULL,
                    stream TEXT NOT NULL, line TEXT NOT NULL, bytes INTEGER NOT NULL) STRICT;
                 INSERT INTO invocation_logs (tenant, function, invocation_id, time, stream, line, bytes)
                    VALUES ('acme', 'a', 'i0', '2026-01-01T00:00:00Z', 'stdout', 'before', 6);",
            )
            .unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.open_log_writer().unwrap();
        w.append(&[record("i1", "info", "c", "after")], 1 << 20)
            .unwrap();
        let all = store.invocation_logs(query(Some(0), 100)).await.unwrap();
        assert_eq!(texts(&all), ["before", "after"]);
        assert_eq!(all.lines[0].level, None);
        assert_eq!(all.lines[1].level.as_deref(), Some("info"));
    }

    fn query(after: Option<i64>, limit: u32) -> LogQuery {
        LogQuery {
            tenant: "acme".into(),
            after,
            limit,
            ..LogQuery::default()
        }
    }

    fn texts(page: &LogPage) -> Vec<&str> {
        page.lines.iter().map(|l| l.line.as_str()).collect()
    }

    #[tokio::test]
    async fn filters_select_exactly_the_matching_lines() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.open_log_writer().unwrap();
        w.append(
            &[
                line("a", "i1", "2026-01-01T00:00:01Z", "stdout", "a one"),
                line("a", "i1", "2026-01-01T00:00:01Z", "stderr", "a two ERR"),
                line("b", "i2", "2026-01-01T00:00:02Z", "stdout", "b one"),
                line("a", "i3", "2026-01-01T00:00:03Z", "stdout", "a three ERR"),
            ],
            1 << 20,
        )
        .unwrap();
        // Another tenant's lines never show.
        w.append(
            &[NewLogLine {
                tenant: "other".into(),
                ..line("a", "i9", "2026-01-01T00:00:04Z", "stdout", "other ERR")
            }],
            1 << 20,
        )
        .unwrap();

        let all = store.invocation_logs(query(Some(0), 100)).await.unwrap();
        assert_eq!(texts(&all), ["a one", "a two ERR", "b one", "a three ERR"]);
        assert!(all.lines.iter().all(|l| l.tenant == "acme"));

        let by_fn = store
            .invocation_logs(LogQuery {
                function: Some("a".into()),
                ..query(Some(0), 100)
            })
            .await
            .unwrap();
        assert_eq!(texts(&by_fn), ["a one", "a two ERR", "a three ERR"]);

        let by_inv = store
            .invocation_logs(LogQuery {
                invocation_id: Some("i1".into()),
                ..query(None, 100)
            })
            .await
            .unwrap();
        assert_eq!(texts(&by_inv), ["a one", "a two ERR"]);
        assert_eq!(by_inv.lines[1].stream, "stderr");

        let grep = store
            .invocation_logs(LogQuery {
                grep: Some("ERR".into()),
                ..query(None, 100)
            })
            .await
            .unwrap();
        assert_eq!(texts(&grep), ["a two ERR", "a three ERR"]);

        let since = store
            .invocation_logs(LogQuery {
                since: Some("2026-01-01T00:00:02Z".into()),
                ..query(Some(0), 100)
            })
            .await
            .unwrap();
        assert_eq!(texts(&since), ["b one", "a three ERR"]);

        // Wildcards are text, not patterns.
        let none = store
            .invocation_logs(LogQuery {
                grep: Some("%".into()),
                ..query(None, 100)
            })
            .await
            .unwrap();
        assert!(none.lines.is_empty());
    }

    #[tokio::test]
    async fn tail_then_follow_pages_without_gaps_or_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.open_log_writer().unwrap();
        let batch: Vec<_> = (0..10)
            .map(|i| line("a", "i", "2026-01-01T00:00:00Z", "stdout", &format!("l{i}")))
            .collect();
        w.append(&batch, 1 << 20).unwrap();

        // Tail: the newest 3, oldest first; `next` is the newest line.
        let tail = store.invocation_logs(query(None, 3)).await.unwrap();
        assert_eq!(texts(&tail), ["l7", "l8", "l9"]);
        assert_eq!(tail.next, tail.lines[2].id);

        // Nothing new: the same cursor comes back, no lines.
        let idle = store
            .invocation_logs(query(Some(tail.next), 3))
            .await
            .unwrap();
        assert!(idle.lines.is_empty());
        assert_eq!(idle.next, tail.next);

        // Paging forward from the start in pages of 4 reads each line once.
        let mut seen = Vec::new();
        let mut after = 0;
        loop {
            let page = store.invocation_logs(query(Some(after), 4)).await.unwrap();
            seen.extend(page.lines.iter().map(|l| l.line.clone()));
            if page.lines.is_empty() {
                break;
            }
            after = page.next;
        }
        assert_eq!(seen, (0..10).map(|i| format!("l{i}")).collect::<Vec<_>>());

        // A follower's cursor stays valid after every line was pruned:
        // ids are never reused.
        let last = tail.next;
        assert_eq!(w.prune_older_than("2027-01-01T00:00:00Z").unwrap(), 10);
        w.append(
            &[line("a", "j", "2026-01-02T00:00:00Z", "stdout", "new")],
            1 << 20,
        )
        .unwrap();
        let after_prune = store.invocation_logs(query(Some(last), 10)).await.unwrap();
        assert_eq!(texts(&after_prune), ["new"]);
    }

    #[tokio::test]
    async fn each_function_is_held_to_its_byte_budget_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.open_log_writer().unwrap();
        // 10-byte lines, budget 35 bytes: at most 3 lines per function.
        for i in 0..5 {
            let r = w
                .append(
                    &[
                        line(
                            "a",
                            "i",
                            "2026-01-01T00:00:00Z",
                            "stdout",
                            &format!("a-line-{i:03}"),
                        ),
                        line(
                            "b",
                            "i",
                            "2026-01-01T00:00:00Z",
                            "stdout",
                            &format!("b-line-{i:03}"),
                        ),
                    ],
                    35,
                )
                .unwrap();
            assert_eq!(r.pruned, if i < 3 { 0 } else { 2 }, "batch {i}");
        }
        let a = store
            .invocation_logs(LogQuery {
                function: Some("a".into()),
                ..query(Some(0), 100)
            })
            .await
            .unwrap();
        assert_eq!(texts(&a), ["a-line-002", "a-line-003", "a-line-004"]);
        assert_eq!(w.usage("acme", "a").unwrap(), Some(30));
        assert_eq!(w.usage("acme", "b").unwrap(), Some(30));
    }

    #[tokio::test]
    async fn lines_older_than_the_age_limit_are_deleted_and_usage_follows() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.open_log_writer().unwrap();
        w.append(
            &[
                line("a", "i1", "2026-01-01T00:00:00Z", "stdout", "old-a"),
                line("b", "i2", "2026-01-01T00:00:01Z", "stdout", "old-b"),
                line("a", "i3", "2026-01-03T00:00:00Z", "stdout", "new-a"),
            ],
            1 << 20,
        )
        .unwrap();
        assert_eq!(w.prune_older_than("2026-01-02T00:00:00Z").unwrap(), 2);
        let left = store.invocation_logs(query(Some(0), 100)).await.unwrap();
        assert_eq!(texts(&left), ["new-a"]);
        assert_eq!(w.usage("acme", "a").unwrap(), Some(5));
        // A function with no lines left has no usage row.
        assert_eq!(w.usage("acme", "b").unwrap(), None);
        // Nothing older: nothing deleted.
        assert_eq!(w.prune_older_than("2026-01-02T00:00:00Z").unwrap(), 0);
    }
}
