#![forbid(unsafe_code)]
// Test scaffolding: a panic with a clear message is how a test kit reports a broken setup.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The workspace's test kit (`publish = false`): one place for what tests and benchmarks
//! of every crate need.
//!
//! * [`testdata`]: the third-party test data in `../shared/testdata` (or
//!   `ZEROFN_TESTDATA`), read in place, with a clear failure when it is missing.
//! * [`guests`]: the built example guest components (`ZEROFN_GUESTS_DIR`).
//! * [`platform`]: the real `zerofn` binary started on loopback ports, driven by its CLI
//!   and a minimal HTTP/1.1 client, and stopped; function directories; tenant setup.
//! * [`memory_host`]: an in-memory implementation of the sandbox's host interface, for
//!   running guests in the real sandbox without the platform.
//!
//! # Trust
//! Test code only: it trusts its inputs and panics, with a message that says what to do,
//! when the environment is not set up.

pub mod guests;
pub mod memory_host;
pub mod platform;
pub mod testdata;

pub use guests::{guest, guests_dir};
pub use testdata::{testdata, testdata_root};
