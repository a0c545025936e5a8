//! Writing a configuration as a directory in the layout [`crate::load`] reads, so that
//! loading an export gives back the configuration it was made from.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::*;

/// A function's deploy request, as kept by the store, for export.
pub struct ExportedFunction {
    pub component: Vec<u8>,
    pub bundle: String,
    pub attestations: Vec<(String, String)>,
}

#[derive(Serialize)]
struct TenantOut {
    routes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    keys: Vec<String>,
    limits: LimitsOut,
    admission: AdmissionOut,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    identities: Vec<IdentityOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    jwt_issuers: Vec<JwtOut>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    mtls_cas: Vec<MtlsCaOut>,
}

#[derive(Serialize)]
struct MtlsCaOut {
    name: String,
    ca: String,
}

#[derive(Serialize)]
struct LimitsOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_per_second: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    burst: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_concurrency: Option<u32>,
}

#[derive(Serialize)]
struct AdmissionOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity_threshold: Option<String>,
    require_sbom: bool,
}

#[derive(Serialize)]
struct IdentityOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate_identity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate_identity_regexp: Option<String>,
    oidc_issuer: String,
    trusted_root: String,
}

#[derive(Serialize)]
struct JwtOut {
    name: String,
    issuer: String,
    audience: String,
    algorithms: Vec<String>,
    leeway_secs: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    require_jti: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwks: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwks_url: Option<String>,
}

/// A file-name-safe form of an id (`sha256:ab…` -> `sha256-ab…`).
fn file_safe(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The files of `config` in the directory layout. `functions` holds each function's kept
/// request by (tenant, name); a function without one is written without its component
/// (loading the export then names the missing file).
pub fn export(
    config: &PlatformConfig,
    functions: &BTreeMap<(String, String), ExportedFunction>,
) -> Result<BTreeMap<String, Vec<u8>>, toml::ser::Error> {
    let mut files = BTreeMap::new();
    let mut put = |path: String, bytes: Vec<u8>| {
        files.insert(path, bytes);
    };
    if let Some(text) = &config.control_policy {
        put("control.cedar".into(), text.clone().into_bytes());
    }
    // The stored document itself: loading it gives back the same zone, comments kept.
    for (name, document) in &config.zones {
        put(format!("zones/{name}.toml"), document.clone().into_bytes());
    }
    for (name, operator) in &config.operators {
        match &operator.public_key {
            Some(pem) => {
                put(format!("operators/{name}.pem"), pem.clone().into_bytes());
                put(
                    format!("operators/{name}.toml"),
                    format!("public_key = \"{name}.pem\"\n").into_bytes(),
                );
            }
            None => put(format!("operators/{name}.toml"), Vec::new()),
        }
    }
    for (name, t) in &config.tenants {
        let dir = format!("tenants/{name}");
        let mut keys = Vec::new();
        for (id, pem) in &t.keys {
            let rel = format!("keys/{}.pub", file_safe(id));
            put(format!("{dir}/{rel}"), pem.clone().into_bytes());
            keys.push(rel);
        }
        let policy = t.admission.policy.as_ref().map(|text| {
            put(format!("{dir}/admission.cedar"), text.clone().into_bytes());
            "admission.cedar".to_owned()
        });
        let mut identities = Vec::new();
        for (id, i) in &t.identities {
            let rel = format!("roots/{}.json", file_safe(id));
            put(format!("{dir}/{rel}"), i.trusted_root.clone().into_bytes());
            let exact = i.kind == "exact";
            identities.push(IdentityOut {
                certificate_identity: exact.then(|| i.san.clone()),
                certificate_identity_regexp: (!exact).then(|| i.san.clone()),
                oidc_issuer: i.issuer.clone(),
                trusted_root: rel,
            });
        }
        let mut jwt_issuers = Vec::new();
        for (n, j) in &t.jwt_issuers {
            // An issuer with a URL is exported as the URL: the platform fetches its keys.
            let jwks = match &j.jwks_url {
                Some(_) => None,
                None => {
                    let rel = format!("jwks/{}.json", file_safe(n));
                    put(format!("{dir}/{rel}"), j.jwks.clone().into_bytes());
                    Some(rel)
                }
            };
            jwt_issuers.push(JwtOut {
                name: n.clone(),
                issuer: j.issuer.clone(),
                audience: j.audience.clone(),
                algorithms: j.algorithms.clone(),
                leeway_secs: j.leeway_secs,
                require_jti: j.require_jti,
                jwks,
                jwks_url: j.jwks_url.clone(),
            });
        }
        let mut mtls_cas = Vec::new();
        for (n, pem) in &t.mtls_cas {
            let rel = format!("cas/{}.pem", file_safe(n));
            put(format!("{dir}/{rel}"), pem.clone().into_bytes());
            mtls_cas.push(MtlsCaOut {
                name: n.clone(),
                ca: rel,
            });
        }
        let out = TenantOut {
            routes: t.routes.clone(),
            keys,
            limits: LimitsOut {
                rate_per_second: t.limits.rate_per_second,
                burst: t.limits.burst,
                max_concurrency: t.limits.max_concurrency,
            },
            admission: AdmissionOut {
                policy,
                severity_threshold: t.admission.severity_threshold.clone(),
                require_sbom: t.admission.require_sbom,
            },
            identities,
            jwt_issuers,
            mtls_cas,
        };
        put(
            format!("{dir}/tenant.toml"),
            toml::to_string(&out)?.into_bytes(),
        );
        if let Some(text) = &t.policy {
            put(
                format!("{dir}/policies/policy.cedar"),
                text.clone().into_bytes(),
            );
        }
        for (f, config) in &t.functions {
            let fdir = format!("{dir}/functions/{f}");
            put(
                format!("{fdir}/zerofn.toml"),
                config.manifest.clone().into_bytes(),
            );
            let Some(kept) = functions.get(&(name.clone(), f.clone())) else {
                continue;
            };
            if let Ok(m) = zerofn_manifest::Manifest::from_toml(&config.manifest) {
                put(format!("{fdir}/{}", m.component), kept.component.clone());
                put(
                    format!("{fdir}/{}", m.bundle_file_name()),
                    kept.bundle.clone().into_bytes(),
                );
            }
            for (file, text) in &kept.attestations {
                if !file.contains('/') && file != "zerofn.toml" {
                    put(format!("{fdir}/{file}"), text.clone().into_bytes());
                }
            }
        }
    }
    Ok(files)
}
