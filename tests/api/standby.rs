//! Plain reads from a PostgreSQL hot standby (`MINIPAY_DATABASE_REPLICA_URL`): a write answered
//! is read back at once whichever server answers, a standby that lags (replay paused) hands
//! the reads to the primary within the bound, and `X-Read-Source` says which answered.
//!
//! They need a standby of the test PostgreSQL: `DATABASE_REPLICA_URL` (`scripts/services up
//! standby` prints it; `scripts/test` starts one). Without it they are skipped, loudly, unless
//! `MINIPAY_TEST_REQUIRE_STANDBY=1`, which makes them fail.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::FutureExt;
use minipay::config::ReplicaConfig;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection};

use crate::helpers::{database_url_for, spawn_app_with, spawn_server_process_with, TestApp};

/// The standby's server (`postgres://.../`, without a database), or `None` after saying loudly
/// that the test is skipped.
fn standby_server() -> Option<String> {
    match std::env::var("DATABASE_REPLICA_URL") {
        Ok(url) if !url.is_empty() => {
            let (server, _) = url.rsplit_once('/').expect("DATABASE_REPLICA_URL ends with /DATABASE");
            Some(server.to_owned())
        }
        _ if std::env::var("MINIPAY_TEST_REQUIRE_STANDBY").as_deref() == Ok("1") => {
            panic!("MINIPAY_TEST_REQUIRE_STANDBY=1 but DATABASE_REPLICA_URL is not set: start a standby with `scripts/services up standby`")
        }
        _ => {
            eprintln!(
                "\n**********\nSKIPPED: DATABASE_REPLICA_URL is not set, so the hot standby tests do not run.\n\
                 `eval \"$(scripts/services up standby)\"` starts a standby (scripts/test does);\n\
                 MINIPAY_TEST_REQUIRE_STANDBY=1 makes this a failure.\n**********\n"
            );
            None
        }
    }
}

/// The test database on the standby: the standby replicates the whole cluster, so the database
/// the harness made on the primary is there under the same name.
fn replica_url_for(server: &str, database: &str) -> String {
    format!("{server}/{database}")
}

/// Holds the standby for a test, across test processes: shared by tests that expect it to
/// keep up, exclusive for the test that pauses its replay.
struct StandbyTurn {
    server: String,
    _lock: PgConnection,
}

const TURN_LOCK: &str = "SELECT pg_advisory_lock{}(hashtext('minipay-test-standby-replay'))";

impl StandbyTurn {
    async fn take(exclusive: bool) -> Option<StandbyTurn> {
        let server = standby_server()?;
        let mut lock = PgConnection::connect(&database_url_for("postgres")).await.expect("connect to the primary");
        let sql = TURN_LOCK.replace("{}", if exclusive { "" } else { "_shared" });
        lock.execute(sql.as_str()).await.expect("take the standby turn");
        Some(StandbyTurn { server, _lock: lock })
    }
}

/// An app whose plain reads go to the standby, waiting at most `wait` for it.
async fn spawn_with_standby(turn: &StandbyTurn, wait: Duration) -> TestApp {
    let mut replica_url = String::new();
    let app = spawn_app_with(|config| {
        replica_url = replica_url_for(&turn.server, &config.clickhouse_database);
        config.replica = ReplicaConfig { url: Some(replica_url.clone().into()), wait };
    })
    .await;
    wait_for_database_on_standby(&replica_url).await;
    app
}

/// Waits until the standby has replayed the creation of the test's database. Until then the
/// app's probes of the standby fail, and its reads rest on the primary for a second after each
/// failure: on a busy machine a test's first reads could land in that second.
async fn wait_for_database_on_standby(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match PgConnection::connect(url).await {
            Ok(connection) => {
                let _ = connection.close().await;
                return;
            }
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(error) => panic!("the standby never showed the test's database: {error}"),
        }
    }
}

/// A GET through `base`: status, body and `X-Read-Source`.
async fn read(app: &TestApp, base: &str, path: &str, token: &str) -> (StatusCode, Value, String) {
    let response = app.client.get(format!("{base}{path}")).bearer_auth(token).send().await.expect("request sent");
    let status = response.status();
    let source = response
        .headers()
        .get("x-read-source")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_else(|| "(none)".to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, source)
}

async fn transfer(app: &TestApp, token: &str, to: i64, amount: i64) -> i64 {
    let (status, body) = app.post("/v1/transfers", Some(token), json!({"to_account_id": to, "amount": amount})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_i64().unwrap()
}

/// What a sender's reads must show right after its transfer `id` (the `count`th) was answered,
/// from `expected_source`.
async fn assert_sees_transfer(
    app: &TestApp,
    base: &str,
    sender: &crate::helpers::TestUser,
    (id, count, balance): (i64, i64, i64),
    expected_source: &str,
) {
    let account = sender.main_account_id;
    let token = sender.token.as_str();
    let (status, body, source) = read(app, base, &format!("/v1/accounts/{account}"), token).await;
    assert_eq!((status, body["balance"].as_i64(), source.as_str()), (StatusCode::OK, Some(balance), expected_source));
    let (status, body, source) = read(app, base, &format!("/v1/accounts/{account}/history?limit=1"), token).await;
    assert_eq!((status, source.as_str()), (StatusCode::OK, expected_source), "{body}");
    assert_eq!(body["entries"][0]["transfer_id"], json!(id), "{body}");
    assert_eq!(body["entries"][0]["balance_after"], json!(balance), "{body}");
    let (status, body, source) = read(app, base, &format!("/v1/accounts/{account}/history/naive?limit=1"), token).await;
    assert_eq!((status, source.as_str()), (StatusCode::OK, expected_source), "{body}");
    // The top-up that funded the sender, then its transfers.
    assert_eq!((body["total"].as_i64(), &body["entries"][0]["transfer_id"]), (Some(count + 1), &json!(id)), "{body}");
    let (status, body, source) = read(app, base, &format!("/v1/transfers/{id}"), token).await;
    assert_eq!((status, source.as_str()), (StatusCode::OK, expected_source), "{body}");
}

const FUNDS: i64 = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfers_answered_are_read_at_once_from_the_replica() {
    let Some(turn) = StandbyTurn::take(false).await else { return };
    // A generous bound: on a loaded machine the standby may take a while, and this test is
    // about what the replica shows, not about when the primary takes over.
    let app = spawn_with_standby(&turn, Duration::from_secs(5)).await;
    let receiver = app.signup("sb_receiver").await;
    let senders = join_all((0..4).map(|i| app.funded(format!("sb_sender{i}"), FUNDS))).await;
    const TRANSFERS: i64 = 6;
    join_all(senders.iter().map(|sender| async {
        let mut balance = FUNDS;
        for count in 1..=TRANSFERS {
            let amount = 1_000 + count;
            let id = transfer(&app, &sender.token, receiver.main_account_id, amount).await;
            balance -= amount;
            assert_sees_transfer(&app, &app.base, sender, (id, count, balance), "replica").await;
        }
    }))
    .await;
    let sent: i64 = (1..=TRANSFERS).map(|count| 1_000 + count).sum::<i64>() * 4;
    let (status, body, source) =
        read(&app, &app.base, &format!("/v1/accounts/{}", receiver.main_account_id), &receiver.token).await;
    assert_eq!((status, body["balance"].as_i64(), source.as_str()), (StatusCode::OK, Some(sent), "replica"));
    app.assert_audit_ok().await;
}

/// Several processes write to one primary: a server reads another's writes at once, from its
/// standby, though it never saw them being made.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_through_one_process_is_read_at_once_through_another() {
    let Some(turn) = StandbyTurn::take(false).await else { return };
    let app = spawn_with_standby(&turn, Duration::from_secs(5)).await;
    let url = replica_url_for(&turn.server, &app.database);
    let other = spawn_server_process_with(
        &app,
        &[("MINIPAY_DATABASE_REPLICA_URL", url.as_str()), ("MINIPAY_REPLICA_WAIT_MS", "5000")],
    )
    .await;
    let receiver = app.signup("sb_other_receiver").await;
    let sender = app.funded("sb_other_sender", FUNDS).await;
    let mut balance = FUNDS;
    for count in 1..=5 {
        let id = transfer(&app, &sender.token, receiver.main_account_id, 100 * count).await;
        balance -= 100 * count;
        assert_sees_transfer(&app, &other.base, &sender, (id, count, balance), "replica").await;
    }
    app.assert_audit_ok().await;
}

/// Waits (up to 10 s) until the standby has replayed what the primary had written when called.
async fn replayed_up_to_now(app: &TestApp, standby: &mut PgConnection) {
    let mut primary = PgConnection::connect(&app.database_url).await.expect("the primary");
    let target: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text").fetch_one(&mut primary).await.unwrap();
    for _ in 0..1000 {
        let replayed: bool = sqlx::query_scalar("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn")
            .bind(&target)
            .fetch_one(&mut *standby)
            .await
            .unwrap();
        if replayed {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the standby did not replay up to {target} within 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_replay_paused_reads_come_from_the_primary_after_the_bound() {
    let Some(turn) = StandbyTurn::take(true).await else { return };
    let wait = ReplicaConfig::default().wait;
    let app = spawn_with_standby(&turn, wait).await;
    let receiver = app.signup("sb_paused_receiver").await;
    let sender = app.funded("sb_paused_sender", FUNDS).await;
    let mut standby = PgConnection::connect(&replica_url_for(&turn.server, "postgres")).await.expect("the standby");
    // Paused before it replays the creation of this test's database, the standby could not
    // even be asked where it stands, and the server would rightly skip it without waiting.
    replayed_up_to_now(&app, &mut standby).await;
    standby.execute("SELECT pg_wal_replay_pause()").await.unwrap();
    let paused = AssertUnwindSafe(async {
        let mut balance = FUNDS;
        for count in 1..=3 {
            let id = transfer(&app, &sender.token, receiver.main_account_id, 500).await;
            balance -= 500;
            let started = Instant::now();
            assert_sees_transfer(&app, &app.base, &sender, (id, count, balance), "primary").await;
            // Four routed reads, each waiting out the bound before it went to the primary.
            assert!(started.elapsed() >= wait * 4, "{:?}", started.elapsed());
        }
        balance
    })
    .catch_unwind()
    .await;
    standby.execute("SELECT pg_wal_replay_resume()").await.unwrap();
    let balance = paused.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    // Replaying again, the standby catches up and takes the reads back.
    let path = format!("/v1/accounts/{}", sender.main_account_id);
    let mut source = String::new();
    for _ in 0..100 {
        let (status, body, from) = read(&app, &app.base, &path, &sender.token).await;
        assert_eq!((status, body["balance"].as_i64()), (StatusCode::OK, Some(balance)));
        source = from;
        if source == "replica" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(source, "replica");
    app.assert_audit_ok().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_with_no_recent_writes_come_from_the_replica() {
    let Some(turn) = StandbyTurn::take(false).await else { return };
    let app = spawn_with_standby(&turn, Duration::from_secs(5)).await;
    let user = app.funded("sb_quiet", FUNDS).await;
    let other = app.signup("sb_quiet_friend").await;
    let (status, body) = app.post("/v1/friends", Some(&user.token), json!({"name": other.name})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let account = user.main_account_id;
    for path in [
        "/v1/me".to_owned(),
        "/v1/users/sb_quiet_friend".to_owned(),
        "/v1/accounts".to_owned(),
        format!("/v1/accounts/{account}"),
        format!("/v1/accounts/{account}/history"),
        format!("/v1/accounts/{account}/history/naive"),
        format!("/v1/accounts/{account}/history/summary"),
        format!("/v1/accounts/{account}/history/summary/naive"),
        "/v1/transfers".to_owned(),
        "/v1/settlements".to_owned(),
        "/v1/notifications".to_owned(),
        "/v1/friends".to_owned(),
        "/v1/blocks".to_owned(),
    ] {
        let (status, body, source) = read(&app, &app.base, &path, &user.token).await;
        assert_eq!((status, source.as_str()), (StatusCode::OK, "replica"), "{path}: {body}");
    }
    // Writes say nothing of reads; someone else's account is not found on the replica either.
    let response = app
        .client
        .post(app.url(&format!("/v1/accounts/{account}/charges")))
        .bearer_auth(&user.token)
        .json(&json!({"amount": 1_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(response.headers().get("x-read-source").is_none());
    let (status, _, source) = read(&app, &app.base, &format!("/v1/accounts/{account}"), &other.token).await;
    assert_eq!((status, source.as_str()), (StatusCode::NOT_FOUND, "replica"));
    app.assert_audit_ok().await;
}
