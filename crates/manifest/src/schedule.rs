//! A schedule of a `[[triggers]]` entry: a cron expression in an IANA time
//! zone, parsed once when the manifest is, and the fire times it gives.
//!
//! - Expressions are those of the Open Cron Pattern Specification, through
//!   the `croner` crate: 5 fields (`minute hour day-of-month month
//!   day-of-week`, fired at second 0) or 6 fields with seconds first
//!   (`second minute hour day-of-month month day-of-week`); no year field.
//!   Day of month and day of week combine with OR, as in Vixie cron.
//!   `@hourly`, `@daily` and the like are accepted.
//! - Fire times are wall-clock times in the schedule's time zone (default
//!   `UTC`), from the IANA database bundled into the binary (`jiff`), so
//!   every host computes the same times. Daylight-saving transitions follow
//!   croner's rules (OCPS): in a spring-forward gap a fixed-time schedule
//!   (`0 30 2 * * *`) fires at the first valid time after the gap, an
//!   interval schedule (`*/10 * * * * *`) skips the missing times; in a
//!   fall-back fold a fixed-time schedule fires once (at the first of the
//!   repeated times), an interval one fires in both halves.
//! - The finest schedule fires once per second (the format has no finer
//!   field); [`MIN_INTERVAL_MS`] says so, and [`Schedule::parse`] checks
//!   the first fire times against it, so raising it is one constant.
//!
//! # Trust
//! Trusts nothing in the expression or the zone name: both are parsed here
//! and refused with a [`ScheduleError`]; text quoted in a message is
//! escaped. Never panics on input.

use std::fmt;
use std::sync::{Arc, LazyLock};

use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use jiff::tz::{TimeZone, TimeZoneDatabase};
use jiff::{Timestamp, Zoned};
use zerofn_types::excerpt;

/// The shortest time between two fires of one schedule.
pub const MIN_INTERVAL_MS: u64 = 1_000;
/// The time zone of a schedule that names none.
pub const DEFAULT_TIMEZONE: &str = "UTC";
/// Longest cron expression read.
const MAX_EXPRESSION_BYTES: usize = 256;
/// How many fire times [`Schedule::parse`] checks against [`MIN_INTERVAL_MS`].
const INTERVAL_SAMPLES: usize = 4;

/// The time zone database bundled at build time (not the host's), so a
/// schedule fires at the same instants on every host.
static TZDB: LazyLock<TimeZoneDatabase> = LazyLock::new(TimeZoneDatabase::bundled);

/// Why a schedule is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("cron expression `{expression}` is not valid: {problem}; write 5 fields (minute hour day month weekday) or 6 with seconds first")]
    InvalidExpression { expression: String, problem: String },
    #[error("time zone `{zone}` is not an IANA time zone name (such as `Europe/Berlin` or `UTC`)")]
    UnknownTimeZone { zone: String },
    #[error("cron expression `{expression}` never fires")]
    NeverFires { expression: String },
    #[error("cron expression `{expression}` fires more often than once every {min_ms} ms")]
    TooFrequent { expression: String, min_ms: u64 },
}

/// A parsed cron expression in its time zone.
#[derive(Clone)]
pub struct Schedule {
    expression: String,
    // Shared: a parsed pattern is some 400 bytes, and bindings are cloned often.
    cron: Arc<Cron>,
    zone_name: String,
    zone: TimeZone,
}

impl Schedule {
    /// Parses `expression` in the IANA time zone `zone`, refusing one that
    /// never fires or fires more often than [`MIN_INTERVAL_MS`].
    pub fn parse(expression: &str, zone: &str) -> Result<Schedule, ScheduleError> {
        let invalid = |problem: String| ScheduleError::InvalidExpression {
            expression: excerpt(expression),
            problem,
        };
        if expression.len() > MAX_EXPRESSION_BYTES {
            return Err(invalid(format!(
                "it is longer than {MAX_EXPRESSION_BYTES} bytes"
            )));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|e| invalid(excerpt(&e.to_string())))?;
        let tz = TZDB.get(zone).map_err(|_| ScheduleError::UnknownTimeZone {
            zone: excerpt(zone),
        })?;
        let schedule = Schedule {
            expression: expression.to_owned(),
            cron: Arc::new(cron),
            zone_name: zone.to_owned(),
            zone: tz,
        };
        // Sampled from a fixed instant (2001-01-01T00:00:00Z), so whether a
        // manifest parses does not depend on when.
        let mut at = 978_307_200_000u64;
        let mut fires = Vec::with_capacity(INTERVAL_SAMPLES);
        for _ in 0..INTERVAL_SAMPLES {
            let Some(next) = schedule.next_after(at) else {
                break;
            };
            fires.push(next);
            at = next;
        }
        if fires.is_empty() {
            return Err(ScheduleError::NeverFires {
                expression: excerpt(expression),
            });
        }
        if fires
            .windows(2)
            .any(|w| matches!(w, [a, b] if b.saturating_sub(*a) < MIN_INTERVAL_MS))
        {
            return Err(ScheduleError::TooFrequent {
                expression: excerpt(expression),
                min_ms: MIN_INTERVAL_MS,
            });
        }
        Ok(schedule)
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The IANA time zone name as written.
    pub fn timezone(&self) -> &str {
        &self.zone_name
    }

    /// The first fire time strictly after `after_ms` (Unix ms), if any.
    /// Fire times are whole seconds.
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let start = self.zoned(after_ms)?;
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        u64::try_from(next.timestamp().as_millisecond()).ok()
    }

    /// The last fire time at or before `at_ms` (Unix ms), if any.
    pub fn latest_at_or_before(&self, at_ms: u64) -> Option<u64> {
        let start = self.zoned(at_ms)?;
        let previous = self.cron.find_previous_occurrence(&start, true).ok()?;
        u64::try_from(previous.timestamp().as_millisecond()).ok()
    }

    /// `ms` in the schedule's zone, truncated to its second (cron has no
    /// finer field).
    fn zoned(&self, ms: u64) -> Option<Zoned> {
        let seconds = i64::try_from(ms / 1_000).ok()?;
        let ts = Timestamp::from_second(seconds).ok()?;
        Some(ts.to_zoned(self.zone.clone()))
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule")
            .field("expression", &self.expression)
            .field("timezone", &self.zone_name)
            .finish()
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.expression == other.expression && self.zone_name == other.zone_name
    }
}

impl Eq for Schedule {}

/// What a schedule does about fire times missed while the platform was down
/// (`missed = "skip" | "run-once"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Missed {
    /// Nothing: the schedule resumes at its next fire time.
    #[default]
    Skip,
    /// One catch-up run at start (for the latest missed time), however many
    /// were missed, then the next fire time.
    RunOnce,
}

impl Missed {
    pub fn parse(text: &str) -> Option<Missed> {
        match text {
            "skip" => Some(Missed::Skip),
            "run-once" => Some(Missed::RunOnce),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Missed::Skip => "skip",
            Missed::RunOnce => "run-once",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn parse_never_panics(expression in ".{0,80}", zone in ".{0,40}") {
            let _ = Schedule::parse(&expression, &zone);
        }

        /// Cron-like text in real zones: whatever parses gives strictly
        /// increasing fire times at least a second apart, on whole seconds.
        #[test]
        fn fire_times_increase_by_at_least_the_minimum(
            fields in proptest::collection::vec("(\\*|[0-9]{1,2}|\\*/[1-9]|[0-9]-[0-9]{1,2}|[0-9],[0-9]{1,2})", 5..=6),
            zone in prop::sample::select(vec!["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]),
            start in 0u64..4_102_444_800_000,
        ) {
            let expression = fields.join(" ");
            if let Ok(s) = Schedule::parse(&expression, zone) {
                let mut at = start;
                for _ in 0..3 {
                    let Some(next) = s.next_after(at) else { break };
                    prop_assert!(next > at, "{expression} in {zone}: {next} after {at}");
                    prop_assert_eq!(next % 1_000, 0);
                    if at % 1_000 == 0 && at != start {
                        prop_assert!(next - at >= MIN_INTERVAL_MS);
                    }
                    at = next;
                }
            }
        }
    }

    /// Unix ms of an RFC 3339 time.
    fn ms(text: &str) -> u64 {
        let ts: Timestamp = text.parse().unwrap();
        u64::try_from(ts.as_millisecond()).unwrap()
    }

    fn fires(s: &Schedule, from: &str, n: usize) -> Vec<String> {
        let mut at = ms(from);
        let mut out = Vec::new();
        for _ in 0..n {
            at = s.next_after(at).unwrap();
            let ts = Timestamp::from_millisecond(i64::try_from(at).unwrap()).unwrap();
            out.push(ts.to_string());
        }
        out
    }

    #[test]
    fn five_and_six_fields_fire_at_the_expected_times() {
        let every_5_min = Schedule::parse("0 */5 * * * *", "UTC").unwrap();
        assert_eq!(
            fires(&every_5_min, "2026-03-01T10:02:30Z", 3),
            [
                "2026-03-01T10:05:00Z",
                "2026-03-01T10:10:00Z",
                "2026-03-01T10:15:00Z"
            ]
        );
        let five = Schedule::parse("30 9 * * MON", "UTC").unwrap();
        assert_eq!(
            fires(&five, "2026-03-01T00:00:00Z", 2),
            ["2026-03-02T09:30:00Z", "2026-03-09T09:30:00Z"]
        );
        let every_second = Schedule::parse("* * * * * *", "UTC").unwrap();
        assert_eq!(
            fires(&every_second, "2026-03-01T00:00:00.500Z", 2),
            ["2026-03-01T00:00:01Z", "2026-03-01T00:00:02Z"]
        );
        assert_eq!(
            every_5_min.latest_at_or_before(ms("2026-03-01T10:07:00Z")),
            Some(ms("2026-03-01T10:05:00Z"))
        );
        assert_eq!(
            every_5_min.latest_at_or_before(ms("2026-03-01T10:05:00Z")),
            Some(ms("2026-03-01T10:05:00Z"))
        );
    }

    #[test]
    fn berlin_daylight_saving_transitions_follow_the_zone_rules() {
        // 02:30 every day: 2026-03-29 has no 02:30 in Berlin (02:00 CET ->
        // 03:00 CEST); it fires at 03:00 CEST (01:00Z), the first time after the gap.
        let s = Schedule::parse("0 30 2 * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            fires(&s, "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28T01:30:00Z", // 02:30 CET
                "2026-03-29T01:00:00Z", // gap: 03:00 CEST
                "2026-03-30T00:30:00Z", // 02:30 CEST
            ]
        );
        // 2026-10-25 repeats 02:00-03:00: a fixed-time schedule fires once.
        assert_eq!(
            fires(&s, "2026-10-24T12:00:00Z", 3),
            [
                "2026-10-25T00:30:00Z", // the first 02:30 (CEST)
                "2026-10-26T01:30:00Z", // 02:30 CET
                "2026-10-27T01:30:00Z",
            ]
        );
        // Hourly on the half hour, around the fall-back: both 02:30s fire.
        let hourly = Schedule::parse("0 30 * * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            fires(&hourly, "2026-10-24T23:00:00Z", 3),
            [
                "2026-10-24T23:30:00Z", // 01:30 CEST
                "2026-10-25T00:30:00Z", // 02:30 CEST
                "2026-10-25T01:30:00Z", // 02:30 CET
            ]
        );
        // The same expression in UTC ignores Berlin's rules.
        let utc = Schedule::parse("0 30 2 * * *", "UTC").unwrap();
        assert_eq!(
            fires(&utc, "2026-03-28T12:00:00Z", 1),
            ["2026-03-29T02:30:00Z"]
        );
    }

    #[test]
    fn bad_schedules_are_refused() {
        for (expression, zone, expected) in [
            ("", "UTC", "not valid"),
            ("61 * * * * *", "UTC", "not valid"),
            ("* * * *", "UTC", "not valid"),
            ("0 0 0 1 1 * 2030", "UTC", "not valid"),
            ("banana", "UTC", "not valid"),
            ("* * * * *", "Mars/Olympus", "not an IANA time zone"),
            ("* * * * *", "", "not an IANA time zone"),
            ("0 0 30 2 *", "UTC", "never fires"),
        ] {
            let e = Schedule::parse(expression, zone).unwrap_err().to_string();
            assert!(e.contains(expected), "{expression:?} in {zone:?}: {e}");
        }
        // The documented extensions parse.
        for expression in [
            "0 0 12 L * *",
            "0 0 12 * * FRI#2",
            "0 0 12 15W * *",
            "0 0 9-17/2 * JAN-MAR MON-FRI",
            "@daily",
            "@hourly",
        ] {
            assert!(Schedule::parse(expression, "UTC").is_ok(), "{expression}");
        }
        let long = "*".repeat(MAX_EXPRESSION_BYTES + 1);
        assert!(Schedule::parse(&long, "UTC").is_err());
        assert_eq!(Missed::parse("run-once"), Some(Missed::RunOnce));
        assert_eq!(Missed::parse("skip"), Some(Missed::Skip));
        assert_eq!(Missed::parse("always"), None);
    }
}
