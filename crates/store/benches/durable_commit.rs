//! What one durable audit commit costs at one connection, against what an
//! append-only segment file of the log's own would cost (issues 18 and 20):
//! the measurement to take before building that segment.
//!
//! Three ways of making one audit row (about 1 KiB, the real schema and its
//! query indexes) durable, alternated in blocks so they share the disk's
//! conditions (the machine may be shared):
//!
//! - `sqlite-full`: today's `--audit-durability disk` commit, the writer's
//!   connection with `synchronous=FULL` in WAL mode (one WAL sync per commit;
//!   a second connection checkpoints every 200 commits, as the flusher does);
//! - `segment-sync`: a write of the row's bytes at the end of a preallocated
//!   file whose pages were written once (so no extent changes from unwritten to
//!   written, which would make `fdatasync` commit metadata on ext4 and xfs),
//!   then `fdatasync` (`File::sync_data`);
//! - `sqlite-normal`: the same SQLite insert with `synchronous=NORMAL` (no
//!   sync): what indexing the row would still cost after a segment sync.
//!
//! Prints p50, p90, p99 and p99.9 per way and the load average before and
//! after. Not criterion: criterion reports means and medians, and the
//! question is the tail. Runs in the directory `ZEROFN_BENCH_DIR` (default:
//! cargo's temporary directory under the target directory): put it on the
//! file system that holds the data directory.
//!
//! `cargo bench -p zerofn-store --bench durable_commit`
//! (`ZEROFN_BENCH_COMMITS`, default 3000 per way).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use zerofn_store::{AuditDurability, AuditRow, Store};

/// Commits of each way in one block before the next way's block.
const BLOCK: usize = 50;
/// The preallocated segment: larger than the most bytes one run appends.
const SEGMENT_BYTES: usize = 64 << 20;

/// An invocation record of about the size the gateway writes (with the
/// decisions in its detail).
fn row(seq: i64) -> AuditRow {
    AuditRow {
        seq,
        time: "2026-12-04T23:30:00.123456Z".into(),
        actor: "public:127.0.0.1".into(),
        action: "invoke".into(),
        tenant: Some("bench".into()),
        function: Some("hello-c".into()),
        digest: Some(format!("sha256:{}", "a".repeat(64))),
        decision: "allow".into(),
        reason: None,
        duration_us: Some(123),
        status: Some(200),
        invocation_id: Some(format!("{seq:032x}")),
        detail: Some(format!(
            "{{\"decisions\":[{{\"action\":\"invoke\",\"policies\":[\"{}\"]}}]}}",
            "p".repeat(560)
        )),
        prev_hash: "b".repeat(64),
        hash: "c".repeat(64),
    }
}

fn row_bytes(r: &AuditRow) -> Vec<u8> {
    // About what a framed record would hold: its fields, not a format.
    format!("{r:?}").into_bytes()
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn report(name: &str, mut samples: Vec<f64>) {
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).copied().unwrap_or(f64::NAN)
    };
    println!(
        "{name:14} n={:5}  p50 {:8.0} µs  p90 {:8.0} µs  p99 {:8.0} µs  p99.9 {:8.0} µs",
        samples.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(0.999)
    );
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() {
    let commits: usize = std::env::var("ZEROFN_BENCH_COMMITS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let base = std::env::var_os("ZEROFN_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&base).unwrap();

    let full_dir = tempfile::tempdir_in(&base).unwrap();
    let full = Store::open(full_dir.path()).unwrap();
    let mut full_writer = full.open_audit_writer(AuditDurability::Disk).unwrap();
    let mut full_flusher = full.open_audit_flusher().unwrap();

    let normal_dir = tempfile::tempdir_in(&base).unwrap();
    let normal = Store::open(normal_dir.path()).unwrap();
    let mut normal_writer = normal
        .open_audit_writer(AuditDurability::Process {
            flush_interval: Duration::from_secs(1),
        })
        .unwrap();
    let mut normal_flusher = normal.open_audit_flusher().unwrap();

    let segment_path = full_dir.path().join("segment.log");
    let mut segment = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&segment_path)
        .unwrap();
    // Written once and synced, so later writes only overwrite allocated,
    // initialised blocks: `fdatasync` then has no metadata to commit.
    segment.write_all(&vec![0u8; SEGMENT_BYTES]).unwrap();
    segment.sync_all().unwrap();
    segment.seek(SeekFrom::Start(0)).unwrap();

    println!(
        "durable commit of one ~{} B audit row, {commits} per way, in {} (load {})",
        row_bytes(&row(1)).len(),
        base.display(),
        load()
    );
    let (mut t_full, mut t_segment, mut t_normal) = (Vec::new(), Vec::new(), Vec::new());
    let mut seq = 0i64;
    while t_full.len() < commits {
        for _ in 0..BLOCK {
            seq += 1;
            if seq % 200 == 0 {
                full_flusher.flush().unwrap();
                normal_flusher.flush().unwrap();
            }
            let r = [row(seq)];
            let started = Instant::now();
            full_writer.append_batch(&r).unwrap();
            t_full.push(micros(started.elapsed()));
        }
        let mut written = 0usize;
        for i in 0..BLOCK {
            let bytes = row_bytes(&row(seq - BLOCK as i64 + 1 + i as i64));
            written += bytes.len();
            let started = Instant::now();
            segment.write_all(&bytes).unwrap();
            segment.sync_data().unwrap();
            t_segment.push(micros(started.elapsed()));
        }
        if segment.stream_position().unwrap() + written as u64 > SEGMENT_BYTES as u64 {
            segment.seek(SeekFrom::Start(0)).unwrap();
        }
        for i in 0..BLOCK {
            let r = [row(seq - BLOCK as i64 + 1 + i as i64)];
            let started = Instant::now();
            normal_writer.append_batch(&r).unwrap();
            t_normal.push(micros(started.elapsed()));
        }
    }
    report("sqlite-full", t_full);
    report("segment-sync", t_segment);
    report("sqlite-normal", t_normal);
    println!("load after: {}", load());
}
