//! The control API: HTTP+JSON over [`ControlPlane`]. Described by
//! `docs/openapi.yaml`.
//!
//! Every request but the public ones (health, trust bundle, API description)
//! is authenticated, as the operator token (`root`) or, over TLS, as the
//! operator named by a verified client certificate; then authorized by the
//! control policy (`authz.rs`) for the action and resource its entry in the
//! route table (`api/routes.rs`) names; only then dispatched, to the
//! handler of that entry. A refusal at either step is audited.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;
use zerofn_api::{
    AddKey, AddOperator, AuditQueryPage, AuditTail, AuditVerify, ControlPolicyIds, CreateTenant,
    Deploy, Deployed, Function, FunctionList, KeyAdded, Layer, LayerDeleted, LayerList, LogLine,
    LogPage, ManifestOnly, OperatorCertificate, OperatorList, OperatorRemoved, PublishLayer,
    Removed, Revoked, SetControlPolicy, SetPolicy, SetRoutes, SetTenantLimits, Svid, Tenant,
    TenantList, TenantPolicy, TenantRoutes, Undeployed,
};
use zerofn_audit::{Action, AuditLog, AuditRecord, Outcome, RefusalAggregator};
use zerofn_gateway::{error_response, GatewayConfig};
use zerofn_listener::{PeerAddr, PeerCertificate, Tls};
use zerofn_policy::{
    Authentication, ControlAction, ControlQuery, ControlResource, Decision, Permit, ROOT_OPERATOR,
};
use zerofn_store::StoreError;
use zerofn_types::TenantName;

use crate::admission::{AddIdentity, SetAdmission};
use crate::auth::OperatorToken;
use crate::authz::ControlAuthz;
use crate::control::{ControlError, ControlPlane, DeployAuthority, DeployRequest};
use crate::operators::{Operators, DEFAULT_OPERATOR_TTL};

mod callers;
mod config;
mod mtls;
mod objects;
mod queries;
mod queues;
mod routes;
mod zones;

pub(crate) use config::apply_config_dir;
use routes::{Access, Answer, Call, Operation, Reply, Resource};

/// Largest API request body (a base64 component of ~90 MiB).
const MAX_API_BODY: usize = 128 * 1024 * 1024;
const BODY_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest request path kept in an audit record.
const MAX_RECORDED_PATH: usize = 256;
/// Longest tenant name (from a path) kept in an audit record.
const MAX_RECORDED_TENANT: usize = 64;
/// Longest refusal message kept in an audit record.
const MAX_RECORDED_MESSAGE: usize = 512;
/// A tenant name no tenant can have (tenant names are lowercase words):
/// a decision on it is allowed only by a grant on every tenant.
const ANY_TENANT: &str = "*";
/// The audit actor of the operator token.
const ROOT_ACTOR: &str = "operator";
/// The API description, served at `/v1/openapi.yaml`.
const OPENAPI: &str = include_str!("../../../docs/openapi.yaml");

pub(crate) struct Api {
    pub(crate) control: Arc<ControlPlane>,
    pub(crate) token: OperatorToken,
    pub(crate) audit: AuditLog,
    pub(crate) authz: Arc<ControlAuthz>,
    pub(crate) operators: Arc<Operators>,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    /// Refusals of callers that did not authenticate (bad or missing
    /// token, refused certificates, refused connections): repeats are
    /// counted into one record per source and reason per interval, so
    /// anonymous traffic cannot grow the log without bound.
    pub(crate) refusals: RefusalAggregator,
    /// The audit log's Merkle tree: checkpoints and proofs.
    pub(crate) audit_tree: crate::AuditTree,
    /// The platform's metrics (`GET /metrics`).
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// External callers' JWT issuers and API keys.
    pub(crate) callers: crate::callers::Shared,
    /// Tenants' CAs for mTLS callers.
    pub(crate) mtls: Arc<crate::mtls_callers::MtlsCallers>,
    /// One configuration apply at a time (`POST /v1/config/apply`).
    pub(crate) config_change: tokio::sync::Mutex<()>,
    /// `zerofn up --locked-config`: imperative configuration changes are refused.
    pub(crate) locked_config: bool,
    /// Tenants' durable queues (`api/queues.rs`).
    pub(crate) queues: zerofn_events::Queues,
    /// Tenants' object storage (`api/objects.rs`).
    pub(crate) objects: zerofn_events::Objects,
    /// The schedules' loop, for `zerofn schedule list`.
    pub(crate) scheduler: Arc<zerofn_events::Scheduler>,
}

/// Who a request authenticated as.
struct Principal {
    /// `root` for the token, else the operator's name.
    name: String,
    authentication: Authentication,
}

impl Principal {
    /// The `actor` of the audit records of this principal's actions.
    fn actor(&self) -> String {
        match self.authentication {
            Authentication::Token => ROOT_ACTOR.to_owned(),
            Authentication::Mtls => format!("operator:{}", self.name),
        }
    }
}

impl Api {
    pub(crate) async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        config: GatewayConfig,
        shutdown: watch::Receiver<bool>,
    ) {
        let refusals = self.refusals.clone();
        let tls = self.tls.clone().map(Tls);
        zerofn_listener::serve(
            listener,
            tls,
            &config.listener(),
            shutdown,
            move |req| {
                let api = self.clone();
                async move {
                    let peer = req.extensions().get::<PeerCertificate>().cloned();
                    api.handle(req, peer).await.map(Full::new)
                }
            },
            Some(refusals.clone()),
        )
        .await;
        // Repeats counted in the interval that was running are recorded
        // before the platform stops, not lost with it.
        refusals.flush().await;
    }

    async fn handle(
        &self,
        req: Request<Incoming>,
        peer: Option<PeerCertificate>,
    ) -> Response<Bytes> {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        let matched = routes::find(&method, &path);
        let operation = match matched.as_ref().map(|m| &m.route.access) {
            Some(Access::Public(serve)) => return serve(self),
            Some(Access::Operator(operation)) => Some(*operation),
            None => None,
        };
        let principal = match self.authenticate(&req, peer.as_ref(), &path).await {
            Ok(p) => p,
            Err(resp) => return resp,
        };
        let query = req.uri().query().map(str::to_owned);
        // Authorization before anything runs; a request no route matches is refused.
        let (Some(matched), Some(operation)) = (matched, operation) else {
            return self.no_such_endpoint(&principal, &method, &path).await;
        };
        let Operation {
            action,
            resource,
            refusal: refusal_action,
            handler,
        } = operation;
        let params = match matched.decode() {
            Ok(p) => p,
            Err(e) => {
                let refusal = Refusal::new(refusal_action, &method, &path, None);
                return self
                    .refuse(&principal, refusal, status_of(&e), e.kind(), &e.to_string())
                    .await;
            }
        };
        let path_tenant = match resource {
            Resource::PathTenant => match params.get("tenant") {
                Ok(t) => Some(t),
                Err(e) => return error_response(status_of(&e), e.kind(), &e.to_string(), None),
            },
            Resource::Platform | Resource::ManifestTenant => None,
        };
        let refusal = Refusal::new(refusal_action, &method, &path, path_tenant);
        // Everything that can be decided from the head is decided before a
        // byte of the body is read. The resource is known from the path,
        // except for deploy and explain, where it is the manifest's tenant:
        // there the operator must at least be allowed the action on some
        // tenant before the body is read, and on the manifest's after.
        let path_resource = match (resource, path_tenant) {
            (Resource::Platform, _) => Some(ControlResource::Platform),
            (Resource::PathTenant, Some(t)) => Some(ControlResource::Tenant(t.to_owned())),
            (Resource::PathTenant, None) | (Resource::ManifestTenant, _) => None,
        };
        // The permit of the decision on the path's resource; for deploy and
        // explain, of the decision on the manifest's tenant, once the body
        // is read. No handler runs without one.
        let mut permit: Option<Permit> = None;
        match &path_resource {
            Some(resource) => {
                match self
                    .authorize(&principal, action, resource.clone(), &method, &path)
                    .await
                {
                    Ok(p) => permit = Some(p),
                    Err(denied) => return denied,
                }
            }
            None => {
                if let Some(denied) = self
                    .authorize_any_tenant(&principal, action, &method, &path)
                    .await
                {
                    return denied;
                }
            }
        }
        // `--locked-config`: configuration changes only through `zerofn apply`.
        if self.locked_config && config::locked_refuses(&method, matched.route.path, action) {
            let e = ControlError::ConfigLocked;
            return self
                .refuse(&principal, refusal, status_of(&e), e.kind(), &e.to_string())
                .await;
        }
        let header_text = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (traceparent, tracestate) = (
            header_text(zerofn_telemetry::TRACEPARENT),
            header_text(zerofn_telemetry::TRACESTATE),
        );
        let body = match read_body(req).await {
            Ok(b) => b,
            Err((status, kind, message)) => {
                return self
                    .refuse(&principal, refusal, status, kind, &message)
                    .await
            }
        };
        if path_resource.is_none() {
            let resource = match manifest_tenant(&body) {
                Ok(t) => ControlResource::Tenant(t),
                Err(e) => {
                    return self
                        .refuse(&principal, refusal, status_of(&e), e.kind(), &e.to_string())
                        .await
                }
            };
            match self
                .authorize(&principal, action, resource, &method, &path)
                .await
            {
                Ok(p) => permit = Some(p),
                Err(denied) => return denied,
            }
        }
        let Some(permit) = permit else {
            // Unreachable: every path above either decided or returned.
            // Without a permit nothing runs (fail closed).
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the request could not be authorized",
                None,
            );
        };
        let actor = principal.actor();
        let call = Call {
            principal: &principal,
            actor: &actor,
            params: &params,
            query: query.as_deref(),
            body: &body,
            traceparent: traceparent.as_deref(),
            tracestate: tracestate.as_deref(),
        };
        match handler(self, &permit, call).await {
            Ok(Answer::Json(status, value)) => json(status, &value),
            Ok(Answer::Raw(resp)) => resp,
            Err(ControlError::Refused { reason, report }) => json(
                StatusCode::FORBIDDEN,
                &serde_json::json!({"error": {
                    "kind": "admission_denied",
                    "message": format!("admission refused: {reason}"),
                    "checks": report.checks,
                }}),
            ),
            // Refused by the API itself before the control plane saw it:
            // the control plane did not record it, so the API does.
            Err(e @ (ControlError::InvalidRequest(_) | ControlError::NoSuchName(_))) => {
                self.refuse(&principal, refusal, status_of(&e), e.kind(), &e.to_string())
                    .await
            }
            Err(e) => {
                let status = status_of(&e);
                if status.is_server_error() {
                    // The client gets the short form; the operator's log
                    // gets the cause (SQLite's message, the I/O error).
                    let mut cause = String::new();
                    let mut source = std::error::Error::source(&e);
                    while let Some(s) = source {
                        cause.push_str(": ");
                        cause.push_str(&s.to_string());
                        source = s.source();
                    }
                    tracing::error!(error = %e, cause = %cause.escape_debug(), "control request failed");
                }
                error_response(status, e.kind(), &e.to_string(), None)
            }
        }
    }

    /// The audited 404 of an authenticated request that matches no route.
    async fn no_such_endpoint(
        &self,
        principal: &Principal,
        method: &Method,
        path: &str,
    ) -> Response<Bytes> {
        self.refuse(
            principal,
            Refusal::new(Action::ApiAuthorize, method, path, None),
            StatusCode::NOT_FOUND,
            "no_such_endpoint",
            "no such endpoint; see docs/openapi.yaml",
        )
        .await
    }

    fn health(&self) -> Response<Bytes> {
        json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
    }

    fn trust_bundle(&self) -> Response<Bytes> {
        let mut resp = Response::new(Bytes::from(
            self.control.identities().bundle_pem().to_owned(),
        ));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/x-pem-file"),
        );
        resp
    }

    fn jwt_bundle(&self) -> Response<Bytes> {
        json(StatusCode::OK, &self.control.identities().jwt_bundle())
    }

    fn openapi(&self) -> Response<Bytes> {
        let mut resp = Response::new(Bytes::from_static(OPENAPI.as_bytes()));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/yaml"),
        );
        resp
    }

    async fn list_tenants(&self, _: Call<'_>) -> Reply {
        let tenants = self.control.list_tenants().await?;
        let tenants = tenants
            .into_iter()
            .map(|row| tenant_answer(row, None))
            .collect();
        Ok((StatusCode::OK, to_value(TenantList { tenants })))
    }

    async fn tenant_routes(&self, c: Call<'_>) -> Reply {
        let tenant = c.tenant()?;
        let prefixes = self.control.tenant_routes(&tenant).await?;
        Ok((
            StatusCode::OK,
            to_value(TenantRoutes {
                tenant: tenant.to_string(),
                route_prefixes: prefixes,
            }),
        ))
    }

    async fn remove_key(&self, c: Call<'_>) -> Reply {
        let key_id = c.param("key_id")?;
        self.control
            .remove_key(c.actor, &c.tenant()?, key_id)
            .await?;
        Ok((
            StatusCode::OK,
            to_value(Removed {
                removed: key_id.to_owned(),
            }),
        ))
    }

    async fn list_layers(&self, c: Call<'_>) -> Reply {
        let layers = self.control.list_layers(&c.tenant()?).await?;
        let layers = layers.into_iter().map(layer_answer).collect();
        Ok((StatusCode::OK, to_value(LayerList { layers })))
    }

    async fn delete_layer(&self, c: Call<'_>) -> Reply {
        let digest = c.param("digest")?;
        self.control
            .delete_layer(c.actor, &c.tenant()?, digest)
            .await?;
        Ok((
            StatusCode::OK,
            to_value(LayerDeleted {
                deleted: digest.to_owned(),
            }),
        ))
    }

    async fn admission_view(&self, c: Call<'_>) -> Reply {
        let view = self.control.admission_view(&c.tenant()?).await?;
        Ok((StatusCode::OK, to_value(view)))
    }

    async fn set_admission(&self, c: Call<'_>) -> Reply {
        let req: SetAdmission = parse_json(c.body)?;
        let view = self
            .control
            .set_admission(c.actor, &c.tenant()?, req)
            .await?;
        Ok((StatusCode::OK, to_value(view)))
    }

    async fn add_identity(&self, c: Call<'_>) -> Reply {
        let req: AddIdentity = parse_json(c.body)?;
        let added = self
            .control
            .add_identity(c.actor, &c.tenant()?, req)
            .await?;
        Ok((StatusCode::CREATED, to_value(added)))
    }

    async fn remove_identity(&self, c: Call<'_>) -> Reply {
        let id = c.param("id")?;
        self.control
            .remove_identity(c.actor, &c.tenant()?, id)
            .await?;
        Ok((
            StatusCode::OK,
            to_value(Removed {
                removed: id.to_owned(),
            }),
        ))
    }

    async fn list_functions(&self, _: Call<'_>) -> Reply {
        let functions = self.control.list_functions().await?;
        let functions = functions
            .into_iter()
            .map(|f| Function {
                tenant: f.tenant,
                name: f.name,
                digest: f.digest,
                signer: f.signer,
                routes: f.routes,
                deployed_at: f.deployed_at,
                version: f.version,
            })
            .collect();
        Ok((StatusCode::OK, to_value(FunctionList { functions })))
    }

    async fn current_svid(&self, c: Call<'_>) -> Reply {
        let (tenant, name) = c.function()?;
        match self.control.identities().current(&tenant, &name) {
            Some(svid) => Ok((
                StatusCode::OK,
                to_value(Svid {
                    spiffe_id: svid.spiffe_id().to_string(),
                    serial: svid.serial_hex().to_owned(),
                    not_after: svid
                        .not_after()
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                    certificate: svid.cert_pem().to_owned(),
                }),
            )),
            None => Err(ControlError::Store(StoreError::NoSuchDeployment {
                tenant: tenant.to_string(),
                name: name.to_string(),
            })),
        }
    }

    async fn revoke_svid(&self, c: Call<'_>) -> Reply {
        let (tenant, name) = c.function()?;
        let serial = self.control.revoke_svid(c.actor, &tenant, &name).await?;
        Ok((StatusCode::OK, to_value(Revoked { revoked: serial })))
    }

    async fn function_policy(&self, c: Call<'_>) -> Reply {
        let (tenant, name) = c.function()?;
        let view = self.control.function_policy(&tenant, &name).await?;
        Ok((StatusCode::OK, to_value(view)))
    }

    async fn tenant_policy(&self, c: Call<'_>) -> Reply {
        let tenant = c.tenant()?;
        let policy = self.control.tenant_policy(&tenant).await?;
        Ok((
            StatusCode::OK,
            to_value(TenantPolicy {
                tenant: tenant.to_string(),
                policy,
                zone_policy: self.control.zone_policy_text(tenant.as_str()),
            }),
        ))
    }

    async fn set_tenant_policy(&self, c: Call<'_>) -> Reply {
        let req: SetPolicy = parse_json(c.body)?;
        let set = self
            .control
            .set_tenant_policy(c.actor, &c.tenant()?, req.policy.as_deref())
            .await?;
        Ok((StatusCode::OK, to_value(set)))
    }

    async fn analyze_access(&self, c: Call<'_>) -> Reply {
        let q = analyzer_query(c.query)?;
        let report = self
            .control
            .analyze_access(q.tenant.as_deref(), q.name.as_deref(), &q.since)
            .await?;
        Ok((StatusCode::OK, to_value(report)))
    }

    async fn function_versions(&self, c: Call<'_>) -> Reply {
        let (tenant, name) = c.function()?;
        let versions: Vec<zerofn_api::FunctionVersion> = self
            .control
            .versions(&tenant, &name)
            .await?
            .into_iter()
            .map(|v| {
                let (kind, rollback_to) = match v.origin {
                    zerofn_store::VersionOrigin::Deploy => ("deploy", None),
                    zerofn_store::VersionOrigin::Rollback { to } => ("rollback", Some(to)),
                };
                zerofn_api::FunctionVersion {
                    number: v.number,
                    kind: kind.to_owned(),
                    rollback_to,
                    digest: v.digest,
                    signer: v.signer,
                    manifest_version: v.manifest_version,
                    routes: v.routes,
                    deployed_at: v.deployed_at,
                    deployed_by: v.deployed_by,
                    kept: v.kept,
                    current: v.current,
                }
            })
            .collect();
        Ok((StatusCode::OK, serde_json::json!({ "versions": versions })))
    }

    /// The route's decision is `deploy.rollback`; widening the grants of what serves now
    /// needs `permissions.grant` as well, decided here like a deploy's.
    async fn rollback(&self, c: Call<'_>) -> Reply {
        let (tenant, name) = c.function()?;
        let req: zerofn_api::RollbackRequest = parse_json(c.body)?;
        let reason = match req.reason {
            Some(reason) => Some(rollback_reason(reason)?),
            None => None,
        };
        let authority = DeployAuthority {
            grant: self
                .authz
                .decide(&ControlQuery {
                    operator: c.principal.name.clone(),
                    authentication: c.principal.authentication,
                    action: ControlAction::PermissionsGrant,
                    resource: ControlResource::Tenant(tenant.to_string()),
                })
                .is_allowed(),
            rollback: true,
        };
        let deployed = self
            .control
            .rollback(c.actor, &tenant, &name, req.to, reason, authority)
            .await?;
        Ok((StatusCode::CREATED, to_value(deployed)))
    }

    async fn undeploy(&self, c: Call<'_>) -> Reply {
        let (tenant, name) = c.function()?;
        self.control.undeploy(c.actor, &tenant, &name).await?;
        Ok((
            StatusCode::OK,
            to_value(Undeployed {
                undeployed: format!("{tenant}/{name}"),
            }),
        ))
    }

    async fn audit_tail(&self, c: Call<'_>) -> Reply {
        let n = audit_count(c.query)?;
        let records = self.control.audit_tail(n).await?;
        Ok((StatusCode::OK, to_value(AuditTail { records })))
    }

    async fn audit_query(&self, c: Call<'_>) -> Reply {
        let q = queries::audit_query(c.query, time::OffsetDateTime::now_utc())?;
        let (records, next) = self.audit.query(q).await?;
        Ok((StatusCode::OK, to_value(AuditQueryPage { records, next })))
    }

    async fn tenant_logs(&self, c: Call<'_>) -> Reply {
        let tenant = c.tenant()?;
        let q = queries::log_query(tenant.as_str(), c.query, time::OffsetDateTime::now_utc())?;
        // An unknown tenant is a 404, not an empty page that reads like a quiet function.
        self.control.store().tenant_keys(&tenant).await?;
        let page = self.control.store().invocation_logs(q).await?;
        let lines = page
            .lines
            .into_iter()
            .map(|l| LogLine {
                id: l.id,
                tenant: l.tenant,
                function: l.function,
                invocation_id: l.invocation_id,
                time: l.time,
                stream: l.stream,
                line: l.line,
                level: l.level,
                context: l.context,
            })
            .collect();
        Ok((
            StatusCode::OK,
            to_value(LogPage {
                lines,
                next: page.next,
            }),
        ))
    }

    async fn audit_verify(&self, _: Call<'_>) -> Reply {
        match self.audit_tree.verify().await {
            Ok(r) => Ok((
                StatusCode::OK,
                to_value(AuditVerify::intact_with_checkpoint(
                    r.records,
                    r.head,
                    r.checkpoint_size,
                    r.root,
                )),
            )),
            Err(ControlError::Audit(e)) if !matches!(e, zerofn_audit::AuditError::Store(_)) => {
                let (at, problem) = match e {
                    zerofn_audit::AuditError::ChainBroken { seq, problem } => (seq, problem),
                    other => (other.record().unwrap_or(0), other.to_string()),
                };
                Ok((
                    StatusCode::CONFLICT,
                    to_value(AuditVerify::broken(at, problem)),
                ))
            }
            Err(e) => Err(e),
        }
    }

    async fn audit_public_key(&self, _: Call<'_>) -> Reply {
        let key = self.audit_tree.verifier().to_string();
        Ok((StatusCode::OK, serde_json::json!({ "key": key })))
    }

    async fn audit_checkpoint(&self, _: Call<'_>) -> Reply {
        let cp = self.audit_tree.latest().await?;
        Ok((StatusCode::OK, serde_json::json!({ "checkpoint": cp.note })))
    }

    async fn audit_sign_checkpoint(&self, _: Call<'_>) -> Reply {
        let cp = self.audit_tree.checkpoint().await?;
        Ok((StatusCode::OK, serde_json::json!({ "checkpoint": cp.note })))
    }

    async fn audit_proof(&self, c: Call<'_>) -> Reply {
        let seq = query_number(c.query, "seq")?.ok_or_else(|| {
            ControlError::InvalidRequest("query parameter `seq` is required".into())
        })?;
        let size = query_number(c.query, "size")?;
        let seq = i64::try_from(seq)
            .map_err(|_| ControlError::InvalidRequest(format!("no audit record {seq}")))?;
        let proof = self.audit_tree.prove(seq, size).await?;
        Ok((StatusCode::OK, to_value(proof)))
    }

    async fn audit_consistency(&self, c: Call<'_>) -> Reply {
        let old = query_number(c.query, "old")?.ok_or_else(|| {
            ControlError::InvalidRequest("query parameter `old` is required".into())
        })?;
        let new = query_number(c.query, "new")?;
        let proof = self.audit_tree.consistency(old, new).await?;
        Ok((StatusCode::OK, to_value(proof)))
    }

    async fn audit_export(&self, c: Call<'_>) -> Reply {
        let from = query_number(c.query, "from")?.unwrap_or(1);
        let to = query_number(c.query, "to")?.ok_or_else(|| {
            ControlError::InvalidRequest("query parameter `to` is required".into())
        })?;
        let (from, to) = (
            i64::try_from(from).unwrap_or(i64::MAX),
            i64::try_from(to).unwrap_or(i64::MAX),
        );
        let records = self.audit_tree.export(from, to).await?;
        Ok((StatusCode::OK, serde_json::json!({ "records": records })))
    }

    async fn audit_prune(&self, c: Call<'_>) -> Reply {
        let req: zerofn_api::AuditPrune = parse_json(c.body)?;
        let before = queries::instant("before", &req.before, time::OffsetDateTime::now_utc())?;
        let report = self.audit_tree.prune(c.actor, before).await?;
        Ok((StatusCode::OK, to_value(report)))
    }

    /// The latest checkpoint as tlog-tiles serves it: the signed note, as text.
    async fn tlog_checkpoint(&self, _: Call<'_>) -> Result<Answer, ControlError> {
        let cp = self.audit_tree.latest().await?;
        let mut resp = Response::new(Bytes::from(cp.note));
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        // Mutable: clients must not cache it beyond a moment.
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        Ok(Answer::Raw(resp))
    }

    /// A tlog-tiles hash tile or entry bundle of the latest checkpoint's tree; 404 for one
    /// that tree does not hold or a path that names none (not an audited refusal: tlog
    /// clients probe for partial tiles).
    async fn tlog_tile(&self, c: Call<'_>) -> Result<Answer, ControlError> {
        let tile = match zerofn_audit::tiles::TilePath::parse(c.param("tile_path")?) {
            Ok(tile) => tile,
            Err(e) => {
                return Ok(Answer::Raw(error_response(
                    StatusCode::NOT_FOUND,
                    "no_such_tile",
                    &e.to_string(),
                    None,
                )))
            }
        };
        match self.audit_tree.tile(tile).await? {
            Ok(bytes) => {
                let mut resp = Response::new(Bytes::from(bytes));
                let headers = resp.headers_mut();
                headers.insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/octet-stream"),
                );
                // Immutable once served; private: it was read with an operator's grant.
                headers.insert(
                    header::CACHE_CONTROL,
                    header::HeaderValue::from_static("private, max-age=31536000, immutable"),
                );
                Ok(Answer::Raw(resp))
            }
            Err(missing) => Ok(Answer::Raw(error_response(
                StatusCode::NOT_FOUND,
                "no_such_tile",
                &missing.to_string(),
                None,
            ))),
        }
    }

    async fn metrics(&self, _: Call<'_>) -> Result<Answer, ControlError> {
        Ok(Answer::Raw(crate::metrics::response(&self.metrics)))
    }

    async fn list_operators(&self, _: Call<'_>) -> Reply {
        let operators = self.operators.list().await?;
        let operators = operators
            .into_iter()
            .map(|r| OperatorCertificate {
                name: r.name,
                serial: r.serial,
                not_after: r.not_after,
                created_at: r.created_at,
                revoked_at: r.revoked_at,
            })
            .collect();
        Ok((StatusCode::OK, to_value(OperatorList { operators })))
    }

    async fn remove_operator(&self, c: Call<'_>) -> Reply {
        let name = c.param("name")?;
        let serials = self.operators.remove(c.actor, name).await?;
        Ok((
            StatusCode::OK,
            to_value(OperatorRemoved {
                removed: name.to_string(),
                revoked: serials,
            }),
        ))
    }

    async fn show_control_policy(&self, _: Call<'_>) -> Reply {
        Ok((StatusCode::OK, self.authz.show()))
    }

    async fn set_control_policy(&self, c: Call<'_>) -> Reply {
        let req: SetControlPolicy = parse_json(c.body)?;
        let ids = self.authz.set(c.actor, &req.policy).await?;
        Ok((StatusCode::OK, to_value(ControlPolicyIds { ids })))
    }

    /// The principal of a request: the operator named by the connection's client
    /// certificate if it presented one (verified again here, on every request), else
    /// `root` if it carries the operator token. A presented certificate that does not
    /// verify is refused, whatever token comes with it. Refusals are audited.
    async fn authenticate(
        &self,
        req: &Request<Incoming>,
        peer: Option<&PeerCertificate>,
        path: &str,
    ) -> Result<Principal, Response<Bytes>> {
        let refusal = match peer {
            Some(cert) => match self.operators.authenticate(cert.0.as_ref()).await {
                Ok(name) => {
                    return Ok(Principal {
                        name: name.to_string(),
                        authentication: Authentication::Mtls,
                    })
                }
                Err(reason) => format!("client certificate refused: {reason}"),
            },
            None => {
                let presented = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .map(|v| v.as_bytes());
                if self.token.matches_header(presented) {
                    return Ok(Principal {
                        name: ROOT_OPERATOR.to_owned(),
                        authentication: Authentication::Token,
                    });
                }
                "missing or invalid operator token".to_owned()
            }
        };
        // The reason names the refusal, not the path, so that repeats from
        // one source aggregate whatever paths they try; the first record
        // of a kind keeps the (shortened) method and path in its detail.
        let record = AuditRecord::new("anonymous", Action::ApiAuthenticate, Outcome::Deny)
            .status(401)
            .reason(refusal.clone())
            .detail(serde_json::json!({
                "method": req.method().as_str(),
                "path": short(path, MAX_RECORDED_PATH),
            }));
        let source = req
            .extensions()
            .get::<PeerAddr>()
            .map(PeerAddr::ip)
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        if self.refusals.refuse(source, record).await.is_err() {
            return Err(error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "audit_unavailable",
                "the request could not be recorded",
                None,
            ));
        }
        let message = if peer.is_some() {
            format!("{refusal}; ask an operator for a new certificate (`zerofn operator add`)")
        } else {
            "missing or invalid operator token; pass `Authorization: Bearer <token>` or a client certificate".to_owned()
        };
        Err(error_response(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            &message,
            None,
        ))
    }

    /// Record a refused request, then answer it with `status` (or 500 if
    /// even the refusal cannot be recorded).
    async fn refuse(
        &self,
        principal: &Principal,
        refusal: Refusal,
        status: StatusCode,
        kind: &str,
        message: &str,
    ) -> Response<Bytes> {
        let mut record = AuditRecord::new(principal.actor(), refusal.action, Outcome::Deny)
            .status(status.as_u16())
            .reason(format!(
                "{} `{}`: {} {kind}: {}",
                refusal.method,
                refusal.path,
                status.as_u16(),
                short(message, MAX_RECORDED_MESSAGE)
            ));
        if let Some(t) = refusal.tenant {
            record = record.tenant(t);
        }
        if self.audit.append(record).await.is_err() {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "audit_unavailable",
                "the request could not be recorded",
                None,
            );
        }
        error_response(status, kind, message, None)
    }

    /// Before the body of a deploy or explain is read: `None` if the control
    /// policy could allow `principal` to take `action` on some tenant (any
    /// tenant at all, or one that exists); otherwise the audited 403. The
    /// decision on the manifest's own tenant follows once the body is read.
    async fn authorize_any_tenant(
        &self,
        principal: &Principal,
        action: ControlAction,
        method: &Method,
        path: &str,
    ) -> Option<Response<Bytes>> {
        let query = |tenant: String| ControlQuery {
            operator: principal.name.clone(),
            authentication: principal.authentication,
            action,
            resource: ControlResource::Tenant(tenant),
        };
        // A name no tenant can have: allowed only by a grant on every tenant.
        if self
            .authz
            .decide(&query(ANY_TENANT.to_owned()))
            .is_allowed()
        {
            return None;
        }
        let tenants = match self.control.list_tenants().await {
            Ok(t) => t,
            Err(error) => {
                tracing::error!(%error, "cannot list tenants to authorize a request");
                return Some(error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    error.kind(),
                    "the request could not be authorized",
                    None,
                ));
            }
        };
        if tenants
            .into_iter()
            .any(|t| self.authz.decide(&query(t.name)).is_allowed())
        {
            return None;
        }
        let why = "no permit policy matched for any tenant";
        let record = AuditRecord::new(principal.actor(), Action::ApiAuthorize, Outcome::Deny)
            .reason(format!(
                "{method} `{}`: {action} on any tenant: {why}",
                short(path, MAX_RECORDED_PATH)
            ));
        Some(
            self.forbidden(
                record,
                principal,
                action,
                "any tenant".to_owned(),
                Vec::new(),
                why,
            )
            .await,
        )
    }

    /// The control policy's permit for `principal` to take `action` on `resource`;
    /// otherwise the audited 403.
    async fn authorize(
        &self,
        principal: &Principal,
        action: ControlAction,
        resource: ControlResource,
        method: &Method,
        path: &str,
    ) -> Result<Permit, Response<Bytes>> {
        let decision = self.authz.decide(&ControlQuery {
            operator: principal.name.clone(),
            authentication: principal.authentication,
            action,
            resource: resource.clone(),
        });
        let decision = match decision {
            Decision::Allow(permit) => return Ok(permit),
            denied @ Decision::Deny(_) => denied,
        };
        let why = if !decision.errors().is_empty() {
            format!(
                "policy evaluation failed ({})",
                decision.errors().join("; ")
            )
        } else if decision.determining().is_empty() {
            "no permit policy matched".to_owned()
        } else {
            format!("forbidden by {}", decision.determining().join(", "))
        };
        let mut record = AuditRecord::new(principal.actor(), Action::ApiAuthorize, Outcome::Deny)
            .reason(format!(
                "{method} `{}`: {action} on {}: {why}",
                short(path, MAX_RECORDED_PATH),
                short(&resource.to_string(), MAX_RECORDED_TENANT * 2)
            ));
        if let ControlResource::Tenant(t) = &resource {
            record = record.tenant(short(t, MAX_RECORDED_TENANT));
        }
        Err(self
            .forbidden(
                record,
                principal,
                action,
                resource.to_string(),
                decision.determining().to_vec(),
                &why,
            )
            .await)
    }

    /// Record a refused control action, then answer 403 naming the action,
    /// the resource, the determining policies and the record's sequence
    /// number (or 500 if even the refusal cannot be recorded).
    async fn forbidden(
        &self,
        record: AuditRecord,
        principal: &Principal,
        action: ControlAction,
        resource: String,
        determining: Vec<String>,
        why: &str,
    ) -> Response<Bytes> {
        let Ok(seq) = self.audit.append(record).await else {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "audit_unavailable",
                "the request could not be recorded",
                None,
            );
        };
        json(
            StatusCode::FORBIDDEN,
            &serde_json::json!({"error": {
                "kind": "forbidden",
                "message": format!(
                    "operator `{}` may not take {action} on {resource}: {why}",
                    principal.name
                ),
                "action": action.as_str(),
                "resource": resource,
                "determining": determining,
                "decision_id": seq,
            }}),
        )
    }

    async fn add_operator(&self, c: Call<'_>) -> Reply {
        let req: AddOperator = parse_json(c.body)?;
        let ttl = match req.ttl_hours {
            None => DEFAULT_OPERATOR_TTL,
            Some(h) => Duration::from_secs(h.saturating_mul(3600)),
        };
        let issued = self
            .operators
            .add(c.actor, &req.name, &req.public_key, ttl)
            .await?;
        Ok((StatusCode::CREATED, to_value(issued)))
    }

    async fn create_tenant(&self, c: Call<'_>) -> Reply {
        let req: CreateTenant = parse_json(c.body)?;
        let row = self
            .control
            .create_tenant(c.actor, &req.name, &req.signing_keys, &req.route_prefixes)
            .await?;
        // `create_tenant` parsed the name before creating it.
        let tenant = TenantName::parse(&row.name)
            .map_err(|e| ControlError::Internal(format!("created tenant's name: {e}")))?;
        let prefixes = self.control.tenant_routes(&tenant).await?;
        Ok((
            StatusCode::CREATED,
            to_value(tenant_answer(row, Some(prefixes))),
        ))
    }

    async fn set_routes(&self, c: Call<'_>) -> Reply {
        let req: SetRoutes = parse_json(c.body)?;
        let tenant = c.tenant()?;
        let prefixes = self
            .control
            .set_tenant_routes(c.actor, &tenant, &req.route_prefixes)
            .await?;
        Ok((
            StatusCode::OK,
            to_value(TenantRoutes {
                tenant: tenant.to_string(),
                route_prefixes: prefixes,
            }),
        ))
    }

    async fn tenant_limits(&self, c: Call<'_>) -> Reply {
        let limits = self.control.tenant_limits(&c.tenant()?).await?;
        Ok((StatusCode::OK, to_value(limits)))
    }

    async fn set_tenant_limits(&self, c: Call<'_>) -> Reply {
        let req: SetTenantLimits = parse_json(c.body)?;
        let limits = self
            .control
            .set_tenant_limits(c.actor, &c.tenant()?, &req)
            .await?;
        Ok((StatusCode::OK, to_value(limits)))
    }

    async fn add_key(&self, c: Call<'_>) -> Reply {
        let req: AddKey = parse_json(c.body)?;
        let tenant = c.tenant()?;
        let key_id = self
            .control
            .add_key(c.actor, &tenant, &req.public_key)
            .await?;
        Ok((
            StatusCode::CREATED,
            to_value(KeyAdded {
                tenant: tenant.to_string(),
                key_id,
            }),
        ))
    }

    async fn publish_layer(&self, c: Call<'_>) -> Reply {
        let req: PublishLayer = parse_json(c.body)?;
        let component = base64::engine::general_purpose::STANDARD
            .decode(req.component.as_bytes())
            .map_err(|e| {
                ControlError::InvalidRequest(format!("`component` is not valid base64: {e}"))
            })?;
        let layer = self
            .control
            .publish_layer(c.actor, &c.tenant()?, component, req.bundle.into_bytes())
            .await?;
        Ok((StatusCode::CREATED, to_value(layer_answer(layer))))
    }

    async fn explain(&self, c: Call<'_>) -> Reply {
        let req = deploy_request(parse_json(c.body)?)?;
        let result = self.control.explain(req).await?;
        Ok((
            StatusCode::OK,
            serde_json::to_value(result).unwrap_or_default(),
        ))
    }

    async fn deploy(&self, c: Call<'_>) -> Reply {
        let req = deploy_request(parse_json(c.body)?)?;
        // Decided now, used by the deploy under the function's lock, where it knows
        // whether the manifest widens the deployed grants or goes below its version.
        let tenant = manifest_tenant(c.body)?;
        let may = |action| {
            self.authz
                .decide(&ControlQuery {
                    operator: c.principal.name.clone(),
                    authentication: c.principal.authentication,
                    action,
                    resource: ControlResource::Tenant(tenant.clone()),
                })
                .is_allowed()
        };
        let authority = DeployAuthority {
            grant: may(ControlAction::PermissionsGrant),
            rollback: may(ControlAction::DeployRollback),
        };
        let deployed = self.control.deploy(c.actor, req, authority).await?;
        Ok((
            StatusCode::CREATED,
            to_value(Deployed {
                tenant: deployed.tenant,
                name: deployed.name,
                digest: deployed.digest,
                signer: deployed.signer,
                routes: deployed.routes,
                spiffe_id: deployed.spiffe_id,
                admitted_by: deployed.admitted_by,
                layers: deployed.layers,
                composed_digest: deployed.composed_digest,
                version: deployed.version,
                number: deployed.number,
            }),
        ))
    }
}

/// The tenant named by the manifest of a deploy or explain request body.
fn manifest_tenant(body: &[u8]) -> Result<String, ControlError> {
    let req: ManifestOnly = parse_json(body)?;
    let manifest = zerofn_admission::Manifest::from_toml(&req.manifest)?;
    Ok(manifest.tenant.as_str().to_owned())
}

fn deploy_request(req: Deploy) -> Result<DeployRequest, ControlError> {
    let component = base64::engine::general_purpose::STANDARD
        .decode(req.component.as_bytes())
        .map_err(|e| {
            ControlError::InvalidRequest(format!("`component` is not valid base64: {e}"))
        })?;
    if req.attestations.len() > zerofn_admission::MAX_ATTESTATIONS {
        return Err(ControlError::InvalidRequest(format!(
            "{} attestation files, more than the {} allowed",
            req.attestations.len(),
            zerofn_admission::MAX_ATTESTATIONS
        )));
    }
    let allow_rollback = match req.allow_rollback {
        Some(reason) => Some(rollback_reason(reason)?),
        None => None,
    };
    Ok(DeployRequest {
        allow_rollback,
        manifest: req.manifest,
        component,
        bundle: req.bundle.into_bytes(),
        attestations: req
            .attestations
            .into_iter()
            .map(|a| zerofn_admission::SubmittedFile {
                name: a.name,
                bytes: a.content.into_bytes(),
            })
            .collect(),
    })
}

/// Longest `allow_rollback` reason (it goes into the audit log).
const MAX_ROLLBACK_REASON: usize = 500;

/// A rollback reason: what an auditor reads later, so it must say something, briefly.
fn rollback_reason(reason: String) -> Result<String, ControlError> {
    let trimmed = reason.trim();
    if trimmed.is_empty() {
        return Err(ControlError::InvalidRequest(
            "`allow_rollback` needs a reason (why this older version is deployed)".to_owned(),
        ));
    }
    if trimmed.chars().count() > MAX_ROLLBACK_REASON || trimmed.chars().any(char::is_control) {
        return Err(ControlError::InvalidRequest(format!(
            "`allow_rollback` must be one line of at most {MAX_ROLLBACK_REASON} characters"
        )));
    }
    Ok(trimmed.to_owned())
}

/// The one mapping from control-plane errors to HTTP statuses.
fn status_of(e: &ControlError) -> StatusCode {
    match e {
        ControlError::BadRequest(_)
        | ControlError::InvalidRequest(_)
        | ControlError::Manifest(_)
        | ControlError::InvalidKey(_)
        | ControlError::Policy(_)
        | ControlError::Zone(_)
        | ControlError::Admission(zerofn_admission::AdmissionError::BundleMalformed { .. }) => {
            StatusCode::BAD_REQUEST
        }
        ControlError::Admission(
            zerofn_admission::AdmissionError::KeylessNotSupported
            | zerofn_admission::AdmissionError::DsseNotSupported,
        ) => StatusCode::UNPROCESSABLE_ENTITY,
        ControlError::Admission(_)
        | ControlError::Layer(_)
        | ControlError::Refused { .. }
        | ControlError::RouteNotOwned { .. }
        | ControlError::NotAllowed { .. }
        | ControlError::ZoneRefused { .. } => StatusCode::FORBIDDEN,
        ControlError::ZoneConflict { .. } => StatusCode::CONFLICT,
        ControlError::Sandbox(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ControlError::Store(
            StoreError::TenantExists(_)
            | StoreError::KeyExists { .. }
            | StoreError::IdentityExists { .. }
            | StoreError::RouteTaken { .. }
            | StoreError::PrefixTaken { .. }
            | StoreError::LayerExists { .. }
            | StoreError::MtlsCaExists { .. }
            | StoreError::IssuerExists { .. }
            | StoreError::ApiKeyExists { .. }
            | StoreError::LayerPinned { .. }
            | StoreError::VersionNotKept { .. }
            | StoreError::PruneRaced
            | StoreError::StaleSerial { .. },
        ) => StatusCode::CONFLICT,
        ControlError::ConfigLocked => StatusCode::CONFLICT,
        ControlError::Store(e) if e.is_not_found() => StatusCode::NOT_FOUND,
        ControlError::NoSuchName(_) => StatusCode::NOT_FOUND,
        ControlError::Events(e) => {
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        }
        ControlError::Objects(e) => {
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        }
        ControlError::Store(_) | ControlError::Audit(_) | ControlError::Internal(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::from(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(body)
        .map_err(|e| ControlError::InvalidRequest(format!("invalid JSON request body: {e}")))
}

/// What went wrong reading a body: status, kind, message.
type BodyRefusal = (StatusCode, &'static str, String);

async fn read_body(req: Request<Incoming>) -> Result<Bytes, BodyRefusal> {
    // A declared length over the cap is refused before anything is read.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_API_BODY as u64) {
        return Err(too_large());
    }
    match tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(req.into_body(), MAX_API_BODY).collect(),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(_)) => Err(too_large()),
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "request body was not received in time".to_owned(),
        )),
    }
}

fn too_large() -> BodyRefusal {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("request body exceeds {MAX_API_BODY} bytes or could not be read"),
    )
}

/// What a refused request's audit record names: the action it would have
/// been, and the request line (the path cut short).
struct Refusal {
    action: Action,
    method: Method,
    path: String,
    tenant: Option<String>,
}

impl Refusal {
    fn new(action: Action, method: &Method, path: &str, tenant: Option<&str>) -> Refusal {
        Refusal {
            action,
            method: method.clone(),
            path: short(path, MAX_RECORDED_PATH),
            tenant: tenant.map(|t| short(t, MAX_RECORDED_TENANT)),
        }
    }
}

/// Request-derived text kept in a record: at most `max` chars, escaped.
fn short(text: &str, max: usize) -> String {
    let escaped: String = text.escape_debug().collect();
    match escaped.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", escaped.get(..cut).unwrap_or_default()),
        None => escaped,
    }
}

struct AnalyzerQuery {
    tenant: Option<String>,
    name: Option<String>,
    /// RFC 3339.
    since: String,
}

/// `?tenant=T&name=N&since=24h` (since defaults to 24h).
fn analyzer_query(query: Option<&str>) -> Result<AnalyzerQuery, ControlError> {
    let mut q = AnalyzerQuery {
        tenant: None,
        name: None,
        since: String::new(),
    };
    let mut window = 86_400u64;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = routes::decode_query_value(v)?;
        match k {
            "tenant" => q.tenant = Some(v),
            "name" => q.name = Some(v),
            "since" => {
                window = crate::analyzer::parse_duration(&v)
                    .map_err(|e| ControlError::InvalidRequest(e.to_string()))?
            }
            other => {
                return Err(ControlError::InvalidRequest(format!(
                    "unknown query parameter `{}`; use tenant, name and since",
                    other.escape_debug()
                )))
            }
        }
    }
    if q.name.is_some() && q.tenant.is_none() {
        return Err(ControlError::InvalidRequest(
            "`name` needs `tenant`".to_owned(),
        ));
    }
    let start = time::OffsetDateTime::now_utc()
        - time::Duration::seconds(
            i64::try_from(window)
                .unwrap_or(i64::MAX / 2)
                .min(i64::MAX / 2),
        );
    q.since = start
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| ControlError::Internal(e.to_string()))?;
    Ok(q)
}

/// The decimal number `name` of the query string, if present.
fn query_number(query: Option<&str>, name: &str) -> Result<Option<u64>, ControlError> {
    let Some(value) = query
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
    else {
        return Ok(None);
    };
    value.parse::<u64>().map(Some).map_err(|_| {
        ControlError::InvalidRequest(format!(
            "query parameter `{name}` must be a non-negative integer, not `{}`",
            value.escape_debug()
        ))
    })
}

/// `n` from `?n=N`: how many records to return (1..=10000, default 20).
fn audit_count(query: Option<&str>) -> Result<u32, ControlError> {
    let Some(value) = query
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("n="))
    else {
        return Ok(20);
    };
    match value.parse::<u32>() {
        Ok(n) if (1..=10_000).contains(&n) => Ok(n),
        _ => Err(ControlError::InvalidRequest(format!(
            "query parameter `n` must be a number from 1 to 10000, not `{}`",
            value.escape_debug()
        ))),
    }
}

fn tenant_answer(row: zerofn_store::TenantRow, route_prefixes: Option<Vec<String>>) -> Tenant {
    Tenant {
        name: row.name,
        created_at: row.created_at,
        key_ids: row.key_ids,
        route_prefixes,
    }
}

fn layer_answer(layer: zerofn_store::LayerSummary) -> Layer {
    Layer {
        tenant: layer.tenant,
        digest: layer.digest,
        signer: layer.signer,
        exports: layer.exports,
        size: layer.size,
        published_at: layer.published_at,
        pinned_by: layer.pinned_by,
    }
}

fn to_value(value: impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    /// The answers built from the control plane's values are the API's types; their wire
    /// form is what the server's own types sent before (tests and docs/openapi.yaml rely on
    /// it), and the CLI reads it back as the same type.
    #[test]
    fn the_servers_answers_keep_their_wire_form() {
        let identity = zerofn_store::TenantIdentityRow {
            id: "i1".into(),
            kind: "exact".into(),
            san: "me@example.com".into(),
            issuer: "https://issuer".into(),
            trusted_root: "{}".into(),
            added_at: "t".into(),
        };
        let view = crate::admission::AdmissionView {
            tenant: "acme".into(),
            key_ids: vec!["sha256:ab".into()],
            identities: vec![crate::answers::keyless_identity(&identity)],
            policy: "permit(principal, action, resource);".into(),
            policy_ids: vec!["p0".into()],
            default_policy: true,
            severity_threshold: None,
            require_sbom: false,
            updated_at: None,
        };
        assert_eq!(
            serde_json::to_value(&view).unwrap(),
            json!({
                "tenant": "acme",
                "key_ids": ["sha256:ab"],
                "identities": [{
                    "id": "i1", "kind": "exact", "san": "me@example.com",
                    "issuer": "https://issuer", "added_at": "t",
                }],
                "policy": "permit(principal, action, resource);",
                "policy_ids": ["p0"],
                "default_policy": true,
                "severity_threshold": null,
                "require_sbom": false,
                "updated_at": null,
            })
        );

        let explained = crate::admission::ExplainResult {
            tenant: "acme".into(),
            name: "hello".into(),
            admitted: false,
            checks: crate::answers::checks(zerofn_admission::AdmissionReport {
                checks: vec![zerofn_admission::Check {
                    check: "signature".into(),
                    result: zerofn_admission::CheckResult::Fail,
                    detail: "no key".into(),
                }],
            }),
        };
        assert_eq!(
            serde_json::to_value(&explained).unwrap(),
            json!({
                "tenant": "acme",
                "name": "hello",
                "admitted": false,
                "checks": [{ "check": "signature", "result": "fail", "detail": "no key" }],
            })
        );
        assert_eq!(explained.checks[0].result, "fail");

        let set = zerofn_api::TenantPolicySet {
            tenant: "acme".into(),
            policies: vec!["p".into()],
        };
        assert_eq!(
            serde_json::to_value(&set).unwrap(),
            json!({ "tenant": "acme", "policies": ["p"] })
        );

        let report = crate::analyzer::AccessReport {
            since: "t".into(),
            records: 3,
            truncated: false,
            functions: vec![crate::analyzer::FunctionAccess {
                tenant: "acme".into(),
                name: "hello".into(),
                granted: vec!["kv:a:read".into()],
                used: Vec::new(),
                unused: vec!["kv:a:read".into()],
                denied: Vec::new(),
                suggested: String::new(),
            }],
        };
        let read: zerofn_api::AccessReport =
            serde_json::from_value(serde_json::to_value(&report).unwrap()).unwrap();
        assert_eq!(read.functions[0].unused, ["kv:a:read"]);
    }
}
