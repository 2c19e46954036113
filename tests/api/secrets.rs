//! Credentials in `DATABASE_URL` and `CLICKHOUSE_URL` never reach the log, and the ClickHouse
//! credentials of a URL are the ones the server logs in with.

use serde_json::json;

use crate::helpers::*;

fn with_credentials(url: &str, user: &str, password: &str) -> String {
    let mut parsed = reqwest::Url::parse(url).unwrap();
    parsed.set_username(user).unwrap();
    parsed.set_password(Some(password)).unwrap();
    parsed.to_string()
}

#[tokio::test]
async fn passwords_in_the_database_and_clickhouse_urls_are_not_logged() {
    let app = spawn_app().await;
    // PostgreSQL trusts local connections, so its password is ignored; ClickHouse refuses
    // this one, which only leaves history to PostgreSQL.
    let database_url = with_credentials(&app.database_url, "postgres", "pg-secret-4f1c");
    let clickhouse_url = with_credentials(&app.clickhouse_url, "default", "ch-secret-9a2e");
    let server = spawn_logged_server_process(
        &app,
        &[("DATABASE_URL", &database_url), ("CLICKHOUSE_URL", &clickhouse_url), ("RUST_LOG", "info")],
    )
    .await;
    let ready: serde_json::Value =
        app.client.get(format!("{}/readyz", server.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["postgres"], json!("ok"), "{ready}");
    let log = server.log().await;
    assert!(log.contains("starting") && log.contains("minipay serving"), "{log}");
    for secret in ["pg-secret-4f1c", "ch-secret-9a2e"] {
        assert!(!log.contains(secret), "{secret} is in the log:\n{log}");
    }
    // The URLs are still shown, without their credentials.
    assert!(log.contains("database_url: \"postgres://***@127.0.0.1"), "{log}");
    assert!(log.contains("clickhouse_url: \"http://***@127.0.0.1"), "{log}");
}

async fn clickhouse_readiness(clickhouse_url: String) -> serde_json::Value {
    let app = spawn_app_with(|config| config.clickhouse_url = clickhouse_url.into()).await;
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, 200, "{body}");
    body["clickhouse"].clone()
}

#[tokio::test]
async fn the_credentials_of_the_clickhouse_url_are_the_ones_used() {
    let base = std::env::var("CLICKHOUSE_URL").unwrap();
    // The test server's `default` user has no password: a wrong one is refused ...
    let wrong = with_credentials(&base, "default", "not-the-password");
    assert_eq!(clickhouse_readiness(wrong).await, json!("unreachable"));
    // ... and so is a user that does not exist, while `default` without one logs in.
    let nobody = with_credentials(&base, "nobody-such", "x");
    assert_eq!(clickhouse_readiness(nobody).await, json!("unreachable"));
    let mut default = reqwest::Url::parse(&base).unwrap();
    default.set_username("default").unwrap();
    assert_eq!(clickhouse_readiness(default.to_string()).await, json!("ok"));
}
