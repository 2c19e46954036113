//! `Idempotency-Key` on every POST that moves money: the key, a fingerprint of the request,
//! and the response are stored by the ledger writer in the same transaction as the effect.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::extract::AuthUser;
use crate::http::state::AppState;
use crate::ledger::writer::{Answer, Idempotency, Render};
use crate::ledger::{Command, CommandError, Outcome};
use crate::store::idempotency::StoredResponse;

pub const IDEMPOTENCY_KEY_LENGTH_MAX_CHARS: usize = 255;

/// The optional `Idempotency-Key` header: 1..=255 visible ASCII characters, else 422.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyKey(None));
        };
        let key = value.to_str().map_err(|_| ApiError::validation("Idempotency-Key must be visible ASCII"))?;
        if key.is_empty() || key.len() > IDEMPOTENCY_KEY_LENGTH_MAX_CHARS || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ApiError::validation("Idempotency-Key must be 1 to 255 visible ASCII characters"));
        }
        Ok(IdempotencyKey(Some(key.to_owned())))
    }
}

impl IdempotencyKey {
    /// The request's fingerprint when a key came with it (nothing to compare otherwise).
    pub fn fingerprint(&self, route: &str, request: &impl Serialize) -> Vec<u8> {
        if self.0.is_some() {
            fingerprint(route, request)
        } else {
            Vec::new()
        }
    }
}

/// SHA-256 of the route and the parsed request: the same request gives the same fingerprint
/// however its JSON was spaced or ordered.
fn fingerprint(route: &str, request: &impl Serialize) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update(b"\n");
    hasher.update(serde_json::to_vec(request).unwrap_or_default());
    hasher.finalize().to_vec()
}

pub fn stored_json(status: StatusCode, body: &impl Serialize) -> StoredResponse {
    match serde_json::to_value(body) {
        Ok(body) => StoredResponse { status: status.as_u16(), body },
        Err(error) => stored_error(ApiError::Internal(error.into())),
    }
}

pub fn stored_error(error: ApiError) -> StoredResponse {
    let problem = error.problem();
    StoredResponse { status: problem.status, body: serde_json::to_value(&problem).unwrap_or_default() }
}

/// A stored (or just rendered) response as sent to the client.
pub fn respond(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&stored.body).unwrap_or_default();
    let mut response = (status, body).into_response();
    let content_type = if status.is_success() { "application/json" } else { "application/problem+json" };
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Runs a money-moving command, honouring the caller's idempotency key: the ledger batch that
/// takes the command looks the key up first (see `crate::ledger::writer`), so a repeat, of a
/// finished request or of one in flight, is answered from the record and does the work once.
pub async fn run_command(
    state: &AppState,
    caller: AuthUser,
    key: IdempotencyKey,
    fingerprint: Vec<u8>,
    command: Command,
    render: Render,
) -> Response {
    match run_command_outcome(state, caller, key, fingerprint, command, render.clone()).await {
        Ok(ran) => respond(ran.stored(&render)),
        Err(error) => error.into_response(),
    }
}

/// Like [`run_command`], but hands back what the command gave instead of sending it, for
/// handlers that shape the final response themselves: what it did when it ran now, or the
/// response stored the first time for a repeat ([`Ran::stored`] makes either the response).
/// Errors are answers that no command gave: a key reused with another request, a ledger that
/// is busy or down.
///
/// A repeat is not looked up here before it is queued: that look-up cost every keyed request a
/// pooled connection and a round trip, to save a repeat, which is rare, its place in a batch.
pub async fn run_command_outcome(
    state: &AppState,
    caller: AuthUser,
    key: IdempotencyKey,
    fingerprint: Vec<u8>,
    command: Command,
    render: Render,
) -> Result<Ran, ApiError> {
    let idempotency = key.0.map(|key| Idempotency { user_id: caller.user_id, key, fingerprint, render });
    match state.ledger.submit_with(command, idempotency).await {
        Ok(Answer::Applied(result)) => Ok(Ran::Now(result)),
        Ok(Answer::Replayed(stored)) => Ok(Ran::Before(stored)),
        Ok(Answer::KeyReused) => Err(ApiError::IdempotencyKeyReused),
        Err(error) => Err(ApiError::from(error)),
    }
}

/// What a command submitted with [`run_command_outcome`] gave. Moved once per request, as the
/// ledger's [`Answer`] it comes from is, so not boxed.
#[allow(clippy::large_enum_variant)]
pub enum Ran {
    /// It ran in this request: what it did (a keyed request's response is stored as its
    /// `render` made it from this).
    Now(Result<Outcome, CommandError>),
    /// A repeat of a keyed request: the response stored the first time.
    Before(StoredResponse),
}

impl Ran {
    /// The response: `render`ed from what the command did now, or the one stored for a repeat.
    pub fn stored(self, render: &Render) -> StoredResponse {
        match self {
            Ran::Now(result) => render(&result),
            Ran::Before(stored) => stored,
        }
    }
}
