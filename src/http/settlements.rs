//! Split bills: a requester asks participants to pay shares of a total; each pays their own.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiJson, ApiPath, ApiQuery, AuthUser};
use super::headers::{created, location, Created};
use super::idempotency::{respond, run_command_outcome, stored_error, stored_json, IdempotencyKey, Ran};
use super::login_limit::RetryAfter;
use super::paging::{decode_id_cursor, encode_id_cursor, page_size};
use super::schemas;
use crate::domain::accounts::UserId;
use crate::domain::ids::{SettlementId, TransferId};
use crate::domain::money::Amount;
use crate::domain::names::parse_short_text;
use crate::domain::notifications::{NewNotification, NotificationKind};
use crate::domain::settlements::{
    plan_shares, DeclineError, RequesterShare, Settlement, SettlementShare, SettlementStatus, Share, ShareStatus,
    SplitMode,
};
use crate::http::state::AppState;
use crate::ledger::writer::Render;
use crate::ledger::{Command, CommandError, Outcome};
use crate::store::settlements::{self, DeclineStoreError, NewSettlement, PaymentTarget, Role, SettlementStoreError};
use crate::store::users;

#[derive(Deserialize, ToSchema)]
#[schema(example = json!({"total": 90000, "mode": "equal", "participant_ids": [23, 24], "include_requester": true,
    "memo": "dinner"}))]
pub struct SettlementRequest {
    /// What is split, in KRW: 1..=1,000,000,000,000.
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub total: i64,
    /// `equal`: shares differ by at most 1 KRW, the extra won going to the first positions
    /// (the requester's own share first, then participants in the order given). `random`: a
    /// uniformly random split into shares of at least 1 KRW, no position favoured.
    #[schema(value_type = SplitMode)]
    pub mode: String,
    /// 1 to 100 distinct users, not the requester, who each pay a share.
    #[schema(value_type = Vec<i64>, min_items = 1, max_items = 100)]
    pub participant_ids: Vec<UserId>,
    /// The requester keeps a share of their own (status `self`, never paid). Default false.
    pub include_requester: Option<bool>,
    /// 1..64 characters, not blank, no invisible characters (kept in NFC); shown to
    /// participants and used as the memo of their payments.
    #[schema(min_length = 1, max_length = 64)]
    pub memo: Option<String>,
}

#[derive(Serialize, ToSchema, Debug, Clone)]
#[schema(example = json!({"user_id": 23, "amount": 30000, "status": "paid", "paid_at": "2026-11-24T05:00:00Z",
    "transfer_id": 90}))]
pub struct ShareView {
    #[schema(value_type = i64)]
    pub user_id: UserId,
    /// At least 1 KRW.
    pub amount: i64,
    /// `requested` | `paid` | `self` | `declined`.
    #[schema(value_type = ShareStatus)]
    pub status: String,
    pub paid_at: Option<DateTime<Utc>>,
    /// The transfer that paid the share (none until it is paid, and for the requester's own
    /// share).
    #[schema(value_type = Option<i64>)]
    pub transfer_id: Option<TransferId>,
}

#[derive(Serialize, ToSchema, Debug, Clone)]
#[schema(example = json!({"id": 31, "requester_id": 17, "total": 90000, "mode": "equal", "status": "open", "memo": "dinner",
    "created_at": "2026-11-24T04:00:00Z", "completed_at": null, "shares": [
        {"user_id": 17, "amount": 30000, "status": "self", "paid_at": null, "transfer_id": null},
        {"user_id": 23, "amount": 30000, "status": "paid", "paid_at": "2026-11-24T05:00:00Z", "transfer_id": 90},
        {"user_id": 24, "amount": 30000, "status": "requested", "paid_at": null, "transfer_id": null}]}))]
pub struct SettlementView {
    #[schema(value_type = i64)]
    pub id: SettlementId,
    #[schema(value_type = i64)]
    pub requester_id: UserId,
    pub total: i64,
    /// `equal` | `random`.
    #[schema(value_type = SplitMode)]
    pub mode: String,
    /// `open` | `completed` (no share is still `requested`: every participant has paid or
    /// declined).
    #[schema(value_type = SettlementStatus)]
    pub status: String,
    pub memo: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// In position order: the requester's own share first (if any), then participants in the
    /// order they were asked. The amounts always sum to `total`.
    pub shares: Vec<ShareView>,
}

impl From<&SettlementShare> for ShareView {
    fn from(share: &SettlementShare) -> Self {
        ShareView::from(&Share::from(share))
    }
}

impl SettlementView {
    /// Settlement `id` as a payment left it: `shares` right after the payment in its batch
    /// (every share, in position order; a later payment of the same batch is not in them),
    /// `completed_at` if that payment completed it, and the fields that never change from
    /// `target`. What a read would give if the batch had ended with this payment.
    fn after_payment(
        id: SettlementId,
        target: &PaymentTarget,
        shares: &[Share],
        completed_at: Option<DateTime<Utc>>,
    ) -> Self {
        let status = if completed_at.is_some() { SettlementStatus::Completed } else { SettlementStatus::Open };
        SettlementView {
            id,
            requester_id: target.requester_id,
            total: shares.iter().map(|share| share.amount).sum(),
            mode: target.mode.as_str().to_owned(),
            status: status.as_str().to_owned(),
            memo: target.memo.clone(),
            created_at: target.created_at,
            completed_at,
            shares: shares.iter().map(ShareView::from).collect(),
        }
    }
}

impl From<&Share> for ShareView {
    fn from(share: &Share) -> Self {
        ShareView {
            user_id: share.user_id,
            amount: share.amount,
            status: share.status.as_str().to_owned(),
            paid_at: share.paid_at,
            transfer_id: share.transfer_id,
        }
    }
}

impl From<&Settlement> for SettlementView {
    fn from(settlement: &Settlement) -> Self {
        SettlementView {
            id: settlement.id,
            requester_id: settlement.requester_id,
            total: settlement.total,
            mode: settlement.mode.as_str().to_owned(),
            status: settlement.status.as_str().to_owned(),
            memo: settlement.memo.clone(),
            created_at: settlement.created_at,
            completed_at: settlement.completed_at,
            shares: settlement.shares.iter().map(ShareView::from).collect(),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"settlements": [{"id": 31, "requester_id": 17, "total": 90000, "mode": "equal", "status": "open", "memo": "dinner",
    "created_at": "2026-11-24T04:00:00Z", "completed_at": null, "shares": [
        {"user_id": 17, "amount": 30000, "status": "self", "paid_at": null, "transfer_id": null},
        {"user_id": 23, "amount": 30000, "status": "paid", "paid_at": "2026-11-24T05:00:00Z", "transfer_id": 90},
        {"user_id": 24, "amount": 30000, "status": "requested", "paid_at": null, "transfer_id": null}]}], "next_cursor": null}))]
pub struct SettlementList {
    /// Newest first.
    pub settlements: Vec<SettlementView>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SettlementQuery {
    /// `requested` (asked by the caller) or `owed` (the caller is asked to pay a share, paid
    /// or not); both when absent.
    #[param(schema_with = schemas::settlement_role)]
    pub role: Option<String>,
    /// 1..=200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Asks participants to pay shares of `total`. The shares always sum to exactly `total`, and
/// every share is at least 1 KRW (a `total` smaller than the number of shares → 422); the
/// split is recorded by position (and, for `random`, by a stored seed that reproduces it).
/// Each participant gets a `settlement_requested` notification. No money moves until they pay.
/// A participant named twice, or the requester → 422. A participant who cannot be asked → 422
/// with one message whatever the reason (no such user, or one who blocked the requester or
/// takes requests from friends only), which names no one.
///
/// Rate limited: a user creates at most `MINIPAY_SETTLEMENTS_PER_HOUR` settlements in any hour
/// (default 20), and holds at most `MINIPAY_OPEN_SHARES_PER_PARTICIPANT` shares still
/// `requested` over any one participant (default 5). Past either, 429 `too-many-requests` with
/// `Retry-After`, and nothing is created: for the hourly limit the seconds until an earlier
/// creation leaves the hour; for open shares a hint (an hour), as they close only when the
/// participant pays or declines.
#[utoipa::path(post, path = "/v1/settlements", tag = "settlements", security(("bearer" = [])),
    request_body = SettlementRequest,
    responses((status = 201, body = SettlementView, description = "The settlement, asked for", headers(("Location" = String, description = "`/v1/settlements/{id}`, where the settlement is read"))),
              (status = 422, body = Problem, content_type = "application/problem+json", description = "validation-failed: a bad total, mode or memo, a participant named twice or the requester, a total smaller than the shares, or a participant who cannot be asked"),
              (status = 429, body = Problem, content_type = "application/problem+json", description = "too-many-requests, with Retry-After (seconds)",
               headers(("Retry-After" = u64, description = "Seconds until a retry may succeed"),
               ("RateLimit-Limit" = u32, description = "What the window allows"), ("RateLimit-Remaining" = u32, description = "0"), ("RateLimit-Reset" = u64, description = "Seconds until the limit lifts, as Retry-After")))))]
pub async fn create_settlement(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiJson(body): ApiJson<SettlementRequest>,
) -> ApiResult<Created<SettlementView>> {
    let total = Amount::parse(body.total).map_err(|error| ApiError::validation(format!("total: {error}")))?;
    let mode = SplitMode::parse(&body.mode).ok_or_else(|| ApiError::validation("mode must be equal or random"))?;
    let memo = parse_short_text("memo", body.memo.as_deref()).map_err(ApiError::validation)?;
    let seed: i64 = rand::random();
    let requester_share = RequesterShare::from(body.include_requester.unwrap_or(false));
    let shares = plan_shares(caller.user_id, &body.participant_ids, requester_share, total, mode, seed)
        .map_err(ApiError::validation)?;
    let new = NewSettlement {
        requester_id: caller.user_id,
        total: total.krw(),
        mode,
        memo: memo.as_deref(),
        seed: (mode == SplitMode::Random).then_some(seed),
        shares: &shares,
    };
    let now = state.clock.now();
    let settlement =
        settlements::create(&state.pool, new, &state.config.social_limits, now).await.map_err(|error| match error {
            SettlementStoreError::ParticipantRefused => {
                ApiError::validation("participant_ids: one or more of these users cannot be asked to pay")
            }
            SettlementStoreError::TooMany { until, limit } => {
                ApiError::TooManyRequests { retry_after_secs: RetryAfter::until(until, now).secs, limit }
            }
            SettlementStoreError::Database(error) => error.into(),
        })?;
    state.payment_targets.created(&settlement, caller.main_account_id);
    Ok(created(location("/v1/settlements", &settlement.id.to_string()), SettlementView::from(&settlement)))
}

/// A settlement the caller asked for or holds a share of; anyone else's answers 404.
#[utoipa::path(get, path = "/v1/settlements/{id}", tag = "settlements", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = SettlementView, description = "The settlement")))]
pub async fn get_settlement(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<SettlementId>,
) -> ApiResult<Json<SettlementView>> {
    let mut conn = state.read_pool().await.acquire().await?;
    let settlement = settlements::get_for_party(&mut conn, caller.user_id, id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(SettlementView::from(&settlement)))
}

/// The caller's settlements, newest first, with a cursor: `role=requested` those they asked
/// for, `role=owed` those they are asked to pay a share of, both without a role.
#[utoipa::path(get, path = "/v1/settlements", tag = "settlements", security(("bearer" = [])),
    params(SettlementQuery),
    responses((status = 200, body = SettlementList, description = "A page of settlements; `next_cursor` is null on the last")))]
pub async fn list_settlements(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiQuery(query): ApiQuery<SettlementQuery>,
) -> ApiResult<Json<SettlementList>> {
    let role = match query.role.as_deref() {
        None => Role::Both,
        Some("requested") => Role::Requested,
        Some("owed") => Role::Owed,
        Some(_) => return Err(ApiError::validation("role must be requested or owed")),
    };
    let limit = page_size(query.limit)?;
    let before = decode_id_cursor(query.cursor.as_deref())?;
    let mut conn = state.read_pool().await.acquire().await?;
    let found = settlements::list(&mut conn, caller.user_id, role, before, limit + 1).await?;
    let has_more = found.len() as i64 > limit;
    let page: Vec<SettlementView> = found.iter().take(limit as usize).map(SettlementView::from).collect();
    let next_cursor = if has_more { page.last().map(|last| encode_id_cursor(last.id.get())) } else { None };
    Ok(Json(SettlementList { settlements: page, next_cursor }))
}

/// Pays the caller's share to the requester's main account (a short balance is topped up
/// first, in units of 10,000 within the daily limit, atomically with the payment). Answers
/// with the settlement as it stands after the payment; the last payment completes it. A
/// second payment → 409 invalid-state; the requester → 409 invalid-state; anyone else → 404.
///
/// Honours `Idempotency-Key`: a repeat pays nothing again and answers with the first answer's
/// status; for a 200, the body is the settlement as it stands at the repeat, which shows at
/// least what the first answer showed (shares are only ever paid, settlements only completed).
#[utoipa::path(post, path = "/v1/settlements/{id}/pay", tag = "settlements", security(("bearer" = [])),
    params(("id" = i64, Path),
           ("Idempotency-Key" = Option<String>, Header, description = "1..255 characters; repeats pay once")),
    responses((status = 200, body = SettlementView, description = "The settlement after the payment"),
              (status = 404, body = Problem, content_type = "application/problem+json", description = "not-found: not a party to this settlement"),
              (status = 409, body = Problem, content_type = "application/problem+json", description = "invalid-state: already paid or declined, or the caller is the requester"),
              (status = 422, body = Problem, content_type = "application/problem+json", description = "insufficient-funds, daily-limit-exceeded")))]
pub async fn pay_share(
    State(state): State<AppState>,
    caller: AuthUser,
    key: IdempotencyKey,
    ApiPath(id): ApiPath<SettlementId>,
) -> ApiResult<Response> {
    let target = state.payment_targets.get(&state.pool, caller.user_id, id).await?.ok_or(ApiError::NotFound)?;
    if target.requester_id == caller.user_id {
        return Err(ApiError::InvalidState("the requester does not pay a share of their own settlement".to_owned()));
    }
    let command = Command::PayShare {
        user_id: caller.user_id,
        settlement_id: id,
        from_account_id: caller.main_account_id,
        to_account_id: target.requester_main_account_id,
        memo: target.memo.clone(),
    };
    let fingerprint = key.fingerprint("POST /v1/settlements/{id}/pay", &id);
    // What is stored under the key is the outcome, not the settlement: a repeat reads the
    // settlement as it stands then. The payment itself is answered with the settlement as the
    // payment left it, from the shares its batch locked and the fields that never change.
    let render: Render = Arc::new(|result: &Result<Outcome, CommandError>| match result {
        Ok(Outcome::SharePaid { settlement_id, transfer, .. }) => {
            stored_json(StatusCode::OK, &json!({"settlement_id": settlement_id, "transfer_id": transfer.id}))
        }
        Ok(other) => stored_error(ApiError::Internal(other.unexpected())),
        Err(error) => stored_error(error.clone().into()),
    });
    let stored = match run_command_outcome(&state, caller, key, fingerprint, command, render.clone()).await? {
        Ran::Now(Ok(Outcome::SharePaid { shares, completed_at, .. })) => {
            return Ok(Json(SettlementView::after_payment(id, &target, &shares, completed_at)).into_response());
        }
        ran => ran.stored(&render),
    };
    if stored.status != StatusCode::OK.as_u16() {
        return Ok(respond(stored));
    }
    let mut conn = state.pool.acquire().await?;
    let settlement = settlements::get_for_party(&mut conn, caller.user_id, id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(SettlementView::from(&settlement)).into_response())
}

/// The caller declines their share: it becomes `declined`, is never paid, and the requester
/// gets a `settlement_declined` notification. Answers with the settlement as it stands after;
/// when no share is left `requested` it is `completed`. Only a `requested` share can be
/// declined: one already paid or declined → 409 invalid-state, as is the requester declining
/// their own settlement; anyone else → 404. A payment racing the decline either comes first
/// (the decline → 409) or is refused with 409.
#[utoipa::path(post, path = "/v1/settlements/{id}/decline", tag = "settlements", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = SettlementView, description = "The settlement after the decline"),
              (status = 404, body = Problem, content_type = "application/problem+json", description = "not-found: not a participant of this settlement"),
              (status = 409, body = Problem, content_type = "application/problem+json", description = "invalid-state: not a requested share, or the caller is the requester")))]
pub async fn decline_share(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath(id): ApiPath<SettlementId>,
) -> ApiResult<Json<SettlementView>> {
    let mut conn = state.pool.acquire().await?;
    let settlement = settlements::get_for_party(&mut conn, caller.user_id, id).await?.ok_or(ApiError::NotFound)?;
    if settlement.requester_id == caller.user_id {
        return Err(ApiError::InvalidState("the requester does not decline their own settlement".to_owned()));
    }
    let share = settlement.shares.iter().find(|share| share.user_id == caller.user_id).ok_or(ApiError::NotFound)?;
    let caller_name = users::find_by_id(&mut conn, caller.user_id).await?.map(|user| user.name);
    drop(conn);
    // Shares' amounts never change, so what the requester is told is known before the share
    // is locked; it is written only if the decline is.
    let notification = NewNotification {
        user_id: settlement.requester_id,
        kind: NotificationKind::SettlementDeclined,
        payload: json!({
            "settlement_id": id,
            "participant_id": caller.user_id,
            "participant_name": caller_name,
            "amount": share.amount,
            "total": settlement.total,
            "memo": settlement.memo,
        }),
    };
    settlements::decline(&state.pool, id, caller.user_id, notification, state.clock.now()).await.map_err(|error| {
        match error {
            DeclineStoreError::Refused(DeclineError::NoShare) => ApiError::NotFound,
            DeclineStoreError::Refused(refused) => ApiError::InvalidState(refused.to_string()),
            DeclineStoreError::Database(error) => error.into(),
        }
    })?;
    let mut conn = state.pool.acquire().await?;
    let settlement = settlements::get_for_party(&mut conn, caller.user_id, id).await?.ok_or(ApiError::NotFound)?;
    Ok(Json(SettlementView::from(&settlement)))
}
