//! The platform side of the host capabilities: for every key-value,
//! configuration and outbound-HTTP call a guest makes, *decide, audit,
//! then act*.
//!
//! One [`InvocationHost`] exists per invocation and knows whose call it is:
//! the running function, identified by its current X.509-SVID, which is
//! verified (chain, expiry, revocation) before every decision, so a revoked
//! identity stops working at once. The decision comes from the runtime
//! Cedar policies ([`Policies`]); the audit record is durable before the
//! call acts; a failure to verify, decide or audit is a denial, which the
//! guest sees as an error while the invocation goes on.
//!
//! Key-value data is addressed as (caller's tenant, bucket, key): the
//! tenant never comes from the guest, so no bucket name or key reaches
//! another tenant's data. Function-to-function calls go to
//! `http://<fn>.<tenant>.fn.internal/`; the caller's policies decide
//! `call`, the callee's decide `invoke`, and the callee learns the caller's
//! verified SPIFFE ID in [`CALLER_HEADER`]. Every other outbound request is
//! refused: this is where egress allowlists will be decided.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde_json::{json, Value};
use zerofn_audit::{Action, AuditRecord, Outcome};
use zerofn_policy::{
    Decision, Principal, RequestContext, Resource, RuntimeAction, RuntimePolicies, RuntimeRequest,
};
use zerofn_sandbox::capabilities::{
    limits, BoxFuture, CapabilityError, HostCapabilities, KvOp, KvOutcome, OutboundError,
    SandboxRefusal,
};
use zerofn_sandbox::LoadedFunction;

use crate::limits::{strip_platform_headers, CallTree};
use crate::serve::{Caller, Gateway};

/// Header carrying the calling function's verified SPIFFE ID to a callee.
/// Stripped from every request arriving through the public gateway.
pub const CALLER_HEADER: &str = "x-zerofn-caller-spiffe-id";

/// Suffix of the internal host names of functions.
pub const INTERNAL_SUFFIX: &str = ".fn.internal";

/// Longest chain of function-to-function calls.
pub const MAX_CALL_DEPTH: u32 = 4;

/// Most decisions listed in one invocation record.
const MAX_LISTED_DECISIONS: usize = 64;

/// The runtime policies in force, swapped whole on every change.
#[derive(Clone, Default)]
pub struct Policies {
    current: Arc<RwLock<Arc<RuntimePolicies>>>,
}

impl Policies {
    pub fn current(&self) -> Arc<RuntimePolicies> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn replace(&self, policies: RuntimePolicies) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(policies);
    }
}

/// Verifies a running function's identity. Implemented by the platform
/// over its CA: the function's current SVID must chain to the trust
/// bundle, be unexpired and not revoked.
pub trait WorkloadIdentity: Send + Sync + 'static {
    /// The verified SPIFFE ID of `tenant/name`, or why it is refused.
    fn verify(&self, tenant: &str, name: &str) -> Result<String, String>;

    /// A JWT-SVID for `tenant/name` scoped to `audience`: the token and
    /// its expiry (RFC 3339).
    fn jwt_svid(
        &self,
        tenant: &str,
        name: &str,
        audience: &str,
    ) -> Result<(String, String), String>;
}

/// Host name of the platform's identity endpoint for guests:
/// `GET http://identity.fn.internal/jwt-svid?audience=<aud>`.
pub const IDENTITY_HOST: &str = "identity.fn.internal";

/// Longest JWT-SVID audience accepted.
const MAX_AUDIENCE: usize = 256;

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
        "allowed": decision.allowed,
        "policies": decision.determining,
        "explain": decision.explain(),
    })
}

/// The host capabilities of one invocation.
pub struct InvocationHost {
    gateway: Arc<Gateway>,
    function: Arc<LoadedFunction>,
    invocation_id: String,
    depth: u32,
    /// Shared by every invocation of this root request.
    tree: Arc<CallTree>,
    /// When this invocation must be over; its callees get no later one.
    deadline: Instant,
    decisions: Mutex<Vec<Value>>,
}

impl InvocationHost {
    pub(crate) fn new(
        gateway: Arc<Gateway>,
        function: Arc<LoadedFunction>,
        invocation_id: &str,
        depth: u32,
        tree: Arc<CallTree>,
        deadline: Instant,
    ) -> InvocationHost {
        InvocationHost {
            gateway,
            function,
            invocation_id: invocation_id.to_owned(),
            depth,
            tree,
            deadline,
            decisions: Mutex::new(Vec::new()),
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
        if let Err(error) = self.gateway.audit().append(record).await {
            tracing::error!(invocation_id = %self.invocation_id, %error, "audit of a refused call failed");
        }
    }

    /// The decisions made during the invocation, for its audit record.
    pub(crate) fn decisions(&self) -> Vec<Value> {
        self.decisions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn tenant(&self) -> &str {
        self.function.artifact().manifest().tenant.as_str()
    }

    fn name(&self) -> &str {
        self.function.artifact().manifest().name.as_str()
    }

    fn me(&self) -> Principal {
        Principal::Function {
            tenant: self.tenant().to_owned(),
            name: self.name().to_owned(),
        }
    }

    /// Verify the caller's identity, decide, and record the decision
    /// durably. `Ok` only when allowed and recorded.
    async fn authorize(
        &self,
        action: RuntimeAction,
        resource: Resource,
        context: RequestContext,
        what: String,
    ) -> Result<String, String> {
        let identity = self.gateway.identity().verify(self.tenant(), self.name());
        let decision = match &identity {
            Ok(_) => {
                let policies = self.gateway.policies().current();
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
                    .unwrap_or_else(|e| Decision {
                        allowed: false,
                        determining: Vec::new(),
                        errors: vec![format!("the policy decision task failed: {e}")],
                    })
            }
            Err(why) => Decision {
                allowed: false,
                determining: Vec::new(),
                errors: vec![format!("the function's identity is refused: {why}")],
            },
        };
        let permission = self.permission_of(action, &resource);
        let mut detail = decision_json(action, &resource, &decision, &permission);
        if let (Some(obj), Ok(id)) = (detail.as_object_mut(), &identity) {
            obj.insert("principal".into(), id.clone().into());
        }
        let outcome = if decision.allowed {
            Outcome::Allow
        } else {
            Outcome::Deny
        };
        let record =
            self.capability_record(outcome, format!("{what}: {}", decision.explain()), detail);
        if let Err(error) = self.gateway.audit().append(record).await {
            tracing::error!(invocation_id = %self.invocation_id, %error, "capability audit failed; call denied");
            return Err(format!(
                "{what} could not be recorded in the audit log, so it is denied"
            ));
        }
        match identity {
            // Allowed implies the identity verified (a refused identity
            // is a denial above); the verified SPIFFE ID is the caller's.
            Ok(id) if decision.allowed => return Ok(id),
            Ok(_) | Err(_) => {}
        }
        if decision.allowed {
            Err(format!(
                "{what}: allowed without a verified identity, so denied"
            ))
        } else if decision.determining.is_empty() && decision.errors.is_empty() {
            Err(format!(
                "{what} by {} is not permitted: {} (missing permission `{permission}`)",
                self.me().describe(),
                decision.explain()
            ))
        } else {
            Err(format!(
                "{what} by {} is not permitted: {}",
                self.me().describe(),
                decision.explain()
            ))
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
            (_, Resource::Function { tenant, name }) => {
                format!("{}:{tenant}/{name}", action.as_str())
            }
        }
    }

    fn bucket(&self, name: &str) -> Result<Resource, CapabilityError> {
        zerofn_policy::permissions::valid_bucket_name(name).map_err(|why| {
            CapabilityError::NoSuchStore(format!("bucket name `{}` {why}", name.escape_debug()))
        })?;
        Ok(Resource::Bucket {
            tenant: self.tenant().to_owned(),
            name: name.to_owned(),
        })
    }

    async fn kv_op(&self, bucket: &str, op: KvOp) -> Result<KvOutcome, CapabilityError> {
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
        self.authorize(action, resource, context, what)
            .await
            .map_err(CapabilityError::Denied)?;
        let store = self.gateway.store();
        let tenant = self.tenant();
        let failed = |e: zerofn_store::StoreError| {
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
                    .kv_set(tenant, bucket, &key, value.to_vec())
                    .await
                    .map_err(failed)?;
                KvOutcome::Done
            }
            KvOp::Delete { key } => {
                store
                    .kv_delete(tenant, bucket, &key)
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
                    .kv_increment(tenant, bucket, &key, delta)
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

    async fn config(&self, key: Option<&str>) -> Result<Vec<(String, String)>, CapabilityError> {
        let me = Resource::Function {
            tenant: self.tenant().to_owned(),
            name: self.name().to_owned(),
        };
        let what = match key {
            Some(k) => format!("config.read of `{}`", k.escape_debug()),
            None => "config.read of every value".to_owned(),
        };
        self.authorize(
            RuntimeAction::ConfigRead,
            me,
            RequestContext::Key(key.unwrap_or("*").to_owned()),
            what,
        )
        .await
        .map_err(CapabilityError::Denied)?;
        let config = &self.function.artifact().manifest().config;
        Ok(match key {
            Some(k) => config
                .get(k)
                .map(|v| vec![(k.to_owned(), v.clone())])
                .unwrap_or_default(),
            None => config.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        })
    }

    async fn call(
        &self,
        request: Request<Bytes>,
        tenant: String,
        name: String,
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
        let spiffe_id = match self
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
            Ok(id) => id,
            Err(why) => {
                return Ok(crate::errors::error_response(
                    StatusCode::FORBIDDEN,
                    "call_denied",
                    &why,
                    Some(&self.invocation_id),
                ))
            }
        };
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
        let Some(function) = self
            .gateway
            .routes()
            .snapshot()
            .function(&tenant, &name)
            .cloned()
        else {
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
            spiffe_id,
            parent_invocation: self.invocation_id.clone(),
        };
        let (mut parts, body) = request.into_parts();
        // The calling guest does not speak in the platform's namespace;
        // the platform sets the caller and invocation headers itself.
        strip_platform_headers(&mut parts.headers);
        // The callee sees the path it was called on, as a server would.
        parts.uri = path.parse().unwrap_or_else(|_| http::Uri::from_static("/"));
        let response = self
            .gateway
            .clone()
            .invoke_function(
                function,
                Request::from_parts(parts, body),
                caller,
                self.depth + 1,
                self.tree.clone(),
                self.deadline,
            )
            .await;
        Ok(response)
    }
}

impl InvocationHost {
    /// `GET /jwt-svid?audience=<aud>` on [`IDENTITY_HOST`]: a JWT-SVID for
    /// the calling function's own identity, decided (`svid.jwt`) and
    /// audited like any capability. The token is never logged or audited.
    async fn jwt_svid(&self, request: &Request<Bytes>) -> Response<Bytes> {
        let bad = |status: StatusCode, kind: &str, message: &str| {
            crate::errors::error_response(status, kind, message, Some(&self.invocation_id))
        };
        if request.method() != http::Method::GET || request.uri().path() != "/jwt-svid" {
            return bad(
                StatusCode::NOT_FOUND,
                "not_found",
                "the identity endpoint serves GET /jwt-svid?audience=<audience>",
            );
        }
        let audience = request.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|p| p.strip_prefix("audience="))
                .map(str::to_owned)
        });
        let Some(audience) = audience.filter(|a| {
            !a.is_empty()
                && a.len() <= MAX_AUDIENCE
                && a.bytes().all(|b| b.is_ascii_graphic() && b != b'"')
        }) else {
            return bad(
                StatusCode::BAD_REQUEST,
                "bad_audience",
                &format!("give one audience of 1 to {MAX_AUDIENCE} printable characters: /jwt-svid?audience=<audience>"),
            );
        };
        let me = Resource::Function {
            tenant: self.tenant().to_owned(),
            name: self.name().to_owned(),
        };
        let what = format!("svid.jwt for audience `{audience}`");
        if let Err(why) = self
            .authorize(
                RuntimeAction::SvidJwt,
                me,
                RequestContext::Audience(audience.clone()),
                what,
            )
            .await
        {
            return bad(StatusCode::FORBIDDEN, "identity_denied", &why);
        }
        match self
            .gateway
            .identity()
            .jwt_svid(self.tenant(), self.name(), &audience)
        {
            Ok((token, expires_at)) => {
                let body =
                    json!({ "token": token, "audience": audience, "expires_at": expires_at });
                let mut resp = Response::new(Bytes::from(body.to_string()));
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                resp
            }
            Err(why) => bad(
                StatusCode::INTERNAL_SERVER_ERROR,
                "identity_unavailable",
                &format!("no JWT-SVID could be issued: {why}"),
            ),
        }
    }
}

/// Splits `<fn>.<tenant>.fn.internal` into (tenant, fn).
pub(crate) fn internal_target(host: &str) -> Option<(String, String)> {
    let host = host.strip_suffix(INTERNAL_SUFFIX)?;
    let (name, tenant) = host.split_once('.')?;
    if name.is_empty() || tenant.is_empty() || tenant.contains('.') {
        return None;
    }
    Some((tenant.to_owned(), name.to_owned()))
}

impl HostCapabilities for InvocationHost {
    fn kv_open<'a>(&'a self, bucket: &'a str) -> BoxFuture<'a, Result<(), CapabilityError>> {
        Box::pin(async move { self.bucket(bucket).map(|_| ()) })
    }

    fn kv<'a>(
        &'a self,
        bucket: &'a str,
        op: KvOp,
    ) -> BoxFuture<'a, Result<KvOutcome, CapabilityError>> {
        Box::pin(self.kv_op(bucket, op))
    }

    fn config_get<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, CapabilityError>> {
        Box::pin(async move {
            Ok(self
                .config(Some(key))
                .await?
                .into_iter()
                .next()
                .map(|(_, v)| v))
        })
    }

    fn config_get_all(&self) -> BoxFuture<'_, Result<Vec<(String, String)>, CapabilityError>> {
        Box::pin(self.config(None))
    }

    fn outbound(
        &self,
        request: Request<Bytes>,
    ) -> BoxFuture<'_, Result<Response<Bytes>, OutboundError>> {
        Box::pin(async move {
            let host = request
                .uri()
                .host()
                .map(str::to_ascii_lowercase)
                .unwrap_or_default();
            if host == IDENTITY_HOST {
                return Ok(self.jwt_svid(&request).await);
            }
            if let Some((tenant, name)) = internal_target(&host) {
                return self.call(request, tenant, name).await;
            }
            // Not a function: egress. Nothing grants it yet, but it is
            // decided and recorded like every other capability so that an
            // allowlist can be added here.
            let url = request.uri().to_string();
            let what = format!("outbound request to `{}`", host.escape_debug());
            match self
                .authorize(
                    RuntimeAction::HttpOutbound,
                    Resource::Host(host.clone()),
                    RequestContext::Outbound {
                        method: request.method().as_str().to_owned(),
                        url,
                    },
                    what,
                )
                .await
            {
                // Egress is not implemented: even a permit cannot open a
                // connection yet.
                Ok(_) | Err(_) => Err(OutboundError::Denied(host.escape_debug().to_string())),
            }
        })
    }

    fn refused(&self, refusal: SandboxRefusal) -> BoxFuture<'_, ()> {
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
            if let Err(error) = self.gateway.audit().append(record).await {
                tracing::error!(invocation_id = %self.invocation_id, %error, "audit of a sandbox refusal failed");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_host_names_parse_strictly() {
        assert_eq!(
            internal_target("billing.acme.fn.internal"),
            Some(("acme".into(), "billing".into()))
        );
        assert_eq!(internal_target("acme.fn.internal"), None);
        assert_eq!(internal_target("a.b.acme.fn.internal"), None);
        assert_eq!(internal_target("billing.acme.fn.internal.evil.com"), None);
        assert_eq!(internal_target("example.com"), None);
        assert_eq!(internal_target(".acme.fn.internal"), None);
    }
}
