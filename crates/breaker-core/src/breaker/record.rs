//! Recording a call's outcome: the closed state's windows and consecutive-failure run, the
//! trip rules, and half-open probes closing or re-opening the breaker.

use core::time::Duration;

use super::CircuitBreaker;
use crate::clock::Clock;
use crate::config::PolicyKind;
use crate::control::Word;
use crate::observer::{Event, Observer, Threshold};
use crate::outcome::Outcome;
use crate::snapshot::Counts;
use crate::state::State;
use crate::stats::Stat;
use crate::sync::{Ordering, spin_hint};
use crate::ticket::{Kind, Ticket};
use crate::tunables::Tunables;
#[cfg(feature = "alloc")]
use crate::window::{TimeWindow, Window};

impl<C: Clock, O: Observer> CircuitBreaker<C, O> {
    /// Records the outcome of the call `ticket` admitted, which ran for `elapsed`
    /// nanoseconds (0 when it was not timed). `pushback`: the open period the dependency
    /// asked for with a failure, in nanoseconds (0: none; `u64::MAX`: as long as allowed).
    #[inline]
    pub(crate) fn complete(&self, ticket: Ticket, outcome: Outcome, elapsed: u64, pushback: u64) {
        let slow = elapsed > Tunables::get(&self.tunables.slow_nanos);
        // The common case, kept small enough to inline: a fast success in the closed state
        // of a consecutive-failures breaker with no failure run to reset.
        if ticket.kind() == Kind::Closed
            && outcome == Outcome::Success
            && !slow
            && !self.policy.uses_window()
        {
            let w = self.control.load();
            if w.epoch() == ticket.epoch() && w.failures() == 0 {
                self.stats.add(Stat::Successes);
                self.emit(&Event::Success {
                    elapsed: Duration::from_nanos(elapsed),
                });
                return;
            }
        }
        self.complete_slow(
            ticket,
            outcome,
            slow,
            Duration::from_nanos(elapsed),
            pushback,
        )
    }

    #[inline(never)]
    pub(super) fn complete_slow(
        &self,
        ticket: Ticket,
        outcome: Outcome,
        slow: bool,
        elapsed: Duration,
        pushback: u64,
    ) {
        if ticket.kind() == Kind::Passthrough {
            return;
        }
        let w = self.control.load();
        if w.epoch() != ticket.epoch() {
            return self.late(outcome);
        }
        match ticket.kind() {
            Kind::Closed => self.record_closed(w, outcome, slow, elapsed, pushback),
            Kind::Probe => self.record_probe(w, outcome, slow, elapsed, pushback),
            Kind::Passthrough => {}
        }
    }

    /// A call abandoned (its permit dropped without a result) after running `elapsed`
    /// nanoseconds (`None`: not timed). Past its deadline or the slow-call duration it failed
    /// (slowly); before, it is neutral.
    pub(crate) fn abandon(&self, ticket: Ticket, elapsed: Option<u64>) {
        if let Some(elapsed) = elapsed {
            let timed_out = ticket
                .deadline()
                .is_some_and(|deadline| elapsed >= deadline);
            if timed_out || elapsed > Tunables::get(&self.tunables.slow_nanos) {
                return self.complete(ticket, Outcome::Failure, elapsed, 0);
            }
        }
        self.cancel(ticket)
    }

    /// Ends the call of `ticket` neutrally: counted as cancelled, its probe slot given back.
    pub(crate) fn cancel(&self, ticket: Ticket) {
        match ticket.kind() {
            Kind::Passthrough => {}
            Kind::Closed => self.stats.add(Stat::Cancelled),
            Kind::Probe => {
                self.stats.add(Stat::Cancelled);
                self.control.release_probe(ticket.epoch());
            }
        }
    }

    pub(super) fn late(&self, outcome: Outcome) {
        self.stats.add(Stat::Late);
        self.emit(&Event::LateResult { outcome });
    }

    pub(super) fn count_outcome(&self, outcome: Outcome, slow: bool, elapsed: Duration) {
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

    pub(super) fn record_closed(
        &self,
        mut w: Word,
        outcome: Outcome,
        slow: bool,
        elapsed: Duration,
        pushback: u64,
    ) {
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
                    self.transition_pushed(w, next, pushback)
                } else {
                    self.control.cas(w, next)
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
                match self.control.cas(w, w.with_payload(0)) {
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
        let mut w = self.control.load();
        loop {
            if w.epoch() != epoch {
                return;
            }
            if w.state() == State::MetricsOnly {
                return self.emit(&Event::ThresholdExceeded(why));
            }
            let next = w.next(State::Open, w.attempts() + 1, 0);
            match self.transition_pushed(w, next, pushback) {
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
    pub(super) fn is_current(&self, epoch: u32) -> bool {
        self.control.load().epoch() == epoch
    }

    /// Records into the window. `None`: the window refused the result as late.
    /// `Some(None)`: nothing to evaluate (no window, or its counts are in flux).
    /// `Some(Some(counts))`: the window's counts after the record.
    #[inline]
    #[allow(unused_variables)]
    pub(super) fn record_window(
        &self,
        epoch: u32,
        failed: bool,
        slow: bool,
    ) -> Option<Option<Counts>> {
        #[cfg(feature = "alloc")]
        match &self.window {
            Window::None => {}
            Window::Count(window) => {
                let predicate = self.trip_when.is_some();
                return window.record(
                    epoch,
                    failed,
                    slow,
                    |e| self.is_current(e),
                    |counts| (!predicate).then(|| self.rate_rules(counts).is_none()),
                );
            }
            Window::Time(window) => {
                let tick = self.tick(window, epoch);
                if !window.record(epoch, tick, failed, slow, |e| self.is_current(e)) {
                    return None;
                }
                let predicate = self.trip_when.is_some();
                let seen = if failed || slow {
                    window.forget_verdict()
                } else {
                    // Within one bucket tick, successes only lower the rates: if they were
                    // found below every threshold in this tick, they still are, and summing
                    // the buckets again would not change the verdict (see the verdict
                    // protocol in `window::time`).
                    let seen = window.verdict();
                    if !predicate && TimeWindow::is_below(seen, epoch, tick) {
                        return Some(None);
                    }
                    window.unkeyed(seen)
                };
                let counts = window.counts(epoch, tick);
                if !predicate && self.rate_rules(&counts).is_none() {
                    window.remember_below(epoch, tick, seen);
                }
                return Some(Some(counts));
            }
        }
        Some(None)
    }

    #[cfg(feature = "alloc")]
    pub(super) fn tick(&self, window: &TimeWindow, epoch: u32) -> u64 {
        if window.is_cumulative() {
            return 0;
        }
        // Buckets at least 16 times wider than the coarse clock's lag take the coarse
        // reading: a bucket's edges then move by at most 1/16 of its width (see
        // `Clock::coarse_now_nanos`).
        let now = self.now_within(window.width() / 16);
        // An unpublished period start means the period began an instant ago: tick 0.
        let start = self.phase.get(epoch).unwrap_or(now);
        window.tick(now.saturating_sub(start))
    }

    /// Which trip rule holds for `counts`, if any.
    pub(super) fn rules_hold(&self, counts: &Counts) -> Option<Threshold> {
        #[cfg(feature = "alloc")]
        if let Some(predicate) = &self.trip_when {
            return predicate(counts).then_some(Threshold::Predicate);
        }
        self.rate_rules(counts)
            .filter(|_| counts.calls >= Tunables::get(&self.tunables.minimum_calls))
    }

    /// Which rate rule's threshold `counts` reach, minimum calls aside.
    pub(super) fn rate_rules(&self, counts: &Counts) -> Option<Threshold> {
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

    pub(super) fn record_probe(
        &self,
        mut w: Word,
        outcome: Outcome,
        slow: bool,
        elapsed: Duration,
        pushback: u64,
    ) {
        let epoch = w.epoch();
        self.count_outcome(outcome, slow, elapsed);
        if outcome == Outcome::Ignored {
            return self.control.release_probe(epoch);
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
                self.transition_pushed(w, next, pushback)
            } else {
                self.control.cas(w, next)
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
}
