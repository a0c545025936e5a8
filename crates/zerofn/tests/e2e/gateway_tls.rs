//! Issue 15 (part): the gateway over TLS (`zerofn up --gateway-tls-cert
//! FILE --gateway-tls-key FILE`), against the running binary: HTTP/1.1 and
//! HTTP/2 by ALPN, TLS 1.2 and 1.3, and a certificate replaced on disk
//! taken by new connections while an established one keeps working.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};

use crate::Setup;

/// A test CA, and leaf certificates for 127.0.0.1 it signs.
struct TestCa {
    cert: CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for 127.0.0.1, written to `dir/NAME.crt` and `.key`; its DER.
    fn leaf(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf, CertificateDer<'static>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k, cert.der().clone())
    }

    fn client(
        &self,
        alpn: &[&[u8]],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to the gateway (handshake done).
fn connect(addr: &str, config: Arc<rustls::ClientConfig>) -> Tls {
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(config, name.to_owned()).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

/// One HTTP/1.1 request on a kept-alive connection: status and body.
fn get(tls: &mut Tls, path: &str) -> (u16, String) {
    write!(tls, "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").unwrap();
    tls.flush().unwrap();
    let mut reader = BufReader::new(tls);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn served_certificate(tls: &Tls) -> CertificateDer<'static> {
    tls.conn.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

#[test]
fn the_gateway_serves_tls_with_http2_and_reloads_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let (cert, key, first) = ca.leaf(dir.path(), "one");
    let s = Setup::with_args(&[
        "--gateway-tls-cert",
        cert.to_str().unwrap(),
        "--gateway-tls-key",
        key.to_str().unwrap(),
    ]);
    s.deploy("hello", "hello-c", &["/hello"], "");
    let addr = s.platform.gateway.clone();

    // Plain HTTP to a TLS port is no request.
    let mut plain = TcpStream::connect(&addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    plain
        .write_all(b"GET /hello HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "served in the clear");

    // HTTP/1.1 over TLS 1.3 and over TLS 1.2.
    let h1 = ca.client(&[b"http/1.1"], &[&rustls::version::TLS13]);
    let mut old = connect(&addr, h1.clone());
    assert_eq!(old.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(served_certificate(&old), first);
    let (status, body) = get(&mut old, "/hello");
    assert_eq!(status, 200, "{body}");
    let mut tls12 = connect(&addr, ca.client(&[], &[&rustls::version::TLS12]));
    assert_eq!(
        tls12.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(get(&mut tls12, "/hello").0, 200);

    // HTTP/2 when the client offers h2.
    let h2 = ca.client(&[b"h2", b"http/1.1"], &[&rustls::version::TLS13]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (version, status) = rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(h2)
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tls),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = http::Request::get(format!("https://{addr}/hello"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        (resp.version(), resp.status())
    });
    assert_eq!(version, http::Version::HTTP_2);
    assert_eq!(status, 200);

    // Replace the files: new connections get the new certificate (the
    // files are polled; bounded wait), the old connection keeps working.
    let (new_cert, new_key, second) = ca.leaf(dir.path(), "two");
    assert_ne!(first, second);
    // Key first, then certificate: in between the pair does not match,
    // which is logged and leaves the first certificate in force.
    std::fs::copy(&new_key, &key).unwrap();
    std::fs::copy(&new_cert, &cert).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let fresh = connect(&addr, h1.clone());
        if served_certificate(&fresh) == second {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, body) = get(&mut old, "/hello");
    assert_eq!(status, 200, "the established connection broke: {body}");
    assert_eq!(served_certificate(&old), first);

    // A broken certificate file keeps the second certificate in force.
    std::fs::write(&cert, "not a certificate").unwrap();
    for _ in 0..5 {
        let fresh = connect(&addr, h1.clone());
        assert_eq!(served_certificate(&fresh), second);
        std::thread::sleep(Duration::from_millis(300));
    }
}
