//! What callers ask the ledger to do, the rows each command needs locked, and why a command
//! is refused.

use chrono::NaiveDate;

use crate::domain::accounts::{AccountId, UserId, EXTERNAL_ACCOUNT_ID, INTEREST_ACCOUNT_ID};
use crate::domain::ids::{SettlementId, TransferId};
use crate::domain::money::Amount;

/// What a caller asks the ledger to do. Every money movement in minipay is one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// An external top-up into the user's own main account, within the daily limit.
    Charge { user_id: UserId, account_id: AccountId, amount: Amount },
    /// Main account → own free savings account, topping up the main account's shortfall.
    Deposit { user_id: UserId, main_account_id: AccountId, savings_account_id: AccountId, amount: Amount },
    /// Closes a savings account, moving what it holds to the main account, with the interest of
    /// every completed business day not yet paid (paid first, from the `interest` account).
    CloseSavings { user_id: UserId, main_account_id: AccountId, savings_account_id: AccountId },
    /// Main account → another user's main account, topping up the sender's shortfall.
    Transfer {
        user_id: UserId,
        from_account_id: AccountId,
        to_account_id: AccountId,
        amount: Amount,
        display_name: Option<String>,
        memo: Option<String>,
    },
    /// Pays the caller's share of a split bill to the requester's main account, topping up the
    /// caller's shortfall. The amount is the share's, read under lock.
    PayShare {
        user_id: UserId,
        settlement_id: SettlementId,
        from_account_id: AccountId,
        /// The requester's main account.
        to_account_id: AccountId,
        memo: Option<String>,
    },
    /// Resolves a pending transfer. The accounts are the transfer's (they never change); the
    /// status is read under lock, so exactly one resolution wins.
    Resolve { transfer_id: TransferId, from_account_id: AccountId, to_account_id: AccountId, action: Resolution },
    /// A fixed savings account's installment for business date `date`: main → savings, the
    /// shortfall topped up against `date`'s limit. When the limit does not allow it, nothing
    /// moves and the miss is recorded on the account with an `installment_failed` notification.
    /// Either way the date is marked done on the account, so it is taken at most once.
    Installment { user_id: UserId, main_account_id: AccountId, savings_account_id: AccountId, date: NaiveDate },
}

/// What the parties of a pending transfer may do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The receiver takes the money.
    Accept { user_id: UserId },
    /// The receiver sends it back.
    Reject { user_id: UserId },
    /// The sender takes it back.
    Cancel { user_id: UserId },
}

impl Command {
    /// Accounts the batch locks for the command, in id order. A transfer touches the external
    /// account only when it tops the sender up, which is rare and known only once balances are
    /// read: it is left out here, so that transfer batches do not all meet on the external
    /// account's row, and a transfer that turns out to need it fails with
    /// [`CommandError::NeedsExternalAccount`], which the writer answers by running it again in
    /// a batch that locks the external account too.
    pub fn accounts(&self) -> Vec<AccountId> {
        match *self {
            Command::Charge { account_id, .. } => vec![account_id, EXTERNAL_ACCOUNT_ID],
            Command::Deposit { main_account_id, savings_account_id, .. } => {
                vec![main_account_id, savings_account_id, EXTERNAL_ACCOUNT_ID]
            }
            Command::CloseSavings { main_account_id, savings_account_id, .. } => {
                vec![INTEREST_ACCOUNT_ID, main_account_id, savings_account_id]
            }
            Command::Transfer { from_account_id, to_account_id, .. }
            | Command::PayShare { from_account_id, to_account_id, .. } => vec![from_account_id, to_account_id],
            Command::Resolve { from_account_id, to_account_id, .. } => vec![from_account_id, to_account_id],
            Command::Installment { main_account_id, savings_account_id, .. } => {
                vec![main_account_id, savings_account_id, EXTERNAL_ACCOUNT_ID]
            }
        }
    }

    /// The (receiving account, sender) pair whose block the batch looks up: a transfer's.
    /// (A share payment goes to the settlement's requester, whom the payer agreed to pay.)
    pub fn block_to_check(&self) -> Option<(AccountId, UserId)> {
        match *self {
            Command::Transfer { user_id, to_account_id, .. } => Some((to_account_id, user_id)),
            Command::Charge { .. }
            | Command::Deposit { .. }
            | Command::CloseSavings { .. }
            | Command::PayShare { .. }
            | Command::Resolve { .. }
            | Command::Installment { .. } => None,
        }
    }

    pub fn creates_transfer(&self) -> bool {
        match self {
            Command::Transfer { .. } | Command::PayShare { .. } => true,
            Command::Charge { .. }
            | Command::Deposit { .. }
            | Command::CloseSavings { .. }
            | Command::Resolve { .. }
            | Command::Installment { .. } => false,
        }
    }

    /// The existing transfer the command changes; the batch locks it.
    pub fn transfer_to_lock(&self) -> Option<TransferId> {
        match *self {
            Command::Resolve { transfer_id, .. } => Some(transfer_id),
            Command::Charge { .. }
            | Command::Deposit { .. }
            | Command::CloseSavings { .. }
            | Command::Transfer { .. }
            | Command::PayShare { .. }
            | Command::Installment { .. } => None,
        }
    }

    /// The settlement whose shares the command reads and changes; the batch locks them.
    pub fn settlement_to_lock(&self) -> Option<SettlementId> {
        match *self {
            Command::PayShare { settlement_id, .. } => Some(settlement_id),
            Command::Charge { .. }
            | Command::Deposit { .. }
            | Command::CloseSavings { .. }
            | Command::Transfer { .. }
            | Command::Resolve { .. }
            | Command::Installment { .. } => None,
        }
    }

    /// The savings account the command closes: its batch reads the account's recent
    /// deposits and installments ([`Account::inflows`]) to pay the interest still owed.
    pub fn closing_account(&self) -> Option<AccountId> {
        match *self {
            Command::CloseSavings { savings_account_id, .. } => Some(savings_account_id),
            Command::Charge { .. }
            | Command::Deposit { .. }
            | Command::Transfer { .. }
            | Command::PayShare { .. }
            | Command::Resolve { .. }
            | Command::Installment { .. } => None,
        }
    }

    /// The user whose daily top-up counters the command may use.
    pub fn charging_user(&self) -> Option<UserId> {
        // The date does not matter for whose counter it is.
        self.charging_key(NaiveDate::MIN).map(|(user, _)| user)
    }

    /// The daily top-up counter the command may use: its user's, for the batch's business date
    /// (an installment's, for the date it is for).
    pub fn charging_key(&self, business_date: NaiveDate) -> Option<(UserId, NaiveDate)> {
        match *self {
            Command::Charge { user_id, .. }
            | Command::Deposit { user_id, .. }
            | Command::Transfer { user_id, .. }
            | Command::PayShare { user_id, .. } => Some((user_id, business_date)),
            Command::Installment { user_id, date, .. } => Some((user_id, date)),
            Command::CloseSavings { .. } | Command::Resolve { .. } => None,
        }
    }
}

/// Why a single command was refused. The batch goes on without it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("account not found")]
    AccountNotFound,
    /// A transfer or settlement that does not exist or is not the caller's to act on.
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    NotAllowed(&'static str),
    #[error("insufficient funds")]
    InsufficientFunds,
    #[error("daily top-up limit exceeded: {remaining} KRW left today, {requested} KRW needed")]
    DailyLimitExceeded { remaining: i64, requested: i64 },
    #[error("{0}")]
    InvalidState(&'static str),
    #[error("amount out of range")]
    Overflow,
    /// The command needs the external account (a top-up) and its batch did not lock it. Never
    /// shown to callers: the ledger writer runs the command again with the account locked.
    #[error("the external account was not locked")]
    NeedsExternalAccount,
}
