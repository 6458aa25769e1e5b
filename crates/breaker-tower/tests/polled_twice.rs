//! A response future polled again after it returned its result panics (as a completed
//! future may), for an admitted call and a refused one alike, and records nothing twice.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use breaker_core::CircuitBreaker;
use breaker_tower::BreakerLayer;
use tower::{Layer, Service, service_fn};

fn poll_twice<F: Future>(fut: F) -> String {
    let mut cx = Context::from_waker(Waker::noop());
    let mut fut = pin!(fut);
    assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(_)));
    let Err(again) = catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))) else {
        panic!("polled again after it completed, and did not panic");
    };
    again
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .unwrap_or_default()
}

#[test]
fn a_completed_response_future_panics_when_polled_again() {
    let breaker = std::sync::Arc::new(CircuitBreaker::builder().build().unwrap());
    let mut service = BreakerLayer::new(breaker.clone()).layer(service_fn(|n: u32| async move {
        Ok::<_, std::io::Error>(n)
    }));
    let message = poll_twice(service.call(1));
    assert!(message.contains("polled after it completed"), "{message}");
    assert_eq!(breaker.snapshot().totals.successes, 1, "recorded once");

    breaker.force_open();
    let message = poll_twice(service.call(2));
    assert!(message.contains("polled after it completed"), "{message}");
    assert_eq!(breaker.snapshot().totals.rejected, 1);
}
