//! Wiring of the event sources (`zerofn-events`) into the platform: the
//! bindings (queues, key-value buckets and schedules) come from the functions deployed now
//! (their manifests' `[[triggers]]`), and deliveries and scheduled runs enter the gateway's in-process invoke
//! path with the event source as the caller. The control API's queue
//! routes (`api/queues.rs`) call [`zerofn_events::Queues`].
//!
//! # Trust
//! Trusts the route table to hold admitted functions only (their manifests
//! are the signed, admitted ones). Decides nothing itself: the gateway's
//! invoke path decides, limits, runs and records every delivery.

use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use zerofn_events::{
    Binding, Bindings, BoxFuture, Delivered, EventInvocation, Invoker, KvBinding, ScheduleBinding,
};
use zerofn_gateway::{Caller, EventRefused, Gateway, Routes};
use zerofn_manifest::{Manifest, Trigger};
use zerofn_store::{KvSubscription, Store};

/// Longest excerpt of a failed delivery's answer kept as the message's last error.
const MAX_ERROR_EXCERPT: usize = 256;

/// The bindings of the functions in the route table.
pub(crate) struct RouteBindings(pub(crate) Routes);

impl Bindings for RouteBindings {
    fn bindings(&self) -> Vec<Binding> {
        let table = self.0.snapshot();
        let mut out = Vec::new();
        for function in table.functions() {
            let manifest = function.artifact().manifest();
            for trigger in &manifest.triggers {
                if let Trigger::Queue(q) = trigger {
                    out.push(Binding {
                        tenant: manifest.tenant.as_str().to_owned(),
                        function: manifest.name.as_str().to_owned(),
                        queue: q.queue.clone(),
                        max_concurrency: q.max_concurrency,
                    });
                }
            }
        }
        // Bucket triggers: their event queues (`objects.rs`).
        out.extend(
            crate::objects::bucket_bindings(&self.0)
                .iter()
                .map(zerofn_events::BucketBinding::delivery_binding),
        );
        out
    }

    fn kv_streams(&self) -> Vec<KvBinding> {
        let table = self.0.snapshot();
        let mut out = Vec::new();
        for function in table.functions() {
            let manifest = function.artifact().manifest();
            for trigger in &manifest.triggers {
                if let Trigger::Kv(k) = trigger {
                    out.push(KvBinding {
                        tenant: manifest.tenant.as_str().to_owned(),
                        function: manifest.name.as_str().to_owned(),
                        bucket: k.bucket.clone(),
                        max_concurrency: k.max_concurrency,
                        // Longer than the function may run, so a delivery in
                        // flight is never offered a second time beside it.
                        lease_ms: u64::from(manifest.limits.timeout_ms)
                            .saturating_add(zerofn_events::KV_LEASE_MARGIN_MS),
                    });
                }
            }
        }
        out
    }

    fn schedules(&self) -> Vec<ScheduleBinding> {
        let table = self.0.snapshot();
        let mut out = Vec::new();
        for function in table.functions() {
            let manifest = function.artifact().manifest();
            for trigger in &manifest.triggers {
                if let Trigger::Schedule(s) = trigger {
                    out.push(ScheduleBinding {
                        tenant: manifest.tenant.as_str().to_owned(),
                        function: manifest.name.as_str().to_owned(),
                        name: s.name.clone(),
                        // The same text as the trigger's invoke grant.
                        source: trigger.source(manifest.name.as_str()),
                        schedule: s.schedule.clone(),
                        missed: s.missed,
                    });
                }
            }
        }
        out
    }
}

/// The key-value buckets `manifest` subscribes to (`[[triggers]] kv`).
pub(crate) fn kv_subscriptions(manifest: &Manifest) -> Vec<KvSubscription> {
    manifest
        .triggers
        .iter()
        .filter_map(|t| match t {
            Trigger::Kv(k) => Some(KvSubscription {
                tenant: manifest.tenant.as_str().to_owned(),
                bucket: k.bucket.clone(),
                function: manifest.name.as_str().to_owned(),
            }),
            _ => None,
        })
        .collect()
}

/// Subscribes at deploy, so the bucket records its changes from the deploy's
/// answer on. A failure is logged, not fatal: the function is in force, and
/// the change-stream loop subscribes it at its next pass (within a second).
pub(crate) async fn subscribe(store: &Store, subs: &[KvSubscription]) {
    let now = zerofn_events::Clock::now_ms(&zerofn_events::SystemClock);
    for sub in subs {
        if let Err(error) = store.kv_subscribe(sub, now).await {
            tracing::warn!(%error, tenant = %sub.tenant, bucket = %sub.bucket, "cannot subscribe a function to its bucket's changes");
        }
    }
}

/// Deliveries through the gateway's invoke path, in process.
pub(crate) struct GatewayInvoker(pub(crate) Arc<Gateway>);

impl Invoker for GatewayInvoker {
    fn invoke(&self, invocation: EventInvocation) -> BoxFuture<Delivered> {
        let gateway = self.0.clone();
        Box::pin(async move {
            let EventInvocation {
                tenant,
                function,
                source,
                event_id,
                attempt,
                request,
            } = invocation;
            let caller = Caller::Event {
                tenant: tenant.clone(),
                source,
                event_id,
                attempt,
            };
            let response = gateway
                .invoke_event(&tenant, &function, caller, request)
                .await;
            delivered(&response)
        })
    }
}

/// The delivery's outcome; for a failure, the status and an excerpt of the
/// answer (the platform's error JSON names the kind: `trap`, `timeout`,
/// `invoke_denied`...; a function's own body is the tenant's own data).
fn delivered(response: &Response<Bytes>) -> Delivered {
    let status = response.status().as_u16();
    if response.status().is_success() {
        return Delivered {
            status,
            error: None,
            give_up: false,
        };
    }
    // Only the platform marks an event its trigger's schema refused.
    let refused = response.extensions().get::<EventRefused>().is_some();
    let body = response.body();
    if refused {
        // The platform's own error JSON: the failing path and keyword, never a value.
        let message = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.pointer("/error/message")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| "does not match".to_owned());
        return Delivered {
            status,
            error: Some(format!(
                "refused before the function ran: the event does not match its trigger's schema: {}",
                zerofn_types::printable(&message.chars().take(MAX_ERROR_EXCERPT * 2).collect::<String>())
            )),
            give_up: true,
        };
    }
    let cut = body.len().min(MAX_ERROR_EXCERPT);
    let text = String::from_utf8_lossy(body.get(..cut).unwrap_or_default());
    let excerpt = zerofn_types::printable(text.trim());
    Delivered {
        status,
        error: Some(if excerpt.is_empty() {
            format!("the function answered {status}")
        } else {
            format!("the function answered {status}: {excerpt}")
        }),
        give_up: false,
    }
}

/// Functions publishing to their tenant's queues (`[permissions] publish`): the gateway
/// decided and recorded the capability; the queues check, record and commit the message
/// as every publish.
pub(crate) struct FunctionPublisher(pub(crate) zerofn_events::Queues);

impl zerofn_gateway::QueuePublisher for FunctionPublisher {
    fn publish<'a>(
        &'a self,
        actor: &'a str,
        tenant: &'a zerofn_types::TenantName,
        queue: &'a str,
        event: zerofn_gateway::OutgoingEvent,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<String, zerofn_gateway::PublishRefused>>
                + Send
                + 'a,
        >,
    > {
        Box::pin(async move {
            let message = zerofn_events::OutgoingMessage {
                id: event.id,
                event_type: event.event_type,
                content_type: event.content_type,
                group: event.group,
                data: event.data.to_vec(),
                traceparent: event.traceparent,
                tracestate: event.tracestate,
            };
            match self.0.publish(actor, tenant, queue, vec![message]).await {
                Ok(published) => published.into_iter().next().map(|p| p.id).ok_or_else(|| {
                    zerofn_gateway::PublishRefused {
                        status: 500,
                        kind: "store_error",
                        message: "the queue answered no message id".into(),
                    }
                }),
                Err(e) => Err(zerofn_gateway::PublishRefused {
                    status: e.status(),
                    kind: e.kind(),
                    message: e.to_string(),
                }),
            }
        })
    }
}
