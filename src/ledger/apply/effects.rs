//! Everything a batch must write, gathered from the commands that succeeded.

use std::collections::BTreeSet;

use chrono::NaiveDate;

use super::postings::Posting;
use crate::domain::accounts::{AccountId, UserId};
use crate::domain::ids::{SettlementId, TransferId};
use crate::domain::notifications::NewNotification;
use crate::domain::transfers::Transfer;

/// Everything the batch must write: postings in order, and the keys of the rows to update
/// (their new values are in the state).
#[derive(Debug, Clone, Default)]
pub struct Effects {
    pub postings: Vec<Posting>,
    pub touched_accounts: BTreeSet<AccountId>,
    pub touched_daily: BTreeSet<(UserId, NaiveDate)>,
    pub new_transfers: Vec<Transfer>,
    /// Existing transfers whose status changed (their new state).
    pub resolved_transfers: Vec<Transfer>,
    pub notifications: Vec<NewNotification>,
    pub paid_shares: Vec<PaidShare>,
    pub completed_settlements: Vec<SettlementId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidShare {
    pub settlement_id: SettlementId,
    pub user_id: UserId,
    pub transfer_id: TransferId,
}
