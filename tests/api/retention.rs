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
/// Waits until the forwarder has moved every entry to ClickHouse (the tuned pages show them at
/// once, whether or not ClickHouse has them yet), and checks that both routes agree.
async fn forwarded(app: &TestApp, user: &TestUser) {
    forwarded_all(app).await;
    assert_eq!(history(app, user, "").await, history(app, user, "/naive").await);
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

async fn set_mode(app: &TestApp, user: &TestUser, mode: &str) {
    let (status, body) =
        app.request(reqwest::Method::PATCH, "/v1/me", Some(&user.token), Some(json!({"transfer_mode": mode}))).await;
    assert_eq!(status, 200, "{body}");
}

async fn transfer(app: &TestApp, from: &TestUser, to: &TestUser, amount: i64) -> Value {
    let (status, body) = app
        .post("/v1/transfers", Some(&from.token), json!({"to_account_id": to.main_account_id, "amount": amount}))
        .await;
    assert_eq!(status, 201, "{body}");
    body
}

async fn forwarded_all(app: &TestApp) {
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    wait_for_empty_outbox(&pool, std::time::Duration::from_secs(20)).await;
    pool.close().await;
}

/// Months in which an account has only one kind of ledger row: only posted credits (a top-up),
/// only pending debits and credits (held transfers), only voided ones (a cancel and an
/// expiry), only posted debits and credits (a plain transfer). Each such month must be folded
/// into the archived totals and dropped like any other.
#[tokio::test]
async fn months_with_only_pending_voided_or_one_sided_rows_are_dropped_too() {
    let app = spawn_app().await;
    let year = app.clock_now().await.format("%Y").to_string().parse::<i32>().unwrap() + 1;
    let at = |month: u32, day: u32, hour: u32| -> DateTime<Utc> {
        format!("{year}-{month:02}-{day:02}T{hour:02}:00:00Z").parse().unwrap()
    };

    // January: alice has only a posted credit, the external account only a posted debit.
    app.set_clock(&at(1, 15, 3).to_rfc3339()).await;
    let alice = app.funded("alice", 100_000).await;
    let bob = app.signup("bob").await;
    let carol = app.signup("carol").await;

    // February: two held transfers, so alice has only pending debits and bob only pending
    // credits this month.
    app.set_clock(&at(2, 26, 12).to_rfc3339()).await;
    let alice = relogin(&app, &alice).await;
    set_mode(&app, &alice, "confirm").await;
    let cancelled = transfer(&app, &alice, &bob, 20_000).await;
    let expiring = transfer(&app, &alice, &bob, 5_000).await;
    assert_eq!((cancelled["status"].clone(), expiring["status"].clone()), (json!("pending"), json!("pending")));

    // March: one is cancelled, the other expires: only voided rows for both.
    app.set_clock(&at(3, 1, 6).to_rfc3339()).await;
    let alice = relogin(&app, &alice).await;
    let (status, body) =
        app.post(&format!("/v1/transfers/{}/cancel", cancelled["id"]), Some(&alice.token), json!({})).await;
    assert_eq!(status, 200, "{body}");
    app.set_clock(&at(3, 2, 6).to_rfc3339()).await;
    let (status, body) =
        app.request(reqwest::Method::POST, "/admin/jobs/pending-expiry/run", Some(ADMIN_TOKEN), None).await;
    assert_eq!((status.as_u16(), body["processed"].clone()), (200, json!(1)), "{body}");

    // April: a plain transfer, so alice has only a posted debit and carol only a posted credit.
    app.set_clock(&at(4, 15, 3).to_rfc3339()).await;
    let alice = relogin(&app, &alice).await;
    set_mode(&app, &alice, "immediate").await;
    assert_eq!(transfer(&app, &alice, &carol, 30_000).await["status"], json!("completed"));
    forwarded_all(&app).await;
    app.assert_audit_ok().await;

    // 400 days later every one of those months is older than a year.
    app.set_clock(&(at(4, 15, 3) + Duration::days(400)).to_rfc3339()).await;
    let (status, report) = app.post("/admin/jobs/retention/run", Some(ADMIN_TOKEN), json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["clickhouse_error"], Value::Null, "{report}");
    for month in 1..=4 {
        let partition = json!(format!("ledger_transfers_y{year}m{month:02}"));
        assert!(report["dropped_postgres"].as_array().unwrap().contains(&partition), "{report}");
        let partition = json!(format!("{year}{month:02}"));
        assert!(report["dropped_clickhouse"].as_array().unwrap().contains(&partition), "{report}");
    }

    // Gone from both stores.
    let before_may = at(5, 1, 0);
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    for table in ["ledger_transfers", "statement_entries"] {
        let column = if table == "ledger_transfers" { "created_at" } else { "at" };
        let left: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE {column} < $1"))
            .bind(before_may)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(left, 0, "{table}");
    }
    let url = std::env::var("CLICKHOUSE_URL").unwrap();
    let query = format!("SELECT count() FROM {}.statement_entries WHERE toYYYYMM(at) <= {year}04", app.database);
    let in_clickhouse = app.client.post(&url).body(query).send().await.unwrap().text().await.unwrap();
    assert_eq!(in_clickhouse.trim(), "0");

    // Balances are untouched, the audit balances every account, and the job keeps working.
    let (alice, bob, carol) = (relogin(&app, &alice).await, relogin(&app, &bob).await, relogin(&app, &carol).await);
    assert_eq!(app.balance(&alice).await, 70_000);
    assert_eq!(app.account(&alice, alice.main_account_id).await["available"], json!(70_000));
    assert_eq!(app.balance(&bob).await, 0);
    assert_eq!(app.balance(&carol).await, 30_000);
    app.assert_audit_ok().await;
    let (status, again) = app.post("/admin/jobs/retention/run", Some(ADMIN_TOKEN), json!({})).await;
    assert_eq!((status.as_u16(), again["processed"].clone()), (200, json!(0)), "{again}");
}
