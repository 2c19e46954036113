//! Split-bill flooding: creations per requester per hour (counted in PostgreSQL, so they hold
//! across server processes and concurrent requests) and open shares from one requester to one
//! participant, past which the answer is 429 with Retry-After and nothing is created.

use chrono::Duration;
use futures::future::join_all;
use minipay::domain::social::SocialLimits;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

use crate::declines::decline;
use crate::helpers::*;
use crate::settlements::pay;

struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

async fn create_at(app: &TestApp, base: &str, requester: &TestUser, participants: &[&TestUser]) -> Answer {
    let ids: Vec<i64> = participants.iter().map(|user| user.id).collect();
    let response = app
        .client
        .post(format!("{base}/v1/settlements"))
        .bearer_auth(&requester.token)
        .json(&json!({"total": 9_000, "mode": "equal", "participant_ids": ids, "memo": "pay now"}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .map(|value| value.to_str().unwrap().parse().expect("Retry-After is whole seconds"));
    Answer { status, retry_after, body: response.json().await.unwrap_or(Value::Null) }
}

async fn create(app: &TestApp, requester: &TestUser, participants: &[&TestUser]) -> Answer {
    create_at(app, &app.base, requester, participants).await
}

fn assert_created(answer: &Answer) -> i64 {
    assert_eq!(answer.status, 201, "{}", answer.body);
    answer.body["id"].as_i64().unwrap()
}

fn assert_limited(answer: &Answer, retry_after: u64) {
    assert_eq!(answer.status, 429, "{}", answer.body);
    assert_eq!(answer.body["code"], json!("too-many-requests"), "{}", answer.body);
    assert_eq!(answer.body["status"], json!(429), "{}", answer.body);
    assert_eq!(answer.retry_after, Some(retry_after), "{}", answer.body);
}

/// Settlements, shares and notifications in the database.
async fn created_rows(app: &TestApp) -> (i64, i64, i64) {
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM settlements), (SELECT count(*) FROM settlement_shares),
                (SELECT count(*) FROM notifications)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

fn limits(settlements_per_hour: u32, open_shares_per_participant: u32) -> SocialLimits {
    SocialLimits { settlements_per_hour, open_shares_per_participant, ..SocialLimits::default() }
}

#[tokio::test]
async fn creations_per_hour_are_limited_per_requester_with_retry_after() {
    let app = spawn_app_with(|config| config.social_limits = limits(3, 0)).await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let crowd = join_all((0..48).map(|i| app.funded(format!("p{i}"), 0))).await;
    let crowd: Vec<&TestUser> = crowd.iter().collect();
    let start = app.clock_now().await;

    assert_created(&create(&app, &alice, &crowd).await);
    app.set_clock(&(start + Duration::minutes(10)).to_rfc3339()).await;
    assert_created(&create(&app, &alice, &crowd).await);
    assert_created(&create(&app, &alice, &[&bob]).await);
    let before = created_rows(&app).await;
    // The fourth within the hour: refused until the first leaves the hour, 50 minutes on.
    assert_limited(&create(&app, &alice, &crowd).await, 50 * 60);
    assert_limited(&create(&app, &alice, &[&bob]).await, 50 * 60);
    assert_eq!(created_rows(&app).await, before, "a refused request created something");
    // Others are not held up by alice's limit.
    assert_created(&create(&app, &bob, &[&alice]).await);

    app.set_clock(&(start + Duration::minutes(59) + Duration::seconds(59) + Duration::milliseconds(500)).to_rfc3339())
        .await;
    assert_limited(&create(&app, &alice, &[&bob]).await, 1);
    app.set_clock(&(start + Duration::hours(1)).to_rfc3339()).await;
    assert_created(&create(&app, &alice, &[&bob]).await);
    // The two created at 00:10 still count.
    assert_limited(&create(&app, &alice, &[&bob]).await, 10 * 60);
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn the_hourly_limit_holds_for_concurrent_requests_and_across_server_processes() {
    let app = spawn_app_with(|config| config.social_limits = limits(4, 0)).await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let other = spawn_server_process_with(&app, &[("MINIPAY_SETTLEMENTS_PER_HOUR", "4")]).await;

    assert_created(&create_at(&app, &other.base, &alice, &[&bob]).await);
    let answers = join_all((0..12).map(|i| {
        let base = if i % 2 == 0 { app.base.clone() } else { other.base.clone() };
        let (alice, bob) = (&alice, &bob);
        let app = &app;
        async move { create_at(app, &base, alice, &[bob]).await }
    }))
    .await;
    let created = answers.iter().filter(|answer| answer.status == 201).count();
    assert_eq!(created, 3, "{:?}", answers.iter().map(|a| a.status).collect::<Vec<_>>());
    for answer in answers.iter().filter(|answer| answer.status != 201) {
        assert_eq!(answer.status, 429, "{}", answer.body);
        // Within the hour (the two processes' manual clocks started seconds apart).
        assert!(answer.retry_after.is_some_and(|secs| (1..=3_700).contains(&secs)), "{:?}", answer.retry_after);
    }
    assert_eq!(created_rows(&app).await.0, 4);
}

#[tokio::test]
async fn open_shares_from_one_requester_to_one_participant_are_bounded_until_paid_or_declined() {
    let app = spawn_app_with(|config| config.social_limits = limits(0, 2)).await;
    let alice = app.signup("alice").await;
    let bob = app.funded("bob", 50_000).await;
    let carol = app.signup("carol").await;

    let first = assert_created(&create(&app, &alice, &[&bob]).await);
    let second = assert_created(&create(&app, &alice, &[&bob, &carol]).await);
    let before = created_rows(&app).await;
    // A third open request to bob, alone or among others: refused whole.
    assert_limited(&create(&app, &alice, &[&bob]).await, 3600);
    assert_limited(&create(&app, &alice, &[&carol, &bob]).await, 3600);
    assert_eq!(created_rows(&app).await, before, "a refused request created something");
    // Carol has one open request from alice; others may still ask bob.
    assert_created(&create(&app, &alice, &[&carol]).await);
    assert_created(&create(&app, &carol, &[&bob]).await);

    // Bob pays one and declines the other: room for two more.
    let (status, body) = pay(&app, &bob, first).await;
    assert_eq!(status, 200, "{body}");
    assert_created(&create(&app, &alice, &[&bob]).await);
    assert_limited(&create(&app, &alice, &[&bob]).await, 3600);
    let (status, body) = decline(&app, &bob, second).await;
    assert_eq!(status, 200, "{body}");
    assert_created(&create(&app, &alice, &[&bob]).await);
    app.assert_audit_ok().await;
}

/// The answer for participants who cannot be asked names none of them, so that it cannot be
/// used to find out which user ids exist.
#[tokio::test]
async fn the_refusal_of_unknown_participants_names_no_ids() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let nobody = TestUser { id: 999_999_999, ..bob.clone() };
    let ghost = TestUser { id: 123_456_789, ..bob.clone() };
    let mut answers = Vec::new();
    for participants in [vec![&nobody], vec![&bob, &nobody], vec![&ghost, &bob, &nobody]] {
        let answer = create(&app, &alice, &participants).await;
        assert_eq!(answer.status, 422, "{}", answer.body);
        assert_eq!(answer.body["code"], json!("validation-failed"));
        let detail = answer.body["detail"].as_str().unwrap();
        assert!(!detail.chars().any(|c| c.is_ascii_digit()), "{detail}");
        answers.push(answer.body);
    }
    assert!(answers.windows(2).all(|pair| pair[0] == pair[1]), "{answers:?}");
    assert_eq!(created_rows(&app).await, (0, 0, 0));
}
