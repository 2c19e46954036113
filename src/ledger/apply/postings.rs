//! The ledger rows a command books: what kind of movement, and how it moves the balance
//! columns.

use chrono::NaiveDate;

use crate::domain::accounts::AccountId;
use crate::domain::ids::TransferId;

/// What a posting is for, as its ledger row and statement entries name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostingKind {
    Charge,
    Deposit,
    Close,
    Transfer,
    /// A transfer held for the receiver's answer.
    Pending,
    /// A held transfer given back to the sender.
    Refund,
    /// A fixed savings account's daily installment.
    Installment,
    /// Interest paid into a savings account.
    Interest,
}

crate::domain::accounts::text_enum!(PostingKind {
    Charge => "charge",
    Deposit => "deposit",
    Close => "close",
    Transfer => "transfer",
    Pending => "pending",
    Refund => "refund",
    Installment => "installment",
    Interest => "interest",
});

/// How a posting moves the four balance columns (see the ledger_transfers migration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostingFlags {
    /// Moves money at once.
    Posted,
    /// Holds it: debits_pending of the debit account, credits_pending of the credit account.
    Pending,
    /// Turns a hold into a posted movement (same accounts and amount).
    PostPending,
    /// Releases a hold (same accounts and amount).
    VoidPending,
}

crate::domain::accounts::text_enum!(PostingFlags {
    Posted => "posted",
    Pending => "pending",
    PostPending => "post_pending",
    VoidPending => "void_pending",
});

/// One ledger transfer to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub command_index: usize,
    pub debit_account_id: AccountId,
    pub credit_account_id: AccountId,
    pub amount: i64,
    pub kind: PostingKind,
    pub flags: PostingFlags,
    /// The user-visible transfer this row belongs to (the transfer and its auto top-up).
    pub transfer_id: Option<TransferId>,
    /// For a top-up (`charge`): the business day whose limit it counts against, which for a
    /// caught-up installment is not the day it is booked.
    pub charged_for: Option<NaiveDate>,
    /// Shown on the statement entries when the posting is not part of a transfer (interest
    /// names the days it pays).
    pub memo: Option<String>,
    /// Available balances right after this posting, for the statement entries.
    pub debit_available_after: i64,
    pub credit_available_after: i64,
}
