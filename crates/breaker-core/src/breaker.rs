//! The circuit breaker: the two-step protocol (acquire a permit, record its outcome), the
//! lazy time-driven transitions and the operator controls.

use core::fmt;
use core::time::Duration;

#[cfg(feature = "alloc")]
use alloc::boxed::Box;

use crate::clock::{Clock, nanos};
use crate::config::{Builder, Config, OpenDuration, PolicyKind};
use crate::error::{ReconfigureError, RejectReason, Rejected};
use crate::observer::{Event, NoopObserver, Observer, Threshold};
#[cfg(feature = "alloc")]
use crate::permit::OwnedPermit;
use crate::permit::Permit;
use crate::phase::{NO_TIME, PhaseCell};
use crate::snapshot::{Counts, Snapshot};
use crate::state::{MAX_ATTEMPTS, State, Word};
use crate::stats::{Stat, Stats};
use crate::sync::{AtomicU64, Ordering, spin_hint};
#[cfg(feature = "alloc")]
use crate::window::Window;

/// The result of a call, as the breaker counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The dependency did its job.
    Success,
    /// The dependency failed: counts toward tripping; in half-open, re-opens the breaker.
    Failure,
    /// Neutral (a caller's bad request, a cancelled call, a 404...): counted nowhere, and a
    /// half-open probe slot is given back.
    Ignored,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Closed or metrics-only: counted in the window.
    Closed,
    /// Half-open probe: holds one probe slot until recorded or dropped.
    Probe,
    /// Disabled: nothing is recorded.
    Passthrough,
}

/// What a permit carries: the generation it was issued in and what kind of call it admits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ticket {
    pub(crate) epoch: u32,
    pub(crate) kind: Kind,
}

/// Tunables live in atomics so [`CircuitBreaker::reconfigure`] can change them on a live
/// breaker; every read is `Relaxed`.
struct Tunables {
    consecutive_threshold: AtomicU64,
    minimum_calls: AtomicU64,
    failure_rate_ppm: AtomicU64,
    slow_rate_ppm: AtomicU64,
    slow_nanos: AtomicU64,
    half_open_probes: AtomicU64,
    max_half_open_nanos: AtomicU64,
    open_initial_nanos: AtomicU64,
    open_multiplier_bits: AtomicU64,
    open_max_nanos: AtomicU64,
}

impl Tunables {
    fn new(config: &Config) -> Self {
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
        };
        t.store(config);
        t
    }

    fn store(&self, c: &Config) {
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
    }

    #[inline]
    fn get(a: &AtomicU64) -> u64 {
        a.load(Ordering::Relaxed)
    }
}

/// A lock-free circuit breaker.
///
/// Build one with [`CircuitBreaker::builder`] (or [`builder_with_clock`](Self::builder_with_clock)),
/// share it (`&`, `Arc`), and guard each call of the dependency with the two-step protocol:
/// [`try_acquire`](Self::try_acquire) a [`Permit`], run the call, then
/// [`record`](Permit::record) its [`Outcome`]. [`call`](Self::call) does all three for a
/// closure.
///
/// Closed-state calls cost a few atomic operations, no lock and no allocation; rejections
/// while open are as cheap. Time-driven transitions (open to half-open, half-open timeout)
/// happen lazily when the breaker is used or queried.
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
///     permit.record(Outcome::Failure, Duration::from_millis(3));
/// }
/// assert_eq!(breaker.state(), State::Open);
/// let rejected = breaker.try_acquire().unwrap_err();
/// assert_eq!(rejected.retry_after(), Some(Duration::from_secs(10)));
///
/// clock.advance(Duration::from_secs(10) + Duration::from_nanos(1));
/// let probe = breaker.try_acquire().expect("half-open admits a probe");
/// probe.record(Outcome::Success, Duration::from_millis(3));
/// assert_eq!(breaker.state(), State::Closed);
/// # Ok::<(), breaker_core::ConfigError>(())
/// ```
pub struct CircuitBreaker<C, O = NoopObserver> {
    word: AtomicU64,
    phase: PhaseCell,
    tunables: Tunables,
    stats: Stats,
    /// Total successes when the current run of successes began.
    success_mark: AtomicU64,
    origin: u64,
    name: crate::config::Name,
    policy: PolicyKind,
    #[cfg(feature = "alloc")]
    window: Window,
    #[cfg(feature = "alloc")]
    open_fn: Option<Box<dyn Fn(u32) -> Duration + Send + Sync>>,
    #[cfg(feature = "alloc")]
    jitter: Option<crate::config::Jitter>,
    #[cfg(feature = "alloc")]
    trip_when: Option<crate::config::TripPredicate>,
    clock: C,
    observer: O,
}

impl<C, O> fmt::Debug for CircuitBreaker<C, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = Word(self.word.load(Ordering::Acquire));
        f.debug_struct("CircuitBreaker")
            .field("name", &self.name)
            .field("state", &w.state())
            .field("generation", &w.epoch())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "std")]
impl CircuitBreaker<crate::MonotonicClock, NoopObserver> {
    /// A builder for a breaker on the system's monotonic clock.
    pub fn builder() -> Builder<crate::MonotonicClock, NoopObserver> {
        Builder::with_clock(crate::MonotonicClock::new())
    }
}

impl<C: Clock> CircuitBreaker<C, NoopObserver> {
    /// A builder for a breaker that reads time from `clock`.
    pub fn builder_with_clock(clock: C) -> Builder<C, NoopObserver> {
        Builder::with_clock(clock)
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
            word: AtomicU64::new(Word::new(State::Closed, 0, 0, 0).0),
            phase: PhaseCell::new(),
            tunables,
            stats: Stats::new(),
            success_mark: AtomicU64::new(0),
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
            jitter: config.jitter,
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

    /// Whether [`record`](Permit::record) looks at durations (slow-call detection is on).
    /// When it is off, callers may pass `Duration::ZERO` and skip timing calls.
    #[inline]
    pub fn measures_duration(&self) -> bool {
        Tunables::get(&self.tunables.slow_nanos) != u64::MAX
    }

    // ----- the two-step protocol ------------------------------------------------------

    /// Asks to make one call. `Ok` carries a [`Permit`]: make the call, then record its
    /// outcome (dropping the permit instead is neutral). `Err` says why the call must not
    /// be made and, when open, how long until a probe is allowed.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<&Self>, Rejected> {
        Permit::acquire(&self)
    }

    /// Like [`try_acquire`](Self::try_acquire), for a breaker in an `Arc`: the permit owns a
    /// clone of the `Arc`, so it can move into a `'static` future or another thread.
    #[cfg(feature = "alloc")]
    #[inline]
    pub fn try_acquire_owned(self: &alloc::sync::Arc<Self>) -> Result<OwnedPermit<C, O>, Rejected> {
        Permit::acquire(self)
    }

    /// Reports `event` to the observer: for adapters that add events of their own
    /// ([`Event::FallbackUsed`]).
    #[inline]
    pub fn notify(&self, event: &Event) {
        self.emit(event)
    }

    /// The breaker's name (from [`Builder::name`]; `""` if it has none), as observers see it.
    pub fn name(&self) -> &str {
        &self.name
    }

    #[inline(always)]
    fn emit(&self, event: &Event) {
        self.observer.on_breaker_event(&self.name, event)
    }

    /// The current time of the breaker's clock, in nanoseconds since the clock's origin
    /// (for measuring a call's duration with the same clock).
    #[inline]
    pub fn now_nanos(&self) -> u64 {
        self.clock.now_nanos()
    }

    #[inline]
    pub(crate) fn acquire_ticket(&self) -> Result<Ticket, Rejected> {
        let mut w = Word(self.word.load(Ordering::Acquire));
        loop {
            match w.state() {
                State::Closed | State::MetricsOnly => {
                    return Ok(Ticket {
                        epoch: w.epoch(),
                        kind: Kind::Closed,
                    });
                }
                State::Disabled => {
                    return Ok(Ticket {
                        epoch: w.epoch(),
                        kind: Kind::Passthrough,
                    });
                }
                State::ForcedOpen => return Err(self.reject(RejectReason::ForcedOpen, None)),
                State::Open | State::HalfOpen => {
                    let now = self.now();
                    let deadline = self.deadline(w.epoch());
                    if let Some(next) = Self::due_transition(w, now, deadline, true) {
                        match self.transition(w, next, Some(now)) {
                            Ok(()) => {
                                self.announce(w, next, None);
                                if next.state() == State::HalfOpen {
                                    return Ok(Ticket {
                                        epoch: next.epoch(),
                                        kind: Kind::Probe,
                                    });
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
                            let fresh = Word(self.word.load(Ordering::Acquire));
                            if fresh != w {
                                w = fresh;
                                continue;
                            }
                        }
                        let retry_after = self.open_retry_after(w, deadline, now);
                        return Err(self.reject(RejectReason::Open, Some(retry_after)));
                    }
                    let probes = Tunables::get(&self.tunables.half_open_probes) as u32;
                    if w.admitted() >= probes {
                        return Err(self.reject(RejectReason::HalfOpenFull, None));
                    }
                    let next = w.with_probes(w.admitted() + 1, w.probe_successes());
                    match self.cas(w, next) {
                        Ok(()) => {
                            return Ok(Ticket {
                                epoch: w.epoch(),
                                kind: Kind::Probe,
                            });
                        }
                        Err(actual) => w = actual,
                    }
                }
            }
        }
    }

    /// The transition that time makes due from `w` at `now`, if any: open to half-open
    /// strictly after the open deadline (admitting the caller as the first probe when
    /// `admit`), half-open to open strictly after the half-open limit.
    #[inline]
    fn due_transition(w: Word, now: u64, deadline: Option<u64>, admit: bool) -> Option<Word> {
        let deadline = deadline?;
        match w.state() {
            State::Open => {
                (now > deadline).then(|| w.next(State::HalfOpen, w.attempts(), u32::from(admit)))
            }
            State::HalfOpen => (now > deadline).then(|| w.next(State::Open, w.attempts() + 1, 0)),
            _ => None,
        }
    }

    fn reject(&self, reason: RejectReason, retry_after: Option<Duration>) -> Rejected {
        self.stats.add(Stat::Rejected);
        self.emit(&Event::Rejected { reason });
        Rejected {
            reason,
            retry_after,
        }
    }

    #[inline]
    pub(crate) fn complete(&self, ticket: Ticket, outcome: Outcome, elapsed: Duration) {
        let slow = nanos(elapsed) > Tunables::get(&self.tunables.slow_nanos);
        // The common case, kept small enough to inline: a fast success in the closed state
        // of a consecutive-failures breaker with no failure run to reset.
        if ticket.kind == Kind::Closed
            && outcome == Outcome::Success
            && !slow
            && !self.policy.uses_window()
        {
            let w = Word(self.word.load(Ordering::Acquire));
            if w.epoch() == ticket.epoch && w.failures() == 0 {
                self.stats.add(Stat::Successes);
                self.emit(&Event::Success { elapsed });
                return;
            }
        }
        self.complete_slow(ticket, outcome, slow, elapsed)
    }

    #[inline(never)]
    fn complete_slow(&self, ticket: Ticket, outcome: Outcome, slow: bool, elapsed: Duration) {
        if ticket.kind == Kind::Passthrough {
            return;
        }
        let w = Word(self.word.load(Ordering::Acquire));
        if w.epoch() != ticket.epoch {
            return self.late(outcome);
        }
        match ticket.kind {
            Kind::Closed => self.record_closed(w, outcome, slow, elapsed),
            Kind::Probe => self.record_probe(w, outcome, slow, elapsed),
            Kind::Passthrough => {}
        }
    }

    /// A call given up on after `elapsed` (dropped, cancelled): neutral if it was not slow
    /// yet, a slow failure if it already ran past the slow-call threshold.
    pub(crate) fn abandon_after(&self, ticket: Ticket, elapsed: Duration) {
        if nanos(elapsed) > Tunables::get(&self.tunables.slow_nanos) {
            self.complete(ticket, Outcome::Failure, elapsed)
        } else {
            self.abandon(ticket)
        }
    }

    pub(crate) fn abandon(&self, ticket: Ticket) {
        match ticket.kind {
            Kind::Passthrough => {}
            Kind::Closed => self.stats.add(Stat::Cancelled),
            Kind::Probe => {
                self.stats.add(Stat::Cancelled);
                self.release_probe(ticket.epoch);
            }
        }
    }

    fn late(&self, outcome: Outcome) {
        self.stats.add(Stat::Late);
        self.emit(&Event::LateResult { outcome });
    }

    fn count_outcome(&self, outcome: Outcome, slow: bool, elapsed: Duration) {
        let (stat, event) = match outcome {
            Outcome::Success => (Stat::Successes, Event::Success { elapsed }),
            Outcome::Failure => (Stat::Failures, Event::Failure { elapsed }),
            Outcome::Ignored => (Stat::Ignored, Event::Ignored),
        };
        self.stats.add(stat);
        self.emit(&event);
        if slow && outcome != Outcome::Ignored {
            self.stats.add(Stat::Slow);
            self.emit(&Event::SlowCall { elapsed, outcome });
        }
    }

    fn record_closed(&self, mut w: Word, outcome: Outcome, slow: bool, elapsed: Duration) {
        let epoch = w.epoch();
        if outcome == Outcome::Ignored {
            return self.count_outcome(outcome, false, elapsed);
        }
        let failed = outcome == Outcome::Failure;
        let counts = match self.record_window(epoch, failed, slow) {
            Some(counts) => counts,
            None => return self.late(outcome),
        };
        self.count_outcome(outcome, slow, elapsed);

        // Consecutive failures live in the control word, so the consecutive policy's trip is
        // the same compare-and-swap that counts the failure.
        let mut failures = w.failures();
        if failed {
            let consecutive = match self.policy {
                PolicyKind::ConsecutiveFailures { .. } => {
                    Tunables::get(&self.tunables.consecutive_threshold) as u32
                }
                _ => u32::MAX,
            };
            loop {
                if w.epoch() != epoch {
                    return;
                }
                let n = w
                    .failures()
                    .saturating_add(1)
                    .min(crate::config::MAX_CONSECUTIVE_FAILURES);
                let trips = n >= consecutive && w.state() == State::Closed;
                let next = if trips {
                    w.next(State::Open, w.attempts() + 1, 0)
                } else {
                    w.with_payload(n)
                };
                let made = if trips {
                    self.transition(w, next, None)
                } else {
                    self.cas(w, next)
                };
                match made {
                    Ok(()) if trips => {
                        let why = Threshold::ConsecutiveFailures { count: n };
                        return self.announce(w, next, Some(why));
                    }
                    Ok(()) => {
                        failures = n;
                        if n >= consecutive {
                            let count = n;
                            self.emit(&Event::ThresholdExceeded(Threshold::ConsecutiveFailures {
                                count,
                            }));
                        }
                        break;
                    }
                    Err(actual) => {
                        w = actual;
                        spin_hint();
                    }
                }
            }
            self.success_mark
                .store(self.stats.sum(Stat::Successes), Ordering::Relaxed);
        } else if w.failures() != 0 {
            loop {
                if w.epoch() != epoch || w.failures() == 0 {
                    break;
                }
                match self.cas(w, w.with_payload(0)) {
                    Ok(()) => break,
                    Err(actual) => w = actual,
                }
            }
            failures = 0;
        }

        let Some(mut counts) = counts else { return };
        counts.consecutive_failures = failures;
        let Some(why) = self.rules_hold(&counts) else {
            return;
        };
        let mut w = Word(self.word.load(Ordering::Acquire));
        loop {
            if w.epoch() != epoch {
                return;
            }
            if w.state() == State::MetricsOnly {
                return self.emit(&Event::ThresholdExceeded(why));
            }
            let next = w.next(State::Open, w.attempts() + 1, 0);
            match self.transition(w, next, None) {
                Ok(()) => return self.announce(w, next, Some(why)),
                Err(actual) => {
                    w = actual;
                    spin_hint();
                }
            }
        }
    }

    /// Whether `epoch` is the current generation (windows ask when they find another
    /// generation's data: stale if ours is current, else our record is late).
    #[cfg(feature = "alloc")]
    #[inline]
    fn is_current(&self, epoch: u32) -> bool {
        Word(self.word.load(Ordering::Acquire)).epoch() == epoch
    }

    /// Records into the window. `None`: the window refused the result as late.
    /// `Some(None)`: nothing to evaluate (no window, or its counts are in flux).
    /// `Some(Some(counts))`: the window's counts after the record.
    #[inline]
    #[allow(unused_variables)]
    fn record_window(&self, epoch: u32, failed: bool, slow: bool) -> Option<Option<Counts>> {
        #[cfg(feature = "alloc")]
        match &self.window {
            Window::None => {}
            Window::Count(window) => {
                return window.record(epoch, failed, slow, |e| self.is_current(e));
            }
            Window::Time(window) => {
                let tick = self.tick(window, epoch);
                if !window.record(epoch, tick, failed, slow, |e| self.is_current(e)) {
                    return None;
                }
                // Within one bucket tick, successes only lower the rates: if they were below
                // every threshold at the last evaluation of this tick, they still are, and
                // summing the buckets again would not change the verdict.
                let predicate = self.trip_when.is_some();
                if !failed && !slow && !predicate && window.known_below(epoch, tick) {
                    return Some(None);
                }
                let counts = window.counts(epoch, tick);
                if !predicate {
                    window.remember_below(epoch, tick, self.rate_rules(&counts).is_none());
                }
                return Some(Some(counts));
            }
        }
        Some(None)
    }

    #[cfg(feature = "alloc")]
    fn tick(&self, window: &crate::window::TimeWindow, epoch: u32) -> u64 {
        if window.is_cumulative() {
            return 0;
        }
        let now = self.now();
        // An unpublished period start means the period began an instant ago: tick 0.
        let start = self.phase.get(epoch).unwrap_or(now);
        window.tick(now.saturating_sub(start))
    }

    /// Which trip rule holds for `counts`, if any.
    fn rules_hold(&self, counts: &Counts) -> Option<Threshold> {
        #[cfg(feature = "alloc")]
        if let Some(predicate) = &self.trip_when {
            return predicate(counts).then_some(Threshold::Predicate);
        }
        self.rate_rules(counts)
            .filter(|_| counts.calls >= Tunables::get(&self.tunables.minimum_calls))
    }

    /// Which rate rule's threshold `counts` reach, minimum calls aside.
    fn rate_rules(&self, counts: &Counts) -> Option<Threshold> {
        let ppm = |n: u64| n.saturating_mul(1_000_000);
        let fail_ppm = Tunables::get(&self.tunables.failure_rate_ppm);
        let slow_ppm = Tunables::get(&self.tunables.slow_rate_ppm);
        let calls = counts.calls;
        if fail_ppm != 0 && calls > 0 && ppm(counts.failures) >= fail_ppm * calls {
            Some(Threshold::FailureRate {
                percent: counts.failure_rate().unwrap_or(0.0),
            })
        } else if slow_ppm != 0 && calls > 0 && ppm(counts.slow_calls) >= slow_ppm * calls {
            Some(Threshold::SlowCallRate {
                percent: counts.slow_call_rate().unwrap_or(0.0),
            })
        } else {
            None
        }
    }

    fn record_probe(&self, mut w: Word, outcome: Outcome, slow: bool, elapsed: Duration) {
        let epoch = w.epoch();
        self.count_outcome(outcome, slow, elapsed);
        if outcome == Outcome::Ignored {
            return self.release_probe(epoch);
        }
        let slow_fails = slow && Tunables::get(&self.tunables.slow_rate_ppm) != 0;
        let failed = outcome == Outcome::Failure || slow_fails;
        loop {
            if w.epoch() != epoch || w.state() != State::HalfOpen {
                return;
            }
            let successes = w.probe_successes() + 1;
            let next = if failed {
                w.next(State::Open, w.attempts() + 1, 0)
            } else if successes >= Tunables::get(&self.tunables.half_open_probes) as u32 {
                w.next(State::Closed, 0, 0)
            } else {
                w.with_probes(w.admitted(), successes)
            };
            let made = if next.epoch() != epoch {
                self.transition(w, next, None)
            } else {
                self.cas(w, next)
            };
            match made {
                Ok(()) => {
                    if next.epoch() != epoch {
                        self.announce(w, next, None);
                    }
                    return;
                }
                Err(actual) => {
                    w = actual;
                    spin_hint();
                }
            }
        }
    }

    fn release_probe(&self, epoch: u32) {
        let mut w = Word(self.word.load(Ordering::Acquire));
        while w.epoch() == epoch && w.state() == State::HalfOpen && w.admitted() > 0 {
            match self.cas(w, w.with_probes(w.admitted() - 1, w.probe_successes())) {
                Ok(()) => return,
                Err(actual) => {
                    w = actual;
                    spin_hint();
                }
            }
        }
    }

    // ----- transitions --------------------------------------------------------------------

    #[inline]
    fn cas(&self, current: Word, next: Word) -> Result<(), Word> {
        self.word
            .compare_exchange(current.0, next.0, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
            .map_err(Word)
    }

    /// The phase time that generation `to` starts with (see [`PhaseCell`]): open, its
    /// deadline; half-open, its limit; closed, when the period began (time windows only).
    ///
    /// This may run user code (an open-duration function, a jitter source), so it runs
    /// before the transition is made: if that code panics, the breaker stays as it was.
    fn phase_time(&self, to: Word, now: Option<u64>) -> u64 {
        let now = || now.unwrap_or_else(|| self.now());
        match to.state() {
            State::Open => now().saturating_add(self.open_nanos(to.attempts(), true)),
            State::HalfOpen => match Tunables::get(&self.tunables.max_half_open_nanos) {
                0 => NO_TIME,
                limit => now().saturating_add(limit),
            },
            State::Closed | State::MetricsOnly if self.window_needs_period_start() => now(),
            _ => NO_TIME,
        }
    }

    /// Makes the transition `from -> to` (`to` is one generation on) if the control word is
    /// still `from`. The new phase is computed first; after the one compare-and-swap that
    /// decides the transition, its winner publishes the phase. Nothing between the two runs
    /// user code, so a transition that happened always gets its phase. The caller reports
    /// the events ([`announce`](Self::announce)) when this returns `Ok`.
    fn transition(&self, from: Word, to: Word, now: Option<u64>) -> Result<(), Word> {
        debug_assert_eq!(to.epoch(), from.epoch().wrapping_add(1));
        let time = self.phase_time(to, now);
        self.cas(from, to)?;
        self.phase.publish(to.epoch(), time);
        self.success_mark
            .store(self.stats.sum(Stat::Successes), Ordering::Relaxed);
        Ok(())
    }

    /// Reports a transition made by this thread (exactly once per transition).
    fn announce(&self, from: Word, to: Word, why: Option<Threshold>) {
        if let Some(why) = why {
            self.emit(&Event::ThresholdExceeded(why));
        }
        if from.state() != to.state() {
            self.emit(&Event::StateTransition {
                from: from.state(),
                to: to.state(),
            });
        }
    }

    fn window_needs_period_start(&self) -> bool {
        matches!(self.policy, PolicyKind::TimeWindow { .. })
    }

    /// The phase time of generation `epoch` (a deadline, [`NO_TIME`] for none), if its
    /// transition's winner has published it.
    #[inline]
    fn deadline(&self, epoch: u32) -> Option<u64> {
        self.phase.get(epoch)
    }

    /// How long until an open breaker (word `w`) admits a probe. While the transition's
    /// winner is still publishing the deadline (the few instructions after its
    /// compare-and-swap), the nominal open duration of this attempt stands in for it: the
    /// deadline is at most that far away, jitter aside.
    fn open_retry_after(&self, w: Word, deadline: Option<u64>, now: u64) -> Duration {
        Duration::from_nanos(match deadline {
            Some(deadline) => deadline.saturating_sub(now),
            None => self.open_nanos(w.attempts(), false),
        })
    }

    /// How long the `attempt`-th open period lasts, with or without jitter.
    fn open_nanos(&self, attempt: u32, with_jitter: bool) -> u64 {
        let attempt = attempt.max(1);
        #[cfg(feature = "alloc")]
        let base = match &self.open_fn {
            Some(f) => f(attempt).max(Duration::from_nanos(1)),
            None => self.exponential(attempt),
        };
        #[cfg(not(feature = "alloc"))]
        let base = {
            let _ = with_jitter;
            self.exponential(attempt)
        };
        #[cfg(feature = "alloc")]
        let base = match &self.jitter {
            Some(j) if with_jitter => j.apply(base),
            _ => base,
        };
        nanos(base)
    }

    fn exponential(&self, attempt: u32) -> Duration {
        OpenDuration::Exponential {
            initial: Duration::from_nanos(Tunables::get(&self.tunables.open_initial_nanos)),
            multiplier: f64::from_bits(Tunables::get(&self.tunables.open_multiplier_bits)),
            max: Duration::from_nanos(Tunables::get(&self.tunables.open_max_nanos)),
        }
        .for_attempt(attempt)
    }

    #[inline]
    fn now(&self) -> u64 {
        self.clock.now_nanos().saturating_sub(self.origin)
    }

    /// The current word, after any transition that time has made due.
    fn current(&self) -> Word {
        let mut w = Word(self.word.load(Ordering::Acquire));
        while matches!(w.state(), State::Open | State::HalfOpen) {
            let now = self.now();
            let Some(next) = Self::due_transition(w, now, self.deadline(w.epoch()), false) else {
                break;
            };
            match self.transition(w, next, Some(now)) {
                Ok(()) => {
                    self.announce(w, next, None);
                    w = next;
                }
                Err(actual) => w = actual,
            }
        }
        w
    }

    // ----- queries ----------------------------------------------------------------------

    /// The current state (making any transition that time has made due).
    pub fn state(&self) -> State {
        self.current().state()
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
    ///     breaker.try_acquire().unwrap().record(outcome, Duration::ZERO);
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

    // ----- operator controls --------------------------------------------------------------

    fn force(&self, target: State, is_reset: bool) {
        let mut w = Word(self.word.load(Ordering::Acquire));
        loop {
            if w.state() == target && !is_reset {
                return;
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
                    return self.announce(w, next, None);
                }
                Err(actual) => {
                    w = actual;
                    spin_hint();
                }
            }
        }
    }

    /// Isolates the dependency: every call is rejected ([`RejectReason::ForcedOpen`]) until
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

    /// Applies a new configuration to the live breaker, keeping its state and counts.
    ///
    /// Thresholds, rates, minimum calls, slow-call duration, half-open probes and limit,
    /// and fixed / exponential open durations change; the new values apply from the next
    /// call (a lowered threshold trips on the next recorded call, not at once; an open
    /// period already running keeps its deadline). A concurrent call may see some of the
    /// new values and some of the old during the switch. The window (policy kind, size,
    /// duration, buckets) and closures (`trip_when`, `open_duration_fn`, `jitter`) are fixed
    /// at build time: a config that changes them is refused and nothing changes. A custom
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
    /// breaker.try_acquire().unwrap().record(Outcome::Failure, Duration::ZERO);
    /// breaker.reconfigure(Config::builder().consecutive_failures(2).build_config()?).unwrap();
    /// breaker.try_acquire().unwrap().record(Outcome::Failure, Duration::ZERO);
    /// assert_eq!(breaker.state(), State::Open);
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    pub fn reconfigure(&self, config: Config) -> Result<(), ReconfigureError> {
        if !config.policy.same_shape(&self.policy) {
            return Err(ReconfigureError::WindowShapeChanged);
        }
        if config.has_closures() {
            return Err(ReconfigureError::ClosureChanged);
        }
        self.tunables.store(&config);
        #[cfg(feature = "alloc")]
        if let Window::Time(window) = &self.window {
            window.forget_verdict();
        }
        Ok(())
    }
}

#[cfg(feature = "std")]
impl<C: Clock, O: Observer> CircuitBreaker<C, O> {
    /// Runs `f` if the breaker admits it; every `Err` counts as a failure.
    ///
    /// A panic in `f` is recorded as a failure and keeps unwinding (as gobreaker does).
    ///
    /// ```
    /// use breaker_core::{CallError, CircuitBreaker, ManualClock};
    ///
    /// let breaker = CircuitBreaker::builder_with_clock(ManualClock::new())
    ///     .consecutive_failures(1)
    ///     .build()?;
    /// let r: Result<u32, CallError<&str>> = breaker.call(|| Err("connection refused"));
    /// assert_eq!(r, Err(CallError::Inner("connection refused")));
    /// let r: Result<u32, CallError<&str>> = breaker.call(|| Ok(1));
    /// assert!(matches!(r, Err(CallError::Rejected(_)))); // open: not called
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    pub fn call<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, crate::CallError<E>> {
        self.call_with(
            |r: &Result<T, E>| {
                if r.is_ok() {
                    Outcome::Success
                } else {
                    Outcome::Failure
                }
            },
            f,
        )
    }

    /// Runs `f` if the breaker admits it, and lets `classify` decide how its result counts:
    /// a caller's bad request need not count as an outage.
    ///
    /// ```
    /// use breaker_core::{CircuitBreaker, ManualClock, Outcome, State};
    ///
    /// #[derive(Debug)]
    /// enum DbError { NotFound, ConnectionLost }
    ///
    /// let breaker = CircuitBreaker::builder_with_clock(ManualClock::new())
    ///     .consecutive_failures(1)
    ///     .build()?;
    /// let classify = |r: &Result<(), DbError>| match r {
    ///     Ok(()) | Err(DbError::NotFound) => Outcome::Success,
    ///     Err(DbError::ConnectionLost) => Outcome::Failure,
    /// };
    /// let _ = breaker.call_with(classify, || Err(DbError::NotFound));
    /// assert_eq!(breaker.state(), State::Closed);
    /// let _ = breaker.call_with(classify, || Err(DbError::ConnectionLost));
    /// assert_eq!(breaker.state(), State::Open);
    /// # Ok::<(), breaker_core::ConfigError>(())
    /// ```
    pub fn call_with<T, E>(
        &self,
        classify: impl FnOnce(&Result<T, E>) -> Outcome,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, crate::CallError<E>> {
        let ticket = self.acquire_ticket().map_err(crate::CallError::Rejected)?;
        let started = self.measures_duration().then(|| self.clock.now_nanos());
        // Only unwinding drops the guard with its ticket inside; the normal path takes the
        // ticket back out and records the classified outcome.
        let mut guard = PanicGuard {
            breaker: self,
            ticket: Some(ticket),
            started,
        };
        let result = f();
        let outcome = classify(&result);
        if let Some(ticket) = guard.ticket.take() {
            self.complete(ticket, outcome, guard.elapsed());
        }
        result.map_err(crate::CallError::Inner)
    }
}

/// Records a failure if dropped while unwinding from a panic in the guarded call.
#[cfg(feature = "std")]
struct PanicGuard<'a, C: Clock, O: Observer> {
    breaker: &'a CircuitBreaker<C, O>,
    ticket: Option<Ticket>,
    started: Option<u64>,
}

#[cfg(feature = "std")]
impl<C: Clock, O: Observer> PanicGuard<'_, C, O> {
    #[inline]
    fn elapsed(&self) -> Duration {
        self.started.map_or(Duration::ZERO, |s| {
            Duration::from_nanos(self.breaker.clock.now_nanos().saturating_sub(s))
        })
    }
}

#[cfg(feature = "std")]
impl<C: Clock, O: Observer> Drop for PanicGuard<'_, C, O> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            if std::thread::panicking() {
                self.breaker
                    .complete(ticket, Outcome::Failure, self.elapsed());
            } else {
                self.breaker.abandon(ticket);
            }
        }
    }
}
