//! Transfers: auto top-up, the receiver's limit, the hot account, storms, two servers.

use futures::future::join_all;
use rand::Rng;
use serde_json::{json, Value};

use crate::helpers::*;

pub async fn send(app: &TestApp, from: &TestUser, to_account_id: i64, amount: i64) -> (reqwest::StatusCode, Value) {
    app.post("/v1/transfers", Some(&from.token), json!({"to_account_id": to_account_id, "amount": amount})).await
}

#[tokio::test]
async fn scenario_6_money_received_never_uses_the_receivers_limit() {
    let app = spawn_app().await;
    let receiver = app.signup("receiver").await;
    let senders = join_all((0..40).map(|i| app.funded(format!("sender{i}"), 100_000))).await;
    let results = join_all(senders.iter().map(|sender| send(&app, sender, receiver.main_account_id, 100_000))).await;
    for (status, body) in &results {
        assert_eq!(*status, 201, "{body}");
        assert_eq!(body["auto_charged"], json!(0));
    }
    assert_eq!(app.balance(&receiver).await, 4_000_000);
    assert_eq!(app.me(&receiver).await["daily_charge"]["used"], json!(0));
    // The receiver can still top up their whole limit today.
    assert_eq!(app.charge(&receiver, 3_000_000).await.0, 201);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn scenarios_8_to_10_auto_top_up_in_units_of_ten_thousand() {
    let app = spawn_app().await;
    let exact = app.funded("exact", 20_000).await;
    let empty = app.signup("empty").await;
    let short = app.funded("short", 5_000).await;
    let friend = app.signup("friend").await;

    let (status, body) = send(&app, &exact, friend.main_account_id, 20_000).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["auto_charged"], json!(0));
    assert_eq!(app.balance(&exact).await, 0);

    let (status, body) = send(&app, &empty, friend.main_account_id, 10_000).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["auto_charged"], json!(10_000));
    assert_eq!(app.balance(&empty).await, 0);
    assert_eq!(app.me(&empty).await["daily_charge"]["used"], json!(10_000));

    // 10,001 short needs two units.
    let (status, body) = send(&app, &empty, friend.main_account_id, 10_001).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["auto_charged"], json!(20_000));
    assert_eq!(app.balance(&empty).await, 9_999);

    let (status, body) = send(&app, &short, friend.main_account_id, 3_500_000).await;
    assert_problem(status, &body, 422, "daily-limit-exceeded");
    assert_eq!(app.balance(&short).await, 5_000);
    assert_eq!(app.me(&short).await["daily_charge"]["used"], json!(5_000));
    assert_eq!(app.balance(&friend).await, 40_001);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn transfers_go_only_to_another_users_main_account() {
    let app = spawn_app().await;
    let alice = app.funded("alice", 50_000).await;
    let bob = app.signup("bob").await;
    let (_, savings) = app.post("/v1/accounts", Some(&bob.token), json!({"kind": "savings", "product": "free"})).await;
    let (_, own_savings) =
        app.post("/v1/accounts", Some(&alice.token), json!({"kind": "savings", "product": "free"})).await;
    for target in
        [alice.main_account_id, savings["id"].as_i64().unwrap(), own_savings["id"].as_i64().unwrap(), 1, 2, 999_999]
    {
        let (status, body) = send(&app, &alice, target, 1_000).await;
        assert_problem(status, &body, 422, "validation-failed");
    }
    for body in [
        json!({"to_account_id": bob.main_account_id, "amount": 0}),
        json!({"to_account_id": bob.main_account_id, "amount": -5}),
        json!({"to_account_id": bob.main_account_id, "amount": 1_000_000_000_001i64}),
        json!({"to_account_id": bob.main_account_id, "amount": 10, "memo": "m".repeat(65)}),
        json!({"to_account_id": bob.main_account_id, "amount": 10, "display_name": "d".repeat(65)}),
        json!({"to_account_id": "x", "amount": 10}),
        json!({"amount": 10}),
    ] {
        let (status, response) = app.post("/v1/transfers", Some(&alice.token), body.clone()).await;
        assert_problem(status, &response, 422, "validation-failed");
    }
    assert_eq!(app.balance(&alice).await, 50_000);
    assert_eq!(app.balance(&bob).await, 0);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn a_transfer_is_visible_to_both_parties_only_and_lists_page_by_cursor() {
    let app = spawn_app().await;
    let alice = app.funded("alice", 100_000).await;
    let bob = app.signup("bob").await;
    let eve = app.signup("eve").await;
    let (status, created) = app
        .post(
            "/v1/transfers",
            Some(&alice.token),
            json!({"to_account_id": bob.main_account_id, "amount": 1_000, "display_name": "Kim", "memo": "lunch"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], json!("completed"));
    assert_eq!(created["display_name"], json!("Kim"));
    assert_eq!(created["memo"], json!("lunch"));
    assert_eq!(created["from_account_id"], json!(alice.main_account_id));
    assert_eq!(created["expires_at"], Value::Null);
    let id = created["id"].as_i64().unwrap();
    for user in [&alice, &bob] {
        let (status, body) = app.get(&format!("/v1/transfers/{id}"), Some(&user.token)).await;
        assert_eq!(status, 200);
        assert_eq!(body, created);
    }
    let (status, body) = app.get(&format!("/v1/transfers/{id}"), Some(&eve.token)).await;
    assert_problem(status, &body, 404, "not-found");

    for _ in 0..4 {
        assert_eq!(send(&app, &alice, bob.main_account_id, 1_000).await.0, 201);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/v1/transfers?direction=outgoing&limit=2".to_owned(),
            Some(cursor) => format!("/v1/transfers?direction=outgoing&limit=2&cursor={cursor}"),
        };
        let (status, body) = app.get(&path, Some(&alice.token)).await;
        assert_eq!(status, 200, "{body}");
        seen.extend(body["transfers"].as_array().unwrap().iter().map(|t| t["id"].as_i64().unwrap()));
        match body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    assert!(seen.windows(2).all(|pair| pair[0] > pair[1]), "newest first: {seen:?}");
    let (_, incoming) = app.get("/v1/transfers?direction=incoming", Some(&bob.token)).await;
    assert_eq!(incoming["transfers"].as_array().unwrap().len(), 5);
    let (_, none) = app.get("/v1/transfers?direction=incoming", Some(&alice.token)).await;
    assert_eq!(none["transfers"].as_array().unwrap().len(), 0);
    for bad in ["direction=sideways", "limit=0", "limit=201", "cursor=zzz", "status=lost"] {
        let (status, body) = app.get(&format!("/v1/transfers?{bad}"), Some(&alice.token)).await;
        assert_problem(status, &body, 422, "validation-failed");
    }
}

#[tokio::test]
async fn scenario_11_a_hundred_senders_to_one_hot_account_all_succeed() {
    let app = spawn_app().await;
    let hot = app.signup("hot").await;
    let senders = join_all((0..100).map(|i| app.funded(format!("s{i}"), 1_000))).await;
    let results = join_all(senders.iter().map(|sender| send(&app, sender, hot.main_account_id, 1_000))).await;
    let failures: Vec<_> = results.iter().filter(|(status, _)| *status != 201).collect();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(app.balance(&hot).await, 100_000);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn scenario_12_opposite_transfers_concurrently_end_where_they_started() {
    let app = spawn_app().await;
    let a = app.funded("a", 100_000).await;
    let b = app.funded("b", 100_000).await;
    let a_to_b = (0..100).map(|_| send(&app, &a, b.main_account_id, 1_000));
    let b_to_a = (0..100).map(|_| send(&app, &b, a.main_account_id, 1_000));
    let (first, second) = tokio::join!(join_all(a_to_b), join_all(b_to_a));
    for (status, body) in first.iter().chain(second.iter()) {
        assert_eq!(*status, 201, "{body}");
        assert_eq!(body["auto_charged"], json!(0));
    }
    assert_eq!(app.balance(&a).await, 100_000);
    assert_eq!(app.balance(&b).await, 100_000);
    app.assert_audit_ok().await;
}

/// Random transfers among a group, concurrently, against the given servers: afterwards the
/// group holds exactly what it was charged (directly or by auto top-up), and the audit holds.
async fn storm(app: &TestApp, bases: &[String]) {
    let members = join_all((0..12).map(|i| app.funded(format!("m{i}"), 20_000))).await;
    let requests: Vec<(usize, usize, i64, usize)> = {
        let mut rng = rand::thread_rng();
        (0..400)
            .map(|_| {
                let from = rng.gen_range(0..members.len());
                let mut to = rng.gen_range(0..members.len());
                if to == from {
                    to = (to + 1) % members.len();
                }
                (from, to, rng.gen_range(1..30_000), rng.gen_range(0..bases.len()))
            })
            .collect()
    };
    let results = join_all(requests.iter().map(|(from, to, amount, server)| {
        let from = &members[*from];
        let to = &members[*to];
        let url = format!("{}/v1/transfers", bases[*server]);
        let client = app.client.clone();
        async move {
            let response = client
                .post(url)
                .bearer_auth(&from.token)
                .json(&json!({"to_account_id": to.main_account_id, "amount": amount}))
                .send()
                .await
                .unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    }))
    .await;
    let mut succeeded = 0;
    for (status, body) in &results {
        match status.as_u16() {
            201 => succeeded += 1,
            // A member may run out of daily limit; that must be the only refusal.
            422 => assert_eq!(body["code"], json!("daily-limit-exceeded"), "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(succeeded > 300, "only {succeeded} of 400 transfers succeeded");
    let mut held = 0;
    let mut charged = 0;
    for member in &members {
        held += app.balance(member).await;
        charged += app.me(member).await["daily_charge"]["used"].as_i64().unwrap();
    }
    assert_eq!(held, charged, "the group holds exactly what it was charged");
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn a_random_storm_of_transfers_keeps_the_group_total() {
    let app = spawn_app().await;
    storm(&app, std::slice::from_ref(&app.base)).await;
    // Transfers that topped up were first tried in batches without the external account, and
    // ran again in one that locks it (once each, with the top-up counted once: see above).
    let again = metric_at(&app.client, &app.base, "minipay_ledger_commands_again_total").await;
    assert!(again > 0, "no transfer was run again for its top-up");
}

#[tokio::test]
async fn the_same_storm_against_two_server_processes_sharing_the_database() {
    let app = spawn_app().await;
    let second = spawn_server_process(&app).await;
    storm(&app, &[app.base.clone(), second.base.clone()]).await;
}
