//! The invoke path: route, decide from the head, read the body within its
//! limits, run the function in the sandbox with its host capabilities, and
//! record the invocation before its response leaves; and the same for a
//! call from another function.
//!
//! # Trust
//! Trusts nothing about a request: the path is the only thing used to
//! route, the body is read only after the invoke decision allowed the
//! caller and only within the function's and the gateway's limits. A
//! function runs only with an invoke [`Permit`]; its response is released
//! only once its audit record is durable.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Body;

use zerofn_audit::{Action, AuditLog, AuditRecord, Outcome};
use zerofn_listener::{PeerAddr, PeerCertificateChain, RefusalStreak};
use zerofn_policy::{Decision, Permit, RequestContext, Resource, RuntimeAction, RuntimeRequest};
use zerofn_sandbox::{InvokeOptions, LoadedFunction, Phases};
use zerofn_telemetry::{Span, SpanKind, TraceId};

use zerofn_types::InvocationId;

use crate::caller::Caller;
use crate::errors::{error_response, invoke_status};
use crate::gateway::{Gateway, INVOCATION_HEADER};
use crate::host::{decision_json, InvocationHost, NestedCall, CALLER_HEADER};
use crate::limits::{earlier, strip_platform_headers, BodyReservation, CallTree};

impl Gateway {
    /// The public path: route, decide from the head, then read the body
    /// within its limits, then run.
    pub(crate) async fn invoke<B>(
        self: &Arc<Self>,
        req: Request<B>,
        id: &InvocationId,
        trace: &mut Span,
    ) -> Response<Bytes>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let trace_id = crate::trace::trace_id(trace);
        let ip = req.extensions().get::<PeerAddr>().map(PeerAddr::ip);
        let table = self.routes().snapshot();
        let Some(function) = table.lookup(req.uri().path()).cloned() else {
            let record = AuditRecord::new("gateway", Action::Invoke, Outcome::Deny)
                .invocation_id(id)
                .status(404)
                .reason("no_route: no function is deployed on this path")
                .detail(serde_json::json!({
                    "caller": Caller::Public { ip }.json(),
                    "method": req.method().as_str(),
                    "path": req.uri().path(),
                }));
            return self
                .refuse(
                    ip,
                    record,
                    id,
                    trace_id,
                    StatusCode::NOT_FOUND,
                    "no_route",
                    "no function is deployed on this path",
                )
                .await;
        };
        crate::trace::routed(
            trace,
            &function,
            self.host_services().identity.as_ref(),
            id,
            "http",
        );
        let (mut parts, body) = req.into_parts();
        let chain = parts.extensions.remove::<PeerCertificateChain>();
        let streak = parts.extensions.remove::<RefusalStreak>();
        // Only the platform speaks in its header namespace, in any
        // spelling; it says who called and which invocation this is.
        strip_platform_headers(&mut parts.headers);
        // Who is calling, proved from the head (`authn.rs`).
        let mut authn_span = trace.child("zerofn.authenticate", SpanKind::Internal);
        let caller = match self
            .authenticate(
                &function,
                &parts.headers,
                chain.as_ref(),
                ip,
                id,
                trace_id,
                started,
            )
            .await
        {
            Ok(caller) => caller,
            Err(refusal) => {
                authn_span.fail("refused");
                return refusal;
            }
        };
        crate::trace::caller(&mut authn_span, &caller);
        drop(authn_span);
        crate::trace::caller(trace, &caller);
        crate::authn::present(
            &caller,
            &mut parts.headers,
            function
                .artifact()
                .manifest()
                .permissions
                .pass_authorization,
        );
        let mut unrecorded = Unrecorded::new(
            self.audit().clone(),
            &function,
            id,
            crate::trace::passed_on_trace_id(trace),
            &caller,
            0,
            started,
        );

        // Decide from the head: an unauthorised caller is refused before
        // a byte of its body is read.
        let (decision, invoke_decision) = self.decide_traced(
            trace,
            &function,
            &caller,
            parts.method.as_str(),
            parts.uri.path(),
            0,
        );
        let permit = match decision {
            Decision::Allow(permit) => permit,
            Decision::Deny(reason) => {
                unrecorded.disarm();
                let (record, message) = self.invoke_denied(
                    &function,
                    &caller,
                    0,
                    id,
                    started,
                    &Decision::Deny(reason),
                    invoke_decision,
                );
                return self
                    .refuse(
                        ip,
                        record,
                        id,
                        trace_id,
                        StatusCode::FORBIDDEN,
                        "invoke_denied",
                        &message,
                    )
                    .await;
            }
        };
        // The function's and its tenant's rate and concurrency limits,
        // after the decision (an unauthorised caller spends no one's
        // budget) and before the body is read. The slots live until the
        // invocation is over.
        let _admitted = match self.limits().admit(&function, &table) {
            Ok(admitted) => {
                if let Some(streak) = &streak {
                    streak.admitted();
                }
                admitted
            }
            Err(refusal) => {
                unrecorded.disarm();
                let resp = self
                    .limit_refused(
                        &function,
                        &caller,
                        id,
                        trace_id,
                        started,
                        refusal,
                        invoke_decision,
                    )
                    .await;
                // Recorded already; a client that hangs up during the
                // pause loses only the answer.
                if let Some(pause) = streak
                    .as_ref()
                    .and_then(|s| crate::ratelimit::refusal_pause(s.refused()))
                {
                    tokio::time::sleep(pause).await;
                }
                return resp;
            }
        };
        // The head against the function's path, query and headers schemas,
        // before a byte of the body is read.
        let mut head_span = trace.child("zerofn.validate", SpanKind::Internal);
        head_span.set("zerofn.validate.part", "head");
        let head_checked = crate::validation::validate_head(&function, &parts);
        if head_checked.is_err() {
            head_span.fail("invalid_request");
        }
        drop(head_span);
        if let Err(invalid) = head_checked {
            unrecorded.disarm();
            return self
                .refuse_invalid(
                    ip,
                    &function,
                    &caller,
                    id,
                    trace_id,
                    started,
                    &invalid,
                    invoke_decision,
                )
                .await;
        }
        unrecorded.decided(invoke_decision);

        // Read the body within the function's size and time limits and
        // the gateway's budget of bodies in flight, before the guest sees
        // anything. The reservation lives until the invocation is over.
        let max_body = max_body_bytes(&function);
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut reservation = self.bodies().reservation();
        let read = match declared {
            Some(len) if len > max_body as u64 => Err(BodyError::TooLarge),
            Some(len) if !reservation.grow_to(usize::try_from(len).unwrap_or(usize::MAX)) => {
                Err(BodyError::Busy)
            }
            _ => match tokio::time::timeout(
                self.config().body_read_timeout,
                read_body(body, max_body, &mut reservation),
            )
            .await
            {
                Ok(read) => read,
                Err(_) => Err(BodyError::TimedOut),
            },
        };
        let body = match read {
            Ok(body) => body,
            Err(error) => {
                unrecorded.disarm();
                let (status, kind, reason, message) = error.describe(max_body);
                let record = invoke_record(&function, id, started, Outcome::Deny, status.as_u16())
                    .reason(reason);
                return self
                    .refuse(ip, record, id, trace_id, status, kind, &message)
                    .await;
            }
        };
        // The body against the function's body schema, before the function
        // runs. A large body is parsed off the async workers.
        if function.artifact().manifest().schema.has_body() {
            let mut body_span = trace.child("zerofn.validate", SpanKind::Internal);
            body_span.set("zerofn.validate.part", "body");
            let checked = if body.len() > INLINE_VALIDATION_BYTES {
                let (f, b) = (function.clone(), body.clone());
                tokio::task::spawn_blocking(move || crate::validation::validate_body(&f, &b))
                    .await
                    // The validation task failed: the body is invalid (fail closed).
                    .unwrap_or(Err(zerofn_validation::Invalid {
                        part: zerofn_validation::RequestPart::Body,
                        reason: zerofn_validation::InvalidReason::Malformed {
                            detail: "could not be validated",
                        },
                    }))
            } else {
                crate::validation::validate_body(&function, &body)
            };
            if checked.is_err() {
                body_span.fail("invalid_request");
            }
            drop(body_span);
            if let Err(invalid) = checked {
                let decision = unrecorded.disarm_decision().unwrap_or_default();
                return self
                    .refuse_invalid(
                        ip, &function, &caller, id, trace_id, started, &invalid, decision,
                    )
                    .await;
            }
        }
        let mut request = Request::from_parts(parts, body);
        if let Ok(v) = HeaderValue::from_str(id.as_str()) {
            request.headers_mut().insert(INVOCATION_HEADER, v);
        }
        let response = self
            .run(
                function,
                request,
                &caller,
                0,
                id,
                started,
                CallTree::root(self.config().max_invocations_per_request),
                None,
                &mut unrecorded,
                &permit,
                trace,
            )
            .await;
        drop(reservation);
        response
    }

    /// A call from another function (`http://<fn>.<tenant>.fn.internal/`):
    /// a new invocation of `function`, decided by its invoke policy and
    /// held to every limit of the callee, within the caller's deadline
    /// and its call tree's budget.
    pub(crate) async fn invoke_function(self: Arc<Self>, mut call: NestedCall) -> Response<Bytes> {
        // The callee's SERVER span is a child of the caller's CLIENT span.
        let mut trace = match call.trace.take() {
            Some(parent) => parent.child("invoke", SpanKind::Server),
            None => Span::none(),
        };
        if trace.is_recording() {
            crate::trace::http_request(
                &mut trace,
                call.request.method(),
                call.request.uri(),
                call.request.headers(),
                None,
            );
        }
        let resp = self.invoke_function_traced(call, &mut trace).await;
        crate::trace::status(&mut trace, resp.status());
        resp
    }

    async fn invoke_function_traced(
        self: Arc<Self>,
        call: NestedCall,
        trace: &mut Span,
    ) -> Response<Bytes> {
        let NestedCall {
            function,
            mut request,
            caller,
            depth,
            tree,
            deadline,
            trace: _,
        } = call;
        let started = Instant::now();
        let id = InvocationId::new();
        let trace_id = crate::trace::trace_id(trace);
        crate::trace::routed(
            trace,
            &function,
            self.host_services().identity.as_ref(),
            &id,
            "http",
        );
        crate::trace::caller(trace, &caller);
        strip_platform_headers(request.headers_mut());
        if let Caller::Function { spiffe_id, .. } = &caller {
            if let Ok(v) = HeaderValue::from_str(&spiffe_id.to_string()) {
                request.headers_mut().insert(CALLER_HEADER, v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(id.as_str()) {
            request.headers_mut().insert(INVOCATION_HEADER, v);
        }
        let mut unrecorded = Unrecorded::new(
            self.audit().clone(),
            &function,
            &id,
            crate::trace::passed_on_trace_id(trace),
            &caller,
            depth,
            started,
        );
        let (decision, invoke_decision) = self.decide_traced(
            trace,
            &function,
            &caller,
            request.method().as_str(),
            request.uri().path(),
            depth,
        );
        let mut resp = if let Decision::Deny(_) = &decision {
            unrecorded.disarm();
            let (record, message) = self.invoke_denied(
                &function,
                &caller,
                depth,
                &id,
                started,
                &decision,
                invoke_decision,
            );
            self.refuse(
                None,
                record,
                &id,
                trace_id,
                StatusCode::FORBIDDEN,
                "invoke_denied",
                &message,
            )
            .await
        } else if request.body().len() > max_body_bytes(&function) {
            // The callee's body limit holds for calls as for the public.
            unrecorded.disarm();
            let (status, kind, reason, message) =
                BodyError::TooLarge.describe(max_body_bytes(&function));
            let record = invoke_record(&function, &id, started, Outcome::Deny, status.as_u16())
                .reason(reason)
                .detail(serde_json::json!({
                    "caller": caller.json(),
                    "depth": depth,
                    "decisions": [invoke_decision],
                }));
            self.refuse(None, record, &id, trace_id, status, kind, &message)
                .await
        } else if let Decision::Allow(permit) = &decision {
            unrecorded.decided(invoke_decision);
            self.run(
                function,
                request,
                &caller,
                depth,
                &id,
                started,
                tree,
                Some(deadline),
                &mut unrecorded,
                permit,
                trace,
            )
            .await
        } else {
            // Unreachable: a denial was answered above. Deny all the same.
            unrecorded.disarm();
            refusal_unrecorded(&id)
        };
        if let Ok(v) = HeaderValue::from_str(id.as_str()) {
            resp.headers_mut().insert(INVOCATION_HEADER, v);
        }
        resp
    }

    /// An event delivered in process by an event source (`zerofn-events`):
    /// a new invocation of the tenant's function `name`, for `caller` (a
    /// [`Caller::Event`]), decided by the function's invoke policy, held to
    /// its rate, concurrency and body limits, run and recorded exactly as a
    /// public request (no socket: the event never crosses the listener).
    /// The record's caller names the source, the event id and the attempt.
    pub async fn invoke_event(
        self: &Arc<Self>,
        tenant: &str,
        name: &str,
        caller: Caller,
        request: Request<Bytes>,
    ) -> Response<Bytes> {
        // The delivery's SERVER span (the platform's delivery is the
        // request): in the producer's trace when the event carries one,
        // else the root of a trace of its own.
        let parent = if self.tracer().is_enabled() {
            crate::trace::event_parent(request.headers())
        } else {
            None
        };
        let mut trace = self.tracer().server_span("invoke", parent);
        let resp = self
            .invoke_event_traced(tenant, name, caller, request, &mut trace)
            .await;
        crate::trace::status(&mut trace, resp.status());
        resp
    }

    async fn invoke_event_traced(
        self: &Arc<Self>,
        tenant: &str,
        name: &str,
        caller: Caller,
        mut request: Request<Bytes>,
        trace: &mut Span,
    ) -> Response<Bytes> {
        let started = Instant::now();
        let id = InvocationId::new();
        let trace_id = crate::trace::trace_id(trace);
        let table = self.routes().snapshot();
        let Some(function) = table.function(tenant, name).cloned() else {
            // Undeployed since the binding was read: nothing ran, nothing to
            // record; the event is delivered again later.
            return error_response(
                StatusCode::NOT_FOUND,
                "no_function",
                "the function bound to this event source is not deployed",
                Some(&id),
            );
        };
        let trigger = match &caller {
            Caller::Event { source, .. } if source.starts_with("schedule/") => "timer",
            _ => "pubsub",
        };
        crate::trace::routed(
            trace,
            &function,
            self.host_services().identity.as_ref(),
            &id,
            trigger,
        );
        crate::trace::caller(trace, &caller);
        strip_platform_headers(request.headers_mut());
        // The function learns which source delivers (`x-zerofn-caller:
        // event:queue/<name>`), set after the platform's namespace was cleared.
        crate::authn::present(&caller, request.headers_mut(), false);
        // wasi:http wants an authority: the function's own internal name,
        // as a call from another function would have it.
        if request.uri().authority().is_none() && !request.headers().contains_key(header::HOST) {
            let host = format!("{name}.{tenant}{}", crate::host::INTERNAL_SUFFIX);
            if let Ok(v) = HeaderValue::from_str(&host) {
                request.headers_mut().insert(header::HOST, v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(id.as_str()) {
            request.headers_mut().insert(INVOCATION_HEADER, v);
        }
        let mut unrecorded = Unrecorded::new(
            self.audit().clone(),
            &function,
            &id,
            crate::trace::passed_on_trace_id(trace),
            &caller,
            0,
            started,
        );
        let (decision, invoke_decision) = self.decide_traced(
            trace,
            &function,
            &caller,
            request.method().as_str(),
            request.uri().path(),
            0,
        );
        let permit = match decision {
            Decision::Allow(permit) => permit,
            Decision::Deny(reason) => {
                unrecorded.disarm();
                let (record, message) = self.invoke_denied(
                    &function,
                    &caller,
                    0,
                    &id,
                    started,
                    &Decision::Deny(reason),
                    invoke_decision,
                );
                return self
                    .refuse(
                        None,
                        record,
                        &id,
                        trace_id,
                        StatusCode::FORBIDDEN,
                        "invoke_denied",
                        &message,
                    )
                    .await;
            }
        };
        let _admitted = match self.limits().admit(&function, &table) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                unrecorded.disarm();
                return self
                    .limit_refused(
                        &function,
                        &caller,
                        &id,
                        trace_id,
                        started,
                        refusal,
                        invoke_decision,
                    )
                    .await;
            }
        };
        if request.body().len() > max_body_bytes(&function) {
            unrecorded.disarm();
            let (status, kind, reason, message) =
                BodyError::TooLarge.describe(max_body_bytes(&function));
            let record = invoke_record(&function, &id, started, Outcome::Deny, status.as_u16())
                .reason(reason)
                .detail(serde_json::json!({
                    "caller": caller.json(),
                    "depth": 0,
                    "decisions": [invoke_decision],
                }));
            return self
                .refuse(None, record, &id, trace_id, status, kind, &message)
                .await;
        }
        // The event's data against its trigger's schema, exactly as a body
        // against `[schema] body`: a mismatch is refused and recorded before
        // the function runs, and marked so the source does not retry it.
        if let Some(schema) = crate::validation::event_schema(&function, &caller) {
            let checked = if request.body().len() > INLINE_VALIDATION_BYTES {
                let body = request.body().clone();
                tokio::task::spawn_blocking(move || {
                    zerofn_validation::validate_event(&schema, &body)
                })
                .await
                // The validation task failed: the event is invalid (fail closed).
                .unwrap_or(Err(zerofn_validation::Invalid {
                    part: zerofn_validation::RequestPart::Event,
                    reason: zerofn_validation::InvalidReason::Malformed {
                        detail: "could not be validated",
                    },
                }))
            } else {
                zerofn_validation::validate_event(&schema, request.body())
            };
            if let Err(invalid) = checked {
                unrecorded.disarm();
                let mut refused = self
                    .refuse_invalid(
                        None,
                        &function,
                        &caller,
                        &id,
                        trace_id,
                        started,
                        &invalid,
                        invoke_decision,
                    )
                    .await;
                if refused.status().is_client_error() {
                    refused
                        .extensions_mut()
                        .insert(crate::validation::EventRefused);
                }
                return refused;
            }
        }
        unrecorded.decided(invoke_decision);
        let mut response = self
            .run(
                function,
                request,
                &caller,
                0,
                &id,
                started,
                CallTree::root(self.config().max_invocations_per_request),
                None,
                &mut unrecorded,
                &permit,
                trace,
            )
            .await;
        if let Ok(v) = HeaderValue::from_str(id.as_str()) {
            response.headers_mut().insert(INVOCATION_HEADER, v);
        }
        response
    }

    /// [`Gateway::decide`] in a `zerofn.decide` span under `trace`, the
    /// decision on both.
    fn decide_traced(
        &self,
        trace: &mut Span,
        function: &LoadedFunction,
        caller: &Caller,
        method: &str,
        path: &str,
        depth: u32,
    ) -> (Decision, serde_json::Value) {
        let mut span = trace.child("zerofn.decide", SpanKind::Internal);
        let decided = self.decide(function, caller, method, path, depth);
        if span.is_recording() {
            span.set("zerofn.action", "invoke");
            crate::trace::decision(&mut span, &decided.0);
            crate::trace::decision(trace, &decided.0);
        }
        decided
    }

    /// The invoke decision for `caller` on `function`, and its listing.
    fn decide(
        &self,
        function: &LoadedFunction,
        caller: &Caller,
        method: &str,
        path: &str,
        depth: u32,
    ) -> (Decision, serde_json::Value) {
        let manifest = function.artifact().manifest();
        let resource = Resource::Function {
            tenant: manifest.tenant.as_str().to_owned(),
            name: manifest.name.as_str().to_owned(),
        };
        let decision = self
            .host_services()
            .policies
            .current()
            .decide(&RuntimeRequest {
                principal: caller.principal(),
                action: RuntimeAction::Invoke,
                resource: resource.clone(),
                context: RequestContext::Invoke {
                    method: method.to_owned(),
                    path: path.to_owned(),
                    source: caller.source(),
                    depth,
                    caller: caller.attributes(),
                },
            });
        let listed = decision_json(
            RuntimeAction::Invoke,
            &resource,
            &decision,
            &caller.invoke_permission(manifest.tenant.as_str()),
        );
        (decision, listed)
    }

    /// The record and message of a refused invoke decision.
    #[allow(clippy::too_many_arguments)]
    fn invoke_denied(
        &self,
        function: &LoadedFunction,
        caller: &Caller,
        depth: u32,
        id: &InvocationId,
        started: Instant,
        decision: &Decision,
        invoke_decision: serde_json::Value,
    ) -> (AuditRecord, String) {
        let manifest = function.artifact().manifest();
        let message = format!(
            "{} may not invoke {}: {}",
            caller.principal().describe(),
            Resource::Function {
                tenant: manifest.tenant.as_str().to_owned(),
                name: manifest.name.as_str().to_owned(),
            }
            .describe(),
            decision.explain()
        );
        // A client certificate no accepted CA issued made the caller anonymous: say so.
        let reason = match caller {
            Caller::UntrustedCertificate { refusal, .. } => {
                format!("{}; authn: {}", decision.explain(), refusal.reason())
            }
            _ => decision.explain(),
        };
        let record = invoke_record(function, id, started, Outcome::Deny, 403)
            .reason(reason)
            .detail(serde_json::json!({
                "caller": caller.json(),
                "depth": depth,
                "decisions": [invoke_decision],
            }));
        (record, message)
    }

    /// Run an allowed invocation with its capabilities, record it. Only an
    /// invoke [`Permit`] lets a function run.
    #[allow(clippy::too_many_arguments)]
    async fn run(
        self: &Arc<Self>,
        function: Arc<LoadedFunction>,
        mut request: Request<Bytes>,
        caller: &Caller,
        depth: u32,
        id: &InvocationId,
        started: Instant,
        tree: Arc<CallTree>,
        deadline: Option<Instant>,
        unrecorded: &mut Unrecorded,
        permit: &Permit,
        trace: &Span,
    ) -> Response<Bytes> {
        // The deadline this invocation's own calls are held to: its own
        // timeout from now, within its caller's. (The sandbox starts the
        // clock once it has a slot, so this is never later than the
        // guest's real deadline.)
        let own =
            Duration::from_millis(u64::from(function.artifact().manifest().limits.timeout_ms));
        let host_deadline = earlier(deadline, Instant::now() + own);
        // The guest's span: its host calls are its children, and the guest
        // gets its context as `traceparent`, to continue the trace itself.
        let mut guest = trace.child("zerofn.guest", SpanKind::Internal);
        crate::trace::propagate(guest.context(), request.headers_mut());
        let phases = guest.is_recording().then(|| Arc::new(Phases::default()));
        let host = Arc::new(InvocationHost::new(
            self.host_services().clone(),
            self.clone(),
            function.clone(),
            id,
            depth,
            tree,
            host_deadline,
            guest.handle(),
        ));
        let (result, output) = self
            .sandbox()
            .invoke_capturing(
                &function,
                request,
                host.clone(),
                InvokeOptions {
                    deadline,
                    phases: phases.clone(),
                },
            )
            .await;
        if let Some(phases) = &phases {
            if let (Some(slot), Some(ready)) = (phases.slot(), phases.instantiated()) {
                let mut instantiate = trace.child("zerofn.instantiate", SpanKind::Internal);
                instantiate.start_at(slot);
                instantiate.end_at(ready);
                guest.start_at(ready);
            }
            if let Err(error) = &result {
                guest.fail(error.kind());
            }
            if let Some(ended) = phases.ended() {
                guest.end_at(ended);
            }
        }
        // Off the request's path: queued for the log writer, never waited for.
        {
            let manifest = function.artifact().manifest();
            self.logs().submit(
                manifest.tenant.as_str(),
                manifest.name.as_str(),
                id.as_str(),
                output,
            );
        }
        let mut decisions = unrecorded.disarm_decision().into_iter().collect::<Vec<_>>();
        decisions.extend(host.decisions());
        let trace_id = if host.passed_trace_on() {
            crate::trace::passed_on_trace_id(trace)
        } else {
            crate::trace::trace_id(trace)
        };
        let record = |outcome: Outcome, status: u16| {
            crate::trace::with_trace(
                invoke_record(&function, id, started, outcome, status)
                    .reason(permit.explain())
                    .detail(serde_json::json!({
                        "caller": caller.json(),
                        "depth": depth,
                        "decisions": decisions,
                    })),
                trace_id,
            )
        };
        match result {
            Ok(invocation) => {
                let status = invocation.response.status().as_u16();
                match self.audit().append(record(Outcome::Allow, status)).await {
                    Ok(_) => invocation.response,
                    Err(error) => {
                        tracing::error!(invocation_id = %id, %error, "audit append failed; response withheld");
                        error_response(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "audit_unavailable",
                            "the invocation could not be recorded, so its response is withheld",
                            Some(id),
                        )
                    }
                }
            }
            Err(error) => {
                let status = invoke_status(&error);
                if let zerofn_sandbox::InvokeError::Trap { detail }
                | zerofn_sandbox::InvokeError::Internal { detail } = &error
                {
                    tracing::warn!(invocation_id = %id, detail = %detail.escape_debug(), "invocation failed");
                }
                let record = record(Outcome::Error, status.as_u16());
                // Keep the kind first: it is what the record is about.
                let record = record.reason(error.kind());
                self.refuse(
                    None,
                    record,
                    id,
                    trace_id,
                    status,
                    error.kind(),
                    &error.to_string(),
                )
                .await
            }
        }
    }

    /// Record a refusal or failure, then build its error response. A
    /// refusal of a public (unauthenticated) caller names its address
    /// (`ip`): identical ones from one address are counted into one
    /// record per interval. Without an address (in process, or any other
    /// caller) there is nothing to aggregate by, and the record is
    /// appended as it is. With tracing on the record names the
    /// invocation's trace where it can be met (`trace_id`, as
    /// `crate::trace::trace_id` decides): every refusal passes here, so
    /// none is left without it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn refuse(
        &self,
        ip: Option<IpAddr>,
        record: AuditRecord,
        id: &InvocationId,
        trace_id: Option<TraceId>,
        status: StatusCode,
        kind: &str,
        message: &str,
    ) -> Response<Bytes> {
        let record = crate::trace::with_trace(record, trace_id);
        let appended = match ip {
            None => self.audit().append(record).await.map(drop),
            Some(ip) => self.refusals().refuse(ip, record).await,
        };
        if let Err(error) = appended {
            tracing::error!(invocation_id = %id, %error, "audit append failed");
            // A path no function serves exposes nothing and runs nothing:
            // it stays a 404 (as before refusals were recorded), so a
            // broken log does not turn every stray request into a 500.
            if ip.is_some() && status == StatusCode::NOT_FOUND {
                return error_response(status, kind, message, Some(id));
            }
            return refusal_unrecorded(id);
        }
        error_response(status, kind, message, Some(id))
    }
}

/// The answer to a refusal whose audit record could not be written: the
/// request is refused all the same, as an outage of the log (fail closed).
fn refusal_unrecorded(id: &InvocationId) -> Response<Bytes> {
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "audit_unavailable",
        "the invocation could not be recorded",
        Some(id),
    )
}

/// Reason and status of an invocation whose caller went away (the client
/// hung up, or the calling function was stopped) before it was recorded.
pub const CLIENT_GONE: &str = "client_gone";
/// Status recorded for [`CLIENT_GONE`] (nginx's "client closed request").
pub const CLIENT_GONE_STATUS: u16 = 499;

/// Records an invocation as [`CLIENT_GONE`] if it is dropped before it
/// was recorded otherwise: hyper drops the request future when the client
/// hangs up, and a caller's abort drops its callees' futures. The record
/// is built only then, so the normal path pays nothing for it.
pub(crate) struct Unrecorded {
    audit: AuditLog,
    pending: Option<Pending>,
}

struct Pending {
    function: Arc<LoadedFunction>,
    id: InvocationId,
    caller: serde_json::Value,
    depth: u32,
    started: Instant,
    decision: Option<serde_json::Value>,
    trace: Option<TraceId>,
}

impl Unrecorded {
    fn new(
        audit: AuditLog,
        function: &Arc<LoadedFunction>,
        id: &InvocationId,
        trace: Option<TraceId>,
        caller: &Caller,
        depth: u32,
        started: Instant,
    ) -> Unrecorded {
        Unrecorded {
            audit,
            pending: Some(Pending {
                function: function.clone(),
                id: id.to_owned(),
                caller: caller.json(),
                depth,
                started,
                decision: None,
                trace,
            }),
        }
    }

    /// The invoke decision, listed if the record is written here.
    fn decided(&mut self, decision: serde_json::Value) {
        if let Some(p) = &mut self.pending {
            p.decision = Some(decision);
        }
    }

    /// The invocation is being recorded elsewhere.
    fn disarm(&mut self) {
        self.pending = None;
    }

    /// [`Unrecorded::disarm`], handing back the invoke decision.
    fn disarm_decision(&mut self) -> Option<serde_json::Value> {
        self.pending.take().and_then(|p| p.decision)
    }
}

impl Drop for Unrecorded {
    fn drop(&mut self) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let record = crate::trace::with_trace(
            invoke_record(
                &p.function,
                &p.id,
                p.started,
                Outcome::Error,
                CLIENT_GONE_STATUS,
            )
            .reason(format!(
                "{CLIENT_GONE}: the caller went away before the invocation finished"
            ))
            .detail(serde_json::json!({
                "caller": p.caller,
                "depth": p.depth,
                "decisions": p.decision.into_iter().collect::<Vec<_>>(),
            })),
            p.trace,
        );
        let audit = self.audit.clone();
        let id = p.id;
        // Dropped in a runtime (hyper's or the caller's task); outside one
        // there is nothing left to record into.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = audit.append(record).await {
                    tracing::error!(invocation_id = %id, %error, "audit of an abandoned invocation failed");
                }
            });
        }
    }
}

/// The record of one invocation of `function`, without detail or reason.
pub(crate) fn invoke_record(
    function: &LoadedFunction,
    id: &InvocationId,
    started: Instant,
    outcome: Outcome,
    status: u16,
) -> AuditRecord {
    let artifact = function.artifact();
    let manifest = artifact.manifest();
    AuditRecord::new("gateway", Action::Invoke, outcome)
        .tenant(manifest.tenant.as_str())
        .function(manifest.name.as_str())
        .digest(artifact.digest().to_string())
        .invocation_id(id)
        .status(status)
        .duration(started.elapsed())
}

/// Largest body validated on the async worker; a larger one is validated on the
/// blocking pool (parsing and validating a MiB of JSON takes milliseconds).
const INLINE_VALIDATION_BYTES: usize = 64 * 1024;

/// The function's request body limit in bytes.
fn max_body_bytes(function: &LoadedFunction) -> usize {
    usize::try_from(function.artifact().manifest().limits.max_body_kb)
        .unwrap_or(usize::MAX)
        .saturating_mul(1024)
}

/// Why a request body was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyError {
    TooLarge,
    Busy,
    Unreadable,
    TimedOut,
}

impl BodyError {
    /// Status, kind, audit reason and message.
    fn describe(self, max_body: usize) -> (StatusCode, &'static str, &'static str, String) {
        match self {
            BodyError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "request body too large",
                format!("request body exceeds the function's limit of {max_body} bytes"),
            ),
            BodyError::Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "busy: the gateway's budget of request bodies in flight is spent",
                "the gateway holds as many request bodies as it may; try again later".to_owned(),
            ),
            BodyError::Unreadable => (
                StatusCode::BAD_REQUEST,
                "bad_body",
                "request body unreadable",
                "request body could not be read".to_owned(),
            ),
            BodyError::TimedOut => (
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "request body read timed out",
                "request body was not received in time".to_owned(),
            ),
        }
    }
}

/// Read a whole body of at most `max` bytes, holding every byte read in
/// `reservation` (grown as data arrives, for bodies without a declared
/// length).
async fn read_body<B>(
    body: B,
    max: usize,
    reservation: &mut BodyReservation,
) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| BodyError::Unreadable)?.into_data() else {
            continue; // trailers carry nothing the guest gets
        };
        if data.is_empty() {
            continue;
        }
        len = len.saturating_add(data.len());
        if len > max {
            return Err(BodyError::TooLarge);
        }
        if !reservation.grow_to(len) {
            return Err(BodyError::Busy);
        }
        // One chunk (the usual case) is passed on without a copy.
        match first.take() {
            None if buf.is_empty() => first = Some(data),
            Some(earlier) => {
                buf.extend_from_slice(&earlier);
                buf.extend_from_slice(&data);
            }
            None => buf.extend_from_slice(&data),
        }
    }
    Ok(first.unwrap_or_else(|| buf.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::BodyBudget;
    use http_body_util::Full;

    #[tokio::test]
    async fn bodies_are_bounded_by_the_function_and_the_shared_budget() {
        let budget = BodyBudget::new(10);
        let mut r = budget.reservation();
        let body = Full::new(Bytes::from_static(b"hello"));
        assert_eq!(
            read_body(body, 100, &mut r).await.unwrap(),
            Bytes::from_static(b"hello")
        );
        let mut other = budget.reservation();
        let body = Full::new(Bytes::from_static(b"123456"));
        assert_eq!(read_body(body, 100, &mut other).await, Err(BodyError::Busy));
        let mut third = budget.reservation();
        let body = Full::new(Bytes::from_static(b"123456"));
        assert_eq!(
            read_body(body, 3, &mut third).await,
            Err(BodyError::TooLarge)
        );
        drop(r);
        let body = Full::new(Bytes::from_static(b"123456"));
        assert!(read_body(body, 100, &mut other).await.is_ok());
    }
}

/// Event deliveries through the in-process path: the trigger's source is
/// allowed, any other source and a public call are refused by the invoke
/// policy, and each is recorded with the source, event id and attempt.
#[cfg(test)]
mod event_tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::Full;
    use zerofn_admission::{admit, sign_artifact, Manifest, Route, SigningKey};
    use zerofn_audit::AuditLog;
    use zerofn_identity::{JwtSvid, SvidRefusal, VerifiedSpiffeId};
    use zerofn_policy::permissions::compile;
    use zerofn_policy::{PolicySet, RuntimePoliciesBuilder};
    use zerofn_sandbox::{Sandbox, SandboxConfig};
    use zerofn_store::Store;
    use zerofn_types::{FunctionName, TenantName};

    use crate::{
        Caller, Gateway, GatewayConfig, GatewayServices, Policies, RouteSpace, Routes,
        WorkloadIdentity,
    };

    struct NoIdentities;
    impl WorkloadIdentity for NoIdentities {
        fn verify(
            &self,
            t: &TenantName,
            n: &FunctionName,
        ) -> Result<VerifiedSpiffeId, SvidRefusal> {
            Err(SvidRefusal::NotServed {
                workload: format!("{t}/{n}"),
            })
        }
        fn jwt_svid(
            &self,
            t: &TenantName,
            n: &FunctionName,
            _: &str,
        ) -> Result<JwtSvid, SvidRefusal> {
            Err(SvidRefusal::NotServed {
                workload: format!("{t}/{n}"),
            })
        }
    }

    fn event(source: &str, id: &str) -> Caller {
        Caller::Event {
            tenant: "acme".into(),
            source: source.into(),
            event_id: id.into(),
            attempt: 2,
        }
    }

    fn request() -> http::Request<Bytes> {
        let mut r = http::Request::new(Bytes::from_static(b"{}"));
        *r.method_mut() = http::Method::POST;
        *r.uri_mut() = http::Uri::from_static("/");
        r
    }

    /// A gateway serving `acme/worker` (hello-c, bound to queue `orders`),
    /// with `tracer`, and its store.
    fn worker_gateway(
        dir: &std::path::Path,
        tracer: zerofn_telemetry::Tracer,
    ) -> (Arc<Gateway>, Store) {
        let sandbox = Arc::new(Sandbox::new(SandboxConfig::new(dir.join("cache"))).unwrap());
        let key = SigningKey::generate();
        let component = zerofn_testkit::guest("hello-c");
        let bundle = sign_artifact(&component, &key).unwrap();
        let manifest = Manifest::from_toml(
            "name = \"worker\"\ntenant = \"acme\"\ncomponent = \"w.wasm\"\nroutes = [\"/worker\"]\n[[triggers]]\nqueue = \"orders\"\n",
        )
        .unwrap();
        let artifact = admit(manifest, component, bundle.as_bytes(), &[key.public_key()]).unwrap();
        let function = sandbox.load(artifact, None).unwrap();
        let routes = Routes::default();
        routes.set_space(
            RouteSpace::new([(Route::parse("/...").unwrap(), "acme".to_owned())]).unwrap(),
        );
        let mut builder = RuntimePoliciesBuilder::new();
        let m = function.artifact().manifest();
        builder.add(
            "acme",
            PolicySet::parse(&compile("acme", "worker", &m.permissions)).unwrap(),
        );
        let policies = Policies::default();
        policies.replace(builder.build().unwrap());
        routes.install_all(vec![function]);
        let store = Store::open(dir).unwrap();
        let audit = AuditLog::open(&store).unwrap();
        let gateway = Gateway::new(
            routes,
            sandbox,
            audit,
            GatewayConfig::default(),
            GatewayServices {
                authn: Default::default(),
                publisher: None,
                objects: None,
                mtls: Default::default(),
                tracer,
                policies,
                store: store.clone(),
                identity: Arc::new(NoIdentities),
                logs: crate::InvocationLogs::start(
                    &store,
                    crate::LogRetention::default(),
                    64 * 1024,
                )
                .unwrap(),
                limits: Default::default(),
            },
        );

        (gateway, store)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_the_bound_source_may_deliver() {
        let dir = tempfile::tempdir().unwrap();
        let (gateway, store) = worker_gateway(dir.path(), Default::default());
        let ok = gateway
            .invoke_event("acme", "worker", event("queue/orders", "e-1"), request())
            .await;
        assert_eq!(ok.status(), 200, "{:?}", ok.body());
        for (source, why) in [
            ("queue/other", "another queue"),
            ("orders", "a bare name"),
            ("schedule/worker-orders", "a schedule it is not bound to"),
            ("kv/orders", "a kv bucket named like its queue"),
        ] {
            let r = gateway
                .invoke_event("acme", "worker", event(source, "e-2"), request())
                .await;
            assert_eq!(r.status(), 403, "{why}: {:?}", r.body());
        }
        let public = gateway
            .handle(
                http::Request::get("http://x/worker")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await;
        assert_eq!(public.status(), 403, "a direct HTTP call was allowed");
        // An event for a function that is not deployed runs nothing.
        let gone = gateway
            .invoke_event("acme", "nobody", event("queue/orders", "e-3"), request())
            .await;
        assert_eq!(gone.status(), 404);

        let rows = store.audit_tail(20).await.unwrap();
        let invokes: Vec<_> = rows.iter().filter(|r| r.action == "invoke").collect();
        let allowed = invokes
            .iter()
            .find(|r| r.decision == "allow")
            .expect("the allowed delivery's record");
        let detail: serde_json::Value =
            serde_json::from_str(allowed.detail.as_deref().unwrap()).unwrap();
        assert_eq!(detail["caller"]["kind"], "event", "{detail}");
        assert_eq!(detail["caller"]["source"], "queue/orders", "{detail}");
        assert_eq!(detail["caller"]["event_id"], "e-1", "{detail}");
        assert_eq!(detail["caller"]["attempt"], 2, "{detail}");
        assert_eq!(invokes.iter().filter(|r| r.decision == "deny").count(), 5);
    }

    /// Nothing sampled: a record names the trace when it came from elsewhere
    /// (an event's producer, allowed or refused) and not when the platform
    /// began it and it went nowhere (`crate::trace::trace_id`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_of_unsampled_traces_name_them_where_they_can_be_met() {
        let dir = tempfile::tempdir().unwrap();
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        // Nothing is sampled: what is checked is the unrecorded path.
        let (tracer, _exporter) = zerofn_telemetry::Tracer::start(
            zerofn_telemetry::OtlpConfig::new("http://127.0.0.1:9", 0.0)
                .unwrap()
                .with_min_per_second(0),
            shutdown,
        )
        .unwrap();
        let (gateway, store) = worker_gateway(dir.path(), tracer);
        const PRODUCER: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
        const OTHER: &str = "0af7651916cd43dd8448eb211c80319c";
        let from = |trace: &str| {
            let mut req = request();
            req.headers_mut().insert(
                crate::trace::EVENT_TRACEPARENT,
                format!("00-{trace}-00f067aa0ba902b7-00").parse().unwrap(),
            );
            req
        };
        let ok = gateway
            .invoke_event(
                "acme",
                "worker",
                event("queue/orders", "e-1"),
                from(PRODUCER),
            )
            .await;
        assert_eq!(ok.status(), 200, "{:?}", ok.body());
        // Refusals: by policy (a source it is not bound to), with and without
        // a producer's context, and on the public path (the worker takes no
        // HTTP callers).
        for req in [from(OTHER), request()] {
            let denied = gateway
                .invoke_event("acme", "worker", event("queue/other", "e-2"), req)
                .await;
            assert_eq!(denied.status(), 403);
        }
        let public = gateway
            .handle(
                http::Request::get("http://x/worker")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await;
        assert_eq!(public.status(), 403);

        let rows = store.audit_tail(20).await.unwrap();
        let invokes: Vec<_> = rows.iter().filter(|r| r.action == "invoke").collect();
        assert_eq!(invokes.len(), 4, "{invokes:?}");
        let mut named = Vec::new();
        for r in &invokes {
            let detail: serde_json::Value =
                serde_json::from_str(r.detail.as_deref().unwrap()).unwrap();
            if let Some(id) = detail.get(crate::trace::TRACE_ID_FIELD) {
                named.push((
                    r.decision.clone(),
                    id.as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
        named.sort();
        assert_eq!(
            named,
            [
                ("allow".to_owned(), PRODUCER.to_owned()),
                ("deny".to_owned(), OTHER.to_owned())
            ],
            "the producers' traces are named, the platform's own unrecorded ones not"
        );
    }
}
