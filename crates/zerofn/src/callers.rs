//! `zerofn auth jwt` and `zerofn apikey`: the external callers of a tenant's functions.
//!
//! `apikey create` prints the key once, on stdout and nowhere else; the platform keeps
//! only a salted hash of it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use http::Method;
use serde_json::{json, Value};

use crate::client::ApiClient;

#[derive(Subcommand)]
pub enum AuthCommand {
    /// JWT issuers whose tokens authenticate callers (`[invoke] from = ["jwt:NAME"]`).
    #[command(subcommand)]
    Jwt(JwtCommand),
    /// CAs whose client certificates authenticate callers (`[invoke] from = ["mtls:NAME"]`).
    #[command(subcommand)]
    Mtls(crate::mtls::MtlsCommand),
}

#[derive(Subcommand)]
pub enum JwtCommand {
    /// Register issuer NAME for TENANT.
    Add {
        tenant: String,
        name: String,
        /// The exact `iss` of its tokens (https URL).
        #[arg(long)]
        issuer: String,
        /// What the token's `aud` must include.
        #[arg(long)]
        audience: String,
        /// The issuer's JWKS (public signing keys).
        #[arg(
            long,
            conflicts_with = "jwks_url",
            required_unless_present = "jwks_url"
        )]
        jwks: Option<PathBuf>,
        /// Fetch the JWKS from this https URL instead: fetched once now (a URL that does
        /// not serve a valid JWKS is refused), then refreshed by the platform.
        #[arg(long)]
        jwks_url: Option<String>,
        /// Allowed algorithms, comma-separated (default RS256,ES256).
        #[arg(long, value_delimiter = ',')]
        algorithms: Option<Vec<String>>,
        /// Clock-skew leeway for exp/nbf/iat, 0 to 300 (default 60).
        #[arg(long)]
        leeway_secs: Option<u64>,
        /// Every token must carry a `jti` and is accepted once (replays are refused);
        /// tokens must then expire within 24 hours.
        #[arg(long)]
        require_jti: bool,
    },
    /// List TENANT's issuers.
    List {
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove issuer NAME of TENANT: its tokens are refused at once.
    Remove { tenant: String, name: String },
}

#[derive(Subcommand)]
pub enum ApiKeyCommand {
    /// Create API key NAME for TENANT's FUNCTIONS; prints the key once.
    Create {
        tenant: String,
        name: String,
        /// Functions the key may invoke, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        functions: Vec<String>,
        /// Lifetime: a number with s, m, h or d (e.g. 30d); default: no expiry.
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List TENANT's keys (never the keys themselves).
    List {
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke key NAME of TENANT: it stops working at once.
    Revoke { tenant: String, name: String },
}

/// Member `key` of an answer, or null.
fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or(&Value::Null)
}

/// `30d`, `12h`, `15m`, `90s` in seconds.
fn duration_secs(text: &str) -> Result<u64> {
    let (digits, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = digits
        .parse()
        .with_context(|| format!("`{text}` is not a number followed by s, m, h or d"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("`{text}` is not a number followed by s, m, h or d"),
    };
    n.checked_mul(unit)
        .filter(|s| *s > 0)
        .with_context(|| format!("`{text}` is out of range"))
}

/// For an issuer registered with `--jwks-url`: the URL, the time of the last good fetch
/// and the last error, if any (escaped: the error may quote what a remote server sent).
fn jwks_url_columns(issuer: &Value) -> String {
    let Some(url) = issuer.get("jwks_url").and_then(Value::as_str) else {
        return String::new();
    };
    let fetched = issuer
        .get("jwks_fetched_at")
        .and_then(Value::as_i64)
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "never".into());
    let mut out = format!("\tjwks_url={}\tfetched={fetched}", url.escape_debug());
    if let Some(error) = issuer.get("jwks_error").and_then(Value::as_str) {
        out.push_str(&format!("\tlast_error={}", error.escape_debug()));
    }
    out
}

pub async fn run_auth(data_dir: &Path, cmd: AuthCommand) -> Result<()> {
    let cmd = match cmd {
        AuthCommand::Jwt(cmd) => cmd,
        AuthCommand::Mtls(cmd) => return crate::mtls::run(data_dir, cmd).await,
    };
    let api = ApiClient::discover(data_dir)?;
    match cmd {
        JwtCommand::Add {
            tenant,
            name,
            issuer,
            audience,
            jwks,
            jwks_url,
            algorithms,
            leeway_secs,
            require_jti,
        } => {
            let jwks = match jwks {
                Some(path) => {
                    let text = std::fs::read(&path)
                        .with_context(|| format!("cannot read `{}`", path.display()))?;
                    Some(
                        serde_json::from_slice::<Value>(&text)
                            .with_context(|| format!("`{}` is not JSON", path.display()))?,
                    )
                }
                None => None,
            };
            let body = json!({
                "name": name, "issuer": issuer, "audience": audience, "jwks": jwks,
                "jwks_url": jwks_url, "algorithms": algorithms, "leeway_secs": leeway_secs,
                "require_jti": require_jti,
            });
            let added: Value = api
                .send(
                    Method::POST,
                    &format!("/v1/tenants/{tenant}/auth/jwt"),
                    &body,
                )
                .await?;
            println!(
                "registered issuer {name} for {tenant}: iss {} aud {} algorithms {}",
                field(&added, "issuer").as_str().unwrap_or(""),
                field(&added, "audience").as_str().unwrap_or(""),
                field(&added, "algorithms").as_str().unwrap_or("")
            );
        }
        JwtCommand::List { tenant, json } => {
            let v: Value = api
                .fetch(Method::GET, &format!("/v1/tenants/{tenant}/auth/jwt"))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for i in field(&v, "issuers").as_array().into_iter().flatten() {
                    println!(
                        "{}\t{}\taud={}\t{}\tleeway={}s{}",
                        field(i, "name").as_str().unwrap_or(""),
                        field(i, "issuer").as_str().unwrap_or(""),
                        field(i, "audience").as_str().unwrap_or(""),
                        field(i, "algorithms").as_str().unwrap_or(""),
                        field(i, "leeway_secs"),
                        jwks_url_columns(i)
                    );
                }
            }
        }
        JwtCommand::Remove { tenant, name } => {
            api.remove(&format!("/v1/tenants/{tenant}/auth/jwt/{name}"))
                .await?;
            println!("removed issuer {name} of {tenant}");
        }
    }
    Ok(())
}

pub async fn run_apikey(data_dir: &Path, cmd: ApiKeyCommand) -> Result<()> {
    let api = ApiClient::discover(data_dir)?;
    match cmd {
        ApiKeyCommand::Create {
            tenant,
            name,
            functions,
            expires_in,
        } => {
            let expires_in_secs = expires_in.as_deref().map(duration_secs).transpose()?;
            let body =
                json!({"name": name, "functions": functions, "expires_in_secs": expires_in_secs});
            let created: Value = api
                .send(
                    Method::POST,
                    &format!("/v1/tenants/{tenant}/apikeys"),
                    &body,
                )
                .await?;
            let Some(key) = field(&created, "key").as_str() else {
                bail!("the platform's answer holds no key");
            };
            eprintln!(
                "created API key {name} ({}) for {tenant}: {}; it is shown this once",
                field(&created, "key_id").as_str().unwrap_or(""),
                functions.join(",")
            );
            println!("{key}");
        }
        ApiKeyCommand::List { tenant, json } => {
            let v: Value = api
                .fetch(Method::GET, &format!("/v1/tenants/{tenant}/apikeys"))
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for k in field(&v, "keys").as_array().into_iter().flatten() {
                    let functions: Vec<&str> = field(k, "functions")
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    println!(
                        "{}\t{}\t{}\texpires_at={}",
                        field(k, "name").as_str().unwrap_or(""),
                        field(k, "key_id").as_str().unwrap_or(""),
                        functions.join(","),
                        field(k, "expires_at")
                    );
                }
            }
        }
        ApiKeyCommand::Revoke { tenant, name } => {
            let v: Value = api
                .fetch(
                    Method::DELETE,
                    &format!("/v1/tenants/{tenant}/apikeys/{name}"),
                )
                .await?;
            println!(
                "revoked API key {name} ({}) of {tenant}",
                field(&v, "key_id").as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_only() {
        assert_eq!(duration_secs("30d").unwrap(), 30 * 86_400);
        assert_eq!(duration_secs("90s").unwrap(), 90);
        for bad in ["", "d", "30", "30w", "-1d", "0s", "99999999999999999999d"] {
            assert!(duration_secs(bad).is_err(), "{bad}");
        }
    }
}
