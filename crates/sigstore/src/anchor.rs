//! Keys that are trust anchors for a time: a transparency log's or CT log's key
//! ([`TransparencyLog`]) and the interval it is trusted for ([`TimeRange`]). Read from the
//! trusted root (`trust_root.rs`), used by the SCT check (`certificate.rs`) and the log
//! entry check (`tlog.rs`).

use time::OffsetDateTime;

use crate::signature::{KeyError, VerifierKey};

/// A closed time interval (`dev.sigstore.common.v1.TimeRange`); no end means "still valid".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeRange {
    pub start: OffsetDateTime,
    pub end: Option<OffsetDateTime>,
}

impl TimeRange {
    /// Whether `at` is within the range, both ends included.
    pub(crate) fn contains(&self, at: OffsetDateTime) -> bool {
        self.start <= at && self.end.is_none_or(|end| at <= end)
    }
}

/// A Rekor log or a CT log: its id, key and when the key is trusted.
#[derive(Clone, Debug)]
pub(crate) struct TransparencyLog {
    pub base_url: String,
    pub log_id: Vec<u8>,
    pub key: Result<VerifierKey, KeyError>,
    pub valid_for: TimeRange,
}
