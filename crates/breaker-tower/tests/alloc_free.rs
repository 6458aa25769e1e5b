//! A call through the layer allocates nothing on the happy path, nor when rejected; nor does
//! a keyed registry's lookup of an existing key, through its layer or not.

use std::future::{Future, ready};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use breaker_core::{CircuitBreaker, ManualClock};
use breaker_test_support::{CountingAllocator, allocations};
use breaker_tower::{BreakerLayer, KeyedBreakerLayer, KeyedRegistry};
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

#[test]
fn a_keyed_lookup_of_an_existing_key_does_not_allocate() {
    let breaker = || {
        CircuitBreaker::builder_with_clock(ManualClock::new())
            .consecutive_failures(5)
            .thread_counters(0)
            .build()
            .unwrap()
    };
    let hosts = KeyedRegistry::new(100, move |_: &String| breaker()).unwrap();
    let by_number = Arc::new(KeyedRegistry::new(100, move |_: &u32| breaker()).unwrap());
    let inner = service_fn(|n: u32| {
        ready(if n.is_multiple_of(10) {
            Err(Refused)
        } else {
            Ok(n)
        })
    });
    let mut svc = KeyedBreakerLayer::new(|n: &u32| n % 4, by_number.clone()).layer(inner);
    for key in 0..4 {
        let _ = call(&mut svc, key);
    }
    hosts.get("a.example");
    hosts.get("b.example");
    let n = allocations(|| {
        for i in 0..10_000 {
            let _ = call(&mut svc, i);
            std::hint::black_box(hosts.get(if i % 2 == 0 { "a.example" } else { "b.example" }));
        }
    });
    assert_eq!(n, 0);
    assert_eq!((hosts.len(), by_number.len()), (2, 4));
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
