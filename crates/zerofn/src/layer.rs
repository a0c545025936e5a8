//! `zerofn layer`: publish, list and delete a tenant's layers (shared
//! library components a function pins by digest in its `[layers]`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine as _;
use clap::Subcommand;
use http::Method;
use serde_json::json;

use crate::client::ApiClient;
use crate::{append_ext, join_strings, str_of};

#[derive(Subcommand)]
pub enum LayerCommand {
    /// Publish FILE.wasm as a layer of TENANT, signed by FILE.wasm.sigstore.json
    /// beside it; prints the digest to pin in a function's `[layers]`.
    Publish { tenant: String, file: PathBuf },
    /// List a tenant's layers and the functions pinning each.
    List {
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a layer (refused while a deployment pins it).
    Delete { tenant: String, digest: String },
}

pub async fn run(data_dir: &Path, cmd: LayerCommand) -> Result<()> {
    match cmd {
        LayerCommand::Publish { tenant, file } => {
            let component =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let bundle_path = append_ext(&file, "sigstore.json");
            let bundle = std::fs::read_to_string(&bundle_path).with_context(|| {
                format!(
                    "cannot read the layer's bundle {}; sign it with `zerofn sign {} --key KEY`",
                    bundle_path.display(),
                    file.display()
                )
            })?;
            let body = json!({
                "component": base64::engine::general_purpose::STANDARD.encode(&component),
                "bundle": bundle,
            });
            let api = ApiClient::discover(data_dir)?;
            let v = api
                .call(
                    Method::POST,
                    &format!("/v1/tenants/{tenant}/layers"),
                    Some(body),
                )
                .await?;
            println!(
                "published layer {} for {tenant} exporting {} signed by {}",
                str_of(&v, "digest"),
                join_strings(v.get("exports")),
                str_of(&v, "signer")
            );
        }
        LayerCommand::List { tenant, json } => {
            let api = ApiClient::discover(data_dir)?;
            let v = api
                .call(Method::GET, &format!("/v1/tenants/{tenant}/layers"), None)
                .await?;
            let layers = v.get("layers").cloned().unwrap_or_default();
            if json {
                println!("{layers}");
                return Ok(());
            }
            println!("DIGEST\tEXPORTS\tSIGNER\tPINNED BY\tPUBLISHED");
            for l in layers.as_array().into_iter().flatten() {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    str_of(l, "digest"),
                    join_strings(l.get("exports")),
                    str_of(l, "signer"),
                    join_strings(l.get("pinned_by")),
                    str_of(l, "published_at")
                );
            }
        }
        LayerCommand::Delete { tenant, digest } => {
            let api = ApiClient::discover(data_dir)?;
            api.call(
                Method::DELETE,
                &format!("/v1/tenants/{tenant}/layers/{digest}"),
                None,
            )
            .await?;
            println!("deleted layer {digest} of {tenant}");
        }
    }
    Ok(())
}
