//! `zerofn queue`: a tenant's durable queues (create, list, stats, publish,
//! peek, redrive, purge, delete) over the control API; `zerofn schedule list`:
//! the schedules of its functions.

use std::path::Path;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use clap::Subcommand;
use http::Method;

use crate::client::ApiClient;

#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// The schedules of a tenant's functions (`[[triggers]] schedule`): expression, time
    /// zone, last and next run, fire times skipped while a run was still going.
    List {
        tenant: String,
        #[arg(long)]
        json: bool,
    },
}

/// `zerofn schedule ...`.
pub async fn schedules(data_dir: &Path, cmd: ScheduleCommand) -> Result<()> {
    let api = ApiClient::discover(data_dir)?;
    match cmd {
        ScheduleCommand::List { tenant, json } => {
            let list: zerofn_api::ScheduleList = api
                .fetch(
                    Method::GET,
                    &format!("/v1/tenants/{}/schedules", seg(&tenant)),
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string(&list.schedules)?);
                return Ok(());
            }
            if list.schedules.is_empty() {
                println!("no schedules in tenant {tenant}");
            }
            for s in &list.schedules {
                println!(
                    "{}/{} `{}` {} missed={} last={} next={} skipped={}{}",
                    s.function,
                    s.name,
                    s.schedule,
                    s.timezone,
                    s.missed,
                    s.last_run.as_deref().unwrap_or("never"),
                    s.next_run.as_deref().unwrap_or("never"),
                    s.skipped,
                    if s.running { " (running)" } else { "" }
                );
            }
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum QueueCommand {
    /// Create a durable queue. Functions bind to it with `[[triggers]] queue = "NAME"`.
    Create {
        tenant: String,
        name: String,
        /// How long a delivery may take before the message is offered again (1s to 12h).
        #[arg(long, default_value = "30s")]
        visibility_timeout: String,
        /// Deliveries before the message moves to the dead-letter queue (1 to 100).
        #[arg(long, default_value_t = 5)]
        max_attempts: u32,
        /// How long an undelivered message is kept (1m to 14d).
        #[arg(long, default_value = "4d")]
        retention: String,
        /// The queue failed messages move to (create it first).
        #[arg(long, value_name = "NAME")]
        dead_letter: Option<String>,
        /// Deliver in order within each message group, one at a time per group.
        #[arg(long)]
        fifo: bool,
        #[arg(long)]
        json: bool,
    },
    /// List a tenant's queues with their counts.
    List {
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// A queue's settings and counts (visible, in flight, oldest message's age).
    Stats {
        tenant: String,
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Publish one message; it is durable when this returns.
    Publish {
        tenant: String,
        name: String,
        /// The message data: TEXT, or @FILE for a file's bytes.
        #[arg(long, allow_hyphen_values = true)]
        data: String,
        /// The CloudEvents `type` (default dev.zerofn.queue.message).
        #[arg(long = "type", value_name = "TYPE")]
        event_type: Option<String>,
        /// The CloudEvents `id` (default a UUID); a queue keeps one message per id.
        #[arg(long)]
        id: Option<String>,
        /// The message group (FIFO queues only, required there).
        #[arg(long)]
        group: Option<String>,
        /// The data's content type (default text/plain; charset=utf-8 for TEXT,
        /// application/octet-stream for @FILE).
        #[arg(long)]
        content_type: Option<String>,
        /// The producer's W3C trace context (CloudEvents distributed-tracing
        /// extension): the delivery continues this trace. An invalid value is
        /// ignored (the delivery starts a new trace).
        #[arg(long, value_name = "TRACEPARENT")]
        traceparent: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show a queue's oldest messages without changing anything.
    Peek {
        tenant: String,
        name: String,
        #[arg(long, default_value_t = 10)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Move every message of dead-letter queue DLQ back to the queue it came from.
    Redrive { tenant: String, dlq: String },
    /// Delete every message of a queue.
    Purge { tenant: String, name: String },
    /// Delete a queue and its messages.
    Delete { tenant: String, name: String },
}

fn seg(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn queue_path(tenant: &str, name: &str) -> String {
    format!("/v1/tenants/{}/queues/{}", seg(tenant), seg(name))
}

fn print_queue(q: &zerofn_api::Queue) {
    println!(
        "{}\t{}\tvisible {}\tin flight {}\toldest {} ms\tvisibility {} ms\tattempts {}\tretention {} ms\tdead-letter {}",
        q.name,
        if q.fifo { "fifo" } else { "standard" },
        q.visible,
        q.in_flight,
        q.oldest_age_ms,
        q.visibility_timeout_ms,
        q.max_attempts,
        q.retention_ms,
        q.dead_letter.as_deref().unwrap_or("-"),
    );
}

pub async fn run(data_dir: &Path, cmd: QueueCommand) -> Result<()> {
    let api = ApiClient::discover(data_dir)?;
    match cmd {
        QueueCommand::Create {
            tenant,
            name,
            visibility_timeout,
            max_attempts,
            retention,
            dead_letter,
            fifo,
            json,
        } => {
            let body = zerofn_api::CreateQueue {
                name,
                visibility_timeout: Some(visibility_timeout),
                max_attempts: Some(max_attempts),
                retention: Some(retention),
                dead_letter,
                fifo,
            };
            let q: zerofn_api::Queue = api
                .send(
                    Method::POST,
                    &format!("/v1/tenants/{}/queues", seg(&tenant)),
                    &body,
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string(&q)?);
            } else {
                println!("created queue {} of {}", q.name, q.tenant);
            }
        }
        QueueCommand::List { tenant, json } => {
            let list: zerofn_api::QueueList = api
                .fetch(Method::GET, &format!("/v1/tenants/{}/queues", seg(&tenant)))
                .await?;
            if json {
                println!("{}", serde_json::to_string(&list.queues)?);
            } else {
                for q in &list.queues {
                    print_queue(q);
                }
            }
        }
        QueueCommand::Stats { tenant, name, json } => {
            let q: zerofn_api::Queue = api.fetch(Method::GET, &queue_path(&tenant, &name)).await?;
            if json {
                println!("{}", serde_json::to_string(&q)?);
            } else {
                print_queue(&q);
            }
        }
        QueueCommand::Publish {
            tenant,
            name,
            data,
            event_type,
            id,
            group,
            content_type,
            traceparent,
            json,
        } => {
            let (bytes, default_type) = match data.strip_prefix('@') {
                Some(file) => (
                    std::fs::read(file).with_context(|| format!("cannot read {file}"))?,
                    "application/octet-stream",
                ),
                None => (data.into_bytes(), "text/plain; charset=utf-8"),
            };
            let body = zerofn_api::PublishMessages {
                messages: vec![zerofn_api::OutgoingMessage {
                    data: base64::engine::general_purpose::STANDARD.encode(&bytes),
                    id,
                    event_type,
                    content_type: Some(content_type.unwrap_or_else(|| default_type.to_owned())),
                    group,
                    traceparent,
                    tracestate: None,
                }],
            };
            let answer: zerofn_api::PublishedMessages = api
                .send(
                    Method::POST,
                    &format!("{}/messages", queue_path(&tenant, &name)),
                    &body,
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string(&answer)?);
            } else {
                for p in &answer.published {
                    if p.duplicate {
                        println!("{} already in {} (not added again)", p.id, answer.queue);
                    } else {
                        println!("published {} to {}", p.id, answer.queue);
                    }
                }
            }
        }
        QueueCommand::Peek {
            tenant,
            name,
            limit,
            json,
        } => {
            if limit == 0 || limit > 100 {
                bail!("`--limit` must be from 1 to 100");
            }
            let page: zerofn_api::QueuedMessages = api
                .fetch(
                    Method::GET,
                    &format!("{}/messages?limit={limit}", queue_path(&tenant, &name)),
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string(&page.messages)?);
            } else {
                println!("ID\tTYPE\tGROUP\tATTEMPTS\tBYTES\tLAST ERROR");
                for m in &page.messages {
                    let size = base64::engine::general_purpose::STANDARD
                        .decode(m.data.as_bytes())
                        .map_or(0, |d| d.len());
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        zerofn_types::printable(&m.id),
                        zerofn_types::printable(&m.event_type),
                        m.group
                            .as_deref()
                            .map_or("-".into(), zerofn_types::printable),
                        m.attempts,
                        size,
                        m.last_error
                            .as_deref()
                            .map_or("-".into(), zerofn_types::printable),
                    );
                }
            }
        }
        QueueCommand::Redrive { tenant, dlq } => {
            let c: zerofn_api::QueueChanged = api
                .call(
                    Method::POST,
                    &format!("{}/redrive", queue_path(&tenant, &dlq)),
                    None,
                )
                .await
                .and_then(|v| crate::client::typed("redrive", v))?;
            println!("redrove {} messages from {}", c.messages, c.queue);
        }
        QueueCommand::Purge { tenant, name } => {
            let c: zerofn_api::QueueChanged = api
                .call(
                    Method::POST,
                    &format!("{}/purge", queue_path(&tenant, &name)),
                    None,
                )
                .await
                .and_then(|v| crate::client::typed("purge", v))?;
            println!("purged {} messages from {}", c.messages, c.queue);
        }
        QueueCommand::Delete { tenant, name } => {
            let c: zerofn_api::QueueChanged = api
                .fetch(Method::DELETE, &queue_path(&tenant, &name))
                .await?;
            println!("deleted queue {} and its {} messages", c.queue, c.messages);
        }
    }
    Ok(())
}
