//! Authenticating external callers of the public gateway, from the request head, before
//! the invoke decision and before any byte of the body is read; and what the function
//! then learns about its caller.
//!
//! Which callers a function accepts is its `[invoke] from` (`jwt:<issuer>`, `apikey`,
//! `mtls:<ca>`, `public`); whether a credential is valid is `zerofn-authn`'s to say, with
//! the callee tenant's issuers, keys and CAs only. A function that accepts no authenticated
//! caller is invoked by public callers, whatever they send. One that does refuses a bad
//! credential with 401 even if it also accepts `public`: a wrong credential never falls
//! back to anonymous. Every refusal is audited with `authn: <reason>` and costs the client
//! address one attempt of its failure budget; an address without attempts left gets 429.
//!
//! A TLS client certificate is tried first, when the function accepts `mtls:` callers: one
//! an accepted CA verifies is the caller; one an accepted CA issued but that is expired,
//! not yet valid or revoked is a wrong credential (401). One that no accepted CA issued is
//! no credential of this function at all (certificates are requested from every client,
//! and a browser may send one for another site): the request goes on as if it had sent
//! none, so a bearer credential may still authenticate it, and otherwise the invoke
//! decision refuses it as `public` (403), its record naming the certificate's refusal. A
//! function that accepts only `mtls:` callers decides a request without a certificate the
//! same way: as `public`.
//! Over plain HTTP there is no certificate and no `mtls:` caller.
//!
//! # Trust
//! Trusts `zerofn-authn` to verify; trusts nothing in the request. The function sees
//! `x-zerofn-caller` and `x-zerofn-claims` only as set here, after every incoming
//! `x-zerofn-*` header was removed, and never the `Authorization` header unless its
//! manifest asks for it.

use std::net::IpAddr;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use zerofn_audit::Outcome;
use zerofn_authn::{Accepts, AuthnError, CertificateRefusal, Credential, VerifiedCaller};
use zerofn_listener::PeerCertificateChain;
use zerofn_policy::InvokeSource;
use zerofn_sandbox::LoadedFunction;
use zerofn_telemetry::TraceId;
use zerofn_types::InvocationId;

use crate::caller::Caller;
use crate::gateway::Gateway;
use crate::invoke::invoke_record;

/// The kind and id of an authenticated external caller, as the function sees it:
/// `jwt:<issuer>/<sub>`, `apikey:<name>` or `mtls:<ca>/<SPIFFE ID or subject>`.
pub const EXTERNAL_CALLER_HEADER: &str = "x-zerofn-caller";
/// The verified claims of a JWT caller, or the verified certificate facts of an mTLS
/// caller (`spiffe_id`, `subject`, `ca`, `serial`, `not_after`), as JSON.
pub const CLAIMS_HEADER: &str = "x-zerofn-claims";

/// The authenticated callers `function` accepts, whether it accepts `public`, and the CA
/// names of its `mtls:` callers.
fn accepted(function: &LoadedFunction) -> (Accepts, bool, Vec<String>) {
    let mut accepts = Accepts::default();
    let mut public = false;
    let mut mtls = Vec::new();
    for source in &function.artifact().manifest().permissions.invoke_from {
        match source {
            InvokeSource::Jwt(issuer) => accepts.jwt.push(issuer.clone()),
            InvokeSource::ApiKey => accepts.api_key = true,
            InvokeSource::Mtls(ca) => mtls.push(ca.clone()),
            InvokeSource::Public => public = true,
            InvokeSource::Function(_) | InvokeSource::Tenant(_) | InvokeSource::Event(_) => {}
        }
    }
    (accepts, public, mtls)
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Gateway {
    /// Who is calling `function`: a verified caller, a public one, or the (recorded)
    /// refusal to answer with (its record names `trace_id`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn authenticate(
        &self,
        function: &LoadedFunction,
        headers: &HeaderMap,
        chain: Option<&PeerCertificateChain>,
        ip: Option<IpAddr>,
        id: &InvocationId,
        trace_id: Option<TraceId>,
        started: Instant,
    ) -> Result<Caller, Response<Bytes>> {
        let (accepts, public, mtls) = accepted(function);
        if !accepts.any() && mtls.is_empty() {
            return Ok(Caller::Public { ip });
        }
        if let Some(ip) = ip {
            if let Err(retry) = self.auth_failures().check(ip, Instant::now()) {
                let record = invoke_record(function, id, started, Outcome::Deny, 429)
                    .reason("authn: rate_limited")
                    .detail(serde_json::json!({"caller": Caller::Public { ip: Some(ip) }.json()}));
                let mut resp = self
                    .refuse(
                        Some(ip),
                        record,
                        id,
                        trace_id,
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limited",
                        "too many failed authentications from this address; retry later",
                    )
                    .await;
                if let Ok(v) = HeaderValue::from_str(&retry.as_secs().max(1).to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
                return Err(resp);
            }
        }
        let mut untrusted = None;
        if let (false, Some(chain)) = (mtls.is_empty(), chain) {
            let tenant = function.artifact().manifest().tenant.as_str();
            let verified = self.mtls_authorities().current().authenticate(
                tenant,
                &mtls,
                &chain.0,
                zerofn_authn::UnixTime::now(),
            );
            match verified {
                Ok(certificate) => {
                    return Ok(Caller::Mtls {
                        ip,
                        tenant: tenant.to_owned(),
                        certificate: std::sync::Arc::new(certificate),
                    })
                }
                Err(refusal @ CertificateRefusal::Untrusted) => untrusted = Some(refusal),
                Err(refusal) => {
                    return Err(self
                        .certificate_refused(function, ip, id, trace_id, started, &refusal)
                        .await)
                }
            }
        }
        let credential = match Credential::from_headers(headers) {
            Ok(Some(c)) => Ok(c),
            Ok(None) if public => return Ok(Caller::Public { ip }),
            // Not a credential of this function: anonymous, decided as `public`.
            Ok(None) if untrusted.is_some() || !accepts.any() => {
                return Ok(match untrusted {
                    Some(refusal) => Caller::UntrustedCertificate { ip, refusal },
                    None => Caller::Public { ip },
                })
            }
            Ok(None) => Err(AuthnError::NoCredentials),
            Err(e) => Err(e),
        };
        let kind = credential.as_ref().map(Credential::kind).unwrap_or("none");
        let key_id = match &credential {
            Ok(Credential::ApiKey(k)) => Some(k.id.clone()),
            _ => None,
        };
        let manifest = function.artifact().manifest();
        let tenant = manifest.tenant.as_str();
        let verified = credential.and_then(|c| {
            self.authenticators().current().authenticate(
                tenant,
                manifest.name.as_str(),
                &accepts,
                &c,
                now_unix(),
            )
        });
        match verified {
            Ok(VerifiedCaller::Jwt {
                issuer,
                subject,
                claims,
            }) => Ok(Caller::Jwt {
                ip,
                tenant: tenant.to_owned(),
                issuer,
                subject,
                claims,
            }),
            Ok(VerifiedCaller::ApiKey { name, id }) => Ok(Caller::ApiKey {
                ip,
                tenant: tenant.to_owned(),
                name,
                id,
            }),
            Err(error) => {
                if let Some(ip) = ip {
                    // Missing credentials cost nothing: only a wrong guess drains.
                    if error != AuthnError::NoCredentials {
                        self.auth_failures().failed(ip, Instant::now());
                    }
                }
                let record = invoke_record(function, id, started, Outcome::Deny, 401)
                    .reason(format!("authn: {}", error.reason()))
                    .detail(serde_json::json!({
                        "caller": Caller::Public { ip }.json(),
                        "credential": kind,
                        "key_id": key_id,
                    }));
                let mut resp = self
                    .refuse(
                        ip,
                        record,
                        id,
                        trace_id,
                        StatusCode::UNAUTHORIZED,
                        "unauthenticated",
                        &error.to_string(),
                    )
                    .await;
                // RFC 6750 §3: the scheme, and `invalid_token` when a credential was sent.
                let challenge = if error == AuthnError::NoCredentials {
                    HeaderValue::from_static(r#"Bearer realm="zerofn""#)
                } else {
                    HeaderValue::from_static(r#"Bearer realm="zerofn", error="invalid_token""#)
                };
                if resp.status() == StatusCode::UNAUTHORIZED {
                    resp.headers_mut()
                        .insert(header::WWW_AUTHENTICATE, challenge);
                }
                Err(resp)
            }
        }
    }
}

impl Gateway {
    /// The 401 for a client certificate an accepted CA issued but that is not valid
    /// (expired, not yet valid, revoked, not an SVID), recorded with its reason; it costs
    /// the client address an attempt, as a wrong token does.
    async fn certificate_refused(
        &self,
        function: &LoadedFunction,
        ip: Option<IpAddr>,
        id: &InvocationId,
        trace_id: Option<TraceId>,
        started: Instant,
        refusal: &CertificateRefusal,
    ) -> Response<Bytes> {
        if let Some(ip) = ip {
            self.auth_failures().failed(ip, Instant::now());
        }
        let record = invoke_record(function, id, started, Outcome::Deny, 401)
            .reason(format!("authn: {}", refusal.reason()))
            .detail(serde_json::json!({
                "caller": Caller::Public { ip }.json(),
                "credential": "certificate",
            }));
        self.refuse(
            ip,
            record,
            id,
            trace_id,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            &refusal.to_string(),
        )
        .await
    }
}

/// Sets what the function learns about an authenticated caller, and removes its
/// credential unless the function asked for it. `headers` were stripped of the platform's
/// namespace before.
pub(crate) fn present(caller: &Caller, headers: &mut HeaderMap, pass_authorization: bool) {
    if !pass_authorization {
        headers.remove(header::AUTHORIZATION);
    }
    let (value, claims) = match caller {
        Caller::Jwt {
            issuer,
            subject,
            claims,
            ..
        } => (
            format!("jwt:{issuer}/{}", header_safe(subject)),
            Some(serde_json::Value::Object(claims.as_ref().clone()).to_string()),
        ),
        Caller::ApiKey { name, .. } => (format!("apikey:{name}"), None),
        Caller::Mtls { certificate, .. } => (
            format!("mtls:{}/{}", certificate.ca, header_safe(certificate.id())),
            Some(
                serde_json::json!({
                    "spiffe_id": certificate.spiffe_id,
                    "subject": certificate.subject,
                    "ca": certificate.ca,
                    "serial": certificate.serial,
                    "not_after": certificate.not_after,
                })
                .to_string(),
            ),
        ),
        // The event source (`event:queue/orders`): the function can tell an
        // event from an HTTP request without parsing `ce-*` headers.
        Caller::Event { source, .. } => (format!("event:{source}"), None),
        Caller::Public { .. } | Caller::UntrustedCertificate { .. } | Caller::Function { .. } => {
            return
        }
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(EXTERNAL_CALLER_HEADER, v);
    }
    if let Some(claims) = claims {
        // serde_json escapes control characters; other non-ASCII bytes are valid
        // `obs-text` in a field value.
        if let Ok(v) = HeaderValue::from_bytes(claims.as_bytes()) {
            headers.insert(CLAIMS_HEADER, v);
        }
    }
}

/// Percent-encodes what is not visible ASCII, and `%` itself.
fn header_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_made_header_safe() {
        assert_eq!(header_safe("alice"), "alice");
        assert_eq!(header_safe("a b%\u{e9}\r\n"), "a%20b%25%C3%A9%0D%0A");
    }

    #[test]
    fn authorization_is_removed_unless_passed_and_caller_is_set() {
        let caller = Caller::ApiKey {
            ip: None,
            tenant: "acme".into(),
            name: "ci".into(),
            id: "00".into(),
        };
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        present(&caller, &mut h, false);
        assert!(h.get(header::AUTHORIZATION).is_none());
        assert_eq!(h.get(EXTERNAL_CALLER_HEADER).unwrap(), "apikey:ci");
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        present(&caller, &mut h, true);
        assert_eq!(h.get(header::AUTHORIZATION).unwrap(), "Bearer x");
        // A public caller gets no caller header, and loses Authorization all the same.
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        present(&Caller::Public { ip: None }, &mut h, false);
        assert!(h.is_empty());
    }
}
