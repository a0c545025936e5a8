//! Package ecosystems, their version orderings, and OSV range evaluation.
//!
//! Each ecosystem orders versions its own way: SemVer 2.0 precedence (semver.org §11) for
//! crates.io, npm and Go (the `semver` crate), PEP 440 for PyPI (the `pep440_rs` crate:
//! epochs, pre/post/dev releases, local versions). Maven's `ComparableVersion` and the
//! other ecosystems have no crate here; they get [`Scheme::Generic`], a documented
//! approximation. Ranges are evaluated exactly as the OSV schema's "Evaluation" section
//! (`IsVulnerable`, `IncludedInRanges`, `BeforeLimits`) says.
//!
//! A range is evaluated with one ordering for all of its versions: if the candidate or any
//! event does not parse in the ecosystem's scheme, the whole range falls back to the generic
//! ordering. Mixing two orderings in one sort is not a total order (and `sort_by` may then
//! panic), so this is done on purpose.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A package ecosystem, as OSV names it (`affected[].package.ecosystem`).
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(from = "String", into = "String")]
pub enum Ecosystem {
    /// `crates.io` (purl type `cargo`).
    CratesIo,
    /// `npm` (purl type `npm`).
    Npm,
    /// `PyPI` (purl type `pypi`).
    PyPi,
    /// `Go` (purl type `golang`).
    Go,
    /// `Maven` (purl type `maven`); names are `groupId:artifactId`.
    Maven,
    /// Any other OSV ecosystem string, kept exactly (for example `Alpine:v3.18`).
    Other(String),
}

impl Ecosystem {
    /// The ecosystem an OSV record names. `Maven:<repository URL>` is Maven.
    pub fn from_osv(text: &str) -> Ecosystem {
        match text {
            "crates.io" => Ecosystem::CratesIo,
            "npm" => Ecosystem::Npm,
            "PyPI" => Ecosystem::PyPi,
            "Go" => Ecosystem::Go,
            "Maven" => Ecosystem::Maven,
            other if other.starts_with("Maven:") => Ecosystem::Maven,
            other => Ecosystem::Other(other.to_owned()),
        }
    }

    /// The OSV spelling of the ecosystem.
    pub fn as_osv(&self) -> &str {
        match self {
            Ecosystem::CratesIo => "crates.io",
            Ecosystem::Npm => "npm",
            Ecosystem::PyPi => "PyPI",
            Ecosystem::Go => "Go",
            Ecosystem::Maven => "Maven",
            Ecosystem::Other(name) => name,
        }
    }

    /// The package name as the index keys it, so SBOM and OSV spellings meet.
    ///
    /// * PyPI: PEP 503 normalisation (lowercase, runs of `-`, `_`, `.` become one `-`).
    /// * crates.io: lowercase, `_` as `-` (crates.io treats both as the same name).
    /// * npm: lowercase (the registry refuses names differing only by case; the purl spec
    ///   lowercases npm names too).
    /// * Go, Maven and others: unchanged (module paths and coordinates are case-sensitive).
    pub fn normalize_name(&self, name: &str) -> String {
        match self {
            Ecosystem::PyPi => {
                let mut out = String::with_capacity(name.len());
                let mut in_separator_run = false;
                for c in name.chars() {
                    if matches!(c, '-' | '_' | '.') {
                        if !in_separator_run {
                            out.push('-');
                        }
                        in_separator_run = true;
                    } else {
                        out.extend(c.to_lowercase());
                        in_separator_run = false;
                    }
                }
                out
            }
            Ecosystem::CratesIo => name.to_lowercase().replace('_', "-"),
            Ecosystem::Npm => name.to_lowercase(),
            Ecosystem::Go | Ecosystem::Maven | Ecosystem::Other(_) => name.to_owned(),
        }
    }

    /// The version ordering of `ECOSYSTEM` ranges in this ecosystem.
    pub fn scheme(&self) -> Scheme {
        match self {
            Ecosystem::CratesIo | Ecosystem::Npm | Ecosystem::Go => Scheme::SemVer,
            Ecosystem::PyPi => Scheme::Pep440,
            Ecosystem::Maven | Ecosystem::Other(_) => Scheme::Generic,
        }
    }
}

impl From<String> for Ecosystem {
    fn from(text: String) -> Ecosystem {
        Ecosystem::from_osv(&text)
    }
}

impl From<Ecosystem> for String {
    fn from(ecosystem: Ecosystem) -> String {
        ecosystem.as_osv().to_owned()
    }
}

impl fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_osv())
    }
}

/// A version ordering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// SemVer 2.0 precedence (§11; build metadata ignored). A leading `v` is accepted, as Go
    /// writes it.
    SemVer,
    /// PEP 440 ("Version specifiers", as maintained at packaging.python.org).
    Pep440,
    /// A fallback: versions split into runs of digits and of letters (other characters
    /// separate); digit runs compare as numbers, letter runs case-insensitively, and a
    /// letter run sorts below the end of a version, which sorts below a digit run. So
    /// `1.0-beta < 1.0 < 1.0.1` and `1.9 < 1.10`. It approximates Maven's
    /// `ComparableVersion` (no qualifier aliases such as `ga` or `final`).
    Generic,
}

/// The kind of an OSV range (`affected[].ranges[].type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RangeKind {
    /// `SEMVER`: SemVer 2.0 versions, whatever the ecosystem.
    Semver,
    /// `ECOSYSTEM`: the ecosystem's own versions.
    Ecosystem,
    /// `GIT`: commit hashes; needs the repository's commit graph, so never evaluated here
    /// (the record's `versions` list covers it, as the spec requires).
    Git,
}

/// One event of an OSV range.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The vulnerability starts at this version (`"0"`: before every version).
    Introduced(String),
    /// This version contains the fix.
    Fixed(String),
    /// The last affected version (inclusive).
    LastAffected(String),
    /// An upper limit on the range (`"*"`: infinity).
    Limit(String),
}

impl Event {
    fn version(&self) -> &str {
        match self {
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
        }
    }

    /// At equal versions an `introduced` sorts first, so `introduced X, fixed X` is the empty
    /// range and `introduced X, last_affected X` is exactly `X`.
    fn tie_rank(&self) -> u8 {
        match self {
            Event::Introduced(_) => 0,
            Event::Fixed(_) => 1,
            Event::LastAffected(_) => 2,
            Event::Limit(_) => 3,
        }
    }

    fn key_text(&self) -> KeyText<'_> {
        match self {
            Event::Introduced(v) if v == "0" => KeyText::Zero,
            Event::Limit(v) if v.contains('*') => KeyText::Infinity,
            other => KeyText::Version(other.version()),
        }
    }
}

/// An OSV range: its kind and its events, in the record's order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VersionRange {
    /// How the event versions are ordered.
    pub kind: RangeKind,
    /// The events (the evaluation sorts them).
    pub events: Vec<Event>,
}

impl VersionRange {
    /// `IncludedInRanges` for this one range: is `version` of a package in `ecosystem`
    /// inside it? `GIT` ranges are never evaluated (always `false`).
    pub fn includes(&self, ecosystem: &Ecosystem, version: &str) -> bool {
        let scheme = match self.kind {
            RangeKind::Semver => Scheme::SemVer,
            RangeKind::Ecosystem => ecosystem.scheme(),
            RangeKind::Git => return false,
        };
        let texts: Vec<KeyText<'_>> = self.events.iter().map(Event::key_text).collect();
        let scheme = if all_parse(scheme, version, &texts) {
            scheme
        } else {
            Scheme::Generic
        };
        let candidate = Key::parse(scheme, KeyText::Version(version));
        let mut events: Vec<(Key, &Event)> = self
            .events
            .iter()
            .zip(texts)
            .map(|(event, text)| (Key::parse(scheme, text), event))
            .collect();

        // BeforeLimits: no limit means an implicit `*`.
        let mut limits = events
            .iter()
            .filter(|(_, event)| matches!(event, Event::Limit(_)))
            .peekable();
        if limits.peek().is_some() && !limits.any(|(limit, _)| candidate < *limit) {
            return false;
        }

        events.sort_by(|(a, ea), (b, eb)| a.cmp(b).then(ea.tie_rank().cmp(&eb.tie_rank())));
        let mut vulnerable = false;
        for (key, event) in &events {
            match event {
                Event::Introduced(_) if candidate >= *key => vulnerable = true,
                Event::Fixed(_) if candidate >= *key => vulnerable = false,
                Event::LastAffected(_) if candidate > *key => vulnerable = false,
                _ => {}
            }
        }
        vulnerable
    }
}

/// Orders two versions of one ecosystem's package (falling back to the generic ordering
/// when either does not parse in the ecosystem's scheme).
pub fn compare_versions(ecosystem: &Ecosystem, a: &str, b: &str) -> Ordering {
    let scheme = if all_parse(ecosystem.scheme(), a, &[KeyText::Version(b)]) {
        ecosystem.scheme()
    } else {
        Scheme::Generic
    };
    Key::parse(scheme, KeyText::Version(a)).cmp(&Key::parse(scheme, KeyText::Version(b)))
}

/// `IncludedInVersions`: is `version` one of `versions`? Equal in the ecosystem's scheme
/// (PEP 440 says `2.0 == 2.0.0`); a version that does not parse must match exactly.
pub fn is_listed(ecosystem: &Ecosystem, versions: &[String], version: &str) -> bool {
    let scheme = ecosystem.scheme();
    let candidate = Key::parse_strict(scheme, version);
    versions.iter().any(|listed| {
        if listed == version {
            return true;
        }
        match (&candidate, Key::parse_strict(scheme, listed)) {
            (Some(a), Some(b)) => *a == b,
            _ => false,
        }
    })
}

/// Is `version` of a package in `ecosystem` affected, per `IsVulnerable` for one
/// `affected` entry: listed in `versions`, or inside one of `ranges`?
pub fn is_affected(
    ecosystem: &Ecosystem,
    ranges: &[VersionRange],
    versions: &[String],
    version: &str,
) -> bool {
    is_listed(ecosystem, versions, version)
        || ranges
            .iter()
            .any(|range| range.includes(ecosystem, version))
}

#[derive(Clone, Copy)]
enum KeyText<'a> {
    Zero,
    Infinity,
    Version(&'a str),
}

fn all_parse(scheme: Scheme, version: &str, texts: &[KeyText<'_>]) -> bool {
    Key::parse_strict(scheme, version).is_some()
        && texts.iter().all(|text| match text {
            KeyText::Zero | KeyText::Infinity => true,
            KeyText::Version(v) => Key::parse_strict(scheme, v).is_some(),
        })
}

/// A parsed version. Within one evaluation every `Key` comes from the same scheme; across
/// schemes the variant order decides, which keeps `Ord` total.
#[derive(Debug)]
enum Key {
    Zero,
    SemVer(semver::Version),
    Pep440(pep440_rs::Version),
    Generic(Vec<Token>),
    Infinity,
}

impl Key {
    fn parse(scheme: Scheme, text: KeyText<'_>) -> Key {
        match text {
            KeyText::Zero => Key::Zero,
            KeyText::Infinity => Key::Infinity,
            KeyText::Version(v) => {
                Key::parse_strict(scheme, v).unwrap_or_else(|| Key::Generic(tokens(v)))
            }
        }
    }

    fn parse_strict(scheme: Scheme, text: &str) -> Option<Key> {
        let text = text.trim();
        match scheme {
            Scheme::SemVer => {
                let bare = text.strip_prefix('v').unwrap_or(text);
                semver::Version::parse(bare).ok().map(Key::SemVer)
            }
            Scheme::Pep440 => pep440_rs::Version::from_str(text).ok().map(Key::Pep440),
            Scheme::Generic => Some(Key::Generic(tokens(text))),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Key::Zero => 0,
            Key::SemVer(_) => 1,
            Key::Pep440(_) => 2,
            Key::Generic(_) => 3,
            Key::Infinity => 4,
        }
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Key::SemVer(a), Key::SemVer(b)) => a.cmp_precedence(b),
            (Key::Pep440(a), Key::Pep440(b)) => a.cmp(b),
            (Key::Generic(a), Key::Generic(b)) => compare_tokens(a, b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Key {}

/// A run of a generic version. The derived order is the alphabet of [`Scheme::Generic`]:
/// letters < end of version < digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Token {
    /// Lowercased letters.
    Letters(String),
    /// Padding past the end of a version.
    End,
    /// Digits without leading zeros, compared by length and then lexically (so any length
    /// of number compares correctly without overflow).
    Digits(DigitRun),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct DigitRun(String);

impl Ord for DigitRun {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for DigitRun {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut digits = false;
    let flush = |current: &mut String, digits: bool, out: &mut Vec<Token>| {
        if current.is_empty() {
            return;
        }
        let run = std::mem::take(current);
        if digits {
            let trimmed = run.trim_start_matches('0');
            out.push(Token::Digits(DigitRun(trimmed.to_owned())));
        } else {
            out.push(Token::Letters(run.to_lowercase()));
        }
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !digits {
                flush(&mut current, digits, &mut out);
                digits = true;
            }
            current.push(c);
        } else if c.is_alphabetic() {
            if digits {
                flush(&mut current, digits, &mut out);
                digits = false;
            }
            current.push(c);
        } else {
            flush(&mut current, digits, &mut out);
        }
    }
    flush(&mut current, digits, &mut out);
    out
}

fn compare_tokens(a: &[Token], b: &[Token]) -> Ordering {
    let len = a.len().max(b.len());
    for i in 0..len {
        let x = a.get(i).unwrap_or(&Token::End);
        let y = b.get(i).unwrap_or(&Token::End);
        match x.cmp(y) {
            Ordering::Equal => {}
            other => return other,
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(kind: RangeKind, events: &[(&str, &str)]) -> VersionRange {
        VersionRange {
            kind,
            events: events
                .iter()
                .map(|(k, v)| match *k {
                    "introduced" => Event::Introduced((*v).to_owned()),
                    "fixed" => Event::Fixed((*v).to_owned()),
                    "last_affected" => Event::LastAffected((*v).to_owned()),
                    _ => Event::Limit((*v).to_owned()),
                })
                .collect(),
        }
    }

    #[test]
    fn semver_precedence_for_npm_and_crates() {
        for (a, b, want) in [
            ("1.2.3-beta.1", "1.2.3", Ordering::Less),
            ("1.2.3-beta.2", "1.2.3-beta.11", Ordering::Less),
            ("1.2.3-alpha", "1.2.3-alpha.1", Ordering::Less),
            ("1.2.3+build.5", "1.2.3", Ordering::Equal),
            ("0.10.0", "0.9.9", Ordering::Greater),
            ("v1.2.3", "1.2.3", Ordering::Equal),
        ] {
            assert_eq!(compare_versions(&Ecosystem::Npm, a, b), want, "{a} vs {b}");
            assert_eq!(
                compare_versions(&Ecosystem::CratesIo, a, b),
                want,
                "{a} vs {b}"
            );
        }
    }

    #[test]
    fn pep440_ordering() {
        // PEP 440 "Summary of permitted suffixes and relative ordering".
        let ordered = [
            "1.0.dev456",
            "1.0a1",
            "1.0a2.dev456",
            "1.0a12.dev456",
            "1.0a12",
            "1.0b1.dev456",
            "1.0b2",
            "1.0b2.post345.dev456",
            "1.0b2.post345",
            "1.0rc1.dev456",
            "1.0rc1",
            "1.0",
            "1.0+abc.5",
            "1.0+abc.7",
            "1.0+5",
            "1.0.post456.dev34",
            "1.0.post456",
            "1.1.dev1",
            "3.7",
            "3.11",
            "1!0.1",
        ];
        for pair in ordered.windows(2) {
            if let [a, b] = pair {
                assert_eq!(
                    compare_versions(&Ecosystem::PyPi, a, b),
                    Ordering::Less,
                    "{a} < {b}"
                );
            }
        }
        for (a, b) in [
            ("2.0", "2.0.0"),
            ("1.0RC1", "1.0rc1"),
            ("1.0-alpha1", "1.0a1"),
            ("v1.0", "1.0"),
            ("0!1.0", "1.0"),
        ] {
            assert_eq!(
                compare_versions(&Ecosystem::PyPi, a, b),
                Ordering::Equal,
                "{a} == {b}"
            );
        }
    }

    #[test]
    fn generic_ordering() {
        for (a, b, want) in [
            ("1.9", "1.10", Ordering::Less),
            ("1.0-beta", "1.0", Ordering::Less),
            ("1.0", "1.0.1", Ordering::Less),
            ("1.0-SNAPSHOT", "1.0-snapshot", Ordering::Equal),
            ("1.0.0", "1.00.0", Ordering::Equal),
            (
                "99999999999999999999999999999.1",
                "99999999999999999999999999999.2",
                Ordering::Less,
            ),
        ] {
            assert_eq!(
                compare_versions(&Ecosystem::Maven, a, b),
                want,
                "{a} vs {b}"
            );
        }
    }

    #[test]
    fn name_normalisation() {
        for (eco, raw, want) in [
            (
                Ecosystem::PyPi,
                "Products.PluggableAuthService",
                "products-pluggableauthservice",
            ),
            (Ecosystem::PyPi, "Foo__Bar-.baz", "foo-bar-baz"),
            (Ecosystem::CratesIo, "Serde_JSON", "serde-json"),
            (Ecosystem::Npm, "JSONStream", "jsonstream"),
            (
                Ecosystem::Go,
                "github.com/BurntSushi/toml",
                "github.com/BurntSushi/toml",
            ),
            (Ecosystem::Maven, "org.Foo:bar", "org.Foo:bar"),
        ] {
            assert_eq!(eco.normalize_name(raw), want);
        }
    }

    #[test]
    fn ecosystem_names_round_trip() {
        for name in ["crates.io", "npm", "PyPI", "Go", "Maven", "Alpine:v3.18"] {
            assert_eq!(Ecosystem::from_osv(name).as_osv(), name);
        }
        assert_eq!(
            Ecosystem::from_osv("Maven:https://maven.google.com"),
            Ecosystem::Maven
        );
        assert_eq!(Ecosystem::from_osv("pypi"), Ecosystem::Other("pypi".into()));
    }

    /// A range, an ecosystem, and (version, included?) rows.
    type RangeCase = (VersionRange, Ecosystem, Vec<(&'static str, bool)>);

    #[test]
    fn range_semantics() {
        use RangeKind::{Ecosystem as Eco, Semver};
        let cases: Vec<RangeCase> = vec![
            (
                range(Semver, &[("introduced", "0"), ("fixed", "1.0.2")]),
                Ecosystem::Npm,
                vec![
                    ("0.0.1", true),
                    ("1.0.1", true),
                    ("1.0.2", false),
                    ("2.0.0", false),
                ],
            ),
            (
                range(Eco, &[("introduced", "0"), ("last_affected", "2.1.214")]),
                Ecosystem::Npm,
                vec![("2.1.214", true), ("2.1.215", false), ("0.1.0", true)],
            ),
            // Unsorted events, as GHSA's mixin-deep record has them.
            (
                range(
                    Semver,
                    &[
                        ("introduced", "0"),
                        ("introduced", "2.0.0"),
                        ("fixed", "2.0.1"),
                        ("fixed", "1.3.2"),
                    ],
                ),
                Ecosystem::Npm,
                vec![
                    ("1.3.1", true),
                    ("1.3.2", false),
                    ("1.9.0", false),
                    ("2.0.0", true),
                    ("2.0.1", false),
                ],
            ),
            // limit: only versions below a limit are considered.
            (
                range(Eco, &[("introduced", "1.0.0"), ("limit", "1.5.0")]),
                Ecosystem::CratesIo,
                vec![
                    ("0.9.0", false),
                    ("1.0.0", true),
                    ("1.4.9", true),
                    ("1.5.0", false),
                    ("2.0.0", false),
                ],
            ),
            (
                range(Eco, &[("introduced", "1.0.0"), ("limit", "*")]),
                Ecosystem::CratesIo,
                vec![("0.9.0", false), ("99.0.0", true)],
            ),
            // An empty range.
            (
                range(Semver, &[("introduced", "0.23.0"), ("fixed", "0.23.0")]),
                Ecosystem::CratesIo,
                vec![("0.23.0", false), ("0.22.9", false)],
            ),
            // Pre-release bounds.
            (
                range(Semver, &[("introduced", "2.1.1-0"), ("fixed", "3.0.0")]),
                Ecosystem::Npm,
                vec![
                    ("2.1.1-beta.1", true),
                    ("2.1.0", false),
                    ("3.0.0-rc.1", true),
                    ("3.0.0", false),
                ],
            ),
            // PEP 440: pre-releases, post releases and epochs.
            (
                range(Eco, &[("introduced", "1.5.0"), ("fixed", "2.4.0")]),
                Ecosystem::PyPi,
                vec![
                    ("2.0.0a1", true),
                    ("2.4.0rc1", true),
                    ("2.4.0", false),
                    ("2.3.0.post1", true),
                    ("1.5.0.dev1", false),
                    ("1!1.6.0", false),
                    ("2.4", false),
                ],
            ),
            (
                range(Eco, &[("introduced", "0"), ("fixed", "3.7")]),
                Ecosystem::PyPi,
                vec![("3.6", true), ("3.11", false), ("3.7", false)],
            ),
            // A version that does not parse falls back to the generic ordering.
            (
                range(Eco, &[("introduced", "0"), ("fixed", "1.2.3")]),
                Ecosystem::Npm,
                vec![("1.2", true), ("1.3", false)],
            ),
            // GIT ranges are never evaluated.
            (
                range(RangeKind::Git, &[("introduced", "0")]),
                Ecosystem::PyPi,
                vec![("1.0", false)],
            ),
        ];
        for (range, eco, table) in cases {
            for (version, want) in table {
                assert_eq!(
                    range.includes(&eco, version),
                    want,
                    "{version} in {range:?}"
                );
            }
        }
    }

    #[test]
    fn versions_list() {
        let list: Vec<String> = vec!["2.0.0a1".into(), "1.5".into(), "weird-tag".into()];
        assert!(is_listed(&Ecosystem::PyPi, &list, "2.0.0a1"));
        assert!(is_listed(&Ecosystem::PyPi, &list, "2.0a1"));
        assert!(is_listed(&Ecosystem::PyPi, &list, "1.5.0"));
        assert!(is_listed(&Ecosystem::PyPi, &list, "weird-tag"));
        assert!(!is_listed(&Ecosystem::PyPi, &list, "2.0.0"));
        assert!(!is_listed(&Ecosystem::PyPi, &list, "weird"));
        assert!(is_affected(&Ecosystem::PyPi, &[], &list, "1.5"));
    }

    proptest::proptest! {
        #[test]
        fn orderings_never_panic_and_are_antisymmetric(a in "\\PC{0,24}", b in "[0-9a-z.+!-]{0,16}") {
            for eco in [Ecosystem::Npm, Ecosystem::PyPi, Ecosystem::Maven] {
                let ab = compare_versions(&eco, &a, &b);
                let ba = compare_versions(&eco, &b, &a);
                proptest::prop_assert_eq!(ab, ba.reverse());
            }
        }

        #[test]
        fn ranges_never_panic(
            version in "[0-9a-z.+!-]{0,12}",
            events in proptest::collection::vec(("[0-3]", "[0-9a-z.*+-]{0,8}"), 0..8),
        ) {
            let events: Vec<(&str, &str)> = events
                .iter()
                .map(|(k, v)| (match k.as_str() { "0" => "introduced", "1" => "fixed", "2" => "last_affected", _ => "limit" }, v.as_str()))
                .collect();
            for kind in [RangeKind::Semver, RangeKind::Ecosystem] {
                let r = range(kind, &events);
                for eco in [Ecosystem::Npm, Ecosystem::PyPi, Ecosystem::Maven] {
                    let _ = r.includes(&eco, &version);
                }
            }
        }
    }
}
