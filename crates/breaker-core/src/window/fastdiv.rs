//! Division by a divisor fixed when a window is built, without a `div` instruction (about
//! 40 cycles for 64 bits on the machines we measure): two 64-bit multiplications instead.
//!
//! D. Lemire, O. Kaser, N. Kurz, "Faster Remainder by Direct Computation: Applications to
//! Compilers and Software Libraries", 2019: with `m = ceil(2^128 / d)`, the quotient of any
//! 64-bit `n` by `d` is the top 64 bits of the 192-bit product `m * n` ([`FastDiv`]); for
//! 32-bit numbers a 64-bit `m` gives the remainder directly ([`fastmod`]).

/// `n % d` for 32-bit `n` and `d >= 1`, with `magic = (u64::MAX / d).wrapping_add(1)`.
#[inline]
pub(crate) fn fastmod(n: u32, magic: u64, d: u32) -> u32 {
    let low = magic.wrapping_mul(u64::from(n));
    ((u128::from(low) * u128::from(d)) >> 64) as u32
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct FastDiv {
    divisor: u64,
    /// `ceil(2^128 / divisor)`; unused (0) for a divisor of 1, which the formula cannot
    /// represent (its magic is 2^128).
    magic: u128,
}

impl FastDiv {
    /// Division by `divisor` (at least 1; 0 is taken as 1).
    pub(crate) fn new(divisor: u64) -> Self {
        let divisor = divisor.max(1);
        FastDiv {
            divisor,
            magic: (u128::MAX / u128::from(divisor)).wrapping_add(1),
        }
    }

    /// `n / divisor`.
    #[inline]
    pub(crate) fn div(self, n: u64) -> u64 {
        if self.divisor == 1 {
            return n;
        }
        // The top 64 bits of magic * n, from its two 64-bit halves.
        let low = ((self.magic as u64 as u128) * u128::from(n)) >> 64;
        let high = (self.magic >> 64) * u128::from(n);
        ((low + high) >> 64) as u64
    }

    /// `n % divisor`.
    #[inline]
    pub(crate) fn rem(self, n: u64) -> u64 {
        n - self.div(n) * self.divisor
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{FastDiv, fastmod};
    use proptest::prelude::*;

    #[test]
    fn fastmod_is_the_remainder() {
        for d in [1u32, 2, 3, 7, 10, 100, 1000, 32_767] {
            let magic = (u64::MAX / u64::from(d)).wrapping_add(1);
            for n in (0..10_000u32).chain([u32::MAX - 5, u32::MAX - 1, u32::MAX]) {
                assert_eq!(fastmod(n, magic, d), n % d, "{n} % {d}");
            }
        }
    }

    const EDGES: [u64; 12] = [
        0,
        1,
        2,
        3,
        999_999_999,
        1_000_000_000,
        1 << 32,
        (1 << 32) + 1,
        (1 << 63) - 1,
        1 << 63,
        u64::MAX - 1,
        u64::MAX,
    ];

    #[test]
    fn quotient_and_remainder_are_exact_at_the_edges() {
        for d in EDGES
            .into_iter()
            .chain([7, 10, 100_000_000, 3_600_000_000_000])
        {
            let f = FastDiv::new(d);
            let d = d.max(1);
            for n in EDGES {
                assert_eq!(f.div(n), n / d, "{n} / {d}");
                assert_eq!(f.rem(n), n % d, "{n} % {d}");
            }
        }
    }

    proptest! {
        #[test]
        fn quotient_and_remainder_are_exact(n: u64, d in 1u64..) {
            let f = FastDiv::new(d);
            prop_assert_eq!(f.div(n), n / d);
            prop_assert_eq!(f.rem(n), n % d);
        }

        #[test]
        fn exact_for_small_divisors(n: u64, d in 1u64..100_000) {
            let f = FastDiv::new(d);
            prop_assert_eq!(f.div(n), n / d);
            prop_assert_eq!(f.rem(n), n % d);
        }
    }
}
