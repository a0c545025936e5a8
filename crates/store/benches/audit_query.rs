//! `audit query` on a generated log (1,000,000 records by default;
//! `ZEROFN_BENCH_RECORDS` to change): one page of each kind of query, through
//! the indexes, with the scan bound of a page for sparse matches.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{criterion_group, criterion_main, Criterion};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use zerofn_store::{AuditDurability, AuditQuery, AuditRow, Store};

/// A record as an active platform writes them: 200 tenants of 10 functions, mostly allowed
/// invocations, 1% denials, 0.5% errors, a capability call in 10, a deploy in 10,000; one
/// record every 10 ms.
fn row(seq: i64, start: OffsetDateTime) -> AuditRow {
    let tenant = seq % 200;
    let function = (seq / 200) % 10;
    let (action, actor) = match seq % 10_000 {
        0 => ("deploy", "operator"),
        n if n % 10 == 1 => ("capability", "function"),
        _ => ("invoke", "gateway"),
    };
    let decision = match seq % 200 {
        0 | 1 => "deny",
        2 => "error",
        _ => "allow",
    };
    AuditRow {
        seq,
        time: (start + time::Duration::milliseconds(10 * seq))
            .format(&Rfc3339)
            .unwrap(),
        actor: actor.to_owned(),
        action: action.to_owned(),
        tenant: Some(format!("tenant-{tenant}")),
        function: Some(format!("fn-{function}")),
        digest: Some(format!("sha256:{:064x}", function)),
        decision: decision.to_owned(),
        reason: Some("allowed by acme/fn/invoke/public".to_owned()),
        duration_us: Some(420),
        status: Some(match decision {
            "deny" => 403,
            "error" => 500,
            _ => 200,
        }),
        invocation_id: Some(format!("{seq:032x}")),
        detail: Some(
            r#"{"caller":{"kind":"gateway","ip":"10.1.2.3"},"depth":0,"decisions":[]}"#.to_owned(),
        ),
        prev_hash: "0".repeat(64),
        hash: "1".repeat(64),
    }
}

/// Append `records` generated records in batches of 1,000 (the audit writer's batches are
/// up to 4,096); returns how long it took.
fn fill(store: &Store, records: i64, start: OffsetDateTime) -> std::time::Duration {
    let mut writer = store
        .open_audit_writer(AuditDurability::Process {
            flush_interval: std::time::Duration::from_secs(1),
        })
        .unwrap();
    let rows: Vec<AuditRow> = (1..=records).map(|seq| row(seq, start)).collect();
    let began = std::time::Instant::now();
    for batch in rows.chunks(1000) {
        writer.append_batch(batch).unwrap();
    }
    began.elapsed()
}

fn bench(c: &mut Criterion) {
    let records: i64 = std::env::var("ZEROFN_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = OffsetDateTime::now_utc() - time::Duration::milliseconds(10 * records);
    // What the indexes cost the writer: the same records into a log without them.
    {
        let bare = tempfile::tempdir().unwrap();
        let store = Store::open(bare.path()).unwrap();
        let conn = rusqlite::Connection::open(store.path()).unwrap();
        conn.execute_batch(
            "DROP INDEX audit_by_tenant; DROP INDEX audit_by_action; \
             DROP INDEX audit_by_decision;",
        )
        .unwrap();
        let took = fill(&store, records, start);
        eprintln!("appended {records} records without the query indexes in {took:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let took = fill(&store, records, start);
    eprintln!("appended {records} records with the query indexes in {took:?}");
    let base = AuditQuery {
        limit: 100,
        ..AuditQuery::default()
    };
    let queries = [
        ("newest_100", base.clone()),
        (
            "tenant",
            AuditQuery {
                tenant: Some("tenant-7".into()),
                ..base.clone()
            },
        ),
        (
            "function_and_tenant",
            AuditQuery {
                tenant: Some("tenant-7".into()),
                function: Some("fn-3".into()),
                ..base.clone()
            },
        ),
        (
            "decision_deny",
            AuditQuery {
                decision: Some("deny".into()),
                ..base.clone()
            },
        ),
        (
            "deploys",
            AuditQuery {
                action: Some("deploy".into()),
                ..base.clone()
            },
        ),
        (
            "tenant_deny_last_hour",
            AuditQuery {
                tenant: Some("tenant-7".into()),
                decision: Some("deny".into()),
                since: Some(OffsetDateTime::now_utc() - time::Duration::hours(1)),
                ..base.clone()
            },
        ),
        (
            // No record matches: the page stops at the scan bound.
            "no_match_caller_scan_bound",
            AuditQuery {
                caller: Some("spiffe://nowhere/tenant/x/fn/y".into()),
                ..base.clone()
            },
        ),
        (
            "status_500_of_a_function",
            AuditQuery {
                tenant: Some("tenant-7".into()),
                function: Some("fn-3".into()),
                status: Some(500),
                ..base.clone()
            },
        ),
        (
            // A function name without its tenant: not indexed, driven by the log.
            "function_name_alone",
            AuditQuery {
                function: Some("fn-3".into()),
                ..base.clone()
            },
        ),
    ];
    let mut g = c.benchmark_group("audit_query");
    g.sample_size(20);
    for (name, q) in queries {
        let page = rt.block_on(store.audit_query(q.clone())).unwrap();
        eprintln!("{name}: {} records, next {:?}", page.rows.len(), page.next);
        g.bench_function(name, |b| {
            b.iter(|| rt.block_on(store.audit_query(q.clone())).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
