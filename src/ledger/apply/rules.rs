//! What each kind of command does, one function per kind, on the command's [`Staged`] changes.

use chrono::NaiveDate;

use super::command::{Command, CommandError, Resolution};
use super::effects::PaidShare;
use super::outcome::Outcome;
use super::postings::{PostingFlags, PostingKind};
use super::staged::{Staged, TransferRequest};
use crate::domain::accounts::{AccountId, AccountKind, AccountStatus, Product, UserId, EXTERNAL_ACCOUNT_ID};
use crate::domain::ids::{SettlementId, TransferId};
use crate::domain::money::{auto_charge_for, Amount};
use crate::domain::notifications::{NewNotification, NotificationKind};
use crate::domain::settlements::{all_settled, ShareStatus};
use crate::domain::transfers::{TransferMode, TransferStatus};

impl Staged<'_> {
    /// Runs one command on the staged changes.
    pub(super) fn run(&mut self, command: &Command) -> Result<Outcome, CommandError> {
        match *command {
            Command::Charge { user_id, account_id, amount } => self.charge(user_id, account_id, amount),
            Command::Deposit { user_id, main_account_id, savings_account_id, amount } => {
                self.deposit(user_id, main_account_id, savings_account_id, amount)
            }
            Command::CloseSavings { user_id, main_account_id, savings_account_id } => {
                self.close_savings(user_id, main_account_id, savings_account_id)
            }
            Command::Transfer { user_id, from_account_id, to_account_id, amount, ref display_name, ref memo } => {
                // The sender is not told of a block: the answer is the one for an account
                // that does not exist, in the order that one is given.
                if self.state.blocked.contains(&(to_account_id, user_id)) {
                    self.account(from_account_id)?;
                    return Err(CommandError::NotAllowed(super::staged::TRANSFER_TARGET_REFUSED));
                }
                let confirm = self.account(from_account_id)?.owner_transfer_mode == Some(TransferMode::Confirm);
                self.send(TransferRequest {
                    user_id,
                    from_account_id,
                    to_account_id,
                    amount: amount.krw(),
                    confirm,
                    display_name: display_name.clone(),
                    memo: memo.clone(),
                    settlement_id: None,
                })
            }
            Command::PayShare { user_id, settlement_id, from_account_id, to_account_id, ref memo } => {
                self.pay_share(user_id, settlement_id, from_account_id, to_account_id, memo.clone())
            }
            Command::Installment { user_id, main_account_id, savings_account_id, date } => {
                self.installment(user_id, main_account_id, savings_account_id, date)
            }
            Command::Resolve { transfer_id, from_account_id, to_account_id, action } => {
                self.resolve(transfer_id, (from_account_id, to_account_id), action)
            }
        }
    }

    /// [`Command::Charge`].
    fn charge(&mut self, user_id: UserId, account_id: AccountId, amount: Amount) -> Result<Outcome, CommandError> {
        self.own_account(user_id, account_id, AccountKind::Main)?;
        let daily_used = self.use_daily_limit(user_id, amount.krw())?;
        self.post(EXTERNAL_ACCOUNT_ID, account_id, amount.krw(), PostingKind::Charge)?;
        Ok(Outcome::Charged { account: self.snapshot(account_id)?, charged: amount.krw(), daily_used })
    }

    /// [`Command::Deposit`].
    fn deposit(
        &mut self,
        user_id: UserId,
        main_account_id: AccountId,
        savings_account_id: AccountId,
        amount: Amount,
    ) -> Result<Outcome, CommandError> {
        let savings = self.own_account(user_id, savings_account_id, AccountKind::Savings)?;
        if savings.product == Some(Product::Fixed) {
            return Err(CommandError::NotAllowed(
                "fixed savings take only their daily installment; deposit into a free savings account",
            ));
        }
        self.own_account(user_id, main_account_id, AccountKind::Main)?;
        let auto_charged = self.auto_charge(user_id, main_account_id, amount.krw())?;
        self.post(main_account_id, savings_account_id, amount.krw(), PostingKind::Deposit)?;
        self.came_in(savings_account_id, amount.krw())?;
        Ok(Outcome::Deposited {
            savings: self.snapshot(savings_account_id)?,
            main: self.snapshot(main_account_id)?,
            auto_charged,
            daily_used: self.daily_used(user_id),
        })
    }

    /// [`Command::CloseSavings`].
    fn close_savings(
        &mut self,
        user_id: UserId,
        main_account_id: AccountId,
        savings_account_id: AccountId,
    ) -> Result<Outcome, CommandError> {
        let savings = self.own_account(user_id, savings_account_id, AccountKind::Savings)?;
        if savings.debits_pending != 0 || savings.credits_pending != 0 {
            return Err(CommandError::InvalidState("the account has pending movements"));
        }
        self.own_account(user_id, main_account_id, AccountKind::Main)?;
        let interest = self.pay_interest_owed(savings_account_id)?;
        let moved = self.account(savings_account_id)?.balance();
        if moved > 0 {
            self.post(savings_account_id, main_account_id, moved, PostingKind::Close)?;
        }
        let now = self.context.now;
        let savings = self.account_mut(savings_account_id)?;
        savings.status = AccountStatus::Closed;
        savings.closed_at = Some(now);
        Ok(Outcome::Closed {
            savings: self.snapshot(savings_account_id)?,
            main: self.snapshot(main_account_id)?,
            moved,
            interest,
        })
    }

    /// [`Command::Transfer`].
    fn send(&mut self, request: TransferRequest) -> Result<Outcome, CommandError> {
        let from_account_id = request.from_account_id;
        let transfer = self.transfer_between(request)?;
        Ok(Outcome::Transferred { transfer, from_account: self.snapshot(from_account_id)? })
    }

    /// [`Command::PayShare`].
    fn pay_share(
        &mut self,
        user_id: UserId,
        settlement_id: SettlementId,
        from_account_id: AccountId,
        to_account_id: AccountId,
        memo: Option<String>,
    ) -> Result<Outcome, CommandError> {
        let mut shares = self.shares_of(settlement_id)?;
        let index = shares.iter().position(|share| share.user_id == user_id).ok_or(CommandError::NotFound)?;
        match shares[index].status {
            ShareStatus::Requested => {}
            ShareStatus::Paid => return Err(CommandError::InvalidState("the share is already paid")),
            ShareStatus::Declined => return Err(CommandError::InvalidState("the share was declined")),
            ShareStatus::Own => return Err(CommandError::InvalidState("the requester's own share is not paid")),
        }
        let request = TransferRequest {
            user_id,
            from_account_id,
            to_account_id,
            amount: shares[index].amount,
            confirm: false,
            display_name: None,
            memo,
            settlement_id: Some(settlement_id),
        };
        let transfer = self.transfer_between(request)?;
        let share = &mut shares[index];
        share.status = ShareStatus::Paid;
        share.paid_at = Some(self.context.now);
        share.transfer_id = Some(transfer.id);
        self.paid_shares.push(PaidShare { settlement_id, user_id, transfer_id: transfer.id });
        let completed_at = all_settled(&shares).then_some(self.context.now);
        if completed_at.is_some() {
            self.completed_settlements.push(settlement_id);
        }
        self.shares.insert(settlement_id, shares.clone());
        let from_account = self.snapshot(from_account_id)?;
        Ok(Outcome::SharePaid { settlement_id, transfer, from_account, shares, completed_at })
    }

    /// [`Command::Installment`].
    fn installment(
        &mut self,
        user_id: UserId,
        main_account_id: AccountId,
        savings_account_id: AccountId,
        date: NaiveDate,
    ) -> Result<Outcome, CommandError> {
        let savings = self.own_account(user_id, savings_account_id, AccountKind::Savings)?;
        let amount = match (savings.product, savings.installment_amount) {
            (Some(Product::Fixed), Some(amount)) => amount,
            _ => return Err(CommandError::NotAllowed("only fixed savings take installments")),
        };
        if savings.installment_through.is_some_and(|through| through >= date) {
            return Err(CommandError::InvalidState("the installment for this date was already taken"));
        }
        self.own_account(user_id, main_account_id, AccountKind::Main)?;
        self.limit_date = date;
        let available = self.account(main_account_id)?.available();
        let top_up = auto_charge_for(available, amount).ok_or(CommandError::Overflow)?;
        let remaining = self.context.daily_charge_limit_krw.saturating_sub(self.daily_used(user_id)).max(0);
        let taken = top_up <= remaining;
        let auto_charged = if taken {
            let auto_charged = self.auto_charge(user_id, main_account_id, amount)?;
            self.post(main_account_id, savings_account_id, amount, PostingKind::Installment)?;
            self.came_in(savings_account_id, amount)?;
            auto_charged
        } else {
            let payload = serde_json::json!({
                "account_id": savings_account_id,
                "business_date": date,
                "amount": amount,
                "top_up_needed": top_up,
                "limit_remaining": remaining,
            });
            self.notifications.push(NewNotification { user_id, kind: NotificationKind::InstallmentFailed, payload });
            0
        };
        let savings = self.account_mut(savings_account_id)?;
        savings.installment_through = Some(date);
        if !taken {
            savings.installments_missed = savings.installments_missed.saturating_add(1);
            savings.installment_missed_on = Some(date);
        }
        Ok(Outcome::Installment {
            savings: self.snapshot(savings_account_id)?,
            main: self.snapshot(main_account_id)?,
            taken,
            auto_charged,
        })
    }

    /// [`Command::Resolve`]: `accounts` are the command's (from, to), which must be the
    /// transfer's.
    fn resolve(
        &mut self,
        transfer_id: TransferId,
        accounts: (AccountId, AccountId),
        action: Resolution,
    ) -> Result<Outcome, CommandError> {
        let mut transfer = self.transfer(transfer_id)?.clone();
        let (party, status) = match action {
            Resolution::Accept { user_id } => (transfer.to_user_id == user_id, TransferStatus::Completed),
            Resolution::Reject { user_id } => (transfer.to_user_id == user_id, TransferStatus::Rejected),
            Resolution::Cancel { user_id } => (transfer.from_user_id == user_id, TransferStatus::Canceled),
        };
        if !party {
            return Err(CommandError::NotFound);
        }
        if (transfer.from_account_id, transfer.to_account_id) != accounts {
            return Err(CommandError::InvalidState("the transfer's accounts do not match"));
        }
        if transfer.status != TransferStatus::Pending {
            return Err(CommandError::InvalidState("the transfer is no longer pending"));
        }
        if transfer.is_expired_at(self.context.now) {
            return Err(CommandError::InvalidState("the transfer has expired"));
        }
        self.transfer_id = Some(transfer_id);
        let (kind, flags) = match status {
            TransferStatus::Completed => (PostingKind::Transfer, PostingFlags::PostPending),
            TransferStatus::Rejected | TransferStatus::Canceled | TransferStatus::Expired | TransferStatus::Pending => {
                (PostingKind::Refund, PostingFlags::VoidPending)
            }
        };
        let (from_account_id, to_account_id) = accounts;
        self.book(from_account_id, to_account_id, transfer.amount, kind, flags)?;
        transfer.status = status;
        transfer.resolved_at = Some(self.context.now);
        if status == TransferStatus::Completed {
            self.notify_received(&transfer, NotificationKind::TransferReceived)?;
        }
        self.transfers.insert(transfer_id, transfer.clone());
        Ok(Outcome::Resolved { transfer })
    }
}
