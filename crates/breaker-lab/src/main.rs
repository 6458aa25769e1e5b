//! `cargo run -p breaker-lab -- [options]`: replays traffic through breaker configs and
//! prints, for each config, when it trips, what it sheds, what still reaches the failing
//! dependency, and when it recovers.
//!
//! ```text
//! --pattern steady|burst|degradation|flapping|outage   generated traffic (default: outage)
//! --trace FILE.csv        a recorded trace instead (timestamp_ms,latency_ms,outcome)
//! --configs FILE.toml     [configs.NAME] tables of breaker settings (default: three examples)
//! --rate N                calls per second of generated traffic (default 100)
//! --duration SECONDS      length of generated traffic (default 60)
//! --seed N                random seed of generated traffic (default 1)
//! --json                  JSON instead of a table
//! --out DIR               where the picture goes (default: lab-out): DIR/NAME.svg and .png
//! --name NAME             the picture's file name (default: the pattern's, or "trace")
//! --font FILE.ttf         the pictures' font (default: DejaVu Sans, Debian's fonts-dejavu-core)
//! ```

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use breaker_core::settings::Settings;
use breaker_lab::picture::{DEFAULT_FONT, draw_run};
use breaker_lab::traffic::{Pattern, parse_csv};
use breaker_lab::{simulate, table};
use serde::Deserialize;

const EXAMPLE_CONFIGS: &str = r#"
[configs.sensitive]
count_window = 20
minimum_calls = 10
failure_rate = 30.0
open_duration = "5s"

[configs.balanced]
count_window = 100
minimum_calls = 20
failure_rate = 50.0
open_duration = "10s"

[configs.consecutive]
consecutive_failures = 5
open_duration = "10s"
"#;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    configs: BTreeMap<String, Settings>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("breaker-lab: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| -> Option<&str> {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(String::as_str)
    };
    let number = |flag: &str, default: u64| -> Result<u64, String> {
        value(flag).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| format!("{flag} {v:?}: expected a whole number"))
        })
    };
    let rate = number("--rate", 100)? as u32;
    let duration = Duration::from_secs(number("--duration", 60)?);
    let seed = number("--seed", 1)?;
    let configs_text = match value("--configs") {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?,
        None => EXAMPLE_CONFIGS.to_string(),
    };
    let configs: ConfigFile = toml::from_str(&configs_text)?;
    let name = value("--name")
        .map(str::to_string)
        .unwrap_or_else(|| match value("--trace") {
            Some(_) => "trace".into(),
            None => value("--pattern").unwrap_or("outage").to_string(),
        });
    let traffic = match value("--trace") {
        Some(path) => {
            parse_csv(&std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?)?
        }
        None => {
            let third = duration / 3;
            let pattern = match value("--pattern").unwrap_or("outage") {
                "steady" => Pattern::Steady { error_rate: 0.05 },
                "burst" => Pattern::Burst {
                    start: third,
                    length: Duration::from_secs(2),
                    error_rate: 0.6,
                },
                "degradation" => Pattern::Degradation {
                    start: third,
                    ramp: third,
                },
                "flapping" => Pattern::Flapping {
                    period: Duration::from_secs(10),
                    down: Duration::from_secs(3),
                },
                "outage" => Pattern::Outage {
                    start: third,
                    end: third * 2,
                },
                other => {
                    return Err(format!(
                        "--pattern {other:?}: expected steady, burst, degradation, flapping or outage"
                    )
                    .into());
                }
            };
            pattern.generate(rate, duration, seed)
        }
    };
    let mut reports = Vec::new();
    for (name, settings) in &configs.configs {
        reports
            .push(simulate(name, settings, &traffic).map_err(|e| format!("config {name}: {e}"))?);
    }
    let out = std::path::PathBuf::from(value("--out").unwrap_or("lab-out"));
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let font = std::path::PathBuf::from(value("--font").unwrap_or(DEFAULT_FONT));
    let slow = configs
        .configs
        .values()
        .find_map(|s| s.slow_call_duration)
        .unwrap_or(Duration::from_secs(1));
    let (svg, png) = draw_run(&out.join(&name), &reports, &traffic, slow, &font)?;
    if args.iter().any(|a| a == "--json") {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print!("{}", table(&reports));
        println!("\npictures: {} and {}", svg.display(), png.display());
    }
    Ok(())
}
