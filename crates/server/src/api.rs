//! The control API: HTTP+JSON over [`ControlPlane`]. Described by
//! `docs/openapi.yaml`.
//!
//! Every request but the public ones (health, trust bundle, API description)
//! is authenticated, as the operator token (`root`) or, over TLS, as the
//! operator named by a verified client certificate; then authorized by the
//! control policy for the route's action and resource (`authz.rs`); only
//! then dispatched. A refusal at either step is audited.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use zerofn_audit::{Action, AuditLog, AuditRecord, Outcome, RefusalAggregator};
use zerofn_gateway::{error_response, GatewayConfig};
use zerofn_listener::{PeerAddr, PeerCertificate, Tls};
use zerofn_policy::{Authentication, ControlAction, ControlQuery, ControlResource, ROOT_OPERATOR};
use zerofn_store::StoreError;

use crate::admission::{AddIdentity, SetAdmission, SubmittedAttestation};
use crate::auth::OperatorToken;
use crate::authz::{self, ControlAuthz, Target};
use crate::control::{ControlError, ControlPlane, DeployRequest};
use crate::operators::{Operators, DEFAULT_OPERATOR_TTL};

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
    control: Arc<ControlPlane>,
    token: OperatorToken,
    audit: AuditLog,
    authz: Arc<ControlAuthz>,
    operators: Arc<Operators>,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Refusals of callers that did not authenticate (bad or missing
    /// token, refused certificates, refused connections): repeats are
    /// counted into one record per source and reason per interval, so
    /// anonymous traffic cannot grow the log without bound.
    refusals: RefusalAggregator,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddOperator {
    name: String,
    /// The operator's ECDSA P-256 public key, PEM `PUBLIC KEY`.
    public_key: String,
    #[serde(default)]
    ttl_hours: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetControlPolicy {
    policy: String,
}

/// The manifest of a deploy or explain body, read only to find its tenant.
#[derive(Deserialize)]
struct ManifestOnly {
    manifest: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    name: String,
    #[serde(default)]
    signing_keys: Vec<String>,
    /// The tenant's route space; `/<name>/...` when absent or empty.
    #[serde(default)]
    route_prefixes: Vec<String>,
}

/// `PUT /v1/tenants/{t}/routes`: the tenant's whole new route space.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetRoutes {
    route_prefixes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddKey {
    public_key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Deploy {
    manifest: String,
    /// base64 (standard alphabet) of the component bytes.
    component: String,
    /// The Sigstore bundle JSON, as text.
    bundle: String,
    /// Attestation files (bundles or `.intoto.jsonl`) submitted with it.
    #[serde(default)]
    attestations: Vec<SubmittedAttestation>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishLayer {
    /// base64 (standard alphabet) of the layer component.
    component: String,
    /// The Sigstore bundle JSON, as text.
    bundle: String,
}

type Reply = Result<(StatusCode, serde_json::Value), ControlError>;

impl Api {
    pub(crate) fn new(
        control: Arc<ControlPlane>,
        token: OperatorToken,
        audit: AuditLog,
        authz: Arc<ControlAuthz>,
        operators: Arc<Operators>,
        tls: Option<Arc<rustls::ServerConfig>>,
        refusals: RefusalAggregator,
    ) -> Arc<Api> {
        Arc::new(Api {
            control,
            token,
            audit,
            authz,
            operators,
            tls,
            refusals,
        })
    }

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
        if req.method() == Method::GET && path == "/v1/health" {
            return json(StatusCode::OK, &serde_json::json!({ "status": "ok" }));
        }
        if req.method() == Method::GET && path == "/v1/identity/bundle" {
            // The trust bundle is public: peers need it before they can
            // authenticate anything.
            let mut resp = Response::new(Bytes::from(
                self.control.identities().bundle_pem().to_owned(),
            ));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/x-pem-file"),
            );
            return resp;
        }
        if req.method() == Method::GET && path == "/v1/identity/jwt-bundle" {
            // The JWT authorities (JWKS) that sign JWT-SVIDs: public, so
            // that any peer can verify a token a function presents.
            return json(StatusCode::OK, &self.control.identities().jwt_bundle());
        }
        if req.method() == Method::GET && path == "/v1/openapi.yaml" {
            let mut resp = Response::new(Bytes::from_static(OPENAPI.as_bytes()));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/yaml"),
            );
            return resp;
        }
        let principal = match self.authenticate(&req, peer.as_ref(), &path).await {
            Ok(p) => p,
            Err(resp) => return resp,
        };
        let method = req.method().clone();
        let query = req.uri().query().map(str::to_owned);
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // Authorization before anything runs; a route without a mapping is refused.
        let Some(required) = authz::required(&method, &segments) else {
            return self
                .refuse(
                    &principal,
                    Refusal::new(Action::ApiAuthorize, &method, &path, None),
                    StatusCode::NOT_FOUND,
                    "no_such_endpoint",
                    "no such endpoint; see docs/openapi.yaml",
                )
                .await;
        };
        let path_tenant = match &required.target {
            Target::Tenant(t) => Some(t.as_str()),
            Target::Platform | Target::ManifestTenant => None,
        };
        let refusal = Refusal::new(
            refusal_action(&method, &segments),
            &method,
            &path,
            path_tenant,
        );
        // Everything that can be decided from the head is decided before a
        // byte of the body is read. The resource is known from the path,
        // except for deploy and explain, where it is the manifest's tenant:
        // there the operator must at least be allowed the action on some
        // tenant before the body is read, and on the manifest's after.
        let path_resource = match &required.target {
            Target::Platform => Some(ControlResource::Platform),
            Target::Tenant(t) => Some(ControlResource::Tenant(t.clone())),
            Target::ManifestTenant => None,
        };
        let denied = match &path_resource {
            Some(resource) => {
                self.authorize(
                    &principal,
                    required.action,
                    resource.clone(),
                    &method,
                    &path,
                )
                .await
            }
            None => {
                self.authorize_any_tenant(&principal, required.action, &method, &path)
                    .await
            }
        };
        if let Some(denied) = denied {
            return denied;
        }
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
            if let Some(denied) = self
                .authorize(&principal, required.action, resource, &method, &path)
                .await
            {
                return denied;
            }
        }
        let actor = principal.actor();
        let actor = actor.as_str();
        let reply = match (&method, segments.as_slice()) {
            (&Method::GET, ["v1", "tenants"]) => self
                .control
                .list_tenants()
                .await
                .map(|t| (StatusCode::OK, serde_json::json!({ "tenants": t }))),
            (&Method::POST, ["v1", "tenants"]) => self.create_tenant(actor, &body).await,
            (&Method::GET, ["v1", "tenants", tenant, "routes"]) => {
                self.control.tenant_routes(tenant).await.map(|p| {
                    (
                        StatusCode::OK,
                        serde_json::json!({ "tenant": tenant, "route_prefixes": p }),
                    )
                })
            }
            (&Method::PUT, ["v1", "tenants", tenant, "routes"]) => {
                self.set_routes(actor, tenant, &body).await
            }
            (&Method::POST, ["v1", "tenants", tenant, "keys"]) => {
                self.add_key(actor, tenant, &body).await
            }
            (&Method::DELETE, ["v1", "tenants", tenant, "keys", key_id]) => self
                .control
                .remove_key(actor, tenant, &percent_decode(key_id))
                .await
                .map(|()| {
                    (
                        StatusCode::OK,
                        serde_json::json!({ "removed": percent_decode(key_id) }),
                    )
                }),
            (&Method::POST, ["v1", "tenants", tenant, "layers"]) => {
                self.publish_layer(actor, tenant, &body).await
            }
            (&Method::GET, ["v1", "tenants", tenant, "layers"]) => self
                .control
                .list_layers(tenant)
                .await
                .map(|l| (StatusCode::OK, serde_json::json!({ "layers": l }))),
            (&Method::DELETE, ["v1", "tenants", tenant, "layers", digest]) => {
                let digest = percent_decode(digest);
                self.control
                    .delete_layer(actor, tenant, &digest)
                    .await
                    .map(|()| (StatusCode::OK, serde_json::json!({ "deleted": digest })))
            }
            (&Method::POST, ["v1", "deployments"]) => self.deploy(actor, &body).await,
            (&Method::POST, ["v1", "admission", "explain"]) => self.explain(&body).await,
            (&Method::GET, ["v1", "tenants", tenant, "admission"]) => self
                .control
                .admission_view(tenant)
                .await
                .map(|v| (StatusCode::OK, serde_json::to_value(v).unwrap_or_default())),
            (&Method::PUT, ["v1", "tenants", tenant, "admission"]) => {
                match parse_json::<SetAdmission>(&body) {
                    Ok(req) => self
                        .control
                        .set_admission(actor, tenant, req)
                        .await
                        .map(|v| (StatusCode::OK, serde_json::to_value(v).unwrap_or_default())),
                    Err(e) => Err(e),
                }
            }
            (&Method::POST, ["v1", "tenants", tenant, "identities"]) => {
                match parse_json::<AddIdentity>(&body) {
                    Ok(req) => self
                        .control
                        .add_identity(actor, tenant, req)
                        .await
                        .map(|v| {
                            (
                                StatusCode::CREATED,
                                serde_json::to_value(v).unwrap_or_default(),
                            )
                        }),
                    Err(e) => Err(e),
                }
            }
            (&Method::DELETE, ["v1", "tenants", tenant, "identities", id]) => self
                .control
                .remove_identity(actor, tenant, id)
                .await
                .map(|()| (StatusCode::OK, serde_json::json!({ "removed": id }))),
            (&Method::GET, ["v1", "functions"]) => self
                .control
                .list_functions()
                .await
                .map(|f| (StatusCode::OK, serde_json::json!({ "functions": f }))),
            (&Method::GET, ["v1", "functions", tenant, name, "svid"]) => {
                match self.control.identities().current(tenant, name) {
                    Some(svid) => Ok((
                        StatusCode::OK,
                        serde_json::json!({
                            "spiffe_id": svid.spiffe_id().to_string(),
                            "serial": svid.serial_hex(),
                            "not_after": svid
                                .not_after()
                                .format(&time::format_description::well_known::Rfc3339)
                                .unwrap_or_default(),
                            "certificate": svid.cert_pem(),
                        }),
                    )),
                    None => Err(ControlError::Store(StoreError::NoSuchDeployment {
                        tenant: (*tenant).to_owned(),
                        name: (*name).to_owned(),
                    })),
                }
            }
            (&Method::POST, ["v1", "functions", tenant, name, "svid", "revoke"]) => self
                .control
                .revoke_svid(actor, tenant, name)
                .await
                .map(|serial| (StatusCode::OK, serde_json::json!({ "revoked": serial }))),
            (&Method::GET, ["v1", "tenants", tenant, "functions", name, "policy"]) => self
                .control
                .function_policy(tenant, name)
                .await
                .map(|v| (StatusCode::OK, serde_json::to_value(v).unwrap_or_default())),
            (&Method::GET, ["v1", "tenants", tenant, "policy"]) => {
                self.control.tenant_policy(tenant).await.map(|p| {
                    (
                        StatusCode::OK,
                        serde_json::json!({ "tenant": tenant, "policy": p }),
                    )
                })
            }
            (&Method::PUT, ["v1", "tenants", tenant, "policy"]) => {
                match parse_json::<SetPolicy>(&body) {
                    Ok(req) => self
                        .control
                        .set_tenant_policy(actor, tenant, req.policy.as_deref())
                        .await
                        .map(|v| (StatusCode::OK, serde_json::to_value(v).unwrap_or_default())),
                    Err(e) => Err(e),
                }
            }
            (&Method::GET, ["v1", "access-analyzer"]) => match analyzer_query(query.as_deref()) {
                Ok(q) => self
                    .control
                    .analyze_access(q.tenant.as_deref(), q.name.as_deref(), &q.since)
                    .await
                    .map(|v| (StatusCode::OK, serde_json::to_value(v).unwrap_or_default())),
                Err(e) => Err(e),
            },
            (&Method::DELETE, ["v1", "functions", tenant, name]) => {
                self.control.undeploy(actor, tenant, name).await.map(|()| {
                    (
                        StatusCode::OK,
                        serde_json::json!({ "undeployed": format!("{tenant}/{name}") }),
                    )
                })
            }
            (&Method::GET, ["v1", "audit"]) => match audit_count(query.as_deref()) {
                Ok(n) => self
                    .control
                    .audit_tail(n)
                    .await
                    .map(|r| (StatusCode::OK, serde_json::json!({ "records": r }))),
                Err(e) => Err(e),
            },
            (&Method::POST, ["v1", "operators"]) => self.add_operator(actor, &body).await,
            (&Method::GET, ["v1", "operators"]) => self
                .operators
                .list()
                .await
                .map(|o| (StatusCode::OK, serde_json::json!({ "operators": o }))),
            (&Method::DELETE, ["v1", "operators", name]) => {
                self.operators.remove(actor, name).await.map(|serials| {
                    (
                        StatusCode::OK,
                        serde_json::json!({ "removed": name, "revoked": serials }),
                    )
                })
            }
            (&Method::GET, ["v1", "control-policy"]) => Ok((StatusCode::OK, self.authz.show())),
            (&Method::PUT, ["v1", "control-policy"]) => {
                match parse_json::<SetControlPolicy>(&body) {
                    Ok(req) => self
                        .authz
                        .set(actor, &req.policy)
                        .await
                        .map(|ids| (StatusCode::OK, serde_json::json!({ "ids": ids }))),
                    Err(e) => Err(e),
                }
            }
            (&Method::GET, ["v1", "audit", "verify"]) => match self.control.audit_verify().await {
                Ok(head) => Ok((
                    StatusCode::OK,
                    serde_json::json!({ "ok": true, "records": head.records, "head": head.hash }),
                )),
                Err(ControlError::Audit(zerofn_audit::AuditError::ChainBroken {
                    seq,
                    problem,
                })) => Ok((
                    StatusCode::CONFLICT,
                    serde_json::json!({ "ok": false, "broken_at": seq, "problem": problem }),
                )),
                Err(e) => Err(e),
            },
            _ => {
                return self
                    .refuse(
                        &principal,
                        refusal,
                        StatusCode::NOT_FOUND,
                        "no_such_endpoint",
                        "no such endpoint; see docs/openapi.yaml",
                    )
                    .await
            }
        };
        match reply {
            Ok((status, value)) => json(status, &value),
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
            Err(e @ ControlError::InvalidRequest(_)) => {
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

    /// `None` if the control policy allows `principal` to take `action` on `resource`;
    /// otherwise the audited 403.
    async fn authorize(
        &self,
        principal: &Principal,
        action: ControlAction,
        resource: ControlResource,
        method: &Method,
        path: &str,
    ) -> Option<Response<Bytes>> {
        let decision = self.authz.decide(&ControlQuery {
            operator: principal.name.clone(),
            authentication: principal.authentication,
            action,
            resource: resource.clone(),
        });
        if decision.is_allowed() {
            return None;
        }
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
        Some(
            self.forbidden(
                record,
                principal,
                action,
                resource.to_string(),
                decision.determining().to_vec(),
                &why,
            )
            .await,
        )
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

    async fn add_operator(&self, actor: &str, body: &[u8]) -> Reply {
        let req: AddOperator = parse_json(body)?;
        let ttl = match req.ttl_hours {
            None => DEFAULT_OPERATOR_TTL,
            Some(h) => Duration::from_secs(h.saturating_mul(3600)),
        };
        let issued = self
            .operators
            .add(actor, &req.name, &req.public_key, ttl)
            .await?;
        Ok((
            StatusCode::CREATED,
            serde_json::to_value(issued).unwrap_or_default(),
        ))
    }

    async fn create_tenant(&self, actor: &str, body: &[u8]) -> Reply {
        let req: CreateTenant = parse_json(body)?;
        let row = self
            .control
            .create_tenant(actor, &req.name, &req.signing_keys, &req.route_prefixes)
            .await?;
        let mut value = serde_json::to_value(&row).unwrap_or_default();
        if let Some(fields) = value.as_object_mut() {
            let prefixes = self.control.tenant_routes(&row.name).await?;
            fields.insert("route_prefixes".to_owned(), prefixes.into());
        }
        Ok((StatusCode::CREATED, value))
    }

    async fn set_routes(&self, actor: &str, tenant: &str, body: &[u8]) -> Reply {
        let req: SetRoutes = parse_json(body)?;
        let prefixes = self
            .control
            .set_tenant_routes(actor, tenant, &req.route_prefixes)
            .await?;
        Ok((
            StatusCode::OK,
            serde_json::json!({ "tenant": tenant, "route_prefixes": prefixes }),
        ))
    }

    async fn add_key(&self, actor: &str, tenant: &str, body: &[u8]) -> Reply {
        let req: AddKey = parse_json(body)?;
        let key_id = self.control.add_key(actor, tenant, &req.public_key).await?;
        Ok((
            StatusCode::CREATED,
            serde_json::json!({ "tenant": tenant, "key_id": key_id }),
        ))
    }

    async fn publish_layer(&self, actor: &str, tenant: &str, body: &[u8]) -> Reply {
        let req: PublishLayer = parse_json(body)?;
        let component = base64::engine::general_purpose::STANDARD
            .decode(req.component.as_bytes())
            .map_err(|e| {
                ControlError::InvalidRequest(format!("`component` is not valid base64: {e}"))
            })?;
        let layer = self
            .control
            .publish_layer(actor, tenant, component, req.bundle.into_bytes())
            .await?;
        Ok((
            StatusCode::CREATED,
            serde_json::to_value(layer).unwrap_or_default(),
        ))
    }

    async fn explain(&self, body: &[u8]) -> Reply {
        let req = deploy_request(parse_json(body)?)?;
        let result = self.control.explain(req).await?;
        Ok((
            StatusCode::OK,
            serde_json::to_value(result).unwrap_or_default(),
        ))
    }

    async fn deploy(&self, actor: &str, body: &[u8]) -> Reply {
        let req = deploy_request(parse_json(body)?)?;
        let deployed = self.control.deploy(actor, req).await?;
        Ok((
            StatusCode::CREATED,
            serde_json::to_value(deployed).unwrap_or_default(),
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
    Ok(DeployRequest {
        manifest: req.manifest,
        component,
        bundle: req.bundle.into_bytes(),
        attestations: req.attestations.into_iter().map(Into::into).collect(),
    })
}

/// The one mapping from control-plane errors to HTTP statuses.
fn status_of(e: &ControlError) -> StatusCode {
    match e {
        ControlError::BadRequest(_)
        | ControlError::InvalidRequest(_)
        | ControlError::Manifest(_)
        | ControlError::InvalidKey(_)
        | ControlError::Policy(_)
        | ControlError::Admission(zerofn_admission::AdmissionError::BundleMalformed { .. }) => {
            StatusCode::BAD_REQUEST
        }
        ControlError::Admission(
            zerofn_admission::AdmissionError::KeylessNotSupported
            | zerofn_admission::AdmissionError::DsseNotSupported,
        ) => StatusCode::UNPROCESSABLE_ENTITY,
        ControlError::Admission(_)
        | ControlError::Refused { .. }
        | ControlError::RouteNotOwned { .. } => StatusCode::FORBIDDEN,
        ControlError::Sandbox(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ControlError::Store(
            StoreError::TenantExists(_)
            | StoreError::KeyExists { .. }
            | StoreError::IdentityExists { .. }
            | StoreError::RouteTaken { .. }
            | StoreError::PrefixTaken { .. }
            | StoreError::LayerExists { .. }
            | StoreError::LayerPinned { .. },
        ) => StatusCode::CONFLICT,
        ControlError::Store(
            StoreError::NoSuchTenant(_)
            | StoreError::NoSuchKey { .. }
            | StoreError::NoSuchIdentity { .. }
            | StoreError::NoSuchDeployment { .. }
            | StoreError::NoSuchLayer { .. }
            | StoreError::NoSuchOperator(_),
        ) => StatusCode::NOT_FOUND,
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

/// The audit action of a request refused before it ran (a body that does
/// not parse, too large or too slow): the action the route records when it
/// runs, `api.authorize` for the others.
fn refusal_action(method: &Method, segments: &[&str]) -> Action {
    match (method, segments) {
        (&Method::POST, ["v1", "tenants"]) => Action::TenantCreate,
        (&Method::POST, ["v1", "tenants", _, "keys"]) => Action::TenantKeyAdd,
        (&Method::POST, ["v1", "tenants", _, "identities"]) => Action::TenantIdentityAdd,
        (&Method::PUT, ["v1", "tenants", _, "admission"]) => Action::AdmissionSet,
        (&Method::POST, ["v1", "tenants", _, "layers"]) => Action::LayerPublish,
        (&Method::PUT, ["v1", "tenants", _, "policy"]) => Action::PolicySet,
        (&Method::POST, ["v1", "deployments"] | ["v1", "admission", "explain"]) => Action::Deploy,
        (&Method::POST, ["v1", "operators"]) => Action::OperatorAdd,
        (&Method::PUT, ["v1", "control-policy"]) => Action::ControlPolicySet,
        _ => Action::ApiAuthorize,
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

/// `n` from `?n=N`: how many records to return (1..=10000, default 20).
/// `PUT /v1/tenants/{t}/policy`: the Cedar text, or null to remove it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPolicy {
    policy: Option<String>,
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
        let v = percent_decode(v);
        match k {
            "tenant" => q.tenant = Some(v),
            "name" => q.name = Some(v),
            "since" => {
                window =
                    crate::analyzer::parse_duration(&v).map_err(ControlError::InvalidRequest)?
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

fn percent_decode(s: &str) -> String {
    // Key ids are `sha256:<hex>`; clients may escape the colon.
    s.replace("%3A", ":").replace("%3a", ":")
}
