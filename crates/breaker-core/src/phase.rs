//! Phase publication: the one time value that belongs to each generation.
//!
//! Every transition (one compare-and-swap on the control word, which bumps the generation)
//! has one winner, and the winner publishes the new generation's phase time: open, the
//! deadline after which a probe is admitted; half-open, the deadline after which it re-opens;
//! closed / metrics-only, when the period began; [`NO_TIME`]: no deadline.
//!
//! # Invariant
//!
//! Once the winner of generation `g` has published, [`PhaseCell::get`]`(g)` returns exactly
//! the time it published, for as long as `g` is the newest published generation, whatever
//! publishers of older generations do before, during or after. A publisher never waits for
//! another and runs no user code (the time is computed before the transition is made).
//!
//! # Protocol
//!
//! The 64-bit time is split into two halves, each stored with its generation in one word:
//! `[generation:32 | half:32]`. A publisher replaces each word only if the word's generation
//! is not newer than its own (a compare-and-swap loop that gives up as soon as it sees a newer
//! one). So each word only moves forward, the newest publisher always completes both words,
//! and a late publisher of an older generation can no longer overwrite anything: it sees the
//! newer tag and stops. A reader accepts the two halves only if both carry the generation it
//! asks for; there is one publisher per generation, so two matching halves are one value.
//!
//! "Newer" compares generations as wrapping 32-bit numbers; publishers in flight at the same
//! time are a few generations apart, far inside that range.

use crate::sync::{AtomicU64, Ordering, spin_hint};

/// No deadline (the phase has no time attached).
pub(crate) const NO_TIME: u64 = u64::MAX;

/// The last representable deadline: where a deadline too far to represent saturates.
pub(crate) const LAST_DEADLINE: u64 = NO_TIME - 1;

/// The deadline `span` nanoseconds after `now`. It saturates at [`LAST_DEADLINE`], one short
/// of [`NO_TIME`]: a deadline too far to represent is still a deadline, never "none".
#[inline]
pub(crate) fn deadline_after(now: u64, span: u64) -> u64 {
    now.saturating_add(span).min(LAST_DEADLINE)
}

/// Whether `deadline` has passed at `now`. A clock at its very end (`now` beyond
/// [`LAST_DEADLINE`]) counts as [`LAST_DEADLINE`]: a saturated deadline is never passed, so
/// phases cannot chase each other at the end of the clock.
#[inline]
pub(crate) fn passed(deadline: u64, now: u64) -> bool {
    now.min(LAST_DEADLINE) > deadline
}

/// `a` is a later generation than `b` (wrapping 32-bit arithmetic).
#[inline]
pub(crate) fn newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// The phase time of the newest published generation.
pub(crate) struct PhaseCell {
    high: AtomicU64,
    low: AtomicU64,
}

impl PhaseCell {
    /// Generation 0's phase: the closed period began at time 0.
    pub(crate) fn new() -> Self {
        PhaseCell {
            high: AtomicU64::new(0),
            low: AtomicU64::new(0),
        }
    }

    /// Publishes `time` as the phase of `generation`, unless a newer generation's phase is
    /// already there. Called once per generation, by the winner of its transition.
    pub(crate) fn publish(&self, generation: u32, time: u64) {
        Self::store_half(&self.high, generation, (time >> 32) as u32);
        Self::store_half(&self.low, generation, time as u32);
    }

    fn store_half(word: &AtomicU64, generation: u32, half: u32) {
        let new = (u64::from(generation) << 32) | u64::from(half);
        let mut current = word.load(Ordering::Acquire);
        loop {
            let theirs = (current >> 32) as u32;
            if theirs != generation && newer(theirs, generation) {
                return;
            }
            match word.compare_exchange_weak(current, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(actual) => {
                    current = actual;
                    spin_hint();
                }
            }
        }
    }

    /// The phase time of `generation`, if it is published (and not yet replaced by a newer
    /// one).
    #[inline]
    pub(crate) fn get(&self, generation: u32) -> Option<u64> {
        let high = self.high.load(Ordering::Acquire);
        if (high >> 32) as u32 != generation {
            return None;
        }
        let low = self.low.load(Ordering::Acquire);
        if (low >> 32) as u32 != generation {
            return None;
        }
        Some((high << 32) | (low & 0xFFFF_FFFF))
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::PhaseCell;
    use loom::sync::Arc;
    use loom::thread;

    /// Two publishers of consecutive generations overlap in every possible way: the newer
    /// one's time is what remains, never the older one's, and never a mix of both.
    #[test]
    fn the_newest_publisher_wins_whatever_the_interleaving() {
        loom::model(|| {
            let cell = Arc::new(PhaseCell::new());
            let older = {
                let cell = cell.clone();
                thread::spawn(move || cell.publish(7, 0x1111_1111_2222_2222))
            };
            let newer = {
                let cell = cell.clone();
                thread::spawn(move || cell.publish(8, 0x3333_3333_4444_4444))
            };
            older.join().unwrap();
            newer.join().unwrap();
            assert_eq!(cell.get(8), Some(0x3333_3333_4444_4444));
            assert_eq!(cell.get(7), None);
        });
    }

    /// A reader racing a publisher sees either nothing for the generation or its exact value.
    #[test]
    fn a_reader_sees_all_or_nothing() {
        loom::model(|| {
            let cell = Arc::new(PhaseCell::new());
            let writer = {
                let cell = cell.clone();
                thread::spawn(move || cell.publish(1, 0xAAAA_AAAA_BBBB_BBBB))
            };
            let seen = cell.get(1);
            assert!(matches!(seen, None | Some(0xAAAA_AAAA_BBBB_BBBB)));
            writer.join().unwrap();
            assert_eq!(cell.get(1), Some(0xAAAA_AAAA_BBBB_BBBB));
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{LAST_DEADLINE, NO_TIME, PhaseCell, deadline_after, newer, passed};

    #[test]
    fn a_deadline_never_saturates_to_no_time() {
        assert_eq!(deadline_after(5, 10), 15);
        assert_eq!(deadline_after(u64::MAX - 3, 10), LAST_DEADLINE);
        assert_eq!(deadline_after(NO_TIME, 0), LAST_DEADLINE);
        assert_ne!(LAST_DEADLINE, NO_TIME);
        assert!(passed(15, 16) && !passed(15, 15));
        assert!(
            !passed(LAST_DEADLINE, u64::MAX),
            "the end of the clock never passes it"
        );
        assert!(passed(LAST_DEADLINE - 1, u64::MAX));
    }

    #[test]
    fn an_older_publication_never_replaces_a_newer_one() {
        let cell = PhaseCell::new();
        assert_eq!(cell.get(0), Some(0));
        cell.publish(5, 42);
        cell.publish(4, 7);
        assert_eq!(cell.get(5), Some(42));
        assert_eq!(cell.get(4), None);
        cell.publish(u32::MAX, 1);
        assert_eq!(
            cell.get(5),
            Some(42),
            "u32::MAX is older than 5 in wrapping order"
        );
    }

    #[test]
    fn generations_compare_across_the_wrap() {
        assert!(newer(0, u32::MAX));
        assert!(newer(3, 1));
        assert!(!newer(1, 3));
        assert!(!newer(5, 5));
    }
}
