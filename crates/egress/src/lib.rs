//! The egress gateway: everything between a function's outbound request and
//! the host's outbound network.
//!
//! It owns, in one place (as Spin's outbound-networking crate owns its
//! allowlist): reading the URL a guest gave ([`Target`], one strict parser
//! for scheme, authority, IP literals in every notation), the
//! special-purpose address ranges ([`ranges`]), the allowlist entries of a
//! manifest ([`EgressRule`]), name resolution by the host itself
//! ([`resolve`]) and the connection ([`client`]): resolve, check every
//! address, connect to a checked one, never look the name up again
//! (Smokescreen's order), so DNS rebinding cannot slip past the check.
//!
//! # Trust
//! Trusts the platform's configuration (DNS server, extra CA bundle,
//! limits). Trusts nothing a guest or a DNS answer says: every address is
//! range-checked; certificates are verified against Mozilla's roots and the
//! configured bundle; redirects are never followed.

#![forbid(unsafe_code)]

pub mod client;
pub mod ranges;
pub mod resolve;
pub mod rule;
pub mod target;

pub use client::{EgressClient, EgressConfig, EgressLimits, Flow, FlowError, FunctionEgressLimits};
pub use ranges::{special_range, SpecialRange};
pub use rule::{first_match, EgressRule, HostPattern, RuleError, MAX_RULES};
pub use target::{Host, Scheme, Target};

/// Why an outbound request is refused before any connection: its reason
/// code (`reason()`) is what flow-log records carry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EgressRefusal {
    #[error("the URL is not `scheme://authority/path`")]
    Malformed,
    #[error("only http and https are allowed")]
    Scheme,
    #[error("userinfo (`user@`) is not allowed in an outbound URL")]
    Userinfo,
    #[error("the URL holds whitespace, control, backslash or non-ASCII characters")]
    Character,
    #[error("the port must be 1 to 65535, digits only, without leading zeros")]
    Port,
    #[error("the host is neither a valid DNS name nor an IP address")]
    Host,
    #[error("the path holds a dot segment or an encoded slash")]
    Path,
}

impl EgressRefusal {
    /// The flow log's reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            EgressRefusal::Malformed => "malformed",
            EgressRefusal::Scheme => "scheme",
            EgressRefusal::Userinfo => "userinfo",
            EgressRefusal::Character => "character",
            EgressRefusal::Port => "port",
            EgressRefusal::Host => "host",
            EgressRefusal::Path => "path",
        }
    }
}

/// The first address of `addresses` in a special-purpose range that
/// `rule` does not name in its `allow_ranges`.
pub fn forbidden_address(
    addresses: &[std::net::IpAddr],
    rule: Option<&EgressRule>,
) -> Option<(std::net::IpAddr, SpecialRange)> {
    addresses.iter().find_map(|ip| {
        let ip = ranges::canonical(*ip);
        let range = special_range(ip)?;
        if rule.is_some_and(|r| r.allows_range(ip)) {
            None
        } else {
            Some((ip, range))
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod ssrf_tests {
    //! Every notation in the shared SSRF corpus aimed at a forbidden range.
    use super::*;

    fn corpus() -> String {
        let dir =
            std::env::var("ZEROFN_TESTDATA").unwrap_or_else(|_| "/work/shared/testdata".into());
        std::fs::read_to_string(format!("{dir}/ssrf/ssrf-bypass-payloads.txt")).unwrap()
    }

    /// How the gateway treats one corpus line before resolution: refused
    /// outright (a reason), or a target whose name still needs resolving.
    fn read(line: &str) -> Result<Target, String> {
        let target = Target::parse(line).map_err(|e| e.reason().to_owned())?;
        if let Host::Ip(ip) = target.host {
            if let Some((ip, range)) = forbidden_address(&[ip], None) {
                return Err(format!("forbidden_range {ip} ({})", range.name));
            }
        }
        Ok(target)
    }

    #[test]
    fn every_ssrf_notation_aimed_at_a_forbidden_range_is_refused_or_left_to_a_name_check() {
        let text = corpus();
        let mut refused = 0;
        let mut names = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match read(line) {
                Err(_) => refused += 1,
                Ok(t) => match t.host {
                    // Names are resolved and every address checked later; none is
                    // on any allowlist here, so `not_allowed` refuses them.
                    Host::Name(n) => names.push(n),
                    Host::Ip(ip) => panic!("{line} reads as allowed address {ip}"),
                },
            }
        }
        assert!(refused >= 50, "only {refused} refused outright");
        // The names the corpus holds: resolution (or the allowlist) decides them.
        for n in &names {
            assert!(
                !n.chars().all(|c| c.is_ascii_digit() || c == '.'),
                "{n} is an address read as a name"
            );
        }
        assert!(names.contains(&"instance-data".to_owned()));
        assert!(names.contains(&"metadata.google.internal".to_owned()));
        assert!(names.contains(&"169.254.169.254.nip.io".to_owned()));
    }

    #[test]
    fn the_corpus_ip_notations_reach_the_ranges_the_corpus_names() {
        for (url, ip) in [
            ("http://0xa9fea9fe", "169.254.169.254"),
            ("http://[::ffff:a9fe:a9fe]", "169.254.169.254"),
            ("http://[0:0:0:0:0:ffff:169.254.169.254]", "169.254.169.254"),
            ("http://[fd00:ec2::254]", "fd00:ec2::254"),
            (
                "http://100.100.100.200/latest/meta-data/",
                "100.100.100.200",
            ),
            ("http://0xc0a80101", "192.168.1.1"),
            ("http://[::]:80/", "::"),
        ] {
            let err = read(url).unwrap_err();
            assert!(
                err.starts_with(&format!("forbidden_range {ip} ")),
                "{url}: {err}"
            );
        }
    }
}
