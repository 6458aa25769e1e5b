//! A call through the layer allocates nothing on the happy path, nor when rejected.
// A global allocator is unsafe to implement; this test-only one just counts and forwards.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::{Future, ready};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use breaker_core::{CircuitBreaker, ManualClock};
use breaker_tower::BreakerLayer;
use tower::{Layer, Service, service_fn};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

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
    let inner = service_fn(|n: u32| ready(if n % 10 == 0 { Err(n) } else { Ok(n) }));
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
fn the_counting_allocator_sees_allocations() {
    assert_eq!(allocations(|| drop(std::hint::black_box(vec![1u8]))), 1);
}
