//! Who an invocation is for: a client of the public gateway, or another
//! function by its verified identity. The caller is what the invoke
//! decision's principal and source context are made of, and what the
//! invocation's audit record names.

use std::net::IpAddr;

use zerofn_identity::VerifiedSpiffeId;
use zerofn_policy::{Principal, Source};
use zerofn_types::InvocationId;

/// Who an invocation is for.
#[derive(Clone, Debug)]
pub enum Caller {
    /// A client of the public gateway.
    Public { ip: Option<IpAddr> },
    /// Another function, by its verified identity.
    Function {
        tenant: String,
        name: String,
        spiffe_id: VerifiedSpiffeId,
        parent_invocation: InvocationId,
    },
}

impl Caller {
    pub(crate) fn principal(&self) -> Principal {
        match self {
            Caller::Public { .. } => Principal::Public,
            Caller::Function { tenant, name, .. } => Principal::Function {
                tenant: tenant.clone(),
                name: name.clone(),
            },
        }
    }

    pub(crate) fn source(&self) -> Source {
        match self {
            Caller::Public { ip } => Source {
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
        }
    }

    /// The `[invoke] from` entry this caller needs, in manifest terms.
    pub(crate) fn invoke_permission(&self, callee_tenant: &str) -> String {
        match self {
            Caller::Public { .. } => "invoke:public".to_owned(),
            Caller::Function { tenant, name, .. } if tenant == callee_tenant => {
                format!("invoke:{name}")
            }
            Caller::Function { tenant, .. } => format!("invoke:tenant:{tenant}"),
        }
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        match self {
            Caller::Public { ip } => serde_json::json!({
                "kind": "gateway",
                "ip": ip.map(|ip| ip.to_string()),
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
