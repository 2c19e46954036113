//! The `session-purge` job (daily, 02:00): sessions past their `expires_at`, and idempotency
//! keys older than their time to live (`MINIPAY_IDEMPOTENCY_TTL_SECS`), are deleted, a chunk
//! at a time. Expired tokens are refused, and expired keys no longer replayed, whether or not
//! their row is still there; the job only keeps the tables (and their indexes) from growing
//! with every log-in and every keyed request forever.
//!
//! Deleting what expired by the clock's now covers every missed date, so after downtime it
//! runs only the latest one. Each chunk deletes at most `chunk_size` rows in its own
//! transaction (`FOR UPDATE SKIP LOCKED`, so concurrent runs share the work) from each table,
//! and a run stops at the first chunk short of a full one in both.

use sqlx::PgConnection;

use super::{Chunk, Job, JobContext, JobName};
use crate::store::{idempotency, sessions};

pub struct SessionPurge;

impl Job for SessionPurge {
    type Report = ();

    fn name(&self) -> JobName {
        JobName::SessionPurge
    }

    async fn run_chunk(
        &self,
        ctx: &JobContext<'_>,
        conn: &mut PgConnection,
        _cursor: Option<i64>,
        _report: &mut (),
    ) -> anyhow::Result<Chunk> {
        let limit = i64::try_from(ctx.chunk_size)?;
        let sessions = sessions::purge_expired(&mut *conn, ctx.now, limit).await?;
        let keys = idempotency::purge_expired(&mut *conn, ctx.now - ctx.idempotency_ttl, limit).await?;
        let chunk = Chunk::after_batch(sessions.max(keys), ctx.chunk_size, None);
        Ok(Chunk { processed: sessions + keys, ..chunk })
    }
}
