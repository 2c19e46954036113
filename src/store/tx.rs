//! Error classification shared by every place that runs transactions, and the ledger gate.

/// Waits at the ledger writer's gate (see migrations/*_batch_gate.sql) in EXCLUSIVE mode until
/// the caller's transaction ends: whatever the transaction writes then never interleaves with a
/// ledger batch, and ids it takes from sequences commit in order with theirs. Every batch of
/// every process waits while it is held, so only jobs (chunk by chunk) and tools take it, never
/// a request (requests take [`share_ledger_gate`]). Take it as late as the work allows but
/// before any row lock a batch could wait for: see the lock order in `crate::ledger::writer`.
pub async fn wait_at_ledger_gate(conn: &mut sqlx::PgConnection) -> sqlx::Result<()> {
    sqlx::query("LOCK TABLE ledger_batch_gate IN EXCLUSIVE MODE").execute(conn).await?;
    Ok(())
}

/// Holds the ledger writer's gate in ROW SHARE mode until the caller's transaction ends, as
/// every ledger batch does: it stops no batch, and waits only for a holder of the EXCLUSIVE
/// mode (a job's chunk, a retried batch), which then waits for it. Take it before any row lock
/// a batch or a job could wait for, as [`wait_at_ledger_gate`].
pub async fn share_ledger_gate(conn: &mut sqlx::PgConnection) -> sqlx::Result<()> {
    sqlx::query("LOCK TABLE ledger_batch_gate IN ROW SHARE MODE").execute(conn).await?;
    Ok(())
}

/// SQLSTATEs after which the whole transaction can simply be tried again.
pub fn is_retryable(error: &sqlx::Error) -> bool {
    matches!(sqlstate(error).as_deref(), Some("40001") | Some("40P01"))
}

pub fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) => db.code().map(|code| code.into_owned()),
        _ => None,
    }
}

/// The constraint a database error names, for mapping violations at the call site.
pub fn violated_constraint(error: &sqlx::Error) -> Option<&str> {
    match error {
        sqlx::Error::Database(db) => db.constraint(),
        _ => None,
    }
}

/// "no partition of relation … found for row": time moved into a month nobody prepared.
pub fn is_missing_partition(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("23514") && db.message().starts_with("no partition of relation")
        }
        _ => false,
    }
}

/// Errors that say the database cannot be reached right now (as opposed to a bug).
pub fn is_connection_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            // Class 08: connection exceptions; 57P01..57P03: shutting down / cannot connect now.
            db.code().is_some_and(|code| code.starts_with("08") || code.starts_with("57P"))
        }
        _ => false,
    }
}
