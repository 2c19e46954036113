//! The rules every command's effect keeps, checked after each command by [`super::apply`]:
//! double entry, postings that agree with the balance columns, holds taken and resolved only
//! for pending transfers, no negative pending column and no user account below zero.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::postings::{Posting, PostingFlags};
use super::state::LedgerState;
use crate::domain::accounts::{Account, AccountId};
use crate::domain::ids::TransferId;
use crate::domain::transfers::{Transfer, TransferStatus};

/// A ledger rule that a command's effect breaks, as [`postings_balance`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Imbalance {
    /// A posting of no money, or from an account to itself.
    MalformedPosting {
        index: usize,
        debit: AccountId,
        credit: AccountId,
        amount: i64,
    },
    /// The accounts' debit columns grew by other totals than their credit columns.
    DebitsAreNotCredits {
        debits: i128,
        credits: i128,
        pending_debits: i128,
        pending_credits: i128,
    },
    /// The first of the account's columns that moved otherwise than its postings say.
    AccountDiffersFromPostings {
        account_id: AccountId,
        column: &'static str,
        moved: i128,
        posted: i128,
    },
    /// A user account below zero available.
    NegativeAvailable {
        account_id: AccountId,
        available: i64,
    },
    NegativePending {
        account_id: AccountId,
    },
    /// A hold taken, posted or voided that is not a pending transfer's, for its accounts and
    /// amount.
    HoldMismatch {
        index: usize,
        transfer_id: Option<TransferId>,
        flags: PostingFlags,
        amount: i64,
    },
}

/// The balance columns, in the order [`columns_moved`] and [`postings_balance`] count them.
const COLUMNS: [&str; 4] = ["debits_posted", "credits_posted", "debits_pending", "credits_pending"];

/// How an account's columns moved from `before` (none: all zero) to `after`: debits posted,
/// credits posted, debits pending, credits pending.
fn columns_moved(before: Option<&Account>, after: &Account) -> [i128; 4] {
    let columns = |account: &Account| {
        [account.debits_posted, account.credits_posted, account.debits_pending, account.credits_pending].map(i128::from)
    };
    let before = before.map_or([0; 4], columns);
    let after = columns(after);
    [after[0] - before[0], after[1] - before[1], after[2] - before[2], after[3] - before[3]]
}

/// Double entry over one command: the debit columns of the accounts it changed (`after`, as
/// they were in `before`) grew by as much as their credit columns, posted and pending apart.
pub(super) fn columns_balance(
    before: &HashMap<AccountId, Account>,
    after: &BTreeMap<AccountId, Account>,
) -> Result<(), Imbalance> {
    let mut total = [0i128; 4];
    for (id, account) in after {
        for (sum, moved) in total.iter_mut().zip(columns_moved(before.get(id), account)) {
            *sum += moved;
        }
    }
    let [debits, credits, pending_debits, pending_credits] = total;
    if debits != credits || pending_debits != pending_credits {
        return Err(Imbalance::DebitsAreNotCredits { debits, credits, pending_debits, pending_credits });
    }
    Ok(())
}

/// The rules one command's effect keeps, checked against the batch's state before it
/// (`before`), the accounts it changed (`after`), its postings and the transfers it created:
/// debits equal credits ([`columns_balance`]); every posting moves a positive amount between
/// two accounts, and each account's columns moved exactly as its postings say; a hold is taken
/// for a new pending transfer, and posted or voided only for a transfer that was pending, for
/// its accounts and the amount held; no pending column is negative, and only system accounts
/// end below zero available. The first rule broken is returned.
pub(super) fn postings_balance(
    before: &LedgerState,
    after: &BTreeMap<AccountId, Account>,
    postings: &[Posting],
    new_transfers: &[Transfer],
) -> Result<(), Imbalance> {
    columns_balance(&before.accounts, after)?;
    let mut posted: BTreeMap<AccountId, [i128; 4]> = BTreeMap::new();
    for (index, posting) in postings.iter().enumerate() {
        let Posting { debit_account_id: debit, credit_account_id: credit, amount, flags, transfer_id, .. } = *posting;
        if amount <= 0 || debit == credit {
            return Err(Imbalance::MalformedPosting { index, debit, credit, amount });
        }
        let held = |transfer: &Transfer| {
            transfer.status == TransferStatus::Pending
                && (transfer.from_account_id, transfer.to_account_id, transfer.amount) == (debit, credit, amount)
        };
        let hold_kept = match flags {
            PostingFlags::Posted => true,
            PostingFlags::Pending => {
                new_transfers.iter().any(|transfer| Some(transfer.id) == transfer_id && held(transfer))
            }
            PostingFlags::PostPending | PostingFlags::VoidPending => {
                transfer_id.and_then(|id| before.transfers.get(&id)).is_some_and(held)
            }
        };
        if !hold_kept {
            return Err(Imbalance::HoldMismatch { index, transfer_id, flags, amount });
        }
        let amount = i128::from(amount);
        let (debit_moves, credit_moves) = match flags {
            PostingFlags::Posted => ([amount, 0, 0, 0], [0, amount, 0, 0]),
            PostingFlags::Pending => ([0, 0, amount, 0], [0, 0, 0, amount]),
            PostingFlags::PostPending => ([amount, 0, -amount, 0], [0, amount, 0, -amount]),
            PostingFlags::VoidPending => ([0, 0, -amount, 0], [0, 0, 0, -amount]),
        };
        for (id, moves) in [(debit, debit_moves), (credit, credit_moves)] {
            let columns = posted.entry(id).or_insert([0; 4]);
            for (column, moved) in columns.iter_mut().zip(moves) {
                *column += moved;
            }
        }
    }
    for id in posted.keys().chain(after.keys()).collect::<BTreeSet<_>>() {
        let moved = after.get(id).map_or([0; 4], |account| columns_moved(before.accounts.get(id), account));
        let posted = posted.get(id).copied().unwrap_or([0; 4]);
        if let Some(index) = (0..COLUMNS.len()).find(|index| moved[*index] != posted[*index]) {
            return Err(Imbalance::AccountDiffersFromPostings {
                account_id: *id,
                column: COLUMNS[index],
                moved: moved[index],
                posted: posted[index],
            });
        }
    }
    for account in after.values() {
        if account.debits_pending < 0 || account.credits_pending < 0 {
            return Err(Imbalance::NegativePending { account_id: account.id });
        }
        if !account.is_system() && account.available() < 0 {
            return Err(Imbalance::NegativeAvailable { account_id: account.id, available: account.available() });
        }
    }
    Ok(())
}
