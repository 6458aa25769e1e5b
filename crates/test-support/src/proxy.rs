//! A fault-injecting TCP proxy: real transport faults between a client and its server
//! (feature `proxy`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const SWALLOW: u8 = 3;

/// What the proxy does with new connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward to the target.
    Pass,
    /// Accept, then close at once (a refused or reset connection).
    Refuse,
    /// Accept and read, never forward, never answer (a server that hangs).
    BlackHole,
    /// Forward requests, drop the answers: the server applies a command and the client never
    /// hears of it (a reply lost after the command was applied). Unlike the other modes this
    /// one also applies to connections already open, from their next answer on.
    SwallowReplies,
}

/// A TCP proxy in front of `target` that can refuse, black-hole and delay new connections,
/// freeze and cut the open ones, and counts what reaches the target.
#[derive(Clone, Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    delay_ms: Arc<AtomicU64>,
    cut: Arc<watch::Sender<u64>>,
    frozen: Arc<watch::Sender<bool>>,
    forwarded_bytes: Arc<AtomicU64>,
    forwarded_connections: Arc<AtomicU64>,
}

impl FaultProxy {
    /// Starts a proxy on a loopback port, forwarding to `target`.
    pub async fn start(target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let (cut, _) = watch::channel(0u64);
        let (frozen, _) = watch::channel(false);
        let proxy = FaultProxy {
            addr: listener.local_addr().expect("bound"),
            mode: Arc::new(AtomicU8::new(0)),
            delay_ms: Arc::new(AtomicU64::new(0)),
            cut: Arc::new(cut),
            frozen: Arc::new(frozen),
            forwarded_bytes: Arc::default(),
            forwarded_connections: Arc::default(),
        };
        let p = proxy.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let p = p.clone();
                tokio::spawn(async move { p.serve(client, target).await });
            }
        });
        proxy
    }

    async fn serve(&self, mut client: TcpStream, target: SocketAddr) {
        let mut cut = self.cut.subscribe();
        let opened_at = *cut.borrow();
        match self.mode() {
            Mode::Refuse => return,
            Mode::BlackHole => {
                let mut sink = [0u8; 4096];
                loop {
                    tokio::select! {
                        read = client.read(&mut sink) => if matches!(read, Ok(0) | Err(_)) { return },
                        _ = cut.changed() => return,
                    }
                }
            }
            Mode::Pass | Mode::SwallowReplies => {}
        }
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let Ok(server) = TcpStream::connect(target).await else {
            return;
        };
        self.forwarded_connections.fetch_add(1, Ordering::SeqCst);
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        let counted = self.forwarded_bytes.clone();
        let (frozen_up, frozen_down) = (self.frozen.subscribe(), self.frozen.subscribe());
        // A cut takes effect for every byte not yet forwarded when `cut` returns, whenever
        // this task next runs: nothing crosses a connection after it was cut.
        let (cut_up, cut_down) = (self.cut.subscribe(), self.cut.subscribe());
        let up = async move {
            let mut buf = [0u8; 16 * 1024];
            let mut frozen = frozen_up;
            loop {
                let n = match client_read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if frozen.wait_for(|f| !*f).await.is_err() {
                    return;
                }
                if *cut_up.borrow() != opened_at {
                    return;
                }
                counted.fetch_add(n as u64, Ordering::SeqCst);
                if server_write.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        };
        let mode = self.mode.clone();
        let down = async move {
            let mut buf = [0u8; 16 * 1024];
            let mut frozen = frozen_down;
            loop {
                let n = match server_read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if mode.load(Ordering::SeqCst) == SWALLOW {
                    continue;
                }
                if frozen.wait_for(|f| !*f).await.is_err() {
                    return;
                }
                if *cut_down.borrow() != opened_at {
                    return;
                }
                if client_write.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        };
        // Whichever ends first (or a cut) drops both halves of both sockets: closed.
        tokio::select! {
            _ = up => {}
            _ = down => {}
            _ = cut.changed() => {}
        }
    }

    /// The proxy's address: point the client here.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What new connections get from now on.
    pub fn set_mode(&self, mode: Mode) {
        let code = match mode {
            Mode::Pass => 0,
            Mode::Refuse => 1,
            Mode::BlackHole => 2,
            Mode::SwallowReplies => SWALLOW,
        };
        self.mode.store(code, Ordering::SeqCst);
    }

    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::SeqCst) {
            1 => Mode::Refuse,
            2 => Mode::BlackHole,
            SWALLOW => Mode::SwallowReplies,
            _ => Mode::Pass,
        }
    }

    /// Refuse new connections (`true`) or forward them again (`false`).
    pub fn refuse(&self, on: bool) {
        self.set_mode(if on { Mode::Refuse } else { Mode::Pass });
    }

    /// Delay each new forwarded connection by `delay` before it reaches the target.
    pub fn delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Freezes (`true`) or thaws (`false`) every forwarded connection, open and new: while
    /// frozen, no byte moves either way and nothing is closed, as in a network partition or
    /// a server stopped with `SIGSTOP`.
    pub fn freeze(&self, on: bool) {
        self.frozen.send_replace(on);
    }

    /// Closes every open connection now (forwarded and black-holed alike).
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// Bytes forwarded from clients to the target so far (queries that reached it).
    pub fn forwarded_bytes(&self) -> u64 {
        self.forwarded_bytes.load(Ordering::SeqCst)
    }

    /// Connections forwarded to the target so far.
    pub fn forwarded_connections(&self) -> u64 {
        self.forwarded_connections.load(Ordering::SeqCst)
    }
}
