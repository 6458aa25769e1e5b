//! The natural timeout idiom, `tokio::time::timeout(d, breaker.guard(call))`, drops the
//! guarded future when the deadline passes. A call dropped after it had already run past the
//! slow-call duration (or its own timeout) counts as a failure, so a hanging upstream trips
//! the breaker; a call dropped while still young stays neutral.
#![cfg(feature = "tokio")]

use std::future::{Future, pending};
use std::pin::pin;
use std::task::{Context, Waker};
use std::time::Duration;

use breaker_async::{GuardExt, Timeout, TokioClock, TokioTimer};
use breaker_core::{CircuitBreaker, ManualClock, State};
use futures_core::Stream;

/// An upstream call that never answers.
fn hang() -> std::future::Pending<Result<(), std::io::Error>> {
    pending()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_outer_timeout_on_a_hanging_upstream_trips_the_breaker() {
    let breaker = CircuitBreaker::builder_with_clock(TokioClock::new())
        .consecutive_failures(3)
        .slow_call_duration(Duration::from_secs(1))
        .build()
        .unwrap();
    for attempt in 1..=3 {
        let r = tokio::time::timeout(Duration::from_secs(2), breaker.guard(hang())).await;
        assert!(r.is_err(), "the outer timeout fired");
        let s = breaker.snapshot();
        assert_eq!(s.totals.failures, attempt, "{s:?}");
        assert_eq!(s.totals.slow, attempt);
    }
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_outer_timeout_at_the_guards_own_timeout_counts_as_a_failure() {
    // No slow-call detection: the guard's own timeout is the yardstick.
    let breaker = CircuitBreaker::builder_with_clock(TokioClock::new())
        .consecutive_failures(1)
        .build()
        .unwrap();
    let guarded = breaker
        .guard(hang())
        .timeout(Timeout::new(TokioTimer, Duration::from_secs(1)).unwrap());
    // Whichever timer fires first (the outer one drops the guard at 1 s; the guard's own
    // returns its timeout error), the call counts as a failure.
    let outer = tokio::time::timeout(Duration::from_secs(1), guarded).await;
    assert!(!matches!(outer, Ok(Ok(()))));
    assert_eq!(breaker.snapshot().totals.failures, 1);
    assert_eq!(breaker.state(), State::Open);
}

#[test]
fn a_call_cancelled_while_young_is_neutral_and_an_old_one_fails() {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(1)
        .slow_call_duration(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut cx = Context::from_waker(Waker::noop());

    // Cancelled after 1 s (< 2 s): nothing counted, the breaker stays closed.
    {
        let mut call = pin!(breaker.guard(hang()).into_future_for_test());
        assert!(call.as_mut().poll(&mut cx).is_pending());
        clock.advance(Duration::from_secs(1));
    }
    let s = breaker.snapshot();
    assert_eq!((s.totals.failures, s.totals.cancelled), (0, 1));
    assert_eq!(breaker.state(), State::Closed);

    // Cancelled after 3 s (> 2 s): a slow failure, which trips a threshold of one.
    {
        let mut call = pin!(breaker.guard(hang()).into_future_for_test());
        assert!(call.as_mut().poll(&mut cx).is_pending());
        clock.advance(Duration::from_secs(3));
    }
    let s = breaker.snapshot();
    assert_eq!((s.totals.failures, s.totals.slow), (1, 1));
    assert_eq!(breaker.state(), State::Open);
}

/// `IntoFuture` by name, to poll a guarded call by hand.
trait IntoFutureForTest: std::future::IntoFuture + Sized {
    fn into_future_for_test(self) -> Self::IntoFuture {
        self.into_future()
    }
}
impl<T: std::future::IntoFuture> IntoFutureForTest for T {}

/// A stream that yields one item, then waits forever.
struct OneThenHang(bool);

impl futures_core::Stream for OneThenHang {
    type Item = Result<u32, std::io::Error>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        if self.0 {
            return std::task::Poll::Pending;
        }
        self.0 = true;
        std::task::Poll::Ready(Some(Ok(1)))
    }
}

#[test]
fn a_stream_dropped_after_it_answered_is_neutral_however_long_it_ran() {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(1)
        .slow_call_duration(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    {
        let mut stream = pin!(breaker.guard_stream(OneThenHang(false)));
        assert!(
            stream.as_mut().poll_next(&mut cx).is_ready(),
            "the first item"
        );
        assert!(stream.as_mut().poll_next(&mut cx).is_pending());
        clock.advance(Duration::from_secs(60)); // the caller reads on, then stops
    }
    let s = breaker.snapshot();
    assert_eq!((s.totals.failures, s.totals.cancelled), (0, 1));
    // Before its first item, the same wait is a slow failure: the dependency hung.
    {
        let mut stream = pin!(breaker.guard_stream(OneThenHang(true)));
        assert!(stream.as_mut().poll_next(&mut cx).is_pending());
        clock.advance(Duration::from_secs(60));
    }
    assert_eq!(breaker.state(), State::Open);
}
