//! `zerofn layer`: publish, list and delete a tenant's layers (shared
//! library components a function pins by digest in its `[layers]`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine as _;
use clap::Subcommand;
use http::Method;

use crate::append_ext;
use crate::client::ApiClient;

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
            let body = zerofn_api::PublishLayer {
                component: base64::engine::general_purpose::STANDARD.encode(&component),
                bundle,
            };
            let api = ApiClient::discover(data_dir)?;
            let layer: zerofn_api::Layer = api
                .send(Method::POST, &format!("/v1/tenants/{tenant}/layers"), &body)
                .await?;
            println!(
                "published layer {} for {tenant} exporting {} signed by {}",
                layer.digest,
                layer.exports.join(","),
                layer.signer
            );
        }
        LayerCommand::List { tenant, json } => {
            let api = ApiClient::discover(data_dir)?;
            let v = api
                .call(Method::GET, &format!("/v1/tenants/{tenant}/layers"), None)
                .await?;
            if json {
                // The answer as it came, not as this CLI's types know it.
                let layers = v.get("layers").cloned().unwrap_or_default();
                println!("{layers}");
                return Ok(());
            }
            let list: zerofn_api::LayerList =
                crate::client::typed(&format!("/v1/tenants/{tenant}/layers"), v)?;
            println!("DIGEST\tEXPORTS\tSIGNER\tPINNED BY\tPUBLISHED");
            for l in list.layers {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    l.digest,
                    l.exports.join(","),
                    l.signer,
                    l.pinned_by.join(","),
                    l.published_at
                );
            }
        }
        LayerCommand::Delete { tenant, digest } => {
            let api = ApiClient::discover(data_dir)?;
            let _: zerofn_api::LayerDeleted = api
                .fetch(
                    Method::DELETE,
                    &format!("/v1/tenants/{tenant}/layers/{digest}"),
                )
                .await?;
            println!("deleted layer {digest} of {tenant}");
        }
    }
    Ok(())
}
