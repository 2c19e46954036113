//! Notifications over HTTP: split bills for participants, money received for the requester,
//! oldest first after an id, each user seeing only their own.

use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::join_all;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::settlements::{created, pay};

async fn notifications(app: &TestApp, user: &TestUser, query: &str) -> Vec<Value> {
    let (status, body) = app.get(&format!("/v1/notifications{query}"), Some(&user.token)).await;
    assert_eq!(status, 200, "{body}");
    body["notifications"].as_array().unwrap().clone()
}

fn ids(notifications: &[Value]) -> Vec<i64> {
    notifications.iter().map(|notification| notification["id"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn participants_are_asked_to_pay_and_the_requester_hears_of_each_payment() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let carol = app.signup("carol").await;
    let settlement = created(&app, &alice, 20_000, "equal", &[&bob, &carol], true).await;
    let id = settlement["id"].as_i64().unwrap();

    for (user, amount) in [(&bob, 6_667), (&carol, 6_666)] {
        let found = notifications(&app, user, "").await;
        assert_eq!(found.len(), 1, "{found:?}");
        let notification = &found[0];
        assert_eq!(notification["kind"], json!("settlement_requested"));
        assert!(notification["created_at"].is_string());
        assert_eq!(
            notification["payload"],
            json!({"settlement_id": id, "requester_id": alice.id, "requester_name": "alice", "amount": amount,
                   "total": 20_000, "mode": "equal", "memo": "dinner"})
        );
    }
    // The requester's own share is not a request to themselves.
    assert_eq!(notifications(&app, &alice, "").await, Vec::<Value>::new());

    let (status, body) = pay(&app, &bob, id).await;
    assert_eq!(status, 200, "{body}");
    let found = notifications(&app, &alice, "").await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["kind"], json!("transfer_received"));
    assert_eq!(found[0]["payload"]["amount"], json!(6_667));
    assert_eq!(found[0]["payload"]["from_name"], json!("bob"));
    assert_eq!(found[0]["payload"]["memo"], json!("dinner"));
    let transfer_id = body["shares"][1]["transfer_id"].clone();
    assert_eq!(found[0]["payload"]["transfer_id"], transfer_id);

    let (status, _) = pay(&app, &carol, id).await;
    assert_eq!(status, 200);
    let found = notifications(&app, &alice, "").await;
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[1]["payload"]["amount"], json!(6_666));
    // Paying sends nothing to the payer.
    assert_eq!(notifications(&app, &bob, "").await.len(), 1);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn notifications_come_oldest_first_after_the_given_id_in_pages() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let (status, body) = app.charge(&alice, 100_000).await;
    assert_eq!(status, 201, "{body}");
    // Transfers and split bills, interleaved: seven notifications for bob.
    for round in 0..7 {
        if round % 2 == 0 {
            let (status, body) = app
                .post(
                    "/v1/transfers",
                    Some(&alice.token),
                    json!({"to_account_id": bob.main_account_id, "amount": 1_000 + round}),
                )
                .await;
            assert_eq!(status, 201, "{body}");
        } else {
            created(&app, &alice, 1_000 + round, "random", &[&bob], false).await;
        }
    }
    let all = notifications(&app, &bob, "").await;
    let kinds: Vec<&str> = all.iter().map(|n| n["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "transfer_received",
            "settlement_requested",
            "transfer_received",
            "settlement_requested",
            "transfer_received",
            "settlement_requested",
            "transfer_received"
        ]
    );
    let all_ids = ids(&all);
    assert!(all_ids.windows(2).all(|pair| pair[0] < pair[1]), "{all_ids:?}");
    for (round, notification) in all.iter().enumerate() {
        let expected_amount = 1_000 + round as i64;
        let amount =
            if round % 2 == 0 { &notification["payload"]["amount"] } else { &notification["payload"]["total"] };
        assert_eq!(amount, &json!(expected_amount), "{notification}");
    }

    // Pages of three, each after the last id seen: every notification once, in order.
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = notifications(&app, &bob, &format!("?after={after}&limit=3")).await;
        assert!(page.len() <= 3);
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap()["id"].as_i64().unwrap();
        seen.extend(ids(&page));
    }
    assert_eq!(seen, all_ids);
    assert_eq!(ids(&notifications(&app, &bob, &format!("?after={}", all_ids[4])).await), all_ids[5..].to_vec());
    assert_eq!(notifications(&app, &bob, "?limit=200").await.len(), 7);
    assert_eq!(notifications(&app, &bob, "?after=9223372036854775807").await.len(), 0);

    // Alice was told nothing; she cannot see bob's.
    assert_eq!(notifications(&app, &alice, "").await, Vec::<Value>::new());

    for query in ["?limit=0", "?limit=201", "?limit=-1", "?limit=ten", "?after=-1", "?after=abc", "?after=1.5"] {
        let (status, body) = app.get(&format!("/v1/notifications{query}"), Some(&bob.token)).await;
        assert_problem(status, &body, 422, "validation-failed");
    }
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn notifications_written_concurrently_are_all_seen_by_a_reader_polling_after_the_last_id() {
    let app = spawn_app().await;
    let app = &app;
    let bob = &app.signup("bob").await;
    let requesters = join_all((0..12).map(|i| async move {
        let user = app.signup(&format!("requester{i}")).await;
        let (status, body) = app.charge(&user, 50_000).await;
        assert_eq!(status, 201, "{body}");
        user
    }))
    .await;

    // Split bills (written by their own transactions) and transfers (by ledger batches) to bob
    // at once, while bob polls after the last id he has seen.
    let writing = AtomicBool::new(true);
    let writers = async {
        join_all(requesters.iter().map(|requester| async move {
            for round in 0..4 {
                if round % 2 == 0 {
                    created(app, requester, 10_000, "equal", &[bob], false).await;
                } else {
                    let body = json!({"to_account_id": bob.main_account_id, "amount": 1_000});
                    let (status, body) = app.post("/v1/transfers", Some(&requester.token), body).await;
                    assert_eq!(status, 201, "{body}");
                }
            }
        }))
        .await;
        writing.store(false, Ordering::SeqCst);
    };
    let poller = async {
        let mut seen = Vec::new();
        loop {
            let still_writing = writing.load(Ordering::SeqCst);
            let after = seen.last().copied().unwrap_or(0);
            let page = notifications(app, bob, &format!("?after={after}&limit=5")).await;
            seen.extend(ids(&page));
            if page.is_empty() && !still_writing {
                break seen;
            }
        }
    };
    let ((), seen) = tokio::join!(writers, poller);
    let all = ids(&notifications(app, bob, "?limit=200").await);
    assert_eq!(all.len(), 48);
    assert_eq!(seen, all, "polling after the last id seen skipped none and saw none twice");
    app.assert_audit_ok().await;
}
