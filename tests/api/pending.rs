//! Transfers that wait for the receiver: hold, accept / reject / cancel, 72-hour expiry.

use chrono::{DateTime, Duration, Utc};
use futures::future::join_all;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::transfers::send;

async fn confirming(app: &TestApp, name: &str, funds: i64) -> TestUser {
    let user = app.signup(name).await;
    if funds > 0 {
        let (status, body) = app.charge(&user, funds).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = app
        .request(reqwest::Method::PATCH, "/v1/me", Some(&user.token), Some(json!({"transfer_mode": "confirm"})))
        .await;
    assert_eq!(status, 200, "{body}");
    user
}

async fn act(app: &TestApp, user: &TestUser, transfer_id: i64, action: &str) -> (reqwest::StatusCode, Value) {
    app.post(&format!("/v1/transfers/{transfer_id}/{action}"), Some(&user.token), json!({})).await
}

async fn run_expiry(app: &TestApp) -> Value {
    let (status, body) =
        app.request(reqwest::Method::POST, "/admin/jobs/pending-expiry/run", Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn time(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

async fn history(app: &TestApp, user: &TestUser) -> Vec<Value> {
    let (status, body) =
        app.get(&format!("/v1/accounts/{}/history/naive?limit=200", user.main_account_id), Some(&user.token)).await;
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().unwrap().clone()
}

fn kinds(entries: &[Value]) -> Vec<(String, String, i64)> {
    entries
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["direction"].as_str().unwrap().to_owned(),
                e["amount"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn scenario_15_a_pending_transfer_holds_the_amount_and_the_next_one_tops_up() {
    let app = spawn_app().await;
    let alice = confirming(&app, "alice", 30_000).await;
    let bob = app.signup("bob").await;

    let (status, transfer) = send(&app, &alice, bob.main_account_id, 20_000).await;
    assert_eq!(status, 201, "{transfer}");
    assert_eq!(transfer["status"], json!("pending"));
    assert_eq!(time(&transfer["expires_at"]) - time(&transfer["created_at"]), Duration::hours(72));
    assert_eq!(transfer["resolved_at"], Value::Null);
    let main = app.account(&alice, alice.main_account_id).await;
    assert_eq!(
        (main["balance"].as_i64(), main["pending_out"].as_i64(), main["available"].as_i64()),
        (Some(30_000), Some(20_000), Some(10_000))
    );
    assert_eq!(app.balance(&bob).await, 0);

    let (status, second) = send(&app, &alice, bob.main_account_id, 15_000).await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["auto_charged"], json!(10_000));
    assert_eq!(app.account(&alice, alice.main_account_id).await["available"], json!(5_000));

    // The receiver sees it among incoming pending transfers.
    let (status, listed) = app.get("/v1/transfers?direction=incoming&status=pending", Some(&bob.token)).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["transfers"].as_array().unwrap().len(), 2);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn accepting_credits_once_and_a_second_accept_is_409() {
    let app = spawn_app().await;
    let alice = confirming(&app, "alice", 50_000).await;
    let bob = app.signup("bob").await;
    let (_, transfer) = send(&app, &alice, bob.main_account_id, 20_000).await;
    let id = transfer["id"].as_i64().unwrap();

    let (status, accepted) = act(&app, &bob, id, "accept").await;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["status"], json!("completed"));
    assert!(accepted["resolved_at"].is_string());
    let (status, again) = act(&app, &bob, id, "accept").await;
    assert_problem(status, &again, 409, "invalid-state");
    let (status, late_cancel) = act(&app, &alice, id, "cancel").await;
    assert_problem(status, &late_cancel, 409, "invalid-state");

    assert_eq!(app.balance(&bob).await, 20_000);
    let main = app.account(&alice, alice.main_account_id).await;
    assert_eq!((main["balance"].as_i64(), main["pending_out"].as_i64()), (Some(30_000), Some(0)));
    // Statements: the sender saw the hold leave; the receiver gets the transfer on accept.
    assert_eq!(kinds(&history(&app, &bob).await), vec![("transfer".into(), "in".into(), 20_000)]);
    let alice_entries = history(&app, &alice).await;
    assert_eq!(alice_entries[0]["kind"], json!("pending"));
    assert_eq!(alice_entries[0]["balance_after"], json!(30_000));
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn rejecting_and_cancelling_give_the_money_back_with_a_refund_entry() {
    let app = spawn_app().await;
    let alice = confirming(&app, "alice", 50_000).await;
    let bob = app.signup("bob").await;
    let (_, first) = send(&app, &alice, bob.main_account_id, 20_000).await;
    let (_, second) = send(&app, &alice, bob.main_account_id, 5_000).await;
    assert_eq!(app.account(&alice, alice.main_account_id).await["available"], json!(25_000));

    let (status, rejected) = act(&app, &bob, first["id"].as_i64().unwrap(), "reject").await;
    assert_eq!(status, 200, "{rejected}");
    assert_eq!(rejected["status"], json!("rejected"));
    let (status, canceled) = act(&app, &alice, second["id"].as_i64().unwrap(), "cancel").await;
    assert_eq!(status, 200, "{canceled}");
    assert_eq!(canceled["status"], json!("canceled"));

    let main = app.account(&alice, alice.main_account_id).await;
    assert_eq!((main["balance"].as_i64(), main["available"].as_i64()), (Some(50_000), Some(50_000)));
    assert_eq!(app.balance(&bob).await, 0);
    let entries = history(&app, &alice).await;
    assert_eq!(
        kinds(&entries[..4]),
        vec![
            ("refund".into(), "in".into(), 5_000),
            ("refund".into(), "in".into(), 20_000),
            ("pending".into(), "out".into(), 5_000),
            ("pending".into(), "out".into(), 20_000),
        ]
    );
    assert_eq!(entries[0]["balance_after"], json!(50_000));
    assert_eq!(entries[1]["balance_after"], json!(45_000));
    assert!(history(&app, &bob).await.is_empty());
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn scenario_17_only_the_right_party_may_act_and_others_get_404() {
    let app = spawn_app().await;
    let alice = confirming(&app, "alice", 50_000).await;
    let bob = app.signup("bob").await;
    let mallory = app.signup("mallory").await;
    let (_, transfer) = send(&app, &alice, bob.main_account_id, 20_000).await;
    let id = transfer["id"].as_i64().unwrap();

    for (user, action) in [(&alice, "accept"), (&alice, "reject"), (&bob, "cancel")] {
        let (status, body) = act(&app, user, id, action).await;
        assert_problem(status, &body, 404, "not-found");
    }
    for action in ["accept", "reject", "cancel"] {
        let (status, body) = act(&app, &mallory, id, action).await;
        assert_problem(status, &body, 404, "not-found");
        let (status, body) = act(&app, &bob, id + 1000, action).await;
        assert_problem(status, &body, 404, "not-found");
    }
    let (status, body) = app.get(&format!("/v1/transfers/{id}"), Some(&mallory.token)).await;
    assert_problem(status, &body, 404, "not-found");
    let (status, body) = app.get(&format!("/v1/transfers/{id}"), Some(&bob.token)).await;
    assert_eq!((status.as_u16(), body["status"].clone()), (200, json!("pending")));
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn scenario_16_accept_racing_cancel_lets_exactly_one_win_every_time() {
    let app = spawn_app().await;
    let alice = confirming(&app, "alice", 1_000_000).await;
    let bob = app.signup("bob").await;
    let rounds = 40;
    let mut accepted = 0;
    for _ in 0..rounds {
        let (status, transfer) = send(&app, &alice, bob.main_account_id, 1_000).await;
        assert_eq!(status, 201, "{transfer}");
        let id = transfer["id"].as_i64().unwrap();
        let (accept, cancel, reject) =
            tokio::join!(act(&app, &bob, id, "accept"), act(&app, &alice, id, "cancel"), act(&app, &bob, id, "reject"));
        let outcomes = [accept, cancel, reject];
        let winners: Vec<&Value> = outcomes.iter().filter(|(status, _)| *status == 200).map(|(_, body)| body).collect();
        assert_eq!(winners.len(), 1, "{outcomes:?}");
        for (status, body) in outcomes.iter().filter(|(status, _)| *status != 200) {
            assert_problem(*status, body, 409, "invalid-state");
        }
        if winners[0]["status"] == json!("completed") {
            accepted += 1;
        }
    }
    assert_eq!(app.balance(&bob).await, accepted * 1_000);
    let main = app.account(&alice, alice.main_account_id).await;
    assert_eq!(main["balance"].as_i64(), Some(1_000_000 - accepted * 1_000));
    assert_eq!(main["pending_out"], json!(0));
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn scenario_18_a_transfer_expires_at_72_hours_once_and_cannot_be_accepted_after() {
    let app = spawn_app().await;
    let alice = confirming(&app, "alice", 50_000).await;
    let bob = app.signup("bob").await;
    let (_, early) = send(&app, &alice, bob.main_account_id, 20_000).await;
    let created = time(&early["created_at"]);
    app.set_clock(&(created + Duration::hours(1)).to_rfc3339()).await;
    let (_, later) = send(&app, &alice, bob.main_account_id, 7_000).await;

    app.set_clock(&(created + Duration::hours(72) - Duration::seconds(1)).to_rfc3339()).await;
    assert_eq!(run_expiry(&app).await["processed"], json!(0));
    // Sessions last 24 hours of the clock.
    let alice = TestUser { token: app.login("alice").await, ..alice };
    let bob = TestUser { token: app.login("bob").await, ..bob };
    let (_, body) = app.get(&format!("/v1/transfers/{}", early["id"]), Some(&alice.token)).await;
    assert_eq!(body["status"], json!("pending"));

    // At 72:00 it can no longer be accepted, whether or not the job has run.
    app.set_clock(&(created + Duration::hours(72)).to_rfc3339()).await;
    let (status, body) = act(&app, &bob, early["id"].as_i64().unwrap(), "accept").await;
    assert_problem(status, &body, 409, "invalid-state");
    let (status, body) = act(&app, &alice, early["id"].as_i64().unwrap(), "cancel").await;
    assert_problem(status, &body, 409, "invalid-state");

    let (first, second) = tokio::join!(run_expiry(&app), run_expiry(&app));
    assert_eq!(first["processed"].as_i64().unwrap() + second["processed"].as_i64().unwrap(), 1);
    assert_eq!(run_expiry(&app).await["processed"], json!(0));
    let (_, body) = app.get(&format!("/v1/transfers/{}", early["id"]), Some(&alice.token)).await;
    assert_eq!(body["status"], json!("expired"));
    assert_eq!(time(&body["resolved_at"]), created + Duration::hours(72));
    let main = app.account(&alice, alice.main_account_id).await;
    assert_eq!((main["balance"].as_i64(), main["available"].as_i64()), (Some(50_000), Some(43_000)));
    let entries = history(&app, &alice).await;
    assert_eq!(kinds(&entries[..1]), vec![("refund".into(), "in".into(), 20_000)]);
    assert_eq!(entries[0]["balance_after"], json!(43_000));
    assert_eq!(
        entries[0]["counterparty"],
        json!({"account_id": bob.main_account_id, "name": "bob", "user_name": "bob"})
    );

    // The later one is still pending and can be accepted.
    let (status, body) = act(&app, &bob, later["id"].as_i64().unwrap(), "accept").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.balance(&bob).await, 7_000);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn expiry_refunds_many_transfers_per_account_with_correct_running_balances() {
    let app = spawn_app().await;
    let senders = join_all((0..3).map(|i| {
        let app = &app;
        async move { confirming(app, &format!("sender{i}"), 100_000).await }
    }))
    .await;
    let receivers = join_all((0..2).map(|i| {
        let app = &app;
        async move { app.signup(&format!("receiver{i}")).await }
    }))
    .await;
    let created = app.clock_now().await;
    for sender in &senders {
        for (n, receiver) in receivers.iter().enumerate() {
            for amount in [1_000 + n as i64, 2_000] {
                let (status, body) = send(&app, sender, receiver.main_account_id, amount).await;
                assert_eq!(status, 201, "{body}");
            }
        }
    }
    app.set_clock(&(created + Duration::hours(80)).to_rfc3339()).await;
    // Chunks of the default size; 12 transfers in one.
    assert_eq!(run_expiry(&app).await["processed"], json!(12));
    for sender in &senders {
        let sender = TestUser { token: app.login(&sender.name).await, ..sender.clone() };
        let main = app.account(&sender, sender.main_account_id).await;
        assert_eq!((main["available"].as_i64(), main["pending_out"].as_i64()), (Some(100_000), Some(0)));
        let entries = history(&app, &sender).await;
        let refunds: Vec<&Value> = entries.iter().filter(|e| e["kind"] == json!("refund")).collect();
        assert_eq!(refunds.len(), 4);
        // Newest first: the last refund brings the account back to everything.
        assert_eq!(refunds[0]["balance_after"], json!(100_000));
        let mut expected = 100_000;
        for refund in &refunds {
            assert_eq!(refund["balance_after"].as_i64(), Some(expected));
            expected -= refund["amount"].as_i64().unwrap();
        }
        assert_eq!(expected, 100_000 - 6_001);
    }
    app.assert_audit_ok().await;
}

async fn notification_kinds(app: &TestApp, user: &TestUser) -> Vec<String> {
    let (status, body) = app.get("/v1/notifications", Some(&user.token)).await;
    assert_eq!(status, 200, "{body}");
    body["notifications"].as_array().unwrap().iter().map(|n| n["kind"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_receiver_is_told_of_a_hold_and_of_money_received_and_the_sender_of_an_expiry() {
    let app = spawn_app().await;
    let alice = confirming(&app, "alice", 50_000).await;
    let bob = app.signup("bob").await;
    let (_, accepted) = send(&app, &alice, bob.main_account_id, 1_000).await;
    let (_, left) = send(&app, &alice, bob.main_account_id, 2_000).await;
    assert_eq!(act(&app, &bob, accepted["id"].as_i64().unwrap(), "accept").await.0, 200);
    assert_eq!(
        notification_kinds(&app, &bob).await,
        vec!["pending_transfer_received", "pending_transfer_received", "transfer_received"]
    );
    let created = time(&left["created_at"]);
    app.set_clock(&(created + Duration::hours(72)).to_rfc3339()).await;
    assert_eq!(run_expiry(&app).await["processed"], json!(1));
    let alice = TestUser { token: app.login("alice").await, ..alice };
    let (_, body) = app.get("/v1/notifications", Some(&alice.token)).await;
    let expired = &body["notifications"][0];
    assert_eq!(expired["kind"], json!("pending_transfer_expired"));
    assert_eq!(expired["payload"]["transfer_id"], left["id"]);
    app.assert_audit_ok().await;
}
