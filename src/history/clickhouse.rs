//! The ClickHouse read store: client, version detection and migrations from `clickhouse/`,
//! time limits, and the cancelling of reads a request gave up on.
//!
//! Every query carries `max_execution_time` ([`ClickHouseTimeouts::query_max`]): ClickHouse
//! stops it there whatever happens to its client. A history read that waits no longer
//! ([`ClickHouseTimeouts::history_read`]) runs on a [`ClickHouse::cancellable`] copy: each of
//! its queries gets its own `query_id`, and if the read is dropped before it finished (the
//! request answered from PostgreSQL, timed out or went away) the queries still running are
//! killed (`KILL QUERY ... ASYNC`): ClickHouse 18.16 does not notice a closed HTTP connection,
//! and its queries would otherwise run on, piling up with every retry.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rand::Rng;

/// DDL files of `clickhouse/`, applied in order. Each uses `IF NOT EXISTS`, so two servers
/// migrating at once do no harm (on servers without `ADD COLUMN IF NOT EXISTS`, see
/// [`already_applied`]), except the backfills of the daily totals (`0007`, `0008`), which count
/// the entries already stored once per run: see `0007`.
const MIGRATIONS: [(u32, &str, &str); 9] = [
    (1, "statement_entries", include_str!("../../clickhouse/0001_statement_entries.sql")),
    (2, "counterparty_user_name", include_str!("../../clickhouse/0002_counterparty_user_name.sql")),
    (3, "daily_totals", include_str!("../../clickhouse/0003_daily_totals.sql")),
    (4, "daily_totals_view", include_str!("../../clickhouse/0004_daily_totals_view.sql")),
    (5, "daily_counterparty_totals", include_str!("../../clickhouse/0005_daily_counterparty_totals.sql")),
    (6, "daily_counterparty_totals_view", include_str!("../../clickhouse/0006_daily_counterparty_totals_view.sql")),
    (7, "daily_totals_backfill", include_str!("../../clickhouse/0007_daily_totals_backfill.sql")),
    (
        8,
        "daily_counterparty_totals_backfill",
        include_str!("../../clickhouse/0008_daily_counterparty_totals_backfill.sql"),
    ),
    (9, "account_kind_and_owner", include_str!("../../clickhouse/0009_account_kind_and_owner.sql")),
];

/// The first release with `TTL` on MergeTree tables. It also has `ADD COLUMN IF NOT EXISTS`
/// (since 19.1, without the bugs of 19.3): the DDL has one rendering for servers from here on
/// and one for older servers (Debian's 18.16).
const TTL_SINCE: (u32, u32) = (19, 6);

pub use crate::config::ClickHouseTimeouts;

/// How long the `KILL QUERY` of a cancelled read may take before it is given up.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct ClickHouse {
    client: clickhouse::Client,
    database: String,
    /// Set on a cancellable copy: the query ids its queries were given.
    read: Option<Arc<Read>>,
}

/// The queries of one cancellable read: `{database}-{random}-{n}`.
struct Read {
    prefix: String,
    issued: Mutex<Vec<String>>,
}

impl Read {
    fn next_id(&self) -> String {
        let mut issued = self.issued.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let id = format!("{}-{}", self.prefix, issued.len() + 1);
        issued.push(id.clone());
        id
    }

    fn issued(&self) -> Vec<String> {
        self.issued.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// Kills the queries of a cancellable read when dropped, unless told it [`finished`].
///
/// [`finished`]: CancelOnDrop::finished
pub struct CancelOnDrop {
    clickhouse: ClickHouse,
    armed: bool,
}

impl CancelOnDrop {
    /// The read ended (with an answer or an error): nothing of it is left running.
    pub fn finished(mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(read) = self.clickhouse.read.as_ref().filter(|_| self.armed) else { return };
        let ids = read.issued();
        if ids.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let client = self.clickhouse.client.clone();
        runtime.spawn(async move {
            let kill = client.query("KILL QUERY WHERE has(?, query_id) ASYNC").bind(&ids).execute();
            match tokio::time::timeout(KILL_TIMEOUT, kill).await {
                Ok(Ok(())) => tracing::debug!(?ids, "cancelled ClickHouse queries"),
                Ok(Err(error)) => tracing::warn!(%error, ?ids, "could not cancel ClickHouse queries"),
                Err(_) => tracing::warn!(?ids, "cancelling ClickHouse queries timed out"),
            }
        });
    }
}

/// A server version like `18.16.1` as (major, minor).
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

pub fn supports_ttl(version: (u32, u32)) -> bool {
    version >= TTL_SINCE
}

/// Fills the `{ttl}` and `{if_not_exists}` placeholders of a DDL file for the given server
/// (`ttl`: from [`TTL_SINCE`] on).
pub fn render_ddl(template: &str, ttl: bool) -> String {
    let clause = if ttl { "TTL at + INTERVAL 1 YEAR" } else { "" };
    let if_not_exists = if ttl { "IF NOT EXISTS" } else { "" };
    template.replace("{ttl}", clause).replace("{if_not_exists}", if_not_exists)
}

/// On a server without `ADD COLUMN IF NOT EXISTS`, a migrator that lost the race to another
/// gets "Code: 44 ... column with this name already exists": the column is there, which is
/// what the migration was for.
fn already_applied(error: &clickhouse::error::Error) -> bool {
    let text = error.to_string();
    text.contains("Code: 44") && text.contains("already exists")
}

/// `max_execution_time` as ClickHouse reads it on every version: whole seconds, at least 1.
fn query_max_secs(timeouts: ClickHouseTimeouts) -> String {
    timeouts.query_max.as_secs().max(1).to_string()
}

/// Database names are interpolated into DDL, so only plain identifiers are accepted.
fn valid_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// The URL without its userinfo, and the user and password that were in it (percent-decoded):
/// ClickHouse takes credentials in headers, not in the URL, which the HTTP client would
/// otherwise send nowhere.
fn split_credentials(url: &str) -> (String, Option<(String, Option<String>)>) {
    let Ok(mut parsed) = url::Url::parse(url) else { return (url.to_owned(), None) };
    if parsed.username().is_empty() && parsed.password().is_none() {
        return (url.to_owned(), None);
    }
    let decode = |text: &str| percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned();
    let user = decode(parsed.username());
    let password = parsed.password().map(decode);
    // Both only fail for URLs that cannot have a userinfo, which this one has.
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    (parsed.to_string(), Some((user, password)))
}

impl ClickHouse {
    /// `url` may carry credentials (`http://user:password@host:8123`): they are sent as
    /// ClickHouse's user and password headers.
    pub fn new(url: &str, database: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(valid_identifier(database), "CLICKHOUSE_DATABASE {database:?} must be a plain identifier");
        let (url, credentials) = split_credentials(url);
        // Row validation needs newer servers than Debian's 18.16, so it is off.
        let mut client = clickhouse::Client::default().with_url(url).with_validation(false);
        if let Some((user, password)) = credentials {
            client = client.with_user(user);
            if let Some(password) = password {
                client = client.with_password(password);
            }
        }
        let client = client.with_setting("max_execution_time", query_max_secs(ClickHouseTimeouts::default()));
        Ok(ClickHouse { client: client.with_database(database), database: database.to_owned(), read: None })
    }

    /// The store of `config`, with its time limit on every query.
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Self> {
        let mut clickhouse = Self::new(&config.clickhouse_url, &config.clickhouse_database)?;
        clickhouse.client =
            clickhouse.client.with_setting("max_execution_time", query_max_secs(config.clickhouse_timeouts));
        Ok(clickhouse)
    }

    /// A copy for one read whose queries can be cancelled together, and the guard that
    /// cancels them when dropped before [`CancelOnDrop::finished`].
    pub fn cancellable(&self) -> (ClickHouse, CancelOnDrop) {
        let tag: u64 = rand::thread_rng().gen();
        let read = Read { prefix: format!("{}-{tag:016x}", self.database), issued: Mutex::new(Vec::new()) };
        let copy = ClickHouse { read: Some(Arc::new(read)), ..self.clone() };
        (copy.clone(), CancelOnDrop { clickhouse: copy, armed: true })
    }

    /// A query on this store; on a cancellable copy it gets its own `query_id`.
    pub fn query(&self, sql: &str) -> clickhouse::query::Query {
        let query = self.client.query(sql);
        match &self.read {
            Some(read) => query.with_setting("query_id", read.next_id()),
            None => query,
        }
    }

    pub fn client(&self) -> &clickhouse::Client {
        &self.client
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    pub async fn version(&self) -> anyhow::Result<(u32, u32)> {
        let text: String = self.client.clone().with_database("default").query("SELECT version()").fetch_one().await?;
        parse_version(&text).with_context(|| format!("unrecognised ClickHouse version {text:?}"))
    }

    pub async fn ping(&self) -> bool {
        self.version().await.is_ok()
    }

    /// Creates the database if missing and applies the DDL it has not seen yet.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let version = self.version().await.context("ClickHouse is unreachable")?;
        let ttl = supports_ttl(version);
        let server = self.client.clone().with_database("default");
        server.query(&format!("CREATE DATABASE IF NOT EXISTS {}", self.database)).execute().await?;
        self.client
            .query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, applied_at DateTime)
                 ENGINE = MergeTree ORDER BY version",
            )
            .execute()
            .await?;
        let applied: Vec<u32> = self.client.query("SELECT version FROM schema_migrations").fetch_all().await?;
        for (number, name, template) in MIGRATIONS {
            if applied.contains(&number) {
                continue;
            }
            match self.client.query(&render_ddl(template, ttl)).execute().await {
                Ok(()) => {}
                Err(error) if !ttl && already_applied(&error) => {
                    tracing::info!(number, name, "ClickHouse migration already applied by another migrator");
                }
                Err(error) => return Err(error).with_context(|| format!("ClickHouse migration {number} {name}")),
            }
            self.client
                .query("INSERT INTO schema_migrations (version, name, applied_at) SELECT ?, ?, now()")
                .bind(number)
                .bind(name)
                .execute()
                .await?;
            tracing::info!(number, name, ttl, "applied ClickHouse migration");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_used_only_where_supported() {
        assert_eq!(parse_version("18.16.1"), Some((18, 16)));
        assert!(!supports_ttl((18, 16)));
        assert!(supports_ttl((19, 6)));
        assert!(supports_ttl((26, 1)));
        let old = render_ddl(MIGRATIONS[0].2, false);
        let new = render_ddl(MIGRATIONS[0].2, true);
        assert!(!old.contains("TTL at") && !old.contains("{ttl}"));
        assert!(new.contains("TTL at + INTERVAL 1 YEAR"));
        let old = render_ddl(MIGRATIONS[1].2, false);
        let new = render_ddl(MIGRATIONS[1].2, true);
        assert!(old.contains("ADD COLUMN  counterparty_user_name") && !old.contains("{if_not_exists}"));
        assert!(new.contains("ADD COLUMN IF NOT EXISTS counterparty_user_name"));
    }

    #[test]
    fn credentials_move_from_the_url_to_the_client() {
        assert_eq!(split_credentials("http://127.0.0.1:8123"), ("http://127.0.0.1:8123".to_owned(), None));
        assert_eq!(
            split_credentials("http://reader:p%40ss%3Aw0rd@ch.internal:8123"),
            ("http://ch.internal:8123/".to_owned(), Some(("reader".to_owned(), Some("p@ss:w0rd".to_owned()))))
        );
        assert_eq!(
            split_credentials("http://reader@ch.internal:8123/"),
            ("http://ch.internal:8123/".to_owned(), Some(("reader".to_owned(), None)))
        );
        assert_eq!(split_credentials("not a url"), ("not a url".to_owned(), None));
    }

    #[test]
    fn database_names_are_identifiers() {
        assert!(valid_identifier("minipay"));
        assert!(valid_identifier("minipay_test_42"));
        assert!(!valid_identifier("x; DROP"));
        assert!(!valid_identifier(""));
    }
}
