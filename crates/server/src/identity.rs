//! Workload identities of deployed functions: one SPIFFE ID and one
//! rotating X.509-SVID per function, issued by the trust domain's CA kept in
//! the data directory.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use zerofn_identity::{
    CertificateAuthority, IdentityError, JwtSvid, SpiffeId, SvidRefusal, SvidRotator, TrustDomain,
    VerifiedSpiffeId, X509Svid,
};
use zerofn_types::{FunctionName, TenantName};

type Key = (String, String);
/// A function's rotator and the task that drives it.
type Rotation = (Arc<SvidRotator>, JoinHandle<()>);

/// The CA and the rotator of every served function.
pub struct Identities {
    ca: Arc<CertificateAuthority>,
    ttl: Duration,
    shutdown: watch::Receiver<bool>,
    rotators: Mutex<HashMap<Key, Rotation>>,
    /// Verifies the functions' SVIDs on every capability call.
    verifier: zerofn_identity::SvidVerifier,
}

impl Identities {
    /// Load (or create on first start) the CA under `dir`.
    pub(crate) fn open(
        dir: &Path,
        trust_domain: &TrustDomain,
        ttl: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Identities, IdentityError> {
        let ca = Arc::new(CertificateAuthority::load_or_create(dir, trust_domain)?);
        Ok(Identities {
            verifier: zerofn_identity::SvidVerifier::new(ca.clone()),
            ca,
            ttl,
            shutdown,
            rotators: Mutex::new(HashMap::new()),
        })
    }

    /// The trust domain's CA (operators' certificates, the control API's TLS).
    pub(crate) fn ca(&self) -> &Arc<CertificateAuthority> {
        &self.ca
    }

    /// The trust bundle (CA certificate, PEM); public.
    pub fn bundle_pem(&self) -> &str {
        self.ca.trust_bundle_pem()
    }

    /// The JWT authorities (JWKS) of the trust domain; public.
    pub fn jwt_bundle(&self) -> serde_json::Value {
        self.ca.jwt_bundle()
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        self.ca.trust_domain()
    }

    /// Give a function its identity (idempotent): issue its first SVID now
    /// and keep renewing it at half its lifetime.
    pub(crate) fn ensure(
        &self,
        tenant: &TenantName,
        name: &FunctionName,
    ) -> Result<SpiffeId, IdentityError> {
        let key = (tenant.to_string(), name.to_string());
        let mut map = self.rotators.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((rotator, _)) = map.get(&key) {
            return Ok(rotator.spiffe_id().clone());
        }
        let id = SpiffeId::for_function(self.ca.trust_domain(), tenant.as_str(), name.as_str())?;
        let rotator = SvidRotator::new(self.ca.clone(), id.clone(), self.ttl)?;
        let task = tokio::spawn(rotator.clone().run(self.shutdown.clone()));
        map.insert(key, (rotator, task));
        Ok(id)
    }

    /// Stop renewing a function's SVID and revoke the current one.
    /// Returns the revoked serial and expiry, for the caller to persist.
    pub(crate) fn remove(&self, tenant: &TenantName, name: &FunctionName) -> Option<(String, i64)> {
        let key = (tenant.to_string(), name.to_string());
        let removed = self
            .rotators
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
        removed.map(|(rotator, task)| {
            task.abort();
            let svid = rotator.current();
            self.ca.revocations().revoke(svid.serial().clone());
            (
                svid.serial_hex().to_owned(),
                svid.not_after().unix_timestamp(),
            )
        })
    }

    /// Revoke the function's current SVID at once (it keeps being
    /// renewed: the next rotation issues a new serial). Returns the
    /// revoked serial and its expiry, for the caller to persist.
    pub(crate) fn revoke_current(
        &self,
        tenant: &TenantName,
        name: &FunctionName,
    ) -> Option<(String, i64)> {
        let svid = self.current(tenant, name)?;
        self.ca.revocations().revoke(svid.serial().clone());
        Some((
            svid.serial_hex().to_owned(),
            svid.not_after().unix_timestamp(),
        ))
    }

    /// Load persisted revocations (start-up).
    pub(crate) fn load_revoked(&self, serials: &[(String, i64)]) {
        let parsed = serials
            .iter()
            .filter_map(|(s, _)| zerofn_identity::SerialNumber::parse(s).ok());
        self.ca.revocations().load_revoked(parsed);
    }

    /// Verify the function's current SVID as any peer would: chain to
    /// the trust bundle, validity now, not revoked. Returns its SPIFFE ID.
    pub fn verify_current(
        &self,
        tenant: &TenantName,
        name: &FunctionName,
    ) -> Result<VerifiedSpiffeId, SvidRefusal> {
        let svid = self
            .current(tenant, name)
            .ok_or_else(|| SvidRefusal::NotServed {
                workload: format!("{tenant}/{name}"),
            })?;
        self.verifier.verify(&svid, time::OffsetDateTime::now_utc())
    }

    /// When the CA's certificate expires, and each served function's current X.509-SVID
    /// (tenant, function, Unix seconds): the certificate-expiry gauges of the metrics.
    pub(crate) fn expiries(&self) -> (i64, Vec<(String, String, i64)>) {
        let svids = self
            .rotators
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|((tenant, name), (rotator, _))| {
                (
                    tenant.clone(),
                    name.clone(),
                    rotator.current().not_after().unix_timestamp(),
                )
            })
            .collect();
        (self.ca.not_after().unix_timestamp(), svids)
    }

    /// The function's current X.509-SVID, if it is served.
    pub fn current(&self, tenant: &TenantName, name: &FunctionName) -> Option<Arc<X509Svid>> {
        let key = (tenant.to_string(), name.to_string());
        self.rotators
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .map(|(r, _)| r.current())
    }
}

impl zerofn_gateway::WorkloadIdentity for Identities {
    fn verify(
        &self,
        tenant: &TenantName,
        name: &FunctionName,
    ) -> Result<VerifiedSpiffeId, SvidRefusal> {
        self.verify_current(tenant, name)
    }

    fn jwt_svid(
        &self,
        tenant: &TenantName,
        name: &FunctionName,
        audience: &str,
    ) -> Result<JwtSvid, SvidRefusal> {
        // Only a function holding a valid X.509-SVID gets a JWT-SVID, and
        // never one that outlives it.
        let verified = self.verify_current(tenant, name)?;
        let ttl = self.ttl.min(Duration::from_secs(300));
        Ok(self.ca.issue_jwt_svid(verified.id(), &[audience], ttl)?)
    }

    fn spiffe_id(&self, tenant: &TenantName, name: &FunctionName) -> Option<String> {
        self.current(tenant, name)
            .map(|svid| svid.spiffe_id().to_string())
    }
}
