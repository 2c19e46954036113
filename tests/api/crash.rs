//! Crash safety: a real `minipay serve` process is killed with SIGKILL at random moments while
//! clients move money with idempotency keys, and started again; the clients retry every
//! unanswered request with the same key until it is answered. Afterwards every acknowledged
//! transfer exists exactly once, no key made two, the balances are what the acknowledged
//! transfers say, and the audit holds.
//!
//! scripts/test runs a short form (3 kills, 300 transfers, 6 clients). A longer run:
//! `MINIPAY_CRASH_KILLS=20 MINIPAY_CRASH_TRANSFERS=5000 MINIPAY_CRASH_CLIENTS=16 cargo nextest
//! run --test api crash --no-capture` (with the services of scripts/services up; see README).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

const FUNDING_KRW: i64 = 2_000_000;
/// Bound on the whole run, restarts included.
const RUN_BOUND: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
struct Acknowledged {
    id: i64,
    from: usize,
    to: usize,
    amount: i64,
}

/// What the clients share: where the server is now, and what was acknowledged.
struct Run {
    base: RwLock<String>,
    next: AtomicUsize,
    transfers: usize,
    acknowledged: Mutex<BTreeMap<String, Acknowledged>>,
    /// Requests sent again after no answer (connection refused or cut) or a 503.
    retries: AtomicUsize,
    /// Keys that needed at least one retry.
    interrupted: AtomicUsize,
}

/// One client: takes the next transfer number until all are taken, and sends it until it is
/// answered; it follows the server to wherever it was restarted.
async fn client(run: Arc<Run>, users: Arc<Vec<TestUser>>, me: usize) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    loop {
        let n = run.next.fetch_add(1, Ordering::SeqCst);
        if n >= run.transfers {
            break;
        }
        let to = (me + 1 + n % (users.len() - 1)) % users.len();
        let key = format!("crash-{n}");
        let amount = 1 + (n % 997) as i64;
        let body = json!({"to_account_id": users[to].main_account_id, "amount": amount, "memo": key});
        let mut attempts = 0;
        let answer = loop {
            attempts += 1;
            let base = run.base.read().unwrap().clone();
            let sent = http
                .post(format!("{base}/v1/transfers"))
                .bearer_auth(&users[me].token)
                .header("Idempotency-Key", &key)
                .json(&body)
                .send()
                .await;
            // No answer, or half of one: the server died under the request.
            let answered = match sent {
                Ok(response) => {
                    let status = response.status();
                    response.text().await.ok().map(|text| (status, serde_json::from_str::<Value>(&text)))
                }
                Err(_) => None,
            };
            match answered {
                Some((status, Ok(body))) if status != StatusCode::SERVICE_UNAVAILABLE => break (status, body),
                Some(_) | None => {
                    run.retries.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        if attempts > 1 {
            run.interrupted.fetch_add(1, Ordering::SeqCst);
        }
        let (status, body) = answer;
        assert_eq!(status, StatusCode::CREATED, "{key}: {body}");
        assert_eq!(body["status"], json!("completed"), "{key}: {body}");
        let id = body["id"].as_i64().expect("a transfer id");
        let previous = run.acknowledged.lock().unwrap().insert(key.clone(), Acknowledged { id, from: me, to, amount });
        assert!(previous.is_none(), "{key} acknowledged twice");
    }
}

#[tokio::test]
async fn transfers_survive_sigkill_of_the_server_exactly_once() {
    let kills = env_setting("MINIPAY_CRASH_KILLS", 3);
    let transfers = env_setting("MINIPAY_CRASH_TRANSFERS", 300);
    let clients = env_setting("MINIPAY_CRASH_CLIENTS", 6).max(2);
    // The in-process app owns the database; the killed servers are separate processes on it.
    let app = spawn_app().await;
    let mut users = Vec::new();
    for index in 0..clients {
        users.push(app.funded(format!("user{index}"), FUNDING_KRW).await);
    }
    let users = Arc::new(users);
    let server = spawn_server_process(&app).await;
    let run = Arc::new(Run {
        base: RwLock::new(server.base.clone()),
        next: AtomicUsize::new(0),
        transfers,
        acknowledged: Mutex::new(BTreeMap::new()),
        retries: AtomicUsize::new(0),
        interrupted: AtomicUsize::new(0),
    });
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients).map(|me| tokio::spawn(client(run.clone(), users.clone(), me))).collect();

    // Kills spread over the run: each once a random share of the transfers is acknowledged,
    // a random few milliseconds later (so mid-batch, mid-commit or mid-answer).
    let mut thresholds: Vec<usize> = {
        let mut rng = rand::thread_rng();
        (0..kills).map(|_| rng.gen_range(transfers / 10..=transfers * 9 / 10)).collect()
    };
    thresholds.sort_unstable();
    let mut server = Some(server);
    let mut killed_at = Vec::new();
    for threshold in thresholds {
        while run.acknowledged.lock().unwrap().len() < threshold {
            assert!(started.elapsed() < RUN_BOUND, "the clients stalled");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let delay = rand::thread_rng().gen_range(0..30);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let acknowledged = run.acknowledged.lock().unwrap().len();
        let status = server.take().expect("a running server").crash().await;
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status:?}");
        }
        killed_at.push(acknowledged);
        // Started again on another port; the clients follow.
        let restarted = spawn_server_process(&app).await;
        *run.base.write().unwrap() = restarted.base.clone();
        server = Some(restarted);
    }
    for task in tasks {
        task.await.expect("a client failed");
    }
    let elapsed = started.elapsed();
    let acknowledged = run.acknowledged.lock().unwrap().clone();
    println!(
        "crash: {kills} SIGKILLs (after {killed_at:?} acknowledged), {clients} clients, {} transfers acknowledged of {transfers}, {} retried keys, {} retries, {:.1} s",
        acknowledged.len(),
        run.interrupted.load(Ordering::SeqCst),
        run.retries.load(Ordering::SeqCst),
        elapsed.as_secs_f64(),
    );
    assert_eq!(acknowledged.len(), transfers);

    let pool = PgPool::connect(&app.database_url).await.unwrap();
    // Each key made exactly the one transfer that was acknowledged for it.
    let rows: Vec<(i64, Option<String>, i64, String)> =
        sqlx::query_as("SELECT id, memo, amount, status FROM transfers ORDER BY id").fetch_all(&pool).await.unwrap();
    let mut by_memo: HashMap<String, Vec<i64>> = HashMap::new();
    for (id, memo, _, status) in &rows {
        assert_eq!(status, "completed", "transfer {id}");
        by_memo.entry(memo.clone().expect("every transfer has its key as memo")).or_default().push(*id);
    }
    let doubled: Vec<_> = by_memo.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(doubled.is_empty(), "keys with more than one transfer: {doubled:?}");
    for (key, transfer) in &acknowledged {
        assert_eq!(by_memo.get(key), Some(&vec![transfer.id]), "{key}");
    }
    assert_eq!(rows.len(), transfers, "transfers nobody acknowledged");
    // One idempotency record per key, and one ledger movement per transfer.
    let keys: i64 = sqlx::query_scalar("SELECT count(DISTINCT key) FROM idempotency_keys WHERE key LIKE 'crash-%'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(keys, transfers as i64);
    let movements: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT t.id, count(l.id) FROM transfers t LEFT JOIN ledger_transfers l ON l.transfer_id = t.id
          GROUP BY t.id HAVING count(l.id) <> 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(movements.is_empty(), "transfers without exactly one ledger movement: {movements:?}");
    let moves = acknowledged.values().map(|transfer| (transfer.from, transfer.to, transfer.amount));
    assert_balances_after(&app, &users, FUNDING_KRW, moves).await;
    app.assert_audit_ok().await;
    drop(server);
}
