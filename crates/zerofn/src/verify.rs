//! `zerofn verify`: check a Sigstore bundle offline, like `cosign verify-blob`. Argument
//! parsing and output only; the checks are `zerofn_admission::verify`, the same entry point
//! admission uses.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args};
use zerofn_admission::{
    verify, Bundle, Digest, Identity, PublicKey, SignerIdentity, TrustedRoot, VerificationPolicy,
};

/// Verify a Sigstore bundle over an artifact, offline.
#[derive(Args)]
#[command(group(
    ArgGroup::new("signer")
        .required(true)
        .args(["key", "certificate_identity", "certificate_identity_regexp"])
))]
pub struct VerifyArgs {
    /// The artifact: a file, or `sha256:<64 hex>` of it.
    artifact: String,
    /// The Sigstore bundle (JSON).
    #[arg(long)]
    bundle: PathBuf,
    /// A Sigstore `trusted_root.json`; required for keyless verification (there is no
    /// built-in trusted root).
    #[arg(long)]
    trusted_root: Option<PathBuf>,
    /// Verify with this public key (PEM) instead of a certificate identity.
    #[arg(long)]
    key: Option<PathBuf>,
    /// The exact certificate identity (SAN: URI or email) that must have signed.
    #[arg(long, requires = "certificate_oidc_issuer")]
    certificate_identity: Option<String>,
    /// A regular expression the whole certificate identity must match (unlike cosign,
    /// which searches for it anywhere): end a prefix with `.*`.
    #[arg(long, requires = "certificate_oidc_issuer")]
    certificate_identity_regexp: Option<String>,
    /// The OIDC issuer that must have vouched for the identity.
    #[arg(long, conflicts_with = "key")]
    certificate_oidc_issuer: Option<String>,
    /// Print the verified facts as one JSON object (`digest`, `signer` with `key` or
    /// `san` and `issuer`, `signing_time` when known) instead of a line of text.
    #[arg(long)]
    json: bool,
}

/// Runs `zerofn verify`: prints one summary line and returns `Ok` if the bundle verifies.
pub fn run(args: VerifyArgs) -> Result<()> {
    let digest = match Digest::parse(&args.artifact) {
        Ok(digest) => digest,
        Err(_) => {
            let bytes = std::fs::read(&args.artifact)
                .with_context(|| format!("cannot read artifact `{}`", args.artifact))?;
            Digest::of(&bytes)
        }
    };
    let bundle_json = std::fs::read(&args.bundle)
        .with_context(|| format!("cannot read bundle `{}`", args.bundle.display()))?;
    let bundle = Bundle::from_json(&bundle_json)?;
    let policy = match (&args.key, args.certificate_oidc_issuer) {
        (Some(key), _) => {
            let pem = std::fs::read_to_string(key)
                .with_context(|| format!("cannot read public key `{}`", key.display()))?;
            VerificationPolicy::Key(vec![PublicKey::from_pem(&pem)?])
        }
        (None, Some(issuer)) => {
            let Some(path) = &args.trusted_root else {
                bail!("keyless verification needs `--trusted-root FILE` (a Sigstore trusted_root.json); zerofn has no built-in trusted root");
            };
            let json = std::fs::read(path)
                .with_context(|| format!("cannot read trusted root `{}`", path.display()))?;
            let trusted_root = TrustedRoot::from_json(&json)?;
            let identity = match (args.certificate_identity, args.certificate_identity_regexp) {
                (Some(san), None) => Identity::Exact { san, issuer },
                (None, Some(san_regex)) => Identity::Regex { san_regex, issuer },
                _ => bail!(
                    "give exactly one of `--certificate-identity` and `--certificate-identity-regexp`"
                ),
            };
            VerificationPolicy::Keyless {
                trusted_root,
                identity,
            }
        }
        (None, None) => {
            bail!("give `--key`, or a certificate identity with `--certificate-oidc-issuer`")
        }
    };
    let verified = verify(&digest, &bundle, &policy)?;
    if args.json {
        let signer = match verified.identity() {
            SignerIdentity::Key(key) => serde_json::json!({ "key": key.to_string() }),
            SignerIdentity::Certificate { san, issuer } => {
                serde_json::json!({ "san": san, "issuer": issuer })
            }
        };
        let mut out = serde_json::json!({
            "digest": verified.digest().to_string(),
            "signer": signer,
        });
        if let (Some(time), Some(map)) = (verified.signing_time_rfc3339(), out.as_object_mut()) {
            map.insert("signing_time".into(), time.into());
        }
        println!("{out}");
        return Ok(());
    }
    match verified.signing_time_rfc3339() {
        Some(time) => println!(
            "verified {} signed by {} at {time}",
            verified.digest(),
            verified.identity()
        ),
        None => println!(
            "verified {} signed by {}",
            verified.digest(),
            verified.identity()
        ),
    }
    Ok(())
}
