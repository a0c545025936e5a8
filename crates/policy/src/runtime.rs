//! Runtime decisions: may this caller invoke this function, may this
//! function use this capability?
//!
//! Policies are kept per tenant ([`RuntimePolicies`]): the policies compiled
//! from each deployed function's manifest plus the tenant's hand-written
//! set. A request is decided by the set of the tenant that owns the
//! decision: the callee's tenant for `invoke` (resource-based: the callee
//! says who may call it), the calling function's tenant for everything a
//! function does (`kv.*`, `call`, `config.read`, `http.outbound`). A tenant's
//! policies therefore never take part in another tenant's decisions, and
//! one decision evaluates only its tenant's policies however many the
//! platform holds.
//!
//! Requests are built here from typed values, not JSON: entities and
//! context go straight to Cedar's values, which is most of what makes a
//! decision fast (see the `decide` benchmark).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request,
    RestrictedExpression,
};

use crate::{schema, Decision, PolicyError, PolicySet, Reason};

/// Who is asking.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Principal {
    /// An anonymous caller through the public gateway.
    Public,
    /// A function, identified by its verified SPIFFE identity.
    Function { tenant: String, name: String },
    /// An event source of a tenant.
    EventSource { tenant: String, name: String },
    /// An external caller with a JWT of the tenant's issuer `issuer` (its registered
    /// name), for the token's `sub`.
    Jwt {
        tenant: String,
        issuer: String,
        subject: String,
    },
    /// An external caller with the tenant's API key `name`.
    ApiKey { tenant: String, name: String },
    /// An external caller with a client certificate verified against the tenant's CA `ca`
    /// (`spiffe`: the platform bundle); `id` is its SPIFFE ID, or its subject without one.
    Mtls {
        tenant: String,
        ca: String,
        id: String,
    },
}

impl Principal {
    /// The tenant a principal belongs to, if any.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Principal::Public => None,
            Principal::Function { tenant, .. }
            | Principal::EventSource { tenant, .. }
            | Principal::Jwt { tenant, .. }
            | Principal::ApiKey { tenant, .. }
            | Principal::Mtls { tenant, .. } => Some(tenant),
        }
    }

    /// `Zerofn::Function::"acme/hello"` and so on, for messages.
    pub fn describe(&self) -> String {
        match self {
            Principal::Public => r#"Zerofn::Caller::"public""#.to_owned(),
            Principal::Function { tenant, name } => {
                format!(r#"Zerofn::Function::"{tenant}/{name}""#)
            }
            Principal::EventSource { tenant, name } => {
                format!(r#"Zerofn::EventSource::"{tenant}/{name}""#)
            }
            Principal::Jwt {
                tenant,
                issuer,
                subject,
            } => format!(
                r#"Zerofn::JwtCaller::"{tenant}/{issuer}/{}""#,
                subject.escape_debug()
            ),
            Principal::ApiKey { tenant, name } => {
                format!(r#"Zerofn::ApiKey::"{tenant}/{name}""#)
            }
            Principal::Mtls { tenant, ca, id } => format!(
                r#"Zerofn::MtlsCaller::"{tenant}/{ca}/{}""#,
                id.escape_debug()
            ),
        }
    }
}

/// What is acted on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    Function {
        tenant: String,
        name: String,
    },
    Bucket {
        tenant: String,
        name: String,
    },
    /// A queue of a tenant (`[permissions] publish`).
    Queue {
        tenant: String,
        name: String,
    },
    /// A bucket of a tenant's object storage (`[permissions] buckets`).
    ObjectBucket {
        tenant: String,
        name: String,
    },
    Host(String),
}

impl Resource {
    pub fn describe(&self) -> String {
        match self {
            Resource::Function { tenant, name } => {
                format!(r#"Zerofn::Function::"{tenant}/{name}""#)
            }
            Resource::Bucket { tenant, name } => format!(r#"Zerofn::Bucket::"{tenant}/{name}""#),
            Resource::Queue { tenant, name } => format!(r#"Zerofn::Queue::"{tenant}/{name}""#),
            Resource::ObjectBucket { tenant, name } => {
                format!(r#"Zerofn::ObjectBucket::"{tenant}/{name}""#)
            }
            Resource::Host(h) => format!(r#"Zerofn::Host::"{}""#, h.escape_debug()),
        }
    }
}

/// The runtime actions of the schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuntimeAction {
    Invoke,
    KvGet,
    KvList,
    KvPut,
    KvDelete,
    Call,
    HttpOutbound,
    ConfigRead,
    SvidJwt,
    QueuePublish,
    ObjectRead,
    ObjectWrite,
}

impl RuntimeAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeAction::Invoke => "invoke",
            RuntimeAction::KvGet => "kv.get",
            RuntimeAction::KvList => "kv.list",
            RuntimeAction::KvPut => "kv.put",
            RuntimeAction::KvDelete => "kv.delete",
            RuntimeAction::Call => "call",
            RuntimeAction::HttpOutbound => "http.outbound",
            RuntimeAction::ConfigRead => "config.read",
            RuntimeAction::SvidJwt => "svid.jwt",
            RuntimeAction::QueuePublish => "queue.publish",
            RuntimeAction::ObjectRead => "object.read",
            RuntimeAction::ObjectWrite => "object.write",
        }
    }

    /// For key-value actions, whether it writes.
    pub fn is_kv_write(self) -> bool {
        matches!(self, RuntimeAction::KvPut | RuntimeAction::KvDelete)
    }
}

/// Where an invocation came from (the schema's `Source`).
#[derive(Clone, Debug, Default)]
pub struct Source {
    /// "gateway", "function" or "event".
    pub kind: &'static str,
    pub ip: Option<std::net::IpAddr>,
    pub spiffe_id: Option<String>,
    pub tenant: Option<String>,
    pub function: Option<String>,
}

/// What the invoke context says about an authenticated external caller.
#[derive(Clone, Debug, Default)]
pub enum CallerAttributes {
    /// Not an authenticated external caller: `context.claims` has empty well-known claims.
    #[default]
    None,
    /// A JWT caller's verified claims (`context.claims`).
    Claims(Arc<serde_json::Map<String, serde_json::Value>>),
    /// An API key caller (`context.apiKey`, its name).
    ApiKey(String),
    /// An mTLS caller's verified certificate (`context.certificate`).
    Certificate(Arc<CertificateAttributes>),
}

/// What `context.certificate` says about an mTLS caller; empty strings for other callers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificateAttributes {
    /// The SPIFFE ID of its URI SAN, or empty.
    pub spiffe_id: String,
    /// RFC 4514.
    pub subject: String,
    /// The CA name that verified it (`spiffe` for the platform bundle).
    pub ca: String,
    /// Lowercase hex.
    pub serial: String,
}

/// The context of one request, typed per action.
#[derive(Clone, Debug)]
pub enum RequestContext {
    Invoke {
        method: String,
        path: String,
        source: Source,
        depth: u32,
        /// The verified attributes of an external caller.
        caller: CallerAttributes,
    },
    Key(String),
    List(u64),
    Call {
        method: String,
        path: String,
    },
    Outbound {
        method: String,
        url: String,
        /// `http` or `https`, as the platform read the URL.
        scheme: String,
        port: u16,
        /// The path without the query.
        path: String,
    },
    Audience(String),
    /// A publish: the message's size in bytes.
    Publish {
        bytes: u64,
    },
    /// An object read, write or delete: its key and the bytes written.
    Object {
        key: String,
        bytes: u64,
    },
}

/// One runtime authorization request.
#[derive(Clone, Debug)]
pub struct RuntimeRequest {
    pub principal: Principal,
    pub action: RuntimeAction,
    pub resource: Resource,
    pub context: RequestContext,
}

impl RuntimeRequest {
    /// The tenant whose policies decide this request (see the module doc),
    /// or `None` when no tenant's policies can (a public caller acting on
    /// something other than a function: always denied).
    pub fn deciding_tenant(&self) -> Option<&str> {
        match (self.action, &self.resource) {
            (RuntimeAction::Invoke, Resource::Function { tenant, .. }) => Some(tenant),
            (RuntimeAction::Invoke, _) => None,
            _ => self.principal.tenant(),
        }
    }
}

/// Scope key of a policy: the entity its `principal ==` and its
/// `resource ==` name, when they name one.
type ScopeKey = (Option<EntityUid>, Option<EntityUid>);

/// Most (principal, resource) pairs a tenant keeps prepared.
const PREPARED_CACHE: usize = 4096;

/// The policies of one tenant, compiled and hand-written, indexed by
/// scope: a policy whose scope says `principal == P` can only match
/// requests from P (likewise for `resource ==`), so a request is checked
/// only against the policies that could match it. Cedar evaluates every
/// policy in the set it is given; the index keeps that set small however
/// many policies the tenant has.
struct TenantSet {
    buckets: HashMap<ScopeKey, Vec<cedar_policy::Policy>>,
    len: usize,
    prepared: std::sync::Mutex<HashMap<(Principal, Resource), Arc<Prepared>>>,
}

/// What a (principal, resource) pair needs for every decision about it:
/// the candidate policies and the entities with their hierarchy (whose
/// transitive closure is most of the cost of building them).
struct Prepared {
    set: cedar_policy::PolicySet,
    entities: Entities,
}

impl TenantSet {
    fn prepared(
        &self,
        principal: &Principal,
        resource: &Resource,
    ) -> Result<Arc<Prepared>, PolicyError> {
        let key = (principal.clone(), resource.clone());
        if let Ok(cache) = self.prepared.lock() {
            if let Some(p) = cache.get(&key) {
                return Ok(p.clone());
            }
        }
        let principal_entity = principal_entity(principal)?;
        let resource_entity = resource_entity(resource)?;
        let p_uid = principal_entity.uid();
        let r_uid = resource_entity.uid();
        let mut set = cedar_policy::PolicySet::new();
        for scope in [
            (Some(p_uid.clone()), Some(r_uid.clone())),
            (Some(p_uid.clone()), None),
            (None, Some(r_uid.clone())),
            (None, None),
        ] {
            for policy in self.buckets.get(&scope).into_iter().flatten() {
                set.add(policy.clone())
                    .map_err(|_| PolicyError::DuplicateId {
                        id: policy.id().to_string(),
                    })?;
            }
        }
        let mut entities = vec![principal_entity, resource_entity];
        if let Principal::Mtls { tenant, ca, .. } = principal {
            // The CA entity, so `principal in Zerofn::MtlsCa::"<tenant>/<ca>"` holds.
            let t = types()?;
            entities.push(
                Entity::new(
                    typed_uid(&t.mtls_ca, &format!("{tenant}/{ca}")),
                    HashMap::new(),
                    HashSet::from([typed_uid(&t.tenant, tenant)]),
                )
                .map_err(|e| PolicyError::Request(e.to_string()))?,
            );
        }
        if let Principal::Jwt { tenant, issuer, .. } = principal {
            // The issuer entity, so `principal in Zerofn::Issuer::"<tenant>/<issuer>"` holds.
            let t = types()?;
            entities.push(
                Entity::new(
                    typed_uid(&t.issuer, &format!("{tenant}/{issuer}")),
                    HashMap::new(),
                    HashSet::from([typed_uid(&t.tenant, tenant)]),
                )
                .map_err(|e| PolicyError::Request(e.to_string()))?,
            );
        }
        for tenant in [principal.tenant(), resource_tenant(resource)]
            .into_iter()
            .flatten()
        {
            let uid = typed_uid(&types()?.tenant, tenant);
            if !entities.iter().any(|e| e.uid() == uid) {
                entities.push(Entity::new_no_attrs(uid, HashSet::new()));
            }
        }
        entities.extend(action_entities()?.iter().cloned());
        let entities = Entities::from_entities(entities, None)
            .map_err(|e| PolicyError::Request(e.to_string()))?;
        let prepared = Arc::new(Prepared { set, entities });
        if let Ok(mut cache) = self.prepared.lock() {
            if cache.len() >= PREPARED_CACHE {
                cache.clear();
            }
            cache.insert(key, prepared.clone());
        }
        Ok(prepared)
    }
}

fn scope_key(policy: &cedar_policy::Policy) -> ScopeKey {
    let principal = match policy.principal_constraint() {
        cedar_policy::PrincipalConstraint::Eq(uid) => Some(uid),
        _ => None,
    };
    let resource = match policy.resource_constraint() {
        cedar_policy::ResourceConstraint::Eq(uid) => Some(uid),
        _ => None,
    };
    (principal, resource)
}

/// Every tenant's runtime policies. Immutable: a change builds a new value
/// (with [`RuntimePoliciesBuilder`]) which the platform swaps in whole.
#[derive(Clone, Default)]
pub struct RuntimePolicies {
    tenants: HashMap<String, Arc<TenantSet>>,
    /// Decisions already made with exactly these policies (`memo.rs`);
    /// clones share it, as they share the policies.
    memo: Arc<crate::memo::Memo>,
}

impl std::fmt::Debug for RuntimePolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimePolicies")
            .field("tenants", &self.tenants.len())
            .field("policies", &self.len())
            .finish()
    }
}

/// Collects validated sets per tenant, then merges them.
#[derive(Default)]
pub struct RuntimePoliciesBuilder {
    tenants: HashMap<String, Vec<PolicySet>>,
}

impl RuntimePoliciesBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a validated set to `tenant`'s policies.
    pub fn add(&mut self, tenant: &str, set: PolicySet) -> &mut Self {
        self.tenants.entry(tenant.to_owned()).or_default().push(set);
        self
    }

    /// Merges each tenant's sets. Fails if two sets of one tenant use the
    /// same policy id (compiled ids are `<tenant>/<fn>/...`; hand-written
    /// ones must not collide with them).
    pub fn build(self) -> Result<RuntimePolicies, PolicyError> {
        let mut tenants = HashMap::new();
        for (tenant, sets) in self.tenants {
            let mut ids = HashSet::new();
            let mut buckets: HashMap<ScopeKey, Vec<cedar_policy::Policy>> = HashMap::new();
            for set in sets {
                for policy in set.set.policies() {
                    if !ids.insert(policy.id().to_string()) {
                        return Err(PolicyError::DuplicateId {
                            id: policy.id().to_string(),
                        });
                    }
                    buckets
                        .entry(scope_key(policy))
                        .or_default()
                        .push(policy.clone());
                }
            }
            tenants.insert(
                tenant,
                Arc::new(TenantSet {
                    buckets,
                    len: ids.len(),
                    prepared: std::sync::Mutex::new(HashMap::new()),
                }),
            );
        }
        Ok(RuntimePolicies {
            tenants,
            memo: Arc::default(),
        })
    }
}

impl RuntimePolicies {
    /// Number of policies over all tenants.
    pub fn len(&self) -> usize {
        self.tenants.values().map(|t| t.len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decides `request`. Never fails open: a request that cannot be built
    /// or evaluated is a denial with the reason in `errors`. The same request
    /// decided again gets the remembered answer (see `memo.rs` for why that
    /// answer cannot differ).
    pub fn decide(&self, request: &RuntimeRequest) -> Decision {
        let key = crate::memo::key(request);
        if let Some(decision) = key.as_deref().and_then(|k| self.memo.get(k)) {
            return decision;
        }
        let decision = self.decide_afresh(request);
        if let Some(key) = key {
            self.memo.put(key, &decision);
        }
        decision
    }

    /// Decides `request` with Cedar, without the memo: what [`Self::decide`]
    /// does on a miss (for benchmarks, and to check the memo against).
    pub fn decide_afresh(&self, request: &RuntimeRequest) -> Decision {
        match self.try_decide(request) {
            Ok(d) => d,
            Err(e) => Decision::error(e.to_string()),
        }
    }

    fn try_decide(&self, request: &RuntimeRequest) -> Result<Decision, PolicyError> {
        let Some(set) = request.deciding_tenant().and_then(|t| self.tenants.get(t)) else {
            return Ok(Decision::Deny(Reason::new(Vec::new(), Vec::new())));
        };
        let prepared = set.prepared(&request.principal, &request.resource)?;
        let cedar_request = Request::new(
            uid_of_principal(&request.principal)?,
            action_uid(request.action)?,
            uid_of_resource(&request.resource)?,
            context(&request.context)?,
            None::<&cedar_policy::Schema>,
        )
        .map_err(|e| PolicyError::Request(e.to_string()))?;
        let response =
            Authorizer::new().is_authorized(&cedar_request, &prepared.set, &prepared.entities);
        Ok(crate::decision_of(&response))
    }
}

/// Type names parsed once.
struct Types {
    tenant: EntityTypeName,
    function: EntityTypeName,
    bucket: EntityTypeName,
    queue: EntityTypeName,
    object_bucket: EntityTypeName,
    host: EntityTypeName,
    caller: EntityTypeName,
    event_source: EntityTypeName,
    action: EntityTypeName,
    jwt_caller: EntityTypeName,
    issuer: EntityTypeName,
    api_key: EntityTypeName,
    mtls_caller: EntityTypeName,
    mtls_ca: EntityTypeName,
}

fn types() -> Result<&'static Types, PolicyError> {
    static TYPES: std::sync::OnceLock<Result<Types, String>> = std::sync::OnceLock::new();
    TYPES
        .get_or_init(|| {
            let t = |name: &str| EntityTypeName::from_str(name).map_err(|e| e.to_string());
            Ok(Types {
                tenant: t("Zerofn::Tenant")?,
                function: t("Zerofn::Function")?,
                bucket: t("Zerofn::Bucket")?,
                queue: t("Zerofn::Queue")?,
                object_bucket: t("Zerofn::ObjectBucket")?,
                host: t("Zerofn::Host")?,
                caller: t("Zerofn::Caller")?,
                event_source: t("Zerofn::EventSource")?,
                action: t("Zerofn::Action")?,
                jwt_caller: t("Zerofn::JwtCaller")?,
                issuer: t("Zerofn::Issuer")?,
                api_key: t("Zerofn::ApiKey")?,
                mtls_caller: t("Zerofn::MtlsCaller")?,
                mtls_ca: t("Zerofn::MtlsCa")?,
            })
        })
        .as_ref()
        .map_err(|e| PolicyError::Schema(e.clone()))
}

fn typed_uid(type_name: &EntityTypeName, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(type_name.clone(), EntityId::new(id))
}

/// The schema's action entities (with the `kv.read`/`kv.write` groups),
/// built once, so `action in Zerofn::Action::"kv.read"` works.
fn action_entities() -> Result<&'static Vec<Entity>, PolicyError> {
    static ACTIONS: std::sync::OnceLock<Result<Vec<Entity>, String>> = std::sync::OnceLock::new();
    ACTIONS
        .get_or_init(|| {
            let schema = schema().map_err(|e| e.to_string())?;
            let entities = schema.action_entities().map_err(|e| e.to_string())?;
            Ok(entities.iter().cloned().collect())
        })
        .as_ref()
        .map_err(|e| PolicyError::Schema(e.clone()))
}

fn action_uid(action: RuntimeAction) -> Result<EntityUid, PolicyError> {
    Ok(typed_uid(&types()?.action, action.as_str()))
}

fn named_entity(
    type_name: &EntityTypeName,
    tenant: &str,
    name: &str,
) -> Result<Entity, PolicyError> {
    let uid = typed_uid(type_name, &format!("{tenant}/{name}"));
    let attrs = HashMap::from([
        (
            "tenant".to_owned(),
            RestrictedExpression::new_string(tenant.to_owned()),
        ),
        (
            "name".to_owned(),
            RestrictedExpression::new_string(name.to_owned()),
        ),
    ]);
    let parents = HashSet::from([typed_uid(&types()?.tenant, tenant)]);
    Entity::new(uid, attrs, parents).map_err(|e| PolicyError::Request(e.to_string()))
}

fn uid_of_principal(p: &Principal) -> Result<EntityUid, PolicyError> {
    let t = types()?;
    Ok(match p {
        Principal::Public => typed_uid(&t.caller, "public"),
        Principal::Function { tenant, name } => typed_uid(&t.function, &format!("{tenant}/{name}")),
        Principal::EventSource { tenant, name } => {
            typed_uid(&t.event_source, &format!("{tenant}/{name}"))
        }
        Principal::Jwt {
            tenant,
            issuer,
            subject,
        } => typed_uid(&t.jwt_caller, &format!("{tenant}/{issuer}/{subject}")),
        Principal::ApiKey { tenant, name } => typed_uid(&t.api_key, &format!("{tenant}/{name}")),
        Principal::Mtls { tenant, ca, id } => {
            typed_uid(&t.mtls_caller, &format!("{tenant}/{ca}/{id}"))
        }
    })
}

fn uid_of_resource(r: &Resource) -> Result<EntityUid, PolicyError> {
    let t = types()?;
    Ok(match r {
        Resource::Function { tenant, name } => typed_uid(&t.function, &format!("{tenant}/{name}")),
        Resource::Bucket { tenant, name } => typed_uid(&t.bucket, &format!("{tenant}/{name}")),
        Resource::Queue { tenant, name } => typed_uid(&t.queue, &format!("{tenant}/{name}")),
        Resource::ObjectBucket { tenant, name } => {
            typed_uid(&t.object_bucket, &format!("{tenant}/{name}"))
        }
        Resource::Host(h) => typed_uid(&t.host, h),
    })
}

fn principal_entity(p: &Principal) -> Result<Entity, PolicyError> {
    match p {
        Principal::Public => Ok(Entity::new_no_attrs(
            typed_uid(&types()?.caller, "public"),
            HashSet::new(),
        )),
        Principal::Function { tenant, name } => named_entity(&types()?.function, tenant, name),
        Principal::EventSource { tenant, name } => {
            named_entity(&types()?.event_source, tenant, name)
        }
        Principal::Jwt {
            tenant,
            issuer,
            subject,
        } => {
            let t = types()?;
            Entity::new(
                typed_uid(&t.jwt_caller, &format!("{tenant}/{issuer}/{subject}")),
                HashMap::from([
                    ("tenant".to_owned(), s(tenant)),
                    ("issuer".to_owned(), s(issuer)),
                    ("subject".to_owned(), s(subject)),
                ]),
                HashSet::from([typed_uid(&t.issuer, &format!("{tenant}/{issuer}"))]),
            )
            .map_err(|e| PolicyError::Request(e.to_string()))
        }
        Principal::ApiKey { tenant, name } => named_entity(&types()?.api_key, tenant, name),
        Principal::Mtls { tenant, ca, id } => {
            let t = types()?;
            Entity::new(
                typed_uid(&t.mtls_caller, &format!("{tenant}/{ca}/{id}")),
                HashMap::from([
                    ("tenant".to_owned(), s(tenant)),
                    ("ca".to_owned(), s(ca)),
                    ("id".to_owned(), s(id)),
                ]),
                HashSet::from([typed_uid(&t.mtls_ca, &format!("{tenant}/{ca}"))]),
            )
            .map_err(|e| PolicyError::Request(e.to_string()))
        }
    }
}

fn resource_entity(r: &Resource) -> Result<Entity, PolicyError> {
    match r {
        Resource::Function { tenant, name } => named_entity(&types()?.function, tenant, name),
        Resource::Bucket { tenant, name } => named_entity(&types()?.bucket, tenant, name),
        Resource::Queue { tenant, name } => named_entity(&types()?.queue, tenant, name),
        Resource::ObjectBucket { tenant, name } => {
            named_entity(&types()?.object_bucket, tenant, name)
        }
        Resource::Host(h) => Entity::new(
            typed_uid(&types()?.host, h),
            HashMap::from([
                (
                    "name".to_owned(),
                    RestrictedExpression::new_string(h.clone()),
                ),
                ("parent".to_owned(), s(host_parent(h))),
            ]),
            HashSet::new(),
        )
        .map_err(|e| PolicyError::Request(e.to_string())),
    }
}

/// A host name without its first label; "" for one label or an address.
fn host_parent(host: &str) -> &str {
    if host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok() {
        return "";
    }
    host.split_once('.').map_or("", |(_, parent)| parent)
}

fn resource_tenant(r: &Resource) -> Option<&str> {
    match r {
        Resource::Function { tenant, .. }
        | Resource::Bucket { tenant, .. }
        | Resource::Queue { tenant, .. }
        | Resource::ObjectBucket { tenant, .. } => Some(tenant),
        Resource::Host(_) => None,
    }
}

fn s(v: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(v.to_owned())
}

fn long(v: u64) -> RestrictedExpression {
    RestrictedExpression::new_long(i64::try_from(v).unwrap_or(i64::MAX))
}

/// The Cedar `ipaddr` value of a caller's address. `RestrictedExpression::new_ip` parses
/// the extension's name, `ip`, with Cedar's full grammar on every call (cedar-policy 4.14:
/// about 46,000 instructions, an eighth of a whole invocation), so each thread keeps the
/// expressions of the last few addresses it saw; a miss costs what the call costs.
fn ip_expression(ip: std::net::IpAddr) -> RestrictedExpression {
    const KEPT: usize = 8;
    thread_local! {
        static RECENT: std::cell::RefCell<(usize, Vec<(std::net::IpAddr, RestrictedExpression)>)> =
            const { std::cell::RefCell::new((0, Vec::new())) };
    }
    RECENT.with(|recent| {
        let Ok(mut recent) = recent.try_borrow_mut() else {
            return RestrictedExpression::new_ip(ip.to_string());
        };
        let (next, kept) = &mut *recent;
        if let Some((_, e)) = kept.iter().find(|(a, _)| *a == ip) {
            return e.clone();
        }
        let e = RestrictedExpression::new_ip(ip.to_string());
        if kept.len() < KEPT {
            kept.push((ip, e.clone()));
        } else if let Some(slot) = kept.get_mut(*next % KEPT) {
            *slot = (ip, e.clone());
        }
        *next = next.wrapping_add(1);
        e
    })
}

/// `context.certificate`: always present (empty strings for callers without a
/// certificate), so `context.certificate.spiffe_id like "..."` needs no `has` and a forbid
/// on it never errs for another kind of caller.
fn certificate_record(caller: &CallerAttributes) -> Result<RestrictedExpression, PolicyError> {
    let empty = CertificateAttributes::default();
    let c = match caller {
        CallerAttributes::Certificate(c) => c.as_ref(),
        _ => &empty,
    };
    RestrictedExpression::new_record([
        ("spiffe_id".to_owned(), s(&c.spiffe_id)),
        ("subject".to_owned(), s(&c.subject)),
        ("ca".to_owned(), s(&c.ca)),
        ("serial".to_owned(), s(&c.serial)),
    ])
    .map_err(|e| PolicyError::Request(e.to_string()))
}

fn context(c: &RequestContext) -> Result<Context, PolicyError> {
    let pairs: Vec<(String, RestrictedExpression)> = match c {
        RequestContext::Invoke {
            method,
            path,
            source,
            depth,
            caller,
        } => {
            let mut fields = vec![("kind".to_owned(), s(source.kind))];
            if let Some(ip) = source.ip {
                fields.push(("ip".to_owned(), ip_expression(ip)));
            }
            for (k, v) in [
                ("spiffeId", &source.spiffe_id),
                ("tenant", &source.tenant),
                ("function", &source.function),
            ] {
                if let Some(v) = v {
                    fields.push((k.to_owned(), s(v)));
                }
            }
            let source = RestrictedExpression::new_record(fields)
                .map_err(|e| PolicyError::Request(e.to_string()))?;
            let mut pairs = vec![
                ("method".to_owned(), s(method)),
                ("path".to_owned(), s(path)),
                ("source".to_owned(), source),
                ("depth".to_owned(), long(u64::from(*depth))),
            ];
            match caller {
                CallerAttributes::None => pairs.push(("claims".to_owned(), crate::claims::empty())),
                CallerAttributes::Claims(claims) => {
                    pairs.push(("claims".to_owned(), crate::claims::record(claims)));
                }
                CallerAttributes::ApiKey(name) => {
                    pairs.push(("claims".to_owned(), crate::claims::empty()));
                    pairs.push(("apiKey".to_owned(), s(name)));
                }
                CallerAttributes::Certificate(_) => {
                    pairs.push(("claims".to_owned(), crate::claims::empty()));
                }
            }
            pairs.push(("certificate".to_owned(), certificate_record(caller)?));
            pairs
        }
        RequestContext::Key(key) => vec![("key".to_owned(), s(key))],
        RequestContext::List(cursor) => vec![("cursor".to_owned(), long(*cursor))],
        RequestContext::Call { method, path } => vec![
            ("method".to_owned(), s(method)),
            ("path".to_owned(), s(path)),
        ],
        RequestContext::Audience(a) => vec![("audience".to_owned(), s(a))],
        RequestContext::Publish { bytes } => vec![("bytes".to_owned(), long(*bytes))],
        RequestContext::Object { key, bytes } => vec![
            ("key".to_owned(), s(key)),
            ("bytes".to_owned(), long(*bytes)),
        ],
        RequestContext::Outbound {
            method,
            url,
            scheme,
            port,
            path,
        } => vec![
            ("method".to_owned(), s(method)),
            ("url".to_owned(), s(url)),
            ("scheme".to_owned(), s(scheme)),
            ("port".to_owned(), long(u64::from(*port))),
            ("path".to_owned(), s(path)),
        ],
    };
    Context::from_pairs(pairs).map_err(|e| PolicyError::Request(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permissions::{compile, InvokeSource, KvGrant, Permissions};

    fn function(tenant: &str, name: &str) -> Principal {
        Principal::Function {
            tenant: tenant.into(),
            name: name.into(),
        }
    }

    fn kv(tenant: &str, name: &str, action: RuntimeAction, bucket: &str) -> RuntimeRequest {
        RuntimeRequest {
            principal: function(tenant, name),
            action,
            resource: Resource::Bucket {
                tenant: tenant.into(),
                name: bucket.into(),
            },
            context: RequestContext::Key("k".into()),
        }
    }

    fn invoke(principal: Principal, tenant: &str, name: &str) -> RuntimeRequest {
        RuntimeRequest {
            principal,
            action: RuntimeAction::Invoke,
            resource: Resource::Function {
                tenant: tenant.into(),
                name: name.into(),
            },
            context: RequestContext::Invoke {
                method: "GET".into(),
                path: "/".into(),
                source: Source {
                    kind: "gateway",
                    ip: Some("127.0.0.1".parse().unwrap()),
                    ..Source::default()
                },
                depth: 0,
                caller: CallerAttributes::None,
            },
        }
    }

    fn policies(entries: &[(&str, &str, Permissions)], extra: &[(&str, &str)]) -> RuntimePolicies {
        let mut b = RuntimePoliciesBuilder::new();
        for (tenant, name, p) in entries {
            b.add(tenant, PolicySet::parse(&compile(tenant, name, p)).unwrap());
        }
        for (tenant, text) in extra {
            b.add(tenant, PolicySet::parse(text).unwrap());
        }
        b.build().unwrap()
    }

    fn outbound(tenant: &str, name: &str, method: &str, url: &str) -> RuntimeRequest {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                (h.to_owned(), p.parse().unwrap())
            }
            _ => (
                authority.to_owned(),
                if scheme == "https" { 443 } else { 80 },
            ),
        };
        RuntimeRequest {
            principal: function(tenant, name),
            action: RuntimeAction::HttpOutbound,
            resource: Resource::Host(host),
            context: RequestContext::Outbound {
                method: method.into(),
                url: url.into(),
                scheme: scheme.into(),
                port,
                path: if path.is_empty() {
                    "/".into()
                } else {
                    path.into()
                },
            },
        }
    }

    /// Every field of an invoke request a policy can read, each one deciding
    /// on its own: the memo must never answer one of these variants with the
    /// base request's remembered permit.
    #[test]
    fn a_remembered_decision_is_never_another_requests() {
        let p = Permissions {
            invoke_from: [crate::InvokeSource::Public].into(),
            ..Permissions::default()
        };
        let rt = policies(
            &[("acme", "hello", p)],
            &[(
                "acme",
                r#"@id("picky") forbid (principal, action == Zerofn::Action::"invoke", resource)
                when { context.path == "/secret" || context.method == "DELETE" || context.depth > 0 ||
                       (context.source has ip && context.source.ip == ip("10.0.0.1")) ||
                       (context has apiKey && context.apiKey == "old") ||
                       context.certificate.serial == "01" };"#,
            )],
        );
        let base = invoke(Principal::Public, "acme", "hello");
        let with = |f: &dyn Fn(&mut RequestContext)| {
            let mut r = base.clone();
            f(&mut r.context);
            r
        };
        #[allow(clippy::type_complexity)]
        fn invoke_fields(
            c: &mut RequestContext,
        ) -> (
            &mut String,
            &mut String,
            &mut Source,
            &mut u32,
            &mut CallerAttributes,
        ) {
            match c {
                RequestContext::Invoke {
                    method,
                    path,
                    source,
                    depth,
                    caller,
                } => (method, path, source, depth, caller),
                _ => unreachable!(),
            }
        }
        let variants = [
            with(&|c| *invoke_fields(c).1 = "/secret".into()),
            with(&|c| *invoke_fields(c).0 = "DELETE".into()),
            with(&|c| *invoke_fields(c).3 = 1),
            with(&|c| invoke_fields(c).2.ip = Some("10.0.0.1".parse().unwrap())),
            with(&|c| *invoke_fields(c).4 = CallerAttributes::ApiKey("old".into())),
            with(&|c| {
                *invoke_fields(c).4 =
                    CallerAttributes::Certificate(Arc::new(crate::CertificateAttributes {
                        serial: "01".into(),
                        ..Default::default()
                    }))
            }),
        ];
        for _ in 0..2 {
            assert!(rt.decide(&base).is_allowed());
            for v in &variants {
                let d = rt.decide(v);
                assert!(!d.is_allowed(), "{v:?} was allowed");
                assert_eq!(d, rt.decide_afresh(v));
            }
        }
        // The base and the six variants, each remembered once.
        assert_eq!(rt.memo.len(), 7);
        // And the other way round: a denial remembered first does not
        // deny the base.
        let rt = policies(&[("acme", "hello", p_public())], &[]);
        let denied = invoke(function("evil", "x"), "acme", "hello");
        assert!(!rt.decide(&denied).is_allowed());
        assert!(rt.decide(&base).is_allowed());
        assert!(!rt.decide(&denied).is_allowed());
    }

    fn p_public() -> Permissions {
        Permissions {
            invoke_from: [crate::InvokeSource::Public].into(),
            ..Permissions::default()
        }
    }

    #[test]
    fn new_policies_decide_afresh() {
        let allowing = policies(&[("acme", "hello", p_public())], &[]);
        let request = invoke(Principal::Public, "acme", "hello");
        assert!(allowing.decide(&request).is_allowed());
        let clone = allowing.clone();
        assert!(clone.decide(&request).is_allowed());
        let forbidding = policies(
            &[("acme", "hello", p_public())],
            &[(
                "acme",
                r#"@id("closed") forbid (principal, action, resource);"#,
            )],
        );
        let d = forbidding.decide(&request);
        assert!(!d.is_allowed(), "{d:?}");
        assert_eq!(d.determining(), ["closed"]);
    }

    #[test]
    fn the_memo_is_bounded_and_skips_claims_and_long_requests() {
        let rt = policies(&[("acme", "hello", p_public())], &[]);
        let at = |path: String| {
            let mut r = invoke(Principal::Public, "acme", "hello");
            if let RequestContext::Invoke { path: p, .. } = &mut r.context {
                *p = path;
            }
            r
        };
        for i in 0..crate::memo::ENTRIES + 10 {
            assert!(rt.decide(&at(format!("/{i}"))).is_allowed());
            assert!(rt.memo.len() <= crate::memo::ENTRIES);
        }
        let before = rt.memo.len();
        assert!(rt
            .decide(&at("/".repeat(crate::memo::KEY_MAX)))
            .is_allowed());
        assert_eq!(rt.memo.len(), before, "a long request was remembered");
        let mut jwt = invoke(Principal::Public, "acme", "hello");
        if let RequestContext::Invoke { caller, .. } = &mut jwt.context {
            *caller = CallerAttributes::Claims(Arc::new(serde_json::Map::new()));
        }
        rt.decide(&jwt);
        assert_eq!(
            rt.memo.len(),
            before,
            "a JWT caller's request was remembered"
        );
    }

    #[test]
    fn memo_keys_do_not_run_fields_together() {
        let call = |method: &str, path: &str| RuntimeRequest {
            principal: function("acme", "a"),
            action: RuntimeAction::Call,
            resource: Resource::Function {
                tenant: "acme".into(),
                name: "b".into(),
            },
            context: RequestContext::Call {
                method: method.into(),
                path: path.into(),
            },
        };
        assert_ne!(
            crate::memo::key(&call("a", "bc")),
            crate::memo::key(&call("ab", "c"))
        );
        let one = |tenant: &str, name: &str| invoke(function(tenant, name), "acme", "hello");
        assert_ne!(
            crate::memo::key(&one("ac", "me")),
            crate::memo::key(&one("a", "cme"))
        );
        assert!(crate::memo::key(&call("a", "bc")).is_some());
    }

    #[test]
    fn a_queue_trigger_admits_its_source_only() {
        let p = Permissions {
            invoke_from: [crate::InvokeSource::parse("event:queue/orders").unwrap()].into(),
            ..Permissions::default()
        };
        let rt = policies(&[("acme", "worker", p)], &[]);
        let source = |tenant: &str, name: &str| Principal::EventSource {
            tenant: tenant.into(),
            name: name.into(),
        };
        let d = rt.decide(&invoke(source("acme", "queue/orders"), "acme", "worker"));
        assert!(d.is_allowed(), "{d:?}");
        assert_eq!(d.determining(), ["acme/worker/invoke/event:queue/orders"]);
        for (principal, why) in [
            (source("acme", "queue/other"), "another queue"),
            (source("acme", "orders"), "a bare name"),
            (source("evil", "queue/orders"), "another tenant's queue"),
            (Principal::Public, "a direct HTTP call"),
            (
                function("acme", "orders"),
                "a function named like the queue",
            ),
        ] {
            assert!(
                !rt.decide(&invoke(principal, "acme", "worker")).is_allowed(),
                "{why} was allowed"
            );
        }
        for bad in [
            "event:",
            "event:queue/",
            "event:/orders",
            "event:queue/a/b",
            "event:Queue/x",
        ] {
            assert!(crate::InvokeSource::parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn a_kv_trigger_admits_its_bucket_only() {
        let p = Permissions {
            invoke_from: [crate::InvokeSource::parse("event:kv/orders").unwrap()].into(),
            ..Permissions::default()
        };
        let rt = policies(&[("acme", "sub", p)], &[]);
        let source = |tenant: &str, name: &str| Principal::EventSource {
            tenant: tenant.into(),
            name: name.into(),
        };
        let d = rt.decide(&invoke(source("acme", "kv/orders"), "acme", "sub"));
        assert!(d.is_allowed(), "{d:?}");
        assert_eq!(d.determining(), ["acme/sub/invoke/event:kv/orders"]);
        for (principal, why) in [
            (source("acme", "kv/other"), "another bucket"),
            (source("evil", "kv/orders"), "another tenant's bucket"),
            (source("acme", "queue/orders"), "a queue of the same name"),
            (Principal::Public, "a direct HTTP call"),
        ] {
            assert!(
                !rt.decide(&invoke(principal, "acme", "sub")).is_allowed(),
                "{why} was allowed"
            );
        }
    }

    #[test]
    fn egress_entries_compile_to_permits_on_hosts() {
        use zerofn_egress::EgressRule;
        let p = Permissions {
            egress: vec![
                EgressRule::parse("https://api.stripe.com", &[], &[]).unwrap(),
                EgressRule::parse("https://*.s3.amazonaws.com:443", &[], &[]).unwrap(),
                EgressRule::parse("http://inventory.internal:8080/v1/", &["GET".into()], &[])
                    .unwrap(),
                EgressRule::parse("http://db.internal:5432/x", &[], &["10.0.0.0/8".into()])
                    .unwrap(),
            ],
            ..Permissions::default()
        };
        let rt = policies(&[("acme", "shop", p)], &[]);
        let allowed = |m: &str, u: &str| rt.decide(&outbound("acme", "shop", m, u)).is_allowed();
        let d = rt.decide(&outbound(
            "acme",
            "shop",
            "POST",
            "https://api.stripe.com/v1/charges",
        ));
        assert!(d.is_allowed(), "{d:?}");
        assert_eq!(
            d.determining(),
            ["acme/shop/egress/https://api.stripe.com:443"]
        );
        assert!(allowed("GET", "https://bucket.s3.amazonaws.com/k"));
        assert!(allowed("GET", "http://inventory.internal:8080/v1/items"));
        assert!(allowed("GET", "http://db.internal:5432/x"));
        assert!(allowed("GET", "http://db.internal:5432/x/y"));
        for (m, u) in [
            ("GET", "http://api.stripe.com/"),
            ("GET", "https://api.stripe.com:8443/"),
            ("GET", "https://stripe.com/"),
            ("GET", "https://a.b.s3.amazonaws.com/k"),
            ("GET", "https://s3.amazonaws.com/k"),
            ("POST", "http://inventory.internal:8080/v1/items"),
            ("GET", "http://inventory.internal:8080/v2/items"),
            ("GET", "http://db.internal:5432/xy"),
            ("GET", "https://example.com/"),
        ] {
            assert!(!allowed(m, u), "{m} {u}");
        }
        // Another function of the tenant is granted nothing.
        assert!(!rt
            .decide(&outbound("acme", "other", "GET", "https://api.stripe.com/"))
            .is_allowed());
        // A tenant policy can forbid what a manifest allows.
        let p = Permissions {
            egress: vec![EgressRule::parse("https://api.stripe.com", &[], &[]).unwrap()],
            ..Permissions::default()
        };
        let rt = policies(
            &[("acme", "shop", p)],
            &[(
                "acme",
                r#"forbid (principal, action == Zerofn::Action::"http.outbound", resource) when { context.method == "DELETE" };"#,
            )],
        );
        assert!(rt
            .decide(&outbound("acme", "shop", "GET", "https://api.stripe.com/"))
            .is_allowed());
        assert!(!rt
            .decide(&outbound(
                "acme",
                "shop",
                "DELETE",
                "https://api.stripe.com/"
            ))
            .is_allowed());
    }

    #[test]
    fn a_publish_grant_allows_that_queue_of_the_own_tenant_only() {
        let p = Permissions {
            publish: ["orders".to_owned()].into(),
            ..Permissions::default()
        };
        let rt = policies(&[("acme", "shop", p.clone()), ("evil", "shop", p)], &[]);
        let publish = |tenant: &str, name: &str, queue_tenant: &str, queue: &str| RuntimeRequest {
            principal: function(tenant, name),
            action: RuntimeAction::QueuePublish,
            resource: Resource::Queue {
                tenant: queue_tenant.into(),
                name: queue.into(),
            },
            context: RequestContext::Publish { bytes: 5 },
        };
        let ok = rt.decide(&publish("acme", "shop", "acme", "orders"));
        assert!(ok.is_allowed(), "{ok:?}");
        assert_eq!(ok.determining(), ["acme/shop/publish/orders"]);
        assert!(!rt
            .decide(&publish("acme", "shop", "acme", "audit"))
            .is_allowed());
        assert!(!rt
            .decide(&publish("acme", "other", "acme", "orders"))
            .is_allowed());
        // The same grant in another tenant's manifest reaches only that tenant's queue.
        assert!(!rt
            .decide(&publish("evil", "shop", "acme", "orders"))
            .is_allowed());
        assert!(rt
            .decide(&publish("evil", "shop", "evil", "orders"))
            .is_allowed());
    }

    #[test]
    fn read_grant_allows_reads_only_and_names_the_policy() {
        let p = Permissions {
            kv: [KvGrant::parse("orders:read").unwrap()].into(),
            ..Permissions::default()
        };
        let rt = policies(&[("acme", "shop", p)], &[]);
        let get = rt.decide(&kv("acme", "shop", RuntimeAction::KvGet, "orders"));
        assert!(get.is_allowed(), "{get:?}");
        assert_eq!(get.determining(), ["acme/shop/kv/orders:read"]);
        assert!(rt
            .decide(&kv("acme", "shop", RuntimeAction::KvList, "orders"))
            .is_allowed());
        let put = rt.decide(&kv("acme", "shop", RuntimeAction::KvPut, "orders"));
        assert!(!put.is_allowed());
        assert!(put.determining().is_empty());
        assert!(!rt
            .decide(&kv("acme", "shop", RuntimeAction::KvGet, "cache"))
            .is_allowed());
        assert!(!rt
            .decide(&kv("acme", "other", RuntimeAction::KvGet, "orders"))
            .is_allowed());
    }

    #[test]
    fn another_tenants_policies_never_decide() {
        // Tenant evil grants itself acme's bucket: the request for acme's
        // bucket is decided by acme's policies, which grant nothing.
        let rt = policies(
            &[],
            &[(
                "evil",
                r#"permit (principal, action, resource == Zerofn::Bucket::"acme/orders");"#,
            )],
        );
        let mut req = kv("acme", "shop", RuntimeAction::KvGet, "orders");
        assert!(!rt.decide(&req).is_allowed());
        // And a function of evil naming acme's bucket is decided by evil's
        // set, but the platform never builds such a request (buckets are
        // resolved in the caller's tenant); even so the resource is acme's.
        req.principal = function("evil", "x");
        assert!(
            rt.decide(&req).is_allowed(),
            "only evil's own policy allowed it"
        );
    }

    #[test]
    fn invoke_policies_are_the_callees() {
        let callee = Permissions {
            invoke_from: [
                InvokeSource::Function("checkout".into()),
                InvokeSource::Tenant("partner".into()),
            ]
            .into(),
            ..Permissions::default()
        };
        let rt = policies(&[("acme", "billing", callee)], &[]);
        assert!(rt
            .decide(&invoke(function("acme", "checkout"), "acme", "billing"))
            .is_allowed());
        assert!(rt
            .decide(&invoke(function("partner", "any"), "acme", "billing"))
            .is_allowed());
        assert!(!rt
            .decide(&invoke(function("acme", "other"), "acme", "billing"))
            .is_allowed());
        assert!(!rt
            .decide(&invoke(Principal::Public, "acme", "billing"))
            .is_allowed());
    }

    #[test]
    fn hand_written_conditions_on_the_source_apply() {
        let rt = policies(
            &[],
            &[(
                "acme",
                r#"@id("office-only")
                permit (principal == Zerofn::Caller::"public", action == Zerofn::Action::"invoke", resource in Zerofn::Tenant::"acme")
                when { context.source has ip && context.source.ip.isInRange(ip("127.0.0.0/8")) };
                @id("no-deep-chains")
                forbid (principal, action == Zerofn::Action::"invoke", resource) when { context.depth > 3 };"#,
            )],
        );
        let ok = rt.decide(&invoke(Principal::Public, "acme", "hello"));
        assert!(ok.is_allowed(), "{ok:?}");
        assert_eq!(ok.determining(), ["office-only"]);
        let mut far = invoke(Principal::Public, "acme", "hello");
        if let RequestContext::Invoke { source, depth, .. } = &mut far.context {
            source.ip = Some("10.0.0.1".parse().unwrap());
            *depth = 4;
        }
        let denied = rt.decide(&far);
        assert!(!denied.is_allowed());
        assert_eq!(denied.determining(), ["no-deep-chains"]);
    }

    /// The per-thread cache of caller addresses never answers for another address: more
    /// distinct addresses than it keeps, in and out of the range, each decided as itself.
    #[test]
    fn cached_caller_addresses_decide_as_themselves() {
        let rt = policies(
            &[],
            &[(
                "acme",
                r#"@id("office-only")
                permit (principal == Zerofn::Caller::"public", action == Zerofn::Action::"invoke", resource in Zerofn::Tenant::"acme")
                when { context.source has ip && context.source.ip.isInRange(ip("127.0.0.0/8")) };"#,
            )],
        );
        for round in 0..3 {
            for i in 1..=20u8 {
                let inside = i % 2 == 0;
                let ip: std::net::IpAddr = if inside {
                    [127, 0, 0, i].into()
                } else {
                    [10, 0, 0, i].into()
                };
                let mut r = invoke(Principal::Public, "acme", "hello");
                if let RequestContext::Invoke { source, .. } = &mut r.context {
                    source.ip = Some(ip);
                }
                assert_eq!(rt.decide(&r).is_allowed(), inside, "round {round}, {ip}");
            }
        }
    }

    #[test]
    fn jwt_and_api_key_callers_are_principals_with_claims_in_the_context() {
        let p = Permissions {
            invoke_from: [InvokeSource::Jwt("corp".into()), InvokeSource::ApiKey].into(),
            ..Permissions::default()
        };
        let rt = policies(
            &[("acme", "orders", p)],
            &[(
                "acme",
                r#"@id("writers-only")
                forbid (principal in Zerofn::Issuer::"acme/corp", action == Zerofn::Action::"invoke", resource)
                unless { context.claims.scope like "*orders:write*" };
                @id("no-ci-on-fridays")
                forbid (principal is Zerofn::ApiKey, action, resource) when { context has apiKey && context.apiKey == "old" };"#,
            )],
        );
        let jwt = |tenant: &str, issuer: &str, claims: serde_json::Value| {
            let mut r = invoke(
                Principal::Jwt {
                    tenant: tenant.into(),
                    issuer: issuer.into(),
                    subject: "alice".into(),
                },
                "acme",
                "orders",
            );
            if let RequestContext::Invoke { caller, .. } = &mut r.context {
                *caller = CallerAttributes::Claims(Arc::new(claims.as_object().unwrap().clone()));
            }
            r
        };
        let writer = serde_json::json!({"iss": "https://idp", "sub": "alice", "aud": "x",
            "scope": "orders:read orders:write", "nested": {"a": [1, "b", {"c": true}]}, "n": null, "f": 1.5});
        let d = rt.decide(&jwt("acme", "corp", writer.clone()));
        assert!(d.is_allowed(), "{d:?}");
        // The scope array form (`scp`) counts as well.
        let scp = serde_json::json!({"sub": "alice", "scp": ["orders:write"]});
        assert!(rt.decide(&jwt("acme", "corp", scp)).is_allowed());
        let reader = serde_json::json!({"sub": "alice", "scope": "orders:read"});
        let d = rt.decide(&jwt("acme", "corp", reader));
        assert!(!d.is_allowed());
        assert_eq!(d.determining(), ["writers-only"]);
        // Another issuer, or the same issuer name of another tenant: not the grant.
        assert!(!rt
            .decide(&jwt("acme", "other", writer.clone()))
            .is_allowed());
        assert!(!rt.decide(&jwt("evil", "corp", writer)).is_allowed());
        // API keys of the tenant; a deep claim set stays bounded and decides.
        let key = |tenant: &str, name: &str| {
            let mut r = invoke(
                Principal::ApiKey {
                    tenant: tenant.into(),
                    name: name.into(),
                },
                "acme",
                "orders",
            );
            if let RequestContext::Invoke { caller, .. } = &mut r.context {
                *caller = CallerAttributes::ApiKey(name.into());
            }
            r
        };
        assert!(rt.decide(&key("acme", "ci")).is_allowed());
        assert!(!rt.decide(&key("acme", "old")).is_allowed());
        assert!(!rt.decide(&key("evil", "ci")).is_allowed());
        // The public caller is not admitted, and the claims forbid does not err for it.
        let d = rt.decide(&invoke(Principal::Public, "acme", "orders"));
        assert!(!d.is_allowed() && d.determining().is_empty(), "{d:?}");
        let mut deep = serde_json::json!("x");
        for _ in 0..200 {
            deep = serde_json::json!({ "d": deep });
        }
        let bomb = serde_json::json!({"sub": "alice", "scope": "orders:write", "deep": deep,
            "wide": (0..10_000).map(|i| format!("k{i}")).collect::<Vec<_>>()});
        assert!(rt.decide(&jwt("acme", "corp", bomb)).is_allowed());
    }

    #[test]
    fn unknown_tenant_and_public_non_invoke_are_denied() {
        let rt = RuntimePolicies::default();
        assert!(!rt
            .decide(&invoke(Principal::Public, "acme", "x"))
            .is_allowed());
        let odd = RuntimeRequest {
            principal: Principal::Public,
            action: RuntimeAction::KvGet,
            resource: Resource::Bucket {
                tenant: "acme".into(),
                name: "b".into(),
            },
            context: RequestContext::Key("k".into()),
        };
        assert!(!rt.decide(&odd).is_allowed());
    }

    #[test]
    fn duplicate_ids_within_a_tenant_are_refused() {
        let mut b = RuntimePoliciesBuilder::new();
        b.add(
            "acme",
            PolicySet::parse(r#"@id("x") permit (principal, action, resource);"#).unwrap(),
        );
        b.add(
            "acme",
            PolicySet::parse(r#"@id("x") forbid (principal, action, resource);"#).unwrap(),
        );
        assert!(matches!(b.build(), Err(PolicyError::DuplicateId { .. })));
    }

    #[test]
    fn mtls_callers_are_principals_of_their_tenants_ca_with_the_certificate_in_the_context() {
        let p = Permissions {
            invoke_from: [
                InvokeSource::Mtls("partners".into()),
                InvokeSource::Mtls("spiffe".into()),
            ]
            .into(),
            ..Permissions::default()
        };
        let rt = policies(
            &[("acme", "orders", p)],
            &[(
                "acme",
                r#"@id("own-workloads-only")
                forbid (principal in Zerofn::MtlsCa::"acme/spiffe", action == Zerofn::Action::"invoke", resource)
                unless { context.certificate.spiffe_id like "spiffe://zerofn.local/tenant/acme/*" };
                @id("no-test-partner")
                forbid (principal, action == Zerofn::Action::"invoke", resource) when { context.certificate.subject like "*CN=test*" };"#,
            )],
        );
        let mtls = |tenant: &str, ca: &str, spiffe_id: &str, subject: &str| {
            let id = if spiffe_id.is_empty() {
                subject
            } else {
                spiffe_id
            };
            let mut r = invoke(
                Principal::Mtls {
                    tenant: tenant.into(),
                    ca: ca.into(),
                    id: id.into(),
                },
                "acme",
                "orders",
            );
            if let RequestContext::Invoke { caller, .. } = &mut r.context {
                *caller = CallerAttributes::Certificate(Arc::new(CertificateAttributes {
                    spiffe_id: spiffe_id.into(),
                    subject: subject.into(),
                    ca: ca.into(),
                    serial: "01".into(),
                }));
            }
            r
        };
        let d = rt.decide(&mtls("acme", "partners", "", "CN=billing,O=Partner"));
        assert!(d.is_allowed(), "{d:?}");
        let d = rt.decide(&mtls(
            "acme",
            "spiffe",
            "spiffe://zerofn.local/tenant/acme/fn/client",
            "",
        ));
        assert!(d.is_allowed(), "{d:?}");
        // The platform bundle, but another tenant's workload: the tenant's forbid.
        let d = rt.decide(&mtls(
            "acme",
            "spiffe",
            "spiffe://zerofn.local/tenant/evil/fn/x",
            "",
        ));
        assert_eq!(d.determining(), ["own-workloads-only"]);
        let d = rt.decide(&mtls("acme", "partners", "", "CN=test-client"));
        assert_eq!(d.determining(), ["no-test-partner"]);
        // The same CA name of another tenant, and a CA the function does not name: no permit.
        assert!(!rt
            .decide(&mtls("evil", "partners", "", "CN=x"))
            .is_allowed());
        assert!(!rt
            .decide(&mtls("acme", "suppliers", "", "CN=x"))
            .is_allowed());
        // Callers without a certificate: the forbids on it do not err, nothing permits.
        let d = rt.decide(&invoke(Principal::Public, "acme", "orders"));
        assert!(!d.is_allowed() && d.determining().is_empty(), "{d:?}");
    }
}
