//! Top-ups (charges) into the main account and the daily limit of 3,000,000 KRW per
//! Asia/Seoul business day (SCENARIOS 1–5).

use chrono::{Datelike, Duration};
use futures::future::join_all;
use serde_json::json;

use crate::helpers::*;

const DAILY_LIMIT: i64 = 3_000_000;

/// A year after the server clock's, so that fixed calendar dates in it are always ahead.
async fn a_future_year(app: &TestApp) -> i32 {
    app.clock_now().await.year() + 1
}

#[tokio::test]
async fn a_new_user_has_exactly_one_empty_main_account_and_no_top_up_used() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;

    let (status, body) = app.get("/v1/accounts", Some(&alice.token)).await;
    assert_eq!(status, 200, "{body}");
    let accounts = body["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 1, "{body}");
    let main = &accounts[0];
    assert_eq!(main["id"], json!(alice.main_account_id));
    assert_eq!(main["kind"], json!("main"));
    assert_eq!(main["product"], json!(null));
    assert_eq!(main["balance"], json!(0));
    assert_eq!(main["pending_out"], json!(0));
    assert_eq!(main["available"], json!(0));
    assert_eq!(main["status"], json!("open"));
    assert_eq!(main["installment_amount"], json!(null));
    assert_eq!(main["interest_rate_bp"], json!(null));

    let me = app.me(&alice).await;
    assert_eq!(me["main_account_id"], json!(alice.main_account_id));
    assert_eq!(me["daily_charge"]["limit"], json!(DAILY_LIMIT));
    assert_eq!(me["daily_charge"]["used"], json!(0));
    assert_eq!(me["daily_charge"]["remaining"], json!(DAILY_LIMIT));
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn charging_50000_raises_the_balance_and_leaves_2950000_of_the_limit() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;

    let (status, body) = app.charge(&alice, 50_000).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["charged"], json!(50_000));
    assert_eq!(body["account"]["id"], json!(alice.main_account_id));
    assert_eq!(body["account"]["balance"], json!(50_000));
    assert_eq!(body["account"]["available"], json!(50_000));
    assert_eq!(body["daily_charge"]["limit"], json!(DAILY_LIMIT));
    assert_eq!(body["daily_charge"]["used"], json!(50_000));
    assert_eq!(body["daily_charge"]["remaining"], json!(2_950_000));

    assert_eq!(app.balance(&alice).await, 50_000);
    let me = app.me(&alice).await;
    assert_eq!(me["daily_charge"]["used"], json!(50_000));
    assert_eq!(me["daily_charge"]["remaining"], json!(2_950_000));
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn charges_up_to_exactly_the_limit_succeed_and_one_more_won_is_refused_without_charging() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;

    let (status, body) = app.charge(&alice, 2_950_000).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app.charge(&alice, 50_000).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["daily_charge"]["remaining"], json!(0));

    let (status, body) = app.charge(&alice, 1).await;
    assert_problem(status, &body, 422, "daily-limit-exceeded");

    assert_eq!(app.balance(&alice).await, 3_000_000);
    let me = app.me(&alice).await;
    assert_eq!(me["daily_charge"]["used"], json!(DAILY_LIMIT));
    assert_eq!(me["daily_charge"]["remaining"], json!(0));
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn the_first_charge_of_a_day_is_checked_against_the_limit_too() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;

    let (status, body) = app.charge(&alice, 3_000_001).await;
    assert_problem(status, &body, 422, "daily-limit-exceeded");
    assert_eq!(app.balance(&alice).await, 0);
    assert_eq!(app.me(&alice).await["daily_charge"]["used"], json!(0));

    // The refusal used nothing: the whole limit is still there.
    let (status, body) = app.charge(&alice, 3_000_000).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(app.balance(&alice).await, 3_000_000);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn ten_concurrent_charges_of_a_million_from_zero_let_exactly_three_through() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;

    let responses = join_all((0..10).map(|_| app.charge(&alice, 1_000_000))).await;

    let succeeded = responses.iter().filter(|(status, _)| *status == 201).count();
    assert_eq!(succeeded, 3, "{responses:#?}");
    for (status, body) in responses.iter().filter(|(status, _)| *status != 201) {
        assert_problem(*status, body, 422, "daily-limit-exceeded");
    }
    assert_eq!(app.balance(&alice).await, 3_000_000);
    let me = app.me(&alice).await;
    assert_eq!(me["daily_charge"]["used"], json!(DAILY_LIMIT));
    assert_eq!(me["daily_charge"]["remaining"], json!(0));
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn a_limit_used_up_at_23_59_59_kst_is_whole_again_at_00_00_00_kst() {
    let app = spawn_app().await;
    let year = a_future_year(&app).await;
    app.set_clock(&format!("{year}-01-05T23:59:59+09:00")).await;
    // Signed up after the jump so the session is fresh on the new clock.
    let alice = app.signup("alice").await;

    let me = app.me(&alice).await;
    assert_eq!(me["daily_charge"]["resets_at"], json!(format!("{year}-01-05T15:00:00Z")));
    let (status, body) = app.charge(&alice, 3_000_000).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["daily_charge"]["resets_at"], json!(format!("{year}-01-05T15:00:00Z")));
    let (status, body) = app.charge(&alice, 10_000).await;
    assert_problem(status, &body, 422, "daily-limit-exceeded");

    app.set_clock(&format!("{year}-01-06T00:00:00+09:00")).await;
    let me = app.me(&alice).await;
    assert_eq!(me["daily_charge"]["used"], json!(0));
    assert_eq!(me["daily_charge"]["remaining"], json!(DAILY_LIMIT));
    assert_eq!(me["daily_charge"]["resets_at"], json!(format!("{year}-01-06T15:00:00Z")));

    let (status, body) = app.charge(&alice, 3_000_000).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["daily_charge"]["used"], json!(DAILY_LIMIT));
    assert_eq!(app.balance(&alice).await, 6_000_000);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn the_fifth_of_january_and_the_fifth_of_february_are_different_days() {
    let app = spawn_app().await;
    let year = a_future_year(&app).await;
    app.set_clock(&format!("{year}-01-05T12:00:00+09:00")).await;
    let mut alice = app.signup("alice").await;

    let (status, body) = app.charge(&alice, 3_000_000).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app.charge(&alice, 1).await;
    assert_problem(status, &body, 422, "daily-limit-exceeded");

    app.set_clock(&format!("{year}-02-05T12:00:00+09:00")).await;
    alice.token = app.login("alice").await; // the January session has expired
    let me = app.me(&alice).await;
    assert_eq!(me["daily_charge"]["used"], json!(0));
    assert_eq!(me["daily_charge"]["remaining"], json!(DAILY_LIMIT));
    assert_eq!(me["daily_charge"]["resets_at"], json!(format!("{year}-02-05T15:00:00Z")));

    let (status, body) = app.charge(&alice, 1_000_000).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["daily_charge"]["used"], json!(1_000_000));
    assert_eq!(app.balance(&alice).await, 4_000_000);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn charges_work_after_the_clock_jumps_months_ahead_into_new_partitions() {
    let app = spawn_app().await;
    let mut alice = app.signup("alice").await;
    let (status, body) = app.charge(&alice, 100_000).await;
    assert_eq!(status, 201, "{body}");

    // Far past the months prepared at start (the current one and two ahead).
    let mut now = app.clock_now().await;
    for months_ahead in [7, 19] {
        now += Duration::days(31 * months_ahead);
        app.set_clock(&now.to_rfc3339()).await;
        alice.token = app.login("alice").await;
        assert_eq!(app.me(&alice).await["daily_charge"]["used"], json!(0));

        let (status, body) = app.charge(&alice, 2_000_000).await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = app.charge(&alice, 1_000_001).await;
        assert_problem(status, &body, 422, "daily-limit-exceeded");
    }
    assert_eq!(app.balance(&alice).await, 4_100_000);
    app.assert_audit_ok().await;
}
