//! What a batch works on: the rows loaded under lock, and what holds for the whole batch.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::accounts::{Account, AccountId, UserId};
use crate::domain::ids::{SettlementId, TransferId};
use crate::domain::settlements::Share;
use crate::domain::transfers::Transfer;

/// The accounts and daily counters a batch works on, loaded under lock.
#[derive(Debug, Clone, Default)]
pub struct LedgerState {
    pub accounts: HashMap<AccountId, Account>,
    /// Top-ups used per user and business date; a missing entry means 0.
    pub daily_used: HashMap<(UserId, NaiveDate), i64>,
    /// Ids reserved for the transfers this batch may create, used in order.
    pub transfer_ids: Vec<TransferId>,
    /// How many of `transfer_ids` are taken.
    pub transfer_ids_used: usize,
    /// Existing transfers the batch resolves.
    pub transfers: HashMap<TransferId, Transfer>,
    /// Every share of the settlements the batch takes payments for.
    pub shares: HashMap<SettlementId, Vec<Share>>,
    /// (account, sender) pairs of the batch's transfers where the account's owner blocked the
    /// sender: such a transfer is refused as one to an account that does not exist.
    pub blocked: HashSet<(AccountId, UserId)>,
}

/// What holds for the whole batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchContext {
    pub now: DateTime<Utc>,
    pub business_date: NaiveDate,
    pub daily_charge_limit_krw: i64,
    /// The business time zone (interest is owed per business day).
    pub tz: chrono_tz::Tz,
}
