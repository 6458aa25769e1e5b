//! Headless Chromium for tests of web pages, driven over the DevTools protocol (a websocket
//! and JSON messages; no driver program in between).
//!
//! The browser is Debian's `chromium` (or `BREAKER_CHROMIUM`), started with the flags a
//! container needs and a fresh profile directory; a test that cannot find it fails with a
//! message naming it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The variable naming the Chromium binary (default: `chromium`, then `chromium-browser`).
pub const CHROMIUM_ENV: &str = "BREAKER_CHROMIUM";

/// How long one DevTools command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);

/// A headless Chromium with one page.
#[derive(Debug)]
pub struct Chromium {
    child: Child,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    session: Option<String>,
    profile: PathBuf,
    /// JavaScript exceptions and console / log errors of the page, as text.
    errors: Vec<String>,
}

fn binary() -> String {
    if let Ok(path) = std::env::var(CHROMIUM_ENV) {
        return path;
    }
    for candidate in ["chromium", "chromium-browser"] {
        let found = std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|dir| dir.join(candidate).is_file())
        });
        if found {
            return candidate.to_string();
        }
    }
    panic!(
        "headless Chromium is needed for this test and `chromium` is not installed: \
         apt-get install chromium (Debian's package), or set {CHROMIUM_ENV} to a Chromium binary"
    )
}

impl Chromium {
    /// Starts headless Chromium with a fresh profile and opens a blank page of
    /// `width` x `height` CSS pixels.
    pub async fn launch(width: u32, height: u32) -> Chromium {
        let binary = binary();
        let profile = std::env::temp_dir().join(format!(
            "breaker-chromium-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&profile).expect("a profile directory");
        let mut child = Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "could not start Chromium ({binary}: {e}): apt-get install chromium, or set \
                     {CHROMIUM_ENV}"
                )
            });
        // Chromium prints where its DevTools endpoint listens.
        let stderr = child.stderr.take().expect("piped stderr");
        let mut lines = BufReader::new(stderr).lines();
        let mut said = Vec::new();
        let endpoint = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(at) = line.find("ws://") {
                    return Some(line[at..].trim().to_string());
                }
                said.push(line);
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!(
                "Chromium ({binary}) did not open its DevTools endpoint; it said:\n{}",
                said.join("\n")
            )
        });
        // Keep reading its stderr, so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (socket, _) = tokio_tungstenite::connect_async(endpoint.as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot reach Chromium's DevTools at {endpoint}: {e}"));
        let mut browser = Chromium {
            child,
            socket,
            next_id: 0,
            session: None,
            profile,
            errors: Vec::new(),
        };
        let target = browser
            .command("Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let target = target["targetId"]
            .as_str()
            .expect("a target id")
            .to_string();
        let attached = browser
            .command(
                "Target.attachToTarget",
                json!({ "targetId": target, "flatten": true }),
            )
            .await;
        browser.session = Some(
            attached["sessionId"]
                .as_str()
                .expect("a session id")
                .to_string(),
        );
        browser.command("Runtime.enable", json!({})).await;
        browser.command("Log.enable", json!({})).await;
        browser.command("Page.enable", json!({})).await;
        browser
            .command(
                "Emulation.setDeviceMetricsOverride",
                json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
            )
            .await;
        browser
    }

    /// Sends one DevTools command (to the page, once one is attached) and returns its
    /// result; page errors reported meanwhile are kept (see [`errors`](Self::errors)).
    pub async fn command(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .unwrap_or_else(|e| panic!("Chromium's DevTools connection failed: {e}"));
        let deadline = Instant::now() + COMMAND_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = tokio::time::timeout(left, self.socket.next())
                .await
                .unwrap_or_else(|_| {
                    panic!("Chromium did not answer {method} within {COMMAND_LIMIT:?}")
                });
            let text = match next {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(_)) => continue,
                other => panic!("Chromium's DevTools connection ended: {other:?}"),
            };
            let reply: Value = serde_json::from_str(&text).expect("DevTools sends JSON");
            if reply["id"] == id {
                if let Some(error) = reply.get("error") {
                    panic!("{method} failed: {error}");
                }
                return reply["result"].clone();
            }
            self.note(&reply);
        }
    }

    /// Keeps the page's errors from an event.
    fn note(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => self.errors.push(format!(
                "exception: {}",
                params["exceptionDetails"]["exception"]["description"]
                    .as_str()
                    .or(params["exceptionDetails"]["text"].as_str())
                    .unwrap_or("?")
            )),
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => self
                .errors
                .push(format!("console.error: {}", params["args"])),
            Some("Log.entryAdded") if params["entry"]["level"] == "error" => self.errors.push(
                format!("log: {}", params["entry"]["text"].as_str().unwrap_or("?")),
            ),
            _ => {}
        }
    }

    /// Navigates the page to `url` and waits until it has loaded.
    pub async fn open(&mut self, url: &str) {
        let navigated = self.command("Page.navigate", json!({ "url": url })).await;
        if let Some(error) = navigated.get("errorText") {
            panic!("could not open {url}: {error}");
        }
        self.wait_for(
            "document.readyState === 'complete'",
            Duration::from_secs(30),
        )
        .await;
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .command(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is truthy (or `limit` passes: a panic naming it);
    /// returns its last value.
    pub async fn wait_for(&mut self, expression: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let value = self.eval(expression).await;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "not true within {limit:?} in the page: {expression} (page errors: {:?})",
                self.errors
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Errors the page reported so far: exceptions, `console.error`, and log errors such
    /// as refused loads and Content-Security-Policy violations.
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    /// Writes a PNG of the page as it is shown now to `path`.
    pub async fn screenshot(&mut self, path: &Path) {
        let shot = self
            .command("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("image data"))
            .expect("base64 image data");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("the screenshot's directory");
        }
        std::fs::write(path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
