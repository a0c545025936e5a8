//! Who an invocation is for: a client of the public gateway (anonymous, or
//! authenticated by a JWT, an API key or a client certificate, see
//! `authn.rs`), another
//! function by its verified identity, or an event source of the callee's
//! tenant delivering one event (`zerofn-events`). The caller is what the invoke
//! decision's principal and source context are made of, and what the
//! invocation's audit record names.

use std::net::IpAddr;

use std::sync::Arc;
use zerofn_identity::VerifiedSpiffeId;

use zerofn_authn::{CertificateRefusal, VerifiedCertificate};
use zerofn_policy::{CallerAttributes, CertificateAttributes, Principal, Source};
use zerofn_types::InvocationId;

/// Who an invocation is for.
#[derive(Clone, Debug)]
pub enum Caller {
    /// A client of the public gateway.
    Public { ip: Option<IpAddr> },
    /// A client of the public gateway with a verified JWT of the callee
    /// tenant's issuer `issuer` (its registered name).
    Jwt {
        ip: Option<IpAddr>,
        tenant: String,
        issuer: String,
        subject: String,
        claims: std::sync::Arc<serde_json::Map<String, serde_json::Value>>,
    },
    /// A client of the public gateway with one of the callee tenant's API
    /// keys (`name`, public id `id`).
    ApiKey {
        ip: Option<IpAddr>,
        tenant: String,
        name: String,
        id: String,
    },
    /// A client of the public gateway whose TLS client certificate the
    /// callee tenant's CA `certificate.ca` (`spiffe`: the platform bundle)
    /// verified.
    Mtls {
        ip: Option<IpAddr>,
        tenant: String,
        certificate: Arc<VerifiedCertificate>,
    },
    /// A client of the public gateway that sent a TLS client certificate
    /// none of the function's CAs issued: anonymous (decided as `public`),
    /// with the refusal kept for the record.
    UntrustedCertificate {
        ip: Option<IpAddr>,
        refusal: CertificateRefusal,
    },
    /// Another function, by its verified identity.
    Function {
        tenant: String,
        name: String,
        spiffe_id: VerifiedSpiffeId,
        parent_invocation: InvocationId,
    },
    /// An event source of `tenant` (`queue/orders`) delivering event
    /// `event_id`, attempt `attempt` (1 for the first), in process.
    Event {
        tenant: String,
        source: String,
        event_id: String,
        attempt: u32,
    },
}

impl Caller {
    pub(crate) fn principal(&self) -> Principal {
        match self {
            Caller::Public { .. } | Caller::UntrustedCertificate { .. } => Principal::Public,
            Caller::Mtls {
                tenant,
                certificate,
                ..
            } => Principal::Mtls {
                tenant: tenant.clone(),
                ca: certificate.ca.clone(),
                id: certificate.id().to_owned(),
            },
            Caller::Jwt {
                tenant,
                issuer,
                subject,
                ..
            } => Principal::Jwt {
                tenant: tenant.clone(),
                issuer: issuer.clone(),
                subject: subject.clone(),
            },
            Caller::ApiKey { tenant, name, .. } => Principal::ApiKey {
                tenant: tenant.clone(),
                name: name.clone(),
            },
            Caller::Function { tenant, name, .. } => Principal::Function {
                tenant: tenant.clone(),
                name: name.clone(),
            },
            Caller::Event { tenant, source, .. } => Principal::EventSource {
                tenant: tenant.clone(),
                name: source.clone(),
            },
        }
    }

    /// What the invoke context says about an authenticated external caller.
    pub(crate) fn attributes(&self) -> CallerAttributes {
        match self {
            Caller::Jwt { claims, .. } => CallerAttributes::Claims(claims.clone()),
            Caller::ApiKey { name, .. } => CallerAttributes::ApiKey(name.clone()),
            Caller::Mtls { certificate, .. } => {
                CallerAttributes::Certificate(Arc::new(CertificateAttributes {
                    spiffe_id: certificate.spiffe_id.clone().unwrap_or_default(),
                    subject: certificate.subject.clone(),
                    ca: certificate.ca.clone(),
                    serial: certificate.serial.clone(),
                }))
            }
            Caller::Public { .. }
            | Caller::UntrustedCertificate { .. }
            | Caller::Function { .. }
            | Caller::Event { .. } => CallerAttributes::None,
        }
    }

    pub(crate) fn source(&self) -> Source {
        match self {
            Caller::Public { ip }
            | Caller::Jwt { ip, .. }
            | Caller::ApiKey { ip, .. }
            | Caller::Mtls { ip, .. }
            | Caller::UntrustedCertificate { ip, .. } => Source {
                kind: "gateway",
                ip: *ip,
                ..Source::default()
            },
            Caller::Function {
                tenant,
                name,
                spiffe_id,
                ..
            } => Source {
                kind: "function",
                ip: None,
                spiffe_id: Some(spiffe_id.to_string()),
                tenant: Some(tenant.clone()),
                function: Some(name.clone()),
            },
            Caller::Event { tenant, .. } => Source {
                kind: "event",
                tenant: Some(tenant.clone()),
                ..Source::default()
            },
        }
    }

    /// The `[invoke] from` entry this caller needs, in manifest terms.
    pub(crate) fn invoke_permission(&self, callee_tenant: &str) -> String {
        match self {
            Caller::Public { .. } | Caller::UntrustedCertificate { .. } => {
                "invoke:public".to_owned()
            }
            Caller::Mtls { certificate, .. } => format!("invoke:mtls:{}", certificate.ca),
            Caller::Jwt { issuer, .. } => format!("invoke:jwt:{issuer}"),
            Caller::ApiKey { .. } => "invoke:apikey".to_owned(),
            Caller::Function { tenant, name, .. } if tenant == callee_tenant => {
                format!("invoke:{name}")
            }
            Caller::Function { tenant, .. } => format!("invoke:tenant:{tenant}"),
            Caller::Event { source, .. } => format!("invoke:event:{source}"),
        }
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        match self {
            Caller::Public { ip } => serde_json::json!({
                "kind": "gateway",
                "ip": ip.map(|ip| ip.to_string()),
            }),
            Caller::Jwt {
                ip,
                issuer,
                subject,
                ..
            } => serde_json::json!({
                "kind": "jwt",
                "ip": ip.map(|ip| ip.to_string()),
                "issuer": issuer,
                "subject": subject,
            }),
            Caller::Mtls {
                ip, certificate, ..
            } => serde_json::json!({
                "kind": "mtls",
                "ip": ip.map(|ip| ip.to_string()),
                "ca": certificate.ca,
                "spiffe_id": certificate.spiffe_id,
                "subject": certificate.subject,
                "serial": certificate.serial,
            }),
            Caller::UntrustedCertificate { ip, refusal } => serde_json::json!({
                "kind": "gateway",
                "ip": ip.map(|ip| ip.to_string()),
                "certificate": refusal.reason(),
            }),
            Caller::ApiKey { ip, name, id, .. } => serde_json::json!({
                "kind": "apikey",
                "ip": ip.map(|ip| ip.to_string()),
                "name": name,
                "key_id": id,
            }),
            Caller::Function {
                spiffe_id,
                parent_invocation,
                ..
            } => serde_json::json!({
                "kind": "function",
                "spiffe_id": spiffe_id.to_string(),
                "parent_invocation": parent_invocation.as_str(),
            }),
            Caller::Event {
                source,
                event_id,
                attempt,
                ..
            } => serde_json::json!({
                "kind": "event",
                "source": source,
                "event_id": event_id,
                "attempt": attempt,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use zerofn_listener::PeerAddr;

    #[test]
    fn peer_addresses_are_canonical_before_any_decision() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:4242".parse().unwrap();
        let peer = PeerAddr::new(mapped);
        assert_eq!(peer.0, "127.0.0.1:4242".parse::<SocketAddr>().unwrap());
        assert_eq!(peer.ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
        // What the policy sees for a public caller.
        let source = Caller::Public {
            ip: Some(peer.ip()),
        }
        .source();
        assert_eq!(source.ip, Some(IpAddr::from([127, 0, 0, 1])));
        // Real IPv6 stays IPv6; a tuple-built PeerAddr is canonical on read.
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        assert_eq!(PeerAddr::new(v6).ip(), "::1".parse::<IpAddr>().unwrap());
        assert_eq!(PeerAddr(mapped).ip(), IpAddr::from([127, 0, 0, 1]));
    }
}
