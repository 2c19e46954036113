//! Declining a share of a split bill: the requester hears of it, the settlement completes once
//! nothing is left requested, and a decline racing a payment of the same share loses or wins
//! whole.

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;
use crate::settlements::{created, pay};

pub async fn decline(app: &TestApp, user: &TestUser, settlement_id: i64) -> (StatusCode, Value) {
    app.request(Method::POST, &format!("/v1/settlements/{settlement_id}/decline"), Some(&user.token), None).await
}

fn share_of<'a>(settlement: &'a Value, user: &TestUser) -> &'a Value {
    settlement["shares"].as_array().unwrap().iter().find(|share| share["user_id"] == json!(user.id)).unwrap()
}

async fn notifications_of_kind(app: &TestApp, user: &TestUser, kind: &str) -> Vec<Value> {
    let (status, body) = app.get("/v1/notifications?limit=200", Some(&user.token)).await;
    assert_eq!(status, 200, "{body}");
    body["notifications"].as_array().unwrap().iter().filter(|n| n["kind"] == json!(kind)).cloned().collect()
}

#[tokio::test]
async fn a_declined_share_is_never_paid_the_requester_is_told_and_the_settlement_completes() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.funded("bob", 50_000).await;
    let carol = app.funded("carol", 50_000).await;
    let stranger = app.funded("stranger", 0).await;
    let settlement = created(&app, &alice, 30_000, "equal", &[&bob, &carol], true).await;
    let id = settlement["id"].as_i64().unwrap();

    let (status, declined) = decline(&app, &bob, id).await;
    assert_eq!(status, 200, "{declined}");
    assert_eq!(declined["id"], json!(id));
    assert_eq!(share_of(&declined, &bob)["status"], json!("declined"));
    assert_eq!(share_of(&declined, &bob)["paid_at"], Value::Null);
    assert_eq!(share_of(&declined, &carol)["status"], json!("requested"));
    assert_eq!(declined["status"], json!("open"));
    // The shares still sum to the total: the declined one keeps its amount.
    let amounts: i64 = declined["shares"].as_array().unwrap().iter().map(|s| s["amount"].as_i64().unwrap()).sum();
    assert_eq!(amounts, 30_000);

    let told = notifications_of_kind(&app, &alice, "settlement_declined").await;
    assert_eq!(told.len(), 1, "{told:?}");
    let payload = &told[0]["payload"];
    assert_eq!(payload["settlement_id"], json!(id));
    assert_eq!(payload["participant_id"], json!(bob.id));
    assert_eq!(payload["participant_name"], json!("bob"));
    assert_eq!(payload["amount"], json!(10_000));
    assert_eq!(payload["total"], json!(30_000));
    assert_eq!(payload["memo"], json!("dinner"));
    assert!(notifications_of_kind(&app, &bob, "settlement_declined").await.is_empty());

    // Declining twice, or paying what was declined: 409, nothing moves.
    let (status, body) = decline(&app, &bob, id).await;
    assert_problem(status, &body, 409, "invalid-state");
    let (status, body) = pay(&app, &bob, id).await;
    assert_problem(status, &body, 409, "invalid-state");
    assert_eq!(app.balance(&bob).await, 50_000);
    // The requester, and anyone without a share.
    let (status, body) = decline(&app, &alice, id).await;
    assert_problem(status, &body, 409, "invalid-state");
    for settlement_id in [id, 999_999, 0, -1] {
        let (status, body) = decline(&app, &stranger, settlement_id).await;
        assert_problem(status, &body, 404, "not-found");
    }
    let (status, body) = app.request(Method::POST, "/v1/settlements/abc/decline", Some(&stranger.token), None).await;
    assert_problem(status, &body, 404, "not-found");

    // The last requested share paid: completed, with bob's share still declined.
    let (status, paid) = pay(&app, &carol, id).await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["status"], json!("completed"), "{paid}");
    assert_eq!(share_of(&paid, &bob)["status"], json!("declined"));
    assert_eq!(app.balance(&alice).await, 10_000);
    // A paid share cannot be declined.
    let (status, body) = decline(&app, &carol, id).await;
    assert_problem(status, &body, 409, "invalid-state");
    assert_eq!(notifications_of_kind(&app, &alice, "settlement_declined").await.len(), 1);

    // Every participant declining completes a settlement too, with nothing paid.
    let settlement = created(&app, &alice, 5_000, "random", &[&bob, &carol], false).await;
    let id = settlement["id"].as_i64().unwrap();
    assert_eq!(decline(&app, &carol, id).await.0, 200);
    let (status, last) = decline(&app, &bob, id).await;
    assert_eq!(status, 200, "{last}");
    assert_eq!(last["status"], json!("completed"), "{last}");
    assert!(last["completed_at"].is_string(), "{last}");
    let (_, seen) = app.get(&format!("/v1/settlements/{id}"), Some(&alice.token)).await;
    assert_eq!(seen, last);
    assert_eq!(notifications_of_kind(&app, &alice, "settlement_declined").await.len(), 3);
    assert_eq!(app.balance(&alice).await, 10_000);
    app.assert_audit_ok().await;
}

/// Pay and decline of the same share at once: exactly one of them wins; the other answers 409
/// and leaves no trace (no money moved for a declined share, no notice of a decline for a
/// paid one).
#[tokio::test]
async fn a_payment_and_a_decline_of_the_same_share_at_once_end_with_exactly_one_of_them() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let payers = join_all((0..12).map(|i| app.funded(format!("payer{i}"), 100_000))).await;
    let mut settlements = Vec::new();
    for payer in &payers {
        let settlement = created(&app, &alice, 4_000, "equal", &[payer], false).await;
        settlements.push(settlement["id"].as_i64().unwrap());
    }
    let shared = &app;
    let races = join_all(payers.iter().zip(&settlements).map(|(payer, id)| async move {
        let (paid, declined) = tokio::join!(pay(shared, payer, *id), decline(shared, payer, *id));
        (paid, declined)
    }))
    .await;

    let mut paid_count = 0;
    for ((payer, id), ((paid_status, paid), (declined_status, declined))) in payers.iter().zip(&settlements).zip(races)
    {
        let (_, settlement) = app.get(&format!("/v1/settlements/{id}"), Some(&alice.token)).await;
        assert_eq!(settlement["status"], json!("completed"), "{settlement}");
        let share = share_of(&settlement, payer)["status"].clone();
        match (paid_status.as_u16(), declined_status.as_u16()) {
            (200, 409) => {
                assert_eq!(share, json!("paid"), "{paid}");
                assert_eq!(declined["code"], json!("invalid-state"));
                assert_eq!(app.balance(payer).await, 96_000);
                paid_count += 1;
            }
            (409, 200) => {
                assert_eq!(share, json!("declined"), "{declined}");
                assert_eq!(paid["code"], json!("invalid-state"));
                assert_eq!(app.balance(payer).await, 100_000);
            }
            other => panic!("settlement {id}: {other:?}: {paid} / {declined}"),
        }
    }
    let declines = notifications_of_kind(&app, &alice, "settlement_declined").await;
    assert_eq!(declines.len(), payers.len() - paid_count);
    assert_eq!(app.balance(&alice).await, 4_000 * paid_count as i64);
    println!("pay/decline races: {paid_count} paid, {} declined", payers.len() - paid_count);
    app.assert_audit_ok().await;
}
