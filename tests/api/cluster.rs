//! The statement history on a ClickHouse cluster of two shards (`scripts/services up
//! clickhouse-cluster`, named to the tests by `MINIPAY_TEST_CLICKHOUSE_CLUSTER` and
//! `MINIPAY_TEST_CLICKHOUSE_SHARD_URLS`, which `scripts/test` sets): each account's entries and
//! daily totals on its shard only, pages and summaries from that shard, replays not doubling,
//! retention on every shard, the audit summing the shards, and a shard down. Without the
//! variables each test says it was skipped and passes. The last test runs on two replicas of
//! one shard (`scripts/services up clickhouse-replicas`, with ZooKeeper), named by
//! `MINIPAY_TEST_CLICKHOUSE_REPLICAS_CLUSTER` and `MINIPAY_TEST_CLICKHOUSE_REPLICAS_SHARD_URLS`.

use chrono::{DateTime, Duration, Utc};
use minipay::clock::{Clock, ClockMode};
use minipay::history::clickhouse::{shard_of, ClickHouse};
use minipay::history::forwarder::Forwarder;
use minipay::telemetry::Metrics;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

/// The cluster's name and shard URLs, or `None` (and a note) when no cluster was given.
fn cluster() -> Option<(String, Vec<String>)> {
    let Some((name, urls)) = test_cluster() else {
        eprintln!("skipped: no cluster (set MINIPAY_TEST_CLICKHOUSE_CLUSTER and MINIPAY_TEST_CLICKHOUSE_SHARD_URLS)");
        return None;
    };
    let urls: Vec<String> = urls.split(',').map(str::to_owned).collect();
    assert_eq!(urls.len(), 2, "these tests expect a cluster of two shards");
    Some((name, urls))
}

async fn cluster_app(name: &str, urls: &[String], forwarder: bool) -> (TestApp, PgPool) {
    let app = spawn_app_with(|config| {
        config.forwarder = forwarder;
        use_cluster(config, name, &urls.join(","));
    })
    .await;
    let pool = PgPool::connect(&app.database_url).await.unwrap();
    (app, pool)
}

fn cluster_forwarder(app: &TestApp, pool: &PgPool) -> Forwarder {
    let (name, urls) = app.clickhouse_cluster.clone().expect("a cluster app");
    let urls: Vec<&str> = urls.split(',').collect();
    let clickhouse = ClickHouse::cluster(&name, &urls, &app.database).unwrap();
    Forwarder::new(pool.clone(), clickhouse, Clock::new(ClockMode::System), Metrics::new())
}

async fn drain(forwarder: &Forwarder) -> usize {
    let mut moved = 0;
    for _ in 0..1_000 {
        match forwarder.run_once().await.expect("forwarder step") {
            0 => return moved,
            n => moved += n,
        }
    }
    panic!("the outbox did not drain");
}

fn shard_client(url: &str, database: &str) -> clickhouse::Client {
    clickhouse::Client::default().with_url(url).with_database(database).with_validation(false)
}

/// Two users whose main accounts lie on different shards: (on shard 1, on shard 2).
async fn users_on_both_shards(app: &TestApp) -> (TestUser, TestUser) {
    let mut found: [Option<TestUser>; 2] = [None, None];
    for name in ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"] {
        let user = app.funded(name, 1_000_000).await;
        let shard = shard_of(user.main_account_id, 2);
        found[shard].get_or_insert(user);
        if let [Some(first), Some(second)] = &found {
            return (first.clone(), second.clone());
        }
    }
    panic!("eight accounts, all on one shard");
}

/// `count` entries of `account_id` spread back from `now` every 47 minutes (transfers with
/// five counterparty accounts from `other_account_id` on, top-ups, interest, and the three
/// oldest of kind `close`), and their outbox rows.
async fn busy_history(pool: &PgPool, account_id: i64, other_account_id: i64, count: i64, now: DateTime<Utc>) {
    crate::aggregates::busy_history_with_closes(pool, (account_id, other_account_id), count, 3, now).await;
}

#[derive(clickhouse::Row, serde::Deserialize, Debug)]
struct AccountRows {
    account_id: i64,
    stored: u64,
    entries: u64,
}

/// Per account on one shard: rows of `statement_entries`, distinct entries, and the entries
/// its daily totals count.
async fn shard_accounts(url: &str, database: &str) -> Vec<(AccountRows, u64)> {
    let client = shard_client(url, database);
    let rows: Vec<AccountRows> = client
        .query(
            "SELECT account_id, count() AS stored, uniqExact(entry_id) AS entries
             FROM statement_entries GROUP BY account_id ORDER BY account_id",
        )
        .fetch_all()
        .await
        .unwrap();
    let totals: Vec<(i64, u64)> = client
        .query("SELECT account_id, sum(entries) FROM daily_totals GROUP BY account_id ORDER BY account_id")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(rows.len(), totals.len(), "{rows:?} {totals:?}");
    rows.into_iter()
        .zip(totals)
        .map(|(row, (account_id, totals))| {
            assert_eq!(row.account_id, account_id);
            (row, totals)
        })
        .collect()
}

/// Every account's entries are on its own shard only, each once, counted once by that shard's
/// daily totals, as many as PostgreSQL has; the `Distributed` tables see them all.
async fn assert_sharded(app: &TestApp, pool: &PgPool, urls: &[String]) {
    let expected: Vec<(i64, i64)> =
        sqlx::query_as("SELECT account_id, count(*) FROM statement_entries GROUP BY account_id ORDER BY account_id")
            .fetch_all(pool)
            .await
            .unwrap();
    let mut stored = Vec::new();
    for (index, url) in urls.iter().enumerate() {
        for (row, totals) in shard_accounts(url, &app.database).await {
            assert_eq!(
                shard_of(row.account_id, urls.len()),
                index,
                "account {} on shard {}",
                row.account_id,
                index + 1
            );
            assert_eq!((row.stored, totals), (row.entries, row.entries), "account {}: {row:?}", row.account_id);
            stored.push((row.account_id, row.entries as i64));
        }
    }
    stored.sort_unstable();
    assert_eq!(stored, expected);
    let total: i64 = expected.iter().map(|(_, count)| count).sum();
    let all = shard_client(&urls[1], &app.database);
    let distributed: u64 = all.query("SELECT count() FROM statement_entries_all").fetch_one().await.unwrap();
    let totals: u64 = all.query("SELECT sum(entries) FROM daily_totals_all").fetch_one().await.unwrap();
    assert_eq!((distributed as i64, totals as i64), (total, total));
}

struct Answer {
    source: Option<String>,
    body: Value,
}

async fn get(app: &TestApp, user: &TestUser, path: &str) -> Answer {
    let response = app.client.get(app.url(path)).bearer_auth(&user.token).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    let source = response.headers().get("x-history-source").map(|value| value.to_str().unwrap().to_owned());
    Answer { source, body: response.json().await.unwrap() }
}

/// The tuned summary's source, and whether it equals the naive one.
async fn summary_source(app: &TestApp, user: &TestUser) -> String {
    let path = format!("/v1/accounts/{}/history/summary", user.main_account_id);
    let tuned = get(app, user, &path).await;
    let naive = get(app, user, &format!("{path}/naive")).await;
    assert_eq!(tuned.body, naive.body, "{}", user.name);
    tuned.source.unwrap()
}

/// Every `close` entry of the user's main account, one per page of the tuned route (which
/// goes to ClickHouse for a kind this rare), against the naive route; returns the sources.
async fn rare_pages(app: &TestApp, user: &TestUser) -> Vec<String> {
    let base = format!("/v1/accounts/{}/history", user.main_account_id);
    let naive = get(app, user, &format!("{base}/naive?kind=close&limit=100")).await.body["entries"].clone();
    let mut entries = Vec::new();
    let mut sources = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = get(app, user, &format!("{base}?kind=close&limit=1{cursor}")).await;
        sources.push(page.source.unwrap());
        entries.extend(page.body["entries"].as_array().unwrap().iter().cloned());
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(Value::Array(entries), naive, "{}", user.name);
    sources
}

fn stores_detail(report: &Value) -> String {
    let check =
        report["checks"].as_array().unwrap().iter().find(|check| check["name"] == "clickhouse-entries-match-postgres");
    check.unwrap_or_else(|| panic!("no stores check: {report:#}"))["detail"].as_str().unwrap().to_owned()
}

/// Pages (with cursors) and summaries of each account come from its shard and equal the naive
/// routes; a transfer answered is in both parties' summaries at once (read-your-writes); the
/// audit sums the shards and catches an entry lost and an entry stored twice.
#[tokio::test]
async fn each_account_is_read_from_its_shard_and_the_audit_sums_the_shards() {
    let Some((name, urls)) = cluster() else { return };
    let (app, pool) = cluster_app(&name, &urls, false).await;
    let (first, second) = users_on_both_shards(&app).await;
    let now = Utc::now();
    busy_history(&pool, first.main_account_id, second.main_account_id, 2_100, now).await;
    busy_history(&pool, second.main_account_id, first.main_account_id, 2_100, now).await;
    let forwarder = cluster_forwarder(&app, &pool);
    drain(&forwarder).await;
    assert_sharded(&app, &pool, &urls).await;
    for user in [&first, &second] {
        // The first page finds no `close` entry among the newest 2,000 in PostgreSQL.
        let sources = rare_pages(&app, user).await;
        assert_eq!(sources.len(), 3, "{sources:?}");
        assert_eq!(sources[0], "clickhouse", "{sources:?}");
        assert_eq!(summary_source(&app, user).await, "clickhouse");
    }
    // Read-your-writes, with the transfer still in the outbox.
    let body = json!({"to_account_id": second.main_account_id, "amount": 4_321});
    let (status, created) = app.post("/v1/transfers", Some(&first.token), body).await;
    assert_eq!(status, 201, "{created}");
    for user in [&first, &second] {
        assert_eq!(summary_source(&app, user).await, "clickhouse");
    }
    drain(&forwarder).await;
    assert_sharded(&app, &pool, &urls).await;
    let report = app.assert_audit_ok().await;
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM statement_entries").fetch_one(&pool).await.unwrap();
    assert!(stores_detail(&report)
        .contains(&format!("PostgreSQL {entries} (0 waiting in the outbox), ClickHouse {entries} distinct")));

    // Lost: an entry that left the outbox without reaching its shard.
    let lost: i64 = sqlx::query_scalar(
        "INSERT INTO statement_entries (id, account_id, at, direction, amount, balance_after, kind, counterparty_name)
         VALUES (nextval('statement_entries_id_seq'), $1, $2, 'in', 77, 77, 'charge', 'external') RETURNING id",
    )
    .bind(second.main_account_id)
    .bind(now)
    .fetch_one(&pool)
    .await
    .unwrap();
    let report = app.get("/admin/audit", Some(ADMIN_TOKEN)).await.1;
    assert_eq!(report["ok"], json!(false), "{report:#}");
    assert!(stores_detail(&report).contains("entries lost"), "{report:#}");
    sqlx::query("INSERT INTO statement_outbox (entry_ids, at) VALUES (ARRAY[$1], $2)")
        .bind(lost)
        .bind(now)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(drain(&forwarder).await, 1);
    app.assert_audit_ok().await;

    // Doubled: the same entry on the other shard too (each shard's rows are distinct, so only
    // the sum over the shards shows it).
    let copy = shard_client(&urls[0], &app.database);
    copy.query(
        "INSERT INTO statement_entries (entry_id, account_id, at, at_us, direction, amount, balance_after, kind,
             counterparty_account_id, counterparty_name, transfer_id, memo, counterparty_user_name)
         SELECT ?, ?, toDateTime(?), ?, 'in', 77, 77, 'charge', NULL, 'external', NULL, '', NULL",
    )
    .bind(lost)
    .bind(second.main_account_id)
    .bind(now.timestamp() as u32)
    .bind(now.timestamp_micros())
    .execute()
    .await
    .unwrap();
    let report = app.get("/admin/audit", Some(ADMIN_TOKEN)).await.1;
    assert_eq!(report["ok"], json!(false), "{report:#}");
    assert!(stores_detail(&report).contains("daily totals count entries twice"), "{report:#}");
    app.stop().await;
}

/// A `minipay forward` on the cluster killed between its inserts and the outbox delete: the
/// next one finds the batch on the shards and inserts nothing again.
#[tokio::test]
async fn a_forwarder_killed_after_its_inserts_replays_without_doubling_on_the_cluster() {
    use std::os::unix::process::ExitStatusExt;

    let Some((name, urls)) = cluster() else { return };
    let (app, pool) = cluster_app(&name, &urls, false).await;
    let (first, second) = users_on_both_shards(&app).await;
    for amount in [1_000, 2_000, 3_000] {
        let body = json!({"to_account_id": second.main_account_id, "amount": amount});
        assert_eq!(app.post("/v1/transfers", Some(&first.token), body).await.0, 201);
    }
    for url in &urls {
        // No merge may collapse copies before they are counted.
        shard_client(url, &app.database).query("SYSTEM STOP MERGES statement_entries").execute().await.unwrap();
    }
    let entries = outbox_entries(&pool).await;
    let mut doomed = minipay_command(&app, "forward").env("MINIPAY_FORWARDER_ABORT_AFTER_INSERT", "1").spawn().unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), doomed.wait()).await.unwrap().unwrap();
    assert_eq!(status.signal(), Some(6), "killed by SIGABRT: {status:?}");
    assert_eq!(outbox_entries(&pool).await, entries);
    let forward = minipay_command(&app, "forward").spawn().unwrap();
    wait_for_empty_outbox(&pool, std::time::Duration::from_secs(30)).await;
    drop(forward);
    assert_sharded(&app, &pool, &urls).await;
    for user in [&first, &second] {
        assert_eq!(summary_source(&app, user).await, "postgres");
    }
    app.assert_audit_ok().await;
    app.stop().await;
}

/// Retention drops an expired month on every shard.
#[tokio::test]
async fn retention_drops_the_month_on_every_shard() {
    let Some((name, urls)) = cluster() else { return };
    let (app, pool) = cluster_app(&name, &urls, true).await;
    let year = app.clock_now().await.format("%Y").to_string().parse::<i32>().unwrap() + 1;
    let start: DateTime<Utc> = format!("{year}-01-31T03:00:00Z").parse().unwrap();
    app.set_clock(&start.to_rfc3339()).await;
    let (first, second) = users_on_both_shards(&app).await;
    let body = json!({"to_account_id": second.main_account_id, "amount": 500});
    assert_eq!(app.post("/v1/transfers", Some(&first.token), body).await.0, 201);
    wait_for_empty_outbox(&pool, std::time::Duration::from_secs(20)).await;
    let january = format!("{year}01");
    let in_january = |url: String| {
        let client = shard_client(&url, &app.database);
        let query = format!("SELECT count() FROM statement_entries WHERE toYYYYMM(at) = {january}");
        async move { client.query(&query).fetch_one::<u64>().await.unwrap() }
    };
    for url in &urls {
        assert!(in_january(url.clone()).await > 0, "{url}");
    }
    app.set_clock(&(start + Duration::days(367)).to_rfc3339()).await;
    let (status, report) = app.post("/admin/jobs/retention/run", Some(ADMIN_TOKEN), json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert!(report["dropped_clickhouse"].as_array().unwrap().contains(&json!(january)), "{report}");
    for url in &urls {
        assert_eq!(in_january(url.clone()).await, 0, "{url}");
    }
    app.assert_audit_ok().await;
    app.stop().await;
}

/// One shard unreachable while money moves: its accounts' reads fall back to PostgreSQL and
/// say so, the other shard's accounts are still served by ClickHouse, the forwarder holds the
/// down shard's entries (and moves the others'), and catches up when it is back: nothing lost
/// or doubled.
#[tokio::test]
async fn a_shard_down_falls_back_for_its_accounts_only_and_catches_up() {
    let Some((name, urls)) = cluster() else { return };
    let (proxy, second_url) = TcpProxy::in_front_of(&urls[1]).await;
    let proxied = [urls[0].clone(), second_url];
    let (app, pool) = cluster_app(&name, &proxied, true).await;
    let (first, second) = users_on_both_shards(&app).await;
    let now = app.clock_now().await - Duration::minutes(1);
    busy_history(&pool, first.main_account_id, second.main_account_id, 1_100, now).await;
    busy_history(&pool, second.main_account_id, first.main_account_id, 1_100, now).await;
    wait_for_empty_outbox(&pool, std::time::Duration::from_secs(30)).await;

    proxy.cut();
    let third = app.funded("ivan", 100_000).await;
    for amount in [1_000, 2_000] {
        let body = json!({"to_account_id": second.main_account_id, "amount": amount});
        assert_eq!(app.post("/v1/transfers", Some(&first.token), body).await.0, 201);
    }
    assert_eq!(app.charge(&first, 3_000).await.0, 201);
    assert_eq!(summary_source(&app, &second).await, "postgres-fallback");
    assert_eq!(summary_source(&app, &first).await, "clickhouse");
    // The down shard's entries wait in the outbox; the other shard's alone do not.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let held: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT e.account_id FROM statement_outbox o CROSS JOIN LATERAL unnest(o.entry_ids) AS w(id)
         JOIN statement_entries e ON e.id = w.id ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(held.contains(&second.main_account_id), "{held:?}");
    if shard_of(third.main_account_id, 2) == 0 {
        assert!(!held.contains(&third.main_account_id), "{held:?}");
    }

    proxy.restore();
    wait_for_empty_outbox(&pool, std::time::Duration::from_secs(30)).await;
    assert_sharded(&app, &pool, &urls).await;
    for user in [&first, &second] {
        assert_eq!(summary_source(&app, user).await, "clickhouse");
    }
    app.assert_audit_ok().await;
    app.stop().await;
}

/// Two replicas of one shard (ReplicatedMergeTree, ZooKeeper): what the forwarder writes to the
/// first reaches the second, entries and daily totals alike, and a server reading from the
/// second answers like the naive route.
#[tokio::test]
async fn two_replicas_of_a_shard_hold_the_same_entries_and_totals() {
    let vars = ["MINIPAY_TEST_CLICKHOUSE_REPLICAS_CLUSTER", "MINIPAY_TEST_CLICKHOUSE_REPLICAS_SHARD_URLS"];
    let (Ok(name), Ok(urls)) = (std::env::var(vars[0]), std::env::var(vars[1])) else {
        eprintln!("skipped: no replicas (set {} and {})", vars[0], vars[1]);
        return;
    };
    let replicas: Vec<String> = urls.split('|').map(str::to_owned).collect();
    assert_eq!(replicas.len(), 2, "two replicas of one shard: {urls}");
    let (app, pool) = cluster_app(&name, std::slice::from_ref(&urls), true).await;
    let alice = app.funded("alice", 500_000).await;
    let bob = app.signup("bob").await;
    busy_history(&pool, alice.main_account_id, bob.main_account_id, 1_100, app.clock_now().await).await;
    for amount in [1_000, 2_000] {
        let body = json!({"to_account_id": bob.main_account_id, "amount": amount});
        assert_eq!(app.post("/v1/transfers", Some(&alice.token), body).await.0, 201);
    }
    wait_for_empty_outbox(&pool, std::time::Duration::from_secs(30)).await;
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM statement_entries").fetch_one(&pool).await.unwrap();
    let second = shard_client(&replicas[1], &app.database);
    let engine: String = second
        .query("SELECT engine FROM system.tables WHERE database = currentDatabase() AND name = 'statement_entries'")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(engine, "ReplicatedReplacingMergeTree");
    let started = std::time::Instant::now();
    loop {
        let stored: u64 = second.query("SELECT uniqExact(entry_id) FROM statement_entries").fetch_one().await.unwrap();
        let totals: u64 = second.query("SELECT sum(entries) FROM daily_totals").fetch_one().await.unwrap();
        if (stored as i64, totals as i64) == (entries, entries) {
            break;
        }
        assert!(started.elapsed().as_secs() < 30, "replica 2: {stored} entries, totals {totals}, PostgreSQL {entries}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // A server whose shard is the second replica alone.
    let reader = spawn_server_process_with(
        &app,
        &[("MINIPAY_CLICKHOUSE_SHARD_URLS", replicas[1].as_str()), ("MINIPAY_FORWARDER", "off")],
    )
    .await;
    let path = format!("/v1/accounts/{}/history/summary", alice.main_account_id);
    let response = app.client.get(format!("{}{path}", reader.base)).bearer_auth(&alice.token).send().await.unwrap();
    assert_eq!(response.headers()["x-history-source"], "clickhouse");
    let tuned: Value = response.json().await.unwrap();
    assert_eq!(tuned, get(&app, &alice, &format!("{path}/naive")).await.body);
    app.assert_audit_ok().await;
    app.stop().await;
}
