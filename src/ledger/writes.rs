//! The SQL of each ledger write, defined once for every writer of the ledger: the batched
//! writer ([`super::store`]) and the set-based jobs (`crate::jobs::interest`,
//! `crate::jobs::pending_expiry`), which pay or release many accounts in one statement.
//!
//! Each function returns common table expressions (or, for balances, a SET clause) to put in a `WITH` statement, over rows the
//! caller selects ([`Rows`]), so that the jobs keep their set-based SQL while the tables, the
//! columns and the sequences a ledger write fills are named in one place.

use super::apply::PostingFlags;

/// The columns of a statement entry the caller provides, in this order. (`id` and `at` are
/// the write's.)
pub const ENTRY_COLUMNS: &str = "account_id, direction, amount, balance_after, kind, counterparty_account_id, \
                                 counterparty_name, transfer_id, memo, counterparty_user_name";

/// The columns of a ledger row the caller provides, in this order. (`id` and `created_at` are
/// the write's.)
pub const LEDGER_COLUMNS: &str = "debit_account_id, credit_account_id, amount, kind, flags, transfer_id, charged_for";

/// The side of a posting an account is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Debit,
    Credit,
}

/// The SET clause by which a posting of `flags` moves the balance columns of an account on
/// `side` by `amount` (SQL), as the apply step books it (see [`PostingFlags`]); the columns of
/// `accounts` are qualified by `alias`. For the jobs, which move balances by sums over many
/// postings; the batched writer sets the columns the apply step computed.
pub fn balance_moves(flags: PostingFlags, side: Side, alias: &str, amount: &str) -> String {
    let (posted, pending) = match side {
        Side::Debit => ("debits_posted", "debits_pending"),
        Side::Credit => ("credits_posted", "credits_pending"),
    };
    match flags {
        PostingFlags::Posted => format!("{posted} = {alias}.{posted} + {amount}"),
        PostingFlags::Pending => format!("{pending} = {alias}.{pending} + {amount}"),
        PostingFlags::PostPending => {
            format!("{pending} = {alias}.{pending} - {amount}, {posted} = {alias}.{posted} + {amount}")
        }
        PostingFlags::VoidPending => format!("{pending} = {alias}.{pending} - {amount}"),
    }
}

/// An account's available balance, over the columns of `accounts` (qualified by `alias`).
pub fn available(alias: &str) -> String {
    format!("{alias}.credits_posted - {alias}.debits_posted - {alias}.debits_pending")
}

/// The rows a write inserts, as its caller selects them: `select`, the expressions of the
/// columns (in the order of [`ENTRY_COLUMNS`] or [`LEDGER_COLUMNS`]); `from`, what they are
/// selected from (joins and a WHERE clause included); `order_by`, the order the rows take
/// their ids in.
#[derive(Debug, Clone, Copy)]
pub struct Rows<'a> {
    pub select: &'a str,
    pub from: &'a str,
    pub order_by: &'a str,
}

/// `ledger`: inserts ledger rows (`RETURNING 1`, to count them), ids in `order_by`'s order.
/// `at` is the SQL of the rows' time.
pub fn ledger_rows(at: &str, rows: Rows<'_>) -> String {
    let Rows { select, from, order_by } = rows;
    format!(
        "ledger AS (
        INSERT INTO ledger_transfers (id, created_at, {LEDGER_COLUMNS})
        SELECT nextval('ledger_transfers_id_seq'), {at}, {select}
          FROM {from}
         ORDER BY {order_by}
        RETURNING 1
     )"
    )
}

/// `entries`, then `outboxed`: inserts statement entries, ids in `order_by`'s order, and the
/// one outbox row that carries them all to the read store (none when there are none;
/// `outboxed` returns how many entries its row carries). `at` is the SQL of the entries' time.
pub fn entries_and_outbox(at: &str, rows: Rows<'_>) -> String {
    let Rows { select, from, order_by } = rows;
    format!(
        "entries AS (
        INSERT INTO statement_entries (id, at, {ENTRY_COLUMNS})
        SELECT nextval('statement_entries_id_seq'), {at}, {select}
          FROM {from}
         ORDER BY {order_by}
        RETURNING id
     ), outboxed AS (
        INSERT INTO statement_outbox (entry_ids, at)
        SELECT array_agg(id ORDER BY id), {at} FROM entries HAVING count(*) > 0
        RETURNING cardinality(entry_ids) AS entries
     )"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_posting_moves_the_columns_the_apply_step_books() {
        assert_eq!(
            balance_moves(PostingFlags::Posted, Side::Credit, "a", "p.x"),
            "credits_posted = a.credits_posted + p.x"
        );
        assert_eq!(
            balance_moves(PostingFlags::VoidPending, Side::Debit, "a", "r.debit"),
            "debits_pending = a.debits_pending - r.debit"
        );
        assert_eq!(
            balance_moves(PostingFlags::PostPending, Side::Debit, "a", "1"),
            "debits_pending = a.debits_pending - 1, debits_posted = a.debits_posted + 1"
        );
    }
}
