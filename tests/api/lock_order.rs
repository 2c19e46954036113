//! Everything that takes the ledger gate takes it before any row lock, as ledger batches do
//! (see the module documentation of the ledger writer): a job that locked rows and then waited
//! at the gate could wait for a batch that waits for those rows, and one of the two would be
//! ended as a deadlock.

use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::*;

/// A receiver accepts a pending transfer while the reminders job reminds them of it. The
/// accept's batch holds the gate and waits for the receiver's account row (another transaction
/// holds it); the job starts meanwhile. Had the job locked the transfer before waiting at the
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
    wait_for_lock_wait(&pool, "FROM accounts a").await;
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
