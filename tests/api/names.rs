//! Names that deceive: blank and invisible text, one name spelt two ways, look-alike user
//! names, names freed by a rename, and display names that borrow another user's name.

use chrono::Duration;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;
use crate::history::{naive_all, wait_for_tuned};

async fn sign_up(app: &TestApp, name: &str) -> (reqwest::StatusCode, Value) {
    app.post("/v1/users", None, json!({"name": name, "password": PASSWORD})).await
}

async fn rename(app: &TestApp, user: &TestUser, name: &str) -> (reqwest::StatusCode, Value) {
    app.request(Method::PATCH, "/v1/me", Some(&user.token), Some(json!({"name": name}))).await
}

async fn send(app: &TestApp, from: &TestUser, to: &TestUser, extra: Value) -> (reqwest::StatusCode, Value) {
    let mut body = json!({"to_account_id": to.main_account_id, "amount": 1_000});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    app.post("/v1/transfers", Some(&from.token), body).await
}

async fn notifications(app: &TestApp, user: &TestUser) -> Vec<Value> {
    let (status, body) = app.get("/v1/notifications", Some(&user.token)).await;
    assert_eq!(status, 200, "{body}");
    body["notifications"].as_array().unwrap().clone()
}

async fn transfers(app: &TestApp, user: &TestUser) -> Vec<Value> {
    let (status, body) = app.get("/v1/transfers", Some(&user.token)).await;
    assert_eq!(status, 200, "{body}");
    body["transfers"].as_array().unwrap().clone()
}

async fn settlements(app: &TestApp, user: &TestUser) -> Vec<Value> {
    let (status, body) = app.get("/v1/settlements", Some(&user.token)).await;
    assert_eq!(status, 200, "{body}");
    body["settlements"].as_array().unwrap().clone()
}

/// What a refused request must leave as it was: both users' balances, transfers,
/// notifications and settlements, and their names.
async fn snapshot(app: &TestApp, users: &[&TestUser]) -> Vec<Value> {
    let mut seen = Vec::new();
    for user in users {
        seen.push(json!({
            "balance": app.balance(user).await,
            "transfers": transfers(app, user).await,
            "notifications": notifications(app, user).await,
            "settlements": settlements(app, user).await,
            "name": app.me(user).await["name"],
        }));
    }
    seen
}

/// Texts a user could take for nothing, or for something they are not.
const BLANK: [&str; 5] = ["", " ", "   ", "\u{3000}", " \u{a0} "];
const INVISIBLE: [&str; 7] =
    ["\u{feff}bob", "bo\u{202e}b", "\u{202e}bob", "bob\u{200b}", "b\u{200d}ob", "\u{2066}bob\u{2069}", "bob\u{e0062}"];

#[tokio::test]
async fn blank_display_names_memos_and_user_names_are_refused_and_move_nothing() {
    let app = spawn_app().await;
    let alice = app.funded("alice", 50_000).await;
    let bob = app.signup("bob").await;
    let before = snapshot(&app, &[&alice, &bob]).await;

    for blank in BLANK {
        for field in ["display_name", "memo"] {
            let (status, body) = send(&app, &alice, &bob, json!({ field: blank })).await;
            assert_problem(status, &body, 422, "validation-failed");
        }
        let (status, body) = app
            .post(
                "/v1/settlements",
                Some(&alice.token),
                json!({"total": 10_000, "mode": "equal", "participant_ids": [bob.id], "memo": blank}),
            )
            .await;
        assert_problem(status, &body, 422, "validation-failed");
        let (status, body) = sign_up(&app, blank).await;
        assert_problem(status, &body, 422, "validation-failed");
        let (status, body) = rename(&app, &alice, blank).await;
        assert_problem(status, &body, 422, "validation-failed");
    }
    assert_eq!(snapshot(&app, &[&alice, &bob]).await, before);
    // A name with spaces inside, and a display name and memo with text, are fine.
    let (status, body) = send(&app, &alice, &bob, json!({"display_name": "Kim Lee", "memo": "a b"})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!((body["display_name"].clone(), body["memo"].clone()), (json!("Kim Lee"), json!("a b")));
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn invisible_and_format_characters_are_refused_in_every_name_and_memo() {
    let app = spawn_app().await;
    let alice = app.funded("alice", 50_000).await;
    let bob = app.signup("bob").await;
    let before = snapshot(&app, &[&alice, &bob]).await;

    for text in INVISIBLE {
        let (status, body) = sign_up(&app, text).await;
        assert_problem(status, &body, 422, "validation-failed");
        assert!(body["detail"].as_str().unwrap().contains("invisible"), "{text:?}: {body}");
        let (status, body) = rename(&app, &alice, text).await;
        assert_problem(status, &body, 422, "validation-failed");
        for field in ["display_name", "memo"] {
            let (status, body) = send(&app, &alice, &bob, json!({ field: text })).await;
            assert_problem(status, &body, 422, "validation-failed");
        }
        let (status, body) = app
            .post(
                "/v1/settlements",
                Some(&alice.token),
                json!({"total": 10_000, "mode": "equal", "participant_ids": [bob.id], "memo": text}),
            )
            .await;
        assert_problem(status, &body, 422, "validation-failed");
    }
    assert_eq!(snapshot(&app, &[&alice, &bob]).await, before);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn a_look_alike_of_a_taken_name_is_taken() {
    let app = spawn_app().await;
    let bob = app.signup("bob").await;
    let alice = app.signup("alice").await;
    app.signup("paypal").await;
    // A Cyrillic о, a Greek ο, a digit one for an l.
    for look_alike in ["b\u{43e}b", "b\u{3bf}b", "paypa1"] {
        let (status, body) = sign_up(&app, look_alike).await;
        assert_problem(status, &body, 409, "name-taken");
        let (status, body) = rename(&app, &alice, look_alike).await;
        assert_problem(status, &body, 409, "name-taken");
    }
    assert_eq!(app.me(&alice).await["name"], json!("alice"));
    // Nobody was created under a look-alike, and bob is still bob.
    let (status, _) = app.get("/v1/users/b\u{43e}b", Some(&bob.token)).await;
    assert_eq!(status, 404);
    let (status, found) = app.get("/v1/users/bob", Some(&alice.token)).await;
    assert_eq!((status.as_u16(), found["id"].clone()), (200, json!(bob.id)), "{found}");
    // A user may change the look of their own name.
    let (status, body) = rename(&app, &bob, "b\u{43e}b").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn composed_and_decomposed_characters_are_the_same_name() {
    let app = spawn_app().await;
    // "é" as one code point and as "e" + a combining acute accent.
    let composed = "ren\u{e9}";
    let decomposed = "rene\u{301}";
    let (status, body) = sign_up(&app, decomposed).await;
    assert_eq!(status, 201, "{body}");
    // Kept in the composed form (NFC).
    assert_eq!(body["name"], json!(composed));
    let id = body["id"].clone();
    let (status, body) = sign_up(&app, composed).await;
    assert_problem(status, &body, 409, "name-taken");
    // Either spelling logs in and finds the same user.
    for spelling in [composed, decomposed] {
        let token = app.login(spelling).await;
        let (status, me) = app.get("/v1/me", Some(&token)).await;
        assert_eq!((status.as_u16(), me["id"].clone(), me["name"].clone()), (200, id.clone(), json!(composed)));
        let (status, found) = app.get(&format!("/v1/users/{spelling}"), Some(&token)).await;
        assert_eq!((status.as_u16(), found["id"].clone()), (200, id.clone()), "{found}");
    }
    let other = app.signup("other").await;
    let (status, body) = rename(&app, &other, decomposed).await;
    assert_problem(status, &body, 409, "name-taken");
    // Display names and memos are kept composed too.
    let (status, body) = app.charge(&other, 10_000).await;
    assert_eq!(status, 201, "{body}");
    let rene = app_user(&app, composed).await;
    let (status, body) = send(&app, &other, &rene, json!({"display_name": decomposed, "memo": decomposed})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!((body["display_name"].clone(), body["memo"].clone()), (json!(composed), json!(composed)));
    app.assert_audit_ok().await;
}

/// A user who already exists, logged in again.
async fn app_user(app: &TestApp, name: &str) -> TestUser {
    let token = app.login(name).await;
    let me = {
        let (status, me) = app.get("/v1/me", Some(&token)).await;
        assert_eq!(status, 200, "{me}");
        me
    };
    TestUser {
        id: me["id"].as_i64().unwrap(),
        name: name.to_owned(),
        token,
        main_account_id: me["main_account_id"].as_i64().unwrap(),
    }
}

#[tokio::test]
async fn a_name_freed_by_a_rename_is_kept_for_its_user_for_30_days() {
    let app = spawn_app().await;
    let mut alice = app.signup("alice").await;
    let mut dave = app.signup("dave").await;
    let mut bob = app.signup("bob").await;
    let start = app.clock_now().await;
    let at = |offset: Duration| (start + offset).to_rfc3339();

    let (status, body) = rename(&app, &alice, "alice2").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = rename(&app, &dave, "dave2").await;
    assert_eq!(status, 200, "{body}");
    // The old names, and their look-alikes, are not anybody else's to take.
    for name in ["alice", "\u{430}lice", "dave"] {
        let (status, body) = sign_up(&app, name).await;
        assert_problem(status, &body, 409, "name-taken");
        let (status, body) = rename(&app, &bob, name).await;
        assert_problem(status, &body, 409, "name-taken");
    }
    // The user who had it takes it back (sessions last a day: log in again after each move
    // of the clock).
    app.set_clock(&at(Duration::days(3))).await;
    dave.token = app.login("dave2").await;
    let (status, body) = rename(&app, &dave, "dave").await;
    assert_eq!((status.as_u16(), body["name"].clone()), (200, json!("dave")), "{body}");
    app.login("dave").await;
    // ... which frees "dave2" for 30 days in turn.
    let (status, body) = sign_up(&app, "dave2").await;
    assert_problem(status, &body, 409, "name-taken");

    app.set_clock(&at(Duration::days(30) - Duration::seconds(1))).await;
    bob.token = app.login("bob").await;
    let (status, body) = sign_up(&app, "alice").await;
    assert_problem(status, &body, 409, "name-taken");
    let (status, body) = rename(&app, &bob, "alice").await;
    assert_problem(status, &body, 409, "name-taken");

    // Thirty days after the rename it is free for anyone.
    app.set_clock(&at(Duration::days(30))).await;
    bob.token = app.login("bob").await;
    alice.token = app.login("alice2").await;
    let (status, body) = rename(&app, &bob, "alice").await;
    assert_eq!((status.as_u16(), body["name"].clone()), (200, json!("alice")), "{body}");
    // Taken for good now: not even its old user gets it back.
    let (status, body) = rename(&app, &alice, "alice").await;
    assert_problem(status, &body, 409, "name-taken");
    // "dave2" was freed three days later: still kept.
    let (status, body) = sign_up(&app, "dave2").await;
    assert_problem(status, &body, 409, "name-taken");
    app.set_clock(&at(Duration::days(33))).await;
    let (status, body) = sign_up(&app, "dave2").await;
    assert_eq!(status, 201, "{body}");
}

/// Mallory sends money to alice as "bob", next to the real bob: alice's statement (both
/// routes), notifications and summaries tell them apart.
#[tokio::test]
async fn a_display_name_borrowing_a_users_name_travels_with_the_senders_real_name() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.funded("bob", 100_000).await;
    let mallory = app.funded("mallory", 100_000).await;

    let (status, real) = send(&app, &bob, &alice, json!({"amount": 1_000})).await;
    assert_eq!(status, 201, "{real}");
    let (status, fake) = send(&app, &mallory, &alice, json!({"amount": 5_000, "display_name": "bob"})).await;
    assert_eq!(status, 201, "{fake}");
    let (status, again) = send(&app, &mallory, &alice, json!({"amount": 7_000, "display_name": "bob"})).await;
    assert_eq!(status, 201, "{again}");
    // A transfer that waits for alice carries both names as well.
    let (status, body) =
        app.request(Method::PATCH, "/v1/me", Some(&mallory.token), Some(json!({"transfer_mode": "confirm"}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, pending) = send(&app, &mallory, &alice, json!({"amount": 2_000, "display_name": "bob"})).await;
    assert_eq!((status.as_u16(), pending["status"].clone()), (201, json!("pending")), "{pending}");

    // The tuned route, once the app's forwarder has copied the entries, and the naive route.
    let tuned = wait_for_tuned(&app, &alice, alice.main_account_id, 3).await;
    let naive = naive_all(&app, &alice, alice.main_account_id, "", 200).await;
    assert_eq!(tuned, naive);
    let counterparty = |transfer: &Value| {
        let entry = tuned.iter().find(|entry| entry["transfer_id"] == transfer["id"]).expect("the transfer's entry");
        entry["counterparty"].clone()
    };
    assert_eq!(counterparty(&real), json!({"account_id": bob.main_account_id, "name": "bob", "user_name": "bob"}));
    for transfer in [&fake, &again] {
        assert_eq!(
            counterparty(transfer),
            json!({"account_id": mallory.main_account_id, "name": "bob", "user_name": "mallory"})
        );
    }
    // Mallory's own statement shows alice by her real name.
    let sent = wait_for_tuned(&app, &mallory, mallory.main_account_id, 4).await;
    let out = sent.iter().find(|entry| entry["transfer_id"] == fake["id"]).unwrap();
    assert_eq!(
        out["counterparty"],
        json!({"account_id": alice.main_account_id, "name": "alice", "user_name": "alice"})
    );

    let received = notifications(&app, &alice).await;
    let payload = |transfer: &Value| {
        received.iter().find(|n| n["payload"]["transfer_id"] == transfer["id"]).expect("a notification")["payload"]
            .clone()
    };
    assert_eq!(
        (payload(&real)["from_name"].clone(), payload(&real)["from_user_name"].clone()),
        (json!("bob"), json!("bob"))
    );
    for transfer in [&fake, &again, &pending] {
        let payload = payload(transfer);
        assert_eq!((payload["from_name"].clone(), payload["from_user_name"].clone()), (json!("bob"), json!("mallory")));
    }

    // The summaries count by account: the real bob's 1,000 apart from mallory's 12,000.
    for route in ["/summary", "/summary/naive"] {
        let (status, summary) =
            app.get(&format!("/v1/accounts/{}/history{route}", alice.main_account_id), Some(&alice.token)).await;
        assert_eq!(status, 200, "{summary}");
        assert_eq!(
            summary["top_counterparties"],
            json!([
                {"account_id": mallory.main_account_id, "name": "bob", "user_name": "mallory",
                 "in": 12_000, "out": 0, "count": 2},
                {"account_id": bob.main_account_id, "name": "bob", "user_name": "bob", "in": 1_000, "out": 0, "count": 1},
            ]),
            "{route}"
        );
    }
    app.assert_audit_ok().await;
}

/// Users signed up before names had skeletons get theirs from `minipay migrate` (and every
/// server's start): the older of two look-alikes holds the look, the younger keeps its name.
#[tokio::test]
async fn users_from_before_skeletons_get_theirs_when_minipay_migrates() {
    let app = spawn_app().await;
    let pool = PgPool::connect(&app.database_url).await.unwrap();
    let carol = app.signup("carol").await;
    // Rows as an older minipay wrote them: no skeleton, names the rules now refuse.
    for name in ["bob", "b\u{43e}b", "\u{feff}dave"] {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (name, password_hash, created_at)
             SELECT $1, password_hash, created_at FROM users WHERE id = $2 RETURNING id",
        )
        .bind(name)
        .bind(carol.id)
        .fetch_one(&pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO accounts (user_id, kind, opened_at) VALUES ($1, 'main', now())")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
    }
    let migrated = minipay_command(&app, "migrate").status().await.expect("run minipay migrate");
    assert!(migrated.success(), "{migrated}");
    let skeletons: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT name, name_skeleton FROM users ORDER BY id").fetch_all(&pool).await.unwrap();
    assert_eq!(
        skeletons,
        [
            ("carol".to_owned(), Some("carol".to_owned())),
            ("bob".to_owned(), Some("bob".to_owned())),
            ("b\u{43e}b".to_owned(), None),
            ("\u{feff}dave".to_owned(), Some("dave".to_owned())),
        ]
    );
    // The looks are taken; the younger look-alike still logs in under the name it had.
    for name in ["b\u{3bf}b", "dave"] {
        let (status, body) = sign_up(&app, name).await;
        assert_problem(status, &body, 409, "name-taken");
    }
    app.login("b\u{43e}b").await;
}
