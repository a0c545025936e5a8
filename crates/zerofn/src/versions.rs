//! `zerofn versions TENANT NAME` and `zerofn rollback TENANT NAME --to N`: a function's
//! numbered deploys, and deploying an earlier one again through admission.
//!
//! The platform numbers every deploy of a function (1, 2, ...); that number is what
//! `--to` takes. It is not the signed manifest's version (`zerofn sign --version`), which
//! the listing shows beside it: rollback protection compares the latter, so a rollback
//! below the highest manifest version is recorded as one in the audit log.

use std::path::Path;

use anyhow::Result;
use clap::Args;
use http::Method;
use zerofn_api as api_types;
use zerofn_types::printable;

use crate::client::ApiClient;

#[derive(Args)]
pub struct VersionsArgs {
    tenant: String,
    name: String,
    /// Print the versions as one JSON object (`{"versions": [...]}`, newest first).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RollbackArgs {
    tenant: String,
    name: String,
    /// The deploy number to deploy again (see `zerofn versions TENANT NAME`).
    #[arg(long, value_name = "VERSION")]
    to: u64,
    /// Why, recorded in the audit log (one line).
    #[arg(long)]
    reason: Option<String>,
    /// Print the platform's answer as JSON (one object).
    #[arg(long)]
    json: bool,
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Versions {
    versions: Vec<api_types::FunctionVersion>,
}

pub async fn versions(data_dir: &Path, args: VersionsArgs) -> Result<()> {
    let api = ApiClient::discover(data_dir)?;
    let path = format!("/v1/functions/{}/{}/versions", args.tenant, args.name);
    let listed: Versions = api.fetch(Method::GET, &path).await?;
    if args.json {
        println!("{}", serde_json::to_string(&listed)?);
        return Ok(());
    }
    println!("VERSION\tKIND\tMANIFEST\tDEPLOYED AT\tBY\tDIGEST\tSIGNER\tKEPT");
    for v in &listed.versions {
        let kind = match (v.kind.as_str(), v.rollback_to) {
            ("rollback", Some(to)) => format!("rollback to {to}"),
            (kind, _) => kind.to_owned(),
        };
        println!(
            "{}{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            v.number,
            if v.current { " (current)" } else { "" },
            kind,
            v.manifest_version,
            v.deployed_at,
            printable(&v.deployed_by),
            v.digest,
            printable(&v.signer),
            if v.kept { "yes" } else { "no" },
        );
    }
    Ok(())
}

pub async fn rollback(data_dir: &Path, args: RollbackArgs) -> Result<()> {
    let api = ApiClient::discover(data_dir)?;
    let path = format!("/v1/functions/{}/{}/rollback", args.tenant, args.name);
    let deployed: api_types::Deployed = api
        .send(
            Method::POST,
            &path,
            &api_types::RollbackRequest {
                to: args.to,
                reason: args.reason,
            },
        )
        .await?;
    if args.json {
        println!("{}", serde_json::to_string(&deployed)?);
    } else {
        println!(
            "rolled {}/{} back to version {}: now version {} (manifest version {}) {}",
            deployed.tenant,
            deployed.name,
            args.to,
            deployed.number,
            deployed.version,
            deployed.digest
        );
    }
    Ok(())
}
