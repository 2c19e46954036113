//! SCENARIO 24: an entry 364 days old is returned; one older than a year is gone from both
//! stores, and the ledger still balances after its months are dropped.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

use crate::helpers::*;

async fn history(app: &TestApp, user: &TestUser, route: &str) -> Vec<Value> {
    let (status, body) =
        app.get(&format!("/v1/accounts/{}/history{route}", user.main_account_id), Some(&user.token)).await;
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().unwrap().clone()
}

/// Waits (bounded) until the read store has every entry PostgreSQL has.
async fn forwarded(app: &TestApp, user: &TestUser) {
    for _ in 0..200 {
        if history(app, user, "").await.len() == history(app, user, "/naive").await.len() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the forwarder did not catch up");
}

async fn relogin(app: &TestApp, user: &TestUser) -> TestUser {
    TestUser { token: app.login(&user.name).await, ..user.clone() }
}

#[tokio::test]
async fn scenario_24_a_year_of_history_and_not_a_day_more() {
    let app = spawn_app().await;
    // The last day of a month, next year: the month ends a day after the moment, so a year
    // and two days later the whole month is older than a year.
    let year = app.clock_now().await.format("%Y").to_string().parse::<i32>().unwrap() + 1;
    let start: DateTime<Utc> = format!("{year}-01-31T03:00:00Z").parse().unwrap();
    app.set_clock(&start.to_rfc3339()).await;
    let alice = app.signup("alice").await;
    assert_eq!(app.charge(&alice, 10_000).await.0, 201);
    forwarded(&app, &alice).await;

    app.set_clock(&(start + Duration::days(364)).to_rfc3339()).await;
    let alice = relogin(&app, &alice).await;
    assert_eq!(app.charge(&alice, 20_000).await.0, 201);
    forwarded(&app, &alice).await;
    for route in ["", "/naive"] {
        assert_eq!(history(&app, &alice, route).await.len(), 2, "364 days old is still there ({route})");
    }

    app.set_clock(&(start + Duration::days(367)).to_rfc3339()).await;
    let alice = relogin(&app, &alice).await;
    for route in ["", "/naive"] {
        let entries = history(&app, &alice, route).await;
        assert_eq!(entries.len(), 1, "older than a year is gone ({route})");
        assert_eq!(entries[0]["amount"], json!(20_000));
    }
    let (status, report) = app.post("/admin/jobs/retention/run", Some(ADMIN_TOKEN), json!({})).await;
    assert_eq!(status, 200, "{report}");
    let january = format!("{year}01");
    assert!(report["dropped_clickhouse"].as_array().unwrap().contains(&json!(january)), "{report}");
    assert!(
        report["dropped_postgres"].as_array().unwrap().contains(&json!(format!("ledger_transfers_y{year}m01"))),
        "{report}"
    );

    // Gone from the stores themselves, not only from the answers.
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM statement_entries WHERE at < $1")
        .bind(start + Duration::days(1))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0);
    let url = std::env::var("CLICKHOUSE_URL").unwrap();
    let query = format!("SELECT count() FROM {}.statement_entries WHERE toYYYYMM(at) = {january}", app.database);
    let in_clickhouse = app.client.post(&url).body(query).send().await.unwrap().text().await.unwrap();
    assert_eq!(in_clickhouse.trim(), "0");

    // Balances are untouched and the audit still balances every account.
    assert_eq!(app.balance(&alice).await, 30_000);
    app.assert_audit_ok().await;
    // Running it again finds nothing more to drop.
    let (_, again) = app.post("/admin/jobs/retention/run", Some(ADMIN_TOKEN), json!({})).await;
    assert_eq!(again["processed"], json!(0), "{again}");
}
