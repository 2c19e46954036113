//! Bad input on every route: each answer is a problem+json with the contract's status and
//! code (never a 500), and nothing moves.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

/// Alice with 70,000 in main and 30,000 in a free savings account, 100,000 of today's limit used,
/// and carol, whom alice could ask to share a bill.
struct Fixture {
    alice: TestUser,
    carol: TestUser,
    savings_id: i64,
    clock: chrono::DateTime<chrono::Utc>,
}

async fn fixture(app: &TestApp) -> Fixture {
    let alice = app.signup("alice").await;
    let (status, body) = app.charge(&alice, 100_000).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) =
        app.post("/v1/accounts", Some(&alice.token), json!({"kind": "savings", "product": "free"})).await;
    assert_eq!(status, 201, "{body}");
    let savings_id = body["id"].as_i64().unwrap();
    let (status, body) =
        app.post(&format!("/v1/accounts/{savings_id}/deposits"), Some(&alice.token), json!({"amount": 30_000})).await;
    assert_eq!(status, 201, "{body}");
    let carol = app.signup("carol").await;
    Fixture { alice, carol, savings_id, clock: app.clock_now().await }
}

async fn assert_nothing_moved(app: &TestApp, fixture: &Fixture) {
    let alice = &fixture.alice;
    let (status, body) = app.get("/v1/accounts", Some(&alice.token)).await;
    assert_eq!(status, 200, "{body}");
    let accounts = body["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 2, "{body}");
    assert_eq!(accounts[0]["balance"], json!(70_000), "{body}");
    assert_eq!(accounts[1]["id"], json!(fixture.savings_id), "{body}");
    assert_eq!(accounts[1]["balance"], json!(30_000), "{body}");
    assert_eq!(accounts[1]["status"], json!("open"), "{body}");
    let me = app.me(alice).await;
    assert_eq!(me["name"], json!("alice"));
    assert_eq!(me["transfer_mode"], json!("immediate"));
    assert_eq!(me["daily_charge"]["used"], json!(100_000));
    assert_eq!(app.clock_now().await, fixture.clock);
    // Only alice and carol signed up.
    let (status, body) = app.post("/v1/sessions", None, json!({"name": "bob", "password": PASSWORD})).await;
    assert_problem(status, &body, 401, "unauthorized");
    // No bill was split, and no one was told of one.
    for user in [alice, &fixture.carol] {
        let (status, body) = app.get("/v1/settlements", Some(&user.token)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["settlements"], json!([]), "{body}");
        let (status, body) = app.get("/v1/notifications", Some(&user.token)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["notifications"], json!([]), "{body}");
    }
    app.assert_audit_ok().await;
}

/// A route taking a JSON body.
struct JsonRoute {
    method: Method,
    path: String,
    token: Option<String>,
    /// The `amount`-like field, if the route has one.
    amount_field: Option<&'static str>,
    /// Someone else who exists, for bodies that name another user.
    other_user_id: i64,
}

fn json_routes(fixture: &Fixture) -> Vec<JsonRoute> {
    let token = Some(fixture.alice.token.clone());
    let main = fixture.alice.main_account_id;
    let savings = fixture.savings_id;
    let other_user_id = fixture.carol.id;
    let route = |method: Method, path: String, token: Option<String>, amount_field| JsonRoute {
        method,
        path,
        token,
        amount_field,
        other_user_id,
    };
    vec![
        route(Method::POST, "/v1/users".to_owned(), None, None),
        route(Method::POST, "/v1/sessions".to_owned(), None, None),
        route(Method::PATCH, "/v1/me".to_owned(), token.clone(), None),
        route(Method::POST, "/v1/accounts".to_owned(), token.clone(), Some("installment_amount")),
        route(Method::POST, format!("/v1/accounts/{main}/charges"), token.clone(), Some("amount")),
        route(Method::POST, format!("/v1/accounts/{savings}/deposits"), token.clone(), Some("amount")),
        route(Method::POST, "/v1/settlements".to_owned(), token, Some("total")),
        route(Method::PUT, "/admin/clock".to_owned(), Some(ADMIN_TOKEN.to_owned()), None),
    ]
}

/// A body that is valid for the route except for `amount_field` set to `value`.
fn with_amount(route: &JsonRoute, value: Value) -> Value {
    match route.amount_field {
        Some("installment_amount") => json!({"kind": "savings", "product": "fixed", "installment_amount": value}),
        Some("total") => json!({"total": value, "mode": "equal", "participant_ids": [route.other_user_id]}),
        _ => json!({"amount": value}),
    }
}

async fn send(app: &TestApp, route: &JsonRoute, content_type: Option<&str>, body: Vec<u8>) -> RawResponse {
    app.raw_request(route.method.clone(), &route.path, route.token.as_deref(), content_type, Some(body)).await
}

#[tokio::test]
async fn malformed_json_is_400_validation_failed_on_every_json_route() {
    let app = spawn_app().await;
    let fixture = fixture(&app).await;
    for route in json_routes(&fixture) {
        // Each breaks the syntax before any field could be judged (a field every route knows
        // or ignores, `name`, keeps unknown-field refusals out of it).
        let bodies = [
            "{",
            "not json",
            "{:}",
            "{'name': 1}",
            "{\"name\" 1}",
            "{\"name\": }",
            "{\"name\": \"x\",}",
            "",
            "\u{feff}{}",
        ];
        for body in bodies {
            let response = send(&app, &route, Some("application/json"), body.as_bytes().to_vec()).await;
            assert_eq!(response.status, 400, "{} {} with {body:?}: {}", route.method, route.path, response.text);
            assert_problem_response(&response, 400, "validation-failed");
        }
        // Invalid UTF-8.
        let response = send(&app, &route, Some("application/json"), vec![b'{', b'"', 0xff, 0xfe, b'"', b'}']).await;
        assert_problem_response(&response, 400, "validation-failed");
        // JSON without a JSON media type is not taken as JSON.
        for content_type in [None, Some("text/plain")] {
            let response = send(&app, &route, content_type, br#"{"amount": 10000}"#.to_vec()).await;
            assert_eq!(response.status, 400, "{} {} as {content_type:?}: {}", route.method, route.path, response.text);
            assert_problem_response(&response, 400, "validation-failed");
        }
    }
    assert_nothing_moved(&app, &fixture).await;
}

#[tokio::test]
async fn wrong_types_and_missing_fields_are_422_on_every_json_route() {
    let app = spawn_app().await;
    let fixture = fixture(&app).await;
    let common = [json!([]), json!("text"), json!(42), json!(null), json!(true)];
    for route in json_routes(&fixture) {
        let specific: Vec<Value> = match (route.path.as_str(), route.amount_field) {
            ("/v1/users" | "/v1/sessions", _) => vec![
                json!({}),
                json!({"name": "bob"}),
                json!({"password": PASSWORD}),
                json!({"name": 1, "password": PASSWORD}),
                json!({"name": "bob", "password": null}),
                json!({"name": ["bob"], "password": PASSWORD}),
            ],
            ("/v1/me", _) => {
                vec![json!({"name": 1}), json!({"transfer_mode": false}), json!({"name": {"first": "al"}})]
            }
            ("/admin/clock", _) => vec![
                json!({}),
                json!({"now": 5}),
                json!({"now": "tomorrow"}),
                json!({"now": "2099-01-01T00:00:00"}),
                json!({"now": "2099-01-01"}),
                json!({"now": null}),
            ],
            ("/v1/accounts", _) => vec![
                json!({}),
                json!({"kind": "savings"}),
                json!({"product": "free"}),
                json!({"kind": 1, "product": "free"}),
                json!({"kind": "savings", "product": null}),
                with_amount(&route, json!("10000")),
                with_amount(&route, json!(10_000.5)),
                with_amount(&route, json!(true)),
            ],
            ("/v1/settlements", _) => vec![
                json!({}),
                json!({"total": 10_000, "mode": "equal"}),
                json!({"total": 10_000, "participant_ids": [route.other_user_id]}),
                json!({"mode": "equal", "participant_ids": [route.other_user_id]}),
                with_amount(&route, json!("10000")),
                with_amount(&route, json!(10_000.5)),
                with_amount(&route, json!(null)),
                json!({"total": 10_000, "mode": "halves", "participant_ids": [route.other_user_id]}),
                json!({"total": 10_000, "mode": null, "participant_ids": [route.other_user_id]}),
                json!({"total": 10_000, "mode": "equal", "participant_ids": route.other_user_id}),
                json!({"total": 10_000, "mode": "equal", "participant_ids": [route.other_user_id.to_string()]}),
                json!({"total": 10_000, "mode": "equal", "participant_ids": []}),
                json!({"total": 10_000, "mode": "equal", "participant_ids": [route.other_user_id, route.other_user_id]}),
                json!({"total": 10_000, "mode": "equal", "participant_ids": [999_999]}),
                json!({"total": 10_000, "mode": "equal", "participant_ids": [route.other_user_id], "include_requester": 1}),
                json!({"total": 10_000, "mode": "equal", "participant_ids": [route.other_user_id], "memo": ["x"]}),
            ],
            (_, Some(_)) => vec![
                json!({}),
                json!({"amount": null}),
                json!({"amount": "10000"}),
                json!({"amount": 10_000.5}),
                json!({"amount": 1e4}),
                json!({"amount": [10_000]}),
                json!({"value": 10_000}),
                serde_json::from_str(r#"{"amount": 99999999999999999999}"#).unwrap(),
            ],
            (path, None) => panic!("no bodies for {path}"),
        };
        for body in common.iter().chain(specific.iter()) {
            let response = send(&app, &route, Some("application/json"), body.to_string().into_bytes()).await;
            assert_eq!(response.status, 422, "{} {} with {body}: {}", route.method, route.path, response.text);
            assert_problem_response(&response, 422, "validation-failed");
        }
    }
    assert_nothing_moved(&app, &fixture).await;
}

#[tokio::test]
async fn amounts_of_zero_negative_or_over_a_trillion_are_422() {
    let app = spawn_app().await;
    let fixture = fixture(&app).await;
    for route in json_routes(&fixture).iter().filter(|route| route.amount_field.is_some()) {
        for amount in [0, -1, -10_000, 1_000_000_000_001, i64::MAX, i64::MIN] {
            let body = with_amount(route, json!(amount));
            let response = send(&app, route, Some("application/json"), body.to_string().into_bytes()).await;
            assert_eq!(response.status, 422, "{} {} with {body}: {}", route.method, route.path, response.text);
            assert_problem_response(&response, 422, "validation-failed");
        }
    }
    assert_nothing_moved(&app, &fixture).await;
}

#[tokio::test]
async fn bodies_over_64_kib_are_413_payload_too_large() {
    let app = spawn_app().await;
    let fixture = fixture(&app).await;
    let padding = "a".repeat(64 * 1024);
    for route in json_routes(&fixture) {
        let body =
            json!({"name": padding, "password": PASSWORD, "amount": 10_000, "kind": "savings", "product": "free"});
        let response = send(&app, &route, Some("application/json"), body.to_string().into_bytes()).await;
        assert_eq!(response.status, 413, "{} {}: {}", route.method, route.path, response.text);
        assert_problem_response(&response, 413, "payload-too-large");
    }
    assert_nothing_moved(&app, &fixture).await;
}

#[tokio::test]
async fn unknown_paths_are_404_not_found() {
    let app = spawn_app().await;
    let fixture = fixture(&app).await;
    let token = fixture.alice.token.as_str();
    let main = fixture.alice.main_account_id;
    for (method, path, token) in [
        (Method::GET, "/".to_owned(), None),
        (Method::GET, "/nope".to_owned(), None),
        (Method::GET, "/v1".to_owned(), Some(token)),
        (Method::GET, "/v1/nope".to_owned(), Some(token)),
        (Method::POST, "/v2/users".to_owned(), None),
        (Method::GET, "/v1/users/alice/accounts".to_owned(), Some(token)),
        (Method::POST, format!("/v1/accounts/{main}/nope"), Some(token)),
        (Method::POST, format!("/v1/accounts/{main}/charges/1"), Some(token)),
        (Method::GET, "/admin/nope".to_owned(), Some(ADMIN_TOKEN)),
        (Method::POST, "/admin/jobs".to_owned(), Some(ADMIN_TOKEN)),
    ] {
        let response = app.raw_request(method.clone(), &path, token, None, None).await;
        assert_eq!(response.status, 404, "{method} {path}: {}", response.text);
        assert_problem_response(&response, 404, "not-found");
    }
    assert_nothing_moved(&app, &fixture).await;
}

#[tokio::test]
async fn wrong_methods_are_405_method_not_allowed() {
    let app = spawn_app().await;
    let fixture = fixture(&app).await;
    let token = fixture.alice.token.as_str();
    let main = fixture.alice.main_account_id;
    let savings = fixture.savings_id;
    for (method, path) in [
        (Method::DELETE, "/v1/accounts".to_owned()),
        (Method::PUT, "/v1/accounts".to_owned()),
        (Method::GET, "/v1/users".to_owned()),
        (Method::DELETE, "/v1/users/alice".to_owned()),
        (Method::GET, "/v1/sessions".to_owned()),
        (Method::GET, "/v1/sessions/current".to_owned()),
        (Method::POST, "/v1/me".to_owned()),
        (Method::DELETE, "/v1/me".to_owned()),
        (Method::PUT, "/v1/me".to_owned()),
        (Method::DELETE, format!("/v1/accounts/{savings}")),
        (Method::PATCH, format!("/v1/accounts/{main}")),
        (Method::GET, format!("/v1/accounts/{main}/charges")),
        (Method::GET, format!("/v1/accounts/{savings}/deposits")),
        (Method::GET, format!("/v1/accounts/{savings}/close")),
        (Method::DELETE, "/admin/clock".to_owned()),
        (Method::POST, "/admin/audit".to_owned()),
        (Method::GET, "/admin/jobs/interest/run".to_owned()),
        (Method::POST, "/healthz".to_owned()),
        (Method::DELETE, "/v1/settlements".to_owned()),
        (Method::PUT, "/v1/settlements/1".to_owned()),
        (Method::GET, "/v1/settlements/1/pay".to_owned()),
        (Method::POST, "/v1/notifications".to_owned()),
        (Method::DELETE, "/v1/notifications".to_owned()),
    ] {
        let token = if path.starts_with("/admin") { ADMIN_TOKEN } else { token };
        let response = app.raw_request(method.clone(), &path, Some(token), None, None).await;
        assert_eq!(response.status, 405, "{method} {path}: {}", response.text);
        assert_problem_response(&response, 405, "method-not-allowed");
    }
    assert_nothing_moved(&app, &fixture).await;
}

#[tokio::test]
async fn account_ids_that_are_not_integers_are_404() {
    let app = spawn_app().await;
    let fixture = fixture(&app).await;
    let token = Some(fixture.alice.token.as_str());
    let amount = Some(br#"{"amount": 10000}"#.to_vec());
    for id in ["abc", "1.5", "1e3", "99999999999999999999", "%20", "0x10", "main", "-", "1%2F2"] {
        for (method, path, body) in [
            (Method::GET, format!("/v1/accounts/{id}"), None),
            (Method::POST, format!("/v1/accounts/{id}/charges"), amount.clone()),
            (Method::POST, format!("/v1/accounts/{id}/deposits"), amount.clone()),
            (Method::POST, format!("/v1/accounts/{id}/close"), None),
        ] {
            let response = app.raw_request(method.clone(), &path, token, Some("application/json"), body).await;
            assert_eq!(response.status, 404, "{method} {path}: {}", response.text);
            assert_problem_response(&response, 404, "not-found");
        }
    }
    // Integers that name no account of the caller's are 404 as well.
    for id in ["0", "-1", "1", "2", "9223372036854775807", "-9223372036854775808"] {
        let response = app
            .raw_request(
                Method::POST,
                &format!("/v1/accounts/{id}/charges"),
                token,
                Some("application/json"),
                amount.clone(),
            )
            .await;
        assert_problem_response(&response, 404, "not-found");
        let response = app.raw_request(Method::GET, &format!("/v1/accounts/{id}"), token, None, None).await;
        assert_problem_response(&response, 404, "not-found");
    }
    assert_nothing_moved(&app, &fixture).await;
}

#[tokio::test]
async fn settlement_ids_that_are_not_integers_or_not_the_callers_are_404() {
    let app = spawn_app().await;
    let fixture = fixture(&app).await;
    let token = Some(fixture.alice.token.as_str());
    for id in ["abc", "1.5", "1e3", "99999999999999999999", "%20", "-", "0", "-1", "1", "9223372036854775807"] {
        for (method, path) in
            [(Method::GET, format!("/v1/settlements/{id}")), (Method::POST, format!("/v1/settlements/{id}/pay"))]
        {
            let response = app.raw_request(method.clone(), &path, token, None, None).await;
            assert_eq!(response.status, 404, "{method} {path}: {}", response.text);
            assert_problem_response(&response, 404, "not-found");
        }
    }
    assert_nothing_moved(&app, &fixture).await;
}
