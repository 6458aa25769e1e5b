//! Metrics for operators: an axum service guarded by the breaker middleware, with its
//! breaker reporting through `breaker-metrics` and a `/metrics` endpoint rendering them in
//! Prometheus' text format (`metrics-exporter-prometheus`), next to `/health` and `/ready`.
//!
//! The program drives itself through a short outage of its database (a few good requests,
//! failures that trip the breaker, fast 503s) and prints the breaker's series from its own
//! `/metrics`. With `--serve-for SECONDS` it then keeps serving, so you can look yourself:
//! `curl http://ADDR/metrics`.
//!
//! Run: `cargo run -p breaker-examples --bin metrics_server -- --serve-for 60`

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use breaker_axum::{ServerBreakerLayer, health_routes};
use breaker_core::{CircuitBreaker, Registry};
use breaker_metrics::BreakerMetrics;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

#[derive(Clone)]
struct App {
    database_down: Arc<AtomicBool>,
    registry: Arc<Registry>,
    prometheus: PrometheusHandle,
}

/// The guarded handler: a database query that fails while the database is down.
async fn orders(State(app): State<App>) -> (StatusCode, &'static str) {
    if app.database_down.load(Ordering::SeqCst) {
        (StatusCode::INTERNAL_SERVER_ERROR, "database unavailable")
    } else {
        (StatusCode::OK, "[{\"id\": 1}]")
    }
}

/// Prometheus' scrape endpoint: window rates from the registry's snapshots, then the text.
async fn metrics(State(app): State<App>) -> impl IntoResponse {
    breaker_metrics::record_rates(&app.registry);
    app.prometheus.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.prometheus.render(),
    )
}

async fn get_text(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri = format!("http://{addr}{path}").parse().expect("a valid uri");
    let response = client.get(uri).await.expect("the server answers");
    let status = response.status();
    let body = response.into_body().collect().await.expect("a body");
    (
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let serve_for = std::env::args()
        .skip_while(|a| a != "--serve-for")
        .nth(1)
        .map(|s| s.parse::<u64>().map(Duration::from_secs))
        .transpose()?;

    // The exporter: call durations as a histogram (buckets), everything else as is.
    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(breaker_metrics::names::CALL_DURATION.into()),
            &[0.001, 0.005, 0.025, 0.1, 0.5, 2.5],
        )?
        .install_recorder()?;
    breaker_metrics::describe();

    let breaker = Arc::new(
        CircuitBreaker::builder()
            .name("orders-db")
            .consecutive_failures(3)
            .slow_call_duration(Duration::from_millis(500)) // also measures call durations
            .open_duration(Duration::from_secs(30))
            .observer(BreakerMetrics::new())
            .build()?,
    );
    let registry = Arc::new(Registry::new());
    registry.register("orders-db", breaker.clone())?;
    let app = App {
        database_down: Arc::new(AtomicBool::new(false)),
        registry: registry.clone(),
        prometheus,
    };
    let router = Router::new()
        .route("/orders", get(orders))
        .route("/metrics", get(metrics))
        .with_state(app.clone())
        .merge(health_routes(registry))
        .layer(
            ServerBreakerLayer::new(breaker.clone())
                .exempt("/metrics")
                .exempt("/health")
                .exempt("/ready"),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });

    // A short outage: 5 good requests, the database goes down (3 failures trip the
    // breaker), 4 requests shed with 503.
    for _ in 0..5 {
        assert_eq!(get_text(addr, "/orders").await.0, StatusCode::OK);
    }
    app.database_down.store(true, Ordering::SeqCst);
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(get_text(addr, "/orders").await.0.as_u16());
    }
    println!("requests during the outage answered {statuses:?}");
    println!("breaker: {}", breaker.state());

    let (status, text) = get_text(addr, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    println!("\nGET /metrics (the breaker's series):");
    for line in text.lines() {
        let counted = !line.starts_with('#') && !line.ends_with(" 0");
        if line.starts_with("circuit_breaker_") && counted && !line.contains("_bucket") {
            println!("  {line}");
        }
    }

    if let Some(duration) = serve_for {
        println!("\nready for curl: http://{addr}/metrics (serving for {duration:?})");
        tokio::time::sleep(duration).await;
    }
    Ok(())
}
