//! A guarded future polled again after it returned its result panics (as a completed future
//! may), and records nothing twice.

use std::future::{Future, IntoFuture};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use breaker_async::GuardExt;
use breaker_core::CircuitBreaker;

#[test]
fn a_completed_guarded_future_panics_when_polled_again() {
    let breaker = CircuitBreaker::builder().build().unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    let mut call = pin!(
        breaker
            .guard(async { Ok::<_, std::io::Error>(1) })
            .into_future()
    );
    assert!(matches!(call.as_mut().poll(&mut cx), Poll::Ready(Ok(1))));
    let again = catch_unwind(AssertUnwindSafe(|| call.as_mut().poll(&mut cx))).unwrap_err();
    let message = again.downcast_ref::<&str>().copied().unwrap_or_default();
    assert!(message.contains("polled after it completed"), "{message}");
    assert_eq!(breaker.snapshot().totals.successes, 1, "recorded once");
}
