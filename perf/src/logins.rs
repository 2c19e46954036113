//! Bursts of concurrent log-ins at the default argon2 cost (19 MiB, 2 passes): the server's
//! resident memory at idle, at its peak during the bursts and after them, and what the
//! clients got (201, or 503 with Retry-After once the hashing queue is full).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::history::percentile;
use crate::server::{memory_of, mib, Server};
use crate::write::{database_url_for, recreate_database, PASSWORD};

#[derive(clap::Args, Debug)]
pub struct Options {
    /// Concurrent log-ins in each burst.
    #[arg(long, default_value_t = 256)]
    clients: usize,
    /// Bursts, one after another.
    #[arg(long, default_value_t = 3)]
    bursts: usize,
    /// Users signed up first; the log-ins cycle through them.
    #[arg(long, default_value_t = 32)]
    users: usize,
    /// PostgreSQL and ClickHouse database of the benchmark (recreated).
    #[arg(long, default_value = "minipay_logins_bench")]
    database: String,
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    anyhow::ensure!(options.clients > 0 && options.users > 0, "--clients and --users must be positive");
    let admin_url = std::env::var("DATABASE_URL").context("DATABASE_URL is not set")?;
    let clickhouse_url = std::env::var("CLICKHOUSE_URL").context("CLICKHOUSE_URL is not set")?;
    let database = options.database.as_str();
    anyhow::ensure!(
        database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "--database must be a plain identifier"
    );
    recreate_database(&admin_url, &clickhouse_url, database).await?;
    let url = database_url_for(&admin_url, database);
    // The server's own defaults for hashing (an empty variable is unset), not perf's cheap ones.
    let default = String::new;
    let server = Server::start(
        &url,
        database,
        &[
            ("MINIPAY_ARGON2_MEMORY_KIB", default()),
            ("MINIPAY_ARGON2_ITERATIONS", default()),
            ("MINIPAY_ARGON2_QUEUE", default()),
            ("MINIPAY_SCHEDULER", "off".to_owned()),
        ],
    )
    .await?;
    let pid = server.pid().context("the server's pid")?;
    let idle = server.memory();
    eprintln!("logins: server idle: {idle}");

    let client = reqwest::Client::builder().pool_max_idle_per_host(options.clients).build()?;
    let names: Vec<String> = (0..options.users).map(|n| format!("login{n}")).collect();
    for name in &names {
        client
            .post(format!("{}/v1/users", server.base))
            .json(&json!({"name": name, "password": PASSWORD}))
            .send()
            .await?
            .error_for_status()
            .with_context(|| format!("signing up {name}"))?;
    }
    eprintln!("logins: {} users signed up one at a time: {}", names.len(), server.memory());

    // Sampled every 10 ms during the bursts (VmHWM would also count the sign-ups).
    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (peak_rss, sampling) = (peak_rss.clone(), sampling.clone());
        async move {
            while sampling.load(Ordering::Relaxed) {
                peak_rss.fetch_max(memory_of(pid).rss_kib, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    });
    for burst in 1..=options.bursts {
        login_burst(burst, &options, &client, &server, &names).await?;
    }
    sampling.store(false, Ordering::Relaxed);
    sampler.await?;
    drop(client);
    let after = server.memory();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let later = server.memory();
    println!(
        "server memory: idle {:.1} MiB; peak during the bursts {:.1} MiB; right after them {:.1} MiB; 10 s later {:.1} MiB",
        mib(idle.rss_kib),
        mib(peak_rss.load(Ordering::Relaxed)),
        mib(after.rss_kib),
        mib(later.rss_kib)
    );
    server.stop().await;
    Ok(())
}

/// One burst of `options.clients` concurrent log-ins; fails if any got neither 201 nor 503
/// with Retry-After.
async fn login_burst(
    burst: usize,
    options: &Options,
    client: &reqwest::Client,
    server: &Server,
    names: &[String],
) -> anyhow::Result<()> {
    let started = Instant::now();
    let answers = futures::future::join_all((0..options.clients).map(|n| {
        let (client, base, name) = (client.clone(), server.base.clone(), names[n % names.len()].clone());
        async move {
            let sent = Instant::now();
            let response = client
                .post(format!("{base}/v1/sessions"))
                .json(&json!({"name": name, "password": PASSWORD}))
                .send()
                .await;
            let ms = sent.elapsed().as_secs_f64() * 1000.0;
            match response {
                Ok(response) => (response.status().as_u16(), response.headers().contains_key("retry-after"), ms),
                Err(_) => (0, false, ms),
            }
        }
    }))
    .await;
    let took = started.elapsed();
    let created: Vec<f64> = answers.iter().filter(|(status, _, _)| *status == 201).map(|(_, _, ms)| *ms).collect();
    let refused = answers.iter().filter(|(status, retry_after, _)| *status == 503 && *retry_after).count();
    let other = answers.len() - created.len() - refused;
    println!(
        "burst {burst}: {} concurrent log-ins in {:.2} s: {} x 201 (p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms), \
         {refused} x 503 with Retry-After, {other} other; server {}",
        options.clients,
        took.as_secs_f64(),
        created.len(),
        percentile(&created, 0.5),
        percentile(&created, 0.99),
        percentile(&created, 1.0),
        server.memory()
    );
    anyhow::ensure!(other == 0, "{other} log-ins got neither 201 nor 503 with Retry-After");
    Ok(())
}
