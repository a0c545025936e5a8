//! Wiring of object storage (`zerofn_events::Objects`) into the platform:
//! the bucket bindings come from the functions deployed now (their
//! manifests' `[[triggers]] bucket = ...`), and their events ride the queue
//! delivery loop (`events.rs`). The control API's bucket routes are
//! `api/objects.rs`.
//!
//! # Trust
//! Trusts the route table to hold admitted functions only. Decides nothing
//! itself: the objects crate checks and audits every change, the gateway's
//! invoke path decides every delivery.

use zerofn_events::{BucketBinding, BucketBindings};
use zerofn_gateway::Routes;
use zerofn_manifest::Trigger;

use crate::events::RouteBindings;

/// The bucket bindings of the functions in `routes`.
pub(crate) fn bucket_bindings(routes: &Routes) -> Vec<BucketBinding> {
    let table = routes.snapshot();
    let mut out = Vec::new();
    for function in table.functions() {
        let manifest = function.artifact().manifest();
        for trigger in &manifest.triggers {
            if let Trigger::Bucket(b) = trigger {
                out.push(BucketBinding {
                    tenant: manifest.tenant.as_str().to_owned(),
                    function: manifest.name.as_str().to_owned(),
                    bucket: b.bucket.clone(),
                    created: b.created,
                    deleted: b.deleted,
                    prefix: b.prefix.clone(),
                    suffix: b.suffix.clone(),
                    max_concurrency: b.max_concurrency,
                    max_attempts: b.max_attempts,
                    dead_letter: b.dead_letter.clone(),
                });
            }
        }
    }
    out
}

impl BucketBindings for RouteBindings {
    fn bucket_bindings(&self) -> Vec<BucketBinding> {
        bucket_bindings(&self.0)
    }
}
