//! Which database errors are outages (they count against the database) and which are the
//! caller's (they prove the database answered).

use breaker_core::Outcome;

/// The default classification of a sqlx result's error, for PostgreSQL, MySQL / MariaDB and
/// SQLite alike:
///
/// - **failures** (the database is unreachable, overloaded or broken): I/O, TLS and protocol
///   errors, pool timed out, pool closed, worker crashed; SQLSTATE classes `08` (connection
///   exception), `53` (insufficient resources), `58` (system error), `XX` (internal error),
///   `57P01`-`57P03` (admin shutdown, crash shutdown, cannot connect now) and `57014` (query
///   canceled, e.g. by a statement timeout); SQLite's busy, locked, I/O error, full and cannot
///   open result codes;
/// - **successes** (the database answered; the request was the caller's problem): every
///   other database error (constraint violations, syntax errors, permission errors...), row
///   not found, decode and type errors, invalid arguments.
///
/// ```
/// use breaker_core::Outcome;
/// use breaker_sqlx::classify_error;
///
/// assert_eq!(classify_error(&sqlx::Error::PoolTimedOut), Outcome::Failure);
/// assert_eq!(classify_error(&sqlx::Error::RowNotFound), Outcome::Success);
/// ```
pub fn classify_error(error: &sqlx::Error) -> Outcome {
    use sqlx::Error as E;
    match error {
        E::Io(_) | E::Tls(_) | E::Protocol(_) | E::PoolTimedOut | E::PoolClosed => Outcome::Failure,
        E::WorkerCrashed => Outcome::Failure,
        E::Database(db) => match db.code() {
            Some(code) if is_outage_code(&code) => Outcome::Failure,
            _ => Outcome::Success,
        },
        _ => Outcome::Success,
    }
}

/// A database error code that says the database itself is in trouble.
fn is_outage_code(code: &str) -> bool {
    if code.len() == 5 {
        // SQLSTATE (PostgreSQL, MySQL / MariaDB).
        let class = &code[..2];
        matches!(class, "08" | "53" | "58" | "XX")
            || matches!(code, "57P01" | "57P02" | "57P03" | "57014")
    } else {
        // SQLite's (extended) result code: the primary code is the low byte.
        match code.parse::<u32>() {
            Ok(extended) => matches!(extended & 0xff, 5 | 6 | 10 | 13 | 14),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_outage_code;

    #[test]
    fn outage_codes() {
        for code in [
            "08006", "08S01", "53300", "57P01", "57014", "58030", "XX000", "5", "517", "10", "13",
            "14", "6",
        ] {
            assert!(is_outage_code(code), "{code}");
        }
        for code in [
            "23505", "42601", "42P01", "40001", "22012", "1", "19", "2067", "787", "HY000",
        ] {
            assert!(!is_outage_code(code), "{code}");
        }
    }
}
