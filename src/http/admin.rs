//! Operator routes, present only when MINIPAY_ADMIN_TOKEN is set: audit, clock, jobs.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{Admin, ApiJson, ApiPath};
use super::schemas;
use crate::clock::{ClockMode, SetClockError};
use crate::http::state::AppState;
use crate::jobs::{self, JobName, RunReport};
use crate::ledger::audit::{self, AuditReport};
use crate::store::partitions;

/// The latest year the manual clock may be set to: partitions (made up to a few months ahead)
/// are bounded with four-digit years, and nothing needs a clock further out.
const CLOCK_YEAR_MAX: i32 = 9_000;

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"now": "2026-11-24T04:00:00Z", "mode": "manual"}))]
pub struct ClockView {
    pub now: DateTime<Utc>,
    /// `system` or `manual`.
    #[schema(schema_with = schemas::clock_mode)]
    pub mode: String,
}

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"now": "2026-11-24T04:00:00+09:00"}))]
pub struct ClockUpdate {
    /// RFC 3339 with offset, e.g. `2026-11-24T04:00:00+09:00`.
    #[schema(value_type = DateTime<Utc>)]
    pub now: DateTime<chrono::FixedOffset>,
}

/// The path of `POST /admin/jobs/{name}/run` (documentation only: the handler reads the name
/// as text and answers 404 for any other).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct JobPath {
    /// interest | installments | pending-expiry | reminders | retention | audit | session-purge.
    #[param(schema_with = schemas::job_name)]
    name: String,
}

/// Checks the ledger invariants now.
#[utoipa::path(get, path = "/admin/audit", tag = "admin", security(("admin" = [])),
    responses((status = 200, body = AuditReport, description = "The checks and whether each holds (`ok` is false on any mismatch)",
               example = json!({"ok": true, "checks": [{"name": "posted-balances-sum-to-zero", "ok": true, "detail": "0"}]}))))]
pub async fn get_audit(State(state): State<AppState>, _admin: Admin) -> ApiResult<Json<AuditReport>> {
    // ClickHouse must hold the statement entries PostgreSQL has forwarded, and no others (an
    // unreachable ClickHouse fails that check).
    let report = audit::full(
        &state.pool,
        &state.clickhouse,
        state.clock.now(),
        state.config.daily_charge_limit_krw,
        state.config.tz,
        &state.metrics,
    )
    .await?;
    Ok(Json(report))
}

fn clock_view(state: &AppState) -> ClockView {
    ClockView { now: state.clock.now(), mode: state.clock.mode().as_str().to_owned() }
}

/// The server's clock.
#[utoipa::path(get, path = "/admin/clock", tag = "admin", security(("admin" = [])),
    responses((status = 200, body = ClockView, description = "The server's time and its clock mode")))]
pub async fn get_clock(State(state): State<AppState>, _admin: Admin) -> Json<ClockView> {
    Json(clock_view(&state))
}

/// Moves the manual clock forward (404 with the system clock, 409 backwards). Partitions for
/// the new date are created before the answer.
#[utoipa::path(put, path = "/admin/clock", tag = "admin", security(("admin" = [])), request_body = ClockUpdate,
    responses((status = 200, body = ClockView, description = "The clock, moved"),
              (status = 404, body = Problem, content_type = "application/problem+json", description = "not-found: the server runs on the system clock (MINIPAY_CLOCK=system)"),
              (status = 409, body = Problem, content_type = "application/problem+json", description = "invalid-state: the time is before the clock's"),
              (status = 422, body = Problem, content_type = "application/problem+json", description = "not a time with offset, or after the year 9000")))]
pub async fn put_clock(
    State(state): State<AppState>,
    _admin: Admin,
    ApiJson(body): ApiJson<ClockUpdate>,
) -> ApiResult<Json<ClockView>> {
    let refuse = |error: SetClockError| match error {
        SetClockError::NotManual => ApiError::NotFound,
        error @ SetClockError::Backwards { .. } => ApiError::InvalidState(error.to_string()),
    };
    if state.clock.mode() != ClockMode::Manual {
        return Err(refuse(SetClockError::NotManual));
    }
    let requested = body.now.with_timezone(&Utc);
    if requested.year() > CLOCK_YEAR_MAX {
        return Err(ApiError::validation(format!("now must be in the year {CLOCK_YEAR_MAX} or earlier")));
    }
    // Partitions first: if they cannot be made, the clock stays where every write still has
    // a home. `set` checks the direction again, atomically.
    let now = state.clock.now();
    if requested < now {
        return Err(refuse(SetClockError::Backwards { now, requested }));
    }
    partitions::ensure_around(&state.pool, state.business_date(requested)).await?;
    state.clock.set(requested).map_err(refuse)?;
    Ok(Json(clock_view(&state)))
}

/// Runs a job now for the current clock: every due business date that is not done yet,
/// oldest first (catching up after downtime), each exactly once however many servers are
/// asked at the same time (a date another server is running answers `busy`). `retention`
/// (daily, 03:00) drops statements and ledger months older than a year in both stores and
/// prepares the coming months; `reminders` (frequent) sends the receivers of pending transfers
/// that expire within 24 hours their one reminder; `pending-expiry` (frequent) voids and refunds
/// pending transfers past 72 hours; `interest` (daily, 04:00) pays the day before;
/// `installments` (daily, 08:00) takes the day's installments; `audit` (daily, 05:00) checks
/// every ledger invariant and the agreement of the two stores, reporting `ok` and `checks`
/// (a mismatch is logged and counted on `/metrics`); `session-purge` (daily, 02:00) deletes
/// expired sessions. An unknown name is 404.
#[utoipa::path(post, path = "/admin/jobs/{name}/run", tag = "admin", security(("admin" = [])),
    params(JobPath),
    responses((status = 200, body = RunReport, description = "What the run did, date by date",
               example = json!({"job": "interest", "processed": 12, "dates": [{"business_date": "2026-11-23", "outcome": "done",
                   "processed": 12, "chunks": 1, "resumed": false}]})), (status = 404, body = Problem, content_type = "application/problem+json", description = "not-found: no such job")))]
pub async fn run_job(
    State(state): State<AppState>,
    _admin: Admin,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<RunReport>> {
    let name = JobName::from_name(&name).ok_or(ApiError::NotFound)?;
    let runner = state.job_runner();
    // Its own task: a request that times out or whose client goes away does not stop a job
    // between its chunks; it runs to the end, and asking again shows it done (or busy).
    let run = tokio::spawn(async move { jobs::run(&runner, name).await })
        .await
        .map_err(|error| ApiError::Internal(anyhow::anyhow!("job task failed: {error}")))?;
    match run {
        Ok(report) => Ok(Json(report)),
        Err(error) => Err(ApiError::from(error)),
    }
}
