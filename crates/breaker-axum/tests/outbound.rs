//! Outbound protection: breaker_tower's keyed layer with the HTTP classifier around a real
//! hyper-util client, one breaker per upstream host; outages from a real 5xx upstream and a
//! real TCP proxy that cuts connections.

mod common;

use std::sync::Arc;
use std::time::Duration;

use breaker_axum::HttpClassifier;
use breaker_core::{CircuitBreaker, ManualClock, RejectReason, State};
use breaker_test_support::FaultProxy;
use breaker_tower::{Error, KeyedBreakerLayer, KeyedRegistry};
use common::{Upstream, client};
use http::{Request, StatusCode};
use http_body_util::Empty;
use hyper::body::Bytes;
use tower::{Layer, ServiceExt};

fn authority(req: &Request<Empty<Bytes>>) -> String {
    req.uri()
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_breaker_per_upstream_host() {
    let (good, good_addr) = Upstream::start().await;
    let (bad, bad_addr) = Upstream::start().await;
    let proxy = FaultProxy::start(good_addr).await;
    let proxy_addr = proxy.addr();
    bad.fail(true);

    let clock = ManualClock::new();
    let c = clock.clone();
    let registry = Arc::new(
        KeyedRegistry::new(64, move |_host: &String| {
            CircuitBreaker::builder_with_clock(c.clone())
                .consecutive_failures(2)
                .open_duration(Duration::from_secs(5))
                .build()
                .expect("valid settings")
        })
        .unwrap(),
    );
    let service = KeyedBreakerLayer::new(authority as fn(&_) -> String, registry.clone())
        .classify(HttpClassifier::new())
        .layer(client());
    let call = |addr: std::net::SocketAddr| {
        let service = service.clone();
        async move {
            let req = Request::get(format!("http://{addr}/data"))
                .body(Empty::new())
                .unwrap();
            service.oneshot(req).await
        }
    };

    // The failing upstream trips its own breaker...
    for _ in 0..2 {
        let r = call(bad_addr).await.unwrap();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    match call(bad_addr).await {
        Err(Error::Rejected(r)) => assert_eq!(r.reason(), RejectReason::Open),
        other => panic!("expected a rejection, got {:?}", other.map(|r| r.status())),
    }
    assert_eq!(bad.hits(), 2, "the rejected request never left the client");

    // ...while the healthy one (through the proxy) keeps working.
    for _ in 0..3 {
        assert_eq!(call(proxy_addr).await.unwrap().status(), StatusCode::OK);
    }
    // A transport fault: the proxy cuts connections. Errors with no response are failures.
    proxy.refuse(true);
    for _ in 0..2 {
        assert!(matches!(call(proxy_addr).await, Err(Error::Inner(_))));
    }
    assert!(matches!(call(proxy_addr).await, Err(Error::Rejected(_))));
    assert_eq!(good.hits(), 3);

    // Recovery, per host.
    proxy.refuse(false);
    clock.advance(Duration::from_secs(5) + Duration::from_nanos(1));
    assert_eq!(call(proxy_addr).await.unwrap().status(), StatusCode::OK);
    let breaker = registry.peek(&proxy_addr.to_string()).unwrap();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(
        registry.peek(&bad_addr.to_string()).unwrap().state(),
        State::HalfOpen
    );
    assert_eq!(registry.len(), 2);
}

/// An upstream that sheds load says for how long: `429` or `503` with `Retry-After`. The
/// outbound classifier counts both as failures, and the breaker they open stays open at
/// least as long as the upstream asked (up to its `max_pushback`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_sets_the_open_period() {
    use axum::routing::get;
    for (status, retry_after, expected) in [
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "120",
            Duration::from_secs(120),
        ),
        (StatusCode::TOO_MANY_REQUESTS, "45", Duration::from_secs(45)),
        // Longer than the breaker allows: cut to its max_pushback.
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "86400",
            Duration::from_secs(600),
        ),
        // Shorter than its own open period: its own stands.
        (StatusCode::SERVICE_UNAVAILABLE, "1", Duration::from_secs(5)),
    ] {
        let app = axum::Router::new().route(
            "/data",
            get(move || async move { (status, [("retry-after", retry_after)], "busy") }),
        );
        let addr = common::serve(app).await;
        let breaker = Arc::new(
            CircuitBreaker::builder_with_clock(ManualClock::new())
                .consecutive_failures(1)
                .open_duration(Duration::from_secs(5))
                .max_pushback(Duration::from_secs(600))
                .build()
                .unwrap(),
        );
        let service = breaker_tower::BreakerLayer::new(breaker.clone())
            .classify(HttpClassifier::outbound())
            .layer(client());
        let req = Request::get(format!("http://{addr}/data"))
            .body(Empty::new())
            .unwrap();
        let answer = service.oneshot(req).await.unwrap();
        assert_eq!(answer.status(), status);
        assert_eq!(breaker.state(), State::Open);
        assert_eq!(
            breaker.retry_after(),
            Some(expected),
            "{status} {retry_after}"
        );
    }
}
