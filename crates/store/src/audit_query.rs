//! Filtered reads of the audit log (`zerofn audit query`): records matching
//! every given condition, newest first, a page at a time, through indexes so
//! that a query does not read the whole log.
//!
//! # Trust
//! Reads only: no query changes a row. Filter values come from the control
//! API (already parsed there) and reach SQLite only as bound parameters; the
//! stored rows are trusted as the platform wrote them, but a row whose time
//! does not parse or whose detail is not JSON is skipped by the filters that
//! need them, never a failed query.
//!
//! # The indexes and the tamper-evident log
//! The indexes are SQLite indexes on the `audit` table itself
//! ([`SCHEMA`]). SQLite writes them in the transaction that appends the
//! rows, so a committed record is in every index and a rolled-back batch in
//! none; nothing has to keep them in step by hand. They are derived data:
//! copies of columns (tenant, action, decision) with the record's
//! `seq`. Nothing in them is hashed, chained, signed or read by
//! verification (`audit verify`, the Merkle tree and its proofs read the
//! rows), and every record a query returns is read from its row, so an
//! index can make a query miss a record but never change one. The rows stay
//! the source of truth: `REINDEX` rebuilds the indexes from them, and
//! [`Store::open`] recreates a missing one. (An index edited behind the
//! platform's back is found by SQLite's `PRAGMA integrity_check`, not by
//! `audit verify`.)
//!
//! # Cost
//! One condition drives the scan through its index (tenant, else a `deny`
//! or `error` decision, else action, else decision, else the log itself by
//! `seq`); the others (function, caller, status among them) are checked on
//! each row read. Time
//! bounds become a `seq` range by bisecting the log on `time` (records are
//! stamped in `seq` order; the exact time check still applies to every row).
//! A page reads at most [`SCAN_LIMIT`] rows: when it stops there it returns
//! what it found with a cursor to continue from, so no request reads
//! millions of rows, however rare its matches.
//!
//! Appending pays one B-tree insert per index per record (three), inside the
//! batch transaction the audit writer already commits. Each index is keyed
//! by a value and then `seq`, so a record lands at the end of its value's
//! range: a batch dirties one leaf page per distinct value it holds. That is
//! why there are three: actions and decisions have a handful of values and
//! tenants a few hundred, while an index per (tenant, function) dirtied a
//! page per record on a busy platform. Measured with
//! `cargo bench -p zerofn-store --bench audit_query` (1,000,000 records in
//! batches of 1,000, 200 tenants of 10 functions, on a shared 2-core VM, so
//! roughly): about 1-2 s to append without indexes, 5-8 s with these three,
//! 28 s with a (tenant, function) index added.
//! A tenant and function query reads the tenant's records and checks the
//! function, which costs little since a tenant has few functions.

use rusqlite::{params, Connection, OptionalExtension};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::audit_rows::{read_row, COLUMNS};
use crate::{AuditRow, Store, StoreError};

pub(crate) const SCHEMA: &str = r#"
CREATE INDEX IF NOT EXISTS audit_by_tenant ON audit (tenant, seq);
CREATE INDEX IF NOT EXISTS audit_by_action ON audit (action, seq);
CREATE INDEX IF NOT EXISTS audit_by_decision ON audit (decision, seq);
"#;

/// Most rows one page reads before it answers with what it found.
pub const SCAN_LIMIT: usize = 20_000;

/// Which records to read: all given conditions together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub tenant: Option<String>,
    pub function: Option<String>,
    /// The record's actor (`operator:alice`, `gateway`, ...), or the caller
    /// its detail names: another function's SPIFFE ID, a public client's
    /// address, or `public` for every public client.
    pub caller: Option<String>,
    pub action: Option<String>,
    pub decision: Option<String>,
    pub status: Option<i64>,
    /// Records stamped at or after this instant.
    pub since: Option<OffsetDateTime>,
    /// Records stamped at or before this instant.
    pub until: Option<OffsetDateTime>,
    /// Only records with a smaller `seq` (the cursor of the previous page).
    pub before: Option<i64>,
    /// Most records in the page.
    pub limit: u32,
}

/// Records found, newest first, and where to continue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPage {
    pub rows: Vec<AuditRow>,
    /// The `before` of the next page; `None` when every matching record
    /// has been returned. A page may hold fewer than `limit` records and
    /// still have a `next` (it stopped at [`SCAN_LIMIT`] rows read).
    pub next: Option<i64>,
}

impl Store {
    /// One page of the records matching `query`.
    pub async fn audit_query(&self, query: AuditQuery) -> Result<AuditPage, StoreError> {
        self.with_audit_conn(move |conn| audit_query_sync(conn, &query, SCAN_LIMIT))
            .await
    }
}

/// The condition that drives the scan: its index, its SQL (on `?3` and `?4`) and their values.
struct Driver<'q> {
    index: Option<&'static str>,
    condition: &'static str,
    values: (Option<&'q str>, Option<&'q str>),
}

fn driver(q: &AuditQuery) -> Driver<'_> {
    fn by<'q>(index: &'static str, condition: &'static str, value: &'q str) -> Driver<'q> {
        Driver {
            index: Some(index),
            condition,
            values: (Some(value), None),
        }
    }
    // A tenant's records: its functions are checked per row (a tenant has few
    // functions, so most rows read match). No index has the function: with
    // every (tenant, function) an insertion point, it made appends write a
    // page per record (see the module docs).
    if let Some(t) = q.tenant.as_deref() {
        return by("audit_by_tenant", "tenant = ?3 AND ?4 IS NULL", t);
    }
    match (q.decision.as_deref(), q.action.as_deref()) {
        // Refusals and failures are the rare records; allows the common.
        (Some(d), _) if d != "allow" => by("audit_by_decision", "decision = ?3 AND ?4 IS NULL", d),
        (_, Some(a)) => by("audit_by_action", "action = ?3 AND ?4 IS NULL", a),
        (Some(d), None) => by("audit_by_decision", "decision = ?3 AND ?4 IS NULL", d),
        (None, None) => Driver {
            index: None,
            condition: "?3 IS NULL AND ?4 IS NULL",
            values: (None, None),
        },
    }
}

pub(crate) fn audit_query_sync(
    conn: &mut Connection,
    q: &AuditQuery,
    scan_limit: usize,
) -> Result<AuditPage, StoreError> {
    let empty = AuditPage {
        rows: Vec::new(),
        next: None,
    };
    if q.limit == 0 {
        return Ok(empty);
    }
    // One snapshot for the bisection and the scan.
    let tx = conn.transaction()?;
    // `seq` in [lo, hi).
    let mut hi = q.before.unwrap_or(i64::MAX);
    let mut lo = i64::MIN;
    if let Some(since) = q.since {
        match first_seq_where(&tx, |t| t >= since)? {
            Some(seq) => lo = seq,
            None => return Ok(empty),
        }
    }
    if let Some(until) = q.until {
        if let Some(seq) = first_seq_where(&tx, |t| t > until)? {
            hi = hi.min(seq);
        }
    }
    if lo >= hi {
        return Ok(empty);
    }
    // The caller is in the detail's JSON: extracted only when asked for,
    // and only from valid JSON (a row edited into invalid JSON does not
    // fail the query).
    let caller_columns = if q.caller.is_some() {
        ", CASE WHEN json_valid(detail) THEN CAST(json_extract(detail, '$.caller.kind') AS TEXT) END, \
           CASE WHEN json_valid(detail) THEN CAST(json_extract(detail, '$.caller.spiffe_id') AS TEXT) END, \
           CASE WHEN json_valid(detail) THEN CAST(json_extract(detail, '$.caller.ip') AS TEXT) END"
    } else {
        ", NULL, NULL, NULL"
    };
    let Driver {
        index,
        condition,
        values,
    } = driver(q);
    let indexed = index.map(|i| format!("INDEXED BY {i}")).unwrap_or_default();
    let sql = format!(
        "SELECT {COLUMNS}{caller_columns} FROM audit {indexed} \
         WHERE {condition} AND seq < ?1 AND seq >= ?2 ORDER BY seq DESC"
    );
    let mut page = Vec::new();
    let mut next = None;
    {
        let mut stmt = tx.prepare_cached(&sql)?;
        let mut rows = stmt.query(params![hi, lo, values.0, values.1])?;
        let mut read = 0usize;
        while let Some(r) = rows.next()? {
            read += 1;
            let row = read_row(r)?;
            let caller: [Option<String>; 3] = [r.get(15)?, r.get(16)?, r.get(17)?];
            let seq = row.seq;
            if matches(q, &row, &caller) {
                page.push(row);
                if page.len() >= q.limit as usize {
                    next = Some(seq);
                    break;
                }
            }
            if read >= scan_limit {
                next = Some(seq);
                break;
            }
        }
    }
    tx.finish()?;
    Ok(AuditPage { rows: page, next })
}

/// Whether `row` meets every condition of `q` (the driving one included:
/// checking it again costs nothing and keeps this the one definition).
fn matches(q: &AuditQuery, row: &AuditRow, caller: &[Option<String>; 3]) -> bool {
    let eq =
        |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
    if !(eq(&q.tenant, row.tenant.as_deref())
        && eq(&q.function, row.function.as_deref())
        && eq(&q.action, Some(row.action.as_str()))
        && eq(&q.decision, Some(row.decision.as_str())))
    {
        return false;
    }
    if q.status.is_some_and(|s| row.status != Some(s)) {
        return false;
    }
    if q.since.is_some() || q.until.is_some() {
        let Ok(t) = OffsetDateTime::parse(&row.time, &Rfc3339) else {
            return false;
        };
        if q.since.is_some_and(|s| t < s) || q.until.is_some_and(|u| t > u) {
            return false;
        }
    }
    if let Some(c) = q.caller.as_deref() {
        let [kind, spiffe_id, ip] = caller;
        let named = row.actor == c
            || spiffe_id.as_deref() == Some(c)
            || ip.as_deref() == Some(c)
            || (c == "public" && kind.as_deref() == Some("gateway"));
        if !named {
            return false;
        }
    }
    true
}

/// The smallest `seq` whose time satisfies `pred`, which must be false and
/// then true along the log (records are stamped in `seq` order). A time
/// that does not parse counts as false. Gaps in `seq` are allowed.
pub(crate) fn first_seq_where(
    tx: &rusqlite::Transaction<'_>,
    pred: impl Fn(OffsetDateTime) -> bool,
) -> Result<Option<i64>, StoreError> {
    let (min, max): (Option<i64>, Option<i64>) =
        // Two subqueries: SQLite answers a lone MIN or MAX of the key from the B-tree's ends,
        // but scans the whole table for both in one query.
        tx.query_row(
            "SELECT (SELECT MIN(seq) FROM audit), (SELECT MAX(seq) FROM audit)",
            [],
            |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let (Some(mut lo), Some(max)) = (min, max) else {
        return Ok(None);
    };
    let mut hi = max.saturating_add(1);
    let mut found = None;
    let mut probe =
        tx.prepare_cached("SELECT seq, time FROM audit WHERE seq >= ?1 ORDER BY seq LIMIT 1")?;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let at: Option<(i64, String)> = probe
            .query_row([mid], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match at {
            Some((seq, time)) if seq < hi => {
                let holds = OffsetDateTime::parse(&time, &Rfc3339).is_ok_and(&pred);
                if holds {
                    found = Some(seq);
                    hi = mid;
                } else {
                    lo = seq.saturating_add(1);
                }
            }
            _ => hi = mid,
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuditDurability;

    /// Rows as the audit writer stores them (hashes are not checked here).
    fn rows(n: i64) -> Vec<AuditRow> {
        (1..=n)
            .map(|seq| {
                let tenant = ["acme", "beta"][(seq % 2) as usize];
                let function = ["hello", "echo", "kv"][(seq % 3) as usize];
                let decision = if seq % 5 == 0 { "deny" } else { "allow" };
                let action = if seq % 7 == 0 { "deploy" } else { "invoke" };
                let detail = match seq % 4 {
                    0 => Some(r#"{"caller":{"kind":"gateway","ip":"10.0.0.9"}}"#.to_owned()),
                    1 => Some(
                        r#"{"caller":{"kind":"function","spiffe_id":"spiffe://zerofn.local/tenant/acme/fn/call"}}"#
                            .to_owned(),
                    ),
                    2 => Some("not json".to_owned()),
                    _ => None,
                };
                AuditRow {
                    seq,
                    // One record per second from 2026-01-01T00:00:00Z.
                    time: (OffsetDateTime::UNIX_EPOCH
                        + time::Duration::seconds(1_767_225_600 + seq))
                    .format(&Rfc3339)
                    .unwrap(),
                    actor: if seq % 11 == 0 { "operator:alice" } else { "gateway" }.to_owned(),
                    action: action.to_owned(),
                    tenant: Some(tenant.to_owned()),
                    function: Some(function.to_owned()),
                    digest: None,
                    decision: decision.to_owned(),
                    reason: None,
                    duration_us: None,
                    status: Some(if decision == "deny" { 403 } else { 200 }),
                    invocation_id: None,
                    detail,
                    prev_hash: String::new(),
                    hash: String::new(),
                }
            })
            .collect()
    }

    fn store_with(n: i64) -> (tempfile::TempDir, Store, Vec<AuditRow>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let all = rows(n);
        let mut w = store.open_audit_writer(AuditDurability::Disk).unwrap();
        w.append_batch(&all).unwrap();
        (dir, store, all)
    }

    fn at(seq: i64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_767_225_600 + seq)
    }

    /// Every page of `q`, following cursors; asserts each page is newest first.
    async fn all_pages(store: &Store, mut q: AuditQuery) -> (Vec<i64>, usize) {
        let mut seqs = Vec::new();
        let mut pages = 0;
        loop {
            let page = store.audit_query(q.clone()).await.unwrap();
            pages += 1;
            assert!(page.rows.len() <= q.limit as usize);
            seqs.extend(page.rows.iter().map(|r| r.seq));
            match page.next {
                Some(n) => q.before = Some(n),
                None => break,
            }
        }
        assert!(seqs.windows(2).all(|w| w[0] > w[1]), "not newest first");
        (seqs, pages)
    }

    type Keep = Box<dyn Fn(&AuditRow) -> bool>;

    fn keep(f: impl Fn(&AuditRow) -> bool + 'static) -> Keep {
        Box::new(f)
    }

    fn expected(all: &[AuditRow], keep: impl Fn(&AuditRow) -> bool) -> Vec<i64> {
        let mut v: Vec<i64> = all.iter().filter(|r| keep(r)).map(|r| r.seq).collect();
        v.reverse();
        v
    }

    #[tokio::test]
    async fn every_filter_and_combination_returns_exactly_the_matching_records() {
        let (_dir, store, all) = store_with(500);
        let q = |f: fn(&mut AuditQuery)| {
            let mut q = AuditQuery {
                limit: 7,
                ..AuditQuery::default()
            };
            f(&mut q);
            q
        };
        let cases: Vec<(AuditQuery, Keep)> = vec![
            (q(|_| {}), keep(|_| true)),
            (
                q(|q| q.tenant = Some("acme".into())),
                keep(|r| r.tenant.as_deref() == Some("acme")),
            ),
            (
                q(|q| q.function = Some("echo".into())),
                keep(|r| r.function.as_deref() == Some("echo")),
            ),
            (
                q(|q| {
                    q.function = Some("echo".into());
                    q.decision = Some("deny".into());
                }),
                keep(|r| r.function.as_deref() == Some("echo") && r.decision == "deny"),
            ),
            (
                q(|q| {
                    q.tenant = Some("beta".into());
                    q.action = Some("deploy".into());
                }),
                keep(|r| r.tenant.as_deref() == Some("beta") && r.action == "deploy"),
            ),
            (
                q(|q| q.decision = Some("allow".into())),
                keep(|r| r.decision == "allow"),
            ),
            (q(|q| q.status = Some(403)), keep(|r| r.status == Some(403))),
            (
                q(|q| q.caller = Some("operator:alice".into())),
                keep(|r| r.actor == "operator:alice"),
            ),
            (
                q(|q| q.caller = Some("spiffe://zerofn.local/tenant/acme/fn/call".into())),
                keep(|r| r.seq % 4 == 1),
            ),
            (
                q(|q| q.caller = Some("public".into())),
                keep(|r| r.seq % 4 == 0),
            ),
            (
                q(|q| q.caller = Some("10.0.0.9".into())),
                keep(|r| r.seq % 4 == 0),
            ),
            (
                q(|q| {
                    q.since = Some(at(100));
                    q.until = Some(at(150));
                    q.action = Some("invoke".into());
                }),
                keep(|r| (100..=150).contains(&r.seq) && r.action == "invoke"),
            ),
            (
                q(|q| q.since = Some(at(490) + time::Duration::milliseconds(500))),
                keep(|r| r.seq >= 491),
            ),
            (q(|q| q.until = Some(at(3))), keep(|r| r.seq <= 3)),
            (q(|q| q.since = Some(at(501))), keep(|_| false)),
            (q(|q| q.tenant = Some("nobody".into())), keep(|_| false)),
            (q(|q| q.before = Some(10)), keep(|r| r.seq < 10)),
        ];
        for (i, (query, keep)) in cases.into_iter().enumerate() {
            let (seqs, _) = all_pages(&store, query.clone()).await;
            assert_eq!(seqs, expected(&all, keep), "case {i}: {query:?}");
        }
    }

    #[tokio::test]
    async fn a_page_reads_at_most_the_scan_limit_and_says_where_to_go_on() {
        let (_dir, store, all) = store_with(300);
        // Deny records of `acme/kv`: 10 among the 150 rows of `acme`.
        let q = AuditQuery {
            function: Some("kv".into()),
            tenant: Some("acme".into()),
            decision: Some("deny".into()),
            limit: 100,
            ..AuditQuery::default()
        };
        let want = expected(&all, |r| {
            r.function.as_deref() == Some("kv")
                && r.tenant.as_deref() == Some("acme")
                && r.decision == "deny"
        });
        assert_eq!(want.len(), 10);
        // With a scan limit of 5 rows, each page reads 5 `acme` rows at most.
        let mut conn = Connection::open(store.path()).unwrap();
        let mut seqs = Vec::new();
        let mut cursor = q.clone();
        let mut pages = 0;
        loop {
            let page = audit_query_sync(&mut conn, &cursor, 5).unwrap();
            pages += 1;
            assert!(page.rows.len() <= 5);
            seqs.extend(page.rows.iter().map(|r| r.seq));
            match page.next {
                Some(n) => cursor.before = Some(n),
                None => break,
            }
        }
        assert_eq!(seqs, want);
        // 150 rows, 5 per page: 30 pages, and one more to find the end.
        assert!(pages >= 30, "{pages} pages");
    }

    #[tokio::test]
    async fn the_indexes_exist_and_drive_the_queries() {
        let (_dir, store, _) = store_with(10);
        let conn = Connection::open(store.path()).unwrap();
        for (q, index) in [
            (
                AuditQuery {
                    function: Some("kv".into()),
                    tenant: Some("acme".into()),
                    ..AuditQuery::default()
                },
                Some("audit_by_tenant"),
            ),
            (
                AuditQuery {
                    tenant: Some("acme".into()),
                    decision: Some("deny".into()),
                    ..AuditQuery::default()
                },
                Some("audit_by_tenant"),
            ),
            (
                AuditQuery {
                    decision: Some("deny".into()),
                    action: Some("invoke".into()),
                    function: Some("kv".into()),
                    ..AuditQuery::default()
                },
                Some("audit_by_decision"),
            ),
            (
                AuditQuery {
                    action: Some("invoke".into()),
                    decision: Some("allow".into()),
                    ..AuditQuery::default()
                },
                Some("audit_by_action"),
            ),
            (
                AuditQuery {
                    function: Some("kv".into()),
                    ..AuditQuery::default()
                },
                None,
            ),
        ] {
            let d = driver(&q);
            assert_eq!(d.index, index, "{q:?}");
            let indexed = index.map(|i| format!("INDEXED BY {i}")).unwrap_or_default();
            let plan: String = conn
                .query_row(
                    &format!(
                        "EXPLAIN QUERY PLAN SELECT time FROM audit {indexed} \
                         WHERE {} AND seq < ?1 AND seq >= ?2 ORDER BY seq DESC",
                        d.condition
                    ),
                    params![5, 0, d.values.0, d.values.1],
                    |r| r.get(3),
                )
                .unwrap();
            if let Some(index) = index {
                assert!(plan.contains(index), "{plan}");
            }
            assert!(
                !plan.contains("TEMP B-TREE"),
                "sorts instead of walking the index: {plan}"
            );
        }
    }

    #[tokio::test]
    async fn an_empty_log_answers_an_empty_page() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let page = store
            .audit_query(AuditQuery {
                since: Some(at(1)),
                limit: 10,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(
            page,
            AuditPage {
                rows: vec![],
                next: None
            }
        );
    }
}
