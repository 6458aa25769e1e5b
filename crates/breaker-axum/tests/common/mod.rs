//! Real parts for the HTTP tests: a flaky upstream server (the fault-injecting TCP proxy is
//! `breaker_test_support::FaultProxy`) and
//! an HTTP client, all on loopback.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::routing::get as route_get;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;

/// Serves `app` on 127.0.0.1 with an OS-chosen port.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// An upstream whose failures the test switches on and off; counts the requests it sees.
#[derive(Clone, Default)]
pub struct Upstream {
    failing: Arc<AtomicU8>,
    delay_ms: Arc<AtomicU64>,
    hits: Arc<AtomicU64>,
}

impl Upstream {
    pub async fn start() -> (Self, SocketAddr) {
        let upstream = Upstream::default();
        let app = Router::new()
            .route("/data", route_get(Self::data))
            .with_state(upstream.clone());
        (upstream, serve(app).await)
    }

    async fn data(State(u): State<Upstream>) -> (StatusCode, &'static str) {
        u.hits.fetch_add(1, Ordering::SeqCst);
        let delay = u.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        if u.failing.load(Ordering::SeqCst) == 1 {
            (StatusCode::INTERNAL_SERVER_ERROR, "upstream broke")
        } else {
            (StatusCode::OK, "fresh data")
        }
    }

    pub fn fail(&self, on: bool) {
        self.failing.store(u8::from(on), Ordering::SeqCst);
    }

    /// Makes every answer take `delay` (zero: answer at once).
    pub fn delay(&self, delay: std::time::Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// A plain hyper-util HTTP/1 client (no connection reuse, so every request opens a
/// connection and a cut proxy is seen at once).
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

pub async fn get(client: &HttpClient, url: String) -> Reply {
    let response = client.get(url.parse().unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}
