//! Caps on open connections, in total and per client address, counted by
//! the canonical peer address so that one client has one count whatever
//! spelling of its address the socket reports.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
