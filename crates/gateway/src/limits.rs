//! Platform-wide bounds that no single request can see on its own: bytes
//! of request bodies in flight across the gateway, connections in total
//! and per client address, and the nested invocations of one call tree.
//! Also the one definition of the platform's header namespace.
//!
//! # Trust
//! Trusts nothing a client or guest says about sizes: a body budget is
//! reserved by the declared length before reading and grown by what
//! actually arrives; connection counts are by the canonical peer address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use http::HeaderMap;

/// Prefix of every header the platform sets for guests; a client or a
/// calling guest never gets to set one, in any spelling.
pub const PLATFORM_HEADER_PREFIX: &str = "x-zerofn-";

/// Whether `name` is in the platform's namespace: lowercased, with `_`
/// read as `-` (as CGI-style servers and many frameworks do), it starts
/// with `x-zerofn-`.
pub fn is_platform_header(name: &str) -> bool {
    let prefix = PLATFORM_HEADER_PREFIX.as_bytes();
    let Some(head) = name.as_bytes().get(..prefix.len()) else {
        return false;
    };
    head.iter().zip(prefix).all(|(&b, &p)| {
        let b = if b == b'_' {
            b'-'
        } else {
            b.to_ascii_lowercase()
        };
        b == p
    })
}

/// Remove every header in the platform's namespace from `headers`.
pub fn strip_platform_headers(headers: &mut HeaderMap) {
    // The common case (none present) allocates nothing.
    if !headers.keys().any(|k| is_platform_header(k.as_str())) {
        return;
    }
    let names: Vec<http::HeaderName> = headers
        .keys()
        .filter(|k| is_platform_header(k.as_str()))
        .cloned()
        .collect();
    for name in names {
        headers.remove(&name);
    }
}

/// The bytes of request bodies held across the gateway, bounded as a
/// whole.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    limit: usize,
    used: AtomicUsize,
}

impl BodyBudget {
    pub(crate) fn new(limit: usize) -> Arc<BodyBudget> {
        Arc::new(BodyBudget {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// An empty reservation, to grow.
    pub(crate) fn reservation(self: &Arc<Self>) -> BodyReservation {
        BodyReservation {
            budget: self.clone(),
            held: 0,
        }
    }

    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// Bytes of the [`BodyBudget`] held by one request until it is dropped
/// (after its invocation has finished with the body).
#[derive(Debug)]
pub(crate) struct BodyReservation {
    budget: Arc<BodyBudget>,
    held: usize,
}

impl BodyReservation {
    /// Hold at least `total` bytes; false (holding what it held) when
    /// the budget cannot give them.
    pub(crate) fn grow_to(&mut self, total: usize) -> bool {
        let more = total.saturating_sub(self.held);
        if more == 0 {
            return true;
        }
        if self.budget.take(more) {
            self.held = total;
            true
        } else {
            false
        }
    }
}

impl Drop for BodyReservation {
    fn drop(&mut self) {
        if self.held > 0 {
            self.budget.used.fetch_sub(self.held, Ordering::AcqRel);
        }
    }
}

/// Caps on open connections: in total and per client address.
#[derive(Debug)]
pub struct ConnectionLimits {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRefusal {
    Total(usize),
    PerAddress(usize),
}

impl ConnectionRefusal {
    pub fn reason(self) -> String {
        match self {
            ConnectionRefusal::Total(n) => {
                format!(
                    "connection refused: the listener's limit of {n} open connections is reached"
                )
            }
            ConnectionRefusal::PerAddress(n) => {
                format!("connection refused: the limit of {n} open connections per client address is reached")
            }
        }
    }
}

impl ConnectionLimits {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnectionLimits> {
        Arc::new(ConnectionLimits {
            max_total,
            max_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// A permit for one more connection from `ip`, held while the
    /// connection is open, or why not.
    pub fn try_acquire(
        self: &Arc<Self>,
        ip: IpAddr,
    ) -> Result<ConnectionPermit, ConnectionRefusal> {
        let ip = ip.to_canonical();
        let taken = self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_total).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(ConnectionRefusal::Total(self.max_total));
        }
        let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let count = per_ip.entry(ip).or_insert(0);
        if *count >= self.max_per_ip {
            if *count == 0 {
                per_ip.remove(&ip);
            }
            drop(per_ip);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(ConnectionRefusal::PerAddress(self.max_per_ip));
        }
        *count += 1;
        Ok(ConnectionPermit {
            limits: self.clone(),
            ip,
        })
    }
}

/// One open connection, counted until dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut per_ip = self
            .limits
            .per_ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
        drop(per_ip);
        self.limits.total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Default for the most invocations one root request may cause in all,
/// itself included, however its call tree branches (beside the depth
/// limit).
pub const MAX_TREE_INVOCATIONS: u32 = 16;

/// What every invocation of one root request's call tree shares.
#[derive(Debug)]
pub(crate) struct CallTree {
    invocations: AtomicU32,
    limit: u32,
}

impl CallTree {
    /// The tree of a new root request, which is its first invocation, and
    /// may hold at most `limit` invocations.
    pub(crate) fn root(limit: u32) -> Arc<CallTree> {
        Arc::new(CallTree {
            invocations: AtomicU32::new(1),
            limit,
        })
    }

    /// The most invocations the tree may hold.
    pub(crate) fn limit(&self) -> u32 {
        self.limit
    }

    /// Count one more invocation in the tree; false when the budget is
    /// spent (and nothing is counted).
    pub(crate) fn try_invoke(&self) -> bool {
        self.invocations
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok()
    }
}

/// The earlier of two optional deadlines.
pub(crate) fn earlier(a: Option<Instant>, b: Instant) -> Instant {
    match a {
        Some(a) => a.min(b),
        None => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_the_platform_namespace_is_recognised() {
        for name in [
            "x-zerofn-caller-spiffe-id",
            "x_zerofn_caller_spiffe_id",
            "X_ZeroFn-Caller_SPIFFE-Id",
            "x-zerofn_invocation-id",
            "x_zerofn-",
        ] {
            assert!(is_platform_header(name), "{name}");
        }
        for name in [
            "x-zerofn",
            "x-zerof",
            "xzerofn-a",
            "x-zerofnx",
            "content-type",
            "",
        ] {
            assert!(!is_platform_header(name), "{name}");
        }
    }

    #[test]
    fn stripping_removes_all_spellings_and_keeps_the_rest() {
        let mut h = HeaderMap::new();
        h.insert(
            "x_zerofn_caller_spiffe_id",
            "spiffe://evil".parse().unwrap(),
        );
        h.insert(
            "x-zerofn-caller-spiffe-id",
            "spiffe://evil".parse().unwrap(),
        );
        h.append("X_ZEROFN-INVOCATION_ID", "fake".parse().unwrap());
        h.insert("x-other", "kept".parse().unwrap());
        strip_platform_headers(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h.get("x-other").unwrap(), "kept");
    }

    #[test]
    fn the_body_budget_is_shared_and_given_back() {
        let budget = BodyBudget::new(100);
        let mut a = budget.reservation();
        let mut b = budget.reservation();
        assert!(a.grow_to(60));
        assert!(!b.grow_to(50));
        assert!(b.grow_to(40));
        assert!(!a.grow_to(61));
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 40);
        assert!(b.grow_to(100));
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn connections_are_capped_in_total_and_per_address() {
        let limits = ConnectionLimits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = limits.try_acquire(a).unwrap();
        let _p2 = limits.try_acquire(mapped).unwrap();
        assert_eq!(
            limits.try_acquire(a).unwrap_err(),
            ConnectionRefusal::PerAddress(2)
        );
        let _p3 = limits.try_acquire(b).unwrap();
        assert_eq!(
            limits.try_acquire(b).unwrap_err(),
            ConnectionRefusal::Total(3)
        );
        drop(p1);
        let _p4 = limits.try_acquire(a).unwrap();
    }

    #[test]
    fn a_call_tree_has_a_budget_of_invocations() {
        let tree = CallTree::root(MAX_TREE_INVOCATIONS);
        let mut granted = 1;
        while tree.try_invoke() {
            granted += 1;
            assert!(granted <= MAX_TREE_INVOCATIONS);
        }
        assert_eq!(granted, MAX_TREE_INVOCATIONS);
    }
}
