//! Special-purpose address ranges: the addresses a function may not reach
//! unless an allowlist entry names the range explicitly.
//!
//! The lists follow the IANA IPv4 and IPv6 Special-Purpose Address
//! Registries (RFC 6890 and its updates) plus multicast, the reserved
//! blocks and every IPv6 form that embeds an IPv4 address. Anything that
//! is not global unicast is refused: for IPv6 every address outside
//! `2000::/3` is refused as `reserved` even if no entry below names it, so
//! a future allocation fails closed.
//!
//! Trusts nothing: callers pass addresses read from guests or from DNS.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// A special-purpose range an address falls in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecialRange {
    /// The range, e.g. `169.254.0.0/16`.
    pub net: IpNet,
    /// What it is, e.g. `link-local`.
    pub name: &'static str,
}

const V4: &[([u8; 4], u8, &str)] = &[
    ([0, 0, 0, 0], 8, "this-network"),
    ([10, 0, 0, 0], 8, "private"),
    ([100, 64, 0, 0], 10, "shared-address-space (CGNAT)"),
    ([127, 0, 0, 0], 8, "loopback"),
    ([169, 254, 0, 0], 16, "link-local"),
    ([172, 16, 0, 0], 12, "private"),
    ([192, 0, 0, 0], 24, "ietf-protocol-assignments"),
    ([192, 0, 2, 0], 24, "documentation"),
    ([192, 31, 196, 0], 24, "as112"),
    ([192, 52, 193, 0], 24, "amt"),
    ([192, 88, 99, 0], 24, "6to4-relay-anycast"),
    ([192, 168, 0, 0], 16, "private"),
    ([192, 175, 48, 0], 24, "direct-delegation-as112"),
    ([198, 18, 0, 0], 15, "benchmarking"),
    ([198, 51, 100, 0], 24, "documentation"),
    ([203, 0, 113, 0], 24, "documentation"),
    ([224, 0, 0, 0], 4, "multicast"),
    ([255, 255, 255, 255], 32, "broadcast"),
    ([240, 0, 0, 0], 4, "reserved"),
];

const V6: &[([u16; 8], u8, &str)] = &[
    ([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified"),
    ([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback"),
    ([0, 0, 0, 0, 0, 0xffff, 0, 0], 96, "ipv4-mapped"),
    ([0, 0, 0, 0, 0xffff, 0, 0, 0], 96, "ipv4-translated"),
    ([0, 0, 0, 0, 0, 0, 0, 0], 96, "ipv4-compatible"),
    ([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96, "nat64"),
    ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "nat64-local"),
    ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only"),
    ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "teredo"),
    ([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, "benchmarking"),
    ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation"),
    (
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "ietf-protocol-assignments",
    ),
    ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "6to4"),
    ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation"),
    ([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "segment-routing"),
    ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique-local"),
    ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local"),
    ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "site-local"),
    ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast"),
];

/// The special-purpose range `ip` falls in, if any: the first (most
/// specific) entry of the registry lists above, or `reserved` for IPv6
/// outside global unicast.
pub fn special_range(ip: IpAddr) -> Option<SpecialRange> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<SpecialRange> {
    V4.iter().find_map(|(octets, len, name)| {
        let net = Ipv4Net::new(Ipv4Addr::from(*octets), *len).ok()?;
        net.contains(&ip).then_some(SpecialRange {
            net: IpNet::V4(net),
            name,
        })
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<SpecialRange> {
    let listed = V6.iter().find_map(|(segments, len, name)| {
        let [a, b, c, d, e, f, g, h] = *segments;
        let net = Ipv6Net::new(Ipv6Addr::new(a, b, c, d, e, f, g, h), *len).ok()?;
        net.contains(&ip).then_some(SpecialRange {
            net: IpNet::V6(net),
            name,
        })
    });
    if listed.is_some() {
        return listed;
    }
    // Global unicast is 2000::/3; everything else is reserved by IANA.
    let global = Ipv6Net::new(Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3).ok()?;
    if global.contains(&ip) {
        None
    } else {
        Some(SpecialRange {
            net: IpNet::V6(Ipv6Net::new(ip, 128).ok()?),
            name: "reserved",
        })
    }
}

/// The address a connection to `ip` really reaches when that is plain
/// IPv4: an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is an IPv4
/// connection on a dual-stack socket. Other embeddings stay IPv6 (and
/// are special-purpose ranges of their own).
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 @ IpAddr::V4(_) => v4,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn name(ip: &str) -> Option<&'static str> {
        special_range(ip.parse().unwrap()).map(|r| r.name)
    }

    #[test]
    fn every_special_purpose_ipv4_range_is_found() {
        for (ip, expected) in [
            ("0.0.0.0", "this-network"),
            ("10.1.2.3", "private"),
            ("100.100.100.200", "shared-address-space (CGNAT)"),
            ("127.88.23.245", "loopback"),
            ("169.254.169.254", "link-local"),
            ("169.254.170.2", "link-local"),
            ("172.31.255.255", "private"),
            ("192.0.0.8", "ietf-protocol-assignments"),
            ("192.0.2.1", "documentation"),
            ("192.88.99.1", "6to4-relay-anycast"),
            ("192.168.1.1", "private"),
            ("198.19.0.1", "benchmarking"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("250.1.1.1", "reserved"),
        ] {
            assert_eq!(name(ip), Some(expected), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "93.184.216.34",
        ] {
            assert_eq!(name(ip), None, "{ip}");
        }
    }

    #[test]
    fn every_ipv6_form_that_embeds_ipv4_is_special() {
        for (ip, expected) in [
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "ipv4-mapped"),
            ("::ffff:a9fe:a9fe", "ipv4-mapped"),
            ("::ffff:8.8.8.8", "ipv4-mapped"),
            ("::ffff:0:8.8.8.8", "ipv4-translated"),
            ("::8.8.8.8", "ipv4-compatible"),
            ("64:ff9b::a9fe:a9fe", "nat64"),
            ("64:ff9b:1::1", "nat64-local"),
            ("2002:a9fe:a9fe::1", "6to4"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "teredo"),
            ("2001:db8::1", "documentation"),
            ("2001:2::1", "benchmarking"),
            ("fd00:ec2::254", "unique-local"),
            ("fe80::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("100::1", "discard-only"),
            ("4000::1", "reserved"),
        ] {
            assert_eq!(name(ip), Some(expected), "{ip}");
        }
        assert_eq!(name("2606:4700:4700::1111"), None);
    }

    #[test]
    fn mapped_addresses_are_read_as_the_ipv4_they_reach() {
        assert_eq!(
            canonical("::ffff:10.1.2.3".parse().unwrap()),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            canonical("64:ff9b::a9fe:a9fe".parse().unwrap()),
            "64:ff9b::a9fe:a9fe".parse::<IpAddr>().unwrap()
        );
    }
}
