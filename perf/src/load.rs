//! A closed-loop HTTP load generator: N virtual users, started one after another over a ramp,
//! each beginning its next iteration (one request, or a scenario's sequence of requests) as
//! soon as the previous one is answered, for a fixed time. Records latency and outcome of
//! every request per endpoint (success, refusal or error), and how much CPU the generator
//! itself used (to show it is not the bottleneck).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;

/// Requests of one endpoint (or of all endpoints together) in the measured window.
#[derive(Clone, Default)]
pub struct LoadReport {
    pub requests: u64,
    pub errors: u64,
    /// Answers that correctly refused what the user asked (see [`REFUSALS`]): not errors.
    pub refused: u64,
    pub elapsed: Duration,
    /// Sorted ascending.
    pub latencies_us: Vec<u32>,
    /// CPU seconds the generator process used per wall second (1.0 = one core).
    pub generator_cores: f64,
    /// CPU the servers, PostgreSQL and ClickHouse used in the measured window.
    pub cpu: crate::cpu::Usage,
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

    /// Several measured windows of the same workload as one: counts and latencies together,
    /// generator CPU weighted by time.
    pub fn merged<'a>(reports: impl IntoIterator<Item = &'a LoadReport>) -> LoadReport {
        let mut merged = LoadReport::default();
        let mut cpu_seconds = 0.0;
        for report in reports {
            merged.requests += report.requests;
            merged.errors += report.errors;
            merged.refused += report.refused;
            merged.elapsed += report.elapsed;
            merged.latencies_us.extend_from_slice(&report.latencies_us);
            cpu_seconds += report.generator_cores * report.elapsed.as_secs_f64();
            merged.cpu = merged.cpu.plus(report.cpu);
            for error in &report.first_errors {
                if merged.first_errors.len() < 3 {
                    merged.first_errors.push(error.clone());
                }
            }
        }
        merged.latencies_us.sort_unstable();
        if !merged.elapsed.is_zero() {
            merged.generator_cores = cpu_seconds / merged.elapsed.as_secs_f64();
        }
        merged
    }

    fn add(&mut self, sample: &Sample) {
        self.requests += 1;
        self.latencies_us.push(sample.latency_us);
        if sample.refused {
            self.refused += 1;
        }
        if let Some(error) = &sample.error {
            self.errors += 1;
            if self.first_errors.len() < 3 {
                self.first_errors.push(format!("{}: {error}", sample.endpoint));
            }
        }
    }
}

/// One request: which endpoint (a route template such as `POST /v1/transfers`), when it was
/// sent, how long it took, whether it was a refusal and, for any other answer than a 2xx,
/// what went wrong.
pub struct Sample {
    pub endpoint: &'static str,
    pub sent: Instant,
    pub latency_us: u32,
    /// A correct refusal (see [`REFUSALS`]); never also an error.
    pub refused: bool,
    pub error: Option<String>,
}

/// Problem codes that are the right answer to what a scenario's users do, not failures: a
/// daily user who tops up every iteration exhausts the daily top-up limit, and the server
/// must then refuse (422 `daily-limit-exceeded`, nothing charged).
pub const REFUSALS: [&str; 1] = ["daily-limit-exceeded"];

/// Whether an answer is one of the [`REFUSALS`]: a 422 problem with one of their codes.
pub fn is_refusal(status: reqwest::StatusCode, body: &[u8]) -> bool {
    status == reqwest::StatusCode::UNPROCESSABLE_ENTITY
        && serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|problem| problem["code"].as_str().map(|code| REFUSALS.contains(&code)))
            .unwrap_or(false)
}

/// How one answer counts.
enum Answer {
    Success(Vec<u8>),
    Refused,
    Error(String),
}

/// The samples of one iteration of a virtual user.
#[derive(Default)]
pub struct Samples(pub Vec<Sample>);

impl Samples {
    /// Sends `request`, records it under `endpoint` (a refusal as refused, any other non-2xx
    /// as an error), and returns the body of a 2xx answer.
    pub async fn send(&mut self, endpoint: &'static str, request: reqwest::RequestBuilder) -> Option<Vec<u8>> {
        let sent = Instant::now();
        let answer = async {
            let response = request.send().await.map_err(|error| error.to_string())?;
            let status = response.status();
            let body = response.bytes().await.map_err(|error| error.to_string())?;
            Ok::<_, String>(if status.is_success() {
                Answer::Success(body.to_vec())
            } else if is_refusal(status, &body) {
                Answer::Refused
            } else {
                Answer::Error(format!("{status}: {}", String::from_utf8_lossy(&body)))
            })
        }
        .await
        .unwrap_or_else(Answer::Error);
        let latency_us = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        let (body, refused, error) = match answer {
            Answer::Success(body) => (Some(body), false, None),
            Answer::Refused => (None, true, None),
            Answer::Error(error) => (None, false, Some(error)),
        };
        self.0.push(Sample { endpoint, sent, latency_us, refused, error });
        body
    }

    /// Like `send`, parsing the body as JSON.
    pub async fn send_json(
        &mut self,
        endpoint: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Option<serde_json::Value> {
        let body = self.send(endpoint, request).await?;
        serde_json::from_slice(&body).ok()
    }
}

/// How many virtual users, started over how long, measured for how long.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub users: usize,
    /// User i starts at i/users of the ramp.
    pub ramp: Duration,
    /// After the ramp, every user running, not recorded.
    pub warmup: Duration,
    pub duration: Duration,
}

/// What a scenario run measured: all requests together and per endpoint.
pub struct ScenarioReport {
    pub shape: Shape,
    pub total: LoadReport,
    pub endpoints: BTreeMap<&'static str, LoadReport>,
    pub iterations: u64,
}

/// What one iteration of a virtual user did.
pub type IterationFuture = BoxFuture<'static, Samples>;

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

/// Runs `iteration(user, sequence)` in a loop for each of `shape.users` virtual users.
/// Requests sent inside the measured window (after ramp and warm-up, for `duration`) count.
pub async fn run_scenario<F>(shape: Shape, label: &str, iteration: F) -> ScenarioReport
where
    F: Fn(usize, u64) -> IterationFuture + Send + Sync + 'static,
{
    let iteration = Arc::new(iteration);
    let start = Instant::now();
    let measure_from = start + shape.ramp + shape.warmup;
    let end = measure_from + shape.duration;
    let progress_label = label.to_owned();
    let total_seconds = (end - start).as_secs();
    let progress = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.tick().await;
        loop {
            tick.tick().await;
            eprintln!("  {progress_label}: {:.0}/{total_seconds} s", start.elapsed().as_secs_f64());
        }
    });
    let users = shape.users.max(1);
    let tasks: Vec<_> = (0..users)
        .map(|user| {
            let iteration = iteration.clone();
            let starts_at = start + shape.ramp.mul_f64(user as f64 / users as f64);
            tokio::spawn(async move {
                tokio::time::sleep_until(starts_at.into()).await;
                let mut kept = Vec::with_capacity(1024);
                let mut iterations = 0u64;
                let mut sequence = 0u64;
                while Instant::now() < end {
                    let samples = iteration(user, sequence).await;
                    sequence += 1;
                    let before = kept.len();
                    kept.extend(
                        samples.0.into_iter().filter(|sample| sample.sent >= measure_from && sample.sent < end),
                    );
                    if kept.len() > before {
                        iterations += 1;
                    }
                }
                (kept, iterations)
            })
        })
        .collect();
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_at_start = cpu_seconds();
    let others = crate::cpu::Meter::start();
    let mut report = ScenarioReport { shape, total: LoadReport::default(), endpoints: BTreeMap::new(), iterations: 0 };
    for task in tasks {
        let (samples, iterations) = task.await.expect("virtual user panicked");
        report.iterations += iterations;
        for sample in &samples {
            report.total.add(sample);
            report.endpoints.entry(sample.endpoint).or_default().add(sample);
        }
    }
    progress.abort();
    let others = others.finish();
    let elapsed =
        Instant::now().saturating_duration_since(measure_from).min(shape.duration).max(Duration::from_millis(1));
    let cores = (cpu_seconds() - cpu_at_start) / Instant::now().saturating_duration_since(measure_from).as_secs_f64();
    for stats in std::iter::once(&mut report.total).chain(report.endpoints.values_mut()) {
        stats.elapsed = elapsed;
        stats.generator_cores = cores;
        stats.cpu = others;
        stats.latencies_us.sort_unstable();
    }
    report
}

/// What one request did: `Ok` for a 2xx, `Err(description)` otherwise.
pub type RequestFuture = BoxFuture<'static, Result<(), String>>;

/// Runs `make_request(worker, sequence)` from `workers` concurrent workers, all started at
/// once: first for `warmup` (not recorded), then for `duration`.
pub async fn run<F>(workers: usize, warmup: Duration, duration: Duration, label: &str, make_request: F) -> LoadReport
where
    F: Fn(usize, u64) -> RequestFuture + Send + Sync + 'static,
{
    let make_request = Arc::new(make_request);
    let shape = Shape { users: workers, ramp: Duration::ZERO, warmup, duration };
    let report = run_scenario(shape, label, move |worker, sequence| {
        let request = make_request(worker, sequence);
        async move {
            let sent = Instant::now();
            let error = request.await.err();
            let latency_us = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
            Samples(vec![Sample { endpoint: "request", sent, latency_us, refused: false, error }])
        }
        .boxed()
    })
    .await;
    report.total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_only_the_measured_window_per_endpoint() {
        let shape = Shape {
            users: 4,
            ramp: Duration::from_millis(40),
            warmup: Duration::from_millis(20),
            duration: Duration::from_millis(200),
        };
        let report = run_scenario(shape, "test", |user, sequence| {
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let sent = Instant::now();
                let failing = user == 0 && sequence % 2 == 0;
                let error = failing.then(|| "500: boom".to_owned());
                let refused = user == 1 && sequence % 2 == 0;
                Samples(vec![
                    Sample { endpoint: "GET /a", sent, latency_us: 1000, refused: false, error: None },
                    Sample { endpoint: "POST /b", sent, latency_us: 3000, refused, error },
                ])
            }
            .boxed()
        })
        .await;
        let a = &report.endpoints["GET /a"];
        let b = &report.endpoints["POST /b"];
        assert_eq!(a.requests, b.requests);
        assert_eq!(report.total.requests, a.requests * 2);
        assert_eq!(a.errors, 0);
        assert_eq!(a.refused, 0);
        assert!(b.errors > 0 && b.errors < b.requests, "{} of {}", b.errors, b.requests);
        assert_eq!(report.total.errors, b.errors);
        // Refusals are counted apart and are not errors: user 1's are never in `errors`.
        assert!(b.refused > 0 && b.refused + b.errors < b.requests, "{} refused", b.refused);
        assert_eq!(report.total.refused, b.refused);
        assert!(b.first_errors.iter().all(|error| error.contains("500")));
        // 4 users, one iteration per ~5 ms, 200 ms measured: about 160, never the warm-up's.
        assert!(a.requests > 40 && a.requests < 200, "{}", a.requests);
        assert_eq!(a.percentile_ms(0.99), 1.0);
        assert_eq!(report.total.percentile_ms(0.99), 3.0);
        assert!(b.first_errors[0].starts_with("POST /b: 500"));
    }

    #[test]
    fn only_a_daily_limit_problem_is_a_refusal() {
        let limit = br#"{"code":"daily-limit-exceeded","status":422,"title":"Daily top-up limit exceeded"}"#;
        let funds = br#"{"code":"insufficient-funds","status":422}"#;
        let unprocessable = reqwest::StatusCode::UNPROCESSABLE_ENTITY;
        assert!(is_refusal(unprocessable, limit));
        assert!(!is_refusal(unprocessable, funds));
        assert!(!is_refusal(unprocessable, b"not json"));
        assert!(!is_refusal(reqwest::StatusCode::INTERNAL_SERVER_ERROR, limit));
        assert!(!is_refusal(reqwest::StatusCode::CONFLICT, limit));
    }

    #[test]
    fn merged_windows_add_up() {
        let window = |requests: u64, errors: u64, refused: u64, latencies: Vec<u32>| LoadReport {
            requests,
            errors,
            refused,
            elapsed: Duration::from_secs(2),
            latencies_us: latencies,
            generator_cores: 0.5,
            cpu: crate::cpu::Usage { server: 1.0, postgres: 0.5, clickhouse: 0.25 },
            first_errors: vec!["500: x".to_owned()],
        };
        let merged = LoadReport::merged(&[window(3, 1, 1, vec![1000, 2000, 5000]), window(2, 0, 0, vec![3000, 4000])]);
        assert_eq!((merged.requests, merged.errors, merged.refused), (5, 1, 1));
        assert_eq!(merged.elapsed, Duration::from_secs(4));
        assert_eq!(merged.cpu, crate::cpu::Usage { server: 2.0, postgres: 1.0, clickhouse: 0.5 });
        assert_eq!(merged.latencies_us, vec![1000, 2000, 3000, 4000, 5000]);
        assert_eq!(merged.percentile_ms(0.5), 3.0);
        assert!((merged.generator_cores - 0.5).abs() < 1e-9);
        assert!((merged.throughput() - 1.0).abs() < 1e-9);
        assert_eq!(merged.first_errors.len(), 2);
    }
}
