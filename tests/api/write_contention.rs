//! The ledger writer under contention: keyed transfers from many users at once (through one
//! server process and through two), and batches that meet an account another transaction
//! holds. Every request is answered once, each key pays once, and the money adds up.

use futures::future::join_all;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

const FUNDING_KRW: i64 = 100_000;

/// A keyed POST /v1/transfers to `base`.
async fn keyed_transfer(app: &TestApp, base: &str, user: &TestUser, key: &str, body: &Value) -> (StatusCode, Value) {
    post_keyed(&app.client, base, &user.token, key, body).await
}

async fn post_keyed(client: &reqwest::Client, base: &str, token: &str, key: &str, body: &Value) -> (StatusCode, Value) {
    let response = client
        .post(format!("{base}/v1/transfers"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// One planned transfer: sender and receiver (indices into the users), amount, key.
struct Planned {
    from: usize,
    to: usize,
    amount: i64,
    key: String,
}

impl Planned {
    fn body(&self, users: &[TestUser]) -> Value {
        json!({"to_account_id": users[self.to].main_account_id, "amount": self.amount, "memo": self.key})
    }
}

/// `per_user` keyed transfers from each user to random others.
fn plan(users: usize, per_user: usize) -> Vec<Planned> {
    let mut rng = rand::thread_rng();
    let mut planned = Vec::new();
    for from in 0..users {
        for n in 0..per_user {
            let to = (from + rng.gen_range(1..users)) % users;
            planned.push(Planned { from, to, amount: rng.gen_range(1..=1_000), key: format!("t-{from}-{n}") });
        }
    }
    planned
}

/// Sends every planned transfer twice at once (the second through the next process), all
/// transfers at once; both answers of a key must be the same 201. Returns the first answers.
async fn send_twice(app: &TestApp, bases: &[String], users: &[TestUser], planned: &[Planned]) -> Vec<Value> {
    let sends = planned.iter().enumerate().map(|(n, transfer)| {
        let body = transfer.body(users);
        let user = &users[transfer.from];
        let (first, second) = (&bases[n % bases.len()], &bases[(n + 1) % bases.len()]);
        async move {
            let (a, b) = tokio::join!(
                keyed_transfer(app, first, user, &transfer.key, &body),
                keyed_transfer(app, second, user, &transfer.key, &body)
            );
            (a, b)
        }
    });
    join_all(sends)
        .await
        .into_iter()
        .zip(planned)
        .map(|((a, b), transfer)| {
            assert_eq!(a.0, StatusCode::CREATED, "{}: {}", transfer.key, a.1);
            assert_eq!(a, b, "both sends of {} answer the same", transfer.key);
            assert_eq!(a.1["amount"], json!(transfer.amount), "{}", a.1);
            a.1
        })
        .collect()
}

/// Many users send keyed transfers to each other at once, each twice with its key, through
/// the servers at `bases`; each key pays once, a later repeat answers the first answer, the
/// key with another request is refused, and the balances and the audit hold.
async fn keyed_storm(app: &TestApp, bases: &[String]) {
    let users = join_all((0..24).map(|n| app.funded(format!("keyed{n}"), FUNDING_KRW))).await;
    let planned = plan(users.len(), 8);
    let answers = send_twice(app, bases, &users, &planned).await;
    let ids: std::collections::BTreeSet<i64> = answers.iter().map(|answer| answer["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), planned.len(), "one transfer per key");

    // Later repeats, through each process, answer as the first time and move nothing.
    for (n, (transfer, answer)) in planned.iter().zip(&answers).enumerate().step_by(7) {
        let base = &bases[n % bases.len()];
        let again = keyed_transfer(app, base, &users[transfer.from], &transfer.key, &transfer.body(&users)).await;
        assert_eq!(again, (StatusCode::CREATED, answer.clone()));
        let changed = json!({"to_account_id": users[transfer.to].main_account_id, "amount": transfer.amount + 1});
        let (status, body) = keyed_transfer(app, base, &users[transfer.from], &transfer.key, &changed).await;
        assert_problem(status, &body, 422, "idempotency-key-reused");
    }
    assert_balances_after(app, &users, FUNDING_KRW, planned.iter().map(|t| (t.from, t.to, t.amount))).await;
    let pool = PgPool::connect(&app.database_url).await.unwrap();
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE key LIKE 't-%'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(keys, planned.len() as i64, "one record per key");
    app.assert_audit_ok().await;
}

#[tokio::test]
async fn keyed_transfers_from_many_users_at_once_pay_once_each() {
    let app = spawn_app().await;
    keyed_storm(&app, std::slice::from_ref(&app.base)).await;
}

#[tokio::test]
async fn keyed_transfers_through_two_processes_pay_once_each() {
    let app = spawn_app().await;
    let second = spawn_server_process(&app).await;
    keyed_storm(&app, &[app.base.clone(), second.base.clone()]).await;
}

/// Keyed transfers to an account that another transaction holds and changes (as a job or a
/// batch of an older build might): their batch's write waits for the row, fails its
/// serialization check when the holder commits, and is retried. Each transfer is answered once, a repeat answers the
/// same, and the money moves once.
#[tokio::test]
async fn transfers_meeting_a_locked_account_are_answered_once_with_exact_money() {
    let app = spawn_app().await;
    let bob = app.signup("bob").await;
    let senders = join_all((0..6).map(|n| app.funded(format!("sender{n}"), FUNDING_KRW))).await;
    let pool = PgPool::connect(&app.database_url).await.unwrap();
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("UPDATE accounts SET status = status WHERE id = $1")
        .bind(bob.main_account_id)
        .execute(&mut *holder)
        .await
        .unwrap();

    let body = |n: usize| json!({"to_account_id": bob.main_account_id, "amount": 1_000 + n as i64});
    let sending: Vec<_> = senders
        .iter()
        .enumerate()
        .map(|(n, sender)| {
            let (client, base, token, body) = (app.client.clone(), app.base.clone(), sender.token.clone(), body(n));
            tokio::spawn(async move { post_keyed(&client, &base, &token, &format!("to-bob-{n}"), &body).await })
        })
        .collect();
    wait_for_lock_wait(&pool, "UPDATE accounts a").await;
    assert!(sending.iter().all(|task| !task.is_finished()), "answered while bob's account was held");
    holder.commit().await.unwrap();

    let mut answers = Vec::new();
    for task in sending {
        answers.push(task.await.unwrap());
    }
    for (n, (status, answer)) in answers.iter().enumerate() {
        assert_eq!(*status, StatusCode::CREATED, "{answer}");
        assert_eq!(answer["amount"], json!(1_000 + n as i64), "{answer}");
        let again = keyed_transfer(&app, &app.base, &senders[n], &format!("to-bob-{n}"), &body(n)).await;
        assert_eq!(&again, &answers[n]);
    }
    assert!(metric_at(&app.client, &app.base, "minipay_ledger_batch_retries_total").await >= 1);
    let sent: i64 = (0..senders.len()).map(|n| 1_000 + n as i64).sum();
    assert_eq!(app.balance(&bob).await, sent);
    for (n, sender) in senders.iter().enumerate() {
        assert_eq!(app.balance(sender).await, FUNDING_KRW - 1_000 - n as i64, "{}", sender.name);
    }
    app.assert_audit_ok().await;
}

/// Two processes send transfers to one receiver at once. Each batch claims its accounts before
/// its transaction, so a batch of one process waits for the other's to commit before it takes
/// its snapshot, instead of waiting for the receiver's row inside it and failing: no batch is
/// retried (each retry would have stopped both processes), and the money adds up.
#[tokio::test]
async fn two_processes_on_one_hot_account_take_turns_without_retries() {
    let app = spawn_app().await;
    let second = spawn_server_process(&app).await;
    let bases = [app.base.clone(), second.base.clone()];
    let hot = app.funded("hot", FUNDING_KRW).await;
    let mut users = join_all((0..16).map(|n| app.funded(format!("payer{n}"), FUNDING_KRW))).await;
    users.push(hot);
    let receiver = users.len() - 1;
    let planned: Vec<Planned> = (0..receiver)
        .flat_map(|from| {
            (0..5).map(move |n| Planned { from, to: receiver, amount: 100 + n as i64, key: format!("h-{from}-{n}") })
        })
        .collect();
    let sends = planned.iter().enumerate().map(|(n, transfer)| {
        let (app, base, user, body) = (&app, &bases[n % 2], &users[transfer.from], transfer.body(&users));
        async move { keyed_transfer(app, base, user, &transfer.key, &body).await }
    });
    for ((status, answer), transfer) in join_all(sends).await.iter().zip(&planned) {
        assert_eq!(*status, StatusCode::CREATED, "{}: {answer}", transfer.key);
    }
    let mut retries = 0;
    for base in &bases {
        retries += metric_at(&app.client, base, "minipay_ledger_batch_retries_total").await;
    }
    assert_eq!(retries, 0, "batches of the two processes failed each other");
    assert_balances_after(&app, &users, FUNDING_KRW, planned.iter().map(|t| (t.from, t.to, t.amount))).await;
    app.assert_audit_ok().await;
}
