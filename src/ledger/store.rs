//! The SQL of the ledger writer: lock what a batch touches, in a fixed order, and write all
//! its effects with set-based statements.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;

use super::apply::{Effects, LedgerState};
use crate::domain::accounts::{AccountId, UserId};
use crate::store::accounts::{account_from_row, ACCOUNT_COLUMNS};

/// Locks the accounts, in id order so that concurrent batches never deadlock on each other,
/// and loads them. Ids that do not exist are simply absent.
pub async fn lock_accounts(conn: &mut PgConnection, ids: &BTreeSet<AccountId>) -> sqlx::Result<HashMap<AccountId, crate::domain::accounts::Account>> {
    let ids: Vec<i64> = ids.iter().copied().collect();
    let sql = format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE");
    let rows = sqlx::query(&sql).bind(&ids).fetch_all(&mut *conn).await?;
    rows.iter().map(|row| account_from_row(row).map(|account| (account.id, account))).collect()
}

/// Locks and loads the daily top-up counters that exist for these users on these dates, after
/// the accounts (the fixed order: accounts by id, then counters by user and date).
pub async fn lock_daily_charges(conn: &mut PgConnection, keys: &BTreeSet<(UserId, NaiveDate)>) -> sqlx::Result<HashMap<(UserId, NaiveDate), i64>> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let users: Vec<i64> = keys.iter().map(|(user, _)| *user).collect();
    let dates: Vec<NaiveDate> = keys.iter().map(|(_, date)| *date).collect();
    let rows: Vec<(i64, NaiveDate, i64)> = sqlx::query_as(
        "SELECT user_id, business_date, used FROM daily_charges
         WHERE (user_id, business_date) IN (SELECT * FROM UNNEST($1::int8[], $2::date[]))
         ORDER BY user_id, business_date FOR UPDATE",
    )
    .bind(&users)
    .bind(&dates)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|(user, date, used)| ((user, date), used)).collect())
}

/// Writes the batch: new account balances, the ledger rows and the daily counters, in one
/// statement (one round trip however large the batch).
pub async fn write_effects(conn: &mut PgConnection, now: DateTime<Utc>, state: &LedgerState, effects: &Effects) -> sqlx::Result<()> {
    if effects.touched_accounts.is_empty() && effects.touched_daily.is_empty() && effects.new_transfers.is_empty() {
        return Ok(());
    }
    let accounts: Vec<&crate::domain::accounts::Account> =
        effects.touched_accounts.iter().filter_map(|id| state.accounts.get(id)).collect();
    debug_assert_eq!(accounts.len(), effects.touched_accounts.len());
    let daily: Vec<((UserId, NaiveDate), i64)> = effects
        .touched_daily
        .iter()
        .map(|key| (*key, state.daily_used.get(key).copied().unwrap_or(0)))
        .collect();
    let transfers = &effects.new_transfers;
    sqlx::query(
        "WITH updated AS (
            UPDATE accounts a
               SET debits_posted = v.debits_posted, credits_posted = v.credits_posted,
                   debits_pending = v.debits_pending, credits_pending = v.credits_pending,
                   status = v.status, closed_at = v.closed_at
              FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::text[], $7::timestamptz[])
                   AS v(id, debits_posted, credits_posted, debits_pending, credits_pending, status, closed_at)
             WHERE a.id = v.id
            RETURNING 1
         ), inserted AS (
            INSERT INTO ledger_transfers (id, created_at, debit_account_id, credit_account_id, amount, kind, flags, transfer_id)
            SELECT nextval('ledger_transfers_id_seq'), $8, t.debit, t.credit, t.amount, t.kind, t.flags, t.transfer_id
              FROM UNNEST($9::int8[], $10::int8[], $11::int8[], $12::text[], $13::text[], $17::int8[]) WITH ORDINALITY
                   AS t(debit, credit, amount, kind, flags, transfer_id, position)
             ORDER BY t.position
            RETURNING 1
         ), counted AS (
            INSERT INTO daily_charges (user_id, business_date, used)
            SELECT * FROM UNNEST($14::int8[], $15::date[], $16::int8[])
            ON CONFLICT (user_id, business_date) DO UPDATE SET used = EXCLUDED.used
            RETURNING 1
         ), transferred AS (
            INSERT INTO transfers (id, from_account_id, to_account_id, from_user_id, to_user_id, amount, auto_charged,
                                   status, display_name, memo, created_at, expires_at, resolved_at)
            SELECT * FROM UNNEST($18::int8[], $19::int8[], $20::int8[], $21::int8[], $22::int8[], $23::int8[], $24::int8[],
                                 $25::text[], $26::text[], $27::text[], $28::timestamptz[], $29::timestamptz[], $30::timestamptz[])
            RETURNING 1
         )
         SELECT (SELECT count(*) FROM updated), (SELECT count(*) FROM inserted), (SELECT count(*) FROM counted),
                (SELECT count(*) FROM transferred)",
    )
    .bind(accounts.iter().map(|a| a.id).collect::<Vec<_>>())
    .bind(accounts.iter().map(|a| a.debits_posted).collect::<Vec<_>>())
    .bind(accounts.iter().map(|a| a.credits_posted).collect::<Vec<_>>())
    .bind(accounts.iter().map(|a| a.debits_pending).collect::<Vec<_>>())
    .bind(accounts.iter().map(|a| a.credits_pending).collect::<Vec<_>>())
    .bind(accounts.iter().map(|a| a.status.as_str()).collect::<Vec<_>>())
    .bind(accounts.iter().map(|a| a.closed_at).collect::<Vec<_>>())
    .bind(now)
    .bind(effects.postings.iter().map(|p| p.debit_account_id).collect::<Vec<_>>())
    .bind(effects.postings.iter().map(|p| p.credit_account_id).collect::<Vec<_>>())
    .bind(effects.postings.iter().map(|p| p.amount).collect::<Vec<_>>())
    .bind(effects.postings.iter().map(|p| p.kind.as_str()).collect::<Vec<_>>())
    .bind(effects.postings.iter().map(|p| p.flags.as_str()).collect::<Vec<_>>())
    .bind(daily.iter().map(|((user, _), _)| *user).collect::<Vec<_>>())
    .bind(daily.iter().map(|((_, date), _)| *date).collect::<Vec<_>>())
    .bind(daily.iter().map(|(_, used)| *used).collect::<Vec<_>>())
    .bind(effects.postings.iter().map(|p| p.transfer_id).collect::<Vec<_>>())
    .bind(transfers.iter().map(|t| t.id).collect::<Vec<_>>())
    .bind(transfers.iter().map(|t| t.from_account_id).collect::<Vec<_>>())
    .bind(transfers.iter().map(|t| t.to_account_id).collect::<Vec<_>>())
    .bind(transfers.iter().map(|t| t.from_user_id).collect::<Vec<_>>())
    .bind(transfers.iter().map(|t| t.to_user_id).collect::<Vec<_>>())
    .bind(transfers.iter().map(|t| t.amount).collect::<Vec<_>>())
    .bind(transfers.iter().map(|t| t.auto_charged).collect::<Vec<_>>())
    .bind(transfers.iter().map(|t| t.status.as_str()).collect::<Vec<_>>())
    .bind(transfers.iter().map(|t| t.display_name.as_deref()).collect::<Vec<_>>())
    .bind(transfers.iter().map(|t| t.memo.as_deref()).collect::<Vec<_>>())
    .bind(transfers.iter().map(|t| t.created_at).collect::<Vec<_>>())
    .bind(transfers.iter().map(|t| t.expires_at).collect::<Vec<_>>())
    .bind(transfers.iter().map(|t| t.resolved_at).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Reserves ids for the transfers a batch may create (one per transfer command).
pub async fn reserve_transfer_ids(conn: &mut PgConnection, count: usize) -> sqlx::Result<Vec<i64>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    sqlx::query_scalar("SELECT nextval('transfers_id_seq') FROM generate_series(1, $1)")
        .bind(count as i64)
        .fetch_all(conn)
        .await
}
