//! Response headers: `Location` on every 201 that has a resource to read, the `RateLimit-*`
//! headers beside `Retry-After` on a 429, and CORS for the origins of `MINIPAY_CORS_ORIGINS`.

use minipay::http::login_limit::LoginLimits;
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

const ORIGIN: &str = "https://app.example.com";

/// POSTs `body` and returns the status, the `Location` header and the body.
async fn create(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    body: Value,
    key: Option<&str>,
) -> (u16, String, Value) {
    let mut request = app.client.post(app.url(path)).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let location = header(&response, "location").unwrap_or_default();
    (status, location, response.json().await.unwrap_or(Value::Null))
}

fn header(response: &Response, name: &str) -> Option<String> {
    response.headers().get(name).map(|value| value.to_str().unwrap().to_owned())
}

/// The resource at `location` answers 200 with the body the 201 gave.
async fn assert_readable(app: &TestApp, location: &str, token: &str, created: &Value) {
    let (status, body) = app.get(location, Some(token)).await;
    assert_eq!(status, StatusCode::OK, "GET {location}: {body}");
    assert_eq!(body["id"], created["id"], "GET {location}: {body}");
}

#[tokio::test]
async fn every_201_with_a_resource_says_where_it_is_read() {
    let app = spawn_app().await;
    let (status, location, user) =
        create(&app, "/v1/users", None, json!({"name": "지민 kim", "password": PASSWORD}), None).await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(location, "/v1/users/%EC%A7%80%EB%AF%BC%20kim");
    let alice = app.funded("alice", 100_000).await;
    assert_readable(&app, &location, &alice.token, &user).await;
    let bob = app.signup("bob").await;

    let savings = json!({"kind": "savings", "product": "free"});
    let (status, location, account) = create(&app, "/v1/accounts", Some(&alice.token), savings, None).await;
    assert_eq!(status, 201, "{account}");
    assert_eq!(location, format!("/v1/accounts/{}", account["id"]));
    assert_readable(&app, &location, &alice.token, &account).await;

    let transfer = json!({"to_account_id": bob.main_account_id, "amount": 1_000});
    let (status, location, sent) = create(&app, "/v1/transfers", Some(&alice.token), transfer, None).await;
    assert_eq!(status, 201, "{sent}");
    assert_eq!(location, format!("/v1/transfers/{}", sent["id"]));
    assert_readable(&app, &location, &alice.token, &sent).await;

    let split = json!({"total": 10_000, "mode": "equal", "participant_ids": [bob.id], "include_requester": true});
    let (status, location, settlement) = create(&app, "/v1/settlements", Some(&alice.token), split, None).await;
    assert_eq!(status, 201, "{settlement}");
    assert_eq!(location, format!("/v1/settlements/{}", settlement["id"]));
    assert_readable(&app, &location, &alice.token, &settlement).await;
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn an_idempotent_repeat_of_a_transfer_carries_the_same_location() {
    let app = spawn_app().await;
    let alice = app.funded("alice", 100_000).await;
    let bob = app.signup("bob").await;
    let transfer = json!({"to_account_id": bob.main_account_id, "amount": 1_000});
    let (status, first, sent) =
        create(&app, "/v1/transfers", Some(&alice.token), transfer.clone(), Some("headers-1")).await;
    assert_eq!(status, 201, "{sent}");
    assert_eq!(first, format!("/v1/transfers/{}", sent["id"]));
    let (status, again, repeated) =
        create(&app, "/v1/transfers", Some(&alice.token), transfer, Some("headers-1")).await;
    assert_eq!((status, &again, &repeated), (201, &first, &sent));
    assert_eq!(app.balance(&bob).await, 1_000);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn a_429_states_the_limit_nothing_remaining_and_when_it_resets() {
    let app = spawn_app_with(|config| {
        config.login_limits = LoginLimits {
            failures_per_name_per_minute: 2,
            attempts_per_address_per_minute: 0,
            admin_failures_per_address_per_minute: 0,
        };
    })
    .await;
    app.signup("alice").await;
    let wrong = json!({"name": "alice", "password": "wrong password"});
    for _ in 0..2 {
        let (status, body) = app.post("/v1/sessions", None, wrong.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    let response = app.client.post(app.url("/v1/sessions")).json(&wrong).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after = header(&response, "retry-after").expect("Retry-After");
    assert_eq!(header(&response, "ratelimit-limit").as_deref(), Some("2"));
    assert_eq!(header(&response, "ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(header(&response, "ratelimit-reset"), Some(retry_after.clone()));
    let secs: u64 = retry_after.parse().unwrap();
    assert!((1..=60).contains(&secs), "{secs}");
}

async fn preflight(app: &TestApp, origin: &str) -> Response {
    app.client
        .request(Method::OPTIONS, app.url("/v1/transfers"))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "authorization, content-type, idempotency-key, x-request-id")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn cors_answers_the_listed_origins_only() {
    let app =
        spawn_app_with(|config| config.cors_origins = vec![ORIGIN.to_owned(), "http://localhost:3000".into()]).await;
    let allowed = preflight(&app, ORIGIN).await;
    assert!(allowed.status().is_success(), "{}", allowed.status());
    assert_eq!(header(&allowed, "access-control-allow-origin").as_deref(), Some(ORIGIN));
    let methods = header(&allowed, "access-control-allow-methods").unwrap().to_ascii_uppercase();
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        assert!(methods.contains(method), "{methods}");
    }
    let headers = header(&allowed, "access-control-allow-headers").unwrap().to_ascii_lowercase();
    for name in ["authorization", "content-type", "idempotency-key", "x-request-id"] {
        assert!(headers.contains(name), "{headers}");
    }

    let other = preflight(&app, "https://evil.example.com").await;
    assert_eq!(header(&other, "access-control-allow-origin"), None);

    let response = app.client.get(app.url("/healthz")).header("Origin", ORIGIN).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "access-control-allow-origin").as_deref(), Some(ORIGIN));
    let exposed = header(&response, "access-control-expose-headers").unwrap().to_ascii_lowercase();
    for name in ["location", "retry-after", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
        assert!(exposed.contains(name), "{exposed}");
    }
    for name in ["x-history-source", "x-history-lag-ms", "x-request-id"] {
        assert!(exposed.contains(name), "{exposed}");
    }
}

#[tokio::test]
async fn cors_is_off_by_default() {
    let app = spawn_app().await;
    let response = preflight(&app, ORIGIN).await;
    assert_eq!(header(&response, "access-control-allow-origin"), None);
    assert_eq!(header(&response, "access-control-allow-methods"), None);
    let response = app.client.get(app.url("/healthz")).header("Origin", ORIGIN).send().await.unwrap();
    assert_eq!(header(&response, "access-control-allow-origin"), None);
}
