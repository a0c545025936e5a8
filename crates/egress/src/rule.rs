//! One allowlist entry of a manifest's `[egress] allow`: scheme, host
//! (exact, `*.` for exactly one more label, or an IP literal), port
//! (default by scheme), optional path prefix, optional methods, and the
//! special-purpose ranges it may reach (`allow_ranges`).
//!
//! An entry is parsed with the same strict reader as a guest's request
//! ([`crate::Target`]), so an entry and a request cannot spell one host two
//! ways. Trusts nothing: entries are a tenant's input.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::target::{Host, Scheme, Target};

/// Most entries in one `[egress] allow`.
pub const MAX_RULES: usize = 64;

/// The methods an entry may name.
const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Why an `[egress] allow` entry is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("`{url}` is not `http[s]://host[:port][/path-prefix]`: {why}")]
    Url { url: String, why: String },
    #[error(
        "`{url}`: a wildcard is `*.` followed by a name of at least two labels (`*.example.com`)"
    )]
    Wildcard { url: String },
    #[error(
        "`{url}`: method `{method}` is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
    )]
    Method { url: String, method: String },
    #[error("`{url}`: `{range}` is not a CIDR range such as `10.0.0.0/8` or `fd00::/8`")]
    Range { url: String, range: String },
    #[error("`{url}`: the path prefix may hold no query or fragment")]
    Query { url: String },
}

/// The host part of an entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HostPattern {
    /// Exactly this name.
    Exact(String),
    /// `*.<suffix>`: one more label, not the suffix itself.
    Wildcard(String),
    /// Exactly this address.
    Ip(IpAddr),
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(n) => f.write_str(n),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
            HostPattern::Ip(ip) => Host::Ip(*ip).fmt(f),
        }
    }
}

/// One allowlist entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EgressRule {
    pub scheme: Scheme,
    pub host: HostPattern,
    pub port: u16,
    /// A path prefix; `None` allows every path.
    pub path_prefix: Option<String>,
    /// Upper-case methods; empty allows every method.
    pub methods: BTreeSet<String>,
    /// Special-purpose ranges this entry may reach.
    pub allow_ranges: Vec<IpNet>,
}

impl EgressRule {
    /// Parses an entry: its URL, methods and ranges.
    pub fn parse(
        url: &str,
        methods: &[String],
        allow_ranges: &[String],
    ) -> Result<EgressRule, RuleError> {
        let shown = url.escape_debug().to_string();
        let bad = |why: &str| RuleError::Url {
            url: shown.clone(),
            why: why.to_owned(),
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no `://`"))?;
        let (wildcard, rest) = match rest.strip_prefix("*.") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if tail.contains(['?', '#']) {
            return Err(RuleError::Query { url: shown });
        }
        let target = Target::from_parts(scheme, authority, tail).map_err(|e| bad(e.reason()))?;
        let host = match (wildcard, target.host) {
            (false, Host::Name(n)) => HostPattern::Exact(n),
            (false, Host::Ip(ip)) => HostPattern::Ip(ip),
            (true, Host::Name(n)) if n.contains('.') => HostPattern::Wildcard(n),
            (true, _) => return Err(RuleError::Wildcard { url: shown }),
        };
        let path_prefix = match target.path_and_query.as_str() {
            "/" => None,
            p => Some(p.to_owned()),
        };
        let mut method_set = BTreeSet::new();
        for m in methods {
            let upper = m.to_ascii_uppercase();
            if !METHODS.contains(&upper.as_str()) {
                return Err(RuleError::Method {
                    url: shown,
                    method: m.escape_debug().to_string(),
                });
            }
            method_set.insert(upper);
        }
        let mut ranges = Vec::new();
        for r in allow_ranges {
            let net: IpNet = r.parse().map_err(|_| RuleError::Range {
                url: shown.clone(),
                range: r.escape_debug().to_string(),
            })?;
            ranges.push(net.trunc());
        }
        Ok(EgressRule {
            scheme: target.scheme,
            host,
            port: target.port,
            path_prefix,
            methods: method_set,
            allow_ranges: ranges,
        })
    }

    /// Whether a request for `target` with `method` is within this entry.
    pub fn matches(&self, target: &Target, method: &str) -> bool {
        self.scheme == target.scheme
            && self.port == target.port
            && self.host_matches(&target.host)
            && self.path_matches(target.path())
            && (self.methods.is_empty() || self.methods.contains(method))
    }

    fn host_matches(&self, host: &Host) -> bool {
        match (&self.host, host) {
            (HostPattern::Exact(want), Host::Name(name)) => want == name,
            (HostPattern::Wildcard(suffix), Host::Name(name)) => name
                .strip_suffix(suffix.as_str())
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
            (HostPattern::Ip(want), Host::Ip(ip)) => want == ip,
            _ => false,
        }
    }

    fn path_matches(&self, path: &str) -> bool {
        match &self.path_prefix {
            None => true,
            Some(prefix) if prefix.ends_with('/') => path.starts_with(prefix.as_str()),
            Some(prefix) => {
                path == prefix
                    || path
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        }
    }

    /// Whether every request this entry `other` allows is also allowed by
    /// this one (a zone's egress ceiling covering a function's entry):
    /// same scheme and port; a host this pattern matches (an exact name
    /// under `*.suffix` one label deep, or the same pattern); a path prefix
    /// at or below this one's; methods within this one's (an entry with no
    /// methods allows all, so only a ceiling with none covers it); and
    /// each special-purpose range inside one of this entry's ranges.
    pub fn covers(&self, other: &EgressRule) -> bool {
        let host = match (&self.host, &other.host) {
            (a, b) if a == b => true,
            (HostPattern::Wildcard(_), HostPattern::Exact(name)) => {
                self.host_matches(&Host::Name(name.clone()))
            }
            _ => false,
        };
        let path = match (&self.path_prefix, &other.path_prefix) {
            (None, _) => true,
            (Some(_), None) => false,
            // Every path `theirs` matches starts with `theirs`, so `theirs` matching `mine`
            // (as a path) is enough: `/v1/a` and `/v1/` are under `/v1`, `/v1x` is not.
            (Some(_), Some(theirs)) => self.path_matches(theirs),
        };
        let methods = self.methods.is_empty()
            || (!other.methods.is_empty() && other.methods.is_subset(&self.methods));
        let ranges = other
            .allow_ranges
            .iter()
            .all(|theirs| self.allow_ranges.iter().any(|mine| mine.contains(theirs)));
        self.scheme == other.scheme && self.port == other.port && host && path && methods && ranges
    }

    /// Whether this entry names a range holding `ip` in `allow_ranges`.
    pub fn allows_range(&self, ip: IpAddr) -> bool {
        let ip = crate::ranges::canonical(ip);
        self.allow_ranges.iter().any(|net| net.contains(&ip))
    }

    /// The entry's URL, canonical (`https://api.stripe.com:443/v1/`): its
    /// name in policy ids and audit records.
    pub fn url(&self) -> String {
        format!(
            "{}://{}:{}{}",
            self.scheme.as_str(),
            self.host,
            self.port,
            self.path_prefix.as_deref().unwrap_or("")
        )
    }
}

impl fmt::Display for EgressRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())?;
        if !self.methods.is_empty() {
            let methods: Vec<&str> = self.methods.iter().map(String::as_str).collect();
            write!(f, " {}", methods.join(","))?;
        }
        for r in &self.allow_ranges {
            write!(f, " +{r}")?;
        }
        Ok(())
    }
}

/// The first entry of `rules` a request is within.
pub fn first_match<'a>(
    rules: &'a [EgressRule],
    target: &Target,
    method: &str,
) -> Option<&'a EgressRule> {
    rules.iter().find(|r| r.matches(target, method))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rule(url: &str) -> EgressRule {
        EgressRule::parse(url, &[], &[]).unwrap()
    }

    fn allows(rule: &EgressRule, url: &str, method: &str) -> bool {
        rule.matches(&Target::parse(url).unwrap(), method)
    }

    #[test]
    fn exact_hosts_ports_and_schemes_must_all_match() {
        let r = rule("https://api.stripe.com");
        assert_eq!(r.url(), "https://api.stripe.com:443");
        assert!(allows(&r, "https://api.stripe.com/v1/charges", "POST"));
        assert!(allows(&r, "https://API.STRIPE.COM:443/", "GET"));
        assert!(!allows(&r, "http://api.stripe.com/", "GET"));
        assert!(!allows(&r, "https://api.stripe.com:8443/", "GET"));
        assert!(!allows(&r, "https://stripe.com/", "GET"));
        assert!(!allows(&r, "https://api.stripe.com.evil.com/", "GET"));
        assert!(!allows(&r, "https://evilapi.stripe.com/", "GET"));
    }

    #[test]
    fn a_wildcard_matches_exactly_one_more_label() {
        let r = rule("https://*.s3.amazonaws.com:443");
        assert!(allows(&r, "https://bucket.s3.amazonaws.com/k", "GET"));
        assert!(!allows(&r, "https://a.bucket.s3.amazonaws.com/k", "GET"));
        assert!(!allows(&r, "https://s3.amazonaws.com/k", "GET"));
        assert!(!allows(&r, "https://xs3.amazonaws.com/k", "GET"));
        for bad in [
            "https://*.com",
            "https://*.10.0.0.1",
            "https://a.*.com",
            "https://*",
        ] {
            assert!(EgressRule::parse(bad, &[], &[]).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_prefixes_and_methods_narrow_an_entry() {
        let r =
            EgressRule::parse("http://inventory.internal:8080/v1/", &["get".into()], &[]).unwrap();
        assert!(allows(
            &r,
            "http://inventory.internal:8080/v1/items?x=1",
            "GET"
        ));
        assert!(!allows(
            &r,
            "http://inventory.internal:8080/v1/items",
            "POST"
        ));
        assert!(!allows(
            &r,
            "http://inventory.internal:8080/v2/items",
            "GET"
        ));
        assert!(!allows(&r, "http://inventory.internal:8080/v1", "GET"));
        let r = rule("http://inventory.internal:8080/v1");
        assert!(allows(&r, "http://inventory.internal:8080/v1", "GET"));
        assert!(allows(&r, "http://inventory.internal:8080/v1/x", "GET"));
        assert!(!allows(&r, "http://inventory.internal:8080/v1beta", "GET"));
    }

    #[test]
    fn bad_entries_are_named() {
        for (url, methods, ranges, expect) in [
            ("api.stripe.com", vec![], vec![], "no `://`"),
            ("ftp://x.com", vec![], vec![], "scheme"),
            ("https://u@x.com", vec![], vec![], "userinfo"),
            ("https://x.com/a?b", vec![], vec![], "query"),
            ("https://x.com", vec!["BREW".to_owned()], vec![], "BREW"),
            (
                "https://x.com",
                vec![],
                vec!["10.0.0.0/33".to_owned()],
                "10.0.0.0/33",
            ),
        ] {
            let err = EgressRule::parse(url, &methods, &ranges).unwrap_err();
            assert!(err.to_string().contains(expect), "{url}: {err}");
        }
    }

    #[test]
    fn ranges_are_allowed_only_where_named() {
        let r = EgressRule::parse("http://db.internal:5432", &[], &["10.0.0.0/8".into()]).unwrap();
        assert!(r.allows_range("10.1.2.3".parse().unwrap()));
        assert!(r.allows_range("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!r.allows_range("127.0.0.1".parse().unwrap()));
        assert_eq!(r.to_string(), "http://db.internal:5432 +10.0.0.0/8");
    }

    #[test]
    fn a_ceiling_covers_only_entries_within_it() {
        let rule = |url: &str, methods: &[&str], ranges: &[&str]| {
            let m: Vec<String> = methods.iter().map(|s| (*s).to_owned()).collect();
            let r: Vec<String> = ranges.iter().map(|s| (*s).to_owned()).collect();
            EgressRule::parse(url, &m, &r).unwrap()
        };
        let wide = rule("https://*.example.com", &[], &[]);
        let api = rule(
            "https://api.example.com/v1",
            &["GET", "POST"],
            &["10.0.0.0/8"],
        );
        for (ceiling, entry, covered) in [
            (&wide, rule("https://a.example.com", &[], &[]), true),
            (&wide, rule("https://a.example.com/x/", &["GET"], &[]), true),
            (&wide, rule("https://*.example.com", &[], &[]), true),
            (&wide, rule("https://a.b.example.com", &[], &[]), false),
            (&wide, rule("https://example.com", &[], &[]), false),
            (&wide, rule("http://a.example.com", &[], &[]), false),
            (&wide, rule("https://a.example.com:8443", &[], &[]), false),
            (
                &wide,
                rule("https://a.example.com", &[], &["10.0.0.0/8"]),
                false,
            ),
            (
                &api,
                rule("https://api.example.com/v1", &["GET"], &["10.1.0.0/16"]),
                true,
            ),
            (
                &api,
                rule("https://api.example.com/v1/orders", &["POST"], &[]),
                true,
            ),
            (&api, rule("https://api.example.com/v1", &[], &[]), false),
            (
                &api,
                rule("https://api.example.com/v1x", &["GET"], &[]),
                false,
            ),
            (&api, rule("https://api.example.com", &["GET"], &[]), false),
            (
                &api,
                rule("https://api.example.com/v1", &["DELETE"], &[]),
                false,
            ),
            (
                &api,
                rule("https://api.example.com/v1", &["GET"], &["11.0.0.0/8"]),
                false,
            ),
            (&api, rule("https://*.example.com", &["GET"], &[]), false),
        ] {
            assert_eq!(ceiling.covers(&entry), covered, "{ceiling} covers {entry}");
        }
    }
}
