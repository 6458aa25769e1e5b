//! The settings [`reconfigure`](crate::CircuitBreaker::reconfigure) can change on a live
//! breaker, each in an atomic so a change needs no lock.

#[cfg(feature = "alloc")]
use core::time::Duration;

use crate::clock::nanos;
use crate::config::{Config, OpenDuration, PolicyKind};
use crate::sync::{AtomicU64, Ordering};

/// Tunables live in atomics so [`CircuitBreaker::reconfigure`] can change them on a live
/// breaker; every read is `Relaxed`.
pub(crate) struct Tunables {
    pub(crate) consecutive_threshold: AtomicU64,
    pub(crate) minimum_calls: AtomicU64,
    pub(crate) failure_rate_ppm: AtomicU64,
    pub(crate) slow_rate_ppm: AtomicU64,
    pub(crate) slow_nanos: AtomicU64,
    pub(crate) half_open_probes: AtomicU64,
    pub(crate) max_half_open_nanos: AtomicU64,
    pub(crate) open_initial_nanos: AtomicU64,
    pub(crate) open_multiplier_bits: AtomicU64,
    pub(crate) open_max_nanos: AtomicU64,
    pub(crate) max_pushback_nanos: AtomicU64,
    /// Parts per million of refusals enforced.
    pub(crate) enforcement_ppm: AtomicU64,
    pub(crate) enforcement_seed: AtomicU64,
    /// The jitter factor's bits (0.0: none), for a breaker drawing from its own generator.
    #[cfg(feature = "alloc")]
    pub(crate) jitter_factor_bits: AtomicU64,
}

impl Tunables {
    pub(crate) fn new(config: &Config) -> Self {
        let t = Tunables {
            consecutive_threshold: AtomicU64::new(0),
            minimum_calls: AtomicU64::new(0),
            failure_rate_ppm: AtomicU64::new(0),
            slow_rate_ppm: AtomicU64::new(0),
            slow_nanos: AtomicU64::new(0),
            half_open_probes: AtomicU64::new(0),
            max_half_open_nanos: AtomicU64::new(0),
            open_initial_nanos: AtomicU64::new(0),
            open_multiplier_bits: AtomicU64::new(0),
            open_max_nanos: AtomicU64::new(0),
            max_pushback_nanos: AtomicU64::new(0),
            enforcement_ppm: AtomicU64::new(0),
            enforcement_seed: AtomicU64::new(0),
            #[cfg(feature = "alloc")]
            jitter_factor_bits: AtomicU64::new(0),
        };
        t.store(config);
        t
    }

    pub(crate) fn store(&self, c: &Config) {
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        if let PolicyKind::ConsecutiveFailures { threshold } = c.policy {
            set(&self.consecutive_threshold, threshold.into());
        }
        set(&self.minimum_calls, c.minimum_calls.into());
        set(&self.failure_rate_ppm, c.failure_rate_ppm.into());
        set(&self.slow_rate_ppm, c.slow_rate_ppm.into());
        set(&self.slow_nanos, c.slow_nanos);
        set(&self.half_open_probes, c.half_open_probes.into());
        set(&self.max_half_open_nanos, c.max_half_open_nanos);
        let (initial, multiplier, max) = match c.open {
            OpenDuration::Fixed(d) => (d, 1.0, d),
            OpenDuration::Exponential {
                initial,
                multiplier,
                max,
            } => (initial, multiplier, max),
            #[cfg(feature = "alloc")]
            OpenDuration::Custom(_) => (Duration::ZERO, 1.0, Duration::ZERO),
        };
        set(&self.open_initial_nanos, nanos(initial));
        set(&self.open_multiplier_bits, f64::to_bits(multiplier));
        set(&self.open_max_nanos, nanos(max));
        set(&self.max_pushback_nanos, c.max_pushback_nanos);
        set(&self.enforcement_ppm, c.enforcement_ppm.into());
        set(&self.enforcement_seed, c.enforcement_seed);
        #[cfg(feature = "alloc")]
        set(
            &self.jitter_factor_bits,
            f64::to_bits(c.jitter.as_ref().map_or(0.0, |j| j.factor)),
        );
    }

    #[inline]
    pub(crate) fn get(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }
}
