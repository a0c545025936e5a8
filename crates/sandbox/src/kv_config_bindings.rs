//! Host side of `wasi:keyvalue` (store, atomics, batch) and `wasi:config`
//! (store): generated bindings for the world in `wit/host/world.wit` and
//! their implementation, which translates every call into one call of
//! [`HostCapabilities`] and its answer back into the WIT types.
//!
//! Nothing is decided here. A bucket the guest opens is only a name the
//! platform accepted in [`HostCapabilities::kv_open`]; every later
//! operation on it goes to [`HostCapabilities::kv`] again, where the
//! platform decides (and audits) it on its own. Batch calls are sequences
//! of single operations, each decided separately, stopping at the first
//! failure (the WIT allows partial effects).
//!
//! # Trust
//! Trusts the [`HostCapabilities`] implementation (the platform) and its
//! answers. Trusts nothing from the guest: names, keys, values and batch
//! sizes are checked against [`limits`] before the platform sees them, and
//! a refused call becomes an error value inside the guest, never a trap
//! or a panic. The only traps are the ones wasmtime raises for a handle
//! the guest does not hold. The number of buckets open at once is bounded
//! ([`limits::MAX_OPEN_BUCKETS`]), so a guest cannot grow the resource
//! table without end.
//!
//! Host memory: every value, key page and batch the host holds for the
//! guest is charged to the invocation's [`HostBudget`] while it is held; a
//! batch also bounds its total ([`limits::MAX_BATCH_BYTES`]) and refuses a
//! key named twice (one key repeated a thousand times made the host hold a
//! thousand copies of its value). These refusals are `error::other` and
//! are reported to the platform ([`HostCapabilities::refused`]).
//!
//! Error text: a denial reaches the guest as `other("access denied: …")`
//! (keyvalue) or `upstream("access denied: …")` (config), so guests in any
//! language can tell it apart by that prefix and show the reason.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::budget::{BudgetExceeded, HostBudget, Reservation};
use crate::host_interface::{limits, CapabilityError, HostCapabilities, KvOp, KvOutcome};

/// The interface named in refusal records.
const KV: &str = "wasi:keyvalue";

pub(crate) mod generated {
    wasmtime::component::bindgen!({
        path: ["wit/keyvalue", "wit/config", "wit/logging", "wit/host"],
        world: "zerofn:sandbox/host",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
        },
        require_store_data_send: true,
    });
}

use generated::wasi::config::store as config;
use generated::wasi::keyvalue::{atomics, batch, store};

/// A bucket the guest opened: the name the platform accepted. Holding one
/// grants nothing; each operation on it is decided again.
#[derive(Debug)]
pub struct Bucket {
    name: String,
}

/// What the capability interfaces need from the invocation's state.
pub(crate) struct HostCapsView<'a> {
    pub(crate) host: &'a Arc<dyn HostCapabilities>,
    pub(crate) table: &'a mut ResourceTable,
    /// Buckets the guest holds open right now.
    pub(crate) open_buckets: &'a mut usize,
    /// The invocation's host memory budget.
    pub(crate) budget: &'a HostBudget,
}

struct HasHostCaps;

impl HasData for HasHostCaps {
    type Data<'a> = HostCapsView<'a>;
}

/// Link `wasi:keyvalue/{store,atomics,batch}` and `wasi:config/store` into
/// `linker`. Components that import none of them are unaffected.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> HostCapsView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<T, HasHostCaps>(linker, view)?;
    atomics::add_to_linker::<T, HasHostCaps>(linker, view)?;
    batch::add_to_linker::<T, HasHostCaps>(linker, view)?;
    config::add_to_linker::<T, HasHostCaps>(linker, view)?;
    Ok(())
}

/// A refused or failed call as the guest sees it. The text is
/// [`CapabilityError`]'s `Display`: a denial reads `access denied: <reason>`.
fn kv_error(error: CapabilityError) -> store::Error {
    match error {
        CapabilityError::NoSuchStore(_) => store::Error::NoSuchStore,
        denied_or_failed => store::Error::Other(denied_or_failed.to_string()),
    }
}

/// Like [`kv_error`]; `wasi:config` has no better case than `upstream`.
fn config_error(error: CapabilityError) -> config::Error {
    config::Error::Upstream(error.to_string())
}

/// The platform answered an operation with an outcome of another kind: a
/// platform bug, reported to the guest as a failure rather than guessed at.
fn unexpected(op: &'static str) -> store::Error {
    tracing::error!(
        op,
        "key-value platform returned an outcome of the wrong kind"
    );
    store::Error::Other(format!("internal error: unexpected answer to `{op}`"))
}

fn check_bucket_name(name: &str) -> Result<(), store::Error> {
    if name.len() > limits::MAX_BUCKET_NAME {
        return Err(store::Error::Other(format!(
            "bucket name is {} bytes, over the limit of {} bytes",
            name.len(),
            limits::MAX_BUCKET_NAME
        )));
    }
    Ok(())
}

fn check_key(key: &str) -> Result<(), store::Error> {
    if key.len() > limits::MAX_KEY {
        return Err(store::Error::Other(format!(
            "key is {} bytes, over the limit of {} bytes",
            key.len(),
            limits::MAX_KEY
        )));
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<(), store::Error> {
    if value.len() > limits::MAX_VALUE {
        return Err(store::Error::Other(format!(
            "value is {} bytes, over the limit of {} bytes",
            value.len(),
            limits::MAX_VALUE
        )));
    }
    Ok(())
}

fn check_batch(count: usize) -> Result<(), store::Error> {
    if count > limits::MAX_BATCH {
        return Err(store::Error::Other(format!(
            "batch names {count} keys, over the limit of {} keys",
            limits::MAX_BATCH
        )));
    }
    Ok(())
}

/// A batch names each key at most once: the platform would answer (and the
/// host hold) each repetition again.
fn check_distinct<'k>(keys: impl Iterator<Item = &'k str>) -> Result<(), store::Error> {
    let mut seen = HashSet::new();
    for key in keys {
        if !seen.insert(key) {
            return Err(store::Error::Other(format!(
                "batch names key `{}` more than once; name each key once",
                key.escape_debug()
            )));
        }
    }
    Ok(())
}

/// A batch's values may total at most [`limits::MAX_BATCH_BYTES`].
fn check_batch_bytes(total: usize) -> Result<(), store::Error> {
    if total > limits::MAX_BATCH_BYTES {
        return Err(store::Error::Other(format!(
            "batch values total {total} bytes or more, over the limit of {} bytes",
            limits::MAX_BATCH_BYTES
        )));
    }
    Ok(())
}

fn over_budget(error: BudgetExceeded) -> store::Error {
    store::Error::Other(error.to_string())
}

impl HostCapsView<'_> {
    fn bucket_name(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<String> {
        Ok(self.table.get(bucket)?.name.clone())
    }

    /// The platform, held on its own: the resource table is not `Sync`, so
    /// no borrow of `self` may live across an await.
    fn platform(&self) -> Arc<dyn HostCapabilities> {
        self.host.clone()
    }

    /// A batch rule refused the call: tell the platform, hand the error on.
    fn refuse_batch(&self, error: store::Error) -> store::Error {
        if let store::Error::Other(reason) = &error {
            self.budget.report(KV, reason.clone());
        }
        error
    }

    /// Hold `bytes` of a result or argument in the budget.
    fn hold(&self, what: &'static str, bytes: usize) -> Result<Reservation, store::Error> {
        self.budget.reserve(KV, what, bytes).map_err(over_budget)
    }
}

async fn kv(
    host: Arc<dyn HostCapabilities>,
    bucket: &str,
    op: KvOp,
) -> Result<KvOutcome, store::Error> {
    host.kv(bucket, op).await.map_err(kv_error)
}

impl store::Host for HostCapsView<'_> {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, store::Error>> {
        if let Err(e) = check_bucket_name(&identifier) {
            return Ok(Err(e));
        }
        if *self.open_buckets >= limits::MAX_OPEN_BUCKETS {
            return Ok(Err(store::Error::Other(format!(
                "{} buckets are open, the limit; drop one before opening another",
                limits::MAX_OPEN_BUCKETS
            ))));
        }
        let host = self.platform();
        if let Err(e) = host.kv_open(&identifier).await {
            return Ok(Err(kv_error(e)));
        }
        let bucket = self.table.push(Bucket { name: identifier })?;
        *self.open_buckets = self.open_buckets.saturating_add(1);
        Ok(Ok(bucket))
    }
}

impl store::HostBucket for HostCapsView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let name = self.bucket_name(&bucket)?;
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        Ok(match kv(self.platform(), &name, KvOp::Get { key }).await {
            Ok(KvOutcome::Value(value)) => {
                // Held while it is copied to the guest.
                let size = value.as_ref().map_or(0, Bytes::len);
                match self.hold("a key-value value", size) {
                    Ok(_held) => Ok(value.map(|v| v.to_vec())),
                    Err(e) => Err(e),
                }
            }
            Ok(_) => Err(unexpected("get")),
            Err(e) => Err(e),
        })
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let name = self.bucket_name(&bucket)?;
        if let Err(e) = check_key(&key).and_then(|()| check_value(&value)) {
            return Ok(Err(e));
        }
        let _held = match self.hold("a key-value value", value.len()) {
            Ok(held) => held,
            Err(e) => return Ok(Err(e)),
        };
        let op = KvOp::Set {
            key,
            value: Bytes::from(value),
        };
        Ok(match kv(self.platform(), &name, op).await {
            Ok(KvOutcome::Done) => Ok(()),
            Ok(_) => Err(unexpected("set")),
            Err(e) => Err(e),
        })
    }

    async fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let name = self.bucket_name(&bucket)?;
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        Ok(
            match kv(self.platform(), &name, KvOp::Delete { key }).await {
                Ok(KvOutcome::Done) => Ok(()),
                Ok(_) => Err(unexpected("delete")),
                Err(e) => Err(e),
            },
        )
    }

    async fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, store::Error>> {
        let name = self.bucket_name(&bucket)?;
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        Ok(
            match kv(self.platform(), &name, KvOp::Exists { key }).await {
                Ok(KvOutcome::Exists(exists)) => Ok(exists),
                Ok(_) => Err(unexpected("exists")),
                Err(e) => Err(e),
            },
        )
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        let name = self.bucket_name(&bucket)?;
        let op = KvOp::ListKeys {
            cursor: cursor.unwrap_or(0),
        };
        Ok(match kv(self.platform(), &name, op).await {
            Ok(KvOutcome::Keys { keys, cursor }) => {
                let size = keys
                    .iter()
                    .fold(0usize, |sum, key| sum.saturating_add(key.len()));
                match self.hold("a `list-keys` page", size) {
                    Ok(_held) => Ok(store::KeyResponse { keys, cursor }),
                    Err(e) => Err(e),
                }
            }
            Ok(_) => Err(unexpected("list-keys")),
            Err(e) => Err(e),
        })
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        *self.open_buckets = self.open_buckets.saturating_sub(1);
        Ok(())
    }
}

impl atomics::Host for HostCapsView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, store::Error>> {
        let name = self.bucket_name(&bucket)?;
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        Ok(
            match kv(self.platform(), &name, KvOp::Increment { key, delta }).await {
                Ok(KvOutcome::Counter(value)) => Ok(value),
                Ok(_) => Err(unexpected("increment")),
                Err(e) => Err(e),
            },
        )
    }
}

impl batch::Host for HostCapsView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, store::Error>> {
        let name = self.bucket_name(&bucket)?;
        if let Err(e) = check_batch(keys.len())
            .and_then(|()| keys.iter().try_for_each(|k| check_key(k)))
            .and_then(|()| check_distinct(keys.iter().map(String::as_str)))
        {
            return Ok(Err(self.refuse_batch(e)));
        }
        // Everything found is held until the whole answer is copied to the
        // guest: bound the total before it is held, not after.
        let mut held = match self.hold("a `get-many` answer", 0) {
            Ok(held) => held,
            Err(e) => return Ok(Err(e)),
        };
        let mut total = 0usize;
        let mut found = Vec::with_capacity(keys.len());
        for key in keys {
            match kv(self.platform(), &name, KvOp::Get { key: key.clone() }).await {
                Ok(KvOutcome::Value(value)) => {
                    let size = value
                        .as_ref()
                        .map_or(0, Bytes::len)
                        .saturating_add(key.len());
                    total = total.saturating_add(size);
                    if let Err(e) = check_batch_bytes(total) {
                        return Ok(Err(self.refuse_batch(e)));
                    }
                    if let Err(e) = held.grow(KV, "a `get-many` answer", size) {
                        return Ok(Err(over_budget(e)));
                    }
                    found.push(value.map(|v| (key, v.to_vec())));
                }
                Ok(_) => return Ok(Err(unexpected("get-many"))),
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(found))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let name = self.bucket_name(&bucket)?;
        let checked = check_batch(key_values.len()).and_then(|()| {
            key_values
                .iter()
                .try_for_each(|(k, v)| check_key(k).and_then(|()| check_value(v)))
        });
        if let Err(e) = checked {
            return Ok(Err(e));
        }
        let total = key_values.iter().fold(0usize, |sum, (k, v)| {
            sum.saturating_add(k.len()).saturating_add(v.len())
        });
        if let Err(e) = check_distinct(key_values.iter().map(|(k, _)| k.as_str()))
            .and_then(|()| check_batch_bytes(total))
        {
            return Ok(Err(self.refuse_batch(e)));
        }
        let _held = match self.hold("a `set-many` batch", total) {
            Ok(held) => held,
            Err(e) => return Ok(Err(e)),
        };
        for (key, value) in key_values {
            let op = KvOp::Set {
                key,
                value: Bytes::from(value),
            };
            match kv(self.platform(), &name, op).await {
                Ok(KvOutcome::Done) => {}
                Ok(_) => return Ok(Err(unexpected("set-many"))),
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(()))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let name = self.bucket_name(&bucket)?;
        if let Err(e) =
            check_batch(keys.len()).and_then(|()| keys.iter().try_for_each(|k| check_key(k)))
        {
            return Ok(Err(e));
        }
        if let Err(e) = check_distinct(keys.iter().map(String::as_str)) {
            return Ok(Err(self.refuse_batch(e)));
        }
        for key in keys {
            match kv(self.platform(), &name, KvOp::Delete { key }).await {
                Ok(KvOutcome::Done) => {}
                Ok(_) => return Ok(Err(unexpected("delete-many"))),
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(()))
    }
}

impl config::Host for HostCapsView<'_> {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<String>, config::Error>> {
        if key.len() > limits::MAX_KEY {
            return Ok(Err(config::Error::Upstream(format!(
                "configuration key is {} bytes, over the limit of {} bytes",
                key.len(),
                limits::MAX_KEY
            ))));
        }
        let host = self.platform();
        Ok(host.config_get(&key).await.map_err(config_error))
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, config::Error>> {
        let host = self.platform();
        Ok(host.config_get_all().await.map_err(config_error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_keeps_the_prefix_guests_match_on() {
        let kv = kv_error(CapabilityError::Denied(
            "`kv:write` on `notes` is not granted".into(),
        ));
        assert!(
            matches!(&kv, store::Error::Other(m) if m == "access denied: `kv:write` on `notes` is not granted"),
            "{kv:?}"
        );
        let cfg = config_error(CapabilityError::Denied(
            "no configuration is granted".into(),
        ));
        assert!(
            matches!(&cfg, config::Error::Upstream(m) if m == "access denied: no configuration is granted"),
            "{cfg:?}"
        );
        assert!(matches!(
            kv_error(CapabilityError::NoSuchStore("x".into())),
            store::Error::NoSuchStore
        ));
        assert!(matches!(
            kv_error(CapabilityError::Failed("disk full".into())),
            store::Error::Other(m) if m == "disk full"
        ));
    }

    use std::sync::Mutex;

    use crate::host_interface::BoxFuture;

    /// Records every key-value call; denies writes to keys starting with
    /// `deny`; answers `Get` for `wrong-kind` with an outcome of the wrong
    /// kind.
    #[derive(Default)]
    struct Recorder {
        ops: Mutex<Vec<KvOp>>,
    }

    impl HostCapabilities for Recorder {
        fn kv_open<'a>(&'a self, _bucket: &'a str) -> BoxFuture<'a, Result<(), CapabilityError>> {
            Box::pin(async { Ok(()) })
        }

        fn kv<'a>(
            &'a self,
            _bucket: &'a str,
            op: KvOp,
        ) -> BoxFuture<'a, Result<KvOutcome, CapabilityError>> {
            self.ops.lock().unwrap().push(op.clone());
            Box::pin(async move {
                match op {
                    KvOp::Set { key, .. } | KvOp::Delete { key } if key.starts_with("deny") => {
                        Err(CapabilityError::Denied(format!("write to `{key}`")))
                    }
                    KvOp::Get { key } if key == "wrong-kind" => Ok(KvOutcome::Done),
                    KvOp::Get { key } if key.starts_with("big") => {
                        Ok(KvOutcome::Value(Some(Bytes::from(vec![b'v'; 1 << 20]))))
                    }
                    KvOp::Get { key } => Ok(KvOutcome::Value(
                        (key != "absent").then(|| Bytes::from(format!("value of {key}"))),
                    )),
                    _ => Ok(KvOutcome::Done),
                }
            })
        }

        fn config_get<'a>(
            &'a self,
            _key: &'a str,
        ) -> BoxFuture<'a, Result<Option<String>, CapabilityError>> {
            Box::pin(async { Ok(None) })
        }

        fn config_get_all(&self) -> BoxFuture<'_, Result<Vec<(String, String)>, CapabilityError>> {
            Box::pin(async { Ok(Vec::new()) })
        }

        fn outbound(
            &self,
            _request: http::Request<Bytes>,
        ) -> BoxFuture<'_, Result<http::Response<Bytes>, crate::host_interface::OutboundError>>
        {
            Box::pin(async { Err(crate::host_interface::OutboundError::Denied(String::new())) })
        }

        fn refused(&self, _refusal: crate::host_interface::SandboxRefusal) -> BoxFuture<'_, ()> {
            Box::pin(async {})
        }
    }

    struct Fixture {
        recorder: Arc<Recorder>,
        host: Arc<dyn HostCapabilities>,
        table: ResourceTable,
        open: usize,
        budget: HostBudget,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture::with_budget(crate::budget::BUDGET_FLOOR)
        }

        fn with_budget(limit: usize) -> Fixture {
            let recorder = Arc::new(Recorder::default());
            let host: Arc<dyn HostCapabilities> = recorder.clone();
            Fixture {
                budget: HostBudget::new(
                    limit,
                    crate::budget::GlobalBudget::new(usize::MAX),
                    host.clone(),
                ),
                host,
                recorder,
                table: ResourceTable::new(),
                open: 0,
            }
        }

        fn view(&mut self) -> HostCapsView<'_> {
            HostCapsView {
                host: &self.host,
                table: &mut self.table,
                open_buckets: &mut self.open,
                budget: &self.budget,
            }
        }

        fn ops(&self) -> Vec<KvOp> {
            self.recorder.ops.lock().unwrap().clone()
        }
    }

    /// A handle the guest may pass again (wasmtime hands host functions
    /// borrows; an owned handle would be consumed by the first call).
    fn handle(bucket: &Resource<Bucket>) -> Resource<Bucket> {
        Resource::new_borrow(bucket.rep())
    }

    #[tokio::test]
    async fn batch_calls_are_single_decided_operations() {
        use batch::Host as _;
        use store::Host as _;
        let mut f = Fixture::new();
        let bucket = f.view().open("notes".into()).await.unwrap().unwrap();

        let got = f
            .view()
            .get_many(handle(&bucket), vec!["a".into(), "absent".into()])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, vec![Some(("a".into(), b"value of a".to_vec())), None]);

        // set-many stops at the first denial and reports it; the writes
        // before it happened (the WIT allows partial effects).
        let err = f
            .view()
            .set_many(
                handle(&bucket),
                vec![
                    ("x".into(), b"1".to_vec()),
                    ("deny-y".into(), b"2".to_vec()),
                    ("z".into(), b"3".to_vec()),
                ],
            )
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(&err, store::Error::Other(m) if m == "access denied: write to `deny-y`"));
        let err = f
            .view()
            .delete_many(handle(&bucket), vec!["deny-q".into()])
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(&err, store::Error::Other(m) if m.starts_with("access denied: ")));
        assert_eq!(
            f.ops(),
            vec![
                KvOp::Get { key: "a".into() },
                KvOp::Get {
                    key: "absent".into()
                },
                KvOp::Set {
                    key: "x".into(),
                    value: Bytes::from_static(b"1")
                },
                KvOp::Set {
                    key: "deny-y".into(),
                    value: Bytes::from_static(b"2")
                },
                KvOp::Delete {
                    key: "deny-q".into()
                },
            ]
        );
    }

    #[tokio::test]
    async fn oversize_batches_never_reach_the_platform() {
        use batch::Host as _;
        use store::Host as _;
        let mut f = Fixture::new();
        let bucket = f.view().open("notes".into()).await.unwrap().unwrap();

        let too_many: Vec<String> = (0..=limits::MAX_BATCH).map(|i| i.to_string()).collect();
        let err = f
            .view()
            .get_many(handle(&bucket), too_many.clone())
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&err, store::Error::Other(m) if m == "batch names 1001 keys, over the limit of 1000 keys")
        );
        assert!(f
            .view()
            .delete_many(handle(&bucket), too_many)
            .await
            .unwrap()
            .is_err());
        // One bad key anywhere refuses the whole batch up front.
        let err = f
            .view()
            .set_many(
                handle(&bucket),
                vec![
                    ("ok".into(), Vec::new()),
                    ("big".into(), vec![0; limits::MAX_VALUE + 1]),
                ],
            )
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(&err, store::Error::Other(m) if m.starts_with("value is 1048577 bytes")));
        assert!(f.ops().is_empty());
    }

    #[tokio::test]
    async fn open_buckets_are_bounded_and_freed_on_drop() {
        use store::{Host as _, HostBucket as _};
        let mut f = Fixture::new();
        let mut held = Vec::new();
        for _ in 0..limits::MAX_OPEN_BUCKETS {
            held.push(f.view().open("notes".into()).await.unwrap().unwrap());
        }
        let err = f.view().open("notes".into()).await.unwrap().unwrap_err();
        assert!(matches!(&err, store::Error::Other(m) if m.contains("64 buckets are open")));
        let first = held.swap_remove(0);
        f.view().drop(first).await.unwrap();
        assert!(f.view().open("notes".into()).await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn a_wrong_answer_from_the_platform_is_an_error_not_a_guess() {
        use store::{Host as _, HostBucket as _};
        let mut f = Fixture::new();
        let bucket = f.view().open("notes".into()).await.unwrap().unwrap();
        let err = f
            .view()
            .get(handle(&bucket), "wrong-kind".into())
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&err, store::Error::Other(m) if m == "internal error: unexpected answer to `get`")
        );
    }

    #[tokio::test]
    async fn a_handle_the_guest_does_not_hold_traps() {
        use store::HostBucket as _;
        let mut f = Fixture::new();
        let forged = Resource::<Bucket>::new_borrow(12345);
        assert!(f.view().get(forged, "k".into()).await.is_err());
        assert!(f.ops().is_empty());
    }

    #[test]
    fn limits_are_named_in_the_refusal() {
        let long_key = "k".repeat(limits::MAX_KEY + 1);
        assert!(
            matches!(check_key(&long_key), Err(store::Error::Other(m)) if m.contains("limit of 1024 bytes"))
        );
        assert!(check_key(&"k".repeat(limits::MAX_KEY)).is_ok());
        let long_bucket = "b".repeat(limits::MAX_BUCKET_NAME + 1);
        assert!(
            matches!(check_bucket_name(&long_bucket), Err(store::Error::Other(m)) if m.starts_with("bucket name"))
        );
        assert!(
            matches!(check_value(&vec![0; limits::MAX_VALUE + 1]), Err(store::Error::Other(m)) if m.starts_with("value"))
        );
        assert!(
            matches!(check_batch(limits::MAX_BATCH + 1), Err(store::Error::Other(m)) if m.contains("limit of 1000 keys"))
        );
        assert!(check_batch(limits::MAX_BATCH).is_ok());
    }

    #[tokio::test]
    async fn batches_refuse_repeated_keys_before_the_platform_sees_them() {
        use batch::Host as _;
        use store::Host as _;
        let mut f = Fixture::new();
        let bucket = f.view().open("notes".into()).await.unwrap().unwrap();
        let err = f
            .view()
            .get_many(handle(&bucket), vec!["big".into(); 1000])
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&err, store::Error::Other(m) if m == "batch names key `big` more than once; name each key once"),
            "{err:?}"
        );
        let err = f
            .view()
            .set_many(
                handle(&bucket),
                vec![("a".into(), b"1".to_vec()), ("a".into(), b"2".to_vec())],
            )
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(&err, store::Error::Other(m) if m.contains("more than once")));
        let err = f
            .view()
            .delete_many(handle(&bucket), vec!["a".into(), "a".into()])
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(&err, store::Error::Other(m) if m.contains("more than once")));
        assert!(f.ops().is_empty());
    }

    #[tokio::test]
    async fn a_batch_answer_is_bounded_in_total() {
        use batch::Host as _;
        use store::Host as _;
        let mut f = Fixture::new();
        let bucket = f.view().open("notes".into()).await.unwrap().unwrap();
        // Eight values of 1 MiB fit (with their keys, just over 8 MiB: the
        // eighth is refused); the answer never grows past the limit.
        let keys: Vec<String> = (0..20).map(|i| format!("big-{i}")).collect();
        let err = f
            .view()
            .get_many(handle(&bucket), keys)
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&err, store::Error::Other(m) if m.contains("over the limit of 8388608 bytes")),
            "{err:?}"
        );
        // The platform was asked only until the limit was reached.
        assert_eq!(f.ops().len(), 8);
        // Everything held for the refused answer was given back.
        let ok = f
            .view()
            .get_many(handle(&bucket), vec!["big-a".into(), "small".into()])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ok.len(), 2);
    }

    #[tokio::test]
    async fn results_beyond_the_host_budget_are_errors() {
        use batch::Host as _;
        use store::{Host as _, HostBucket as _};
        // A budget smaller than one value.
        let mut f = Fixture::with_budget(512 * 1024);
        let bucket = f.view().open("notes".into()).await.unwrap().unwrap();
        let err = f
            .view()
            .get(handle(&bucket), "big".into())
            .await
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&err, store::Error::Other(m) if m.contains("over the invocation's budget of 524288 bytes")),
            "{err:?}"
        );
        let err = f
            .view()
            .get_many(handle(&bucket), vec!["small".into(), "big".into()])
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(&err, store::Error::Other(m) if m.contains("budget")));
        assert!(f.budget.is_exceeded());
        // Small answers still fit.
        assert!(f
            .view()
            .get(handle(&bucket), "small".into())
            .await
            .unwrap()
            .is_ok());
    }
}
