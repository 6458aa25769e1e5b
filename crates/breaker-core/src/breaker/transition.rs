//! Transitions: deciding them from time, making them (one compare-and-swap, see
//! [`ControlWord`](crate::control::ControlWord)), publishing the new generation's phase
//! ([`PhaseCell`](crate::phase::PhaseCell)) and reporting them once.

use core::time::Duration;

use super::CircuitBreaker;
use crate::clock::{Clock, nanos};
use crate::config::{OpenDuration, PolicyKind};
use crate::control::Word;
use crate::observer::{Event, Observer, Threshold};
use crate::phase::{NO_TIME, deadline_after, passed};
use crate::state::State;
use crate::stats::Stat;
use crate::sync::Ordering;
use crate::tunables::Tunables;

impl<C: Clock, O: Observer> CircuitBreaker<C, O> {
    /// The transition that time makes due from `w` at `now`, if any: open to half-open
    /// strictly after the open deadline (admitting the caller as the first probe when
    /// `admit`), half-open to open strictly after the half-open limit.
    #[inline]
    pub(super) fn due_transition(
        w: Word,
        now: u64,
        deadline: Option<u64>,
        admit: bool,
    ) -> Option<Word> {
        let deadline = deadline?;
        match w.state() {
            State::Open => passed(deadline, now)
                .then(|| w.next(State::HalfOpen, w.attempts(), u32::from(admit))),
            State::HalfOpen => {
                passed(deadline, now).then(|| w.next(State::Open, w.attempts() + 1, 0))
            }
            _ => None,
        }
    }

    /// The phase time that generation `to` starts with (see [`PhaseCell`]): open, its
    /// deadline; half-open, its limit; closed, when the period began (time windows only).
    ///
    /// This may run user code (an open-duration function, a jitter source), so it runs
    /// before the transition is made: if that code panics, the breaker stays as it was.
    pub(super) fn phase_time(&self, to: Word, now: Option<u64>, pushback: u64) -> u64 {
        let now = || now.unwrap_or_else(|| self.now());
        match to.state() {
            State::Open => {
                let own = self.open_nanos(to.attempts(), true);
                let asked = pushback.min(Tunables::get(&self.tunables.max_pushback_nanos));
                deadline_after(now(), own.max(asked))
            }
            State::HalfOpen => match Tunables::get(&self.tunables.max_half_open_nanos) {
                0 => NO_TIME,
                limit => deadline_after(now(), limit),
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
    pub(super) fn transition(&self, from: Word, to: Word, now: Option<u64>) -> Result<(), Word> {
        self.transition_with_phase(from, to, self.phase_time(to, now, 0))
    }

    /// [`transition`](Self::transition) made by a failure that carried a dependency's
    /// pushback (`pushback` nanoseconds; 0 for none): an open period lasts at least that,
    /// up to the configured maximum.
    pub(super) fn transition_pushed(
        &self,
        from: Word,
        to: Word,
        pushback: u64,
    ) -> Result<(), Word> {
        self.transition_with_phase(from, to, self.phase_time(to, None, pushback))
    }

    /// [`transition`](Self::transition) with the new generation's phase time given.
    pub(super) fn transition_with_phase(
        &self,
        from: Word,
        to: Word,
        time: u64,
    ) -> Result<(), Word> {
        debug_assert_eq!(to.epoch(), from.epoch().wrapping_add(1));
        self.control.cas(from, to)?;
        self.phase.publish(to.epoch(), time);
        self.success_mark
            .store(self.stats.sum(Stat::Successes), Ordering::Relaxed);
        Ok(())
    }

    /// Reports a transition made by this thread (exactly once per transition).
    pub(super) fn announce(&self, from: Word, to: Word, why: Option<Threshold>) {
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

    pub(super) fn window_needs_period_start(&self) -> bool {
        matches!(self.policy, PolicyKind::TimeWindow { .. })
    }

    /// The phase time of generation `epoch` (a deadline, [`NO_TIME`] for none), if its
    /// transition's winner has published it.
    #[inline]
    pub(super) fn deadline(&self, epoch: u32) -> Option<u64> {
        self.phase.get(epoch)
    }

    /// How long until an open breaker (word `w`) admits a probe. While the transition's
    /// winner is still publishing the deadline (the few instructions after its
    /// compare-and-swap), the nominal open duration of this attempt stands in for it: the
    /// deadline is at most that far away, jitter aside.
    /// Open ends strictly after its deadline, so at the deadline itself one nanosecond is
    /// still to wait: a refusal never says "now".
    pub(super) fn open_retry_after(&self, w: Word, deadline: Option<u64>, now: u64) -> Duration {
        Duration::from_nanos(match deadline {
            Some(deadline) if passed(deadline, now) => 0,
            Some(deadline) => deadline.saturating_sub(now).max(1),
            None => self.open_nanos(w.attempts(), false),
        })
    }

    /// How long the `attempt`-th open period lasts, with or without jitter.
    pub(super) fn open_nanos(&self, attempt: u32, with_jitter: bool) -> u64 {
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
        let base = match self.jitter_factor() {
            Some(factor) if with_jitter => {
                crate::config::jittered(base, factor, self.jitter.source.next())
            }
            _ => base,
        };
        nanos(base)
    }

    /// The jitter factor in force, if any: a caller's source keeps the factor it was built
    /// with, the breaker's own generator takes the tunable one.
    #[cfg(feature = "alloc")]
    pub(super) fn jitter_factor(&self) -> Option<f64> {
        let factor = match self.jitter.source {
            crate::config::JitterSource::Custom(_) => self.jitter.factor,
            crate::config::JitterSource::Seeded(_) => {
                f64::from_bits(Tunables::get(&self.tunables.jitter_factor_bits))
            }
        };
        (factor > 0.0).then_some(factor)
    }

    pub(super) fn exponential(&self, attempt: u32) -> Duration {
        OpenDuration::Exponential {
            initial: Duration::from_nanos(Tunables::get(&self.tunables.open_initial_nanos)),
            multiplier: f64::from_bits(Tunables::get(&self.tunables.open_multiplier_bits)),
            max: Duration::from_nanos(Tunables::get(&self.tunables.open_max_nanos)),
        }
        .for_attempt(attempt)
    }

    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.clock.now_nanos().saturating_sub(self.origin)
    }

    /// The time since the origin, from the clock's coarse reading if its lag is within
    /// `tolerance` nanoseconds, else from the precise one.
    #[cfg(feature = "alloc")]
    #[inline]
    pub(super) fn now_within(&self, tolerance: u64) -> u64 {
        let lag = self.clock.coarse_lag_nanos();
        if lag != 0 && lag <= tolerance {
            self.coarse_now()
        } else {
            self.now()
        }
    }

    /// The clock's coarse reading, since the origin (see [`Clock::coarse_now_nanos`]).
    #[inline]
    pub(super) fn coarse_now(&self) -> u64 {
        self.clock.coarse_now_nanos().saturating_sub(self.origin)
    }

    /// The current word, after any transition that time has made due.
    pub(super) fn current(&self) -> Word {
        let mut w = self.control.load();
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
}
