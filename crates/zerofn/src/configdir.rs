//! `zerofn config schema`, `plan`, `apply`, `drift` and `export`: the configuration
//! directory (see docs/config-dir.md). Reading and validating the directory is
//! `zerofn-config`'s; comparing uses the platform's `GET /v1/config/state`; applying is the
//! server's (`POST /v1/config/apply`). Output only here.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use clap::{Args, Subcommand};
use http::Method;
use zerofn_config::{
    ApplyRequest, ApplyResult, Change, ChangeKind, ConfigExport, ConfigFiles, ConfigState,
    ExportedFunction, SavedPlan, PLAN_FORMAT,
};

use crate::client::ApiClient;

/// Largest saved plan read: the directory's limit, in base64, and some.
const MAX_PLAN_BYTES: u64 = zerofn_config::MAX_TOTAL / 3 * 4 + 1024 * 1024;

/// `plan` or `drift` found differences: exit status 2, after printing them.
#[derive(Debug)]
pub struct Differences;

impl std::fmt::Display for Differences {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("differences found")
    }
}

impl std::error::Error for Differences {}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print what each file of a configuration directory may contain.
    Schema,
}

#[derive(Args)]
pub struct PlanArgs {
    /// The configuration directory.
    dir: PathBuf,
    /// Save the plan (the reviewed files and the platform's state serial) to apply it
    /// later with `zerofn apply PLAN`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the changes as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ApplyArgs {
    /// A configuration directory, or a plan file saved by `zerofn plan --out`.
    source: PathBuf,
    /// Write the certificates the apply issues to operators (`<name>.crt`, and the
    /// platform CA as `ca.pem`) into this directory instead of printing them.
    #[arg(long, value_name = "DIR")]
    certificates_out: Option<PathBuf>,
    /// Print the platform's answer as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct DriftArgs {
    /// The configuration directory.
    dir: PathBuf,
    /// Print the differences as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Where to write the directory (must not exist, or be empty).
    dir: PathBuf,
}

pub fn config(cmd: ConfigCommand) -> Result<()> {
    match cmd {
        ConfigCommand::Schema => {
            print!("{}", zerofn_config::SCHEMA);
            Ok(())
        }
    }
}

/// Read and validate the directory; its errors name the file and line.
fn read_dir(dir: &Path) -> Result<(ConfigFiles, zerofn_config::PlatformConfig)> {
    let files = ConfigFiles::read(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let config =
        zerofn_config::load(&files).map_err(|e| {
            match crate::diagnose::config_diagnostic(dir, &e, |file| {
                files.get(file).and_then(|b| std::str::from_utf8(b).ok())
            }) {
                Some(d) => anyhow::Error::new(d),
                None => anyhow::anyhow!("{e}"),
            }
        })?;
    Ok((files, config))
}

fn encode(files: ConfigFiles) -> BTreeMap<String, String> {
    files
        .into_map()
        .into_iter()
        .map(|(p, b)| (p, base64::engine::general_purpose::STANDARD.encode(b)))
        .collect()
}

async fn state(api: &ApiClient) -> Result<ConfigState> {
    api.fetch(Method::GET, "/v1/config/state").await
}

fn sign(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Create => "+",
        ChangeKind::Change => "~",
        ChangeKind::Remove => "-",
    }
}

fn print_changes(changes: &[Change]) {
    for c in changes {
        println!("{} {}", sign(c.kind), zerofn_types::printable(&c.object));
        for e in &c.effects {
            println!("    {}", zerofn_types::printable(e));
        }
        if let Some(m) = &c.manual {
            println!(
                "    (not applied by `zerofn apply`: {})",
                zerofn_types::printable(m)
            );
        }
    }
}

pub async fn plan(data_dir: &Path, args: PlanArgs) -> Result<()> {
    let (files, desired) = read_dir(&args.dir)?;
    let api = ApiClient::discover(data_dir)?;
    let state = state(&api).await?;
    let changes = zerofn_config::diff(&state.config, &desired);
    let digest = files.digest();
    if let Some(out) = &args.out {
        let saved = SavedPlan {
            format: PLAN_FORMAT.to_owned(),
            serial: state.serial,
            digest: digest.clone(),
            git_commit: files.git_commit.clone(),
            changes: changes.clone(),
            files: encode(files),
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
            .with_context(|| format!("cannot create plan file `{}`", out.display()))?;
        f.write_all(serde_json::to_string(&saved)?.as_bytes())
            .with_context(|| format!("writing `{}`", out.display()))?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({"serial": state.serial, "digest": digest, "changes": changes})
        );
    } else if changes.is_empty() {
        println!(
            "no changes: the platform (serial {}) matches the directory",
            state.serial
        );
    } else {
        print_changes(&changes);
        println!(
            "{} change(s) against platform serial {}{}",
            changes.len(),
            state.serial,
            args.out
                .as_ref()
                .map(|o| format!("; plan saved to {}", o.display()))
                .unwrap_or_default()
        );
    }
    if changes.is_empty() {
        Ok(())
    } else {
        Err(Differences.into())
    }
}

pub async fn apply(data_dir: &Path, args: ApplyArgs) -> Result<()> {
    let req = if args.source.is_dir() {
        let (files, _) = read_dir(&args.source)?;
        let git_commit = files.git_commit.clone();
        ApplyRequest {
            files: encode(files),
            planned_serial: None,
            git_commit,
        }
    } else {
        let meta = std::fs::metadata(&args.source)
            .with_context(|| format!("cannot read `{}`", args.source.display()))?;
        if meta.len() > MAX_PLAN_BYTES {
            bail!(
                "plan file `{}` is larger than {MAX_PLAN_BYTES} bytes",
                args.source.display()
            );
        }
        let text = std::fs::read_to_string(&args.source)
            .with_context(|| format!("cannot read `{}`", args.source.display()))?;
        let saved: SavedPlan = serde_json::from_str(&text)
            .with_context(|| format!("`{}` is not a saved plan", args.source.display()))?;
        if saved.format != PLAN_FORMAT {
            bail!(
                "`{}` is a plan of format `{}`; this zerofn applies `{PLAN_FORMAT}`",
                args.source.display(),
                saved.format
            );
        }
        ApplyRequest {
            files: saved.files,
            planned_serial: Some(saved.serial),
            git_commit: saved.git_commit,
        }
    };
    let api = ApiClient::discover(data_dir)?;
    let result: ApplyResult = api.send(Method::POST, "/v1/config/apply", &req).await?;
    if let Some(dir) = &args.certificates_out {
        write_certificates(dir, &result.operators)?;
    }
    if args.json {
        println!("{}", serde_json::to_value(&result)?);
        return finished(&result);
    }
    print_changes(&result.applied);
    print_changes(&result.not_applied);
    println!(
        "applied {} change(s) from {}{}: serial {} -> {}",
        result.applied.len(),
        result.digest,
        result
            .git_commit
            .as_ref()
            .map(|c| format!(" (git {c})"))
            .unwrap_or_default(),
        result.serial_before,
        result.serial_after
    );
    if !result.not_applied.is_empty() {
        println!(
            "{} difference(s) left for other commands (see above)",
            result.not_applied.len()
        );
    }
    for cert in &result.operators {
        println!(
            "operator `{}`: certificate {} until {} ({})",
            cert.name, cert.serial, cert.not_after, cert.spiffe_id
        );
        match &args.certificates_out {
            Some(dir) => println!(
                "  written to {}",
                dir.join(format!("{}.crt", cert.name)).display()
            ),
            None => print!("{}", cert.certificate),
        }
    }
    finished(&result)
}

/// An apply whose stored changes could not all be put in force fails the command, naming
/// each: the platform serves them from its next start, or after the directory is applied
/// again.
fn finished(result: &ApplyResult) -> Result<()> {
    if result.failed.is_empty() {
        return Ok(());
    }
    for f in &result.failed {
        eprintln!("not in force: {f}");
    }
    bail!(
        "{} change(s) were stored but could not be put in force (listed above)",
        result.failed.len()
    )
}

/// The certificates an apply issued, as `<dir>/<name>.crt` and the CA as `<dir>/ca.pem`.
fn write_certificates(dir: &Path, certs: &[zerofn_api::IssuedOperator]) -> Result<()> {
    if certs.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    for cert in certs {
        // The name becomes a file name: only an operator name (a DNS label) is written.
        if cert.name.is_empty()
            || !cert
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            bail!("the platform answered with an operator name that is not a DNS label");
        }
        let path = dir.join(format!("{}.crt", cert.name));
        std::fs::write(&path, &cert.certificate)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, &cert.ca)
            .with_context(|| format!("cannot write `{}`", ca.display()))?;
    }
    Ok(())
}

pub async fn drift(data_dir: &Path, args: DriftArgs) -> Result<()> {
    let (_, desired) = read_dir(&args.dir)?;
    let api = ApiClient::discover(data_dir)?;
    let state = state(&api).await?;
    let changes = zerofn_config::diff(&state.config, &desired);
    if args.json {
        println!(
            "{}",
            serde_json::json!({"serial": state.serial, "drift": changes})
        );
    } else if changes.is_empty() {
        println!(
            "no drift: the platform (serial {}) matches the directory",
            state.serial
        );
    } else {
        println!(
            "the platform differs from the directory (serial {}); applying the directory would:",
            state.serial
        );
        print_changes(&changes);
    }
    if changes.is_empty() {
        Ok(())
    } else {
        Err(Differences.into())
    }
}

pub async fn export(data_dir: &Path, args: ExportArgs) -> Result<()> {
    if args.dir.exists()
        && std::fs::read_dir(&args.dir)
            .with_context(|| format!("cannot read `{}`", args.dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "`{}` is not empty; export into a new directory",
            args.dir.display()
        );
    }
    let api = ApiClient::discover(data_dir)?;
    let export: ConfigExport = api.fetch(Method::GET, "/v1/config/export").await?;
    let mut functions = BTreeMap::new();
    for f in export.functions {
        let component = base64::engine::general_purpose::STANDARD
            .decode(f.component.as_bytes())
            .context("the platform sent a component that is not base64")?;
        functions.insert(
            (f.tenant, f.name),
            ExportedFunction {
                component,
                bundle: f.bundle,
                attestations: f.attestations,
            },
        );
    }
    let files = zerofn_config::export(&export.config, &functions)
        .context("writing the configuration as TOML")?;
    // Every path came from `export` (names the platform parsed as tenant, function and key
    // names); still, write only plain relative paths under the directory.
    for (path, bytes) in &files {
        if path
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        {
            bail!("refusing to write `{path}`");
        }
        let target = args.dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&target)
            .with_context(|| format!("cannot create `{}`", target.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing `{}`", target.display()))?;
    }
    println!(
        "exported {} file(s) of the platform's configuration (serial {}) to {}",
        files.len(),
        export.serial,
        args.dir.display()
    );
    Ok(())
}
