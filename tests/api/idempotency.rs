//! Idempotency keys on the POSTs that move money.

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

async fn post_with_key(app: &TestApp, user: &TestUser, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url(path))
        .bearer_auth(&user.token)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_replayed_transfer_returns_the_first_response_and_moves_money_once() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let body = json!({"to_account_id": bob.main_account_id, "amount": 15_000, "memo": "rent"});
    let first = post_with_key(&app, &alice, "/v1/transfers", "key-1", body.clone()).await;
    assert_eq!(first.0, 201, "{}", first.1);
    assert_eq!(first.1["auto_charged"], json!(20_000));
    let again = post_with_key(&app, &alice, "/v1/transfers", "key-1", body.clone()).await;
    assert_eq!(again, first);
    assert_eq!(app.balance(&bob).await, 15_000);
    assert_eq!(app.balance(&alice).await, 5_000);
    assert_eq!(app.me(&alice).await["daily_charge"]["used"], json!(20_000));

    // The same key with a different request is refused and changes nothing.
    let changed = json!({"to_account_id": bob.main_account_id, "amount": 16_000, "memo": "rent"});
    let (status, reused) = post_with_key(&app, &alice, "/v1/transfers", "key-1", changed).await;
    assert_problem(status, &reused, 422, "idempotency-key-reused");
    assert_eq!(app.balance(&bob).await, 15_000);

    // Keys belong to their user: bob may use the same key for his own request.
    let (status, _) = post_with_key(
        &app,
        &bob,
        "/v1/transfers",
        "key-1",
        json!({"to_account_id": alice.main_account_id, "amount": 1_000}),
    )
    .await;
    assert_eq!(status, 201);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn concurrent_repeats_of_one_key_do_the_work_once() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let body = json!({"to_account_id": bob.main_account_id, "amount": 7_000});
    let results = join_all((0..20).map(|_| post_with_key(&app, &alice, "/v1/transfers", "once", body.clone()))).await;
    let ids: std::collections::BTreeSet<i64> = results
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 201, "{body}");
            body["id"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 1, "every repeat answers with the same transfer");
    assert_eq!(app.balance(&bob).await, 7_000);
    let (_, list) = app.get("/v1/transfers", Some(&alice.token)).await;
    assert_eq!(list["transfers"].as_array().unwrap().len(), 1);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn errors_are_replayed_too_and_charges_and_deposits_honour_keys() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let path = format!("/v1/accounts/{}/charges", alice.main_account_id);
    let over = post_with_key(&app, &alice, &path, "too-much", json!({"amount": 3_000_001})).await;
    assert_problem(over.0, &over.1, 422, "daily-limit-exceeded");
    assert_eq!(post_with_key(&app, &alice, &path, "too-much", json!({"amount": 3_000_001})).await, over);

    let charged = post_with_key(&app, &alice, &path, "charge-1", json!({"amount": 50_000})).await;
    assert_eq!(charged.0, 201);
    assert_eq!(post_with_key(&app, &alice, &path, "charge-1", json!({"amount": 50_000})).await, charged);
    assert_eq!(app.balance(&alice).await, 50_000);

    let (_, savings) =
        app.post("/v1/accounts", Some(&alice.token), json!({"kind": "savings", "product": "free"})).await;
    let deposit_path = format!("/v1/accounts/{}/deposits", savings["id"]);
    let deposited = post_with_key(&app, &alice, &deposit_path, "deposit-1", json!({"amount": 60_000})).await;
    assert_eq!(deposited.0, 201, "{}", deposited.1);
    assert_eq!(deposited.1["auto_charged"], json!(10_000));
    assert_eq!(post_with_key(&app, &alice, &deposit_path, "deposit-1", json!({"amount": 60_000})).await, deposited);
    assert_eq!(app.balance(&alice).await, 0);
    // A key used on one route is a different request on another.
    let (status, body) = post_with_key(&app, &alice, &path, "deposit-1", json!({"amount": 60_000})).await;
    assert_problem(status, &body, 422, "idempotency-key-reused");
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn malformed_keys_are_refused() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let path = format!("/v1/accounts/{}/charges", alice.main_account_id);
    for key in ["", &"k".repeat(256), "has space"] {
        let (status, body) = post_with_key(&app, &alice, &path, key, json!({"amount": 1_000})).await;
        assert_problem(status, &body, 422, "validation-failed");
    }
    assert_eq!(app.balance(&alice).await, 0);
}

#[tokio::test]
async fn keys_expire_after_their_time() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let path = format!("/v1/accounts/{}/charges", alice.main_account_id);
    assert_eq!(post_with_key(&app, &alice, &path, "k", json!({"amount": 1_000})).await.0, 201);
    let (_, clock) = app.get("/admin/clock", Some(ADMIN_TOKEN)).await;
    let now: chrono::DateTime<chrono::Utc> = clock["now"].as_str().unwrap().parse().unwrap();
    app.set_clock(&(now + chrono::Duration::hours(49)).to_rfc3339()).await;
    let alice = TestUser { token: app.login("alice").await, ..alice };
    // After expiry the key names a new request.
    assert_eq!(post_with_key(&app, &alice, &path, "k", json!({"amount": 2_000})).await.0, 201);
    assert_eq!(app.balance(&alice).await, 3_000);
    app.assert_audit_ok().await;
}

/// The daily `session-purge` job forgets expired keys too: an old key's row goes, a live
/// key's stays and still replays, and the old key then names a new request.
#[tokio::test]
async fn the_session_purge_forgets_expired_keys_and_keeps_live_ones() {
    let app = spawn_app().await;
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let keys = || async {
        sqlx::query_scalar::<_, String>("SELECT key FROM idempotency_keys ORDER BY key").fetch_all(&pool).await.unwrap()
    };
    let alice = app.signup("alice").await;
    let path = format!("/v1/accounts/{}/charges", alice.main_account_id);
    assert_eq!(post_with_key(&app, &alice, &path, "old", json!({"amount": 1_000})).await.0, 201);
    let now = app.clock_now().await;
    app.set_clock(&(now + chrono::Duration::hours(30)).to_rfc3339()).await;
    let alice = TestUser { token: app.login("alice").await, ..alice };
    let live = post_with_key(&app, &alice, &path, "live", json!({"amount": 2_000})).await;
    assert_eq!(live.0, 201, "{}", live.1);
    app.set_clock(&(now + chrono::Duration::hours(49)).to_rfc3339()).await;
    let alice = TestUser { token: app.login("alice").await, ..alice };
    let (status, report) = app.post("/admin/jobs/session-purge/run", Some(ADMIN_TOKEN), json!({})).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(keys().await, ["live"], "{report}");
    assert_eq!(post_with_key(&app, &alice, &path, "live", json!({"amount": 2_000})).await, live);
    assert_eq!(post_with_key(&app, &alice, &path, "old", json!({"amount": 4_000})).await.0, 201);
    assert_eq!(app.balance(&alice).await, 7_000);
    assert_eq!(keys().await, ["live", "old"]);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn closing_savings_honours_keys_like_every_other_money_route() {
    let app = spawn_app().await;
    let alice = app.funded("alice", 50_000).await;
    let open_with = |amount: i64| {
        let (app, alice) = (&app, &alice);
        async move {
            let (status, savings) =
                app.post("/v1/accounts", Some(&alice.token), json!({"kind": "savings", "product": "free"})).await;
            assert_eq!(status, 201, "{savings}");
            let id = savings["id"].as_i64().unwrap();
            let (status, body) =
                app.post(&format!("/v1/accounts/{id}/deposits"), Some(&alice.token), json!({"amount": amount})).await;
            assert_eq!(status, 201, "{body}");
            id
        }
    };
    let first = open_with(30_000).await;
    let second = open_with(10_000).await;
    let close_path = |id: i64| format!("/v1/accounts/{id}/close");

    let closed = post_with_key(&app, &alice, &close_path(first), "close-1", json!({})).await;
    assert_eq!(closed.0, 200, "{}", closed.1);
    assert_eq!((closed.1["status"].clone(), closed.1["balance"].clone()), (json!("closed"), json!(0)));
    assert_eq!(app.balance(&alice).await, 40_000);
    // A retry gets the first answer, status and body, not a 409.
    assert_eq!(post_with_key(&app, &alice, &close_path(first), "close-1", json!({})).await, closed);
    assert_eq!(app.balance(&alice).await, 40_000);

    // The same key on another account is another request; malformed keys are refused; neither
    // closes anything.
    let (status, body) = post_with_key(&app, &alice, &close_path(second), "close-1", json!({})).await;
    assert_problem(status, &body, 422, "idempotency-key-reused");
    for key in ["", &"k".repeat(256), "has space"] {
        let (status, body) = post_with_key(&app, &alice, &close_path(second), key, json!({})).await;
        assert_problem(status, &body, 422, "validation-failed");
    }
    let still_open = app.account(&alice, second).await;
    assert_eq!((still_open["status"].clone(), still_open["balance"].clone()), (json!("open"), json!(10_000)));

    // Concurrent repeats of one key close once and all get the same answer; the longest key
    // allowed is a key.
    let (key, path) = ("k".repeat(255), close_path(second));
    let results = join_all((0..10).map(|_| post_with_key(&app, &alice, &path, &key, json!({})))).await;
    for result in &results {
        assert_eq!(result.0, 200, "{}", result.1);
        assert_eq!(result, &results[0]);
    }
    assert_eq!(results[0].1["status"], json!("closed"));
    assert_eq!(app.balance(&alice).await, 50_000);

    // Errors are replayed too: the main account is not a savings account.
    let refused = post_with_key(&app, &alice, &close_path(alice.main_account_id), "close-main", json!({})).await;
    assert_problem(refused.0, &refused.1, 422, "validation-failed");
    assert_eq!(post_with_key(&app, &alice, &close_path(alice.main_account_id), "close-main", json!({})).await, refused);
    app.assert_audit_ok().await;
}
