//! The egress gateway end to end, inside a network namespace the test
//! makes (`unshare -rn`): the real `zerofn` binary, the `fetch-c` guest
//! (which hands any URL to wasi:http split naively), a DNS server in the
//! test (`--egress-dns`), one "public" upstream on 93.184.216.34 and
//! listeners on every forbidden address the requests aim at, which must
//! see no connection at all.
//!
//! The test re-runs itself under `unshare -rn` (a user and network
//! namespace: addresses on its own `lo`, nothing reaches the host's
//! network), so the addresses below exist only for it.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::*;
use crate::Setup;

const NETNS_ENV: &str = "ZEROFN_EGRESS_NETNS";
const TEST_NAME: &str =
    "egress::egress_is_enforced_against_url_tricks_forbidden_ranges_and_rebinding";

/// A listener that answers every request with `answer` (or a 302 to
/// `redirect` for `/redirect`), counting connections and keeping heads.
struct Upstream {
    connections: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

fn upstream(
    addr: SocketAddr,
    answer: &'static str,
    redirect: Option<&'static str>,
    stop: Arc<AtomicBool>,
) -> Upstream {
    let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    listener.set_nonblocking(true).unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (count, seen) = (connections.clone(), heads.clone());
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = vec![0u8; 8192];
            let mut got = 0;
            while got < buf.len() {
                match s.read(&mut buf[got..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
                if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buf[..got]).into_owned();
            let response = match redirect {
                Some(location) if head.starts_with("GET /redirect") => format!(
                    "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                ),
                _ => format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                ),
            };
            seen.lock().unwrap().push(head);
            let _ = s.write_all(response.as_bytes());
        }
    });
    Upstream { connections, heads }
}

/// The test's DNS server: the answer for the `round`-th question about
/// `name` (A and AAAA each count).
fn dns(addr: SocketAddr, stop: Arc<AtomicBool>) {
    dns_answering(addr, stop, |name, round| {
        let ip = |s: &str| -> Vec<IpAddr> { vec![s.parse().unwrap()] };
        match name {
            "api.public.test" | "shop.public.test" | "a.wild.test" | "a.b.wild.test"
            | "wild.test" | "other.test" => ip("93.184.216.34"),
            "db.internal" => ip("10.1.2.3"),
            "private.test" => ip("10.9.9.9"),
            "loop.public.test" => ip("127.0.0.1"),
            "meta.public.test" => ip("169.254.169.254"),
            "mapped.public.test" => ip("::ffff:127.0.0.1"),
            // First public, then loopback, TTL 0 (every answer is).
            "rebind.test" if round == 0 => ip("93.184.216.34"),
            "rebind.test" => ip("127.0.0.1"),
            _ => Vec::new(),
        }
    });
}

/// A DNS server on `addr` answering `answers(name, n)` for the n-th
/// question about `name` (counted by its A question), until `stop`. Shared
/// with the other tests that run in a network namespace (`jwks_url.rs`).
pub(crate) fn dns_answering(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    answers: impl Fn(&str, usize) -> Vec<IpAddr> + Send + 'static,
) {
    let socket = UdpSocket::bind(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    std::thread::spawn(move || {
        let mut asked: std::collections::HashMap<String, usize> = Default::default();
        let mut buf = [0u8; 512];
        while !stop.load(Ordering::SeqCst) {
            let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                continue;
            };
            let Some((_, name, qtype)) = zerofn_egress_answer::question(&buf[..n]) else {
                continue;
            };
            // Resolutions are counted by their A question (the AAAA one
            // gets no IPv4 answer either way).
            let count = asked.entry(name.clone()).or_default();
            let round = *count;
            if qtype == 1 {
                *count += 1;
            }
            let ips = answers(&name, round);
            if let Some(reply) = zerofn_egress_answer::build(&buf[..n], &ips) {
                let _ = socket.send_to(&reply, peer);
            }
        }
    });
}

/// The minimal DNS wire format the test server needs (the platform's own
/// client lives in `zerofn_egress::resolve`; this is written separately so
/// the test does not check the platform with the platform's code).
mod zerofn_egress_answer {
    use std::net::IpAddr;

    fn name_at(packet: &[u8], mut pos: usize) -> Option<(String, usize)> {
        let mut labels = Vec::new();
        loop {
            let len = *packet.get(pos)? as usize;
            pos += 1;
            if len == 0 {
                return Some((labels.join("."), pos));
            }
            labels.push(String::from_utf8_lossy(packet.get(pos..pos + len)?).to_ascii_lowercase());
            pos += len;
        }
    }

    pub fn question(packet: &[u8]) -> Option<(u16, String, u16)> {
        let id = u16::from_be_bytes([*packet.first()?, *packet.get(1)?]);
        let (name, pos) = name_at(packet, 12)?;
        let qtype = u16::from_be_bytes([*packet.get(pos)?, *packet.get(pos + 1)?]);
        Some((id, name, qtype))
    }

    pub fn build(query: &[u8], ips: &[IpAddr]) -> Option<Vec<u8>> {
        let (_, _, qtype) = question(query)?;
        let (_, end) = name_at(query, 12)?;
        let records: Vec<Vec<u8>> = ips
            .iter()
            .filter_map(|ip| match (ip, qtype) {
                (IpAddr::V4(v4), 1) => Some(v4.octets().to_vec()),
                (IpAddr::V6(v6), 28) => Some(v6.octets().to_vec()),
                _ => None,
            })
            .collect();
        let mut out = query.get(..end + 4)?.to_vec();
        out[2] = 0x81;
        out[3] = if records.is_empty() { 0x83 } else { 0x80 };
        out[6] = 0;
        out[7] = records.len() as u8;
        out[8..12].fill(0);
        for data in records {
            out.extend_from_slice(&[0xc0, 12]);
            out.extend_from_slice(&qtype.to_be_bytes());
            out.extend_from_slice(&[0, 1, 0, 0, 0, 0]);
            out.extend_from_slice(&(data.len() as u16).to_be_bytes());
            out.extend_from_slice(&data);
        }
        Some(out)
    }
}

pub(crate) fn sh(cmd: &str) {
    let status = Command::new("sh").args(["-c", cmd]).status().unwrap();
    assert!(status.success(), "{cmd}");
}

const ALLOW: &str = r#"
[egress]
allow = [
  "http://api.public.test:8000",
  "http://*.wild.test:8000",
  { url = "http://shop.public.test:8000/v1/", methods = ["GET"] },
  { url = "http://db.internal:8000", allow_ranges = ["10.0.0.0/8"] },
  "http://private.test:8000",
  "http://loop.public.test:8000",
  "http://meta.public.test:8000",
  "http://mapped.public.test:8000",
  "http://rebind.test:8000",
]
"#;

#[test]
fn egress_is_enforced_against_url_tricks_forbidden_ranges_and_rebinding() {
    if std::env::var_os(NETNS_ENV).is_none() {
        // Run this very test again, alone, inside its own user and network
        // namespace.
        let exe = std::env::current_exe().unwrap();
        let status = Command::new("unshare")
            .arg("-rn")
            .arg(exe)
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(NETNS_ENV, "1")
            .status()
            .expect("unshare (util-linux) runs the test in a network namespace");
        assert!(status.success(), "the test failed inside its namespace");
        return;
    }
    sh("ip link set lo up");
    for a in [
        "93.184.216.34",
        "10.1.2.3",
        "10.9.9.9",
        "169.254.169.254",
        "169.254.170.2",
        "100.100.100.200",
        "192.168.0.1",
        "192.168.1.1",
    ] {
        sh(&format!("ip addr add {a}/32 dev lo"));
    }
    let stop = Arc::new(AtomicBool::new(false));
    dns("127.0.0.1:53".parse().unwrap(), stop.clone());
    let public = upstream(
        "93.184.216.34:8000".parse().unwrap(),
        "public",
        Some("http://meta.public.test:8000/latest/meta-data/"),
        stop.clone(),
    );
    let db = upstream("10.1.2.3:8000".parse().unwrap(), "db", None, stop.clone());
    let forbidden: Vec<(&str, Upstream)> = [
        "127.0.0.1:80",
        "127.0.0.1:8000",
        "127.0.0.1:22",
        "127.0.0.1:11211",
        "127.88.23.245:22",
        "127.2.2.2:80",
        "127.127.127.127:80",
        "127.0.1.3:80",
        "10.9.9.9:8000",
        "10.1.2.3:80",
        "169.254.169.254:80",
        "169.254.169.254:8000",
        "169.254.170.2:80",
        "100.100.100.200:80",
        "192.168.0.1:80",
        "192.168.1.1:80",
        "[::1]:80",
    ]
    .into_iter()
    .map(|a| {
        (
            a,
            upstream(a.parse().unwrap(), "forbidden", None, stop.clone()),
        )
    })
    .collect();

    let s = Setup::with_args(&["--egress-dns", "127.0.0.1:53"]);
    s.deploy("fetch", "fetch-c", &["/fetch"], ALLOW);
    let fetch = |line: &str| http(&s.platform.gateway, "POST", "/fetch", &[], line.as_bytes());

    // The compiled allowlist is Cedar, shown like every other grant.
    let shown = ok(s.platform.cli(&["policy", "show", "acme", "fetch"]));
    assert!(
        shown.contains("acme/fetch/egress/http://_.wild.test:8000"),
        "{shown}"
    );
    assert!(
        shown.contains("resource.parent == \"wild.test\""),
        "{shown}"
    );

    // An allowed name works; Host is the checked name; the forged caller
    // header never leaves.
    let r = fetch("GET http://api.public.test:8000/hello");
    assert_eq!((r.status, r.text().as_str()), (200, "public"));
    let head = public
        .heads
        .lock()
        .unwrap()
        .last()
        .cloned()
        .unwrap()
        .to_ascii_lowercase();
    assert!(head.contains("host: api.public.test:8000\r\n"), "{head}");
    assert!(!head.contains("x-zerofn"), "{head}");
    // A range the entry names is reachable.
    let r = fetch("GET http://db.internal:8000/");
    assert_eq!((r.status, r.text().as_str()), (200, "db"));
    // Path prefix and method narrow an entry.
    assert_eq!(
        fetch("GET http://shop.public.test:8000/v1/items").status,
        200
    );
    let denied = |line: &str, code: &str| {
        let r = fetch(line);
        assert_eq!((r.status, r.text()), (502, code.to_owned()), "{line}");
    };
    denied(
        "POST http://shop.public.test:8000/v1/items",
        "HTTP-request-denied",
    );
    denied(
        "GET http://shop.public.test:8000/v2/items",
        "HTTP-request-denied",
    );
    // Unlisted host and port; a wildcard is one label, not two, not the apex.
    assert_eq!(fetch("GET http://a.wild.test:8000/").status, 200);
    denied("GET http://a.b.wild.test:8000/", "HTTP-request-denied");
    denied("GET http://wild.test:8000/", "HTTP-request-denied");
    denied("GET http://other.test:8000/", "HTTP-request-denied");
    denied("GET http://api.public.test:8001/", "HTTP-request-denied");
    denied("GET https://api.public.test:8000/", "HTTP-request-denied");
    // Listed names resolving into forbidden ranges.
    for name in [
        "loop.public.test",
        "meta.public.test",
        "private.test",
        "mapped.public.test",
    ] {
        denied(
            &format!("GET http://{name}:8000/"),
            "destination-IP-prohibited",
        );
    }
    // A redirect is handed to the guest; its next hop is checked afresh.
    let r = fetch("GET http://api.public.test:8000/redirect");
    assert_eq!(r.status, 302);
    denied(
        "GET http://meta.public.test:8000/latest/meta-data/",
        "destination-IP-prohibited",
    );
    // Rebinding: the first answer is public and used; the second is
    // loopback and refused; nothing reaches 127.0.0.1:8000.
    assert_eq!(fetch("GET http://rebind.test:8000/").status, 200);
    denied("GET http://rebind.test:8000/", "destination-IP-prohibited");

    // Every notation in the shared SSRF corpus is refused.
    let corpus = zerofn_testkit::testdata::read_to_string("ssrf/ssrf-bypass-payloads.txt");
    let mut tried = 0;
    for line in corpus
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let r = fetch(&format!("GET {line}"));
        assert_ne!(r.status, 200, "{line}: {}", r.text());
        tried += 1;
    }
    assert!(tried >= 60);

    // The same through a guest that normalises the URL with the WHATWG parser
    // first (`new URL`, as JavaScript's `fetch` does): what reaches the host is
    // then the parser's reading, and the host still refuses every forbidden
    // destination.
    s.deploy("fetchjs", "fetch-js", &["/fetchjs"], ALLOW);
    let fetch_js = |line: &str| {
        http(
            &s.platform.gateway,
            "POST",
            "/fetchjs",
            &[],
            line.as_bytes(),
        )
    };
    let r = fetch_js("GET http://API.Public.Test:8000/hello");
    assert_eq!((r.status, r.text().as_str()), (200, "public"));
    // WHATWG leaves userinfo out of the host: the request goes to the listed
    // name without it (fetch-c hands it on and is refused).
    let r = fetch_js("GET http://user:pw@api.public.test:8000/hello");
    assert_eq!((r.status, r.text().as_str()), (200, "public"));
    for name in ["loop.public.test", "meta.public.test", "private.test"] {
        let r = fetch_js(&format!("GET http://{name}:8000/"));
        assert_eq!(
            (r.status, r.text()),
            (502, "destination-IP-prohibited".to_owned()),
            "{name}"
        );
    }
    let mut normalised = 0;
    for line in corpus
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let r = fetch_js(&format!("GET {line}"));
        assert_ne!(r.status, 200, "{line} (normalised): {}", r.text());
        normalised += 1;
    }
    assert_eq!(normalised, tried);
    for (addr, listener) in &forbidden {
        assert_eq!(
            listener.connections.load(Ordering::SeqCst),
            0,
            "a connection reached {addr}"
        );
    }
    assert_eq!(db.connections.load(Ordering::SeqCst), 1);

    // Every attempt the host saw is in the flow log.
    let flows: Vec<serde_json::Value> = s
        .audit(2000)
        .into_iter()
        .filter(|r| r["action"] == "capability" && r["detail"]["kind"] == "egress")
        .collect();
    let find = |url: &str, reason: &str| {
        flows
            .iter()
            .find(|r| r["detail"]["url"] == url && r["detail"]["reason"] == reason)
            .unwrap_or_else(|| panic!("no flow record for {url} ({reason})"))
            .clone()
    };
    let ok_flow = find("http://api.public.test:8000/hello", "allowed");
    assert_eq!(ok_flow["decision"], "allow");
    assert_eq!(ok_flow["detail"]["connected"], "93.184.216.34:8000");
    assert_eq!(ok_flow["detail"]["resolved"][0], "93.184.216.34");
    assert_eq!(ok_flow["detail"]["status"], 200);
    assert_eq!(ok_flow["detail"]["bytes_in"], 6);
    assert_eq!(
        ok_flow["detail"]["policies"][0],
        "acme/fetch/egress/http://api.public.test:8000"
    );
    let meta = find(
        "http://meta.public.test:8000/",
        "forbidden_range 169.254.169.254",
    );
    assert_eq!(meta["decision"], "deny");
    assert!(meta["detail"]["connected"].is_null());
    find("http://other.test:8000/", "not_allowed");
    find("http://0xa9fea9fe/", "not_allowed");
    assert!(flows.len() >= 20, "{} flow records", flows.len());

    // The access analyzer: destinations used, unused and denied, and the
    // allowlist that would have sufficed.
    let report: serde_json::Value = serde_json::from_str(&ok(s.platform.cli(&[
        "access-analyzer",
        "acme",
        "fetch",
        "--since",
        "1h",
        "--json",
    ])))
    .unwrap();
    let f = &report["functions"][0];
    let strings = |k: &str| -> Vec<String> {
        f[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        strings("used").contains(&"egress:http://api.public.test:8000".to_owned()),
        "{f}"
    );
    assert!(
        strings("unused").contains(&"egress:http://*.wild.test:8000".to_owned())
            || strings("used").contains(&"egress:http://*.wild.test:8000".to_owned()),
        "{f}"
    );
    let denied = strings("denied");
    assert!(
        denied.contains(&"egress:http://other.test:8000".to_owned()),
        "{denied:?}"
    );
    assert!(
        denied.contains(&"egress:http://meta.public.test:8000".to_owned()),
        "{denied:?}"
    );
    let suggested = f["suggested"].as_str().unwrap();
    assert!(
        suggested.contains("[egress]") && suggested.contains("\"http://api.public.test:8000\""),
        "{suggested}"
    );
    stop.store(true, Ordering::SeqCst);
}
