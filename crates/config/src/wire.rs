//! What the CLI and the control API exchange for `plan`, `apply`, `drift` and `export`,
//! and the saved plan file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Change, PlatformConfig};

/// `GET /v1/config/state`: the running configuration and its serial.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigState {
    pub serial: u64,
    pub config: PlatformConfig,
}

/// `POST /v1/config/apply`: the directory's files (base64) and, for a saved plan, the
/// serial it was made at.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    pub files: BTreeMap<String, String>,
    #[serde(default)]
    pub planned_serial: Option<u64>,
    /// The Git commit the CLI found checked out (recorded as the operator's statement).
    #[serde(default)]
    pub git_commit: Option<String>,
}

/// What an apply did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyResult {
    pub serial_before: u64,
    pub serial_after: u64,
    /// The directory's content digest (`ConfigFiles::digest`).
    pub digest: String,
    pub git_commit: Option<String>,
    pub applied: Vec<Change>,
    /// Differences `apply` leaves to another command (each says which).
    pub not_applied: Vec<Change>,
    /// Functions whose deploy or undeploy failed after the configuration was committed
    /// (`tenant/name: reason`); apply the directory again once fixed.
    #[serde(default)]
    pub failed: Vec<String>,
    /// Certificates the apply issued to operators the directory enrols (public: the
    /// private keys stay with the operators).
    #[serde(default)]
    pub operators: Vec<zerofn_api::IssuedOperator>,
}

/// The file `zerofn plan DIR --out PLAN` writes: the reviewed files themselves, so the
/// apply changes exactly what was reviewed, and the serial it was made at.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPlan {
    /// `zerofn-plan/v1`.
    pub format: String,
    pub serial: u64,
    pub digest: String,
    pub git_commit: Option<String>,
    pub changes: Vec<Change>,
    /// Path -> base64 bytes.
    pub files: BTreeMap<String, String>,
}

/// The format tag of a saved plan.
pub const PLAN_FORMAT: &str = "zerofn-plan/v1";

/// `GET /v1/config/export`: the state, and every function's kept deploy request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigExport {
    pub serial: u64,
    pub config: PlatformConfig,
    pub functions: Vec<ExportedFunctionWire>,
}

/// One function's deploy request as the store kept it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedFunctionWire {
    pub tenant: String,
    pub name: String,
    /// base64
    pub component: String,
    pub bundle: String,
    /// `(file name, text)`
    pub attestations: Vec<(String, String)>,
}
