//! The project's automation: `cargo xtask <command>`.
//!
//! ```text
//! cargo xtask ci      lint + test: everything CI runs
//! cargo xtask lint    rustfmt check, clippy -D warnings (all targets; core's feature sets),
//!                     rustdoc with warnings denied as docs.rs builds it (all features,
//!                     cfg(docsrs)), one rust-version that every dependency allows
//! cargo xtask package `cargo package` of every published crate, each built from its
//!                     packaged sources (what crates.io would get)
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
        "package" => package(),
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
  lint    rustfmt check, clippy -D warnings, rustdoc -D warnings (as docs.rs), rust-version
  package cargo package of every published crate, verified
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
    // As docs.rs builds the published crates: every feature, `cfg(docsrs)` (which turns on
    // the nightly `doc_cfg` labels, allowed here for the workspace's own crates only).
    let published = published_crates()?;
    // A target directory of its own: `RUSTC_BOOTSTRAP` changes how some dependencies build,
    // which would otherwise rebuild them for every other command.
    run(
        &[
            "doc",
            "--workspace",
            "--no-deps",
            "--all-features",
            "--target-dir",
            "target/docsrs",
        ],
        &[
            ("RUSTDOCFLAGS", "--cfg docsrs -D warnings"),
            ("RUSTC_BOOTSTRAP", &published.join(",").replace('-', "_")),
        ],
    )?;
    rust_version()
}

/// The workspace's crates that are published (`publish` not `false`).
fn published_crates() -> Result<Vec<String>, String> {
    let metadata = metadata()?;
    let members = metadata["workspace_members"]
        .as_array()
        .ok_or("cargo metadata: no workspace_members")?;
    let mut names = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let id = &package["id"];
        let unpublished = package["publish"].as_array().is_some_and(Vec::is_empty);
        if members.contains(id) && !unpublished {
            names.push(package["name"].as_str().unwrap_or_default().to_string());
        }
    }
    names.sort();
    Ok(names)
}

fn metadata() -> Result<serde_json::Value, String> {
    let out = Command::new(cargo())
        .args(["metadata", "--format-version", "1"])
        .current_dir(root())
        .output()
        .map_err(|e| format!("could not run cargo metadata: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))
}

/// `1.94` and `1.94.0` alike, as `[1, 94, 0]`.
fn version(text: &str) -> Vec<u64> {
    let mut v: Vec<u64> = text.split('.').map(|n| n.parse().unwrap_or(0)).collect();
    v.resize(3, 0);
    v
}

/// One `rust-version` for the workspace, and every crate a published crate builds with
/// (normal and build dependencies) allows it. Clippy's `incompatible_msrv` lint (in `lint`)
/// then catches standard-library APIs newer than it in our own code.
fn rust_version() -> Result<(), String> {
    println!("\n==> rust-version: one for the workspace, allowed by every dependency");
    let metadata = metadata()?;
    let packages: std::collections::HashMap<&str, &serde_json::Value> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| (p["id"].as_str().unwrap_or_default(), p))
        .collect();
    let members: Vec<&str> = metadata["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str())
        .collect();
    let ours = |id: &str| packages[id]["rust_version"].as_str().map(str::to_string);
    let workspace = ours(members[0]).ok_or("the workspace sets no rust-version")?;
    for id in &members {
        let theirs = ours(id);
        if theirs.as_deref() != Some(workspace.as_str()) {
            return Err(format!(
                "{} has rust-version {theirs:?}, the workspace {workspace}: use \
                 `rust-version.workspace = true`",
                packages[id]["name"]
            ));
        }
    }
    let nodes: std::collections::HashMap<&str, &serde_json::Value> = metadata["resolve"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| (n["id"].as_str().unwrap_or_default(), n))
        .collect();
    let mut stack: Vec<&str> = members.clone();
    let mut seen = std::collections::HashSet::new();
    let mut newest: Option<(Vec<u64>, String)> = None;
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        if !members.contains(&id)
            && let Some(v) = packages[id]["rust_version"].as_str()
            && newest.as_ref().is_none_or(|(n, _)| version(v) > *n)
        {
            newest = Some((version(v), format!("{} {v}", packages[id]["name"])));
        }
        for dep in nodes[id]["deps"].as_array().into_iter().flatten() {
            let normal = dep["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|k| k["kind"].is_null() || k["kind"] == "build");
            // Only what the published crates build with; dev-dependencies are ours to pick.
            if normal {
                stack.push(dep["pkg"].as_str().unwrap_or_default());
            }
        }
    }
    if let Some((v, who)) = newest {
        if v > version(&workspace) {
            return Err(format!(
                "{who} needs a newer Rust than the workspace's rust-version {workspace}: raise it"
            ));
        }
        println!("rust-version {workspace}; the most demanding dependency: {who}");
    }
    Ok(())
}

/// `cargo package` of every published crate, each verified by building it from its packaged
/// sources against the others' packages: what a user downloading them from crates.io gets.
fn package() -> Result<(), String> {
    let mut args = vec!["package", "--workspace"];
    let published = published_crates()?;
    let metadata = metadata()?;
    let mut excluded = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let name = package["name"].as_str().unwrap_or_default();
        let member = metadata["workspace_members"]
            .as_array()
            .is_some_and(|m| m.contains(&package["id"]));
        if member && !published.iter().any(|p| p == name) {
            excluded.push(name.to_string());
        }
    }
    for name in &excluded {
        args.extend(["--exclude", name]);
    }
    if env::var_os("CI").is_none() {
        // A working copy with changes not yet committed.
        args.push("--allow-dirty");
    }
    run(&args, &[])
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
