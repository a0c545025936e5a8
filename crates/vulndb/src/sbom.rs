//! CycloneDX SBOMs (JSON, spec 1.4–1.7), reduced to the packages they name.
//!
//! Only the fields matching needs are read: `bomFormat`, `specVersion`,
//! `metadata.component` and `components[]` (recursively, through nested `components`), each
//! with `type`, `name`, `version` and `purl`. A package's identity comes from its package
//! URL (purl spec, <https://github.com/package-url/purl-spec>, parsed by the `packageurl`
//! crate), mapped to OSV ecosystems:
//!
//! | purl type | OSV ecosystem | name |
//! |---|---|---|
//! | `cargo` | `crates.io` | the crate name |
//! | `pypi` | `PyPI` | PEP 503-normalised |
//! | `npm` | `npm` | `@scope/name` |
//! | `golang` | `Go` | `namespace/name` (the module path); a leading `v` is dropped from the version, as OSV writes Go versions |
//! | `maven` | `Maven` | `groupId:artifactId` |
//!
//! Components without a purl, with another purl type, or without any version are counted in
//! [`Sbom::skipped`], never silently matched. A purl that does not parse is an error: a
//! package the scanner cannot read must not pass unseen.

use std::collections::HashSet;
use std::str::FromStr;

use serde::Deserialize;

use crate::error::ScanError;
use crate::version::Ecosystem;
use zerofn_types::{excerpt, sanitize_message};

/// Largest SBOM read. Real ones of big applications are a few MiB (OWASP Juice Shop: 2 MiB
/// for 1,100 components).
pub const MAX_SBOM_BYTES: usize = 64 * 1024 * 1024;

/// Most components read (nested ones included).
const MAX_COMPONENTS: usize = 1_000_000;

/// The CycloneDX spec versions read here; their JSON encodings agree on every field used.
const SPEC_VERSIONS: [&str; 4] = ["1.4", "1.5", "1.6", "1.7"];

/// One package an SBOM names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Package {
    /// Its OSV ecosystem.
    pub ecosystem: Ecosystem,
    /// Its name, normalised for the ecosystem ([`Ecosystem::normalize_name`]).
    pub name: String,
    /// Its version as the SBOM gives it.
    pub version: String,
}

/// The packages of an SBOM, in document order, without duplicates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sbom {
    /// The packages of supported ecosystems.
    pub packages: Vec<Package>,
    /// Components that could not be matched: no purl, an unsupported purl type, or no
    /// version.
    pub skipped: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBom {
    bom_format: String,
    spec_version: String,
    #[serde(default)]
    metadata: Option<RawMetadata>,
    #[serde(default)]
    components: Option<Vec<RawComponent>>,
}

#[derive(Deserialize)]
struct RawMetadata {
    #[serde(default)]
    component: Option<RawComponent>,
}

#[derive(Deserialize)]
struct RawComponent {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    purl: Option<String>,
    #[serde(default)]
    components: Option<Vec<RawComponent>>,
}

impl Sbom {
    /// Parses a CycloneDX JSON document.
    pub fn from_json(bytes: &[u8]) -> Result<Sbom, ScanError> {
        if bytes.len() > MAX_SBOM_BYTES {
            return Err(ScanError::SbomTooLarge {
                size: bytes.len(),
                limit: MAX_SBOM_BYTES,
            });
        }
        let raw: RawBom = serde_json::from_slice(bytes).map_err(|e| ScanError::SbomMalformed {
            reason: sanitize_message(&e.to_string(), 200),
        })?;
        if raw.bom_format != "CycloneDX" {
            return Err(ScanError::SbomNotCycloneDx {
                format: excerpt(&raw.bom_format),
            });
        }
        if !SPEC_VERSIONS.contains(&raw.spec_version.as_str()) {
            return Err(ScanError::SbomSpecVersionUnsupported {
                version: excerpt(&raw.spec_version),
            });
        }

        // Walk with an explicit stack: nesting depth is the input's choice.
        // The stack pops from the end: components reversed, then the root on top.
        let mut stack: Vec<RawComponent> = raw.components.unwrap_or_default();
        stack.reverse();
        if let Some(component) = raw.metadata.and_then(|m| m.component) {
            stack.push(component);
        }

        let mut packages = Vec::new();
        let mut seen = HashSet::new();
        let mut skipped = 0;
        let mut visited = 0usize;
        while let Some(mut component) = stack.pop() {
            visited += 1;
            if visited > MAX_COMPONENTS {
                return Err(ScanError::SbomMalformed {
                    reason: format!("it lists more than {MAX_COMPONENTS} components"),
                });
            }
            if let Some(mut children) = component.components.take() {
                children.reverse();
                stack.extend(children);
            }
            let package = match &component.purl {
                Some(purl) => package_from_purl(purl, component.version.as_deref())?,
                None => None,
            };
            match package {
                Some(package) => {
                    if seen.insert(package.clone()) {
                        packages.push(package);
                    }
                }
                None => skipped += 1,
            }
        }
        Ok(Sbom { packages, skipped })
    }
}

/// The package a purl names, if its type is one of the supported ecosystems and a version
/// is known (the purl's own, else `fallback_version`, the component's `version`).
pub fn package_from_purl(
    purl: &str,
    fallback_version: Option<&str>,
) -> Result<Option<Package>, ScanError> {
    let parsed = packageurl::PackageUrl::from_str(purl).map_err(|e| ScanError::PurlInvalid {
        purl: excerpt(purl),
        reason: sanitize_message(&e.to_string(), 200),
    })?;
    let namespace = parsed.namespace().filter(|n| !n.is_empty());
    let (ecosystem, raw_name) = match parsed.ty() {
        "cargo" => (Ecosystem::CratesIo, parsed.name().to_owned()),
        "pypi" => (Ecosystem::PyPi, parsed.name().to_owned()),
        "npm" => match namespace {
            Some(scope) => (Ecosystem::Npm, format!("{scope}/{}", parsed.name())),
            None => (Ecosystem::Npm, parsed.name().to_owned()),
        },
        "golang" => match namespace {
            Some(path) => (Ecosystem::Go, format!("{path}/{}", parsed.name())),
            None => (Ecosystem::Go, parsed.name().to_owned()),
        },
        "maven" => match namespace {
            Some(group) => (Ecosystem::Maven, format!("{group}:{}", parsed.name())),
            None => {
                return Err(ScanError::PurlInvalid {
                    purl: excerpt(purl),
                    reason: "a maven purl needs a namespace (the groupId)".to_owned(),
                })
            }
        },
        _ => return Ok(None),
    };
    let Some(version) = parsed
        .version()
        .or(fallback_version)
        .map(str::trim)
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    let version = match ecosystem {
        Ecosystem::Go => version.strip_prefix('v').unwrap_or(version),
        _ => version,
    };
    Ok(Some(Package {
        name: ecosystem.normalize_name(&raw_name),
        ecosystem,
        version: version.to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SBOM: zerofn_testkit::testdata::Dir = zerofn_testkit::testdata::dir("sbom");

    pub(crate) fn read(rel: &str) -> Sbom {
        Sbom::from_json(&std::fs::read(format!("{SBOM}/{rel}")).unwrap()).unwrap()
    }

    fn has(sbom: &Sbom, ecosystem: Ecosystem, name: &str, version: &str) -> bool {
        sbom.packages
            .iter()
            .any(|p| p.ecosystem == ecosystem && p.name == name && p.version == version)
    }

    #[test]
    fn real_sboms_yield_their_packages() {
        // Counts: distinct (ecosystem, name, version) over metadata.component and all nested
        // components, as computed from the files.
        let juice = read("cyclonedx-node-npm/juice-shop.bom.1.6.json");
        assert_eq!(juice.packages.len(), 985);
        assert_eq!(juice.skipped, 0);
        assert!(juice.packages.iter().all(|p| p.ecosystem == Ecosystem::Npm));
        assert_eq!(juice.packages[0].name, "juice-shop");
        for (name, version) in [
            ("jsonwebtoken", "0.1.0"),
            ("jsonwebtoken", "0.4.0"),
            ("lodash", "2.4.2"),
            ("lodash", "4.17.21"),
            ("vm2", "3.9.11"),
            ("minimist", "0.2.4"),
            ("@babel/parser", "7.24.7"),
        ] {
            assert!(
                has(&juice, Ecosystem::Npm, name, version),
                "{name}@{version}"
            );
        }

        let integrity = read("cyclonedx-node-npm/package-integrity.bom.1.4.json");
        assert_eq!((integrity.packages.len(), integrity.skipped), (5, 1));

        let pipenv = read("cyclonedx-python/pipenv_plain_with-extras_1.6.json.bin");
        assert_eq!((pipenv.packages.len(), pipenv.skipped), (25, 1));
        assert!(has(&pipenv, Ecosystem::PyPi, "idna", "3.6"));
        assert!(has(&pipenv, Ecosystem::PyPi, "boolean-py", "4.0"));
        let env = read("cyclonedx-python/environment_plain_with-extras_1.6.json.bin");
        assert_eq!((env.packages.len(), env.skipped), (31, 1));
        assert!(has(&env, Ecosystem::PyPi, "idna", "3.11"));

        let trivy = read("cyclonedx-rust-cargo/valid_sbom-1.4_trivy-0.36.1_alpine-3.13.1.cdx.json");
        assert_eq!((trivy.packages.len(), trivy.skipped), (0, 16));
    }

    #[test]
    fn purls_map_to_osv_ecosystems() {
        for (purl, fallback, want) in [
            (
                "pkg:cargo/Serde_Json@1.0.0",
                None,
                Some((Ecosystem::CratesIo, "serde-json", "1.0.0")),
            ),
            (
                "pkg:pypi/Products.PluggableAuthService@2.0",
                None,
                Some((Ecosystem::PyPi, "products-pluggableauthservice", "2.0")),
            ),
            (
                "pkg:npm/%40angular/core@12.3.1",
                None,
                Some((Ecosystem::Npm, "@angular/core", "12.3.1")),
            ),
            (
                "pkg:npm/lodash",
                Some("4.17.21"),
                Some((Ecosystem::Npm, "lodash", "4.17.21")),
            ),
            (
                "pkg:golang/github.com/gorilla/mux@v1.8.0",
                None,
                Some((Ecosystem::Go, "github.com/gorilla/mux", "1.8.0")),
            ),
            (
                "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1?type=jar",
                None,
                Some((
                    Ecosystem::Maven,
                    "org.apache.logging.log4j:log4j-core",
                    "2.14.1",
                )),
            ),
            ("pkg:npm/lodash", None, None),
            ("pkg:apk/alpine/musl@1.2.2-r0?distro=3.13.1", None, None),
        ] {
            let got = package_from_purl(purl, fallback).unwrap();
            let want = want.map(|(ecosystem, name, version)| Package {
                ecosystem,
                name: name.to_owned(),
                version: version.to_owned(),
            });
            assert_eq!(got, want, "{purl}");
        }
    }

    type ErrorCheck = fn(&ScanError) -> bool;

    #[test]
    fn malformed_sboms_are_errors() {
        let cases: [(&[u8], ErrorCheck); 7] = [
            (b"{", |e| matches!(e, ScanError::SbomMalformed { .. })),
            (b"[]", |e| matches!(e, ScanError::SbomMalformed { .. })),
            (br#"{"bomFormat":"SPDX","specVersion":"1.6"}"#, |e| {
                matches!(e, ScanError::SbomNotCycloneDx { .. })
            }),
            (br#"{"bomFormat":"CycloneDX","specVersion":"1.1"}"#, |e| {
                matches!(e, ScanError::SbomSpecVersionUnsupported { .. })
            }),
            (
                br#"{"bomFormat":"CycloneDX","specVersion":"1.6","components":[{"purl":"not a purl"}]}"#,
                |e| matches!(e, ScanError::PurlInvalid { .. }),
            ),
            (
                br#"{"bomFormat":"CycloneDX","specVersion":"1.6","components":[{"purl":"pkg:maven/x@1"}]}"#,
                |e| matches!(e, ScanError::PurlInvalid { .. }),
            ),
            (
                br#"{"bomFormat":"CycloneDX","specVersion":"1.6","components":{}}"#,
                |e| matches!(e, ScanError::SbomMalformed { .. }),
            ),
        ];
        for (input, check) in cases {
            let err = Sbom::from_json(input).unwrap_err();
            assert!(check(&err), "{}: {err}", String::from_utf8_lossy(input));
        }
        let big = vec![b' '; MAX_SBOM_BYTES + 1];
        assert!(matches!(
            Sbom::from_json(&big),
            Err(ScanError::SbomTooLarge { .. })
        ));
        // Deep nesting is refused by serde_json's recursion limit, not a stack overflow.
        let deep = format!(
            r#"{{"bomFormat":"CycloneDX","specVersion":"1.6","components":{}{}}}"#,
            r#"[{"components":"#.repeat(200),
            "[]}]".repeat(200)
        );
        assert!(matches!(
            Sbom::from_json(deep.as_bytes()),
            Err(ScanError::SbomMalformed { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn sbom_parser_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = Sbom::from_json(&bytes);
        }

        #[test]
        fn purl_mapping_never_panics(purl in "pkg:(npm|pypi|cargo|golang|maven|x)/\\PC{0,40}") {
            let _ = package_from_purl(&purl, Some("1.0"));
        }
    }
}
