//! The SQL of the ledger writer, on tokio-postgres so that a batch costs two round trips:
//! BEGIN + gate lock + every read are pipelined in one, the write and COMMIT in the other.
//! (On a busy two-core machine a round trip costs milliseconds; a batch that waited on six of
//! them held the gate three times as long.)

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::types::Json;

use super::apply::{Effects, LedgerState};
use super::statements::StatementEntry;
use crate::domain::accounts::{Account, AccountId, UserId};
use crate::domain::settlements::{Share, ShareStatus};
use crate::domain::transfers::Transfer;
use crate::store::idempotency::{KeyId, KeyRecord, StoredResponse};

/// Idle time after which the kernel starts probing a writer's connection, and the time after
/// which unacknowledged data or unanswered probes give it up: a PostgreSQL host that vanishes
/// without closing its connections fails the batch in flight instead of holding a writer for
/// the kernel's default quarter of an hour.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// Every query of a batch looks rows up by key from a short list. A sequential scan (or a hash
/// join over one) would read, and under SERIALIZABLE predicate-lock, a whole table: a batch
/// running at the same time on other rows would then conflict with it and be retried. The
/// planner picks such plans for small tables and for generic plans of the prepared statements,
/// so the writers' sessions rule them out. With those ruled out the generic plan of every
/// statement is the right one, and planning the write statement afresh for each batch (a
/// custom plan) costs more than executing it (0.6 ms against 0.2-0.4 ms, measured with
/// EXPLAIN EXECUTE): the sessions always use the generic plans.
const WRITER_SESSION: &str =
    "-c enable_seqscan=off -c enable_hashjoin=off -c enable_mergejoin=off -c plan_cache_mode=force_generic_plan";

/// Connections for the ledger writers: one each, plus one spare. Connecting, waiting for a
/// connection and checking a returned one are bounded like the sqlx pool's acquire, so that
/// while PostgreSQL is down a batch fails (its callers get 503) instead of waiting, and the
/// writers go on once it is back.
pub fn writer_pool(database_url: &str, writers: usize) -> anyhow::Result<Pool> {
    let mut config: tokio_postgres::Config = database_url.parse()?;
    config
        .options(WRITER_SESSION)
        .connect_timeout(crate::store::POOL_ACQUIRE_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .tcp_user_timeout(TCP_USER_TIMEOUT);
    let manager =
        Manager::from_config(config, tokio_postgres::NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Ok(Pool::builder(manager)
        .max_size(writers + 1)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(crate::store::POOL_ACQUIRE_TIMEOUT))
        .create_timeout(Some(crate::store::POOL_ACQUIRE_TIMEOUT))
        .recycle_timeout(Some(crate::store::POOL_ACQUIRE_TIMEOUT))
        .build()?)
}

/// The gate lock must come before any query: LOCK TABLE takes no snapshot, so a batch that
/// waited there starts its snapshot after what it waited for committed. Batches share the gate
/// (ROW SHARE) with each other, since the writer runs at once only batches on disjoint rows,
/// and with writers of notifications outside a batch, and wait for the jobs that take it in
/// EXCLUSIVE mode (`crate::store::tx::wait_at_ledger_gate`). A retried batch takes it in
/// EXCLUSIVE mode too.
const BEGIN_SHARED: &str = "BEGIN ISOLATION LEVEL SERIALIZABLE; LOCK TABLE ledger_batch_gate IN ROW SHARE MODE";
const BEGIN_ALONE: &str = "BEGIN ISOLATION LEVEL SERIALIZABLE; LOCK TABLE ledger_batch_gate IN EXCLUSIVE MODE";

/// Accounts with their owners' names (snapshots for the statement entries) and transfer modes,
/// and for the savings accounts in $2 (being closed) the deposits and installments booked since
/// the day before the first day whose interest is not paid (a day early in UTC, before that day
/// starts in any time zone; the interest rules take what matters from them).
const LOCK_ACCOUNTS: &str =
    "SELECT to_jsonb(a) || jsonb_build_object('owner_name', u.name, 'owner_transfer_mode', u.transfer_mode,
              'inflows', CASE WHEN a.id = ANY($2) AND a.kind = 'savings' THEN (
                  SELECT COALESCE(jsonb_agg(jsonb_build_object('at', e.at, 'amount', e.amount)), '[]'::jsonb)
                    FROM statement_entries e
                   WHERE e.account_id = a.id AND e.direction = 'in' AND e.kind IN ('deposit', 'installment')
                     AND e.at >= COALESCE(a.interest_through::timestamp AT TIME ZONE 'UTC', a.opened_at)
              ) ELSE '[]'::jsonb END)
       FROM accounts a LEFT JOIN users u ON u.id = a.user_id
      WHERE a.id = ANY($1) ORDER BY a.id FOR UPDATE OF a";

const LOCK_DAILY: &str = "SELECT user_id, business_date, used FROM daily_charges
     WHERE (user_id, business_date) IN (SELECT * FROM UNNEST($1::int8[], $2::date[]))
     ORDER BY user_id, business_date FOR UPDATE";

const FORGET_EXPIRED_KEYS: &str = "DELETE FROM idempotency_keys
     WHERE (user_id, key) IN (SELECT * FROM UNNEST($1::int8[], $2::text[])) AND created_at <= $3";

const LOCK_KEYS: &str = "SELECT user_id, key, fingerprint, status_code, body FROM idempotency_keys
     WHERE (user_id, key) IN (SELECT * FROM UNNEST($1::int8[], $2::text[]))
     ORDER BY user_id, key FOR UPDATE";

const LOCK_TRANSFERS: &str = "SELECT to_jsonb(t) FROM transfers t WHERE id = ANY($1) ORDER BY id FOR UPDATE";

const LOCK_SHARES: &str = "SELECT settlement_id, user_id, amount, status FROM settlement_shares
     WHERE settlement_id = ANY($1) ORDER BY settlement_id, position FOR UPDATE";

const RESERVE_TRANSFER_IDS: &str = "SELECT nextval('transfers_id_seq') FROM generate_series(1, $1::int8)";

/// Everything a batch writes, in one statement: balances, ledger rows, daily counters,
/// transfers (new and resolved), statement entries with their outbox row, notifications, paid
/// shares and completed settlements, and idempotency records. A key that a concurrent batch
/// recorded first fails the statement with a unique violation on `idempotency_keys_pkey`; the
/// batch is retried and then replays.
const WRITE: &str = "WITH updated AS (
        UPDATE accounts a
           SET debits_posted = v.debits_posted, credits_posted = v.credits_posted,
               debits_pending = v.debits_pending, credits_pending = v.credits_pending,
               status = v.status, closed_at = v.closed_at, installment_through = v.installment_through,
               installments_missed = v.installments_missed, installment_missed_on = v.installment_missed_on,
               interest_paid = v.interest_paid, interest_carry = v.interest_carry, interest_through = v.interest_through
          FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::text[], $7::timestamptz[],
                      $55::date[], $56::int4[], $57::date[], $59::int8[], $60::int8[], $61::date[])
               AS v(id, debits_posted, credits_posted, debits_pending, credits_pending, status, closed_at,
                    installment_through, installments_missed, installment_missed_on, interest_paid, interest_carry,
                    interest_through)
         WHERE a.id = v.id
        RETURNING 1
     ), inserted AS (
        INSERT INTO ledger_transfers (id, created_at, debit_account_id, credit_account_id, amount, kind, flags, transfer_id,
                                      charged_for)
        SELECT nextval('ledger_transfers_id_seq'), $8, t.debit, t.credit, t.amount, t.kind, t.flags, t.transfer_id,
               t.charged_for
          FROM UNNEST($9::int8[], $10::int8[], $11::int8[], $12::text[], $13::text[], $14::int8[], $58::date[]) WITH ORDINALITY
               AS t(debit, credit, amount, kind, flags, transfer_id, charged_for, position)
         ORDER BY t.position
        RETURNING 1
     ), counted AS (
        INSERT INTO daily_charges (user_id, business_date, used)
        SELECT * FROM UNNEST($15::int8[], $16::date[], $17::int8[])
        ON CONFLICT (user_id, business_date) DO UPDATE SET used = EXCLUDED.used
        RETURNING 1
     ), transferred AS (
        INSERT INTO transfers (id, from_account_id, to_account_id, from_user_id, to_user_id, amount, auto_charged,
                               status, display_name, memo, created_at, expires_at, resolved_at, settlement_id)
        SELECT * FROM UNNEST($18::int8[], $19::int8[], $20::int8[], $21::int8[], $22::int8[], $23::int8[], $24::int8[],
                             $25::text[], $26::text[], $27::text[], $28::timestamptz[], $29::timestamptz[], $30::timestamptz[],
                             $45::int8[])
        RETURNING 1
     ), resolved AS (
        UPDATE transfers t SET status = v.status, resolved_at = $8
          FROM UNNEST($46::int8[], $47::text[]) AS v(id, status)
         WHERE t.id = v.id
        RETURNING 1
     ), notified AS (
        INSERT INTO notifications (user_id, kind, payload, created_at)
        SELECT u, k, p, $8 FROM UNNEST($48::int8[], $49::text[], $50::jsonb[]) WITH ORDINALITY AS n(u, k, p, position)
         ORDER BY n.position
        RETURNING 1
     ), paid AS (
        UPDATE settlement_shares s SET status = 'paid', paid_at = $8, transfer_id = v.transfer_id
          FROM UNNEST($51::int8[], $52::int8[], $53::int8[]) AS v(settlement_id, user_id, transfer_id)
         WHERE s.settlement_id = v.settlement_id AND s.user_id = v.user_id
        RETURNING 1
     ), completed AS (
        UPDATE settlements s SET status = 'completed', completed_at = $8
         WHERE s.id = ANY($54::int8[])
        RETURNING 1
     ), keyed AS (
        INSERT INTO idempotency_keys (user_id, key, fingerprint, status_code, body, created_at)
        SELECT u, k, f, s, b, $8 FROM UNNEST($31::int8[], $32::text[], $33::bytea[], $34::int2[], $35::jsonb[]) AS t(u, k, f, s, b)
        RETURNING 1
     ), entries AS (
        INSERT INTO statement_entries (id, account_id, at, direction, amount, balance_after, kind,
                                       counterparty_account_id, counterparty_name, transfer_id, memo,
                                       counterparty_user_name)
        SELECT nextval('statement_entries_id_seq'), e.account_id, $8, e.direction, e.amount, e.balance_after, e.kind,
               e.counterparty_account_id, e.counterparty_name, e.transfer_id, e.memo, e.counterparty_user_name
          FROM UNNEST($36::int8[], $37::text[], $38::int8[], $39::int8[], $40::text[], $41::int8[], $42::text[], $43::int8[], $44::text[],
                      $62::text[])
               WITH ORDINALITY AS e(account_id, direction, amount, balance_after, kind, counterparty_account_id,
                                    counterparty_name, transfer_id, memo, counterparty_user_name, position)
         ORDER BY e.position
        RETURNING id
     ), outboxed AS (
        INSERT INTO statement_outbox (entry_ids, at)
        SELECT array_agg(id ORDER BY id), $8 FROM entries HAVING count(*) > 0
        RETURNING cardinality(entry_ids) AS entries
     )
     SELECT (SELECT count(*) FROM updated), (SELECT count(*) FROM inserted), (SELECT count(*) FROM counted),
            (SELECT count(*) FROM transferred), (SELECT count(*) FROM keyed), (SELECT coalesce(sum(entries), 0) FROM outboxed),
            (SELECT count(*) FROM resolved), (SELECT count(*) FROM notified), (SELECT count(*) FROM paid),
            (SELECT count(*) FROM completed)";

/// What a batch reads under lock.
pub struct Locked {
    pub accounts: HashMap<AccountId, Account>,
    pub daily_used: HashMap<(UserId, NaiveDate), i64>,
    pub known_keys: HashMap<KeyId, KeyRecord>,
    pub transfer_ids: Vec<i64>,
    pub transfers: HashMap<i64, Transfer>,
    pub shares: HashMap<i64, Vec<Share>>,
}

/// The rows a batch locks, each list in lock order.
pub struct ToLock<'a> {
    /// Take the gate in EXCLUSIVE mode: no other batch runs meanwhile.
    pub alone: bool,
    pub account_ids: &'a BTreeSet<AccountId>,
    /// Savings accounts being closed (among `account_ids`): their inflows are read too.
    pub closing: &'a BTreeSet<AccountId>,
    pub daily_keys: &'a BTreeSet<(UserId, NaiveDate)>,
    pub key_ids: &'a [KeyId],
    pub keys_expired_before: DateTime<Utc>,
    pub transfer_ids_needed: usize,
    /// Existing transfers to resolve.
    pub transfers: &'a BTreeSet<i64>,
    /// Settlements whose shares are paid.
    pub settlements: &'a BTreeSet<i64>,
}

/// Opens the batch transaction, waits at the gate, then locks and reads the accounts, the daily
/// counters, the idempotency keys (forgetting expired ones), the transfers and shares the
/// batch changes, and reserves transfer ids — all sent at once. The first of them to fail, in
/// that order, is the batch's error ([`in_send_order`]).
pub async fn begin_and_lock(client: &Object, to_lock: ToLock<'_>) -> Result<Locked, tokio_postgres::Error> {
    let ToLock {
        alone,
        account_ids,
        closing,
        daily_keys,
        key_ids,
        keys_expired_before,
        transfer_ids_needed,
        transfers,
        settlements,
    } = to_lock;
    let lock_accounts = client.prepare_cached(LOCK_ACCOUNTS).await?;
    let lock_daily = client.prepare_cached(LOCK_DAILY).await?;
    let forget_keys = client.prepare_cached(FORGET_EXPIRED_KEYS).await?;
    let lock_keys = client.prepare_cached(LOCK_KEYS).await?;
    let reserve = client.prepare_cached(RESERVE_TRANSFER_IDS).await?;
    let lock_transfers = client.prepare_cached(LOCK_TRANSFERS).await?;
    let lock_shares = client.prepare_cached(LOCK_SHARES).await?;
    let transfer_ids: Vec<i64> = transfers.iter().copied().collect();
    let settlement_ids: Vec<i64> = settlements.iter().copied().collect();

    let ids: Vec<i64> = account_ids.iter().copied().collect();
    let daily_users: Vec<i64> = daily_keys.iter().map(|(user, _)| *user).collect();
    let daily_dates: Vec<NaiveDate> = daily_keys.iter().map(|(_, date)| *date).collect();
    let key_users: Vec<i64> = key_ids.iter().map(|(user, _)| *user).collect();
    let key_names: Vec<&str> = key_ids.iter().map(|(_, key)| key.as_str()).collect();
    let reserve_count = transfer_ids_needed as i64;

    let closing: Vec<i64> = closing.iter().copied().collect();
    let account_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&ids, &closing];
    // Polled in this order, so sent in this order, in one flight.
    let (begun, accounts, daily, forgotten, keys, reserved, locked_transfers, locked_shares) = tokio::join!(
        async { client.batch_execute(if alone { BEGIN_ALONE } else { BEGIN_SHARED }).await.map(|()| Vec::new()) },
        client.query(&lock_accounts, &account_params),
        async {
            if daily_users.is_empty() {
                return Ok(Vec::new());
            }
            client.query(&lock_daily, &[&daily_users, &daily_dates]).await
        },
        async {
            if key_users.is_empty() {
                return Ok(Vec::new());
            }
            client.execute(&forget_keys, &[&key_users, &key_names, &keys_expired_before]).await.map(|_| Vec::new())
        },
        async {
            if key_users.is_empty() {
                return Ok(Vec::new());
            }
            client.query(&lock_keys, &[&key_users, &key_names]).await
        },
        async {
            if reserve_count == 0 {
                return Ok(Vec::new());
            }
            client.query(&reserve, &[&reserve_count]).await
        },
        async {
            if transfer_ids.is_empty() {
                return Ok(Vec::new());
            }
            client.query(&lock_transfers, &[&transfer_ids]).await
        },
        async {
            if settlement_ids.is_empty() {
                return Ok(Vec::new());
            }
            client.query(&lock_shares, &[&settlement_ids]).await
        },
    );
    let [_, accounts, daily, _, keys, reserved, locked_transfers, locked_shares] =
        in_send_order([begun, accounts, daily, forgotten, keys, reserved, locked_transfers, locked_shares])?;
    let mut locked = Locked {
        accounts: HashMap::new(),
        daily_used: HashMap::new(),
        known_keys: HashMap::new(),
        transfer_ids: Vec::new(),
        transfers: HashMap::new(),
        shares: HashMap::new(),
    };
    for row in accounts {
        let Json(account): Json<Account> = row.try_get(0)?;
        locked.accounts.insert(account.id, account);
    }
    for row in daily {
        locked.daily_used.insert((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?);
    }
    for row in keys {
        let status: i16 = row.try_get(3)?;
        locked.known_keys.insert(
            (row.try_get(0)?, row.try_get(1)?),
            KeyRecord {
                fingerprint: row.try_get(2)?,
                response: StoredResponse { status: status as u16, body: row.try_get(4)? },
            },
        );
    }
    for row in reserved {
        locked.transfer_ids.push(row.try_get(0)?);
    }
    for row in locked_transfers {
        let Json(transfer): Json<Transfer> = row.try_get(0)?;
        locked.transfers.insert(transfer.id, transfer);
    }
    for row in locked_shares {
        let status: &str = row.try_get(3)?;
        // The column's CHECK allows only the three statuses; anything else is left out, and
        // the payment is then refused as not found.
        let Some(status) = ShareStatus::parse(status) else { continue };
        locked.shares.entry(row.try_get(0)?).or_default().push(Share {
            user_id: row.try_get(1)?,
            amount: row.try_get(2)?,
            status,
        });
    }
    Ok(locked)
}

/// The results of pipelined statements, given in the order they were sent: all their rows, or
/// the error of the first that failed. Once a statement fails, PostgreSQL answers every later
/// one of the transaction with 25P02 ("current transaction is aborted"), which says nothing
/// about why; the batch's error is the one that aborted it (a serialization failure on a lock,
/// say, which the writer retries), so a 25P02 never stands for it, whatever order the answers
/// are read in.
fn in_send_order<const N: usize>(
    results: [Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>; N],
) -> Result<[Vec<tokio_postgres::Row>; N], tokio_postgres::Error> {
    let aborted_earlier = |error: &tokio_postgres::Error| sqlstate(error) == Some("25P02");
    let mut rows = Vec::with_capacity(N);
    let mut first_error: Option<tokio_postgres::Error> = None;
    for result in results {
        match result {
            Ok(statement_rows) => rows.push(statement_rows),
            Err(error) => {
                if first_error.as_ref().is_none_or(|first| aborted_earlier(first) && !aborted_earlier(&error)) {
                    first_error = Some(error);
                }
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(rows.try_into().unwrap_or_else(|_| unreachable!("one result per statement"))),
    }
}

/// Writes the batch and commits, in one flight. If the write fails, the COMMIT that follows it
/// in the pipeline ends the aborted transaction (PostgreSQL answers it with ROLLBACK), and the
/// write's error is returned.
pub async fn write_and_commit(
    client: &Object,
    now: DateTime<Utc>,
    state: &LedgerState,
    effects: &Effects,
    entries: &[StatementEntry],
    new_keys: &[(KeyId, KeyRecord)],
) -> Result<(), tokio_postgres::Error> {
    let write = client.prepare_cached(WRITE).await?;
    let accounts: Vec<&Account> = effects.touched_accounts.iter().filter_map(|id| state.accounts.get(id)).collect();
    debug_assert_eq!(accounts.len(), effects.touched_accounts.len());
    let daily: Vec<((UserId, NaiveDate), i64)> =
        effects.touched_daily.iter().map(|key| (*key, state.daily_used.get(key).copied().unwrap_or(0))).collect();
    let postings = &effects.postings;
    let transfers = &effects.new_transfers;

    let account_ids: Vec<i64> = accounts.iter().map(|a| a.id).collect();
    let debits_posted: Vec<i64> = accounts.iter().map(|a| a.debits_posted).collect();
    let credits_posted: Vec<i64> = accounts.iter().map(|a| a.credits_posted).collect();
    let debits_pending: Vec<i64> = accounts.iter().map(|a| a.debits_pending).collect();
    let credits_pending: Vec<i64> = accounts.iter().map(|a| a.credits_pending).collect();
    let statuses: Vec<&str> = accounts.iter().map(|a| a.status.as_str()).collect();
    let closed_at: Vec<Option<DateTime<Utc>>> = accounts.iter().map(|a| a.closed_at).collect();
    let installment_through: Vec<Option<NaiveDate>> = accounts.iter().map(|a| a.installment_through).collect();
    let installments_missed: Vec<i32> = accounts.iter().map(|a| a.installments_missed).collect();
    let installment_missed_on: Vec<Option<NaiveDate>> = accounts.iter().map(|a| a.installment_missed_on).collect();
    let interest_paid: Vec<i64> = accounts.iter().map(|a| a.interest_paid).collect();
    let interest_carry: Vec<i64> = accounts.iter().map(|a| a.interest_carry).collect();
    let interest_through: Vec<Option<NaiveDate>> = accounts.iter().map(|a| a.interest_through).collect();
    let debit_ids: Vec<i64> = postings.iter().map(|p| p.debit_account_id).collect();
    let credit_ids: Vec<i64> = postings.iter().map(|p| p.credit_account_id).collect();
    let amounts: Vec<i64> = postings.iter().map(|p| p.amount).collect();
    let kinds: Vec<&str> = postings.iter().map(|p| p.kind.as_str()).collect();
    let flags: Vec<&str> = postings.iter().map(|p| p.flags.as_str()).collect();
    let posting_transfer_ids: Vec<Option<i64>> = postings.iter().map(|p| p.transfer_id).collect();
    let charged_for: Vec<Option<NaiveDate>> = postings.iter().map(|p| p.charged_for).collect();
    let daily_users: Vec<i64> = daily.iter().map(|((user, _), _)| *user).collect();
    let daily_dates: Vec<NaiveDate> = daily.iter().map(|((_, date), _)| *date).collect();
    let daily_used: Vec<i64> = daily.iter().map(|(_, used)| *used).collect();
    let transfer_ids: Vec<i64> = transfers.iter().map(|t| t.id).collect();
    let from_accounts: Vec<i64> = transfers.iter().map(|t| t.from_account_id).collect();
    let to_accounts: Vec<i64> = transfers.iter().map(|t| t.to_account_id).collect();
    let from_users: Vec<i64> = transfers.iter().map(|t| t.from_user_id).collect();
    let to_users: Vec<i64> = transfers.iter().map(|t| t.to_user_id).collect();
    let transfer_amounts: Vec<i64> = transfers.iter().map(|t| t.amount).collect();
    let auto_charged: Vec<i64> = transfers.iter().map(|t| t.auto_charged).collect();
    let transfer_statuses: Vec<&str> = transfers.iter().map(|t| t.status.as_str()).collect();
    let display_names: Vec<Option<&str>> = transfers.iter().map(|t| t.display_name.as_deref()).collect();
    let memos: Vec<Option<&str>> = transfers.iter().map(|t| t.memo.as_deref()).collect();
    let created_at: Vec<DateTime<Utc>> = transfers.iter().map(|t| t.created_at).collect();
    let expires_at: Vec<Option<DateTime<Utc>>> = transfers.iter().map(|t| t.expires_at).collect();
    let resolved_at: Vec<Option<DateTime<Utc>>> = transfers.iter().map(|t| t.resolved_at).collect();
    let settlement_ids: Vec<Option<i64>> = transfers.iter().map(|t| t.settlement_id).collect();
    let resolved_ids: Vec<i64> = effects.resolved_transfers.iter().map(|t| t.id).collect();
    let resolved_statuses: Vec<&str> = effects.resolved_transfers.iter().map(|t| t.status.as_str()).collect();
    let notified_users: Vec<i64> = effects.notifications.iter().map(|n| n.user_id).collect();
    let notified_kinds: Vec<&str> = effects.notifications.iter().map(|n| n.kind.as_str()).collect();
    let notified_payloads: Vec<&serde_json::Value> = effects.notifications.iter().map(|n| &n.payload).collect();
    let paid_settlements: Vec<i64> = effects.paid_shares.iter().map(|p| p.settlement_id).collect();
    let paid_users: Vec<i64> = effects.paid_shares.iter().map(|p| p.user_id).collect();
    let paid_transfers: Vec<i64> = effects.paid_shares.iter().map(|p| p.transfer_id).collect();
    let completed: &Vec<i64> = &effects.completed_settlements;
    let key_users: Vec<i64> = new_keys.iter().map(|((user, _), _)| *user).collect();
    let key_names: Vec<&str> = new_keys.iter().map(|((_, key), _)| key.as_str()).collect();
    let fingerprints: Vec<&[u8]> = new_keys.iter().map(|(_, record)| record.fingerprint.as_slice()).collect();
    let key_statuses: Vec<i16> = new_keys.iter().map(|(_, record)| record.response.status as i16).collect();
    let bodies: Vec<&serde_json::Value> = new_keys.iter().map(|(_, record)| &record.response.body).collect();
    let entry_accounts: Vec<i64> = entries.iter().map(|e| e.account_id).collect();
    let entry_directions: Vec<&str> = entries.iter().map(|e| e.direction.as_str()).collect();
    let entry_amounts: Vec<i64> = entries.iter().map(|e| e.amount).collect();
    let entry_balances: Vec<i64> = entries.iter().map(|e| e.balance_after).collect();
    let entry_kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    let entry_counterparties: Vec<Option<i64>> = entries.iter().map(|e| e.counterparty_account_id).collect();
    let entry_names: Vec<&str> = entries.iter().map(|e| e.counterparty_name.as_str()).collect();
    let entry_transfers: Vec<Option<i64>> = entries.iter().map(|e| e.transfer_id).collect();
    let entry_memos: Vec<Option<&str>> = entries.iter().map(|e| e.memo.as_deref()).collect();
    let entry_user_names: Vec<Option<&str>> = entries.iter().map(|e| e.counterparty_user_name.as_deref()).collect();

    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 62] = [
        &account_ids,
        &debits_posted,
        &credits_posted,
        &debits_pending,
        &credits_pending,
        &statuses,
        &closed_at,
        &now,
        &debit_ids,
        &credit_ids,
        &amounts,
        &kinds,
        &flags,
        &posting_transfer_ids,
        &daily_users,
        &daily_dates,
        &daily_used,
        &transfer_ids,
        &from_accounts,
        &to_accounts,
        &from_users,
        &to_users,
        &transfer_amounts,
        &auto_charged,
        &transfer_statuses,
        &display_names,
        &memos,
        &created_at,
        &expires_at,
        &resolved_at,
        &key_users,
        &key_names,
        &fingerprints,
        &key_statuses,
        &bodies,
        &entry_accounts,
        &entry_directions,
        &entry_amounts,
        &entry_balances,
        &entry_kinds,
        &entry_counterparties,
        &entry_names,
        &entry_transfers,
        &entry_memos,
        &settlement_ids,
        &resolved_ids,
        &resolved_statuses,
        &notified_users,
        &notified_kinds,
        &notified_payloads,
        &paid_settlements,
        &paid_users,
        &paid_transfers,
        completed,
        &installment_through,
        &installments_missed,
        &installment_missed_on,
        &charged_for,
        &interest_paid,
        &interest_carry,
        &interest_through,
        &entry_user_names,
    ];
    let (written, committed) = tokio::join!(client.query_one(&write, &params), client.batch_execute("COMMIT"));
    written?;
    committed
}

/// Ends a failed attempt's transaction so the connection can be reused.
pub async fn rollback(client: &Object) -> Result<(), tokio_postgres::Error> {
    client.batch_execute("ROLLBACK").await
}

fn sqlstate(error: &tokio_postgres::Error) -> Option<&str> {
    error.code().map(|code| code.code())
}

/// Serialization failures and deadlocks, and a key that a concurrent batch recorded first:
/// the retry will see it and replay.
pub fn may_retry(error: &tokio_postgres::Error) -> bool {
    match sqlstate(error) {
        Some("40001") | Some("40P01") => true,
        Some("23505") => error.as_db_error().and_then(|db| db.constraint()) == Some("idempotency_keys_pkey"),
        _ => false,
    }
}

/// "no partition of relation … found for row": time moved into a month nobody prepared.
pub fn is_missing_partition(error: &tokio_postgres::Error) -> bool {
    sqlstate(error) == Some("23514")
        && error.as_db_error().is_some_and(|db| db.message().starts_with("no partition of relation"))
}
