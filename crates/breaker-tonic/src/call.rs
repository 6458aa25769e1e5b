//! One admitted call: its permit (which times it and knows its deadline) and its classifier;
//! reading `grpc-status`, `grpc-timeout` and the HTTP status of an answer without one.

use std::time::Duration;

use breaker_core::{BreakerRef, ConfigError, ConfigValue, Outcome, Permit, Pushback};
use http::{HeaderMap, StatusCode};
use tonic::Code;

use crate::classify::GrpcClassifier;

pub(crate) struct Call<R: BreakerRef> {
    /// `None` once recorded.
    permit: Option<Permit<R>>,
    classify: GrpcClassifier,
    /// Whether the response's body has yielded data: the dependency answered, so a caller
    /// that stops reading abandons nothing of the dependency's.
    answered: bool,
}

/// The message tonic gives the `CANCELLED` status it answers with when one of its own
/// timeouts fires (`Server::builder().timeout`, a `grpc-timeout` on the server,
/// `Endpoint::timeout` on a client whose caller forwards the status).
const TONIC_TIMEOUT_MESSAGE: &[u8] = b"Timeout expired";

/// How a call's deadline is taken from its request: a `grpc-timeout` shorter than
/// `min_peer_deadline` is not held against the dependency (a peer cannot trip a server's
/// breaker with absurd deadlines), and one that is counts from a little before it ends
/// (`Permit::set_outer_deadline`: the peer's clock started before the request reached this
/// layer, and a peer that cancels at its deadline must count).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadlines {
    /// The layer's own timeout (what tonic enforces around it), if set.
    pub(crate) timeout: Option<Duration>,
    /// The shortest `grpc-timeout` a call is held to.
    pub(crate) min_peer_deadline: Duration,
}

impl Deadlines {
    /// `min_peer_deadline` unless set: 100 ms.
    pub(crate) const DEFAULT_MIN_PEER_DEADLINE: Duration = Duration::from_millis(100);

    pub(crate) const fn new() -> Self {
        Deadlines {
            timeout: None,
            min_peer_deadline: Self::DEFAULT_MIN_PEER_DEADLINE,
        }
    }

    /// With the layer's own timeout `timeout` (more than zero).
    pub(crate) fn with_timeout(self, timeout: Duration) -> Result<Self, ConfigError> {
        if timeout.is_zero() {
            return Err(ConfigError::new(
                "timeout",
                ConfigValue::Duration(timeout),
                "a duration > 0",
            ));
        }
        Ok(Deadlines {
            timeout: Some(timeout),
            ..self
        })
    }

    /// Holding calls only to a `grpc-timeout` of at least `min`.
    pub(crate) fn with_min_peer_deadline(self, min: Duration) -> Self {
        Deadlines {
            min_peer_deadline: min,
            ..self
        }
    }

    /// Sets the deadline of a call whose request has these headers: the peer's (its
    /// timer started before this layer saw the request), unless the layer's own timeout is
    /// shorter.
    fn apply<R: BreakerRef>(&self, permit: &mut Permit<R>, request: &HeaderMap) {
        let peer = grpc_timeout(request).filter(|d| *d >= self.min_peer_deadline);
        match (peer, self.timeout) {
            (Some(peer), Some(own)) if own < peer => permit.set_deadline(own),
            (Some(peer), _) => permit.set_outer_deadline(peer),
            (None, Some(own)) => permit.set_deadline(own),
            (None, None) => {}
        }
    }
}

impl<R: BreakerRef> Call<R> {
    /// The call of `permit`, with its deadline taken from the request's `grpc-timeout` and
    /// the layer's timeout (see [`Deadlines`]).
    pub(crate) fn new(
        mut permit: Permit<R>,
        classify: GrpcClassifier,
        request: &HeaderMap,
        deadlines: &Deadlines,
    ) -> Self {
        deadlines.apply(&mut permit, request);
        Call {
            permit: Some(permit),
            classify,
            answered: false,
        }
    }

    pub(crate) fn record(self, outcome: Outcome) {
        self.record_with_pushback(outcome, None)
    }

    fn record_with_pushback(mut self, outcome: Outcome, pushback: Option<Pushback>) {
        if let Some(permit) = self.permit.take() {
            permit.record_with_pushback(outcome, pushback);
        }
    }

    /// The response's headers arrived: the deadline (tonic's timeouts cover the response
    /// future, not a streamed body) is over.
    pub(crate) fn headers_arrived(&mut self) {
        if let Some(permit) = &mut self.permit {
            permit.clear_deadline();
        }
    }

    /// The body yielded data.
    pub(crate) fn answered(&mut self) {
        self.answered = true;
    }

    /// Records the call by the `grpc-status` in `headers` (response headers of a
    /// trailers-only answer, or trailers); a missing status is a failure, an unreadable one
    /// is `UNKNOWN` (as tonic reads it).
    ///
    /// A `CANCELLED` that is a timeout (tonic's own "Timeout expired", or any at or past
    /// the call's deadline) is classified as `DEADLINE_EXCEEDED`: the dependency did not
    /// answer in time. A cancellation before the deadline is the caller's.
    /// A failing status's `grpc-retry-pushback-ms` (the server telling its callers when to
    /// come back) is its [`Pushback`]: when that failure opens the breaker, it stays open at
    /// least that long; a negative one (gRPC's "do not retry") as long as it may.
    pub(crate) fn record_status(self, headers: &HeaderMap) {
        let outcome = match status_code(headers) {
            Some(Code::Cancelled) if self.timed_out(headers) => {
                self.classify.classify_code(Code::DeadlineExceeded)
            }
            Some(code) => self.classify.classify_code(code),
            None => Outcome::Failure,
        };
        let pushback = match outcome {
            Outcome::Failure => pushback_of(headers),
            _ => None,
        };
        self.record_with_pushback(outcome, pushback)
    }

    /// Records an answer that is not gRPC at all: a non-200 HTTP status without a
    /// `grpc-status` (a proxy's or load balancer's error page), or a 200 whose content is not
    /// gRPC (a maintenance page). Its body will never carry a status, so the call is over:
    /// classified by gRPC's HTTP-to-status mapping (`UNKNOWN` for a 200). A failing page's
    /// `Retry-After` (a proxy shedding load, a maintenance window) is its pushback.
    pub(crate) fn record_http_answer(self, status: StatusCode, headers: &HeaderMap) {
        let outcome = self.classify.classify_code(code_of_http_status(status));
        let pushback = match outcome {
            Outcome::Failure => breaker_tower::retry_after(headers).map(Pushback::After),
            _ => None,
        };
        self.record_with_pushback(outcome, pushback)
    }

    fn timed_out(&self, headers: &HeaderMap) -> bool {
        let tonic_timeout = headers
            .get("grpc-message")
            .is_some_and(|m| percent_decoded_eq(m.as_bytes(), TONIC_TIMEOUT_MESSAGE));
        tonic_timeout
            || self
                .permit
                .as_ref()
                .is_some_and(|p| p.deadline().is_some_and(|d| p.elapsed() >= d))
    }
}

impl<R: BreakerRef> Drop for Call<R> {
    /// Never recorded: abandoned. Once the body had yielded data the dependency had
    /// answered (a caller that stops reading a stream is its own business): neutral. Before
    /// that, the permit decides (neutral while young; a failure past the deadline or the
    /// slow-call duration).
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take()
            && self.answered
        {
            permit.cancel();
        }
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

/// The `grpc-status` in `headers`, if there is one, read as tonic reads it (an unreadable
/// one is `UNKNOWN`).
#[inline]
pub(crate) fn status_code(headers: &HeaderMap) -> Option<Code> {
    headers
        .get(&GRPC_STATUS)
        .map(|value| Code::from_bytes(value.as_bytes()))
}

/// The `grpc-retry-pushback-ms` in `headers`, if there is one (see
/// [`parse_pushback`](crate::status::parse_pushback)).
pub(crate) fn pushback_of(headers: &HeaderMap) -> Option<Pushback> {
    headers
        .get(crate::status::RETRY_PUSHBACK)
        .map(|value| crate::status::parse_pushback(value.as_bytes()))
}

/// Whether `headers` say the content is gRPC (`application/grpc`, `application/grpc+proto`,
/// ...).
pub(crate) fn is_grpc_content(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
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
        // As tonic reads them: unreadable is UNKNOWN (a failure), never "no status yet".
        for bad in ["", "x", "140", "-1", "00", "01"] {
            h.insert("grpc-status", http::HeaderValue::from_static(bad));
            assert_eq!(status_code(&h), Some(Code::Unknown), "{bad:?}");
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
    fn reads_pushbacks_and_refuses_the_rest() {
        let mut h = http::HeaderMap::new();
        assert_eq!(pushback_of(&h), None);
        for (text, pushback) in [
            ("1500", Some(Pushback::After(Duration::from_millis(1500)))),
            ("0", Some(Pushback::After(Duration::ZERO))),
            (" 250 ", Some(Pushback::After(Duration::from_millis(250)))),
            // gRFC A6: negative or unparseable, "do not retry".
            ("-1", Some(Pushback::DoNotRetry)),
            ("abc", Some(Pushback::DoNotRetry)),
            ("1.5", Some(Pushback::DoNotRetry)),
            ("+5", Some(Pushback::DoNotRetry)),
            ("", Some(Pushback::DoNotRetry)),
            // Longer than any open period a breaker allows: the longest it allows.
            ("99999999999999999999", Some(Pushback::DoNotRetry)),
        ] {
            h.insert(
                "grpc-retry-pushback-ms",
                http::HeaderValue::from_static(text),
            );
            assert_eq!(pushback_of(&h), pushback, "{text}");
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
