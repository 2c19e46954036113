//! Operator routes (clock, jobs, audit), health, readiness, metrics, and the `minipay audit`
//! command.

use chrono::{DateTime, Duration, Utc};
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::helpers::*;

async fn put_clock(app: &TestApp, token: Option<&str>, now: &str) -> (reqwest::StatusCode, Value) {
    app.request(Method::PUT, "/admin/clock", token, Some(json!({"now": now}))).await
}

/// Every admin route, with a body that would otherwise be valid.
fn admin_routes(now: DateTime<Utc>) -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/admin/audit", None),
        (Method::GET, "/admin/clock", None),
        (Method::PUT, "/admin/clock", Some(json!({"now": (now + Duration::hours(1)).to_rfc3339()}))),
        (Method::POST, "/admin/jobs/interest/run", None),
    ]
}

#[tokio::test]
async fn the_manual_clock_reads_and_moves_forward() {
    let app = spawn_app().await;
    let (status, body) = app.get("/admin/clock", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mode"], json!("manual"));
    let start: DateTime<Utc> = body["now"].as_str().unwrap().parse().unwrap();
    // A manual clock stands still between calls.
    assert_eq!(app.clock_now().await, start);

    let later = start + Duration::days(3) + Duration::minutes(7);
    let (status, body) =
        put_clock(&app, Some(ADMIN_TOKEN), &later.with_timezone(&chrono_tz::Asia::Seoul).to_rfc3339()).await;
    assert_eq!(status, 200, "{body}");
    let answered: DateTime<Utc> = body["now"].as_str().unwrap().parse().unwrap();
    assert_eq!(answered, later);
    assert_eq!(app.clock_now().await, later);

    // Setting the same instant again is not going backwards.
    let (status, body) = put_clock(&app, Some(ADMIN_TOKEN), &later.to_rfc3339()).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn the_manual_clock_refuses_to_go_backwards_with_409() {
    let app = spawn_app().await;
    let start = app.clock_now().await;
    let (status, body) = put_clock(&app, Some(ADMIN_TOKEN), &(start - Duration::seconds(1)).to_rfc3339()).await;
    assert_problem(status, &body, 409, "invalid-state");
    assert_eq!(app.clock_now().await, start);

    app.set_clock(&(start + Duration::days(40)).to_rfc3339()).await;
    let (status, body) = put_clock(&app, Some(ADMIN_TOKEN), &(start + Duration::days(1)).to_rfc3339()).await;
    assert_problem(status, &body, 409, "invalid-state");
    assert_eq!(app.clock_now().await, start + Duration::days(40));
}

#[tokio::test]
async fn the_clock_jumps_decades_ahead_but_refuses_times_it_cannot_partition() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let start = app.clock_now().await;
    for far in ["9999-12-31T23:59:59+09:00", "+10000-01-01T00:00:00Z", "9001-01-01T00:00:00Z"] {
        let (status, body) = put_clock(&app, Some(ADMIN_TOKEN), far).await;
        assert_problem(status, &body, 422, "validation-failed");
        assert_eq!(app.clock_now().await, start, "{far}");
    }
    // The clock did not move, so money still moves.
    let (status, body) = app.charge(&alice, 10_000).await;
    assert_eq!(status, 201, "{body}");

    app.set_clock("2100-03-01T00:00:00+09:00").await;
    let token = app.login("alice").await;
    let (status, body) = app
        .post(&format!("/v1/accounts/{}/charges", alice.main_account_id), Some(&token), json!({"amount": 3_000_000}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["daily_charge"]["resets_at"], json!("2100-03-01T15:00:00Z"));
    assert_eq!(body["account"]["balance"], json!(3_010_000));
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn admin_routes_answer_401_without_the_admin_token() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let start = app.clock_now().await;
    let wrong_admin = format!("{ADMIN_TOKEN}x");
    for (method, path, body) in admin_routes(start) {
        let body = body.map(|body| body.to_string().into_bytes());
        for token in [None, Some("wrong"), Some(wrong_admin.as_str()), Some(alice.token.as_str())] {
            let response = app.raw_request(method.clone(), path, token, Some("application/json"), body.clone()).await;
            assert_problem_response(&response, 401, "unauthorized");
        }
    }
    assert_eq!(app.clock_now().await, start);
}

#[tokio::test]
async fn jobs_answer_404_until_they_exist() {
    let app = spawn_app().await;
    for name in ["nope", "retention2", "INTEREST"] {
        let response =
            app.raw_request(Method::POST, &format!("/admin/jobs/{name}/run"), Some(ADMIN_TOKEN), None, None).await;
        assert_problem_response(&response, 404, "not-found");
    }
}

#[tokio::test]
async fn the_system_clock_cannot_be_set() {
    let app = spawn_app_with(|config| config.clock_mode = minipay::clock::ClockMode::System).await;
    let (status, body) = app.get("/admin/clock", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mode"], json!("system"));

    let next_year = (Utc::now() + Duration::days(365)).to_rfc3339();
    let (status, body) = put_clock(&app, Some(ADMIN_TOKEN), &next_year).await;
    assert_problem(status, &body, 404, "not-found");
    let now = app.clock_now().await;
    assert!(now < Utc::now() + Duration::minutes(1), "the system clock moved to {now}");
}

#[tokio::test]
async fn without_an_admin_token_configured_the_admin_routes_do_not_exist() {
    let app = spawn_app_with(|config| config.admin_token = None).await;
    for (method, path, body) in admin_routes(Utc::now()) {
        let body = body.map(|body| body.to_string().into_bytes());
        for token in [None, Some(ADMIN_TOKEN)] {
            let response = app.raw_request(method.clone(), path, token, Some("application/json"), body.clone()).await;
            assert_problem_response(&response, 404, "not-found");
        }
    }
    // The public API works as usual.
    let alice = app.signup("alice").await;
    let (status, body) = app.charge(&alice, 10_000).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let app = spawn_app().await;
    let response = app.raw_request(Method::GET, "/healthz", None, None, None).await;
    assert_eq!(response.status, 200, "{}", response.text);

    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["postgres"], json!("ok"), "{body}");
    assert_eq!(body["clickhouse"], json!("ok"), "{body}");

    let alice = app.signup("alice").await;
    let (status, body) = app.charge(&alice, 10_000).await;
    assert_eq!(status, 201, "{body}");
    let metrics = app.raw_request(Method::GET, "/metrics", None, None, None).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.content_type.as_deref().is_some_and(|value| value.starts_with("text/plain")),
        "{:?}",
        metrics.content_type
    );
    let batches: u64 = metrics
        .text
        .lines()
        .find_map(|line| line.strip_prefix("minipay_ledger_batch_size_count "))
        .unwrap_or_else(|| panic!("minipay_ledger_batch_size_count missing:\n{}", metrics.text))
        .trim()
        .parse()
        .unwrap();
    assert!(batches >= 1, "a charge was committed in a batch: {batches}");
}

#[tokio::test]
async fn the_admin_audit_reports_ok_with_its_checks() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let (status, body) = app.charge(&alice, 10_000).await;
    assert_eq!(status, 201, "{body}");
    let report = app.assert_audit_ok().await;
    let checks = report["checks"].as_array().unwrap();
    assert!(!checks.is_empty(), "{report}");
    assert!(checks.iter().all(|check| check["ok"] == json!(true)), "{report:#}");
}

#[tokio::test]
async fn the_audit_command_exits_0_and_prints_an_ok_report() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    for (user, amount) in [(&alice, 120_000), (&bob, 3_000_000), (&alice, 5)] {
        let (status, body) = app.charge(user, amount).await;
        assert_eq!(status, 201, "{body}");
    }

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_minipay"))
        .arg("audit")
        .env("DATABASE_URL", &app.database_url)
        // The audit compares PostgreSQL's statement entries with this app's ClickHouse database.
        .env("CLICKHOUSE_DATABASE", &app.database)
        .output()
        .await
        .expect("run minipay audit");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "minipay audit failed: {}\n{stdout}\n{stderr}", output.status);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("{error}: {stdout}"));
    assert_eq!(report["ok"], json!(true), "{report:#}");
    assert!(report["checks"].as_array().is_some_and(|checks| !checks.is_empty()), "{report:#}");
}

/// `transfers` has no foreign keys (the writer checks what they would): the audit does, and
/// names a transfer whose receiving account does not belong to the user it names, or does
/// not exist.
#[tokio::test]
async fn the_audit_names_a_transfer_whose_accounts_do_not_match_its_users() {
    let app = spawn_app().await;
    let ann = app.funded("ann", 10_000).await;
    let bob = app.signup("bob").await;
    let cid = app.signup("cid").await;
    let (status, sent) =
        app.post("/v1/transfers", Some(&ann.token), json!({"to_account_id": bob.main_account_id, "amount": 500})).await;
    assert_eq!(status, 201, "{sent}");
    app.assert_audit_ok().await;

    let mut conn = sqlx::PgConnection::connect(&app.database_url).await.unwrap();
    let failed = |report: &Value| -> Vec<String> {
        let checks = report["checks"].as_array().unwrap();
        checks.iter().filter(|check| check["ok"] != json!(true)).map(|check| check["name"].to_string()).collect()
    };
    for wrong_account in [cid.main_account_id, 999_999_999] {
        sqlx::query("UPDATE transfers SET to_account_id = $1 WHERE id = $2")
            .bind(wrong_account)
            .bind(sent["id"].as_i64().unwrap())
            .execute(&mut conn)
            .await
            .unwrap();
        let (status, report) = app.get("/admin/audit", Some(ADMIN_TOKEN)).await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["ok"], json!(false), "{report:#}");
        assert_eq!(failed(&report), vec!["\"transfers-name-their-accounts\"".to_owned()], "{report:#}");
        let check = report["checks"].as_array().unwrap().iter().find(|check| check["ok"] == json!(false)).unwrap();
        assert!(check["detail"].as_str().unwrap().contains(&sent["id"].to_string()), "{report:#}");
    }
}

/// Neither `settlements` nor `settlement_shares` has foreign keys (the creation checks what
/// they would): the audit does, and names a share whose user, settlement or transfer is
/// missing.
#[tokio::test]
async fn the_audit_names_a_share_whose_user_settlement_or_transfer_is_missing() {
    let app = spawn_app().await;
    let ann = app.funded("ann", 10_000).await;
    let bob = app.funded("bob", 10_000).await;
    let (status, created) = app
        .post("/v1/settlements", Some(&ann.token), json!({"total": 600, "mode": "equal", "participant_ids": [bob.id]}))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    let (status, paid) = app.post(&format!("/v1/settlements/{id}/pay"), Some(&bob.token), json!({})).await;
    assert_eq!(status, 200, "{paid}");
    let transfer_id = paid["shares"][0]["transfer_id"].as_i64().expect("the paid share's transfer");
    app.assert_audit_ok().await;

    let mut conn = sqlx::PgConnection::connect(&app.database_url).await.unwrap();
    let columns = [("user_id", bob.id), ("transfer_id", transfer_id), ("settlement_id", id)];
    for (column, value) in columns {
        let sql = format!("UPDATE settlement_shares SET {column} = $1 WHERE {column} = $2");
        let set = |to: i64, from: i64| sqlx::query(&sql).bind(to).bind(from);
        set(999_999_999, value).execute(&mut conn).await.unwrap();
        let (status, report) = app.get("/admin/audit", Some(ADMIN_TOKEN)).await;
        set(value, 999_999_999).execute(&mut conn).await.unwrap();
        assert_eq!(status, 200, "{report}");
        let failed: Vec<&Value> =
            report["checks"].as_array().unwrap().iter().filter(|check| check["ok"] != json!(true)).collect();
        assert_eq!(failed.len(), 1, "{column}: {report:#}");
        assert_eq!(failed[0]["name"], json!("settlements-name-their-parties"), "{report:#}");
        assert!(failed[0]["detail"].as_str().unwrap().contains("share "), "{report:#}");
    }
    app.assert_audit_ok().await;
}
