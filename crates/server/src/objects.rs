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

/// Functions reading and writing their tenant's objects (`[permissions]
/// buckets`): the gateway decided and recorded the capability; the objects
/// check, record and commit each change as every change.
pub(crate) struct FunctionObjects(pub(crate) zerofn_events::Objects);

fn refused(e: zerofn_events::ObjectsError) -> zerofn_gateway::ObjectRefused {
    zerofn_gateway::ObjectRefused {
        status: e.status(),
        kind: e.kind(),
        message: e.to_string(),
    }
}

type ObjectFuture<'a, T> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<T, zerofn_gateway::ObjectRefused>> + Send + 'a>,
>;

impl zerofn_gateway::ObjectHost for FunctionObjects {
    fn get<'a>(
        &'a self,
        tenant: &'a zerofn_types::TenantName,
        bucket: &'a str,
        key: &'a str,
    ) -> ObjectFuture<'a, zerofn_gateway::FunctionObject> {
        Box::pin(async move {
            let (row, data) = self.0.get(tenant, bucket, key).await.map_err(refused)?;
            Ok(zerofn_gateway::FunctionObject {
                content_type: row.content_type,
                digest: row.digest,
                data: bytes::Bytes::from(data),
            })
        })
    }

    fn put<'a>(
        &'a self,
        actor: &'a str,
        tenant: &'a zerofn_types::TenantName,
        bucket: &'a str,
        key: &'a str,
        content_type: Option<String>,
        data: bytes::Bytes,
        trace: Option<&'a zerofn_telemetry::TraceParent>,
    ) -> ObjectFuture<'a, String> {
        Box::pin(async move {
            let row = self
                .0
                .put(
                    actor,
                    tenant,
                    bucket,
                    key,
                    data.to_vec(),
                    content_type.as_deref(),
                    trace,
                )
                .await
                .map_err(refused)?;
            Ok(row.digest)
        })
    }

    fn delete<'a>(
        &'a self,
        actor: &'a str,
        tenant: &'a zerofn_types::TenantName,
        bucket: &'a str,
        key: &'a str,
        trace: Option<&'a zerofn_telemetry::TraceParent>,
    ) -> ObjectFuture<'a, ()> {
        Box::pin(async move {
            self.0
                .delete(actor, tenant, bucket, key, trace)
                .await
                .map(|_| ())
                .map_err(refused)
        })
    }
}
