//! [`SvidRotator`]: keeps a current X.509-SVID for one SPIFFE ID, renewed at half-life.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;

use crate::ca::CertificateAuthority;
use crate::error::IdentityError;
use crate::spiffe_id::SpiffeId;
use crate::x509_svid::{remaining, X509Svid};

/// Longest single sleep of the rotation loop. Timers run on the monotonic clock, which
/// stands still while a machine is suspended, and certificates expire by the wall clock;
/// waking at least this often re-reads the wall clock, so a long suspend or a clock step
/// is noticed within this bound.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// Wait before retrying a failed issuance.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Holds the current X.509-SVID of one workload and replaces it when half its lifetime has
/// passed ([`X509Svid::should_rotate`]).
///
/// [`current`](Self::current) never returns nothing: the first SVID is issued by
/// [`new`](Self::new), and a replacement is swapped in only once it exists, so readers see
/// the old SVID or the new one, never a gap. Renewing at half-life leaves the second half
/// of the lifetime for retries, so a transient issuance failure does not let the current
/// SVID expire; only a failure lasting half a lifetime would.
#[derive(Debug)]
pub struct SvidRotator {
    ca: Arc<CertificateAuthority>,
    id: SpiffeId,
    ttl: Duration,
    // INVARIANT: always holds an SVID for `id` issued by `ca`.
    current: RwLock<Arc<X509Svid>>,
    clock: Clock,
}

impl SvidRotator {
    /// Issue the first SVID for `id` with lifetime `ttl` and return the rotator holding it.
    /// Fails if the CA refuses `id` or `ttl`.
    pub fn new(
        ca: Arc<CertificateAuthority>,
        id: SpiffeId,
        ttl: Duration,
    ) -> Result<Arc<SvidRotator>, IdentityError> {
        SvidRotator::with_clock(ca, id, ttl, Clock::System)
    }

    fn with_clock(
        ca: Arc<CertificateAuthority>,
        id: SpiffeId,
        ttl: Duration,
        clock: Clock,
    ) -> Result<Arc<SvidRotator>, IdentityError> {
        let first = ca.issue_x509_svid_at(&id, ttl, clock.now())?;
        Ok(Arc::new(SvidRotator {
            ca,
            id,
            ttl,
            current: RwLock::new(Arc::new(first)),
            clock,
        }))
    }

    /// The SPIFFE ID this rotator issues for.
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.id
    }

    /// The current SVID.
    pub fn current(&self) -> Arc<X509Svid> {
        // The guarded value is a single `Arc`, replaced whole, so a poisoned lock still
        // holds a valid SVID.
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Renew the SVID at half-life until `shutdown` holds `true` or its sender is dropped.
    ///
    /// # Cancel safety
    /// Cancel-safe: dropping the future between renewals leaves the current SVID in place.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow_and_update() {
                break;
            }
            let wait = self.until_rotation().min(MAX_SLEEP);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break; // the sender is gone: nobody can ask for shutdown any more
                    }
                    continue;
                }
            }
            let now = self.clock.now();
            if !self.current().should_rotate(now) {
                continue;
            }
            match self.ca.issue_x509_svid_at(&self.id, self.ttl, now) {
                Ok(svid) => {
                    tracing::debug!(
                        spiffe_id = %self.id,
                        serial = %svid.serial(),
                        not_after = %svid.not_after(),
                        "rotated X509-SVID"
                    );
                    let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
                    *current = Arc::new(svid);
                }
                Err(error) => {
                    tracing::warn!(spiffe_id = %self.id, %error, "X509-SVID rotation failed; keeping the current SVID and retrying");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_AFTER) => {}
                        changed = shutdown.changed() => {
                            if changed.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        }
        tracing::debug!(spiffe_id = %self.id, "X509-SVID rotation stopped");
    }

    fn until_rotation(&self) -> Duration {
        remaining(self.current().rotate_at(), self.clock.now())
    }
}

/// Where the rotator reads the wall-clock time.
#[derive(Debug, Clone, Copy)]
enum Clock {
    System,
    /// Wall time that advances with tokio's clock, so tests with paused time see
    /// certificates age.
    #[cfg(test)]
    Tokio {
        wall: OffsetDateTime,
        start: tokio::time::Instant,
    },
}

impl Clock {
    fn now(&self) -> OffsetDateTime {
        match self {
            Clock::System => OffsetDateTime::now_utc(),
            #[cfg(test)]
            Clock::Tokio { wall, start } => *wall + start.elapsed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TrustDomain;

    fn setup() -> (tempfile::TempDir, Arc<CertificateAuthority>, SpiffeId) {
        let dir = tempfile::tempdir().unwrap();
        let td = TrustDomain::default();
        let ca = Arc::new(CertificateAuthority::load_or_create(dir.path(), &td).unwrap());
        let id = SpiffeId::for_function(&td, "acme", "hello").unwrap();
        (dir, ca, id)
    }

    /// A tokio clock anchored at a whole second, so half-lives fall on whole seconds.
    fn tokio_clock() -> Clock {
        let now = OffsetDateTime::now_utc();
        Clock::Tokio {
            wall: crate::x509_svid::whole_seconds(now),
            start: tokio::time::Instant::now(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn renews_at_half_life_and_never_serves_an_expired_svid() {
        let (_dir, ca, id) = setup();
        let clock = tokio_clock();
        let ttl = Duration::from_secs(2);
        let rotator = SvidRotator::with_clock(ca.clone(), id.clone(), ttl, clock).unwrap();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(rotator.clone().run(stopped));

        let mut seen = vec![rotator.current()];
        // 5 s of tokio time in 100 ms steps: 2.5 lifetimes.
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = clock.now();
            let current = rotator.current();
            assert_eq!(current.spiffe_id(), &id);
            assert_eq!(
                ca.verify_x509_svid(current.cert_pem(), now).unwrap(),
                id,
                "current SVID must verify at every moment"
            );
            assert!(
                remaining(current.not_after(), now) >= ttl / 2,
                "less than half a lifetime left at {now}"
            );
            let last = seen.last().unwrap();
            if last.serial() != current.serial() {
                assert!(last.should_rotate(now), "rotated before half-life");
                seen.push(current);
            }
        }
        // One renewal per second of tokio time: the first SVID and five successors.
        assert!((5..=6).contains(&seen.len()), "{} SVIDs in 5 s", seen.len());
        let serials: std::collections::HashSet<_> =
            seen.iter().map(|s| s.serial().clone()).collect();
        assert_eq!(
            serials.len(),
            seen.len(),
            "every renewal has a fresh serial"
        );

        stop.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn stops_when_the_sender_is_dropped() {
        let (_dir, ca, id) = setup();
        let rotator =
            SvidRotator::with_clock(ca, id, Duration::from_secs(60), tokio_clock()).unwrap();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(rotator.clone().run(stopped));
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(stop);
        task.await.unwrap();
        assert!(rotator.current().not_after() > OffsetDateTime::now_utc());
    }

    #[test]
    fn new_refuses_what_the_ca_refuses() {
        let (_dir, ca, id) = setup();
        let err = SvidRotator::new(ca.clone(), id, Duration::ZERO).unwrap_err();
        assert!(matches!(err, IdentityError::TtlInvalid { .. }), "{err}");
        let root = ca.trust_domain().id();
        let err = SvidRotator::new(ca, root, Duration::from_secs(60)).unwrap_err();
        assert!(matches!(err, IdentityError::NotAWorkloadId { .. }), "{err}");
    }
}
