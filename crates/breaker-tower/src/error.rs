//! The service's error.

use std::fmt;

use breaker_core::Rejected;

/// The error of a [`Breaker`](crate::Breaker) service: the breaker refused the request (the
/// inner service was not called), or the inner service failed.
///
/// It implements [`std::error::Error`] whenever the inner error does, so it converts into
/// tower's `BoxError` at a service boundary.
#[derive(Debug, PartialEq, Eq)]
pub enum Error<E> {
    /// The breaker refused the request; the inner service never saw it.
    Rejected(Rejected),
    /// The inner service's error.
    Inner(E),
}

impl<E> Error<E> {
    /// The rejection, if the breaker refused the request.
    pub fn rejected(&self) -> Option<&Rejected> {
        match self {
            Error::Rejected(r) => Some(r),
            Error::Inner(_) => None,
        }
    }

    /// The inner error, if the inner service failed.
    pub fn into_inner(self) -> Option<E> {
        match self {
            Error::Inner(e) => Some(e),
            Error::Rejected(_) => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Rejected(r) => fmt::Display::fmt(r, f),
            Error::Inner(e) => write!(f, "inner service failed: {e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Rejected(r) => Some(r),
            Error::Inner(e) => Some(e),
        }
    }
}
