//! A PostgreSQL server of a test's own, on a port of its own, for faults that must not touch
//! the shared server: `SIGSTOP` (a frozen server), `SIGKILL`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The variable that points at PostgreSQL's `bin` directory (with `initdb` and `postgres`),
/// when it is not found on its own (`pg_config --bindir`, `/usr/lib/postgresql/*/bin`).
pub const BINDIR_ENV: &str = "BREAKER_TEST_PG_BINDIR";

/// A throw-away PostgreSQL cluster: `initdb` in a fresh directory, `postgres` on a free
/// loopback port. The whole server (postmaster and every backend) can be frozen and thawed.
/// Dropping it kills the server and removes the directory.
#[derive(Debug)]
pub struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
    server: Child,
}

/// The postmaster's process id (first line of `postmaster.pid`).
fn postmaster(data: &Path) -> Option<u32> {
    std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// `pid` and its children (each backend is a session of its own, so a process group does
/// not reach them): read from `/proc`.
fn with_children(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces, so read after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            all.push(child);
        }
    }
    all
}

fn signal(pids: &[u32], signal: &str) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(signal)
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

fn bindir() -> PathBuf {
    if let Ok(dir) = std::env::var(BINDIR_ENV) {
        return PathBuf::from(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL's server binaries (initdb, postgres) were not found: install Debian's \
             `postgresql` package, or set {BINDIR_ENV} to the directory that holds them"
        )
    })
}

/// Whether this process runs as root (PostgreSQL refuses to): then the server runs as the
/// `postgres` user, through `runuser`.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn command(program: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl PrivatePostgres {
    /// Creates and starts the cluster; waits (up to 30 s) until it accepts connections.
    pub fn start() -> PrivatePostgres {
        let bin = bindir();
        let as_postgres = is_root();
        let dir =
            std::env::temp_dir().join(format!("breaker-pg-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        if as_postgres {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&dir)
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "could not hand {} to the postgres user",
                dir.display()
            );
        }
        let data = dir.join("data");
        let initdb = command(&bin.join("initdb"), as_postgres)
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap_or_else(|e| panic!("could not run initdb from {}: {e}", bin.display()));
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let port = free_port();
        let server = command(&bin.join("postgres"), as_postgres)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=20",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("postgres starts");
        let pg = PrivatePostgres { dir, port, server };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the private PostgreSQL server did not listen on port {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        pg
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn processes(&self) -> Vec<u32> {
        postmaster(&self.dir.join("data")).map_or_else(Vec::new, with_children)
    }

    /// Freezes the whole server (`SIGSTOP` to the postmaster and every backend):
    /// connections stay open, nothing answers.
    pub fn freeze(&self) {
        signal(&self.processes(), "-STOP");
    }

    /// Thaws a frozen server (`SIGCONT`).
    pub fn thaw(&self) {
        signal(&self.processes(), "-CONT");
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let processes = self.processes();
        signal(&processes, "-CONT");
        signal(&processes, "-KILL");
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
