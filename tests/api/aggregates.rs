//! The daily totals ClickHouse keeps per account: exact under the forwarder's replays, what
//! summaries read, and what the audit compares with PostgreSQL day by day.

use minipay::clock::{Clock, ClockMode};
use minipay::history::clickhouse::ClickHouse;
use minipay::history::forwarder::Forwarder;
use minipay::telemetry::Metrics;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

async fn app_without_forwarder() -> (TestApp, PgPool) {
    let app = spawn_app_with(|config| config.forwarder = false).await;
    let pool = PgPool::connect(&app.database_url).await.unwrap();
    (app, pool)
}

fn forwarder(app: &TestApp, pool: &PgPool) -> Forwarder {
    let clickhouse = ClickHouse::new(&std::env::var("CLICKHOUSE_URL").unwrap(), &app.database).unwrap();
    Forwarder::new(pool.clone(), clickhouse, Clock::new(ClockMode::System), Metrics::new())
}

fn clickhouse_client(app: &TestApp) -> clickhouse::Client {
    clickhouse::Client::default()
        .with_url(std::env::var("CLICKHOUSE_URL").unwrap())
        .with_database(&app.database)
        .with_validation(false)
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

async fn transfer(app: &TestApp, from: &TestUser, to: &TestUser, amount: i64) {
    let body = json!({"to_account_id": to.main_account_id, "amount": amount});
    let (status, created) = app.post("/v1/transfers", Some(&from.token), body).await;
    assert_eq!(status, 201, "{created}");
}

fn stores_check(report: &Value) -> Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == json!("clickhouse-entries-match-postgres"))
        .cloned()
        .unwrap_or_else(|| panic!("no PostgreSQL vs ClickHouse check: {report:#}"))
}

async fn audit(app: &TestApp) -> Value {
    let (status, body) = app.get("/admin/audit", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Per (UTC day, account, kind, direction): entries and amount, from PostgreSQL.
async fn postgres_daily(pool: &PgPool) -> Vec<(String, i64, String, String, i64, i64)> {
    sqlx::query_as(
        "SELECT to_char((at AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD'), account_id, kind, direction, count(*),
                sum(amount)::int8
           FROM statement_entries GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct DailyRow {
    day: String,
    account_id: i64,
    kind: String,
    direction: String,
    entries: u64,
    amount: i64,
}

/// The same from ClickHouse's daily totals, and from its per-counterparty totals.
async fn clickhouse_daily(app: &TestApp) -> [Vec<(String, i64, String, String, i64, i64)>; 2] {
    let clickhouse = clickhouse_client(app);
    let mut out = [Vec::new(), Vec::new()];
    for (slot, table) in ["daily_totals", "daily_counterparty_totals"].into_iter().enumerate() {
        let rows: Vec<DailyRow> = clickhouse
            .query(&format!(
                "SELECT toString(day) AS day, account_id, kind, toString(direction) AS direction,
                        sum(entries) AS entries, sum(amount) AS amount
                 FROM {table} GROUP BY day, account_id, kind, direction ORDER BY day, account_id, kind, direction"
            ))
            .fetch_all()
            .await
            .unwrap();
        out[slot] = rows
            .into_iter()
            .map(|row| (row.day, row.account_id, row.kind, row.direction, row.entries as i64, row.amount))
            .collect();
    }
    out
}

async fn assert_daily_totals_match(app: &TestApp, pool: &PgPool) {
    let expected = postgres_daily(pool).await;
    assert!(!expected.is_empty());
    let [totals, by_counterparty] = clickhouse_daily(app).await;
    assert_eq!(totals, expected, "daily_totals");
    assert_eq!(by_counterparty, expected, "daily_counterparty_totals");
}

/// A `minipay forward` killed between its ClickHouse insert and the outbox delete (the
/// MINIPAY_FORWARDER_ABORT_AFTER_INSERT hook): the next forwarder replays the batch, and the
/// daily totals, which count every row inserted, still equal PostgreSQL's, as do the tuned
/// and naive summaries.
#[tokio::test]
async fn a_replayed_batch_is_not_counted_twice_in_the_daily_totals() {
    use std::os::unix::process::ExitStatusExt;

    let (app, pool) = app_without_forwarder().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    assert_eq!(app.charge(&alice, 100_000).await.0, 201);
    for amount in [1_000, 2_000, 3_000] {
        transfer(&app, &alice, &bob, amount).await;
    }
    transfer(&app, &bob, &alice, 500).await;
    let entries = outbox_entries(&pool).await;
    assert_eq!(entries, 1 + 4 * 2);
    let mut doomed = minipay_command(&app, "forward")
        .env("MINIPAY_FORWARDER_ABORT_AFTER_INSERT", "1")
        .spawn()
        .expect("start minipay forward");
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), doomed.wait())
        .await
        .expect("the forwarder aborts within a minute")
        .unwrap();
    assert_eq!(status.signal(), Some(6), "killed by SIGABRT: {status:?}");
    assert_eq!(outbox_entries(&pool).await, entries, "the batch is still in the outbox");
    assert_daily_totals_match(&app, &pool).await;

    // The replay: the same batch again, plus a new transfer in the same step.
    transfer(&app, &alice, &bob, 4_000).await;
    assert_eq!(drain(&forwarder(&app, &pool)).await as i64, entries + 2);
    assert_daily_totals_match(&app, &pool).await;
    for user in [&alice, &bob] {
        let path = format!("/v1/accounts/{}/history/summary", user.main_account_id);
        let (status, tuned) = app.get(&path, Some(&user.token)).await;
        assert_eq!(status, 200, "{tuned}");
        let (_, naive) = app.get(&format!("{path}/naive"), Some(&user.token)).await;
        assert_eq!(tuned, naive, "summary of {}", user.name);
    }
    let report = app.assert_audit_ok().await;
    let detail = stores_check(&report)["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains(&format!("PostgreSQL {} (0 waiting in the outbox)", entries + 2)), "{detail}");
    app.stop().await;
}

/// Waits for ClickHouse's mutations of the test's tables to finish (18.16 has no synchronous
/// `ALTER ... DELETE`).
async fn wait_for_mutations(app: &TestApp) {
    let clickhouse = clickhouse_client(app);
    for _ in 0..200 {
        let running: u64 = clickhouse
            .query("SELECT count() FROM system.mutations WHERE database = ? AND is_done = 0")
            .bind(&app.database)
            .fetch_one()
            .await
            .unwrap();
        if running == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("ClickHouse mutations did not finish");
}

/// The audit compares the stores per day: a row deleted from ClickHouse's entries is reported
/// as lost, a row inserted twice as counted twice (the daily totals count it), each on its day.
#[tokio::test]
async fn the_audit_reports_a_lost_and_a_doubled_entry() {
    let (app, pool) = app_without_forwarder().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    assert_eq!(app.charge(&alice, 100_000).await.0, 201);
    transfer(&app, &alice, &bob, 1_000).await;
    transfer(&app, &alice, &bob, 2_000).await;
    assert_eq!(drain(&forwarder(&app, &pool)).await, 5);
    let report = app.assert_audit_ok().await;
    assert!(stores_check(&report)["detail"]
        .as_str()
        .unwrap()
        .contains("PostgreSQL 5 (0 waiting in the outbox), ClickHouse 5 distinct"));
    let clickhouse = clickhouse_client(&app);
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM statement_entries ORDER BY id").fetch_all(&pool).await.unwrap();

    // One row lost from ClickHouse (kept aside, to be put back).
    clickhouse
        .query("CREATE TABLE kept ENGINE = Memory AS SELECT * FROM statement_entries WHERE entry_id = ?")
        .bind(ids[1])
        .execute()
        .await
        .unwrap();
    clickhouse.query("ALTER TABLE statement_entries DELETE WHERE entry_id = ?").bind(ids[1]).execute().await.unwrap();
    wait_for_mutations(&app).await;
    let report = audit(&app).await;
    assert_eq!(report["ok"], json!(false), "{report:#}");
    let detail = stores_check(&report)["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("entries lost: ClickHouse 4, PostgreSQL 5 of which 5 forwarded"), "{detail}");
    assert!(!detail.contains("twice"), "{detail}");
    // Put back without the views (the daily totals still count it).
    for view in ["daily_totals_view", "daily_counterparty_totals_view"] {
        clickhouse.query(&format!("DETACH TABLE {view}")).execute().await.unwrap();
    }
    clickhouse.query("INSERT INTO statement_entries SELECT * FROM kept").execute().await.unwrap();
    for view in ["daily_totals_view", "daily_counterparty_totals_view"] {
        clickhouse.query(&format!("ATTACH TABLE {view}")).execute().await.unwrap();
    }
    app.assert_audit_ok().await;

    // One row inserted twice (a copy that bypassed the forwarder's look-up): the entries
    // collapse it, the daily totals count it twice.
    clickhouse
        .query("INSERT INTO statement_entries SELECT * FROM statement_entries WHERE entry_id = ?")
        .bind(ids[3])
        .execute()
        .await
        .unwrap();
    let report = audit(&app).await;
    assert_eq!(report["ok"], json!(false), "{report:#}");
    let detail = stores_check(&report)["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.contains("daily totals count entries twice or unknown: ClickHouse 6, PostgreSQL 5 of which 5 forwarded"),
        "{detail}"
    );
    assert!(!detail.contains("entries lost"), "{detail}");
    // The ledger checks still ran and passed.
    assert!(report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|other| other["name"] != json!("clickhouse-entries-match-postgres"))
        .all(|other| other["ok"] == json!(true)));
    app.stop().await;
}

/// `count` entries for `account_id`, one every 47 minutes back from `now`, of every kind of
/// counterparty (accounts shown under changing names, with and without a real user name, and
/// system counterparties), with their outbox rows, as the ledger writer would write them.
async fn busy_history(
    pool: &PgPool,
    account_id: i64,
    other_account_id: i64,
    count: i64,
    now: chrono::DateTime<chrono::Utc>,
) {
    busy_history_with_closes(pool, (account_id, other_account_id), count, 0, now).await;
}

/// [`busy_history`] whose `closes` oldest entries are of kind `close`.
pub(crate) async fn busy_history_with_closes(
    pool: &PgPool,
    (account_id, other_account_id): (i64, i64),
    count: i64,
    closes: i64,
    now: chrono::DateTime<chrono::Utc>,
) {
    let mut months = Vec::new();
    let mut month = (now - chrono::Duration::minutes(47 * count + 60)).date_naive();
    while month <= now.date_naive() + chrono::Duration::days(31) {
        months.push(minipay::domain::business_day::first_of_month(month));
        month = minipay::domain::business_day::first_of_next_month(month);
    }
    minipay::store::partitions::ensure_months(pool, &months).await.expect("create partitions");
    sqlx::query(
        "INSERT INTO statement_entries (id, account_id, at, direction, amount, balance_after, kind,
                counterparty_account_id, counterparty_name, transfer_id, memo, counterparty_user_name)
         SELECT nextval('statement_entries_id_seq'), $1, $3 - g * interval '47 minutes',
                CASE WHEN g % 3 = 0 THEN 'out' ELSE 'in' END, 100 + g, 1,
                CASE WHEN g > $4 - $5 THEN 'close' WHEN g % 4 = 0 THEN 'charge' WHEN g % 7 = 0 THEN 'interest'
                     ELSE 'transfer' END,
                CASE WHEN g % 4 = 0 OR g % 7 = 0 THEN NULL ELSE $2 + g % 5 END,
                CASE WHEN g % 4 = 0 THEN 'external' WHEN g % 7 = 0 THEN 'interest' ELSE 'name' || (g % 13) END,
                NULL, NULL,
                CASE WHEN g % 4 = 0 OR g % 7 = 0 OR g % 6 = 0 THEN NULL ELSE 'user' || (g % 5) END
           FROM generate_series(1, $4) g",
    )
    .bind(account_id)
    .bind(other_account_id)
    .bind(now)
    .bind(count)
    .bind(closes)
    .execute(pool)
    .await
    .unwrap();
    outbox_rows(pool, account_id).await;
}

/// Outbox rows for the account's entries that have none, one per commit time, as the ledger
/// writer would write them.
async fn outbox_rows(pool: &PgPool, account_id: i64) {
    sqlx::query(
        "INSERT INTO statement_outbox (entry_ids, at)
         SELECT array_agg(id ORDER BY id), at FROM statement_entries
          WHERE account_id = $1 AND id NOT IN (SELECT unnest(entry_ids) FROM statement_outbox) GROUP BY at",
    )
    .bind(account_id)
    .execute(pool)
    .await
    .unwrap();
}

async fn summaries(app: &TestApp, user: &TestUser, query: &str) -> (Option<String>, Value, Value) {
    let path = format!("/v1/accounts/{}/history/summary", user.main_account_id);
    let response = app.client.get(app.url(&format!("{path}{query}"))).bearer_auth(&user.token).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}{query}");
    let source = response.headers().get("x-history-source").map(|value| value.to_str().unwrap().to_owned());
    let tuned: Value = response.json().await.unwrap();
    let (status, naive) = app.get(&format!("{path}/naive{query}"), Some(&user.token)).await;
    assert_eq!(status, 200, "{naive}");
    (source, tuned, naive)
}

fn encode(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true).replace(':', "%3A").replace('+', "%2B")
}

/// A busy account's summaries come from the daily totals (whole days) and the entries
/// (partial days), and equal the naive ones for any range and every filter; bad filters are
/// refused on both routes.
#[tokio::test]
async fn busy_summaries_from_the_daily_totals_equal_the_naive_ones_with_any_range_and_filter() {
    let (app, pool) = app_without_forwarder().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let now = chrono::Utc::now();
    busy_history(&pool, alice.main_account_id, bob.main_account_id, 1_300, now).await;
    drain(&forwarder(&app, &pool)).await;
    let cp = bob.main_account_id + 2;
    let ranges = [
        String::new(),
        format!("&from={}", encode(now - chrono::Duration::days(30))),
        format!(
            "&from={}&to={}",
            encode(now - chrono::Duration::hours(30 * 24 + 7)),
            encode(now - chrono::Duration::minutes(300))
        ),
        format!("&from={}&to={}", encode(now - chrono::Duration::hours(20)), encode(now - chrono::Duration::hours(2))),
    ];
    let filters = [
        String::new(),
        "&direction=in".to_owned(),
        "&direction=out&kind=transfer".to_owned(),
        "&kind=charge".to_owned(),
        format!("&counterparty_account_id={cp}"),
        format!("&counterparty_account_id={cp}&direction=out"),
    ];
    for range in &ranges {
        for filter in &filters {
            let query = format!("{range}{filter}").replacen('&', "?", 1);
            let (source, tuned, naive) = summaries(&app, &alice, &query).await;
            assert_eq!(tuned, naive, "{query}");
            if filter.is_empty() && range.is_empty() {
                assert_eq!(source.as_deref(), Some("clickhouse"), "{query}");
                assert!(tuned["in"].as_i64().unwrap() > 0 && tuned["top_counterparties"].as_array().unwrap().len() > 3);
            }
        }
    }
    for bad in ["?direction=sideways", "?kind=gift", "?counterparty_account_id=x", "?counterparty_account_id=-3"] {
        for route in ["summary", "summary/naive"] {
            let (status, body) = app
                .get(&format!("/v1/accounts/{}/history/{route}{bad}", alice.main_account_id), Some(&alice.token))
                .await;
            assert_problem(status, &body, 422, "validation-failed");
        }
    }
    app.assert_audit_ok().await;
    app.stop().await;
}

/// Read-your-writes: with the forwarder stopped, a transfer answered 201 is in both parties'
/// summaries at once (from the daily totals plus the outbox), and still with ClickHouse down:
/// from the closed days kept in memory where an earlier summary read them, else from PostgreSQL.
#[tokio::test]
async fn a_summary_right_after_a_transfer_includes_it_whatever_the_forwarder_and_clickhouse() {
    let (proxy, clickhouse_url) = TcpProxy::in_front_of(&std::env::var("CLICKHOUSE_URL").unwrap()).await;
    let app = spawn_app_with(|config| {
        config.forwarder = false;
        config.clickhouse_url = clickhouse_url.into();
    })
    .await;
    let pool = PgPool::connect(&app.database_url).await.unwrap();
    // Noon UTC: every day before today is closed ([`minipay::history::closed_days`]).
    let noon =
        (app.clock_now().await + chrono::Duration::days(1)).date_naive().and_hms_opt(12, 0, 0).unwrap().and_utc();
    app.set_clock(&noon.to_rfc3339()).await;
    let alice = app.funded("alice", 500_000).await;
    let bob = app.signup("bob").await;
    let now = app.clock_now().await;
    busy_history(&pool, alice.main_account_id, bob.main_account_id, 1_100, now - chrono::Duration::minutes(1)).await;
    busy_history(&pool, bob.main_account_id, alice.main_account_id, 1_100, now - chrono::Duration::minutes(1)).await;
    drain(&forwarder(&app, &pool)).await;
    let before = summaries(&app, &alice, "?direction=out").await.1;
    for amount in [7_001, 7_002] {
        transfer(&app, &alice, &bob, amount).await;
        for (user, direction) in [(&alice, "out"), (&bob, "in")] {
            let (source, tuned, naive) = summaries(&app, user, &format!("?direction={direction}")).await;
            assert_eq!(source.as_deref(), Some("clickhouse"));
            assert_eq!(tuned, naive, "{}", user.name);
        }
    }
    let after = summaries(&app, &alice, "?direction=out").await.1;
    assert_eq!(after["out"].as_i64().unwrap(), before["out"].as_i64().unwrap() + 7_001 + 7_002);
    let (_, tuned, naive) = summaries(&app, &alice, "").await;
    assert_eq!(tuned, naive);
    assert!(tuned["top_counterparties"].as_array().unwrap().iter().any(|cp| cp["name"] == json!("bob")), "{tuned:#}");

    proxy.cut();
    transfer(&app, &bob, &alice, 3_000).await;
    // Alice's closed days are in memory (her summary without filters read them), Bob's are not
    // (his filtered summaries met entries waiting).
    for (user, source_then) in [(&alice, "clickhouse"), (&bob, "postgres-fallback")] {
        let (source, tuned, naive) = summaries(&app, user, "").await;
        assert_eq!(source.as_deref(), Some(source_then), "{}", user.name);
        assert_eq!(tuned, naive, "{}", user.name);
    }
    proxy.restore();
    drain(&forwarder(&app, &pool)).await;
    for user in [&alice, &bob] {
        let (source, tuned, naive) = summaries(&app, user, "").await;
        assert_eq!(source.as_deref(), Some("clickhouse"));
        assert_eq!(tuned, naive, "{}", user.name);
    }
    app.assert_audit_ok().await;
    app.stop().await;
}

/// For each `(count, accounts)` of `groups`, `accounts` counterparty accounts (numbered on from
/// `first_counterparty`) with `count` entries each on `account_id`, 2 minutes apart back from
/// `now`, shown under three names in turn and a user name that is sometimes missing, with
/// their outbox rows.
async fn many_counterparties(
    pool: &PgPool,
    (account_id, first_counterparty): (i64, i64),
    groups: &[(i64, i64)],
    now: chrono::DateTime<chrono::Utc>,
) {
    entries_apart(pool, (account_id, first_counterparty), groups, now, 120).await;
}

/// [`many_counterparties`] with entries `seconds` apart.
async fn entries_apart(
    pool: &PgPool,
    (account_id, first_counterparty): (i64, i64),
    groups: &[(i64, i64)],
    now: chrono::DateTime<chrono::Utc>,
    seconds: i32,
) {
    let (mut offset, mut first) = (0, first_counterparty);
    for &(count, accounts) in groups {
        sqlx::query(
            "INSERT INTO statement_entries (id, account_id, at, direction, amount, balance_after, kind,
                    counterparty_account_id, counterparty_name, transfer_id, memo, counterparty_user_name)
             SELECT nextval('statement_entries_id_seq'), $1, $3 - ($6 + a * $4 + e) * $7 * interval '1 second',
                    CASE WHEN e % 2 = 0 THEN 'in' ELSE 'out' END, 10 + a + e, 1, 'transfer', $2 + a,
                    'cp' || a || '-' || (e % 3), NULL, NULL,
                    CASE WHEN e % 4 = 1 THEN NULL ELSE 'user' || ($2 + a) END
               FROM generate_series(0, $5 - 1) a, generate_series(0, $4 - 1) e",
        )
        .bind(account_id)
        .bind(first)
        .bind(now)
        .bind(count)
        .bind(accounts)
        .bind(offset)
        .bind(seconds)
        .execute(pool)
        .await
        .unwrap();
        (offset, first) = (offset + count * accounts, first + accounts);
    }
    outbox_rows(pool, account_id).await;
}

/// An account with thousands of counterparties: the top ones are decided by ClickHouse's counts
/// and named from PostgreSQL (after a look-up of a counterparty with entries waiting that the
/// counts left unread), or, when ties at the last place reach past the counts read (4,096),
/// named and ranked by ClickHouse; each equals the naive summary, with and without entries
/// waiting.
#[tokio::test]
async fn the_top_counterparties_of_an_account_with_hundreds_are_those_of_the_naive_summary() {
    let (app, pool) = app_without_forwarder().await;
    let now = chrono::Utc::now();
    // Clear leaders (31..24 entries) above 1,200 with one; then 5 with three above 4,200 tied
    // at two. (Over 1,000 entries: a smaller range is summed by PostgreSQL.)
    let cases: [&[(i64, i64)]; 2] = [&[(31, 1), (29, 1), (27, 4), (24, 6), (1, 1_200)], &[(3, 5), (2, 4_200)]];
    let ranges = ["".to_owned(), format!("?from={}", encode(now - chrono::Duration::hours(40)))];
    for (i, groups) in cases.into_iter().enumerate() {
        let user = app.signup(&format!("many{i}")).await;
        many_counterparties(&pool, (user.main_account_id, 1_000_000 * (i as i64 + 1)), groups, now).await;
        drain(&forwarder(&app, &pool)).await;
        for range in &ranges {
            let (source, tuned, naive) = summaries(&app, &user, range).await;
            assert_eq!(source.as_deref(), Some("clickhouse"), "{range}");
            assert_eq!(tuned, naive, "case {i} {range}");
            assert_eq!(tuned["top_counterparties"].as_array().unwrap().len(), 10);
        }
        // Entries waiting in the outbox lift a counterparty of one entry into the top.
        let lifted = 1_000_000 * (i as i64 + 1) + groups.iter().map(|(_, accounts)| accounts).sum::<i64>() - 1;
        many_counterparties(&pool, (user.main_account_id, lifted), &[(40, 1)], now).await;
        let (_, tuned, naive) = summaries(&app, &user, "").await;
        assert_eq!(tuned, naive, "case {i} with entries waiting");
        assert_eq!(tuned["top_counterparties"][0]["account_id"], json!(lifted), "{tuned:#}");
    }
    app.assert_audit_ok().await;
    app.stop().await;
}

/// Each process keeps the daily totals of closed days (ended a day ago or more) after a summary
/// reads them, but not of a day with entries still waiting in the outbox: not even when a
/// filtered summary leaves those entries out. After they are forwarded, every summary is still
/// the naive one, read again and again (from memory then).
#[tokio::test]
async fn closed_days_kept_in_memory_miss_no_entry_that_was_waiting() {
    let (app, pool) = app_without_forwarder().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let now = app.clock_now().await;
    busy_history(&pool, alice.main_account_id, bob.main_account_id, 1_300, now).await;
    drain(&forwarder(&app, &pool)).await;
    // 60 transfers with a new counterparty, 3 to 5 days ago, that the forwarder has not moved
    // (the outbox rows that carry only forwarded entries again go).
    let (forwarded,): (i64,) = sqlx::query_as("SELECT max(id) FROM statement_entries").fetch_one(&pool).await.unwrap();
    entries_apart(&pool, (alice.main_account_id, 7_000_000), &[(30, 2)], now - chrono::Duration::days(3), 3_000).await;
    sqlx::query("DELETE FROM statement_outbox WHERE (SELECT max(id) FROM unnest(entry_ids) id) <= $1")
        .bind(forwarded)
        .execute(&pool)
        .await
        .unwrap();
    for query in ["?kind=charge", "?direction=in&kind=interest", "?counterparty_account_id=7000001", ""] {
        let (source, tuned, naive) = summaries(&app, &alice, query).await;
        assert_eq!(source.as_deref(), Some("clickhouse"), "{query}");
        assert_eq!(tuned, naive, "{query}, entries waiting");
    }
    drain(&forwarder(&app, &pool)).await;
    for round in 0..2 {
        for query in ["", "?kind=transfer", "?direction=out", "?counterparty_account_id=7000000", "?kind=charge"] {
            let (source, tuned, naive) = summaries(&app, &alice, query).await;
            assert_eq!(source.as_deref(), Some("clickhouse"), "{query}");
            assert_eq!(tuned, naive, "{query}, round {round}");
        }
    }
    let (_, tuned, _) = summaries(&app, &alice, "?counterparty_account_id=7000000").await;
    assert_eq!(tuned["top_counterparties"][0]["count"], json!(30), "{tuned:#}");
    app.assert_audit_ok().await;
    app.stop().await;
}

/// A job run stamps its entries with the time it began, and may commit them after the day
/// ended: while it is in progress, its day is not kept in memory, and once it has committed,
/// the summaries count its entries.
#[tokio::test]
async fn a_day_is_not_kept_while_a_job_run_begun_on_it_is_in_progress() {
    let (app, pool) = app_without_forwarder().await;
    // 02:00 UTC tomorrow: yesterday (by then) ended two hours before. The users sign up then:
    // sessions last a day, and tomorrow's 02:00 is more than a day away before 02:00 today.
    let midnight =
        (app.clock_now().await + chrono::Duration::days(1)).date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    app.set_clock(&(midnight + chrono::Duration::hours(2)).to_rfc3339()).await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let now = app.clock_now().await;
    busy_history(&pool, alice.main_account_id, bob.main_account_id, 1_300, now).await;
    drain(&forwarder(&app, &pool)).await;
    let began = midnight - chrono::Duration::minutes(30);
    sqlx::query("INSERT INTO job_runs (job, business_date, status, started_at) VALUES ('interest', $1, 'running', $2)")
        .bind(began.date_naive())
        .bind(began)
        .execute(&pool)
        .await
        .unwrap();
    let (_, tuned, naive) = summaries(&app, &alice, "").await;
    assert_eq!(tuned, naive, "before the run's entries");
    // The run commits 40 entries stamped with its start, and finishes.
    entries_apart(&pool, (alice.main_account_id, 8_000_000), &[(40, 1)], began, 0).await;
    sqlx::query("UPDATE job_runs SET status = 'done', finished_at = $1").bind(now).execute(&pool).await.unwrap();
    drain(&forwarder(&app, &pool)).await;
    for query in ["", "?kind=transfer"] {
        let (source, tuned, naive) = summaries(&app, &alice, query).await;
        assert_eq!(source.as_deref(), Some("clickhouse"), "{query}");
        assert_eq!(tuned, naive, "{query}, after the run");
    }
    let (_, tuned, _) = summaries(&app, &alice, "?counterparty_account_id=8000000").await;
    assert_eq!(tuned["top_counterparties"][0]["count"], json!(40), "{tuned:#}");
    app.assert_audit_ok().await;
    app.stop().await;
}

/// A summary's partial days come from PostgreSQL when they hold at most 5,000 entries, from
/// ClickHouse's entries when a burst makes them more; the same summary either way, with and
/// without entries waiting.
#[tokio::test]
async fn a_summary_over_a_burst_of_thousands_today_equals_the_naive_one() {
    let (app, pool) = app_without_forwarder().await;
    let user = app.signup("bursty").await;
    let now = chrono::Utc::now();
    // Older days for the daily totals, then 5,200 entries in the last 87 minutes.
    entries_apart(&pool, (user.main_account_id, 5_000_000), &[(3, 400)], now - chrono::Duration::days(2), 300).await;
    entries_apart(&pool, (user.main_account_id, 6_000_000), &[(2, 2_600)], now, 1).await;
    drain(&forwarder(&app, &pool)).await;
    let week = format!("?from={}", encode(now - chrono::Duration::days(7)));
    for query in ["", week.as_str(), "?direction=in"] {
        let (source, tuned, naive) = summaries(&app, &user, query).await;
        assert_eq!(source.as_deref(), Some("clickhouse"), "{query}");
        assert_eq!(tuned, naive, "{query}");
    }
    entries_apart(&pool, (user.main_account_id, 6_000_000), &[(40, 1)], now, 1).await;
    let (_, tuned, naive) = summaries(&app, &user, "").await;
    assert_eq!(tuned, naive, "with entries waiting");
    assert_eq!(tuned["top_counterparties"][0]["account_id"], json!(6_000_000), "{tuned:#}");
    app.assert_audit_ok().await;
    app.stop().await;
}

#[derive(clickhouse::Row, serde::Deserialize, Debug)]
struct OwnedEntry {
    account_id: i64,
    kind: String,
    account_kind: String,
    owner_user_id: i64,
}

/// The columns analysts group by: each forwarded entry carries its account's kind and owner.
#[tokio::test]
async fn a_forwarded_entry_carries_its_account_kind_and_owner() {
    let (app, pool) = app_without_forwarder().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    assert_eq!(app.charge(&alice, 50_000).await.0, 201);
    transfer(&app, &alice, &bob, 10_000).await;
    let (status, savings) =
        app.post("/v1/accounts", Some(&alice.token), json!({"kind": "savings", "product": "free"})).await;
    assert_eq!(status, 201, "{savings}");
    let savings_id = savings["id"].as_i64().unwrap();
    let path = format!("/v1/accounts/{savings_id}/deposits");
    let (status, body) = app.post(&path, Some(&alice.token), json!({"amount": 5_000})).await;
    assert_eq!(status, 201, "{body}");
    drain(&forwarder(&app, &pool)).await;

    let rows: Vec<OwnedEntry> = clickhouse_client(&app)
        .query(
            "SELECT account_id, kind, account_kind, owner_user_id FROM statement_entries
             ORDER BY entry_id",
        )
        .fetch_all()
        .await
        .unwrap();
    let seen: Vec<(i64, &str, &str, i64)> = rows
        .iter()
        .map(|row| (row.account_id, row.kind.as_str(), row.account_kind.as_str(), row.owner_user_id))
        .collect();
    let (alice_main, bob_main) = (alice.main_account_id, bob.main_account_id);
    assert_eq!(
        seen,
        vec![
            (alice_main, "charge", "main", alice.id),
            (alice_main, "transfer", "main", alice.id),
            (bob_main, "transfer", "main", bob.id),
            (alice_main, "deposit", "main", alice.id),
            (savings_id, "deposit", "savings", alice.id),
        ]
    );
    app.assert_audit_ok().await;
    app.stop().await;
}

/// The request pool opens its first connections as it starts, each with the summary's first
/// statement prepared (and the year's partitions opened), so that no summary pays for that; a
/// pool without the warm-up (the command-line tools') prepares nothing.
#[tokio::test]
async fn the_request_pool_starts_with_connections_ready_for_a_summary() {
    let app = spawn_app().await;
    let prepared = "SELECT count(*) FROM pg_prepared_statements
                     WHERE statement LIKE '%WITH start AS MATERIALIZED%' AND statement NOT LIKE '%pg_prepared_statements%'";
    let warmed = minipay::store::connect(&app.database_url, 8, Some(minipay::history::summary::warm)).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while warmed.size() < 4 {
        assert!(std::time::Instant::now() < deadline, "the pool opened {} connections, not 4", warmed.size());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for _ in 0..4 {
        let count: i64 = sqlx::query_scalar(prepared).fetch_one(&warmed).await.unwrap();
        assert_eq!(count, 1, "every connection of the pool has the summary's statement prepared");
    }
    let cold = minipay::store::connect(&app.database_url, 8, None).await.unwrap();
    let count: i64 = sqlx::query_scalar(prepared).fetch_one(&cold).await.unwrap();
    assert_eq!(count, 0);
    assert_eq!(cold.size(), 1, "a pool without the warm-up opens connections only when asked");
}
