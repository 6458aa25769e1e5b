//! The monotonic clock's coarse reading on this machine: how far it trails (printed, run
//! with `--nocapture` to see it), and what the breaker promises whatever it does: never
//! ahead of the precise reading, never a probe admitted early, never a retry-after too
//! short.
#![cfg(not(loom))]

use std::time::{Duration, Instant};

use breaker_core::{CircuitBreaker, Clock, MonotonicClock};

/// Samples the coarse clock's lag behind the precise one for about `for_how_long`, sleeping
/// and spinning in turn (a CPU that wakes from idle and one that never idles).
fn lags(clock: &MonotonicClock, for_how_long: Duration) -> Vec<u64> {
    let started = Instant::now();
    let mut lags = Vec::new();
    let mut round = 0u32;
    while started.elapsed() < for_how_long {
        round = round.wrapping_add(1);
        if round.is_multiple_of(3) {
            std::thread::sleep(Duration::from_micros(u64::from(round % 7) * 700));
        } else {
            let spin = Instant::now();
            while spin.elapsed() < Duration::from_micros(u64::from(round % 5) * 300) {
                std::hint::spin_loop();
            }
        }
        let coarse = clock.coarse_now_nanos();
        let precise = clock.now_nanos();
        assert!(
            coarse <= precise,
            "coarse {coarse} ahead of precise {precise}"
        );
        lags.push(precise - coarse);
    }
    lags.sort_unstable();
    lags
}

#[test]
fn the_coarse_reading_trails_and_never_leads() {
    let clock = MonotonicClock::new();
    let lags = lags(&clock, Duration::from_secs(1));
    let at = |q: f64| lags[((lags.len() - 1) as f64 * q) as usize] as f64 / 1e6;
    println!(
        "coarse clock lag over {} samples: usual bound {:.1} ms, p50 {:.2} ms, p99 {:.2} ms, \
         max {:.2} ms",
        lags.len(),
        clock.coarse_lag_nanos() as f64 / 1e6,
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

#[test]
fn an_open_breaker_never_admits_early_nor_says_retry_too_soon() {
    const OPEN: Duration = Duration::from_millis(150);
    let breaker = CircuitBreaker::builder()
        .open_duration(OPEN)
        .build()
        .expect("valid settings");
    let before_trip = Instant::now();
    breaker.trip();
    let mut rejections = 0u32;
    let admitted_at = loop {
        match breaker.try_acquire() {
            Ok(probe) => {
                let at = Instant::now();
                probe.cancel();
                break at;
            }
            Err(rejected) => {
                rejections += 1;
                let retry = rejected.retry_after().expect("open: the time is known");
                // The breaker decided before `Instant::now()` here, and the deadline is at
                // least OPEN after `before_trip`: the suggested retry is never before it.
                assert!(
                    Instant::now() + retry >= before_trip + OPEN,
                    "told to retry in {retry:?}, before the open period ends"
                );
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    };
    let waited = admitted_at - before_trip;
    assert!(
        waited > OPEN,
        "probe admitted after {waited:?}, open period {OPEN:?}"
    );
    println!(
        "probe admitted {:.2} ms after the open period ({rejections} rejections before)",
        (waited - OPEN).as_secs_f64() * 1e3
    );
}
