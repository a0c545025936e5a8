//! Name resolution by the host itself: a minimal DNS stub client (RFC 1035
//! over UDP, `A` and `AAAA` questions; an answer marked truncated is asked
//! again over TCP, RFC 7766) that asks one configured server, so the
//! addresses the egress gateway checks are the ones it connects to.
//!
//! Why not the system resolver: `getaddrinfo` hides the answers behind a
//! blocking call and may consult files and caches the platform does not
//! control. Why not hickory-resolver: it caches and retries on its own and
//! brings a large dependency tree; the stub here asks one question per
//! family, reads only the answer section, and never caches, so every
//! request is decided on a fresh, complete answer.
//!
//! Trusts the configured server to answer; trusts nothing it answers: ids
//! and questions must match, lengths are bounded, compression pointers
//! are followed at most 16 times, at most [`MAX_ADDRESSES`] addresses are
//! kept, and every address is range-checked by the caller.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Most addresses kept from one answer.
pub const MAX_ADDRESSES: usize = 16;

/// Why a name could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("no DNS server is configured (none in /etc/resolv.conf and no --egress-dns)")]
    NoServer,
    #[error("the DNS server did not answer in time")]
    Timeout,
    #[error("the DNS query failed: {0}")]
    Io(String),
    #[error("the DNS answer is malformed")]
    Malformed,
    #[error("the name does not exist (rcode {0})")]
    NoSuchName(u8),
    #[error("the name has no addresses")]
    NoAddresses,
    /// The UDP answer did not fit (TC bit): asked again over TCP.
    #[error("the DNS answer was truncated")]
    Truncated,
}

/// A resolver asking one DNS server.
#[derive(Clone, Debug)]
pub struct Resolver {
    server: Option<SocketAddr>,
    timeout: Duration,
}

impl Resolver {
    /// A resolver asking `server`, or the first `nameserver` of
    /// `/etc/resolv.conf` when `None`.
    pub fn new(server: Option<SocketAddr>, timeout: Duration) -> Resolver {
        let server = server.or_else(system_nameserver);
        Resolver { server, timeout }
    }

    /// Every IPv4 and IPv6 address `name` has (A and AAAA answers).
    pub async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let server = self.server.ok_or(ResolveError::NoServer)?;
        let (a, aaaa) = tokio::join!(
            self.query(server, name, TYPE_A),
            self.query(server, name, TYPE_AAAA)
        );
        let mut out = Vec::new();
        let mut first_error = None;
        for answer in [a, aaaa] {
            match answer {
                Ok(list) => out.extend(list),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        out.truncate(MAX_ADDRESSES);
        if out.is_empty() {
            return Err(first_error.unwrap_or(ResolveError::NoAddresses));
        }
        Ok(out)
    }

    async fn query(
        &self,
        server: SocketAddr,
        name: &str,
        qtype: u16,
    ) -> Result<Vec<IpAddr>, ResolveError> {
        let bind: SocketAddr = if server.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let io = |e: std::io::Error| ResolveError::Io(e.kind().to_string());
        let socket = UdpSocket::bind(bind).await.map_err(io)?;
        socket.connect(server).await.map_err(io)?;
        let id = u16::try_from(OsRng.next_u32() & 0xffff).unwrap_or(0);
        let query = encode_query(id, name, qtype).ok_or(ResolveError::Malformed)?;
        socket.send(&query).await.map_err(io)?;
        let mut buf = vec![0u8; 4096];
        let deadline = tokio::time::Instant::now() + self.timeout;
        // Skip datagrams that are not the answer (wrong id): a spoofer
        // would have to guess the id and the port.
        loop {
            let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
                .await
                .map_err(|_| ResolveError::Timeout)?
                .map_err(io)?;
            let packet = buf.get(..n).ok_or(ResolveError::Malformed)?;
            match decode_answer(packet, id, name, qtype) {
                Err(ResolveError::Io(_)) => continue,
                Err(ResolveError::Truncated) => {
                    return tokio::time::timeout_at(deadline, query_tcp(server, name, qtype))
                        .await
                        .map_err(|_| ResolveError::Timeout)?
                }
                other => return other,
            }
        }
    }
}

/// The question asked over TCP (RFC 7766: each message after its two-byte
/// length), for an answer too large for a UDP datagram. The answer is read
/// whole (at most 65,535 bytes, the most the length can say) and decoded like
/// a datagram; the caller bounds the time.
async fn query_tcp(
    server: SocketAddr,
    name: &str,
    qtype: u16,
) -> Result<Vec<IpAddr>, ResolveError> {
    let io = |e: std::io::Error| ResolveError::Io(e.kind().to_string());
    let mut stream = TcpStream::connect(server).await.map_err(io)?;
    let id = u16::try_from(OsRng.next_u32() & 0xffff).unwrap_or(0);
    let query = encode_query(id, name, qtype).ok_or(ResolveError::Malformed)?;
    let len = u16::try_from(query.len()).map_err(|_| ResolveError::Malformed)?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(&query);
    stream.write_all(&framed).await.map_err(io)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.map_err(io)?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut answer).await.map_err(io)?;
    match decode_answer(&answer, id, name, qtype) {
        // Over TCP the one message read must be the answer, and a truncated one is final.
        Err(ResolveError::Io(_) | ResolveError::Truncated) => Err(ResolveError::Malformed),
        other => other,
    }
}

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const CLASS_IN: u16 = 1;

/// The first `nameserver` line of `/etc/resolv.conf`.
fn system_nameserver() -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("nameserver"))
            .then(|| words.next())
            .flatten()
            .and_then(|ip| ip.split('%').next())
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

/// A query packet: header with RD set, one question.
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(32 + name.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|l| (1..=63).contains(l))?;
        out.push(len);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    Some(out)
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn u8(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }
    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        let out = self.data.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(out)
    }
    /// Reads a (possibly compressed) name, lowercased, dot-joined.
    fn name(&mut self) -> Option<String> {
        let mut labels: Vec<String> = Vec::new();
        let mut pos = self.pos;
        let mut jumped = false;
        for _ in 0..128 {
            let len = *self.data.get(pos)?;
            if len & 0xc0 == 0xc0 {
                let low = *self.data.get(pos + 1)?;
                if !jumped {
                    self.pos = pos + 2;
                }
                jumped = true;
                pos = usize::from(u16::from_be_bytes([len & 0x3f, low]));
                if labels.len() > 127 {
                    return None;
                }
                continue;
            }
            if len & 0xc0 != 0 {
                return None;
            }
            pos += 1;
            if len == 0 {
                if !jumped {
                    self.pos = pos;
                }
                return Some(labels.join("."));
            }
            let label = self.data.get(pos..pos + usize::from(len))?;
            labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
            pos += usize::from(len);
        }
        None
    }
}

/// The addresses of type `qtype` in the answer section of `packet`, which
/// must answer query `id` for `name`. `Io` for a packet that is not that
/// answer at all (skipped by the caller).
pub fn decode_answer(
    packet: &[u8],
    id: u16,
    name: &str,
    qtype: u16,
) -> Result<Vec<IpAddr>, ResolveError> {
    let mut r = Reader {
        data: packet,
        pos: 0,
    };
    let malformed = ResolveError::Malformed;
    let got_id = r.u16().ok_or(malformed.clone())?;
    let flags = r.u16().ok_or(malformed.clone())?;
    if got_id != id || flags & 0x8000 == 0 {
        return Err(ResolveError::Io("not our answer".into()));
    }
    let qd = r.u16().ok_or(malformed.clone())?;
    let an = r.u16().ok_or(malformed.clone())?;
    let _ns = r.u16().ok_or(malformed.clone())?;
    let _ar = r.u16().ok_or(malformed.clone())?;
    if qd != 1 {
        return Err(malformed);
    }
    let qname = r.name().ok_or(malformed.clone())?;
    let got_qtype = r.u16().ok_or(malformed.clone())?;
    let _qclass = r.u16().ok_or(malformed.clone())?;
    if qname != name.to_ascii_lowercase() || got_qtype != qtype {
        return Err(ResolveError::Io("answer to another question".into()));
    }
    // TC: the server cut the answer to fit the datagram; what is there may
    // be a part of the addresses, so none of it is used.
    if flags & 0x0200 != 0 {
        return Err(ResolveError::Truncated);
    }
    let rcode = u8::try_from(flags & 0x000f).unwrap_or(0);
    if rcode != 0 {
        return Err(ResolveError::NoSuchName(rcode));
    }
    let mut out = Vec::new();
    for _ in 0..an {
        let _owner = r.name().ok_or(malformed.clone())?;
        let rtype = r.u16().ok_or(malformed.clone())?;
        let class = r.u16().ok_or(malformed.clone())?;
        let _ttl = r.bytes(4).ok_or(malformed.clone())?;
        let len = r.u16().ok_or(malformed.clone())?;
        let data = r.bytes(usize::from(len)).ok_or(malformed.clone())?;
        if class != CLASS_IN || rtype != qtype || out.len() >= MAX_ADDRESSES {
            continue;
        }
        match (rtype, data.len()) {
            (TYPE_A, 4) => {
                let octets: [u8; 4] = data.try_into().map_err(|_| malformed.clone())?;
                out.push(IpAddr::V4(Ipv4Addr::from(octets)));
            }
            (TYPE_AAAA, 16) => {
                let octets: [u8; 16] = data.try_into().map_err(|_| malformed.clone())?;
                out.push(IpAddr::V6(Ipv6Addr::from(octets)));
            }
            _ => return Err(malformed),
        }
    }
    Ok(out)
}

/// Building answers, for tests of the resolver and of the gateway (a DNS
/// server in a test answers with these).
pub mod answer {
    use std::net::IpAddr;

    /// The question of a query packet: (id, name, qtype).
    pub fn question(packet: &[u8]) -> Option<(u16, String, u16)> {
        let mut r = super::Reader {
            data: packet,
            pos: 12,
        };
        let id = u16::from_be_bytes([*packet.first()?, *packet.get(1)?]);
        let name = r.name()?;
        let qtype = r.u16()?;
        Some((id, name, qtype))
    }

    /// An answer to `query` with `addresses` of the asked type (the others
    /// dropped), TTL 0.
    pub fn build(query: &[u8], addresses: &[IpAddr]) -> Option<Vec<u8>> {
        let (id, name, qtype) = question(query)?;
        let records: Vec<Vec<u8>> = addresses
            .iter()
            .filter_map(|ip| match (ip, qtype) {
                (IpAddr::V4(v4), super::TYPE_A) => Some(v4.octets().to_vec()),
                (IpAddr::V6(v6), super::TYPE_AAAA) => Some(v6.octets().to_vec()),
                _ => None,
            })
            .collect();
        let mut out = super::encode_query(id, &name, qtype)?;
        // QR + RD + RA, answer count.
        *out.get_mut(2)? = 0x81;
        *out.get_mut(3)? = 0x80;
        let count = u16::try_from(records.len()).ok()?.to_be_bytes();
        *out.get_mut(6)? = count[0];
        *out.get_mut(7)? = count[1];
        for data in records {
            out.extend_from_slice(&[0xc0, 12]);
            out.extend_from_slice(&qtype.to_be_bytes());
            out.extend_from_slice(&super::CLASS_IN.to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, 0]);
            out.extend_from_slice(&u16::try_from(data.len()).ok()?.to_be_bytes());
            out.extend_from_slice(&data);
        }
        Some(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_and_foreign_packets_are_skipped() {
        let q = encode_query(7, "api.example.com", TYPE_A).unwrap();
        let ips: Vec<IpAddr> = vec!["93.184.216.34".parse().unwrap(), "::1".parse().unwrap()];
        let a = answer::build(&q, &ips).unwrap();
        assert_eq!(
            decode_answer(&a, 7, "api.example.com", TYPE_A).unwrap(),
            vec!["93.184.216.34".parse::<IpAddr>().unwrap()]
        );
        assert!(matches!(
            decode_answer(&a, 8, "api.example.com", TYPE_A),
            Err(ResolveError::Io(_))
        ));
        assert!(matches!(
            decode_answer(&a, 7, "other.example.com", TYPE_A),
            Err(ResolveError::Io(_))
        ));
        for cut in 0..a.len() {
            let _ = decode_answer(&a[..cut], 7, "api.example.com", TYPE_A);
        }
    }

    #[test]
    fn compression_loops_end() {
        // Header (answer, 1 question) whose question name points at itself.
        let mut p = vec![
            0, 7, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1,
        ];
        assert_eq!(
            decode_answer(&p, 7, "x", TYPE_A),
            Err(ResolveError::Malformed)
        );
        p.truncate(13);
        assert_eq!(
            decode_answer(&p, 7, "x", TYPE_A),
            Err(ResolveError::Malformed)
        );
    }

    /// A server that answers every UDP question truncated (TC, no records) and
    /// serves `tcp` on the same port: `tcp` gets the accepted stream.
    async fn truncating_server<F, Fut>(tcp: F) -> (SocketAddr, tokio::task::JoinHandle<()>)
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        // The same port for both: a free TCP port whose UDP twin may be taken (by a
        // parallel test), so try a few.
        let mut bound = None;
        for _ in 0..50 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            if let Ok(udp) = UdpSocket::bind(addr).await {
                bound = Some((listener, udp, addr));
                break;
            }
        }
        let (listener, udp, addr) = bound.expect("a port free for both TCP and UDP");
        let task = tokio::spawn(async move {
            let udp_side = async {
                let mut buf = [0u8; 512];
                for _ in 0..2 {
                    let (n, peer) = udp.recv_from(&mut buf).await.unwrap();
                    let mut a = answer::build(&buf[..n], &[]).unwrap();
                    a[2] |= 0x02;
                    udp.send_to(&a, peer).await.unwrap();
                }
            };
            let tcp_side = async {
                for _ in 0..2 {
                    let (stream, _) = listener.accept().await.unwrap();
                    tcp(stream).await;
                }
            };
            tokio::join!(udp_side, tcp_side);
        });
        (addr, task)
    }

    #[tokio::test]
    async fn a_truncated_answer_is_asked_again_over_tcp() {
        let (addr, task) = truncating_server(|mut s| async move {
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await.unwrap();
            let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
            s.read_exact(&mut q).await.unwrap();
            let ips: Vec<IpAddr> = (1..=20)
                .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)))
                .collect();
            let a = answer::build(&q, &ips).unwrap();
            s.write_all(&u16::try_from(a.len()).unwrap().to_be_bytes())
                .await
                .unwrap();
            s.write_all(&a).await.unwrap();
        })
        .await;
        let r = Resolver::new(Some(addr), Duration::from_secs(5));
        let got = r.resolve("big.internal").await.unwrap();
        // The whole answer, cut at the bound.
        assert_eq!(got.len(), MAX_ADDRESSES);
        assert_eq!(got[0], "10.0.0.1".parse::<IpAddr>().unwrap());
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_hostile_tcp_answer_fails_and_a_silent_one_times_out() {
        // Announces more than it sends, then closes: an error, not a partial answer.
        let (addr, task) = truncating_server(|mut s| async move {
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf).await;
            s.write_all(&[0xff, 0xff, 1, 2, 3]).await.unwrap();
        })
        .await;
        let r = Resolver::new(Some(addr), Duration::from_secs(5));
        assert!(matches!(
            r.resolve("big.internal").await,
            Err(ResolveError::Io(_))
        ));
        task.await.unwrap();
        // Accepts and never answers: the resolver's timeout ends it.
        let (addr, task) = truncating_server(|s| async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop(s);
        })
        .await;
        let r = Resolver::new(Some(addr), Duration::from_millis(300));
        assert_eq!(r.resolve("big.internal").await, Err(ResolveError::Timeout));
        task.abort();
    }

    #[tokio::test]
    async fn a_resolver_asks_its_server() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            for _ in 0..2 {
                let (n, peer) = server.recv_from(&mut buf).await.unwrap();
                let ips: Vec<IpAddr> = vec!["10.1.2.3".parse().unwrap()];
                let a = answer::build(&buf[..n], &ips).unwrap();
                server.send_to(&a, peer).await.unwrap();
            }
        });
        let r = Resolver::new(Some(addr), Duration::from_secs(5));
        assert_eq!(
            r.resolve("db.internal").await.unwrap(),
            vec!["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
        task.await.unwrap();
    }
}
