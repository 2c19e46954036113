//! Authorization as a matrix over every route of the OpenAPI document: a stranger naming
//! another user's accounts, savings, transfers, settlements or history gets 404 and changes
//! nothing; every `/v1` route refuses a missing, garbage, expired or revoked token with 401.
//! A route added to the router without a row here fails these tests.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

use crate::helpers::*;
use crate::settlements;
use crate::transfers::send;

/// Alice owns one resource of every kind; carol deals with her; bob is a stranger to both.
pub struct World {
    pub alice: TestUser,
    pub bob: TestUser,
    pub carol: TestUser,
    pub free_savings_id: i64,
    pub fixed_savings_id: i64,
    /// Alice → carol, completed at once.
    pub immediate_transfer_id: i64,
    /// Alice → carol, waiting for carol.
    pub pending_out_id: i64,
    /// Carol → alice, waiting for alice.
    pub pending_in_id: i64,
    /// Alice asked carol (and herself) to share a bill.
    pub settlement_id: i64,
    // Alice lists carol as a friend and has blocked bob.
}

async fn transfer_mode(app: &TestApp, user: &TestUser, mode: &str) {
    let (status, body) =
        app.request(Method::PATCH, "/v1/me", Some(&user.token), Some(json!({"transfer_mode": mode}))).await;
    assert_eq!(status, 200, "{body}");
}

async fn open_savings(app: &TestApp, user: &TestUser, body: Value) -> i64 {
    let (status, body) = app.post("/v1/accounts", Some(&user.token), body).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_i64().unwrap()
}

async fn sent(app: &TestApp, from: &TestUser, to: &TestUser, amount: i64, status: &str) -> i64 {
    let (code, body) = send(app, from, to.main_account_id, amount).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"], json!(status), "{body}");
    body["id"].as_i64().unwrap()
}

pub async fn world(app: &TestApp) -> World {
    let alice = app.funded("alice", 500_000).await;
    let carol = app.funded("carol", 200_000).await;
    let bob = app.funded("bob", 100_000).await;
    let free_savings_id = open_savings(app, &alice, json!({"kind": "savings", "product": "free"})).await;
    let (status, body) = app
        .post(&format!("/v1/accounts/{free_savings_id}/deposits"), Some(&alice.token), json!({"amount": 50_000}))
        .await;
    assert_eq!(status, 201, "{body}");
    let fixed_savings_id =
        open_savings(app, &alice, json!({"kind": "savings", "product": "fixed", "installment_amount": 10_000})).await;
    let immediate_transfer_id = sent(app, &alice, &carol, 10_000, "completed").await;
    transfer_mode(app, &alice, "confirm").await;
    let pending_out_id = sent(app, &alice, &carol, 20_000, "pending").await;
    transfer_mode(app, &alice, "immediate").await;
    transfer_mode(app, &carol, "confirm").await;
    let pending_in_id = sent(app, &carol, &alice, 5_000, "pending").await;
    transfer_mode(app, &carol, "immediate").await;
    let settlement = settlements::created(app, &alice, 30_000, "equal", &[&carol], true).await;
    let settlement_id = settlement["id"].as_i64().unwrap();
    let (status, body) = app.post("/v1/friends", Some(&alice.token), json!({"name": "carol"})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app.post("/v1/blocks", Some(&alice.token), json!({"user_id": bob.id})).await;
    assert_eq!(status, 201, "{body}");
    World {
        alice,
        bob,
        carol,
        free_savings_id,
        fixed_savings_id,
        immediate_transfer_id,
        pending_out_id,
        pending_in_id,
        settlement_id,
    }
}

/// Everything a request could have changed, read straight from PostgreSQL: ledger rows,
/// statement entries, notifications, every account's postings and status, every transfer's
/// and share's status, top-ups counted against the daily limits, users and settlements, friends
/// and blocks.
pub async fn database_state(app: &TestApp) -> String {
    let mut conn = PgConnection::connect(&app.database_url).await.expect("connect to the test database");
    let state = database_state_on(&mut conn).await;
    conn.close().await.unwrap();
    state
}

pub async fn database_state_on(conn: &mut PgConnection) -> String {
    sqlx::query_scalar(
        "SELECT concat_ws(E'\\n',
            'ledger rows ' || (SELECT count(*) FROM ledger_transfers),
            'statement entries ' || (SELECT count(*) FROM statement_entries),
            'notifications ' || (SELECT count(*) FROM notifications),
            'users ' || (SELECT count(*) FROM users),
            'settlements ' || (SELECT count(*) FROM settlements),
            'accounts ' || (SELECT string_agg(concat_ws(':', id, status, debits_posted, credits_posted,
                                                        debits_pending, credits_pending), ' ' ORDER BY id)
                              FROM accounts),
            'transfers ' || coalesce((SELECT string_agg(id || ':' || status, ' ' ORDER BY id) FROM transfers), ''),
            'shares ' || coalesce((SELECT string_agg(concat_ws(':', settlement_id, user_id, status), ' '
                                                     ORDER BY settlement_id, user_id) FROM settlement_shares), ''),
            'daily charges ' || coalesce((SELECT string_agg(concat_ws(':', user_id, business_date, used), ' '
                                                            ORDER BY user_id, business_date) FROM daily_charges), ''),
            'friends ' || coalesce((SELECT string_agg(user_id || ':' || friend_id, ' ' ORDER BY user_id, friend_id)
                                      FROM friends), ''),
            'blocks ' || coalesce((SELECT string_agg(blocker_id || ':' || blocked_id, ' '
                                                     ORDER BY blocker_id, blocked_id) FROM blocks), ''),
            'profiles ' || (SELECT string_agg(concat_ws(':', id, name, transfer_mode, settlement_requests_from), ' '
                                              ORDER BY id) FROM users))",
    )
    .fetch_one(conn)
    .await
    .expect("read the database state")
}

/// One operation of the OpenAPI document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Operation {
    pub method: String,
    pub path: String,
    /// Whether the document asks for a bearer token.
    pub bearer: bool,
}

/// The operations the server documents at `/openapi.json`.
pub async fn documented_operations(app: &TestApp) -> (Value, Vec<Operation>) {
    let (status, document) = app.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().unwrap() {
            let bearer = operation["security"]
                .as_array()
                .is_some_and(|schemes| schemes.iter().any(|scheme| scheme.get("bearer").is_some()));
            operations.push(Operation { method: method.to_uppercase(), path: path.clone(), bearer });
        }
    }
    operations.sort();
    (document, operations)
}

/// Every path the router serves (read from its source), so that a route added to the router
/// but left out of the OpenAPI document fails too.
fn routed_paths() -> BTreeSet<String> {
    let source = include_str!("../../src/http/mod.rs");
    source
        .split(".route(\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .filter(|path| path != "/openapi.json")
        .collect()
}

#[tokio::test]
async fn every_routed_path_is_documented_and_only_sign_up_and_log_in_are_public_under_v1() {
    let app = spawn_app().await;
    let (_, operations) = documented_operations(&app).await;
    let documented: BTreeSet<String> = operations.iter().map(|operation| operation.path.clone()).collect();
    let routed = routed_paths();
    assert!(routed.len() >= 25, "the router's paths were not found: {routed:?}");
    let missing: Vec<_> = routed.difference(&documented).collect();
    assert!(missing.is_empty(), "routed but not in the OpenAPI document: {missing:?}");
    let public: Vec<_> = operations
        .iter()
        .filter(|operation| operation.path.starts_with("/v1") && !operation.bearer)
        .map(|operation| format!("{} {}", operation.method, operation.path))
        .collect();
    assert_eq!(public, ["POST /v1/sessions", "POST /v1/users"]);
}

/// A request of the matrix, for one documented operation.
#[derive(Debug, Clone)]
struct Probe {
    method: Method,
    path: String,
    body: Option<Value>,
}

fn probe(method: Method, path: String, body: Option<Value>) -> Probe {
    Probe { method, path, body }
}

/// What a stranger (bob) may do with `operation` against alice's resources: the requests that
/// name alice's resources, each of which must answer 404 (or, for a transfer's target, the
/// contract's single 422) and change nothing. Operations that take no id act on the caller's
/// own things only: they are probed by `a_strangers_lists_show_nothing_of_alice`.
fn foreign_probes(operation: &Operation, world: &World) -> Option<Vec<Probe>> {
    let alice = &world.alice;
    let main = alice.main_account_id;
    let accounts = [main, world.free_savings_id, world.fixed_savings_id];
    let transfers = [world.immediate_transfer_id, world.pending_out_id, world.pending_in_id];
    let amount = json!({"amount": 10_000});
    let each = |ids: &[i64], method: Method, template: &str, body: Option<Value>| -> Vec<Probe> {
        ids.iter().map(|id| probe(method.clone(), template.replace("{id}", &id.to_string()), body.clone())).collect()
    };
    let probes = match (operation.method.as_str(), operation.path.as_str()) {
        ("GET", path @ "/v1/accounts/{id}") => each(&accounts, Method::GET, path, None),
        ("POST", path @ "/v1/accounts/{id}/close") => each(&accounts, Method::POST, path, None),
        ("POST", path @ "/v1/accounts/{id}/charges") => each(&accounts, Method::POST, path, Some(amount)),
        ("POST", path @ "/v1/accounts/{id}/deposits") => each(&accounts, Method::POST, path, Some(amount)),
        ("GET", path @ "/v1/accounts/{id}/history")
        | ("GET", path @ "/v1/accounts/{id}/history/naive")
        | ("GET", path @ "/v1/accounts/{id}/history/summary")
        | ("GET", path @ "/v1/accounts/{id}/history/summary/naive") => each(&accounts, Method::GET, path, None),
        ("GET", path @ "/v1/transfers/{id}") => each(&transfers, Method::GET, path, None),
        ("POST", path @ "/v1/transfers/{id}/accept")
        | ("POST", path @ "/v1/transfers/{id}/reject")
        | ("POST", path @ "/v1/transfers/{id}/cancel") => each(&transfers, Method::POST, path, None),
        ("GET", path @ "/v1/settlements/{id}") => each(&[world.settlement_id], Method::GET, path, None),
        ("POST", path @ "/v1/settlements/{id}/pay") | ("POST", path @ "/v1/settlements/{id}/decline") => {
            each(&[world.settlement_id], Method::POST, path, None)
        }
        // Bob cannot take carol off alice's friends, nor lift alice's block of him: the routes
        // act on the caller's own lists only.
        ("DELETE", "/v1/friends/{user_id}") => {
            vec![probe(Method::DELETE, format!("/v1/friends/{}", world.carol.id), None)]
        }
        ("DELETE", "/v1/blocks/{user_id}") => [world.bob.id, world.carol.id]
            .iter()
            .map(|id| probe(Method::DELETE, format!("/v1/blocks/{id}"), None))
            .collect(),
        // Bob cannot send from alice's account, nor into her savings.
        ("POST", "/v1/transfers") => vec![
            probe(
                Method::POST,
                "/v1/transfers".to_owned(),
                Some(json!({"from_account_id": main, "to_account_id": world.bob.main_account_id, "amount": 1_000})),
            ),
            probe(
                Method::POST,
                "/v1/transfers".to_owned(),
                Some(json!({"from_account_id": main, "to_account_id": world.carol.main_account_id, "amount": 1_000})),
            ),
            probe(
                Method::POST,
                "/v1/transfers".to_owned(),
                Some(json!({"to_account_id": world.free_savings_id, "amount": 1_000})),
            ),
            probe(
                Method::POST,
                "/v1/transfers".to_owned(),
                Some(json!({"to_account_id": world.fixed_savings_id, "amount": 1_000})),
            ),
        ],
        // The caller's own things (lists, profile, a new account or bill, their own session),
        // or public by design (finding a friend by name), or not under /v1.
        ("GET", "/v1/accounts")
        | ("POST", "/v1/accounts")
        | ("GET", "/v1/transfers")
        | ("GET", "/v1/settlements")
        | ("POST", "/v1/settlements")
        | ("GET", "/v1/notifications")
        | ("GET", "/v1/friends")
        | ("POST", "/v1/friends")
        | ("GET", "/v1/blocks")
        | ("POST", "/v1/blocks")
        | ("GET", "/v1/me")
        | ("PATCH", "/v1/me")
        | ("DELETE", "/v1/sessions/current")
        | ("GET", "/v1/users/{name}")
        | ("POST", "/v1/users")
        | ("POST", "/v1/sessions") => return None,
        (_, path) if !path.starts_with("/v1/") => return None,
        (method, path) => panic!("{method} {path} is not in the authorization matrix: add a row for it"),
    };
    Some(probes)
}

/// A request that would succeed with alice's valid token (on her own resources), for the 401
/// matrix: only the token makes it fail.
fn own_probe(operation: &Operation, world: &World) -> Probe {
    let main = world.alice.main_account_id;
    let free = world.free_savings_id;
    let path = |template: &str, id: i64| template.replace("{id}", &id.to_string());
    let (method, path, body) = match (operation.method.as_str(), operation.path.as_str()) {
        ("GET", "/v1/accounts") => (Method::GET, "/v1/accounts".to_owned(), None),
        ("POST", "/v1/accounts") => {
            (Method::POST, "/v1/accounts".to_owned(), Some(json!({"kind": "savings", "product": "free"})))
        }
        ("GET", template @ "/v1/accounts/{id}") => (Method::GET, path(template, main), None),
        ("POST", template @ "/v1/accounts/{id}/close") => (Method::POST, path(template, free), None),
        ("POST", template @ "/v1/accounts/{id}/charges") => {
            (Method::POST, path(template, main), Some(json!({"amount": 10_000})))
        }
        ("POST", template @ "/v1/accounts/{id}/deposits") => {
            (Method::POST, path(template, free), Some(json!({"amount": 10_000})))
        }
        ("GET", template @ "/v1/accounts/{id}/history")
        | ("GET", template @ "/v1/accounts/{id}/history/naive")
        | ("GET", template @ "/v1/accounts/{id}/history/summary")
        | ("GET", template @ "/v1/accounts/{id}/history/summary/naive") => (Method::GET, path(template, main), None),
        ("GET", "/v1/transfers") => (Method::GET, "/v1/transfers?direction=incoming&limit=10".to_owned(), None),
        ("POST", "/v1/transfers") => (
            Method::POST,
            "/v1/transfers".to_owned(),
            Some(json!({"to_account_id": world.carol.main_account_id, "amount": 1_000})),
        ),
        ("GET", template @ "/v1/transfers/{id}") => (Method::GET, path(template, world.immediate_transfer_id), None),
        ("POST", template @ "/v1/transfers/{id}/accept") | ("POST", template @ "/v1/transfers/{id}/reject") => {
            (Method::POST, path(template, world.pending_in_id), None)
        }
        ("POST", template @ "/v1/transfers/{id}/cancel") => (Method::POST, path(template, world.pending_out_id), None),
        ("GET", "/v1/settlements") => (Method::GET, "/v1/settlements?role=requested".to_owned(), None),
        ("POST", "/v1/settlements") => (
            Method::POST,
            "/v1/settlements".to_owned(),
            Some(json!({"total": 10_000, "mode": "equal", "participant_ids": [world.bob.id]})),
        ),
        ("GET", template @ "/v1/settlements/{id}") => (Method::GET, path(template, world.settlement_id), None),
        // Alice holds no share to pay in her own bill, but carol could ask her to pay one: the
        // token is checked before the id either way.
        ("POST", template @ "/v1/settlements/{id}/pay") => (Method::POST, path(template, world.settlement_id), None),
        // Alice is the requester: 409 with a live token, but the token is checked first.
        ("POST", template @ "/v1/settlements/{id}/decline") => {
            (Method::POST, path(template, world.settlement_id), None)
        }
        ("GET", "/v1/friends") => (Method::GET, "/v1/friends".to_owned(), None),
        ("POST", "/v1/friends") => (Method::POST, "/v1/friends".to_owned(), Some(json!({"name": "carol"}))),
        ("DELETE", "/v1/friends/{user_id}") => (Method::DELETE, format!("/v1/friends/{}", world.carol.id), None),
        ("GET", "/v1/blocks") => (Method::GET, "/v1/blocks".to_owned(), None),
        ("POST", "/v1/blocks") => (Method::POST, "/v1/blocks".to_owned(), Some(json!({"user_id": world.bob.id}))),
        ("DELETE", "/v1/blocks/{user_id}") => (Method::DELETE, format!("/v1/blocks/{}", world.bob.id), None),
        ("GET", "/v1/notifications") => (Method::GET, "/v1/notifications?after=0&limit=10".to_owned(), None),
        ("GET", "/v1/me") => (Method::GET, "/v1/me".to_owned(), None),
        ("PATCH", "/v1/me") => (Method::PATCH, "/v1/me".to_owned(), Some(json!({"transfer_mode": "confirm"}))),
        ("DELETE", "/v1/sessions/current") => (Method::DELETE, "/v1/sessions/current".to_owned(), None),
        ("GET", "/v1/users/{name}") => (Method::GET, "/v1/users/carol".to_owned(), None),
        (method, path) => panic!("{method} {path} is not in the authorization matrix: add a row for it"),
    };
    probe(method, path, body)
}

async fn send_probe(app: &TestApp, probe: &Probe, token: Option<&str>) -> RawResponse {
    let body = probe.body.as_ref().map(|body| body.to_string().into_bytes());
    let content_type = body.as_ref().map(|_| "application/json");
    app.raw_request(probe.method.clone(), &probe.path, token, content_type, body).await
}

#[tokio::test]
async fn a_stranger_naming_alices_resources_on_any_route_gets_404_and_changes_nothing() {
    let app = spawn_app().await;
    let world = world(&app).await;
    let (_, operations) = documented_operations(&app).await;
    let before = database_state(&app).await;

    let mut probed = 0;
    for operation in &operations {
        let Some(probes) = foreign_probes(operation, &world) else { continue };
        assert!(!probes.is_empty(), "{operation:?}");
        for probe in probes {
            let response = send_probe(&app, &probe, Some(&world.bob.token)).await;
            let context = format!("bob: {} {} {:?}", probe.method, probe.path, probe.body);
            if probe.path == "/v1/transfers" {
                // A transfer always leaves the caller's own main account: a source account is
                // not a field, and any target but another user's main account gets one answer.
                assert_eq!(response.status, 422, "{context}: {}", response.text);
                assert_problem_response(&response, 422, "validation-failed");
            } else {
                assert_eq!(response.status, 404, "{context}: {}", response.text);
                assert_problem_response(&response, 404, "not-found");
            }
            probed += 1;
        }
    }
    assert!(probed >= 40, "only {probed} probes ran");
    println!("authorization matrix: {probed} foreign-resource probes, all refused");

    assert_eq!(database_state(&app).await, before, "a refused request changed something");
    // Alice's own view is intact too, and bob was never charged for trying.
    assert_eq!(app.balance(&world.bob).await, 100_000);
    let (status, body) = app.get(&format!("/v1/transfers/{}", world.pending_out_id), Some(&world.alice.token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], json!("pending"));
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn a_strangers_lists_show_nothing_of_alice() {
    let app = spawn_app().await;
    let world = world(&app).await;
    let bob = &world.bob;
    let (status, body) = app.get("/v1/accounts", Some(&bob.token)).await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<i64> = body["accounts"].as_array().unwrap().iter().map(|a| a["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [bob.main_account_id]);
    for path in ["/v1/transfers", "/v1/transfers?direction=incoming", "/v1/transfers?status=pending"] {
        let (status, body) = app.get(path, Some(&bob.token)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["transfers"], json!([]), "{path}");
    }
    for path in ["/v1/settlements", "/v1/settlements?role=owed", "/v1/settlements?role=requested"] {
        let (status, body) = app.get(path, Some(&bob.token)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["settlements"], json!([]), "{path}");
    }
    // Nothing that happened between alice and carol reaches bob.
    let (status, body) = app.get("/v1/notifications?after=0&limit=200", Some(&bob.token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["notifications"], json!([]), "{body}");
    // Alice and carol were told of what happened to them.
    for user in [&world.alice, &world.carol] {
        let (status, body) = app.get("/v1/notifications", Some(&user.token)).await;
        assert_eq!(status, 200, "{body}");
        assert!(!body["notifications"].as_array().unwrap().is_empty(), "{body}");
    }
    // Logging out ends bob's session only.
    let (status, _) = app.request(Method::DELETE, "/v1/sessions/current", Some(&bob.token), None).await;
    assert_eq!(status, 204);
    app.me(&world.alice).await;
    app.me(&world.carol).await;
}

#[tokio::test]
async fn every_v1_route_refuses_missing_garbage_expired_and_revoked_tokens_with_401() {
    let app = spawn_app().await;
    let world = world(&app).await;
    let (_, operations) = documented_operations(&app).await;
    let bearer: Vec<&Operation> = operations.iter().filter(|operation| operation.bearer).collect();
    assert!(bearer.len() >= 25, "{bearer:?}");

    let revoked = app.login("alice").await;
    let (status, _) = app.request(Method::DELETE, "/v1/sessions/current", Some(&revoked), None).await;
    assert_eq!(status, 204);
    // Refused at once by this process, whose session cache had just seen it.
    let (status, body) = app.get("/v1/me", Some(&revoked)).await;
    assert_problem(status, &body, 401, "unauthorized");
    let expiring = app.login("alice").await;
    // Cached as valid before it expires: expiry must still be checked on every request.
    app.me(&TestUser { token: expiring.clone(), ..world.alice.clone() }).await;
    let before = database_state(&app).await;

    let garbage = ["not-a-token".to_owned(), "0".repeat(64), format!("{}x", &world.alice.token[1..])];
    let mut refused = 0;
    for operation in &bearer {
        let probe = own_probe(operation, &world);
        let mut tokens: Vec<Option<&str>> = vec![None, Some(revoked.as_str())];
        tokens.extend(garbage.iter().map(|token| Some(token.as_str())));
        for token in tokens {
            let response = send_probe(&app, &probe, token).await;
            assert_eq!(response.status, 401, "{} {} with {token:?}: {}", probe.method, probe.path, response.text);
            assert_problem_response(&response, 401, "unauthorized");
            refused += 1;
        }
    }

    // Past the session lifetime (24 hours) every token of that log-in is refused.
    let now = app.clock_now().await;
    app.set_clock(&(now + chrono::Duration::hours(24) + chrono::Duration::seconds(1)).to_rfc3339()).await;
    for operation in &bearer {
        let probe = own_probe(operation, &world);
        let response = send_probe(&app, &probe, Some(&expiring)).await;
        assert_eq!(response.status, 401, "{} {} expired: {}", probe.method, probe.path, response.text);
        assert_problem_response(&response, 401, "unauthorized");
        refused += 1;
    }
    println!("401 matrix: {} routes, {refused} requests refused", bearer.len());

    assert_eq!(database_state(&app).await, before, "a request without a valid token changed something");
    app.assert_audit_ok().await;

    // With a live token the same requests get past authentication: the matrix is not
    // probing dead routes. (Logging out goes last, as it ends the session.)
    let fresh = app.login("alice").await;
    let mut in_order = bearer.clone();
    in_order.sort_by_key(|operation| operation.path == "/v1/sessions/current");
    for operation in in_order {
        let probe = own_probe(operation, &world);
        let response = send_probe(&app, &probe, Some(&fresh)).await;
        let status = response.status.as_u16();
        assert!(status != 401 && status < 500, "{} {} with a live token: {}", probe.method, probe.path, response.text);
    }
    app.assert_audit_ok().await;
}
