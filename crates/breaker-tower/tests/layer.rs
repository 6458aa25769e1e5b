//! The tower layer's contract, around in-process services (the HTTP and gRPC crates test it
//! over real sockets).

use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use breaker_core::{CircuitBreaker, ManualClock, Outcome, RejectReason, State};
use breaker_tower::{BreakerLayer, Error, KeyedBreakerLayer, KeyedRegistry};
use tower::{Layer, Service, ServiceExt, service_fn};

fn breaker(clock: &ManualClock, threshold: u32) -> Arc<CircuitBreaker<ManualClock>> {
    Arc::new(
        CircuitBreaker::builder_with_clock(clock.clone())
            .consecutive_failures(threshold)
            .open_duration(Duration::from_secs(1))
            .build()
            .unwrap(),
    )
}

/// A service answering `Ok(n)` for even `n`, `Err(n)` for odd, counting its calls.
fn parity(
    calls: Arc<AtomicU32>,
) -> impl Service<u32, Response = u32, Error = u32, Future = Ready<Result<u32, u32>>> + Clone {
    service_fn(move |n: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        ready(if n % 2 == 0 { Ok(n) } else { Err(n) })
    })
}

#[tokio::test]
async fn rejected_requests_never_reach_the_inner_service() {
    let clock = ManualClock::new();
    let b = breaker(&clock, 2);
    let calls = Arc::new(AtomicU32::new(0));
    let svc = BreakerLayer::new(b.clone()).layer(parity(calls.clone()));
    assert_eq!(svc.clone().oneshot(2).await, Ok(2));
    assert_eq!(svc.clone().oneshot(1).await, Err(Error::Inner(1)));
    assert_eq!(svc.clone().oneshot(3).await, Err(Error::Inner(3)));
    assert_eq!(b.state(), State::Open);
    let r = svc.clone().oneshot(4).await.unwrap_err();
    assert_eq!(r.rejected().map(|r| r.reason()), Some(RejectReason::Open));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    clock.advance(Duration::from_secs(1) + Duration::from_nanos(1));
    assert_eq!(svc.clone().oneshot(4).await, Ok(4));
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test]
async fn classifier_decides_and_errors_box() {
    let clock = ManualClock::new();
    let b = breaker(&clock, 1);
    let svc = BreakerLayer::new(b.clone())
        .classify(|r: &Result<u32, u32>| {
            if r.is_err() {
                Outcome::Ignored
            } else {
                Outcome::Success
            }
        })
        .layer(parity(Default::default()));
    for n in [1, 3, 5] {
        assert!(svc.clone().oneshot(n).await.is_err());
    }
    assert_eq!(b.state(), State::Closed);
    assert_eq!(b.snapshot().totals.ignored, 3);

    // At a service boundary the error converts into tower's BoxError.
    let io = service_fn(|_: ()| ready(Err::<(), _>(std::io::Error::other("refused"))));
    let svc = BreakerLayer::new(b).layer(io);
    let boxed: tower::BoxError = svc.oneshot(()).await.unwrap_err().into();
    assert_eq!(boxed.to_string(), "inner service failed: refused");
}

#[test]
fn a_dropped_response_future_frees_its_probe() {
    let clock = ManualClock::new();
    let b = breaker(&clock, 1);
    let mut svc = BreakerLayer::new(b.clone())
        .layer(service_fn(|_: ()| std::future::pending::<Result<(), ()>>()));
    b.trip();
    clock.advance(Duration::from_secs(1) + Duration::from_nanos(1));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    {
        let mut fut = pin!(svc.call(()));
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert_eq!(b.snapshot().half_open_admitted, 1);
    }
    let s = b.snapshot();
    assert_eq!(
        (s.state, s.half_open_admitted, s.totals.cancelled),
        (State::HalfOpen, 0, 1)
    );
}

#[test]
fn poll_ready_passes_through() {
    struct NotReady;
    impl Service<()> for NotReady {
        type Response = ();
        type Error = ();
        type Future = Ready<Result<(), ()>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Pending
        }
        fn call(&mut self, _: ()) -> Self::Future {
            unreachable!("never ready")
        }
    }
    let b = breaker(&ManualClock::new(), 1);
    let mut svc = BreakerLayer::new(b).layer(NotReady);
    assert!(
        svc.poll_ready(&mut Context::from_waker(Waker::noop()))
            .is_pending()
    );
}

#[tokio::test]
async fn keyed_breakers_are_independent_and_bounded() {
    let clock = ManualClock::new();
    let c = clock.clone();
    let registry = Arc::new(
        KeyedRegistry::new(100, move |_: &u32| {
            CircuitBreaker::builder_with_clock(c.clone())
                .consecutive_failures(1)
                .build()
                .unwrap()
        })
        .unwrap(),
    );
    let svc =
        KeyedBreakerLayer::new(|n: &u32| n % 2, registry.clone()).layer(parity(Default::default()));
    assert!(svc.clone().oneshot(1).await.is_err()); // key 1 trips
    assert!(matches!(
        svc.clone().oneshot(3).await,
        Err(Error::Rejected(_))
    ));
    assert_eq!(svc.clone().oneshot(2).await, Ok(2)); // key 0 unaffected
    assert_eq!(registry.len(), 2);

    let many =
        KeyedBreakerLayer::new(|n: &u32| *n, registry.clone()).layer(parity(Default::default()));
    for n in 0..10_000u32 {
        let _ = many.clone().oneshot(n * 2).await;
    }
    assert!(registry.len() <= 110, "bounded: {}", registry.len());
    assert_eq!(
        KeyedRegistry::<u32, ManualClock, breaker_core::NoopObserver>::new(0, |_| unreachable!())
            .unwrap_err()
            .field(),
        "keyed.capacity"
    );
}
