//! The platform's security configuration as one value: what a directory declares and what
//! a running platform holds have the same shape, so a plan is a comparison of two values.
//!
//! Every collection is a `BTreeMap` (or a sorted `Vec`), so two equal configurations
//! serialize alike and a plan lists its changes in a stable order.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The whole configuration, with the state serial of the platform it was read from
/// (`0` for a directory).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    pub tenants: BTreeMap<String, TenantConfig>,
    /// The control policy (`control.cedar`); `None`: the platform's default.
    pub control_policy: Option<String>,
    /// Operators by name (`operators/<name>.toml`).
    pub operators: BTreeMap<String, OperatorConfig>,
    /// Trust zones by name (`zones/<name>.toml`): each zone's document as written (the
    /// platform keeps it as submitted). Two documents that parse to the same zone are the
    /// same configuration (see [`crate::diff`]).
    #[serde(default)]
    pub zones: BTreeMap<String, String>,
}

/// One tenant (`tenants/<name>/`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Trusted signing keys: key id (`sha256:…` of the public key) -> PEM.
    pub keys: BTreeMap<String, String>,
    /// Route prefixes the tenant owns, sorted.
    pub routes: Vec<String>,
    pub limits: Limits,
    pub admission: Admission,
    /// Keyless signers by id (derived from kind, identity and issuer, as the API does).
    pub identities: BTreeMap<String, Identity>,
    /// JWT issuers by name.
    pub jwt_issuers: BTreeMap<String, JwtIssuer>,
    /// CAs of mTLS callers (`mtls:<name>`) by name: their PEM CA certificates, as
    /// registered. Written only when there are some, so older states read the same.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mtls_cas: BTreeMap<String, String>,
    /// The tenant's hand-written runtime policy (`policies/*.cedar`, in name order).
    pub policy: Option<String>,
    /// Deployed functions by name.
    pub functions: BTreeMap<String, FunctionConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub rate_per_second: Option<u32>,
    pub burst: Option<u32>,
    pub max_concurrency: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admission {
    /// Cedar admission policy text; `None`: the platform default (admit what verifies).
    pub policy: Option<String>,
    pub severity_threshold: Option<String>,
    pub require_sbom: bool,
}

/// A keyless signer: a certificate identity, its OIDC issuer and the trusted root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// `exact` or `regexp`.
    pub kind: String,
    pub san: String,
    pub issuer: String,
    /// The Sigstore `trusted_root.json` text.
    pub trusted_root: String,
}

/// A JWT issuer whose tokens may call the tenant's functions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtIssuer {
    pub issuer: String,
    pub audience: String,
    /// JOSE algorithm names, in the order given.
    pub algorithms: Vec<String>,
    pub leeway_secs: u64,
    /// Each token's `jti` is accepted once (`--require-jti`). Written only
    /// when set, so directories from before the option read the same.
    #[serde(default, skip_serializing_if = "is_false")]
    pub require_jti: bool,
    /// The JWKS document (public keys only); empty for an issuer whose keys are fetched
    /// from `jwks_url` (the fetched document is the platform's state, not configuration).
    pub jwks: String,
    /// Where the platform fetches the keys (`https://` only). Written only when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
}

/// A deployed function: its signed component (by digest) and manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionConfig {
    /// `sha256:<hex>` of the component the deployer signed.
    pub digest: String,
    /// The manifest's TOML text.
    pub manifest: String,
}

/// An operator who may hold a control-API certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// The operator's P-256 public key (PEM, normalised). In the directory: `apply` issues
    /// the operator a certificate for it when they hold none valid, or hold one for another
    /// key. In the platform's state: the key of the operator's newest valid certificate.
    /// `None`: declared only (enrolled with `zerofn operator add`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// Identity id as the control API derives it (`server/src/admission.rs`): the first 16 hex
/// digits of SHA-256 over kind, SAN and issuer, each followed by a NUL.
pub fn identity_id(kind: &str, san: &str, issuer: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    for part in [kind, san, issuer] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize()).chars().take(16).collect()
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_false(b: &bool) -> bool {
    !*b
}
