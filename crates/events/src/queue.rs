//! Durable queues as operators and publishers see them: names, settings and
//! messages parsed from untrusted input into checked types, the limits that
//! bound what a tenant can make the platform hold, and the operations
//! (create, publish, peek, stats, redrive, purge, delete), each audited.
//!
//! # Trust
//! Trusts the caller (the control API) to have authorized the operator for
//! the tenant. Trusts nothing in a name, setting or message: each is parsed
//! here, and anything out of bounds is refused whole, naming the problem,
//! before anything is stored. A publish answers only once its messages are
//! committed durably (`zerofn_store`, `synchronous=FULL`).

use std::sync::Arc;

use tokio::sync::Notify;
use zerofn_audit::{Action, AuditLog, AuditRecord, Outcome};
use zerofn_store::{
    MessageRow, NewMessage, NewQueue, Published, QueueCounts, QueueError, QueueRefusal, QueueRow,
    Store,
};
use zerofn_types::TenantName;

use crate::clock::Clock;
use crate::EventsError;

/// Largest message body (as Amazon SQS).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Most messages one queue holds (visible, in flight and waiting together).
pub const MAX_QUEUE_DEPTH: u64 = 100_000;
/// Most bytes of message data all of one tenant's queues hold together.
pub const MAX_TENANT_QUEUE_BYTES: u64 = 1024 * 1024 * 1024;
/// Most queues one tenant has.
pub const MAX_QUEUES_PER_TENANT: u32 = 100;
/// Most messages in one publish request.
pub const MAX_PUBLISH_BATCH: usize = 1_000;
/// Most bytes of message bodies in one publish request.
pub const MAX_PUBLISH_BYTES: usize = 8 * 1024 * 1024;
/// Most messages one peek shows.
pub const MAX_PEEK: u32 = 100;

/// Default and range of the visibility timeout.
pub const DEFAULT_VISIBILITY_MS: u64 = 30_000;
const VISIBILITY_RANGE_MS: (u64, u64) = (1_000, 12 * 3_600_000);
/// Default and range of the delivery attempts before dead-lettering.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
const MAX_ATTEMPTS: u32 = 100;
/// Default and range of the retention.
pub const DEFAULT_RETENTION_MS: u64 = 4 * 86_400_000;
const RETENTION_RANGE_MS: (u64, u64) = (60_000, 14 * 86_400_000);

/// The `type` of a message published without one.
pub const DEFAULT_EVENT_TYPE: &str = "dev.zerofn.queue.message";
/// The content type of a message published without one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// A queue's name: a DNS label (1 to 63 of a-z, 0-9 and `-`, not at either end).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueName(String);

impl QueueName {
    pub fn parse(text: &str) -> Result<QueueName, EventsError> {
        let bad = |problem: &str| EventsError::InvalidName {
            name: zerofn_types::excerpt(text).to_string(),
            problem: problem.to_owned(),
        };
        if text.is_empty() || text.len() > 63 {
            return Err(bad("must be 1 to 63 characters"));
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(bad("may hold only a-z, 0-9 and -"));
        }
        if text.starts_with('-') || text.ends_with('-') {
            return Err(bad("may not start or end with -"));
        }
        Ok(QueueName(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for QueueName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads a duration written `500ms`, `30s`, `5m`, `2h` or `4d`.
pub fn parse_duration_ms(key: &'static str, text: &str) -> Result<u64, EventsError> {
    let bad = || EventsError::InvalidSetting {
        key,
        problem: format!(
            "`{}` is not a duration; write a number and a unit: ms, s, m, h or d (`30s`, `4d`)",
            zerofn_types::excerpt(text)
        ),
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() || digits.len() > 9 {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).ok_or_else(bad)
}

/// A queue's settings as an operator writes them; unset ones take the defaults.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    pub visibility_timeout: Option<String>,
    pub max_attempts: Option<u32>,
    pub retention: Option<String>,
    pub dead_letter: Option<String>,
    #[serde(default)]
    pub fifo: bool,
}

fn in_range(
    key: &'static str,
    v: u64,
    (lo, hi): (u64, u64),
    show: &str,
) -> Result<u64, EventsError> {
    if v < lo || v > hi {
        return Err(EventsError::InvalidSetting {
            key,
            problem: format!(
                "`{show}` is out of range; use {} to {}",
                human(lo),
                human(hi)
            ),
        });
    }
    Ok(v)
}

fn human(ms: u64) -> String {
    match ms {
        m if m % 86_400_000 == 0 => format!("{}d", m / 86_400_000),
        m if m % 3_600_000 == 0 => format!("{}h", m / 3_600_000),
        m if m % 60_000 == 0 => format!("{}m", m / 60_000),
        m if m % 1_000 == 0 => format!("{}s", m / 1_000),
        m => format!("{m}ms"),
    }
}

impl QueueSettings {
    /// Checks every setting; the queue to create.
    pub fn check(&self, name: &QueueName) -> Result<NewQueue, EventsError> {
        let visibility = match &self.visibility_timeout {
            Some(t) => in_range(
                "visibility_timeout",
                parse_duration_ms("visibility_timeout", t)?,
                VISIBILITY_RANGE_MS,
                t,
            )?,
            None => DEFAULT_VISIBILITY_MS,
        };
        let retention = match &self.retention {
            Some(t) => in_range(
                "retention",
                parse_duration_ms("retention", t)?,
                RETENTION_RANGE_MS,
                t,
            )?,
            None => DEFAULT_RETENTION_MS,
        };
        let max_attempts = self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
        if max_attempts == 0 || max_attempts > MAX_ATTEMPTS {
            return Err(EventsError::InvalidSetting {
                key: "max_attempts",
                problem: format!("{max_attempts} is out of range; use 1 to {MAX_ATTEMPTS}"),
            });
        }
        let dead_letter = match &self.dead_letter {
            Some(d) => {
                let d = QueueName::parse(d)?;
                if &d == name {
                    return Err(EventsError::InvalidSetting {
                        key: "dead_letter",
                        problem: "a queue cannot be its own dead-letter queue".into(),
                    });
                }
                Some(d.0)
            }
            None => None,
        };
        Ok(NewQueue {
            name: name.0.clone(),
            visibility_timeout_ms: visibility,
            max_attempts,
            retention_ms: retention,
            dead_letter,
            fifo: self.fifo,
        })
    }
}

/// A message as a publisher sends it.
#[derive(Debug, Clone, Default)]
pub struct OutgoingMessage {
    pub id: Option<String>,
    pub event_type: Option<String>,
    pub content_type: Option<String>,
    pub group: Option<String>,
    pub data: Vec<u8>,
    /// The producer's W3C trace context (an HTTP publisher's `traceparent`
    /// header, or a CloudEvent's distributed-tracing extension attributes):
    /// the delivery continues that trace. An invalid value is ignored (the
    /// delivery starts a new trace), never a refusal.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

/// Checks a token that ends up in a CloudEvents header (`ce-id`, `ce-type`,
/// the group in `ce-subject`): visible ASCII without spaces, bounded.
fn token(key: &'static str, text: &str, max: usize, extra: &[u8]) -> Result<String, EventsError> {
    let ok = !text.is_empty()
        && text.len() <= max
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b) || extra.contains(&b));
    if !ok {
        return Err(EventsError::InvalidMessage {
            key,
            problem: format!(
                "`{}` is not valid: 1 to {max} of A-Z, a-z, 0-9, `-`, `.`, `_`, `:`{}",
                zerofn_types::excerpt(text),
                if extra.is_empty() { "" } else { " and `/`" }
            ),
        });
    }
    Ok(text.to_owned())
}

impl OutgoingMessage {
    fn check(self) -> Result<NewMessage, EventsError> {
        if self.data.len() > MAX_MESSAGE_BYTES {
            return Err(EventsError::MessageTooLarge {
                size: self.data.len(),
                limit: MAX_MESSAGE_BYTES,
            });
        }
        let id = match self.id {
            Some(id) => token("id", &id, 128, &[])?,
            None => uuid::Uuid::new_v4().to_string(),
        };
        let event_type = match self.event_type {
            Some(t) => token("type", &t, 256, b"/")?,
            None => DEFAULT_EVENT_TYPE.to_owned(),
        };
        let content_type = match self.content_type {
            Some(c) => {
                let ok = !c.is_empty()
                    && c.len() <= 128
                    && c.bytes().all(|b| (0x20..0x7f).contains(&b))
                    && http::HeaderValue::from_str(&c).is_ok();
                if !ok {
                    return Err(EventsError::InvalidMessage {
                        key: "content_type",
                        problem: "must be 1 to 128 printable ASCII characters".into(),
                    });
                }
                c
            }
            None => DEFAULT_CONTENT_TYPE.to_owned(),
        };
        let group = self
            .group
            .map(|g| token("group", &g, 128, &[]))
            .transpose()?;
        // Read as strictly as a request's headers, and stored in the form
        // the platform writes (version 00), so what a delivery sends is a
        // value this check produced.
        let trace = self.traceparent.as_deref().and_then(|tp| {
            zerofn_telemetry::TraceParent::from_values(tp, self.tracestate.as_deref())
        });
        Ok(NewMessage {
            id,
            event_type,
            content_type,
            group,
            body: self.data,
            traceparent: trace.as_ref().map(zerofn_telemetry::TraceParent::to_header),
            tracestate: trace.and_then(|t| t.state).map(|s| s.to_string()),
        })
    }
}

/// A queue with its counts (`queue stats`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueueStats {
    #[serde(flatten)]
    pub queue: QueueRow,
    #[serde(flatten)]
    pub counts: QueueCounts,
}

/// The queue operations of the control plane.
#[derive(Clone)]
pub struct Queues {
    store: Store,
    audit: AuditLog,
    clock: Arc<dyn Clock>,
    /// Poked after every publish and redrive: the delivery loop leases at once.
    wake: Arc<Notify>,
}

impl Queues {
    pub fn new(store: Store, audit: AuditLog, clock: Arc<dyn Clock>, wake: Arc<Notify>) -> Queues {
        Queues {
            store,
            audit,
            clock,
            wake,
        }
    }

    /// The clock the queues run on.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Appends a refusal's record and hands the error back.
    async fn refused<T>(&self, record: AuditRecord, e: EventsError) -> Result<T, EventsError> {
        self.audit.append(record.reason(e.to_string())).await?;
        Err(e)
    }

    pub async fn create(
        &self,
        actor: &str,
        tenant: &TenantName,
        name: &str,
        settings: &QueueSettings,
    ) -> Result<QueueRow, EventsError> {
        let record = |o| {
            AuditRecord::new(actor, Action::QueueCreate, o)
                .tenant(tenant.as_str())
                .detail(serde_json::json!({ "queue": zerofn_types::excerpt(name).to_string() }))
        };
        let new = match QueueName::parse(name).and_then(|n| settings.check(&n)) {
            Ok(new) => new,
            Err(e) => return self.refused(record(Outcome::Deny), e).await,
        };
        // The refusals the store would make, checked first so that a refused
        // create leaves one record (a deny), not an allow and a deny.
        if self.store.queue_get(tenant, &new.name).await.is_ok() {
            let e = EventsError::Refused(QueueRefusal::Exists(new.name.clone()));
            return self.refused(record(Outcome::Deny), e).await;
        }
        if let Some(dlq) = &new.dead_letter {
            if self.store.queue_get(tenant, dlq).await.is_err() {
                let e = EventsError::Refused(QueueRefusal::NoSuchDeadLetter(dlq.clone()));
                return self.refused(record(Outcome::Deny), e).await;
            }
        }
        let now = now_text(self.clock.now_ms());
        // Audit before effect: the record of the creation is durable first;
        // a store refusal after it (a race, the tenant's queue count) is
        // recorded as its own denial.
        self.audit
            .append(record(Outcome::Allow).reason(format!(
                "visibility_timeout {} max_attempts {} retention {} dead_letter {} fifo {}",
                human(new.visibility_timeout_ms),
                new.max_attempts,
                human(new.retention_ms),
                new.dead_letter.as_deref().unwrap_or("none"),
                new.fifo
            )))
            .await?;
        match self
            .store
            .queue_create(tenant, new, MAX_QUEUES_PER_TENANT, &now)
            .await
        {
            Ok(row) => Ok(row),
            Err(e) => self.refused(record(Outcome::Deny), e.into()).await,
        }
    }

    pub async fn delete(
        &self,
        actor: &str,
        tenant: &TenantName,
        name: &str,
    ) -> Result<u64, EventsError> {
        self.empty_or_remove(actor, tenant, name, Removal::Delete)
            .await
    }

    /// Publishes a batch: every message checked first (one bad message
    /// refuses them all), then committed in one transaction. One audit
    /// record per request names the queue and the message ids.
    pub async fn publish(
        &self,
        actor: &str,
        tenant: &TenantName,
        name: &str,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<Published>, EventsError> {
        let record = |o| AuditRecord::new(actor, Action::QueuePublish, o).tenant(tenant.as_str());
        let checked = (|| {
            let name = QueueName::parse(name)?;
            if messages.is_empty() {
                return Err(EventsError::InvalidMessage {
                    key: "messages",
                    problem: "no message to publish".into(),
                });
            }
            if messages.len() > MAX_PUBLISH_BATCH {
                return Err(EventsError::TooManyMessages {
                    count: messages.len(),
                    limit: MAX_PUBLISH_BATCH,
                });
            }
            let total: usize = messages.iter().map(|m| m.data.len()).sum();
            if total > MAX_PUBLISH_BYTES {
                return Err(EventsError::MessageTooLarge {
                    size: total,
                    limit: MAX_PUBLISH_BYTES,
                });
            }
            let checked = messages
                .into_iter()
                .map(OutgoingMessage::check)
                .collect::<Result<Vec<_>, _>>()?;
            Ok((name, checked))
        })();
        let (name, checked) = match checked {
            Ok(c) => c,
            Err(e) => {
                let r = record(Outcome::Deny).detail(serde_json::json!({
                    "queue": zerofn_types::excerpt(name).to_string(),
                }));
                return self.refused(r, e).await;
            }
        };
        let ids: Vec<&str> = checked.iter().take(16).map(|m| m.id.as_str()).collect();
        let detail = serde_json::json!({
            "queue": name.as_str(),
            "messages": checked.len(),
            "bytes": checked.iter().map(|m| m.body.len()).sum::<usize>(),
            "ids": ids,
        });
        if let Err(e) = self.store.queue_get(tenant, name.as_str()).await {
            return self
                .refused(record(Outcome::Deny).detail(detail), e.into())
                .await;
        }
        self.audit
            .append(record(Outcome::Allow).detail(detail.clone()))
            .await?;
        match self
            .store
            .queue_publish(
                tenant,
                name.as_str(),
                checked,
                self.clock.now_ms(),
                MAX_QUEUE_DEPTH,
                MAX_TENANT_QUEUE_BYTES,
            )
            .await
        {
            Ok(published) => {
                self.wake.notify_one();
                Ok(published)
            }
            Err(e) => {
                self.refused(record(Outcome::Deny).detail(detail), e.into())
                    .await
            }
        }
    }

    /// Up to `limit` (at most [`MAX_PEEK`]) messages, changing nothing.
    pub async fn peek(
        &self,
        tenant: &TenantName,
        name: &str,
        limit: u32,
    ) -> Result<Vec<MessageRow>, EventsError> {
        let name = QueueName::parse(name)?;
        Ok(self
            .store
            .queue_peek(tenant, name.as_str(), limit.clamp(1, MAX_PEEK))
            .await?)
    }

    pub async fn stats(&self, tenant: &TenantName, name: &str) -> Result<QueueStats, EventsError> {
        let name = QueueName::parse(name)?;
        let queue = self.store.queue_get(tenant, name.as_str()).await?;
        let counts = self
            .store
            .queue_counts(tenant, name.as_str(), self.clock.now_ms())
            .await?;
        Ok(QueueStats { queue, counts })
    }

    pub async fn list(&self, tenant: &TenantName) -> Result<Vec<QueueStats>, EventsError> {
        let now = self.clock.now_ms();
        let mut out = Vec::new();
        for queue in self.store.queue_list(tenant).await? {
            let counts = self.store.queue_counts(tenant, &queue.name, now).await?;
            out.push(QueueStats { queue, counts });
        }
        Ok(out)
    }

    pub async fn redrive(
        &self,
        actor: &str,
        tenant: &TenantName,
        dlq: &str,
    ) -> Result<u64, EventsError> {
        let record = |o| {
            AuditRecord::new(actor, Action::QueueRedrive, o)
                .tenant(tenant.as_str())
                .detail(serde_json::json!({ "queue": zerofn_types::excerpt(dlq).to_string() }))
        };
        let name = match QueueName::parse(dlq) {
            Ok(n) => n,
            Err(e) => return self.refused(record(Outcome::Deny), e).await,
        };
        if let Err(e) = self.store.queue_get(tenant, name.as_str()).await {
            return self.refused(record(Outcome::Deny), e.into()).await;
        }
        self.audit.append(record(Outcome::Allow)).await?;
        match self
            .store
            .queue_redrive(tenant, name.as_str(), self.clock.now_ms(), MAX_QUEUE_DEPTH)
            .await
        {
            Ok(n) => {
                self.wake.notify_one();
                Ok(n)
            }
            Err(e) => self.refused(record(Outcome::Deny), e.into()).await,
        }
    }

    pub async fn purge(
        &self,
        actor: &str,
        tenant: &TenantName,
        name: &str,
    ) -> Result<u64, EventsError> {
        self.empty_or_remove(actor, tenant, name, Removal::Purge)
            .await
    }

    /// Deletes a queue or purges its messages: the name checked, the queue
    /// required to exist, the operation audited (a refusal as a deny record
    /// with the reason), then done in the store. Answers the messages removed.
    async fn empty_or_remove(
        &self,
        actor: &str,
        tenant: &TenantName,
        name: &str,
        removal: Removal,
    ) -> Result<u64, EventsError> {
        let action = match removal {
            Removal::Delete => Action::QueueDelete,
            Removal::Purge => Action::QueuePurge,
        };
        let record = |o| {
            AuditRecord::new(actor, action, o)
                .tenant(tenant.as_str())
                .detail(serde_json::json!({ "queue": zerofn_types::excerpt(name).to_string() }))
        };
        let name = match QueueName::parse(name) {
            Ok(n) => n,
            Err(e) => return self.refused(record(Outcome::Deny), e).await,
        };
        if let Err(e) = self.store.queue_get(tenant, name.as_str()).await {
            return self.refused(record(Outcome::Deny), e.into()).await;
        }
        self.audit.append(record(Outcome::Allow)).await?;
        let done = match removal {
            Removal::Delete => self.store.queue_delete(tenant, name.as_str()).await,
            Removal::Purge => self.store.queue_purge(tenant, name.as_str()).await,
        };
        match done {
            Ok(n) => Ok(n),
            Err(e) => self.refused(record(Outcome::Deny), e.into()).await,
        }
    }
}

/// What [`Queues::empty_or_remove`] does to a queue.
#[derive(Clone, Copy)]
enum Removal {
    Delete,
    Purge,
}

/// RFC 3339 text of a time in milliseconds.
pub(crate) fn now_text(ms: u64) -> String {
    let nanos = i128::from(ms).saturating_mul(1_000_000);
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

impl From<QueueError> for EventsError {
    fn from(e: QueueError) -> EventsError {
        match e {
            QueueError::Refused(r) => EventsError::Refused(r),
            QueueError::Store(s) => EventsError::Store(s),
        }
    }
}

impl From<QueueRefusal> for EventsError {
    fn from(r: QueueRefusal) -> EventsError {
        EventsError::Refused(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_settings_and_messages_are_checked() {
        for bad in ["", "Orders", "-x", "x-", "a/b", "a b", &"x".repeat(64), "é"] {
            assert!(QueueName::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(QueueName::parse("orders-1").unwrap().as_str(), "orders-1");
        assert_eq!(parse_duration_ms("k", "30s").unwrap(), 30_000);
        assert_eq!(parse_duration_ms("k", "4d").unwrap(), 345_600_000);
        for bad in ["", "30", "s", "1.5s", "30 s", "-1s", "9999999999d", "1w"] {
            assert!(parse_duration_ms("k", bad).is_err(), "{bad:?} was accepted");
        }
        let name = QueueName::parse("q").unwrap();
        for (settings, key) in [
            (
                QueueSettings {
                    visibility_timeout: Some("0s".into()),
                    ..Default::default()
                },
                "visibility_timeout",
            ),
            (
                QueueSettings {
                    visibility_timeout: Some("13h".into()),
                    ..Default::default()
                },
                "visibility_timeout",
            ),
            (
                QueueSettings {
                    max_attempts: Some(0),
                    ..Default::default()
                },
                "max_attempts",
            ),
            (
                QueueSettings {
                    retention: Some("15d".into()),
                    ..Default::default()
                },
                "retention",
            ),
            (
                QueueSettings {
                    dead_letter: Some("q".into()),
                    ..Default::default()
                },
                "dead_letter",
            ),
        ] {
            match settings.check(&name) {
                Err(EventsError::InvalidSetting { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}: {other:?}"),
            }
        }
        let big = OutgoingMessage {
            data: vec![0; MAX_MESSAGE_BYTES + 1],
            ..Default::default()
        };
        assert!(matches!(
            big.check(),
            Err(EventsError::MessageTooLarge { .. })
        ));
        let bad_id = OutgoingMessage {
            id: Some("a\r\nce-id: x".into()),
            ..Default::default()
        };
        assert!(matches!(
            bad_id.check(),
            Err(EventsError::InvalidMessage { key: "id", .. })
        ));
        let bad_ct = OutgoingMessage {
            content_type: Some("text/plain\n".into()),
            ..Default::default()
        };
        assert!(matches!(
            bad_ct.check(),
            Err(EventsError::InvalidMessage {
                key: "content_type",
                ..
            })
        ));
        let ok = OutgoingMessage {
            data: b"x".to_vec(),
            ..Default::default()
        }
        .check()
        .unwrap();
        assert_eq!(ok.event_type, DEFAULT_EVENT_TYPE);
        assert_eq!(ok.id.len(), 36);
        assert_eq!((ok.traceparent, ok.tracestate), (None, None));
    }

    #[test]
    fn a_producers_trace_context_is_kept_when_valid_and_ignored_when_not() {
        const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let with = |tp: &str, ts: Option<&str>| {
            OutgoingMessage {
                traceparent: Some(tp.into()),
                tracestate: ts.map(Into::into),
                ..Default::default()
            }
            .check()
            .expect("a bad trace context never refuses a message")
        };
        let ok = with(TP, Some("vendor=1"));
        assert_eq!(ok.traceparent.as_deref(), Some(TP));
        assert_eq!(ok.tracestate.as_deref(), Some("vendor=1"));
        for (bad, why) in [
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "uppercase",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "zero trace id",
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "version ff",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nx: y",
                "injection",
            ),
            ("", "empty"),
        ] {
            let m = with(bad, Some("vendor=1"));
            assert_eq!(
                (m.traceparent, m.tracestate),
                (None, None),
                "{why}: {bad:?} was kept"
            );
        }
        // A bad tracestate is dropped, the traceparent kept.
        let m = with(TP, Some("a=\u{1}"));
        assert_eq!((m.traceparent.as_deref(), m.tracestate), (Some(TP), None));
    }
}
