//! `perf/run`: every benchmark in one run and one report. The pgbench baseline and the HTTP
//! transfers (`write`), naive vs tuned history on a seeded year (`history`), the user
//! scenarios stepped up until p99 reaches the limit or a request fails (`scenarios`), and the
//! 04:00 / 08:00 batch jobs quiet and under traffic; then `perf/results/<date>/report.md` with
//! PNG charts beside it.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use crate::charts::{LineChart, Series};
use crate::history::{self, percentile};
use crate::load::{LoadReport, ScenarioReport, Shape};
use crate::scenarios::{self, Admin, BatchWindows, Population, ReadPath, StepSearch};
use crate::server::Server;
use crate::write::{self, create_users, database_url_for, recreate_database, times, WriteOutcome};

#[derive(clap::Args, Debug)]
pub struct Options {
    /// A few minutes: shorter steps and phases, a 1,000,000-entry history seed, fewer savings.
    #[arg(long)]
    quick: bool,
    /// Virtual-user steps of each scenario, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,5,10,25,50,100,200")]
    steps: Vec<usize>,
    /// Measured seconds of each step (default 15, --quick 5).
    #[arg(long)]
    step_seconds: Option<u64>,
    /// The p99 latency a step must stay under, with no errors, to hold.
    #[arg(long, default_value_t = 100.0)]
    p99_limit_ms: f64,
    /// History entries to seed (default 10,000,000, --quick 1,000,000); an identical seed from
    /// an earlier run is reused.
    #[arg(long)]
    entries: Option<u64>,
    /// Savings accounts the batch jobs work on (default 100,000, --quick 20,000).
    #[arg(long)]
    savings_accounts: Option<i64>,
    /// Pending transfers created to expire on each of the quiet and the traffic day of the
    /// batch windows (default 5,000, --quick 2,000; 0 leaves pending-expiry without work).
    #[arg(long)]
    pending_transfers: Option<usize>,
    /// Interleaved rounds of the write benchmark (pgbench cold, HTTP cold, pgbench hot, HTTP
    /// hot); its ratios are the median over them.
    #[arg(long, default_value_t = 3)]
    write_rounds: u32,
    /// Prefix of the databases the run recreates (`<prefix>_bench`, `<prefix>_history_bench`,
    /// `<prefix>_scenarios`), to keep runs on one PostgreSQL and ClickHouse apart.
    #[arg(long, default_value = "minipay")]
    databases: String,
    /// Where the dated report directory goes.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    results: PathBuf,
    /// Run only these parts, comma-separated: `write`, `history`, `batch-windows`, or scenario
    /// names (`statement-reader-tuned`, `statement-reader-naive`, `daily-user`, `payday-crowd`,
    /// `settlement-evening`). The statement readers need the history seed, so they run the
    /// history part too. The report says what was left out.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// The scenario servers (statement readers, transactional scenarios) read through the hot
    /// standby: `MINIPAY_DATABASE_REPLICA_URL` on the standby named by `DATABASE_REPLICA_URL`
    /// (`perf/run --standby` starts it with `scripts/services up standby`).
    #[arg(long)]
    standby: bool,
}

/// Every part of a run, in run order: what `--only` may name.
const PARTS: [&str; 8] = [
    "write",
    "history",
    "statement-reader-tuned",
    "statement-reader-naive",
    "daily-user",
    "payday-crowd",
    "settlement-evening",
    "batch-windows",
];

/// A part's name for `--only`: the scenario's, in lower case with dashes.
fn slug(name: &str) -> String {
    name.replace(", ", "-").replace(' ', "-")
}

/// The parts a run does (`--only`; all when empty).
struct Parts(Vec<String>);

impl Parts {
    fn of(only: &[String]) -> anyhow::Result<Parts> {
        for part in only {
            anyhow::ensure!(
                PARTS.contains(&part.as_str()),
                "--only: unknown part {part:?}; parts: {}",
                PARTS.join(", ")
            );
        }
        Ok(Parts(only.to_vec()))
    }

    fn has(&self, part: &str) -> bool {
        self.0.is_empty() || self.0.iter().any(|only| only == part)
    }

    fn any(&self, parts: &[&str]) -> bool {
        parts.iter().any(|part| self.has(part))
    }

    /// The parts left out, in run order (none for a full run).
    fn left_out(&self) -> Vec<&'static str> {
        PARTS.iter().copied().filter(|part| !self.has(part)).collect()
    }
}

/// With `--standby`, makes the servers started from now on read through the standby's copy of
/// `database`; the servers inherit this process's environment.
fn read_through_standby(standby: bool, database: &str) -> anyhow::Result<()> {
    if standby {
        let url = database_url_for(&env("DATABASE_REPLICA_URL")?, database);
        // Set between server starts; std's own reads of the environment take the same lock.
        std::env::set_var("MINIPAY_DATABASE_REPLICA_URL", url);
    }
    Ok(())
}

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set: run perf/run, which starts the services"))
}

struct Machine {
    cores: usize,
    cpu: String,
    memory: String,
    load_before: String,
    load_after: String,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn load_average() -> String {
    read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn machine() -> Machine {
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, name)| name.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let memory = read("/proc/meminfo")
        .lines()
        .find(|line| line.starts_with("MemTotal"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map(|kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".to_owned());
    Machine {
        cores: std::thread::available_parallelism().map(usize::from).unwrap_or(1),
        cpu,
        memory,
        load_before: load_average(),
        load_after: String::new(),
    }
}

struct Phase {
    started: Instant,
    total: usize,
    done: usize,
}

impl Phase {
    fn next(&mut self, what: &str) {
        self.done += 1;
        eprintln!(
            "\n== [{}/{}] {what} ({:.0} s into the run)",
            self.done,
            self.total,
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// The sizes a run uses: the options, with the defaults of a full or a `--quick` run.
struct Sizes {
    quick: bool,
    step_seconds: u64,
    entries: u64,
    savings: i64,
    pending: usize,
}

impl Sizes {
    fn of(options: &Options) -> Sizes {
        let quick = options.quick;
        Sizes {
            quick,
            step_seconds: options.step_seconds.unwrap_or(if quick { 5 } else { 15 }),
            entries: options.entries.unwrap_or(if quick { 1_000_000 } else { 10_000_000 }),
            savings: options.savings_accounts.unwrap_or(if quick { 20_000 } else { 100_000 }),
            pending: options.pending_transfers.unwrap_or(if quick { 2_000 } else { 5_000 }),
        }
    }

    fn shape(&self) -> Shape {
        Shape {
            users: 0,
            ramp: Duration::from_secs(if self.quick { 1 } else { 3 }),
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(self.step_seconds),
        }
    }
}

/// Makes a scenario's iteration for a population of users.
type ScenarioMaker = fn(Arc<Population>) -> scenarios::Iteration;

/// What the transactional part of the run measured.
struct Transactional {
    windows: Option<BatchWindows>,
    audit: Value,
    /// The ledger writer's batches during each transactional scenario.
    ledger: Vec<(&'static str, String)>,
}

/// What the history part measured, for the report.
struct HistoryResults {
    rows: Vec<(String, usize, history::Samples)>,
    fallbacks: u64,
    mismatches: usize,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let sizes = Sizes::of(&options);
    let parts = Parts::of(&options.only)?;
    anyhow::ensure!(
        !options.steps.is_empty() && options.steps.iter().all(|&users| users > 0),
        "--steps must be positive"
    );
    if options.standby {
        env("DATABASE_REPLICA_URL").context("--standby")?;
    }
    let command = std::iter::once("perf/run".to_owned()).chain(std::env::args().skip(2)).collect::<Vec<_>>().join(" ");
    let mut machine = machine();
    let date = chrono::Local::now().format("%Y-%m-%d").to_string();
    let out = options.results.join(&date);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut phase = Phase { started: Instant::now(), total: 6, done: 0 };
    eprintln!(
        "perf/run{}: steps {:?} users, {} s a step, p99 limit {} ms; parts: {}; report in {}",
        if sizes.quick { " --quick" } else { "" },
        options.steps,
        sizes.step_seconds,
        options.p99_limit_ms,
        if options.only.is_empty() { "all".to_owned() } else { options.only.join(", ") },
        out.display()
    );
    let shape = sizes.shape();

    let writes = if parts.has("write") {
        phase.next(&format!(
            "pgbench baseline and HTTP transfers, cold and hot, in {} interleaved rounds",
            options.write_rounds
        ));
        Some(write::measure(&write_options(&options, &sizes)).await?)
    } else {
        phase.next("pgbench baseline and HTTP transfers: left out");
        None
    };

    let client = reqwest::Client::builder().pool_max_idle_per_host(1024).timeout(Duration::from_secs(30)).build()?;
    let mut server_memory = Vec::new();
    let (history, mut searches) =
        history_part(&options, &sizes, &parts, &mut phase, &client, &mut server_memory).await?;

    let transactional = if parts.any(&PARTS[4..]) {
        Some(transactional(&options, &sizes, &parts, &mut phase, &client, &mut searches, &mut server_memory).await?)
    } else {
        None
    };
    machine.load_after = load_average();

    let report = Report {
        command: &command,
        quick: sizes.quick,
        standby: options.standby,
        left_out: parts.left_out(),
        machine: &machine,
        shape,
        p99_limit_ms: options.p99_limit_ms,
        writes: writes.as_ref(),
        entries: sizes.entries,
        history: history.as_ref(),
        searches: &searches,
        transactional: transactional.as_ref(),
        savings: sizes.savings,
        server_memory: &server_memory,
        minutes: phase.started.elapsed().as_secs_f64() / 60.0,
    };
    report.charts(&out)?;
    let path = out.join("report.md");
    std::fs::write(&path, report.markdown())?;
    eprintln!("\nreport: {}", path.display());
    println!("{}", report.summary());
    anyhow::ensure!(
        writes.as_ref().is_none_or(WriteOutcome::audit_ok),
        "the ledger audit failed after the write benchmark"
    );
    if let Some(audit) = transactional.as_ref().map(|t| &t.audit) {
        anyhow::ensure!(audit["ok"] == Value::Bool(true), "the ledger audit failed after the scenarios: {audit}");
    }
    Ok(())
}

/// The history part and the statement readers on its server, when the parts ask for them.
async fn history_part(
    options: &Options,
    sizes: &Sizes,
    parts: &Parts,
    phase: &mut Phase,
    client: &reqwest::Client,
    server_memory: &mut Vec<(String, crate::server::Memory)>,
) -> anyhow::Result<(Option<HistoryResults>, Vec<StepSearch>)> {
    if !parts.any(&PARTS[1..4]) {
        phase.next("history: left out");
        phase.next("statement readers: left out");
        return Ok((None, Vec::new()));
    }
    phase.next(&format!("history: {} entries, naive vs tuned one request at a time", sizes.entries));
    let history_options = history_options(options, sizes);
    read_through_standby(options.standby, &history_options.database)?;
    let history = history::measure(&history_options).await?;

    phase.next("statement readers under load: tuned, then naive");
    let searches = statement_readers(options, parts, sizes.shape(), client, &history).await;
    server_memory.push((
        format!(
            "history server, after the statement readers (steps up to {} users)",
            options.steps.iter().max().unwrap_or(&0)
        ),
        history.server.memory(),
    ));
    eprintln!("  server memory after the statement readers: {}", history.server.memory());
    let results =
        HistoryResults { rows: history.rows, fallbacks: history.fallbacks, mismatches: history.mismatches.len() };
    history.server.stop().await;
    Ok((Some(results), searches))
}

fn write_options(options: &Options, sizes: &Sizes) -> write::Options {
    let quick = sizes.quick;
    write::Options {
        clients: 100,
        seconds: if quick { 3 } else { 5 },
        rounds: options.write_rounds,
        warmup_seconds: if quick { 1 } else { 2 },
        users: if quick { 200 } else { 1000 },
        pgbench_accounts: 10_000,
        idempotency_keys: false,
        only: None,
        server_env: Vec::new(),
        processes: 1,
        database: format!("{}_bench", options.databases),
    }
}

fn history_options(options: &Options, sizes: &Sizes) -> history::Options {
    let quick = sizes.quick;
    history::Options {
        entries: sizes.entries,
        users: 100_000,
        hot_percent: 5,
        heavy_accounts: 4,
        heavy_percent: 2,
        reuse_seed: true,
        database: format!("{}_history_bench", options.databases),
        accounts: if quick { 10 } else { 30 },
        rounds: 2,
        hot_samples: if quick { 5 } else { 15 },
        heavy_rounds: if quick { 2 } else { 4 },
        deep_percent: 90,
        limit: 50,
        cluster: false,
    }
}

/// Steps the statement readers up on the history server: tuned, then naive (those the parts
/// name).
async fn statement_readers(
    options: &Options,
    parts: &Parts,
    shape: Shape,
    client: &reqwest::Client,
    history: &history::HistoryOutcome,
) -> Vec<StepSearch> {
    let readers: Arc<Vec<scenarios::Statement>> =
        Arc::new(history.hot_accounts.iter().chain(&history.heavy_accounts).map(scenarios::Statement::from).collect());
    let mut searches: Vec<StepSearch> = Vec::new();
    for (name, read_path) in
        [("statement reader, tuned", ReadPath::Tuned), ("statement reader, naive", ReadPath::Naive)]
    {
        if !parts.has(&slug(name)) {
            continue;
        }
        let (client, base, readers, limit) =
            (client.clone(), history.server.base.clone(), readers.clone(), history.limit);
        searches.push(
            scenarios::step_search(name, &options.steps, shape, options.p99_limit_ms, || {
                scenarios::statement_reader(client.clone(), base.clone(), readers.clone(), limit, read_path)
            })
            .await,
        );
    }
    searches
}

/// The transactional scenarios on a fresh database, then the batch windows, the outbox
/// drained and the audit (those the parts name; the audit always).
async fn transactional(
    options: &Options,
    sizes: &Sizes,
    parts: &Parts,
    phase: &mut Phase,
    client: &reqwest::Client,
    searches: &mut Vec<StepSearch>,
    server_memory: &mut Vec<(String, crate::server::Memory)>,
) -> anyhow::Result<Transactional> {
    phase.next("transactional scenarios: daily users, payday, settlement evening");
    read_through_standby(options.standby, &format!("{}_scenarios", options.databases))?;
    let (server, db) = scenario_server(options, sizes.savings).await?;
    server_memory.push(("transactional server, idle, just started".to_owned(), server.memory()));
    let pool = options.steps.iter().copied().max().unwrap_or(1) + 4;
    eprintln!("  signing up {pool} users");
    // A third of the daily limit: daily users top up and the clock stands still.
    let users = create_users(client, &server.base, pool, "user", 1_000_000).await?;
    let receiver = create_users(client, &server.base, 1, "payday", 1_000_000).await?.pop().context("receiver")?;
    let population = Arc::new(Population {
        client: client.clone(),
        base: server.base.clone(),
        password: write::PASSWORD,
        users,
        receiver,
    });
    let scenario_makers: [(&'static str, ScenarioMaker); 3] = [
        ("daily user", scenarios::daily_user),
        ("payday crowd", scenarios::payday),
        ("settlement evening", scenarios::settlement),
    ];
    let shape = sizes.shape();
    let mut ledger = Vec::new();
    for (name, make) in scenario_makers.into_iter().filter(|(name, _)| parts.has(&slug(name))) {
        let population = population.clone();
        settle_in(name, make(population.clone()), &db).await?;
        let before = metrics(client, &server.base).await;
        searches.push(
            scenarios::step_search(name, &options.steps, shape, options.p99_limit_ms, || make(population.clone()))
                .await,
        );
        ledger.push((name, ledger_batches(&before, &metrics(client, &server.base).await)));
        server_memory.push((
            format!("after {name} (steps up to {} users)", options.steps.iter().max().unwrap_or(&0)),
            server.memory(),
        ));
        eprintln!("  server memory after {name}: {}; {}", server.memory(), ledger.last().map_or("", |l| &l.1));
    }
    let admin = Admin { client: reqwest::Client::new(), base: server.base.clone() };
    let windows = if parts.has("batch-windows") {
        let traffic_users = searches
            .iter()
            .find(|search| search.name == "daily user")
            .and_then(|search| search.sustained)
            .unwrap_or(options.steps[0]);
        phase.next(&format!(
            "batch windows: interest (04:00), pending-expiry (06:00) and installments (08:00), quiet and with \
             {traffic_users} daily users"
        ));
        // No client timeout: a job over many accounts may take minutes.
        Some(scenarios::batch_windows(&admin, population.clone(), traffic_users, sizes.pending).await?)
    } else {
        phase.next("batch windows: left out");
        None
    };

    phase.next("audit and report");
    drain_outbox(&db).await?;
    let audit = admin.audit().await?;
    let end = if windows.is_some() { "after the batch windows (with daily users)" } else { "after the scenarios" };
    server_memory.push((end.to_owned(), server.memory()));
    server.stop().await;
    Ok(Transactional { windows, audit, ledger })
}

/// Puts the scenario's tables in the state of a service that has been running: the scenario
/// runs unmeasured for a few seconds at a few users, then the database is analyzed, as
/// autovacuum does within a minute of a table filling. Without it the server's prepared
/// statements keep the plans PostgreSQL made while the scenario's tables were still empty (it
/// replans a prepared statement only when a table's statistics change), and the first minute
/// of a scenario measures those plans on growing tables: a split bill's statements read every
/// share and settlement there is.
async fn settle_in(name: &str, iteration: scenarios::Iteration, db: &tokio_postgres::Client) -> anyhow::Result<()> {
    let shape = Shape { users: 5, ramp: Duration::ZERO, warmup: Duration::ZERO, duration: Duration::from_secs(3) };
    let report = crate::load::run_scenario(shape, &format!("{name}, settling in"), iteration).await;
    eprintln!("  {name}: settled in with {} unmeasured requests, then ANALYZE", report.total.requests);
    db.batch_execute("ANALYZE").await.context("analyzing the scenarios' database")
}

/// The server's /metrics text (empty when it does not answer).
async fn metrics(client: &reqwest::Client, base: &str) -> String {
    match client.get(format!("{base}/metrics")).send().await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// A metric's value in /metrics text (0 when absent).
fn metric_value(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.split_whitespace().next() == Some(name))
        .and_then(|line| line.split_whitespace().last())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// The ledger writer's batches between two /metrics texts.
fn ledger_batches(before: &str, after: &str) -> String {
    let delta = |name: &str| metric_value(after, name) - metric_value(before, name);
    let (batches, commands) = (delta("minipay_ledger_batches_total"), delta("minipay_ledger_commands_total"));
    format!(
        "ledger batches: {batches:.0} committed, {commands:.0} commands, mean size {:.1} (max so far {}), \
         retries {:.0}, commands run again {:.0}",
        delta("minipay_ledger_batch_size_sum") / delta("minipay_ledger_batch_size_count").max(1.0),
        metric_value(after, "minipay_ledger_batch_size_max"),
        delta("minipay_ledger_batch_retries_total"),
        delta("minipay_ledger_commands_again_total"),
    )
}

/// A server on a fresh scenario database with `savings` savings accounts, and a connection to
/// that database.
async fn scenario_server(options: &Options, savings: i64) -> anyhow::Result<(Server, tokio_postgres::Client)> {
    let admin_url = env("DATABASE_URL")?;
    let clickhouse_url = env("CLICKHOUSE_URL")?;
    let database = &format!("{}_scenarios", options.databases);
    anyhow::ensure!(
        database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "--databases must be a plain identifier"
    );
    let scenario_url = database_url_for(&admin_url, database);
    recreate_database(&admin_url, &clickhouse_url, database).await?;
    let server = Server::start(
        &scenario_url,
        database,
        &[
            ("MINIPAY_CLOCK", "manual".to_owned()),
            ("MINIPAY_SCHEDULER", "off".to_owned()),
            // The admin job runs are timed through HTTP: they must not hit the 10 s request
            // timeout (the job would go on, but the answer would be a 503).
            ("MINIPAY_REQUEST_TIMEOUT_MS", "900000".to_owned()),
        ],
    )
    .await?;
    crate::cpu::watch_stores(&scenario_url, database, &clickhouse_url).await?;
    let (db, connection) = tokio_postgres::connect(&scenario_url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    eprintln!("  seeding {savings} savings accounts for the batch jobs");
    for sql in crate::jobs::interest_seed(savings, (savings / 10).max(1), 1) {
        db.batch_execute(&sql).await.context("seeding savings accounts")?;
    }
    // Installments done through today, so that the first window owes one date, not every day
    // since the seed's opening date.
    db.batch_execute(
        "UPDATE accounts SET installment_through = (now() AT TIME ZONE 'Asia/Seoul')::date \
         WHERE kind = 'savings' AND product = 'fixed'",
    )
    .await
    .context("marking installments done")?;
    Ok((server, db))
}

/// Waits (up to 5 minutes) until the forwarder has emptied the statement outbox.
async fn drain_outbox(db: &tokio_postgres::Client) -> anyhow::Result<()> {
    let drained = Instant::now();
    loop {
        let left: i64 = db.query_one("SELECT count(*) FROM statement_outbox", &[]).await?.get(0);
        if left == 0 || drained.elapsed() > Duration::from_secs(300) {
            return Ok(());
        }
        eprintln!("  outbox: {left} entries left");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

struct Report<'a> {
    command: &'a str,
    quick: bool,
    /// The scenario servers read through the hot standby.
    standby: bool,
    /// The parts `--only` left out.
    left_out: Vec<&'static str>,
    machine: &'a Machine,
    shape: Shape,
    p99_limit_ms: f64,
    writes: Option<&'a WriteOutcome>,
    entries: u64,
    history: Option<&'a HistoryResults>,
    searches: &'a [StepSearch],
    transactional: Option<&'a Transactional>,
    savings: i64,
    /// The servers' memory at points of the run.
    server_memory: &'a [(String, crate::server::Memory)],
    minutes: f64,
}

fn ms(value: f64) -> String {
    if value.is_nan() {
        "–".to_owned()
    } else if value < 10.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.1}")
    }
}

/// The load a scenario is to sustain, where one is set.
fn sustained_goal(scenario: &str) -> Option<usize> {
    match scenario {
        "daily user" => Some(50),
        "statement reader, tuned" | "settlement evening" => Some(100),
        _ => None,
    }
}

fn goal(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**not met**"
    }
}

/// What a batch job processed: one number when the quiet and the traffic day did the same.
fn items(job: &scenarios::JobRun) -> String {
    if job.processed == job.processed_under_traffic {
        job.processed.to_string()
    } else {
        format!("{} quiet / {} under traffic", job.processed, job.processed_under_traffic)
    }
}

fn latency_cells(report: &LoadReport) -> String {
    format!(
        "{} | {} | {}",
        ms(report.percentile_ms(0.5)),
        ms(report.percentile_ms(0.95)),
        ms(report.percentile_ms(0.99))
    )
}

impl Report<'_> {
    fn row(&self, prefix: &str) -> Option<&history::Samples> {
        self.history?.rows.iter().find(|(label, _, _)| label.starts_with(prefix)).map(|(_, _, samples)| samples)
    }

    fn deep_ratio(&self, prefix: &str) -> Option<(f64, f64, f64)> {
        let samples = self.row(prefix)?;
        let (naive, tuned) = (percentile(&samples.naive_ms, 0.5), percentile(&samples.tuned_ms, 0.5));
        Some((naive, tuned, naive / tuned))
    }

    /// The batch jobs' runs, when the batch windows ran.
    fn jobs(&self) -> &[scenarios::JobRun] {
        self.transactional.and_then(|t| t.windows.as_ref()).map_or(&[], |windows| &windows.jobs)
    }

    /// The few lines printed at the end of the run.
    fn summary(&self) -> String {
        let mut text = String::new();
        if let Some(writes) = self.writes {
            let ratios = writes.median_ratios();
            let _ = writeln!(
                text,
                "transfers vs pgbench, median of {} interleaved rounds: cold {}, hot {} (goal >= 2.0x); \
                 hot vs pgbench cold {}",
                writes.rounds.len(),
                times(ratios.cold),
                times(ratios.hot),
                times(ratios.hot_vs_pg_cold)
            );
        }
        for prefix in ["hot: deep", "heavy: deep"] {
            if let Some((_, _, ratio)) = self.deep_ratio(prefix) {
                let _ = writeln!(text, "history {prefix} page, naive/tuned p50: {ratio:.0}x (goal >= 50x)");
            }
        }
        for job in self.jobs() {
            let _ = writeln!(
                text,
                "{} ({}, {}): quiet {:.2} s, under traffic {:.2} s",
                job.job,
                job.window,
                items(job),
                job.quiet.as_secs_f64(),
                job.under_traffic.as_secs_f64()
            );
        }
        for search in self.searches {
            let _ = writeln!(
                text,
                "{}: sustains {}",
                search.name,
                search.sustained.map_or("no step".to_owned(), |users| format!("{users} users"))
            );
        }
        let _ = write!(
            text,
            "audit ok: {} (write bench), {} (scenarios)",
            self.writes.map_or("not run".to_owned(), |w| w.audit_ok().to_string()),
            self.transactional.map_or("not run".to_owned(), |t| t.audit["ok"].to_string())
        );
        text
    }

    fn charts(&self, out: &std::path::Path) -> anyhow::Result<()> {
        let series = |value: &dyn Fn(&ScenarioReport) -> f64, filter: &dyn Fn(&str) -> bool| -> Vec<Series> {
            self.searches
                .iter()
                .filter(|search| filter(search.name))
                .map(|search| Series {
                    name: search.name.to_owned(),
                    points: search.steps.iter().map(|step| (step.shape.users as f64, value(step))).collect(),
                })
                .collect()
        };
        let all = |_: &str| true;
        if self.searches.is_empty() {
            return Ok(());
        }
        LineChart {
            title: "Throughput against load",
            x_label: "virtual users",
            y_label: "requests/s (successful)",
            series: series(&|step| step.total.throughput(), &all),
            threshold: None,
            log_y: false,
        }
        .draw(&out.join("throughput.png"))?;
        LineChart {
            title: "p99 latency against load",
            x_label: "virtual users",
            y_label: "p99 ms (log scale)",
            series: series(&|step| step.total.percentile_ms(0.99), &all),
            threshold: Some((self.p99_limit_ms, "p99 limit")),
            log_y: true,
        }
        .draw(&out.join("p99.png"))?;
        let statement = |name: &str| name.starts_with("statement");
        let mut history = series(&|step| step.total.percentile_ms(0.5), &statement);
        for line in &mut history {
            line.name = format!("{} p50", line.name);
        }
        history.extend(series(&|step| step.total.percentile_ms(0.99), &statement).into_iter().map(|mut line| {
            line.name = format!("{} p99", line.name);
            line
        }));
        if history.is_empty() {
            return Ok(());
        }
        LineChart {
            title: "Statement readers (first + deep page): naive vs tuned",
            x_label: "virtual users",
            y_label: "ms (log scale)",
            series: history,
            threshold: Some((self.p99_limit_ms, "p99 limit")),
            log_y: true,
        }
        .draw(&out.join("history.png"))?;
        Ok(())
    }

    fn markdown(&self) -> String {
        let mut md = String::new();
        self.md_header(&mut md);
        self.md_summary(&mut md);
        self.md_sustained(&mut md);
        self.md_transfers(&mut md);
        self.md_history(&mut md);
        self.md_windows(&mut md);
        self.md_scenarios(&mut md);
        self.md_memory(&mut md);
        self.md_audit(&mut md);
        md
    }

    /// The title, the command and the machine.
    fn md_header(&self, md: &mut String) {
        let m = self.machine;
        let _ = writeln!(md, "# minipay performance report{}\n", if self.quick { " (quick run)" } else { "" });
        let _ = writeln!(md, "Produced by one run of:\n\n```\n{}\n```\n", self.command);
        let _ = writeln!(
            md,
            "Machine: {} cores ({}), {} memory; load average (1, 5, 15 min) {} at the start, {} at the end; \
             the run took {:.1} minutes. The machine is shared, so figures are compared with baselines \
             measured in the same run rather than in absolute terms.\n",
            m.cores, m.cpu, m.memory, m.load_before, m.load_after, self.minutes
        );
        if self.standby {
            let _ = writeln!(
                md,
                "Read path: the scenario servers (statement readers, transactional scenarios) ran with \
                 `MINIPAY_DATABASE_REPLICA_URL` on a streaming-replication hot standby of the PostgreSQL \
                 (`scripts/services up standby`): plain reads go to the standby once it has replayed the \
                 primary's position at their arrival (see docs/scaling.md). The write benchmark uses the \
                 primary only.\n"
            );
        }
        if !self.left_out.is_empty() {
            let _ = writeln!(
                md,
                "Parts left out of this run (`--only`): {}. Their sections and goals are not in this report.\n",
                self.left_out.join(", ")
            );
        }
    }

    /// The summary table: every goal, met or not.
    fn md_summary(&self, md: &mut String) {
        let _ = writeln!(md, "## Summary\n");
        let _ = writeln!(md, "| measure | minipay | baseline | ratio | goal |");
        let _ = writeln!(md, "|---|---:|---:|---:|---|");
        self.md_summary_writes(md);
        for (prefix, label) in [("hot: deep", "hot account"), ("heavy: deep", "heavy accounts")] {
            if let Some((naive, tuned, ratio)) = self.deep_ratio(prefix) {
                let _ = writeln!(
                    md,
                    "| history deep page (90%), {label}, p50 ms: tuned vs naive | {} | {} | {ratio:.0}x | ≥ 50x: {} |",
                    ms(tuned),
                    ms(naive),
                    goal(ratio >= 50.0)
                );
            }
        }
        for (prefix, label) in [("hot: summary, 30", "30 days"), ("hot: summary, whole", "whole year")] {
            if let Some((naive, tuned, ratio)) = self.deep_ratio(prefix) {
                let _ = writeln!(
                    md,
                    "| history summary, hot account, {label}, p50 ms: tuned vs naive | {} | {} | {ratio:.0}x | ≥ 20x: {} |",
                    ms(tuned),
                    ms(naive),
                    goal(ratio >= 20.0)
                );
            }
        }
        for job in self.jobs() {
            let slowdown = job.under_traffic.as_secs_f64() / job.quiet.as_secs_f64();
            let _ = writeln!(
                md,
                "| {} job ({} window, {} items), s: under traffic vs quiet | {:.2} | {:.2} | {slowdown:.2}x slower | – |",
                job.job,
                job.window,
                items(job),
                job.under_traffic.as_secs_f64(),
                job.quiet.as_secs_f64()
            );
        }
    }

    /// The summary's rows of the write benchmark, when it ran.
    fn md_summary_writes(&self, md: &mut String) {
        let Some(w) = self.writes else {
            return;
        };
        let ratios = w.median_ratios();
        let rounds = w.rounds.len();
        let _ = writeln!(
            md,
            "| transfers/s, cold (random pairs) vs pgbench hand-written transaction; ratio: median of {rounds} \
             interleaved rounds | {:.0} | {:.0} | {} | ≥ 2.0x: {} |",
            w.cold.throughput(),
            w.pg_cold.tps,
            times(ratios.cold),
            goal(ratios.cold >= 2.0)
        );
        let _ = writeln!(
            md,
            "| transfers/s, hot (100 senders, one receiver) vs pgbench hot; ratio: median of {rounds} interleaved \
             rounds | {:.0} | {:.0} | {} | ≥ 2.0x: {} |",
            w.hot.throughput(),
            w.pg_hot.tps,
            times(ratios.hot),
            goal(ratios.hot >= 2.0)
        );
    }

    /// The highest load each scenario sustains, and the charts.
    fn md_sustained(&self, md: &mut String) {
        let _ = writeln!(
            md,
            "\nHighest load each scenario sustains with p99 under {} ms and no errors (steps of {} s measured \
             after a {} s ramp and {} s warm-up; closed loop, no think time):\n",
            self.p99_limit_ms,
            self.shape.duration.as_secs(),
            self.shape.ramp.as_secs(),
            self.shape.warmup.as_secs()
        );
        let _ = writeln!(
            md,
            "| scenario | sustained users | requests/s there | p99 ms there | first step that failed | goal |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---|---|");
        for search in self.searches {
            let sustained = search.sustained_step();
            let failed = search.steps.iter().find(|step| {
                Some(step.shape.users) != search.sustained && !crate::scenarios::passes(step, self.p99_limit_ms)
            });
            let wanted = sustained_goal(search.name);
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                search.name,
                search.sustained.map_or("none".to_owned(), |users| users.to_string()),
                sustained.map_or("–".to_owned(), |step| format!("{:.0}", step.total.throughput())),
                sustained.map_or("–".to_owned(), |step| ms(step.total.percentile_ms(0.99))),
                failed.map_or("none (all steps held)".to_owned(), |step| format!(
                    "{} users: p99 {} ms, {} errors",
                    step.shape.users,
                    ms(step.total.percentile_ms(0.99)),
                    step.total.errors
                )),
                wanted.map_or("–".to_owned(), |users| format!(
                    "≥ {users} users: {}",
                    goal(search.sustained.is_some_and(|held| held >= users))
                )),
            );
        }
        if !self.searches.is_empty() {
            let _ = writeln!(md, "\n![throughput](throughput.png)\n\n![p99](p99.png)\n");
        }
        if self.searches.iter().any(|search| search.name.starts_with("statement")) {
            let _ = writeln!(md, "![history](history.png)\n");
        }
    }

    /// Transfers against pgbench, round by round.
    fn md_transfers(&self, md: &mut String) {
        let Some(w) = self.writes else {
            return;
        };
        let ratios = w.median_ratios();
        let rounds = w.rounds.len();
        let _ = writeln!(md, "## Transfers vs pgbench\n");
        let _ = writeln!(
            md,
            "pgbench runs a hand-written transfer transaction (debit one row, credit another, insert one \
             history row) on the same PostgreSQL with 100 clients; minipay gets `POST /v1/transfers` over \
             HTTP from 100 closed-loop clients. Cold: random pairs; hot: every transfer to one account. \
             Measured in {rounds} interleaved rounds of four {} s phases (pgbench cold, HTTP cold, pgbench hot, \
             HTTP hot), each pgbench phase started once the statement outbox had drained (the wait is in the \
             last column); the ratios are taken within each round, and the result is their median.\n",
            w.phase_seconds
        );
        let _ = writeln!(
            md,
            "| round | pgbench cold | HTTP cold | pgbench hot | HTTP hot | cold / pgbench cold | hot / pgbench hot \
             | hot / pgbench cold | outbox wait s |"
        );
        let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (index, round) in w.rounds.iter().enumerate() {
            let r = round.ratios();
            let _ = writeln!(
                md,
                "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {:.1} + {:.1} |",
                index + 1,
                round.pg_cold.tps,
                round.cold.throughput(),
                round.pg_hot.tps,
                round.hot.throughput(),
                times(r.cold),
                times(r.hot),
                times(r.hot_vs_pg_cold),
                round.outbox_waits[0].as_secs_f64(),
                round.outbox_waits[1].as_secs_f64()
            );
        }
        let _ = writeln!(
            md,
            "| **median** | | | | | **{}** | **{}** | **{}** | |\n",
            times(ratios.cold),
            times(ratios.hot),
            times(ratios.hot_vs_pg_cold)
        );
        let _ = writeln!(md, "All rounds together ({} s per workload):\n", w.cold.elapsed.as_secs());
        let _ = writeln!(md, "| workload | transfers/s | p50 ms | p99 ms | errors | vs pgbench cold |");
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
        let _ = writeln!(
            md,
            "| pgbench, cold | {:.0} | {} (mean) | – | {} | 1.00x |",
            w.pg_cold.tps,
            ms(w.pg_cold.latency_ms),
            w.pg_cold.failed
        );
        let _ = writeln!(
            md,
            "| pgbench, hot | {:.0} | {} (mean) | – | {} | {:.2}x |",
            w.pg_hot.tps,
            ms(w.pg_hot.latency_ms),
            w.pg_hot.failed,
            w.pg_hot.tps / w.pg_cold.tps
        );
        for (label, report) in [("HTTP, cold", &w.cold), ("HTTP, hot", &w.hot)] {
            let _ = writeln!(
                md,
                "| {label} | {:.0} | {} | {} | {} | {:.2}x |",
                report.throughput(),
                ms(report.percentile_ms(0.5)),
                ms(report.percentile_ms(0.99)),
                report.errors,
                report.throughput() / w.pg_cold.tps
            );
        }
        let _ = writeln!(
            md,
            "\nLoad generator CPU: {:.2} cores cold, {:.2} hot. {}.\n",
            w.cold.generator_cores,
            w.hot.generator_cores,
            w.ledger_batches()
        );
    }

    /// History reads, naive against tuned.
    fn md_history(&self, md: &mut String) {
        let Some(history) = self.history else {
            return;
        };
        let _ = writeln!(md, "## History: naive vs tuned, one request at a time\n");
        let _ = writeln!(
            md,
            "{} seeded entries (100,000 users; a hot account with 5% of them, 4 heavy accounts with 2% each). \
             Naive: PostgreSQL, OFFSET paging and a count; tuned: ClickHouse, keyset cursor. Page size 50; \
             the deep page is 90% of the way to the account's last page. Ratio = naive / tuned.\n",
            self.entries
        );
        let _ =
            writeln!(md, "| query | accounts | samples | naive p50 | naive p99 | tuned p50 | tuned p99 | p50 ratio |");
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for (label, accounts, samples) in &history.rows {
            let (np50, np99) = (percentile(&samples.naive_ms, 0.5), percentile(&samples.naive_ms, 0.99));
            let (tp50, tp99) = (percentile(&samples.tuned_ms, 0.5), percentile(&samples.tuned_ms, 0.99));
            let _ = writeln!(
                md,
                "| {label} | {accounts} | {} | {} | {} | {} | {} | {:.1}x |",
                samples.naive_ms.len(),
                ms(np50),
                ms(np99),
                ms(tp50),
                ms(tp99),
                np50 / tp50
            );
        }
        let _ = writeln!(
            md,
            "\nTuned answers from the PostgreSQL fallback: {}; naive/tuned pairs that differed: {}.\n",
            history.fallbacks, history.mismatches
        );
    }

    /// The batch jobs, quiet and under traffic.
    fn md_windows(&self, md: &mut String) {
        let Some(windows) = self.transactional.and_then(|t| t.windows.as_ref()) else {
            return;
        };
        let _ = writeln!(md, "## Batch windows under traffic\n");
        let _ = writeln!(
            md,
            "{} savings accounts (free and fixed in turn) owe one day of interest each business day; the fixed \
             half take an installment at 08:00. {} pending transfers, created through the API by 100 users in \
             `confirm` transfer mode (their receivers never answer), expire on each of the quiet and the traffic \
             day: two cohorts created at 05:00 a day apart, each due 72 hours later; pending-expiry is a frequent \
             job, run here once a day at 06:01. With the server's manual clock, each job ran once to catch up \
             (not reported), then on the next day with no traffic, then on the day after while {} daily users \
             ran (`POST /admin/jobs/{{name}}/run` at 04:01, 06:01 and 08:01).\n",
            self.savings, windows.pending_per_day, windows.traffic.shape.users
        );
        let _ = writeln!(md, "| job | window | items | quiet s | under traffic s | slowdown |");
        let _ = writeln!(md, "|---|---|---:|---:|---:|---:|");
        for job in &windows.jobs {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.2} | {:.2} | {:.2}x |",
                job.job,
                job.window,
                items(job),
                job.quiet.as_secs_f64(),
                job.under_traffic.as_secs_f64(),
                job.under_traffic.as_secs_f64() / job.quiet.as_secs_f64()
            );
        }
        let _ =
            writeln!(md, "\nThe daily users meanwhile ({} s measured):\n", windows.traffic.shape.duration.as_secs());
        endpoint_table(md, &windows.traffic);
    }

    /// Every step of every scenario, per endpoint.
    fn md_scenarios(&self, md: &mut String) {
        let _ = writeln!(md, "\n## Scenarios, step by step\n");
        let _ = writeln!(
            md,
            "Requests/s counts answers that are not errors; latencies in ms. Refused: correct refusals \
             (422 `daily-limit-exceeded`: a daily user who has topped up the day's limit, the clock standing \
             still), counted apart and not errors. Before its first step each transactional scenario runs \
             unmeasured for 3 s at 5 users, then the database is analyzed, as autovacuum does within a \
             minute in a running service: the plans measured are those of tables that hold data.\n"
        );
        for search in self.searches {
            let _ = writeln!(md, "### {}\n", search.name);
            let _ = writeln!(md, "| users | iterations/s | requests/s | p50 | p95 | p99 | errors | refused | holds |");
            let _ = writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|---|");
            for step in &search.steps {
                let _ = writeln!(
                    md,
                    "| {} | {:.1} | {:.0} | {} | {} | {} | {} |",
                    step.shape.users,
                    step.iterations as f64 / step.shape.duration.as_secs_f64(),
                    step.total.throughput(),
                    latency_cells(&step.total),
                    step.total.errors,
                    step.total.refused,
                    if crate::scenarios::passes(step, self.p99_limit_ms) { "yes" } else { "no" }
                );
            }
            let ledger = self.transactional.and_then(|t| t.ledger.iter().find(|(name, _)| *name == search.name));
            if let Some((_, ledger)) = ledger {
                let _ = writeln!(md, "\nServer, over all its steps: {ledger}.");
            }
            for step in &search.steps {
                let _ = writeln!(
                    md,
                    "\n{} users, per endpoint (CPU per request: {}):\n",
                    step.shape.users,
                    step.total.cpu.per_request(step.total.requests as f64)
                );
                endpoint_table(md, step);
            }
            md.push('\n');
        }
    }

    /// The servers' memory at points of the run.
    fn md_memory(&self, md: &mut String) {
        let _ = writeln!(md, "## Server memory\n");
        let _ = writeln!(md, "The `minipay serve` of the statement readers, then the one of the transactional scenarios, from /proc: resident then (VmRSS) and the peak so far (VmHWM), since the server started.\n");
        let _ = writeln!(md, "| when | resident MiB | peak so far MiB |");
        let _ = writeln!(md, "|---|---:|---:|");
        for (when, memory) in self.server_memory {
            let _ = writeln!(
                md,
                "| {when} | {:.1} | {:.1} |",
                crate::server::mib(memory.rss_kib),
                crate::server::mib(memory.peak_kib)
            );
        }
        let _ = writeln!(md);
    }

    /// The ledger audits.
    fn md_audit(&self, md: &mut String) {
        let _ = writeln!(md, "## Audit\n");
        if let Some(w) = self.writes {
            let _ = writeln!(md, "- after the write benchmark: ok = {}", w.audit["ok"]);
        }
        let Some(transactional) = self.transactional else {
            return;
        };
        let audit = &transactional.audit;
        let _ = writeln!(md, "- after the transactional scenarios and batch windows that ran: ok = {}", audit["ok"]);
        if let Some(checks) = audit["checks"].as_array() {
            for check in checks {
                let _ = writeln!(md, "  - `{check}`");
            }
        }
    }
}

fn endpoint_table(md: &mut String, report: &ScenarioReport) {
    let _ = writeln!(md, "| endpoint | requests/s | p50 | p95 | p99 | errors | refused |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
    for (endpoint, stats) in &report.endpoints {
        let _ = writeln!(
            md,
            "| `{endpoint}` | {:.0} | {} | {} | {} |",
            stats.throughput(),
            latency_cells(stats),
            stats.errors,
            stats.refused
        );
    }
    for error in &report.total.first_errors {
        let _ = writeln!(md, "\nerror sample: `{}`", error.replace('`', "'"));
    }
}
