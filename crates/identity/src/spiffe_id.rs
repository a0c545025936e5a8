//! SPIFFE IDs and trust domain names, parsed per the SPIFFE ID specification
//! (<https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md>).
//!
//! The rules enforced here, by section of that specification:
//! * §2: the scheme is `spiffe` (written in lowercase, as go-spiffe and java-spiffe require),
//!   followed by `://`; no query or fragment (`?` and `#` are not allowed characters).
//! * §2.1: the trust domain is the URI host: 1 to 255 of `[a-z0-9._-]`. A port (`:`),
//!   userinfo (`@`), uppercase letters and percent-encoding are refused.
//! * §2.2: the path is empty or `/`-separated segments of `[A-Za-z0-9._-]`; a segment is
//!   never empty, `.` or `..`; no trailing `/`; no percent-encoding.
//! * §2.3: the whole ID is at most 2048 bytes.
//!
//! The character sets are those of the current specification text (they were added after
//! its first versions, and are what the go, java and rust SPIFFE libraries enforce).

use std::fmt;
use std::str::FromStr;

use crate::error::{excerpt, IdentityError};

/// Longest SPIFFE ID accepted (SPIFFE-ID §2.3).
pub const MAX_SPIFFE_ID_LEN: usize = 2048;
/// Longest trust domain name accepted (SPIFFE-ID §2.3, RFC 3986 host).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;
/// The trust domain used when the platform configuration names none.
pub const DEFAULT_TRUST_DOMAIN: &str = "zerofn.local";

const SCHEME_PREFIX: &str = "spiffe://";

/// Which rule of the SPIFFE ID specification an input breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpiffeIdProblem {
    /// The input is empty.
    Empty,
    /// The input is longer than 2048 bytes (§2.3), or a trust domain longer than 255.
    TooLong,
    /// The input does not start with `spiffe://`.
    WrongScheme,
    /// Nothing between `spiffe://` and the path.
    MissingTrustDomain,
    /// The trust domain has a character outside `[a-z0-9._-]` (§2.1), which is how an
    /// uppercase letter, a port, userinfo and percent-encoding are refused.
    TrustDomainCharacter,
    /// The path ends with `/` (§2.2).
    TrailingSlash,
    /// The path has an empty segment, as in `a//b` (§2.2).
    EmptySegment,
    /// The path has a `.` or `..` segment (§2.2).
    DotSegment,
    /// The path has a character outside `[A-Za-z0-9._-]` (§2.2), which is how
    /// percent-encoding, a query and a fragment are refused.
    PathCharacter,
}

impl fmt::Display for SpiffeIdProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpiffeIdProblem::Empty => "it is empty",
            SpiffeIdProblem::TooLong => {
                "it is too long (at most 2048 bytes, and 255 for the trust domain)"
            }
            SpiffeIdProblem::WrongScheme => "it does not start with `spiffe://`",
            SpiffeIdProblem::MissingTrustDomain => "the trust domain is missing",
            SpiffeIdProblem::TrustDomainCharacter => {
                "the trust domain may hold only lowercase letters, digits, `.`, `-` and `_` (no port, userinfo or percent-encoding)"
            }
            SpiffeIdProblem::TrailingSlash => "the path ends with `/`",
            SpiffeIdProblem::EmptySegment => "the path has an empty segment",
            SpiffeIdProblem::DotSegment => "the path has a `.` or `..` segment",
            SpiffeIdProblem::PathCharacter => {
                "the path may hold only letters, digits, `.`, `-`, `_` and `/` (no percent-encoding, query or fragment)"
            }
        })
    }
}

/// A SPIFFE trust domain name, such as `zerofn.local`. Built only by [`TrustDomain::new`],
/// so every value follows SPIFFE-ID §2.1.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Parse a bare trust domain name (no scheme).
    pub fn new(name: &str) -> Result<TrustDomain, IdentityError> {
        check_trust_domain(name).map_err(|problem| IdentityError::TrustDomainInvalid {
            input: excerpt(name),
            problem,
        })?;
        Ok(TrustDomain(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SPIFFE ID of the trust domain itself, `spiffe://<name>`: the ID of its CA.
    pub fn id(&self) -> SpiffeId {
        SpiffeId {
            uri: format!("{SCHEME_PREFIX}{}", self.0),
            trust_domain: self.clone(),
            path: String::new(),
        }
    }
}

impl Default for TrustDomain {
    fn default() -> Self {
        TrustDomain(DEFAULT_TRUST_DOMAIN.to_owned())
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrustDomain::new(s)
    }
}

/// A SPIFFE ID, such as `spiffe://zerofn.local/tenant/acme/fn/hello`. Built only by
/// [`SpiffeId::parse`], [`SpiffeId::for_function`] and [`TrustDomain::id`], so every value
/// follows the SPIFFE ID specification. `Display` prints the URI.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct SpiffeId {
    // INVARIANT: uri == "spiffe://" + trust_domain + path, and path is "" or "/seg(/seg)*".
    uri: String,
    trust_domain: TrustDomain,
    path: String,
}

impl SpiffeId {
    /// Parse a SPIFFE ID from untrusted text.
    pub fn parse(input: &str) -> Result<SpiffeId, IdentityError> {
        let invalid = |problem| IdentityError::SpiffeIdInvalid {
            input: excerpt(input),
            problem,
        };
        if input.is_empty() {
            return Err(invalid(SpiffeIdProblem::Empty));
        }
        if input.len() > MAX_SPIFFE_ID_LEN {
            return Err(invalid(SpiffeIdProblem::TooLong));
        }
        let rest = input
            .strip_prefix(SCHEME_PREFIX)
            .ok_or(invalid(SpiffeIdProblem::WrongScheme))?;
        let (trust_domain, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        check_trust_domain(trust_domain).map_err(|problem| match problem {
            SpiffeIdProblem::Empty => invalid(SpiffeIdProblem::MissingTrustDomain),
            other => invalid(other),
        })?;
        check_path(path).map_err(invalid)?;
        Ok(SpiffeId {
            uri: input.to_owned(),
            trust_domain: TrustDomain(trust_domain.to_owned()),
            path: path.to_owned(),
        })
    }

    /// The ID of function `name` of tenant `tenant`:
    /// `spiffe://<trust domain>/tenant/<tenant>/fn/<name>`. Both names must be valid path
    /// segments (letters, digits, `.`, `-`, `_`; not `.` or `..`).
    pub fn for_function(
        trust_domain: &TrustDomain,
        tenant: &str,
        name: &str,
    ) -> Result<SpiffeId, IdentityError> {
        for segment in [tenant, name] {
            check_segment(segment).map_err(|problem| IdentityError::PathSegmentInvalid {
                input: excerpt(segment),
                problem,
            })?;
        }
        let path = format!("/tenant/{tenant}/fn/{name}");
        let uri = format!("{SCHEME_PREFIX}{trust_domain}{path}");
        if uri.len() > MAX_SPIFFE_ID_LEN {
            return Err(IdentityError::SpiffeIdInvalid {
                input: excerpt(&uri),
                problem: SpiffeIdProblem::TooLong,
            });
        }
        Ok(SpiffeId {
            uri,
            trust_domain: trust_domain.clone(),
            path,
        })
    }

    /// The URI.
    pub fn as_str(&self) -> &str {
        &self.uri
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The path: empty for a trust domain's own ID, else `/` followed by segments.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether this ID names a workload: it has a non-root path (X509-SVID §3.1).
    pub fn is_workload(&self) -> bool {
        !self.path.is_empty()
    }

    /// Whether this ID belongs to `trust_domain`.
    pub fn is_member_of(&self, trust_domain: &TrustDomain) -> bool {
        &self.trust_domain == trust_domain
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl FromStr for SpiffeId {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SpiffeId::parse(s)
    }
}

impl TryFrom<String> for SpiffeId {
    type Error = IdentityError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        SpiffeId::parse(&s)
    }
}

impl From<SpiffeId> for String {
    fn from(id: SpiffeId) -> String {
        id.uri
    }
}

fn check_trust_domain(name: &str) -> Result<(), SpiffeIdProblem> {
    if name.is_empty() {
        return Err(SpiffeIdProblem::Empty);
    }
    if name.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdProblem::TooLong);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(SpiffeIdProblem::TrustDomainCharacter);
    }
    Ok(())
}

fn check_path(path: &str) -> Result<(), SpiffeIdProblem> {
    if path.is_empty() {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(SpiffeIdProblem::TrailingSlash);
    }
    // `path` starts with '/' (it was split off at the first '/'), so the first item of
    // `split` is the empty string before it.
    path.split('/').skip(1).try_for_each(check_segment)
}

fn check_segment(segment: &str) -> Result<(), SpiffeIdProblem> {
    if segment.is_empty() {
        return Err(SpiffeIdProblem::EmptySegment);
    }
    if segment == "." || segment == ".." {
        return Err(SpiffeIdProblem::DotSegment);
    }
    if !segment
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(SpiffeIdProblem::PathCharacter);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn problem_of(input: &str) -> Option<SpiffeIdProblem> {
        match SpiffeId::parse(input) {
            Ok(_) => None,
            Err(IdentityError::SpiffeIdInvalid { problem, .. }) => Some(problem),
            Err(other) => panic!("unexpected error for {input:?}: {other}"),
        }
    }

    #[test]
    fn accepts_the_specifications_examples() {
        for input in [
            "spiffe://trust-domain-name/path",
            "spiffe://staging.example.com/payments/mysql",
            "spiffe://staging.example.com/payments/web-fe",
            "spiffe://k8s-west.example.com/ns/staging/sa/default",
            "spiffe://example.com/9eebccd2-12bf-40a6-b262-65fe0487d453",
            "spiffe://example.org",
            "spiffe://zerofn.local/tenant/acme/fn/hello_World.v2",
            "spiffe://a_b.c-d/..a/.b/c..",
        ] {
            let id = SpiffeId::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(id.to_string(), input);
        }
    }

    #[test]
    fn splits_trust_domain_and_path() {
        let id = SpiffeId::parse("spiffe://example.org/ns/staging").unwrap();
        assert_eq!(id.trust_domain().as_str(), "example.org");
        assert_eq!(id.path(), "/ns/staging");
        assert!(id.is_workload());
        let root = SpiffeId::parse("spiffe://example.org").unwrap();
        assert_eq!(root.path(), "");
        assert!(!root.is_workload());
        assert_eq!(root, TrustDomain::new("example.org").unwrap().id());
    }

    #[test]
    fn rejects_what_the_specification_forbids() {
        use SpiffeIdProblem::*;
        let too_long = format!("spiffe://example.org/{}", "a".repeat(MAX_SPIFFE_ID_LEN));
        let long_td = format!("spiffe://{}/a", "a".repeat(MAX_TRUST_DOMAIN_LEN + 1));
        for (input, expected, why) in [
            ("", Empty, "empty"),
            ("spiffe://", MissingTrustDomain, "no trust domain"),
            (
                "spiffe:///path",
                MissingTrustDomain,
                "no trust domain, path only",
            ),
            ("http://example.org/a", WrongScheme, "http scheme"),
            ("SPIFFE://example.org/a", WrongScheme, "uppercase scheme"),
            ("spiffe:/example.org/a", WrongScheme, "one slash"),
            ("spiffe//example.org/a", WrongScheme, "no colon"),
            ("example.org/a", WrongScheme, "no scheme"),
            (" spiffe://example.org/a", WrongScheme, "leading space"),
            (
                "spiffe://Example.org/a",
                TrustDomainCharacter,
                "uppercase trust domain",
            ),
            (
                "spiffe://EXAMPLE.ORG",
                TrustDomainCharacter,
                "all-uppercase trust domain",
            ),
            ("spiffe://example.org:8080/a", TrustDomainCharacter, "port"),
            (
                "spiffe://example.org:/a",
                TrustDomainCharacter,
                "empty port",
            ),
            (
                "spiffe://user@example.org/a",
                TrustDomainCharacter,
                "userinfo",
            ),
            (
                "spiffe://user:pw@example.org/a",
                TrustDomainCharacter,
                "userinfo with password",
            ),
            (
                "spiffe://exa%6Dple.org/a",
                TrustDomainCharacter,
                "percent-encoded trust domain",
            ),
            ("spiffe://[::1]/a", TrustDomainCharacter, "IPv6 literal"),
            (
                "spiffe://example.org?x=1",
                TrustDomainCharacter,
                "query after trust domain",
            ),
            (
                "spiffe://example.org#frag",
                TrustDomainCharacter,
                "fragment after trust domain",
            ),
            (
                "spiffe://exämple.org/a",
                TrustDomainCharacter,
                "non-ASCII trust domain",
            ),
            (
                "spiffe://example.org/",
                TrailingSlash,
                "trailing slash, root",
            ),
            (
                "spiffe://example.org/path/",
                TrailingSlash,
                "trailing slash",
            ),
            ("spiffe://example.org//path", EmptySegment, "empty segment"),
            (
                "spiffe://example.org/a//b",
                EmptySegment,
                "empty middle segment",
            ),
            ("spiffe://example.org/./a", DotSegment, "dot segment"),
            ("spiffe://example.org/a/..", DotSegment, "dot-dot segment"),
            (
                "spiffe://example.org/a/../b",
                DotSegment,
                "dot-dot in the middle",
            ),
            (
                "spiffe://example.org/a%2Fb",
                PathCharacter,
                "percent-encoding in path",
            ),
            (
                "spiffe://example.org/%2e%2e",
                PathCharacter,
                "percent-encoded dot-dot",
            ),
            ("spiffe://example.org/a?x=1", PathCharacter, "query"),
            ("spiffe://example.org/a#frag", PathCharacter, "fragment"),
            ("spiffe://example.org/a b", PathCharacter, "space"),
            ("spiffe://example.org/a:b", PathCharacter, "colon in path"),
            ("spiffe://example.org/ä", PathCharacter, "non-ASCII path"),
            ("spiffe://example.org/a\u{0}", PathCharacter, "NUL in path"),
            (too_long.as_str(), TooLong, "longer than 2048 bytes"),
            (
                long_td.as_str(),
                TooLong,
                "trust domain longer than 255 bytes",
            ),
        ] {
            assert_eq!(problem_of(input), Some(expected), "{why}: {input:?}");
        }
    }

    #[test]
    fn accepts_exactly_2048_bytes() {
        let prefix = "spiffe://example.org/";
        let id = format!("{prefix}{}", "a".repeat(MAX_SPIFFE_ID_LEN - prefix.len()));
        assert_eq!(id.len(), MAX_SPIFFE_ID_LEN);
        assert!(SpiffeId::parse(&id).is_ok());
    }

    #[test]
    fn trust_domain_rules() {
        assert_eq!(TrustDomain::default().as_str(), "zerofn.local");
        assert!(TrustDomain::new("prod.example_1-a").is_ok());
        for bad in [
            "",
            "Example.org",
            "example.org:1",
            "a@b",
            "spiffe://example.org",
            "a/b",
        ] {
            assert!(
                matches!(
                    TrustDomain::new(bad),
                    Err(IdentityError::TrustDomainInvalid { .. })
                ),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn for_function_builds_the_platform_layout() {
        let td = TrustDomain::default();
        let id = SpiffeId::for_function(&td, "acme", "hello").unwrap();
        assert_eq!(id.as_str(), "spiffe://zerofn.local/tenant/acme/fn/hello");
        assert_eq!(SpiffeId::parse(id.as_str()).unwrap(), id);
        for (tenant, name) in [
            ("", "f"),
            ("acme", ".."),
            ("a/b", "f"),
            ("acme", "f%20"),
            (".", "f"),
        ] {
            assert!(
                matches!(
                    SpiffeId::for_function(&td, tenant, name),
                    Err(IdentityError::PathSegmentInvalid { .. })
                ),
                "{tenant:?}/{name:?} was accepted"
            );
        }
    }

    #[test]
    fn serde_goes_through_the_parser() {
        let id: SpiffeId = serde_json::from_str("\"spiffe://example.org/a\"").unwrap();
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"spiffe://example.org/a\""
        );
        assert!(serde_json::from_str::<SpiffeId>("\"spiffe://example.org/a/\"").is_err());
    }

    #[test]
    fn error_message_escapes_input() {
        let err = SpiffeId::parse("spiffe://a/`\u{1b}")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "`spiffe://a/\\`\\u{1b}` is not a SPIFFE ID: the path may hold only letters, digits, `.`, `-`, `_` and `/` (no percent-encoding, query or fragment)"
        );
    }

    fn segment() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._-]{1,12}".prop_filter("dot segments are invalid", |s| s != "." && s != "..")
    }

    proptest! {
        #[test]
        fn parse_never_panics(input in any::<String>()) {
            let _ = SpiffeId::parse(&input);
            let _ = TrustDomain::new(&input);
        }

        #[test]
        fn parse_never_panics_on_near_misses(input in "(spiffe|SPIFFE|http)?:?/{0,3}[a-zA-Z0-9.:@%_?#/-]{0,40}") {
            if let Ok(id) = SpiffeId::parse(&input) {
                prop_assert_eq!(id.as_str(), input.as_str());
            }
        }

        #[test]
        fn valid_ids_round_trip(
            td in "[a-z0-9._-]{1,30}",
            segments in proptest::collection::vec(segment(), 0..6),
        ) {
            let path: String = segments.iter().map(|s| format!("/{s}")).collect();
            let input = format!("spiffe://{td}{path}");
            let id = SpiffeId::parse(&input).unwrap();
            prop_assert_eq!(id.to_string(), input.clone());
            prop_assert_eq!(id.trust_domain().as_str(), td.as_str());
            prop_assert_eq!(id.path(), path.as_str());
            prop_assert_eq!(SpiffeId::parse(&id.to_string()).unwrap(), id);
        }

        #[test]
        fn for_function_output_parses(tenant in segment(), name in segment()) {
            let id = SpiffeId::for_function(&TrustDomain::default(), &tenant, &name).unwrap();
            prop_assert_eq!(SpiffeId::parse(id.as_str()).unwrap(), id);
        }
    }
}
