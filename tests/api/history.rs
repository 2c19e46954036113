//! Statement history: the outbox forwarder and the naive and tuned queries (scenarios 23, 25).
//!
//! Entries are written straight into `statement_entries` + `statement_outbox` (as the ledger
//! writer does in its transactions), then forwarded by calling `Forwarder::run_once`, so each
//! test decides exactly when ClickHouse sees what. The apps run without their own forwarder,
//! except where a test says otherwise.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use minipay::clock::{Clock, ClockMode};
use minipay::history::clickhouse::ClickHouse;
use minipay::history::forwarder::Forwarder;
use minipay::shutdown::Shutdown;
use minipay::telemetry::Metrics;
use serde_json::{json, Value};
use sqlx::{PgConnection, PgPool};

use crate::helpers::*;

struct Entry<'a> {
    at: DateTime<Utc>,
    direction: &'a str,
    amount: i64,
    kind: &'a str,
    counterparty_account_id: Option<i64>,
    counterparty_name: &'a str,
    transfer_id: Option<i64>,
    memo: Option<&'a str>,
}

impl Entry<'_> {
    fn simple(at: DateTime<Utc>, amount: i64) -> Entry<'static> {
        Entry {
            at,
            direction: "in",
            amount,
            kind: "charge",
            counterparty_account_id: None,
            counterparty_name: "external",
            transfer_id: None,
            memo: None,
        }
    }
}

/// Inserts an entry and its outbox row on `conn` (in whatever transaction it is in).
async fn insert_entry(conn: &mut PgConnection, account_id: i64, entry: &Entry<'_>) -> i64 {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO statement_entries (id, account_id, at, direction, amount, balance_after, kind,
                counterparty_account_id, counterparty_name, transfer_id, memo)
         VALUES (nextval('statement_entries_id_seq'), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         RETURNING id",
    )
    .bind(account_id)
    .bind(entry.at)
    .bind(entry.direction)
    .bind(entry.amount)
    .bind(entry.amount * 3)
    .bind(entry.kind)
    .bind(entry.counterparty_account_id)
    .bind(entry.counterparty_name)
    .bind(entry.transfer_id)
    .bind(entry.memo)
    .fetch_one(&mut *conn)
    .await
    .expect("insert a statement entry");
    sqlx::query("INSERT INTO statement_outbox (entry_ids, at) VALUES (ARRAY[$1], $2)")
        .bind(id)
        .bind(entry.at)
        .execute(&mut *conn)
        .await
        .expect("insert an outbox row");
    id
}

/// Monthly partitions of `statement_entries` for every month from `oldest` to now.
async fn ensure_partitions(pool: &PgPool, oldest: DateTime<Utc>) {
    let mut months = Vec::new();
    let mut month = oldest.date_naive();
    while month <= Utc::now().date_naive() + Duration::days(31) {
        months.push(minipay::domain::business_day::first_of_month(month));
        month = minipay::domain::business_day::first_of_next_month(month);
    }
    minipay::store::partitions::ensure_months(pool, &months).await.expect("create partitions");
}

fn forwarder(app: &TestApp, pool: &PgPool) -> Forwarder {
    let clickhouse = ClickHouse::new(&std::env::var("CLICKHOUSE_URL").unwrap(), &app.database).unwrap();
    Forwarder::new(pool.clone(), clickhouse, Clock::new(ClockMode::System), Metrics::new())
}

/// Runs the forwarder until the outbox is empty; returns how many entries it moved.
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

/// A client of the shared ClickHouse server, in the test's database.
fn clickhouse_client(app: &TestApp) -> clickhouse::Client {
    clickhouse::Client::default()
        .with_url(std::env::var("CLICKHOUSE_URL").unwrap())
        .with_database(&app.database)
        .with_validation(false)
}

/// Writes an entry into ClickHouse only, one that PostgreSQL never had.
async fn insert_stray_clickhouse_entry(app: &TestApp, account_id: i64, at: DateTime<Utc>) {
    clickhouse_client(app)
        .query(
            "INSERT INTO statement_entries (entry_id, account_id, at, at_us, direction, amount, balance_after, kind,
                 counterparty_account_id, counterparty_name, transfer_id, memo)
             SELECT 999999999, ?, toDateTime(?), ?, 'in', 5, 5, 'charge', NULL, 'external', NULL, ''",
        )
        .bind(account_id)
        .bind(at.timestamp() as u32)
        .bind(at.timestamp() * 1_000_000)
        .execute()
        .await
        .unwrap();
}

async fn app_without_forwarder() -> (TestApp, PgPool) {
    let app = spawn_app_with(|config| config.forwarder = false).await;
    let pool = PgPool::connect(&app.database_url).await.unwrap();
    (app, pool)
}

struct Answer {
    status: reqwest::StatusCode,
    source: Option<String>,
    lag_ms: Option<i64>,
    body: Value,
}

async fn get(app: &TestApp, user: &TestUser, path: &str) -> Answer {
    let response = app.client.get(app.url(path)).bearer_auth(&user.token).send().await.expect("request sent");
    let header = |name: &str| response.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_owned);
    let source = header("x-history-source");
    let lag_ms = header("x-history-lag-ms").map(|text| text.parse().expect("lag is an integer"));
    let status = response.status();
    let body = serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null);
    Answer { status, source, lag_ms, body }
}

/// Every entry of the tuned route, following cursors.
async fn tuned_all(
    app: &TestApp,
    user: &TestUser,
    account_id: i64,
    query: &str,
    limit: i64,
) -> (Vec<Value>, Option<String>) {
    let mut entries = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1_000 {
        let mut path = format!("/v1/accounts/{account_id}/history?limit={limit}{query}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let answer = get(app, user, &path).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(answer.lag_ms.is_some(), "X-History-Lag-Ms missing");
        let page = answer.body["entries"].as_array().unwrap().clone();
        assert!(page.len() as i64 <= limit);
        entries.extend(page);
        match answer.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (entries, answer.source),
        }
    }
    panic!("too many pages");
}

/// Every entry of the naive route, page by page, checking the total.
pub(crate) async fn naive_all(app: &TestApp, user: &TestUser, account_id: i64, query: &str, limit: i64) -> Vec<Value> {
    let mut entries = Vec::new();
    for page in 0..1_000 {
        let answer =
            get(app, user, &format!("/v1/accounts/{account_id}/history/naive?limit={limit}&page={page}{query}")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(answer.lag_ms.is_some(), "X-History-Lag-Ms missing");
        let found = answer.body["entries"].as_array().unwrap().clone();
        let total = answer.body["total"].as_i64().unwrap();
        assert_eq!(answer.body["page"], json!(page));
        if found.is_empty() {
            assert_eq!(entries.len() as i64, total, "naive total");
            return entries;
        }
        entries.extend(found);
    }
    panic!("too many pages");
}

fn ids(entries: &[Value]) -> Vec<i64> {
    entries.iter().map(|entry| entry["id"].as_i64().unwrap()).collect()
}

fn assert_no_duplicates(entries: &[Value]) {
    let unique: HashSet<i64> = ids(entries).into_iter().collect();
    assert_eq!(unique.len(), entries.len(), "duplicate entries: {:?}", ids(entries));
}

/// A year of varied entries for one account: same-second and same-microsecond groups, every
/// kind of counterparty, with and without memos.
async fn varied_history(pool: &PgPool, account_id: i64, other_account_id: i64) -> Vec<i64> {
    let now = Utc::now();
    ensure_partitions(pool, now - Duration::days(400)).await;
    let mut conn = pool.acquire().await.unwrap();
    let names = ["Kim", "Lee", "Park", "Choi", "Jung", "Kang", "Cho", "Yoon", "Jang", "Lim", "Han", "Oh"];
    let kinds = ["charge", "transfer", "deposit", "refund", "pending"];
    let mut created = Vec::new();
    for i in 0..90i64 {
        // Spread over ~330 days (inside the year kept), denser near now; every 7th shares the previous one's time.
        let age = Duration::minutes(i * i * 60 + 5);
        let at = if i % 7 == 6 { now - Duration::minutes((i - 1) * (i - 1) * 60 + 5) } else { now - age };
        let kind = kinds[(i % kinds.len() as i64) as usize];
        let external = kind == "charge";
        let entry = Entry {
            at,
            direction: if i % 3 == 0 { "out" } else { "in" },
            amount: 1_000 + i * 17,
            kind,
            // Eleven accounts, each shown under several names over time.
            counterparty_account_id: (!external).then_some(other_account_id + i % 11),
            counterparty_name: if external { "external" } else { names[(i * 7 % names.len() as i64) as usize] },
            transfer_id: (!external).then_some(10_000 + i),
            memo: (i % 4 == 0).then_some("rent"),
        };
        created.push(insert_entry(&mut conn, account_id, &entry).await);
    }
    created
}

#[tokio::test]
async fn scenario_25_naive_and_tuned_return_the_same_entries() {
    let (app, pool) = app_without_forwarder().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let created = varied_history(&pool, alice.main_account_id, bob.main_account_id).await;
    // Bob's entries must not leak into Alice's history.
    let mut conn = pool.acquire().await.unwrap();
    insert_entry(&mut conn, bob.main_account_id, &Entry::simple(Utc::now() - Duration::hours(1), 500)).await;
    drop(conn);

    // Before forwarding, ClickHouse is behind and the lag says so; the page shows everything.
    let before = get(&app, &alice, &format!("/v1/accounts/{}/history", alice.main_account_id)).await;
    assert_eq!(before.source.as_deref(), Some("postgres"));
    assert!(before.lag_ms.unwrap() > 0, "lag before forwarding");
    assert_eq!(before.body["entries"].as_array().unwrap().len(), 50);

    let moved = drain(&forwarder(&app, &pool)).await;
    assert_eq!(moved, created.len() + 1);

    let naive = naive_all(&app, &alice, alice.main_account_id, "", 7).await;
    let (tuned, source) = tuned_all(&app, &alice, alice.main_account_id, "", 7).await;
    assert_eq!(source.as_deref(), Some("postgres"));
    assert_eq!(tuned.len(), created.len());
    assert_no_duplicates(&tuned);
    assert_eq!(tuned, naive);
    let mut expected = created.clone();
    expected.sort();
    let mut seen = ids(&tuned);
    seen.sort();
    assert_eq!(seen, expected);
    // Newest first: times never increase, and ids decrease within a time.
    for pair in tuned.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let (at_a, at_b): (DateTime<Utc>, DateTime<Utc>) =
            (a["at"].as_str().unwrap().parse().unwrap(), b["at"].as_str().unwrap().parse().unwrap());
        assert!(at_a > at_b || (at_a == at_b && a["id"].as_i64() > b["id"].as_i64()), "order: {a} then {b}");
    }
    // The entry shape the OpenAPI document gives.
    let sample = tuned
        .iter()
        .find(|entry| entry["memo"] == json!("rent") && entry["kind"] == json!("transfer"))
        .expect("a transfer with a memo");
    let keys: HashSet<&str> = sample.as_object().unwrap().keys().map(String::as_str).collect();
    let wanted: HashSet<&str> = [
        "id",
        "at",
        "account_id",
        "direction",
        "amount",
        "balance_after",
        "kind",
        "counterparty",
        "transfer_id",
        "memo",
    ]
    .into();
    assert_eq!(keys, wanted);
    assert_eq!(sample["account_id"], json!(alice.main_account_id));
    let i = sample["transfer_id"].as_i64().unwrap() - 10_000;
    assert_eq!(sample["counterparty"]["account_id"], json!(bob.main_account_id + i % 11));
    let top_up = tuned.iter().find(|entry| entry["kind"] == json!("charge")).unwrap();
    assert_eq!(top_up["counterparty"], json!({"account_id": null, "name": "external", "user_name": null}));
    assert_eq!(top_up["transfer_id"], json!(null));

    // A range, in another time zone's notation.
    let from = (Utc::now() - Duration::days(40)).with_timezone(&chrono_tz::Asia::Seoul).to_rfc3339();
    let to = (Utc::now() - Duration::days(2)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let query = format!("&from={}&to={}", urlencode(&from), urlencode(&to));
    let naive = naive_all(&app, &alice, alice.main_account_id, &query, 5).await;
    let (tuned, _) = tuned_all(&app, &alice, alice.main_account_id, &query, 5).await;
    assert!(!tuned.is_empty() && tuned.len() < created.len(), "{} entries in range", tuned.len());
    assert_eq!(tuned, naive);

    // Summaries agree, over everything and over the range.
    for query in ["".to_owned(), query.replacen('&', "?", 1)] {
        let tuned = get(&app, &alice, &format!("/v1/accounts/{}/history/summary{query}", alice.main_account_id)).await;
        let naive =
            get(&app, &alice, &format!("/v1/accounts/{}/history/summary/naive{query}", alice.main_account_id)).await;
        assert_eq!(tuned.status, 200, "{}", tuned.body);
        assert_eq!(tuned.source.as_deref(), Some("postgres"));
        assert!(tuned.lag_ms.is_some() && naive.lag_ms.is_some());
        assert_eq!(tuned.body, naive.body);
        assert!(tuned.body["top_counterparties"].as_array().unwrap().len() <= 10);
    }
    let summary = get(&app, &alice, &format!("/v1/accounts/{}/history/summary", alice.main_account_id)).await.body;
    let (mut total_in, mut total_out, mut count) = (0, 0, 0);
    for kind in summary["by_kind"].as_array().unwrap() {
        total_in += kind["in"].as_i64().unwrap();
        total_out += kind["out"].as_i64().unwrap();
        count += kind["count"].as_i64().unwrap();
    }
    assert_eq!(
        (summary["in"].as_i64().unwrap(), summary["out"].as_i64().unwrap(), count),
        (total_in, total_out, created.len() as i64)
    );
    assert_eq!(summary["top_counterparties"].as_array().unwrap().len(), 10);
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn scenario_23_same_timestamp_pages_have_no_duplicate_and_no_gap() {
    let (app, pool) = app_without_forwarder().await;
    let alice = app.signup("alice").await;
    let at = Utc::now() - Duration::minutes(10);
    let mut conn = pool.acquire().await.unwrap();
    let mut created = Vec::new();
    for amount in [100, 200, 300] {
        created.push(insert_entry(&mut conn, alice.main_account_id, &Entry::simple(at, amount)).await);
    }
    drop(conn);
    drain(&forwarder(&app, &pool)).await;

    let path = format!("/v1/accounts/{}/history?limit=2", alice.main_account_id);
    let first = get(&app, &alice, &path).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let first_page = first.body["entries"].as_array().unwrap().clone();
    assert_eq!(ids(&first_page), vec![created[2], created[1]]);
    let cursor = first.body["next_cursor"].as_str().expect("a second page").to_owned();
    let second = get(&app, &alice, &format!("{path}&cursor={cursor}")).await;
    assert_eq!(ids(second.body["entries"].as_array().unwrap()), vec![created[0]]);
    assert_eq!(second.body["next_cursor"], json!(null));

    let naive_first =
        get(&app, &alice, &format!("/v1/accounts/{}/history/naive?limit=2&page=0", alice.main_account_id)).await;
    let naive_second =
        get(&app, &alice, &format!("/v1/accounts/{}/history/naive?limit=2&page=1", alice.main_account_id)).await;
    assert_eq!(naive_first.body["entries"], first.body["entries"]);
    assert_eq!(naive_second.body["entries"], second.body["entries"]);
    assert_eq!(naive_first.body["total"], json!(3));
}

#[tokio::test]
async fn replayed_batches_do_not_show_twice() {
    let (app, pool) = app_without_forwarder().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let created = varied_history(&pool, alice.main_account_id, bob.main_account_id).await;
    // No background merge may collapse the replays before the reads below see them.
    let clickhouse = clickhouse_client(&app);
    clickhouse.query("SYSTEM STOP MERGES statement_entries").execute().await.unwrap();
    let forwarder = forwarder(&app, &pool);
    assert_eq!(drain(&forwarder).await, created.len());
    // A crash after the ClickHouse insert and before the outbox delete: the rows come back.
    sqlx::query("INSERT INTO statement_outbox (entry_ids, at) SELECT array_agg(id ORDER BY id), at FROM statement_entries GROUP BY at")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(drain(&forwarder).await, created.len());
    // The replay finds its entries in ClickHouse and inserts none again (the daily totals
    // would count them twice).
    let stored: u64 = clickhouse.query("SELECT count() FROM statement_entries").fetch_one().await.unwrap();
    assert_eq!(stored, created.len() as u64, "every entry is stored once");

    let (tuned, _) = tuned_all(&app, &alice, alice.main_account_id, "", 50).await;
    assert_no_duplicates(&tuned);
    assert_eq!(tuned.len(), created.len());
    assert_eq!(tuned, naive_all(&app, &alice, alice.main_account_id, "", 50).await);
    let tuned = get(&app, &alice, &format!("/v1/accounts/{}/history/summary", alice.main_account_id)).await;
    let naive = get(&app, &alice, &format!("/v1/accounts/{}/history/summary/naive", alice.main_account_id)).await;
    assert_eq!(tuned.body, naive.body);
}

/// A step that stops at the entry limit with rows still waiting reports a backlog, so the
/// forwarder goes on at once instead of pausing between steps of a large backlog.
#[tokio::test]
async fn a_step_that_leaves_rows_behind_reports_a_backlog() {
    let (app, pool) = app_without_forwarder().await;
    let alice = app.funded("alice", 10_000).await;
    let bob = app.signup("bob").await;
    // One transfer at a time: a batch each, so an outbox row of two entries each (the funding
    // charge made one row of one entry before them).
    for amount in [100, 200, 300] {
        let (status, body) = crate::transfers::send(&app, &alice, bob.main_account_id, amount).await;
        assert_eq!(status, 201, "{body}");
    }
    let forwarder = forwarder(&app, &pool).with_batch_size(3);
    let mut steps = Vec::new();
    loop {
        let step = forwarder.step().await.unwrap();
        if step.moved == 0 {
            break;
        }
        steps.push((step.moved, step.backlog));
    }
    // The charge's row and the first transfer's fill the first step; the second step stops
    // short of the limit (2 of 3 entries, the next row would not fit) with a row left: a
    // backlog all the same. The last step leaves nothing.
    assert_eq!(steps, vec![(3, true), (2, true), (2, false)]);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn entries_committed_out_of_order_are_forwarded_exactly_once() {
    let (app, pool) = app_without_forwarder().await;
    let alice = app.signup("alice").await;
    let forwarder = forwarder(&app, &pool);
    let now = Utc::now();

    // The smaller id commits last.
    let mut early = pool.begin().await.unwrap();
    let first = insert_entry(&mut early, alice.main_account_id, &Entry::simple(now - Duration::seconds(2), 100)).await;
    let mut late = pool.begin().await.unwrap();
    let second = insert_entry(&mut late, alice.main_account_id, &Entry::simple(now - Duration::seconds(1), 200)).await;
    assert!(first < second);
    late.commit().await.unwrap();
    assert_eq!(forwarder.run_once().await.unwrap(), 1);
    early.commit().await.unwrap();
    assert_eq!(forwarder.run_once().await.unwrap(), 1);
    assert_eq!(forwarder.run_once().await.unwrap(), 0);

    // Several forwarders share a backlog without taking a row twice.
    let mut conn = pool.acquire().await.unwrap();
    for i in 0..40 {
        insert_entry(&mut conn, alice.main_account_id, &Entry::simple(now - Duration::seconds(100 + i), 10 + i)).await;
    }
    drop(conn);
    let small = forwarder.clone().with_batch_size(3);
    let results = futures::future::join_all((0..4).map(|_| drain(&small))).await;
    assert_eq!(results.iter().sum::<usize>(), 40);

    let (tuned, _) = tuned_all(&app, &alice, alice.main_account_id, "", 200).await;
    assert_no_duplicates(&tuned);
    assert_eq!(tuned.len(), 42);
    assert_eq!(ids(&tuned[..2]), vec![second, first]);
    let lag = get(&app, &alice, &format!("/v1/accounts/{}/history", alice.main_account_id)).await.lag_ms;
    assert_eq!(lag, Some(0));
}

#[tokio::test]
async fn tuned_routes_fall_back_to_postgres_when_clickhouse_is_unreachable() {
    let app = spawn_app_with(|config| config.clickhouse_url = "http://127.0.0.1:9".into()).await;
    let pool = PgPool::connect(&app.database_url).await.unwrap();
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let created = varied_history(&pool, alice.main_account_id, bob.main_account_id).await;

    // Pages come from the PostgreSQL keyset index, ClickHouse or not.
    let (tuned, source) = tuned_all(&app, &alice, alice.main_account_id, "", 9).await;
    assert_eq!(source.as_deref(), Some("postgres"));
    assert_eq!(tuned.len(), created.len());
    assert_no_duplicates(&tuned);
    assert_eq!(tuned, naive_all(&app, &alice, alice.main_account_id, "", 9).await);
    let summary = get(&app, &alice, &format!("/v1/accounts/{}/history/summary", alice.main_account_id)).await;
    assert_eq!(summary.status, 200);
    // A summary of few entries is PostgreSQL's anyway (busy accounts: tests/api/aggregates.rs).
    assert_eq!(summary.source.as_deref(), Some("postgres"));
    let naive = get(&app, &alice, &format!("/v1/accounts/{}/history/summary/naive", alice.main_account_id)).await;
    assert_eq!(summary.body, naive.body);
    // Nothing was forwarded: the lag says so.
    assert!(summary.lag_ms.unwrap() > 0);
}

#[tokio::test]
async fn only_the_owner_reads_a_history_and_bad_input_is_refused() {
    let (app, _pool) = app_without_forwarder().await;
    let alice = app.signup("alice").await;
    let mallory = app.signup("mallory").await;
    let account = alice.main_account_id;
    for suffix in ["", "/naive", "/summary", "/summary/naive"] {
        for (user, id) in [(&mallory, account), (&alice, 999_999_999)] {
            let answer = get(&app, user, &format!("/v1/accounts/{id}/history{suffix}")).await;
            assert_problem(answer.status, &answer.body, 404, "not-found");
            assert!(answer.lag_ms.is_some(), "X-History-Lag-Ms on errors too");
        }
        let (status, body) = app.get(&format!("/v1/accounts/{account}/history{suffix}"), None).await;
        assert_problem(status, &body, 401, "unauthorized");
    }
    let bad = [
        "/history?limit=0",
        "/history?limit=201",
        "/history?limit=ten",
        "/history?cursor=garbage",
        "/history?cursor=h1.0",
        "/history?from=yesterday",
        "/history?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        "/history/naive?page=-1",
        "/history/naive?limit=500",
        "/history/summary?to=2026-13-01T00:00:00Z",
        "/history/summary/naive?from=1",
    ];
    for path in bad {
        let answer = get(&app, &alice, &format!("/v1/accounts/{account}{path}")).await;
        assert_problem(answer.status, &answer.body, 422, "validation-failed");
    }
    let empty = get(&app, &alice, &format!("/v1/accounts/{account}/history/summary")).await;
    assert_eq!(empty.status, 200, "{}", empty.body);
}

/// With the app's own forwarder running, real movements (once the ledger writes entries)
/// reach ClickHouse and both routes agree.
#[tokio::test]
async fn the_apps_forwarder_keeps_the_read_store_in_step() {
    let app = spawn_app().await;
    let pool = PgPool::connect(&app.database_url).await.unwrap();
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    assert_eq!(app.charge(&alice, 50_000).await.0, 201);
    let (status, body) = app
        .post(
            "/v1/transfers",
            Some(&alice.token),
            json!({"to_account_id": bob.main_account_id, "amount": 12_000, "memo": "lunch"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut conn = pool.acquire().await.unwrap();
    insert_entry(&mut conn, alice.main_account_id, &Entry::simple(Utc::now(), 777)).await;
    drop(conn);
    wait_for_empty_outbox(&pool, std::time::Duration::from_secs(10)).await;
    for user in [&alice, &bob] {
        let (tuned, source) = tuned_all(&app, user, user.main_account_id, "", 50).await;
        assert_eq!(source.as_deref(), Some("postgres"));
        assert_eq!(tuned, naive_all(&app, user, user.main_account_id, "", 50).await);
        if user.name == "alice" {
            assert!(tuned.iter().any(|entry| entry["amount"] == json!(777)));
        } else {
            // The ledger writer's entry for the transfer, forwarded by the app.
            let received = tuned.iter().find(|entry| entry["kind"] == json!("transfer")).expect("bob's transfer entry");
            assert_eq!(received["direction"], json!("in"));
            assert_eq!(received["amount"], json!(12_000));
            assert_eq!(received["balance_after"], json!(12_000));
            assert_eq!(received["memo"], json!("lunch"));
            assert_eq!(received["counterparty"]["account_id"], json!(alice.main_account_id));
        }
    }
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("minipay_history_lag_ms 0"), "{metrics}");
    app.stop().await;
}

/// The tuned route's entries of an account, newest first, once at least `count` of them are
/// there and in ClickHouse: the app's forwarder moves them in the background, so poll (bounded,
/// short sleeps).
pub(crate) async fn wait_for_tuned(app: &TestApp, user: &TestUser, account_id: i64, count: usize) -> Vec<Value> {
    let path = format!("/v1/accounts/{account_id}/history?limit=200");
    for _ in 0..200 {
        let answer = get(app, user, &path).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.source.as_deref(), Some("postgres"));
        let entries = answer.body["entries"].as_array().unwrap().clone();
        // The pages show every committed entry at once; the lag is 0 once the forwarder has
        // also moved them all to ClickHouse (what the callers go on to compare).
        if entries.len() >= count && answer.lag_ms == Some(0) {
            assert_eq!(entries.len(), count, "more entries than expected: {entries:#?}");
            return entries;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the tuned history of account {account_id} did not reach {count} entries");
}

/// Both routes' entries of a user's main account, after checking that they agree.
async fn both_routes(app: &TestApp, user: &TestUser, count: usize) -> Vec<Value> {
    let tuned = wait_for_tuned(app, user, user.main_account_id, count).await;
    let naive = naive_all(app, user, user.main_account_id, "", 200).await;
    assert_eq!(tuned, naive, "tuned and naive differ for {}", user.name);
    tuned
}

fn entry_of<'a>(entries: &'a [Value], transfer_id: i64, kind: &str) -> &'a Value {
    entries
        .iter()
        .find(|entry| entry["transfer_id"] == json!(transfer_id) && entry["kind"] == json!(kind))
        .unwrap_or_else(|| panic!("no {kind} entry of transfer {transfer_id} in {entries:#?}"))
}

async fn rename(app: &TestApp, user: &TestUser, name: &str) {
    let (status, body) =
        app.request(reqwest::Method::PATCH, "/v1/me", Some(&user.token), Some(json!({"name": name}))).await;
    assert_eq!(status, 200, "rename {} to {name}: {body}", user.name);
    assert_eq!(body["name"], json!(name));
}

async fn transfer(app: &TestApp, from: &TestUser, to: &TestUser, body: Value) -> i64 {
    let mut body = body;
    body["to_account_id"] = json!(to.main_account_id);
    let (status, created) = app.post("/v1/transfers", Some(&from.token), body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], json!("completed"));
    created["id"].as_i64().unwrap()
}

/// Scenario 22: the receiver sees the sender's display name, the sender sees the receiver's
/// real name, and renaming later rewrites no past entry, on either route. Real movements
/// through the ledger, forwarded by the app's own forwarder.
#[tokio::test]
async fn scenario_22_display_names_are_snapshots_that_renames_do_not_rewrite() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;

    // Alice has nothing: 12,345 needs an auto top-up of 20,000 first.
    let kim = transfer(&app, &alice, &bob, json!({"amount": 12_345, "display_name": "Kim", "memo": "lunch"})).await;
    let back = transfer(&app, &bob, &alice, json!({"amount": 2_000})).await;

    let alice_before = both_routes(&app, &alice, 3).await;
    let bob_before = both_routes(&app, &bob, 2).await;

    let received = entry_of(&bob_before, kim, "transfer");
    assert_eq!(received["direction"], json!("in"));
    assert_eq!(received["amount"], json!(12_345));
    assert_eq!(received["balance_after"], json!(12_345));
    // The display name, and beside it the sender's real name.
    assert_eq!(
        received["counterparty"],
        json!({"account_id": alice.main_account_id, "name": "Kim", "user_name": "alice"})
    );
    assert_eq!(received["memo"], json!("lunch"));
    let sent = entry_of(&alice_before, kim, "transfer");
    assert_eq!(sent["direction"], json!("out"));
    assert_eq!(sent["amount"], json!(12_345));
    assert_eq!(sent["balance_after"], json!(20_000 - 12_345));
    assert_eq!(sent["counterparty"], json!({"account_id": bob.main_account_id, "name": "bob", "user_name": "bob"}));
    assert_eq!(sent["memo"], json!("lunch"));
    // The auto top-up: a charge from outside, before the transfer, without its memo.
    let top_up = alice_before.iter().find(|entry| entry["kind"] == json!("charge")).expect("the auto top-up entry");
    assert_eq!(top_up["direction"], json!("in"));
    assert_eq!(top_up["amount"], json!(20_000));
    assert_eq!(top_up["balance_after"], json!(20_000));
    assert_eq!(top_up["counterparty"], json!({"account_id": null, "name": "external", "user_name": null}));
    assert_eq!(top_up["memo"], json!(null));
    assert!(top_up["id"].as_i64() < sent["id"].as_i64(), "the top-up comes first: {alice_before:#?}");
    // Without a display name the receiver sees the sender's real name.
    let returned = entry_of(&alice_before, back, "transfer");
    assert_eq!(returned["direction"], json!("in"));
    assert_eq!(returned["balance_after"], json!(20_000 - 12_345 + 2_000));
    assert_eq!(returned["counterparty"], json!({"account_id": bob.main_account_id, "name": "bob", "user_name": "bob"}));
    let paid_back = entry_of(&bob_before, back, "transfer");
    assert_eq!(paid_back["direction"], json!("out"));
    assert_eq!(paid_back["balance_after"], json!(12_345 - 2_000));
    assert_eq!(
        paid_back["counterparty"],
        json!({"account_id": alice.main_account_id, "name": "alice", "user_name": "alice"})
    );
    assert_eq!(app.balance(&alice).await, 20_000 - 12_345 + 2_000);
    assert_eq!(app.balance(&bob).await, 12_345 - 2_000);

    rename(&app, &bob, "bobby").await;
    rename(&app, &alice, "alice2").await;
    // A movement after the renames shows the new names; it is the only new entry each.
    let after = transfer(&app, &alice, &bob, json!({"amount": 1_000})).await;
    let alice_after = both_routes(&app, &alice, 4).await;
    let bob_after = both_routes(&app, &bob, 3).await;
    assert_eq!(entry_of(&alice_after, after, "transfer")["counterparty"]["name"], json!("bobby"));
    assert_eq!(entry_of(&alice_after, after, "transfer")["counterparty"]["user_name"], json!("bobby"));
    assert_eq!(entry_of(&bob_after, after, "transfer")["counterparty"]["name"], json!("alice2"));
    assert_eq!(entry_of(&bob_after, after, "transfer")["counterparty"]["user_name"], json!("alice2"));
    // Newest first: the past entries are exactly what they were.
    assert_eq!(alice_after[1..], alice_before[..]);
    assert_eq!(bob_after[1..], bob_before[..]);
    // One counterparty, alice's account, whatever it was shown as: under its latest name.
    for window in ["/summary", "/summary/naive"] {
        let summary = get(&app, &bob, &format!("/v1/accounts/{}/history{window}", bob.main_account_id)).await;
        assert_eq!(summary.status, 200, "{}", summary.body);
        assert_eq!(
            summary.body["top_counterparties"],
            json!([{"account_id": alice.main_account_id, "name": "alice2", "user_name": "alice2",
                    "in": 12_345 + 1_000, "out": 2_000, "count": 3}]),
            "{window}"
        );
    }
    app.assert_audit_ok().await;
    app.stop().await;
}

fn stores_check(report: &Value) -> &Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|check| check["name"] == json!("clickhouse-entries-match-postgres"))
        .unwrap_or_else(|| panic!("no PostgreSQL vs ClickHouse check: {report:#}"))
}

async fn audit(app: &TestApp) -> Value {
    let (status, body) = app.get("/admin/audit", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The entries a forwarder has moved, from its own metrics.
fn forwarded_by(metrics: &Metrics) -> i64 {
    metric_in(&metrics.render(), "minipay_history_entries_forwarded_total").unwrap_or(0)
}

/// Two forwarders on one database (two serving processes, say): one leads and moves every
/// entry, the other stands by; once the leader stops, the other takes over.
#[tokio::test]
async fn one_forwarder_of_a_database_leads_and_another_takes_over_when_it_stops() {
    let (app, pool) = app_without_forwarder().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    assert_eq!(app.charge(&alice, 100_000).await.0, 201);
    let clickhouse = ClickHouse::new(&std::env::var("CLICKHOUSE_URL").unwrap(), &app.database).unwrap();
    let start = |metrics: Arc<Metrics>| {
        let forwarder = Forwarder::new(pool.clone(), clickhouse.clone(), Clock::new(ClockMode::System), metrics)
            .with_linger(std::time::Duration::from_millis(50));
        let shutdown = Shutdown::new();
        (tokio::spawn(forwarder.run(shutdown.clone())), shutdown)
    };
    let (first_metrics, second_metrics) = (Metrics::new(), Metrics::new());
    let (first, first_shutdown) = start(first_metrics.clone());
    wait_for_empty_outbox(&pool, std::time::Duration::from_secs(20)).await;
    let (second, second_shutdown) = start(second_metrics.clone());
    for amount in [1_000, 2_000, 3_000] {
        transfer(&app, &alice, &bob, json!({"amount": amount})).await;
        wait_for_empty_outbox(&pool, std::time::Duration::from_secs(20)).await;
    }
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM statement_entries").fetch_one(&pool).await.unwrap();
    assert_eq!(entries, 1 + 3 * 2);
    assert_eq!((forwarded_by(&first_metrics), forwarded_by(&second_metrics)), (entries, 0), "the first one leads");

    first_shutdown.trigger();
    first.await.unwrap();
    transfer(&app, &bob, &alice, json!({"amount": 500})).await;
    wait_for_empty_outbox(&pool, std::time::Duration::from_secs(20)).await;
    assert_eq!((forwarded_by(&first_metrics), forwarded_by(&second_metrics)), (entries, 2), "the second took over");
    second_shutdown.trigger();
    second.await.unwrap();
    assert_eq!(tuned_equals_naive(&app, &alice).await.len() + tuned_equals_naive(&app, &bob).await.len(), 9);
    app.assert_audit_ok().await;
    app.stop().await;
}

/// The audit compares PostgreSQL's statement entries with ClickHouse's once the app's
/// forwarder has caught up.
#[tokio::test]
async fn the_audit_finds_the_forwarded_entries_in_clickhouse() {
    let app = spawn_app().await;
    let pool = PgPool::connect(&app.database_url).await.unwrap();
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    assert_eq!(app.charge(&alice, 50_000).await.0, 201);
    for amount in [1_000, 2_000, 3_000] {
        transfer(&app, &alice, &bob, json!({"amount": amount})).await;
    }
    // 1 charge + 3 × 2 transfer sides.
    wait_for_tuned(&app, &alice, alice.main_account_id, 4).await;
    wait_for_tuned(&app, &bob, bob.main_account_id, 3).await;
    let waiting: i64 =
        sqlx::query_scalar("SELECT coalesce(sum(cardinality(entry_ids)), 0)::int8 FROM statement_outbox")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(waiting, 0);
    let report = app.assert_audit_ok().await;
    let check = stores_check(&report);
    assert_eq!(check["ok"], json!(true), "{report:#}");
    let detail = check["detail"].as_str().unwrap();
    assert!(detail.contains("PostgreSQL 7 (0 waiting in the outbox), ClickHouse 7 distinct"), "{detail}");
    app.stop().await;
}

/// ClickHouse may lag behind by what is still in the outbox, and hold replays; it may not
/// miss a forwarded entry, hold one PostgreSQL does not have, or be unreachable.
#[tokio::test]
async fn the_audit_fails_when_clickhouse_and_postgres_disagree() {
    let (app, pool) = app_without_forwarder().await;
    let alice = app.signup("alice").await;
    let forwarder = forwarder(&app, &pool);
    // Everything at one instant, so that the counts below are those of one month.
    let now = Utc::now();
    let mut conn = pool.acquire().await.unwrap();
    for i in 0..3 {
        insert_entry(&mut conn, alice.main_account_id, &Entry::simple(now, 100 + i)).await;
    }
    // Not forwarded yet: fine.
    let report = audit(&app).await;
    assert_eq!(stores_check(&report)["ok"], json!(true), "{report:#}");
    assert!(stores_check(&report)["detail"]
        .as_str()
        .unwrap()
        .contains("PostgreSQL 3 (3 waiting in the outbox), ClickHouse 0"));
    assert_eq!(drain(&forwarder).await, 3);
    // Forwarded, and replayed (a crash before the outbox delete): still fine.
    sqlx::query("INSERT INTO statement_outbox (entry_ids, at) SELECT array_agg(id ORDER BY id), at FROM statement_entries GROUP BY at")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(drain(&forwarder).await, 3);
    let report = app.assert_audit_ok().await;
    assert!(stores_check(&report)["detail"]
        .as_str()
        .unwrap()
        .contains("PostgreSQL 3 (0 waiting in the outbox), ClickHouse 3 distinct"));

    // An entry that left the outbox without reaching ClickHouse.
    let lost = insert_entry(&mut conn, alice.main_account_id, &Entry::simple(now, 400)).await;
    sqlx::query("DELETE FROM statement_outbox WHERE $1 = ANY(entry_ids)").bind(lost).execute(&pool).await.unwrap();
    let report = audit(&app).await;
    assert_eq!(report["ok"], json!(false), "{report:#}");
    let check = stores_check(&report);
    assert_eq!(check["ok"], json!(false));
    assert!(check["detail"].as_str().unwrap().contains("ClickHouse 3, PostgreSQL 4 of which 4 forwarded"), "{check}");
    sqlx::query("INSERT INTO statement_outbox (entry_ids, at) VALUES (ARRAY[$1], $2)")
        .bind(lost)
        .bind(now)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(drain(&forwarder).await, 1);
    app.assert_audit_ok().await;

    // An entry in ClickHouse that PostgreSQL does not have.
    insert_stray_clickhouse_entry(&app, alice.main_account_id, now).await;
    let report = audit(&app).await;
    assert_eq!(report["ok"], json!(false), "{report:#}");
    assert!(
        stores_check(&report)["detail"].as_str().unwrap().contains("ClickHouse 5, PostgreSQL 4 of which 4 forwarded"),
        "{report:#}"
    );
    drop(conn);

    // ClickHouse unreachable: the audit cannot pass.
    let down = spawn_app_with(|config| config.clickhouse_url = "http://127.0.0.1:9".into()).await;
    let report = audit(&down).await;
    assert_eq!(report["ok"], json!(false), "{report:#}");
    let check = stores_check(&report);
    assert_eq!(check["ok"], json!(false));
    assert!(check["detail"].as_str().unwrap().starts_with("ClickHouse unreachable"), "{check}");
    // The ledger checks still ran and passed.
    assert!(report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|other| other["name"] != check["name"])
        .all(|other| other["ok"] == json!(true)));
}

/// The entries of a user's main account on both routes, after checking that they agree, that
/// the keyset index answered the pages and ClickHouse the summary, and that no entry shows twice.
async fn tuned_equals_naive(app: &TestApp, user: &TestUser) -> Vec<Value> {
    let (tuned, source) = tuned_all(app, user, user.main_account_id, "", 7).await;
    assert_eq!(source.as_deref(), Some("postgres"), "tuned history of {}", user.name);
    assert_no_duplicates(&tuned);
    assert_eq!(tuned, naive_all(app, user, user.main_account_id, "", 7).await, "tuned and naive of {}", user.name);
    let path = format!("/v1/accounts/{}/history/summary", user.main_account_id);
    let tuned_summary = get(app, user, &path).await;
    assert_eq!(tuned_summary.source.as_deref(), Some("postgres"));
    assert_eq!(tuned_summary.body, get(app, user, &format!("{path}/naive")).await.body);
    tuned
}

fn metric(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in {metrics}"))
}

/// ClickHouse unreachable for a while, while money moves: a proxy in front of it is cut (the
/// shared server stays up for the other tests). Transfers keep succeeding, the tuned routes
/// answer from PostgreSQL and say so, the lag grows and the audit refuses to pass; once
/// ClickHouse is back, the app's own forwarder catches up, both stores agree and both routes
/// show every entry exactly once.
#[tokio::test]
async fn clickhouse_unreachable_for_a_while_loses_and_doubles_nothing() {
    let (proxy, clickhouse_url) = TcpProxy::in_front_of(&std::env::var("CLICKHOUSE_URL").unwrap()).await;
    let app = spawn_app_with(|config| config.clickhouse_url = clickhouse_url.into()).await;
    let pool = PgPool::connect(&app.database_url).await.unwrap();
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    assert_eq!(app.charge(&alice, 500_000).await.0, 201);
    transfer(&app, &alice, &bob, json!({"amount": 100_000})).await;
    wait_for_empty_outbox(&pool, std::time::Duration::from_secs(10)).await;
    app.assert_audit_ok().await;
    assert_eq!(tuned_equals_naive(&app, &alice).await.len(), 2);

    proxy.cut();
    let cut_at = app.clock_now().await;
    // Transfers both ways, concurrently, and some with an auto top-up: none notices.
    let sends = (0..12).map(|i| {
        let (from, to) = if i % 2 == 0 { (&alice, &bob) } else { (&bob, &alice) };
        let amount = if i == 11 { 150_000 } else { 1_000 + i };
        app.post("/v1/transfers", Some(&from.token), json!({"to_account_id": to.main_account_id, "amount": amount}))
    });
    for (status, body) in futures::future::join_all(sends).await {
        assert_eq!(status, 201, "{body}");
    }
    let waiting = outbox_entries(&pool).await;
    assert!(waiting >= 24, "{waiting} outbox rows");

    // The tuned routes answer from PostgreSQL, with every entry, and say so.
    let (tuned, source) = tuned_all(&app, &alice, alice.main_account_id, "", 5).await;
    assert_eq!(source.as_deref(), Some("postgres"));
    assert_no_duplicates(&tuned);
    assert_eq!(tuned, naive_all(&app, &alice, alice.main_account_id, "", 5).await);
    let summary = get(&app, &bob, &format!("/v1/accounts/{}/history/summary", bob.main_account_id)).await;
    // A summary of few entries is PostgreSQL's anyway (busy accounts: tests/api/aggregates.rs).
    assert_eq!((summary.status.as_u16(), summary.source.as_deref()), (200, Some("postgres")));

    // The lag grows with time while nothing can be forwarded (the manual clock stands still
    // between moves, so it is moved).
    let path = format!("/v1/accounts/{}/history", alice.main_account_id);
    let mut lags = vec![get(&app, &alice, &path).await.lag_ms.unwrap()];
    for minutes in [1, 2] {
        app.set_clock(&(cut_at + Duration::minutes(minutes)).to_rfc3339()).await;
        transfer(&app, &bob, &alice, json!({"amount": 500})).await;
        lags.push(get(&app, &alice, &path).await.lag_ms.unwrap());
    }
    // Entries wait from the cut on: above 0 at once (the clock stood still), then their age.
    assert!(lags[0] > 0 && lags[1] >= 60_000 && lags[2] >= lags[1] + 60_000, "lags {lags:?}");
    assert!(outbox_entries(&pool).await >= waiting + 4);
    // The forwarder keeps trying and failing (it backs off, so wait for a failure or two).
    let started = std::time::Instant::now();
    loop {
        let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        if metric(&metrics, "minipay_history_forward_failures_total") > 0 {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "no failed forwarder step: {metrics}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The audit cannot compare the stores, so it fails; the ledger itself is fine.
    let report = audit(&app).await;
    assert_eq!(report["ok"], json!(false), "{report:#}");
    assert!(stores_check(&report)["detail"].as_str().unwrap().starts_with("ClickHouse unreachable"), "{report:#}");

    proxy.restore();
    // The forwarder's back-off is at most 5 s; then one step moves the whole backlog.
    wait_for_empty_outbox(&pool, std::time::Duration::from_secs(30)).await;
    let report = app.assert_audit_ok().await;
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM statement_entries").fetch_one(&pool).await.unwrap();
    let detail = stores_check(&report)["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.contains(&format!("PostgreSQL {entries} (0 waiting in the outbox), ClickHouse {entries} distinct")),
        "{detail}"
    );
    let alice_entries = tuned_equals_naive(&app, &alice).await;
    let bob_entries = tuned_equals_naive(&app, &bob).await;
    assert_eq!((alice_entries.len() + bob_entries.len()) as i64, entries);
    assert_eq!(get(&app, &alice, &path).await.lag_ms, Some(0));
    // The balances the entries end with are the accounts' balances.
    for (user, entries) in [(&alice, &alice_entries), (&bob, &bob_entries)] {
        assert_eq!(entries[0]["balance_after"], json!(app.balance(user).await), "{}", user.name);
    }

    // The check is not vacuous: an entry that only ClickHouse has fails it.
    insert_stray_clickhouse_entry(&app, alice.main_account_id, app.clock_now().await).await;
    let report = audit(&app).await;
    assert_eq!(report["ok"], json!(false), "{report:#}");
    assert_eq!(stores_check(&report)["ok"], json!(false), "{report:#}");
    app.stop().await;
}

/// ClickHouse's rows and distinct entries: replays count in the first, not in the second.
async fn stored_copies(clickhouse: &clickhouse::Client) -> (i64, i64) {
    let rows: u64 = clickhouse.query("SELECT count() FROM statement_entries").fetch_one().await.unwrap();
    let distinct: u64 =
        clickhouse.query("SELECT uniqExact(entry_id) FROM statement_entries").fetch_one().await.unwrap();
    (rows as i64, distinct as i64)
}

/// A `minipay forward` process killed between its ClickHouse insert and the outbox delete
/// (the MINIPAY_FORWARDER_ABORT_AFTER_INSERT hook aborts it there): its batch is in ClickHouse
/// and still in the outbox. The next forwarder sees the batch in ClickHouse and only takes it
/// out of the outbox, and every read shows each entry once.
#[tokio::test]
async fn a_forwarder_killed_after_its_insert_replays_without_doubling() {
    use std::os::unix::process::ExitStatusExt;

    let (app, pool) = app_without_forwarder().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    assert_eq!(app.charge(&alice, 100_000).await.0, 201);
    for amount in [1_000, 2_000, 3_000] {
        transfer(&app, &alice, &bob, json!({"amount": amount, "memo": "rent"})).await;
    }
    transfer(&app, &bob, &alice, json!({"amount": 500})).await;
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM statement_entries").fetch_one(&pool).await.unwrap();
    assert_eq!(entries, 1 + 4 * 2);
    assert_eq!(outbox_entries(&pool).await, entries);
    let clickhouse = clickhouse_client(&app);
    // No background merge may collapse the copies before they are counted below.
    clickhouse.query("SYSTEM STOP MERGES statement_entries").execute().await.unwrap();

    let mut doomed = minipay_command(&app, "forward")
        .env("MINIPAY_FORWARDER_ABORT_AFTER_INSERT", "1")
        .spawn()
        .expect("start minipay forward");
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), doomed.wait())
        .await
        .expect("the forwarder aborts within a minute")
        .unwrap();
    assert_eq!(status.signal(), Some(6), "killed by SIGABRT: {status:?}");
    // In ClickHouse, and still in the outbox: the batch will be sent again.
    assert_eq!(stored_copies(&clickhouse).await, (entries, entries));
    assert_eq!(outbox_entries(&pool).await, entries);
    // Meanwhile reads show each entry once, and the audit accepts a copy that is ahead.
    let report = app.assert_audit_ok().await;
    assert!(stores_check(&report)["detail"]
        .as_str()
        .unwrap()
        .contains(&format!("PostgreSQL {entries} ({entries} waiting in the outbox), ClickHouse {entries} distinct")));

    // A forwarder without the hook takes the batch over.
    let forward = minipay_command(&app, "forward").spawn().expect("start minipay forward");
    wait_for_empty_outbox(&pool, std::time::Duration::from_secs(30)).await;
    drop(forward);
    // It finds the batch already in ClickHouse and inserts nothing again.
    assert_eq!(stored_copies(&clickhouse).await, (entries, entries), "every entry is stored once");

    let alice_entries = tuned_equals_naive(&app, &alice).await;
    let bob_entries = tuned_equals_naive(&app, &bob).await;
    assert_eq!((alice_entries.len() + bob_entries.len()) as i64, entries);
    let report = app.assert_audit_ok().await;
    assert!(stores_check(&report)["detail"]
        .as_str()
        .unwrap()
        .contains(&format!("PostgreSQL {entries} (0 waiting in the outbox), ClickHouse {entries} distinct")));
    app.stop().await;
}

/// The tuned route writes its PostgreSQL pages straight from the rows: the same JSON as the
/// naive route's, to the character, for texts that need escaping, empty and missing memos,
/// names, and times of every precision (whole seconds, milliseconds, microseconds, ties).
#[tokio::test]
async fn tuned_pages_write_every_field_as_the_naive_route_does() {
    let (app, pool) = app_without_forwarder().await;
    let alice = app.signup("alice").await;
    let account = alice.main_account_id;
    let base = Utc::now() - Duration::days(2);
    let base = base - Duration::nanoseconds(base.timestamp_subsec_nanos().into());
    let odd = "say \"hi\"\\ \n\t\u{1} caf\u{e9} \u{1f35c} </script>";
    let entries = [
        Entry { memo: Some(odd), counterparty_name: odd, ..Entry::simple(base, 1) },
        Entry { memo: Some(""), ..Entry::simple(base + Duration::milliseconds(120), 2) },
        Entry { memo: None, ..Entry::simple(base + Duration::microseconds(123_456), 3) },
        Entry { memo: Some("tie"), ..Entry::simple(base + Duration::microseconds(123_456), 4) },
        Entry {
            direction: "out",
            kind: "transfer",
            counterparty_account_id: Some(alice.main_account_id + 1),
            counterparty_name: "jun",
            transfer_id: Some(77),
            memo: Some("dinner"),
            ..Entry::simple(base + Duration::seconds(1), 5)
        },
    ];
    let mut conn = pool.acquire().await.unwrap();
    for entry in &entries {
        insert_entry(&mut conn, account, entry).await;
    }
    sqlx::query("UPDATE statement_entries SET counterparty_user_name = 'jun' WHERE account_id = $1 AND amount = 5")
        .bind(account)
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let naive = naive_all(&app, &alice, account, "", 200).await;
    for limit in [1, 2, 3, 200] {
        let (tuned, source) = tuned_all(&app, &alice, account, "", limit).await;
        assert_eq!(source.as_deref(), Some("postgres"));
        assert_eq!(tuned, naive, "limit {limit}");
    }
    let first = get(&app, &alice, &format!("/v1/accounts/{account}/history?limit=2")).await;
    assert_eq!(
        first.body["entries"][0]["counterparty"],
        json!({"account_id": account + 1, "name": "jun", "user_name": "jun"})
    );
    assert!(first.body["next_cursor"].is_string());
    assert!(first.lag_ms.unwrap() > 0, "nothing was forwarded");
    let all = get(&app, &alice, &format!("/v1/accounts/{account}/history")).await;
    assert_eq!(all.body["next_cursor"], Value::Null);
    let memos: Vec<&Value> = all.body["entries"].as_array().unwrap().iter().map(|entry| &entry["memo"]).collect();
    assert_eq!(memos, [&json!("dinner"), &json!("tie"), &Value::Null, &Value::Null, &json!(odd)]);
    // An account with no entries: an empty page, not a page of nothing.
    let bob = app.signup("bob").await;
    let empty = get(&app, &bob, &format!("/v1/accounts/{}/history", bob.main_account_id)).await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.body, json!({"entries": [], "next_cursor": null}));
    app.stop().await;
}
