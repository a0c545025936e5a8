//! Parsing a whole directory, strictly, into a [`PlatformConfig`].
//!
//! The directory's top level is dispatched by name to one module each (`KINDS`): adding a
//! kind of object (e.g. `zones/*.toml`) is one more entry there and one function that
//! fills its part of the configuration. Every file must be claimed by a kind or referenced
//! by a file that is; anything else is an error naming it (a typo in a file name must not
//! silently leave something out). Every TOML file is parsed with `deny_unknown_fields`,
//! every Cedar text, key, manifest and trusted root is validated with the code the control
//! API uses, and the first error stops the load: nothing is half-loaded.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use zerofn_types::{FunctionName, TenantName};

use crate::files::{resolve, ConfigFiles};
use crate::model::*;
use crate::ConfigError;

/// Top-level entries and the module that reads them. `README.md` files are allowed
/// anywhere and read by nobody.
type KindLoader = fn(&ConfigFiles, &mut Loader) -> Result<(), ConfigError>;
const KINDS: [(&str, KindLoader); 4] = [
    ("control.cedar", load_control),
    ("operators/", load_operators),
    ("tenants/", load_tenants),
    // After the tenants: a zone may only group tenants the directory declares.
    ("zones/", load_zones),
];

/// Severity thresholds admission knows (`zerofn admission set --severity-threshold`).
const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "unknown"];

struct Loader {
    config: PlatformConfig,
    /// Files a kind claimed or a file referenced.
    used: BTreeSet<String>,
}

/// Load and validate the whole directory.
pub fn load(files: &ConfigFiles) -> Result<PlatformConfig, ConfigError> {
    let mut loader = Loader {
        config: PlatformConfig::default(),
        used: BTreeSet::new(),
    };
    for (_, kind) in KINDS {
        kind(files, &mut loader)?;
    }
    for path in files.paths() {
        let readme = path == "README.md" || path.ends_with("/README.md");
        if !loader.used.contains(path) && !readme {
            let known = KINDS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
            return Err(ConfigError::Invalid {
                file: path.to_owned(),
                line: None,
                span: None,
                problem: format!(
                    "is not part of the layout ({known}) and no file references it; \
                     see `zerofn config schema`"
                ),
            });
        }
    }
    Ok(loader.config)
}

/// The 1-based line of byte offset `at` in `text`.
fn line_at(text: &str, at: usize) -> usize {
    text.get(..at)
        .map_or(0, |head| head.bytes().filter(|&b| b == b'\n').count())
        .saturating_add(1)
}

/// The first line of `text` that contains `needle` (to place a semantic error).
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.find(needle).map(|at| line_at(text, at))
}

/// The byte range of the first `needle` in `text` (what [`line_of`] found), for the CLI to
/// underline. A text search, not a parse: a hint, as the line is.
fn span_of(text: &str, needle: &str) -> Option<std::ops::Range<usize>> {
    let start = text.find(needle)?;
    Some(start..start.saturating_add(needle.len()))
}

fn parse_toml<T: for<'de> Deserialize<'de>>(path: &str, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Invalid {
        file: path.to_owned(),
        line: e.span().map(|s| line_at(text, s.start)),
        span: e.span(),
        problem: e.message().trim().to_owned(),
    })
}

fn invalid(path: &str, text: &str, needle: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file: path.to_owned(),
        line: line_of(text, needle),
        span: span_of(text, needle),
        problem: problem.into(),
    }
}

fn cedar(path: &str, text: &str) -> Result<(), ConfigError> {
    zerofn_policy::PolicySet::parse(text)
        .map(drop)
        .map_err(|e| ConfigError::Invalid {
            file: path.to_owned(),
            line: None,
            span: None,
            problem: e.to_string(),
        })
}

fn load_control(files: &ConfigFiles, l: &mut Loader) -> Result<(), ConfigError> {
    let path = "control.cedar";
    if files.get(path).is_none() {
        return Ok(());
    }
    let text = files.text(path)?;
    zerofn_policy::ControlPolicy::parse(text).map_err(|e| ConfigError::Invalid {
        file: path.to_owned(),
        line: None,
        span: None,
        problem: e.to_string(),
    })?;
    l.used.insert(path.to_owned());
    l.config.control_policy = Some(text.to_owned());
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorFile {
    /// A PEM file beside the TOML file (or elsewhere in the directory).
    #[serde(default)]
    public_key: Option<String>,
}

fn load_operators(files: &ConfigFiles, l: &mut Loader) -> Result<(), ConfigError> {
    let paths: Vec<String> = files
        .paths()
        .filter(|p| p.starts_with("operators/"))
        .map(str::to_owned)
        .collect();
    for path in paths {
        let Some(name) = path
            .strip_prefix("operators/")
            .and_then(|n| n.strip_suffix(".toml"))
            .filter(|n| !n.contains('/'))
        else {
            continue;
        };
        if TenantName::parse(name).is_err() {
            return Err(ConfigError::Invalid {
                file: path.clone(),
                line: None,
                span: None,
                problem: format!("`{name}` is not an operator name (a DNS label)"),
            });
        }
        let text = files.text(&path)?;
        let file: OperatorFile = parse_toml(&path, text)?;
        let public_key = match &file.public_key {
            Some(reference) => {
                let (key_path, pem) = referenced(files, l, &path, text, reference)?;
                Some(operator_key(&key_path, pem)?)
            }
            None => None,
        };
        l.config
            .operators
            .insert(name.to_owned(), OperatorConfig { public_key });
        l.used.insert(path);
    }
    Ok(())
}

/// Every `zones/<name>.toml`, each parsed strictly by the zone parser the control API uses
/// (`zerofn_manifest::zone`), then checked together as `ZoneSet::new` checks a platform's
/// zones (a tenant in one zone; every zone `calls`/`called_from` names exists).
fn load_zones(files: &ConfigFiles, l: &mut Loader) -> Result<(), ConfigError> {
    use zerofn_manifest::zone::{Zone, ZoneError, ZoneSet};
    let paths: Vec<String> = files
        .paths()
        .filter(|p| p.starts_with("zones/"))
        .map(str::to_owned)
        .collect();
    let mut zones = Vec::new();
    for path in paths {
        let Some(stem) = path
            .strip_prefix("zones/")
            .and_then(|n| n.strip_suffix(".toml"))
            .filter(|n| !n.contains('/'))
        else {
            continue; // not claimed: reported as not part of the layout
        };
        let text = files.text(&path)?;
        let zone = Zone::from_toml(text).map_err(|e| match e {
            ZoneError::Toml(t) => ConfigError::Invalid {
                file: path.clone(),
                line: t.span().map(|s| line_at(text, s.start)),
                span: t.span(),
                problem: t.message().trim().to_owned(),
            },
            other => ConfigError::Invalid {
                file: path.clone(),
                line: None,
                span: other.span_in(text),
                problem: other.to_string(),
            },
        })?;
        if zone.name.as_str() != stem {
            return Err(invalid(
                &path,
                text,
                "name",
                format!(
                    "declares zone `{}`; a zone's file is `zones/<name>.toml`",
                    zone.name
                ),
            ));
        }
        if let Some(t) = zone
            .tenants
            .iter()
            .find(|t| !l.config.tenants.contains_key(t.as_str()))
        {
            return Err(invalid(
                &path,
                text,
                t.as_str(),
                format!(
                    "`tenants` names tenant `{t}`, which the directory does not declare                      (`tenants/{t}/tenant.toml`)"
                ),
            ));
        }
        l.used.insert(path.clone());
        l.config.zones.insert(stem.to_owned(), text.to_owned());
        zones.push((path, text, zone));
    }
    ZoneSet::new(zones.iter().map(|(_, _, z)| z.clone())).map_err(|e| {
        // Place the error in the file of the zone it names, at the value at fault.
        let (zone, needle) = match &e {
            ZoneError::TenantInTwoZones { tenant, second, .. } => {
                (second.as_str(), tenant.as_str())
            }
            ZoneError::UnknownZone { zone, unknown, .. } => (zone.as_str(), unknown.as_str()),
            _ => ("", ""),
        };
        match zones.iter().find(|(_, _, z)| z.name.as_str() == zone) {
            Some((path, text, _)) => invalid(path, text, &format!("\"{needle}\""), e.to_string()),
            None => ConfigError::Invalid {
                file: "zones/".into(),
                line: None,
                span: None,
                problem: e.to_string(),
            },
        }
    })?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantFile {
    routes: Vec<String>,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    admission: AdmissionFile,
    #[serde(default)]
    identities: Vec<IdentityFile>,
    #[serde(default)]
    jwt_issuers: Vec<JwtIssuerFile>,
    #[serde(default)]
    mtls_cas: Vec<MtlsCaFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MtlsCaFile {
    name: String,
    /// The PEM file of its CA certificates, relative to tenant.toml.
    ca: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AdmissionFile {
    policy: Option<String>,
    severity_threshold: Option<String>,
    #[serde(default)]
    require_sbom: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityFile {
    certificate_identity: Option<String>,
    certificate_identity_regexp: Option<String>,
    oidc_issuer: String,
    trusted_root: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JwtIssuerFile {
    name: String,
    issuer: String,
    audience: String,
    algorithms: Vec<String>,
    leeway_secs: u64,
    #[serde(default)]
    require_jti: bool,
    /// Exactly one of `jwks` (a file beside) and `jwks_url`.
    jwks: Option<String>,
    jwks_url: Option<String>,
}

fn load_tenants(files: &ConfigFiles, l: &mut Loader) -> Result<(), ConfigError> {
    let mut names = BTreeSet::new();
    for path in files.paths().filter(|p| p.starts_with("tenants/")) {
        let mut parts = path.splitn(3, '/');
        let (_, Some(name), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(ConfigError::Invalid {
                file: path.to_owned(),
                line: None,
                span: None,
                problem: "belongs in a tenant's directory, `tenants/<tenant>/`".into(),
            });
        };
        names.insert(name.to_owned());
    }
    for name in names {
        let dir = format!("tenants/{name}");
        let tenant = TenantName::parse(&name).map_err(|e| ConfigError::Invalid {
            file: dir.clone(),
            line: None,
            span: None,
            problem: format!("`{name}` is not a tenant name: {e}"),
        })?;
        let config = load_tenant(files, l, &tenant, &dir)?;
        l.config.tenants.insert(name, config);
    }
    Ok(())
}

/// An operator's public key in the one form the state compares: a P-256 key (the only kind
/// the platform issues operator certificates for), as normalised PEM.
pub fn operator_key(file: &str, pem: &str) -> Result<String, ConfigError> {
    let invalid = |problem: String| ConfigError::Invalid {
        file: file.to_owned(),
        line: None,
        span: None,
        problem,
    };
    // `PublicKey` reads P-256 keys only, naming any other algorithm.
    let key = zerofn_sigstore::PublicKey::from_pem(pem)
        .map_err(|e| invalid(format!("is not an operator's public key: {e}")))?;
    Ok(key.to_pem())
}

/// Read a file `from` references, marking it used.
fn referenced<'f>(
    files: &'f ConfigFiles,
    l: &mut Loader,
    from: &str,
    from_text: &str,
    reference: &str,
) -> Result<(String, &'f str), ConfigError> {
    let path = resolve(from, reference).map_err(|e| match e {
        ConfigError::Invalid { file, problem, .. } => ConfigError::Invalid {
            file,
            line: line_of(from_text, reference),
            span: span_of(from_text, reference),
            problem,
        },
        other => other,
    })?;
    if files.get(&path).is_none() {
        return Err(ConfigError::Invalid {
            file: from.to_owned(),
            line: line_of(from_text, reference),
            span: span_of(from_text, reference),
            problem: format!("references `{reference}`, but `{path}` is not in the directory"),
        });
    }
    l.used.insert(path.clone());
    let text = files.text(&path)?;
    Ok((path, text))
}

fn load_tenant(
    files: &ConfigFiles,
    l: &mut Loader,
    tenant: &TenantName,
    dir: &str,
) -> Result<TenantConfig, ConfigError> {
    let path = format!("{dir}/tenant.toml");
    if files.get(&path).is_none() {
        return Err(ConfigError::Missing {
            file: path,
            referenced_from: Some(format!("{dir}/")),
        });
    }
    let text = files.text(&path)?;
    l.used.insert(path.clone());
    let file: TenantFile = parse_toml(&path, text)?;
    let mut out = TenantConfig::default();

    for prefix in &file.routes {
        if !prefix.starts_with('/') {
            return Err(invalid(
                &path,
                text,
                prefix,
                format!("route prefix `{prefix}` must start with `/`"),
            ));
        }
    }
    let mut routes = file.routes.clone();
    routes.sort();
    if routes.windows(2).any(|w| matches!(w, [a, b] if a == b)) {
        return Err(invalid(
            &path,
            text,
            "routes",
            "a route prefix is listed twice",
        ));
    }
    out.routes = routes;

    for reference in &file.keys {
        let (key_path, pem) = referenced(files, l, &path, text, reference)?;
        let key = zerofn_sigstore::PublicKey::from_pem(pem).map_err(|e| ConfigError::Invalid {
            file: key_path.clone(),
            line: None,
            span: None,
            problem: format!("is not a public key: {e}"),
        })?;
        let id = key.key_id().to_string();
        if out.keys.insert(id.clone(), key.to_pem()).is_some() {
            return Err(invalid(
                &path,
                text,
                reference,
                format!("key `{id}` (`{key_path}`) is listed twice"),
            ));
        }
    }

    if let Some(l) = file.limits.burst {
        if l == 0 {
            return Err(invalid(&path, text, "burst", "`burst` must be at least 1"));
        }
    }
    if file.limits.rate_per_second == Some(0) || file.limits.max_concurrency == Some(0) {
        return Err(invalid(
            &path,
            text,
            "[limits]",
            "limits must be at least 1 (leave a limit out for none)",
        ));
    }
    out.limits = file.limits;

    if let Some(reference) = &file.admission.policy {
        let (policy_path, policy) = referenced(files, l, &path, text, reference)?;
        cedar(&policy_path, policy)?;
        out.admission.policy = Some(policy.to_owned());
    }
    if let Some(s) = &file.admission.severity_threshold {
        if !SEVERITIES.contains(&s.as_str()) {
            return Err(invalid(
                &path,
                text,
                "severity_threshold",
                format!(
                    "`severity_threshold` `{s}` is none of {}",
                    SEVERITIES.join(", ")
                ),
            ));
        }
    }
    out.admission.severity_threshold = file.admission.severity_threshold.clone();
    out.admission.require_sbom = file.admission.require_sbom;

    for identity in &file.identities {
        let (kind, san) = match (
            &identity.certificate_identity,
            &identity.certificate_identity_regexp,
        ) {
            (Some(san), None) => ("exact", san.clone()),
            (None, Some(re)) => ("regexp", re.clone()),
            _ => {
                return Err(invalid(
                    &path,
                    text,
                    "[[identities]]",
                    "an identity has exactly one of `certificate_identity` and \
                     `certificate_identity_regexp`",
                ))
            }
        };
        let (root_path, root) = referenced(files, l, &path, text, &identity.trusted_root)?;
        zerofn_sigstore::TrustedRoot::from_json(root.as_bytes()).map_err(|e| {
            ConfigError::Invalid {
                file: root_path.clone(),
                line: None,
                span: None,
                problem: format!("is not a Sigstore trusted root: {e}"),
            }
        })?;
        let id = identity_id(kind, &san, &identity.oidc_issuer);
        let value = Identity {
            kind: kind.to_owned(),
            san: san.clone(),
            issuer: identity.oidc_issuer.clone(),
            trusted_root: root.to_owned(),
        };
        if out.identities.insert(id, value).is_some() {
            return Err(invalid(
                &path,
                text,
                &san,
                format!(
                    "identity `{san}` of `{}` is listed twice",
                    identity.oidc_issuer
                ),
            ));
        }
    }

    for issuer in &file.jwt_issuers {
        let jwks = match (&issuer.jwks, &issuer.jwks_url) {
            (Some(file), None) => {
                let (jwks_path, jwks) = referenced(files, l, &path, text, file)?;
                // The platform keeps the JWKS as compact JSON (it receives a JSON value):
                // compare in that form, so a reformatted file is no change.
                serde_json::from_str::<serde_json::Value>(jwks)
                    .map_err(|e| ConfigError::Invalid {
                        file: jwks_path.clone(),
                        line: Some(e.line()),
                        span: None,
                        problem: format!("is not JSON: {e}"),
                    })?
                    .to_string()
            }
            // Fetched by the platform when applied (https only, checked there); the
            // document is not part of the configuration.
            (None, Some(url)) if url.starts_with("https://") => String::new(),
            (None, Some(url)) => {
                return Err(invalid(
                    &path,
                    text,
                    url,
                    format!(
                        "JWT issuer `{}`: `jwks_url` must be an `https://` URL",
                        issuer.name
                    ),
                ))
            }
            _ => {
                return Err(invalid(
                    &path,
                    text,
                    &issuer.name,
                    format!(
                        "JWT issuer `{}` needs exactly one of `jwks` (a file) and `jwks_url`",
                        issuer.name
                    ),
                ))
            }
        };
        let value = JwtIssuer {
            issuer: issuer.issuer.clone(),
            audience: issuer.audience.clone(),
            algorithms: issuer.algorithms.clone(),
            leeway_secs: issuer.leeway_secs,
            require_jti: issuer.require_jti,
            jwks,
            jwks_url: issuer.jwks_url.clone(),
        };
        if out.jwt_issuers.insert(issuer.name.clone(), value).is_some() {
            return Err(invalid(
                &path,
                text,
                &issuer.name,
                format!("JWT issuer `{}` is listed twice", issuer.name),
            ));
        }
    }

    for ca in &file.mtls_cas {
        let (_, pem) = referenced(files, l, &path, text, &ca.ca)?;
        if out
            .mtls_cas
            .insert(ca.name.clone(), pem.to_owned())
            .is_some()
        {
            return Err(invalid(
                &path,
                text,
                &ca.name,
                format!("mTLS CA `{}` is listed twice", ca.name),
            ));
        }
    }

    // Runtime policies: every `policies/*.cedar`, in name order, as one text.
    let prefix = format!("{dir}/policies/");
    let policy_paths: Vec<String> = files
        .paths()
        .filter(|p| p.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    let mut texts = Vec::new();
    for p in policy_paths {
        if !p.ends_with(".cedar") || p.get(prefix.len()..).is_some_and(|r| r.contains('/')) {
            continue; // not claimed: reported as unknown unless referenced
        }
        let t = files.text(&p)?;
        cedar(&p, t)?;
        l.used.insert(p);
        texts.push(t.to_owned());
    }
    if !texts.is_empty() {
        let joined = texts.join("\n");
        cedar(&format!("{dir}/policies/*.cedar"), &joined)?;
        out.policy = Some(joined);
    }

    load_functions(files, l, tenant, dir, &mut out)?;
    Ok(out)
}

/// Attestation file endings `zerofn deploy` sends beside a component.
const ATTESTATION_ENDINGS: [&str; 5] = [
    ".intoto.jsonl",
    ".intoto.json",
    ".sigstore.json",
    ".sigstore",
    ".bundle",
];

fn load_functions(
    files: &ConfigFiles,
    l: &mut Loader,
    tenant: &TenantName,
    dir: &str,
    out: &mut TenantConfig,
) -> Result<(), ConfigError> {
    let prefix = format!("{dir}/functions/");
    let mut names = BTreeSet::new();
    for p in files.paths().filter(|p| p.starts_with(&prefix)) {
        let rest = p.get(prefix.len()..).unwrap_or_default();
        match rest.split_once('/') {
            Some((name, _)) => {
                names.insert(name.to_owned());
            }
            None => {
                return Err(ConfigError::Invalid {
                    file: p.to_owned(),
                    line: None,
                    span: None,
                    problem: "belongs in a function's directory, `functions/<name>/`".into(),
                })
            }
        }
    }
    for name in names {
        let fdir = format!("{prefix}{name}");
        let fname = FunctionName::parse(&name).map_err(|e| ConfigError::Invalid {
            file: fdir.clone(),
            line: None,
            span: None,
            problem: format!("`{name}` is not a function name: {e}"),
        })?;
        let function = load_function(files, l, tenant, &fname, &fdir)?;
        out.functions.insert(name, function.config);
    }
    Ok(())
}

/// A function as the directory holds it: its configuration and the deploy request's parts.
pub struct FunctionFiles {
    pub config: FunctionConfig,
    pub component: Vec<u8>,
    pub bundle: String,
    /// `(file name, text)`, sorted by name.
    pub attestations: Vec<(String, String)>,
}

/// One function directory: `zerofn.toml`, the component it names, the component's bundle
/// and attestation files, as `zerofn deploy DIR` reads them.
pub fn load_function(
    files: &ConfigFiles,
    l_used: &mut impl UsedFiles,
    tenant: &TenantName,
    name: &FunctionName,
    fdir: &str,
) -> Result<FunctionFiles, ConfigError> {
    let path = format!("{fdir}/zerofn.toml");
    let text = files.text(&path)?;
    let manifest =
        zerofn_manifest::Manifest::from_toml(text).map_err(|e| ConfigError::Invalid {
            file: path.clone(),
            line: None,
            span: e.span_in(text),
            problem: e.to_string(),
        })?;
    if manifest.tenant != *tenant || manifest.name != *name {
        return Err(invalid(
            &path,
            text,
            "tenant",
            format!(
                "declares function `{}/{}` but sits in `{fdir}`; a function's directory is \
                 `tenants/<tenant>/functions/<name>/`",
                manifest.tenant, manifest.name
            ),
        ));
    }
    l_used.mark(&path);
    let component_path = resolve(&path, &manifest.component)?;
    if component_path.matches('/').count() != fdir.matches('/').count().saturating_add(1) {
        return Err(invalid(
            &path,
            text,
            &manifest.component,
            "the component must sit beside zerofn.toml",
        ));
    }
    let component = files
        .get(&component_path)
        .ok_or_else(|| ConfigError::Missing {
            file: component_path.clone(),
            referenced_from: Some(path.clone()),
        })?
        .to_vec();
    l_used.mark(&component_path);
    let bundle_path = format!("{fdir}/{}", manifest.bundle_file_name());
    let bundle = files.text(&bundle_path).map_err(|_| ConfigError::Missing {
        file: bundle_path.clone(),
        referenced_from: Some(path.clone()),
    })?;
    l_used.mark(&bundle_path);
    let mut attestations = Vec::new();
    let own = format!("{fdir}/");
    let candidates: Vec<String> = files
        .paths()
        .filter(|p| p.starts_with(&own) && !p.get(own.len()..).unwrap_or("/").contains('/'))
        .map(str::to_owned)
        .collect();
    for p in candidates {
        if p == bundle_path || p == component_path || p == path {
            continue;
        }
        let file_name = p.get(own.len()..).unwrap_or_default().to_owned();
        if ATTESTATION_ENDINGS.iter().any(|e| file_name.ends_with(e)) {
            attestations.push((file_name, files.text(&p)?.to_owned()));
            l_used.mark(&p);
        }
    }
    use sha2::{Digest as _, Sha256};
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&component)));
    Ok(FunctionFiles {
        config: FunctionConfig {
            digest,
            manifest: text.to_owned(),
        },
        component,
        bundle: bundle.to_owned(),
        attestations,
    })
}

/// Who records which files were read (the loader; nobody, for a single function).
pub trait UsedFiles {
    fn mark(&mut self, path: &str);
}

impl UsedFiles for Loader {
    fn mark(&mut self, path: &str) {
        self.used.insert(path.to_owned());
    }
}

/// Records nothing.
pub struct Unrecorded;

impl UsedFiles for Unrecorded {
    fn mark(&mut self, _: &str) {}
}

/// Every function of the directory with its deploy request's parts, by (tenant, name).
pub fn function_files(
    files: &ConfigFiles,
) -> Result<BTreeMap<(String, String), FunctionFiles>, ConfigError> {
    let config = load(files)?;
    let mut out = BTreeMap::new();
    for (tenant, t) in &config.tenants {
        for name in t.functions.keys() {
            let tn = TenantName::parse(tenant).map_err(|e| ConfigError::Invalid {
                file: format!("tenants/{tenant}"),
                line: None,
                span: None,
                problem: e.to_string(),
            })?;
            let fname = FunctionName::parse(name).map_err(|e| ConfigError::Invalid {
                file: format!("tenants/{tenant}/functions/{name}"),
                line: None,
                span: None,
                problem: e.to_string(),
            })?;
            let fdir = format!("tenants/{tenant}/functions/{name}");
            let f = load_function(files, &mut Unrecorded, &tn, &fname, &fdir)?;
            out.insert((tenant.clone(), name.clone()), f);
        }
    }
    Ok(out)
}
