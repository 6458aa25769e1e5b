//! Timers for per-call timeouts, one per runtime, behind features.

use std::future::Future;
use std::time::Duration;

use breaker_core::{ConfigError, ConfigValue};

/// Makes sleep futures: the one thing a timeout needs from a runtime.
///
/// Implemented by [`TokioTimer`] (feature `tokio`), [`AsyncStdTimer`] (feature `async-std`)
/// and [`SmolTimer`] (feature `smol`); implement it for any other runtime.
pub trait Timer {
    /// A future that completes after the duration given to [`sleep`](Self::sleep).
    type Sleep: Future;

    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> Self::Sleep;
}

/// No timer: calls are not timed out (the default of a guarded call).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTimer;

impl Timer for NoTimer {
    type Sleep = std::future::Pending<()>;

    fn sleep(&self, _: Duration) -> Self::Sleep {
        std::future::pending()
    }
}

/// tokio's timer (`tokio::time::sleep`); honours tokio's paused test time.
#[cfg(feature = "tokio")]
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioTimer;

#[cfg(feature = "tokio")]
impl Timer for TokioTimer {
    type Sleep = tokio::time::Sleep;

    fn sleep(&self, duration: Duration) -> Self::Sleep {
        tokio::time::sleep(duration)
    }
}

/// The breaker's [`Clock`](breaker_core::Clock) on tokio's time, so breaker time follows
/// tokio's paused / auto-advanced test time (`tokio::time::pause`) like the timeouts do.
///
/// ```
/// use breaker_async::TokioClock;
/// use breaker_core::{CircuitBreaker, Clock};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let clock = TokioClock::new();
/// tokio::time::sleep(std::time::Duration::from_secs(5)).await; // instant when paused
/// assert_eq!(clock.now_nanos(), 5_000_000_000);
/// let breaker = CircuitBreaker::builder_with_clock(clock).build().unwrap();
/// # let _ = breaker;
/// # }
/// ```
#[cfg(feature = "tokio")]
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

#[cfg(feature = "tokio")]
impl TokioClock {
    /// A clock whose origin is tokio's now.
    pub fn new() -> Self {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }
}

#[cfg(feature = "tokio")]
impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "tokio")]
impl breaker_core::Clock for TokioClock {
    fn now_nanos(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// async-io's timer, which drives both async-std and smol.
#[cfg(any(feature = "async-std", feature = "smol"))]
#[derive(Clone, Copy, Debug, Default)]
pub struct AsyncIoTimer;

#[cfg(any(feature = "async-std", feature = "smol"))]
impl Timer for AsyncIoTimer {
    type Sleep = async_io::Timer;

    fn sleep(&self, duration: Duration) -> Self::Sleep {
        async_io::Timer::after(duration)
    }
}

/// The timer for async-std (async-io's, which async-std runs on).
#[cfg(feature = "async-std")]
pub type AsyncStdTimer = AsyncIoTimer;

/// The timer for smol (async-io's).
#[cfg(feature = "smol")]
pub type SmolTimer = AsyncIoTimer;

/// A validated per-call timeout on a timer: the Go tutorials' `context.WithTimeout`.
///
/// ```
/// use breaker_async::{NoTimer, Timeout};
/// use std::time::Duration;
///
/// assert!(Timeout::new(NoTimer, Duration::from_millis(250)).is_ok());
/// let err = Timeout::new(NoTimer, Duration::ZERO).unwrap_err();
/// assert_eq!(err.to_string(), "invalid circuit breaker config: `timeout` is 0ns, allowed: a duration > 0");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Timeout<T> {
    pub(crate) timer: T,
    pub(crate) after: Duration,
}

impl<T: Timer> Timeout<T> {
    /// A timeout of `after` on `timer`. Zero is refused: it would fail every call.
    pub fn new(timer: T, after: Duration) -> Result<Self, ConfigError> {
        if after.is_zero() {
            return Err(ConfigError::new(
                "timeout",
                ConfigValue::Duration(after),
                "a duration > 0",
            ));
        }
        Ok(Timeout { timer, after })
    }

    /// The duration.
    pub fn duration(&self) -> Duration {
        self.after
    }
}
