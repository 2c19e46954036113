//! `MINIPAY_LEDGER_QUEUE_CAPACITY` bounds every ledger command a process holds: queued, waiting
//! for rows a running batch has claimed, or in a batch. Past it a command answers 503
//! `unavailable` with `Retry-After` and moves nothing; the accepted ones all complete once the
//! batches in the way go on.

use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

const CAPACITY: usize = 4;
/// Senders, one transfer each, all to one receiver (so each batch takes one of them and the
/// others wait for its rows).
const SENDERS: usize = 16;
const AMOUNT: i64 = 1_000;
const FUNDING: i64 = 10_000;

struct Answer {
    sender: usize,
    status: StatusCode,
    retry_after: Option<String>,
    body: Value,
}

/// One transfer of `AMOUNT` (a task of its own, so it owns what it needs).
async fn transfer(
    client: reqwest::Client,
    base: String,
    sender: usize,
    from: TestUser,
    to: TestUser,
    key: Option<&str>,
) -> Answer {
    let mut request = client
        .post(format!("{base}/v1/transfers"))
        .bearer_auth(&from.token)
        .json(&json!({"to_account_id": to.main_account_id, "amount": AMOUNT}));
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let retry_after = response.headers().get("retry-after").map(|value| value.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    Answer { sender, status, retry_after, body }
}

fn spawn_transfer(
    app: &TestApp,
    sender: usize,
    from: &TestUser,
    to: &TestUser,
    key: Option<&'static str>,
) -> tokio::task::JoinHandle<Answer> {
    tokio::spawn(transfer(app.client.clone(), app.base.clone(), sender, from.clone(), to.clone(), key))
}

async fn users(app: &TestApp) -> (TestUser, Vec<TestUser>) {
    let receiver = app.signup("receiver").await;
    let mut senders = Vec::new();
    for index in 0..SENDERS {
        senders.push(app.funded(format!("sender{index}"), FUNDING).await);
    }
    (receiver, senders)
}

/// Sends one transfer from each of `senders[first..]` at once while the ledger is held up, and
/// returns the answers that come back while it is: exactly those past the capacity, each a 503
/// with Retry-After. The others are returned still running.
async fn flood_while_held(
    app: &TestApp,
    receiver: &TestUser,
    senders: &[TestUser],
    first: usize,
    held: usize,
) -> (Vec<Answer>, FuturesUnordered<tokio::task::JoinHandle<Answer>>) {
    let mut running: FuturesUnordered<_> =
        (first..senders.len()).map(|index| spawn_transfer(app, index, &senders[index], receiver, None)).collect();
    let expected_refusals = senders.len() - first - (CAPACITY - held);
    let mut refused = Vec::new();
    while refused.len() < expected_refusals {
        // Refusals come at once; the bound only turns a queue that holds too much into a
        // failure instead of a hang.
        let answer = tokio::time::timeout(Duration::from_secs(20), running.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} of {} transfers refused while the ledger was held up: it holds more than {CAPACITY}",
                    refused.len(),
                    senders.len() - first
                )
            })
            .expect("transfers still running")
            .unwrap();
        assert_problem(answer.status, &answer.body, 503, "unavailable");
        assert_eq!(answer.retry_after.as_deref(), Some("1"), "{}", answer.body);
        refused.push(answer);
    }
    (refused, running)
}

/// The accepted transfers completed, the refused ones moved nothing, and the ledger holds.
async fn assert_accepted_completed(
    app: &TestApp,
    receiver: &TestUser,
    senders: &[TestUser],
    refused: &[Answer],
    mut running: FuturesUnordered<tokio::task::JoinHandle<Answer>>,
    mut accepted: Vec<usize>,
) {
    while let Some(answer) = running.next().await {
        let answer = answer.unwrap();
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        accepted.push(answer.sender);
    }
    assert_eq!(accepted.len(), CAPACITY, "accepted: {accepted:?}");
    let refused: Vec<usize> = refused.iter().map(|answer| answer.sender).collect();
    let moves = accepted.iter().map(|sender| (*sender, SENDERS, AMOUNT));
    let mut everyone = senders.to_vec();
    everyone.push(receiver.clone());
    let mut expected = vec![FUNDING; SENDERS];
    expected.push(0);
    for (from, to, amount) in moves {
        expected[from] -= amount;
        expected[to] += amount;
    }
    for (index, (user, expected)) in everyone.iter().zip(expected).enumerate() {
        assert_eq!(app.balance(user).await, expected, "{} (refused: {})", user.name, refused.contains(&index));
    }
    let pool = PgPool::connect(&app.database_url).await.unwrap();
    let transfers: i64 = sqlx::query_scalar("SELECT count(*) FROM transfers").fetch_one(&pool).await.unwrap();
    assert_eq!(transfers, CAPACITY as i64, "one transfer per accepted request");
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn commands_held_up_at_the_gate_count_against_the_capacity() {
    let app = spawn_app_with(|config| config.ledger.queue_capacity = CAPACITY).await;
    let (receiver, senders) = users(&app).await;
    let pool = PgPool::connect(&app.database_url).await.unwrap();
    // Every batch waits at the gate while the test holds it, as it would behind a job.
    let mut gate = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE ledger_batch_gate IN EXCLUSIVE MODE").execute(&mut *gate).await.unwrap();
    let (refused, running) = flood_while_held(&app, &receiver, &senders, 0, 0).await;
    gate.commit().await.unwrap();
    assert_accepted_completed(&app, &receiver, &senders, &refused, running, Vec::new()).await;
}

/// A batch that waits in its write (here for an idempotency key another transaction is
/// inserting) has handed the turn on: the other writer takes the commands that arrive, and those
/// that need the batch's rows wait for them. They count against the capacity too.
#[tokio::test]
async fn commands_waiting_for_a_running_batchs_rows_count_against_the_capacity() {
    let app = spawn_app_with(|config| config.ledger.queue_capacity = CAPACITY).await;
    let (receiver, senders) = users(&app).await;
    let pool = PgPool::connect(&app.database_url).await.unwrap();
    let mut other = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO idempotency_keys (user_id, key, fingerprint, status_code, body, created_at)
         VALUES ($1, 'held', '\\x00', 201, '{}', now())",
    )
    .bind(senders[0].id)
    .execute(&mut *other)
    .await
    .unwrap();
    let first = spawn_transfer(&app, 0, &senders[0], &receiver, Some("held"));
    // The batch's write (it begins with the accounts' update) waits for the other insert.
    wait_for_lock_wait(&pool, "WITH updated AS").await;
    let (refused, running) = flood_while_held(&app, &receiver, &senders, 1, 1).await;
    // The key was never recorded: the held batch goes on and records it.
    other.rollback().await.unwrap();
    let first = first.await.unwrap();
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_accepted_completed(&app, &receiver, &senders, &refused, running, vec![0]).await;
}
