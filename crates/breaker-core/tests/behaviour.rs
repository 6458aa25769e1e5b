//! The breaker's documented behaviour, driven by the manual clock.
#![cfg(not(loom))]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use breaker_core::{
    CallError, CircuitBreaker, Config, ConfigValue, Event, ManualClock, Outcome, PolicyKind,
    ReconfigureError, RejectReason, State, Threshold,
};
use common::*;

const SEC: Duration = Duration::from_secs(1);

fn consecutive(n: u32) -> (CircuitBreaker<ManualClock, Recorder>, ManualClock, Recorder) {
    let clock = ManualClock::new();
    let rec = Recorder::default();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(n)
        .open_duration(10 * SEC)
        .observer(rec.clone())
        .build()
        .unwrap();
    (b, clock, rec)
}

#[test]
fn consecutive_failures_trip_on_reaching_n_and_a_success_resets_the_run() {
    let (b, _clock, rec) = consecutive(3);
    fail(&b, 2);
    succeed(&b, 1);
    fail(&b, 2);
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.snapshot().window.consecutive_failures, 2);
    fail(&b, 1);
    assert_eq!(b.state(), State::Open);
    let events = rec.events();
    let n = events.len();
    assert_eq!(
        events[n - 2..],
        [
            Event::ThresholdExceeded(Threshold::ConsecutiveFailures { count: 3 }),
            Event::StateTransition {
                from: State::Closed,
                to: State::Open
            }
        ]
    );
}

#[test]
fn open_rejects_with_exact_retry_after_and_half_opens_strictly_after_the_period() {
    let (b, clock, _rec) = consecutive(1);
    clock.advance(5 * MS);
    fail(&b, 1);
    let r = b.try_acquire().unwrap_err();
    assert_eq!(r.reason(), RejectReason::Open);
    assert_eq!(r.state(), State::Open);
    assert_eq!(r.retry_after(), Some(10 * SEC));
    clock.advance(4 * SEC);
    assert_eq!(b.try_acquire().unwrap_err().retry_after(), Some(6 * SEC));
    clock.advance(6 * SEC); // exactly at the deadline: still open
    assert_eq!(b.state(), State::Open);
    // ...so a refusal there never says "now": one nanosecond is left.
    let refused = b.try_acquire().unwrap_err();
    assert_eq!(refused.retry_after(), Some(NS));
    assert_eq!(refused.retry_hint().to_string(), "in 1 µs");
    clock.advance(NS);
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(b.snapshot().totals.rejected, 3);
}

#[test]
fn half_open_admits_n_probes_closes_after_n_successes() {
    let clock = ManualClock::new();
    let rec = Recorder::default();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(1)
        .half_open_probes(3)
        .open_duration(SEC)
        .observer(rec.clone())
        .build()
        .unwrap();
    fail(&b, 1);
    clock.advance(SEC + NS);
    let probes: Vec<_> = (0..3).map(|_| b.try_acquire().unwrap()).collect();
    assert!(probes.iter().all(|p| p.is_probe()));
    assert_eq!(
        b.try_acquire().unwrap_err().reason(),
        RejectReason::HalfOpenFull
    );
    let mut probes = probes.into_iter();
    probes.next().unwrap().record(Outcome::Success);
    probes.next().unwrap().record(Outcome::Success);
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(b.snapshot().half_open_successes, 2);
    probes.next().unwrap().record(Outcome::Success);
    assert_eq!(b.state(), State::Closed);
    assert_eq!(
        rec.transitions(),
        [
            (State::Closed, State::Open),
            (State::Open, State::HalfOpen),
            (State::HalfOpen, State::Closed)
        ]
    );
}

#[test]
fn any_probe_failure_reopens_and_later_probe_results_are_late() {
    let (b, clock, _rec) = consecutive(1);
    b.reconfigure(
        Config::builder()
            .consecutive_failures(1)
            .half_open_probes(2)
            .open_duration(10 * SEC)
            .build_config()
            .unwrap(),
    )
    .unwrap();
    fail(&b, 1);
    clock.advance(10 * SEC + NS);
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    p1.record(Outcome::Failure);
    assert_eq!(b.state(), State::Open);
    p2.record(Outcome::Success);
    let s = b.snapshot();
    assert_eq!(s.state, State::Open);
    assert_eq!(s.totals.late, 1);
    assert_eq!(s.open_attempts, 2);
}

#[test]
fn ignored_and_dropped_probes_give_their_slot_back() {
    let (b, clock, _rec) = consecutive(1);
    fail(&b, 1);
    clock.advance(10 * SEC + NS);
    let p = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err());
    p.record(Outcome::Ignored);
    let p = b.try_acquire().unwrap();
    drop(p);
    let s = b.snapshot();
    assert_eq!(
        (s.half_open_admitted, s.totals.ignored, s.totals.cancelled),
        (0, 1, 1)
    );
    call(&b, Outcome::Success);
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn max_half_open_reopens_when_a_probe_is_lost() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(1)
        .open_duration(SEC)
        .max_half_open(5 * SEC)
        .build()
        .unwrap();
    fail(&b, 1);
    clock.advance(SEC + NS);
    let lost = b.try_acquire().unwrap();
    std::mem::forget(lost); // a probe that never reports back
    clock.advance(5 * SEC);
    assert_eq!(b.state(), State::HalfOpen);
    assert_eq!(
        b.try_acquire().unwrap_err().reason(),
        RejectReason::HalfOpenFull
    );
    clock.advance(NS);
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.retry_after(), Some(SEC));
    clock.advance(SEC + NS);
    call(&b, Outcome::Success);
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn late_result_after_reset_is_dropped() {
    let (b, _clock, rec) = consecutive(2);
    let p = b.try_acquire().unwrap();
    fail(&b, 1);
    b.reset();
    p.record(Outcome::Failure);
    let s = b.snapshot();
    assert_eq!(s.window.consecutive_failures, 0);
    assert_eq!(s.totals.late, 1);
    assert!(rec.events().contains(&Event::LateResult {
        outcome: Outcome::Failure
    }));
    assert!(rec.events().contains(&Event::Reset));
}

#[test]
fn exponential_backoff_grows_on_reopen_caps_and_resets_on_close() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(1)
        .exponential_open_duration(SEC, 2.0, 5 * SEC)
        .build()
        .unwrap();
    fail(&b, 1);
    let mut seen = vec![b.retry_after().unwrap()];
    for _ in 0..4 {
        clock.advance(seen.last().copied().unwrap() + NS);
        call(&b, Outcome::Failure); // the probe fails: re-open
        seen.push(b.retry_after().unwrap());
    }
    assert_eq!(seen, [SEC, 2 * SEC, 4 * SEC, 5 * SEC, 5 * SEC]);
    clock.advance(5 * SEC + NS);
    call(&b, Outcome::Success);
    assert_eq!(b.snapshot().open_attempts, 0);
    fail(&b, 1);
    assert_eq!(b.retry_after(), Some(SEC));
}

#[test]
fn custom_open_duration_and_jitter_come_from_injected_sources() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(1)
        .open_duration_fn(|attempt| Duration::from_secs(u64::from(attempt) * 3))
        .build()
        .unwrap();
    fail(&b, 1);
    assert_eq!(b.retry_after(), Some(3 * SEC));
    clock.advance(3 * SEC + NS);
    call(&b, Outcome::Failure);
    assert_eq!(b.retry_after(), Some(6 * SEC));

    // Jitter: u = 0 gives (1 - f), u -> 1 gives (1 + f).
    let random = Arc::new(AtomicU64::new(0));
    let r = random.clone();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(1)
        .open_duration(10 * SEC)
        .jitter(0.2, move || r.load(Ordering::Relaxed))
        .build()
        .unwrap();
    fail(&b, 1);
    assert_eq!(b.retry_after(), Some(8 * SEC));
    b.reset();
    random.store(u64::MAX, Ordering::Relaxed);
    fail(&b, 1);
    let d = b.retry_after().unwrap();
    assert!(d > 11_999 * MS && d <= 12 * SEC, "{d:?}");
}

fn count_window(
    size: u32,
    min: u32,
    rate: f64,
) -> (CircuitBreaker<ManualClock, Recorder>, Recorder) {
    let rec = Recorder::default();
    let b = CircuitBreaker::builder_with_clock(ManualClock::new())
        .count_window(size)
        .minimum_calls(min)
        .failure_rate(rate)
        .observer(rec.clone())
        .build()
        .unwrap();
    (b, rec)
}

#[test]
fn count_window_waits_for_minimum_calls_then_trips_at_the_rate() {
    let (b, rec) = count_window(10, 4, 50.0);
    fail(&b, 3);
    assert_eq!(b.state(), State::Closed, "3 calls < minimum 4");
    call(&b, Outcome::Success); // 3/4 = 75 % >= 50 %, even on a success
    assert_eq!(b.state(), State::Open);
    assert!(
        rec.events()
            .contains(&Event::ThresholdExceeded(Threshold::FailureRate {
                percent: 75.0
            }))
    );
}

#[test]
fn count_window_slides_over_the_last_n_calls() {
    let (b, _rec) = count_window(4, 4, 50.0);
    call(&b, Outcome::Failure);
    succeed(&b, 3); // [F S S S] = 25 %
    assert_eq!(b.snapshot().window.failures, 1);
    succeed(&b, 1); // [S S S S]: the failure slid out
    let s = b.snapshot();
    assert_eq!((s.window.calls, s.window.failures), (4, 0));
    call(&b, Outcome::Failure); // [S S S F] 25 %
    assert_eq!(b.state(), State::Closed);
    call(&b, Outcome::Failure); // [S S F F] 50 %
    assert_eq!(b.state(), State::Open);
}

#[test]
fn slow_call_rate_trips_and_slow_probes_fail() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .count_window(4)
        .minimum_calls(4)
        .failure_rate(100.0)
        .slow_calls(100 * MS, 50.0)
        .open_duration(SEC)
        .build()
        .unwrap();
    timed(&b, Outcome::Success, 100 * MS); // not slow: must exceed
    timed(&b, Outcome::Success, 101 * MS);
    timed(&b, Outcome::Success, MS);
    assert_eq!(b.snapshot().window.slow_calls, 1);
    timed(&b, Outcome::Success, 200 * MS); // 2/4 slow = 50 %
    assert_eq!(b.state(), State::Open);
    clock.advance(SEC + NS);
    timed(&b, Outcome::Success, 150 * MS); // a slow probe counts as failed
    assert_eq!(b.state(), State::Open);
    assert_eq!(b.snapshot().totals.slow, 3);
}

#[test]
fn time_window_forgets_old_buckets() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .time_window(10 * SEC, 10)
        .minimum_calls(4)
        .failure_rate(50.0)
        .build()
        .unwrap();
    fail(&b, 2); // t = 0 s
    clock.advance(5 * SEC);
    succeed(&b, 1); // t = 5 s: 2/3
    assert_eq!(b.snapshot().window.calls, 3);
    clock.advance(5 * SEC); // t = 10 s: bucket 0 (the failures) left the window
    succeed(&b, 1);
    let s = b.snapshot();
    assert_eq!((s.window.calls, s.window.failures), (2, 0));
    fail(&b, 2); // 2/4 = 50 %
    assert_eq!(b.state(), State::Open);
}

#[test]
fn time_window_success_that_reaches_minimum_calls_trips() {
    let b = CircuitBreaker::builder_with_clock(ManualClock::new())
        .time_window(10 * SEC, 10)
        .minimum_calls(3)
        .failure_rate(50.0)
        .build()
        .unwrap();
    fail(&b, 2);
    assert_eq!(b.state(), State::Closed);
    call(&b, Outcome::Success); // 2/3 with 3 calls
    assert_eq!(b.state(), State::Open);
}

#[test]
fn tumbling_window_clears_every_interval_from_period_start() {
    let clock = ManualClock::new();
    clock.advance(Duration::from_millis(1234));
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .time_window(10 * SEC, 1)
        .minimum_calls(3)
        .failure_rate(100.0)
        .build()
        .unwrap();
    fail(&b, 2);
    clock.advance(10 * SEC - NS);
    assert_eq!(b.snapshot().window.failures, 2);
    clock.advance(NS);
    assert_eq!(
        b.snapshot().window.calls,
        0,
        "a new interval starts 10 s after build"
    );
    fail(&b, 2);
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn trip_when_predicate_replaces_the_rate_rules() {
    let b = CircuitBreaker::builder_with_clock(ManualClock::new())
        .cumulative_window()
        .trip_when(|c| c.calls >= 3 && c.failures * 10 >= c.calls * 6)
        .build()
        .unwrap();
    call(&b, Outcome::Failure);
    call(&b, Outcome::Failure);
    assert_eq!(b.state(), State::Closed, "2 calls < 3");
    call(&b, Outcome::Success); // 2/3 = 67 % >= 60 %
    assert_eq!(b.state(), State::Open);
}

#[test]
fn operator_modes() {
    let (b, _clock, rec) = consecutive(1);
    b.force_open();
    let r = b.try_acquire().unwrap_err();
    assert_eq!(
        (r.reason(), r.retry_after()),
        (RejectReason::ForcedOpen, None)
    );
    b.disable();
    for _ in 0..10 {
        call(&b, Outcome::Failure);
    }
    let s = b.snapshot();
    assert_eq!(
        (s.state, s.totals.failures),
        (State::Disabled, 0),
        "disabled records nothing"
    );
    b.metrics_only();
    fail(&b, 5);
    let s = b.snapshot();
    assert_eq!((s.state, s.totals.failures), (State::MetricsOnly, 5));
    assert!(
        rec.events()
            .contains(&Event::ThresholdExceeded(Threshold::ConsecutiveFailures {
                count: 5
            }))
    );
    b.reset();
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.snapshot().window.consecutive_failures, 0);
    b.trip();
    assert_eq!(b.try_acquire().unwrap_err().retry_after(), Some(10 * SEC));
    assert_eq!(
        rec.transitions(),
        [
            (State::Closed, State::ForcedOpen),
            (State::ForcedOpen, State::Disabled),
            (State::Disabled, State::MetricsOnly),
            (State::MetricsOnly, State::Closed),
            (State::Closed, State::Open)
        ]
    );
}

#[test]
fn observer_may_call_back_into_the_breaker() {
    struct Reentrant(std::sync::OnceLock<std::sync::Weak<CircuitBreaker<ManualClock, Self>>>);
    impl breaker_core::Observer for Reentrant {
        fn on_event(&self, event: &Event) {
            if let (
                Event::StateTransition {
                    to: State::Open, ..
                },
                Some(b),
            ) = (event, self.0.get().and_then(|w| w.upgrade()))
            {
                // Reading state and snapshot from inside the callback must not deadlock.
                assert_eq!(b.state(), State::Open);
                let _ = b.snapshot();
                b.force_open();
            }
        }
    }
    let b = Arc::new(
        CircuitBreaker::builder_with_clock(ManualClock::new())
            .consecutive_failures(1)
            .observer(Reentrant(Default::default()))
            .build()
            .unwrap(),
    );
    b.observer().0.set(Arc::downgrade(&b)).unwrap();
    fail(&b, 1);
    assert_eq!(b.state(), State::ForcedOpen);
}

#[test]
fn call_helper_counts_errors_and_records_panics_as_failures() {
    let b = CircuitBreaker::builder_with_clock(ManualClock::new())
        .consecutive_failures(2)
        .build()
        .unwrap();
    assert_eq!(b.call(|| Ok::<_, ()>(7)), Ok(7));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = b.call(|| -> Result<(), ()> { panic!("boom") });
    }));
    assert!(r.is_err(), "the panic keeps unwinding");
    assert_eq!(b.snapshot().totals.failures, 1);
    assert_eq!(
        b.call(|| Err::<(), _>("down")),
        Err(CallError::Inner("down"))
    );
    assert_eq!(b.state(), State::Open);
    let mut ran = false;
    let r = b.call(|| {
        ran = true;
        Ok::<_, ()>(())
    });
    assert!(!ran, "a rejected call is never executed");
    assert!(r.unwrap_err().rejected().is_some());
}

#[test]
fn call_measures_duration_only_for_slow_call_detection() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(5)
        .slow_call_duration(SEC)
        .build()
        .unwrap();
    assert!(b.measures_duration());
    b.call(|| {
        clock.advance(2 * SEC);
        Ok::<_, ()>(())
    })
    .unwrap();
    assert_eq!(b.snapshot().totals.slow, 1);
}

#[test]
fn snapshot_rates_and_consecutive_successes() {
    let (b, _rec) = count_window(10, 10, 50.0);
    fail(&b, 1);
    succeed(&b, 3);
    let s = b.snapshot();
    assert_eq!(s.failure_rate(), Some(25.0));
    assert_eq!(s.slow_call_rate(), Some(0.0));
    assert_eq!(s.consecutive_successes, 3);
    assert_eq!(s.totals.requests(), 4);
    assert_eq!(s.window.successes(), 3);
}

#[test]
fn reconfigure_keeps_counts_and_refuses_shape_changes() {
    let (b, _rec) = count_window(10, 5, 80.0);
    fail(&b, 3);
    succeed(&b, 2); // 60 % < 80 %
    assert_eq!(b.state(), State::Closed);
    b.reconfigure(
        Config::builder()
            .count_window(10)
            .minimum_calls(5)
            .failure_rate(50.0)
            .build_config()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(b.snapshot().window.calls, 5, "counts kept");
    call(&b, Outcome::Success); // 3/6 = 50 %
    assert_eq!(b.state(), State::Open);
    assert_eq!(
        b.reconfigure(Config::builder().count_window(20).build_config().unwrap()),
        Err(ReconfigureError::WindowShapeChanged)
    );
    assert_eq!(
        b.reconfigure(
            Config::builder()
                .count_window(10)
                .trip_when(|_| true)
                .build_config()
                .unwrap()
        ),
        Err(ReconfigureError::ClosureChanged)
    );
    assert_eq!(b.policy(), PolicyKind::CountWindow { size: 10 });
}

#[test]
fn invalid_config_names_the_field_and_the_allowed_range() {
    let cases: Vec<(breaker_core::ConfigError, &str, &str)> = vec![
        (
            Config::builder()
                .consecutive_failures(0)
                .build_config()
                .unwrap_err(),
            "consecutive_failures",
            "1..=8_388_607",
        ),
        (
            Config::builder()
                .count_window(0)
                .build_config()
                .unwrap_err(),
            "count_window",
            "a window size in 1..=32_767",
        ),
        (
            Config::builder()
                .count_window(10)
                .minimum_calls(11)
                .build_config()
                .unwrap_err(),
            "minimum_calls",
            "1..=the count window size",
        ),
        (
            Config::builder()
                .count_window(10)
                .failure_rate(0.0)
                .build_config()
                .unwrap_err(),
            "failure_rate",
            "a percentage in (0, 100]",
        ),
        (
            Config::builder()
                .count_window(10)
                .failure_rate(f64::NAN)
                .build_config()
                .unwrap_err(),
            "failure_rate",
            "a percentage in (0, 100]",
        ),
        (
            Config::builder()
                .count_window(10)
                .slow_calls(Duration::ZERO, 50.0)
                .build_config()
                .unwrap_err(),
            "slow_calls.duration",
            "a duration > 0",
        ),
        (
            Config::builder()
                .time_window(Duration::ZERO, 1)
                .build_config()
                .unwrap_err(),
            "time_window.duration",
            "at least `buckets` nanoseconds (each bucket spans >= 1 ns)",
        ),
        (
            Config::builder()
                .time_window(SEC, 0)
                .build_config()
                .unwrap_err(),
            "time_window.buckets",
            "1..=1024",
        ),
        (
            Config::builder()
                .half_open_probes(0)
                .build_config()
                .unwrap_err(),
            "half_open_probes",
            "1..=2047",
        ),
        (
            Config::builder()
                .open_duration(Duration::ZERO)
                .build_config()
                .unwrap_err(),
            "open_duration",
            "a duration > 0",
        ),
        (
            Config::builder()
                .exponential_open_duration(SEC, 0.5, 10 * SEC)
                .build_config()
                .unwrap_err(),
            "exponential_open_duration.multiplier",
            "a finite number >= 1",
        ),
        (
            Config::builder()
                .exponential_open_duration(SEC, 2.0, MS)
                .build_config()
                .unwrap_err(),
            "exponential_open_duration.max",
            "a duration >= initial",
        ),
        (
            Config::builder()
                .max_half_open(Duration::ZERO)
                .build_config()
                .unwrap_err(),
            "max_half_open",
            "a duration > 0",
        ),
        (
            Config::builder()
                .failure_rate(50.0)
                .build_config()
                .unwrap_err(),
            "failure_rate",
            "only with a window: call count_window, time_window or cumulative_window",
        ),
        (
            Config::builder()
                .jitter(1.5, || 0)
                .build_config()
                .unwrap_err(),
            "jitter.factor",
            "a fraction in (0, 1)",
        ),
    ];
    for (err, field, allowed) in cases {
        assert_eq!((err.field(), err.allowed()), (field, allowed), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(field) && msg.contains(allowed), "{msg}");
        let _: &dyn std::error::Error = &err;
    }
    let err = Config::builder()
        .count_window(70_000)
        .build_config()
        .unwrap_err();
    assert_eq!(err.value(), ConfigValue::Count(70_000));
}

#[test]
fn rejection_and_call_errors_explain_what_to_do() {
    let (b, _clock, _rec) = consecutive(1);
    fail(&b, 1);
    let r = b.try_acquire().unwrap_err();
    assert_eq!(
        r.to_string(),
        "circuit breaker is open: the call was not attempted; retry in 10 s or serve a fallback"
    );
    // A wrapper shows what it wraps; its sources continue with the causes, each once (as
    // `anyhow` or `eyre` print a report).
    let io = std::io::Error::other(Cause("connection reset by peer"));
    let e: CallError<std::io::Error> = CallError::Inner(io);
    assert_eq!(report(&e), ["connection reset by peer"]);
    let e: CallError<std::io::Error> = CallError::Rejected(r);
    assert_eq!(report(&e), [r.to_string()]);
}

#[derive(Debug)]
struct Cause(&'static str);

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Cause {}

/// Every message of an error report: the error, then each source.
fn report(e: &dyn std::error::Error) -> Vec<String> {
    let mut lines = vec![e.to_string()];
    let mut next = e.source();
    while let Some(cause) = next {
        lines.push(cause.to_string());
        next = cause.source();
    }
    lines
}

#[test]
fn time_window_trips_on_a_success_when_old_successes_expire() {
    let clock = ManualClock::new();
    let b = CircuitBreaker::builder_with_clock(clock.clone())
        .time_window(10 * SEC, 10)
        .minimum_calls(4)
        .failure_rate(50.0)
        .build()
        .unwrap();
    succeed(&b, 4); // t = 0 s
    clock.advance(5 * SEC);
    fail(&b, 3); // 3/7 = 43 %
    succeed(&b, 1); // 3/8, same tick: still below
    assert_eq!(b.state(), State::Closed);
    clock.advance(5 * SEC); // the four t = 0 successes leave the window: 3/4
    call(&b, Outcome::Success); // 3/5 = 60 % >= 50 %
    assert_eq!(b.state(), State::Open);
}
