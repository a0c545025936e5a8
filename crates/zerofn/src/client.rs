//! A minimal client for the control API: finds the endpoint and the
//! operator token, sends JSON, turns API errors into one-line messages.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

pub struct ApiClient {
    base: String,
    token: String,
}

impl ApiClient {
    /// `ZEROFN_API_URL`/`ZEROFN_TOKEN` win; otherwise the files the running
    /// platform wrote into the data directory.
    pub fn discover(data_dir: &Path) -> Result<ApiClient> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let base = match env("ZEROFN_API_URL") {
            Some(url) => url,
            None => {
                let path = data_dir.join(zerofn_server::API_ENDPOINT_FILE);
                let text = std::fs::read_to_string(&path).with_context(|| {
                    format!(
                        "cannot find the control API: `{}` is missing; start the platform with `zerofn up` or set ZEROFN_API_URL",
                        path.display()
                    )
                })?;
                let ep: zerofn_server::ApiEndpoint = serde_json::from_str(&text)
                    .with_context(|| format!("`{}` is not valid", path.display()))?;
                ep.url
            }
        };
        let token = match env("ZEROFN_TOKEN") {
            Some(t) => t,
            None => {
                let path = data_dir.join(zerofn_server::TOKEN_FILE);
                std::fs::read_to_string(&path)
                    .with_context(|| {
                        format!(
                            "cannot read the operator token `{}`; set ZEROFN_TOKEN",
                            path.display()
                        )
                    })?
                    .trim()
                    .to_owned()
            }
        };
        Ok(ApiClient {
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .context("building the request")?;
        let resp = client.request(req).await.map_err(|e| {
            anyhow!(
                "cannot reach the control API at {}: {e}; is `zerofn up` running?",
                self.base
            )
        })?;
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
