//! The HTTP layer: router, middleware, OpenAPI document. Handlers parse and validate input,
//! call the ledger or the store, and shape responses; nothing below here knows about HTTP.

pub mod accounts;
pub mod admin;
pub mod error;
pub mod extract;
pub mod headers;
pub mod history;
pub mod idempotency;
pub mod links;
pub mod login_limit;
pub mod money;
pub mod notifications;
pub mod ops;
pub mod paging;
pub mod problems;
pub mod request_id;
pub mod schemas;
pub mod serve;
pub mod settlements;
pub mod social;
pub mod state;
pub mod transfers;
pub mod users;

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::http::state::AppState;
use error::ApiError;
use links::Links;
use problems::SharedProblems;

#[derive(OpenApi)]
#[openapi(
    info(title = "minipay", description = "Wallets, top-ups under a daily limit, transfers, split bills, savings and statements. Amounts are integer KRW; errors are application/problem+json with a stable `code`.", license(name = "Proprietary")),
    servers((url = "/", description = "the server this document is served from (`scripts/run`: http://127.0.0.1:8080)")),
    paths(
        users::create_user, users::create_session, users::delete_session, users::get_user, users::get_me, users::patch_me,
        accounts::list_accounts, accounts::get_account, accounts::create_account, accounts::close_account,
        money::create_charge, money::create_deposit,
        transfers::create_transfer, transfers::get_transfer, transfers::list_transfers,
        transfers::accept_transfer, transfers::reject_transfer, transfers::cancel_transfer,
        settlements::create_settlement, settlements::get_settlement, settlements::list_settlements, settlements::pay_share,
        settlements::decline_share,
        social::add_friend, social::list_friends, social::remove_friend,
        social::add_block, social::list_blocks, social::remove_block,
        notifications::list_notifications,
        history::get_history, history::get_history_naive, history::get_summary, history::get_summary_naive,
        admin::get_audit, admin::get_clock, admin::put_clock, admin::run_job,
        ops::healthz, ops::readyz, ops::metrics,
    ),
    components(schemas(error::Problem)),
    modifiers(&SecuritySchemes, &SharedProblems, &Links),
    tags(
        (name = "users", description = "Sign-up, sessions, profile"),
        (name = "accounts", description = "Main and savings accounts"),
        (name = "money", description = "Top-ups and deposits"),
        (name = "transfers", description = "Transfers between users"),
        (name = "settlements", description = "Split bills: shares of a total, paid by the participants"),
        (name = "friends", description = "Friends and blocks: who may reach the caller"),
        (name = "notifications", description = "What users are told about, oldest first"),
        (name = "history", description = "Account statements: tuned (ClickHouse) and naive (PostgreSQL)"),
        (name = "admin", description = "Operator routes, with the admin token (MINIPAY_ADMIN_TOKEN); while it is unset they are disabled and answer 404"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(description)).build(),
            )
        };
        components.add_security_scheme(
            "bearer",
            bearer("A user's session token: the `token` of `POST /v1/sessions` (64 hex characters), valid until its `expires_at` or `DELETE /v1/sessions/current`."),
        );
        components.add_security_scheme(
            "admin",
            bearer("The operator's token, MINIPAY_ADMIN_TOKEN, for the /admin routes only (a session token is refused there). While it is unset the admin routes are disabled and answer 404."),
        );
    }
}

/// The OpenAPI document as committed in `openapi/openapi.json`.
pub fn openapi_json() -> String {
    let mut text = links::with_link_keys(ApiDoc::openapi().to_pretty_json().unwrap_or_default());
    text.push('\n');
    text
}

pub fn router(state: AppState) -> Router {
    let mut api = Router::new()
        .route("/v1/users", post(users::create_user))
        .route("/v1/users/{name}", get(users::get_user))
        .route("/v1/sessions", post(users::create_session).layer(middleware::map_response(no_store)))
        .route("/v1/sessions/current", axum::routing::delete(users::delete_session))
        .route("/v1/me", get(users::get_me).patch(users::patch_me))
        .route("/v1/accounts", get(accounts::list_accounts).post(accounts::create_account))
        .route("/v1/accounts/{id}", get(accounts::get_account))
        .route("/v1/accounts/{id}/close", post(accounts::close_account))
        .route("/v1/accounts/{id}/charges", post(money::create_charge))
        .route("/v1/accounts/{id}/deposits", post(money::create_deposit))
        .route("/v1/transfers", get(transfers::list_transfers).post(transfers::create_transfer))
        .route("/v1/transfers/{id}", get(transfers::get_transfer))
        .route("/v1/transfers/{id}/accept", post(transfers::accept_transfer))
        .route("/v1/transfers/{id}/reject", post(transfers::reject_transfer))
        .route("/v1/transfers/{id}/cancel", post(transfers::cancel_transfer))
        .route("/v1/settlements", get(settlements::list_settlements).post(settlements::create_settlement))
        .route("/v1/settlements/{id}", get(settlements::get_settlement))
        .route("/v1/settlements/{id}/pay", post(settlements::pay_share))
        .route("/v1/settlements/{id}/decline", post(settlements::decline_share))
        .route("/v1/friends", get(social::list_friends).post(social::add_friend))
        .route("/v1/friends/{user_id}", axum::routing::delete(social::remove_friend))
        .route("/v1/blocks", get(social::list_blocks).post(social::add_block))
        .route("/v1/blocks/{user_id}", axum::routing::delete(social::remove_block))
        .route("/v1/notifications", get(notifications::list_notifications))
        .merge(history_routes(state.clone()))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route(
            "/openapi.json",
            get(|| async { ([(axum::http::header::CONTENT_TYPE, "application/json")], openapi_json()) }),
        );
    if state.config.admin_token.is_some() {
        api = api
            .route("/admin/audit", get(admin::get_audit))
            .route("/admin/clock", get(admin::get_clock).put(admin::put_clock))
            .route("/admin/jobs/{name}/run", post(admin::run_job));
    }
    let timeout = state.config.request_timeout;
    let body_limit = state.config.request_body_limit_bytes;
    let cors = headers::cors_layer(&state.config.cors_origins);
    let app = api
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .merge(SwaggerUi::new("/swagger-ui").external_url_unchecked(
            "/api-docs/openapi.json",
            serde_json::from_str(&openapi_json()).unwrap_or_default(),
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(move |request: Request, next: Next| refuse_large_bodies(body_limit, request, next)))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(middleware::from_fn(state::read_source_header))
        .layer(middleware::from_fn(move |request: Request, next: Next| with_timeout(timeout, request, next)))
        .layer(CatchPanicLayer::custom(|_panic: Box<dyn std::any::Any + Send>| {
            ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        .with_state(state.clone());
    let app = match cors {
        Some(cors) => app.layer(cors),
        None => app,
    };
    // Outermost, outside CORS too: every answer (preflights, 404s, panics) carries its id.
    app.layer(middleware::from_fn_with_state(state, request_id::with_request_id))
}

/// The statement routes; every response says how far behind the read store is.
fn history_routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/accounts/{id}/history", get(history::get_history))
        .route("/v1/accounts/{id}/history/naive", get(history::get_history_naive))
        .route("/v1/accounts/{id}/history/summary", get(history::get_summary))
        .route("/v1/accounts/{id}/history/summary/naive", get(history::get_summary_naive))
        .route_layer(middleware::from_fn_with_state(state, history::lag_header))
}

/// Responses that carry a token (log-in) are kept out of every cache, shared or private.
async fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    response
}

/// Counts responses by status class.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    state.metrics.record_http_status(response.status().as_u16());
    response
}

/// Bodies announced larger than the limit are refused on every route, before any handler runs
/// (routes that read no body would otherwise ignore them). Streamed bodies without a length
/// are bounded by `DefaultBodyLimit` in the extractors.
async fn refuse_large_bodies(limit: usize, request: Request, next: Next) -> Response {
    let announced = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    match announced {
        Some(length) if length > limit as u64 => ApiError::PayloadTooLarge.into_response(),
        _ => next.run(request).await,
    }
}

/// A request that takes longer than the timeout answers 503 with Retry-After. A ledger
/// command already queued is skipped if its batch has not started, otherwise it completes;
/// idempotency keys make the client's retry safe either way.
async fn with_timeout(timeout: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable("the request timed out".to_owned()).into_response(),
    }
}
