//! A call through the layer allocates nothing on the happy path, nor when rejected.

use std::future::{Future, ready};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use breaker_core::{CircuitBreaker, ManualClock};
use breaker_test_support::{CountingAllocator, allocations};
use breaker_tower::BreakerLayer;
use tower::{Layer, Service, service_fn};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn call<S: Service<u32>>(svc: &mut S, n: u32) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let mut fut = pin!(svc.call(n));
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(r) => r,
        Poll::Pending => panic!("ready service"),
    }
}

#[test]
fn the_layer_does_not_allocate() {
    let breaker = Arc::new(
        CircuitBreaker::builder_with_clock(ManualClock::new())
            .count_window(100)
            .minimum_calls(10)
            .failure_rate(60.0)
            .build()
            .unwrap(),
    );
    // An error type whose boxing allocates nothing (a unit struct), so the count shows only
    // what the layer itself does.
    let inner = service_fn(|n: u32| {
        ready(if n.is_multiple_of(10) {
            Err(Refused)
        } else {
            Ok(n)
        })
    });
    let mut svc = BreakerLayer::new(breaker.clone()).layer(inner);
    let _ = call(&mut svc, 1);
    let n = allocations(|| {
        for i in 0..10_000 {
            let _ = call(&mut svc, i);
        }
        breaker.force_open();
        for i in 0..1_000 {
            assert!(call(&mut svc, i).is_err());
        }
    });
    assert_eq!(n, 0);
}

#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused")
    }
}

impl std::error::Error for Refused {}

#[test]
fn the_counting_allocator_sees_allocations() {
    assert_eq!(allocations(|| drop(std::hint::black_box(vec![1u8]))), 1);
}
