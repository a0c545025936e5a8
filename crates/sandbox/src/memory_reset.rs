//! How an instance slot's linear memories and tables get back to their
//! original contents between invocations, and the host condition that
//! makes the faster way safe.
//!
//! Every invocation gets a fresh instance, but the pooling allocator reuses
//! the same virtual memory slot (for the same component, if it can). By
//! default wasmtime resets a slot by handing every page back to the kernel
//! (`madvise(MADV_DONTNEED)`): the next instance then takes a page fault for
//! each page of the memory image it reads (mapping the image again) or
//! writes (copying it again). A JavaScript guest touches about 250 pages of
//! its 9 MiB image per request, so most of a request's kernel time was those
//! faults: `wasmtime serve` pays them too.
//!
//! [`MemoryReset::InPlace`] asks the kernel which pages the guest wrote
//! (the `PAGEMAP_SCAN` ioctl, Linux 6.7+), has wasmtime copy those pages'
//! original bytes back (from the image, or zeros) and leaves them mapped,
//! up to [`KEEP_RESIDENT_BYTES`] per memory and table; pages only read stay
//! mapped to the image; what is past the budget is handed back to the
//! kernel as before. The next instance in the slot starts with the same
//! contents either way, without the faults.
//!
//! # Trust
//! Trusts the kernel's `PAGEMAP_SCAN` report and wasmtime's reset. Both
//! fall short in one known case: wasmtime 48 resets only written pages that
//! are *present*, so a written page the kernel swapped out before the reset
//! would keep the previous invocation's bytes for the next one (wasmtime
//! pull request 14357, open). Hence in-place reset is chosen only when no
//! swap area is active (`/proc/swaps` lists none; unreadable counts as
//! active), and [`ResetGuard::recheck`], run every second by the epoch
//! thread, refuses every later invocation once a swap area appears (fail
//! closed: restart to reset by `madvise` again). Without `PAGEMAP_SCAN`, or
//! with swap, slots are reset by `madvise` exactly as before.

use std::sync::atomic::{AtomicBool, Ordering};

use wasmtime::{Enabled, PoolingAllocationConfig};

use crate::InvokeError;

/// Bytes of written pages per linear memory and per table that a reset
/// copies back in place rather than handing to the kernel; also what an
/// idle warm slot may keep resident. Measured with `wasmtime serve` on
/// hello-js and hello-py, 4 and 16 MiB fault exactly as often as 1 MiB:
/// wasmtime 48's scan reports at most 32 runs of written pages per reset
/// and hands the rest of the memory back, so a larger budget would buy
/// resident memory, not fewer faults.
pub(crate) const KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// Where the kernel lists active swap areas.
const PROC_SWAPS: &str = "/proc/swaps";

/// How slots are reset between invocations (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryReset {
    /// Written pages are copied back in place and stay mapped.
    InPlace,
    /// Every touched page is handed back to the kernel (wasmtime's default).
    Decommit,
}

/// The reset mode chosen at start, and whether the condition it relies on
/// (no active swap) still holds.
#[derive(Debug)]
pub(crate) struct ResetGuard {
    mode: MemoryReset,
    /// A swap area appeared after in-place reset was chosen.
    tripped: AtomicBool,
}

impl ResetGuard {
    /// Choose the reset mode: in place if `wanted`, the kernel offers
    /// `PAGEMAP_SCAN` and no swap area is active; otherwise by `madvise`.
    pub(crate) fn choose(wanted: bool) -> ResetGuard {
        let in_place = wanted
            && PoolingAllocationConfig::is_pagemap_scan_available()
            && !swap_may_be_active(std::fs::read_to_string(PROC_SWAPS).ok().as_deref());
        ResetGuard {
            mode: if in_place {
                MemoryReset::InPlace
            } else {
                MemoryReset::Decommit
            },
            tripped: AtomicBool::new(false),
        }
    }

    /// The mode the pool was configured with.
    pub(crate) fn mode(&self) -> MemoryReset {
        self.mode
    }

    /// Configure `pool` for the chosen mode.
    pub(crate) fn configure(&self, pool: &mut PoolingAllocationConfig) {
        match self.mode {
            MemoryReset::InPlace => {
                pool.pagemap_scan(Enabled::Yes)
                    .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
                    .table_keep_resident(KEEP_RESIDENT_BYTES);
            }
            MemoryReset::Decommit => {
                pool.pagemap_scan(Enabled::No)
                    .linear_memory_keep_resident(0)
                    .table_keep_resident(0);
            }
        }
    }

    /// Read `/proc/swaps` again; in place, trip the guard for good if a
    /// swap area may now be active. Cheap (one small procfs read): the
    /// epoch thread calls it once a second.
    pub(crate) fn recheck(&self) {
        if self.mode == MemoryReset::InPlace && !self.tripped.load(Ordering::Relaxed) {
            self.observe_swaps(std::fs::read_to_string(PROC_SWAPS).ok().as_deref());
        }
    }

    /// Trip the guard if `swaps` (the text of `/proc/swaps`, `None` if it
    /// could not be read) may list an active swap area.
    fn observe_swaps(&self, swaps: Option<&str>) {
        if swap_may_be_active(swaps) && !self.tripped.swap(true, Ordering::Relaxed) {
            tracing::error!(
                "a swap area became active while instance memory is reset in place; \
                 refusing invocations until zerofn is restarted"
            );
        }
    }

    /// Refuse an invocation when in-place reset is no longer known to
    /// give each instance fresh memory.
    pub(crate) fn check(&self) -> Result<(), InvokeError> {
        if self.tripped.load(Ordering::Relaxed) {
            return Err(InvokeError::Internal {
                detail: "a swap area became active after start while instance memory is reset \
                         in place; restart zerofn"
                    .into(),
            });
        }
        Ok(())
    }
}

/// Whether `swaps`, the text of `/proc/swaps`, may list an active swap
/// area: true for any line after the header, and for text that is missing
/// or does not start with the expected header (fail closed).
fn swap_may_be_active(swaps: Option<&str>) -> bool {
    let Some(text) = swaps else { return true };
    let mut lines = text.lines();
    match lines.next() {
        Some(header) if header.starts_with("Filename") => lines.any(|line| !line.trim().is_empty()),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";

    #[test]
    fn only_a_bare_header_means_no_swap() {
        assert!(!swap_may_be_active(Some(HEADER)));
        assert!(!swap_may_be_active(Some(&format!("{HEADER}\n"))));
        let active = format!("{HEADER}/dev/zram0 partition\t8388604\t0\t100\n");
        assert!(swap_may_be_active(Some(&active)));
        let file = format!("{HEADER}/swapfile file 1048572 0 -2\n");
        assert!(swap_may_be_active(Some(&file)));
    }

    #[test]
    fn unreadable_or_unexpected_swaps_count_as_active() {
        assert!(swap_may_be_active(None));
        assert!(swap_may_be_active(Some("")));
        assert!(swap_may_be_active(Some("something else\n")));
    }

    fn in_place() -> ResetGuard {
        ResetGuard {
            mode: MemoryReset::InPlace,
            tripped: AtomicBool::new(false),
        }
    }

    #[test]
    fn swap_appearing_after_start_refuses_every_later_invocation() {
        let guard = in_place();
        guard.observe_swaps(Some(HEADER));
        assert!(guard.check().is_ok());
        guard.observe_swaps(Some(&format!("{HEADER}/swapfile file 1048572 0 -2\n")));
        let err = guard.check().unwrap_err();
        assert_eq!(err.kind(), "internal");
        assert!(format!("{err:?}").contains("swap area"), "{err:?}");
        // Swap going away again does not make the slots trustworthy again:
        // a page swapped out meanwhile may still hold old bytes.
        guard.observe_swaps(Some(HEADER));
        assert!(guard.check().is_err());
    }

    #[test]
    fn unreadable_swaps_after_start_refuse_too() {
        let guard = in_place();
        guard.observe_swaps(None);
        assert!(guard.check().is_err());
    }

    #[test]
    fn decommit_mode_never_trips() {
        let guard = ResetGuard {
            mode: MemoryReset::Decommit,
            tripped: AtomicBool::new(false),
        };
        guard.recheck();
        assert!(guard.check().is_ok());
    }

    /// A core module with one memory whose image holds `A` at address 16,
    /// and `run(addr)`, which returns the byte at `addr` and then writes
    /// `X` over it.
    const READ_THEN_SCRIBBLE: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
        0x01, 0x06, 0x01, 0x60, 0x01, 0x7f, 0x01, 0x7f, // type: (i32) -> i32
        0x03, 0x02, 0x01, 0x00, // one function of that type
        0x05, 0x03, 0x01, 0x00, 0x02, // memory: 2 pages, no maximum
        0x07, 0x07, 0x01, 0x03, b'r', b'u', b'n', 0x00, 0x00, // export "run"
        0x0a, 0x11, 0x01, 0x0f, 0x00, // code: one body, no locals
        0x20, 0x00, 0x2d, 0x00, 0x00, // local.get 0; i32.load8_u
        0x20, 0x00, 0x41, 0xd8, 0x00, 0x3a, 0x00, 0x00, // i32.store8 (addr, 'X')
        0x0b, // end
        0x0b, 0x07, 0x01, 0x00, 0x41, 0x10, 0x0b, 0x01, b'A', // data: "A" at 16
    ];

    /// Whatever the host allows (in place here if the kernel has
    /// `PAGEMAP_SCAN` and no swap is on; by `madvise` otherwise), and
    /// with it forced off: an instance that reuses a slot its predecessor
    /// wrote to sees the image's bytes and zeros, never the predecessor's.
    #[tokio::test]
    async fn a_reused_slot_starts_from_the_original_memory() {
        for wanted in [true, false] {
            let cache = tempfile::tempdir().unwrap();
            let mut config = crate::SandboxConfig::new(cache.path().to_path_buf());
            config.max_instances = 1;
            config.reset_memory_in_place = wanted;
            let sandbox = crate::Sandbox::new(config).unwrap();
            let engine = &sandbox.engine;
            let module = wasmtime::Module::new(engine, READ_THEN_SCRIBBLE).unwrap();
            for round in 0..6 {
                let mut store = wasmtime::Store::new(engine, ());
                // The engine interrupts on epochs; this guest ends at once.
                store.set_epoch_deadline(1_000_000);
                let instance = wasmtime::Instance::new_async(&mut store, &module, &[])
                    .await
                    .unwrap();
                let run = instance
                    .get_typed_func::<i32, i32>(&mut store, "run")
                    .unwrap();
                // In the image, on the image's page past it, on a page
                // the image does not cover.
                for (addr, original) in [(16, i32::from(b'A')), (17, 0), (70_000, 0)] {
                    let seen = run.call_async(&mut store, addr).await.unwrap();
                    assert_eq!(
                        seen,
                        original,
                        "round {round}, address {addr}, mode {:?}",
                        sandbox.memory_reset()
                    );
                    assert_eq!(run.call_async(&mut store, addr).await.unwrap(), 88);
                }
            }
            // In place exactly when this host allows it.
            let allowed = PoolingAllocationConfig::is_pagemap_scan_available()
                && !swap_may_be_active(std::fs::read_to_string(PROC_SWAPS).ok().as_deref());
            let expected = if wanted && allowed {
                MemoryReset::InPlace
            } else {
                MemoryReset::Decommit
            };
            assert_eq!(sandbox.memory_reset(), expected);
        }
    }

    #[test]
    fn not_wanted_means_decommit() {
        assert_eq!(ResetGuard::choose(false).mode(), MemoryReset::Decommit);
    }
}
