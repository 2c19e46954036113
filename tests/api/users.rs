//! Users and sessions: sign-up, log-in, log-out, look-up, profile, and the bearer token on
//! every `/v1` route.

use chrono::{DateTime, Duration, Utc};
use futures::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

async fn patch_me(app: &TestApp, user: &TestUser, body: Value) -> (reqwest::StatusCode, Value) {
    app.request(Method::PATCH, "/v1/me", Some(&user.token), Some(body)).await
}

#[tokio::test]
async fn signing_up_answers_201_with_the_user_and_their_main_account() {
    let app = spawn_app().await;
    let (status, body) = app.post("/v1/users", None, json!({"name": "alice", "password": PASSWORD})).await;
    assert_eq!(status, 201, "{body}");
    let object = body.as_object().unwrap();
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["id", "main_account_id", "name"], "{body}");
    assert!(body["id"].is_i64());
    assert!(body["main_account_id"].is_i64());
    assert_eq!(body["name"], json!("alice"));

    // Names are any text up to 64 characters (not bytes); passwords of 8 characters are enough.
    let longest = "가".repeat(64);
    for name in ["김철수", longest.as_str(), "a", "alice smith"] {
        let (status, body) = app.post("/v1/users", None, json!({"name": name, "password": "kx8!Qz2m"})).await;
        assert_eq!(status, 201, "{name}: {body}");
        assert_eq!(body["name"], json!(name));
    }
}

#[tokio::test]
async fn a_taken_name_is_refused_with_409_name_taken() {
    let app = spawn_app().await;
    app.signup("alice").await;
    let (status, body) = app.post("/v1/users", None, json!({"name": "alice", "password": "another password"})).await;
    assert_problem(status, &body, 409, "name-taken");
    // The first alice is untouched: her password still works.
    app.login("alice").await;
}

#[tokio::test]
async fn bad_names_and_short_passwords_are_refused_with_422() {
    let app = spawn_app().await;
    let long_name = "a".repeat(65);
    for (name, password) in [
        ("", PASSWORD),
        (long_name.as_str(), PASSWORD),
        (" alice", PASSWORD),
        ("alice ", PASSWORD),
        ("al\nice", PASSWORD),
        ("alice", "1234567"),
        ("alice", ""),
    ] {
        let (status, body) = app.post("/v1/users", None, json!({"name": name, "password": password})).await;
        assert_problem(status, &body, 422, "validation-failed");
    }
    // None of them created a user.
    let (status, body) = app.post("/v1/sessions", None, json!({"name": "alice", "password": "1234567"})).await;
    assert_problem(status, &body, 401, "unauthorized");
}

#[tokio::test]
async fn logging_in_gives_a_token_and_wrong_credentials_give_401() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;

    let (status, body) = app.post("/v1/sessions", None, json!({"name": "alice", "password": PASSWORD})).await;
    assert_eq!(status, 201, "{body}");
    assert!(body["token"].as_str().is_some_and(|token| !token.is_empty()), "{body}");
    assert_eq!(body["user_id"], json!(alice.id));

    for (name, password) in
        [("alice", "wrong password"), ("alice", ""), ("ALICE", PASSWORD), ("nobody", PASSWORD), ("", PASSWORD)]
    {
        let (status, body) = app.post("/v1/sessions", None, json!({"name": name, "password": password})).await;
        assert_problem(status, &body, 401, "unauthorized");
    }
}

/// Every `/v1` route that needs a session, with a body that would otherwise be valid.
fn authenticated_routes(user: &TestUser) -> Vec<(Method, String, Option<Value>)> {
    let main = user.main_account_id;
    vec![
        (Method::GET, "/v1/users/alice".to_owned(), None),
        (Method::DELETE, "/v1/sessions/current".to_owned(), None),
        (Method::GET, "/v1/me".to_owned(), None),
        (Method::PATCH, "/v1/me".to_owned(), Some(json!({"transfer_mode": "confirm"}))),
        (Method::GET, "/v1/accounts".to_owned(), None),
        (Method::POST, "/v1/accounts".to_owned(), Some(json!({"kind": "savings", "product": "free"}))),
        (Method::GET, format!("/v1/accounts/{main}"), None),
        (Method::POST, format!("/v1/accounts/{main}/close"), Some(json!({}))),
        (Method::POST, format!("/v1/accounts/{main}/charges"), Some(json!({"amount": 10_000}))),
        (Method::POST, format!("/v1/accounts/{main}/deposits"), Some(json!({"amount": 10_000}))),
        (Method::GET, "/v1/settlements".to_owned(), None),
        (Method::GET, "/v1/settlements?role=owed".to_owned(), None),
        (
            Method::POST,
            "/v1/settlements".to_owned(),
            Some(json!({"total": 10_000, "mode": "equal", "participant_ids": [user.id + 1]})),
        ),
        (Method::GET, "/v1/settlements/1".to_owned(), None),
        (Method::POST, "/v1/settlements/1/pay".to_owned(), None),
        (Method::GET, "/v1/notifications".to_owned(), None),
        (Method::GET, "/v1/notifications?after=0&limit=10".to_owned(), None),
    ]
}

#[tokio::test]
async fn every_v1_route_answers_401_problem_json_without_a_valid_token() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let long_token = "a".repeat(300);
    let bad_tokens: [Option<&str>; 4] = [None, Some("not-a-token"), Some(&long_token), Some(" ")];

    for (method, path, body) in authenticated_routes(&alice) {
        let body = body.map(|body| body.to_string().into_bytes());
        for token in bad_tokens {
            let response = app.raw_request(method.clone(), &path, token, Some("application/json"), body.clone()).await;
            assert_problem_response(&response, 401, "unauthorized");
        }
        // A real token in the wrong scheme is not a bearer token.
        let response = app
            .client
            .request(method.clone(), app.url(&path))
            .header("Authorization", format!("Basic {}", alice.token))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{method} {path} with Basic");
    }

    // Nothing happened behind the 401s.
    let me = app.me(&alice).await;
    assert_eq!(me["transfer_mode"], json!("immediate"));
    assert_eq!(me["daily_charge"]["used"], json!(0));
    let (_, list) = app.get("/v1/accounts", Some(&alice.token)).await;
    assert_eq!(list["accounts"].as_array().unwrap().len(), 1);
    let (_, list) = app.get("/v1/settlements", Some(&alice.token)).await;
    assert_eq!(list["settlements"], json!([]));
}

#[tokio::test]
async fn users_can_be_found_by_name_and_an_unknown_name_is_404() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("김철수").await;

    let (status, body) = app.get("/v1/users/김철수", Some(&alice.token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"id": bob.id, "name": "김철수", "main_account_id": bob.main_account_id}));

    let (status, body) = app.get("/v1/users/alice", Some(&bob.token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["main_account_id"], json!(alice.main_account_id));

    for name in ["nobody", "Alice", "alice%20"] {
        let (status, body) = app.get(&format!("/v1/users/{name}"), Some(&alice.token)).await;
        assert_problem(status, &body, 404, "not-found");
    }
}

#[tokio::test]
async fn me_shows_the_profile_and_todays_top_up_allowance() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let (status, body) = app.charge(&alice, 70_000).await;
    assert_eq!(status, 201, "{body}");

    let me = app.me(&alice).await;
    assert_eq!(me["id"], json!(alice.id));
    assert_eq!(me["name"], json!("alice"));
    assert_eq!(me["main_account_id"], json!(alice.main_account_id));
    assert_eq!(me["transfer_mode"], json!("immediate"));
    assert_eq!(me["daily_charge"]["limit"], json!(3_000_000));
    assert_eq!(me["daily_charge"]["used"], json!(70_000));
    assert_eq!(me["daily_charge"]["remaining"], json!(2_930_000));
    let now = app.clock_now().await;
    let resets_at: DateTime<Utc> = me["daily_charge"]["resets_at"].as_str().unwrap().parse().unwrap();
    assert!(resets_at > now && resets_at <= now + Duration::days(1), "{resets_at} vs {now}");
    // Midnight in Seoul is 15:00 UTC.
    assert_eq!(resets_at.format("%H:%M:%S").to_string(), "15:00:00");
}

#[tokio::test]
async fn renaming_frees_the_old_name_and_keeps_the_account() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;

    let (status, body) = patch_me(&app, &alice, json!({"name": "alice2"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], json!("alice2"));
    assert_eq!(body["id"], json!(alice.id));
    assert_eq!(body["main_account_id"], json!(alice.main_account_id));
    assert_eq!(body["transfer_mode"], json!("immediate"));
    assert!(body["daily_charge"].is_object(), "{body}");
    assert_eq!(app.me(&alice).await["name"], json!("alice2"));

    let (status, body) = app.get("/v1/users/alice", Some(&alice.token)).await;
    assert_problem(status, &body, 404, "not-found");
    let (status, body) = app.get("/v1/users/alice2", Some(&alice.token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], json!(alice.id));

    // The new name logs in; the old one no longer does, and stays alice's to take back for
    // 30 days (tests/api/names.rs).
    app.login("alice2").await;
    let (status, body) = app.post("/v1/sessions", None, json!({"name": "alice", "password": PASSWORD})).await;
    assert_problem(status, &body, 401, "unauthorized");
    let (status, body) = app.post("/v1/users", None, json!({"name": "alice", "password": PASSWORD})).await;
    assert_problem(status, &body, 409, "name-taken");

    // Keeping one's own name is not a conflict.
    let (status, body) = patch_me(&app, &alice, json!({"name": "alice2"})).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn renaming_to_a_taken_name_is_409_and_changes_nothing() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    app.signup("bob").await;

    let (status, body) = patch_me(&app, &alice, json!({"name": "bob", "transfer_mode": "confirm"})).await;
    assert_problem(status, &body, 409, "name-taken");
    let me = app.me(&alice).await;
    assert_eq!(me["name"], json!("alice"));
    assert_eq!(me["transfer_mode"], json!("immediate"));
}

#[tokio::test]
async fn the_transfer_mode_switches_between_confirm_and_immediate() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;

    let (status, body) = patch_me(&app, &alice, json!({"transfer_mode": "confirm"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["transfer_mode"], json!("confirm"));
    assert_eq!(app.me(&alice).await["transfer_mode"], json!("confirm"));

    // An empty patch changes nothing.
    let (status, body) = patch_me(&app, &alice, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["transfer_mode"], json!("confirm"));
    assert_eq!(body["name"], json!("alice"));

    let (status, body) = patch_me(&app, &alice, json!({"transfer_mode": "immediate", "name": "alice b"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["transfer_mode"], json!("immediate"));
    assert_eq!(body["name"], json!("alice b"));
}

#[tokio::test]
async fn a_bad_profile_patch_is_422_and_changes_nothing() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    for body in [
        json!({"transfer_mode": "later"}),
        json!({"transfer_mode": "CONFIRM"}),
        json!({"transfer_mode": ""}),
        json!({"transfer_mode": 1}),
        json!({"name": ""}),
        json!({"name": "a".repeat(65)}),
        json!({"name": " alice2"}),
        json!({"name": 42}),
        json!({"nickname": "al"}),
        json!({"name": "alice2", "password": "new password"}),
        json!({"name": "alice2", "transfer_mode": "later"}),
    ] {
        let (status, problem) = patch_me(&app, &alice, body.clone()).await;
        assert_eq!(problem["code"], json!("validation-failed"), "{body}");
        assert_problem(status, &problem, 422, "validation-failed");
    }
    let me = app.me(&alice).await;
    assert_eq!(me["name"], json!("alice"));
    assert_eq!(me["transfer_mode"], json!("immediate"));
}

#[tokio::test]
async fn logging_out_ends_only_that_session() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let other_token = app.login("alice").await;

    let (status, body) = app.request(Method::DELETE, "/v1/sessions/current", Some(&alice.token), None).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = app.get("/v1/me", Some(&alice.token)).await;
    assert_problem(status, &body, 401, "unauthorized");
    let (status, body) = app.request(Method::DELETE, "/v1/sessions/current", Some(&alice.token), None).await;
    assert_problem(status, &body, 401, "unauthorized");

    let (status, body) = app.get("/v1/me", Some(&other_token)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_session_expires_24_hours_after_log_in() {
    let app = spawn_app().await;
    app.signup("alice").await;
    let (status, session) = app.post("/v1/sessions", None, json!({"name": "alice", "password": PASSWORD})).await;
    assert_eq!(status, 201, "{session}");
    let token = session["token"].as_str().unwrap();
    let expires_at: DateTime<Utc> = session["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires_at, app.clock_now().await + Duration::hours(24));

    app.set_clock(&(expires_at - Duration::seconds(1)).to_rfc3339()).await;
    let (status, body) = app.get("/v1/me", Some(token)).await;
    assert_eq!(status, 200, "{body}");

    app.set_clock(&expires_at.to_rfc3339()).await;
    let (status, body) = app.get("/v1/me", Some(token)).await;
    assert_problem(status, &body, 401, "unauthorized");

    // Logging in again works on the new clock.
    let token = app.login("alice").await;
    let (status, body) = app.get("/v1/me", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn names_no_user_could_have_are_unknown_not_a_server_error() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    // PostgreSQL text cannot hold NUL: such a name must be refused before it reaches a query.
    let very_long = format!("/v1/users/{}", "a".repeat(5_000));
    for path in ["/v1/users/%00", "/v1/users/a%00b", "/v1/users/%FF", "/v1/users/%20alice", very_long.as_str()] {
        let response = app.raw_request(Method::GET, path, Some(&alice.token), None, None).await;
        assert_problem_response(&response, 404, "not-found");
    }
    let too_long = "a".repeat(65);
    for name in ["a\u{0}b", "\u{0}", " alice", too_long.as_str()] {
        let (status, body) = app.post("/v1/sessions", None, json!({"name": name, "password": PASSWORD})).await;
        assert_problem(status, &body, 401, "unauthorized");
        let (status, body) = app.post("/v1/users", None, json!({"name": name, "password": PASSWORD})).await;
        assert_problem(status, &body, 422, "validation-failed");
        let (status, body) = patch_me(&app, &alice, json!({"name": name})).await;
        assert_problem(status, &body, 422, "validation-failed");
    }
    // A password may hold any character; it is only ever hashed.
    let (status, body) = app.post("/v1/users", None, json!({"name": "bob", "password": "nul\u{0}inside"})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app.post("/v1/sessions", None, json!({"name": "bob", "password": "nul\u{0}inside"})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app.post("/v1/sessions", None, json!({"name": "bob", "password": "nul"})).await;
    assert_problem(status, &body, 401, "unauthorized");
}

#[tokio::test]
async fn concurrent_sign_ups_and_renames_to_one_name_let_exactly_one_through() {
    let app = spawn_app().await;
    let sign_ups =
        join_all((0..6).map(|_| app.post("/v1/users", None, json!({"name": "alice", "password": PASSWORD})))).await;
    assert_eq!(sign_ups.iter().filter(|(status, _)| *status == 201).count(), 1, "{sign_ups:?}");
    for (status, body) in sign_ups.iter().filter(|(status, _)| *status != 201) {
        assert_problem(*status, body, 409, "name-taken");
    }

    let bob = app.signup("bob").await;
    let carol = app.signup("carol").await;
    let renames = join_all([&bob, &carol].map(|user| patch_me(&app, user, json!({"name": "dave"})))).await;
    assert_eq!(renames.iter().filter(|(status, _)| *status == 200).count(), 1, "{renames:?}");
    for (status, body) in renames.iter().filter(|(status, _)| *status != 200) {
        assert_problem(*status, body, 409, "name-taken");
    }
    let names = [app.me(&bob).await["name"].clone(), app.me(&carol).await["name"].clone()];
    assert!(names == [json!("dave"), json!("carol")] || names == [json!("bob"), json!("dave")], "{names:?}");
}
