//! PostgreSQL access outside the ledger writer: users, sessions, accounts, settlements,
//! friends and blocks, notifications, job runs, partitions, the serving processes, and the
//! connection pool and migrations.

pub mod accounts;
pub mod idempotency;
pub mod job_runs;
pub mod notifications;
pub mod partitions;
pub mod processes;
pub mod replica;
pub mod sessions;
pub mod settlements;
pub mod social;
pub mod transfers;
pub mod tx;
pub mod users;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};

/// Time to wait for a pooled connection before answering 503 (the ledger writers' pool too).
pub const POOL_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A pooled connection idle for longer than this is pinged before it is handed out.
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(10);

/// PostgreSQL settings of every minipay session: no JIT compilation. minipay's statements are
/// short, and PostgreSQL compiles any statement whose estimate passes `jit_above_cost`, on
/// each execution: a summary's first statement on a busy account (whose branch for a small
/// range never runs, but counts in the estimate) took 50-110 ms instead of 1.
pub const SESSION_SETTINGS: [(&str, &str); 1] = [("jit", "off")];

/// What a new pooled connection runs before it is first handed out, so that its first request
/// does not pay for preparing a statement and opening the tables it reads. A failure (the
/// tables not migrated yet, say) is logged and leaves the connection as it was.
pub type Warm = for<'c> fn(&'c mut PgConnection) -> WarmFuture<'c>;
/// Connections a pool with a [`Warm`] opens (and warms) as it starts, and keeps open, so that
/// the first requests, and a load of one request at a time (which takes turns among three
/// connections: the request's, its lag header's and one more), never wait for a connection
/// to be opened and warmed.
const WARM_CONNECTIONS: u32 = 4;

pub type WarmFuture<'c> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'c>>;

pub async fn connect(database_url: &str, pool_size: u32, warm: Option<Warm>) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = database_url.parse()?;
    let options = options.application_name("minipay").options(SESSION_SETTINGS);
    let pool = pool_options(pool_size, POOL_ACQUIRE_TIMEOUT, warm).connect_with(options).await?;
    Ok(pool)
}

/// The request path's pool settings (the primary's pool and the standby's). sqlx pings every
/// connection it hands out by default: a round trip per request. Here only a connection idle for [`PING_IF_IDLE_FOR`] is pinged, which
/// is where a connection that died quietly (a restart of PostgreSQL, a proxy's idle timeout)
/// is found; one in steady use that breaks fails its request with 503 and is closed.
pub fn pool_options(size: u32, acquire_timeout: Duration, warm: Option<Warm>) -> PgPoolOptions {
    let options = PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IF_IDLE_FOR {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        });
    match warm {
        Some(warm) => options.min_connections(size.min(WARM_CONNECTIONS)).after_connect(move |conn, _| {
            Box::pin(async move {
                if let Err(error) = warm(conn).await {
                    tracing::debug!(error = format!("{error:#}"), "a new connection was not warmed");
                }
                Ok(())
            })
        }),
        None => options,
    }
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
