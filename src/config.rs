//! Configuration: every environment variable minipay reads, defined once ([`Settings`]: its
//! name, type, default and meaning, parsed by clap), validated into the [`Config`] the rest of
//! the code uses. The defaults run on a laptop; the README's configuration table lists the
//! same variables (`scripts/check-structure` checks it).
//!
//! This module depends on no other module of the crate but the leaf ones (`clock`, `domain`):
//! the limits the server's parts take (connections, log-ins, hashing, ClickHouse, jobs, the
//! ledger writer) are defined here and used there.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, Context};
use chrono_tz::Tz;
use clap::error::ContextKind;
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};

use crate::clock::ClockMode;
use crate::domain::passwords::HashCost;
use crate::domain::social::SocialLimits;
use crate::telemetry::LogFormat;

/// A secret: shown as `<redacted>` by `Debug` (and not `Display`ed at all), so it cannot end up
/// in a log by accident. [`Secret::expose`] (or `Deref`) reads it where it is used.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T> std::ops::Deref for Secret<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl From<String> for Secret<String> {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret<String> {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

/// A URL that may carry credentials (userinfo, `password=`): `Debug` shows it as
/// [`redact_url`] does, so the host stays visible in logs and the password does not.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&redact_url(&self.0), f)
    }
}

impl std::ops::Deref for SecretUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretUrl {
    fn from(value: String) -> Self {
        SecretUrl(value)
    }
}

impl From<&str> for SecretUrl {
    fn from(value: &str) -> Self {
        SecretUrl(value.to_owned())
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub addr: SocketAddr,
    pub database_url: SecretUrl,
    /// A hot standby of that PostgreSQL for plain reads (`MINIPAY_DATABASE_REPLICA_URL`), and
    /// how long a read waits for it to catch up (`store::replica`).
    pub replica: ReplicaConfig,
    pub clickhouse_url: SecretUrl,
    pub clickhouse_database: String,
    pub clock_mode: ClockMode,
    pub admin_token: Option<Secret<String>>,
    pub tz: Tz,
    pub daily_charge_limit_krw: i64,
    pub db_pool_size: u32,
    pub request_timeout: Duration,
    pub request_body_limit_bytes: usize,
    pub session_ttl: chrono::Duration,
    /// How long a checked token is trusted without asking the database (0 turns it off).
    pub session_cache_ttl: Duration,
    /// Rows of the daily counterparty totals of closed days each process keeps for summaries
    /// (`MINIPAY_SUMMARY_CACHE_ROWS`, `history::closed_days`; 0: none).
    pub summary_cache_rows: usize,
    pub password_hash_cost: HashCost,
    /// Hashes at once and hashes waiting (`MINIPAY_ARGON2_CONCURRENCY`, `MINIPAY_ARGON2_QUEUE`).
    pub password_hashing: HashingLimits,
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
    /// The forwarder's pause after a step that found less than a full batch: the longer, the
    /// fewer and larger ClickHouse's inserts, and the older what it holds
    /// ([`FORWARDER_LINGER`]).
    pub forwarder_linger: Duration,
    pub jobs: JobsConfig,
    /// Log-in and sign-up rate limits (`MINIPAY_LOGIN_ATTEMPTS_PER_NAME_PER_MINUTE`,
    /// `MINIPAY_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE`; 0 turns one off).
    pub login_limits: LoginLimits,
    /// Whether the client address is taken from the last `X-Forwarded-For` entry (the one the
    /// proxy in front added) rather than from the socket (`MINIPAY_TRUST_X_FORWARDED_FOR=1`).
    /// Only for a server reachable through that proxy alone: otherwise anyone can pick an
    /// address and escape the per-address limit.
    pub trust_forwarded_for: bool,
    /// Browser origins allowed by CORS (`MINIPAY_CORS_ORIGINS`); empty: CORS is off.
    pub cors_origins: Vec<String>,
    /// Bounds on friends, blocks and split-bill requests (`MINIPAY_FRIENDS_MAX`,
    /// `MINIPAY_BLOCKS_MAX`, `MINIPAY_SETTLEMENTS_PER_HOUR`,
    /// `MINIPAY_OPEN_SHARES_PER_PARTICIPANT`).
    pub social_limits: SocialLimits,
    /// `MINIPAY_CLICKHOUSE_MAX_EXECUTION_SECS` (every query's limit on the server) and
    /// `MINIPAY_HISTORY_CLICKHOUSE_TIMEOUT_MS` (when a history read gives up on ClickHouse).
    pub clickhouse_timeouts: ClickHouseTimeouts,
    /// `MINIPAY_HEADER_READ_TIMEOUT_MS`, `MINIPAY_IDLE_TIMEOUT_MS`, `MINIPAY_MAX_CONNECTIONS`.
    pub connections: ConnectionLimits,
    /// `MINIPAY_CLICKHOUSE_CLUSTER` and `MINIPAY_CLICKHOUSE_SHARD_URLS`: statements sharded by
    /// account over a cluster instead of the one server of `CLICKHOUSE_URL`.
    pub clickhouse_cluster: Option<ClickHouseCluster>,
}

/// A ClickHouse cluster (`history::clickhouse`): its name in the servers' `remote_servers`,
/// and the HTTP URL of one server of each shard, in the cluster's shard order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClickHouseCluster {
    pub name: String,
    pub shard_urls: Vec<SecretUrl>,
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

/// The largest chunk a job may be configured with.
pub const CHUNK_SIZE_MAX: usize = 100_000;

/// The history forwarder's pause after a step that found less than a full batch, unless
/// `MINIPAY_FORWARDER_LINGER_MS` says otherwise (`crate::history::forwarder`).
/// ClickHouse makes a part per insert, in every table the insert feeds (the entries and both
/// daily totals), and merges parts in the background: a forwarder inserting whatever trickled
/// in, as fast as it could, gave it dozens of inserts a second under write load, and its merges
/// took a fifth of the CPU. Waiting lets entries gather into fewer, larger inserts, for at most
/// this much extra lag (statements read what is not forwarded yet from PostgreSQL); a backlog
/// (full batches) is still moved without pause.
pub const FORWARDER_LINGER: Duration = Duration::from_millis(1_000);

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

/// How many log-in attempts each key may make per window (`http::login_limit`); 0 turns that
/// limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failed log-ins per user name per minute.
    pub failures_per_name_per_minute: u32,
    /// Log-in and sign-up attempts per client address per minute.
    pub attempts_per_address_per_minute: u32,
    /// Failed admin authentications per client address per minute.
    pub admin_failures_per_address_per_minute: u32,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            failures_per_name_per_minute: 10,
            attempts_per_address_per_minute: 100,
            admin_failures_per_address_per_minute: 10,
        }
    }
}

/// Time limits and the bound on open connections of the accept loop (`http::serve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From the first byte of a request to the end of its header.
    pub header_read_timeout: Duration,
    /// How long a connection may wait for its next request (or its first).
    pub idle_timeout: Duration,
    /// Connections open at once; further clients wait until one closes.
    pub max_connections: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: 10_000,
        }
    }
}

/// Reads from a PostgreSQL hot standby (`store::replica`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// The standby; `None`: every read goes to the primary.
    pub url: Option<SecretUrl>,
    /// How long a read waits for the standby to replay what the primary had written when the
    /// read arrived; past it the read goes to the primary.
    pub wait: Duration,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig { url: None, wait: Duration::from_millis(50) }
    }
}

/// How long ClickHouse may take (`history::clickhouse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClickHouseTimeouts {
    /// Every query's `max_execution_time`, in whole seconds (at least 1: ClickHouse 18.16
    /// reads a fraction as 0, which means no limit).
    pub query_max: Duration,
    /// How long a history read waits for ClickHouse before it answers from PostgreSQL and
    /// cancels its queries.
    pub history_read: Duration,
}

impl Default for ClickHouseTimeouts {
    fn default() -> Self {
        ClickHouseTimeouts { query_max: Duration::from_secs(60), history_read: Duration::from_secs(3) }
    }
}

/// How many password hashes run at once, and how many more may wait (`hashing`).
#[derive(Debug, Clone, Copy)]
pub struct HashingLimits {
    /// Hashes computed at once (`MINIPAY_ARGON2_CONCURRENCY`): the number of cores by default.
    pub concurrency: usize,
    /// Hashes waiting for a slot (`MINIPAY_ARGON2_QUEUE`); one more is refused.
    pub queue: usize,
}

/// Queued hashes per slot by default: the last in the queue waits about this many hash
/// times (32 × 30-60 ms at the default cost: 1-2 s), well within the request timeout.
pub const QUEUE_PER_SLOT_DEFAULT: usize = 32;
/// The most `MINIPAY_ARGON2_CONCURRENCY` may be: the blocking threads that compute hashes are
/// bounded too (see `main`).
pub const CONCURRENCY_MAX: usize = 64;

impl HashingLimits {
    /// `concurrency` slots with the default queue for them.
    pub fn with_concurrency(concurrency: usize) -> Self {
        HashingLimits { concurrency, queue: concurrency * QUEUE_PER_SLOT_DEFAULT }
    }
}

impl Default for HashingLimits {
    fn default() -> Self {
        HashingLimits::with_concurrency(std::thread::available_parallelism().map(usize::from).unwrap_or(2))
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
/// How long idempotency keys are remembered, by default: two days.
pub const IDEMPOTENCY_TTL_SECS_DEFAULT: i64 = 48 * 3600;

/// The shortest `MINIPAY_ADMIN_TOKEN` a server starts with: the token is all that guards the
/// operator routes, so it must be long enough that guessing it is hopeless.
pub const ADMIN_TOKEN_LENGTH_MIN_CHARS: usize = 32;

/// Every environment variable minipay reads: name, type, default and meaning, in the order of
/// the README's configuration table. Parsed by clap from the environment only (an empty
/// variable counts as unset); [`Config::from_env`] validates it into a [`Config`].
#[derive(Parser, Debug)]
#[command(name = "minipay", no_binary_name = true)]
pub struct Settings {
    /// Listen address.
    #[arg(long, env = "MINIPAY_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// PostgreSQL; logged without its credentials.
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/minipay")]
    database_url: String,
    /// A hot standby of that PostgreSQL for plain reads; logged without its credentials.
    #[arg(long, env = "MINIPAY_DATABASE_REPLICA_URL")]
    database_replica_url: Option<String>,
    /// How long a read waits for the standby to catch up with the primary before reading there.
    #[arg(long, env = "MINIPAY_REPLICA_WAIT_MS", default_value_t = millis(ReplicaConfig::default().wait))]
    replica_wait_ms: u64,
    /// ClickHouse HTTP interface; `http://user:password@host:8123` logs in as that user.
    #[arg(long, env = "CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123")]
    clickhouse_url: String,
    /// ClickHouse database, created if missing.
    #[arg(long, env = "CLICKHOUSE_DATABASE", default_value = "minipay")]
    clickhouse_database: String,
    /// ClickHouse stops any query of minipay's after this (whole seconds, >= 1).
    #[arg(long, env = "MINIPAY_CLICKHOUSE_MAX_EXECUTION_SECS", default_value_t = ClickHouseTimeouts::default().query_max.as_secs())]
    clickhouse_max_execution_secs: u64,
    /// A tuned history read waits this long for ClickHouse, then answers from PostgreSQL.
    #[arg(long, env = "MINIPAY_HISTORY_CLICKHOUSE_TIMEOUT_MS", default_value_t = millis(ClickHouseTimeouts::default().history_read))]
    history_clickhouse_timeout_ms: u64,
    /// ClickHouse cluster name (`remote_servers`): statements sharded by account over the
    /// servers of `MINIPAY_CLICKHOUSE_SHARD_URLS` (then `CLICKHOUSE_URL` is not used).
    #[arg(long, env = "MINIPAY_CLICKHOUSE_CLUSTER")]
    clickhouse_cluster: Option<String>,
    /// The cluster's shards: one HTTP URL per shard, comma-separated, in the cluster's order.
    #[arg(long, env = "MINIPAY_CLICKHOUSE_SHARD_URLS")]
    clickhouse_shard_urls: Option<String>,
    /// `manual` lets `PUT /admin/clock` move time forward.
    #[arg(long, env = "MINIPAY_CLOCK", value_enum, default_value_t = ClockChoice::System)]
    clock: ClockChoice,
    /// Enables `/admin/*` with this bearer token (at least 32 characters).
    #[arg(long, env = "MINIPAY_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// Business time zone (daily limit, jobs).
    #[arg(long, env = "MINIPAY_TZ", value_parser = parse_tz, default_value = "Asia/Seoul")]
    tz: Tz,
    /// Top-ups per user per business day.
    #[arg(long, env = "MINIPAY_DAILY_CHARGE_LIMIT_KRW", default_value_t = DAILY_CHARGE_LIMIT_KRW_DEFAULT)]
    daily_charge_limit_krw: i64,
    /// PostgreSQL connections (>= 2).
    #[arg(long, env = "MINIPAY_DB_POOL_SIZE", default_value_t = 32)]
    db_pool_size: u32,
    /// After this a request answers 503.
    #[arg(long, env = "MINIPAY_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    request_timeout_ms: u64,
    /// A request's header must be whole within this of its first byte.
    #[arg(long, env = "MINIPAY_HEADER_READ_TIMEOUT_MS", default_value_t = millis(ConnectionLimits::default().header_read_timeout))]
    header_read_timeout_ms: u64,
    /// A connection waiting for its first or next request is closed after this.
    #[arg(long, env = "MINIPAY_IDLE_TIMEOUT_MS", default_value_t = millis(ConnectionLimits::default().idle_timeout))]
    idle_timeout_ms: u64,
    /// Open connections at once.
    #[arg(long, env = "MINIPAY_MAX_CONNECTIONS", default_value_t = ConnectionLimits::default().max_connections)]
    max_connections: u32,
    /// Larger bodies answer 413.
    #[arg(long, env = "MINIPAY_REQUEST_BODY_LIMIT_BYTES", default_value_t = 64 * 1024)]
    request_body_limit_bytes: usize,
    /// Bearer token lifetime.
    #[arg(long, env = "MINIPAY_SESSION_TTL_SECS", default_value_t = 24 * 3600, allow_negative_numbers = true)]
    session_ttl_secs: i64,
    /// A checked token is trusted this long without a query (0: off).
    #[arg(long, env = "MINIPAY_SESSION_CACHE_TTL_MS", default_value_t = 5_000)]
    session_cache_ttl_ms: u64,
    /// Rows of closed days' counterparty totals kept in memory for summaries (0: none).
    #[arg(long, env = "MINIPAY_SUMMARY_CACHE_ROWS", default_value_t = 1_000_000)]
    summary_cache_rows: usize,
    /// Failed log-ins per user name per minute (0: off).
    #[arg(long, env = "MINIPAY_LOGIN_ATTEMPTS_PER_NAME_PER_MINUTE", default_value_t = LoginLimits::default().failures_per_name_per_minute)]
    login_attempts_per_name_per_minute: u32,
    /// Log-ins and sign-ups per client address per minute (0: off).
    #[arg(long, env = "MINIPAY_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE", default_value_t = LoginLimits::default().attempts_per_address_per_minute)]
    login_attempts_per_address_per_minute: u32,
    /// Failed admin authentications per client address per minute (0: off).
    #[arg(long, env = "MINIPAY_ADMIN_FAILURES_PER_ADDRESS_PER_MINUTE", default_value_t = LoginLimits::default().admin_failures_per_address_per_minute)]
    admin_failures_per_address_per_minute: u32,
    /// `1`: the client address is the last `X-Forwarded-For` entry (behind a proxy only).
    #[arg(long, env = "MINIPAY_TRUST_X_FORWARDED_FOR", value_enum, default_value_t = ZeroOne::Zero)]
    trust_x_forwarded_for: ZeroOne,
    /// Comma-separated origins (`https://app.example.com`) browsers may call the API from.
    #[arg(long, env = "MINIPAY_CORS_ORIGINS", value_parser = parse_origins)]
    cors_origins: Option<CorsOrigins>,
    /// Split bills one user may create in any hour (0: off).
    #[arg(long, env = "MINIPAY_SETTLEMENTS_PER_HOUR", default_value_t = SocialLimits::default().settlements_per_hour)]
    settlements_per_hour: u32,
    /// Shares still `requested` one requester may hold over one participant (0: off).
    #[arg(long, env = "MINIPAY_OPEN_SHARES_PER_PARTICIPANT", default_value_t = SocialLimits::default().open_shares_per_participant)]
    open_shares_per_participant: u32,
    /// Users on one user's friend list (>= 1).
    #[arg(long, env = "MINIPAY_FRIENDS_MAX", default_value_t = SocialLimits::default().friends_max)]
    friends_max: u32,
    /// Users one user may block (>= 1).
    #[arg(long, env = "MINIPAY_BLOCKS_MAX", default_value_t = SocialLimits::default().blocks_max)]
    blocks_max: u32,
    /// How long idempotency keys are remembered (>= 86400).
    #[arg(long, env = "MINIPAY_IDEMPOTENCY_TTL_SECS", default_value_t = IDEMPOTENCY_TTL_SECS_DEFAULT, allow_negative_numbers = true)]
    idempotency_ttl_secs: i64,
    /// argon2id memory cost of new password hashes.
    #[arg(long, env = "MINIPAY_ARGON2_MEMORY_KIB", default_value_t = HashCost::default().memory_kib)]
    argon2_memory_kib: u32,
    /// argon2id passes of new password hashes.
    #[arg(long, env = "MINIPAY_ARGON2_ITERATIONS", default_value_t = HashCost::default().iterations)]
    argon2_iterations: u32,
    /// Ledger commands one process holds; full: 503.
    #[arg(long, env = "MINIPAY_LEDGER_QUEUE_CAPACITY", default_value_t = LedgerConfig::default().queue_capacity)]
    ledger_queue_capacity: usize,
    /// Password hashes computed at once (1 ..= 64; the number of cores when unset).
    #[arg(long, env = "MINIPAY_ARGON2_CONCURRENCY")]
    argon2_concurrency: Option<usize>,
    /// Hashes waiting for a slot (32 × the concurrency when unset); full: 503.
    #[arg(long, env = "MINIPAY_ARGON2_QUEUE")]
    argon2_queue: Option<usize>,
    /// Commands per ledger transaction.
    #[arg(long, env = "MINIPAY_LEDGER_BATCH_SIZE_MAX", default_value_t = LedgerConfig::default().batch_size_max)]
    ledger_batch_size_max: usize,
    /// Concurrent batch transactions per process.
    #[arg(long, env = "MINIPAY_LEDGER_WRITERS", default_value_t = LedgerConfig::default().writers)]
    ledger_writers: usize,
    /// Attempts of a batch on serialization failure.
    #[arg(long, env = "MINIPAY_LEDGER_ATTEMPTS_MAX", default_value_t = LedgerConfig::default().attempts_max)]
    ledger_attempts_max: u32,
    /// `serve` runs the history forwarder; `off` leaves it to `minipay forward`.
    #[arg(long, env = "MINIPAY_FORWARDER", value_enum, default_value_t = OnOff::On)]
    forwarder: OnOff,
    /// `serve` runs the job scheduler; `off` leaves jobs to `minipay jobs run` and the admin route.
    #[arg(long, env = "MINIPAY_SCHEDULER", value_enum, default_value_t = OnOff::On)]
    scheduler: OnOff,
    /// Pause between scheduler ticks.
    #[arg(long, env = "MINIPAY_SCHEDULER_TICK_MS", default_value_t = millis(JobsConfig::default().tick))]
    scheduler_tick_ms: u64,
    /// Items per job chunk (1 ..= 100000).
    #[arg(long, env = "MINIPAY_JOBS_CHUNK_SIZE", default_value_t = JobsConfig::default().chunk_size)]
    jobs_chunk_size: usize,
    /// For crash tests only: abort once a job run has committed this many chunks.
    #[arg(long, env = "MINIPAY_JOBS_ABORT_AFTER_CHUNKS")]
    jobs_abort_after_chunks: Option<u32>,
    /// Test hook, never in production: `1` aborts after the forwarder's first insert.
    #[arg(long, env = "MINIPAY_FORWARDER_ABORT_AFTER_INSERT", value_enum, default_value_t = ZeroOne::Zero)]
    forwarder_abort_after_insert: ZeroOne,
    /// The history forwarder's pause after a step that found less than a full batch.
    #[arg(long, env = "MINIPAY_FORWARDER_LINGER_MS", default_value_t = millis(FORWARDER_LINGER))]
    forwarder_linger_ms: u64,
    /// Log lines: `text` (coloured only on a terminal) or `json` (one object a line). Read by
    /// [`crate::telemetry::init_tracing`] before the configuration is; listed here so that an
    /// unknown value stops the process like any other bad setting.
    #[allow(dead_code)]
    #[arg(long, env = "MINIPAY_LOG_FORMAT", value_enum, ignore_case = true, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// `on`/`off` settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum OnOff {
    On,
    Off,
}

/// `0`/`1` settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ZeroOne {
    #[value(name = "0")]
    Zero,
    #[value(name = "1")]
    One,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ClockChoice {
    System,
    Manual,
}

fn parse_tz(text: &str) -> Result<Tz, String> {
    text.parse().map_err(|error: chrono_tz::ParseError| error.to_string())
}

/// The exact origins of `MINIPAY_CORS_ORIGINS`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CorsOrigins(Vec<String>);

/// `scheme://host[:port]` each, as a browser sends it in `Origin`: http or https, no path,
/// no wildcard.
fn parse_origins(text: &str) -> Result<CorsOrigins, String> {
    let mut origins = Vec::new();
    for origin in text.split(',').map(str::trim).filter(|origin| !origin.is_empty()) {
        let host = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
        let valid = host.is_some_and(|host| {
            !host.is_empty() && host.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'*' | b'?' | b'#'))
        });
        if !valid {
            return Err(format!("{origin:?} is not an origin such as https://app.example.com"));
        }
        origins.push(origin.to_owned());
    }
    Ok(CorsOrigins(origins))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Settings {
    /// The settings of this process's environment; an empty variable counts as unset.
    pub fn from_env() -> anyhow::Result<Settings> {
        let command = Settings::command().mut_args(|arg| {
            let empty = arg.get_env().and_then(std::env::var_os).is_some_and(|value| value.is_empty());
            if empty {
                arg.env(None::<&'static str>)
            } else {
                arg
            }
        });
        command
            .try_get_matches_from(std::iter::empty::<String>())
            .and_then(|matches| Settings::from_arg_matches(&matches))
            .map_err(|error| anyhow!(explain(&error)))
    }

    /// Every environment variable it reads.
    pub fn variables() -> Vec<String> {
        let command = Settings::command();
        command
            .get_arguments()
            .filter_map(|arg| arg.get_env())
            .map(|name| name.to_string_lossy().into_owned())
            .collect()
    }

    fn into_config(self) -> Config {
        Config {
            addr: self.addr,
            database_url: SecretUrl(self.database_url.clone()),
            replica: ReplicaConfig {
                url: self.database_replica_url.clone().map(SecretUrl),
                wait: Duration::from_millis(self.replica_wait_ms),
            },
            clickhouse_url: SecretUrl(self.clickhouse_url.clone()),
            clickhouse_database: self.clickhouse_database.clone(),
            clock_mode: match self.clock {
                ClockChoice::System => ClockMode::System,
                ClockChoice::Manual => ClockMode::Manual,
            },
            admin_token: self.admin_token.clone().map(Secret),
            tz: self.tz,
            daily_charge_limit_krw: self.daily_charge_limit_krw,
            db_pool_size: self.db_pool_size,
            request_timeout: Duration::from_millis(self.request_timeout_ms),
            request_body_limit_bytes: self.request_body_limit_bytes,
            session_ttl: chrono::Duration::seconds(self.session_ttl_secs),
            session_cache_ttl: Duration::from_millis(self.session_cache_ttl_ms),
            summary_cache_rows: self.summary_cache_rows,
            password_hash_cost: HashCost { memory_kib: self.argon2_memory_kib, iterations: self.argon2_iterations },
            password_hashing: self.password_hashing(),
            idempotency_ttl: chrono::Duration::seconds(self.idempotency_ttl_secs),
            ledger: LedgerConfig {
                queue_capacity: self.ledger_queue_capacity,
                batch_size_max: self.ledger_batch_size_max,
                writers: self.ledger_writers,
                attempts_max: self.ledger_attempts_max,
            },
            forwarder: self.forwarder == OnOff::On,
            forwarder_abort_after_insert: self.forwarder_abort_after_insert == ZeroOne::One,
            forwarder_linger: Duration::from_millis(self.forwarder_linger_ms),
            jobs: JobsConfig {
                scheduler: self.scheduler == OnOff::On,
                tick: Duration::from_millis(self.scheduler_tick_ms),
                chunk_size: self.jobs_chunk_size,
                abort_after_chunks: self.jobs_abort_after_chunks,
            },
            login_limits: LoginLimits {
                failures_per_name_per_minute: self.login_attempts_per_name_per_minute,
                attempts_per_address_per_minute: self.login_attempts_per_address_per_minute,
                admin_failures_per_address_per_minute: self.admin_failures_per_address_per_minute,
            },
            trust_forwarded_for: self.trust_x_forwarded_for == ZeroOne::One,
            cors_origins: self.cors_origins.clone().map(|origins| origins.0).unwrap_or_default(),
            social_limits: SocialLimits {
                friends_max: self.friends_max,
                blocks_max: self.blocks_max,
                settlements_per_hour: self.settlements_per_hour,
                open_shares_per_participant: self.open_shares_per_participant,
            },
            clickhouse_timeouts: ClickHouseTimeouts {
                query_max: Duration::from_secs(self.clickhouse_max_execution_secs),
                history_read: Duration::from_millis(self.history_clickhouse_timeout_ms),
            },
            connections: ConnectionLimits {
                header_read_timeout: Duration::from_millis(self.header_read_timeout_ms),
                idle_timeout: Duration::from_millis(self.idle_timeout_ms),
                max_connections: self.max_connections,
            },
            clickhouse_cluster: self.clickhouse_cluster(),
        }
    }

    /// The cluster when either setting is given (both are checked in `check_services`).
    fn clickhouse_cluster(&self) -> Option<ClickHouseCluster> {
        let name = self.clickhouse_cluster.clone().unwrap_or_default();
        let urls = self.clickhouse_shard_urls.clone().unwrap_or_default();
        if name.trim().is_empty() && urls.trim().is_empty() {
            return None;
        }
        let shard_urls =
            urls.split(',').map(str::trim).filter(|url| !url.is_empty()).map(|url| SecretUrl(url.to_owned())).collect();
        Some(ClickHouseCluster { name: name.trim().to_owned(), shard_urls })
    }

    fn password_hashing(&self) -> HashingLimits {
        let concurrency = self.argon2_concurrency.unwrap_or(HashingLimits::default().concurrency);
        HashingLimits {
            concurrency,
            queue: self.argon2_queue.unwrap_or(HashingLimits::with_concurrency(concurrency).queue),
        }
    }
}

/// A clap error as the variable and value at fault: `MINIPAY_CLOCK="x": expected system or
/// manual`.
fn explain(error: &clap::Error) -> String {
    let arg = error.get(ContextKind::InvalidArg).map(ToString::to_string).unwrap_or_default();
    let long = arg.trim_start_matches("--").split([' ', '=']).next().unwrap_or_default().to_owned();
    let variable = Settings::command()
        .get_arguments()
        .find(|candidate| candidate.get_long() == Some(long.as_str()))
        .and_then(|candidate| candidate.get_env().map(|name| name.to_string_lossy().into_owned()));
    let (Some(variable), Some(value)) = (variable, error.get(ContextKind::InvalidValue)) else {
        return error.render().to_string().trim().to_owned();
    };
    let cause = match (std::error::Error::source(error), error.get(ContextKind::ValidValue)) {
        (Some(source), _) => source.to_string(),
        (None, Some(clap::error::ContextValue::Strings(valid))) => format!("expected {}", valid.join(" or ")),
        _ => error.kind().to_string(),
    };
    format!("{variable}={:?}: {cause}", value.to_string())
}

impl Config {
    /// The configuration of this process's environment, validated.
    pub fn from_env() -> anyhow::Result<Self> {
        Settings::from_env()?.into_config().validated()
    }

    fn validated(self) -> anyhow::Result<Self> {
        self.check_limits().and_then(|()| self.check_services()).context("invalid configuration")?;
        Ok(self)
    }

    fn check_limits(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.idempotency_ttl >= chrono::Duration::hours(24),
            "MINIPAY_IDEMPOTENCY_TTL_SECS must be at least 86400"
        );
        anyhow::ensure!(self.daily_charge_limit_krw > 0, "MINIPAY_DAILY_CHARGE_LIMIT_KRW must be > 0");
        anyhow::ensure!(self.db_pool_size >= 2, "MINIPAY_DB_POOL_SIZE must be >= 2");
        anyhow::ensure!(
            (1..=CONCURRENCY_MAX).contains(&self.password_hashing.concurrency),
            "MINIPAY_ARGON2_CONCURRENCY must be between 1 and {CONCURRENCY_MAX}"
        );
        anyhow::ensure!(self.ledger.batch_size_max >= 1, "MINIPAY_LEDGER_BATCH_SIZE_MAX must be >= 1");
        anyhow::ensure!(self.ledger.writers >= 1, "MINIPAY_LEDGER_WRITERS must be >= 1");
        anyhow::ensure!(self.ledger.queue_capacity >= 1, "MINIPAY_LEDGER_QUEUE_CAPACITY must be >= 1");
        anyhow::ensure!(self.ledger.attempts_max >= 1, "MINIPAY_LEDGER_ATTEMPTS_MAX must be >= 1");
        anyhow::ensure!(
            (1..=CHUNK_SIZE_MAX).contains(&self.jobs.chunk_size),
            "MINIPAY_JOBS_CHUNK_SIZE must be between 1 and {CHUNK_SIZE_MAX}"
        );
        anyhow::ensure!(!self.jobs.tick.is_zero(), "MINIPAY_SCHEDULER_TICK_MS must be > 0");
        anyhow::ensure!(self.social_limits.friends_max >= 1, "MINIPAY_FRIENDS_MAX must be >= 1");
        anyhow::ensure!(self.social_limits.blocks_max >= 1, "MINIPAY_BLOCKS_MAX must be >= 1");
        Ok(())
    }

    fn check_services(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.clickhouse_timeouts.query_max >= Duration::from_secs(1),
            "MINIPAY_CLICKHOUSE_MAX_EXECUTION_SECS must be >= 1"
        );
        anyhow::ensure!(
            !self.clickhouse_timeouts.history_read.is_zero(),
            "MINIPAY_HISTORY_CLICKHOUSE_TIMEOUT_MS must be > 0"
        );
        if let Some(cluster) = &self.clickhouse_cluster {
            anyhow::ensure!(
                !cluster.name.is_empty() && !cluster.shard_urls.is_empty(),
                "MINIPAY_CLICKHOUSE_CLUSTER and MINIPAY_CLICKHOUSE_SHARD_URLS go together: set both or neither"
            );
        }
        anyhow::ensure!(!self.connections.header_read_timeout.is_zero(), "MINIPAY_HEADER_READ_TIMEOUT_MS must be > 0");
        anyhow::ensure!(!self.connections.idle_timeout.is_zero(), "MINIPAY_IDLE_TIMEOUT_MS must be > 0");
        anyhow::ensure!(self.connections.max_connections >= 1, "MINIPAY_MAX_CONNECTIONS must be >= 1");
        if let Some(token) = &self.admin_token {
            anyhow::ensure!(
                token.chars().count() >= ADMIN_TOKEN_LENGTH_MIN_CHARS,
                "MINIPAY_ADMIN_TOKEN must be at least {ADMIN_TOKEN_LENGTH_MIN_CHARS} characters"
            );
        }
        Ok(())
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
            database_url: "postgres://postgres:pg-secret@127.0.0.1:5432/minipay".into(),
            replica: ReplicaConfig {
                url: Some("postgres://postgres:standby-secret@127.0.0.2:5432/minipay".into()),
                ..ReplicaConfig::default()
            },
            clickhouse_url: "http://default:ch-secret@127.0.0.1:8123".into(),
            admin_token: Some("a".repeat(40).into()),
            ..Config::from_env().expect("the defaults are a valid configuration")
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("secret") && !shown.contains(&"a".repeat(40)), "{shown}");
        assert!(shown.contains("postgres://***@127.0.0.1:5432/minipay"), "{shown}");
        assert!(shown.contains("postgres://***@127.0.0.2:5432/minipay"), "{shown}");
        assert!(shown.contains("http://***@127.0.0.1:8123"), "{shown}");
    }

    /// The arguments, as the environment would give them (without reading it).
    fn parse(args: &[&str]) -> Result<Settings, String> {
        Settings::command()
            .try_get_matches_from(args)
            .and_then(|matches| Settings::from_arg_matches(&matches))
            .map_err(|error| explain(&error))
    }

    #[test]
    fn bad_values_name_the_variable_and_what_is_expected() {
        for (args, message) in [
            (["--clock", "x"], r#"MINIPAY_CLOCK="x": expected system or manual"#),
            (["--forwarder", "maybe"], r#"MINIPAY_FORWARDER="maybe": expected on or off"#),
            (["--trust-x-forwarded-for", "2"], r#"MINIPAY_TRUST_X_FORWARDED_FOR="2": expected 0 or 1"#),
            (["--addr", "nope"], r#"MINIPAY_ADDR="nope": invalid socket address syntax"#),
            (["--jobs-chunk-size", "x"], r#"MINIPAY_JOBS_CHUNK_SIZE="x": invalid digit found in string"#),
            (
                ["--cors-origins", "https://a.example, b.example"],
                r#"MINIPAY_CORS_ORIGINS="https://a.example, b.example": "b.example" is not an origin such as https://app.example.com"#,
            ),
            (
                ["--cors-origins", "https://a.example/app"],
                r#"MINIPAY_CORS_ORIGINS="https://a.example/app": "https://a.example/app" is not an origin such as https://app.example.com"#,
            ),
        ] {
            assert_eq!(parse(&args).map(|_| ()), Err(message.to_owned()));
        }
    }

    #[test]
    fn cors_origins_are_a_comma_separated_list_and_off_by_default() {
        let origins = |args: &[&str]| parse(args).unwrap().into_config().cors_origins;
        assert_eq!(origins(&[]), Vec::<String>::new());
        assert_eq!(origins(&["--cors-origins", ""]), Vec::<String>::new());
        assert_eq!(
            origins(&["--cors-origins", "https://app.example.com, http://localhost:3000"]),
            ["https://app.example.com", "http://localhost:3000"]
        );
    }

    #[test]
    fn a_clickhouse_cluster_needs_its_name_and_its_shards() {
        let cluster = |args: &[&str]| parse(args).unwrap().into_config().clickhouse_cluster;
        assert_eq!(cluster(&[]), None);
        let both = ["--clickhouse-cluster", "minipay", "--clickhouse-shard-urls", "http://a:1, http://b:2"];
        let found = cluster(&both).unwrap();
        assert_eq!(found.name, "minipay");
        assert_eq!(found.shard_urls.iter().map(|url| url.expose()).collect::<Vec<_>>(), ["http://a:1", "http://b:2"]);
        for half in [["--clickhouse-cluster", "minipay"], ["--clickhouse-shard-urls", "http://a:1"]] {
            let error = format!("{:#}", parse(&half).unwrap().into_config().validated().unwrap_err());
            assert!(error.contains("set both or neither"), "{error}");
        }
    }

    #[test]
    fn limits_are_checked_after_parsing() {
        let config = parse(&["--db-pool-size", "1"]).unwrap().into_config();
        let error = format!("{:#}", config.validated().unwrap_err());
        assert_eq!(error, "invalid configuration: MINIPAY_DB_POOL_SIZE must be >= 2");
        let config = parse(&["--admin-token", "short"]).unwrap().into_config();
        assert!(format!("{:#}", config.validated().unwrap_err()).contains("MINIPAY_ADMIN_TOKEN must be at least 32"));
    }

    /// The README's configuration table, as (variable, default) pairs; the default is `None`
    /// where the README describes it in words ("unset", "number of cores").
    fn readme_table() -> Vec<(String, Option<String>)> {
        let readme = include_str!("../README.md");
        let section = readme.split("\n## Configuration\n").nth(1).expect("the README has a Configuration section");
        section
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .skip(2)
            .map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let unquote =
                    |cell: &str| cell.strip_prefix('`').and_then(|cell| cell.strip_suffix('`')).map(str::to_owned);
                (unquote(cells[1]).expect("a variable in backticks"), unquote(cells[2]))
            })
            .collect()
    }

    #[test]
    fn the_readme_lists_every_variable_with_its_default() {
        let table = readme_table();
        let mut listed: Vec<String> = table.iter().map(|(name, _)| name.clone()).collect();
        let mut defined = Settings::variables();
        listed.sort();
        defined.sort();
        assert_eq!(listed, defined, "the README's configuration table and `Settings` differ");
        let command = Settings::command();
        for (name, default) in table {
            let arg = command.get_arguments().find(|arg| arg.get_env() == Some(std::ffi::OsStr::new(&name))).unwrap();
            let defined: Vec<String> =
                arg.get_default_values().iter().map(|value| value.to_string_lossy().into_owned()).collect();
            if let Some(default) = default {
                assert_eq!(defined, [default], "{name}");
            } else {
                assert_eq!(defined, Vec::<String>::new(), "{name}");
            }
        }
    }
}
