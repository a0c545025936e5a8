//! The function manifest, `zerofn.toml`:
//!
//! ```toml
//! name = "hello"              # FunctionName: a DNS label
//! tenant = "acme"             # TenantName: a DNS label
//! component = "hello.wasm"    # a plain file name beside the manifest
//! routes = ["/hello", "/api/..."]
//! version = 3                 # optional: the version `zerofn sign` signs (1..=2^53-1)
//!
//! [limits]                    # optional, as is each key
//! memory_mb = 64              # 1..=4096
//! timeout_ms = 1000           # 1..=300000
//! max_body_kb = 1024          # 0..=65536
//! rate_per_second = 50        # 1..=1000000 requests per second, none by default
//! burst = 100                 # 1..=1000000 (default: rate_per_second); needs a rate
//! max_concurrency = 8         # 1..=100000 invocations in flight, none by default
//!
//! [layers]                    # optional: shared library components, pinned by digest
//! "zerofn:greet/greeter" = "sha256:<64 hex>"   # the import the layer satisfies
//!
//! [permissions]               # optional: what the function may do (nothing by default)
//! kv = ["orders:read", "cache:read-write"]     # key-value buckets of its tenant
//! buckets = ["uploads:read-write"]            # object storage buckets of its tenant
//! call = ["billing"]          # functions of the same tenant it may call
//!
//! [invoke]                    # optional: who may invoke it (default: ["public"])
//! from = ["public", "checkout", "tenant:partner", "event:orders", "jwt:corp", "mtls:partners", "apikey"]
//! pass_authorization = false  # optional: whether the function sees `Authorization`
//!
//! [config]                    # optional: runtime configuration (wasi:config)
//! greeting = "hello"
//!
//! [[triggers]]                # optional: event sources that invoke the function
//! queue = "orders"            # a durable queue of the tenant (`zerofn queue create`)
//! max_concurrency = 4         # 1..=1000 deliveries in flight (default 4)
//! schema = '''{"type": "object", "required": ["id"]}'''  # optional: what each event's
//!                             # data must match; an event that does not is dead-lettered
//!
//! [[triggers]]                # or a key-value bucket's changes (`kv-streams.md`)
//! kv = "carts"                # a bucket of the tenant; max_concurrency as for queues
//!
//! [[triggers]]                # or a schedule (exactly one of `queue`, `kv`, `bucket`, `schedule`)
//! name = "nightly"            # a DNS label, unique among the function's schedules
//! schedule = "0 30 2 * * *"   # cron: 6 fields (seconds first) or 5 (at second 0)
//! timezone = "Europe/Berlin"  # optional: an IANA time zone (default "UTC")
//! missed = "skip"             # optional: "skip" (default) or "run-once" after downtime
//!
//! [[triggers]]                # or a bucket's object events (`bucket_trigger.rs`)
//! bucket = "uploads"          # a bucket of the tenant (`zerofn object put`)
//! events = ["created"]        # optional: "created", "deleted" (default both)
//! prefix = "incoming/"        # optional: only keys starting (`suffix`: ending) with this
//!
//! [schema]                    # optional: JSON Schemas (draft 2020-12) requests must match
//! body = '''{"type": "object", "required": ["id"]}'''   # JSON text, or a TOML table:
//! [schema.query]              # `[schema.<part>]` written as TOML (no `null` in TOML)
//! type = "object"
//!
//! [egress]                    # optional: outbound HTTP destinations (none by default)
//! timeout_ms = 10000          # optional own limits, each only lowering the platform's:
//! max_response_bytes = 1048576 #  connect_timeout_ms, first_byte_timeout_ms, timeout_ms,
//! max_connections = 4         #   max_response_bytes, max_connections
//! allow = [
//!   "https://api.stripe.com",                   # scheme, host, port by scheme
//!   "https://*.s3.amazonaws.com:443",           # `*.`: exactly one more label
//!   { url = "http://inventory.internal:8080/v1/", methods = ["GET"] },
//!   { url = "http://db.internal:5432", allow_ranges = ["10.0.0.0/8"] },
//! ]
//! ```
//!
//! A trigger is also an invoke grant: it adds `event:queue/<name>` to `[invoke] from`
//! (`event:kv/<bucket>` for a kv trigger, `event:bucket/<name>` for a bucket's), or for a schedule `event:schedule/<function>-<name>` (the principal
//! `Zerofn::EventSource::"<tenant>/schedule/<function>-<name>"`; `<function>-<name>` must
//! be at most 63 characters). With triggers and no `[invoke]`, nobody else may invoke the
//! function (no `public`).
//!
//! A schedule's expression and time zone are parsed with the manifest ([`Schedule`]): an
//! invalid expression, an unknown zone, one that never fires or fires more often than once
//! a second ([`crate::MIN_SCHEDULE_INTERVAL_MS`]) is refused naming the trigger.
//!
//! `[permissions]`, `[invoke]` and `[egress]` compile to Cedar policies
//! (`zerofn_policy::permissions`); declaring `[config]` lets the function
//! read those values and nothing else.
//!
//! Each `[layers]` key is an interface the component imports
//! (`namespace:package/interface`, optionally `@version`), each value the digest of a
//! published layer that exports it. Admission plugs the layer's export into that import;
//! publishing another version of the layer changes nothing until the manifest pins it.
//!
//! `[schema]` keys are `body`, `query`, `headers` and `path`; each schema is compiled when
//! the manifest is parsed (`zerofn_validation`), so a manifest with an invalid one is
//! refused naming the key. Schemas are inline, part of the manifest, so the signed form
//! commits to them (by digest, see [`crate::SignedContent`]).
//!
//! Unknown keys are refused (a misspelt `[limits]` key must not silently fall back to a
//! default), and every value is parsed into a type that holds its rule.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use zerofn_egress::{EgressRule, FunctionEgressLimits};
use zerofn_policy::{InvokeSource, KvGrant, Permissions};
use zerofn_validation::{CompiledSchema, RequestPart, RequestSchemas, SchemaError};

use crate::bucket_trigger::BucketTrigger;
use crate::error::ManifestError;
use crate::schedule::{Missed, Schedule, DEFAULT_TIMEZONE};
use zerofn_types::excerpt;
use zerofn_types::{Digest, FunctionName, TenantName};

/// Largest manifest read; real ones are a few hundred bytes.
const MAX_MANIFEST_BYTES: usize = 64 * 1024;

/// A parsed, checked `zerofn.toml`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Manifest {
    /// The function's name, unique within its tenant.
    pub name: FunctionName,
    /// The tenant that owns the function; its keys must sign the component.
    pub tenant: TenantName,
    /// The component's file name (plain, relative, ending in `.wasm`).
    pub component: String,
    /// The HTTP routes the function serves (at least one, no duplicates).
    pub routes: Vec<Route>,
    /// Resource limits.
    pub limits: Limits,
    /// Layers the component links, by the import each satisfies (empty when none).
    pub layers: BTreeMap<InterfaceName, Digest>,
    /// Declared permissions and invokers, compiled to Cedar at deploy.
    #[serde(serialize_with = "serialize_permissions")]
    pub permissions: Permissions,
    /// Runtime configuration values (`[config]`), readable through
    /// `wasi:config` by this function only.
    pub config: BTreeMap<String, String>,
    /// JSON Schemas requests must match before the function runs (`[schema]`; empty when
    /// none), compiled.
    #[serde(skip_serializing_if = "RequestSchemas::is_empty")]
    pub schema: RequestSchemas,
    /// The version the signer gives this manifest (`version = N`), if written; the signed
    /// statement carries the version that counts (see [`crate::SignedContent`]).
    pub version: Option<u64>,
    /// The function's own outbound limits (`[egress]` `connect_timeout_ms`,
    /// `first_byte_timeout_ms`, `timeout_ms`, `max_response_bytes`,
    /// `max_connections`); each only lowers the platform's.
    #[serde(skip_serializing_if = "FunctionEgressLimits::is_empty")]
    pub egress_limits: FunctionEgressLimits,
    /// Event sources bound to the function (`[[triggers]]`), in the order written.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<Trigger>,
}

/// An event source bound to a function (`[[triggers]]`): each of its events
/// invokes the function, one per invocation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Trigger {
    /// `queue = "..."`: the messages of a durable queue of the tenant.
    Queue(QueueTrigger),
    /// `schedule = "..."`: the fire times of a cron expression.
    Schedule(ScheduleTrigger),
    /// `kv = "..."`: the changes of a key-value bucket of the tenant (`kv_trigger.rs`).
    Kv(crate::kv_trigger::KvTrigger),
    /// `bucket = "..."`: the object events of a bucket of the tenant.
    Bucket(BucketTrigger),
}

/// A queue bound to a function.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct QueueTrigger {
    /// The tenant's queue (a DNS label).
    pub queue: String,
    /// Most deliveries in flight at once.
    pub max_concurrency: u32,
    /// The JSON Schema every event's data must match (`schema` in the
    /// trigger); an event that does not is dead-lettered without running
    /// code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<CompiledSchema>,
}

/// A schedule bound to a function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleTrigger {
    /// The schedule's name (a DNS label), unique among the function's schedules.
    pub name: String,
    /// The cron expression in its time zone.
    pub schedule: Schedule,
    /// What happens to fire times missed while the platform was down.
    pub missed: Missed,
}

impl serde::Serialize for ScheduleTrigger {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(4))?;
        map.serialize_entry("name", &self.name)?;
        map.serialize_entry("schedule", self.schedule.expression())?;
        map.serialize_entry("timezone", self.schedule.timezone())?;
        map.serialize_entry("missed", self.missed.as_str())?;
        map.end()
    }
}

impl Trigger {
    /// The event source's name in its tenant (`<kind>/<name>`), the one the trigger's
    /// invoke grant names: `queue/<queue>`, or `schedule/<function>-<name>` (a tenant's
    /// functions may each have a schedule called `nightly`).
    pub fn source(&self, function: &str) -> String {
        match self {
            Trigger::Queue(q) => format!("queue/{}", q.queue),
            Trigger::Schedule(s) => format!("schedule/{function}-{}", s.name),
            Trigger::Kv(k) => format!("kv/{}", k.bucket),
            Trigger::Bucket(b) => format!("bucket/{}", b.bucket),
        }
    }
}

/// Most `[[triggers]]` of one function.
pub const MAX_TRIGGERS: usize = 16;
/// `max_concurrency` of a trigger that does not say.
pub const DEFAULT_TRIGGER_CONCURRENCY: u32 = 4;
/// Largest `max_concurrency` of a trigger.
pub const MAX_TRIGGER_CONCURRENCY: u32 = 1_000;

/// The largest manifest version: the largest integer every JSON reader holds exactly
/// (2^53 - 1), since the version travels in a signed JSON statement.
pub const MAX_VERSION: u64 = (1 << 53) - 1;

/// Most `[config]` entries.
pub const MAX_CONFIG_ENTRIES: usize = 64;
/// Longest `[config]` value, in bytes.
pub const MAX_CONFIG_VALUE: usize = 4096;
/// Most grants in one `[permissions]` or `[invoke]` list.
pub const MAX_GRANTS: usize = 64;
/// Most `[egress] allow` entries.
pub const MAX_EGRESS_RULES: usize = zerofn_egress::MAX_RULES;

fn serialize_permissions<S: serde::Serializer>(
    p: &Permissions,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let entries = 5 + usize::from(!p.publish.is_empty()) + usize::from(!p.buckets.is_empty());
    let mut map = serializer.serialize_map(Some(entries))?;
    let kv: Vec<String> = p.kv.iter().map(ToString::to_string).collect();
    map.serialize_entry("kv", &kv)?;
    map.serialize_entry("call", &p.call)?;
    map.serialize_entry("config", &p.config)?;
    let from: Vec<String> = p.invoke_from.iter().map(ToString::to_string).collect();
    map.serialize_entry("invoke_from", &from)?;
    let egress: Vec<String> = p.egress.iter().map(ToString::to_string).collect();
    map.serialize_entry("egress", &egress)?;
    if !p.publish.is_empty() {
        map.serialize_entry("publish", &p.publish)?;
    }
    if !p.buckets.is_empty() {
        let buckets: Vec<String> = p.buckets.iter().map(ToString::to_string).collect();
        map.serialize_entry("buckets", &buckets)?;
    }
    map.end()
}

/// Most layers one function may pin.
pub const MAX_LAYERS: usize = 16;

/// Per-invocation resource limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Linear memory cap in MiB, 1..=4096 (default 64).
    pub memory_mb: u32,
    /// Wall-clock deadline in milliseconds, 1..=300000 (default 1000).
    pub timeout_ms: u32,
    /// Request body cap in KiB, 0..=65536 (default 1024).
    pub max_body_kb: u32,
    /// Invocations per second from the gateway, 1..=1000000 (default: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<u32>,
    /// Invocations allowed at once above the rate, 1..=1000000 (default:
    /// `rate_per_second`); only with a rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Invocations in flight at once, 1..=100000 (default: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
}

/// Largest `rate_per_second` and `burst` (of a function or a tenant).
pub const MAX_RATE: u32 = 1_000_000;
/// Largest `max_concurrency` (of a function or a tenant).
pub const MAX_CONCURRENCY: u32 = 100_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: 64,
            timeout_ms: 1000,
            max_body_kb: 1024,
            rate_per_second: None,
            burst: None,
            max_concurrency: None,
        }
    }
}

impl Manifest {
    /// Parses and checks a manifest. TOML errors carry the line and column and name the key
    /// (`unknown field `colour``, `missing field `routes``); value errors name the key and the
    /// allowed values.
    pub fn from_toml(text: &str) -> Result<Manifest, ManifestError> {
        if text.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge {
                size: text.len(),
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let raw: RawManifest = toml::from_str(text).map_err(ManifestError::Toml)?;
        let name = FunctionName::parse(&raw.name)?;
        let tenant = TenantName::parse(&raw.tenant)?;
        check_component(&raw.component)?;
        if raw.routes.is_empty() {
            return Err(ManifestError::NoRoutes);
        }
        let mut seen = HashSet::new();
        let mut routes = Vec::with_capacity(raw.routes.len());
        for text in &raw.routes {
            let route = Route::parse(text)?;
            if !seen.insert(route.as_str().to_owned()) {
                return Err(ManifestError::DuplicateRoute {
                    route: excerpt(route.as_str()),
                });
            }
            routes.push(route);
        }
        let limits = raw.limits.unwrap_or_default().check()?;
        let raw_layers = raw.layers.unwrap_or_default();
        if raw_layers.len() > MAX_LAYERS {
            return Err(ManifestError::TooManyLayers {
                count: raw_layers.len(),
                limit: MAX_LAYERS,
            });
        }
        let mut layers = BTreeMap::new();
        for (import, digest) in &raw_layers {
            let import = InterfaceName::parse(import)?;
            let digest = Digest::parse(digest).map_err(|_| ManifestError::InvalidLayerDigest {
                import: import.as_str().to_owned(),
                digest: excerpt(digest),
            })?;
            layers.insert(import, digest);
        }
        let config = check_config(raw.config.unwrap_or_default())?;
        let triggers = check_triggers(raw.triggers.unwrap_or_default(), name.as_str())?;
        let mut permissions = check_permissions(
            raw.permissions,
            raw.invoke,
            !config.is_empty(),
            !triggers.is_empty(),
        )?;
        for trigger in &triggers {
            // A trigger is an invoke grant for its source, and only for it.
            let source = InvokeSource::parse(&format!("event:{}", trigger.source(name.as_str())))
                .map_err(|problem| ManifestError::Permission {
                key: "triggers",
                problem: problem.to_string(),
            })?;
            permissions.invoke_from.insert(source);
        }
        let egress_limits = check_egress_limits(raw.egress.as_ref())?;
        permissions.egress = check_egress(raw.egress)?;
        let version = raw.version.map(check_version).transpose()?;
        let schema = check_schema(raw.schema)?;
        Ok(Manifest {
            name,
            tenant,
            component: raw.component,
            routes,
            limits,
            layers,
            permissions,
            config,
            schema,
            version,
            egress_limits,
            triggers,
        })
    }

    /// The file name of the component's Sigstore bundle: `<component>.sigstore.json`.
    pub fn bundle_file_name(&self) -> String {
        format!("{}.sigstore.json", self.component)
    }
}

/// The TOML as written; checked into a [`Manifest`] by [`Manifest::from_toml`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    name: String,
    tenant: String,
    component: String,
    routes: Vec<String>,
    limits: Option<RawLimits>,
    layers: Option<BTreeMap<String, String>>,
    permissions: Option<RawPermissions>,
    invoke: Option<RawInvoke>,
    config: Option<BTreeMap<String, String>>,
    egress: Option<RawEgress>,
    schema: Option<BTreeMap<String, toml::Value>>,
    version: Option<i64>,
    triggers: Option<Vec<RawTrigger>>,
}

/// What every refusal of a trigger naming two sources says.
pub(crate) const ONE_SOURCE: &str =
    "a trigger binds one of `queue`, `kv`, `bucket` or `schedule`: write one trigger each";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrigger {
    pub(crate) kv: Option<String>,
    pub(crate) queue: Option<String>,
    pub(crate) bucket: Option<String>,
    pub(crate) events: Option<Vec<String>>,
    pub(crate) prefix: Option<String>,
    pub(crate) suffix: Option<String>,
    pub(crate) max_attempts: Option<i64>,
    pub(crate) dead_letter: Option<String>,
    pub(crate) max_concurrency: Option<i64>,
    pub(crate) schema: Option<toml::Value>,
    pub(crate) schedule: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) timezone: Option<String>,
    pub(crate) missed: Option<String>,
}

/// Reads `[[triggers]]`: each names a queue (a DNS label) once, with an
/// optional `max_concurrency` in range, or is a named schedule
/// ([`check_schedule`]).
fn check_triggers(raw: Vec<RawTrigger>, function: &str) -> Result<Vec<Trigger>, ManifestError> {
    let bad = |problem: String| ManifestError::Permission {
        key: "triggers",
        problem,
    };
    if raw.len() > MAX_TRIGGERS {
        return Err(bad(format!(
            "{} entries, more than the {MAX_TRIGGERS} allowed",
            raw.len()
        )));
    }
    let mut out: Vec<Trigger> = Vec::with_capacity(raw.len());
    for mut t in raw {
        if let (Some(kv), Some(bucket)) = (&t.kv, &t.bucket) {
            return Err(bad(format!(
                "one trigger has both `kv = \"{}\"` and `bucket = \"{}\"`; {ONE_SOURCE}",
                excerpt(kv),
                excerpt(bucket)
            )));
        }
        if let Some(bucket) = t.bucket.take() {
            let trigger = check_bucket_trigger(bucket, t)?;
            if out
                .iter()
                .any(|o| matches!(o, Trigger::Bucket(b) if b.bucket == trigger.bucket))
            {
                return Err(bad(format!(
                    "bucket `{}` is bound twice; use one trigger (its `events` can list both kinds)",
                    trigger.bucket
                )));
            }
            out.push(Trigger::Bucket(trigger));
            continue;
        }
        for (key, given) in [
            ("events", t.events.is_some()),
            ("prefix", t.prefix.is_some()),
            ("suffix", t.suffix.is_some()),
            ("max_attempts", t.max_attempts.is_some()),
            ("dead_letter", t.dead_letter.is_some()),
        ] {
            if given {
                return Err(bad(format!(
                    "`{key}` belongs to a bucket trigger; add `bucket = \"<name>\"` or remove it"
                )));
            }
        }
        if t.kv.is_some() {
            let kv = crate::kv_trigger::check_kv_trigger(t, &out)?;
            out.push(Trigger::Kv(kv));
            continue;
        }
        if t.schedule.is_some() {
            if let Some(queue) = &t.queue {
                return Err(bad(format!(
                    "the trigger of queue `{}` also has a `schedule`; {ONE_SOURCE}",
                    excerpt(queue)
                )));
            }
            let schedule = check_schedule(t, function)?;
            if out
                .iter()
                .any(|o| matches!(o, Trigger::Schedule(s) if s.name == schedule.name))
            {
                return Err(bad(format!(
                    "schedule `{}` is named twice; give each schedule its own `name`",
                    schedule.name
                )));
            }
            out.push(Trigger::Schedule(schedule));
            continue;
        }
        for (key, given) in [
            ("name", t.name.is_some()),
            ("timezone", t.timezone.is_some()),
            ("missed", t.missed.is_some()),
        ] {
            if given {
                return Err(bad(format!(
                    "`{key}` belongs to a schedule trigger; add `schedule = \"<cron>\"` or remove it"
                )));
            }
        }
        let queue = t.queue.ok_or_else(|| {
            bad("each trigger needs `queue = \"<name>\"`, `kv = \"<bucket>\"` or `schedule = \"<cron>\"`".into())
        })?;
        zerofn_policy::permissions::valid_bucket_name(&queue).map_err(|why| {
            bad(format!(
                "queue `{}` is not a valid name: it {why}",
                excerpt(&queue)
            ))
        })?;
        let max_concurrency = match t.max_concurrency {
            None => DEFAULT_TRIGGER_CONCURRENCY,
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_TRIGGER_CONCURRENCY).contains(n))
                .ok_or_else(|| {
                    bad(format!(
                        "`max_concurrency` = {n} is out of range; use 1 to {MAX_TRIGGER_CONCURRENCY}"
                    ))
                })?,
        };
        if out
            .iter()
            .any(|o| matches!(o, Trigger::Queue(q) if q.queue == queue))
        {
            return Err(bad(format!(
                "queue `{queue}` is bound twice; use one trigger"
            )));
        }
        let schema = t
            .schema
            .as_ref()
            .map(|value| schema_text(value).and_then(|text| CompiledSchema::compile(&text)))
            .transpose()
            .map_err(|e| bad(format!("the schema of queue `{queue}` is invalid: {e}")))?;
        out.push(Trigger::Queue(QueueTrigger {
            queue,
            max_concurrency,
            schema,
        }));
    }
    Ok(out)
}

/// Reads a bucket trigger: the bucket (a DNS label), its own keys
/// ([`crate::bucket_trigger`]), `max_concurrency` and `schema` as a queue
/// trigger's. Errors name the bucket.
fn check_bucket_trigger(bucket: String, t: RawTrigger) -> Result<BucketTrigger, ManifestError> {
    let bad = |problem: String| ManifestError::Permission {
        key: "triggers",
        problem,
    };
    zerofn_policy::permissions::valid_bucket_name(&bucket).map_err(|why| {
        bad(format!(
            "bucket `{}` is not a valid name: it {why}",
            excerpt(&bucket)
        ))
    })?;
    for (key, given) in [
        ("queue", t.queue.is_some()),
        ("schedule", t.schedule.is_some()),
        ("name", t.name.is_some()),
        ("timezone", t.timezone.is_some()),
        ("missed", t.missed.is_some()),
    ] {
        if given {
            return Err(bad(format!(
                "the trigger of bucket `{bucket}` also has `{key}`; {ONE_SOURCE}"
            )));
        }
    }
    let keys = crate::bucket_trigger::check_bucket_keys(
        &bucket,
        crate::bucket_trigger::RawBucketKeys {
            events: t.events,
            prefix: t.prefix,
            suffix: t.suffix,
            max_attempts: t.max_attempts,
            dead_letter: t.dead_letter,
        },
    )
    .map_err(bad)?;
    let max_concurrency = match t.max_concurrency {
        None => DEFAULT_TRIGGER_CONCURRENCY,
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_TRIGGER_CONCURRENCY).contains(n))
            .ok_or_else(|| {
                bad(format!(
                    "bucket `{bucket}`: `max_concurrency` = {n} is out of range; use 1 to {MAX_TRIGGER_CONCURRENCY}"
                ))
            })?,
    };
    let schema = t
        .schema
        .as_ref()
        .map(|value| schema_text(value).and_then(|text| CompiledSchema::compile(&text)))
        .transpose()
        .map_err(|e| bad(format!("the schema of bucket `{bucket}` is invalid: {e}")))?;
    Ok(BucketTrigger {
        bucket,
        created: keys.created,
        deleted: keys.deleted,
        prefix: keys.prefix,
        suffix: keys.suffix,
        max_concurrency,
        max_attempts: keys.max_attempts,
        dead_letter: keys.dead_letter,
        schema,
    })
}

/// A schema's JSON text, written either as a JSON string or as a TOML table.
fn schema_text(value: &toml::Value) -> Result<String, SchemaError> {
    match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Table(_) => serde_json::to_string(value).map_err(|e| SchemaError::NotJson {
            detail: e.to_string(),
        }),
        _ => Err(SchemaError::NotJson {
            detail: "write the schema as a JSON string or a TOML table".to_owned(),
        }),
    }
}

/// `max_concurrency` of a trigger: in range, or the default.
pub(crate) fn trigger_concurrency(n: Option<i64>) -> Result<u32, ManifestError> {
    match n {
        None => Ok(DEFAULT_TRIGGER_CONCURRENCY),
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_TRIGGER_CONCURRENCY).contains(n))
            .ok_or_else(|| ManifestError::Permission {
                key: "triggers",
                problem: format!(
                    "`max_concurrency` = {n} is out of range; use 1 to {MAX_TRIGGER_CONCURRENCY}"
                ),
            }),
    }
}

/// Reads a schedule trigger: a `name` (a DNS label that, after `<function>-`, still is
/// one), the cron expression in its time zone ([`Schedule::parse`]) and `missed`.
/// Errors name the trigger.
fn check_schedule(t: RawTrigger, function: &str) -> Result<ScheduleTrigger, ManifestError> {
    let bad = |problem: String| ManifestError::Permission {
        key: "triggers",
        problem,
    };
    let expression = t.schedule.unwrap_or_default();
    let Some(name) = t.name else {
        return Err(bad(format!(
            "the schedule `{}` needs a `name` (a DNS label, such as `nightly`)",
            excerpt(&expression)
        )));
    };
    zerofn_policy::permissions::valid_bucket_name(&name).map_err(|why| {
        bad(format!(
            "schedule name `{}` is not a valid name: it {why}",
            excerpt(&name)
        ))
    })?;
    let source = format!("{function}-{name}");
    if source.len() > 63 {
        return Err(bad(format!(
            "schedule `{name}`: its source name `{source}` (`<function>-<name>`) is longer than 63 characters; use a shorter name"
        )));
    }
    if t.schema.is_some() {
        return Err(bad(format!(
            "schedule `{name}`: `schema` is for queue triggers; a schedule's events are the platform's own"
        )));
    }
    if t.max_concurrency.is_some() {
        return Err(bad(format!(
            "schedule `{name}`: `max_concurrency` is for queues; a schedule runs one at a time"
        )));
    }
    let zone = t.timezone.as_deref().unwrap_or(DEFAULT_TIMEZONE);
    let schedule =
        Schedule::parse(&expression, zone).map_err(|e| bad(format!("schedule `{name}`: {e}")))?;
    let missed = match t.missed.as_deref() {
        None => Missed::default(),
        Some(text) => Missed::parse(text).ok_or_else(|| {
            bad(format!(
                "schedule `{name}`: `missed` = `{}` is not known; use \"skip\" or \"run-once\"",
                excerpt(text)
            ))
        })?,
    };
    Ok(ScheduleTrigger {
        name,
        schedule,
        missed,
    })
}

/// Reads and compiles `[schema]`: each key a request part, each value the schema as JSON
/// text or as a TOML table.
fn check_schema(
    raw: Option<BTreeMap<String, toml::Value>>,
) -> Result<RequestSchemas, ManifestError> {
    let Some(raw) = raw else {
        return Ok(RequestSchemas::default());
    };
    let mut sources = Vec::with_capacity(raw.len());
    for (key, value) in &raw {
        let Some(part) = RequestPart::from_manifest_key(key) else {
            return Err(ManifestError::UnknownSchemaPart { key: excerpt(key) });
        };
        let text = schema_text(value).map_err(|source| ManifestError::InvalidSchema {
            part: part.as_str(),
            source,
        })?;
        sources.push((part, text));
    }
    RequestSchemas::compile(sources.iter().map(|(p, t)| (*p, t.as_str()))).map_err(
        |(part, source)| ManifestError::InvalidSchema {
            part: part.as_str(),
            source,
        },
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEgress {
    #[serde(default)]
    allow: Vec<toml::Value>,
    connect_timeout_ms: Option<i64>,
    first_byte_timeout_ms: Option<i64>,
    timeout_ms: Option<i64>,
    max_response_bytes: Option<i64>,
    max_connections: Option<i64>,
}

/// Longest egress timeout a manifest may set (5 minutes).
pub const MAX_EGRESS_TIMEOUT_MS: u64 = 300_000;
/// Largest egress response a manifest may allow (1 GiB).
pub const MAX_EGRESS_RESPONSE_BYTES: u64 = 1 << 30;
/// Most concurrent outbound connections a manifest may allow.
pub const MAX_EGRESS_CONNECTIONS: u64 = 1024;

/// Reads the function's own egress limits from `[egress]`: each in range,
/// each only lowering the platform's limit at run time.
fn check_egress_limits(raw: Option<&RawEgress>) -> Result<FunctionEgressLimits, ManifestError> {
    let Some(raw) = raw else {
        return Ok(FunctionEgressLimits::default());
    };
    let ranged = |key: &'static str, value: Option<i64>, max: u64| {
        value
            .map(|v| {
                u64::try_from(v)
                    .ok()
                    .filter(|v| (1..=max).contains(v))
                    .ok_or_else(|| ManifestError::Permission {
                        key: "egress",
                        problem: format!("`{key}` = {v} is out of range; use 1 to {max}"),
                    })
            })
            .transpose()
    };
    let ms = |key, value| {
        ranged(key, value, MAX_EGRESS_TIMEOUT_MS).map(|v| v.map(Duration::from_millis))
    };
    let count =
        |key, value, max| ranged(key, value, max).map(|v| v.and_then(|v| usize::try_from(v).ok()));
    Ok(FunctionEgressLimits {
        connect: ms("connect_timeout_ms", raw.connect_timeout_ms)?,
        first_byte: ms("first_byte_timeout_ms", raw.first_byte_timeout_ms)?,
        total: ms("timeout_ms", raw.timeout_ms)?,
        response_bytes: count(
            "max_response_bytes",
            raw.max_response_bytes,
            MAX_EGRESS_RESPONSE_BYTES,
        )?,
        concurrent: count(
            "max_connections",
            raw.max_connections,
            MAX_EGRESS_CONNECTIONS,
        )?,
    })
}

/// Reads `[egress] allow`: each entry a URL string or a table with `url`
/// and optional `methods` and `allow_ranges`; any other key is refused.
fn check_egress(raw: Option<RawEgress>) -> Result<Vec<EgressRule>, ManifestError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    parse_egress_entries(&raw.allow, "egress.allow")
}

/// Reads a list of egress entries (a manifest's `[egress] allow`, a zone's `egress`
/// ceiling), refusing with `key` named: one syntax for both.
pub(crate) fn parse_egress_entries(
    entries: &[toml::Value],
    key: &'static str,
) -> Result<Vec<EgressRule>, ManifestError> {
    let bad = |problem: String| ManifestError::Permission { key, problem };
    if entries.len() > MAX_EGRESS_RULES {
        return Err(bad(format!(
            "{} entries, more than the {MAX_EGRESS_RULES} allowed",
            entries.len()
        )));
    }
    let strings = |v: &toml::Value, key: &str| -> Result<Vec<String>, ManifestError> {
        v.as_array()
            .and_then(|a| a.iter().map(|x| x.as_str().map(str::to_owned)).collect())
            .ok_or_else(|| bad(format!("`{key}` must be a list of strings")))
    };
    let mut rules: Vec<EgressRule> = Vec::new();
    for entry in entries {
        let (url, methods, ranges) = match entry {
            toml::Value::String(url) => (url.clone(), Vec::new(), Vec::new()),
            toml::Value::Table(t) => {
                if let Some(k) = t
                    .keys()
                    .find(|k| !matches!(k.as_str(), "url" | "methods" | "allow_ranges"))
                {
                    return Err(bad(format!(
                        "unknown key `{}` in an entry; expected `url`, `methods` or `allow_ranges`",
                        excerpt(k)
                    )));
                }
                let url = t
                    .get("url")
                    .and_then(toml::Value::as_str)
                    .ok_or_else(|| bad("an entry table needs `url = \"...\"`".into()))?;
                let methods = t
                    .get("methods")
                    .map(|v| strings(v, "methods"))
                    .transpose()?;
                let ranges = t
                    .get("allow_ranges")
                    .map(|v| strings(v, "allow_ranges"))
                    .transpose()?;
                (
                    url.to_owned(),
                    methods.unwrap_or_default(),
                    ranges.unwrap_or_default(),
                )
            }
            _ => {
                return Err(bad(
                    "each entry is a URL string or a table with `url`".into()
                ))
            }
        };
        if methods.len() > 16 || ranges.len() > 16 {
            return Err(bad("an entry lists at most 16 methods and 16 ranges".into()));
        }
        let rule = EgressRule::parse(&url, &methods, &ranges).map_err(|e| bad(e.to_string()))?;
        if rules.iter().any(|r| r.url() == rule.url()) {
            return Err(bad(format!(
                "`{}` is listed twice; merge its methods and ranges into one entry",
                rule.url()
            )));
        }
        rules.push(rule);
    }
    Ok(rules)
}

/// Checks a manifest or statement version: 1 to [`MAX_VERSION`].
pub fn check_version(version: i64) -> Result<u64, ManifestError> {
    u64::try_from(version)
        .ok()
        .filter(|v| (1..=MAX_VERSION).contains(v))
        .ok_or(ManifestError::VersionOutOfRange { value: version })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPermissions {
    kv: Option<Vec<String>>,
    call: Option<Vec<String>>,
    /// Queues of the tenant the function may publish to.
    publish: Option<Vec<String>>,
    /// Object storage buckets of the tenant it may read or write (`name:mode`).
    buckets: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInvoke {
    from: Vec<String>,
    /// Whether the function sees the caller's `Authorization` header.
    #[serde(default)]
    pass_authorization: bool,
}

fn public_only() -> Vec<String> {
    vec!["public".to_owned()]
}

fn too_many(key: &'static str, count: usize) -> Result<(), ManifestError> {
    if count > MAX_GRANTS {
        return Err(ManifestError::Permission {
            key,
            problem: format!("{count} entries, more than the {MAX_GRANTS} allowed"),
        });
    }
    Ok(())
}

fn check_permissions(
    raw: Option<RawPermissions>,
    invoke: Option<RawInvoke>,
    config: bool,
    has_triggers: bool,
) -> Result<Permissions, ManifestError> {
    let raw = raw.unwrap_or_default();
    let mut p = Permissions {
        config,
        ..Permissions::default()
    };
    let kv = raw.kv.unwrap_or_default();
    too_many("permissions.kv", kv.len())?;
    for text in &kv {
        let grant = KvGrant::parse(text).map_err(|problem| ManifestError::Permission {
            key: "permissions.kv",
            problem: problem.to_string(),
        })?;
        if p.kv.iter().any(|g| g.bucket == grant.bucket) {
            return Err(ManifestError::Permission {
                key: "permissions.kv",
                problem: format!(
                    "bucket `{}` is listed twice; use one entry with read-write",
                    grant.bucket
                ),
            });
        }
        p.kv.insert(grant);
    }
    let call = raw.call.unwrap_or_default();
    too_many("permissions.call", call.len())?;
    for name in &call {
        let callee = FunctionName::parse(name).map_err(|_| ManifestError::Permission {
            key: "permissions.call",
            problem: format!(
                "`{}` is not a function name (a DNS label: a-z, 0-9, -)",
                excerpt(name)
            ),
        })?;
        p.call.insert(callee.as_str().to_owned());
    }
    let publish = raw.publish.unwrap_or_default();
    too_many("permissions.publish", publish.len())?;
    for name in &publish {
        zerofn_policy::permissions::valid_queue_name(name).map_err(|why| {
            ManifestError::Permission {
                key: "permissions.publish",
                problem: format!("queue `{}` {why}", excerpt(name)),
            }
        })?;
        if !p.publish.insert(name.clone()) {
            return Err(ManifestError::Permission {
                key: "permissions.publish",
                problem: format!("queue `{}` is listed twice", excerpt(name)),
            });
        }
    }
    let buckets = raw.buckets.unwrap_or_default();
    too_many("permissions.buckets", buckets.len())?;
    for text in &buckets {
        let grant = KvGrant::parse(text).map_err(|problem| ManifestError::Permission {
            key: "permissions.buckets",
            problem: problem.to_string(),
        })?;
        if p.buckets.iter().any(|g| g.bucket == grant.bucket) {
            return Err(ManifestError::Permission {
                key: "permissions.buckets",
                problem: format!(
                    "bucket `{}` is listed twice; use one entry with read-write",
                    grant.bucket
                ),
            });
        }
        p.buckets.insert(grant);
    }
    let (from, pass_authorization) = match invoke {
        Some(invoke) => (invoke.from, invoke.pass_authorization),
        // A function bound to event sources is invoked by them; the
        // public gets in only when `[invoke]` says so.
        None if has_triggers => (Vec::new(), false),
        None => (public_only(), false),
    };
    p.pass_authorization = pass_authorization;
    too_many("invoke.from", from.len())?;
    for text in &from {
        let source = InvokeSource::parse(text).map_err(|problem| ManifestError::Permission {
            key: "invoke.from",
            problem: problem.to_string(),
        })?;
        p.invoke_from.insert(source);
    }
    Ok(p)
}

fn check_config(raw: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ManifestError> {
    if raw.len() > MAX_CONFIG_ENTRIES {
        return Err(ManifestError::Permission {
            key: "config",
            problem: format!(
                "{} entries, more than the {MAX_CONFIG_ENTRIES} allowed",
                raw.len()
            ),
        });
    }
    for (key, value) in &raw {
        let ok = !key.is_empty()
            && key.len() <= 64
            && key.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
            });
        if !ok {
            return Err(ManifestError::Permission {
                key: "config",
                problem: format!(
                    "key `{}` is not valid (a-z, 0-9, _, - and ., at most 64)",
                    excerpt(key)
                ),
            });
        }
        if value.len() > MAX_CONFIG_VALUE {
            return Err(ManifestError::Permission {
                key: "config",
                problem: format!("the value of `{key}` is longer than {MAX_CONFIG_VALUE} bytes"),
            });
        }
    }
    Ok(raw)
}

/// Integers are read as `i64` (TOML's integer type) so an out-of-range value gets our
/// message naming the key and range, not serde's.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory_mb: Option<i64>,
    timeout_ms: Option<i64>,
    max_body_kb: Option<i64>,
    rate_per_second: Option<i64>,
    burst: Option<i64>,
    max_concurrency: Option<i64>,
}

impl RawLimits {
    fn check(self) -> Result<Limits, ManifestError> {
        let defaults = Limits::default();
        Ok(Limits {
            memory_mb: in_range(
                "limits.memory_mb",
                self.memory_mb,
                defaults.memory_mb,
                1,
                4096,
            )?,
            timeout_ms: in_range(
                "limits.timeout_ms",
                self.timeout_ms,
                defaults.timeout_ms,
                1,
                300_000,
            )?,
            max_body_kb: in_range(
                "limits.max_body_kb",
                self.max_body_kb,
                defaults.max_body_kb,
                0,
                65_536,
            )?,
            rate_per_second: optional_in_range(
                "limits.rate_per_second",
                self.rate_per_second,
                1,
                MAX_RATE,
            )?,
            burst: match (self.burst, self.rate_per_second) {
                // A burst is the depth of a rate's bucket: alone it limits nothing, and
                // silently ignoring it would read as a limit that is not there.
                (Some(_), None) => return Err(ManifestError::BurstWithoutRate),
                (burst, _) => optional_in_range("limits.burst", burst, 1, MAX_RATE)?,
            },
            max_concurrency: optional_in_range(
                "limits.max_concurrency",
                self.max_concurrency,
                1,
                MAX_CONCURRENCY,
            )?,
        })
    }
}

fn optional_in_range(
    key: &'static str,
    value: Option<i64>,
    min: u32,
    max: u32,
) -> Result<Option<u32>, ManifestError> {
    value
        .map(|v| in_range(key, Some(v), min, min, max))
        .transpose()
}

fn in_range(
    key: &'static str,
    value: Option<i64>,
    default: u32,
    min: u32,
    max: u32,
) -> Result<u32, ManifestError> {
    let Some(value) = value else {
        return Ok(default);
    };
    u32::try_from(value)
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or(ManifestError::LimitOutOfRange {
            key,
            value,
            min,
            max,
        })
}

/// `component` is a plain file name in the manifest's directory: no path separators, no
/// `..`, not absolute, only portable file name characters (POSIX 3.282: letters, digits,
/// `.`, `_`, `-`), ending in `.wasm`.
fn check_component(component: &str) -> Result<(), ManifestError> {
    let invalid = |reason: &str| ManifestError::InvalidComponent {
        component: excerpt(component),
        reason: reason.to_owned(),
    };
    if component.is_empty() {
        return Err(invalid("it is empty"));
    }
    if component.starts_with('/') || component.starts_with('\\') {
        return Err(invalid("it is an absolute path"));
    }
    if component.contains(['/', '\\']) {
        return Err(invalid("it contains a path separator"));
    }
    if component.contains("..") {
        return Err(invalid("it contains `..`"));
    }
    if component.len() > 255 {
        return Err(invalid("it is longer than 255 bytes"));
    }
    if let Some(c) = component
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(invalid(&format!(
            "`{}` is not allowed; use letters, digits, `.`, `_` and `-`",
            c.escape_default()
        )));
    }
    if component.starts_with('.') {
        return Err(invalid("it starts with `.`"));
    }
    if !component.ends_with(".wasm") || component == ".wasm" {
        return Err(invalid("it does not end in `.wasm`"));
    }
    Ok(())
}

/// Longest interface name, in bytes.
const MAX_INTERFACE_BYTES: usize = 256;

/// A component-model interface name as imported and exported, `namespace:package/interface`
/// with an optional `@version` (the WIT `interface` id, component model `interfacename`
/// production in `Explainer.md` § Import and export definitions): each of namespace, package
/// and interface is kebab-case (lowercase words of letters and digits joined by `-`, each
/// word starting with a letter). The version is kept as written (semver characters only).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceName(String);

impl InterfaceName {
    /// Parses `namespace:package/interface[@version]`.
    pub fn parse(s: &str) -> Result<InterfaceName, ManifestError> {
        let invalid = |reason: &str| ManifestError::InvalidLayerImport {
            import: excerpt(s),
            reason: reason.to_owned(),
        };
        if s.len() > MAX_INTERFACE_BYTES {
            return Err(invalid("it is longer than 256 bytes"));
        }
        let (name, version) = match s.split_once('@') {
            Some((name, version)) => (name, Some(version)),
            None => (s, None),
        };
        let Some((namespace, rest)) = name.split_once(':') else {
            return Err(invalid("it has no `namespace:`"));
        };
        let Some((package, interface)) = rest.split_once('/') else {
            return Err(invalid("it has no `/interface`"));
        };
        for (part, what) in [
            (namespace, "namespace"),
            (package, "package"),
            (interface, "interface"),
        ] {
            if !is_kebab(part) {
                return Err(invalid(&format!(
                    "the {what} `{}` is not kebab-case (lowercase words of letters and digits joined by `-`)",
                    excerpt(part)
                )));
            }
        }
        if let Some(version) = version {
            let semver_chars = version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
            if version.is_empty() || !semver_chars {
                return Err(invalid("the version after `@` is not a semantic version"));
            }
        }
        Ok(InterfaceName(s.to_owned()))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Kebab-case as the component model spells names: words of lowercase letters and digits,
/// each starting with a letter, joined by single `-`.
fn is_kebab(s: &str) -> bool {
    !s.is_empty()
        && s.split('-').all(|word| {
            word.starts_with(|c: char| c.is_ascii_lowercase())
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for InterfaceName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Longest route, in bytes.
const MAX_ROUTE_BYTES: usize = 1024;
/// A route ending in this segment is a prefix route (Spin's spelling).
const PREFIX_SUFFIX: &str = "/...";

/// An HTTP route: an absolute URL path (RFC 3986 §3.3, `path-absolute` characters) in
/// normal form. `/api/...` is a prefix route matching `/api` and everything below it; any
/// other route matches exactly.
///
/// Routes and request paths are compared in the percent-encoding normal form of RFC 3986
/// §6.2.2.1 and §6.2.2.2 (see [`normalize_path`]): `/hello` and `/hell%6F` are one route.
/// Nothing else is decoded, so `%2F` is never a segment separator and no spelling makes a
/// `.` or `..` segment.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Route(String);

impl Route {
    /// Parses a route: starts with `/`, at most 1024 bytes, only RFC 3986 path characters
    /// (unreserved, `%XX`, sub-delims, `:`, `@`, `/`), no `//`, no `.` or `..` segment (nor
    /// `%2e` spellings of them), no `?` or `#`; `...` only as the last segment.
    pub fn parse(s: &str) -> Result<Route, ManifestError> {
        let invalid = |reason: String| ManifestError::InvalidRoute {
            route: excerpt(s),
            reason,
        };
        if s.len() > MAX_ROUTE_BYTES {
            return Err(invalid(format!(
                "it is {} bytes long; the limit is {MAX_ROUTE_BYTES}",
                s.len()
            )));
        }
        if !s.starts_with('/') {
            return Err(invalid(
                "it does not start with `/`; write `/hello`".to_owned(),
            ));
        }
        if s.contains('?') {
            return Err(invalid(
                "it contains a query (`?`); a route is a path only".to_owned(),
            ));
        }
        if s.contains('#') {
            return Err(invalid(
                "it contains a fragment (`#`); a route is a path only".to_owned(),
            ));
        }
        // `*` is a legal path character, so `/api/*` would silently be an exact route for
        // that one literal path; a whole-segment `*` or `**` is always a glob that was meant.
        if let Some(at) = s.split('/').position(|seg| seg == "*" || seg == "**") {
            let base = excerpt(&s.split('/').take(at).collect::<Vec<_>>().join("/"));
            let covered = if base.is_empty() {
                "every path".to_owned()
            } else {
                format!("`{base}` and every path under it")
            };
            return Err(invalid(format!(
                "it looks like a glob; a route is an exact path or a prefix route: write `{base}{PREFIX_SUFFIX}` for {covered}"
            )));
        }
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c == '%' {
                let hex = (chars.next(), chars.next());
                if !matches!(hex, (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit())
                {
                    return Err(invalid(
                        "`%` is not followed by two hex digits; write a literal `%` as `%25`"
                            .to_owned(),
                    ));
                }
            } else if !is_path_char(c) {
                return Err(invalid(format!(
                    "`{}` is not allowed in a URL path; percent-encode it",
                    c.escape_default()
                )));
            }
        }
        // Every check below runs on the normal form, the spelling that is stored and
        // compared, so no encoding can smuggle in what the checks refuse.
        let Some(normal) = normalize_path(s) else {
            return Err(invalid(
                "`%` is not followed by two hex digits; write a literal `%` as `%25`".to_owned(),
            ));
        };
        if normal.contains("//") {
            return Err(invalid(
                "it contains an empty segment (`//`); remove the extra `/`".to_owned(),
            ));
        }
        if normal.ends_with(PREFIX_SUFFIX) && !s.ends_with(PREFIX_SUFFIX) {
            return Err(invalid(
                "its last segment decodes to `...`; write the prefix marker `/...` literally"
                    .to_owned(),
            ));
        }
        let body = normal.strip_suffix(PREFIX_SUFFIX).unwrap_or(&normal);
        for segment in body.split('/') {
            if is_dot_segment(segment) {
                return Err(invalid(
                    "it contains a `.` or `..` segment; write the path without them".to_owned(),
                ));
            }
            if segment == "..." {
                return Err(invalid(
                    "`...` may only be the last segment, where it makes a prefix route".to_owned(),
                ));
            }
        }
        Ok(Route(normal.into_owned()))
    }

    /// The route in normal form (see [`normalize_path`]).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a prefix route (ends in `/...`).
    pub fn is_prefix(&self) -> bool {
        self.0.ends_with(PREFIX_SUFFIX)
    }

    /// Whether a request path (without query) is served by this route. An exact route
    /// matches the identical path; `/api/...` matches `/api`, `/api/` and `/api/<anything>`
    /// but not `/apix`; `/...` matches every path.
    ///
    /// A path not in normal form (not starting with `/`, with `//`, a `.`/`..` segment, `?` or
    /// `#`) matches no route, so `/api/../admin` is not routed by `/api/...`; the gateway
    /// should refuse or normalise such paths first.
    ///
    /// The path is compared in normal form (see [`normalize_path`]); a path with a malformed
    /// escape matches nothing.
    pub fn matches(&self, path: &str) -> bool {
        let Some(path) = normalize_path(path) else {
            return false;
        };
        let path = path.as_ref();
        if !is_normal_path(path) {
            return false;
        }
        match self.0.strip_suffix(PREFIX_SUFFIX) {
            None => path == self.0,
            Some(prefix) => {
                path == prefix
                    || path
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        }
    }
}

/// The percent-encoding normal form of a URL path (RFC 3986 §6.2.2.1, §6.2.2.2): an escape
/// of an unreserved character (`ALPHA`, `DIGIT`, `-`, `.`, `_`, `~`) is decoded and the hex
/// digits of every other escape are upper-cased. Nothing else changes: `%2F` stays an
/// escape (it never becomes a segment separator) and no other byte is decoded. Borrows when
/// the path is already normal (no allocation on the common request path).
///
/// `None` when a `%` is not followed by two hex digits: such a path names no route.
///
/// Decoding may turn `%2E%2E` into a `..` segment; callers refuse dot segments on the
/// result ([`Route::parse`], [`Route::matches`]), never on the input alone.
pub fn normalize_path(path: &str) -> Option<std::borrow::Cow<'_, str>> {
    let bytes = path.as_bytes();
    let Some(first) = bytes.iter().position(|&b| b == b'%') else {
        return Some(std::borrow::Cow::Borrowed(path));
    };
    let mut out = String::with_capacity(path.len());
    out.push_str(path.get(..first)?);
    let mut changed = false;
    let mut rest = path.get(first..)?;
    while let Some(at) = rest.find('%') {
        out.push_str(rest.get(..at)?);
        let hex = rest.get(at + 1..at + 3)?;
        let value = u8::from_str_radix(hex, 16).ok()?;
        // `from_str_radix` accepts a leading `+`; an escape is exactly two hex digits.
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(value));
            changed = true;
        } else {
            let upper = hex.to_ascii_uppercase();
            changed |= upper != hex;
            out.push('%');
            out.push_str(&upper);
        }
        rest = rest.get(at + 3..)?;
    }
    out.push_str(rest);
    Some(if changed {
        std::borrow::Cow::Owned(out)
    } else {
        std::borrow::Cow::Borrowed(path)
    })
}

/// RFC 3986 §3.3 `pchar` without `%` (handled by the caller), plus `/`.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            // unreserved
            '-' | '.' | '_' | '~'
            // sub-delims
            | '!' | '$' | '&' | '\'' | '(' | ')' | '*' | '+' | ',' | ';' | '='
            | ':' | '@' | '/'
        )
}

/// `.` or `..`, including the percent-encoded spellings RFC 3986 §6.2.2.2 normalises to them.
fn is_dot_segment(segment: &str) -> bool {
    let decoded = segment.replace("%2e", ".").replace("%2E", ".");
    decoded == "." || decoded == ".."
}

fn is_normal_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains(['?', '#'])
        && !path.contains("//")
        && !path.split('/').any(is_dot_segment)
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Route {
    type Err = ManifestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Route::parse(s)
    }
}

impl serde::Serialize for Route {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Route {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Route::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use zerofn_types::NameError;

    const MINIMAL: &str = r#"
name = "hello"
tenant = "acme"
component = "hello.wasm"
routes = ["/hello"]
"#;

    fn err(text: &str) -> ManifestError {
        Manifest::from_toml(text).expect_err(text)
    }

    /// The minimal manifest with one line replaced or added.
    fn with(key: &str, line: &str) -> String {
        let mut out: Vec<String> = MINIMAL
            .lines()
            .filter(|l| !l.starts_with(&format!("{key} =")))
            .map(str::to_owned)
            .collect();
        out.insert(1, line.to_owned());
        out.join("\n")
    }

    const LAYER: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    #[test]
    fn manifest_without_layers_pins_none() {
        assert!(Manifest::from_toml(MINIMAL).unwrap().layers.is_empty());
    }

    #[test]
    fn layers_are_pinned_by_import_and_digest() {
        let text = format!(
            "{MINIMAL}\n[layers]\n\"zerofn:greet/greeter\" = \"{LAYER}\"\n\"acme:lib/util@1.2.0\" = \"{LAYER}\"\n"
        );
        let m = Manifest::from_toml(&text).unwrap();
        let pins: Vec<(&str, String)> = m
            .layers
            .iter()
            .map(|(i, d)| (i.as_str(), d.to_string()))
            .collect();
        assert_eq!(
            pins,
            [
                ("acme:lib/util@1.2.0", LAYER.to_owned()),
                ("zerofn:greet/greeter", LAYER.to_owned())
            ]
        );
    }

    #[test]
    fn bad_layer_pins_are_refused_with_the_key() {
        for (entry, expected) in [
            (
                format!("\"greeter\" = \"{LAYER}\""),
                "`[layers]` key `greeter` is invalid: it has no `namespace:`",
            ),
            (
                format!("\"zerofn:greet\" = \"{LAYER}\""),
                "`[layers]` key `zerofn:greet` is invalid: it has no `/interface`",
            ),
            (
                format!("\"zerofn:Greet/greeter\" = \"{LAYER}\""),
                "`[layers]` key `zerofn:Greet/greeter` is invalid: the package `Greet` is not kebab-case",
            ),
            (
                "\"zerofn:greet/greeter\" = \"sha256:abc\"".to_owned(),
                "`[layers]` digest `sha256:abc` for `zerofn:greet/greeter` is invalid",
            ),
            (
                "\"zerofn:greet/greeter\" = 3".to_owned(),
                "manifest is not valid",
            ),
        ] {
            let text = format!("{MINIMAL}\n[layers]\n{entry}\n");
            let e = err(&text).to_string();
            assert!(e.starts_with(expected), "{entry}: {e}");
        }
        let many: String = (0..=MAX_LAYERS)
            .map(|i| format!("\"zerofn:l{i}/x\" = \"{LAYER}\"\n"))
            .collect();
        let e = err(&format!("{MINIMAL}\n[layers]\n{many}"));
        assert!(
            matches!(
                e,
                ManifestError::TooManyLayers {
                    count: 17,
                    limit: 16
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn minimal_manifest_gets_default_limits() {
        let manifest = Manifest::from_toml(MINIMAL).unwrap();
        assert_eq!(manifest.name.as_str(), "hello");
        assert_eq!(manifest.tenant.as_str(), "acme");
        assert_eq!(manifest.component, "hello.wasm");
        assert_eq!(manifest.routes, vec![Route::parse("/hello").unwrap()]);
        assert_eq!(
            manifest.limits,
            Limits {
                memory_mb: 64,
                timeout_ms: 1000,
                max_body_kb: 1024,
                ..Limits::default()
            }
        );
        assert_eq!(manifest.bundle_file_name(), "hello.wasm.sigstore.json");
    }

    #[test]
    fn full_manifest_parses() {
        let manifest = Manifest::from_toml(
            r#"
name = "api-v2"
tenant = "acme-corp"
component = "api_v2.component.wasm"
routes = ["/api/...", "/health", "/users/%7Ebob/profile:v1@x"]

[limits]
memory_mb = 4096
timeout_ms = 300000
max_body_kb = 0
"#,
        )
        .unwrap();
        assert_eq!(manifest.name.to_string(), "api-v2");
        assert_eq!(manifest.routes.len(), 3);
        assert!(manifest.routes[0].is_prefix());
        assert!(!manifest.routes[1].is_prefix());
        assert_eq!(
            manifest.limits,
            Limits {
                memory_mb: 4096,
                timeout_ms: 300_000,
                max_body_kb: 0,
                ..Limits::default()
            }
        );
        let json = serde_json::to_value(&manifest).unwrap();
        assert_eq!(json["name"], "api-v2");
        assert_eq!(json["routes"][0], "/api/...");
        assert_eq!(json["limits"]["memory_mb"], 4096);
    }

    #[test]
    fn rate_and_concurrency_limits_parse_and_are_checked() {
        let m = Manifest::from_toml(&format!(
            "{MINIMAL}[limits]\nrate_per_second = 5\nburst = 7\nmax_concurrency = 2\n"
        ))
        .unwrap();
        assert_eq!(
            (
                m.limits.rate_per_second,
                m.limits.burst,
                m.limits.max_concurrency
            ),
            (Some(5), Some(7), Some(2))
        );
        // Unset: nothing in the manifest's JSON (signed content and digests unchanged).
        let plain = Manifest::from_toml(MINIMAL).unwrap();
        let json = serde_json::to_value(&plain).unwrap();
        assert!(json["limits"].get("rate_per_second").is_none());
        assert!(matches!(
            Manifest::from_toml(&format!("{MINIMAL}[limits]\nburst = 3\n")),
            Err(ManifestError::BurstWithoutRate)
        ));
        for (line, key) in [
            ("rate_per_second = 0", "limits.rate_per_second"),
            ("rate_per_second = 1000001", "limits.rate_per_second"),
            ("max_concurrency = 0", "limits.max_concurrency"),
            ("max_concurrency = -4", "limits.max_concurrency"),
        ] {
            let e = Manifest::from_toml(&format!("{MINIMAL}[limits]\n{line}\n")).unwrap_err();
            assert!(
                matches!(&e, ManifestError::LimitOutOfRange { key: k, .. } if *k == key),
                "{line}: {e}"
            );
        }
    }

    #[test]
    fn partial_limits_keep_the_other_defaults() {
        let manifest =
            Manifest::from_toml(&format!("{MINIMAL}\n[limits]\ntimeout_ms = 5\n")).unwrap();
        assert_eq!(
            manifest.limits,
            Limits {
                timeout_ms: 5,
                ..Limits::default()
            }
        );
    }

    #[test]
    fn triggers_bind_queues_and_grant_only_their_source() {
        let m = Manifest::from_toml(&format!(
            "{MINIMAL}[[triggers]]\nqueue = \"orders\"\n[[triggers]]\nqueue = \"audit\"\nmax_concurrency = 1\n"
        ))
        .unwrap();
        assert_eq!(
            m.triggers,
            [
                Trigger::Queue(QueueTrigger {
                    queue: "orders".into(),
                    max_concurrency: DEFAULT_TRIGGER_CONCURRENCY,
                    schema: None,
                }),
                Trigger::Queue(QueueTrigger {
                    queue: "audit".into(),
                    max_concurrency: 1,
                    schema: None,
                }),
            ]
        );
        // The triggers' sources, and no `public` without an `[invoke]` that says so.
        let from: Vec<String> = m
            .permissions
            .invoke_from
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(from, ["event:queue/audit", "event:queue/orders"]);
        let m = Manifest::from_toml(&format!(
            "{MINIMAL}[invoke]\nfrom = [\"public\"]\n[[triggers]]\nqueue = \"orders\"\n"
        ))
        .unwrap();
        assert!(m.permissions.invoke_from.contains(&InvokeSource::Public));
        // Signed: a trigger changes the signed content; none leaves it as before.
        let plain = Manifest::from_toml(MINIMAL).unwrap();
        assert!(!plain
            .signed_content()
            .as_value()
            .to_string()
            .contains("triggers"));
        assert!(m
            .signed_content()
            .as_value()
            .to_string()
            .contains("\"triggers\""));
        for (extra, expected) in [
            ("[[triggers]]\nqueue = \"Orders\"\n", "not a valid name"),
            ("[[triggers]]\nqueue = \"a/b\"\n", "not a valid name"),
            ("[[triggers]]\nmax_concurrency = 2\n", "needs `queue"),
            (
                "[[triggers]]\nqueue = \"q\"\nmax_concurrency = 0\n",
                "out of range",
            ),
            (
                "[[triggers]]\nqueue = \"q\"\nmax_concurrency = 1001\n",
                "out of range",
            ),
            (
                "[[triggers]]\nqueue = \"q\"\n[[triggers]]\nqueue = \"q\"\n",
                "bound twice",
            ),
            (
                "[[triggers]]\nqueue = \"q\"\nschedule = \"* * * * *\"\n",
                "one of `queue`, `kv`, `bucket` or `schedule`",
            ),
            (
                "[[triggers]]\nqueue = \"q\"\ntimezone = \"UTC\"\n",
                "belongs to a schedule",
            ),
            (
                "[[triggers]]\nkv = \"orders\"\nbucket = \"uploads\"\n",
                "both `kv = \"orders\"` and `bucket = \"uploads\"`",
            ),
            (
                "[[triggers]]\nkv = \"orders\"\nprefix = \"in/\"\n",
                "belongs to a bucket trigger",
            ),
            ("[[triggers]]\nsubject = \"q\"\n", "unknown field `subject`"),
        ] {
            let message = err(&format!("{MINIMAL}{extra}")).to_string();
            assert!(message.contains(expected), "{extra}: {message}");
        }
        let many: String = (0..=MAX_TRIGGERS)
            .map(|i| format!("[[triggers]]\nqueue = \"q{i}\"\n"))
            .collect();
        assert!(err(&format!("{MINIMAL}{many}"))
            .to_string()
            .contains("more than the 16"));
    }

    #[test]
    fn a_trigger_schema_is_compiled_signed_by_digest_and_refused_when_invalid() {
        let text = |schema: &str| format!("{MINIMAL}[[triggers]]\nqueue = \"orders\"\n{schema}");
        let json = Manifest::from_toml(&text(
            "schema = '{\"type\": \"object\", \"required\": [\"id\"]}'\n",
        ))
        .unwrap();
        let table = Manifest::from_toml(&format!(
            "{MINIMAL}[[triggers]]\nqueue = \"orders\"\n[triggers.schema]\nrequired = [\"id\"]\ntype = \"object\"\n"
        ))
        .unwrap();
        let schema_of = |m: &Manifest| match m.triggers.first() {
            Some(Trigger::Queue(q)) => q.schema.clone(),
            other => panic!("not a queue trigger: {other:?}"),
        };
        let compiled = schema_of(&json);
        let schema = compiled.as_ref().unwrap();
        assert_eq!(compiled, schema_of(&table));
        assert!(zerofn_validation::validate_event(schema, br#"{"id": 1}"#).is_ok());
        assert!(zerofn_validation::validate_event(schema, br#"{"name": 1}"#).is_err());
        // The signed form carries the schema's digest, so the schema is signed.
        let signed = json.signed_content().as_value().to_string();
        assert!(signed.contains(schema.digest()), "{signed}");
        let plain = Manifest::from_toml(&text("")).unwrap();
        assert!(!plain
            .signed_content()
            .as_value()
            .to_string()
            .contains("schema"));
        assert_ne!(plain.signed_content(), json.signed_content());
        for (schema, expected) in [
            ("schema = '{'\n", "the schema of queue `orders` is invalid"),
            ("schema = 5\n", "JSON string or a TOML table"),
            (
                "schema = '{\"$ref\": \"https://example.com/s.json\"}'\n",
                "the schema of queue `orders` is invalid",
            ),
        ] {
            let message = err(&text(schema)).to_string();
            assert!(message.contains(expected), "{schema}: {message}");
        }
    }

    #[test]
    fn egress_limits_are_read_in_range_and_signed_only_when_set() {
        let m = Manifest::from_toml(&format!(
            "{MINIMAL}[egress]\nallow = [\"https://api.example.com\"]\ntimeout_ms = 2000\nmax_response_bytes = 4096\nmax_connections = 2\n"
        ))
        .unwrap();
        assert_eq!(
            m.egress_limits,
            FunctionEgressLimits {
                total: Some(Duration::from_millis(2000)),
                response_bytes: Some(4096),
                concurrent: Some(2),
                ..FunctionEgressLimits::default()
            }
        );
        let signed = m.signed_content().as_value().to_string();
        assert!(
            signed.contains(
                r#""limits":{"max_connections":2,"max_response_bytes":4096,"timeout_ms":2000}"#
            ),
            "{signed}"
        );
        // Limits alone (no destinations) are a section of their own.
        let alone =
            Manifest::from_toml(&format!("{MINIMAL}[egress]\nconnect_timeout_ms = 100\n")).unwrap();
        assert!(alone.permissions.egress.is_empty());
        assert!(alone
            .signed_content()
            .as_value()
            .to_string()
            .contains("connect_timeout_ms"));
        // Without limits the signed form is as before.
        let plain = Manifest::from_toml(&format!(
            "{MINIMAL}[egress]\nallow = [\"https://api.example.com\"]\n"
        ))
        .unwrap();
        let content = plain.signed_content();
        assert_eq!(
            content.as_value().get("egress"),
            Some(&serde_json::json!({"allow": ["https://api.example.com:443"]}))
        );
        assert!(plain.egress_limits.is_empty());
        for (extra, expected) in [
            (
                "timeout_ms = 0\n",
                "`timeout_ms` = 0 is out of range; use 1 to 300000",
            ),
            ("first_byte_timeout_ms = 300001\n", "out of range"),
            ("max_connections = 1025\n", "use 1 to 1024"),
            ("max_response_bytes = -1\n", "out of range"),
            ("max_redirects = 1\n", "unknown field `max_redirects`"),
        ] {
            let message = err(&format!("{MINIMAL}[egress]\n{extra}")).to_string();
            assert!(message.contains(expected), "{extra}: {message}");
        }
    }

    #[test]
    fn schedules_bind_with_their_own_source_and_refuse_bad_ones() {
        let m = Manifest::from_toml(&format!(
            "{MINIMAL}[[triggers]]\nname = \"nightly\"\nschedule = \"0 30 2 * * *\"\ntimezone = \"Europe/Berlin\"\nmissed = \"run-once\"\n[[triggers]]\nname = \"tick\"\nschedule = \"*/5 * * * *\"\n[[triggers]]\nqueue = \"orders\"\n"
        ))
        .unwrap();
        let [Trigger::Schedule(nightly), Trigger::Schedule(tick), Trigger::Queue(q)] =
            m.triggers.as_slice()
        else {
            panic!("{:?}", m.triggers)
        };
        assert_eq!(nightly.name, "nightly");
        assert_eq!(nightly.schedule.expression(), "0 30 2 * * *");
        assert_eq!(nightly.schedule.timezone(), "Europe/Berlin");
        assert_eq!(nightly.missed, Missed::RunOnce);
        assert_eq!(
            (tick.schedule.timezone(), tick.missed),
            ("UTC", Missed::Skip)
        );
        assert_eq!(q.queue, "orders");
        let from: Vec<String> = m
            .permissions
            .invoke_from
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            from,
            [
                "event:queue/orders",
                "event:schedule/hello-nightly",
                "event:schedule/hello-tick"
            ]
        );
        // The signed form names each schedule; the queue trigger keeps its form.
        let signed = m.signed_content().as_value().to_string();
        assert!(
            signed.contains(r#"{"max_concurrency":4,"queue":"orders"}"#),
            "{signed}"
        );
        assert!(
            signed.contains(r#"{"missed":"run-once","name":"nightly","schedule":"0 30 2 * * *","timezone":"Europe/Berlin"}"#),
            "{signed}"
        );
        let schedule = |body: &str| format!("{MINIMAL}[[triggers]]\n{body}");
        for (extra, expected) in [
            ("name = \"t\"\nschedule = \"61 * * * * *\"\n", "schedule `t`: cron expression `61 * * * * *` is not valid"),
            ("name = \"t\"\nschedule = \"every minute\"\n", "schedule `t`: cron expression"),
            ("name = \"t\"\nschedule = \"* * * * *\"\ntimezone = \"Europe/Atlantis\"\n", "schedule `t`: time zone `Europe/Atlantis` is not an IANA time zone"),
            ("name = \"t\"\nschedule = \"0 0 31 2 *\"\n", "schedule `t`: cron expression `0 0 31 2 *` never fires"),
            ("schedule = \"* * * * *\"\n", "needs a `name`"),
            ("name = \"Nightly\"\nschedule = \"* * * * *\"\n", "schedule name `Nightly` is not a valid name"),
            ("name = \"t\"\nschedule = \"* * * * *\"\nmissed = \"all\"\n", "schedule `t`: `missed` = `all` is not known"),
            ("name = \"t\"\nschedule = \"* * * * *\"\nmax_concurrency = 2\n", "schedule `t`: `max_concurrency` is for queues"),
            ("name = \"t\"\nschedule = \"* * * * *\"\nschema = '{}'\n", "schedule `t`: `schema` is for queue triggers"),
            ("name = \"t\"\nschedule = \"* * * * *\"\n[[triggers]]\nname = \"t\"\nschedule = \"0 * * * *\"\n", "schedule `t` is named twice"),
            (&format!("name = \"{}\"\nschedule = \"* * * * *\"\n", "n".repeat(60)), "longer than 63 characters"),
        ] {
            let message = err(&schedule(extra)).to_string();
            assert!(message.contains(expected), "{extra}: {message}");
            assert!(message.starts_with("`triggers` is invalid"), "{message}");
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let top = err(&format!("{MINIMAL}colour = \"blue\"\n"));
        assert!(matches!(top, ManifestError::Toml(_)), "{top:?}");
        let message = top.to_string();
        assert!(message.contains("unknown field `colour`"), "{message}");
        assert!(message.contains("line 6"), "{message}");

        let nested = err(&format!("{MINIMAL}[limits]\ncpu = 2\n"));
        let message = nested.to_string();
        assert!(message.contains("unknown field `cpu`"), "{message}");
        assert!(message.contains("memory_mb"), "{message}");
    }

    #[test]
    fn missing_keys_are_named() {
        for key in ["name", "tenant", "component", "routes"] {
            let text: String = MINIMAL
                .lines()
                .filter(|l| !l.starts_with(&format!("{key} =")))
                .collect::<Vec<_>>()
                .join("\n");
            let message = err(&text).to_string();
            assert!(
                message.contains(&format!("missing field `{key}`")),
                "{message}"
            );
        }
    }

    #[test]
    fn empty_routes_are_refused() {
        let e = err(&with("routes", "routes = []"));
        assert!(matches!(e, ManifestError::NoRoutes), "{e:?}");
        assert_eq!(
            e.to_string(),
            "`routes` is empty; add at least one route, such as `routes = [\"/hello\"]`"
        );
    }

    #[test]
    fn bad_names_are_refused() {
        let long = "a".repeat(64);
        for (name, reason) in [
            ("Hello", "`H` is not allowed"),
            ("-a", "it does not start with a letter"),
            ("1a", "it does not start with a letter"),
            ("a-", "it ends with `-`"),
            ("a_b", "`_` is not allowed"),
            ("", "it is empty"),
            (long.as_str(), "it is 64 characters long"),
            ("héllo", "`\\u{e9}` is not allowed"),
        ] {
            let e = err(&with("name", &format!("name = \"{name}\"")));
            assert!(
                matches!(
                    e,
                    ManifestError::Name(NameError::InvalidFunctionName { .. })
                ),
                "{name}: {e:?}"
            );
            assert_eq!(
                e.to_string(),
                format!("function name `{name}` is invalid: {reason}; use 1 to 63 lowercase letters, digits and `-`, starting with a letter and not ending with `-`")
            );
            let e = err(&with("tenant", &format!("tenant = \"{name}\"")));
            assert!(
                matches!(e, ManifestError::Name(NameError::InvalidTenantName { .. })),
                "{name}: {e:?}"
            );
            assert!(
                e.to_string()
                    .starts_with(&format!("tenant name `{name}` is invalid: {reason}")),
                "{e}"
            );
        }
        let max = "a".repeat(63);
        assert_eq!(FunctionName::parse(&max).unwrap().as_str(), max);
        assert_eq!(TenantName::parse("a").unwrap().to_string(), "a");
        assert_eq!(TenantName::parse("a-1").unwrap().as_str(), "a-1");
    }

    #[test]
    fn bad_components_are_refused() {
        for (component, reason) in [
            ("../x.wasm", "it contains a path separator"),
            ("/abs.wasm", "it is an absolute path"),
            ("\\\\abs.wasm", "it is an absolute path"),
            ("a/b.wasm", "it contains a path separator"),
            ("a\\\\b.wasm", "it contains a path separator"),
            ("x.txt", "it does not end in `.wasm`"),
            ("", "it is empty"),
            ("..", "it contains `..`"),
            ("x..wasm", "it contains `..`"),
            (".wasm", "it starts with `.`"),
            (
                "C:x.wasm",
                "`:` is not allowed; use letters, digits, `.`, `_` and `-`",
            ),
            (
                "a b.wasm",
                "` ` is not allowed; use letters, digits, `.`, `_` and `-`",
            ),
        ] {
            let e = err(&with("component", &format!("component = \"{component}\"")));
            assert!(
                matches!(e, ManifestError::InvalidComponent { .. }),
                "{component}: {e:?}"
            );
            let message = e.to_string();
            assert!(
                message.contains(&format!("is invalid: {reason}; use a plain file name")),
                "{component}: {message}"
            );
            assert!(message.starts_with("`component` = `"), "{message}");
        }
    }

    #[test]
    fn bad_routes_are_refused() {
        let long = format!("/{}", "a".repeat(1024));
        for (route, reason) in [
            ("hello", "it does not start with `/`"),
            ("/a/../b", "it contains a `.` or `..` segment"),
            ("/a/./b", "it contains a `.` or `..` segment"),
            ("/a/..", "it contains a `.` or `..` segment"),
            ("/a/%2e%2E/b", "it contains a `.` or `..` segment"),
            ("/../...", "it contains a `.` or `..` segment"),
            ("/a?b=c", "it contains a query (`?`)"),
            ("/a#frag", "it contains a fragment (`#`)"),
            ("/a//b", "it contains an empty segment (`//`)"),
            ("/a b", "` ` is not allowed in a URL path"),
            ("/a%zz", "`%` is not followed by two hex digits"),
            ("/a%2", "`%` is not followed by two hex digits"),
            ("/a/.../b", "`...` may only be the last segment"),
            ("/é", "`\\u{e9}` is not allowed in a URL path"),
            (long.as_str(), "it is 1025 bytes long"),
            ("", "it does not start with `/`"),
            (
                "/api/*",
                "it looks like a glob; a route is an exact path or a prefix route: write `/api/...` for `/api` and every path under it",
            ),
            (
                "/api/**/x",
                "it looks like a glob; a route is an exact path or a prefix route: write `/api/...` for `/api` and",
            ),
            (
                "/*",
                "it looks like a glob; a route is an exact path or a prefix route: write `/...` for every path",
            ),
        ] {
            let e = Route::parse(route).expect_err(route);
            assert!(
                matches!(e, ManifestError::InvalidRoute { .. }),
                "{route}: {e:?}"
            );
            let message = e.to_string();
            assert!(
                message.contains(&format!("is invalid: {reason}")),
                "{route}: {message}"
            );
        }
        // `*` inside a segment is an ordinary path character.
        assert!(Route::parse("/a*b").is_ok());
        // Through the manifest too.
        let e = err(&with("routes", "routes = [\"/ok\", \"nope\"]"));
        assert_eq!(
            e.to_string(),
            "route `nope` is invalid: it does not start with `/`; write `/hello`"
        );
    }

    #[test]
    fn duplicate_routes_are_refused() {
        let e = err(&with("routes", "routes = [\"/a\", \"/b\", \"/a\"]"));
        assert!(
            matches!(&e, ManifestError::DuplicateRoute { route } if route == "/a"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "route `/a` is listed more than once in `routes`; remove the duplicate"
        );
    }

    #[test]
    fn out_of_range_limits_name_the_key_and_range() {
        for (line, key, value, min, max) in [
            ("memory_mb = 0", "limits.memory_mb", 0, 1, 4096),
            ("memory_mb = 4097", "limits.memory_mb", 4097, 1, 4096),
            ("timeout_ms = 0", "limits.timeout_ms", 0, 1, 300_000),
            (
                "timeout_ms = 300001",
                "limits.timeout_ms",
                300_001,
                1,
                300_000,
            ),
            ("max_body_kb = -1", "limits.max_body_kb", -1, 0, 65_536),
            (
                "max_body_kb = 65537",
                "limits.max_body_kb",
                65_537,
                0,
                65_536,
            ),
            (
                "memory_mb = 99999999999",
                "limits.memory_mb",
                99_999_999_999,
                1,
                4096,
            ),
        ] {
            let e = err(&format!("{MINIMAL}[limits]\n{line}\n"));
            assert!(
                matches!(e, ManifestError::LimitOutOfRange { key: k, value: v, min: lo, max: hi }
                    if k == key && v == value && lo == min && hi == max),
                "{line}: {e:?}"
            );
            assert_eq!(
                e.to_string(),
                format!("`{key}` = {value} is out of range; use a value from {min} to {max}")
            );
        }
        let e = err(&format!("{MINIMAL}[limits]\nmemory_mb = \"big\"\n"));
        let message = e.to_string();
        assert!(message.contains("memory_mb = \"big\""), "{message}");
        assert!(
            message.contains("invalid type: string \"big\""),
            "{message}"
        );
    }

    #[test]
    fn toml_syntax_errors_carry_line_and_column() {
        let e = err("name = \"hello\"\ntenant = acme\n");
        assert!(matches!(e, ManifestError::Toml(_)), "{e:?}");
        let message = e.to_string();
        assert!(
            message.starts_with("manifest is not valid: TOML parse error at line 2, column 10"),
            "{message}"
        );
        let e = err("routes = [\"/a\"");
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn oversized_manifest_is_refused() {
        let text = format!("{MINIMAL}#{}", "x".repeat(MAX_MANIFEST_BYTES));
        assert!(matches!(
            err(&text),
            ManifestError::TooLarge {
                limit: MAX_MANIFEST_BYTES,
                ..
            }
        ));
    }

    #[test]
    fn prefix_routes_match_the_prefix_and_below() {
        let route = Route::parse("/api/...").unwrap();
        assert!(route.is_prefix());
        for (path, expected) in [
            ("/api", true),
            ("/api/", true),
            ("/api/x", true),
            ("/api/x/y", true),
            ("/apix", false),
            ("/ap", false),
            ("/", false),
            ("/api/../admin", false),
            ("/api//x", false),
            ("/api/./x", false),
            ("/api/%2e%2e/admin", false),
            ("/api/x?q=1", false),
            ("api/x", false),
            ("", false),
        ] {
            assert_eq!(route.matches(path), expected, "{path}");
        }
        let all = Route::parse("/...").unwrap();
        assert!(all.matches("/") && all.matches("/anything/below"));
        assert!(!all.matches("relative"));
    }

    #[test]
    fn exact_routes_match_only_themselves() {
        let route = Route::parse("/hello").unwrap();
        assert!(!route.is_prefix());
        assert!(route.matches("/hello"));
        for path in ["/hello/", "/hello/x", "/hell", "/hellox", "/HELLO"] {
            assert!(!route.matches(path), "{path}");
        }
        assert!(Route::parse("/").unwrap().matches("/"));
        assert!(!Route::parse("/").unwrap().matches("/x"));
    }

    #[test]
    fn routes_and_paths_compare_in_percent_encoding_normal_form() {
        // Unreserved escapes decode, other escapes keep upper-case hex.
        for (raw, normal) in [
            ("/hello", "/hello"),
            ("/hell%6F", "/hello"),
            ("/hell%6f", "/hello"),
            ("/%41%7a%30%2D%2e%5F%7E", "/Az0-._~"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a%20b%c3%a9", "/a%20b%C3%A9"),
            ("/a%25%32%66", "/a%252f"),
            ("/api/%2E%2E%2Ex", "/api/...x"),
        ] {
            assert_eq!(normalize_path(raw).unwrap(), normal, "{raw}");
            assert_eq!(Route::parse(raw).unwrap().as_str(), normal, "{raw}");
        }
        // Already normal: borrowed, no allocation.
        assert!(matches!(
            normalize_path("/a%2Fb").unwrap(),
            std::borrow::Cow::Borrowed(_)
        ));
        for bad in ["/a%", "/a%2", "/a%zz", "/a%+1", "/a%-1", "/a%\u{e9}"] {
            assert!(normalize_path(bad).is_none(), "{bad}");
        }
        // One route, whichever spelling, in a manifest too.
        let e = err(&with("routes", "routes = [\"/hello\", \"/hell%6F\"]"));
        assert!(
            matches!(&e, ManifestError::DuplicateRoute { route } if route == "/hello"),
            "{e:?}"
        );
        let hello = Route::parse("/hello").unwrap();
        assert_eq!(hello, Route::parse("/%68%65llo").unwrap());
        assert!(hello.matches("/hell%6F") && hello.matches("/%68ello"));
        assert!(!hello.matches("/hell%6"));
        let api = Route::parse("/api/...").unwrap();
        assert!(api.matches("/%61pi/x") && !api.matches("/api%2Fx"));
    }

    #[test]
    fn hostile_encodings_never_make_traversal_or_separators() {
        // Spelled dot segments are refused as routes, in any case, after decoding.
        for route in [
            "/a/%2e",
            "/a/%2E%2e/b",
            "/%2e%2e/...",
            "/a/.%2E",
            "/a/%2e%2e%2e/b",
        ] {
            let e = Route::parse(route).expect_err(route);
            assert!(e.to_string().contains("segment"), "{route}: {e}");
        }
        // A prefix marker must be written literally.
        let e = Route::parse("/a/%2e%2e%2e").unwrap_err();
        assert!(e.to_string().contains("write the prefix marker"), "{e}");
        let e = Route::parse("/a/..%2E").unwrap_err();
        assert!(e.to_string().contains("write the prefix marker"), "{e}");
        // `%2F` stays one segment: `/api%2F..%2Fadmin` is not `/api/../admin`, and a
        // prefix route does not see a separator in it.
        let api = Route::parse("/api/...").unwrap();
        assert!(!api.matches("/api%2F..%2Fadmin"));
        assert!(!api.matches("/api/%2e%2e/admin"));
        assert!(!api.matches("/api/%2E%2E"));
        assert!(!api.matches("/api/.%2e/admin"));
        assert!(api.matches("/api/a%2Fb"));
        let admin = Route::parse("/admin").unwrap();
        for path in [
            "/api/%2e%2e/admin",
            "/api%2F..%2Fadmin",
            "/%2Fadmin",
            "/admin%00",
        ] {
            assert!(!admin.matches(path), "{path}");
        }
        // A double escape decodes once only: `%252e` is the text `%2e`, not a dot.
        assert_eq!(Route::parse("/a/%252e").unwrap().as_str(), "/a/%252e");
        assert!(!Route::parse("/a/...").unwrap().matches("/a%252F..%252Fb/x"));
    }

    #[test]
    fn names_and_routes_deserialize_through_their_parsers() {
        let name: FunctionName = serde_json::from_str("\"hello\"").unwrap();
        assert_eq!(name.as_str(), "hello");
        let e = serde_json::from_str::<TenantName>("\"Bad\"").unwrap_err();
        assert!(
            e.to_string().contains("tenant name `Bad` is invalid"),
            "{e}"
        );
        let e = serde_json::from_str::<Route>("\"x\"").unwrap_err();
        assert!(e.to_string().contains("route `x` is invalid"), "{e}");
        assert_eq!("/a/...".parse::<Route>().unwrap().to_string(), "/a/...");
    }

    proptest! {
        #[test]
        fn from_toml_never_panics(text in ".{0,400}") {
            let _ = Manifest::from_toml(&text);
        }

        #[test]
        fn from_toml_never_panics_on_manifest_like_text(
            name in ".{0,70}",
            component in ".{0,40}",
            route in ".{0,40}",
            memory in any::<i64>(),
            extra in "[a-z_]{1,10}",
        ) {
            let text = format!(
                "name = {name:?}\ntenant = \"acme\"\ncomponent = {component:?}\nroutes = [{route:?}]\n[limits]\nmemory_mb = {memory}\n{extra} = 1\n"
            );
            let _ = Manifest::from_toml(&text);
        }

        #[test]
        fn valid_routes_match_themselves(segments in proptest::collection::vec("[a-z0-9~!$&'()*+,;=:@_-]{1,8}", 0..5), prefix in any::<bool>()) {
            let mut text = format!("/{}", segments.join("/"));
            if prefix {
                text = format!("{}/...", text.trim_end_matches('/'));
            }
            let route = Route::parse(&text);
            prop_assume!(route.is_ok()); // e.g. a generated `...` segment
            let route = route.unwrap();
            let path = text.strip_suffix("/...").map_or(text.as_str(), |p| if p.is_empty() { "/" } else { p });
            prop_assert!(route.matches(path), "{} does not match {}", text, path);
        }

        #[test]
        fn route_parse_never_panics(text in "/?.{0,60}", path in ".{0,60}") {
            if let Ok(route) = Route::parse(&text) {
                let _ = route.matches(&path);
            }
        }

        #[test]
        fn normal_form_is_stable_and_never_adds_separators(path in "(/|%[0-9a-fA-F]{2}|[a-z.~%])*") {
            if let Some(normal) = normalize_path(&path) {
                prop_assert_eq!(normalize_path(&normal).unwrap(), normal.clone());
                prop_assert_eq!(normal.matches('/').count(), path.matches('/').count());
                if let Ok(route) = Route::parse(&path) {
                    prop_assert!(!route.as_str().split('/').any(|s| s == "." || s == ".."));
                    prop_assert_eq!(route.as_str(), normal.as_ref());
                }
            }
        }
    }

    #[test]
    fn permissions_invoke_and_config_are_parsed() {
        let m = Manifest::from_toml(&format!(
            "{MINIMAL}\n[permissions]\nkv = [\"orders:read\", \"cache:read-write\"]\ncall = [\"billing\"]\n\n[invoke]\nfrom = [\"checkout\", \"tenant:partner\"]\n\n[config]\ngreeting = \"hi\"\n"
        ))
        .unwrap();
        assert_eq!(m.permissions.kv.len(), 2);
        assert!(m.permissions.call.contains("billing"));
        assert!(m.permissions.config);
        assert_eq!(m.config.get("greeting").map(String::as_str), Some("hi"));
        assert!(!m.permissions.invoke_from.contains(&InvokeSource::Public));
        // Compiles to valid Cedar.
        zerofn_policy::permissions::compile_checked("acme", "hello", &m.permissions).unwrap();
    }

    #[test]
    fn no_permissions_means_none_and_public_invoke() {
        let m = Manifest::from_toml(MINIMAL).unwrap();
        assert!(m.permissions.kv.is_empty() && m.permissions.call.is_empty());
        assert!(!m.permissions.config);
        assert_eq!(
            m.permissions.invoke_from.iter().collect::<Vec<_>>(),
            [&InvokeSource::Public]
        );
    }

    #[test]
    fn egress_entries_are_parsed_and_compile() {
        let m = Manifest::from_toml(&format!(
            "{MINIMAL}\n[egress]\nallow = [\"https://api.stripe.com\", \"https://*.s3.amazonaws.com:443\", {{ url = \"http://inventory.internal:8080/v1/\", methods = [\"GET\"] }}, {{ url = \"http://db.internal:5432\", allow_ranges = [\"10.0.0.0/8\"] }}]\n"
        ))
        .unwrap();
        let urls: Vec<String> = m.permissions.egress.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            urls,
            [
                "https://api.stripe.com:443",
                "https://*.s3.amazonaws.com:443",
                "http://inventory.internal:8080/v1/ GET",
                "http://db.internal:5432 +10.0.0.0/8"
            ]
        );
        let text =
            zerofn_policy::permissions::compile_checked("acme", "hello", &m.permissions).unwrap();
        assert!(
            text.contains("acme/hello/egress/https://api.stripe.com:443"),
            "{text}"
        );
        // Signed, so a changed allowlist is a changed manifest.
        let signed = m.signed_content().as_value().to_string();
        assert!(
            signed.contains("https://*.s3.amazonaws.com:443"),
            "{signed}"
        );
        // No [egress]: the signed content is what it was before egress existed.
        let plain = Manifest::from_toml(MINIMAL)
            .unwrap()
            .signed_content()
            .as_value()
            .to_string();
        assert!(!plain.contains("egress"), "{plain}");
    }

    #[test]
    fn bad_egress_entries_are_named() {
        for (extra, needle) in [
            ("[egress]\nallow = [\"api.stripe.com\"]", "no `://`"),
            (
                "[egress]\nallow = [\"ftp://x.com\"]",
                "`egress.allow` is invalid",
            ),
            ("[egress]\nallow = [\"https://u@x.com\"]", "userinfo"),
            ("[egress]\nallow = [\"https://*.com\"]", "wildcard"),
            (
                "[egress]\nallow = [{ url = \"https://x.com\", method = [\"GET\"] }]",
                "unknown key `method`",
            ),
            (
                "[egress]\nallow = [{ url = \"https://x.com\", methods = [\"BREW\"] }]",
                "BREW",
            ),
            (
                "[egress]\nallow = [{ url = \"https://x.com\", allow_ranges = [\"10/8\"] }]",
                "CIDR",
            ),
            ("[egress]\nallow = [{ methods = [\"GET\"] }]", "needs `url"),
            ("[egress]\nallow = [1]", "URL string or a table"),
            (
                "[egress]\nallow = [\"https://x.com\", \"https://X.com:443\"]",
                "listed twice",
            ),
            (
                "[egress]\ndeny = [\"https://x.com\"]",
                "unknown field `deny`",
            ),
        ] {
            let e = err(&format!("{MINIMAL}\n{extra}\n")).to_string();
            assert!(e.contains(needle), "{extra}: {e}");
        }
    }

    #[test]
    fn bad_permissions_are_named() {
        for (extra, needle) in [
            (
                "[permissions]\nkv = [\"orders\"]",
                "`permissions.kv` is invalid",
            ),
            ("[permissions]\nkv = [\"orders:admin\"]", "not `admin`"),
            (
                "[permissions]\nkv = [\"o:read\", \"o:write\"]",
                "listed twice",
            ),
            (
                "[permissions]\ncall = [\"Billing\"]",
                "`permissions.call` is invalid",
            ),
            ("[permissions]\nnet = [\"x\"]", "unknown field `net`"),
            ("[invoke]\nfrom = [\"role:x\"]", "`invoke.from` is invalid"),
            ("[config]\n\"Bad Key\" = \"x\"", "`config` is invalid"),
        ] {
            let e = err(&format!("{MINIMAL}\n{extra}\n")).to_string();
            assert!(e.contains(needle), "{extra}: {e}");
        }
    }

    #[test]
    fn schemas_are_compiled_and_bad_ones_refused_naming_the_key() {
        let m = Manifest::from_toml(&format!(
            "{MINIMAL}[schema]\nbody = '{{\"type\":\"object\"}}'\npath = '{{\"pattern\":\"^/\"}}'\n[schema.query]\ntype = \"object\"\n"
        ))
        .unwrap();
        assert!(m.schema.get(zerofn_validation::RequestPart::Body).is_some());
        assert!(m
            .schema
            .get(zerofn_validation::RequestPart::Query)
            .is_some());
        assert!(m
            .schema
            .get(zerofn_validation::RequestPart::Headers)
            .is_none());
        for (extra, expected) in [
            ("[schema]\ncookies = '{}'\n", "`schema.cookies` is not a request part; use `body`, `query`, `headers` or `path`"),
            ("[schema]\nbody = '{\"type\":17}'\n", "`schema.body` is invalid: schema does not compile: "),
            ("[schema]\nbody = '{\"$ref\":\"https://evil.example/s.json\"}'\n", "`schema.body` is invalid: `$ref` `https://evil.example/s.json` refers outside the schema; only references within it (`#...`) are allowed"),
            ("[schema]\nheaders = 'not json'\n", "`schema.headers` is invalid: schema is not JSON: "),
            ("[schema]\nbody = 7\n", "`schema.body` is invalid: schema is not JSON: write the schema as a JSON string or a TOML table"),
        ] {
            let e = Manifest::from_toml(&format!("{MINIMAL}{extra}")).unwrap_err();
            assert!(e.to_string().starts_with(expected), "{extra}: {e}");
        }
    }
}
