//! What users are told about: money received, transfers waiting for them, split bills.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, Problem};
use super::extract::{ApiQuery, AuthUser};
use super::paging::page_size;
use crate::domain::notifications::Notification;
use crate::http::state::AppState;
use crate::store::notifications;

#[derive(Serialize, ToSchema)]
pub struct NotificationView {
    pub id: i64,
    /// `transfer_received` | `pending_transfer_received` | `pending_transfer_reminder` |
    /// `pending_transfer_expired` | `settlement_requested` | `installment_failed` |
    /// `settlement_declined`.
    pub kind: String,
    pub created_at: DateTime<Utc>,
    /// Depends on the kind. `settlement_requested`: `settlement_id`, `requester_id`,
    /// `requester_name`, `amount` (the share owed), `total`, `mode`, `memo`.
    /// `settlement_declined` (to the requester): `settlement_id`, `participant_id`,
    /// `participant_name`, `amount` (the share declined), `total`, `memo`.
    /// `transfer_received` and `pending_transfer_received`: `transfer_id`, `from_account_id`,
    /// `from_name` (the sender's display name if they chose one, else their user name),
    /// `from_user_name` (the sender's real user name, always), `amount`, `memo`, `status`,
    /// `expires_at`.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
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
pub struct NotificationList {
    /// Oldest first.
    pub notifications: Vec<NotificationView>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    /// Only notifications with a larger id: the last id of the previous page. From the
    /// beginning when absent.
    pub after: Option<i64>,
    /// 1..=200, default 50.
    pub limit: Option<i64>,
}

/// The caller's notifications after the given id, oldest first (ascending id). Poll with the
/// last id received as `after`: ids become visible in increasing order, so none is skipped.
#[utoipa::path(get, path = "/v1/notifications", tag = "notifications", security(("bearer" = [])),
    params(NotificationQuery),
    responses((status = 200, body = NotificationList), (status = 422, body = Problem, content_type = "application/problem+json", description = "validation-failed")))]
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
