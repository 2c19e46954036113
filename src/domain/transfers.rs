//! Transfers between users, as the API shows them.

use chrono::{DateTime, Duration, Utc};

use super::ids::{AccountId, SettlementId, TransferId, UserId};
use super::text_enum::text_enum;

/// How long a pending transfer waits for the receiver before it expires.
pub const PENDING_LIFETIME: Duration = Duration::hours(72);
/// The receiver is reminded once when this much of the wait is left.
pub const REMINDER_BEFORE_EXPIRY: Duration = Duration::hours(24);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TransferStatus {
    Completed,
    Pending,
    Canceled,
    Rejected,
    Expired,
}

text_enum!(TransferStatus {
    Completed => "completed",
    Pending => "pending",
    Canceled => "canceled",
    Rejected => "rejected",
    Expired => "expired",
});

/// How a user's outgoing transfers complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TransferMode {
    Immediate,
    /// The receiver must accept; until then the amount is held as pending.
    Confirm,
}

text_enum!(TransferMode { Immediate => "immediate", Confirm => "confirm" });

/// Decoded from `to_jsonb(transfers)` by every reader, like [`super::accounts::Account`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Transfer {
    pub id: TransferId,
    pub from_account_id: AccountId,
    pub to_account_id: AccountId,
    pub from_user_id: UserId,
    pub to_user_id: UserId,
    pub amount: i64,
    /// What was topped up into the sender's main account to fund it.
    pub auto_charged: i64,
    pub status: TransferStatus,
    /// The name the receiver sees, if the sender chose one.
    pub display_name: Option<String>,
    pub memo: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// The split bill this transfer paid a share of.
    #[serde(default)]
    pub settlement_id: Option<SettlementId>,
}

impl Transfer {
    /// A pending transfer can no longer be accepted from `expires_at` on, whether or not the
    /// expiry job has run.
    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|expires_at| now >= expires_at)
    }
}
