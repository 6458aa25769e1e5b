//! Property test: the concurrent breaker and a plain sequential model, driven by the same
//! random schedule of acquires, outcomes, deadlines, cancels, drops, clock moves and operator
//! calls, must agree on every decision and every snapshot.
#![cfg(not(loom))]

use std::collections::VecDeque;
use std::time::Duration;

use breaker_core::{CircuitBreaker, ManualClock, Outcome, OwnedPermit, RejectReason, State};
use proptest::prelude::*;

const MS: u64 = 1_000_000;

#[derive(Clone, Copy, Debug)]
enum Policy {
    Consecutive(u32),
    Count {
        size: u32,
        min: u32,
    },
    Time {
        width_ms: u64,
        buckets: u32,
        min: u32,
    },
}

#[derive(Clone, Debug)]
struct Settings {
    policy: Policy,
    failure_pct: u32,
    slow: Option<(u64, Option<u32>)>, // threshold ms, slow-call rate %
    probes: u32,
    open_ms: u64,
    exponential: Option<u64>, // cap in ms, multiplier 2
    max_half_open_ms: Option<u64>,
}

#[derive(Clone, Debug)]
enum Op {
    Acquire,
    Record {
        which: usize,
        outcome: Outcome,
    },
    /// Ended neutrally on purpose (`Permit::cancel`).
    Cancel {
        which: usize,
    },
    /// Abandoned: the permit dropped without a result.
    Drop {
        which: usize,
    },
    /// The call gets a deadline `ms` after its start (`Permit::set_deadline`).
    Deadline {
        which: usize,
        ms: u64,
    },
    Advance {
        ms: u64,
    },
    AdvanceNs,
    ForceOpen,
    Disable,
    MetricsOnly,
    Trip,
    Reset,
}

fn settings() -> impl Strategy<Value = Settings> {
    let policy = prop_oneof![
        (1u32..5).prop_map(Policy::Consecutive),
        (1u32..8)
            .prop_flat_map(|size| (Just(size), 1..=size))
            .prop_map(|(size, min)| Policy::Count { size, min }),
        (1u64..4, 1u32..4, 1u32..6).prop_map(|(width_ms, buckets, min)| Policy::Time {
            width_ms: width_ms * 10,
            buckets,
            min
        }),
    ];
    (
        policy,
        prop_oneof![Just(20u32), Just(50), Just(100)],
        proptest::option::of((
            5u64..20,
            proptest::option::of(prop_oneof![Just(50u32), Just(100)]),
        )),
        1u32..4,
        10u64..50,
        proptest::option::of(50u64..200),
        proptest::option::of(5u64..60),
    )
        .prop_map(
            |(policy, failure_pct, slow, probes, open_ms, exponential, max_half_open_ms)| {
                let slow = match policy {
                    Policy::Consecutive(_) => slow.map(|(t, _)| (t, None)),
                    _ => slow,
                };
                Settings {
                    policy,
                    failure_pct,
                    slow,
                    probes,
                    open_ms,
                    exponential,
                    max_half_open_ms,
                }
            },
        )
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![4 => Just(Outcome::Success), 4 => Just(Outcome::Failure), 1 => Just(Outcome::Ignored)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => Just(Op::Acquire),
        30 => (any::<usize>(), outcome())
            .prop_map(|(which, outcome)| Op::Record { which, outcome }),
        3 => any::<usize>().prop_map(|which| Op::Cancel { which }),
        5 => any::<usize>().prop_map(|which| Op::Drop { which }),
        // Up to 32 ms: whole milliseconds that the permit keeps exactly.
        4 => (any::<usize>(), 1u64..32).prop_map(|(which, ms)| Op::Deadline { which, ms }),
        15 => (1u64..40).prop_map(|ms| Op::Advance { ms }),
        2 => Just(Op::AdvanceNs),
        1 => Just(Op::ForceOpen),
        1 => Just(Op::Disable),
        1 => Just(Op::MetricsOnly),
        1 => Just(Op::Trip),
        2 => Just(Op::Reset),
    ]
}

fn build(s: &Settings, clock: &ManualClock) -> CircuitBreaker<ManualClock> {
    let mut b = CircuitBreaker::builder_with_clock(clock.clone());
    b = match s.policy {
        Policy::Consecutive(n) => b.consecutive_failures(n),
        Policy::Count { size, min } => b
            .count_window(size)
            .minimum_calls(min)
            .failure_rate(s.failure_pct.into()),
        Policy::Time {
            width_ms,
            buckets,
            min,
        } => b
            .time_window(
                Duration::from_millis(width_ms * u64::from(buckets)),
                buckets,
            )
            .minimum_calls(min)
            .failure_rate(s.failure_pct.into()),
    };
    b = match s.slow {
        Some((t, Some(rate))) => b.slow_calls(Duration::from_millis(t), rate.into()),
        Some((t, None)) => b.slow_call_duration(Duration::from_millis(t)),
        None => b,
    };
    b = b.half_open_probes(s.probes);
    b = match s.exponential {
        Some(cap) => b.exponential_open_duration(
            Duration::from_millis(s.open_ms),
            2.0,
            Duration::from_millis(cap),
        ),
        None => b.open_duration(Duration::from_millis(s.open_ms)),
    };
    if let Some(m) = s.max_half_open_ms {
        b = b.max_half_open(Duration::from_millis(m));
    }
    b.build().unwrap()
}

// ------------------------------------------------------------------------------------
// The sequential model: the documented semantics, written as plainly as possible.
// ------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
struct ModelPermit {
    epoch: u64,
    probe: bool,
    passthrough: bool,
    /// When the call started, if the permit read the clock.
    started: Option<u64>,
    /// Nanoseconds after the start.
    deadline: Option<u64>,
}

#[derive(Default, Debug, PartialEq, Clone, Copy)]
struct Totals {
    successes: u64,
    failures: u64,
    ignored: u64,
    slow: u64,
    rejected: u64,
    late: u64,
    cancelled: u64,
}

struct Model {
    s: Settings,
    now: u64,
    state: State,
    epoch: u64,
    attempts: u32,
    phase_time: u64, // open/half-open deadline (u64::MAX: none), or closed period start
    consecutive_failures: u32,
    consecutive_successes: u64,
    admitted: u32,
    probe_successes: u32,
    count_window: VecDeque<(bool, bool)>,
    time_window: Vec<(u64, bool, bool)>, // (tick, failed, slow)
    totals: Totals,
}

impl Model {
    fn new(s: Settings) -> Self {
        Model {
            s,
            now: 0,
            state: State::Closed,
            epoch: 0,
            attempts: 0,
            phase_time: 0,
            consecutive_failures: 0,
            consecutive_successes: 0,
            admitted: 0,
            probe_successes: 0,
            count_window: VecDeque::new(),
            time_window: Vec::new(),
            totals: Totals::default(),
        }
    }

    fn open_duration(&self, attempt: u32) -> u64 {
        let initial = self.s.open_ms * MS;
        match self.s.exponential {
            None => initial,
            Some(cap) => {
                let cap = cap * MS;
                let mut d = initial;
                for _ in 1..attempt.max(1) {
                    d = d.saturating_mul(2);
                    if d >= cap {
                        return cap;
                    }
                }
                d.min(cap)
            }
        }
    }

    fn transition(&mut self, to: State, attempts: u32) {
        self.state = to;
        self.epoch += 1;
        self.attempts = attempts.min(63);
        self.consecutive_failures = 0;
        self.consecutive_successes = 0;
        self.admitted = 0;
        self.probe_successes = 0;
        self.count_window.clear();
        self.time_window.clear();
        self.phase_time = match to {
            State::Open => self.now + self.open_duration(self.attempts),
            State::HalfOpen => self.s.max_half_open_ms.map_or(
                self.now + breaker_core::DEFAULT_MAX_HALF_OPEN.as_nanos() as u64,
                |m| self.now + m * MS,
            ),
            State::Closed | State::MetricsOnly => self.now,
            _ => u64::MAX,
        };
    }

    /// Lazy, time-driven transitions.
    fn tick_time(&mut self) {
        loop {
            match self.state {
                State::Open if self.now > self.phase_time => {
                    self.transition(State::HalfOpen, self.attempts)
                }
                State::HalfOpen if self.phase_time != u64::MAX && self.now > self.phase_time => {
                    self.transition(State::Open, self.attempts + 1)
                }
                _ => return,
            }
        }
    }

    fn current_tick(&self) -> u64 {
        match self.s.policy {
            Policy::Time { width_ms, .. } => (self.now - self.phase_time) / (width_ms * MS),
            _ => 0,
        }
    }

    fn window(&self) -> (u64, u64, u64) {
        if !matches!(self.state, State::Closed | State::MetricsOnly) {
            return (0, 0, 0);
        }
        let fold = |it: &mut dyn Iterator<Item = (bool, bool)>| {
            it.fold((0, 0, 0), |(c, f, s), (fa, sl)| {
                (c + 1, f + u64::from(fa), s + u64::from(sl))
            })
        };
        match self.s.policy {
            Policy::Consecutive(_) => (0, 0, 0),
            Policy::Count { .. } => fold(&mut self.count_window.iter().copied()),
            Policy::Time { buckets, .. } => {
                let k = self.current_tick();
                fold(
                    &mut self
                        .time_window
                        .iter()
                        .filter(|(t, _, _)| *t <= k && t + u64::from(buckets) > k)
                        .map(|&(_, f, s)| (f, s)),
                )
            }
        }
    }

    fn acquire(&mut self) -> Result<ModelPermit, (RejectReason, Option<u64>)> {
        self.tick_time();
        // The clock is read for a call only when the breaker measures durations.
        let permit = |m: &Model, probe, passthrough: bool| ModelPermit {
            epoch: m.epoch,
            probe,
            passthrough,
            started: (m.s.slow.is_some() && !passthrough).then_some(m.now),
            deadline: None,
        };
        match self.state {
            State::Closed | State::MetricsOnly => Ok(permit(self, false, false)),
            State::Disabled => Ok(permit(self, false, true)),
            State::ForcedOpen => {
                self.totals.rejected += 1;
                Err((RejectReason::ForcedOpen, None))
            }
            State::Open => {
                self.totals.rejected += 1;
                // Open ends strictly after its deadline: at it, 1 ns is left.
                Err((
                    RejectReason::Open,
                    Some((self.phase_time - self.now).max(1)),
                ))
            }
            State::HalfOpen => {
                if self.admitted >= self.s.probes {
                    self.totals.rejected += 1;
                    Err((RejectReason::HalfOpenFull, None))
                } else {
                    self.admitted += 1;
                    Ok(permit(self, true, false))
                }
            }
        }
    }

    fn elapsed(&self, p: &ModelPermit) -> u64 {
        p.started.map_or(0, |started| self.now - started)
    }

    fn set_deadline(&self, p: &mut ModelPermit, ms: u64) {
        if p.started.is_none() {
            p.started = Some(self.now);
        }
        p.deadline = Some(ms * MS);
    }

    /// A permit dropped without a result: a failure if the call ran past its deadline or
    /// was already slow, else neutral like a cancelled call.
    fn abandon(&mut self, p: ModelPermit) {
        if let Some(started) = p.started {
            let elapsed = self.now - started;
            let timed_out = p.deadline.is_some_and(|d| elapsed >= d);
            let slow = self.s.slow.is_some_and(|(t, _)| elapsed > t * MS);
            if timed_out || slow {
                return self.record(p, Outcome::Failure);
            }
        }
        self.cancel(p)
    }

    fn cancel(&mut self, p: ModelPermit) {
        if p.passthrough {
            return;
        }
        self.totals.cancelled += 1;
        if p.probe && p.epoch == self.epoch {
            self.admitted -= 1;
        }
    }

    fn rules_hold(&self) -> bool {
        let (calls, fails, slow) = self.window();
        let min = match self.s.policy {
            Policy::Count { min, .. } | Policy::Time { min, .. } => u64::from(min),
            Policy::Consecutive(_) => return false,
        };
        if calls < min || calls == 0 {
            return false;
        }
        let by_failures = fails * 100 >= u64::from(self.s.failure_pct) * calls;
        let by_slow = match self.s.slow {
            Some((_, Some(rate))) => slow * 100 >= u64::from(rate) * calls,
            _ => false,
        };
        by_failures || by_slow
    }

    fn record(&mut self, p: ModelPermit, outcome: Outcome) {
        if p.passthrough {
            return;
        }
        if p.epoch != self.epoch {
            self.totals.late += 1;
            return;
        }
        let elapsed = self.elapsed(&p);
        let slow = self.s.slow.is_some_and(|(t, _)| elapsed > t * MS);
        match outcome {
            Outcome::Success => self.totals.successes += 1,
            Outcome::Failure => self.totals.failures += 1,
            Outcome::Ignored => {
                self.totals.ignored += 1;
                if p.probe {
                    self.admitted -= 1;
                }
                return;
            }
        }
        if slow {
            self.totals.slow += 1;
        }
        let failed = outcome == Outcome::Failure;
        if p.probe {
            let slow_fails = slow && matches!(self.s.slow, Some((_, Some(_))));
            if failed || slow_fails {
                self.transition(State::Open, self.attempts + 1);
            } else {
                self.consecutive_successes += 1;
                self.probe_successes += 1;
                if self.probe_successes >= self.s.probes {
                    self.transition(State::Closed, 0);
                }
            }
            return;
        }
        // Closed or metrics-only.
        match self.s.policy {
            Policy::Consecutive(_) => {}
            Policy::Count { size, .. } => {
                if self.count_window.len() == size as usize {
                    self.count_window.pop_front();
                }
                self.count_window.push_back((failed, slow));
            }
            Policy::Time { .. } => {
                let tick = self.current_tick();
                self.time_window.push((tick, failed, slow));
            }
        }
        if failed {
            self.consecutive_failures += 1;
            self.consecutive_successes = 0;
            if let Policy::Consecutive(n) = self.s.policy
                && self.consecutive_failures >= n
                && self.state == State::Closed
            {
                self.transition(State::Open, self.attempts + 1);
                return;
            }
        } else {
            self.consecutive_failures = 0;
            self.consecutive_successes += 1;
        }
        if self.state == State::Closed && self.rules_hold() {
            self.transition(State::Open, self.attempts + 1);
        }
    }

    fn force(&mut self, to: State) {
        self.tick_time();
        if self.state == to && to != State::Closed {
            return;
        }
        let attempts = match to {
            State::Open => self.attempts + 1,
            State::ForcedOpen | State::HalfOpen => self.attempts,
            _ => 0,
        };
        self.transition(to, attempts);
    }
}

fn check(s: Settings, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let clock = ManualClock::new();
    let breaker = std::sync::Arc::new(build(&s, &clock));
    let mut model = Model::new(s);
    let mut held: Vec<(OwnedPermit<ManualClock>, ModelPermit)> = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Acquire => {
                let real = breaker.try_acquire_owned();
                let expected = model.acquire();
                match (real, expected) {
                    (Ok(p), Ok(m)) => {
                        prop_assert_eq!(p.is_probe(), m.probe, "step {}: probe?", step);
                        held.push((p, m));
                    }
                    (Err(r), Err((reason, retry))) => {
                        prop_assert_eq!(r.reason(), reason, "step {}", step);
                        prop_assert_eq!(
                            r.retry_after(),
                            retry.map(Duration::from_nanos),
                            "step {}",
                            step
                        );
                    }
                    (real, expected) => prop_assert!(
                        false,
                        "step {}: breaker {:?}, model {:?}",
                        step,
                        real.map(|p| p.is_probe()),
                        expected
                    ),
                }
            }
            Op::Record { which, outcome } => {
                if !held.is_empty() {
                    let (p, m) = held.swap_remove(which % held.len());
                    p.record(outcome);
                    model.record(m, outcome);
                }
            }
            Op::Cancel { which } => {
                if !held.is_empty() {
                    let (p, m) = held.swap_remove(which % held.len());
                    p.cancel();
                    model.cancel(m);
                }
            }
            Op::Drop { which } => {
                if !held.is_empty() {
                    let (p, m) = held.swap_remove(which % held.len());
                    drop(p);
                    model.abandon(m);
                }
            }
            Op::Deadline { which, ms } => {
                if !held.is_empty() {
                    let i = which % held.len();
                    let (p, m) = &mut held[i];
                    p.set_deadline(Duration::from_millis(ms));
                    prop_assert_eq!(
                        p.deadline(),
                        Some(Duration::from_millis(ms)),
                        "kept exactly"
                    );
                    model.set_deadline(m, ms);
                }
            }
            Op::Advance { ms } => {
                clock.advance(Duration::from_millis(ms));
                model.now += ms * MS;
            }
            Op::AdvanceNs => {
                clock.advance(Duration::from_nanos(1));
                model.now += 1;
            }
            Op::ForceOpen => {
                breaker.force_open();
                model.force(State::ForcedOpen);
            }
            Op::Disable => {
                breaker.disable();
                model.force(State::Disabled);
            }
            Op::MetricsOnly => {
                breaker.metrics_only();
                model.force(State::MetricsOnly);
            }
            Op::Trip => {
                breaker.trip();
                model.force(State::Open);
            }
            Op::Reset => {
                breaker.reset();
                model.force(State::Closed);
            }
        }
        let snap = breaker.snapshot();
        model.tick_time();
        let (calls, failures, slow) = model.window();
        let ctx = format!("step {step}, {snap:?}");
        prop_assert_eq!(snap.state, model.state, "{}", ctx);
        prop_assert_eq!(
            (
                snap.window.calls,
                snap.window.failures,
                snap.window.slow_calls
            ),
            (calls, failures, slow),
            "window, {}",
            ctx
        );
        let cf = if matches!(model.state, State::Closed | State::MetricsOnly) {
            model.consecutive_failures
        } else {
            0
        };
        prop_assert_eq!(snap.window.consecutive_failures, cf, "{}", ctx);
        prop_assert_eq!(
            snap.consecutive_successes,
            model.consecutive_successes,
            "{}",
            ctx
        );
        let (admitted, successes) = if model.state == State::HalfOpen {
            (model.admitted, model.probe_successes)
        } else {
            (0, 0)
        };
        prop_assert_eq!(
            (snap.half_open_admitted, snap.half_open_successes),
            (admitted, successes),
            "{}",
            ctx
        );
        prop_assert_eq!(snap.open_attempts, model.attempts, "{}", ctx);
        let retry = (model.state == State::Open)
            .then(|| Duration::from_nanos((model.phase_time - model.now).max(1)));
        prop_assert_eq!(snap.retry_after, retry, "{}", ctx);
        let t = snap.totals;
        prop_assert_eq!(
            Totals {
                successes: t.successes,
                failures: t.failures,
                ignored: t.ignored,
                slow: t.slow,
                rejected: t.rejected,
                late: t.late,
                cancelled: t.cancelled,
            },
            model.totals,
            "{}",
            ctx
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn breaker_agrees_with_the_sequential_model(
        s in settings(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        check(s, ops)?;
    }
}
