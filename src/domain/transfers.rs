//! Transfers between users, as the API shows them.

use chrono::{DateTime, Utc};

use super::accounts::{text_enum, AccountId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub id: i64,
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
}
