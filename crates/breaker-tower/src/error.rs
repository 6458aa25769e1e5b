//! The service's error.
//!
//! A [`Breaker`](crate::Breaker) service fails with [`Error`]: the breaker refused the
//! request ([`Error::Rejected`]: the inner service never saw it), or the inner service's
//! error, converted into tower's [`BoxError`] ([`Error::Inner`]) as tower's own middleware
//! does. `Error` is a `std::error::Error + Send + Sync`, so it goes into a `BoxError` in turn
//! and composes with `Buffer`, `Timeout`, `BoxService` and the rest of a `ServiceBuilder`
//! stack. A rejection allocates nothing.
//!
//! Behind such wrappers, [`rejection`] finds the [`Rejected`] in any error chain:
//!
//! ```
//! use breaker_tower::error::{BoxError, rejection};
//!
//! fn status_of(err: &BoxError) -> u16 {
//!     match rejection(err.as_ref()) {
//!         Some(_rejected) => 503, // the breaker is open: shed, say when to retry
//!         None => 502,            // the upstream itself failed
//!     }
//! }
//! # assert_eq!(status_of(&"boom".into()), 502);
//! ```

use std::fmt;

pub use breaker_core::Rejected;

/// A type-erased error, as tower's middleware uses (`tower::BoxError`).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error of a [`Breaker`](crate::Breaker) service.
#[derive(Debug)]
pub enum Error {
    /// The breaker refused the request; the inner service never saw it. Its
    /// [`retry_after`](Rejected::retry_after) says when to try again.
    Rejected(Rejected),
    /// The inner service's error (displayed as itself; its sources follow).
    Inner(BoxError),
}

impl Error {
    /// The rejection, if the breaker refused the request.
    pub fn rejected(&self) -> Option<&Rejected> {
        match self {
            Error::Rejected(r) => Some(r),
            Error::Inner(_) => None,
        }
    }

    /// The inner service's error, if it failed.
    pub fn into_inner(self) -> Option<BoxError> {
        match self {
            Error::Inner(e) => Some(e),
            Error::Rejected(_) => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Rejected(r) => fmt::Display::fmt(r, f),
            Error::Inner(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Rejected(_) => None,
            Error::Inner(e) => e.source(),
        }
    }
}

/// The breaker's [`Rejected`] in `error` or anywhere in its chain of sources (wrappers like
/// `Buffer`'s keep the original error as their source), if a breaker refused the request.
pub fn rejection<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Rejected> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(rejected) = e.downcast_ref::<Rejected>() {
            return Some(rejected);
        }
        if let Some(Error::Rejected(rejected)) = e.downcast_ref::<Error>() {
            return Some(rejected);
        }
        current = e.source();
    }
    None
}
