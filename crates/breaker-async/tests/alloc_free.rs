//! Guarding a future does not allocate on the happy path (nor on rejection).

use std::future::{Future, IntoFuture};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use breaker_async::{GuardExt, Timeout, Timer};
use breaker_core::{CircuitBreaker, ManualClock, State};
use breaker_test_support::{CountingAllocator, allocations};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Polls a future to completion on the current thread (no runtime, no allocation).
fn block_on<F: IntoFuture>(f: F) -> F::Output {
    let mut fut = pin!(f.into_future());
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// A timer whose sleep never fires, so the test needs no runtime.
#[derive(Clone, Copy)]
struct Never;
impl Timer for Never {
    type Sleep = std::future::Pending<()>;
    fn sleep(&self, _: Duration) -> Self::Sleep {
        std::future::pending()
    }
}

#[test]
fn guarded_calls_do_not_allocate() {
    let breaker = CircuitBreaker::builder_with_clock(ManualClock::new())
        .consecutive_failures(1)
        .slow_call_duration(Duration::from_secs(1))
        .build()
        .unwrap();
    let timeout = Timeout::new(Never, Duration::from_secs(1)).unwrap();
    let _ = block_on(breaker.guard(async { Ok::<_, ()>(0) })); // warm-up
    let n = allocations(|| {
        for i in 0..1000 {
            let r = block_on(
                breaker
                    .guard(async move { Ok::<_, ()>(i) })
                    .timeout(timeout),
            );
            assert_eq!(r, Ok(i));
        }
        let _ = block_on(breaker.guard(async { Err::<u32, _>(()) }));
        assert_eq!(breaker.state(), State::Open);
        for _ in 0..1000 {
            assert!(block_on(breaker.guard(async { Ok::<_, ()>(0) })).is_err());
        }
    });
    assert_eq!(n, 0);
}

#[test]
fn the_counting_allocator_sees_allocations() {
    assert_eq!(allocations(|| drop(std::hint::black_box(Box::new(1u8)))), 1);
}
