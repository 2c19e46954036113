//! The apply step itself: commands in order, each staged apart, checked against the ledger's
//! rules, and merged into the batch's state only when it succeeds.

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::command::{Command, CommandError};
use super::effects::Effects;
use super::invariants::{columns_balance, postings_balance};
use super::outcome::Outcome;
use super::postings::Posting;
use super::staged::Staged;
use super::state::{BatchContext, LedgerState};
use crate::domain::accounts::{Account, AccountId, AccountKind, UserId};

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
            // A batch takes the recipient locks of the users it notifies
            // (`crate::store::notifications`) while it holds the command's accounts; a command
            // that notifies only the owners of main accounts it locks keeps two batches from
            // ever waiting for each other there.
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
