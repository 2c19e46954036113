//! Password policy at sign-up, and token responses kept out of caches.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn blank_repeated_and_common_passwords_are_refused_at_sign_up() {
    let app = spawn_app().await;
    let weak = [
        "        ",
        " \u{a0}  \u{3000}   ",
        "aaaaaaaa",
        "........",
        "ㅋㅋㅋㅋㅋㅋㅋㅋ",
        "12345678",
        "123456789",
        "password",
        "Password1",
        "PASSWORD",
        "iloveyou",
        "qwertyuiop",
        "trustno1",
    ];
    for (index, password) in weak.into_iter().enumerate() {
        let name = format!("weak{index}");
        let (status, body) = app.post("/v1/users", None, json!({"name": name, "password": password})).await;
        assert_problem(status, &body, 422, "validation-failed");
        assert!(body["detail"].as_str().unwrap().contains("password"), "{password:?}: {body}");
        // Nothing was created: the name is still free.
        let (status, body) = app.post("/v1/sessions", None, json!({"name": name, "password": password})).await;
        assert_problem(status, &body, 401, "unauthorized");
    }
    for (index, password) in ["correct horse", "kx8!Qz2m", "aaaaaaab", "12345678 and more"].into_iter().enumerate() {
        let name = format!("fine{index}");
        let (status, body) = app.post("/v1/users", None, json!({"name": name, "password": password})).await;
        assert_eq!(status, 201, "{password:?}: {body}");
    }
}

#[tokio::test]
async fn a_token_response_is_never_stored_by_a_cache() {
    let app = spawn_app().await;
    app.signup("alice").await;
    for password in [PASSWORD, "wrong password"] {
        let response = app
            .client
            .post(app.url("/v1/sessions"))
            .json(&json!({"name": "alice", "password": password}))
            .send()
            .await
            .unwrap();
        let cache_control = response.headers().get(reqwest::header::CACHE_CONTROL).cloned();
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(cache_control.as_ref().and_then(|value| value.to_str().ok()), Some("no-store"), "{status}: {body}");
        if password == PASSWORD {
            assert_eq!(status, 201, "{body}");
            assert!(body["token"].is_string(), "{body}");
        }
    }
}
