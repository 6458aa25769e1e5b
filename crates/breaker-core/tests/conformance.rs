//! The documented behaviour of sony/gobreaker and Resilience4j, re-stated with exact numbers
//! in this crate's API. Where we deliberately differ, the test says so.
#![cfg(not(loom))]

mod common;

use std::time::Duration;

use breaker_core::{CircuitBreaker, ManualClock, Outcome, RejectReason, State};
use common::*;

const SEC: Duration = Duration::from_secs(1);

mod gobreaker {
    use super::*;

    /// gobreaker's `Settings{}` defaults: MaxRequests 0 -> 1, Interval 0 (counts never
    /// cleared while closed), Timeout 0 -> 60 s, ReadyToTrip `ConsecutiveFailures > 5`.
    fn default_settings(clock: &ManualClock) -> CircuitBreaker<ManualClock> {
        CircuitBreaker::builder_with_clock(clock.clone())
            .consecutive_failures(6)
            .half_open_probes(1)
            .open_duration(60 * SEC)
            .build()
            .unwrap()
    }

    #[test]
    fn default_ready_to_trip_is_more_than_five_consecutive_failures() {
        let clock = ManualClock::new();
        let b = default_settings(&clock);
        fail(&b, 5);
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.snapshot().window.consecutive_failures, 5);
        fail(&b, 1);
        assert_eq!(b.state(), State::Open);
        // gobreaker clears Counts on the new generation.
        assert_eq!(b.snapshot().window.consecutive_failures, 0);
    }

    #[test]
    fn timeout_expiry_is_strict_and_max_requests_limits_half_open() {
        let clock = ManualClock::new();
        let b = default_settings(&clock);
        fail(&b, 6);
        assert_eq!(b.try_acquire().unwrap_err().reason(), RejectReason::Open); // ErrOpenState
        clock.advance(59 * SEC);
        assert_eq!(b.state(), State::Open);
        clock.advance(SEC); // expiry.Before(now) is false at the instant itself
        assert_eq!(b.state(), State::Open);
        clock.advance(NS);
        assert_eq!(b.state(), State::HalfOpen);
        let probe = b.try_acquire().unwrap();
        // ErrTooManyRequests while MaxRequests (1) probes are in flight.
        assert_eq!(
            b.try_acquire().unwrap_err().reason(),
            RejectReason::HalfOpenFull
        );
        probe.record(Outcome::Success);
        assert_eq!(b.state(), State::Closed); // ConsecutiveSuccesses >= MaxRequests
    }

    #[test]
    fn max_requests_five_needs_five_consecutive_successes() {
        let clock = ManualClock::new();
        let b = CircuitBreaker::builder_with_clock(clock.clone())
            .consecutive_failures(6)
            .half_open_probes(5)
            .open_duration(60 * SEC)
            .build()
            .unwrap();
        fail(&b, 6);
        clock.advance(60 * SEC + NS);
        succeed(&b, 4);
        assert_eq!(b.state(), State::HalfOpen);
        succeed(&b, 1);
        assert_eq!(b.state(), State::Closed);
        // A half-open failure re-opens at once (onFailure in StateHalfOpen).
        fail(&b, 6);
        clock.advance(60 * SEC + NS);
        succeed(&b, 4);
        fail(&b, 1);
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn interval_clears_counts_periodically_in_closed_state() {
        // Interval = 10 s: a tumbling window of one 10 s bucket, aligned to the start of the
        // closed generation.
        let clock = ManualClock::new();
        let b = CircuitBreaker::builder_with_clock(clock.clone())
            .time_window(10 * SEC, 1)
            .trip_when(|c| c.consecutive_failures > 5)
            .build()
            .unwrap();
        fail(&b, 3);
        succeed(&b, 2);
        assert_eq!(b.snapshot().window.calls, 5);
        clock.advance(10 * SEC);
        assert_eq!(b.snapshot().window.calls, 0, "cleared at the interval");
        call(&b, Outcome::Failure);
        let s = b.snapshot();
        assert_eq!((s.window.calls, s.window.failures), (1, 1));
    }

    #[test]
    fn ready_to_trip_on_failure_ratio_from_the_tutorial() {
        // counts.Requests >= 3 && failureRatio >= 0.6, Interval 0.
        let b = CircuitBreaker::builder_with_clock(ManualClock::new())
            .cumulative_window()
            .trip_when(|c| c.calls >= 3 && c.failures as f64 / c.calls as f64 >= 0.6)
            .build()
            .unwrap();
        call(&b, Outcome::Success);
        call(&b, Outcome::Failure);
        assert_eq!(b.state(), State::Closed);
        call(&b, Outcome::Failure); // 2/3 = 0.67
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn excluded_errors_count_nowhere() {
        // IsExcluded: the request is neither success nor failure.
        let b = CircuitBreaker::builder_with_clock(ManualClock::new())
            .consecutive_failures(2)
            .build()
            .unwrap();
        fail(&b, 1);
        call(&b, Outcome::Ignored);
        assert_eq!(
            b.snapshot().window.consecutive_failures,
            1,
            "the run is not broken"
        );
        fail(&b, 1);
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn results_from_a_previous_generation_are_dropped() {
        // afterRequest(before, success): generation != before -> return.
        let clock = ManualClock::new();
        let b = default_settings(&clock);
        let old = b.try_acquire().unwrap();
        fail(&b, 6);
        clock.advance(60 * SEC + NS);
        let probe = b.try_acquire().unwrap();
        old.record(Outcome::Success); // would close the half-open breaker if counted
        assert_eq!(b.state(), State::HalfOpen);
        assert_eq!(b.snapshot().totals.late, 1);
        probe.record(Outcome::Success);
        assert_eq!(b.state(), State::Closed);
    }
}

mod resilience4j {
    use super::*;

    /// Resilience4j's defaults: count window 100, minimum 100 calls, failure rate 50 %,
    /// wait 60 s in open, 10 permitted calls in half-open.
    fn defaults(clock: &ManualClock) -> CircuitBreaker<ManualClock> {
        CircuitBreaker::builder_with_clock(clock.clone())
            .count_window(100)
            .minimum_calls(100)
            .failure_rate(50.0)
            .open_duration(60 * SEC)
            .half_open_probes(10)
            .build()
            .unwrap()
    }

    #[test]
    fn no_rate_before_the_minimum_number_of_calls() {
        let clock = ManualClock::new();
        let b = defaults(&clock);
        fail(&b, 99);
        assert_eq!(
            b.state(),
            State::Closed,
            "99 failures < minimumNumberOfCalls"
        );
        fail(&b, 1);
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn threshold_is_reached_at_equal_rate() {
        let clock = ManualClock::new();
        let b = defaults(&clock);
        succeed(&b, 51);
        fail(&b, 49); // 49 %
        assert_eq!(b.state(), State::Closed);
        fail(&b, 1); // window slides: 50 successes, 50 failures = 50 %
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn slow_call_rate_threshold() {
        // slowCallDurationThreshold 2 s ("calls longer than"), slowCallRateThreshold 50 %.
        let b = CircuitBreaker::builder_with_clock(ManualClock::new())
            .count_window(10)
            .minimum_calls(10)
            .failure_rate(100.0)
            .slow_calls(2 * SEC, 50.0)
            .build()
            .unwrap();
        for _ in 0..5 {
            timed(&b, Outcome::Success, 2 * SEC); // equal: not slow
        }
        for _ in 0..4 {
            timed(&b, Outcome::Success, 3 * SEC);
        }
        timed(&b, Outcome::Failure, SEC);
        let s = b.snapshot();
        assert_eq!((s.window.calls, s.window.slow_calls), (10, 4));
        assert_eq!(s.state, State::Closed);
        timed(&b, Outcome::Success, 3 * SEC); // slides out a 2 s call: 5/10 slow
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn permitted_calls_in_half_open() {
        let clock = ManualClock::new();
        let b = defaults(&clock);
        fail(&b, 100);
        clock.advance(60 * SEC + NS);
        let probes: Vec<_> = (0..10).map(|_| b.try_acquire().unwrap()).collect();
        assert_eq!(
            b.try_acquire().unwrap_err().reason(),
            RejectReason::HalfOpenFull
        ); // CallNotPermitted
        for p in probes {
            p.record(Outcome::Success);
        }
        assert_eq!(b.state(), State::Closed);
        // Deliberate difference: Resilience4j evaluates the failure rate of the permitted
        // calls; we re-open on the first failed probe (gobreaker's rule, see design.md).
    }

    #[test]
    fn forced_open_disabled_and_reset() {
        let clock = ManualClock::new();
        let b = defaults(&clock);
        b.force_open(); // FORCED_OPEN: every call rejected
        for _ in 0..3 {
            assert_eq!(
                b.try_acquire().unwrap_err().reason(),
                RejectReason::ForcedOpen
            );
        }
        clock.advance(3600 * SEC);
        assert_eq!(b.state(), State::ForcedOpen, "no automatic transition");
        b.disable(); // DISABLED: every call permitted, nothing recorded
        fail(&b, 200);
        assert_eq!(b.snapshot().window.calls, 0);
        b.reset(); // back to CLOSED with empty metrics
        let s = b.snapshot();
        assert_eq!(
            (s.state, s.window.calls, s.open_attempts),
            (State::Closed, 0, 0)
        );
        fail(&b, 99);
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn metrics_only_records_but_never_trips() {
        let clock = ManualClock::new();
        let b = defaults(&clock);
        b.metrics_only();
        fail(&b, 150);
        let s = b.snapshot();
        assert_eq!(s.state, State::MetricsOnly);
        assert_eq!((s.window.calls, s.window.failures), (100, 100));
        assert_eq!(s.failure_rate(), Some(100.0));
    }
}
