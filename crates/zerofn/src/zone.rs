//! `zerofn zone`: trust zones (docs/zones.md). `set` checks the document here first, so a
//! mistake is named with the file before anything is sent; the platform checks it again,
//! with every other zone, before anything changes.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use http::Method;
use zerofn_manifest::zone::MAX_ZONE_BYTES;

use crate::client::ApiClient;

#[derive(Subcommand)]
pub enum ZoneCommand {
    /// Create or replace the zones the FILEs describe (`zones/<name>.toml` documents),
    /// together: all or nothing, so two zones that name each other are set in one step.
    Set {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The FILEs are every zone: delete the zones not among them.
        #[arg(long)]
        all: bool,
    },
    /// List the zones.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a zone: its document and the Cedar policies it compiles to.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a zone (its tenants are then in no zone).
    Delete { name: String },
}

/// Reads a zone document, refusing one over the size limit without reading it all.
fn read_document(file: &Path) -> Result<String> {
    let f =
        std::fs::File::open(file).with_context(|| format!("cannot read `{}`", file.display()))?;
    let limit = u64::try_from(MAX_ZONE_BYTES).unwrap_or(u64::MAX);
    let mut text = String::new();
    f.take(limit + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read `{}` as UTF-8 text", file.display()))?;
    if text.len() > MAX_ZONE_BYTES {
        bail!(
            "`{}`: a zone document is at most {MAX_ZONE_BYTES} bytes",
            file.display()
        );
    }
    Ok(text)
}

/// A field of an answer; absent reads as null.
fn field<'a>(v: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    v.get(key).unwrap_or(&serde_json::Value::Null)
}

fn list_text(items: &serde_json::Value) -> String {
    let items: Vec<&str> = items
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

pub async fn run(data_dir: &Path, cmd: ZoneCommand) -> Result<()> {
    match cmd {
        ZoneCommand::Set { files, all } => {
            let mut documents = Vec::with_capacity(files.len());
            let mut zones = Vec::with_capacity(files.len());
            for file in &files {
                let document = read_document(file)?;
                let zone = crate::diagnose::parse_zone(file, &document)?;
                documents.push(document);
                zones.push(zone);
            }
            let api = ApiClient::discover(data_dir)?;
            match (&files[..], &zones[..], &documents[..]) {
                ([file], [zone], [document]) if !all => {
                    api.call(
                        Method::PUT,
                        &format!("/v1/zones/{}", zone.name),
                        Some(serde_json::json!({ "document": document })),
                    )
                    .await
                    .with_context(|| format!("`{}`", file.display()))?;
                }
                _ => {
                    api.call(
                        Method::PUT,
                        "/v1/zones",
                        Some(serde_json::json!({ "documents": documents, "replace_all": all })),
                    )
                    .await?;
                }
            }
            for zone in &zones {
                println!(
                    "zone {} set: {} tenants, {} egress entries",
                    zone.name,
                    zone.tenants.len(),
                    zone.egress.len()
                );
            }
            Ok(())
        }
        ZoneCommand::List { json } => {
            let api = ApiClient::discover(data_dir)?;
            let v = api.call(Method::GET, "/v1/zones", None).await?;
            let zones = field(&v, "zones").as_array().cloned().unwrap_or_default();
            if json {
                println!("{}", serde_json::to_string_pretty(&zones)?);
                return Ok(());
            }
            if zones.is_empty() {
                println!("no zones: every tenant keeps its own policies only");
            }
            for z in &zones {
                println!(
                    "{}  tenants: {}  calls: {}  called_from: {}  egress: {}",
                    field(z, "name").as_str().unwrap_or("?"),
                    list_text(field(z, "tenants")),
                    list_text(field(z, "calls")),
                    list_text(field(z, "called_from")),
                    list_text(field(z, "egress")),
                );
            }
            Ok(())
        }
        ZoneCommand::Show { name, json } => {
            let api = ApiClient::discover(data_dir)?;
            let v = api
                .call(Method::GET, &format!("/v1/zones/{name}"), None)
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            println!(
                "# zone {name}, set {}",
                field(&v, "updated_at").as_str().unwrap_or("?")
            );
            let document = field(&v, "document").as_str().unwrap_or("");
            print!("{document}");
            if !document.ends_with('\n') {
                println!();
            }
            if let Some(policies) = field(&v, "policies").as_object() {
                for (tenant, text) in policies {
                    println!("\n// compiled for tenant {tenant}");
                    print!("{}", text.as_str().unwrap_or(""));
                }
            }
            Ok(())
        }
        ZoneCommand::Delete { name } => {
            let api = ApiClient::discover(data_dir)?;
            api.call(Method::DELETE, &format!("/v1/zones/{name}"), None)
                .await?;
            println!("zone {name} deleted");
            Ok(())
        }
    }
}
