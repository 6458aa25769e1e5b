//! The dashboard in a real browser: headless Chromium (Debian's `chromium`; `.ci/run`
//! installs it) loads the page from a real server, shows every breaker's state, follows a
//! transition the server makes without a reload, and shows operator buttons only with an
//! operator token, which then steer the server's breaker.
//!
//! The screenshot goes to `$CARGO_TARGET_TMPDIR/dashboard.png`, and also to the path in
//! `BREAKER_ADMIN_SCREENSHOT` if set (after a longer run that fills the charts): that is how
//! `docs/admin/dashboard.png` is made.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use breaker_core::{CircuitBreaker, Outcome, State};
use breaker_test_support::Chromium;
use common::{Fixture, OPERATOR_SECRET, eventually, operator, record, record_took};

const WAIT: Duration = Duration::from_secs(20);
const HOSTILE: &str = "<img src=x onerror=\"document.title='pwned'\">";

/// `[[name, state], ...]` of the tiles, in page order.
const TILES: &str = "JSON.stringify([...document.querySelectorAll('.tile')]\
    .map(t => [t.dataset.breaker, t.dataset.state]))";

fn tile_state(name: &str) -> String {
    format!(
        "[...document.querySelectorAll('.tile')].find(t => t.dataset.breaker === {})?.dataset.state",
        serde_json::to_string(name).unwrap()
    )
}

fn tile_text(name: &str, part: &str) -> String {
    format!(
        "[...document.querySelectorAll('.tile')].find(t => t.dataset.breaker === {})\
         ?.querySelector({})?.textContent",
        serde_json::to_string(name).unwrap(),
        serde_json::to_string(part).unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_every_breaker_and_follows_it_live() {
    let screenshot = std::env::var_os("BREAKER_ADMIN_SCREENSHOT").map(PathBuf::from);
    let f = Fixture::start(|b| b.operator_token(operator()).history(Duration::from_secs(6))).await;
    let inventory = Arc::new(
        CircuitBreaker::builder_with_clock(f.clock.clone())
            .name("inventory")
            .observer(f.admin.observer())
            .build()
            .unwrap(),
    );
    let hostile = Arc::new(
        CircuitBreaker::builder_with_clock(f.clock.clone())
            .name(HOSTILE)
            .observer(f.admin.observer())
            .build()
            .unwrap(),
    );
    f.registry.register("inventory", inventory.clone()).unwrap();
    f.registry.register(HOSTILE, hostile.clone()).unwrap();
    f.search.trip();
    inventory.force_open();
    for outcome in [Outcome::Success, Outcome::Failure, Outcome::Success] {
        record(&f.payments, outcome);
    }
    record(&hostile, Outcome::Failure);
    record(&hostile, Outcome::Failure);

    let mut browser = Chromium::launch(1400, 1000).await;
    browser.open(&f.url("dashboard")).await;
    browser
        .wait_for(
            "document.querySelectorAll('.tile').length === 4 && \
             document.getElementById('stream').dataset.state === 'live'",
            WAIT,
        )
        .await;
    let tiles = browser.eval(TILES).await;
    let tiles: Vec<(String, String)> = serde_json::from_str(tiles.as_str().unwrap()).unwrap();
    assert_eq!(
        tiles,
        [
            (HOSTILE.to_string(), "closed".to_string()),
            ("inventory".into(), "forced_open".into()),
            ("payments".into(), "closed".into()),
            ("search".into(), "open".into()),
        ]
    );
    // A name is text, never markup.
    assert_eq!(
        browser
            .eval("document.querySelectorAll('img').length")
            .await,
        0
    );
    assert_ne!(browser.eval("document.title").await, "pwned");
    // The numbers of a tile: the failure rate against its threshold, the countdown.
    let failure = browser
        .eval(&tile_text("payments", ".stats dd:nth-of-type(3)"))
        .await;
    assert_eq!(failure, "33.3 % / 50 %");
    let in_a_row = browser
        .eval(&tile_text(HOSTILE, ".stats dd:nth-of-type(3)"))
        .await;
    assert_eq!(in_a_row, "2 in a row / 5");
    let retry = browser
        .eval(&tile_text("search", ".stats dd:nth-of-type(2)"))
        .await;
    assert!(retry.as_str().unwrap().ends_with(" s"), "{retry}");
    // Read-only without a token: no operator buttons.
    assert_eq!(
        browser
            .eval("[...document.querySelectorAll('.actions')].every(a => a.hidden)")
            .await,
        true
    );

    // The server makes a transition: the page shows it without a reload.
    browser.eval("window.notReloaded = true").await;
    for _ in 0..3 {
        record(&f.payments, Outcome::Failure);
    }
    assert_eq!(f.payments.state(), State::Open);
    browser
        .wait_for(&format!("{} === 'open'", tile_state("payments")), WAIT)
        .await;
    assert_eq!(browser.eval("window.notReloaded === true").await, true);
    browser
        .wait_for(
            "[...document.querySelectorAll('#log li')].some(li => \
             li.textContent.includes('payments: closed → open'))",
            WAIT,
        )
        .await;

    // With an operator token the buttons appear, and steer the server's breaker.
    browser
        .eval(&format!(
            "document.getElementById('token').value = {}; \
             document.getElementById('signin').requestSubmit(); true",
            serde_json::to_string(OPERATOR_SECRET).unwrap()
        ))
        .await;
    browser
        .wait_for(
            "[...document.querySelectorAll('.actions')].every(a => !a.hidden) && \
             document.querySelectorAll('.actions button[data-action=force_open]').length === 4",
            WAIT,
        )
        .await;
    // No reason: refused by the page itself, nothing sent.
    browser
        .eval(
            "[...document.querySelectorAll('.tile')].find(t => t.dataset.breaker === 'search')\
             .querySelector('button[data-action=reset]').click(); true",
        )
        .await;
    let said = browser.eval(&tile_text("search", ".actions .result")).await;
    assert!(said.as_str().unwrap().contains("reason"), "{said}");
    assert_eq!(f.search.state(), State::Open);
    browser
        .eval(
            "const t = [...document.querySelectorAll('.tile')].find(t => t.dataset.breaker === 'search'); \
             t.querySelector('.actions input').value = 'browser test: isolate search'; \
             t.querySelector('button[data-action=force_open]').click(); true",
        )
        .await;
    eventually(
        WAIT,
        "the page's button forced the breaker open",
        || async { f.search.state() == State::ForcedOpen },
    )
    .await;
    browser
        .wait_for(&format!("{} === 'forced_open'", tile_state("search")), WAIT)
        .await;
    browser
        .wait_for(
            "[...document.querySelectorAll('#log li')].some(li => \
             li.textContent.includes('search: force open by token on-call'))",
            WAIT,
        )
        .await;
    // Forgetting the token hides the buttons again.
    browser
        .eval("document.getElementById('forget-token').click(); true")
        .await;
    browser
        .wait_for(
            "[...document.querySelectorAll('.actions')].every(a => a.hidden)",
            WAIT,
        )
        .await;

    // The charts draw the rates the snapshots carry.
    f.search.reset();
    inventory.reset();
    f.payments.reset();
    let picture = if screenshot.is_some() {
        Duration::from_secs(7)
    } else {
        Duration::from_millis(600)
    };
    drive_traffic(&f, &inventory, picture).await;
    browser
        .wait_for(
            "[...document.querySelectorAll('.tile')].find(t => t.dataset.breaker === 'payments')\
             .querySelector('path.failure').getAttribute('d')?.split('L').length > 3",
            WAIT,
        )
        .await;
    assert_eq!(
        browser.errors(),
        &[] as &[String],
        "the page reported errors (CSP violations included)"
    );
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    browser.screenshot(&path).await;
    if let Some(path) = screenshot {
        browser.screenshot(&path).await;
    }
}

/// Traffic for the picture: payments' failures and slow calls rise until it trips, probes,
/// and recovers; inventory is disabled by an operator. Breaker time is the manual clock;
/// the wall-clock pacing only spreads the hub's samples over the chart.
async fn drive_traffic(f: &Fixture, inventory: &common::Breaker, run: Duration) {
    let steps = (run.as_millis() / 50).max(1) as u32;
    inventory.disable();
    for step in 0..steps {
        let progress = f64::from(step) / f64::from(steps);
        for i in 0..20 {
            let failing = f64::from(i) / 20.0 < (progress * 1.4).min(0.7);
            record(
                &f.payments,
                if failing {
                    Outcome::Failure
                } else {
                    Outcome::Success
                },
            );
            let slow = f64::from(i) / 20.0 < progress;
            let took = if slow {
                Duration::from_secs(3)
            } else {
                Duration::ZERO
            };
            record_took(&f.payments, Outcome::Success, took);
        }
        if step == steps * 3 / 4 {
            f.clock.advance(Duration::from_secs(31));
            record(&f.payments, Outcome::Success); // the probe: closed again
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Leave payments open for the picture.
    for _ in 0..20 {
        record(&f.payments, Outcome::Failure);
    }
}
