//! Who may reach whom: friends (one-way contacts), who may ask for payment, and blocks, which
//! refuse a blocked user's transfers and split-bill requests exactly as a target that does not
//! exist is refused, so that nothing new of theirs reaches the blocker.

use chrono::Duration;
use minipay::domain::social::SocialLimits;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

use crate::helpers::*;
use crate::settlements::create;
use crate::transfers::send;

/// No account and no user has this id.
const NOBODY: i64 = 999_999_999;

async fn add_friend(app: &TestApp, user: &TestUser, name: &str) -> (StatusCode, Value) {
    app.post("/v1/friends", Some(&user.token), json!({"name": name})).await
}

async fn friends(app: &TestApp, user: &TestUser) -> Vec<Value> {
    let (status, body) = app.get("/v1/friends", Some(&user.token)).await;
    assert_eq!(status, 200, "{body}");
    body["friends"].as_array().unwrap().clone()
}

async fn block(app: &TestApp, user: &TestUser, user_id: i64) -> (StatusCode, Value) {
    app.post("/v1/blocks", Some(&user.token), json!({"user_id": user_id})).await
}

async fn blocks(app: &TestApp, user: &TestUser) -> Vec<Value> {
    let (status, body) = app.get("/v1/blocks", Some(&user.token)).await;
    assert_eq!(status, 200, "{body}");
    body["blocks"].as_array().unwrap().clone()
}

async fn delete(app: &TestApp, user: &TestUser, path: &str) -> (StatusCode, Value) {
    app.request(Method::DELETE, path, Some(&user.token), None).await
}

async fn patch_me(app: &TestApp, user: &TestUser, body: Value) -> (StatusCode, Value) {
    app.request(Method::PATCH, "/v1/me", Some(&user.token), Some(body)).await
}

async fn notifications(app: &TestApp, user: &TestUser) -> Vec<Value> {
    let (status, body) = app.get("/v1/notifications?limit=200", Some(&user.token)).await;
    assert_eq!(status, 200, "{body}");
    body["notifications"].as_array().unwrap().clone()
}

/// A transfer with an `Idempotency-Key`: status and body.
async fn send_with_key(app: &TestApp, from: &TestUser, to_account_id: i64, amount: i64, key: &str) -> (u16, Value) {
    let response = app
        .client
        .post(app.url("/v1/transfers"))
        .bearer_auth(&from.token)
        .header("Idempotency-Key", key)
        .json(&json!({"to_account_id": to_account_id, "amount": amount}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
}

#[tokio::test]
async fn friends_are_added_by_name_listed_with_their_account_and_removed() {
    let app = spawn_app().await;
    let alice = app.funded("alice", 50_000).await;
    let bob = app.signup("bob").await;
    let carol = app.signup("carol").await;

    let (status, added) = add_friend(&app, &alice, "bob").await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added, json!({"user_id": bob.id, "name": "bob", "main_account_id": bob.main_account_id}));
    // Adding twice changes nothing and answers the same body.
    let (status, again) = add_friend(&app, &alice, "bob").await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, added);
    let (status, body) = add_friend(&app, &alice, "carol").await;
    assert_eq!(status, 201, "{body}");

    // Unknown names, the caller, and malformed bodies.
    for name in ["nobody", "", "nul\u{0}name", &"x".repeat(300)] {
        let (status, body) = add_friend(&app, &alice, name).await;
        assert_problem(status, &body, 404, "not-found");
    }
    let (status, body) = add_friend(&app, &alice, "alice").await;
    assert_problem(status, &body, 422, "validation-failed");
    for body in [json!({}), json!({"name": 5}), json!({"name": "bob", "user_id": 7})] {
        let (status, answer) = app.post("/v1/friends", Some(&alice.token), body.clone()).await;
        assert_problem(status, &answer, 422, "validation-failed");
    }

    // By name, each with the account a transfer goes to.
    let list = friends(&app, &alice).await;
    assert_eq!(
        list,
        [
            json!({"user_id": bob.id, "name": "bob", "main_account_id": bob.main_account_id}),
            json!({"user_id": carol.id, "name": "carol", "main_account_id": carol.main_account_id}),
        ]
    );
    // One-way, like a phone's contacts: bob's list is his own.
    assert!(friends(&app, &bob).await.is_empty());

    // A client sends to a friend from the list, without knowing ids beforehand.
    let bobs_account = list.iter().find(|friend| friend["name"] == json!("bob")).unwrap()["main_account_id"].clone();
    let (status, body) = send(&app, &alice, bobs_account.as_i64().unwrap(), 12_000).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(app.balance(&bob).await, 12_000);

    // The list shows current names.
    let (status, body) = patch_me(&app, &bob, json!({"name": "robert"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(friends(&app, &alice).await[1]["name"], json!("robert"));

    let (status, _) = delete(&app, &alice, &format!("/v1/friends/{}", bob.id)).await;
    assert_eq!(status, 204);
    for path in [format!("/v1/friends/{}", bob.id), format!("/v1/friends/{NOBODY}"), "/v1/friends/abc".to_owned()] {
        let (status, body) = delete(&app, &alice, &path).await;
        assert_problem(status, &body, 404, "not-found");
    }
    let list = friends(&app, &alice).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["user_id"], json!(carol.id));
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn the_friend_list_is_bounded_and_a_full_list_changes_nothing() {
    let app = spawn_app_with(|config| {
        config.social_limits = SocialLimits { friends_max: 2, blocks_max: 2, ..config.social_limits };
    })
    .await;
    let alice = app.signup("alice").await;
    for name in ["bob", "carol", "dave"] {
        app.signup(name).await;
    }
    let users: Vec<i64> = {
        let mut ids = Vec::new();
        for name in ["bob", "carol", "dave"] {
            let (_, user) = app.get(&format!("/v1/users/{name}"), Some(&alice.token)).await;
            ids.push(user["id"].as_i64().unwrap());
        }
        ids
    };
    assert_eq!(add_friend(&app, &alice, "bob").await.0, 201);
    assert_eq!(add_friend(&app, &alice, "carol").await.0, 201);
    let (status, body) = add_friend(&app, &alice, "dave").await;
    assert_problem(status, &body, 422, "validation-failed");
    // Someone already listed is still answered as such.
    assert_eq!(add_friend(&app, &alice, "bob").await.0, 200);
    assert_eq!(friends(&app, &alice).await.len(), 2);

    assert_eq!(block(&app, &alice, users[0]).await.0, 201);
    assert_eq!(block(&app, &alice, users[1]).await.0, 201);
    let (status, body) = block(&app, &alice, users[2]).await;
    assert_problem(status, &body, 422, "validation-failed");
    assert_eq!(blocks(&app, &alice).await.len(), 2);

    // Room again once one is removed.
    assert_eq!(delete(&app, &alice, &format!("/v1/friends/{}", users[0])).await.0, 204);
    assert_eq!(add_friend(&app, &alice, "dave").await.0, 201);
    assert_eq!(count(&app, "SELECT count(*) FROM friends").await, 2);
}

#[tokio::test]
async fn friends_only_refuses_a_non_friend_exactly_like_an_unknown_user() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let carol = app.signup("carol").await;

    // The default, shown with the profile.
    assert_eq!(app.me(&bob).await["settlement_requests_from"], json!("everyone"));
    let (status, me) = patch_me(&app, &bob, json!({"settlement_requests_from": "friends"})).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["settlement_requests_from"], json!("friends"));
    assert_eq!(app.me(&bob).await["settlement_requests_from"], json!("friends"));
    assert_eq!(app.me(&bob).await["transfer_mode"], json!("immediate"));
    for value in [json!("nobody"), json!("Friends"), json!(""), json!(1), json!(["friends"])] {
        let (status, body) = patch_me(&app, &bob, json!({"settlement_requests_from": value})).await;
        assert_problem(status, &body, 422, "validation-failed");
    }
    assert_eq!(app.me(&bob).await["settlement_requests_from"], json!("friends"));

    // Alice is not in bob's list (that bob is in hers does not count): the same answer as for
    // a user that does not exist, and nothing is created.
    assert_eq!(add_friend(&app, &alice, "bob").await.0, 201);
    let (status, refused) = create(&app, &alice, 10_000, "equal", &[&bob], false).await;
    assert_problem(status, &refused, 422, "validation-failed");
    let nobody = TestUser { id: NOBODY, ..carol.clone() };
    let (status, unknown) = create(&app, &alice, 10_000, "equal", &[&nobody], false).await;
    assert_eq!(status, 422);
    assert_eq!(refused, unknown);
    // Among others too, and whatever the position.
    let (_, mixed) = create(&app, &alice, 10_000, "equal", &[&carol, &bob], true).await;
    assert_eq!(mixed, unknown);
    assert_eq!(count(&app, "SELECT count(*) FROM settlements").await, 0);
    assert!(notifications(&app, &bob).await.is_empty());
    assert!(notifications(&app, &carol).await.is_empty());

    // Once bob lists alice, she may ask him; carol still may not.
    assert_eq!(add_friend(&app, &bob, "alice").await.0, 201);
    let (status, body) = create(&app, &alice, 10_000, "equal", &[&bob], false).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = create(&app, &carol, 10_000, "equal", &[&bob], false).await;
    assert_eq!((status.as_u16(), &body), (422, &unknown));
    // Transfers are not split-bill requests: anyone may still send bob money.
    let dave = app.funded("dave", 5_000).await;
    let (status, body) = send(&app, &dave, bob.main_account_id, 5_000).await;
    assert_eq!(status, 201, "{body}");

    // Back to everyone.
    let (status, _) = patch_me(&app, &bob, json!({"settlement_requests_from": "everyone"})).await;
    assert_eq!(status, 200);
    let (status, body) = create(&app, &carol, 10_000, "equal", &[&bob], false).await;
    assert_eq!(status, 201, "{body}");
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn a_blocked_user_is_refused_like_a_target_that_does_not_exist_and_reaches_nothing() {
    let app = spawn_app().await;
    let alice = app.funded("alice", 100_000).await;
    let mallory = app.funded("mallory", 100_000).await;
    let bob = app.signup("bob").await;

    let (status, blocked) = block(&app, &alice, mallory.id).await;
    assert_eq!(status, 201, "{blocked}");
    assert_eq!(blocked, json!({"user_id": mallory.id, "name": "mallory"}));
    let (status, again) = block(&app, &alice, mallory.id).await;
    assert_eq!((status.as_u16(), &again), (200, &blocked));
    assert_eq!(blocks(&app, &alice).await, std::slice::from_ref(&blocked));
    // Oneself → 422; no such user → 404; malformed → 422.
    let (status, body) = block(&app, &alice, alice.id).await;
    assert_problem(status, &body, 422, "validation-failed");
    for id in [NOBODY, 0, -1] {
        let (status, body) = block(&app, &alice, id).await;
        assert_problem(status, &body, 404, "not-found");
    }
    for body in [json!({}), json!({"user_id": "7"}), json!({"user_id": mallory.id, "name": "x"})] {
        let (status, answer) = app.post("/v1/blocks", Some(&alice.token), body).await;
        assert_problem(status, &answer, 422, "validation-failed");
    }
    let alices_notifications = notifications(&app, &alice).await;

    // A transfer: the very answer a nonexistent account gets.
    let (status, refused) = send(&app, &mallory, alice.main_account_id, 1_000).await;
    assert_problem(status, &refused, 422, "validation-failed");
    let (_, unknown) = send(&app, &mallory, NOBODY, 1_000).await;
    assert_eq!(refused, unknown);
    // With an Idempotency-Key too, repeats and a key reused for another request included.
    let blocked_answers = [
        send_with_key(&app, &mallory, alice.main_account_id, 1_000, "k1").await,
        send_with_key(&app, &mallory, alice.main_account_id, 1_000, "k1").await,
        send_with_key(&app, &mallory, bob.main_account_id, 1_000, "k1").await,
    ];
    let unknown_answers = [
        send_with_key(&app, &mallory, NOBODY, 1_000, "k2").await,
        send_with_key(&app, &mallory, NOBODY, 1_000, "k2").await,
        send_with_key(&app, &mallory, bob.main_account_id, 1_000, "k2").await,
    ];
    assert_eq!(blocked_answers, unknown_answers);
    assert_eq!(blocked_answers[0], (422, unknown.clone()));
    assert_eq!(blocked_answers[2].1["code"], json!("idempotency-key-reused"));

    // A transfer that would wait for alice: refused the same way.
    let (status, _) = patch_me(&app, &mallory, json!({"transfer_mode": "confirm"})).await;
    assert_eq!(status, 200);
    let (status, pending) = send(&app, &mallory, alice.main_account_id, 1_000).await;
    assert_eq!((status.as_u16(), &pending), (422, &unknown));

    // A split bill naming alice: the answer a nonexistent participant gets.
    let (status, refused) = create(&app, &mallory, 10_000, "equal", &[&alice], false).await;
    assert_problem(status, &refused, 422, "validation-failed");
    let nobody = TestUser { id: NOBODY, ..bob.clone() };
    let (_, unknown_participant) = create(&app, &mallory, 10_000, "equal", &[&nobody], false).await;
    assert_eq!(refused, unknown_participant);
    let (_, mixed) = create(&app, &mallory, 10_000, "equal", &[&bob, &alice], false).await;
    assert_eq!(mixed, unknown_participant);

    // Nothing of mallory's reached alice, and no money moved.
    assert_eq!(notifications(&app, &alice).await, alices_notifications);
    assert_eq!(app.balance(&alice).await, 100_000);
    assert_eq!(app.balance(&mallory).await, 100_000);
    let (_, transfers) = app.get("/v1/transfers", Some(&alice.token)).await;
    assert_eq!(transfers["transfers"], json!([]));
    assert_eq!(count(&app, "SELECT count(*) FROM settlements").await, 0);
    assert!(notifications(&app, &bob).await.is_empty());

    // Blocking is one-way: alice can still send to mallory, and mallory to others.
    let (status, body) = send(&app, &alice, mallory.main_account_id, 2_000).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = create(&app, &mallory, 10_000, "equal", &[&bob], false).await;
    assert_eq!(status, 201, "{body}");

    // Unblocked: mallory reaches alice again (nothing refused meanwhile is delivered).
    let (status, _) = delete(&app, &alice, &format!("/v1/blocks/{}", mallory.id)).await;
    assert_eq!(status, 204);
    for path in [format!("/v1/blocks/{}", mallory.id), format!("/v1/blocks/{NOBODY}"), "/v1/blocks/x".to_owned()] {
        let (status, body) = delete(&app, &alice, &path).await;
        assert_problem(status, &body, 404, "not-found");
    }
    assert!(blocks(&app, &alice).await.is_empty());
    let (status, body) = send(&app, &mallory, alice.main_account_id, 1_000).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], json!("pending"));
    let kinds: Vec<Value> = notifications(&app, &alice).await.iter().map(|n| n["kind"].clone()).collect();
    assert_eq!(kinds, [json!("pending_transfer_received")]);
    app.assert_audit_ok().await;
}

/// What was under way at the block: a pending transfer from the blocked user stays (the
/// blocker may still reject or accept it) but its reminder is not sent; other reminders are.
#[tokio::test]
async fn a_pending_transfer_sent_before_the_block_is_not_reminded_of() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let mallory = app.funded("mallory", 50_000).await;
    let bob = app.funded("bob", 50_000).await;
    for user in [&mallory, &bob] {
        let (status, _) = patch_me(&app, user, json!({"transfer_mode": "confirm"})).await;
        assert_eq!(status, 200);
    }
    let sent = app.clock_now().await;
    let (status, from_mallory) = send(&app, &mallory, alice.main_account_id, 7_000).await;
    assert_eq!(status, 201, "{from_mallory}");
    let (status, from_bob) = send(&app, &bob, alice.main_account_id, 3_000).await;
    assert_eq!(status, 201, "{from_bob}");
    assert_eq!(block(&app, &alice, mallory.id).await.0, 201);

    app.set_clock(&(sent + Duration::hours(48) + Duration::minutes(1)).to_rfc3339()).await;
    // Sessions last a day.
    let alice = TestUser { token: app.login("alice").await, ..alice };
    let mallory = TestUser { token: app.login("mallory").await, ..mallory };
    let (status, report) = app.request(Method::POST, "/admin/jobs/reminders/run", Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200, "{report}");
    let reminders: Vec<Value> = notifications(&app, &alice)
        .await
        .into_iter()
        .filter(|n| n["kind"] == json!("pending_transfer_reminder"))
        .collect();
    assert_eq!(reminders.len(), 1, "{reminders:?}");
    assert_eq!(reminders[0]["payload"]["transfer_id"], from_bob["id"]);
    // Both are marked done: running again (or unblocking) reminds of nothing more.
    assert_eq!(delete(&app, &alice, &format!("/v1/blocks/{}", mallory.id)).await.0, 204);
    let (status, _) = app.request(Method::POST, "/admin/jobs/reminders/run", Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200);
    assert_eq!(count(&app, "SELECT count(*) FROM notifications WHERE kind = 'pending_transfer_reminder'").await, 1);

    // The transfer itself is still alice's to answer.
    let id = from_mallory["id"].as_i64().unwrap();
    let (status, body) = app.post(&format!("/v1/transfers/{id}/reject"), Some(&alice.token), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], json!("rejected"));
    assert_eq!(app.balance(&mallory).await, 50_000);
    app.assert_audit_ok().await;
}
