//! The one error type of the HTTP layer, rendered as RFC 9457 problem+json with a stable
//! `code`. Internal errors are logged and answered with an opaque 500.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::ledger::{CommandError, LedgerError};

/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_SECS: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request syntax (bad JSON): 400.
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed but invalid input: 422.
    #[error("{0}")]
    Validation(String),
    #[error("missing or invalid credentials")]
    Unauthorized,
    #[error("not found")]
    NotFound,
    #[error("insufficient funds")]
    InsufficientFunds,
    #[error("{0}")]
    DailyLimitExceeded(String),
    #[error("{0}")]
    InvalidState(String),
    #[error("name taken")]
    NameTaken,
    #[error("the Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Unavailable(String),
    /// Rate limited: 429 with Retry-After and the `RateLimit-*` headers (`limit` is what the
    /// window allows).
    #[error("too many attempts; retry in {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64, limit: u32 },
    #[error(transparent)]
    Internal(anyhow::Error),
}

/// The problem+json body. `code` is the stable, machine-readable part.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"type": "https://minipay.dev/problems/insufficient-funds", "title": "Insufficient funds",
    "status": 422, "detail": "insufficient funds", "code": "insufficient-funds"}))]
pub struct Problem {
    /// `https://minipay.dev/problems/{code}`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem, the same for every answer with this `code`.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request, for people.
    pub detail: String,
    /// The stable, machine-readable part: `validation-failed` | `unauthorized` | `not-found` |
    /// `insufficient-funds` | `daily-limit-exceeded` | `invalid-state` | `name-taken` |
    /// `idempotency-key-reused` | `payload-too-large` | `method-not-allowed` | `unavailable` |
    /// `too-many-requests` | `internal`.
    pub code: String,
}

impl ApiError {
    pub fn validation(detail: impl std::fmt::Display) -> Self {
        ApiError::Validation(detail.to_string())
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "validation-failed", "Invalid request"),
            ApiError::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation-failed", "Invalid request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ApiError::InsufficientFunds => {
                (StatusCode::UNPROCESSABLE_ENTITY, "insufficient-funds", "Insufficient funds")
            }
            ApiError::DailyLimitExceeded(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "daily-limit-exceeded", "Daily top-up limit exceeded")
            }
            ApiError::InvalidState(_) => (StatusCode::CONFLICT, "invalid-state", "Invalid state"),
            ApiError::NameTaken => (StatusCode::CONFLICT, "name-taken", "Name taken"),
            ApiError::IdempotencyKeyReused => {
                (StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused", "Idempotency key reused")
            }
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "Payload too large"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method not allowed"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable"),
            ApiError::TooManyRequests { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too-many-requests", "Too many requests")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    pub fn problem(&self) -> Problem {
        let (status, code, title) = self.parts();
        let detail = match self {
            ApiError::Internal(_) => "the request could not be completed".to_owned(),
            other => other.to_string(),
        };
        Problem {
            kind: format!("https://minipay.dev/problems/{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            code: code.to_owned(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(error) = &self {
            tracing::error!(error = format!("{error:#}"), "internal error");
        }
        let status = self.status();
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
        }
        if let ApiError::TooManyRequests { retry_after_secs, limit } = self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            headers.insert("ratelimit-limit", HeaderValue::from(limit));
            headers.insert("ratelimit-remaining", HeaderValue::from_static("0"));
            headers.insert("ratelimit-reset", HeaderValue::from(retry_after_secs));
        }
        response
    }
}

/// The answer while PostgreSQL cannot be reached: a 503 the client may retry, not a 500.
fn database_unavailable(error: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(error = %error, "database unavailable");
    ApiError::Unavailable("the database is unavailable; retry shortly".to_owned())
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if crate::store::tx::is_connection_error(&error) {
            database_unavailable(&error)
        } else {
            ApiError::Internal(error.into())
        }
    }
}

/// Errors with context (jobs, partitions) are internal, unless a lost database connection is
/// somewhere in their chain.
impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        let unreachable = error
            .chain()
            .any(|cause| cause.downcast_ref::<sqlx::Error>().is_some_and(crate::store::tx::is_connection_error));
        if unreachable {
            database_unavailable(&format!("{error:#}"))
        } else {
            ApiError::Internal(error)
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        match error {
            CommandError::AccountNotFound | CommandError::NotFound => ApiError::NotFound,
            CommandError::NotAllowed(detail) => ApiError::Validation(detail.to_owned()),
            CommandError::InsufficientFunds => ApiError::InsufficientFunds,
            error @ CommandError::DailyLimitExceeded { .. } => ApiError::DailyLimitExceeded(error.to_string()),
            CommandError::InvalidState(detail) => ApiError::InvalidState(detail.to_owned()),
            CommandError::Overflow => ApiError::Validation("amount out of range".to_owned()),
            // The writer runs such a command again; reaching a caller would be a writer bug.
            CommandError::NeedsExternalAccount => {
                ApiError::Unavailable("the ledger is unavailable; retry shortly".to_owned())
            }
        }
    }
}

impl From<crate::hashing::HashingBusy> for ApiError {
    fn from(busy: crate::hashing::HashingBusy) -> Self {
        ApiError::Unavailable(busy.to_string())
    }
}

impl From<LedgerError> for ApiError {
    fn from(error: LedgerError) -> Self {
        match error {
            LedgerError::Rejected(error) => error.into(),
            LedgerError::Busy => ApiError::Unavailable("too many movements in flight; retry shortly".to_owned()),
            LedgerError::Unavailable => ApiError::Unavailable("the ledger is unavailable; retry shortly".to_owned()),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
