//! From the Go tutorial "Connection Management & Circuit Breaker", in Rust: every call to an external service
//! gets a timeout (Go's `context.WithTimeout(ctx, 2*time.Second)`), so a slow dependency
//! cannot hold the caller's tasks forever; timeouts count as failures and trip the breaker
//! (gobreaker's `ReadyToTrip` on a failure ratio); while it is open, writes are queued for
//! later (the tutorial's "queue" fallback) and replayed once it closes.
//!
//! Runs on tokio's paused clock, so the 2 s timeouts take no real time.
//!
//! Run: `cargo run -p breaker-examples --bin context_timeout`

use std::collections::VecDeque;
use std::time::Duration;

use breaker_async::{Error, GuardExt, Timeout, TokioClock, TokioTimer};
use breaker_core::CircuitBreaker;

/// The payment service: answers in 50 ms, but hangs for 30 s between t = 1 s and t = 20 s.
async fn charge(order: u32, start: tokio::time::Instant) -> Result<u32, std::io::Error> {
    let t = start.elapsed();
    let latency = if t >= Duration::from_secs(1) && t < Duration::from_secs(20) {
        Duration::from_secs(30)
    } else {
        Duration::from_millis(50)
    };
    tokio::time::sleep(latency).await;
    Ok(order)
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // gobreaker's settings from the tutorial: MaxRequests 3, Interval 10 s, Timeout 5 s,
    // ReadyToTrip: Requests >= 3 and failure ratio >= 0.6.
    let breaker = CircuitBreaker::builder_with_clock(TokioClock::new())
        .time_window(Duration::from_secs(10), 1)
        .trip_when(|c| c.calls >= 3 && c.failures * 10 >= c.calls * 6)
        .half_open_probes(3)
        .open_duration(Duration::from_secs(5))
        .build()?;
    let timeout = Timeout::new(TokioTimer, Duration::from_secs(2))?;
    let mut queued: VecDeque<u32> = VecDeque::new();
    let start = tokio::time::Instant::now();
    for order in 1..=30 {
        let t = start.elapsed().as_secs_f64();
        match breaker.guard(charge(order, start)).timeout(timeout).await {
            Ok(id) => {
                println!("{t:>6.2}s  order {id:>2} charged");
                // Closed again: replay what was queued while the service was down.
                while let Some(q) = queued.pop_front() {
                    match breaker.guard(charge(q, start)).timeout(timeout).await {
                        Ok(id) => println!(
                            "{:>6.2}s  order {id:>2} charged (replayed from the queue)",
                            start.elapsed().as_secs_f64()
                        ),
                        Err(_) => {
                            queued.push_front(q);
                            break;
                        }
                    }
                }
            }
            Err(Error::Timeout { after }) => {
                println!("{t:>6.2}s  order {order:>2} timed out after {after:?}")
            }
            Err(Error::Rejected(r)) => {
                queued.push_back(order);
                println!(
                    "{t:>6.2}s  order {order:>2} queued for later: breaker {}, retry {}",
                    r.state(),
                    r.retry_hint()
                );
            }
            Err(Error::Inner(e)) => println!("{t:>6.2}s  order {order:>2} failed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("still queued: {queued:?}");
    Ok(())
}
