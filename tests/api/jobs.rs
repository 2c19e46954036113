//! The job runner and scheduler: reminders (SCENARIO 19), catching up missed business dates,
//! each job once per date across server processes, and resuming after a crash without doing
//! anything twice.

use std::sync::Mutex;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use minipay::clock::{Clock, ClockMode};
use minipay::config::JobsConfig;
use minipay::history::clickhouse::ClickHouse;
use minipay::jobs::{Chunk, DateOutcome, Job, JobContext, JobName, RunReport, Runner, Schedule};
use minipay::telemetry::Metrics;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, PgPool};

use crate::helpers::*;

/// A pending transfer written straight into the table: pending transfers cannot be created
/// through the API on this branch yet, and the reminders job reads nothing else of them.
async fn insert_pending(conn: &mut PgConnection, from: &TestUser, to: &TestUser, created_at: DateTime<Utc>) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO transfers (from_account_id, to_account_id, from_user_id, to_user_id, amount, status,
                                created_at, expires_at)
         VALUES ($1, $2, $3, $4, 5000, 'pending', $5, $5 + interval '72 hours') RETURNING id",
    )
    .bind(from.main_account_id)
    .bind(to.main_account_id)
    .bind(from.id)
    .bind(to.id)
    .bind(created_at)
    .fetch_one(conn)
    .await
    .unwrap()
}

async fn reminders_of(conn: &mut PgConnection, transfer_id: i64) -> Vec<(i64, Value)> {
    sqlx::query_as(
        "SELECT user_id, payload FROM notifications
          WHERE kind = 'pending_transfer_reminder' AND payload->>'transfer_id' = $1::text ORDER BY id",
    )
    .bind(transfer_id)
    .fetch_all(conn)
    .await
    .unwrap()
}

/// Transfers with other than exactly one reminder, among those reminded of or marked so.
async fn transfers_not_reminded_exactly_once(conn: &mut PgConnection) -> Vec<(i64, i64)> {
    sqlx::query_as(
        "SELECT t.id, count(n.id) FROM transfers t
           LEFT JOIN notifications n ON n.kind = 'pending_transfer_reminder' AND n.payload->>'transfer_id' = t.id::text
          GROUP BY t.id HAVING count(n.id) <> 1 OR bool_or(t.reminded_at IS NULL)",
    )
    .fetch_all(conn)
    .await
    .unwrap()
}

async fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(conn).await.unwrap()
}

/// `POST /admin/jobs/{name}/run` on the server at `base`.
async fn run_job_at(app: &TestApp, base: &str, name: &str) -> Value {
    let response = app
        .client
        .post(format!("{base}/admin/jobs/{name}/run"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("request sent");
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "run {name} at {base}: {body}");
    body
}

async fn run_job(app: &TestApp, name: &str) -> Value {
    run_job_at(app, &app.base, name).await
}

async fn set_clock_at(app: &TestApp, base: &str, now: DateTime<Utc>) {
    let response = app
        .client
        .put(format!("{base}/admin/clock"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"now": now.to_rfc3339()}))
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status(), 200, "set clock at {base}");
}

/// A counter from `/metrics` (with its labels, e.g. `minipay_job_items_total{job="reminders"}`).
async fn metric(app: &TestApp, base: &str, series: &str) -> u64 {
    let text = app.client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{series} missing from /metrics:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn scenario_19_exactly_one_reminder_at_48_hours_and_none_once_no_longer_pending() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let carol = app.signup("carol").await;
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    let sent = app.clock_now().await;
    let waiting = insert_pending(&mut conn, &alice, &bob, sent).await;
    let canceled = insert_pending(&mut conn, &alice, &carol, sent).await;
    // Sent an hour later: due an hour later.
    let later = insert_pending(&mut conn, &carol, &bob, sent + Duration::hours(1)).await;

    app.set_clock(&(sent + Duration::hours(47) + Duration::minutes(59)).to_rfc3339()).await;
    let report = run_job(&app, "reminders").await;
    assert_eq!(report["job"], json!("reminders"), "{report}");
    assert_eq!(report["processed"], json!(0), "{report}");
    assert!(reminders_of(&mut conn, waiting).await.is_empty(), "no reminder at 47:59");

    sqlx::query("UPDATE transfers SET status = 'canceled', resolved_at = $2 WHERE id = $1")
        .bind(canceled)
        .bind(sent + Duration::hours(10))
        .execute(&mut conn)
        .await
        .unwrap();
    app.set_clock(&(sent + Duration::hours(48)).to_rfc3339()).await;
    let report = run_job(&app, "reminders").await;
    assert_eq!(report["processed"], json!(1), "{report}");
    assert_eq!(report["dates"][0]["outcome"], json!("done"), "{report}");
    let reminders = reminders_of(&mut conn, waiting).await;
    assert_eq!(reminders.len(), 1, "exactly one reminder at 48:00");
    let (user_id, payload) = &reminders[0];
    assert_eq!(*user_id, bob.id, "the receiver is reminded");
    assert_eq!(payload["from_user_id"], json!(alice.id), "{payload}");
    assert_eq!(payload["amount"], json!(5000), "{payload}");
    let expires_at: DateTime<Utc> = payload["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires_at, sent + Duration::hours(72));

    // A second run adds nothing; a canceled transfer never gets one.
    let report = run_job(&app, "reminders").await;
    assert_eq!(report["processed"], json!(0), "{report}");
    app.set_clock(&(sent + Duration::hours(60)).to_rfc3339()).await;
    let report = run_job(&app, "reminders").await;
    assert_eq!(report["processed"], json!(1), "only the transfer sent an hour later: {report}");
    assert_eq!(reminders_of(&mut conn, waiting).await.len(), 1);
    assert_eq!(reminders_of(&mut conn, later).await.len(), 1);
    assert!(reminders_of(&mut conn, canceled).await.is_empty(), "no reminder for a canceled transfer");
    assert_eq!(count(&mut conn, "SELECT count(*) FROM notifications").await, 2);

    // Each pass was recorded on the business date it ran on; the manual clock never ticked the
    // scheduler; the runs are counted.
    let (processed, passes, all_done): (i64, i64, bool) = sqlx::query_as(
        "SELECT sum(processed)::int8, sum(attempts)::int8, bool_and(status = 'done') FROM job_runs WHERE job = 'reminders'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((processed, passes, all_done), (2, 4, true));
    assert_eq!(metric(&app, &app.base, "minipay_scheduler_ticks_total").await, 0);
    assert_eq!(metric(&app, &app.base, r#"minipay_job_runs_total{job="reminders"}"#).await, 4);
    assert_eq!(metric(&app, &app.base, r#"minipay_job_items_total{job="reminders"}"#).await, 2);
}

#[tokio::test]
async fn no_reminder_once_a_pending_transfer_has_expired() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    let sent = app.clock_now().await;
    let transfer = insert_pending(&mut conn, &alice, &bob, sent).await;
    // Downtime from before 48:00 until after 72:00: the transfer expired unreminded (the expiry
    // job settles it), and a reminder now would announce an expiry that is past.
    app.set_clock(&(sent + Duration::hours(72)).to_rfc3339()).await;
    let report = run_job(&app, "reminders").await;
    assert_eq!(report["processed"], json!(0), "{report}");
    assert!(reminders_of(&mut conn, transfer).await.is_empty());
}

#[tokio::test]
async fn an_unknown_job_answers_404_and_the_cli_refuses_it() {
    let app = spawn_app().await;
    for name in ["nope", "Interest"] {
        let response = app
            .raw_request(reqwest::Method::POST, &format!("/admin/jobs/{name}/run"), Some(ADMIN_TOKEN), None, None)
            .await;
        assert_problem_response(&response, 404, "not-found");
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_minipay"))
            .args(["jobs", "run", name])
            .env("DATABASE_URL", &app.database_url)
            .env("CLICKHOUSE_DATABASE", &app.database)
            .output()
            .await
            .unwrap();
        assert!(!output.status.success(), "minipay jobs run {name} succeeded");
        assert!(String::from_utf8_lossy(&output.stderr).contains("no job named"));
    }
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    assert_eq!(count(&mut conn, "SELECT count(*) FROM job_runs").await, 0);
}

#[tokio::test]
async fn retention_runs_once_per_business_date_and_catches_up_only_the_latest() {
    let app = spawn_app().await;
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    // 12:00 KST, some day next year.
    let year = app.clock_now().await.format("%Y").to_string().parse::<i32>().unwrap() + 1;
    let start: DateTime<Utc> = format!("{year}-03-10T03:00:00Z").parse().unwrap();
    app.set_clock(&start.to_rfc3339()).await;
    let report = run_job(&app, "retention").await;
    assert_eq!(
        report["dates"],
        json!([{"business_date": format!("{year}-03-10"), "outcome": "done", "processed": 0, "chunks": 1, "resumed": false}]),
        "{report}"
    );
    for field in ["dropped_postgres", "dropped_clickhouse"] {
        assert_eq!(report[field], json!([]), "{report}");
    }
    assert_eq!(report["clickhouse_error"], Value::Null, "{report}");
    // Again the same day: nothing to do.
    let report = run_job(&app, "retention").await;
    assert_eq!(report["dates"], json!([]), "{report}");
    assert_eq!(report["processed"], json!(0), "{report}");

    // Three days down, back at 02:00 KST: the 12th is the latest date due (03:00).
    app.set_clock(&format!("{year}-03-13T02:00:00+09:00")).await;
    let report = run_job(&app, "retention").await;
    assert_eq!(report["dates"][0]["business_date"], json!(format!("{year}-03-12")), "{report}");
    assert_eq!(report["dates"].as_array().unwrap().len(), 1, "{report}");
    app.set_clock(&format!("{year}-03-13T03:00:00+09:00")).await;
    let report = run_job(&app, "retention").await;
    assert_eq!(report["dates"][0]["business_date"], json!(format!("{year}-03-13")), "{report}");

    let rows: Vec<(NaiveDate, String, i32)> =
        sqlx::query_as("SELECT business_date, status, attempts FROM job_runs WHERE job = 'retention' ORDER BY 1")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let day = |d: u32| NaiveDate::from_ymd_opt(year, 3, d).unwrap();
    assert_eq!(
        rows,
        vec![(day(10), "done".to_owned(), 1), (day(12), "done".to_owned(), 1), (day(13), "done".to_owned(), 1)]
    );
}

/// A stand-in daily job, in the place of interest (which does not exist yet): for each
/// business date it records `items` rows, `chunk_size` per chunk, in a table whose primary key
/// refuses any row twice.
struct CountingJob {
    catch_up_days: u32,
    items: i64,
    /// Fails, once, the chunk that would start after this cursor.
    fail_after: Mutex<Option<i64>>,
}

#[derive(Default, serde::Serialize)]
struct CountingReport {
    counted_dates: Vec<NaiveDate>,
}

impl CountingJob {
    fn new(catch_up_days: u32, items: i64) -> CountingJob {
        CountingJob { catch_up_days, items, fail_after: Mutex::new(None) }
    }
}

impl Job for CountingJob {
    type Report = CountingReport;

    fn name(&self) -> JobName {
        JobName::Interest
    }

    fn schedule(&self) -> Schedule {
        Schedule::Daily { at: NaiveTime::from_hms_opt(4, 0, 0).unwrap(), catch_up_days: self.catch_up_days }
    }

    async fn run_chunk(
        &self,
        ctx: &JobContext<'_>,
        conn: &mut PgConnection,
        cursor: Option<i64>,
        report: &mut CountingReport,
    ) -> anyhow::Result<Chunk> {
        let start = cursor.unwrap_or(0);
        let fail = { self.fail_after.lock().unwrap().take_if(|after| *after == start).is_some() };
        let end = (start + ctx.chunk_size as i64).min(self.items);
        sqlx::query(
            "INSERT INTO job_test_items (business_date, item, due_at) SELECT $1, generate_series($2::int8, $3::int8), $4",
        )
        .bind(ctx.business_date)
        .bind(start + 1)
        .bind(end)
        .bind(ctx.due_at)
        .execute(&mut *conn)
        .await?;
        // After writing, so the failure has something to roll back.
        anyhow::ensure!(!fail, "injected failure after item {start}");
        if start == 0 {
            report.counted_dates.push(ctx.business_date);
        }
        let processed = (end - start) as u64;
        Ok(if end >= self.items {
            Chunk { cursor: Some(end), ..Chunk::finished(processed) }
        } else {
            Chunk::more(processed, Some(end))
        })
    }
}

/// A migrated database of its own, and a runner on it with a manual clock at `now`.
async fn runner_at(now: DateTime<Utc>, chunk_size: usize) -> (Runner, PgPool, PgConnection) {
    let database = fresh_database().await;
    let url = database_url_for(&database);
    let pool = minipay::store::connect(&url, 10, None).await.unwrap();
    let mut conn = PgConnection::connect(&url).await.unwrap();
    sqlx::query(
        "CREATE TABLE job_test_items (business_date date, item int8, due_at timestamptz NOT NULL,
                                      PRIMARY KEY (business_date, item))",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let clock = Clock::new(ClockMode::Manual);
    clock.set(now).unwrap();
    let clickhouse = ClickHouse::new(&std::env::var("CLICKHOUSE_URL").unwrap(), &database).unwrap();
    let config = JobsConfig { chunk_size, ..JobsConfig::default() };
    let runner = Runner::new(
        pool.clone(),
        clickhouse,
        clock,
        chrono_tz::Asia::Seoul,
        minipay::config::DAILY_CHARGE_LIMIT_KRW_DEFAULT,
        &config,
        Metrics::new(),
    );
    (runner, pool, conn)
}

async fn job_rows(conn: &mut PgConnection) -> Vec<(NaiveDate, String, i64, i32, i32)> {
    sqlx::query_as("SELECT business_date, status, processed, chunks, attempts FROM job_runs ORDER BY business_date")
        .fetch_all(conn)
        .await
        .unwrap()
}

fn kst(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

fn done_dates(report: &RunReport) -> Vec<NaiveDate> {
    report.dates.iter().filter(|run| run.outcome == DateOutcome::Done).map(|run| run.business_date).collect()
}

#[tokio::test]
async fn missed_business_dates_are_caught_up_once_each_in_chunks() {
    let (runner, _pool, mut conn) = runner_at(kst("2027-05-10T05:00:00+09:00"), 3).await;
    let job = CountingJob::new(5, 7);
    let report = runner.run(&job).await.unwrap();
    let date = |day: u32| NaiveDate::from_ymd_opt(2027, 5, day).unwrap();
    // A first run looks back as far as the job catches up.
    assert_eq!(done_dates(&report), (6..=10).map(date).collect::<Vec<_>>());
    assert_eq!(report.processed, 5 * 7);
    assert!(report.dates.iter().all(|run| run.chunks == 3 && !run.resumed), "{report:?}");
    assert_eq!(report.details["counted_dates"].as_array().unwrap().len(), 5, "{report:?}");

    // Running again that day does nothing.
    let report = runner.run(&job).await.unwrap();
    assert!(report.dates.is_empty() && report.processed == 0, "{report:?}");

    // Down for three days, back at 03:59 on the 13th: the 11th and 12th are due, the 13th not
    // yet (04:00). Then 04:00.
    runner.clock().set(kst("2027-05-13T03:59:59+09:00")).unwrap();
    assert_eq!(done_dates(&runner.run(&job).await.unwrap()), vec![date(11), date(12)]);
    runner.clock().set(kst("2027-05-13T04:00:00+09:00")).unwrap();
    assert_eq!(done_dates(&runner.run(&job).await.unwrap()), vec![date(13)]);
    assert!(runner.run(&job).await.unwrap().dates.is_empty());

    let rows = job_rows(&mut conn).await;
    assert_eq!(rows, (6..=13).map(|day| (date(day), "done".to_owned(), 7, 3, 1)).collect::<Vec<_>>());
    assert_eq!(count(&mut conn, "SELECT count(*) FROM job_test_items").await, 8 * 7);
    // Each date was computed as of its own 04:00, however late it ran.
    let late: i64 = count(
        &mut conn,
        "SELECT count(*) FROM job_test_items
          WHERE due_at <> (business_date + time '04:00') AT TIME ZONE 'Asia/Seoul'",
    )
    .await;
    assert_eq!(late, 0);
}

#[tokio::test]
async fn runners_racing_for_the_same_dates_run_each_date_once() {
    let (runner, _pool, mut conn) = runner_at(kst("2027-05-10T05:00:00+09:00"), 2).await;
    let job = CountingJob::new(10, 9);
    let reports = futures::future::join_all((0..4).map(|_| runner.run(&job))).await;
    let mut done: Vec<NaiveDate> = Vec::new();
    for report in reports {
        let report = report.unwrap();
        done.extend(done_dates(&report));
        // Whoever did not run a date found it busy or already done.
        assert!(
            report
                .dates
                .iter()
                .all(|run| matches!(run.outcome, DateOutcome::Done | DateOutcome::Busy | DateOutcome::AlreadyDone)),
            "{report:?}"
        );
    }
    done.sort();
    let expected: Vec<NaiveDate> = (1..=10).map(|day| NaiveDate::from_ymd_opt(2027, 5, day).unwrap()).collect();
    assert_eq!(done, expected, "every date done by exactly one runner");
    assert!(job_rows(&mut conn).await.iter().all(|row| row.1 == "done" && row.2 == 9 && row.4 == 1));
    assert_eq!(count(&mut conn, "SELECT count(*) FROM job_test_items").await, 10 * 9);
}

#[tokio::test]
async fn a_failed_chunk_rolls_back_and_the_next_run_resumes_after_the_last_committed_one() {
    let (runner, _pool, mut conn) = runner_at(kst("2027-05-10T05:00:00+09:00"), 3).await;
    let job = CountingJob::new(1, 10);
    *job.fail_after.lock().unwrap() = Some(6);
    let error = runner.run(&job).await.unwrap_err();
    assert!(format!("{error:#}").contains("injected failure"), "{error:#}");
    let date = NaiveDate::from_ymd_opt(2027, 5, 10).unwrap();
    assert_eq!(job_rows(&mut conn).await, vec![(date, "running".to_owned(), 6, 2, 1)]);
    let (cursor, last_error): (Option<i64>, Option<String>) =
        sqlx::query_as("SELECT cursor, last_error FROM job_runs").fetch_one(&mut conn).await.unwrap();
    assert_eq!(cursor, Some(6));
    assert!(last_error.unwrap().contains("injected failure"));
    assert_eq!(count(&mut conn, "SELECT count(*) FROM job_test_items").await, 6, "the failed chunk rolled back");

    let report = runner.run(&job).await.unwrap();
    assert_eq!(report.dates.len(), 1, "{report:?}");
    let run = &report.dates[0];
    assert_eq!((run.outcome, run.processed, run.chunks, run.resumed), (DateOutcome::Done, 4, 2, true));
    assert_eq!(job_rows(&mut conn).await, vec![(date, "done".to_owned(), 10, 4, 2)]);
    assert_eq!(count(&mut conn, "SELECT count(DISTINCT item) FROM job_test_items").await, 10);
    assert!(runner.run(&job).await.unwrap().dates.is_empty());
}

#[tokio::test]
async fn two_server_processes_asked_at_once_run_each_job_once_per_date() {
    let app = spawn_app_with(|config| config.jobs.chunk_size = 4).await;
    let second = spawn_server_process_with(&app, &[("MINIPAY_JOBS_CHUNK_SIZE", "4")]).await;
    let users = [app.signup("alice").await, app.signup("bob").await, app.signup("carol").await];
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    let sent = app.clock_now().await;
    for index in 0..60 {
        insert_pending(&mut conn, &users[index % 3], &users[(index + 1) % 3], sent).await;
    }
    // Both manual clocks at 48:00, then each server asked three times at once, for both jobs.
    let now = sent + Duration::hours(48);
    set_clock_at(&app, &app.base, now).await;
    set_clock_at(&app, &second.base, now).await;
    let bases = [app.base.as_str(), second.base.as_str()];
    let requests = bases.iter().cycle().take(6).flat_map(|base| [(*base, "reminders"), (*base, "retention")]);
    let reports = futures::future::join_all(requests.map(|(base, name)| run_job_at(&app, base, name))).await;

    let reminded: u64 = reports
        .iter()
        .filter(|report| report["job"] == json!("reminders"))
        .map(|report| report["processed"].as_u64().unwrap())
        .sum();
    assert_eq!(reminded, 60, "{reports:#?}");
    assert!(transfers_not_reminded_exactly_once(&mut conn).await.is_empty());
    let retention_done = reports
        .iter()
        .filter(|report| report["job"] == json!("retention"))
        .flat_map(|report| report["dates"].as_array().unwrap().clone())
        .filter(|run| run["outcome"] == json!("done"))
        .count();
    assert_eq!(retention_done, 1, "{reports:#?}");
    let (status, attempts): (String, i32) =
        sqlx::query_as("SELECT status, attempts FROM job_runs WHERE job = 'retention'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempts), ("done", 1));
    let processed: i64 = count(&mut conn, "SELECT processed FROM job_runs WHERE job = 'reminders'").await;
    assert_eq!(processed, 60);
}

#[tokio::test]
async fn the_schedulers_of_two_server_processes_share_the_work_and_do_it_once() {
    let tick = StdDuration::from_millis(100);
    let app = spawn_app_with(|config| {
        config.clock_mode = ClockMode::System;
        config.jobs.tick = tick;
        config.jobs.chunk_size = 4;
    })
    .await;
    let second = spawn_server_process_with(
        &app,
        &[("MINIPAY_CLOCK", "system"), ("MINIPAY_SCHEDULER_TICK_MS", "100"), ("MINIPAY_JOBS_CHUNK_SIZE", "4")],
    )
    .await;
    let users = [app.signup("alice").await, app.signup("bob").await];
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    // Sent 49 hours ago: due for a reminder now.
    let sent = Utc::now() - Duration::hours(49);
    for index in 0..30 {
        insert_pending(&mut conn, &users[index % 2], &users[(index + 1) % 2], sent).await;
    }
    let mut reminded = 0;
    for _ in 0..200 {
        reminded = count(&mut conn, "SELECT count(*) FROM transfers WHERE reminded_at IS NOT NULL").await;
        if reminded == 30 {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    assert_eq!(reminded, 30, "the schedulers did not remind every receiver");
    // A few more ticks on both: they find nothing more to do.
    let app_ref = &app;
    let ticks = |base: String| async move { metric(app_ref, &base, "minipay_scheduler_ticks_total").await };
    let (first_ticks, second_ticks) = (ticks(app.base.clone()).await, ticks(second.base.clone()).await);
    for _ in 0..200 {
        if ticks(app.base.clone()).await >= first_ticks + 3 && ticks(second.base.clone()).await >= second_ticks + 3 {
            break;
        }
        tokio::time::sleep(tick).await;
    }
    assert!(ticks(second.base.clone()).await >= second_ticks + 3, "the second server's scheduler is not ticking");
    assert!(transfers_not_reminded_exactly_once(&mut conn).await.is_empty());
    assert_eq!(count(&mut conn, "SELECT count(*) FROM notifications").await, 30);
    let series = r#"minipay_job_items_total{job="reminders"}"#;
    assert_eq!(metric(&app, &app.base, series).await + metric(&app, &second.base, series).await, 30);
    // Retention ran for its latest due date (two, had 03:00 KST passed meanwhile), once.
    let retention: Vec<(String, i32)> = sqlx::query_as("SELECT status, attempts FROM job_runs WHERE job = 'retention'")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert!(!retention.is_empty() && retention.iter().all(|row| *row == ("done".to_owned(), 1)), "{retention:?}");
}

#[tokio::test]
async fn a_process_that_dies_between_chunks_is_resumed_without_a_second_reminder() {
    let app = spawn_app().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    // Due now for the command below (system clock) and for the app (manual clock, started at
    // about the same time).
    let sent = app.clock_now().await - Duration::hours(49);
    for _ in 0..10 {
        insert_pending(&mut conn, &alice, &bob, sent).await;
    }
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_minipay"))
        .args(["jobs", "run", "reminders"])
        .env("DATABASE_URL", &app.database_url)
        .env("CLICKHOUSE_DATABASE", &app.database)
        .env("MINIPAY_JOBS_CHUNK_SIZE", "3")
        .env("MINIPAY_JOBS_ABORT_AFTER_CHUNKS", "2")
        .env("RUST_LOG", "error")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success(), "the run should have died: {}", String::from_utf8_lossy(&output.stdout));
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(output.status.signal(), Some(6), "aborted (SIGABRT), as a crash");
    }
    // Two chunks of three committed, each with its reminders; the row says running.
    assert_eq!(count(&mut conn, "SELECT count(*) FROM notifications").await, 6);
    assert_eq!(count(&mut conn, "SELECT count(*) FROM transfers WHERE reminded_at IS NOT NULL").await, 6);
    let row: (String, i64, i32) =
        sqlx::query_as("SELECT status, processed, chunks FROM job_runs WHERE job = 'reminders'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(row, ("running".to_owned(), 6, 2));

    // The lock dies with the process, once PostgreSQL has noticed its connection closed (on a
    // busy machine that can come after the process's exit): the next run takes the date over
    // and does the rest. (Jobs lock (job, date) in the two-key form, `objsubid` 2; the live
    // app's forwarder holds its lead in the one-key form.)
    let started = std::time::Instant::now();
    while count(
        &mut conn,
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
          WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND d.datname = current_database()",
    )
    .await
        > 0
    {
        assert!(started.elapsed() < StdDuration::from_secs(10), "the dead process's lock is still held");
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    let report = run_job(&app, "reminders").await;
    assert_eq!(report["processed"], json!(4), "{report}");
    assert_eq!(report["dates"][0]["resumed"], json!(true), "{report}");
    assert!(transfers_not_reminded_exactly_once(&mut conn).await.is_empty());
    assert_eq!(count(&mut conn, "SELECT count(*) FROM notifications").await, 10);
    let row: (String, i64, i32) =
        sqlx::query_as("SELECT status, processed, attempts FROM job_runs WHERE job = 'reminders'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(row, ("done".to_owned(), 10, 2));
}

/// 05:00 in Seoul on the business date `days` after the app clock's.
async fn five_am_kst_in(app: &TestApp, days: u64) -> DateTime<Utc> {
    use chrono::TimeZone;
    let seoul = chrono_tz::Asia::Seoul;
    let date = app.clock_now().await.with_timezone(&seoul).date_naive() + chrono::Days::new(days);
    seoul.from_local_datetime(&date.and_hms_opt(5, 0, 0).unwrap()).single().unwrap().with_timezone(&Utc)
}

fn failed_checks(report: &Value) -> Vec<&str> {
    report["checks"]
        .as_array()
        .expect("the audit job lists its checks")
        .iter()
        .filter(|check| check["ok"] != json!(true))
        .map(|check| check["name"].as_str().unwrap())
        .collect()
}

/// The daily audit (05:00): on a healthy ledger it passes and `/metrics` says so; once a
/// balance is changed behind the ledger's back (no ledger row), the next day's run reports
/// the mismatch, counts it and logs it, and so does `minipay jobs run audit`.
#[tokio::test]
async fn the_daily_audit_job_finds_a_balance_changed_without_a_ledger_row() {
    let app = spawn_app().await;
    let alice = app.funded("alice", 50_000).await;
    let bob = app.funded("bob", 0).await;
    let (status, body) = app
        .post("/v1/transfers", Some(&alice.token), json!({"to_account_id": bob.main_account_id, "amount": 10_000}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(metric_at(&app.client, &app.base, "minipay_audit_last_ok").await, -1, "no audit yet");

    let first_day = five_am_kst_in(&app, 1).await;
    app.set_clock(&first_day.to_rfc3339()).await;
    let report = run_job(&app, "audit").await;
    assert_eq!(report["ok"], json!(true), "{report:#}");
    assert_eq!(failed_checks(&report), Vec::<&str>::new());
    let checks = report["checks"].as_array().unwrap().len();
    assert!(checks >= 7, "{report:#}");
    assert_eq!(report["processed"], json!(checks));
    assert_eq!(report["dates"][0]["outcome"], json!("done"), "{report:#}");
    assert_eq!(metric_at(&app.client, &app.base, "minipay_audit_last_ok").await, 1);
    assert_eq!(metric_at(&app.client, &app.base, "minipay_audit_failures_total").await, 0);
    assert_eq!(metric_at(&app.client, &app.base, r#"minipay_job_runs_total{job="audit"}"#).await, 1);
    // Once per business date: asked again the same day, it has nothing to do.
    let again = run_job(&app, "audit").await;
    assert_eq!((again["processed"].clone(), again["ok"].clone()), (json!(0), Value::Null), "{again:#}");

    // Money from nowhere: a balance bumped in SQL, without a ledger row.
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();
    sqlx::query("UPDATE accounts SET credits_posted = credits_posted + 1000 WHERE id = $1")
        .bind(bob.main_account_id)
        .execute(&mut conn)
        .await
        .unwrap();
    app.set_clock(&five_am_kst_in(&app, 1).await.to_rfc3339()).await;
    let report = run_job(&app, "audit").await;
    assert_eq!(report["ok"], json!(false), "{report:#}");
    assert_eq!(failed_checks(&report), vec!["posted-balances-sum-to-zero", "accounts-match-ledger"], "{report:#}");
    let mismatch = report["checks"].as_array().unwrap().iter().find(|check| check["name"] == "accounts-match-ledger");
    assert!(mismatch.unwrap()["detail"].as_str().unwrap().contains(&bob.main_account_id.to_string()), "{report:#}");
    assert_eq!(metric_at(&app.client, &app.base, "minipay_audit_last_ok").await, 0);
    assert_eq!(metric_at(&app.client, &app.base, "minipay_audit_failures_total").await, 1);
    assert_eq!(metric_at(&app.client, &app.base, "minipay_audit_runs_total").await, 2);
    // The date is done all the same: the finding is reported, not retried every tick.
    assert_eq!(metric_at(&app.client, &app.base, r#"minipay_job_runs_total{job="audit"}"#).await, 2);
    assert_eq!(metric_at(&app.client, &app.base, r#"minipay_job_failures_total{job="audit"}"#).await, 0);

    // The command runs the same job (for its own clock's date) and logs the mismatch.
    let output = minipay_command(&app, "jobs")
        .args(["run", "audit"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("the command prints its report");
    assert_eq!(report["job"], json!("audit"), "{report:#}");
    assert_eq!(failed_checks(&report), vec!["posted-balances-sum-to-zero", "accounts-match-ledger"], "{report:#}");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("ERROR") && log.contains("ledger audit failed") && log.contains("accounts-match-ledger"),
        "{log}"
    );
}
