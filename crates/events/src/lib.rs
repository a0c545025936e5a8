#![forbid(unsafe_code)]
//! Event sources and their delivery: tenants' durable queues (`queue.rs`),
//! the delivery loop that hands their messages to the functions bound to
//! them (`delivery.rs`), the scheduler that invokes functions bound to
//! schedules at their fire times (`schedule.rs`), as CloudEvents 1.0
//! requests in binary content mode (`cloudevent.rs`), on a clock tests can
//! replace (`clock.rs`); the change streams of tenants' key-value
//! buckets (`kv_stream.rs`: a function bound with `[[triggers]] kv =
//! "orders"` receives each change of that bucket, ordered per key, with its
//! old and new value, as `Zerofn::EventSource::"<tenant>/kv/<bucket>"`);
//! tenants' object storage and its bucket events (`objects.rs`), delivered
//! through the queues' loop.
//!
//! Each source is a principal of its own, `Zerofn::EventSource::"<tenant>/
//! queue/<name>"`: a function bound to a queue with `[[triggers]] queue =
//! "orders"` may be invoked by that source and no other (the trigger is an
//! invoke grant compiled into the function's Cedar policies by the
//! `manifest` crate). A schedule is `Zerofn::EventSource::"<tenant>/
//! schedule/<function>-<name>"`.
//!
//! # Trust
//! Trusts the store to keep what it committed, and the control API to have
//! authorized the operator of every queue operation. Trusts nothing in a
//! queue name, setting or message: each is parsed and bounded here (size,
//! count, depth, queues per tenant) and a bad one refuses the whole request.
//! Delivery trusts the gateway's invoke path (given as an [`Invoker`]) to
//! decide, limit, sandbox and audit the invocation as for any other caller.
//!
//! # Guarantees
//! - A publish answers only once its messages are committed with
//!   `synchronous=FULL`; a kill or power loss after that loses none.
//! - At least once: a message is deleted only after a 2xx answer; a failed,
//!   trapped, timed-out, refused or interrupted delivery returns it.
//! - No message is dropped for backpressure: it is leased only when its
//!   binding has a free delivery slot.
//! - FIFO queues: one in-flight message per group, in publish order.
//! - An event the invoke path refuses as it is (its data does not match its
//!   trigger's schema: [`Delivered::give_up`]) goes to the dead-letter queue
//!   at once, with no code run and no retry.
//! - Key-value changes: recorded in the write's transaction, delivered at
//!   least once, one at a time per key in sequence order, parked after
//!   their last attempt (never dropped unrecorded), bounded per subscriber.
//! - Schedules: at most once per fire time (recorded before the run), one
//!   run in flight per schedule, missed runs per `missed` (`schedule.rs`).
//!
//! # Where it falls short
//! - Functions publish through the gateway's platform host
//!   (`queues.fn.internal`, [`Queues::publish`] with the function as actor):
//!   `wasi:messaging` is a draft (0.2.0-draft) wasmtime 48 ships no bindings
//!   for.
//! - A kv subscriber that writes to its own bucket receives its own changes:
//!   no hop count cuts such a loop (`kv_stream.rs` logs a warning once).
//! - Functions reach objects through the gateway's platform host
//!   (`objects.fn.internal`, [`Objects`] with the function as actor), not
//!   `wasi:blobstore` (a draft on `wasi:io` streams wasmtime 48 has no host
//!   for). Bucket events go to the functions bound when the change commits;
//!   the event queue of a binding since removed keeps its undelivered events
//!   until the function is bound again (they are not expired without one).
//! - Schedules assume one platform process per store (two would both fire),
//!   and their skipped counts live in memory only.

mod clock;
mod cloudevent;
mod delivery;
mod kv_stream;
mod objects;
mod passes;
mod queue;
mod schedule;

pub use clock::{Clock, FakeClock, SystemClock};
pub use cloudevent::{
    request as cloudevent_request, schedule_source_uri, source_uri, ATTEMPT_HEADER, SPEC_VERSION,
    TRACEPARENT_ATTRIBUTE, TRACESTATE_ATTRIBUTE,
};
pub use delivery::{
    retry_delay_ms, Binding, Bindings, BoxFuture, Delivered, Delivery, EventInvocation, Invoker,
    MAX_TRIGGER_CONCURRENCY, RETRY_BASE_MS,
};
pub use kv_stream::{
    kv_change_request, kv_event_id, kv_source_uri, percent_encode_header, KvBinding, KvStreams,
    KV_CHANGE_EVENT_TYPE, KV_LEASE_MARGIN_MS, KV_MAX_ATTEMPTS, KV_PARKED_RETENTION_MS,
    KV_RETRY_CAP_MS,
};
pub use objects::{
    bucket_source_uri, check_bucket, check_key, event_queue, BucketBinding, BucketBindings,
    ObjectEventKind, Objects, ObjectsError, DEFAULT_OBJECT_CONTENT_TYPE, MAX_BUCKETS_PER_TENANT,
    MAX_EVENT_DEPTH, MAX_KEY_BYTES, MAX_LIST, MAX_OBJECTS_PER_TENANT, MAX_OBJECT_BYTES,
    MAX_TENANT_OBJECT_BYTES, OBJECT_CREATED_TYPE, OBJECT_DELETED_TYPE,
};
pub use queue::{
    parse_duration_ms, OutgoingMessage, QueueName, QueueSettings, QueueStats, Queues,
    DEFAULT_CONTENT_TYPE, DEFAULT_EVENT_TYPE, DEFAULT_MAX_ATTEMPTS, DEFAULT_RETENTION_MS,
    DEFAULT_VISIBILITY_MS, MAX_MESSAGE_BYTES, MAX_PEEK, MAX_PUBLISH_BATCH, MAX_PUBLISH_BYTES,
    MAX_QUEUES_PER_TENANT, MAX_QUEUE_DEPTH, MAX_TENANT_QUEUE_BYTES,
};
pub use schedule::{ScheduleBinding, ScheduleStatus, Scheduler, SCHEDULE_EVENT_TYPE};
pub use zerofn_store::{
    BucketRow, MessageRow, ObjectLimits, ObjectRefusal, ObjectRow, Published, QueueRefusal,
    QueueRow,
};

use zerofn_audit::AuditError;
use zerofn_store::StoreError;

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("queue name `{name}` is not valid: it {problem}")]
    InvalidName { name: String, problem: String },
    #[error("`{key}`: {problem}")]
    InvalidSetting { key: &'static str, problem: String },
    #[error("message `{key}`: {problem}")]
    InvalidMessage { key: &'static str, problem: String },
    #[error("message data of {size} bytes is larger than the limit of {limit} bytes")]
    MessageTooLarge { size: usize, limit: usize },
    #[error("{count} messages in one publish, more than the {limit} allowed; publish in smaller batches")]
    TooManyMessages { count: usize, limit: usize },
    #[error(transparent)]
    Refused(QueueRefusal),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Audit(#[from] AuditError),
}

impl EventsError {
    /// Machine-readable kind for API error bodies.
    pub fn kind(&self) -> &'static str {
        match self {
            EventsError::InvalidName { .. }
            | EventsError::InvalidSetting { .. }
            | EventsError::InvalidMessage { .. }
            | EventsError::TooManyMessages { .. }
            | EventsError::Refused(QueueRefusal::GroupRequired | QueueRefusal::GroupNotFifo) => {
                "bad_request"
            }
            EventsError::MessageTooLarge { .. } => "message_too_large",
            EventsError::Refused(
                QueueRefusal::NoSuchQueue(_) | QueueRefusal::NoSuchDeadLetter(_),
            ) => "not_found",
            EventsError::Refused(QueueRefusal::Exists(_)) => "already_exists",
            EventsError::Refused(QueueRefusal::InUse { .. }) => "queue_in_use",
            EventsError::Refused(
                QueueRefusal::TooManyQueues { .. }
                | QueueRefusal::Full { .. }
                | QueueRefusal::TenantFull { .. },
            ) => "limit_reached",
            EventsError::Store(e) if e.is_not_found() => "not_found",
            EventsError::Store(_) => "store_error",
            EventsError::Audit(_) => "audit_unavailable",
        }
    }

    /// The HTTP status of the error.
    pub fn status(&self) -> u16 {
        match self.kind() {
            "bad_request" => 400,
            "message_too_large" => 413,
            "not_found" => 404,
            "already_exists" | "queue_in_use" | "limit_reached" => 409,
            _ => 500,
        }
    }
}
