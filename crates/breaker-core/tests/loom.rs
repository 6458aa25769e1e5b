//! Model checks of the breaker's atomic protocols: every interleaving loom can reach (within
//! its preemption bound) must keep the invariants. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p breaker-core --test loom --release`
//! (or `cargo xtask loom`).
#![cfg(loom)]

use std::time::Duration;

use breaker_core::{
    CircuitBreaker, Event, ManualClock, Observer, OperatorAction, Outcome, ProbeAllowance,
    RejectReason, State,
};
use loom::sync::atomic::{AtomicU32, Ordering};
use loom::thread;
use std::sync::Arc;

/// Counts transitions into each state (loom atomics, so the counting is modelled too).
#[derive(Default)]
struct Transitions {
    to_open: AtomicU32,
    to_half_open: AtomicU32,
    to_closed: AtomicU32,
    thresholds: AtomicU32,
}

impl Observer for Transitions {
    fn on_event(&self, event: &Event) {
        match event {
            Event::StateTransition {
                to: State::Open, ..
            } => {
                self.to_open.fetch_add(1, Ordering::Relaxed);
            }
            Event::StateTransition {
                to: State::HalfOpen,
                ..
            } => {
                self.to_half_open.fetch_add(1, Ordering::Relaxed);
            }
            Event::StateTransition {
                to: State::Closed, ..
            } => {
                self.to_closed.fetch_add(1, Ordering::Relaxed);
            }
            Event::ThresholdExceeded(_) => {
                self.thresholds.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

type Breaker = CircuitBreaker<ManualClock, Transitions>;

const OPEN: Duration = Duration::from_secs(10);

fn consecutive(threshold: u32, probes: u32) -> (Arc<Breaker>, ManualClock) {
    let clock = ManualClock::new();
    let breaker = CircuitBreaker::builder_with_clock(clock.clone())
        .consecutive_failures(threshold)
        .half_open_probes(probes)
        .open_duration(OPEN)
        .observer(Transitions::default())
        .build()
        .unwrap();
    (Arc::new(breaker), clock)
}

/// Trips the breaker and moves time past the open period (still lazily open).
fn tripped_and_due(breaker: &Breaker, clock: &ManualClock) {
    breaker.trip();
    clock.advance(OPEN + Duration::from_nanos(1));
}

#[test]
fn half_open_never_admits_more_than_n() {
    loom::model(|| {
        let (breaker, clock) = consecutive(1, 2);
        tripped_and_due(&breaker, &clock);
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let b = breaker.clone();
                thread::spawn(move || b.try_acquire_owned().ok())
            })
            .collect();
        // Every permit is still held here, so no slot was given back in between.
        let held: Vec<_> = handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        assert_eq!(held.len(), 2, "exactly N probes while none finished");
        assert!(held.iter().all(|p| p.is_probe()));
        let s = breaker.snapshot();
        assert_eq!(s.state, State::HalfOpen);
        assert_eq!(s.half_open_admitted, 2);
        assert_eq!(breaker.observer().to_half_open.load(Ordering::Relaxed), 1);
        assert_eq!(s.totals.rejected, 1);
    });
}

#[test]
fn concurrent_failures_trip_exactly_once() {
    loom::model(|| {
        let (breaker, _clock) = consecutive(2, 1);
        let permits: Vec<_> = (0..3)
            .map(|_| breaker.try_acquire_owned().unwrap())
            .collect();
        let handles: Vec<_> = permits
            .into_iter()
            .map(|p| thread::spawn(move || p.record(Outcome::Failure)))
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let s = breaker.snapshot();
        assert_eq!(s.state, State::Open);
        assert_eq!(
            breaker.observer().to_open.load(Ordering::Relaxed),
            1,
            "one transition event"
        );
        assert_eq!(breaker.observer().thresholds.load(Ordering::Relaxed), 1);
        // The failure that finished after the trip is late (or, if it was counted before
        // the trip's compare-and-swap, it belongs to the generation that tripped); it never
        // counts against the new state.
        assert_eq!(s.totals.failures + s.totals.late, 3);
        assert!(s.totals.late <= 1);
        assert_eq!(s.window.consecutive_failures, 0);
        assert_eq!(s.open_attempts, 1);
    });
}

#[test]
fn late_results_of_an_older_generation_are_dropped() {
    loom::model(|| {
        let clock = ManualClock::new();
        let breaker = Arc::new(
            CircuitBreaker::builder_with_clock(clock)
                .count_window(2)
                .minimum_calls(1)
                .failure_rate(100.0)
                .observer(Transitions::default())
                .build()
                .unwrap(),
        );
        let permit = breaker.try_acquire_owned().unwrap();
        let b = breaker.clone();
        let resetter = thread::spawn(move || b.reset());
        let recorder = thread::spawn(move || permit.record(Outcome::Failure));
        resetter.join().unwrap();
        recorder.join().unwrap();
        let s = breaker.snapshot();
        // Whatever the order, the reset leaves an empty window and a closed breaker: a
        // failure recorded before the reset was cleared by it, one recorded after is late.
        assert_eq!(s.window.calls, 0);
        assert_eq!(s.window.consecutive_failures, 0);
        assert_eq!(s.totals.failures + s.totals.late, 1);
        if s.totals.late == 1 {
            assert_eq!(breaker.observer().to_open.load(Ordering::Relaxed), 0);
        }
        assert_eq!(s.state, State::Closed);
        // The window is still exact: two more successes fill it with exactly two calls.
        for _ in 0..2 {
            breaker.try_acquire().unwrap().record(Outcome::Success);
        }
        let s = breaker.snapshot();
        assert_eq!((s.window.calls, s.window.failures), (2, 0));
    });
}

#[test]
fn dropped_permits_give_their_slot_back() {
    loom::model(|| {
        let (breaker, clock) = consecutive(1, 1);
        tripped_and_due(&breaker, &clock);
        let b = breaker.clone();
        let dropper = thread::spawn(move || {
            let permit = b.try_acquire_owned();
            drop(permit); // cancelled call
        });
        let b = breaker.clone();
        let holder = thread::spawn(move || b.try_acquire_owned().ok());
        dropper.join().unwrap();
        let held = holder.join().unwrap();
        let s = breaker.snapshot();
        assert_eq!(s.state, State::HalfOpen);
        assert_eq!(s.half_open_admitted, u32::from(held.is_some()));
        assert_eq!(s.half_open_successes, 0);
        match held {
            Some(p) => {
                assert!(breaker.try_acquire().is_err(), "the one slot is held");
                drop(p);
            }
            None => {}
        }
        // Every slot is back: a probe is admitted and closes the breaker.
        breaker.try_acquire().unwrap().record(Outcome::Success);
        assert_eq!(breaker.state(), State::Closed);
    });
}

#[test]
fn ignored_probe_results_give_their_slot_back() {
    loom::model(|| {
        let (breaker, clock) = consecutive(1, 1);
        tripped_and_due(&breaker, &clock);
        let first = breaker.try_acquire_owned().unwrap();
        let t = thread::spawn(move || first.record(Outcome::Ignored));
        let b = breaker.clone();
        let second = thread::spawn(move || b.try_acquire_owned().ok());
        t.join().unwrap();
        let second = second.join().unwrap();
        let s = breaker.snapshot();
        assert_eq!(s.half_open_admitted, u32::from(second.is_some()));
        assert_eq!(s.state, State::HalfOpen);
    });
}

#[test]
fn force_open_races_with_records_and_acquires() {
    loom::model(|| {
        let (breaker, _clock) = consecutive(1, 1);
        let b = breaker.clone();
        let caller = thread::spawn(move || match b.try_acquire() {
            Ok(p) => {
                p.record(Outcome::Failure);
                None
            }
            Err(rejected) => Some(rejected.reason()),
        });
        let b = breaker.clone();
        let operator = thread::spawn(move || b.force_open());
        let rejected = caller.join().unwrap();
        operator.join().unwrap();
        let s = breaker.snapshot();
        assert_eq!(
            s.state,
            State::ForcedOpen,
            "the operator's decision always stands"
        );
        match rejected {
            Some(reason) => assert_eq!(reason, RejectReason::ForcedOpen),
            None => assert_eq!(s.totals.failures + s.totals.late, 1),
        }
        assert!(breaker.observer().to_open.load(Ordering::Relaxed) <= 1);
        assert!(matches!(
            breaker.try_acquire().unwrap_err().reason(),
            RejectReason::ForcedOpen
        ));
    });
}

#[test]
fn half_open_probe_results_close_or_reopen_exactly_once() {
    loom::model(|| {
        let (breaker, clock) = consecutive(1, 2);
        tripped_and_due(&breaker, &clock);
        let a = breaker.try_acquire_owned().unwrap();
        let b = breaker.try_acquire_owned().unwrap();
        let ta = thread::spawn(move || a.record(Outcome::Success));
        let tb = thread::spawn(move || b.record(Outcome::Failure));
        ta.join().unwrap();
        tb.join().unwrap();
        // The failure always re-opens; the success alone cannot close (2 needed).
        assert_eq!(breaker.state(), State::Open);
        assert_eq!(breaker.observer().to_closed.load(Ordering::Relaxed), 0);
        // 1 for `trip`, 1 for the failed probe.
        assert_eq!(breaker.observer().to_open.load(Ordering::Relaxed), 2);
        assert_eq!(breaker.snapshot().open_attempts, 2);
    });
}

#[test]
fn count_window_stays_exact_under_eviction_races() {
    loom::model(|| {
        let breaker = Arc::new(
            CircuitBreaker::builder_with_clock(ManualClock::new())
                .count_window(1)
                .minimum_calls(1)
                .failure_rate(100.0)
                .build()
                .unwrap(),
        );
        let p1 = breaker.try_acquire_owned().unwrap();
        let p2 = breaker.try_acquire_owned().unwrap();
        let t1 = thread::spawn(move || p1.record(Outcome::Success));
        let t2 = thread::spawn(move || p2.record(Outcome::Success));
        t1.join().unwrap();
        t2.join().unwrap();
        let s = breaker.snapshot();
        assert_eq!((s.window.calls, s.window.failures), (1, 0));
        breaker.try_acquire().unwrap().record(Outcome::Failure);
        assert_eq!(breaker.state(), State::Open);
    });
}

#[test]
fn time_window_bucket_rotation_is_exact() {
    loom::model(|| {
        let clock = ManualClock::new();
        let breaker = Arc::new(
            CircuitBreaker::builder_with_clock(clock.clone())
                .time_window(Duration::from_secs(2), 2)
                .minimum_calls(100)
                .build()
                .unwrap(),
        );
        let p1 = breaker.try_acquire_owned().unwrap();
        let p2 = breaker.try_acquire_owned().unwrap();
        let t1 = thread::spawn(move || p1.record(Outcome::Failure));
        let c = clock.clone();
        let t2 = thread::spawn(move || {
            c.advance(Duration::from_secs(2)); // same bucket, next rotation
            p2.record(Outcome::Success);
        });
        t1.join().unwrap();
        t2.join().unwrap();
        let s = breaker.snapshot();
        // The failure is in the window only if it read the clock after the advance.
        assert!(s.window.calls == 1 || s.window.calls == 2, "{s:?}");
        assert_eq!(s.window.failures, s.window.calls - 1);
    });
}

/// A success and a failure recorded at once in one tick of a time window, each evaluating
/// the window; then a third call brings the window to its minimum with a failure rate over
/// the threshold. Whatever order the two evaluations remembered their verdicts in, the third
/// call trips the breaker: a "below every threshold" verdict computed before the failure was
/// counted must not outlive it.
#[test]
fn a_stale_verdict_never_hides_a_trip() {
    loom::model(|| {
        let breaker = Arc::new(
            CircuitBreaker::builder_with_clock(ManualClock::new())
                .time_window(Duration::from_secs(2), 2)
                .minimum_calls(3)
                .failure_rate(30.0)
                .build()
                .unwrap(),
        );
        let success = breaker.try_acquire_owned().unwrap();
        let failure = breaker.try_acquire_owned().unwrap();
        let ts = thread::spawn(move || success.record(Outcome::Success));
        let tf = thread::spawn(move || failure.record(Outcome::Failure));
        ts.join().unwrap();
        tf.join().unwrap();
        assert_eq!(breaker.state(), State::Closed, "2 calls: under the minimum");
        breaker.try_acquire().unwrap().record(Outcome::Success);
        // 3 calls, 1 failure: 33 % >= 30 %.
        assert_eq!(breaker.state(), State::Open, "{:?}", breaker.snapshot());
    });
}

/// A success of a new tick reads the previous tick's verdict key; a failure clears the
/// verdict; a laggard success, whose tick was read before the bucket boundary, puts the
/// previous tick's key back. The new tick's success must not then install its "below",
/// which never saw the failure: a compare-and-swap from a key that came back is no proof
/// that nothing happened. The call that reaches the minimum trips the breaker.
///
/// Three threads and a manual clock make this the costliest model: two preemptions reach
/// the interleaving (10 s here; three took 150 s).
#[test]
fn a_verdict_key_that_comes_back_proves_nothing() {
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(2);
    model.check(|| {
        let clock = ManualClock::new();
        let breaker = Arc::new(
            CircuitBreaker::builder_with_clock(clock.clone())
                .time_window(Duration::from_secs(2), 2)
                .minimum_calls(5)
                .failure_rate(20.0)
                .build()
                .unwrap(),
        );
        // Tick 0: a success installs the key of tick 0.
        breaker.try_acquire().unwrap().record(Outcome::Success);
        let laggard = breaker.try_acquire_owned().unwrap();
        let failure = breaker.try_acquire_owned().unwrap();
        let success = breaker.try_acquire_owned().unwrap();
        let tl = thread::spawn(move || laggard.record(Outcome::Success));
        clock.advance(Duration::from_secs(1));
        let tf = thread::spawn(move || failure.record(Outcome::Failure));
        success.record(Outcome::Success);
        tl.join().unwrap();
        tf.join().unwrap();
        assert_eq!(breaker.state(), State::Closed, "4 calls: under the minimum");
        breaker.try_acquire().unwrap().record(Outcome::Success);
        // 5 calls, 1 failure: 20 % >= 20 %.
        assert_eq!(breaker.state(), State::Open, "{:?}", breaker.snapshot());
    });
}

#[test]
fn window_trip_fires_exactly_once() {
    loom::model(|| {
        let breaker = Arc::new(
            CircuitBreaker::builder_with_clock(ManualClock::new())
                .count_window(4)
                .minimum_calls(2)
                .failure_rate(50.0)
                .observer(Transitions::default())
                .build()
                .unwrap(),
        );
        let permits: Vec<_> = (0..2)
            .map(|_| breaker.try_acquire_owned().unwrap())
            .collect();
        let handles: Vec<_> = permits
            .into_iter()
            .map(|p| thread::spawn(move || p.record(Outcome::Failure)))
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(breaker.state(), State::Open);
        assert_eq!(breaker.observer().to_open.load(Ordering::Relaxed), 1);
        assert_eq!(breaker.observer().thresholds.load(Ordering::Relaxed), 1);
    });
}

#[test]
fn a_trip_racing_an_acquire_publishes_its_deadline() {
    loom::model(|| {
        let (breaker, clock) = consecutive(1, 1);
        let permit = breaker.try_acquire_owned().unwrap();
        let tripper = thread::spawn(move || permit.record(Outcome::Failure));
        let b = breaker.clone();
        let caller = thread::spawn(move || match b.try_acquire() {
            Ok(p) => {
                assert!(!p.is_probe());
                None
            }
            Err(r) => Some(r),
        });
        tripper.join().unwrap();
        if let Some(r) = caller.join().unwrap() {
            assert_eq!(r.reason(), RejectReason::Open);
            // Published or not yet, the caller is told exactly when to retry (no time
            // passed, so that is the whole open duration).
            assert_eq!(r.retry_after(), Some(OPEN));
        }
        assert_eq!(breaker.retry_after(), Some(OPEN));
        clock.advance(OPEN + Duration::from_nanos(1));
        assert!(breaker.try_acquire().unwrap().is_probe());
    });
}

/// Whatever the breaker's state after a race, it must be one it can leave: open with a
/// deadline that a later probe passes, or closed and admitting calls.
fn assert_recoverable(breaker: &Breaker, clock: &ManualClock) {
    match breaker.state() {
        State::Open => {
            assert_eq!(
                breaker.retry_after(),
                Some(OPEN),
                "open without its deadline"
            );
            match breaker.try_acquire() {
                Err(r) => assert_eq!(r.retry_after(), Some(OPEN)),
                Ok(_) => panic!("admitted while open"),
            }
            clock.advance(OPEN + Duration::from_nanos(1));
            let probe = breaker
                .try_acquire()
                .expect("the open period ended: a probe");
            assert!(probe.is_probe());
        }
        State::Closed => assert!(breaker.try_acquire().is_ok()),
        other => panic!("unexpected state {other:?}"),
    }
}

/// Fault found in review: two transitions' phase publishers overlap. A probe's success
/// closes the breaker (generation g) while a call admitted in that closed period trips it
/// again (g + 1). Before the fix, the closer could be preempted inside its publication, the
/// tripper published g + 1, and the closer then stored g on top: the open breaker had no
/// deadline and rejected every call for good.
#[test]
fn a_close_and_a_trip_publishing_at_once_leave_the_newest_deadline() {
    loom::model(|| {
        let (breaker, clock) = consecutive(1, 1);
        tripped_and_due(&breaker, &clock);
        let probe = breaker.try_acquire_owned().unwrap();
        assert!(probe.is_probe());
        let closer = thread::spawn(move || probe.record(Outcome::Success));
        let b = breaker.clone();
        let tripper = thread::spawn(move || {
            // Half-open and full: rejected. Closed: the failure trips the breaker again.
            if let Ok(permit) = b.try_acquire() {
                assert!(!permit.is_probe());
                permit.record(Outcome::Failure);
            }
        });
        closer.join().unwrap();
        tripper.join().unwrap();
        assert_recoverable(&breaker, &clock);
    });
}

/// The same fault through the operator controls: `reset()` racing `trip()`.
#[test]
fn reset_racing_trip_leaves_a_breaker_that_can_recover() {
    loom::model(|| {
        let (breaker, clock) = consecutive(3, 1);
        let b = breaker.clone();
        let resetter = thread::spawn(move || b.reset());
        breaker.trip();
        resetter.join().unwrap();
        assert_recoverable(&breaker, &clock);
    });
}

/// `OperatorAction::Normal` ends operator modes only: racing a trip of a closed breaker, it
/// never closes it again, and the breaker still recovers.
#[test]
fn normal_racing_a_trip_never_undoes_it() {
    loom::model(|| {
        let (breaker, clock) = consecutive(3, 1);
        let b = breaker.clone();
        let operator = thread::spawn(move || b.apply(OperatorAction::Normal));
        breaker.trip();
        operator.join().unwrap();
        assert_eq!(breaker.snapshot().state, State::Open);
        assert_eq!(breaker.observer().to_closed.load(Ordering::Relaxed), 0);
        assert_recoverable(&breaker, &clock);
    });
}

/// A coordinator's probe allowance (a fleet's share, see `breaker-redis`) caps the probes
/// below `half_open_probes`, including the caller admitted by the open to half-open
/// transition itself, while the allowance is being granted concurrently.
#[test]
fn a_probe_allowance_caps_concurrent_probes() {
    loom::model(|| {
        let (breaker, clock) = consecutive(1, 3);
        breaker.trip();
        let half_open = breaker.snapshot().generation + 1;
        breaker.set_probe_allowance(ProbeAllowance::InGeneration {
            generation: half_open,
            probes: 0,
        });
        clock.advance(OPEN + Duration::from_nanos(1));
        let b = breaker.clone();
        let granter = thread::spawn(move || {
            b.set_probe_allowance(ProbeAllowance::InGeneration {
                generation: half_open,
                probes: 1,
            })
        });
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let b = breaker.clone();
                thread::spawn(move || b.try_acquire_owned().ok())
            })
            .collect();
        granter.join().unwrap();
        let held: Vec<_> = handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        assert!(held.len() <= 1, "at most the one allowed probe");
        assert_eq!(breaker.snapshot().half_open_admitted as usize, held.len());
        assert_eq!(breaker.observer().to_half_open.load(Ordering::Relaxed), 1);
        drop(held);
        // Granted now: one probe gets through; its success does not free a slot, so the
        // allowance is spent and the breaker waits, half-open, for more allowance.
        let probe = breaker.try_acquire().expect("the allowed probe");
        probe.record(Outcome::Success);
        let refused = breaker.try_acquire().unwrap_err();
        assert_eq!(refused.reason(), RejectReason::HalfOpenFull);
        assert_eq!(breaker.snapshot().half_open_successes, 1);
    });
}

/// Following a state decided elsewhere races the breaker's own transitions through the same
/// compare-and-swap: exactly one of them makes the transition, and the breaker always ends
/// in a state it can recover from.
#[test]
fn following_a_fleet_races_a_local_trip() {
    loom::model(|| {
        let (breaker, clock) = consecutive(1, 1);
        let b = breaker.clone();
        let open = breaker_core::Follow::Open {
            open_for: OPEN,
            attempts: 1,
        };
        let follower = thread::spawn(move || b.follow(0, open));
        let permit = breaker.try_acquire();
        if let Ok(permit) = permit {
            permit.record(Outcome::Failure);
        }
        let followed = follower.join().unwrap();
        assert!(matches!(followed, None | Some(1)), "{followed:?}");
        assert_eq!(breaker.observer().to_open.load(Ordering::Relaxed), 1);
        assert_eq!(
            breaker.snapshot().generation,
            1,
            "one transition, by whichever came first"
        );
        assert_recoverable(&breaker, &clock);
    });
}

/// Moving an open breaker to a later followed deadline races the breaker's own open to
/// half-open transition (its period just ended): one compare-and-swap decides, exactly one
/// of the two happens, and the breaker can always recover.
#[test]
fn following_a_later_deadline_races_the_end_of_the_open_period() {
    loom::model(|| {
        let (breaker, clock) = consecutive(1, 1);
        breaker.trip();
        clock.advance(OPEN + Duration::from_nanos(1));
        let b = breaker.clone();
        let later = breaker_core::Follow::Open {
            open_for: OPEN,
            attempts: 2,
        };
        let follower = thread::spawn(move || b.follow(1, later));
        let probe = breaker.try_acquire_owned();
        let followed = follower.join().unwrap();
        assert_eq!(breaker.snapshot().generation, 2, "exactly one transition");
        match followed {
            Some(2) => {
                assert!(probe.is_err(), "open again for the followed period");
                assert_eq!(breaker.snapshot().open_attempts, 2);
            }
            None => {
                let probe = probe.expect("the probe");
                assert!(probe.is_probe());
                assert_eq!(breaker.observer().to_half_open.load(Ordering::Relaxed), 1);
                probe.record(Outcome::Success);
            }
            other => panic!("{other:?}"),
        }
        assert_recoverable(&breaker, &clock);
    });
}

/// A coordinator renews a leased allowance while callers take probes: the cap holds across
/// the renewal (never lifted by reading the new allowance with the old, lapsed lease). Once
/// the lease runs out unrenewed, the breaker's own limit applies; a renewal caps it again.
#[test]
fn renewing_a_leased_allowance_races_acquirers() {
    loom::model(|| {
        let (breaker, clock) = consecutive(1, 3);
        breaker.trip();
        let half_open = breaker.snapshot().generation + 1;
        let one = ProbeAllowance::InGeneration {
            generation: half_open,
            probes: 1,
        };
        // (Shorter than the 60 s half-open limit, so the period outlives the lease.)
        let lease = Duration::from_secs(20);
        breaker.lease_probe_allowance(one, Duration::from_nanos(1));
        clock.advance(OPEN + Duration::from_nanos(1));
        // The first lease ran out; the renewal races two acquirers.
        let b = breaker.clone();
        let renewer = thread::spawn(move || b.lease_probe_allowance(one, lease));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let b = breaker.clone();
                thread::spawn(move || b.try_acquire_owned().ok())
            })
            .collect();
        renewer.join().unwrap();
        let held: Vec<_> = handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        // Before the renewal the breaker was on its own (3 probes): both may have got one.
        let admitted = breaker.snapshot().half_open_admitted;
        assert_eq!(admitted as usize, held.len());
        // After it, the cap holds: nothing more while one or more is out.
        assert!(breaker.try_acquire().is_err(), "capped again");
        clock.advance(lease + Duration::from_nanos(1));
        if admitted < 3 {
            assert!(breaker.try_acquire().is_ok(), "lapsed: its own limit");
        }
        drop(held);
    });
}

/// The enforcement ramp's pass-through permits never take a probe slot: with half the
/// refusals enforced, three callers racing for one probe get exactly one probe, and each of
/// the others is either refused or let through (and counted as unenforced); results of the
/// calls let through change nothing.
#[test]
fn the_ramp_lets_calls_through_without_taking_probe_slots() {
    loom::model(|| {
        let clock = ManualClock::new();
        let breaker = Arc::new(
            CircuitBreaker::builder_with_clock(clock.clone())
                .consecutive_failures(1)
                .half_open_probes(1)
                .open_duration(OPEN)
                .enforcement(50.0)
                .enforcement_seed(3)
                .observer(Transitions::default())
                .build()
                .unwrap(),
        );
        tripped_and_due(&breaker, &clock);
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let b = breaker.clone();
                thread::spawn(move || b.try_acquire_owned())
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let probes = results
            .iter()
            .filter(|r| r.as_ref().is_ok_and(|p| p.is_probe()))
            .count();
        let let_through = results
            .iter()
            .filter(|r| r.as_ref().is_ok_and(|p| !p.is_probe()))
            .count() as u64;
        let refused = results.iter().filter(|r| r.is_err()).count() as u64;
        assert_eq!(probes, 1, "exactly one probe");
        let s = breaker.snapshot();
        assert_eq!(
            (s.totals.unenforced, s.totals.rejected),
            (let_through, refused)
        );
        assert_eq!(s.half_open_admitted, 1);
        // Every call ends: the calls let through fail, the probe succeeds and closes.
        for permit in results.into_iter().flatten() {
            let outcome = if permit.is_probe() {
                Outcome::Success
            } else {
                Outcome::Failure
            };
            permit.record(outcome);
        }
        let s = breaker.snapshot();
        assert_eq!(s.state, State::Closed);
        assert_eq!((s.totals.successes, s.totals.failures), (1, 0));
        assert_eq!(breaker.observer().to_closed.load(Ordering::Relaxed), 1);
    });
}

/// Two failures with different hints race to trip: the breaker opens once, for the hint of
/// the failure that opened it, whole; the other's hint is unused.
#[test]
fn racing_failures_with_hints_open_once_for_the_winners() {
    use breaker_core::Pushback;
    loom::model(|| {
        let (breaker, _clock) = consecutive(1, 1);
        let hints = [Duration::from_secs(20), Duration::from_secs(40)];
        let permits: Vec<_> = hints
            .iter()
            .map(|_| breaker.try_acquire_owned().unwrap())
            .collect();
        let handles: Vec<_> = permits
            .into_iter()
            .zip(hints)
            .map(|(p, hint)| {
                thread::spawn(move || {
                    p.record_with_pushback(Outcome::Failure, Some(Pushback::After(hint)))
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let s = breaker.snapshot();
        assert_eq!(s.state, State::Open);
        assert_eq!(breaker.observer().to_open.load(Ordering::Relaxed), 1);
        // The other failure is late, or was counted just before the trip (in the
        // generation that tripped); either way it opens nothing.
        assert_eq!(s.totals.failures + s.totals.late, 2);
        let open = breaker.retry_after().unwrap();
        assert!(hints.contains(&open), "the winner's hint, whole: {open:?}");
    });
}
