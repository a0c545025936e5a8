#![forbid(unsafe_code)]
//! The function manifest, `zerofn.toml` ([`Manifest`]): the function's and tenant's names,
//! its component file, its [`Route`]s, [`Limits`], the layers it pins by digest (keyed by
//! [`InterfaceName`]), the permissions it asks for and the event sources bound to it
//! ([`Trigger`]: queues, key-value buckets' changes, schedules as a parsed [`Schedule`], and buckets' object events). [`normalize_path`] is the one path
//! normalisation that routes and the gateway share. [`Manifest::signed_content`] is the
//! manifest's signed form, which admission compares with the signed one
//! ([`first_difference`]). [`ManifestError::span_in`] finds the key or value an error is
//! about in the manifest's text ([`span`]), for messages that point at it.
//!
//! # Trust
//! * Trusts nothing in a manifest: it is parsed into types that hold their rules
//!   ([`zerofn_types::FunctionName`], [`zerofn_types::TenantName`], [`Route`],
//!   [`InterfaceName`], [`zerofn_types::Digest`]), with a size limit, and unknown, missing or
//!   mistyped keys, out-of-range limits and invalid entries are refused with a specific
//!   [`ManifestError`]. Outside text quoted in a message is escaped.
//! * Trusts `zerofn-policy` for the shape of permissions (a manifest's `[permissions]`,
//!   `[invoke]` and `[config]` become [`zerofn_policy::Permissions`]).
//! * A parsed manifest is a request, not a grant: it proves nothing about who signed the
//!   component (that is `zerofn-sigstore`'s and `zerofn-admission`'s job).
//! * Never panics on input.

mod bucket_trigger;
mod error;
mod kv_trigger;
mod manifest;
mod schedule;
mod signed;
pub mod span;
pub mod zone;

pub use bucket_trigger::{BucketTrigger, DEFAULT_BUCKET_ATTEMPTS, MAX_BUCKET_ATTEMPTS};
pub use error::ManifestError;
pub use kv_trigger::KvTrigger;
pub use manifest::{
    check_version, normalize_path, InterfaceName, Limits, Manifest, QueueTrigger, Route,
    ScheduleTrigger, Trigger, DEFAULT_TRIGGER_CONCURRENCY, MAX_CONCURRENCY, MAX_LAYERS, MAX_RATE,
    MAX_TRIGGERS, MAX_TRIGGER_CONCURRENCY, MAX_VERSION,
};
pub use schedule::{
    Missed, Schedule, ScheduleError, DEFAULT_TIMEZONE, MIN_INTERVAL_MS as MIN_SCHEDULE_INTERVAL_MS,
};
pub use signed::{canonical_bytes, first_difference, Difference, SignedContent};
