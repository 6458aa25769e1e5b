//! Proof that `breaker-core` builds and links without `std`: a `#![no_std]`, `#![no_main]`
//! binary with its own panic handler. If any crate in `breaker-core`'s no-default-features
//! graph linked `std`, std's panic handler would clash with this one and the link would
//! fail. Built and run by `cargo xtask nostd` (with `-C panic=abort`).
#![no_std]
#![no_main]

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;

use breaker_core::{CircuitBreaker, Clock, Outcome, State};

/// A clock that only moves when told, without `alloc`.
struct TickClock(AtomicU64);

impl Clock for TickClock {
    fn now_nanos(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

static CLOCK: TickClock = TickClock(AtomicU64::new(0));

fn scenario() -> Result<(), &'static str> {
    let breaker = CircuitBreaker::builder_with_clock(&CLOCK)
        .consecutive_failures(3)
        .open_duration(Duration::from_secs(5))
        .build()
        .map_err(|_| "config")?;
    for _ in 0..3 {
        breaker
            .try_acquire()
            .map_err(|_| "closed breaker rejected")?
            .record(Outcome::Failure);
    }
    if breaker.state() != State::Open || breaker.try_acquire().is_ok() {
        return Err("did not trip");
    }
    CLOCK.0.store(5_000_000_001, Ordering::Relaxed);
    breaker
        .try_acquire()
        .map_err(|_| "no probe after the open period")?
        .record(Outcome::Success);
    if breaker.state() != State::Closed {
        return Err("did not close");
    }
    Ok(())
}

/// C entry point (the platform's C runtime calls it).
#[unsafe(no_mangle)]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    match scenario() {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

/// The precompiled `core` references an unwinding personality routine even under
/// `panic = "abort"`; it is never called.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}
