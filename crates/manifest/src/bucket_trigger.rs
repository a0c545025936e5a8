//! `[[triggers]] bucket = "..."`: a bucket of the tenant's object storage
//! bound to a function, with the object events it wants and the keys they
//! must match.
//!
//! ```toml
//! [[triggers]]
//! bucket = "uploads"          # a bucket of the tenant (a DNS label)
//! events = ["created"]        # optional: "created", "deleted" (default both)
//! prefix = "incoming/"        # optional: only keys starting with this
//! suffix = ".json"            # optional: only keys ending with this
//! max_concurrency = 4         # optional: 1..=1000 deliveries in flight (default 4)
//! max_attempts = 5            # optional: 1..=100 tries before dead-lettering (default 5)
//! dead_letter = "failed"      # optional: a queue of the tenant failed events move to
//! schema = '''{...}'''        # optional: what each event's JSON body must match
//! ```
//!
//! The trigger is an invoke grant for `event:bucket/<name>` only (the
//! principal `Zerofn::EventSource::"<tenant>/bucket/<name>"`).

use zerofn_validation::CompiledSchema;

/// Most bytes of a trigger's `prefix` or `suffix` (an object key's longest).
pub const MAX_FILTER_BYTES: usize = 1024;
/// Most delivery attempts of a bucket trigger's event.
pub const MAX_BUCKET_ATTEMPTS: u32 = 100;
/// Attempts of a bucket trigger's event when it does not say.
pub const DEFAULT_BUCKET_ATTEMPTS: u32 = 5;

/// A bucket bound to a function.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BucketTrigger {
    /// The tenant's bucket (a DNS label).
    pub bucket: String,
    /// Whether `created` events invoke the function.
    pub created: bool,
    /// Whether `deleted` events invoke the function.
    pub deleted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Most deliveries in flight at once.
    pub max_concurrency: u32,
    /// Deliveries of one event before it is dead-lettered.
    pub max_attempts: u32,
    /// The tenant queue failed events move to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<String>,
    /// The JSON Schema every event's body must match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<CompiledSchema>,
}

impl BucketTrigger {
    /// The events the trigger wants, as written in the manifest.
    pub fn events(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.created {
            out.push("created");
        }
        if self.deleted {
            out.push("deleted");
        }
        out
    }

    /// The trigger as signed (every field, the schema by digest).
    pub(crate) fn signed(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "bucket": self.bucket,
            "events": self.events(),
            "max_concurrency": self.max_concurrency,
            "max_attempts": self.max_attempts,
        });
        if let Some(o) = v.as_object_mut() {
            for (k, val) in [
                ("prefix", &self.prefix),
                ("suffix", &self.suffix),
                ("dead_letter", &self.dead_letter),
            ] {
                if let Some(val) = val {
                    o.insert(k.into(), val.clone().into());
                }
            }
            if let Some(schema) = &self.schema {
                o.insert("schema".into(), schema.digest().into());
            }
        }
        v
    }
}

/// The bucket trigger's own keys as written.
pub(crate) struct RawBucketKeys {
    pub events: Option<Vec<String>>,
    pub prefix: Option<String>,
    pub suffix: Option<String>,
    pub max_attempts: Option<i64>,
    pub dead_letter: Option<String>,
}

/// The bucket trigger's own keys, checked.
pub(crate) struct BucketKeys {
    pub created: bool,
    pub deleted: bool,
    pub prefix: Option<String>,
    pub suffix: Option<String>,
    pub max_attempts: u32,
    pub dead_letter: Option<String>,
}

/// Checks the keys only a bucket trigger has; `problem` texts name the bucket.
pub(crate) fn check_bucket_keys(bucket: &str, raw: RawBucketKeys) -> Result<BucketKeys, String> {
    let (mut created, mut deleted) = (true, true);
    if let Some(events) = raw.events {
        if events.is_empty() {
            return Err(format!(
                "bucket `{bucket}`: `events` is empty; list \"created\", \"deleted\" or both, or leave it out"
            ));
        }
        (created, deleted) = (false, false);
        for e in &events {
            match e.as_str() {
                "created" => created = true,
                "deleted" => deleted = true,
                other => {
                    return Err(format!(
                    "bucket `{bucket}`: event `{}` is not known; use \"created\" or \"deleted\"",
                    zerofn_types::excerpt(other)
                ))
                }
            }
        }
    }
    for (key, value) in [("prefix", &raw.prefix), ("suffix", &raw.suffix)] {
        if let Some(v) = value {
            if v.is_empty() || v.len() > MAX_FILTER_BYTES || v.chars().any(|c| c.is_control()) {
                return Err(format!(
                    "bucket `{bucket}`: `{key}` must be 1 to {MAX_FILTER_BYTES} bytes without control characters"
                ));
            }
        }
    }
    let max_attempts = match raw.max_attempts {
        None => DEFAULT_BUCKET_ATTEMPTS,
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_BUCKET_ATTEMPTS).contains(n))
            .ok_or_else(|| {
                format!(
                    "bucket `{bucket}`: `max_attempts` = {n} is out of range; use 1 to {MAX_BUCKET_ATTEMPTS}"
                )
            })?,
    };
    if let Some(d) = &raw.dead_letter {
        zerofn_policy::permissions::valid_queue_name(d).map_err(|why| {
            format!(
                "bucket `{bucket}`: dead-letter queue `{}` is not a valid name: it {why}",
                zerofn_types::excerpt(d)
            )
        })?;
    }
    Ok(BucketKeys {
        created,
        deleted,
        prefix: raw.prefix,
        suffix: raw.suffix,
        max_attempts,
        dead_letter: raw.dead_letter,
    })
}

#[cfg(test)]
mod tests {
    use crate::{Manifest, Trigger};

    const MINIMAL: &str =
        "name = \"thumbs\"\ntenant = \"acme\"\ncomponent = \"t.wasm\"\nroutes = [\"/t\"]\n";

    fn parse(extra: &str) -> Result<Manifest, String> {
        Manifest::from_toml(&format!("{MINIMAL}{extra}")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_bucket_trigger_filters_and_grants_only_its_bucket() {
        let m = parse(
            "[[triggers]]\nbucket = \"uploads\"\nevents = [\"created\"]\nprefix = \"incoming/\"\nsuffix = \".json\"\nmax_attempts = 3\ndead_letter = \"failed\"\n[[triggers]]\nbucket = \"archive\"\n",
        )
        .unwrap();
        let [Trigger::Bucket(up), Trigger::Bucket(ar)] = m.triggers.as_slice() else {
            panic!("{:?}", m.triggers)
        };
        assert_eq!((up.created, up.deleted), (true, false));
        assert_eq!(up.prefix.as_deref(), Some("incoming/"));
        assert_eq!(up.suffix.as_deref(), Some(".json"));
        assert_eq!((up.max_attempts, up.max_concurrency), (3, 4));
        assert_eq!(up.dead_letter.as_deref(), Some("failed"));
        // Defaults: both events, no filters, five attempts.
        assert_eq!((ar.created, ar.deleted, ar.max_attempts), (true, true, 5));
        assert_eq!((ar.prefix.as_deref(), ar.suffix.as_deref()), (None, None));
        let from: Vec<String> = m
            .permissions
            .invoke_from
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(from, ["event:bucket/archive", "event:bucket/uploads"]);
        // Signed: every filter is part of the signed content.
        let signed = m.signed_content().as_value().to_string();
        for part in [
            "\"bucket\":\"uploads\"",
            "\"prefix\":\"incoming/\"",
            "\"suffix\":\".json\"",
            "\"events\":[\"created\"]",
            "\"dead_letter\":\"failed\"",
        ] {
            assert!(signed.contains(part), "{part} not in {signed}");
        }
    }

    #[test]
    fn bad_bucket_triggers_are_refused_naming_the_problem() {
        for (extra, expected) in [
            (
                "bucket = \"Uploads\"\n",
                "bucket `Uploads` is not a valid name",
            ),
            ("bucket = \"u\"\nevents = []\n", "`events` is empty"),
            (
                "bucket = \"u\"\nevents = [\"updated\"]\n",
                "event `updated` is not known",
            ),
            (
                "bucket = \"u\"\nprefix = \"\"\n",
                "`prefix` must be 1 to 1024 bytes",
            ),
            ("bucket = \"u\"\nsuffix = \"a\\nb\"\n", "`suffix` must be"),
            (
                "bucket = \"u\"\nmax_attempts = 0\n",
                "`max_attempts` = 0 is out of range",
            ),
            ("bucket = \"u\"\nmax_concurrency = 1001\n", "out of range"),
            (
                "bucket = \"u\"\ndead_letter = \"A\"\n",
                "dead-letter queue `A` is not a valid name",
            ),
            ("bucket = \"u\"\nqueue = \"q\"\n", "also has `queue`"),
            (
                "bucket = \"u\"\nschedule = \"* * * * *\"\n",
                "also has `schedule`",
            ),
            (
                "bucket = \"u\"\n[[triggers]]\nbucket = \"u\"\n",
                "bucket `u` is bound twice",
            ),
            (
                "queue = \"q\"\nprefix = \"a\"\n",
                "`prefix` belongs to a bucket trigger",
            ),
            (
                "bucket = \"u\"\nschema = '''{\"type\": 3}'''\n",
                "the schema of bucket `u` is invalid",
            ),
        ] {
            let e = parse(&format!("[[triggers]]\n{extra}")).unwrap_err();
            assert!(e.contains(expected), "{extra}: {e}");
        }
    }
}
