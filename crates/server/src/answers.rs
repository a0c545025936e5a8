//! The control plane's values as the API's answers (`zerofn-api`), which the CLI reads: the
//! one place a store row or an admission report becomes a response body, so the wire form
//! is the shared type's and both sides agree at compile time.

use zerofn_admission::{AdmissionReport, CheckResult};
use zerofn_store::TenantIdentityRow;

/// A trusted keyless identity, without its trusted root (which stays on the server).
pub(crate) fn keyless_identity(row: &TenantIdentityRow) -> zerofn_api::KeylessIdentity {
    zerofn_api::KeylessIdentity {
        id: row.id.clone(),
        kind: row.kind.clone(),
        san: row.san.clone(),
        issuer: row.issuer.clone(),
        added_at: row.added_at.clone(),
    }
}

/// Every admission check, in order, with its result by name.
pub(crate) fn checks(report: AdmissionReport) -> Vec<zerofn_api::Check> {
    report
        .checks
        .into_iter()
        .map(|c| zerofn_api::Check {
            check: c.check,
            result: result_name(c.result).to_owned(),
            detail: c.detail,
        })
        .collect()
}

/// The name a check result has on the wire (as `CheckResult` serializes).
fn result_name(result: CheckResult) -> &'static str {
    match result {
        CheckResult::Pass => "pass",
        CheckResult::Fail => "fail",
        CheckResult::Info => "info",
        CheckResult::Skip => "skip",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer's wire form is what the server's own types sent before.
    #[test]
    fn check_results_keep_their_wire_names() {
        for result in [
            CheckResult::Pass,
            CheckResult::Fail,
            CheckResult::Info,
            CheckResult::Skip,
        ] {
            assert_eq!(
                serde_json::to_value(result).unwrap(),
                serde_json::Value::from(result_name(result))
            );
        }
    }

    #[test]
    fn identities_leave_out_the_trusted_root() {
        let row = TenantIdentityRow {
            id: "i1".into(),
            kind: "exact".into(),
            san: "me@example.com".into(),
            issuer: "https://issuer".into(),
            trusted_root: "{\"secret\":1}".into(),
            added_at: "t".into(),
        };
        assert_eq!(
            serde_json::to_value(keyless_identity(&row)).unwrap(),
            serde_json::to_value(&row).unwrap()
        );
    }
}
