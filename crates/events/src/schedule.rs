//! The scheduler: fires every schedule a deployed function is bound to
//! (`[[triggers]] schedule = "..."`) at its fire times, on the [`Clock`],
//! as a CloudEvents request through the gateway's invoke path.
//!
//! - Fire times come from [`zerofn_manifest::Schedule`] (the cron
//!   expression in its IANA time zone, daylight saving by the zone's rules).
//! - **At most once per fire time.** The fire time is recorded in the store
//!   (`schedule_runs`) *before* the invocation starts; a fire whose record
//!   fails is not run. A failed, trapped or refused invocation is not
//!   retried, and one cut off by a crash is not run again at restart. The
//!   event id (`<function>-<name>-<fire time in Unix ms>`) is deterministic,
//!   so a consumer that does see one twice can tell.
//! - **One run at a time.** A fire time reached while the schedule's
//!   previous run is still going is skipped: recorded as handled, counted
//!   ([`Scheduler::skipped`]) and logged, not queued.
//! - **A stalled loop coalesces.** When several fire times passed since the
//!   last look (a long pause, a clock jump), one run fires, for the latest.
//! - **Missed runs** (fire times after the recorded last run that passed
//!   while the platform was down, or while the function was not deployed):
//!   when a schedule is first seen, `missed = "skip"` waits for the next fire
//!   time; `missed = "run-once"` fires once at once, for the latest missed
//!   time (the CloudEvent's data says `"catch_up": true`), then continues. A
//!   schedule with no recorded run has missed nothing.
//! - Bindings are re-read on every pass, at least every second: a deployed
//!   schedule starts within a second, an undeployed one stops (its run in
//!   flight finishes), a changed expression starts from its next fire time.
//!
//! # Trust
//! Trusts the [`Bindings`] to come from admitted manifests (each schedule
//! parsed and checked there), the store to keep what it committed, and the
//! [`Invoker`] to decide, limit, run and audit every invocation with the
//! schedule as its principal, `Zerofn::EventSource::"<tenant>/schedule/
//! <function>-<name>"`. Nothing here decides who may invoke what.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{watch, Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use zerofn_manifest::{Missed, Schedule};
use zerofn_store::{Store, StoreError};

use crate::clock::Clock;
use crate::delivery::{Bindings, EventInvocation, Invoker};

/// `ce-type` of a schedule's events.
pub const SCHEDULE_EVENT_TYPE: &str = "dev.zerofn.schedule.fired";

/// One schedule as `zerofn schedule list` shows it ([`Scheduler::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleStatus {
    pub function: String,
    pub name: String,
    pub schedule: String,
    pub timezone: String,
    pub missed: &'static str,
    /// The scheduled time of the last handled fire.
    pub last_run_ms: Option<u64>,
    /// The next fire time; `None` when the schedule never fires again.
    pub next_run_ms: Option<u64>,
    /// Fire times skipped since the platform started (a run was still going).
    pub skipped: u64,
    /// Whether a run is going now.
    pub running: bool,
}

/// A function bound to a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleBinding {
    pub tenant: String,
    pub function: String,
    /// The trigger's `name`.
    pub name: String,
    /// The event source's name in its tenant, `schedule/<function>-<name>`
    /// (from `zerofn_manifest::Trigger::source`, the same text as the grant).
    pub source: String,
    pub schedule: Schedule,
    pub missed: Missed,
}

impl ScheduleBinding {
    /// The deterministic id of the event for fire time `at_ms`.
    pub fn event_id(&self, at_ms: u64) -> String {
        format!("{}-{}-{at_ms}", self.function, self.name)
    }
}

type Key = (String, String, String);

/// A schedule as the loop tracks it.
struct Slot {
    binding: ScheduleBinding,
    /// The next fire time; `None` when the schedule never fires again.
    next_ms: Option<u64>,
    /// Whether the next fire is a catch-up for missed runs.
    catch_up: bool,
    /// One permit: held by the run in flight.
    running: Arc<Semaphore>,
    skipped: u64,
}

/// The scheduler and what it needs.
pub struct Scheduler {
    store: Store,
    clock: Arc<dyn Clock>,
    bindings: Arc<dyn Bindings>,
    invoker: Arc<dyn Invoker>,
    slots: Mutex<HashMap<Key, Slot>>,
}

impl Scheduler {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        bindings: Arc<dyn Bindings>,
        invoker: Arc<dyn Invoker>,
    ) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            store,
            clock,
            bindings,
            invoker,
            slots: Mutex::new(HashMap::new()),
        })
    }

    /// Every schedule of `tenant`'s functions with its last handled and next fire time
    /// (milliseconds since the epoch), the fire times skipped since the platform started
    /// because a run was still going, and whether one is going now; by function and name.
    pub async fn status(&self, tenant: &str) -> Result<Vec<ScheduleStatus>, StoreError> {
        let now = self.clock.now_ms();
        let mut bindings: Vec<ScheduleBinding> = self
            .bindings
            .schedules()
            .into_iter()
            .filter(|b| b.tenant == tenant)
            .collect();
        bindings.sort_by(|a, b| (&a.function, &a.name).cmp(&(&b.function, &b.name)));
        let mut out = Vec::with_capacity(bindings.len());
        for b in bindings {
            let last_run_ms = self
                .store
                .schedule_last_run(&b.tenant, &b.function, &b.name)
                .await?;
            let key = (b.tenant.clone(), b.function.clone(), b.name.clone());
            let (next_run_ms, skipped, running) = match self.slots.lock().await.get(&key) {
                Some(s) => (s.next_ms, s.skipped, s.running.available_permits() == 0),
                // Deployed since the loop's last pass: as the loop will see it.
                None => (b.schedule.next_after(now), 0, false),
            };
            out.push(ScheduleStatus {
                function: b.function,
                name: b.name,
                schedule: b.schedule.expression().to_owned(),
                timezone: b.schedule.timezone().to_owned(),
                missed: b.missed.as_str(),
                last_run_ms,
                next_run_ms,
                skipped,
                running,
            });
        }
        Ok(out)
    }

    /// Fire times of the schedule skipped because its previous run was
    /// still going (since the schedule was first seen by this process).
    pub async fn skipped(&self, tenant: &str, function: &str, name: &str) -> u64 {
        let key = (tenant.to_owned(), function.to_owned(), name.to_owned());
        self.slots.lock().await.get(&key).map_or(0, |s| s.skipped)
    }

    /// The slot of a schedule seen for the first time: its next fire time,
    /// after applying `missed` to the runs missed since its recorded last run.
    async fn first_seen(&self, binding: ScheduleBinding, now: u64) -> Option<Slot> {
        let last = match self
            .store
            .schedule_last_run(&binding.tenant, &binding.function, &binding.name)
            .await
        {
            Ok(last) => last,
            Err(error) => {
                // Tried again on the next pass.
                tracing::warn!(tenant = %binding.tenant, function = %binding.function, schedule = %binding.name, %error, "cannot read a schedule's last run");
                return None;
            }
        };
        let upcoming = binding.schedule.next_after(now);
        let missed_since = last.and_then(|last| binding.schedule.next_after(last));
        let (next_ms, catch_up) = match missed_since {
            Some(first_missed) if first_missed <= now => {
                let latest = binding.schedule.latest_at_or_before(now);
                tracing::info!(tenant = %binding.tenant, function = %binding.function, schedule = %binding.name, missed = binding.missed.as_str(), first_missed, "schedule missed runs while not running");
                match (binding.missed, latest) {
                    (Missed::RunOnce, Some(latest)) => (Some(latest), true),
                    _ => (upcoming, false),
                }
            }
            _ => (upcoming, false),
        };
        Some(Slot {
            binding,
            next_ms,
            catch_up,
            running: Arc::new(Semaphore::new(1)),
            skipped: 0,
        })
    }

    /// One pass: starts the run of every schedule whose fire time has come
    /// in `tasks`. Answers the earliest next fire time, if any.
    async fn pass(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> Option<u64> {
        let bindings = self.bindings.schedules();
        let now = self.clock.now_ms();
        let mut slots = self.slots.lock().await;
        slots.retain(|(t, f, n), _| {
            bindings
                .iter()
                .any(|b| &b.tenant == t && &b.function == f && &b.name == n)
        });
        let mut earliest: Option<u64> = None;
        for binding in bindings {
            let key = (
                binding.tenant.clone(),
                binding.function.clone(),
                binding.name.clone(),
            );
            if let Some(slot) = slots.get_mut(&key) {
                if slot.binding != binding {
                    // Redeployed with another expression, zone or `missed`:
                    // from its next fire time (a run in flight keeps its permit).
                    slot.next_ms = binding.schedule.next_after(now);
                    slot.catch_up = false;
                    slot.binding = binding;
                }
            } else if let Some(slot) = self.first_seen(binding, now).await {
                slots.insert(key.clone(), slot);
            }
            let Some(slot) = slots.get_mut(&key) else {
                continue;
            };
            if let Some(due) = slot.next_ms.filter(|due| *due <= now) {
                // The latest fire time that has come (coalescing a stall).
                let at = slot
                    .binding
                    .schedule
                    .latest_at_or_before(now)
                    .filter(|latest| *latest >= due)
                    .unwrap_or(due);
                let catch_up = std::mem::take(&mut slot.catch_up);
                slot.next_ms = slot.binding.schedule.next_after(now.max(at));
                self.fire(slot, at, catch_up, tasks).await;
            }
            if let Some(next) = slot.next_ms {
                earliest = Some(earliest.map_or(next, |e| e.min(next)));
            }
        }
        earliest
    }

    /// Handles fire time `at` of `slot`: recorded as the last run, then run
    /// unless the previous run is still going (then skipped and counted).
    async fn fire(
        self: &Arc<Self>,
        slot: &mut Slot,
        at: u64,
        catch_up: bool,
        tasks: &mut JoinSet<()>,
    ) {
        let b = &slot.binding;
        let permit = slot.running.clone().try_acquire_owned().ok();
        // INVARIANT: recorded before the run starts (at most once per fire time).
        if let Err(error) = self
            .store
            .record_schedule_run(&b.tenant, &b.function, &b.name, at)
            .await
        {
            tracing::error!(tenant = %b.tenant, function = %b.function, schedule = %b.name, %error, "cannot record a schedule's run; not running it");
            return;
        }
        let Some(permit) = permit else {
            slot.skipped = slot.skipped.saturating_add(1);
            tracing::warn!(tenant = %b.tenant, function = %b.function, schedule = %b.name, at, skipped = slot.skipped, "schedule fire time skipped: its previous run is still going");
            return;
        };
        let this = self.clone();
        let binding = b.clone();
        tasks.spawn(async move { this.run(binding, at, catch_up, permit).await });
    }

    async fn run(
        self: Arc<Self>,
        binding: ScheduleBinding,
        at: u64,
        catch_up: bool,
        permit: OwnedSemaphorePermit,
    ) {
        let event_id = binding.event_id(at);
        let request = crate::cloudevent::schedule_request(&binding, &event_id, at, catch_up);
        let result = self
            .invoker
            .invoke(EventInvocation {
                tenant: binding.tenant.clone(),
                function: binding.function.clone(),
                source: binding.source.clone(),
                event_id: event_id.clone(),
                attempt: 1,
                request,
            })
            .await;
        if !result.is_success() {
            // Not retried (at most once); the invocation's audit record has the outcome.
            tracing::warn!(tenant = %binding.tenant, function = %binding.function, schedule = %binding.name, %event_id, status = result.status, "scheduled run failed");
        }
        drop(permit);
    }

    /// Runs until `shutdown`: a pass at each fire time and at least every
    /// second. Runs in flight at shutdown are stopped (their fire times are
    /// recorded: not run again).
    pub async fn run_until(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        crate::passes::run(self, shutdown).await;
    }

    /// One pass whose runs are awaited (tests): answers how many ran.
    pub async fn pump(self: &Arc<Self>) -> usize {
        crate::passes::pump(self).await
    }

    /// One pass whose runs are handed back unawaited (tests of overlap).
    pub async fn pass_detached(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> Option<u64> {
        self.pass(tasks).await
    }
}

impl crate::passes::Passes for Scheduler {
    fn next_pass(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
    ) -> impl std::future::Future<Output = Option<u64>> + Send {
        self.pass(tasks)
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn wake(&self) -> Option<&tokio::sync::Notify> {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::FakeClock;
    use crate::delivery::{Binding, BoxFuture, Delivered};

    struct Fixed(Vec<ScheduleBinding>);
    impl Bindings for Fixed {
        fn bindings(&self) -> Vec<Binding> {
            Vec::new()
        }
        fn schedules(&self) -> Vec<ScheduleBinding> {
            self.0.clone()
        }
    }

    /// What a run saw: event id, source, `ce-time`, whether a catch-up.
    type Seen = (String, String, String, bool);

    /// Records every run; each waits for a permit of `gate` when set.
    #[derive(Default)]
    struct Recorder {
        seen: std::sync::Mutex<Vec<Seen>>,
        gate: Option<Arc<Semaphore>>,
    }
    impl Invoker for Arc<Recorder> {
        fn invoke(&self, inv: EventInvocation) -> BoxFuture<Delivered> {
            let this = self.clone();
            Box::pin(async move {
                let h = |n: &str| {
                    inv.request
                        .headers()
                        .get(n)
                        .unwrap()
                        .to_str()
                        .unwrap()
                        .to_owned()
                };
                assert_eq!(h("ce-id"), inv.event_id);
                assert_eq!(h("ce-type"), SCHEDULE_EVENT_TYPE);
                assert_eq!(inv.attempt, 1);
                let body: serde_json::Value = serde_json::from_slice(inv.request.body()).unwrap();
                assert_eq!(body["scheduled_time"].as_str().unwrap(), h("ce-time"));
                this.seen.lock().unwrap().push((
                    inv.event_id.clone(),
                    inv.source.clone(),
                    h("ce-time"),
                    body["catch_up"].as_bool().unwrap(),
                ));
                if let Some(gate) = &this.gate {
                    let _permit = gate.acquire().await.unwrap();
                }
                Delivered {
                    status: 200,
                    error: None,
                    give_up: false,
                }
            })
        }
    }

    fn ms(text: &str) -> u64 {
        let ts: jiff::Timestamp = text.parse().unwrap();
        u64::try_from(ts.as_millisecond()).unwrap()
    }

    fn bind(expression: &str, zone: &str, missed: Missed) -> ScheduleBinding {
        ScheduleBinding {
            tenant: "acme".into(),
            function: "report".into(),
            name: "tick".into(),
            source: "schedule/report-tick".into(),
            schedule: Schedule::parse(expression, zone).unwrap(),
            missed,
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Store,
        clock: Arc<FakeClock>,
    }

    fn fixture(start: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        Fixture {
            _dir: dir,
            store,
            clock: Arc::new(FakeClock::new(ms(start))),
        }
    }

    fn scheduler(
        f: &Fixture,
        bindings: Vec<ScheduleBinding>,
        invoker: Arc<Recorder>,
    ) -> Arc<Scheduler> {
        Scheduler::new(
            f.store.clone(),
            f.clock.clone(),
            Arc::new(Fixed(bindings)),
            Arc::new(invoker),
        )
    }

    fn times(r: &Recorder) -> Vec<String> {
        r.seen.lock().unwrap().iter().map(|s| s.2.clone()).collect()
    }

    #[tokio::test]
    async fn fires_at_the_expected_times_and_records_the_last_run() {
        let f = fixture("2026-03-01T00:00:05Z");
        let r = Arc::new(Recorder::default());
        let s = scheduler(
            &f,
            vec![bind("*/10 * * * * *", "UTC", Missed::Skip)],
            r.clone(),
        );
        assert_eq!(s.pump().await, 0, "nothing due at start");
        f.clock.advance(4_999);
        assert_eq!(s.pump().await, 0, "fired before its time");
        f.clock.advance(1);
        assert_eq!(s.pump().await, 1);
        assert_eq!(s.pump().await, 0, "fired twice for one time");
        f.clock.advance(10_000);
        assert_eq!(s.pump().await, 1);
        let seen = r.seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                (
                    format!("report-tick-{}", ms("2026-03-01T00:00:10Z")),
                    "schedule/report-tick".to_owned(),
                    "2026-03-01T00:00:10Z".to_owned(),
                    false
                ),
                (
                    format!("report-tick-{}", ms("2026-03-01T00:00:20Z")),
                    "schedule/report-tick".to_owned(),
                    "2026-03-01T00:00:20Z".to_owned(),
                    false
                ),
            ]
        );
        assert_eq!(
            f.store
                .schedule_last_run("acme", "report", "tick")
                .await
                .unwrap(),
            Some(ms("2026-03-01T00:00:20Z"))
        );
        // A stalled loop coalesces: 35 s later, one run for the latest time.
        f.clock.advance(35_000);
        assert_eq!(s.pump().await, 1);
        assert_eq!(times(&r).last().unwrap(), "2026-03-01T00:00:50Z");
    }

    #[tokio::test]
    async fn daylight_saving_in_berlin_moves_the_utc_fire_times() {
        let f = fixture("2026-03-27T12:00:00Z");
        let r = Arc::new(Recorder::default());
        let s = scheduler(
            &f,
            vec![bind("0 30 2 * * *", "Europe/Berlin", Missed::Skip)],
            r.clone(),
        );
        assert_eq!(s.pump().await, 0);
        let expected = [
            "2026-03-28T01:30:00Z", // 02:30 CET
            "2026-03-29T01:00:00Z", // no 02:30 that day: 03:00 CEST, after the gap
            "2026-03-30T00:30:00Z", // 02:30 CEST
        ];
        for at in expected {
            let now = f.clock.now_ms();
            f.clock.advance(ms(at) - 1 - now);
            assert_eq!(s.pump().await, 0, "fired before {at}");
            f.clock.advance(1);
            assert_eq!(s.pump().await, 1, "did not fire at {at}");
        }
        assert_eq!(times(&r), expected);
    }

    #[tokio::test]
    async fn missed_runs_are_skipped_or_run_once() {
        let down = "2026-03-01T10:00:00Z";
        for missed in [Missed::Skip, Missed::RunOnce] {
            let f = fixture("2026-03-01T11:00:30Z");
            // The platform last ran the every-minute schedule at 10:00, then was down an hour.
            f.store
                .record_schedule_run("acme", "report", "tick", ms(down))
                .await
                .unwrap();
            let r = Arc::new(Recorder::default());
            let s = scheduler(&f, vec![bind("0 * * * * *", "UTC", missed)], r.clone());
            let ran = s.pump().await;
            assert_eq!(s.pump().await, 0, "{missed:?}: caught up twice");
            f.clock.advance(30_000);
            assert_eq!(s.pump().await, 1, "{missed:?}: the next fire time");
            let seen = r.seen.lock().unwrap().clone();
            match missed {
                Missed::Skip => {
                    assert_eq!(ran, 0);
                    assert_eq!(times(&r), ["2026-03-01T11:01:00Z"]);
                }
                Missed::RunOnce => {
                    assert_eq!(ran, 1, "one catch-up run for 60 missed");
                    assert_eq!(times(&r), ["2026-03-01T11:00:00Z", "2026-03-01T11:01:00Z"]);
                    assert!(seen[0].3, "the catch-up says so");
                    assert!(!seen[1].3);
                }
            }
        }
    }

    #[tokio::test]
    async fn status_shows_last_and_next_runs_per_schedule_of_the_tenant() {
        let f = fixture("2026-03-01T11:00:30Z");
        let r = Arc::new(Recorder::default());
        let s = scheduler(
            &f,
            vec![bind("0 */5 * * * *", "Europe/Berlin", Missed::Skip)],
            r.clone(),
        );
        // Before the loop ran: never run, the next fire time as the loop will see it.
        let before = s.status("acme").await.unwrap();
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].last_run_ms, None);
        assert_eq!(before[0].next_run_ms, Some(ms("2026-03-01T11:05:00Z")));
        assert_eq!(before[0].timezone, "Europe/Berlin");
        assert_eq!(before[0].missed, "skip");
        assert!(s.status("other").await.unwrap().is_empty());
        s.pump().await;
        f.clock.advance(270_000);
        assert_eq!(s.pump().await, 1);
        let after = s.status("acme").await.unwrap();
        assert_eq!(after[0].last_run_ms, Some(ms("2026-03-01T11:05:00Z")));
        assert_eq!(after[0].next_run_ms, Some(ms("2026-03-01T11:10:00Z")));
        assert_eq!(after[0].skipped, 0);
    }

    #[tokio::test]
    async fn nothing_is_missed_without_a_recorded_run_or_after_a_recent_one() {
        let f = fixture("2026-03-01T11:00:30Z");
        let r = Arc::new(Recorder::default());
        let s = scheduler(
            &f,
            vec![bind("0 * * * * *", "UTC", Missed::RunOnce)],
            r.clone(),
        );
        assert_eq!(s.pump().await, 0, "a new schedule has missed nothing");
        let f = fixture("2026-03-01T11:00:30Z");
        f.store
            .record_schedule_run("acme", "report", "tick", ms("2026-03-01T11:00:00Z"))
            .await
            .unwrap();
        let s = scheduler(
            &f,
            vec![bind("0 * * * * *", "UTC", Missed::RunOnce)],
            r.clone(),
        );
        assert_eq!(s.pump().await, 0, "restarted between two fire times");
        assert!(r.seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_fire_time_reached_during_a_run_is_skipped_and_counted() {
        let f = fixture("2026-03-01T00:00:00.500Z");
        let gate = Arc::new(Semaphore::new(0));
        let r = Arc::new(Recorder {
            gate: Some(gate.clone()),
            ..Default::default()
        });
        let s = scheduler(
            &f,
            vec![bind("* * * * * *", "UTC", Missed::Skip)],
            r.clone(),
        );
        let mut tasks = JoinSet::new();
        s.pass_detached(&mut tasks).await;
        f.clock.advance(500);
        s.pass_detached(&mut tasks).await;
        // Let the run start and block on the gate.
        for _ in 0..100 {
            if !r.seen.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(r.seen.lock().unwrap().len(), 1);
        f.clock.advance(1_000);
        s.pass_detached(&mut tasks).await;
        f.clock.advance(1_000);
        s.pass_detached(&mut tasks).await;
        assert_eq!(s.skipped("acme", "report", "tick").await, 2);
        assert_eq!(r.seen.lock().unwrap().len(), 1, "overlapping runs");
        // The skipped times count as handled.
        assert_eq!(
            f.store
                .schedule_last_run("acme", "report", "tick")
                .await
                .unwrap(),
            Some(ms("2026-03-01T00:00:03Z"))
        );
        gate.add_permits(10);
        while tasks.join_next().await.is_some() {}
        f.clock.advance(1_000);
        assert_eq!(s.pump().await, 1, "runs again once the previous run ended");
        assert_eq!(times(&r), ["2026-03-01T00:00:01Z", "2026-03-01T00:00:04Z"]);
    }

    #[tokio::test]
    async fn undeployed_schedules_stop_and_redeployed_ones_restart() {
        let f = fixture("2026-03-01T00:00:00Z");
        let r = Arc::new(Recorder::default());
        let bindings = Arc::new(std::sync::Mutex::new(vec![bind(
            "*/10 * * * * *",
            "UTC",
            Missed::Skip,
        )]));
        struct Shared(Arc<std::sync::Mutex<Vec<ScheduleBinding>>>);
        impl Bindings for Shared {
            fn bindings(&self) -> Vec<Binding> {
                Vec::new()
            }
            fn schedules(&self) -> Vec<ScheduleBinding> {
                self.0.lock().unwrap().clone()
            }
        }
        let s = Scheduler::new(
            f.store.clone(),
            f.clock.clone(),
            Arc::new(Shared(bindings.clone())),
            Arc::new(r.clone()),
        );
        f.clock.advance(10_000);
        assert_eq!(
            s.pump().await,
            0,
            "first seen at its fire time: the next one"
        );
        f.clock.advance(10_000);
        assert_eq!(s.pump().await, 1);
        bindings.lock().unwrap().clear();
        f.clock.advance(10_000);
        assert_eq!(s.pump().await, 0, "undeployed, still fired");
        // Redeployed with another expression: from its next fire time.
        *bindings.lock().unwrap() = vec![bind("*/15 * * * * *", "UTC", Missed::Skip)];
        assert_eq!(s.pump().await, 0);
        f.clock.advance(15_000);
        assert_eq!(s.pump().await, 1);
        assert_eq!(times(&r), ["2026-03-01T00:00:20Z", "2026-03-01T00:00:45Z"]);
    }
}
