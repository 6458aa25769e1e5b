//! A breaker in front of a flaky dependency: it trips during the outage, rejects fast (a
//! fallback answers instead), probes when the open period ends, backs off while the
//! dependency is still down, and closes once it has recovered.
//!
//! Time is simulated with the public `ManualClock` (one request every 250 ms), so the demo
//! runs instantly and prints the same timeline every time.
//!
//! Run: `cargo run -p breaker-examples --bin demo`

use std::time::Duration;

use breaker_core::{CallError, CircuitBreaker, Event, ManualClock, Observer, State};

/// The dependency: healthy, then down from 2 s to 7 s, then healthy again.
fn inventory_service(now: Duration) -> Result<u32, &'static str> {
    let t = now.as_secs_f64();
    if (2.0..7.0).contains(&t) {
        Err("connection refused")
    } else {
        Ok(42)
    }
}

/// Prints every state transition as it happens.
struct PrintTransitions(ManualClock);

impl Observer for PrintTransitions {
    fn on_event(&self, event: &Event) {
        match event {
            Event::StateTransition { from, to } => println!(
                "{:>7.3}s  ---- breaker {from} -> {to} ----",
                self.0.elapsed().as_secs_f64()
            ),
            Event::ThresholdExceeded(why) => println!(
                "{:>7.3}s  ---- threshold exceeded: {why:?}",
                self.0.elapsed().as_secs_f64()
            ),
            _ => {}
        }
    }
}

fn main() -> Result<(), breaker_core::ConfigError> {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder_with_clock(clock.clone())
        .count_window(10)
        .minimum_calls(4)
        .failure_rate(50.0)
        .exponential_open_duration(Duration::from_secs(1), 2.0, Duration::from_secs(4))
        .half_open_probes(2)
        .observer(PrintTransitions(clock.clone()))
        .build()?;

    let mut last_good = None;
    let (mut reached, mut failed, mut rejected) = (0, 0, 0);
    println!("   time   state      result");
    while clock.elapsed() < Duration::from_secs(12) {
        let now = clock.elapsed();
        let state = breaker.state();
        let result = breaker.call(|| {
            reached += 1;
            inventory_service(now)
        });
        let line = match result {
            Ok(stock) => {
                last_good = Some(stock);
                format!("ok: stock = {stock}")
            }
            Err(CallError::Inner(e)) => {
                failed += 1;
                format!("FAILED: {e}")
            }
            Err(CallError::Rejected(r)) => {
                rejected += 1;
                let cached = last_good.map_or("none yet".to_string(), |s| s.to_string());
                format!(
                    "rejected fast ({}), retry {}; fallback: cached stock = {cached}",
                    r.state(),
                    r.retry_hint()
                )
            }
        };
        println!("{:>7.3}s  {:<9}  {line}", now.as_secs_f64(), state.as_str());
        clock.advance(Duration::from_millis(250));
    }
    let s = breaker.snapshot();
    println!();
    println!(
        "requests: {}, reached the dependency: {reached}, failed: {failed}, rejected fast: {rejected}",
        reached + rejected
    );
    println!(
        "final state: {}, window: {} calls, {} failures",
        s.state, s.window.calls, s.window.failures
    );
    assert_eq!(s.state, State::Closed, "the breaker recovered");
    Ok(())
}
