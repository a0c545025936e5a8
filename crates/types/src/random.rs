//! Public random identifiers (invocation ids, trace ids) from a per-thread CSPRNG.
//!
//! Trusts the OS for 256 bits of key per thread and nothing else.
//!
//! Why not the OS for every id: every request gets an invocation id, and with tracing on
//! a trace id too; a `getrandom` system call for each was a measurable part of what a
//! request cost. W3C Trace Context §3.2.2.3 and §8.1 ask for random, unique and (since
//! the ids travel to other parties) unpredictable ids: ChaCha20 is a CSPRNG, so knowing
//! any number of ids tells nothing about the next or the key; each thread has its own
//! key, so two threads never share a stream. No reseeding: the ids are public once sent,
//! and there is nothing secret a later key would protect. The platform does not `fork`
//! (child processes are spawned with `exec`), so no two processes continue one stream.
//! Not for keys or secrets: those come from the OS directly.

use std::cell::RefCell;

use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, RngCore, SeedableRng};

thread_local! {
    /// This thread's generator: ChaCha20 keyed once with 256 bits from the OS (`OsRng`
    /// fails only when getrandom(2) does, as it would for every key the platform makes).
    static IDS: RefCell<ChaCha20Rng> = RefCell::new({
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        ChaCha20Rng::from_seed(key)
    });
}

/// Fill `bytes` from this thread's generator.
pub fn fill_id_bytes(bytes: &mut [u8]) {
    IDS.with(|rng| match rng.try_borrow_mut() {
        Ok(mut rng) => rng.fill_bytes(bytes),
        // Only reachable if filling re-entered itself, which it does not; the OS is then
        // asked directly rather than panicking.
        Err(_) => OsRng.fill_bytes(bytes),
    });
}
