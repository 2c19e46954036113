//! Split bills: shares and their states.

use super::accounts::{text_enum, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareStatus {
    /// Owed by a participant.
    Requested,
    Paid,
    /// The requester's own part: never paid, only shown.
    Own,
}

text_enum!(ShareStatus { Requested => "requested", Paid => "paid", Own => "self" });

/// A share as the ledger writer needs it to take a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub user_id: UserId,
    pub amount: i64,
    pub status: ShareStatus,
}

/// A settlement is complete when no share is still owed.
pub fn all_settled(shares: &[Share]) -> bool {
    shares.iter().all(|share| share.status != ShareStatus::Requested)
}
