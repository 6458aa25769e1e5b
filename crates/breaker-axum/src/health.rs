//! `GET /health` and `GET /ready` over a [`Registry`] of named breakers.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use breaker_core::{Registry, Report};
use http::StatusCode;
use serde_json::{Value, json};

fn breaker_json(r: &Report) -> Value {
    let s = &r.snapshot;
    json!({
        "name": r.name,
        "critical": r.critical,
        "state": s.state.as_str(),
        "retry_after_ms": s.retry_after.map(|d| d.as_millis() as u64),
        "window": {
            "calls": s.window.calls,
            "failures": s.window.failures,
            "slow_calls": s.window.slow_calls,
            "failure_rate": s.failure_rate(),
            "slow_call_rate": s.slow_call_rate(),
            "consecutive_failures": s.window.consecutive_failures,
        },
        "totals": {
            "successes": s.totals.successes,
            "failures": s.totals.failures,
            "rejected": s.totals.rejected,
            "slow": s.totals.slow,
            "ignored": s.totals.ignored,
        },
    })
}

async fn health(State(registry): State<Arc<Registry>>) -> Json<Value> {
    let reports = registry.report();
    let degraded = reports.iter().any(|r| {
        matches!(
            r.snapshot.state,
            breaker_core::State::Open | breaker_core::State::ForcedOpen
        )
    });
    Json(json!({
        "status": if degraded { "degraded" } else { "ok" },
        "breakers": reports.iter().map(breaker_json).collect::<Vec<_>>(),
    }))
}

async fn ready(State(registry): State<Arc<Registry>>) -> Response {
    let open = registry.not_ready();
    if open.is_empty() {
        return (StatusCode::OK, Json(json!({ "ready": true }))).into_response();
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "ready": false, "open": open })),
    )
        .into_response()
}

/// Routes for Kubernetes probes over `registry`:
///
/// - `GET /health`: always `200`, JSON with every breaker's state and counts (members of a
///   keyed registry as `group/key`), and `"status": "degraded"` while any of them is open
///   or forced open;
/// - `GET /ready`: `200 {"ready": true}`, or `503 {"ready": false, "open": [names]}` while a
///   breaker registered as *critical* refuses calls (forced open, or open and enforcing its
///   refusals: one still being rolled out with an enforcement below 100 % lets calls
///   through and does not count), so traffic is routed elsewhere.
///
/// Readiness only follows breakers registered with
/// [`Registry::register_critical`](breaker_core::Registry::register_critical). A breaker in
/// front of a shared downstream dependency should not be critical: it opens on every
/// replica at once, and a failing `/ready` everywhere takes the whole service out of the
/// load balancer. See [`Registry`](breaker_core::Registry).
///
/// ```
/// use axum::Router;
/// use breaker_core::{CircuitBreaker, Registry};
/// use std::sync::Arc;
///
/// let registry = Arc::new(Registry::new());
/// registry.register("payments-api", Arc::new(CircuitBreaker::builder().build()?))?;
/// registry.register_critical("local-cache", Arc::new(CircuitBreaker::builder().build()?))?;
/// let app: Router = Router::new().merge(breaker_axum::health_routes(registry));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn health_routes(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(registry)
}
