//! Extractors whose rejections are our problem+json errors, and the bearer-token callers.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};

use super::error::ApiError;
use crate::domain::accounts::{AccountId, UserId};
use crate::http::state::AppState;
use crate::store::sessions;

/// `axum::Json` with problem+json rejections: bad syntax → 400, wrong shape → 422, too large → 413.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `axum::extract::Query` with a 422 rejection.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `axum::extract::Path` whose malformed ids answer 404: no such resource.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(error) => ApiError::Validation(error.body_text()),
            JsonRejection::JsonSyntaxError(error) => ApiError::BadRequest(error.body_text()),
            JsonRejection::MissingJsonContentType(_) => {
                ApiError::BadRequest("expected a JSON body with Content-Type: application/json".to_owned())
            }
            other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::Validation(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        ApiError::NotFound
    }
}

/// Tokens are 64 hex characters; anything much longer is not worth a database look-up.
const TOKEN_LENGTH_MAX_CHARS: usize = 256;

fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?.trim();
    (!token.is_empty() && token.len() <= TOKEN_LENGTH_MAX_CHARS).then_some(token)
}

/// The signed-in caller of a `/v1` route.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub user_id: UserId,
    pub main_account_id: AccountId,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).ok_or(ApiError::Unauthorized)?;
        let (user_id, main_account_id) =
            state.sessions.authenticate(&state.pool, token, state.clock.now()).await?.ok_or(ApiError::Unauthorized)?;
        Ok(AuthUser { user_id, main_account_id })
    }
}

/// The bearer token itself, for ending the current session.
pub struct BearerToken(pub String);

impl FromRequestParts<AppState> for BearerToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, Self::Rejection> {
        bearer_token(parts).map(|token| BearerToken(token.to_owned())).ok_or(ApiError::Unauthorized)
    }
}

/// A caller holding `MINIPAY_ADMIN_TOKEN`. Failed attempts (a wrong, missing or overlong
/// token) count against the client address; past the limit even the right token answers 429
/// until the window ends, so a guesser learns nothing.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let expected = state.config.admin_token.as_deref().ok_or(ApiError::NotFound)?;
        let ClientAddress(address) = ClientAddress::from_request_parts(parts, state).await?;
        let limiter = &state.login_limiter;
        let now = state.clock.now();
        limiter.may_try_admin(address, now).map_err(|retry_after| ApiError::TooManyRequests {
            retry_after_secs: retry_after.secs,
            limit: state.config.login_limits.admin_failures_per_address_per_minute,
        })?;
        // Compare digests so that the time taken says nothing about the token.
        match bearer_token(parts) {
            Some(given) if sessions::token_hash(given) == sessions::token_hash(expected) => Ok(Admin),
            _ => {
                limiter.admin_failed(address, now);
                Err(ApiError::Unauthorized)
            }
        }
    }
}

/// The client's address, for per-address limits: the socket's peer, or with
/// `MINIPAY_TRUST_X_FORWARDED_FOR=1` the last `X-Forwarded-For` entry (the address the proxy in
/// front of us saw; entries before it are whatever the client wrote). Unspecified when neither
/// is known (a router served without connection info), so such callers share one budget.
pub struct ClientAddress(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let forwarded = || {
            parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .last()
                .and_then(|entry| entry.trim().parse::<IpAddr>().ok())
        };
        let peer = || parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
        let address = if state.config.trust_forwarded_for { forwarded().or_else(peer) } else { peer() };
        Ok(ClientAddress(address.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED))))
    }
}
