//! `zerofn operator`: operators' client certificates and the control policy.
//!
//! `add` makes the operator's ECDSA P-256 key here, sends only the public key, and writes
//! the certificate the platform CA issued for it beside the key (mode 0600) and the CA
//! bundle, ready for `--client-cert`/`--client-key`/`--ca-bundle`. The private key never
//! leaves this process except into that file, and is never printed.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use http::Method;
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

use crate::client::ApiClient;

#[derive(Subcommand)]
pub enum OperatorCommand {
    /// Issue a client certificate for operator NAME: writes DIR/NAME.key (0600),
    /// DIR/NAME.crt and DIR/ca.pem. Issuing again for a NAME renews it.
    Add {
        /// 1 to 63 of a-z, 0-9 and `-`.
        name: String,
        #[arg(long)]
        out: PathBuf,
        /// Certificate lifetime in hours.
        #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u64).range(1..=24))]
        ttl_hours: u64,
    },
    /// List operators' certificates.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove operator NAME: revokes every certificate issued to it, at once.
    Remove { name: String },
    /// The control policy: which operator may take which control action.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Replace the platform control policy with the Cedar policies in FILE
    /// (validated whole; on any error the policy in force stays).
    Set { file: PathBuf },
    /// Print the platform control policy.
    Show,
}

pub async fn run(data_dir: &Path, cmd: OperatorCommand) -> Result<()> {
    match cmd {
        OperatorCommand::Add {
            name,
            out,
            ttl_hours,
        } => add(data_dir, &name, &out, ttl_hours).await,
        OperatorCommand::List { json } => list(data_dir, json).await,
        OperatorCommand::Remove { name } => {
            let api = ApiClient::discover(data_dir)?;
            let removed: zerofn_api::OperatorRemoved = api
                .fetch(Method::DELETE, &format!("/v1/operators/{name}"))
                .await?;
            println!(
                "removed operator {name}; revoked {}",
                removed.revoked.join(",")
            );
            Ok(())
        }
        OperatorCommand::Policy(PolicyCommand::Set { file }) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read `{}`", file.display()))?;
            let api = ApiClient::discover(data_dir)?;
            let set: zerofn_api::ControlPolicyIds = api
                .send(
                    Method::PUT,
                    "/v1/control-policy",
                    &zerofn_api::SetControlPolicy { policy: text },
                )
                .await?;
            println!("control policy set: {}", set.ids.join(","));
            Ok(())
        }
        OperatorCommand::Policy(PolicyCommand::Show) => {
            let api = ApiClient::discover(data_dir)?;
            let shown: zerofn_api::ControlPolicy =
                api.fetch(Method::GET, "/v1/control-policy").await?;
            print!("{}", shown.builtin);
            let policy = shown.policy;
            if !policy.is_empty() {
                println!();
                print!("{policy}");
                if !policy.ends_with('\n') {
                    println!();
                }
            }
            Ok(())
        }
    }
}

async fn add(data_dir: &Path, name: &str, out: &Path, ttl_hours: u64) -> Result<()> {
    let key_path = out.join(format!("{name}.key"));
    let cert_path = out.join(format!("{name}.crt"));
    let ca_path = out.join("ca.pem");
    if key_path.exists() || cert_path.exists() {
        bail!(
            "`{}` or `{}` already exists; refusing to overwrite a key",
            key_path.display(),
            cert_path.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating `{}`", out.display()))?;
    let key = p256::SecretKey::random(&mut rand_core::OsRng);
    let public = key
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .context("encoding the public key")?;
    let key_pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .context("encoding the private key")?;

    let api = ApiClient::discover(data_dir)?;
    let issued: zerofn_api::IssuedOperator = api
        .send(
            Method::POST,
            "/v1/operators",
            &zerofn_api::AddOperator {
                name: name.to_owned(),
                public_key: public,
                ttl_hours: Some(ttl_hours),
            },
        )
        .await?;

    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .with_context(|| format!("creating `{}`", key_path.display()))?;
    f.write_all(key_pem.as_bytes())
        .with_context(|| format!("writing `{}`", key_path.display()))?;
    std::fs::write(&cert_path, &issued.certificate)
        .with_context(|| format!("writing `{}`", cert_path.display()))?;
    std::fs::write(&ca_path, &issued.ca)
        .with_context(|| format!("writing `{}`", ca_path.display()))?;
    println!(
        "operator {} ({}) serial {} until {}: wrote {}, {} and {}",
        issued.name,
        issued.spiffe_id,
        issued.serial,
        issued.not_after,
        cert_path.display(),
        key_path.display(),
        ca_path.display()
    );
    Ok(())
}

async fn list(data_dir: &Path, as_json: bool) -> Result<()> {
    let api = ApiClient::discover(data_dir)?;
    let v = api.call(Method::GET, "/v1/operators", None).await?;
    if as_json {
        // The answer as it came, not as this CLI's types know it.
        let rows = v.get("operators").cloned().unwrap_or_default();
        println!("{rows}");
        return Ok(());
    }
    let list: zerofn_api::OperatorList = crate::client::typed("/v1/operators", v)?;
    println!("NAME\tSERIAL\tNOT_AFTER\tSTATUS");
    for r in list.operators {
        let status = match &r.revoked_at {
            Some(at) => format!("revoked {at}"),
            None => "active".to_owned(),
        };
        println!("{}\t{}\t{}\t{status}", r.name, r.serial, r.not_after);
    }
    Ok(())
}
