//! Redis failing under a replica: unreachable (a fault proxy refusing and cutting
//! connections), slow (the proxy black-holing them), and holding data this crate did not
//! write. The replica goes on alone, says so, and heals. Each test starts a redis-server of
//! its own.

mod common;

use std::time::Duration;

use breaker_core::{Config, ProbeAllowance, State};
use breaker_redis::{Link, RedisSharing, SyncError};
use breaker_test_support::RedisServer;
use breaker_test_support::proxy::{FaultProxy, Mode};
use common::{eventually, fail, replica};

fn on_demand(url: &str) -> RedisSharing {
    RedisSharing::new(url)
        .sync_interval(Duration::from_secs(60))
        .command_timeout(Duration::from_secs(2))
        .trip_quorum(1)
}

async fn redis(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).expect("a valid URL");
    client
        .get_multiplexed_async_connection()
        .await
        .expect("the test's redis-server is reachable")
}

fn config(name: &str) -> Config {
    Config::builder()
        .name(name.to_string())
        .consecutive_failures(2)
        .open_duration(Duration::from_secs(10))
        .build_config()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_degrades_to_local_state_and_a_reconnect_heals() {
    let server = RedisServer::start();
    let name = "outage";
    let proxy = FaultProxy::start(server.addr()).await;
    let (cut_off, _) = replica(
        on_demand_via(&proxy).replica_id("behind-proxy"),
        config(name),
    );
    let (direct, _) = replica(on_demand(&server.url()), config(name));
    cut_off
        .sync_now()
        .await
        .expect("through the proxy, Redis answers");
    direct.sync_now().await.unwrap();
    assert_eq!(cut_off.status().link, Link::Synced);

    // Redis goes away: new connections refused, open ones cut.
    proxy.set_mode(Mode::Refuse);
    proxy.cut();
    let error = cut_off.sync_now().await.unwrap_err();
    assert!(matches!(error, SyncError::Unreachable(_)), "{error}");
    let status = cut_off.status();
    assert_eq!(status.link, Link::Degraded);
    assert_eq!(status.last_error, Some(error));
    assert_eq!(cut_off.probe_allowance(), ProbeAllowance::Unlimited);

    // The replica goes on alone: calls are admitted and it trips on its own.
    fail(&cut_off);
    fail(&cut_off);
    assert_eq!(cut_off.state(), State::Open);
    assert_eq!(
        direct.sync_now().await.unwrap().state,
        State::Closed,
        "the fleet did not hear"
    );

    // Redis is back: the next syncs reconnect and carry the trip made meanwhile.
    proxy.set_mode(Mode::Pass);
    eventually(
        Duration::from_secs(10),
        "the replica reconnects",
        || async { cut_off.sync_now().await.is_ok() },
    )
    .await;
    assert_eq!(cut_off.status().link, Link::Synced);
    let view = direct.sync_now().await.unwrap();
    assert_eq!(
        view.state,
        State::Open,
        "the trip made while cut off reached the fleet"
    );
    assert_eq!(direct.state(), State::Open);
}

fn on_demand_via(proxy: &FaultProxy) -> RedisSharing {
    on_demand(&format!("redis://{}", proxy.addr())).command_timeout(Duration::from_millis(200))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_counts_as_down_and_calls_never_wait_for_it() {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(server.addr()).await;
    let (r, _) = replica(on_demand_via(&proxy), config("slow"));
    r.sync_now().await.unwrap();
    // Redis hangs: connections accepted, nothing answered.
    proxy.set_mode(Mode::BlackHole);
    proxy.cut();
    let error = r.sync_now().await.unwrap_err();
    assert!(
        matches!(error, SyncError::Timeout(_) | SyncError::Unreachable(_)),
        "{error}"
    );
    assert_eq!(r.status().link, Link::Degraded);
    // While a sync hangs on Redis, calls are decided from local state.
    let hung = {
        let breaker = r.breaker().clone();
        // (Admitted, then dropped: neutral.)
        tokio::task::spawn_blocking(move || breaker.try_acquire().map(drop).is_ok())
    };
    let during = r.sync_now();
    let (admitted, sync) = tokio::join!(hung, during);
    assert!(admitted.unwrap());
    assert!(sync.is_err());
    proxy.set_mode(Mode::Pass);
    eventually(Duration::from_secs(10), "Redis answers again", || async {
        r.sync_now().await.is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_data_in_redis_is_reported_and_ignored() {
    let server = RedisServer::start();
    let name = "garbage";
    let state_key = format!("breaker:{{{name}}}");
    let (r, _) = replica(on_demand(&server.url()), config(name));
    let mut conn = redis(&server.url()).await;
    let cases: [(&str, Vec<&str>); 4] = [
        ("SET", vec!["not a hash"]),
        ("HSET", vec!["gen", "banana", "state", "open"]),
        ("HSET", vec!["gen", "3", "state", "exploded"]),
        ("HSET", vec!["gen", "-1", "state", "closed"]),
    ];
    for (i, (command, args)) in cases.iter().enumerate() {
        let _: () = redis::cmd("DEL")
            .arg(&state_key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let mut cmd = redis::cmd(command);
        cmd.arg(&state_key).arg(args);
        let _: () = cmd.query_async(&mut conn).await.unwrap();
        let before = r.status().bad_data;
        let error = r.sync_now().await.unwrap_err();
        let SyncError::BadData(what) = &error else {
            panic!("case {i}: {error}");
        };
        assert!(what.contains(&state_key), "{what}");
        assert!(error.to_string().contains("delete the key"), "{error}");
        let status = r.status();
        assert_eq!(status.link, Link::Degraded);
        // (The sync task may have met the same data meanwhile: at least this sync counted.)
        assert!(status.bad_data > before, "case {i}: {status:?}");
        // Nothing of it was trusted: the breaker is closed and admits calls.
        assert_eq!(r.state(), State::Closed);
        assert!(r.try_acquire().is_ok());
        // Nothing was overwritten either.
        let kind: String = redis::cmd("TYPE")
            .arg(&state_key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(kind, if *command == "SET" { "string" } else { "hash" });
    }
    // A garbage window, probe record or vote is refused the same way.
    let _: () = redis::cmd("DEL")
        .arg(&state_key)
        .query_async(&mut conn)
        .await
        .unwrap();
    r.sync_now().await.expect("a deleted key heals");
    for (key, field, value) in [
        (format!("{state_key}:w"), "7:f", "999"),
        (format!("{state_key}:w"), "7:c", "banana"),
        (format!("{state_key}:p"), "someone", "1 2"),
        // Five counts and a word among them.
        (format!("{state_key}:p"), "someone", "1 x 2 3 4 5"),
        (format!("{state_key}:v"), "someone", "yesterday"),
    ] {
        let _: () = redis::cmd("HSET")
            .arg(&key)
            .arg(field)
            .arg(value)
            .query_async(&mut conn)
            .await
            .unwrap();
        if key.ends_with(":w") {
            let _: () = redis::cmd("HSET")
                .arg(&key)
                .arg("gen")
                .arg("1")
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        let error = r.sync_now().await.unwrap_err();
        assert!(
            matches!(&error, SyncError::BadData(w) if w.contains(&key)),
            "{key} {field}={value}: {error}"
        );
        let _: () = redis::cmd("DEL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        r.sync_now().await.expect("healed");
        assert_eq!(r.status().link, Link::Synced);
    }
}

/// With the `metrics` feature, the link's health is a gauge and failed syncs a counter.
#[cfg(feature = "metrics")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_is_visible_in_metrics() {
    use breaker_redis::names::{CONFIG_MISMATCH, CONNECTED, STATE_LOST, SYNC_ERRORS};
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let server = RedisServer::start();
    let name = "metrics";
    let proxy = FaultProxy::start(server.addr()).await;
    // The handles are registered when sharing starts, with the recorder in scope.
    let (r, _) =
        metrics::with_local_recorder(&recorder, || replica(on_demand_via(&proxy), config(name)));
    let read = |metric: &str, label: Option<(&str, &str)>| {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .find(|(key, ..)| {
                let key = key.key();
                key.name() == metric
                    && key
                        .labels()
                        .any(|l| l.key() == "breaker" && l.value() == name)
                    && label
                        .is_none_or(|(k, v)| key.labels().any(|l| l.key() == k && l.value() == v))
            })
            .map(|(.., value)| match value {
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Counter(n) => n as f64,
                DebugValue::Histogram(_) => f64::NAN,
            })
    };
    r.sync_now().await.unwrap();
    assert_eq!(read(CONNECTED, None), Some(1.0));
    proxy.set_mode(Mode::Refuse);
    proxy.cut();
    r.sync_now().await.unwrap_err();
    // (A snapshot hands out counters' increments since the last one: read it first.)
    assert!(read(SYNC_ERRORS, Some(("error", "unreachable"))).unwrap_or(0.0) >= 1.0);
    assert_eq!(read(CONNECTED, None), Some(0.0));
    proxy.set_mode(Mode::Pass);
    eventually(Duration::from_secs(10), "the link heals", || async {
        r.sync_now().await.is_ok()
    })
    .await;
    assert_eq!(read(CONNECTED, None), Some(1.0));

    // A slow Redis is counted as slow, not as unreachable.
    let mut conn = redis(&server.url()).await;
    let _: () = redis::cmd("CLIENT")
        .arg(&["PAUSE", "600", "ALL"][..])
        .query_async(&mut conn)
        .await
        .unwrap();
    let error = r.sync_now().await.unwrap_err();
    assert!(matches!(error, SyncError::Timeout(_)), "{error}");
    assert!(read(SYNC_ERRORS, Some(("error", "timeout"))).unwrap_or(0.0) >= 1.0);

    // A lost state is counted when it is found and re-seeded.
    eventually(Duration::from_secs(10), "Redis answers again", || async {
        r.sync_now().await.is_ok()
    })
    .await;
    let _: () = redis::cmd("DEL")
        .arg(format!("breaker:{{{name}}}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    r.sync_now().await.unwrap();
    assert_eq!(read(STATE_LOST, None), Some(1.0));
    assert_eq!(read(CONFIG_MISMATCH, None), Some(0.0));
}
