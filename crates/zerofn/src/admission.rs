//! `zerofn deploy`, `zerofn admission explain|show|set` and
//! `zerofn tenant add-identity|remove-identity`: reading a function
//! directory (manifest, component, bundle and the attestations beside it)
//! and showing admission's check table.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use clap::{Args, Subcommand};
use http::Method;
use serde_json::Value;
use zerofn_admission::{render_table, Manifest, MAX_ATTESTATIONS};

use crate::client::{ApiClient, ApiError};

#[derive(Subcommand)]
pub enum AdmissionCommand {
    /// Run every admission check on the function in DIR and print the
    /// table, without deploying.
    Explain {
        dir: PathBuf,
        /// Print the platform's answer (`admitted`, `checks`, ...) as one JSON object and
        /// nothing else; the exit status still says whether it would be admitted.
        #[arg(long)]
        json: bool,
    },
    /// Show a tenant's admission rules: signers, policy, thresholds.
    Show {
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Change a tenant's admission rules. Everything is validated first;
    /// an invalid policy changes nothing.
    Set(SetArgs),
    /// Print the platform's Cedar schema (what policies are validated against).
    Schema,
}

#[derive(Args)]
pub struct SetArgs {
    tenant: String,
    /// Cedar policy file for admission (validated against the schema).
    #[arg(long, conflicts_with = "default_policy")]
    policy: Option<PathBuf>,
    /// Go back to the platform's default policy (admit what is signed).
    #[arg(long)]
    default_policy: bool,
    /// Refuse functions whose SBOM has findings at or above this severity:
    /// critical, high, medium, low, unknown, or none.
    #[arg(long)]
    severity_threshold: Option<String>,
    /// Whether a signed CycloneDX SBOM attestation is required.
    #[arg(long)]
    require_sbom: Option<bool>,
}

/// Keyless signing identities (tenant subcommands).
#[derive(Args)]
pub struct AddIdentityArgs {
    tenant: String,
    /// The exact certificate identity (SAN), e.g. a CI workflow on a ref.
    #[arg(long, required_unless_present = "certificate_identity_regexp")]
    certificate_identity: Option<String>,
    /// Or a pattern the whole SAN must match (Rust regex syntax). Unlike cosign, which
    /// searches for the pattern anywhere, the whole identity must match: end a prefix
    /// with `.*`, e.g. `https://github\.com/org/.*`.
    #[arg(long, conflicts_with = "certificate_identity")]
    certificate_identity_regexp: Option<String>,
    /// The OIDC issuer the certificate must name.
    #[arg(long)]
    certificate_oidc_issuer: String,
    /// The Sigstore trusted_root.json the certificates and log entries must chain to.
    #[arg(long)]
    trusted_root: PathBuf,
}

/// The request body for deploy and explain: manifest, component, bundle and
/// every attestation file beside the component.
pub fn function_request(dir: &Path) -> Result<(Manifest, zerofn_api::Deploy)> {
    let dir = function_dir(dir);
    let manifest_path = dir.join("zerofn.toml");
    let manifest_text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read manifest `{}`", manifest_path.display()))?;
    let manifest = crate::diagnose::parse_manifest(&manifest_path, &manifest_text)?;
    let component = read_component(dir, &manifest)?;
    let bundle_name = manifest.bundle_file_name();
    let bundle_path = dir.join(&bundle_name);
    let bundle = std::fs::read_to_string(&bundle_path).with_context(|| {
        format!(
            "cannot read signature bundle `{}`; sign the component with `zerofn sign`",
            bundle_path.display()
        )
    })?;
    let attestations = attestation_files(dir, &bundle_name)?;
    let body = zerofn_api::Deploy {
        manifest: manifest_text,
        component: base64::engine::general_purpose::STANDARD.encode(&component),
        bundle,
        attestations,
        allow_rollback: None,
    };
    Ok((manifest, body))
}

/// Whether a file name is an attestation by its extension: in-toto JSON
/// lines, or a Sigstore bundle other than the component's own.
fn is_attestation_name(name: &str, component_bundle: &str) -> bool {
    if name == component_bundle {
        return false;
    }
    [
        ".intoto.jsonl",
        ".intoto.json",
        ".sigstore.json",
        ".sigstore",
        ".bundle",
    ]
    .iter()
    .any(|ext| name.ends_with(ext))
}

fn attestation_files(
    dir: &Path,
    component_bundle: &str,
) -> Result<Vec<zerofn_api::AttestationFile>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading `{}`", dir.display()))? {
        let entry = entry.with_context(|| format!("reading `{}`", dir.display()))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if entry.file_type().map(|t| t.is_file()).unwrap_or(false)
            && is_attestation_name(&name, component_bundle)
        {
            names.push(name);
        }
    }
    names.sort();
    if names.len() > MAX_ATTESTATIONS {
        bail!(
            "`{}` holds {} attestation files, more than the {MAX_ATTESTATIONS} allowed",
            dir.display(),
            names.len()
        );
    }
    names
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            let content = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read attestation `{}`", path.display()))?;
            Ok(zerofn_api::AttestationFile { name, content })
        })
        .collect()
}

/// Prints the check table of a refused deploy to stdout, if the error
/// carries one; the error itself stays one line on stderr.
pub fn print_refusal_checks(e: &anyhow::Error) {
    if let Some(checks) = e
        .downcast_ref::<ApiError>()
        .and_then(|api| api.body.pointer("/error/checks"))
    {
        print!("{}", checks_table(checks));
    }
}

/// The check table of an error body's `checks`; empty when they are not checks.
fn checks_table(checks: &Value) -> String {
    let checks: Vec<zerofn_api::Check> = serde_json::from_value(checks.clone()).unwrap_or_default();
    table_of(&checks)
}

fn table_of(checks: &[zerofn_api::Check]) -> String {
    render_table(checks.iter().map(|c| {
        let result = match c.result.as_str() {
            "fail" => "FAIL",
            other => other,
        };
        (c.check.as_str(), result, c.detail.as_str())
    }))
}

pub async fn run(data_dir: &Path, cmd: AdmissionCommand) -> Result<()> {
    match cmd {
        AdmissionCommand::Schema => {
            print!("{}", zerofn_admission::POLICY_SCHEMA);
            Ok(())
        }
        AdmissionCommand::Explain { dir, json } => {
            let (_, body) = function_request(&dir)?;
            let api = ApiClient::discover(data_dir)?;
            let v = api
                .call(
                    Method::POST,
                    "/v1/admission/explain",
                    Some(serde_json::to_value(&body)?),
                )
                .await?;
            if json {
                // The answer as it came, not as this CLI's types know it.
                println!("{v}");
            }
            let explained: zerofn_api::Explained =
                crate::client::typed("/v1/admission/explain", v)?;
            if !json {
                print!("{}", table_of(&explained.checks));
            }
            if !explained.admitted {
                bail!("{}/{} would be refused", explained.tenant, explained.name);
            }
            // With --json, standard output is the one JSON object and nothing else.
            if !json {
                println!("{}/{} would be admitted", explained.tenant, explained.name);
            }
            Ok(())
        }
        AdmissionCommand::Show { tenant, json } => {
            let api = ApiClient::discover(data_dir)?;
            let v = api
                .call(
                    Method::GET,
                    &format!("/v1/tenants/{tenant}/admission"),
                    None,
                )
                .await?;
            if json {
                // The answer as it came, not as this CLI's types know it.
                println!("{v}");
            } else {
                print_view(&crate::client::typed(
                    &format!("/v1/tenants/{tenant}/admission"),
                    v,
                )?);
            }
            Ok(())
        }
        AdmissionCommand::Set(args) => {
            let mut body = zerofn_api::SetAdmission::default();
            if let Some(path) = &args.policy {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read policy `{}`", path.display()))?;
                if text.trim().is_empty() {
                    bail!("policy file `{}` is empty", path.display());
                }
                body.policy = Some(text);
            }
            if args.default_policy {
                body.policy = Some(String::new());
            }
            body.severity_threshold = args.severity_threshold;
            body.require_sbom = args.require_sbom;
            if body == zerofn_api::SetAdmission::default() {
                bail!("nothing to set: give --policy, --default-policy, --severity-threshold or --require-sbom");
            }
            let api = ApiClient::discover(data_dir)?;
            let view: zerofn_api::AdmissionView = api
                .send(
                    Method::PUT,
                    &format!("/v1/tenants/{}/admission", args.tenant),
                    &body,
                )
                .await?;
            print_view(&view);
            Ok(())
        }
    }
}

fn print_view(v: &zerofn_api::AdmissionView) {
    println!("tenant: {}", v.tenant);
    println!(
        "keys: {}",
        if v.key_ids.is_empty() {
            "(none)".to_owned()
        } else {
            v.key_ids.join(", ")
        }
    );
    println!("keyless identities:");
    for i in &v.identities {
        println!("  {} {} `{}` from `{}`", i.id, i.kind, i.san, i.issuer);
    }
    println!(
        "severity threshold: {}",
        v.severity_threshold.as_deref().unwrap_or("none")
    );
    println!("require sbom: {}", v.require_sbom);
    println!(
        "policy{}:",
        if v.default_policy {
            " (platform default)"
        } else {
            ""
        }
    );
    for line in v.policy.lines() {
        println!("  {line}");
    }
}

pub async fn add_identity(data_dir: &Path, args: AddIdentityArgs) -> Result<()> {
    let trusted_root = std::fs::read_to_string(&args.trusted_root)
        .with_context(|| format!("cannot read trusted root `{}`", args.trusted_root.display()))?;
    let api = ApiClient::discover(data_dir)?;
    let added: zerofn_api::KeylessIdentity = api
        .send(
            Method::POST,
            &format!("/v1/tenants/{}/identities", args.tenant),
            &zerofn_api::AddIdentity {
                certificate_identity: args.certificate_identity,
                certificate_identity_regexp: args.certificate_identity_regexp,
                certificate_oidc_issuer: args.certificate_oidc_issuer,
                trusted_root,
            },
        )
        .await?;
    println!(
        "tenant {} trusts {} identity {} `{}` from `{}`",
        args.tenant, added.kind, added.id, added.san, added.issuer
    );
    Ok(())
}

pub async fn remove_identity(data_dir: &Path, tenant: &str, id: &str) -> Result<()> {
    ApiClient::discover(data_dir)?
        .remove(&format!("/v1/tenants/{tenant}/identities/{id}"))
        .await?;
    println!("tenant {tenant} no longer trusts identity {id}");
    Ok(())
}

/// The function directory `path` names: the directory itself, or the one holding the
/// `zerofn.toml` it points at (`zerofn deploy path/to/zerofn.toml`).
pub(crate) fn function_dir(path: &Path) -> &Path {
    if path.file_name() == Some(std::ffi::OsStr::new("zerofn.toml")) && path.is_file() {
        path.parent().unwrap_or(path)
    } else {
        path
    }
}

/// The component file the manifest in `dir` names, or an error naming the file.
pub(crate) fn read_component(dir: &Path, manifest: &Manifest) -> Result<Vec<u8>> {
    let component_path = dir.join(&manifest.component);
    std::fs::read(&component_path).with_context(|| {
        format!(
            "cannot read component `{}` named by the manifest",
            component_path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attestation_files_are_recognised_by_name_and_the_component_bundle_is_not_one() {
        let bundle = "hello.wasm.sigstore.json";
        for (name, expected) in [
            ("hello.wasm.sigstore.json", false),
            ("hello.wasm.slsa-provenance.sigstore.json", true),
            ("provenance.intoto.jsonl", true),
            ("sbom.cdx.sigstore", true),
            ("zerofn.toml", false),
            ("hello.wasm", false),
            ("sbom.cdx.json", false),
        ] {
            assert_eq!(is_attestation_name(name, bundle), expected, "{name}");
        }
    }
}
