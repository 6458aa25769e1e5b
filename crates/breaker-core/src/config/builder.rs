//! The [`Builder`]: a breaker's settings as a few grouped choices (when to trip, how to
//! probe, how long to stay open, and the hooks), each validated on its own when the
//! breaker is built. A bad value is a [`ConfigError`] naming the field and the allowed
//! range, never a panic later.

use core::fmt;
use core::time::Duration;

#[cfg(feature = "alloc")]
use alloc::boxed::Box;

use super::{
    Config, DEFAULT_MAX_HALF_OPEN, MAX_BUCKETS, MAX_CONSECUTIVE_FAILURES, MAX_COUNT_WINDOW,
    MAX_HALF_OPEN_PROBES, Name, OpenDuration, PolicyKind,
};
#[cfg(feature = "alloc")]
use super::{Jitter, JitterSource, TripPredicate};
use crate::clock::{Clock, nanos};
use crate::error::{ConfigError, ConfigValue};
use crate::observer::{NoopObserver, Observer};
#[cfg(feature = "alloc")]
use crate::snapshot::Counts;

/// Builds a [`CircuitBreaker`](crate::CircuitBreaker) (or a [`Config`] to [reconfigure](crate::CircuitBreaker::reconfigure)
/// one), checking every value.
///
/// Defaults: trip on 5 consecutive failures, stay open 30 s, then admit 1 probe; one
/// successful probe closes the breaker, a failed one (or 60 s without an answer,
/// [`DEFAULT_MAX_HALF_OPEN`]) re-opens it. No slow-call detection.
///
/// Choosing a window ([`count_window`](Self::count_window),
/// [`time_window`](Self::time_window), [`cumulative_window`](Self::cumulative_window))
/// switches to rate-based tripping: by default at a 50 % failure rate once 100 calls (at most
/// the window size) are in the window.
///
/// ```
/// use breaker_core::CircuitBreaker;
/// use std::time::Duration;
///
/// let breaker = CircuitBreaker::builder()
///     .count_window(100)
///     .minimum_calls(20)
///     .failure_rate(50.0)
///     .slow_calls(Duration::from_secs(2), 80.0)
///     .exponential_open_duration(Duration::from_secs(5), 2.0, Duration::from_secs(120))
///     .half_open_probes(3)
///     .build()?;
/// assert!(breaker.try_acquire().is_ok());
/// # Ok::<(), breaker_core::ConfigError>(())
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder<C, O> {
    clock: C,
    observer: O,
    name: Name,
    trip: TripChoice,
    half_open: HalfOpenChoice,
    open: OpenChoice,
    enforce: EnforceChoice,
    thread_counters: Option<u32>,
}

/// How much of what the breaker decides it enforces.
struct EnforceChoice {
    percent: f64,
    seed: u64,
}

/// When to trip: the policy and its rules.
#[derive(Default)]
struct TripChoice {
    policy: Option<PolicyKind>,
    minimum_calls: Option<u32>,
    failure_rate: Option<f64>,
    slow_duration: Option<Duration>,
    slow_rate: Option<f64>,
    #[cfg(feature = "alloc")]
    trip_when: Option<TripPredicate>,
}

/// How to probe once the open period is over.
struct HalfOpenChoice {
    probes: u32,
    max: Option<Duration>,
}

/// How long to stay open.
struct OpenChoice {
    duration: OpenDuration,
    #[cfg(feature = "alloc")]
    jitter: Option<Jitter>,
    max_pushback: Option<Duration>,
}

impl<C: fmt::Debug, O: fmt::Debug> fmt::Debug for Builder<C, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("clock", &self.clock)
            .field("observer", &self.observer)
            .field("name", &self.name)
            .field("policy", &self.trip.policy)
            .field("minimum_calls", &self.trip.minimum_calls)
            .field("failure_rate", &self.trip.failure_rate)
            .field("slow_duration", &self.trip.slow_duration)
            .field("slow_rate", &self.trip.slow_rate)
            .field("half_open_probes", &self.half_open.probes)
            .field("max_half_open", &self.half_open.max)
            .field("open", &self.open.duration)
            .finish_non_exhaustive()
    }
}

impl<C> Builder<C, NoopObserver> {
    pub(crate) fn with_clock(clock: C) -> Self {
        Builder {
            clock,
            observer: NoopObserver,
            name: Name::from(""),
            trip: TripChoice::default(),
            half_open: HalfOpenChoice {
                probes: 1,
                max: None,
            },
            open: OpenChoice {
                duration: OpenDuration::Fixed(Duration::from_secs(30)),
                #[cfg(feature = "alloc")]
                jitter: None,
                max_pushback: None,
            },
            enforce: EnforceChoice {
                percent: 100.0,
                seed: 0,
            },
            thread_counters: None,
        }
    }
}

/// # When to trip
impl<C, O> Builder<C, O> {
    /// Trip when `threshold` failures in a row are reached (`failures >= threshold`).
    /// gobreaker's default `ConsecutiveFailures > 5` is `consecutive_failures(6)`.
    /// Allowed: `1..=8_388_607`.
    pub fn consecutive_failures(mut self, threshold: u32) -> Self {
        self.trip.policy = Some(PolicyKind::ConsecutiveFailures { threshold });
        self
    }

    /// Rate-based tripping over the last `size` calls. Allowed: `1..=32_767`.
    #[cfg(feature = "alloc")]
    pub fn count_window(mut self, size: u32) -> Self {
        self.trip.policy = Some(PolicyKind::CountWindow { size });
        self
    }

    /// Rate-based tripping over the calls of the last `duration`, counted in `buckets`
    /// buckets of `duration / buckets` each; the oldest bucket is dropped as time moves on.
    /// One bucket is a tumbling window: all counts clear every `duration` (gobreaker's
    /// `Interval`). Buckets are aligned to the start of the closed period. The bucket width
    /// is `duration / buckets` rounded to the nearest nanosecond, so `time_window(10 s, 7)`
    /// works (its buckets span 10 s + 3 ns in all).
    /// Allowed: `buckets` in `1..=1024`, `duration` at least `buckets` nanoseconds.
    ///
    /// ```
    /// use breaker_core::CircuitBreaker;
    /// use std::time::Duration;
    ///
    /// let breaker = CircuitBreaker::builder()
    ///     .time_window(Duration::from_secs(10), 7)
    ///     .build()?;
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    #[cfg(feature = "alloc")]
    pub fn time_window(mut self, duration: Duration, buckets: u32) -> Self {
        self.trip.policy = Some(PolicyKind::TimeWindow { duration, buckets });
        self
    }

    /// Rate-based tripping over every call since the breaker last closed (gobreaker with
    /// `Interval = 0`).
    #[cfg(feature = "alloc")]
    pub fn cumulative_window(mut self) -> Self {
        self.trip.policy = Some(PolicyKind::Cumulative);
        self
    }

    /// Calls the window must hold before rates are evaluated. Default: 100, or the window
    /// size if smaller. Allowed: `1..=size` (count window), `>= 1` otherwise.
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.trip.minimum_calls = Some(calls);
        self
    }

    /// Trip when the failure rate in the window reaches `percent` (`rate >= percent`).
    /// Default: 50. Allowed: `(0, 100]`. Needs a window.
    pub fn failure_rate(mut self, percent: f64) -> Self {
        self.trip.failure_rate = Some(percent);
        self
    }

    /// A call is slow when its duration exceeds `duration`; trip when the slow-call rate in
    /// the window reaches `percent`. In half-open, a slow probe counts as a failed probe.
    /// Allowed: `duration > 0`, `percent` in `(0, 100]`. Needs a window.
    pub fn slow_calls(mut self, duration: Duration, percent: f64) -> Self {
        self.trip.slow_duration = Some(duration);
        self.trip.slow_rate = Some(percent);
        self
    }

    /// Detect slow calls (duration exceeding `duration`) for events and snapshots only,
    /// without a slow-call-rate rule. Works with any policy. Allowed: `duration > 0`.
    pub fn slow_call_duration(mut self, duration: Duration) -> Self {
        self.trip.slow_duration = Some(duration);
        self
    }

    /// Decide tripping with a predicate over the window's counts instead of the rate rules
    /// (gobreaker's `ReadyToTrip`). It is called after every recorded call in the closed
    /// state, and `minimum_calls` does not apply. Needs a window.
    ///
    /// ```
    /// use breaker_core::CircuitBreaker;
    ///
    /// // gobreaker's tutorial: trip at a 60 % failure ratio once there are 3 requests.
    /// let breaker = CircuitBreaker::builder()
    ///     .cumulative_window()
    ///     .trip_when(|c| c.calls >= 3 && c.failures * 10 >= c.calls * 6)
    ///     .build()?;
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    #[cfg(feature = "alloc")]
    pub fn trip_when(
        mut self,
        predicate: impl Fn(&Counts) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.trip.trip_when = Some(Box::new(predicate));
        self
    }
}

/// # How to probe (half-open)
impl<C, O> Builder<C, O> {
    /// Probe calls admitted per half-open period; that many successes close the breaker,
    /// any failure re-opens it. Default: 1. Allowed: `1..=2047`.
    pub fn half_open_probes(mut self, probes: u32) -> Self {
        self.half_open.probes = probes;
        self
    }

    /// Re-open if the half-open period lasts longer than `limit`, so that a lost probe (a
    /// result that never comes) cannot leave the breaker stuck half-open. Probe results that
    /// arrive after the limit are dropped as late. Default: [`DEFAULT_MAX_HALF_OPEN`] (60 s);
    /// keep it above the longest call a probe may make. Allowed: `> 0`.
    pub fn max_half_open(mut self, limit: Duration) -> Self {
        self.half_open.max = Some(limit);
        self
    }
}

/// # How long to stay open
impl<C, O> Builder<C, O> {
    /// Stay open for `duration` each time. Default: 30 s. Allowed: `> 0`.
    pub fn open_duration(mut self, duration: Duration) -> Self {
        self.open.duration = OpenDuration::Fixed(duration);
        self
    }

    /// Stay open `initial * multiplier^(n - 1)` for the n-th open period since the breaker
    /// last closed, capped at `max`. Allowed: `initial > 0`, `multiplier` finite and `>= 1`,
    /// `max >= initial`.
    pub fn exponential_open_duration(
        mut self,
        initial: Duration,
        multiplier: f64,
        max: Duration,
    ) -> Self {
        self.open.duration = OpenDuration::Exponential {
            initial,
            multiplier,
            max,
        };
        self
    }

    /// Stay open for `f(n)` for the n-th open period since the breaker last closed (n >= 1).
    /// A zero result is treated as 1 ns.
    #[cfg(feature = "alloc")]
    pub fn open_duration_fn(mut self, f: impl Fn(u32) -> Duration + Send + Sync + 'static) -> Self {
        self.open.duration = OpenDuration::Custom(Box::new(f));
        self
    }

    /// Spread each open duration by up to `± factor` of itself, with randomness from
    /// `source` (any uniform `u64` generator: a seeded PRNG in tests, `rand` in services).
    /// Allowed: `factor` in `(0, 1)`.
    ///
    /// A breaker with a source of yours keeps it and its factor for good (a
    /// [`reconfigure`](crate::CircuitBreaker::reconfigure) carrying one is refused, like
    /// any closure); [`jitter_seeded`](Self::jitter_seeded) draws from the breaker's own
    /// generator and can be changed at run time.
    #[cfg(feature = "alloc")]
    pub fn jitter(mut self, factor: f64, source: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.open.jitter = Some(Jitter {
            factor,
            source: JitterSource::Custom(Box::new(source)),
        });
        self
    }

    /// Spread each open duration by up to `± factor` of itself, drawn from the breaker's own
    /// generator (SplitMix64) started at `seed`: the same seed, the same open periods (for
    /// replays and tests; give every replica of a fleet its own, or use the `jitter` setting,
    /// which draws a fresh seed). Unlike a [`jitter`](Self::jitter) source of yours, the
    /// factor can be changed (or jitter turned on and off) by
    /// [`reconfigure`](crate::CircuitBreaker::reconfigure); the breaker keeps its generator.
    /// Allowed: `factor` in `(0, 1)`.
    ///
    /// ```
    /// use breaker_core::{CircuitBreaker, ManualClock, Outcome};
    /// use std::time::Duration;
    ///
    /// let breaker = CircuitBreaker::builder_with_clock(ManualClock::new())
    ///     .consecutive_failures(1)
    ///     .open_duration(Duration::from_secs(10))
    ///     .jitter_seeded(0.2, 7)
    ///     .build()?;
    /// breaker.try_acquire().unwrap().record(Outcome::Failure);
    /// let open = breaker.retry_after().unwrap();
    /// assert!(Duration::from_secs(8) <= open && open <= Duration::from_secs(12));
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    #[cfg(feature = "alloc")]
    pub fn jitter_seeded(mut self, factor: f64, seed: u64) -> Self {
        self.open.jitter = Some(Jitter {
            factor,
            source: JitterSource::seeded(seed),
        });
        self
    }

    /// The longest open period a dependency's [`Pushback`](crate::Pushback) (an HTTP
    /// `Retry-After`, a gRPC pushback) can ask for: when a failure with a pushback opens the
    /// breaker, it stays open for the longer of its own open period and the pushback, up to
    /// this. Default: the longest open period configured, and at least 5 minutes (a buggy or
    /// hostile `Retry-After: 86400` is cut there). Allowed: `> 0`.
    ///
    /// ```
    /// use breaker_core::{CircuitBreaker, ManualClock, Outcome, Pushback};
    /// use std::time::Duration;
    ///
    /// let breaker = CircuitBreaker::builder_with_clock(ManualClock::new())
    ///     .consecutive_failures(1)
    ///     .open_duration(Duration::from_secs(10))
    ///     .max_pushback(Duration::from_secs(120))
    ///     .build()?;
    /// breaker
    ///     .try_acquire()?
    ///     .record_with_pushback(Outcome::Failure, Some(Pushback::After(Duration::from_secs(3600))));
    /// assert_eq!(breaker.retry_after(), Some(Duration::from_secs(120)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_pushback(mut self, max: Duration) -> Self {
        self.open.max_pushback = Some(max);
        self
    }
}

/// # Rolling out: how much to enforce
impl<C, O> Builder<C, O> {
    /// Enforce `percent` of the refusals the breaker decides (default 100): the rest are let
    /// through to the dependency as if the breaker were disabled for them, and reported
    /// apart ([`Event::Unenforced`](crate::Event::Unenforced),
    /// [`Totals::unenforced`](crate::Totals::unenforced)). For rolling a breaker out in
    /// steps, Envoy's `enforcing_*` way: first 0 (decide, never refuse, see what it would
    /// do: unlike [`metrics_only`](crate::CircuitBreaker::metrics_only), the breaker still
    /// opens, probes and closes), then a fraction, then all. Operator isolation
    /// ([`force_open`](crate::CircuitBreaker::force_open)) is always enforced. Which
    /// refusals are let through is decided by a hash of a counter and
    /// [`enforcement_seed`](Self::enforcement_seed): the same seed lets the same ones
    /// through. Changeable at run time with [`reconfigure`](crate::CircuitBreaker::reconfigure).
    /// Allowed: `0..=100`.
    ///
    /// The calls let through are counted as unenforced refusals, not as calls: their
    /// outcomes are not recorded (the breaker is open; they feed neither its window nor the
    /// call counts of `Totals` and the metrics), so while open at 0 % the call metrics go
    /// quiet and `circuit_breaker_unenforced_rejections_total` tells what would have been
    /// refused. A critical breaker below 100 % does not make a service not ready
    /// ([`Registry::is_ready`](crate::Registry::is_ready)).
    ///
    /// ```
    /// use breaker_core::{CircuitBreaker, ManualClock};
    ///
    /// let breaker = CircuitBreaker::builder_with_clock(ManualClock::new())
    ///     .enforcement(25.0)
    ///     .build()?;
    /// breaker.trip();
    /// let admitted = (0..1000).filter(|_| breaker.try_acquire().is_ok()).count();
    /// assert!((700..800).contains(&admitted), "about 75 % let through: {admitted}");
    /// assert_eq!(breaker.snapshot().totals.unenforced, admitted as u64);
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    pub fn enforcement(mut self, percent: f64) -> Self {
        self.enforce.percent = percent;
        self
    }

    /// The seed of the choice of which refusals are enforced (see
    /// [`enforcement`](Self::enforcement)). Default: 0.
    pub fn enforcement_seed(mut self, seed: u64) -> Self {
        self.enforce.seed = seed;
        self
    }
}

/// # Hooks: name, observer, clock
impl<C, O> Builder<C, O> {
    /// Names the breaker (`"payments"`, `"search-api"`): observers receive it with every
    /// event ([`Observer::on_breaker_event`]), so metrics and logs shared by many breakers
    /// can tell them apart. Default: `""`.
    #[cfg(feature = "alloc")]
    pub fn name(mut self, name: impl Into<alloc::borrow::Cow<'static, str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Names the breaker (see the `alloc` version of this method).
    #[cfg(not(feature = "alloc"))]
    pub fn name(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    /// Send events to `observer` (state transitions, rejections, outcomes, ...).
    pub fn observer<O2: Observer>(self, observer: O2) -> Builder<C, O2> {
        Builder {
            clock: self.clock,
            observer,
            name: self.name,
            trip: self.trip,
            half_open: self.half_open,
            open: self.open,
            enforce: self.enforce,
            thread_counters: self.thread_counters,
        }
    }

    /// Read time from `clock` (for example a [`ManualClock`](crate::ManualClock) in tests).
    pub fn clock<C2: Clock>(self, clock: C2) -> Builder<C2, O> {
        Builder {
            clock,
            observer: self.observer,
            name: self.name,
            trip: self.trip,
            half_open: self.half_open,
            open: self.open,
            enforce: self.enforce,
            thread_counters: self.thread_counters,
        }
    }
}

/// # Memory
impl<C, O> Builder<C, O> {
    /// How many threads at once count the breaker's lifetime totals (the
    /// [`Snapshot::totals`](crate::Snapshot)) on a cache line of their own, with plain stores;
    /// further threads share one line with atomic adds. Allowed: `0..=15`. Each costs 128
    /// bytes of heap.
    ///
    /// Default: the number of CPUs the process may run on, at most 15. A breaker that one
    /// thread or a few calls at a time use (one of many per-host or per-tenant breakers)
    /// needs none: `thread_counters(0)` makes it about 1.5 KiB smaller on a 16-CPU machine.
    /// Under `no_std` every breaker has one shared line and this setting is ignored.
    ///
    /// ```
    /// use breaker_core::CircuitBreaker;
    ///
    /// let per_host = CircuitBreaker::builder()
    ///     .consecutive_failures(5)
    ///     .thread_counters(0)
    ///     .build()?;
    /// assert_eq!(per_host.memory().thread_counters, 0);
    /// assert!(CircuitBreaker::builder().thread_counters(16).build().is_err());
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    pub fn thread_counters(mut self, threads: u32) -> Self {
        self.thread_counters = Some(threads);
        self
    }
}

/// # Building
impl<C, O> Builder<C, O> {
    /// Validates the settings into a [`Config`], dropping the clock and observer.
    pub fn build_config(self) -> Result<Config, ConfigError> {
        self.split().map(|(config, _, _)| config)
    }

    pub(crate) fn split(self) -> Result<(Config, C, O), ConfigError> {
        let trip = self.trip.validate()?;
        let (half_open_probes, max_half_open_nanos) = self.half_open.validate()?;
        let open = self.open.validate()?;
        let enforcement_seed = self.enforce.seed;
        let enforcement_ppm = self.enforce.validate()?;
        let thread_counters = match self.thread_counters {
            None => crate::stats::default_thread_counters(),
            Some(n) if n <= crate::stats::MAX_THREAD_COUNTERS as u32 => n as u8,
            Some(n) => {
                return Err(ConfigError::new(
                    "thread_counters",
                    ConfigValue::Count(n.into()),
                    "0..=15 threads with counters of their own",
                ));
            }
        };
        let config = Config {
            name: self.name,
            thread_counters,
            policy: trip.policy,
            minimum_calls: trip.minimum_calls,
            failure_rate_ppm: trip.failure_rate_ppm,
            slow_rate_ppm: trip.slow_rate_ppm,
            slow_nanos: trip.slow_nanos,
            half_open_probes,
            max_half_open_nanos,
            max_pushback_nanos: open.max_pushback_nanos(),
            open: open.duration,
            enforcement_ppm,
            enforcement_seed,
            #[cfg(feature = "alloc")]
            jitter: open.jitter,
            #[cfg(feature = "alloc")]
            trip_when: trip.trip_when,
        };
        Ok((config, self.clock, self.observer))
    }
}

/// The trip rules, validated.
struct TripRules {
    policy: PolicyKind,
    minimum_calls: u32,
    failure_rate_ppm: u32,
    slow_rate_ppm: u32,
    slow_nanos: u64,
    #[cfg(feature = "alloc")]
    trip_when: Option<TripPredicate>,
}

impl TripChoice {
    fn validate(self) -> Result<TripRules, ConfigError> {
        use ConfigValue::{Conflict, Count, Duration as Dur, Number};
        let policy = self
            .policy
            .unwrap_or(PolicyKind::ConsecutiveFailures { threshold: 5 });
        validate_policy(policy)?;
        let windowed = policy.uses_window();
        #[cfg(feature = "alloc")]
        let has_predicate = self.trip_when.is_some();
        #[cfg(not(feature = "alloc"))]
        let has_predicate = false;
        if !windowed {
            let conflict = |field| {
                Err(ConfigError::new(
                    field,
                    Conflict,
                    "only with a window: call count_window, time_window or cumulative_window",
                ))
            };
            if self.minimum_calls.is_some() {
                return conflict("minimum_calls");
            }
            if self.failure_rate.is_some() {
                return conflict("failure_rate");
            }
            if self.slow_rate.is_some() {
                return conflict("slow_calls");
            }
            if has_predicate {
                return conflict("trip_when");
            }
        }
        let minimum_calls = match (self.minimum_calls, policy) {
            (Some(m), PolicyKind::CountWindow { size }) if m == 0 || m > size => {
                return Err(ConfigError::new(
                    "minimum_calls",
                    Count(m.into()),
                    "1..=the count window size",
                ));
            }
            (Some(0), _) => {
                return Err(ConfigError::new("minimum_calls", Count(0), ">= 1"));
            }
            (Some(m), _) => m,
            (None, PolicyKind::CountWindow { size }) => size.min(100),
            (None, _) => 100,
        };
        let percent = |field, value: Option<f64>, default: f64| {
            let v = value.unwrap_or(default);
            if v.is_finite() && v > 0.0 && v <= 100.0 {
                Ok((v * 10_000.0 + 0.5) as u32)
            } else {
                Err(ConfigError::new(
                    field,
                    Number(v),
                    "a percentage in (0, 100]",
                ))
            }
        };
        let failure_rate_ppm = if windowed {
            percent("failure_rate", self.failure_rate, 50.0)?
        } else {
            0
        };
        let slow_rate_ppm = match self.slow_rate {
            Some(r) => percent("slow_calls.percent", Some(r), 100.0)?,
            None => 0,
        };
        let slow_nanos = match self.slow_duration {
            Some(d) if d.is_zero() => {
                return Err(ConfigError::new(
                    "slow_calls.duration",
                    Dur(d),
                    "a duration > 0",
                ));
            }
            Some(d) => nanos(d).min(u64::MAX - 1),
            None => u64::MAX,
        };
        Ok(TripRules {
            policy,
            minimum_calls,
            // A predicate replaces the rate rules.
            failure_rate_ppm: if has_predicate { 0 } else { failure_rate_ppm },
            slow_rate_ppm: if has_predicate { 0 } else { slow_rate_ppm },
            slow_nanos,
            #[cfg(feature = "alloc")]
            trip_when: self.trip_when,
        })
    }
}

fn validate_policy(policy: PolicyKind) -> Result<(), ConfigError> {
    use ConfigValue::{Count, Duration as Dur};
    match policy {
        PolicyKind::ConsecutiveFailures { threshold } => {
            if !(1..=MAX_CONSECUTIVE_FAILURES).contains(&threshold) {
                return Err(ConfigError::new(
                    "consecutive_failures",
                    Count(threshold.into()),
                    "1..=8_388_607",
                ));
            }
        }
        PolicyKind::CountWindow { size } => {
            if !(1..=MAX_COUNT_WINDOW).contains(&size) {
                return Err(ConfigError::new(
                    "count_window",
                    Count(size.into()),
                    "a window size in 1..=32_767",
                ));
            }
        }
        PolicyKind::TimeWindow { duration, buckets } => {
            if !(1..=MAX_BUCKETS).contains(&buckets) {
                return Err(ConfigError::new(
                    "time_window.buckets",
                    Count(buckets.into()),
                    "1..=1024",
                ));
            }
            if nanos(duration) < u64::from(buckets) {
                return Err(ConfigError::new(
                    "time_window.duration",
                    Dur(duration),
                    "at least `buckets` nanoseconds (each bucket spans >= 1 ns)",
                ));
            }
        }
        PolicyKind::Cumulative => {}
    }
    Ok(())
}

impl HalfOpenChoice {
    /// Probes per half-open period, and the half-open limit in nanoseconds.
    fn validate(self) -> Result<(u32, u64), ConfigError> {
        use ConfigValue::{Count, Duration as Dur};
        if !(1..=MAX_HALF_OPEN_PROBES).contains(&self.probes) {
            return Err(ConfigError::new(
                "half_open_probes",
                Count(self.probes.into()),
                "1..=2047",
            ));
        }
        let max = match self.max {
            Some(d) if d.is_zero() => {
                return Err(ConfigError::new("max_half_open", Dur(d), "a duration > 0"));
            }
            Some(d) => nanos(d),
            None => nanos(DEFAULT_MAX_HALF_OPEN),
        };
        Ok((self.probes, max))
    }
}

impl EnforceChoice {
    /// The share enforced, in parts per million.
    fn validate(self) -> Result<u32, ConfigError> {
        if !(self.percent.is_finite() && (0.0..=100.0).contains(&self.percent)) {
            return Err(ConfigError::new(
                "enforcement",
                ConfigValue::Number(self.percent),
                "a percentage in [0, 100]",
            ));
        }
        // Rounded to the nearest (`f64::round` is not in `core`; the value is >= 0).
        Ok((self.percent * 10_000.0 + 0.5) as u32)
    }
}

impl OpenChoice {
    /// The longest open period a pushback may ask for, in nanoseconds: as set, or the
    /// longest configured open period and at least 5 minutes.
    fn max_pushback_nanos(&self) -> u64 {
        if let Some(max) = self.max_pushback {
            return nanos(max);
        }
        let longest = match &self.duration {
            OpenDuration::Fixed(d) => *d,
            OpenDuration::Exponential { max, .. } => *max,
            #[cfg(feature = "alloc")]
            OpenDuration::Custom(_) => Duration::ZERO,
        };
        nanos(longest.max(Duration::from_secs(300)))
    }

    fn validate(self) -> Result<Self, ConfigError> {
        use ConfigValue::{Duration as Dur, Number};
        if let Some(max) = self.max_pushback
            && max.is_zero()
        {
            return Err(ConfigError::new("max_pushback", Dur(max), "a duration > 0"));
        }
        match &self.duration {
            OpenDuration::Fixed(d) if d.is_zero() => {
                return Err(ConfigError::new("open_duration", Dur(*d), "a duration > 0"));
            }
            OpenDuration::Exponential {
                initial,
                multiplier,
                max,
            } => {
                if initial.is_zero() {
                    return Err(ConfigError::new(
                        "exponential_open_duration.initial",
                        Dur(*initial),
                        "a duration > 0",
                    ));
                }
                if !(multiplier.is_finite() && *multiplier >= 1.0) {
                    return Err(ConfigError::new(
                        "exponential_open_duration.multiplier",
                        Number(*multiplier),
                        "a finite number >= 1",
                    ));
                }
                if max < initial {
                    return Err(ConfigError::new(
                        "exponential_open_duration.max",
                        Dur(*max),
                        "a duration >= initial",
                    ));
                }
            }
            _ => {}
        }
        #[cfg(feature = "alloc")]
        if let Some(j) = &self.jitter
            && !(j.factor.is_finite() && j.factor > 0.0 && j.factor < 1.0)
        {
            return Err(ConfigError::new(
                "jitter.factor",
                Number(j.factor),
                "a fraction in (0, 1)",
            ));
        }
        Ok(self)
    }
}
