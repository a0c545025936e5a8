//! A function's declared permissions (the manifest's `[permissions]` and
//! `[invoke]` tables) and their compilation to Cedar.
//!
//! The short forms are what a tenant writes; the Cedar they compile to is
//! what decides, and is what `zerofn policy show` prints. Every compiled
//! policy is scoped with `principal ==` or `resource ==` one entity of the
//! function's own tenant, so a manifest can grant nothing outside it except
//! an explicitly named caller tenant in `[invoke]`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::PolicyError;
use zerofn_egress::{EgressRule, HostPattern};

/// How a function may use one key-value bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KvMode {
    Read,
    Write,
    ReadWrite,
}

impl KvMode {
    pub fn as_str(self) -> &'static str {
        match self {
            KvMode::Read => "read",
            KvMode::Write => "write",
            KvMode::ReadWrite => "read-write",
        }
    }

    /// Whether this grant covers the operation class (`kv.read` / `kv.write`).
    pub fn covers(self, write: bool) -> bool {
        match self {
            KvMode::Read => !write,
            KvMode::Write => write,
            KvMode::ReadWrite => true,
        }
    }
}

/// Why a manifest's grant (`[permissions] kv`, `[invoke] from`) is refused. Quoted text is
/// escaped where the error is made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// A key-value grant without `:<access>`.
    #[error("`{text}` is not `<bucket>:<read|write|read-write>`")]
    NotKvGrant { text: String },
    /// The access part of a key-value grant is not one of the three.
    #[error("`{text}`: the access must be read, write or read-write, not `{access}`")]
    Access { text: String, access: String },
    /// A bucket, function, tenant or event-source name breaks the naming rule.
    #[error("{kind} `{name}` {why}")]
    Name {
        kind: &'static str,
        name: String,
        why: &'static str,
    },
    /// An invoke source of none of the forms.
    #[error("`{text}` is not `public`, a function name, `tenant:<name>`, `event:<name>`, `jwt:<issuer>`, `mtls:<ca>` or `apikey`")]
    NotInvokeSource { text: String },
}

fn name_error(kind: &'static str, name: &str, why: &'static str) -> GrantError {
    GrantError::Name {
        kind,
        name: name.escape_debug().to_string(),
        why,
    }
}

/// One key-value grant: `"<bucket>:<mode>"`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KvGrant {
    pub bucket: String,
    pub mode: KvMode,
}

impl KvGrant {
    /// Parses `orders:read`, `cache:read-write`, `log:write`.
    pub fn parse(text: &str) -> Result<KvGrant, GrantError> {
        let (bucket, mode) = text
            .rsplit_once(':')
            .ok_or_else(|| GrantError::NotKvGrant {
                text: text.escape_debug().to_string(),
            })?;
        valid_name(bucket).map_err(|why| name_error("bucket", bucket, why))?;
        let mode = match mode {
            "read" => KvMode::Read,
            "write" => KvMode::Write,
            "read-write" => KvMode::ReadWrite,
            other => {
                return Err(GrantError::Access {
                    text: text.escape_debug().to_string(),
                    access: other.escape_debug().to_string(),
                })
            }
        };
        Ok(KvGrant {
            bucket: bucket.to_owned(),
            mode,
        })
    }
}

impl std::fmt::Display for KvGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.bucket, self.mode.as_str())
    }
}

/// Who may invoke a function (`[invoke] from = [...]`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InvokeSource {
    /// `"public"`: anyone through the gateway.
    Public,
    /// `"<name>"`: a function of the same tenant.
    Function(String),
    /// `"tenant:<t>"`: any function of tenant `t`.
    Tenant(String),
    /// `"event:<kind>/<name>"` (or `"event:<name>"`): an event source of the
    /// same tenant, e.g. `event:queue/orders` (`[[triggers]]` add these).
    Event(String),
    /// `"jwt:<issuer>"`: a bearer of a verified JWT of the tenant's issuer `<issuer>`.
    Jwt(String),
    /// `"apikey"`: a holder of one of the tenant's API keys scoped to the function.
    ApiKey,
    /// `"mtls:<ca>"`: a client certificate verified against the tenant's CA `<ca>`
    /// (`zerofn auth mtls add`), or `"mtls:spiffe"`: against the platform's trust bundle.
    Mtls(String),
}

impl InvokeSource {
    pub fn parse(text: &str) -> Result<InvokeSource, GrantError> {
        let named = |kind: &'static str, name: &str| {
            valid_name(name)
                .map_err(|why| name_error(kind, name, why))
                .map(|()| name.to_owned())
        };
        if text == "public" {
            Ok(InvokeSource::Public)
        } else if text == "apikey" {
            Ok(InvokeSource::ApiKey)
        } else if let Some(i) = text.strip_prefix("jwt:") {
            named("issuer", i).map(InvokeSource::Jwt)
        } else if let Some(ca) = text.strip_prefix("mtls:") {
            named("certificate authority", ca).map(InvokeSource::Mtls)
        } else if let Some(t) = text.strip_prefix("tenant:") {
            named("tenant", t).map(InvokeSource::Tenant)
        } else if let Some(e) = text.strip_prefix("event:") {
            // `event:<kind>/<name>` (`event:queue/orders`), or a bare
            // `event:<name>`; each part a name, so no `/` beyond the one.
            match e.split_once('/') {
                Some((kind, name)) => {
                    named("event source kind", kind)?;
                    named("event source", name)?;
                    Ok(InvokeSource::Event(e.to_owned()))
                }
                None => named("event source", e).map(InvokeSource::Event),
            }
        } else if text.contains(':') {
            Err(GrantError::NotInvokeSource {
                text: text.escape_debug().to_string(),
            })
        } else {
            named("function", text).map(InvokeSource::Function)
        }
    }
}

impl std::fmt::Display for InvokeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InvokeSource::Public => f.write_str("public"),
            InvokeSource::Function(n) => f.write_str(n),
            InvokeSource::Tenant(t) => write!(f, "tenant:{t}"),
            InvokeSource::Event(e) => write!(f, "event:{e}"),
            InvokeSource::Jwt(i) => write!(f, "jwt:{i}"),
            InvokeSource::ApiKey => f.write_str("apikey"),
            InvokeSource::Mtls(ca) => write!(f, "mtls:{ca}"),
        }
    }
}

/// Everything a manifest grants or allows for one function.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    pub kv: BTreeSet<KvGrant>,
    /// Functions of the same tenant this one may call.
    pub call: BTreeSet<String>,
    /// Whether the function may read its own `[config]` values.
    pub config: bool,
    /// Who may invoke it.
    pub invoke_from: BTreeSet<InvokeSource>,
    /// Whether the function sees the caller's `Authorization` header (`[invoke]
    /// pass_authorization`); removed before it runs otherwise.
    pub pass_authorization: bool,
    /// Outbound HTTP destinations (`[egress] allow`), in manifest order.
    pub egress: Vec<EgressRule>,
    /// Queues of the same tenant the function may publish to (`[permissions] publish`).
    pub publish: BTreeSet<String>,
    /// Object storage buckets of the same tenant it may read or write
    /// (`[permissions] buckets`, written as kv grants are: `name:mode`).
    pub buckets: BTreeSet<KvGrant>,
}

impl Permissions {
    /// Every power these permissions grant beyond the function itself, one atom each:
    /// `kv.read <bucket>`, `kv.write <bucket>`, `call <function>`, and `invoke from
    /// tenant:<t>` (another tenant's functions reaching it). A `read-write` grant is two
    /// atoms, so narrowing it to `read` grants nothing new. Being invocable by `public`, by
    /// a function or by an event source of its own tenant is exposure inside the tenant's
    /// own boundary (and the default), not a grant: deploying it needs only `deploy`.
    pub fn grant_atoms(&self) -> BTreeSet<String> {
        let Permissions {
            kv,
            call,
            // Reading one's own configuration is not a power over anything else.
            config: _,
            invoke_from,
            // Seeing the caller's own credential is no power over anything else.
            pass_authorization: _,
            egress,
            publish,
            buckets,
        } = self;
        let mut atoms = BTreeSet::new();
        for grant in kv {
            if grant.mode.covers(false) {
                atoms.insert(format!("kv.read {}", grant.bucket));
            }
            if grant.mode.covers(true) {
                atoms.insert(format!("kv.write {}", grant.bucket));
            }
        }
        for grant in buckets {
            if grant.mode.covers(false) {
                atoms.insert(format!("object.read {}", grant.bucket));
            }
            if grant.mode.covers(true) {
                atoms.insert(format!("object.write {}", grant.bucket));
            }
        }
        atoms.extend(call.iter().map(|f| format!("call {f}")));
        atoms.extend(publish.iter().map(|q| format!("publish {q}")));
        atoms.extend(egress.iter().map(|r| format!("egress {r}")));
        atoms.extend(invoke_from.iter().filter_map(|s| match s {
            InvokeSource::Tenant(t) => Some(format!("invoke from tenant:{t}")),
            InvokeSource::Public
            | InvokeSource::Function(_)
            | InvokeSource::Event(_)
            | InvokeSource::Jwt(_)
            | InvokeSource::Mtls(_)
            | InvokeSource::ApiKey => None,
        }));
        atoms
    }

    /// The atoms ([`Permissions::grant_atoms`]) these permissions grant that `before` does
    /// not: what deploying them over `before` (or as a new function, `None`) widens.
    pub fn widening(&self, before: Option<&Permissions>) -> Vec<String> {
        let before = before.map(Permissions::grant_atoms).unwrap_or_default();
        self.grant_atoms()
            .into_iter()
            .filter(|atom| !before.contains(atom))
            .collect()
    }
}

/// Names of buckets, functions, tenants and event sources in grants:
/// lower-case letters, digits and `-`, 1 to 63 characters, like tenant and
/// function names.
fn valid_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1 to 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("may hold only a-z, 0-9 and -");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("may not start or end with -");
    }
    Ok(())
}

/// Checks a bucket name a guest passes at run time (same rule as grants).
pub fn valid_bucket_name(name: &str) -> Result<(), &'static str> {
    valid_name(name)
}

/// Checks a queue name in a grant or passed by a guest (the events crate's rule).
pub fn valid_queue_name(name: &str) -> Result<(), &'static str> {
    valid_name(name)
}

/// The Cedar string literal for `s` (names are validated, but escape
/// anyway so a future relaxation cannot inject policy text).
pub fn lit(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The Cedar uid text of a function.
pub fn function_uid(tenant: &str, name: &str) -> String {
    format!("Zerofn::Function::{}", lit(&format!("{tenant}/{name}")))
}

/// Compiles `permissions` of function `tenant/name` to Cedar policies with
/// ids `<tenant>/<name>/<what>`, in a stable order.
pub fn compile(tenant: &str, name: &str, permissions: &Permissions) -> String {
    let me = function_uid(tenant, name);
    let mut out = String::new();
    for grant in &permissions.kv {
        let actions = match grant.mode {
            KvMode::Read => r#"action in Zerofn::Action::"kv.read""#.to_owned(),
            KvMode::Write => r#"action in Zerofn::Action::"kv.write""#.to_owned(),
            KvMode::ReadWrite => {
                r#"action in [Zerofn::Action::"kv.read", Zerofn::Action::"kv.write"]"#.to_owned()
            }
        };
        let _ = writeln!(
            out,
            "@id({id})\npermit (principal == {me}, {actions}, resource == Zerofn::Bucket::{bucket});",
            id = lit(&format!("{tenant}/{name}/kv/{grant}")),
            bucket = lit(&format!("{tenant}/{}", grant.bucket)),
        );
    }
    for callee in &permissions.call {
        let _ = writeln!(
            out,
            "@id({id})\npermit (principal == {me}, action == Zerofn::Action::\"call\", resource == {callee_uid});",
            id = lit(&format!("{tenant}/{name}/call/{callee}")),
            callee_uid = function_uid(tenant, callee),
        );
    }
    for grant in &permissions.buckets {
        let actions = match grant.mode {
            KvMode::Read => r#"action == Zerofn::Action::"object.read""#,
            KvMode::Write => r#"action == Zerofn::Action::"object.write""#,
            KvMode::ReadWrite => {
                r#"action in [Zerofn::Action::"object.read", Zerofn::Action::"object.write"]"#
            }
        };
        let _ = writeln!(
            out,
            "@id({id})\npermit (principal == {me}, {actions}, resource == Zerofn::ObjectBucket::{bucket});",
            id = lit(&format!("{tenant}/{name}/buckets/{grant}")),
            bucket = lit(&format!("{tenant}/{}", grant.bucket)),
        );
    }
    for queue in &permissions.publish {
        let _ = writeln!(
            out,
            "@id({id})\npermit (principal == {me}, action == Zerofn::Action::\"queue.publish\", resource == Zerofn::Queue::{queue_uid});",
            id = lit(&format!("{tenant}/{name}/publish/{queue}")),
            queue_uid = lit(&format!("{tenant}/{queue}")),
        );
    }
    // Every function may obtain JWT-SVIDs for its own identity, as the
    // SPIFFE Workload API gives any workload its own SVIDs.
    let _ = writeln!(
        out,
        "@id({id})\npermit (principal == {me}, action == Zerofn::Action::\"svid.jwt\", resource == {me});",
        id = lit(&format!("{tenant}/{name}/identity")),
    );
    if permissions.config {
        let _ = writeln!(
            out,
            "@id({id})\npermit (principal == {me}, action == Zerofn::Action::\"config.read\", resource == {me});",
            id = lit(&format!("{tenant}/{name}/config")),
        );
    }
    let mut egress_ids = BTreeSet::new();
    for rule in &permissions.egress {
        // Two entries whose URLs read the same once made an id get a
        // numbered suffix, so a manifest never compiles to a repeated id.
        let base = egress_policy_id(tenant, name, rule);
        let mut id = base.clone();
        let mut n = 1;
        while !egress_ids.insert(id.clone()) {
            n += 1;
            id = format!("{base}/{n}");
        }
        let _ = writeln!(
            out,
            "@id({id})\npermit (principal == {me}, action == Zerofn::Action::\"http.outbound\", resource)\nwhen {{ {conditions} }};",
            id = lit(&id),
            conditions = egress_conditions(rule),
        );
    }
    for source in &permissions.invoke_from {
        let principal = match source {
            InvokeSource::Public => r#"principal == Zerofn::Caller::"public""#.to_owned(),
            InvokeSource::Function(f) => format!("principal == {}", function_uid(tenant, f)),
            InvokeSource::Tenant(t) => format!("principal in Zerofn::Tenant::{}", lit(t)),
            InvokeSource::Event(e) => format!(
                "principal == Zerofn::EventSource::{}",
                lit(&format!("{tenant}/{e}"))
            ),
            InvokeSource::Jwt(i) => format!(
                "principal in Zerofn::Issuer::{}",
                lit(&format!("{tenant}/{i}"))
            ),
            InvokeSource::ApiKey => format!(
                "principal is Zerofn::ApiKey in Zerofn::Tenant::{}",
                lit(tenant)
            ),
            // The CA entity is the callee tenant's (`spiffe` too): a certificate verified
            // for another tenant's function is another tenant's caller.
            InvokeSource::Mtls(ca) => format!(
                "principal is Zerofn::MtlsCaller in Zerofn::MtlsCa::{}",
                lit(&format!("{tenant}/{ca}"))
            ),
        };
        let _ = writeln!(
            out,
            "@id({id})\npermit ({principal}, action == Zerofn::Action::\"invoke\", resource == {me});",
            id = lit(&format!("{tenant}/{name}/invoke/{source}")),
        );
    }
    out
}

/// The id of the policy an `[egress] allow` entry compiles to:
/// `<tenant>/<fn>/egress/<url>`, the entry's canonical URL with `*` read as
/// `_` and any other character policy ids do not allow dropped or read as
/// `_`, at most 128 characters.
pub fn egress_policy_id(tenant: &str, name: &str, rule: &EgressRule) -> String {
    let url: String = rule
        .url()
        .chars()
        .filter(|c| !matches!(c, '[' | ']'))
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut id = format!("{tenant}/{name}/egress/{url}");
    id.truncate(120);
    id
}

/// A Cedar `like` pattern matching `prefix` literally, then anything.
fn like_prefix(prefix: &str) -> String {
    let escaped = lit(prefix);
    let inner = escaped
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or("")
        .replace('*', "\\*");
    format!("\"{inner}*\"")
}

/// The conditions of one egress entry on the request's `Host` resource
/// (`name`, and `parent`: the name without its first label) and its
/// context (`scheme`, `port`, `path`, `method`), as the host reads them.
pub fn egress_conditions(rule: &EgressRule) -> String {
    let mut c = vec![
        format!("context.scheme == {}", lit(rule.scheme.as_str())),
        format!("context.port == {}", rule.port),
    ];
    c.push(match &rule.host {
        HostPattern::Exact(n) => format!("resource.name == {}", lit(n)),
        HostPattern::Ip(_) => format!("resource.name == {}", lit(&rule.host.to_string())),
        // One more label exactly: the host's parent is the suffix and it
        // is not the suffix itself.
        HostPattern::Wildcard(suffix) => format!(
            "resource.parent == {s} && resource.name != {s}",
            s = lit(suffix)
        ),
    });
    match rule.path_prefix.as_deref() {
        None => {}
        Some(p) if p.ends_with('/') => c.push(format!("context.path like {}", like_prefix(p))),
        Some(p) => c.push(format!(
            "(context.path == {} || context.path like {})",
            lit(p),
            like_prefix(&format!("{p}/"))
        )),
    }
    if !rule.methods.is_empty() {
        let list: Vec<String> = rule.methods.iter().map(|m| lit(m)).collect();
        c.push(format!("[{}].contains(context.method)", list.join(", ")));
    }
    c.join(" && ")
}

/// Parses the compiled text back, for callers that want to be sure the
/// compilation validates (it always should: tests check every form).
pub fn compile_checked(
    tenant: &str,
    name: &str,
    permissions: &Permissions,
) -> Result<String, PolicyError> {
    let text = compile(tenant, name, permissions);
    crate::PolicySet::parse(&text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn widening_names_each_new_power_once() {
        let perms = |kv: &[&str], call: &[&str], from: &[&str]| Permissions {
            kv: kv.iter().map(|g| KvGrant::parse(g).unwrap()).collect(),
            call: call.iter().map(|c| (*c).to_owned()).collect(),
            config: false,
            invoke_from: from
                .iter()
                .map(|f| InvokeSource::parse(f).unwrap())
                .collect(),
            pass_authorization: false,
            egress: Vec::new(),
            publish: BTreeSet::new(),
            buckets: BTreeSet::new(),
        };
        let old = perms(&["orders:read-write"], &["billing"], &["public"]);
        assert!(perms(&["orders:read"], &[], &["public"])
            .widening(Some(&old))
            .is_empty());
        assert!(old.widening(Some(&old)).is_empty());
        assert_eq!(
            perms(
                &["orders:read", "secrets:read-write"],
                &["billing", "audit"],
                &["tenant:other"]
            )
            .widening(Some(&old)),
            [
                "call audit",
                "invoke from tenant:other",
                "kv.read secrets",
                "kv.write secrets"
            ]
        );
        // A new function: everything it grants is new.
        assert_eq!(
            perms(&["orders:write"], &[], &["public", "checkout"]).widening(None),
            ["kv.write orders"]
        );
    }

    use super::*;

    #[test]
    fn short_forms_parse_and_bad_ones_are_named() {
        assert_eq!(
            KvGrant::parse("orders:read").unwrap(),
            KvGrant {
                bucket: "orders".into(),
                mode: KvMode::Read
            }
        );
        assert_eq!(
            KvGrant::parse("cache:read-write").unwrap().mode,
            KvMode::ReadWrite
        );
        assert!(KvGrant::parse("orders")
            .unwrap_err()
            .to_string()
            .contains("<bucket>:<read|write|read-write>"));
        assert!(KvGrant::parse("orders:admin")
            .unwrap_err()
            .to_string()
            .contains("not `admin`"));
        assert!(KvGrant::parse("Orders:read")
            .unwrap_err()
            .to_string()
            .contains("a-z"));
        assert!(KvGrant::parse("a\"b:read").is_err());
        assert_eq!(InvokeSource::parse("public").unwrap(), InvokeSource::Public);
        assert_eq!(
            InvokeSource::parse("tenant:partner").unwrap(),
            InvokeSource::Tenant("partner".into())
        );
        assert_eq!(
            InvokeSource::parse("event:orders").unwrap(),
            InvokeSource::Event("orders".into())
        );
        assert!(InvokeSource::parse("role:admin").is_err());
        assert_eq!(
            InvokeSource::parse("mtls:partners").unwrap(),
            InvokeSource::Mtls("partners".into())
        );
        assert_eq!(
            InvokeSource::parse("mtls:partners").unwrap().to_string(),
            "mtls:partners"
        );
        assert!(InvokeSource::parse("mtls:").is_err());
        assert!(InvokeSource::parse("mtls:a/b").is_err());
    }

    #[test]
    fn every_form_compiles_to_valid_cedar_with_stable_ids() {
        let p = Permissions {
            kv: [
                KvGrant::parse("orders:read").unwrap(),
                KvGrant::parse("cache:read-write").unwrap(),
                KvGrant::parse("log:write").unwrap(),
            ]
            .into(),
            call: ["billing".to_owned()].into(),
            config: true,
            invoke_from: [
                InvokeSource::Public,
                InvokeSource::Function("checkout".into()),
                InvokeSource::Tenant("partner".into()),
                InvokeSource::Event("orders".into()),
                InvokeSource::Jwt("corp".into()),
                InvokeSource::ApiKey,
                InvokeSource::Mtls("partners".into()),
            ]
            .into(),
            pass_authorization: false,
            egress: vec![
                EgressRule::parse("https://api.stripe.com", &[], &[]).unwrap(),
                EgressRule::parse("https://*.s3.amazonaws.com:443", &[], &[]).unwrap(),
                EgressRule::parse(
                    "http://inventory.internal:8080/v1/",
                    &["GET".into()],
                    &["10.0.0.0/8".into()],
                )
                .unwrap(),
            ],
            publish: ["orders".to_owned()].into(),
            buckets: [
                KvGrant::parse("uploads:read-write").unwrap(),
                KvGrant::parse("media:read").unwrap(),
            ]
            .into(),
        };
        let text = compile_checked("acme", "shop", &p).unwrap();
        let set = crate::PolicySet::parse(&text).unwrap();
        assert_eq!(
            set.ids(),
            [
                "acme/shop/kv/cache:read-write",
                "acme/shop/kv/log:write",
                "acme/shop/kv/orders:read",
                "acme/shop/call/billing",
                "acme/shop/buckets/media:read",
                "acme/shop/buckets/uploads:read-write",
                "acme/shop/publish/orders",
                "acme/shop/identity",
                "acme/shop/config",
                "acme/shop/egress/https://api.stripe.com:443",
                "acme/shop/egress/https://_.s3.amazonaws.com:443",
                "acme/shop/egress/http://inventory.internal:8080/v1/",
                "acme/shop/invoke/public",
                "acme/shop/invoke/checkout",
                "acme/shop/invoke/tenant:partner",
                "acme/shop/invoke/event:orders",
                "acme/shop/invoke/jwt:corp",
                "acme/shop/invoke/apikey",
                "acme/shop/invoke/mtls:partners",
            ]
        );
        assert!(
            text.contains(r#"principal is Zerofn::MtlsCaller in Zerofn::MtlsCa::"acme/partners""#)
        );
        assert!(text.contains(r#"principal in Zerofn::Issuer::"acme/corp""#));
        assert!(text.contains(r#"principal is Zerofn::ApiKey in Zerofn::Tenant::"acme""#));
        assert!(text.contains(r#"resource == Zerofn::Bucket::"acme/orders""#));
        assert!(text.contains(
            r#"action == Zerofn::Action::"queue.publish", resource == Zerofn::Queue::"acme/orders""#
        ));
        // Publishing is a power over the queue: deploying it is a grant.
        assert!(p.grant_atoms().contains("publish orders"));
    }

    #[test]
    fn literals_are_escaped() {
        assert_eq!(lit("a\"b\\c"), r#""a\"b\\c""#);
    }
}
