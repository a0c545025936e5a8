#![deny(unsafe_code)]
//! The sandbox: compiles admitted components and runs each request in a
//! fresh, locked-down wasmtime instance of the `wasi:http/proxy` world.
//!
//! # Trust
//! Trusts wasmtime to confine a guest to its linear memory and to the host
//! functions linked here; trusts nothing a guest does or returns. Accepts
//! only [`zerofn_admission::AdmittedArtifact`]s, so unsigned code cannot
//! reach the compiler, and checks precompiled code read back from disk
//! against the SHA-256 recorded when it was produced. Trusts the
//! [`host_interface::HostCapabilities`] the caller passes with each
//! invocation to decide the guest's key-value, configuration and outbound
//! HTTP calls; the sandbox decides none of them itself.
//!
//! # Guarantees
//! - Every request gets a new `Store` and instance: no state survives
//!   between requests or crosses tenants. A reused instance slot starts
//!   with its component's original memory and tables, reset in place only
//!   while no swap area is active ([`memory_reset`]).
//! - A guest sees no preopened directories, no environment, no arguments,
//!   no sockets and no name lookup; the filesystem, sockets and cli
//!   interfaces that componentize-py and jco guests import are linked but
//!   find nothing ([`wasi`]).
//! - Host capabilities (`wasi:keyvalue`, `wasi:config`, outbound HTTP
//!   through [`outbound`]) are granted per invocation by the caller's
//!   [`host_interface::HostCapabilities`]; the sandbox only translates and
//!   bounds sizes, the platform decides every call.
//! - Memory is capped per function (all memories of the instance together),
//!   wall-clock time by epoch interruption: every 10 ms tick the guest
//!   yields to the scheduler and traps once its deadline has passed, so a
//!   spinning guest holds a core for at most one tick past it.
//! - stdout/stderr are captured per invocation with a size cap, and so
//!   are `wasi:logging` records ([`logging`]): always allowed (a guest
//!   writes only to its own invocation's log), never audited per line,
//!   bounded per line, in lines and in bytes.
//! - What a guest makes the host hold outside its linear memory (header
//!   fields, key-value results, outbound bodies, captured output, the
//!   response body, resource-table entries) is charged to a per-invocation
//!   host budget derived from its `memory_mb`, within a global one
//!   ([`budget`]); the resource table holds at most
//!   [`budget::MAX_TABLE_ENTRIES`] handles.
//! - Instance slots are shared fairly: a tenant runs at most its share of
//!   the pool at once, and waiting tenants are served round-robin
//!   ([`SandboxConfig::max_instances_per_tenant`]).
//! - A guest runs only as long as someone waits for it: dropping an
//!   invocation's future aborts the guest and frees its slot.
//!
//! Only the `compile` module uses `unsafe`, to load precompiled code
//! (see its `SAFETY` comments and SECURITY.md).

pub mod budget;
mod compile;
mod engine;
mod error;
mod headers;
pub mod host_interface;
mod invoke;
mod kv_config_bindings;
pub mod logging;
pub mod memory_reset;
pub mod outbound;
mod slots;
pub mod wasi;

pub use compile::LoadedFunction;
pub use engine::{Sandbox, SandboxConfig};
pub use error::{InvokeError, SandboxError};
pub use invoke::{GuestOutput, Invocation, InvokeOptions, Phases};
pub use memory_reset::MemoryReset;
