//! Daily interest at 04:00 KST: once per date, caught up after downtime.

use serde_json::{json, Value};

use crate::helpers::*;

async fn run_interest(app: &TestApp) -> Value {
    let (status, body) = app.request(reqwest::Method::POST, "/admin/jobs/interest/run", Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The run dates (business dates from whose 04:00 the day before is paid) that paid someone.
fn paid_dates(report: &Value) -> Vec<&str> {
    report["dates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|date| date["processed"].as_i64() > Some(0))
        .map(|date| date["business_date"].as_str().unwrap())
        .collect()
}

async fn fresh(app: &TestApp, user: &TestUser) -> TestUser {
    TestUser { token: app.login(&user.name).await, ..user.clone() }
}

#[tokio::test]
async fn scenario_20_free_savings_earn_82_a_day_once_per_date_and_catch_up_after_downtime() {
    let app = spawn_app().await;
    app.set_clock("2026-12-01T10:00:00+09:00").await;
    let alice = app.signup("alice").await;
    let (status, savings) =
        app.post("/v1/accounts", Some(&alice.token), json!({"kind": "savings", "product": "free"})).await;
    assert_eq!(status, 201, "{savings}");
    let savings_id = savings["id"].as_i64().unwrap();
    let (status, body) = app
        .post(&format!("/v1/accounts/{savings_id}/deposits"), Some(&alice.token), json!({"amount": 1_000_000}))
        .await;
    assert_eq!(status, 201, "{body}");

    // Day 1's interest is due at 04:00 on day 2, not a second earlier.
    app.set_clock("2026-12-02T03:59:59+09:00").await;
    assert_eq!(run_interest(&app).await["processed"], json!(0));
    app.set_clock("2026-12-02T04:00:00+09:00").await;
    let report = run_interest(&app).await;
    assert_eq!((report["processed"].as_i64(), report["posted_krw"].as_i64()), (Some(1), Some(82)));
    assert_eq!(paid_dates(&report), vec!["2026-12-02"]);
    let alice = fresh(&app, &alice).await;
    assert_eq!(app.account(&alice, savings_id).await["balance"], json!(1_000_082));
    // Twice the same day adds nothing.
    assert_eq!(run_interest(&app).await["processed"], json!(0));

    // Three days down: days 12-02, 12-03 and 12-04 are each paid once, on the principal only, with
    // the fractions carried (4 days × 82.19… = 328.7…).
    app.set_clock("2026-12-05T06:00:00+09:00").await;
    let report = run_interest(&app).await;
    assert_eq!(paid_dates(&report), vec!["2026-12-03", "2026-12-04", "2026-12-05"]);
    assert_eq!(report["posted_krw"], json!(328 - 82));
    assert_eq!(run_interest(&app).await["processed"], json!(0));
    let alice = fresh(&app, &alice).await;
    assert_eq!(app.account(&alice, savings_id).await["balance"], json!(1_000_328));

    // Statements show each payment from "interest".
    let (status, history) =
        app.get(&format!("/v1/accounts/{savings_id}/history/naive?limit=10"), Some(&alice.token)).await;
    assert_eq!(status, 200, "{history}");
    let interest: Vec<&Value> =
        history["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == json!("interest")).collect();
    assert_eq!(interest.len(), 4);
    assert_eq!(interest[0]["balance_after"], json!(1_000_328));
    assert_eq!(interest[0]["counterparty"]["name"], json!("interest"));
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn a_deposit_earns_for_the_day_it_was_made_and_not_for_the_day_before() {
    let app = spawn_app().await;
    app.set_clock("2026-12-01T10:00:00+09:00").await;
    let bob = app.signup("bob").await;
    let (_, savings) = app.post("/v1/accounts", Some(&bob.token), json!({"kind": "savings", "product": "free"})).await;
    let savings_id = savings["id"].as_i64().unwrap();
    let deposit = |amount: i64| {
        let app = &app;
        let token = bob.token.clone();
        async move {
            let (status, body) =
                app.post(&format!("/v1/accounts/{savings_id}/deposits"), Some(&token), json!({"amount": amount})).await;
            assert_eq!(status, 201, "{body}");
        }
    };
    deposit(1_000_000).await;
    // A deposit at 02:00 on 12-02, before the job, belongs to 12-02, not to 12-01.
    app.set_clock("2026-12-02T02:00:00+09:00").await;
    let bob = fresh(&app, &bob).await;
    let (status, body) =
        app.post(&format!("/v1/accounts/{savings_id}/deposits"), Some(&bob.token), json!({"amount": 1_000_000})).await;
    assert_eq!(status, 201, "{body}");
    app.set_clock("2026-12-02T04:00:00+09:00").await;
    assert_eq!(run_interest(&app).await["posted_krw"], json!(82));
    app.set_clock("2026-12-03T04:00:00+09:00").await;
    // 12-02 on 2,000,000 with 12-01's carry: 164.38… + 0.19… → 164.
    assert_eq!(run_interest(&app).await["posted_krw"], json!(164));
    app.assert_audit_ok().await;
}
