//! Savings accounts: opening, listing, deposits with auto top-up (SCENARIO 7), closing, and
//! other users' accounts answering 404.

use serde_json::{json, Value};

use crate::helpers::*;

async fn open_savings(app: &TestApp, user: &TestUser, body: Value) -> Value {
    let (status, account) = app.post("/v1/accounts", Some(&user.token), body.clone()).await;
    assert_eq!(status, 201, "open {body}: {account}");
    account
}

async fn open_free(app: &TestApp, user: &TestUser) -> i64 {
    open_savings(app, user, json!({"kind": "savings", "product": "free"})).await["id"].as_i64().unwrap()
}

async fn open_fixed(app: &TestApp, user: &TestUser, installment_amount: i64) -> i64 {
    open_savings(app, user, json!({"kind": "savings", "product": "fixed", "installment_amount": installment_amount}))
        .await["id"]
        .as_i64()
        .unwrap()
}

async fn deposit(app: &TestApp, user: &TestUser, account_id: i64, amount: i64) -> (reqwest::StatusCode, Value) {
    app.post(&format!("/v1/accounts/{account_id}/deposits"), Some(&user.token), json!({"amount": amount})).await
}

async fn close(app: &TestApp, user: &TestUser, account_id: i64) -> (reqwest::StatusCode, Value) {
    app.post(&format!("/v1/accounts/{account_id}/close"), Some(&user.token), json!({})).await
}

async fn charged(app: &TestApp, user: &TestUser, amount: i64) {
    let (status, body) = app.charge(user, amount).await;
    assert_eq!(status, 201, "{body}");
}

async fn daily_used(app: &TestApp, user: &TestUser) -> i64 {
    app.me(user).await["daily_charge"]["used"].as_i64().unwrap()
}

#[tokio::test]
async fn depositing_20000_with_12000_in_main_tops_up_exactly_10000() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    charged(&app, &alice, 12_000).await;
    let savings_id = open_free(&app, &alice).await;

    let (status, body) = deposit(&app, &alice, savings_id, 20_000).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["auto_charged"], json!(10_000));
    assert_eq!(body["account"]["id"], json!(savings_id));
    assert_eq!(body["account"]["balance"], json!(20_000));
    assert_eq!(body["main_account"]["id"], json!(alice.main_account_id));
    assert_eq!(body["main_account"]["balance"], json!(2_000));

    assert_eq!(app.balance(&alice).await, 2_000);
    assert_eq!(app.account(&alice, savings_id).await["balance"], json!(20_000));
    assert_eq!(daily_used(&app, &alice).await, 22_000);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn an_exact_main_balance_needs_no_top_up() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    charged(&app, &alice, 20_000).await;
    let savings_id = open_free(&app, &alice).await;

    let (status, body) = deposit(&app, &alice, savings_id, 20_000).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["auto_charged"], json!(0));
    assert_eq!(body["main_account"]["balance"], json!(0));
    assert_eq!(body["account"]["balance"], json!(20_000));
    assert_eq!(daily_used(&app, &alice).await, 20_000);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn a_deposit_whose_top_up_exceeds_the_rest_of_the_limit_moves_nothing() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    // 9,999 of the limit is left; any top-up is at least 10,000.
    charged(&app, &alice, 2_990_001).await;
    let savings_id = open_free(&app, &alice).await;

    for amount in [2_990_002, 3_010_000, 1_000_000_000] {
        let (status, body) = deposit(&app, &alice, savings_id, amount).await;
        assert_problem(status, &body, 422, "daily-limit-exceeded");
        assert_eq!(app.balance(&alice).await, 2_990_001, "after refusing {amount}");
        assert_eq!(app.account(&alice, savings_id).await["balance"], json!(0), "after refusing {amount}");
        assert_eq!(daily_used(&app, &alice).await, 2_990_001, "after refusing {amount}");
    }

    // What the main account holds can still be deposited without a top-up.
    let (status, body) = deposit(&app, &alice, savings_id, 2_990_001).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["auto_charged"], json!(0));
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn a_top_up_that_fits_the_rest_of_the_limit_exactly_is_taken() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    charged(&app, &alice, 2_990_000).await;
    let savings_id = open_free(&app, &alice).await;

    let (status, body) = deposit(&app, &alice, savings_id, 3_000_000).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["auto_charged"], json!(10_000));
    assert_eq!(body["main_account"]["balance"], json!(0));
    assert_eq!(body["account"]["balance"], json!(3_000_000));
    assert_eq!(daily_used(&app, &alice).await, 3_000_000);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn fixed_savings_refuse_deposits_and_nothing_moves() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    charged(&app, &alice, 50_000).await;
    let fixed_id = open_fixed(&app, &alice, 10_000).await;

    let (status, body) = deposit(&app, &alice, fixed_id, 20_000).await;
    assert_problem(status, &body, 422, "validation-failed");
    assert_eq!(app.balance(&alice).await, 50_000);
    assert_eq!(app.account(&alice, fixed_id).await["balance"], json!(0));
    assert_eq!(daily_used(&app, &alice).await, 50_000);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn free_and_fixed_savings_open_with_their_rates_and_installments() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let now = app.clock_now().await;

    let free = open_savings(&app, &alice, json!({"kind": "savings", "product": "free"})).await;
    assert_eq!(free["kind"], json!("savings"));
    assert_eq!(free["product"], json!("free"));
    assert_eq!(free["interest_rate_bp"], json!(300));
    assert_eq!(free["installment_amount"], json!(null));
    assert_eq!(free["balance"], json!(0));
    assert_eq!(free["pending_out"], json!(0));
    assert_eq!(free["available"], json!(0));
    assert_eq!(free["status"], json!("open"));
    let opened_at: chrono::DateTime<chrono::Utc> = free["opened_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(opened_at, now);

    let fixed =
        open_savings(&app, &alice, json!({"kind": "savings", "product": "fixed", "installment_amount": 10_000})).await;
    assert_eq!(fixed["product"], json!("fixed"));
    assert_eq!(fixed["interest_rate_bp"], json!(500));
    assert_eq!(fixed["installment_amount"], json!(10_000));
    assert_eq!(fixed["status"], json!("open"));
    assert_ne!(fixed["id"], free["id"]);
    assert_eq!(app.account(&alice, fixed["id"].as_i64().unwrap()).await, fixed);
}

#[tokio::test]
async fn opening_savings_with_a_wrong_product_or_installment_is_refused() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    for body in [
        json!({"kind": "savings", "product": "fixed"}),
        json!({"kind": "savings", "product": "fixed", "installment_amount": null}),
        json!({"kind": "savings", "product": "fixed", "installment_amount": 0}),
        json!({"kind": "savings", "product": "fixed", "installment_amount": -10_000}),
        json!({"kind": "savings", "product": "fixed", "installment_amount": 3_000_001}),
        json!({"kind": "savings", "product": "free", "installment_amount": 10_000}),
        json!({"kind": "savings", "product": "gold"}),
        json!({"kind": "main", "product": "free"}),
        json!({"kind": "checking", "product": "free"}),
    ] {
        let (status, problem) = app.post("/v1/accounts", Some(&alice.token), body.clone()).await;
        assert_eq!(problem["code"], json!("validation-failed"), "{body}");
        assert_problem(status, &problem, 422, "validation-failed");
    }
    let (_, list) = app.get("/v1/accounts", Some(&alice.token)).await;
    assert_eq!(list["accounts"].as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test]
async fn the_account_list_has_main_first_then_savings_in_opening_order() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let fixed_id = open_fixed(&app, &alice, 10_000).await;
    let free_id = open_free(&app, &alice).await;
    open_free(&app, &bob).await;

    let (status, body) = app.get("/v1/accounts", Some(&alice.token)).await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<i64> =
        body["accounts"].as_array().unwrap().iter().map(|account| account["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![alice.main_account_id, fixed_id, free_id]);
    assert_eq!(body["accounts"][0]["kind"], json!("main"));
}

#[tokio::test]
async fn another_users_accounts_answer_404_to_every_route_and_stay_untouched() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    charged(&app, &alice, 100_000).await;
    charged(&app, &bob, 50_000).await;
    let bobs_savings = open_free(&app, &bob).await;
    let (status, body) = deposit(&app, &bob, bobs_savings, 20_000).await;
    assert_eq!(status, 201, "{body}");
    let bobs_closed = open_free(&app, &bob).await;
    let (status, body) = close(&app, &bob, bobs_closed).await;
    assert_eq!(status, 200, "{body}");
    let missing = bobs_savings + 1_000_000;
    // 1 and 2 are the system accounts (money from outside, interest paid).
    for account_id in [bobs_savings, bobs_closed, bob.main_account_id, missing, 1, 2] {
        let (status, body) = app.get(&format!("/v1/accounts/{account_id}"), Some(&alice.token)).await;
        assert_problem(status, &body, 404, "not-found");
        let (status, body) = deposit(&app, &alice, account_id, 10_000).await;
        assert_problem(status, &body, 404, "not-found");
        let (status, body) = app
            .post(&format!("/v1/accounts/{account_id}/charges"), Some(&alice.token), json!({"amount": 10_000}))
            .await;
        assert_problem(status, &body, 404, "not-found");
        let (status, body) = close(&app, &alice, account_id).await;
        assert_problem(status, &body, 404, "not-found");
    }

    assert_eq!(app.balance(&bob).await, 30_000);
    assert_eq!(app.account(&bob, bobs_savings).await["balance"], json!(20_000));
    assert_eq!(app.account(&bob, bobs_savings).await["status"], json!("open"));
    assert_eq!(app.balance(&alice).await, 100_000);
    assert_eq!(daily_used(&app, &alice).await, 100_000);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn closing_savings_moves_the_balance_to_main_and_a_second_close_is_409() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    charged(&app, &alice, 50_000).await;
    let savings_id = open_free(&app, &alice).await;
    let (status, body) = deposit(&app, &alice, savings_id, 30_000).await;
    assert_eq!(status, 201, "{body}");

    let (status, body) = close(&app, &alice, savings_id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], json!(savings_id));
    assert_eq!(body["status"], json!("closed"));
    assert_eq!(body["balance"], json!(0));
    assert_eq!(app.balance(&alice).await, 50_000);
    assert_eq!(app.account(&alice, savings_id).await["status"], json!("closed"));

    let (status, body) = close(&app, &alice, savings_id).await;
    assert_problem(status, &body, 409, "invalid-state");
    let (status, body) = deposit(&app, &alice, savings_id, 10_000).await;
    assert_problem(status, &body, 409, "invalid-state");

    assert_eq!(app.balance(&alice).await, 50_000);
    assert_eq!(app.account(&alice, savings_id).await["balance"], json!(0));
    assert_eq!(daily_used(&app, &alice).await, 50_000);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn empty_fixed_savings_close_too() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let fixed_id = open_fixed(&app, &alice, 10_000).await;
    let (status, body) = close(&app, &alice, fixed_id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], json!("closed"));
    assert_eq!(app.balance(&alice).await, 0);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn the_main_account_cannot_be_closed_charged_as_savings_or_deposited_into() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    charged(&app, &alice, 10_000).await;
    let savings_id = open_free(&app, &alice).await;

    let (status, body) = close(&app, &alice, alice.main_account_id).await;
    assert_problem(status, &body, 422, "validation-failed");
    let (status, body) = deposit(&app, &alice, alice.main_account_id, 10_000).await;
    assert_problem(status, &body, 422, "validation-failed");
    let (status, body) =
        app.post(&format!("/v1/accounts/{savings_id}/charges"), Some(&alice.token), json!({"amount": 10_000})).await;
    assert_problem(status, &body, 422, "validation-failed");

    assert_eq!(app.account(&alice, alice.main_account_id).await["status"], json!("open"));
    assert_eq!(app.balance(&alice).await, 10_000);
    assert_eq!(app.account(&alice, savings_id).await["balance"], json!(0));
    assert_eq!(daily_used(&app, &alice).await, 10_000);
    app.assert_audit_ok().await;
}
