//! CPU time of the processes a benchmark drives, read from /proc: the minipay servers it
//! started, the PostgreSQL processes working for its database (its backends and autovacuum,
//! and the cluster's shared writers), and its ClickHouse server. Taken around a measured
//! window, it gives CPU microseconds per request for each side, which (unlike throughput)
//! barely moves when other work shares the machine, since that work is not counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Pids of the `minipay serve` processes running for the benchmark (see `crate::server`).
static SERVERS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// The benchmark's PostgreSQL cluster and database, and its ClickHouse server.
static STORES: Mutex<Option<Stores>> = Mutex::new(None);

#[derive(Debug, Clone)]
struct Stores {
    postmaster: u32,
    database: String,
    clickhouse: Option<u32>,
}

/// The PostgreSQL processes that count are the children of the postmaster of `database_url`'s
/// cluster that serve `database` or the whole cluster (WAL writer, checkpointer, …); other
/// databases' backends (tests running beside the benchmark) are left out. ClickHouse is the
/// server listening on `clickhouse_url`'s port.
pub async fn watch_stores(database_url: &str, database: &str, clickhouse_url: &str) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let backend: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
    let postmaster = parent_of(backend as u32).ok_or_else(|| anyhow::anyhow!("no parent of backend {backend}"))?;
    let port = clickhouse_url.rsplit(':').next().and_then(|port| port.trim_end_matches('/').parse().ok());
    let clickhouse = port.and_then(listener_pid);
    *STORES.lock().expect("stores") = Some(Stores { postmaster, database: database.to_owned(), clickhouse });
    Ok(())
}

pub fn watch_server(pid: u32) {
    SERVERS.lock().expect("server pid list").push(pid);
}

pub fn forget_server(pid: u32) {
    SERVERS.lock().expect("server pid list").retain(|watched| *watched != pid);
}

/// CPU seconds (user + system) used by each side: a reading, or the difference of two.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub server: f64,
    pub postgres: f64,
    pub clickhouse: f64,
}

impl Usage {
    pub fn plus(self, other: Usage) -> Usage {
        Usage {
            server: self.server + other.server,
            postgres: self.postgres + other.postgres,
            clickhouse: self.clickhouse + other.clickhouse,
        }
    }

    /// Microseconds per request of each side, as "server 412 µs, PostgreSQL 380 µs, …".
    pub fn per_request(self, requests: f64) -> String {
        let us = |seconds: f64| if requests > 0.0 { seconds * 1e6 / requests } else { f64::NAN };
        format!(
            "server {:.0} µs, PostgreSQL {:.0} µs, ClickHouse {:.0} µs",
            us(self.server),
            us(self.postgres),
            us(self.clickhouse)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Side {
    Server,
    Postgres,
    Clickhouse,
}

/// Every counted process now: its side and the CPU seconds it has used so far (see
/// [`watch_stores`]; before it is called, every PostgreSQL and ClickHouse process counts).
fn readings() -> Vec<(u32, Side, f64)> {
    let servers = SERVERS.lock().expect("server pid list").clone();
    let stores = STORES.lock().expect("stores").clone();
    let mut found: Vec<(u32, Side)> = servers.iter().map(|pid| (*pid, Side::Server)).collect();
    found.extend(stores.as_ref().and_then(|stores| stores.clickhouse).map(|pid| (pid, Side::Clickhouse)));
    for pid in pids() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let comm = comm.trim();
        let side = match &stores {
            None if comm.starts_with("clickhouse") => Some(Side::Clickhouse),
            None => (comm == "postgres" || comm.starts_with("postgres:")).then_some(Side::Postgres),
            Some(stores) => {
                (parent_of(pid) == Some(stores.postmaster) && serves(pid, &stores.database)).then_some(Side::Postgres)
            }
        };
        found.extend(side.map(|side| (pid, side)));
    }
    found.into_iter().filter_map(|(pid, side)| Some((pid, side, seconds_of(pid)?))).collect()
}

/// Measures the CPU of the counted processes from `start` to `finish`, polling /proc every
/// 100 ms so that processes ending in between (pgbench's backends, when pgbench exits) count
/// with what they had used when last seen.
pub struct Meter {
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Usage>,
}

impl Meter {
    pub fn start() -> Meter {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let thread = std::thread::spawn(move || {
            // pid -> (side, seconds when first seen, seconds when last seen)
            let mut seen: HashMap<u32, (Side, f64, f64)> = HashMap::new();
            let mut first = true;
            loop {
                let stop = flag.load(Ordering::Acquire);
                for (pid, side, seconds) in readings() {
                    let baseline = if first { seconds } else { 0.0 };
                    seen.entry(pid).or_insert((side, baseline, seconds)).2 = seconds;
                }
                first = false;
                if stop {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            seen.values().fold(Usage::default(), |usage, (side, from, to)| {
                let used = (to - from).max(0.0);
                match side {
                    Side::Server => Usage { server: usage.server + used, ..usage },
                    Side::Postgres => Usage { postgres: usage.postgres + used, ..usage },
                    Side::Clickhouse => Usage { clickhouse: usage.clickhouse + used, ..usage },
                }
            })
        });
        Meter { done, thread }
    }

    pub fn finish(self) -> Usage {
        self.done.store(true, Ordering::Release);
        self.thread.join().expect("cpu meter thread")
    }
}

fn pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()))
}

/// A postmaster child works for `database` when its title names it (a backend, an autovacuum
/// worker) or names no database at all (the cluster's shared processes).
fn serves(pid: u32, database: &str) -> bool {
    let title = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let title = String::from_utf8_lossy(&title).replace('\0', " ");
    const SHARED: [&str; 7] = [
        "walwriter",
        "checkpointer",
        "background writer",
        "autovacuum launcher",
        "logical replication launcher",
        "walsender",
        "archiver",
    ];
    title.split_whitespace().any(|word| word == database) || SHARED.iter().any(|name| title.contains(name))
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split_whitespace().nth(1)?.parse().ok()
}

/// The process listening on 127.0.0.1/0.0.0.0:`port` (IPv4 or IPv6), from /proc/net/tcp*.
fn listener_pid(port: u16) -> Option<u32> {
    let hex_port = format!(":{port:04X}");
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .flat_map(|path| {
            std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect::<Vec<_>>()
        })
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address, st (0A = LISTEN), inode
            (fields.len() > 9 && fields[1].ends_with(&hex_port) && fields[3] == "0A").then(|| fields[9].to_owned())
        })
        .collect();
    pids().find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd")).into_iter().flatten().flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|link| {
                let link = link.to_string_lossy();
                inodes.iter().any(|inode| link == format!("socket:[{inode}]"))
            })
        })
    })
}

/// utime + stime of a process (fields 14 and 15 of /proc/<pid>/stat, after the command name).
fn seconds_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / ticks_per_second())
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_read_and_differences_add_up() {
        let pid = std::process::id();
        let before = seconds_of(pid).expect("own stat");
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(seconds_of(pid).expect("own stat") >= before);
        assert_eq!(parent_of(pid), Some(std::os::unix::process::parent_id()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        assert_eq!(listener_pid(listener.local_addr().expect("addr").port()), Some(pid));
        let a = Usage { server: 1.0, postgres: 2.0, clickhouse: 3.0 };
        let b = Usage { server: 1.5, postgres: 2.5, clickhouse: 3.0 };
        assert_eq!(a.plus(a), Usage { server: 2.0, postgres: 4.0, clickhouse: 6.0 });
        assert_eq!(b.per_request(1000.0), "server 1500 µs, PostgreSQL 2500 µs, ClickHouse 3000 µs");
    }
}
