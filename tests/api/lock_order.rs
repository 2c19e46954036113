//! Everything that takes the ledger gate takes it before any row lock, as ledger batches do
//! (see the module documentation of the ledger writer): a job that locked rows and then waited
//! at the gate could wait for a batch that waits for those rows, and one of the two would be
//! ended as a deadlock. And nothing on a request path stops the batches: a split bill never
//! waits for a batch, and a batch waits for a split bill only to notify one of its participants.

use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;
use crate::settlements::create;

/// A receiver accepts a pending transfer while the reminders job reminds them of it. The
/// accept's batch holds the gate and the transfer's row, and its write waits for the receiver's
/// account row (another transaction holds it); the job starts meanwhile. Had the job locked the transfer before waiting at the
/// gate, the batch, once it had the account, would wait for the job's transfer lock while the
/// job waited for its gate: a deadlock, ending the job's run in an error. Taking the gate first,
/// the job waits for the batch and then finds the transfer accepted.
#[tokio::test]
async fn the_reminders_job_takes_the_gate_before_the_transfers_it_reminds_of() {
    let app = spawn_app().await;
    let alice = app.funded("alice", 10_000).await;
    let (status, body) = app
        .request(reqwest::Method::PATCH, "/v1/me", Some(&alice.token), Some(json!({"transfer_mode": "confirm"})))
        .await;
    assert_eq!(status, 200, "{body}");
    let bob = app.signup("bob").await;
    let (status, transfer) = app
        .post("/v1/transfers", Some(&alice.token), json!({"to_account_id": bob.main_account_id, "amount": 5_000}))
        .await;
    assert_eq!(status, 201, "{transfer}");
    assert_eq!(transfer["status"], json!("pending"));
    let id = transfer["id"].as_i64().unwrap();
    // 49 hours on: the receiver is due a reminder (24 hours before the 72-hour expiry).
    let sent: chrono::DateTime<chrono::Utc> = transfer["created_at"].as_str().unwrap().parse().unwrap();
    app.set_clock(&(sent + chrono::Duration::hours(49)).to_rfc3339()).await;
    // Sessions last a day.
    let bob = TestUser { token: app.login(&bob.name).await, ..bob };

    let pool = PgPool::connect(&app.database_url).await.unwrap();
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE")
        .bind(bob.main_account_id)
        .execute(&mut *holder)
        .await
        .unwrap();
    let accept = {
        let (client, url, token) =
            (app.client.clone(), app.url(&format!("/v1/transfers/{id}/accept")), bob.token.clone());
        tokio::spawn(async move {
            let response = client.post(url).bearer_auth(token).json(&json!({})).send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    wait_for_lock_wait(&pool, "UPDATE accounts a").await;
    let reminders = {
        let (client, url) = (app.client.clone(), app.url("/admin/jobs/reminders/run"));
        tokio::spawn(async move {
            let response = client.post(url).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    wait_for_lock_wait(&pool, "LOCK TABLE ledger_batch_gate IN EXCLUSIVE MODE").await;
    holder.commit().await.unwrap();

    let (status, accepted) = accept.await.unwrap();
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["status"], json!("completed"), "{accepted}");
    let (status, report) = reminders.await.unwrap();
    assert_eq!(status, 200, "the reminders job failed: {report}");
    assert_eq!(report["processed"], json!(0), "an accepted transfer is not reminded of: {report}");
    assert_eq!(app.balance(&bob).await, 5_000);
    app.assert_audit_ok().await;
}

/// Until a session of this database waits for a lock in a query containing `fragment`; never
/// gives up (race it against what should happen instead).
async fn until_lock_wait(pool: &PgPool, fragment: &str) {
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock' AND strpos(query, $1) > 0",
        )
        .bind(fragment)
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A split bill is created while a ledger batch on its participant's account is open (the
/// test holds one as a writer does: SERIALIZABLE, the gate shared, the accounts locked, as a
/// batch in which the participant pays), and a transfer between other users completes while a
/// split bill's transaction is open with everything it locks (a trigger of this test's database
/// holds the transaction at its notifications until the test lets it go). Only a transfer to a
/// participant waits for the split bill, at the participant's recipient lock, so that the
/// participant's notifications commit in id order.
#[tokio::test]
async fn split_bills_never_wait_for_ledger_batches_which_wait_for_them_only_to_notify_a_participant() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let carol = app.funded("carol", 50_000).await;
    let dave = app.signup("dave").await;
    let pool = PgPool::connect(&app.database_url).await.unwrap();
    let gate = "ledger_batch_gate";

    let mut batch = pool.begin().await.unwrap();
    for statement in ["SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "LOCK TABLE ledger_batch_gate IN ROW SHARE MODE"]
    {
        sqlx::query(statement).execute(&mut *batch).await.unwrap();
    }
    sqlx::query("SELECT 1 FROM accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind([bob.main_account_id, carol.main_account_id, dave.main_account_id])
        .execute(&mut *batch)
        .await
        .unwrap();
    let participants = [&bob];
    tokio::select! {
        (status, body) = create(&app, &alice, 10_000, "equal", &participants, false) => assert_eq!(status, 201, "{body}"),
        // Any wait of any statement: nothing else of this database runs meanwhile.
        () = until_lock_wait(&pool, "") => panic!("creating a split bill waits for a running batch"),
    }
    batch.rollback().await.unwrap();

    sqlx::raw_sql(
        "CREATE FUNCTION hold_split_bill_notifications() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_advisory_xact_lock_shared(20261130); RETURN NEW; END $$;
         CREATE TRIGGER hold_split_bill_notifications BEFORE INSERT ON notifications FOR EACH ROW
          WHEN (NEW.kind = 'settlement_requested') EXECUTE FUNCTION hold_split_bill_notifications();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut holder = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(20261130)").execute(&mut *holder).await.unwrap();
    let creating = {
        let (client, url, token) = (app.client.clone(), app.url("/v1/settlements"), alice.token.clone());
        let body = json!({"total": 20_000, "mode": "equal", "participant_ids": [bob.id], "include_requester": false});
        tokio::spawn(async move {
            let response = client.post(url).bearer_auth(token).json(&body).send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    wait_for_lock_wait(&pool, "INSERT INTO notifications").await;
    let to_dave = json!({"to_account_id": dave.main_account_id, "amount": 1_000});
    tokio::select! {
        (status, body) = app.post("/v1/transfers", Some(&carol.token), to_dave) => assert_eq!(status, 201, "{body}"),
        () = until_lock_wait(&pool, gate) => panic!("a ledger batch waits at the gate for a split bill's transaction"),
    }
    let to_bob = {
        let (client, url, token) = (app.client.clone(), app.url("/v1/transfers"), carol.token.clone());
        let body = json!({"to_account_id": bob.main_account_id, "amount": 2_000});
        tokio::spawn(async move {
            let response = client.post(url).bearer_auth(token).json(&body).send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    // The participant's recipient lock, taken by the batch in its insert of notifications after
    // its write: the transfer to bob waits there until the split bill (waiting in its own insert,
    // at the trigger) commits.
    wait_for_lock_waits(&pool, "INSERT INTO notifications", 2).await;
    sqlx::query("SELECT pg_advisory_unlock(20261130)").execute(&mut *holder).await.unwrap();
    let (status, body) = creating.await.unwrap();
    assert_eq!(status, 201, "{body}");
    let (status, body) = to_bob.await.unwrap();
    assert_eq!(status, 201, "{body}");

    let (status, body) = app.get("/v1/notifications", Some(&bob.token)).await;
    assert_eq!(status, 200, "{body}");
    let told: Vec<(&str, i64)> = body["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|notification| {
            (notification["kind"].as_str().unwrap(), notification["payload"]["amount"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(
        told,
        [("settlement_requested", 10_000), ("settlement_requested", 20_000), ("transfer_received", 2_000)],
        "in the order they committed"
    );
    assert_eq!(app.balance(&dave).await, 1_000);
    assert_eq!(app.balance(&bob).await, 2_000);
    app.assert_audit_ok().await;
}
