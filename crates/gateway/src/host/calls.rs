//! Function-to-function calls: `http://<fn>.<tenant>.fn.internal/`. The
//! caller's policies decide `call`, the callee's decide `invoke` (in the
//! gateway's invoke path), and the callee learns the caller's verified
//! SPIFFE ID in [`super::CALLER_HEADER`]. A call is a new invocation held
//! to every limit of the callee, within the caller's deadline, its call
//! depth and its call tree's budget of invocations.

use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde_json::json;
use zerofn_audit::Outcome;
use zerofn_policy::{RequestContext, Resource, RuntimeAction};
use zerofn_sandbox::host_interface::OutboundError;
use zerofn_telemetry::TraceHandle;

use super::destination::INTERNAL_SUFFIX;
use super::{Authorized, InvocationHost, NestedCall};
use crate::caller::Caller;
use crate::limits::strip_platform_headers;

/// Longest chain of function-to-function calls.
pub const MAX_CALL_DEPTH: u32 = 4;

impl InvocationHost {
    /// Record a call the platform refuses after the caller's policy
    /// allowed it (depth, budget, deadline, unknown callee), listed with
    /// the invocation's decisions. The guest gets its refusal either way;
    /// a record that cannot be written is logged.
    async fn refuse_call(&self, callee: &Resource, kind: &str, explain: String) {
        let detail = json!({
            "action": RuntimeAction::Call.as_str(),
            "resource": callee.describe(),
            "allowed": false,
            "refused_by": "platform",
            "kind": kind,
            "explain": explain,
        });
        let record = self.capability_record(
            Outcome::Deny,
            format!("{kind}: call of {}: {explain}", callee.describe()),
            detail,
        );
        self.record_refusal(record, "a refused call").await;
    }

    /// Decide and record a call of `tenant/name`, then make it.
    pub(super) async fn call(
        &self,
        request: Request<Bytes>,
        tenant: String,
        name: String,
        trace: Option<TraceHandle>,
    ) -> Result<Response<Bytes>, OutboundError> {
        let callee = Resource::Function {
            tenant: tenant.clone(),
            name: name.clone(),
        };
        let path = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned());
        let what = format!("call of {}", callee.describe());
        let authorized = match self
            .authorize(
                RuntimeAction::Call,
                callee.clone(),
                RequestContext::Call {
                    method: request.method().as_str().to_owned(),
                    path: path.clone(),
                },
                what,
            )
            .await
        {
            Ok(authorized) => authorized,
            Err(why) => {
                return Ok(crate::errors::error_response(
                    StatusCode::FORBIDDEN,
                    "call_denied",
                    &why.to_string(),
                    Some(&self.invocation_id),
                ))
            }
        };
        self.call_authorized(authorized, request, callee, path, tenant, name, trace)
            .await
    }

    /// Make an authorized call, unless the platform's own bounds refuse it.
    #[allow(clippy::too_many_arguments)]
    async fn call_authorized(
        &self,
        authorized: Authorized,
        request: Request<Bytes>,
        callee: Resource,
        path: String,
        tenant: String,
        name: String,
        trace: Option<TraceHandle>,
    ) -> Result<Response<Bytes>, OutboundError> {
        let callee_ref = &callee;
        let refused = |status: StatusCode, kind: &'static str, message: String| async move {
            self.refuse_call(callee_ref, kind, message.clone()).await;
            Ok::<_, OutboundError>(crate::errors::error_response(
                status,
                kind,
                &message,
                Some(&self.invocation_id),
            ))
        };
        if self.depth >= MAX_CALL_DEPTH {
            return refused(
                StatusCode::LOOP_DETECTED,
                "call_depth",
                format!("function calls may nest at most {MAX_CALL_DEPTH} deep"),
            )
            .await;
        }
        if Instant::now() >= self.deadline {
            return refused(
                StatusCode::GATEWAY_TIMEOUT,
                "call_deadline",
                "the calling invocation has no time left for a call".to_owned(),
            )
            .await;
        }
        let Some(function) = self.invocations.function(&tenant, &name) else {
            let target = format!("{name}.{tenant}{INTERNAL_SUFFIX}");
            self.refuse_call(
                &callee,
                "call_not_found",
                format!("no function is deployed as `{target}`"),
            )
            .await;
            return Err(OutboundError::NotFound(target));
        };
        if !self.tree.try_invoke() {
            return refused(
                StatusCode::TOO_MANY_REQUESTS,
                "call_budget",
                format!(
                    "one request may cause at most {} invocations in all, and this one has used them",
                    self.tree.limit()
                ),
            )
            .await;
        }
        let caller = Caller::Function {
            tenant: self.tenant().to_owned(),
            name: self.name().to_owned(),
            spiffe_id: authorized.caller,
            parent_invocation: self.invocation_id.clone(),
        };
        let (mut parts, body) = request.into_parts();
        // The calling guest does not speak in the platform's namespace;
        // the platform sets the caller and invocation headers itself.
        strip_platform_headers(&mut parts.headers);
        // The callee sees the path it was called on, as a server would.
        parts.uri = path.parse().unwrap_or_else(|_| http::Uri::from_static("/"));
        let response = self
            .invocations
            .clone()
            .invoke_nested(NestedCall {
                function,
                request: Request::from_parts(parts, body),
                caller,
                depth: self.depth + 1,
                tree: self.tree.clone(),
                deadline: self.deadline,
                trace,
            })
            .await;
        Ok(response)
    }
}
