//! Platform-wide bounds that no single request can see on its own: bytes
//! of request bodies in flight across the gateway and the nested
//! invocations of one call tree (connections are bounded by
//! `zerofn-listener`).
//! Also the one definition of the platform's header namespace.
//!
//! # Trust
//! Trusts nothing a client or guest says about sizes: a body budget is
//! reserved by the declared length before reading and grown by what
//! actually arrives.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
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
