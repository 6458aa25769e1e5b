//! What the tests that drive examples as a user would share: a running example (its
//! standard input to type commands, its output read line by line, with bounded waits), tools
//! that must be installed, free ports. Every process started here is stopped when its guard
//! is dropped, on panic too.
#![allow(dead_code)] // each test file uses part of it

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A process the test started: killed and reaped when dropped.
pub(crate) struct Guard(pub(crate) Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An example program running with its standard input and output piped to the test.
pub(crate) struct Running {
    name: String,
    process: Guard,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// Every line it printed so far (for failure messages).
    pub(crate) printed: Vec<String>,
}

impl Running {
    /// Starts `command` (stdout and stdin piped; stderr goes to the test's output).
    pub(crate) fn start(mut command: Command) -> Running {
        let name = command.get_program().to_string_lossy().into_owned();
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {name}: {e}"));
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            name,
            process: Guard(child),
            stdin,
            lines,
            printed: Vec::new(),
        }
    }

    /// Types `line` on its standard input.
    pub(crate) fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| {
                panic!(
                    "{} did not take {line:?} ({e}); it printed:\n{}",
                    self.name,
                    self.printed.join("\n")
                )
            });
    }

    /// The next line it prints that contains `needle`, within `limit`.
    pub(crate) fn wait_for(&mut self, needle: &str, limit: Duration) -> String {
        self.wait_until(needle, limit, |line| line.contains(needle))
    }

    /// The next line it prints for which `test` holds, within `limit` (`what` names it).
    pub(crate) fn wait_until(
        &mut self,
        what: &str,
        limit: Duration,
        test: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.printed.push(line.clone());
                    if test(&line) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "{} printed no line with {what:?} within {limit:?} ({e}); it printed:\n{}",
                    self.name,
                    self.printed.join("\n")
                ),
            }
        }
    }

    /// Waits for it to exit (within `limit`) after its standard input is closed.
    pub(crate) fn finish(mut self, limit: Duration) -> std::process::ExitStatus {
        drop(self.stdin.take());
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.process.0.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {limit:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The path of `tool`, or a panic naming the Debian package (or other source) that provides it.
pub(crate) fn require(tool: &str, provider: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|path| path.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("{tool} is not installed: this test needs it; install {provider} (.ci/run does)")
    })
}

/// A port nobody listens on right now, on 127.0.0.1.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Runs `program` with `args` to completion and returns its output.
pub(crate) fn output(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("could not run {program}: {e}"))
}

/// `curl -s` of `url`: the HTTP status and the body.
pub(crate) fn curl(url: &str) -> (u16, String) {
    require("curl", "Debian's curl (apt-get install curl)");
    let out = output(
        "curl",
        &["-s", "--max-time", "10", "-w", "\n%{http_code}", url],
    );
    assert!(out.status.success(), "curl {url} failed: {out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let (body, status) = text.rsplit_once('\n').expect("a status line");
    (status.parse().expect("a status"), body.to_string())
}
