//! The egress client against real sockets on 127.0.0.1: a tiny DNS server
//! answering as each test needs (rebinding included), plain and TLS
//! upstreams counting the connections they see. Loopback is a forbidden
//! range, so the entries that should connect name `127.0.0.0/8` in
//! `allow_ranges`; those that should not, do not.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use zerofn_egress::resolve::answer;
use zerofn_egress::{
    EgressClient, EgressConfig, EgressLimits, EgressRule, Flow, FlowError, FunctionEgressLimits,
    Target,
};

/// A DNS server answering the n-th question for a name with `answers[n]`
/// (the last one repeated); counts the questions.
struct Dns {
    addr: SocketAddr,
    questions: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Dns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn dns(answers: Vec<Vec<IpAddr>>) -> Dns {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let questions = Arc::new(AtomicUsize::new(0));
    let seen = questions.clone();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 512];
        // One A and one AAAA question per resolution.
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let asked = seen.fetch_add(1, Ordering::SeqCst) / 2;
            let ips = answers
                .get(asked)
                .or(answers.last())
                .cloned()
                .unwrap_or_default();
            if let Some(reply) = answer::build(&buf[..n], &ips) {
                let _ = socket.send_to(&reply, peer).await;
            }
        }
    });
    Dns {
        addr,
        questions,
        task,
    }
}

/// An HTTP/1.1 upstream answering every request with `response`; counts
/// connections and keeps the request heads it saw.
struct Upstream {
    port: u16,
    connections: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn upstream(response: &'static str, tls: Option<Arc<rustls::ServerConfig>>) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let (count, seen) = (connections.clone(), heads.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let seen = seen.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(cfg) => {
                        if let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(stream).await {
                            serve(s, response, seen).await;
                        }
                    }
                    None => serve(stream, response, seen).await,
                }
            });
        }
    });
    Upstream {
        port,
        connections,
        heads,
        task,
    }
}

async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    response: &str,
    seen: Arc<Mutex<Vec<String>>>,
) {
    let mut buf = vec![0u8; 8192];
    let mut got = 0;
    while got < buf.len() {
        let Ok(n) = s.read(&mut buf[got..]).await else {
            return;
        };
        if n == 0 {
            return;
        }
        got += n;
        if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    seen.lock()
        .unwrap()
        .push(String::from_utf8_lossy(&buf[..got]).into_owned());
    let _ = s.write_all(response.as_bytes()).await;
    let _ = s.shutdown().await;
}

fn client(dns: &Dns, ca_pem: Option<Vec<u8>>, limits: EgressLimits) -> EgressClient {
    EgressClient::new(&EgressConfig {
        dns: Some(dns.addr),
        extra_roots_pem: ca_pem,
        limits,
    })
    .unwrap()
}

fn loopback_rule(url: &str) -> EgressRule {
    EgressRule::parse(url, &[], &["127.0.0.0/8".into()]).unwrap()
}

async fn get(
    client: &EgressClient,
    url: &str,
    rule: Option<&EgressRule>,
) -> (Result<http::Response<Bytes>, FlowError>, Flow) {
    get_within(client, url, rule, &FunctionEgressLimits::default()).await
}

/// `get` for a function with its own egress limits.
async fn get_within(
    client: &EgressClient,
    url: &str,
    rule: Option<&EgressRule>,
    own: &FunctionEgressLimits,
) -> (Result<http::Response<Bytes>, FlowError>, Flow) {
    let target = Target::parse(url).unwrap();
    let request = http::Request::builder()
        .uri(url)
        .header("host", "evil.example")
        .header("x-zerofn-caller-spiffe-id", "spiffe://forged")
        .header("X_ZEROFN_TENANT", "other")
        .header("x-api-key", "k")
        .body(Bytes::from_static(b"hi"))
        .unwrap();
    let mut flow = Flow::default();
    let result = client
        .send("acme/shop", own, &target, rule, request, &mut flow)
        .await;
    (result, flow)
}

const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello";

#[tokio::test]
async fn an_allowed_name_is_resolved_once_checked_and_connected_to_with_its_own_host_header() {
    let dns = dns(vec![vec!["127.0.0.1".parse().unwrap()]]).await;
    let up = upstream(OK, None).await;
    let client = client(&dns, None, EgressLimits::default());
    let url = format!("http://api.test:{}/v1/x?q=1", up.port);
    let rule = loopback_rule(&format!("http://api.test:{}", up.port));
    let (result, flow) = get(&client, &url, Some(&rule)).await;
    let response = result.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.body().as_ref(), b"hello");
    assert_eq!(flow.resolved, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(
        flow.connected,
        Some(SocketAddr::from(([127, 0, 0, 1], up.port)))
    );
    assert_eq!(
        (flow.status, flow.bytes_in, flow.bytes_out),
        (Some(200), 5, 2)
    );
    assert_eq!(
        dns.questions.load(Ordering::SeqCst),
        2,
        "one A and one AAAA question"
    );
    let heads = up.heads.lock().unwrap().clone();
    let head = heads[0].to_ascii_lowercase();
    assert!(head.starts_with("get /v1/x?q=1 http/1.1\r\n"), "{head}");
    assert!(
        head.contains(&format!("host: api.test:{}\r\n", up.port)),
        "{head}"
    );
    assert!(
        !head.contains("evil.example") && !head.contains("x-zerofn") && !head.contains("x_zerofn"),
        "{head}"
    );
    assert!(head.contains("x-api-key: k"), "{head}");
}

#[tokio::test]
async fn a_listed_name_resolving_to_a_forbidden_range_is_refused_without_a_connection() {
    for (answer, range) in [
        ("127.0.0.1", "127.0.0.1"),
        ("169.254.169.254", "169.254.169.254"),
        ("10.1.2.3", "10.1.2.3"),
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("fd00:ec2::254", "fd00:ec2::254"),
    ] {
        let dns = dns(vec![vec![answer.parse().unwrap()]]).await;
        let up = upstream(OK, None).await;
        let client = client(&dns, None, EgressLimits::default());
        let rule = EgressRule::parse(&format!("http://api.test:{}", up.port), &[], &[]).unwrap();
        let (result, flow) = get(
            &client,
            &format!("http://api.test:{}/", up.port),
            Some(&rule),
        )
        .await;
        let err = result.unwrap_err();
        assert_eq!(err.reason(), format!("forbidden_range {range}"), "{answer}");
        assert_eq!(flow.connected, None);
        assert_eq!(up.connections.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test]
async fn a_platform_request_is_range_checked_with_no_range_exempt_and_bounded() {
    for (answer, range) in [
        ("127.0.0.1", "127.0.0.1"),
        ("169.254.169.254", "169.254.169.254"),
        ("10.1.2.3", "10.1.2.3"),
    ] {
        let dns = dns(vec![vec![answer.parse().unwrap()]]).await;
        let up = upstream(OK, None).await;
        let client = client(&dns, None, EgressLimits::default());
        let target = Target::parse(&format!("http://idp.test:{}/jwks", up.port)).unwrap();
        let mut flow = Flow::default();
        let err = client
            .send_for_platform(
                "jwks",
                &FunctionEgressLimits::default(),
                &target,
                http::Request::new(Bytes::new()),
                &mut flow,
            )
            .await
            .unwrap_err();
        assert_eq!(err.reason(), format!("forbidden_range {range}"), "{answer}");
        assert_eq!(flow.connected, None);
        assert_eq!(up.connections.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test]
async fn one_forbidden_answer_among_public_ones_refuses_the_name() {
    let dns = dns(vec![vec![
        "8.8.8.8".parse().unwrap(),
        "127.0.0.1".parse().unwrap(),
    ]])
    .await;
    let client = client(&dns, None, EgressLimits::default());
    let (result, flow) = get(&client, "http://api.test/", None).await;
    assert_eq!(result.unwrap_err().reason(), "forbidden_range 127.0.0.1");
    assert_eq!(flow.resolved.len(), 2);
}

#[tokio::test]
async fn rebinding_cannot_slip_between_check_and_connect() {
    // First answer public, then loopback with TTL 0: each request resolves
    // exactly once and connects only to what it checked.
    let dns = dns(vec![
        vec!["192.0.2.1".parse().unwrap()],
        vec!["127.0.0.1".parse().unwrap()],
    ])
    .await;
    let up = upstream(OK, None).await;
    let client = client(
        &dns,
        None,
        EgressLimits {
            connect: Duration::from_millis(300),
            ..EgressLimits::default()
        },
    );
    let rule = EgressRule::parse(
        &format!("http://rebind.test:{}", up.port),
        &[],
        &["192.0.2.0/24".into()],
    )
    .unwrap();
    let url = format!("http://rebind.test:{}/", up.port);
    let (first, flow) = get(&client, &url, Some(&rule)).await;
    // The checked public answer is what it tried (nothing listens there).
    assert!(first.is_err());
    assert_eq!(flow.resolved, vec!["192.0.2.1".parse::<IpAddr>().unwrap()]);
    assert_eq!(dns.questions.load(Ordering::SeqCst), 2);
    let (second, flow) = get(&client, &url, Some(&rule)).await;
    assert_eq!(second.unwrap_err().reason(), "forbidden_range 127.0.0.1");
    assert_eq!(flow.connected, None);
    assert_eq!(dns.questions.load(Ordering::SeqCst), 4);
    assert_eq!(up.connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn redirects_are_handed_back_not_followed() {
    let dns = dns(vec![vec!["127.0.0.1".parse().unwrap()]]).await;
    let up = upstream(
        "HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest/meta-data/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        None,
    )
    .await;
    let client = client(&dns, None, EgressLimits::default());
    let rule = loopback_rule(&format!("http://api.test:{}", up.port));
    let (result, _) = get(
        &client,
        &format!("http://api.test:{}/", up.port),
        Some(&rule),
    )
    .await;
    let response = result.unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(up.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn limits_are_errors_not_hangs() {
    let dns = dns(vec![vec!["127.0.0.1".parse().unwrap()]]).await;
    // Too large a body.
    let big = upstream("HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\n0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789", None).await;
    let small = EgressLimits {
        response_bytes: 10,
        ..EgressLimits::default()
    };
    let c = client(&dns, None, small);
    let rule = loopback_rule(&format!("http://api.test:{}", big.port));
    let (result, _) = get(&c, &format!("http://api.test:{}/", big.port), Some(&rule)).await;
    assert_eq!(result.unwrap_err(), FlowError::ResponseTooLarge(10));

    // A server that accepts and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = accepted.clone();
    let hold = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            kept.push(s);
        }
    });
    let quick = EgressLimits {
        first_byte: Duration::from_millis(200),
        ..EgressLimits::default()
    };
    let c = client(&dns, None, quick);
    let rule = loopback_rule(&format!("http://api.test:{port}"));
    let (result, flow) = get(&c, &format!("http://api.test:{port}/"), Some(&rule)).await;
    assert_eq!(result.unwrap_err(), FlowError::FirstByteTimeout);
    assert!(flow.connected.is_some());
    let total = EgressLimits {
        total: Duration::from_millis(200),
        ..EgressLimits::default()
    };
    let c = client(&dns, None, total);
    let (result, _) = get(&c, &format!("http://api.test:{port}/"), Some(&rule)).await;
    assert_eq!(result.unwrap_err(), FlowError::TotalTimeout);

    // Concurrency: one slot, held by a hanging request.
    let before = accepted.load(Ordering::SeqCst);
    let one = EgressLimits {
        concurrent_per_function: 1,
        first_byte: Duration::from_secs(20),
        ..EgressLimits::default()
    };
    let c = Arc::new(client(&dns, None, one));
    let (c2, rule2, url) = (c.clone(), rule.clone(), format!("http://api.test:{port}/"));
    let first = tokio::spawn(async move { get(&c2, &url, Some(&rule2)).await.0 });
    // Wait (bounded) until the first request holds its connection.
    for _ in 0..250 {
        if accepted.load(Ordering::SeqCst) > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), before + 1);
    let (r, flow) = get(&c, &format!("http://api.test:{port}/"), Some(&rule)).await;
    assert_eq!(r.unwrap_err(), FlowError::TooManyConnections(1));
    assert_eq!(flow.connected, None);
    first.abort();
    hold.abort();
}

#[tokio::test]
async fn a_functions_own_limits_only_lower_the_platforms() {
    let dns = dns(vec![vec!["127.0.0.1".parse().unwrap()]]).await;
    let big = upstream("HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\n0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789", None).await;
    let rule = loopback_rule(&format!("http://api.test:{}", big.port));
    let url = format!("http://api.test:{}/", big.port);
    // The platform allows the 100 bytes; the function allows 10.
    let platform = client(&dns, None, EgressLimits::default());
    let own = FunctionEgressLimits {
        response_bytes: Some(10),
        ..FunctionEgressLimits::default()
    };
    let (result, _) = get_within(&platform, &url, Some(&rule), &own).await;
    assert_eq!(result.unwrap_err(), FlowError::ResponseTooLarge(10));
    let (result, _) = get(&platform, &url, Some(&rule)).await;
    assert_eq!(result.unwrap().body().len(), 100);
    // A function cannot raise the platform's limit.
    let strict = client(
        &dns,
        None,
        EgressLimits {
            response_bytes: 10,
            ..EgressLimits::default()
        },
    );
    let generous = FunctionEgressLimits {
        response_bytes: Some(1000),
        ..FunctionEgressLimits::default()
    };
    let (result, _) = get_within(&strict, &url, Some(&rule), &generous).await;
    assert_eq!(result.unwrap_err(), FlowError::ResponseTooLarge(10));

    // Its own first-byte timeout, and its own connection count, against a
    // server that accepts and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen = accepted.clone();
    let hold = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            kept.push(s);
        }
    });
    let rule = loopback_rule(&format!("http://api.test:{port}"));
    let url = format!("http://api.test:{port}/");
    let quick = FunctionEgressLimits {
        first_byte: Some(Duration::from_millis(200)),
        ..FunctionEgressLimits::default()
    };
    let (result, _) = get_within(&platform, &url, Some(&rule), &quick).await;
    assert_eq!(result.unwrap_err(), FlowError::FirstByteTimeout);
    let one = FunctionEgressLimits {
        concurrent: Some(1),
        ..FunctionEgressLimits::default()
    };
    let before = accepted.load(Ordering::SeqCst);
    let c = Arc::new(client(&dns, None, EgressLimits::default()));
    let (c2, rule2, url2) = (c.clone(), rule.clone(), url.clone());
    let first = tokio::spawn(async move { get_within(&c2, &url2, Some(&rule2), &one).await.0 });
    for _ in 0..250 {
        if accepted.load(Ordering::SeqCst) > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), before + 1);
    let (r, flow) = get_within(&c, &url, Some(&rule), &one).await;
    assert_eq!(r.unwrap_err(), FlowError::TooManyConnections(1));
    assert_eq!(flow.connected, None);
    first.abort();
    hold.abort();
}

fn test_ca(names: &[&str]) -> (Vec<u8>, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .unwrap();
    (ca_cert.pem().into_bytes(), Arc::new(config))
}

#[tokio::test]
async fn https_verifies_the_certificate_for_the_checked_name() {
    let dns = dns(vec![vec!["127.0.0.1".parse().unwrap()]]).await;
    let (ca, server) = test_ca(&["api.test"]);
    let up = upstream(OK, Some(server)).await;
    let rule = loopback_rule(&format!("https://api.test:{}", up.port));
    let url = format!("https://api.test:{}/", up.port);
    // With the test CA configured: works, SNI and Host are the name.
    let c = client(&dns, Some(ca), EgressLimits::default());
    let (result, _) = get(&c, &url, Some(&rule)).await;
    assert_eq!(result.unwrap().status(), 200);
    // Without it (Mozilla roots only): the certificate is refused.
    let c = client(&dns, None, EgressLimits::default());
    let (result, _) = get(&c, &url, Some(&rule)).await;
    assert_eq!(result.unwrap_err().reason(), "tls_certificate");
    // A certificate for another name: refused.
    let (ca, server) = test_ca(&["other.test"]);
    let up = upstream(OK, Some(server)).await;
    let c = client(&dns, Some(ca), EgressLimits::default());
    let rule = loopback_rule(&format!("https://api.test:{}", up.port));
    let (result, _) = get(&c, &format!("https://api.test:{}/", up.port), Some(&rule)).await;
    assert_eq!(result.unwrap_err().reason(), "tls_certificate");
}
