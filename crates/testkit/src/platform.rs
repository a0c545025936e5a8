//! The platform under test: runs the real `zerofn` binary on loopback
//! ports, drives it with its own CLI and a minimal HTTP/1.1 client, and
//! stops it (on drop too, within a bounded wait).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `zerofn` binary under test: `ZEROFN_BIN`, else the one cargo built
/// beside the running test (test binaries live in `<target>/<profile>/deps`,
/// binaries in `<target>/<profile>`).
pub fn bin() -> PathBuf {
    if let Some(path) = std::env::var_os("ZEROFN_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the path of the running test");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary is in <target>/<profile>/deps");
    let bin = profile_dir.join(format!("zerofn{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        panic!(
            "the zerofn binary is missing at `{}`; build it (`cargo build -p zerofn`) or set ZEROFN_BIN",
            bin.display()
        );
    }
    bin
}

/// A running platform process.
pub struct Platform {
    pub data_dir: PathBuf,
    pub gateway: String,
    pub api: String,
    /// The unauthenticated metrics listener's address, when started with `--metrics-addr`.
    pub metrics: Option<String>,
    child: Option<Child>,
}

impl Platform {
    pub fn start(data_dir: &Path) -> Platform {
        Self::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Platform {
        Self::start_on(data_dir, "127.0.0.1:0", extra)
    }

    /// Started with the gateway listening on `gateway_addr`.
    pub fn start_on(data_dir: &Path, gateway_addr: &str, extra: &[&str]) -> Platform {
        let mut child = Command::new(bin())
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "up",
                "--gateway-addr",
                gateway_addr,
                "--api-addr",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn zerofn up");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut gateway, mut api, mut metrics) = (None, None, None);
        let want_metrics = extra.contains(&"--metrics-addr");
        let deadline = Instant::now() + Duration::from_secs(120);
        while gateway.is_none() || api.is_none() || (want_metrics && metrics.is_none()) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("zerofn up did not print its listening lines"));
            if let Some(url) = line
                .strip_prefix("gateway listening on http://")
                .or_else(|| line.strip_prefix("gateway listening on https://"))
            {
                gateway = Some(url.to_owned());
            } else if let Some(url) = line
                .strip_prefix("api listening on http://")
                .or_else(|| line.strip_prefix("api listening on https://"))
            {
                api = Some(url.to_owned());
            } else if let Some(url) = line
                .strip_prefix("metrics listening on http://")
                .and_then(|l| l.strip_suffix("/metrics"))
            {
                metrics = Some(url.to_owned());
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Platform {
            data_dir: data_dir.to_path_buf(),
            gateway: gateway.unwrap(),
            api: api.unwrap(),
            metrics,
            child: Some(child),
        }
    }

    /// Run a client command against this platform.
    pub fn cli(&self, args: &[&str]) -> Output {
        cli(&self.data_dir, args)
    }

    /// The platform process's id (for reading its `/proc` entries).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("platform running").id()
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        signal(&child, "TERM");
        wait_bounded(&mut child, Duration::from_secs(60))
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        signal(&child, "KILL");
        wait_bounded(&mut child, Duration::from_secs(30));
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        http(&self.gateway, "GET", path, &[], b"")
    }

    pub fn post(&self, path: &str, body: &[u8]) -> HttpResponse {
        http(&self.gateway, "POST", path, &[], body)
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} failed");
}

fn wait_bounded(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("zerofn did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn cli(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("ZEROFN_API_URL")
        .env_remove("ZEROFN_TOKEN")
        .output()
        .expect("run zerofn")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
pub fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "command failed: {}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Expect failure; returns stderr. An error is one line, except a problem in a file the
/// CLI read (a manifest, a zone, a configuration file): its `error:` line is followed by
/// the quoted source and help, every such line indented.
#[track_caller]
pub fn fails(o: Output) -> String {
    assert!(
        !o.status.success(),
        "command unexpectedly succeeded\nstdout: {}",
        stdout(&o)
    );
    let err = stderr(&o);
    let mut lines = err.trim_end().lines();
    let file_problem = lines
        .next()
        .is_some_and(|first| first.starts_with("error: invalid "));
    assert!(
        lines.all(|l| file_problem && (l.is_empty() || l.starts_with(' '))),
        "error is not one line: {err}"
    );
    err
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 request with `Connection: close`; bounded by timeouts.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    try_http(addr, method, path, headers, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

pub fn try_http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| {
        std::io::Error::other(format!(
            "unparseable response: {:?}",
            String::from_utf8_lossy(&raw)
        ))
    })
}

fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Some(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = data.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(
            std::str::from_utf8(&data[..nl])
                .ok()?
                .split(';')
                .next()?
                .trim(),
            16,
        )
        .ok()?;
        data = &data[nl + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Write a function directory: manifest, component, optional bundle.
pub struct FunctionDir {
    pub dir: PathBuf,
    pub wasm: PathBuf,
}

pub fn function_dir(
    root: &Path,
    name: &str,
    tenant: &str,
    component: &[u8],
    routes: &[&str],
    limits: &str,
) -> FunctionDir {
    let dir = root.join(format!("{tenant}-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let routes = routes
        .iter()
        .map(|r| format!("\"{r}\""))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        dir.join("zerofn.toml"),
        format!("name = \"{name}\"\ntenant = \"{tenant}\"\ncomponent = \"{name}.wasm\"\nroutes = [{routes}]\n{limits}"),
    )
    .unwrap();
    let wasm = dir.join(format!("{name}.wasm"));
    std::fs::write(&wasm, component).unwrap();
    FunctionDir { dir, wasm }
}

/// Open the platform database directly (tests that tamper with it).
pub fn open_db(data_dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(data_dir.join("zerofn.db")).unwrap()
}
