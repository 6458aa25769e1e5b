//! The error of a guarded call.

use core::fmt;
use std::time::Duration;

use breaker_core::Rejected;

/// Why a guarded call did not produce a value: the breaker refused it (it never ran), it
/// timed out (it was abandoned and counted as a failure), or it ran and failed.
///
/// Displayed as what it wraps (the rejection, or the call's own error, whose causes
/// [`source`](std::error::Error::source) continues with), so an error report lists each
/// cause once.
#[derive(Debug, PartialEq, Eq)]
pub enum Error<E> {
    /// The breaker refused the call; the future was never polled.
    Rejected(Rejected),
    /// The call did not finish within its timeout; it was dropped and counted as a failure.
    Timeout {
        /// The timeout that expired.
        after: Duration,
    },
    /// The call finished with this error.
    Inner(E),
}

impl<E> Error<E> {
    /// The inner error, if the call ran and failed.
    pub fn into_inner(self) -> Option<E> {
        match self {
            Error::Inner(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the breaker refused the call.
    pub fn is_rejected(&self) -> bool {
        matches!(self, Error::Rejected(_))
    }

    /// Whether the call timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// What kind of error this is, without its payload.
    pub fn cause(&self) -> Cause {
        match self {
            Error::Rejected(_) => Cause::Rejected,
            Error::Timeout { .. } => Cause::TimedOut,
            Error::Inner(_) => Cause::Failed,
        }
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Rejected(r) => fmt::Display::fmt(r, f),
            Error::Timeout { after } => write!(
                f,
                "call timed out after {after:?} and was abandoned (counted as a failure); \
                 serve a fallback, retry later, or raise the timeout if the dependency is \
                 legitimately slow"
            ),
            Error::Inner(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Rejected(_) | Error::Timeout { .. } => None,
            Error::Inner(e) => e.source(),
        }
    }
}

/// The kind of an [`Error`], kept with a value served from a fallback.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cause {
    /// The breaker refused the call.
    Rejected,
    /// The call timed out.
    TimedOut,
    /// The call failed.
    Failed,
}
