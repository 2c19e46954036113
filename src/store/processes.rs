//! The serving processes of a database. Each `minipay serve` holds one connection named
//! [`APPLICATION_NAME`] for as long as it runs (a crash closes it with the process), and counts
//! the connections of that name on its database to learn how many processes share it: the
//! ledger's batch writers are a few per database, not a few per process
//! (`crate::ledger::WriterShare`). `pg_stat_activity` is read from shared memory, without a
//! lock any other session takes.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};

/// The name of the connection each serving process holds.
pub const APPLICATION_NAME: &str = "minipay serve";

/// How often a process counts the others (and how long a process that started or stopped
/// takes to change the others' share).
pub const COUNT_INTERVAL: Duration = Duration::from_secs(2);

const COUNT: &str =
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1";

/// This process's place among the serving processes: its named connection.
pub struct Registration {
    options: PgConnectOptions,
    connection: Option<PgConnection>,
}

impl Registration {
    /// Opens the named connection.
    pub async fn register(database_url: &str) -> anyhow::Result<Self> {
        let options: PgConnectOptions = database_url.parse()?;
        let options = options.application_name(APPLICATION_NAME);
        let connection = options.connect().await?;
        Ok(Registration { options, connection: Some(connection) })
    }

    /// The serving processes of the database, this one included (a count of 0 leaves the
    /// process all of its writers: `WriterShare::share_among`). A connection that broke (a
    /// restart of PostgreSQL) is opened again first; while that fails, so does the count.
    pub async fn count(&mut self) -> sqlx::Result<usize> {
        let connection = match self.connection.as_mut() {
            Some(connection) => connection,
            None => self.connection.insert(self.options.connect().await?),
        };
        let counted: sqlx::Result<i64> = sqlx::query_scalar(COUNT).bind(APPLICATION_NAME).fetch_one(connection).await;
        match counted {
            Ok(processes) => Ok(usize::try_from(processes).unwrap_or(0)),
            Err(error) => {
                self.connection = None;
                Err(error)
            }
        }
    }
}
