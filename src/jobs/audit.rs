//! The `audit` job: once a day, at 05:00 business time (after retention at 03:00 and interest
//! at 04:00 have moved things, before installments at 08:00 and the day's traffic), every
//! ledger invariant and the agreement of PostgreSQL and ClickHouse are checked, exactly as
//! `GET /admin/audit` and `minipay audit` check them ([`crate::ledger::audit::full`]).
//!
//! A mismatch does not fail the job: the date is done, and what was found is in its answer
//! (`ok`, `checks`), in an error-level log line naming the failed checks, and on `/metrics`
//! (`minipay_audit_failures_total` goes up, `minipay_audit_last_ok` drops to 0). Running the
//! same audit again every scheduler tick would find the same thing and load the database for
//! nothing; an operator re-checks on demand with `GET /admin/audit`. An audit that cannot run
//! at all (PostgreSQL unreachable) fails the job, which then runs again at the next tick.
//!
//! It catches up only the latest missed date: an audit of now covers every earlier one. The
//! invariants are about the ledger as it stands, not about dates, so after a gap of 400 days
//! one audit (after that tick's interest and installments have caught up) checks everything
//! that 400 would, each of which would read the whole ledger again.

use serde::Serialize;
use sqlx::PgConnection;

use super::{Chunk, Job, JobContext, JobName};
use crate::ledger::audit::{self, Check};

/// The job, as the runner runs it.
pub struct Audit;

/// What a run of `audit` reports beside `job` and `processed` (the number of checks run).
#[derive(Debug, Default, Serialize)]
pub struct AuditDetails {
    /// Whether every check passed; `null` when this call ran no audit (the date was done).
    pub ok: Option<bool>,
    pub checks: Vec<Check>,
}

impl Job for Audit {
    type Report = AuditDetails;

    fn name(&self) -> JobName {
        JobName::Audit
    }

    /// The whole audit in one chunk. It reads in its own snapshot, not in the chunk's
    /// transaction, and changes nothing, so a crash at any point simply runs it again.
    async fn run_chunk(
        &self,
        ctx: &JobContext<'_>,
        _conn: &mut PgConnection,
        _cursor: Option<i64>,
        report: &mut AuditDetails,
    ) -> anyhow::Result<Chunk> {
        let found =
            audit::full(ctx.pool, ctx.clickhouse, ctx.now, ctx.daily_charge_limit_krw, ctx.tz, ctx.metrics).await?;
        report.ok = Some(report.ok.unwrap_or(true) && found.ok);
        let checks = found.checks.len() as u64;
        report.checks.extend(found.checks);
        Ok(Chunk::finished(checks))
    }
}
