//! What would change: the differences between a platform's configuration and a desired
//! one, per object, each with its effect on who may do what, in words.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::*;

/// How an object changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Create,
    Change,
    Remove,
}

/// One object that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// The object, e.g. `tenant acme key sha256:…`, `function acme/hello`.
    pub object: String,
    pub kind: ChangeKind,
    /// Who gains or loses what, one sentence each.
    pub effects: Vec<String>,
    /// Set when `apply` does not make this change itself: what to do instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<String>,
}

fn change(object: String, kind: ChangeKind, effects: Vec<String>) -> Change {
    Change {
        object,
        kind,
        effects,
        manual: None,
    }
}

/// Every difference between `current` (the platform) and `desired` (the directory).
pub fn diff(current: &PlatformConfig, desired: &PlatformConfig) -> Vec<Change> {
    let mut out = Vec::new();
    let empty = TenantConfig::default();
    let names: BTreeSet<&String> = current
        .tenants
        .keys()
        .chain(desired.tenants.keys())
        .collect();
    for name in names {
        match (current.tenants.get(name), desired.tenants.get(name)) {
            (None, Some(d)) => {
                out.push(change(
                    format!("tenant {name}"),
                    ChangeKind::Create,
                    vec![format!(
                        "tenant `{name}` is created, owning route prefixes {}",
                        list(&d.routes)
                    )],
                ));
                diff_tenant(name, &empty, d, &mut out, true);
            }
            (Some(c), None) => {
                let mut c_out = Change {
                    object: format!("tenant {name}"),
                    kind: ChangeKind::Remove,
                    effects: vec![format!(
                        "tenant `{name}` ({} functions) is in the platform but not in the directory",
                        c.functions.len()
                    )],
                    manual: Some(
                        "tenants are not deleted by `apply`; add the tenant to the directory \
                         (`zerofn export`) or remove its functions and rules"
                            .into(),
                    ),
                };
                c_out.effects.sort();
                out.push(c_out);
            }
            (Some(c), Some(d)) => diff_tenant(name, c, d, &mut out, false),
            (None, None) => {}
        }
    }
    if current.control_policy != desired.control_policy {
        let kind = match (&current.control_policy, &desired.control_policy) {
            (None, Some(_)) => ChangeKind::Create,
            (Some(_), None) => ChangeKind::Remove,
            _ => ChangeKind::Change,
        };
        let mut effects = policy_effects(
            "the control policy",
            current.control_policy.as_deref(),
            desired.control_policy.as_deref(),
        );
        if desired.control_policy.is_none() {
            effects.push("operators other than the token's are allowed nothing".into());
        }
        out.push(change("control policy".into(), kind, effects));
    }
    diff_zones(&current.zones, &desired.zones, &mut out);
    diff_operators(current, desired, &mut out);
    out
}

/// The `sha256:…` id of a normalised PEM key, for effects (the PEM itself when it does
/// not read, which the loader has already refused).
fn key_name(pem: &str) -> String {
    zerofn_sigstore::PublicKey::from_pem(pem)
        .map(|k| k.key_id().to_string())
        .unwrap_or_else(|_| "an unreadable key".to_owned())
}

/// Operator changes. An operator declared with a public key is enrolled by `apply` (a
/// certificate for that key), and re-enrolled when the directory names another key or the
/// operator holds no valid certificate; one declared without a key is enrolled by hand.
/// An operator the directory does not declare has every certificate revoked.
fn diff_operators(current: &PlatformConfig, desired: &PlatformConfig, out: &mut Vec<Change>) {
    for (name, d) in &desired.operators {
        let c = current.operators.get(name);
        match (c, &d.public_key) {
            (None, Some(key)) => out.push(change(
                format!("operator {name}"),
                ChangeKind::Create,
                vec![format!(
                    "operator `{name}` is issued a control-API certificate for key {}",
                    key_name(key)
                )],
            )),
            (None, None) => out.push(Change {
                object: format!("operator {name}"),
                kind: ChangeKind::Create,
                effects: vec![format!(
                    "operator `{name}` may hold a control-API certificate"
                )],
                manual: Some(format!(
                    "the directory names no key for `{name}`: add `public_key = \"FILE\"` to \
                     `operators/{name}.toml`, or enrol with `zerofn operator add {name} --public-key FILE`"
                )),
            }),
            (Some(c), Some(key)) if c.public_key.as_ref() != Some(key) => out.push(change(
                format!("operator {name}"),
                ChangeKind::Change,
                vec![format!(
                    "operator `{name}`'s certificates are revoked and one is issued for key {}",
                    key_name(key)
                )],
            )),
            _ => {}
        }
    }
    for name in current.operators.keys() {
        if !desired.operators.contains_key(name) {
            out.push(change(
                format!("operator {name}"),
                ChangeKind::Remove,
                vec![format!(
                    "operator `{name}` is not declared: every certificate of theirs is revoked"
                )],
            ));
        }
    }
}

/// Zone changes, each with its effects. Zones are compared as parsed, so a document that
/// only differs in layout or comments is no change. Calls are judged on the whole set
/// (a call across zones needs `calls` on one side and `called_from` on the other).
fn diff_zones(
    current: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
    out: &mut Vec<Change>,
) {
    use zerofn_manifest::zone::{Zone, ZoneName, ZoneSet};
    let parse = |docs: &BTreeMap<String, String>| -> BTreeMap<String, Option<Zone>> {
        docs.iter()
            .map(|(n, d)| (n.clone(), Zone::from_toml(d).ok()))
            .collect()
    };
    let (cur, des) = (parse(current), parse(desired));
    let set = |zones: &BTreeMap<String, Option<Zone>>| {
        ZoneSet::new(zones.values().flatten().cloned()).unwrap_or_default()
    };
    let (cur_set, des_set) = (set(&cur), set(&des));
    let names: BTreeSet<&String> = cur.keys().chain(des.keys()).collect();
    for name in names {
        let (c, d) = (cur.get(name), des.get(name));
        let kind = match (c, d) {
            (None, Some(_)) => ChangeKind::Create,
            (Some(_), None) => ChangeKind::Remove,
            (Some(Some(c)), Some(Some(d))) if c == d => continue,
            _ => ChangeKind::Change,
        };
        let (c, d) = (c.and_then(Option::as_ref), d.and_then(Option::as_ref));
        let mut effects = Vec::new();
        match kind {
            ChangeKind::Create => effects.push(format!("zone `{name}` is created")),
            ChangeKind::Remove => effects.push(format!(
                "zone `{name}` is removed; its tenants are in no zone"
            )),
            ChangeKind::Change if c.is_none() => effects.push(format!(
                "the stored zone `{name}` does not load; it is replaced"
            )),
            ChangeKind::Change => {}
        }
        let tenants = |z: Option<&Zone>| -> BTreeSet<String> {
            z.map(|z| z.tenants.iter().map(|t| t.to_string()).collect())
                .unwrap_or_default()
        };
        let (ct, dt) = (tenants(c), tenants(d));
        for t in dt.difference(&ct) {
            effects.push(format!("tenant `{t}` joins zone `{name}`"));
        }
        for t in ct.difference(&dt) {
            effects.push(format!("tenant `{t}` leaves zone `{name}`"));
        }
        let Ok(zone) = ZoneName::parse(name) else {
            continue;
        };
        let links = |z: Option<&Zone>, calls: bool| -> BTreeSet<ZoneName> {
            z.map(|z| {
                if calls {
                    z.calls.clone()
                } else {
                    z.called_from.clone()
                }
            })
            .unwrap_or_default()
        };
        for calls in [true, false] {
            let (cl, dl) = (links(c, calls), links(d, calls));
            for other in dl.symmetric_difference(&cl) {
                let (from, to) = if calls {
                    (&zone, other)
                } else {
                    (other, &zone)
                };
                let (was, is) = (cur_set.may_call(from, to), des_set.may_call(from, to));
                let key = if calls { "calls" } else { "called_from" };
                effects.push(match (was, is) {
                    (false, true) => format!("zone `{from}` may now call zone `{to}`"),
                    (true, false) => format!("zone `{from}` may no longer call zone `{to}`"),
                    _ if dl.contains(other) => format!(
                        "zone `{name}` lists zone `{other}` in `{key}` (calls from `{from}` to \
                         `{to}` also need the other zone's consent)"
                    ),
                    _ => format!("zone `{name}` no longer lists zone `{other}` in `{key}`"),
                });
            }
        }
        let egress = |z: Option<&Zone>| -> BTreeSet<String> {
            z.map(|z| z.egress.iter().map(ToString::to_string).collect())
                .unwrap_or_default()
        };
        let (ce, de) = (egress(c), egress(d));
        for e in de.difference(&ce) {
            effects.push(format!("zone `{name}` egress ceiling gains {e}"));
        }
        for e in ce.difference(&de) {
            effects.push(format!("zone `{name}` egress ceiling loses {e}"));
        }
        let signers = |z: Option<&Zone>| z.map(|z| z.signers.clone()).unwrap_or_default();
        let (cs, ds) = (signers(c), signers(d));
        for s in ds.difference(&cs) {
            effects.push(format!(
                "code deployed into zone `{name}` may be signed by `{s}`"
            ));
        }
        for s in cs.difference(&ds) {
            effects.push(format!(
                "code deployed into zone `{name}` may no longer be signed by `{s}`"
            ));
        }
        if d.is_some_and(|d| d.signers.is_empty()) && !cs.is_empty() {
            effects.push(format!(
                "zone `{name}` no longer restricts signers (the tenants' own trust alone)"
            ));
        }
        out.push(change(format!("zone {name}"), kind, effects));
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items
            .iter()
            .map(|i| format!("`{i}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn show(v: Option<u32>) -> String {
    v.map_or("none".into(), |v| v.to_string())
}

/// Policy ids gained and lost between two Cedar texts.
fn policy_effects(what: &str, old: Option<&str>, new: Option<&str>) -> Vec<String> {
    let ids = |text: Option<&str>| -> BTreeSet<String> {
        text.and_then(|t| zerofn_policy::PolicySet::parse(t).ok())
            .map(|s| s.ids().iter().cloned().collect())
            .unwrap_or_default()
    };
    let (a, b) = (ids(old), ids(new));
    let mut out = Vec::new();
    for id in b.difference(&a) {
        out.push(format!("{what} gains policy `{id}`"));
    }
    for id in a.difference(&b) {
        out.push(format!("{what} loses policy `{id}`"));
    }
    if out.is_empty() {
        out.push(format!("{what} text changes (same policy ids)"));
    }
    out
}

fn diff_tenant(
    name: &str,
    c: &TenantConfig,
    d: &TenantConfig,
    out: &mut Vec<Change>,
    creating: bool,
) {
    let obj = |what: &str| format!("tenant {name} {what}");
    // Keys.
    for (id, _) in d.keys.iter().filter(|(id, _)| !c.keys.contains_key(*id)) {
        out.push(change(
            obj(&format!("key {id}")),
            ChangeKind::Create,
            vec![format!("signing key `{id}` may publish code into `{name}`")],
        ));
    }
    for id in c.keys.keys().filter(|id| !d.keys.contains_key(*id)) {
        out.push(change(
            obj(&format!("key {id}")),
            ChangeKind::Remove,
            vec![format!(
                "signing key `{id}` may no longer publish code into `{name}` (functions it \
                 signed are refused at the next restart)"
            )],
        ));
    }
    // Routes.
    if c.routes != d.routes && !creating {
        let mut effects = Vec::new();
        for r in d.routes.iter().filter(|r| !c.routes.contains(r)) {
            effects.push(format!("`{name}` gains route prefix `{r}`"));
        }
        for r in c.routes.iter().filter(|r| !d.routes.contains(r)) {
            effects.push(format!("`{name}` loses route prefix `{r}`"));
        }
        out.push(change(obj("routes"), ChangeKind::Change, effects));
    }
    // Limits.
    if c.limits != d.limits {
        let mut effects = Vec::new();
        for (what, a, b) in [
            (
                "rate per second",
                c.limits.rate_per_second,
                d.limits.rate_per_second,
            ),
            ("burst", c.limits.burst, d.limits.burst),
            (
                "concurrency",
                c.limits.max_concurrency,
                d.limits.max_concurrency,
            ),
        ] {
            if a != b {
                effects.push(format!(
                    "`{name}`'s {what} limit goes from {} to {}",
                    show(a),
                    show(b)
                ));
            }
        }
        out.push(change(obj("limits"), ChangeKind::Change, effects));
    }
    // Admission.
    if c.admission != d.admission {
        let mut effects = Vec::new();
        if c.admission.policy != d.admission.policy {
            effects.extend(policy_effects(
                &format!("`{name}`'s admission policy"),
                c.admission.policy.as_deref(),
                d.admission.policy.as_deref(),
            ));
            if d.admission.policy.is_none() {
                effects.push(format!(
                    "`{name}` admits every component its signers sign (the default policy)"
                ));
            }
        }
        if c.admission.severity_threshold != d.admission.severity_threshold {
            effects.push(match &d.admission.severity_threshold {
                Some(s) => format!("`{name}` refuses components with `{s}` or worse findings"),
                None => format!("`{name}` refuses no component for its findings"),
            });
        }
        if c.admission.require_sbom != d.admission.require_sbom {
            effects.push(match d.admission.require_sbom {
                true => format!("`{name}` refuses components without an SBOM"),
                false => format!("`{name}` admits components without an SBOM"),
            });
        }
        out.push(change(obj("admission"), ChangeKind::Change, effects));
    }
    // Keyless identities.
    for (id, i) in &d.identities {
        match c.identities.get(id) {
            None => out.push(change(
                obj(&format!("identity {id}")),
                ChangeKind::Create,
                vec![format!(
                    "keyless signer `{}` from `{}` may publish code into `{name}`",
                    i.san, i.issuer
                )],
            )),
            Some(old) if old != i => out.push(change(
                obj(&format!("identity {id}")),
                ChangeKind::Change,
                vec![format!(
                    "keyless signer `{}` is checked against a different trusted root",
                    i.san
                )],
            )),
            Some(_) => {}
        }
    }
    for (id, i) in &c.identities {
        if !d.identities.contains_key(id) {
            out.push(change(
                obj(&format!("identity {id}")),
                ChangeKind::Remove,
                vec![format!(
                    "keyless signer `{}` from `{}` may no longer publish code into `{name}`",
                    i.san, i.issuer
                )],
            ));
        }
    }
    // JWT issuers.
    diff_map(
        &c.jwt_issuers,
        &d.jwt_issuers,
        |n| obj(&format!("jwt issuer {n}")),
        |n, i, kind| match kind {
            ChangeKind::Create => format!(
                "tokens from `{}` for audience `{}` may authenticate callers of `{name}`'s \
                 functions (`jwt:{n}`)",
                i.issuer, i.audience
            ),
            ChangeKind::Change => {
                format!("JWT issuer `{n}` of `{name}` changes its keys or claims")
            }
            ChangeKind::Remove => format!(
                "tokens from `{}` no longer authenticate callers of `{name}`'s functions",
                i.issuer
            ),
        },
        out,
    );
    // CAs of mTLS callers.
    diff_map(
        &c.mtls_cas,
        &d.mtls_cas,
        |n| obj(&format!("mtls ca {n}")),
        |n, _, kind| match kind {
            ChangeKind::Create => format!(
                "client certificates issued by CA `{n}` may authenticate callers of \
                 `{name}`'s functions (`mtls:{n}`)"
            ),
            ChangeKind::Change => format!("CA `{n}` of `{name}` changes its certificates"),
            ChangeKind::Remove => format!(
                "client certificates issued by CA `{n}` no longer authenticate callers of \
                 `{name}`'s functions"
            ),
        },
        out,
    );
    // Runtime policy.
    if c.policy != d.policy {
        let kind = match (&c.policy, &d.policy) {
            (None, Some(_)) => ChangeKind::Create,
            (Some(_), None) => ChangeKind::Remove,
            _ => ChangeKind::Change,
        };
        out.push(change(
            obj("runtime policy"),
            kind,
            policy_effects(
                &format!("`{name}`'s runtime policy"),
                c.policy.as_deref(),
                d.policy.as_deref(),
            ),
        ));
    }
    // Functions.
    let names: BTreeSet<&String> = c.functions.keys().chain(d.functions.keys()).collect();
    for f in names {
        let id = format!("{name}/{f}");
        match (c.functions.get(f), d.functions.get(f)) {
            (None, Some(new)) => {
                let mut effects = vec![format!("`{id}` is deployed ({})", new.digest)];
                effects.extend(grant_effects(&id, None, Some(&new.manifest)));
                out.push(change(
                    format!("function {id}"),
                    ChangeKind::Create,
                    effects,
                ));
            }
            (Some(_), None) => out.push(change(
                format!("function {id}"),
                ChangeKind::Remove,
                vec![format!(
                    "`{id}` is undeployed; its routes stop being served"
                )],
            )),
            (Some(old), Some(new)) if old != new => {
                let mut effects = Vec::new();
                if old.digest != new.digest {
                    effects.push(format!(
                        "`{id}` runs new code: {} replaces {}",
                        new.digest, old.digest
                    ));
                }
                effects.extend(grant_effects(&id, Some(&old.manifest), Some(&new.manifest)));
                if effects.is_empty() {
                    effects.push(format!("`{id}`'s manifest changes"));
                }
                out.push(change(
                    format!("function {id}"),
                    ChangeKind::Change,
                    effects,
                ));
            }
            _ => {}
        }
    }
}

fn diff_map<V: PartialEq>(
    c: &BTreeMap<String, V>,
    d: &BTreeMap<String, V>,
    object: impl Fn(&str) -> String,
    effect: impl Fn(&str, &V, ChangeKind) -> String,
    out: &mut Vec<Change>,
) {
    for (n, v) in d {
        let kind = match c.get(n) {
            None => ChangeKind::Create,
            Some(old) if old != v => ChangeKind::Change,
            Some(_) => continue,
        };
        out.push(change(object(n), kind, vec![effect(n, v, kind)]));
    }
    for (n, v) in c {
        if !d.contains_key(n) {
            out.push(change(
                object(n),
                ChangeKind::Remove,
                vec![effect(n, v, ChangeKind::Remove)],
            ));
        }
    }
}

/// The grants of a manifest, in words (`kv`, `call`, invokers, egress, config keys).
fn grants(manifest: &str) -> BTreeSet<String> {
    let Ok(m) = zerofn_manifest::Manifest::from_toml(manifest) else {
        return BTreeSet::new();
    };
    let p = &m.permissions;
    let mut out = BTreeSet::new();
    for e in &p.egress {
        out.insert(format!("egress to {e}"));
    }
    for kv in &p.kv {
        out.insert(format!("key-value access `{kv}`"));
    }
    for call in &p.call {
        out.insert(format!("calls to `{call}`"));
    }
    for from in &p.invoke_from {
        out.insert(format!("invocation by `{from}`"));
    }
    out
}

fn grant_effects(id: &str, old: Option<&str>, new: Option<&str>) -> Vec<String> {
    let (a, b) = (
        old.map(grants).unwrap_or_default(),
        new.map(grants).unwrap_or_default(),
    );
    let mut out = Vec::new();
    for g in b.difference(&a) {
        out.push(format!("`{id}` gains {g}"));
    }
    for g in a.difference(&b) {
        out.push(format!("`{id}` loses {g}"));
    }
    out
}
