//! The circuit breaker: the composition of the atomic protocols (the [control
//! word](crate::control), [phase publication](crate::phase), the [windows](crate::window), the
//! [stat stripes](crate::stats)) into acquire, record, transition and query.
//!
//! - this file: the type, acquiring permits, and queries;
//! - [`record`]: recording outcomes (windows, trip rules, probes);
//! - [`transition`]: time-driven transitions, making and publishing them;
//! - [`operator`]: operator controls and reconfiguration.
//!
//! Permits (the call lifecycle) live in the `permit` module beside this one, the synchronous
//! `call` helper in `call`: both build on this module, never the other way round.

mod operator;
mod record;
mod transition;

pub use operator::{Follow, OperatorAction, ProbeAllowance};

use core::fmt;
use core::time::Duration;

#[cfg(feature = "alloc")]
use alloc::boxed::Box;

use crate::clock::{Clock, nanos};
#[cfg(feature = "alloc")]
use crate::config::OpenDuration;
use crate::config::{Builder, Config, PolicyKind, name_str};
use crate::control::{ControlWord, ProbeSlot, Word};
use crate::error::{ConfigError, RejectReason, Rejected};
use crate::observer::{Event, NoopObserver, Observer};
use crate::phase::PhaseCell;
use crate::snapshot::{Counts, MemoryUse, Snapshot};
use crate::state::State;
use crate::stats::{Stat, Stats};
use crate::sync::{AtomicU64, Ordering};
use crate::ticket::{Kind, Ticket};
use crate::tunables::Tunables;
#[cfg(feature = "alloc")]
use crate::window::Window;

/// How many of the clock's usual coarse lags ([`Clock::coarse_lag_nanos`]) a deadline must be
/// away for a rejection to be decided on the coarse reading (64 ms at the usual 250 Hz tick).
pub(crate) const DEADLINE_MARGIN_LAGS: u64 = 8;

/// Declares [`CircuitBreaker`], with the system's monotonic clock as the default clock type
/// under `std` (so `Arc<CircuitBreaker>` names the common case) and no default without it.
macro_rules! circuit_breaker {
    ($($clock_default:tt)*) => {
        /// A lock-free circuit breaker.
        ///
        /// Build one with [`CircuitBreaker::builder`] (or
        /// [`builder_with_clock`](Self::builder_with_clock)), share it (`&`, `Arc`,
        /// [`leak`](Self::leak)), and guard each call of the dependency with the two-step
        /// protocol: [`try_acquire`](Self::try_acquire) a [`Permit`](crate::Permit), run the
        /// call, then [`record`](crate::Permit::record) its [`Outcome`](crate::Outcome).
        /// [`call`](Self::call) does all three for a closure.
        ///
        /// Closed-state calls cost a few atomic operations, no lock and no allocation;
        /// rejections while open are as cheap. Time-driven transitions (open to half-open,
        /// half-open timeout) happen lazily when the breaker is used or queried.
        ///
        /// With `std`, the clock type defaults to [`MonotonicClock`](crate::MonotonicClock)
        /// and the observer to [`NoopObserver`]: `CircuitBreaker` alone names what
        /// [`CircuitBreaker::builder`] builds.
        ///
        /// ```
        /// use breaker_core::{CircuitBreaker, ManualClock, Outcome, State};
        /// use std::time::Duration;
        ///
        /// let clock = ManualClock::new();
        /// let breaker = CircuitBreaker::builder_with_clock(clock.clone())
        ///     .consecutive_failures(2)
        ///     .open_duration(Duration::from_secs(10))
        ///     .build()?;
        ///
        /// for _ in 0..2 {
        ///     let permit = breaker.try_acquire().expect("closed");
        ///     permit.record(Outcome::Failure);
        /// }
        /// assert_eq!(breaker.state(), State::Open);
        /// let rejected = breaker.try_acquire().unwrap_err();
        /// assert_eq!(rejected.retry_after(), Some(Duration::from_secs(10)));
        ///
        /// clock.advance(Duration::from_secs(10) + Duration::from_nanos(1));
        /// let probe = breaker.try_acquire().expect("half-open admits a probe");
        /// probe.record(Outcome::Success);
        /// assert_eq!(breaker.state(), State::Closed);
        /// # Ok::<(), breaker_core::ConfigError>(())
        /// ```
        pub struct CircuitBreaker<C $($clock_default)*, O = NoopObserver> {
            control: ControlWord,
            phase: PhaseCell,
            tunables: Tunables,
            stats: Stats,
            /// Total successes when the current run of successes began.
            success_mark: AtomicU64,
            /// A coordinator's cap on half-open probes (see [`ProbeAllowance`]), packed as
            /// `[generation:32 | probes:32]`; `u64::MAX` for none.
            probe_allowance: AtomicU64,
            /// When the allowance lapses (breaker time, like phase deadlines); `NO_TIME`:
            /// never. Stored before the allowance and read after it (see `probes_allowed`).
            probe_lease_until: AtomicU64,
            /// Refusals decided while enforcing only a share of them: the counter the
            /// choice of which to enforce hashes.
            refusals_seen: AtomicU64,
            origin: u64,
            name: crate::config::Name,
            policy: PolicyKind,
            #[cfg(feature = "alloc")]
            window: Window,
            #[cfg(feature = "alloc")]
            open_fn: Option<Box<dyn Fn(u32) -> Duration + Send + Sync>>,
            /// Its jitter: a source of the caller's with its factor, or the breaker's own
            /// generator, whose factor is a tunable (0: none).
            #[cfg(feature = "alloc")]
            jitter: crate::config::Jitter,
            #[cfg(feature = "alloc")]
            trip_when: Option<crate::config::TripPredicate>,
            clock: C,
            observer: O,
        }
    };
}

#[cfg(feature = "std")]
circuit_breaker!(= crate::clock::MonotonicClock);
#[cfg(not(feature = "std"))]
circuit_breaker!();

impl<C, O> fmt::Debug for CircuitBreaker<C, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.control.load();
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name)
            .field("state", &w.state())
            .field("generation", &w.epoch())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "std")]
impl CircuitBreaker<crate::clock::MonotonicClock, NoopObserver> {
    /// A builder for a breaker on the system's monotonic clock.
    pub fn builder() -> Builder<crate::clock::MonotonicClock, NoopObserver> {
        Builder::with_clock(crate::clock::MonotonicClock::new())
    }
}

impl<C: Clock> CircuitBreaker<C, NoopObserver> {
    /// A builder for a breaker that reads time from `clock`.
    pub fn builder_with_clock(clock: C) -> Builder<C, NoopObserver> {
        Builder::with_clock(clock)
    }
}

impl<C: Clock, O: Observer> Builder<C, O> {
    /// Validates the settings and builds the breaker.
    pub fn build(self) -> Result<CircuitBreaker<C, O>, ConfigError> {
        let (config, clock, observer) = self.split()?;
        Ok(CircuitBreaker::from_parts(config, clock, observer))
    }
}

impl<C: Clock, O: Observer> CircuitBreaker<C, O> {
    /// A breaker from a validated configuration.
    pub fn new(config: Config, clock: C, observer: O) -> Self {
        Self::from_parts(config, clock, observer)
    }

    pub(crate) fn from_parts(config: Config, clock: C, observer: O) -> Self {
        let origin = clock.now_nanos();
        let tunables = Tunables::new(&config);
        CircuitBreaker {
            control: ControlWord::new(),
            phase: PhaseCell::new(),
            tunables,
            stats: Stats::new(config.thread_counters),
            success_mark: AtomicU64::new(0),
            probe_allowance: AtomicU64::new(u64::MAX),
            probe_lease_until: AtomicU64::new(crate::phase::NO_TIME),
            refusals_seen: AtomicU64::new(0),
            origin,
            name: config.name,
            policy: config.policy,
            #[cfg(feature = "alloc")]
            window: Window::new(config.policy),
            #[cfg(feature = "alloc")]
            open_fn: match config.open {
                OpenDuration::Custom(f) => Some(f),
                _ => None,
            },
            #[cfg(feature = "alloc")]
            jitter: config.jitter.unwrap_or_else(|| crate::config::Jitter {
                factor: 0.0,
                source: crate::config::JitterSource::seeded(crate::fresh_seed()),
            }),
            #[cfg(feature = "alloc")]
            trip_when: config.trip_when,
            clock,
            observer,
        }
    }

    /// The observer given to the builder.
    pub fn observer(&self) -> &O {
        &self.observer
    }

    /// The clock the breaker reads.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The failure policy, with the thresholds in force (after any
    /// [`reconfigure`](Self::reconfigure)).
    pub fn policy(&self) -> PolicyKind {
        match self.policy {
            PolicyKind::ConsecutiveFailures { .. } => PolicyKind::ConsecutiveFailures {
                threshold: Tunables::get(&self.tunables.consecutive_threshold) as u32,
            },
            window => window,
        }
    }

    /// Whether the breaker looks at call durations (slow-call detection is on). When it is
    /// off, a [`Permit`](crate::Permit) reads no clock unless its call has a deadline.
    #[inline]
    pub fn measures_duration(&self) -> bool {
        Tunables::get(&self.tunables.slow_nanos) != u64::MAX
    }

    // ----- handing the breaker out ----------------------------------------------------

    /// Moves the breaker to the heap for the rest of the process and returns a `'static`
    /// reference to it: for breakers made once at start-up. Adapters holding a
    /// `&'static CircuitBreaker` copy a pointer per call, where over an `Arc` they clone and
    /// drop it (two atomic read-modify-writes on a line every calling thread writes).
    ///
    /// ```
    /// use breaker_core::CircuitBreaker;
    ///
    /// let breaker: &'static CircuitBreaker<_> =
    ///     CircuitBreaker::builder().consecutive_failures(5).build()?.leak();
    /// std::thread::spawn(move || breaker.call(|| Ok::<_, ()>(1))).join().unwrap().unwrap();
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    #[cfg(feature = "alloc")]
    pub fn leak(self) -> &'static Self {
        Box::leak(Box::new(self))
    }

    /// Reports `event` to the observer: for adapters that add events of their own
    /// ([`Event::FallbackUsed`]).
    #[inline]
    pub fn notify(&self, event: &Event) {
        self.emit(event)
    }

    /// The breaker's name (from [`Builder::name`]; `""` if it has none), as observers see it.
    pub fn name(&self) -> &str {
        name_str(&self.name)
    }

    #[inline(always)]
    fn emit(&self, event: &Event) {
        self.observer.on_breaker_event(name_str(&self.name), event)
    }

    /// The first step of the protocol. The states that admit every call are decided here,
    /// inlined into every caller; open and half-open take the out-of-line path.
    #[inline(always)]
    pub(crate) fn acquire_ticket(&self) -> Result<Ticket, Rejected> {
        let w = self.control.load();
        let kind = match w.state() {
            State::Closed | State::MetricsOnly => Kind::Closed,
            State::Disabled => Kind::Passthrough,
            _ => return self.acquire_ticket_slow(w),
        };
        Ok(Ticket::new(w.epoch(), kind))
    }

    #[inline(never)]
    fn acquire_ticket_slow(&self, mut w: Word) -> Result<Ticket, Rejected> {
        loop {
            match w.state() {
                State::Closed | State::MetricsOnly => {
                    return Ok(Ticket::new(w.epoch(), Kind::Closed));
                }
                State::Disabled => {
                    return Ok(Ticket::new(w.epoch(), Kind::Passthrough));
                }
                State::ForcedOpen => {
                    return Err(self.reject(RejectReason::ForcedOpen, None));
                }
                State::Open | State::HalfOpen => {
                    let deadline = self.deadline(w.epoch());
                    if let (State::Open, Some(deadline)) = (w.state(), deadline)
                        && let Some(left) = self.far_from(deadline)
                    {
                        return self.refuse(w, RejectReason::Open, Some(left));
                    }
                    let now = self.now();
                    let admit = self.probes_allowed(w.epoch().wrapping_add(1), now) > 0;
                    if let Some(next) = Self::due_transition(w, now, deadline, admit) {
                        match self.transition(w, next, Some(now)) {
                            Ok(()) => {
                                self.announce(w, next, None);
                                if next.state() == State::HalfOpen && admit {
                                    return Ok(Ticket::new(next.epoch(), Kind::Probe));
                                }
                                w = next;
                            }
                            Err(actual) => w = actual,
                        }
                        continue;
                    }
                    if w.state() == State::Open {
                        if deadline.is_none() {
                            // The phase belongs to another generation: either ours is not
                            // published yet (we just tripped), or the word moved on.
                            let fresh = self.control.load();
                            if fresh != w {
                                w = fresh;
                                continue;
                            }
                        }
                        let retry_after = self.open_retry_after(w, deadline, now);
                        return self.refuse(w, RejectReason::Open, Some(nanos(retry_after)));
                    }
                    let limit = (Tunables::get(&self.tunables.half_open_probes) as u32)
                        .min(self.probes_allowed(w.epoch(), now));
                    match self.control.take_probe(w, limit) {
                        ProbeSlot::Taken => {
                            return Ok(Ticket::new(w.epoch(), Kind::Probe));
                        }
                        ProbeSlot::Full => {
                            return self.refuse(w, RejectReason::HalfOpenFull, None);
                        }
                        ProbeSlot::Changed(actual) => w = actual,
                    }
                }
            }
        }
    }

    /// How long until `deadline`, if the coarse clock shows it is still more than
    /// [`DEADLINE_MARGIN_LAGS`] of the clock's usual coarse lag away (so the precise clock
    /// need not be read). The answer errs on the long side, by the coarse reading's actual
    /// lag: a caller is never told to retry too early.
    ///
    /// The margin, not the usual lag, is what keeps a probe on time: the kernel's coarse
    /// clock normally trails by less than a tick, but a virtual machine whose CPU is
    /// descheduled sees it trail by much more (39 ms measured on a CI VM whose usual lag is
    /// 8 ms). A rejection decided on the coarse reading within the margin of the deadline
    /// could refuse a call that is already due; past the margin, a probe is late only by the
    /// part of a lag that exceeds it.
    #[inline(always)]
    fn far_from(&self, deadline: u64) -> Option<u64> {
        let lag = self.clock.coarse_lag_nanos();
        if lag == 0 {
            return None;
        }
        let recent = self.coarse_now();
        let margin = lag.saturating_mul(DEADLINE_MARGIN_LAGS);
        (recent.saturating_add(margin) < deadline).then(|| deadline - recent)
    }

    /// A refusal the breaker decided in word `w`: enforced (a [`Rejected`]) unless the
    /// enforcement ramp lets this one through (a pass-through ticket: the call goes ahead,
    /// nothing is recorded). Only decisions of the state machine go through here; operator
    /// isolation is always enforced.
    #[inline]
    fn refuse(
        &self,
        w: Word,
        reason: RejectReason,
        retry_after_nanos: Option<u64>,
    ) -> Result<Ticket, Rejected> {
        let ppm = Tunables::get(&self.tunables.enforcement_ppm);
        if ppm < 1_000_000 && !self.enforced(ppm) {
            return Ok(self.unenforced(w, reason));
        }
        Err(self.reject(reason, retry_after_nanos))
    }

    /// Whether this refusal is enforced, `ppm` parts per million of them being: a hash of
    /// the refusals' count and the seed, so the same seed enforces the same ones.
    #[cold]
    #[inline(never)]
    fn enforced(&self, ppm: u64) -> bool {
        let n = self.refusals_seen.fetch_add(1, Ordering::Relaxed);
        let seed = Tunables::get(&self.tunables.enforcement_seed);
        crate::splitmix64(seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))) % 1_000_000
            < ppm
    }

    /// A refusal let through by the enforcement ramp: counted and reported apart.
    #[cold]
    fn unenforced(&self, w: Word, reason: RejectReason) -> Ticket {
        self.stats.add(Stat::Unenforced);
        self.emit(&Event::Unenforced { reason });
        Ticket::new(w.epoch(), Kind::Passthrough)
    }

    /// Counts and reports a refused call, `retry_after_nanos` before a probe is admitted if
    /// that is known.
    #[inline]
    fn reject(&self, reason: RejectReason, retry_after_nanos: Option<u64>) -> Rejected {
        self.stats.add(Stat::Rejected);
        self.emit(&Event::Rejected { reason });
        Rejected {
            reason,
            retry_after_nanos: retry_after_nanos.map_or(Rejected::NO_RETRY_AFTER, |n| {
                n.min(Rejected::NO_RETRY_AFTER - 1)
            }),
        }
    }

    // ----- queries ----------------------------------------------------------------------

    /// The current state (making any transition that time has made due).
    #[inline]
    pub fn state(&self) -> State {
        let w = self.control.load();
        match w.state() {
            // Only open and half-open move with time.
            State::Open | State::HalfOpen => self.current().state(),
            state => state,
        }
    }

    /// State, counts and rates at this moment. Exact once concurrent calls have finished.
    ///
    /// ```
    /// use breaker_core::{CircuitBreaker, ManualClock, Outcome};
    /// use std::time::Duration;
    ///
    /// let breaker = CircuitBreaker::builder_with_clock(ManualClock::new())
    ///     .count_window(10)
    ///     .minimum_calls(10)
    ///     .build()?;
    /// for outcome in [Outcome::Success, Outcome::Failure, Outcome::Success, Outcome::Ignored] {
    ///     breaker.try_acquire().unwrap().record(outcome);
    /// }
    /// let s = breaker.snapshot();
    /// assert_eq!((s.window.calls, s.window.failures), (3, 1));
    /// assert_eq!(s.totals.ignored, 1);
    /// assert_eq!(s.consecutive_successes, 1);
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    pub fn snapshot(&self) -> Snapshot {
        let w = self.current();
        let epoch = w.epoch();
        let state = w.state();
        let mut window = Counts::default();
        if matches!(state, State::Closed | State::MetricsOnly) {
            window = self.window_counts(epoch);
            window.consecutive_failures = w.failures();
        }
        let totals = self.stats.totals();
        let mark = self.success_mark.load(Ordering::Relaxed);
        let half_open = state == State::HalfOpen;
        Snapshot {
            state,
            generation: epoch,
            window,
            consecutive_successes: totals.successes.saturating_sub(mark),
            half_open_admitted: if half_open { w.admitted() } else { 0 },
            half_open_successes: if half_open { w.probe_successes() } else { 0 },
            open_attempts: w.attempts(),
            retry_after: self.retry_after_of(w),
            totals,
        }
    }

    /// What this breaker occupies: its inline size and what it allocated (see [`MemoryUse`]).
    ///
    /// ```
    /// use breaker_core::CircuitBreaker;
    ///
    /// let small = CircuitBreaker::builder().consecutive_failures(5).thread_counters(0).build()?;
    /// let window = CircuitBreaker::builder().count_window(100).thread_counters(0).build()?;
    /// // 100 slots of 8 bytes more, and the window's 128-byte cursor block.
    /// assert_eq!(window.memory().heap_bytes - small.memory().heap_bytes, 800 + 128);
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    pub fn memory(&self) -> MemoryUse {
        #[allow(unused_mut)]
        let mut heap = self.stats.heap_bytes();
        #[cfg(feature = "alloc")]
        {
            heap += self.window.heap_bytes();
            if let alloc::borrow::Cow::Owned(name) = &self.name {
                heap += name.capacity();
            }
            heap += self
                .open_fn
                .as_ref()
                .map_or(0, |f| core::mem::size_of_val(&**f));
            if let crate::config::JitterSource::Custom(f) = &self.jitter.source {
                heap += core::mem::size_of_val(&**f);
            }
            heap += self
                .trip_when
                .as_ref()
                .map_or(0, |f| core::mem::size_of_val(&**f));
        }
        MemoryUse {
            inline_bytes: core::mem::size_of::<Self>(),
            heap_bytes: heap,
            thread_counters: self.stats.thread_counters(),
        }
    }

    /// How long until a probe call is admitted: `Some` while open (zero once due), `None`
    /// otherwise.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after_of(self.current())
    }

    fn retry_after_of(&self, w: Word) -> Option<Duration> {
        if w.state() != State::Open {
            return None;
        }
        Some(self.open_retry_after(w, self.deadline(w.epoch()), self.now()))
    }

    #[allow(unused_variables)]
    fn window_counts(&self, epoch: u32) -> Counts {
        #[cfg(feature = "alloc")]
        match &self.window {
            Window::None => {}
            Window::Count(w) => return w.counts(epoch),
            Window::Time(w) => return w.counts(epoch, self.tick(w, epoch)),
        }
        Counts::default()
    }
}
