//! Health, readiness and metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ok` or `unreachable`.
    pub postgres: &'static str,
    /// `ok` or `unreachable`; ClickHouse down degrades history, not commands.
    pub clickhouse: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = String)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready when PostgreSQL answers (503 otherwise); ClickHouse's state is reported.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let postgres_ok = sqlx::query("SELECT 1").execute(&state.pool).await.is_ok();
    let clickhouse_ok = state.clickhouse.ping().await;
    let body = Readiness {
        postgres: if postgres_ok { "ok" } else { "unreachable" },
        clickhouse: if clickhouse_ok { "ok" } else { "unreachable" },
    };
    let status = if postgres_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body))
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}
