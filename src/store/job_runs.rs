//! The `job_runs` table and the advisory lock that decides who runs a job for a date.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool};

/// The two `int4` keys of the session advisory lock on (job, date). The job name is hashed
/// into its own key, so no job's dates collide with another's; the one-`bigint` form used
/// elsewhere is a separate key space.
const LOCK_KEYS: &str = "hashtext('minipay.job.' || $1), ($2::date - DATE '2000-01-01')";

/// Takes the session advisory lock on (job, date) if nobody holds it. It is held until
/// `unlock` or until the connection closes, which a crash does too.
pub async fn try_lock(conn: &mut PgConnection, job: &str, date: NaiveDate) -> sqlx::Result<bool> {
    sqlx::query_scalar(&format!("SELECT pg_try_advisory_lock({LOCK_KEYS})")).bind(job).bind(date).fetch_one(conn).await
}

pub async fn unlock(conn: &mut PgConnection, job: &str, date: NaiveDate) -> sqlx::Result<bool> {
    sqlx::query_scalar(&format!("SELECT pg_advisory_unlock({LOCK_KEYS})")).bind(job).bind(date).fetch_one(conn).await
}

/// The dates from `first` to `last` on which `job` is done.
pub async fn done_dates(pool: &PgPool, job: &str, first: NaiveDate, last: NaiveDate) -> sqlx::Result<Vec<NaiveDate>> {
    sqlx::query_scalar(
        "SELECT business_date FROM job_runs
          WHERE job = $1 AND business_date BETWEEN $2 AND $3 AND status = 'done'
          ORDER BY business_date",
    )
    .bind(job)
    .bind(first)
    .bind(last)
    .fetch_all(pool)
    .await
}

/// An attempt that may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// Where the previous attempt stopped (`None` at the start).
    pub cursor: Option<i64>,
    /// Whether an earlier attempt (or pass) at this date stopped part-way.
    pub resumed: bool,
}

/// Records that an attempt at (job, date) begins, under the lock. `None` when the date is
/// already done (someone finished it after the caller looked). A [`Start::Fresh`] attempt (a
/// pass of a frequent job) starts from no cursor, and may begin on a row that is done.
/// Where an attempt starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// After the last committed chunk of the date's row (a daily job).
    Resume,
    /// From nothing, even on a row that is done (a pass of a frequent job).
    Fresh,
}

pub async fn begin_attempt(
    conn: &mut PgConnection,
    job: &str,
    date: NaiveDate,
    now: DateTime<Utc>,
    start: Start,
) -> sqlx::Result<Option<Attempt>> {
    // The subquery in RETURNING reads the row as it was before this statement.
    let row: Option<(Option<i64>, Option<String>)> = sqlx::query_as(
        "INSERT INTO job_runs AS r (job, business_date, status, started_at)
         VALUES ($1, $2, 'running', $3)
         ON CONFLICT (job, business_date) DO UPDATE
            SET status = 'running', started_at = EXCLUDED.started_at, finished_at = NULL,
                attempts = r.attempts + 1,
                cursor = CASE WHEN $4 THEN NULL ELSE r.cursor END
          WHERE r.status = 'running' OR $4
         RETURNING cursor, (SELECT status FROM job_runs WHERE job = $1 AND business_date = $2)",
    )
    .bind(job)
    .bind(date)
    .bind(now)
    .bind(start == Start::Fresh)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(cursor, before)| Attempt { cursor, resumed: before.as_deref() == Some("running") }))
}

/// Adds a committed chunk's progress, in the chunk's own transaction; `finished_at` marks the
/// row done.
pub async fn record_chunk(
    conn: &mut PgConnection,
    job: &str,
    date: NaiveDate,
    processed: i64,
    cursor: Option<i64>,
    finished_at: Option<DateTime<Utc>>,
) -> sqlx::Result<()> {
    let updated = sqlx::query(
        "UPDATE job_runs
            SET processed = processed + $3, chunks = chunks + 1, cursor = $4,
                status = CASE WHEN $5::timestamptz IS NULL THEN 'running' ELSE 'done' END, finished_at = $5
          WHERE job = $1 AND business_date = $2 AND status = 'running'",
    )
    .bind(job)
    .bind(date)
    .bind(processed)
    .bind(cursor)
    .bind(finished_at)
    .execute(conn)
    .await?
    .rows_affected();
    // The caller holds the lock and began the attempt, so the row is there and running.
    assert_eq!(updated, 1, "job_runs row of {job} {date} vanished under its lock");
    Ok(())
}

/// Notes why an attempt stopped; the row stays `running` and the next run resumes it.
pub async fn record_failure(conn: &mut PgConnection, job: &str, date: NaiveDate, error: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE job_runs SET last_error = $3 WHERE job = $1 AND business_date = $2")
        .bind(job)
        .bind(date)
        .bind(error)
        .execute(conn)
        .await?;
    Ok(())
}
