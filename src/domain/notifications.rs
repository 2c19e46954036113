//! What users are told about, and when.

use super::ids::UserId;
use super::text_enum::text_enum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum NotificationKind {
    TransferReceived,
    PendingTransferReceived,
    PendingTransferReminder,
    PendingTransferExpired,
    SettlementRequested,
    InstallmentFailed,
    /// A participant declined their share; told to the requester.
    SettlementDeclined,
}

text_enum!(NotificationKind {
    TransferReceived => "transfer_received",
    PendingTransferReceived => "pending_transfer_received",
    PendingTransferReminder => "pending_transfer_reminder",
    PendingTransferExpired => "pending_transfer_expired",
    SettlementRequested => "settlement_requested",
    InstallmentFailed => "installment_failed",
    SettlementDeclined => "settlement_declined",
});

/// A notification to write in the same transaction as the change that causes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    pub user_id: UserId,
    pub kind: NotificationKind,
    pub payload: serde_json::Value,
}

/// A notification as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub id: i64,
    pub kind: NotificationKind,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub payload: serde_json::Value,
}
