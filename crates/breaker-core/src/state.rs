//! The breaker's states.

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

    pub(crate) const fn from_bits(bits: u64) -> State {
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
