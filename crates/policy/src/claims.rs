//! A JWT's verified claims as the Cedar record `context.claims` of an invoke decision.
//!
//! The well-known claims `iss`, `sub`, `aud` (a set) and `scope` (a string) are always
//! present, empty for callers without a token, so a policy can say
//! `context.claims.scope like "*orders:write*"` without `has` and a forbid on them never
//! errs for another kind of caller. Every other claim is converted as it is, within bounds
//! (depth, members, string length) so that no token makes a decision hold or evaluate more
//! than a few kilobytes: what is beyond them is left out, never an error (the claims
//! verified; only their policy view is bounded). Floats become strings (Cedar has no
//! floats) and `null` is left out.
//!
//! # Trust
//! Trusts the claims to have been verified by `zerofn-authn`; bounds them all the same.

use cedar_policy::RestrictedExpression;
use serde_json::{Map, Value};

/// Deepest nesting of records and sets below `context.claims`.
pub const MAX_DEPTH: usize = 4;
/// Most members of one record, and elements of one set.
pub const MAX_MEMBERS: usize = 64;
/// Longest string kept, in bytes; a longer one is left out.
pub const MAX_STRING: usize = 4096;

const WELL_KNOWN: [&str; 4] = ["iss", "sub", "aud", "scope"];

fn string(v: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(v.to_owned())
}

/// `context.claims` of a caller without a token.
pub(crate) fn empty() -> RestrictedExpression {
    thread_local! {
        static EMPTY: RestrictedExpression = well_known("", "", Vec::new(), String::new());
    }
    EMPTY.with(Clone::clone)
}

fn well_known(iss: &str, sub: &str, aud: Vec<String>, scope: String) -> RestrictedExpression {
    record_of(vec![
        ("iss".to_owned(), string(iss)),
        ("sub".to_owned(), string(sub)),
        (
            "aud".to_owned(),
            RestrictedExpression::new_set(aud.into_iter().map(RestrictedExpression::new_string)),
        ),
        ("scope".to_owned(), RestrictedExpression::new_string(scope)),
    ])
}

fn record_of(pairs: Vec<(String, RestrictedExpression)>) -> RestrictedExpression {
    // Keys are unique by construction; should Cedar refuse anyway, the record is empty
    // rather than absent (a policy on it then finds nothing, and is not skipped).
    RestrictedExpression::new_record(pairs)
        .unwrap_or_else(|_| RestrictedExpression::new_set(std::iter::empty()))
}

fn text<'a>(claims: &'a Map<String, Value>, key: &str) -> &'a str {
    match claims.get(key) {
        Some(Value::String(s)) if s.len() <= MAX_STRING => s,
        _ => "",
    }
}

/// Joins an array of strings with spaces (`scp` and some `scope`s are arrays).
fn words(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) if s.len() <= MAX_STRING => Some(s.clone()),
        Some(Value::Array(a)) => {
            let out = a
                .iter()
                .filter_map(Value::as_str)
                .take(MAX_MEMBERS)
                .collect::<Vec<_>>()
                .join(" ");
            (out.len() <= MAX_STRING).then_some(out)
        }
        _ => None,
    }
}

/// `context.claims` of a JWT caller.
pub(crate) fn record(claims: &Map<String, Value>) -> RestrictedExpression {
    let aud = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .filter(|a| a.len() <= MAX_STRING)
            .take(MAX_MEMBERS)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    let scope = words(claims.get("scope"))
        .or_else(|| words(claims.get("scp")))
        .unwrap_or_default();
    let mut pairs = vec![
        ("iss".to_owned(), string(text(claims, "iss"))),
        ("sub".to_owned(), string(text(claims, "sub"))),
        (
            "aud".to_owned(),
            RestrictedExpression::new_set(aud.into_iter().map(RestrictedExpression::new_string)),
        ),
        ("scope".to_owned(), RestrictedExpression::new_string(scope)),
    ];
    for (k, v) in claims {
        if pairs.len() >= MAX_MEMBERS {
            break;
        }
        if WELL_KNOWN.contains(&k.as_str()) || k.len() > 256 {
            continue;
        }
        if let Some(e) = value(v, 1) {
            pairs.push((k.clone(), e));
        }
    }
    record_of(pairs)
}

fn value(v: &Value, depth: usize) -> Option<RestrictedExpression> {
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(RestrictedExpression::new_bool(*b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => RestrictedExpression::new_long(i),
            None => RestrictedExpression::new_string(n.to_string()),
        }),
        Value::String(s) => (s.len() <= MAX_STRING).then(|| string(s)),
        Value::Array(a) if depth < MAX_DEPTH => Some(RestrictedExpression::new_set(
            a.iter()
                .take(MAX_MEMBERS)
                .filter_map(|v| value(v, depth + 1))
                .collect::<Vec<_>>(),
        )),
        Value::Object(m) if depth < MAX_DEPTH => Some(record_of(
            m.iter()
                .filter(|(k, _)| k.len() <= 256)
                .take(MAX_MEMBERS)
                .filter_map(|(k, v)| value(v, depth + 1).map(|e| (k.clone(), e)))
                .collect(),
        )),
        Value::Array(_) | Value::Object(_) => None,
    }
}
