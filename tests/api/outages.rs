//! PostgreSQL stopped and started again under load: a proxy in front of it is cut (every
//! connection reset, every new one refused, as a stopped server would) while clients move
//! money, then restored. The server answers 503 `unavailable` with Retry-After meanwhile,
//! never 500 and never later than its request timeout, and recovers by itself: nothing is
//! restarted. (ClickHouse unreachable for a while: see history.rs.)

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

const CLIENTS: usize = 4;
const FUNDING_KRW: i64 = 1_000_000;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// What a client may wait for an answer beyond the server's request timeout.
const ANSWER_SLACK: Duration = Duration::from_secs(2);
/// Bound on every wait below (each is normally a fraction of a second).
const PHASE_BOUND: Duration = Duration::from_secs(30);

const BEFORE_CUT: u8 = 0;
const CUT: u8 = 1;
const RESTORED: u8 = 2;

/// A transfer the server acknowledged (201), by its idempotency key.
#[derive(Debug, Clone)]
struct Acknowledged {
    id: i64,
    from: usize,
    to: usize,
    amount: i64,
}

#[derive(Default)]
struct Load {
    phase: AtomicU8,
    stop: AtomicBool,
    acknowledged: Mutex<BTreeMap<String, Acknowledged>>,
    /// Answers per phase: [201, 503].
    answers: [[AtomicUsize; 2]; 3],
}

impl Load {
    fn count(&self, phase: u8, answer: usize) -> usize {
        self.answers[phase as usize][answer].load(Ordering::SeqCst)
    }
}

/// Asserts that a 503 is the documented one: problem+json `unavailable` with Retry-After.
fn assert_unavailable(status: StatusCode, headers: &reqwest::header::HeaderMap, body: &Value, context: &str) {
    assert_eq!(status, 503, "{context}: {body}");
    assert_eq!(body["code"], json!("unavailable"), "{context}: {body}");
    assert_eq!(body["status"], json!(503), "{context}: {body}");
    let content_type = headers.get(reqwest::header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
    assert_eq!(content_type, Some("application/problem+json"), "{context}");
    let retry_after = headers.get(reqwest::header::RETRY_AFTER).and_then(|value| value.to_str().ok());
    assert!(retry_after.is_some_and(|value| value.parse::<u32>().is_ok()), "{context}: Retry-After {retry_after:?}");
}

/// Sends one request and checks it came back within the request timeout.
async fn timed(request: reqwest::RequestBuilder, context: &str) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let started = Instant::now();
    let response = request.send().await.unwrap_or_else(|error| panic!("{context}: {error}"));
    let status = response.status();
    let headers = response.headers().clone();
    let body = serde_json::from_str(&response.text().await.unwrap_or_default()).unwrap_or(Value::Null);
    let took = started.elapsed();
    assert!(took <= REQUEST_TIMEOUT + ANSWER_SLACK, "{context}: answered after {took:?}");
    (status, headers, body)
}

/// One client: transfers from `users[me]` to the next user, each with its own key, retried
/// with the same key after every 503 until it is acknowledged; anything else fails the test.
async fn client(app: Arc<TestApp>, users: Arc<Vec<TestUser>>, load: Arc<Load>, me: usize) {
    let to = (me + 1) % users.len();
    for n in 0.. {
        if load.stop.load(Ordering::SeqCst) {
            break;
        }
        let key = format!("outage-{me}-{n}");
        let amount = 1 + (n % 100) as i64;
        loop {
            let request = app
                .client
                .post(app.url("/v1/transfers"))
                .bearer_auth(&users[me].token)
                .header("Idempotency-Key", &key)
                .json(&json!({"to_account_id": users[to].main_account_id, "amount": amount, "memo": key}));
            let (status, headers, body) = timed(request, &key).await;
            let phase = load.phase.load(Ordering::SeqCst);
            if status == StatusCode::CREATED {
                load.answers[phase as usize][0].fetch_add(1, Ordering::SeqCst);
                assert_eq!(body["status"], json!("completed"), "{body}");
                let id = body["id"].as_i64().expect("a transfer id");
                let previous =
                    load.acknowledged.lock().unwrap().insert(key.clone(), Acknowledged { id, from: me, to, amount });
                assert!(previous.is_none(), "{key} acknowledged twice");
                break;
            }
            assert_unavailable(status, &headers, &body, &key);
            load.answers[phase as usize][1].fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls until `done` holds; fails after `PHASE_BOUND`.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < PHASE_BOUND, "not within {PHASE_BOUND:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn readiness(app: &TestApp) -> (StatusCode, Value) {
    let (status, _, body) = timed(app.client.get(app.url("/readyz")), "/readyz").await;
    (status, body)
}

/// The app's database URL with the proxy's server in front of it.
fn through(proxied_server: &str, database_url: &str) -> String {
    let (server, _) = proxied_server.rsplit_once('/').expect("the proxied URL names a database");
    let (_, database) = database_url.rsplit_once('/').expect("the database URL names a database");
    format!("{server}/{database}")
}

#[tokio::test]
async fn postgres_stopped_under_load_answers_503_and_recovers_by_itself() {
    let (proxy, proxied) = TcpProxy::in_front_of(&std::env::var("DATABASE_URL").unwrap()).await;
    let app = spawn_app_with(|config| {
        config.database_url = through(&proxied, &config.database_url).into();
        config.request_timeout = REQUEST_TIMEOUT;
        // Sessions checked before the cut stay trusted through it, so that commands get as
        // far as the ledger writer (with an uncached session they stop at the 503 of auth).
        config.session_cache_ttl = PHASE_BOUND * 4;
    })
    .await;
    assert!(app.database_url.contains(&proxy.addr().to_string()), "the app goes through the proxy");
    let direct = PgPool::connect(&database_url_for(&app.database)).await.unwrap();
    let mut users = Vec::new();
    for index in 0..CLIENTS {
        users.push(app.funded(format!("user{index}"), FUNDING_KRW).await);
    }
    let (app, users, load) = (Arc::new(app), Arc::new(users), Arc::new(Load::default()));
    let clients: Vec<_> =
        (0..CLIENTS).map(|me| tokio::spawn(client(app.clone(), users.clone(), load.clone(), me))).collect();
    wait_until("transfers before the cut", || load.count(BEFORE_CUT, 0) >= 20).await;

    // PostgreSQL goes away.
    load.phase.store(CUT, Ordering::SeqCst);
    proxy.cut();
    let (status, body) = readiness(&app).await;
    assert_eq!((status, &body["postgres"]), (StatusCode::SERVICE_UNAVAILABLE, &json!("unreachable")), "{body}");
    let clients_503 = load.count(CUT, 1);
    wait_until("every client sees 503s", || load.count(CUT, 1) >= clients_503 + 3 * CLIENTS).await;
    // Reads, commands without a key and jobs: 503 as well, never 500. A charge without a key
    // goes straight to the ledger writer, whose batch cannot get a connection; a transfer
    // stops before it, at the look-up of the receiver's blocks.
    let failed_batches = metric_at(&app.client, &app.base, "minipay_ledger_batches_failed_total").await;
    let user = &users[0];
    let requests = [
        ("GET /v1/me", app.client.get(app.url("/v1/me")).bearer_auth(&user.token)),
        ("GET /v1/transfers", app.client.get(app.url("/v1/transfers")).bearer_auth(&user.token)),
        (
            "POST /v1/transfers without a key",
            app.client
                .post(app.url("/v1/transfers"))
                .bearer_auth(&user.token)
                .json(&json!({"to_account_id": users[1].main_account_id, "amount": 1})),
        ),
        (
            "POST /v1/accounts/{id}/charges without a key",
            app.client
                .post(app.url(&format!("/v1/accounts/{}/charges", user.main_account_id)))
                .bearer_auth(&user.token)
                .json(&json!({"amount": 1})),
        ),
        (
            "POST /admin/jobs/reminders/run",
            app.client.post(app.url("/admin/jobs/reminders/run")).bearer_auth(ADMIN_TOKEN),
        ),
        ("GET /admin/audit", app.client.get(app.url("/admin/audit")).bearer_auth(ADMIN_TOKEN)),
    ];
    for (what, request) in requests {
        let (status, headers, body) = timed(request, what).await;
        assert_unavailable(status, &headers, &body, what);
    }
    assert!(
        metric_at(&app.client, &app.base, "minipay_ledger_batches_failed_total").await > failed_batches,
        "the ledger writer answered the keyless charge from a failed batch"
    );

    // PostgreSQL is back: nothing is restarted.
    load.phase.store(RESTORED, Ordering::SeqCst);
    proxy.restore();
    let started = Instant::now();
    loop {
        let (status, body) = readiness(&app).await;
        if status == StatusCode::OK {
            assert_eq!(body["postgres"], json!("ok"), "{body}");
            break;
        }
        assert!(started.elapsed() < PHASE_BOUND, "not ready again: {body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_until("transfers after the restore", || load.count(RESTORED, 0) >= 20).await;
    load.stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.await.expect("a client failed");
    }
    let acknowledged = load.acknowledged.lock().unwrap().clone();
    println!(
        "postgres outage: {} transfers acknowledged ({} before the cut, {} during, {} after); 503s: {} during the cut, {} after the restore",
        acknowledged.len(),
        load.count(BEFORE_CUT, 0),
        load.count(CUT, 0),
        load.count(RESTORED, 0),
        load.count(CUT, 1),
        load.count(RESTORED, 1),
    );

    // Every acknowledged transfer exists once, and nothing else does.
    let rows: Vec<(i64, Option<String>, i64, String)> =
        sqlx::query_as("SELECT id, memo, amount, status FROM transfers ORDER BY id").fetch_all(&direct).await.unwrap();
    let mut by_memo: HashMap<String, Vec<i64>> = HashMap::new();
    for (id, memo, _, status) in &rows {
        assert_eq!(status, "completed", "transfer {id}");
        by_memo.entry(memo.clone().expect("every transfer has its key as memo")).or_default().push(*id);
    }
    for (key, transfer) in &acknowledged {
        assert_eq!(by_memo.get(key), Some(&vec![transfer.id]), "{key}");
    }
    assert_eq!(rows.len(), acknowledged.len(), "transfers that nobody acknowledged: {by_memo:?}");
    let moves = acknowledged.values().map(|transfer| (transfer.from, transfer.to, transfer.amount));
    assert_balances_after(&app, &users, FUNDING_KRW, moves).await;
    // The forwarder went on too: it empties the outbox, and the stores agree.
    wait_for_empty_outbox(&direct, PHASE_BOUND).await;
    app.assert_audit_ok().await;
    drop(proxy);
}
