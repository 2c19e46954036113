//! Statement entries: what each user sees of a batch's postings. Pure; written by the ledger
//! writer in the batch's transaction (with the outbox row that carries them to ClickHouse).

use std::collections::HashMap;

use super::apply::{Effects, LedgerState, PostingFlags, PostingKind};
use crate::domain::accounts::{AccountId, EXTERNAL_ACCOUNT_ID, INTEREST_ACCOUNT_ID};
use crate::domain::ids::TransferId;
use crate::domain::transfers::Transfer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementEntry {
    pub account_id: AccountId,
    pub direction: Direction,
    pub amount: i64,
    /// The account's available balance right after the entry.
    pub balance_after: i64,
    pub kind: PostingKind,
    /// None for the outside world (top-ups, interest).
    pub counterparty_account_id: Option<AccountId>,
    /// The name shown, a snapshot: later renames do not change it. For the receiver of a
    /// transfer, the display name the sender chose, if any.
    pub counterparty_name: String,
    /// The counterparty's real user name at the time, always beside the name shown (which a
    /// sender chooses freely); None for system counterparties.
    pub counterparty_user_name: Option<String>,
    pub transfer_id: Option<TransferId>,
    pub memo: Option<String>,
}

/// The name shown for a system account.
fn system_name(id: AccountId) -> &'static str {
    match id {
        EXTERNAL_ACCOUNT_ID => "external",
        INTEREST_ACCOUNT_ID => "interest",
        _ => "minipay",
    }
}

/// Which sides of a posting its accounts' statements show.
fn sides(flags: PostingFlags) -> (Option<Direction>, Option<Direction>) {
    match flags {
        PostingFlags::Posted => (Some(Direction::Out), Some(Direction::In)),
        // Held: the sender sees the money leave what is available; the receiver sees nothing
        // until it is accepted.
        PostingFlags::Pending => (Some(Direction::Out), None),
        // Accepted: the receiver gets it; the sender's available balance does not change.
        PostingFlags::PostPending => (None, Some(Direction::In)),
        // Given back: the sender's available balance comes back up.
        PostingFlags::VoidPending => (Some(Direction::In), None),
    }
}

/// One entry per user-visible side of every posting, in posting order. The receiver of a
/// transfer sees the sender's chosen display name when there is one; everybody else sees real
/// names. Every entry with a user counterparty also carries that user's real name.
pub fn entries(state: &LedgerState, effects: &Effects) -> Vec<StatementEntry> {
    let transfers: HashMap<TransferId, &Transfer> = effects
        .new_transfers
        .iter()
        .chain(&effects.resolved_transfers)
        .map(|transfer| (transfer.id, transfer))
        .collect();
    let account = |id: AccountId| state.accounts.get(&id);
    let is_user = |id: AccountId| account(id).is_some_and(|a| !a.is_system());
    // The counterparty's account, name shown and real user name.
    let party = |id: AccountId| -> (Option<AccountId>, String, Option<String>) {
        match account(id) {
            Some(a) if !a.is_system() => {
                let name = a.owner_name.clone().unwrap_or_default();
                (Some(id), name.clone(), Some(name))
            }
            _ => (None, system_name(id).to_owned(), None),
        }
    };
    let mut out = Vec::with_capacity(effects.postings.len() * 2);
    for posting in &effects.postings {
        let transfer = posting.transfer_id.and_then(|id| transfers.get(&id).copied());
        // Memo and display name belong to the transfer itself, not to its auto top-up; a
        // posting outside transfers may carry its own memo (interest names the days it pays).
        let shown = transfer.filter(|_| match posting.kind {
            PostingKind::Transfer | PostingKind::Pending | PostingKind::Refund => true,
            PostingKind::Charge
            | PostingKind::Deposit
            | PostingKind::Close
            | PostingKind::Installment
            | PostingKind::Interest => false,
        });
        let memo = shown.and_then(|transfer| transfer.memo.clone()).or_else(|| posting.memo.clone());
        let (debit_side, credit_side) = sides(posting.flags);
        if let Some(direction) = debit_side.filter(|_| is_user(posting.debit_account_id)) {
            let (counterparty_account_id, counterparty_name, counterparty_user_name) = party(posting.credit_account_id);
            out.push(StatementEntry {
                account_id: posting.debit_account_id,
                direction,
                amount: posting.amount,
                balance_after: posting.debit_available_after,
                kind: posting.kind,
                counterparty_account_id,
                counterparty_name,
                counterparty_user_name,
                transfer_id: posting.transfer_id,
                memo: memo.clone(),
            });
        }
        if let Some(direction) = credit_side.filter(|_| is_user(posting.credit_account_id)) {
            let (counterparty_account_id, real_name, counterparty_user_name) = party(posting.debit_account_id);
            let counterparty_name = shown.and_then(|transfer| transfer.display_name.clone()).unwrap_or(real_name);
            out.push(StatementEntry {
                account_id: posting.credit_account_id,
                direction,
                amount: posting.amount,
                balance_after: posting.credit_available_after,
                kind: posting.kind,
                counterparty_account_id,
                counterparty_name,
                counterparty_user_name,
                transfer_id: posting.transfer_id,
                memo,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::domain::accounts::{Account, AccountKind, AccountStatus, UserId};
    use crate::domain::money::Amount;
    use crate::ledger::apply::{apply, BatchContext, Command};

    fn account(id: i64, owner: Option<(i64, &str)>, credits: i64) -> Account {
        Account {
            id: AccountId::new(id),
            user_id: owner.map(|(user, _)| UserId::new(user)),
            kind: if owner.is_some() { AccountKind::Main } else { AccountKind::System },
            product: None,
            status: AccountStatus::Open,
            installment_amount: None,
            interest_rate_bp: None,
            opened_at: "2026-11-01T00:00:00Z".parse().unwrap(),
            closed_at: None,
            debits_posted: 0,
            credits_posted: credits,
            debits_pending: 0,
            credits_pending: 0,
            owner_name: owner.map(|(_, name)| name.to_owned()),
            owner_transfer_mode: None,
            installment_through: None,
            installments_missed: 0,
            installment_missed_on: None,
            interest_paid: 0,
            interest_carry: 0,
            interest_through: None,
            inflows: Vec::new(),
        }
    }

    #[test]
    fn the_receiver_sees_the_display_name_and_the_sender_the_real_name() {
        let mut state = LedgerState::default();
        for account in [account(1, None, 0), account(101, Some((1, "alice")), 5_000), account(102, Some((2, "bob")), 0)]
        {
            state.accounts.insert(account.id, account);
        }
        state.transfer_ids = vec![TransferId::new(7)];
        let context = BatchContext {
            now: "2026-11-24T03:00:00Z".parse().unwrap(),
            business_date: NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
            daily_charge_limit_krw: 3_000_000,
            tz: chrono_tz::Asia::Seoul,
        };
        let command = Command::Transfer {
            user_id: UserId::new(1),
            from_account_id: AccountId::new(101),
            to_account_id: AccountId::new(102),
            amount: Amount::parse(12_000).unwrap(),
            display_name: Some("Kim".into()),
            memo: Some("lunch".into()),
        };
        let (results, effects) = apply(&mut state, &context, &[command]);
        assert!(results[0].is_ok());
        let entries = entries(&state, &effects);
        // The auto top-up of 10,000 shows as a charge from outside, without the memo.
        assert_eq!(entries.len(), 3);
        assert_eq!(
            (entries[0].account_id, entries[0].direction, entries[0].kind),
            (AccountId::new(101), Direction::In, PostingKind::Charge)
        );
        assert_eq!((entries[0].counterparty_account_id, entries[0].counterparty_name.as_str()), (None, "external"));
        assert_eq!(entries[0].counterparty_user_name, None);
        assert_eq!((entries[0].balance_after, entries[0].memo.as_deref()), (15_000, None));
        let sent = &entries[1];
        assert_eq!(
            (sent.account_id, sent.direction, sent.amount, sent.balance_after),
            (AccountId::new(101), Direction::Out, 12_000, 3_000)
        );
        assert_eq!((sent.counterparty_account_id, sent.counterparty_name.as_str()), (Some(AccountId::new(102)), "bob"));
        assert_eq!(sent.counterparty_user_name.as_deref(), Some("bob"));
        let received = &entries[2];
        assert_eq!(
            (received.account_id, received.direction, received.balance_after),
            (AccountId::new(102), Direction::In, 12_000)
        );
        assert_eq!(
            (received.counterparty_account_id, received.counterparty_name.as_str()),
            (Some(AccountId::new(101)), "Kim")
        );
        // Beside the chosen name, the sender's real one.
        assert_eq!(received.counterparty_user_name.as_deref(), Some("alice"));
        assert_eq!((received.transfer_id, received.memo.as_deref()), (Some(TransferId::new(7)), Some("lunch")));
    }
}
