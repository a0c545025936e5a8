//! Object storage as operators and functions see it: bucket names and object
//! keys parsed from untrusted input, the limits that bound what a tenant can
//! make the platform hold, the operations (put, get, delete, list), each
//! change audited with the object's digest and size (never its bytes), and
//! the object events (`created`, `deleted`) of bucket triggers.
//!
//! Buckets are made by the first put into them (like a key prefix, they need
//! no ceremony) and count against the tenant's bucket limit from then on;
//! an empty bucket can be deleted.
//!
//! Object events ride the queue delivery path: a put or delete commits, in
//! the same transaction as the metadata change, one message per matching
//! binding into that binding's event queue (`@bucket/<bucket>/<function>`,
//! a name no tenant queue can have), which the delivery loop leases,
//! delivers as a CloudEvent, retries with backoff and dead-letters exactly
//! as a queue trigger's messages. Only bindings whose filters (event kinds,
//! key prefix and suffix) match get the event.
//!
//! # Trust
//! Trusts the caller (the control API, or the gateway for a function) to
//! have authorized the actor for the tenant and bucket. Trusts nothing in a
//! bucket name, key, content type or body: each is checked here and a bad
//! one refuses the request before anything is stored. Trusts the bindings to
//! come from admitted manifests.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use tokio::sync::{Notify, RwLock};
use zerofn_audit::{Action, AuditError, AuditLog, AuditRecord, Outcome};
use zerofn_store::{
    BucketRow, MessageRow, NewObject, ObjectError, ObjectEventRow, ObjectLimits, ObjectRefusal,
    ObjectRow, Store, TraceContext,
};
use zerofn_telemetry::TraceParent;
use zerofn_types::TenantName;

use crate::clock::Clock;
use crate::cloudevent::{trace_attributes, ATTEMPT_HEADER, SPEC_VERSION};
use crate::queue::now_text;

/// Largest object (a bigger one is refused before it is stored).
pub const MAX_OBJECT_BYTES: usize = 16 * 1024 * 1024;
/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Most buckets one tenant has.
pub const MAX_BUCKETS_PER_TENANT: u32 = 100;
/// Most objects one tenant holds.
pub const MAX_OBJECTS_PER_TENANT: u64 = 100_000;
/// Most bytes all of one tenant's objects hold together (counted per
/// object: two objects with the same bytes count twice, though stored once).
pub const MAX_TENANT_OBJECT_BYTES: u64 = 4 * 1024 * 1024 * 1024;
/// Most objects one list answers.
pub const MAX_LIST: u32 = 1_000;
/// Most undelivered events one binding's event queue holds; a change that
/// would pass it is refused (nothing is dropped).
pub const MAX_EVENT_DEPTH: u64 = 100_000;
/// Delivery settings of the event queues (those of a default queue).
const EVENT_VISIBILITY_MS: u64 = crate::queue::DEFAULT_VISIBILITY_MS;
const EVENT_RETENTION_MS: u64 = crate::queue::DEFAULT_RETENTION_MS;

/// The content type of an object put without one.
pub const DEFAULT_OBJECT_CONTENT_TYPE: &str = "application/octet-stream";
/// `ce-type` of an object created or replaced.
pub const OBJECT_CREATED_TYPE: &str = "dev.zerofn.object.created";
/// `ce-type` of an object deleted.
pub const OBJECT_DELETED_TYPE: &str = "dev.zerofn.object.deleted";

/// The prefix of event queue names: not a DNS label character, so no tenant
/// queue can be named like one.
const EVENT_QUEUE_PREFIX: &str = "@bucket/";

/// Why an object operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    #[error("bucket name `{name}` is not valid: it {problem}")]
    InvalidBucket { name: String, problem: &'static str },
    #[error("object key `{key}` is not valid: it {problem}")]
    InvalidKey { key: String, problem: String },
    #[error("content type is not valid: it must be 1 to 128 printable ASCII characters")]
    InvalidContentType,
    #[error("object of {size} bytes is larger than the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error(transparent)]
    Refused(ObjectRefusal),
    #[error(transparent)]
    Store(ObjectError),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl From<ObjectError> for ObjectsError {
    fn from(e: ObjectError) -> ObjectsError {
        match e {
            ObjectError::Refused(r) => ObjectsError::Refused(r),
            other => ObjectsError::Store(other),
        }
    }
}

impl ObjectsError {
    /// Machine-readable kind for API error bodies.
    pub fn kind(&self) -> &'static str {
        match self {
            ObjectsError::InvalidBucket { .. }
            | ObjectsError::InvalidKey { .. }
            | ObjectsError::InvalidContentType => "bad_request",
            ObjectsError::TooLarge { .. } => "object_too_large",
            ObjectsError::Refused(
                ObjectRefusal::NoSuchBucket(_) | ObjectRefusal::NoSuchObject { .. },
            ) => "not_found",
            ObjectsError::Refused(ObjectRefusal::BucketNotEmpty { .. }) => "bucket_not_empty",
            ObjectsError::Refused(
                ObjectRefusal::TooManyBuckets { .. }
                | ObjectRefusal::TooManyObjects { .. }
                | ObjectRefusal::TenantFull { .. }
                | ObjectRefusal::EventsFull { .. },
            ) => "limit_reached",
            ObjectsError::Store(ObjectError::Store(e)) if e.is_not_found() => "not_found",
            ObjectsError::Store(_) => "store_error",
            ObjectsError::Audit(_) => "audit_unavailable",
        }
    }

    /// The HTTP status of the error.
    pub fn status(&self) -> u16 {
        match self.kind() {
            "bad_request" => 400,
            "object_too_large" => 413,
            "not_found" => 404,
            "bucket_not_empty" | "limit_reached" => 409,
            _ => 500,
        }
    }
}

/// Checks a bucket name: a DNS label (1 to 63 of a-z, 0-9 and `-`, not at
/// either end), as queue and key-value bucket names.
pub fn check_bucket(name: &str) -> Result<(), ObjectsError> {
    let bad = |problem| ObjectsError::InvalidBucket {
        name: zerofn_types::excerpt(name).to_string(),
        problem,
    };
    if name.is_empty() || name.len() > 63 {
        return Err(bad("must be 1 to 63 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(bad("may hold only a-z, 0-9 and -"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err(bad("may not start or end with -"));
    }
    Ok(())
}

/// Checks an object key: 1 to [`MAX_KEY_BYTES`] bytes of A-Z, a-z, 0-9 and
/// `/ ! - _ . * ' ( ) = + , @ : ~` (S3's safe characters and a few more: no
/// space, control character, `\`, `%`, `?` or `#`), not starting with `/`,
/// without an empty, `.` or `..` segment. A key is a name, never a path: it
/// is not used to build one, but refusing what looks like one keeps keys
/// usable in URLs and headers unescaped and stops confusions downstream.
pub fn check_key(key: &str) -> Result<(), ObjectsError> {
    let bad = |problem: String| ObjectsError::InvalidKey {
        key: zerofn_types::excerpt(key).to_string(),
        problem,
    };
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(bad(format!("must be 1 to {MAX_KEY_BYTES} bytes")));
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/!-_.*'()=+,@:~".contains(*c)))
    {
        return Err(bad(format!(
            "holds `{}`; use A-Z, a-z, 0-9 and / ! - _ . * ' ( ) = + , @ : ~",
            c.escape_debug()
        )));
    }
    if key.starts_with('/') {
        return Err(bad("starts with `/`".into()));
    }
    if key
        .split('/')
        .enumerate()
        .any(|(i, s)| s == "." || s == ".." || (s.is_empty() && i + 1 < key.split('/').count()))
    {
        return Err(bad("has an empty, `.` or `..` segment".into()));
    }
    Ok(())
}

fn check_content_type(c: &str) -> Result<(), ObjectsError> {
    let ok = !c.is_empty()
        && c.len() <= 128
        && c.bytes().all(|b| (0x20..0x7f).contains(&b))
        && HeaderValue::from_str(c).is_ok();
    if ok {
        Ok(())
    } else {
        Err(ObjectsError::InvalidContentType)
    }
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectEventKind {
    Created,
    Deleted,
}

impl ObjectEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectEventKind::Created => "created",
            ObjectEventKind::Deleted => "deleted",
        }
    }

    /// `ce-type` of the event.
    pub fn event_type(self) -> &'static str {
        match self {
            ObjectEventKind::Created => OBJECT_CREATED_TYPE,
            ObjectEventKind::Deleted => OBJECT_DELETED_TYPE,
        }
    }
}

/// A function bound to a bucket (`[[triggers]] bucket = "..."`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BucketBinding {
    pub tenant: String,
    pub function: String,
    pub bucket: String,
    /// The kinds the trigger wants (`events`).
    pub created: bool,
    pub deleted: bool,
    /// Only keys starting with this (`prefix`).
    pub prefix: Option<String>,
    /// Only keys ending with this (`suffix`).
    pub suffix: Option<String>,
    pub max_concurrency: u32,
    /// How often an event is tried before it is dead-lettered.
    pub max_attempts: u32,
    /// The tenant queue failed events move to (`dead_letter`), if any.
    pub dead_letter: Option<String>,
}

impl BucketBinding {
    /// Whether the binding wants `kind` of `key` in `bucket` of `tenant`.
    pub fn matches(&self, tenant: &str, bucket: &str, kind: ObjectEventKind, key: &str) -> bool {
        let wanted = match kind {
            ObjectEventKind::Created => self.created,
            ObjectEventKind::Deleted => self.deleted,
        };
        wanted
            && self.tenant == tenant
            && self.bucket == bucket
            && self.prefix.as_deref().is_none_or(|p| key.starts_with(p))
            && self.suffix.as_deref().is_none_or(|s| key.ends_with(s))
    }

    /// The binding's event queue.
    pub fn event_queue(&self) -> String {
        event_queue(&self.bucket, &self.function)
    }

    /// The binding as the delivery loop sees it: a queue binding of its
    /// event queue.
    pub fn delivery_binding(&self) -> crate::Binding {
        crate::Binding {
            tenant: self.tenant.clone(),
            function: self.function.clone(),
            queue: self.event_queue(),
            max_concurrency: self.max_concurrency,
        }
    }
}

/// The event queue of `function`'s trigger on `bucket`.
pub fn event_queue(bucket: &str, function: &str) -> String {
    format!("{EVENT_QUEUE_PREFIX}{bucket}/{function}")
}

/// The bucket whose events `queue` holds, if it is an event queue.
pub(crate) fn bucket_of_event_queue(queue: &str) -> Option<&str> {
    queue
        .strip_prefix(EVENT_QUEUE_PREFIX)?
        .split_once('/')
        .map(|(bucket, _)| bucket)
}

/// Where the bucket bindings come from (the functions deployed now).
pub trait BucketBindings: Send + Sync + 'static {
    fn bucket_bindings(&self) -> Vec<BucketBinding>;
}

/// `ce-source` of a tenant's bucket.
pub fn bucket_source_uri(tenant: &str, bucket: &str) -> String {
    format!("/zerofn/tenants/{tenant}/buckets/{bucket}")
}

/// The event's body: what happened to which object, never the object.
fn event_body(kind: ObjectEventKind, bucket: &str, row: &ObjectRow) -> Vec<u8> {
    serde_json::json!({
        "event": kind.as_str(),
        "bucket": bucket,
        "key": row.key,
        "size": row.size,
        "digest": row.digest,
        "content_type": row.content_type,
        "version": row.version,
    })
    .to_string()
    .into_bytes()
}

/// The request delivering an object event `message` of `tenant`'s `bucket`
/// (binary content mode; `ce-subject` the object's key, read back from the
/// platform's own event body).
pub(crate) fn request(tenant: &str, bucket: &str, message: &MessageRow) -> Request<Bytes> {
    let mut req = Request::new(Bytes::from(message.body.clone()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = http::Uri::from_static("/");
    let key = serde_json::from_slice::<serde_json::Value>(&message.body)
        .ok()
        .and_then(|v| v.get("key")?.as_str().map(str::to_owned));
    let mut headers = vec![
        ("ce-specversion", SPEC_VERSION.to_owned()),
        ("ce-id", message.id.clone()),
        ("ce-source", bucket_source_uri(tenant, bucket)),
        ("ce-type", message.event_type.clone()),
        ("ce-time", now_text(message.published_at_ms)),
        (ATTEMPT_HEADER, message.attempts.to_string()),
        ("content-type", message.content_type.clone()),
    ];
    if let Some(key) = key {
        headers.push(("ce-subject", key));
    }
    // The trace of the request whose put or delete made the event, if it
    // was traced: the delivery continues it (as a queue message's does).
    headers.extend(trace_attributes(
        message.traceparent.as_deref(),
        message.tracestate.as_deref(),
    ));
    for (name, value) in headers {
        // Keys are checked to be header-safe at put; anything that still is
        // not a header value is left out rather than sent altered.
        if let Ok(value) = HeaderValue::from_str(&value) {
            req.headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
    }
    req
}

/// A request's trace context as an event stores it: version 00 (what the
/// platform writes, so a delivery sends a value this crate produced), its
/// sampled flag and `tracestate` kept.
pub(crate) fn stored_trace(trace: Option<&TraceParent>) -> Option<TraceContext> {
    let t = trace?;
    TraceContext::new(&t.to_header(), t.state.as_deref())
}

/// The object operations.
#[derive(Clone)]
pub struct Objects {
    store: Store,
    audit: AuditLog,
    clock: Arc<dyn Clock>,
    bindings: Arc<dyn BucketBindings>,
    /// Poked after every change with events: the delivery loop leases at once.
    wake: Arc<Notify>,
    /// Puts hold it shared from their blob write to their commit; collecting
    /// a blob holds it alone, so no blob is removed between a put writing
    /// (or finding) it and committing the metadata that names it.
    blobs: Arc<RwLock<()>>,
    limits: ObjectLimits,
}

impl Objects {
    pub fn new(
        store: Store,
        audit: AuditLog,
        clock: Arc<dyn Clock>,
        bindings: Arc<dyn BucketBindings>,
        wake: Arc<Notify>,
    ) -> Objects {
        Objects {
            store,
            audit,
            clock,
            bindings,
            wake,
            blobs: Arc::new(RwLock::new(())),
            limits: ObjectLimits {
                max_buckets: MAX_BUCKETS_PER_TENANT,
                max_objects: MAX_OBJECTS_PER_TENANT,
                max_bytes: MAX_TENANT_OBJECT_BYTES,
                max_event_depth: MAX_EVENT_DEPTH,
            },
        }
    }

    /// Other limits (tests).
    pub fn with_limits(mut self, limits: ObjectLimits) -> Objects {
        self.limits = limits;
        self
    }

    /// Removes blobs no object names and temporary files a crash left; run
    /// at start-up, before any put. Answers how many files went.
    pub async fn sweep(&self) -> Result<u64, ObjectsError> {
        let _alone = self.blobs.write().await;
        Ok(self.store.object_blob_sweep().await?)
    }

    /// The events of `kind` on `row` for every binding that wants them.
    fn events(
        &self,
        tenant: &TenantName,
        bucket: &str,
        kind: ObjectEventKind,
        row: &ObjectRow,
        trace: Option<&TraceParent>,
    ) -> Vec<ObjectEventRow> {
        let body = event_body(kind, bucket, row);
        let trace = stored_trace(trace);
        self.bindings
            .bucket_bindings()
            .into_iter()
            .filter(|b| b.matches(tenant.as_str(), bucket, kind, &row.key))
            .map(|b| ObjectEventRow {
                queue: b.event_queue(),
                dead_letter: b.dead_letter.clone(),
                visibility_timeout_ms: EVENT_VISIBILITY_MS,
                max_attempts: b.max_attempts,
                retention_ms: EVENT_RETENTION_MS,
                id: uuid::Uuid::new_v4().to_string(),
                event_type: kind.event_type().to_owned(),
                body: body.clone(),
                trace: trace.clone(),
            })
            .collect()
    }

    async fn refused<T>(&self, record: AuditRecord, e: ObjectsError) -> Result<T, ObjectsError> {
        self.audit.append(record.reason(e.to_string())).await?;
        Err(e)
    }

    /// Stores `data` under `key` in `bucket` (made if new), replacing what
    /// was there, and emits `created` to the bindings that want it. Audited
    /// (`object.put`) with digest and size before the metadata commits; a
    /// refusal is audited as a denial and changes nothing. `trace` is the
    /// context of the request making the put (the span that made it), if
    /// traced: its events' deliveries continue that trace.
    #[allow(clippy::too_many_arguments)]
    pub async fn put(
        &self,
        actor: &str,
        tenant: &TenantName,
        bucket: &str,
        key: &str,
        data: Vec<u8>,
        content_type: Option<&str>,
        trace: Option<&TraceParent>,
    ) -> Result<ObjectRow, ObjectsError> {
        let detail = serde_json::json!({
            "bucket": zerofn_types::excerpt(bucket).to_string(),
            "key": zerofn_types::excerpt(key).to_string(),
        });
        let record = |o, extra: Option<(&str, u64)>| {
            let mut d = detail.clone();
            if let (Some((digest, size)), Some(obj)) = (extra, d.as_object_mut()) {
                obj.insert("digest".into(), digest.into());
                obj.insert("size".into(), size.into());
            }
            AuditRecord::new(actor, Action::ObjectPut, o)
                .tenant(tenant.as_str())
                .detail(d)
        };
        let content_type = content_type.unwrap_or(DEFAULT_OBJECT_CONTENT_TYPE);
        let checked = check_bucket(bucket)
            .and_then(|()| check_key(key))
            .and_then(|()| check_content_type(content_type))
            .and_then(|()| {
                if data.len() > MAX_OBJECT_BYTES {
                    Err(ObjectsError::TooLarge {
                        size: data.len(),
                        limit: MAX_OBJECT_BYTES,
                    })
                } else {
                    Ok(())
                }
            });
        if let Err(e) = checked {
            return self.refused(record(Outcome::Deny, None), e).await;
        }
        let (row, old) = {
            let _shared = self.blobs.read().await;
            let blob = self.store.object_blob_write(data).await?;
            let (digest, size) = (blob.digest.clone(), blob.size);
            // Audit before effect: the record is durable before the metadata
            // that makes the object visible commits.
            self.audit
                .append(record(Outcome::Allow, Some((&digest, size))))
                .await?;
            let provisional = ObjectRow {
                tenant: tenant.as_str().to_owned(),
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                digest: digest.clone(),
                size,
                content_type: content_type.to_owned(),
                created_at: String::new(),
                version: 0,
            };
            let events = self.events(
                tenant,
                bucket,
                ObjectEventKind::Created,
                &provisional,
                trace,
            );
            let has_events = !events.is_empty();
            let now_ms = self.clock.now_ms();
            let result = self
                .store
                .object_put(
                    tenant,
                    NewObject {
                        bucket: bucket.to_owned(),
                        key: key.to_owned(),
                        blob,
                        content_type: content_type.to_owned(),
                    },
                    events,
                    self.limits,
                    now_ms,
                    &now_text(now_ms),
                )
                .await;
            match result {
                Ok(done) => {
                    if has_events {
                        self.wake.notify_one();
                    }
                    done
                }
                Err(e) => {
                    drop(_shared);
                    // The blob may now be unreferenced (a new one refused).
                    self.collect(&digest).await;
                    return self
                        .refused(record(Outcome::Deny, Some((&digest, size))), e.into())
                        .await;
                }
            }
        };
        if let Some(old) = old {
            if old.digest != row.digest {
                self.collect(&old.digest).await;
            }
        }
        Ok(row)
    }

    /// Removes the blob of `digest` if nothing names it any more; a failure
    /// leaves the file for the next start-up's sweep.
    async fn collect(&self, digest: &str) {
        let _alone = self.blobs.write().await;
        if let Err(error) = self.store.object_blob_collect(digest).await {
            tracing::warn!(%error, %digest, "cannot remove an unreferenced blob");
        }
    }

    /// An object's metadata and bytes (checked against its digest).
    pub async fn get(
        &self,
        tenant: &TenantName,
        bucket: &str,
        key: &str,
    ) -> Result<(ObjectRow, Vec<u8>), ObjectsError> {
        check_bucket(bucket)?;
        check_key(key)?;
        // Held so that a concurrent overwrite cannot collect the blob between
        // reading the metadata and reading the bytes.
        let _shared = self.blobs.read().await;
        let row = self.store.object_get(tenant, bucket, key).await?;
        let data = self.store.object_blob_read(&row.digest).await?;
        Ok((row, data))
    }

    /// Deletes an object and emits `deleted` to the bindings that want it.
    /// Audited (`object.delete`) with the digest and size it had. `trace`
    /// as for [`Objects::put`].
    pub async fn delete(
        &self,
        actor: &str,
        tenant: &TenantName,
        bucket: &str,
        key: &str,
        trace: Option<&TraceParent>,
    ) -> Result<ObjectRow, ObjectsError> {
        let record = |o, extra: Option<&ObjectRow>| {
            let mut d = serde_json::json!({
                "bucket": zerofn_types::excerpt(bucket).to_string(),
                "key": zerofn_types::excerpt(key).to_string(),
            });
            if let (Some(row), Some(obj)) = (extra, d.as_object_mut()) {
                obj.insert("digest".into(), row.digest.clone().into());
                obj.insert("size".into(), row.size.into());
            }
            AuditRecord::new(actor, Action::ObjectDelete, o)
                .tenant(tenant.as_str())
                .detail(d)
        };
        if let Err(e) = check_bucket(bucket).and_then(|()| check_key(key)) {
            return self.refused(record(Outcome::Deny, None), e).await;
        }
        let current = match self.store.object_get(tenant, bucket, key).await {
            Ok(row) => row,
            Err(e) => return self.refused(record(Outcome::Deny, None), e.into()).await,
        };
        self.audit
            .append(record(Outcome::Allow, Some(&current)))
            .await?;
        let events = self.events(tenant, bucket, ObjectEventKind::Deleted, &current, trace);
        let has_events = !events.is_empty();
        let now_ms = self.clock.now_ms();
        let row = match self
            .store
            .object_delete(
                tenant,
                bucket,
                key,
                events,
                self.limits.max_event_depth,
                now_ms,
                &now_text(now_ms),
            )
            .await
        {
            Ok(row) => row,
            Err(e) => return self.refused(record(Outcome::Deny, None), e.into()).await,
        };
        if has_events {
            self.wake.notify_one();
        }
        self.collect(&row.digest).await;
        Ok(row)
    }

    /// Up to `limit` (at most [`MAX_LIST`]) objects whose keys start with
    /// `prefix`, by key, after `after` when given.
    pub async fn list(
        &self,
        tenant: &TenantName,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ObjectRow>, ObjectsError> {
        check_bucket(bucket)?;
        if prefix.len() > MAX_KEY_BYTES {
            return Err(ObjectsError::InvalidKey {
                key: zerofn_types::excerpt(prefix).to_string(),
                problem: format!("is a prefix longer than {MAX_KEY_BYTES} bytes"),
            });
        }
        Ok(self
            .store
            .object_list(tenant, bucket, prefix, after, limit.clamp(1, MAX_LIST))
            .await?)
    }

    /// A tenant's buckets.
    pub async fn buckets(&self, tenant: &TenantName) -> Result<Vec<BucketRow>, ObjectsError> {
        Ok(self.store.bucket_list(tenant).await?)
    }

    /// Deletes an empty bucket (audited as `object.delete` of the bucket).
    pub async fn delete_bucket(
        &self,
        actor: &str,
        tenant: &TenantName,
        bucket: &str,
    ) -> Result<(), ObjectsError> {
        let record = |o| {
            AuditRecord::new(actor, Action::ObjectDelete, o)
                .tenant(tenant.as_str())
                .detail(serde_json::json!({ "bucket": zerofn_types::excerpt(bucket).to_string() }))
        };
        if let Err(e) = check_bucket(bucket) {
            return self.refused(record(Outcome::Deny), e).await;
        }
        match self.store.bucket_delete(tenant, bucket).await {
            Ok(()) => {
                self.audit.append(record(Outcome::Allow)).await?;
                Ok(())
            }
            Err(e) => self.refused(record(Outcome::Deny), e.into()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use std::sync::Mutex;

    #[test]
    fn keys_are_names_not_paths() {
        for ok in [
            "a",
            "incoming/x.json",
            "a/b/c",
            "dir/",
            "x=1,y+2@h:~(1)!*'",
            "..a",
            "a..b",
        ] {
            check_key(ok).unwrap_or_else(|e| panic!("`{ok}` refused: {e}"));
        }
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        for (bad, why) in [
            ("", "empty"),
            (long.as_str(), "too long"),
            ("/etc/passwd", "leading slash"),
            ("../x", "parent segment"),
            ("a/../b", "inner parent segment"),
            ("a/./b", "dot segment"),
            ("a//b", "empty segment"),
            ("a\nb", "control character"),
            ("a\u{0}b", "NUL"),
            ("a b", "space"),
            ("a\\b", "backslash"),
            ("a%2e", "percent"),
            ("a?b", "query"),
            ("a#b", "fragment"),
            ("é", "non-ASCII"),
        ] {
            assert!(
                matches!(check_key(bad), Err(ObjectsError::InvalidKey { .. })),
                "{why}: `{}` was accepted",
                bad.escape_debug()
            );
        }
    }

    #[test]
    fn filters_match_kind_bucket_prefix_and_suffix() {
        let b = BucketBinding {
            tenant: "acme".into(),
            function: "f".into(),
            bucket: "uploads".into(),
            created: true,
            deleted: false,
            prefix: Some("incoming/".into()),
            suffix: Some(".json".into()),
            max_concurrency: 1,
            max_attempts: 3,
            dead_letter: None,
        };
        use ObjectEventKind::*;
        assert!(b.matches("acme", "uploads", Created, "incoming/a.json"));
        for (tenant, bucket, kind, key) in [
            ("acme", "uploads", Deleted, "incoming/a.json"),
            ("acme", "other", Created, "incoming/a.json"),
            ("evil", "uploads", Created, "incoming/a.json"),
            ("acme", "uploads", Created, "outgoing/a.json"),
            ("acme", "uploads", Created, "incoming/a.txt"),
        ] {
            assert!(
                !b.matches(tenant, bucket, kind, key),
                "{tenant} {bucket} {kind:?} {key}"
            );
        }
        assert_eq!(b.event_queue(), "@bucket/uploads/f");
        assert_eq!(bucket_of_event_queue("@bucket/uploads/f"), Some("uploads"));
        assert_eq!(bucket_of_event_queue("uploads"), None);
    }

    struct Fixed(Mutex<Vec<BucketBinding>>);
    impl BucketBindings for Arc<Fixed> {
        fn bucket_bindings(&self) -> Vec<BucketBinding> {
            self.0.lock().unwrap().clone()
        }
    }

    #[tokio::test]
    async fn changes_emit_events_only_to_matching_bindings_and_are_audited() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tenant = TenantName::parse("acme").unwrap();
        store.create_tenant(&tenant, "t0").await.unwrap();
        let audit = AuditLog::open(&store).unwrap();
        let binding = |function: &str, bucket: &str, deleted: bool| BucketBinding {
            tenant: "acme".into(),
            function: function.into(),
            bucket: bucket.into(),
            created: true,
            deleted,
            prefix: Some("in/".into()),
            suffix: None,
            max_concurrency: 1,
            max_attempts: 2,
            dead_letter: None,
        };
        let bindings = Arc::new(Fixed(Mutex::new(vec![
            binding("a", "bucket-a", true),
            binding("b", "bucket-b", false),
        ])));
        let objects = Objects::new(
            store.clone(),
            audit,
            Arc::new(FakeClock::new(1_000)),
            Arc::new(bindings),
            Arc::new(Notify::new()),
        );
        let row = objects
            .put(
                "op",
                &tenant,
                "bucket-a",
                "in/x",
                b"data".to_vec(),
                Some("text/plain"),
                None,
            )
            .await
            .unwrap();
        objects
            .put(
                "op",
                &tenant,
                "bucket-a",
                "out/x",
                b"data".to_vec(),
                None,
                None,
            )
            .await
            .unwrap();
        objects
            .delete("op", &tenant, "bucket-a", "in/x", None)
            .await
            .unwrap();
        let queued = store
            .queue_peek(&tenant, "@bucket/bucket-a/a", 10)
            .await
            .unwrap();
        let kinds: Vec<_> = queued.iter().map(|m| m.event_type.as_str()).collect();
        assert_eq!(kinds, [OBJECT_CREATED_TYPE, OBJECT_DELETED_TYPE]);
        let body: serde_json::Value = serde_json::from_slice(&queued[0].body).unwrap();
        assert_eq!(body["key"], "in/x");
        assert_eq!(body["size"], 4);
        assert_eq!(body["digest"], row.digest.as_str());
        assert_eq!(body["content_type"], "text/plain");
        assert!(
            store
                .queue_get(&tenant, "@bucket/bucket-b/b")
                .await
                .is_err(),
            "bucket b's binding got an event of bucket a"
        );
        let req = request("acme", "bucket-a", &queued[0]);
        let h = |n: &str| req.headers().get(n).unwrap().to_str().unwrap().to_owned();
        assert_eq!(h("ce-source"), "/zerofn/tenants/acme/buckets/bucket-a");
        assert_eq!(h("ce-subject"), "in/x");
        assert_eq!(h("ce-type"), "dev.zerofn.object.created");
        assert_eq!(h("content-type"), "application/json");
        // Audited with digest and size, never the bytes.
        let records = store.audit_page(0, 1000).await.unwrap();
        let puts: Vec<_> = records
            .iter()
            .filter(|r| r.action == "object.put")
            .collect();
        assert_eq!(puts.len(), 2);
        let detail = puts[0].detail.as_deref().unwrap();
        assert!(
            detail.contains(&row.digest) && detail.contains("\"size\":4"),
            "{detail}"
        );
        assert!(!detail.contains("data"), "{detail}");
        assert!(records.iter().any(|r| r.action == "object.delete"));
        // A bad key is refused, audited and stores nothing.
        let e = objects
            .put("op", &tenant, "bucket-a", "../x", b"x".to_vec(), None, None)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(objects
            .list(&tenant, "bucket-a", "", None, 10)
            .await
            .unwrap()
            .iter()
            .all(|r| r.key == "out/x"));
    }

    /// A put or delete made inside a traced request: each event keeps the
    /// request's context (version 00, its sampled flag and `tracestate`)
    /// and its delivery carries it as `ce-traceparent`/`ce-tracestate`; a
    /// change outside any trace carries none.
    #[tokio::test]
    async fn events_carry_the_trace_context_of_the_change() {
        const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let audit = AuditLog::open(&store).unwrap();
        let tenant = TenantName::parse("acme").unwrap();
        store.create_tenant(&tenant, "t0").await.unwrap();
        let bindings = Arc::new(Fixed(Mutex::new(vec![BucketBinding {
            tenant: "acme".into(),
            function: "a".into(),
            bucket: "bucket-a".into(),
            created: true,
            deleted: true,
            prefix: None,
            suffix: None,
            max_concurrency: 1,
            max_attempts: 2,
            dead_letter: None,
        }])));
        let objects = Objects::new(
            store.clone(),
            audit,
            Arc::new(FakeClock::new(1_000)),
            Arc::new(bindings),
            Arc::new(Notify::new()),
        );
        let sampled = TraceParent::from_values(TP, Some("vendor=1")).unwrap();
        let unsampled_tp = TP.replace("-01", "-00");
        let unsampled = TraceParent::from_values(&unsampled_tp, None).unwrap();
        objects
            .put(
                "op",
                &tenant,
                "bucket-a",
                "k",
                b"1".to_vec(),
                None,
                Some(&sampled),
            )
            .await
            .unwrap();
        objects
            .put(
                "op",
                &tenant,
                "bucket-a",
                "plain",
                b"2".to_vec(),
                None,
                None,
            )
            .await
            .unwrap();
        objects
            .delete("op", &tenant, "bucket-a", "k", Some(&unsampled))
            .await
            .unwrap();
        let queued = store
            .queue_peek(&tenant, "@bucket/bucket-a/a", 10)
            .await
            .unwrap();
        let attr = |m: &MessageRow, n: &str| {
            request("acme", "bucket-a", m)
                .headers()
                .get(n)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let got: Vec<_> = queued
            .iter()
            .map(|m| (attr(m, "ce-traceparent"), attr(m, "ce-tracestate")))
            .collect();
        assert_eq!(
            got,
            [
                (Some(TP.to_owned()), Some("vendor=1".to_owned())),
                (None, None),
                (Some(unsampled_tp), None),
            ]
        );
    }
}
