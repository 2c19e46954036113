//! A closed-loop HTTP load generator: N workers, each sending its next request as soon as the
//! previous one is answered, for a fixed time. Records latency and status of every request,
//! and how much CPU the generator itself used (to show it is not the bottleneck).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

pub struct LoadReport {
    pub requests: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latencies_us: Vec<u32>,
    /// CPU seconds the generator process used per wall second (1.0 = one core).
    pub generator_cores: f64,
    pub first_errors: Vec<String>,
}

impl LoadReport {
    pub fn throughput(&self) -> f64 {
        (self.requests - self.errors) as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_ms(&self, percentile: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let index = ((self.latencies_us.len() as f64 - 1.0) * percentile).round() as usize;
        f64::from(self.latencies_us[index]) / 1000.0
    }
}

fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a full rusage into the pointer we pass.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// What one request did: `Ok` for a 2xx, `Err(description)` otherwise.
pub type RequestFuture = BoxFuture<'static, Result<(), String>>;

/// Runs `make_request(worker, sequence)` from `workers` concurrent workers: first for
/// `warmup` (not recorded), then for `duration`.
pub async fn run<F>(workers: usize, warmup: Duration, duration: Duration, label: &str, make_request: F) -> LoadReport
where
    F: Fn(usize, u64) -> RequestFuture + Send + Sync + 'static,
{
    let make_request = Arc::new(make_request);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let cpu_at_start = Arc::new(std::sync::Mutex::new(None::<f64>));
    let progress_label = label.to_owned();
    let progress = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.tick().await;
        loop {
            tick.tick().await;
            eprintln!("  {progress_label}: {:.0} s elapsed", start.elapsed().as_secs_f64());
        }
    });
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let make_request = make_request.clone();
            let cpu_at_start = cpu_at_start.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(4096);
                let mut requests = 0u64;
                let mut errors = 0u64;
                let mut first_errors = Vec::new();
                let mut sequence = 0u64;
                loop {
                    let sent = Instant::now();
                    if sent >= end {
                        break;
                    }
                    if sent >= measure_from {
                        let mut cpu = cpu_at_start.lock().unwrap();
                        if cpu.is_none() {
                            *cpu = Some(cpu_seconds());
                        }
                    }
                    let result = make_request(worker, sequence).await;
                    sequence += 1;
                    if sent < measure_from {
                        continue;
                    }
                    requests += 1;
                    latencies.push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                    if let Err(error) = result {
                        errors += 1;
                        if first_errors.len() < 3 {
                            first_errors.push(error);
                        }
                    }
                }
                (latencies, requests, errors, first_errors)
            })
        })
        .collect();
    let mut report = LoadReport {
        requests: 0,
        errors: 0,
        elapsed: duration,
        latencies_us: Vec::new(),
        generator_cores: 0.0,
        first_errors: Vec::new(),
    };
    for task in tasks {
        let (latencies, requests, errors, first_errors) = task.await.expect("worker panicked");
        report.latencies_us.extend(latencies);
        report.requests += requests;
        report.errors += errors;
        report.first_errors.extend(first_errors.into_iter().take(3usize.saturating_sub(report.first_errors.len())));
    }
    progress.abort();
    let cpu_used = cpu_seconds() - cpu_at_start.lock().unwrap().unwrap_or(0.0);
    report.elapsed = Instant::now().saturating_duration_since(measure_from).max(Duration::from_millis(1));
    report.generator_cores = cpu_used / report.elapsed.as_secs_f64();
    report.latencies_us.sort_unstable();
    report
}
