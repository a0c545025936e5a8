//! A key-value change trigger (`[[triggers]] kv = "<bucket>"`): the function
//! is invoked once per change of that bucket of its own tenant, as a
//! CloudEvent built by the platform (`zerofn-events`, `kv_stream.rs`).
//!
//! The bucket is a name within the manifest's tenant, never a path: the
//! tenant comes from the manifest, so no bucket name can reach another
//! tenant's data. The trigger is an invoke grant for `event:kv/<bucket>`
//! only (`manifest.rs`).

use crate::error::ManifestError;
use crate::manifest::{trigger_concurrency, RawTrigger, Trigger};
use zerofn_types::excerpt;

/// A key-value bucket of the tenant bound to a function.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KvTrigger {
    /// The tenant's bucket (a DNS label, as in `[permissions] kv`).
    #[serde(rename = "kv")]
    pub bucket: String,
    /// Most deliveries in flight at once (changes of different keys; one
    /// key's changes go one at a time, in order).
    pub max_concurrency: u32,
}

/// Reads a `kv` trigger; `earlier` are the triggers read before it (a
/// bucket is bound once). Keys of other trigger kinds are refused, naming
/// the bucket.
pub(crate) fn check_kv_trigger(
    t: RawTrigger,
    earlier: &[Trigger],
) -> Result<KvTrigger, ManifestError> {
    let bad = |problem: String| ManifestError::Permission {
        key: "triggers",
        problem,
    };
    let bucket = t.kv.unwrap_or_default();
    zerofn_policy::permissions::valid_bucket_name(&bucket).map_err(|why| {
        bad(format!(
            "kv bucket `{}` is not a valid name: it {why}",
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
                "the trigger of kv bucket `{bucket}` also has `{key}`; {}",
                crate::manifest::ONE_SOURCE
            )));
        }
    }
    if t.schema.is_some() {
        return Err(bad(format!(
            "kv bucket `{bucket}`: `schema` is for queue triggers; a change event's body is the platform's own (key, op, old and new values)"
        )));
    }
    if earlier
        .iter()
        .any(|o| matches!(o, Trigger::Kv(k) if k.bucket == bucket))
    {
        return Err(bad(format!(
            "kv bucket `{bucket}` is bound twice; use one trigger"
        )));
    }
    let max_concurrency = trigger_concurrency(t.max_concurrency)?;
    Ok(KvTrigger {
        bucket,
        max_concurrency,
    })
}

#[cfg(test)]
mod tests {
    use crate::{Manifest, Trigger};

    fn manifest(extra: &str) -> Result<Manifest, crate::ManifestError> {
        Manifest::from_toml(&format!(
            "name = \"sub\"\ntenant = \"acme\"\ncomponent = \"sub.wasm\"\nroutes = [\"/sub\"]\n{extra}"
        ))
    }

    #[test]
    fn a_kv_trigger_binds_a_bucket_and_grants_only_its_source() {
        let m = manifest("[[triggers]]\nkv = \"orders\"\nmax_concurrency = 2\n").unwrap();
        let Trigger::Kv(k) = &m.triggers[0] else {
            panic!("{:?}", m.triggers)
        };
        assert_eq!((k.bucket.as_str(), k.max_concurrency), ("orders", 2));
        assert_eq!(m.triggers[0].source("sub"), "kv/orders");
        let from: Vec<String> = m
            .permissions
            .invoke_from
            .iter()
            .map(ToString::to_string)
            .collect();
        // No `public`: with triggers and no `[invoke]`, only the source.
        assert_eq!(from, ["event:kv/orders"]);
        let defaulted = manifest("[[triggers]]\nkv = \"orders\"\n").unwrap();
        assert!(
            matches!(&defaulted.triggers[0], Trigger::Kv(k) if k.max_concurrency == crate::DEFAULT_TRIGGER_CONCURRENCY)
        );
        // The signed form names the bucket.
        let signed = m.signed_content();
        assert_eq!(
            signed.as_value()["triggers"],
            serde_json::json!([{"kv": "orders", "max_concurrency": 2}])
        );
    }

    #[test]
    fn bad_kv_triggers_are_refused_naming_the_problem() {
        for (extra, expect) in [
            ("kv = \"Orders\"", "kv bucket `Orders` is not a valid name"),
            ("kv = \"acme/orders\"", "is not a valid name"),
            ("kv = \"../other\"", "is not a valid name"),
            ("kv = \"\"", "is not a valid name"),
            ("kv = \"orders\"\nqueue = \"orders\"", "also has `queue`"),
            (
                "kv = \"orders\"\nschedule = \"* * * * * *\"",
                "also has `schedule`",
            ),
            (
                "kv = \"orders\"\nschema = '{}'",
                "`schema` is for queue triggers",
            ),
            ("kv = \"orders\"\nmax_concurrency = 0", "out of range"),
            ("kv = \"orders\"\nmax_concurrency = 1001", "out of range"),
            (
                "kv = \"orders\"\n[[triggers]]\nkv = \"orders\"",
                "bound twice",
            ),
        ] {
            let e = manifest(&format!("[[triggers]]\n{extra}\n")).unwrap_err();
            assert!(e.to_string().contains(expect), "{extra}: {e}");
        }
    }
}
