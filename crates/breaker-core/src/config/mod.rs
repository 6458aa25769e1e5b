//! Building and validating a breaker's configuration.
//!
//! Everything is checked when the configuration is built: a bad value is a [`ConfigError`]
//! naming the field and the allowed range, never a panic later.

use core::fmt;
use core::time::Duration;

#[cfg(feature = "alloc")]
use alloc::boxed::Box;

mod builder;

pub use builder::Builder;

use crate::clock::nanos;
#[cfg(doc)]
use crate::error::ConfigError;
use crate::observer::NoopObserver;
#[cfg(feature = "alloc")]
use crate::snapshot::Counts;

/// Largest consecutive-failure threshold (the count lives in 23 bits of the state word).
pub const MAX_CONSECUTIVE_FAILURES: u32 = (1 << 23) - 1;
/// Largest count-window size.
pub const MAX_COUNT_WINDOW: u32 = (u16::MAX / 2) as u32;
/// Largest number of buckets in a time window.
pub const MAX_BUCKETS: u32 = 1024;
/// How long half-open may last by default before it re-opens: a probe whose result never
/// comes (a leaked task, a hung call without a timeout) can hold a half-open slot no longer
/// than this. Set your own with [`Builder::max_half_open`]; keep it above your longest call.
pub const DEFAULT_MAX_HALF_OPEN: Duration = Duration::from_secs(60);
/// Largest number of probe calls admitted per half-open period.
pub const MAX_HALF_OPEN_PROBES: u32 = (1 << 11) - 1;

/// How the closed state decides to trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyKind {
    /// Trip when `threshold` consecutive failures are reached.
    ConsecutiveFailures {
        /// Failures in a row that trip the breaker.
        threshold: u32,
    },
    /// A sliding window over the last `size` calls.
    CountWindow {
        /// Calls in the window.
        size: u32,
    },
    /// A sliding window over the last `duration`, split into `buckets` buckets
    /// (one bucket: a tumbling window).
    TimeWindow {
        /// Window length.
        duration: Duration,
        /// Buckets the window is split into.
        buckets: u32,
    },
    /// Every call since the breaker last entered the closed state (gobreaker with
    /// `Interval = 0`).
    Cumulative,
}

impl PolicyKind {
    pub(crate) fn uses_window(&self) -> bool {
        !matches!(self, PolicyKind::ConsecutiveFailures { .. })
    }

    /// Same window shape, ignoring the consecutive threshold (a tunable).
    pub(crate) fn same_shape(&self, other: &PolicyKind) -> bool {
        match (self, other) {
            (PolicyKind::ConsecutiveFailures { .. }, PolicyKind::ConsecutiveFailures { .. }) => {
                true
            }
            _ => self == other,
        }
    }
}

/// How long the breaker stays open before it admits probes.
pub enum OpenDuration {
    /// Always the same.
    Fixed(Duration),
    /// `initial * multiplier^(attempt - 1)`, capped at `max`. The attempt count grows each
    /// time the breaker re-opens from half-open and resets when it closes.
    Exponential {
        /// Duration of the first open period.
        initial: Duration,
        /// Growth factor per re-open, `>= 1`.
        multiplier: f64,
        /// Upper bound.
        max: Duration,
    },
    /// A user function of the attempt number (1 for the first open period since closed).
    #[cfg(feature = "alloc")]
    Custom(Box<dyn Fn(u32) -> Duration + Send + Sync>),
}

impl fmt::Debug for OpenDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenDuration::Fixed(d) => f.debug_tuple("Fixed").field(d).finish(),
            OpenDuration::Exponential {
                initial,
                multiplier,
                max,
            } => f
                .debug_struct("Exponential")
                .field("initial", initial)
                .field("multiplier", multiplier)
                .field("max", max)
                .finish(),
            #[cfg(feature = "alloc")]
            OpenDuration::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl OpenDuration {
    /// The open duration for the given attempt (1-based), before jitter.
    pub fn for_attempt(&self, attempt: u32) -> Duration {
        match self {
            OpenDuration::Fixed(d) => *d,
            OpenDuration::Exponential {
                initial,
                multiplier,
                max,
            } => {
                let cap = nanos(*max) as f64;
                let mut d = nanos(*initial) as f64;
                for _ in 1..attempt {
                    d *= *multiplier;
                    if d >= cap {
                        return *max;
                    }
                }
                Duration::from_nanos(d as u64).min(*max)
            }
            #[cfg(feature = "alloc")]
            OpenDuration::Custom(f) => f(attempt.max(1)),
        }
    }
}

/// Random spread added to each open duration, so many breakers that tripped together do not
/// probe together.
#[cfg(feature = "alloc")]
pub(crate) struct Jitter {
    pub(crate) factor: f64,
    pub(crate) source: JitterSource,
}

/// Where a breaker's jitter draws come from.
#[cfg(feature = "alloc")]
pub(crate) enum JitterSource {
    /// The breaker's own SplitMix64 sequence from a seed ([`Builder::jitter_seeded`](crate::Builder::jitter_seeded),
    /// the `jitter` setting, and every breaker built without jitter, so that a reconfigure
    /// can turn it on): its factor is a tunable.
    Seeded(core::sync::atomic::AtomicU64),
    /// The caller's generator ([`Builder::jitter`](crate::Builder::jitter)), fixed at
    /// build time with its factor.
    Custom(Box<dyn Fn() -> u64 + Send + Sync>),
}

#[cfg(feature = "alloc")]
impl JitterSource {
    /// The next uniform draw.
    pub(crate) fn next(&self) -> u64 {
        match self {
            // Not part of any protocol the breaker's correctness rests on (any interleaving
            // of draws is a fine sequence), hence a plain atomic, not a modelled one.
            JitterSource::Seeded(state) => crate::splitmix64(
                state
                    .fetch_add(0x9E37_79B9_7F4A_7C15, core::sync::atomic::Ordering::Relaxed)
                    .wrapping_add(0x9E37_79B9_7F4A_7C15),
            ),
            JitterSource::Custom(f) => f(),
        }
    }

    /// A source seeded from `seed`.
    pub(crate) fn seeded(seed: u64) -> Self {
        JitterSource::Seeded(core::sync::atomic::AtomicU64::new(seed))
    }
}

/// `d * (1 + factor * (2u - 1))`, `u` uniform in `[0, 1)` from `draw`.
#[cfg(feature = "alloc")]
pub(crate) fn jittered(d: Duration, factor: f64, draw: u64) -> Duration {
    let u = (draw >> 11) as f64 / (1u64 << 53) as f64;
    let scale = 1.0 + factor * (2.0 * u - 1.0);
    let n = (nanos(d) as f64 * scale) as u64;
    Duration::from_nanos(n.max(1))
}

/// The width of one bucket of a `duration` window split into `buckets`: the duration
/// divided by the buckets, rounded to the nearest nanosecond (so `time_window(10 s, 7)`
/// has buckets of 1,428,571,429 ns and spans 10 s + 3 ns).
#[cfg(feature = "alloc")]
pub(crate) fn bucket_width(duration: Duration, buckets: u32) -> u64 {
    let (n, b) = (nanos(duration), u64::from(buckets));
    (n / b + u64::from(n % b >= b.div_ceil(2))).max(1)
}

/// A breaker's name: any string with `alloc`, a `&'static str` without.
#[cfg(feature = "alloc")]
pub(crate) type Name = alloc::borrow::Cow<'static, str>;
/// A breaker's name: any string with `alloc`, a `&'static str` without.
#[cfg(not(feature = "alloc"))]
pub(crate) type Name = &'static str;

/// The name as a `str`, whichever type [`Name`] is.
#[inline(always)]
pub(crate) fn name_str(name: &Name) -> &str {
    name
}

/// A custom trip predicate over the window's counts (gobreaker's `ReadyToTrip`).
#[cfg(feature = "alloc")]
pub(crate) type TripPredicate = Box<dyn Fn(&Counts) -> bool + Send + Sync>;

/// The settings a live breaker runs with: the builder's, or those of its last
/// [`CircuitBreaker::reconfigure`](crate::CircuitBreaker::reconfigure). From
/// [`CircuitBreaker::config_in_force`](crate::CircuitBreaker::config_in_force), for an admin
/// interface that shows them beside the breaker's counts.
///
/// ```
/// use breaker_core::{CircuitBreaker, Config, ManualClock};
/// use std::time::Duration;
///
/// let breaker = CircuitBreaker::builder_with_clock(ManualClock::new())
///     .count_window(100)
///     .failure_rate(50.0)
///     .exponential_open_duration(Duration::from_secs(5), 2.0, Duration::from_secs(60))
///     .build()?;
/// breaker
///     .reconfigure(
///         Config::builder()
///             .count_window(100)
///             .failure_rate(25.0)
///             .open_duration(Duration::from_secs(10))
///             .build_config()?,
///     )
///     .unwrap();
/// let config = breaker.config_in_force();
/// assert_eq!(config.failure_rate, Some(25.0));
/// assert_eq!(config.open_duration, Duration::from_secs(10));
/// assert_eq!(config.open_duration_max, None); // fixed now: no backoff
/// # Ok::<(), breaker_core::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct ConfigInForce {
    /// The failure policy, with the consecutive-failure threshold in force.
    pub policy: PolicyKind,
    /// Calls a window needs before its rate rules apply.
    pub minimum_calls: u32,
    /// The failure-rate threshold in percent; `None` without a failure-rate rule.
    pub failure_rate: Option<f64>,
    /// The slow-call-rate threshold in percent; `None` without a slow-call rule.
    pub slow_call_rate: Option<f64>,
    /// Calls at least this long are slow; `None` when slow calls are not detected.
    pub slow_call_duration: Option<Duration>,
    /// Probes admitted per half-open period (as many successes close the breaker).
    pub half_open_probes: u32,
    /// The longest half-open period; `None` for no limit.
    pub max_half_open: Option<Duration>,
    /// The first open period since the breaker last closed, before jitter.
    pub open_duration: Duration,
    /// The longest open period exponential backoff reaches; `None` for a fixed open
    /// duration (or a user function).
    pub open_duration_max: Option<Duration>,
    /// The factor each re-open multiplies the open period by; `None` without backoff.
    pub backoff_multiplier: Option<f64>,
    /// Whether a user function decides the open periods (`Builder::open_duration_fn`).
    pub open_duration_fn: bool,
    /// The jitter factor (`Builder::jitter`), if any.
    pub jitter: Option<f64>,
    /// Whether a predicate decides trips (`Builder::trip_when`).
    pub trip_predicate: bool,
    /// The longest open period a dependency's pushback can ask for
    /// (`Builder::max_pushback`).
    pub max_pushback: Duration,
    /// The share of refusals enforced, in percent (`Builder::enforcement`).
    pub enforcement: f64,
}

/// A validated breaker configuration. Made by [`Builder::build_config`]; used by
/// [`CircuitBreaker::reconfigure`](crate::CircuitBreaker::reconfigure) and kept by every breaker.
pub struct Config {
    pub(crate) name: Name,
    /// Threads with lifetime counters of their own (see `Builder::thread_counters`).
    pub(crate) thread_counters: u8,
    pub(crate) policy: PolicyKind,
    pub(crate) minimum_calls: u32,
    /// Failure-rate threshold in parts per million (0: no rule).
    pub(crate) failure_rate_ppm: u32,
    /// Slow-call-rate threshold in parts per million (0: no rule).
    pub(crate) slow_rate_ppm: u32,
    /// Slow-call threshold in nanoseconds (`u64::MAX`: slow calls not detected).
    pub(crate) slow_nanos: u64,
    pub(crate) half_open_probes: u32,
    /// Longest half-open period in nanoseconds (0: unlimited).
    pub(crate) max_half_open_nanos: u64,
    pub(crate) open: OpenDuration,
    /// The longest open period a dependency's pushback may ask for, in nanoseconds.
    pub(crate) max_pushback_nanos: u64,
    /// The share of refusals enforced, in parts per million (1,000,000: all).
    pub(crate) enforcement_ppm: u32,
    /// The seed of the choice of which refusals are enforced.
    pub(crate) enforcement_seed: u64,
    #[cfg(feature = "alloc")]
    pub(crate) jitter: Option<Jitter>,
    #[cfg(feature = "alloc")]
    pub(crate) trip_when: Option<TripPredicate>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Config");
        s.field("policy", &self.policy)
            .field("minimum_calls", &self.minimum_calls)
            .field("failure_rate", &(self.failure_rate_ppm as f64 / 10_000.0))
            .field("slow_call_rate", &(self.slow_rate_ppm as f64 / 10_000.0))
            .field("slow_call_nanos", &self.slow_nanos)
            .field("half_open_probes", &self.half_open_probes)
            .field("max_half_open_nanos", &self.max_half_open_nanos)
            .field("open", &self.open)
            .field("max_pushback_nanos", &self.max_pushback_nanos)
            .field("enforcement", &(self.enforcement_ppm as f64 / 10_000.0));
        #[cfg(feature = "alloc")]
        s.field("jitter", &self.jitter.as_ref().map(|j| j.factor))
            .field("trip_when", &self.trip_when.as_ref().map(|_| ".."));
        s.finish()
    }
}

impl Config {
    /// A builder with the defaults (see [`Builder`]). Use it for
    /// [`CircuitBreaker::reconfigure`](crate::CircuitBreaker::reconfigure); to build a breaker, start from
    /// [`CircuitBreaker::builder`](crate::CircuitBreaker::builder).
    pub fn builder() -> Builder<(), NoopObserver> {
        Builder::with_clock(())
    }

    /// The failure policy.
    pub fn policy(&self) -> PolicyKind {
        self.policy
    }

    /// Whether calls' durations matter (slow-call detection is on).
    pub fn detects_slow_calls(&self) -> bool {
        self.slow_nanos != u64::MAX
    }

    /// The breaker's name (`""` if it has none).
    pub fn name(&self) -> &str {
        name_str(&self.name)
    }

    /// Calls a window needs before its rate rules apply.
    pub fn minimum_calls(&self) -> u32 {
        self.minimum_calls
    }

    /// The failure-rate threshold in percent, `None` without a failure-rate rule.
    pub fn failure_rate(&self) -> Option<f64> {
        (self.failure_rate_ppm != 0).then(|| f64::from(self.failure_rate_ppm) / 10_000.0)
    }

    /// The slow-call-rate threshold in percent, `None` without a slow-call rule.
    pub fn slow_call_rate(&self) -> Option<f64> {
        (self.slow_rate_ppm != 0).then(|| f64::from(self.slow_rate_ppm) / 10_000.0)
    }

    /// Successful probes that close a half-open breaker (and its probe limit).
    pub fn half_open_probes(&self) -> u32 {
        self.half_open_probes
    }

    /// This configuration with `probes` half-open probes (the successes that close a
    /// half-open breaker, and its probe limit), for a coordinator that owns the probe budget:
    /// `breaker-redis` gives every replica the fleet's budget, so that no replica closes on
    /// fewer successes than the fleet. Allowed: `1..=2047`, as
    /// [`Builder::half_open_probes`].
    ///
    /// ```
    /// use breaker_core::Config;
    ///
    /// let config = Config::builder().half_open_probes(1).build_config()?;
    /// assert_eq!(config.with_half_open_probes(3)?.half_open_probes(), 3);
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    pub fn with_half_open_probes(
        mut self,
        probes: u32,
    ) -> Result<Config, crate::error::ConfigError> {
        if !(1..=MAX_HALF_OPEN_PROBES).contains(&probes) {
            return Err(crate::error::ConfigError::new(
                "half_open_probes",
                crate::error::ConfigValue::Count(probes as u64),
                "1..=2047",
            ));
        }
        self.half_open_probes = probes;
        Ok(self)
    }

    /// The longest half-open period, `None` for no limit.
    pub fn max_half_open(&self) -> Option<core::time::Duration> {
        (self.max_half_open_nanos != 0)
            .then(|| core::time::Duration::from_nanos(self.max_half_open_nanos))
    }

    #[cfg(feature = "alloc")]
    pub(crate) fn has_closures(&self) -> bool {
        matches!(
            self.jitter,
            Some(Jitter {
                source: JitterSource::Custom(_),
                ..
            })
        ) || self.trip_when.is_some()
            || matches!(self.open, OpenDuration::Custom(_))
    }
    #[cfg(not(feature = "alloc"))]
    pub(crate) fn has_closures(&self) -> bool {
        false
    }
}
