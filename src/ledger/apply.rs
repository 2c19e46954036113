//! The pure apply step of the ledger writer: state + commands → per-command results + effects.
//!
//! No I/O. Commands are applied one after another on the state loaded (and locked) for the
//! batch; a command that fails leaves the state exactly as it found it, and the rest of the
//! batch goes on.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};

use crate::domain::accounts::{
    Account, AccountId, AccountKind, AccountStatus, Inflow, Product, UserId, EXTERNAL_ACCOUNT_ID, INTEREST_ACCOUNT_ID,
};
use crate::domain::business_day::business_date;
use crate::domain::interest::{days_memo, first_day_owed, owed_interest};
use crate::domain::money::{auto_charge_for, Amount};
use crate::domain::notifications::{NewNotification, NotificationKind};
use crate::domain::settlements::{all_settled, Share, ShareStatus};
use crate::domain::transfers::{Transfer, TransferMode, TransferStatus, PENDING_LIFETIME};

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
        settlement_id: i64,
        from_account_id: AccountId,
        /// The requester's main account.
        to_account_id: AccountId,
        memo: Option<String>,
    },
    /// Resolves a pending transfer. The accounts are the transfer's (they never change); the
    /// status is read under lock, so exactly one resolution wins.
    Resolve { transfer_id: i64, from_account_id: AccountId, to_account_id: AccountId, action: Resolution },
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
    pub fn transfer_to_lock(&self) -> Option<i64> {
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
    pub fn settlement_to_lock(&self) -> Option<i64> {
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

/// What a command did, with the accounts as they stand right after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Charged {
        account: Account,
        charged: i64,
        daily_used: i64,
    },
    Deposited {
        savings: Account,
        main: Account,
        auto_charged: i64,
        daily_used: i64,
    },
    Closed {
        savings: Account,
        main: Account,
        /// Everything moved home, the interest included.
        moved: i64,
        /// The interest paid on closing for the days not yet paid.
        interest: i64,
    },
    Transferred {
        transfer: Transfer,
        from_account: Account,
    },
    SharePaid {
        settlement_id: i64,
        transfer: Transfer,
        from_account: Account,
    },
    Resolved {
        transfer: Transfer,
    },
    /// `taken` is false when the installment was missed (and recorded as such).
    Installment {
        savings: Account,
        main: Account,
        taken: bool,
        auto_charged: i64,
    },
}

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
    pub transfer_id: Option<i64>,
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
    /// Existing transfers the batch resolves.
    pub transfers: HashMap<i64, Transfer>,
    /// Every share of the settlements the batch takes payments for.
    pub shares: HashMap<i64, Vec<Share>>,
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
    pub completed_settlements: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidShare {
    pub settlement_id: i64,
    pub user_id: UserId,
    pub transfer_id: i64,
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
            // Cheap (the few accounts the command changed), so always checked; the full check
            // reconciles each account with the postings, in debug builds.
            assert_eq!(columns_balance(&state.accounts, &staged.accounts), Ok(()), "command {index}: {command:?}");
            debug_assert_eq!(
                postings_balance(state, &staged.accounts, &staged.postings, &staged.new_transfers),
                Ok(()),
                "command {index}: {command:?}"
            );
            // A user's notifications commit in id order because every writer of them holds
            // the user's main account row (`crate::store::notifications`): the batch locks
            // the command's accounts, so the command notifies only their owners.
            for notification in &staged.notifications {
                assert!(
                    command.accounts().iter().any(|id| state.accounts.get(id).is_some_and(|account| {
                        account.kind == AccountKind::Main && account.user_id == Some(notification.user_id)
                    })),
                    "command {index}: {command:?} notifies user {}, whose main account it does not lock",
                    notification.user_id
                );
            }
            let Staged {
                accounts,
                daily_used,
                postings,
                new_transfers,
                transfers,
                shares,
                notifications,
                paid_shares,
                completed_settlements,
                ..
            } = staged;
            state.transfer_ids_used += new_transfers.len();
            effects.new_transfers.extend(new_transfers);
            for (id, transfer) in transfers {
                effects.resolved_transfers.push(transfer.clone());
                state.transfers.insert(id, transfer);
            }
            state.shares.extend(shares);
            effects.notifications.extend(notifications);
            effects.paid_shares.extend(paid_shares);
            effects.completed_settlements.extend(completed_settlements);
            merge(state, &mut effects, accounts, daily_used, postings);
        }
        results.push(result);
    }
    (results, effects)
}

/// A ledger rule that a command's effect breaks, as [`postings_balance`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Imbalance {
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
        transfer_id: Option<i64>,
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
fn columns_balance(
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
fn postings_balance(
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

/// An account that is not in the batch's state: unknown, or the external account when the
/// batch did not lock it (see [`Command::accounts`]).
fn missing(id: AccountId) -> CommandError {
    if id == EXTERNAL_ACCOUNT_ID {
        CommandError::NeedsExternalAccount
    } else {
        CommandError::AccountNotFound
    }
}

/// A user-to-user transfer as the commands that create one describe it.
struct TransferRequest {
    user_id: UserId,
    from_account_id: AccountId,
    to_account_id: AccountId,
    amount: i64,
    /// Held for the receiver's answer instead of moved at once.
    confirm: bool,
    display_name: Option<String>,
    memo: Option<String>,
    settlement_id: Option<i64>,
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
    /// Existing transfers changed by the command.
    transfers: BTreeMap<i64, Transfer>,
    /// Shares changed by the command, per settlement (the whole list).
    shares: BTreeMap<i64, Vec<Share>>,
    notifications: Vec<NewNotification>,
    paid_shares: Vec<PaidShare>,
    completed_settlements: Vec<i64>,
    /// Set while the command builds a user-visible transfer; its postings carry the id.
    transfer_id: Option<i64>,
    /// The business date whose top-up limit the command uses.
    limit_date: NaiveDate,
    /// The memo of the next posting (interest names its days).
    memo: Option<String>,
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

    /// The next reserved transfer id. The writer reserves one per transfer command, so running
    /// out is a bug in the writer, reported as a refused command rather than a panic.
    fn take_transfer_id(&mut self) -> Result<i64, CommandError> {
        let index = self.state.transfer_ids_used + self.new_transfers.len();
        let id = *self.state.transfer_ids.get(index).ok_or(CommandError::InvalidState("no transfer id reserved"))?;
        self.transfer_id = Some(id);
        Ok(id)
    }

    fn account(&self, id: AccountId) -> Result<&Account, CommandError> {
        self.accounts.get(&id).or_else(|| self.state.accounts.get(&id)).ok_or_else(|| missing(id))
    }

    fn account_mut(&mut self, id: AccountId) -> Result<&mut Account, CommandError> {
        if !self.accounts.contains_key(&id) {
            let account = self.state.accounts.get(&id).ok_or_else(|| missing(id))?.clone();
            self.accounts.insert(id, account);
        }
        self.accounts.get_mut(&id).ok_or_else(|| missing(id))
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
        let key = (user_id, self.limit_date);
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
        self.daily_used.insert((user_id, self.limit_date), used);
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
        self.book(debit, credit, amount, kind, PostingFlags::Posted)
    }

    /// Applies one ledger row to the two accounts' columns and records it. A user account may
    /// not end with a negative available balance.
    fn book(
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
        // A hold can only be resolved once; the columns would go negative otherwise.
        let take = |column: &mut i64| -> Result<(), CommandError> {
            *column = column
                .checked_sub(amount)
                .filter(|left| *left >= 0)
                .ok_or(CommandError::InvalidState("no such amount is held"))?;
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
    fn auto_charge(&mut self, user_id: UserId, main_account_id: AccountId, needed: i64) -> Result<i64, CommandError> {
        let available = self.account(main_account_id)?.available();
        let charge = auto_charge_for(available, needed).ok_or(CommandError::Overflow)?;
        if charge > 0 {
            self.use_daily_limit(user_id, charge)?;
            self.post(EXTERNAL_ACCOUNT_ID, main_account_id, charge, PostingKind::Charge)?;
        }
        Ok(charge)
    }

    /// Notes money that came into a savings account now: a close later in the batch must not
    /// count it in the principal of the days before.
    fn came_in(&mut self, savings_account_id: AccountId, amount: i64) -> Result<(), CommandError> {
        let at = self.context.now;
        self.account_mut(savings_account_id)?.inflows.push(Inflow { at, amount });
        Ok(())
    }

    /// Pays a savings account the interest of every completed business day not yet paid, as
    /// the interest job would have (the same rules, the carry going on), and marks those days
    /// paid. Returns what was posted.
    fn pay_interest_owed(&mut self, savings_account_id: AccountId) -> Result<i64, CommandError> {
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
                self.came_in(savings_account_id, amount.krw())?;
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
            Command::Transfer { user_id, from_account_id, to_account_id, amount, ref display_name, ref memo } => {
                let confirm = self.account(from_account_id)?.owner_transfer_mode == Some(TransferMode::Confirm);
                let transfer = self.transfer_between(TransferRequest {
                    user_id,
                    from_account_id,
                    to_account_id,
                    amount: amount.krw(),
                    confirm,
                    display_name: display_name.clone(),
                    memo: memo.clone(),
                    settlement_id: None,
                })?;
                Ok(Outcome::Transferred { transfer, from_account: self.snapshot(from_account_id)? })
            }
            Command::PayShare { user_id, settlement_id, from_account_id, to_account_id, ref memo } => {
                let mut shares = self.shares_of(settlement_id)?;
                let share = shares.iter_mut().find(|share| share.user_id == user_id).ok_or(CommandError::NotFound)?;
                match share.status {
                    ShareStatus::Requested => {}
                    ShareStatus::Paid => return Err(CommandError::InvalidState("the share is already paid")),
                    ShareStatus::Declined => return Err(CommandError::InvalidState("the share was declined")),
                    ShareStatus::Own => {
                        return Err(CommandError::InvalidState("the requester's own share is not paid"))
                    }
                }
                share.status = ShareStatus::Paid;
                let request = TransferRequest {
                    user_id,
                    from_account_id,
                    to_account_id,
                    amount: share.amount,
                    confirm: false,
                    display_name: None,
                    memo: memo.clone(),
                    settlement_id: Some(settlement_id),
                };
                let transfer = self.transfer_between(request)?;
                self.paid_shares.push(PaidShare { settlement_id, user_id, transfer_id: transfer.id });
                if all_settled(&shares) {
                    self.completed_settlements.push(settlement_id);
                }
                self.shares.insert(settlement_id, shares);
                Ok(Outcome::SharePaid { settlement_id, transfer, from_account: self.snapshot(from_account_id)? })
            }
            Command::Installment { user_id, main_account_id, savings_account_id, date } => {
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
                    self.notifications.push(NewNotification {
                        user_id,
                        kind: NotificationKind::InstallmentFailed,
                        payload,
                    });
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
            Command::Resolve { transfer_id, from_account_id, to_account_id, action } => {
                let mut transfer = self.transfer(transfer_id)?.clone();
                let (party, status) = match action {
                    Resolution::Accept { user_id } => (transfer.to_user_id == user_id, TransferStatus::Completed),
                    Resolution::Reject { user_id } => (transfer.to_user_id == user_id, TransferStatus::Rejected),
                    Resolution::Cancel { user_id } => (transfer.from_user_id == user_id, TransferStatus::Canceled),
                };
                if !party {
                    return Err(CommandError::NotFound);
                }
                if (transfer.from_account_id, transfer.to_account_id) != (from_account_id, to_account_id) {
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
                    TransferStatus::Rejected
                    | TransferStatus::Canceled
                    | TransferStatus::Expired
                    | TransferStatus::Pending => (PostingKind::Refund, PostingFlags::VoidPending),
                };
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
    }

    fn transfer(&self, id: i64) -> Result<&Transfer, CommandError> {
        self.transfers.get(&id).or_else(|| self.state.transfers.get(&id)).ok_or(CommandError::NotFound)
    }

    fn shares_of(&self, settlement_id: i64) -> Result<Vec<Share>, CommandError> {
        self.shares
            .get(&settlement_id)
            .or_else(|| self.state.shares.get(&settlement_id))
            .cloned()
            .ok_or(CommandError::NotFound)
    }

    /// Main account → another user's main account, at once or held for the receiver
    /// (`confirm`), after topping up the sender's shortfall.
    fn transfer_between(&mut self, request: TransferRequest) -> Result<Transfer, CommandError> {
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
        let id = self.take_transfer_id()?;
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
    fn notify_received(&mut self, transfer: &Transfer, kind: NotificationKind) -> Result<(), CommandError> {
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

#[cfg(test)]
mod tests;

#[cfg(test)]
mod balance_tests;
