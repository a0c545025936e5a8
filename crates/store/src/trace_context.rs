//! The W3C trace context stored with a change (an object event, a key-value
//! change) so that its delivery continues the trace of the request whose
//! write caused it.
//!
//! # Trust
//! Callers parse a context strictly before it gets here (the `telemetry`
//! crate's reader, which this crate may not depend on); this module only
//! bounds what the database holds: a version-00 `traceparent` of exactly
//! 55 characters (W3C Trace Context §3.2.2: lowercase hex, `-` separators,
//! trace id and parent id not all zeros) and a `tracestate` of printable
//! ASCII up to [`MAX_STORED_TRACESTATE`] characters. Anything else is not
//! stored: the change is kept, its delivery starts a new trace. Rows read
//! back are checked again, so a value changed on disk is dropped the same
//! way rather than sent on as a header.

/// Longest `tracestate` stored (the W3C limit the platform passes on,
/// §3.3.1.5: 512 characters).
pub const MAX_STORED_TRACESTATE: usize = 512;

/// Length of a version-00 `traceparent`.
const TRACEPARENT_LEN: usize = 55;

/// A checked trace context: a version-00 `traceparent` and, when it was
/// well formed, its `tracestate`. Built only by [`TraceContext::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    traceparent: String,
    tracestate: Option<String>,
}

impl TraceContext {
    /// The context, if `traceparent` is a version-00 value (its sampled
    /// flag kept as given); `tracestate` is kept only when printable ASCII
    /// of at most [`MAX_STORED_TRACESTATE`] characters, else dropped.
    pub fn new(traceparent: &str, tracestate: Option<&str>) -> Option<TraceContext> {
        if !is_version_00(traceparent) {
            return None;
        }
        let tracestate = tracestate.filter(|s| {
            !s.is_empty()
                && s.len() <= MAX_STORED_TRACESTATE
                && s.bytes().all(|b| (0x20..0x7f).contains(&b))
        });
        Some(TraceContext {
            traceparent: traceparent.to_owned(),
            tracestate: tracestate.map(str::to_owned),
        })
    }

    /// A context read from a row's two columns (none when the
    /// `traceparent` column is empty or no longer valid).
    pub(crate) fn from_columns(
        traceparent: Option<String>,
        tracestate: Option<String>,
    ) -> Option<TraceContext> {
        TraceContext::new(&traceparent?, tracestate.as_deref())
    }

    /// The `traceparent` value (version 00, 55 characters).
    pub fn traceparent(&self) -> &str {
        &self.traceparent
    }

    /// The `tracestate` that came with it, if any.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }
}

/// `00-<32 hex>-<16 hex>-<2 hex>`, lowercase, ids not all zeros.
fn is_version_00(value: &str) -> bool {
    let b = value.as_bytes();
    if b.len() != TRACEPARENT_LEN {
        return false;
    }
    let hex = |range: std::ops::Range<usize>| {
        b.get(range).is_some_and(|s| {
            s.iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        })
    };
    let zeros =
        |range: std::ops::Range<usize>| b.get(range).is_some_and(|s| s.iter().all(|&c| c == b'0'));
    b.starts_with(b"00-")
        && b.get(35) == Some(&b'-')
        && b.get(52) == Some(&b'-')
        && hex(3..35)
        && hex(36..52)
        && hex(53..55)
        && !zeros(3..35)
        && !zeros(36..52)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_version_00_traceparent_is_kept_with_its_flags() {
        let c = TraceContext::new(VALID, Some("vendor=1")).unwrap();
        assert_eq!(c.traceparent(), VALID);
        assert_eq!(c.tracestate(), Some("vendor=1"));
        let unsampled = VALID.replace("-01", "-00");
        assert_eq!(
            TraceContext::new(&unsampled, None).unwrap().traceparent(),
            unsampled
        );
    }

    #[test]
    fn anything_else_is_not_stored() {
        let long = format!("{VALID}-00");
        let upper = VALID.to_uppercase();
        let zero_trace = format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32));
        let zero_span = "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01";
        let future = VALID.replacen("00-", "01-", 1);
        let bad_sep = VALID.replace('-', "_");
        let not_hex = VALID.replace('b', "g");
        for (value, why) in [
            ("", "empty"),
            (&VALID[..54], "short"),
            (long.as_str(), "long"),
            (upper.as_str(), "uppercase"),
            (zero_trace.as_str(), "zero trace id"),
            (zero_span, "zero parent id"),
            (future.as_str(), "another version"),
            (bad_sep.as_str(), "separators"),
            (not_hex.as_str(), "not hex"),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\u{e9}",
                "not ASCII",
            ),
        ] {
            assert_eq!(
                TraceContext::new(value, Some("a=1")),
                None,
                "{why}: {value}"
            );
        }
    }

    #[test]
    fn a_bad_tracestate_is_dropped_and_the_traceparent_kept() {
        let long = "a".repeat(MAX_STORED_TRACESTATE + 1);
        for state in ["", "a=1\n", "a=\u{7f}", long.as_str()] {
            let c = TraceContext::new(VALID, Some(state)).unwrap();
            assert_eq!(c.tracestate(), None, "{state:?}");
            assert_eq!(c.traceparent(), VALID);
        }
        let max = "a".repeat(MAX_STORED_TRACESTATE);
        assert_eq!(
            TraceContext::new(VALID, Some(&max)).unwrap().tracestate(),
            Some(max.as_str())
        );
    }
}
