//! Which database errors are outages (they count against the database) and which are the
//! caller's (they prove the database answered).

use std::sync::Arc;

use breaker_core::Outcome;

/// How results are classified: see [`classify_error`].
pub type Classifier = Arc<dyn Fn(&sqlx::Error) -> Outcome + Send + Sync>;

/// The default classification of a sqlx result's error, for PostgreSQL, MySQL / MariaDB and
/// SQLite alike.
///
/// **Failures** (the database is unreachable, overloaded, read-only or broken):
///
/// | source | errors |
/// |---|---|
/// | sqlx | I/O, TLS and protocol errors; pool timed out; pool closed; worker crashed; a query past the [statement timeout](crate::GuardedPool::statement_timeout) |
/// | SQLSTATE (PostgreSQL, MySQL, MariaDB) | class `08` connection exception; `25006` read-only transaction (a write sent to a standby after a failover); class `53` insufficient resources (disk full, out of memory, too many connections); class `57` operator intervention (`57014` query canceled by a statement timeout, `57P01`-`57P05` shutdown, crash, cannot connect now, database dropped, idle session timeout); class `58` system error; class `70` (`70100` query interrupted: MySQL's `KILL QUERY`, MariaDB's `max_statement_time`); class `F0` configuration file error; `HY001` out of memory; class `XX` internal error |
/// | MySQL / MariaDB error number (feature `mysql`) | `1021` disk full, `1030` storage engine error, `1037`/`1038` out of (sort) memory, `1040` too many connections, `1041` out of resources, `1053` server shutdown, `1114` table full, `1129` host blocked, `1135` cannot create thread, `1180`/`1181` commit / rollback failed, `1203` too many user connections, `1290` server running with `--read-only`, `1317` query interrupted, `1836` read-only mode, `1927` connection killed, `1969` statement timeout (MariaDB `max_statement_time`), `3024` statement timeout (MySQL `max_execution_time`) |
/// | SQLite result code (primary) | `5` busy, `6` locked, `7` out of memory, `9` interrupted, `10` I/O error, `11` corrupt, `13` full, `14` cannot open, `15` lock protocol, `26` not a database |
///
/// **Successes** (the database answered; the request was the caller's problem): every other
/// database error (constraint violations, syntax errors, missing tables, permission errors,
/// serialization failures and deadlocks `40001` / `40P01` / `1213`, lock waits `55P03` /
/// `1205`, which a caller's own transactions cause), row not found, decode and type errors,
/// invalid arguments.
///
/// Without the `mysql` feature, MySQL errors are classified by their SQLSTATE alone; most
/// server errors report the catch-all `HY000` and count as the caller's. Without the
/// `sqlite` feature, an all-digit code is taken for SQLite's by its shape.
///
/// Two of these a caller can cause too: `25006` (and MySQL's `1792`, reported as `25006`)
/// also answers a write in a transaction the caller began `READ ONLY`, and MySQL's `1290`
/// also answers a statement barred by another server option (`--secure-file-priv`). Both
/// are counted as the server's, for the failover they usually mean; classify them your
/// way with [`GuardedPool::classify`](crate::GuardedPool::classify) if your callers do
/// that.
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
        E::Database(db) => {
            #[cfg(feature = "mysql")]
            if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                && is_mysql_outage(mysql.number())
            {
                return Outcome::Failure;
            }
            #[cfg(feature = "sqlite")]
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                let code = db.code();
                let code = code.as_deref().and_then(|c| c.parse().ok());
                return match code {
                    Some(extended) if is_sqlite_outage(extended) => Outcome::Failure,
                    _ => Outcome::Success,
                };
            }
            match db.code() {
                Some(code) if is_outage_code(&code) => Outcome::Failure,
                _ => Outcome::Success,
            }
        }
        _ => Outcome::Success,
    }
}

/// A database error code (SQLSTATE, or SQLite's result code) that says the database itself
/// is in trouble. Codes come from the server: anything at all is handled (compared as
/// bytes, never sliced as text).
fn is_outage_code(code: &str) -> bool {
    let bytes = code.as_bytes();
    let digits = !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit);
    let sqlstate = bytes.len() == 5
        && bytes.iter().all(u8::is_ascii_alphanumeric)
        && !(digits && is_sqlite(code));
    if sqlstate {
        // SQLSTATE (PostgreSQL, MySQL / MariaDB).
        matches!(
            &bytes[..2],
            b"08" | b"53" | b"57" | b"58" | b"70" | b"F0" | b"XX"
        ) || matches!(bytes, b"25006" | b"HY001")
    } else if digits {
        code.parse().is_ok_and(is_sqlite_outage)
    } else {
        false
    }
}

/// Whether an all-digit code is more likely SQLite's than a SQLSTATE: without the `sqlite`
/// feature the driver is unknown, and SQLite's extended codes reach five digits only for a
/// few I/O-error variants (primary code 10), while all-digit SQLSTATEs start with a class
/// from `00` to `72`.
fn is_sqlite(code: &str) -> bool {
    code.parse::<u32>()
        .is_ok_and(|n| n & 0xff == 10 && n > 0xff)
}

/// A SQLite (extended) result code that says the database is in trouble: the primary code
/// is the low byte.
fn is_sqlite_outage(extended: u32) -> bool {
    matches!(extended & 0xff, 5 | 6 | 7 | 9 | 10 | 11 | 13 | 14 | 15 | 26)
}

/// A MySQL / MariaDB error number that says the server is in trouble (see
/// [`classify_error`]'s table).
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
fn is_mysql_outage(number: u16) -> bool {
    matches!(
        number,
        1021 | 1030
            | 1037
            | 1038
            | 1040
            | 1041
            | 1053
            | 1114
            | 1129
            | 1135
            | 1180
            | 1181
            | 1203
            | 1290
            | 1317
            | 1836
            | 1927
            | 1969
            | 3024
    )
}

#[cfg(test)]
mod tests {
    use super::{is_mysql_outage, is_outage_code};

    #[test]
    fn outage_codes() {
        for code in [
            "08006", "08S01", "08004", "25006", "53300", "53100", "57P01", "57P04", "57014",
            "58030", "70100", "F0000", "HY001", "XX000", "5", "517", "7", "9", "10", "11", "13",
            "14", "15", "26", "6",
        ] {
            assert!(is_outage_code(code), "{code}");
        }
        for code in [
            "23505", "42601", "42P01", "40001", "40P01", "55P03", "22012", "25P02", "HY000",
            "42000", "1", "19", "2067", "787", "8", "",
        ] {
            assert!(!is_outage_code(code), "{code}");
        }
    }

    #[test]
    fn odd_codes_from_a_server_never_panic() {
        for code in [
            "aé12",
            "é",
            "ééé",
            "\u{1F600}1",
            "12345678901234567890",
            "-1",
            " ",
            "0",
        ] {
            let _ = is_outage_code(code);
        }
        // A five-digit SQLite I/O error variant (10 | 40 << 8) is still an outage.
        assert!(is_outage_code("10250"));
    }

    #[test]
    fn mysql_outage_numbers() {
        for n in [
            1040, 1053, 1203, 1290, 1317, 1836, 1927, 1969, 3024, 1037, 1041,
        ] {
            assert!(is_mysql_outage(n), "{n}");
        }
        // Duplicate key, syntax, unknown table, lock wait timeout, deadlock, access denied.
        for n in [1062, 1064, 1146, 1205, 1213, 1045] {
            assert!(!is_mysql_outage(n), "{n}");
        }
    }
}
