//! Outbound requests to anything that is not a function or the identity
//! endpoint: egress. Nothing grants it yet, but it is decided and recorded
//! like every other capability, so that an allowlist can be added here.

use bytes::Bytes;
use http::{Request, Response};
use zerofn_policy::{RequestContext, Resource, RuntimeAction};
use zerofn_sandbox::host_interface::OutboundError;

use super::InvocationHost;

impl InvocationHost {
    /// Decide and record an outbound request to `host`; refused either way
    /// until egress is implemented.
    pub(super) async fn egress(
        &self,
        request: &Request<Bytes>,
        host: String,
    ) -> Result<Response<Bytes>, OutboundError> {
        let url = request.uri().to_string();
        let what = format!("outbound request to `{}`", host.escape_debug());
        match self
            .authorize(
                RuntimeAction::HttpOutbound,
                Resource::Host(host.clone()),
                RequestContext::Outbound {
                    method: request.method().as_str().to_owned(),
                    url,
                },
                what,
            )
            .await
        {
            // Egress is not implemented: even a permit cannot open a
            // connection yet.
            Ok(_) | Err(_) => Err(OutboundError::Denied(host.escape_debug().to_string())),
        }
    }
}
