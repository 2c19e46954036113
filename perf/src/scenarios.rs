//! The user scenarios of perf/README.md as load: each one an iteration of a virtual user,
//! run by `load::run_scenario` at increasing user counts until p99 reaches the limit or a
//! request fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Days, FixedOffset, NaiveTime, TimeZone};
use futures::{FutureExt, StreamExt};
use rand::Rng;
use serde_json::{json, Value};

use crate::history::BenchAccount;
use crate::load::{self, IterationFuture, Samples, ScenarioReport, Shape};
use crate::server::ADMIN_TOKEN;
use crate::write::{create_users, BenchUser};

/// A virtual user's iteration: `(user, sequence)` to the requests it made.
pub type Iteration = Box<dyn Fn(usize, u64) -> IterationFuture + Send + Sync>;

/// A scenario's user-count steps and the highest that held.
pub struct StepSearch {
    pub name: &'static str,
    pub steps: Vec<ScenarioReport>,
    /// The user count of the last step with p99 under the limit and no errors.
    pub sustained: Option<usize>,
}

impl StepSearch {
    pub fn sustained_step(&self) -> Option<&ScenarioReport> {
        self.steps.iter().find(|step| Some(step.shape.users) == self.sustained)
    }
}

/// Whether a step held: p99 of all its requests under `p99_limit_ms`, and no errors. Correct
/// refusals (`load::REFUSALS`, e.g. a daily user over the daily top-up limit) are answers,
/// not errors: they do not fail a step.
pub fn passes(report: &ScenarioReport, p99_limit_ms: f64) -> bool {
    report.total.requests > 0 && report.total.errors == 0 && report.total.percentile_ms(0.99) < p99_limit_ms
}

/// Runs `make(users)`'s scenario at each user count in turn, stopping after the first step
/// that does not hold.
pub async fn step_search<F>(
    name: &'static str,
    user_steps: &[usize],
    shape: Shape,
    p99_limit_ms: f64,
    make: F,
) -> StepSearch
where
    F: Fn() -> Iteration,
{
    let mut search = StepSearch { name, steps: Vec::new(), sustained: None };
    for &users in user_steps {
        let shape = Shape { users, ..shape };
        let iteration = make();
        let report = load::run_scenario(shape, &format!("{name} x {users}"), iteration).await;
        let held = passes(&report, p99_limit_ms);
        eprintln!(
            "  {name} x {users}: {:.0} req/s, p50 {:.1} ms, p99 {:.1} ms, {} errors, {} refused -> {}; CPU per \
             request: {}",
            report.total.throughput(),
            report.total.percentile_ms(0.5),
            report.total.percentile_ms(0.99),
            report.total.errors,
            report.total.refused,
            if held { "holds" } else { "does not hold" },
            report.total.cpu.per_request(report.total.requests as f64)
        );
        for (endpoint, stats) in report.endpoints.iter().filter(|(_, stats)| stats.refused > 0) {
            eprintln!("    {endpoint}: {} of {} refused (daily limit)", stats.refused, stats.requests);
        }
        for error in &report.total.first_errors {
            eprintln!("    error sample: {error}");
        }
        search.steps.push(report);
        if !held {
            break;
        }
        search.sustained = Some(users);
    }
    search
}

/// What the scenarios of the transactional server share: its address, the client, and the
/// signed-up users (the first `pool` are virtual users, the last one the payday receiver).
pub struct Population {
    pub client: reqwest::Client,
    pub base: String,
    pub users: Vec<BenchUser>,
    pub password: &'static str,
    pub receiver: BenchUser,
}

const DAILY_TOP_UP: i64 = 1_000;

/// A daily user: log in, look at the accounts, top up, send a friend money, read the history.
/// With the clock standing still, a user who has topped up the day's limit is refused (422
/// `daily-limit-exceeded`, counted as refused, not as an error) and goes on with the rest.
pub fn daily_user(population: Arc<Population>) -> Iteration {
    Box::new(move |user, _sequence| {
        let population = population.clone();
        async move {
            let mut samples = Samples::default();
            let p = &population;
            let me = &p.users[user % p.users.len()];
            let (friend, amount) = {
                let mut rng = rand::thread_rng();
                let mut friend = rng.gen_range(0..p.users.len());
                if friend == user % p.users.len() {
                    friend = (friend + 1) % p.users.len();
                }
                (p.users[friend].main_account_id, rng.gen_range(1..=100))
            };
            let credentials = json!({"name": me.name, "password": p.password});
            let Some(session) = samples
                .send_json("POST /v1/sessions", p.client.post(format!("{}/v1/sessions", p.base)).json(&credentials))
                .await
            else {
                return samples;
            };
            let token = session["token"].as_str().unwrap_or(&me.token).to_owned();
            samples.send("GET /v1/accounts", p.client.get(format!("{}/v1/accounts", p.base)).bearer_auth(&token)).await;
            let main = me.main_account_id;
            samples
                .send(
                    "POST /v1/accounts/{id}/charges",
                    p.client
                        .post(format!("{}/v1/accounts/{main}/charges", p.base))
                        .bearer_auth(&token)
                        .json(&json!({"amount": DAILY_TOP_UP})),
                )
                .await;
            samples
                .send(
                    "POST /v1/transfers",
                    p.client
                        .post(format!("{}/v1/transfers", p.base))
                        .bearer_auth(&token)
                        .json(&json!({"to_account_id": friend, "amount": amount, "memo": "coffee"})),
                )
                .await;
            samples
                .send(
                    "GET /v1/accounts/{id}/history",
                    p.client.get(format!("{}/v1/accounts/{main}/history?limit=20", p.base)).bearer_auth(&token),
                )
                .await;
            samples
        }
        .boxed()
    })
}

/// Payday: every virtual user sends to the same account, as employees paying into one
/// company or one landlord account at once.
pub fn payday(population: Arc<Population>) -> Iteration {
    Box::new(move |user, _sequence| {
        let population = population.clone();
        async move {
            let mut samples = Samples::default();
            let p = &population;
            let me = &p.users[user % p.users.len()];
            let amount = rand::thread_rng().gen_range(1..=100);
            samples
                .send(
                    "POST /v1/transfers (to one account)",
                    p.client
                        .post(format!("{}/v1/transfers", p.base))
                        .bearer_auth(&me.token)
                        .json(&json!({"to_account_id": p.receiver.main_account_id, "amount": amount})),
                )
                .await;
            samples
        }
        .boxed()
    })
}

/// Settlement evening: a user splits a bill with three friends (drawn at random from all
/// users), each of whom pays a share,
/// then the requester looks at the settlement.
pub fn settlement(population: Arc<Population>) -> Iteration {
    Box::new(move |user, sequence| {
        let population = population.clone();
        async move {
            let mut samples = Samples::default();
            let p = &population;
            let count = p.users.len();
            let me = &p.users[user % count];
            // Three distinct friends drawn from everyone: fixed friends would pay for every one of
            // the requester's bills and, with few users, run out of money and daily limit.
            let (friends, total) = {
                let mut rng = rand::thread_rng();
                let mut picked: Vec<usize> = Vec::with_capacity(3);
                while picked.len() < 3 {
                    let friend = rng.gen_range(0..count);
                    if friend != user % count && !picked.contains(&friend) {
                        picked.push(friend);
                    }
                }
                let friends: Vec<&BenchUser> = picked.into_iter().map(|friend| &p.users[friend]).collect();
                (friends, rng.gen_range(10..=300) * 100)
            };
            let mode = if sequence % 2 == 0 { "equal" } else { "random" };
            let request = json!({
                "total": total,
                "mode": mode,
                "participant_ids": friends.iter().map(|friend| friend.id).collect::<Vec<_>>(),
                "include_requester": true,
                "memo": "dinner",
            });
            let Some(created) = samples
                .send_json(
                    "POST /v1/settlements",
                    p.client.post(format!("{}/v1/settlements", p.base)).bearer_auth(&me.token).json(&request),
                )
                .await
            else {
                return samples;
            };
            let Some(id) = created["id"].as_i64() else {
                return samples;
            };
            for friend in friends {
                samples
                    .send(
                        "POST /v1/settlements/{id}/pay",
                        p.client.post(format!("{}/v1/settlements/{id}/pay", p.base)).bearer_auth(&friend.token),
                    )
                    .await;
            }
            samples
                .send(
                    "GET /v1/settlements/{id}",
                    p.client.get(format!("{}/v1/settlements/{id}", p.base)).bearer_auth(&me.token),
                )
                .await;
            samples
        }
        .boxed()
    })
}

/// An account the statement readers read: its token and its deep page, by page number
/// (naive) and by cursor (tuned).
#[derive(Clone)]
pub struct Statement {
    pub id: i64,
    pub token: String,
    pub deep_page: u64,
    pub deep_cursor: Option<String>,
}

impl From<&BenchAccount> for Statement {
    fn from(account: &BenchAccount) -> Self {
        Statement {
            id: account.id,
            token: account.token.clone(),
            deep_page: account.deep_page,
            deep_cursor: account.deep_cursor.clone(),
        }
    }
}

/// Which history read a statement reader makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPath {
    /// `GET .../history`: ClickHouse, keyset cursor.
    Tuned,
    /// `GET .../history/naive`: PostgreSQL, OFFSET paging.
    Naive,
}

/// A statement reader: opens the first page of a busy account's history, then jumps to the
/// page 90% of the way back — with the tuned route (ClickHouse, cursor) or the naive one
/// (PostgreSQL, OFFSET).
pub fn statement_reader(
    client: reqwest::Client,
    base: String,
    accounts: Arc<Vec<Statement>>,
    limit: u64,
    read_path: ReadPath,
) -> Iteration {
    Box::new(move |user, _sequence| {
        let (client, base, accounts) = (client.clone(), base.clone(), accounts.clone());
        async move {
            let mut samples = Samples::default();
            let account = &accounts[user % accounts.len()];
            let url = |rest: String| format!("{base}/v1/accounts/{}/{rest}", account.id);
            if read_path == ReadPath::Tuned {
                let first = client.get(url(format!("history?limit={limit}"))).bearer_auth(&account.token);
                samples.send("GET history (tuned, first page)", first).await;
                let deep = match &account.deep_cursor {
                    Some(cursor) => format!("history?limit={limit}&cursor={cursor}"),
                    None => format!("history?limit={limit}"),
                };
                samples.send("GET history (tuned, deep page)", client.get(url(deep)).bearer_auth(&account.token)).await;
            } else {
                let first = client.get(url(format!("history/naive?limit={limit}&page=0"))).bearer_auth(&account.token);
                samples.send("GET history/naive (first page)", first).await;
                let deep = format!("history/naive?limit={limit}&page={}", account.deep_page);
                samples.send("GET history/naive (deep page)", client.get(url(deep)).bearer_auth(&account.token)).await;
            }
            samples
        }
        .boxed()
    })
}

/// The service's business days are Asia/Seoul days (no daylight saving).
fn seoul() -> FixedOffset {
    FixedOffset::east_opt(9 * 3600).expect("a valid offset")
}

/// The admin API of a server started with MINIPAY_CLOCK=manual.
pub struct Admin {
    pub client: reqwest::Client,
    pub base: String,
}

impl Admin {
    pub async fn now(&self) -> anyhow::Result<DateTime<FixedOffset>> {
        let clock: Value = self
            .client
            .get(format!("{}/admin/clock", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let now = clock["now"].as_str().context("clock now")?;
        Ok(DateTime::parse_from_rfc3339(now)?)
    }

    pub async fn set_clock(&self, at: DateTime<FixedOffset>) -> anyhow::Result<()> {
        self.client
            .put(format!("{}/admin/clock", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"now": at.to_rfc3339()}))
            .send()
            .await?
            .error_for_status()
            .context("moving the manual clock")?;
        Ok(())
    }

    /// The Seoul time `days` days after the clock's current date, at `hour`:`minute`.
    pub async fn day_at(&self, days: u64, hour: u32, minute: u32) -> anyhow::Result<DateTime<FixedOffset>> {
        let today = self.now().await?.with_timezone(&seoul()).date_naive();
        let day = today.checked_add_days(Days::new(days)).context("date overflow")?;
        let time = NaiveTime::from_hms_opt(hour, minute, 0).context("time")?;
        seoul().from_local_datetime(&day.and_time(time)).single().context("Seoul time")
    }

    /// Runs a job for the current clock; returns what it processed and how long it took.
    pub async fn run_job(&self, name: &str) -> anyhow::Result<(i64, Duration)> {
        let started = Instant::now();
        let report: Value = self
            .client
            .post(format!("{}/admin/jobs/{name}/run", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?
            .error_for_status()
            .with_context(|| format!("running the {name} job"))?
            .json()
            .await?;
        Ok((report["processed"].as_i64().unwrap_or(0), started.elapsed()))
    }

    pub async fn audit(&self) -> anyhow::Result<Value> {
        Ok(self
            .client
            .get(format!("{}/admin/audit", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

/// One batch job's run in a window: quiet, or while daily users are active.
pub struct JobRun {
    pub job: &'static str,
    pub window: &'static str,
    /// What the quiet run processed.
    pub processed: i64,
    /// What the run under traffic processed (the same work, one day later).
    pub processed_under_traffic: i64,
    pub quiet: Duration,
    pub under_traffic: Duration,
}

/// The batch windows: each job run once to catch up (not reported), then on the next day with
/// no traffic, then on the day after while `traffic_users` daily users run.
pub struct BatchWindows {
    pub jobs: Vec<JobRun>,
    /// The daily users' load while the jobs of the traffic day ran.
    pub traffic: ScenarioReport,
    /// Pending transfers created for each of the quiet and the traffic day to expire.
    pub pending_per_day: usize,
}

/// The jobs of a business day, in the order of their hours: interest and installments are
/// daily jobs due at 04:00 and 08:00; pending-expiry is a frequent job (every scheduler tick),
/// run here once a day at 06:01, between the two.
const WINDOW_JOBS: [(&str, &str, u32); 3] =
    [("interest", "04:00", 4), ("pending-expiry", "06:00", 6), ("installments", "08:00", 8)];

/// The Seoul time of day at which each cohort of pending transfers is created: before the
/// 06:01 expiry run, so a cohort created on day D is due (72 hours later) at that run of D+3.
const PENDING_CREATED_AT_HOUR: u32 = 5;

/// Users sending the pending transfers (and receiving them, from each other).
const PENDING_USERS: usize = 100;

/// Moves the clock to the next business day's windows and runs each job in its window.
async fn run_day(admin: &Admin) -> anyhow::Result<Vec<(i64, Duration)>> {
    let midnight = admin.day_at(1, 0, 0).await?;
    let mut runs = Vec::new();
    for (job, _, hour) in WINDOW_JOBS {
        admin.set_clock(midnight + chrono::Duration::hours(i64::from(hour)) + chrono::Duration::minutes(1)).await?;
        let (processed, took) = admin.run_job(job).await?;
        eprintln!("  {job}: {processed} processed in {:.2} s", took.as_secs_f64());
        runs.push((processed, took));
    }
    Ok(runs)
}

/// `count` pending transfers (1..100 KRW) among `users`, who are in `confirm` transfer mode,
/// through the API, 64 at a time.
async fn create_pending(population: &Population, users: &Arc<Vec<BenchUser>>, count: usize) -> anyhow::Result<()> {
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..count)
        .map(|index| {
            let (client, base, users) = (population.client.clone(), population.base.clone(), users.clone());
            async move {
                let from = index % users.len();
                let to = (from + 1 + index / users.len() % (users.len() - 1)) % users.len();
                let amount = 1 + index % 100;
                let transfer: Value = client
                    .post(format!("{base}/v1/transfers"))
                    .bearer_auth(&users[from].token)
                    .json(&json!({"to_account_id": users[to].main_account_id, "amount": amount, "memo": "pending"}))
                    .send()
                    .await?
                    .error_for_status()
                    .context("creating a pending transfer")?
                    .json()
                    .await?;
                anyhow::ensure!(transfer["status"] == "pending", "a confirm-mode transfer was not pending: {transfer}");
                Ok(())
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    results.into_iter().collect()
}

/// A fresh session token for `name`.
async fn log_in(population: &Population, name: &str) -> anyhow::Result<String> {
    let session: Value = population
        .client
        .post(format!("{}/v1/sessions", population.base))
        .json(&json!({"name": name, "password": population.password}))
        .send()
        .await?
        .error_for_status()
        .context("logging in")?
        .json()
        .await?;
    Ok(session["token"].as_str().context("session token")?.to_owned())
}

/// Two cohorts of `per_day` pending transfers, created through the API by users in `confirm`
/// mode at 05:00 on the next two days: the first expires at the quiet day's 06:01 run, the
/// second at the traffic day's (the windows' first day, caught up, comes the day after).
async fn seed_pending(admin: &Admin, population: &Population, per_day: usize) -> anyhow::Result<()> {
    eprintln!("  {PENDING_USERS} users in confirm mode create 2 x {per_day} pending transfers, a day apart");
    let mut users = create_users(&population.client, &population.base, PENDING_USERS, "pending", 1_000_000).await?;
    for user in &users {
        population
            .client
            .patch(format!("{}/v1/me", population.base))
            .bearer_auth(&user.token)
            .json(&json!({"transfer_mode": "confirm"}))
            .send()
            .await?
            .error_for_status()
            .context("setting transfer mode confirm")?;
    }
    for cohort in 1..=2 {
        admin.set_clock(admin.day_at(1, PENDING_CREATED_AT_HOUR, 0).await?).await?;
        // Sessions last 24 hours of the clock: the day's move ended yesterday's.
        for user in &mut users {
            user.token = log_in(population, &user.name).await?;
        }
        let started = Instant::now();
        let shared = Arc::new(users);
        create_pending(population, &shared, per_day).await?;
        users = Arc::try_unwrap(shared).map_err(|_| anyhow::anyhow!("the pending users are still shared"))?;
        eprintln!(
            "  cohort {cohort}: {per_day} pending transfers at {} in {:.1} s",
            admin.now().await?.with_timezone(&seoul()).format("%Y-%m-%d %H:%M"),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The 04:00, 06:00 and 08:00 windows, after `pending_per_day` pending transfers are seeded
/// to expire on each of the quiet and the traffic day (none seeded: pending-expiry has
/// nothing to do).
pub async fn batch_windows(
    admin: &Admin,
    population: Arc<Population>,
    traffic_users: usize,
    pending_per_day: usize,
) -> anyhow::Result<BatchWindows> {
    if pending_per_day > 0 {
        seed_pending(admin, &population, pending_per_day).await?;
    }
    eprintln!("  catching up (not reported)");
    run_day(admin).await?;
    eprintln!("  quiet day");
    let quiet = run_day(admin).await?;
    let quiet_total: Duration = quiet.iter().map(|(_, took)| *took).sum();
    let shape = Shape {
        users: traffic_users,
        ramp: Duration::from_secs(2),
        warmup: Duration::from_secs(1),
        // Long enough to cover every job even if traffic slows them down threefold.
        duration: (quiet_total * 3 + Duration::from_secs(10)).max(Duration::from_secs(20)),
    };
    eprintln!("  day under traffic: {traffic_users} daily users for {} s", shape.duration.as_secs());
    let load = tokio::spawn(load::run_scenario(shape, "daily users during the batch window", daily_user(population)));
    tokio::time::sleep(shape.ramp + shape.warmup).await;
    let busy = run_day(admin).await;
    let traffic = load.await.context("the traffic task")?;
    let busy = busy?;
    let jobs: Vec<JobRun> = WINDOW_JOBS
        .iter()
        .zip(quiet.iter().zip(&busy))
        .map(|((job, window, _), ((processed, quiet), (processed_under_traffic, under_traffic)))| JobRun {
            job,
            window,
            processed: *processed,
            processed_under_traffic: *processed_under_traffic,
            quiet: *quiet,
            under_traffic: *under_traffic,
        })
        .collect();
    if let Some(expiry) = jobs.iter().find(|run| run.job == "pending-expiry") {
        let expected = pending_per_day as i64;
        if expiry.processed != expected || expiry.processed_under_traffic != expected {
            eprintln!(
                "  warning: pending-expiry expired {} (quiet) and {} (under traffic) transfers, {expected} expected each day",
                expiry.processed, expiry.processed_under_traffic
            );
        }
    }
    Ok(BatchWindows { jobs, traffic, pending_per_day })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{LoadReport, ScenarioReport};
    use std::collections::BTreeMap;

    fn report(latencies_ms: &[u32], errors: u64) -> ScenarioReport {
        refusing(latencies_ms, errors, 0)
    }

    fn refusing(latencies_ms: &[u32], errors: u64, refused: u64) -> ScenarioReport {
        let total = LoadReport {
            requests: latencies_ms.len() as u64,
            errors,
            refused,
            latencies_us: latencies_ms.iter().map(|ms| ms * 1000).collect(),
            elapsed: Duration::from_secs(1),
            ..LoadReport::default()
        };
        let shape = Shape { users: 1, ramp: Duration::ZERO, warmup: Duration::ZERO, duration: Duration::from_secs(1) };
        ScenarioReport { shape, total, endpoints: BTreeMap::new(), iterations: 0 }
    }

    #[test]
    fn a_step_holds_only_with_p99_under_the_limit_and_no_errors() {
        let fast: Vec<u32> = (1..=100).collect(); // p99 = 99 ms
        assert!(passes(&report(&fast, 0), 100.0));
        assert!(!passes(&report(&fast, 1), 100.0));
        let slow: Vec<u32> = (2..=101).collect(); // p99 = 100 ms
        assert!(!passes(&report(&slow, 0), 100.0));
        assert!(!passes(&report(&[], 0), 100.0));
    }

    #[test]
    fn refusals_do_not_fail_a_step() {
        let fast: Vec<u32> = (1..=100).collect();
        assert!(passes(&refusing(&fast, 0, 40), 100.0));
        assert!(!passes(&refusing(&fast, 1, 40), 100.0));
    }
}
