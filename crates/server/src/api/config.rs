//! The configuration directory's routes: the running configuration as one value
//! (`GET /v1/config/state`, for `zerofn plan`, `drift` and `export`) and applying a
//! directory (`POST /v1/config/apply`, `zerofn apply`).
//!
//! An apply validates the whole directory (the `zerofn-config` loader, then every value
//! again with the checks of the route that would otherwise set it), checks the zones
//! ([`crate::control::ControlPlane::prepare_zones`]) and every function change
//! ([`crate::control::ControlPlane::prepare_deploy`]: the operator's grants, admission,
//! zone, routes, policies, compilation) against the state the apply makes, records the
//! audit records (one `config.apply` per change with operator, directory digest and Git
//! commit; each zone's and function's own) before anything changes, writes everything
//! (configuration, zones, deployments) in one store transaction at the planned serial, and
//! then puts the stored state in force. Any refusal before the transaction, and any error
//! in it, changes nothing.
//!
//! # Trust
//! Trusts nothing in the request: file paths and sizes are bounded by `ConfigFiles`, every
//! value is validated here. The Git commit is the operator's statement (the server has no
//! checkout) and is recorded as such.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use http::StatusCode;
use zerofn_audit::{Action, AuditRecord, Outcome};
use zerofn_config::{
    diff, ApplyRequest, ApplyResult, Change, ChangeKind, ConfigFiles, ConfigState, FunctionConfig,
    Identity, JwtIssuer, Limits, PlatformConfig, TenantConfig,
};
use zerofn_store::{ConfigOp, JwtIssuerRow, StoreError, TenantIdentityRow};
use zerofn_types::{FunctionName, TenantName};

use super::routes::{Call, Reply};
use super::{parse_json, to_value, Api};
use crate::control::ControlError;

/// How often reading the state is retried when a change lands while it is read.
const STATE_READ_ATTEMPTS: usize = 5;

fn tenant_name(name: &str) -> Result<TenantName, ControlError> {
    TenantName::parse(name).map_err(|e| ControlError::BadRequest(format!("tenant `{name}`: {e}")))
}

impl Api {
    pub(super) async fn config_state(&self, _: Call<'_>) -> Reply {
        let state = self.read_config().await?;
        Ok((StatusCode::OK, to_value(state)))
    }

    pub(super) async fn config_export(&self, _: Call<'_>) -> Reply {
        let state = self.read_config().await?;
        let store = self.control.store();
        let mut functions = Vec::new();
        for (tenant, t) in &state.config.tenants {
            let tn = tenant_name(tenant)?;
            for name in t.functions.keys() {
                let Ok(fname) = FunctionName::parse(name) else {
                    continue;
                };
                let versions = store.list_versions(&tn, &fname).await?;
                let Some(current) = versions.iter().find(|v| v.current && v.kept) else {
                    continue;
                };
                let kept = store.kept_version(&tn, &fname, current.number).await?;
                let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
                functions.push(zerofn_config::ExportedFunctionWire {
                    tenant: tenant.clone(),
                    name: name.clone(),
                    component: base64::engine::general_purpose::STANDARD.encode(&kept.component),
                    bundle: text(kept.bundle),
                    attestations: kept
                        .attestations
                        .into_iter()
                        .map(|(n, b)| (n, text(b)))
                        .collect(),
                });
            }
        }
        let export = zerofn_config::ConfigExport {
            serial: state.serial,
            config: state.config,
            functions,
        };
        Ok((StatusCode::OK, to_value(export)))
    }

    pub(super) async fn config_apply(&self, c: Call<'_>) -> Reply {
        let req: ApplyRequest = parse_json(c.body)?;
        let may = |action, tenant: &str| {
            self.authz
                .decide(&zerofn_policy::ControlQuery {
                    operator: c.principal.name.clone(),
                    authentication: c.principal.authentication,
                    action,
                    resource: zerofn_policy::ControlResource::Tenant(tenant.to_owned()),
                })
                .is_allowed()
        };
        let result = self.apply_request(c.actor, req, &may).await?;
        Ok((StatusCode::OK, to_value(result)))
    }

    /// Apply a directory sent as an [`ApplyRequest`] (also used at start-up for
    /// `zerofn up --config-dir`).
    ///
    /// `may` answers whether the applying operator is allowed a control action on a tenant:
    /// a function change also needs `deploy` there (and `permissions.grant` to widen grants),
    /// as `zerofn deploy` would.
    pub(crate) async fn apply_request(
        &self,
        actor: &str,
        req: ApplyRequest,
        may: &(dyn Fn(zerofn_policy::ControlAction, &str) -> bool + Sync),
    ) -> Result<ApplyResult, ControlError> {
        let record = |outcome| AuditRecord::new(actor, Action::ConfigApply, outcome);
        let mut map = BTreeMap::new();
        for (path, b64) in req.files {
            let bytes = match base64::engine::general_purpose::STANDARD.decode(b64.as_bytes()) {
                Ok(b) => b,
                Err(_) => {
                    let e = ControlError::InvalidRequest(format!(
                        "file `{}` is not base64",
                        path.escape_debug()
                    ));
                    return self.config_refused(record(Outcome::Deny), e).await;
                }
            };
            map.insert(path, bytes);
        }
        let files = match ConfigFiles::from_map(map) {
            Ok(f) => f,
            Err(e) => {
                let e = ControlError::BadRequest(e.to_string());
                return self.config_refused(record(Outcome::Deny), e).await;
            }
        };
        let digest = files.digest();
        let git_commit = req.git_commit.filter(|c| {
            (c.len() == 40 || c.len() == 64) && c.bytes().all(|b| b.is_ascii_hexdigit())
        });
        let origin = match &git_commit {
            Some(commit) => format!("directory {digest}, git commit {commit}"),
            None => format!("directory {digest}"),
        };
        let desired = match zerofn_config::load(&files) {
            Ok(d) => d,
            Err(e) => {
                let e = ControlError::BadRequest(format!("invalid configuration: {e}"));
                return self
                    .config_refused(record(Outcome::Deny).reason(origin.clone()), e)
                    .await;
            }
        };
        let _change = self.config_change.lock().await;
        let state = self.read_config().await?;
        if let Some(planned) = req.planned_serial {
            if planned != state.serial {
                let e = ControlError::Store(StoreError::StaleSerial {
                    planned,
                    current: state.serial,
                });
                return self
                    .config_refused(record(Outcome::Deny).reason(origin.clone()), e)
                    .await;
            }
        }
        let changes = diff(&state.config, &desired);
        let (applied, not_applied): (Vec<Change>, Vec<Change>) =
            changes.into_iter().partition(|c| c.manual.is_none());
        let ops = match self.ops_for(&state.config, &desired).await {
            Ok(ops) => ops,
            Err(e) => {
                return self
                    .config_refused(record(Outcome::Deny).reason(origin.clone()), e)
                    .await
            }
        };
        // Zones and functions are checked against the state this apply makes (its
        // tenants, rules, routes, zones and functions), before anything is stored.
        let ran_zones = applied.iter().any(|c| c.object.starts_with("zone "));
        let zones = if ran_zones {
            let documents: Vec<String> = desired.zones.values().cloned().collect();
            let basis = match zone_basis(&state.config, &desired) {
                Ok(b) => b,
                Err(e) => {
                    return self
                        .config_refused(record(Outcome::Deny).reason(origin.clone()), e)
                        .await
                }
            };
            match self
                .control
                .prepare_zones(actor, &documents, true, Some(&basis))
                .await
            {
                Ok(z) => Some(z),
                Err(e) => {
                    let e = match e {
                        ControlError::ZoneConflict { zone, problem } => {
                            ControlError::ZoneConflict {
                                zone,
                                problem: format!("{problem}; nothing was changed"),
                            }
                        }
                        other => ControlError::BadRequest(format!(
                            "zones refused: {other}; nothing was changed"
                        )),
                    };
                    return self
                        .config_refused(record(Outcome::Deny).reason(origin.clone()), e)
                        .await;
                }
            }
        } else {
            None
        };
        let functions = match self
            .prepare_functions(
                actor,
                &files,
                &state.config,
                &desired,
                &applied,
                may,
                zones.as_ref().map(|z| z.built.clone()),
            )
            .await
        {
            Ok(f) => f,
            Err(e) => {
                return self
                    .config_refused(record(Outcome::Deny).reason(origin.clone()), e)
                    .await
            }
        };
        let operators = match self
            .operator_steps(actor, &state.config, &desired, &applied)
            .await
        {
            Ok(o) => o,
            Err(e) => {
                return self
                    .config_refused(record(Outcome::Deny).reason(origin.clone()), e)
                    .await
            }
        };
        // Audit before effect: one record per change (and the zone, function and operator
        // records of their own paths), then the one transaction.
        for change in &applied {
            let mut r = record(Outcome::Allow).reason(format!(
                "{} {}: {}; {origin}; serial {}",
                kind_word(change.kind),
                change.object,
                change.effects.join("; "),
                state.serial
            ));
            if let Some(t) = tenant_of(&change.object) {
                r = r.tenant(t);
            }
            self.audit.append(r).await?;
        }
        let mut ops = ops;
        let mut zones_in_force = None;
        if let Some(z) = zones {
            let crate::zones::PreparedZones {
                built,
                policies: _,
                rows,
                deleted,
                records,
            } = z;
            for r in records {
                self.audit.append(r).await?;
            }
            ops.push(ConfigOp::SetZones {
                zones: rows,
                delete: deleted,
            });
            zones_in_force = Some(built);
        }
        let mut issued = Vec::new();
        let mut revoking = Vec::new();
        for step in operators {
            match step {
                OperatorStep::Revoke { name, serials } => {
                    self.audit
                        .append(crate::operators::Operators::removed_record(actor, &name))
                        .await?;
                    ops.push(ConfigOp::RevokeOperator { name });
                    revoking.extend(serials);
                }
                OperatorStep::Issue { issued: cert, row } => {
                    self.audit
                        .append(crate::operators::Operators::added_record(actor, &cert))
                        .await?;
                    ops.push(ConfigOp::AddOperatorCert { row });
                    issued.push(*cert);
                }
            }
        }
        let mut to_serve = Vec::new();
        let mut to_remove = Vec::new();
        for step in functions {
            match step {
                FunctionStep::Undeploy {
                    tenant,
                    name,
                    digest,
                    lock,
                } => {
                    self.audit
                        .append(
                            AuditRecord::new(actor, Action::Undeploy, Outcome::Allow)
                                .tenant(&tenant)
                                .function(&name)
                                .digest(digest)
                                .reason(origin.clone()),
                        )
                        .await?;
                    ops.push(ConfigOp::DeleteDeployment {
                        tenant: tenant.to_string(),
                        name: name.to_string(),
                    });
                    to_remove.push((tenant, name, lock));
                }
                FunctionStep::Deploy(prepared) => {
                    let prepared = *prepared;
                    self.audit.append(prepared.allowed.clone()).await?;
                    ops.push(ConfigOp::PutDeployment {
                        row: Box::new(prepared.row.clone()),
                        version: prepared.version.clone(),
                        overlaps: crate::control::routes_overlap,
                    });
                    to_serve.push(prepared);
                }
            }
        }
        let serial_after = if ops.is_empty() {
            state.serial
        } else {
            match self
                .control
                .store()
                .apply_config(Some(state.serial), ops, &crate::clock::now())
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    return self
                        .config_refused(
                            record(Outcome::Error).reason(format!("{origin}; nothing was changed")),
                            e.into(),
                        )
                        .await
                }
            }
        };
        // In force, in the order the pieces depend on each other: the zones (policies are
        // built with them), the tenants' rules and policies, functions taken out, then
        // functions served. A step that fails here is reported in `failed`; the stored
        // state is complete and is what the next start serves.
        let mut failed = Vec::new();
        if let Some(built) = zones_in_force {
            self.control.zones_in_force().replace(Ok(built));
        }
        self.put_in_force(&state.config, &desired).await?;
        if let Err(e) = self.operators.revoked(&revoking) {
            failed.push(format!("operator revocations: {e}"));
        }
        for (tenant, name, _lock) in to_remove {
            if let Err(e) = self
                .control
                .take_function_out_of_force(&tenant, &name)
                .await
            {
                failed.push(format!("function {tenant}/{name}: {e}"));
            }
        }
        for prepared in to_serve {
            let id = format!("{}/{}", prepared.row.tenant, prepared.row.name);
            if let Err(e) = self.control.put_function_in_force(prepared.loaded).await {
                failed.push(format!("function {id}: {e}"));
            }
        }
        {
            let _change = self.control.policy_change().lock().await;
            self.control.refresh_policies(None, None)?;
        }
        Ok(ApplyResult {
            serial_before: state.serial,
            serial_after,
            digest,
            git_commit,
            applied,
            not_applied,
            failed,
            operators: issued,
        })
    }

    /// The operator changes of the apply: a certificate issued (nothing stored yet) for
    /// each operator the directory enrols with a key, every certificate revoked for each
    /// one it re-keys or no longer declares. Refuses an apply that would revoke the
    /// applying operator's own certificate (they would lock themselves out half-way).
    async fn operator_steps(
        &self,
        actor: &str,
        current: &PlatformConfig,
        desired: &PlatformConfig,
        applied: &[Change],
    ) -> Result<Vec<OperatorStep>, ControlError> {
        let mut steps = Vec::new();
        for change in applied {
            let Some(name) = change.object.strip_prefix("operator ") else {
                continue;
            };
            let revokes = matches!(change.kind, ChangeKind::Change | ChangeKind::Remove);
            if revokes && actor == format!("operator:{name}") {
                return Err(ControlError::BadRequest(format!(
                    "the directory would revoke the certificate of `{name}`, who is applying it; \
                     apply with another operator's certificate or the operator token; nothing \
                     was changed"
                )));
            }
            if revokes && current.operators.contains_key(name) {
                // The store's revocation is what every request checks; these serials
                // also go into the CA's in-memory list once the transaction commits.
                let serials = self
                    .operators
                    .list()
                    .await?
                    .into_iter()
                    .filter(|c| c.name == name && c.revoked_at.is_none())
                    .map(|c| c.serial)
                    .collect();
                steps.push(OperatorStep::Revoke {
                    name: name.to_owned(),
                    serials,
                });
            }
            if change.kind == ChangeKind::Remove {
                continue;
            }
            let Some(key) = desired
                .operators
                .get(name)
                .and_then(|o| o.public_key.as_deref())
            else {
                continue;
            };
            let (issued, row) = self
                .operators
                .issue(name, key, crate::operators::DEFAULT_OPERATOR_TTL)
                .map_err(|e| {
                    ControlError::BadRequest(format!("operator `{name}`: {e}; nothing was changed"))
                })?;
            steps.push(OperatorStep::Issue {
                issued: Box::new(issued),
                row,
            });
        }
        Ok(steps)
    }

    /// Every function change of the apply, checked and prepared before anything changes:
    /// the operator must be allowed `deploy` on the function's tenant (and
    /// `permissions.grant` to widen its grants, as `zerofn deploy` would); each new or
    /// changed function goes through the whole deploy path (admission under the tenant's
    /// rules as the directory sets them, zone, routes, policies, compilation) with nothing
    /// stored. Any refusal refuses the whole apply.
    #[allow(clippy::too_many_arguments)]
    async fn prepare_functions(
        &self,
        actor: &str,
        files: &ConfigFiles,
        current: &PlatformConfig,
        desired: &PlatformConfig,
        applied: &[Change],
        may: &(dyn Fn(zerofn_policy::ControlAction, &str) -> bool + Sync),
        zones: Option<std::sync::Arc<crate::zones::Zones>>,
    ) -> Result<Vec<FunctionStep>, ControlError> {
        use zerofn_policy::ControlAction;
        let ids: Vec<(&str, ChangeKind)> = applied
            .iter()
            .filter_map(|c| Some((c.object.strip_prefix("function ")?, c.kind)))
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut sources = zerofn_config::function_files(files)
            .map_err(|e| ControlError::BadRequest(format!("invalid configuration: {e}")))?;
        let route_space = route_space_after(current, desired)?;
        let functions: Vec<(String, String, Vec<String>)> = manifests_after(current, desired)?
            .into_iter()
            .map(|m| {
                (
                    m.tenant.to_string(),
                    m.name.to_string(),
                    m.routes.iter().map(|r| r.as_str().to_owned()).collect(),
                )
            })
            .collect();
        let mut steps = Vec::new();
        for (id, kind) in ids {
            let Some((tenant, name)) = id.split_once('/') else {
                continue;
            };
            if !may(ControlAction::Deploy, tenant) {
                return Err(ControlError::NotAllowed {
                    action: "deploy",
                    tenant: tenant.to_owned(),
                    what: format!("applying function `{id}`"),
                });
            }
            let tn = tenant_name(tenant)?;
            let fname = FunctionName::parse(name)
                .map_err(|e| ControlError::BadRequest(format!("function `{id}`: {e}")))?;
            if kind == ChangeKind::Remove {
                let lock = self.control.lock_function(&tn, &fname).await;
                let Some(digest) = self.control.store().deployed_digest(&tn, &fname).await? else {
                    return Err(ControlError::BadRequest(format!(
                        "function `{id}` is no longer deployed; plan again; nothing was changed"
                    )));
                };
                steps.push(FunctionStep::Undeploy {
                    tenant: tn,
                    name: fname,
                    digest,
                    lock,
                });
                continue;
            }
            let Some(f) = sources.remove(&(tenant.to_owned(), name.to_owned())) else {
                continue;
            };
            let deploy = zerofn_api::Deploy {
                manifest: f.config.manifest,
                component: base64::engine::general_purpose::STANDARD.encode(&f.component),
                bundle: f.bundle,
                attestations: f
                    .attestations
                    .into_iter()
                    .map(|(name, content)| zerofn_api::AttestationFile { name, content })
                    .collect(),
                allow_rollback: None,
            };
            let rules = match desired.tenants.get(tenant) {
                Some(t) => Some(rules_from_config(t)?),
                None => None,
            };
            let basis = crate::control::DeployBasis {
                rules,
                zones: zones.clone(),
                route_space: Some(route_space.clone()),
                functions: Some(functions.clone()),
            };
            let prepared = self
                .control
                .prepare_deploy(
                    actor,
                    super::deploy_request(deploy)?,
                    crate::control::DeployAuthority {
                        grant: may(ControlAction::PermissionsGrant, tenant),
                        rollback: false,
                    },
                    zerofn_store::VersionOrigin::Deploy,
                    &basis,
                )
                .await
                .map_err(|e| {
                    ControlError::BadRequest(format!(
                        "function `{id}` would be refused: {e}; nothing was changed"
                    ))
                })?;
            steps.push(FunctionStep::Deploy(Box::new(prepared)));
        }
        Ok(steps)
    }

    async fn config_refused<T>(
        &self,
        record: AuditRecord,
        error: ControlError,
    ) -> Result<T, ControlError> {
        crate::control::audit_refusal(&self.audit, record, error).await
    }

    /// The running configuration, read between two equal serials (so no change landed
    /// halfway through).
    pub(crate) async fn read_config(&self) -> Result<ConfigState, ControlError> {
        let store = self.control.store();
        for _ in 0..STATE_READ_ATTEMPTS {
            let before = store.config_serial().await?;
            let config = self.read_config_once().await?;
            if store.config_serial().await? == before {
                return Ok(ConfigState {
                    serial: before,
                    config,
                });
            }
        }
        Err(ControlError::Internal(
            "the configuration kept changing while it was read; try again".into(),
        ))
    }

    async fn read_config_once(&self) -> Result<PlatformConfig, ControlError> {
        let store = self.control.store();
        let mut config = PlatformConfig::default();
        let deployments = store.list_deployments().await?;
        for row in store.list_tenants().await? {
            let tenant = tenant_name(&row.name)?;
            let mut t = TenantConfig::default();
            for k in store.tenant_keys(&tenant).await? {
                t.keys.insert(k.key_id, k.public_key_pem);
            }
            let mut routes = store.tenant_routes(&tenant).await?;
            routes.sort();
            t.routes = routes;
            if let Some(l) = store.tenant_limits(&tenant).await? {
                t.limits = Limits {
                    rate_per_second: l.rate_per_second,
                    burst: l.burst,
                    max_concurrency: l.max_concurrency,
                };
            }
            let a = store.admission_settings(&tenant).await?;
            t.admission.policy = a.policy;
            t.admission.severity_threshold = a.severity_threshold;
            t.admission.require_sbom = a.require_sbom;
            for i in store.tenant_identities(&tenant).await? {
                t.identities.insert(
                    i.id,
                    Identity {
                        kind: i.kind,
                        san: i.san,
                        issuer: i.issuer,
                        trusted_root: i.trusted_root,
                    },
                );
            }
            for j in store.jwt_issuers(Some(&tenant)).await? {
                t.jwt_issuers.insert(
                    j.name,
                    JwtIssuer {
                        issuer: j.issuer,
                        audience: j.audience,
                        algorithms: j
                            .algorithms
                            .split(',')
                            .filter(|a| !a.is_empty())
                            .map(str::to_owned)
                            .collect(),
                        leeway_secs: j.leeway_secs,
                        require_jti: j.require_jti,
                        // The fetched document of a URL issuer is state, not configuration.
                        jwks: if j.jwks_url.is_some() {
                            String::new()
                        } else {
                            j.jwks
                        },
                        jwks_url: j.jwks_url,
                    },
                );
            }
            for ca in store.mtls_cas(Some(&tenant)).await? {
                t.mtls_cas.insert(ca.name, ca.pem);
            }
            t.policy = store.tenant_policy(&tenant).await?.map(|p| p.policy);
            for d in deployments.iter().filter(|d| d.tenant == row.name) {
                let Ok(name) = FunctionName::parse(&d.name) else {
                    continue;
                };
                if let Some(manifest) = store.deployed_manifest(&tenant, &name).await? {
                    t.functions.insert(
                        d.name.clone(),
                        FunctionConfig {
                            digest: d.digest.clone(),
                            manifest,
                        },
                    );
                }
            }
            config.tenants.insert(row.name, t);
        }
        let s = store.clone();
        config.control_policy = tokio::task::spawn_blocking(move || s.control_policy_blocking())
            .await
            .map_err(|_| ControlError::Internal("reading the control policy failed".into()))??
            .map(|r| r.policy);
        for row in store.zones().await? {
            config.zones.insert(row.name, row.document);
        }
        // An operator is in the state while they hold a certificate that is neither revoked
        // nor expired; their key is the newest such certificate's (listed oldest first).
        let now = time::OffsetDateTime::now_utc();
        for op in store.list_operator_certs().await? {
            let valid = op.revoked_at.is_none()
                && time::OffsetDateTime::parse(
                    &op.not_after,
                    &time::format_description::well_known::Rfc3339,
                )
                .is_ok_and(|t| t > now);
            if !valid {
                continue;
            }
            let public_key = (!op.public_key_pem.is_empty())
                .then(|| zerofn_config::operator_key("operators", &op.public_key_pem).ok())
                .flatten();
            config
                .operators
                .insert(op.name, zerofn_config::OperatorConfig { public_key });
        }
        Ok(config)
    }

    /// The store changes that take `current` to `desired`, every value checked as the
    /// route that sets it one at a time checks it. Functions, tenant removals and
    /// operators are left out (see [`split_functions`] and the diff's `manual`).
    async fn ops_for(
        &self,
        current: &PlatformConfig,
        desired: &PlatformConfig,
    ) -> Result<Vec<ConfigOp>, ControlError> {
        let mut ops = Vec::new();
        let empty = TenantConfig::default();
        for (name, d) in &desired.tenants {
            let tenant = tenant_name(name)?;
            let creating = !current.tenants.contains_key(name);
            let c = current.tenants.get(name).unwrap_or(&empty);
            let routes = crate::route_space::parse_prefixes(&d.routes)?;
            if creating {
                ops.push(ConfigOp::CreateTenant {
                    tenant: name.clone(),
                    routes,
                });
            } else if c.routes != d.routes {
                ops.push(ConfigOp::SetRoutes {
                    tenant: name.clone(),
                    routes,
                });
            }
            for (id, pem) in &d.keys {
                if !c.keys.contains_key(id) {
                    let key = zerofn_admission::PublicKey::from_pem(pem)
                        .map_err(ControlError::InvalidKey)?;
                    ops.push(ConfigOp::AddKey {
                        tenant: name.clone(),
                        key_id: key.key_id().to_string(),
                        pem: key.to_pem(),
                    });
                }
            }
            for id in c.keys.keys().filter(|id| !d.keys.contains_key(*id)) {
                ops.push(ConfigOp::RemoveKey {
                    tenant: name.clone(),
                    key_id: id.clone(),
                });
            }
            if c.limits != d.limits || creating && d.limits != Limits::default() {
                let req = zerofn_api::SetTenantLimits {
                    rate_per_second: d.limits.rate_per_second,
                    burst: d.limits.burst,
                    max_concurrency: d.limits.max_concurrency,
                };
                crate::tenant_limits::check(&req)?;
                ops.push(ConfigOp::SetLimits {
                    tenant: name.clone(),
                    rate_per_second: d.limits.rate_per_second,
                    burst: d.limits.burst,
                    max_concurrency: d.limits.max_concurrency,
                });
            }
            if c.admission != d.admission {
                if let Some(text) = &d.admission.policy {
                    zerofn_policy::PolicySet::parse(text).map_err(ControlError::Policy)?;
                }
                ops.push(ConfigOp::SetAdmission {
                    tenant: name.clone(),
                    policy: d.admission.policy.clone(),
                    severity_threshold: d.admission.severity_threshold.clone(),
                    require_sbom: d.admission.require_sbom,
                });
            }
            for (id, i) in &d.identities {
                if c.identities.get(id) == Some(i) {
                    continue;
                }
                if c.identities.contains_key(id) {
                    ops.push(ConfigOp::RemoveIdentity {
                        tenant: name.clone(),
                        id: id.clone(),
                    });
                }
                zerofn_admission::TrustedRoot::from_json(i.trusted_root.as_bytes()).map_err(
                    |e| ControlError::BadRequest(format!("trusted root of `{}`: {e}", i.san)),
                )?;
                ops.push(ConfigOp::AddIdentity {
                    tenant: name.clone(),
                    row: TenantIdentityRow {
                        id: id.clone(),
                        kind: i.kind.clone(),
                        san: i.san.clone(),
                        issuer: i.issuer.clone(),
                        trusted_root: i.trusted_root.clone(),
                        added_at: crate::clock::now(),
                    },
                });
            }
            for id in c
                .identities
                .keys()
                .filter(|id| !d.identities.contains_key(*id))
            {
                ops.push(ConfigOp::RemoveIdentity {
                    tenant: name.clone(),
                    id: id.clone(),
                });
            }
            for (n, j) in &d.jwt_issuers {
                if c.jwt_issuers.get(n) == Some(j) {
                    continue;
                }
                let jwks = match &j.jwks_url {
                    Some(_) => None,
                    None => Some(
                        serde_json::from_str(&j.jwks)
                            .map_err(|e| ControlError::BadRequest(format!("JWKS of `{n}`: {e}")))?,
                    ),
                };
                let req = crate::callers::AddJwtIssuer {
                    name: n.clone(),
                    issuer: j.issuer.clone(),
                    audience: j.audience.clone(),
                    jwks,
                    jwks_url: j.jwks_url.clone(),
                    algorithms: Some(j.algorithms.clone()),
                    leeway_secs: Some(j.leeway_secs),
                    require_jti: j.require_jti,
                };
                // A URL is fetched and validated here, as `auth jwt add` does: an apply
                // whose URL does not serve a valid JWKS is refused with the reason.
                let fetched = self
                    .callers
                    .fetch_registered_jwks(&req)
                    .await
                    .map_err(|e| ControlError::BadRequest(format!("JWT issuer `{n}`: {e}")))?;
                let row: JwtIssuerRow =
                    self.callers.check_issuer(&tenant, req, fetched.as_ref())?;
                ops.push(ConfigOp::PutJwtIssuer { row });
            }
            for n in c
                .jwt_issuers
                .keys()
                .filter(|n| !d.jwt_issuers.contains_key(*n))
            {
                ops.push(ConfigOp::RemoveJwtIssuer {
                    tenant: name.clone(),
                    name: n.clone(),
                });
            }
            for (n, pem) in &d.mtls_cas {
                if c.mtls_cas.get(n) == Some(pem) {
                    continue;
                }
                let ca = crate::mtls_callers::check(&crate::mtls_callers::AddMtlsCa {
                    name: n.clone(),
                    ca_pem: pem.clone(),
                })
                .map_err(|e| ControlError::BadRequest(format!("mTLS CA `{n}`: {e}")))?;
                ops.push(ConfigOp::PutMtlsCa {
                    row: zerofn_store::MtlsCaRow {
                        tenant: name.clone(),
                        name: n.clone(),
                        pem: ca.pem().to_owned(),
                        added_at: crate::clock::now(),
                    },
                });
            }
            for n in c.mtls_cas.keys().filter(|n| !d.mtls_cas.contains_key(*n)) {
                ops.push(ConfigOp::RemoveMtlsCa {
                    tenant: name.clone(),
                    name: n.clone(),
                });
            }
            if c.policy != d.policy {
                let set = d
                    .policy
                    .as_deref()
                    .map(zerofn_policy::PolicySet::parse)
                    .transpose()
                    .map_err(ControlError::Policy)?;
                // Validated with every compiled policy, as `zerofn policy set` is.
                self.control
                    .build_policies(None, None, Some((name.as_str(), set.as_ref())))?;
                ops.push(ConfigOp::SetTenantPolicy {
                    tenant: name.clone(),
                    policy: d.policy.clone(),
                });
            }
        }
        if current.control_policy != desired.control_policy {
            if let Some(text) = &desired.control_policy {
                zerofn_policy::ControlPolicy::parse(text).map_err(ControlError::Policy)?;
            }
            ops.push(ConfigOp::SetControlPolicy {
                policy: desired.control_policy.clone(),
            });
        }
        Ok(ops)
    }

    /// After the transaction: the stored configuration into the running services.
    async fn put_in_force(
        &self,
        current: &PlatformConfig,
        desired: &PlatformConfig,
    ) -> Result<(), ControlError> {
        self.control.load_route_space().await?;
        {
            let _change = self.control.policy_change().lock().await;
            self.control.load_tenant_policies().await?;
            self.control.refresh_policies(None, None)?;
        }
        let tenants: BTreeSet<&String> = current
            .tenants
            .keys()
            .chain(desired.tenants.keys())
            .collect();
        for t in tenants {
            let l = desired
                .tenants
                .get(t)
                .map(|t| t.limits.clone())
                .unwrap_or_default();
            self.control.invoke_limits().set_tenant(
                t,
                zerofn_gateway::LimitSpec::new(l.rate_per_second, l.burst, l.max_concurrency),
            );
        }
        self.callers.reload().await?;
        self.mtls.reload().await?;
        self.authz.reload().await?;
        Ok(())
    }
}

/// One operator change of an apply.
enum OperatorStep {
    /// Every certificate of `name` revoked (`serials`: those not revoked yet).
    Revoke { name: String, serials: Vec<String> },
    Issue {
        issued: Box<zerofn_api::IssuedOperator>,
        row: zerofn_store::OperatorCertRow,
    },
}

/// One function change of an apply, checked and ready.
enum FunctionStep {
    Deploy(Box<crate::control::PreparedDeploy>),
    Undeploy {
        tenant: TenantName,
        name: FunctionName,
        digest: String,
        /// Held until the function is out of force.
        lock: tokio::sync::OwnedMutexGuard<()>,
    },
}

/// A tenant's admission rules as the directory sets them.
fn rules_from_config(t: &TenantConfig) -> Result<zerofn_admission::AdmissionRules, ControlError> {
    let keys: Vec<String> = t.keys.values().cloned().collect();
    let identities: Vec<TenantIdentityRow> = t
        .identities
        .iter()
        .map(|(id, i)| TenantIdentityRow {
            id: id.clone(),
            kind: i.kind.clone(),
            san: i.san.clone(),
            issuer: i.issuer.clone(),
            trusted_root: i.trusted_root.clone(),
            added_at: String::new(),
        })
        .collect();
    let signers = crate::admission::signers_of(&keys, &identities)?;
    crate::admission::rules_of(
        signers,
        t.admission.policy.as_deref(),
        t.admission.severity_threshold.as_deref(),
        t.admission.require_sbom,
    )
}

/// The tenants after the apply: the directory's, and the platform's it does not name
/// (`apply` does not delete tenants).
fn tenants_after<'a>(
    current: &'a PlatformConfig,
    desired: &'a PlatformConfig,
) -> impl Iterator<Item = (&'a String, &'a TenantConfig)> {
    desired.tenants.iter().chain(
        current
            .tenants
            .iter()
            .filter(|(name, _)| !desired.tenants.contains_key(*name)),
    )
}

/// Every tenant's route prefixes after the apply, `(prefix, tenant)`.
fn route_space_after(
    current: &PlatformConfig,
    desired: &PlatformConfig,
) -> Result<Vec<(String, String)>, ControlError> {
    let mut rows = Vec::new();
    for (name, t) in tenants_after(current, desired) {
        for prefix in crate::route_space::parse_prefixes(&t.routes)? {
            rows.push((prefix, name.clone()));
        }
    }
    Ok(rows)
}

/// Every function's manifest after the apply.
fn manifests_after(
    current: &PlatformConfig,
    desired: &PlatformConfig,
) -> Result<Vec<zerofn_admission::Manifest>, ControlError> {
    let mut out = Vec::new();
    for (tenant, t) in tenants_after(current, desired) {
        for (name, f) in &t.functions {
            let m = zerofn_admission::Manifest::from_toml(&f.manifest).map_err(|e| {
                ControlError::BadRequest(format!("function `{tenant}/{name}`: {e}"))
            })?;
            out.push(m);
        }
    }
    Ok(out)
}

/// What the apply's zones are checked against: its tenants and functions.
fn zone_basis(
    current: &PlatformConfig,
    desired: &PlatformConfig,
) -> Result<crate::zones::ZoneBasis, ControlError> {
    Ok(crate::zones::ZoneBasis {
        tenants: tenants_after(current, desired)
            .map(|(n, _)| n.clone())
            .collect(),
        manifests: manifests_after(current, desired)?,
    })
}

fn kind_word(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Create => "create",
        ChangeKind::Change => "change",
        ChangeKind::Remove => "remove",
    }
}

/// The tenant an object names (`tenant acme …`, `function acme/…`).
fn tenant_of(object: &str) -> Option<&str> {
    if let Some(rest) = object.strip_prefix("tenant ") {
        return rest.split(' ').next();
    }
    object.strip_prefix("function ")?.split('/').next()
}

/// Whether `--locked-config` refuses this operator route: every change of configuration
/// except `apply` itself. Reads, audit checkpoints, admission explain (it changes nothing)
/// and SVID revocation (an emergency response) stay open. Deploy, rollback and undeploy
/// are refused: `apply` deploys the directory's functions through admission itself.
pub(super) fn locked_refuses(
    method: &http::Method,
    path: &str,
    action: zerofn_policy::ControlAction,
) -> bool {
    use zerofn_policy::ControlAction as A;
    if method == http::Method::GET {
        return false;
    }
    match action {
        // Pruning old audit records is retention, not configuration.
        A::AuditRead | A::AuditManage | A::ConfigApply => false,
        A::Deploy if path == "/v1/admission/explain" => false,
        A::TenantManage if path.ends_with("/svid/revoke") => false,
        // Revoking an operator is an emergency action that must not wait for a review
        // (it shows as drift; remove the operator from the directory too, or the next
        // apply enrols them again).
        A::OperatorManage if method == http::Method::DELETE => false,
        // Queues and their messages are the tenants' data, not security configuration
        // (a directory does not declare them); which function may consume them is in
        // the functions' signed manifests.
        A::TenantManage
            if path.starts_with("/v1/tenants/") && path.split('/').nth(4) == Some("queues") =>
        {
            false
        }
        A::TenantRead
        | A::TenantManage
        | A::PolicyManage
        | A::OperatorManage
        | A::Deploy
        | A::DeployRollback
        | A::PermissionsGrant => true,
    }
}

/// Apply the directory `dir` at start-up (`zerofn up --config-dir`), as the platform
/// itself; returns how many changes were made.
pub(crate) async fn apply_config_dir(
    api: &Api,
    dir: &std::path::Path,
) -> Result<usize, ControlError> {
    let files = ConfigFiles::read(dir)
        .map_err(|e| ControlError::BadRequest(format!("configuration directory: {e}")))?;
    let git_commit = files.git_commit.clone();
    let req = ApplyRequest {
        files: files
            .into_map()
            .into_iter()
            .map(|(p, b)| (p, base64::engine::general_purpose::STANDARD.encode(b)))
            .collect(),
        planned_serial: None,
        git_commit,
    };
    // The platform's own apply, as the demo's deploys are: every decision allowed.
    let result = api.apply_request("platform", req, &|_, _| true).await?;
    Ok(result.applied.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerofn_policy::ControlAction as A;

    #[test]
    fn a_locked_platform_refuses_configuration_changes_but_not_reads_or_apply() {
        use http::Method;
        for (method, path, action, refused) in [
            (Method::POST, "/v1/tenants", A::TenantManage, true),
            (
                Method::PUT,
                "/v1/tenants/acme/policy",
                A::PolicyManage,
                true,
            ),
            (Method::PUT, "/v1/control-policy", A::PolicyManage, true),
            (Method::POST, "/v1/operators", A::OperatorManage, true),
            (
                Method::PUT,
                "/v1/tenants/acme/limits",
                A::TenantManage,
                true,
            ),
            (Method::POST, "/v1/config/apply", A::ConfigApply, false),
            (Method::POST, "/v1/deployments", A::Deploy, true),
            (Method::DELETE, "/v1/functions/acme/f", A::Deploy, true),
            (
                Method::POST,
                "/v1/functions/acme/f/rollback",
                A::DeployRollback,
                true,
            ),
            (Method::POST, "/v1/admission/explain", A::Deploy, false),
            (Method::GET, "/v1/config/state", A::PolicyManage, false),
            (Method::GET, "/v1/tenants", A::TenantRead, false),
            (Method::POST, "/v1/audit/checkpoint", A::AuditRead, false),
            (Method::POST, "/v1/audit/prune", A::AuditManage, false),
            (
                Method::POST,
                "/v1/tenants/{tenant}/queues/{queue}/messages",
                A::TenantManage,
                false,
            ),
            (
                Method::POST,
                "/v1/tenants/acme/queues/orders/purge",
                A::TenantManage,
                false,
            ),
            (Method::PUT, "/v1/zones/payments", A::PolicyManage, true),
            (
                Method::POST,
                "/v1/functions/acme/f/svid/revoke",
                A::TenantManage,
                false,
            ),
        ] {
            assert_eq!(
                locked_refuses(&method, path, action),
                refused,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn objects_name_their_tenant() {
        assert_eq!(tenant_of("tenant acme key sha256:ab"), Some("acme"));
        assert_eq!(tenant_of("function acme/hello"), Some("acme"));
        assert_eq!(tenant_of("control policy"), None);
    }
}
