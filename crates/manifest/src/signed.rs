//! The manifest's signed form: the security-relevant content of a [`Manifest`] as one
//! canonical JSON object, which `zerofn sign DIR` puts in a signed in-toto statement and
//! admission compares, field by field, with the manifest a deployer submits.
//!
//! The object mirrors `zerofn.toml`, so a difference names the key a user wrote:
//!
//! ```json
//! {"component": "hello.wasm", "config": {"greeting": "hello"},
//!  "invoke": {"from": ["public"]}, "layers": {"zerofn:greet/greeter": "sha256:…"},
//!  "limits": {"max_body_kb": 1024, "memory_mb": 64, "timeout_ms": 1000},
//!  "name": "hello", "permissions": {"call": ["billing"], "kv": ["orders:read"]},
//!  "routes": ["/hello"], "tenant": "acme"}
//! ```
//!
//! Defaults are written out (`limits`, `invoke.from = ["public"]`), lists are sorted and
//! free of duplicates, and object keys are sorted, so two manifests that mean the same thing
//! have the same signed form, and its bytes ([`SignedContent::canonical_bytes`]) are its
//! RFC 8785 (JCS) serialisation: every value is a string, an integer below 2^53 or an
//! object or array of those, for which sorted keys and `serde_json`'s escaping are exactly
//! JCS. `version` is not part of it: the signed statement carries the version beside it.
//!
//! # Trust
//! Built only from a parsed, checked [`Manifest`]. [`first_difference`] compares two such
//! objects and quotes values from them; `[config]` values are never quoted (they are the
//! tenant's runtime configuration, not for logs), only their keys.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::manifest::{Limits, Manifest};

/// The signed form of a manifest (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedContent(Value);

impl SignedContent {
    /// The content as a JSON value (an object).
    pub fn as_value(&self) -> &Value {
        &self.0
    }

    /// Its canonical bytes (RFC 8785 for the values it can hold).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        canonical_bytes(&self.0)
    }
}

/// A JSON value's bytes with object keys in sorted order and no insignificant whitespace:
/// RFC 8785 for values made of strings, integers below 2^53, booleans, arrays and objects
/// with ASCII keys (what statements of this platform hold). Keys are sorted here, not by
/// relying on `serde_json`'s map type, whose order is insertion order when its
/// `preserve_order` feature is on anywhere in the build.
pub fn canonical_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(&sorted(value)).unwrap_or_default()
}

fn sorted(value: &Value) -> Value {
    zerofn_validation::sorted_keys(value)
}

fn sorted_strings<I: IntoIterator<Item = String>>(items: I) -> Value {
    let set: BTreeSet<String> = items.into_iter().collect();
    Value::Array(set.into_iter().map(Value::String).collect())
}

fn limits_value(limits: &Limits) -> Value {
    let Limits {
        memory_mb,
        timeout_ms,
        max_body_kb,
        rate_per_second,
        burst,
        max_concurrency,
    } = *limits;
    let mut value = serde_json::json!({
        "max_body_kb": max_body_kb,
        "memory_mb": memory_mb,
        "timeout_ms": timeout_ms,
    });
    // Signed only when set, so the signed form of a manifest without them (and every
    // signature made before they existed) is unchanged.
    if let Value::Object(map) = &mut value {
        for (key, v) in [
            ("burst", burst),
            ("max_concurrency", max_concurrency),
            ("rate_per_second", rate_per_second),
        ] {
            if let Some(v) = v {
                map.insert(key.to_owned(), v.into());
            }
        }
    }
    value
}

impl Manifest {
    /// The manifest's signed form. Every field of [`Manifest`] is named here (the
    /// destructuring does not compile when a field is added without deciding where it goes),
    /// so a new security-relevant section cannot be left out of what is signed.
    pub fn signed_content(&self) -> SignedContent {
        let Manifest {
            name,
            tenant,
            component,
            routes,
            limits,
            layers,
            permissions,
            config,
            schema,
            // Carried beside the content, in the statement's `version`.
            version: _,
            egress_limits,
            triggers,
        } = self;
        let zerofn_policy::Permissions {
            kv,
            call,
            // Follows from `[config]` being non-empty, which is signed below.
            config: _,
            invoke_from,
            pass_authorization,
            egress,
            publish,
            buckets,
        } = permissions;
        let layers: Map<String, Value> = layers
            .iter()
            .map(|(import, digest)| (import.as_str().to_owned(), digest.to_string().into()))
            .collect();
        let config: Map<String, Value> = config
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        let mut invoke = serde_json::json!({"from": sorted_strings(invoke_from.iter().map(ToString::to_string))});
        // Written only when set, so manifests signed before the key existed keep their
        // content (and digest).
        if *pass_authorization {
            if let Some(o) = invoke.as_object_mut() {
                o.insert("pass_authorization".into(), Value::Bool(true));
            }
        }
        let content = serde_json::json!({
            "component": component,
            "config": config,
            "invoke": invoke,
            "layers": layers,
            "limits": limits_value(limits),
            "name": name.as_str(),
            "permissions": {
                "call": sorted_strings(call.iter().cloned()),
                "kv": sorted_strings(kv.iter().map(ToString::to_string)),
            },
            "routes": sorted_strings(routes.iter().map(|r| r.as_str().to_owned())),
            "tenant": tenant.as_str(),
        });
        let mut content = content;
        // Only when present, as `publish`.
        if let (false, Some(p)) = (
            buckets.is_empty(),
            content
                .get_mut("permissions")
                .and_then(Value::as_object_mut),
        ) {
            p.insert(
                "buckets".into(),
                sorted_strings(buckets.iter().map(ToString::to_string)),
            );
        }
        // Only when present, so manifests that publish nothing sign exactly what they
        // signed before publishing existed.
        if let (false, Some(p)) = (
            publish.is_empty(),
            content
                .get_mut("permissions")
                .and_then(Value::as_object_mut),
        ) {
            p.insert("publish".into(), sorted_strings(publish.iter().cloned()));
        }
        // Only when present, so manifests without `[[triggers]]` sign exactly
        // what they signed before triggers existed. (Each trigger's invoke
        // grant is in `invoke.from` as well.)
        if let (false, Some(obj)) = (triggers.is_empty(), content.as_object_mut()) {
            let mut list: Vec<Value> = triggers
                .iter()
                .map(|t| match t {
                    crate::Trigger::Queue(q) => {
                        let mut v = serde_json::json!({"queue": q.queue, "max_concurrency": q.max_concurrency});
                        // The schema by digest, only when there is one (triggers
                        // signed before trigger schemas existed keep their form).
                        if let (Some(schema), Some(o)) = (&q.schema, v.as_object_mut()) {
                            o.insert("schema".into(), schema.digest().into());
                        }
                        v
                    }
                    // A schedule's keys are new: queue triggers keep their form.
                    crate::Trigger::Schedule(s) => serde_json::json!({
                        "name": s.name,
                        "schedule": s.schedule.expression(),
                        "timezone": s.schedule.timezone(),
                        "missed": s.missed.as_str(),
                    }),
                    crate::Trigger::Kv(k) => serde_json::json!({
                        "kv": k.bucket,
                        "max_concurrency": k.max_concurrency,
                    }),
                    crate::Trigger::Bucket(b) => b.signed(),
                })
                .collect();
            list.sort_by_key(ToString::to_string);
            obj.insert("triggers".into(), Value::Array(list));
        }
        // Only when present, so manifests without `[egress]` sign exactly
        // what they signed before egress existed.
        if let (false, Some(obj)) = (
            egress.is_empty() && egress_limits.is_empty(),
            content.as_object_mut(),
        ) {
            let mut section = serde_json::json!({"allow": sorted_strings(egress.iter().map(ToString::to_string))});
            // The function's own egress limits, only when it sets any (in
            // milliseconds and bytes, as written).
            if let (false, Some(s)) = (egress_limits.is_empty(), section.as_object_mut()) {
                let ms = |d: Option<std::time::Duration>| {
                    d.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                };
                let mut limits = serde_json::Map::new();
                for (key, value) in [
                    ("connect_timeout_ms", ms(egress_limits.connect)),
                    ("first_byte_timeout_ms", ms(egress_limits.first_byte)),
                    ("timeout_ms", ms(egress_limits.total)),
                    (
                        "max_response_bytes",
                        egress_limits.response_bytes.map(|b| b as u64),
                    ),
                    (
                        "max_connections",
                        egress_limits.concurrent.map(|c| c as u64),
                    ),
                ] {
                    if let Some(v) = value {
                        limits.insert(key.into(), v.into());
                    }
                }
                s.insert("limits".into(), Value::Object(limits));
            }
            obj.insert("egress".into(), section);
        }
        // Each schema by the digest of its canonical JSON, only when there are any (so
        // manifests without `[schema]` sign what they signed before). The schema text is
        // in the manifest itself, so a deployer cannot swap it without changing the digest
        // that admission compares with the signed one.
        if let (false, Some(obj)) = (schema.is_empty(), content.as_object_mut()) {
            let parts: Map<String, Value> = schema
                .iter()
                .map(|(part, s)| (part.as_str().to_owned(), s.digest().into()))
                .collect();
            obj.insert("schema".into(), Value::Object(parts));
        }
        SignedContent(sorted(&content))
    }
}

/// Where a submitted manifest's signed form departs from the signed one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// The dotted key, as in `zerofn.toml` (`permissions.kv`, `config.greeting`).
    pub field: String,
    /// The signed value, quoted (`(absent)` when the signed manifest has no such key;
    /// `(not shown)` for `[config]` values).
    pub signed: String,
    /// The submitted value, quoted likewise.
    pub submitted: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` differs from the signed manifest: signed {}, submitted {}",
            self.field, self.signed, self.submitted
        )
    }
}

/// Longest quoted value in a [`Difference`].
const MAX_QUOTED: usize = 200;

/// The first field, in sorted key order, where `submitted` differs from `signed`; `None`
/// when they are equal. Objects are compared key by key (so a difference names the deepest
/// key), arrays and scalars as whole values.
pub fn first_difference(signed: &Value, submitted: &Value) -> Option<Difference> {
    difference_at("", signed, submitted)
}

fn difference_at(path: &str, signed: &Value, submitted: &Value) -> Option<Difference> {
    if let (Value::Object(a), Value::Object(b)) = (signed, submitted) {
        let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for key in keys {
            let field = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{}", quote_key(key))
            };
            let hidden = path == "config";
            match (a.get(key), b.get(key)) {
                (Some(x), Some(y)) if x == y => {}
                (Some(x), Some(y)) => {
                    if let Some(d) = difference_at(&field, x, y) {
                        return Some(d);
                    }
                }
                (x, y) => {
                    return Some(Difference {
                        field,
                        signed: shown(x, hidden),
                        submitted: shown(y, hidden),
                    })
                }
            }
        }
        return None;
    }
    if signed == submitted {
        return None;
    }
    let hidden = path.starts_with("config.");
    Some(Difference {
        field: path.to_owned(),
        signed: shown(Some(signed), hidden),
        submitted: shown(Some(submitted), hidden),
    })
}

/// A key as written in a dotted TOML path: bare when it can be, quoted otherwise.
fn quote_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        key.to_owned()
    } else {
        format!("\"{}\"", zerofn_types::escape(key))
    }
}

fn shown(value: Option<&Value>, hidden: bool) -> String {
    match value {
        None => "(absent)".to_owned(),
        Some(_) if hidden => "(not shown)".to_owned(),
        Some(v) => zerofn_types::sanitize_message(&v.to_string(), MAX_QUOTED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(extra: &str) -> Manifest {
        Manifest::from_toml(&format!(
            "name = \"hello\"\ntenant = \"acme\"\ncomponent = \"hello.wasm\"\nroutes = [\"/b\", \"/a\"]\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn signed_form_writes_defaults_and_sorts() {
        let content = manifest("").signed_content();
        assert_eq!(
            String::from_utf8(content.canonical_bytes()).unwrap(),
            r#"{"component":"hello.wasm","config":{},"invoke":{"from":["public"]},"layers":{},"limits":{"max_body_kb":1024,"memory_mb":64,"timeout_ms":1000},"name":"hello","permissions":{"call":[],"kv":[]},"routes":["/a","/b"],"tenant":"acme"}"#
        );
        // Writing the defaults out means the same thing, so signs the same.
        let explicit = manifest(
            "[limits]\nmemory_mb = 64\ntimeout_ms = 1000\nmax_body_kb = 1024\n[invoke]\nfrom = [\"public\"]\n",
        );
        assert_eq!(explicit.signed_content(), content);
        // The version is carried beside the content, not in it.
        assert_eq!(manifest("version = 7\n").signed_content(), content);
    }

    #[test]
    fn queue_triggers_sign_as_before_schedules_existed() {
        // Pinned text: schedules added a trigger kind, queue triggers keep their
        // signed form (and so the digest of every manifest signed before).
        let m = manifest("[[triggers]]\nqueue = \"orders\"\n[[triggers]]\nqueue = \"audit\"\nmax_concurrency = 1\n");
        assert_eq!(
            String::from_utf8(m.signed_content().canonical_bytes()).unwrap(),
            r#"{"component":"hello.wasm","config":{},"invoke":{"from":["event:queue/audit","event:queue/orders"]},"layers":{},"limits":{"max_body_kb":1024,"memory_mb":64,"timeout_ms":1000},"name":"hello","permissions":{"call":[],"kv":[]},"routes":["/a","/b"],"tenant":"acme","triggers":[{"max_concurrency":1,"queue":"audit"},{"max_concurrency":4,"queue":"orders"}]}"#
        );
        // A schedule signs its expression, zone and `missed`, and its grant.
        let m = manifest("[[triggers]]\nname = \"tick\"\nschedule = \"*/5 * * * *\"\n");
        let v = m.signed_content();
        assert_eq!(
            v.as_value()["triggers"],
            serde_json::json!([{"missed": "skip", "name": "tick", "schedule": "*/5 * * * *", "timezone": "UTC"}])
        );
        assert_eq!(
            v.as_value()["invoke"]["from"],
            serde_json::json!(["event:schedule/hello-tick"])
        );
        let other = manifest("[[triggers]]\nname = \"tick\"\nschedule = \"*/5 * * * *\"\ntimezone = \"Europe/Berlin\"\n");
        assert_ne!(other.signed_content(), v, "the zone is signed");
    }

    #[test]
    fn every_grant_is_in_the_signed_form() {
        let m = manifest(
            "[permissions]\nkv = [\"orders:read\", \"cache:read-write\"]\ncall = [\"billing\"]\n[invoke]\nfrom = [\"tenant:partner\", \"checkout\"]\n[config]\ngreeting = \"hi\"\n",
        );
        let v = m.signed_content();
        let v = v.as_value();
        assert_eq!(
            v["permissions"]["kv"],
            serde_json::json!(["cache:read-write", "orders:read"])
        );
        assert_eq!(v["permissions"]["call"], serde_json::json!(["billing"]));
        assert_eq!(
            v["invoke"]["from"],
            serde_json::json!(["checkout", "tenant:partner"])
        );
        assert_eq!(v["config"]["greeting"], "hi");
    }

    #[test]
    fn first_difference_names_the_field() {
        let signed = manifest("[permissions]\nkv = [\"orders:read\"]\n").signed_content();
        let same = manifest("[permissions]\nkv = [\"orders:read\"]\n").signed_content();
        assert_eq!(first_difference(signed.as_value(), same.as_value()), None);

        let wider = manifest("[permissions]\nkv = [\"secrets:read-write\"]\n").signed_content();
        let d = first_difference(signed.as_value(), wider.as_value()).unwrap();
        assert_eq!(d.field, "permissions.kv");
        assert_eq!(
            d.to_string(),
            r#"`permissions.kv` differs from the signed manifest: signed ["orders:read"], submitted ["secrets:read-write"]"#
        );

        let renamed = Manifest::from_toml(
            "name = \"payments\"\ntenant = \"acme\"\ncomponent = \"hello.wasm\"\nroutes = [\"/b\", \"/a\"]\n[permissions]\nkv = [\"orders:read\"]\n",
        )
        .unwrap()
        .signed_content();
        assert_eq!(
            first_difference(signed.as_value(), renamed.as_value())
                .unwrap()
                .field,
            "name"
        );

        let limits = manifest("[permissions]\nkv = [\"orders:read\"]\n[limits]\nmemory_mb = 512\n")
            .signed_content();
        let d = first_difference(signed.as_value(), limits.as_value()).unwrap();
        assert_eq!(d.field, "limits.memory_mb");
        assert_eq!((d.signed.as_str(), d.submitted.as_str()), ("64", "512"));
    }

    #[test]
    fn config_values_are_never_quoted() {
        let signed = manifest("[config]\ntoken = \"s3cr3t\"\n").signed_content();
        let other = manifest("[config]\ntoken = \"attacker\"\n").signed_content();
        let d = first_difference(signed.as_value(), other.as_value()).unwrap();
        assert_eq!(d.field, "config.token");
        assert!(!d.to_string().contains("s3cr3t") && !d.to_string().contains("attacker"));

        let added = manifest("[config]\ntoken = \"s3cr3t\"\nextra = \"x\"\n").signed_content();
        let d = first_difference(signed.as_value(), added.as_value()).unwrap();
        assert_eq!(
            (d.field.as_str(), d.signed.as_str(), d.submitted.as_str()),
            ("config.extra", "(absent)", "(not shown)")
        );
    }

    #[test]
    fn layer_imports_are_quoted_in_the_path() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let other = format!("sha256:{}", "b".repeat(64));
        let a = manifest(&format!(
            "[layers]\n\"zerofn:greet/greeter\" = \"{digest}\"\n"
        ));
        let b = manifest(&format!(
            "[layers]\n\"zerofn:greet/greeter\" = \"{other}\"\n"
        ));
        let d =
            first_difference(a.signed_content().as_value(), b.signed_content().as_value()).unwrap();
        assert_eq!(d.field, "layers.\"zerofn:greet/greeter\"");
    }

    #[test]
    fn schemas_are_signed_by_digest() {
        let a = manifest("[schema]\nbody = '{\"type\":\"object\",\"required\":[\"id\"]}'\n");
        // The same schema written as a TOML table, keys in another order: same meaning,
        // same signed form.
        let b = manifest("[schema.body]\nrequired = [\"id\"]\ntype = \"object\"\n");
        assert_eq!(a.signed_content(), b.signed_content());
        let digest = a.signed_content().as_value()["schema"]["body"].clone();
        assert!(digest.as_str().unwrap().starts_with("sha256:"));
        // A swapped schema is a difference naming the key.
        let c = manifest("[schema]\nbody = '{\"type\":\"object\"}'\n");
        let d =
            first_difference(a.signed_content().as_value(), c.signed_content().as_value()).unwrap();
        assert_eq!(d.field, "schema.body");
        // Removing it is one too.
        let d = first_difference(
            a.signed_content().as_value(),
            manifest("").signed_content().as_value(),
        )
        .unwrap();
        assert_eq!(
            (d.field.as_str(), d.submitted.as_str()),
            ("schema", "(absent)")
        );
        // Without `[schema]`, nothing is added (older signatures still verify).
        assert!(manifest("")
            .signed_content()
            .as_value()
            .get("schema")
            .is_none());
    }

    #[test]
    fn canonical_bytes_sort_nested_keys() {
        let v = serde_json::json!({"b": {"z": 1, "a": [ {"y": 2, "x": 1} ]}, "a": "é\n"});
        assert_eq!(
            String::from_utf8(canonical_bytes(&v)).unwrap(),
            "{\"a\":\"é\\n\",\"b\":{\"a\":[{\"x\":1,\"y\":2}],\"z\":1}}"
        );
    }
}
