//! One admitted call: its permit (which times it and knows its deadline) and its classifier;
//! reading `grpc-status`, `grpc-timeout` and the HTTP status of an answer without one.

use std::time::Duration;

use breaker_core::{BreakerRef, Outcome, Permit};
use http::{HeaderMap, StatusCode};
use tonic::Code;

use crate::classify::GrpcClassifier;

pub(crate) struct Call<R: BreakerRef> {
    permit: Permit<R>,
    classify: GrpcClassifier,
}

/// The message tonic gives the `CANCELLED` status it answers with when one of its own
/// timeouts fires (`Server::builder().timeout`, a `grpc-timeout` on the server,
/// `Endpoint::timeout` on a client whose caller forwards the status).
const TONIC_TIMEOUT_MESSAGE: &[u8] = b"Timeout expired";

impl<R: BreakerRef> Call<R> {
    /// The call of `permit`, whose deadline is the request's `grpc-timeout` or `timeout`,
    /// whichever is shorter.
    pub(crate) fn new(
        mut permit: Permit<R>,
        classify: GrpcClassifier,
        request: &HeaderMap,
        timeout: Option<Duration>,
    ) -> Self {
        let deadline = match (grpc_timeout(request), timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(deadline) = deadline {
            permit.set_deadline(deadline);
        }
        Call { permit, classify }
    }

    pub(crate) fn record(self, outcome: Outcome) {
        self.permit.record(outcome);
    }

    /// Records the call by the `grpc-status` in `headers` (response headers of a
    /// trailers-only answer, or trailers); a missing or unreadable status is a failure.
    ///
    /// A `CANCELLED` that is a timeout (tonic's own "Timeout expired", or any at or past
    /// the call's deadline) is classified as `DEADLINE_EXCEEDED`: the dependency did not
    /// answer in time. A cancellation before the deadline is the caller's.
    pub(crate) fn record_status(self, headers: &HeaderMap) {
        let outcome = match status_code(headers) {
            Some(Code::Cancelled) if self.timed_out(headers) => {
                self.classify.classify_code(Code::DeadlineExceeded)
            }
            Some(code) => self.classify.classify_code(code),
            None => Outcome::Failure,
        };
        self.record(outcome)
    }

    /// Records an answer that is not gRPC at all: a non-200 HTTP status without a
    /// `grpc-status` (a proxy's or load balancer's error page). Its body will never carry a
    /// status, so the call is over: classified by gRPC's HTTP-to-status mapping.
    pub(crate) fn record_http_status(self, status: StatusCode) {
        let outcome = self.classify.classify_code(code_of_http_status(status));
        self.record(outcome)
    }

    fn timed_out(&self, headers: &HeaderMap) -> bool {
        let tonic_timeout = headers
            .get("grpc-message")
            .is_some_and(|m| percent_decoded_eq(m.as_bytes(), TONIC_TIMEOUT_MESSAGE));
        tonic_timeout
            || self
                .permit
                .deadline()
                .is_some_and(|d| self.permit.elapsed() >= d)
    }
}

/// Whether `encoded` (a `grpc-message`, percent-encoded) decodes to `text`, without
/// allocating.
fn percent_decoded_eq(encoded: &[u8], text: &[u8]) -> bool {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let (mut i, mut j) = (0, 0);
    while i < encoded.len() {
        let byte = match encoded[i] {
            b'%' if i + 2 < encoded.len() => match (hex(encoded[i + 1]), hex(encoded[i + 2])) {
                (Some(h), Some(l)) => {
                    i += 2;
                    h << 4 | l
                }
                _ => b'%',
            },
            b => b,
        };
        if text.get(j) != Some(&byte) {
            return false;
        }
        i += 1;
        j += 1;
    }
    j == text.len()
}

static GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// The `grpc-status` in `headers`, if there is one (a decimal code).
#[inline]
pub(crate) fn status_code(headers: &HeaderMap) -> Option<Code> {
    let bytes = headers.get(&GRPC_STATUS)?.as_bytes();
    if bytes.is_empty() || bytes.len() > 2 {
        return None;
    }
    let mut code = 0i32;
    for b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        code = code * 10 + i32::from(b - b'0');
    }
    Some(Code::from_i32(code))
}

/// gRPC's mapping of an HTTP status to a status code, for answers that carry no
/// `grpc-status` (<https://github.com/grpc/grpc/blob/master/doc/http-grpc-status-mapping.md>).
pub(crate) fn code_of_http_status(status: StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// The request's `grpc-timeout` (`1..=8` digits and a unit: `H`, `M`, `S`, `m`, `u`, `n`);
/// `None` when absent or malformed (a malformed one is not a deadline to hold a call to).
pub(crate) fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.as_bytes();
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_status_code() {
        let mut h = http::HeaderMap::new();
        assert_eq!(status_code(&h), None);
        for (text, code) in [
            ("0", Code::Ok),
            ("14", Code::Unavailable),
            ("4", Code::DeadlineExceeded),
        ] {
            h.insert("grpc-status", http::HeaderValue::from_static(text));
            assert_eq!(status_code(&h), Some(code), "{text}");
        }
        for bad in ["", "x", "140", "-1"] {
            h.insert("grpc-status", http::HeaderValue::from_static(bad));
            assert_eq!(status_code(&h), None, "{bad:?}");
        }
    }

    #[test]
    fn reads_grpc_timeouts_and_refuses_malformed_ones() {
        let mut h = http::HeaderMap::new();
        assert_eq!(grpc_timeout(&h), None);
        for (text, d) in [
            ("1H", Duration::from_secs(3600)),
            ("2M", Duration::from_secs(120)),
            ("3S", Duration::from_secs(3)),
            ("250m", Duration::from_millis(250)),
            ("99999999u", Duration::from_micros(99_999_999)),
            ("7n", Duration::from_nanos(7)),
        ] {
            h.insert("grpc-timeout", http::HeaderValue::from_static(text));
            assert_eq!(grpc_timeout(&h), Some(d), "{text}");
        }
        for bad in [
            "",
            "S",
            "1",
            "123456789S",
            "1s",
            "-1S",
            "1.5S",
            "1 S",
            "１S",
        ] {
            h.insert(
                "grpc-timeout",
                http::HeaderValue::from_bytes(bad.as_bytes()).unwrap(),
            );
            assert_eq!(grpc_timeout(&h), None, "{bad:?}");
        }
    }

    #[test]
    fn recognises_tonics_timeout_message_however_it_is_encoded() {
        for yes in [
            "Timeout expired",
            "Timeout%20expired",
            "Timeout%20expire%64",
        ] {
            assert!(
                percent_decoded_eq(yes.as_bytes(), TONIC_TIMEOUT_MESSAGE),
                "{yes}"
            );
        }
        for no in [
            "",
            "Timeout",
            "Timeout%20expired!",
            "timeout expired",
            "Timeout%2",
            "%",
        ] {
            assert!(
                !percent_decoded_eq(no.as_bytes(), TONIC_TIMEOUT_MESSAGE),
                "{no}"
            );
        }
    }

    #[test]
    fn maps_http_statuses_as_grpc_does() {
        for (status, code) in [
            (400, Code::Internal),
            (401, Code::Unauthenticated),
            (403, Code::PermissionDenied),
            (404, Code::Unimplemented),
            (429, Code::Unavailable),
            (502, Code::Unavailable),
            (503, Code::Unavailable),
            (504, Code::Unavailable),
            (500, Code::Unknown),
            (301, Code::Unknown),
        ] {
            assert_eq!(
                code_of_http_status(StatusCode::from_u16(status).unwrap()),
                code,
                "{status}"
            );
        }
    }
}
