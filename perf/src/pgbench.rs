//! The baseline: pgbench running a hand-written transfer transaction on the same PostgreSQL.

use std::process::Stdio;

use anyhow::Context;

/// A parsed pgbench run.
#[derive(Debug, Clone, Copy)]
pub struct PgbenchResult {
    pub tps: f64,
    pub latency_ms: f64,
    pub failed: u64,
    /// CPU seconds PostgreSQL used while pgbench ran (pgbench's own CPU not included).
    pub postgres_cpu_s: f64,
}

const SETUP: &str = "
DROP TABLE IF EXISTS bench_accounts, bench_history;
CREATE TABLE bench_accounts (id int PRIMARY KEY, balance bigint NOT NULL);
CREATE TABLE bench_history (id bigserial PRIMARY KEY, from_id int NOT NULL, to_id int NOT NULL, amount bigint NOT NULL, at timestamptz NOT NULL);
INSERT INTO bench_accounts SELECT g, 1000000000 FROM generate_series(1, {accounts}) g;
";

/// Debit one row, credit another, insert one history row: one transaction per transfer.
const COLD_SCRIPT: &str = "\\set from random(1, {accounts})
\\set to random(1, {accounts})
\\set amount random(1, 100)
BEGIN;
UPDATE bench_accounts SET balance = balance - :amount WHERE id = :from;
UPDATE bench_accounts SET balance = balance + :amount WHERE id = :to;
INSERT INTO bench_history (from_id, to_id, amount, at) VALUES (:from, :to, :amount, now());
END;
";

/// The same with every transfer crediting account 1 (the hot account).
const HOT_SCRIPT: &str = "\\set from random(2, {accounts})
\\set amount random(1, 100)
BEGIN;
UPDATE bench_accounts SET balance = balance - :amount WHERE id = :from;
UPDATE bench_accounts SET balance = balance + :amount WHERE id = 1;
INSERT INTO bench_history (from_id, to_id, amount, at) VALUES (:from, 1, :amount, now());
END;
";

pub async fn setup(database_url: &str, accounts: u32) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client.batch_execute(&SETUP.replace("{accounts}", &accounts.to_string())).await.context("pgbench tables")?;
    // VACUUM refuses to run inside the implicit transaction of a multi-statement batch.
    client.batch_execute("VACUUM ANALYZE bench_accounts").await.context("vacuum")?;
    Ok(())
}

/// Which transfers pgbench runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Random pairs of accounts.
    Cold,
    /// Every transfer to one account.
    Hot,
}

pub async fn run(
    database_url: &str,
    workload: Workload,
    accounts: u32,
    clients: u32,
    seconds: u32,
) -> anyhow::Result<PgbenchResult> {
    let hot = workload == Workload::Hot;
    let script = if hot { HOT_SCRIPT } else { COLD_SCRIPT }.replace("{accounts}", &accounts.to_string());
    let path = std::env::temp_dir().join(format!(
        "minipay-pgbench-{}-{}.sql",
        std::process::id(),
        if hot { "hot" } else { "cold" }
    ));
    std::fs::write(&path, script)?;
    let meter = crate::cpu::Meter::start();
    let output = tokio::process::Command::new("pgbench")
        .args(["-n", "-c", &clients.to_string(), "-j", "2", "-T", &seconds.to_string(), "--max-tries=20", "-f"])
        .arg(&path)
        .arg(database_url)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running pgbench (Debian package postgresql-contrib / postgresql-client)")?;
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(output.status.success(), "pgbench failed: {}{}", stdout, String::from_utf8_lossy(&output.stderr));
    let mut result = parse(&stdout).with_context(|| format!("unexpected pgbench output:\n{stdout}"))?;
    result.postgres_cpu_s = meter.finish().postgres;
    Ok(result)
}

fn number_after(text: &str, label: &str) -> Option<f64> {
    let line = text.lines().find(|line| line.trim_start().starts_with(label))?;
    let rest = line.split_once('=')?.1.trim();
    rest.split_whitespace().next()?.parse().ok()
}

fn parse(text: &str) -> Option<PgbenchResult> {
    let tps = number_after(text, "tps")?;
    let latency_ms = number_after(text, "latency average").unwrap_or(f64::NAN);
    let failed = text
        .lines()
        .find(|line| line.starts_with("number of failed transactions"))
        .and_then(|line| line.split(':').nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .unwrap_or(0);
    Some(PgbenchResult { tps, latency_ms, failed, postgres_cpu_s: 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pgbench_15_output() {
        let text = "transaction type: x.sql\nnumber of transactions actually processed: 1000\nnumber of failed transactions: 3 (0.3%)\nlatency average = 12.5 ms\ninitial connection time = 5 ms\ntps = 7800.123 (without initial connection time)\n";
        let result = parse(text).unwrap();
        assert!((result.tps - 7800.123).abs() < 1e-9);
        assert!((result.latency_ms - 12.5).abs() < 1e-9);
        assert_eq!(result.failed, 3);
    }
}
