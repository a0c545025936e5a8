//! The platform's telemetry through the real binary: Prometheus metrics at `GET /metrics`
//! on the control API (authorized like other audit reads) and on the unauthenticated
//! `--metrics-addr` listener, checked with a strict parser of the exposition after real
//! invocations; and `--log-format json`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::Setup;

/// One sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// A strict reader of the OpenMetrics text format (the subset prometheus-client writes):
/// every line is `# HELP`, `# TYPE`, `# UNIT`, a sample of a declared family, or the final
/// `# EOF`; label values are quoted with `\\`, `\"` and `\n` escapes; values are numbers.
/// Histograms have cumulative buckets ending in `+Inf` equal to their `_count`.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut families: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(lines.last(), Some(&""), "the exposition ends in a newline");
    let lines = &lines[..lines.len() - 1];
    assert_eq!(
        lines.last(),
        Some(&"# EOF"),
        "the exposition ends in `# EOF`"
    );
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name) = (parts.next().unwrap(), parts.next().unwrap());
            let value = parts.next().unwrap_or_else(|| panic!("{line}"));
            assert!(valid_name(name), "bad family name in {line}");
            match kind {
                "TYPE" => {
                    assert!(
                        ["counter", "gauge", "histogram", "info", "unknown"].contains(&value),
                        "{line}"
                    );
                    assert!(
                        families.insert(name.to_owned(), value.to_owned()).is_none(),
                        "family declared twice: {line}"
                    );
                }
                "HELP" | "UNIT" => {}
                _ => panic!("unknown comment line {line}"),
            }
            continue;
        }
        let (name, labels, value) = parse_sample(line);
        let family = families
            .iter()
            .filter(|(f, _)| name.starts_with(f.as_str()))
            .max_by_key(|(f, _)| f.len())
            .unwrap_or_else(|| panic!("sample of an undeclared family: {line}"));
        let suffix = &name[family.0.len()..];
        let allowed: &[&str] = match family.1.as_str() {
            "counter" => &["_total", "_created"],
            "gauge" => &[""],
            "histogram" => &["_bucket", "_count", "_sum", "_created"],
            _ => &[""],
        };
        assert!(allowed.contains(&suffix), "suffix `{suffix}` in {line}");
        samples.push((name, labels, value));
    }
    // Histogram buckets: cumulative, and `+Inf` equals `_count`.
    for (family, kind) in &families {
        if kind != "histogram" {
            continue;
        }
        let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for (name, labels, value) in &samples {
            if *name == format!("{family}_bucket") {
                let mut key = labels.clone();
                let le = key.remove("le").expect("a bucket has `le`");
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                series.entry(key).or_default().push((le, *value));
            }
        }
        for (labels, buckets) in series {
            assert!(
                buckets
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "{family} {labels:?}"
            );
            let (le, inf) = *buckets.last().unwrap();
            assert!(le.is_infinite(), "{family} {labels:?} lacks +Inf");
            let count = value_of(&samples, &format!("{family}_count"), &labels);
            assert_eq!(Some(inf), count, "{family} {labels:?}");
        }
    }
    samples
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("{line}"));
    let name = &line[..name_end];
    assert!(valid_name(name), "{line}");
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let eq = rest.find('=').unwrap_or_else(|| panic!("{line}"));
            let key = &rest[..eq];
            assert!(valid_name(key), "label name in {line}");
            rest = rest[eq + 1..]
                .strip_prefix('"')
                .unwrap_or_else(|| panic!("{line}"));
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next() {
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        other => panic!("bad escape {other:?} in {line}"),
                    },
                    Some((_, c)) => value.push(c),
                    None => panic!("unterminated label value in {line}"),
                }
            };
            assert!(labels.insert(key.to_owned(), value).is_none(), "{line}");
            rest = &rest[end + 1..];
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            }
        }
    }
    let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("{line}"));
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("value in {line}")),
    };
    (name.to_owned(), labels, value)
}

fn value_of(samples: &[Sample], name: &str, labels: &BTreeMap<String, String>) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| n == name && l == labels)
        .map(|(_, _, v)| *v)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn token(s: &Setup) -> String {
    std::fs::read_to_string(s.platform.data_dir.join("operator-token"))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn metrics_count_real_invocations_refusals_and_admissions() {
    let s = Setup::with_args(&["--metrics-addr", "127.0.0.1:0"]);
    s.deploy("hello", "hello-c", &["/hello"], "");
    for _ in 0..3 {
        assert_eq!(s.platform.get("/hello").status, 200);
    }
    for _ in 0..2 {
        assert_eq!(s.platform.get("/nothing-here").status, 404);
    }

    // The control API: no token, no metrics (and the refusal is an audit read's).
    let anonymous = http(&s.platform.api, "GET", "/metrics", &[], b"");
    assert_eq!(anonymous.status, 401, "{}", anonymous.text());
    let auth = format!("Bearer {}", token(&s));
    let r = http(
        &s.platform.api,
        "GET",
        "/metrics",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        r.header("content-type")
    );
    let samples = parse_exposition(&r.text());
    let v = |name: &str, l: &[(&str, &str)]| value_of(&samples, name, &labels(l));
    let hello = [("tenant", "acme"), ("function", "hello")];
    assert_eq!(
        v(
            "zerofn_invocations_total",
            &[hello[0], hello[1], ("outcome", "allow"), ("status", "2xx")]
        ),
        Some(3.0),
        "{}",
        r.text()
    );
    assert_eq!(
        v("zerofn_invocation_duration_seconds_count", &hello),
        Some(3.0)
    );
    assert!(v("zerofn_invocation_duration_seconds_sum", &hello).unwrap() > 0.0);
    assert_eq!(
        v(
            "zerofn_denials_total",
            &[("action", "invoke"), ("reason", "not_found")]
        ),
        Some(2.0),
        "{}",
        r.text()
    );
    assert_eq!(
        v("zerofn_admissions_total", &[("result", "admitted")]),
        Some(1.0)
    );
    assert_eq!(v("zerofn_instances_in_use", &[]), Some(0.0));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let ca = v(
        "zerofn_certificate_expiry_timestamp_seconds",
        &[("kind", "ca")],
    )
    .unwrap();
    assert!(ca > now, "CA expiry {ca} is not in the future");
    let svid = v("zerofn_svid_expiry_timestamp_seconds", &hello).unwrap();
    assert!(svid > now && svid <= ca, "SVID expiry {svid}");
    assert!(v("zerofn_audit_append_duration_seconds_count", &[]).unwrap() >= 6.0);
    assert!(v("zerofn_audit_commit_batch_records_count", &[]).unwrap() >= 1.0);
    assert!(
        v(
            "zerofn_audit_records_total",
            &[("action", "invoke"), ("outcome", "allow")]
        ) == Some(3.0)
    );
    // No free text: no label value holds a space (reasons are classes, not messages).
    for (name, l, _) in &samples {
        for value in l.values() {
            assert!(!value.contains(' '), "{name} {l:?}");
        }
    }

    // The unauthenticated listener serves the same exposition, and nothing else.
    let metrics_addr = s.platform.metrics.clone().expect("metrics listening line");
    let open = http(&metrics_addr, "GET", "/metrics", &[], b"");
    assert_eq!(open.status, 200);
    let open_samples = parse_exposition(&open.text());
    assert_eq!(
        value_of(
            &open_samples,
            "zerofn_invocations_total",
            &labels(&[hello[0], hello[1], ("outcome", "allow"), ("status", "2xx")])
        ),
        Some(3.0)
    );
    assert_eq!(
        http(&metrics_addr, "GET", "/v1/audit", &[], b"").status,
        404
    );
    assert_eq!(
        http(&metrics_addr, "POST", "/metrics", &[], b"").status,
        405
    );
}

#[test]
fn json_log_format_writes_one_json_object_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin())
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .args([
            "up",
            "--gateway-addr",
            "127.0.0.1:0",
            "--api-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut line = String::new();
    while !line.starts_with("api listening on") {
        assert!(Instant::now() < deadline, "no listening line");
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "zerofn up exited");
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(child.wait().unwrap().success());
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let restored = lines
        .iter()
        .find(|l| l["message"] == "restored deployments")
        .unwrap_or_else(|| panic!("no start-up line in {stderr}"));
    assert_eq!(restored["level"], "INFO");
    assert_eq!(restored["functions"], 0);
    assert!(restored["timestamp"].is_string(), "{restored}");
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "shutting down: finishing in-flight requests"),
        "{stderr}"
    );

    // A start that fails says so as JSON too: the data directory is a file.
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let out = Command::new(bin())
        .arg("--data-dir")
        .arg(&file)
        .args([
            "up",
            "--gateway-addr",
            "127.0.0.1:0",
            "--api-addr",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    let last: serde_json::Value = serde_json::from_str(err.lines().last().unwrap())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {err}"));
    assert_eq!(last["level"], "ERROR", "{err}");
    assert_eq!(last["message"], "zerofn up failed", "{err}");
    assert!(
        last["error"].as_str().unwrap().contains("not-a-dir"),
        "{err}"
    );
}
