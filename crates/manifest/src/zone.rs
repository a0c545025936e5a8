//! Trust zones: a zone document (`zones/<name>.toml`, [`Zone`]) and the platform's whole
//! set of zones ([`ZoneSet`]), checked together and compiled to Cedar `forbid` policies.
//!
//! A zone groups tenants and is a ceiling over what their functions' own grants (the
//! floor) may do: a function-to-function call across zones needs the caller's zone to
//! list the callee's in `calls` *and* the callee's zone to list the caller's in
//! `called_from`; an outbound request needs an entry of the zone's `egress` ceiling; code
//! deployed into the zone needs one of the zone's `signers` (when it lists any) on top of
//! the tenant's own trust. Tenants in no zone keep the behaviour they had before zones
//! among themselves, but a zone is closed: its functions neither call nor are called by
//! functions of tenants in no zone (such a tenant is in no zone a `calls` list can name).
//!
//! # Trust
//! Trusts nothing in a document: it is size-limited, parsed strictly (unknown keys
//! refused), names are DNS labels, lists are bounded and free of duplicates, and egress
//! entries are read by the same reader as a manifest's `[egress] allow`. A [`ZoneSet`] is
//! consistent by construction: every zone named in `calls`/`called_from` exists and no
//! tenant is in two zones. Compiled policy text quotes every name through
//! [`zerofn_policy::permissions::lit`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fmt::Write as _;

use serde::Deserialize;
use zerofn_egress::EgressRule;
use zerofn_policy::permissions::{egress_conditions, lit};
use zerofn_types::{excerpt, TenantName};

use crate::manifest::parse_egress_entries;
use crate::ManifestError;

/// Longest zone document, in bytes.
pub const MAX_ZONE_BYTES: usize = 64 * 1024;
/// Most tenants one zone groups.
pub const MAX_ZONE_TENANTS: usize = 256;
/// Most zones in one `calls` or `called_from` list.
pub const MAX_ZONE_LINKS: usize = 64;
/// Most signer identities one zone lists.
pub const MAX_ZONE_SIGNERS: usize = 32;
/// Longest signer identity, in bytes.
pub const MAX_SIGNER_BYTES: usize = 512;
/// Most zones on one platform.
pub const MAX_ZONES: usize = 256;

/// A zone's name: a DNS label, like a tenant's.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ZoneName(String);

impl ZoneName {
    /// Parses a zone name (the rules of a tenant name).
    pub fn parse(s: &str) -> Result<ZoneName, ZoneError> {
        match TenantName::parse(s) {
            Ok(_) => Ok(ZoneName(s.to_owned())),
            Err(_) => Err(ZoneError::Name {
                key: "name",
                name: excerpt(s),
                rule: zerofn_types::NAME_RULE,
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a zone document, or a set of zones, was refused. Messages name the key and the
/// value at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ZoneError {
    #[error("zone document is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// The TOML does not parse, or has unknown, missing or mistyped keys (line, column
    /// and key in the message).
    #[error("zone document is not valid: {0}")]
    Toml(#[source] toml::de::Error),
    #[error("`{key}`: `{name}` is not a valid name; {rule}")]
    Name {
        key: &'static str,
        name: String,
        rule: &'static str,
    },
    #[error("`{key}` lists `{value}` twice; remove the duplicate")]
    Duplicate { key: &'static str, value: String },
    #[error("`{key}` lists {count} entries, more than the {limit} allowed")]
    TooMany {
        key: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("`signers`: `{signer}` is invalid: {why}")]
    Signer { signer: String, why: &'static str },
    #[error("{0}")]
    Egress(String),
    #[error("tenant `{tenant}` is in zone `{first}` and in zone `{second}`; a tenant is in at most one zone")]
    TenantInTwoZones {
        tenant: String,
        first: String,
        second: String,
    },
    #[error(
        "zone `{zone}`: `{key}` names zone `{unknown}`, which does not exist; create it first"
    )]
    UnknownZone {
        zone: String,
        key: &'static str,
        unknown: String,
    },
    #[error("{count} zones, more than the {limit} allowed")]
    TooManyZones { count: usize, limit: usize },
}

impl ZoneError {
    /// The key of the zone document the error is about, when it is about one.
    pub fn key_path(&self) -> Option<&'static str> {
        match self {
            Self::Name { key, .. }
            | Self::Duplicate { key, .. }
            | Self::TooMany { key, .. }
            | Self::UnknownZone { key, .. } => Some(key),
            Self::Signer { .. } => Some("signers"),
            Self::Egress(_) => Some("egress"),
            Self::TenantInTwoZones { .. } => Some("tenants"),
            Self::TooLarge { .. } | Self::Toml(_) | Self::TooManyZones { .. } => None,
        }
    }

    /// The byte range in `text`, the zone document this error came from, of the key or
    /// value at fault, when it can be found (see [`crate::span`]).
    pub fn span_in(&self, text: &str) -> Option<std::ops::Range<usize>> {
        if let Self::Toml(e) = self {
            return e.span();
        }
        let key = self.key_path()?;
        match self {
            Self::Duplicate { key, value } => crate::span::locate_last(text, key, value),
            Self::Name { name: entry, .. }
            | Self::Signer { signer: entry, .. }
            | Self::UnknownZone { unknown: entry, .. }
            | Self::TenantInTwoZones { tenant: entry, .. } => {
                crate::span::locate(text, key, Some(entry))
            }
            Self::Egress(problem) => {
                // The message is "`egress`: ...", the entry is the next quoted part.
                let rest = problem.strip_prefix("`egress`").unwrap_or(problem);
                crate::span::locate(text, key, crate::span::first_quoted(rest))
            }
            _ => crate::span::locate(text, key, None),
        }
    }
}

/// One zone, parsed and checked on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    pub name: ZoneName,
    /// The tenants it groups.
    pub tenants: BTreeSet<TenantName>,
    /// Zones its functions may call (the callee's zone must also list this one in
    /// `called_from`).
    pub calls: BTreeSet<ZoneName>,
    /// Zones whose functions may call its functions.
    pub called_from: BTreeSet<ZoneName>,
    /// The egress ceiling: what its functions' `[egress] allow` entries may reach at most.
    pub egress: Vec<EgressRule>,
    /// Signer identities of which one must have signed code deployed into the zone
    /// (`sha256:<key id>` or a certificate's SAN); empty: the tenant's own trust alone.
    pub signers: BTreeSet<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZone {
    name: String,
    #[serde(default)]
    tenants: Vec<String>,
    #[serde(default)]
    calls: Vec<String>,
    #[serde(default)]
    called_from: Vec<String>,
    #[serde(default)]
    egress: Vec<toml::Value>,
    #[serde(default)]
    signers: Vec<String>,
}

fn bounded(key: &'static str, count: usize, limit: usize) -> Result<(), ZoneError> {
    if count > limit {
        return Err(ZoneError::TooMany { key, count, limit });
    }
    Ok(())
}

fn zone_names(key: &'static str, raw: &[String]) -> Result<BTreeSet<ZoneName>, ZoneError> {
    bounded(key, raw.len(), MAX_ZONE_LINKS)?;
    let mut out = BTreeSet::new();
    for name in raw {
        let zone = ZoneName::parse(name).map_err(|_| ZoneError::Name {
            key,
            name: excerpt(name),
            rule: zerofn_types::NAME_RULE,
        })?;
        if !out.insert(zone) {
            return Err(ZoneError::Duplicate {
                key,
                value: excerpt(name),
            });
        }
    }
    Ok(out)
}

impl Zone {
    /// Parses a zone document. Refused whole on the first problem, which is named.
    pub fn from_toml(text: &str) -> Result<Zone, ZoneError> {
        if text.len() > MAX_ZONE_BYTES {
            return Err(ZoneError::TooLarge {
                size: text.len(),
                limit: MAX_ZONE_BYTES,
            });
        }
        let raw: RawZone = toml::from_str(text).map_err(ZoneError::Toml)?;
        let name = ZoneName::parse(&raw.name)?;
        bounded("tenants", raw.tenants.len(), MAX_ZONE_TENANTS)?;
        let mut tenants = BTreeSet::new();
        for t in &raw.tenants {
            let tenant = TenantName::parse(t).map_err(|_| ZoneError::Name {
                key: "tenants",
                name: excerpt(t),
                rule: zerofn_types::NAME_RULE,
            })?;
            if !tenants.insert(tenant) {
                return Err(ZoneError::Duplicate {
                    key: "tenants",
                    value: excerpt(t),
                });
            }
        }
        let calls = zone_names("calls", &raw.calls)?;
        let called_from = zone_names("called_from", &raw.called_from)?;
        let egress = parse_egress_entries(&raw.egress, "egress").map_err(|e| match e {
            ManifestError::Permission { key, problem } => {
                ZoneError::Egress(format!("`{key}`: {problem}"))
            }
            other => ZoneError::Egress(other.to_string()),
        })?;
        bounded("signers", raw.signers.len(), MAX_ZONE_SIGNERS)?;
        let mut signers = BTreeSet::new();
        for s in &raw.signers {
            check_signer(s)?;
            if !signers.insert(s.clone()) {
                return Err(ZoneError::Duplicate {
                    key: "signers",
                    value: excerpt(s),
                });
            }
        }
        Ok(Zone {
            name,
            tenants,
            calls,
            called_from,
            egress,
            signers,
        })
    }

    /// Whether `identity` (a key id `sha256:<hex>`, or a certificate's SAN) may publish
    /// into this zone: any identity when the zone lists no signers, else one it lists.
    pub fn admits_signer(&self, identity: &str) -> bool {
        self.signers.is_empty() || self.signers.contains(identity)
    }

    /// The entries of `rules` (a function's `[egress] allow`) no ceiling entry covers.
    pub fn uncovered<'a>(&self, rules: &'a [EgressRule]) -> Vec<&'a EgressRule> {
        rules
            .iter()
            .filter(|r| !self.egress.iter().any(|c| c.covers(r)))
            .collect()
    }

    /// The zone as the control API shows it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name.as_str(),
            "tenants": self.tenants.iter().map(TenantName::as_str).collect::<Vec<_>>(),
            "calls": self.calls.iter().map(ZoneName::as_str).collect::<Vec<_>>(),
            "called_from": self.called_from.iter().map(ZoneName::as_str).collect::<Vec<_>>(),
            "egress": self.egress.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "signers": self.signers.iter().collect::<Vec<_>>(),
        })
    }
}

/// A signer identity: a key id (`sha256:` and 64 lowercase hex digits) or a certificate
/// SAN (a URI or e-mail address); printable, no spaces, bounded.
fn check_signer(s: &str) -> Result<(), ZoneError> {
    let bad = |why| ZoneError::Signer {
        signer: excerpt(s),
        why,
    };
    if s.is_empty() || s.len() > MAX_SIGNER_BYTES {
        return Err(bad("it must be 1 to 512 bytes long"));
    }
    if s.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("it holds a space or a control character"));
    }
    if let Some(hex) = s.strip_prefix("sha256:") {
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad("a key id is `sha256:` and 64 lowercase hex digits"));
        }
    } else if !s.contains(':') && !s.contains('@') {
        return Err(bad(
            "use a key id (`sha256:<hex>`) or a certificate identity (a URI or e-mail address)",
        ));
    }
    Ok(())
}

/// Every zone of the platform, consistent: each zone named in a `calls` or `called_from`
/// list exists, and no tenant is in two zones.
#[derive(Clone, Debug, Default)]
pub struct ZoneSet {
    zones: BTreeMap<ZoneName, Zone>,
    /// Each zoned tenant's zone.
    tenant_zone: BTreeMap<TenantName, ZoneName>,
}

impl ZoneSet {
    /// Checks `zones` together. The first problem is named.
    pub fn new(zones: impl IntoIterator<Item = Zone>) -> Result<ZoneSet, ZoneError> {
        let mut map = BTreeMap::new();
        for zone in zones {
            if map.contains_key(&zone.name) {
                return Err(ZoneError::Duplicate {
                    key: "name",
                    value: zone.name.to_string(),
                });
            }
            map.insert(zone.name.clone(), zone);
        }
        if map.len() > MAX_ZONES {
            return Err(ZoneError::TooManyZones {
                count: map.len(),
                limit: MAX_ZONES,
            });
        }
        let mut tenant_zone: BTreeMap<TenantName, ZoneName> = BTreeMap::new();
        for zone in map.values() {
            for tenant in &zone.tenants {
                if let Some(first) = tenant_zone.insert(tenant.clone(), zone.name.clone()) {
                    return Err(ZoneError::TenantInTwoZones {
                        tenant: tenant.to_string(),
                        first: first.to_string(),
                        second: zone.name.to_string(),
                    });
                }
            }
            for (key, list) in [("calls", &zone.calls), ("called_from", &zone.called_from)] {
                if let Some(unknown) = list.iter().find(|z| !map.contains_key(*z)) {
                    return Err(ZoneError::UnknownZone {
                        zone: zone.name.to_string(),
                        key,
                        unknown: unknown.to_string(),
                    });
                }
            }
        }
        Ok(ZoneSet {
            zones: map,
            tenant_zone,
        })
    }

    /// The zones, by name.
    pub fn zones(&self) -> impl Iterator<Item = &Zone> {
        self.zones.values()
    }

    pub fn get(&self, name: &ZoneName) -> Option<&Zone> {
        self.zones.get(name)
    }

    pub fn len(&self) -> usize {
        self.zones.len()
    }

    pub fn is_empty(&self) -> bool {
        self.zones.is_empty()
    }

    /// The zone `tenant` is in, if any.
    pub fn zone_of(&self, tenant: &str) -> Option<&Zone> {
        let tenant = TenantName::parse(tenant).ok()?;
        self.tenant_zone
            .get(&tenant)
            .and_then(|z| self.zones.get(z))
    }

    /// Whether functions of zone `from` may call functions of zone `to`: the same zone,
    /// or `from` lists `to` in `calls` and `to` lists `from` in `called_from`.
    pub fn may_call(&self, from: &ZoneName, to: &ZoneName) -> bool {
        from == to
            || (self.zones.get(from).is_some_and(|z| z.calls.contains(to))
                && self
                    .zones
                    .get(to)
                    .is_some_and(|z| z.called_from.contains(from)))
    }

    /// The tenants whose functions `zone`'s functions may call as far as `zone`'s own
    /// `calls` says (its own tenants and those of the zones it lists).
    fn callable_tenants<'a>(&'a self, zone: &'a Zone) -> BTreeSet<&'a TenantName> {
        let mut out: BTreeSet<&TenantName> = zone.tenants.iter().collect();
        for other in zone.calls.iter().filter_map(|z| self.zones.get(z)) {
            out.extend(other.tenants.iter());
        }
        out
    }

    /// The tenants whose functions may call `zone`'s functions as far as `zone`'s own
    /// `called_from` says.
    fn calling_tenants<'a>(&'a self, zone: &'a Zone) -> BTreeSet<&'a TenantName> {
        let mut out: BTreeSet<&TenantName> = zone.tenants.iter().collect();
        for other in zone.called_from.iter().filter_map(|z| self.zones.get(z)) {
            out.extend(other.tenants.iter());
        }
        out
    }

    /// The Cedar policies each zoned tenant's decisions include, by tenant. A call is
    /// decided twice (`call` by the caller's tenant, `invoke` by the callee's), so the
    /// caller's zone's `calls` and the callee's zone's `called_from` each have their own
    /// `forbid`, and together they need both sides to agree.
    pub fn compile(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for zone in self.zones.values() {
            let callable = any_in("resource", &self.callable_tenants(zone));
            let calling = any_in("principal", &self.calling_tenants(zone));
            let egress = if zone.egress.is_empty() {
                String::new()
            } else {
                let conditions: Vec<String> = zone
                    .egress
                    .iter()
                    .map(|r| format!("({})", egress_conditions(r)))
                    .collect();
                format!("\nunless {{ {} }}", conditions.join(" || "))
            };
            for tenant in &zone.tenants {
                let mut text = String::new();
                let t = lit(tenant.as_str());
                let id = |what: &str| lit(&format!("zone:{}/{what}", zone.name));
                let _ = writeln!(
                    text,
                    "@id({})\nforbid (principal in Zerofn::Tenant::{t}, action == Zerofn::Action::\"call\", resource)\nunless {{ {callable} }};",
                    id("calls"),
                );
                let _ = writeln!(
                    text,
                    "@id({})\nforbid (principal is Zerofn::Function, action == Zerofn::Action::\"invoke\", resource in Zerofn::Tenant::{t})\nunless {{ {calling} }};",
                    id("called-from"),
                );
                let _ = writeln!(
                    text,
                    "@id({})\nforbid (principal in Zerofn::Tenant::{t}, action == Zerofn::Action::\"http.outbound\", resource){egress};",
                    id("egress"),
                );
                out.insert(tenant.to_string(), text);
            }
        }
        out
    }
}

/// `<var> in Zerofn::Tenant::"a" || <var> in Zerofn::Tenant::"b"` (never empty: a zone's
/// own tenants are always in the list, and the compiled tenant is one of them).
fn any_in(var: &str, tenants: &BTreeSet<&TenantName>) -> String {
    let parts: Vec<String> = tenants
        .iter()
        .map(|t| format!("{var} in Zerofn::Tenant::{}", lit(t.as_str())))
        .collect();
    if parts.is_empty() {
        "false".to_owned()
    } else {
        parts.join(" || ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerofn_policy::{
        Decision, PolicySet, Principal, RequestContext, Resource, RuntimeAction,
        RuntimePoliciesBuilder, RuntimeRequest, Source,
    };

    fn zone(text: &str) -> Zone {
        Zone::from_toml(text).unwrap()
    }

    fn err(text: &str) -> String {
        Zone::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn refusals_point_at_the_entry_at_fault() {
        for (text, key, at) in [
            ("name = \"Bad_Zone\"\n", "name", "\"Bad_Zone\""),
            (
                "name = \"z\"\ntenants = [\"a\", \"b\", \"a\"]\n",
                "tenants",
                "\"a\"",
            ),
            (
                "name = \"z\"\ncalls = [\"ok\", \"Not_A\"]\n",
                "calls",
                "\"Not_A\"",
            ),
            (
                "name = \"z\"\nsigners = [\"nobody\"]\n",
                "signers",
                "\"nobody\"",
            ),
            (
                "name = \"z\"\negress = [\"https://ok.test\", \"https://*.com\"]\n",
                "egress",
                "\"https://*.com\"",
            ),
        ] {
            let e = Zone::from_toml(text).unwrap_err();
            assert_eq!(e.key_path(), Some(key), "{e}");
            let span = e.span_in(text).unwrap_or_else(|| panic!("no span: {e}"));
            assert_eq!(&text[span.clone()], at, "{e}");
            if key == "tenants" {
                assert_eq!(span.start, text.rfind("\"a\"").unwrap(), "the second `a`");
            }
        }
    }

    #[test]
    fn a_full_document_parses() {
        let z = zone(
            r#"
name = "payments"
tenants = ["shop", "billing"]
calls = ["platform"]
called_from = ["frontend"]
egress = ["https://api.stripe.com", { url = "http://ledger.internal:8080/v1/", methods = ["POST"], allow_ranges = ["10.0.0.0/8"] }]
signers = ["https://github.com/acme/pay/.github/workflows/release.yml@refs/heads/main", "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"]
"#,
        );
        assert_eq!(z.name.as_str(), "payments");
        assert_eq!(z.tenants.len(), 2);
        assert_eq!(z.egress.len(), 2);
        assert_eq!(z.egress[0].url(), "https://api.stripe.com:443");
        assert!(z.admits_signer(
            "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        ));
        assert!(!z.admits_signer("sha256:ffff"));
        // A minimal zone: a name alone (no tenants, calls nothing, no egress).
        let z = zone("name = \"empty\"\n");
        assert!(z.tenants.is_empty() && z.egress.is_empty() && z.admits_signer("anyone"));
    }

    #[test]
    fn hostile_documents_are_refused_naming_the_key() {
        for (text, expected) in [
            ("name = \"a\"\nnosuch = 1\n", "unknown field `nosuch`"),
            ("name = \"a\"\n[egress]\nallow = []\n", "invalid type"),
            ("tenants = []\n", "missing field `name`"),
            (
                "name = \"Bad_Name\"\n",
                "`name`: `Bad_Name` is not a valid name",
            ),
            (
                "name = \"a\"\ntenants = [\"x\", \"x\"]\n",
                "`tenants` lists `x` twice",
            ),
            ("name = \"a\"\ntenants = [\"X\"]\n", "`tenants`: `X`"),
            ("name = \"a\"\ncalls = [\"b c\"]\n", "`calls`: `b c`"),
            (
                "name = \"a\"\ncalled_from = [\"b\", \"b\"]\n",
                "`called_from` lists `b` twice",
            ),
            (
                "name = \"a\"\negress = [\"ftp://x.com\"]\n",
                "`egress`: `ftp://x.com`",
            ),
            (
                "name = \"a\"\negress = [{ url = \"https://x.com\", port = 1 }]\n",
                "unknown key `port`",
            ),
            (
                "name = \"a\"\nsigners = [\"sha256:12\"]\n",
                "64 lowercase hex",
            ),
            (
                "name = \"a\"\nsigners = [\"bob\"]\n",
                "certificate identity",
            ),
            ("name = \"a\"\nsigners = [\"a b@c\"]\n", "a space"),
            ("name = 1\n", "invalid type"),
        ] {
            let e = err(text);
            assert!(e.contains(expected), "{text:?}: {e}");
        }
        let big = format!("name = \"a\"\n#{}\n", "x".repeat(MAX_ZONE_BYTES));
        assert!(err(&big).contains("over the limit"), "{}", err(&big));
        let many: Vec<String> = (0..=MAX_ZONE_TENANTS)
            .map(|i| format!("\"t{i}\""))
            .collect();
        let e = err(&format!("name = \"a\"\ntenants = [{}]\n", many.join(",")));
        assert!(e.contains("`tenants` lists 257 entries"), "{e}");
    }

    #[test]
    fn a_set_refuses_a_tenant_in_two_zones_and_unknown_zones() {
        let a = zone("name = \"a\"\ntenants = [\"shop\"]\n");
        let b = zone("name = \"b\"\ntenants = [\"shop\"]\n");
        let e = ZoneSet::new([a.clone(), b]).unwrap_err().to_string();
        assert!(
            e.contains("tenant `shop` is in zone `a` and in zone `b`"),
            "{e}"
        );
        let c = zone("name = \"c\"\ncalls = [\"nosuch\"]\n");
        let e = ZoneSet::new([a.clone(), c]).unwrap_err().to_string();
        assert!(
            e.contains("zone `c`: `calls` names zone `nosuch`, which does not exist"),
            "{e}"
        );
        let d = zone("name = \"d\"\ncalled_from = [\"ghost\"]\n");
        let e = ZoneSet::new([d]).unwrap_err().to_string();
        assert!(e.contains("`called_from` names zone `ghost`"), "{e}");
        let e = ZoneSet::new([a.clone(), a]).unwrap_err().to_string();
        assert!(e.contains("lists `a` twice"), "{e}");
    }

    #[test]
    fn calls_need_both_zones_to_agree() {
        let set = ZoneSet::new([
            zone("name = \"front\"\ntenants = [\"web\"]\ncalls = [\"back\"]\n"),
            zone("name = \"back\"\ntenants = [\"pay\"]\ncalled_from = [\"front\"]\n"),
            zone("name = \"side\"\ntenants = [\"ads\"]\ncalls = [\"back\"]\n"),
        ])
        .unwrap();
        let n = |s: &str| ZoneName::parse(s).unwrap();
        assert!(set.may_call(&n("front"), &n("back")));
        assert!(!set.may_call(&n("back"), &n("front")));
        // side lists back, but back does not list side.
        assert!(!set.may_call(&n("side"), &n("back")));
        assert!(set.may_call(&n("side"), &n("side")));
        assert_eq!(set.zone_of("pay").unwrap().name.as_str(), "back");
        assert!(set.zone_of("nobody").is_none());
    }

    fn function(tenant: &str, name: &str) -> (String, String) {
        (tenant.to_owned(), name.to_owned())
    }

    /// The decisions the compiled zone policies make, on top of function grants that allow
    /// everything the test asks.
    #[test]
    fn compiled_policies_validate_and_forbid_across_zones() {
        let set = ZoneSet::new([
            zone("name = \"front\"\ntenants = [\"web\"]\ncalls = [\"back\"]\negress = [\"https://*.example.com\", { url = \"https://api.stripe.com/v1\", methods = [\"POST\"] }]\n"),
            zone("name = \"back\"\ntenants = [\"pay\"]\ncalled_from = [\"front\"]\n"),
            zone("name = \"side\"\ntenants = [\"ads\"]\ncalls = [\"back\"]\n"),
        ])
        .unwrap();
        let compiled = set.compile();
        assert_eq!(compiled.len(), 3);
        // Grants that allow every call, invoke by any function, and any egress.
        let allow_all = |t: &str| {
            PolicySet::parse(&format!(
                "@id(\"{t}-grants\") permit (principal, action in [Zerofn::Action::\"call\", Zerofn::Action::\"invoke\", Zerofn::Action::\"http.outbound\"], resource);"
            ))
            .unwrap()
        };
        let mut b = RuntimePoliciesBuilder::new();
        for (tenant, text) in &compiled {
            b.add(tenant, PolicySet::parse(text).unwrap());
            b.add(tenant, allow_all(tenant));
        }
        b.add("free", allow_all("free"));
        let policies = b.build().unwrap();
        let call = |from: (String, String), to: (String, String)| {
            let d = policies.decide(&RuntimeRequest {
                principal: Principal::Function {
                    tenant: from.0.clone(),
                    name: from.1.clone(),
                },
                action: RuntimeAction::Call,
                resource: Resource::Function {
                    tenant: to.0.clone(),
                    name: to.1.clone(),
                },
                context: RequestContext::Call {
                    method: "GET".into(),
                    path: "/".into(),
                },
            });
            let i = policies.decide(&RuntimeRequest {
                principal: Principal::Function {
                    tenant: from.0.clone(),
                    name: from.1.clone(),
                },
                action: RuntimeAction::Invoke,
                resource: Resource::Function {
                    tenant: to.0,
                    name: to.1,
                },
                context: RequestContext::Invoke {
                    method: "GET".into(),
                    path: "/".into(),
                    source: Source {
                        kind: "function",
                        ..Source::default()
                    },
                    depth: 1,
                    caller: zerofn_policy::CallerAttributes::None,
                },
            });
            (
                matches!(d, Decision::Allow(_)),
                matches!(i, Decision::Allow(_)),
                d,
                i,
            )
        };
        let (c, i, ..) = call(function("web", "a"), function("pay", "b"));
        assert!(c && i, "front -> back is allowed both ways");
        let (c, _, d, _) = call(function("pay", "b"), function("web", "a"));
        assert!(!c, "back does not list front in calls");
        assert!(d.explain().contains("zone:back/calls"), "{}", d.explain());
        let (c, i, _, inv) = call(function("ads", "x"), function("pay", "b"));
        assert!(c && !i, "side calls back, but back refuses side");
        assert!(
            inv.explain().contains("zone:back/called-from"),
            "{}",
            inv.explain()
        );
        // Unzoned tenants: among themselves as before; a zone is closed to them.
        let (c, i, ..) = call(function("free", "x"), function("free", "y"));
        assert!(c && i);
        let (_, i, ..) = call(function("free", "x"), function("pay", "b"));
        assert!(!i, "an unzoned function may not call into a zone");
        let (c, ..) = call(function("web", "a"), function("free", "y"));
        assert!(!c, "a zoned function may not call out of every zone");
        // Within one zone.
        let (c, i, ..) = call(function("web", "a"), function("web", "b"));
        assert!(c && i);

        let out = |tenant: &str, url: &str, method: &str| {
            let t = zerofn_egress::Target::parse(url).unwrap();
            let host = t.host.to_string();
            policies.decide(&RuntimeRequest {
                principal: Principal::Function {
                    tenant: tenant.into(),
                    name: "f".into(),
                },
                action: RuntimeAction::HttpOutbound,
                resource: Resource::Host(host),
                context: RequestContext::Outbound {
                    method: method.into(),
                    url: url.into(),
                    scheme: t.scheme.as_str().into(),
                    port: t.port,
                    path: t.path().into(),
                },
            })
        };
        for (tenant, url, method, allowed) in [
            ("web", "https://a.example.com/x", "GET", true),
            ("web", "https://a.b.example.com/x", "GET", false),
            ("web", "https://api.stripe.com/v1/charges", "POST", true),
            ("web", "https://api.stripe.com/v1/charges", "GET", false),
            ("web", "https://api.stripe.com/v2", "POST", false),
            ("web", "http://a.example.com/", "GET", false),
            ("pay", "https://a.example.com/", "GET", false),
            ("free", "https://anything.test/", "GET", true),
        ] {
            let d = out(tenant, url, method);
            assert_eq!(
                matches!(d, Decision::Allow(_)),
                allowed,
                "{tenant} {method} {url}: {}",
                d.explain()
            );
        }
    }

    #[test]
    fn uncovered_entries_are_named() {
        let z = zone("name = \"a\"\negress = [\"https://*.example.com\"]\n");
        let rules = vec![
            EgressRule::parse("https://api.example.com", &[], &[]).unwrap(),
            EgressRule::parse("https://evil.test", &[], &[]).unwrap(),
        ];
        let missing: Vec<String> = z.uncovered(&rules).iter().map(|r| r.url()).collect();
        assert_eq!(missing, ["https://evil.test:443"]);
    }
}
