//! The control API's one route table: for every route its method, path template, who may
//! call it (public, or an operator allowed a Cedar control action on a resource), the audit
//! action of a refusal, and its handler.
//!
//! The dispatcher (`Api::handle`) reaches a handler only through an entry of [`ROUTES`], and
//! an operator entry cannot be written without its action and resource, so a route without
//! an authorization mapping cannot exist. A request that matches no entry is a 404 before
//! anything else is decided. Path templates are the OpenAPI document's own
//! (`docs/openapi.yaml`); a test checks the two list the same routes.
//!
//! # Trust
//! Trusts nothing in the request path: literal segments are compared as sent (not decoded),
//! parameters are percent-decoded here once, and a parameter that decodes to something a
//! name cannot hold (a `/`, a NUL, bytes that are not UTF-8) is refused before any decision.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::{Method, Response};
use zerofn_audit::Action;
use zerofn_policy::{ControlAction, Permit};
use zerofn_store::StoreError;
use zerofn_types::{FunctionName, TenantName};

use super::Api;
use crate::control::ControlError;

/// A handler's answer: a status and a JSON body, or a control-plane error.
pub(super) type Reply = Result<(http::StatusCode, serde_json::Value), ControlError>;

/// What a route answers: JSON (most), or a response of its own content type (the metrics
/// exposition). A handler returning [`Reply`] answers JSON.
pub(super) enum Answer {
    Json(http::StatusCode, serde_json::Value),
    Raw(Response<Bytes>),
}

impl From<(http::StatusCode, serde_json::Value)> for Answer {
    fn from((status, value): (http::StatusCode, serde_json::Value)) -> Answer {
        Answer::Json(status, value)
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An operator route's handler. It takes the control policy's [`Permit`] for the
/// operation: the dispatcher cannot call it without a decision that allowed it.
pub(super) type Handler =
    for<'a> fn(&'a Api, &'a Permit, Call<'a>) -> BoxFuture<'a, Result<Answer, ControlError>>;

/// What a handler is given: the request, authenticated and authorized.
pub(super) struct Call<'a> {
    /// Who the request authenticated as (for decisions a handler makes beyond the route's).
    pub(super) principal: &'a super::Principal,
    /// The audit actor of the principal.
    pub(super) actor: &'a str,
    pub(super) params: &'a Params,
    pub(super) query: Option<&'a str>,
    pub(super) body: &'a [u8],
    /// The request's `traceparent` and `tracestate` headers as text, unchecked
    /// (a queue publish stores the publisher's context, an object change its
    /// events' context, each after its own check).
    pub(super) traceparent: Option<&'a str>,
    pub(super) tracestate: Option<&'a str>,
}

impl Call<'_> {
    /// The decoded path parameter `name` of the route's template.
    pub(super) fn param(&self, name: &str) -> Result<&str, ControlError> {
        self.params.get(name)
    }

    /// The `{tenant}` path parameter as a tenant name. A segment that is not a DNS label
    /// names no tenant: the answer is the same 404 as for an unknown tenant, recorded by
    /// the API (the control plane never sees the request).
    pub(super) fn tenant(&self) -> Result<TenantName, ControlError> {
        let raw = self.param("tenant")?;
        TenantName::parse(raw)
            .map_err(|_| ControlError::NoSuchName(StoreError::NoSuchTenant(raw.to_owned())))
    }

    /// The `{tenant}` and `{name}` path parameters of a function route as names; a segment
    /// that cannot name one is the 404 of an unknown function (see [`Call::tenant`]).
    pub(super) fn function(&self) -> Result<(TenantName, FunctionName), ControlError> {
        let (tenant, name) = (self.param("tenant")?, self.param("name")?);
        match (TenantName::parse(tenant), FunctionName::parse(name)) {
            (Ok(t), Ok(n)) => Ok((t, n)),
            _ => Err(ControlError::NoSuchName(StoreError::NoSuchDeployment {
                tenant: tenant.to_string(),
                name: name.to_string(),
            })),
        }
    }
}

/// What an operator route acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resource {
    /// The platform as a whole.
    Platform,
    /// The tenant named by the `{tenant}` parameter of the path.
    PathTenant,
    /// The tenant named in the submitted manifest (deploy, explain): known only once the
    /// body is read.
    ManifestTenant,
}

/// Who may call a route.
pub(super) enum Access {
    /// Anyone, unauthenticated: what peers need before they can authenticate anything.
    Public(fn(&Api) -> Response<Bytes>),
    /// An authenticated operator the control policy allows the operation's action on its
    /// resource.
    Operator(Operation),
}

/// What an operator route does, and what it needs to be allowed.
#[derive(Clone, Copy)]
pub(super) struct Operation {
    pub(super) action: ControlAction,
    pub(super) resource: Resource,
    /// The audit action of a request refused before the handler ran (a body that does not
    /// parse, too large or too slow): the action the route records when it runs.
    pub(super) refusal: Action,
    pub(super) handler: Handler,
}

pub(super) struct Route {
    pub(super) method: Method,
    /// The OpenAPI path template: literal segments and `{name}` parameters.
    pub(super) path: &'static str,
    pub(super) access: Access,
}

macro_rules! operator {
    ($method:ident $path:literal, $action:ident on $resource:ident, refusal $refusal:ident, $handler:ident) => {
        Route {
            method: Method::$method,
            path: $path,
            access: Access::Operator(Operation {
                action: ControlAction::$action,
                resource: Resource::$resource,
                refusal: Action::$refusal,
                handler: |api, _permit, call| {
                    Box::pin(async move { api.$handler(call).await.map(Answer::from) })
                },
            }),
        }
    };
}

macro_rules! public {
    ($method:ident $path:literal, $handler:ident) => {
        Route {
            method: Method::$method,
            path: $path,
            access: Access::Public(|api| api.$handler()),
        }
    };
}

/// Every route of the control API.
pub(super) static ROUTES: [Route; 82] = [
    public!(GET "/v1/health", health),
    // The trust bundle is public: peers need it before they can authenticate anything.
    public!(GET "/v1/identity/bundle", trust_bundle),
    // The JWT authorities (JWKS) that sign JWT-SVIDs: public, so that any peer can verify
    // a token a function presents.
    public!(GET "/v1/identity/jwt-bundle", jwt_bundle),
    public!(GET "/v1/openapi.yaml", openapi),
    operator!(GET "/v1/tenants", TenantRead on Platform, refusal ApiAuthorize, list_tenants),
    operator!(POST "/v1/tenants", TenantManage on Platform, refusal TenantCreate, create_tenant),
    operator!(GET "/v1/tenants/{tenant}/routes", TenantRead on PathTenant, refusal ApiAuthorize, tenant_routes),
    // Assigning route space is the platform's: a grant on one tenant must not let it take
    // another's paths.
    operator!(PUT "/v1/tenants/{tenant}/routes", TenantManage on Platform, refusal ApiAuthorize, set_routes),
    // Limits keep one tenant from starving the others: lifting them is the platform's,
    // as assigning route space is, never a grant on the tenant itself.
    operator!(GET "/v1/tenants/{tenant}/limits", TenantRead on PathTenant, refusal ApiAuthorize, tenant_limits),
    operator!(PUT "/v1/tenants/{tenant}/limits", TenantManage on Platform, refusal TenantLimitsSet, set_tenant_limits),
    operator!(POST "/v1/tenants/{tenant}/keys", TenantManage on PathTenant, refusal TenantKeyAdd, add_key),
    operator!(DELETE "/v1/tenants/{tenant}/keys/{key_id}", TenantManage on PathTenant, refusal ApiAuthorize, remove_key),
    operator!(POST "/v1/tenants/{tenant}/identities", TenantManage on PathTenant, refusal TenantIdentityAdd, add_identity),
    operator!(DELETE "/v1/tenants/{tenant}/identities/{id}", TenantManage on PathTenant, refusal ApiAuthorize, remove_identity),
    // External callers of the tenant's functions: JWT issuers and API keys.
    operator!(GET "/v1/tenants/{tenant}/auth/jwt", TenantRead on PathTenant, refusal ApiAuthorize, list_jwt_issuers),
    operator!(POST "/v1/tenants/{tenant}/auth/jwt", TenantManage on PathTenant, refusal AuthIssuerAdd, add_jwt_issuer),
    operator!(DELETE "/v1/tenants/{tenant}/auth/jwt/{name}", TenantManage on PathTenant, refusal ApiAuthorize, remove_jwt_issuer),
    // CAs whose client certificates authenticate `mtls:<name>` callers: as the JWT issuers.
    operator!(GET "/v1/tenants/{tenant}/auth/mtls", TenantRead on PathTenant, refusal ApiAuthorize, list_mtls_cas),
    operator!(POST "/v1/tenants/{tenant}/auth/mtls", TenantManage on PathTenant, refusal AuthMtlsAdd, add_mtls_ca),
    operator!(DELETE "/v1/tenants/{tenant}/auth/mtls/{name}", TenantManage on PathTenant, refusal ApiAuthorize, remove_mtls_ca),
    operator!(GET "/v1/tenants/{tenant}/apikeys", TenantRead on PathTenant, refusal ApiAuthorize, list_api_keys),
    operator!(POST "/v1/tenants/{tenant}/apikeys", TenantManage on PathTenant, refusal ApiKeyCreate, create_api_key),
    operator!(DELETE "/v1/tenants/{tenant}/apikeys/{name}", TenantManage on PathTenant, refusal ApiAuthorize, revoke_api_key),
    operator!(GET "/v1/tenants/{tenant}/layers", TenantRead on PathTenant, refusal ApiAuthorize, list_layers),
    operator!(POST "/v1/tenants/{tenant}/layers", TenantManage on PathTenant, refusal LayerPublish, publish_layer),
    operator!(DELETE "/v1/tenants/{tenant}/layers/{digest}", TenantManage on PathTenant, refusal ApiAuthorize, delete_layer),
    // Durable queues (`zerofn queue`): managing them, publishing, redriving and purging
    // change the tenant's state (tenant.manage); peeking reads message data, which may hold
    // what the tenant's functions handle, so it is `audit.read` on the tenant (as logs).
    operator!(GET "/v1/tenants/{tenant}/queues", TenantRead on PathTenant, refusal ApiAuthorize, list_queues),
    // Schedules of the tenant's functions (`zerofn schedule list`): last and next runs.
    operator!(GET "/v1/tenants/{tenant}/schedules", TenantRead on PathTenant, refusal ApiAuthorize, list_schedules),
    operator!(POST "/v1/tenants/{tenant}/queues", TenantManage on PathTenant, refusal QueueCreate, create_queue),
    operator!(GET "/v1/tenants/{tenant}/queues/{queue}", TenantRead on PathTenant, refusal ApiAuthorize, queue_stats),
    operator!(DELETE "/v1/tenants/{tenant}/queues/{queue}", TenantManage on PathTenant, refusal QueueDelete, delete_queue),
    operator!(POST "/v1/tenants/{tenant}/queues/{queue}/messages", TenantManage on PathTenant, refusal QueuePublish, publish_messages),
    operator!(GET "/v1/tenants/{tenant}/queues/{queue}/messages", AuditRead on PathTenant, refusal ApiAuthorize, peek_messages),
    operator!(POST "/v1/tenants/{tenant}/queues/{queue}/redrive", TenantManage on PathTenant, refusal QueueRedrive, redrive_queue),
    operator!(POST "/v1/tenants/{tenant}/queues/{queue}/purge", TenantManage on PathTenant, refusal QueuePurge, purge_queue),
    // Object storage (`zerofn object`): as the queues, changing is `tenant.manage`, reading
    // an object's bytes (tenant data) the tenant's `audit.read`, listing `tenant.read`.
    operator!(GET "/v1/tenants/{tenant}/buckets", TenantRead on PathTenant, refusal ApiAuthorize, list_buckets),
    operator!(DELETE "/v1/tenants/{tenant}/buckets/{bucket}", TenantManage on PathTenant, refusal ObjectDelete, delete_bucket),
    operator!(GET "/v1/tenants/{tenant}/buckets/{bucket}/objects", TenantRead on PathTenant, refusal ApiAuthorize, list_objects),
    operator!(PUT "/v1/tenants/{tenant}/buckets/{bucket}/objects/{key_path}", TenantManage on PathTenant, refusal ObjectPut, put_object),
    operator!(GET "/v1/tenants/{tenant}/buckets/{bucket}/objects/{key_path}", AuditRead on PathTenant, refusal ApiAuthorize, get_object),
    operator!(DELETE "/v1/tenants/{tenant}/buckets/{bucket}/objects/{key_path}", TenantManage on PathTenant, refusal ObjectDelete, delete_object),
    operator!(GET "/v1/tenants/{tenant}/admission", TenantRead on PathTenant, refusal ApiAuthorize, admission_view),
    operator!(PUT "/v1/tenants/{tenant}/admission", PolicyManage on PathTenant, refusal AdmissionSet, set_admission),
    // Runtime policies of a tenant and of one of its functions.
    operator!(GET "/v1/tenants/{tenant}/policy", TenantRead on PathTenant, refusal ApiAuthorize, tenant_policy),
    operator!(PUT "/v1/tenants/{tenant}/policy", PolicyManage on PathTenant, refusal PolicySet, set_tenant_policy),
    operator!(GET "/v1/tenants/{tenant}/functions/{name}/policy", TenantRead on PathTenant, refusal ApiAuthorize, function_policy),
    // What the tenant's functions wrote to stdout and stderr: guest output, which may hold
    // what the functions handled, so it is read with the tenant's `audit.read`, not with
    // `tenant.read` (configuration).
    operator!(GET "/v1/tenants/{tenant}/logs", AuditRead on PathTenant, refusal ApiAuthorize, tenant_logs),
    // Platform-wide analysis: the platform-wide grant, whatever the query names.
    operator!(GET "/v1/access-analyzer", AuditRead on Platform, refusal ApiAuthorize, analyze_access),
    operator!(POST "/v1/deployments", Deploy on ManifestTenant, refusal Deploy, deploy),
    operator!(POST "/v1/admission/explain", Deploy on ManifestTenant, refusal Deploy, explain),
    operator!(GET "/v1/functions", TenantRead on Platform, refusal ApiAuthorize, list_functions),
    operator!(DELETE "/v1/functions/{tenant}/{name}", Deploy on PathTenant, refusal ApiAuthorize, undeploy),
    operator!(GET "/v1/functions/{tenant}/{name}/svid", TenantRead on PathTenant, refusal ApiAuthorize, current_svid),
    operator!(GET "/v1/functions/{tenant}/{name}/versions", TenantRead on PathTenant, refusal ApiAuthorize, function_versions),
    // Going back is a decision of its own (`deploy.rollback`), not implied by `deploy`.
    operator!(POST "/v1/functions/{tenant}/{name}/rollback", DeployRollback on PathTenant, refusal Rollback, rollback),
    operator!(POST "/v1/functions/{tenant}/{name}/svid/revoke", TenantManage on PathTenant, refusal ApiAuthorize, revoke_svid),
    operator!(GET "/v1/audit", AuditRead on Platform, refusal ApiAuthorize, audit_tail),
    operator!(GET "/v1/audit/verify", AuditRead on Platform, refusal ApiAuthorize, audit_verify),
    // Records across functions by tenant, function, caller, action, decision, status and
    // time: the platform-wide grant, whatever the query names (as the analyzer).
    operator!(GET "/v1/audit/query", AuditRead on Platform, refusal ApiAuthorize, audit_query),
    // The log as a Merkle tree: its verifier key, signed checkpoints, proofs and leaves.
    // Signing a checkpoint now changes no record: it is a read of the log's current head.
    operator!(GET "/v1/audit/public-key", AuditRead on Platform, refusal ApiAuthorize, audit_public_key),
    operator!(GET "/v1/audit/checkpoint", AuditRead on Platform, refusal ApiAuthorize, audit_checkpoint),
    operator!(POST "/v1/audit/checkpoint", AuditRead on Platform, refusal ApiAuthorize, audit_sign_checkpoint),
    operator!(GET "/v1/audit/proof", AuditRead on Platform, refusal ApiAuthorize, audit_proof),
    operator!(GET "/v1/audit/consistency", AuditRead on Platform, refusal ApiAuthorize, audit_consistency),
    operator!(GET "/v1/audit/export", AuditRead on Platform, refusal ApiAuthorize, audit_export),
    // Removing old records is a grant of its own: reading the log does not imply it.
    operator!(POST "/v1/audit/prune", AuditManage on Platform, refusal AuditPrune, audit_prune),
    // Prometheus metrics: counts derived from the audit records (which functions ran, how
    // often, how they were refused), so read with the platform-wide `audit.read`.
    // The log as a C2SP tlog-tiles log (checkpoint, hash tiles, entry bundles), for tlog
    // clients: the same records and proofs as the routes above, so the same grant.
    operator!(GET "/v1/audit/tlog/checkpoint", AuditRead on Platform, refusal ApiAuthorize, tlog_checkpoint),
    operator!(GET "/v1/audit/tlog/tile/{tile_path}", AuditRead on Platform, refusal ApiAuthorize, tlog_tile),
    operator!(GET "/metrics", AuditRead on Platform, refusal ApiAuthorize, metrics),
    operator!(GET "/v1/operators", OperatorManage on Platform, refusal ApiAuthorize, list_operators),
    operator!(POST "/v1/operators", OperatorManage on Platform, refusal OperatorAdd, add_operator),
    operator!(DELETE "/v1/operators/{name}", OperatorManage on Platform, refusal ApiAuthorize, remove_operator),
    // The control policy decides every other grant, so changing it (or reading it) is as
    // strong as every action at once.
    operator!(GET "/v1/control-policy", PolicyManage on Platform, refusal ApiAuthorize, show_control_policy),
    operator!(PUT "/v1/control-policy", PolicyManage on Platform, refusal ControlPolicySet, set_control_policy),
    // The whole configuration, the control policy in it: read with `policy.manage`, as the
    // control policy is. Applying it changes every tenant at once: its own action.
    operator!(GET "/v1/config/state", PolicyManage on Platform, refusal ApiAuthorize, config_state),
    operator!(GET "/v1/config/export", PolicyManage on Platform, refusal ApiAuthorize, config_export),
    operator!(POST "/v1/config/apply", ConfigApply on Platform, refusal ConfigApply, config_apply),
    // Trust zones span tenants: read with the platform-wide `tenant.read`, changed with the
    // platform-wide `policy.manage` (a zone is policy over every tenant it groups).
    operator!(GET "/v1/zones", TenantRead on Platform, refusal ApiAuthorize, list_zones),
    operator!(PUT "/v1/zones", PolicyManage on Platform, refusal ZoneSet, set_zones),
    operator!(GET "/v1/zones/{zone}", TenantRead on Platform, refusal ApiAuthorize, show_zone),
    operator!(PUT "/v1/zones/{zone}", PolicyManage on Platform, refusal ZoneSet, set_zone),
    operator!(DELETE "/v1/zones/{zone}", PolicyManage on Platform, refusal ZoneDelete, delete_zone),
];

/// The name ending of a template's last parameter that takes the rest of the path.
const REST_SUFFIX: &str = "_path";

/// A request's route, with its raw (still percent-encoded) path parameters.
pub(super) struct Matched<'p> {
    pub(super) route: &'static Route,
    raw: Vec<(&'static str, &'p str)>,
}

/// The entry of [`ROUTES`] for `method` and the request path `path`, if any.
///
/// Paths are split at `/` after the leading slashes; a public route matches only its exact
/// path. Literal segments compare as sent.
pub(super) fn find<'p>(method: &Method, path: &'p str) -> Option<Matched<'p>> {
    ROUTES
        .iter()
        .filter(|route| route.method == method)
        .find_map(|route| {
            if matches!(route.access, Access::Public(_)) {
                return (route.path == path).then(|| Matched {
                    route,
                    raw: Vec::new(),
                });
            }
            let raw = match_template(route.path, path)?;
            Some(Matched { route, raw })
        })
}

fn segments(path: &str) -> std::str::Split<'_, char> {
    path.trim_start_matches('/').split('/')
}

/// The parameters of `path` under `template`, or `None` if it does not match.
fn match_template<'p>(
    template: &'static str,
    path: &'p str,
) -> Option<Vec<(&'static str, &'p str)>> {
    let mut wanted = segments(template);
    let rest = path.trim_start_matches('/');
    let mut given = rest.split('/');
    // Where the segment `given` yields next starts in `rest`.
    let mut offset = 0usize;
    let mut params = Vec::new();
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(g)) => {
                match w.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
                    // A last parameter named `*_path` takes the rest of the path, every
                    // segment of it (the tlog-tiles paths, `0/x001/067.p/3`).
                    Some(name)
                        if name.ends_with(REST_SUFFIX) && wanted.clone().next().is_none() =>
                    {
                        params.push((name, rest.get(offset..)?));
                        return Some(params);
                    }
                    Some(name) => params.push((name, g)),
                    None if w == g => {}
                    None => return None,
                }
                offset = offset.saturating_add(g.len()).saturating_add(1);
            }
            _ => return None,
        }
    }
}

impl Matched<'_> {
    /// The path parameters, percent-decoded; a refusal message for one that does not decode
    /// to a name.
    pub(super) fn decode(&self) -> Result<Params, ControlError> {
        self.raw
            .iter()
            .map(|&(name, raw)| {
                let value = if name.ends_with(REST_SUFFIX) {
                    // Each segment decoded alone: an escaped `/` still cannot add one.
                    raw.split('/')
                        .map(decode_segment)
                        .collect::<Result<Vec<_>, _>>()?
                        .join("/")
                } else {
                    decode_segment(raw)?
                };
                Ok((name, value))
            })
            .collect::<Result<Vec<_>, ControlError>>()
            .map(Params)
    }
}

/// Decoded path parameters, by template name.
#[derive(Debug)]
pub(super) struct Params(Vec<(&'static str, String)>);

impl Params {
    pub(super) fn get(&self, name: &str) -> Result<&str, ControlError> {
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| {
                ControlError::Internal(format!("the route has no path parameter `{name}`"))
            })
    }
}

/// One percent-decoded path segment. An escaped `/` (it would be a separator), an escaped
/// NUL and bytes that are not UTF-8 are refused: no name the API knows can hold them.
pub(super) fn decode_segment(raw: &str) -> Result<String, ControlError> {
    decode("path segment", raw, true)
}

/// One percent-decoded query value; refused only when it is not UTF-8 text or holds a NUL.
pub(super) fn decode_query_value(raw: &str) -> Result<String, ControlError> {
    decode("query value", raw, false)
}

fn decode(what: &str, raw: &str, refuse_slash: bool) -> Result<String, ControlError> {
    let invalid = |problem: &str| {
        ControlError::InvalidRequest(format!("{what} `{}` {problem}", raw.escape_debug()))
    };
    let text = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| invalid("does not decode to UTF-8 text"))?;
    if refuse_slash && text.contains('/') {
        return Err(invalid(
            "holds an escaped `/` (%2F), which no name may contain",
        ));
    }
    if text.contains('\0') {
        return Err(invalid(
            "holds an escaped NUL (%00), which no name may contain",
        ));
    }
    Ok(text.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use ControlAction::*;

    /// The action and resource of a request, as the dispatcher derives them; `None` for
    /// a request that matches no operator route.
    fn required(method: &str, path: &str) -> Option<(ControlAction, Resource, Option<String>)> {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let matched = find(&method, path)?;
        let Access::Operator(Operation {
            action, resource, ..
        }) = matched.route.access
        else {
            return None;
        };
        let params = matched.decode().unwrap();
        let tenant =
            (resource == Resource::PathTenant).then(|| params.get("tenant").unwrap().to_owned());
        Some((action, resource, tenant))
    }

    #[test]
    fn each_route_has_its_action_and_resource() {
        use Resource::*;
        let t = |name: &str| Some(name.to_string());
        let table = [
            ("GET", "/v1/tenants", TenantRead, Platform, None),
            ("POST", "/v1/tenants", TenantManage, Platform, None),
            (
                "POST",
                "/v1/tenants/acme/keys",
                TenantManage,
                PathTenant,
                t("acme"),
            ),
            (
                "GET",
                "/v1/tenants/acme/routes",
                TenantRead,
                PathTenant,
                t("acme"),
            ),
            (
                "PUT",
                "/v1/tenants/acme/routes",
                TenantManage,
                Platform,
                None,
            ),
            (
                "GET",
                "/v1/tenants/acme/limits",
                TenantRead,
                PathTenant,
                t("acme"),
            ),
            // Lifting a tenant's limits is the platform's, not the tenant's.
            (
                "PUT",
                "/v1/tenants/acme/limits",
                TenantManage,
                Platform,
                None,
            ),
            (
                "DELETE",
                "/v1/tenants/acme/keys/sha256:ab",
                TenantManage,
                PathTenant,
                t("acme"),
            ),
            (
                "POST",
                "/v1/tenants/acme/identities",
                TenantManage,
                PathTenant,
                t("acme"),
            ),
            (
                "DELETE",
                "/v1/tenants/acme/identities/x",
                TenantManage,
                PathTenant,
                t("acme"),
            ),
            (
                "GET",
                "/v1/tenants/acme/auth/jwt",
                TenantRead,
                PathTenant,
                t("acme"),
            ),
            (
                "POST",
                "/v1/tenants/acme/auth/jwt",
                TenantManage,
                PathTenant,
                t("acme"),
            ),
            (
                "DELETE",
                "/v1/tenants/acme/auth/jwt/corp",
                TenantManage,
                PathTenant,
                t("acme"),
            ),
            (
                "GET",
                "/v1/tenants/acme/auth/mtls",
                TenantRead,
                PathTenant,
                t("acme"),
            ),
            (
                "POST",
                "/v1/tenants/acme/auth/mtls",
                TenantManage,
                PathTenant,
                t("acme"),
            ),
            (
                "DELETE",
                "/v1/tenants/acme/auth/mtls/partners",
                TenantManage,
                PathTenant,
                t("acme"),
            ),
            (
                "GET",
                "/v1/tenants/acme/apikeys",
                TenantRead,
                PathTenant,
                t("acme"),
            ),
            (
                "POST",
                "/v1/tenants/acme/apikeys",
                TenantManage,
                PathTenant,
                t("acme"),
            ),
            (
                "DELETE",
                "/v1/tenants/acme/apikeys/ci",
                TenantManage,
                PathTenant,
                t("acme"),
            ),
            (
                "GET",
                "/v1/tenants/acme/layers",
                TenantRead,
                PathTenant,
                t("acme"),
            ),
            (
                "POST",
                "/v1/tenants/acme/layers",
                TenantManage,
                PathTenant,
                t("acme"),
            ),
            (
                "DELETE",
                "/v1/tenants/acme/layers/sha256:ab",
                TenantManage,
                PathTenant,
                t("acme"),
            ),
            (
                "GET",
                "/v1/tenants/acme/admission",
                TenantRead,
                PathTenant,
                t("acme"),
            ),
            (
                "PUT",
                "/v1/tenants/acme/admission",
                PolicyManage,
                PathTenant,
                t("acme"),
            ),
            (
                "GET",
                "/v1/tenants/acme/policy",
                TenantRead,
                PathTenant,
                t("acme"),
            ),
            (
                "PUT",
                "/v1/tenants/acme/policy",
                PolicyManage,
                PathTenant,
                t("acme"),
            ),
            (
                "GET",
                "/v1/tenants/acme/functions/hello/policy",
                TenantRead,
                PathTenant,
                t("acme"),
            ),
            ("GET", "/v1/access-analyzer", AuditRead, Platform, None),
            ("POST", "/v1/deployments", Deploy, ManifestTenant, None),
            (
                "POST",
                "/v1/admission/explain",
                Deploy,
                ManifestTenant,
                None,
            ),
            ("GET", "/v1/functions", TenantRead, Platform, None),
            (
                "DELETE",
                "/v1/functions/acme/hello",
                Deploy,
                PathTenant,
                t("acme"),
            ),
            (
                "GET",
                "/v1/functions/acme/hello/svid",
                TenantRead,
                PathTenant,
                t("acme"),
            ),
            (
                "GET",
                "/v1/functions/acme/hello/versions",
                TenantRead,
                PathTenant,
                t("acme"),
            ),
            (
                "POST",
                "/v1/functions/acme/hello/rollback",
                DeployRollback,
                PathTenant,
                t("acme"),
            ),
            (
                "POST",
                "/v1/functions/acme/hello/svid/revoke",
                TenantManage,
                PathTenant,
                t("acme"),
            ),
            ("GET", "/v1/audit", AuditRead, Platform, None),
            ("GET", "/v1/audit/verify", AuditRead, Platform, None),
            ("GET", "/v1/audit/query", AuditRead, Platform, None),
            (
                "GET",
                "/v1/tenants/acme/logs",
                AuditRead,
                PathTenant,
                t("acme"),
            ),
            (
                "GET",
                "/v1/tenants/acme/queues",
                TenantRead,
                PathTenant,
                t("acme"),
            ),
            (
                "GET",
                "/v1/tenants/acme/schedules",
                TenantRead,
                PathTenant,
                t("acme"),
            ),
            (
                "POST",
                "/v1/tenants/acme/queues",
                TenantManage,
                PathTenant,
                t("acme"),
            ),
            (
                "GET",
                "/v1/tenants/acme/queues/orders",
                TenantRead,
                PathTenant,
                t("acme"),
            ),
            (
                "DELETE",
                "/v1/tenants/acme/queues/orders",
                TenantManage,
                PathTenant,
                t("acme"),
            ),
            (
                "POST",
                "/v1/tenants/acme/queues/orders/messages",
                TenantManage,
                PathTenant,
                t("acme"),
            ),
            // Peeking reads message data: `audit.read`, as logs.
            (
                "GET",
                "/v1/tenants/acme/queues/orders/messages",
                AuditRead,
                PathTenant,
                t("acme"),
            ),
            (
                "POST",
                "/v1/tenants/acme/queues/dlq/redrive",
                TenantManage,
                PathTenant,
                t("acme"),
            ),
            (
                "POST",
                "/v1/tenants/acme/queues/orders/purge",
                TenantManage,
                PathTenant,
                t("acme"),
            ),
            (
                "GET",
                "/v1/tenants/acme/buckets",
                TenantRead,
                PathTenant,
                t("acme"),
            ),
            (
                "DELETE",
                "/v1/tenants/acme/buckets/up",
                TenantManage,
                PathTenant,
                t("acme"),
            ),
            (
                "GET",
                "/v1/tenants/acme/buckets/up/objects",
                TenantRead,
                PathTenant,
                t("acme"),
            ),
            (
                "PUT",
                "/v1/tenants/acme/buckets/up/objects/in/a.json",
                TenantManage,
                PathTenant,
                t("acme"),
            ),
            // Reading an object's bytes is reading the tenant's data.
            (
                "GET",
                "/v1/tenants/acme/buckets/up/objects/in/a.json",
                AuditRead,
                PathTenant,
                t("acme"),
            ),
            (
                "DELETE",
                "/v1/tenants/acme/buckets/up/objects/a",
                TenantManage,
                PathTenant,
                t("acme"),
            ),
            ("GET", "/v1/audit/public-key", AuditRead, Platform, None),
            ("GET", "/v1/audit/checkpoint", AuditRead, Platform, None),
            ("POST", "/v1/audit/checkpoint", AuditRead, Platform, None),
            ("GET", "/v1/audit/proof", AuditRead, Platform, None),
            ("GET", "/v1/audit/consistency", AuditRead, Platform, None),
            ("GET", "/v1/audit/export", AuditRead, Platform, None),
            ("POST", "/v1/audit/prune", AuditManage, Platform, None),
            ("GET", "/metrics", AuditRead, Platform, None),
            (
                "GET",
                "/v1/audit/tlog/checkpoint",
                AuditRead,
                Platform,
                None,
            ),
            (
                "GET",
                "/v1/audit/tlog/tile/0/x001/067.p/3",
                AuditRead,
                Platform,
                None,
            ),
            ("GET", "/v1/operators", OperatorManage, Platform, None),
            ("POST", "/v1/operators", OperatorManage, Platform, None),
            (
                "DELETE",
                "/v1/operators/alice",
                OperatorManage,
                Platform,
                None,
            ),
            ("GET", "/v1/control-policy", PolicyManage, Platform, None),
            ("PUT", "/v1/control-policy", PolicyManage, Platform, None),
            ("GET", "/v1/config/state", PolicyManage, Platform, None),
            ("GET", "/v1/config/export", PolicyManage, Platform, None),
            ("POST", "/v1/config/apply", ConfigApply, Platform, None),
            ("GET", "/v1/zones", TenantRead, Platform, None),
            ("PUT", "/v1/zones", PolicyManage, Platform, None),
            ("GET", "/v1/zones/payments", TenantRead, Platform, None),
            ("PUT", "/v1/zones/payments", PolicyManage, Platform, None),
            ("DELETE", "/v1/zones/payments", PolicyManage, Platform, None),
        ];
        let cases = table.len();
        for (method, path, action, resource, tenant) in table {
            assert_eq!(
                required(method, path),
                Some((action, resource, tenant)),
                "{method} {path}"
            );
        }
        let operator_routes = ROUTES
            .iter()
            .filter(|r| matches!(r.access, Access::Operator(_)))
            .count();
        assert_eq!(operator_routes, cases, "a route without a case here");
    }

    #[test]
    fn a_rest_parameter_takes_every_remaining_segment_and_decodes_each() {
        let method = Method::GET;
        let m = find(&method, "/v1/audit/tlog/tile/0/x001/067.p/3").unwrap();
        assert_eq!(m.route.path, "/v1/audit/tlog/tile/{tile_path}");
        let params = m.decode().unwrap();
        assert_eq!(params.get("tile_path").unwrap(), "0/x001/067.p/3");
        let m = find(&method, "/v1/audit/tlog/tile/entries/000").unwrap();
        assert_eq!(m.decode().unwrap().get("tile_path").unwrap(), "entries/000");
        // An escaped `/` inside one segment is still refused.
        let m = find(&method, "/v1/audit/tlog/tile/0/x001%2F067").unwrap();
        assert!(m.decode().is_err());
        // The rest must not be empty of segments: `tile` alone matches nothing.
        assert!(find(&method, "/v1/audit/tlog/tile").is_none());
        // A `_path` parameter only takes the rest when it is the template's last.
        assert!(find(&method, "/v1/audit/tlog/checkpoint/extra").is_none());
    }

    #[test]
    fn unknown_routes_and_methods_are_not_mapped() {
        for (method, path) in [
            ("GET", "/v1/nosuch"),
            ("DELETE", "/v1/tenants"),
            ("PUT", "/v1/tenants/acme/keys"),
            ("GET", "/v1/tenants/acme"),
            ("GET", "/v1/tenants/acme/keys/x/y"),
            ("POST", "/v1/functions"),
            ("DELETE", "/v1/audit"),
            ("PATCH", "/v1/control-policy"),
            ("GET", "/v2/tenants"),
            ("GET", ""),
            ("DELETE", "/v1/operators"),
            ("GET", "/v1/tenants/"),
            ("POST", "/v1/health"),
            // Mapped to an action by the old second table but never served: now unknown
            // like any other unserved route (404 before authorization).
            ("DELETE", "/v1/tenants/acme/policy"),
            ("POST", "/v1/tenants/acme/policy"),
            ("PUT", "/v1/tenants/acme/functions/hello/policy"),
            ("GET", "/v1/tenants/acme/access-analyzer"),
            ("POST", "/v1/access-analyzer/acme"),
            ("GET", "/v1/access-analyzer/acme"),
        ] {
            assert_eq!(required(method, path), None, "{method} {path}");
        }
    }

    #[test]
    fn public_routes_match_their_exact_path_only() {
        assert!(find(&Method::GET, "/v1/health").is_some());
        assert!(find(&Method::GET, "//v1/health").is_none());
        assert!(find(&Method::GET, "/v1/health/").is_none());
        // Operator routes keep the split the API always used: leading slashes collapse.
        assert!(find(&Method::GET, "//v1/tenants").is_some());
    }

    #[test]
    fn routes_are_unique_and_tenant_routes_name_their_tenant() {
        let mut seen = BTreeSet::new();
        for route in &ROUTES {
            assert!(
                seen.insert((route.method.as_str(), route.path)),
                "{} {} twice",
                route.method,
                route.path
            );
            if let Access::Operator(Operation {
                resource: Resource::PathTenant,
                ..
            }) = route.access
            {
                assert!(route.path.contains("/{tenant}"), "{}", route.path);
            }
        }
    }

    #[test]
    fn literal_segments_are_not_decoded_and_parameters_are() {
        assert!(find(&Method::GET, "/v1/ten%61nts").is_none());
        let m = find(&Method::DELETE, "/v1/tenants/acme/keys/sha256%3Aab").unwrap();
        let p = m.decode().unwrap();
        assert_eq!(p.get("key_id").unwrap(), "sha256:ab");
        assert_eq!(p.get("tenant").unwrap(), "acme");
        let m = find(&Method::DELETE, "/v1/tenants/acme/layers/sha256%3aab").unwrap();
        assert_eq!(m.decode().unwrap().get("digest").unwrap(), "sha256:ab");
        let m = find(&Method::DELETE, "/v1/operators/al%69ce%20b").unwrap();
        assert_eq!(m.decode().unwrap().get("name").unwrap(), "alice b");
        assert!(m.decode().unwrap().get("nosuch").is_err());
    }

    #[test]
    fn segments_that_decode_to_no_name_are_refused() {
        for (raw, problem) in [
            ("ac%2Fme", "escaped `/`"),
            ("ac%2fme", "escaped `/`"),
            ("a%00", "escaped NUL"),
            ("%FF", "UTF-8"),
            ("%C3%28", "UTF-8"),
        ] {
            let e = decode_segment(raw).unwrap_err();
            assert_eq!(e.kind(), "bad_request");
            let message = e.to_string();
            assert!(
                message.contains(raw) && message.contains(problem),
                "{message}"
            );
        }
        // A `%` not followed by two hex digits is kept as it is (as browsers do).
        assert_eq!(decode_segment("100%").unwrap(), "100%");
        assert_eq!(decode_segment("caf%C3%A9").unwrap(), "café");
        assert_eq!(decode_query_value("a%2Fb").unwrap(), "a/b");
        assert!(decode_query_value("a%00").is_err());
    }

    /// The table and `docs/openapi.yaml` list the same routes, method and path template.
    #[test]
    fn every_route_is_in_the_openapi_document_and_back() {
        let doc: serde_norway::Value = serde_norway::from_str(super::super::OPENAPI).unwrap();
        let paths = doc.get("paths").and_then(|p| p.as_mapping()).unwrap();
        let mut documented = BTreeSet::new();
        for (path, item) in paths {
            let path = path.as_str().unwrap();
            for (key, _) in item.as_mapping().unwrap() {
                let key = key.as_str().unwrap();
                if [
                    "get", "put", "post", "delete", "patch", "head", "options", "trace",
                ]
                .contains(&key)
                {
                    documented.insert((key.to_ascii_uppercase(), path.to_owned()));
                }
            }
        }
        let table: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.as_str().to_owned(), r.path.to_owned()))
            .collect();
        let undocumented: Vec<_> = table.difference(&documented).collect();
        let unrouted: Vec<_> = documented.difference(&table).collect();
        assert!(
            undocumented.is_empty(),
            "routes not in docs/openapi.yaml: {undocumented:?}"
        );
        assert!(
            unrouted.is_empty(),
            "documented but not routed: {unrouted:?}"
        );
        assert_eq!(table.len(), ROUTES.len());
    }
}
