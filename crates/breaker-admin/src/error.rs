//! What goes wrong: an [`Admin`](crate::Admin) that cannot be built, and a request the
//! admin refuses.

use std::fmt;

use axum::response::{IntoResponse, Response};
use breaker_core::ConfigError;
use http::{HeaderValue, StatusCode};
use serde_json::{Value, json};

/// Why an [`Admin`](crate::Admin) could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// A setting is out of its range.
    Setting(ConfigError),
    /// A token's label is not 1 to 64 characters of `A-Z a-z 0-9 - . _ @`.
    TokenLabel {
        /// The label given.
        label: String,
    },
    /// A token's secret is unfit (the secret itself is never shown).
    TokenSecret {
        /// The token's label.
        label: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// Two tokens have the same secret.
    TokenReused {
        /// The label of the first.
        first: String,
        /// The label of the second.
        second: String,
    },
    /// An origin for CORS is not `scheme://host[:port]`.
    Origin(String),
    /// `build` was called outside a tokio runtime.
    NoRuntime,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Setting(_) => f.write_str("invalid admin setting"),
            BuildError::TokenLabel { label } => write!(
                f,
                "token label {label:?} is not 1 to 64 characters of A-Z a-z 0-9 - . _ @"
            ),
            BuildError::TokenSecret { label, problem } => write!(
                f,
                "the secret of token {label:?} {problem}: use 16 to 512 characters such as \
                 32 random bytes in hex (openssl rand -hex 32)"
            ),
            BuildError::TokenReused { first, second } => write!(
                f,
                "tokens {first:?} and {second:?} have the same secret: give each holder a \
                 secret of its own"
            ),
            BuildError::Origin(origin) => write!(
                f,
                "origin {origin:?} is not scheme://host[:port] (http or https, no path, no \
                 wildcard)"
            ),
            BuildError::NoRuntime => f.write_str(
                "Admin::build must be called inside a tokio runtime: it starts the event hub \
                 there",
            ),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Setting(e) => Some(e),
            _ => None,
        }
    }
}

/// A refused request: its status, its JSON body, and a `WWW-Authenticate` challenge when
/// a token is what is missing.
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    body: Value,
    challenge: Option<HeaderValue>,
}

impl Refusal {
    /// `{"error": message}` with `status`.
    pub(crate) fn new(status: StatusCode, message: &str) -> Self {
        Refusal {
            status,
            body: json!({ "error": message }),
            challenge: None,
        }
    }

    /// A refusal with more in its body than the message.
    pub(crate) fn with_body(status: StatusCode, body: Value) -> Self {
        Refusal {
            status,
            body,
            challenge: None,
        }
    }

    /// Adds a `WWW-Authenticate` challenge.
    pub(crate) fn challenge(mut self, challenge: HeaderValue) -> Self {
        self.challenge = Some(challenge);
        self
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if let Some(challenge) = self.challenge {
            response
                .headers_mut()
                .insert(http::header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// `{"error": message}` with `status`.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    Refusal::new(status, message).into_response()
}
