//! The count window: the last `size` calls, in a ring of slots and one aggregate.
//!
//! Invariant (besides the window's, see the parent module): once concurrent records have
//! finished, the aggregate equals the sum of the slots that hold the current generation;
//! while records are in flight, a reading is either within the records in flight of that,
//! or recognisably in flux (a field wrapped "negative") and skipped.

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::fastdiv::fastmod;
use super::generation_of;
use crate::snapshot::Counts;
use crate::sync::{AtomicU64, Ordering, spin_hint};

// slot word:  [generation:32 | 0..:29 | slow:1 | failure:1 | valid:1]
// aggregate:  [generation:32 | calls:16 | failures:16]
// slow:       [generation:32 | 0:16 | slow calls:16]
// Each 16-bit field wraps on its own, so an eviction that overtakes the matching insertion
// nets out exactly.
// ---------------------------------------------------------------------------------------

const VALID: u64 = 1;
const FAILED: u64 = 2;
const SLOW: u64 = 4;

pub(crate) struct CountWindow {
    size: usize,
    /// `fastmod` constant for `size`.
    magic: u64,
    /// The cursor, then `size` slots starting [`CURSOR_WORDS`] words later. The cursor is
    /// the one word every record writes; apart from the fields beside it (read by every
    /// record) and from the slots, they are not fetched again after every other thread's
    /// increment. It lives with the slots so that one pointer reaches both.
    ring: Box<[AtomicU64]>,
    aggregate: AtomicU64,
    slow: AtomicU64,
    /// [`verdict_key`] of counts found below every rate threshold by the last record that
    /// changed nothing; 0: none.
    below: AtomicU64,
}

/// The counts of an aggregate and a slow word as one non-zero key:
/// `[1 | calls:16 | failures:16 | slow:16]`.
#[inline]
fn verdict_key(aggregate: u64, slow: u16) -> u64 {
    (1 << 63) | ((aggregate & 0xFFFF_FFFF) << 16) | u64::from(slow)
}

/// Words from the cursor to the first slot: 128 bytes, a cache-line pair.
const CURSOR_WORDS: usize = 16;

#[inline]
fn agg_pack(generation: u32, calls: u16, failures: u16) -> u64 {
    (u64::from(generation) << 32) | (u64::from(calls) << 16) | u64::from(failures)
}

#[inline]
fn agg_fields(a: u64) -> (u16, u16) {
    ((a >> 16) as u16, a as u16)
}

/// Adds `delta` (wrapping) to a `[generation:32 | value:32]` word of generation
/// `generation`: a word of another generation is stale and restarts from zero if
/// `generation` is current, else the record is late (`None`). Returns the new word.
#[inline]
fn add_in_generation(
    word: &AtomicU64,
    generation: u32,
    is_current: &impl Fn(u32) -> bool,
    add: impl Fn(u32) -> u32,
) -> Option<u64> {
    let mut cur = word.load(Ordering::Acquire);
    loop {
        // Asked again after every failed compare-and-swap: the word may have moved on to a
        // newer generation meanwhile, and then this record is late.
        let next = if generation_of(cur) == generation {
            (cur & !0xFFFF_FFFF) | u64::from(add(cur as u32))
        } else if is_current(generation) {
            (u64::from(generation) << 32) | u64::from(add(0))
        } else {
            return None;
        };
        match word.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(next),
            Err(actual) => {
                cur = actual;
                spin_hint();
            }
        }
    }
}

impl CountWindow {
    pub(super) fn new(size: u32) -> Self {
        let ring: Vec<AtomicU64> = (0..CURSOR_WORDS + size as usize)
            .map(|_| AtomicU64::new(0))
            .collect();
        CountWindow {
            size: size as usize,
            magic: (u64::MAX / u64::from(size)).wrapping_add(1),
            ring: ring.into_boxed_slice(),
            aggregate: AtomicU64::new(0),
            slow: AtomicU64::new(0),
            below: AtomicU64::new(0),
        }
    }

    /// Records one call of generation `generation`. `None` when the result is late (its
    /// generation is no longer the current one); `Some(None)` when recorded but the
    /// aggregate is in flux; `Some(Some(counts))` otherwise.
    ///
    /// `rates_below` tells whether counts are below every rate threshold (`None`: do not
    /// remember verdicts, a trip predicate decides). A record that changes nothing returns
    /// `Some(None)` when the counts as they stand were already found below.
    ///
    /// Inlined into its one caller: returned through memory, the counts would be stored
    /// field by field and reloaded in wider pieces, a store-forwarding stall that costs more
    /// than the rest of the record.
    #[inline(always)]
    pub(crate) fn record(
        &self,
        generation: u32,
        failed: bool,
        slow: bool,
        is_current: impl Fn(u32) -> bool,
        rates_below: impl Fn(&Counts) -> Option<bool>,
    ) -> Option<Option<Counts>> {
        // The cursor counts calls (wrapping at 2^32: the ring then jumps once, which the slot
        // protocol tolerates like any other index); the slot is the count modulo the size,
        // computed without a division (Lemire's fastmod).
        let n = self.ring[0].fetch_add(1, Ordering::Relaxed) as u32;
        let index = fastmod(n, self.magic, self.size as u32) as usize;
        let slot = &self.slots()[index.min(self.size - 1)];
        let new = (u64::from(generation) << 32)
            | VALID
            | if failed { FAILED } else { 0 }
            | if slow { SLOW } else { 0 };
        let mut old = slot.load(Ordering::Acquire);
        if old == new {
            // The slot already holds this very outcome of this generation (the steady state:
            // a success evicting a success). Replacing it would change nothing, so the load
            // stands for the compare-and-swap, and the aggregate stays as it is.
            return self.unchanged(generation, &is_current, rates_below);
        }
        loop {
            // Another generation's call in the slot: stale if ours is current (asked again
            // after every failed compare-and-swap), else this record is late.
            if old & VALID != 0 && generation_of(old) != generation && !is_current(generation) {
                return None;
            }
            match slot.compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(actual) => {
                    old = actual;
                    spin_hint();
                }
            }
        }
        let evicted = old & VALID != 0 && generation_of(old) == generation;
        let (d_calls, d_fail, d_slow) = (
            1u16.wrapping_sub(u16::from(evicted)),
            u16::from(failed).wrapping_sub(u16::from(evicted && old & FAILED != 0)),
            u16::from(slow).wrapping_sub(u16::from(evicted && old & SLOW != 0)),
        );
        let aggregate = add_in_generation(&self.aggregate, generation, &is_current, |v| {
            let (c, f) = agg_fields(u64::from(v));
            agg_pack(0, c.wrapping_add(d_calls), f.wrapping_add(d_fail)) as u32
        })?;
        if d_slow != 0 {
            add_in_generation(&self.slow, generation, &is_current, |v| {
                u32::from((v as u16).wrapping_add(d_slow))
            })?;
        }
        Some(self.settled(aggregate, self.slow_of(generation)))
    }

    /// The result of a record that changed nothing: the counts as they stand, or `Some(None)`
    /// if the last record that changed nothing found these very counts below every rate
    /// threshold. The verdict is a function of the counts and the thresholds alone, so it
    /// cannot have changed (a reconfiguration forgets it).
    #[inline(always)]
    fn unchanged(
        &self,
        generation: u32,
        is_current: &impl Fn(u32) -> bool,
        rates_below: impl Fn(&Counts) -> Option<bool>,
    ) -> Option<Option<Counts>> {
        let aggregate = self.aggregate.load(Ordering::Acquire);
        if generation_of(aggregate) != generation {
            // Either the record that put this generation in the slot has not reached the
            // aggregate yet, or this record is late.
            return is_current(generation).then_some(None);
        }
        let slow = self.slow_of(generation);
        let key = verdict_key(aggregate, slow);
        let remembered = self.below.load(Ordering::Relaxed);
        if remembered == key {
            return Some(None);
        }
        let counts = self.settled(aggregate, slow);
        if let Some(below) = counts.as_ref().and_then(&rates_below) {
            // Written only when it changes: the line is read by every record.
            let verdict = if below { key } else { 0 };
            if verdict != remembered {
                self.below.store(verdict, Ordering::Relaxed);
            }
        }
        Some(counts)
    }

    /// Heap bytes of the slots.
    pub(crate) fn heap_bytes(&self) -> usize {
        core::mem::size_of_val(&*self.ring)
    }

    #[inline(always)]
    fn slots(&self) -> &[AtomicU64] {
        &self.ring[CURSOR_WORDS..]
    }

    /// Forgets the last verdict (the thresholds changed).
    pub(crate) fn forget_verdict(&self) {
        self.below.store(0, Ordering::Relaxed);
    }

    #[inline]
    fn slow_of(&self, generation: u32) -> u16 {
        let s = self.slow.load(Ordering::Acquire);
        if generation_of(s) == generation {
            s as u16
        } else {
            0
        }
    }

    /// The counts to evaluate the rules on, or `None` while the aggregate is in flux: when an
    /// eviction has overtaken the insertion it undoes, a field is briefly "negative" (wrapped
    /// past the window size). Skipping such a reading never trips on garbage; the next
    /// record evaluates again. Outside that case, a reading differs from a settled one only
    /// by the records still in flight.
    #[inline(always)]
    fn settled(&self, aggregate: u64, slow: u16) -> Option<Counts> {
        let (c, f) = agg_fields(aggregate);
        let size = self.size as u16;
        (c <= size && f <= c && slow <= c).then(|| self.counts_of(aggregate, slow))
    }

    /// Counts of an aggregate, clamped into range (see [`settled`](Self::settled)).
    #[inline(always)]
    fn counts_of(&self, aggregate: u64, slow: u16) -> Counts {
        let (c, f) = agg_fields(aggregate);
        let calls = u64::from(c).min(self.size as u64);
        Counts {
            calls,
            failures: u64::from(f).min(calls),
            slow_calls: u64::from(slow).min(calls),
            consecutive_failures: 0,
        }
    }

    pub(crate) fn counts(&self, generation: u32) -> Counts {
        let a = self.aggregate.load(Ordering::Acquire);
        if generation_of(a) == generation {
            self.counts_of(a, self.slow_of(generation))
        } else {
            Counts::default()
        }
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::CountWindow;
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicU32, Ordering};
    use loom::thread;

    /// Three records race into a window of two: whichever evicts whichever, the aggregate
    /// ends equal to what the two slots hold.
    #[test]
    fn the_aggregate_matches_the_slots_whatever_the_eviction_order() {
        loom::model(|| {
            let window = Arc::new(CountWindow::new(2));
            let records: Vec<_> = [true, false]
                .into_iter()
                .map(|failed| {
                    let w = window.clone();
                    thread::spawn(move || {
                        w.record(1, failed, false, |g| g == 1, |_| None);
                    })
                })
                .collect();
            window.record(1, true, false, |g| g == 1, |_| None);
            for r in records {
                r.join().unwrap();
            }
            let counts = window.counts(1);
            let failed_slots = window
                .slots()
                .iter()
                .filter(|s| s.load(loom::sync::atomic::Ordering::Relaxed) & super::FAILED != 0)
                .count() as u64;
            assert_eq!((counts.calls, counts.failures), (2, failed_slots));
        });
    }

    /// A record that finds its own outcome in the slot skips the compare-and-swap; racing a
    /// record that changes the same slot, the aggregate still ends equal to the slot.
    #[test]
    fn a_record_that_changes_nothing_keeps_the_aggregate_exact() {
        loom::model(|| {
            let window = Arc::new(CountWindow::new(1));
            window.record(1, false, false, |g| g == 1, |_| None);
            let w = window.clone();
            let failure = thread::spawn(move || {
                w.record(1, true, false, |g| g == 1, |_| None);
            });
            window.record(1, false, false, |g| g == 1, |_| None);
            failure.join().unwrap();
            let counts = window.counts(1);
            let failed = window.slots()[0].load(Ordering::Relaxed) & super::FAILED != 0;
            assert_eq!((counts.calls, counts.failures), (1, u64::from(failed)));
        });
    }

    /// A record of generation 1 racing the breaker's move to generation 2 (and a record of
    /// 2): the old one is either counted before the move or refused, never mixed into 2.
    #[test]
    fn a_late_record_never_lands_in_the_new_generation() {
        loom::model(|| {
            let window = Arc::new(CountWindow::new(4));
            let current = Arc::new(AtomicU32::new(1));
            let (w, c) = (window.clone(), current.clone());
            let late = thread::spawn(move || {
                w.record(1, true, false, |g| g == c.load(Ordering::Acquire), |_| None);
            });
            current.store(2, Ordering::Release);
            window.record(
                2,
                false,
                false,
                |g| g == current.load(Ordering::Acquire),
                |_| None,
            );
            late.join().unwrap();
            let counts = window.counts(2);
            assert_eq!((counts.calls, counts.failures), (1, 0));
        });
    }
}
