//! Key-value storage (`wasi:keyvalue`): data addressed as (caller's
//! tenant, bucket, key). The tenant never comes from the guest, so no
//! bucket name or key reaches another tenant's data. A write's change
//! records keep the trace context of the platform's `zerofn.kv` span (never
//! one the guest names), so a change stream's delivery continues the trace
//! of the request that made the write.

use bytes::Bytes;
use zerofn_policy::{Permit, RequestContext, Resource, RuntimeAction};
use zerofn_sandbox::host_interface::{limits, CapabilityError, KvOp, KvOutcome};
use zerofn_store::{KvWriter, TraceContext};
use zerofn_telemetry::SpanContext;

use super::InvocationHost;

impl InvocationHost {
    /// The policy resource of bucket `name` of the caller's tenant, if the
    /// name is one a manifest could grant.
    pub(super) fn bucket(&self, name: &str) -> Result<Resource, CapabilityError> {
        zerofn_policy::permissions::valid_bucket_name(name).map_err(|why| {
            CapabilityError::NoSuchStore(format!("bucket name `{}` {why}", name.escape_debug()))
        })?;
        Ok(Resource::Bucket {
            tenant: self.tenant().to_owned(),
            name: name.to_owned(),
        })
    }

    /// Decide, record, then perform one key-value operation.
    /// `trace`: the context of the `zerofn.kv` span making the call (none
    /// with tracing off), kept with a write's change records.
    pub(super) async fn kv_op(
        &self,
        bucket: &str,
        op: KvOp,
        trace: Option<&SpanContext>,
    ) -> Result<KvOutcome, CapabilityError> {
        let resource = self.bucket(bucket)?;
        let (action, context, verb) = match &op {
            KvOp::Get { key } => (
                RuntimeAction::KvGet,
                RequestContext::Key(key.clone()),
                "get",
            ),
            KvOp::Exists { key } => (
                RuntimeAction::KvGet,
                RequestContext::Key(key.clone()),
                "exists",
            ),
            KvOp::Set { key, .. } => (
                RuntimeAction::KvPut,
                RequestContext::Key(key.clone()),
                "set",
            ),
            KvOp::Increment { key, .. } => (
                RuntimeAction::KvPut,
                RequestContext::Key(key.clone()),
                "increment",
            ),
            KvOp::Delete { key } => (
                RuntimeAction::KvDelete,
                RequestContext::Key(key.clone()),
                "delete",
            ),
            KvOp::ListKeys { cursor } => (
                RuntimeAction::KvList,
                RequestContext::List(*cursor),
                "list-keys",
            ),
        };
        let what = format!("{} ({verb}) on bucket `{bucket}`", action.as_str(),);
        let authorized = self
            .authorize(action, resource, context, what)
            .await
            .map_err(|why| CapabilityError::Denied(why.to_string()))?;
        self.kv_act(&authorized.permit, bucket, op, trace).await
    }

    /// Perform an authorized key-value operation on the caller's tenant's
    /// data.
    async fn kv_act(
        &self,
        _permit: &Permit,
        bucket: &str,
        op: KvOp,
        trace: Option<&SpanContext>,
    ) -> Result<KvOutcome, CapabilityError> {
        let store = &self.services.store;
        let tenant = &self.manifest().tenant;
        // Who wrote a change, as its change-stream records name it, and the
        // span that wrote it: the change's deliveries continue this trace
        // (made only for writes; reads record nothing).
        let writer = || {
            KvWriter::new(&format!("function:{}", self.name()))
                .traced(trace.and_then(|c| TraceContext::new(&c.traceparent(), c.state.as_deref())))
        };
        let failed = |e: zerofn_store::StoreError| {
            if let zerofn_store::StoreError::KvStreamBacklog { .. } = e {
                // The tenant's own subscriber is behind: the guest learns why
                // its write was refused (bucket and function names only).
                return CapabilityError::Failed(e.to_string());
            }
            tracing::error!(invocation_id = %self.invocation_id, error = %e, "key-value store failed");
            CapabilityError::Failed("the key-value store failed".into())
        };
        Ok(match op {
            KvOp::Get { key } => KvOutcome::Value(
                store
                    .kv_get(tenant, bucket, &key)
                    .await
                    .map_err(failed)?
                    .map(Bytes::from),
            ),
            KvOp::Exists { key } => KvOutcome::Exists(
                store
                    .kv_exists(tenant, bucket, &key)
                    .await
                    .map_err(failed)?,
            ),
            KvOp::Set { key, value } => {
                store
                    .kv_set(tenant, bucket, &key, value.to_vec(), writer())
                    .await
                    .map_err(failed)?;
                KvOutcome::Done
            }
            KvOp::Delete { key } => {
                store
                    .kv_delete(tenant, bucket, &key, writer())
                    .await
                    .map_err(failed)?;
                KvOutcome::Done
            }
            KvOp::ListKeys { cursor } => {
                let (keys, cursor) = store
                    .kv_list(tenant, bucket, cursor, limits::LIST_PAGE)
                    .await
                    .map_err(failed)?;
                KvOutcome::Keys { keys, cursor }
            }
            KvOp::Increment { key, delta } => {
                match store
                    .kv_increment(tenant, bucket, &key, delta, writer())
                    .await
                    .map_err(failed)?
                {
                    Ok(n) => KvOutcome::Counter(n),
                    Err(zerofn_store::IncrementError::NotANumber) => {
                        return Err(CapabilityError::Failed(format!(
                            "the value of `{}` is not a decimal number",
                            key.escape_debug()
                        )))
                    }
                    Err(zerofn_store::IncrementError::Overflow) => {
                        return Err(CapabilityError::Failed("the counter would overflow".into()))
                    }
                }
            }
        })
    }
}
