//! From the Go tutorial "Implementing Circuit Breaker Pattern in Go", in Rust: an HTTP-style client that falls
//! back to the last good (cached) response when the service fails or the breaker is open,
//! and to a default when nothing is cached. The cache is bounded and entries expire (TTL).
//!
//! Runs on tokio's paused clock, so it finishes at once.
//!
//! Run: `cargo run -p breaker-examples --bin fallback_cache`

use std::time::Duration;

use breaker_async::{GuardExt, ResponseCache, Source, TokioClock};
use breaker_core::CircuitBreaker;

/// The remote price service: healthy for 3 s, then down for 20 s.
async fn get_price(symbol: &'static str, start: tokio::time::Instant) -> Result<u32, String> {
    tokio::time::sleep(Duration::from_millis(40)).await; // network round trip
    let t = start.elapsed();
    if t > Duration::from_secs(3) && t < Duration::from_secs(23) {
        Err(format!("GET /price/{symbol}: 500 Internal Server Error"))
    } else {
        Ok(100 + symbol.len() as u32 + t.as_secs() as u32)
    }
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), breaker_core::ConfigError> {
    let clock = TokioClock::new();
    let breaker = CircuitBreaker::builder_with_clock(clock)
        .count_window(10)
        .minimum_calls(5)
        .failure_rate(50.0)
        .open_duration(Duration::from_secs(5))
        .build()?;
    // The last good price per symbol, for at most 15 s.
    let cache = ResponseCache::with_clock(1_000, Duration::from_secs(15), clock)?;
    let start = tokio::time::Instant::now();
    for _ in 0..30 {
        for symbol in ["ACME", "INITECH"] {
            let served = breaker
                .guard(get_price(symbol, start))
                .or_cached_else(&cache, symbol, |_| 0)
                .await;
            let how = match served.source {
                Source::Primary => "live".to_string(),
                Source::Cache { age, cause } => format!("cached {age:.1?} ago ({cause:?})"),
                Source::Fallback { kind, cause } => format!("default {kind} ({cause:?})"),
            };
            println!(
                "{:>5.1}s  {symbol:<8} {:>4}  {how:<32} breaker: {}",
                start.elapsed().as_secs_f64(),
                served.value,
                breaker.state()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}
