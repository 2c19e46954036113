//! What users are told about: money received, transfers waiting for them, split bills.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult};
use super::extract::{ApiQuery, AuthUser};
use super::paging::page_size;
use crate::domain::notifications::{Notification, NotificationKind};
use crate::domain::settlements::SplitMode;
use crate::domain::transfers::TransferStatus;
use crate::http::state::AppState;
use crate::store::notifications;

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"id": 301, "kind": "transfer_received", "created_at": "2026-11-24T04:00:00Z",
    "payload": {"transfer_id": 88, "from_account_id": 1042, "from_name": "Mina", "from_user_name": "mina",
    "amount": 25000, "memo": "dinner", "status": "completed", "expires_at": null}}))]
pub struct NotificationView {
    pub id: i64,
    /// `transfer_received` | `pending_transfer_received` | `pending_transfer_reminder` |
    /// `pending_transfer_expired` | `settlement_requested` | `installment_failed` |
    /// `settlement_declined`.
    #[schema(value_type = NotificationKind)]
    pub kind: String,
    pub created_at: DateTime<Utc>,
    /// Depends on the kind. `settlement_requested`: `settlement_id`, `requester_id`,
    /// `requester_name`, `amount` (the share owed), `total`, `mode`, `memo`.
    /// `settlement_declined` (to the requester): `settlement_id`, `participant_id`,
    /// `participant_name`, `amount` (the share declined), `total`, `memo`.
    /// `transfer_received` and `pending_transfer_received`: `transfer_id`, `from_account_id`,
    /// `from_name` (the sender's display name if they chose one, else their user name),
    /// `from_user_name` (the sender's real user name, always), `amount`, `memo`, `status`,
    /// `expires_at`. `pending_transfer_reminder`: `transfer_id`, `from_user_id`, `amount`,
    /// `expires_at`. `installment_failed`: `account_id`, `business_date`, `amount`,
    /// `top_up_needed`, `limit_remaining`.
    #[schema(value_type = NotificationPayload)]
    pub payload: serde_json::Value,
}

/// What a notification carries: the fields its kind names (see `kind`), each present only for
/// the kinds that carry it. Documentation only: payloads are stored and served as written.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NotificationPayload {
    /// Transfer kinds: the transfer.
    transfer_id: Option<i64>,
    /// `transfer_received`, `pending_transfer_received`: the sender's main account.
    from_account_id: Option<i64>,
    /// `pending_transfer_reminder`: the sender.
    from_user_id: Option<i64>,
    /// The sender's display name if they chose one, else their user name.
    from_name: Option<String>,
    /// The sender's real user name, always.
    from_user_name: Option<String>,
    /// KRW: the transfer, the share owed or declined, or the installment.
    amount: Option<i64>,
    memo: Option<String>,
    /// The transfer's status when the notification was written.
    #[schema(value_type = Option<TransferStatus>)]
    status: Option<String>,
    expires_at: Option<DateTime<Utc>>,
    /// Settlement kinds: the settlement.
    settlement_id: Option<i64>,
    /// `settlement_requested`: who asks.
    requester_id: Option<i64>,
    requester_name: Option<String>,
    /// `settlement_declined`: who declined.
    participant_id: Option<i64>,
    participant_name: Option<String>,
    /// Settlement kinds: the settlement's total.
    total: Option<i64>,
    /// `settlement_requested`: how the total is split.
    #[schema(value_type = Option<SplitMode>)]
    mode: Option<String>,
    /// `installment_failed`: the fixed savings account.
    account_id: Option<i64>,
    /// `installment_failed`: the business date whose installment was missed.
    business_date: Option<chrono::NaiveDate>,
    /// `installment_failed`: what the main account lacked.
    top_up_needed: Option<i64>,
    /// `installment_failed`: what was left of the day's top-up limit.
    limit_remaining: Option<i64>,
}

impl From<Notification> for NotificationView {
    fn from(notification: Notification) -> Self {
        NotificationView {
            id: notification.id,
            kind: notification.kind.as_str().to_owned(),
            created_at: notification.created_at,
            payload: notification.payload,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(example = json!({"notifications": [{"id": 301, "kind": "settlement_requested", "created_at": "2026-11-24T04:00:00Z",
    "payload": {"settlement_id": 31, "requester_id": 17, "requester_name": "mina", "amount": 30000, "total": 90000,
    "mode": "equal", "memo": "dinner"}}]}))]
pub struct NotificationList {
    /// Oldest first.
    pub notifications: Vec<NotificationView>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    /// Only notifications with a larger id: the last id of the previous page. From the
    /// beginning when absent.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// 1..=200, default 50.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// The caller's notifications after the given id, oldest first (ascending id). Poll with the
/// last id received as `after`: ids become visible in increasing order, so none is skipped.
#[utoipa::path(get, path = "/v1/notifications", tag = "notifications", security(("bearer" = [])),
    params(NotificationQuery),
    responses((status = 200, body = NotificationList, description = "The next notifications, oldest first (empty when none is new)")))]
pub async fn list_notifications(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiQuery(query): ApiQuery<NotificationQuery>,
) -> ApiResult<Json<NotificationList>> {
    let limit = page_size(query.limit)?;
    let after = match query.after {
        None => 0,
        Some(after) if after >= 0 => after,
        Some(_) => return Err(ApiError::validation("after must be a notification id (0 or more)")),
    };
    let mut conn = state.read_pool().await.acquire().await?;
    let found = notifications::list_after(&mut conn, caller.user_id, after, limit).await?;
    Ok(Json(NotificationList { notifications: found.into_iter().map(NotificationView::from).collect() }))
}
