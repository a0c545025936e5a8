//! The query strings of the two read-only query routes: `GET /v1/audit/query` (records
//! across functions) and `GET /v1/tenants/{tenant}/logs` (functions' output), parsed into
//! the store's queries.
//!
//! # Trust
//! Trusts nothing in the query string. Every parameter is percent-decoded once, named in
//! the route's list (an unknown or repeated one is refused), and parsed into its type: a
//! decision or action must be one the log records, a status an HTTP status, a time a
//! duration (`90s`, `30m`, `24h`, `7d`, back from now) or an RFC 3339 time, a limit or
//! cursor a number in range. A refusal is a [`QueryError`] (400, audited) that names the
//! parameter and quotes the value escaped ([`zerofn_types::excerpt`]); nothing is read
//! before the whole query parsed. Text filters (tenant, function, caller, grep) are only
//! ever compared with stored text through bound SQL parameters.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use zerofn_audit::{Action, AuditQuery, Outcome};
use zerofn_store::{log_timestamp, LogQuery};
use zerofn_types::{excerpt, FunctionName, InvocationId, InvocationIdError, NameError};

use super::routes::decode_query_value;
use crate::control::ControlError;

/// Records per audit page when the query does not say.
pub(crate) const AUDIT_DEFAULT_LIMIT: u32 = 100;
/// Most records per audit page.
pub(crate) const AUDIT_MAX_LIMIT: u32 = 1000;
/// Lines per log page when the query does not say.
pub(crate) const LOG_DEFAULT_LIMIT: u32 = 1000;
/// Most lines per log page.
pub(crate) const LOG_MAX_LIMIT: u32 = 10_000;
/// Longest text filter accepted (tenant, function, caller, grep), in bytes.
const MAX_FILTER_TEXT: usize = 1024;

/// Why a query string was refused.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("unknown query parameter `{name}`; use {allowed}")]
    Unknown { name: String, allowed: &'static str },
    #[error("query parameter `{0}` is given more than once")]
    Repeated(&'static str),
    #[error("query parameter `{0}` is empty")]
    Empty(&'static str),
    #[error("query parameter `{name}` is longer than {max} bytes", max = MAX_FILTER_TEXT)]
    TooLong { name: &'static str },
    #[error("`{0}` is not a decision; use allow, deny or error")]
    Decision(String),
    #[error("`{0}` is not an audit action; use one of {actions}", actions = action_names())]
    Action(String),
    #[error("`status` must be an HTTP status from 100 to 599, not `{0}`")]
    Status(String),
    #[error("`{name}` `{value}` is neither a duration such as 90s, 30m, 24h or 7d nor an RFC 3339 time such as 2026-12-04T10:00:00Z")]
    Time { name: &'static str, value: String },
    #[error("`since` ({since}) is after `until` ({until}); nothing can match")]
    Window { since: String, until: String },
    #[error("`limit` must be a number from 1 to {max}, not `{value}`")]
    Limit { value: String, max: u32 },
    #[error("`{name}` must be a record or line number (a non-negative integer), not `{value}`")]
    Cursor { name: &'static str, value: String },
    #[error("`invocation`: {0}")]
    Invocation(#[from] InvocationIdError),
    #[error("`function`: {0}")]
    Function(#[from] NameError),
}

impl From<QueryError> for ControlError {
    /// A refused query is a request that does not parse: a 400, audited like one.
    fn from(e: QueryError) -> ControlError {
        ControlError::InvalidRequest(e.to_string())
    }
}

fn action_names() -> String {
    Action::ALL
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The query's `name=value` pairs, decoded, each name from `allowed` and at most once.
fn pairs(
    query: Option<&str>,
    allowed: &'static [&'static str],
    allowed_text: &'static str,
) -> Result<Vec<(&'static str, String)>, ControlError> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode_query_value(k)?;
        let Some(&name) = allowed.iter().find(|a| **a == key) else {
            return Err(QueryError::Unknown {
                name: excerpt(&key),
                allowed: allowed_text,
            }
            .into());
        };
        if out.iter().any(|(n, _)| *n == name) {
            return Err(QueryError::Repeated(name).into());
        }
        let value = decode_query_value(v)?;
        if value.is_empty() {
            return Err(QueryError::Empty(name).into());
        }
        if value.len() > MAX_FILTER_TEXT {
            return Err(QueryError::TooLong { name }.into());
        }
        out.push((name, value));
    }
    Ok(out)
}

/// `since`/`until` (and `before`): a duration back from `now`, or an RFC 3339 time.
pub(crate) fn instant(
    name: &'static str,
    value: &str,
    now: OffsetDateTime,
) -> Result<OffsetDateTime, QueryError> {
    let bad = || QueryError::Time {
        name,
        value: excerpt(value),
    };
    if value.starts_with(|c: char| c.is_ascii_digit()) && !value.contains(['-', ':']) {
        let secs = crate::analyzer::parse_duration(value).map_err(|_| bad())?;
        let back = time::Duration::seconds(i64::try_from(secs).map_err(|_| bad())?);
        return now.checked_sub(back).ok_or_else(bad);
    }
    OffsetDateTime::parse(value, &Rfc3339).map_err(|_| bad())
}

fn limit(value: &str, max: u32) -> Result<u32, QueryError> {
    match value.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(QueryError::Limit {
            value: excerpt(value),
            max,
        }),
    }
}

fn cursor(name: &'static str, value: &str) -> Result<i64, QueryError> {
    value
        .parse::<u64>()
        .ok()
        .and_then(|n| i64::try_from(n).ok())
        .ok_or_else(|| QueryError::Cursor {
            name,
            value: excerpt(value),
        })
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// `GET /v1/audit/query?tenant=&function=&caller=&action=&decision=&status=&since=&until=
/// &before=&limit=`.
pub(crate) fn audit_query(
    query: Option<&str>,
    now: OffsetDateTime,
) -> Result<AuditQuery, ControlError> {
    const ALLOWED: &[&str] = &[
        "tenant", "function", "caller", "action", "decision", "status", "since", "until", "before",
        "limit",
    ];
    const ALLOWED_TEXT: &str =
        "tenant, function, caller, action, decision, status, since, until, before and limit";
    let mut q = AuditQuery {
        limit: AUDIT_DEFAULT_LIMIT,
        ..AuditQuery::default()
    };
    for (name, value) in pairs(query, ALLOWED, ALLOWED_TEXT)? {
        match name {
            "tenant" => q.tenant = Some(value),
            "function" => q.function = Some(value),
            "caller" => q.caller = Some(value),
            "action" => {
                let action = Action::parse(&value).ok_or(QueryError::Action(excerpt(&value)))?;
                q.action = Some(action.as_str().to_owned());
            }
            "decision" => {
                let outcome =
                    Outcome::parse(&value).ok_or(QueryError::Decision(excerpt(&value)))?;
                q.decision = Some(outcome.as_str().to_owned());
            }
            "status" => match value.parse::<u16>() {
                Ok(s) if (100..=599).contains(&s) => q.status = Some(i64::from(s)),
                _ => return Err(QueryError::Status(excerpt(&value)).into()),
            },
            "since" => q.since = Some(instant("since", &value, now)?),
            "until" => q.until = Some(instant("until", &value, now)?),
            "before" => q.before = Some(cursor("before", &value)?),
            "limit" => q.limit = limit(&value, AUDIT_MAX_LIMIT)?,
            _ => {}
        }
    }
    if let (Some(since), Some(until)) = (q.since, q.until) {
        if since > until {
            return Err(QueryError::Window {
                since: rfc3339(since),
                until: rfc3339(until),
            }
            .into());
        }
    }
    Ok(q)
}

/// `GET /v1/tenants/{tenant}/logs?function=&invocation=&since=&grep=&after=&limit=`.
pub(crate) fn log_query(
    tenant: &str,
    query: Option<&str>,
    now: OffsetDateTime,
) -> Result<LogQuery, ControlError> {
    const ALLOWED: &[&str] = &["function", "invocation", "since", "grep", "after", "limit"];
    const ALLOWED_TEXT: &str = "function, invocation, since, grep, after and limit";
    let mut q = LogQuery {
        tenant: tenant.to_owned(),
        limit: LOG_DEFAULT_LIMIT,
        ..LogQuery::default()
    };
    for (name, value) in pairs(query, ALLOWED, ALLOWED_TEXT)? {
        match name {
            "function" => {
                let name = FunctionName::parse(&value).map_err(QueryError::from)?;
                q.function = Some(name.as_str().to_owned());
            }
            "invocation" => {
                let id = InvocationId::parse(&value).map_err(QueryError::from)?;
                q.invocation_id = Some(id.as_str().to_owned());
            }
            "since" => q.since = Some(log_timestamp(instant("since", &value, now)?)),
            "grep" => q.grep = Some(value),
            "after" => q.after = Some(cursor("after", &value)?),
            "limit" => q.limit = limit(&value, LOG_MAX_LIMIT)?,
            _ => {}
        }
    }
    Ok(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse("2026-12-04T12:00:00Z", &Rfc3339).unwrap()
    }

    fn refused(result: Result<impl std::fmt::Debug, ControlError>) -> String {
        let e = result.unwrap_err();
        assert_eq!(e.kind(), "bad_request", "{e}");
        e.to_string()
    }

    #[test]
    fn an_audit_query_parses_into_its_filters() {
        let q = audit_query(
            Some("tenant=acme&function=hello&caller=spiffe%3A%2F%2Fz%2Ffn&action=invoke&decision=deny&status=403&since=1h&until=2026-12-04T11:30:00Z&before=77&limit=5"),
            now(),
        )
        .unwrap();
        assert_eq!(q.tenant.as_deref(), Some("acme"));
        assert_eq!(q.function.as_deref(), Some("hello"));
        assert_eq!(q.caller.as_deref(), Some("spiffe://z/fn"));
        assert_eq!(q.action.as_deref(), Some("invoke"));
        assert_eq!(q.decision.as_deref(), Some("deny"));
        assert_eq!(q.status, Some(403));
        assert_eq!(q.since, Some(now() - time::Duration::hours(1)));
        assert_eq!(rfc3339(q.until.unwrap()), "2026-12-04T11:30:00Z");
        assert_eq!(q.before, Some(77));
        assert_eq!(q.limit, 5);
        let none = audit_query(None, now()).unwrap();
        assert_eq!(none.limit, AUDIT_DEFAULT_LIMIT);
        assert_eq!(none.decision, None);
    }

    #[test]
    fn every_bad_audit_parameter_is_refused_naming_the_problem() {
        for (query, problem) in [
            (
                "decision=maybe",
                "`maybe` is not a decision; use allow, deny or error",
            ),
            ("decision=ALLOW", "`ALLOW` is not a decision"),
            (
                "action=invoked",
                "`invoked` is not an audit action; use one of deploy",
            ),
            (
                "status=99",
                "`status` must be an HTTP status from 100 to 599, not `99`",
            ),
            ("status=abc", "not `abc`"),
            (
                "since=yesterday",
                "`since` `yesterday` is neither a duration",
            ),
            (
                "until=2026-13-01T00:00:00Z",
                "`until` `2026-13-01T00:00:00Z` is neither",
            ),
            ("since=7w", "`since` `7w`"),
            (
                "since=1h&until=2h",
                "`since` (2026-12-04T11:00:00Z) is after `until`",
            ),
            (
                "limit=0",
                "`limit` must be a number from 1 to 1000, not `0`",
            ),
            ("limit=1001", "not `1001`"),
            ("limit=-1", "not `-1`"),
            ("before=-3", "`before` must be a record or line number"),
            ("tenant=a&tenant=b", "`tenant` is given more than once"),
            ("tenant=", "query parameter `tenant` is empty"),
            (
                "colour=red",
                "unknown query parameter `colour`; use tenant, function",
            ),
            ("decision=%1b%5b2J", "`\\u{1b}[2J` is not a decision"),
        ] {
            let message = refused(audit_query(Some(query), now()));
            assert!(message.contains(problem), "{query}: {message}");
            assert!(!message.contains('\u{1b}'), "{query}: unescaped: {message}");
        }
        let long = format!("caller={}", "x".repeat(MAX_FILTER_TEXT + 1));
        assert!(refused(audit_query(Some(&long), now())).contains("longer than 1024 bytes"));
    }

    #[test]
    fn a_log_query_parses_and_refuses_bad_input() {
        let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        let q = log_query(
            "acme",
            Some(&format!(
                "function=hello&invocation={id}&since=30m&grep=a%20b&after=9&limit=50"
            )),
            now(),
        )
        .unwrap();
        assert_eq!(q.tenant, "acme");
        assert_eq!(q.function.as_deref(), Some("hello"));
        assert_eq!(q.invocation_id.as_deref(), Some(id));
        assert_eq!(q.since.as_deref(), Some("2026-12-04T11:30:00.000000Z"));
        assert_eq!(q.grep.as_deref(), Some("a b"));
        assert_eq!(q.after, Some(9));
        assert_eq!(q.limit, 50);
        let tail = log_query("acme", None, now()).unwrap();
        assert_eq!((tail.after, tail.limit), (None, LOG_DEFAULT_LIMIT));
        for (query, problem) in [
            (
                "invocation=nope",
                "`invocation`: `nope` is not an invocation id",
            ),
            (
                "function=Bad_Name",
                "`function`: function name `Bad_Name` is invalid",
            ),
            ("since=soon", "`since` `soon` is neither"),
            ("after=x", "`after` must be a record or line number"),
            ("limit=10001", "from 1 to 10000"),
            (
                "decision=deny",
                "unknown query parameter `decision`; use function, invocation",
            ),
            ("grep=", "query parameter `grep` is empty"),
        ] {
            let message = refused(log_query("acme", Some(query), now()));
            assert!(message.contains(problem), "{query}: {message}");
        }
    }
}
