//! What a permit carries inside: the generation it was issued in, what kind of call it
//! admits, and the call's deadline, packed in one non-zero word.

use core::fmt;
use core::num::NonZeroU64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// Closed or metrics-only: counted in the window.
    Closed = 1,
    /// Half-open probe: holds one probe slot until recorded or dropped.
    Probe,
    /// Disabled: nothing is recorded.
    Passthrough,
}

/// `[epoch:32 | deadline:24 | kind:8]`, kind >= 1, so the word is never zero: a permit is
/// written with a single store and `Option<Ticket>` needs no extra tag.
///
/// The deadline is the time from the call's start after which it counts as timed out, in a
/// small floating-point form ([`encode_deadline`]): 0 for none.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(NonZeroU64);

const MANTISSA_BITS: u32 = 19;
const MAX_EXPONENT: u32 = 31;
const DEADLINE_MASK: u64 = (1 << 24) - 1;

/// Encodes a deadline of `nanos` after the call's start in 24 bits: a 5-bit exponent and a
/// 19-bit mantissa, `mantissa << exponent` nanoseconds, rounded *down* (a deadline is never
/// moved later: a call abandoned at its deadline counts as timed out), within 2^-18 of the
/// value, saturating at about 13 days (2^50 ns). Never 0 (0 means "no deadline"): a
/// deadline of 0 is kept as 1 ns.
#[inline]
pub(crate) const fn encode_deadline(nanos: u64) -> u32 {
    let nanos = if nanos == 0 { 1 } else { nanos };
    let bits = 64 - nanos.leading_zeros();
    let exponent = bits.saturating_sub(MANTISSA_BITS);
    if exponent > MAX_EXPONENT {
        return (MAX_EXPONENT << MANTISSA_BITS) | ((1 << MANTISSA_BITS) - 1);
    }
    (exponent << MANTISSA_BITS) | (nanos >> exponent) as u32
}

#[inline]
pub(crate) const fn decode_deadline(code: u32) -> u64 {
    ((code & ((1 << MANTISSA_BITS) - 1)) as u64) << (code >> MANTISSA_BITS)
}

impl Ticket {
    #[inline(always)]
    pub(crate) fn new(epoch: u32, kind: Kind) -> Self {
        // `kind as u64 >= 1`, so the word is never zero (the fallback is never taken).
        let word = (u64::from(epoch) << 32) | kind as u64;
        Ticket(NonZeroU64::new(word).unwrap_or(NonZeroU64::MIN))
    }

    #[inline(always)]
    pub(crate) fn epoch(self) -> u32 {
        (self.0.get() >> 32) as u32
    }

    #[inline(always)]
    pub(crate) fn kind(self) -> Kind {
        match self.0.get() as u8 {
            1 => Kind::Closed,
            2 => Kind::Probe,
            _ => Kind::Passthrough,
        }
    }

    /// The same ticket with a deadline `nanos` after the call's start (rounded down).
    #[inline]
    pub(crate) fn with_deadline(self, nanos: u64) -> Self {
        let word =
            (self.0.get() & !(DEADLINE_MASK << 8)) | (u64::from(encode_deadline(nanos)) << 8);
        Ticket(NonZeroU64::new(word).unwrap_or(self.0))
    }

    /// The same ticket without a deadline.
    #[inline]
    pub(crate) fn without_deadline(self) -> Self {
        let word = self.0.get() & !(DEADLINE_MASK << 8);
        Ticket(NonZeroU64::new(word).unwrap_or(self.0))
    }

    /// The deadline, in nanoseconds after the call's start, if the call has one.
    #[inline]
    pub(crate) fn deadline(self) -> Option<u64> {
        match ((self.0.get() >> 8) & DEADLINE_MASK) as u32 {
            0 => None,
            code => Some(decode_deadline(code)),
        }
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("epoch", &self.epoch())
            .field("kind", &self.kind())
            .field("deadline_nanos", &self.deadline())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_is_kept_within_four_parts_per_million_and_never_later() {
        let mut values = vec![0u64, 1, 2, 3, 1_000, 524_287, 524_288, 524_289, 999_999_999];
        values.extend((0..64).map(|shift| 1u64 << shift));
        values.extend((0..64).map(|shift| (1u64 << shift).wrapping_sub(1)));
        values.extend([
            1_000_000_000,
            1_500_000_000,
            30_000_000_000,
            3_600_000_000_000,
        ]);
        for v in values {
            let back = decode_deadline(encode_deadline(v));
            assert_ne!(encode_deadline(v), 0, "{v}");
            if v == 0 {
                assert_eq!(back, 1);
            } else if v < 1 << 50 {
                assert!(back <= v, "{v} -> {back}");
                assert!((v - back) as f64 <= v as f64 / 262_144.0, "{v} -> {back}");
            } else {
                assert_eq!(back, ((1 << 19) - 1) << 31, "{v} saturates");
            }
        }
    }

    #[test]
    fn the_deadline_leaves_epoch_and_kind_alone() {
        for kind in [Kind::Closed, Kind::Probe, Kind::Passthrough] {
            let t = Ticket::new(u32::MAX - 3, kind);
            assert_eq!(t.deadline(), None);
            let d = t.with_deadline(1_500_000_000);
            assert_eq!((d.epoch(), d.kind()), (u32::MAX - 3, kind));
            assert_eq!(
                d.deadline(),
                Some(decode_deadline(encode_deadline(1_500_000_000)))
            );
            let again = d.with_deadline(5);
            assert_eq!(again.deadline(), Some(5));
            assert_eq!((again.epoch(), again.kind()), (u32::MAX - 3, kind));
        }
    }
}
