//! The ledger rules [`postings_balance`] checks, shown failing on effects that break them, and
//! the assertion in [`apply`] firing on a corrupted state.

use super::*;
use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::invariants::{columns_balance, postings_balance, Imbalance};
use crate::domain::accounts::{Account, AccountId, AccountKind, UserId, EXTERNAL_ACCOUNT_ID};
use crate::domain::ids::TransferId;
use crate::domain::money::Amount;
use crate::domain::transfers::{Transfer, TransferStatus, PENDING_LIFETIME};

const MAIN: AccountId = AccountId::new(101);
const OTHER: AccountId = AccountId::new(102);

/// A plain open account of `kind`, built by the apply tests' helper.
fn account(id: AccountId, user_id: Option<UserId>, kind: AccountKind) -> Account {
    super::tests::account(id, user_id, kind, None)
}

/// Two users' main accounts, the first holding 10,000 (charged from the external account).
fn before() -> LedgerState {
    let mut main = account(MAIN, Some(UserId::new(1)), AccountKind::Main);
    main.credits_posted = 10_000;
    let mut external = account(EXTERNAL_ACCOUNT_ID, None, AccountKind::System);
    external.debits_posted = 10_000;
    let mut state = LedgerState::default();
    for account in [main, account(OTHER, Some(UserId::new(2)), AccountKind::Main), external] {
        state.accounts.insert(account.id, account);
    }
    state
}

fn posting(
    debit: AccountId,
    credit: AccountId,
    amount: i64,
    flags: PostingFlags,
    transfer_id: Option<TransferId>,
) -> Posting {
    Posting {
        command_index: 0,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        kind: PostingKind::Transfer,
        flags,
        transfer_id,
        charged_for: None,
        memo: None,
        debit_available_after: 0,
        credit_available_after: 0,
    }
}

/// The two main accounts after moving `debited` out of the first and `credited` into the second.
fn after(state: &LedgerState, debited: i64, credited: i64) -> BTreeMap<AccountId, Account> {
    let mut from = state.accounts[&MAIN].clone();
    from.debits_posted += debited;
    let mut to = state.accounts[&OTHER].clone();
    to.credits_posted += credited;
    BTreeMap::from([(MAIN, from), (OTHER, to)])
}

#[test]
fn a_balanced_transfer_passes() {
    let state = before();
    let postings = [posting(MAIN, OTHER, 1_000, PostingFlags::Posted, Some(TransferId::new(7)))];
    assert_eq!(postings_balance(&state, &after(&state, 1_000, 1_000), &postings, &[]), Ok(()));
}

#[test]
fn a_command_whose_debits_are_not_its_credits_is_reported() {
    let state = before();
    // 1,000 leaves one account, 900 reaches the other: 100 vanished.
    let postings = [posting(MAIN, OTHER, 1_000, PostingFlags::Posted, Some(TransferId::new(7)))];
    assert_eq!(
        postings_balance(&state, &after(&state, 1_000, 900), &postings, &[]),
        Err(Imbalance::DebitsAreNotCredits { debits: 1_000, credits: 900, pending_debits: 0, pending_credits: 0 })
    );
    assert!(columns_balance(&state.accounts, &after(&state, 1_000, 900)).is_err());
}

#[test]
fn postings_that_do_not_add_up_to_the_accounts_moves_are_reported() {
    let state = before();
    let moved = after(&state, 1_000, 1_000);
    // The accounts balance, but the rows that would be written say 900.
    let postings = [posting(MAIN, OTHER, 900, PostingFlags::Posted, Some(TransferId::new(7)))];
    assert_eq!(
        postings_balance(&state, &moved, &postings, &[]),
        Err(Imbalance::AccountDiffersFromPostings {
            account_id: MAIN,
            column: "debits_posted",
            moved: 1_000,
            posted: 900
        })
    );
    // A row for nothing, or a second row for the same move.
    let twice = [
        posting(MAIN, OTHER, 1_000, PostingFlags::Posted, None),
        posting(MAIN, OTHER, 1_000, PostingFlags::Posted, None),
    ];
    assert!(matches!(
        postings_balance(&state, &moved, &twice, &[]),
        Err(Imbalance::AccountDiffersFromPostings { account_id: MAIN, .. })
    ));
    let nothing = [posting(MAIN, OTHER, 0, PostingFlags::Posted, None)];
    assert!(matches!(postings_balance(&state, &moved, &nothing, &[]), Err(Imbalance::MalformedPosting { .. })));
}

#[test]
fn a_user_account_left_below_zero_available_is_reported() {
    let state = before();
    let postings = [posting(MAIN, OTHER, 12_000, PostingFlags::Posted, Some(TransferId::new(7)))];
    assert_eq!(
        postings_balance(&state, &after(&state, 12_000, 12_000), &postings, &[]),
        Err(Imbalance::NegativeAvailable { account_id: MAIN, available: -2_000 })
    );
}

/// Transfer 7, MAIN → OTHER, pending and holding `held`.
fn pending(held: i64) -> Transfer {
    let now = "2026-11-24T03:00:00Z".parse().unwrap();
    Transfer {
        id: TransferId::new(7),
        from_account_id: MAIN,
        to_account_id: OTHER,
        from_user_id: UserId::new(1),
        to_user_id: UserId::new(2),
        amount: held,
        auto_charged: 0,
        status: TransferStatus::Pending,
        display_name: None,
        memo: None,
        created_at: now,
        expires_at: Some(now + PENDING_LIFETIME),
        resolved_at: None,
        settlement_id: None,
    }
}

fn context() -> BatchContext {
    BatchContext {
        now: "2026-11-24T03:00:00Z".parse().unwrap(),
        business_date: NaiveDate::from_ymd_opt(2026, 11, 24).unwrap(),
        daily_charge_limit_krw: 3_000_000,
        tz: chrono_tz::Asia::Seoul,
    }
}

#[test]
fn a_hold_is_posted_or_voided_only_for_the_amount_a_pending_transfer_holds() {
    let mut state = before();
    let held = 500;
    let transfer = pending(held);
    state.transfers.insert(transfer.id, transfer.clone());
    state.accounts.get_mut(&MAIN).unwrap().debits_pending = held;
    state.accounts.get_mut(&OTHER).unwrap().credits_pending = held;
    // Posting 300 of the 500 held: the columns agree with the row, the transfer does not.
    let resolve = |state: &LedgerState, amount: i64| {
        let mut moved = after(state, amount, amount);
        moved.get_mut(&MAIN).unwrap().debits_pending -= amount;
        moved.get_mut(&OTHER).unwrap().credits_pending -= amount;
        moved
    };
    let posted = |amount| [posting(MAIN, OTHER, amount, PostingFlags::PostPending, Some(TransferId::new(7)))];
    assert_eq!(postings_balance(&state, &resolve(&state, held), &posted(held), &[]), Ok(()));
    assert_eq!(
        postings_balance(&state, &resolve(&state, 300), &posted(300), &[]),
        Err(Imbalance::HoldMismatch {
            index: 0,
            transfer_id: Some(TransferId::new(7)),
            flags: PostingFlags::PostPending,
            amount: 300
        })
    );
    // A transfer that is no longer pending holds nothing.
    state.transfers.get_mut(&TransferId::new(7)).unwrap().status = TransferStatus::Completed;
    assert!(matches!(
        postings_balance(&state, &resolve(&state, held), &posted(held), &[]),
        Err(Imbalance::HoldMismatch { .. })
    ));
}

/// A main account whose stored columns are corrupted (below zero available, which no command
/// can leave it at) and a charge too small to lift it: the command itself is well formed, and
/// the check after it stops the batch in debug builds.
#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "NegativeAvailable")]
fn a_corrupted_state_trips_the_assertion_in_debug_builds() {
    let mut state = before();
    state.accounts.get_mut(&MAIN).unwrap().debits_posted = 15_000;
    let context = context();
    let charge = Command::Charge { user_id: UserId::new(1), account_id: MAIN, amount: Amount::parse(1_000).unwrap() };
    let _ = apply(&mut state, &context, &[charge]);
}

/// A pending transfer whose hold is not in its accounts' columns (a corrupted ledger): accepting
/// it stops the batch instead of refusing the receiver as if the transfer were not pending.
#[test]
#[should_panic(expected = "no hold of 500")]
fn a_pending_transfer_without_its_hold_stops_the_batch() {
    let mut state = before();
    state.transfers.insert(TransferId::new(7), pending(500));
    let accept = Command::Resolve {
        transfer_id: TransferId::new(7),
        from_account_id: MAIN,
        to_account_id: OTHER,
        action: Resolution::Accept { user_id: UserId::new(2) },
    };
    let _ = apply(&mut state, &context(), &[accept]);
}
