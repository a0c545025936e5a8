//! The control API: HTTP+JSON over [`ControlPlane`], behind the operator
//! token. Described by `docs/openapi.yaml`.

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
use zerofn_audit::{Action, AuditLog, AuditRecord, Outcome};
use zerofn_gateway::{error_response, serve_http, GatewayConfig};
use zerofn_store::StoreError;

use crate::admission::{AddIdentity, SetAdmission, SubmittedAttestation};
use crate::auth::OperatorToken;
use crate::control::{ControlError, ControlPlane, DeployRequest};

/// Largest API request body (a base64 component of ~90 MiB).
const MAX_API_BODY: usize = 128 * 1024 * 1024;
const BODY_TIMEOUT: Duration = Duration::from_secs(120);
const ACTOR: &str = "operator";
/// The API description, served at `/v1/openapi.yaml`.
const OPENAPI: &str = include_str!("../../../docs/openapi.yaml");

pub(crate) struct Api {
    control: Arc<ControlPlane>,
    token: OperatorToken,
    audit: AuditLog,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    name: String,
    #[serde(default)]
    signing_keys: Vec<String>,
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
    ) -> Arc<Api> {
        Arc::new(Api {
            control,
            token,
            audit,
        })
    }

    pub(crate) async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        config: GatewayConfig,
        shutdown: watch::Receiver<bool>,
    ) {
        serve_http(listener, &config, shutdown, move |req| {
            let api = self.clone();
            async move { api.handle(req).await.map(Full::new) }
        })
        .await;
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Bytes> {
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
        if req.method() == Method::GET && path == "/v1/openapi.yaml" {
            let mut resp = Response::new(Bytes::from_static(OPENAPI.as_bytes()));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/yaml"),
            );
            return resp;
        }
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if !self.token.matches_header(presented) {
            let record = AuditRecord::new("anonymous", Action::ApiAuthenticate, Outcome::Deny)
                .reason(format!(
                    "{} `{}`: missing or invalid operator token",
                    req.method(),
                    path.escape_debug()
                ));
            if self.audit.append(record).await.is_err() {
                return error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "audit_unavailable",
                    "the request could not be recorded",
                    None,
                );
            }
            return error_response(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid operator token; pass `Authorization: Bearer <token>`",
                None,
            );
        }
        let method = req.method().clone();
        let query = req.uri().query().map(str::to_owned);
        let body = match read_body(req).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let reply = match (&method, segments.as_slice()) {
            (&Method::GET, ["v1", "tenants"]) => self
                .control
                .list_tenants()
                .await
                .map(|t| (StatusCode::OK, serde_json::json!({ "tenants": t }))),
            (&Method::POST, ["v1", "tenants"]) => self.create_tenant(&body).await,
            (&Method::POST, ["v1", "tenants", tenant, "keys"]) => self.add_key(tenant, &body).await,
            (&Method::DELETE, ["v1", "tenants", tenant, "keys", key_id]) => self
                .control
                .remove_key(ACTOR, tenant, &percent_decode(key_id))
                .await
                .map(|()| {
                    (
                        StatusCode::OK,
                        serde_json::json!({ "removed": percent_decode(key_id) }),
                    )
                }),
            (&Method::POST, ["v1", "tenants", tenant, "layers"]) => {
                self.publish_layer(tenant, &body).await
            }
            (&Method::GET, ["v1", "tenants", tenant, "layers"]) => self
                .control
                .list_layers(tenant)
                .await
                .map(|l| (StatusCode::OK, serde_json::json!({ "layers": l }))),
            (&Method::DELETE, ["v1", "tenants", tenant, "layers", digest]) => {
                let digest = percent_decode(digest);
                self.control
                    .delete_layer(ACTOR, tenant, &digest)
                    .await
                    .map(|()| (StatusCode::OK, serde_json::json!({ "deleted": digest })))
            }
            (&Method::POST, ["v1", "deployments"]) => self.deploy(&body).await,
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
                        .set_admission(ACTOR, tenant, req)
                        .await
                        .map(|v| (StatusCode::OK, serde_json::to_value(v).unwrap_or_default())),
                    Err(e) => Err(e),
                }
            }
            (&Method::POST, ["v1", "tenants", tenant, "identities"]) => {
                match parse_json::<AddIdentity>(&body) {
                    Ok(req) => self
                        .control
                        .add_identity(ACTOR, tenant, req)
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
                .remove_identity(ACTOR, tenant, id)
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
                .revoke_svid(ACTOR, tenant, name)
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
                        .set_tenant_policy(ACTOR, tenant, req.policy.as_deref())
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
                self.control.undeploy(ACTOR, tenant, name).await.map(|()| {
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
                return error_response(
                    StatusCode::NOT_FOUND,
                    "no_such_endpoint",
                    "no such endpoint; see docs/openapi.yaml",
                    None,
                )
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
            Err(e) => error_response(status_of(&e), e.kind(), &e.to_string(), None),
        }
    }

    async fn create_tenant(&self, body: &[u8]) -> Reply {
        let req: CreateTenant = parse_json(body)?;
        let row = self
            .control
            .create_tenant(ACTOR, &req.name, &req.signing_keys)
            .await?;
        Ok((
            StatusCode::CREATED,
            serde_json::to_value(row).unwrap_or_default(),
        ))
    }

    async fn add_key(&self, tenant: &str, body: &[u8]) -> Reply {
        let req: AddKey = parse_json(body)?;
        let key_id = self.control.add_key(ACTOR, tenant, &req.public_key).await?;
        Ok((
            StatusCode::CREATED,
            serde_json::json!({ "tenant": tenant, "key_id": key_id }),
        ))
    }

    async fn publish_layer(&self, tenant: &str, body: &[u8]) -> Reply {
        let req: PublishLayer = parse_json(body)?;
        let component = base64::engine::general_purpose::STANDARD
            .decode(req.component.as_bytes())
            .map_err(|e| {
                ControlError::BadRequest(format!("`component` is not valid base64: {e}"))
            })?;
        let layer = self
            .control
            .publish_layer(ACTOR, tenant, component, req.bundle.into_bytes())
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

    async fn deploy(&self, body: &[u8]) -> Reply {
        let req = deploy_request(parse_json(body)?)?;
        let deployed = self.control.deploy(ACTOR, req).await?;
        Ok((
            StatusCode::CREATED,
            serde_json::to_value(deployed).unwrap_or_default(),
        ))
    }
}

fn deploy_request(req: Deploy) -> Result<DeployRequest, ControlError> {
    let component = base64::engine::general_purpose::STANDARD
        .decode(req.component.as_bytes())
        .map_err(|e| ControlError::BadRequest(format!("`component` is not valid base64: {e}")))?;
    if req.attestations.len() > zerofn_admission::MAX_ATTESTATIONS {
        return Err(ControlError::BadRequest(format!(
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
        ControlError::Admission(_) | ControlError::Refused { .. } => StatusCode::FORBIDDEN,
        ControlError::Sandbox(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ControlError::Store(
            StoreError::TenantExists(_)
            | StoreError::KeyExists { .. }
            | StoreError::IdentityExists { .. }
            | StoreError::RouteTaken { .. }
            | StoreError::LayerExists { .. }
            | StoreError::LayerPinned { .. },
        ) => StatusCode::CONFLICT,
        ControlError::Store(
            StoreError::NoSuchTenant(_)
            | StoreError::NoSuchKey { .. }
            | StoreError::NoSuchIdentity { .. }
            | StoreError::NoSuchDeployment { .. }
            | StoreError::NoSuchLayer { .. },
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
        .map_err(|e| ControlError::BadRequest(format!("invalid JSON request body: {e}")))
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Bytes>> {
    match tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(req.into_body(), MAX_API_BODY).collect(),
    )
    .await
    {
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(_)) => Err(error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            &format!("request body exceeds {MAX_API_BODY} bytes or could not be read"),
            None,
        )),
        Err(_) => Err(error_response(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "request body was not received in time",
            None,
        )),
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
                window = crate::analyzer::parse_duration(&v).map_err(ControlError::BadRequest)?
            }
            other => {
                return Err(ControlError::BadRequest(format!(
                    "unknown query parameter `{}`; use tenant, name and since",
                    other.escape_debug()
                )))
            }
        }
    }
    if q.name.is_some() && q.tenant.is_none() {
        return Err(ControlError::BadRequest("`name` needs `tenant`".to_owned()));
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
        _ => Err(ControlError::BadRequest(format!(
            "query parameter `n` must be a number from 1 to 10000, not `{}`",
            value.escape_debug()
        ))),
    }
}

fn percent_decode(s: &str) -> String {
    // Key ids are `sha256:<hex>`; clients may escape the colon.
    s.replace("%3A", ":").replace("%3a", ":")
}
