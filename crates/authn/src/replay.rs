//! Replay protection for issuers that opt in (`--require-jti`): a token's `jti` (RFC 7519
//! §4.1.7) is accepted once. Each accepted `(tenant, issuer, jti)` is remembered until the
//! token expires (`exp` plus the issuer's leeway), after which the token is refused as
//! expired anyway.
//!
//! # Trust
//! Trusts the verified claims it is given (signature, `exp` and the rest already checked).
//! Bounded: at most [`MAX_REPLAY_ENTRIES`] tokens are remembered, and an issuer that
//! requires `jti` may only issue tokens that expire within [`MAX_JTI_LIFETIME_SECS`] of
//! now, so nothing is forgotten while it could still be replayed. A full cache refuses
//! new tokens (fail closed) instead of forgetting unexpired ones. The cache lives in
//! memory: a restart forgets it (see the crate's "Falls short").

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};

use crate::AuthnError;

/// Most remembered tokens, across every tenant.
pub const MAX_REPLAY_ENTRIES: usize = 100_000;
/// Longest remaining lifetime (`exp` minus now) of a token of an issuer that requires
/// `jti`: a day.
pub const MAX_JTI_LIFETIME_SECS: i64 = 24 * 3600;
/// Longest `jti` accepted.
pub const MAX_JTI_BYTES: usize = 256;

type Key = (String, String, String);

/// The `jti`s seen, until their tokens expire.
#[derive(Debug)]
pub struct ReplayCache {
    inner: Mutex<Inner>,
    max_entries: usize,
}

#[derive(Debug, Default)]
struct Inner {
    seen: HashMap<Key, i64>,
    by_expiry: BTreeSet<(i64, Key)>,
}

impl Default for ReplayCache {
    fn default() -> Self {
        ReplayCache::with_capacity(MAX_REPLAY_ENTRIES)
    }
}

impl ReplayCache {
    /// A cache that remembers at most `max_entries` tokens.
    pub fn with_capacity(max_entries: usize) -> ReplayCache {
        ReplayCache {
            inner: Mutex::new(Inner::default()),
            max_entries,
        }
    }

    /// Records `jti` of `issuer` (of `tenant`) until `until` (seconds since the Unix
    /// epoch); a `jti` already recorded and not yet past is a replay.
    pub fn record(
        &self,
        tenant: &str,
        issuer: &str,
        jti: &str,
        until: i64,
        now: i64,
    ) -> Result<(), AuthnError> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        // Forget what has expired (oldest first).
        while let Some(first) = inner.by_expiry.first().cloned() {
            if first.0 >= now {
                break;
            }
            inner.by_expiry.remove(&first);
            inner.seen.remove(&first.1);
        }
        let key: Key = (tenant.to_owned(), issuer.to_owned(), jti.to_owned());
        if inner.seen.contains_key(&key) {
            return Err(AuthnError::Replayed);
        }
        if inner.seen.len() >= self.max_entries {
            return Err(AuthnError::ReplayCacheFull);
        }
        inner.seen.insert(key.clone(), until);
        inner.by_expiry.insert((until, key));
        Ok(())
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .seen
            .len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_jti_is_accepted_once_until_it_expires() {
        let c = ReplayCache::with_capacity(3);
        c.record("acme", "corp", "a", 100, 10).unwrap();
        assert_eq!(
            c.record("acme", "corp", "a", 100, 11),
            Err(AuthnError::Replayed)
        );
        // Scoped by tenant and issuer.
        c.record("acme", "other", "a", 100, 11).unwrap();
        c.record("beta", "corp", "a", 100, 11).unwrap();
        // Full: refused, nothing unexpired is forgotten.
        assert_eq!(
            c.record("acme", "corp", "b", 100, 12),
            Err(AuthnError::ReplayCacheFull)
        );
        assert_eq!(
            c.record("acme", "corp", "a", 100, 12),
            Err(AuthnError::Replayed)
        );
        // Past their expiry, entries are forgotten and room is made.
        c.record("acme", "corp", "b", 300, 101).unwrap();
        assert_eq!(c.len(), 1);
    }
}
