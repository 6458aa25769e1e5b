//! The `UNAVAILABLE` answer to a refused call, and how to read it.

use std::time::Duration;

use breaker_core::{Pushback, Rejected};
use tonic::Status;
use tonic::metadata::MetadataValue;

/// The metadata key of the time until a retry is allowed, in milliseconds (gRPC's retry
/// pushback convention).
pub const RETRY_PUSHBACK: &str = "grpc-retry-pushback-ms";

/// The status a refused call answers with: `UNAVAILABLE`, a message saying the breaker is
/// open (and when to retry), and [`RETRY_PUSHBACK`] metadata when the time is known.
pub fn rejection_status(rejected: &Rejected) -> Status {
    let mut status = Status::unavailable(format!(
        "circuit breaker {}: the call was not sent; retry {}",
        rejected.state(),
        rejected.retry_hint()
    ));
    if let Some(after) = rejected.retry_after() {
        let millis = after.as_millis().max(1).min(u128::from(u64::MAX)) as u64;
        status
            .metadata_mut()
            .insert(RETRY_PUSHBACK, MetadataValue::from(millis));
    }
    status
}

/// How long to wait before retrying, if `status` is a breaker's refusal that knows it
/// (read from [`RETRY_PUSHBACK`]; `None` too for a value that says "do not retry": negative
/// or unparseable, as gRFC A6 reads them).
///
/// ```
/// use breaker_tonic::retry_pushback;
/// use std::time::Duration;
///
/// let mut status = tonic::Status::unavailable("circuit breaker open");
/// status.metadata_mut().insert("grpc-retry-pushback-ms", 1500.into());
/// assert_eq!(retry_pushback(&status), Some(Duration::from_millis(1500)));
/// ```
pub fn retry_pushback(status: &Status) -> Option<Duration> {
    let value = status.metadata().get(RETRY_PUSHBACK)?;
    match parse_pushback(value.as_bytes()) {
        Pushback::After(wait) => Some(wait),
        _ => None,
    }
}

/// A `grpc-retry-pushback-ms` value, as gRFC A6 reads it: a whole number of milliseconds
/// (surrounding blanks allowed); negative or unparseable means "do not retry". A number too
/// large to hold is as good as "do not retry": no breaker stays open that long.
pub(crate) fn parse_pushback(value: &[u8]) -> Pushback {
    let text = value.trim_ascii();
    let millis = (!text.is_empty() && text.iter().all(u8::is_ascii_digit))
        .then(|| core::str::from_utf8(text).ok()?.parse::<u64>().ok())
        .flatten();
    match millis {
        Some(ms) => Pushback::After(Duration::from_millis(ms)),
        None => Pushback::DoNotRetry,
    }
}
