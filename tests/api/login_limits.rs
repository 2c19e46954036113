//! Log-in rate limits: failed log-ins per name, all log-in and sign-up attempts per client
//! address, 429 `too-many-requests` with Retry-After, and windows that end.

use minipay::http::login_limit::LoginLimits;
use serde_json::{json, Value};

use crate::helpers::*;

struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

async fn attempt(app: &TestApp, path: &str, name: &str, password: &str, forwarded_for: Option<&str>) -> Answer {
    let mut request = app.client.post(app.url(path)).json(&json!({"name": name, "password": password}));
    if let Some(forwarded_for) = forwarded_for {
        request = request.header("X-Forwarded-For", forwarded_for);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .map(|value| value.to_str().unwrap().parse().expect("Retry-After is whole seconds"));
    let body = response.json().await.unwrap_or(Value::Null);
    Answer { status, retry_after, body }
}

async fn log_in(app: &TestApp, name: &str, password: &str) -> Answer {
    attempt(app, "/v1/sessions", name, password, None).await
}

fn assert_limited(answer: &Answer, retry_after: u64) {
    assert_eq!(answer.status, 429, "{}", answer.body);
    assert_eq!(answer.body["code"], json!("too-many-requests"), "{}", answer.body);
    assert_eq!(answer.body["status"], json!(429), "{}", answer.body);
    assert_eq!(answer.retry_after, Some(retry_after), "{}", answer.body);
}

async fn advance(app: &TestApp, seconds: i64) {
    let now = app.clock_now().await;
    app.set_clock(&(now + chrono::Duration::seconds(seconds)).to_rfc3339()).await;
}

#[tokio::test]
async fn failed_log_ins_lock_that_name_even_for_the_right_password_until_the_window_ends() {
    let app = spawn_app_with(|config| {
        config.login_limits = LoginLimits {
            failures_per_name_per_minute: 3,
            attempts_per_address_per_minute: 0,
            admin_failures_per_address_per_minute: 0,
        };
    })
    .await;
    app.signup("alice").await;
    app.signup("bob").await;

    for _ in 0..3 {
        let answer = log_in(&app, "alice", "wrong password").await;
        assert_eq!(answer.status, 401, "{}", answer.body);
    }
    advance(&app, 20).await;
    assert_limited(&log_in(&app, "alice", PASSWORD).await, 40);
    assert_limited(&log_in(&app, "alice", "wrong password").await, 40);
    // Other names are not affected; names that do not exist are limited the same way.
    assert_eq!(log_in(&app, "bob", PASSWORD).await.status, 201);
    for _ in 0..3 {
        assert_eq!(log_in(&app, "mallory", PASSWORD).await.status, 401);
    }
    assert_limited(&log_in(&app, "mallory", PASSWORD).await, 60);

    // The window ends a minute after the first failure.
    advance(&app, 39).await;
    assert_limited(&log_in(&app, "alice", PASSWORD).await, 1);
    advance(&app, 1).await;
    assert_eq!(log_in(&app, "alice", PASSWORD).await.status, 201);

    // A success clears the failures before it.
    for _ in 0..2 {
        assert_eq!(log_in(&app, "alice", "wrong password").await.status, 401);
    }
    assert_eq!(log_in(&app, "alice", PASSWORD).await.status, 201);
    for _ in 0..2 {
        assert_eq!(log_in(&app, "alice", "wrong password").await.status, 401);
    }
    assert_eq!(log_in(&app, "alice", PASSWORD).await.status, 201);
}

#[tokio::test]
async fn every_log_in_and_sign_up_from_one_address_counts_and_forwarded_for_is_ignored_by_default() {
    let app = spawn_app_with(|config| {
        config.login_limits = LoginLimits {
            failures_per_name_per_minute: 0,
            attempts_per_address_per_minute: 5,
            admin_failures_per_address_per_minute: 0,
        };
    })
    .await;
    assert_eq!(attempt(&app, "/v1/users", "alice", PASSWORD, None).await.status, 201);
    assert_eq!(log_in(&app, "alice", PASSWORD).await.status, 201);
    assert_eq!(log_in(&app, "alice", "wrong password").await.status, 401);
    assert_eq!(log_in(&app, "nobody", PASSWORD).await.status, 401);
    assert_eq!(attempt(&app, "/v1/users", "bob", PASSWORD, None).await.status, 201);

    assert_limited(&log_in(&app, "alice", PASSWORD).await, 60);
    assert_limited(&attempt(&app, "/v1/users", "carol", PASSWORD, None).await, 60);
    // A client cannot pick another address for itself unless a proxy is trusted.
    assert_limited(&attempt(&app, "/v1/sessions", "alice", PASSWORD, Some("203.0.113.7")).await, 60);
    // Carol was not created by the refused sign-up.
    advance(&app, 60).await;
    assert_eq!(log_in(&app, "carol", PASSWORD).await.status, 401);
    assert_eq!(log_in(&app, "alice", PASSWORD).await.status, 201);
    // Signed-in routes are not limited.
    let token = app.login("bob").await;
    for _ in 0..10 {
        let (status, body) = app.get("/v1/me", Some(&token)).await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_address_has_its_own_budget() {
    let app = spawn_app_with(|config| {
        config.login_limits = LoginLimits {
            failures_per_name_per_minute: 0,
            attempts_per_address_per_minute: 2,
            admin_failures_per_address_per_minute: 0,
        };
        config.trust_forwarded_for = true;
    })
    .await;
    let client = Some("198.51.100.1");
    assert_eq!(attempt(&app, "/v1/users", "alice", PASSWORD, client).await.status, 201);
    assert_eq!(attempt(&app, "/v1/sessions", "alice", PASSWORD, client).await.status, 201);
    assert_limited(&attempt(&app, "/v1/sessions", "alice", PASSWORD, client).await, 60);
    // The proxy appends the address it saw: what the client wrote before it does not count.
    assert_limited(&attempt(&app, "/v1/sessions", "alice", PASSWORD, Some("192.0.2.9, 198.51.100.1")).await, 60);
    assert_eq!(attempt(&app, "/v1/sessions", "alice", PASSWORD, Some("198.51.100.1, 192.0.2.9")).await.status, 201);
    assert_eq!(attempt(&app, "/v1/sessions", "alice", PASSWORD, Some("2001:db8::1")).await.status, 201);
}
