//! The function's own identity: the verifier of running functions'
//! X.509-SVIDs ([`WorkloadIdentity`], implemented by the platform over its
//! CA) and the endpoint that gives a function a JWT-SVID for itself,
//! `GET http://identity.fn.internal/jwt-svid?audience=<aud>`.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use serde_json::json;
use zerofn_identity::{JwtSvid, SvidRefusal, VerifiedSpiffeId};
use zerofn_policy::{Permit, RequestContext, RuntimeAction};
use zerofn_types::{FunctionName, TenantName};

use super::InvocationHost;

/// Longest JWT-SVID audience accepted.
const MAX_AUDIENCE: usize = 256;

/// Verifies a running function's identity. Implemented by the platform
/// over its CA: the function's current SVID must chain to the trust
/// bundle, be unexpired and not revoked.
pub trait WorkloadIdentity: Send + Sync + 'static {
    /// The verified SPIFFE ID of `tenant/name`, or why it is refused.
    fn verify(
        &self,
        tenant: &TenantName,
        name: &FunctionName,
    ) -> Result<VerifiedSpiffeId, SvidRefusal>;

    /// A JWT-SVID for `tenant/name` scoped to `audience`.
    fn jwt_svid(
        &self,
        tenant: &TenantName,
        name: &FunctionName,
        audience: &str,
    ) -> Result<JwtSvid, SvidRefusal>;

    /// The SPIFFE ID `tenant/name` runs as now, unverified: a label for
    /// telemetry (the `zerofn.spiffe_id` span attribute), never a proof.
    fn spiffe_id(&self, _tenant: &TenantName, _name: &FunctionName) -> Option<String> {
        None
    }
}

impl InvocationHost {
    /// `GET /jwt-svid?audience=<aud>` on the identity host: a JWT-SVID for
    /// the calling function's own identity, decided (`svid.jwt`) and
    /// audited like any capability. The token is never logged or audited.
    pub(super) async fn jwt_svid(&self, request: &Request<Bytes>) -> Response<Bytes> {
        let bad = |status: StatusCode, kind: &str, message: &str| {
            crate::errors::error_response(status, kind, message, Some(&self.invocation_id))
        };
        if request.method() != http::Method::GET || request.uri().path() != "/jwt-svid" {
            return bad(
                StatusCode::NOT_FOUND,
                "not_found",
                "the identity endpoint serves GET /jwt-svid?audience=<audience>",
            );
        }
        let audience = request.uri().query().and_then(|q| {
            q.split('&')
                .find_map(|p| p.strip_prefix("audience="))
                .map(str::to_owned)
        });
        let Some(audience) = audience.filter(|a| {
            !a.is_empty()
                && a.len() <= MAX_AUDIENCE
                && a.bytes().all(|b| b.is_ascii_graphic() && b != b'"')
        }) else {
            return bad(
                StatusCode::BAD_REQUEST,
                "bad_audience",
                &format!("give one audience of 1 to {MAX_AUDIENCE} printable characters: /jwt-svid?audience=<audience>"),
            );
        };
        let what = format!("svid.jwt for audience `{audience}`");
        let authorized = match self
            .authorize(
                RuntimeAction::SvidJwt,
                self.me_as_resource(),
                RequestContext::Audience(audience.clone()),
                what,
            )
            .await
        {
            Ok(authorized) => authorized,
            Err(why) => return bad(StatusCode::FORBIDDEN, "identity_denied", &why.to_string()),
        };
        match self.issue_jwt_svid(&authorized.permit, &audience) {
            Ok((token, expires_at)) => {
                let body =
                    json!({ "token": token, "audience": audience, "expires_at": expires_at });
                let mut resp = Response::new(Bytes::from(body.to_string()));
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                resp
            }
            Err(why) => bad(
                StatusCode::INTERNAL_SERVER_ERROR,
                "identity_unavailable",
                &format!("no JWT-SVID could be issued: {why}"),
            ),
        }
    }

    /// Issue an authorized JWT-SVID: the token and its expiry (RFC 3339).
    fn issue_jwt_svid(
        &self,
        _permit: &Permit,
        audience: &str,
    ) -> Result<(String, String), IssueError> {
        let svid = self.services.identity.jwt_svid(
            &self.manifest().tenant,
            &self.manifest().name,
            audience,
        )?;
        let expires_at = svid
            .expires_at()
            .format(&time::format_description::well_known::Rfc3339)?;
        Ok((svid.token().to_owned(), expires_at))
    }
}

/// Why no JWT-SVID could be issued to an authorized function.
#[derive(Debug, thiserror::Error)]
enum IssueError {
    /// The identity service refused (an invalid audience, an unverified identity).
    #[error(transparent)]
    Identity(#[from] SvidRefusal),
    /// The expiry does not format as RFC 3339.
    #[error(transparent)]
    Expiry(#[from] time::error::Format),
}
