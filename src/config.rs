//! Configuration from the environment, with defaults that run on a laptop.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, Context};
use chrono_tz::Tz;

use crate::clock::ClockMode;

#[derive(Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub database_url: String,
    pub clickhouse_url: String,
    pub clickhouse_database: String,
    pub clock_mode: ClockMode,
    pub admin_token: Option<String>,
    pub tz: Tz,
    pub daily_charge_limit_krw: i64,
    pub db_pool_size: u32,
    pub request_timeout: Duration,
    pub request_body_limit_bytes: usize,
    pub session_ttl: chrono::Duration,
    /// How long a checked token is trusted without asking the database (0 turns it off).
    pub session_cache_ttl: Duration,
    pub password_hash_cost: crate::domain::passwords::HashCost,
    /// Hashes at once and hashes waiting (`MINIPAY_ARGON2_CONCURRENCY`, `MINIPAY_ARGON2_QUEUE`).
    pub password_hashing: crate::hashing::HashingLimits,
    /// How long an idempotency key is remembered (at least 24 hours, as the README promises).
    pub idempotency_ttl: chrono::Duration,
    pub ledger: LedgerConfig,
    /// Whether `serve` runs the outbox forwarder (`MINIPAY_FORWARDER=off` leaves it to
    /// `minipay forward` processes).
    pub forwarder: bool,
    /// Test hook (`MINIPAY_FORWARDER_ABORT_AFTER_INSERT=1`): the forwarder aborts the process
    /// right after its first ClickHouse insert, before the outbox rows are deleted, so tests
    /// can show that a crash there replays the batch without showing it twice.
    pub forwarder_abort_after_insert: bool,
    pub jobs: JobsConfig,
    /// Log-in and sign-up rate limits (`MINIPAY_LOGIN_ATTEMPTS_PER_NAME_PER_MINUTE`,
    /// `MINIPAY_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE`; 0 turns one off).
    pub login_limits: crate::http::login_limit::LoginLimits,
    /// Whether the client address is taken from the last `X-Forwarded-For` entry (the one the
    /// proxy in front added) rather than from the socket (`MINIPAY_TRUST_X_FORWARDED_FOR=1`).
    /// Only for a server reachable through that proxy alone: otherwise anyone can pick an
    /// address and escape the per-address limit.
    pub trust_forwarded_for: bool,
    /// Bounds on friends, blocks and split-bill requests (`MINIPAY_FRIENDS_MAX`,
    /// `MINIPAY_BLOCKS_MAX`, `MINIPAY_SETTLEMENTS_PER_HOUR`,
    /// `MINIPAY_OPEN_SHARES_PER_PARTICIPANT`).
    pub social_limits: crate::domain::social::SocialLimits,
    /// `MINIPAY_CLICKHOUSE_MAX_EXECUTION_SECS` (every query's limit on the server) and
    /// `MINIPAY_HISTORY_CLICKHOUSE_TIMEOUT_MS` (when a history read gives up on ClickHouse).
    pub clickhouse_timeouts: crate::history::clickhouse::ClickHouseTimeouts,
    /// `MINIPAY_HEADER_READ_TIMEOUT_MS`, `MINIPAY_IDLE_TIMEOUT_MS`, `MINIPAY_MAX_CONNECTIONS`.
    pub connections: crate::http::serve::ConnectionLimits,
}

/// The scheduler and the job runner (docs/architecture.md, "Jobs and time").
#[derive(Clone, Debug)]
pub struct JobsConfig {
    /// Whether `serve` runs the scheduler loop (`MINIPAY_SCHEDULER=off` leaves jobs to
    /// `minipay jobs run` and the admin route). A manual clock never ticks it, whatever this
    /// says: time moves only when an operator moves it, so jobs run only when asked.
    pub scheduler: bool,
    /// Pause between scheduler ticks; a tick runs whatever is due. Frequent jobs (reminders,
    /// pending expiry) run on every tick, so this is how late they may be.
    pub tick: Duration,
    /// Items one chunk (one transaction) handles at most.
    pub chunk_size: usize,
    /// For crash tests only: abort the process, as a crash would, once a job run has committed
    /// this many chunks (`MINIPAY_JOBS_ABORT_AFTER_CHUNKS`; unset in production).
    pub abort_after_chunks: Option<u32>,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig { scheduler: true, tick: Duration::from_secs(60), chunk_size: 1_000, abort_after_chunks: None }
    }
}

/// Sizes of the batched ledger writer (docs/architecture.md, "The write path").
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    /// Ledger commands one process holds at most, wherever they are (queued, waiting for rows
    /// a running batch has claimed, in a batch); past it a command answers 503 at once instead
    /// of adding to the wait.
    pub queue_capacity: usize,
    /// Commands applied in one SERIALIZABLE transaction at most.
    pub batch_size_max: usize,
    /// Concurrent batch transactions per process: a few, not many.
    pub writers: usize,
    /// Attempts of one batch on serialization failures and deadlocks.
    pub attempts_max: u32,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig { queue_capacity: 10_000, batch_size_max: 256, writers: 2, attempts_max: 12 }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("addr", &self.addr)
            .field("database_url", &redact_url(&self.database_url))
            .field("clickhouse_url", &redact_url(&self.clickhouse_url))
            .field("clickhouse_database", &self.clickhouse_database)
            .field("clock_mode", &self.clock_mode)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<set>"))
            .field("tz", &self.tz)
            .field("ledger", &self.ledger)
            .field("forwarder", &self.forwarder)
            .field("forwarder_abort_after_insert", &self.forwarder_abort_after_insert)
            .field("jobs", &self.jobs)
            .field("login_limits", &self.login_limits)
            .field("password_hashing", &self.password_hashing)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .field("clickhouse_timeouts", &self.clickhouse_timeouts)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

/// `url` as it may be logged: the userinfo of `scheme://user:password@host` becomes `***`, and
/// so does the value of any `password=` (a PostgreSQL URL's query or a key=value connection
/// string may carry one). Errs on the side of hiding: everything between `://` and the last
/// `@` before any `?` or `#` goes, whatever characters the password holds.
pub fn redact_url(url: &str) -> String {
    let mut redacted = url.to_owned();
    if let Some(scheme_end) = redacted.find("://") {
        let start = scheme_end + 3;
        let end = redacted[start..].find(['?', '#']).map_or(redacted.len(), |at| start + at);
        if let Some(at) = redacted[start..end].rfind('@') {
            redacted.replace_range(start..start + at, "***");
        }
    }
    let mut from = 0;
    while let Some(found) = redacted[from..].to_ascii_lowercase().find("password=") {
        let value = from + found + "password=".len();
        let end = redacted[value..].find(['&', ' ', '#']).map_or(redacted.len(), |at| value + at);
        redacted.replace_range(value..end, "***");
        from = value + 3;
    }
    redacted
}

/// The most a user may top up per business day unless `MINIPAY_DAILY_CHARGE_LIMIT_KRW` says
/// otherwise (README, "Configuration").
pub const DAILY_CHARGE_LIMIT_KRW_DEFAULT: i64 = 3_000_000;

/// The shortest `MINIPAY_ADMIN_TOKEN` a server starts with: the token is all that guards the
/// operator routes, so it must be long enough that guessing it is hopeless.
pub const ADMIN_TOKEN_LENGTH_MIN_CHARS: usize = 32;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

fn parsed<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(text) => text.parse().map_err(|error| anyhow!("{name}={text:?}: {error}")),
    }
}

fn social_limits_from_env() -> anyhow::Result<crate::domain::social::SocialLimits> {
    let defaults = crate::domain::social::SocialLimits::default();
    let limits = crate::domain::social::SocialLimits {
        friends_max: parsed("MINIPAY_FRIENDS_MAX", defaults.friends_max)?,
        blocks_max: parsed("MINIPAY_BLOCKS_MAX", defaults.blocks_max)?,
        settlements_per_hour: parsed("MINIPAY_SETTLEMENTS_PER_HOUR", defaults.settlements_per_hour)?,
        open_shares_per_participant: parsed(
            "MINIPAY_OPEN_SHARES_PER_PARTICIPANT",
            defaults.open_shares_per_participant,
        )?,
    };
    anyhow::ensure!(limits.friends_max >= 1, "MINIPAY_FRIENDS_MAX must be >= 1");
    anyhow::ensure!(limits.blocks_max >= 1, "MINIPAY_BLOCKS_MAX must be >= 1");
    Ok(limits)
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let clock_mode = match var("MINIPAY_CLOCK").as_deref() {
            None | Some("system") => ClockMode::System,
            Some("manual") => ClockMode::Manual,
            Some(other) => return Err(anyhow!("MINIPAY_CLOCK={other:?}: expected system or manual")),
        };
        let tz_name = var("MINIPAY_TZ").unwrap_or_else(|| "Asia/Seoul".to_owned());
        let tz: Tz = tz_name.parse().map_err(|error| anyhow!("MINIPAY_TZ={tz_name:?}: {error}"))?;
        let defaults = LedgerConfig::default();
        let forwarder = match var("MINIPAY_FORWARDER").as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => return Err(anyhow!("MINIPAY_FORWARDER={other:?}: expected on or off")),
        };
        let forwarder_abort_after_insert = match var("MINIPAY_FORWARDER_ABORT_AFTER_INSERT").as_deref() {
            None | Some("0") => false,
            Some("1") => true,
            Some(other) => return Err(anyhow!("MINIPAY_FORWARDER_ABORT_AFTER_INSERT={other:?}: expected 0 or 1")),
        };
        let scheduler = match var("MINIPAY_SCHEDULER").as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(other) => return Err(anyhow!("MINIPAY_SCHEDULER={other:?}: expected on or off")),
        };
        let jobs_defaults = JobsConfig::default();
        let trust_forwarded_for = match var("MINIPAY_TRUST_X_FORWARDED_FOR").as_deref() {
            None | Some("0") => false,
            Some("1") => true,
            Some(other) => return Err(anyhow!("MINIPAY_TRUST_X_FORWARDED_FOR={other:?}: expected 0 or 1")),
        };
        let login_defaults = crate::http::login_limit::LoginLimits::default();
        let clickhouse_defaults = crate::history::clickhouse::ClickHouseTimeouts::default();
        let connection_defaults = crate::http::serve::ConnectionLimits::default();
        Ok(Config {
            addr: parsed("MINIPAY_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            database_url: var("DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/minipay".to_owned()),
            clickhouse_url: var("CLICKHOUSE_URL").unwrap_or_else(|| "http://127.0.0.1:8123".to_owned()),
            clickhouse_database: var("CLICKHOUSE_DATABASE").unwrap_or_else(|| "minipay".to_owned()),
            clock_mode,
            admin_token: var("MINIPAY_ADMIN_TOKEN"),
            tz,
            daily_charge_limit_krw: parsed("MINIPAY_DAILY_CHARGE_LIMIT_KRW", DAILY_CHARGE_LIMIT_KRW_DEFAULT)?,
            db_pool_size: parsed("MINIPAY_DB_POOL_SIZE", 32)?,
            request_timeout: Duration::from_millis(parsed("MINIPAY_REQUEST_TIMEOUT_MS", 10_000)?),
            request_body_limit_bytes: parsed("MINIPAY_REQUEST_BODY_LIMIT_BYTES", 64 * 1024)?,
            session_ttl: chrono::Duration::seconds(parsed("MINIPAY_SESSION_TTL_SECS", 24 * 3600)?),
            session_cache_ttl: Duration::from_millis(parsed("MINIPAY_SESSION_CACHE_TTL_MS", 5_000)?),
            password_hash_cost: crate::domain::passwords::HashCost {
                memory_kib: parsed(
                    "MINIPAY_ARGON2_MEMORY_KIB",
                    crate::domain::passwords::HashCost::default().memory_kib,
                )?,
                iterations: parsed(
                    "MINIPAY_ARGON2_ITERATIONS",
                    crate::domain::passwords::HashCost::default().iterations,
                )?,
            },
            password_hashing: {
                let concurrency =
                    parsed("MINIPAY_ARGON2_CONCURRENCY", crate::hashing::HashingLimits::default().concurrency)?;
                crate::hashing::HashingLimits {
                    concurrency,
                    queue: parsed(
                        "MINIPAY_ARGON2_QUEUE",
                        crate::hashing::HashingLimits::with_concurrency(concurrency).queue,
                    )?,
                }
            },
            idempotency_ttl: chrono::Duration::seconds(parsed("MINIPAY_IDEMPOTENCY_TTL_SECS", 48 * 3600)?),
            ledger: LedgerConfig {
                queue_capacity: parsed("MINIPAY_LEDGER_QUEUE_CAPACITY", defaults.queue_capacity)?,
                batch_size_max: parsed("MINIPAY_LEDGER_BATCH_SIZE_MAX", defaults.batch_size_max)?,
                writers: parsed("MINIPAY_LEDGER_WRITERS", defaults.writers)?,
                attempts_max: parsed("MINIPAY_LEDGER_ATTEMPTS_MAX", defaults.attempts_max)?,
            },
            forwarder,
            forwarder_abort_after_insert,
            jobs: JobsConfig {
                scheduler,
                tick: Duration::from_millis(parsed(
                    "MINIPAY_SCHEDULER_TICK_MS",
                    jobs_defaults.tick.as_millis() as u64,
                )?),
                chunk_size: parsed("MINIPAY_JOBS_CHUNK_SIZE", jobs_defaults.chunk_size)?,
                abort_after_chunks: var("MINIPAY_JOBS_ABORT_AFTER_CHUNKS")
                    .map(|text| {
                        text.parse().map_err(|error| anyhow!("MINIPAY_JOBS_ABORT_AFTER_CHUNKS={text:?}: {error}"))
                    })
                    .transpose()?,
            },
            login_limits: crate::http::login_limit::LoginLimits {
                failures_per_name_per_minute: parsed(
                    "MINIPAY_LOGIN_ATTEMPTS_PER_NAME_PER_MINUTE",
                    login_defaults.failures_per_name_per_minute,
                )?,
                attempts_per_address_per_minute: parsed(
                    "MINIPAY_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE",
                    login_defaults.attempts_per_address_per_minute,
                )?,
                admin_failures_per_address_per_minute: parsed(
                    "MINIPAY_ADMIN_FAILURES_PER_ADDRESS_PER_MINUTE",
                    login_defaults.admin_failures_per_address_per_minute,
                )?,
            },
            trust_forwarded_for,
            social_limits: social_limits_from_env()?,
            clickhouse_timeouts: crate::history::clickhouse::ClickHouseTimeouts {
                query_max: Duration::from_secs(parsed(
                    "MINIPAY_CLICKHOUSE_MAX_EXECUTION_SECS",
                    clickhouse_defaults.query_max.as_secs(),
                )?),
                history_read: Duration::from_millis(parsed(
                    "MINIPAY_HISTORY_CLICKHOUSE_TIMEOUT_MS",
                    clickhouse_defaults.history_read.as_millis() as u64,
                )?),
            },
            connections: crate::http::serve::ConnectionLimits {
                header_read_timeout: Duration::from_millis(parsed(
                    "MINIPAY_HEADER_READ_TIMEOUT_MS",
                    connection_defaults.header_read_timeout.as_millis() as u64,
                )?),
                idle_timeout: Duration::from_millis(parsed(
                    "MINIPAY_IDLE_TIMEOUT_MS",
                    connection_defaults.idle_timeout.as_millis() as u64,
                )?),
                max_connections: parsed("MINIPAY_MAX_CONNECTIONS", connection_defaults.max_connections)?,
            },
        })
        .and_then(Config::validated)
    }

    fn validated(self) -> anyhow::Result<Self> {
        (|| {
            anyhow::ensure!(
                self.idempotency_ttl >= chrono::Duration::hours(24),
                "MINIPAY_IDEMPOTENCY_TTL_SECS must be at least 86400"
            );
            anyhow::ensure!(self.daily_charge_limit_krw > 0, "MINIPAY_DAILY_CHARGE_LIMIT_KRW must be > 0");
            anyhow::ensure!(self.db_pool_size >= 2, "MINIPAY_DB_POOL_SIZE must be >= 2");
            anyhow::ensure!(
                (1..=crate::hashing::CONCURRENCY_MAX).contains(&self.password_hashing.concurrency),
                "MINIPAY_ARGON2_CONCURRENCY must be between 1 and {}",
                crate::hashing::CONCURRENCY_MAX
            );
            anyhow::ensure!(self.ledger.batch_size_max >= 1, "MINIPAY_LEDGER_BATCH_SIZE_MAX must be >= 1");
            anyhow::ensure!(self.ledger.writers >= 1, "MINIPAY_LEDGER_WRITERS must be >= 1");
            anyhow::ensure!(self.ledger.queue_capacity >= 1, "MINIPAY_LEDGER_QUEUE_CAPACITY must be >= 1");
            anyhow::ensure!(self.ledger.attempts_max >= 1, "MINIPAY_LEDGER_ATTEMPTS_MAX must be >= 1");
            anyhow::ensure!(
                (1..=crate::jobs::runner::CHUNK_SIZE_MAX).contains(&self.jobs.chunk_size),
                "MINIPAY_JOBS_CHUNK_SIZE must be between 1 and {}",
                crate::jobs::runner::CHUNK_SIZE_MAX
            );
            anyhow::ensure!(!self.jobs.tick.is_zero(), "MINIPAY_SCHEDULER_TICK_MS must be > 0");
            anyhow::ensure!(
                self.clickhouse_timeouts.query_max >= Duration::from_secs(1),
                "MINIPAY_CLICKHOUSE_MAX_EXECUTION_SECS must be >= 1"
            );
            anyhow::ensure!(
                !self.clickhouse_timeouts.history_read.is_zero(),
                "MINIPAY_HISTORY_CLICKHOUSE_TIMEOUT_MS must be > 0"
            );
            anyhow::ensure!(
                !self.connections.header_read_timeout.is_zero(),
                "MINIPAY_HEADER_READ_TIMEOUT_MS must be > 0"
            );
            anyhow::ensure!(!self.connections.idle_timeout.is_zero(), "MINIPAY_IDLE_TIMEOUT_MS must be > 0");
            anyhow::ensure!(self.connections.max_connections >= 1, "MINIPAY_MAX_CONNECTIONS must be >= 1");
            if let Some(token) = &self.admin_token {
                anyhow::ensure!(
                    token.chars().count() >= ADMIN_TOKEN_LENGTH_MIN_CHARS,
                    "MINIPAY_ADMIN_TOKEN must be at least {ADMIN_TOKEN_LENGTH_MIN_CHARS} characters"
                );
            }
            Ok(())
        })()
        .context("invalid configuration")?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_redacted() {
        for (url, shown) in [
            ("http://127.0.0.1:8123", "http://127.0.0.1:8123"),
            ("http://user:secret@ch.internal:8123/", "http://***@ch.internal:8123/"),
            ("http://user@ch.internal:8123", "http://***@ch.internal:8123"),
            ("postgres://app:s3cr%40t@db:5432/minipay", "postgres://***@db:5432/minipay"),
            ("postgres://app:p/a@ss@db/minipay?sslmode=require", "postgres://***@db/minipay?sslmode=require"),
            (
                "postgres://db/minipay?user=app&password=secret&sslmode=require",
                "postgres://db/minipay?user=app&password=***&sslmode=require",
            ),
            ("host=db user=app password=secret dbname=minipay", "host=db user=app password=*** dbname=minipay"),
            ("postgres://db/minipay?PASSWORD=secret", "postgres://db/minipay?PASSWORD=***"),
            ("", ""),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn the_debug_output_hides_both_urls_credentials() {
        let config = Config {
            database_url: "postgres://postgres:pg-secret@127.0.0.1:5432/minipay".to_owned(),
            clickhouse_url: "http://default:ch-secret@127.0.0.1:8123".to_owned(),
            admin_token: Some("a".repeat(40)),
            ..Config::from_env().expect("the defaults are a valid configuration")
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("secret") && !shown.contains(&"a".repeat(40)), "{shown}");
        assert!(shown.contains("postgres://***@127.0.0.1:5432/minipay"), "{shown}");
        assert!(shown.contains("http://***@127.0.0.1:8123"), "{shown}");
    }
}
