//! An in-memory implementation of the sandbox's host interface: buckets of
//! keys, a configuration, a switch that denies writes, outbound answers
//! chosen by the test, and a record of what reached it. For running guests
//! in the real sandbox without the platform.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use zerofn_sandbox::host_interface::{
    limits, BoxFuture, CapabilityError, HostCapabilities, KvOp, KvOutcome, OutboundError,
    SandboxRefusal,
};

/// How the test platform answers outbound requests.
#[derive(Clone)]
pub enum Outbound {
    /// Answer every request with this status and body.
    Answer(u16, &'static str),
    /// Fail every request with this error.
    Fail(OutboundError),
}

/// The platform side, in memory: buckets of keys, a configuration, a
/// switch that denies writes, and a record of what reached it.
pub struct MemoryHost {
    pub buckets: Mutex<HashMap<String, BTreeMap<String, Bytes>>>,
    pub config: BTreeMap<String, String>,
    pub deny_writes: AtomicBool,
    pub ops: Mutex<Vec<(String, KvOp)>>,
    pub outbound: Outbound,
    pub sent: Mutex<Vec<http::Request<Bytes>>>,
    pub refusals: Mutex<Vec<SandboxRefusal>>,
}

impl MemoryHost {
    /// A host answering outbound requests with an empty 200.
    pub fn new() -> Arc<MemoryHost> {
        MemoryHost::with_outbound(Outbound::Answer(200, ""))
    }

    /// A host answering outbound requests as `outbound` says.
    pub fn with_outbound(outbound: Outbound) -> Arc<MemoryHost> {
        Arc::new(MemoryHost {
            buckets: Mutex::default(),
            config: BTreeMap::from([("greeting".to_owned(), "hello from config".to_owned())]),
            deny_writes: AtomicBool::new(false),
            ops: Mutex::default(),
            outbound,
            sent: Mutex::default(),
            refusals: Mutex::default(),
        })
    }

    /// The value of `key` in `bucket`, if set.
    pub fn value(&self, bucket: &str, key: &str) -> Option<Bytes> {
        self.buckets.lock().unwrap().get(bucket)?.get(key).cloned()
    }

    /// Apply one key-value operation, recording it; writes fail while
    /// `deny_writes` is set.
    pub fn apply(&self, bucket: &str, op: KvOp) -> Result<KvOutcome, CapabilityError> {
        let is_write = matches!(
            op,
            KvOp::Set { .. } | KvOp::Delete { .. } | KvOp::Increment { .. }
        );
        self.ops
            .lock()
            .unwrap()
            .push((bucket.to_owned(), op.clone()));
        if is_write && self.deny_writes.load(Ordering::Relaxed) {
            return Err(CapabilityError::Denied(format!(
                "`kv:write` on `{bucket}` is not granted"
            )));
        }
        let mut buckets = self.buckets.lock().unwrap();
        let keys = buckets.entry(bucket.to_owned()).or_default();
        Ok(match op {
            KvOp::Get { key } => KvOutcome::Value(keys.get(&key).cloned()),
            KvOp::Exists { key } => KvOutcome::Exists(keys.contains_key(&key)),
            KvOp::Set { key, value } => {
                keys.insert(key, value);
                KvOutcome::Done
            }
            KvOp::Delete { key } => {
                keys.remove(&key);
                KvOutcome::Done
            }
            KvOp::ListKeys { cursor } => {
                let start = usize::try_from(cursor).unwrap();
                let page: Vec<String> = keys
                    .keys()
                    .skip(start)
                    .take(limits::LIST_PAGE)
                    .cloned()
                    .collect();
                let next = start + page.len();
                KvOutcome::Keys {
                    cursor: (next < keys.len()).then_some(next as u64),
                    keys: page,
                }
            }
            KvOp::Increment { key, delta } => {
                let old = keys
                    .get(&key)
                    .map(|v| u64::from_le_bytes(v.as_ref().try_into().unwrap()))
                    .unwrap_or(0);
                let new = old + delta;
                keys.insert(key, Bytes::copy_from_slice(&new.to_le_bytes()));
                KvOutcome::Counter(new)
            }
        })
    }
}

impl HostCapabilities for MemoryHost {
    fn kv_open<'a>(&'a self, _bucket: &'a str) -> BoxFuture<'a, Result<(), CapabilityError>> {
        Box::pin(async { Ok(()) })
    }

    fn kv<'a>(
        &'a self,
        bucket: &'a str,
        op: KvOp,
    ) -> BoxFuture<'a, Result<KvOutcome, CapabilityError>> {
        Box::pin(async move { self.apply(bucket, op) })
    }

    fn config_get<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, CapabilityError>> {
        Box::pin(async move { Ok(self.config.get(key).cloned()) })
    }

    fn config_get_all(&self) -> BoxFuture<'_, Result<Vec<(String, String)>, CapabilityError>> {
        Box::pin(async move {
            Ok(self
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        })
    }

    fn outbound(
        &self,
        request: http::Request<Bytes>,
    ) -> BoxFuture<'_, Result<http::Response<Bytes>, OutboundError>> {
        self.sent.lock().unwrap().push(request);
        let answer = self.outbound.clone();
        Box::pin(async move {
            match answer {
                Outbound::Answer(status, body) => Ok(http::Response::builder()
                    .status(status)
                    .body(Bytes::from_static(body.as_bytes()))
                    .unwrap()),
                Outbound::Fail(e) => Err(e),
            }
        })
    }

    fn refused(&self, refusal: SandboxRefusal) -> BoxFuture<'_, ()> {
        self.refusals.lock().unwrap().push(refusal);
        Box::pin(async {})
    }
}
