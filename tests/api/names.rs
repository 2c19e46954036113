//! Names that deceive: blank and invisible text, and one name spelt two ways.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

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
