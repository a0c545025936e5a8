//! A minimal client for the control API: finds the endpoint and the
//! operator's credential, sends JSON, turns API errors into one-line
//! messages.
//!
//! The credential is the operator token, or an operator client certificate
//! (`--client-cert`/`--client-key`), which needs an `https://` API URL. Over
//! `https://` the server must present a certificate that chains to the
//! platform CA (`--ca-bundle`, else `identity/ca.pem` in the data
//! directory) and names the host of the URL; no other root is trusted. The
//! token and the key are never printed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// How to reach and authenticate to the control API, from the global flags.
#[derive(Debug, Default, Clone)]
pub struct ClientOptions {
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub ca_bundle: Option<PathBuf>,
}

static OPTIONS: OnceLock<ClientOptions> = OnceLock::new();

/// Set the options every [`ApiClient::discover`] uses; called once by `main`.
pub fn configure(options: ClientOptions) {
    let _ = OPTIONS.set(options);
}

enum Credential {
    Token(String),
    /// Presented in the TLS handshake; nothing in the request.
    Certificate,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Token(_) => f.write_str("Token(..)"),
            Credential::Certificate => f.write_str("Certificate"),
        }
    }
}

pub struct ApiClient {
    base: String,
    authority: String,
    host: String,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    credential: Credential,
}

impl ApiClient {
    /// `ZEROFN_API_URL`/`ZEROFN_TOKEN` win; otherwise the files the running
    /// platform wrote into the data directory. With a client certificate the
    /// token is neither read nor sent.
    pub fn discover(data_dir: &Path) -> Result<ApiClient> {
        let options = OPTIONS.get().cloned().unwrap_or_default();
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let base = match env("ZEROFN_API_URL") {
            Some(url) => url,
            None => {
                let path = data_dir.join(zerofn_server::API_ENDPOINT_FILE);
                let text = std::fs::read_to_string(&path).with_context(|| {
                    format!(
                        "no platform found in data directory `{dir}` (`{}` is missing): start one there with `zerofn up --data-dir {dir}`, point at another with --data-dir DIR or ZEROFN_DATA_DIR, or set ZEROFN_API_URL",
                        path.display(),
                        dir = data_dir.display(),
                    )
                })?;
                let ep: zerofn_server::ApiEndpoint = serde_json::from_str(&text)
                    .with_context(|| format!("`{}` is not valid", path.display()))?;
                ep.url
            }
        };
        let base = base.trim_end_matches('/').to_owned();
        let uri: http::Uri = base
            .parse()
            .with_context(|| format!("`{base}` is not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => bail!("the API URL `{base}` must start with http:// or https://"),
        };
        let Some(authority) = uri.authority() else {
            bail!("the API URL `{base}` has no host");
        };
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });

        let certificate = match (&options.client_cert, &options.client_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            _ => bail!("pass both --client-cert and --client-key (or ZEROFN_CLIENT_CERT and ZEROFN_CLIENT_KEY)"),
        };
        if certificate.is_some() && !https {
            bail!("a client certificate needs an https:// API URL; start the platform with `zerofn up --control-tls`");
        }
        let tls = if https {
            let bundle = options
                .ca_bundle
                .clone()
                .unwrap_or_else(|| data_dir.join(zerofn_server::CA_BUNDLE_FILE));
            Some(tls_config(&bundle, certificate.as_ref())?)
        } else {
            None
        };
        let credential = match certificate {
            Some(_) => Credential::Certificate,
            None => Credential::Token(match env("ZEROFN_TOKEN") {
                Some(t) => t,
                None => {
                    let path = data_dir.join(zerofn_server::TOKEN_FILE);
                    std::fs::read_to_string(&path)
                        .with_context(|| {
                            format!(
                                "cannot read the operator token `{}`; set ZEROFN_TOKEN or pass --client-cert and --client-key",
                                path.display()
                            )
                        })?
                        .trim()
                        .to_owned()
                }
            }),
        };
        Ok(ApiClient {
            base,
            authority: authority.as_str().to_owned(),
            host,
            port,
            tls,
            credential,
        })
    }

    /// `method path` without a body, the answer read as `T`.
    pub async fn fetch<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
    ) -> Result<T> {
        let value = self.call(method, path, None).await?;
        typed(path, value)
    }

    /// `DELETE path` of something the API answers with [`zerofn_api::Removed`]; the id it
    /// removed.
    pub async fn remove(&self, path: &str) -> Result<String> {
        let removed: zerofn_api::Removed = self.fetch(Method::DELETE, path).await?;
        Ok(removed.removed)
    }

    /// `method path` with the JSON body `body`, the answer read as `T`.
    pub async fn send<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let body = serde_json::to_value(body).context("encoding the request")?;
        let value = self.call(method, path, Some(body)).await?;
        typed(path, value)
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.authority)
            .header(header::CONTENT_TYPE, "application/json");
        if let Credential::Token(token) = &self.credential {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .body(Full::new(Bytes::from(bytes)))
            .context("building the request")?;
        let unreachable = |e: &dyn std::error::Error| {
            anyhow!(
                "cannot reach the control API at {}: {}; is `zerofn up` running{}?",
                self.base,
                chain(e),
                if self.tls.is_some() {
                    ", and does it accept this client certificate"
                } else {
                    ""
                }
            )
        };
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| Unreachable(unreachable(&e).to_string()))?;
        let resp = match &self.tls {
            None => send(TokioIo::new(tcp), req).await,
            Some(config) => {
                let name = ServerName::try_from(self.host.clone())
                    .with_context(|| format!("`{}` is not a host name", self.host))?;
                let stream = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| {
                        anyhow!(
                            "TLS with the control API at {} failed: {e}; check --ca-bundle and the client certificate",
                            self.base
                        )
                    })?;
                send(TokioIo::new(stream), req).await
            }
        }
        .map_err(|e| unreachable(&e))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .context("reading the API response")?
            .to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(
            |_| serde_json::json!({ "error": { "message": String::from_utf8_lossy(&body) } }),
        );
        if status.is_success() || status == StatusCode::CONFLICT && value.get("ok").is_some() {
            return Ok(value);
        }
        let message = value
            .pointer("/error/message")
            .and_then(|m| m.as_str())
            .unwrap_or("request failed")
            .to_owned();
        Err(ApiError {
            status: status.as_u16(),
            message,
            body: value,
        }
        .into())
    }
}

/// An answer of the control API read as the type the API defines for it.
pub fn typed<T: serde::de::DeserializeOwned>(path: &str, value: serde_json::Value) -> Result<T> {
    serde_json::from_value(value)
        .with_context(|| format!("the control API answered `{path}` with an unexpected body"))
}

/// An error and its sources, joined by `: ` (hyper's "connection error" alone
/// hides the TLS alert that caused it).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One request on a fresh HTTP/1.1 connection over `io`.
async fn send<IO>(
    io: IO,
    req: Request<Full<Bytes>>,
) -> Result<http::Response<hyper::body::Incoming>, hyper::Error>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(req).await
}

/// A TLS 1.3 client trusting only the platform CA in `bundle`, presenting the operator's
/// certificate and key when given.
fn tls_config(
    bundle: &Path,
    certificate: Option<&(PathBuf, PathBuf)>,
) -> Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(bundle).with_context(|| {
        format!(
            "cannot read the platform CA bundle `{}`; pass --ca-bundle (the `ca.pem` written by `zerofn operator add`)",
            bundle.display()
        )
    })?;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.with_context(|| format!("`{}` is not PEM", bundle.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("`{}` holds an unusable certificate", bundle.display()))?;
    }
    if roots.is_empty() {
        bail!("`{}` holds no certificate", bundle.display());
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("configuring TLS")?
        .with_root_certificates(roots);
    let mut config = match certificate {
        None => builder.with_no_client_auth(),
        Some((cert_path, key_path)) => {
            let chain = CertificateDer::pem_file_iter(cert_path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .with_context(|| {
                    format!(
                        "cannot read the client certificate `{}`",
                        cert_path.display()
                    )
                })?;
            if chain.is_empty() {
                bail!("`{}` holds no certificate", cert_path.display());
            }
            // The key's own error could quote it: say only which file failed.
            let key = PrivateKeyDer::from_pem_file(key_path).map_err(|_| {
                anyhow!(
                    "cannot read the client key `{}`; it must be a PEM private key",
                    key_path.display()
                )
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| anyhow!("the client certificate and key do not go together: {e}"))?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Nothing accepted a connection at the control API's address (the
/// platform is not running): the one failure `audit verify` answers by
/// reading the database itself.
#[derive(Debug)]
pub struct Unreachable(String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unreachable {}

/// A control API error answer, with its whole body for callers that show
/// more than the message (a refused deploy's check table).
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    pub body: serde_json::Value,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (HTTP {})", self.message, self.status)
    }
}

impl std::error::Error for ApiError {}
