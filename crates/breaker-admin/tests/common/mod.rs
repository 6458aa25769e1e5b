//! Real parts for the admin tests: a server on loopback, a hyper-util HTTP client, an SSE
//! reader, and breakers on the manual clock.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use breaker_admin::{Admin, AdminBuilder, AdminObserver, Token};
use breaker_core::{CircuitBreaker, ManualClock, Outcome, Registry};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::net::TcpListener;

pub const OPERATOR_SECRET: &str = "op-0123456789abcdef0123456789abcdef";
pub const READ_SECRET: &str = "rd-fedcba9876543210fedcba9876543210";

pub type Breaker = CircuitBreaker<ManualClock, AdminObserver>;

/// Records one call's outcome: with [`record_took`], the one place that knows how a permit
/// is finished.
pub fn record(breaker: &Breaker, outcome: Outcome) {
    record_took(breaker, outcome, Duration::ZERO);
}

/// Records one call that took `took` (slow calls for the charts): the breaker's manual
/// clock moves on by that much while the call runs.
pub fn record_took(breaker: &Breaker, outcome: Outcome, took: Duration) {
    if let Ok(permit) = breaker.try_acquire() {
        breaker.clock().advance(took);
        permit.record(outcome);
    }
}

/// Serves `app` on 127.0.0.1 with an OS-chosen port, with the peer's address known to
/// handlers.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    addr
}

/// A service's breakers, an admin over them, served under `/admin`.
pub struct Fixture {
    pub addr: SocketAddr,
    pub clock: ManualClock,
    pub registry: Arc<Registry>,
    pub admin: Admin,
    pub payments: Arc<Breaker>,
    pub search: Arc<Breaker>,
}

impl Fixture {
    /// `payments` (count window) and `search` (consecutive failures), both closed.
    pub async fn start(configure: impl FnOnce(AdminBuilder) -> AdminBuilder) -> Fixture {
        let registry = Arc::new(Registry::new());
        let admin = configure(
            Admin::builder(registry.clone()).snapshot_interval(Duration::from_millis(50)),
        )
        .build()
        .expect("valid admin settings");
        let clock = ManualClock::new();
        let payments = Arc::new(
            CircuitBreaker::builder_with_clock(clock.clone())
                .name("payments")
                .count_window(20)
                .minimum_calls(4)
                .failure_rate(50.0)
                .slow_calls(Duration::from_secs(2), 80.0)
                .open_duration(Duration::from_secs(30))
                .observer(admin.observer())
                .build()
                .unwrap(),
        );
        let search = Arc::new(
            CircuitBreaker::builder_with_clock(clock.clone())
                .name("search")
                .consecutive_failures(3)
                .open_duration(Duration::from_secs(10))
                .observer(admin.observer())
                .build()
                .unwrap(),
        );
        registry.register("payments", payments.clone()).unwrap();
        registry
            .register_critical("search", search.clone())
            .unwrap();
        let app = Router::new().nest("/admin", admin.router());
        let addr = serve(app).await;
        Fixture {
            addr,
            clock,
            registry,
            admin,
            payments,
            search,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/admin/{path}", self.addr)
    }
}

pub fn operator() -> Token {
    Token::new("on-call", OPERATOR_SECRET).unwrap()
}

pub fn reader() -> Token {
    Token::new("grafana", READ_SECRET).unwrap()
}

/// Request headers, as (name, value).
pub type Headers = Vec<(String, String)>;

pub fn bearer(secret: &str) -> (String, String) {
    ("authorization".into(), format!("Bearer {secret}"))
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} {}", self.status, self.body))
    }
}

pub async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(String, String)],
    body: impl Into<Bytes>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = client
        .request(request.body(Full::new(body.into())).unwrap())
        .await
        .unwrap_or_else(|e| panic!("request to {url} failed: {e}"));
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get(client: &HttpClient, url: &str, headers: &[(String, String)]) -> Reply {
    send(client, Method::GET, url, headers, Bytes::new()).await
}

/// POSTs an action as JSON.
pub async fn act(
    client: &HttpClient,
    url: &str,
    headers: &[(String, String)],
    body: Value,
) -> Reply {
    let mut headers = headers.to_vec();
    headers.push(("content-type".into(), "application/json".into()));
    send(client, Method::POST, url, &headers, body.to_string()).await
}

/// One Server-Sent Event.
#[derive(Clone, Debug)]
pub struct SseEvent {
    pub id: Option<String>,
    pub kind: String,
    pub data: Value,
}

/// A live `GET /events` stream.
pub struct Sse {
    body: Incoming,
    buffer: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
}

impl Sse {
    pub async fn connect(client: &HttpClient, url: &str, headers: &[(String, String)]) -> Sse {
        let mut request = Request::get(url);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = client
            .request(request.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap_or_else(|e| panic!("stream {url} failed: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        Sse {
            body: response.into_body(),
            buffer: String::new(),
            status,
            headers,
        }
    }

    /// The next event, waiting at most `limit` (the hub's own schedule); `None` when the
    /// stream ended.
    pub async fn next(&mut self, limit: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse(&block) {
                    return Some(event);
                }
                continue;
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("no event within {limit:?}"));
            match frame {
                None => return None,
                Some(Err(e)) => panic!("stream error: {e}"),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.push_str(&String::from_utf8_lossy(&data));
                    }
                }
            }
        }
    }

    /// The next event of kind `kind`, skipping others, within `limit`.
    pub async fn next_of(&mut self, kind: &str, limit: Duration) -> SseEvent {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self
                .next(left)
                .await
                .unwrap_or_else(|| panic!("the stream ended before a {kind:?} event"));
            if event.kind == kind {
                return event;
            }
        }
    }

    /// Events until one matches `what`, within `limit`; every event read, in order.
    pub async fn until(
        &mut self,
        limit: Duration,
        what: impl Fn(&SseEvent) -> bool,
    ) -> Vec<SseEvent> {
        let deadline = Instant::now() + limit;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self.next(left).await.expect("the stream ended");
            let done = what(&event);
            seen.push(event);
            if done {
                return seen;
            }
        }
    }
}

fn parse(block: &str) -> Option<SseEvent> {
    let (mut id, mut kind, mut data) = (None, "message".to_string(), String::new());
    for line in block.lines() {
        if line.starts_with(':') || line.is_empty() {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => id = Some(value.to_string()),
            "event" => kind = value.to_string(),
            "data" => data.push_str(value),
            _ => {}
        }
    }
    if data.is_empty() {
        return None;
    }
    Some(SseEvent {
        id,
        kind,
        data: serde_json::from_str(&data)
            .unwrap_or_else(|e| panic!("bad event data ({e}): {data}")),
    })
}

/// Waits for `condition`, failing after `limit`: for the hub's work, which runs on its own
/// schedule.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if condition().await {
            return;
        }
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The view named `name` in a list of views.
pub fn view<'a>(views: &'a Value, name: &str) -> &'a Value {
    views
        .as_array()
        .expect("an array of views")
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no view of {name} in {views}"))
}
