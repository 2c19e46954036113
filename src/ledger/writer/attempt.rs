//! One attempt at a batch: lock, load, apply, write, commit. Nothing is sent to callers here,
//! so a failed attempt (COMMIT included) can be repeated from scratch.

use std::collections::BTreeSet;
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use tokio::sync::OwnedSemaphorePermit;

use super::keys::KeyPlan;
use super::schedule::Envelope;
use super::worker::{AttemptError, Worker};
use super::Answer;
use crate::domain::accounts::{AccountId, UserId, EXTERNAL_ACCOUNT_ID};
use crate::domain::business_day::business_date;
use crate::domain::ids::{SettlementId, TransferId};
use crate::ledger::apply::{apply, BatchContext, Effects, LedgerState};
use crate::ledger::{statements, store};
use crate::store::idempotency::KeyId;

/// The rows a batch locks, gathered from its commands, each list in lock order.
struct Wanted {
    account_ids: BTreeSet<AccountId>,
    closing: BTreeSet<AccountId>,
    daily_keys: BTreeSet<(UserId, NaiveDate)>,
    key_ids: Vec<KeyId>,
    /// At most one transfer id per command; unused ones are gaps in the sequence.
    transfers_possible: usize,
    transfers: BTreeSet<TransferId>,
    settlements: BTreeSet<SettlementId>,
    blocks: BTreeSet<(AccountId, UserId)>,
}

impl Wanted {
    fn of(batch: &[Envelope], business_date: NaiveDate) -> Self {
        let commands = || batch.iter().map(|envelope| &envelope.command);
        let key_ids: BTreeSet<KeyId> = batch
            .iter()
            .filter_map(|envelope| envelope.idempotency.as_ref())
            .map(|idempotency| (idempotency.user_id, idempotency.key.clone()))
            .collect();
        let account_ids: BTreeSet<AccountId> = batch.iter().flat_map(Envelope::accounts).collect();
        // Only a top-up uses a daily counter, and only through the external account: a batch
        // that does not lock it (transfers that need no top-up, the everyday case) locks no
        // counters, and a command in it that turns out to need a top-up runs again in one that
        // locks both (`CommandError::NeedsExternalAccount`, checked before the limit).
        let daily_keys = if account_ids.contains(&EXTERNAL_ACCOUNT_ID) {
            commands().filter_map(|command| command.charging_key(business_date)).collect()
        } else {
            BTreeSet::new()
        };
        Wanted {
            account_ids,
            closing: commands().filter_map(|command| command.closing_account()).collect(),
            daily_keys,
            key_ids: key_ids.into_iter().collect(),
            transfers_possible: commands().filter(|command| command.creates_transfer()).count(),
            transfers: commands().filter_map(|command| command.transfer_to_lock()).collect(),
            settlements: commands().filter_map(|command| command.settlement_to_lock()).collect(),
            blocks: commands().filter_map(|command| command.block_to_check()).collect(),
        }
    }

    fn to_lock(&self, alone: bool, keys_expired_before: DateTime<Utc>) -> store::ToLock<'_> {
        store::ToLock {
            alone,
            account_ids: &self.account_ids,
            closing: &self.closing,
            daily_keys: &self.daily_keys,
            key_ids: &self.key_ids,
            keys_expired_before,
            transfer_ids_needed: self.transfers_possible,
            transfers: &self.transfers,
            settlements: &self.settlements,
            blocks: &self.blocks,
        }
    }
}

/// What must hold of a batch's effects before they are written, whatever the commands did:
/// each would lose or create money if false. Cheap (the rows the batch changed), so checked in
/// every build. The apply step checks each command's effect in more depth.
pub(super) fn assert_writable(state: &LedgerState, effects: &Effects) {
    for id in &effects.touched_accounts {
        let account = state.accounts.get(id).unwrap_or_else(|| panic!("touched account {id} is not in the state"));
        assert!(
            account.debits_pending >= 0 && account.credits_pending >= 0,
            "account {id} would be written with a negative pending column: {account:?}"
        );
        assert!(
            account.is_system() || account.available() >= 0,
            "user account {id} would be written below zero available: {account:?}"
        );
    }
    for posting in &effects.postings {
        assert!(
            posting.amount > 0 && posting.debit_account_id != posting.credit_account_id,
            "malformed posting {posting:?}"
        );
        assert!(
            effects.touched_accounts.contains(&posting.debit_account_id)
                && effects.touched_accounts.contains(&posting.credit_account_id),
            "posting {posting:?} moves an account whose balance is not written"
        );
    }
    assert!(
        state.transfer_ids_used <= state.transfer_ids.len(),
        "{} transfers created, {} ids reserved",
        state.transfer_ids_used,
        state.transfer_ids.len()
    );
}

impl Worker {
    /// One attempt. `alone`: take the gate in EXCLUSIVE mode. An answer of `None` means: run
    /// the command again with the external account locked (nothing of it was written).
    pub(super) async fn attempt(
        &self,
        batch: &[Envelope],
        alone: bool,
        turn: &mut Option<OwnedSemaphorePermit>,
    ) -> Result<Vec<Option<Answer>>, AttemptError> {
        let client = self.connections.get().await.map_err(|error| AttemptError::Pool(error.to_string()))?;
        store::replan_now_and_then(&client).await.map_err(AttemptError::Database)?;
        match self.attempt_on(&client, batch, alone, turn).await {
            Ok(answers) => Ok(answers),
            Err(error) => {
                // A connection whose transaction cannot be ended is not given back to the pool.
                if store::rollback(&client).await.is_err() {
                    let _ = deadpool_postgres::Object::take(client);
                }
                Err(AttemptError::Database(error))
            }
        }
    }

    fn context(&self, now: DateTime<Utc>) -> BatchContext {
        BatchContext {
            now,
            business_date: business_date(now, self.settings.tz),
            daily_charge_limit_krw: self.settings.daily_charge_limit_krw,
            tz: self.settings.tz,
        }
    }

    async fn attempt_on(
        &self,
        client: &deadpool_postgres::Object,
        batch: &[Envelope],
        alone: bool,
        turn: &mut Option<OwnedSemaphorePermit>,
    ) -> Result<Vec<Option<Answer>>, tokio_postgres::Error> {
        let now = self.clock.now();
        let context = self.context(now);
        let wanted = Wanted::of(batch, context.business_date);
        let started = Instant::now();
        let locked = store::begin_and_lock(client, wanted.to_lock(alone, now - self.settings.idempotency_ttl)).await?;
        let read = started.elapsed();

        let mut plan = KeyPlan::new(batch, locked.known_keys);
        let mut state = LedgerState {
            accounts: locked.accounts,
            daily_used: locked.daily_used,
            transfer_ids: locked.transfer_ids,
            transfer_ids_used: 0,
            transfers: locked.transfers,
            shares: locked.shares,
            blocked: locked.blocked,
        };
        let (results, effects) = apply(&mut state, &context, &plan.commands(batch));
        plan.record(batch, results);
        assert_writable(&state, &effects);
        let applied = started.elapsed();
        let entries = statements::entries(&state, &effects);
        // The next writer may take its batch while this one writes and waits for its flush.
        drop(turn.take());
        store::write_and_commit(client, now, &state, &effects, &entries, plan.new_keys()).await?;
        tracing::debug!(
            size = batch.len(),
            read_us = read.as_micros() as u64,
            apply_us = (applied - read).as_micros() as u64,
            write_commit_us = (started.elapsed() - applied).as_micros() as u64,
            "ledger batch timing"
        );
        Ok(plan.answers(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::accounts::{AccountKind, EXTERNAL_ACCOUNT_ID};
    use crate::domain::money::Amount;
    use crate::ledger::apply::tests::account;
    use crate::ledger::apply::Command;

    const MAIN: AccountId = AccountId::new(101);

    /// A charge of 1,000 into a fresh main account, applied: what a batch would write.
    fn charged() -> (LedgerState, Effects) {
        let mut state = LedgerState::default();
        state.accounts.insert(MAIN, account(MAIN, Some(UserId::new(1)), AccountKind::Main, None));
        state.accounts.insert(EXTERNAL_ACCOUNT_ID, account(EXTERNAL_ACCOUNT_ID, None, AccountKind::System, None));
        let context = BatchContext {
            now: "2026-11-24T03:00:00Z".parse().unwrap(),
            business_date: NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
            daily_charge_limit_krw: 3_000_000,
            tz: chrono_tz::Asia::Seoul,
        };
        let charge =
            Command::Charge { user_id: UserId::new(1), account_id: MAIN, amount: Amount::parse(1_000).unwrap() };
        let (results, effects) = apply(&mut state, &context, &[charge]);
        assert!(results[0].is_ok());
        (state, effects)
    }

    #[test]
    fn the_effects_of_a_command_are_writable() {
        let (state, effects) = charged();
        assert_writable(&state, &effects);
    }

    /// The state after the batch corrupted (the main account's debits grown behind the apply
    /// step's back): the writer stops before writing it.
    #[test]
    #[should_panic(expected = "below zero available")]
    fn a_corrupted_state_is_not_written() {
        let (mut state, effects) = charged();
        state.accounts.get_mut(&MAIN).unwrap().debits_posted = 5_000;
        assert_writable(&state, &effects);
    }

    /// A posting whose account's balance would not be written.
    #[test]
    #[should_panic(expected = "is not written")]
    fn a_posting_without_its_balance_is_not_written() {
        let (state, mut effects) = charged();
        effects.touched_accounts.remove(&EXTERNAL_ACCOUNT_ID);
        assert_writable(&state, &effects);
    }
}
