//! The middleware's future polled again after it returned its response panics (as a
//! completed future may), for a guarded request and a refused one, and records nothing twice.

use std::convert::Infallible;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use breaker_axum::ServerBreakerLayer;
use breaker_core::CircuitBreaker;
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
fn a_completed_middleware_future_panics_when_polled_again() {
    let breaker = Arc::new(CircuitBreaker::builder().build().unwrap());
    let mut service = ServerBreakerLayer::new(breaker.clone()).layer(service_fn(
        |_req: http::Request<Body>| async { Ok::<Response, Infallible>("ok".into_response()) },
    ));
    let request = || http::Request::new(Body::empty());
    let message = poll_twice(service.call(request()));
    assert!(message.contains("polled after it completed"), "{message}");
    assert_eq!(breaker.snapshot().totals.successes, 1, "recorded once");

    breaker.force_open();
    let message = poll_twice(service.call(request()));
    assert!(message.contains("polled after it completed"), "{message}");
}
