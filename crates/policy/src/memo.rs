//! The decision memo: runtime decisions remembered by their whole request.
//!
//! A runtime decision is a pure function of two things: the tenant's
//! policies, which never change inside one [`crate::RuntimePolicies`] value
//! (a change builds a new value with an empty memo), and the request, whose
//! entities are built from its principal and resource alone and whose
//! context is its own. Cedar has no clock and no other input. So a request
//! decided once gets the same answer the next time, and the memo hands that
//! answer back instead of building the Cedar request and evaluating it
//! again: about 65,000 instructions per invocation in cedar-policy 4.14,
//! most of it turning the context's restricted expressions into values
//! (`Context::from_pairs`), for a lookup of a few hundred bytes.
//!
//! What it trusts: that [`key`] writes every field the decision reads. The
//! key is the request's own bytes, length-prefixed and tagged (not a hash of
//! them), and the map compares keys whole, so two requests share an entry
//! only when they are the same request; a field the key left out would be
//! the one way to get another request's answer, which is why the encoding
//! destructures every type exhaustively (a new field does not compile until
//! it is written here).
//!
//! Bounds: at most [`ENTRIES`] entries of keys up to [`KEY_MAX`] bytes; a
//! full memo is emptied (as the prepared-set cache is), so a caller who
//! varies every request makes every decision a miss, which costs what a
//! decision cost before, never more memory. Requests of JWT callers are not
//! remembered: their context carries the token's claims (`exp`, `iat`,
//! `jti` differ per token), so they would rarely repeat and make large keys.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::runtime::{
    CallerAttributes, Principal, RequestContext, Resource, RuntimeRequest, Source,
};
use crate::Decision;

/// Most decisions remembered.
pub(crate) const ENTRIES: usize = 8192;
/// Longest request remembered, in key bytes (a request path is most of it).
pub(crate) const KEY_MAX: usize = 512;

/// Decisions by request, for one immutable set of policies.
#[derive(Default)]
pub(crate) struct Memo {
    decisions: Mutex<HashMap<Box<[u8]>, Decision>>,
}

impl Memo {
    /// The remembered decision of the request whose key is `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Decision> {
        self.decisions.lock().ok()?.get(key).cloned()
    }

    /// Remembers `decision` for `key`.
    pub(crate) fn put(&self, key: Box<[u8]>, decision: &Decision) {
        // A poisoned lock only loses the memo: decisions are made afresh.
        if let Ok(mut decisions) = self.decisions.lock() {
            if decisions.len() >= ENTRIES {
                decisions.clear();
            }
            decisions.insert(key, decision.clone());
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.decisions.lock().map_or(0, |d| d.len())
    }
}

/// The memo key of `request`: every field the decision reads, tagged and
/// length-prefixed so distinct requests never write the same bytes; `None`
/// for a request not to remember (a JWT caller's, or one longer than
/// [`KEY_MAX`]).
pub(crate) fn key(request: &RuntimeRequest) -> Option<Box<[u8]>> {
    let RuntimeRequest {
        principal,
        action,
        resource,
        context,
    } = request;
    let mut k = Key(Vec::with_capacity(128));
    principal_key(&mut k, principal);
    k.str(action.as_str());
    resource_key(&mut k, resource);
    context_key(&mut k, context)?;
    (k.0.len() <= KEY_MAX).then(|| k.0.into_boxed_slice())
}

struct Key(Vec<u8>);

impl Key {
    fn tag(&mut self, t: u8) {
        self.0.push(t);
    }

    fn str(&mut self, s: &str) {
        // Lengths beyond u32 make keys far beyond KEY_MAX: saturating
        // cannot make two remembered keys equal.
        let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }

    fn opt(&mut self, s: Option<&str>) {
        match s {
            None => self.tag(0),
            Some(s) => {
                self.tag(1);
                self.str(s);
            }
        }
    }

    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
}

fn principal_key(k: &mut Key, p: &Principal) {
    match p {
        Principal::Public => k.tag(0),
        Principal::Function { tenant, name } => {
            k.tag(1);
            k.str(tenant);
            k.str(name);
        }
        Principal::EventSource { tenant, name } => {
            k.tag(2);
            k.str(tenant);
            k.str(name);
        }
        Principal::Jwt {
            tenant,
            issuer,
            subject,
        } => {
            k.tag(3);
            k.str(tenant);
            k.str(issuer);
            k.str(subject);
        }
        Principal::ApiKey { tenant, name } => {
            k.tag(4);
            k.str(tenant);
            k.str(name);
        }
        Principal::Mtls { tenant, ca, id } => {
            k.tag(5);
            k.str(tenant);
            k.str(ca);
            k.str(id);
        }
    }
}

fn resource_key(k: &mut Key, r: &Resource) {
    match r {
        Resource::Function { tenant, name } => {
            k.tag(0);
            k.str(tenant);
            k.str(name);
        }
        Resource::Bucket { tenant, name } => {
            k.tag(1);
            k.str(tenant);
            k.str(name);
        }
        Resource::Queue { tenant, name } => {
            k.tag(2);
            k.str(tenant);
            k.str(name);
        }
        Resource::Host(h) => {
            k.tag(3);
            k.str(h);
        }
        Resource::ObjectBucket { tenant, name } => {
            k.tag(4);
            k.str(tenant);
            k.str(name);
        }
    }
}

fn source_key(k: &mut Key, s: &Source) {
    let Source {
        kind,
        ip,
        spiffe_id,
        tenant,
        function,
    } = s;
    k.str(kind);
    match ip {
        None => k.tag(0),
        Some(IpAddr::V4(a)) => {
            k.tag(4);
            k.0.extend_from_slice(&a.octets());
        }
        Some(IpAddr::V6(a)) => {
            k.tag(6);
            k.0.extend_from_slice(&a.octets());
        }
    }
    k.opt(spiffe_id.as_deref());
    k.opt(tenant.as_deref());
    k.opt(function.as_deref());
}

fn context_key(k: &mut Key, c: &RequestContext) -> Option<()> {
    match c {
        RequestContext::Invoke {
            method,
            path,
            source,
            depth,
            caller,
        } => {
            k.tag(0);
            k.str(method);
            k.str(path);
            source_key(k, source);
            k.u64(u64::from(*depth));
            match caller {
                CallerAttributes::None => k.tag(0),
                CallerAttributes::Claims(_) => return None,
                CallerAttributes::ApiKey(name) => {
                    k.tag(2);
                    k.str(name);
                }
                CallerAttributes::Certificate(c) => {
                    let crate::runtime::CertificateAttributes {
                        spiffe_id,
                        subject,
                        ca,
                        serial,
                    } = c.as_ref();
                    k.tag(3);
                    k.str(spiffe_id);
                    k.str(subject);
                    k.str(ca);
                    k.str(serial);
                }
            }
        }
        RequestContext::Key(key) => {
            k.tag(1);
            k.str(key);
        }
        RequestContext::List(cursor) => {
            k.tag(2);
            k.u64(*cursor);
        }
        RequestContext::Call { method, path } => {
            k.tag(3);
            k.str(method);
            k.str(path);
        }
        RequestContext::Outbound {
            method,
            url,
            scheme,
            port,
            path,
        } => {
            k.tag(4);
            k.str(method);
            k.str(url);
            k.str(scheme);
            k.u64(u64::from(*port));
            k.str(path);
        }
        RequestContext::Audience(a) => {
            k.tag(5);
            k.str(a);
        }
        RequestContext::Publish { bytes } => {
            k.tag(6);
            k.u64(*bytes);
        }
        RequestContext::Object { key, bytes } => {
            k.tag(7);
            k.str(key);
            k.u64(*bytes);
        }
    }
    Some(())
}
