//! `zerofn auth mtls`: the certificate authorities whose client certificates authenticate
//! callers of a tenant's functions (`[invoke] from = ["mtls:NAME"]`).
//!
//! Only CA certificates are sent; the platform checks them (parsed, CAs, within validity,
//! bounded) and refuses a file that holds a private key.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use http::Method;
use serde_json::{json, Value};

use crate::client::ApiClient;

/// Largest CA file read (the platform refuses more than 64 KiB anyway).
const MAX_CA_FILE_BYTES: u64 = 64 * 1024;

#[derive(Subcommand)]
pub enum MtlsCommand {
    /// Register CA NAME for TENANT from a PEM file of one or more CA certificates.
    Add {
        tenant: String,
        name: String,
        /// The CA certificate(s), PEM (never the key).
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// List TENANT's CAs.
    List {
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove CA NAME of TENANT: certificates it issued are refused at once.
    Remove { tenant: String, name: String },
}

fn read_ca(path: &Path) -> Result<String> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?
        .len();
    if len > MAX_CA_FILE_BYTES {
        anyhow::bail!(
            "`{}` is larger than {MAX_CA_FILE_BYTES} bytes; is it the CA certificate?",
            path.display()
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    String::from_utf8(bytes)
        .ok()
        .with_context(|| format!("`{}` is not PEM text", path.display()))
}

fn certificates(v: &Value) -> impl Iterator<Item = &Value> {
    v.get("certificates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

pub async fn run(data_dir: &Path, cmd: MtlsCommand) -> Result<()> {
    let api = ApiClient::discover(data_dir)?;
    match cmd {
        MtlsCommand::Add {
            tenant,
            name,
            ca,
            json,
        } => {
            let ca_pem = read_ca(&ca)?;
            let added: Value = api
                .send(
                    Method::POST,
                    &format!("/v1/tenants/{tenant}/auth/mtls"),
                    &json!({"name": name, "ca_pem": ca_pem}),
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&added)?);
            } else {
                println!("registered CA {name} for {tenant}:");
                for c in certificates(&added) {
                    println!("  {}\t{}", text(c, "subject"), text(c, "fingerprint"));
                }
            }
        }
        MtlsCommand::List { tenant, json } => {
            let v: Value = api
                .fetch(Method::GET, &format!("/v1/tenants/{tenant}/auth/mtls"))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for ca in v.get("cas").and_then(Value::as_array).into_iter().flatten() {
                    for c in certificates(ca) {
                        let not_after = c.get("not_after").and_then(Value::as_i64).unwrap_or(0);
                        println!(
                            "{}\t{}\tnot_after={not_after}\t{}",
                            text(ca, "name"),
                            text(c, "subject"),
                            text(c, "fingerprint")
                        );
                    }
                }
            }
        }
        MtlsCommand::Remove { tenant, name } => {
            api.remove(&format!("/v1/tenants/{tenant}/auth/mtls/{name}"))
                .await?;
            println!("removed CA {name} of {tenant}");
        }
    }
    Ok(())
}
