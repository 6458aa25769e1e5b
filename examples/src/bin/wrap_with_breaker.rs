//! From the Go tutorial "Resiliency Patterns: Implementing the Circuit Breaker Pattern in Go": `WrapWithBreaker(f, threshold)` built step by step, the
//! Rust way. The Go version guards a counter and a timestamp with a mutex; here the breaker
//! is a lock-free value shared by every clone of the wrapped function, and the backoff
//! strategy is the breaker's open-duration function.
//!
//! Runs on tokio's paused clock (breaker time included, via `TokioClock`), so it finishes at
//! once and prints the same timeline every time.
//!
//! Run: `cargo run -p breaker-examples --bin wrap_with_breaker`

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use breaker_async::{Error, GuardExt, TokioClock};
use breaker_core::CircuitBreaker;

/// The tutorial's `RPCCaller` error.
type RpcError = &'static str;

/// One call of the wrapped function (boxed, like Go's `func(ctx) error` value).
type RpcCall = std::pin::Pin<Box<dyn Future<Output = Result<(), Error<RpcError>>>>>;

/// Step 6's backoff strategy. The tutorial's is a fixed 2 s; this one doubles per re-open, up to
/// 8 s (the breaker passes the attempt number: 1 for the first open period).
fn backoff_strategy(attempt: u32) -> Duration {
    Duration::from_secs(2).saturating_mul(1 << (attempt - 1).min(2))
}

/// Steps 1-5: wrap `f` so that `threshold` consecutive failures open the circuit, calls are
/// refused while it is open, and a probe goes through once the backoff has passed.
fn wrap_with_breaker<F, Fut>(f: F, threshold: u32) -> impl Fn() -> RpcCall
where
    F: Fn() -> Fut + Clone + 'static,
    Fut: Future<Output = Result<(), RpcError>> + 'static,
{
    let breaker = Arc::new(
        CircuitBreaker::builder_with_clock(TokioClock::new())
            .consecutive_failures(threshold)
            .open_duration_fn(backoff_strategy)
            .build()
            .expect("valid breaker settings"),
    );
    move || {
        let breaker = Arc::clone(&breaker);
        let f = f.clone();
        Box::pin(async move { breaker.guard(f()).await })
    }
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    // A dependency that is down from t = 1 s to t = 9 s.
    let start = tokio::time::Instant::now();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let rpc = move || {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
            let t = start.elapsed();
            if t >= Duration::from_secs(1) && t < Duration::from_secs(9) {
                Err("service B: 503")
            } else {
                Ok(())
            }
        }
    };
    let call = wrap_with_breaker(rpc, 3);
    for _ in 0..30 {
        let result = call().await;
        let t = start.elapsed().as_secs_f64();
        let reached = calls.load(Ordering::Relaxed);
        match result {
            Ok(()) => println!(
                "{t:>5.1}s  ok                                   (B has seen {reached} calls)"
            ),
            Err(Error::Inner(e)) => {
                println!("{t:>5.1}s  failed: {e:<27}(B has seen {reached} calls)")
            }
            Err(Error::Rejected(r)) => println!(
                "{t:>5.1}s  service unavailable, circuit {}; retry {}",
                r.state(),
                r.retry_hint()
            ),
            Err(e) => println!("{t:>5.1}s  {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
