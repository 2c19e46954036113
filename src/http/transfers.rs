//! Transfers between users.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiJson, ApiPath, ApiQuery, AuthUser};
use super::headers::respond_created;
use super::idempotency::{run_command, run_command_outcome, stored_error, stored_json, IdempotencyKey};
use super::paging::{decode_id_cursor, encode_id_cursor, page_size};
use super::schemas;
use crate::domain::accounts::{AccountId, UserId};
use crate::domain::ids::TransferId;
use crate::domain::money::Amount;
use crate::domain::names::parse_short_text;
use crate::domain::transfers::{Transfer, TransferStatus};
use crate::http::state::AppState;
use crate::ledger::apply::Resolution;
use crate::ledger::writer::Render;
use crate::ledger::{Command, Outcome};
use crate::store::transfers::{self, Direction};

/// Unknown fields are refused: a client that believes it can choose the source account (it is
/// always the caller's main account) must hear no rather than pay from somewhere else.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"to_account_id": 1057, "amount": 25000, "display_name": "Mina", "memo": "dinner"}))]
pub struct TransferRequest {
    /// Another user's main account.
    #[schema(value_type = i64)]
    pub to_account_id: AccountId,
    /// KRW, 1..=1,000,000,000,000.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub amount: i64,
    /// The name the receiver sees, always beside the sender's real user name (statement
    /// entries, notifications): 1..64 characters, not blank, no invisible characters; kept in
    /// NFC.
    #[schema(min_length = 1, max_length = 64)]
    pub display_name: Option<String>,
    /// 1..64 characters, not blank, no invisible characters; kept in NFC.
    #[schema(min_length = 1, max_length = 64)]
    pub memo: Option<String>,
}

#[derive(Serialize, ToSchema, Debug, Clone)]
#[schema(example = json!({"id": 88, "from_account_id": 1042, "to_account_id": 1057, "amount": 25000, "auto_charged": 0,
    "status": "pending", "display_name": "Mina", "memo": "dinner", "created_at": "2026-11-24T04:00:00Z",
    "expires_at": "2026-11-27T04:00:00Z", "resolved_at": null}))]
pub struct TransferView {
    #[schema(value_type = i64)]
    pub id: TransferId,
    #[schema(value_type = i64)]
    pub from_account_id: AccountId,
    #[schema(value_type = i64)]
    pub to_account_id: AccountId,
    pub amount: i64,
    /// Topped up into the sender's main account to fund this transfer.
    pub auto_charged: i64,
    /// `completed` | `pending` | `canceled` | `rejected` | `expired`.
    #[schema(value_type = TransferStatus)]
    pub status: String,
    pub display_name: Option<String>,
    pub memo: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
}

impl From<&Transfer> for TransferView {
    fn from(transfer: &Transfer) -> Self {
        TransferView {
            id: transfer.id,
            from_account_id: transfer.from_account_id,
            to_account_id: transfer.to_account_id,
            amount: transfer.amount,
            auto_charged: transfer.auto_charged,
            status: transfer.status.as_str().to_owned(),
            display_name: transfer.display_name.clone(),
            memo: transfer.memo.clone(),
            created_at: transfer.created_at,
            expires_at: transfer.expires_at,
            resolved_at: transfer.resolved_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"transfers": [{"id": 88, "from_account_id": 1042, "to_account_id": 1057, "amount": 25000,
    "auto_charged": 0, "status": "completed", "display_name": null, "memo": "dinner", "created_at": "2026-11-24T04:00:00Z",
    "expires_at": null, "resolved_at": null}], "next_cursor": "i88"}))]
pub struct TransferList {
    pub transfers: Vec<TransferView>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TransferQuery {
    /// `incoming` or `outgoing`; both when absent.
    #[param(schema_with = schemas::transfer_direction)]
    pub direction: Option<String>,
    /// Only transfers in this status.
    #[param(value_type = Option<TransferStatus>, inline)]
    pub status: Option<String>,
    /// 1..=200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Sends money from the caller's main account to another user's main account. A short
/// balance is topped up first (in units of 10,000, within the daily limit), atomically with
/// the transfer. Honours `Idempotency-Key`. A target that is not another user's main account,
/// or whose owner blocked the caller, → 422 with one answer for both.
#[utoipa::path(post, path = "/v1/transfers", tag = "transfers", security(("bearer" = [])), request_body = TransferRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "1..255 characters; repeats return the first response")),
    responses((status = 201, body = TransferView, description = "The transfer: `completed`, or `pending` when the receiver confirms transfers",
               headers(("Location" = String, description = "`/v1/transfers/{id}`, where the transfer is read; the same on a repeat"))),
              (status = 422, body = Problem, content_type = "application/problem+json", description = "validation-failed (not another user's main account, or its owner blocked the caller), insufficient-funds, daily-limit-exceeded")))]
pub async fn create_transfer(
    State(state): State<AppState>,
    caller: AuthUser,
    key: IdempotencyKey,
    ApiJson(body): ApiJson<TransferRequest>,
) -> ApiResult<Response> {
    let amount = Amount::parse(body.amount).map_err(|error| ApiError::validation(format!("amount: {error}")))?;
    let display_name = parse_short_text("display_name", body.display_name.as_deref()).map_err(ApiError::validation)?;
    let memo = parse_short_text("memo", body.memo.as_deref()).map_err(ApiError::validation)?;
    let fingerprint = key.fingerprint("POST /v1/transfers", &body);
    // A receiver who blocked the caller is not told of the transfer, and the caller is not told
    // of the block: the ledger batch looks the block up with the accounts it locks, and
    // refuses the transfer exactly as one to an account that does not exist, with the same
    // answer and the same record under the Idempotency-Key.
    let command = Command::Transfer {
        user_id: caller.user_id,
        from_account_id: caller.main_account_id,
        to_account_id: body.to_account_id,
        amount,
        display_name,
        memo,
    };
    let render: Render = Arc::new(|result: &Result<Outcome, crate::ledger::CommandError>| match result {
        Ok(Outcome::Transferred { transfer, .. }) => stored_json(StatusCode::CREATED, &TransferView::from(transfer)),
        Ok(other) => stored_error(ApiError::Internal(other.unexpected())),
        Err(error) => stored_error(error.clone().into()),
    });
    let stored = run_command_outcome(&state, caller, key, fingerprint, command, render.clone()).await?.stored(&render);
    Ok(respond_created(stored, "/v1/transfers"))
}

/// A transfer the caller sent or received; anyone else's answers 404.
#[utoipa::path(get, path = "/v1/transfers/{id}", tag = "transfers", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = TransferView, description = "The transfer")))]
pub async fn get_transfer(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<TransferId>,
) -> ApiResult<Json<TransferView>> {
    let mut conn = state.read_pool().await.acquire().await?;
    let transfer = transfers::get_for_party(&mut conn, caller.user_id, id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(TransferView::from(&transfer)))
}

/// The caller's transfers, newest first, with a cursor.
#[utoipa::path(get, path = "/v1/transfers", tag = "transfers", security(("bearer" = [])),
    params(TransferQuery),
    responses((status = 200, body = TransferList, description = "A page of transfers; `next_cursor` is null on the last")))]
pub async fn list_transfers(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiQuery(query): ApiQuery<TransferQuery>,
) -> ApiResult<Json<TransferList>> {
    let direction = match query.direction.as_deref() {
        None => Direction::Both,
        Some("incoming") => Direction::Incoming,
        Some("outgoing") => Direction::Outgoing,
        Some(_) => return Err(ApiError::validation("direction must be incoming or outgoing")),
    };
    let status = query
        .status
        .as_deref()
        .map(|text| TransferStatus::parse(text).ok_or_else(|| ApiError::validation("unknown status")))
        .transpose()?;
    let limit = page_size(query.limit)?;
    let before = decode_id_cursor(query.cursor.as_deref())?;
    let mut conn = state.read_pool().await.acquire().await?;
    let found = transfers::list(&mut conn, caller.user_id, direction, status, before, limit + 1).await?;
    let has_more = found.len() as i64 > limit;
    let page: Vec<TransferView> = found.iter().take(limit as usize).map(TransferView::from).collect();
    let next_cursor = if has_more { page.last().map(|last| encode_id_cursor(last.id.get())) } else { None };
    Ok(Json(TransferList { transfers: page, next_cursor }))
}

/// What a party does with a pending transfer, from the route it came through.
#[derive(Clone, Copy)]
enum Action {
    Accept,
    Reject,
    Cancel,
}

impl Action {
    fn route(self) -> &'static str {
        match self {
            Action::Accept => "POST /v1/transfers/{id}/accept",
            Action::Reject => "POST /v1/transfers/{id}/reject",
            Action::Cancel => "POST /v1/transfers/{id}/cancel",
        }
    }

    fn resolution(self, user_id: UserId) -> Resolution {
        match self {
            Action::Accept => Resolution::Accept { user_id },
            Action::Reject => Resolution::Reject { user_id },
            Action::Cancel => Resolution::Cancel { user_id },
        }
    }
}

/// Resolves a pending transfer through the ledger writer, which reads its status under lock:
/// of racing accepts, rejects, cancels and the expiry job, exactly one wins; the others get
/// 409. A transfer the caller is not a party to, or not the right party for, answers 404.
async fn resolve(
    state: AppState,
    caller: AuthUser,
    key: IdempotencyKey,
    id: TransferId,
    action: Action,
) -> ApiResult<Response> {
    let transfer = {
        let mut conn = state.pool.acquire().await?;
        transfers::get_for_party(&mut conn, caller.user_id, id).await?.ok_or(ApiError::NotFound)?
    };
    let fingerprint = key.fingerprint(action.route(), &id);
    let command = Command::Resolve {
        transfer_id: transfer.id,
        from_account_id: transfer.from_account_id,
        to_account_id: transfer.to_account_id,
        action: action.resolution(caller.user_id),
    };
    let render: Render = Arc::new(|result: &Result<Outcome, crate::ledger::CommandError>| match result {
        Ok(Outcome::Resolved { transfer }) => stored_json(StatusCode::OK, &TransferView::from(transfer)),
        Ok(other) => stored_error(ApiError::Internal(other.unexpected())),
        Err(error) => stored_error(error.clone().into()),
    });
    Ok(run_command(&state, caller, key, fingerprint, command, render).await)
}

/// The receiver takes a pending transfer (before `expires_at`). Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/transfers/{id}/accept", tag = "transfers", security(("bearer" = [])),
    params(("id" = i64, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "1..255 characters; repeats return the first response")),
    responses((status = 200, body = TransferView, description = "The transfer, resolved"),
              (status = 404, body = Problem, content_type = "application/problem+json", description = "not the receiver of this transfer"),
              (status = 409, body = Problem, content_type = "application/problem+json", description = "invalid-state: not pending or expired")))]
pub async fn accept_transfer(
    State(state): State<AppState>,
    caller: AuthUser,
    key: IdempotencyKey,
    ApiPath(id): ApiPath<TransferId>,
) -> ApiResult<Response> {
    resolve(state, caller, key, id, Action::Accept).await
}

/// The receiver sends a pending transfer back; the money returns to the sender's available
/// balance. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/transfers/{id}/reject", tag = "transfers", security(("bearer" = [])),
    params(("id" = i64, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "1..255 characters; repeats return the first response")),
    responses((status = 200, body = TransferView, description = "The transfer, resolved"),
              (status = 404, body = Problem, content_type = "application/problem+json", description = "not the receiver of this transfer"),
              (status = 409, body = Problem, content_type = "application/problem+json", description = "invalid-state: not pending or expired")))]
pub async fn reject_transfer(
    State(state): State<AppState>,
    caller: AuthUser,
    key: IdempotencyKey,
    ApiPath(id): ApiPath<TransferId>,
) -> ApiResult<Response> {
    resolve(state, caller, key, id, Action::Reject).await
}

/// The sender takes a pending transfer back. Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/v1/transfers/{id}/cancel", tag = "transfers", security(("bearer" = [])),
    params(("id" = i64, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "1..255 characters; repeats return the first response")),
    responses((status = 200, body = TransferView, description = "The transfer, resolved"),
              (status = 404, body = Problem, content_type = "application/problem+json", description = "not the sender of this transfer"),
              (status = 409, body = Problem, content_type = "application/problem+json", description = "invalid-state: not pending or expired")))]
pub async fn cancel_transfer(
    State(state): State<AppState>,
    caller: AuthUser,
    key: IdempotencyKey,
    ApiPath(id): ApiPath<TransferId>,
) -> ApiResult<Response> {
    resolve(state, caller, key, id, Action::Cancel).await
}
