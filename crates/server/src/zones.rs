//! Trust zones in force: the platform's [`ZoneSet`], its documents, and the Cedar policies
//! it compiles to (joined to each zoned tenant's runtime policies by
//! [`ControlPlane::build_policies`]). A zone change is checked whole (the document, the
//! set it makes, the tenants it names, every deployed function's egress against the new
//! ceilings), audited, stored and then swapped in together with the rebuilt policies, so
//! running functions are decided by the new zones from the next decision on.
//!
//! Deploys ask [`ControlPlane::check_zone_deploy`] before admission (egress ceiling) and
//! [`ControlPlane::check_zone_signer`] after it (the zone's signers).
//!
//! # Trust
//! Trusts `zerofn-manifest` to parse documents and compile them; trusts the store to keep
//! what it was given. Stored documents are parsed again at start: a set that no longer
//! parses makes every runtime decision a denial (fail closed) until it is fixed.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use zerofn_admission::{Manifest, SignerIdentity};
use zerofn_audit::{Action, AuditRecord, Outcome};
use zerofn_manifest::zone::{Zone, ZoneName, ZoneSet, MAX_ZONES};
use zerofn_policy::PolicySet;
use zerofn_store::StoreError;

use crate::control::{ControlError, ControlPlane};

/// The zones, their documents and compiled policies, as one value swapped whole.
#[derive(Clone, Default)]
pub(crate) struct Zones {
    pub(crate) set: ZoneSet,
    /// Each zone's document as submitted and when it was last set.
    documents: BTreeMap<String, (String, String)>,
    /// Each zoned tenant's zone policies.
    pub(crate) compiled: BTreeMap<String, PolicySet>,
}

impl Zones {
    /// Compiles `set` (its text always validates; an error here is a bug, refused whole).
    fn build(
        set: ZoneSet,
        documents: BTreeMap<String, (String, String)>,
    ) -> Result<Zones, ControlError> {
        let mut compiled = BTreeMap::new();
        for (tenant, text) in set.compile() {
            compiled.insert(
                tenant,
                PolicySet::parse(&text).map_err(ControlError::Policy)?,
            );
        }
        Ok(Zones {
            set,
            documents,
            compiled,
        })
    }

    /// The zone policies of `tenant`'s decisions, as text (for `zerofn policy show`).
    pub(crate) fn policy_text(&self, tenant: &str) -> Option<String> {
        self.compiled.get(tenant).map(|s| s.source().to_owned())
    }
}

/// The zones in force, or why the stored ones could not be loaded (then every policy
/// build fails, which denies every runtime request).
pub(crate) struct ZonesInForce(RwLock<Result<Arc<Zones>, String>>);

impl Default for ZonesInForce {
    fn default() -> Self {
        ZonesInForce(RwLock::new(Ok(Arc::new(Zones::default()))))
    }
}

impl ZonesInForce {
    pub(crate) fn current(&self) -> Result<Arc<Zones>, ControlError> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .map_err(|e| ControlError::Internal(format!("the stored zones do not load: {e}")))
    }

    pub(crate) fn replace(&self, zones: Result<Arc<Zones>, String>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = zones;
    }
}

/// What a zone change is checked against when it is not the platform in force: the
/// tenants and functions a configuration apply is about to make.
pub(crate) struct ZoneBasis {
    pub(crate) tenants: Vec<String>,
    pub(crate) manifests: Vec<Manifest>,
}

/// A zone change that passed every check, with nothing stored: the zones and policies
/// to put in force, the rows to store, and the audit records of the change.
pub(crate) struct PreparedZones {
    pub(crate) built: Arc<Zones>,
    pub(crate) policies: zerofn_policy::RuntimePolicies,
    pub(crate) rows: Vec<(String, String, Vec<String>)>,
    pub(crate) deleted: Vec<String>,
    pub(crate) records: Vec<AuditRecord>,
}

impl PreparedZones {
    /// The zones set, as the API shows them.
    fn answer(&self) -> Vec<serde_json::Value> {
        self.rows
            .iter()
            .filter_map(|(name, _, _)| {
                let name = ZoneName::parse(name).ok()?;
                self.built.set.get(&name).map(Zone::to_json)
            })
            .collect()
    }
}

/// How a signer identity is written in a zone's `signers`: the key id, or the
/// certificate's SAN.
fn signer_name(identity: &SignerIdentity) -> String {
    match identity {
        SignerIdentity::Key(key) => key.to_string(),
        SignerIdentity::Certificate { san, .. } => san.clone(),
    }
}

impl ControlPlane {
    /// Load the stored zones (start-up), before the policies are first built.
    pub(crate) async fn load_zones(&self) -> Result<(), ControlError> {
        let rows = self.store().zones().await?;
        let mut documents = BTreeMap::new();
        let mut zones = Vec::new();
        let mut failure = None;
        for row in rows {
            match Zone::from_toml(&row.document) {
                Ok(z) => zones.push(z),
                Err(e) => failure = Some(format!("zone `{}`: {e}", row.name)),
            }
            documents.insert(row.name, (row.document, row.updated_at));
        }
        let loaded = match failure {
            Some(f) => Err(f),
            None => ZoneSet::new(zones)
                .map_err(|e| e.to_string())
                .and_then(|set| Zones::build(set, documents).map_err(|e| e.to_string()))
                .map(Arc::new),
        };
        if let Err(error) = &loaded {
            tracing::error!(%error, "the stored zones do not load; every runtime request is denied");
        }
        self.zones_in_force().replace(loaded);
        Ok(())
    }

    /// Create or replace a zone from its TOML document, for the route naming it
    /// (`expected`): see [`ControlPlane::set_zones`].
    pub async fn set_zone(
        &self,
        actor: &str,
        expected: &str,
        document: &str,
    ) -> Result<serde_json::Value, ControlError> {
        if let Ok(zone) = Zone::from_toml(document) {
            if zone.name.as_str() != expected {
                let e = ControlError::BadRequest(format!(
                    "the document's `name` is `{}` but the request is for zone `{}`",
                    zone.name,
                    zerofn_types::excerpt(expected)
                ));
                let record = AuditRecord::new(actor, Action::ZoneSet, Outcome::Deny)
                    .detail(serde_json::json!({ "zone": zerofn_types::excerpt(expected) }));
                return self.refused(record, e).await;
            }
        }
        let mut set = self.set_zones(actor, &[document.to_owned()], false).await?;
        Ok(set.pop().unwrap_or_default())
    }

    /// Create or replace the zones `documents` describe, together (so two zones that name
    /// each other can be made in one step), or with `replace_all` make them the whole set
    /// (every other zone is deleted: a configuration directory's `zones/*.toml` applied
    /// whole). All or nothing, checked whole first: each document, the set they make with
    /// the zones kept, that their tenants exist, and that every deployed function of a
    /// zoned tenant keeps its `[egress]` within its zone's new ceiling (refused naming each
    /// function and entry that would not). Each zone set is audited as `zone.set` (each
    /// deleted one as `zone.delete`), then all are stored in one transaction and swapped
    /// in with the rebuilt policies.
    pub async fn set_zones(
        &self,
        actor: &str,
        documents: &[String],
        replace_all: bool,
    ) -> Result<Vec<serde_json::Value>, ControlError> {
        let _change = self.policy_change().lock().await;
        let prepared = self
            .prepare_zones(actor, documents, replace_all, None)
            .await?;
        let answer = prepared.answer();
        let PreparedZones {
            built,
            policies,
            rows,
            deleted,
            records,
        } = prepared;
        for record in records {
            self.audit().append(record).await?;
        }
        self.store()
            .set_zones(rows, deleted, &crate::clock::now())
            .await?;
        self.zones_in_force().replace(Ok(built));
        self.policies().replace(policies);
        Ok(answer)
    }

    /// Every check of [`ControlPlane::set_zones`], with nothing stored: the zones to store
    /// and put in force, and their audit records. Refusals are audited here. Checked
    /// against the platform in force, or against `basis` (the tenants and functions a
    /// configuration apply is about to make).
    pub(crate) async fn prepare_zones(
        &self,
        actor: &str,
        documents: &[String],
        replace_all: bool,
        basis: Option<&ZoneBasis>,
    ) -> Result<PreparedZones, ControlError> {
        let record = |outcome, zones: &[String]| {
            AuditRecord::new(actor, Action::ZoneSet, outcome)
                .detail(serde_json::json!({ "zones": zones }))
        };
        if documents.len() > MAX_ZONES {
            let e = ControlError::BadRequest(format!(
                "{} zone documents, more than the {MAX_ZONES} zones a platform may have",
                documents.len()
            ));
            return self.refused(record(Outcome::Deny, &[]), e).await;
        }
        let mut zones = Vec::with_capacity(documents.len());
        for (n, document) in documents.iter().enumerate() {
            match Zone::from_toml(document) {
                Ok(z) => zones.push(z),
                Err(e) => {
                    let e = if documents.len() > 1 {
                        ControlError::BadRequest(format!(
                            "invalid zone, nothing changed: document {}: {e}",
                            n + 1
                        ))
                    } else {
                        e.into()
                    };
                    return self.refused(record(Outcome::Deny, &[]), e).await;
                }
            }
        }
        let names: Vec<String> = zones.iter().map(|z| z.name.to_string()).collect();
        let refuse = |zone: &Zone, problem: String| ControlError::ZoneConflict {
            zone: zone.name.to_string(),
            problem,
        };
        // Stored zones that no longer load deny every runtime request; replacing the
        // whole set is the way out, so it starts from nothing instead of refusing.
        let current = match self.zones_in_force().current() {
            Ok(current) => current,
            Err(_) if replace_all => Arc::new(Zones::default()),
            Err(e) => return Err(e),
        };
        let tenants: Vec<String> = match basis {
            Some(b) => b.tenants.clone(),
            None => self
                .store()
                .list_tenants()
                .await?
                .into_iter()
                .map(|r| r.name)
                .collect(),
        };
        for zone in &zones {
            if let Some(unknown) = zone
                .tenants
                .iter()
                .find(|t| !tenants.iter().any(|r| r == t.as_str()))
            {
                let e = refuse(
                    zone,
                    format!(
                        "`tenants` names tenant `{unknown}`, which does not exist; create it first"
                    ),
                );
                return self.refused(record(Outcome::Deny, &names), e).await;
            }
        }
        let kept: Vec<Zone> = if replace_all {
            Vec::new()
        } else {
            current
                .set
                .zones()
                .filter(|z| !zones.iter().any(|n| n.name == z.name))
                .cloned()
                .collect()
        };
        let set = match ZoneSet::new(kept.into_iter().chain(zones.iter().cloned())) {
            Ok(set) => set,
            Err(e) => return self.refused(record(Outcome::Deny, &names), e.into()).await,
        };
        for zone in &zones {
            if let Some(problem) = self.egress_outside(&set, zone, basis) {
                return self
                    .refused(record(Outcome::Deny, &names), refuse(zone, problem))
                    .await;
            }
        }
        let now = crate::clock::now();
        let mut stored = if replace_all {
            BTreeMap::new()
        } else {
            current.documents.clone()
        };
        for (zone, document) in zones.iter().zip(documents) {
            stored.insert(zone.name.to_string(), (document.clone(), now.clone()));
        }
        // What is stored, not what loaded: with `replace_all` every stored zone not among
        // the documents goes, including one that no longer parses.
        let deleted: Vec<String> = self
            .store()
            .zones()
            .await?
            .into_iter()
            .map(|row| row.name)
            .filter(|name| ZoneName::parse(name).map_or(true, |n| set.get(&n).is_none()))
            .collect();
        let built_zones = Zones::build(set, stored)?;
        let built = match self.build_policies_with_zones(None, None, None, &built_zones) {
            Ok(b) => b,
            Err(e) => return self.refused(record(Outcome::Deny, &names), e).await,
        };
        let mut records = Vec::new();
        for zone in &zones {
            records.push(
                    AuditRecord::new(actor, Action::ZoneSet, Outcome::Allow)
                        .detail(serde_json::json!({ "zone": zone.name.as_str() }))
                        .reason(format!(
                            "zone {}: tenants [{}], calls [{}], called_from [{}], {} egress entries, {} signers",
                            zone.name,
                            join(zone.tenants.iter().map(|t| t.as_str())),
                            join(zone.calls.iter().map(ZoneName::as_str)),
                            join(zone.called_from.iter().map(ZoneName::as_str)),
                            zone.egress.len(),
                            zone.signers.len(),
                        )),
            );
        }
        for name in &deleted {
            records.push(
                AuditRecord::new(actor, Action::ZoneDelete, Outcome::Allow)
                    .detail(serde_json::json!({ "zone": name }))
                    .reason(format!("zone {name} deleted: not among the zones applied")),
            );
        }
        let rows = zones
            .iter()
            .zip(documents)
            .map(|(z, d)| {
                (
                    z.name.to_string(),
                    d.clone(),
                    z.tenants.iter().map(ToString::to_string).collect(),
                )
            })
            .collect();
        Ok(PreparedZones {
            built: Arc::new(built_zones),
            policies: built,
            rows,
            deleted,
            records,
        })
    }

    /// Delete a zone: refused while another zone names it in `calls` or `called_from`.
    /// Its tenants are then in no zone.
    pub async fn delete_zone(&self, actor: &str, name: &str) -> Result<(), ControlError> {
        let record = |outcome| {
            AuditRecord::new(actor, Action::ZoneDelete, outcome)
                .detail(serde_json::json!({ "zone": name }))
        };
        let _change = self.policy_change().lock().await;
        let current = self.zones_in_force().current()?;
        let Some(zone) = ZoneName::parse(name)
            .ok()
            .and_then(|n| current.set.get(&n).cloned())
        else {
            let e = StoreError::NoSuchZone(zerofn_types::excerpt(name)).into();
            return self.refused(record(Outcome::Deny), e).await;
        };
        let naming: Vec<String> = current
            .set
            .zones()
            .filter(|z| {
                z.name != zone.name
                    && (z.calls.contains(&zone.name) || z.called_from.contains(&zone.name))
            })
            .map(|z| format!("`{}`", z.name))
            .collect();
        if !naming.is_empty() {
            let e = ControlError::ZoneConflict {
                zone: name.to_owned(),
                problem: format!(
                    "zone {} names it in `calls` or `called_from`; remove it there first",
                    naming.join(", ")
                ),
            };
            return self.refused(record(Outcome::Deny), e).await;
        }
        let set = ZoneSet::new(current.set.zones().filter(|z| z.name != zone.name).cloned())?;
        let mut documents = current.documents.clone();
        documents.remove(name);
        let zones = Zones::build(set, documents)?;
        let built = match self.build_policies_with_zones(None, None, None, &zones) {
            Ok(b) => b,
            Err(e) => return self.refused(record(Outcome::Deny), e).await,
        };
        self.audit()
            .append(record(Outcome::Allow).reason(format!(
                "zone {name} deleted; tenants [{}] are in no zone",
                join(zone.tenants.iter().map(|t| t.as_str()))
            )))
            .await?;
        self.store().delete_zone(name).await?;
        self.zones_in_force().replace(Ok(Arc::new(zones)));
        self.policies().replace(built);
        Ok(())
    }

    /// Every zone, as the API shows it.
    pub async fn list_zones(&self) -> Result<Vec<serde_json::Value>, ControlError> {
        let current = self.zones_in_force().current()?;
        Ok(current
            .set
            .zones()
            .map(|z| self.zone_answer(&current, z))
            .collect())
    }

    /// One zone, with its document and compiled policies.
    pub async fn zone(&self, name: &str) -> Result<serde_json::Value, ControlError> {
        let current = self.zones_in_force().current()?;
        let zone = ZoneName::parse(name)
            .ok()
            .and_then(|n| current.set.get(&n))
            .ok_or_else(|| StoreError::NoSuchZone(zerofn_types::excerpt(name)))?;
        let mut answer = self.zone_answer(&current, zone);
        let policies: BTreeMap<&str, String> = zone
            .tenants
            .iter()
            .filter_map(|t| Some((t.as_str(), current.policy_text(t.as_str())?)))
            .collect();
        if let Some(obj) = answer.as_object_mut() {
            obj.insert("policies".to_owned(), serde_json::json!(policies));
        }
        Ok(answer)
    }

    fn zone_answer(&self, current: &Zones, zone: &Zone) -> serde_json::Value {
        let mut v = zone.to_json();
        if let (Some(obj), Some((document, updated_at))) =
            (v.as_object_mut(), current.documents.get(zone.name.as_str()))
        {
            obj.insert("document".to_owned(), serde_json::json!(document));
            obj.insert("updated_at".to_owned(), serde_json::json!(updated_at));
        }
        v
    }

    /// The zone policies that take part in `tenant`'s decisions, if it is in a zone.
    pub(crate) fn zone_policy_text(&self, tenant: &str) -> Option<String> {
        self.zones_in_force()
            .current()
            .ok()
            .and_then(|z| z.policy_text(tenant))
    }

    /// The served functions of `zone`'s tenants whose `[egress]` entries `zone`'s
    /// ceiling in `set` does not cover, as one message; `None` when all fit.
    fn egress_outside(
        &self,
        set: &ZoneSet,
        zone: &Zone,
        basis: Option<&ZoneBasis>,
    ) -> Option<String> {
        let table = self.routes().snapshot();
        let manifests: Vec<&Manifest> = match basis {
            Some(b) => b.manifests.iter().collect(),
            None => table.functions().map(|f| f.artifact().manifest()).collect(),
        };
        let mut outside = Vec::new();
        for m in manifests {
            if set
                .zone_of(m.tenant.as_str())
                .is_none_or(|z| z.name != zone.name)
            {
                continue;
            }
            for rule in zone.uncovered(&m.permissions.egress) {
                outside.push(format!("{}/{} (`{}`)", m.tenant, m.name, rule.url()));
            }
        }
        outside.sort();
        (!outside.is_empty()).then(|| {
            format!(
                "deployed functions have `[egress]` entries outside the new `egress` ceiling: {}; widen the ceiling or deploy them without those entries first",
                outside.join(", ")
            )
        })
    }

    /// A deploy's `[egress]` entries must lie within its tenant's zone's ceiling.
    /// Against `current`: the zones in force, or an apply's.
    pub(crate) fn check_zone_deploy(
        &self,
        manifest: &Manifest,
        current: &Zones,
    ) -> Result<(), ControlError> {
        let Some(zone) = current.set.zone_of(manifest.tenant.as_str()) else {
            return Ok(());
        };
        let outside: Vec<String> = zone
            .uncovered(&manifest.permissions.egress)
            .iter()
            .map(|r| format!("`{}`", r.url()))
            .collect();
        if outside.is_empty() {
            return Ok(());
        }
        Err(ControlError::ZoneRefused {
            zone: zone.name.to_string(),
            problem: format!(
                "`[egress] allow` entry {} is outside the zone's egress ceiling; ask for it to be added to the zone's `egress` or remove it",
                outside.join(", ")
            ),
        })
    }

    /// Code deployed into a zone that lists `signers` must be signed by one of them.
    pub(crate) fn check_zone_signer(
        &self,
        tenant: &str,
        identity: &SignerIdentity,
        current: &Zones,
    ) -> Result<(), ControlError> {
        let Some(zone) = current.set.zone_of(tenant) else {
            return Ok(());
        };
        let signer = signer_name(identity);
        if zone.admits_signer(&signer) {
            return Ok(());
        }
        Err(ControlError::ZoneRefused {
            zone: zone.name.to_string(),
            problem: format!(
                "signer `{}` is not one of the zone's `signers`; sign with one of them",
                zerofn_types::excerpt(&signer)
            ),
        })
    }
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}
