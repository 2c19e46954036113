//! PostgreSQL access outside the ledger writer: users, sessions, accounts, settlements,
//! friends and blocks, notifications, job runs, partitions, and the connection pool and migrations.

pub mod accounts;
pub mod idempotency;
pub mod job_runs;
pub mod notifications;
pub mod partitions;
pub mod replica;
pub mod sessions;
pub mod settlements;
pub mod social;
pub mod transfers;
pub mod tx;
pub mod users;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// Time to wait for a pooled connection before answering 503 (the ledger writers' pool too).
pub const POOL_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn connect(database_url: &str, pool_size: u32) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = database_url.parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(pool_size)
        .acquire_timeout(POOL_ACQUIRE_TIMEOUT)
        .connect_with(options.application_name("minipay"))
        .await?;
    Ok(pool)
}

/// Applies the PostgreSQL migrations in `migrations/` (sqlx takes an advisory lock, so two
/// servers starting at once do not race), then fills what SQL cannot compute: the skeletons
/// of user names that do not have one yet.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::migrate!("./migrations").run(pool).await?;
    let filled = users::fill_name_skeletons(pool).await?;
    if filled > 0 {
        tracing::info!(filled, "gave user names their skeletons");
    }
    Ok(())
}
