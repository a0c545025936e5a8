//! One invocation: a fresh store and instance, limits, deadline, and the
//! buffered response.
//!
//! The guest runs in a task of its own, which owns the invocation's
//! instance slot: the slot is free exactly when the guest has stopped.
//! The task is aborted when the invocation's future is dropped (a client
//! that hung up, a caller function that was itself aborted), so no guest
//! runs on for nobody. Aborting a caller drops its store, and with it the
//! pending outbound requests in its resource table (wasmtime-wasi-http
//! keeps each as an abort-on-drop task), which drops the callee's
//! invocation future in turn.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::budget::{self, HostBudget};
use crate::engine::EPOCH_TICK;
use crate::host_interface::{HostCapabilities, NoCapabilities};
use crate::kv_config_bindings::HostCapsView;
use crate::logging::{GuestLog, LogCapture};
use crate::outbound::PlatformOutbound;
use crate::{InvokeError, LoadedFunction, Sandbox};

/// Time past the deadline we wait for the guest task to notice it (one
/// epoch tick plus scheduling slack) before abandoning it.
const DEADLINE_GRACE: Duration = Duration::from_millis(250);
/// Longest wait for a free instance slot.
const SLOT_WAIT: Duration = Duration::from_secs(10);

/// Per-invocation host state: the `T` of `Store<T>`.
pub struct InvocationState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: PlatformOutbound,
    limits: GuestLimits,
    /// The platform side of `wasi:keyvalue`, `wasi:config` and outbound
    /// HTTP for this invocation.
    host: Arc<dyn HostCapabilities>,
    /// Key-value buckets the guest holds open.
    open_buckets: usize,
    /// Host memory held on the guest's behalf.
    budget: HostBudget,
    /// The guest's `wasi:logging` records.
    log: LogCapture,
}

impl InvocationState {
    /// The view `wasi:keyvalue` and `wasi:config` work on.
    pub(crate) fn capabilities(&mut self) -> HostCapsView<'_> {
        HostCapsView {
            host: &self.host,
            table: &mut self.table,
            open_buckets: &mut self.open_buckets,
            budget: &self.budget,
        }
    }

    /// The invocation's host memory budget.
    pub(crate) fn budget(&self) -> &HostBudget {
        &self.budget
    }

    /// Where `wasi:logging` appends.
    pub(crate) fn log(&mut self) -> &mut LogCapture {
        &mut self.log
    }
}

impl WasiView for InvocationState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InvocationState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Caps the total linear memory of one instance (all its memories) and
/// its tables; records when the memory cap was hit so the failure can be
/// reported as such rather than as a generic trap.
struct GuestLimits {
    memory_limit: usize,
    memory_in_use: usize,
    exceeded: Arc<AtomicBool>,
}

/// Table elements one instance may grow to (CPython's function table is
/// the largest seen, around 30,000).
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

impl ResourceLimiter for GuestLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        let total = self.memory_in_use.saturating_add(growth);
        if total > self.memory_limit {
            self.exceeded.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        self.memory_in_use = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// How one invocation is run, beyond what its function's manifest says.
#[derive(Debug, Clone, Default)]
pub struct InvokeOptions {
    /// The latest instant the invocation may run until, for example the
    /// remaining time of a calling function. The function's own timeout
    /// still applies; the earlier of the two wins.
    pub deadline: Option<Instant>,
    /// Where to note when the phases of the invocation happen (tracing);
    /// `None` notes nothing.
    pub phases: Option<Arc<Phases>>,
}

/// When an invocation's phases happened, noted by the sandbox as it goes:
/// an instance slot obtained, the instance created, the guest finished.
/// Read by the gateway for the spans of a traced invocation.
#[derive(Debug, Default)]
pub struct Phases {
    slot: std::sync::OnceLock<Instant>,
    instantiated: std::sync::OnceLock<Instant>,
    ended: std::sync::OnceLock<Instant>,
}

impl Phases {
    /// When the invocation got its instance slot.
    pub fn slot(&self) -> Option<Instant> {
        self.slot.get().copied()
    }
    /// When the instance was created and the guest's handler was called.
    pub fn instantiated(&self) -> Option<Instant> {
        self.instantiated.get().copied()
    }
    /// When the guest's response (or failure) was complete.
    pub fn ended(&self) -> Option<Instant> {
        self.ended.get().copied()
    }
}

/// What a completed invocation produced.
#[derive(Debug)]
pub struct Invocation {
    pub response: http::Response<Bytes>,
    pub stdout: Bytes,
    pub stderr: Bytes,
    /// What the guest logged through `wasi:logging`.
    pub log: GuestLog,
    pub duration: Duration,
}

/// What a guest wrote to stdout and stderr, each cut at the sandbox's
/// capture limit ([`crate::SandboxConfig::stdio_capture_bytes`]): guest
/// bytes, not necessarily text; and what it logged through `wasi:logging`,
/// within the same byte limit, each record with how much of stdout and
/// stderr had been written when it was made ([`crate::logging`]).
#[derive(Debug, Clone, Default)]
pub struct GuestOutput {
    pub stdout: Bytes,
    pub stderr: Bytes,
    pub log: GuestLog,
}

/// A new store for one instance, with its limits and deadline set.
struct Fresh {
    store: Store<InvocationState>,
    watch: Watch,
}

/// What an invocation is held to and read from once its store runs: the host budget, the
/// guest's stdio, the memory flag, the deadline and the limits its errors name.
struct Watch {
    budget: HostBudget,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    log: LogCapture,
    exceeded: Arc<AtomicBool>,
    deadline: Instant,
    timeout: Duration,
    memory_mb: u32,
}

impl Sandbox {
    fn fresh_store(
        &self,
        function: &LoadedFunction,
        started: Instant,
        host: Arc<dyn HostCapabilities>,
        options: &InvokeOptions,
    ) -> Result<Fresh, InvokeError> {
        let limits = function.artifact.manifest().limits;
        let own = Duration::from_millis(u64::from(limits.timeout_ms));
        let deadline = match options.deadline {
            Some(outer) => outer.min(started + own),
            None => started + own,
        };
        let timeout = deadline.saturating_duration_since(started);
        // `Sandbox::load` refuses a function over the maximum; the `min`
        // only keeps this bound whatever a caller does.
        let memory_mb = limits.memory_mb.min(self.config.max_memory_mb);
        let budget = HostBudget::new(
            budget::invocation_budget(memory_mb),
            self.host_bytes.clone(),
            host.clone(),
        );
        // The captured output (stdout, stderr and the `wasi:logging`
        // records, each at most the capture limit) and the resource table's
        // entries are held for the whole invocation: reserve them up front.
        // Only the global budget can refuse this (the per-invocation floor
        // covers it), when the host already holds its maximum for other
        // guests: busy.
        let fixed = self
            .config
            .stdio_capture_bytes
            .saturating_mul(3)
            .saturating_add(budget::MAX_TABLE_ENTRIES.saturating_mul(budget::TABLE_ENTRY_BYTES));
        budget
            .charge("sandbox", "captured output and resource table", fixed)
            .map_err(|_| InvokeError::Busy {
                after: Duration::ZERO,
            })?;
        let mut table = ResourceTable::new();
        // wasmtime's own bound is 1,000,000 live handles per store.
        table.set_max_capacity(budget::MAX_TABLE_ENTRIES);

        let stdout = MemoryOutputPipe::new(self.config.stdio_capture_bytes);
        let stderr = MemoryOutputPipe::new(self.config.stdio_capture_bytes);
        let log = LogCapture::new(
            self.config.stdio_capture_bytes,
            stdout.clone(),
            stderr.clone(),
        );
        let exceeded = Arc::new(AtomicBool::new(false));
        let state = InvocationState {
            wasi: crate::wasi::deny_by_default(stdout.clone(), stderr.clone()),
            http: WasiHttpCtx::new(),
            table,
            hooks: PlatformOutbound::new(host.clone(), deadline, budget.clone()),
            limits: GuestLimits {
                memory_limit: (memory_mb as usize).saturating_mul(1 << 20),
                memory_in_use: 0,
                exceeded: exceeded.clone(),
            },
            host,
            open_buckets: 0,
            budget: budget.clone(),
            log: log.clone(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        // Yield to the scheduler on every tick so a spinning guest shares
        // its core; trap at the deadline.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::Trap::Interrupt.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Ok(Fresh {
            store,
            watch: Watch {
                budget,
                stdout,
                stderr,
                log,
                exceeded,
                deadline,
                timeout,
                memory_mb,
            },
        })
    }

    /// Create a fresh instance of `function` exactly as an invocation
    /// does (same store, limits and pooling slot) and drop it without
    /// handling a request: the per-request instantiation cost on its own,
    /// for benchmarks. The instance gets [`NoCapabilities`].
    pub async fn instantiate_only(&self, function: &LoadedFunction) -> Result<(), InvokeError> {
        let _slot = self
            .slots
            .acquire(function.artifact.manifest().tenant.as_str())
            .await
            .ok_or_else(|| InvokeError::Internal {
                detail: "sandbox slots closed".into(),
            })?;
        self.reset.check()?;
        let mut fresh = self.fresh_store(
            function,
            Instant::now(),
            Arc::new(NoCapabilities),
            &InvokeOptions::default(),
        )?;
        function
            .pre
            .instantiate_async(&mut fresh.store)
            .await
            .map_err(|e| InvokeError::Internal {
                detail: format!("{e:#}"),
            })?;
        Ok(())
    }

    /// Run one request through a fresh instance of `function`. The request
    /// body is already read and size-checked by the caller.
    ///
    /// `host` answers the guest's `wasi:keyvalue`, `wasi:config` and
    /// outbound HTTP calls for this invocation only; it decides each of
    /// them (the sandbox does not). A refused call fails inside the guest,
    /// which goes on running.
    pub async fn invoke(
        &self,
        function: &LoadedFunction,
        request: http::Request<Bytes>,
        host: Arc<dyn HostCapabilities>,
    ) -> Result<Invocation, InvokeError> {
        self.invoke_with(function, request, host, InvokeOptions::default())
            .await
    }

    /// [`Sandbox::invoke`] with [`InvokeOptions`].
    pub async fn invoke_with(
        &self,
        function: &LoadedFunction,
        request: http::Request<Bytes>,
        host: Arc<dyn HostCapabilities>,
        options: InvokeOptions,
    ) -> Result<Invocation, InvokeError> {
        self.invoke_capturing(function, request, host, options)
            .await
            .0
    }

    /// [`Sandbox::invoke_with`], also handing back what the guest wrote to
    /// stdout and stderr (each cut at the capture limit) and logged through
    /// `wasi:logging` (within the same limit) whether or not the
    /// invocation succeeded: the output of a guest that trapped or timed out
    /// is what explains it. Empty if the guest never started.
    pub async fn invoke_capturing(
        &self,
        function: &LoadedFunction,
        request: http::Request<Bytes>,
        host: Arc<dyn HostCapabilities>,
        options: InvokeOptions,
    ) -> (Result<Invocation, InvokeError>, GuestOutput) {
        let tenant = function.artifact.manifest().tenant.as_str();
        let slot = match tokio::time::timeout(SLOT_WAIT, self.slots.acquire(tenant)).await {
            Ok(Some(slot)) => slot,
            Ok(None) => {
                let closed = InvokeError::Internal {
                    detail: "sandbox slots closed".into(),
                };
                return (Err(closed), GuestOutput::default());
            }
            Err(_) => {
                let busy = InvokeError::Busy { after: SLOT_WAIT };
                return (Err(busy), GuestOutput::default());
            }
        };
        // Checked once the slot is held, just before the instance is
        // made: the wait for a slot may be long.
        if let Err(refused) = self.reset.check() {
            return (Err(refused), GuestOutput::default());
        }
        let started = Instant::now();
        if let Some(p) = &options.phases {
            let _ = p.slot.set(started);
        }
        let Fresh { store, watch } = match self.fresh_store(function, started, host, &options) {
            Ok(fresh) => fresh,
            Err(e) => return (Err(e), GuestOutput::default()),
        };
        let result = self
            .run_instance(
                function,
                request,
                slot,
                store,
                &watch,
                options.phases.clone(),
            )
            .await;
        if let Some(p) = &options.phases {
            let _ = p.ended.set(Instant::now());
        }
        let output = GuestOutput {
            stdout: watch.stdout.contents(),
            stderr: watch.stderr.contents(),
            log: watch.log.contents(),
        };
        let result = result.map(|response| Invocation {
            response,
            stdout: output.stdout.clone(),
            stderr: output.stderr.clone(),
            log: output.log.clone(),
            duration: started.elapsed(),
        });
        (result, output)
    }

    /// Instantiate `function` in `store`, hand it `request`, and collect
    /// its response within the limits `watch` names.
    async fn run_instance(
        &self,
        function: &LoadedFunction,
        request: http::Request<Bytes>,
        slot: crate::slots::SlotPermit,
        mut store: Store<InvocationState>,
        watch: &Watch,
        phases: Option<Arc<Phases>>,
    ) -> Result<http::Response<Bytes>, InvokeError> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let request = request.map(|b| {
            Full::new(b).map_err(
                |never: std::convert::Infallible| -> wasmtime_wasi_http::Error { match never {} },
            )
        });
        let internal = |e: wasmtime::Error| InvokeError::Internal {
            detail: format!("{e:#}"),
        };
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .map_err(internal)?;
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .map_err(internal)?;
        let pre = function.pre.clone();
        // How the guest's run ended, sent before its instance is torn down.
        let (stopped, mut guest_stopped) = tokio::sync::oneshot::channel();
        // The guest runs in its own task; keep the caller's span on it so
        // what the guest's host calls log belongs to this invocation.
        // The task owns the slot: it is given back when the guest stops
        // (returns, traps, or is aborted), never while it still runs.
        let mut task = AbortOnDrop(tokio::spawn(tracing::Instrument::instrument(
            async move {
                // Declared in this order so that the store (and with it the
                // pooling allocator's instance) is dropped before the slot
                // is given back, whether the guest ends or is aborted.
                let _slot = slot;
                let mut store = store;
                let ran = async {
                    let proxy = pre.instantiate_async(&mut store).await?;
                    if let Some(p) = &phases {
                        let _ = p.instantiated.set(Instant::now());
                    }
                    proxy
                        .wasi_http_incoming_handler()
                        .call_handle(&mut store, req, out)
                        .await
                }
                .await;
                // The guest can do nothing more: the invocation goes on
                // (its audit record, its response) while this task drops
                // the store. Resetting the instance's memory for the next
                // guest takes 20 µs for a C guest and about 0.1 ms for a
                // JavaScript one; before, every response waited for it
                // (BENCHMARKS.md, "The instance's teardown off the
                // response's path"). The yield lets the waiting invocation
                // run first on this worker and lets an idle worker take the
                // teardown; an abort meanwhile drops the store all the same.
                let _ = stopped.send(ran);
                tokio::task::yield_now().await;
            },
            tracing::Span::current(),
        )));

        let classify = |error: wasmtime::Error| -> InvokeError {
            if table_full(&error) {
                watch.budget.refuse(
                    "sandbox",
                    format!(
                        "the invocation's resource table reached its limit of {} handles",
                        budget::MAX_TABLE_ENTRIES
                    ),
                );
            }
            if watch.exceeded.load(Ordering::Relaxed) || watch.budget.is_exceeded() {
                InvokeError::MemoryLimit {
                    limit_mb: watch.memory_mb,
                }
            } else if Instant::now() >= watch.deadline
                || matches!(
                    error.downcast_ref::<wasmtime::Trap>(),
                    Some(wasmtime::Trap::Interrupt)
                )
            {
                InvokeError::Timeout {
                    after: watch.timeout,
                }
            } else {
                InvokeError::Trap {
                    detail: format!("{error:#}"),
                }
            }
        };
        let max_response = self.config.max_response_bytes;

        let work = async {
            match receiver.await {
                Ok(Ok(response)) => {
                    let (parts, mut body) = response.into_parts();
                    let mut buf = BytesMut::new();
                    // The body is held until the invocation returns it.
                    let mut held = watch
                        .budget
                        .reserve("wasi:http/incoming-handler", "the response body", 0)
                        .map_err(|_| InvokeError::MemoryLimit {
                            limit_mb: watch.memory_mb,
                        })?;
                    while let Some(frame) = body.frame().await {
                        match frame {
                            Ok(frame) => {
                                if let Ok(data) = frame.into_data() {
                                    if buf.len().saturating_add(data.len()) > max_response {
                                        return Err(InvokeError::ResponseTooLarge {
                                            limit: max_response,
                                        });
                                    }
                                    held.grow(
                                        "wasi:http/incoming-handler",
                                        "the response body",
                                        data.len(),
                                    )
                                    .map_err(|_| {
                                        InvokeError::MemoryLimit {
                                            limit_mb: watch.memory_mb,
                                        }
                                    })?;
                                    buf.extend_from_slice(&data);
                                }
                            }
                            Err(code) => {
                                // The body broke off; the guest's run says why.
                                return Err(match (&mut guest_stopped).await {
                                    Ok(Err(e)) => classify(e),
                                    _ => InvokeError::GuestError(format!("{code:?}")),
                                });
                            }
                        }
                    }
                    // The response is complete; let the guest finish (it
                    // cannot outlive its deadline) so its stdio and any
                    // late trap are accounted to this invocation.
                    if let Ok(Err(e)) = (&mut guest_stopped).await {
                        tracing::debug!(error = %format!("{e:#}").escape_debug(), "guest failed after responding");
                    }
                    Ok(http::Response::from_parts(parts, buf.freeze()))
                }
                Ok(Err(code)) => Err(InvokeError::GuestError(format!("{code:?}"))),
                Err(_) => Err(match (&mut guest_stopped).await {
                    Ok(Ok(())) => InvokeError::NoResponse,
                    Ok(Err(e)) => classify(e),
                    // No result sent: the task panicked (its join error
                    // says how) before the guest's run ended.
                    Err(_) => match (&mut task.0).await {
                        Err(join) => InvokeError::Internal {
                            detail: join.to_string(),
                        },
                        Ok(()) => InvokeError::Internal {
                            detail: "the guest's task ended without a result".into(),
                        },
                    },
                }),
            }
        };
        let result =
            match tokio::time::timeout(watch.timeout + DEADLINE_GRACE + EPOCH_TICK, work).await {
                Ok(result) => result,
                Err(_) => {
                    task.0.abort();
                    Err(InvokeError::Timeout {
                        after: watch.timeout,
                    })
                }
            };
        drop(task);
        result
    }
}

/// The guest's task, aborted when the invocation's future is dropped
/// before the guest finished: a guest runs only while someone waits.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The guest trapped because its resource table was full.
fn table_full(error: &wasmtime::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<wasmtime::component::ResourceTableError>(),
            Some(wasmtime::component::ResourceTableError::Full)
        )
    })
}
