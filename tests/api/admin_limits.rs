//! Admin authentication: failed attempts are rate limited per client address (429
//! `too-many-requests` with Retry-After, even for the right token), and a server refuses to
//! start with an admin token shorter than 32 characters.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

async fn admin_clock(client: &reqwest::Client, base: &str, token: Option<&str>, from: &str) -> Answer {
    let mut request = client.get(format!("{base}/admin/clock")).header("X-Forwarded-For", from);
    if let Some(token) = token {
        request = request.bearer_auth(token);
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

#[tokio::test]
async fn failed_admin_authentication_is_limited_per_address_even_for_the_right_token() {
    let app = spawn_app().await;
    let server = spawn_server_process_with(
        &app,
        &[("MINIPAY_ADMIN_FAILURES_PER_ADDRESS_PER_MINUTE", "5"), ("MINIPAY_TRUST_X_FORWARDED_FOR", "1")],
    )
    .await;
    let (guesser, other) = ("198.51.100.1", "198.51.100.2");
    let long = "x".repeat(1_000);
    // Wrong, missing and absurdly long tokens all count as failures.
    for token in [Some("guess-1"), None, Some(long.as_str()), Some("guess-2"), Some("")] {
        let answer = admin_clock(&app.client, &server.base, token, guesser).await;
        assert_eq!(answer.status, 401, "{token:?}: {}", answer.body);
    }
    for token in [Some("guess-3"), Some(ADMIN_TOKEN)] {
        let answer = admin_clock(&app.client, &server.base, token, guesser).await;
        assert_eq!(answer.status, 429, "{}", answer.body);
        assert_eq!(answer.body["code"], json!("too-many-requests"), "{}", answer.body);
        assert_eq!(answer.retry_after, Some(60), "{}", answer.body);
    }
    // Another address is not affected, and the guesser's window ends a minute later.
    let answer = admin_clock(&app.client, &server.base, Some(ADMIN_TOKEN), other).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let now: chrono::DateTime<chrono::Utc> = answer.body["now"].as_str().unwrap().parse().unwrap();
    let later = (now + chrono::Duration::seconds(60)).to_rfc3339();
    let response = app
        .client
        .put(format!("{}/admin/clock", server.base))
        .header("X-Forwarded-For", other)
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"now": later}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer = admin_clock(&app.client, &server.base, Some(ADMIN_TOKEN), guesser).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test]
async fn a_server_refuses_to_start_with_an_admin_token_under_32_characters() {
    let app = spawn_app().await;
    assert!(ADMIN_TOKEN.len() >= 32, "the tests' own admin token is long enough");
    let child = minipay_command(&app, "serve")
        .env("MINIPAY_ADDR", "127.0.0.1:0")
        .env("MINIPAY_ADMIN_TOKEN", "a".repeat(31))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("the server should refuse to start, not serve")
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("MINIPAY_ADMIN_TOKEN must be at least 32 characters"), "{stderr}");
}
