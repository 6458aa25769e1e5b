//! Why sharing could not start, and why a sync failed.

use std::fmt;
use std::time::Duration;

/// Why sharing could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SharingError {
    /// The breaker has no name; replicas share state by name.
    Unnamed,
    /// A setting is out of its allowed range.
    OutOfRange {
        /// The setting ([`RedisSharing`](crate::RedisSharing) method).
        field: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// The Redis URL is not valid.
    Url(String),
    /// [`RedisSharing::start`](crate::RedisSharing::start) ran outside a Tokio runtime.
    NoRuntime,
}

impl fmt::Display for SharingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SharingError::Unnamed => f.write_str(
                "the breaker has no name: replicas share state by name, so give the \
                 configuration one with Builder::name",
            ),
            SharingError::OutOfRange {
                field,
                value,
                allowed,
            } => write!(f, "RedisSharing::{field} is {value}; allowed: {allowed}"),
            SharingError::Url(why) => write!(
                f,
                "invalid Redis URL ({why}); expected redis://[user:password@]host:port[/db]"
            ),
            SharingError::NoRuntime => f.write_str(
                "RedisSharing::start needs a Tokio runtime for its sync task: call it from \
                 inside one (#[tokio::main], Runtime::enter)",
            ),
        }
    }
}

impl std::error::Error for SharingError {}

/// Why a sync failed. The replica keeps running on its local state; the next sync retries.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncError {
    /// Redis could not be reached or answered with an error.
    Unreachable(String),
    /// Redis did not answer within the command timeout.
    Timeout(Duration),
    /// A key holds data this crate did not write: it is ignored, not trusted.
    BadData(String),
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Unreachable(why) => write!(
                f,
                "Redis is unreachable ({why}); running on local state until it answers again"
            ),
            SyncError::Timeout(limit) => write!(
                f,
                "Redis did not answer within {limit:?}; running on local state (raise \
                 RedisSharing::command_timeout if Redis is known to be this slow)"
            ),
            SyncError::BadData(what) => write!(
                f,
                "{what}; ignoring it and running on local state: delete the key (or choose \
                 another RedisSharing::key_prefix) to share state again"
            ),
        }
    }
}

impl std::error::Error for SyncError {}
