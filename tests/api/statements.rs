//! Statement pages read what was just written: read-your-writes on the tuned and naive page
//! routes whatever the forwarder does (running, stopped for minutes, ClickHouse unreachable),
//! a truthful `X-History-Lag-Ms`, and the page filters, on the PostgreSQL keyset path and on
//! the ClickHouse path (a rare filter on a busy account).

use chrono::{DateTime, Duration, Utc};
use minipay::clock::{Clock, ClockMode};
use minipay::history::clickhouse::ClickHouse;
use minipay::history::forwarder::Forwarder;
use minipay::telemetry::Metrics;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

struct Answer {
    status: u16,
    source: Option<String>,
    lag_ms: Option<i64>,
    body: Value,
}

async fn get(app: &TestApp, user: &TestUser, path: &str) -> Answer {
    let response = app.client.get(app.url(path)).bearer_auth(&user.token).send().await.expect("request sent");
    let header = |name: &str| response.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_owned);
    let source = header("x-history-source");
    let lag_ms = header("x-history-lag-ms").map(|text| text.parse().expect("lag is an integer"));
    let status = response.status().as_u16();
    let body = serde_json::from_str(&response.text().await.unwrap()).unwrap_or(Value::Null);
    Answer { status, source, lag_ms, body }
}

fn transfer_ids(page: &Value) -> Vec<i64> {
    page["entries"].as_array().unwrap().iter().filter_map(|entry| entry["transfer_id"].as_i64()).collect()
}

fn ids(entries: &[Value]) -> Vec<i64> {
    entries.iter().map(|entry| entry["id"].as_i64().unwrap()).collect()
}

async fn transfer(app: &TestApp, from: &TestUser, to: &TestUser, amount: i64) -> i64 {
    let body = json!({"to_account_id": to.main_account_id, "amount": amount});
    let (status, created) = app.post("/v1/transfers", Some(&from.token), body).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_i64().unwrap()
}

/// The first page of both page routes of both users holds the transfer (at the top: nothing
/// newer was written).
async fn assert_on_every_first_page(app: &TestApp, users: [&TestUser; 2], transfer_id: i64, context: &str) {
    for user in users {
        let account = user.main_account_id;
        for path in [format!("/v1/accounts/{account}/history"), format!("/v1/accounts/{account}/history/naive")] {
            let answer = get(app, user, &path).await;
            assert_eq!(answer.status, 200, "{path}: {}", answer.body);
            assert_eq!(transfer_ids(&answer.body).first(), Some(&transfer_id), "{context}: {path} of {}", user.name);
        }
    }
}

/// Every entry of the tuned route with `query`, following cursors; and the sources seen.
async fn tuned_all(app: &TestApp, user: &TestUser, query: &str, limit: i64) -> (Vec<Value>, Vec<String>) {
    let (mut entries, mut sources) = (Vec::new(), Vec::new());
    let mut cursor: Option<String> = None;
    for _ in 0..1_000 {
        let mut path = format!("/v1/accounts/{}/history?limit={limit}{query}", user.main_account_id);
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let answer = get(app, user, &path).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        entries.extend(answer.body["entries"].as_array().unwrap().iter().cloned());
        sources.push(answer.source.unwrap());
        match answer.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return (entries, sources),
        }
    }
    panic!("too many pages");
}

/// Every entry of the naive route with `query`, checking the total.
async fn naive_all(app: &TestApp, user: &TestUser, query: &str, limit: i64) -> Vec<Value> {
    let mut entries = Vec::new();
    for page in 0..1_000 {
        let path = format!("/v1/accounts/{}/history/naive?limit={limit}&page={page}{query}", user.main_account_id);
        let answer = get(app, user, &path).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        let found = answer.body["entries"].as_array().unwrap().clone();
        if found.is_empty() {
            assert_eq!(answer.body["total"], json!(entries.len()), "{path}");
            return entries;
        }
        entries.extend(found);
    }
    panic!("too many pages");
}

/// Both page routes with `query` agree, entry for entry; returns the entries.
async fn both_agree(app: &TestApp, user: &TestUser, query: &str, limit: i64) -> (Vec<Value>, Vec<String>) {
    let (tuned, sources) = tuned_all(app, user, query, limit).await;
    assert_eq!(ids(&tuned), ids(&naive_all(app, user, query, limit).await), "{query}");
    assert_eq!(tuned, naive_all(app, user, query, limit).await, "{query}");
    (tuned, sources)
}

fn forwarder(app: &TestApp, pool: &PgPool) -> Forwarder {
    let clickhouse = ClickHouse::new(&app.clickhouse_url, &app.database).unwrap();
    Forwarder::new(pool.clone(), clickhouse, Clock::new(ClockMode::System), Metrics::new())
}

async fn drain(forwarder: &Forwarder) {
    for _ in 0..1_000 {
        if forwarder.run_once().await.expect("forwarder step") == 0 {
            return;
        }
    }
    panic!("the outbox did not drain");
}

/// A transfer answered 201, then at once: the tuned and naive pages of both accounts show it,
/// 30 times in a row, with the app's own forwarder running (and lagging as it does).
#[tokio::test]
async fn a_transfer_is_on_both_accounts_pages_at_once() {
    let app = spawn_app().await;
    let alice = app.funded("alice", 1_000_000).await;
    let bob = app.funded("bob", 1_000_000).await;
    for i in 0..30 {
        let (from, to) = if i % 2 == 0 { (&alice, &bob) } else { (&bob, &alice) };
        let id = transfer(&app, from, to, 1_000 + i).await;
        assert_on_every_first_page(&app, [&alice, &bob], id, &format!("transfer {i}")).await;
    }
    app.assert_audit_ok().await;
    app.stop().await;
}

/// The forwarder stopped for minutes while transfers go on: the lag is above 0 and grows with
/// the age of the oldest waiting entry, every page is complete meanwhile; once a forwarder
/// has caught up the lag is 0 and ClickHouse agrees with PostgreSQL.
#[tokio::test]
async fn with_the_forwarder_stopped_pages_stay_complete_and_the_lag_tells() {
    let app = spawn_app_with(|config| config.forwarder = false).await;
    let pool = PgPool::connect(&app.database_url).await.unwrap();
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let path = format!("/v1/accounts/{}/history", alice.main_account_id);
    assert_eq!(get(&app, &alice, &path).await.lag_ms, Some(0), "nothing waits yet");
    assert_eq!(app.charge(&alice, 500_000).await.0, 201);
    // The manual clock stands still: the entry is as old as now, and still it waits.
    assert!(get(&app, &alice, &path).await.lag_ms.unwrap() > 0, "an entry waits");
    let started = app.clock_now().await;
    let mut sent = Vec::new();
    for minute in 1..=3 {
        app.set_clock(&(started + Duration::minutes(minute)).to_rfc3339()).await;
        let id = transfer(&app, &alice, &bob, 1_000 * minute).await;
        sent.push(id);
        assert_on_every_first_page(&app, [&alice, &bob], id, &format!("minute {minute}")).await;
        let lag = get(&app, &bob, &format!("/v1/accounts/{}/history", bob.main_account_id)).await.lag_ms.unwrap();
        assert!(lag >= minute * 60_000, "lag {lag} ms after {minute} minutes");
    }
    let (entries, sources) = both_agree(&app, &alice, "", 2).await;
    assert_eq!(entries.len(), 4);
    assert!(sources.iter().all(|source| source == "postgres"), "{sources:?}");
    assert_eq!(transfer_ids(&json!({ "entries": entries })), sent.iter().rev().copied().collect::<Vec<_>>());

    drain(&forwarder(&app, &pool)).await;
    assert_eq!(get(&app, &alice, &path).await.lag_ms, Some(0));
    assert_eq!(both_agree(&app, &alice, "", 2).await.0, entries);
    app.assert_audit_ok().await;
    app.stop().await;
}

/// ClickHouse unreachable (a proxy in front of it cut) while money moves: every page, filtered
/// or not, is complete and says it came from PostgreSQL; once ClickHouse is back, the app's
/// forwarder catches up and the audit passes.
#[tokio::test]
async fn with_clickhouse_unreachable_pages_are_complete() {
    let (proxy, clickhouse_url) = TcpProxy::in_front_of(&std::env::var("CLICKHOUSE_URL").unwrap()).await;
    let app = spawn_app_with(|config| config.clickhouse_url = clickhouse_url.into()).await;
    let pool = PgPool::connect(&app.database_url).await.unwrap();
    let alice = app.funded("alice", 1_000_000).await;
    let bob = app.funded("bob", 1_000_000).await;
    proxy.cut();
    for i in 0..6 {
        let (from, to) = if i % 3 == 0 { (&bob, &alice) } else { (&alice, &bob) };
        let id = transfer(&app, from, to, 500 + i).await;
        assert_on_every_first_page(&app, [&alice, &bob], id, &format!("transfer {i}")).await;
    }
    for query in ["", "&direction=out", "&kind=transfer", &format!("&counterparty_account_id={}", bob.main_account_id)]
    {
        let (entries, sources) = both_agree(&app, &alice, query, 3).await;
        assert!(!entries.is_empty(), "{query}");
        assert!(sources.iter().all(|source| source == "postgres"), "{query}: {sources:?}");
    }
    assert_eq!(both_agree(&app, &alice, "", 3).await.0.len(), 7);
    proxy.restore();
    wait_for_empty_outbox(&pool, std::time::Duration::from_secs(30)).await;
    app.assert_audit_ok().await;
    app.stop().await;
}

/// Filters on both page routes: each filter and their combination give the same entries on
/// both, only entries that pass, and bad values are refused.
#[tokio::test]
async fn page_filters_agree_and_bad_ones_are_refused() {
    let app = spawn_app().await;
    let alice = app.funded("alice", 1_000_000).await;
    let bob = app.funded("bob", 1_000_000).await;
    let carol = app.funded("carol", 1_000_000).await;
    for i in 0..4 {
        transfer(&app, &alice, &bob, 100 + i).await;
        transfer(&app, &carol, &alice, 200 + i).await;
    }
    transfer(&app, &bob, &alice, 300).await;
    let (all, _) = both_agree(&app, &alice, "", 4).await;
    assert_eq!(all.len(), 10);
    type Passes = fn(&Value, i64) -> bool;
    let cases: [(String, Passes); 5] = [
        ("&direction=in".into(), |entry, _| entry["direction"] == json!("in")),
        ("&direction=out".into(), |entry, _| entry["direction"] == json!("out")),
        ("&kind=charge".into(), |entry, _| entry["kind"] == json!("charge")),
        (format!("&counterparty_account_id={}", bob.main_account_id), |entry, bob| {
            entry["counterparty"]["account_id"] == json!(bob)
        }),
        (format!("&direction=in&kind=transfer&counterparty_account_id={}", bob.main_account_id), |entry, bob| {
            entry["direction"] == json!("in") && entry["counterparty"]["account_id"] == json!(bob)
        }),
    ];
    for (query, passes) in &cases {
        let (entries, sources) = both_agree(&app, &alice, query, 2).await;
        let expected: Vec<Value> = all.iter().filter(|entry| passes(entry, bob.main_account_id)).cloned().collect();
        assert!(!expected.is_empty(), "{query}");
        assert_eq!(entries, expected, "{query}");
        assert!(sources.iter().all(|source| source == "postgres"), "{query}: {sources:?}");
    }
    let account = alice.main_account_id;
    for suffix in ["", "/naive"] {
        for bad in [
            "direction=sideways",
            "direction=",
            "kind=gift",
            "counterparty_account_id=bob",
            "counterparty_account_id=0",
        ] {
            let answer = get(&app, &alice, &format!("/v1/accounts/{account}/history{suffix}?{bad}")).await;
            assert_problem(
                reqwest::StatusCode::from_u16(answer.status).unwrap(),
                &answer.body,
                422,
                "validation-failed",
            );
        }
    }
    app.assert_audit_ok().await;
    app.stop().await;
}

/// `count` charge entries of `account_id` in PostgreSQL, before `before` (an outbox row for
/// them, as the ledger writer would write).
async fn many_entries(pool: &PgPool, account_id: i64, before: DateTime<Utc>, count: i64) {
    sqlx::query(
        "WITH made AS (
             INSERT INTO statement_entries (id, account_id, at, direction, amount, balance_after, kind,
                    counterparty_account_id, counterparty_name, transfer_id, memo)
             SELECT nextval('statement_entries_id_seq'), $1, $2, 'in', 1, n, 'charge', NULL, 'external', NULL, NULL
             FROM generate_series(1, $3) AS n
             RETURNING id)
         INSERT INTO statement_outbox (entry_ids, at) SELECT array_agg(id), $2 FROM made",
    )
    .bind(account_id)
    .bind(before - Duration::seconds(1))
    .bind(count)
    .execute(pool)
    .await
    .unwrap();
}

/// A rare filter on a busy account: PostgreSQL's bounded read does not fill the page, so
/// ClickHouse answers, with the entries the forwarder has not moved yet added from
/// PostgreSQL; the pages agree with the naive route's, entry for entry.
#[tokio::test]
async fn a_rare_filter_on_a_busy_account_reads_clickhouse_and_the_outbox() {
    let app = spawn_app_with(|config| config.forwarder = false).await;
    let pool = PgPool::connect(&app.database_url).await.unwrap();
    let alice = app.funded("alice", 1_000_000).await;
    let bob = app.funded("bob", 1_000_000).await;
    // Transfers are rare among the account's charges (a counterparty has its own index in
    // PostgreSQL, a kind has not).
    let rare = "&kind=transfer";
    let early = transfer(&app, &bob, &alice, 700).await;
    many_entries(&pool, alice.main_account_id, app.clock_now().await + Duration::seconds(10), 2_500).await;
    let now = app.clock_now().await;
    app.set_clock(&(now + Duration::minutes(1)).to_rfc3339()).await;
    let forwarder = forwarder(&app, &pool);
    drain(&forwarder).await;
    // Forwarded: ClickHouse alone has the answer.
    let (entries, sources) = both_agree(&app, &alice, rare, 1).await;
    assert_eq!(transfer_ids(&json!({ "entries": entries })), vec![early]);
    assert!(sources.contains(&"clickhouse".to_owned()), "{sources:?}");
    // Not forwarded yet: the outbox adds them.
    let late = [transfer(&app, &alice, &bob, 800).await, transfer(&app, &bob, &alice, 900).await];
    let (entries, sources) = both_agree(&app, &alice, rare, 1).await;
    assert_eq!(transfer_ids(&json!({ "entries": entries })), vec![late[1], late[0], early]);
    // The newest two are among the entries PostgreSQL reads first; the rest is ClickHouse's.
    assert!(sources.contains(&"clickhouse".to_owned()), "{sources:?}");
    assert!(get(&app, &alice, &format!("/v1/accounts/{}/history", alice.main_account_id)).await.lag_ms.unwrap() > 0);
    drain(&forwarder).await;
    assert_eq!(both_agree(&app, &alice, rare, 2).await.0, entries);
}
