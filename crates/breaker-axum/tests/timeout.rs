//! A handler that hangs under an outer timeout layer (tower-http's `TimeoutLayer`, which
//! answers and drops the handler when its timer fires): with the layer's `timeout` set to
//! the same, each request it drops is a failure and the breaker trips; without it, they
//! would all be neutral. Real axum server and client over loopback; breakers on the real
//! clock (the timeouts are real); every wait bounded by the 100 ms timeout.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use breaker_axum::ServerBreakerLayer;
use breaker_core::{CircuitBreaker, State};
use common::{client, get as http_get, serve};
use http::StatusCode;
use tower_http::timeout::TimeoutLayer;

const TIMEOUT: Duration = Duration::from_millis(100);

async fn hang() -> &'static str {
    tokio::time::sleep(Duration::from_secs(10)).await;
    "never"
}

#[tokio::test]
async fn requests_an_outer_timeout_drops_trip_the_breaker() {
    let breaker = Arc::new(
        CircuitBreaker::builder()
            .consecutive_failures(3)
            .build()
            .unwrap(),
    );
    let app = Router::new()
        .route("/slow", get(hang))
        .layer(
            ServerBreakerLayer::new(breaker.clone())
                .timeout(TIMEOUT)
                .unwrap(),
        )
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            TIMEOUT,
        ));
    let addr = serve(app).await;
    let client = client();
    for _ in 0..3 {
        let status = http_get(&client, format!("http://{addr}/slow"))
            .await
            .status;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    }
    let s = breaker.snapshot();
    assert_eq!(s.state, State::Open, "{s:?}");
    assert_eq!((s.totals.failures, s.totals.cancelled), (3, 0));
    let status = http_get(&client, format!("http://{addr}/slow"))
        .await
        .status;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "refused at once");
}

#[test]
fn a_zero_timeout_is_refused_naming_the_field() {
    let err = ServerBreakerLayer::new(CircuitBreaker::builder().build().unwrap())
        .timeout(Duration::ZERO)
        .unwrap_err();
    assert_eq!(err.field(), "timeout");
}
