//! The project's automation: `cargo xtask <command>`.
//!
//! ```text
//! cargo xtask ci      lint + test: everything CI runs
//! cargo xtask lint    rustfmt check, clippy -D warnings (all targets; core's feature sets),
//!                     rustdoc with warnings denied
//! cargo xtask test    the whole test suite: unit, integration, property and doc tests,
//!                     the no_std link check, the alert rules (promtool) and the loom models
//! cargo xtask loom    only the loom models (LOOM_MAX_PREEMPTIONS defaults to 3)
//! cargo xtask nostd   only the no_std build-and-link check
//! cargo xtask bench [--quick] [--no-run]
//!                     criterion benchmarks side by side with the peer crates; writes
//!                     docs/benchmarks.md (--quick: well under five minutes)
//! ```

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

mod bench;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let result = match task {
        "ci" => lint().and_then(|()| test()),
        "lint" => lint(),
        "test" => test(),
        "loom" => loom(),
        "nostd" => nostd(),
        "bench" => bench::run(
            args.iter().any(|a| a == "--quick"),
            args.iter().any(|a| a == "--no-run"),
        ),
        "help" | "-h" | "--help" => {
            println!("{}", HELP.trim());
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n\n{}", HELP.trim())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask {task} failed: {message}");
            ExitCode::FAILURE
        }
    }
}

const HELP: &str = "
usage: cargo xtask <command>

  ci      lint + test: everything CI runs
  lint    rustfmt check, clippy -D warnings, rustdoc -D warnings
  test    unit, integration, property and doc tests, no_std check, alert rules, loom models
  loom    loom models only
  nostd   no_std build-and-link check only
  bench   benchmarks vs. the peer crates, writes docs/benchmarks.md [--quick]
          [--no-run: only rewrite the report from the last run's results]
";

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs `cargo <args>` at the workspace root with extra environment variables.
pub(crate) fn run(args: &[&str], envs: &[(&str, &str)]) -> Result<(), String> {
    let shown: Vec<String> = envs
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .chain(std::iter::once("cargo".into()))
        .chain(args.iter().map(|a| a.to_string()))
        .collect();
    println!("\n==> {}", shown.join(" "));
    let started = Instant::now();
    let status = Command::new(cargo())
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(root())
        .status()
        .map_err(|e| format!("could not start cargo: {e}"))?;
    println!("<== {:.1}s", started.elapsed().as_secs_f64());
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` exited with {status}", shown.join(" ")))
    }
}

fn lint() -> Result<(), String> {
    run(&["fmt", "--all", "--", "--check"], &[])?;
    run(
        &["fmt", "--manifest-path", NOSTD_MANIFEST, "--", "--check"],
        &[],
    )?;
    run(
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    for features in [
        &["--no-default-features"][..],
        &["--no-default-features", "--features", "alloc"],
        &["--no-default-features", "--features", "tracing"],
    ] {
        let mut args = vec!["clippy", "-p", "breaker-core", "--lib"];
        args.extend_from_slice(features);
        args.extend_from_slice(&["--", "-D", "warnings"]);
        run(&args, &[])?;
    }
    run(
        &["doc", "--workspace", "--no-deps", "--all-features"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )
}

fn test() -> Result<(), String> {
    run(&["test", "--workspace", "--all-features"], &[])?;
    nostd()?;
    alert_rules()?;
    loom()
}

/// `promtool check rules` and `promtool test rules` on the shipped alert rules.
fn alert_rules() -> Result<(), String> {
    let dir = root().join("docs/monitoring");
    for args in [
        ["check", "rules", "breaker-alerts.yml"],
        ["test", "rules", "breaker-alerts.test.yml"],
    ] {
        println!("\n==> promtool {}", args.join(" "));
        let status = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .status()
            .map_err(|e| {
                format!(
                    "could not run promtool ({e}); it validates docs/monitoring/breaker-alerts.yml. \
                     Install it with Debian's `prometheus` package (apt-get install prometheus), \
                     or put promtool on PATH"
                )
            })?;
        if !status.success() {
            return Err(format!("`promtool {}` failed: {status}", args.join(" ")));
        }
    }
    Ok(())
}

fn loom() -> Result<(), String> {
    let preemptions = env::var("LOOM_MAX_PREEMPTIONS").unwrap_or_else(|_| "3".into());
    run(
        &[
            "test",
            "-p",
            "breaker-core",
            // The models beside each protocol (unit tests under `cfg(loom)`) and the
            // end-to-end models through the public API.
            "--lib",
            "--test",
            "loom",
            "--release",
            "--target-dir",
            "target/loom",
        ],
        &[
            ("RUSTFLAGS", "--cfg loom"),
            ("LOOM_MAX_PREEMPTIONS", &preemptions),
        ],
    )
}

const NOSTD_MANIFEST: &str = "crates/breaker-core/nostd-check/Cargo.toml";

fn nostd() -> Result<(), String> {
    run(
        &["build", "-p", "breaker-core", "--no-default-features"],
        &[],
    )?;
    run(
        &[
            "run",
            "--manifest-path",
            NOSTD_MANIFEST,
            "--target-dir",
            "target/nostd",
        ],
        &[],
    )
}
