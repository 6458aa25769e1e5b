//! What the example programs share: their command line (`--option value`, `--help`), how
//! they report a startup error (what failed, where, and what to do, then the causes), instead
//! of the `Error: PoolTimedOut` a `main` returning `Result` prints, the commands typed on
//! their standard input, and a printed line per breaker transition.

use std::error::Error;
use std::fmt;
use std::io::BufRead;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Instant;

use breaker_core::{Event, Observer};

/// The lines typed on standard input, read by a thread of their own; the channel closes
/// when standard input does.
pub fn stdin_lines() -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (lines, commands) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    commands
}

/// An observer printing each transition of a breaker as it happens, with the seconds since
/// the program started: `   12.3 s  breaker server: closed -> open`.
#[derive(Debug)]
pub struct PrintTransitions(Instant);

impl PrintTransitions {
    /// Times lines from now.
    pub fn new() -> Self {
        PrintTransitions(Instant::now())
    }

    /// Seconds since `new`, as the lines print them.
    pub fn elapsed(&self) -> String {
        format!("{:>7.1} s", self.0.elapsed().as_secs_f64())
    }
}

impl Default for PrintTransitions {
    fn default() -> Self {
        Self::new()
    }
}

impl Observer for PrintTransitions {
    fn on_breaker_event(&self, breaker: &str, event: &Event) {
        if let Event::StateTransition { from, to } = event {
            println!("{}  breaker {breaker}: {from} -> {to}", self.elapsed());
        }
    }
}

/// Why an example could not start: a sentence naming what failed, where, and what to do;
/// the underlying error, if any, as its [`source`](Error::source).
#[derive(Debug)]
pub struct StartupError {
    what: String,
    source: Option<Box<dyn Error + Send + Sync>>,
}

impl StartupError {
    /// An error saying `what` (which server, which address, what failed, what to do).
    pub fn new(what: impl Into<String>) -> Self {
        StartupError {
            what: what.into(),
            source: None,
        }
    }

    /// The same error, caused by `source`.
    pub fn because(mut self, source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }
}

impl fmt::Display for StartupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl Error for StartupError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// Prints `error: ...` and each cause on its own line to standard error, and returns the
/// exit code: the end of every example's `main`.
pub fn exit_code(result: Result<(), Box<dyn Error>>) -> ExitCode {
    let Err(error) = result else {
        return ExitCode::SUCCESS;
    };
    eprintln!("error: {error}");
    let mut cause = error.source();
    while let Some(e) = cause {
        eprintln!("  caused by: {e}");
        cause = e.source();
    }
    ExitCode::FAILURE
}

/// An example's command line: positional words and `--option value` pairs, checked against
/// the options the example knows; `--help` prints its usage and exits.
#[derive(Debug)]
pub struct Args {
    positional: Vec<String>,
    options: Vec<(String, String)>,
}

impl Args {
    /// Reads the process's arguments. `usage` is printed for `--help` (or `-h`); `known`
    /// lists the options that take a value (`"--listen"`). An unknown option, or one
    /// without a value, is an error that says so.
    pub fn parse(usage: &str, known: &[&str]) -> Result<Args, StartupError> {
        Args::from_iter(std::env::args().skip(1), usage, known)
    }

    fn from_iter(
        args: impl IntoIterator<Item = String>,
        usage: &str,
        known: &[&str],
    ) -> Result<Args, StartupError> {
        let mut positional = Vec::new();
        let mut options = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                println!("{}", usage.trim());
                std::process::exit(0);
            }
            if !arg.starts_with("--") {
                positional.push(arg);
                continue;
            }
            if !known.contains(&arg.as_str()) {
                return Err(StartupError::new(format!(
                    "unknown option {arg}; the options are {} (see --help)",
                    known.join(", ")
                )));
            }
            let value = args
                .next()
                .ok_or_else(|| StartupError::new(format!("{arg} needs a value (see --help)")))?;
            options.push((arg, value));
        }
        Ok(Args {
            positional,
            options,
        })
    }

    /// The `n`-th word that is not an option (from 0).
    pub fn positional(&self, n: usize) -> Option<&str> {
        self.positional.get(n).map(String::as_str)
    }

    /// The value of `option` (the last one given).
    pub fn value(&self, option: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(name, _)| name == option)
            .map(|(_, value)| value.as_str())
    }

    /// The value of `option` parsed as a `T`; `expected` says what a valid value looks like
    /// in the error.
    pub fn parsed<T: FromStr>(
        &self,
        option: &str,
        expected: &str,
    ) -> Result<Option<T>, StartupError> {
        self.value(option)
            .map(|value| {
                value.parse().map_err(|_| {
                    StartupError::new(format!("{option} {value:?}: expected {expected}"))
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, StartupError> {
        Args::from_iter(args.iter().map(|a| a.to_string()), "", &["--listen"])
    }

    #[test]
    fn options_and_words() {
        let args = parse(&["serve", "--listen", "127.0.0.1:1"]).unwrap();
        assert_eq!(args.positional(0), Some("serve"));
        assert_eq!(args.value("--listen"), Some("127.0.0.1:1"));
        let port = args
            .parsed::<std::net::SocketAddr>("--listen", "an address")
            .unwrap();
        assert_eq!(port.unwrap().port(), 1);
    }

    #[test]
    fn unknown_missing_and_invalid_values_say_so() {
        let e = parse(&["--lisen", "x"]).unwrap_err().to_string();
        assert!(
            e.contains("unknown option --lisen; the options are --listen"),
            "{e}"
        );
        let e = parse(&["--listen"]).unwrap_err().to_string();
        assert!(e.contains("--listen needs a value"), "{e}");
        let args = parse(&["--listen", "nowhere"]).unwrap();
        let e = args
            .parsed::<std::net::SocketAddr>("--listen", "HOST:PORT")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "--listen \"nowhere\": expected HOST:PORT");
    }
}
