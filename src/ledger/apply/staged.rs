//! One command's changes while it runs, kept apart from the batch's state until it succeeds,
//! and the moves every command is made of: booking a posting, topping up from outside,
//! paying the interest owed, a user-to-user transfer.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::command::CommandError;
use super::effects::PaidShare;
use super::postings::{Posting, PostingFlags, PostingKind};
use super::state::{BatchContext, LedgerState};
use crate::domain::accounts::{
    Account, AccountId, AccountKind, AccountStatus, Inflow, UserId, EXTERNAL_ACCOUNT_ID, INTEREST_ACCOUNT_ID,
};
use crate::domain::business_day::business_date;
use crate::domain::ids::{SettlementId, TransferId};
use crate::domain::interest::{days_memo, first_day_owed, owed_interest};
use crate::domain::money::auto_charge_for;
use crate::domain::notifications::{NewNotification, NotificationKind};
use crate::domain::settlements::Share;
use crate::domain::transfers::{Transfer, TransferStatus, PENDING_LIFETIME};

/// The one answer for every target that is not another user's main account, existing or
/// not, so that the answer says nothing about which accounts exist.
pub(super) const TRANSFER_TARGET_REFUSED: &str = "transfers go to another user's main account";

/// An account that is not in the batch's state: unknown, or the external account when the
/// batch did not lock it (see [`Command::accounts`]).
pub(super) fn missing(id: AccountId) -> CommandError {
    if id == EXTERNAL_ACCOUNT_ID {
        CommandError::NeedsExternalAccount
    } else {
        CommandError::AccountNotFound
    }
}

/// A user-to-user transfer as the commands that create one describe it.
pub(super) struct TransferRequest {
    pub(super) user_id: UserId,
    pub(super) from_account_id: AccountId,
    pub(super) to_account_id: AccountId,
    pub(super) amount: i64,
    /// Held for the receiver's answer instead of moved at once.
    pub(super) confirm: bool,
    pub(super) display_name: Option<String>,
    pub(super) memo: Option<String>,
    pub(super) settlement_id: Option<SettlementId>,
}

/// One command's changes, kept apart until the command succeeds.
pub(super) struct Staged<'a> {
    pub(super) state: &'a LedgerState,
    pub(super) context: &'a BatchContext,
    pub(super) command_index: usize,
    pub(super) accounts: BTreeMap<AccountId, Account>,
    pub(super) daily_used: BTreeMap<(UserId, NaiveDate), i64>,
    pub(super) postings: Vec<Posting>,
    pub(super) new_transfers: Vec<Transfer>,
    /// Existing transfers changed by the command.
    pub(super) transfers: BTreeMap<TransferId, Transfer>,
    /// Shares changed by the command, per settlement (the whole list).
    pub(super) shares: BTreeMap<SettlementId, Vec<Share>>,
    pub(super) notifications: Vec<NewNotification>,
    pub(super) paid_shares: Vec<PaidShare>,
    pub(super) completed_settlements: Vec<SettlementId>,
    /// Set while the command builds a user-visible transfer; its postings carry the id.
    pub(super) transfer_id: Option<TransferId>,
    /// The business date whose top-up limit the command uses.
    pub(super) limit_date: NaiveDate,
    /// The memo of the next posting (interest names its days).
    pub(super) memo: Option<String>,
}

impl<'a> Staged<'a> {
    pub(super) fn new(state: &'a LedgerState, context: &'a BatchContext, command_index: usize) -> Self {
        Staged {
            state,
            context,
            command_index,
            accounts: BTreeMap::new(),
            daily_used: BTreeMap::new(),
            postings: Vec::new(),
            new_transfers: Vec::new(),
            transfers: BTreeMap::new(),
            shares: BTreeMap::new(),
            notifications: Vec::new(),
            paid_shares: Vec::new(),
            completed_settlements: Vec::new(),
            transfer_id: None,
            limit_date: context.business_date,
            memo: None,
        }
    }

    /// The next reserved transfer id. The writer reserves one per command that may create a
    /// transfer, so running out is a bug in the writer: it stops the batch (the callers are
    /// answered 503) rather than refusing the command as if it were the caller's fault.
    pub(super) fn take_transfer_id(&mut self) -> TransferId {
        let index = self.state.transfer_ids_used + self.new_transfers.len();
        let Some(&id) = self.state.transfer_ids.get(index) else {
            panic!(
                "command {}: no transfer id reserved ({} reserved)",
                self.command_index,
                self.state.transfer_ids.len()
            )
        };
        self.transfer_id = Some(id);
        id
    }

    pub(super) fn account(&self, id: AccountId) -> Result<&Account, CommandError> {
        self.accounts.get(&id).or_else(|| self.state.accounts.get(&id)).ok_or_else(|| missing(id))
    }

    pub(super) fn account_mut(&mut self, id: AccountId) -> Result<&mut Account, CommandError> {
        if !self.accounts.contains_key(&id) {
            let account = self.state.accounts.get(&id).ok_or_else(|| missing(id))?.clone();
            self.accounts.insert(id, account);
        }
        self.accounts.get_mut(&id).ok_or_else(|| missing(id))
    }

    /// The caller's own open account of the given kind. Someone else's account is "not found"
    /// so that existence does not leak.
    pub(super) fn own_account(
        &self,
        user_id: UserId,
        id: AccountId,
        kind: AccountKind,
    ) -> Result<&Account, CommandError> {
        let account = self.account(id)?;
        if !account.is_owned_by(user_id) {
            return Err(CommandError::AccountNotFound);
        }
        if account.kind != kind {
            return Err(CommandError::NotAllowed(match kind {
                AccountKind::Main => "this operation needs the main account",
                AccountKind::Savings => "this operation needs a savings account",
                AccountKind::System => "this operation needs a system account",
            }));
        }
        if account.status != AccountStatus::Open {
            return Err(CommandError::InvalidState("the account is closed"));
        }
        Ok(account)
    }

    pub(super) fn daily_used(&self, user_id: UserId) -> i64 {
        let key = (user_id, self.limit_date);
        self.daily_used.get(&key).or_else(|| self.state.daily_used.get(&key)).copied().unwrap_or(0)
    }

    /// Counts `amount` against today's limit and returns the new total used.
    pub(super) fn use_daily_limit(&mut self, user_id: UserId, amount: i64) -> Result<i64, CommandError> {
        let used = self.daily_used(user_id);
        let remaining = self.context.daily_charge_limit_krw.saturating_sub(used).max(0);
        if amount > remaining {
            return Err(CommandError::DailyLimitExceeded { remaining, requested: amount });
        }
        let used = used.checked_add(amount).ok_or(CommandError::Overflow)?;
        self.daily_used.insert((user_id, self.limit_date), used);
        Ok(used)
    }

    /// Moves `amount` at once from `debit` to `credit`. A user account may not end with a
    /// negative available balance.
    pub(super) fn post(
        &mut self,
        debit: AccountId,
        credit: AccountId,
        amount: i64,
        kind: PostingKind,
    ) -> Result<(), CommandError> {
        self.book(debit, credit, amount, kind, PostingFlags::Posted)
    }

    /// Applies one ledger row to the two accounts' columns and records it. A user account may
    /// not end with a negative available balance.
    pub(super) fn book(
        &mut self,
        debit: AccountId,
        credit: AccountId,
        amount: i64,
        kind: PostingKind,
        flags: PostingFlags,
    ) -> Result<(), CommandError> {
        if amount <= 0 || debit == credit {
            return Err(CommandError::Overflow);
        }
        let add = |column: &mut i64| -> Result<(), CommandError> {
            *column = column.checked_add(amount).ok_or(CommandError::Overflow)?;
            Ok(())
        };
        // Only a pending transfer's hold is resolved (the caller checked its status), and its
        // accounts hold at least its amount: less means a corrupted ledger, not a refusal.
        let take = |column: &mut i64| -> Result<(), CommandError> {
            let left = column.checked_sub(amount).filter(|left| *left >= 0);
            *column = left.unwrap_or_else(|| panic!("no hold of {amount} to resolve: {column} held"));
            Ok(())
        };
        let from = self.account_mut(debit)?;
        match flags {
            PostingFlags::Posted => add(&mut from.debits_posted)?,
            PostingFlags::Pending => add(&mut from.debits_pending)?,
            PostingFlags::PostPending => {
                take(&mut from.debits_pending)?;
                add(&mut from.debits_posted)?;
            }
            PostingFlags::VoidPending => take(&mut from.debits_pending)?,
        }
        if !from.is_system() && from.available() < 0 {
            return Err(CommandError::InsufficientFunds);
        }
        let debit_available_after = from.available();
        let to = self.account_mut(credit)?;
        match flags {
            PostingFlags::Posted => add(&mut to.credits_posted)?,
            PostingFlags::Pending => add(&mut to.credits_pending)?,
            PostingFlags::PostPending => {
                take(&mut to.credits_pending)?;
                add(&mut to.credits_posted)?;
            }
            PostingFlags::VoidPending => take(&mut to.credits_pending)?,
        }
        // Keeps every balance computation (credits − debits) far from overflow.
        if to.credits_posted > i64::MAX / 4 || to.credits_pending > i64::MAX / 4 {
            return Err(CommandError::Overflow);
        }
        let credit_available_after = to.available();
        self.postings.push(Posting {
            command_index: self.command_index,
            debit_account_id: debit,
            credit_account_id: credit,
            amount,
            kind,
            flags,
            transfer_id: self.transfer_id,
            charged_for: (kind == PostingKind::Charge).then_some(self.limit_date),
            memo: self.memo.take(),
            debit_available_after,
            credit_available_after,
        });
        Ok(())
    }

    /// Tops up the main account from outside so that `needed` is available, in units of
    /// 10,000 within the daily limit. Returns what was charged (0 when nothing was short).
    pub(super) fn auto_charge(
        &mut self,
        user_id: UserId,
        main_account_id: AccountId,
        needed: i64,
    ) -> Result<i64, CommandError> {
        let available = self.account(main_account_id)?.available();
        let charge = auto_charge_for(available, needed).ok_or(CommandError::Overflow)?;
        if charge > 0 {
            // Before the limit: a batch that did not lock the external account did not read the
            // daily counters either (the writer's `Wanted::of`), and the command must run again
            // with both, not be judged on a counter it did not read.
            self.account(EXTERNAL_ACCOUNT_ID)?;
            self.use_daily_limit(user_id, charge)?;
            self.post(EXTERNAL_ACCOUNT_ID, main_account_id, charge, PostingKind::Charge)?;
        }
        Ok(charge)
    }

    /// Notes money that came into a savings account now: a close later in the batch must not
    /// count it in the principal of the days before.
    pub(super) fn came_in(&mut self, savings_account_id: AccountId, amount: i64) -> Result<(), CommandError> {
        let at = self.context.now;
        self.account_mut(savings_account_id)?.inflows.push(Inflow { at, amount });
        Ok(())
    }

    /// Pays a savings account the interest of every completed business day not yet paid, as
    /// the interest job would have (the same rules, the carry going on), and marks those days
    /// paid. Returns what was posted.
    pub(super) fn pay_interest_owed(&mut self, savings_account_id: AccountId) -> Result<i64, CommandError> {
        let tz = self.context.tz;
        let Some(last) = self.context.business_date.pred_opt() else { return Ok(0) };
        let savings = self.account(savings_account_id)?;
        let first = first_day_owed(savings.interest_through, business_date(savings.opened_at, tz));
        if first > last {
            return Ok(0);
        }
        let inflows: Vec<(NaiveDate, i64)> =
            savings.inflows.iter().map(|inflow| (business_date(inflow.at, tz), inflow.amount)).collect();
        let principal = savings.balance() - savings.interest_paid;
        let owed = owed_interest(
            principal,
            &inflows,
            first,
            last,
            savings.interest_rate_bp.unwrap_or(0),
            savings.interest_carry,
        )
        .ok_or(CommandError::Overflow)?;
        if owed.posted > 0 {
            self.memo = Some(days_memo(first, last));
            self.post(INTEREST_ACCOUNT_ID, savings_account_id, owed.posted, PostingKind::Interest)?;
        }
        let savings = self.account_mut(savings_account_id)?;
        savings.interest_paid = savings.interest_paid.checked_add(owed.posted).ok_or(CommandError::Overflow)?;
        savings.interest_carry = owed.carry;
        savings.interest_through = Some(last);
        Ok(owed.posted)
    }

    pub(super) fn snapshot(&self, id: AccountId) -> Result<Account, CommandError> {
        self.account(id).cloned()
    }

    pub(super) fn transfer(&self, id: TransferId) -> Result<&Transfer, CommandError> {
        self.transfers.get(&id).or_else(|| self.state.transfers.get(&id)).ok_or(CommandError::NotFound)
    }

    pub(super) fn shares_of(&self, settlement_id: SettlementId) -> Result<Vec<Share>, CommandError> {
        self.shares
            .get(&settlement_id)
            .or_else(|| self.state.shares.get(&settlement_id))
            .cloned()
            .ok_or(CommandError::NotFound)
    }

    /// Main account → another user's main account, at once or held for the receiver
    /// (`confirm`), after topping up the sender's shortfall.
    pub(super) fn transfer_between(&mut self, request: TransferRequest) -> Result<Transfer, CommandError> {
        let TransferRequest {
            user_id,
            from_account_id,
            to_account_id,
            amount,
            confirm,
            display_name,
            memo,
            settlement_id,
        } = request;
        let to_user_id = match self.account(to_account_id) {
            Ok(to) if to.kind == AccountKind::Main && to.status == AccountStatus::Open => {
                to.user_id.filter(|owner| *owner != user_id)
            }
            _ => None,
        }
        .ok_or(CommandError::NotAllowed(TRANSFER_TARGET_REFUSED))?;
        self.own_account(user_id, from_account_id, AccountKind::Main)?;
        let id = self.take_transfer_id();
        let auto_charged = self.auto_charge(user_id, from_account_id, amount)?;
        let now = self.context.now;
        let (status, expires_at) = if confirm {
            self.book(from_account_id, to_account_id, amount, PostingKind::Pending, PostingFlags::Pending)?;
            (TransferStatus::Pending, Some(now + PENDING_LIFETIME))
        } else {
            self.post(from_account_id, to_account_id, amount, PostingKind::Transfer)?;
            (TransferStatus::Completed, None)
        };
        let transfer = Transfer {
            id,
            from_account_id,
            to_account_id,
            from_user_id: user_id,
            to_user_id,
            amount,
            auto_charged,
            status,
            display_name,
            memo,
            created_at: now,
            expires_at,
            resolved_at: None,
            settlement_id,
        };
        let kind = if confirm { NotificationKind::PendingTransferReceived } else { NotificationKind::TransferReceived };
        self.notify_received(&transfer, kind)?;
        self.new_transfers.push(transfer.clone());
        Ok(transfer)
    }

    /// Tells the receiver about money sent to them, under the name they are shown and, beside
    /// it, the sender's real user name (a display name is anything the sender likes).
    pub(super) fn notify_received(&mut self, transfer: &Transfer, kind: NotificationKind) -> Result<(), CommandError> {
        let sender_name = self.account(transfer.from_account_id)?.owner_name.clone();
        let payload = serde_json::json!({
            "transfer_id": transfer.id,
            "from_account_id": transfer.from_account_id,
            "from_name": transfer.display_name.clone().or(sender_name.clone()),
            "from_user_name": sender_name,
            "amount": transfer.amount,
            "memo": transfer.memo,
            "status": transfer.status.as_str(),
            "expires_at": transfer.expires_at,
        });
        self.notifications.push(NewNotification { user_id: transfer.to_user_id, kind, payload });
        Ok(())
    }
}
