//! The platform side of the host capabilities: for every key-value,
//! configuration, function-call, identity and outbound-HTTP call a guest
//! makes, *decide, audit, then act*.
//!
//! One [`InvocationHost`] exists per invocation and knows whose call it is:
//! the running function, identified by its current X.509-SVID, which is
//! verified (chain, expiry, revocation) before every decision, so a revoked
//! identity stops working at once. The decision comes from the runtime
//! Cedar policies ([`Policies`]); the audit record is durable before the
//! call acts; a failure to verify, decide or audit is a denial, which the
//! guest sees as an error while the invocation goes on. A capability acts
//! only with an [`Authorized`] value, which only [`InvocationHost::authorize`]
//! makes, from a policy [`Permit`] and the verified identity.
//!
//! One file per capability: `kv.rs` (key-value), `config.rs` (runtime
//! configuration), `calls.rs` (function-to-function calls), `identity.rs`
//! (JWT-SVIDs for the function), `egress.rs` (every other outbound
//! request); `destination.rs` reads where an outbound request goes, once.
//!
//! # Trust
//! Trusts the platform's services it is given ([`HostServices`]) and the
//! gateway behind [`Invocations`] to hold a nested invocation to its own
//! limits. Trusts nothing from the guest: bucket names, keys, URLs and
//! headers are the guest's and are decided on, never believed; the tenant
//! of key-value data and the caller of a function call come from the
//! platform, never from the guest.

mod calls;
mod config;
mod destination;
mod egress;
mod identity;
mod kv;
mod objects;
mod publish;

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use serde_json::{json, Value};
use zerofn_admission::Manifest;
use zerofn_audit::{Action, AuditLog, AuditRecord, Outcome};
use zerofn_identity::VerifiedSpiffeId;
use zerofn_policy::{
    Decision, Permit, Principal, RequestContext, Resource, RuntimeAction, RuntimeRequest,
};
use zerofn_sandbox::host_interface::{
    CapabilityError, HostCapabilities, KvOp, KvOutcome, OutboundError, SandboxRefusal,
};
use zerofn_sandbox::LoadedFunction;
use zerofn_store::Store;
use zerofn_telemetry::{Span, SpanContext, SpanKind, TraceHandle};

use zerofn_types::InvocationId;

use crate::caller::Caller;
use crate::limits::CallTree;
use crate::policies::Policies;

pub use destination::{IDENTITY_HOST, INTERNAL_SUFFIX};
pub use identity::WorkloadIdentity;
pub use objects::{
    FunctionObject, ObjectHost, ObjectRefused, MAX_FUNCTION_OBJECT_BYTES, OBJECTS_HOST,
};
pub use publish::{OutgoingEvent, PublishRefused, QueuePublisher, MAX_PUBLISH_BODY, QUEUES_HOST};

use destination::Destination;

/// Header carrying the calling function's verified SPIFFE ID to a callee.
/// Stripped from every request arriving through the public gateway.
pub const CALLER_HEADER: &str = "x-zerofn-caller-spiffe-id";

/// Most decisions listed in one invocation record.
const MAX_LISTED_DECISIONS: usize = 64;

/// A boxed future, so [`Invocations`] stays object safe.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The platform services every invocation's host uses: the audit log, the
/// runtime policies, the store of key-value data and the verifier of
/// workload identities.
pub(crate) struct HostServices {
    pub(crate) audit: AuditLog,
    pub(crate) policies: Policies,
    pub(crate) store: Store,
    pub(crate) identity: Arc<dyn WorkloadIdentity>,
    /// The egress gateway's client (resolution, range checks,
    /// connections); `None` when it could not be built: egress refused.
    pub(crate) egress: Option<Arc<zerofn_egress::EgressClient>>,
    /// The platform's queues (`[permissions] publish`); `None`: publishing refused.
    pub(crate) publisher: Option<Arc<dyn QueuePublisher>>,
    /// The platform's object storage (`[permissions] buckets`); `None`: refused.
    pub(crate) objects: Option<Arc<dyn ObjectHost>>,
}

/// What a function call needs of the gateway, and nothing more: find the
/// callee, and run it as a new invocation held to its own limits.
pub(crate) trait Invocations: Send + Sync + 'static {
    /// The function deployed as `tenant/name`, if any.
    fn function(&self, tenant: &str, name: &str) -> Option<Arc<LoadedFunction>>;

    /// Run a nested invocation; its answer, refusals included.
    fn invoke_nested(self: Arc<Self>, call: NestedCall) -> BoxFuture<'static, Response<Bytes>>;
}

/// A nested invocation: `function` run for `caller` at `depth`, within `tree`'s budget and
/// before `deadline`.
pub(crate) struct NestedCall {
    pub(crate) function: Arc<LoadedFunction>,
    pub(crate) request: Request<Bytes>,
    pub(crate) caller: Caller,
    pub(crate) depth: u32,
    pub(crate) tree: Arc<CallTree>,
    pub(crate) deadline: Instant,
    /// The caller's CLIENT span of the call, the parent of the callee's
    /// SERVER span (`None`: tracing off).
    pub(crate) trace: Option<TraceHandle>,
}

/// Proof that a capability call was allowed and recorded: the policy
/// permit and the caller's verified identity. Made only by
/// [`InvocationHost::authorize`]; every capability's action takes its
/// permit (`&Permit`), so none can act on a denial or without a decision.
pub(crate) struct Authorized {
    /// The permit, which the capability's action takes as its proof.
    pub(crate) permit: Permit,
    /// The verified identity the call is made with.
    pub(crate) caller: VerifiedSpiffeId,
}

/// Why a capability call was refused: the message the guest gets.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// The decision could not be recorded durably, so the call fails closed.
    #[error("{what} could not be recorded in the audit log, so it is denied")]
    NotRecorded {
        /// The call, as described in audit records.
        what: String,
    },
    /// An allow without a verified identity (which the policy should never give).
    #[error("{what}: allowed without a verified identity, so denied")]
    NoVerifiedIdentity {
        /// The call.
        what: String,
    },
    /// No policy permits the call: the manifest does not grant it.
    #[error("{what} by {caller} is not permitted: {explain} (missing permission `{permission}`)")]
    Unmatched {
        /// The call.
        what: String,
        /// The function making it.
        caller: String,
        /// The decision's explanation.
        explain: String,
        /// The grant the call needs, in the manifest's terms.
        permission: String,
    },
    /// A policy forbids the call (or the decision failed).
    #[error("{what} by {caller} is not permitted: {explain}")]
    Denied {
        /// The call.
        what: String,
        /// The function making it.
        caller: String,
        /// The decision's explanation.
        explain: String,
    },
}

/// One decision, as listed in audit records.
/// `permission` is the grant the request needs, in the manifest's terms
/// (`kv:orders:read`, `call:billing`, `config`, `invoke:public`): what the
/// access analyzer compares with what was granted.
pub(crate) fn decision_json(
    action: RuntimeAction,
    resource: &Resource,
    decision: &Decision,
    permission: &str,
) -> Value {
    json!({
        "action": action.as_str(),
        "resource": resource.describe(),
        "permission": permission,
        "allowed": decision.is_allowed(),
        "policies": decision.determining(),
        "explain": decision.explain(),
    })
}

/// The host capabilities of one invocation.
pub struct InvocationHost {
    services: Arc<HostServices>,
    invocations: Arc<dyn Invocations>,
    function: Arc<LoadedFunction>,
    invocation_id: InvocationId,
    depth: u32,
    /// Shared by every invocation of this root request.
    tree: Arc<CallTree>,
    /// When this invocation must be over; its callees get no later one.
    deadline: Instant,
    decisions: Mutex<Vec<Value>>,
    /// The guest's span: each host call is a span under it.
    trace: Option<TraceHandle>,
    /// A host call that may carry the trace beyond this invocation was made
    /// (a key-value operation, a message, an object, a function call, an
    /// outbound request): the invocation's record then names the trace
    /// (`crate::trace::passed_on_trace_id`).
    passed_on: AtomicBool,
}

impl InvocationHost {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        services: Arc<HostServices>,
        invocations: Arc<dyn Invocations>,
        function: Arc<LoadedFunction>,
        invocation_id: &InvocationId,
        depth: u32,
        tree: Arc<CallTree>,
        deadline: Instant,
        trace: Option<TraceHandle>,
    ) -> InvocationHost {
        InvocationHost {
            services,
            invocations,
            function,
            invocation_id: invocation_id.clone(),
            depth,
            tree,
            deadline,
            decisions: Mutex::new(Vec::new()),
            trace,
            passed_on: AtomicBool::new(false),
        }
    }

    /// Whether a host call that may carry the trace further was made.
    pub(crate) fn passed_trace_on(&self) -> bool {
        self.passed_on.load(Ordering::Relaxed)
    }

    /// [`InvocationHost::span`] of a host call whose request, message or
    /// write carries the trace context beyond this invocation.
    fn carrying_span(&self, name: impl Into<Cow<'static, str>>, kind: SpanKind) -> Span {
        self.passed_on.store(true, Ordering::Relaxed);
        self.span(name, kind)
    }

    /// A span of one host call under the guest's span (none with tracing off).
    fn span(&self, name: impl Into<Cow<'static, str>>, kind: SpanKind) -> Span {
        match &self.trace {
            Some(guest) => guest.child(name, kind),
            None => Span::none(),
        }
    }

    /// The `capability` audit record of one decision or refusal of this
    /// invocation; its detail is also listed (up to a bound) in the
    /// invocation's own record.
    fn capability_record(&self, outcome: Outcome, reason: String, detail: Value) -> AuditRecord {
        {
            let mut list = self
                .decisions
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if list.len() < MAX_LISTED_DECISIONS {
                list.push(detail.clone());
            }
        }
        AuditRecord::new("function", Action::Capability, outcome)
            .tenant(self.tenant())
            .function(self.name())
            .invocation_id(&self.invocation_id)
            .reason(reason)
            .detail(detail)
    }

    /// Append a record of something that has already failed for the guest:
    /// a record that cannot be written changes nothing for it, so it is
    /// logged instead.
    async fn record_refusal(&self, record: AuditRecord, what: &str) {
        if let Err(error) = self.services.audit.append(record).await {
            tracing::error!(invocation_id = %self.invocation_id, %error, "audit of {what} failed");
        }
    }

    /// The decisions made during the invocation, for its audit record.
    pub(crate) fn decisions(&self) -> Vec<Value> {
        self.decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The invoked function's admitted manifest: its names are the typed ones.
    fn manifest(&self) -> &Manifest {
        self.function.artifact().manifest()
    }

    fn tenant(&self) -> &str {
        self.manifest().tenant.as_str()
    }

    fn name(&self) -> &str {
        self.manifest().name.as_str()
    }

    fn me(&self) -> Principal {
        Principal::Function {
            tenant: self.tenant().to_owned(),
            name: self.name().to_owned(),
        }
    }

    /// The function itself, as a policy resource.
    fn me_as_resource(&self) -> Resource {
        Resource::Function {
            tenant: self.tenant().to_owned(),
            name: self.name().to_owned(),
        }
    }

    /// Verify the caller's identity, decide, and record the decision
    /// durably. [`Authorized`] only when allowed and recorded; otherwise
    /// the message the guest gets.
    async fn authorize(
        &self,
        action: RuntimeAction,
        resource: Resource,
        context: RequestContext,
        what: String,
    ) -> Result<Authorized, Refusal> {
        self.authorize_as(action, resource, context, what, None)
            .await
    }

    /// [`InvocationHost::authorize`], naming the grant the request needs
    /// when the capability knows it better than [`Self::permission_of`]
    /// (egress: the matching `[egress] allow` entry).
    async fn authorize_as(
        &self,
        action: RuntimeAction,
        resource: Resource,
        context: RequestContext,
        what: String,
        permission: Option<String>,
    ) -> Result<Authorized, Refusal> {
        let identity = self
            .services
            .identity
            .verify(&self.manifest().tenant, &self.manifest().name);
        let decision = match &identity {
            Ok(_) => {
                let policies = self.services.policies.current();
                let request = RuntimeRequest {
                    principal: self.me(),
                    action,
                    resource: resource.clone(),
                    context,
                };
                // Host calls run on the guest's fiber stack, where Cedar's
                // stack-depth guard (which measures the thread's stack)
                // refuses to evaluate anything. Decide on a runtime worker
                // instead; a failed task denies.
                tokio::spawn(async move { policies.decide(&request) })
                    .await
                    .unwrap_or_else(|e| {
                        Decision::error(format!("the policy decision task failed: {e}"))
                    })
            }
            Err(why) => Decision::error(format!("the function's identity is refused: {why}")),
        };
        let permission = permission.unwrap_or_else(|| self.permission_of(action, &resource));
        let mut detail = decision_json(action, &resource, &decision, &permission);
        if let (Some(obj), Ok(id)) = (detail.as_object_mut(), &identity) {
            obj.insert("principal".into(), id.to_string().into());
        }
        let outcome = if decision.is_allowed() {
            Outcome::Allow
        } else {
            Outcome::Deny
        };
        let record =
            self.capability_record(outcome, format!("{what}: {}", decision.explain()), detail);
        if let Err(error) = self.services.audit.append(record).await {
            tracing::error!(invocation_id = %self.invocation_id, %error, "capability audit failed; call denied");
            return Err(Refusal::NotRecorded { what });
        }
        let explain = decision.explain();
        match (decision, identity) {
            // Allowed implies the identity verified (a refused identity
            // is a denial above); the verified SPIFFE ID is the caller's.
            (Decision::Allow(permit), Ok(caller)) => Ok(Authorized { permit, caller }),
            (Decision::Allow(_), Err(_)) => Err(Refusal::NoVerifiedIdentity { what }),
            (Decision::Deny(reason), _) if reason.is_unmatched() => Err(Refusal::Unmatched {
                what,
                caller: self.me().describe(),
                explain,
                permission,
            }),
            (Decision::Deny(_), _) => Err(Refusal::Denied {
                what,
                caller: self.me().describe(),
                explain,
            }),
        }
    }

    /// The grant a capability request needs, in manifest terms.
    fn permission_of(&self, action: RuntimeAction, resource: &Resource) -> String {
        match (action, resource) {
            (_, Resource::Bucket { name, .. }) => format!(
                "kv:{name}:{}",
                if action.is_kv_write() {
                    "write"
                } else {
                    "read"
                }
            ),
            (RuntimeAction::Call, Resource::Function { tenant, name })
                if tenant == self.tenant() =>
            {
                format!("call:{name}")
            }
            (RuntimeAction::Call, Resource::Function { tenant, name }) => {
                format!("call:{tenant}/{name}")
            }
            (RuntimeAction::ConfigRead, _) => "config".to_owned(),
            (RuntimeAction::SvidJwt, _) => "identity".to_owned(),
            (_, Resource::Host(h)) => format!("http:{h}"),
            (_, Resource::Queue { name, .. }) => format!("publish:{name}"),
            (RuntimeAction::ObjectWrite, Resource::ObjectBucket { name, .. }) => {
                format!("buckets:{name}:write")
            }
            (_, Resource::ObjectBucket { name, .. }) => format!("buckets:{name}:read"),
            (_, Resource::Function { tenant, name }) => {
                format!("{}:{tenant}/{name}", action.as_str())
            }
        }
    }
}

impl HostCapabilities for InvocationHost {
    fn kv_open<'a>(
        &'a self,
        bucket: &'a str,
    ) -> zerofn_sandbox::host_interface::BoxFuture<'a, Result<(), CapabilityError>> {
        Box::pin(async move { self.bucket(bucket).map(|_| ()) })
    }

    fn kv<'a>(
        &'a self,
        bucket: &'a str,
        op: KvOp,
    ) -> zerofn_sandbox::host_interface::BoxFuture<'a, Result<KvOutcome, CapabilityError>> {
        Box::pin(async move {
            let mut span = self.carrying_span("zerofn.kv", SpanKind::Internal);
            if span.is_recording() {
                span.set("zerofn.kv.bucket", bucket.to_owned());
            }
            // A write's change records carry this span's context: their
            // deliveries are its children (`kv.rs`).
            let result = self.kv_op(bucket, op, span.context()).await;
            if result.is_err() {
                span.fail("refused");
            }
            result
        })
    }

    fn config_get<'a>(
        &'a self,
        key: &'a str,
    ) -> zerofn_sandbox::host_interface::BoxFuture<'a, Result<Option<String>, CapabilityError>>
    {
        Box::pin(async move {
            let mut span = self.span("zerofn.config", SpanKind::Internal);
            let result = self.config(Some(key)).await;
            if result.is_err() {
                span.fail("refused");
            }
            Ok(result?.into_iter().next().map(|(_, v)| v))
        })
    }

    fn config_get_all(
        &self,
    ) -> zerofn_sandbox::host_interface::BoxFuture<'_, Result<Vec<(String, String)>, CapabilityError>>
    {
        Box::pin(async move {
            let mut span = self.span("zerofn.config", SpanKind::Internal);
            let result = self.config(None).await;
            if result.is_err() {
                span.fail("refused");
            }
            result
        })
    }

    fn outbound(
        &self,
        request: Request<Bytes>,
    ) -> zerofn_sandbox::host_interface::BoxFuture<'_, Result<Response<Bytes>, OutboundError>> {
        Box::pin(async move {
            let mut request = request;
            let (mut span, result) = match Destination::of(request.uri()) {
                Destination::Identity => {
                    let span = self.span("zerofn.identity.jwt_svid", SpanKind::Internal);
                    (span, Ok(self.jwt_svid(&request).await))
                }
                Destination::Queues => {
                    let mut span = self.carrying_span("zerofn.queue.publish", SpanKind::Producer);
                    if span.is_recording() {
                        span.set("messaging.system", "zerofn");
                        span.set(
                            "messaging.destination.name",
                            request.uri().path().to_owned(),
                        );
                    }
                    // The message carries the PRODUCER span's context: its
                    // delivery is a child of the publish (`trace.rs`).
                    crate::trace::propagate(span.context(), request.headers_mut());
                    (span, Ok(self.publish(request).await))
                }
                Destination::Objects => {
                    let mut span = self.carrying_span("zerofn.object", SpanKind::Internal);
                    if span.is_recording() {
                        span.set(
                            "http.request.method",
                            crate::trace::method_name(request.method()),
                        );
                    }
                    // A change's events carry this span's context: their
                    // deliveries are its children (`objects.rs`).
                    let trace = span.context().map(SpanContext::as_parent);
                    (span, Ok(self.object(request, trace.as_ref()).await))
                }
                Destination::Function { tenant, name } => {
                    // A CLIENT span; the callee's SERVER span is its child.
                    let mut span = self.carrying_span("zerofn.call", SpanKind::Client);
                    if span.is_recording() {
                        span.set("faas.invoked_name", name.as_str().to_owned());
                        span.set("faas.invoked_provider", "zerofn");
                        span.set("zerofn.callee", format!("{tenant}/{name}"));
                        span.set(
                            "http.request.method",
                            crate::trace::method_name(request.method()),
                        );
                    }
                    crate::trace::propagate(span.context(), request.headers_mut());
                    let handle = span.handle();
                    (span, self.call(request, tenant, name, handle).await)
                }
                Destination::External => {
                    let method = crate::trace::method_name(request.method());
                    let mut span = self.carrying_span(method.clone(), SpanKind::Client);
                    if span.is_recording() {
                        span.set("http.request.method", method);
                        if let Some(host) = request.uri().host() {
                            span.set("server.address", host.to_owned());
                        }
                        if let Some(port) = request.uri().port_u16() {
                            span.set("server.port", port);
                        }
                        if let Some(scheme) = request.uri().scheme_str() {
                            span.set("url.scheme", scheme.to_owned());
                        }
                    }
                    // The platform sets the trace context of what leaves it;
                    // a guest's own is replaced (see `trace.rs`).
                    crate::trace::propagate(span.context(), request.headers_mut());
                    (span, self.egress(request).await)
                }
            };
            match &result {
                Ok(response) => {
                    span.set("http.response.status_code", response.status().as_u16());
                    if response.status().is_server_error() {
                        span.fail(response.status().as_str());
                    }
                }
                Err(_) => span.fail("refused"),
            }
            result
        })
    }

    fn refused(
        &self,
        refusal: SandboxRefusal,
    ) -> zerofn_sandbox::host_interface::BoxFuture<'_, ()> {
        Box::pin(async move {
            let detail = json!({
                "capability": refusal.capability,
                "allowed": false,
                "refused_by": "sandbox",
                "explain": refusal.reason,
            });
            let record = self.capability_record(
                Outcome::Deny,
                format!("{}: {}", refusal.capability, refusal.reason),
                detail,
            );
            // The call has failed already; a record that cannot be written
            // changes nothing for the guest, so it is logged instead.
            self.record_refusal(record, "a sandbox refusal").await;
        })
    }
}
