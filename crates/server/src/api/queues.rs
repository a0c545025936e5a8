//! The control API's queue routes (`/v1/tenants/{tenant}/queues...`): JSON
//! in and out, over [`zerofn_events::Queues`], which checks, bounds and
//! audits every operation. Authorization is the route table's.

use base64::Engine as _;
use http::StatusCode;
use zerofn_api::{
    CreateQueue, PublishMessages, PublishedMessage, PublishedMessages, Queue, QueueChanged,
    QueueList, QueuedMessage, QueuedMessages,
};
use zerofn_events::{OutgoingMessage, QueueSettings, QueueStats};

use super::routes::{decode_query_value, Call, Reply};
use super::{parse_json, to_value, Api};
use crate::control::ControlError;

/// Messages a peek shows when the query does not say.
const DEFAULT_PEEK: u32 = 10;

fn queue_answer(s: QueueStats) -> Queue {
    Queue {
        tenant: s.queue.tenant,
        name: s.queue.name,
        visibility_timeout_ms: s.queue.visibility_timeout_ms,
        max_attempts: s.queue.max_attempts,
        retention_ms: s.queue.retention_ms,
        dead_letter: s.queue.dead_letter,
        fifo: s.queue.fifo,
        created_at: s.queue.created_at,
        visible: s.counts.visible,
        in_flight: s.counts.in_flight,
        oldest_age_ms: s.counts.oldest_age_ms,
    }
}

/// A stored message as the API shows it (data in base64).
fn queued(m: zerofn_events::MessageRow) -> QueuedMessage {
    QueuedMessage {
        id: m.id,
        event_type: m.event_type,
        content_type: m.content_type,
        group: m.group,
        data: base64::engine::general_purpose::STANDARD.encode(&m.body),
        published_at_ms: m.published_at_ms,
        visible_at_ms: m.visible_at_ms,
        attempts: m.attempts,
        last_error: m.last_error,
        source_queue: m.source_queue,
    }
}

/// `limit=N` of a peek's query (1 to 100); anything else is refused.
fn peek_limit(query: Option<&str>) -> Result<u32, ControlError> {
    let mut limit = DEFAULT_PEEK;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "limit" => {
                let value = decode_query_value(value)?;
                limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=zerofn_events::MAX_PEEK).contains(n))
                    .ok_or_else(|| {
                        ControlError::InvalidRequest(format!(
                            "`limit` must be a number from 1 to {}",
                            zerofn_events::MAX_PEEK
                        ))
                    })?;
            }
            other => {
                return Err(ControlError::InvalidRequest(format!(
                    "unknown query parameter `{}`; expected `limit`",
                    other.escape_debug()
                )))
            }
        }
    }
    Ok(limit)
}

impl Api {
    pub(super) async fn list_schedules(&self, c: Call<'_>) -> Reply {
        let tenant = c.tenant()?;
        let rfc3339 = |ms: u64| {
            let nanos = i128::from(ms).saturating_mul(1_000_000);
            time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
        };
        let schedules = self
            .scheduler
            .status(tenant.as_str())
            .await
            .map_err(crate::control::ControlError::Store)?
            .into_iter()
            .map(|s| zerofn_api::ScheduleView {
                function: s.function,
                name: s.name,
                schedule: s.schedule,
                timezone: s.timezone,
                missed: s.missed.to_owned(),
                last_run: s.last_run_ms.and_then(rfc3339),
                next_run: s.next_run_ms.and_then(rfc3339),
                skipped: s.skipped,
                running: s.running,
            })
            .collect();
        Ok((
            StatusCode::OK,
            to_value(zerofn_api::ScheduleList { schedules }),
        ))
    }

    pub(super) async fn list_queues(&self, c: Call<'_>) -> Reply {
        let queues = self.queues.list(&c.tenant()?).await?;
        Ok((
            StatusCode::OK,
            to_value(QueueList {
                queues: queues.into_iter().map(queue_answer).collect(),
            }),
        ))
    }

    pub(super) async fn create_queue(&self, c: Call<'_>) -> Reply {
        let req: CreateQueue = parse_json(c.body)?;
        let tenant = c.tenant()?;
        let settings = QueueSettings {
            visibility_timeout: req.visibility_timeout,
            max_attempts: req.max_attempts,
            retention: req.retention,
            dead_letter: req.dead_letter,
            fifo: req.fifo,
        };
        self.queues
            .create(c.actor, &tenant, &req.name, &settings)
            .await?;
        let stats = self.queues.stats(&tenant, &req.name).await?;
        Ok((StatusCode::CREATED, to_value(queue_answer(stats))))
    }

    pub(super) async fn queue_stats(&self, c: Call<'_>) -> Reply {
        let stats = self.queues.stats(&c.tenant()?, c.param("queue")?).await?;
        Ok((StatusCode::OK, to_value(queue_answer(stats))))
    }

    pub(super) async fn delete_queue(&self, c: Call<'_>) -> Reply {
        let queue = c.param("queue")?;
        let messages = self.queues.delete(c.actor, &c.tenant()?, queue).await?;
        Ok((
            StatusCode::OK,
            to_value(QueueChanged {
                queue: queue.to_owned(),
                messages,
            }),
        ))
    }

    pub(super) async fn publish_messages(&self, c: Call<'_>) -> Reply {
        let req: PublishMessages = parse_json(c.body)?;
        let queue = c.param("queue")?;
        let mut messages =
            Vec::with_capacity(req.messages.len().min(zerofn_events::MAX_PUBLISH_BATCH));
        for (i, m) in req.messages.into_iter().enumerate() {
            let data = base64::engine::general_purpose::STANDARD
                .decode(m.data.as_bytes())
                .map_err(|e| {
                    ControlError::InvalidRequest(format!(
                        "message {i}: `data` is not valid base64: {e}"
                    ))
                })?;
            // A message's own trace context (CloudEvents attributes) wins;
            // else the request's `traceparent` header, the publisher's span.
            let (traceparent, tracestate) = match m.traceparent {
                Some(tp) => (Some(tp), m.tracestate),
                None => (
                    c.traceparent.map(str::to_owned),
                    c.tracestate.map(str::to_owned),
                ),
            };
            messages.push(OutgoingMessage {
                id: m.id,
                event_type: m.event_type,
                content_type: m.content_type,
                group: m.group,
                data,
                traceparent,
                tracestate,
            });
        }
        let published = self
            .queues
            .publish(c.actor, &c.tenant()?, queue, messages)
            .await?;
        Ok((
            StatusCode::OK,
            to_value(PublishedMessages {
                queue: queue.to_owned(),
                published: published
                    .into_iter()
                    .map(|p| PublishedMessage {
                        id: p.id,
                        duplicate: p.duplicate,
                    })
                    .collect(),
            }),
        ))
    }

    pub(super) async fn peek_messages(&self, c: Call<'_>) -> Reply {
        let limit = peek_limit(c.query)?;
        let queue = c.param("queue")?;
        let rows = self.queues.peek(&c.tenant()?, queue, limit).await?;
        Ok((
            StatusCode::OK,
            to_value(QueuedMessages {
                queue: queue.to_owned(),
                messages: rows.into_iter().map(queued).collect(),
            }),
        ))
    }

    pub(super) async fn redrive_queue(&self, c: Call<'_>) -> Reply {
        let queue = c.param("queue")?;
        let messages = self.queues.redrive(c.actor, &c.tenant()?, queue).await?;
        Ok((
            StatusCode::OK,
            to_value(QueueChanged {
                queue: queue.to_owned(),
                messages,
            }),
        ))
    }

    pub(super) async fn purge_queue(&self, c: Call<'_>) -> Reply {
        let queue = c.param("queue")?;
        let messages = self.queues.purge(c.actor, &c.tenant()?, queue).await?;
        Ok((
            StatusCode::OK,
            to_value(QueueChanged {
                queue: queue.to_owned(),
                messages,
            }),
        ))
    }
}
