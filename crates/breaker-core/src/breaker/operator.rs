//! Operator controls (force open, disable, metrics-only, trip, reset) and run-time
//! reconfiguration.

use core::time::Duration;

use super::CircuitBreaker;
use crate::clock::{Clock, nanos};
use crate::config::{Config, ConfigInForce};
use crate::control::MAX_ATTEMPTS;
use crate::error::ReconfigureError;
use crate::observer::{Event, Observer};
use crate::phase::{NO_TIME, deadline_after, passed};
use crate::state::State;
use crate::sync::{Ordering, spin_hint};
use crate::tunables::Tunables;
#[cfg(feature = "alloc")]
use crate::window::Window;

impl<C: Clock, O: Observer> CircuitBreaker<C, O> {
    pub(super) fn force(&self, target: State, is_reset: bool) {
        self.force_from(target, is_reset, |_| true);
    }

    /// Moves the breaker to `target` if its state is one `from` accepts (checked on the
    /// state the move is made from, so no other move slips in between); whether it did.
    fn force_from(&self, target: State, is_reset: bool, from: impl Fn(State) -> bool) -> bool {
        let mut w = self.control.load();
        loop {
            if !from(w.state()) || (w.state() == target && !is_reset) {
                return false;
            }
            let attempts = match target {
                State::Open => w.attempts() + 1,
                State::HalfOpen | State::ForcedOpen => w.attempts(),
                _ => 0,
            };
            let next = w.next(target, attempts.min(MAX_ATTEMPTS), 0);
            match self.transition(w, next, None) {
                Ok(()) => {
                    if is_reset {
                        self.emit(&Event::Reset);
                    }
                    self.announce(w, next, None);
                    return true;
                }
                Err(actual) => {
                    w = actual;
                    spin_hint();
                }
            }
        }
    }

    /// Isolates the dependency: every call is rejected ([`RejectReason::ForcedOpen`](crate::RejectReason::ForcedOpen)) until
    /// [`reset`](Self::reset). Calls in flight are dropped as late when they finish.
    pub fn force_open(&self) {
        self.force(State::ForcedOpen, false)
    }

    /// Bypasses the breaker: every call is admitted and nothing is recorded, until
    /// [`reset`](Self::reset).
    pub fn disable(&self) {
        self.force(State::Disabled, false)
    }

    /// Records and reports (threshold events) but never trips, until
    /// [`reset`](Self::reset). Starts with an empty window.
    pub fn metrics_only(&self) {
        self.force(State::MetricsOnly, false)
    }

    /// Opens the breaker now, as if a rule had tripped (the open period and backoff apply).
    pub fn trip(&self) {
        self.force(State::Open, false)
    }

    /// Back to closed with empty counts and backoff; permits issued before are late.
    /// Also ends forced-open, disabled and metrics-only modes.
    pub fn reset(&self) {
        self.force(State::Closed, true)
    }

    /// Applies an operator's action, named by an [`OperatorAction`] (what an admin
    /// interface receives): the same as calling [`trip`](Self::trip),
    /// [`reset`](Self::reset), [`force_open`](Self::force_open), [`disable`](Self::disable)
    /// or [`metrics_only`](Self::metrics_only); [`OperatorAction::Normal`] ends an operator
    /// mode and leaves a breaker its rules are in charge of as it is.
    ///
    /// ```
    /// use breaker_core::{CircuitBreaker, ManualClock, OperatorAction, State};
    ///
    /// let breaker = CircuitBreaker::builder_with_clock(ManualClock::new()).build()?;
    /// breaker.apply(OperatorAction::ForceOpen);
    /// assert_eq!(breaker.state(), State::ForcedOpen);
    /// breaker.apply(OperatorAction::Normal); // the operator's isolation ends
    /// assert_eq!(breaker.state(), State::Closed);
    /// breaker.trip();
    /// breaker.apply(OperatorAction::Normal); // a trip is the rules' business: still open
    /// assert_eq!(breaker.state(), State::Open);
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    pub fn apply(&self, action: OperatorAction) {
        match action {
            OperatorAction::Trip => self.trip(),
            OperatorAction::Reset => self.reset(),
            OperatorAction::ForceOpen => self.force_open(),
            OperatorAction::Disable => self.disable(),
            OperatorAction::MetricsOnly => self.metrics_only(),
            OperatorAction::Normal => {
                self.force_from(State::Closed, true, |state| {
                    matches!(
                        state,
                        State::ForcedOpen | State::Disabled | State::MetricsOnly
                    )
                });
            }
        }
    }

    /// The settings this breaker runs with now (see [`ConfigInForce`]).
    pub fn config_in_force(&self) -> ConfigInForce {
        let get = Tunables::get;
        let percent = |ppm: u64| (ppm != 0).then(|| ppm as f64 / 10_000.0);
        let slow = get(&self.tunables.slow_nanos);
        let max_half_open = get(&self.tunables.max_half_open_nanos);
        let initial = get(&self.tunables.open_initial_nanos);
        let max = get(&self.tunables.open_max_nanos);
        let multiplier = f64::from_bits(get(&self.tunables.open_multiplier_bits));
        #[cfg(feature = "alloc")]
        let (custom, jitter, trip_predicate) = (
            self.open_fn.is_some(),
            self.jitter_factor(),
            self.trip_when.is_some(),
        );
        #[cfg(not(feature = "alloc"))]
        let (custom, jitter, trip_predicate) = (false, None, false);
        ConfigInForce {
            policy: self.policy(),
            minimum_calls: get(&self.tunables.minimum_calls) as u32,
            failure_rate: percent(get(&self.tunables.failure_rate_ppm)),
            slow_call_rate: percent(get(&self.tunables.slow_rate_ppm)),
            slow_call_duration: (slow != u64::MAX).then(|| Duration::from_nanos(slow)),
            half_open_probes: get(&self.tunables.half_open_probes) as u32,
            max_half_open: (max_half_open != 0).then(|| Duration::from_nanos(max_half_open)),
            open_duration: self.open_duration(1),
            open_duration_max: (!custom && max != initial).then(|| Duration::from_nanos(max)),
            backoff_multiplier: (!custom && multiplier != 1.0).then_some(multiplier),
            open_duration_fn: custom,
            jitter,
            trip_predicate,
            max_pushback: Duration::from_nanos(get(&self.tunables.max_pushback_nanos)),
            enforcement: get(&self.tunables.enforcement_ppm) as f64 / 10_000.0,
        }
    }

    // ----- following a state decided elsewhere -----------------------------------------

    /// Moves the breaker to a state decided elsewhere (the shared state of a fleet of
    /// replicas, see the `breaker-redis` crate), if it is still in `generation` (the
    /// [`Snapshot::generation`](crate::Snapshot::generation) the decision was made on): a
    /// transition the breaker made on its own meanwhile wins, and is not overwritten.
    ///
    /// Returns the generation this produced (`Some` only if this call made the transition),
    /// so a coordinator knows exactly which generation is the one it followed: a local
    /// decision that lands right after, in another generation, is the breaker's own. Nothing
    /// changes (`None`) if the breaker left `generation`, is already in that state, or is in
    /// an operator mode (forced open, disabled, metrics-only), which wins over anything
    /// decided elsewhere. One exception to "already in that state": an open breaker whose
    /// deadline comes before the followed one moves on to the followed deadline (a new
    /// generation, reported as no state change), so its own shorter period does not end the
    /// one decided elsewhere; a later deadline of its own stands.
    ///
    /// A followed open period lasts the given time with the given backoff count; a followed
    /// half-open period starts its limit now; a followed close empties counts and backoff
    /// like [`reset`](Self::reset), reported as an ordinary transition.
    ///
    /// ```
    /// use breaker_core::{CircuitBreaker, Follow, ManualClock, State};
    /// use std::time::Duration;
    ///
    /// let breaker = CircuitBreaker::builder_with_clock(ManualClock::new()).build()?;
    /// let seen = breaker.snapshot().generation;
    /// let open = Follow::Open { open_for: Duration::from_secs(3), attempts: 1 };
    /// assert_eq!(breaker.follow(seen, open), Some(seen + 1));
    /// assert_eq!(breaker.state(), State::Open);
    /// assert_eq!(breaker.retry_after(), Some(Duration::from_secs(3)));
    /// // Decided on a generation the breaker has left: nothing happens.
    /// assert_eq!(breaker.follow(seen, Follow::Closed), None);
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    pub fn follow(&self, generation: u32, target: Follow) -> Option<u32> {
        let mut w = self.control.load();
        let (state, attempts, phase) = match target {
            Follow::Open { open_for, attempts } => (
                State::Open,
                attempts.clamp(1, MAX_ATTEMPTS),
                deadline_after(self.now(), nanos(open_for)),
            ),
            Follow::HalfOpen => (
                State::HalfOpen,
                w.attempts().max(1),
                match Tunables::get(&self.tunables.max_half_open_nanos) {
                    0 => NO_TIME,
                    limit => deadline_after(self.now(), limit),
                },
            ),
            Follow::Closed => (
                State::Closed,
                0,
                if self.window_needs_period_start() {
                    self.now()
                } else {
                    NO_TIME
                },
            ),
        };
        loop {
            let movable = matches!(w.state(), State::Closed | State::Open | State::HalfOpen);
            if w.epoch() != generation || !movable {
                return None;
            }
            if w.state() == state {
                // Already there; only an open period ending before the followed one moves.
                let earlier = state == State::Open
                    && self.deadline(w.epoch()).is_some_and(|mine| mine < phase);
                if !earlier {
                    return None;
                }
            }
            let next = w.next(state, attempts, 0);
            match self.transition_with_phase(w, next, phase) {
                Ok(()) => {
                    self.announce(w, next, None);
                    return Some(next.epoch());
                }
                // Only the counters of the same generation changed: decide again.
                Err(actual) => {
                    w = actual;
                    spin_hint();
                }
            }
        }
    }

    /// Caps the half-open probes this breaker admits (below its `half_open_probes`), for a
    /// coordinator that shares one probe budget among replicas (the `breaker-redis` crate).
    /// See [`ProbeAllowance`].
    ///
    /// ```
    /// use breaker_core::{CircuitBreaker, ManualClock, ProbeAllowance, RejectReason};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let breaker = CircuitBreaker::builder_with_clock(clock.clone())
    ///     .half_open_probes(3)
    ///     .open_duration(Duration::from_secs(1))
    ///     .build()?;
    /// breaker.trip();
    /// let half_open_generation = breaker.snapshot().generation + 1;
    /// breaker.set_probe_allowance(ProbeAllowance::InGeneration {
    ///     generation: half_open_generation,
    ///     probes: 1,
    /// });
    /// clock.advance(Duration::from_secs(2));
    /// let probe = breaker.try_acquire().expect("one probe allowed");
    /// let refused = breaker.try_acquire().unwrap_err();
    /// assert_eq!(refused.reason(), RejectReason::HalfOpenFull);
    /// # drop(probe);
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    pub fn set_probe_allowance(&self, allowance: ProbeAllowance) {
        self.store_probe_allowance(allowance, NO_TIME)
    }

    /// Like [`set_probe_allowance`](Self::set_probe_allowance), for `lease` from now on the
    /// breaker's clock. A coordinator renews the lease while it is alive; once the lease
    /// runs out without a renewal, the allowance lapses and the breaker admits probes as if
    /// none were set (its own `half_open_probes`): a coordinator that stops without a word
    /// (its runtime shut down, its process wedged) cannot leave the breaker without probes.
    ///
    /// ```
    /// use breaker_core::{CircuitBreaker, ManualClock, ProbeAllowance, RejectReason};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let breaker = CircuitBreaker::builder_with_clock(clock.clone())
    ///     .open_duration(Duration::from_secs(1))
    ///     .build()?;
    /// breaker.trip();
    /// let half_open = breaker.snapshot().generation + 1;
    /// let none = ProbeAllowance::InGeneration { generation: half_open, probes: 0 };
    /// breaker.lease_probe_allowance(none, Duration::from_secs(5));
    /// clock.advance(Duration::from_secs(2));
    /// assert_eq!(breaker.try_acquire().unwrap_err().reason(), RejectReason::HalfOpenFull);
    /// clock.advance(Duration::from_secs(4)); // the lease ran out, not renewed
    /// assert_eq!(breaker.probe_allowance(), ProbeAllowance::Unlimited);
    /// assert!(breaker.try_acquire().expect("its own probe").is_probe());
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    pub fn lease_probe_allowance(&self, allowance: ProbeAllowance, lease: Duration) {
        self.store_probe_allowance(allowance, deadline_after(self.now(), nanos(lease)))
    }

    /// Stores the lease's end first and the allowance after it: a reader that sees the new
    /// allowance (it reads the allowance first) also sees its lease, never an older one that
    /// may have run out. A reader that sees the old allowance with the new lease reads the
    /// state between the two stores, which is the old allowance, renewed.
    fn store_probe_allowance(&self, allowance: ProbeAllowance, until: u64) {
        let packed = match allowance {
            ProbeAllowance::Unlimited => u64::MAX,
            ProbeAllowance::InGeneration { generation, probes } => {
                (u64::from(generation) << 32) | u64::from(probes.min(u32::MAX - 1))
            }
        };
        self.probe_lease_until.store(until, Ordering::Release);
        self.probe_allowance.store(packed, Ordering::Release);
    }

    /// The allowance in force (see [`set_probe_allowance`](Self::set_probe_allowance)):
    /// [`Unlimited`](ProbeAllowance::Unlimited) once a lease ran out.
    pub fn probe_allowance(&self) -> ProbeAllowance {
        let packed = self.probe_allowance.load(Ordering::Acquire);
        let until = self.probe_lease_until.load(Ordering::Acquire);
        if packed == u64::MAX || passed(until, self.now()) {
            return ProbeAllowance::Unlimited;
        }
        ProbeAllowance::InGeneration {
            generation: (packed >> 32) as u32,
            probes: packed as u32,
        }
    }

    /// How many probes the allowance lets generation `epoch` admit at `now`.
    #[inline]
    pub(super) fn probes_allowed(&self, epoch: u32, now: u64) -> u32 {
        let packed = self.probe_allowance.load(Ordering::Acquire);
        if packed == u64::MAX || passed(self.probe_lease_until.load(Ordering::Acquire), now) {
            return u32::MAX;
        }
        if (packed >> 32) as u32 == epoch {
            packed as u32
        } else {
            0
        }
    }

    /// How long the `attempt`-th open period lasts under this breaker's configuration
    /// (backoff applied, jitter not): what a coordinator publishes when it trips a fleet.
    pub fn open_duration(&self, attempt: u32) -> Duration {
        Duration::from_nanos(self.open_nanos(attempt, false))
    }

    /// Applies a new configuration to the live breaker, keeping its state and counts.
    ///
    /// Thresholds, rates, minimum calls, slow-call duration, half-open probes and limit,
    /// and fixed / exponential open durations change; the new values apply from the next
    /// call (a lowered threshold trips on the next recorded call, not at once; an open
    /// period already running keeps its deadline). A concurrent call may see some of the
    /// new values and some of the old during the switch. The window (policy kind, size,
    /// duration, buckets) and closures (`trip_when`, `open_duration_fn`, a `jitter` source of
    /// yours) are fixed at build time: a config that carries them is refused and nothing
    /// changes. Jitter from the breaker's own generator (`jitter_seeded`, the `jitter`
    /// setting) is a tunable: the new config's factor applies (none turns it off), drawn
    /// from the live breaker's generator. A custom
    /// open-duration function of the live breaker keeps precedence over the new open
    /// duration.
    ///
    /// ```
    /// use breaker_core::{CircuitBreaker, Config, ManualClock, Outcome, State};
    /// use std::time::Duration;
    ///
    /// let breaker = CircuitBreaker::builder_with_clock(ManualClock::new())
    ///     .consecutive_failures(5)
    ///     .build()?;
    /// breaker.try_acquire().unwrap().record(Outcome::Failure);
    /// breaker.reconfigure(Config::builder().consecutive_failures(2).build_config()?).unwrap();
    /// breaker.try_acquire().unwrap().record(Outcome::Failure);
    /// assert_eq!(breaker.state(), State::Open);
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    pub fn reconfigure(&self, config: Config) -> Result<(), ReconfigureError> {
        self.check_reconfigure(&config)?;
        self.tunables.store(&config);
        #[cfg(feature = "alloc")]
        match &self.window {
            Window::Time(window) => {
                window.forget_verdict();
            }
            Window::Count(window) => window.forget_verdict(),
            Window::None => {}
        }
        Ok(())
    }
}

impl<C: Clock, O: Observer> CircuitBreaker<C, O> {
    /// Whether [`reconfigure`](Self::reconfigure) would take `config`, changing nothing.
    pub(crate) fn check_reconfigure(&self, config: &Config) -> Result<(), ReconfigureError> {
        if !config.policy.same_shape(&self.policy) {
            return Err(ReconfigureError::WindowShapeChanged);
        }
        if config.has_closures() {
            return Err(ReconfigureError::ClosureChanged);
        }
        Ok(())
    }
}

/// A cap on the half-open probes a breaker admits, set by a coordinator with
/// [`CircuitBreaker::set_probe_allowance`] (for good) or
/// [`CircuitBreaker::lease_probe_allowance`] (until a lease runs out): the breaker admits at
/// most `min(half_open_probes, allowance)` probes in a half-open period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeAllowance {
    /// No cap beyond `half_open_probes` (the default).
    Unlimited,
    /// `probes` probes in the half-open period of generation `generation` (see
    /// [`Snapshot::generation`](crate::Snapshot::generation)); none in any other half-open
    /// period, so an allowance granted for one period never leaks into the next.
    InGeneration {
        /// The generation of the half-open period the probes are for.
        generation: u32,
        /// How many probes that period may admit.
        probes: u32,
    },
}

/// A state decided outside the breaker, for [`CircuitBreaker::follow`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    /// Open for `open_for` from now, the `attempts`-th open period since the breaker last
    /// closed (at least 1).
    Open {
        /// How long the open period lasts, from now.
        open_for: Duration,
        /// The backoff count.
        attempts: u32,
    },
    /// Half-open now.
    HalfOpen,
    /// Closed now, with empty counts and backoff.
    Closed,
}

/// An operator's action on a breaker, for [`CircuitBreaker::apply`]: what an admin
/// interface receives by name ([`as_str`](Self::as_str)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OperatorAction {
    /// Open now, as if a rule had tripped ([`CircuitBreaker::trip`]).
    Trip,
    /// Closed with empty counts and backoff, whatever the state or mode
    /// ([`CircuitBreaker::reset`]).
    Reset,
    /// Reject every call until reset ([`CircuitBreaker::force_open`]).
    ForceOpen,
    /// Admit every call and record nothing until reset ([`CircuitBreaker::disable`]).
    Disable,
    /// Record but never trip until reset ([`CircuitBreaker::metrics_only`]).
    MetricsOnly,
    /// End an operator mode (forced open, disabled, metrics-only) with a reset; a closed,
    /// open or half-open breaker is left to its rules, unchanged.
    Normal,
}

impl OperatorAction {
    /// Every action, in the order an interface lists them.
    pub const ALL: [OperatorAction; 6] = [
        OperatorAction::Trip,
        OperatorAction::Reset,
        OperatorAction::ForceOpen,
        OperatorAction::Disable,
        OperatorAction::MetricsOnly,
        OperatorAction::Normal,
    ];

    /// Lower-case, snake-case name: `"trip"`, `"reset"`, `"force_open"`, `"disable"`,
    /// `"metrics_only"`, `"normal"`.
    ///
    /// ```
    /// use breaker_core::OperatorAction;
    ///
    /// let named = |name: &str| OperatorAction::ALL.into_iter().find(|a| a.as_str() == name);
    /// assert_eq!(named("force_open"), Some(OperatorAction::ForceOpen));
    /// assert_eq!(named("explode"), None);
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            OperatorAction::Trip => "trip",
            OperatorAction::Reset => "reset",
            OperatorAction::ForceOpen => "force_open",
            OperatorAction::Disable => "disable",
            OperatorAction::MetricsOnly => "metrics_only",
            OperatorAction::Normal => "normal",
        }
    }
}
