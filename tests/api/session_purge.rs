//! The `session-purge` job: expired sessions are deleted in bounded chunks; live ones stay.

use chrono::Duration;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

use crate::helpers::*;

async fn sessions(conn: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sessions").fetch_one(conn).await.unwrap()
}

async fn run_purge(app: &TestApp) -> Value {
    let (status, body) = app.post("/admin/jobs/session-purge/run", Some(ADMIN_TOKEN), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["job"], json!("session-purge"), "{body}");
    body
}

#[tokio::test]
async fn expired_sessions_are_purged_in_chunks_and_live_ones_stay() {
    let app = spawn_app_with(|config| config.jobs.chunk_size = 2).await;
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    let alice = app.signup("alice").await;
    app.signup("bob").await;
    app.signup("carol").await;
    app.login("alice").await;
    app.login("alice").await;
    assert_eq!(sessions(&mut conn).await, 5);
    // Nothing has expired yet: the job finds nothing to delete.
    let started = app.clock_now().await;
    let idle = run_purge(&app).await;
    assert_eq!(idle["processed"], json!(0), "{idle}");
    assert_eq!(sessions(&mut conn).await, 5);

    // A day and a bit later the five have expired; a new one has not.
    app.set_clock(&(started + Duration::hours(49)).to_rfc3339()).await;
    let dave = app.signup("dave").await;
    let report = run_purge(&app).await;
    assert_eq!(report["processed"], json!(5), "{report}");
    let dates = report["dates"].as_array().unwrap();
    assert_eq!(dates.len(), 1, "{report}");
    assert_eq!(dates[0]["outcome"], json!("done"), "{report}");
    // Chunks of at most 2: 2 + 2 + 1.
    assert_eq!(dates[0]["chunks"], json!(3), "{report}");
    assert_eq!(sessions(&mut conn).await, 1);
    assert_eq!(app.me(&dave).await["name"], json!("dave"));
    let (status, body) = app.get("/v1/me", Some(&alice.token)).await;
    assert_problem(status, &body, 401, "unauthorized");
    // Once a business date is done, asking again does nothing more.
    let again = run_purge(&app).await;
    assert_eq!(again["processed"], json!(0), "{again}");
    assert_eq!(sessions(&mut conn).await, 1);
}
