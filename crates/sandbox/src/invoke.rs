//! One invocation: a fresh store and instance, limits, deadline, and the
//! buffered response.

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

use crate::capabilities::{HostCapabilities, NoCapabilities};
use crate::engine::EPOCH_TICK;
use crate::hostcaps::HostCapsView;
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
}

impl InvocationState {
    /// The view `wasi:keyvalue` and `wasi:config` work on.
    pub(crate) fn capabilities(&mut self) -> HostCapsView<'_> {
        HostCapsView {
            host: &self.host,
            table: &mut self.table,
            open_buckets: &mut self.open_buckets,
        }
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
}

/// What a completed invocation produced.
#[derive(Debug)]
pub struct Invocation {
    pub response: http::Response<Bytes>,
    pub stdout: Bytes,
    pub stderr: Bytes,
    pub duration: Duration,
}

/// A new store for one instance, with its limits and deadline set.
struct Fresh {
    store: Store<InvocationState>,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
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
    ) -> Fresh {
        let limits = function.artifact.manifest().limits;
        let own = Duration::from_millis(u64::from(limits.timeout_ms));
        let deadline = match options.deadline {
            Some(outer) => outer.min(started + own),
            None => started + own,
        };
        let timeout = deadline.saturating_duration_since(started);
        let memory_mb = limits.memory_mb.min(self.config.max_memory_mb);

        let stdout = MemoryOutputPipe::new(self.config.stdio_capture_bytes);
        let stderr = MemoryOutputPipe::new(self.config.stdio_capture_bytes);
        let exceeded = Arc::new(AtomicBool::new(false));
        let state = InvocationState {
            wasi: crate::wasi::deny_by_default(stdout.clone(), stderr.clone()),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: PlatformOutbound::new(host.clone(), deadline),
            limits: GuestLimits {
                memory_limit: (memory_mb as usize).saturating_mul(1 << 20),
                memory_in_use: 0,
                exceeded: exceeded.clone(),
            },
            host,
            open_buckets: 0,
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
        Fresh {
            store,
            stdout,
            stderr,
            exceeded,
            deadline,
            timeout,
            memory_mb,
        }
    }

    /// Create a fresh instance of `function` exactly as an invocation
    /// does (same store, limits and pooling slot) and drop it without
    /// handling a request: the per-request instantiation cost on its own,
    /// for benchmarks. The instance gets [`NoCapabilities`].
    pub async fn instantiate_only(&self, function: &LoadedFunction) -> Result<(), InvokeError> {
        let _slot =
            self.slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| InvokeError::Internal {
                    detail: "sandbox slots closed".into(),
                })?;
        let mut fresh = self.fresh_store(
            function,
            Instant::now(),
            Arc::new(NoCapabilities),
            &InvokeOptions::default(),
        );
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
        let _slot = tokio::time::timeout(SLOT_WAIT, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| InvokeError::Busy { after: SLOT_WAIT })?
            .map_err(|_| InvokeError::Internal {
                detail: "sandbox slots closed".into(),
            })?;
        let started = Instant::now();
        let Fresh {
            mut store,
            stdout,
            stderr,
            exceeded,
            deadline,
            timeout,
            memory_mb,
        } = self.fresh_store(function, started, host, &options);

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
        // The guest runs in its own task; keep the caller's span on it so
        // what the guest's host calls log belongs to this invocation.
        let mut task = tokio::spawn(tracing::Instrument::instrument(
            async move {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
            },
            tracing::Span::current(),
        ));

        let classify = |error: wasmtime::Error| -> InvokeError {
            if exceeded.load(Ordering::Relaxed) {
                InvokeError::MemoryLimit {
                    limit_mb: memory_mb,
                }
            } else if Instant::now() >= deadline
                || matches!(
                    error.downcast_ref::<wasmtime::Trap>(),
                    Some(wasmtime::Trap::Interrupt)
                )
            {
                InvokeError::Timeout { after: timeout }
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
                    while let Some(frame) = body.frame().await {
                        match frame {
                            Ok(frame) => {
                                if let Ok(data) = frame.into_data() {
                                    if buf.len().saturating_add(data.len()) > max_response {
                                        return Err(InvokeError::ResponseTooLarge {
                                            limit: max_response,
                                        });
                                    }
                                    buf.extend_from_slice(&data);
                                }
                            }
                            Err(code) => {
                                // The body broke off; the task says why.
                                return Err(match (&mut task).await {
                                    Ok(Err(e)) => classify(e),
                                    _ => InvokeError::GuestError(format!("{code:?}")),
                                });
                            }
                        }
                    }
                    // The response is complete; let the guest finish (it
                    // cannot outlive its deadline) so its stdio and any
                    // late trap are accounted to this invocation.
                    if let Ok(Err(e)) = (&mut task).await {
                        tracing::debug!(error = %format!("{e:#}").escape_debug(), "guest failed after responding");
                    }
                    Ok(http::Response::from_parts(parts, buf.freeze()))
                }
                Ok(Err(code)) => Err(InvokeError::GuestError(format!("{code:?}"))),
                Err(_) => Err(match (&mut task).await {
                    Ok(Ok(())) => InvokeError::NoResponse,
                    Ok(Err(e)) => classify(e),
                    Err(join) => InvokeError::Internal {
                        detail: join.to_string(),
                    },
                }),
            }
        };
        let result = match tokio::time::timeout(timeout + DEADLINE_GRACE + EPOCH_TICK, work).await {
            Ok(result) => result,
            Err(_) => {
                task.abort();
                Err(InvokeError::Timeout { after: timeout })
            }
        };
        let response = result?;
        Ok(Invocation {
            response,
            stdout: stdout.contents(),
            stderr: stderr.contents(),
            duration: started.elapsed(),
        })
    }
}
