//! Any number of server processes on one database behave as one. Their batches meet on hot rows
//! (the receivers' accounts, the external account, idempotency keys, the savings accounts the
//! interest job pays); the later batch waits for the other's claims on their accounts before it
//! starts (or, meeting a row it did not claim, fails its serialization check and is retried),
//! so every request is answered as if one process had taken them all: no 5xx, each key applied
//! once, the balances what the answers say, and the audit holds.
//!
//! scripts/test runs a short form (8 senders × 24 operations each, through two and through
//! three processes). A bigger one, with the services up:
//! `MINIPAY_MULTI_SENDERS=32 MINIPAY_MULTI_OPERATIONS=250 MINIPAY_MULTI_HOT=2 cargo nextest run
//! --test api multi_process --no-capture`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

const FUNDING_KRW: i64 = 1_000_000;
/// Each hot user asks every sender for this much in one settlement.
const SHARE_KRW: i64 = 1_000;

/// Sends one request to `base` with an optional `Idempotency-Key`; the body as JSON (`Null`
/// when there is none).
async fn send(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
    key: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = http.request(method, format!("{base}{path}")).bearer_auth(token);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap_or_else(|error| panic!("{path} to {base}: {error}"));
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A keyed transfer whose batch's write meets an account row that another transaction
/// updated and committed meanwhile (no batch does, their claims keep them apart, but the
/// ledger must not rely on that alone): the batch fails its serialization check on that
/// update, is retried, and the transfer is answered and applied once.
#[tokio::test]
async fn a_keyed_transfer_whose_account_lock_meets_a_concurrent_update_is_retried() {
    let app = spawn_app().await;
    let alice = app.funded("alice", 50_000).await;
    let bob = app.signup("bob").await;
    let pool = PgPool::connect(&app.database_url).await.unwrap();
    let mut other = pool.begin().await.unwrap();
    sqlx::query("UPDATE accounts SET status = status WHERE id = $1")
        .bind(bob.main_account_id)
        .execute(&mut *other)
        .await
        .unwrap();
    let body = json!({"to_account_id": bob.main_account_id, "amount": 10_000, "memo": "rent"});
    let sent = {
        let (client, base, token, body) = (app.client.clone(), app.base.clone(), alice.token.clone(), body.clone());
        tokio::spawn(async move {
            send(&client, &base, &token, Method::POST, "/v1/transfers", Some(&body), Some("rent-1")).await
        })
    };
    // The batch holds the gate and its write waits for bob's row; the update commits under it.
    wait_for_lock_wait(&pool, "UPDATE accounts a").await;
    other.commit().await.unwrap();
    let (status, first) = sent.await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert!(metric_at(&app.client, &app.base, "minipay_ledger_batch_retries_total").await >= 1);

    let again =
        send(&app.client, &app.base, &alice.token, Method::POST, "/v1/transfers", Some(&body), Some("rent-1")).await;
    assert_eq!(again, (StatusCode::CREATED, first));
    assert_eq!(app.balance(&alice).await, 40_000);
    assert_eq!(app.balance(&bob).await, 10_000);
    app.assert_audit_ok().await;
}

#[derive(Debug, Clone)]
struct Sender {
    user: TestUser,
    savings_id: i64,
}

/// What the senders share: where the servers are, who is who, and what was answered.
struct Run {
    bases: Vec<String>,
    senders: Vec<Sender>,
    hot: Vec<TestUser>,
    /// One settlement per hot user, each asking every sender for `SHARE_KRW`.
    settlements: Vec<(i64, usize)>,
    operations: usize,
    outcome: Mutex<Outcome>,
}

#[derive(Default)]
struct Outcome {
    /// Balance changes per account that the acknowledged answers add up to.
    moved: HashMap<i64, i64>,
    /// Memos of the acknowledged transfers (each unique: the key, or a tag for unkeyed ones).
    memos: HashSet<String>,
    keys: usize,
    /// Answers per operation and status.
    answers: BTreeMap<String, usize>,
    /// Answers that were not the success the operation should get.
    unexpected: Vec<String>,
}

impl Outcome {
    fn moved(&mut self, account_id: i64, amount: i64) {
        *self.moved.entry(account_id).or_default() += amount;
    }
}

/// One sender's operations, each through the next process in turn; keyed ones are sent again
/// with their key through another process, which must replay the first answer.
async fn sender(run: Arc<Run>, me: usize) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let Sender { user, savings_id } = run.senders[me].clone();
    let mut unpaid: Vec<(i64, usize)> = run.settlements.clone();
    for n in 0..run.operations {
        let base = &run.bases[(me + n) % run.bases.len()];
        let keyed = (me + n).is_multiple_of(2);
        let key = format!("k-{me}-{n}");
        let key = keyed.then_some(key.as_str());
        let tag = key.map_or_else(|| format!("u-{me}-{n}"), str::to_owned);
        let (amount, choice) = {
            let mut rng = rand::thread_rng();
            (rng.gen_range(1..=2_000i64), rng.gen_range(0..10))
        };
        let hot = &run.hot[(me + n) % run.hot.len()];
        let (label, path, body, expected) = match choice {
            0..=3 => (
                "transfer",
                "/v1/transfers".to_owned(),
                Some(json!({"to_account_id": hot.main_account_id, "amount": amount, "memo": tag})),
                StatusCode::CREATED,
            ),
            4 | 5 => (
                "charge",
                format!("/v1/accounts/{}/charges", user.main_account_id),
                Some(json!({"amount": amount + 1_000})),
                StatusCode::CREATED,
            ),
            6 | 7 => (
                "deposit",
                format!("/v1/accounts/{savings_id}/deposits"),
                Some(json!({"amount": amount})),
                StatusCode::CREATED,
            ),
            _ => match unpaid.pop() {
                Some((settlement_id, _)) => {
                    ("pay", format!("/v1/settlements/{settlement_id}/pay"), None, StatusCode::OK)
                }
                None => (
                    "transfer",
                    "/v1/transfers".to_owned(),
                    Some(json!({"to_account_id": hot.main_account_id, "amount": amount, "memo": tag})),
                    StatusCode::CREATED,
                ),
            },
        };
        let (status, answer) = send(&http, base, &user.token, Method::POST, &path, body.as_ref(), key).await;
        let replayed = match key {
            Some(key) => {
                let other = &run.bases[(me + n + 1) % run.bases.len()];
                Some(send(&http, other, &user.token, Method::POST, &path, body.as_ref(), Some(key)).await)
            }
            None => None,
        };
        // A paid share's transfer, to learn what it moved.
        let share_transfer = if label == "pay" && status == expected {
            let share = answer["shares"]
                .as_array()
                .and_then(|shares| shares.iter().find(|share| share["user_id"] == json!(user.id)).cloned());
            let transfer_id = share.as_ref().and_then(|share| share["transfer_id"].as_i64());
            match transfer_id {
                Some(id) => {
                    Some(send(&http, base, &user.token, Method::GET, &format!("/v1/transfers/{id}"), None, None).await)
                }
                None => None,
            }
        } else {
            None
        };

        let mut outcome = run.outcome.lock().unwrap();
        *outcome.answers.entry(format!("{label} {}", status.as_u16())).or_default() += 1;
        if status != expected {
            outcome.unexpected.push(format!("{label} via {base} ({tag}): {status} {answer}"));
            continue;
        }
        if let Some((again_status, again)) = replayed {
            outcome.keys += 1;
            let same = match label {
                // The settlement is read after the payment: later payments may show in it.
                "pay" => again_status == status && again["id"] == answer["id"],
                _ => again_status == status && again == answer,
            };
            if !same {
                outcome.unexpected.push(format!("{label} {tag} replayed as {again_status} {again}, first {answer}"));
            }
        }
        match label {
            "transfer" => {
                let auto_charged = answer["auto_charged"].as_i64().unwrap();
                outcome.moved(user.main_account_id, auto_charged - amount);
                outcome.moved(hot.main_account_id, amount);
                outcome.memos.insert(tag);
            }
            "charge" => outcome.moved(user.main_account_id, amount + 1_000),
            "deposit" => {
                let auto_charged = answer["auto_charged"].as_i64().unwrap();
                outcome.moved(user.main_account_id, auto_charged - amount);
                outcome.moved(savings_id, amount);
            }
            _ => {
                let (status, transfer) = share_transfer.expect("a paid share names its transfer");
                assert_eq!(status, StatusCode::OK, "{transfer}");
                let paid = transfer["amount"].as_i64().unwrap();
                outcome.moved(user.main_account_id, transfer["auto_charged"].as_i64().unwrap() - paid);
                outcome.moved(transfer["to_account_id"].as_i64().unwrap(), paid);
            }
        }
    }
}

/// `processes` server processes and an interest job run beside them, all on one database;
/// the senders' operations go through every process at once.
async fn the_same_traffic_through(processes: usize) {
    let senders = env_setting("MINIPAY_MULTI_SENDERS", 8).max(1);
    let operations = env_setting("MINIPAY_MULTI_OPERATIONS", 24);
    let hot_users = env_setting("MINIPAY_MULTI_HOT", 2).max(1);
    // The in-process app owns the database, sets the users up and audits; the traffic goes
    // through the server processes only.
    let app = spawn_app().await;
    let mut hot = Vec::new();
    for index in 0..hot_users {
        hot.push(app.signup(&format!("hot{index}")).await);
    }
    let mut senders_list = Vec::new();
    for index in 0..senders {
        let user = app.funded(format!("sender{index}"), FUNDING_KRW).await;
        let (status, savings) =
            app.post("/v1/accounts", Some(&user.token), json!({"kind": "savings", "product": "free"})).await;
        assert_eq!(status, StatusCode::CREATED, "{savings}");
        senders_list.push(Sender { user, savings_id: savings["id"].as_i64().unwrap() });
    }
    let mut settlements = Vec::new();
    let ids: Vec<i64> = senders_list.iter().map(|sender| sender.user.id).collect();
    for (index, requester) in hot.iter().enumerate() {
        let (status, settlement) = app
            .post(
                "/v1/settlements",
                Some(&requester.token),
                json!({"total": SHARE_KRW * senders as i64, "mode": "equal", "participant_ids": ids,
                       "include_requester": false, "memo": "split"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{settlement}");
        settlements.push((settlement["id"].as_i64().unwrap(), index));
    }
    // The savings accounts opened days ago as far as the interest job can tell, so that every
    // date it catches up has them due (it runs on the real clock, beside the servers'). It pays
    // 0 KRW (their money comes in on its own business day); what matters is that it takes the
    // gate exclusively and updates the accounts that the deposits lock, while they run.
    let pool = PgPool::connect(&app.database_url).await.unwrap();
    sqlx::query("UPDATE accounts SET opened_at = opened_at - interval '40 days' WHERE kind = 'savings'")
        .execute(&pool)
        .await
        .unwrap();

    let mut servers = Vec::new();
    for _ in 0..processes {
        servers.push(spawn_server_process(&app).await);
    }
    let run = Arc::new(Run {
        bases: servers.iter().map(|server| server.base.clone()).collect(),
        senders: senders_list.clone(),
        hot: hot.clone(),
        settlements,
        operations,
        outcome: Mutex::new(Outcome::default()),
    });
    let started = Instant::now();
    // Two savings accounts per chunk: the job takes the gate exclusively every two accounts of
    // each of the 31 dates it catches up.
    let interest = minipay_command(&app, "jobs")
        .args(["run", "interest"])
        .env("MINIPAY_JOBS_CHUNK_SIZE", "2")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start minipay jobs run interest");
    let interest = tokio::spawn(async move { (interest.wait_with_output().await, started.elapsed()) });
    // The traffic starts once the job has (its first date run), so that the two overlap.
    let job_started = Instant::now();
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM job_runs WHERE job = 'interest'")
        .fetch_one(&pool)
        .await
        .unwrap()
        == 0
    {
        assert!(job_started.elapsed() < Duration::from_secs(30), "the interest job did not start");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let tasks: Vec<_> = (0..senders).map(|me| tokio::spawn(sender(run.clone(), me))).collect();
    for task in tasks {
        task.await.expect("a sender failed");
    }
    let traffic = started.elapsed();
    let (interest, interest_took) = interest.await.unwrap();
    let interest = interest.unwrap();
    assert!(interest.status.success(), "minipay jobs run interest failed: {:?}", interest.status);
    let report: Value = serde_json::from_slice(&interest.stdout).expect("the job prints its report");
    let mut retries = 0;
    for base in &run.bases {
        retries += metric_at(&app.client, base, "minipay_ledger_batch_retries_total").await;
    }
    let outcome = std::mem::take(&mut *run.outcome.lock().unwrap());
    println!(
        "multi_process: {processes} processes, {senders} senders × {operations} operations, {hot_users} hot users: \
         {:?}, {} keys replayed, {retries} batch retries, traffic {:.1} s, interest job processed {} in {:.1} s",
        outcome.answers,
        outcome.keys,
        traffic.as_secs_f64(),
        report["processed"],
        interest_took.as_secs_f64(),
    );
    assert!(
        outcome.unexpected.is_empty(),
        "{} of {} answers were not the expected success: {:#?}",
        outcome.unexpected.len(),
        outcome.answers.values().sum::<usize>(),
        outcome.unexpected
    );
    assert!(report["processed"].as_u64() >= Some(senders as u64), "the interest job had no work: {report}");

    // Each acknowledged transfer exists once, and nothing else was transferred.
    let memos: Vec<(String, i64)> =
        sqlx::query_as("SELECT memo, count(*) FROM transfers WHERE memo LIKE 'k-%' OR memo LIKE 'u-%' GROUP BY memo")
            .fetch_all(&pool)
            .await
            .unwrap();
    let doubled: Vec<_> = memos.iter().filter(|(_, count)| *count != 1).collect();
    assert!(doubled.is_empty(), "transfers made more than once: {doubled:?}");
    let stored: HashSet<String> = memos.into_iter().map(|(memo, _)| memo).collect();
    assert_eq!(stored, outcome.memos, "transfers that were made and the transfers that were acknowledged");
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys").fetch_one(&pool).await.unwrap();
    assert_eq!(keys, outcome.keys as i64, "one record per key");

    // Every balance is its funding and what the acknowledged answers moved (and the interest
    // the job paid, if any).
    let interest_paid: HashMap<i64, i64> = sqlx::query_as::<_, (i64, i64)>(
        "SELECT credit_account_id, sum(amount)::int8 FROM ledger_transfers WHERE kind = 'interest' GROUP BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let expected = |account_id: i64, funding: i64| {
        funding
            + outcome.moved.get(&account_id).copied().unwrap_or(0)
            + interest_paid.get(&account_id).copied().unwrap_or(0)
    };
    for sender in &senders_list {
        let user = &sender.user;
        assert_eq!(app.balance(user).await, expected(user.main_account_id, FUNDING_KRW), "{}", user.name);
        let savings = app.account(user, sender.savings_id).await["balance"].as_i64().unwrap();
        assert_eq!(savings, expected(sender.savings_id, 0), "{}'s savings", user.name);
    }
    for user in &hot {
        assert_eq!(app.balance(user).await, expected(user.main_account_id, 0), "{}", user.name);
    }
    app.assert_audit_ok().await;
    drop(servers);
}

#[tokio::test]
async fn keyed_and_unkeyed_commands_through_two_server_processes_are_each_answered_and_applied_once() {
    the_same_traffic_through(2).await;
}

#[tokio::test]
async fn keyed_and_unkeyed_commands_through_three_server_processes_are_each_answered_and_applied_once() {
    the_same_traffic_through(3).await;
}

/// Waits (at most 20 s, five rounds of counting) until the server at `base` runs `writers`
/// batches at once.
async fn wait_for_ledger_writers(app: &TestApp, base: &str, writers: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = metric_at(&app.client, base, "minipay_ledger_writers").await;
        if now == writers {
            return;
        }
        assert!(Instant::now() < deadline, "{base} runs {now} ledger writers, not {writers}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ledger's batch writers are a few per database, not per process: a server alone runs
/// both of its writers, two servers on one database run one each (two batches at once in all,
/// as one server did), and the one left takes both back once the other has crashed. Transfers
/// through both meanwhile are applied once each, and the audit holds.
#[tokio::test]
async fn serving_processes_share_the_databases_ledger_writers() {
    let app = spawn_app().await;
    let writers = minipay::config::LedgerConfig::default().writers as i64;
    assert_eq!(writers, 2, "the default this test is written for");
    wait_for_ledger_writers(&app, &app.base, writers).await;
    let alice = app.funded("alice", 100_000).await;
    let bob = app.funded("bob", 100_000).await;
    let other = spawn_server_process(&app).await;
    wait_for_ledger_writers(&app, &other.base, 1).await;
    wait_for_ledger_writers(&app, &app.base, 1).await;
    let to_bob = json!({"to_account_id": bob.main_account_id, "amount": 1_000});
    let to_alice = json!({"to_account_id": alice.main_account_id, "amount": 1_000});
    let sends = (0..10).map(|n| {
        let (base, from, body) = if n % 2 == 0 { (&app.base, &alice, &to_bob) } else { (&other.base, &bob, &to_alice) };
        send(&app.client, base, &from.token, Method::POST, "/v1/transfers", Some(body), None)
    });
    for (status, answer) in futures::future::join_all(sends).await {
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    other.crash().await;
    wait_for_ledger_writers(&app, &app.base, writers).await;
    assert_eq!(app.balance(&alice).await, 100_000);
    assert_eq!(app.balance(&bob).await, 100_000);
    app.assert_audit_ok().await;
}
