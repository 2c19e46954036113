//! The tuned history route against hostile cursors and a slow ClickHouse: no cursor answers
//! 500 whichever store answers, every ClickHouse query has a server-side time limit, and the
//! queries of a read that gave up on ClickHouse do not keep running there.

use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use serde_json::Value;

use crate::helpers::*;

/// Cursors that parse as numbers but name no instant an entry could have.
const OUT_OF_RANGE_CURSORS: [&str; 4] =
    ["h9223372036854775807.1", "h9223372036854775807.1.5", "h253402300800000000.1", "h18446744073709551615.1"];

async fn assert_cursors_refused(app: &TestApp) {
    let alice = app.signup("alice").await;
    for cursor in OUT_OF_RANGE_CURSORS {
        let path = format!("/v1/accounts/{}/history?cursor={cursor}", alice.main_account_id);
        let response = app.raw_request(reqwest::Method::GET, &path, Some(&alice.token), None, None).await;
        assert_problem_response(&response, 422, "validation-failed");
    }
    // The newest representable cursor still reads (an empty page).
    let path = format!("/v1/accounts/{}/history?cursor=h253402300799999999.1", alice.main_account_id);
    let (status, body) = app.get(&path, Some(&alice.token)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_cursor_out_of_range_is_refused_with_clickhouse_up() {
    let app = spawn_app().await;
    assert_cursors_refused(&app).await;
}

#[tokio::test]
async fn a_cursor_out_of_range_is_refused_with_clickhouse_unreachable() {
    let app = spawn_app_with(|config| config.clickhouse_url = "http://127.0.0.1:9".into()).await;
    assert_cursors_refused(&app).await;
}

/// Makes tuned reads slow on purpose in the app's ClickHouse database: `statement_entries`
/// becomes a table whose `kind` sleeps half a second for every block read, holding 500,000
/// entries of `account_id` just before `before` (seconds of sleeping for a page).
async fn slow_statement_entries(app: &TestApp, account_id: i64, before: DateTime<Utc>) {
    let clickhouse = clickhouse::Client::default()
        .with_url(std::env::var("CLICKHOUSE_URL").unwrap())
        .with_database(&app.database)
        .with_validation(false);
    let first_us = before.timestamp_micros() - 1_000_000;
    for sql in [
        // The daily totals' views would need the real `kind` of every inserted row.
        "DROP TABLE daily_totals_view".to_owned(),
        "DROP TABLE daily_counterparty_totals_view".to_owned(),
        "DROP TABLE statement_entries".to_owned(),
        "CREATE TABLE statement_entries (
             entry_id UInt64, account_id Int64, at DateTime('UTC'), at_us Int64,
             direction Enum8('in' = 1, 'out' = 2), amount Int64, balance_after Int64,
             kind String ALIAS if(sleep(0.5) = 0, 'charge', 'charge'),
             counterparty_account_id Nullable(Int64), counterparty_name String,
             transfer_id Nullable(Int64), memo String, counterparty_user_name Nullable(String))
         ENGINE = MergeTree PARTITION BY toYYYYMM(at) ORDER BY (account_id, at_us, entry_id)"
            .to_owned(),
        format!(
            "INSERT INTO statement_entries (entry_id, account_id, at, at_us, direction, amount, balance_after,
                 counterparty_account_id, counterparty_name, transfer_id, memo)
             SELECT number + 1, {account_id}, toDateTime({}), {first_us} + number, 'in', 1, 1, NULL, 'slow', NULL, ''
             FROM numbers(500000)",
            first_us / 1_000_000
        ),
    ] {
        clickhouse.query(&sql).execute().await.unwrap_or_else(|error| panic!("{sql}: {error}"));
    }
}

/// `count` entries of `account_id` just before `before` in PostgreSQL (none in the outbox): a
/// busy account, whose filtered pages PostgreSQL leaves to ClickHouse when the filter is rare.
async fn busy_in_postgres(app: &TestApp, account_id: i64, before: DateTime<Utc>, count: i64) {
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    sqlx::query(
        "INSERT INTO statement_entries (id, account_id, at, direction, amount, balance_after, kind,
                counterparty_account_id, counterparty_name, transfer_id, memo)
         SELECT nextval('statement_entries_id_seq'), $1, $2 - n * interval '1 microsecond', 'in', 1, n, 'charge',
                NULL, 'external', NULL, NULL
         FROM generate_series(1, $3) AS n",
    )
    .bind(account_id)
    .bind(before - chrono::Duration::seconds(1))
    .bind(count)
    .execute(&pool)
    .await
    .unwrap();
}

/// A filter the busy account's entries never pass: the page goes to ClickHouse.
const RARE: &str = "kind=interest";

/// A `to` bound no other test uses, so that its microseconds mark this test's queries.
fn marked_bound(now: DateTime<Utc>) -> DateTime<Utc> {
    let micros = rand::thread_rng().gen_range(1..1_000_000);
    now - chrono::Duration::minutes(10) + chrono::Duration::microseconds(micros)
}

/// How many queries mentioning `marker` ClickHouse is running (the marker is split in this
/// query's own text, so that it does not count itself).
async fn running_with(marker: &str) -> u64 {
    let (head, tail) = marker.split_at(marker.len() / 2);
    let clickhouse =
        clickhouse::Client::default().with_url(std::env::var("CLICKHOUSE_URL").unwrap()).with_validation(false);
    clickhouse
        .query(&format!(
            "SELECT count() FROM system.processes
             WHERE position(query, concat('{head}', '{tail}')) > 0 AND position(query, concat('statement', '_entries')) > 0"
        ))
        .fetch_one()
        .await
        .unwrap()
}

async fn history_from(app: &TestApp, base: &str, user: &TestUser, to: DateTime<Utc>) -> (u16, Option<String>, Value) {
    let to = to.to_rfc3339_opts(SecondsFormat::Micros, true);
    let url = format!("{base}/v1/accounts/{}/history?to={to}&{RARE}", user.main_account_id);
    let response = app.client.get(url).bearer_auth(&user.token).send().await.unwrap();
    let status = response.status().as_u16();
    let source = response.headers().get("x-history-source").and_then(|value| value.to_str().ok()).map(str::to_owned);
    (status, source, response.json().await.unwrap_or(Value::Null))
}

/// A tuned read that gives up on a slow ClickHouse answers from PostgreSQL, and its queries
/// are killed there rather than left running (repeated reads would pile them up).
#[tokio::test]
async fn queries_of_a_read_that_gave_up_on_clickhouse_stop_running_there() {
    let app = spawn_app_with(|config| config.forwarder = false).await;
    let alice = app.signup("alice").await;
    let to = marked_bound(app.clock_now().await);
    slow_statement_entries(&app, alice.main_account_id, to).await;
    busy_in_postgres(&app, alice.main_account_id, to, 3_000).await;
    let server = spawn_server_process_with(
        &app,
        &[("MINIPAY_HISTORY_CLICKHOUSE_TIMEOUT_MS", "300"), ("MINIPAY_FORWARDER", "off")],
    )
    .await;
    for _ in 0..2 {
        let started = Instant::now();
        let (status, source, body) = history_from(&app, &server.base, &alice, to).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(source.as_deref(), Some("postgres-fallback"), "{body}");
        // It waited for ClickHouse: the fallback came from the timeout, not a quick error.
        assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    }
    // The page's queries sleep for seconds; cancelled, they end within a block (half a second).
    let marker = to.timestamp_micros().to_string();
    let answered = Instant::now();
    loop {
        let running = running_with(&marker).await;
        if running == 0 {
            break;
        }
        assert!(
            answered.elapsed() < Duration::from_millis(1_500),
            "{running} queries of the abandoned reads still run on ClickHouse"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every query carries ClickHouse's own time limit, so even a read that would wait longer
/// is stopped by ClickHouse (`Timeout exceeded`), and answered from PostgreSQL.
#[tokio::test]
async fn clickhouse_stops_a_query_at_its_time_limit() {
    let app = spawn_app_with(|config| config.forwarder = false).await;
    let alice = app.signup("alice").await;
    let to = marked_bound(app.clock_now().await);
    slow_statement_entries(&app, alice.main_account_id, to).await;
    busy_in_postgres(&app, alice.main_account_id, to, 3_000).await;
    let server = spawn_logged_server_process(
        &app,
        &[
            ("MINIPAY_HISTORY_CLICKHOUSE_TIMEOUT_MS", "20000"),
            ("MINIPAY_CLICKHOUSE_MAX_EXECUTION_SECS", "1"),
            ("MINIPAY_FORWARDER", "off"),
        ],
    )
    .await;
    let started = Instant::now();
    let (status, source, body) = history_from(&app, &server.base, &alice, to).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(source.as_deref(), Some("postgres-fallback"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let log = server.log().await;
    assert!(log.contains("Timeout exceeded"), "ClickHouse did not stop the query itself:\n{log}");
}
