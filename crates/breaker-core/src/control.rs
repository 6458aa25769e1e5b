//! The control word: the breaker's state, generation and small counters in one atomic
//! word, and the compare-and-swap protocol every state change goes through.
//!
//! # Invariant
//!
//! Every change of state is one compare-and-swap from the word it was decided on, and every
//! transition bumps the generation. So a transition happens at most once (of two threads
//! deciding the same transition from the same word, exactly one succeeds, and only that one
//! reports it), a decision made on a stale word is retried on the fresh one, and a permit of
//! an older generation can never change the newer state. Half-open never has more probe
//! slots taken than its limit, and a slot given back is counted once.

use core::fmt;

use crate::state::State;
use crate::sync::{AtomicU64, Ordering};

/// The control word, one `AtomicU64`:
///
/// ```text
/// bits  0..3   state
/// bits  3..9   open attempts since last closed (saturating at 63)
/// bits  9..32  payload: closed / metrics-only: consecutive failures (23 bits)
///                       half-open: admitted probes (11 bits) | probe successes (11 bits)
/// bits 32..64  generation (wrapping), bumped by every transition
/// ```
///
/// Every transition is one compare-and-swap on this word from the generation it was
/// decided in, so it happens at most once, and a permit of an older generation can never
/// change the new state.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Word(u64);

pub(crate) const MAX_ATTEMPTS: u32 = 63;
const PAYLOAD_MASK: u64 = (1 << 23) - 1;
const PROBE_MASK: u32 = (1 << 11) - 1;

impl Word {
    #[inline]
    pub(crate) const fn new(state: State, epoch: u32, attempts: u32, payload: u32) -> Word {
        let attempts = if attempts > MAX_ATTEMPTS {
            MAX_ATTEMPTS
        } else {
            attempts
        };
        Word(
            (state as u64)
                | ((attempts as u64) << 3)
                | (((payload as u64) & PAYLOAD_MASK) << 9)
                | ((epoch as u64) << 32),
        )
    }

    #[inline]
    pub(crate) const fn state(self) -> State {
        State::from_bits(self.0 & 7)
    }

    #[inline]
    pub(crate) const fn epoch(self) -> u32 {
        (self.0 >> 32) as u32
    }

    #[inline]
    pub(crate) const fn attempts(self) -> u32 {
        ((self.0 >> 3) & 63) as u32
    }

    #[inline]
    pub(crate) const fn payload(self) -> u32 {
        ((self.0 >> 9) & PAYLOAD_MASK) as u32
    }

    /// Closed / metrics-only: consecutive failures.
    #[inline]
    pub(crate) const fn failures(self) -> u32 {
        self.payload()
    }

    /// Half-open: probes admitted and not given back.
    #[inline]
    pub(crate) const fn admitted(self) -> u32 {
        self.payload() & PROBE_MASK
    }

    /// Half-open: probes that succeeded.
    #[inline]
    pub(crate) const fn probe_successes(self) -> u32 {
        (self.payload() >> 11) & PROBE_MASK
    }

    #[inline]
    pub(crate) const fn with_payload(self, payload: u32) -> Word {
        Word::new(self.state(), self.epoch(), self.attempts(), payload)
    }

    #[inline]
    pub(crate) const fn with_probes(self, admitted: u32, successes: u32) -> Word {
        self.with_payload((admitted & PROBE_MASK) | ((successes & PROBE_MASK) << 11))
    }

    /// The first word of a new state, one generation on.
    #[inline]
    pub(crate) const fn next(self, state: State, attempts: u32, payload: u32) -> Word {
        Word::new(state, self.epoch().wrapping_add(1), attempts, payload)
    }
}

impl fmt::Debug for Word {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Word")
            .field("state", &self.state())
            .field("epoch", &self.epoch())
            .field("attempts", &self.attempts())
            .field("payload", &self.payload())
            .finish()
    }
}

/// The breaker's control word.
pub(crate) struct ControlWord(AtomicU64);

/// What [`ControlWord::take_probe`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProbeSlot {
    /// A slot of the word's generation is now held by the caller.
    Taken,
    /// Every slot is held.
    Full,
    /// The word changed meanwhile: decide again on this one.
    Changed(Word),
}

impl ControlWord {
    /// A closed breaker, generation 0.
    pub(crate) fn new() -> Self {
        ControlWord(AtomicU64::new(Word::new(State::Closed, 0, 0, 0).0))
    }

    #[inline]
    pub(crate) fn load(&self) -> Word {
        Word(self.0.load(Ordering::Acquire))
    }

    /// Replaces `current` with `next` if the word is still `current`; else the word it is.
    #[inline]
    pub(crate) fn cas(&self, current: Word, next: Word) -> Result<(), Word> {
        self.0
            .compare_exchange(current.0, next.0, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
            .map_err(Word)
    }

    /// Takes one half-open probe slot of `w`'s generation if fewer than `limit` are taken.
    #[inline]
    pub(crate) fn take_probe(&self, w: Word, limit: u32) -> ProbeSlot {
        if w.admitted() >= limit {
            return ProbeSlot::Full;
        }
        match self.cas(w, w.with_probes(w.admitted() + 1, w.probe_successes())) {
            Ok(()) => ProbeSlot::Taken,
            Err(actual) => ProbeSlot::Changed(actual),
        }
    }

    /// Gives back a probe slot of generation `epoch` (a dropped or ignored probe). Nothing
    /// to give back once the generation has moved on: its slots went with it.
    pub(crate) fn release_probe(&self, epoch: u32) {
        let mut w = self.load();
        while w.epoch() == epoch && w.state() == State::HalfOpen && w.admitted() > 0 {
            match self.cas(w, w.with_probes(w.admitted() - 1, w.probe_successes())) {
                Ok(()) => return,
                Err(actual) => {
                    w = actual;
                    crate::sync::spin_hint();
                }
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::{ControlWord, ProbeSlot, Word};
    use crate::state::State;
    use loom::sync::Arc;
    use loom::thread;

    fn half_open() -> Arc<ControlWord> {
        let control = Arc::new(ControlWord::new());
        let w = control.load();
        control.cas(w, w.next(State::HalfOpen, 1, 0)).unwrap();
        control
    }

    /// Takes a slot, retrying on a changed word like the breaker does.
    fn take(control: &ControlWord, limit: u32) -> bool {
        let mut w = control.load();
        loop {
            match control.take_probe(w, limit) {
                ProbeSlot::Taken => return true,
                ProbeSlot::Full => return false,
                ProbeSlot::Changed(actual) => w = actual,
            }
        }
    }

    #[test]
    fn half_open_never_hands_out_more_slots_than_its_limit() {
        loom::model(|| {
            let control = half_open();
            let others: Vec<_> = (0..2)
                .map(|_| {
                    let c = control.clone();
                    thread::spawn(move || take(&c, 2))
                })
                .collect();
            let mine = take(&control, 2);
            let taken = others
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|t| *t)
                .count()
                + usize::from(mine);
            assert_eq!(taken, 2);
            assert_eq!(control.load().admitted(), 2);
        });
    }

    #[test]
    fn a_released_slot_is_counted_once_and_can_be_taken_again() {
        loom::model(|| {
            let control = half_open();
            assert!(take(&control, 1));
            let epoch = control.load().epoch();
            let c = control.clone();
            let releaser = thread::spawn(move || c.release_probe(epoch));
            let c = control.clone();
            let taker = thread::spawn(move || take(&c, 1));
            releaser.join().unwrap();
            let took = taker.join().unwrap();
            assert_eq!(control.load().admitted(), u32::from(took));
        });
    }

    #[test]
    fn of_two_threads_deciding_the_same_transition_exactly_one_makes_it() {
        loom::model(|| {
            let control = Arc::new(ControlWord::new());
            let from = control.load();
            let wins: Vec<_> = (0..2)
                .map(|_| {
                    let c = control.clone();
                    thread::spawn(move || c.cas(from, from.next(State::Open, 1, 0)).is_ok())
                })
                .collect();
            let winners = wins
                .into_iter()
                .map(|h| h.join().unwrap())
                .filter(|w| *w)
                .count();
            assert_eq!(winners, 1);
            assert_eq!(control.load(), Word::new(State::Open, 1, 1, 0));
        });
    }
}
