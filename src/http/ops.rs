//! Health, readiness and metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::state::AppState;

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"postgres": "ok", "clickhouse": "unreachable"}))]
pub struct Readiness {
    /// `ok` or `unreachable`.
    #[schema(schema_with = reachability)]
    pub postgres: &'static str,
    /// `ok` or `unreachable`; ClickHouse down degrades history, not commands.
    #[schema(schema_with = reachability)]
    pub clickhouse: &'static str,
}

fn reachability() -> utoipa::openapi::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(["ok", "unreachable"]))
        .build()
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = String, content_type = "text/plain", description = "`ok`", example = "ok")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready when PostgreSQL answers (503 otherwise); ClickHouse's state is reported.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Readiness, description = "PostgreSQL answers"),
              (status = 503, body = Readiness, description = "PostgreSQL does not answer")))]
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
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, body = String, content_type = "text/plain; version=0.0.4", description = "The metrics, in Prometheus text format",
               example = "# TYPE minipay_http_requests_total counter\nminipay_http_requests_total{route=\"/v1/me\",method=\"GET\",status=\"2xx\"} 12\n")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}
