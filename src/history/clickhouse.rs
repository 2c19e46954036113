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

use crate::domain::ids::AccountId;

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

/// DDL files applied on a cluster only (to every shard), after [`MIGRATIONS`]: the
/// `Distributed` tables over the shards' local tables. `{cluster}` and `{database}` are filled
/// in per cluster.
const CLUSTER_MIGRATIONS: [(u32, &str, &str); 3] = [
    (10, "statement_entries_all", include_str!("../../clickhouse/0010_statement_entries_all.sql")),
    (11, "daily_totals_all", include_str!("../../clickhouse/0011_daily_totals_all.sql")),
    (12, "daily_counterparty_totals_all", include_str!("../../clickhouse/0012_daily_counterparty_totals_all.sql")),
];

#[derive(Clone)]
pub struct ClickHouse {
    /// The server queries go to: the single server, or on a cluster the first shard (unless
    /// this copy was routed to another by [`ClickHouse::for_account`] or [`ClickHouse::shards`]).
    /// Shared: the state every request clones holds a copy of this store.
    client: Arc<clickhouse::Client>,
    database: Arc<str>,
    /// Set on a cancellable copy: the query ids its queries were given.
    read: Option<Arc<Read>>,
    /// Set on a cluster: its name and one client per shard, in the cluster's shard order.
    cluster: Option<Arc<Cluster>>,
}

struct Cluster {
    name: String,
    /// The first replica of each shard: every read and write of the shard goes there.
    shards: Vec<clickhouse::Client>,
    /// The other replicas of the shards (`|` in the shard URLs): only migrated, the rest
    /// reaches them by ClickHouse's replication.
    replicas: Vec<clickhouse::Client>,
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
        // The read's queries went to the shard of its account; which one is not recorded, so
        // every shard is told (a query id matches nothing on the others).
        for client in self.clickhouse.shard_clients() {
            let ids = ids.clone();
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

/// Fills the `{cluster}` and `{database}` placeholders of a cluster DDL file (both plain
/// identifiers, checked when the store is made).
pub fn render_cluster_ddl(template: &str, cluster: &str, database: &str) -> String {
    template.replace("{cluster}", cluster).replace("{database}", database)
}

/// A `CREATE TABLE` of a local table made replicated: `ENGINE = XMergeTree` becomes
/// `ENGINE = ReplicatedXMergeTree('/clickhouse/tables/{shard}/<database>/<table>', '{replica}')`,
/// `{shard}` and `{replica}` being the server's macros. Anything else is returned as it is.
pub fn replicated_ddl(ddl: &str, database: &str) -> String {
    const CREATE: &str = "CREATE TABLE IF NOT EXISTS ";
    let Some(start) = ddl.find(CREATE) else { return ddl.to_owned() };
    let table: String =
        ddl[start + CREATE.len()..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    let Some(engine_at) = ddl.find("ENGINE = ") else { return ddl.to_owned() };
    let engine_start = engine_at + "ENGINE = ".len();
    let engine: String = ddl[engine_start..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    if !engine.ends_with("MergeTree") || engine.starts_with("Replicated") {
        return ddl.to_owned();
    }
    let replicated = format!("Replicated{engine}('/clickhouse/tables/{{shard}}/{database}/{table}', '{{replica}}')");
    format!("{}{replicated}{}", &ddl[..engine_start], &ddl[engine_start + engine.len()..])
}

/// Whether a migration inserts rows (a backfill) rather than defining something.
fn is_insert(ddl: &str) -> bool {
    let statement = ddl.lines().find(|line| !line.trim().is_empty() && !line.trim_start().starts_with("--"));
    statement.is_some_and(|line| line.trim_start().starts_with("INSERT"))
}

/// The shard (0-based, in the cluster's order) that holds `account_id`'s statement among
/// `shards`: what the `Distributed` tables' sharding key `account_id` picks with every shard's
/// weight 1 (the key modulo the shard count).
pub fn shard_of(account_id: i64, shards: usize) -> usize {
    let shards = i64::try_from(shards.max(1)).unwrap_or(1);
    account_id.rem_euclid(shards) as usize
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

/// A client of one server, in `database`; `url` may carry credentials.
fn new_client(url: &str, database: &str) -> clickhouse::Client {
    let (url, credentials) = split_credentials(url);
    // Row validation needs newer servers than Debian's 18.16, so it is off.
    let mut client = clickhouse::Client::default().with_url(url).with_validation(false);
    if let Some((user, password)) = credentials {
        client = client.with_user(user);
        if let Some(password) = password {
            client = client.with_password(password);
        }
    }
    client.with_setting("max_execution_time", query_max_secs(ClickHouseTimeouts::default())).with_database(database)
}

impl ClickHouse {
    /// `url` may carry credentials (`http://user:password@host:8123`): they are sent as
    /// ClickHouse's user and password headers.
    pub fn new(url: &str, database: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(valid_identifier(database), "CLICKHOUSE_DATABASE {database:?} must be a plain identifier");
        Ok(ClickHouse {
            client: Arc::new(new_client(url, database)),
            database: database.into(),
            read: None,
            cluster: None,
        })
    }

    /// A store sharded by account over the cluster `name`: `shard_urls` names one server of
    /// each shard, in the cluster's shard order (`system.clusters`, `shard_num`); a shard of
    /// replicas names them all, separated by `|`, the first one taking its reads and writes.
    pub fn cluster(name: &str, shard_urls: &[&str], database: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(valid_identifier(database), "CLICKHOUSE_DATABASE {database:?} must be a plain identifier");
        anyhow::ensure!(valid_identifier(name), "MINIPAY_CLICKHOUSE_CLUSTER {name:?} must be a plain identifier");
        anyhow::ensure!(!shard_urls.is_empty(), "MINIPAY_CLICKHOUSE_SHARD_URLS names no shard");
        let (mut shards, mut replicas) = (Vec::new(), Vec::new());
        for shard in shard_urls {
            let mut urls = shard.split('|').map(str::trim).filter(|url| !url.is_empty());
            let first =
                urls.next().with_context(|| format!("MINIPAY_CLICKHOUSE_SHARD_URLS: empty shard in {shard:?}"))?;
            shards.push(new_client(first, database));
            replicas.extend(urls.map(|url| new_client(url, database)));
        }
        Ok(ClickHouse {
            client: Arc::new(shards[0].clone()),
            database: database.into(),
            read: None,
            cluster: Some(Arc::new(Cluster { name: name.to_owned(), shards, replicas })),
        })
    }

    /// The store of `config` (a single server, or a cluster), with its time limit on every query.
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Self> {
        let mut clickhouse = match &config.clickhouse_cluster {
            Some(cluster) => {
                let urls: Vec<&str> = cluster.shard_urls.iter().map(|url| url.expose()).collect();
                Self::cluster(&cluster.name, &urls, &config.clickhouse_database)?
            }
            None => Self::new(&config.clickhouse_url, &config.clickhouse_database)?,
        };
        let limit = query_max_secs(config.clickhouse_timeouts);
        clickhouse.client =
            Arc::new(clickhouse::Client::clone(&clickhouse.client).with_setting("max_execution_time", limit.clone()));
        if let Some(cluster) = &clickhouse.cluster {
            let limited = |clients: &[clickhouse::Client]| -> Vec<clickhouse::Client> {
                clients.iter().map(|client| client.clone().with_setting("max_execution_time", limit.clone())).collect()
            };
            let (shards, replicas) = (limited(&cluster.shards), limited(&cluster.replicas));
            clickhouse.cluster = Some(Arc::new(Cluster { name: cluster.name.clone(), shards, replicas }));
        }
        Ok(clickhouse)
    }

    /// The cluster's name, on a cluster.
    pub fn cluster_name(&self) -> Option<&str> {
        self.cluster.as_ref().map(|cluster| cluster.name.as_str())
    }

    /// How many shards hold the statements (1 on a single server).
    pub fn shard_count(&self) -> usize {
        self.cluster.as_ref().map_or(1, |cluster| cluster.shards.len())
    }

    /// This store routed to the shard that holds `account_id`'s statement (itself on a single
    /// server): every read and write of one account's entries and totals goes there.
    pub fn for_account(&self, account_id: AccountId) -> ClickHouse {
        self.shard(shard_of(account_id.get(), self.shard_count()))
    }

    /// This store routed to shard `index` (0-based; itself on a single server).
    pub fn shard(&self, index: usize) -> ClickHouse {
        match &self.cluster {
            Some(cluster) => ClickHouse { client: Arc::new(cluster.shards[index].clone()), ..self.clone() },
            None => self.clone(),
        }
    }

    /// Every shard (the single server alone when there is no cluster), in the cluster's order.
    pub fn shards(&self) -> Vec<ClickHouse> {
        (0..self.shard_count()).map(|index| self.shard(index)).collect()
    }

    fn shard_clients(&self) -> Vec<clickhouse::Client> {
        match &self.cluster {
            Some(cluster) => cluster.shards.clone(),
            None => vec![clickhouse::Client::clone(&self.client)],
        }
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
        let text: String = clickhouse::Client::clone(&self.client)
            .with_database("default")
            .query("SELECT version()")
            .fetch_one()
            .await?;
        parse_version(&text).with_context(|| format!("unrecognised ClickHouse version {text:?}"))
    }

    pub async fn ping(&self) -> bool {
        self.version().await.is_ok()
    }

    /// Creates the database if missing and applies the DDL it has not seen yet, on every
    /// server of a cluster (no `ON CLUSTER`: that needs ZooKeeper), with the cluster's
    /// `Distributed` tables last; other replicas after the first of their shard.
    ///
    /// With replicas, each migration is applied on every server before the next one: a
    /// replicated table must be created with the structure the other replicas gave it in
    /// ZooKeeper, which a later `ALTER` on one of them changes for all.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let replicas = self.cluster.as_ref().map(|cluster| cluster.replicas.clone()).unwrap_or_default();
        let steps: Vec<Option<u32>> = if replicas.is_empty() {
            vec![None]
        } else {
            MIGRATIONS.iter().chain(&CLUSTER_MIGRATIONS).map(|(number, _, _)| Some(*number)).collect()
        };
        for until in steps {
            for (index, shard) in self.shards().into_iter().enumerate() {
                shard.migrate_server(true, until).await.with_context(|| format!("ClickHouse shard {}", index + 1))?;
            }
            for (index, replica) in replicas.iter().enumerate() {
                let replica = ClickHouse { client: Arc::new(replica.clone()), ..self.clone() };
                let context = || format!("ClickHouse replica {}", index + 2);
                replica.migrate_server(false, until).await.with_context(context)?;
            }
        }
        Ok(())
    }

    /// Whether this server has ZooKeeper: then its local tables are replicated.
    async fn has_zookeeper(&self) -> bool {
        let query = "SELECT count() FROM system.zookeeper WHERE path = '/'";
        clickhouse::Client::clone(&self.client).with_database("default").query(query).fetch_one::<u64>().await.is_ok()
    }

    /// `first_replica`: whether this server is the first replica of its shard (the only one
    /// on servers without replicas); the others skip the backfills, whose rows reach them by
    /// replication. `until`: the last migration to apply (all when `None`).
    async fn migrate_server(&self, first_replica: bool, until: Option<u32>) -> anyhow::Result<()> {
        let version = self.version().await.context("ClickHouse is unreachable")?;
        let ttl = supports_ttl(version);
        let replicated = self.has_zookeeper().await;
        let server = clickhouse::Client::clone(&self.client).with_database("default");
        server.query(&format!("CREATE DATABASE IF NOT EXISTS {}", self.database)).execute().await?;
        self.client
            .query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, applied_at DateTime)
                 ENGINE = MergeTree ORDER BY version",
            )
            .execute()
            .await?;
        let applied: Vec<u32> = self.client.query("SELECT version FROM schema_migrations").fetch_all().await?;
        let cluster = self.cluster_name().map(|cluster| {
            let render = |template: &str| render_cluster_ddl(template, cluster, &self.database);
            CLUSTER_MIGRATIONS.map(|(number, name, template)| (number, name, render(template)))
        });
        let local = MIGRATIONS.map(|(number, name, template)| {
            let ddl = render_ddl(template, ttl);
            (number, name, if replicated { replicated_ddl(&ddl, &self.database) } else { ddl })
        });
        for (number, name, ddl) in local.into_iter().chain(cluster.into_iter().flatten()) {
            if applied.contains(&number) || until.is_some_and(|until| number > until) {
                continue;
            }
            let result =
                if first_replica || !is_insert(&ddl) { self.client.query(&ddl).execute().await } else { Ok(()) };
            match result {
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
    fn accounts_are_sharded_like_the_distributed_tables_and_the_cluster_ddl_is_filled_in() {
        assert_eq!((shard_of(7, 1), shard_of(7, 2), shard_of(8, 2), shard_of(-1, 2)), (0, 1, 0, 1));
        assert_eq!(shard_of(7, 0), 0);
        for (_, _, template) in CLUSTER_MIGRATIONS {
            let ddl = render_cluster_ddl(template, "minipay", "minipay_test");
            assert!(ddl.contains("Distributed(minipay, minipay_test, ") && !ddl.contains('{'), "{ddl}");
        }
        let cluster = ClickHouse::cluster("minipay", &["http://a:1", "http://b:2"], "db").unwrap();
        assert_eq!((cluster.shard_count(), cluster.cluster_name()), (2, Some("minipay")));
        let replicated = ClickHouse::cluster("minipay", &["http://a:1|http://a:2", "http://b:2"], "db").unwrap();
        assert_eq!((replicated.shard_count(), replicated.cluster.as_ref().unwrap().replicas.len()), (2, 1));
        assert_eq!(ClickHouse::new("http://a:1", "db").unwrap().shards().len(), 1);
        assert!(ClickHouse::cluster("x; DROP", &["http://a:1"], "db").is_err());
        assert!(ClickHouse::cluster("minipay", &[], "db").is_err());
    }

    #[test]
    fn replicated_servers_get_replicated_engines_and_skip_the_backfills() {
        let ddl = replicated_ddl(&render_ddl(MIGRATIONS[0].2, false), "minipay");
        assert!(ddl.contains(
            "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/minipay/statement_entries', '{replica}')\n"
        ));
        let ddl = replicated_ddl(MIGRATIONS[2].2, "minipay");
        assert!(
            ddl.contains("ReplicatedSummingMergeTree('/clickhouse/tables/{shard}/minipay/daily_totals', '{replica}')")
        );
        for (_, _, template) in [MIGRATIONS[1], MIGRATIONS[3], MIGRATIONS[6]] {
            assert_eq!(replicated_ddl(template, "minipay"), template);
        }
        assert!(is_insert(MIGRATIONS[6].2) && is_insert(MIGRATIONS[7].2));
        assert!(!is_insert(MIGRATIONS[0].2) && !is_insert(MIGRATIONS[3].2));
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
