//! What every handler can reach: the state the HTTP layer shares, built once by
//! [`crate::app::Application::build`].

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;
use tokio::sync::OnceCell;

use crate::clock::Clock;
use crate::config::Config;
use crate::domain::business_day;
use crate::hashing::Hashing;
use crate::history::clickhouse::ClickHouse;
use crate::history::closed_days::ClosedDays;
use crate::http::login_limit::LoginLimiter;
use crate::jobs::runner::Runner;
use crate::ledger::LedgerWriter;
use crate::store::replica::{ReadSource, Reads};
use crate::store::sessions::SessionCache;
use crate::store::settlements::PaymentTargets;
use crate::telemetry::Metrics;

/// What every handler can reach: [`Shared`] behind one reference count. Every request clones
/// the state once per handler and extractor and drops it again; with a dozen reference-counted
/// fields (and the ClickHouse client by value) that was a few percent of the server's CPU per
/// request, where one count costs one atomic add.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The state itself, built once per process.
pub struct Shared {
    pub config: Arc<Config>,
    /// The primary: writes, locks, and reads that must see the newest state.
    pub pool: PgPool,
    /// Where plain reads go ([`Shared::read_pool`]).
    pub reads: Reads,
    pub clock: Clock,
    pub ledger: LedgerWriter,
    pub clickhouse: ClickHouse,
    pub metrics: Arc<Metrics>,
    pub sessions: Arc<SessionCache>,
    /// What paying a share needs of its settlement, for the settlements this process has met.
    pub payment_targets: Arc<PaymentTargets>,
    /// The closed days of busy accounts' daily counterparty totals, for summaries.
    pub closed_days: Arc<ClosedDays>,
    pub login_limiter: Arc<LoginLimiter>,
    /// Every password hash and verification of the process goes through it.
    pub hashing: Hashing,
}

impl Shared {
    pub fn business_date(&self, at: DateTime<Utc>) -> NaiveDate {
        business_day::business_date(at, self.config.tz)
    }

    /// The pool for a plain read (a GET that locks and writes nothing): a hot standby that has
    /// replayed everything the primary had written when this request first asked, or the
    /// primary (`store::replica`). Asked once per request: later calls of the same request
    /// get the same answer, and the response says which it was in `X-Read-Source`
    /// ([`read_source_header`]).
    pub async fn read_pool(&self) -> PgPool {
        match ROUTED.try_with(Arc::clone) {
            Ok(routed) => routed.get_or_init(|| self.reads.route()).await.1.clone(),
            // Outside a request: decided afresh.
            Err(_) => self.reads.route().await.1,
        }
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

pub const READ_SOURCE_HEADER: &str = "x-read-source";

/// The request's read routing, decided once by the first [`Shared::read_pool`] (reads of
/// the request that ask meanwhile wait for that decision).
type Routed = Arc<OnceCell<(ReadSource, PgPool)>>;

tokio::task_local! {
    static ROUTED: Routed;
}

/// Adds `X-Read-Source: primary | replica` to the responses of requests whose reads were
/// routed by [`Shared::read_pool`].
pub async fn read_source_header(request: Request, next: Next) -> Response {
    let routed = Routed::default();
    let mut response = ROUTED.scope(routed.clone(), next.run(request)).await;
    if let Some((source, _)) = routed.get() {
        response
            .headers_mut()
            .insert(HeaderName::from_static(READ_SOURCE_HEADER), HeaderValue::from_static(source.as_str()));
    }
    response
}
