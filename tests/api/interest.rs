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
    app.set_clock("2036-12-01T10:00:00+09:00").await;
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
    app.set_clock("2036-12-02T03:59:59+09:00").await;
    assert_eq!(run_interest(&app).await["processed"], json!(0));
    app.set_clock("2036-12-02T04:00:00+09:00").await;
    let report = run_interest(&app).await;
    assert_eq!((report["processed"].as_i64(), report["posted_krw"].as_i64()), (Some(1), Some(82)));
    assert_eq!(paid_dates(&report), vec!["2036-12-02"]);
    let alice = fresh(&app, &alice).await;
    assert_eq!(app.account(&alice, savings_id).await["balance"], json!(1_000_082));
    // Twice the same day adds nothing.
    assert_eq!(run_interest(&app).await["processed"], json!(0));

    // Three days down: days 12-02, 12-03 and 12-04 are each paid once, on the principal only, with
    // the fractions carried (4 days × 82.19… = 328.7…), by the run for the latest date, in one
    // posting.
    app.set_clock("2036-12-05T06:00:00+09:00").await;
    let report = run_interest(&app).await;
    assert_eq!(paid_dates(&report), vec!["2036-12-05"]);
    assert_eq!((report["posted_krw"].as_i64(), report["account_days"].as_i64()), (Some(328 - 82), Some(3)));
    assert_eq!(run_interest(&app).await["processed"], json!(0));
    let alice = fresh(&app, &alice).await;
    assert_eq!(app.account(&alice, savings_id).await["balance"], json!(1_000_328));

    // Statements show each payment from "interest", naming the days it pays.
    let (status, history) =
        app.get(&format!("/v1/accounts/{savings_id}/history/naive?limit=10"), Some(&alice.token)).await;
    assert_eq!(status, 200, "{history}");
    let interest: Vec<&Value> =
        history["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == json!("interest")).collect();
    assert_eq!(interest.len(), 2);
    assert_eq!(interest[0]["balance_after"], json!(1_000_328));
    assert_eq!(interest[0]["counterparty"]["name"], json!("interest"));
    assert_eq!(interest[0]["memo"], json!("interest for 2036-12-02 to 2036-12-04 (3 days)"));
    assert_eq!(interest[1]["memo"], json!("interest for 2036-12-01"));
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn a_deposit_earns_for_the_day_it_was_made_and_not_for_the_day_before() {
    let app = spawn_app().await;
    app.set_clock("2036-12-01T10:00:00+09:00").await;
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
    app.set_clock("2036-12-02T02:00:00+09:00").await;
    let bob = fresh(&app, &bob).await;
    let (status, body) =
        app.post(&format!("/v1/accounts/{savings_id}/deposits"), Some(&bob.token), json!({"amount": 1_000_000})).await;
    assert_eq!(status, 201, "{body}");
    app.set_clock("2036-12-02T04:00:00+09:00").await;
    assert_eq!(run_interest(&app).await["posted_krw"], json!(82));
    app.set_clock("2036-12-03T04:00:00+09:00").await;
    // 12-02 on 2,000,000 with 12-01's carry: 164.38… + 0.19… → 164.
    assert_eq!(run_interest(&app).await["posted_krw"], json!(164));
    app.assert_audit_ok().await;
}

async fn run_job(app: &TestApp, name: &str) -> Value {
    let (status, body) =
        app.request(reqwest::Method::POST, &format!("/admin/jobs/{name}/run"), Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn open_fixed(app: &TestApp, user: &TestUser, installment_amount: i64) -> i64 {
    let (status, body) = app
        .post(
            "/v1/accounts",
            Some(&user.token),
            json!({"kind": "savings", "product": "fixed", "installment_amount": installment_amount}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

#[tokio::test]
async fn scenario_21_installments_top_up_in_units_record_misses_and_go_on_then_fixed_savings_earn_5_percent() {
    let app = spawn_app().await;
    app.set_clock("2036-12-01T10:00:00+09:00").await;
    let alice = app.signup("alice").await;
    assert_eq!(app.charge(&alice, 5_000).await.0, 201);
    let alice_fixed = open_fixed(&app, &alice, 10_000).await;
    let bob = app.signup("bob").await;
    let bob_fixed = open_fixed(&app, &bob, 10_000).await;
    let carol = app.signup("carol").await;
    let carol_fixed = open_fixed(&app, &carol, 1_000_000).await;

    let dave = app.signup("dave").await;
    // Bob tops up 12-02's whole limit before 08:00 and gives nearly all of it away.
    app.set_clock("2036-12-02T07:00:00+09:00").await;
    let bob = fresh(&app, &bob).await;
    assert_eq!(app.charge(&bob, 3_000_000).await.0, 201);
    let (status, body) = crate::transfers::send(&app, &bob, dave.main_account_id, 2_995_000).await;
    assert_eq!(status, 201, "{body}");
    app.set_clock("2036-12-02T07:59:59+09:00").await;
    assert_eq!(run_job(&app, "installments").await["processed"], json!(0));
    app.set_clock("2036-12-02T08:00:00+09:00").await;
    let report = run_job(&app, "installments").await;
    assert_eq!((report["taken"].as_i64(), report["missed"].as_i64()), (Some(2), Some(1)), "{report}");
    assert_eq!(report["auto_charged_krw"], json!(10_000 + 1_000_000));
    assert_eq!(run_job(&app, "installments").await["processed"], json!(0));

    let alice = fresh(&app, &alice).await;
    assert_eq!(app.balance(&alice).await, 5_000);
    assert_eq!(app.account(&alice, alice_fixed).await["balance"], json!(10_000));
    // The top-up counts against 12-02, the day the installment is for.
    assert_eq!(app.me(&alice).await["daily_charge"]["used"], json!(10_000));
    let bob = fresh(&app, &bob).await;
    assert_eq!(app.account(&bob, bob_fixed).await["balance"], json!(0));
    assert_eq!(app.balance(&bob).await, 5_000);
    let (status, notes) = app.get("/v1/notifications", Some(&bob.token)).await;
    assert_eq!(status, 200, "{notes}");
    let failed: Vec<&Value> = notes["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == json!("installment_failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{notes}");
    assert_eq!(failed[0]["payload"]["account_id"], json!(bob_fixed));

    // Fixed savings earn 5%: 1,000,000 → 136 at 04:00 the next day.
    app.set_clock("2036-12-03T04:00:00+09:00").await;
    let report = run_job(&app, "interest").await;
    let carol = fresh(&app, &carol).await;
    assert_eq!(app.account(&carol, carol_fixed).await["balance"], json!(1_000_136));
    assert_eq!(report["posted_krw"], json!(136 + 1), "{report}");

    // Closing pays principal and interest home; no installment after.
    let alice = fresh(&app, &alice).await;
    let (status, closed) = app.post(&format!("/v1/accounts/{alice_fixed}/close"), Some(&alice.token), json!({})).await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(app.balance(&alice).await, 5_000 + 10_001);
    app.set_clock("2036-12-03T08:00:00+09:00").await;
    // Bob's and Carol's are taken on 12-03's fresh limit; Alice's closed account is skipped.
    let report = run_job(&app, "installments").await;
    assert_eq!((report["taken"].as_i64(), report["missed"].as_i64()), (Some(2), Some(0)), "{report}");
    let alice = fresh(&app, &alice).await;
    assert_eq!(app.balance(&alice).await, 15_001);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn a_server_that_dies_between_interest_chunks_is_resumed_and_pays_nobody_twice() {
    let app = spawn_app().await;
    app.set_clock("2037-03-10T12:00:00+09:00").await;
    let mut savings = Vec::new();
    for i in 0..5 {
        let user = app.signup(&format!("saver{i}")).await;
        let (_, account) =
            app.post("/v1/accounts", Some(&user.token), json!({"kind": "savings", "product": "free"})).await;
        let id = account["id"].as_i64().unwrap();
        let (status, body) = app
            .post(&format!("/v1/accounts/{id}/deposits"), Some(&user.token), json!({"amount": 500_000 * (i + 1)}))
            .await;
        assert_eq!(status, 201, "{body}");
        savings.push(id);
    }
    // Every date up to today is done: the next runs owe exactly days 03-10 and 03-11.
    run_interest(&app).await;

    // A second server, two days on, taking two accounts per chunk, dies after two chunks (each
    // account paid its two days in one posting).
    let second =
        spawn_server_process_with(&app, &[("MINIPAY_JOBS_CHUNK_SIZE", "2"), ("MINIPAY_JOBS_ABORT_AFTER_CHUNKS", "2")])
            .await;
    let later = "2037-03-12T12:00:00+09:00";
    let (status, _) = app
        .client
        .put(format!("{}/admin/clock", second.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"now": later}))
        .send()
        .await
        .map(|response| (response.status(), ()))
        .unwrap();
    assert_eq!(status, 200);
    let died =
        app.client.post(format!("{}/admin/jobs/interest/run", second.base)).bearer_auth(ADMIN_TOKEN).send().await;
    assert!(died.is_err() || !died.unwrap().status().is_success(), "the server should have died mid-run");

    let count = |sql: &'static str| {
        let url = app.database_url.clone();
        async move {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
            sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut conn).await.unwrap()
        }
    };
    assert_eq!(count("SELECT count(*) FROM ledger_transfers WHERE kind = 'interest'").await, 4);

    // The rerun takes the date over: one account left, paid both days.
    app.set_clock(later).await;
    let report = run_interest(&app).await;
    assert_eq!(report["processed"], json!(1), "{report}");
    assert_eq!(report["dates"][0]["resumed"], json!(true), "{report}");
    assert_eq!(run_interest(&app).await["processed"], json!(0));
    assert_eq!(
        count(
            "SELECT count(*) FROM (SELECT credit_account_id FROM ledger_transfers WHERE kind = 'interest'
              GROUP BY 1 HAVING count(*) <> 1) wrong"
        )
        .await,
        0
    );
    // Two days on 500,000 × (i + 1) at 3%, the fractions carried.
    for (i, id) in savings.iter().enumerate() {
        let principal = 500_000 * (i as i64 + 1);
        let sql = format!("SELECT credits_posted - debits_posted FROM accounts WHERE id = {id}");
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&app.database_url).await.unwrap();
        let balance: i64 = sqlx::query_scalar(&sql).fetch_one(&mut conn).await.unwrap();
        assert_eq!(balance, principal + 2 * principal * 300 / 3_650_000, "account {id}");
    }
    app.assert_audit_ok().await;
}

/// Installments missed while the service was down are caught up once per day, each top-up
/// counted against the limit of the day its installment is for, and the audit (which compares
/// the daily counters with the ledger's top-ups) agrees.
#[tokio::test]
async fn caught_up_installments_count_their_top_ups_against_their_own_days() {
    let app = spawn_app().await;
    app.set_clock("2036-12-01T10:00:00+09:00").await;
    let alice = app.signup("alice").await;
    let fixed = open_fixed(&app, &alice, 10_000).await;
    // Down from before 12-02 08:00 until 12-04 09:00: three installments owed.
    app.set_clock("2036-12-04T09:00:00+09:00").await;
    let report = run_job(&app, "installments").await;
    assert_eq!((report["taken"].as_i64(), report["auto_charged_krw"].as_i64()), (Some(3), Some(30_000)), "{report}");
    let alice = fresh(&app, &alice).await;
    assert_eq!(app.account(&alice, fixed).await["balance"], json!(30_000));
    assert_eq!(app.balance(&alice).await, 0);
    // Only 12-04's own top-up counts today.
    assert_eq!(app.me(&alice).await["daily_charge"]["used"], json!(10_000));
    app.assert_audit_ok().await;
}

/// The savings account's statement entries of one kind, newest first.
async fn entries_of_kind(app: &TestApp, user: &TestUser, account_id: i64, kind: &str) -> Vec<Value> {
    let (status, history) =
        app.get(&format!("/v1/accounts/{account_id}/history/naive?limit=200"), Some(&user.token)).await;
    assert_eq!(status, 200, "{history}");
    history["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == json!(kind)).cloned().collect()
}

/// Opens a free savings account for `user` and deposits `amount` into it (topped up as needed).
async fn free_savings_with(app: &TestApp, user: &TestUser, amount: i64) -> i64 {
    let (status, savings) =
        app.post("/v1/accounts", Some(&user.token), json!({"kind": "savings", "product": "free"})).await;
    assert_eq!(status, 201, "{savings}");
    let savings_id = savings["id"].as_i64().unwrap();
    let (status, body) =
        app.post(&format!("/v1/accounts/{savings_id}/deposits"), Some(&user.token), json!({"amount": amount})).await;
    assert_eq!(status, 201, "{body}");
    savings_id
}

async fn close(app: &TestApp, user: &TestUser, account_id: i64) -> Value {
    let (status, closed) = app.post(&format!("/v1/accounts/{account_id}/close"), Some(&user.token), json!({})).await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["status"], json!("closed"), "{closed}");
    closed
}

/// `principal × rate_bp × days / (10,000 × 365)`, rounded down: what simple interest over
/// `days` days pays when the fractions are carried.
fn simple_interest(principal: i64, rate_bp: i64, days: i64) -> i64 {
    principal * rate_bp * days / 3_650_000
}

#[tokio::test]
async fn closing_at_three_pays_the_day_before_which_the_four_o_clock_run_would_have_paid() {
    let app = spawn_app().await;
    app.set_clock("2036-12-01T10:00:00+09:00").await;
    let alice = app.signup("alice").await;
    let savings_id = free_savings_with(&app, &alice, 1_000_000).await;
    // A deposit at 02:00 on 12-02 belongs to 12-02: it earns nothing for 12-01.
    app.set_clock("2036-12-02T02:00:00+09:00").await;
    let alice = fresh(&app, &alice).await;
    let (status, body) =
        app.post(&format!("/v1/accounts/{savings_id}/deposits"), Some(&alice.token), json!({"amount": 500_000})).await;
    assert_eq!(status, 201, "{body}");

    app.set_clock("2036-12-02T03:00:00+09:00").await;
    close(&app, &alice, savings_id).await;
    // 1,500,000 back home, with 12-01's 82 on 1,000,000.
    assert_eq!(app.balance(&alice).await, 1_500_082);
    let interest = entries_of_kind(&app, &alice, savings_id, "interest").await;
    assert_eq!(interest.len(), 1, "{interest:?}");
    assert_eq!((interest[0]["amount"].clone(), interest[0]["direction"].clone()), (json!(82), json!("in")));
    assert!(interest[0]["memo"].as_str().unwrap().contains("2036-12-01"), "{}", interest[0]);
    let closing = entries_of_kind(&app, &alice, savings_id, "close").await;
    assert_eq!((closing[0]["amount"].clone(), closing[0]["balance_after"].clone()), (json!(1_500_082), json!(0)));

    // The 04:00 run pays the closed account nothing more, that day or later.
    app.set_clock("2036-12-02T04:00:00+09:00").await;
    let report = run_interest(&app).await;
    assert_eq!((report["processed"].as_i64(), report["posted_krw"].as_i64()), (Some(0), Some(0)), "{report}");
    app.set_clock("2036-12-05T04:00:00+09:00").await;
    assert_eq!(run_interest(&app).await["posted_krw"], json!(0));
    let alice = fresh(&app, &alice).await;
    assert_eq!(app.balance(&alice).await, 1_500_082);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn closing_days_after_the_last_run_pays_every_day_owed_and_right_after_a_run_nothing_extra() {
    let app = spawn_app().await;
    app.set_clock("2036-12-01T10:00:00+09:00").await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let alice_savings = free_savings_with(&app, &alice, 1_000_000).await;
    let bob_savings = free_savings_with(&app, &bob, 1_000_000).await;
    app.set_clock("2036-12-02T04:00:00+09:00").await;
    assert_eq!(run_interest(&app).await["posted_krw"], json!(82 * 2));

    // Right after the run: 12-01 is paid, 12-02 is not over, nothing more is owed.
    app.set_clock("2036-12-02T04:30:00+09:00").await;
    let bob = fresh(&app, &bob).await;
    close(&app, &bob, bob_savings).await;
    assert_eq!(app.balance(&bob).await, 1_000_082);
    assert_eq!(entries_of_kind(&app, &bob, bob_savings, "interest").await.len(), 1);

    // Three days without a run: 12-02, 12-03 and 12-04 are owed, the carry included
    // (4 days × 82.19… = 328.7…).
    app.set_clock("2036-12-05T15:00:00+09:00").await;
    let alice = fresh(&app, &alice).await;
    close(&app, &alice, alice_savings).await;
    assert_eq!(app.balance(&alice).await, 1_000_000 + simple_interest(1_000_000, 300, 4));
    assert_eq!(app.balance(&alice).await, 1_000_328);
    let interest = entries_of_kind(&app, &alice, alice_savings, "interest").await;
    assert_eq!(interest.len(), 2, "{interest:?}");
    assert_eq!(interest[0]["amount"], json!(328 - 82));
    let memo = interest[0]["memo"].as_str().unwrap();
    assert!(memo.contains("2036-12-02") && memo.contains("2036-12-04"), "{memo}");

    // The next run pays neither account again.
    app.set_clock("2036-12-06T04:00:00+09:00").await;
    let report = run_interest(&app).await;
    assert_eq!((report["processed"].as_i64(), report["posted_krw"].as_i64()), (Some(0), Some(0)), "{report}");
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn closing_fixed_savings_pays_the_interest_owed_at_five_percent() {
    let app = spawn_app().await;
    app.set_clock("2036-12-01T10:00:00+09:00").await;
    let carol = app.signup("carol").await;
    let fixed = open_fixed(&app, &carol, 1_000_000).await;
    app.set_clock("2036-12-02T08:00:00+09:00").await;
    let report = run_job(&app, "installments").await;
    assert_eq!(report["taken"], json!(1), "{report}");
    // No interest run: at 03:00 on 12-04, 12-01 (nothing held), 12-02 and 12-03 are owed.
    app.set_clock("2036-12-04T03:00:00+09:00").await;
    let carol = fresh(&app, &carol).await;
    close(&app, &carol, fixed).await;
    assert_eq!(app.balance(&carol).await, 1_000_000 + simple_interest(1_000_000, 500, 2));
    assert_eq!(app.balance(&carol).await, 1_000_273);
    app.set_clock("2036-12-04T04:00:00+09:00").await;
    assert_eq!(run_interest(&app).await["posted_krw"], json!(0));
    app.assert_audit_ok().await;
}

/// 1,000,000 at 3 % for 41 days: 3,369.86… → 3,369, where looking back only 31 dates paid 32
/// days (2,630).
#[tokio::test]
async fn a_forty_day_gap_pays_every_day_held() {
    let app = spawn_app().await;
    app.set_clock("2036-12-01T10:00:00+09:00").await;
    let alice = app.signup("alice").await;
    let savings_id = free_savings_with(&app, &alice, 1_000_000).await;
    app.set_clock("2036-12-02T04:00:00+09:00").await;
    assert_eq!(run_interest(&app).await["posted_krw"], json!(82));

    // Down from 12-02 04:01 to 2037-01-11 04:00: 40 more days owed, 12-02 to 01-10.
    app.set_clock("2037-01-11T04:00:00+09:00").await;
    let report = run_interest(&app).await;
    let total = simple_interest(1_000_000, 300, 41);
    assert_eq!(total, 3_369);
    assert_eq!(report["posted_krw"], json!(total - 82), "{report}");
    let alice = fresh(&app, &alice).await;
    let balance = app.account(&alice, savings_id).await["balance"].as_i64().unwrap();
    // Never above the exact 3,369.86…, never 1 KRW or more below it.
    assert_eq!(balance, 1_000_000 + total);
    assert_eq!(run_interest(&app).await["processed"], json!(0));

    // One entry for the whole run of days, naming them.
    let interest = entries_of_kind(&app, &alice, savings_id, "interest").await;
    assert_eq!(interest.len(), 2, "{interest:?}");
    assert_eq!(interest[0]["amount"], json!(total - 82));
    let memo = interest[0]["memo"].as_str().unwrap();
    assert!(memo.contains("2036-12-02") && memo.contains("2037-01-10"), "{memo}");

    // The next day is paid on its own, the carry going on.
    app.set_clock("2037-01-12T04:00:00+09:00").await;
    assert_eq!(run_interest(&app).await["posted_krw"], json!(simple_interest(1_000_000, 300, 42) - total));
    app.assert_audit_ok().await;
}

/// Forty installment dates missed while the service was down: each taken on its own day's limit,
/// or missed with its own notification.
#[tokio::test]
async fn a_forty_day_gap_takes_or_records_every_missed_installment() {
    let app = spawn_app().await;
    app.set_clock("2036-12-01T10:00:00+09:00").await;
    let alice = app.signup("alice").await;
    let alice_fixed = open_fixed(&app, &alice, 10_000).await;
    // Two installments of 2,000,000 a day: each day's limit (3,000,000) tops up one of them.
    let bob = app.signup("bob").await;
    let bob_fixed = [open_fixed(&app, &bob, 2_000_000).await, open_fixed(&app, &bob, 2_000_000).await];

    // Down from before 12-02 08:00 until 2037-01-10 09:00: 12-02 to 01-10, 40 dates.
    app.set_clock("2037-01-10T09:00:00+09:00").await;
    let report = run_job(&app, "installments").await;
    assert_eq!((report["taken"].as_i64(), report["missed"].as_i64()), (Some(40 + 40), Some(40)), "{report}");
    assert_eq!(report["auto_charged_krw"], json!(40 * 10_000 + 40 * 2_000_000));
    assert_eq!(run_job(&app, "installments").await["processed"], json!(0));

    let alice = fresh(&app, &alice).await;
    assert_eq!(app.account(&alice, alice_fixed).await["balance"], json!(400_000));
    assert_eq!(app.balance(&alice).await, 0);
    // Only 01-10's own top-up counts today.
    assert_eq!(app.me(&alice).await["daily_charge"]["used"], json!(10_000));

    let bob = fresh(&app, &bob).await;
    let mut saved = 0;
    for id in bob_fixed {
        saved += app.account(&bob, id).await["balance"].as_i64().unwrap();
    }
    assert_eq!(saved, 40 * 2_000_000);
    assert_eq!(app.me(&bob).await["daily_charge"]["used"], json!(2_000_000));
    let (status, notes) = app.get("/v1/notifications?limit=200", Some(&bob.token)).await;
    assert_eq!(status, 200, "{notes}");
    let mut dates: Vec<String> = notes["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == json!("installment_failed"))
        .map(|n| n["payload"]["business_date"].as_str().unwrap().to_owned())
        .collect();
    dates.sort();
    let first = chrono::NaiveDate::from_ymd_opt(2036, 12, 2).unwrap();
    let expected: Vec<String> = (0..40).map(|day| (first + chrono::Days::new(day)).to_string()).collect();
    assert_eq!(dates, expected, "one miss with its notification per date");
    app.assert_audit_ok().await;
}

/// A server that dies part-way through catching up a long gap: the rerun finishes it, and no
/// account is paid or charged twice.
#[tokio::test]
async fn a_crash_in_the_middle_of_a_long_catch_up_pays_and_takes_nothing_twice() {
    let app = spawn_app().await;
    app.set_clock("2037-03-10T12:00:00+09:00").await;
    let mut free = Vec::new();
    let mut fixed = Vec::new();
    for i in 0..5 {
        let user = app.signup(&format!("saver{i}")).await;
        free.push(free_savings_with(&app, &user, 500_000 * (i + 1)).await);
        fixed.push(open_fixed(&app, &user, 10_000).await);
    }
    run_interest(&app).await;
    run_job(&app, "installments").await;

    // A second server, 45 days on, taking two accounts per chunk, dies after two chunks.
    let later = "2037-04-24T12:00:00+09:00";
    for job in ["interest", "installments"] {
        let second = spawn_server_process_with(
            &app,
            &[("MINIPAY_JOBS_CHUNK_SIZE", "2"), ("MINIPAY_JOBS_ABORT_AFTER_CHUNKS", "2")],
        )
        .await;
        let (status, _) = app
            .client
            .put(format!("{}/admin/clock", second.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"now": later}))
            .send()
            .await
            .map(|response| (response.status(), ()))
            .unwrap();
        assert_eq!(status, 200);
        let died =
            app.client.post(format!("{}/admin/jobs/{job}/run", second.base)).bearer_auth(ADMIN_TOKEN).send().await;
        assert!(died.is_err() || !died.unwrap().status().is_success(), "the server should have died in {job}");
    }

    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let count = |sql: String| {
        let pool = pool.clone();
        async move { sqlx::query_scalar::<_, i64>(&sql).fetch_one(&pool).await.unwrap() }
    };
    // Two chunks of two accounts were done before each crash: four of the ten savings
    // accounts paid through 04-23, four fixed ones with all their 45 installments.
    let paid_through = "SELECT count(*) FROM accounts WHERE kind = 'savings' AND interest_through = '2037-04-23'";
    assert_eq!(count(paid_through.into()).await, 4);
    assert_eq!(count("SELECT count(*) FROM ledger_transfers WHERE kind = 'installment'".into()).await, 4 * 45);

    // The reruns finish the rest, once PostgreSQL has noticed that the dead processes' locks
    // are gone (the jobs' locks, in the two-key form; the app's forwarder holds its lead).
    let started = std::time::Instant::now();
    let locks = "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                  WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND d.datname = current_database()";
    while count(locks.into()).await > 0 {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "a dead process's lock is still held");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    app.set_clock(later).await;
    let report = run_interest(&app).await;
    assert_eq!(report["processed"], json!(10 - 4), "{report}");
    assert_eq!(report["dates"][0]["resumed"], json!(true), "{report}");
    assert_eq!(count(paid_through.into()).await, 10);
    let report = run_job(&app, "installments").await;
    assert_eq!((report["taken"].as_i64(), report["missed"].as_i64()), (Some(45), Some(0)), "{report}");
    assert_eq!(run_interest(&app).await["processed"], json!(0));
    assert_eq!(run_job(&app, "installments").await["processed"], json!(0));

    // 03-10 to 04-23 (45 days) on 500,000 × (i + 1) at 3 %, in one posting each.
    for (i, id) in free.iter().enumerate() {
        let principal = 500_000 * (i as i64 + 1);
        let balance = count(format!("SELECT credits_posted - debits_posted FROM accounts WHERE id = {id}")).await;
        assert_eq!(balance, principal + simple_interest(principal, 300, 45), "account {id}");
        assert_eq!(
            count(format!(
                "SELECT count(*) FROM ledger_transfers WHERE credit_account_id = {id} AND kind = 'interest'"
            ))
            .await,
            1
        );
    }
    // 03-11 to 04-24: 45 installments each, once; booked after the days paid, they earned
    // nothing yet.
    for id in &fixed {
        let balance = count(format!("SELECT credits_posted - debits_posted FROM accounts WHERE id = {id}")).await;
        assert_eq!(balance, 45 * 10_000, "account {id}");
        let installments = count(format!(
            "SELECT count(*) FROM ledger_transfers WHERE credit_account_id = {id} AND kind = 'installment'"
        ))
        .await;
        assert_eq!(installments, 45, "account {id}");
    }
    app.assert_audit_ok().await;
}

/// More than a year down: 400 days of interest in one posting, and 400 installments each on
/// its own date's limit, months whose partitions nobody had prepared included.
#[tokio::test]
async fn a_four_hundred_day_gap_is_caught_up_whole() {
    let app = spawn_app().await;
    app.set_clock("2036-12-01T10:00:00+09:00").await;
    let alice = app.signup("alice").await;
    let fixed = open_fixed(&app, &alice, 10_000).await;
    let bob = app.signup("bob").await;
    let free = free_savings_with(&app, &bob, 1_000_000).await;

    // 2036-12-01 + 400 days: interest owed for 12-01 .. 2038-01-04, installments for
    // 12-02 .. 2038-01-05.
    app.set_clock("2038-01-05T09:00:00+09:00").await;
    let report = run_interest(&app).await;
    let total = simple_interest(1_000_000, 300, 400);
    assert_eq!((report["posted_krw"].as_i64(), report["account_days"].as_i64()), (Some(total), Some(400 + 400)));
    let report = run_job(&app, "installments").await;
    assert_eq!((report["taken"].as_i64(), report["missed"].as_i64()), (Some(400), Some(0)), "{report}");
    assert_eq!(
        (run_interest(&app).await["processed"].clone(), run_job(&app, "installments").await["processed"].clone()),
        (json!(0), json!(0))
    );

    let bob = fresh(&app, &bob).await;
    assert_eq!(app.account(&bob, free).await["balance"], json!(1_000_000 + total));
    let alice = fresh(&app, &alice).await;
    assert_eq!(app.account(&alice, fixed).await["balance"], json!(400 * 10_000));
    assert_eq!(app.me(&alice).await["daily_charge"]["used"], json!(10_000));
    app.assert_audit_ok().await;
}
