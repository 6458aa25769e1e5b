//! Where the breaker gets its time from.
//!
//! The breaker reads time through the [`Clock`] trait, in nanoseconds since an arbitrary,
//! fixed origin. [`MonotonicClock`] (with `std`) reads [`std::time::Instant`];
//! [`ManualClock`] (with `alloc`) only moves when told to, so breaker behaviour can be tested
//! deterministically, by this crate and by its users.

use core::time::Duration;

/// A source of monotonic time.
///
/// `now_nanos` returns nanoseconds since an origin of the clock's choosing. It must never go
/// backwards. The breaker reads it at most once per call, and not at all on paths whose
/// policy does not need time.
///
/// ```
/// use breaker_core::Clock;
///
/// /// A clock driven by a hardware tick counter, 1 tick = 1 µs.
/// struct Ticks(fn() -> u64);
///
/// impl Clock for Ticks {
///     fn now_nanos(&self) -> u64 {
///         (self.0)().saturating_mul(1_000)
///     }
/// }
/// # let _ = Ticks(|| 0).now_nanos();
/// ```
pub trait Clock {
    /// Nanoseconds since this clock's origin; never decreasing.
    fn now_nanos(&self) -> u64;

    /// A cheaper, coarser reading on the same time line: never later than
    /// [`now_nanos`](Self::now_nanos), and usually less than
    /// [`coarse_lag_nanos`](Self::coarse_lag_nanos) behind it.
    ///
    /// The breaker reads it where a far-off deadline only has to be told apart from a near
    /// one: a rejection while open, while the deadline is more than eight usual lags away
    /// (the margin absorbs a coarse reading that trails by more than usual), and the bucket
    /// of a time window whose buckets are at least sixteen lags wide (an edge that moves by
    /// a lag then moves by a sixteenth of a bucket at most). Near a deadline it reads
    /// [`now_nanos`](Self::now_nanos). The default is `now_nanos` itself (lag 0), so a
    /// clock that has nothing cheaper need not implement it.
    #[inline]
    fn coarse_now_nanos(&self) -> u64 {
        self.now_nanos()
    }

    /// How far [`coarse_now_nanos`](Self::coarse_now_nanos) usually lags behind
    /// [`now_nanos`](Self::now_nanos); 0 (the default) when it is exact.
    #[inline]
    fn coarse_lag_nanos(&self) -> u64 {
        0
    }
}

impl<C: Clock + ?Sized> Clock for &C {
    #[inline]
    fn now_nanos(&self) -> u64 {
        (**self).now_nanos()
    }
    #[inline]
    fn coarse_now_nanos(&self) -> u64 {
        (**self).coarse_now_nanos()
    }
    #[inline]
    fn coarse_lag_nanos(&self) -> u64 {
        (**self).coarse_lag_nanos()
    }
}

#[cfg(feature = "alloc")]
impl<C: Clock + ?Sized> Clock for alloc::sync::Arc<C> {
    #[inline]
    fn now_nanos(&self) -> u64 {
        (**self).now_nanos()
    }
    #[inline]
    fn coarse_now_nanos(&self) -> u64 {
        (**self).coarse_now_nanos()
    }
    #[inline]
    fn coarse_lag_nanos(&self) -> u64 {
        (**self).coarse_lag_nanos()
    }
}

/// Converts a duration to whole nanoseconds, saturating at `u64::MAX` (584 years), without
/// 128-bit arithmetic (this runs on every call that reads a clock).
#[inline]
pub(crate) fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

/// A clock that moves only when told to: for deterministic tests.
///
/// Clones share one time, so a test keeps a clone and advances the breaker's clock from the
/// outside. It starts at zero.
///
/// ```
/// use breaker_core::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let shared = clock.clone();
/// clock.advance(Duration::from_millis(1500));
/// assert_eq!(shared.now_nanos(), 1_500_000_000);
/// assert_eq!(shared.elapsed(), Duration::from_millis(1500));
/// ```
#[cfg(feature = "alloc")]
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    nanos: crate::sync::Arc<crate::sync::AtomicU64>,
}

#[cfg(feature = "alloc")]
impl ManualClock {
    /// A clock at time zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves time forward by `by` (saturating at `u64::MAX` nanoseconds).
    pub fn advance(&self, by: Duration) {
        let by = nanos(by);
        let mut cur = self.nanos.load(crate::sync::Ordering::Acquire);
        loop {
            let next = cur.saturating_add(by);
            match self.nanos.compare_exchange_weak(
                cur,
                next,
                crate::sync::Ordering::AcqRel,
                crate::sync::Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Time since the origin, as a duration.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.now_nanos())
    }
}

#[cfg(feature = "alloc")]
impl Clock for ManualClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        self.nanos.load(crate::sync::Ordering::Acquire)
    }
}

/// The system's monotonic clock, measured from when the clock was made. The default clock of
/// [`crate::CircuitBreaker::builder`]'s `build`.
///
/// [`now_nanos`](Clock::now_nanos) reads the same clock as [`std::time::Instant`]
/// (`CLOCK_MONOTONIC` on Linux, about 20 ns through the vDSO). On Linux and Android,
/// [`coarse_now_nanos`](Clock::coarse_now_nanos) reads `CLOCK_MONOTONIC_COARSE` (about 5 ns:
/// the time of the kernel's last tick, no hardware counter), and
/// [`coarse_lag_nanos`](Clock::coarse_lag_nanos) is two of its ticks (8 ms at the usual
/// 250 Hz). Elsewhere the coarse reading is the precise one.
///
/// What holds: the coarse reading never runs ahead of the precise one, so a rejection is
/// never decided too late to be a rejection and a retry-after is never too short. A probe
/// is admitted on time unless the coarse reading trails by more than eight usual lags
/// (64 ms at 250 Hz), which only a descheduled virtual CPU does; it is then late by the
/// excess. On our 2-core CI VM the trailing was at most 6.8 ms over 20 s of sleeping and
/// spinning under a parallel build, and up to 39 ms in an earlier run
/// (`crates/breaker-core/tests/coarse_clock.rs` measures it).
///
/// ```
/// use breaker_core::{Clock, MonotonicClock};
///
/// let clock = MonotonicClock::new();
/// let a = clock.now_nanos();
/// assert!(clock.now_nanos() >= a);
/// assert!(clock.coarse_now_nanos() <= clock.now_nanos());
/// ```
#[cfg(feature = "std")]
#[derive(Clone, Copy, Debug)]
pub struct MonotonicClock {
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    origin: std::time::Instant,
    /// `CLOCK_MONOTONIC` at the origin, in nanoseconds.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    origin: u64,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    coarse_lag: u64,
}

#[cfg(all(feature = "std", any(target_os = "linux", target_os = "android")))]
mod linux {
    use rustix::time::{ClockId, Timespec, clock_getres, clock_gettime};

    #[inline]
    fn nanos(t: Timespec) -> u64 {
        // Monotonic clocks count from boot: never negative, and 2^64 ns is 584 years of
        // uptime, so the arithmetic cannot wrap.
        (t.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(t.tv_nsec as u64)
    }

    #[inline]
    pub(super) fn monotonic() -> u64 {
        nanos(clock_gettime(ClockId::Monotonic))
    }

    #[inline]
    pub(super) fn coarse() -> u64 {
        nanos(clock_gettime(ClockId::MonotonicCoarse))
    }

    /// Two ticks of the coarse clock: it is stamped at each tick, so it normally trails the
    /// precise clock by less than one; the second absorbs a late tick.
    pub(super) fn coarse_lag() -> u64 {
        nanos(clock_getres(ClockId::MonotonicCoarse))
            .clamp(1_000, 100_000_000)
            .saturating_mul(2)
    }
}

#[cfg(feature = "std")]
impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        return Self {
            origin: linux::monotonic(),
            coarse_lag: linux::coarse_lag(),
        };
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        return Self {
            origin: std::time::Instant::now(),
        };
    }
}

#[cfg(feature = "std")]
impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "std")]
impl Clock for MonotonicClock {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[inline]
    fn now_nanos(&self) -> u64 {
        linux::monotonic().saturating_sub(self.origin)
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    #[inline]
    fn now_nanos(&self) -> u64 {
        nanos(self.origin.elapsed())
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[inline]
    fn coarse_now_nanos(&self) -> u64 {
        linux::coarse().saturating_sub(self.origin)
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[inline]
    fn coarse_lag_nanos(&self) -> u64 {
        self.coarse_lag
    }
}

/// A clock as cheap to read as one atomic load: a background thread refreshes a shared
/// timestamp every `resolution` (from [`std::time::Instant`]), and reads return the latest
/// one. For time windows on very hot paths, where reading `Instant` on every call costs more
/// than the rest of the breaker; open durations and bucket edges are then accurate to about
/// `resolution`.
///
/// Clones share one timestamp and one refresher thread, which stops when the last clone is
/// dropped.
///
/// ```
/// use breaker_core::{CircuitBreaker, Clock, CoarseClock};
/// use std::time::Duration;
///
/// let clock = CoarseClock::new(Duration::from_millis(1));
/// let breaker = CircuitBreaker::builder_with_clock(clock.clone())
///     .time_window(Duration::from_secs(10), 10)
///     .build()?;
/// # let _ = breaker;
/// # Ok::<(), breaker_core::ConfigError>(())
/// ```
#[cfg(feature = "std")]
#[derive(Clone, Debug)]
pub struct CoarseClock {
    nanos: std::sync::Arc<core::sync::atomic::AtomicU64>,
}

#[cfg(feature = "std")]
impl CoarseClock {
    /// A clock refreshed every `resolution` (at least 1 µs) by a background thread.
    ///
    /// # Panics
    /// If the operating system refuses to start a thread.
    pub fn new(resolution: Duration) -> Self {
        use core::sync::atomic::Ordering;
        let nanos = std::sync::Arc::new(core::sync::atomic::AtomicU64::new(0));
        let weak = std::sync::Arc::downgrade(&nanos);
        let origin = std::time::Instant::now();
        let resolution = resolution.max(Duration::from_micros(1));
        std::thread::Builder::new()
            .name("breaker-coarse-clock".into())
            .spawn(move || {
                while let Some(nanos) = weak.upgrade() {
                    nanos.store(self::nanos(origin.elapsed()), Ordering::Release);
                    drop(nanos);
                    std::thread::sleep(resolution);
                }
            })
            .map(drop)
            .unwrap_or_else(|e| panic!("cannot start the CoarseClock refresher thread: {e}"));
        CoarseClock { nanos }
    }
}

#[cfg(feature = "std")]
impl Clock for CoarseClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        self.nanos.load(core::sync::atomic::Ordering::Acquire)
    }
}
