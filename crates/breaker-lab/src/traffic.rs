//! Traffic to replay: generated patterns, or a recorded trace (CSV).

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use breaker_core::Outcome;

/// One call: when it starts, how long it takes, how it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    /// Start, from the beginning of the traffic.
    pub at: Duration,
    /// How long the dependency takes to answer.
    pub latency: Duration,
    /// How the call ends.
    pub outcome: Outcome,
    /// How long the dependency asked its callers to wait, when it failed saying so (an HTTP
    /// `Retry-After`, a gRPC pushback).
    pub retry_after: Option<Duration>,
}

/// Calls in start order, and the periods in which the dependency was unhealthy (known for
/// generated patterns; not for traces).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Traffic {
    /// The calls, sorted by start.
    pub calls: Vec<Call>,
    /// When the dependency was failing or slow (empty when unknown).
    pub faults: Vec<Range<Duration>>,
    /// Whether `faults` is known (generated traffic): then the dependency was healthy outside
    /// them. For a trace it is not, and each call's own outcome says whether the dependency
    /// was failing when it was made.
    pub faults_known: bool,
}

impl Traffic {
    /// Whether the dependency was failing when `call` was made: inside a known fault, or
    /// (faults unknown) a call that failed.
    pub fn failing(&self, call: &Call) -> bool {
        if self.faults_known {
            self.faults.iter().any(|f| f.contains(&call.at))
        } else {
            call.outcome == Outcome::Failure
        }
    }

    /// Whether the dependency was healthy when `call` was made: outside the known faults, or
    /// (faults unknown) a call that succeeded (an ignored call says nothing either way).
    pub fn healthy(&self, call: &Call) -> bool {
        if self.faults_known {
            !self.failing(call)
        } else {
            call.outcome == Outcome::Success
        }
    }
}

/// A generated traffic pattern: calls at a steady rate to a dependency that is healthy
/// (answers in 20 ms) except as the pattern says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pattern {
    /// A steady share of failures throughout (noise a breaker should not trip on).
    Steady {
        /// Share of calls that fail, 0..=1.
        error_rate: f64,
    },
    /// A burst of failures.
    Burst {
        /// When it starts.
        start: Duration,
        /// How long it lasts.
        length: Duration,
        /// Share of calls that fail during the burst.
        error_rate: f64,
    },
    /// Latency grows from 20 ms to 2 s over `ramp`, from `start` on; calls still succeed.
    Degradation {
        /// When it starts.
        start: Duration,
        /// How long the latency takes to reach 2 s.
        ramp: Duration,
    },
    /// The dependency goes down for `down` out of every `period`, from the start.
    Flapping {
        /// Length of one up-and-down cycle.
        period: Duration,
        /// How long it is down in each cycle.
        down: Duration,
    },
    /// The dependency sheds load from `start` until `end`: every call fails, with a
    /// `Retry-After` of the seconds left until `end` (rounded up, as an HTTP server writes
    /// it), as a rate limit or a maintenance window announces its end.
    Overload {
        /// When it starts shedding.
        start: Duration,
        /// When it is back.
        end: Duration,
    },
    /// Every call fails from `start` until `end`.
    Outage {
        /// When it goes down.
        start: Duration,
        /// When it is back.
        end: Duration,
    },
}

const HEALTHY_LATENCY: Duration = Duration::from_millis(20);

/// A small deterministic random source (xorshift64*), so a seed gives the same traffic on
/// every machine.
struct Random(u64);

impl Random {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Pattern {
    /// `rate` calls a second for `duration`, outcomes drawn from `seed`.
    pub fn generate(&self, rate: u32, duration: Duration, seed: u64) -> Traffic {
        let mut random = Random(seed.max(1));
        let step = Duration::from_secs(1) / rate.max(1);
        let mut traffic = Traffic {
            calls: Vec::new(),
            faults: self.faults(duration),
            faults_known: true,
        };
        let mut at = Duration::ZERO;
        while at < duration {
            let draw = random.unit();
            let (latency, outcome) = self.answer(at, draw);
            let retry_after = match *self {
                Pattern::Overload { start, end } if at >= start && at < end => {
                    Some(Duration::from_secs((end - at).as_secs_f64().ceil() as u64))
                }
                _ => None,
            };
            traffic.calls.push(Call {
                at,
                latency,
                outcome,
                retry_after,
            });
            at += step;
        }
        traffic
    }

    fn answer(&self, at: Duration, draw: f64) -> (Duration, Outcome) {
        let fails = |p: f64| {
            if draw < p {
                Outcome::Failure
            } else {
                Outcome::Success
            }
        };
        match *self {
            Pattern::Steady { error_rate } => (HEALTHY_LATENCY, fails(error_rate)),
            Pattern::Burst {
                start,
                length,
                error_rate,
            } => {
                let inside = at >= start && at < start + length;
                (
                    HEALTHY_LATENCY,
                    fails(if inside { error_rate } else { 0.0 }),
                )
            }
            Pattern::Degradation { start, ramp } => {
                let progress = if at < start {
                    0.0
                } else {
                    ((at - start).as_secs_f64() / ramp.as_secs_f64().max(1e-9)).min(1.0)
                };
                let latency = HEALTHY_LATENCY.as_secs_f64() + progress * (2.0 - 0.02);
                (Duration::from_secs_f64(latency), Outcome::Success)
            }
            Pattern::Flapping { period, down } => {
                let phase = at.as_nanos() % period.as_nanos().max(1);
                (
                    HEALTHY_LATENCY,
                    fails(if phase < down.as_nanos() { 1.0 } else { 0.0 }),
                )
            }
            Pattern::Outage { start, end } | Pattern::Overload { start, end } => {
                let inside = at >= start && at < end;
                (HEALTHY_LATENCY, fails(if inside { 1.0 } else { 0.0 }))
            }
        }
    }

    fn faults(&self, duration: Duration) -> Vec<Range<Duration>> {
        match *self {
            Pattern::Steady { .. } => Vec::new(),
            Pattern::Burst { start, length, .. } => vec![start..start + length],
            Pattern::Degradation { start, .. } => vec![start..duration],
            Pattern::Outage { start, end } | Pattern::Overload { start, end } => vec![start..end],
            Pattern::Flapping { period, down } => {
                let mut faults = Vec::new();
                let mut at = Duration::ZERO;
                while at < duration && !period.is_zero() {
                    faults.push(at..(at + down).min(duration));
                    at += period;
                }
                faults
            }
        }
    }
}

/// The longest time a trace may span, and the longest latency or wait it may hold, in
/// milliseconds: 7 days (the lab keeps a few numbers per second of traffic).
pub const MAX_TRACE_MS: f64 = 7.0 * 24.0 * 3600.0 * 1000.0;

/// A line of a trace that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong, and what is expected.
    pub reason: String,
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "trace line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for CsvError {}

/// Reads a trace: a header line `timestamp_ms,latency_ms,outcome`, then one call per line,
/// in start order. `timestamp_ms` is the start in milliseconds from the beginning (a
/// decimal number, not decreasing), `latency_ms` how long the call took, `outcome` one of
/// `success`, `failure`, `ignored`. With the header
/// `timestamp_ms,latency_ms,outcome,retry_after_ms`, a fourth field (empty for none) is the
/// wait the dependency asked for with a failure (`Retry-After`, a gRPC pushback). Blank
/// lines and lines starting with `#` are skipped.
///
/// ```
/// use breaker_lab::traffic::parse_csv;
///
/// let trace = "timestamp_ms,latency_ms,outcome\n0,12,success\n10,800,failure\n";
/// let traffic = parse_csv(trace)?;
/// assert_eq!(traffic.calls.len(), 2);
/// let bad = parse_csv("timestamp_ms,latency_ms,outcome\n0,12,maybe\n").unwrap_err();
/// assert_eq!(bad.to_string(), "trace line 2: outcome \"maybe\": expected success, failure or ignored");
/// # Ok::<(), breaker_lab::traffic::CsvError>(())
/// ```
pub fn parse_csv(text: &str) -> Result<Traffic, CsvError> {
    let mut lines = text.lines().enumerate();
    let header = lines.find(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let with_hints = match header {
        Some((_, h)) if h.trim() == "timestamp_ms,latency_ms,outcome" => false,
        Some((_, h)) if h.trim() == "timestamp_ms,latency_ms,outcome,retry_after_ms" => true,
        Some((n, h)) => {
            return Err(CsvError {
                line: n + 1,
                reason: format!(
                    "header {h:?}: expected timestamp_ms,latency_ms,outcome (and optionally \
                     ,retry_after_ms)"
                ),
            });
        }
        None => {
            return Err(CsvError {
                line: 1,
                reason: "empty trace: expected the header timestamp_ms,latency_ms,outcome".into(),
            });
        }
    };
    let mut traffic = Traffic::default();
    let expected_fields = if with_hints { 4 } else { 3 };
    for (n, line) in lines {
        let line_no = n + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: String| CsvError {
            line: line_no,
            reason,
        };
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != expected_fields {
            return Err(bad(format!(
                "{} fields: expected {expected_fields}",
                fields.len()
            )));
        }
        let (at, latency, outcome) = (fields[0], fields[1], fields[2]);
        let millis = |name: &str, text: &str| -> Result<Duration, CsvError> {
            text.parse::<f64>()
                .ok()
                .filter(|v| (0.0..=MAX_TRACE_MS).contains(v))
                .map(|v| Duration::from_secs_f64(v / 1000.0))
                .ok_or_else(|| {
                    bad(format!(
                        "{name} {text:?}: expected milliseconds from 0 to {MAX_TRACE_MS} (7 days)"
                    ))
                })
        };
        let at = millis("timestamp_ms", at)?;
        let latency = millis("latency_ms", latency)?;
        let outcome = match outcome {
            "success" => Outcome::Success,
            "failure" => Outcome::Failure,
            "ignored" => Outcome::Ignored,
            other => {
                return Err(bad(format!(
                    "outcome {other:?}: expected success, failure or ignored"
                )));
            }
        };
        if traffic.calls.last().is_some_and(|c| c.at > at) {
            return Err(bad(format!(
                "timestamp_ms {} is before the previous line's: calls must be in start order",
                at.as_secs_f64() * 1000.0
            )));
        }
        let retry_after = match fields.get(3) {
            Some(text) if !text.is_empty() => Some(millis("retry_after_ms", text)?),
            _ => None,
        };
        traffic.calls.push(Call {
            at,
            latency,
            outcome,
            retry_after,
        });
    }
    Ok(traffic)
}
