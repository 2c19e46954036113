//! The pure apply step of the ledger writer: state + commands → per-command results + effects.
//!
//! No I/O. Commands are applied one after another on the state loaded (and locked) for the
//! batch; a command that fails leaves the state exactly as it found it, and the rest of the
//! batch goes on.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::accounts::{Account, AccountId, AccountKind, AccountStatus, Product, UserId, EXTERNAL_ACCOUNT_ID};
use crate::domain::money::{auto_charge_for, Amount};
use crate::domain::transfers::{Transfer, TransferStatus};

/// The one answer for every target that is not another user's main account, existing or
/// not, so that the answer says nothing about which accounts exist.
const TRANSFER_TARGET_REFUSED: &str = "transfers go to another user's main account";

/// What a caller asks the ledger to do. Every money movement in minipay is one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// An external top-up into the user's own main account, within the daily limit.
    Charge { user_id: UserId, account_id: AccountId, amount: Amount },
    /// Main account → own free savings account, topping up the main account's shortfall.
    Deposit { user_id: UserId, main_account_id: AccountId, savings_account_id: AccountId, amount: Amount },
    /// Closes a savings account, moving what it holds to the main account.
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
}

impl Command {
    /// Accounts the command may touch; the batch locks all of them, in id order.
    pub fn accounts(&self) -> Vec<AccountId> {
        match *self {
            Command::Charge { account_id, .. } => vec![account_id, EXTERNAL_ACCOUNT_ID],
            Command::Deposit { main_account_id, savings_account_id, .. } => {
                vec![main_account_id, savings_account_id, EXTERNAL_ACCOUNT_ID]
            }
            Command::CloseSavings { main_account_id, savings_account_id, .. } => {
                vec![main_account_id, savings_account_id]
            }
            Command::Transfer { from_account_id, to_account_id, .. } => {
                vec![from_account_id, to_account_id, EXTERNAL_ACCOUNT_ID]
            }
        }
    }

    pub fn creates_transfer(&self) -> bool {
        matches!(self, Command::Transfer { .. })
    }

    /// The user whose daily top-up counter the command may use.
    pub fn charging_user(&self) -> Option<UserId> {
        match *self {
            Command::Charge { user_id, .. } | Command::Deposit { user_id, .. } | Command::Transfer { user_id, .. } => {
                Some(user_id)
            }
            Command::CloseSavings { .. } => None,
        }
    }
}

/// Why a single command was refused. The batch goes on without it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("account not found")]
    AccountNotFound,
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
}

/// What a command did, with the accounts as they stand right after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Charged { account: Account, charged: i64, daily_used: i64 },
    Deposited { savings: Account, main: Account, auto_charged: i64, daily_used: i64 },
    Closed { savings: Account, main: Account, moved: i64 },
    Transferred { transfer: Transfer, from_account: Account },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostingKind {
    Charge,
    Deposit,
    Close,
    Transfer,
}

crate::domain::accounts::text_enum!(PostingKind {
    Charge => "charge",
    Deposit => "deposit",
    Close => "close",
    Transfer => "transfer",
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostingFlags {
    Posted,
}

crate::domain::accounts::text_enum!(PostingFlags { Posted => "posted" });

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
    pub transfer_id: Option<i64>,
    /// Available balances right after this posting, for the statement entries.
    pub debit_available_after: i64,
    pub credit_available_after: i64,
}

/// The accounts and daily counters a batch works on, loaded under lock.
#[derive(Debug, Clone, Default)]
pub struct LedgerState {
    pub accounts: HashMap<AccountId, Account>,
    /// Top-ups used per user and business date; a missing entry means 0.
    pub daily_used: HashMap<(UserId, NaiveDate), i64>,
    /// Ids reserved for the transfers this batch may create, used in order.
    pub transfer_ids: Vec<i64>,
    /// How many of `transfer_ids` are taken.
    pub transfer_ids_used: usize,
}

/// What holds for the whole batch.
#[derive(Debug, Clone, Copy)]
pub struct BatchContext {
    pub now: DateTime<Utc>,
    pub business_date: NaiveDate,
    pub daily_charge_limit_krw: i64,
}

/// Everything the batch must write: postings in order, and the keys of the rows to update
/// (their new values are in the state).
#[derive(Debug, Clone, Default)]
pub struct Effects {
    pub postings: Vec<Posting>,
    pub touched_accounts: BTreeSet<AccountId>,
    pub touched_daily: BTreeSet<(UserId, NaiveDate)>,
    pub new_transfers: Vec<Transfer>,
}

/// Applies `commands` in order to `state`.
pub fn apply(
    state: &mut LedgerState,
    context: &BatchContext,
    commands: &[Command],
) -> (Vec<Result<Outcome, CommandError>>, Effects) {
    let mut effects = Effects::default();
    let mut results = Vec::with_capacity(commands.len());
    for (index, command) in commands.iter().enumerate() {
        let mut staged = Staged::new(state, context, index);
        let result = staged.run(command);
        if result.is_ok() {
            let Staged { accounts, daily_used, postings, new_transfers, .. } = staged;
            state.transfer_ids_used += new_transfers.len();
            effects.new_transfers.extend(new_transfers);
            merge(state, &mut effects, accounts, daily_used, postings);
        }
        results.push(result);
    }
    debug_assert!(postings_balance(&effects.postings));
    (results, effects)
}

/// Every posting debits one account and credits another by the same amount, so the sums of
/// debits and credits over a batch are equal by construction; this checks the arithmetic.
fn postings_balance(postings: &[Posting]) -> bool {
    let mut debits: i128 = 0;
    let mut credits: i128 = 0;
    for posting in postings {
        debits += i128::from(posting.amount);
        credits += i128::from(posting.amount);
        if posting.amount <= 0 || posting.debit_account_id == posting.credit_account_id {
            return false;
        }
    }
    debits == credits
}

fn merge(
    state: &mut LedgerState,
    effects: &mut Effects,
    accounts: BTreeMap<AccountId, Account>,
    daily_used: BTreeMap<(UserId, NaiveDate), i64>,
    postings: Vec<Posting>,
) {
    for (id, account) in accounts {
        effects.touched_accounts.insert(id);
        state.accounts.insert(id, account);
    }
    for (key, used) in daily_used {
        effects.touched_daily.insert(key);
        state.daily_used.insert(key, used);
    }
    effects.postings.extend(postings);
}

/// One command's changes, kept apart until the command succeeds.
struct Staged<'a> {
    state: &'a LedgerState,
    context: &'a BatchContext,
    command_index: usize,
    accounts: BTreeMap<AccountId, Account>,
    daily_used: BTreeMap<(UserId, NaiveDate), i64>,
    postings: Vec<Posting>,
    new_transfers: Vec<Transfer>,
    /// Set while the command builds a user-visible transfer; its postings carry the id.
    transfer_id: Option<i64>,
}

impl<'a> Staged<'a> {
    fn new(state: &'a LedgerState, context: &'a BatchContext, command_index: usize) -> Self {
        Staged {
            state,
            context,
            command_index,
            accounts: BTreeMap::new(),
            daily_used: BTreeMap::new(),
            postings: Vec::new(),
            new_transfers: Vec::new(),
            transfer_id: None,
        }
    }

    /// The next reserved transfer id. The writer reserves one per transfer command, so running
    /// out is a bug in the writer, reported as a refused command rather than a panic.
    fn take_transfer_id(&mut self) -> Result<i64, CommandError> {
        let index = self.state.transfer_ids_used + self.new_transfers.len();
        let id = *self.state.transfer_ids.get(index).ok_or(CommandError::InvalidState("no transfer id reserved"))?;
        self.transfer_id = Some(id);
        Ok(id)
    }

    fn account(&self, id: AccountId) -> Result<&Account, CommandError> {
        self.accounts.get(&id).or_else(|| self.state.accounts.get(&id)).ok_or(CommandError::AccountNotFound)
    }

    fn account_mut(&mut self, id: AccountId) -> Result<&mut Account, CommandError> {
        if !self.accounts.contains_key(&id) {
            let account = self.state.accounts.get(&id).ok_or(CommandError::AccountNotFound)?.clone();
            self.accounts.insert(id, account);
        }
        self.accounts.get_mut(&id).ok_or(CommandError::AccountNotFound)
    }

    /// The caller's own open account of the given kind. Someone else's account is "not found"
    /// so that existence does not leak.
    fn own_account(&self, user_id: UserId, id: AccountId, kind: AccountKind) -> Result<&Account, CommandError> {
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

    fn daily_used(&self, user_id: UserId) -> i64 {
        let key = (user_id, self.context.business_date);
        self.daily_used.get(&key).or_else(|| self.state.daily_used.get(&key)).copied().unwrap_or(0)
    }

    /// Counts `amount` against today's limit and returns the new total used.
    fn use_daily_limit(&mut self, user_id: UserId, amount: i64) -> Result<i64, CommandError> {
        let used = self.daily_used(user_id);
        let remaining = self.context.daily_charge_limit_krw.saturating_sub(used).max(0);
        if amount > remaining {
            return Err(CommandError::DailyLimitExceeded { remaining, requested: amount });
        }
        let used = used.checked_add(amount).ok_or(CommandError::Overflow)?;
        self.daily_used.insert((user_id, self.context.business_date), used);
        Ok(used)
    }

    /// Moves `amount` at once from `debit` to `credit`. A user account may not end with a
    /// negative available balance.
    fn post(
        &mut self,
        debit: AccountId,
        credit: AccountId,
        amount: i64,
        kind: PostingKind,
    ) -> Result<(), CommandError> {
        if amount <= 0 || debit == credit {
            return Err(CommandError::Overflow);
        }
        let from = self.account_mut(debit)?;
        from.debits_posted = from.debits_posted.checked_add(amount).ok_or(CommandError::Overflow)?;
        if !from.is_system() && from.available() < 0 {
            return Err(CommandError::InsufficientFunds);
        }
        let debit_available_after = from.available();
        let to = self.account_mut(credit)?;
        to.credits_posted = to.credits_posted.checked_add(amount).ok_or(CommandError::Overflow)?;
        // Keeps every balance computation (credits − debits) far from overflow.
        if to.credits_posted > i64::MAX / 4 {
            return Err(CommandError::Overflow);
        }
        let credit_available_after = to.available();
        self.postings.push(Posting {
            command_index: self.command_index,
            debit_account_id: debit,
            credit_account_id: credit,
            amount,
            kind,
            flags: PostingFlags::Posted,
            transfer_id: self.transfer_id,
            debit_available_after,
            credit_available_after,
        });
        Ok(())
    }

    /// Tops up the main account from outside so that `needed` is available, in units of
    /// 10,000 within the daily limit. Returns what was charged (0 when nothing was short).
    fn auto_charge(&mut self, user_id: UserId, main_account_id: AccountId, needed: i64) -> Result<i64, CommandError> {
        let available = self.account(main_account_id)?.available();
        let charge = auto_charge_for(available, needed).ok_or(CommandError::Overflow)?;
        if charge > 0 {
            self.use_daily_limit(user_id, charge)?;
            self.post(EXTERNAL_ACCOUNT_ID, main_account_id, charge, PostingKind::Charge)?;
        }
        Ok(charge)
    }

    fn snapshot(&self, id: AccountId) -> Result<Account, CommandError> {
        self.account(id).cloned()
    }

    fn run(&mut self, command: &Command) -> Result<Outcome, CommandError> {
        match *command {
            Command::Charge { user_id, account_id, amount } => {
                self.own_account(user_id, account_id, AccountKind::Main)?;
                let daily_used = self.use_daily_limit(user_id, amount.krw())?;
                self.post(EXTERNAL_ACCOUNT_ID, account_id, amount.krw(), PostingKind::Charge)?;
                Ok(Outcome::Charged { account: self.snapshot(account_id)?, charged: amount.krw(), daily_used })
            }
            Command::Deposit { user_id, main_account_id, savings_account_id, amount } => {
                let savings = self.own_account(user_id, savings_account_id, AccountKind::Savings)?;
                if savings.product == Some(Product::Fixed) {
                    return Err(CommandError::NotAllowed(
                        "fixed savings take only their daily installment; deposit into a free savings account",
                    ));
                }
                self.own_account(user_id, main_account_id, AccountKind::Main)?;
                let auto_charged = self.auto_charge(user_id, main_account_id, amount.krw())?;
                self.post(main_account_id, savings_account_id, amount.krw(), PostingKind::Deposit)?;
                Ok(Outcome::Deposited {
                    savings: self.snapshot(savings_account_id)?,
                    main: self.snapshot(main_account_id)?,
                    auto_charged,
                    daily_used: self.daily_used(user_id),
                })
            }
            Command::CloseSavings { user_id, main_account_id, savings_account_id } => {
                let savings = self.own_account(user_id, savings_account_id, AccountKind::Savings)?;
                if savings.debits_pending != 0 || savings.credits_pending != 0 {
                    return Err(CommandError::InvalidState("the account has pending movements"));
                }
                let moved = savings.balance();
                self.own_account(user_id, main_account_id, AccountKind::Main)?;
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
                })
            }
            Command::Transfer { user_id, from_account_id, to_account_id, amount, ref display_name, ref memo } => {
                let to_user_id = match self.account(to_account_id) {
                    Ok(to) if to.kind == AccountKind::Main && to.status == AccountStatus::Open => {
                        to.user_id.filter(|owner| *owner != user_id)
                    }
                    _ => None,
                }
                .ok_or(CommandError::NotAllowed(TRANSFER_TARGET_REFUSED))?;
                self.own_account(user_id, from_account_id, AccountKind::Main)?;
                let id = self.take_transfer_id()?;
                let auto_charged = self.auto_charge(user_id, from_account_id, amount.krw())?;
                self.post(from_account_id, to_account_id, amount.krw(), PostingKind::Transfer)?;
                let transfer = Transfer {
                    id,
                    from_account_id,
                    to_account_id,
                    from_user_id: user_id,
                    to_user_id,
                    amount: amount.krw(),
                    auto_charged,
                    status: TransferStatus::Completed,
                    display_name: display_name.clone(),
                    memo: memo.clone(),
                    created_at: self.context.now,
                    expires_at: None,
                    resolved_at: None,
                };
                self.new_transfers.push(transfer.clone());
                Ok(Outcome::Transferred { transfer, from_account: self.snapshot(from_account_id)? })
            }
        }
    }
}

#[cfg(test)]
mod tests;
