//! Where an outbound request goes, read by the host itself from the
//! scheme, authority and path a guest gave: one strict parser, so no guest
//! string can mean one host to the check and another to the connection.
//!
//! The rules, stricter than RFC 3986 and the WHATWG URL Standard together:
//! - the scheme is `http` or `https` (case-insensitive);
//! - no userinfo (`@` anywhere in the authority), no `\`, whitespace,
//!   control or non-ASCII characters anywhere, no percent sign in a host;
//! - a port is 1 to 5 ASCII digits without a leading zero, 1..=65535
//!   (`+443`, an empty port and `00443` are refused);
//! - a host that ends in a number (its last label all digits, or `0x` and
//!   hex digits) is an IPv4 address read the way `inet_aton` and the WHATWG
//!   URL parser read it (decimal, octal `0...`, hex `0x...`, 1 to 4 parts),
//!   so `2130706433`, `0177.0.0.1`, `0x7f.1` and `127.1` are all 127.0.0.1;
//!   one that does not parse (`425.510.425.510`, `0x41414141A9FEA9FE`) is
//!   refused, never handed to a resolver;
//! - a bracketed host is IPv6, optionally with a zone id (dropped: the
//!   address is what is range-checked and connected to);
//! - any other host is a DNS name: labels of `a-z0-9-_` (lowercased), 1 to
//!   63 characters, at most 253 in all, no trailing dot;
//! - the path keeps no `.`/`..` segment, raw or percent-encoded.
//!
//! Trusts nothing: every input is a guest's.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::EgressRefusal;

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// Reads a scheme, case-insensitively.
    pub fn parse(text: &str) -> Option<Scheme> {
        if text.eq_ignore_ascii_case("http") {
            Some(Scheme::Http)
        } else if text.eq_ignore_ascii_case("https") {
            Some(Scheme::Https)
        } else {
            None
        }
    }

    /// The port a URL without one means.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A host as a connection reads it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name, lowercased, without a trailing dot.
    Name(String),
    /// An IP address literal in any notation, canonical (an IPv4-mapped
    /// IPv6 address is its IPv4 address).
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V4(v4)) => write!(f, "{v4}"),
            Host::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
        }
    }
}

/// A parsed outbound destination: the only form the rest of the egress
/// gateway works on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub scheme: Scheme,
    pub host: Host,
    pub port: u16,
    /// Path and query as given (`/` when empty), checked for dot segments.
    pub path_and_query: String,
}

impl Target {
    /// Reads a whole URL (`scheme://authority/path?query#fragment`); the
    /// fragment is dropped, as HTTP never sends it.
    pub fn parse(url: &str) -> Result<Target, EgressRefusal> {
        check_characters(url)?;
        let (scheme, rest) = url.split_once("://").ok_or(EgressRefusal::Malformed)?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let tail = tail.split_once('#').map_or(tail, |(before, _)| before);
        Target::from_parts(scheme, authority, tail)
    }

    /// Reads the parts of a request a guest set separately (wasi:http's
    /// scheme, authority and path-with-query).
    pub fn from_parts(
        scheme: &str,
        authority: &str,
        path_and_query: &str,
    ) -> Result<Target, EgressRefusal> {
        check_characters(scheme)?;
        check_characters(authority)?;
        check_characters(path_and_query)?;
        let scheme = Scheme::parse(scheme).ok_or(EgressRefusal::Scheme)?;
        if authority.contains('@') {
            return Err(EgressRefusal::Userinfo);
        }
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            None => scheme.default_port(),
            Some(p) => parse_port(p)?,
        };
        let host = parse_host(host)?;
        let path_and_query = match path_and_query {
            "" => "/".to_owned(),
            p if p.starts_with('/') => p.to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            _ => return Err(EgressRefusal::Path),
        };
        if has_dot_segment(path(&path_and_query)) {
            return Err(EgressRefusal::Path);
        }
        Ok(Target {
            scheme,
            host,
            port,
            path_and_query,
        })
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        path(&self.path_and_query)
    }

    /// The authority to send as `Host`: the host, and the port unless it is
    /// the scheme's default.
    pub fn authority(&self) -> String {
        if self.port == self.scheme.default_port() {
            self.host.to_string()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority(),
            self.path_and_query
        )
    }
}

fn path(path_and_query: &str) -> &str {
    path_and_query
        .split_once('?')
        .map_or(path_and_query, |(p, _)| p)
}

/// No whitespace, control, backslash or non-ASCII character: each is read
/// differently by different URL parsers.
fn check_characters(text: &str) -> Result<(), EgressRefusal> {
    if text
        .bytes()
        .any(|b| !b.is_ascii() || b.is_ascii_control() || b == b' ' || b == b'\\')
    {
        return Err(EgressRefusal::Character);
    }
    Ok(())
}

/// Splits `host[:port]` / `[v6][:port]`; the port text unchecked.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), EgressRefusal> {
    if authority.is_empty() {
        return Err(EgressRefusal::Host);
    }
    if authority.starts_with('[') {
        let close = authority.find(']').ok_or(EgressRefusal::Host)?;
        let (host, rest) = authority.split_at(close + 1);
        return match rest {
            "" => Ok((host, None)),
            r => match r.strip_prefix(':') {
                Some(p) => Ok((host, Some(p))),
                None => Err(EgressRefusal::Port),
            },
        };
    }
    match authority.split_once(':') {
        None => Ok((authority, None)),
        Some((h, p)) => Ok((h, Some(p))),
    }
}

fn parse_port(text: &str) -> Result<u16, EgressRefusal> {
    if text.is_empty()
        || text.len() > 5
        || !text.bytes().all(|b| b.is_ascii_digit())
        || text.starts_with('0')
    {
        return Err(EgressRefusal::Port);
    }
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(EgressRefusal::Port),
    }
}

fn parse_host(text: &str) -> Result<Host, EgressRefusal> {
    if let Some(inner) = text.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(EgressRefusal::Host)?;
        // A zone id (`%25eth0` in URLs, `%eth0` as some parsers take it)
        // selects an interface, not an address: the address is checked.
        let address = inner.split_once('%').map_or(inner, |(a, _)| a);
        let v6: Ipv6Addr = address.parse().map_err(|_| EgressRefusal::Host)?;
        return Ok(Host::Ip(crate::ranges::canonical(IpAddr::V6(v6))));
    }
    if text.contains('%') {
        return Err(EgressRefusal::Host);
    }
    let lower = text.to_ascii_lowercase();
    if ends_in_number(&lower) {
        return parse_ipv4(&lower)
            .map(|v4| Host::Ip(IpAddr::V4(v4)))
            .ok_or(EgressRefusal::Host);
    }
    check_dns_name(&lower)?;
    Ok(Host::Name(lower))
}

/// WHATWG URL "ends in a number": the last label (after one trailing dot)
/// is all digits or `0x` followed by hex digits.
fn ends_in_number(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let last = host.rsplit('.').next().unwrap_or(host);
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    match last.strip_prefix("0x") {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => false,
    }
}

/// The WHATWG IPv4 parser (which is `inet_aton`'s reading): 1 to 4 parts,
/// each decimal, octal (leading `0`) or hex (`0x`); the last part fills the
/// remaining bytes. `None` for anything that is not such an address.
pub(crate) fn parse_ipv4(host: &str) -> Option<Ipv4Addr> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let numbers = parts
        .iter()
        .map(|p| ipv4_number(p))
        .collect::<Option<Vec<u64>>>()?;
    let (last, first) = numbers.split_last()?;
    if first.iter().any(|n| *n > 255) {
        return None;
    }
    let shift = 8 * (4 - u32::try_from(first.len()).ok()?);
    if shift < 64 && *last >= (1u64 << shift) {
        return None;
    }
    let mut value: u64 = *last;
    for (i, n) in first.iter().enumerate() {
        value += n << (8 * (3 - i));
    }
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

fn ipv4_number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x") {
        (hex, 16)
    } else if let Some(octal) = part.strip_prefix('0').filter(|rest| !rest.is_empty()) {
        (octal, 8)
    } else {
        (part, 10)
    };
    if digits.is_empty() {
        // `0x` alone is zero in the WHATWG parser.
        return (radix == 16).then_some(0);
    }
    // At most 2^32 fits any part; longer text overflows and is refused.
    if digits.len() > 32 {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

fn check_dns_name(name: &str) -> Result<(), EgressRefusal> {
    if name.is_empty() || name.len() > 253 {
        return Err(EgressRefusal::Host);
    }
    for label in name.split('.') {
        if label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(EgressRefusal::Host);
        }
    }
    Ok(())
}

/// A `.` or `..` segment, raw or percent-encoded (`%2e`), or an encoded
/// slash or backslash: each is read differently by servers and proxies, so
/// a path prefix could be escaped with them.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|segment| {
        let lower = segment.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") {
            return true;
        }
        let decoded = lower.replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn ip(url: &str) -> IpAddr {
        match Target::parse(url).unwrap().host {
            Host::Ip(ip) => ip,
            Host::Name(n) => panic!("{url} read as name {n}"),
        }
    }

    #[test]
    fn ipv4_literals_are_read_in_every_notation() {
        for (url, expected) in [
            ("http://2130706433/", "127.0.0.1"),
            ("http://0177.0.0.1/", "127.0.0.1"),
            ("http://0x7f000001", "127.0.0.1"),
            ("http://0x7f.0x0.0x0.0x1", "127.0.0.1"),
            ("http://127.1", "127.0.0.1"),
            ("http://127.0.1", "127.0.0.1"),
            ("http://0/", "0.0.0.0"),
            ("http://0251.0376.0251.0376", "169.254.169.254"),
            ("http://0251.00376.000251.0000376", "169.254.169.254"),
            ("http://0xA9.0xFE.0xA9.0xFE", "169.254.169.254"),
            ("http://0xA9FEA9FE", "169.254.169.254"),
            ("http://2852039166/", "169.254.169.254"),
            ("http://0251.254.169.254", "169.254.169.254"),
            ("http://3232235777/", "192.168.1.1"),
            ("http://127.0.0.1./", "127.0.0.1"),
            ("http://[::ffff:127.0.0.1]", "127.0.0.1"),
            ("http://[0:0:0:0:0:ffff:a9fe:a9fe]", "169.254.169.254"),
            ("http://[fe80::1%25eth0]/", "fe80::1"),
            ("http://[0000::1]:80/", "::1"),
        ] {
            assert_eq!(ip(url), expected.parse::<IpAddr>().unwrap(), "{url}");
        }
    }

    #[test]
    fn numbers_that_are_no_address_are_refused_not_resolved() {
        for url in [
            "http://425.510.425.510",
            "http://7147006462",
            "http://0x41414141A9FEA9FE",
            "http://1.2.3.4.5",
            "http://o177.0.0.1/",
            "http://0o177.0.0.1/",
            "http://q177.0.0.1/",
            "http://1..1/",
            "http://08.0.0.1/",
        ] {
            assert_eq!(Target::parse(url), Err(EgressRefusal::Host), "{url}");
        }
    }

    #[test]
    fn authorities_that_parsers_disagree_on_are_refused() {
        for (url, why) in [
            ("http://user@example.com/", EgressRefusal::Userinfo),
            (
                "http://google.com:80+&@127.88.23.245:22/#+@google.com:80/",
                EgressRefusal::Userinfo,
            ),
            (
                "http://127.1.1.1:80\\@127.2.2.2:80/",
                EgressRefusal::Character,
            ),
            (
                "http://1.1.1.1 &@2.2.2.2# @3.3.3.3/",
                EgressRefusal::Character,
            ),
            ("http://example.com:+443/", EgressRefusal::Port),
            ("http://example.com:/", EgressRefusal::Port),
            ("http://example.com:65536/", EgressRefusal::Port),
            ("http://example.com:0/", EgressRefusal::Port),
            ("http://example.com:00443/", EgressRefusal::Port),
            ("http://example.com:80:81/", EgressRefusal::Port),
            ("http://[::1]x/", EgressRefusal::Port),
            ("http:127.0.0.1/", EgressRefusal::Malformed),
            ("ftp://example.com/", EgressRefusal::Scheme),
            ("gopher://example.com/", EgressRefusal::Scheme),
            ("http://ⓔⓧⓐⓜⓟⓛⓔ.ⓒⓞⓜ", EgressRefusal::Character),
            ("http://exa%6dple.com/", EgressRefusal::Host),
            ("http://-a.com/", EgressRefusal::Host),
            ("http:///x", EgressRefusal::Host),
            ("http://example.com/a/../admin", EgressRefusal::Path),
            ("http://example.com/a/%2e%2E/admin", EgressRefusal::Path),
            ("http://example.com/v1%2f..%2fadmin", EgressRefusal::Path),
        ] {
            assert_eq!(Target::parse(url), Err(why), "{url}");
        }
    }

    #[test]
    fn ordinary_urls_read_as_expected() {
        let t = Target::parse("HTTPS://API.Stripe.com/v1/charges?x=1#frag").unwrap();
        assert_eq!(t.scheme, Scheme::Https);
        assert_eq!(t.host, Host::Name("api.stripe.com".into()));
        assert_eq!(t.port, 443);
        assert_eq!(t.path(), "/v1/charges");
        assert_eq!(t.path_and_query, "/v1/charges?x=1");
        assert_eq!(t.authority(), "api.stripe.com");
        let t = Target::from_parts("http", "inventory.internal:8080", "").unwrap();
        assert_eq!(t.port, 8080);
        assert_eq!(t.to_string(), "http://inventory.internal:8080/");
    }
}
