//! The deny-by-default WASI context every instance gets.

use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder};

/// Build a context with nothing ambient: stdin closed, stdout/stderr into
/// capped in-memory pipes, no environment, no arguments, no preopened
/// directories, no TCP/UDP, every socket address refused, no name lookup.
/// Clocks and random come from the host: they grant no authority.
pub fn deny_by_default(stdout: MemoryOutputPipe, stderr: MemoryOutputPipe) -> WasiCtx {
    let mut b = WasiCtxBuilder::new();
    b.stdout(stdout)
        .stderr(stderr)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .socket_addr_check(|_, _| Box::pin(async { false }))
        .allow_blocking_current_thread(false);
    b.build()
}
