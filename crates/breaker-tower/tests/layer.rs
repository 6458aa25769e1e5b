//! The tower layer's contract, around in-process services (the HTTP and gRPC crates test it
//! over real sockets).

use std::future::{Future, Ready, ready};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use breaker_core::{CircuitBreaker, ManualClock, Outcome, RejectReason, State};
use breaker_tower::error::{BoxError, rejection};
use breaker_tower::{BreakerLayer, Error, KeyedBreakerLayer, KeyedRegistry};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

fn breaker(clock: &ManualClock, threshold: u32) -> Arc<CircuitBreaker<ManualClock>> {
    Arc::new(
        CircuitBreaker::builder_with_clock(clock.clone())
            .consecutive_failures(threshold)
            .open_duration(Duration::from_secs(1))
            .build()
            .unwrap(),
    )
}

/// A service answering `Ok(n)` for even `n`, `Err("odd n")` for odd, counting its calls.
fn parity(
    calls: Arc<AtomicU32>,
) -> impl Service<u32, Response = u32, Error = String, Future = Ready<Result<u32, String>>> + Clone
{
    service_fn(move |n: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        ready(if n.is_multiple_of(2) {
            Ok(n)
        } else {
            Err(format!("odd {n}"))
        })
    })
}

/// The error's message, or the rejection's reason.
fn inner_message(result: Result<u32, Error>) -> String {
    let err = result.expect_err("an error");
    assert!(err.rejected().is_none(), "not a rejection: {err}");
    err.to_string()
}

#[tokio::test]
async fn rejected_requests_never_reach_the_inner_service() {
    let clock = ManualClock::new();
    let b = breaker(&clock, 2);
    let calls = Arc::new(AtomicU32::new(0));
    let svc = BreakerLayer::new(b.clone()).layer(parity(calls.clone()));
    assert_eq!(svc.clone().oneshot(2).await.unwrap(), 2);
    assert_eq!(inner_message(svc.clone().oneshot(1).await), "odd 1");
    assert_eq!(inner_message(svc.clone().oneshot(3).await), "odd 3");
    assert_eq!(b.state(), State::Open);
    let r = svc.clone().oneshot(4).await.unwrap_err();
    assert_eq!(r.rejected().map(|r| r.reason()), Some(RejectReason::Open));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    clock.advance(Duration::from_secs(1) + Duration::from_nanos(1));
    assert_eq!(svc.clone().oneshot(4).await.unwrap(), 4);
    assert_eq!(b.state(), State::Closed);
}

#[tokio::test]
async fn classifier_decides_and_errors_box() {
    let clock = ManualClock::new();
    let b = breaker(&clock, 1);
    let svc = BreakerLayer::new(b.clone())
        .classify(|r: &Result<u32, String>| {
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

    // The inner error comes back as tower's BoxError, itself (downcastable).
    let io = service_fn(|_: ()| ready(Err::<(), _>(std::io::Error::other("refused"))));
    let svc = BreakerLayer::new(b).layer(io);
    let err = svc.oneshot(()).await.unwrap_err();
    assert_eq!(err.to_string(), "refused");
    let inner = err.into_inner().expect("the inner error");
    assert!(inner.downcast_ref::<std::io::Error>().is_some());
}

#[test]
fn a_dropped_response_future_frees_its_probe() {
    let clock = ManualClock::new();
    let b = breaker(&clock, 1);
    let mut svc = BreakerLayer::new(b.clone()).layer(service_fn(|_: ()| {
        std::future::pending::<Result<(), BoxError>>()
    }));
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

/// An inner service that is never ready, and fails the test if it is ever called.
struct NeverReady;
impl Service<()> for NeverReady {
    type Response = ();
    type Error = BoxError;
    type Future = Ready<Result<(), BoxError>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Pending
    }
    fn call(&mut self, _: ()) -> Self::Future {
        panic!("called an inner service that never reported ready")
    }
}

#[test]
fn poll_ready_waits_for_the_inner_service_while_the_breaker_admits() {
    let b = breaker(&ManualClock::new(), 1);
    let mut svc = BreakerLayer::new(b).layer(NeverReady);
    assert!(
        svc.poll_ready(&mut Context::from_waker(Waker::noop()))
            .is_pending()
    );
}

/// While open, callers are answered at once, as tower's `LoadShed` does: they do not queue
/// behind a saturated inner service, and the inner service is never called.
#[test]
fn while_open_poll_ready_does_not_wait_for_the_inner_service() {
    let clock = ManualClock::new();
    let b = breaker(&clock, 1);
    b.trip();
    let mut svc = BreakerLayer::new(b.clone()).layer(NeverReady);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));
    let mut fut = pin!(svc.call(()));
    let Poll::Ready(Err(err)) = fut.as_mut().poll(&mut cx) else {
        panic!("rejected at once")
    };
    let rejected = err.rejected().expect("a rejection");
    assert_eq!(rejected.retry_after(), Some(Duration::from_secs(1)));

    // Once the breaker admits a probe, poll_ready waits for the inner service again; the
    // probe is held meanwhile and goes back when the service is dropped.
    clock.advance(Duration::from_secs(1) + Duration::from_nanos(1));
    assert!(svc.poll_ready(&mut cx).is_pending());
    assert_eq!(b.snapshot().half_open_admitted, 1);
    drop(svc);
    assert_eq!(b.snapshot().half_open_admitted, 0);
}

/// A service over a half-open breaker (one probe slot) whose classifier panics, made ready:
/// its next call is the probe.
fn half_open_with_a_panicking_classifier(
    clock: &ManualClock,
) -> (
    Arc<CircuitBreaker<ManualClock>>,
    impl Service<u32, Response = u32, Error = Error>,
) {
    let b = breaker(clock, 1);
    let mut svc = BreakerLayer::new(b.clone())
        .classify(|_: &Result<u32, String>| -> Outcome { panic!("classifier bug") })
        .layer(parity(Default::default()));
    b.trip();
    clock.advance(Duration::from_secs(1) + Duration::from_nanos(1));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    (b, svc)
}

/// A classifier that panics inside the response future must not keep the probe slot.
#[test]
fn a_panicking_classifier_gives_the_probe_back() {
    let clock = ManualClock::new();
    let (b, mut svc) = half_open_with_a_panicking_classifier(&clock);
    let fut = svc.call(2);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let mut fut = pin!(fut);
        let _ = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    }));
    assert!(panicked.is_err());
    let s = b.snapshot();
    assert_eq!((s.state, s.half_open_admitted), (State::HalfOpen, 0));
    assert!(b.try_acquire().unwrap().is_probe(), "the slot came back");
}

/// After its classifier panicked, a response future is done: the probe slot is back before
/// the future is dropped, and polling it again panics as for any completed future instead of
/// polling the inner future a second time.
#[test]
fn a_response_future_whose_classifier_panicked_is_done() {
    let clock = ManualClock::new();
    let (b, mut svc) = half_open_with_a_panicking_classifier(&clock);
    let mut fut = Box::pin(svc.call(2));
    let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    }));
    let message = first.unwrap_err();
    assert_eq!(message.downcast_ref::<&str>(), Some(&"classifier bug"));
    assert_eq!(b.snapshot().half_open_admitted, 0, "the slot came back");
    let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()));
    }));
    let message = again.unwrap_err();
    let message = message
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| message.downcast_ref::<String>().map(String::as_str))
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("polled after it completed"),
        "polled again, it said {message:?}"
    );
    drop(fut);
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
    let err = svc.clone().oneshot(3).await.unwrap_err();
    assert!(err.rejected().is_some());
    assert_eq!(svc.clone().oneshot(2).await.unwrap(), 2); // key 0 unaffected
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

/// Registered as a group, a keyed registry's members can be listed, found by their key
/// and steered (an admin interface's `group/key`), and looking one up never makes it.
#[tokio::test]
async fn keyed_members_are_found_and_steered_through_a_registry() {
    let clock = ManualClock::new();
    let c = clock.clone();
    let keyed = Arc::new(
        KeyedRegistry::new(100, move |host: &String| {
            CircuitBreaker::builder_with_clock(c.clone())
                .name(format!("upstream {host}"))
                .consecutive_failures(1)
                .build()
                .unwrap()
        })
        .unwrap(),
    );
    let a = keyed.get("a.example");
    keyed.get("b.example");
    let registry = breaker_core::Registry::new();
    registry.register_group("upstreams", keyed.clone()).unwrap();

    let names: Vec<_> = registry.breakers().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["upstreams/a.example", "upstreams/b.example"]);
    let found = registry.get("upstreams/a.example").expect("held");
    assert_eq!(found.breaker.name(), "upstream a.example");
    assert!(found.breaker.config().is_some());
    found
        .breaker
        .apply(breaker_core::OperatorAction::ForceOpen)
        .unwrap();
    assert_eq!(a.state(), State::ForcedOpen, "the very breaker calls use");
    assert!(registry.get("upstreams/c.example").is_none());
    assert_eq!(keyed.len(), 2, "a lookup makes no breaker");
}

/// The breaker in a real tower stack: `Buffer` (which needs `Into<BoxError>` errors) in
/// front, `Timeout` and `ConcurrencyLimit` around and under it. Timeouts of the inner
/// `Timeout` count as failures and trip the breaker; then requests are refused through the
/// buffer with a `Rejected` that `rejection` finds behind `Buffer`'s own error wrapper.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn works_in_a_stack_with_buffer_timeout_and_concurrency_limit() {
    let clock = ManualClock::new();
    let b = breaker(&clock, 2);
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let upstream = service_fn(move |slow: bool| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            if slow {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            Ok::<_, BoxError>("pong")
        }
    });
    let stack = ServiceBuilder::new()
        .buffer(8)
        .timeout(Duration::from_secs(5)) // outer: a whole-request deadline
        .concurrency_limit(4)
        .layer(BreakerLayer::new(b.clone()))
        .concurrency_limit(2)
        .timeout(Duration::from_millis(100)) // inner: per-call timeout, seen by the breaker
        .service(upstream);

    assert_eq!(stack.clone().oneshot(false).await.unwrap(), "pong");
    for _ in 0..2 {
        let err = stack.clone().oneshot(true).await.unwrap_err();
        assert!(rejection(err.as_ref()).is_none());
        assert!(
            error_chain(err.as_ref()).contains("request timed out"),
            "{}",
            error_chain(err.as_ref())
        );
    }
    assert_eq!(b.state(), State::Open);
    let before = calls.load(Ordering::SeqCst);
    for _ in 0..5 {
        let err = stack.clone().oneshot(false).await.unwrap_err();
        let rejected = rejection(err.as_ref()).expect("refused by the breaker, through Buffer");
        assert_eq!(rejected.reason(), RejectReason::Open);
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "nothing reached upstream"
    );

    clock.advance(Duration::from_secs(1) + Duration::from_nanos(1));
    assert_eq!(stack.clone().oneshot(false).await.unwrap(), "pong");
    assert_eq!(b.state(), State::Closed);
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}
