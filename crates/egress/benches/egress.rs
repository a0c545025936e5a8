//! The cost of the egress gateway: one allowed outbound request through
//! `EgressClient::send` (the URL read by the strict parser, the allowlist
//! entry's ranges, every address range-checked, a new connection to the
//! checked address, headers filtered, the body bounded) against the same
//! request made directly with hyper over a new connection, both to a local
//! upstream on 127.0.0.1 (an IP literal: no name lookup on either side).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zerofn_egress::{
    EgressClient, EgressConfig, EgressLimits, EgressRule, Flow, FunctionEgressLimits, Target,
};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello";

/// An upstream that answers every connection's request with `RESPONSE`.
async fn upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(RESPONSE).await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

fn request(url: &str) -> http::Request<Bytes> {
    http::Request::builder()
        .uri(url)
        .header("accept", "text/plain")
        .body(Bytes::new())
        .unwrap()
}

async fn direct(port: u16, url: &str) -> Bytes {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    let (parts, body) = request(url).into_parts();
    let mut out = http::Request::from_parts(parts, Full::new(body));
    *out.uri_mut() = "/hello".parse().unwrap();
    out.headers_mut().insert(
        http::header::HOST,
        format!("127.0.0.1:{port}").parse().unwrap(),
    );
    let response = sender.send_request(out).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    task.abort();
    body
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let port = rt.block_on(upstream());
    let url = format!("http://127.0.0.1:{port}/hello");
    let client = EgressClient::new(&EgressConfig {
        // Never asked: the target is an IP literal.
        dns: Some("127.0.0.1:9".parse().unwrap()),
        extra_roots_pem: None,
        limits: EgressLimits::default(),
    })
    .unwrap();
    let rule = EgressRule::parse(
        &format!("http://127.0.0.1:{port}"),
        &[],
        &["127.0.0.0/8".into()],
    )
    .unwrap();
    let own = FunctionEgressLimits::default();
    let mut group = c.benchmark_group("egress");
    group.bench_function("through_the_gateway", |b| {
        b.iter(|| {
            rt.block_on(async {
                let target = Target::parse(&url).unwrap();
                let mut flow = Flow::default();
                let response = client
                    .send(
                        "acme/shop",
                        &own,
                        &target,
                        Some(&rule),
                        request(&url),
                        &mut flow,
                    )
                    .await
                    .unwrap();
                assert_eq!(response.body().as_ref(), b"hello");
            })
        })
    });
    group.bench_function("direct_hyper", |b| {
        b.iter(|| {
            rt.block_on(async {
                assert_eq!(direct(port, &url).await.as_ref(), b"hello");
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
