//! The `UNAVAILABLE` answer to a refused call, and how to read it.

use std::time::Duration;

use breaker_core::Rejected;
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
/// (read from [`RETRY_PUSHBACK`]).
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
    let value = status.metadata().get(RETRY_PUSHBACK)?.to_str().ok()?;
    value.parse::<u64>().ok().map(Duration::from_millis)
}
