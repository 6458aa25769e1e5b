//! The shortcuts the hot paths take, held to the behaviour of the long way round:
//! rejections while open decided on a coarse clock reading, time-window buckets chosen by
//! it, and count-window records that change nothing skipping the rule evaluation.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use breaker_core::{CircuitBreaker, Clock, Config, ManualClock, Outcome, State};
use common::{MS, NS, call, fail, succeed};

const SEC: Duration = Duration::from_secs(1);

/// A manual clock whose coarse reading trails the precise one by a settable amount, and
/// which counts how often each is read.
#[derive(Clone, Default)]
struct LaggingClock {
    precise: ManualClock,
    /// How far the coarse reading trails right now.
    trail: Arc<AtomicU64>,
    /// The lag the clock admits to (`coarse_lag_nanos`).
    admitted_lag: u64,
    precise_reads: Arc<AtomicU64>,
    coarse_reads: Arc<AtomicU64>,
}

impl LaggingClock {
    fn new(admitted_lag: Duration, trail: Duration) -> Self {
        let clock = LaggingClock {
            admitted_lag: admitted_lag.as_nanos() as u64,
            ..Default::default()
        };
        clock
            .trail
            .store(trail.as_nanos() as u64, Ordering::Relaxed);
        clock
    }

    fn reads(&self) -> (u64, u64) {
        (
            self.precise_reads.load(Ordering::Relaxed),
            self.coarse_reads.load(Ordering::Relaxed),
        )
    }
}

impl Clock for LaggingClock {
    fn now_nanos(&self) -> u64 {
        self.precise_reads.fetch_add(1, Ordering::Relaxed);
        self.precise.now_nanos()
    }
    fn coarse_now_nanos(&self) -> u64 {
        self.coarse_reads.fetch_add(1, Ordering::Relaxed);
        self.precise
            .now_nanos()
            .saturating_sub(self.trail.load(Ordering::Relaxed))
    }
    fn coarse_lag_nanos(&self) -> u64 {
        self.admitted_lag
    }
}

fn open_breaker(clock: &LaggingClock) -> CircuitBreaker<LaggingClock> {
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(1)
        .open_duration(10 * SEC)
        .build()
        .unwrap();
    clock.precise.advance(SEC);
    fail(&b, 1);
    assert_eq!(b.state(), State::Open);
    b
}

#[test]
fn far_from_the_deadline_a_rejection_reads_only_the_coarse_clock_and_never_says_too_early() {
    let clock = LaggingClock::new(8 * MS, 3 * MS);
    let b = open_breaker(&clock);
    clock.precise.advance(5 * SEC); // 5 s of the 10 s left
    let before = clock.reads();
    let rejected = b.try_acquire().unwrap_err();
    let after = clock.reads();
    assert_eq!(after.0, before.0, "the precise clock was read");
    assert_eq!(after.1, before.1 + 1, "the coarse clock was not read");
    // The coarse reading trails by 3 ms: the answer is late by that, never early.
    assert_eq!(rejected.retry_after(), Some(5 * SEC + 3 * MS));
}

#[test]
fn within_the_lag_of_the_deadline_a_rejection_reads_the_precise_clock() {
    let clock = LaggingClock::new(8 * MS, 3 * MS);
    let b = open_breaker(&clock);
    clock.precise.advance(10 * SEC - 4 * MS); // coarse: 7 ms before the deadline, lag 8
    let before = clock.reads();
    let rejected = b.try_acquire().unwrap_err();
    assert_eq!(
        rejected.retry_after(),
        Some(4 * MS),
        "exact near the deadline"
    );
    assert!(clock.reads().0 > before.0, "the precise clock was not read");
}

#[test]
fn a_trailing_coarse_clock_does_not_delay_the_probe() {
    // The coarse reading trails by 5 ms (within the admitted 8): one nanosecond after the
    // deadline, the probe is admitted although the coarse clock still shows 5 ms before it.
    let clock = LaggingClock::new(8 * MS, 5 * MS);
    let b = open_breaker(&clock);
    clock.precise.advance(10 * SEC);
    assert_eq!(b.try_acquire().unwrap_err().retry_after(), Some(NS));
    clock.precise.advance(NS);
    let probe = b.try_acquire().expect("the deadline has passed: a probe");
    probe.record(Outcome::Success);
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn a_clock_without_a_coarse_reading_is_read_precisely() {
    // ManualClock admits no lag: every rejection is exact to the nanosecond.
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(1)
        .open_duration(10 * SEC)
        .build()
        .unwrap();
    fail(&b, 1);
    clock.advance(3 * SEC + 7 * NS);
    let left = b.try_acquire().unwrap_err().retry_after().unwrap();
    assert_eq!(left, 7 * SEC - 7 * NS);
}

#[test]
fn time_windows_with_wide_buckets_read_the_coarse_clock_and_narrow_ones_the_precise() {
    // Buckets of 1 s against an admitted lag of 8 ms: coarse. The call lands in the bucket
    // of the coarse time, which trails by 3 ms.
    let clock = LaggingClock::new(8 * MS, 3 * MS);
    let wide = CircuitBreaker::builder_with_clock(clock.clone())
        .time_window(10 * SEC, 10)
        .minimum_calls(100)
        .build()
        .unwrap();
    let before = clock.reads();
    call(&wide, Outcome::Success);
    let after = clock.reads();
    assert_eq!(after.0, before.0, "wide buckets read the precise clock");
    assert!(after.1 > before.1);

    // Buckets of 100 ms are less than 16 lags wide: precise.
    let narrow = CircuitBreaker::builder_with_clock(clock.clone())
        .time_window(SEC, 10)
        .minimum_calls(100)
        .build()
        .unwrap();
    let before = clock.reads();
    call(&narrow, Outcome::Success);
    assert!(
        clock.reads().0 > before.0,
        "narrow buckets read the coarse clock"
    );
}

#[test]
fn time_window_buckets_follow_the_coarse_clock_consistently() {
    let clock = LaggingClock::new(8 * MS, 3 * MS);
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .time_window(10 * SEC, 10)
        .minimum_calls(1_000)
        .build()
        .unwrap();
    fail(&b, 3);
    // 10 s + 2 ms later the precise clock has left the first bucket's window, the coarse
    // one (3 ms behind) has not: the counts still include it, as the records saw it.
    clock.precise.advance(10 * SEC + 2 * MS);
    assert_eq!(b.snapshot().window.failures, 3);
    clock.precise.advance(2 * MS);
    assert_eq!(b.snapshot().window.failures, 0);
}

fn count_window_breaker(threshold: f64) -> (CircuitBreaker<ManualClock>, Config) {
    let config = |t| {
        Config::builder()
            .count_window(4)
            .minimum_calls(4)
            .failure_rate(t)
            .build_config()
            .unwrap()
    };
    let b = CircuitBreaker::builder_with_clock(ManualClock::new())
        .count_window(4)
        .minimum_calls(4)
        .failure_rate(threshold)
        .build()
        .unwrap();
    (b, config(50.0))
}

#[test]
fn a_record_that_changes_nothing_still_trips_after_a_lower_threshold_is_set() {
    let (b, half) = count_window_breaker(60.0);
    // Slots: F F S S (50 %, below 60 %).
    fail(&b, 2);
    succeed(&b, 2);
    // The next three records put the same outcome in the same slot: nothing changes, and
    // the verdict "below" is remembered for these counts.
    fail(&b, 2);
    succeed(&b, 1);
    assert_eq!(b.state(), State::Closed);
    let s = b.snapshot();
    assert_eq!((s.window.calls, s.window.failures), (4, 2));
    // 50 % now reaches the threshold: the next record, which changes nothing either, must
    // evaluate again and trip.
    b.reconfigure(half).unwrap();
    succeed(&b, 1);
    assert_eq!(b.state(), State::Open);
}

#[test]
fn records_that_change_nothing_keep_the_counts_exact() {
    let (b, _) = count_window_breaker(90.0);
    for round in 0..50 {
        call(&b, Outcome::Failure);
        succeed(&b, 3);
        let s = b.snapshot();
        assert_eq!((s.window.calls, s.window.failures), (4, 1), "round {round}");
    }
    assert_eq!(b.snapshot().totals.successes, 150);
}
