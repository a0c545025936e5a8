//! Outbound requests to anything that is not a function or the identity
//! endpoint: egress, through the egress gateway (`zerofn_egress`).
//!
//! Order: the host reads the request's scheme, authority and path itself
//! ([`Target`]; a URL it cannot read the way a connection would is
//! refused); the function's runtime policies decide `http.outbound` on the
//! `Host` (the manifest's `[egress] allow` entries compile to the permits)
//! and the decision is recorded durably; then the egress client resolves
//! the name, checks every address against the special-purpose ranges
//! (unless the matching entry names the range in `allow_ranges`), and
//! connects to a checked address. Every attempt, allowed or refused, ends
//! in one flow-log record (a `capability` audit record whose detail has
//! `"kind": "egress"`).
//!
//! Trusts nothing from the guest: its URL is read once by the strict
//! parser, its `Host` header and `x-zerofn-` headers are dropped.

use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use serde_json::json;
use zerofn_audit::{Action, AuditRecord, Outcome};
use zerofn_egress::{first_match, EgressRefusal, Flow, FlowError, Target};
use zerofn_policy::{RequestContext, Resource, RuntimeAction};
use zerofn_sandbox::host_interface::{OutboundError, TransportError};

use super::InvocationHost;

/// Longest URL kept in a flow record.
const MAX_RECORDED_URL: usize = 2048;

/// What one flow record says beyond the connection itself.
struct FlowOutcome<'a> {
    allowed: bool,
    reason: String,
    policies: Vec<String>,
    target: Option<&'a Target>,
    flow: Flow,
}

impl InvocationHost {
    /// Decide, record and (when allowed) send an outbound request through
    /// the egress gateway.
    pub(super) async fn egress(
        &self,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, OutboundError> {
        let started = Instant::now();
        let method = request.method().as_str().to_owned();
        let given = recordable_url(request.uri());
        let uri = request.uri();
        let parsed = Target::from_parts(
            uri.scheme_str().unwrap_or(""),
            uri.authority().map_or("", |a| a.as_str()),
            uri.path_and_query().map_or("", |p| p.as_str()),
        );
        let target = match parsed {
            Ok(t) => t,
            Err(refusal) => {
                self.flow_record(
                    &method,
                    &given,
                    started,
                    FlowOutcome {
                        allowed: false,
                        reason: refusal.reason().to_owned(),
                        policies: Vec::new(),
                        target: None,
                        flow: Flow::default(),
                    },
                )
                .await;
                return Err(OutboundError::Denied(refused_url(&given, &refusal)));
            }
        };
        let rule = first_match(&self.manifest().permissions.egress, &target, &method).cloned();
        let host = target.host.to_string();
        let permission = match &rule {
            Some(r) => format!("egress:{}", r.url()),
            None => format!(
                "egress:{}://{}:{}",
                target.scheme.as_str(),
                host,
                target.port
            ),
        };
        let what = format!("outbound request to `{}`", host.escape_debug());
        let decision = self
            .authorize_as(
                RuntimeAction::HttpOutbound,
                Resource::Host(host.clone()),
                RequestContext::Outbound {
                    method: method.clone(),
                    url: given.clone(),
                    scheme: target.scheme.as_str().to_owned(),
                    port: target.port,
                    path: target.path().to_owned(),
                },
                what,
                Some(permission),
            )
            .await;
        let authorized = match decision {
            Ok(a) => a,
            Err(refusal) => {
                self.flow_record(
                    &method,
                    &given,
                    started,
                    FlowOutcome {
                        allowed: false,
                        reason: "not_allowed".to_owned(),
                        policies: Vec::new(),
                        target: Some(&target),
                        flow: Flow::default(),
                    },
                )
                .await;
                return Err(OutboundError::Denied(refusal.to_string()));
            }
        };
        let policies = authorized.permit.policies().to_vec();
        let function = format!("{}/{}", self.tenant(), self.name());
        let mut flow = Flow::default();
        let Some(client) = &self.services.egress else {
            self.flow_record(
                &method,
                &given,
                started,
                FlowOutcome {
                    allowed: false,
                    reason: "egress_unavailable".to_owned(),
                    policies,
                    target: Some(&target),
                    flow,
                },
            )
            .await;
            return Err(OutboundError::Failed(
                "the platform's egress gateway is unavailable".into(),
            ));
        };
        let result = client
            .send(
                &function,
                &self.manifest().egress_limits,
                &target,
                rule.as_ref(),
                request,
                &mut flow,
            )
            .await;
        let (allowed, reason) = match &result {
            Ok(_) => (true, "allowed".to_owned()),
            Err(e @ FlowError::ForbiddenRange { .. }) => (false, e.reason()),
            Err(e) => (true, e.reason()),
        };
        self.flow_record(
            &method,
            &given,
            started,
            FlowOutcome {
                allowed,
                reason,
                policies,
                target: Some(&target),
                flow,
            },
        )
        .await;
        result.map_err(|e| OutboundError::Transport {
            code: transport_code(&e),
            message: e.to_string(),
        })
    }

    /// Append the flow-log record of one attempt. The decision itself was
    /// recorded before any effect; a flow record that cannot be written
    /// changes nothing for the guest, so it is logged instead.
    async fn flow_record(
        &self,
        method: &str,
        url: &str,
        started: Instant,
        outcome: FlowOutcome<'_>,
    ) {
        let FlowOutcome {
            allowed,
            reason,
            policies,
            target,
            flow,
        } = outcome;
        let resolved: Vec<String> = flow.resolved.iter().map(ToString::to_string).collect();
        let detail = json!({
            "kind": "egress",
            "function": format!("{}/{}", self.tenant(), self.name()),
            "method": method,
            "url": url,
            "host": target.map(|t| t.host.to_string()),
            "scheme": target.map(|t| t.scheme.as_str()),
            "port": target.map(|t| t.port),
            "resolved": resolved,
            "connected": flow.connected.map(|a| a.to_string()),
            "allowed": allowed,
            "policies": policies,
            "reason": reason,
            "status": flow.status,
            "bytes_in": flow.bytes_in,
            "bytes_out": flow.bytes_out,
            "duration_ms": u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
        let outcome = if allowed {
            Outcome::Allow
        } else {
            Outcome::Deny
        };
        let record = AuditRecord::new("function", Action::Capability, outcome)
            .tenant(self.tenant())
            .function(self.name())
            .invocation_id(&self.invocation_id)
            .reason(format!("egress {method} {url}: {reason}"))
            .detail(detail);
        // Recorded after the fact: whether it is durable changes nothing for the guest,
        // which does not wait for it. The writer commits in order, so the invocation's
        // own record, awaited before the response leaves, is durable only after this
        // one (unless this one's commit fails, which is logged here).
        match self.services.audit.append_queued(record).await {
            Ok(queued) => {
                let id = self.invocation_id.clone();
                tokio::spawn(async move {
                    if let Err(error) = queued.durable().await {
                        tracing::error!(invocation_id = %id, %error, "audit of an egress flow failed");
                    }
                });
            }
            Err(error) => {
                tracing::error!(invocation_id = %self.invocation_id, %error, "audit of an egress flow failed");
            }
        }
    }
}

/// The URL for records: userinfo and query values are the guest's and may
/// hold credentials, so userinfo is replaced and the query is kept only as
/// its length; the rest is escaped and bounded.
fn recordable_url(uri: &http::Uri) -> String {
    let authority = uri.authority().map_or("", |a| a.as_str());
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("<userinfo>@{host}"),
        None => authority.to_owned(),
    };
    let mut url = format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or(""),
        authority,
        uri.path()
    );
    if let Some(q) = uri.query() {
        url.push_str(&format!("?<{} bytes>", q.len()));
    }
    let mut shown: String = url.escape_debug().collect();
    if shown.len() > MAX_RECORDED_URL {
        let cut = (0..=MAX_RECORDED_URL)
            .rev()
            .find(|i| shown.is_char_boundary(*i))
            .unwrap_or(0);
        shown.truncate(cut);
        shown.push('…');
    }
    shown
}

fn refused_url(url: &str, refusal: &EgressRefusal) -> String {
    format!("outbound request to `{url}` refused: {refusal}")
}

fn transport_code(e: &FlowError) -> TransportError {
    match e {
        FlowError::ForbiddenRange { .. } => TransportError::DestinationIpProhibited,
        FlowError::Dns(_) => TransportError::DnsError,
        FlowError::DnsTimeout => TransportError::DnsTimeout,
        FlowError::ConnectionRefused => TransportError::ConnectionRefused,
        FlowError::ConnectTimeout => TransportError::ConnectionTimeout,
        FlowError::TooManyConnections(_) => TransportError::ConnectionLimitReached,
        FlowError::TlsCertificate(_) => TransportError::TlsCertificateError,
        FlowError::TlsProtocol(_) => TransportError::TlsProtocolError,
        FlowError::FirstByteTimeout | FlowError::TotalTimeout => {
            TransportError::HttpResponseTimeout
        }
        FlowError::ResponseTooLarge(_) => TransportError::HttpResponseBodySize,
        FlowError::Protocol(_) => TransportError::HttpProtocolError,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn recorded_urls_hold_no_userinfo_or_query_values() {
        let uri: http::Uri = "https://api.example.com/v1/x?token=secret".parse().unwrap();
        assert_eq!(
            recordable_url(&uri),
            "https://api.example.com/v1/x?<12 bytes>"
        );
        let uri: http::Uri = "http://user:pw@example.com/".parse().unwrap();
        assert_eq!(recordable_url(&uri), "http://<userinfo>@example.com/");
    }
}
