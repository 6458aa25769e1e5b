//! Ways the core could stay broken for good, each pinned by a test that failed before its fix:
//! generation wrap-around in the windows, stale bucket counts after idle gaps, user code
//! panicking inside a transition, lost probes.
#![cfg(not(loom))]

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use breaker_core::{
    Builder, CircuitBreaker, Clock, Config, Event, ManualClock, NoopObserver, Observer, Outcome,
    PolicyKind, RejectReason, State,
};
use common::*;

const SEC: Duration = Duration::from_secs(1);
const OPEN: Duration = Duration::from_secs(1);

/// Cycles an open breaker through `cycles` failed probes (two transitions each: open to
/// half-open, half-open back to open), as a long outage does.
fn failed_probes<C: Clock, O: Observer>(
    b: &CircuitBreaker<C, O>,
    clock: &ManualClock,
    cycles: u32,
) {
    for _ in 0..cycles {
        clock.advance(OPEN + NS);
        let probe = b.try_acquire().expect("the open period is over: a probe");
        assert!(probe.is_probe());
        probe.record(Outcome::Failure);
    }
    assert_eq!(b.state(), State::Open);
}

/// Ends an outage: one successful probe closes the breaker.
fn recover<C: Clock, O: Observer>(b: &CircuitBreaker<C, O>, clock: &ManualClock) {
    clock.advance(OPEN + NS);
    b.try_acquire().expect("a probe").record(Outcome::Success);
    assert_eq!(b.state(), State::Closed);
}

fn windowed(
    window: impl FnOnce(Builder<ManualClock, NoopObserver>) -> Builder<ManualClock, NoopObserver>,
) -> (CircuitBreaker<ManualClock>, ManualClock) {
    let clock = ManualClock::new();
    let builder = CircuitBreaker::builder_with_clock(clock.clone())
        .open_duration(OPEN)
        .max_half_open(Duration::from_secs(3600));
    let b = window(builder)
        .minimum_calls(10)
        .failure_rate(50.0)
        .build()
        .unwrap();
    (b, clock)
}

/// After the outage, the window counts exactly the new period's calls and trips exactly on
/// the tenth (5 failures of 10 = 50 %).
fn trips_exactly_on_the_tenth_call(b: &CircuitBreaker<ManualClock>) {
    for i in 0..9 {
        let outcome = if i % 2 == 0 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        call(b, outcome);
    }
    let s = b.snapshot();
    assert_eq!(s.state, State::Closed);
    assert_eq!((s.window.calls, s.window.failures), (9, 5), "{s:?}");
    call(b, Outcome::Success);
    assert_eq!(
        b.state(),
        State::Open,
        "5 failures in 10 calls trip at 50 %"
    );
}

/// 100,000 transitions without a record in the closed state (a long outage: open and
/// half-open in turn). Window tags used to compare generations as wrapping 16-bit (8-bit in
/// time windows) numbers, so the old period's tags then looked newer than the new period's
/// and every record was dropped as late: the window never tripped again.
fn survives_100_000_transitions(
    window: impl FnOnce(Builder<ManualClock, NoopObserver>) -> Builder<ManualClock, NoopObserver>,
) {
    let (b, clock) = windowed(window);
    // Leave something in the window of the first period.
    fail(&b, 3);
    succeed(&b, 2);
    b.trip();
    failed_probes(&b, &clock, 50_000);
    recover(&b, &clock);
    assert!(b.snapshot().generation > 100_000);
    assert_eq!(b.snapshot().window.calls, 0, "a new period starts empty");
    trips_exactly_on_the_tenth_call(&b);
}

#[test]
fn count_window_trips_exactly_after_100_000_transitions() {
    survives_100_000_transitions(|b| b.count_window(10));
}

#[test]
fn time_window_trips_exactly_after_100_000_transitions() {
    survives_100_000_transitions(|b| b.time_window(10 * SEC, 10));
}

#[test]
fn tumbling_window_trips_exactly_after_100_000_transitions() {
    survives_100_000_transitions(|b| b.time_window(10 * SEC, 1));
}

#[test]
fn cumulative_window_trips_exactly_after_100_000_transitions() {
    survives_100_000_transitions(|b| b.cumulative_window());
}

/// Four failures, then a gap of exactly 256 window rotations with no call. The time-window
/// buckets tagged their counts with 8 bits of rotation, so after exactly 256 rotations the
/// old failures came back and one success tripped the breaker (4 failures of 5).
#[test]
fn time_window_forgets_counts_after_an_idle_gap_of_256_rotations() {
    for buckets in [1, 10] {
        let clock = ManualClock::new();
        let b = CircuitBreaker::builder_with_clock(clock.clone())
            .time_window(10 * SEC, buckets)
            .minimum_calls(5)
            .failure_rate(50.0)
            .build()
            .unwrap();
        fail(&b, 4);
        for rotations in [256u32, 65_536] {
            clock.advance(10 * SEC * rotations);
            call(&b, Outcome::Success);
            let s = b.snapshot();
            assert_eq!(
                s.state,
                State::Closed,
                "{buckets} buckets, {rotations}: {s:?}"
            );
            assert_eq!((s.window.calls, s.window.failures), (1, 0), "{s:?}");
            fail(&b, 3);
        }
    }
}

/// The same through generations: a closed period 256 generations after the last one began
/// used to find its first bucket's counts (8 bits of generation in the tag) still there.
#[test]
fn time_window_forgets_counts_of_a_period_256_generations_ago() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .time_window(10 * SEC, 10)
        .minimum_calls(5)
        .failure_rate(50.0)
        .open_duration(OPEN)
        .build()
        .unwrap();
    fail(&b, 4);
    b.trip(); // generation 1
    failed_probes(&b, &clock, 127); // 255
    b.reset(); // 256: a new closed period, starting at its tick 0 like the first
    assert_eq!(b.snapshot().generation, 256);
    call(&b, Outcome::Success);
    let s = b.snapshot();
    assert_eq!(s.state, State::Closed, "{s:?}");
    assert_eq!((s.window.calls, s.window.failures), (1, 0));
}

#[test]
fn count_window_forgets_counts_of_a_period_65_536_generations_ago() {
    let (b, clock) = windowed(|b| b.count_window(10));
    fail(&b, 4);
    b.trip(); // 1
    failed_probes(&b, &clock, 32_767); // 65_535
    b.reset(); // 65_536
    assert_eq!(b.snapshot().generation, 65_536);
    assert_eq!(b.snapshot().window.calls, 0);
    trips_exactly_on_the_tenth_call(&b);
}

// ----- user code panicking inside a transition ---------------------------------------------

/// Panics once when `armed`, then behaves.
#[derive(Clone, Default)]
struct Tripwire(Arc<AtomicBool>);

impl Tripwire {
    fn arm(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn fire(&self) {
        if self.0.swap(false, Ordering::SeqCst) {
            panic!("user code panicked");
        }
    }
}

/// After the panic the breaker must still work: it is in a state with a deadline (or
/// closed), and it trips and recovers as configured.
fn still_trips_and_recovers(b: &CircuitBreaker<ManualClock, impl Observer>, clock: &ManualClock) {
    if b.state() == State::Closed {
        fail(b, 1);
    }
    assert_eq!(b.state(), State::Open);
    let r = b.try_acquire().unwrap_err();
    assert_eq!(r.reason(), RejectReason::Open);
    assert!(r.retry_after().is_some(), "open with a deadline");
    assert!(b.retry_after().is_some());
    recover(b, clock);
}

#[test]
fn a_panicking_open_duration_function_leaves_the_breaker_as_it_was() {
    let clock = ManualClock::new();
    let wire = Tripwire::default();
    let w = wire.clone();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(1)
        .open_duration_fn(move |_| {
            w.fire();
            OPEN
        })
        .build()
        .unwrap();
    wire.arm();
    let permit = b.try_acquire().unwrap();
    let panicked = catch_unwind(AssertUnwindSafe(|| permit.record(Outcome::Failure)));
    assert!(panicked.is_err());
    assert_eq!(b.state(), State::Closed, "the trip did not happen");
    still_trips_and_recovers(&b, &clock);
}

#[test]
fn a_panicking_jitter_source_leaves_the_breaker_as_it_was() {
    let clock = ManualClock::new();
    let wire = Tripwire::default();
    let w = wire.clone();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(1)
        .open_duration(OPEN)
        .jitter(0.5, move || {
            w.fire();
            0
        })
        .build()
        .unwrap();
    b.trip();
    recover(&b, &clock);
    wire.arm();
    assert!(catch_unwind(AssertUnwindSafe(|| fail(&b, 1))).is_err());
    assert_eq!(b.state(), State::Closed);
    still_trips_and_recovers(&b, &clock);
}

/// An observer runs after the transition is made and published: its panic loses events, never
/// the state.
#[derive(Clone, Default)]
struct PanickingObserver(Tripwire);

impl Observer for PanickingObserver {
    fn on_event(&self, event: &Event) {
        if matches!(event, Event::StateTransition { .. }) {
            self.0.fire();
        }
    }
}

#[test]
fn a_panicking_observer_loses_events_not_the_state() {
    let clock = ManualClock::new();
    let observer = PanickingObserver::default();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(1)
        .open_duration(OPEN)
        .observer(observer.clone())
        .build()
        .unwrap();
    observer.0.arm();
    assert!(catch_unwind(AssertUnwindSafe(|| fail(&b, 1))).is_err());
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.retry_after(), Some(OPEN));
    still_trips_and_recovers(&b, &clock);
}

// ----- lost probes ----------------------------------------------------------------------------

/// A probe whose result never comes (its task leaked or hung) must not hold half-open for
/// good: by default half-open re-opens after `DEFAULT_MAX_HALF_OPEN`.
#[test]
fn a_lost_probe_does_not_stall_half_open_by_default() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .open_duration(OPEN)
        .build()
        .unwrap();
    b.trip();
    clock.advance(OPEN + NS);
    let lost = b.try_acquire().unwrap();
    assert!(lost.is_probe());
    std::mem::forget(lost);
    assert_eq!(
        b.try_acquire().unwrap_err().reason(),
        RejectReason::HalfOpenFull
    );
    clock.advance(breaker_core::DEFAULT_MAX_HALF_OPEN);
    assert_eq!(b.state(), State::HalfOpen, "not before the limit");
    clock.advance(NS);
    assert_eq!(
        b.state(),
        State::Open,
        "re-opened after the half-open limit"
    );
    clock.advance(2 * OPEN);
    assert!(b.try_acquire().unwrap().is_probe(), "and probes again");
}

/// A permit held across a panic (a classifier panicking, a task unwinding) gives its probe
/// slot back on unwind.
#[test]
fn a_probe_permit_unwinding_gives_its_slot_back() {
    let clock = ManualClock::new();
    let b = Arc::new(
        CircuitBreaker::builder_with_clock(clock.clone())
            .open_duration(OPEN)
            .build()
            .unwrap(),
    );
    b.trip();
    clock.advance(OPEN + NS);
    let owned = b.try_acquire_owned().unwrap();
    assert!(owned.is_probe());
    let panicked = catch_unwind(AssertUnwindSafe(move || {
        let _held = owned;
        panic!("classifier panicked");
    }));
    assert!(panicked.is_err());
    assert!(b.try_acquire().unwrap().is_probe(), "the slot came back");
}

// ----- reconfiguration --------------------------------------------------------------------

#[test]
fn policy_reports_the_thresholds_in_force_after_reconfigure() {
    let b = CircuitBreaker::builder_with_clock(ManualClock::new())
        .consecutive_failures(5)
        .build()
        .unwrap();
    b.reconfigure(
        Config::builder()
            .consecutive_failures(2)
            .build_config()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(b.policy(), PolicyKind::ConsecutiveFailures { threshold: 2 });
}
