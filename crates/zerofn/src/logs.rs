//! `zerofn logs TENANT [NAME]`: what a tenant's functions wrote to stdout and stderr and
//! logged through `wasi:logging`, from the control API (`GET /v1/tenants/{tenant}/logs`), and `--follow` to keep printing new
//! lines until Ctrl-C.
//!
//! Guest text is printed through `zerofn_types::printable`: control, zero-width and
//! bidirectional-override characters are escaped, so a guest cannot drive the terminal.
//! `--json` prints each line as the API answered it (JSON escapes it).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use http::Method;
use zerofn_api as api_types;
use zerofn_types::{printable, InvocationId};

use crate::client::{self, ApiClient};

/// How often `--follow` asks for new lines.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);
/// Lines per request (the API's largest page).
const PAGE: u32 = 10_000;
/// Lines printed before following when neither --since nor --invocation says where to start.
const TAIL: u32 = 1000;

#[derive(Args)]
pub struct LogsArgs {
    /// The tenant whose functions' output to read.
    tenant: String,
    /// Only this function's output (default: every function of the tenant).
    name: Option<String>,
    /// After printing, keep printing new lines as they arrive, until Ctrl-C.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Only lines captured since then: a duration back from now (90s, 30m, 1h, 7d) or an
    /// RFC 3339 time. Without it (and without --invocation), the newest 1000 lines.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Only lines containing TEXT (exact, case-sensitive); a wasi:logging record matches
    /// on its message or its context.
    #[arg(long, value_name = "TEXT")]
    grep: Option<String>,
    /// Only the lines of one invocation (the gateway's `x-zerofn-invocation-id`).
    #[arg(long, value_name = "ID")]
    invocation: Option<InvocationId>,
    /// One JSON object a line: {"id", "tenant", "function", "invocation_id", "time",
    /// "stream", "line", "level", "context"}, the text unescaped (level and context are
    /// null except for stream "log").
    #[arg(long)]
    json: bool,
}

fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl LogsArgs {
    /// The request path for lines after `after` (or the newest `limit` without it).
    fn path(&self, after: Option<i64>, limit: u32) -> String {
        let mut query = vec![format!("limit={limit}")];
        if let Some(name) = &self.name {
            query.push(format!("function={}", encode(name)));
        }
        if let Some(id) = &self.invocation {
            query.push(format!("invocation={}", encode(id.as_str())));
        }
        if let Some(since) = &self.since {
            query.push(format!("since={}", encode(since)));
        }
        if let Some(grep) = &self.grep {
            query.push(format!("grep={}", encode(grep)));
        }
        if let Some(after) = after {
            query.push(format!("after={after}"));
        }
        format!(
            "/v1/tenants/{}/logs?{}",
            encode(&self.tenant),
            query.join("&")
        )
    }

    fn print(&self, page: &api_types::LogPage) -> Result<()> {
        for l in &page.lines {
            if self.json {
                println!("{}", serde_json::to_string(l)?);
            } else {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    printable(&l.time),
                    printable(&l.function),
                    printable(&l.invocation_id),
                    printable(&l.stream),
                    text(l)
                );
            }
        }
        Ok(())
    }
}

/// A line's text for a terminal, escaped: a `wasi:logging` record as
/// `LEVEL [CONTEXT] MESSAGE` (`LEVEL MESSAGE` without a context).
pub(crate) fn text(l: &api_types::LogLine) -> String {
    match (&l.level, &l.context) {
        (Some(level), Some(context)) if !context.is_empty() => format!(
            "{} [{}] {}",
            printable(level),
            printable(context),
            printable(&l.line)
        ),
        (Some(level), _) => format!("{} {}", printable(level), printable(&l.line)),
        _ => printable(&l.line),
    }
}

async fn read(api: &ApiClient, path: &str) -> Result<api_types::LogPage> {
    let value = api.call(Method::GET, path, None).await?;
    client::typed(path, value)
}

/// Print the lines `args` asks for, then follow if asked; returns at the end, or at Ctrl-C.
pub async fn run(data_dir: &Path, args: LogsArgs) -> Result<()> {
    let api = ApiClient::discover(data_dir)?;
    // Where to start: every matching line from the beginning when a window or an
    // invocation bounds them, else the newest lines.
    let mut cursor = if args.since.is_some() || args.invocation.is_some() {
        let mut after = 0;
        loop {
            let page = read(&api, &args.path(Some(after), PAGE)).await?;
            args.print(&page)?;
            let full = page.lines.len() >= PAGE as usize;
            after = page.next;
            if !full {
                break after;
            }
        }
    } else {
        let page = read(&api, &args.path(None, TAIL)).await?;
        args.print(&page)?;
        page.next
    };
    if !args.follow {
        return Ok(());
    }
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        // Ctrl-C ends the wait or the request in flight: nothing half-printed is lost,
        // a page is printed whole or not at all.
        let path = args.path(Some(cursor), PAGE);
        let page = tokio::select! {
            signal = &mut stop => {
                signal.context("waiting for Ctrl-C")?;
                return Ok(());
            }
            page = read(&api, &path) => page?,
        };
        args.print(&page)?;
        let full = page.lines.len() >= PAGE as usize;
        cursor = page.next;
        if !full {
            tokio::select! {
                signal = &mut stop => {
                    signal.context("waiting for Ctrl-C")?;
                    return Ok(());
                }
                () = tokio::time::sleep(FOLLOW_INTERVAL) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(
        stream: &str,
        level: Option<&str>,
        context: Option<&str>,
        text: &str,
    ) -> api_types::LogLine {
        api_types::LogLine {
            stream: stream.into(),
            level: level.map(str::to_owned),
            context: context.map(str::to_owned),
            line: text.into(),
            ..api_types::LogLine::default()
        }
    }

    /// A record's level, context and message are each escaped: a guest cannot reach the
    /// terminal through any of them, nor end the row early with a tab or newline.
    #[test]
    fn log_records_print_level_context_and_message_escaped() {
        for (l, shown) in [
            (line("stdout", None, None, "plain\ttext"), "plain\\ttext"),
            (
                line("log", Some("warn"), Some("db"), "slow\nquery"),
                "warn [db] slow\\nquery",
            ),
            (
                line("log", Some("info"), Some(""), "no context"),
                "info no context",
            ),
            (
                line("log", Some("error"), Some("a\u{202e}b\u{1b}[2J"), "m"),
                "error [a\\u{202e}b\\u{1b}[2J] m",
            ),
        ] {
            assert_eq!(text(&l), shown, "{l:?}");
        }
    }
}
