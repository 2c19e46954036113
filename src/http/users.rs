//! Users and sessions: sign-up, log-in, log-out, finding a friend, the caller's profile.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiJson, ApiPath, AuthUser, BearerToken, ClientAddress};
use super::headers::{created, location, Created};
use crate::domain::accounts::{AccountId, UserId};
use crate::domain::business_day::start_of_next_day;
use crate::domain::names::{Password, UserName};
use crate::domain::passwords;
use crate::domain::social::SettlementRequestsFrom;
use crate::domain::transfers::TransferMode;
use crate::http::login_limit::RetryAfter;
use crate::http::state::AppState;
use crate::store::sessions;
use crate::store::users::{self, User, UserStoreError};

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"name": "mina", "password": "correct horse battery"}))]
pub struct Credentials {
    /// 1..64 characters, not blank, no invisible characters nor surrounding blanks; kept in
    /// NFC. Unique by its look: a name whose confusable skeleton (Unicode TS #39) is another
    /// user's, or was freed by another user's rename less than 30 days ago, is taken.
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    /// 8..=256 characters; at sign-up not white space only, not one character repeated and
    /// not one of the most common passwords.
    #[schema(min_length = 8, max_length = 256)]
    pub password: String,
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": 17, "name": "mina", "main_account_id": 1042}))]
pub struct UserView {
    #[schema(value_type = i64)]
    pub id: UserId,
    pub name: String,
    #[schema(value_type = i64)]
    pub main_account_id: AccountId,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        UserView { id: user.id, name: user.name, main_account_id: user.main_account_id }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"token": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "user_id": 17,
    "expires_at": "2026-11-25T04:00:00Z"}))]
pub struct SessionView {
    /// The bearer token of the `bearer` scheme: 64 hex characters.
    pub token: String,
    #[schema(value_type = i64)]
    pub user_id: UserId,
    pub expires_at: DateTime<Utc>,
}

/// The caller's top-ups today against the daily limit.
#[derive(Serialize, ToSchema, Debug, Clone)]
#[schema(example = json!({"limit": 3000000, "used": 250000, "remaining": 2750000, "resets_at": "2026-11-24T15:00:00Z"}))]
pub struct DailyChargeView {
    pub limit: i64,
    pub used: i64,
    pub remaining: i64,
    /// The next midnight in the business time zone.
    pub resets_at: DateTime<Utc>,
}

impl DailyChargeView {
    pub fn new(state: &AppState, used: i64) -> Self {
        let limit = state.config.daily_charge_limit_krw;
        let today = state.business_date(state.clock.now());
        DailyChargeView {
            limit,
            used,
            remaining: (limit - used).max(0),
            resets_at: start_of_next_day(today, state.config.tz),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": 17, "name": "mina", "main_account_id": 1042, "transfer_mode": "immediate",
    "settlement_requests_from": "everyone", "daily_charge": {"limit": 3000000, "used": 250000, "remaining": 2750000, "resets_at": "2026-11-24T15:00:00Z"}}))]
pub struct MeView {
    #[schema(value_type = i64)]
    pub id: UserId,
    pub name: String,
    #[schema(value_type = i64)]
    pub main_account_id: AccountId,
    /// `immediate` or `confirm` (outgoing transfers wait for the receiver).
    #[schema(value_type = TransferMode)]
    pub transfer_mode: String,
    /// Who may ask the user to pay a share of a split bill: `everyone` (the default) or
    /// `friends` (only users in the user's friend list).
    #[schema(value_type = SettlementRequestsFrom)]
    pub settlement_requests_from: String,
    pub daily_charge: DailyChargeView,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"transfer_mode": "confirm", "settlement_requests_from": "friends"}))]
pub struct MePatch {
    /// `immediate` or `confirm`.
    #[schema(value_type = Option<TransferMode>)]
    pub transfer_mode: Option<String>,
    /// A new name, free as at sign-up: 1..64 characters.
    #[schema(min_length = 1, max_length = 64)]
    pub name: Option<String>,
    /// `everyone` or `friends`: with `friends`, only users in the caller's friend list may ask
    /// them to pay; anyone else's request is refused like one naming no user.
    #[schema(value_type = Option<SettlementRequestsFrom>)]
    pub settlement_requests_from: Option<String>,
}

fn name_taken(error: UserStoreError) -> ApiError {
    match error {
        UserStoreError::NameTaken => ApiError::NameTaken,
        UserStoreError::Database(error) => error.into(),
    }
}

/// A refusal of a limiter that allows `limit` in its window.
fn too_many(limit: u32) -> impl FnOnce(RetryAfter) -> ApiError {
    move |retry_after| ApiError::TooManyRequests { retry_after_secs: retry_after.secs, limit }
}

/// Signs up a user; their main account is created in the same transaction. Sign-ups count
/// against the per-address log-in limit (they cost a password hash too).
#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = Credentials,
    responses((status = 201, body = UserView, description = "The user, signed up", headers(("Location" = String, description = "`/v1/users/{name}`, where the user is read"))),
              (status = 409, body = Problem, content_type = "application/problem+json", description = "name-taken"),
              (status = 422, body = Problem, content_type = "application/problem+json", description = "validation-failed: a name or password out of bounds, or too common a password"),
              (status = 429, body = Problem, content_type = "application/problem+json", description = "too-many-requests, with Retry-After (seconds)",
               headers(("Retry-After" = u64, description = "Seconds until the window ends"),
               ("RateLimit-Limit" = u32, description = "What the window allows"), ("RateLimit-Remaining" = u32, description = "0"), ("RateLimit-Reset" = u64, description = "Seconds until the limit lifts, as Retry-After"))),
              (status = 503, body = Problem, content_type = "application/problem+json", description = "unavailable: too many sign-ups and log-ins in flight (or the database is unreachable), with Retry-After",
               headers(("Retry-After" = u64, description = "Seconds to wait before retrying")))))]
pub async fn create_user(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<Created<UserView>> {
    let per_address = state.config.login_limits.attempts_per_address_per_minute;
    state.login_limiter.attempt_from(address, state.clock.now()).map_err(too_many(per_address))?;
    let name = UserName::parse(&body.name).map_err(ApiError::validation)?;
    let password = Password::parse(&body.password).map_err(ApiError::validation)?;
    let hash = state.hashing.admit()?.hash(password).await?;
    let user = users::create(&state.pool, &name, &hash, state.clock.now()).await.map_err(name_taken)?;
    let view = UserView::from(user);
    Ok(created(location("/v1/users", &view.name), view))
}

/// Logs in: returns a bearer token valid until `expires_at`.
///
/// Rate limited: every attempt counts against the client address
/// (`MINIPAY_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE`, default 100), and failed attempts against
/// the name (`MINIPAY_LOGIN_ATTEMPTS_PER_NAME_PER_MINUTE`, default 10; a success clears them).
/// Over either limit the answer is 429 `too-many-requests` with `Retry-After`, even for the
/// right password.
#[utoipa::path(post, path = "/v1/sessions", tag = "users", request_body = Credentials,
    responses((status = 201, body = SessionView, description = "A new session", headers(("Cache-Control" = String, description = "no-store"))),
              (status = 401, body = Problem, content_type = "application/problem+json", description = "unauthorized: no such user, or the wrong password"),
              (status = 429, body = Problem, content_type = "application/problem+json", description = "too-many-requests, with Retry-After (seconds)",
               headers(("Retry-After" = u64, description = "Seconds until the window ends"),
               ("RateLimit-Limit" = u32, description = "What the window allows"), ("RateLimit-Remaining" = u32, description = "0"), ("RateLimit-Reset" = u64, description = "Seconds until the limit lifts, as Retry-After"))),
              (status = 503, body = Problem, content_type = "application/problem+json", description = "unavailable: too many sign-ups and log-ins in flight (or the database is unreachable), with Retry-After",
               headers(("Retry-After" = u64, description = "Seconds to wait before retrying")))))]
pub async fn create_session(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<(StatusCode, Json<SessionView>)> {
    let limiter = &state.login_limiter;
    let limits = &state.config.login_limits;
    limiter.attempt_from(address, state.clock.now()).map_err(too_many(limits.attempts_per_address_per_minute))?;
    // A name that could never have signed up (too long, control characters such as NUL that
    // PostgreSQL text refuses) matches no user: no database round trip, and no slot in the
    // per-name limiter. Names are looked up (and limited) in their stored, NFC form.
    let name = match UserName::parse(&body.name) {
        Ok(name) if body.password.chars().count() <= crate::domain::names::PASSWORD_LENGTH_MAX_CHARS => name,
        _ => return Err(ApiError::Unauthorized),
    };
    let name = name.as_str();
    limiter.may_log_in(name, state.clock.now()).map_err(too_many(limits.failures_per_name_per_minute))?;
    // A place in the hashing queue before the query: when hashing is overloaded, a log-in is
    // refused before it costs anything.
    let hashing = state.hashing.admit()?;
    let mut conn = state.pool.acquire().await?;
    let found = users::credentials(&mut conn, name).await?;
    drop(conn);
    let (user_id, stored) = match found {
        Some((id, hash)) => (Some(id), hash),
        None => (None, passwords::DECOY_HASH.to_owned()),
    };
    let matches = hashing.verify(body.password, stored).await?;
    let user_id = match (user_id, matches) {
        (Some(id), true) => id,
        _ => {
            limiter.failed(name, state.clock.now());
            return Err(ApiError::Unauthorized);
        }
    };
    limiter.succeeded(name);
    let token = sessions::new_token();
    let now = state.clock.now();
    let expires_at = now + state.config.session_ttl;
    let mut conn = state.pool.acquire().await?;
    sessions::create(&mut conn, user_id, &token, now, expires_at).await?;
    Ok((StatusCode::CREATED, Json(SessionView { token, user_id, expires_at })))
}

/// Logs out: the token stops working at once.
#[utoipa::path(delete, path = "/v1/sessions/current", tag = "users", security(("bearer" = [])),
    responses((status = 204, description = "The session is over")))]
pub async fn delete_session(
    State(state): State<AppState>,
    _user: AuthUser,
    BearerToken(token): BearerToken,
) -> ApiResult<StatusCode> {
    let mut conn = state.pool.acquire().await?;
    sessions::revoke(&mut conn, &token).await?;
    state.sessions.forget(&token);
    Ok(StatusCode::NO_CONTENT)
}

/// Finds a user by name (to send them money).
#[utoipa::path(get, path = "/v1/users/{name}", tag = "users", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = UserView, description = "The user"), (status = 404, body = Problem, content_type = "application/problem+json", description = "not-found: no user has this name")))]
pub async fn get_user(
    State(state): State<AppState>,
    _user: AuthUser,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<UserView>> {
    // A name no user could have (e.g. with a NUL, which PostgreSQL text refuses) is simply not found.
    let name = UserName::parse(&name).map_err(|_| ApiError::NotFound)?;
    let mut conn = state.read_pool().await.acquire().await?;
    let user = users::find_by_name(&mut conn, name.as_str()).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(user.into()))
}

async fn me_view(state: &AppState, pool: &sqlx::PgPool, user: User) -> ApiResult<MeView> {
    let mut conn = pool.acquire().await?;
    let used = users::daily_charge_used(&mut conn, user.id, state.business_date(state.clock.now())).await?;
    Ok(MeView {
        id: user.id,
        name: user.name,
        main_account_id: user.main_account_id,
        transfer_mode: user.transfer_mode,
        settlement_requests_from: user.settlement_requests_from,
        daily_charge: DailyChargeView::new(state, used),
    })
}

/// The caller's profile and today's top-up allowance.
#[utoipa::path(get, path = "/v1/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = MeView, description = "The caller's profile")))]
pub async fn get_me(State(state): State<AppState>, caller: AuthUser) -> ApiResult<Json<MeView>> {
    let pool = state.read_pool().await;
    let mut conn = pool.acquire().await?;
    let user = users::find_by_id(&mut conn, caller.user_id).await?.ok_or(ApiError::Unauthorized)?;
    drop(conn);
    Ok(Json(me_view(&state, &pool, user).await?))
}

/// Changes the transfer mode (`immediate` | `confirm`), the name, and/or who may ask the caller
/// to pay (`settlement_requests_from`: `everyone` | `friends`). A new name must be free as at
/// sign-up (409 `name-taken`); the old one stays reserved for the caller for 30 days (only they
/// may take it back meanwhile). Past statement entries keep the old name.
#[utoipa::path(patch, path = "/v1/me", tag = "users", security(("bearer" = [])), request_body = MePatch,
    responses((status = 200, body = MeView, description = "The profile, changed"), (status = 409, body = Problem, content_type = "application/problem+json", description = "name-taken"),
              (status = 422, body = Problem, content_type = "application/problem+json", description = "validation-failed: a bad name, transfer mode or `settlement_requests_from`")))]
pub async fn patch_me(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiJson(body): ApiJson<MePatch>,
) -> ApiResult<Json<MeView>> {
    let name = body.name.as_deref().map(UserName::parse).transpose().map_err(ApiError::validation)?;
    let mode = match body.transfer_mode.as_deref() {
        None => None,
        Some(mode @ ("immediate" | "confirm")) => Some(mode),
        Some(_) => return Err(ApiError::validation("transfer_mode must be immediate or confirm")),
    };
    let requests_from = body
        .settlement_requests_from
        .as_deref()
        .map(|text| {
            SettlementRequestsFrom::parse(text)
                .ok_or_else(|| ApiError::validation("settlement_requests_from must be everyone or friends"))
        })
        .transpose()?;
    let user =
        users::update_profile(&state.pool, caller.user_id, name.as_ref(), mode, requests_from, state.clock.now())
            .await
            .map_err(name_taken)?
            .ok_or(ApiError::Unauthorized)?;
    Ok(Json(me_view(&state, &state.pool, user).await?))
}
