//! `zerofn policy` (the runtime Cedar policies of a function or tenant)
//! and `zerofn access-analyzer` (granted versus used permissions).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use http::Method;

use crate::client::ApiClient;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Show the policies of a function (compiled from its manifest, and the
    /// tenant's hand-written ones), or with only TENANT the tenant's
    /// hand-written policy.
    Show {
        tenant: String,
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Replace the tenant's hand-written Cedar policy with FILE (validated
    /// against the schema first; refused whole if invalid), or remove it
    /// with --clear.
    Set {
        tenant: String,
        #[arg(required_unless_present = "clear")]
        file: Option<PathBuf>,
        #[arg(long, conflicts_with = "file")]
        clear: bool,
    },
}

pub async fn run(data_dir: &Path, cmd: PolicyCommand) -> Result<()> {
    let api = ApiClient::discover(data_dir)?;
    match cmd {
        PolicyCommand::Show { tenant, name, json } => {
            let path = match &name {
                Some(name) => format!("/v1/tenants/{tenant}/functions/{name}/policy"),
                None => format!("/v1/tenants/{tenant}/policy"),
            };
            let v = api.call(Method::GET, &path, None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            let (hand_written, zone_policy) = if name.is_some() {
                let f: zerofn_api::FunctionPolicy = crate::client::typed(&path, v)?;
                println!("// compiled from the manifest of {tenant}/{}", f.name);
                print!("{}", f.compiled);
                (f.tenant_policy, f.zone_policy)
            } else {
                let t: zerofn_api::TenantPolicy = crate::client::typed(&path, v)?;
                (t.policy, t.zone_policy)
            };
            if let Some(text) = zone_policy {
                println!("// compiled from the trust zone of tenant {tenant} (`zerofn zone show`)");
                print!("{text}");
            }
            match hand_written {
                Some(text) => {
                    println!("// hand-written policy of tenant {tenant}");
                    print!("{text}");
                    if !text.ends_with('\n') {
                        println!();
                    }
                }
                None => println!("// tenant {tenant} has no hand-written policy"),
            }
            Ok(())
        }
        PolicyCommand::Set {
            tenant,
            file,
            clear,
        } => {
            let policy = match (&file, clear) {
                (_, true) => None,
                (Some(file), false) => Some(
                    std::fs::read_to_string(file)
                        .with_context(|| format!("cannot read {}", file.display()))?,
                ),
                (None, false) => anyhow::bail!("give a policy FILE or --clear"),
            };
            let set: zerofn_api::TenantPolicySet = api
                .send(
                    Method::PUT,
                    &format!("/v1/tenants/{tenant}/policy"),
                    &zerofn_api::SetPolicy { policy },
                )
                .await?;
            let ids = set.policies;
            if ids.is_empty() {
                println!("tenant {tenant}: hand-written policy removed");
            } else {
                println!("tenant {tenant}: policy in force: {}", ids.join(", "));
            }
            Ok(())
        }
    }
}

#[derive(Args)]
pub struct AnalyzerArgs {
    /// Only this tenant's functions.
    tenant: Option<String>,
    /// Only this function (needs TENANT).
    name: Option<String>,
    /// The window of audit records to read: 90s, 30m, 24h, 7d.
    #[arg(long, default_value = "24h")]
    since: String,
    #[arg(long)]
    json: bool,
}

pub async fn analyze(data_dir: &Path, args: AnalyzerArgs) -> Result<()> {
    let api = ApiClient::discover(data_dir)?;
    let mut query = format!("since={}", args.since);
    if let Some(t) = &args.tenant {
        query.push_str(&format!("&tenant={t}"));
    }
    if let Some(n) = &args.name {
        query.push_str(&format!("&name={n}"));
    }
    let v = api
        .call(Method::GET, &format!("/v1/access-analyzer?{query}"), None)
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let report: zerofn_api::AccessReport = crate::client::typed("/v1/access-analyzer", v)?;
    let list = |items: &[String]| -> String {
        if items.is_empty() {
            "-".to_owned()
        } else {
            items.join(", ")
        }
    };
    println!("since {} ({} audit records)", report.since, report.records);
    for f in &report.functions {
        println!("\n{}/{}", f.tenant, f.name);
        println!("  granted: {}", list(&f.granted));
        println!("  used:    {}", list(&f.used));
        println!("  unused:  {}", list(&f.unused));
        println!("  denied:  {}", list(&f.denied));
        println!("  least privilege:");
        for line in f.suggested.lines() {
            println!("    {line}");
        }
    }
    Ok(())
}
