//! The call lifecycle a permit owns: when a call starts, how long it took, and what a call
//! that ends without a result means (cancelled, abandoned young, abandoned past its deadline
//! or the slow-call duration).
#![cfg(not(loom))]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use breaker_core::{CircuitBreaker, Clock, ManualClock, Outcome, Permit, RejectReason, State};
use common::{MS, NS};

const SEC: Duration = Duration::from_secs(1);

/// A manual clock that counts how often it is read.
#[derive(Clone, Default)]
struct CountingClock {
    time: ManualClock,
    reads: Arc<AtomicU64>,
}

impl Clock for CountingClock {
    fn now_nanos(&self) -> u64 {
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.time.now_nanos()
    }
}

/// A breaker on `clock` that one failure trips, tripped and half-open: one probe slot free.
fn half_open(clock: &ManualClock) -> CircuitBreaker<ManualClock> {
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(1)
        .half_open_probes(1)
        .open_duration(SEC)
        .build()
        .unwrap();
    b.trip();
    clock.advance(SEC + NS);
    b
}

#[test]
fn a_permit_times_its_call_on_the_breakers_clock() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .count_window(10)
        .slow_call_duration(100 * MS)
        .build()
        .unwrap();
    let permit = b.try_acquire().unwrap();
    clock.advance(100 * MS);
    assert_eq!(permit.elapsed(), 100 * MS);
    permit.record(Outcome::Success); // exactly the threshold: not slow
    let permit = b.try_acquire().unwrap();
    clock.advance(100 * MS + NS);
    permit.record(Outcome::Success);
    let s = b.snapshot();
    assert_eq!((s.window.calls, s.window.slow_calls), (2, 1));
}

#[test]
fn a_permit_reads_no_clock_unless_the_breaker_needs_the_time() {
    let clock = CountingClock::default();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(3)
        .build()
        .unwrap();
    let before = clock.reads.load(Ordering::Relaxed);
    for outcome in [Outcome::Success, Outcome::Failure, Outcome::Ignored] {
        b.try_acquire().unwrap().record(outcome);
    }
    b.try_acquire().unwrap().cancel();
    drop(b.try_acquire().unwrap());
    assert_eq!(
        clock.reads.load(Ordering::Relaxed),
        before,
        "no clock reads"
    );
    assert_eq!(b.try_acquire().unwrap().elapsed(), Duration::ZERO);

    // A deadline needs the time: the call's clock starts when it is set.
    let mut permit = b.try_acquire().unwrap();
    clock.time.advance(5 * SEC);
    permit.set_deadline(2 * SEC);
    clock.time.advance(SEC);
    assert_eq!(permit.elapsed(), SEC, "timed from the deadline's setting");
    drop(permit); // abandoned before its deadline
    // The cancelled one, the dropped one, the one asked for its time, and this one.
    assert_eq!(b.snapshot().totals.cancelled, 4);
}

#[test]
fn an_abandoned_call_is_neutral_before_its_deadline_and_a_failure_at_it() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(2)
        .build()
        .unwrap();

    let permit = Permit::acquire(&&b).unwrap().with_deadline(SEC);
    // Kept within 4 ppm, never later: a call dropped at its deadline always counts.
    assert!(permit.deadline().unwrap() <= SEC);
    clock.advance(SEC - MS);
    drop(permit);
    let s = b.snapshot();
    assert_eq!((s.totals.cancelled, s.totals.failures), (1, 0));

    let permit = b.try_acquire().unwrap().with_deadline(SEC);
    clock.advance(SEC);
    drop(permit); // at its deadline: timed out
    let s = b.snapshot();
    assert_eq!((s.totals.failures, s.window.consecutive_failures), (1, 1));

    // Cancelled on purpose: neutral whatever the time.
    let permit = b.try_acquire().unwrap().with_deadline(SEC);
    clock.advance(10 * SEC);
    permit.cancel();
    assert_eq!(b.snapshot().totals.failures, 1);

    let permit = b.try_acquire().unwrap().with_deadline(SEC);
    clock.advance(3 * SEC);
    drop(permit);
    assert_eq!(b.state(), State::Open, "two timed-out calls trip it");
}

#[test]
fn an_abandoned_call_past_the_slow_call_duration_is_a_slow_failure() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .count_window(10)
        .minimum_calls(10)
        .slow_call_duration(SEC)
        .build()
        .unwrap();
    let young = b.try_acquire().unwrap();
    clock.advance(SEC);
    drop(young); // not slower than the threshold yet
    let old = b.try_acquire().unwrap();
    clock.advance(SEC + NS);
    drop(old);
    let s = b.snapshot();
    assert_eq!(
        (s.totals.cancelled, s.totals.failures, s.totals.slow),
        (1, 1, 1)
    );
    assert_eq!(
        (s.window.calls, s.window.failures, s.window.slow_calls),
        (1, 1, 1)
    );
}

#[test]
fn a_probe_abandoned_young_gives_its_slot_back_and_one_past_its_deadline_reopens() {
    let clock = ManualClock::new();
    let b = half_open(&clock);
    let probe = b.try_acquire().unwrap().with_deadline(100 * MS);
    assert!(probe.is_probe());
    assert_eq!(
        b.try_acquire().unwrap_err().reason(),
        RejectReason::HalfOpenFull
    );
    clock.advance(50 * MS);
    drop(probe);
    let probe = b.try_acquire().expect("the slot came back");
    let probe = probe.with_deadline(100 * MS);
    clock.advance(100 * MS);
    drop(probe);
    assert_eq!(b.state(), State::Open, "a probe that timed out failed");
    assert_eq!(b.snapshot().open_attempts, 2);
}

#[test]
fn a_disabled_breaker_counts_nothing_even_past_a_deadline() {
    let clock = CountingClock::default();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .count_window(10)
        .slow_call_duration(MS)
        .build()
        .unwrap();
    b.disable();
    let reads = clock.reads.load(Ordering::Relaxed);
    b.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(clock.reads.load(Ordering::Relaxed), reads, "not timed");
    let permit = b.try_acquire().unwrap().with_deadline(MS);
    clock.time.advance(SEC);
    drop(permit);
    let t = b.snapshot().totals;
    assert_eq!((t.failures, t.cancelled, t.slow), (0, 0, 0));
}

#[test]
fn a_deadline_is_kept_within_four_parts_per_million_and_never_later() {
    let b = CircuitBreaker::builder_with_clock(ManualClock::new())
        .build()
        .unwrap();
    for wanted in [
        NS,
        MS,
        1_234_567 * NS,
        SEC,
        Duration::from_secs(3_600),
        Duration::from_secs(86_400 * 365),
    ] {
        let permit = b.try_acquire().unwrap().with_deadline(wanted);
        let kept = permit.deadline().unwrap();
        assert!(kept <= wanted, "{wanted:?} kept as {kept:?}");
        if wanted < Duration::from_secs(86_400) {
            assert!(
                (wanted - kept).as_nanos() * 262_144 <= wanted.as_nanos(),
                "{wanted:?} kept as {kept:?}"
            );
        } else {
            assert!(kept > Duration::from_secs(12 * 86_400), "{kept:?}");
        }
        permit.cancel();
    }
}

#[test]
fn a_late_result_is_dropped_whatever_it_says() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(1)
        .build()
        .unwrap();
    let old = b.try_acquire().unwrap().with_deadline(MS);
    b.reset();
    clock.advance(SEC);
    drop(old); // timed out, but for a generation that is gone
    let s = b.snapshot();
    assert_eq!(
        (s.state, s.totals.late, s.totals.failures),
        (State::Closed, 1, 0)
    );
}

#[test]
fn a_permit_moved_onto_an_owned_handle_keeps_its_ticket_start_and_deadline() {
    let clock = ManualClock::new();
    let b = Arc::new(
        CircuitBreaker::builder_with_clock(clock.clone())
            .count_window(10)
            .slow_call_duration(100 * MS)
            .half_open_probes(1)
            .open_duration(SEC)
            .build()
            .unwrap(),
    );
    b.trip();
    clock.advance(SEC + NS);
    let probe = b.try_acquire().unwrap().with_deadline(SEC);
    clock.advance(150 * MS);
    let owned = probe.with_handle(Arc::clone(&b));
    assert_eq!(Arc::strong_count(&b), 2);
    assert!(owned.is_probe(), "the ticket moved with it");
    assert_eq!(owned.elapsed(), 150 * MS, "so did the start");
    assert!(owned.deadline().unwrap() <= SEC && owned.deadline().unwrap() > SEC - MS);
    assert_eq!(
        b.try_acquire().unwrap_err().reason(),
        RejectReason::HalfOpenFull,
        "the probe slot is still taken: nothing was released by the move"
    );
    // Recorded from another thread, through the owned handle: slow (150 ms > 100 ms) and
    // the probe's success closes the breaker.
    std::thread::spawn(move || owned.record(Outcome::Success))
        .join()
        .unwrap();
    let s = b.snapshot();
    assert_eq!((s.totals.successes, s.totals.slow), (1, 1));
    assert_eq!(b.state(), State::Closed);
    assert_eq!(Arc::strong_count(&b), 1, "the owned handle was released");
}

#[test]
fn a_permit_moved_onto_another_breakers_handle_panics_and_abandons_its_call() {
    let clock = ManualClock::new();
    let b = half_open(&clock);
    let other = Arc::new(
        CircuitBreaker::builder_with_clock(clock.clone())
            .build()
            .unwrap(),
    );
    let probe = b.try_acquire().unwrap();
    let moved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        probe.with_handle(Arc::clone(&other))
    }));
    let message = moved.expect_err("a foreign handle is refused");
    let message = message.downcast_ref::<&str>().copied().unwrap_or_default();
    assert!(message.contains("another breaker"), "{message}");
    assert_eq!(
        Arc::strong_count(&other),
        1,
        "the foreign handle was dropped"
    );
    assert_eq!(other.snapshot().totals.requests(), 0);
    // The probe was abandoned young: neutral, and its slot is free again.
    assert_eq!(b.snapshot().totals.cancelled, 1);
    assert!(b.try_acquire().unwrap().is_probe());
}

#[test]
fn a_permit_recorded_in_place_is_spent() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(2)
        .slow_call_duration(SEC)
        .build()
        .unwrap();
    let mut permit = b.try_acquire().unwrap().with_deadline(SEC);
    clock.advance(2 * SEC);
    let failed: Result<(), &str> = Err("refused");
    let outcome = permit.record_result_in_place(&breaker_core::ErrorsAreFailures, &failed);
    assert_eq!(outcome, Outcome::Failure);
    let s = b.snapshot();
    assert_eq!((s.totals.failures, s.totals.slow), (1, 1));
    // Spent: a second record, and the drop past its deadline, count nothing more.
    assert_eq!(
        permit.record_result_in_place(&breaker_core::ErrorsAreFailures, &failed),
        Outcome::Failure
    );
    drop(permit);
    let s = b.snapshot();
    assert_eq!((s.totals.failures, s.totals.cancelled), (1, 0));
    assert_eq!(b.state(), State::Closed, "one failure of two");
}

#[test]
fn a_classifier_panicking_in_place_leaves_the_permit_to_abandon_the_call() {
    struct Panics;
    impl breaker_core::Classify<(), ()> for Panics {
        fn classify(&self, _: &Result<(), ()>) -> Outcome {
            panic!("classifier bug")
        }
    }
    let b = CircuitBreaker::builder()
        .consecutive_failures(1)
        .build()
        .unwrap();
    let mut permit = b.try_acquire().unwrap();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        permit.record_result_in_place(&Panics, &Err(()))
    }));
    assert!(panicked.is_err());
    assert_eq!(b.snapshot().totals.requests(), 0, "nothing recorded");
    drop(permit);
    assert_eq!(b.snapshot().totals.cancelled, 1, "abandoned young: neutral");
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn a_handle_whose_clone_panics_abandons_the_call_and_gives_a_probe_slot_back() {
    /// A handle whose clones panic, as a user's `BreakerRef` with a buggy `Clone` might.
    struct Fragile(&'static CircuitBreaker<ManualClock>);
    impl Clone for Fragile {
        fn clone(&self) -> Self {
            panic!("clone bug")
        }
    }
    impl breaker_core::BreakerRef for Fragile {
        type Clock = ManualClock;
        type Observer = breaker_core::NoopObserver;
        fn breaker(&self) -> &CircuitBreaker<ManualClock> {
            self.0
        }
    }
    let clock = ManualClock::new();
    let b = half_open(&clock).leak();
    assert_eq!(b.state(), State::HalfOpen);
    let handle = Fragile(b);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Permit::acquire(&handle).map(|permit| permit.cancel())
    }));
    assert!(panicked.is_err());
    let s = b.snapshot();
    assert_eq!((s.state, s.half_open_admitted), (State::HalfOpen, 0));
    assert!(
        b.try_acquire().unwrap().is_probe(),
        "the probe slot came back"
    );
}
