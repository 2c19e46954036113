//! Wiring: the application that binds, migrates, starts the workers and serves until told to
//! stop, and the one place the ledger writer is started ([`start_ledger_writer`]).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::clock::{Clock, ClockMode};
use crate::config::Config;
use crate::domain::business_day;
use crate::hashing::Hashing;
use crate::history::clickhouse::ClickHouse;
use crate::history::closed_days::ClosedDays;
use crate::history::forwarder::Forwarder;
use crate::history::summary;
use crate::http::login_limit::LoginLimiter;
use crate::http::state::{AppState, Shared};
use crate::jobs::scheduler::Scheduler;
use crate::ledger::{LedgerSettings, LedgerWriter, WriterShare, WriterTasks};
use crate::shutdown::Shutdown;
use crate::store::processes::{self, Registration};
use crate::store::replica::Reads;
use crate::store::sessions::SessionCache;
use crate::store::{self, partitions};
use crate::telemetry::Metrics;

pub struct Application {
    listener: TcpListener,
    state: AppState,
    writer_tasks: WriterTasks,
    registration: Registration,
}

/// Applies the PostgreSQL and ClickHouse migrations and prepares this month's partitions.
pub async fn migrate(config: &Config, pool: &PgPool, clock: &Clock) -> anyhow::Result<()> {
    store::migrate(pool).await.context("PostgreSQL migrations")?;
    partitions::ensure_around(pool, business_day::business_date(clock.now(), config.tz)).await?;
    ClickHouse::from_config(config)?.migrate().await.context("ClickHouse migrations")?;
    Ok(())
}

/// Starts the process's ledger writer: its own connections, and the settings `config` gives.
/// Every process that moves money (`serve`, `minipay jobs run`) starts exactly one.
pub fn start_ledger_writer(
    config: &Config,
    pool: &PgPool,
    clock: &Clock,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(LedgerWriter, WriterTasks)> {
    let settings = LedgerSettings {
        tz: config.tz,
        daily_charge_limit_krw: config.daily_charge_limit_krw,
        idempotency_ttl: config.idempotency_ttl,
    };
    let connections = crate::ledger::store::writer_pool(&config.database_url, config.ledger.writers)?;
    Ok(LedgerWriter::start(pool.clone(), connections, clock.clone(), settings, config.ledger.clone(), metrics.clone()))
}

impl Application {
    /// Connects, migrates, starts the ledger writer and binds the listener (port 0 picks a
    /// free port, which tests use). A ClickHouse that is down does not stop the server:
    /// commands go on, and history catches up once it is back.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let clock = Clock::new(config.clock_mode);
        let pool = store::connect(&config.database_url, config.db_pool_size, Some(summary::warm))
            .await
            .context("connecting to PostgreSQL")?;
        store::migrate(&pool).await.context("PostgreSQL migrations")?;
        partitions::ensure_around(&pool, business_day::business_date(clock.now(), config.tz)).await?;
        let clickhouse = ClickHouse::from_config(&config)?;
        if let Err(error) = clickhouse.migrate().await {
            tracing::warn!(error = format!("{error:#}"), "ClickHouse not migrated; history is unavailable until it is");
        }
        let metrics = Metrics::new();
        let (ledger, writer_tasks) = start_ledger_writer(&config, &pool, &clock, &metrics)?;
        let mut registration =
            Registration::register(config.database_url.expose()).await.context("registering the process")?;
        ledger.share().share_among(registration.count().await?);
        let listener = TcpListener::bind(config.addr).await.with_context(|| format!("binding {}", config.addr))?;
        let sessions = Arc::new(SessionCache::new(config.session_cache_ttl));
        let login_limiter = Arc::new(LoginLimiter::new(config.login_limits));
        let hashing = Hashing::new(config.password_hash_cost, config.password_hashing);
        let reads = Reads::new(
            pool.clone(),
            &config.database_url,
            &config.replica,
            (config.db_pool_size, Some(summary::warm)),
        )?;
        let closed_days = Arc::new(ClosedDays::new(config.summary_cache_rows));
        let state = AppState::new(Shared {
            config: Arc::new(config),
            pool,
            reads,
            clock,
            ledger,
            clickhouse,
            metrics,
            sessions,
            payment_targets: Arc::default(),
            closed_days,
            login_limiter,
            hashing,
        });
        Ok(Application { listener, state, writer_tasks, registration })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` fires, then stops accepting, finishes the requests in flight,
    /// lets the ledger writer drain its queue, the forwarder finish its batch and the scheduler
    /// its chunk, and returns.
    ///
    /// The scheduler runs only with the system clock: a manual clock stands still until an
    /// operator moves it, and its jobs run when asked (`POST /admin/jobs/{name}/run`).
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let Application { listener, state, writer_tasks, registration } = self;
        let pool = state.pool.clone();
        let sharing = tokio::spawn(share_ledger_writers(registration, state.ledger.share(), shutdown.clone()));
        let forwarder = state.config.forwarder.then(|| {
            let forwarder =
                Forwarder::new(pool.clone(), state.clickhouse.clone(), state.clock.clone(), state.metrics.clone())
                    .with_abort_after_insert(state.config.forwarder_abort_after_insert)
                    .with_linger(state.config.forwarder_linger);
            tokio::spawn(forwarder.run(shutdown.clone()))
        });
        let scheduler = (state.config.jobs.scheduler && state.clock.mode() == ClockMode::System).then(|| {
            let scheduler = Scheduler::new(state.job_runner(), state.config.jobs.tick);
            tokio::spawn(scheduler.run(shutdown.clone()))
        });
        let limits = state.config.connections;
        let router = crate::http::router(state);
        tracing::info!(addr = %listener.local_addr()?, "minipay serving");
        crate::http::serve::serve(listener, router, limits, shutdown).await;
        // The router is gone, and with it the handlers' LedgerWriter handles; the scheduler's
        // runner holds the last one until its chunk is done.
        if let Some(scheduler) = scheduler {
            if let Err(error) = scheduler.await {
                tracing::error!(%error, "scheduler task failed");
            }
        }
        // Every LedgerWriter handle is gone now: the writers finish what is queued and stop.
        writer_tasks.join().await;
        // It ended at the shutdown, closing the connection that counted this process.
        let _ = sharing.await;
        if let Some(forwarder) = forwarder {
            if let Err(error) = forwarder.await {
                tracing::error!(%error, "history forwarder task failed");
            }
        }
        pool.close().await;
        tracing::info!("minipay stopped");
        Ok(())
    }
}

/// Counts the serving processes of the database every [`processes::COUNT_INTERVAL`] and gives
/// this process's ledger writer its share of the database's writers, until `shutdown`; then
/// closes the process's named connection. A failed count keeps the share as it was.
async fn share_ledger_writers(mut registration: Registration, share: WriterShare, shutdown: Shutdown) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(processes::COUNT_INTERVAL) => {}
            () = shutdown.wait() => return,
        }
        match registration.count().await {
            Ok(processes) => {
                share.share_among(processes);
            }
            Err(error) => tracing::warn!(%error, "serving processes not counted; the ledger writers' share is kept"),
        }
    }
}
