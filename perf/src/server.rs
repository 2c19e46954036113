//! Starts a `minipay serve` process for a benchmark and stops it afterwards.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;

pub struct Server {
    pub base: String,
    child: tokio::process::Child,
}

/// At least 32 characters, or the server refuses to start.
pub const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef";

pub fn binary() -> String {
    std::env::var("MINIPAY_BIN")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release/minipay").to_owned())
}

impl Server {
    /// Starts the server on `database_url` with `extra` environment, and waits for /healthz.
    pub async fn start(
        database_url: &str,
        clickhouse_database: &str,
        extra: &[(&str, String)],
    ) -> anyhow::Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut command = tokio::process::Command::new(binary());
        command
            .arg("serve")
            .env("MINIPAY_ADDR", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", database_url)
            .env("CLICKHOUSE_DATABASE", clickhouse_database)
            .env("MINIPAY_ADMIN_TOKEN", ADMIN_TOKEN)
            // Sign-up cost is not what is measured; cheap hashes make setup quick.
            .env("MINIPAY_ARGON2_MEMORY_KIB", "1024")
            .env("MINIPAY_ARGON2_ITERATIONS", "1")
            // ... and a hashing queue that no scenario's log-ins fill (the default, 32 per
            // core, would refuse some of 200 daily users logging in at once).
            .env("MINIPAY_ARGON2_QUEUE", "4096")
            // Set-up signs up and logs in many users from this one address.
            .env("MINIPAY_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE", "0")
            // The settlement scenario has each user split a bill every iteration, far past the
            // hourly limit meant for people.
            .env("MINIPAY_SETTLEMENTS_PER_HOUR", "0")
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (name, value) in extra {
            command.env(name, value);
        }
        let child =
            command.spawn().with_context(|| format!("starting {} (run cargo build --release first)", binary()))?;
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..600 {
            if let Ok(response) = client.get(format!("{base}/healthz")).send().await {
                if response.status().is_success() {
                    if let Some(pid) = child.id() {
                        crate::cpu::watch_server(pid);
                    }
                    return Ok(Server { base, child });
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("minipay did not come up on {base}")
    }

    /// The server's resident memory now and its peak so far.
    pub fn memory(&self) -> Memory {
        self.child.id().map(memory_of).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            crate::cpu::forget_server(pid);
            // SIGTERM: graceful shutdown drains the ledger queue.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

/// A process's resident memory (VmRSS) and its peak since it started (VmHWM).
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1} MiB resident (peak so far {:.1} MiB)", mib(self.rss_kib), mib(self.peak_kib))
    }
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// From /proc/<pid>/status; zeros when the process is gone.
pub fn memory_of(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Memory { rss_kib: field("VmRSS:"), peak_kib: field("VmHWM:") }
}
