//! The breaker's states, and the one 64-bit word that holds the live state.

use core::fmt;

/// A breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum State {
    /// Calls flow; outcomes are counted and may trip the breaker.
    Closed = 0,
    /// Calls are rejected at once until the open period ends.
    Open = 1,
    /// A few probe calls are admitted to test whether the dependency recovered.
    HalfOpen = 2,
    /// Operator isolation: every call is rejected until [`reset`](crate::CircuitBreaker::reset).
    ForcedOpen = 3,
    /// Operator bypass: every call is admitted and nothing is recorded.
    Disabled = 4,
    /// Calls flow and are counted, thresholds are reported, but the breaker never trips.
    MetricsOnly = 5,
}

impl State {
    /// Lower-case, snake-case name (`"half_open"`), as used in metrics labels and health
    /// endpoints.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::ForcedOpen => "forced_open",
            State::Disabled => "disabled",
            State::MetricsOnly => "metrics_only",
        }
    }

    /// Whether calls are admitted in this state without limit.
    pub const fn admits_calls(self) -> bool {
        matches!(self, State::Closed | State::Disabled | State::MetricsOnly)
    }

    const fn from_bits(bits: u64) -> State {
        match bits {
            1 => State::Open,
            2 => State::HalfOpen,
            3 => State::ForcedOpen,
            4 => State::Disabled,
            5 => State::MetricsOnly,
            _ => State::Closed,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
pub(crate) struct Word(pub(crate) u64);

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
