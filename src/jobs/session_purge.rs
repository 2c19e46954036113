//! The `session-purge` job (daily, 02:00): sessions past their `expires_at` are deleted, a
//! chunk at a time. Expired tokens are refused whether or not their row is still there; the
//! job only keeps the table (and its indexes) from growing with every log-in forever.
//!
//! Deleting what expired by the clock's now covers every missed date, so after downtime it
//! runs only the latest one. Each chunk deletes at most `chunk_size` rows in its own
//! transaction (`FOR UPDATE SKIP LOCKED`, so concurrent runs share the work), and a run stops
//! at the first chunk short of a full one.

use sqlx::PgConnection;

use super::{Chunk, Job, JobContext, JobName};
use crate::store::sessions;

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
        let purged = sessions::purge_expired(conn, ctx.now, i64::try_from(ctx.chunk_size)?).await?;
        Ok(Chunk::after_batch(purged, ctx.chunk_size, None))
    }
}
