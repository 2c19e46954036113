//! Password hashing under bursts of sign-ups and log-ins: a real `minipay serve` process with
//! the default argon2 cost (19 MiB a hash) keeps its resident memory bounded, refuses what it
//! cannot queue with 503 `unavailable` and Retry-After, and gives the memory back afterwards.

use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::{json, Value};

use crate::helpers::*;

/// The most the server may ever hold resident (VmHWM), bursts included.
const PEAK_LIMIT_KIB: u64 = 300 * 1024;
/// How far above its idle size the server may stay once the bursts are over: less than the
/// memory of one hash (19 MiB), so a hashing slot that kept its memory fails the test.
const SETTLED_SLACK_KIB: u64 = 16 * 1024;
/// How long the server may take to give the memory back.
const SETTLE_BOUND: Duration = Duration::from_secs(30);
const BURSTS: [usize; 3] = [32, 64, 256];

#[derive(Debug, Clone, Copy)]
struct Memory {
    rss_kib: u64,
    hwm_kib: u64,
}

/// VmRSS and VmHWM (the peak) of a process, from /proc/<pid>/status.
fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server is alive");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|kib| kib.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /proc/{pid}/status"))
    };
    Memory { rss_kib: field("VmRSS:"), hwm_kib: field("VmHWM:") }
}

/// What one burst request got: its status (0 when the request failed: the server is gone),
/// its Retry-After and its body.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    content_type: Option<String>,
    body: Value,
}

async fn send(client: &reqwest::Client, url: String, name: &str) -> Answer {
    let response = match client.post(url).json(&json!({"name": name, "password": PASSWORD})).send().await {
        Ok(response) => response,
        Err(error) => {
            return Answer { status: 0, retry_after: None, content_type: None, body: json!(error.to_string()) }
        }
    };
    let header = |name| response.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_owned);
    let retry_after = header(reqwest::header::RETRY_AFTER);
    let content_type = header(reqwest::header::CONTENT_TYPE);
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Answer { status, retry_after, content_type, body }
}

/// Created, or refused for overload the documented way; nothing else.
fn assert_created_or_unavailable(what: &str, answer: &Answer, peak: Memory) {
    match answer.status {
        201 => {}
        503 => {
            assert_eq!(answer.body["code"], json!("unavailable"), "{what}: {answer:?}");
            assert_eq!(answer.content_type.as_deref(), Some("application/problem+json"), "{what}: {answer:?}");
            let retry_after: u64 = answer.retry_after.as_deref().and_then(|secs| secs.parse().ok()).unwrap_or(0);
            assert!(retry_after >= 1, "{what}: a 503 without Retry-After: {answer:?}");
        }
        0 => panic!("{what}: no answer (the server was killed at {} KiB resident): {answer:?}", peak.hwm_kib),
        _ => panic!("{what}: expected 201 or 503: {answer:?}"),
    }
}

/// Runs `work` while sampling the server's memory every 10 ms. Past the limit the server is
/// killed at once: a regression fails the test instead of taking the machine's memory.
async fn watched<T>(
    server: &mut Option<ServerProcess>,
    peak: &mut Memory,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        tokio::select! {
            output = &mut work => return output,
            _ = tick.tick() => {
                let Some(running) = server.as_ref() else { continue };
                let now = memory(running.pid());
                peak.rss_kib = peak.rss_kib.max(now.rss_kib);
                peak.hwm_kib = peak.hwm_kib.max(now.hwm_kib);
                if now.rss_kib > PEAK_LIMIT_KIB {
                    server.take().expect("a running server").crash().await;
                }
            }
        }
    }
}

#[tokio::test]
async fn bursts_of_sign_ups_and_log_ins_keep_memory_bounded_and_give_it_back() {
    let app = spawn_app().await;
    // The default argon2 cost (memory is the point); the per-address log-in limit is off
    // (`minipay_command`), since every burst comes from this one address.
    let server = spawn_server_process(&app).await;
    let base = server.base.clone();
    let pid = server.pid();
    let idle = memory(pid);
    let mut server = Some(server);
    let mut peak = idle;

    let burst_client = reqwest::Client::builder().pool_max_idle_per_host(512).build().unwrap();
    let mut created_names = Vec::new();
    let mut refused = 0;
    let started = Instant::now();
    for (burst, clients) in BURSTS.into_iter().enumerate() {
        let names: Vec<String> = (0..clients).map(|client| format!("burst{burst}client{client}")).collect();
        let sign_ups = join_all(names.iter().map(|name| send(&burst_client, format!("{base}/v1/users"), name)));
        let answers = watched(&mut server, &mut peak, sign_ups).await;
        let mut created = Vec::new();
        for (name, answer) in names.iter().zip(&answers) {
            assert_created_or_unavailable(&format!("sign-up of {name}"), answer, peak);
            if answer.status == 201 {
                created.push(name.clone());
            } else {
                refused += 1;
            }
        }
        assert!(!created.is_empty(), "burst of {clients}: every sign-up was refused");
        // As many log-ins, all for names that exist, so each one hashes.
        let log_ins = join_all(
            (0..clients)
                .map(|client| send(&burst_client, format!("{base}/v1/sessions"), &created[client % created.len()])),
        );
        let answers = watched(&mut server, &mut peak, log_ins).await;
        for answer in &answers {
            assert_created_or_unavailable(&format!("log-in in the burst of {clients}"), answer, peak);
            refused += usize::from(answer.status == 503);
        }
        created_names.extend(created);
    }
    let bursts_took = started.elapsed();
    // The bursts' connections close: what is left is what the server keeps.
    drop(burst_client);
    let server = server.expect("the server survived the bursts");
    let after_bursts = memory(pid);
    peak.hwm_kib = peak.hwm_kib.max(after_bursts.hwm_kib);
    assert!(
        peak.hwm_kib <= PEAK_LIMIT_KIB,
        "the server's resident memory peaked at {} KiB (limit {PEAK_LIMIT_KIB} KiB)",
        peak.hwm_kib
    );

    // Back near idle, within a bound (polled: freed memory may go back a little later).
    let settle_started = Instant::now();
    let (settled, settle_took) = loop {
        let now = memory(pid);
        if now.rss_kib <= idle.rss_kib + SETTLED_SLACK_KIB {
            break (now, settle_started.elapsed());
        }
        assert!(
            settle_started.elapsed() < SETTLE_BOUND,
            "{} KiB resident {SETTLE_BOUND:?} after the bursts ({} KiB right after them, peak {} KiB), idle was {} KiB \
             (allowed {SETTLED_SLACK_KIB} KiB more)",
            now.rss_kib,
            after_bursts.rss_kib,
            peak.hwm_kib,
            idle.rss_kib
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Log-ins work afterwards, for users from every burst.
    for name in created_names.iter().step_by(created_names.len().div_ceil(5)) {
        let answer = send(&app.client, format!("{base}/v1/sessions"), name).await;
        assert_eq!(answer.status, 201, "log-in of {name} after the bursts: {answer:?}");
        assert!(answer.body["token"].is_string(), "{answer:?}");
    }
    println!(
        "hashing bursts {BURSTS:?} in {:.1} s: idle {} KiB, peak {} KiB, after the bursts {} KiB, settled {} KiB \
         ({:.1} s later); {} users created, {refused} requests refused with 503",
        bursts_took.as_secs_f64(),
        idle.rss_kib,
        peak.hwm_kib,
        after_bursts.rss_kib,
        settled.rss_kib,
        settle_took.as_secs_f64(),
        created_names.len(),
    );
    drop(server);
}
