//! What every handler can reach: the state the HTTP layer shares, built once by
//! [`crate::app::Application::build`].

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;

use crate::clock::Clock;
use crate::config::Config;
use crate::domain::business_day;
use crate::hashing::Hashing;
use crate::history::clickhouse::ClickHouse;
use crate::http::login_limit::LoginLimiter;
use crate::jobs::runner::Runner;
use crate::ledger::LedgerWriter;
use crate::store::sessions::SessionCache;
use crate::telemetry::Metrics;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: PgPool,
    pub clock: Clock,
    pub ledger: LedgerWriter,
    pub clickhouse: ClickHouse,
    pub metrics: Arc<Metrics>,
    pub sessions: Arc<SessionCache>,
    pub login_limiter: Arc<LoginLimiter>,
    /// Every password hash and verification of the process goes through it.
    pub hashing: Hashing,
}

impl AppState {
    pub fn business_date(&self, at: DateTime<Utc>) -> NaiveDate {
        business_day::business_date(at, self.config.tz)
    }

    /// Runs jobs for this process's clock, through this process's ledger writer.
    pub fn job_runner(&self) -> Runner {
        Runner::from_config(
            &self.config,
            self.pool.clone(),
            self.clickhouse.clone(),
            self.clock.clone(),
            self.metrics.clone(),
            self.ledger.clone(),
        )
    }
}
