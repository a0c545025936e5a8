//! The shared wasmtime engine, its pooling allocator and epoch ticker.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use crate::budget::GlobalBudget;
use crate::invoke::InvocationState;
use crate::memory_reset::{MemoryReset, ResetGuard};
use crate::slots::Slots;
use crate::SandboxError;

/// How often the epoch advances; the granularity of deadlines and of
/// yielding between guests.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Settings of the sandbox, fixed for the life of the process.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where precompiled code is cached, keyed by digest and engine.
    pub cache_dir: PathBuf,
    /// Instances that may run at once; more requests wait for a slot.
    pub max_instances: u32,
    /// Instances one tenant may run at once; more of its requests wait
    /// while other tenants' are served. `None` means half of
    /// `max_instances`, rounded up ([`SandboxConfig::per_tenant`]).
    pub max_instances_per_tenant: Option<u32>,
    /// Bytes the host holds for all guests together (header fields,
    /// key-value results, outbound bodies, captured output, response
    /// bodies being collected); see [`crate::budget`].
    pub max_host_bytes: usize,
    /// Upper bound of any function's memory limit, in MiB.
    pub max_memory_mb: u32,
    /// Bytes of stdout, of stderr and of `wasi:logging` records kept per
    /// invocation.
    pub stdio_capture_bytes: usize,
    /// Bytes of response body accepted from a guest.
    pub max_response_bytes: usize,
    /// Reset instance slots in place between invocations when the host
    /// allows it safely ([`crate::memory_reset`]); `false` always hands
    /// touched pages back to the kernel.
    pub reset_memory_in_place: bool,
}

impl SandboxConfig {
    pub fn new(cache_dir: PathBuf) -> SandboxConfig {
        SandboxConfig {
            cache_dir,
            max_instances: 256,
            max_instances_per_tenant: None,
            max_host_bytes: 1 << 30,
            max_memory_mb: 1024,
            stdio_capture_bytes: 64 * 1024,
            max_response_bytes: 16 * 1024 * 1024,
            reset_memory_in_place: true,
        }
    }

    /// Instances one tenant may run at once: the configured share, or half
    /// the pool rounded up; at least 1, at most the pool.
    pub fn per_tenant(&self) -> u32 {
        self.max_instances_per_tenant
            .unwrap_or_else(|| self.max_instances.div_ceil(2))
            .clamp(1, self.max_instances.max(1))
    }
}

/// The runtime: one engine, one linker, a bounded number of instance slots.
pub struct Sandbox {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<InvocationState>,
    pub(crate) config: SandboxConfig,
    pub(crate) slots: Slots,
    pub(crate) host_bytes: Arc<GlobalBudget>,
    pub(crate) engine_key: String,
    pub(crate) reset: Arc<ResetGuard>,
    ticker_stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        if config.max_instances == 0 {
            return Err(SandboxError::Config(
                "max_instances must be at least 1".into(),
            ));
        }
        if config.max_instances_per_tenant == Some(0) {
            return Err(SandboxError::Config(
                "max_instances_per_tenant must be at least 1".into(),
            ));
        }
        std::fs::create_dir_all(&config.cache_dir).map_err(|source| SandboxError::CacheDir {
            path: config.cache_dir.clone(),
            source,
        })?;
        let n = config.max_instances;
        let mut pool = PoolingAllocationConfig::default();
        // Components from componentize-py link a dozen core modules, each
        // with its own instance and table, sharing one or two memories.
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(24))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(24))
            .total_stacks(n)
            .max_core_instances_per_component(64)
            .max_memories_per_component(4)
            .max_tables_per_component(64)
            .max_memories_per_module(1)
            .max_tables_per_module(4)
            .table_elements(200_000)
            .max_core_instance_size(4 << 20)
            .max_component_instance_size(4 << 20)
            .max_memory_size(
                usize::try_from(u64::from(config.max_memory_mb) << 20)
                    .map_err(|_| SandboxError::Config("max_memory_mb is too large".into()))?,
            )
            // Keep a few freed slots warm: reuse is what makes per-request
            // instantiation cheap.
            .max_unused_warm_slots(n.min(64));
        let reset = Arc::new(ResetGuard::choose(config.reset_memory_in_place));
        reset.configure(&mut pool);
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .parallel_compilation(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(|e| SandboxError::Config(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .and_then(|()| crate::headers::add_to_linker(&mut linker))
            .and_then(|()| {
                crate::kv_config_bindings::add_to_linker(&mut linker, InvocationState::capabilities)
            })
            .and_then(|()| crate::logging::add_to_linker(&mut linker, InvocationState::log))
            .map_err(|e| SandboxError::Config(format!("{e:#}")))?;
        let engine_key = engine_key(&engine);
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(engine.clone(), reset.clone(), ticker_stop.clone())?;
        Ok(Sandbox {
            engine,
            linker,
            slots: Slots::new(n as usize, config.per_tenant() as usize),
            host_bytes: GlobalBudget::new(config.max_host_bytes),
            config,
            engine_key,
            reset,
            ticker_stop,
        })
    }

    /// Instances running now, across tenants (for the metrics; takes the slot pool's
    /// lock once, so call it per scrape, not per request).
    pub fn instances_in_use(&self) -> usize {
        self.slots.in_use()
    }

    /// The settings this sandbox runs with.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// How instance slots are reset between invocations, chosen at start.
    pub fn memory_reset(&self) -> MemoryReset {
        self.reset.mode()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// Ticks between two checks that in-place memory reset is still safe
/// (about a second).
const RESET_RECHECK_TICKS: u32 = 100;

fn spawn_ticker(
    engine: Engine,
    reset: Arc<ResetGuard>,
    stop: Arc<AtomicBool>,
) -> Result<(), SandboxError> {
    std::thread::Builder::new()
        .name("zerofn-epoch".into())
        .spawn(move || {
            let mut ticks = 0u32;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
                ticks = ticks.wrapping_add(1);
                if ticks.is_multiple_of(RESET_RECHECK_TICKS) {
                    reset.recheck();
                }
            }
        })
        .map(|_| ())
        .map_err(|e| SandboxError::Config(format!("cannot start the epoch ticker: {e}")))
}

/// A stable identifier of everything that makes precompiled code
/// compatible: wasmtime's own compatibility hash (version, target, flags).
fn engine_key(engine: &Engine) -> String {
    use sha2::{Digest, Sha256};
    use std::hash::{Hash, Hasher};
    struct ShaHasher(Sha256);
    impl Hasher for ShaHasher {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut h = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    let full = hex::encode(h.0.finalize());
    full.get(..16).unwrap_or(&full).to_owned()
}
