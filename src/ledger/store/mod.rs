//! The SQL of the ledger writer, on tokio-postgres so that a batch costs two round trips:
//! BEGIN + gate lock + every read are pipelined in one, the write and COMMIT in the other.
//! (On a busy two-core machine a round trip costs milliseconds; a batch that waited on six of
//! them held the gate three times as long.)

mod write;

pub use write::write_and_commit;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::Statement;

use crate::domain::accounts::{Account, AccountId, Inflow, UserId};
use crate::domain::ids::{SettlementId, TransferId};
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
/// EXPLAIN EXECUTE): the sessions always use the generic plans. No JIT either, as in every
/// minipay session (`store::SESSION_SETTINGS`): a plan type ruled out still counts a huge cost
/// where no other plan exists, enough for PostgreSQL to compile the statement each time.
const WRITER_SESSION: &str =
    "-c enable_seqscan=off -c enable_hashjoin=off -c enable_mergejoin=off -c plan_cache_mode=force_generic_plan -c jit=off";

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

/// Drops the writer connection's cached plans (`DISCARD PLANS`; its statements stay prepared)
/// when it is checked out for its 64th, 128th, 256th … batch, and then every 65,536th. The
/// sessions keep each statement's generic plan for good ([`WRITER_SESSION`]), and the plan is
/// made for the tables as they are at the first batch: nearly empty in a new deployment, where
/// looking accounts up by id went through a whole index with a filter, reading (and
/// predicate-locking) every account, and failing concurrent batches as serialization pivots.
/// ANALYZE replans them too, but only once autovacuum gets to the table. Replanned as the
/// tables grow, the plans follow them within a few seconds of load, at the cost of one round
/// trip now and then.
pub async fn replan_now_and_then(client: &Object) -> Result<(), tokio_postgres::Error> {
    if replans_at(Object::metrics(client).recycle_count) {
        client.batch_execute("DISCARD PLANS").await?;
    }
    Ok(())
}

/// Whether a connection checked out for the `uses`-th time drops its plans first.
fn replans_at(uses: usize) -> bool {
    uses >= 64 && (uses.is_power_of_two() || uses.is_multiple_of(65_536))
}

/// The gate lock must come before any query: LOCK TABLE takes no snapshot, so a batch that
/// waited there starts its snapshot after what it waited for committed. Batches share the gate
/// (ROW SHARE) with each other, since the writer runs at once only batches on disjoint rows,
/// and with writers of notifications outside a batch, and wait for the jobs that take it in
/// EXCLUSIVE mode (`crate::store::tx::wait_at_ledger_gate`). A retried batch takes it in
/// EXCLUSIVE mode too.
const BEGIN_SHARED: &str = "BEGIN ISOLATION LEVEL SERIALIZABLE; LOCK TABLE ledger_batch_gate IN ROW SHARE MODE";
const BEGIN_ALONE: &str = "BEGIN ISOLATION LEVEL SERIALIZABLE; LOCK TABLE ledger_batch_gate IN EXCLUSIVE MODE";

/// Accounts with their owners' names (snapshots for the statement entries) and transfer modes.
/// Column by column ([`account_of`]): `to_jsonb` of each row, its merge with the owner's fields
/// (which sorts the keys) and the JSON's text were an eighth of PostgreSQL's CPU in a batch of
/// transfers. Not locked (see the lock order in `crate::ledger::writer`): `FOR UPDATE` cost
/// 0.25-0.35 ms of 57 accounts' 0.75-0.8 ms (`pgbench -M prepared` of the statement alone, the
/// transaction rolled back), for locks the claims made redundant.
macro_rules! read_accounts {
    ($inflows:literal) => {
        concat!(
            "SELECT a.id, a.user_id, a.kind, a.product, a.status, a.installment_amount, a.interest_rate_bp, a.opened_at,
            a.closed_at, a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending,
            u.name AS owner_name, a.installment_through, a.installments_missed, a.installment_missed_on,
            u.transfer_mode AS owner_transfer_mode, a.interest_paid, a.interest_carry, a.interest_through, ",
            $inflows,
            " AS inflows
       FROM accounts a LEFT JOIN users u ON u.id = a.user_id
      WHERE a.id = ANY($1) ORDER BY a.id"
        )
    };
}

/// [`READ_ACCOUNTS_CLOSING`] for a batch that closes no savings account: no inflows, and no
/// look at `statement_entries`. The plan is generic ([`WRITER_SESSION`]), and
/// PostgreSQL 15 locks every partition a generic plan names when it starts, so the inflows'
/// subquery took a lock on each month's partition and its index in every batch: nine of the
/// sixteen locks a session takes without the shared lock table, whose hash look-ups were 11% of
/// PostgreSQL's samples in a batch of transfers.
const READ_ACCOUNTS: &str = read_accounts!("NULL::jsonb");

/// [`READ_ACCOUNTS`], and for the savings accounts in $2 (being closed) the deposits and
/// installments booked since the day before the first day whose interest is not paid (a day
/// early in UTC, before that day starts in any time zone; the interest rules take what matters
/// from them).
const READ_ACCOUNTS_CLOSING: &str = read_accounts!(
    "CASE WHEN a.id = ANY($2) AND a.kind = 'savings' THEN (
                SELECT COALESCE(jsonb_agg(jsonb_build_object('at', e.at, 'amount', e.amount)), '[]'::jsonb)
                  FROM statement_entries e
                 WHERE e.account_id = a.id AND e.direction = 'in' AND e.kind IN ('deposit', 'installment')
                   AND e.at >= COALESCE(a.interest_through::timestamp AT TIME ZONE 'UTC', a.opened_at)
            ) END"
);

/// An account as [`READ_ACCOUNTS`] (or [`READ_ACCOUNTS_CLOSING`]) reads it.
fn account_of(row: &tokio_postgres::Row) -> Result<Account, tokio_postgres::Error> {
    let inflows: Option<Json<Vec<Inflow>>> = row.try_get("inflows")?;
    Ok(Account {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        kind: row.try_get("kind")?,
        product: row.try_get("product")?,
        status: row.try_get("status")?,
        installment_amount: row.try_get("installment_amount")?,
        interest_rate_bp: row.try_get("interest_rate_bp")?,
        opened_at: row.try_get("opened_at")?,
        closed_at: row.try_get("closed_at")?,
        debits_posted: row.try_get("debits_posted")?,
        credits_posted: row.try_get("credits_posted")?,
        debits_pending: row.try_get("debits_pending")?,
        credits_pending: row.try_get("credits_pending")?,
        owner_name: row.try_get("owner_name")?,
        installment_through: row.try_get("installment_through")?,
        installments_missed: row.try_get("installments_missed")?,
        installment_missed_on: row.try_get("installment_missed_on")?,
        owner_transfer_mode: row.try_get("owner_transfer_mode")?,
        interest_paid: row.try_get("interest_paid")?,
        interest_carry: row.try_get("interest_carry")?,
        interest_through: row.try_get("interest_through")?,
        inflows: inflows.map(|Json(inflows)| inflows).unwrap_or_default(),
    })
}

const LOCK_DAILY: &str = "SELECT user_id, business_date, used FROM daily_charges
     WHERE (user_id, business_date) IN (SELECT * FROM UNNEST($1::int8[], $2::date[]))
     ORDER BY user_id, business_date FOR UPDATE";

/// Where the claims' keys start among the bigint advisory lock keys: above every `int4`, so that
/// they never meet the keys other advisory locks hash a name to.
const CLAIM_KEY_BASE: i64 = 1 << 40;

/// Claims the accounts in $1 (in id order) across processes: a session advisory lock on each,
/// waiting for another process's batch that holds one, taken before the batch's transaction and
/// released after its COMMIT ([`RELEASE_CLAIMS`]). Within a process the writer never runs two
/// batches on one account (`writer::schedule`); across processes nothing else kept them apart,
/// and the later batch waited for the first one's row lock inside its SERIALIZABLE snapshot,
/// which the first one's commit then made stale: a serialization failure, and a retry with the
/// gate in EXCLUSIVE mode that stopped every process. Waiting here instead, before the
/// snapshot is taken, the batch starts after the other one committed, and sees what it wrote.
/// The claims are taken in id order, and held while waiting at the gate and for row locks,
/// which no holder of the gate or of a row waits for a claim to get: no cycle. Ids outside
/// 0..$2 (which name no account: ids come from a sequence) are not claimed, so that the key
/// stays a bigint; their row locks alone would keep them apart.
const CLAIM_ACCOUNTS: &str =
    "SELECT count(pg_advisory_lock($2 + id)) FROM UNNEST($1::int8[]) AS id WHERE id >= 0 AND id < $2";

/// Releases every claim of the session (the writers' connections take no other advisory lock).
/// Prepared, as every statement of a batch: sent as text, it was parsed and planned for each
/// batch (30 µs of PostgreSQL's time, more than running it).
const RELEASE_CLAIMS: &str = "SELECT pg_advisory_unlock_all()";

/// The live records of the keys in ($1, $2), after forgetting those created at or before $3.
/// Sent before the batch's transaction, on its own (READ COMMITTED): read inside the
/// SERIALIZABLE snapshot, a key that is not there would predicate-lock a page of the keys' index
/// where other batches insert their own users' new keys, and batches on disjoint users would fail
/// each other. Nothing is lost by reading outside: a key recorded by another process after this
/// read makes the batch's insert of it fail (`idempotency_keys_pkey`, or a serialization failure),
/// the batch is retried, and the retry reads it and replays. Within a process no two batches
/// hold one key (`writer::schedule::Claim::Key`), and across processes a repeat of a keyed
/// command names the same accounts, which the batch has claimed before this read.
const READ_KEYS: &str = "WITH forgotten AS (
        DELETE FROM idempotency_keys
         WHERE (user_id, key) IN (SELECT * FROM UNNEST($1::int8[], $2::text[])) AND created_at <= $3
     )
     SELECT user_id, key, fingerprint, status_code, body FROM idempotency_keys
      WHERE (user_id, key) IN (SELECT * FROM UNNEST($1::int8[], $2::text[])) AND created_at > $3";

const LOCK_TRANSFERS: &str = "SELECT to_jsonb(t) FROM transfers t WHERE id = ANY($1) ORDER BY id FOR UPDATE";

const LOCK_SHARES: &str = "SELECT settlement_id, user_id, amount, status, paid_at, transfer_id FROM settlement_shares
     WHERE settlement_id = ANY($1) ORDER BY settlement_id, position FOR UPDATE";

/// Which of the (account, sender) pairs are blocked by the account's owner. Read in the
/// batch's snapshot: a block committed before it counts, and one committing meanwhile
/// conflicts with it (SERIALIZABLE) instead of being missed.
const BLOCKED: &str = "SELECT p.account_id, p.sender FROM UNNEST($1::int8[], $2::int8[]) AS p(account_id, sender)
       JOIN accounts a ON a.id = p.account_id
       JOIN blocks b ON b.blocker_id = a.user_id AND b.blocked_id = p.sender";

const RESERVE_TRANSFER_IDS: &str = "SELECT nextval('transfers_id_seq') FROM generate_series(1, $1::int8)";

/// What a batch reads under lock.
pub struct Locked {
    pub accounts: HashMap<AccountId, Account>,
    pub daily_used: HashMap<(UserId, NaiveDate), i64>,
    pub known_keys: HashMap<KeyId, KeyRecord>,
    pub transfer_ids: Vec<TransferId>,
    pub transfers: HashMap<TransferId, Transfer>,
    pub shares: HashMap<SettlementId, Vec<Share>>,
    pub blocked: HashSet<(AccountId, UserId)>,
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
    pub transfers: &'a BTreeSet<TransferId>,
    /// Settlements whose shares are paid.
    pub settlements: &'a BTreeSet<SettlementId>,
    /// (receiving account, sender) of the batch's transfers, to look up blocks.
    pub blocks: &'a BTreeSet<(AccountId, UserId)>,
}

/// Claims the accounts across processes ([`CLAIM_ACCOUNTS`]) and reads the idempotency keys
/// (forgetting expired ones, [`READ_KEYS`]), both before the batch's transaction, then opens
/// it, waits at the gate, locks and reads the accounts, the daily counters, the transfers and
/// shares the batch changes, and reserves transfer ids — all sent at once. The first of them to
/// fail, in that order, is the batch's error ([`in_send_order`]). The claims hold until
/// released, whatever happens: [`write_and_commit`] and [`rollback`] release them.
pub async fn begin_and_lock(client: &Object, to_lock: ToLock<'_>) -> Result<Locked, tokio_postgres::Error> {
    let statements = LockStatements::prepare(client).await?;
    let keys = LockKeys::of(&to_lock);
    let [_, keys, _, accounts, daily, reserved, transfers, shares, blocked] =
        send_locks(client, &statements, to_lock.alone, &keys).await?;
    let mut locked = Locked {
        accounts: HashMap::new(),
        daily_used: HashMap::new(),
        known_keys: HashMap::new(),
        transfer_ids: Vec::new(),
        transfers: HashMap::new(),
        shares: HashMap::new(),
        blocked: HashSet::new(),
    };
    for row in accounts {
        let account = account_of(&row)?;
        locked.accounts.insert(account.id, account);
    }
    for row in daily {
        locked.daily_used.insert((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?);
    }
    for row in keys {
        let status: i16 = row.try_get(3)?;
        let response = StoredResponse { status: status as u16, body: row.try_get(4)? };
        locked
            .known_keys
            .insert((row.try_get(0)?, row.try_get(1)?), KeyRecord { fingerprint: row.try_get(2)?, response });
    }
    for row in reserved {
        locked.transfer_ids.push(row.try_get(0)?);
    }
    for row in transfers {
        let Json(transfer): Json<Transfer> = row.try_get(0)?;
        locked.transfers.insert(transfer.id, transfer);
    }
    locked.shares = decode_shares(shares)?;
    for row in blocked {
        locked.blocked.insert((row.try_get(0)?, row.try_get(1)?));
    }
    Ok(locked)
}

/// The shares read, per settlement, in position order.
fn decode_shares(rows: Vec<tokio_postgres::Row>) -> Result<HashMap<SettlementId, Vec<Share>>, tokio_postgres::Error> {
    let mut shares: HashMap<SettlementId, Vec<Share>> = HashMap::new();
    for row in rows {
        let status: &str = row.try_get(3)?;
        // The column's CHECK allows only the three statuses; anything else is left out, and
        // the payment is then refused as not found.
        let Some(status) = ShareStatus::parse(status) else { continue };
        shares.entry(row.try_get(0)?).or_default().push(Share {
            user_id: row.try_get(1)?,
            amount: row.try_get(2)?,
            status,
            paid_at: row.try_get(4)?,
            transfer_id: row.try_get(5)?,
        });
    }
    Ok(shares)
}

/// The prepared statements of [`begin_and_lock`] (prepared once per connection).
struct LockStatements {
    claims: Statement,
    keys: Statement,
    accounts: Statement,
    accounts_closing: Statement,
    daily: Statement,
    reserve: Statement,
    transfers: Statement,
    shares: Statement,
    blocked: Statement,
}

impl LockStatements {
    async fn prepare(client: &Object) -> Result<Self, tokio_postgres::Error> {
        Ok(LockStatements {
            claims: client.prepare_cached(CLAIM_ACCOUNTS).await?,
            keys: client.prepare_cached(READ_KEYS).await?,
            accounts: client.prepare_cached(READ_ACCOUNTS).await?,
            accounts_closing: client.prepare_cached(READ_ACCOUNTS_CLOSING).await?,
            daily: client.prepare_cached(LOCK_DAILY).await?,
            reserve: client.prepare_cached(RESERVE_TRANSFER_IDS).await?,
            transfers: client.prepare_cached(LOCK_TRANSFERS).await?,
            shares: client.prepare_cached(LOCK_SHARES).await?,
            blocked: client.prepare_cached(BLOCKED).await?,
        })
    }
}

/// The keys of the rows to lock, as the statements' parameters.
struct LockKeys<'a> {
    account_ids: Vec<i64>,
    closing: Vec<i64>,
    daily_users: Vec<i64>,
    daily_dates: Vec<NaiveDate>,
    key_users: Vec<i64>,
    key_names: Vec<&'a str>,
    keys_expired_before: DateTime<Utc>,
    reserve_count: i64,
    transfer_ids: Vec<i64>,
    settlement_ids: Vec<i64>,
    block_accounts: Vec<i64>,
    block_senders: Vec<i64>,
}

impl<'a> LockKeys<'a> {
    fn of(to_lock: &ToLock<'a>) -> Self {
        LockKeys {
            account_ids: to_lock.account_ids.iter().map(|a| a.get()).collect(),
            closing: to_lock.closing.iter().map(|a| a.get()).collect(),
            daily_users: to_lock.daily_keys.iter().map(|(user, _)| user.get()).collect(),
            daily_dates: to_lock.daily_keys.iter().map(|(_, date)| *date).collect(),
            key_users: to_lock.key_ids.iter().map(|(user, _)| user.get()).collect(),
            key_names: to_lock.key_ids.iter().map(|(_, key)| key.as_str()).collect(),
            keys_expired_before: to_lock.keys_expired_before,
            reserve_count: to_lock.transfer_ids_needed as i64,
            transfer_ids: to_lock.transfers.iter().map(|t| t.get()).collect(),
            settlement_ids: to_lock.settlements.iter().map(|s| s.get()).collect(),
            block_accounts: to_lock.blocks.iter().map(|(account, _)| account.get()).collect(),
            block_senders: to_lock.blocks.iter().map(|(_, sender)| sender.get()).collect(),
        }
    }
}

type Rows = Vec<tokio_postgres::Row>;

/// The statement's rows, or none without sending it when there is nothing to look up.
async fn query_unless<const N: usize>(
    nothing: bool,
    client: &Object,
    statement: &Statement,
    params: [&(dyn ToSql + Sync); N],
) -> Result<Rows, tokio_postgres::Error> {
    if nothing {
        return Ok(Vec::new());
    }
    client.query(statement, &params).await
}

/// The claims and the keys' read (each on its own, before the transaction), then BEGIN, the
/// gate, and every lock, polled in this order, so sent in this order, in one flight; a
/// statement with nothing to read or lock is not sent. The rows of each, in that order.
async fn send_locks(
    client: &Object,
    statements: &LockStatements,
    alone: bool,
    keys: &LockKeys<'_>,
) -> Result<[Rows; 9], tokio_postgres::Error> {
    let s = statements;
    let k = keys;
    let (claimed, read_keys, begun, accounts, daily, reserved, transfers, shares, blocked) = tokio::join!(
        query_unless(false, client, &s.claims, [&k.account_ids, &CLAIM_KEY_BASE]),
        query_unless(k.key_users.is_empty(), client, &s.keys, [&k.key_users, &k.key_names, &k.keys_expired_before]),
        async { client.batch_execute(if alone { BEGIN_ALONE } else { BEGIN_SHARED }).await.map(|()| Vec::new()) },
        async {
            match k.closing.is_empty() {
                true => client.query(&s.accounts, &[&k.account_ids]).await,
                false => client.query(&s.accounts_closing, &[&k.account_ids, &k.closing]).await,
            }
        },
        query_unless(k.daily_users.is_empty(), client, &s.daily, [&k.daily_users, &k.daily_dates]),
        query_unless(k.reserve_count == 0, client, &s.reserve, [&k.reserve_count]),
        query_unless(k.transfer_ids.is_empty(), client, &s.transfers, [&k.transfer_ids]),
        query_unless(k.settlement_ids.is_empty(), client, &s.shares, [&k.settlement_ids]),
        query_unless(k.block_accounts.is_empty(), client, &s.blocked, [&k.block_accounts, &k.block_senders]),
    );
    in_send_order([claimed, read_keys, begun, accounts, daily, reserved, transfers, shares, blocked])
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

/// Ends a failed attempt's transaction and releases its claims, so the connection can be
/// reused.
pub async fn rollback(client: &Object) -> Result<(), tokio_postgres::Error> {
    let (rolled_back, released) = tokio::join!(client.batch_execute("ROLLBACK"), release_claims(client));
    rolled_back.and(released)
}

/// Releases the batch's claims ([`CLAIM_ACCOUNTS`]). Polled beside other statements of a
/// pipeline, it is sent after those polled before it (its statement is prepared with the
/// connection's first batch, which sends the preparation after them too).
pub async fn release_claims(client: &Object) -> Result<(), tokio_postgres::Error> {
    let release = client.prepare_cached(RELEASE_CLAIMS).await?;
    client.execute(&release, &[]).await.map(drop)
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

#[cfg(test)]
mod tests {
    use super::replans_at;

    /// Often while the tables grow from empty, then seldom: 9 times in the first 16,384 batches
    /// of a connection, then at most twice every 65,536.
    #[test]
    fn plans_are_dropped_as_a_connection_ages_then_seldom() {
        let first: Vec<usize> = (0..=16_384).filter(|&uses| replans_at(uses)).collect();
        assert_eq!(first, [64, 128, 256, 512, 1_024, 2_048, 4_096, 8_192, 16_384]);
        // 32,768, 65,536, 131,072, 196,608 and 262,144.
        assert_eq!((16_385..=262_144).filter(|&uses| replans_at(uses)).count(), 5);
        assert!(replans_at(196_608) && !replans_at(196_609));
    }
}
