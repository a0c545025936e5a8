//! `zerofn up --demo`: deploy the example functions, signed with a demo
//! key created on first run, into tenant `demo`.

use std::path::Path;
use zerofn_types::TenantName;

use zerofn_admission::{sign_artifact, Manifest, SigningKey};

use crate::control::{ControlError, ControlPlane, DeployRequest, DeployResponse};
use crate::datadir::write_private;
use crate::{DataDir, ServerError};

const DEMO_TENANT: &str = "demo";
const DEMO_KEY: &str = "demo-signing-key.pem";

fn demo_key(data: &DataDir) -> Result<SigningKey, ServerError> {
    let path = data.root().join(DEMO_KEY);
    match std::fs::read_to_string(&path) {
        Ok(pem) => SigningKey::from_pem(&pem).map_err(|e| ServerError::Demo(e.to_string())),
        Err(_) => {
            let key = SigningKey::generate();
            let pem = key
                .to_pkcs8_pem()
                .map_err(|e| ServerError::Demo(e.to_string()))?;
            write_private(&path, pem.as_bytes())?;
            Ok(key)
        }
    }
}

/// Deploy every `*/zerofn.toml` function under `dir` whose component is
/// built. Returns what was deployed.
pub(crate) async fn deploy_examples(
    control: &ControlPlane,
    data: &DataDir,
    dir: &Path,
) -> Result<Vec<DeployResponse>, ServerError> {
    let key = demo_key(data)?;
    let public = key.public_key();
    // The examples serve `/hello`, `/echo/...` and so on: the demo tenant
    // gets the whole path space, unless an operator already gave `/...` to
    // another tenant (then it keeps the default `/demo/...`).
    let everything = ["/...".to_owned()];
    let created = match control
        .create_tenant("demo", DEMO_TENANT, &[public.to_pem()], &everything)
        .await
    {
        Err(ControlError::Store(zerofn_store::StoreError::PrefixTaken { owner, .. })) => {
            tracing::warn!(%owner, "`/...` belongs to another tenant; the demo tenant gets `/demo/...`");
            control
                .create_tenant("demo", DEMO_TENANT, &[public.to_pem()], &[])
                .await
        }
        other => other,
    };
    match created {
        Ok(_) => {}
        Err(ControlError::Store(zerofn_store::StoreError::TenantExists(_))) => {
            let demo_tenant = TenantName::parse(DEMO_TENANT)
                .map_err(|e| ServerError::Demo(format!("the demo tenant's name: {e}")))?;
            let trusted = control.store().tenant_keys(&demo_tenant).await?;
            if !trusted
                .iter()
                .any(|k| k.key_id == public.key_id().to_string())
            {
                control
                    .add_key("demo", &demo_tenant, &public.to_pem())
                    .await?;
            }
        }
        Err(e) => return Err(e.into()),
    }
    let entries = std::fs::read_dir(dir).map_err(|e| {
        ServerError::Demo(format!(
            "cannot read the examples directory `{}`: {e}; build them with `scripts/build-examples`",
            dir.display()
        ))
    })?;
    let mut dirs: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    dirs.sort();
    // The examples to deploy first, so progress can say "3/11".
    let mut todo = Vec::new();
    for fn_dir in dirs {
        let Ok(manifest_text) = std::fs::read_to_string(fn_dir.join("zerofn.toml")) else {
            continue;
        };
        let manifest = Manifest::from_toml(&manifest_text)
            .map_err(|e| ServerError::Demo(format!("`{}`: {e}", fn_dir.display())))?;
        if manifest.tenant.as_str() != DEMO_TENANT {
            continue;
        }
        if !fn_dir.join(&manifest.component).is_file() {
            tracing::warn!(dir = %fn_dir.display(), "example not built; skipping");
            continue;
        }
        todo.push((fn_dir, manifest_text, manifest));
    }
    let total = todo.len();
    let mut deployed = Vec::new();
    for (done_count, (fn_dir, manifest_text, manifest)) in todo.into_iter().enumerate() {
        let started = std::time::Instant::now();
        let Ok(component) = std::fs::read(fn_dir.join(&manifest.component)) else {
            tracing::warn!(dir = %fn_dir.display(), "example not readable; skipping");
            continue;
        };
        let bundle =
            sign_artifact(&component, &key).map_err(|e| ServerError::Demo(e.to_string()))?;
        // The demo signs its examples' manifests as their author would: the same version
        // for the same content, the next one for a rebuilt example (rollback protection
        // holds for the demo's own functions too).
        let digest = zerofn_admission::Digest::of(&component);
        let mut version = manifest.version.unwrap_or(1);
        if let Some(floor) = control.version_floor(&manifest).await? {
            if floor.content_digest == zerofn_admission::intent_content_digest(&digest, &manifest) {
                version = floor.version;
            } else if manifest.version.is_none() {
                version = version.max(floor.version.saturating_add(1));
            }
        }
        let signed_manifest = zerofn_admission::sign_manifest(&manifest, &digest, version, &key)
            .map_err(|e| ServerError::Demo(e.to_string()))?;
        let done = control
            .deploy_internal(DeployRequest {
                manifest: manifest_text,
                component,
                bundle: bundle.into_bytes(),
                attestations: vec![zerofn_admission::SubmittedFile {
                    name: zerofn_admission::MANIFEST_BUNDLE_FILE.to_owned(),
                    bytes: signed_manifest.into_bytes(),
                }],
                allow_rollback: None,
            })
            .await?;
        // Admission and compiling a component take from milliseconds (C) to
        // seconds (Python, JavaScript): say where the start is.
        tracing::info!(
            "deployed example {}/{total}: {} ({} ms)",
            done_count + 1,
            manifest.name,
            started.elapsed().as_millis()
        );
        deployed.push(done);
    }
    Ok(deployed)
}
