//! The ledger invariants, checked against the database at any moment (`minipay audit`,
//! `GET /admin/audit`), and the agreement of the two statement stores ([`stores_agree`]).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::history::clickhouse::ClickHouse;
use crate::telemetry::Metrics;

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditReport {
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl AuditReport {
    pub fn new(checks: Vec<Check>) -> Self {
        AuditReport { ok: checks.iter().all(|check| check.ok), checks }
    }

    /// The report with one more check (and `ok` updated).
    pub fn with(mut self, check: Check) -> Self {
        self.checks.push(check);
        AuditReport::new(self.checks)
    }
}

/// The whole audit: every ledger invariant ([`run`]) and the agreement of PostgreSQL and
/// ClickHouse ([`stores_agree`]), counted in `metrics` and logged at error level when anything
/// fails. What `GET /admin/audit`, `minipay audit` and the daily `audit` job run.
pub async fn full(
    pool: &PgPool,
    clickhouse: &ClickHouse,
    now: DateTime<Utc>,
    daily_charge_limit_krw: i64,
    tz: chrono_tz::Tz,
    metrics: &Metrics,
) -> sqlx::Result<AuditReport> {
    let report = run(pool, daily_charge_limit_krw, tz).await?;
    let report = report.with(stores_agree(pool, clickhouse, now).await);
    metrics.audit_runs.add(1);
    metrics.audit_last_ok.set(i64::from(report.ok));
    if !report.ok {
        metrics.audit_failures.add(1);
        let failed: Vec<String> = report
            .checks
            .iter()
            .filter(|check| !check.ok)
            .map(|check| format!("{}: {}", check.name, check.detail))
            .collect();
        tracing::error!(failed = ?failed, "ledger audit failed");
    }
    Ok(report)
}

/// Runs every check in one REPEATABLE READ snapshot, so that movements committing meanwhile
/// cannot make a consistent ledger look inconsistent.
pub async fn run(pool: &PgPool, daily_charge_limit_krw: i64, tz: chrono_tz::Tz) -> sqlx::Result<AuditReport> {
    let mut tx = pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await?;
    let mut checks = balances_sum_to_zero(&mut tx).await?;
    checks.extend(no_user_account_below_zero(&mut tx).await?);
    checks.extend(accounts_match_ledger(&mut tx).await?);
    checks.extend(daily_charges_match_ledger(&mut tx, daily_charge_limit_krw, tz).await?);
    checks.push(transfers_name_their_accounts(&mut tx).await?);
    checks.push(settlements_name_their_parties(&mut tx).await?);
    tx.commit().await?;
    Ok(AuditReport::new(checks))
}

/// Posted balances sum to zero over all accounts, and pending debits equal pending credits.
async fn balances_sum_to_zero(tx: &mut PgConnection) -> sqlx::Result<Vec<Check>> {
    let mut checks = Vec::new();
    let (posted_sum, pending_debits, pending_credits): (i64, i64, i64) = sqlx::query_as(
        "SELECT COALESCE(sum(credits_posted - debits_posted), 0)::int8,
                COALESCE(sum(debits_pending), 0)::int8, COALESCE(sum(credits_pending), 0)::int8
           FROM accounts",
    )
    .fetch_one(&mut *tx)
    .await?;
    checks.push(Check {
        name: "posted-balances-sum-to-zero",
        ok: posted_sum == 0,
        detail: format!("sum of posted balances over all accounts = {posted_sum}"),
    });
    checks.push(Check {
        name: "pending-debits-equal-pending-credits",
        ok: pending_debits == pending_credits,
        detail: format!("pending debits {pending_debits}, pending credits {pending_credits}"),
    });

    Ok(checks)
}

/// No user account is below zero available.
async fn no_user_account_below_zero(tx: &mut PgConnection) -> sqlx::Result<Vec<Check>> {
    let mut checks = Vec::new();
    let negative: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM accounts WHERE kind <> 'system' AND credits_posted - debits_posted - debits_pending < 0",
    )
    .fetch_one(&mut *tx)
    .await?;
    checks.push(Check {
        name: "no-user-account-below-zero-available",
        ok: negative == 0,
        detail: format!("{negative} user accounts below zero available"),
    });

    Ok(checks)
}

/// Every transfer names existing accounts owned by the users it names (and an existing
/// settlement, if any): what foreign keys on `transfers` would promise, checked here instead
/// of per inserted row (see migrations/*_transfers_checked_by_the_writer.sql).
async fn transfers_name_their_accounts(tx: &mut PgConnection) -> sqlx::Result<Check> {
    let broken: Vec<i64> = sqlx::query_scalar(
        "SELECT t.id FROM transfers t
           LEFT JOIN accounts f ON f.id = t.from_account_id
           LEFT JOIN accounts r ON r.id = t.to_account_id
           LEFT JOIN settlements s ON s.id = t.settlement_id
          WHERE f.user_id IS DISTINCT FROM t.from_user_id OR r.user_id IS DISTINCT FROM t.to_user_id
             OR (t.settlement_id IS NOT NULL AND s.id IS NULL)
          ORDER BY t.id LIMIT 20",
    )
    .fetch_all(&mut *tx)
    .await?;
    Ok(Check {
        name: "transfers-name-their-accounts",
        ok: broken.is_empty(),
        detail: format!("transfers naming a missing account, owner or settlement (first 20): {broken:?}"),
    })
}

/// Every settlement names an existing requester, and every share an existing settlement, user
/// and (once paid) transfer: what foreign keys on `settlements` and `settlement_shares` would
/// promise, checked here instead of per inserted row (see
/// migrations/*_settlements_checked_by_the_store.sql).
async fn settlements_name_their_parties(tx: &mut PgConnection) -> sqlx::Result<Check> {
    let broken: Vec<String> = sqlx::query_scalar(
        "(SELECT 'settlement ' || s.id FROM settlements s
            LEFT JOIN users u ON u.id = s.requester_id
           WHERE u.id IS NULL ORDER BY s.id LIMIT 20)
         UNION ALL
         (SELECT 'share ' || sh.settlement_id || '/' || sh.position FROM settlement_shares sh
            LEFT JOIN settlements s ON s.id = sh.settlement_id
            LEFT JOIN users u ON u.id = sh.user_id
            LEFT JOIN transfers t ON t.id = sh.transfer_id
           WHERE s.id IS NULL OR u.id IS NULL OR (sh.transfer_id IS NOT NULL AND t.id IS NULL)
           ORDER BY sh.settlement_id, sh.position LIMIT 20)",
    )
    .fetch_all(&mut *tx)
    .await?;
    Ok(Check {
        name: "settlements-name-their-parties",
        ok: broken.is_empty(),
        detail: format!(
            "settlements and shares naming a missing user, settlement or transfer (first 20 each): {broken:?}"
        ),
    })
}

/// Every account's columns are the sum of its ledger rows (plus what retention archived).
async fn accounts_match_ledger(tx: &mut PgConnection) -> sqlx::Result<Vec<Check>> {
    let mut checks = Vec::new();
    let mismatched: Vec<i64> = sqlx::query_scalar(
        "WITH movements AS (
            SELECT debit_account_id AS account_id,
                   sum(amount) FILTER (WHERE flags IN ('posted', 'post_pending')) AS debits_posted,
                   0::numeric AS credits_posted,
                   sum(CASE flags WHEN 'pending' THEN amount WHEN 'posted' THEN 0 ELSE -amount END) AS debits_pending,
                   0::numeric AS credits_pending
              FROM ledger_transfers GROUP BY debit_account_id
            UNION ALL
            SELECT credit_account_id, 0, sum(amount) FILTER (WHERE flags IN ('posted', 'post_pending')),
                   0, sum(CASE flags WHEN 'pending' THEN amount WHEN 'posted' THEN 0 ELSE -amount END)
              FROM ledger_transfers GROUP BY credit_account_id
            UNION ALL
            SELECT account_id, debits_posted, credits_posted, debits_pending, credits_pending
              FROM ledger_archived_totals
         ), totals AS (
            SELECT account_id, COALESCE(sum(debits_posted), 0) AS debits_posted,
                   COALESCE(sum(credits_posted), 0) AS credits_posted,
                   COALESCE(sum(debits_pending), 0) AS debits_pending,
                   COALESCE(sum(credits_pending), 0) AS credits_pending
              FROM movements GROUP BY account_id
         )
         SELECT a.id FROM accounts a LEFT JOIN totals t ON t.account_id = a.id
          WHERE a.debits_posted <> COALESCE(t.debits_posted, 0)
             OR a.credits_posted <> COALESCE(t.credits_posted, 0)
             OR a.debits_pending <> COALESCE(t.debits_pending, 0)
             OR a.credits_pending <> COALESCE(t.credits_pending, 0)
          ORDER BY a.id LIMIT 20",
    )
    .fetch_all(&mut *tx)
    .await?;
    checks.push(Check {
        name: "accounts-match-ledger",
        ok: mismatched.is_empty(),
        detail: if mismatched.is_empty() {
            "every account equals the sum of its ledger transfers".to_owned()
        } else {
            format!("accounts differing from their ledger transfers: {mismatched:?}")
        },
    });

    Ok(checks)
}

/// Each daily counter equals the top-ups booked for its business day, and stays in the limit.
async fn daily_charges_match_ledger(
    tx: &mut PgConnection,
    daily_charge_limit_krw: i64,
    tz: chrono_tz::Tz,
) -> sqlx::Result<Vec<Check>> {
    let mut checks = Vec::new();
    // Each daily counter equals the top-ups booked for that business day (an installment's
    // top-up counts for the installment's day, even when it is booked later), and stays in the
    // limit.
    let (counter_mismatches, over_limit): (i64, i64) = sqlx::query_as(
        "WITH booked AS (
            SELECT a.user_id, COALESCE(l.charged_for, (l.created_at AT TIME ZONE $2)::date) AS business_date,
                   sum(l.amount) AS amount
              FROM ledger_transfers l JOIN accounts a ON a.id = l.credit_account_id
             WHERE l.debit_account_id = 1 AND l.kind = 'charge' AND a.user_id IS NOT NULL
             GROUP BY 1, 2
         ), first_day AS (
            SELECT COALESCE(min((created_at AT TIME ZONE $2)::date), 'infinity'::date) AS day FROM ledger_transfers
         )
         SELECT count(*) FILTER (WHERE COALESCE(d.used, 0) <> COALESCE(b.amount, 0))::int8,
                count(*) FILTER (WHERE d.used > $1)::int8
           FROM daily_charges d
           FULL JOIN booked b ON b.user_id = d.user_id AND b.business_date = d.business_date
          WHERE COALESCE(d.business_date, b.business_date) >= (SELECT day FROM first_day)",
    )
    .bind(daily_charge_limit_krw)
    .bind(tz.name())
    .fetch_one(&mut *tx)
    .await?;
    checks.push(Check {
        name: "daily-charges-match-ledger",
        ok: counter_mismatches == 0,
        detail: format!("{counter_mismatches} (user, business day) counters differ from the top-ups booked"),
    });
    checks.push(Check {
        name: "daily-charges-within-limit",
        ok: over_limit == 0,
        detail: format!("{over_limit} (user, business day) counters above {daily_charge_limit_krw}"),
    });

    Ok(checks)
}

/// The name of the [`stores_agree`] check.
pub const STORES_AGREE: &str = "clickhouse-entries-match-postgres";
/// PostgreSQL's `statement_entries` against ClickHouse's, per UTC day over the last year:
/// see [`crate::history::agreement`].
pub async fn stores_agree(pool: &PgPool, clickhouse: &ClickHouse, now: DateTime<Utc>) -> Check {
    let agreement = crate::history::agreement::stores_agree(pool, clickhouse, now).await;
    Check { name: STORES_AGREE, ok: agreement.ok, detail: agreement.detail }
}
