//! Synthetic OSV records and SBOMs shared by the vulnerability-scan and admission benchmarks: 10,000 npm
//! packages with 5 records each (every record with two SEMVER ranges and a `versions`
//! list), and an SBOM of 500 of those packages.
#![allow(clippy::unwrap_used, dead_code)]

use zerofn_vulndb::{Advisory, Sbom, VulnDb};

pub const PACKAGES_IN_DB: usize = 10_000;
pub const RECORDS_PER_PACKAGE: usize = 5;
pub const SBOM_PACKAGES: usize = 500;

fn record(package: usize, n: usize) -> Vec<u8> {
    let json = serde_json::json!({
        "id": format!("GHSA-{package:05}-{n}"),
        "aliases": [format!("CVE-2026-{package:05}{n}")],
        "summary": "synthetic",
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
        "affected": [{
            "package": {"ecosystem": "npm", "name": format!("pkg-{package}")},
            "ranges": [{"type": "SEMVER", "events": [
                {"introduced": "0"}, {"fixed": format!("{n}.0.0")},
                {"introduced": format!("{}.0.0-0", n + 1)}, {"fixed": format!("{}.5.0", n + 1)}
            ]}],
            "versions": [format!("{n}.1.0"), format!("{n}.2.0-beta.1")]
        }]
    });
    serde_json::to_vec(&json).unwrap()
}

/// `packages` packages with [`RECORDS_PER_PACKAGE`] records each.
pub fn database(packages: usize) -> VulnDb {
    let advisories = (0..packages).flat_map(|p| {
        (0..RECORDS_PER_PACKAGE).map(move |n| Advisory::from_json(&record(p, n)).unwrap())
    });
    VulnDb::from_advisories(advisories)
}

/// The CycloneDX document of [`sbom`].
pub fn sbom_json() -> serde_json::Value {
    let components: Vec<_> = (0..SBOM_PACKAGES)
        .map(|i| {
            let package = i * (PACKAGES_IN_DB / SBOM_PACKAGES);
            serde_json::json!({
                "type": "library",
                "name": format!("pkg-{package}"),
                "purl": format!("pkg:npm/pkg-{package}@{}.{}.0", i % 7, i % 3),
            })
        })
        .collect();
    serde_json::json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "components": components,
    })
}

/// [`SBOM_PACKAGES`] npm packages spread over the database's packages.
pub fn sbom() -> Sbom {
    Sbom::from_json(&serde_json::to_vec(&sbom_json()).unwrap()).unwrap()
}
