//! Bearer tokens: who may read and who may steer, checked in constant time.

use std::fmt;

use ctutils::{Choice, CtEq};
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, StatusCode};
use sha2::{Digest, Sha256};

use crate::error::{BuildError, Refusal};

/// Shortest secret accepted: 16 characters (use 32 random bytes, hex or base64).
const MIN_SECRET: usize = 16;
/// Longest secret accepted.
const MAX_SECRET: usize = 512;
/// A presented token longer than this is refused without being hashed.
const MAX_PRESENTED: usize = 4096;
/// The realm named in `WWW-Authenticate`.
const REALM: &str = "breaker-admin";

/// A bearer token that opens the admin routes: an operator token (reads and operator
/// actions) or a read token (reads only), with a label that names its holder in events and
/// logs. Only the secret's SHA-256 digest is kept, and compared in constant time; neither
/// `Debug` nor any error shows the secret.
///
/// The secret must be 16 to 512 characters of the bearer-token alphabet (`A-Z a-z 0-9 - . _
/// ~ + /`, `=` at the end), such as 32 random bytes in hex (`openssl rand -hex 32`); the label
/// 1 to 64 characters of `A-Z a-z 0-9 - . _ @`.
///
/// ```
/// use breaker_admin::Token;
///
/// let ops = Token::new("on-call", "3f1c9a7e0b5d4c2a8e6f1b3d5c7a9e0f")?;
/// assert_eq!(ops.label(), "on-call");
/// assert!(!format!("{ops:?}").contains("3f1c9a7e"));
/// assert!(Token::new("on-call", "hunter2").is_err()); // too short
/// # Ok::<(), breaker_admin::BuildError>(())
/// ```
#[derive(Clone)]
pub struct Token {
    label: String,
    digest: [u8; 32],
}

impl Token {
    /// A token named `label` with the secret `secret`; an error says what is wrong with
    /// either (without showing the secret).
    pub fn new(label: impl Into<String>, secret: impl AsRef<str>) -> Result<Token, BuildError> {
        let label = label.into();
        let secret = secret.as_ref();
        let label_ok = (1..=64).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._@".contains(&b));
        if !label_ok {
            return Err(BuildError::TokenLabel { label });
        }
        let problem = if secret.len() < MIN_SECRET {
            Some("is shorter than 16 characters")
        } else if secret.len() > MAX_SECRET {
            Some("is longer than 512 characters")
        } else if !is_token68(secret) {
            Some("has characters outside A-Z a-z 0-9 - . _ ~ + / (and = at the end)")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(BuildError::TokenSecret { label, problem });
        }
        Ok(Token {
            label,
            digest: digest(secret.as_bytes()),
        })
    }

    /// The label naming the token's holder.
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// RFC 6750's `b64token` (RFC 7235's `token68`).
fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Read: list, inspect, stream.
    Reader,
    /// Read and apply operator actions.
    Operator,
}

/// Who made a request.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    /// `None`: no token (reads are open).
    pub(crate) token: Option<String>,
    pub(crate) role: Role,
}

/// A request whose `Authorization` header does not identify a token.
enum Refused {
    /// Not one well-formed `Bearer` credential.
    Malformed,
    /// A well-formed token that matches none configured.
    Unknown,
}

/// The configured tokens and the checks of the routes.
#[derive(Debug)]
pub(crate) struct Auth {
    operators: Vec<Token>,
    readers: Vec<Token>,
}

impl Auth {
    pub(crate) fn new(operators: Vec<Token>, readers: Vec<Token>) -> Result<Auth, BuildError> {
        // One secret, one role: the same secret under two tokens is a configuration mistake.
        let all: Vec<&Token> = operators.iter().chain(&readers).collect();
        for (i, a) in all.iter().enumerate() {
            if let Some(b) = all[i + 1..].iter().find(|b| b.digest == a.digest) {
                return Err(BuildError::TokenReused {
                    first: a.label.clone(),
                    second: b.label.clone(),
                });
            }
        }
        Ok(Auth { operators, readers })
    }

    /// Whether operator actions are enabled (an operator token is configured).
    pub(crate) fn steers(&self) -> bool {
        !self.operators.is_empty()
    }

    /// Whether reads need a token.
    pub(crate) fn reads_need_token(&self) -> bool {
        !self.readers.is_empty()
    }

    /// The token in `headers`, if any: its role and label. Every configured token is
    /// compared (in constant time, on SHA-256 digests of equal length), whichever matches.
    fn identify(&self, headers: &HeaderMap) -> Result<Option<(Role, &str)>, Refused> {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(Refused::Malformed);
        }
        let value = value.as_bytes();
        let scheme = b"bearer ";
        if value.len() <= scheme.len() || !value[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Err(Refused::Malformed);
        }
        let presented = value[scheme.len()..].trim_ascii();
        if presented.len() > MAX_PRESENTED {
            return Err(Refused::Unknown);
        }
        let presented = digest(presented);
        let mut found: Option<(Role, &str)> = None;
        let tokens = self
            .operators
            .iter()
            .map(|t| (Role::Operator, t))
            .chain(self.readers.iter().map(|t| (Role::Reader, t)));
        for (role, token) in tokens {
            let equal: Choice = presented.ct_eq(&token.digest);
            if equal.to_bool() {
                // Digests are unique (checked when built): at most one matches.
                found = Some((role, token.label.as_str()));
            }
        }
        found.map(Some).ok_or(Refused::Unknown)
    }

    /// A caller allowed to read, or the 401 to answer.
    pub(crate) fn reader(&self, headers: &HeaderMap) -> Result<Caller, Refusal> {
        match self.identify(headers) {
            Ok(Some((role, label))) => Ok(Caller {
                token: Some(label.to_string()),
                role,
            }),
            Ok(None) if !self.reads_need_token() => Ok(Caller {
                token: None,
                role: Role::Reader,
            }),
            Ok(None) => Err(unauthorized(None, "a read or operator token is required")),
            Err(refused) => Err(refused.refusal()),
        }
    }

    /// A caller allowed to steer, or the 401 or 403 to answer. Nothing is read from the
    /// request before this passes.
    pub(crate) fn operator(&self, headers: &HeaderMap) -> Result<Caller, Refusal> {
        if !self.steers() {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "this admin is read-only: configure an operator token \
                 (AdminBuilder::operator_token) to enable operator actions",
            ));
        }
        match self.identify(headers) {
            Ok(Some((Role::Operator, label))) => Ok(Caller {
                token: Some(label.to_string()),
                role: Role::Operator,
            }),
            // RFC 6750: a valid token without the scope is 403 `insufficient_scope`.
            Ok(Some((Role::Reader, _))) => Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "a read token cannot apply operator actions: use an operator token",
            )
            .challenge(challenge(Some("insufficient_scope")))),
            Ok(None) => Err(unauthorized(
                None,
                "an operator token is required (Authorization: Bearer <token>)",
            )),
            Err(refused) => Err(refused.refusal()),
        }
    }
}

impl Refused {
    fn refusal(self) -> Refusal {
        match self {
            Refused::Malformed => unauthorized(
                Some("invalid_request"),
                "send one Authorization header: Bearer <token>",
            ),
            Refused::Unknown => unauthorized(Some("invalid_token"), "the token is not valid"),
        }
    }
}

fn challenge(error: Option<&str>) -> HeaderValue {
    let value = match error {
        Some(error) => format!("Bearer realm=\"{REALM}\", error=\"{error}\""),
        None => format!("Bearer realm=\"{REALM}\""),
    };
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("Bearer"))
}

/// 401 with a `WWW-Authenticate` challenge (RFC 6750).
fn unauthorized(error: Option<&str>, message: &str) -> Refusal {
    Refusal::new(StatusCode::UNAUTHORIZED, message).challenge(challenge(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPS: &str = "0123456789abcdef0123456789abcdef";
    const READ: &str = "fedcba9876543210fedcba9876543210";

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    fn auth() -> Auth {
        Auth::new(
            vec![Token::new("ops", OPS).unwrap()],
            vec![Token::new("grafana", READ).unwrap()],
        )
        .unwrap()
    }

    #[test]
    fn tokens_are_validated_without_showing_the_secret() {
        for (label, secret, what) in [
            ("ops", "hunter2", "shorter than 16"),
            ("ops", "0123456789abcdef 0123", "characters outside"),
            ("ops", "=0123456789abcdef", "characters outside"),
            ("ops", &"a".repeat(513), "longer than 512"),
        ] {
            let e = Token::new(label, secret).unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
            assert!(!e.contains(secret), "{e}");
        }
        let e = Token::new("on call", OPS).unwrap_err().to_string();
        assert!(e.contains("\"on call\""), "{e}");
        assert!(Token::new("ops", format!("{OPS}==")).is_ok());
        let e = Auth::new(
            vec![Token::new("a", OPS).unwrap()],
            vec![Token::new("b", OPS).unwrap()],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("\"a\"") && e.contains("\"b\""), "{e}");
    }

    #[test]
    fn identifies_each_token_and_refuses_the_rest() {
        let auth = auth();
        let role = |h: &HeaderMap| match auth.identify(h) {
            Ok(Some((role, label))) => format!("{role:?} {label}"),
            Ok(None) => "none".into(),
            Err(Refused::Malformed) => "malformed".into(),
            Err(Refused::Unknown) => "unknown".into(),
        };
        assert_eq!(role(&headers(&format!("Bearer {OPS}"))), "Operator ops");
        assert_eq!(
            role(&headers(&format!("bearer  {READ} "))),
            "Reader grafana"
        );
        assert_eq!(role(&HeaderMap::new()), "none");
        assert_eq!(role(&headers(&format!("Bearer {OPS}x"))), "unknown");
        assert_eq!(role(&headers(&OPS[..31])), "malformed");
        assert_eq!(role(&headers(&format!("Basic {OPS}"))), "malformed");
        assert_eq!(role(&headers("Bearer")), "malformed");
        let mut two = headers(&format!("Bearer {OPS}"));
        two.append(AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        assert_eq!(role(&two), "malformed");
    }
}
