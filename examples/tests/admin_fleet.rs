//! A breaker shared by a fleet through the machine's Redis, seen and steered through
//! `breaker-admin` over real HTTP: its view carries the link and the fleet's state, and an
//! operator's trip on one replica's admin opens the other replica. (breaker-admin knows
//! nothing of Redis: `SharedBreaker` implements `Inspect`.) Waits are bounded, for the sync
//! task's own schedule.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use breaker_admin::{Admin, Token};
use breaker_core::{Config, Registry, State};
use breaker_redis::{Link, RedisSharing};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

const SECRET: &str = "fleet-test-0123456789abcdef";
const LIMIT: Duration = Duration::from_secs(20);

fn config(name: &str) -> Config {
    Config::builder()
        .name(name.to_string())
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(60))
        .build_config()
        .unwrap()
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < LIMIT, "not within {LIMIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_shared_breaker_is_seen_and_steered_through_the_admin() {
    let url = std::env::var(breaker_redis::URL_ENV)
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("admin-fleet-{}-{nanos}", std::process::id());
    let sharing = RedisSharing::new(url.clone()).sync_interval(Duration::from_millis(20));
    let here = Arc::new(sharing.clone().start(config(&name)).unwrap());
    let there = sharing.start(config(&name)).unwrap();
    eventually(
        &format!(
            "both replicas synced with Redis at {url} (start redis-server, or set {})",
            breaker_redis::URL_ENV
        ),
        || here.status().link == Link::Synced && there.status().link == Link::Synced,
    )
    .await;

    let registry = Arc::new(Registry::new());
    registry.register("payments", here.clone()).unwrap();
    let admin = Admin::builder(registry)
        .operator_token(Token::new("on-call", SECRET).unwrap())
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().nest("/admin", admin.router());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let breaker_url = format!("http://{addr}/admin/breakers/payments");

    let response = client.get(breaker_url.parse().unwrap()).await.unwrap();
    assert_eq!(response.status(), 200);
    let view: Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let details: Vec<(String, String)> = serde_json::from_value(view["details"].clone()).unwrap();
    let detail = |key: &str| {
        details
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(detail("fleet.link"), Some("synced"), "{details:?}");
    assert_eq!(detail("fleet.state"), Some("closed"), "{details:?}");
    assert_eq!(view["breaker_name"], name.as_str());

    // An operator trips this replica through its admin: the fleet follows.
    let request = hyper::Request::post(&breaker_url)
        .header("authorization", format!("Bearer {SECRET}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            json!({"action": "trip", "reason": "provider outage, isolating"}).to_string(),
        )))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(here.state(), State::Open);
    eventually("the other replica follows the operator's trip", || {
        there.state() == State::Open
    })
    .await;
}
