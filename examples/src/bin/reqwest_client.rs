//! reqwest is not a tower service, so the tower layer does not fit it; guard its futures
//! with `breaker-async` instead: a timeout per call, 5xx and transport errors counted as
//! failures, 4xx not, and the last good answer served while the breaker is open.
//!
//! A local upstream (axum, on loopback) fails for a while; the client keeps answering.
//!
//! Run: `cargo run -p breaker-examples --bin reqwest_client`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use breaker_async::{Error, GuardExt, ResponseCache, Source, Timeout, TokioTimer};
use breaker_core::{CircuitBreaker, Outcome};

#[derive(Debug)]
enum FetchError {
    Status(reqwest::StatusCode),
    Transport(reqwest::Error),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Status(s) => write!(f, "upstream answered {s}"),
            FetchError::Transport(e) => write!(f, "transport error: {e}"),
        }
    }
}

/// One reqwest call: the body on 2xx, the status otherwise.
async fn fetch(client: &reqwest::Client, url: &str) -> Result<String, FetchError> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(FetchError::Transport)?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Status(status));
    }
    response.text().await.map_err(FetchError::Transport)
}

/// 5xx and transport errors are the upstream's failures; 4xx are ours.
fn classify(result: &Result<String, FetchError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Success,
        Err(FetchError::Status(s)) if s.is_client_error() => Outcome::Success,
        Err(_) => Outcome::Failure,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The upstream: fails while `down` is set.
    let down = Arc::new(AtomicBool::new(false));
    let app = Router::new()
        .route(
            "/rates",
            get(|State(down): State<Arc<AtomicBool>>| async move {
                if down.load(Ordering::SeqCst) {
                    (StatusCode::SERVICE_UNAVAILABLE, "maintenance".to_string())
                } else {
                    (StatusCode::OK, "EUR/USD 1.08".to_string())
                }
            }),
        )
        .with_state(down.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/rates", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = reqwest::Client::new();
    let breaker = CircuitBreaker::builder()
        .consecutive_failures(3)
        .open_duration(Duration::from_millis(250))
        .build()?;
    let timeout = Timeout::new(TokioTimer, Duration::from_secs(2))?;
    let cache = ResponseCache::new(100, Duration::from_secs(60))?;

    for round in 0..12 {
        down.store((3..8).contains(&round), Ordering::SeqCst);
        let served = breaker
            .guard(fetch(&client, &url))
            .classify(classify)
            .timeout(timeout)
            .or_cached(&cache, "rates")
            .await;
        match served {
            Ok(s) if s.source == Source::Primary => {
                println!("round {round:>2}: {} (live)", s.value)
            }
            Ok(s) => println!("round {round:>2}: {} (cached: {:?})", s.value, s.source),
            Err(Error::Rejected(r)) => println!("round {round:>2}: no answer: {r}"),
            Err(e) => println!("round {round:>2}: no answer: {e}"),
        }
        println!("           breaker: {}", breaker.state());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
