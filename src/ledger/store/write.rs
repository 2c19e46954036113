//! The batch's one write statement: balances, ledger rows, daily counters, transfers (new and
//! resolved), statement entries with their outbox row, notifications, paid shares and
//! completed settlements, and idempotency records, each table from arrays of its columns.
//!
//! Every parameter is bound where the statement's text names it ([`Binder`]): its `$n` is its
//! place in the list of values, so the text and the values cannot drift apart, and each
//! column's name sits beside the value bound for it.

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;

use crate::domain::accounts::{Account, AccountId, UserId};
use crate::domain::ids::{SettlementId, TransferId};
use crate::ledger::apply::{Effects, LedgerState};
use crate::ledger::statements::StatementEntry;
use crate::ledger::writes::{self, Rows};
use crate::store::idempotency::{KeyId, KeyRecord};
use crate::store::notifications;

type Param<'a> = &'a (dyn ToSql + Sync);

/// The parameters of a statement, numbered as they are bound.
#[derive(Default)]
struct Binder<'a> {
    values: Vec<Param<'a>>,
}

impl<'a> Binder<'a> {
    /// Binds `value` and returns its placeholder, cast to `sql_type`.
    fn bind(&mut self, value: Param<'a>, sql_type: &str) -> String {
        self.values.push(value);
        format!("${}::{sql_type}", self.values.len())
    }

    /// `UNNEST($i::type[], …) [WITH ORDINALITY] AS alias(column, … [, position])`: one array
    /// per column, each bound beside its column's name.
    fn unnest(&mut self, alias: &str, columns: &[(&str, Param<'a>, &str)], ordinality: bool) -> String {
        let arrays: Vec<String> = columns.iter().map(|(_, value, sql_type)| self.bind(*value, sql_type)).collect();
        let mut names: Vec<&str> = columns.iter().map(|(name, _, _)| *name).collect();
        if ordinality {
            names.push("position");
        }
        let with_ordinality = if ordinality { " WITH ORDINALITY" } else { "" };
        format!("UNNEST({}){with_ordinality} AS {alias}({})", arrays.join(", "), names.join(", "))
    }
}

/// The accounts' columns the batch sets.
struct AccountColumns<'a> {
    id: Vec<i64>,
    debits_posted: Vec<i64>,
    credits_posted: Vec<i64>,
    debits_pending: Vec<i64>,
    credits_pending: Vec<i64>,
    status: Vec<&'a str>,
    closed_at: Vec<Option<DateTime<Utc>>>,
    installment_through: Vec<Option<NaiveDate>>,
    installments_missed: Vec<i32>,
    installment_missed_on: Vec<Option<NaiveDate>>,
    interest_paid: Vec<i64>,
    interest_carry: Vec<i64>,
    interest_through: Vec<Option<NaiveDate>>,
}

impl<'a> AccountColumns<'a> {
    fn of(accounts: &[&'a Account]) -> Self {
        let column = |f: fn(&Account) -> i64| accounts.iter().map(|a| f(a)).collect();
        AccountColumns {
            id: column(|a| a.id.get()),
            debits_posted: column(|a| a.debits_posted),
            credits_posted: column(|a| a.credits_posted),
            debits_pending: column(|a| a.debits_pending),
            credits_pending: column(|a| a.credits_pending),
            status: accounts.iter().map(|a| a.status.as_str()).collect(),
            closed_at: accounts.iter().map(|a| a.closed_at).collect(),
            installment_through: accounts.iter().map(|a| a.installment_through).collect(),
            installments_missed: accounts.iter().map(|a| a.installments_missed).collect(),
            installment_missed_on: accounts.iter().map(|a| a.installment_missed_on).collect(),
            interest_paid: column(|a| a.interest_paid),
            interest_carry: column(|a| a.interest_carry),
            interest_through: accounts.iter().map(|a| a.interest_through).collect(),
        }
    }

    /// `updated`: sets every column above on each account.
    fn sql(&'a self, b: &mut Binder<'a>) -> String {
        let rows = b.unnest(
            "v",
            &[
                ("id", &self.id, "int8[]"),
                ("debits_posted", &self.debits_posted, "int8[]"),
                ("credits_posted", &self.credits_posted, "int8[]"),
                ("debits_pending", &self.debits_pending, "int8[]"),
                ("credits_pending", &self.credits_pending, "int8[]"),
                ("status", &self.status, "text[]"),
                ("closed_at", &self.closed_at, "timestamptz[]"),
                ("installment_through", &self.installment_through, "date[]"),
                ("installments_missed", &self.installments_missed, "int4[]"),
                ("installment_missed_on", &self.installment_missed_on, "date[]"),
                ("interest_paid", &self.interest_paid, "int8[]"),
                ("interest_carry", &self.interest_carry, "int8[]"),
                ("interest_through", &self.interest_through, "date[]"),
            ],
            false,
        );
        format!(
            "updated AS (
        UPDATE accounts a
           SET debits_posted = v.debits_posted, credits_posted = v.credits_posted,
               debits_pending = v.debits_pending, credits_pending = v.credits_pending,
               status = v.status, closed_at = v.closed_at, installment_through = v.installment_through,
               installments_missed = v.installments_missed, installment_missed_on = v.installment_missed_on,
               interest_paid = v.interest_paid, interest_carry = v.interest_carry, interest_through = v.interest_through
          FROM {rows}
         WHERE a.id = v.id
        RETURNING 1
     )"
        )
    }
}

/// The ledger rows (postings), in the order the batch booked them.
struct PostingColumns<'a> {
    debit: Vec<i64>,
    credit: Vec<i64>,
    amount: Vec<i64>,
    kind: Vec<&'a str>,
    flags: Vec<&'a str>,
    transfer_id: Vec<Option<i64>>,
    charged_for: Vec<Option<NaiveDate>>,
}

impl<'a> PostingColumns<'a> {
    fn of(effects: &'a Effects) -> Self {
        let postings = &effects.postings;
        PostingColumns {
            debit: postings.iter().map(|p| p.debit_account_id.get()).collect(),
            credit: postings.iter().map(|p| p.credit_account_id.get()).collect(),
            amount: postings.iter().map(|p| p.amount).collect(),
            kind: postings.iter().map(|p| p.kind.as_str()).collect(),
            flags: postings.iter().map(|p| p.flags.as_str()).collect(),
            transfer_id: postings.iter().map(|p| p.transfer_id.map(TransferId::get)).collect(),
            charged_for: postings.iter().map(|p| p.charged_for).collect(),
        }
    }

    /// `ledger` ([`writes::ledger_rows`]).
    fn sql(&'a self, b: &mut Binder<'a>, at: &str) -> String {
        let rows = b.unnest(
            "t",
            &[
                ("debit", &self.debit, "int8[]"),
                ("credit", &self.credit, "int8[]"),
                ("amount", &self.amount, "int8[]"),
                ("kind", &self.kind, "text[]"),
                ("flags", &self.flags, "text[]"),
                ("transfer_id", &self.transfer_id, "int8[]"),
                ("charged_for", &self.charged_for, "date[]"),
            ],
            true,
        );
        let select = "t.debit, t.credit, t.amount, t.kind, t.flags, t.transfer_id, t.charged_for";
        writes::ledger_rows(at, Rows { select, from: &rows, order_by: "t.position" })
    }
}

/// The daily top-up counters the batch changed, with their new totals.
struct DailyColumns {
    user_id: Vec<i64>,
    business_date: Vec<NaiveDate>,
    used: Vec<i64>,
}

impl DailyColumns {
    fn of(state: &LedgerState, effects: &Effects) -> Self {
        let daily: Vec<((UserId, NaiveDate), i64)> =
            effects.touched_daily.iter().map(|key| (*key, state.daily_used.get(key).copied().unwrap_or(0))).collect();
        DailyColumns {
            user_id: daily.iter().map(|((user, _), _)| user.get()).collect(),
            business_date: daily.iter().map(|((_, date), _)| *date).collect(),
            used: daily.iter().map(|(_, used)| *used).collect(),
        }
    }

    /// `counted`: inserts or replaces each counter.
    fn sql<'a>(&'a self, b: &mut Binder<'a>) -> String {
        let rows = b.unnest(
            "d",
            &[
                ("user_id", &self.user_id, "int8[]"),
                ("business_date", &self.business_date, "date[]"),
                ("used", &self.used, "int8[]"),
            ],
            false,
        );
        format!(
            "counted AS (
        INSERT INTO daily_charges (user_id, business_date, used)
        SELECT d.user_id, d.business_date, d.used FROM {rows}
        ON CONFLICT (user_id, business_date) DO UPDATE SET used = EXCLUDED.used
        RETURNING 1
     )"
        )
    }
}

/// The transfers the batch created.
struct TransferColumns<'a> {
    id: Vec<i64>,
    from_account_id: Vec<i64>,
    to_account_id: Vec<i64>,
    from_user_id: Vec<i64>,
    to_user_id: Vec<i64>,
    amount: Vec<i64>,
    auto_charged: Vec<i64>,
    status: Vec<&'a str>,
    display_name: Vec<Option<&'a str>>,
    memo: Vec<Option<&'a str>>,
    created_at: Vec<DateTime<Utc>>,
    expires_at: Vec<Option<DateTime<Utc>>>,
    resolved_at: Vec<Option<DateTime<Utc>>>,
    settlement_id: Vec<Option<i64>>,
}

impl<'a> TransferColumns<'a> {
    fn of(effects: &'a Effects) -> Self {
        let transfers = &effects.new_transfers;
        TransferColumns {
            id: transfers.iter().map(|t| t.id.get()).collect(),
            from_account_id: transfers.iter().map(|t| t.from_account_id.get()).collect(),
            to_account_id: transfers.iter().map(|t| t.to_account_id.get()).collect(),
            from_user_id: transfers.iter().map(|t| t.from_user_id.get()).collect(),
            to_user_id: transfers.iter().map(|t| t.to_user_id.get()).collect(),
            amount: transfers.iter().map(|t| t.amount).collect(),
            auto_charged: transfers.iter().map(|t| t.auto_charged).collect(),
            status: transfers.iter().map(|t| t.status.as_str()).collect(),
            display_name: transfers.iter().map(|t| t.display_name.as_deref()).collect(),
            memo: transfers.iter().map(|t| t.memo.as_deref()).collect(),
            created_at: transfers.iter().map(|t| t.created_at).collect(),
            expires_at: transfers.iter().map(|t| t.expires_at).collect(),
            resolved_at: transfers.iter().map(|t| t.resolved_at).collect(),
            settlement_id: transfers.iter().map(|t| t.settlement_id.map(SettlementId::get)).collect(),
        }
    }

    /// `transferred`: inserts each transfer.
    fn sql(&'a self, b: &mut Binder<'a>) -> String {
        let columns: [(&str, Param<'a>, &str); 14] = [
            ("id", &self.id, "int8[]"),
            ("from_account_id", &self.from_account_id, "int8[]"),
            ("to_account_id", &self.to_account_id, "int8[]"),
            ("from_user_id", &self.from_user_id, "int8[]"),
            ("to_user_id", &self.to_user_id, "int8[]"),
            ("amount", &self.amount, "int8[]"),
            ("auto_charged", &self.auto_charged, "int8[]"),
            ("status", &self.status, "text[]"),
            ("display_name", &self.display_name, "text[]"),
            ("memo", &self.memo, "text[]"),
            ("created_at", &self.created_at, "timestamptz[]"),
            ("expires_at", &self.expires_at, "timestamptz[]"),
            ("resolved_at", &self.resolved_at, "timestamptz[]"),
            ("settlement_id", &self.settlement_id, "int8[]"),
        ];
        let names: Vec<&str> = columns.iter().map(|(name, _, _)| *name).collect();
        let names = names.join(", ");
        let rows = b.unnest("t", &columns, false);
        format!(
            "transferred AS (
        INSERT INTO transfers ({names})
        SELECT {names} FROM {rows}
        RETURNING 1
     )"
        )
    }
}

/// Existing transfers the batch resolved, with their new status.
struct ResolvedColumns<'a> {
    id: Vec<i64>,
    status: Vec<&'a str>,
}

impl<'a> ResolvedColumns<'a> {
    fn of(effects: &'a Effects) -> Self {
        let resolved = &effects.resolved_transfers;
        ResolvedColumns {
            id: resolved.iter().map(|t| t.id.get()).collect(),
            status: resolved.iter().map(|t| t.status.as_str()).collect(),
        }
    }

    /// `resolved`: sets each transfer's status, resolved at `at`.
    fn sql(&'a self, b: &mut Binder<'a>, at: &str) -> String {
        let rows = b.unnest("v", &[("id", &self.id, "int8[]"), ("status", &self.status, "text[]")], false);
        // The ids again, as an index condition of the transfers' own: a plan cached while the
        // table was nearly empty may scan it first and join each row to `v`, reading every
        // transfer (see `SettlementColumns::sql`).
        let ids = b.bind(&self.id, "int8[]");
        format!(
            "resolved AS (
        UPDATE transfers t SET status = v.status, resolved_at = {at}
          FROM {rows}
         WHERE t.id = v.id AND t.id = ANY({ids})
        RETURNING 1
     )"
        )
    }
}

/// The notifications the batch sends, in order: the parameters of
/// [`notifications::INSERT_WITH_RECIPIENT_LOCKS`], a statement of their own after the write.
struct NotificationColumns<'a> {
    user_id: Vec<i64>,
    kind: Vec<&'a str>,
    payload: Vec<&'a serde_json::Value>,
}

impl<'a> NotificationColumns<'a> {
    fn of(effects: &'a Effects) -> Self {
        let notifications = &effects.notifications;
        NotificationColumns {
            user_id: notifications.iter().map(|n| n.user_id.get()).collect(),
            kind: notifications.iter().map(|n| n.kind.as_str()).collect(),
            payload: notifications.iter().map(|n| &n.payload).collect(),
        }
    }
}

/// The shares the batch paid, and the settlements it completed.
struct SettlementColumns<'a> {
    settlement_id: Vec<i64>,
    user_id: Vec<i64>,
    transfer_id: Vec<i64>,
    completed: &'a Vec<SettlementId>,
}

impl<'a> SettlementColumns<'a> {
    fn of(effects: &'a Effects) -> Self {
        let paid = &effects.paid_shares;
        SettlementColumns {
            settlement_id: paid.iter().map(|p| p.settlement_id.get()).collect(),
            user_id: paid.iter().map(|p| p.user_id.get()).collect(),
            transfer_id: paid.iter().map(|p| p.transfer_id.get()).collect(),
            completed: &effects.completed_settlements,
        }
    }

    /// `paid`, then `completed`.
    fn sql(&'a self, b: &mut Binder<'a>, at: &str) -> String {
        let rows = b.unnest(
            "v",
            &[
                ("settlement_id", &self.settlement_id, "int8[]"),
                ("user_id", &self.user_id, "int8[]"),
                ("transfer_id", &self.transfer_id, "int8[]"),
            ],
            false,
        );
        // The settlements again, as an index condition of the shares' own. The statement is
        // prepared once per connection and PostgreSQL keeps its generic plan, which for a
        // table nearly empty when it was planned (a new deployment, the first minute of a
        // benchmark) scanned every share and joined each to `v` until the next ANALYZE: 2,500
        // buffers a batch for a few shares. With it, any plan reads only these settlements'.
        let settlements = b.bind(&self.settlement_id, "int8[]");
        let completed = b.bind(self.completed, "int8[]");
        format!(
            "paid AS (
        UPDATE settlement_shares s SET status = 'paid', paid_at = {at}, transfer_id = v.transfer_id
          FROM {rows}
         WHERE s.settlement_id = v.settlement_id AND s.user_id = v.user_id AND s.settlement_id = ANY({settlements})
        RETURNING 1
     ), completed AS (
        UPDATE settlements s SET status = 'completed', completed_at = {at}
         WHERE s.id = ANY({completed})
        RETURNING 1
     )"
        )
    }
}

/// The idempotency keys the batch records, with their responses.
struct KeyColumns<'a> {
    user_id: Vec<i64>,
    key: Vec<&'a str>,
    fingerprint: Vec<&'a [u8]>,
    status: Vec<i16>,
    body: Vec<&'a serde_json::Value>,
}

impl<'a> KeyColumns<'a> {
    fn of(new_keys: &'a [(KeyId, KeyRecord)]) -> Self {
        KeyColumns {
            user_id: new_keys.iter().map(|((user, _), _)| user.get()).collect(),
            key: new_keys.iter().map(|((_, key), _)| key.as_str()).collect(),
            fingerprint: new_keys.iter().map(|(_, record)| record.fingerprint.as_slice()).collect(),
            status: new_keys.iter().map(|(_, record)| record.response.status as i16).collect(),
            body: new_keys.iter().map(|(_, record)| &record.response.body).collect(),
        }
    }

    /// `keyed`: inserts each key (a key a concurrent batch recorded first fails the statement
    /// on `idempotency_keys_pkey`).
    fn sql(&'a self, b: &mut Binder<'a>, at: &str) -> String {
        let rows = b.unnest(
            "k",
            &[
                ("user_id", &self.user_id, "int8[]"),
                ("key", &self.key, "text[]"),
                ("fingerprint", &self.fingerprint, "bytea[]"),
                ("status_code", &self.status, "int2[]"),
                ("body", &self.body, "jsonb[]"),
            ],
            false,
        );
        format!(
            "keyed AS (
        INSERT INTO idempotency_keys (user_id, key, fingerprint, status_code, body, created_at)
        SELECT k.user_id, k.key, k.fingerprint, k.status_code, k.body, {at} FROM {rows}
        RETURNING 1
     )"
        )
    }
}

/// The statement entries of the batch, in order.
struct EntryColumns<'a> {
    account_id: Vec<i64>,
    direction: Vec<&'a str>,
    amount: Vec<i64>,
    balance_after: Vec<i64>,
    kind: Vec<&'a str>,
    counterparty_account_id: Vec<Option<i64>>,
    counterparty_name: Vec<&'a str>,
    transfer_id: Vec<Option<i64>>,
    memo: Vec<Option<&'a str>>,
    counterparty_user_name: Vec<Option<&'a str>>,
}

impl<'a> EntryColumns<'a> {
    fn of(entries: &'a [StatementEntry]) -> Self {
        EntryColumns {
            account_id: entries.iter().map(|e| e.account_id.get()).collect(),
            direction: entries.iter().map(|e| e.direction.as_str()).collect(),
            amount: entries.iter().map(|e| e.amount).collect(),
            balance_after: entries.iter().map(|e| e.balance_after).collect(),
            kind: entries.iter().map(|e| e.kind.as_str()).collect(),
            counterparty_account_id: entries.iter().map(|e| e.counterparty_account_id.map(AccountId::get)).collect(),
            counterparty_name: entries.iter().map(|e| e.counterparty_name.as_str()).collect(),
            transfer_id: entries.iter().map(|e| e.transfer_id.map(TransferId::get)).collect(),
            memo: entries.iter().map(|e| e.memo.as_deref()).collect(),
            counterparty_user_name: entries.iter().map(|e| e.counterparty_user_name.as_deref()).collect(),
        }
    }

    /// `entries` and `outboxed` ([`writes::entries_and_outbox`]).
    fn sql(&'a self, b: &mut Binder<'a>, at: &str) -> String {
        let rows = b.unnest(
            "e",
            &[
                ("account_id", &self.account_id, "int8[]"),
                ("direction", &self.direction, "text[]"),
                ("amount", &self.amount, "int8[]"),
                ("balance_after", &self.balance_after, "int8[]"),
                ("kind", &self.kind, "text[]"),
                ("counterparty_account_id", &self.counterparty_account_id, "int8[]"),
                ("counterparty_name", &self.counterparty_name, "text[]"),
                ("transfer_id", &self.transfer_id, "int8[]"),
                ("memo", &self.memo, "text[]"),
                ("counterparty_user_name", &self.counterparty_user_name, "text[]"),
            ],
            true,
        );
        let select = "e.account_id, e.direction, e.amount, e.balance_after, e.kind, e.counterparty_account_id, \
                      e.counterparty_name, e.transfer_id, e.memo, e.counterparty_user_name";
        writes::entries_and_outbox(at, Rows { select, from: &rows, order_by: "e.position" })
    }
}

/// Everything a batch writes, as columns.
struct Columns<'a> {
    now: DateTime<Utc>,
    accounts: AccountColumns<'a>,
    postings: PostingColumns<'a>,
    daily: DailyColumns,
    transfers: TransferColumns<'a>,
    resolved: ResolvedColumns<'a>,
    settlements: SettlementColumns<'a>,
    keys: KeyColumns<'a>,
    entries: EntryColumns<'a>,
}

impl<'a> Columns<'a> {
    fn of(
        now: DateTime<Utc>,
        state: &'a LedgerState,
        effects: &'a Effects,
        entries: &'a [StatementEntry],
        new_keys: &'a [(KeyId, KeyRecord)],
    ) -> Self {
        let accounts: Vec<&Account> = effects.touched_accounts.iter().filter_map(|id| state.accounts.get(id)).collect();
        assert_eq!(accounts.len(), effects.touched_accounts.len(), "every touched account is in the state");
        Columns {
            now,
            accounts: AccountColumns::of(&accounts),
            postings: PostingColumns::of(effects),
            daily: DailyColumns::of(state, effects),
            transfers: TransferColumns::of(effects),
            resolved: ResolvedColumns::of(effects),
            settlements: SettlementColumns::of(effects),
            keys: KeyColumns::of(new_keys),
            entries: EntryColumns::of(entries),
        }
    }

    /// The statement, and its parameters in `$n` order. Its last SELECT counts the rows each
    /// part wrote.
    fn statement(&'a self) -> (String, Vec<Param<'a>>) {
        let mut b = Binder::default();
        let at = b.bind(&self.now, "timestamptz");
        let parts = [
            self.accounts.sql(&mut b),
            self.postings.sql(&mut b, &at),
            self.daily.sql(&mut b),
            self.transfers.sql(&mut b),
            self.resolved.sql(&mut b, &at),
            self.settlements.sql(&mut b, &at),
            self.keys.sql(&mut b, &at),
            self.entries.sql(&mut b, &at),
        ];
        let sql = format!(
            "WITH {}
     SELECT (SELECT count(*) FROM updated), (SELECT count(*) FROM ledger), (SELECT count(*) FROM counted),
            (SELECT count(*) FROM transferred), (SELECT count(*) FROM keyed), (SELECT coalesce(sum(entries), 0) FROM outboxed),
            (SELECT count(*) FROM resolved), (SELECT count(*) FROM paid),
            (SELECT count(*) FROM completed)",
            parts.join(", ")
        );
        (sql, b.values)
    }
}

/// Writes the batch, inserts its notifications with their recipients' locks (the order of
/// their ids: `crate::store::notifications`), commits and releases its claims, in one flight.
/// The locks come after the write, so that a split bill or another writer of a notified user's
/// notifications waits for the insert and the COMMIT only, not for the write. If the write or
/// the insert fails, the COMMIT that follows in the pipeline ends the aborted transaction
/// (PostgreSQL answers it with ROLLBACK), and the first error is returned; the claims are
/// released either way, once the transaction has ended, so that a batch of another process
/// that waited for them starts its snapshot after this one committed. A key that a concurrent
/// batch recorded first fails the write with a unique violation on `idempotency_keys_pkey`; the
/// batch is retried and then replays.
pub async fn write_and_commit(
    client: &Object,
    now: DateTime<Utc>,
    state: &LedgerState,
    effects: &Effects,
    entries: &[StatementEntry],
    new_keys: &[(KeyId, KeyRecord)],
) -> Result<(), tokio_postgres::Error> {
    let columns = Columns::of(now, state, effects, entries, new_keys);
    let (sql, params) = columns.statement();
    // The text is the same for every batch: prepared once per connection.
    let write = client.prepare_cached(&sql).await?;
    let notes = NotificationColumns::of(effects);
    let recipients = notifications::recipients(effects.notifications.iter().map(|n| n.user_id));
    let insert = client.prepare_cached(notifications::INSERT_WITH_RECIPIENT_LOCKS).await?;
    let notify = async {
        if recipients.is_empty() {
            return Ok(());
        }
        let (base, bound) = (notifications::RECIPIENT_KEY_BASE, notifications::RECIPIENT_ID_BOUND);
        let params: [Param<'_>; 7] = [&notes.user_id, &notes.kind, &notes.payload, &now, &recipients, &base, &bound];
        client.execute(&insert, &params).await.map(drop)
    };
    let (written, notified, committed, released) = tokio::join!(
        client.query_one(&write, &params),
        notify,
        client.batch_execute("COMMIT"),
        super::release_claims(client)
    );
    // In send order: an error after the first failure is PostgreSQL's "transaction aborted".
    written?;
    notified?;
    committed?;
    released
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$n` of the statement is bound, and the text is the same for every batch (so it is
    /// prepared once per connection).
    #[test]
    fn every_placeholder_is_bound_in_order() {
        let (state, effects) = (LedgerState::default(), Effects::default());
        let columns = Columns::of(Utc::now(), &state, &effects, &[], &[]);
        let (sql, params) = columns.statement();
        // $1 is the batch's time, used by every part; each other value is one column's array.
        assert!(sql.matches("$1::timestamptz").count() > 1);
        for n in 2..=params.len() {
            assert_eq!(sql.matches(&format!("${n}::")).count(), 1, "${n} appears once");
        }
        assert!(!sql.contains(&format!("${}", params.len() + 1)));
        assert_eq!(params.len(), 61);
        let other = Columns::of(Utc::now(), &state, &effects, &[], &[]);
        assert_eq!(other.statement().0, sql);
    }
}
